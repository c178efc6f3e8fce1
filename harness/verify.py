r"""Reconciliation: the model, QEMU's decode and what guests see, resource by resource.

Views, each labelled with its phase:

* ``model``: what the machine spec's device models say each device decodes (ports, IRQ,
  DMA; PCI BAR sizes and interrupt pin) - the expectation;
* ``resourcemap``: (optional) the NT model's claims, read from a registry's
  ``\REGISTRY\MACHINE\HARDWARE\RESOURCEMAP\<class>\<driver>`` ``*.Raw`` values;
* ``qemu``: the layout snapshot after the firmware (``post-firmware``), with each PCI
  pin's route computed by the HAL from the live PIRQ registers;
* ``probe``: the probe guest (``probe-guest``): presence at the modelled ports, observed
  IRQ lines, BARs read through 0xCF8/0xCFC;
* ``linux``: the Linux guest (``post-os``): /proc/ioports, /proc/interrupts, /proc/dma,
  PCI sysfs, the kernel's conflict messages.

Every modelled resource is a row; a view that disagrees gives a :class:`Finding` whose
explanation class is computed from the data (a shadowing device from the snapshot's
shadowed ranges, a route from the PIRQ registers, a kernel message, ...).  Findings of
class ``unexplained`` are what ``harness verify`` fails on.  Conflicts the hardware itself
carries (two devices on one IRQ line or DMA channel) are findings of their own.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Collection, Sequence

from .claimants import forwarded_legacy
from .config import RESERVED_ID_PREFIX, DeviceSpec, MachineSpec
from .errors import HarnessError
from .qemu.layout import ISA_IRQ_PROPERTIES, LEGACY_IDE_IRQS, PIRQ_REGISTERS

#: PCI class 01h subclass 01h: an IDE controller.
PCI_CLASS_IDE = 0x0101

# ---------------------------------------------------------------------- explanation classes
SHADOWED = "shadowed"                        # a later ISA device wins the addresses
UNDER_PCI_BAR = "under-pci-bar"              # a PCI BAR (priority 1) wins them
CONFIG_PORTS_SHADOWED = "pci-config-shadowed"  # 0xCF8/0xCFC taken: no PCI from inside
FIRMWARE_REASSIGNED = "firmware-reassigned"  # the firmware put a BAR elsewhere
OS_REASSIGNED = "os-reassigned"              # the OS moved a BAR
PIRQ_ROUTED = "pirq-routed"                  # the PIRQ registers route the pin elsewhere
NOT_PRESENT = "not-present"                  # nothing decodes it / the device is absent
IRQ_SHARED = "irq-shared"                    # several devices drive one line
ACPI_SCI = "acpi-sci"                        # the line is the ACPI SCI
CASCADE = "pic-cascade"                      # IRQ 2: the slave 8259's input on the master
BOARD_CLAIM = "board-claim"                  # one claim of built-in devices QEMU splits up
DMA_SHARED = "dma-shared"                    # several devices registered one channel
OS_CONFLICT = "os-conflict"                  # the kernel refused it (genirq, probe failure)
NO_DRIVER = "driver-never-claimed"           # the OS has no driver or description for it
FIRMWARE_EVENT = "firmware-event"            # a device stopped or cut short the firmware
NOT_FORWARDED = "not-forwarded"              # behind a bridge that does not forward it
REGISTERS_MISPLACED = "registers-misplaced"  # QEMU picks registers by port & 7, off an aligned base
UNEXPLAINED = "unexplained"
EXPLANATIONS = (SHADOWED, UNDER_PCI_BAR, CONFIG_PORTS_SHADOWED, FIRMWARE_REASSIGNED,
                OS_REASSIGNED, PIRQ_ROUTED, NOT_PRESENT, IRQ_SHARED, ACPI_SCI, CASCADE, BOARD_CLAIM, DMA_SHARED,
                OS_CONFLICT, NO_DRIVER, FIRMWARE_EVENT, NOT_FORWARDED, REGISTERS_MISPLACED, UNEXPLAINED)

PCI_COMMAND_INTX_DISABLE = 0x400  # command register bit 10
PCI_CONFIG_PORTS = (0xCF8, 0xCFF)
PCI_CONFIG_DATA = 0xCFC
PCI_CONFIG_REGIONS = ("pci-conf-idx", "pci-conf-data")  # QEMU's names for them
#: The master 8259's input the slave signals on.  QEMU wires ISA IRQ 2 to that same input
#: (measured: a UART on IRQ 2 raises nothing the CPU takes as IRQ 2); on an AT bus the IRQ 2
#: pin is IRQ 9 instead, which is why cards label IRQ 9 "2".
CASCADE_IRQ = 2
#: The PIIX4 PM function (pc's ACPI) and the ISA line QEMU wires its SCI to whatever its
#: interrupt line register says (pc_piix.c: piix4_pm_init(..., x86ms->gsi[9], ...)): the
#: register is the firmware's note, and rewritten to 5 the SCI still raises IRQ 9
#: (measured: tests/test_job.py).  ICH9 (q35) routes its SCI by ACPI_CNTL, as the HAL reads.
PIIX4_PM_ID = (0x8086, 0x7113)
PIIX4_PM_SCI = 9
ICH9_RCRB_REGION = "lpc-rcrb-mmio"   # QEMU's region of the ICH9 chipset configuration registers (RCBA)
CASCADE_REASON = (f"IRQ {CASCADE_IRQ} is the 8259 cascade: QEMU wires ISA IRQ {CASCADE_IRQ} to the master PIC's "
                  "input the slave PIC signals on, so the device's request never arrives as "
                  f"IRQ {CASCADE_IRQ} (on an AT bus the IRQ 2 pin is IRQ 9)")
#: Where the machine has an I/O APIC (pc, q35), ISA IRQ 2 also reaches its pin 2, where
#: QEMU delivers ISA IRQ 0 as well (hw/intc/ioapic.c ioapic_set_irq: "IRQ0 ... maps to GSI 2").
CASCADE_IOAPIC_REASON = ("; the I/O APIC takes it on pin 2, where QEMU also delivers the 8254's IRQ 0, "
                         "so under an APIC HAL the device's requests arrive as the timer's GSI 2")
NOT_APPLICABLE = "n/a"  # the view cannot see this kind of resource
ABSENT = "-"


@dataclass(frozen=True)
class Finding:
    """One difference between two views of a device's resource, and what explains it (if anything)."""

    device: str
    resource: str
    view: str  # the view that differs ("qemu", "probe", "linux", "resourcemap", or "hardware")
    explanation: str
    reason: str

    @property
    def explained(self) -> bool:
        return self.explanation != UNEXPLAINED


@dataclass
class Row:
    """One device resource across every view compared: each view's value and the differences found."""

    device: str
    resource: str
    cells: dict[str, str]
    findings: list[Finding] = field(default_factory=list)

    def differ(self, view: str, explanation: str, reason: str) -> None:
        self.findings.append(Finding(self.device, self.resource, view, explanation, reason))


@dataclass
class Reconciliation:
    """The comparison of one machine's views: its rows and the conflicts found in the hardware."""

    machine: str
    source: str
    views: dict[str, str]  # view → phase
    rows: list[Row]
    conflicts: list[Finding]

    @property
    def findings(self) -> list[Finding]:
        return [f for row in self.rows for f in row.findings] + self.conflicts

    @property
    def unexplained(self) -> list[Finding]:
        return [f for f in self.findings if not f.explained]

    @property
    def agrees(self) -> bool:
        """Every view agrees on every row, and the hardware carries no conflict."""
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def assert_explained(self) -> None:
        """Raise AssertionError with the table when a difference has no explanation."""
        if self.unexplained:
            raise AssertionError(f"{len(self.unexplained)} unexplained difference(s)\n" + format_table(self))


class VerifyError(HarnessError):
    pass


class FirmwareStopped(VerifyError):
    """The firmware never got through (harness.firmware_events): no view to compare."""

    def __init__(self, event: Any) -> None:
        self.event = event
        super().__init__(event.describe())


def event_finding(event: Any) -> Finding:
    """A firmware event as a finding: explained when configured devices caused it."""
    return Finding(", ".join(event.devices) or "(machine)", "firmware", "qemu",
                   FIRMWARE_EVENT if event.devices else UNEXPLAINED, event.describe())


# ---------------------------------------------------------------------- model: the registry
@dataclass(frozen=True)
class MapClaim:
    r"""One resource of one ResourceMap value (``<class>\<driver>``, value ``<device>.Raw``)."""

    owner: str  # "<class>\<driver>\<value name without .Raw>"
    kind: str  # "port", "memory", "irq" or "dma"
    start: int
    end: int
    shared: bool


