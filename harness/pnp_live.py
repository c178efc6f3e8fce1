r"""PnP resource assignment on a live machine (:mod:`harness.nt.pnp` is the model).

:func:`run_pnp` boots the machine, runs SeaBIOS and builds the device tree:

* **PCI** functions with BARs, from the bus through the HAL
  (:meth:`~harness.nt.hal.Hal.slot_configuration`): Basic = what HalAssignSlotResources
  would place (windows of the function's bus), Boot = where SeaBIOS put it;
* **ISA** devices of the machine file, from their device model: one alternative list per
  base-port choice (LCPRI_HARDRECONFIG: a jumper change), each IRQ and DMA property a
  group of its choices in the model's order; Boot = the configured settings;
* what **detection** found that the machine file does not configure (the board's floppy
  and keyboard controllers): Boot and a single LCPRI_HARDWIRED list, both what QEMU
  decodes for that device.

Everything else stays where it is and is kept clear of: the HAL's own claims, every range
the platform decodes for devices that are not nodes, the IRQ and DMA lines of board ISA
devices (from their QOM properties) and the PC/AT compatibility IDE lines when the legacy
IDE ports are decoded.  Drivers answer the PnP IRPs (their ``dispatch_pnp``); the NE2000
driver filters IRQ 9 out of an ISA card's requirements.

``apply``: ISA settings cannot change while QEMU runs, so when the assignment moves an ISA
device the machine is relaunched with a new MachineSpec holding the chosen settings (the
output says so, device by device); then every PCI function is programmed through
HalAssignSlotResources with the assignment as its allocator, every node's LogConf and
``Control\AllocConfig`` and the ``PnP Manager`` ResourceMap are written, and the result is
checked with the reconciliation (:func:`harness.verify.reconcile`) against a fresh
snapshot: the assignment is proved when no finding remains.

The SeaBIOS comparison sets the firmware's BARs (the post-firmware snapshot) against the
assignment; each difference is explained from the search's own record of what held the
firmware's place.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .claimants import forwarded_legacy, resolve_board
from .config import DeviceSpec, MachineSpec
from .devices import DeviceModel
from .drivers import DRIVERS
from .errors import HarnessError
from .nt import pnp
from .nt.arbiter import Arbiter, Claim, Owner, ResourceKind, range_claim
from .nt.detect import HardwareDetector
from .nt.hal import ISA_MEMORY_LIMIT, Hal, slot_number
from .nt.iomgr import IoManager
from .nt.pnp import ConfigType, DeviceNode, with_priority
from .nt.registry import Registry
from .nt.resources import (CM_RESOURCE_INTERRUPT_LATCHED, CM_RESOURCE_LIST, CM_RESOURCE_PORT_IO,
                           IO_RESOURCE_ALTERNATIVE, IO_RESOURCE_REQUIREMENTS_LIST, LCPRI_HARDRECONFIG,
                           LCPRI_HARDWIRED, CmResourceShare, Dma, DmaRequirement, Interrupt,
                           InterruptRequirement, Isa, Memory, MemoryRequirement, PCIBus, Port,
                           PortRequirement)
from .nt.status import NT_SUCCESS, NTSTATUS
from .qemu.layout import LEGACY_IDE_IRQS, Layout, snapshot
from .qemu.livebus import LiveBus
from .qemu.machine import Machine
from .verify import (ABSENT, NOT_FORWARDED, NOT_PRESENT, Finding, Reconciliation, reconcile, resource_map_claims,
                     routed_view)

EXCLUSIVE = CmResourceShare.CmResourceShareDeviceExclusive
#: PC/AT compatibility IDE: command block base -> its ISA IRQ (primary 14, secondary 15).
IRQ_PROPERTY_MARK = "irq"
DMA_PROPERTY_PREFIX = "dma"


class PnpLiveError(HarnessError):
    pass


# ---------------------------------------------------------------------------------------
# Building the tree


def _isa_partials(kind: str, first: int, last: int) -> Any:
    if kind == "port":
        return Port(first, last - first + 1, share=EXCLUSIVE, flags=CM_RESOURCE_PORT_IO)
    if kind == "memory":
        return Memory(first, last - first + 1, share=EXCLUSIVE)
    if kind == "irq":
        return Interrupt(first, first, -1, share=EXCLUSIVE, flags=CM_RESOURCE_INTERRUPT_LATCHED)
    return Dma(first, share=EXCLUSIVE)


def _fixed_requirement(kind: str, first: int, last: int) -> Any:
    if kind == "port":
        return PortRequirement(last - first + 1, 1, first, last, share=EXCLUSIVE)
    if kind == "memory":
        return MemoryRequirement(last - first + 1, 1, first, last, share=EXCLUSIVE)
    if kind == "irq":
        return InterruptRequirement(first, first, share=EXCLUSIVE, flags=CM_RESOURCE_INTERRUPT_LATCHED)
    return DmaRequirement(first, first, share=EXCLUSIVE)


#: Where a device that takes any base port (a port property without choices: QEMU
#: describes it to the guest in ACPI) may be moved: the ISA expansion-card I/O area.
ANY_PORT_WINDOW = (0x100, 0x3FF)


def _choices(model: DeviceModel, prop: str, current: Any) -> list[Any]:
    """The values ``prop`` may take, ``current`` first when it has no choices."""
    spec = model.properties[prop]
    if spec.choices:
        return list(spec.choices)
    if spec.kind != "port" or current is None:
        return [current]
    return [current, *(base for base in _any_port_bases(model, prop) if base != current)]


def _any_port_bases(model: DeviceModel, prop: str) -> range:
    """The bases in ANY_PORT_WINDOW for the runs placed by ``prop``, aligned to the
    power of two that holds them (as an ISA card decodes its block)."""
    span = max((d.offset + d.length for d in model.ports if d.base == prop), default=1)
    align = 1 << (span - 1).bit_length()
    first = -(-ANY_PORT_WINDOW[0] // align) * align
    return range(first, ANY_PORT_WINDOW[1] - span + 2, align)


def isa_requirements(model: DeviceModel, settings: dict[str, Any]) -> IO_RESOURCE_REQUIREMENTS_LIST:
    """The Basic configuration of a jumpered card: one list per base-port choice (ports
    as the model decodes them from that base), each IRQ / DMA property one group of its
    choices, every list LCPRI_HARDRECONFIG."""
    bases = list(dict.fromkeys(d.base for d in model.ports))
    lines = _set_lines(model, settings)
    lists = []
    import itertools
    for combo in itertools.product(*(_choices(model, b, settings[b]) for b in bases)):
        variant = dict(settings, **dict(zip(bases, combo)))
        descriptors = [_fixed_requirement(kind, a, b) for kind, a, b in model.decoded_resources(variant)
                       if kind in ("port", "memory")]
        for prop in lines:
            kind = "irq" if prop in model.irq_properties else "dma"
            for i, value in enumerate(_choices(model, prop, settings[prop])):
                d = _fixed_requirement(kind, value, value)
                descriptors.append(dataclasses.replace(d, option=IO_RESOURCE_ALTERNATIVE) if i else d)
        lists.append(with_priority(LCPRI_HARDRECONFIG, *descriptors))
    return IO_RESOURCE_REQUIREMENTS_LIST(Isa, 0, 0, tuple(lists))


def settings_of(model: DeviceModel, resources: CM_RESOURCE_LIST, current: dict[str, Any]) -> dict[str, Any]:
    """Which settings of ``model`` give exactly ``resources`` (the inverse of
    :func:`isa_requirements`): tried over every choice combination, current values first."""
    import itertools
    wanted = sorted(_key(p) for _, p in resources.partials())
    props = [p for p in dict.fromkeys(d.base for d in model.ports) if current.get(p) is not None]
    props += _set_lines(model, current)
    options = [[current[p], *[c for c in _choices(model, p, current[p]) if c != current[p]]] for p in props]
    for combo in itertools.product(*options):
        variant = dict(current, **dict(zip(props, combo)))
        if sorted(_key(_isa_partials(*r)) for r in model.decoded_resources(variant)) == wanted:
            return variant
    raise PnpLiveError(f"no setting of {model.name} gives {pnp.describe_resources(resources)}")


def _set_lines(model: DeviceModel, settings: dict[str, Any]) -> list[str]:
    """The IRQ and DMA properties set in ``settings`` that use a line: an IRQ left at its
    ``unwired`` value (an IPMI interface's irq 0) connects none, and stays so."""
    return [p for p in (*model.irq_properties, *model.dma_properties) if settings.get(p) is not None
            and (p not in model.irq_properties or model.wires_irq(p, settings[p]))]


def _key(partial: Any) -> tuple:
    if isinstance(partial, Interrupt):
        return ("irq", partial.level)
    if isinstance(partial, Dma):
        return ("dma", partial.channel)
    return (type(partial).__name__, partial.start, partial.length)


@dataclass
class Tree:
    nodes: list[DeviceNode]
    base: Arbiter
    io: IoManager
    fixed: list[str] = field(default_factory=list)     # what was kept clear of, for the report


def _legacy_path(service: str, counts: dict[str, int]) -> str:
    n = counts.get(service, 0)
    counts[service] = n + 1
    return f"Root\\LEGACY_{service.upper()}\\{n:04d}"


def build_tree(spec: MachineSpec, hal: Hal, layout: Layout, registry: Registry) -> Tree:
    """The device tree of a machine after its firmware (module docstring)."""
    io = IoManager(registry, hal)
    io.report_hal_resources(hal.HalReportResourceUsage())
    nodes: list[DeviceNode] = []
    counts: dict[str, int] = {}
    owned: set[str] = set()                      # layout owners whose decode belongs to a node
    pci_nodes: dict[tuple[int, int, int], DeviceNode] = {}
    # PCI functions with BARs.
    for fn in layout.pci:
        if not any(b.base is not None for b in fn.bars):
            continue
        requirements, boot = hal.slot_configuration(fn.bus, slot_number(fn.slot, fn.function))
        name = fn.qdev_id or fn.bdf
        # What the function decodes beside its BARs (a VGA's legacy ports and window) is
        # part of every configuration it can have: two such functions over one range
        # cannot both be placed (they were kept clear of, each unchecked against the other).
        legacy = _legacy_decodes(spec, fn, layout)
        if legacy:
            requirements, boot = _with_legacy(requirements, boot, legacy)
            owned.add(fn.qdev_id)
            # its legacy regions registered without an owner (a PCI IDE's channels), as an ISA node's
            owned.update(next(d for d in spec.devices if d.id == fn.qdev_id).model.ownerless_regions)
        node = DeviceNode(f"PCI\\VEN_{fn.vendor:04X}&DEV_{fn.device:04X}\\"
                          f"BUS_{fn.bus:02X}&DEV_{fn.slot:02X}&FUNC_{fn.function}", name,
                          {ConfigType.BASIC: requirements}, movable=True,
                          description=fn.description or name,
                          extra={"bus": "pci", "bdf": fn.bdf, "key": (fn.bus, fn.slot, fn.function),
                                 "bars": [(b.index, b.kind, b.size, b.base) for b in fn.bars],
                                 "legacy": legacy})
        if boot is not None:
            node.configs[ConfigType.BOOT] = boot
        model_driver = _spec_driver(spec, fn.qdev_id)
        node.driver = model_driver(io, hal) if model_driver else None
        pci_nodes[node.extra["key"]] = node
        nodes.append(node)
    # ISA devices of the machine file.  One with nothing to set (pc-testdev, ib700) is a
    # node too, with its one hard-wired configuration: two of them over the same ports
    # make the set unsatisfiable, as they are, instead of both being kept clear of.
    for dev in spec.devices:
        if dev.model.bus != "isa":
            continue
        if not dev.model.settings:
            # What an ISA card can decode; beyond (pc-testdev's MMIO page near 4 GiB, which
            # no ISA bus translates) is kept clear of, below.
            ranges = [r for r in dev.decoded_resources() if not (r[0] == "memory" and r[2] > ISA_MEMORY_LIMIT)]
            node = DeviceNode(_legacy_path(dev.model.name.replace("-", "_"), counts), dev.id,
                              _hardwired(ranges), movable=False, description=dev.model.description,
                              extra={"bus": "fixed", "device": dev.id, "model": dev.model.name})
            nodes.append(node)
            owned.add(dev.id)
            owned.update(dev.model.ownerless_regions)
            continue
        settings = dict(dev.settings)
        boot = CM_RESOURCE_LIST.single(Isa, 0, *(_isa_partials(*r) for r in dev.decoded_resources()))
        driver_cls = DRIVERS.get(dev.model.nt_driver) if dev.model.nt_driver else None
        service = driver_cls.service_name if driver_cls else dev.model.name.replace("-", "_")
        node = DeviceNode(_legacy_path(service, counts), dev.id,
                          {ConfigType.BASIC: isa_requirements(dev.model, settings), ConfigType.BOOT: boot},
                          driver=driver_cls(io, hal) if driver_cls else None, movable=False,
                          description=dev.model.description,
                          extra={"bus": "isa", "device": dev.id, "model": dev.model.name, "settings": settings})
        nodes.append(node)
        owned.add(dev.id)
        owned.update(dev.model.ownerless_regions)   # its own regions, registered without an owner
    # What detection finds that the file does not configure: a board controller.
    detected = HardwareDetector(hal.bus, hal).detect()
    isa_bases = {n.extra["settings"].get("iobase") for n in nodes if n.extra.get("bus") == "isa"}
    decoded = hal.bus.decoded_ranges()
    for c in detected.controllers:
        if c.base in isa_bases:
            continue
        spans = [s for s in decoded if s.space == "io" and s.function is None and s.owner not in owned
                 and any(s.start <= start + length - 1 and start <= s.end for start, length in c.ports)]
        owners = sorted({s.owner for s in spans if s.owner})
        board = [d for d in layout.isa if (d.id or d.path) in owners]
        if len(board) != 1:
            continue
        dev = board[0]
        ranges = [("port", s.start, s.end) for s in decoded if s.space == "io" and s.owner == (dev.id or dev.path)]
        # and what it decodes but lost to a device mapped later (a board FDC moved by
        # `builtin` to 0x371 loses 0x376 to the IDE): hard-wired there too, so the loss is
        # a conflict of the set, not a port nobody needs
        ranges += [("port", s.start, s.end) for s in layout.shadowed
                   if s.space == "io" and s.owner == (dev.id or dev.path)]
        ranges += [("irq", v, v) for k, v in sorted(dev.properties.items()) if IRQ_PROPERTY_MARK in k and v >= 0]
        ranges += [("dma", v, v) for k, v in sorted(dev.properties.items())
                   if k.startswith(DMA_PROPERTY_PREFIX) and 0 <= v <= 7]
        node = DeviceNode(_legacy_path(c.kind, counts), f"{c.kind}@{c.base:#x}", _hardwired(ranges),
                          movable=False, description=f"{c.kind} found by detection ({dev.type} on the board)",
                          extra={"bus": "board", "qemu": dev.id or dev.path})
        nodes.append(node)
        owned.add(dev.id or dev.path)
    for i, node in enumerate(nodes):
        node.extra["pdo"] = f"\\Device\\{i + 1:08X}"
        pnp.query_configurations(node)
    # The fixed ranges a PCI device decodes beside its BARs (a VGA's legacy ports and
    # window) are kept clear of as its model decodes them, not only as much as the flat
    # view shows (a device realized later over them hides part of them there); a device
    # whose legacy decodes reach no CPU (a VGA behind a bridge without the VGA enable)
    # pins nothing.
    pinned = {dev.id: dev.decoded_resources() for dev in spec.devices
              if dev.model.pci is not None and dev.decoded_resources() and dev.id not in owned
              and _reaches_cpu(dev, layout)}
    pinned.update({dev.id: beyond for dev in spec.devices if dev.model.bus == "isa" and not dev.model.settings
                   for beyond in [[r for r in dev.decoded_resources() if r[0] == "memory" and r[2] > ISA_MEMORY_LIMIT]]
                   if beyond})
    base, fixed = _fixed_claims(io.arbiter, hal, layout, decoded, owned, pci_nodes, pinned)
    fixed += _board_claims(base, spec, hal, nodes)
    _bridge_windows(nodes, hal, layout)
    return Tree(nodes, base, io, fixed)


def _reaches_cpu(dev: DeviceSpec, layout: Layout) -> bool:
    """Whether a machine-file PCI device's fixed decodes (a VGA's legacy ranges) reach the
    CPU somewhere (:func:`~harness.claimants.forwarded_legacy`); a device the firmware's
    layout lacks keeps its model's."""
    try:
        fn = layout.pci_by_id(dev.id)
    except KeyError:
        return True
    return bool(forwarded_legacy(dev, fn, layout))


def _legacy_decodes(spec: MachineSpec, fn: Any, layout: Layout) -> list[tuple[str, int, int]]:
    """The fixed ports and memory the machine file's PCI function ``fn`` decodes beside
    its BARs where the CPU reaches them (:func:`~harness.claimants.forwarded_legacy`), and
    the ISA lines its model says it raises (a compatibility IDE's 14 and 15); [] for a
    board function or a device without."""
    dev = next((d for d in spec.devices if d.id == fn.qdev_id), None)
    if dev is None:
        return []
    return forwarded_legacy(dev, fn, layout) + [r for r in dev.decoded_resources() if r[0] == "irq"]



def _with_legacy(requirements: IO_RESOURCE_REQUIREMENTS_LIST, boot: CM_RESOURCE_LIST | None,
                 legacy: list[tuple[str, int, int]]) -> tuple[IO_RESOURCE_REQUIREMENTS_LIST, CM_RESOURCE_LIST | None]:
    """A PCI function's requirements and boot configuration with its fixed legacy decodes
    in every alternative (after the BARs, which HalAssignSlotResources places in order)."""
    fixed = tuple(_fixed_requirement(*r) for r in legacy)
    requirements = dataclasses.replace(requirements, lists=tuple(
        dataclasses.replace(alt, descriptors=(*alt.descriptors, *fixed)) for alt in requirements.lists))
    if boot is not None:
        full = boot.descriptors[0]
        boot = CM_RESOURCE_LIST.single(full.interface_type, full.bus_number, *full.partials,
                                       *(_isa_partials(*r) for r in legacy))
    return requirements, boot


def _bars_only(node: DeviceNode, resources: CM_RESOURCE_LIST) -> CM_RESOURCE_LIST:
    """The part of a PCI node's assignment HalAssignSlotResources programs: its BARs, not
    the fixed legacy decodes (:func:`_with_legacy`) that ride along in the claim."""
    legacy = len(node.extra.get("legacy", ()))
    if not legacy:
        return resources
    full = resources.descriptors[0]
    return CM_RESOURCE_LIST.single(full.interface_type, full.bus_number, *full.partials[:-legacy])


def _hardwired(ranges: list[tuple[str, int, int]]) -> dict[ConfigType, Any]:
    """The configurations of a node that cannot move: ``ranges`` ((kind, first, last)) as
    it decodes them now and as its one hard-wired requirement."""
    return {ConfigType.BOOT: CM_RESOURCE_LIST.single(Isa, 0, *(_isa_partials(*r) for r in ranges)),
            ConfigType.BASIC: IO_RESOURCE_REQUIREMENTS_LIST(Isa, 0, 0, (with_priority(
                LCPRI_HARDWIRED, *(_fixed_requirement(*r) for r in ranges)),))}


def _board_claims(base: Arbiter, spec: MachineSpec, hal: Hal, nodes: list[DeviceNode]) -> list[str]:
    """The board devices' claimed ranges and lines (device_models/boards), kept clear of even where
    a machine-file device has taken them over in QEMU's map (an isa-ide over the PIIX3's
    channel): ranges of PCI functions (their nodes move them) and of the board
    controllers detection made nodes of are left to those nodes."""
    taken = {(p.start, p.start + p.length - 1) for n in nodes if n.extra.get("bus") == "board"
             for _, p in n.configs[ConfigType.BOOT].partials() if isinstance(p, Port)}
    out = []
    for resolved in resolve_board(spec.machine, hal, spec.builtin):
        device = resolved.device
        if device.claimant is None or device.bars:
            continue
        who = Owner(device.label)   # named as every report names a board device (board:ide-legacy)
        claims = [range_claim(who, "io" if kind == "port" else "memory", first, last)
                  for kind, first, last in resolved.decoded if kind in ("port", "memory")
                  and not any(a <= last and first <= b for a, b in taken)]
        if claims:   # its lines too, unless detection made a node of it
            claims += [Claim(who, ResourceKind.INTERRUPT if kind == "irq" else ResourceKind.DMA, first, first,
                             _isa_partials(kind, first, first))
                       for kind, first, _ in resolved.decoded if kind in ("irq", "dma")]
        if claims:
            base.replace(who, claims)
            out.append(f"{device.label}: " + ", ".join(f"{c.kind.value} {c.start:#x}-{c.end:#x}"
                                                             for c in claims[:4])
                       + (f" (+{len(claims) - 4})" if len(claims) > 4 else ""))
    return out


def _spec_driver(spec: MachineSpec, qdev_id: str | None) -> Any:
    for dev in spec.devices:
        if dev.id == qdev_id and dev.model.nt_driver:
            return DRIVERS.get(dev.model.nt_driver)
    return None


def _fixed_claims(hal_claims: Arbiter, hal: Hal, layout: Layout, decoded: list, owned: set[str],
                  pci_nodes: dict[tuple[int, int, int], DeviceNode],
                  pinned: dict[str, list[tuple[str, int, int]]]) -> tuple[Arbiter, list[str]]:
    """The arbiter the search starts from: the HAL's claims, plus what the platform
    decodes for devices that are not nodes (a PCI node's own BARs and an ISA node's own
    ports excluded) and all that ``pinned`` devices decode, board ISA devices' IRQ and
    DMA lines, the legacy IDE lines."""
    base = Arbiter()
    fixed = []
    for owner in hal_claims.owners():
        base.replace(owner, hal_claims.claims(owner))
        fixed.append(f"{owner}: {len(hal_claims.claims(owner))} claim(s)")
    by_owner: dict[str, list[Claim]] = {}
    for s in decoded:
        if s.owner in owned:
            continue
        if s.function in pci_nodes and _inside_bars(s, pci_nodes[s.function]):
            continue
        if s.function is None and s.space != "io" and any(_inside_bars(s, n) for n in pci_nodes.values()):
            continue  # memory a device maps into its own BAR with no owner (vmsvga.fifo, an ivshmem backend)
        who = Owner("<decoded by the hardware>", s.owner or "?")
        by_owner.setdefault(s.owner or "?", []).append(
            range_claim(who, "io" if s.space == "io" else "memory", s.start, s.end))
    for name, ranges in pinned.items():
        who = Owner("<decoded by the hardware>", name)
        by_owner[name] = [range_claim(who, "io" if kind == "port" else kind, first, last)
                          for kind, first, last in ranges if kind in ("port", "memory")]
    for name, claims in sorted(by_owner.items()):
        base.replace(claims[0].owner, claims)
        fixed.append(f"{name}: " + ", ".join(f"{c.kind.value} {c.start:#x}-{c.end:#x}" for c in claims[:4])
                     + (f" (+{len(claims) - 4})" if len(claims) > 4 else ""))
    lines: list[tuple[str, str, int]] = []
    for dev in layout.isa:
        name = dev.id or dev.path
        if name in owned:
            continue
        for key, value in sorted(dev.properties.items()):
            if IRQ_PROPERTY_MARK in key and value >= 0:
                lines.append((f"{dev.type} {key}", "irq", value))
            elif key.startswith(DMA_PROPERTY_PREFIX) and 0 <= value <= 7:
                lines.append((f"{dev.type} {key}", "dma", value))
    for port, irq in LEGACY_IDE_IRQS.items():
        if any(s.space == "io" and s.start <= port <= s.end and s.owner not in owned for s in decoded):
            lines.append((f"legacy IDE at {port:#x}", "irq", irq))
    for what, kind, value in lines:
        who = Owner("<board line>", what)
        partial = _isa_partials(kind, value, value)
        rkind = ResourceKind.INTERRUPT if kind == "irq" else ResourceKind.DMA
        base.replace(who, [Claim(who, rkind, value, value, partial)])
        fixed.append(f"{what}: {kind} {value}")
    return base, fixed


def _inside_bars(span: Any, node: DeviceNode) -> bool:
    space = "io" if span.space == "io" else "memory"
    return any(kind == space and base is not None and base <= span.start and span.end <= base + size - 1
               for _, kind, size, base in node.extra["bars"])


def _bridge_windows(nodes: list[DeviceNode], hal: Hal, layout: Layout) -> None:
    """A PCI device keeps clear of the windows of bridges it is not behind (those
    addresses are forwarded to the other bus)."""
    bridges = [fn for fn in layout.pci if fn.bridge is not None]
    for node in nodes:
        if node.extra.get("bus") != "pci":
            continue
        bus = node.extra["key"][0]
        avoid = []
        for br in bridges:
            if br.bridge.secondary <= bus <= br.bridge.subordinate:
                continue
            for name, ranges in hal.bridge_windows(br.bus, br.slot, br.function).items():
                for lo, hi in ranges:
                    who = Owner("<bridge window>", f"{br.qdev_id or br.bdf} {name}")
                    avoid.append(range_claim(who, "io" if name == "io" else "memory", lo, hi))
        node.avoid = tuple(avoid)


# ---------------------------------------------------------------------------------------
# Reports


@dataclass
class BarComparison:
    device: str
    bar: str
    seabios: str
    assigned: str
    same: bool
    explanation: str


@dataclass
class ApplyResult:
    relaunched: bool
    changes: list[str]
    programmed: list[str]
    reconciliation: Reconciliation
    claims: int

    @property
    def blocking(self) -> list[Finding]:
        """Findings that contradict a conflict-free assignment: every hardware conflict
        and every row finding, except a claim the right device decodes only in part (a
        BAR larger than the registers behind it, e.g. the bridge's SHPC) and a model's
        fixed decode no bridge forwards (not-forwarded: nothing there to assign)."""
        rec = self.reconciliation
        out = [f for row in rec.rows for f in row.findings if f.explanation != NOT_FORWARDED
               and not (f.explanation == NOT_PRESENT and row.cells.get("qemu") not in ("nothing", ABSENT))]
        return out + rec.conflicts

    @property
    def notes(self) -> list[Finding]:
        blocking = self.blocking
        return [f for f in self.reconciliation.findings if f not in blocking]

    @property
    def proved(self) -> bool:
        return not self.blocking

    def to_dict(self) -> dict[str, Any]:
        return {"relaunched": self.relaunched, "changes": self.changes, "programmed": self.programmed,
                "claims_checked": self.claims, "proved": self.proved,
                "findings": [dataclasses.asdict(f) for f in self.blocking],
                "notes": [dataclasses.asdict(f) for f in self.notes]}


@dataclass
class PnpReport:
    spec: MachineSpec
    nodes: list[DeviceNode]
    solution: pnp.Solution
    core: pnp.Core | None
    changes: dict[str, dict[str, tuple[Any, Any]]]
    bars: list[BarComparison]
    fixed: list[str]
    timings: dict[str, float]
    applied: ApplyResult | None = None
    #: What the registry holds for each device with a problem (``Enum\...\Control``).
    registry_lines: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[DeviceNode]:
        return [n for n in self.nodes if n.problem]

    @property
    def exit_code(self) -> int:
        if not self.solution.satisfiable:
            return 1
        return 0 if self.applied is None or self.applied.proved else 1

    def to_dict(self) -> dict[str, Any]:
        sol = self.solution
        return {
            "machine": self.spec.name, "source": self.spec.source, "satisfiable": sol.satisfiable,
            "order": sol.order,
            "search": {"placements": sol.stats.nodes, "backtracks": sol.stats.backtracks,
                       "pruned": sol.stats.pruned, "seconds": round(sol.stats.seconds, 4)},
            "devices": [_node_dict(n, sol) for n in self.nodes],
            "core": None if self.core is None else {"devices": self.core.devices, "kind": self.core.kind,
                                                    "checks": self.core.checks},
            "isa_changes": {d: {p: [o, n] for p, (o, n) in c.items()} for d, c in self.changes.items()},
            "seabios": [dataclasses.asdict(b) for b in self.bars],
            "kept_clear_of": self.fixed,
            "applied": None if self.applied is None else self.applied.to_dict(),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "exit_code": self.exit_code,
        }

    def format_text(self) -> str:
        sol = self.solution
        out = [f"machine {self.spec.name}: {len(self.nodes)} device node(s)", "", "Device tree"]
        for n in self.nodes:
            have = ", ".join(f"{k.label}" + (f"[{len(v.lists)}]" if k.is_requirements else "")
                             for k, v in n.configs.items() if k is not ConfigType.ALLOC)
            out.append(f"  {n.name:<22} {pnp.enum_key(n)[len(pnp.ENUM) + 1:]}  ({have})")
        out += ["", f"Search: {sol.stats.nodes} placement(s), {sol.stats.backtracks} backtrack(s), "
                    f"{sol.stats.pruned} pruned, {sol.stats.seconds * 1000:.1f} ms; order "
                    + ", ".join(sol.order)]
        if self.core is not None:
            out += ["", f"No conflict-free assignment exists.  {self.core.kind.capitalize()} set of devices "
                        f"that cannot be satisfied together ({self.core.checks} checks):",
                    *(f"  {d}" for d in self.core.devices)]
        if self.problems:
            out += ["", "Device problems (the devices that get no resources; the others are assigned below)"]
            out += [f"  {n.name:<22} {pnp.problem_name(n.problem)} (Code {n.problem}): {n.problem_detail}"
                    for n in self.problems]
            out += [f"  {line}" for line in self.registry_lines]
        out += ["", "Assignment"]
        for n in self.nodes:
            c = sol.choices.get(n.name)
            if c is None:
                out.append(f"  {n.name:<22} none ({pnp.problem_name(n.problem)})")
                continue
            out.append(f"  {n.name:<22} {c.candidate.describe()}: {pnp.describe_resources(c.resources)}")
            for cand, conflicts in sol.refused.get(n.name, []):
                out.append(f"  {'':<22}   not {cand.describe()}: {pnp.describe_conflicts(conflicts, nodes=self.nodes)}")
        if self.problems:
            return "\n".join(out) + "\n"
        out += ["", "ISA settings to change (QEMU cannot move them while it runs: relaunch)"]
        out += [f"  {line}" for line in change_lines(self.spec, self.changes)] or ["  none"]
        out += ["", "PCI BARs: SeaBIOS (post-firmware) against the assignment"]
        out += [f"  {'same' if b.same else 'MOVED'} {b.device} {b.bar}: SeaBIOS {b.seabios}, assigned {b.assigned}"
                f" — {b.explanation}" for b in self.bars] or ["  no PCI BARs"]
        if self.applied is not None:
            a = self.applied
            out += ["", "Applied to the live machine"]
            out.append("  relaunched QEMU with the new ISA settings" if a.relaunched
                       else "  no relaunch needed: every ISA device keeps its settings")
            out += [f"  {line}" for line in a.changes]
            out += [f"  programmed {line}" for line in a.programmed]
            out.append(f"  reconciliation ({a.claims} ResourceMap claim(s) against QEMU's decode): "
                       + ("conflict-free on the machine" if a.proved else
                          f"{len(a.blocking)} finding(s) against the assignment"))
            out += [f"    ! {f.device} {f.resource} [{f.view}] {f.explanation}: {f.reason}" for f in a.blocking]
            out += [f"    - note: {f.device} {f.resource}: {f.reason} (decoded in part by its device)"
                    for f in a.notes]
        return "\n".join(out) + "\n"


def change_lines(spec: MachineSpec, changes: dict[str, dict[str, tuple]]) -> list[str]:
    """One line per moved ISA device: each setting's old and new value."""
    return [f"{d}: " + ", ".join(f"{p} {_fmt(o, spec.device(d).model.properties[p].kind)} -> "
                                 f"{_fmt(v, spec.device(d).model.properties[p].kind)}" for p, (o, v) in c.items())
            for d, c in changes.items()]


def _fmt(value: Any, kind: str) -> str:
    """A setting as people write it: ports and addresses in hex, line numbers in decimal."""
    return f"{value:#x}" if isinstance(value, int) and (value > 0xFF or kind == "port") else str(value)


def _node_dict(n: DeviceNode, sol: pnp.Solution) -> dict[str, Any]:
    c = sol.choices.get(n.name)
    return {"name": n.name, "instance": n.instance_path, "movable": n.movable,
            "configs": sorted(k.value for k in n.configs),
            "assigned": None if c is None else pnp.describe_resources(c.resources),
            "candidate": None if c is None else c.candidate.describe(),
            "rank": None if c is None else c.rank,
            "problem": n.problem, "problem_name": pnp.problem_name(n.problem) if n.problem else None,
            "problem_detail": n.problem_detail or None}


def problem_registry_lines(registry: Registry, nodes: list[DeviceNode]) -> list[str]:
    """Each problem device's ``Control`` values as the registry holds them."""
    out = []
    for n in nodes:
        if n.problem:
            control = f"{pnp.enum_key(n)}\\{pnp.CONTROL}"
            values = ", ".join(f"{v.name} = {v.value:#x}" for v in registry.values(control)
                               if v.name in (pnp.PROBLEM_VALUE, pnp.STATUS_VALUE))
            out.append(f"registry: {control[len(pnp.ENUM) + 1:]}: {values}")
    return out


def compare_seabios(nodes: list[DeviceNode], solution: pnp.Solution) -> list[BarComparison]:
    """Each PCI BAR where SeaBIOS put it against where the assignment puts it; a
    difference is explained by what held SeaBIOS's place in the search's record."""
    out = []
    for n in nodes:
        if n.extra.get("bus") != "pci" or n.name not in solution.choices:
            continue
        choice = solution.choices[n.name]
        placed = [p for _, p in choice.resources.partials() if isinstance(p, (Port, Memory))]
        bars = sorted((b for b in n.extra["bars"]), key=lambda b: b[0])
        boot_refusal = next((conflicts for cand, conflicts in solution.refused.get(n.name, [])
                             if cand.source is ConfigType.BOOT), None)
        for (index, kind, size, base), partial in zip(bars, placed):
            fw = "unassigned" if base is None else f"{base:#x}-{base + size - 1:#x}"
            mine = f"{partial.start:#x}-{partial.start + partial.length - 1:#x}"
            same = base == partial.start
            if same:
                why = "the firmware's place is the boot configuration (LCPRI_BOOTCONFIG) and nothing holds it"
            elif base is None:
                why = "SeaBIOS left it unassigned; the assignment places it in its bus window"
            elif boot_refusal is not None:
                why = ("SeaBIOS does not know what else needs it: " + pnp.describe_conflicts(boot_refusal, nodes=nodes)
                       + f"; placed by {choice.candidate.describe()}")
            else:
                why = f"another BAR of the function had to move; placed by {choice.candidate.describe()}"
            out.append(BarComparison(n.name, f"BAR{index} {kind} size {size:#x}", fw, mine, same, why))
    return out


def isa_changes(nodes: list[DeviceNode], solution: pnp.Solution, spec: MachineSpec) -> dict[str, dict[str, tuple]]:
    out: dict[str, dict[str, tuple]] = {}
    for n in nodes:
        if n.extra.get("bus") != "isa":
            continue
        dev = spec.device(n.extra["device"])
        wanted = settings_of(dev.model, solution.resources(n.name), dict(dev.settings))
        diff = {k: (dev.settings.get(k), v) for k, v in wanted.items() if dev.settings.get(k) != v}
        if diff:
            out[n.name] = diff
    return out


def respec(spec: MachineSpec, changes: dict[str, dict[str, tuple]]) -> MachineSpec:
    """The machine with the chosen ISA settings (explicit in the new spec)."""
    devices = []
    for dev in spec.devices:
        diff = changes.get(dev.id)
        if diff:
            settings = dict(dev.settings, **{k: new for k, (_, new) in diff.items()})
            dev = dataclasses.replace(dev, settings=MappingProxyType(settings),
                                      explicit=dev.explicit | frozenset(diff))
        devices.append(dev)
    return dataclasses.replace(spec, devices=tuple(devices), expect="clean")


# ---------------------------------------------------------------------------------------
# Running it


def run_pnp(spec: MachineSpec, *, apply: bool = False, budget: int = pnp.DEFAULT_NODE_BUDGET,
            timeout: float = pnp.DEFAULT_TIMEOUT, keep: bool = False) -> PnpReport:
    """Boot, build the tree, solve (or find the core), compare with SeaBIOS and, with
    ``apply``, make it so on a live machine and reconcile (module docstring)."""
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    with Machine(spec, keep=keep) as machine:
        machine.run_firmware()
        timings["boot+firmware"] = time.monotonic() - t0
        t = time.monotonic()
        hal = Hal(LiveBus(machine))
        layout = snapshot(machine, "post-firmware")
        registry = Registry()
        try:
            tree = build_tree(spec, hal, layout, registry)
            timings["tree"] = time.monotonic() - t
            t = time.monotonic()
            solution = pnp.solve(tree.nodes, tree.base, budget=budget, timeout=timeout)
            timings["solve"] = time.monotonic() - t
            core = None
            if not solution.satisfiable:
                t = time.monotonic()
                core = pnp.unsatisfiable_core(tree.nodes, tree.base, budget=budget, timeout=timeout)
                timings["core"] = time.monotonic() - t
            t = time.monotonic()
            solution = pnp.assign(tree.nodes, tree.base, translate=pnp.hal_translator(hal), solution=solution,
                                  budget=budget, timeout=timeout)
            timings["problems"] = time.monotonic() - t
            if not solution.satisfiable:   # device problems: file them, apply nothing
                for n in tree.nodes:
                    if n.name in solution.choices:
                        n.configs[ConfigType.ALLOC] = solution.resources(n.name)
                    pnp.store_node(registry, n)
                report = PnpReport(spec, tree.nodes, solution, core, {}, [], tree.fixed, timings)
                report.registry_lines = problem_registry_lines(registry, tree.nodes)
                return report
            changes = isa_changes(tree.nodes, solution, spec)
            report = PnpReport(spec, tree.nodes, solution, None, changes,
                               compare_seabios(tree.nodes, solution), tree.fixed, timings)
            if apply and not changes:
                t = time.monotonic()
                report.applied = apply_on(machine, spec, tree.nodes, solution, relaunched=False, changes=[])
                timings["apply"] = time.monotonic() - t
        finally:
            registry.close()
    if apply and report.applied is None:
        t = time.monotonic()
        new_spec = respec(spec, changes)
        lines = change_lines(spec, changes)
        with Machine(new_spec, keep=keep) as machine:
            machine.run_firmware()
            report.applied = apply_on(machine, new_spec, tree.nodes, solution, relaunched=True, changes=lines)
        timings["relaunch+apply"] = time.monotonic() - t
    timings["total"] = time.monotonic() - t0
    return report


class _Assigned:
    """HalAssignSlotResources' allocator during apply: the assignment for that slot, after
    checking it fits the requirements the HAL built on this machine."""

    def __init__(self, by_slot: dict[tuple[int, int], CM_RESOURCE_LIST]) -> None:
        self.by_slot = by_slot

    def IoAssignResources(self, RegistryPath: str, DriverClassName: str | None, DriverObject: Any,
                          DeviceObject: Any, RequestedResources: IO_RESOURCE_REQUIREMENTS_LIST,
                          ) -> tuple[NTSTATUS, CM_RESOURCE_LIST | None]:
        req = RequestedResources
        chosen = self.by_slot.get((req.bus_number, req.slot_number))
        if chosen is None:
            return NTSTATUS.STATUS_CONFLICTING_ADDRESSES, None
        return NTSTATUS.STATUS_SUCCESS, chosen


def apply_on(machine: Machine, spec: MachineSpec, nodes: list[DeviceNode], solution: pnp.Solution, *,
             relaunched: bool, changes: list[str]) -> ApplyResult:
    """Program the PCI assignment through the HAL, file every node's configurations and
    claims, and reconcile against a fresh snapshot."""
    hal = Hal(LiveBus(machine))
    registry = Registry()
    try:
        io = IoManager(registry, hal)
        io.report_hal_resources(hal.HalReportResourceUsage())
        pci = [n for n in nodes if n.extra.get("bus") == "pci"]
        by_slot = {(n.extra["key"][0], slot_number(*n.extra["key"][1:])): _bars_only(n, solution.resources(n.name))
                   for n in pci}
        # Moving BARs one by one could briefly overlap one not moved yet: decode off first.
        for n in pci:
            if solution.resources(n.name) != n.get(ConfigType.BOOT):
                bus, dev, fn = n.extra["key"]
                command = int.from_bytes(hal.bus.read_config(bus, dev, fn, 4, 2), "little")
                hal.bus.write_config(bus, dev, fn, 4, (command & ~0x3).to_bytes(2, "little"))
        hal.allocator = _Assigned(by_slot)
        programmed = []
        for n in pci:
            bus, dev, fn = n.extra["key"]
            status, assigned = hal.HalAssignSlotResources(f"PnpManager\\{n.name}", pnp.PNP_RESOURCE_CLASS,
                                                          None, None, PCIBus, bus, slot_number(dev, fn))
            if not NT_SUCCESS(status):
                raise PnpLiveError(f"HalAssignSlotResources for {n.name} returned {NTSTATUS(status).name}")
            programmed.append(f"{n.name} ({n.extra['bdf']}): {pnp.describe_resources(assigned)}")
        for n in nodes:
            n.configs[ConfigType.ALLOC] = solution.resources(n.name)
            pnp.store_node(registry, n)
            io.record_assignment(n.owner, solution.resources(n.name))
        hardware = routed_view(snapshot(machine, "post-pnp"), hal)
        claims = resource_map_claims(registry)
        mine = [c for c in claims if c.owner.startswith(pnp.PNP_RESOURCE_CLASS)]
        rec = reconcile(spec, hardware, claims=mine)
        return ApplyResult(relaunched, changes, programmed, rec, len(mine))
    finally:
        registry.close()


def report_json(report: PnpReport) -> str:
    return json.dumps(report.to_dict(), indent=1)


__all__ = ["run_pnp", "build_tree", "apply_on", "compare_seabios", "isa_requirements", "settings_of",
           "respec", "PnpReport", "ApplyResult", "BarComparison", "Tree", "PnpLiveError"]
