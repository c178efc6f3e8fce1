"""Starting a QEMU process: its run folder, its channels, its lifeline.

Everything here uses the standard library only and none of the harness's heavy modules
(no asyncio, no YAML, no NT model), so the command line can start QEMU first and import
the rest while QEMU initialises and SeaBIOS runs on the other core
(:mod:`harness.qemu.launchplan`).  :class:`~harness.qemu.machine.Machine` starts every
QEMU through :func:`spawn_qemu` as well, so there is one way a QEMU comes to life:

* QMP on a socketpair (no filesystem path), the qtest channel on another;
* the QMP capabilities negotiation, ``cont`` when the firmware should start at once, and
  any questions whose answers cannot change while QEMU runs, written into the socket
  before QEMU reads it.  QEMU starts paused (``-S``) and takes
  them as soon as its monitor runs, so the firmware starts with the monitor already in
  command mode and no QMP event of the run is lost, however late the client attaches;
* the lifeline (:mod:`harness.qemu.lifeline`) ties QEMU's life to this process;
* the owner tag (:mod:`harness.qemu.owner`) in its environment.
"""

from __future__ import annotations

import json
import os
import signal
import _socket  # socket.py's C core: socket.py itself (its enum classes) is ~3 ms before QEMU can start
import stat
import subprocess
import time

from ..names import RESERVED_ID_PREFIX
from . import lifeline
from .binary import which
from .owner import OWNER_ENV, OWNER_FILE, Owner, owned_name, owner_tag

#: Ids of the QMP commands written before QEMU starts (see :func:`spawn_qemu`); QEMU's
#: answers carry them, so the client can tell them from its own.
PRESENT_ID_PREFIX = "harness-launch-"
#: The id of the QMP chardev and monitor.
QMP_ID = f"{RESERVED_ID_PREFIX}-qmp"


class Spawned:
    """A QEMU process just started by :func:`spawn_qemu`: the process, the harness ends
    of its QMP and qtest sockets, when it started, and the QMP commands already sent
    (``(id, command, arguments)``, answered in order once QEMU's monitor runs)."""

    __slots__ = ("proc", "qmp", "qtest", "started", "sent")

    def __init__(self, proc: "subprocess.Popen[bytes]", qmp: "_socket.socket", qtest: "_socket.socket | None",
                 started: float, sent: "list[tuple[str, str, dict | None]]") -> None:
        self.proc, self.qmp, self.qtest, self.started, self.sent = proc, qmp, qtest, started, sent

    def kill(self) -> None:
        """End this QEMU at once (SIGKILL to its process group: it is ours) and close the
        sockets; for a QEMU nobody attached to."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5.0)
        except subprocess.TimeoutExpired:
            pass
        for sock in (self.qmp, self.qtest):
            if sock is not None:
                sock.close()


def spawn_qemu(argv: "list[str]", token: str, log_path: str, *, start_firmware: bool,
               qtest: bool, ask: "tuple[tuple[str, dict | None], ...]" = ()) -> Spawned:
    """Start QEMU with ``argv`` (which must hold ``-S``), QMP and (if ``qtest``) the qtest
    channel on socketpairs, its output appended to ``log_path``, and its monitor's first
    commands already written: the capabilities negotiation and, if ``start_firmware``,
    ``cont``, then the questions of ``ask`` (``(command, arguments)``: only ones whose
    answers cannot change while QEMU runs, :mod:`harness.qemu.qomfacts`).  The parent-death signal follows the thread that calls this: call it from a
    thread that lives as long as the QEMU (the main thread, or the harness loop thread)."""
    if "-S" not in argv:
        raise ValueError("spawn_qemu starts QEMU paused (-S) and lets it run with cont")
    binary = which(argv[0])
    if binary is None:
        from ..errors import HarnessError
        raise HarnessError(f"QEMU ({argv[0]}) is not installed or not on PATH; set HARNESS_QEMU")
    ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    qtest_ours, qtest_theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM) if qtest else (None, None)
    # Which accelerator QEMU took cannot change either: asked along, it costs no round trip;
    # under "-accel tcg" alone there is nothing to ask (each QMP command costs QEMU ~0.4 ms).
    accel = argv[argv.index("-accel") + 1] if "-accel" in argv[:-1] else None
    commands = [("qmp_capabilities", None), *([("cont", None)] if start_firmware else []),
                *([("query-kvm", None)] if accel != "tcg" else []), *ask]
    sent = [(f"{PRESENT_ID_PREFIX}{n}", command, arguments) for n, (command, arguments) in enumerate(commands)]
    # A socketpair buffers far more than these few bytes: QEMU reads them when it is ready.
    ours.sendall("".join(json.dumps({"execute": command, "id": ident,
                                     **({"arguments": arguments} if arguments is not None else {})}) + "\n"
                         for ident, command, arguments in sent).encode())
    passed = [s for s in (theirs, qtest_theirs) if s is not None]
    try:
        full = [*lifeline.command(os.getpid()), binary, *argv[1:],
                "-chardev", f"socket,id={QMP_ID},fd={theirs.fileno()}", "-mon", f"chardev={QMP_ID},mode=control"]
        if qtest_theirs is not None:
            from .qtest import qtest_args
            full += qtest_args(qtest_theirs.fileno())
        env = dict(os.environ, **{OWNER_ENV: owner_tag(token)})
        with open(log_path, "ab") as out:
            started = time.monotonic()
            proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    pass_fds=[s.fileno() for s in passed], start_new_session=True,
                                    env=env, close_fds=True)
    except BaseException:
        for sock in (ours, qtest_ours):
            if sock is not None:
                sock.close()
        raise
    finally:
        for sock in passed:
            sock.close()
    return Spawned(proc, ours, qtest_ours, started, sent)


def as_socket(raw: "_socket.socket") -> "socket.socket":
    """One of :class:`Spawned`'s socket ends as the socket module's object (what asyncio
    and qemu.qmp take), once importing that module no longer delays QEMU's start."""
    import socket
    return socket.socket(fileno=raw.detach())


