r"""The HAL's view of the hardware: a small bus-access protocol, nothing about QEMU.

:mod:`harness.nt.hal` reaches the machine only through a :class:`BusAccess`: port I/O of
1, 2 or 4 bytes, PCI configuration space of one function as a byte range, and
physical-memory reads.  A live QEMU machine (:mod:`harness.qemu.livebus`), a recorded
transcript (:mod:`harness.nt.recorded`) and, later, a guest agent implement it; that is
what keeps ``harness.nt`` free of ``harness.qemu`` (ARCHITECTURE.md, rules of the house).

Conventions every implementation follows:

* Ports are 16-bit (0..0xFFFF); ``port + size`` must stay inside that space.
* ``read_config(bus, device, function, offset, length)`` returns exactly ``length`` bytes
  of the function's 256-byte configuration space (nt-semantics.md §1.12) starting at
  ``offset``; ``offset + length`` must not pass 256.  A function that does not exist reads
  as all 0xFF, as on a real bus (a master abort).  Reads are free of side effects, so an
  implementation may read whole dwords and keep them.
* ``write_config(bus, device, function, offset, data)`` writes exactly the bytes given,
  with the natural access width for each piece (byte at odd offsets, word at offset%4 == 2
  or for a 2-3 byte aligned tail, dword when aligned with 4 or more bytes left: the
  PCIDeref table of §4.3 step 5), never a read-modify-write of neighbouring bytes, because
  some registers (Status, RW1C bits) change when written.
* ``read_memory(address, length)`` reads guest-physical memory (RAM, ROM or MMIO).
* ``epoch`` is an integer that changes whenever the hardware may have changed without
  going through this object (the machine ran, was reset, ...).  Callers that keep derived
  state (the HAL's bus topology) rebuild it when the epoch moves.

:class:`DecodeMap` is an optional capability: where the platform forwards addresses to PCI
bus 0 and what is decoded now, each range attributed to a PCI function when it is one.
The HAL uses it to bound PCI bus 0's memory window, to keep the minimal slot allocator away
from everything decoded, and to verify that an assignment is really decoded.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

from ..errors import HarnessError

#: ``DecodedSpan.space`` values.
IO_SPACE = "io"
MEMORY_SPACE = "memory"

PCI_CONFIG_SIZE = 256
PORT_SPACE_END = 0x10000


class BusAccessError(HarnessError):
    """An access the bus cannot perform (bad arguments, or the transport failed)."""


@runtime_checkable
class BusAccess(Protocol):
    """Port I/O, PCI configuration space and physical memory (see the module docstring)."""

    @property
    def epoch(self) -> int: ...

    def read_port(self, port: int, size: int = 1) -> int: ...

    def write_port(self, port: int, value: int, size: int = 1) -> None: ...

    def read_config(self, bus: int, device: int, function: int, offset: int, length: int) -> bytes: ...

    def write_config(self, bus: int, device: int, function: int, offset: int, data: bytes) -> None: ...

    def read_memory(self, address: int, length: int) -> bytes: ...


@dataclass(frozen=True)
class DecodedSpan:
    """One address range the platform decodes now, inclusive ``[start, end]``.

    ``owner`` names the decoding device as the platform knows it (a device id or path);
    ``function`` is its PCI ``(bus, device, function)`` when the owner is a PCI function.
    """

    space: str
    start: int
    end: int
    owner: str | None
    function: tuple[int, int, int] | None = None

    def to_json(self) -> list:
        return [self.space, self.start, self.end, self.owner,
                list(self.function) if self.function is not None else None]

    @classmethod
    def from_json(cls, item: list) -> "DecodedSpan":
        space, start, end, owner, function = item
        return cls(space, start, end, owner, tuple(function) if function is not None else None)


@runtime_checkable
class DecodeMap(Protocol):
    """Optional: what the platform decodes, and where it forwards to PCI bus 0."""

    def pci_root_windows(self) -> dict[str, list[tuple[int, int]]]:
        """``{"io": [(lo, hi)...], "memory": [(lo, hi)...]}``: the inclusive address ranges the
        host bridge forwards to PCI bus 0."""
        ...

    def decoded_ranges(self) -> Sequence[DecodedSpan]:
        """Every range decoded now, in both spaces (a fresh look after any write).  A BAR
        whose region has no content of its own may map without showing here."""
        ...

    def bar_mappings(self, bus: int, device: int, function: int) -> dict[int, tuple[int, int]]:
        """Where the platform maps each BAR of a function now: ``{index: (start, end)}``
        (index 6 = expansion ROM); BARs it does not map are absent."""
        ...


def posted_writes(bus: object) -> AbstractContextManager[None]:
    """A block in which ``bus`` may hold port writes back and send them, in order, with
    the next read (or at the block's end): an optional capability (``bus.posted_writes()``)
    that saves a round trip per write on a bus whose accesses cost one.  Reads always see
    every earlier write; a bus without it writes at once."""
    method = getattr(bus, "posted_writes", None)
    return method() if method is not None else nullcontext()


def posted_reads(bus: object, accesses: Sequence[tuple[int, int]]) -> None:
    """Read ``(port, size)`` after ``(port, size)`` for the reads' side effects alone
    (acknowledging an interrupt, draining a FIFO), the values unwanted: inside
    :func:`posted_writes` a bus that can (an optional capability, ``bus.post_reads()``)
    holds them back like writes, in order, to go out with the next access; else one
    :meth:`BusAccess.read_port` each, now.  Either way the device sees the same accesses
    in the same order."""
    method = getattr(bus, "post_reads", None)
    if method is not None:
        method(accesses)
        return
    for port, size in accesses:
        bus.read_port(port, size)  # type: ignore[attr-defined]


def read_ports(bus: object, accesses: Sequence[tuple[int, int]]) -> list[int]:
    """Read ``(port, size)`` after ``(port, size)`` in order, nothing written between: in
    one exchange on a bus that can (an optional capability, ``bus.read_ports()``), else one
    :meth:`BusAccess.read_port` each."""
    method = getattr(bus, "read_ports", None)
    if method is not None:
        return list(method(accesses))
    return [bus.read_port(port, size) for port, size in accesses]  # type: ignore[attr-defined]


def probe_config(bus: object, bus_number: int, device: int, function: int,
                 probes: Sequence[tuple[int, int, int]]) -> list[int]:
    """For each ``(offset, pattern, original)`` in order: write the dword ``pattern`` at
    ``offset``, read it back, write ``original`` back; return the values read back.  In
    one exchange on a bus that can (an optional capability, ``bus.probe_config()``: the
    accesses are the same, none depends on an earlier answer), else through
    :meth:`BusAccess.write_config` / :meth:`BusAccess.read_config`."""
    method = getattr(bus, "probe_config", None)
    if method is not None:
        return list(method(bus_number, device, function, probes))
    out = []
    for offset, pattern, original in probes:
        bus.write_config(bus_number, device, function, offset, pattern.to_bytes(4, "little"))  # type: ignore[attr-defined]
        out.append(int.from_bytes(bus.read_config(bus_number, device, function, offset, 4), "little"))  # type: ignore[attr-defined]
        bus.write_config(bus_number, device, function, offset, original.to_bytes(4, "little"))  # type: ignore[attr-defined]
    return out


def check_port_access(port: int, size: int) -> None:
    if size not in (1, 2, 4):
        raise BusAccessError(f"port access size must be 1, 2 or 4 bytes, not {size}")
    if not 0 <= port <= PORT_SPACE_END - size:
        raise BusAccessError(f"port {port:#x} (+{size}) is outside the 64 KiB I/O space")


def check_config_range(bus: int, device: int, function: int, offset: int, length: int) -> None:
    if not (0 <= bus <= 255 and 0 <= device <= 31 and 0 <= function <= 7):
        raise BusAccessError(f"no such PCI function {bus:#x}:{device:#x}.{function}")
    if length < 0 or offset < 0 or offset + length > PCI_CONFIG_SIZE:
        raise BusAccessError(f"config range {offset:#x}+{length:#x} is outside the "
                             f"{PCI_CONFIG_SIZE}-byte configuration space")


def config_write_pieces(offset: int, length: int) -> list[tuple[int, int]]:
    """Split ``[offset, offset+length)`` into (offset, width) accesses of natural width:
    the access-width rule of nt-semantics.md §4.3 step 5 (byte at odd offsets, word at
    offset%4 == 2 or for a 2-3 byte aligned tail, dword when aligned with 4+ bytes left)."""
    pieces = []
    end = offset + length
    while offset < end:
        left = end - offset
        if offset % 4 == 0 and left >= 4:
            width = 4
        elif offset % 2 == 0 and left >= 2:
            width = 2
        else:
            width = 1
        pieces.append((offset, width))
        offset += width
    return pieces


__all__ = ["BusAccess", "BusAccessError", "DecodeMap", "DecodedSpan", "IO_SPACE", "MEMORY_SPACE",
           "PCI_CONFIG_SIZE", "PORT_SPACE_END", "check_config_range", "check_port_access",
           "config_write_pieces", "posted_reads", "posted_writes", "read_ports"]