def resource_map_claims(registry: Any) -> list[MapClaim]:
    r"""Every claim under ``\REGISTRY\MACHINE\HARDWARE\RESOURCEMAP`` of a
    :class:`harness.nt.registry.Registry`; ``.Translated`` values are ignored (they say the
    same in system terms)."""
    from .nt.registry import RESOURCE_MAP, RegType
    from .nt.resources import CmResourceShare, Dma, Interrupt, Memory, MemoryLarge, Port

    claims: list[MapClaim] = []
    if not registry.key_exists(RESOURCE_MAP):
        return claims
    for path, values in registry.walk(RESOURCE_MAP):
        relative = path[len(RESOURCE_MAP):].strip("\\")
        if relative.count("\\") != 1:  # only <class>\<driver> keys hold claims
            continue
        for value in values:
            if not value.name.endswith(".Raw") or value.type != RegType.REG_RESOURCE_LIST:
                continue
            owner = relative + "\\" + (value.name[:-len(".Raw")] or "(driver)")
            for _full, partial in value.value.partials():
                shared = partial.share == CmResourceShare.CmResourceShareShared
                if isinstance(partial, Port):
                    claims.append(MapClaim(owner, "port", partial.start, partial.end - 1, shared))
                elif isinstance(partial, (Memory, MemoryLarge)):
                    claims.append(MapClaim(owner, "memory", partial.start, partial.end - 1, shared))
                elif isinstance(partial, Interrupt):
                    claims.append(MapClaim(owner, "irq", partial.level, partial.level, shared))
                elif isinstance(partial, Dma):
                    claims.append(MapClaim(owner, "dma", partial.channel, partial.channel, shared))
    return claims


# ---------------------------------------------------------------------- the hardware view
def _bdf_of(target: str | None) -> tuple[int, int, int] | None:
    """(bus, slot, function) of a step's bus-address target ('00:1f.0'); None for a device id."""
    match = re.fullmatch(r"([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])", target or "")
    return None if match is None else (int(match[1], 16), int(match[2], 16), int(match[3]))


def dma_channel_users(spec: MachineSpec, layout: Any) -> dict[int, list[Any]]:
    """DMA channel → the ISA devices (layout IsaDevice) registered on it, in creation order
    (board devices first, then the spec's devices in order): the last one owns the channel.
    A device that registers one channel twice (an SB16 whose 16-bit channel is its 8-bit
    one) is one user: QEMU keeps the same handler, nothing stalls."""
    order = {dev.id: i for i, dev in enumerate(spec.devices)}
    users: dict[int, dict[str, tuple[int, Any]]] = {}
    for dev in layout.isa:
        for prop in ("dma", "dma16"):
            channel = dev.properties.get(prop)
            if channel is not None and 0 <= channel <= 7:
                users.setdefault(channel, {})[dev.id or dev.path] = (order.get(dev.id, -1) if dev.id else -1, dev)
    return {ch: [dev for _, dev in sorted(found.values(), key=lambda t: (t[0], t[1].id or f"{t[1].type} ({t[1].path})"))]
            for ch, found in users.items()}


def owner_pieces(layout: Any, lo: int, hi: int, space: str = "io",
                 name: Callable[[Any], str] | None = None) -> list[tuple[int, int, str | None]]:
    """(start, end, owner) pieces of ``layout``'s flat view covering [lo, hi] of ``space``
    ("io" or "memory"); owner None where nothing decodes, a region's name where it has no
    owner; ``name(region)`` names them instead (as a report does)."""
    pieces: list[tuple[int, int, str | None]] = []
    cursor = lo
    for r in (layout.io if space == "io" else layout.memory):
        if r.end < lo or r.start > hi:
            continue
        if r.start > cursor:
            pieces.append((cursor, r.start - 1, None))
        start = max(r.start, cursor)
        pieces.append((start, min(r.end, hi), name(r) if name else r.owner or r.name))
        cursor = min(r.end, hi) + 1
    if cursor <= hi:
        pieces.append((cursor, hi, None))
    return pieces


def _ports_of(decoded: list[tuple[str, int, int]]) -> list[tuple[int, int]]:
    """The port runs of a (kind, first, last) decode."""
    return [(lo, hi) for kind, lo, hi in decoded if kind == "port"]


def winner_names(board: Any, layout: Any, lost: Any, ids: Collection[str]) -> tuple[str, ...]:
    """Who wins the addresses of ``lost`` (a layout ShadowedRange), as every report names
    devices: a machine-file device by its id, anything else by the board name its decoded
    region there gives it (``board:ide-legacy``, not the owner-less region ``ide``)."""
    from .devices import board_label_of
    mine = lost.device_winners(layout, ids)
    regions = lost.winning_regions(layout)
    return tuple(w if w in mine else next((board_label_of(board, r.owner_type, r.name, w)
                                           for r in regions if r.label == w), w)
                 for w in lost.hidden_by)


def lost_reason(lost: Any, winners: Sequence[str]) -> str:
    """One clause: who (``winners``, named by :func:`winner_names`) wins ``lost``'s addresses, and why."""
    return f"{', '.join(winners)} wins them" + (f" by {lost.cause}" if lost.cause else "")


def who_answers(spec: MachineSpec, layout: Any) -> Callable[[str, int, int, str, str], bool | None]:
    """What a driver asks to start first the sibling QEMU gives a contested resource to
    (NtDriver.start_order): ``prefers(kind, start, end, a, b)`` is True when QEMU gives
    device ``a`` those addresses (or that DMA channel) rather than ``b``, False when it
    gives them to ``b``, None when ``layout`` cannot tell.  For "port" and "memory": the
    one whose sibling's addresses there it shadows (Layout.shadowed, so a bridge's VGA
    window of priority 1 beats an ISA card mapped later), else the one the flat view shows
    there at all (a VGA behind a bridge without the VGA enable shows nowhere); for "dma":
    the channel's owner, the handler registered last (:func:`dma_channel_users`)."""
    dma_owner = {ch: users[-1].id for ch, users in dma_channel_users(spec, layout).items()}

    def beats(winner: str, loser: str, space: str, start: int, end: int) -> bool:
        return any(s.owner == loser and winner in s.hidden_by and s.space == space
                   and s.start <= end and start <= s.end for s in layout.shadowed)

    def prefers(kind: str, start: int, end: int, a: str, b: str) -> bool | None:
        if kind == "dma":
            owner = dma_owner.get(start)
            return True if owner == a else False if owner == b else None
        space = "io" if kind == "port" else "memory"
        a_wins, b_wins = beats(a, b, space, start, end), beats(b, a, space, start, end)
        if a_wins != b_wins:
            return a_wins
        shown = {owner for *_, owner in owner_pieces(layout, start, end, space)}
        return (a in shown) if (a in shown) != (b in shown) else None
    return prefers


@dataclass(frozen=True)
class HardwareView:
    """QEMU's decode after the firmware: the snapshot plus each PCI pin's real route."""

    layout: Any  # harness.qemu.layout.Layout
    routes: dict[str, Any]  # bdf → harness.nt.hal.PciRoute (None: no pin or no router)
    sci: int | None = None  # the ACPI SCI's ISA IRQ as the chipset says (Hal.sci_irq)
    event: Any = None  # harness.firmware_events.FirmwareEvent that cut the firmware short


def config_port_takers(layout: Any) -> list[Any]:
    """The flat I/O regions decoding the PCI host's configuration address (0xCF8) or data
    (0xCFC-0xCFF) ports instead of QEMU's pci-conf-* regions.  0xCF9 does not count: the
    chipset's reset register always sits there and configuration access works around it."""
    return [r for r in layout.io
            if (r.start <= PCI_CONFIG_PORTS[0] <= r.end or (r.start <= PCI_CONFIG_PORTS[1] and r.end >= PCI_CONFIG_DATA))
            and not r.name.startswith(PCI_CONFIG_REGIONS)]


def routed_view(layout: Any, hal: Any) -> HardwareView:
    """A layout with each PCI pin's route read through the HAL, and the line the ACPI SCI
    really raises: PIIX4's wired one (whatever its register, or what the HAL reads through
    configuration ports a card has taken, says), else the HAL's reading of the chipset.

    With the configuration ports taken, the HAL's read of a PIRQ route register reaches the
    card, not the chipset (a PCI pin showed on IRQ 0); the chipset keeps the route the
    firmware gave it, which nothing can rewrite while the ports are the card's and which
    the firmware noted in each function's interrupt line register (query-pci's ``irq``)."""
    kept = config_port_takers(layout) and layout.pirq is not None
    routes = {fn.bdf: _kept_route(layout, fn, hal) if kept else hal.pci_interrupt_route(fn.bus, fn.slot, fn.function)
              for fn in layout.pci if fn.interrupt_pin}
    wired = any((fn.vendor, fn.device) == PIIX4_PM_ID for fn in layout.pci)
    return HardwareView(layout, routes, PIIX4_PM_SCI if wired else hal.sci_irq())


