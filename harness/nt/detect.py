r"""Hardware detection into ``\Registry\Machine\Hardware\Description\System``.

This plays the part of NT's loader detection (NTDETECT / ReactOS freeldr ``PcHwDetect``):
it looks at the machine through a :class:`~harness.nt.busaccess.BusAccess` — registers,
never a configuration file — and writes the Description tree of nt-semantics.md §5.1:

* one ``MultifunctionAdapter\N`` with Identifier ``PCI`` per PCI bus (the first carrying
  PCI_REGISTRY_INFO as DeviceSpecific data), found by the HAL's enumeration;
* one ``MultifunctionAdapter\N`` with Identifier ``ISA`` and below it the controllers found
  by probing the PC/AT standard bases:

  - ``SerialController\k`` (0x3F8, 0x2F8, 0x3E8, 0x2E8): the line status register must not
    float (0xFF) and the scratch register must hold two patterns; Port length 7 as the
    loader reports it, DeviceSpecific CM_SERIAL_DEVICE_DATA with the 1.8432 MHz clock;
  - ``ParallelController\k`` (0x3BC, 0x378, 0x278): the data register must hold two
    patterns; Port length 3;
  - ``DiskController\k`` (0x3F0, 0x370): the main status register must show an idle
    controller (RQM set, DIO clear); the primary one's drives come from CMOS register 0x10
    as ``FloppyDiskPeripheral\n`` with CM_FLOPPY_DEVICE_DATA (version 2, the full form
    with the timings of the BIOS diskette parameter table; MaxDensity in KB);
  - ``KeyboardController\0`` with ``KeyboardPeripheral\0`` when the 8042 answers at 0x64.

Interrupts are **probed**, not assumed: the PIC's ELCR puts the lines in level mode for a
moment, the device is made to request an interrupt (UART: THRE interrupt enable; printer
port: IRQ enable and an acknowledge cycle; FDC: a controller reset; 8042: a command that
fills its output buffer), the 8259 interrupt request registers are read with OCW3 while
the request is up and after it is withdrawn, and the line that followed is the device's.
Every register touched is restored; the FDC is left reset and its interrupt acknowledged.
A line that cannot be put in level mode (0-2) is recognised by its rising edge only, so a
request already latched there (a timer tick the paused machine never took) is acknowledged
first; the keyboard controller falls back to the PC/AT IRQ 1 when its edge still was.
DMA channels cannot be observed without a transfer: the floppy controller gets the PC/AT
channel 2, as the loader reports.

Probing a base talks to whichever device decodes it, so a device shadowed by a later one
at the same ports is (correctly) not seen at all: one controller per base, never two.

The tree is written in ReactOS freeldr's layout (§5.1): every node has Identifier (when
there is one), Configuration Data (a REG_FULL_RESOURCE_DESCRIPTOR naming the enclosing
bus) and Component Information (16 bytes: Flags, Version, Revision, Key, AffinityMask).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Callable

from .busaccess import BusAccess, posted_reads, posted_writes, read_ports
from .hal import Hal
from .registry import DESCRIPTION_SYSTEM, REG_BINARY, REG_FULL_RESOURCE_DESCRIPTOR, Registry
from .resources import (CM_FLOPPY_DEVICE_DATA, CM_FULL_RESOURCE_DESCRIPTOR, CM_RESOURCE_INTERRUPT_LATCHED,
                        CM_RESOURCE_PORT_IO, CM_SERIAL_DEVICE_DATA, PCI_REGISTRY_INFO, CmResourceShare,
                        DeviceSpecific, Dma, Interrupt, Isa, PCIBus, Port)

SERIAL_BASES = (0x3F8, 0x2F8, 0x3E8, 0x2E8)
PARALLEL_BASES = (0x3BC, 0x378, 0x278)
FLOPPY_BASES = (0x3F0, 0x370)
KEYBOARD_DATA, KEYBOARD_STATUS = 0x60, 0x64
SERIAL_REGISTER_LENGTH = 7      # what the loader reports for a UART (§5.1)
PARALLEL_REGISTER_LENGTH = 3
FLOPPY_REGISTER_LENGTH = 8
UART_CLOCK = 1843200
FLOPPY_DMA = 2                  # PC/AT convention; cannot be probed without a transfer
KEYBOARD_IRQ = 1                # PC/AT convention, used only when the probe is inconclusive
#: CMOS 0x10 drive types -> MaxDensity in KB (AT BIOS table, as freeldr maps them).
FLOPPY_DENSITY = {1: 360, 2: 1200, 3: 720, 4: 1440, 5: 2880, 6: 2880}

# DEVICE_FLAGS (§5.1)
FLAG_INPUT, FLAG_OUTPUT, FLAG_CONSOLE_IN = 0x20, 0x40, 0x08
ELCR = (0x4D0, 0x4D1)
ELCR_LEVEL_CAPABLE = (0xF8, 0xDE)  # lines 0-2, 8 and 13 are edge-only on a PC
LEVEL_CAPABLE_LINES = ELCR_LEVEL_CAPABLE[0] | ELCR_LEVEL_CAPABLE[1] << 8 | 1 << 2  # (2: the cascade)
PIC_COMMAND, PIC_DATA = (0x20, 0xA0), (0x21, 0xA1)   # master, slave
OCW3_READ_IRR, OCW3_POLL, SPECIFIC_EOI = 0x0A, 0x0C, 0x60
#: At most this many probes of one device while more than one line rises (HardwareDetector.probe_irq).
#: A tick lands in ~1 round of 150 (q35, APIC HAL, load 4); but a host that starves QEMU for
#: longer than a tick (55 ms) puts one in several rounds running: with 3, 1 probe of 300
#: found no line under make test's load.  Extra rounds cost only while the doubt lasts.
PROBE_ROUNDS = 6


@dataclass
class DetectedPeripheral:
    """A peripheral found behind a controller (a floppy drive, a keyboard)."""

    kind: str                 # CONFIGURATION_TYPE name, e.g. "FloppyDiskPeripheral"
    identifier: str
    device_specific: bytes = b""


@dataclass
class DetectedController:
    """A controller hardware detection found, with the resources it probed."""

    kind: str                 # "SerialController", "ParallelController", ...
    identifier: str
    ports: list[tuple[int, int]]
    irq: int | None = None
    irq_probed: bool = False
    dma: int | None = None
    device_specific: bytes = b""
    flags: int = 0
    peripherals: list[DetectedPeripheral] = field(default_factory=list)

    @property
    def base(self) -> int:
        return self.ports[0][0]


@dataclass
class Detection:
    """What hardware detection found: the number of PCI buses and the controllers."""

    pci_buses: int
    controllers: list[DetectedController]

    def of_kind(self, kind: str) -> list[DetectedController]:
        return [c for c in self.controllers if c.kind == kind]


class HardwareDetector:
    """Probe a machine through ``bus`` (see the module docstring)."""

    def __init__(self, bus: BusAccess, hal: Hal | None = None) -> None:
        self.bus = bus
        self.hal = hal if hal is not None else Hal(bus)
        self._detecting = False
        self._elcr: tuple[int, ...] | None = None  # the ELCR as found, during detect()

    # ------------------------------------------------------------------ registers
    def _in(self, port: int) -> int:
        return self.bus.read_port(port, 1)

    def _out(self, port: int, value: int) -> None:
        self.bus.write_port(port, value & 0xFF, 1)

    def _ack(self, port: int) -> None:
        """A read for its side effect (acknowledge, drain): it rides with the next access."""
        posted_reads(self.bus, [(port, 1)])

    def _holds(self, port: int) -> bool:
        """Does a read/write register at ``port`` keep what is written (two patterns)?"""
        saved = self._in(port)
        try:
            for pattern in (0x5A, 0xA5):
                self._out(port, pattern)
                if self._in(port) != pattern:
                    return False
            return True
        finally:
            self._out(port, saved)

    def _irr(self) -> int:
        self._out(PIC_COMMAND[0], OCW3_READ_IRR)
        self._out(PIC_COMMAND[1], OCW3_READ_IRR)
        master, slave = read_ports(self.bus, [(PIC_COMMAND[0], 1), (PIC_COMMAND[1], 1)])
        return (master | slave << 8) & ~(1 << 2)  # not the cascade

    def _acknowledge_latched_edges(self, lines: int) -> None:
        """Acknowledge the requests latched on edge-only ``lines`` (a bit mask), so that a
        device on one of them can make an edge the probe sees.

        A paused machine can hold a timer tick (IRQ 0) latched in the IRR, depending on the
        moment the firmware ended: a UART sharing that line then made no visible edge and
        was detected without its IRQ in about one run of eight.  Each controller is polled
        (OCW3 poll: the read is the acknowledge cycle) with only those lines unmasked, and
        each answer gets its specific EOI; the IMR is put back.  The acknowledged requests
        are the one thing detection does not restore.

        One line at a time, the others masked: a tick on the timer's line, of the highest
        priority, latched again between two polls took the next poll's place, and the
        8042's request on IRQ 1 stayed latched, so its probe saw no edge (livefuzz round
        three: the keyboard detected on IRQ 0, or on none, in 15 probes of 600 on a loaded
        host; a fast-ticking PIT makes it happen every time)."""
        for command, data, mask in ((PIC_COMMAND[0], PIC_DATA[0], lines & 0xFF),
                                    (PIC_COMMAND[1], PIC_DATA[1], lines >> 8 & 0xFF)):
            if not mask:
                continue
            imr = self._in(data)
            try:
                for line in (n for n in range(8) if mask >> n & 1):
                    self._out(data, ~(1 << line) & 0xFF)
                    self._out(command, OCW3_POLL)
                    answer = self._in(command)
                    if answer & 0x80:   # its request (the only one it may answer with)
                        self._out(command, SPECIFIC_EOI | answer & 7)
            finally:
                self._out(data, imr)

    def probe_irq(self, request: Callable[[], None], withdraw: Callable[[], None]) -> set[int]:
        """The ISA IRQ lines that follow a device's interrupt request (module docstring).

        On a running machine (the APIC HAL's probe guest serves the bus) the timer keeps
        ticking, and a tick between two IRR reads looks like a second line that rose
        (about 1 probe in 100 found COM1 on IRQs 0 and 4, hence on none).  So when more
        than one line rose, or a lone edge-only line, the probe is made again, up to
        :data:`PROBE_ROUNDS` times, and only the lines that rose every time count."""
        saved = self._elcr
        if saved is None:
            saved = tuple(read_ports(self.bus, [(ELCR[0], 1), (ELCR[1], 1)]))
            if self._detecting:  # every probe puts it back: read once per detection
                self._elcr = saved
        self._out(ELCR[0], ELCR_LEVEL_CAPABLE[0])
        self._out(ELCR[1], ELCR_LEVEL_CAPABLE[1])
        lines = 0xFFFF
        try:
            for done in range(1, PROBE_ROUNDS + 1):
                lines &= self._lines_that_rise(request, withdraw)
                # one line or none: no tick to tell apart, unless the one line is edge-only
                # (the timer's 0): a lone tick there must not pass for the device's line, so
                # it rises twice to count (livefuzz: an 8042 on IRQ 2 was found on 0 or on
                # none, run to run, under the APIC HAL)
                if lines & (lines - 1) == 0 and (done > 1 or not lines & ~LEVEL_CAPABLE_LINES):
                    break
        finally:
            self._out(ELCR[0], saved[0])
            self._out(ELCR[1], saved[1])
        return {n for n in range(16) if lines >> n & 1}

    def _lines_that_rise(self, request: Callable[[], None], withdraw: Callable[[], None]) -> int:
        """One probe: the IRR bits that rose with the request, or fell when it was withdrawn."""
        withdraw()  # the device's line starts low: an edge-only line shows it rise
        before = self._irr()
        if before & ~LEVEL_CAPABLE_LINES:
            self._acknowledge_latched_edges(before & ~LEVEL_CAPABLE_LINES)
            before = self._irr()
        request()
        up = self._irr()
        withdraw()
        down = self._irr()
        return (up & ~down) | (up & ~before)

    @staticmethod
    def _one(lines: set[int]) -> int | None:
        return next(iter(lines)) if len(lines) == 1 else None

    # ------------------------------------------------------------------ devices
    def probe_serial(self, base: int) -> DetectedController | None:
        if self._in(base + 5) == 0xFF or not self._holds(base + 7):
            return None
        lcr = self._in(base + 3)
        if lcr & 0x80:
            self._out(base + 3, lcr & 0x7F)  # make +1 the IER, not the divisor latch
        try:
            ier, mcr = read_ports(self.bus, [(base + 1, 1), (base + 4, 1)])

            def request() -> None:
                self._out(base + 4, mcr | 0x08)   # OUT2 gates the IRQ on a PC
                self._out(base + 1, 0x02)         # THR empty interrupt: pending at once

            def withdraw() -> None:
                # The UART drives its line only when IER changes, so it passes through
                # line-status interrupts (none pending on an idle UART) on the way to 0:
                # the line is driven low even when IER was 0 already.
                self._out(base + 1, 0x04)
                self._out(base + 1, 0x00)
            irq = self._one(self.probe_irq(request, withdraw))
            self._out(base + 1, ier)
            self._out(base + 4, mcr)
        finally:
            if lcr & 0x80:
                self._out(base + 3, lcr)
        return DetectedController("SerialController", "", [(base, SERIAL_REGISTER_LENGTH)], irq, irq is not None,
                                  device_specific=CM_SERIAL_DEVICE_DATA(baud_clock=UART_CLOCK).pack(),
                                  flags=FLAG_INPUT | FLAG_OUTPUT)

    def probe_parallel(self, base: int) -> DetectedController | None:
        if not self._holds(base):
            return None
        control = self._in(base + 2)

        def request() -> None:
            self._out(base + 2, 0x1C)  # IRQ enable, select, not init
            self._out(base + 2, 0x1C)  # with IRQ enable already on: the acknowledge interrupt

        def withdraw() -> None:
            self._ack(base + 1)         # reading the status register acknowledges it
        irq = self._one(self.probe_irq(request, withdraw))
        self._out(base + 2, control & 0x3F)
        self._ack(base + 1)  # restoring the control word can re-arm it: acknowledge again
        return DetectedController("ParallelController", "", [(base, PARALLEL_REGISTER_LENGTH)], irq,
                                  irq is not None, flags=FLAG_OUTPUT)

    def probe_floppy(self, base: int) -> DetectedController | None:
        if self._in(base + 4) & 0xC0 != 0x80:
            return None
        dor = self._in(base + 2)

        def request() -> None:
            self._out(base + 2, 0x08)  # reset, DMA/IRQ gate on
            self._out(base + 2, 0x0C)  # out of reset: the controller interrupts

        def withdraw() -> None:
            for _ in range(4):         # SENSE INTERRUPT STATUS once per drive
                self._out(base + 5, 0x08)
                for _ in range(2):
                    if self._in(base + 4) & 0xC0 == 0xC0:
                        self._ack(base + 5)
        irq = self._one(self.probe_irq(request, withdraw))
        self._out(base + 2, dor)
        return DetectedController("DiskController", "", [(base, FLOPPY_REGISTER_LENGTH)], irq, irq is not None,
                                  dma=FLOPPY_DMA, flags=FLAG_INPUT | FLAG_OUTPUT)

    def probe_keyboard(self) -> DetectedController | None:
        if self._in(KEYBOARD_STATUS) == 0xFF:
            return None

        def request() -> None:
            self._out(KEYBOARD_STATUS, 0xD2)  # write keyboard output buffer
            self._out(KEYBOARD_DATA, 0xAA)

        def withdraw() -> None:
            self._ack(KEYBOARD_DATA)
        lines = self.probe_irq(request, withdraw)
        irq = self._one(lines)
        probed = irq is not None
        controller = DetectedController("KeyboardController", "", [(KEYBOARD_DATA, 1), (KEYBOARD_STATUS, 1)],
                                        irq if probed else KEYBOARD_IRQ, probed, flags=FLAG_INPUT | FLAG_CONSOLE_IN)
        controller.peripherals.append(DetectedPeripheral("KeyboardPeripheral", "PCAT_ENHANCED"))
        return controller

    def diskette_parameter_table(self) -> bytes:
        """The 11 bytes of the BIOS diskette parameter table the INT 1Eh vector points at
        (real-mode offset:segment at 0x78), where freeldr takes the drive timings from."""
        offset, segment = struct.unpack("<HH", self.bus.read_memory(4 * 0x1E, 4))
        return self.bus.read_memory((segment << 4) + offset, 11)

    def floppy_drives(self) -> list[DetectedPeripheral]:
        """Drives of the primary controller from CMOS 0x10 (high nibble A:, low nibble B:),
        each with the version-2 (full) CM_FLOPPY_DEVICE_DATA freeldr writes: the timings
        of the BIOS parameter table, 40 tracks for a 360 KB drive and 80 otherwise."""
        self._out(0x70, 0x10)
        types = self._in(0x71)
        drives = []
        table = None
        for unit, kind in enumerate((types >> 4, types & 0x0F)):
            if kind:
                table = table or self.diskette_parameter_table()
                data = CM_FLOPPY_DEVICE_DATA.from_parameter_table(
                    table, FLOPPY_DENSITY.get(kind, 0), 39 if kind == 1 else 79).pack()
                drives.append(DetectedPeripheral("FloppyDiskPeripheral", f"FLOPPY{unit + 1}", data))
        return drives

    # ------------------------------------------------------------------ all of it
    def detect(self) -> Detection:
        with posted_writes(self.bus):  # a probe's writes ride along with its next read
            self._detecting = True
            try:
                return self._detect()
            finally:
                self._detecting, self._elcr = False, None

    def _detect(self) -> Detection:
        controllers: list[DetectedController] = []
        serial = [c for c in (self.probe_serial(b) for b in SERIAL_BASES) if c]
        for i, c in enumerate(serial):
            c.identifier = f"COM{i + 1}"
        parallel = [c for c in (self.probe_parallel(b) for b in PARALLEL_BASES) if c]
        for i, c in enumerate(parallel):
            c.identifier = f"PARALLEL{i + 1}"
        floppy = [c for c in (self.probe_floppy(b) for b in FLOPPY_BASES) if c]
        for c in floppy:
            if c.base == FLOPPY_BASES[0]:
                c.peripherals = self.floppy_drives()
        keyboard = self.probe_keyboard()
        controllers = [*floppy, *serial, *parallel, *([keyboard] if keyboard else [])]
        return Detection(self.hal.no_buses, controllers)


# ---------------------------------------------------------------------- the tree
def component_information(flags: int = 0, key: int = 0, version: int = 0, revision: int = 0,
                          affinity: int = 0xFFFFFFFF) -> bytes:
    """CM_COMPONENT_INFORMATION: Flags, Version, Revision, Key, AffinityMask (§5.1)."""
    return struct.pack("<IHHII", flags, version, revision, key, affinity)


def _node(registry: Registry, path: str, identifier: str | None, config: CM_FULL_RESOURCE_DESCRIPTOR,
          *, flags: int = 0, key: int = 0) -> None:
    if not config.partials:  # a node without resources: Version/Revision/Count 0 (§1.3, §5.1)
        config = CM_FULL_RESOURCE_DESCRIPTOR.of(config.interface_type, config.bus_number, version=0, revision=0)
    registry.create_key(path, volatile=True)
    registry.set_value(path, "Component Information", component_information(flags, key), REG_BINARY)
    if identifier:
        registry.set_value(path, "Identifier", identifier)
    registry.set_value(path, "Configuration Data", config, REG_FULL_RESOURCE_DESCRIPTOR)


def write_description(registry: Registry, detection: Detection, *, mechanism: int = 1) -> list[str]:
    r"""Write ``detection`` under ``\Registry\Machine\Hardware\Description\System`` (replacing
    what a previous detection wrote there); return the keys written, in order."""
    written = []
    with registry.transaction():
        if registry.key_exists(DESCRIPTION_SYSTEM):
            registry.delete_key(DESCRIPTION_SYSTEM, recursive=True)
        _node(registry, DESCRIPTION_SYSTEM, "AT/AT COMPATIBLE", CM_FULL_RESOURCE_DESCRIPTOR.of(Isa, 0))
        written.append(DESCRIPTION_SYSTEM)
        adapter = 0
        for bus in range(detection.pci_buses):
            partials = ()
            if bus == 0:
                info = PCI_REGISTRY_INFO(no_buses=detection.pci_buses, hardware_mechanism=mechanism)
                partials = (DeviceSpecific(info.pack()),)
            path = f"{DESCRIPTION_SYSTEM}\\MultifunctionAdapter\\{adapter}"
            _node(registry, path, "PCI", CM_FULL_RESOURCE_DESCRIPTOR.of(PCIBus, bus, *partials), key=adapter)
            written.append(path)
            adapter += 1
        isa = f"{DESCRIPTION_SYSTEM}\\MultifunctionAdapter\\{adapter}"
        _node(registry, isa, "ISA", CM_FULL_RESOURCE_DESCRIPTOR.of(Isa, 0), key=adapter)
        written.append(isa)
        counts: dict[str, int] = {}
        for c in detection.controllers:
            n = counts.get(c.kind, 0)
            counts[c.kind] = n + 1
            path = f"{isa}\\{c.kind}\\{n}"
            partials = [Port(start, length, share=CmResourceShare.CmResourceShareDeviceExclusive,
                             flags=CM_RESOURCE_PORT_IO) for start, length in c.ports]
            if c.irq is not None:
                partials.append(Interrupt(c.irq, c.irq, -1, share=CmResourceShare.CmResourceShareUndetermined,
                                          flags=CM_RESOURCE_INTERRUPT_LATCHED))
            if c.dma is not None:
                partials.append(Dma(c.dma, share=CmResourceShare.CmResourceShareUndetermined))
            if c.device_specific:
                partials.append(DeviceSpecific(c.device_specific))
            _node(registry, path, c.identifier, CM_FULL_RESOURCE_DESCRIPTOR.of(Isa, 0, *partials),
                  flags=c.flags, key=n)
            written.append(path)
            pcounts: dict[str, int] = {}
            for p in c.peripherals:
                k = pcounts.get(p.kind, 0)
                pcounts[p.kind] = k + 1
                ppath = f"{path}\\{p.kind}\\{k}"
                extra = (DeviceSpecific(p.device_specific),) if p.device_specific else ()
                _node(registry, ppath, p.identifier, CM_FULL_RESOURCE_DESCRIPTOR.of(Isa, 0, *extra), key=k)
                written.append(ppath)
    return written


def detect_hardware(bus: BusAccess, registry: Registry, hal: Hal | None = None) -> Detection:
    """Probe the machine and write its Description tree; returns what was found."""
    detection = HardwareDetector(bus, hal).detect()
    write_description(registry, detection)
    return detection


__all__ = ["HardwareDetector", "Detection", "DetectedController", "DetectedPeripheral", "detect_hardware",
           "write_description", "component_information", "SERIAL_BASES", "PARALLEL_BASES", "FLOPPY_BASES"]
