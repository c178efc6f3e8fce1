"""Finding and ending QEMU processes and run folders the harness left behind.

Every QEMU the harness spawns carries ``HARNESS_OWNER=<tag>`` in its environment, and
every run folder an ``owner`` file with the same tag.  The tag (:class:`Owner`) names the
Python process that made it by pid *and start time* (a reused pid has another), its uid
and its PID namespace (a pid means nothing in another namespace: a harness in a
container looks dead from the host).  The parent-death signal normally ends QEMU with its
owner; this module is the second line of defence.  It touches only

* QEMU processes (by their executable), of this uid, in this PID namespace,
* whose owner is really gone: no such pid, or a pid with another start time,

and says what it skipped and why.  Run folders are swept by the same rule; a folder
marked keep stays :data:`KEEP_GRACE` seconds after its owner is gone, then goes too.
Processes are signalled through a pidfd, so a pid reused between the check and the
signal cannot be hit.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .owner import (_OWNED_NAME, KEEP_FILE, OWNER_ENV, OWNER_FILE, Owner, _pidns, _start_time, _stat_fields,  # noqa: F401
                    _state, owned_name, owner_tag)

#: Seconds a keep-marked run folder outlives its owner (for post-mortems), then swept.
KEEP_GRACE = 24 * 3600.0

@lru_cache(maxsize=1)
def _proc_is_ours(pid: int) -> bool:
    """Whether /proc shows this process's own PID namespace (not a host's /proc in a
    container without its own mount): pids read there would mean other processes."""
    try:
        return int(os.readlink("/proc/self")) == pid
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class TaggedProcess:
    pid: int
    tag: str
    owner: Owner | None
    uid: int | None
    pidns: int | None
    exe: str | None

    @property
    def owner_pid(self) -> int | None:
        return self.owner.pid if self.owner else None


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
                tag = var[len(needle):].decode(errors="replace")
                found.append(TaggedProcess(int(entry.name), tag, Owner.parse(tag), *_identity(entry.name)))
                break
    return found


def _identity(pid: str) -> tuple[int | None, int | None, str | None]:
    """(real uid, PID namespace inode, executable) of a process, None where unreadable."""
    uid = pidns = exe = None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                uid = int(line.split()[1])
                break
    except (OSError, ValueError, IndexError):
        pass
    try:
        pidns = _pidns(pid)
    except (OSError, ValueError):
        pass
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        pass
    return uid, pidns, exe


def is_qemu(exe: str | None) -> bool:
    """Whether an executable path is a QEMU system emulator (or the one $HARNESS_QEMU names)."""
    if not exe:
        return False
    name = os.path.basename(exe.removesuffix(" (deleted)"))
    custom = os.path.basename(os.environ.get("HARNESS_QEMU", ""))
    return name.startswith("qemu-system-") or (bool(custom) and name == custom)


def _foreign(owner: Owner | None, tag: str, uid: int | None, pidns: int | None) -> str | None:
    """Why something tagged ``tag`` is not ours to judge, or None if it is."""
    if owner is None:
        return f"tag {tag[:60]!r} names no start time and namespace (another harness version)"
    me = Owner.me()
    if owner.uid != me.uid or uid != me.uid:
        return f"belongs to uid {uid if uid != me.uid else owner.uid}"
    if owner.pidns != me.pidns or pidns != me.pidns:
        return f"its owner lives in another PID namespace ({owner.pidns})"
    if not _proc_is_ours(os.getpid()):
        return "/proc shows another PID namespace than this process's"
    return None


@dataclass
class Verdicts:
    """What a reap found: the orphans (to end) and everything it left alone, with why."""

    orphans: list[TaggedProcess]
    skipped: list[tuple[TaggedProcess, str]]


def judge_processes() -> Verdicts:
    """Sort tagged processes into orphaned QEMUs of ours and the rest (with reasons)."""
    verdicts = Verdicts([], [])
    for proc in tagged_processes():
        why = _foreign(proc.owner, proc.tag, proc.uid, proc.pidns)
        if why is None and not is_qemu(proc.exe):
            why = f"not a QEMU ({proc.exe or 'executable unreadable'})"
        if why is None and not proc.owner.gone():
            why = f"its owner {proc.owner.pid} is alive"
        if why is None:
            verdicts.orphans.append(proc)
        else:
            verdicts.skipped.append((proc, why))
    return verdicts


def _kill(procs: list[TaggedProcess], grace: float = 1.0) -> list[int]:
    """SIGKILL each process (and its process group, if it leads one) through a pidfd
    opened before re-checking it is the same tagged QEMU; wait up to ``grace`` s."""
    killed = []
    for proc in procs:
        try:
            fd = os.pidfd_open(proc.pid)
        except OSError:
            continue  # already gone
        try:
            environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
            if f"{OWNER_ENV}={proc.tag}".encode() not in environ.split(b"\0"):
                continue  # the pid was reused after the scan
            leads_group = int(_stat_fields(str(proc.pid))[2]) == proc.pid
            signal.pidfd_send_signal(fd, signal.SIGKILL)
            if leads_group:  # QEMU's own helpers, if any, share its group
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
            killed.append(proc.pid)
        except (OSError, ValueError, IndexError):
            continue
        finally:
            os.close(fd)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_running(p) for p in killed):
        time.sleep(0.01)
    return killed


def _running(pid: int) -> bool:
    try:
        return _state(str(pid)) != "Z"
    except (OSError, IndexError):
        return False


def reap_own() -> list[int]:
    """Kill every tagged QEMU this process started that is still running."""
    return _kill([p for p in tagged_processes()
                  if p.owner is not None and p.owner.is_me() and is_qemu(p.exe)])


def reap_orphans(verdicts: Verdicts | None = None) -> list[int]:
    """Kill our QEMUs whose owner is gone (see the module text; ``verdicts``: a judgement
    already made); the pids killed."""
    return _kill((verdicts or judge_processes()).orphans)


def kill_qemus_of(owner_pids: set[int]) -> list[int]:
    """Kill the tagged QEMUs of this uid and namespace started by one of ``owner_pids``
    (child processes this process has just killed and reaped)."""
    return _kill([p for p in tagged_processes() if p.owner is not None and p.owner.pid in owner_pids
                  and _foreign(p.owner, p.tag, p.uid, p.pidns) is None and is_qemu(p.exe)])


# ---------------------------------------------------------------------------- run folders

def _read_owner(folder: Path) -> tuple[Owner | None, str]:
    """The folder's owner and the owner file's text ("" when absent, empty or a link)."""
    try:
        fd = os.open(folder / OWNER_FILE, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None, ""
    with os.fdopen(fd, errors="replace") as f:
        text = f.read(200)
    return Owner.parse(text), text


def judge_run_root(root: Path, *, now: float | None = None) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(what to remove, what to leave and why) among the run folders and owned files
    (:func:`owned_name`) under ``root``."""
    now = time.time() if now is None else now
    remove: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return remove, skipped
    me = os.getuid()
    for entry in entries:
        try:
            info = entry.lstat()
        except OSError:
            continue
        if info.st_uid != me:
            skipped.append((entry, f"belongs to uid {info.st_uid}"))
            continue
        if stat.S_ISREG(info.st_mode):
            match = _OWNED_NAME.search(entry.name)
            if match is None:
                continue  # not an owned file
            pid, start, uid, pidns = map(int, match.groups())
            owner = Owner(pid, start, uid, pidns)
            why = _foreign(owner, owner.text(), me, pidns)
            if why is None and not owner.gone():
                why = f"its owner {pid} is alive"
            (skipped.append((entry, why)) if why else remove.append(entry))
            continue
        if not stat.S_ISDIR(info.st_mode):
            continue  # links and the like are never followed
        owner, text = _read_owner(entry)
        if owner is None and text.strip():
            skipped.append((entry, _foreign(None, text, me, None) or ""))
            continue
        if owner is None:
            # A run folder gets its tag before it gets its name; only its staging name
            # (spawn.new_run_dir) can lack one, and that name says whose it is.
            match = _OWNED_NAME.search(entry.name)
            if match is None:
                skipped.append((entry, "no owner tag: not a run folder of the harness"))
                continue
            owner = Owner(*map(int, match.groups()))
        why = _foreign(owner, owner.text(), me, owner.pidns)
        if why is None and not owner.gone():
            why = f"its owner {owner.pid} is alive"
        if why is None:
            try:
                kept = (entry / KEEP_FILE).lstat().st_mtime
            except OSError:
                kept = None
            if kept is not None and now - kept < KEEP_GRACE:
                why = (f"marked keep; removed {KEEP_GRACE / 3600:g} h after it was made "
                       f"({(KEEP_GRACE - (now - kept)) / 3600:.1f} h left)")
        (skipped.append((entry, why)) if why else remove.append(entry))
    return remove, skipped


def sweep_orphan_run_dirs(root: Path, *, now: float | None = None) -> list[Path]:
    """Remove the run folders and owned files under ``root`` whose owner is gone."""
    remove, _ = judge_run_root(root, now=now)
    for path in remove:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return remove
