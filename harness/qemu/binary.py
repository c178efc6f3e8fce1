"""Whether the QEMU binary can be started at all, said in one line before anything boots."""

from __future__ import annotations

import os
import shutil

from ..errors import HarnessError

QEMU_ENV = "HARNESS_QEMU"
#: The QEMU the harness runs: ``$HARNESS_QEMU`` or the Debian package's binary.
QEMU_BINARY = os.environ.get(QEMU_ENV, "qemu-system-x86_64")


class QemuMissing(HarnessError):
    """The QEMU binary is not on PATH (or ``$HARNESS_QEMU`` names no executable)."""


def require_qemu() -> str:
    """The path of the QEMU binary, or :class:`QemuMissing` naming it and ``HARNESS_QEMU``."""
    found = shutil.which(QEMU_BINARY)
    if found is None:
        where = f"${QEMU_ENV} is {QEMU_BINARY!r}" if os.environ.get(QEMU_ENV) else "not on PATH"
        raise QemuMissing(f"QEMU binary {QEMU_BINARY!r} not found ({where}): install QEMU "
                          f"(Debian: apt-get install qemu-system-x86) or set {QEMU_ENV} to its path")
    return found