def _kept_route(layout: Any, fn: Any, hal: Any) -> Any:
    """``fn``'s pin through the bridges to its PIRQ link, routed where the firmware left it
    (its interrupt line register, from query-pci), from the layout and memory: nothing read
    over configuration ports a card holds (q35's board slots: their D2xIR registers, at the
    RCBA window the layout shows).  None for a function whose line is no INTx, or whose
    link cannot be told."""
    from .nt.hal import (ICH9_DIR_OFFSETS, ISA_IRQS, NON_INTX_FUNCTIONS, PciRoute, ich9_link, piix3_link,
                         pirq_register, swizzle_to_bus0)
    if (fn.vendor, fn.device) in NON_INTX_FUNCTIONS:
        return None
    parent = {f.bridge.secondary: (f.bus, f.slot) for f in layout.pci if f.bridge is not None}
    root = swizzle_to_bus0(fn.bus, fn.slot, fn.interrupt_pin, parent)
    if root is None:
        return None
    irq = fn.interrupt_line if fn.interrupt_line is not None and 0 < fn.interrupt_line < ISA_IRQS else None
    if layout.pirq.chipset == "piix3":
        link = piix3_link(*root)
        return PciRoute(fn.interrupt_pin, root[0], root[1] + 1, "piix3", link, pirq_register(link), irq, irq)
    rcrb = next((r.start for r in layout.memory if r.name == ICH9_RCRB_REGION), None)

    def read_dir(slot: int) -> int | None:
        if rcrb is None:
            return None
        return int.from_bytes(hal.bus.read_memory(rcrb + ICH9_DIR_OFFSETS[slot], 2), "little")
    link = ich9_link(*root, read_dir)
    if link is None:
        return None
    return PciRoute(fn.interrupt_pin, root[0], root[1] + 1, "ich9", link, pirq_register(link), irq, ISA_IRQS + link)


def hardware_conflicts(spec: MachineSpec, hardware: HardwareView) -> list[Finding]:
    """What the hardware itself does with shared lines: an IRQ driven by an ISA device
    and another device (the SCI included), a DMA channel registered more than once."""
    return _Context(spec, hardware, None, None).hardware_conflicts()


def hardware_view(spec: MachineSpec, *, keep: bool = False) -> HardwareView:
    """Boot ``spec``, run the firmware and the machine file's post-firmware steps (the
    state the main job's NT side starts from), snapshot it and route every PCI pin (HAL).
    Raises :class:`FirmwareStopped` when a device stopped the firmware for good."""
    from .firmware_events import cut_short, stopped_by
    from .nt.hal import Hal
    from .qemu.actions import run_firmware_and_steps
    from .qemu.layout import snapshot
    from .qemu.livebus import LiveBus
    from .qemu.machine import Machine, MachineDied, MachineStuck

    with Machine(spec, keep=keep) as machine:
        try:
            run_firmware_and_steps(machine)
        except (MachineStuck, MachineDied) as exc:
            raise FirmwareStopped(stopped_by(spec, machine, exc)) from None
        view = routed_view(snapshot(machine), Hal(LiveBus(machine)))
        return dataclasses.replace(view, event=cut_short(spec, machine))


# ---------------------------------------------------------------------- reconciliation
def reconcile(spec: MachineSpec, hardware: HardwareView, *, probe: Any = None, linux: Any = None,
              claims: list[MapClaim] | None = None,
              guest_failures: dict[str, str] | None = None) -> Reconciliation:
    """Compare every modelled resource across the views that are given.

    ``guest_failures`` maps a guest view that could not be collected to why (its error):
    each becomes a finding, explained when the hardware view shows the cause.
    """
    views = {"model": "config", "qemu": hardware.layout.phase}
    if claims is not None:
        views["resourcemap"] = "model"
    if probe is not None:
        views["probe"] = probe.phase
    if linux is not None:
        views["linux"] = linux.phase
    ctx = _Context(spec, hardware, probe, linux)
    rows: list[Row] = []
    for dev in spec.devices:
        if dev.model.pci is not None:
            rows += ctx.pci_rows(dev)
        else:
            rows += ctx.isa_rows(dev)
    rows += ctx.builtin_rows()
    if claims is not None:
        rows += [ctx.claim_row(claim) for claim in claims]
    conflicts = ctx.hardware_conflicts() + ctx.board_shadowed()
    if hardware.event is not None:
        conflicts.insert(0, event_finding(hardware.event))
    for view, error in (guest_failures or {}).items():
        views[view] = "failed"
        explanation, cause = ctx.explain_unassigned()
        first_line = error.splitlines()[0] if error else "no error text"
        conflicts.append(Finding("(guest)", "boot", view, explanation,
                                 first_line + ("" if explanation == UNEXPLAINED else f"; {cause}")))
    return Reconciliation(spec.name, spec.source, views, rows, conflicts)


