"""The guest-image cache: where built and downloaded artefacts live, keyed by content.

Everything goes under ``guests/`` in the user's cache directory
(:func:`harness.packagedata.user_cache_dir`), never into site-packages or a checkout.  An artefact's folder is named after a hash of what it is made from, so a
changed recipe gets a new folder and an unchanged one is reused; a file lock makes two
processes (pytest-xdist workers) build it once; results are written under a temporary
name and renamed, so a crash never leaves a half-written artefact in place.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import sys
from pathlib import Path
from typing import Iterable, Iterator

from ..packagedata import shipped_dir, user_cache_dir

#: The guest recipes and sources shipped with the package.
GUEST_IMAGES = shipped_dir("guest_images")


def cache_root() -> Path:
    root = user_cache_dir() / "guests"
    root.mkdir(mode=0o700, exist_ok=True)
    return root


def content_hash(files: Iterable[Path], *extra: str) -> str:
    """A short hash of file names and contents (and any extra strings), order-independent."""
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for text in extra:
        digest.update(text.encode() + b"\0")
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """An exclusive lock across processes for building artefact ``name``."""
    with open(cache_root() / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def progress(message: str) -> None:
    """Progress of downloads and builds, on stderr (pytest shows it with -s or on failure)."""
    print(f"[guests] {message}", file=sys.stderr, flush=True)
