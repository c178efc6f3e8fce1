"""A second channel to a machine's hardware: QEMU's qtest line protocol on a socketpair.

QEMU 7.2 accepts ``-object qtest,chardev=ID`` without the qtest *accelerator* (which this
Debian build lacks): TCG or KVM keep running the guest and ``qtest_enabled()`` stays false,
so the machine behaves exactly as without it (qemu-facts.md; tests/test_machine.py checks
the firmware still runs).  Its commands are plain lines answered in order::

    inb 0x3f8            -> OK 0x0000
    outl 0xcf8 0x80001000 -> OK
    read 0xb0000000 16   -> OK 0x8680c029...

``inb``/``outb`` go through ``cpu_inb``/``cpu_outb``, the same calls HMP ``i``/``o`` make,
so every device side effect is the same.  What it saves: no JSON, no human-monitor parsing
and no hop to the harness's event-loop thread; a port access costs ~30 µs instead of
~1 ms through QMP ``human-monitor-command``, and several lines can be sent at once
(:meth:`QtestChannel.execute`).  Inside :meth:`QtestChannel.posting` writes are *posted*:
they wait in order and go out with the next command that needs an answer, at the end of
the block, or before any QMP command or wait of the machine (:meth:`flush`), so nothing
that observes QEMU can see a write missing.  Port I/O (:mod:`harness.qemu.bus`) uses it whenever the
machine has it; QMP stays the channel for everything else (events, run state, QOM, HMP
``info``).
"""

from __future__ import annotations

import os
import select
import threading
import time
from contextlib import contextmanager
TYPE_CHECKING = False  # typing itself takes ms to import, on the way to QEMU's start (spawn.py)
if TYPE_CHECKING:
    import socket
    from typing import Callable, Iterator, Sequence

from ..names import RESERVED_ID_PREFIX
from ..errors import HarnessError

QTEST_ID = f"{RESERVED_ID_PREFIX}-qtest"
#: Lines QEMU sends unasked (only with irq_intercept_*, which the harness does not use).
_UNSOLICITED = ("IRQ ",)
#: The qtest commands that only read; every other one may change the machine.
_READS = frozenset({"inb", "inw", "inl", "read", "readb", "readw", "readl", "readq", "b64read"})


class QtestError(HarnessError):
    """QEMU refused a qtest command (``FAIL``/``ERR``): it is alive, the command was bad."""


def qtest_args(fd: int) -> list[str]:
    """QEMU options that serve the qtest protocol on the inherited socket ``fd``."""
    # log: without it QEMU writes every command and answer to its stderr (qemu.log).
    return ["-chardev", f"socket,id={QTEST_ID},fd={fd}",
            "-object", f"qtest,id={QTEST_ID},chardev={QTEST_ID},log=/dev/null"]