def run_root() -> str:
    """Where run folders go: ``$HARNESS_RUN_DIR`` or a private folder in the temporary
    folder (``$TMPDIR``, ``$TEMP``, ``$TMP`` or /tmp, as :mod:`tempfile` looks)."""
    tmp = next((os.environ[v] for v in ("TMPDIR", "TEMP", "TMP") if os.environ.get(v)), "/tmp")
    root = os.environ.get("HARNESS_RUN_DIR") or os.path.join(tmp, f"harness-{os.getuid()}")
    from ..errors import HarnessError
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
    except OSError as exc:   # a file there, or a parent that cannot be made
        where = "HARNESS_RUN_DIR" if os.environ.get("HARNESS_RUN_DIR") else "the temporary folder"
        raise HarnessError(f"run folder root {root} ({where}) cannot be made: {exc.strerror}") from None
    info = os.lstat(root)  # not stat: a link planted in /tmp could aim the chmod anywhere
    if not stat.S_ISDIR(info.st_mode):
        raise HarnessError(f"run folder root {root} is a symbolic link or not a folder")
    if info.st_uid != os.getuid():
        raise HarnessError(f"run folder root {root} belongs to another user")
    os.chmod(root, 0o700)
    return root


def new_run_dir(name: str) -> str:
    """A fresh private run folder under :func:`run_root` for machine ``name``, tagged
    with this process's owner tag (and a fresh token: the machine's, :func:`folder_token`)
    from the first moment it exists under its name.

    It is made under a staging name that itself names the owner (``.new-…@<owner>``, which
    the sweep reads when a folder has no tag yet), tagged inside, then renamed into place:
    a process killed at any point leaves nothing the sweep cannot attribute."""
    root = run_root()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    prefix = f"{name[:24]}-{worker + '-' if worker else ''}"
    owner = owned_name("")
    while True:  # (tempfile.mkdtemp's way, without its imports: a fresh random name, 0700)
        staging = os.path.join(root, f".new-{os.urandom(6).hex()}{owner}")
        try:
            os.mkdir(staging, 0o700)
            break
        except FileExistsError:
            continue
    write_owner(staging, os.urandom(4).hex())
    while True:
        folder = os.path.join(root, prefix + os.urandom(6).hex())
        if not os.path.lexists(folder):
            os.rename(staging, folder)
            return folder


def folder_token(folder: "str | os.PathLike[str]") -> "str | None":
    """The token of ``folder``'s owner tag when this process wrote it (None otherwise): a
    folder :func:`new_run_dir` made is its machine's, tagged once (a file made costs
    ~0.25 ms of CPU on this ext4; reading one, ~0.02)."""
    try:
        fd = os.open(os.path.join(folder, OWNER_FILE), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with open(fd, encoding="utf-8", errors="replace") as f:
        owner = Owner.parse(f.read(200))
    return owner.token if owner is not None and owner.is_me() else None


def write_owner(folder: str, token: str) -> None:
    """The run folder's owner file, whole or absent (the sweep may read it any time)."""
    tmp = os.path.join(folder, f".{OWNER_FILE}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(owner_tag(token))
    os.replace(tmp, os.path.join(folder, OWNER_FILE))
