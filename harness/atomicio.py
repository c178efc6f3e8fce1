"""Output files written whole or not at all.

Every file the harness hands to a user (reports, .reg exports, summaries, repro bundles,
pictures, JUnit XML) is written to a temporary name in the same folder, flushed to disk
and renamed over the target: a reader, or the next run after a kill, sees the old file or
the new one, never an empty or half-written one.  A temporary name left by a kill starts
with ``.`` and ends in ``.tmp``.  A failure to write is an :class:`OutputError` naming the
file (a usage error: exit status 2 on the command line).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Any, Iterator

from .errors import HarnessError


class OutputError(HarnessError):
    """An output file could not be written (folder missing or not writable, disk full)."""


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "w", *, encoding: str | None = "utf-8",
                  newline: str | None = None, sync: bool = True) -> Iterator[IO[Any]]:
    """A file object to write ``path`` through; renamed over ``path`` when the block ends
    without an exception, removed otherwise.  ``mode`` is ``"w"`` or ``"wb"``.  ``sync``:
    flushed to disk before the rename (False for a file in a run folder that goes when the
    machine closes: still whole or absent, only not durable)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")  # (secrets.token_hex, without its imports)
    try:
        # O_EXCL|O_NOFOLLOW: never through a link planted at the temporary name; 0o666
        # so the file gets the user's umask like any other output.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
    try:
        binary = mode == "wb"
        with os.fdopen(fd, mode, encoding=None if binary else encoding,
                       newline=None if binary else newline) as handle:
            yield handle  # what the caller's block raises passes through unchanged
            try:
                handle.flush()
                if sync:
                    os.fsync(handle.fileno())
            except OSError as exc:
                raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8", sync: bool = True) -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_output(path, "w", encoding=encoding, newline="", sync=sync) as handle:
        handle.write(text)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_output(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def output_folder(path: str | os.PathLike) -> Path:
    """``path`` made as a folder (with its parents) if it is not one; an :class:`OutputError`
    naming it when it cannot be (a file there, no permission)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot make the output folder {path}: {exc.strerror}") from None
    return path