class QtestChannel:
    """The harness end of the qtest socket: synchronous, thread-safe, every call bounded.

    ``on_timeout(what, seconds)`` and ``on_closed(what)`` build the errors to raise (the
    machine's, with its log tails)."""

    def __init__(self, sock: socket.socket, *, timeout: float,
                 on_timeout: Callable[[str, float], BaseException],
                 on_closed: Callable[[str], BaseException]) -> None:
        self._sock = sock
        self._sock.setblocking(False)
        self.timeout = timeout
        self._on_timeout = on_timeout
        self._on_closed = on_closed
        self._buffer = b""
        self._lock = threading.Lock()
        self._posted: list[str] = []
        self._posting = 0  # depth of nested posting() blocks
        self.commands = 0  # lines sent, for benchmarks and tests
        self.exchanges = 0  # sends that waited for answers
        #: Lines sent (or posted) that may change the machine (port and memory writes):
        #: LiveBus compares it with its own writes to see writes made behind its back.
        self.writes = 0

    @contextmanager
    def posting(self) -> Iterator[None]:
        """Within the block, :meth:`post` queues writes instead of sending each one."""
        self._posting += 1
        try:
            yield
        finally:
            self._posting -= 1
            if not self._posting:
                self.flush()

    def post(self, lines: Sequence[str]) -> None:
        """Commands whose answer is only ``OK`` (writes): queued inside :meth:`posting`,
        sent at once outside it."""
        if self._posting:
            if any("\n" in line for line in lines):
                raise HarnessError("a qtest command is one line")
            self._posted.extend(lines)
            self.writes += _writes_in(lines)
        else:
            self.execute(lines)

    def flush(self) -> None:
        """Send the posted writes now (before anything else looks at the machine)."""
        if self._posted:
            self.execute([])

    def execute(self, lines: Sequence[str], *, timeout: float | None = None) -> list[str]:
        """Send every line at once and return QEMU's answers in order (``OK`` stripped:
        ``""`` for a write, ``"0x..."`` for a read)."""
        if any("\n" in line for line in lines):
            raise HarnessError("a qtest command is one line")
        self.writes += _writes_in(lines)  # (posted ones were counted when posted)
        with self._lock:
            lines = [*self._posted, *lines]
            posted, self._posted = len(self._posted), []
            if not lines:
                return []
            timeout = self.timeout if timeout is None else timeout
            what = lines[0] if len(lines) == 1 else f"{len(lines)} commands from {lines[0]!r}"
            deadline = time.monotonic() + timeout
            if self._sock.fileno() < 0:
                raise self._on_closed(what)
            self._send(("\n".join(lines) + "\n").encode(), deadline, what, timeout)
            self.commands += len(lines)
            self.exchanges += 1
            answers = [self._answer(deadline, what, timeout) for _ in lines]
        out = []
        for line, answer in zip(lines, answers):
            word, _, rest = answer.partition(" ")
            if word != "OK":
                raise QtestError(f"qtest {line!r} answered {answer!r}")
            out.append(rest)
        return out[posted:]

    def read_memory(self, reads: Sequence[tuple[int, int]]) -> bytes:
        """Guest-physical memory, each ``(address, length)`` one ``read`` (one
        ``address_space_read`` in QEMU), all in one exchange.  QEMU answers every address,
        those nothing decodes too (with the unassigned handler's bytes): refusing them is
        the caller's business."""
        answers = self.execute([f"read {address:#x} {length}" for address, length in reads])
        out = bytearray()
        for (address, length), answer in zip(reads, answers):
            if not answer.startswith("0x") or len(answer) != 2 + 2 * length:
                raise QtestError(f"qtest 'read {address:#x} {length}' answered {answer!r}")
            out += bytes.fromhex(answer[2:])
        return bytes(out)

    def _send(self, data: bytes, deadline: float, what: str, timeout: float) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = self._sock.send(view)
            except BlockingIOError:  # the socket buffer is full: wait until QEMU reads
                self._wait(select.POLLOUT, deadline, what, timeout)
                continue
            except OSError:
                raise self._on_closed(what) from None
            view = view[sent:]

    def _answer(self, deadline: float, what: str, timeout: float) -> str:
        while True:
            line, sep, rest = self._buffer.partition(b"\n")
            if sep:
                self._buffer = rest
                text = line.decode(errors="replace").strip()
                if text.startswith(_UNSOLICITED):
                    continue
                return text
            self._wait(select.POLLIN, deadline, what, timeout)
            try:
                chunk = self._sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                raise self._on_closed(what)
            self._buffer += chunk

    def _wait(self, event: int, deadline: float, what: str, timeout: float) -> None:
        poller = select.poll()
        poller.register(self._sock, event)
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            # The answers of a timed-out batch may still come: a later call must not read them.
            self.close()
            raise self._on_timeout(what, timeout)

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass


def _writes_in(lines: Sequence[str]) -> int:
    return sum(line.split(" ", 1)[0] not in _READS for line in lines)


def qtest_wanted() -> bool:
    """Whether machines get a qtest channel: yes unless ``HARNESS_PORT_CHANNEL=hmp`` (every
    port access over HMP then, as before the channel existed; benchmarks compare the two)."""
    choice = os.environ.get("HARNESS_PORT_CHANNEL", "qtest")
    if choice not in ("qtest", "hmp"):
        raise HarnessError(f"HARNESS_PORT_CHANNEL must be 'qtest' or 'hmp', not {choice!r}")
    return choice == "qtest"
