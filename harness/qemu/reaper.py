"""Finding and ending QEMU processes the harness started.

Every QEMU the harness spawns carries ``HARNESS_OWNER=<pid>:<token>`` in its environment
(``pid`` is the Python process that started it).  The parent-death signal normally ends
QEMU with its parent; this module is the second line of defence: at session end it kills
any survivor of this process, and :func:`reap_orphans` kills survivors whose owner is
gone (a crashed pytest worker, or the tiny window before the death signal is armed).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

OWNER_ENV = "HARNESS_OWNER"
#: File in each run folder naming the owning process ("pid:token"); a folder the user
#: asked to keep has KEEP_FILE beside it and is never swept.
OWNER_FILE = "owner"
KEEP_FILE = "keep"


@dataclass(frozen=True)
class TaggedProcess:
    pid: int
    owner_pid: int
    token: str


def owner_tag(token: str) -> str:
    return f"{os.getpid()}:{token}"


def tagged_processes() -> list[TaggedProcess]:
    """Every live process whose environment carries a harness owner tag."""
    found = []
    needle = OWNER_ENV.encode() + b"="
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        for var in environ.split(b"\0"):
            if var.startswith(needle):
                owner, _, token = var[len(needle):].decode(errors="replace").partition(":")
                if owner.isdigit():
                    found.append(TaggedProcess(int(entry.name), int(owner), token))
                break
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purpose.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


def _kill(pids: list[int], grace: float = 1.0) -> list[int]:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.01)
    return pids


def reap_own() -> list[int]:
    """Kill every tagged QEMU this process started that is still running."""
    me = os.getpid()
    return _kill([p.pid for p in tagged_processes() if p.owner_pid == me and _alive(p.pid)])


def reap_orphans() -> list[int]:
    """Kill tagged QEMUs whose owning Python process no longer exists."""
    return _kill([p.pid for p in tagged_processes()
                  if not _alive(p.owner_pid) and _alive(p.pid)])


def sweep_orphan_run_dirs(root: Path) -> list[Path]:
    """Remove run folders under ``root`` whose owner died without cleaning up (SIGKILL)."""
    import shutil
    removed = []
    if not root.is_dir():
        return removed
    for folder in root.iterdir():
        owner_file = folder / OWNER_FILE
        try:
            owner = int(owner_file.read_text().split(":", 1)[0])
        except (OSError, ValueError):
            continue  # not a run folder of ours, or still being created
        if (folder / KEEP_FILE).exists() or _alive(owner):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed
