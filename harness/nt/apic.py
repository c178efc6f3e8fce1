r"""The APIC HAL's hardware: the firmware's MADT, the I/O APIC and the local APIC.

What an APIC HAL reads before it hands out a vector (nt-semantics.md §4.2 "APIC HAL"):

* the ACPI **MADT** (signature ``APIC``), found through the RSDP the firmware left in the
  EBDA or at 0xE0000-0xFFFFF: where each I/O APIC is and which GSIs it serves, where the
  local APIC is, and the interrupt source overrides that move an ISA IRQ to another GSI
  (on QEMU, IRQ 0 → GSI 2, and the SCI's IRQ 9 level-triggered) or change its polarity or
  trigger mode (:func:`read_madt`, :meth:`Madt.isa_route`);
* the I/O APIC's **redirection entries**, through its index/data window (IOREGSEL at +0,
  IOWIN at +0x10): one 64-bit entry per input pin giving vector, delivery mode, polarity,
  trigger mode, mask and destination (:class:`RedirectionEntry`, :class:`IoApic`);
* the **local APIC**'s registers at 0xFEE00000: spurious-vector register, task priority,
  LINT0, the end-of-interrupt register and the IRR/ISR/TMR bitmaps (:class:`LocalApic`).

All of it goes through the :class:`~harness.nt.busaccess.BusAccess` the HAL has; writing
the I/O APIC or the local APIC needs a bus that writes memory from the CPU's side (the
probe guest's agent): QEMU's HMP cannot, and the local APIC is only visible to its CPU.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Iterable

# ---------------------------------------------------------------------------------------
# Constants (Intel 82093AA datasheet; Intel SDM vol. 3 ch. 10; ACPI 6.x §5.2.12)

IOAPIC_DEFAULT_ADDRESS = 0xFEC00000
LAPIC_DEFAULT_ADDRESS = 0xFEE00000
IOREGSEL, IOWIN = 0x00, 0x10
IOAPICID, IOAPICVER, IOREDTBL = 0x00, 0x01, 0x10

DELIVERY_FIXED = 0
REDIR_DEST_LOGICAL = 1 << 11
REDIR_POLARITY_LOW = 1 << 13
REDIR_REMOTE_IRR = 1 << 14
REDIR_LEVEL = 1 << 15
REDIR_MASKED = 1 << 16

LAPIC_ID, LAPIC_TPR, LAPIC_EOI, LAPIC_SVR = 0x20, 0x80, 0xB0, 0xF0
LAPIC_ISR, LAPIC_TMR, LAPIC_IRR = 0x100, 0x180, 0x200
LAPIC_LVT_LINT0 = 0x350
LAPIC_SVR_ENABLE = 1 << 8
LVT_MASKED = 1 << 16
#: The spurious-interrupt vector the HAL programs (NT uses 0x1F on x86; any vector with
#: the low nibble 0xF works on QEMU, and 0xFF stays out of the device range).
SPURIOUS_VECTOR = 0xFF

#: Where the RSDP may be (ACPI 6.x §5.2.5.1): the first KiB of the EBDA, then the BIOS area.
EBDA_POINTER = 0x40E
BIOS_AREA = (0xE0000, 0x20000)
RSDP_SIGNATURE = b"RSD PTR "
#: How far below the top of RAM the ACPI tables are looked for: SeaBIOS's high zone
#: (CONFIG_MAX_HIGHTABLE, 256 KiB) holds them.
RAM_TABLE_SPAN = 0x40000
SDT_HEADER = 36
MADT_IOAPIC, MADT_OVERRIDE = 1, 2
#: MPS INTI flags in an interrupt source override (ACPI §5.2.12.5).
POLARITY_MASK, POLARITY_HIGH, POLARITY_LOW = 0x3, 0x1, 0x3
TRIGGER_MASK, TRIGGER_EDGE, TRIGGER_LEVEL = 0xC, 0x4, 0xC


class ApicError(ValueError):
    """Firmware tables or APIC registers that are not what the spec says."""


# ---------------------------------------------------------------------------------------
# Redirection entries


@dataclass(frozen=True)
class RedirectionEntry:
    """One I/O APIC redirection entry (82093AA §3.2.4), decoded from its 64 bits."""

    raw: int

    @classmethod
    def build(cls, vector: int, *, level: bool, active_low: bool = False, masked: bool = False,
              destination: int = 0) -> "RedirectionEntry":
        """Fixed delivery to the physical APIC id ``destination``."""
        if not 0x10 <= vector <= 0xFE:
            raise ApicError(f"vector {vector:#x} is not a deliverable vector (0x10-0xFE)")
        raw = vector | DELIVERY_FIXED << 8 | destination << 56
        raw |= REDIR_LEVEL if level else 0
        raw |= REDIR_POLARITY_LOW if active_low else 0
        raw |= REDIR_MASKED if masked else 0
        return cls(raw)

    @property
    def vector(self) -> int:
        return self.raw & 0xFF

    @property
    def delivery_mode(self) -> int:
        return self.raw >> 8 & 7

    @property
    def logical(self) -> bool:
        return bool(self.raw & REDIR_DEST_LOGICAL)

    @property
    def active_low(self) -> bool:
        return bool(self.raw & REDIR_POLARITY_LOW)

    @property
    def remote_irr(self) -> bool:
        return bool(self.raw & REDIR_REMOTE_IRR)

    @property
    def level(self) -> bool:
        return bool(self.raw & REDIR_LEVEL)

    @property
    def masked(self) -> bool:
        return bool(self.raw & REDIR_MASKED)

    @property
    def destination(self) -> int:
        return self.raw >> 56

    def describe(self) -> str:
        return (f"vec={self.vector:#04x} {'level' if self.level else 'edge'} "
                f"{'active-low' if self.active_low else 'active-high'}{' masked' if self.masked else ''} "
                f"dest={self.destination}{' remote-irr' if self.remote_irr else ''}")


def _read32(bus: Any, address: int) -> int:
    return int.from_bytes(bus.read_memory(address, 4), "little")


def _write32(bus: Any, address: int, value: int) -> None:
    write = getattr(bus, "write_memory", None)
    if write is None:
        raise ApicError(f"{type(bus).__name__} cannot write memory: the APIC registers are written "
                        "from the CPU's side (the probe guest's agent)")
    write(address, (value & 0xFFFFFFFF).to_bytes(4, "little"))


class IoApic:
    """One I/O APIC through its index/data window."""

    def __init__(self, bus: Any, address: int = IOAPIC_DEFAULT_ADDRESS, gsi_base: int = 0) -> None:
        self.bus = bus
        self.address = address
        self.gsi_base = gsi_base

    def read_register(self, index: int) -> int:
        _write32(self.bus, self.address + IOREGSEL, index)
        return _read32(self.bus, self.address + IOWIN)

    def write_register(self, index: int, value: int) -> None:
        _write32(self.bus, self.address + IOREGSEL, index)
        _write32(self.bus, self.address + IOWIN, value)

    @property
    def pins(self) -> int:
        """Number of redirection entries (IOAPICVER bits 23:16, plus one)."""
        return (self.read_register(IOAPICVER) >> 16 & 0xFF) + 1

    def entry(self, pin: int) -> RedirectionEntry:
        low = self.read_register(IOREDTBL + 2 * pin)
        high = self.read_register(IOREDTBL + 2 * pin + 1)
        return RedirectionEntry(high << 32 | low)

    def entries(self) -> list[RedirectionEntry]:
        return [self.entry(pin) for pin in range(self.pins)]

    def set_entry(self, pin: int, entry: RedirectionEntry) -> None:
        """Program a pin: masked while the halves change, the mask bit written last."""
        low = entry.raw & 0xFFFFFFFF
        self.write_register(IOREDTBL + 2 * pin, low | REDIR_MASKED)
        self.write_register(IOREDTBL + 2 * pin + 1, entry.raw >> 32)
        if not entry.masked:
            self.write_register(IOREDTBL + 2 * pin, low)

    def mask(self, pin: int, masked: bool = True) -> None:
        low = self.read_register(IOREDTBL + 2 * pin)
        self.write_register(IOREDTBL + 2 * pin, low | REDIR_MASKED if masked else low & ~REDIR_MASKED)


class LocalApic:
    """The boot processor's local APIC (memory-mapped, seen only by its own CPU)."""

    def __init__(self, bus: Any, address: int = LAPIC_DEFAULT_ADDRESS) -> None:
        self.bus = bus
        self.address = address

    def read(self, offset: int) -> int:
        return _read32(self.bus, self.address + offset)

    def write(self, offset: int, value: int) -> None:
        _write32(self.bus, self.address + offset, value)

    def enable(self) -> None:
        """Software-enable with the HAL's spurious vector, accept every priority (TPR 0),
        and mask LINT0: the 8259s' ExtINT path is closed once the I/O APIC routes."""
        self.write(LAPIC_SVR, LAPIC_SVR_ENABLE | SPURIOUS_VECTOR)
        self.write(LAPIC_TPR, 0)
        self.write(LAPIC_LVT_LINT0, self.read(LAPIC_LVT_LINT0) | LVT_MASKED)

    def eoi(self) -> None:
        self.write(LAPIC_EOI, 0)

    def _bitmap(self, base: int) -> int:
        return sum(self.read(base + 0x10 * i) << (32 * i) for i in range(8))

    def irr(self) -> int:
        """Vectors requested and not yet taken by the CPU (bit n = vector n)."""
        return self._bitmap(LAPIC_IRR)

    def isr(self) -> int:
        """Vectors in service (taken, no EOI yet)."""
        return self._bitmap(LAPIC_ISR)

    def tmr(self) -> int:
        """Vectors whose request was level-triggered (their EOI reaches the I/O APIC)."""
        return self._bitmap(LAPIC_TMR)