class _Context:
    def __init__(self, spec: MachineSpec, hardware: HardwareView, probe: Any, linux: Any) -> None:
        self.spec = spec
        self.layout = hardware.layout
        self.routes = hardware.routes
        self.sci = hardware.sci
        self.probe = probe
        self.linux = linux
        self.pci_ids = {fn.qdev_id for fn in self.layout.pci if fn.qdev_id}
        self.owner_types = {r.owner: r.owner_type for r in self.layout.io + self.layout.memory
                            if r.owner and r.owner_type}
        self._irq_users: dict[int, list[str]] | None = None
        self._legacy_ide: set[str] = set()   # PCI functions driving IRQ 14/15 as ISA devices do
        from .devices import board_model
        self.board = board_model(spec.machine)
        self.ids = {dev.id for dev in spec.devices}

    # ------------------------------------------------------------ who is where in QEMU
    def owners(self, lo: int, hi: int, space: str = "io") -> list[tuple[int, int, str | None]]:
        """(start, end, owner) pieces covering [lo, hi]; owner None where nothing decodes."""
        return owner_pieces(self.layout, lo, hi, space)

    def shadows_over(self, owner: str, lo: int, hi: int) -> list[Any]:
        """The layout's shadowed ranges of ``owner`` within [lo, hi]."""
        return [s for s in self.layout.shadowed if s.owner == owner and s.start <= hi and s.end >= lo]

    def inside_bar(self, function: str, space: str, start: int, end: int) -> bool:
        """Whether [start, end] of ``space`` lies in a BAR of PCI function ``function`` (an id)."""
        kind = "io" if space == "io" else "memory"
        return any(b.kind == kind and b.base is not None and b.base <= start and end <= b.end
                   for b in self.layout.pci_by_id(function).bars)

    def explain_lost_ports(self, owner: str, lo: int, hi: int) -> tuple[str, str]:
        """Why ``owner`` does not decode (all of) [lo, hi] in QEMU: the addresses it
        really loses, to whom, and by which of QEMU's rules."""
        shadows = self.shadows_over(owner, lo, hi)
        if shadows:
            named = {id(s): winner_names(self.board, self.layout, s, self.ids) for s in shadows}
            winners = list(dict.fromkeys(w for s in shadows for w in named[id(s)]))
            lost = "; ".join(f"{max(s.start, lo):#x}-{min(s.end, hi):#x}: {lost_reason(s, named[id(s)])}"
                             for s in shadows)
            # a PCI function wins through a BAR (priority 1), or through a fixed legacy decode
            # like any ISA device (a second VGA's 0x3c0, mapped later): only the first is a BAR
            pci = list(dict.fromkeys(r.owner for s in shadows for r in s.winning_regions(self.layout)
                                     if r.owner in self.pci_ids and self.inside_bar(r.owner, s.space, s.start, s.end)))
            if pci:
                return UNDER_PCI_BAR, f"under the BAR of PCI device {', '.join(pci)} ({lost})"
            return SHADOWED, f"shadowed by {', '.join(map(self.describe, winners))} ({lost})"
        if not any(r.owner == owner for r in self.layout.io + self.layout.memory):
            return NOT_PRESENT, f"QEMU decodes nothing for {owner}"
        fn = next((f for f in self.layout.pci if f.qdev_id == owner), None)
        dev = next((d for d in self.spec.devices if d.id == owner), None)
        # the addresses it loses, none of which a bridge forwards to it (livefuzz: a cirrus's
        # 0x3bc-0x3bf between the VGA blocks, where another device may answer)
        lost = [(a, b, who) for a, b, who in self.owners(lo, hi) if who != owner]
        if lost and fn is not None and fn.bus != 0 and dev is not None and not any(
                a <= d and c <= b for _, a, b in forwarded_legacy(dev, fn, self.layout) for c, d, _ in lost):
            # a bridge forwards its windows and, with its VGA enable, the VGA ranges only
            # (SeaBIOS sets it on the way to the primary VGA alone)
            others = sorted({self.describe(who) for *_, who in lost if who is not None})
            where = ", ".join(f"{a:#x}-{b:#x}" for a, b, _ in lost)
            return NOT_FORWARDED, (f"{owner} sits behind a bridge on bus {fn.bus}, which does not "
                                   f"forward {where}: "
                                   + (f"{', '.join(others)} decode them" if others else "nothing decodes them"))
        return UNEXPLAINED, "QEMU gives these addresses to someone else and shows no shadowing"

    def isa_props(self, device_id: str) -> dict[str, int]:
        try:
            return self.layout.isa_device(device_id).properties
        except KeyError:
            return {}

    def trigger(self, irq: int) -> str:
        """How the line is triggered, as the live ELCR says (bit set: level)."""
        if self.layout.elcr is None:
            return "edge-triggered (no ELCR read)"
        return ("level-triggered" if self.layout.elcr >> irq & 1 else "edge-triggered") + \
            f" (ELCR bit {irq} {'set' if self.layout.elcr >> irq & 1 else 'clear'})"

    def irq_users(self) -> dict[int, list[str]]:
        """IRQ line → devices that drive it in QEMU (ISA properties, routed PCI pins, SCI);
        worked out once per context (its views do not change), not to be modified."""
        if self._irq_users is None:
            self._irq_users = self._find_irq_users()
        return self._irq_users

    def _find_irq_users(self) -> dict[int, list[str]]:
        users: dict[int, list[str]] = {}

        def add(irq: int | None, who: str) -> None:
            if irq is not None and irq >= 0 and who not in users.setdefault(irq, []):
                users[irq].append(who)

        models = {d.id: d.model for d in self.spec.devices}
        for dev in self.layout.isa:
            if dev.id and dev.id.startswith(RESERVED_ID_PREFIX):
                continue  # the harness's own channels (the agent's UART never enables its IRQ)
            for prop in ISA_IRQ_PROPERTIES:
                value = dev.properties.get(prop)
                if dev.id in models and not models[dev.id].wires_irq(prop, value):
                    continue  # a value its model says connects no line (an IPMI interface's 0)
                add(value, self.isa_name(dev))
        # A board part whose line is no QOM property (the 8254 drives IRQ 0 through a GPIO,
        # or through the HPET's legacy route): its line is the board model's (checked
        # against QEMU by tests/test_boards.py).  The cascade has a finding of its own.
        from .devices import board_model
        for device in board_model(self.spec.machine):
            for dev in self.layout.isa:
                if dev.id is None and dev.type == device.qemu_type and \
                        not any(p in dev.properties for p in ISA_IRQ_PROPERTIES):
                    for irq in device.irqs:
                        if irq != CASCADE_IRQ:
                            add(irq, device.label)
            # a board part with no QOM device (the x87 FERR line): present when its
            # regions decode, wired under the accelerators its model names; a card that
            # takes its port does not unwire its line
            if device.qemu_type is None and device.irqs and \
                    (not device.irq_accel or self.layout.accel in device.irq_accel) and \
                    any(device.matches(r.owner_type, r.name) for r in (*self.layout.io, *self.layout.shadowed)):
                for irq in device.irqs:
                    add(irq, device.label)
        # a built-in function that signals through INTx is named as the claimants name it
        board_functions = {(d.pci.bdf, d.pci.ids): d.label for d in board_model(self.spec.machine)
                           if d.pci is not None and d.pci_interrupt}
        for fn in self.layout.pci:
            route = self.routes.get(fn.bdf)
            # a function whose command register disables INTx cannot assert its pin
            # (QEMU's pci_irq_handler drops the level: pci_irq_disabled)
            if route is not None and not (fn.command or 0) & PCI_COMMAND_INTX_DISABLE:
                add(route.irq, fn.qdev_id or board_functions.get((fn.bdf, (fn.vendor, fn.device)),
                                                                 f"{fn.bdf} {fn.description}"))
        # A PCI IDE function in compatibility mode drives the legacy channels' lines itself
        # (QEMU 7.2's pci_piix_init_ports wires each channel to isa_get_irq(14 / 15)),
        # whichever function answers at the ports: every one that registers a channel's
        # ports, shadowed or not (an ISA IDE device has its irq property above).  The
        # board's own is board:ide-legacy, a board part above.
        for fn in self.layout.pci:
            if fn.class_code == PCI_CLASS_IDE and fn.qdev_id:
                for port, irq in LEGACY_IDE_IRQS.items():
                    if any(r.owner == fn.qdev_id and r.start == port and r.name.split(" @")[0] == "ide"
                           for r in (*self.layout.io, *self.layout.shadowed)):
                        add(irq, fn.qdev_id)
                        self._legacy_ide.add(fn.qdev_id)
        if self.sci is not None:
            add(self.sci, "ACPI SCI")
        return users

    def dma_users(self) -> dict[int, list[str]]:
        """:func:`dma_channel_users`, each device named as the report names it."""
        return {ch: [self.isa_name(dev) for dev in users]
                for ch, users in dma_channel_users(self.spec, self.layout).items()}

    def config_ports_winners(self) -> list[str]:
        """Who decodes the PCI host's configuration address (0xCF8) or data (0xCFC-0xCFF)
        ports instead of QEMU's pci-conf-* regions.  0xCF9 does not count: the chipset's
        reset register always sits there and configuration access works around it."""
        found: list[str] = []
        for r in config_port_takers(self.layout):
            name = self.region_name(r)
            if name not in found:
                found.append(name)
        return found

    def isa_name(self, dev: Any) -> str:
        """An ISA device (a layout IsaDevice) as every report names it: its id, a board
        device's label (:func:`harness.devices.board_label`), else its type and QOM path."""
        if dev.id:
            return dev.id
        from .devices import board_device_of, board_model
        device = board_device_of(board_model(self.spec.machine), dev.type)
        return device.label if device is not None else f"{dev.type} ({dev.path})"

    def describe(self, owner: str) -> str:
        """A device id as it is; a board device's QOM path by its board label where its
        type is one board device's (else with its type: only a region tells which)."""
        if not owner.startswith("/machine/"):
            return owner
        kind = self.owner_types.get(owner)
        devices = [d for d in self.board if kind is not None and d.qemu_type == kind]
        return devices[0].label if len(devices) == 1 else f"{kind} ({owner})" if kind else owner

    def region_name(self, region: Any) -> str:
        """Whose a layout region (decoded or shadowed) is, as every report names it: a
        machine-file device by its id, a board device by its label."""
        from .devices import board_label_of
        if region.owner in self.ids:
            return region.owner
        return board_label_of(self.board, region.owner_type, region.name, region.owner or region.name)

    # ------------------------------------------------------------ ISA devices
    def isa_rows(self, dev: DeviceSpec) -> list[Row]:
        rows = []
        resources = dev.decoded_resources()
        probe_seen = self._probe_isa(dev.id)
        ports = [(lo, hi) for kind, lo, hi in resources if kind == "port"]
        # The probe's verdict belongs to the range it reads (an SB16's base is the FM
        # chip's, so its first own range stands in; a GUS answers in its second block).
        presence = dev.model.presence_ports(dev.settings) if dev.model.probe_base else None
        for lo, hi in ports:
            rows.append(self._isa_port_row(dev, lo, hi, probe_seen, (lo, hi) == presence))
        irq_props = [p for p in dev.model.irq_properties if int(dev.settings.get(p, -1)) >= 0]
        for prop in irq_props:
            rows.append(self._isa_irq_row(dev, prop, probe_seen))
        for prop in dev.model.dma_properties:
            if int(dev.settings.get(prop, -1)) >= 0:
                rows.append(self._isa_dma_row(dev, prop, probe_seen))
        return rows

    def _probe_isa(self, device_id: str) -> Any:
        if self.probe is None:
            return None
        try:
            return self.probe.isa_device(device_id)
        except KeyError:
            return None

    def _port_row(self, name: str, owner: str, lo: int, hi: int) -> tuple[Row, list[tuple[int, int]]]:
        """A row of device ``name`` (whose regions ``owner`` owns: its id, or a board
        device's QOM path) for ports it decodes, with QEMU's view of them, and the pieces
        it lost to others."""
        row = Row(name, f"port {lo:#x}-{hi:#x}", {"model": f"{lo:#x}-{hi:#x}"})
        row.cells["qemu"] = ", ".join(f"{a:#x}-{b:#x} {o or 'nothing'}" if (a, b) != (lo, hi) else (o or "nothing")
                                      for a, b, o in owner_pieces(self.layout, lo, hi, name=self.region_name))
        lost = [(a, b) for a, b, o in self.owners(lo, hi) if o != owner]
        if lost:
            row.differ("qemu", *self.explain_lost_ports(owner, lo, hi))
        return row, lost

    def _isa_port_row(self, dev: DeviceSpec, lo: int, hi: int, seen: Any, probed_here: bool) -> Row:
        row, lost = self._port_row(dev.id, dev.id, lo, hi)
        if self.probe is not None:
            if probed_here or (seen is not None and seen.port == lo):
                self._probe_presence(row, dev.id, _ports_of(dev.decoded_resources()), seen, lo, hi,
                                     dev.model.register_block)
            else:
                row.cells["probe"] = NOT_APPLICABLE
        if self.linux is not None:
            self._linux_ports(row, dev, lo, hi, lost)
        return row

    @staticmethod
    def _probed_port(ports: list[tuple[int, int]], seen: Any) -> int:
        """The port whose owner answered the probe: the reported base, or, for a device
        that does not decode its own base (an SB16's base+0..3 is its OPL's), the first
        of its decoded ``ports``."""
        ports = sorted(ports)
        if not ports or any(a <= seen.port <= b for a, b in ports):
            return seen.port
        return ports[0][0]

    def _probe_presence(self, row: Row, owner: str, ports: list[tuple[int, int]], seen: Any,
                        lo: int, hi: int, register_block: int | None = None) -> None:
        """The probe guest's view of a device's presence; ``register_block``: its model's
        (QEMU picks its registers by the port's place in an aligned block of that many)."""
        if seen is None:
            row.cells["probe"] = ABSENT
            row.differ("probe", UNEXPLAINED, "the probe guest did not report this device")
            return
        answering = self.layout.owner_at(self._probed_port(ports, seen))
        answering_owner = answering.owner if answering is not None else None
        row.cells["probe"] = "present" if seen.present else "absent"
        if seen.present and answering_owner not in (None, owner):
            row.cells["probe"] += f" (answers: {self.region_name(answering)})"
            row.differ("probe", *self.explain_lost_ports(owner, lo, hi))
        elif not seen.present and register_block and seen.port % register_block:
            # the probe reads base+N, where QEMU has another register: not a loss of ports
            first = next((p for a, b in ports for p in range(a, b + 1) if p % register_block == 0), None)
            row.differ("probe", REGISTERS_MISPLACED,
                       f"QEMU picks a register by the port's low bits (port & {register_block - 1}), not by its "
                       f"offset from the base: register N answers at the decoded port whose low bits are N"
                       + (f" (register 0 at {first:#x})" if first is not None else "")
                       + f", not at {seen.port:#x}+N where the probe reads it")
        elif not seen.present:
            lost = any(who != owner for _, _, who in self.owners(lo, hi))
            explanation = self.explain_lost_ports(owner, lo, hi) if answering_owner != owner or lost else (
                UNEXPLAINED, "QEMU decodes the ports for this device, but it does not answer")
            row.differ("probe", *explanation)

    def _isa_property_row(self, dev: DeviceSpec, kind: str, prop: str) -> tuple[Row, int]:
        """A row for an IRQ or DMA property, with QEMU's value of it (QOM); one that a
        post-firmware step's write to the device's ports changed is the step's doing
        (an SB16's mixer IRQ select: QEMU stores it in the property, though the card keeps
        raising the line it took at realize, sb16-mixer-irq-select-keeps-its-line)."""
        value = int(dev.settings[prop])
        actual = self.isa_props(dev.id).get(prop)
        row = self._property_row(dev.id, kind, prop, value, actual)
        ports = _ports_of(dev.decoded_resources())
        steps = [a for a in self.spec.after_firmware if a.kind == "port_write" and a.phase == "post-firmware"
                 and any(lo <= a.port + i <= hi for i in range(a.size) for lo, hi in ports)]
        if actual is not None and actual != value and steps:
            done = ", ".join(f"line {a.line}: {a.describe()}" for a in steps)
            row.findings[-1:] = [Finding(dev.id, row.resource, "qemu", OS_REASSIGNED,
                                         f"QEMU's {prop} property is {actual} after the post-firmware step(s) "
                                         f"writing its ports ({done}), as an OS or a driver would")]
        return row, value

    @staticmethod
    def _property_row(name: str, kind: str, prop: str, value: int, actual: int | None) -> Row:
        """A row of device ``name`` for its IRQ or DMA property ``prop``: ``value`` as set,
        ``actual`` as QEMU holds it (QOM; None: no such property)."""
        row = Row(name, f"{kind} ({prop})" if prop != kind else kind, {"model": str(value)})
        row.cells["qemu"] = ABSENT if actual is None else str(actual)
        if actual != value:
            row.differ("qemu", NOT_PRESENT if actual is None else UNEXPLAINED,
                       f"QEMU's {prop} property is {actual}")
        return row

    # ------------------------------------------------------------ built-in devices the file sets
    def builtin_rows(self) -> list[Row]:
        """Rows for each built-in device the machine file's ``builtin`` configures (the
        board's FDC moved to 0x371), named by its board label: what its board model
        decodes with those settings (harness.builtin.apply_settings) and its IRQ and DMA
        properties, against QEMU's decode and QOM and the probe guest, as for a device
        of the file.  Its claims are the ResourceMap's rows, as every driver's are."""
        from .builtin import BUILTIN_DEVICES, apply_settings, builtin_settings
        from .devices import board_device_of, load_catalog
        rows: list[Row] = []
        for name in self.spec.builtin:
            builtin = BUILTIN_DEVICES[name]
            device = board_device_of(self.board, builtin.qemu_type)
            qom = next((d for d in self.layout.isa if d.id is None and d.type == builtin.qemu_type), None)
            if device is None or qom is None:
                raise VerifyError(f"{self.spec.source}: the board's {name} ({builtin.qemu_type}) is not in "
                                  f"QEMU's device tree or the {self.spec.machine} board model")
            ports = _ports_of(apply_settings(builtin.qemu_type, device.decoded_resources(), self.spec.builtin))
            seen = self._probe_isa(qom.path)
            model = next((m for m in load_catalog().values() if m.qemu_driver == builtin.qemu_type), None)
            for lo, hi in ports:
                row, _ = self._port_row(device.label, qom.path, lo, hi)
                if self.probe is not None:
                    if seen is not None and (lo, hi) == ports[0]:
                        self._probe_presence(row, qom.path, ports, seen, lo, hi,
                                             model.register_block if model is not None else None)
                    else:
                        row.cells["probe"] = NOT_APPLICABLE
                rows.append(row)
            settings = builtin_settings(self.spec, name)
            rows += [self._property_row(device.label, prop.kind, key, int(settings[key]), qom.properties.get(key))
                     for key, prop in builtin.properties.items() if prop.kind in ("irq", "dma")]
        for row in rows:   # what the guests do not compare for a board device (the Linux guest at all)
            for view in ("probe", "linux"):
                if getattr(self, view) is not None:
                    row.cells.setdefault(view, NOT_APPLICABLE)
        return rows

    def _isa_irq_row(self, dev: DeviceSpec, prop: str, seen: Any) -> Row:
        row, irq = self._isa_property_row(dev, "irq", prop)
        if self.probe is not None:
            self._probe_irq(row, dev, irq, seen)
        if self.linux is not None:
            self._linux_irq(row, dev, irq)
        return row

    def _probe_irq(self, row: Row, dev: DeviceSpec, irq: int, seen: Any) -> None:
        if seen is None or seen.irqs is None:
            row.cells["probe"] = NOT_APPLICABLE
            return
        if not seen.present:
            row.cells["probe"] = ABSENT  # the port row explains it
            return
        row.cells["probe"] = ",".join(map(str, seen.irqs)) or "none seen"
        if seen.irqs == (irq,):
            return
        answering = self.layout.owner_at(self._probed_port(_ports_of(dev.decoded_resources()), seen))
        winner = answering.owner if answering is not None else None
        if winner not in (None, dev.id):
            if winner in self.pci_ids:  # a PCI function over the ISA ports: its INTx line answers
                winner_irq = self.layout.pci_by_id(winner).interrupt_line
                explanation = UNDER_PCI_BAR if self.inside_bar(winner, "io", answering.start, answering.end) \
                    else SHADOWED
            else:
                winner_irq = self.isa_props(winner).get("irq")
                explanation = SHADOWED
            if seen.irqs == (winner_irq,):
                row.differ("probe", explanation, f"its ports answer for {self.region_name(answering)}, which drives IRQ {winner_irq}")
                return
            if winner_irq is None and not seen.irqs:   # a board device's registers: none to make it interrupt
                row.differ("probe", explanation, f"its ports answer for {self.region_name(answering)}, so nothing "
                                                 "reaches its registers to make it interrupt")
                return
        if irq == CASCADE_IRQ:
            row.differ("probe", CASCADE, CASCADE_REASON)
            return
        others = [u for u in self.irq_users().get(irq, []) if u != dev.id]
        if not seen.irqs and others:
            row.differ("probe", IRQ_SHARED, f"IRQ {irq} is also driven by {', '.join(others)}; QEMU has "
                                            "no wired-OR (the last writer wins)")
            return
        row.differ("probe", UNEXPLAINED, f"the device drives IRQ {seen.irqs or 'nothing'}, the model says {irq}")

    def _isa_dma_row(self, dev: DeviceSpec, prop: str, seen: Any) -> Row:
        row, channel = self._isa_property_row(dev, "dma", prop)
        if self.probe is not None:
            selects = seen.details.get("mixer_dma_sel") if seen is not None and seen.present else None
            if selects is None:
                row.cells["probe"] = NOT_APPLICABLE
            else:
                mask = int(selects, 16)
                row.cells["probe"] = ",".join(str(c) for c in range(8) if mask >> c & 1)
                if not mask >> channel & 1:
                    row.differ("probe", UNEXPLAINED, f"the card's mixer reports DMA select {selects}")
        if self.linux is not None:
            self._linux_dma(row, dev, channel)
        return row

    # ------------------------------------------------------------ PCI devices
    def pci_rows(self, dev: DeviceSpec) -> list[Row]:
        assert dev.model.pci is not None
        try:
            fn = self.layout.pci_by_id(dev.id)
        except KeyError:
            fn = None
        rows = []
        for bar in dev.model.pci.bars:
            label = f"BAR{bar.index} {bar.kind}"
            row = Row(dev.id, label, {"model": f"size {bar.size:#x}"})
            rows.append(row)
            actual = None if fn is None else next((b for b in fn.bars if b.index == bar.index), None)
            if fn is None:
                row.cells["qemu"] = ABSENT
                row.differ("qemu", NOT_PRESENT, "QEMU does not list the function")
            elif actual is None or actual.base is None:
                row.cells["qemu"] = "unassigned"
                row.differ("qemu", *self.explain_unassigned())
            else:
                row.cells["qemu"] = f"{actual.base:#x}-{actual.end:#x}"
                if actual.size != bar.size:
                    row.differ("qemu", UNEXPLAINED, f"QEMU sizes it {actual.size:#x}")
            if self.probe is not None:
                self._probe_bar(row, fn, bar.index, actual)
            if self.linux is not None:
                self._linux_bar(row, fn, bar.index, actual)
        if dev.model.pci.interrupt_pin:
            rows.append(self._pci_irq_row(dev, fn))
        # Fixed legacy ports beside the BARs (a VGA's 0x3b0-0x3df): QEMU's view alone,
        # the guests read configuration space and BARs.
        for kind, lo, hi in dev.decoded_resources():
            if kind == "port":
                row, _ = self._port_row(dev.id, dev.id, lo, hi)
                for view in ("probe", "linux"):
                    if getattr(self, view) is not None:
                        row.cells[view] = NOT_APPLICABLE
                rows.append(row)
        return rows

    def explain_config_ports(self) -> tuple[str, str] | None:
        """Why configuration space reads wrong from software, if a device took its ports."""
        winners = self.config_ports_winners()
        if not winners:
            return None
        return CONFIG_PORTS_SHADOWED, (
            f"the PCI configuration ports {PCI_CONFIG_PORTS[0]:#x}-{PCI_CONFIG_PORTS[1]:#x} are "
            f"shadowed by {', '.join(winners)}: software cannot reach configuration space")

    def explain_unassigned(self) -> tuple[str, str]:
        return self.explain_config_ports() or (UNEXPLAINED, "the firmware left the BAR unassigned")

    def _probe_function(self, row: Row, fn: Any) -> Any:
        if fn is None:
            row.cells["probe"] = ABSENT
            return None
        if not self.probe.pci_conf1:
            row.cells["probe"] = ABSENT
            explanation = self.explain_unassigned()
            row.differ("probe", explanation[0], explanation[1] if explanation[0] != UNEXPLAINED
                       else "configuration mechanism #1 does not work in the guest")
            return None
        try:
            return self.probe.pci_function(fn.bdf)
        except KeyError:
            row.cells["probe"] = ABSENT
            row.differ("probe", UNEXPLAINED, f"the guest finds nothing at {fn.bdf}")
            return None

    def _probe_bar(self, row: Row, fn: Any, index: int, actual: Any) -> None:
        seen_fn = self._probe_function(row, fn)
        if seen_fn is None:
            return
        seen = next((b for b in seen_fn.bars if b.index == index), None)
        row.cells["probe"] = ABSENT if seen is None else f"{seen.base:#x}-{seen.end:#x}"
        # A memory BAR under 16 bytes (pvpanic-pci's 2) sizes as 16 through its read-only
        # type bits: the guest's 16 at QEMU's base is the same BAR.
        sized = None if actual is None else (max(actual.size, 16) if actual.kind == "memory" else actual.size)
        if actual is not None and actual.base is not None and (
                seen is None or (seen.base, seen.size) not in ((actual.base, actual.size), (actual.base, sized))):
            if self._moved_after_firmware(fn, index, actual.base):
                row.differ("probe", OS_REASSIGNED, f"a post-firmware move_bar step put it at {actual.base:#x}, "
                                                   "as an OS would; the probe guest's machine ran the firmware only")
            else:
                # With part of the data port taken (a card at 0xcfd-0xcff), the guest still
                # finds the function, but its BAR reads are partly the card's.
                row.differ("probe", *(self.explain_config_ports()
                                      or (UNEXPLAINED, "the guest reads the BAR differently from QEMU's decode")))

    def _moved_after_firmware(self, fn: Any, index: int, base: int) -> bool:
        """Whether a post-firmware step of the machine file moved BAR ``index`` of ``fn`` to ``base``."""
        return any(a.kind == "move_bar" and a.phase == "post-firmware" and a.target in (fn.qdev_id, fn.bdf)
                   and a.bar == index and a.address == base for a in self.spec.after_firmware)

    def _rerouted_after_firmware(self, route: Any) -> bool:
        """Whether a post-firmware step of the machine file wrote the chipset register
        holding ``route``'s link (the PIIX3's or ICH9's PIRQ route registers)."""
        router = PIRQ_REGISTERS.get(self.spec.machine, (None,))[0]
        return any(a.kind == "pci_write" and a.phase == "post-firmware" and _bdf_of(a.target) == router
                   and a.offset <= route.register < a.offset + a.size for a in self.spec.after_firmware)

    def _pci_irq_row(self, dev: DeviceSpec, fn: Any) -> Row:
        pin = dev.model.pci.interrupt_pin
        row = Row(dev.id, f"INT{'ABCD'[pin - 1]}#", {"model": f"INT{'ABCD'[pin - 1]}#"})
        route = self.routes.get(fn.bdf) if fn is not None else None
        if route is None:
            row.cells["qemu"] = ABSENT
            if fn is not None:
                row.differ("qemu", UNEXPLAINED, "no PIRQ route for the pin")
            return row
        row.cells["qemu"] = f"{route.link_name}->{'off' if route.irq is None else route.irq}"
        if route.irq is None:
            explanation = self.explain_unassigned()
            row.differ("qemu", explanation[0], f"{route.link_name} is disabled"
                       + ("" if explanation[0] == UNEXPLAINED else f": {explanation[1]}"))
        elif fn.interrupt_line not in (None, route.irq):
            row.differ("qemu", PIRQ_ROUTED, f"config 0x3C says {fn.interrupt_line}, but "
                                            f"{route.link_name} routes the pin to IRQ {route.irq}")
        if self.probe is not None:
            seen = self._probe_function(row, fn)
            if seen is not None:
                observed = seen.irq_observed
                row.cells["probe"] = (f"line {seen.interrupt_line}" if observed is None
                                      else f"line {seen.interrupt_line}, seen {','.join(map(str, observed)) or 'none'}")
                if seen.interrupt_line != route.irq:
                    row.differ("probe", PIRQ_ROUTED, f"config 0x3C says {seen.interrupt_line}, but "
                                                     f"{route.link_name} routes the pin to IRQ {route.irq}")
                if observed is not None and observed != (route.irq,):
                    if self._rerouted_after_firmware(route):
                        row.differ("probe", OS_REASSIGNED, f"a post-firmware pci_write step routed {route.link_name} "
                                                           f"to IRQ {route.irq}, as an OS would; the probe guest's "
                                                           f"machine ran the firmware only (INTx arrives on {observed})")
                    else:
                        row.differ("probe", UNEXPLAINED, f"INTx arrives on {observed}, "
                                                         f"{route.link_name} routes it to IRQ {route.irq}")
        if self.linux is not None:
            self._linux_pci_irq(row, fn, route)
        return row

    # ------------------------------------------------------------ the registry model
    def _board_devices_held(self, claim: MapClaim) -> list[str]:
        """The built-in devices whose fixed decode makes up ``claim``, when the board model
        gives every one of them to the claim's own service (the HAL claims both 8259s'
        edge/level registers, 0x4d0-0x4d1, in one descriptor); else nothing."""
        from .claimants import service_of
        from .devices import board_model
        from .nt.iomgr import HAL_NAME, HAL_RESOURCE_CLASS
        service = claim.owner.split("\\")[1] if claim.owner.count("\\") >= 2 else ""
        # the HAL's key is named after the HAL that ran
        hal_name = service if claim.owner.split("\\")[0] == HAL_RESOURCE_CLASS else HAL_NAME
        held: dict[str, list[tuple[int, int]]] = {}
        for device in board_model(self.spec.machine):
            if device.claimant is not None and service_of(device.claimant, hal_name) == service:
                runs = [(f.start, f.start + f.length - 1) for f in device.fixed if f.kind == claim.kind]
                if any(a <= claim.end and claim.start <= b for a, b in runs):
                    held[device.label] = runs
        cursor = claim.start
        for a, b in sorted(run for runs in held.values() for run in runs):
            if a <= cursor <= b:
                cursor = b + 1
        return sorted(held) if cursor > claim.end else []

    def claim_row(self, claim: MapClaim) -> Row:
        text = f"{claim.start:#x}-{claim.end:#x}" if claim.kind in ("port", "memory") else str(claim.start)
        row = Row(claim.owner, f"{claim.kind} {text}", {"resourcemap": text + (" shared" if claim.shared else "")})
        if claim.kind in ("port", "memory"):
            space = "io" if claim.kind == "port" else "memory"
            pieces = self.owners(claim.start, claim.end, space)
            owners = sorted({o for _, _, o in pieces if o is not None})
            # named as every report names them (a board device by its label, not its QOM path)
            named = ", ".join(dict.fromkeys(o for _, _, o in owner_pieces(
                self.layout, claim.start, claim.end, space, name=self.region_name) if o is not None))
            row.cells["qemu"] = named or "nothing"
            if any(o is None for _, _, o in pieces):
                bar = self._bar_of_size(claim.kind, claim.end - claim.start + 1)
                here = self._bar_at(claim.kind, claim.start, claim.end)
                if not owners and here is not None:
                    # mapped right there, yet no register behind it: e1000e's dummy flash
                    # BAR, a bare memory_region_init container QEMU maps for probing drivers
                    row.cells["qemu"] = f"{here[0]} BAR{here[1]} (no registers)"
                    row.differ("qemu", NOT_PRESENT, f"{here[0]}'s BAR{here[1]} is mapped there but QEMU "
                                                    "decodes nothing behind it")
                elif not owners and bar is not None:
                    row.differ("qemu", FIRMWARE_REASSIGNED, f"no device decodes it; the firmware put "
                                                            f"{bar[0]}'s BAR{bar[1]} of that size at {bar[2]:#x}")
                else:
                    row.differ("qemu", NOT_PRESENT, "nothing decodes "
                               + ", ".join(f"{a:#x}-{b:#x}" for a, b, o in pieces if o is None))
            elif len(owners) > 1:
                hidden = [s for s in self.layout.shadowed
                          if s.space == space and s.start <= claim.end and s.end >= claim.start]
                if hidden:
                    row.differ("qemu", SHADOWED, "; ".join(
                        f"{self.region_name(s)}'s {s.start:#x}-{s.end:#x} is shadowed: "
                        f"{lost_reason(s, winner_names(self.board, self.layout, s, self.ids))}" for s in hidden))
                elif board := self._board_devices_held(claim):
                    row.differ("qemu", BOARD_CLAIM, f"one claim of its built-in {', '.join(board)}, "
                                                    f"which QEMU builds as {len(owners)} devices")
                else:
                    row.differ("qemu", UNEXPLAINED, f"the claim spans {len(owners)} QEMU devices' decodes: {named}")
        elif claim.kind == "irq":
            users = self.irq_users().get(claim.start, [])
            row.cells["qemu"] = ", ".join(users) or "nothing"
            if not users:
                hint = [fn for fn in self.layout.pci if fn.interrupt_line == claim.start
                        and self.routes.get(fn.bdf) is not None]
                if hint:
                    route = self.routes[hint[0].bdf]
                    row.differ("qemu", PIRQ_ROUTED, f"{hint[0].qdev_id or hint[0].bdf} says IRQ {claim.start} "
                                                    f"in config 0x3C, but {route.link_name} routes it to "
                                                    f"IRQ {route.irq}")
                else:
                    row.differ("qemu", NOT_PRESENT, f"no device drives IRQ {claim.start}")
        else:
            users = self.dma_users().get(claim.start, [])
            row.cells["qemu"] = ", ".join(users) or "nothing"
            if not users:
                row.differ("qemu", NOT_PRESENT, f"no device uses DMA channel {claim.start}")
        return row

    def _bar_at(self, kind: str, start: int, end: int) -> tuple[str, int] | None:
        """The PCI function and BAR index mapped exactly at start-end, if any."""
        wanted = "io" if kind == "port" else "memory"
        for fn in self.layout.pci:
            for bar in fn.bars:
                if bar.kind == wanted and (bar.base, bar.end) == (start, end):
                    return fn.qdev_id or fn.bdf, bar.index
        return None

    def _bar_of_size(self, kind: str, size: int) -> tuple[str, int, int] | None:
        wanted = "io" if kind == "port" else "memory"
        for fn in self.layout.pci:
            for bar in fn.bars:
                if bar.kind == wanted and bar.size == size and bar.base is not None:
                    return fn.qdev_id or fn.bdf, bar.index, bar.base
        return None

    # ------------------------------------------------------------ conflicts in the hardware
    def board_shadowed(self) -> list[Finding]:
        """Addresses a built-in device loses to a device of the machine file (an ISA card
        over the PIC, the RTC, GPE0), or, between two built-in devices, where the file's
        `builtin` moved one (the FDC at 0x371 under the IDE's 0x376): no row shows them,
        the board device has none."""
        from .builtin import moved_port_types
        ids = self.ids
        moved = moved_port_types(self.spec.builtin)
        out = []
        for s in self.layout.shadowed:
            winners = s.device_winners(self.layout, ids) if s.owner not in ids else ()
            if not winners and s.owner not in ids and moved:
                if moved & {s.owner_type, *(r.owner_type for r in s.winning_regions(self.layout))}:
                    winners = winner_names(self.board, self.layout, s, ids)
            if winners:   # the loser named as the job's collisions name it
                out.append(Finding(", ".join(winners), f"{s.space} {s.start:#x}-{s.end:#x}", "hardware", SHADOWED,
                                   f"{self.region_name(s)} ({s.name}) no longer answers there: "
                                   f"{lost_reason(s, winner_names(self.board, self.layout, s, ids))}"))
        return out

    def hardware_conflicts(self) -> list[Finding]:
        found = []
        users_of = self.irq_users()
        isa_owners = {self.isa_name(dev) for dev in self.layout.isa} | self._legacy_ide
        sci = self.sci
        for irq, users in sorted(users_of.items()):
            # PCI functions may share a line (level-triggered, ORed by the chipset).
            if len(users) < 2 or not any(u in isa_owners for u in users):
                continue
            if irq == sci:
                others = [u for u in users if u != "ACPI SCI"]
                found.append(Finding(", ".join(others), f"irq {irq}", "hardware", ACPI_SCI,
                                     f"IRQ {irq} is the ACPI SCI ({self.trigger(irq)}, owned by the OS's ACPI "
                                     f"driver); {', '.join(others)} also drive(s) it"))
            elif self.layout.elcr is not None and self.layout.elcr >> irq & 1:
                found.append(Finding(", ".join(users), f"irq {irq}", "hardware", IRQ_SHARED,
                                     f"IRQ {irq} is driven by {', '.join(users)}: the line is {self.trigger(irq)}; "
                                     "the chipset ORs PCI INTx, but an ISA device drives the line itself and "
                                     "QEMU has no wired-OR: its writes override the others' level (the last "
                                     "writer wins)"))
            else:
                found.append(Finding(", ".join(users), f"irq {irq}", "hardware", IRQ_SHARED,
                                     f"IRQ {irq} is driven by {', '.join(users)}: the line is {self.trigger(irq)} "
                                     "and QEMU has no wired-OR: a request made while another device holds "
                                     "the line makes no edge and is lost (the last writer wins)"))
        ioapic = any(r.owner_type == "ioapic" for r in self.layout.memory)
        for user in self.irq_users().get(CASCADE_IRQ, []):
            found.append(Finding(user, f"irq {CASCADE_IRQ}", "hardware", CASCADE,
                                 CASCADE_REASON + (CASCADE_IOAPIC_REASON if ioapic else "")))
        for channel, users in sorted(self.dma_users().items()):
            if len(users) > 1:
                found.append(Finding(", ".join(users), f"dma {channel}", "hardware", DMA_SHARED,
                                     f"DMA channel {channel} is registered by {', '.join(users)} in that "
                                     f"order: the last, {users[-1]}, owns the channel and the others stall"))
        return found

    # ------------------------------------------------------------ the Linux guest
    def _linux_ports(self, row: Row, dev: DeviceSpec, lo: int, hi: int, lost: list[tuple[int, int]]) -> None:
        names = self.linux.port_names(lo, hi)
        row.cells["linux"] = ", ".join(names) or ABSENT
        if names:
            return
        if lost:
            row.differ("linux", *self.explain_lost_ports(dev.id, lo, hi))
            return
        self._linux_unclaimed(row, dev, lo)

    def _linux_unclaimed(self, row: Row, dev: DeviceSpec, port: int | None) -> None:
        conflict = self.linux.conflict_for(self.linux_driver_names(dev), dev.settings.get("irq"))
        if conflict is not None:
            row.differ("linux", OS_CONFLICT, conflict)
            return
        described = self.linux.pnp_describing(port) if port is not None else None
        if described:
            row.differ("linux", NO_DRIVER, f"PnP device {described} describes it, but no driver claimed it")
        else:
            row.differ("linux", NO_DRIVER, "no ACPI/PnP entry describes this ISA device and no driver "
                                           f"probed it (kernel {self.linux.kernel})")

    def linux_driver_names(self, dev: DeviceSpec) -> tuple[str, ...]:
        return LINUX_RESOURCE_NAMES.get(dev.model.name, ())

    def _held_by_other(self, row: Row, dev: DeviceSpec, kind: str, number: int, holders: list[str]) -> bool:
        """Linux gave the line/channel to a driver that is not this device's: say why."""
        own = self.linux_driver_names(dev)
        if not holders or any(n.startswith(own) for n in holders if own):
            return False
        users = self.irq_users() if kind == "irq" else self.dma_users()
        others = [u for u in users.get(number, []) if u != dev.id]
        if kind == "irq" and number == CASCADE_IRQ:
            row.differ("linux", CASCADE, f"Linux gave IRQ {number} to {', '.join(holders)}; {CASCADE_REASON}")
        elif kind == "irq" and number == self.sci:
            row.differ("linux", ACPI_SCI, f"IRQ {number} is the ACPI SCI: Linux gave it to {', '.join(holders)}")
        elif others:
            row.differ("linux", IRQ_SHARED if kind == "irq" else DMA_SHARED,
                       f"Linux gave {kind} {number} to {', '.join(holders)}; the hardware also has "
                       f"{', '.join(others)} on it")
        else:
            row.differ("linux", UNEXPLAINED, f"Linux gave {kind} {number} to {', '.join(holders)}")
        return True

    def _same_ports_as(self, dev: DeviceSpec) -> list[str]:
        mine = [(lo, hi) for kind, lo, hi in dev.decoded_resources() if kind == "port"]
        return [other.id for other in self.spec.devices if other.id != dev.id and any(
            lo <= b and a <= hi for kind, a, b in other.decoded_resources() if kind == "port" for lo, hi in mine)]

    def _linux_irq(self, row: Row, dev: DeviceSpec, irq: int) -> None:
        names = self.linux.irq_names(irq)
        row.cells["linux"] = ABSENT if names is None else (", ".join(names) or "used, released")
        message = self.linux.conflict_for(self.linux_driver_names(dev), irq)
        if message is not None:
            row.differ("linux", OS_CONFLICT, message)
            return
        if names is not None:
            self._held_by_other(row, dev, "irq", irq, list(names))
            return
        overlapping = self._same_ports_as(dev)
        if overlapping:
            row.differ("linux", SHADOWED, f"{', '.join(overlapping)} decode(s) the same ports: Linux binds "
                                          "one driver per port range")
            return
        ports = [(lo, hi) for kind, lo, hi in dev.decoded_resources() if kind == "port"]
        lost = ports and any(o != dev.id for lo, hi in ports for _, _, o in self.owners(lo, hi))
        if lost:
            row.differ("linux", *self.explain_lost_ports(dev.id, *ports[0]))
        elif ports and not any(self.linux.port_names(lo, hi) for lo, hi in ports):
            self._linux_unclaimed(row, dev, ports[0][0])
        else:
            row.differ("linux", NO_DRIVER, f"the driver never requested IRQ {irq}")

    def _linux_dma(self, row: Row, dev: DeviceSpec, channel: int) -> None:
        owner = self.linux.dma.get(channel)
        row.cells["linux"] = owner or ABSENT
        if owner is not None:
            self._held_by_other(row, dev, "dma", channel, [owner])
        else:
            ports = [(lo, hi) for kind, lo, hi in dev.decoded_resources() if kind == "port"]
            if ports and not any(self.linux.port_names(lo, hi) for lo, hi in ports):
                self._linux_unclaimed(row, dev, ports[0][0])
            else:
                row.differ("linux", NO_DRIVER, f"no driver holds DMA channel {channel}")

    def _linux_bar(self, row: Row, fn: Any, index: int, actual: Any) -> None:
        seen = self.linux.pci_resource(fn.bdf, index) if fn is not None else None
        row.cells["linux"] = ABSENT if seen is None else f"{seen[0]:#x}-{seen[1]:#x}"
        if actual is None or actual.base is None:
            return
        if seen is None:
            row.differ("linux", UNEXPLAINED, f"Linux lists no resource {index} for {fn.bdf}")
        elif seen != (actual.base, actual.end):
            row.differ("linux", OS_REASSIGNED, f"Linux put it at {seen[0]:#x}-{seen[1]:#x}; the firmware "
                                               f"had {actual.base:#x}-{actual.end:#x}")

    def _linux_pci_irq(self, row: Row, fn: Any, route: Any) -> None:
        irq = self.linux.pci_irq(fn.bdf)
        row.cells["linux"] = ABSENT if irq is None else str(irq)
        if irq is None:
            row.differ("linux", UNEXPLAINED, f"Linux lists no IRQ for {fn.bdf}")
        elif irq not in (route.irq, route.gsi):
            row.differ("linux", UNEXPLAINED, f"Linux uses IRQ {irq}; {route.link_name} goes to IRQ "
                                             f"{route.irq} (I/O APIC input {route.gsi})")


