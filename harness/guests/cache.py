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
import os
import stat
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import HarnessError
from ..packagedata import shipped_dir, user_cache_dir

#: The guest recipes and sources shipped with the package.
GUEST_IMAGES = shipped_dir("guest_images")


def cache_root() -> Path:
    """``guests/`` in the user's cache directory: a real folder of this user (a link or
    someone else's folder planted in a shared cache is refused, not followed)."""
    root = user_cache_dir() / "guests"
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = root.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise HarnessError(f"guest cache {root} is a link, not a folder, or another user's; "
                           "remove it or set HARNESS_CACHE_DIR")
    return root


def content_hash(files: Iterable[Path], *extra: str) -> str:
    """A short hash of file names and contents (and any extra strings), order-independent."""
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for text in extra:
        digest.update(text.encode() + b"\0")
    return digest.hexdigest()[:16]


#: How long a build waits for another process's build of the same artefact.
LOCK_TIMEOUT = 600.0


@contextlib.contextmanager
def locked(name: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """An exclusive lock across processes for building artefact ``name``, waited for at
    most ``timeout`` seconds.  The lock file is opened without following a link and never
    truncated, so a link planted in its place cannot make us write another file."""
    path = cache_root() / f"{name}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise HarnessError(f"cannot open the lock {path} ({exc.strerror}; a link is refused)") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            raise HarnessError(f"lock {path} is not a regular file of this user")
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise HarnessError(f"another process has held {path} for more than {timeout:g} s "
                                       "(a build still running, or hung); try again later") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def progress(message: str) -> None:
    """Progress of downloads and builds, on stderr (pytest shows it with -s or on failure)."""
    print(f"[guests] {message}", file=sys.stderr, flush=True)
