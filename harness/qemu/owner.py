"""Who made a QEMU process or a run folder: the owner tag both carry.

Every QEMU the harness spawns has ``HARNESS_OWNER=<tag>`` in its environment and every
run folder an ``owner`` file with the same tag (:mod:`harness.qemu.reaper` reads them).
Kept apart from the reaper and free of heavy imports: the CLI tags a run folder and
starts QEMU before it imports the rest of the harness (:mod:`harness.qemu.spawn`).
"""

from __future__ import annotations

import os
import re
from collections import namedtuple

#: Environment variable QEMU carries the tag in.
OWNER_ENV = "HARNESS_OWNER"
#: File in each run folder holding its owner's tag; a folder the user asked to keep has
#: KEEP_FILE beside it.
OWNER_FILE = "owner"
KEEP_FILE = "keep"
#: The owner part of a file name in the run root (``xdist-groups-<run>@<owner>.gw0.json``).
_OWNED_NAME = re.compile(r"@(\d+)-(\d+)-(\d+)-(\d+)(?:\.|$)")


class Owner(namedtuple("Owner", "pid start uid pidns token", defaults=("",))):
    """Who started a QEMU or made a run folder: pid, start time in clock ticks after boot
    (/proc/PID/stat field 22), uid, inode of /proc/PID/ns/pid, and the machine's token."""

    __slots__ = ()

    def text(self) -> str:
        return f"{self.pid}:{self.start}:{self.uid}:{self.pidns}:{self.token}"

    def stem(self) -> str:
        """The owner for a file name (see :func:`owned_name`)."""
        return f"{self.pid}-{self.start}-{self.uid}-{self.pidns}"

    @classmethod
    def parse(cls, text: str) -> "Owner | None":
        parts = text.strip().split(":")
        if len(parts) != 5 or not all(p.isdigit() for p in parts[:4]):
            return None  # an older harness's "pid:token", or not a tag at all
        return cls(int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3]), parts[4])

    @classmethod
    def me(cls, token: str = "") -> "Owner":
        pid = os.getpid()
        if _ME[0] != pid:  # read once per process (a forked child reads its own)
            _ME[:] = [pid, (pid, _start_time("self"), os.getuid(), _pidns("self"))]
        return cls(*_ME[1], token)

    def is_me(self) -> bool:
        me = Owner.me()
        return (self.pid, self.start, self.uid, self.pidns) == (me.pid, me.start, me.uid, me.pidns)

    def gone(self) -> bool:
        """Whether this owner no longer runs (only meaningful in its own namespace)."""
        try:
            return _start_time(str(self.pid)) != self.start or _state(str(self.pid)) == "Z"
        except (OSError, ValueError, IndexError):
            return True


#: This process's (pid, start, uid, pidns), and the pid it was read in.
_ME: list = [None, None]


def owner_tag(token: str) -> str:
    """This process's tag, as QEMU's environment and run folders carry it."""
    return Owner.me(token).text()


def owned_name(prefix: str) -> str:
    """A file name in the run root that the sweep can attribute to this process."""
    return f"{prefix}@{Owner.me().stem()}"


def _stat_fields(pid: str) -> list[str]:
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """The CPU time (user + system, all threads) process ``pid`` has used so far."""
    fields = _stat_fields(str(pid))
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # fields 14 and 15 of the line


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _start_time(pid: str) -> int:
    return int(_stat_fields(pid)[19])  # field 22 of the whole line


def _state(pid: str) -> str:
    return _stat_fields(pid)[0]


def stopped_by_signal(pid: int) -> bool:
    """Whether the process is stopped by a signal (SIGSTOP, a debugger), not running."""
    try:
        return _state(str(pid)) in ("T", "t")
    except (OSError, IndexError):
        return False


def _pidns(pid: str) -> int:
    link = os.readlink(f"/proc/{pid}/ns/pid")  # "pid:[4026531836]"
    return int(link[link.index("[") + 1:-1])