# ---------------------------------------------------------------------------------------
# MADT


@dataclass(frozen=True)
class IoApicInfo:
    apic_id: int
    address: int
    gsi_base: int


@dataclass(frozen=True)
class SourceOverride:
    """An ISA IRQ moved to ``gsi`` and/or given another polarity/trigger mode."""

    irq: int
    gsi: int
    flags: int


@dataclass(frozen=True)
class IsaRoute:
    """Where an ISA IRQ arrives at the I/O APICs and how it must be programmed."""

    irq: int
    gsi: int
    active_low: bool
    level: bool


@dataclass(frozen=True)
class Madt:
    """What the firmware's MADT says (ACPI §5.2.12)."""

    address: int                     # of the table itself
    local_apic: int
    pcat_compat: bool                # dual 8259s present as well
    ioapics: tuple[IoApicInfo, ...]
    overrides: tuple[SourceOverride, ...] = field(default=())

    def isa_route(self, irq: int) -> IsaRoute:
        """An ISA IRQ's GSI, polarity and trigger: identity, edge, active high, unless an
        override says otherwise (its "conforms to the bus" bits keep the ISA default)."""
        for override in self.overrides:
            if override.irq == irq:
                polarity = override.flags & POLARITY_MASK
                trigger = override.flags & TRIGGER_MASK
                return IsaRoute(irq, override.gsi, polarity == POLARITY_LOW, trigger == TRIGGER_LEVEL)
        return IsaRoute(irq, irq, False, False)

    def isa_irq_of(self, gsi: int) -> int | None:
        """The ISA IRQ that arrives at ``gsi`` (None when none does)."""
        for irq in range(16):
            if self.isa_route(irq).gsi == gsi:
                return irq
        return None

    def ioapic_for(self, gsi: int, pins: dict[int, int]) -> IoApicInfo | None:
        """The I/O APIC serving ``gsi`` given each one's pin count (by address)."""
        for info in self.ioapics:
            if info.gsi_base <= gsi < info.gsi_base + pins.get(info.address, 24):
                return info
        return None


