"""Whether the QEMU binary can be started at all, said in one line before anything boots."""

from __future__ import annotations

import os

from ..errors import HarnessError

QEMU_ENV = "HARNESS_QEMU"
#: The QEMU the harness runs: ``$HARNESS_QEMU`` or the Debian package's binary.
QEMU_BINARY = os.environ.get(QEMU_ENV, "qemu-system-x86_64")


class QemuMissing(HarnessError):
    """The QEMU binary is not on PATH (or ``$HARNESS_QEMU`` names no executable)."""


def require_qemu() -> str:
    """The path of the QEMU binary, or :class:`QemuMissing` naming it and ``HARNESS_QEMU``."""
    found = which(QEMU_BINARY)
    if found is None:
        where = f"${QEMU_ENV} is {QEMU_BINARY!r}" if os.environ.get(QEMU_ENV) else "not on PATH"
        raise QemuMissing(f"QEMU binary {QEMU_BINARY!r} not found ({where}): install QEMU "
                          f"(Debian: apt-get install qemu-system-x86) or set {QEMU_ENV} to its path")
    return found


def which(name: str) -> str | None:
    """``name`` as :func:`shutil.which` finds it on ``PATH`` (a path with a slash is taken
    as it is), without importing shutil: the command line looks QEMU up before it starts it,
    ahead of every other import."""
    candidates = [name] if os.sep in name else [os.path.join(d, name) for d in os.get_exec_path()]
    for path in candidates:
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    return None
