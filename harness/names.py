"""Names, choices and places the harness fixes, in a module with no heavy imports: the
command line builds its parsers, and starts QEMU, before it loads the configuration layer
(:mod:`harness.qemu.launchplan`)."""

import os

#: The distribution's name (pip's, the cache folder's).
DIST_NAME = "qemu-nt-harness"
#: Environment variable: the cache root (guest images, the accelerator verdict, launch plans).
CACHE_ENV = "HARNESS_CACHE_DIR"

#: Prefix of the ids the harness gives its own chardevs, devices and monitors; a machine
#: file may not use it.
RESERVED_ID_PREFIX = "harness"


def memdev_backend_id(dev_id: str) -> str:
    """The id of the RAM backend the harness gives a device with a memdev backend
    (ivshmem-plain): QEMU's flat view names that object, not the device, as the RAM's owner."""
    return f"{RESERVED_ID_PREFIX}-mem-{dev_id}"


#: The Floppy driver's Parameters subkey for the board's own controller (the other
#: subkeys are device ids, so no floppy controller of a machine file may take this id).
BOARD_CONTROLLER_KEY = "BoardController"
#: Accelerator policies (harness.qemu.accel): a machine file's ``accel``, ``--accel``.
ACCEL_POLICIES = ("tcg", "kvm", "auto")
#: The HALs a job can run (harness.config.hal_for): ``--hal``.
HAL_CHOICES = ("auto", "pic", "apic")


def cache_root() -> str:
    """``$HARNESS_CACHE_DIR``, else ``$XDG_CACHE_HOME/qemu-nt-harness``, else
    ``~/.cache/qemu-nt-harness`` (not created here: :func:`harness.packagedata.user_cache_dir`)."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return os.path.expanduser(override)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.path.expanduser(base), DIST_NAME)


def private_cache_file(path: str) -> bool:
    """Whether the cache file ``path`` and its folder are this user's, no links, and
    nobody else can write them: what the harness reads back from its cache (a launch
    plan becomes a QEMU command line, a pickle runs code) must be what it wrote."""
    import stat
    try:
        for where in (os.path.dirname(path), path):
            info = os.lstat(where)
            if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or \
                    stat.S_ISLNK(info.st_mode):
                return False
    except OSError:
        return False
    return True
