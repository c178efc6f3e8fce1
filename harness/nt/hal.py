r"""The NT HAL routines a legacy driver calls, over a :class:`~harness.nt.busaccess.BusAccess`.

What a driver does with them (seed 000, nt-semantics.md §4): find its device with
:meth:`Hal.HalGetBusData` / :meth:`Hal.HalGetBusDataByOffset`, configure it with
:meth:`Hal.HalSetBusData` / :meth:`Hal.HalSetBusDataByOffset`, have it placed with
:meth:`Hal.HalAssignSlotResources`, then turn bus-relative values into system ones with
:meth:`Hal.HalTranslateBusAddress`, :meth:`Hal.HalGetInterruptVector` and
:meth:`Hal.HalGetAdapter`, and touch its registers with ``READ_PORT_*`` / ``WRITE_PORT_*``
or, for memory-mapped ones, :meth:`Hal.MmMapIoSpace` and ``READ_REGISTER_*`` / ``WRITE_REGISTER_*``.

NT passes results through pointers; here a routine returns what NT returns and, where NT
also fills OUT parameters, a small named tuple carrying them (``Translation``,
``InterruptVector``, ``(status, resource_list)``).  Buffers for bus data are caller-owned
writable buffers (``bytearray``/``memoryview``), exactly as in NT.

Model decisions (each also at its routine):

* **Buses.** PCI buses are found by enumerating from bus 0 through the bridges (header
  type 1): ``NoBuses`` is one more than the highest subordinate bus number, as the loader's
  PCI_REGISTRY_INFO would say (§1.14).  The enumeration is redone when the bus's ``epoch``
  moves and after any write the HAL makes to a bridge.
* **Pin2Line.** Microsoft's PC HAL trusts the InterruptLine the BIOS left in config 0x3C
  (``HalpPCIPin2ISALine`` in halx86 ``ixpciint.c``); this HAL instead does what its bus
  handler hook is there for: when it returns a function's header it replaces
  InterruptLine with the line the chipset really routes InterruptPin to, computed from the
  live PIRQ registers (PIIX3 00:01.0 0x60-0x63; ICH9 00:1f.0 0x60-0x63/0x68-0x6b, with the
  D25IR-D31IR registers of its RCRB) and QEMU's swizzle through bridges (qemu-facts.md §4
  "Interrupt lines").  A disabled link gives 0xFF ("unassigned", §1.12).  Under the APIC
  model the line is the I/O APIC input (GSI): on ICH9 PIRQ A-H are wired to GSI 16-23
  whatever the route registers say; on PIIX3 the PIRQ reaches the I/O APIC only through the
  ISA IRQ it is routed to.  ``HalGetInterruptVector(PCIBus, ...)`` then takes that line, as
  drivers pass it.
* **Windows.** ``HalTranslateBusAddress`` follows the ReactOS legacy table of §4.1: Internal
  and Isa as listed, every existing PCI bus I/O 0-0xFFFF and memory 0-0xFFFFFFFF.  With
  ``pci_translation="decoded"`` (the switch, README "HalTranslateBusAddress") a PCI bus
  instead gets what really reaches it: bus 0 what the platform forwards to it when the bus
  is a :class:`~harness.nt.busaccess.DecodeMap` (64-bit memory above 4 GiB included), and a
  bus behind a bridge the bridge's I/O, memory and prefetchable windows (read from its
  configuration space, and only when its command register enables forwarding),
  intersected with its parent's (:meth:`Hal.bus_windows`; the slot allocator always uses
  these).
* **Flavour.** That table is the legacy (PC/AT) HAL's; the ``acpi`` flavour
  (:data:`HAL_FLAVOURS`, chosen by :func:`hal_flavour_for`: the APIC HAL's) has no bus
  handlers, so every translation is the identity and TRUE and HalGetInterruptVector does
  not check the bus (§4.1 last paragraph, §9.17).
* **Allocation.** ``HalAssignSlotResources`` asks a :class:`SlotAllocator`: the I/O
  manager (``IoAssignResources``, which records the claim in the ResourceMap) once one is
  attached, else :class:`FirstFitAllocator`, the same arbiter with a private record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, NamedTuple, Protocol, Sequence, runtime_checkable

from .arbiter import Arbiter, Claim, Owner, claims_of, range_claim
from ..errors import HarnessError
from .busaccess import (IO_SPACE, MEMORY_SPACE, PCI_CONFIG_SIZE, BusAccess, BusAccessError,
                        DecodedSpan, DecodeMap, posted_writes, probe_config, read_ports)
from .resources import (BUS_DATA_TYPE, CM_RESOURCE_INTERRUPT_LATCHED, CM_RESOURCE_INTERRUPT_LEVEL_SENSITIVE,
                        CM_FULL_RESOURCE_DESCRIPTOR, CM_RESOURCE_LIST, CM_RESOURCE_MEMORY_PREFETCHABLE,
                        CM_RESOURCE_MEMORY_READ_ONLY, CM_RESOURCE_MEMORY_READ_WRITE, CM_RESOURCE_PORT_IO,
                        INTERFACE_TYPE,
                        CmResourceShare, Interrupt, InterruptRequirement,
                        IO_RESOURCE_ALTERNATIVE, IO_RESOURCE_DESCRIPTOR, IO_RESOURCE_LIST, IO_RESOURCE_PREFERRED,
                        IO_RESOURCE_REQUIREMENTS_LIST, Memory, MemoryLarge, MemoryLargeRequirement,
                        MemoryRequirement, PCI_SLOT_NUMBER, Port, PortRequirement)
from .status import NT_SUCCESS, NTSTATUS

if TYPE_CHECKING:  # .apic loads when an APIC is read: a PIC machine's HAL never needs it
    from .apic import Madt, RedirectionEntry

# ---------------------------------------------------------------------------------------
# Constants (§1.12, §4.2)

PCI_COMMON_HDR_LENGTH = 64
#: READ_PORT_* / WRITE_PORT_* put the port in DX (``in al, dx``): only its low 16 bits
#: reach the bus, so a driver's base + offset past 0xffff wraps (as QEMU wraps a card's
#: run: an isa-applesmc at 0xfff4 answers at 0x12; a UART at 0xfffb's +7 is 0x2).
X86_PORT_MASK = 0xFFFF
PCI_INVALID_VENDORID = 0xFFFF
PCI_MAX_DEVICES = 32
PCI_MULTIFUNCTION = 0x80
PCI_DEVICE_TYPE = 0
PCI_BRIDGE_TYPE = 1
PCI_ENABLE_IO_SPACE = 0x1
PCI_ENABLE_MEMORY_SPACE = 0x2
PCI_ADDRESS_IO_SPACE = 0x1
PCI_ADDRESS_MEMORY_TYPE_MASK = 0x6
PCI_TYPE_64BIT = 0x4
PCI_ADDRESS_MEMORY_PREFETCHABLE = 0x8
PCI_ADDRESS_IO_ADDRESS_MASK = 0xFFFFFFFC
PCI_ADDRESS_MEMORY_ADDRESS_MASK = 0xFFFFFFF0
PCI_ADDRESS_ROM_ADDRESS_MASK = 0xFFFFF800
PCI_ROMADDRESS_ENABLED = 0x1

#: PC/AT PIC HAL: vector = PRIMARY_VECTOR_BASE + IRQ, IRQL = PROFILE_LEVEL - IRQ (§4.2).
PRIMARY_VECTOR_BASE = 0x30
PROFILE_LEVEL = 27
#: x64 IRQLs the APIC model allocates device vectors from (CLOCK_LEVEL-1 down to CMCI_LEVEL).
CLOCK_LEVEL = 13
CMCI_LEVEL = 5
ISA_IRQS = 16          # two cascaded 8259s
IOAPIC_PINS = 24
CASCADE_IRQ = 2
#: Kernel-debugger COM ports and their IRQs (RX-usage): the HAL owns that IRQ's vector.
KD_PORT_IRQS = {0x3F8: 4, 0x2F8: 3, 0x3E8: 4, 0x2E8: 3}

#: ReactOS legacy bus-handler windows (§4.1), inclusive.
ISA_MEMORY_LIMIT = 0xFFFFFF
INTERNAL_MEMORY_LIMIT = 0xFFFFFFFF
PORT_LIMIT = 0xFFFF

#: MODEL: where HalAssignSlotResources lets the allocator place PCI BARs on a PC: I/O
#: above the ISA range (0-0xFFF), memory above the real-mode megabyte and below the
#: I/O APIC / local APIC / firmware area at 0xFEC00000.  64-bit BARs that do not fit
#: below 4 GiB may go up to 2**36 (an alternative descriptor).
PCI_IO_ALLOCATION = (0x1000, 0xFFFF)
PCI_MEMORY_ALLOCATION = (0x100000, 0xFEBFFFFF)
PCI_MEMORY64_ALLOCATION = (0x100000000, (1 << 36) - 1)

#: Interrupt routers the HAL knows (like Linux's pirq_routers): (vendor, device) -> kind.
PIRQ_ROUTERS = {(0x8086, 0x7000): "piix3", (0x8086, 0x2918): "ich9"}
#: Functions that have an InterruptPin but do not signal through INTx#: the PIIX4 ACPI
#: function's SCI is wired straight to an ISA IRQ (QEMU piix4_pm raises ISA IRQ 9), so
#: Pin2Line keeps the BIOS's InterruptLine for them.
NON_INTX_FUNCTIONS = {(0x8086, 0x7113): "PIIX4 ACPI: the SCI goes to an ISA IRQ, not INTA#"}
#: ICH9 chipset-configuration registers D25IR-D31IR (offsets in the RCRB), QEMU ich9.h.
ICH9_DIR_OFFSETS = {31: 0x3140, 30: 0x3142, 29: 0x3144, 28: 0x3146, 27: 0x3148, 26: 0x314C,
                    25: 0x3150}
ICH9_RCBA = 0xF0
#: ICH9 ACPI_CNTL SCI_IRQ_SEL (bits 2:0) -> IRQ.
ICH9_SCI_IRQS = {0: 9, 1: 10, 2: 11, 4: 20, 5: 21, 6: 22, 7: 23}

#: What the PC/AT HAL claims for itself (§2.4, ReactOS hal usage table): the clock, the
#: cascade, the RTC and the x87 error interrupts, and the motherboard ports; beside the
#: table, the ELCR it reads for each line's trigger mode (0x4d0-0x4d1) and the speaker
#: gate HalMakeBeep drives (0x61), so a device placed there conflicts with the HAL
#: (device_models/boards/core.yaml names the board devices behind each).
HAL_INTERRUPTS = (0, CASCADE_IRQ, 8, 13)
HAL_PORTS = ((0x00, 0x20), (0xC0, 0x20), (0x80, 0x10), (0x20, 2), (0xA0, 2), (0x40, 4),
             (0x48, 4), (0x61, 1), (0x92, 1), (0x70, 2), (0xF0, 0x10), (0x4D0, 2))
PCI_CONFIG_PORTS = (0xCF8, 8)


INTERRUPT_MODELS = ("pic", "apic", "auto")
#: Which HAL's bus routines run (nt-semantics.md §4.1, §9.17): ``legacy`` is the PC/AT HAL
#: with bus handlers (ReactOS hal/halx86/legacy, NT 4's only x86 HAL; HalName "PC Compatible
#: Eisa/Isa HAL"); ``acpi`` the ACPI HAL, which has none (ReactOS hal/halx86/acpi/busemul.c).
#: The choice, in one place (:func:`hal_flavour_for`): the PIC HAL is the PC/AT HAL (its
#: own claims are usage.c's PC/AT table, its name halpcat.c's), so ``legacy``; the APIC HAL
#: finds its I/O APIC in the ACPI MADT, so it is an ACPI HAL (halaacpi), so ``acpi``.
HAL_FLAVOURS = ("legacy", "acpi")
#: The name a HAL files its own claims under (``RESOURCEMAP\Hardware Abstraction Layer\<name>``,
#: nt-semantics.md §2.4), by (flavour, interrupt model), as ReactOS's HALs spell it: the PC/AT
#: HAL's in hal/halx86/legacy/halpcat.c, the ACPI PIC HAL's (halacpi) in hal/halx86/acpi/halacpi.c,
#: the ACPI APIC HAL's (halaacpi) in hal/halx86/apic/apicacpi.c (Vadim Galyant's APIC HAL, 2020).
HAL_NAMES = {("legacy", "pic"): "PC Compatible Eisa/Isa HAL",
             ("acpi", "pic"): "ACPI Compatible Eisa/Isa HAL",
             ("acpi", "apic"): "ACPI 1.0 - APIC platform UP"}
#: HalTranslateBusAddress on a PCI bus: the §4.1 table, or the windows that reach the bus.
PCI_TRANSLATIONS = ("table", "decoded")


@dataclass(frozen=True)
class ApicLine:
    """Where an APIC vector's interrupt comes from: an I/O APIC input (GSI), the ISA IRQ
    behind it if any, and the polarity/trigger the firmware's MADT gives that input
    (PCI GSIs: level, active high, as QEMU's ACPI tables declare its link devices)."""

    gsi: int
    isa_irq: int | None
    active_low: bool
    level: bool


class HalError(HarnessError):
    pass


class AssignmentNotDecodedError(HalError):
    """HalAssignSlotResources programmed a device but the platform does not decode it
    there: the model and the emulated hardware disagree (a finding, not a driver error)."""


# ---------------------------------------------------------------------------------------
# Small result types


class Translation(NamedTuple):
    """HalTranslateBusAddress: the BOOLEAN result, then the OUT AddressSpace and
    TranslatedAddress (unchanged AddressSpace and 0 when not translated)."""

    translated: bool
    address_space: int
    translated_address: int

    def __bool__(self) -> bool:  # the BOOLEAN NT returns, not "a non-empty tuple"
        return self.translated


class InterruptVector(NamedTuple):
    """HalGetInterruptVector: the system vector (0 = cannot connect), then the OUT Irql and
    Affinity; the three go unchanged to IoConnectInterrupt."""

    vector: int
    irql: int
    affinity: int

    def __bool__(self) -> bool:
        return self.vector != 0


def swizzle_to_bus0(bus: int, device: int, pin: int,
                    parent: Mapping[int, tuple[int, ...]]) -> tuple[int, int] | None:
    """(slot on bus 0, 0-based pin there) of ``pin`` (1 = INTA#) of a function at
    ``bus``:``device``, through each PCI-to-PCI bridge's swizzle (``parent``: secondary bus
    -> the bridge's (bus, slot, ...)); None when no bridge leads to the bus."""
    root_slot, root_pin0, at = device, pin - 1, bus
    while at != 0:
        bridge = parent.get(at)
        if bridge is None:
            return None
        root_pin0 = (root_pin0 + root_slot) % 4
        at, root_slot = bridge[0], bridge[1]
    return root_slot, root_pin0


def piix3_link(root_slot: int, root_pin0: int) -> int:
    """The PIRQ link (0 = A) the PIIX3 wires a bus-0 slot's pin to."""
    return (root_pin0 + root_slot - 1) & 3


def ich9_link(slot: int, pin0: int, read_dir: Callable[[int], int | None]) -> int | None:
    """The PIRQ link (0 = A) the ICH9 wires a bus-0 slot's pin to: slots 0-24 to PIRQ E-H by
    pin and slot, the DMI-to-PCI bridge (30) by pin, the board's slots by their D2xIR
    register (``read_dir(slot)``; None when it cannot be read)."""
    if slot <= 24:
        return 4 + ((pin0 + slot) & 3)
    if slot == 30:
        return 4 + pin0  # the DMI-to-PCI bridge is wired to PIRQ E-H
    ir = read_dir(slot)
    return None if ir is None else (ir >> (4 * pin0)) & 0x7


def pirq_register(link: int) -> int:
    """The router's configuration offset holding PIRQ ``link``'s route (A-D 0x60-0x63, E-H 0x68-0x6b)."""
    return 0x60 + link if link < 4 else 0x68 + link - 4


@dataclass(frozen=True)
class PciRoute:
    """How one function's interrupt pin reaches the interrupt controllers."""

    pin: int                 # 1 = INTA# .. 4 = INTD#
    root_slot: int           # slot on bus 0 after the bridge swizzle
    root_pin: int
    chipset: str             # "piix3" / "ich9"
    link: int                # PIRQ index 0-7 (A-H)
    register: int            # router config offset holding the link's route
    irq: int | None          # ISA IRQ the link is routed to, None when disabled
    gsi: int | None          # I/O APIC input

    @property
    def link_name(self) -> str:
        return "PIRQ" + "ABCDEFGH"[self.link]


@dataclass(frozen=True)
class PortAccess:
    """One READ_PORT_* / WRITE_PORT_* access as the port hooks see it.  Hooks are called
    with ``phase="before"`` (``value`` is None for a read; raising refuses the access) and
    ``phase="after"`` (``value`` holds what was read or written)."""

    phase: str
    kind: str        # "read" or "write"
    port: int        # the port, or the physical address of a register
    size: int
    value: int | None
    space: str = IO_SPACE   # IO_SPACE for READ_PORT_*, MEMORY_SPACE for READ_REGISTER_*


PortHook = Callable[[PortAccess], None]


@dataclass
class PciBar:
    """One base address register as HalAssignSlotResources sized it."""

    index: int               # 0-5; 6 = expansion ROM
    offset: int
    kind: str                # "io", "memory", "rom"
    size: int
    is_64bit: bool = False
    prefetchable: bool = False
    low_bits: int = 0        # type bits to keep when programming
    original: int = 0        # value before sizing (both halves for a 64-bit BAR)


@dataclass(eq=False)
class MappedIoSpace:
    """What MmMapIoSpace returns: a system virtual range over a physical one.  Register
    addresses a driver passes to READ_REGISTER_* / WRITE_REGISTER_* are
    ``virtual_address + offset``."""

    virtual_address: int
    physical_address: int
    length: int
    cache_type: int
    mapped: bool = True

    def __int__(self) -> int:
        return self.virtual_address

    def register(self, offset: int) -> int:
        if not 0 <= offset < self.length:
            raise HalError(f"offset {offset:#x} is outside the {self.length:#x}-byte mapping")
        return self.virtual_address + offset


#: MEMORY_CACHING_TYPE values MmMapIoSpace accepts.
MmNonCached, MmCached, MmWriteCombined = 0, 1, 2
#: Where this model's system PTEs (MmMapIoSpace mappings) start: x86 system space.
SYSTEM_PTE_BASE = 0xD0000000


# ---------------------------------------------------------------------------------------
# DMA adapters (HalGetAdapter)

Width8Bits, Width16Bits, Width32Bits = 0, 1, 2
Compatible, TypeA, TypeB, TypeC, TypeF = 0, 1, 2, 3, 4
DEVICE_DESCRIPTION_VERSION, DEVICE_DESCRIPTION_VERSION1, DEVICE_DESCRIPTION_VERSION2 = 0, 1, 2
#: 8237 page registers per channel (qemu-facts.md §1: 0x81-0x83, 0x87, 0x89-0x8b).
DMA_PAGE_PORTS = {0: 0x87, 1: 0x83, 2: 0x81, 3: 0x82, 5: 0x8B, 6: 0x89, 7: 0x8A}
PAGE_SIZE = 0x1000


@dataclass(frozen=True)
class DEVICE_DESCRIPTION:
    """DEVICE_DESCRIPTION (DDK): what a driver tells HalGetAdapter about its DMA."""

    version: int = DEVICE_DESCRIPTION_VERSION
    master: bool = False
    scatter_gather: bool = False
    demand_mode: bool = False
    auto_initialize: bool = False
    dma32_bit_addresses: bool = False
    ignore_count: bool = False
    dma64_bit_addresses: bool = False
    bus_number: int = 0
    dma_channel: int = 0
    interface_type: int = INTERFACE_TYPE.Isa
    dma_width: int = Width8Bits
    dma_speed: int = Compatible
    maximum_length: int = 0
    dma_port: int = 0


@dataclass(frozen=True)
class ADAPTER_OBJECT:
    """What HalGetAdapter hands back: for a system (8237) channel, the controller and its
    registers, and the limits a transfer on it obeys."""

    dma_channel: int | None          # system channel 0-7, None for a bus master
    controller: int | None           # 1 (8-bit, channels 0-3) or 2 (16-bit, 5-7)
    channel_number: int | None       # channel within the controller
    width16: bool
    master: bool
    scatter_gather: bool
    map_registers: int
    maximum_physical_address: int    # highest address a transfer may touch
    maximum_transfer: int | None     # bytes per transfer for a system channel
    boundary: int | None             # a transfer may not cross a multiple of this
    address_port: int | None
    count_port: int | None
    page_port: int | None
    mode: int | None                 # 8237 mode byte (channel, auto-init, request mode)


# ---------------------------------------------------------------------------------------
# The allocator interface


@runtime_checkable
class SlotAllocator(Protocol):
    """What HalAssignSlotResources needs from the arbiter: IoAssignResources (§3.1).

    ``RequestedResources`` are the device's requirements; the result is the status and,
    on success, the CM_RESOURCE_LIST assigned (raw, bus-relative values)."""

    def IoAssignResources(self, RegistryPath: str, DriverClassName: str | None,
                          DriverObject: Any, DeviceObject: Any,
                          RequestedResources: IO_RESOURCE_REQUIREMENTS_LIST,
                          ) -> tuple[NTSTATUS, CM_RESOURCE_LIST | None]: ...


BusySource = Callable[[IO_RESOURCE_REQUIREMENTS_LIST], Iterable[DecodedSpan]]


class FirstFitAllocator:
    """The HAL's allocator when no I/O manager is attached: the arbiter's allocation
    (:meth:`harness.nt.arbiter.Arbiter.allocate`) with its own private record.

    It keeps clear of whatever ``busy(requirements)`` reports (the HAL passes everything
    the platform decodes, except the device being assigned, plus the windows of bridges
    the device is not behind), of the ranges in ``avoid``, and of every range it handed
    to another (driver, device), so a second call cannot receive the same range (§9.22).
    A new assignment for the same (driver, device) replaces its previous one.  Nothing is
    written to the registry (that is the I/O manager's part, which replaces this class
    as the HAL's allocator when it is attached).
    """

    def __init__(self, busy: BusySource | None = None,
                 avoid: Iterable[tuple[str, int, int]] = ()) -> None:
        self.busy = busy
        self.avoid = list(avoid)
        self.arbiter = Arbiter()

    def IoAssignResources(self, RegistryPath: str, DriverClassName: str | None,
                          DriverObject: Any, DeviceObject: Any,
                          RequestedResources: IO_RESOURCE_REQUIREMENTS_LIST,
                          ) -> tuple[NTSTATUS, CM_RESOURCE_LIST | None]:
        req = RequestedResources
        owner = Owner(f"driver@{id(DriverObject):x}", f"device@{id(DeviceObject):x}")
        spans = [(span.space, span.start, span.end) for span in (self.busy(req) if self.busy else ())]
        reserved = [_reserved_claim(space, start, end) for space, start, end in spans + self.avoid]
        allocation = self.arbiter.allocate(owner, req, reserved=reserved)
        if allocation.resources is None:
            return NTSTATUS.STATUS_INSUFFICIENT_RESOURCES, None
        self.arbiter.replace(owner, claims_of(owner, allocation.resources))
        return NTSTATUS.STATUS_SUCCESS, allocation.resources


def _reserved_claim(space: str, start: int, end: int) -> Claim:
    """A range the hardware decodes, to keep clear of."""
    return range_claim(Owner("<decoded by the hardware>"), space, start, end)   # IO_SPACE is "io"


def _space_of(partial: Any) -> str | None:
    if isinstance(partial, Port):
        return IO_SPACE
    if isinstance(partial, (Memory, MemoryLarge)):
        return MEMORY_SPACE
    return None


# ---------------------------------------------------------------------------------------
# PCI topology


@dataclass
class _Topology:
    """The PCI buses, functions and bridges the HAL found, with the bus epoch it was read at."""

    epoch: int
    no_buses: int
    functions: list[tuple[int, int, int]]
    parent: dict[int, tuple[int, int, int]]          # secondary bus -> bridge
    bridges: list[tuple[int, int, int]]
    router: tuple[str, tuple[int, int, int]] | None = None


def hal_flavour_for(interrupt_model: str, flavour: str | None = None) -> str:
    """The HAL flavour (:data:`HAL_FLAVOURS`) a HAL with ``interrupt_model`` (``pic`` or
    ``apic``) runs: ``flavour`` when given and possible, else the one that model is.

    ``acpi`` with the PIC is the ACPI PIC HAL (halacpi): the firmware must then have ACPI
    tables, which :class:`Hal` checks on its bus.  ``legacy`` with the APIC would be an MPS
    HAL reading the MP table, which is not modelled (the APIC model reads the MADT)."""
    if interrupt_model not in ("pic", "apic"):
        raise ValueError(f"interrupt_model must be pic or apic here, not {interrupt_model!r}")
    if flavour is None:
        return "acpi" if interrupt_model == "apic" else "legacy"
    if flavour not in HAL_FLAVOURS:
        raise ValueError(f"hal flavour must be one of {', '.join(HAL_FLAVOURS)}, not {flavour!r}")
    if flavour == "legacy" and interrupt_model == "apic":
        raise ValueError("the APIC HAL finds its I/O APIC in the ACPI MADT: it is an ACPI HAL "
                         "(a legacy MPS APIC HAL is not modelled)")
    return flavour


class Hal:
    """The HAL of one machine, reached through ``bus``.

    ``interrupt_model`` is ``"pic"`` (the PC/AT HAL, §4.2) or ``"apic"``; ``flavour`` is
    ``"legacy"`` or ``"acpi"`` (:data:`HAL_FLAVOURS`; default: the one the interrupt model
    is, :func:`hal_flavour_for`), which decides HalTranslateBusAddress and the bus checks
    of HalGetInterruptVector;
    ``processors`` gives the active-processor affinity mask; ``kd_port`` is the base port
    of the kernel debugger's COM port, if any (its IRQ then never maps, as in ReactOS);
    ``pin_to_line`` replaces PCI InterruptLine with the really routed line (module
    docstring); ``allocator`` stands for the arbiter in HalAssignSlotResources.
    """

    def __init__(self, bus: BusAccess, *, interrupt_model: str = "pic", processors: int = 1,
                 kd_port: int | None = None, pin_to_line: bool = True,
                 allocator: SlotAllocator | None = None, verify_assignments: bool = True,
                 madt: Madt | None = None,
                 ioapic_reader: Callable[[], Sequence[int]] | None = None,
                 pci_translation: str = "table", flavour: str | None = None) -> None:
        if pci_translation not in PCI_TRANSLATIONS:
            raise ValueError(f"pci_translation must be one of {', '.join(PCI_TRANSLATIONS)}, not {pci_translation!r}")
        self.pci_translation = pci_translation
        if interrupt_model not in INTERRUPT_MODELS:
            raise ValueError(f"interrupt_model must be one of {', '.join(INTERRUPT_MODELS)}, not {interrupt_model!r}")
        if processors < 1:
            raise ValueError("at least one processor")
        self.bus = bus
        self._madt = madt
        self._madt_read = madt is not None
        #: The live redirection entries when the bus cannot reach the I/O APIC's window
        #: itself (HMP ``info pic`` on a paused machine); raw 64-bit values by pin.
        self.ioapic_reader = ioapic_reader
        if interrupt_model == "auto":
            interrupt_model = "apic" if self.madt is not None and self.madt.ioapics else "pic"
        self.interrupt_model = interrupt_model
        self.flavour = hal_flavour_for(interrupt_model, flavour)
        #: Where this HAL's own claims are filed (:data:`HAL_NAMES`).
        self.name = HAL_NAMES[self.flavour, interrupt_model]
        if self.flavour == "acpi" and interrupt_model == "pic" and not self._has_acpi_tables():
            raise HalError("the ACPI HAL needs the firmware's ACPI tables and this machine has none "
                           "(QEMU's isapc has none: tests/test_hal_flavours.py measures it)")
        self.active_processors = (1 << processors) - 1
        self.kd_port = kd_port
        self.pin_to_line = pin_to_line
        if allocator is None:
            allocator = FirstFitAllocator()
        if isinstance(allocator, FirstFitAllocator) and allocator.busy is None:
            allocator.busy = self.busy_ranges  # what this machine decodes
        self.allocator: SlotAllocator = allocator
        self.verify_assignments = verify_assignments
        self.port_hooks: list[PortHook] = []
        self._topology: _Topology | None = None
        self._apic_vectors: dict[int, int] = {}         # GSI -> vector
        #: Vector -> where it comes from, for HalEnableSystemInterrupt on the I/O APIC.
        self.apic_lines: dict[int, ApicLine] = {}
        self.mappings: dict[int, MappedIoSpace] = {}
        self._next_system_va = SYSTEM_PTE_BASE

    # ================================================================== port I/O
    def add_port_hook(self, hook: PortHook) -> None:
        """Attach a hook every READ_PORT_* / WRITE_PORT_* passes through (the verifier)."""
        self.port_hooks.append(hook)

    def remove_port_hook(self, hook: PortHook) -> None:
        self.port_hooks.remove(hook)

    def _port_read(self, port: int, size: int) -> int:
        port &= X86_PORT_MASK
        for hook in list(self.port_hooks):
            hook(PortAccess("before", "read", port, size, None))
        value = self.bus.read_port(port, size)
        for hook in list(self.port_hooks):
            hook(PortAccess("after", "read", port, size, value))
        return value

    def _port_write(self, port: int, value: int, size: int) -> None:
        if not 0 <= value < 1 << (8 * size):
            raise HalError(f"value {value:#x} does not fit in {size} byte(s)")
        port &= X86_PORT_MASK
        for hook in list(self.port_hooks):
            hook(PortAccess("before", "write", port, size, value))
        self.bus.write_port(port, value, size)
        for hook in list(self.port_hooks):
            hook(PortAccess("after", "write", port, size, value))

    def READ_PORT_UCHAR(self, Port: int) -> int:
        return self._port_read(Port, 1)

    def READ_PORT_USHORT(self, Port: int) -> int:
        return self._port_read(Port, 2)

    def READ_PORT_ULONG(self, Port: int) -> int:
        return self._port_read(Port, 4)

    def _port_read_buffer(self, port: int, size: int, buffer: Any, count: int) -> None:
        """``count`` reads of one port into ``buffer`` (little-endian items of ``size``
        bytes), in one exchange on a bus that batches reads (nothing is written between
        them, so the device sees what ``count`` single reads would show it).  Each access
        passes the hooks: every "before" one ahead of the reads, then every "after"."""
        if count < 0 or len(buffer) < count * size:
            raise HalError(f"READ_PORT_BUFFER: {count} item(s) of {size} byte(s) do not fit a buffer of {len(buffer)}")
        port &= X86_PORT_MASK
        for hook in list(self.port_hooks):
            for _ in range(count):
                hook(PortAccess("before", "read", port, size, None))
        values = read_ports(self.bus, [(port, size)] * count)
        for hook in list(self.port_hooks):
            for value in values:
                hook(PortAccess("after", "read", port, size, value))
        buffer[:count * size] = b"".join(v.to_bytes(size, "little") for v in values)

    def READ_PORT_BUFFER_UCHAR(self, Port: int, Buffer: Any, Count: int) -> None:
        self._port_read_buffer(Port, 1, Buffer, Count)

    def READ_PORT_BUFFER_USHORT(self, Port: int, Buffer: Any, Count: int) -> None:
        self._port_read_buffer(Port, 2, Buffer, Count)

    def READ_PORT_BUFFER_ULONG(self, Port: int, Buffer: Any, Count: int) -> None:
        self._port_read_buffer(Port, 4, Buffer, Count)

    def WRITE_PORT_UCHAR(self, Port: int, Value: int) -> None:
        self._port_write(Port, Value, 1)

    def WRITE_PORT_USHORT(self, Port: int, Value: int) -> None:
        self._port_write(Port, Value, 2)

    def WRITE_PORT_ULONG(self, Port: int, Value: int) -> None:
        self._port_write(Port, Value, 4)

    # ================================================================== MmMapIoSpace
    # Memory-mapped registers: a driver maps the translated (physical) range with
    # MmMapIoSpace and passes addresses inside the returned system range to
    # READ_REGISTER_* / WRITE_REGISTER_*.  Reads reach the device through the bus's
    # read_memory; writes need a bus that can write memory (the guest agent): the
    # host-side monitor reads physical memory but cannot write it.
    def MmMapIoSpace(self, PhysicalAddress: int, NumberOfBytes: int,
                     CacheType: int = MmNonCached) -> "MappedIoSpace | None":
        """Map ``NumberOfBytes`` of physical address space at a system virtual address.

        None (NT's NULL) for a zero length, a negative address or a range that runs past
        4 GiB (the 32-bit system's physical space is all this model maps).  The virtual
        address keeps the byte offset within the page; every mapping gets its own pages
        from the system PTE range, so two mappings of one range are distinct."""
        if NumberOfBytes <= 0 or PhysicalAddress < 0 or PhysicalAddress + NumberOfBytes > 1 << 32:
            return None
        if CacheType not in (MmNonCached, MmCached, MmWriteCombined):
            return None
        offset = PhysicalAddress % PAGE_SIZE
        pages = _pages(offset + NumberOfBytes)
        base = self._next_system_va + offset
        self._next_system_va += (pages + 1) * PAGE_SIZE  # a guard page between mappings
        mapping = MappedIoSpace(base, PhysicalAddress, NumberOfBytes, CacheType)
        self.mappings[base] = mapping
        return mapping

    def MmUnmapIoSpace(self, BaseAddress: "int | MappedIoSpace", NumberOfBytes: int) -> None:
        """Unmap what MmMapIoSpace returned; base and length must be exactly the mapped
        ones (anything else is a driver bug NT bugchecks on: HalError here)."""
        base = BaseAddress.virtual_address if isinstance(BaseAddress, MappedIoSpace) else BaseAddress
        mapping = self.mappings.get(base)
        if mapping is None:
            raise HalError(f"MmUnmapIoSpace({base:#x}): no mapping starts there")
        if NumberOfBytes != mapping.length:
            raise HalError(f"MmUnmapIoSpace({base:#x}, {NumberOfBytes:#x}): mapped with length {mapping.length:#x}")
        mapping.mapped = False
        del self.mappings[base]

    def _physical(self, register: int, size: int) -> int:
        for mapping in self.mappings.values():
            if mapping.virtual_address <= register and register + size <= mapping.virtual_address + mapping.length:
                return mapping.physical_address + (register - mapping.virtual_address)
        raise HalError(f"register access at {register:#x} (+{size}) is outside every MmMapIoSpace mapping "
                       "(on NT: bugcheck PAGE_FAULT_IN_NONPAGED_AREA)")

    def _register_read(self, register: int, size: int) -> int:
        address = self._physical(register, size)
        for hook in list(self.port_hooks):
            hook(PortAccess("before", "read", address, size, None, MEMORY_SPACE))
        value = int.from_bytes(self.bus.read_memory(address, size), "little")
        for hook in list(self.port_hooks):
            hook(PortAccess("after", "read", address, size, value, MEMORY_SPACE))
        return value

    def _register_write(self, register: int, value: int, size: int) -> None:
        if not 0 <= value < 1 << (8 * size):
            raise HalError(f"value {value:#x} does not fit in {size} byte(s)")
        address = self._physical(register, size)
        writer = getattr(self.bus, "write_memory", None)
        if writer is None:
            raise HalError(f"WRITE_REGISTER at {address:#x}: this bus ({type(self.bus).__name__}) cannot write "
                           "memory; use the guest agent's bus (harness.guests.agent)")
        for hook in list(self.port_hooks):
            hook(PortAccess("before", "write", address, size, value, MEMORY_SPACE))
        writer(address, value.to_bytes(size, "little"))
        for hook in list(self.port_hooks):
            hook(PortAccess("after", "write", address, size, value, MEMORY_SPACE))

    @property
    def can_write_registers(self) -> bool:
        return callable(getattr(self.bus, "write_memory", None))

    def READ_REGISTER_UCHAR(self, Register: int) -> int:
        return self._register_read(Register, 1)

    def READ_REGISTER_USHORT(self, Register: int) -> int:
        return self._register_read(Register, 2)

    def READ_REGISTER_ULONG(self, Register: int) -> int:
        return self._register_read(Register, 4)

    def WRITE_REGISTER_UCHAR(self, Register: int, Value: int) -> None:
        self._register_write(Register, Value, 1)

    def WRITE_REGISTER_USHORT(self, Register: int, Value: int) -> None:
        self._register_write(Register, Value, 2)

    def WRITE_REGISTER_ULONG(self, Register: int, Value: int) -> None:
        self._register_write(Register, Value, 4)

    # ================================================================== PCI topology
    def _pci(self) -> _Topology:
        epoch = self.bus.epoch
        if self._topology is None or self._topology.epoch != epoch:
            self._topology = self._enumerate(epoch)
        return self._topology

    def rescan(self) -> None:
        """Forget the bus topology (rebuilt on next use)."""
        self._topology = None

    def _enumerate(self, epoch: int) -> _Topology:
        functions: list[tuple[int, int, int]] = []
        parent: dict[int, tuple[int, int, int]] = {}
        bridges: list[tuple[int, int, int]] = []
        highest = 0
        todo = [0]
        seen: set[int] = set()
        while todo:
            bus = todo.pop(0)
            if bus in seen:
                continue
            seen.add(bus)
            highest = max(highest, bus)
            for device in range(PCI_MAX_DEVICES):
                header_type = None
                for function in range(8):
                    if function and not (header_type is not None and header_type & PCI_MULTIFUNCTION
                                         and header_type != 0xFF):
                        break
                    if self._vendor(bus, device, function) == PCI_INVALID_VENDORID:
                        if function == 0:
                            break
                        continue
                    ht = self.bus.read_config(bus, device, function, 0x0E, 1)[0]
                    if function == 0:
                        header_type = ht
                    functions.append((bus, device, function))
                    if ht & 0x7F == PCI_BRIDGE_TYPE:
                        bridges.append((bus, device, function))
                        _, secondary, subordinate = self.bus.read_config(bus, device, function, 0x18, 3)
                        highest = max(highest, subordinate)
                        if secondary > bus and secondary not in parent:
                            parent[secondary] = (bus, device, function)
                            todo.append(secondary)
        # No function at all on bus 0: the machine has no PCI (isapc), so no PCI bus handler.
        topo = _Topology(epoch, highest + 1 if functions else 0, functions, parent, bridges)
        for key in functions:
            if key[0] == 0:
                ident = self.bus.read_config(*key, 0, 4)
                kind = PIRQ_ROUTERS.get((int.from_bytes(ident[:2], "little"),
                                         int.from_bytes(ident[2:], "little")))
                if kind is not None:
                    topo.router = (kind, key)
                    break
        return topo

    @property
    def no_buses(self) -> int:
        """PCI_REGISTRY_INFO.NoBuses: buses 0..NoBuses-1 have a bus handler (§1.14); 0 when
        the machine has no PCI at all."""
        return self._pci().no_buses

    def pci_functions(self) -> list[tuple[int, int, int]]:
        """Every function found by the enumeration, as (bus, device, function)."""
        return list(self._pci().functions)

    def _vendor(self, bus: int, device: int, function: int) -> int:
        return int.from_bytes(self.bus.read_config(bus, device, function, 0, 2), "little")

    def _pci_bus_exists(self, bus: int) -> bool:
        return 0 <= bus < self.no_buses

    def _valid_slot(self, bus: int, slot: int) -> tuple[int, int] | None:
        """HalpValidPCISlot (§4.3 step 2): Reserved bits, device range, function > 0 only on
        a multifunction device whose function 0 exists."""
        if slot >> 8 or slot < 0:
            return None
        device, function = slot & 0x1F, (slot >> 5) & 0x7
        if function:
            header_type = self.bus.read_config(bus, device, 0, 0x0E, 1)[0]
            if not header_type & PCI_MULTIFUNCTION or header_type == 0xFF:
                return None
        return device, function

    # ================================================================== bus data
    def HalGetBusData(self, BusDataType: int, BusNumber: int, SlotNumber: int,
                      Buffer: Any, Length: int) -> int:
        """HalGetBusData (§4.3, DDK4-k103_6) ≡ HalGetBusDataByOffset at Offset 0."""
        return self.HalGetBusDataByOffset(BusDataType, BusNumber, SlotNumber, Buffer, 0, Length)

    def HalGetBusDataByOffset(self, BusDataType: int, BusNumber: int, SlotNumber: int,
                              Buffer: Any, Offset: int, Length: int) -> int:
        """Read bus data into ``Buffer``; return the number of bytes read (§4.3).

        PCIConfiguration: 0 when the bus does not exist; an empty (or invalid) slot gives 2
        at Offset 0 (Buffer = 0xFF 0xFF), 1 at Offset 1, else 0; otherwise the bytes read,
        with Length clamped to 256 and, MODEL, Offset+Length clamped to 256.  The header's
        InterruptLine is the routed line (Pin2Line, module docstring).
        Cmos: CMOS bytes from location SlotNumber through ports 0x70/0x71, stopping at
        0x100; Offset and BusNumber are ignored (RX-busemul passes bus 0 and no offset).
        Other types: 0.
        """
        SlotNumber = _slot_ulong(SlotNumber)
        if Length < 0 or Offset < 0:
            return 0
        view = memoryview(Buffer).cast("B")
        if Length > len(view):
            raise HalError(f"Buffer holds {len(view)} bytes, Length is {Length}")
        if BusDataType == BUS_DATA_TYPE.Cmos:
            return self._cmos_read(SlotNumber, view, Length)
        if BusDataType != BUS_DATA_TYPE.PCIConfiguration:
            return 0
        if not self._pci_bus_exists(BusNumber):
            return 0
        return self._pci_read(BusNumber, SlotNumber, view, Offset, Length)

    def get_bus_data(self, bus_data_type: int, bus_number: int, slot_number: int,
                     offset: int = 0, length: int = PCI_CONFIG_SIZE) -> bytes:
        """HalGetBusDataByOffset returning the bytes it filled in."""
        buf = bytearray(max(length, 0))
        n = self.HalGetBusDataByOffset(bus_data_type, bus_number, slot_number, buf, offset, length)
        return bytes(buf[:n])

    def _pci_read(self, bus: int, slot: int, out: memoryview, offset: int, length: int) -> int:
        length = min(length, PCI_CONFIG_SIZE)
        if offset >= PCI_CONFIG_SIZE:
            return 0
        length = min(length, PCI_CONFIG_SIZE - offset)
        where = self._valid_slot(bus, slot)
        if offset >= PCI_COMMON_HDR_LENGTH:
            if where is None or self._vendor(bus, *where) == PCI_INVALID_VENDORID:
                return 0
            out[:length] = self.bus.read_config(bus, *where, offset, length)
            return length
        if where is None:
            header = b"\xff" * PCI_COMMON_HDR_LENGTH
        else:
            header = self._header(bus, *where)
        usable = 2 if header[:2] == b"\xff\xff" else PCI_COMMON_HDR_LENGTH
        if usable < offset:
            return 0
        count = min(usable - offset, length)
        out[:count] = header[offset:offset + count]
        if count < length and offset + count == PCI_COMMON_HDR_LENGTH and where is not None:
            rest = length - count
            out[count:length] = self.bus.read_config(bus, *where, PCI_COMMON_HDR_LENGTH, rest)
            count += rest
        return count

    def _header(self, bus: int, device: int, function: int) -> bytes:
        header = bytearray(self.bus.read_config(bus, device, function, 0, PCI_COMMON_HDR_LENGTH))
        if header[:2] != b"\xff\xff" and self.pin_to_line and header[0x3D] and header[0x0E] & 0x7F in (0, 1):
            line = self._pin_to_line(bus, device, function, header[0x3D])
            if line is not None:
                header[0x3C] = line
        return bytes(header)

    def HalSetBusData(self, BusDataType: int, BusNumber: int, SlotNumber: int,
                      Buffer: Any, Length: int) -> int:
        """HalSetBusData (§4.4) ≡ HalSetBusDataByOffset at Offset 0."""
        return self.HalSetBusDataByOffset(BusDataType, BusNumber, SlotNumber, Buffer, 0, Length)

    def HalSetBusDataByOffset(self, BusDataType: int, BusNumber: int, SlotNumber: int,
                              Buffer: Any, Offset: int, Length: int) -> int:
        """Write bus data; return the bytes set (§4.4, DDK4-k103_13).

        PCIConfiguration: 0 for a missing bus or an empty slot; otherwise exactly
        [Offset, Offset+Length) clamped to 256 is written through to the device (the caller
        preserves read-only fields), and the count is returned.  InterruptLine is written as
        given (the PC HAL's Line2Pin is a no-op).  Cmos: bytes to CMOS locations from
        SlotNumber (stopping at 0x100).  Other types: 0.
        """
        SlotNumber = _slot_ulong(SlotNumber)
        if Length < 0 or Offset < 0:
            return 0
        data = bytes(memoryview(Buffer).cast("B")[:Length])
        if len(data) < Length:
            raise HalError(f"Buffer holds {len(data)} bytes, Length is {Length}")
        if BusDataType == BUS_DATA_TYPE.Cmos:
            return self._cmos_write(SlotNumber, data)
        if BusDataType != BUS_DATA_TYPE.PCIConfiguration or not self._pci_bus_exists(BusNumber):
            return 0
        where = self._valid_slot(BusNumber, SlotNumber)
        if where is None or self._vendor(BusNumber, *where) == PCI_INVALID_VENDORID:
            return 0
        if Offset >= PCI_CONFIG_SIZE:
            return 0
        data = data[:PCI_CONFIG_SIZE - Offset]
        if data:
            header_type = self.bus.read_config(BusNumber, *where, 0x0E, 1)[0]
            self.bus.write_config(BusNumber, *where, Offset, data)
            if header_type & 0x7F == PCI_BRIDGE_TYPE:
                self.rescan()  # bus numbers or windows may have moved
        return len(data)

    # ------------------------------------------------------------------ CMOS
    def _cmos_read(self, address: int, out: memoryview, length: int) -> int:
        count = 0
        while count < length and address + count < 0x100:
            self.bus.write_port(0x70, address + count, 1)
            out[count] = self.bus.read_port(0x71, 1)
            count += 1
        return count

    def _cmos_write(self, address: int, data: bytes) -> int:
        count = 0
        while count < len(data) and address + count < 0x100:
            self.bus.write_port(0x70, address + count, 1)
            self.bus.write_port(0x71, data[count], 1)
            count += 1
        return count

    # ================================================================== interrupt routing
    def pci_interrupt_route(self, bus: int, device: int, function: int) -> PciRoute | None:
        """Where the function's InterruptPin goes: swizzled to bus 0, then through the
        chipset's PIRQ link and its route register (module docstring).  None when the
        function has no pin or the HAL knows no router on this machine."""
        topo = self._pci()
        pin = self.bus.read_config(bus, device, function, 0x3D, 1)[0]
        if not 1 <= pin <= 4 or topo.router is None or self._not_intx(bus, device, function):
            return None
        root = swizzle_to_bus0(bus, device, pin, topo.parent)
        if root is None:
            return None  # not reachable from bus 0
        root_slot, root_pin0 = root
        kind, router = topo.router
        if kind == "piix3":
            link = piix3_link(root_slot, root_pin0)
        else:
            link = ich9_link(root_slot, root_pin0, lambda slot: self._ich9_dir(router, slot))
            if link is None:
                return None
        register = pirq_register(link)
        route = self.bus.read_config(*router, register, 1)[0]
        if kind == "piix3":
            irq = route if route < ISA_IRQS else None  # QEMU routes any value below 16
            gsi = irq
        else:
            irq = None if route & 0x80 else route & 0x0F
            gsi = ISA_IRQS + link
        return PciRoute(pin, root_slot, root_pin0 + 1, kind, link, register, irq, gsi)

    def _ich9_dir(self, router: tuple[int, int, int], slot: int) -> int | None:
        """Slot ``slot``'s D2xIR register through the RCBA the LPC bridge holds, or None."""
        rcba = int.from_bytes(self.bus.read_config(*router, ICH9_RCBA, 4), "little")
        if not rcba & 1:
            return None  # the D25IR-D31IR registers are not reachable
        return int.from_bytes(self.bus.read_memory((rcba & 0xFFFFC000) + ICH9_DIR_OFFSETS[slot], 2), "little")

    def _not_intx(self, bus: int, device: int, function: int) -> bool:
        ident = self.bus.read_config(bus, device, function, 0, 4)
        return (int.from_bytes(ident[:2], "little"), int.from_bytes(ident[2:], "little")) in NON_INTX_FUNCTIONS

    def _pin_to_line(self, bus: int, device: int, function: int, pin: int) -> int | None:
        topo = self._pci()
        if topo.router is None or self._not_intx(bus, device, function):
            return None  # keep the BIOS hint, as the PC HAL does
        route = self.pci_interrupt_route(bus, device, function)
        if route is None:
            return 0xFF
        line = route.gsi if self.interrupt_model == "apic" else route.irq
        return 0xFF if line is None else line

    # ================================================================== HalReportResourceUsage
    def HalReportResourceUsage(self) -> CM_RESOURCE_LIST:
        """What the PC/AT HAL claims for itself (§2.4), raw, for the I/O manager to file
        under ``Hardware Abstraction Layer``, all DriverExclusive, in the HAL's two passes:
        first device usage, in a full descriptor of the machine's bus type (Isa): the
        kernel debugger's COM port IRQ when it uses a port whose IRQ the HAL knows (as
        ReactOS registers it, IDT_DEVICE); then internal usage, InterfaceType Internal: its
        interrupts (clock, cascade, RTC, x87 error, the ACPI SCI when the chipset has one)
        and its ports (8237s and page registers, PICs, PITs, port A, CMOS/RTC, x87, PCI
        configuration when there is a PCI bus, the debugger port's 8).  A descriptor with
        nothing in it is not written; within each, interrupts come before ports."""
        exclusive = CmResourceShare.CmResourceShareDriverExclusive

        def interrupts(irqs: Iterable[int]) -> list[Interrupt]:
            return [Interrupt(irq, irq, self.active_processors, share=exclusive,
                              flags=CM_RESOURCE_INTERRUPT_LATCHED) for irq in sorted(set(irqs))]
        irqs = list(HAL_INTERRUPTS)
        sci = self.sci_irq()
        if sci is not None:
            irqs.append(sci)
        ports = list(HAL_PORTS)
        if self._pci_bus_exists(0):
            ports.append(PCI_CONFIG_PORTS)
        device_irqs = []
        if self.kd_port is not None:
            ports.append((self.kd_port, 8))
            if self.kd_port in KD_PORT_IRQS:
                device_irqs.append(KD_PORT_IRQS[self.kd_port])
        internal = interrupts(irqs) + [Port(start, length, share=exclusive, flags=CM_RESOURCE_PORT_IO)
                                       for start, length in sorted(ports)]
        device = [CM_FULL_RESOURCE_DESCRIPTOR.of(INTERFACE_TYPE.Isa, 0, *interrupts(device_irqs))] \
            if device_irqs else []
        return CM_RESOURCE_LIST((*device, CM_FULL_RESOURCE_DESCRIPTOR.of(INTERFACE_TYPE.Internal, 0, *internal)))

    def sci_irq(self) -> int | None:
        """The ISA IRQ the chipset's ACPI SCI is wired to, read from the chipset: PIIX4 PM
        (8086:7113) config 0x3C, or ICH9 LPC (8086:2918) ACPI_CNTL 0x44 bits 2:0; None
        without one (isapc) or when ACPI is off."""
        if not self._pci_bus_exists(0):
            return None
        for bus, device, function in self.pci_functions():
            ident = self.bus.read_config(bus, device, function, 0, 4)
            key = (int.from_bytes(ident[:2], "little"), int.from_bytes(ident[2:], "little"))
            if key == (0x8086, 0x7113):
                line = self.bus.read_config(bus, device, function, 0x3C, 1)[0]
                return None if line in (0, 0xFF) else line
            if key == (0x8086, 0x2918):
                cntl = self.bus.read_config(bus, device, function, 0x44, 1)[0]
                if not cntl & 0x80:  # ACPI_EN
                    return None
                return ICH9_SCI_IRQS.get(cntl & 7)
        return None

    # ================================================================== HalGetInterruptVector
    def _has_acpi_tables(self) -> bool:
        """Whether the firmware left ACPI tables (what setup looks for to install an ACPI
        HAL): an RSDP, or, after SeaBIOS's reboot restored its pristine image over the RSDP
        (a firmware run without the log ends there), the RSDT it loaded at the top of RAM
        (harness.nt.apic.find_rsdt_in_ram)."""
        if self._madt is not None:
            return True
        from .apic import find_rsdp, find_rsdt_in_ram
        try:
            return find_rsdp(self.bus) is not None or find_rsdt_in_ram(self.bus) is not None
        except BusAccessError as exc:
            raise HalError(f"the firmware's ACPI tables cannot be looked for: {exc}") from exc

    @property
    def madt(self) -> Madt | None:
        """The firmware's MADT (read once from the bus; None without ACPI or an I/O APIC)."""
        if not self._madt_read:
            from .apic import ApicError, read_madt
            self._madt_read = True
            try:
                self._madt = read_madt(self.bus)
            except (ApicError, BusAccessError) as exc:
                raise HalError(f"the firmware's MADT cannot be read: {exc}") from exc
        return self._madt

    def ioapic_entries(self) -> list[RedirectionEntry] | None:
        """The live I/O APIC redirection entries (pins of the first I/O APIC): from
        ``ioapic_reader`` when given (one HMP command for the whole table), else through
        the MMIO window when the bus writes memory (the guest agent); None when neither
        can reach it."""
        from .apic import IoApic, RedirectionEntry
        if self.ioapic_reader is not None:
            return [RedirectionEntry(raw) for raw in self.ioapic_reader()]
        if hasattr(self.bus, "write_memory") and self.madt is not None and self.madt.ioapics:
            return IoApic(self.bus, self.madt.ioapics[0].address).entries()
        return None

    def HalGetInterruptVector(self, InterfaceType: int, BusNumber: int, BusInterruptLevel: int,
                              BusInterruptVector: int) -> InterruptVector:
        """Bus interrupt → (system vector, IRQL, affinity); vector 0 = cannot connect (§4.2).

        Internal and Isa (bus 0): BusInterruptLevel is the IRQ (BusInterruptVector is
        ignored); above 23 fails.  PCIBus (an existing bus): BusInterruptLevel is the line
        HalGetBusData reported; < 1 fails.  IRQ 2 (the cascade) and the kernel debugger's
        IRQ never map.  Affinity = the active-processor mask.  Other bus types fail.

        PIC: vector 0x30 + IRQ, IRQL 27 - IRQ, for IRQ 0-23 as §4.2 gives it (16-23 have
        no 8259 input: IoConnectInterrupt then refuses the vector, as
        HalEnableSystemInterrupt fails in NT).  APIC: an ISA IRQ 0-15 is moved to its GSI
        by the MADT's source overrides (QEMU: IRQ 0 → GSI 2); a PCI line and an Internal/Isa
        level 16-23 already are GSIs.  One vector per GSI: the one its live redirection
        entry already holds if it is a device vector no other GSI has (ReactOS reuses
        it), else the first one neither this HAL nor another input's live entry uses from IRQL CLOCK_LEVEL-1 down to CMCI_LEVEL, offsets
        0-14 (x64: vector = IRQL*16 + offset); IRQL = vector >> 4 (the MODEL of §4.2: NT's
        own numbering is not documented).

        The ``acpi`` flavour has no bus handlers: InterfaceType and BusNumber are not
        checked (an Eisa or Isa-bus-1 level maps like an ISA IRQ), as ReactOS's ACPI HAL
        hands only the level and vector to its root translator (busemul.c
        HalGetInterruptVector); the line checks above stay.
        """
        failed = InterruptVector(0, 0, 0)
        if InterfaceType == INTERFACE_TYPE.PCIBus and BusInterruptLevel < 1:
            return failed  # a PCI line of 0: no interrupt (§9.8)
        if self.flavour == "legacy" and not self._has_interrupt_handler(InterfaceType, BusNumber):
            return failed
        line = BusInterruptLevel
        if not 0 <= line < IOAPIC_PINS or line == CASCADE_IRQ \
                or (self.kd_port is not None and KD_PORT_IRQS.get(self.kd_port) == line):
            return failed
        if self.interrupt_model == "pic":
            return InterruptVector(PRIMARY_VECTOR_BASE + line, PROFILE_LEVEL - line, self.active_processors)
        apic_line = self._apic_line(InterfaceType, line)
        if apic_line is None:
            return failed
        vector = self._apic_vectors.get(apic_line.gsi)
        if vector is None:
            vector = self._allocate_apic_vector(apic_line.gsi)
            if vector is None:
                return failed
            self._apic_vectors[apic_line.gsi] = vector
            self.apic_lines[vector] = apic_line
        return InterruptVector(vector, vector >> 4, self.active_processors)

    def _has_interrupt_handler(self, interface_type: int, bus_number: int) -> bool:
        """The legacy HAL's bus handlers for interrupts: Internal 0, Isa 0, each PCI bus."""
        if interface_type in (INTERFACE_TYPE.Internal, INTERFACE_TYPE.Isa):
            return bus_number == 0
        return interface_type == INTERFACE_TYPE.PCIBus and self._pci_bus_exists(bus_number)

    def _apic_line(self, interface_type: int, line: int) -> ApicLine | None:
        madt = self.madt
        if interface_type != INTERFACE_TYPE.PCIBus and line < ISA_IRQS:
            if madt is None:
                return ApicLine(line, line, False, False)  # no MADT: the ISA identity wiring
            route = madt.isa_route(line)
            return ApicLine(route.gsi, line, route.active_low, route.level)
        isa_irq = madt.isa_irq_of(line) if madt is not None else (line if line < ISA_IRQS else None)
        if isa_irq is not None and madt is not None:
            route = madt.isa_route(isa_irq)
            return ApicLine(line, isa_irq, route.active_low, route.level)
        return ApicLine(line, isa_irq, False, True)

    def _allocate_apic_vector(self, gsi: int) -> int | None:
        used = set(self._apic_vectors.values())
        entries = self.ioapic_entries() or []
        used |= {e.vector for pin, e in enumerate(entries) if pin != gsi and e.vector}  # routed elsewhere
        if gsi < len(entries):
            live = entries[gsi].vector
            if CMCI_LEVEL << 4 <= live < CLOCK_LEVEL << 4 and live & 0xF != 0xF and live not in used:
                return live
        for irql in range(CLOCK_LEVEL - 1, CMCI_LEVEL - 1, -1):
            for offset in range(15):
                candidate = (irql << 4) + offset
                if candidate not in used:
                    return candidate
        return None

    # ================================================================== HalTranslateBusAddress
    def bus_windows(self, InterfaceType: int, BusNumber: int) -> dict[str, list[tuple[int, int]]] | None:
        """The I/O and memory windows of a bus (module docstring), None if it has no handler."""
        if InterfaceType == INTERFACE_TYPE.Internal and BusNumber == 0:
            return {IO_SPACE: [(0, PORT_LIMIT)], MEMORY_SPACE: [(0, INTERNAL_MEMORY_LIMIT)]}
        if InterfaceType == INTERFACE_TYPE.Isa and BusNumber == 0:
            return {IO_SPACE: [(0, PORT_LIMIT)], MEMORY_SPACE: [(0, ISA_MEMORY_LIMIT)]}
        if InterfaceType == INTERFACE_TYPE.PCIBus and self._pci_bus_exists(BusNumber):
            return self._pci_windows(BusNumber)
        return None

    def _pci_windows(self, bus: int) -> dict[str, list[tuple[int, int]]]:
        if bus == 0:
            if isinstance(self.bus, DecodeMap):
                root = self.bus.pci_root_windows()
                return {IO_SPACE: _intersect(root.get(IO_SPACE, []), [(0, PORT_LIMIT)]),
                        MEMORY_SPACE: sorted(root.get(MEMORY_SPACE, []))}
            return {IO_SPACE: [(0, PORT_LIMIT)], MEMORY_SPACE: [(0, INTERNAL_MEMORY_LIMIT)]}
        bridge = self._pci().parent.get(bus)
        if bridge is None:
            return {IO_SPACE: [], MEMORY_SPACE: []}
        own = self.bridge_windows(*bridge)
        up = self._pci_windows(bridge[0])
        memory = own["memory"] + own["prefetchable"]
        return {IO_SPACE: _intersect(up[IO_SPACE], own["io"]),
                MEMORY_SPACE: _intersect(up[MEMORY_SPACE], sorted(memory))}

    def bridge_windows(self, bus: int, device: int, function: int) -> dict[str, list[tuple[int, int]]]:
        """A PCI-to-PCI bridge's forwarding windows from its type-1 header (empty when
        base > limit or the command register disables that space)."""
        cfg = self.bus.read_config(bus, device, function, 0, 0x40)
        command = int.from_bytes(cfg[4:6], "little")
        out: dict[str, list[tuple[int, int]]] = {"io": [], "memory": [], "prefetchable": []}
        if command & PCI_ENABLE_IO_SPACE:
            base, limit = (cfg[0x1C] & 0xF0) << 8, (cfg[0x1D] & 0xF0) << 8 | 0xFFF
            if cfg[0x1C] & 0x0F == 1:  # 32-bit I/O addressing
                base |= int.from_bytes(cfg[0x30:0x32], "little") << 16
                limit |= int.from_bytes(cfg[0x32:0x34], "little") << 16
            if base <= limit:
                out["io"].append((base, limit))
        if command & PCI_ENABLE_MEMORY_SPACE:
            mbase = (int.from_bytes(cfg[0x20:0x22], "little") & 0xFFF0) << 16
            mlimit = (int.from_bytes(cfg[0x22:0x24], "little") & 0xFFF0) << 16 | 0xFFFFF
            if mbase <= mlimit:
                out["memory"].append((mbase, mlimit))
            pword, plim = int.from_bytes(cfg[0x24:0x26], "little"), int.from_bytes(cfg[0x26:0x28], "little")
            pbase, plimit = (pword & 0xFFF0) << 16, (plim & 0xFFF0) << 16 | 0xFFFFF
            if pword & 0xF == 1:  # 64-bit prefetchable
                pbase |= int.from_bytes(cfg[0x28:0x2C], "little") << 32
                plimit |= int.from_bytes(cfg[0x2C:0x30], "little") << 32
            if pbase <= plimit:
                out["prefetchable"].append((pbase, plimit))
        return out

    def HalTranslateBusAddress(self, InterfaceType: int, BusNumber: int, BusAddress: int,
                               AddressSpace: int) -> Translation:
        """Bus-relative address → system physical address (§4.1, DDK4-k103_14).

        AddressSpace in: 0 memory, 1 I/O (anything else fails).  Only the start address is
        checked against the bus's windows (the §4.1 table, or with
        ``pci_translation="decoded"`` a PCI bus's real windows: module docstring);
        translation is the identity on a PC.  On success AddressSpace out is the system
        space the address lives in (0: map it with MmMapIoSpace, 1: use port I/O).

        The ``acpi`` flavour (§4.1 last paragraph, §9.17): every bus translates as the
        identity and TRUE, whatever the bus number, address or AddressSpace (left as given);
        a PCI bus too, unless ``pci_translation="decoded"`` asks for its real windows.
        """
        refused = Translation(False, AddressSpace, 0)
        if BusAddress < 0:
            return refused
        if self.flavour == "acpi" and (InterfaceType != INTERFACE_TYPE.PCIBus or self.pci_translation == "table"):
            # busemul.c: identity, TRUE, AddressSpace untouched, no window, no bus check;
            # its PCI path (HalPciTranslateBusAddress) defaults to the same routine.
            return Translation(True, AddressSpace, BusAddress)
        if AddressSpace not in (0, 1):
            return refused
        if InterfaceType == INTERFACE_TYPE.PCIBus and self.pci_translation == "table":
            windows = ({IO_SPACE: [(0, PORT_LIMIT)], MEMORY_SPACE: [(0, INTERNAL_MEMORY_LIMIT)]}
                       if self._pci_bus_exists(BusNumber) else None)
        else:
            windows = self.bus_windows(InterfaceType, BusNumber)
        if windows is None:
            return refused
        space = IO_SPACE if AddressSpace == 1 else MEMORY_SPACE
        if any(lo <= BusAddress <= hi for lo, hi in windows[space]):
            return Translation(True, AddressSpace, BusAddress)
        return refused

    # ================================================================== HalGetAdapter
    def HalGetAdapter(self, DeviceDescription: DEVICE_DESCRIPTION) -> tuple[ADAPTER_OBJECT | None, int]:
        """DMA adapter for a device, and NumberOfMapRegisters (DDK; ReactOS halx86 dma.c).

        System (slave) DMA on Isa/Eisa, or any non-master: channels 0-3 on the 8-bit
        controller (Width8Bits only), 5-7 on the 16-bit one (Width16Bits only); channel 4
        is the cascade and channels above 7 do not exist: None.  A transfer reaches only
        the first 16 MiB, moves at most 64 KiB (8-bit) or 128 KiB (16-bit) and cannot cross
        a 64 KiB / 128 KiB boundary.  Map registers = pages(MaximumLength) + 1, at most
        16; 0 for scatter/gather bus masters on Eisa/PCI; 1 for a scatter/gather slave.
        An ISA bus master gets its channel put in cascade mode and unmasked, as the HAL
        does.  Version > 2: None.
        """
        d = DeviceDescription
        if d.version > DEVICE_DESCRIPTION_VERSION2:
            return None, 0
        isa_like = d.interface_type in (INTERFACE_TYPE.Isa, INTERFACE_TYPE.Eisa)
        # MODEL: ReactOS hands an ISA request for channel 8+ a channel-less adapter; a
        # slave (or ISA master) needs a real 8237 channel, so that is refused here.
        system = isa_like or not d.master
        if system and (d.dma_channel == 4 or not 0 <= d.dma_channel <= 7):
            return None, 0
        maximum_length = d.maximum_length & 0x7FFFFFFF
        if d.scatter_gather and d.interface_type in (INTERFACE_TYPE.Eisa, INTERFACE_TYPE.PCIBus):
            map_registers = 0
        elif d.scatter_gather and not d.master:
            map_registers = 1
        else:
            map_registers = min(_pages(maximum_length) + 1, 16)
        if map_registers == 0:
            map_registers = _pages(maximum_length) + 1 if d.master else 1
        if d.master and d.dma64_bit_addresses:
            limit = (1 << 64) - 1
        elif d.master and d.dma32_bit_addresses:
            limit = 0xFFFFFFFF
        else:
            limit = ISA_MEMORY_LIMIT
        if not system:
            return ADAPTER_OBJECT(None, None, None, False, d.master, d.scatter_gather, map_registers,
                                  limit, None, None, None, None, None, None), map_registers
        controller = 2 if d.dma_channel & 4 else 1
        channel = d.dma_channel & 3
        width16 = controller == 2
        if not d.master:
            if (controller == 2 and d.dma_width != Width16Bits) or (controller == 1 and d.dma_width != Width8Bits):
                return None, 0
        if controller == 1:
            address_port, count_port = 2 * channel, 2 * channel + 1
            mode_port, mask_port = 0x0B, 0x0A
        else:
            address_port, count_port = 0xC0 + 4 * channel, 0xC2 + 4 * channel
            mode_port, mask_port = 0xD6, 0xD4
        if d.master:
            mode = 0xC0 | channel                      # cascade
            self.bus.write_port(mode_port, mode, 1)
            self.bus.write_port(mask_port, channel, 1)  # clear this channel's mask bit
        else:
            mode = (0x00 if d.demand_mode else 0x40) | (0x10 if d.auto_initialize else 0) | channel
        span = 0x20000 if width16 else 0x10000
        return ADAPTER_OBJECT(d.dma_channel, controller, channel, width16, d.master, d.scatter_gather,
                              map_registers, limit, span, span, address_port, count_port,
                              DMA_PAGE_PORTS[d.dma_channel], mode), map_registers

    # ================================================================== HalAssignSlotResources
    def size_bars(self, bus: int, device: int, function: int) -> list[PciBar]:
        """Size every BAR (and the expansion ROM) of a function on the live bus (§3.5 MODEL,
        §9.19): decode is switched off while each register is written with all ones, read
        back and restored.  Unimplemented BARs (read back 0) are left out.  The command
        register is restored afterwards."""
        header = self.bus.read_config(bus, device, function, 0, PCI_COMMON_HDR_LENGTH)
        kind = header[0x0E] & 0x7F
        if kind == PCI_DEVICE_TYPE:
            count, rom = 6, 0x30
        elif kind == PCI_BRIDGE_TYPE:
            count, rom = 2, 0x38
        else:
            return []
        with posted_writes(self.bus):  # the command register's writes ride along with the probes
            return self._size_bars(bus, device, function, header, count, rom)

    def _size_bars(self, bus: int, device: int, function: int, header: bytes, count: int, rom: int) -> list[PciBar]:
        command = int.from_bytes(header[4:6], "little")
        decode = command & (PCI_ENABLE_IO_SPACE | PCI_ENABLE_MEMORY_SPACE)
        if decode:
            self._write16(bus, device, function, 0x04, command & ~decode)
        bars: list[PciBar] = []
        try:
            # Every BAR register (a 64-bit BAR's upper half too) and the ROM register get
            # the pattern, are read back and restored, in order: one probe_config.
            offsets = [0x10 + 4 * i for i in range(count)]
            probes = [(offset, 0xFFFFFFFF, int.from_bytes(header[offset:offset + 4], "little")) for offset in offsets]
            probes.append((rom, PCI_ADDRESS_ROM_ADDRESS_MASK, int.from_bytes(header[rom:rom + 4], "little")))
            readbacks = dict(zip([*offsets, rom], probe_config(self.bus, bus, device, function, probes)))
            index = 0
            while index < count:
                offset = 0x10 + 4 * index
                original = int.from_bytes(header[offset:offset + 4], "little")
                readback = readbacks[offset]
                if readback == 0:
                    index += 1
                    continue
                if readback & PCI_ADDRESS_IO_SPACE:
                    mask = readback & PCI_ADDRESS_IO_ADDRESS_MASK
                    if mask >> 16 == 0:
                        mask |= 0xFFFF0000  # 16-bit decoders read the upper half as 0
                    bars.append(PciBar(index, offset, "io", _lowest_bit(mask), low_bits=original & 0x3,
                                       original=original))
                    index += 1
                    continue
                is_64 = readback & PCI_ADDRESS_MEMORY_TYPE_MASK == PCI_TYPE_64BIT and index + 1 < count
                mask = readback & PCI_ADDRESS_MEMORY_ADDRESS_MASK
                full = original
                if is_64:
                    mask |= readbacks[offset + 4] << 32
                    full |= int.from_bytes(header[offset + 4:offset + 8], "little") << 32
                else:
                    mask |= 0xFFFFFFFF00000000
                # The type bits are read-only on a PCI device, so the sizing readback and
                # the original agree on them; QEMU lets a BAR smaller than 16 bytes
                # (pvpanic-pci's 2) keep writable bits there, which must not be kept.
                bars.append(PciBar(index, offset, "memory", _lowest_bit(mask), is_64,
                                   bool(readback & PCI_ADDRESS_MEMORY_PREFETCHABLE),
                                   readback & original & 0xF, full))
                index += 2 if is_64 else 1
            original = int.from_bytes(header[rom:rom + 4], "little")
            readback = readbacks[rom]
            if readback & PCI_ADDRESS_ROM_ADDRESS_MASK:
                bars.append(PciBar(6, rom, "rom", _lowest_bit(readback & PCI_ADDRESS_ROM_ADDRESS_MASK
                                                                | 0xFFFFFFFF00000000),
                                   low_bits=original & PCI_ROMADDRESS_ENABLED, original=original))
        finally:
            if decode:
                self._write16(bus, device, function, 0x04, command)
        return bars

    def _write16(self, bus: int, device: int, function: int, offset: int, value: int) -> None:
        self.bus.write_config(bus, device, function, offset, value.to_bytes(2, "little"))

    def HalAssignSlotResources(self, RegistryPath: str, DriverClassName: str | None, DriverObject: Any,
                               DeviceObject: Any, BusType: int, BusNumber: int, SlotNumber: int,
                               ) -> tuple[NTSTATUS, CM_RESOURCE_LIST | None]:
        """Place a PCI function's resources and program it (§3.5, DDK4-k103_2).

        The HAL reads the function, sizes every BAR and the ROM on the live bus, builds the
        IO_RESOURCE_REQUIREMENTS_LIST (natural alignment; I/O and memory windows of the
        bus, narrowed to the PC allocation ranges; prefetchable BARs may also use the
        prefetchable window; 64-bit BARs prefer below 4 GiB with an alternative above;
        an interrupt Min = Max = the routed line when the function has a pin and the line
        is not 0/0xFF, shared and level-sensitive), asks the allocator, writes the bases
        into the BARs (type bits kept; the ROM keeps its enable bit), turns on I/O / memory
        decode for the kinds assigned, and returns the allocator's CM_RESOURCE_LIST (raw,
        PCIBus, BusNumber).  When the bus is a DecodeMap the assignment is then checked
        against what the platform decodes (:class:`AssignmentNotDecodedError` if not).

        Status: STATUS_NOT_SUPPORTED for Isa/Internal (their handler cannot assign),
        STATUS_NOT_FOUND for another bus type or a bus that does not exist,
        STATUS_NO_SUCH_DEVICE for an empty or invalid slot, the allocator's status when it
        fails (the device is then left as it was).
        """
        SlotNumber = _slot_ulong(SlotNumber)
        if BusType in (INTERFACE_TYPE.Isa, INTERFACE_TYPE.Internal):
            return NTSTATUS.STATUS_NOT_SUPPORTED, None
        if BusType != INTERFACE_TYPE.PCIBus or not self._pci_bus_exists(BusNumber):
            return NTSTATUS.STATUS_NOT_FOUND, None
        where = self._valid_slot(BusNumber, SlotNumber)
        if where is None or self._vendor(BusNumber, *where) == PCI_INVALID_VENDORID:
            return NTSTATUS.STATUS_NO_SUCH_DEVICE, None
        key = (BusNumber, *where)
        requirements, bars, _ = self._slot_configuration(key, SlotNumber)
        status, assigned = self.allocator.IoAssignResources(RegistryPath, DriverClassName, DriverObject,
                                                            DeviceObject, requirements)
        if not NT_SUCCESS(status) or assigned is None:
            return status, None
        space_bars = [b for b in bars]
        placed = [p for _, p in assigned.partials() if _space_of(p) is not None]
        if len(placed) != len(space_bars):
            raise HalError(f"the allocator returned {len(placed)} ranges for {len(space_bars)} BARs")
        command = int.from_bytes(self.bus.read_config(*key, 4, 2), "little")
        enable = 0
        for bar, partial in zip(space_bars, placed):
            if bar.kind == "io":
                self.bus.write_config(*key, bar.offset, ((partial.start & PCI_ADDRESS_IO_ADDRESS_MASK)
                                                         | bar.low_bits).to_bytes(4, "little"))
                enable |= PCI_ENABLE_IO_SPACE
            elif bar.kind == "rom":
                self.bus.write_config(*key, bar.offset, ((partial.start & PCI_ADDRESS_ROM_ADDRESS_MASK)
                                                         | bar.low_bits).to_bytes(4, "little"))
                enable |= PCI_ENABLE_MEMORY_SPACE
            else:
                value = partial.start & ~0xF | bar.low_bits
                self.bus.write_config(*key, bar.offset, (value & 0xFFFFFFFF).to_bytes(4, "little"))
                if bar.is_64bit:
                    self.bus.write_config(*key, bar.offset + 4, (value >> 32).to_bytes(4, "little"))
                enable |= PCI_ENABLE_MEMORY_SPACE
        if command | enable != command:
            self._write16(*key, 0x04, command | enable)
        if self.verify_assignments and isinstance(self.bus, DecodeMap):
            self._verify_decoded(key, space_bars, placed)
        return NTSTATUS.STATUS_SUCCESS, assigned

    def slot_configuration(self, BusNumber: int, SlotNumber: int,
                           ) -> tuple[IO_RESOURCE_REQUIREMENTS_LIST, CM_RESOURCE_LIST | None]:
        """What the PCI bus driver answers the PnP manager for one function: the
        requirements HalAssignSlotResources would place (IRP_MN_QUERY_RESOURCE_REQUIREMENTS)
        and the boot configuration, i.e. where the function decodes now
        (IRP_MN_QUERY_RESOURCES; None unless every BAR is assigned and decoding)."""
        SlotNumber = _slot_ulong(SlotNumber)
        where = self._valid_slot(BusNumber, SlotNumber)
        if where is None or self._vendor(BusNumber, *where) == PCI_INVALID_VENDORID:
            raise HalError(f"no PCI function at bus {BusNumber} slot {SlotNumber:#x}")
        requirements, _, boot = self._slot_configuration((BusNumber, *where), SlotNumber)
        return requirements, boot

    def _slot_configuration(self, key: tuple[int, int, int], slot: int,
                            ) -> tuple[IO_RESOURCE_REQUIREMENTS_LIST, list[PciBar], CM_RESOURCE_LIST | None]:
        header = self._header(*key)
        bars = self.size_bars(*key)
        requirements = self._requirements(key, slot, bars, header)
        command = int.from_bytes(header[4:6], "little")
        partials: list[Any] = []
        for bar in bars:
            base = _current_base(bar, command)
            if base is None:
                return requirements, bars, None
            exclusive = CmResourceShare.CmResourceShareDeviceExclusive
            if bar.kind == "io":
                partials.append(Port(base, bar.size, share=exclusive, flags=CM_RESOURCE_PORT_IO))
            else:
                flags = CM_RESOURCE_MEMORY_READ_ONLY if bar.kind == "rom" else (
                    CM_RESOURCE_MEMORY_READ_WRITE | (CM_RESOURCE_MEMORY_PREFETCHABLE if bar.prefetchable else 0))
                partials.append(Memory(base, bar.size, share=exclusive, flags=flags))
        line = header[0x3C]
        if header[0x3D] and line not in (0, 0xFF):
            partials.append(Interrupt(line, line, -1, share=CmResourceShare.CmResourceShareShared,
                                      flags=CM_RESOURCE_INTERRUPT_LEVEL_SENSITIVE))
        return requirements, bars, CM_RESOURCE_LIST.single(INTERFACE_TYPE.PCIBus, key[0], *partials)

    def _requirements(self, key: tuple[int, int, int], slot: int, bars: Sequence[PciBar],
                      header: bytes) -> IO_RESOURCE_REQUIREMENTS_LIST:
        bus = key[0]
        windows = self._allocation_windows(bus)
        descriptors: list[IO_RESOURCE_DESCRIPTOR] = []
        command = int.from_bytes(header[4:6], "little")
        for bar in bars:
            current = _current_base(bar, command)
            if bar.kind == "io":
                ranges = _intersect(windows["io"], [PCI_IO_ALLOCATION])
                descriptors += _alternatives(ranges, lambda lo, hi, opt: PortRequirement(
                    bar.size, bar.size, lo, hi, option=opt, flags=CM_RESOURCE_PORT_IO), current, bar.size)
                continue
            if bar.kind == "rom":
                flags = CM_RESOURCE_MEMORY_READ_ONLY
            else:
                flags = CM_RESOURCE_MEMORY_READ_WRITE | (CM_RESOURCE_MEMORY_PREFETCHABLE if bar.prefetchable else 0)
            pool = (windows["prefetchable"] + windows["memory"]) if bar.prefetchable else windows["memory"]
            ranges = _intersect(pool, [PCI_MEMORY_ALLOCATION], keep_order=True)
            if bar.is_64bit:
                ranges += _intersect(pool, [PCI_MEMORY64_ALLOCATION], keep_order=True)
            large = bar.size > 0xFFFFFFFF

            def make(lo: int, hi: int, opt: int, flags: int = flags, size: int = bar.size,
                     large: bool = large) -> IO_RESOURCE_DESCRIPTOR:
                if large:
                    return MemoryLargeRequirement(size, size, lo, hi, option=opt, flags=flags)
                return MemoryRequirement(size, size, lo, hi, option=opt, flags=flags)
            descriptors += _alternatives(ranges, make, current, bar.size)
        line = header[0x3C]
        if header[0x3D] and line not in (0, 0xFF):
            descriptors.append(InterruptRequirement(line, line, share=CmResourceShare.CmResourceShareShared,
                                                    flags=CM_RESOURCE_INTERRUPT_LEVEL_SENSITIVE))
        return IO_RESOURCE_REQUIREMENTS_LIST(INTERFACE_TYPE.PCIBus, bus, slot, (IO_RESOURCE_LIST(tuple(descriptors)),))

    def _allocation_windows(self, bus: int) -> dict[str, list[tuple[int, int]]]:
        if bus == 0:
            root = self._pci_windows(0)
            return {"io": root[IO_SPACE], "memory": root[MEMORY_SPACE], "prefetchable": []}
        bridge = self._pci().parent.get(bus)
        if bridge is None:
            return {"io": [], "memory": [], "prefetchable": []}
        own = self.bridge_windows(*bridge)
        up = self._allocation_windows(bridge[0])
        up_memory = up["memory"] + up["prefetchable"]
        return {"io": _intersect(up["io"], own["io"]),
                "memory": _intersect(up_memory, own["memory"]),
                "prefetchable": _intersect(up_memory, own["prefetchable"])}

    def busy_ranges(self, requirements: IO_RESOURCE_REQUIREMENTS_LIST) -> list[DecodedSpan]:
        """What FirstFitAllocator must avoid for this device: everything decoded except the
        device itself, and the windows of every bridge it is not behind."""
        bus = requirements.bus_number
        slot = requirements.slot_number
        me = (bus, slot & 0x1F, (slot >> 5) & 7)
        spans: list[DecodedSpan] = []
        if isinstance(self.bus, DecodeMap):
            spans = [s for s in self.bus.decoded_ranges() if s.function != me]
        topo = self._pci()
        ancestors = set()
        at = bus
        while at in topo.parent:
            ancestors.add(topo.parent[at])
            at = topo.parent[at][0]
        for bridge in topo.bridges:
            if bridge in ancestors:
                continue
            windows = self.bridge_windows(*bridge)
            for name, ranges in windows.items():
                space = IO_SPACE if name == "io" else MEMORY_SPACE
                spans += [DecodedSpan(space, lo, hi, f"bridge {bridge}", bridge) for lo, hi in ranges]
        return spans

    def _verify_decoded(self, key: tuple[int, int, int], bars: Sequence[PciBar], placed: Sequence[Any]) -> None:
        """The platform must map each assigned BAR exactly there, and nothing else may be
        decoded inside it (what shows there, if anything, must be this function's)."""
        assert isinstance(self.bus, DecodeMap)
        mapped = self.bus.bar_mappings(*key)
        spans = self.bus.decoded_ranges()
        problems = []
        for bar, partial in zip(bars, placed):
            if bar.kind == "rom" and not bar.low_bits & PCI_ROMADDRESS_ENABLED:
                continue  # a disabled ROM is assigned but not decoded, by design
            space = IO_SPACE if bar.kind == "io" else MEMORY_SPACE
            start, end = partial.start, partial.start + partial.length - 1
            where = mapped.get(bar.index)
            # A memory BAR under 16 bytes (QEMU's pvpanic-pci: 2) sizes as 16 by its type
            # bits but is mapped at its own size from the same start.
            if where != (start, end) and not (where is not None and where[0] == start and where[1] < end
                                              and space == MEMORY_SPACE and partial.length == 16):
                shown = "unmapped" if where is None else f"{where[0]:#x}-{where[1]:#x}"
                problems.append(f"BAR{bar.index} {space} {start:#x}-{end:#x}: the platform maps it {shown}")
            others = [s for s in spans if s.space == space and s.start <= end and s.end >= start
                      and s.function != key]
            if others:
                problems.append(f"BAR{bar.index} {space} {start:#x}-{end:#x}: also decoded by "
                                + ", ".join(f"{s.owner} {s.start:#x}-{s.end:#x}" for s in others))
        if problems:
            raise AssignmentNotDecodedError(
                f"{key[0]:02x}:{key[1]:02x}.{key[2]} was programmed but the platform does not decode it there: "
                + "; ".join(problems))


# ---------------------------------------------------------------------------------------
# helpers


def _pages(length: int) -> int:
    return (length + PAGE_SIZE - 1) // PAGE_SIZE


def _lowest_bit(mask: int) -> int:
    return mask & -mask


def _intersect(a: Sequence[tuple[int, int]], b: Sequence[tuple[int, int]], *,
               keep_order: bool = False) -> list[tuple[int, int]]:
    out = []
    for lo1, hi1 in a:
        for lo2, hi2 in b:
            lo, hi = max(lo1, lo2), min(hi1, hi2)
            if lo <= hi:
                out.append((lo, hi))
    return out if keep_order else sorted(out)


def _alternatives(ranges: Sequence[tuple[int, int]], make: Callable[[int, int, int], IO_RESOURCE_DESCRIPTOR],
                  current: int | None = None, size: int = 0) -> list[IO_RESOURCE_DESCRIPTOR]:
    """One descriptor per window: the first required, the others IO_RESOURCE_ALTERNATIVE.
    When the function already decodes the BAR at ``current`` (the firmware's boot
    configuration), that exact place comes first as IO_RESOURCE_PREFERRED and every
    window becomes an alternative to it, so an unchallenged device keeps its place."""
    if not ranges:
        return [make(1, 0, 0)]  # nowhere to put it: a requirement that cannot be met
    windows = [make(lo, hi, IO_RESOURCE_ALTERNATIVE if i or current is not None else 0)
               for i, (lo, hi) in enumerate(ranges)]
    if current is None or not any(lo <= current and current + size - 1 <= hi for lo, hi in ranges):
        return [make(lo, hi, IO_RESOURCE_ALTERNATIVE if i else 0) for i, (lo, hi) in enumerate(ranges)]
    return [make(current, current + size - 1, IO_RESOURCE_PREFERRED), *windows]


def _current_base(bar: PciBar, command: int) -> int | None:
    """Where the BAR decodes now, or None when it is unassigned or its decode is off."""
    if bar.kind == "io":
        base = bar.original & PCI_ADDRESS_IO_ADDRESS_MASK & 0xFFFF
        enabled = command & PCI_ENABLE_IO_SPACE
    elif bar.kind == "rom":
        base = bar.original & PCI_ADDRESS_ROM_ADDRESS_MASK
        enabled = command & PCI_ENABLE_MEMORY_SPACE and bar.original & PCI_ROMADDRESS_ENABLED
    else:
        base = bar.original & ~0xF
        enabled = command & PCI_ENABLE_MEMORY_SPACE
    return base if base and enabled else None


def slot_number(device: int, function: int = 0) -> int:
    """PCI_SLOT_NUMBER.u.AsULONG for (device, function) (§1.11)."""
    return PCI_SLOT_NUMBER(device, function).as_ulong


def _slot_ulong(slot: Any) -> int:
    """The HAL routines take SlotNumber as the ULONG or as a PCI_SLOT_NUMBER."""
    return slot.as_ulong if isinstance(slot, PCI_SLOT_NUMBER) else slot


__all__ = ["Hal", "HalError", "AssignmentNotDecodedError", "Translation", "InterruptVector",
           "PciRoute", "PortAccess", "MappedIoSpace", "MmNonCached", "MmCached", "MmWriteCombined",
           "PortHook", "PciBar", "SlotAllocator", "FirstFitAllocator",
           "DEVICE_DESCRIPTION", "ADAPTER_OBJECT", "slot_number", "PRIMARY_VECTOR_BASE",
           "PROFILE_LEVEL", "Width8Bits", "Width16Bits", "Width32Bits"]