def _checksum_ok(data: bytes) -> bool:
    return sum(data) & 0xFF == 0


def find_rsdp(bus: Any) -> int | None:
    """The RSDP's address: first KiB of the EBDA, then 0xE0000-0xFFFFF, 16-byte aligned."""
    areas = []
    ebda = int.from_bytes(bus.read_memory(EBDA_POINTER, 2), "little") << 4
    if 0x80000 <= ebda < 0xA0000:
        areas.append((ebda, 0x400))
    areas.append(BIOS_AREA)
    for start, length in areas:
        data = bus.read_memory(start, length)
        at = data.find(RSDP_SIGNATURE)
        while at >= 0:
            if at % 16 == 0 and _checksum_ok(data[at:at + 20]):
                return start + at
            at = data.find(RSDP_SIGNATURE, at + 1)
    return None


def _ram_top(bus: Any) -> int:
    """Top of RAM below 4 GiB from the CMOS (0x34/0x35: 64 KiB blocks above 16 MiB,
    0x30/0x31: KiB above 1 MiB), as the firmware wrote it."""
    def cmos(index: int) -> int:
        bus.write_port(0x70, index, 1)
        return bus.read_port(0x71, 1)
    above_16m = cmos(0x34) | cmos(0x35) << 8
    if above_16m:
        return 0x1000000 + above_16m * 0x10000
    return 0x100000 + (cmos(0x30) | cmos(0x31) << 8) * 1024


