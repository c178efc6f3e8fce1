"""One QEMU process: argv, launch, QMP, firmware, logs, shutdown.

The machine starts paused (``-S``) with QMP on a socketpair (no filesystem path), its
output and the QMP traffic going to files in a private run folder, and a parent-death
signal so it can never outlive the Python process.  Every call has a timeout; every
timeout error says what was waited for and shows the tail of the logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import select
import shlex
import shutil
import signal
import subprocess
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence

from qemu.qmp import QMPClient
from qemu.qmp import ExecuteError
from qemu.qmp.error import QMPError

from ..atomicio import write_text
from ..builtin import global_args
from ..names import memdev_backend_id
from ..config import (BUILTIN_IDE, DRIVE_CONTROLLERS, FIRMWARE_LOG_PORT, ID_RE, ID_RULE, ISA_BUS, NAME_RE, NAME_RULE,
                      RESERVED_ID_PREFIX, MachineSpec)
from ..devices import PROPERTY_KINDS, QEMU_NAME_RE, QEMU_NAME_RULE, QEMU_STRING_RE, QEMU_STRING_RULE
from ..errors import ConfigError, HarnessError
from . import loop as hloop
from .accel import resolve_accel
from .binaryfacts import BinaryFacts, query_key as _query_key
from .binary import QEMU_BINARY  # noqa: F401  (re-exported: argv[0])
from .bus import PCI_CONFIG_ADDRESS, PCI_CONFIG_DATA, PortChannel, machine_ports
from .owner import KEEP_FILE, stopped_by_signal
from .progress import END_POLL, END_RETRY_SECONDS, POLL_INTERVAL, FirmwareEnd, FirmwareWatch
from .qtest import QtestChannel, qtest_wanted
from .spawn import (Spawned, as_socket, folder_token, new_run_dir as _new_run_dir, run_root as _run_root, spawn_qemu,
                    write_owner)

if TYPE_CHECKING:
    from .launchplan import EarlyStart
    from .progress import Stall

#: Machine kinds pinned to versioned machine types, so a QEMU upgrade that changes the
#: ``pc``/``q35`` aliases cannot silently change the hardware under test.
MACHINE_TYPES = {"pc": "pc-i440fx-7.2", "q35": "pc-q35-7.2", "isapc": "isapc"}
UNIX_PATH_MAX = 107  # sun_path is 108 bytes including the terminating NUL

DEFAULT_QMP_TIMEOUT = 10.0
FIRMWARE_TIMEOUT = {"tcg": 30.0, "kvm": 180.0}  # nested KVM runs SeaBIOS 30-50x slower
#: How long ``quit`` may go unanswered before QEMU counts as hung (a round trip is 0.3 ms;
#: 2 s was once exceeded on a loaded 2-core host, and QEMU was then shut down by SIGTERM).
QUIT_TIMEOUT = 5.0
#: How long reaping a QEMU whose pidfd says it exited may take (another thread may hold the
#: waitpid lock; the reap itself takes microseconds).
EXITED_REAP_TIMEOUT = 5.0
#: Run states QEMU pauses itself in and never leaves on its own: a KVM internal error, an
#: I/O error under rerror/werror=stop, a guest panic, a watchdog with action=pause.
STUCK_STATES = frozenset({"internal-error", "io-error", "guest-panicked", "watchdog"})


@dataclass(frozen=True)
class GuestBoot:
    """A guest QEMU loads itself (``-kernel``), run after SeaBIOS, and its channels.

    ``report_port``: an isa-debugcon port whose bytes go to ``report.out`` in the run
    folder (a channel that never collides with a UART under test).  ``exit_port``: an
    isa-debug-exit (4 ports); a write of v makes QEMU exit with status (v << 1) | 1.
    ``console_slot``: a PCI slot for a harness pci-serial whose chardev is a unix socket
    (``console.sock``, logged to ``console.log``), for a guest driven with pexpect.
    ``agent_port`` / ``agent_irq``: a harness-owned ISA 16550 (id ``harness-agent``) whose
    chardev is the unix socket ``agent.sock``: the request channel of the probe guest's
    bus agent (:mod:`harness.guests.agent`).  HMP cannot write guest memory; a UART the
    guest polls can carry requests both ways.
    """

    kernel: Path
    append: str = ""
    initrd: Path | None = None
    report_port: int | None = None
    exit_port: int | None = None
    console_slot: int | None = None
    agent_port: int | None = None
    agent_irq: int | None = None


#: Ids of the devices and chardevs the harness adds for a guest's channels.
REPORT_ID = f"{RESERVED_ID_PREFIX}-report"
EXIT_ID = f"{RESERVED_ID_PREFIX}-exit"
CONSOLE_ID = f"{RESERVED_ID_PREFIX}-console"
AGENT_ID = f"{RESERVED_ID_PREFIX}-agent"
EXIT_PORTS = 4
AGENT_PORTS = 8  # a 16550's register block


class QEMUError(HarnessError):
    """Something went wrong with a QEMU process; carries where its logs are."""

    def __init__(self, message: str, *, machine: "Machine | None" = None, tail: bool = True) -> None:
        self.machine = machine
        text = message
        if machine is not None and tail:
            text += machine.log_tails()
        super().__init__(text)


class LaunchError(QEMUError):
    """QEMU did not come up: carries the argv, exit status and the end of its output."""

    def __init__(self, message: str, *, machine: "Machine", returncode: int | None) -> None:
        self.argv = list(machine.argv)
        self.returncode = returncode
        status = f"exit status {returncode}" if returncode is not None else "still running"
        super().__init__(f"{message} ({status})\n  argv: {shlex.join(machine.argv)}", machine=machine)


class QMPTimeout(QEMUError):
    pass


class FirmwareTimeout(QMPTimeout):
    """The firmware did not reach its end within its bound (:data:`FIRMWARE_TIMEOUT`); QEMU
    still runs.  A hung firmware and an overloaded host look alike from here."""

    def __init__(self, message: str, *, machine: "Machine | None" = None, seconds: float = 0.0) -> None:
        super().__init__(message, machine=machine)
        self.seconds = seconds

    @property
    def what(self) -> str:
        """What did not happen, for a finding."""
        return f"the firmware did not finish within {self.seconds:g} s"

    @property
    def how(self) -> str | None:
        """How the harness knew before the bound (:class:`FirmwareStalled`), else None."""
        return None


class FirmwareStalled(FirmwareTimeout):
    """The firmware provably stopped making progress before its bound (the watch of
    :mod:`harness.qemu.progress`: a spin, a halt with interrupts off, or a reboot wait
    past the bound); QEMU still runs.  ``seconds``: when the watch knew."""

    def __init__(self, stall: "Stall", *, machine: "Machine", waited_for: str = "the firmware's end") -> None:
        self.stall = stall
        self.waited_for = waited_for
        super().__init__(f"{waited_for} will never come: the firmware stopped after {stall.seconds:.1f} s "
                         f"({stall.how})", machine=machine, seconds=stall.seconds)

    @property
    def what(self) -> str:
        # A finding's line: the same every run (a repro bundle compares it), so no timings.
        text = f"the firmware stopped making progress ({self.stall.rule})"
        return text if self.waited_for == "the firmware's end" else f"{text}: {self.waited_for} will never come"

    @property
    def how(self) -> str | None:
        return f"{self.stall.how}, found after {self.seconds:.1f} s"


class MachineDied(QEMUError):
    pass


class GuestStopped(QEMUError):
    """The guest reset or shut the machine down (QEMU paused it) where an exit was awaited."""

    def __init__(self, message: str, *, machine: "Machine", reason: str) -> None:
        self.reason = reason
        super().__init__(message, machine=machine)


class MachineStuck(QEMUError):
    """QEMU paused itself in one of :data:`STUCK_STATES` while the harness waited; the
    harness has ended it (the awaited event could never come)."""

    def __init__(self, message: str, *, machine: "Machine", state: str) -> None:
        self.state = state
        super().__init__(message, machine=machine)


class _Client(QMPClient):
    """The QMP client of a QEMU whose capabilities were negotiated by commands written
    before it started (:func:`~harness.qemu.spawn.spawn_qemu`): it reads the greeting,
    skips the negotiation, and hands the answers to those commands (ids ``presented``)
    to futures instead of dropping them as unknown."""

    def __init__(self, name: str, presented: Sequence[str],
                 on_event: Callable[[Any], Awaitable[None]]) -> None:
        super().__init__(name)
        self.negotiate = False
        self.presented: dict[str, asyncio.Future[dict[str, Any]]] = {
            ident: asyncio.get_running_loop().create_future() for ident in presented}
        self.on_event = on_event

    # The library's message hooks log every message at DEBUG, and build the text first
    # (json.dumps with indent: the pure-Python encoder) whether or not DEBUG is on: about
    # 2 ms of CPU per machine for the monitor's larger answers.  Built only when logged.
    def _cb_inbound(self, msg: Any) -> Any:
        return super()._cb_inbound(msg) if self.logger.isEnabledFor(logging.DEBUG) else msg

    def _cb_outbound(self, msg: Any) -> Any:
        return super()._cb_outbound(msg) if self.logger.isEnabledFor(logging.DEBUG) else msg

    async def _on_message(self, msg: Any) -> None:
        if "event" in msg:
            # Straight to the machine, in the order QEMU sent it: not through the library's
            # event queue to a reader task (a task wake-up and a queue per event).
            await self.on_event(msg)
            return
        future = self.presented.get(msg.get("id"))
        if future is not None and not future.done():
            future.set_result(dict(msg))
            return
        await super()._on_message(msg)


class Machine:
    """A QEMU machine built from a :class:`MachineSpec`.

    Use as a context manager::

        with Machine(spec) as m:          # launched, paused before the firmware
            m.run_firmware()              # SeaBIOS done, paused again
            print(m.hmp("info pic"))
    """

    _live: "weakref.WeakSet[Machine]" = weakref.WeakSet()

    def __init__(self, spec: MachineSpec, *, run_dir: str | Path | None = None, keep: bool = False,
                 accel: str | None = None, qmp_timeout: float = DEFAULT_QMP_TIMEOUT,
                 extra_args: tuple[str, ...] = (), boot: GuestBoot | None = None,
                 early: "EarlyStart | None" = None) -> None:
        """``early``: a QEMU the command line started from a launch plan before ``spec``
        was read (:mod:`harness.qemu.launchplan`).  It is adopted if it runs exactly the
        command line built here from ``spec``; otherwise it is killed, its files removed,
        and this machine launches as usual.  Its run folder is this machine's (given as
        ``run_dir`` too when the caller keeps it after :meth:`close`)."""
        self.spec = spec
        self.boot = boot
        self.keep = keep
        self.qmp_timeout = qmp_timeout
        self.extra_args = tuple(extra_args)
        if early is not None and run_dir is not None and Path(run_dir) != Path(early.run_dir):
            early.discard()
            raise HarnessError("an early-started machine keeps its own run folder")
        try:
            self.accel = resolve_accel(accel or spec.accel)
        except BaseException:
            if early is not None:
                early.discard()
            raise
        if early is not None:
            run_dir_path = Path(early.run_dir)
        else:
            run_dir_path = Path(run_dir) if run_dir is not None else Path(_new_run_dir(spec.name))
        # A folder new_run_dir made carries its machine's token already (folder_token).
        self._token = early.token if early is not None else folder_token(run_dir_path) or os.urandom(4).hex()
        self.run_dir = run_dir_path
        self._own_run_dir = run_dir is None
        #: The early QEMU, if it runs this machine's command line (see launch()).
        self._early: Spawned | None = None
        #: Whether this machine runs on the QEMU of an early start (its plan was right).
        self.early_adopted = False
        try:
            self._prepare_run_dir()
            self.argv = build_argv(spec, self.run_dir, self.accel, self.extra_args, boot)
            self.early_adopted = early is not None and early.argv == self.argv and boot is None
            if early is not None and not self.early_adopted:
                # The plan was stale (a model, the harness or the environment changed).
                early.spawned.kill()
                shutil.rmtree(self.run_dir, ignore_errors=True)
                self._prepare_run_dir()
            if self.early_adopted:
                self._early = early.spawned
            else:
                create_drive_images(spec, self.run_dir)
        except BaseException:
            if early is not None and not self.early_adopted:
                early.spawned.kill()
            if self._own_run_dir or early is not None:
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise
        #: What this machine's QEMU binary answers whatever the machine (QOM type listings).
        self.binary_facts = BinaryFacts(self.argv[0])
        self.phase = "not-started"
        self.qemu_version: str | None = None
        self.accel_used: str | None = None
        self.firmware_seconds: float | None = None
        #: How the last firmware run ended: "log" (the harness stopped the machine at
        #: SeaBIOS's last line, :class:`~harness.qemu.progress.FirmwareEnd`) or "reboot"
        #: (its reboot, paused by the ``-action`` policy).
        self.firmware_end: str | None = None
        self.exit_outcome: str | None = None
        self._firmware_started = (0, 0.0)  # (event mark, monotonic start) of the firmware run
        self._firmware_log_from = 0  # where the firmware run's log starts in firmware.log
        #: What cannot change while this QEMU runs (its QOM tree: devices, their types and
        #: ISA resource properties), cached by the readers that ask (layout snapshots).
        self.static_facts: dict[str, Any] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: QMPClient | None = None
        #: The qtest socket (harness.qemu.qtest): the fast channel for port I/O.
        self.qtest: QtestChannel | None = None
        self._events: list[dict[str, Any]] = []
        #: Answers to questions written before QEMU started (spawn_qemu's ``ask``), by
        #: :func:`_query_key`, each handed out once by :meth:`qmp_many`.
        self._prefetched: dict[str, dict[str, Any]] = {}
        #: QOM questions asked of this QEMU with ``static=True`` (see :meth:`qmp_many`).
        self.static_questions: list[tuple[str, dict[str, Any] | None]] = []
        #: Every monitor command sent, in order (those written before QEMU started first):
        #: what may have changed the machine behind a bus that keeps what it read.
        self.commands: list[tuple[str, dict[str, Any] | None]] = []
        self._event_cond: asyncio.Condition | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._qmp_log = None
        self._closed = False
        self._quit_grace: float | None = None  # set once quit was sent (quit_soon)
        self._lock = threading.Lock()

    def _prepare_run_dir(self) -> None:
        """The run folder, private, tagged with this machine's owner tag (and keep mark)."""
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.run_dir, 0o700)
        if folder_token(self.run_dir) != self._token:   # (tagged once where new_run_dir made it)
            write_owner(str(self.run_dir), self._token)
        if self.keep:
            (self.run_dir / KEEP_FILE).touch()

    # ------------------------------------------------------------------ paths and logs
    @property
    def qemu_log(self) -> Path:
        return self.run_dir / "qemu.log"

    @property
    def qmp_log_path(self) -> Path:
        return self.run_dir / "qmp.log"

    @property
    def firmware_log(self) -> Path:
        return self.run_dir / "firmware.log"

    def chardev_path(self, device_id: str) -> Path:
        return self.run_dir / f"{device_id}.out"

    @property
    def report_path(self) -> Path:
        """What the guest wrote to its report port (see :class:`GuestBoot`)."""
        return self.run_dir / "report.out"

    @property
    def console_socket(self) -> Path:
        return self.run_dir / "console.sock"

    @property
    def agent_socket(self) -> Path:
        return self.run_dir / "agent.sock"

    @property
    def console_log(self) -> Path:
        """Everything the guest console sent, written by QEMU itself (complete even if
        the harness side crashes)."""
        return self.run_dir / "console.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        """QEMU's exit status once it has exited, else None."""
        return self._proc.poll() if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Launched and its QEMU process not exited (paused counts as running)."""
        return self._proc is not None and self._proc.poll() is None

    def log_tails(self, lines: int = 15) -> str:
        out = []
        for path in (self.qemu_log, self.qmp_log_path, self.report_path, self.console_log):
            tail = _tail(path, lines)
            if tail:
                out.append(f"\n  --- last lines of {path} ---\n" + "\n".join("  " + t for t in tail))
        return "".join(out)

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "Machine":
        if self._proc is None:  # a machine launched early is entered as it is
            self.launch()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def launch(self, timeout: float = 10.0, *, start_firmware: bool = False,
               ask: Sequence[tuple[str, dict[str, Any] | None]] = ()) -> None:
        """Start QEMU paused and connect QMP; raise :class:`LaunchError` if it fails.

        ``start_firmware``: QEMU runs the firmware as soon as its monitor does (``cont``
        written before it starts: :meth:`start_firmware` without a round trip); ``ask``:
        questions whose answers cannot change while QEMU runs
        (:data:`harness.qemu.qomfacts.STATIC_QUERIES`), answered meanwhile and handed out
        by :meth:`qmp_many`.  A machine built on an early start attaches to that QEMU
        instead (its firmware already running: :attr:`phase` is then ``firmware``)."""
        if self._proc is not None:
            raise HarnessError("machine already launched")
        write_text(self.run_dir / "argv.sh",
            "#!/bin/sh\n# The QEMU command line of this run; the harness adds QMP and qtest on socketpairs.\n"
            + "exec " + shlex.join(self.argv) + "\n", sync=False)  # the run folder is not kept durably
        self._qmp_log = open(self.qmp_log_path, "a", buffering=1, encoding="utf-8")
        Machine._live.add(self)
        early, self._early = self._early, None
        ask = [(c, a) for c, a in ask if self.binary_facts.answer(c, a) is None]
        started: list[Spawned] = []  # what the loop thread spawned, even if we never hear back

        def spawn() -> Spawned:
            started.append(spawn_qemu(self.argv, self._token, str(self.qemu_log), start_firmware=start_firmware,
                                      qtest=qtest_wanted(), ask=tuple(ask)))
            return started[0]

        try:
            if early is None:
                # Spawned on the loop thread (see loop.py): the death signal follows that thread.
                early = hloop.call_soon(spawn)
            self._proc = early.proc
            hloop.call(lambda: self._attach(early), timeout, lambda: self._launch_failed(
                f"QEMU did not answer QMP within {timeout:.0f} s"))
        except BaseException:
            if early is None:
                # Interrupted (SIGTERM, Ctrl-C) while the loop thread spawned QEMU: its
                # callbacks run in order, so once a later one has run the spawn is over,
                # and what it started is killed here, not left to the parent-death signal.
                with contextlib.suppress(BaseException):
                    hloop.call_soon(lambda: None, timeout=QUIT_TIMEOUT)
                early = started[0] if started else None
            if early is not None and self._proc is None:
                early.kill()
            self.close()  # the error carries the log tails; keep=True keeps the files
            raise
        if any(command == "cont" for _, command, _ in early.sent):
            self._firmware_started = (0, early.started)
            self.phase = "firmware"
        else:
            self.phase = "pre-firmware"

    async def _attach(self, spawned: Spawned) -> None:
        """Connect QMP to a QEMU :func:`~harness.qemu.spawn.spawn_qemu` started: the
        capabilities were negotiated by the commands written before it started; their
        answers are checked here, every event since is in :attr:`_events`."""
        for ident, command, arguments in spawned.sent:
            self._log_line("cmd", {"execute": command, "arguments": arguments, "id": ident,
                                   "written": "before QEMU started"})
            self.commands.append((command, arguments))
        if spawned.qtest is not None:
            self.qtest = QtestChannel(as_socket(spawned.qtest), timeout=self.qmp_timeout, on_timeout=lambda what, t: QMPTimeout(
                f"qtest {what!r} got no answer within {t:g} s", machine=self), on_closed=self._qtest_closed)
        self._event_cond = asyncio.Condition()
        exit_watch = asyncio.get_running_loop().create_task(self._watch_process())
        self._tasks.append(exit_watch)
        client = _Client(self.spec.name, [ident for ident, _, _ in spawned.sent], self._take_event)
        try:
            await client.connect(as_socket(spawned.qmp))
        except Exception as exc:
            # A firmware that ends QEMU at once can do so before connect() returns: QEMU
            # greeted, answered what it could and hung up, and the library, finding its
            # session already ending, fails the connect.  Up is up once QEMU greeted; what
            # it answered is handed out below.
            if client.greeting is None or not await _ended(exit_watch, 1.0):
                await asyncio.sleep(0.2)  # let QEMU finish writing its error
                raise self._launch_failed(f"QEMU failed to start ({type(exc).__name__}: {exc})") from None
        self._client = client
        q = client.greeting.QMP.version["qemu"]  # the greeting tells the version
        self.qemu_version = f"{q['major']}.{q['minor']}.{q['micro']}"
        self.binary_facts.check_version(f"{self.qemu_version} {client.greeting.QMP.version.get('package', '')}")
        self.accel_used = self.accel  # unless query-kvm says otherwise (asked unless -accel is tcg)
        for ident, command, arguments in spawned.sent:
            answer = await self._presented_answer(client.presented[ident], exit_watch)
            if answer is None:  # QEMU exited before it answered
                # Up is up once its monitor ran: a firmware that ends QEMU at once can do so
                # before the answers to cont or the questions are written (the vCPU runs the
                # moment cont is taken); whoever looks next finds it gone, with its status.
                if command == "qmp_capabilities" and not any(e["event"] == "RESUME" for e in self._events):
                    raise self._launch_failed("QEMU exited before its monitor ran")
                continue
            self._log_line("error" if "error" in answer else "ret", answer)
            if command in ("qmp_capabilities", "cont"):
                if "error" in answer:
                    raise self._launch_failed(f"QEMU refused {command!r}: {answer['error'].get('desc', answer)}")
            elif command == "query-kvm":
                if "return" in answer:
                    self.accel_used = "kvm" if answer["return"].get("enabled") else "tcg"
            else:  # a question asked ahead (harness.qemu.qomfacts): its answer waits for the asker
                self._prefetched[_query_key(command, arguments)] = answer
                if "return" in answer:
                    self.binary_facts.keep(command, arguments, answer["return"])
        self.binary_facts.save()
        self._log_line("info", {"qemu": self.qemu_version, "accel": self.accel_used, "pid": self.pid,
                                "early_start": self.early_adopted})

    @staticmethod
    async def _presented_answer(future: "asyncio.Future[dict[str, Any]]",
                                exit_watch: "asyncio.Task[None]") -> dict[str, Any] | None:
        """The answer to a command written before QEMU started, or None if QEMU exited
        (``exit_watch`` ended) without giving it (what it did say is still read from the
        socket first)."""
        if not future.done():
            await asyncio.wait([future, exit_watch], return_when=asyncio.FIRST_COMPLETED)
        if future.done():
            return future.result()
        try:
            return await asyncio.wait_for(asyncio.shield(future), 0.5)
        except asyncio.TimeoutError:
            return None

    def _qtest_closed(self, what: str) -> QEMUError:
        if self._exited_within(1.0):
            return MachineDied(f"QEMU exited (status {self._proc.returncode}) during qtest {what!r}", machine=self)
        return QEMUError(f"the qtest channel is closed (during {what!r})", machine=self)

    def _launch_failed(self, message: str) -> LaunchError:
        rc = self._proc.poll() if self._proc else None
        if self._proc is not None and rc is None:
            try:
                rc = self._proc.wait(0.5)
            except subprocess.TimeoutExpired:
                rc = None
        return LaunchError(message, machine=self, returncode=rc)

    async def _watch_process(self) -> None:
        """Log QEMU's exit and wake the event waiters: woken by the exit itself through a
        pidfd (polled every 50 ms where there are none)."""
        assert self._proc is not None
        proc = self._proc
        try:
            fd: int | None = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):  # no pidfds here, or already reaped
            fd = None
        if fd is not None:
            loop = asyncio.get_running_loop()
            exited = loop.create_future()
            loop.add_reader(fd, lambda: exited.done() or exited.set_result(None))
            try:
                await exited
            finally:
                loop.remove_reader(fd)
                os.close(fd)
        while proc.poll() is None:
            await asyncio.sleep(0.05)
        self._log_line("exit", {"returncode": proc.returncode})
        assert self._event_cond is not None
        async with self._event_cond:
            self._event_cond.notify_all()

    async def _take_event(self, message: Any) -> None:
        """A QMP event, as QEMU sends it (on the loop thread, from the client's reader):
        logged, kept, and every waiter woken."""
        assert self._event_cond is not None
        event = dict(message)
        self._log_line("event", event)
        async with self._event_cond:
            self._events.append(event)
            self._event_cond.notify_all()

    def _log_line(self, kind: str, payload: Any) -> None:
        if self._qmp_log is not None and not self._qmp_log.closed:
            self._qmp_log.write(json.dumps({"t": round(time.time(), 6), kind: payload}, default=str) + "\n")

    def close(self) -> None:
        """Shut QEMU down (quit → SIGTERM → SIGKILL, bounded) and clean up the run folder."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._terminate()
        finally:
            if self.qtest is not None:
                self.qtest.close()
            Machine._live.discard(self)
            if self._qmp_log is not None:
                self._qmp_log.close()
            if self._own_run_dir and not self.keep:
                shutil.rmtree(self.run_dir, ignore_errors=True)

    def quit_soon(self) -> None:
        """Ask QEMU to quit now and return without waiting for it to exit: the caller does
        its last work (writing its output) while QEMU tears down; :meth:`close` (the end of
        the ``with`` block) then waits for the exit and cleans up as always."""
        if self._quit_grace is None:
            self._quit_grace = self._send_quit()

    def _send_quit(self) -> float:
        """Send ``quit``; how long to wait for QEMU's exit after it (0: go to signals)."""
        proc = self._proc
        if proc is None or proc.poll() is not None or self._client is None:
            return 0.0
        try:
            hloop.call(lambda: self._execute("quit"), min(QUIT_TIMEOUT, self.qmp_timeout),
                       lambda: TimeoutError())
        except TimeoutError:
            return 0.0  # hung (or SIGSTOPped): waiting for it to quit is pointless
        except Exception:  # QEMU may close the socket before answering
            pass
        return 3.0

    def _terminate(self) -> None:
        proc = self._proc
        quit_grace = self._quit_grace if self._quit_grace is not None else self._send_quit()
        outcome = "not started"
        if proc is not None:
            outcome = _wait_or_escalate(proc, quit_grace)
        self.exit_outcome = outcome
        self._log_line("shutdown", {"outcome": outcome})
        try:
            hloop.call(self._disconnect, 5.0, lambda: TimeoutError())
        except Exception:
            pass
        self.phase = "stopped"

    async def _disconnect(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._client is not None:
            try:
                await self._client.disconnect()
            except Exception:  # after quit qemu.qmp may report EOF
                pass

    # ------------------------------------------------------------------ QMP and HMP
    def _require_running(self) -> None:
        if self._proc is None or self._client is None:
            raise HarnessError("machine is not launched")
        if self._proc.poll() is not None:
            raise MachineDied(f"QEMU exited with status {self._proc.returncode}", machine=self)
        if self.qtest is not None:
            self.qtest.flush()  # whatever looks at QEMU next sees every posted write

    def qmp(self, command: str, arguments: dict[str, Any] | None = None, *,
            timeout: float | None = None) -> Any:
        """Execute one QMP command and return its result."""
        self._require_running()
        timeout = self.qmp_timeout if timeout is None else timeout
        try:
            return hloop.call(lambda: self._execute(command, arguments), timeout, lambda: QMPTimeout(
                f"QMP command {command!r} got no answer within {timeout:g} s", machine=self))
        except ExecuteError as exc:  # QEMU answered with an error: it is alive
            raise QEMUError(f"QMP {command!r} failed: {exc}", machine=self, tail=False) from None
        except QMPError as exc:
            if self._exited_within(1.0):  # a dropped connection usually means QEMU is gone
                raise MachineDied(f"QEMU exited (status {self._proc.returncode}) during {command!r}",
                                  machine=self) from None
            raise QEMUError(f"QMP {command!r} failed: {exc}", machine=self, tail=False) from None

    def qmp_many(self, commands: Sequence[tuple[str, dict[str, Any] | None]], *,
                 timeout: float | None = None, static: bool = False) -> list[Any]:
        """Execute independent QMP commands with all of them in flight at once (QEMU
        answers in order); return each result, or the :class:`QEMUError` of a command QEMU
        refused, in order.  One hop to the event loop and no waiting between commands,
        instead of one round trip each.  A lost connection raises as :meth:`qmp` does.
        ``static``: QOM questions whose answers cannot change while this QEMU runs; they
        are noted in :attr:`static_questions` (a launch plan asks them ahead next time)."""
        if not commands:
            return []
        self._require_running()
        timeout = self.qmp_timeout if timeout is None else timeout
        # Answers already here: asked ahead at QEMU's start (each handed out once), or the
        # binary's own (harness.qemu.binaryfacts).  The rest go to QEMU, all in flight.
        out: list[Any] = []
        missing: list[int] = []
        if static:  # noted however they are answered: the plan that asked them keeps them
            self.static_questions += [q for q in commands if q not in self.static_questions]
        for index, (command, arguments) in enumerate(commands):
            prefetched = self._prefetched.pop(_query_key(command, arguments), None)
            kept = self.binary_facts.answer(command, arguments) if prefetched is None else None
            if prefetched is not None:
                out.append(self._answer_of(command, prefetched))
                if "return" in prefetched:
                    self.binary_facts.keep(command, arguments, prefetched["return"])
            elif kept is not None:
                out.append(kept)
            else:
                out.append(None)
                missing.append(index)
        if missing:
            asked = [commands[i] for i in missing]

            async def run() -> list[Any]:
                return await asyncio.gather(*(self._execute(c, a) for c, a in asked), return_exceptions=True)

            answers = hloop.call(run, timeout, lambda: QMPTimeout(
                f"{len(asked)} QMP commands from {asked[0][0]!r} got no answer within {timeout:g} s",
                machine=self))
            for index, (command, arguments), answer in zip(missing, asked, answers):
                if isinstance(answer, ExecuteError):
                    answer = QEMUError(f"QMP {command!r} failed: {answer}", machine=self, tail=False)
                elif isinstance(answer, QMPError):
                    if self._exited_within(1.0):
                        raise MachineDied(f"QEMU exited (status {self._proc.returncode}) during {command!r}",
                                          machine=self) from None
                    raise QEMUError(f"QMP {command!r} failed: {answer}", machine=self, tail=False) from None
                elif isinstance(answer, BaseException):
                    raise answer
                else:
                    self.binary_facts.keep(command, arguments, answer)
                out[index] = answer
        self.binary_facts.save()
        return out

    def _answer_of(self, command: str, message: dict[str, Any]) -> Any:
        """The result of an answer taken ahead of time, or the error QEMU gave, as qmp_many has them."""
        if "error" in message:
            return QEMUError(f"QMP {command!r} failed: {message['error'].get('desc', message['error'])}",
                             machine=self, tail=False)
        return message["return"]

    async def _execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """One QMP command on the loop thread, with command and answer in qmp.log."""
        assert self._client is not None
        self._log_line("cmd", {"execute": command, "arguments": arguments})
        self.commands.append((command, arguments))
        try:
            result = await self._client.execute(command, arguments)
        except QMPError as exc:
            self._log_line("error", {"execute": command, "error": str(exc)})
            raise
        self._log_line("ret", result)
        return result

    def _exited_within(self, seconds: float) -> bool:
        if self._proc is None:
            return False
        try:
            self._proc.wait(seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    def hmp(self, command_line: str, *, timeout: float | None = None) -> str:
        """Run a human-monitor command and return its text output."""
        return self.qmp("human-monitor-command", {"command-line": command_line}, timeout=timeout)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self._events if name is None or e["event"] == name]

    @property
    def event_count(self) -> int:
        """How many QMP events QEMU has sent so far (a cheap "did anything happen")."""
        return len(self._events)

    def wait_event(self, name: str, *, after: int = 0, timeout: float,
                   match: Callable[[dict[str, Any]], bool] | None = None, tail: bool = True) -> dict[str, Any]:
        """Wait for event ``name`` among events numbered ``after`` and later (``tail``: the
        timeout error shows the log tails; a caller that waits in steps skips reading them).

        A STOP on the way is checked: if QEMU paused itself in a state it never leaves
        (:data:`STUCK_STATES`), the event cannot come, so the machine is ended at once and
        :class:`MachineStuck` raised instead of waiting out ``timeout``.
        """
        self._require_running()
        start = time.monotonic()
        seen = after

        async def run() -> dict[str, Any] | None:
            """The event, or None at a STOP (its state is asked outside this wait)."""
            nonlocal seen
            assert self._event_cond is not None
            async with self._event_cond:
                while True:
                    stopped = False
                    for event in self._events[seen:]:
                        if event["event"] == name and (match is None or match(event)):
                            return event
                        stopped = stopped or event["event"] == "STOP"
                    seen = len(self._events)
                    if stopped:
                        return None
                    if self._proc is not None and self._proc.poll() is not None:
                        raise MachineDied(f"QEMU exited (status {self._proc.returncode}) "
                                          f"while waiting for event {name}", machine=self)
                    await self._event_cond.wait()

        while True:
            left = max(0.0, timeout - (time.monotonic() - start))
            found = hloop.call(run, left, lambda: QMPTimeout(
                f"event {name} did not arrive within {timeout:g} s", machine=self, tail=tail))
            if found is not None:
                return found
            # The state is asked with the monitor's own bound, not what is left of this
            # wait: the firmware's wait listens in 3 ms slices, and a panic before it began
            # went unseen whenever the answer took longer (livefuzz round five, the timing
            # invariant), to be reported as a firmware stalled 30 s later.
            try:
                state = self.status()
            except MachineDied:
                raise MachineDied(f"QEMU exited (status {self._proc.returncode}) while waiting for event {name}",
                                  machine=self) from None
            if state in STUCK_STATES:
                error = MachineStuck(
                    f"QEMU paused itself in state {state!r}, which it never leaves, "
                    f"{time.monotonic() - start:.2f} s into waiting for event {name} "
                    f"(limit {timeout:g} s); the harness ended it", machine=self, state=state)
                self.close()
                raise error

    def status(self) -> str:
        return self.qmp("query-status")["status"]

    def resume(self) -> None:
        """Let a paused machine run (``cont``)."""
        self.qmp("cont")
        self.phase = "running"

    def wait_exit(self, timeout: float, what: str, *, after_event: int = 0) -> int:
        """Wait until QEMU exits by itself and return its exit status.

        ``what`` says what the exit stands for (e.g. "the probe guest's isa-debug-exit");
        a timeout error names it and shows the log tails.  A guest that resets or shuts
        down instead (event number ``after_event`` or later) leaves QEMU paused by the
        ``-action`` policy: that raises :class:`GuestStopped` at once.
        """
        if self._proc is None:
            raise HarnessError("machine is not launched")
        if self.qtest is not None:
            self.qtest.flush()
        deadline = time.monotonic() + timeout
        while True:
            try:
                status = self._proc.wait(0.02)
                break
            except subprocess.TimeoutExpired:
                pass
            stops = [e for e in self._events[after_event:] if e["event"] == "SHUTDOWN"]
            if stops and any(e["event"] == "STOP" for e in self._events[after_event:]):
                reason = stops[0].get("data", {}).get("reason", "?")
                raise GuestStopped(f"the guest stopped the machine ({reason}) instead of {what}",
                                   machine=self, reason=reason)
            if time.monotonic() > deadline:
                raise QMPTimeout(f"QEMU did not exit within {timeout:g} s (waiting for {what})",
                                 machine=self)
        self.phase = "exited"
        return status

    # ------------------------------------------------------------------ firmware
    def run_firmware(self, timeout: float | None = None) -> float:
        """Run SeaBIOS to its end and leave the machine paused with its state intact.

        The end is where SeaBIOS gives up booting.  With the firmware's log the harness
        watches for that line (:class:`~harness.qemu.progress.FirmwareEnd`: "No bootable
        device.  Retrying in 5 seconds.") and stops the machine there, as SeaBIOS sleeps:
        its devices as it hands them to a boot loader, and its reboot (25-45 ms of QEMU CPU
        under TCG) never runs.  Without the log, ``-boot reboot-timeout=0 -action
        reboot=shutdown,shutdown=pause`` make that reboot a pause: wait for SHUTDOWN then
        STOP (qemu-facts.md §4); that is also the end if the line never shows.
        :attr:`firmware_end` says which.  A second call re-runs the firmware in the same
        process.  Returns the seconds the firmware took.  After :meth:`start_firmware` it
        only waits.
        """
        timeout = FIRMWARE_TIMEOUT[self.accel_used or self.accel] if timeout is None else timeout
        if self.phase != "firmware":
            self.start_firmware()
        mark, start = self._firmware_started
        deadline = time.monotonic() + timeout
        watch = FirmwareWatch(self, deadline)
        end = FirmwareEnd(self.firmware_log, self._firmware_log_from) \
            if reboot_timeout_ms(self.spec, self.boot) else None
        ended_by = "reboot"
        try:
            while True:
                # In steps, asking the watch between them whether the firmware still moves.
                left = deadline - time.monotonic()
                step = max(0.0, min(POLL_INTERVAL, left))
                if end is not None and self._until_end(end, step):
                    ended_by = "log"
                    break
                try:
                    self.wait_event("SHUTDOWN", after=mark, timeout=step if end is None else min(step, END_POLL),
                                    tail=False)
                    break
                except QMPTimeout:
                    if left <= POLL_INTERVAL:
                        waited = f"event SHUTDOWN did not arrive within {timeout:g} s"
                        if self._proc is None or self._proc.poll() is not None or stopped_by_signal(self._proc.pid):
                            # QEMU gone, or stopped (SIGSTOP): not the firmware's doing
                            raise QMPTimeout(waited, machine=self) from None
                        raise FirmwareTimeout(f"the firmware did not finish within {timeout:g} s ({waited})",
                                              machine=self, seconds=timeout) from None
                stall = watch.poll()
                if stall is not None and not any(e["event"] == "SHUTDOWN" for e in self._events[mark:]):
                    raise FirmwareStalled(stall, machine=self)
        finally:
            if end is not None:
                end.close()
        if ended_by == "log":
            # Both in flight: QEMU answers "stop" once the vCPU stopped (its STOP event first).
            stopped, status = self.qmp_many([("stop", None), ("query-status", None)])
            for answer in (stopped, status):
                if isinstance(answer, QEMUError):
                    raise answer
            state = status["status"]
        else:
            self.wait_event("STOP", after=mark, timeout=max(1.0, timeout - (time.monotonic() - start)))
            state = self.status()
        elapsed = time.monotonic() - start
        expected = "paused" if ended_by == "log" else "shutdown"
        if state != expected:
            # (A stuck state already ended the machine in wait_event.)
            raise QEMUError(f"firmware run ended in state {state!r}, expected {expected!r}", machine=self)
        self.phase = "post-firmware"
        self.firmware_seconds = elapsed
        self.firmware_end = ended_by
        return elapsed

    def _until_end(self, end: FirmwareEnd, seconds: float) -> bool:
        """Sleep in short slices for up to ``seconds`` while nothing happens: True as soon
        as the firmware's log shows its end; False at once when QEMU sends an event or
        exits (:meth:`wait_event` judges those), or when the time is up."""
        until = time.monotonic() + seconds
        seen = len(self._events)
        while True:
            if end.reached():
                return True
            if len(self._events) != seen or self._proc is None or self._proc.poll() is not None:
                return False
            left = until - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(END_POLL, left))

    def start_firmware(self) -> None:
        """Let the firmware run (from its start, again if it ran before) without waiting
        for its end, so the caller can work meanwhile (the CLI imports the NT model while
        SeaBIOS runs on another core); :meth:`run_firmware` then waits for the end.
        A machine whose firmware was started with QEMU (an early start) is left as it is."""
        if self.phase == "firmware":
            return
        if self.phase == "post-firmware":
            mark = len(self._events)
            self.qmp("set-action", {"reboot": "reset"})
            self.qmp("system_reset")
            self.wait_event("RESET", after=mark, timeout=self.qmp_timeout)
            self.qmp("set-action", {"reboot": "shutdown"})
            if self.firmware_end == "log" and self.spec.machine in PAM_REGISTERS:
                # after the reset: no BAR a step moved over 0xcf8-0xcff is left there
                self._unshadow_bios()
        with contextlib.suppress(OSError):
            self._firmware_log_from = self.firmware_log.stat().st_size  # this run's log follows
        self._firmware_started = (len(self._events), time.monotonic())
        self.qmp("cont")
        self.phase = "firmware"

    def _unshadow_bios(self) -> None:
        """Give the BIOS window back to the ROM, as the chipset's power-on PAM value does.
        Stopped before its reboot, SeaBIOS never copied its pristine image back over its
        shadow (its qemu_prep_reset), and QEMU's reset keeps the PAM registers: reset, it
        would find its own shadow, resume (measured: "In resume") and read the CMOS
        shutdown status, where a card on 0x70 halts it for good.  With the PAM registers
        at 0 the CPU leaving that reset POSTs from the ROM, which copies itself into the
        shadow again."""
        first = PAM_REGISTERS[self.spec.machine]
        ports = machine_ports(self)
        ports.transfer([op for offset in range(first, first + PAM_COUNT)
                        for op in (("out", PCI_CONFIG_ADDRESS, 4, PortChannel.config_address(0, 0, 0, offset)),
                                   ("out", PCI_CONFIG_DATA + (offset & 3), 1, 0))])


# ---------------------------------------------------------------------- argv
# Every text in a QEMU option below comes from a config (machine file, device model,
# matrix fragment, repro bundle, pytest marker) or from the run folder's path.  Each is
# checked against the form its kind allows and escaped (QEMU reads ",," as a literal
# comma) here, in the one place argv is built: config.py refuses the same values earlier,
# but a spec can also be built or altered in code.  A value that does not fit is a
# file:line: field error.

@dataclass(frozen=True)
class _Where:
    """Where a value came from, for the error that refuses it."""

    source: str
    line: int | None
    field: str

    def error(self, message: str) -> ConfigError:
        return ConfigError(message, source=self.source, line=self.line, field=self.field)


#: Text forms: (pattern, what it allows).  Property kinds (PROPERTY_KINDS) are the others.
_FORMS = {
    "str": (QEMU_STRING_RE, QEMU_STRING_RULE),
    "id": (ID_RE, ID_RULE),
    "name": (NAME_RE, NAME_RULE),
    "qemu-name": (QEMU_NAME_RE, QEMU_NAME_RULE),
}
_RUN_DIR = _Where("the run folder (HARNESS_RUN_DIR)", None, "run_dir")


async def _ended(task: "asyncio.Task[Any]", timeout: float) -> bool:
    """Whether ``task`` is done within ``timeout`` seconds (it is left running if not)."""
    await asyncio.wait([task], timeout=timeout)
    return task.done()


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _arg(value: Any, form: str, where: _Where, *, choices: tuple[Any, ...] = ()) -> str:
    """``value`` as option text, once it has ``form``: a kind of :data:`PROPERTY_KINDS`
    (integers in range, ``bool``, ``str``: :data:`QEMU_STRING_RE` and one of ``choices``
    if given), a key of :data:`_FORMS`, or ``path`` (a file in the run folder: anything
    but NUL and line breaks)."""
    if form == "bool":
        if not isinstance(value, bool):
            raise where.error(f"expected true or false, got {_show(value)}")
        return "on" if value else "off"
    bounds = PROPERTY_KINDS.get(form)
    if bounds is not None:
        lo, hi = bounds
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise where.error(f"{_show(value)} is not a valid {form} value: an integer {lo:#x}..{hi:#x}")
        return str(value)
    if not isinstance(value, str):
        raise where.error(f"expected a string, got {_show(value)}")
    if form == "path":
        if any(c in value for c in "\0\n\r"):
            raise where.error(f"{_show(value)} contains a NUL or a line break")
    elif not _FORMS[form][0].fullmatch(value):
        raise where.error(f"{_show(value)} is not a valid {form}: {_FORMS[form][1]}")
    if choices and value not in choices:
        raise where.error(f"{_show(value)} is not one of: {', '.join(map(str, choices))}")
    return value.replace(",", ",,")


def _form_of(value: Any) -> str:
    """The form of a model's ``always`` value (typed by its YAML)."""
    return "bool" if isinstance(value, bool) else "int" if isinstance(value, int) else "str"


def machine_buses(spec: MachineSpec, index: int) -> dict[str, str]:
    """The buses device ``index`` of ``spec`` may name (as its machine file does) and
    QEMU's name for each: bridges and root ports listed before it (QEMU names a bridge's
    secondary bus after the bridge), an drive controller's bus (``<id>.0``), the board's ISA
    bus (``isa.0``).  tests/test_security.py checks these names against ``info qtree``."""
    dev = spec.devices[index]
    if dev.model.bus in ("pci", "pcie"):
        return {d.id: d.id for d in spec.devices[:index] if d.model.bridge}
    if dev.model.bus in DRIVE_CONTROLLERS:
        controller = DRIVE_CONTROLLERS[dev.model.bus]
        return {d.id: f"{d.id}.0" for d in spec.devices if d.model.qemu_driver == controller}
    return {ISA_BUS: "isa.0"}


def _int_in(value: Any, lo: int, hi: int, where: _Where) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise where.error(f"{_show(value)} is not an integer {lo}..{hi}")
    return value


def build_argv(spec: MachineSpec, run_dir: Path, accel: str, extra_args: tuple[str, ...] = (),
               boot: GuestBoot | None = None) -> list[str]:
    """The QEMU command line for ``spec`` (QMP is added at launch: it is an fd)."""
    at = lambda key: _Where(spec.source, None, key)  # noqa: E731
    if not isinstance(spec.machine, str) or spec.machine not in MACHINE_TYPES:
        raise at("machine").error(f"{_show(spec.machine)} is not one of {', '.join(MACHINE_TYPES)}")
    if not isinstance(accel, str) or accel not in FIRMWARE_TIMEOUT:
        raise at("accel").error(f"{_show(accel)} is not one of {', '.join(FIRMWARE_TIMEOUT)}")
    machine_opts = MACHINE_TYPES[spec.machine]
    argv = [QEMU_BINARY, "-name", f"guest={_arg(spec.name, 'name', at('name'))}",
            "-machine", machine_opts, "-accel", accel,
            "-m", str(_int_in(spec.memory_mib, 1, 1 << 20, at("memory"))),
            "-nodefaults", "-display", "none", "-S",
            "-boot", f"reboot-timeout={reboot_timeout_ms(spec, boot)}",
            "-action", "reboot=shutdown,shutdown=pause"]
    if accel == "kvm":
        # HMP port I/O cannot reach the in-kernel PIC (qemu-facts.md §6); split keeps it in QEMU.
        argv[argv.index(machine_opts)] = machine_opts + ",kernel-irqchip=split"
        argv += ["-cpu", "qemu64,-pni"]
    if spec.firmware_log:
        fw = f"{RESERVED_ID_PREFIX}-fwlog"
        argv += ["-chardev", f"file,id={fw},path={_arg(str(run_dir / 'firmware.log'), 'path', _RUN_DIR)}",
                 "-device", f"isa-debugcon,id={fw},iobase={FIRMWARE_LOG_PORT:#x},chardev={fw}"]
    argv += global_args(spec.builtin)  # the board's own devices (harness.builtin)
    if any(d.model.backend == "audiodev" for d in spec.devices):
        argv += ["-audiodev", f"none,id={RESERVED_ID_PREFIX}-snd"]
    seen: set[str] = set()
    for index, dev in enumerate(spec.devices):
        # One QEMU id namespace: a repeated id, or one of the harness's own, would take
        # over another device's chardev, drive or bus.
        argv += _device_args(spec, index, run_dir)  # (refuses an id that is not an id)
        if dev.id in seen or dev.id.lower().startswith(RESERVED_ID_PREFIX):
            raise _Where(spec.source, dev.line, f"devices[{index}].id").error(
                f"{dev.id!r} is used twice or reserved for the harness ({RESERVED_ID_PREFIX}-*)")
        seen.add(dev.id)
    if boot is not None:
        argv += _boot_args(spec, boot, run_dir)
    _check_unix_paths(run_dir)
    return argv + list(extra_args)


#: The host bridge's PAM registers (shadow-RAM control of 0xc0000-0xfffff; the i440FX's
#: PAM0-6 at 0x59, the Q35 MCH's at 0x90), 0 at power-on: every segment reads ROM or the
#: bus.  isapc has none.
PAM_REGISTERS = {"pc": 0x59, "q35": 0x90}
PAM_COUNT = 7


def reboot_timeout_ms(spec: MachineSpec, boot: GuestBoot | None = None) -> int:
    """SeaBIOS's wait before its reboot when nothing boots: the firmware's end is the log's
    line about that wait when the harness reads the log (no guest to boot), else the reboot
    itself (:meth:`Machine.run_firmware`)."""
    return END_RETRY_SECONDS * 1000 if spec.firmware_log and boot is None else 0


def _agent_serial_index(spec: MachineSpec) -> int:
    """The ``index`` of the agent's isa-serial, which comes after the file's devices: QEMU
    numbers isa-serials in -device order (an explicit index aside) and refuses one numbered
    past the last, so beside four COM ports the agent was a fifth and QEMU exited (livefuzz
    round three).  An index no COM port of the file has, else 0: the index only picks the
    default base and IRQ, which the agent's are not."""
    serials = [d for d in spec.devices if d.model.qemu_driver == "isa-serial"]
    if not serials:
        return 0
    index = serials[0].model.instance_property or "index"
    used = {d.settings[index] if index in d.explicit else n for n, d in enumerate(serials)}
    return next((i for i in serials[0].model.properties[index].choices if i not in used), 0)


def _boot_args(spec: MachineSpec, boot: GuestBoot, run_dir: Path) -> list[str]:
    """-kernel/-initrd/-append and the guest's channels, each checked against the spec."""
    args: list[str] = []
    for label, path in (("kernel", boot.kernel), ("initrd", boot.initrd)):
        if path is None:
            continue
        if not Path(path).is_file():
            raise HarnessError(f"guest {label} {path} does not exist")
        if "," in str(path):
            raise HarnessError(f"guest {label} path {path} contains a comma")
        args += [f"-{label}", str(path)]
    if not all(" " <= c <= "~" for c in boot.append):
        raise HarnessError(f"guest command line must be printable ASCII: {boot.append!r}")
    if boot.append:
        args += ["-append", boot.append]
    taken = [(dev.id, lo, hi) for dev in spec.devices
             for kind, lo, hi in dev.decoded_resources() if kind == "port"]
    for label, port, length in (("report", boot.report_port, 1), ("exit", boot.exit_port, EXIT_PORTS),
                                ("agent", boot.agent_port, AGENT_PORTS)):
        if port is None:
            continue
        if not 0 <= port <= 0x10000 - length:
            raise HarnessError(f"guest {label} port {port:#x} is outside the I/O space")
        for dev_id, lo, hi in taken:
            if port <= hi and lo <= port + length - 1:
                raise HarnessError(f"guest {label} port {port:#x} collides with device {dev_id!r} "
                                   f"({lo:#x}-{hi:#x}) of {spec.source}")
    def path(name: str) -> str:
        return _arg(str(run_dir / name), "path", _RUN_DIR)

    if boot.report_port is not None:
        args += ["-chardev", f"file,id={REPORT_ID},path={path('report.out')}",
                 "-device", f"isa-debugcon,id={REPORT_ID},iobase={boot.report_port:#x},chardev={REPORT_ID}"]
    if boot.exit_port is not None:
        args += ["-device", f"isa-debug-exit,id={EXIT_ID},iobase={boot.exit_port:#x},iosize={EXIT_PORTS}"]
    if boot.agent_port is not None:
        irq = boot.agent_irq
        used_irqs = {dev.id: v for dev in spec.devices for k, v in dev.settings.items() if k == "irq"}
        if irq is None or not 0 <= irq < 16 or irq == 2 or irq in used_irqs.values():
            raise HarnessError(f"guest agent IRQ {irq} is not a free ISA line of {spec.source} "
                               f"(devices use {sorted(set(used_irqs.values()))})")
        chardev = f"{AGENT_ID}-chr"
        args += ["-chardev", f"socket,id={chardev},path={path('agent.sock')},server=on,wait=off",
                 "-device", f"isa-serial,id={AGENT_ID},iobase={boot.agent_port:#x},irq={irq},chardev={chardev},"
                            f"index={_agent_serial_index(spec)}"]
    if boot.console_slot is not None:
        used = {dev.slot for dev in spec.devices if dev.bus is None and dev.slot is not None}
        if spec.machine == "isapc" or not 1 <= boot.console_slot <= 31 or boot.console_slot in used:
            raise HarnessError(f"console slot {boot.console_slot} is not a free PCI slot of {spec.source}")
        chardev = f"{CONSOLE_ID}-chr"
        args += ["-chardev", f"socket,id={chardev},path={path('console.sock')},"
                             f"server=on,wait=off,logfile={path('console.log')},logappend=off",
                 "-device", f"pci-serial,id={CONSOLE_ID},chardev={chardev},addr={boot.console_slot:#x}"]
    return args


def _device_args(spec: MachineSpec, index: int, run_dir: Path) -> list[str]:
    """-device (and its -chardev/-drive) for device ``index``, every text checked."""
    dev = spec.devices[index]
    model = dev.model
    at = lambda key: _Where(spec.source, dev.line, f"devices[{index}].{key}")  # noqa: E731
    of_model = lambda key: _Where(model.source or model.name, None, key)  # noqa: E731
    dev_id = _arg(dev.id, "id", at("id"))
    opts = [_arg(model.qemu_driver, "qemu-name", of_model("qemu_driver")), f"id={dev_id}"]
    args: list[str] = []
    if model.backend == "chardev":
        chr_id = f"{RESERVED_ID_PREFIX}-chr-{dev_id}"
        args += ["-chardev", f"file,id={chr_id},path={_arg(str(run_dir / (dev.id + '.out')), 'path', _RUN_DIR)}"]
        opts.append(f"chardev={chr_id}")
    elif model.backend == "audiodev":
        opts.append(f"audiodev={RESERVED_ID_PREFIX}-snd")
    elif model.backend == "drive":
        image_arg = _arg(str(run_dir / drive_image(dev)), "path", _RUN_DIR)
        drv = f"{RESERVED_ID_PREFIX}-drv-{dev_id}"
        args += ["-drive", f"if=none,id={drv},file={image_arg},format=raw"]
        opts.append(f"drive={drv}")
    elif model.backend == "bmc":
        bmc = f"{RESERVED_ID_PREFIX}-bmc-{dev.id}"
        args += ["-device", f"ipmi-bmc-sim,id={bmc}"]
        opts.append(f"bmc={bmc}")
    elif model.backend == "memdev":
        mem = memdev_backend_id(dev_id)
        size = _int_in(model.memdev_size, 0x1000, 1 << 30, of_model("memdev_size"))
        args += ["-object", f"memory-backend-ram,id={mem},size={size}"]
        opts.append(f"memdev={mem}")
    elif model.backend == "canbus":
        # a bus of its own (the card's channels on it), so no two cards talk
        bus = f"{RESERVED_ID_PREFIX}-can-{dev_id}"
        args += ["-object", f"can-bus,id={bus}"]
        opts += [f"{_arg(name, 'qemu-name', of_model('canbus_properties'))}={bus}" for name in model.canbus_properties]
    for key, value in model.always.items():
        where = of_model(f"always.{key}")
        opts.append(f"{_arg(key, 'qemu-name', where)}={_arg(value, _form_of(value), where)}")
    # Every resolved setting is passed, defaults included, so QEMU gets exactly what the
    # spec (and every expectation computed from it) says.
    for key in sorted(dev.settings):
        prop = model.properties.get(key) if isinstance(key, str) else None
        if prop is None:
            raise at(key).error(f"{_show(key)} is not a property of device model {model.name}")
        name = _arg(key, "qemu-name", of_model(f"properties.{key}"))
        choices = prop.choices if prop.kind == "str" else ()
        opts.append(f"{name}={_arg(dev.settings[key], prop.kind, at(key), choices=choices)}")
    opts += [f"{_arg(name, 'qemu-name', of_model('chassis_properties'))}={_chassis(dev)}"
             for name in model.chassis_properties]
    if dev.bus is not None:
        where = at("controller" if model.bus in DRIVE_CONTROLLERS else "bus")
        buses = machine_buses(spec, index)
        if not isinstance(dev.bus, str) or dev.bus not in buses:
            raise where.error(f"{_show(dev.bus)} is not a bus of this machine that {model.name} can "
                              f"sit on (those are: {', '.join(buses) or 'none'})")
        opts.append(f"bus={buses[dev.bus]}")
    if dev.slot is not None:
        where = at("addr")
        opts.append(f"addr={_int_in(dev.slot, 0, 31, where):#x}.{_int_in(dev.function, 0, 7, where)}")
    if dev.multifunction:
        opts.append("multifunction=on")
    if getattr(dev, "channel", None) is not None:
        channels = BUILTIN_IDE.get(spec.machine, (0, 0))[0]
        opts.append(f"bus=ide.{_int_in(dev.channel, 0, channels - 1, at('channel'))}")  # the board's IDE bus
    if dev.unit is not None:
        opts.append(f"unit={_int_in(dev.unit, 0, 1, at('unit'))}")
    return args + ["-device", ",".join(opts)]


#: A drive device's medium: a blank 1.44 MB floppy, sparse.
DRIVE_IMAGE_BYTES = 1474560


def drive_image(dev: Any) -> str:
    """The file name, in the run folder, of a drive device's blank medium."""
    return f"{dev.id}.img"


def drive_images(spec: MachineSpec) -> list[str]:
    """The file names of ``spec``'s drive devices' blank media."""
    return [drive_image(dev) for dev in spec.devices if dev.model.backend == "drive"]


def create_drive_images(spec: MachineSpec, run_dir: Path) -> None:
    """Create the blank media of ``spec``'s drive devices in ``run_dir`` (before QEMU
    opens them; :func:`build_argv` only names them)."""
    for name in drive_images(spec):
        with open(run_dir / name, "wb") as f:
            f.truncate(DRIVE_IMAGE_BYTES)


def _chassis(dev: Any) -> int:
    # Unique per bridge within a machine and stable: derived from the id.
    import zlib
    return 1 + zlib.crc32(dev.id.encode()) % 250


def _check_unix_paths(run_dir: Path) -> None:
    # Console sockets live in the run folder; refuse a folder whose paths cannot fit.
    longest = str(run_dir / "console.sock")
    if len(longest.encode()) > UNIX_PATH_MAX:
        raise HarnessError(f"run folder {run_dir} is too long for unix sockets "
                           f"({len(longest.encode())} > {UNIX_PATH_MAX} bytes); set HARNESS_RUN_DIR "
                           "to a shorter folder")


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


def _wait_or_escalate(proc: subprocess.Popen[bytes], quit_grace: float) -> str:
    for sig, grace, label in ((None, quit_grace, "quit"), (signal.SIGTERM, 2.0, "SIGTERM"),
                              (signal.SIGKILL, 5.0, "SIGKILL")):
        if sig is not None:
            _signal(proc, sig)
            if sig == signal.SIGTERM:
                _signal(proc, signal.SIGCONT)  # a SIGSTOPped QEMU acts on SIGTERM once continued
        if _wait_exit(proc, grace):
            return f"exited after {label} (status {proc.returncode})"
    return "did not exit after SIGKILL"


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Whether ``proc`` exited (and was reaped) within ``timeout`` seconds.  Woken by the
    exit itself through a pidfd, where Popen.wait(timeout) polls with growing sleeps (a
    QEMU that quits in 5 ms was noticed 2-4 ms late)."""
    if proc.poll() is not None:
        return True
    if timeout <= 0:
        return False
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfds here: Popen's own polling
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        return proc.poll() is not None
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    if not ready:
        return proc.poll() is not None
    # It has exited.  poll() answers None while another thread (the loop's exit watcher)
    # holds Popen's waitpid lock to reap it, so wait for whichever reaps it: a plain poll()
    # here once sent SIGTERM to a QEMU that had already quit.
    try:
        proc.wait(EXITED_REAP_TIMEOUT)
    except subprocess.TimeoutExpired:
        return False
    return True


def start_running(spec: MachineSpec, early: "EarlyStart | None" = None) -> "Machine | None":
    """``spec``'s machine launched with its firmware running and the layout's QOM questions
    asked (on the QEMU of ``early`` when its plan was right), in a run folder the caller
    removes after :meth:`Machine.close` (the main job copies its logs first), so that the
    caller imports the NT model while SeaBIOS runs on another core (``harness run``, matrix
    workers).  None if QEMU could not be started: the job then launches it again itself
    and reports the failure with QEMU's logs, as it always has."""
    from .qomfacts import STATIC_QUERIES
    # A folder the machine does not own outlives its close() for the job's copy, and carries
    # the owner tag from the start (no keep mark: the sweep removes it if we are killed).
    run_dir = Path(early.run_dir) if early is not None else new_run_dir(spec.name)
    try:
        machine = Machine(spec, run_dir=run_dir, early=early)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    try:
        if not machine.early_adopted:
            machine.launch(start_firmware=True, ask=STATIC_QUERIES)
        else:
            machine.launch()
    except BaseException as exc:  # Ctrl-C/SIGTERM too: the folder must not outlive us
        machine.close()
        shutil.rmtree(machine.run_dir, ignore_errors=True)
        if isinstance(exc, HarnessError):
            return None
        raise
    return machine


def run_root() -> Path:
    """Where run folders go: ``$HARNESS_RUN_DIR`` or a private folder under /tmp
    (:func:`harness.qemu.spawn.run_root`)."""
    return Path(_run_root())


def new_run_dir(name: str) -> Path:
    """A fresh private run folder under :func:`run_root` for machine ``name``."""
    return Path(_new_run_dir(name))


def _tail(path: Path, lines: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 8192))
            data = f.read().decode(errors="replace")
    except OSError:
        return []
    return data.splitlines()[-lines:]


def close_all() -> None:
    """Shut down every machine still open in this process (atexit, session end)."""
    for machine in list(Machine._live):
        try:
            machine.close()
        except Exception:
            pass


import atexit  # noqa: E402  (registered once the module is complete)

atexit.register(close_all)
