"""Answers that depend only on the QEMU binary, kept across runs.

Which QOM types are ISA or PCI devices (``qom-list-types`` with ``implements``) is a fact
of the QEMU build, not of a machine, and the first such question costs a fresh QEMU
~19 ms of CPU (measured on 7.2: it initialises every class of the type system), while
SeaBIOS runs or a matrix cell waits.  So the answers are kept per binary in the user's
cache (``qemu-facts/``) and a machine asks QEMU only when the cache has no answer for its
binary: the file's identity (path, size, modification time, inode) must match, and the
version QEMU's greeting tells is checked against the cached one before any answer is used
(:meth:`BinaryFacts.check_version`), so a wrapper script around another QEMU is caught too.

Imports only the standard library (a launch plan's QEMU is started before the harness is
loaded, :mod:`harness.qemu.launchplan`).
"""

from __future__ import annotations

import json
import os
import zlib

from ..names import cache_root, private_cache_file
from .binary import which

#: The questions whose answers are the binary's (the layout's and the bus's type listings).
BINARY_COMMANDS = frozenset({"qom-list-types"})


def query_key(command: str, arguments: "dict | None") -> str:
    """One text per question (the form every prefetched or cached answer is filed under)."""
    return json.dumps([command, arguments], sort_keys=True)


class BinaryFacts:
    """The cached answers of one QEMU binary; empty when there are none yet (or they are
    not this binary's)."""

    def __init__(self, binary: str) -> None:
        resolved = which(binary) or binary
        self.path = os.path.realpath(resolved)
        try:
            info = os.stat(self.path)
            self.identity = [self.path, info.st_size, info.st_mtime_ns, info.st_ino]
        except OSError:
            self.identity = [self.path]
        self.file = os.path.join(cache_root(), "qemu-facts", f"{zlib.crc32(self.path.encode()):08x}.json")
        self.version: str | None = None
        self.answers: dict[str, object] = {}
        self._dirty = False
        if private_cache_file(self.file):
            try:
                with open(self.file, encoding="utf-8") as f:
                    kept = json.load(f)
                if kept.get("identity") == self.identity and isinstance(kept.get("answers"), dict):
                    self.version, self.answers = kept.get("version"), kept["answers"]
            except (OSError, ValueError, AttributeError):
                pass

    @staticmethod
    def is_binary_question(command: str) -> bool:
        return command in BINARY_COMMANDS

    def answer(self, command: str, arguments: "dict | None") -> object | None:
        """The kept answer (QEMU's ``return`` value), or None."""
        return self.answers.get(query_key(command, arguments))

    def check_version(self, version: str) -> None:
        """Forget every answer kept for another QEMU version than the one running."""
        if self.version != version:
            if self.answers:
                self.answers, self._dirty = {}, True
            self.version = version

    def keep(self, command: str, arguments: "dict | None", answer: object) -> None:
        if self.is_binary_question(command):
            self.answers[query_key(command, arguments)] = answer
            self._dirty = True

    def save(self) -> None:
        """Write the answers back if they changed; quietly nothing if the cache cannot be written."""
        if not self._dirty or self.version is None:
            return
        try:
            folder = os.path.dirname(self.file)
            os.makedirs(cache_root(), mode=0o700, exist_ok=True)
            os.makedirs(folder, mode=0o700, exist_ok=True)
            tmp = f"{self.file}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"identity": self.identity, "version": self.version, "answers": self.answers}, f)
            os.replace(tmp, self.file)
            self._dirty = False
        except OSError:
            pass