#: Names Linux's drivers give their resources and interrupts, per device model (for
#: matching kernel conflict messages to the device).
LINUX_RESOURCE_NAMES: dict[str, tuple[str, ...]] = {
    "isa-serial": ("serial", "ttyS"),
    "isa-parallel": ("parport",),
    "isa-fdc": ("floppy",),
    "ne2k_isa": ("NE2000", "ne"),
    "sb16": ("SoundBlaster", "sb16"),
}


# ---------------------------------------------------------------------- output
def format_table(rec: Reconciliation) -> str:
    views = [v for v in ("model", "resourcemap", "qemu", "probe", "linux") if v in rec.views]
    header = ["device", "resource"] + [f"{v} ({rec.views[v]})" for v in views] + ["verdict"]
    lines = []
    for row in rec.rows:
        verdict = "agree" if not row.findings else "; ".join(sorted({f.explanation for f in row.findings}))
        lines.append([row.device, row.resource] + [row.cells.get(v, "") for v in views] + [verdict])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)] if lines else [len(h) for h in header]
    out = [f"{rec.machine} ({rec.source}): views " + ", ".join(f"{v}={p}" for v, p in rec.views.items()), ""]
    for cells in [header] + lines:
        out.append("  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip())
    if rec.findings:
        out.append("\nFindings")
        for f in rec.findings:
            mark = "  " if f.explained else "!!"
            out.append(f"{mark} [{f.explanation}] {f.device} {f.resource} ({f.view}): {f.reason}")
    agreed = sum(1 for row in rec.rows if not row.findings)
    out.append(f"\n{agreed}/{len(rec.rows)} rows agree; {len(rec.findings)} finding(s), "
               f"{len(rec.unexplained)} unexplained")
    return "\n".join(out) + "\n"


def to_json(rec: Reconciliation) -> str:
    return json.dumps(rec.to_dict(), indent=1, sort_keys=True)


# ---------------------------------------------------------------------- one call
GUEST_CHOICES = ("none", "probe", "linux", "both")


def verify(spec: MachineSpec, *, guest: str = "probe", registry: Any = None, keep: bool = False) -> Reconciliation:
    """Collect the views of ``spec`` (booting QEMU as needed) and reconcile them."""
    if guest not in GUEST_CHOICES:
        raise VerifyError(f"guest must be one of {', '.join(GUEST_CHOICES)}, not {guest!r}")
    try:
        hardware = hardware_view(spec, keep=keep)
    except FirmwareStopped as stopped:
        return Reconciliation(spec.name, spec.source, {"model": "config", "qemu": "firmware stopped"}, [],
                              [event_finding(stopped.event)])
    probe = linux = None
    failures: dict[str, str] = {}
    if guest in ("probe", "both"):
        from .guests.probe import ProbeError, run_probe
        try:
            probe = run_probe(spec, hardware.layout, keep=keep)
        except ProbeError as exc:
            failures["probe"] = str(exc)
    unsupported = None
    if guest in ("linux", "both"):
        from .guests.linux import LinuxGuestError, LinuxUnsupported, run_linux
        try:
            linux = run_linux(spec, keep=keep)
        except LinuxUnsupported as exc:
            unsupported = str(exc)
        except LinuxGuestError as exc:
            failures["linux"] = str(exc)
    claims = resource_map_claims(registry) if registry is not None else None
    rec = reconcile(spec, hardware, probe=probe, linux=linux, claims=claims, guest_failures=failures)
    if unsupported is not None:
        rec.views["linux"] = f"not run: {unsupported}"
    return rec

