"""Port I/O and PCI configuration access on a paused machine, through HMP ``i``/``o``.

This QEMU has no qtest accelerator, so host-side port I/O goes through the monitor
(qemu-facts.md §4, §6): ``i /b|/h|/w PORT`` and ``o /b|/h|/w PORT VALUE`` on a paused VM,
with the device side effects happening at once.  PCI configuration space is reached
through the 0xCF8/0xCFC mechanism #1, exactly as a driver would.
"""

from __future__ import annotations

import re
from typing import Protocol

from ..errors import HarnessError

_SIZE_LETTER = {1: "b", 2: "h", 4: "w"}  # HMP's /w is 32-bit; /l is rejected
_READ_RE = re.compile(r"port[bwl]\[0x([0-9a-fA-F]+)\]\s*=\s*(?:0x)?([0-9a-fA-F]+)")
PCI_CONFIG_ADDRESS = 0xCF8
PCI_CONFIG_DATA = 0xCFC


class Monitor(Protocol):
    def hmp(self, command_line: str, *, timeout: float | None = None) -> str: ...


class PortAccessError(HarnessError):
    pass


class HmpPorts:
    """Port and PCI-config access over a machine's human monitor."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.round_trips = 0

    def read_port(self, port: int, size: int = 1) -> int:
        letter = _size(size)
        _check_port(port, size)
        self.round_trips += 1
        text = self.monitor.hmp(f"i /{letter} {port:#x}")
        match = _READ_RE.search(text)
        if not match:
            raise PortAccessError(f"unexpected answer to 'i /{letter} {port:#x}': {text.strip()!r}")
        return int(match.group(2), 16)

    def write_port(self, port: int, value: int, size: int = 1) -> None:
        letter = _size(size)
        _check_port(port, size)
        if not 0 <= value < (1 << (8 * size)):
            raise PortAccessError(f"value {value:#x} does not fit in {size} byte(s)")
        self.round_trips += 1
        text = self.monitor.hmp(f"o /{letter} {port:#x} {value:#x}")
        if text.strip():
            raise PortAccessError(f"'o /{letter} {port:#x} {value:#x}' answered {text.strip()!r}")

    # PCI configuration mechanism #1 ------------------------------------------------
    @staticmethod
    def config_address(bus: int, slot: int, function: int, offset: int) -> int:
        if not (0 <= bus <= 255 and 0 <= slot <= 31 and 0 <= function <= 7 and 0 <= offset <= 255):
            raise PortAccessError(f"bad PCI config address {bus:02x}:{slot:02x}.{function} +{offset:#x}")
        return 0x80000000 | bus << 16 | slot << 11 | function << 8 | (offset & 0xFC)

    def read_config(self, bus: int, slot: int, function: int, offset: int, size: int = 4) -> int:
        if offset % size:
            raise PortAccessError(f"unaligned {size}-byte config read at {offset:#x}")
        self.write_port(PCI_CONFIG_ADDRESS, self.config_address(bus, slot, function, offset), 4)
        return self.read_port(PCI_CONFIG_DATA + (offset & 3), size)

    def write_config(self, bus: int, slot: int, function: int, offset: int, value: int, size: int = 4) -> None:
        if offset % size:
            raise PortAccessError(f"unaligned {size}-byte config write at {offset:#x}")
        self.write_port(PCI_CONFIG_ADDRESS, self.config_address(bus, slot, function, offset), 4)
        self.write_port(PCI_CONFIG_DATA + (offset & 3), value, size)


def _size(size: int) -> str:
    try:
        return _SIZE_LETTER[size]
    except KeyError:
        raise PortAccessError(f"access size must be 1, 2 or 4 bytes, not {size}") from None


def _check_port(port: int, size: int) -> None:
    # HMP masks the port to 16 bits (i /b 0x10000 reads port 0): refuse instead.
    if not 0 <= port <= 0x10000 - size:
        raise PortAccessError(f"port {port:#x} (+{size}) is outside the 64 KiB I/O space")
