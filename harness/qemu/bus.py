"""Port I/O and PCI configuration access on a paused machine.

Two channels reach the ports, with the same device side effects (both end in QEMU's
``cpu_inb``/``cpu_outb``):

* :class:`QtestPorts`: the machine's qtest socket (:mod:`harness.qemu.qtest`), ~30 µs an
  access, several accesses sent at once; what :func:`machine_ports` gives when the
  machine has it;
* :class:`HmpPorts`: HMP ``i /b|/h|/w PORT`` and ``o /b|/h|/w PORT VALUE`` through QMP
  (qemu-facts.md §4, §6), ~1 ms an access; any monitor will do.

PCI configuration space is reached through the 0xCF8/0xCFC mechanism #1, exactly as a
driver would.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol, Sequence

from ..errors import HarnessError

_SIZE_LETTER = {1: "b", 2: "h", 4: "w"}  # HMP's /w is 32-bit; /l is rejected
_QTEST_SUFFIX = {1: "b", 2: "w", 4: "l"}  # qtest's w is 16-bit
_READ_RE = re.compile(r"port[bwl]\[0x([0-9a-fA-F]+)\]\s*=\s*(?:0x)?([0-9a-fA-F]+)")
PCI_CONFIG_ADDRESS = 0xCF8
PCI_CONFIG_DATA = 0xCFC

#: One port access: ("in", port, size, None) or ("out", port, size, value).
PortOp = tuple[str, int, int, "int | None"]


class Monitor(Protocol):
    def hmp(self, command_line: str, *, timeout: float | None = None) -> str: ...


class PortAccessError(HarnessError):
    pass


class PortChannel:
    """Port and PCI-config access; subclasses say how a batch of accesses reaches QEMU.
    ``round_trips`` counts the port accesses made, ``writes`` the ``out`` ones among them."""

    def __init__(self) -> None:
        self.round_trips = 0
        self.writes = 0

    def transfer(self, ops: Sequence[PortOp]) -> list[int]:
        """Do ``ops`` in order; return the values the ``in`` accesses read, in order."""
        self._count(ops)
        return self._transfer(ops)

    def post(self, ops: Sequence[PortOp]) -> None:
        """Do ``ops`` in order for their effects alone: writes, and reads whose value
        nobody wants (one that acknowledges an interrupt or drains a FIFO).  Inside
        :meth:`posting` a channel that can holds them back, in order, until the next
        transfer; this one does them now."""
        self.transfer(ops)

    def _count(self, ops: Sequence[PortOp]) -> None:
        """Refuse a bad access before any is made; count them."""
        for kind, port, size, value in ops:
            _size(size)
            _check_port(port, size)
            if kind == "out" and not 0 <= value < (1 << (8 * size)):  # type: ignore[operator]
                raise PortAccessError(f"value {value:#x} does not fit in {size} byte(s)")
        self.round_trips += len(ops)
        self.writes += sum(kind == "out" for kind, *_ in ops)

    def _transfer(self, ops: Sequence[PortOp]) -> list[int]:
        raise NotImplementedError

    def posting(self) -> AbstractContextManager[None]:
        """A block in which writes may wait and go out with the next read (or at its
        end); a channel that cannot hold writes back sends each at once."""
        return nullcontext()

    def read_port(self, port: int, size: int = 1) -> int:
        return self.transfer([("in", port, size, None)])[0]

    def write_port(self, port: int, value: int, size: int = 1) -> None:
        self.transfer([("out", port, size, value)])

    # PCI configuration mechanism #1 ------------------------------------------------
    @staticmethod
    def config_address(bus: int, slot: int, function: int, offset: int) -> int:
        if not (0 <= bus <= 255 and 0 <= slot <= 31 and 0 <= function <= 7 and 0 <= offset <= 255):
            raise PortAccessError(f"bad PCI config address {bus:02x}:{slot:02x}.{function} +{offset:#x}")
        return 0x80000000 | bus << 16 | slot << 11 | function << 8 | (offset & 0xFC)

    @classmethod
    def config_read_ops(cls, bus: int, slot: int, function: int, offset: int, size: int = 4) -> list[PortOp]:
        """The accesses of one configuration read (it reads one value), for a batch."""
        if offset % size:
            raise PortAccessError(f"unaligned {size}-byte config read at {offset:#x}")
        return [("out", PCI_CONFIG_ADDRESS, 4, cls.config_address(bus, slot, function, offset)),
                ("in", PCI_CONFIG_DATA + (offset & 3), size, None)]

    def read_config(self, bus: int, slot: int, function: int, offset: int, size: int = 4) -> int:
        return self.transfer(self.config_read_ops(bus, slot, function, offset, size))[0]

    def write_config(self, bus: int, slot: int, function: int, offset: int, value: int, size: int = 4) -> None:
        if offset % size:
            raise PortAccessError(f"unaligned {size}-byte config write at {offset:#x}")
        self.transfer([("out", PCI_CONFIG_ADDRESS, 4, self.config_address(bus, slot, function, offset)),
                       ("out", PCI_CONFIG_DATA + (offset & 3), size, value)])


class HmpPorts(PortChannel):
    """Port access over a monitor's HMP ``i``/``o``, one command per access."""

    def __init__(self, monitor: Monitor) -> None:
        super().__init__()
        self.monitor = monitor

    def _transfer(self, ops: Sequence[PortOp]) -> list[int]:
        values = []
        for kind, port, size, value in ops:
            letter = _SIZE_LETTER[size]
            if kind == "in":
                text = self.monitor.hmp(f"i /{letter} {port:#x}")
                match = _READ_RE.search(text)
                if not match:
                    raise PortAccessError(f"unexpected answer to 'i /{letter} {port:#x}': {text.strip()!r}")
                values.append(int(match.group(2), 16))
            else:
                text = self.monitor.hmp(f"o /{letter} {port:#x} {value:#x}")
                if text.strip():
                    raise PortAccessError(f"'o /{letter} {port:#x} {value:#x}' answered {text.strip()!r}")
        return values