def find_rsdt_in_ram(bus: Any) -> int | None:
    """An RSDT with a valid checksum in the last :data:`RAM_TABLE_SPAN` bytes of RAM.

    The fallback for a machine stopped at SeaBIOS's reboot (a firmware run without the
    log): SeaBIOS restores the pristine BIOS image over 0xE0000-0xFFFFF before its reboot,
    which takes the RSDP with it, while the tables stay where it loaded them, at the top
    of RAM (measured, tests/test_apic.py).  Where the harness stops SeaBIOS as it gives up
    booting, the RSDP is still there."""
    top = _ram_top(bus)
    start = max(0x100000, top - RAM_TABLE_SPAN)
    data = bus.read_memory(start, top - start)
    at = data.find(b"RSDT")
    while at >= 0:
        length = struct.unpack_from("<I", data, at + 4)[0] if at + 8 <= len(data) else 0
        if SDT_HEADER <= length <= 0x1000 and at + length <= len(data) and _checksum_ok(data[at:at + length]):
            return start + at
        at = data.find(b"RSDT", at + 1)
    return None


def _sdt_pointers(bus: Any, table: int, width: int) -> list[int]:
    length = struct.unpack("<I", bus.read_memory(table + 4, 4))[0]
    body = bus.read_memory(table + SDT_HEADER, length - SDT_HEADER)
    return [int.from_bytes(body[i:i + width], "little") for i in range(0, len(body) - width + 1, width)]


def _tables(bus: Any, rsdp: int) -> Iterable[int]:
    head = bus.read_memory(rsdp, 36)
    revision = head[15]
    if revision >= 2:
        xsdt = struct.unpack_from("<Q", head, 24)[0]
        if xsdt:
            return _sdt_pointers(bus, xsdt, 8)
    return _sdt_pointers(bus, struct.unpack_from("<I", head, 16)[0], 4)


def read_madt(bus: Any) -> Madt | None:
    """The firmware's MADT, or None when the machine has no ACPI tables or no MADT (an
    ISA-only PC: the PIC HAL is the only choice there)."""
    rsdp = find_rsdp(bus)
    if rsdp is not None:
        tables = _tables(bus, rsdp)
    else:
        rsdt = find_rsdt_in_ram(bus)
        if rsdt is None:
            return None
        tables = _sdt_pointers(bus, rsdt, 4)
    for address in tables:
        if address == 0 or address >= 1 << 32:
            continue
        if bus.read_memory(address, 4) != b"APIC":
            continue
        length = struct.unpack("<I", bus.read_memory(address + 4, 4))[0]
        if not SDT_HEADER + 8 <= length <= 0x10000:
            raise ApicError(f"MADT at {address:#x}: length {length} is not plausible")
        table = bus.read_memory(address, length)
        if not _checksum_ok(table):
            raise ApicError(f"MADT at {address:#x}: checksum does not add up to 0")
        return parse_madt(table, address)
    return None


def parse_madt(table: bytes, address: int = 0) -> Madt:
    """Decode a MADT (header included); unknown entry types are skipped by their length."""
    if table[:4] != b"APIC" or len(table) < SDT_HEADER + 8:
        raise ApicError(f"MADT at {address:#x}: not an APIC table")
    local_apic, flags = struct.unpack_from("<II", table, SDT_HEADER)
    ioapics, overrides = [], []
    at = SDT_HEADER + 8
    while at + 2 <= len(table):
        kind, size = table[at], table[at + 1]
        if size < 2 or at + size > len(table):
            raise ApicError(f"MADT at {address:#x}: entry at offset {at} has length {size}")
        if kind == MADT_IOAPIC and size >= 12:
            apic_id, ioapic_address, gsi_base = table[at + 2], *struct.unpack_from("<II", table, at + 4)
            ioapics.append(IoApicInfo(apic_id, ioapic_address, gsi_base))
        elif kind == MADT_OVERRIDE and size >= 10:
            source, gsi, inti = table[at + 3], *struct.unpack_from("<IH", table, at + 4)
            overrides.append(SourceOverride(source, gsi, inti))
        at += size
    return Madt(address, local_apic, bool(flags & 1), tuple(ioapics), tuple(overrides))


__all__ = ["ApicError", "IoApic", "IoApicInfo", "IsaRoute", "LocalApic", "Madt", "RedirectionEntry",
           "SourceOverride", "find_rsdp", "parse_madt", "read_madt"]