class QtestPorts(PortChannel):
    """Port access over a machine's qtest channel: a whole batch in one exchange."""

    def __init__(self, channel: Any) -> None:
        super().__init__()
        self.channel = channel

    @staticmethod
    def _lines(ops: Sequence[PortOp]) -> list[str]:
        return [f"in{_QTEST_SUFFIX[size]} {port:#x}" if kind == "in"
                else f"out{_QTEST_SUFFIX[size]} {port:#x} {value:#x}" for kind, port, size, value in ops]

    def post(self, ops: Sequence[PortOp]) -> None:
        self._count(ops)
        self.channel.post(self._lines(ops))  # a read's answer is checked and dropped

    def _transfer(self, ops: Sequence[PortOp]) -> list[int]:
        lines = self._lines(ops)
        if all(kind == "out" for kind, *_ in ops):
            self.channel.post(lines)
            return []
        answers = self.channel.execute(lines)
        values = []
        for (kind, port, size, _), answer in zip(ops, answers):
            if kind == "in":
                try:
                    values.append(int(answer, 16))
                except ValueError:
                    raise PortAccessError(f"unexpected qtest answer to in {port:#x}: {answer!r}") from None
        return values

    def posting(self) -> AbstractContextManager[None]:
        return self.channel.posting()


def machine_ports(machine: Any) -> PortChannel:
    """The fastest port channel ``machine`` has: its qtest socket, else HMP."""
    channel = getattr(machine, "qtest", None)
    return QtestPorts(channel) if channel is not None else HmpPorts(machine)


def _size(size: int) -> str:
    try:
        return _SIZE_LETTER[size]
    except KeyError:
        raise PortAccessError(f"access size must be 1, 2 or 4 bytes, not {size}") from None


def _check_port(port: int, size: int) -> None:
    # HMP masks the port to 16 bits (i /b 0x10000 reads port 0): refuse instead.
    if not 0 <= port <= 0x10000 - size:
        raise PortAccessError(f"port {port:#x} (+{size}) is outside the 64 KiB I/O space")
