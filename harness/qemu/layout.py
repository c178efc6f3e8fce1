"""The layout snapshot: what the emulated hardware really decodes, at one phase.

Sources, all read on a paused machine:

* ``query-pci`` (every function, behind every bridge the firmware has numbered), plus
  each function's command register and the chipset's PIRQ routing registers read through
  0xCF8/0xCFC, and the ELCR (edge/level per IRQ);
* QOM for ISA devices and their resource properties (iobase, irq, dma, ...);
* ``info mtree -f -o``: the flat I/O-port and memory maps QEMU dispatches, each range
  attributed to its owning device;
* ``info mtree -o``: the tree with every region, hidden ones included, from which the
  *shadowed* ranges are computed (a decoding region whose ports the flat view gives to
  another owner: QEMU never refuses ISA overlaps; the higher priority wins, and among
  equal priorities the region mapped last, port by port).  Containers (regions that
  only hold subregions, such as the PIIX4 PM block or a BAR container) decode nothing
  themselves and never count as shadowed.

A :class:`Layout` is plain data: JSON round-trips, stable ordering so two snapshots diff
cleanly, and it is labelled with the phase (``pre-firmware``, ``post-firmware``, later
``post-os``) so every difference is attributed to the right actor.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Iterable, Mapping, Sequence

from ..names import memdev_backend_id
from .bus import PortChannel, machine_ports
from .qomfacts import ISA_FACT_QUERIES, PCI_TYPES_QUERY, QOM_CONTAINERS, parse_qom_tree

SCHEMA_VERSION = 1
PHASES = ("pre-firmware", "post-firmware", "post-pnp", "post-drivers", "post-os")
UNASSIGNED = 0xFFFFFFFFFFFFFFFF  # query-pci's address of a BAR the firmware has not set
#: QOM properties that carry ISA resources.
ISA_RESOURCE_PROPERTIES = ("iobase", "iobase2", "ioport", "iosize", "irq", "dma", "dma16",
                           "index", "kbd-irq", "mouse-irq")
#: The ISA resource properties naming an interrupt line (the i8042 has two).
ISA_IRQ_PROPERTIES = ("irq", "kbd-irq", "mouse-irq")
#: Where the PCI-to-ISA bridge keeps its PIRQ route registers (link -> config offset).
PIRQ_REGISTERS = {
    "pc": ((0, 1, 0), {"A": 0x60, "B": 0x61, "C": 0x62, "D": 0x63}),  # PIIX3
    "q35": ((0, 0x1F, 0), {"A": 0x60, "B": 0x61, "C": 0x62, "D": 0x63,  # ICH9 LPC
                           "E": 0x68, "F": 0x69, "G": 0x6A, "H": 0x6B}),
}
ELCR_PORTS = (0x4D0, 0x4D1)
#: A PCI IDE controller in compatibility mode decodes the legacy channels and drives the
#: ISA lines wired to them: primary 0x1f0 → IRQ 14, secondary 0x170 → IRQ 15.
LEGACY_IDE_IRQS = {0x1F0: 14, 0x170: 15}


@dataclass(frozen=True)
class Bar:
    index: int  # 0-5; 6 is the expansion ROM
    kind: str  # "io", "memory" or "rom"
    base: int | None  # None: not assigned (query-pci reports -1)
    size: int
    is_64bit: bool = False
    prefetchable: bool = False

    @property
    def end(self) -> int | None:
        return None if self.base is None else self.base + self.size - 1


@dataclass(frozen=True)
class Window:
    base: int
    limit: int

    @property
    def enabled(self) -> bool:
        return self.base <= self.limit


@dataclass(frozen=True)
class BridgeInfo:
    secondary: int
    subordinate: int
    io: Window | None
    memory: Window | None
    prefetchable: Window | None


@dataclass(frozen=True)
class PciFunction:
    bus: int
    slot: int
    function: int
    vendor: int
    device: int
    subsystem_vendor: int
    subsystem: int
    class_code: int
    description: str
    header_type: int  # 0 device, 1 PCI-to-PCI bridge
    command: int
    interrupt_pin: int  # 0 none, 1 INTA .. 4 INTD
    interrupt_line: int | None  # config 0x3C as query-pci reports it (only a hint)
    qdev_id: str
    bars: tuple[Bar, ...]
    bridge: BridgeInfo | None = None

    @property
    def bdf(self) -> str:
        return f"{self.bus:02x}:{self.slot:02x}.{self.function}"


@dataclass(frozen=True)
class PirqRouting:
    chipset: str  # "piix3" or "ich9"
    routes: dict[str, int | None]  # link letter -> ISA IRQ, None when disabled (bit 7)
    raw: dict[str, int]


@dataclass(frozen=True)
class IsaDevice:
    path: str  # QOM path
    id: str | None  # the -device id, if it has one
    type: str
    properties: dict[str, int]


@dataclass(frozen=True)
class DecodedRange:
    space: str  # "io" or "memory"
    start: int
    end: int
    name: str  # memory region name
    owner: str | None  # device id, else QOM path of the owning device, else None
    owner_type: str | None
    priority: int
    kind: str  # "i/o", "ram", "rom", "romd"

    @property
    def label(self) -> str:
        """Who this range is as a winner: its owner, else its region's name without the
        flat view's offset into it (``pc.ram @00000000000c3000`` is ``pc.ram``: where
        SeaBIOS left its shadow read-only splits system RAM there, differently by end)."""
        return self.owner or self.name.split(" @")[0]


@dataclass(frozen=True)
class ShadowedRange:
    space: str
    start: int
    end: int
    name: str
    owner: str | None
    owner_type: str | None
    hidden_by: tuple[str, ...]  # the owner (or region name) that wins these addresses
    #: Why the winner wins, by QEMU's rules: "higher priority (1 over 0)", "mapped later
    #: (equal priority 0)", "a subregion inside it"; "" when the tree does not say.
    cause: str = ""

    def reason(self) -> str:
        """One clause: who wins these addresses, and why."""
        return f"{', '.join(self.hidden_by)} wins them" + (f" by {self.cause}" if self.cause else "")

    def winning_regions(self, layout: "Layout") -> list[DecodedRange]:
        """The regions of ``layout``'s flat map that answer here instead: :attr:`hidden_by`
        names a winner by its owner, or by its region name when it has none, and only the
        region tells which (an owner-less region may bear a machine-file id's name)."""
        return [r for r in (layout.io if self.space == "io" else layout.memory)
                if r.start <= self.end and self.start <= r.end and r.label in self.hidden_by]

    def device_winners(self, layout: "Layout", ids: Collection[str]) -> tuple[str, ...]:
        """The winners that are devices of ``ids`` (a machine file's), not owner-less
        regions of the same name."""
        regions = self.winning_regions(layout)
        return tuple(w for w in self.hidden_by if w in ids and (
            any(r.owner == w for r in regions)
            or not any(r.owner is None and r.label == w for r in regions)))


@dataclass(frozen=True)
class Layout:
    machine: str
    machine_type: str
    phase: str
    qemu_version: str
    accel: str
    pci: tuple[PciFunction, ...] = ()
    pirq: PirqRouting | None = None
    elcr: int | None = None  # bit n set: IRQ n is level-triggered
    isa: tuple[IsaDevice, ...] = ()
    io: tuple[DecodedRange, ...] = ()
    memory: tuple[DecodedRange, ...] = ()
    shadowed: tuple[ShadowedRange, ...] = ()
    schema: int = SCHEMA_VERSION

    # ------------------------------------------------------------ queries
    def pci_function(self, bdf: str) -> PciFunction:
        for fn in self.pci:
            if fn.bdf == bdf:
                return fn
        raise KeyError(bdf)

    def pci_by_id(self, qdev_id: str) -> PciFunction:
        for fn in self.pci:
            if fn.qdev_id == qdev_id:
                return fn
        raise KeyError(qdev_id)

    def isa_device(self, device_id: str) -> IsaDevice:
        for dev in self.isa:
            if dev.id == device_id:
                return dev
        raise KeyError(device_id)

    def ranges_of(self, owner: str, space: str = "io") -> list[DecodedRange]:
        return [r for r in (self.io if space == "io" else self.memory) if r.owner == owner]

    def owner_at(self, address: int, space: str = "io") -> DecodedRange | None:
        for r in (self.io if space == "io" else self.memory):
            if r.start <= address <= r.end:
                return r
        return None

    # ------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Layout":
        def window(w: dict[str, int] | None) -> Window | None:
            return Window(**w) if w else None

        def bridge(b: dict[str, Any] | None) -> BridgeInfo | None:
            if not b:
                return None
            return BridgeInfo(b["secondary"], b["subordinate"], window(b["io"]),
                              window(b["memory"]), window(b["prefetchable"]))

        pci = tuple(PciFunction(**{**f, "bars": tuple(Bar(**b) for b in f["bars"]),
                                   "bridge": bridge(f["bridge"])}) for f in data["pci"])
        pirq = PirqRouting(**data["pirq"]) if data.get("pirq") else None
        return cls(
            machine=data["machine"], machine_type=data["machine_type"], phase=data["phase"],
            qemu_version=data["qemu_version"], accel=data["accel"], pci=pci, pirq=pirq,
            elcr=data.get("elcr"),
            isa=tuple(IsaDevice(**d) for d in data["isa"]),
            io=tuple(DecodedRange(**r) for r in data["io"]),
            memory=tuple(DecodedRange(**r) for r in data["memory"]),
            shadowed=tuple(ShadowedRange(**{**s, "hidden_by": tuple(s["hidden_by"])})
                           for s in data["shadowed"]),  # "cause" is absent from older files: ""
            schema=data.get("schema", SCHEMA_VERSION))

    @classmethod
    def from_json(cls, text: str) -> "Layout":
        return cls.from_dict(json.loads(text))


# ---------------------------------------------------------------------- taking a snapshot
def snapshot(machine: Any, phase: str | None = None, *,
             monitor_reads_to: Callable[[dict[str, list["MtreeRegion"]], dict[str, list["MtreeRegion"]],
                                         list[dict[str, Any]] | None], None] | None = None) -> Layout:
    """Read the layout of a launched, paused :class:`~harness.qemu.machine.Machine`.
    ``monitor_reads_to`` is handed what the monitor answered (``info mtree -f -o`` and
    ``info mtree -o -D`` parsed, query-pci or None on isapc), so that a
    :meth:`LiveBus.adopt <harness.qemu.livebus.LiveBus.adopt>` on the same machine need
    not ask again."""
    phase = phase or machine.phase
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, not {phase!r}")
    reader = QomReader(machine)
    kind = machine.spec.machine
    # The monitor questions go out together, then every register read in one port transfer.
    flat_text, tree_text, *query_pci = reader.ask(
        [("human-monitor-command", {"command-line": "info mtree -f -o"}),
         ("human-monitor-command", {"command-line": "info mtree -o -D"}),  # -D: disabled regions
         *([("query-pci", None)] if kind != "isapc" else [])], static=False)  # the hardware now
    for answer in (flat_text, tree_text, *query_pci):
        if isinstance(answer, BaseException):
            raise answer
    functions = [(d["bus"], d["slot"], d["function"]) for b in (query_pci[0] if query_pci else [])
                 for d in walk_pci(b["devices"])]
    commands, pirq, elcr = _read_registers(machine, functions)
    pci = _read_pci(query_pci[0], commands) if query_pci else []
    flat, tree = parse_mtree_flat(flat_text), parse_mtree_tree(tree_text)
    elcr = _elcr_held(machine, flat.get("I/O", []), elcr)
    if monitor_reads_to is not None:
        monitor_reads_to(flat, tree, query_pci[0] if query_pci else None)
    devices = getattr(machine.spec, "devices", ())
    bars = {space: bar_ranges(query_pci[0] if query_pci else [], "io" if space == "I/O" else "memory")
            for space in {*flat, *tree}}
    flat = {space: own_ownerless(regions, devices, flat=True, bars=bars[space]) for space, regions in flat.items()}
    tree = {space: own_ownerless(regions, devices, flat=False, bars=bars[space]) for space, regions in tree.items()}
    isa = reader.isa_devices()
    reader.prefetch_types([*flat.get("I/O", []), *flat.get("memory", []),
                           *tree.get("I/O", []), *tree.get("memory", [])])
    io = tuple(reader.attribute(r, "io") for r in flat.get("I/O", []) if not _is_background(r))
    memory = tuple(reader.attribute(r, "memory") for r in _system_ram_as_ram(flat.get("memory", [])))
    shadowed = tuple(reader.attribute_shadow(s) for s in
                     compute_shadowed(tree.get("I/O", []), flat.get("I/O", []), "io", bars.get("I/O"))
                     + compute_shadowed(tree.get("memory", []), flat.get("memory", []), "memory",
                                        bars.get("memory")))
    return Layout(
        machine=machine.spec.name,
        machine_type=_machine_type(machine),
        phase=phase,
        qemu_version=machine.qemu_version or "",
        accel=machine.accel_used or machine.accel,
        pci=tuple(sorted(pci, key=lambda f: (f.bus, f.slot, f.function))),
        pirq=pirq,
        elcr=elcr,
        isa=tuple(sorted(isa, key=lambda d: (d.type, d.path))),
        io=tuple(sorted(io, key=_range_key)),
        memory=tuple(sorted(memory, key=_range_key)),
        shadowed=tuple(sorted(shadowed, key=lambda s: (s.space, s.start, s.end, s.owner or ""))),
    )


def _read_registers(machine: Any, functions: list[tuple[int, int, int]], ports: PortChannel | None = None
                    ) -> tuple[dict[tuple[int, int, int], int], PirqRouting | None, int]:
    """What a snapshot reads that changes without changing what QEMU decodes, in one port
    transfer (over ``ports``, else the machine's fastest channel): each function's command
    word, the chipset's PIRQ routes, the ELCR."""
    kind = machine.spec.machine
    pirq_dwords = _pirq_dwords(kind)
    ops = [op for key in functions for op in PortChannel.config_read_ops(*key, 0x04, 2)]
    ops += [op for *key, offset in pirq_dwords for op in PortChannel.config_read_ops(*key, offset, 4)]
    ops += [("in", port, 1, None) for port in ELCR_PORTS]
    values = (ports or machine_ports(machine)).transfer(ops)
    pirq = _pirq_routing(kind, values[len(functions):len(functions) + len(pirq_dwords)])
    return dict(zip(functions, values)), pirq, values[-2] | values[-1] << 8


_PIC_ELCR = re.compile(r"^(pic[01]):.*\belcr=([0-9a-f]+)", re.M)


def _elcr_held(machine: Any, io: Iterable[Any], read: int) -> int:
    """The ELCR ``read`` through its ports, unless a device other than the 8259s decodes one
    of them (a card on 0x4d0 answers with its own byte): then what the 8259s hold, from
    ``info pic`` (pic0 the master, pic1 the slave)."""
    if all(_base_name(r) == "elcr" for r in io if any(r.start <= p <= r.end for p in ELCR_PORTS)):
        return read
    held = dict(_PIC_ELCR.findall(machine.hmp("info pic")))
    if set(held) != {"pic0", "pic1"}:
        return read
    return int(held["pic0"], 16) | int(held["pic1"], 16) << 8


def refresh(layout: Layout, machine: Any, phase: str, ports: PortChannel | None = None) -> Layout:
    """``layout`` of ``machine`` again, in ``phase``, when nothing that changes what QEMU
    decodes happened since it was taken (:meth:`LiveBus.layout_unchanged
    <harness.qemu.livebus.LiveBus.layout_unchanged>` says so): the registers that change
    without changing it (:func:`_read_registers`, over ``ports``) are read again, the rest
    is kept.  Equal to a fresh :func:`snapshot`, field for field, but for the phase."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, not {phase!r}")
    commands, pirq, elcr = _read_registers(machine, [(f.bus, f.slot, f.function) for f in layout.pci], ports)
    elcr = _elcr_held(machine, layout.io, elcr)
    pci = tuple(fn if fn.command == commands[fn.bus, fn.slot, fn.function]
                else dataclasses.replace(fn, command=commands[fn.bus, fn.slot, fn.function]) for fn in layout.pci)
    return dataclasses.replace(layout, phase=phase, pci=pci, pirq=pirq, elcr=elcr)


def read_static_facts(machine: Any) -> None:
    """Read what cannot change while the machine's QEMU runs (its QOM tree: devices, their
    types and ISA resources) into ``machine.static_facts``.  QMP answers while the guest
    runs, so a caller does this while the firmware runs (:meth:`Machine.start_firmware
    <harness.qemu.machine.Machine.start_firmware>`) and the snapshot after it asks none of it."""
    QomReader(machine).isa_devices()


def _range_key(r: DecodedRange) -> tuple[int, int, str]:
    return (r.start, r.end, r.owner or "")


def _machine_type(machine: Any) -> str:
    from .machine import MACHINE_TYPES
    return MACHINE_TYPES[machine.spec.machine]


#: A device embedded in one created with -device (qemu-xhci's ``xhci-core``): its path.
_EMBEDDED_RE = re.compile(r"^(/machine/peripheral(-anon)?/[^/]+)/.+$")


def _owning_device(region: "MtreeRegion") -> tuple[str, str]:
    """(owner as a layout names it, its QOM path) of a device-owned region.  A device
    created with -device owns what QEMU registers under a device embedded in it
    (qemu-xhci's BAR0 subregions belong to its child ``xhci-core``): the guest sees one
    PCI function, and its BAR is that function's."""
    if region.owner_ref == "id":
        return str(region.owner), f"/machine/peripheral/{region.owner}"
    path = str(region.owner)
    embedded = _EMBEDDED_RE.match(path)
    if embedded is None:
        return path, path
    top = embedded.group(1)
    return (top if embedded.group(2) else top.rsplit("/", 1)[1]), top


#: Where QEMU puts devices: what ``qom-list`` of these says names each child's type.


class QomReader:
    """QOM look-ups, each asked once per machine: the QOM tree of a running QEMU does not
    change (the harness plugs no device after launch), so a later snapshot of the same
    machine (post-drivers after post-firmware) reuses them from ``machine.static_facts``.

    Independent questions go out together (:meth:`Machine.qmp_many
    <harness.qemu.machine.Machine.qmp_many>`): the QOM tree (every object's type, the
    containers' children) with the ISA devices' properties (``info qtree``), then what
    those leave open; a machine without ``qmp_many`` is asked one command at a time."""

    def __init__(self, machine: Any) -> None:
        self.machine = machine
        facts = getattr(machine, "static_facts", None)
        self._facts: dict[str, Any] = facts if facts is not None else {}
        self._types: dict[str, str | None] = self._facts.setdefault("qom-types", {})
        self.asked = 0  # QMP commands this reader sent

    @property
    def facts(self) -> dict[str, Any]:
        """The machine's static facts (see :attr:`Machine.static_facts`)."""
        return self._facts

    def ask(self, commands: list[tuple[str, dict[str, Any] | None]], *, static: bool = True) -> list[Any]:
        """Answers in order; an exception object for a command QEMU refused.  ``static``:
        QOM facts, which a launch plan may ask ahead."""
        self.asked += len(commands)
        many = getattr(self.machine, "qmp_many", None)
        if many is not None:
            return many(commands, static=static)
        out = []
        for command, arguments in commands:
            try:
                out.append(self.machine.qmp(command, arguments))
            except Exception as exc:  # noqa: BLE001 - handed to the caller like qmp_many does
                out.append(exc)
        return out

    def qom_type(self, path: str) -> str | None:
        """The QOM type of the object at ``path``; None if there is none."""
        if path in self._types:  # the usual case: read with the QOM tree
            return self._types[path]
        return self.qom_types([path])[path]

    def qom_types(self, paths: Iterable[str]) -> dict[str, str | None]:
        """:meth:`qom_type` of every path, the unknown ones asked at once."""
        paths = list(dict.fromkeys(paths))
        self._fetch_types([p for p in paths if p not in self._types])
        return {p: self._types[p] for p in paths}

    def _fetch_types(self, paths: list[str]) -> None:
        if not paths:
            return
        answers = self.ask([("qom-get", {"path": path, "property": "type"}) for path in paths])
        for path, answer in zip(paths, answers):
            self._types[path] = None if isinstance(answer, BaseException) else answer

    def prefetch_types(self, regions: Iterable["MtreeRegion"]) -> None:
        """Ask at once for the type of every device owning one of ``regions``."""
        self.qom_types(self._owner_path(r) for r in regions if r.owner_kind == "dev")

    @staticmethod
    def _owner_path(region: "MtreeRegion") -> str:
        return _owning_device(region)[1]

    def attribute(self, region: "MtreeRegion", space: str) -> DecodedRange:
        owner, owner_type = self._owner(region)
        return DecodedRange(space, region.start, region.end, region.name, owner, owner_type,
                            region.priority, region.kind)

    def attribute_shadow(self, item: "Shadow") -> ShadowedRange:
        owner, owner_type = self._owner(item.region)
        name = item.region.name
        if item.region.alias:   # a BAR alias: "alias rtl8139-mem @rtl8139 0-ff" is rtl8139-mem
            name = name.removeprefix("alias ").split(" @")[0]
        return ShadowedRange(item.space, item.start, item.end, name, owner, owner_type,
                             (self._owner(item.winner)[0] or _base_name(item.winner),), item.cause)

    def _owner(self, region: "MtreeRegion") -> tuple[str | None, str | None]:
        if region.owner_kind != "dev":
            return None, None
        owner, path = _owning_device(region)
        return owner, self.qom_type(path)

    def pci_types(self) -> frozenset[str]:
        """Every concrete QOM type that is a PCI device."""
        if "pci-types" not in self._facts:
            listing, = self.ask([PCI_TYPES_QUERY])
            if isinstance(listing, BaseException):
                raise listing
            self._facts["pci-types"] = frozenset(t["name"] for t in listing)
        return self._facts["pci-types"]

    def isa_devices(self) -> list[IsaDevice]:
        if "isa-devices" not in self._facts:
            self._facts["isa-devices"] = tuple(self._read_isa_devices())
        return list(self._facts["isa-devices"])

    def _read_isa_devices(self) -> list[IsaDevice]:
        """Every ISA device in the QOM containers with its resource properties.

        ``info qtree`` prints every device on the ISA bus with its properties in one
        command, where QOM needs a qom-list per device and a qom-get per property (~50
        commands).  qtree names no QOM path, so its devices are matched to the containers'
        listing: by id, and an anonymous one by type (several of one type by a property
        asked of each candidate).  When anything does not match one to one, the QOM walk
        answers instead, so the result is always the QOM walk's."""
        isa_listing, tree, qtree = self.ask(list(ISA_FACT_QUERIES))
        if isinstance(isa_listing, BaseException):
            raise isa_listing
        isa_types = {t["name"] for t in isa_listing}
        devices = self._isa_in_tree(isa_types, tree)
        if devices is None:  # no QOM tree to read: each container's listing says the same
            devices = self._isa_in_containers(isa_types, self.ask([("qom-list", {"path": c}) for c in QOM_CONTAINERS]))
        if not isinstance(qtree, BaseException):
            matched = self._match_qtree(devices, parse_qtree_isa(qtree))
            if matched is not None:
                return matched
        return self._walk_isa_devices(devices)

    def _isa_in_tree(self, isa_types: set[str], tree: Any) -> list[tuple[str, str | None, str]] | None:
        """(path, id, type) of each ISA device among the containers' children in the answer
        to ``info qom-tree`` (qomfacts.QOM_TREE_QUERY), whose every object's type is kept
        as ``qom-get type`` would say it; None if the answer is an error or not read."""
        objects = None if isinstance(tree, BaseException) or not isinstance(tree, str) else parse_qom_tree(tree)
        if objects is None:
            return None
        devices = []  # (path, id, type) of each ISA device, in container order
        children: dict[str, list[tuple[str, str]]] = {}
        for path, parent, kind in objects:
            self._types.setdefault(path, kind)
            children.setdefault(parent, []).append((path, kind))
        for container in QOM_CONTAINERS:
            for path, kind in children.get(container, ()):
                if kind in isa_types:
                    devices.append((path, path[len(container) + 1:] if container == "/machine/peripheral" else None, kind))
        return devices

    def _isa_in_containers(self, isa_types: set[str], listings: list[Any]) -> list[tuple[str, str | None, str]]:
        """(path, id, type) of each ISA device in the containers' listings, in their order."""
        devices = []  # (path, id, type) of each ISA device, in container order
        for container, children in zip(QOM_CONTAINERS, listings):
            if isinstance(children, BaseException):
                continue
            for child in children:
                match = re.fullmatch(r"child<(.+)>", child["type"])
                if not match:
                    continue
                path = f"{container}/{child['name']}"
                # A child<T> link names the object's own type: what qom-get type would say.
                self._types.setdefault(path, match.group(1))
                if match.group(1) in isa_types:
                    dev_id = child["name"] if container == "/machine/peripheral" else None
                    devices.append((path, dev_id, match.group(1)))
        return devices

    def _match_qtree(self, devices: list[tuple[str, str | None, str]],
                     qtree: list[tuple[str, str | None, dict[str, int]]]) -> list[IsaDevice] | None:
        """``devices`` with their properties from ``qtree``; None unless one to one."""
        if len(qtree) != len(devices):
            return None
        named = {dev_id: (kind, props) for kind, dev_id, props in qtree if dev_id is not None}
        anonymous: dict[str, list[dict[str, int]]] = {}
        for kind, dev_id, props in qtree:
            if dev_id is None:
                anonymous.setdefault(kind, []).append(props)
        found: dict[str, dict[str, int]] = {}
        candidates: dict[str, list[str]] = {}
        for path, dev_id, kind in devices:
            if dev_id is not None:
                if named.get(dev_id, ("", {}))[0] != kind:
                    return None
                found[path] = named.pop(dev_id)[1]
            else:
                candidates.setdefault(kind, []).append(path)
        if named or sorted(candidates) != sorted(anonymous):
            return None
        for kind, paths in candidates.items():
            entries = anonymous[kind]
            if len(entries) != len(paths):
                return None
            if all(e == entries[0] for e in entries):
                found.update(dict.fromkeys(paths, entries[0]))  # alike: any pairing is exact
                continue
            # Told apart by the properties whose values differ: ask those of each path but
            # the last, which gets the one entry left (as many paths as entries, one to one).
            names = sorted({n for e in entries for n in e if any(o.get(n) != e.get(n) for o in entries)})
            answers = iter(self.ask([("qom-get", {"path": p, "property": n}) for p in paths[:-1] for n in names]))
            left = list(entries)
            for path in paths[:-1]:
                asked = {n: next(answers) for n in names}
                fits = [e for e in left if all(_same(e.get(n), v) for n, v in asked.items())]
                if not fits or any(f != fits[0] for f in fits):
                    return None
                left.remove(fits[0])
                found[path] = fits[0]
            found[paths[-1]] = left[0]
        return [IsaDevice(path, dev_id, kind, dict(found[path])) for path, dev_id, kind in devices]

    def _walk_isa_devices(self, devices: list[tuple[str, str | None, str]]) -> list[IsaDevice]:
        """The properties of ``devices`` from QOM: a qom-list each, a qom-get per property."""
        wanted = []  # (device index, property) for every ISA resource property
        for index, properties in enumerate(self.ask([("qom-list", {"path": path}) for path, _, _ in devices])):
            if isinstance(properties, BaseException):
                raise properties
            wanted += [(index, prop["name"]) for prop in properties
                       if prop["name"] in ISA_RESOURCE_PROPERTIES and prop["type"].startswith(("uint", "int"))]
        values = self.ask([("qom-get", {"path": devices[index][0], "property": name}) for index, name in wanted])
        props: list[dict[str, int]] = [{} for _ in devices]
        for (index, name), value in zip(wanted, values):
            if isinstance(value, BaseException):
                raise value
            props[index][name] = int(value)
        return [IsaDevice(path, dev_id, kind, prop) for (path, dev_id, kind), prop in zip(devices, props)]


def _same(expected: int | None, answer: Any) -> bool:
    """Does a qom-get answer agree with a qtree value (None: qtree does not show it)?"""
    if isinstance(answer, BaseException):
        return expected is None
    return isinstance(answer, int) and not isinstance(answer, bool) and answer == expected


_QTREE_LINE = re.compile(r"^( *)(bus|type|dev):? (.*)$|^( *)([\w-]+) = (.*)$")
_QTREE_DEV = re.compile(r'^([\w.-]+), id "([^"]*)"$')
_QTREE_INT = re.compile(r"^(-?\d+) \(0x[0-9a-f]+\)$")


def parse_qtree_isa(text: str) -> list[tuple[str, str | None, dict[str, int]]]:
    """``info qtree`` → (type, id or None, {resource property: value}) of every device on a
    bus of type ISA, in qtree order; properties are the integer ones named in
    :data:`ISA_RESOURCE_PROPERTIES` (qtree prints them ``N (0xN)``)."""
    out: list[tuple[str, str | None, dict[str, int]]] = []
    bus_type: dict[int, str] = {}  # indent of a bus's devices -> its type
    current: tuple[int, dict[str, int]] | None = None  # (indent, props) of an ISA device
    for line in text.splitlines():
        match = _QTREE_LINE.match(line)
        if not match:
            continue
        if match.group(2):
            indent, word, rest = len(match.group(1)), match.group(2), match.group(3).strip()
            if current is not None and indent <= current[0]:
                current = None
            if word == "type":
                bus_type[indent] = rest
            elif word == "dev":
                dev = _QTREE_DEV.match(rest)
                if dev and bus_type.get(indent) == "ISA":
                    props: dict[str, int] = {}
                    out.append((dev.group(1), dev.group(2) or None, props))
                    current = (indent, props)
        elif current is not None:
            indent, name, value = len(match.group(4)), match.group(5), match.group(6).strip()
            if indent <= current[0]:
                current = None
            elif indent == current[0] + 2 and name in ISA_RESOURCE_PROPERTIES:
                number = _QTREE_INT.match(value)
                if number:
                    current[1][name] = int(number.group(1))
    return out


def walk_pci(devices: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """query-pci's functions, each bridge followed by what is behind it."""
    for dev in devices:
        yield dev
        bridge = dev.get("pci_bridge")
        if bridge is not None:
            yield from walk_pci(bridge.get("devices", []))


def _read_pci(query_pci: list[dict[str, Any]], commands: dict[tuple[int, int, int], int]) -> list[PciFunction]:
    """The functions of ``query_pci`` with the command registers read for them."""
    out: list[PciFunction] = []

    def walk(devices: Iterable[dict[str, Any]]) -> None:
        for dev in devices:
            bus, slot, fn = dev["bus"], dev["slot"], dev["function"]
            command = commands[(bus, slot, fn)]
            bridge_info = None
            bridge = dev.get("pci_bridge")
            if bridge is not None:
                b = bridge["bus"]
                bridge_info = BridgeInfo(b["secondary"], b["subordinate"],
                                         _window(b.get("io_range")), _window(b.get("memory_range")),
                                         _window(b.get("prefetchable_range")))
            bars = []
            for region in dev.get("regions", []):
                index = region["bar"]
                kind = "rom" if index == 6 else region["type"]
                address = region["address"]
                bars.append(Bar(index, kind, None if address in (UNASSIGNED, -1) else address,
                                region["size"], bool(region.get("mem_type_64", False)),
                                bool(region.get("prefetch", False))))
            out.append(PciFunction(
                bus=bus, slot=slot, function=fn,
                vendor=dev["id"]["vendor"], device=dev["id"]["device"],
                subsystem_vendor=dev["id"].get("subsystem-vendor", 0),
                subsystem=dev["id"].get("subsystem", 0),
                class_code=dev["class_info"]["class"], description=dev["class_info"].get("desc", ""),
                header_type=1 if bridge is not None else 0, command=command,
                interrupt_pin=dev.get("irq_pin", 0), interrupt_line=dev.get("irq"),
                qdev_id=dev.get("qdev_id", ""), bars=tuple(sorted(bars, key=lambda b: b.index)),
                bridge=bridge_info))
            if bridge is not None:
                walk(bridge.get("devices", []))

    for bus in query_pci:
        walk(bus["devices"])
    return out


def _window(w: dict[str, int] | None) -> Window | None:
    return Window(w["base"], w["limit"]) if w else None


def _pirq_dwords(kind: str) -> list[tuple[int, int, int, int]]:
    """(bus, slot, function, offset) of the config dwords holding ``kind``'s PIRQ routes."""
    if kind not in PIRQ_REGISTERS:
        return []
    (bus, slot, fn), registers = PIRQ_REGISTERS[kind]
    return [(bus, slot, fn, first) for first in sorted({off & ~3 for off in registers.values()})]


def _pirq_routing(kind: str, dwords: list[int]) -> PirqRouting | None:
    """The routing from the values of :func:`_pirq_dwords`, in that order."""
    if kind not in PIRQ_REGISTERS:
        return None
    registers = PIRQ_REGISTERS[kind][1]
    raw: dict[str, int] = {}
    for (*_, first), dword in zip(_pirq_dwords(kind), dwords):
        for link, off in registers.items():
            if off & ~3 == first:
                raw[link] = dword >> (8 * (off & 3)) & 0xFF
    routes = {link: (None if value & 0x80 else value & 0x0F) for link, value in raw.items()}
    return PirqRouting("piix3" if kind == "pc" else "ich9", routes, raw)


# ---------------------------------------------------------------------- info mtree parsing
@dataclass(frozen=True)
class MtreeRegion:
    depth: int
    start: int
    end: int
    priority: int
    kind: str
    name: str
    owner_kind: str | None  # "dev" or "obj" (obj: no owning device, only a parent)
    owner_ref: str | None  # "id" or "path"
    owner: str | None
    alias: bool = False
    has_children: bool = field(default=False, compare=False)
    disabled: bool = False  # ``info mtree -D`` shows it "[disabled]": it maps nothing

    @property
    def owner_key(self) -> tuple[str | None, ...]:
        if self.owner_kind == "dev":
            return ("dev", self.owner)
        return ("obj", self.owner, self.name.split(" @")[0])


_LINE_RE = re.compile(r"^(\s*)([0-9a-f]{16})-([0-9a-f]{16}) \(prio (-?\d+), ([\w/]+)\): (.*)$")
_OWNER_RE = re.compile(r"\s+(owner|parent):\{(dev|obj) (id|path)=([^}]*)\}\s*$")
_FLAT_AS_RE = re.compile(r'\s*AS "([^"]+)"')
_TREE_HEAD_RE = re.compile(r"(address-space|memory-region): (.+)$")


def _parse_line(line: str) -> MtreeRegion | None:
    match = _LINE_RE.match(line)
    return _region(match) if match else None


def _region(match: re.Match[str], has_children: bool = False) -> MtreeRegion:
    indent, start, end, prio, kind, rest = match.groups()
    owner_kind = owner_ref = owner = None
    if rest.endswith("}"):  # a cheap test first: the owner, when there is one, ends the line
        om = _OWNER_RE.search(rest)
        if om:
            owner_kind, owner_ref, owner = om.group(2), om.group(3), om.group(4)
            rest = rest[:om.start()]
    disabled = " [disabled]" in rest
    if disabled:
        rest = rest.replace(" [disabled]", "")
    return _new_region(len(indent) // 2, int(start, 16), int(end, 16), int(prio), kind,
                       rest.strip(), owner_kind, owner_ref, owner, rest.startswith("alias "),
                       has_children, disabled)


#: MtreeRegion's fields in order (what its ``__init__`` takes).
_REGION_FIELDS = tuple(f.name for f in dataclasses.fields(MtreeRegion))


def _new_region(*values: Any) -> MtreeRegion:
    """``MtreeRegion(*values)``, made as its ``__init__`` makes it (the same ``__dict__``)
    without the frozen class's one ``object.__setattr__`` per field: ~0.6 of the ~1.4 µs
    a region's construction costs, and a matrix cell parses ~300 (issue 21's tenth
    round).  Every caller passes all 12 fields (tests/test_layout.py holds the two alike)."""
    region = object.__new__(MtreeRegion)
    region.__dict__.update(zip(_REGION_FIELDS, values))
    return region


def parse_mtree_flat(text: str) -> dict[str, list[MtreeRegion]]:
    """``info mtree -f -o`` → {address-space name: regions} for every FlatView."""
    views: dict[str, list[MtreeRegion]] = {}
    current: list[MtreeRegion] | None = None
    for line in text.splitlines():
        if line.startswith("FlatView #"):
            current = []
            continue
        if current is None:
            continue
        if not current:  # the address spaces sharing this view come before its regions
            m = _FLAT_AS_RE.match(line)
            if m:
                views[m.group(1)] = current
                continue
        region = _parse_line(line)
        if region is not None:
            current.append(region)
    return views


def parse_mtree_tree(text: str) -> dict[str, list[MtreeRegion]]:
    """``info mtree -o`` → {address-space name: regions in tree order, with depth}.
    Address spaces with one root region are printed as consecutive headers over one tree
    (``address-space: I/O`` then ``address-space: lsi-pci-io``): each gets that tree."""
    lines: dict[str, list[re.Match[str]]] = {}
    current: list[re.Match[str]] | None = None
    for line in text.splitlines():
        m = _TREE_HEAD_RE.match(line)
        if m:
            if m.group(1) != "address-space":
                current = None
            elif current is not None and not current:    # the header before it has no tree yet
                lines[m.group(2).strip()] = current
            else:
                current = lines.setdefault(m.group(2).strip(), [])
            continue
        if current is not None:
            match = _LINE_RE.match(line)
            if match:
                current.append(match)
    spaces: dict[str, list[MtreeRegion]] = {}
    parsed: dict[int, list[MtreeRegion]] = {}  # a tree several spaces share is parsed once
    for name, matches in lines.items():  # a region has children when the next line is deeper
        if id(matches) not in parsed:
            depths = [len(m.group(1)) // 2 for m in matches] + [-1]
            parsed[id(matches)] = [_region(m, depths[i + 1] > depths[i]) for i, m in enumerate(matches)]
        spaces[name] = list(parsed[id(matches)])
    return spaces


def bar_ranges(query_pci: Sequence[dict[str, Any]], kind: str) -> dict[str, list[tuple[int, int]]]:
    """Per machine-file PCI device (qdev id), its assigned BARs of ``kind`` ("io" or
    "memory"; a memory kind takes the ROM too) as (start, end), from query-pci's buses."""
    out: dict[str, list[tuple[int, int]]] = {}
    for bus in query_pci:
        for dev in walk_pci(bus["devices"]):
            for region in dev.get("regions", []) if dev.get("qdev_id") else ():
                if region["address"] not in (UNASSIGNED, -1) and (region["type"] == "io") == (kind == "io"):
                    out.setdefault(dev["qdev_id"], []).append((region["address"], region["address"] + region["size"] - 1))
    return out


def own_ownerless(regions: list[MtreeRegion], devices: Sequence[Any], *, flat: bool,
                  bars: Mapping[str, Sequence[tuple[int, int]]] | None = None) -> list[MtreeRegion]:
    """``regions`` with each region QEMU registered without an owner device (the IPMI
    interfaces: their model's ``ownerless_regions``) given to the machine-file device it
    is, as if QEMU had named that device its owner.  Several devices of one type register
    regions of one name under one parent, so name and parent cannot tell them apart (two
    BT interfaces at 0xe4 were one owner: neither shadowed the other, and the claim of
    the one that answers was "decoded by" the other).  ISA devices are realized in file
    order at priority 0, where the one mapped last wins every address it shares:

    * in the tree a region is the device whose model decodes exactly its range, and of
      several such devices QEMU lists the one mapped last first (memory_region_add_subregion
      puts a subregion before its equal-priority siblings);
    * in the flat view a range (all of a region, or what is left of it, ``name @offset``)
      is the device mapped last of those that decode all of it.

    A PCI device's ownerless region (QEMU 7.2's vmsvga.fifo, a BAR's RAM registered with
    no owner) is the device's when it lies inside one of its BARs of the space (``bars``,
    per device id: :func:`bar_ranges`); the tree shows it at the BAR, the flat view at
    what of the BAR no other device wins.

    A ``memdev`` device's RAM (an ivshmem-plain's BAR2) is owned by its backend object,
    ``/objects/harness-mem-<id>``: it is given to the device whose backend it is."""
    backends = {f"/objects/{memdev_backend_id(dev.id)}": dev.id for dev in devices if dev.model.backend == "memdev"}
    if not backends and not any(dev.model.ownerless_regions for dev in devices):
        return regions
    handed: set[tuple[str, str, int, int]] = set()   # (device, region name, range): one each
    out = []
    for region in regions:
        if region.owner_kind != "dev" and region.owner in backends:
            out.append(dataclasses.replace(region, owner_kind="dev", owner_ref="id", owner=backends[region.owner]))
            continue
        name = _base_name(region)
        if region.owner_kind == "dev":
            out.append(region)
            continue
        candidates = [dev for dev in devices if name in dev.model.ownerless_regions and (any(
            lo <= region.start and region.end <= hi for lo, hi in (bars or {}).get(dev.id, ())) or (
            region.kind == "i/o" and any(
                kind == "port" and (lo, hi) == (region.start, region.end) if not flat else
                kind == "port" and lo <= region.start and region.end <= hi
                for kind, lo, hi in dev.decoded_resources())))]
        if not flat:
            candidates = [dev for dev in candidates if (dev.id, name, region.start, region.end) not in handed]
        if not candidates:
            out.append(region)
            continue
        owner = candidates[-1]
        handed.add((owner.id, name, region.start, region.end))
        out.append(dataclasses.replace(region, owner_kind="dev", owner_ref="id", owner=owner.id))
    return out


def _system_ram_as_ram(flat: list[MtreeRegion]) -> list[MtreeRegion]:
    """The flat memory map with system RAM shown as RAM where it is read-only: SeaBIOS hands
    over with its own and the option ROMs' shadows locked (PAM), which the flat map shows as
    "rom" views of the RAM block (``pc.ram @00000000000f0000``).  Still RAM, that decodes
    nobody's claim, as the rest of the block (kind "ram", no owning device)."""
    ram = {_base_name(r) for r in flat if r.kind == "ram" and r.owner_kind != "dev"}
    return [dataclasses.replace(r, kind="ram") if r.kind == "rom" and r.owner_kind != "dev"
            and _base_name(r) in ram else r for r in flat]


def _is_background(region: MtreeRegion) -> bool:
    """The PCI I/O space's own region shows through where no device decodes: not a device."""
    return region.owner_kind == "obj" and _base_name(region) == "io"


@dataclass(frozen=True)
class Shadow:
    """Addresses ``start``-``end`` that decoding ``region`` loses to ``winner`` (a flat
    view range), and why (:attr:`ShadowedRange.cause`)."""

    region: MtreeRegion
    start: int
    end: int
    winner: MtreeRegion
    space: str
    cause: str


def _base_name(region: MtreeRegion) -> str:
    return region.name.split(" @")[0]


def compute_shadowed(tree: list[MtreeRegion], flat: list[MtreeRegion], space: str,
                     bars: Mapping[str, Sequence[tuple[int, int]]] | None = None) -> list[Shadow]:
    """The addresses each decoding region of the tree loses to another owner in the flat
    view, one :class:`Shadow` per (region, winner) run.

    A region with subregions that never shows in the flat view is a container when some
    address between its subregions shows nothing there (or the I/O background): it
    decodes nothing itself, so those addresses are nobody's loss (a device there is not
    "over" the container).  ``info mtree`` prints a container and a decoding region with
    subregions alike (the RTC's 0x70-0x71 holds its index port); when other devices cover
    every address of its own, the flat view cannot tell the two apart and the region
    counts as decoding.  A disabled region and everything under it maps
    nothing (``info mtree -D`` marks it; without -D QEMU hides its line but prints its
    subregions one level too deep, which is recognised too).  Skipped as well: the root,
    RAM no device owns (a device's RAM, such as isa-vga's VBE frame buffer, decodes and
    can be lost like any of its regions), negative priorities,
    and everything inside an alias (its addresses are the alias target's, not absolute;
    devices behind bridges appear in the flat view).  An alias that is a PCI device's BAR
    (``bars``: :func:`bar_ranges`) decodes like any region: an RTL8139's memory BAR is an
    alias of its I/O registers, and moved under the HPET whole it was lost without a trace.  The cause comes from where the two
    regions meet in the tree: the winner's branch has the higher priority there, or the
    priorities are equal and QEMU gives the addresses to the one mapped last.
    """
    out: list[Shadow] = []
    shown = {(f.owner_key, _base_name(f)) for f in flat}
    chains: list[tuple[MtreeRegion, ...]] = []   # each region's ancestors and itself
    mapped: list[bool] = []                      # the region and all its ancestors enabled
    stack: list[tuple[MtreeRegion, bool]] = []
    for region in tree:
        del stack[region.depth - 1:]
        hidden_parent = len(stack) < region.depth - 1
        on = not region.disabled and not hidden_parent and all(m for _, m in stack[-1:])
        stack.append((region, on))
        chains.append(tuple(r for r, _ in stack))
        mapped.append(on)
    children: dict[int, list[tuple[int, int]]] = {}   # id(region) -> its subregions' spans
    child_names: dict[int, set[str]] = {}
    for region, chain in zip(tree, chains):
        if len(chain) > 1:
            children.setdefault(id(chain[-2]), []).append((region.start, region.end))
            child_names.setdefault(id(chain[-2]), set()).add(region.name)
    alias_depth: int | None = None
    for region, chain, on in zip(tree, chains, mapped):
        if not on:
            continue
        if alias_depth is not None:
            if region.depth > alias_depth:
                continue
            alias_depth = None
        if region.alias:
            alias_depth = region.depth
            if not _bar_alias(region, bars or {}):
                continue
        if region.depth <= 1 or region.priority < 0 or (region.kind == "ram" and region.owner_kind != "dev"):
            continue   # system RAM decodes nobody's claims; a device's RAM (vga.vram) is the device
        if region.has_children and (region.owner_key, region.name) not in shown and (
                _shows_through(region, children.get(id(region), []), flat)
                or _msix_bar(region, child_names.get(id(region), set()))):
            continue  # a container
        key = region.owner_key
        visible = [f for f in flat if f.start <= region.end and f.end >= region.start]
        for lo, hi in _gaps(region.start, region.end, [(f.start, f.end) for f in visible if f.owner_key == key]):
            for f in visible:
                if f.start <= hi and f.end >= lo and f.owner_key != key and not _is_background(f):
                    out.append(Shadow(region, max(lo, f.start), min(hi, f.end), f, space,
                                      _why_wins(chain, _chain_of(f, tree, chains))))
    return _merge_runs(out)


def _bar_alias(region: MtreeRegion, bars: Mapping[str, Sequence[tuple[int, int]]]) -> bool:
    """Whether alias ``region`` is one of its device's BARs, mapped where query-pci says."""
    return (region.owner_kind == "dev" and region.owner_ref == "id" and region.owner is not None
            and (region.start, region.end) in bars.get(region.owner, ()))


#: The subregions QEMU's msix_init() maps into a BAR.
MSIX_REGIONS = frozenset({"msix-table", "msix-pba"})


def _msix_bar(region: MtreeRegion, subregions: set[str]) -> bool:
    """Whether ``region`` is an exclusive MSI-X BAR: QEMU's msix_init_exclusive_bar() makes
    it with memory_region_init() (no ops: it decodes nothing itself), names it
    "<type>-msix" and maps only the table and the PBA in it.  A device's BAR moved over
    another's is a container the flat view cannot tell apart when the other covers its gaps
    (a pcie-root-port's BAR over an e1000's: the e1000 answers there)."""
    return region.name.endswith("-msix") and bool(subregions) and subregions <= MSIX_REGIONS


def _shows_through(region: MtreeRegion, subregions: list[tuple[int, int]], flat: list[MtreeRegion]) -> bool:
    """Whether some address of ``region`` outside its subregions is decoded by nobody in
    the flat view (or only by the I/O background): then ``region`` decodes nothing itself."""
    decoders = [(f.start, f.end) for f in flat if not _is_background(f)]
    return any(_gaps(lo, hi, decoders) for lo, hi in _gaps(region.start, region.end, subregions))


def _chain_of(flat_region: MtreeRegion, tree: list[MtreeRegion],
              chains: list[tuple[MtreeRegion, ...]]) -> tuple[MtreeRegion, ...] | None:
    """The tree chain (ancestors, then the region) of the region a flat range shows: the
    region itself, else the alias that maps it (RAM is shown through one)."""
    base = _base_name(flat_region)
    for region, chain in zip(tree, chains):
        if (region.owner_key == flat_region.owner_key and region.name == base
                and region.start <= flat_region.start and flat_region.end <= region.end):
            return chain
    for region, chain in zip(tree, chains):
        if (region.alias and f" @{base} " in region.name and not region.disabled
                and region.start <= flat_region.start and flat_region.end <= region.end):
            return chain
    return None


def _why_wins(loser: tuple[MtreeRegion, ...], winner: tuple[MtreeRegion, ...] | None) -> str:
    if winner is None:
        return ""
    common = 0
    while common < min(len(loser), len(winner)) and loser[common] is winner[common]:
        common += 1
    if common == len(loser):
        return "a subregion inside it"
    if common == len(winner):
        return ""
    ours, theirs = loser[common], winner[common]
    via = "" if theirs is winner[-1] else f" of {theirs.name}"
    if theirs.priority > ours.priority:
        return f"higher priority ({theirs.priority}{via} over {ours.priority})"
    if theirs.priority == ours.priority:
        return f"being mapped later (equal priority {ours.priority}: the last mapped wins, address by address)"
    return ""


def _merge_runs(shadows: list[Shadow]) -> list[Shadow]:
    """Adjacent pieces of one region lost to one owner for one reason, as one."""
    out: list[Shadow] = []
    for s in shadows:
        last = out[-1] if out else None
        if (last is not None and last.region is s.region and last.winner.owner_key == s.winner.owner_key
                and last.cause == s.cause and last.end + 1 == s.start):
            out[-1] = dataclasses.replace(last, end=s.end)
        else:
            out.append(s)
    return out


def _gaps(lo: int, hi: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sub-ranges of [lo, hi] not covered by any of ``covered``."""
    gaps = []
    cursor = lo
    for start, end in sorted(covered):
        if end < cursor:
            continue
        if start > cursor:
            gaps.append((cursor, min(start - 1, hi)))
        cursor = max(cursor, end + 1)
        if cursor > hi:
            break
    if cursor <= hi:
        gaps.append((cursor, hi))
    return gaps


# ---------------------------------------------------------------------- diff and text
def diff(before: Layout, after: Layout) -> list[str]:
    """Readable differences between two snapshots (what changed, as one line each)."""
    lines: list[str] = []
    a_pci = {f.bdf: f for f in before.pci}
    b_pci = {f.bdf: f for f in after.pci}
    for bdf in sorted(set(a_pci) | set(b_pci)):
        fa, fb = a_pci.get(bdf), b_pci.get(bdf)
        if fa is None or fb is None:
            lines.append(f"pci {bdf}: {'appeared' if fa is None else 'disappeared'}")
            continue
        bars_a = {bar.index: bar for bar in fa.bars}
        bars_b = {bar.index: bar for bar in fb.bars}
        for index in sorted(set(bars_a) | set(bars_b)):
            bar_a, bar_b = bars_a.get(index), bars_b.get(index)
            if bar_a is None or bar_b is None:
                bar = bar_a or bar_b
                lines.append(f"pci {bdf} BAR{index} ({bar.kind}): {'appeared' if bar_a is None else 'disappeared'}")
            elif bar_a.base != bar_b.base:
                lines.append(f"pci {bdf} BAR{index} ({bar_a.kind}): {_addr(bar_a.base)} -> {_addr(bar_b.base)}")
        if fa.command != fb.command:
            lines.append(f"pci {bdf} command: {fa.command:#06x} -> {fb.command:#06x}")
        if fa.interrupt_line != fb.interrupt_line:
            lines.append(f"pci {bdf} interrupt line: {fa.interrupt_line} -> {fb.interrupt_line}")
    if before.pirq and after.pirq and before.pirq.raw != after.pirq.raw:
        for link in sorted(after.pirq.raw):
            if before.pirq.raw.get(link) != after.pirq.raw[link]:
                lines.append(f"PIRQ{link}: {before.pirq.raw.get(link, 0):#04x} -> {after.pirq.raw[link]:#04x}")
    if before.elcr != after.elcr:
        lines.append(f"ELCR: {before.elcr or 0:#06x} -> {after.elcr or 0:#06x}")
    for space in ("io", "memory"):
        a = {(r.start, r.end, r.owner, r.name) for r in getattr(before, space)}
        b = {(r.start, r.end, r.owner, r.name) for r in getattr(after, space)}
        for r in sorted(a - b, key=lambda t: (t[0], t[1])):
            lines.append(f"{space} - {r[0]:#x}-{r[1]:#x} {r[3]} ({r[2]})")
        for r in sorted(b - a, key=lambda t: (t[0], t[1])):
            lines.append(f"{space} + {r[0]:#x}-{r[1]:#x} {r[3]} ({r[2]})")
    return lines


def _addr(value: int | None) -> str:
    return "unassigned" if value is None else f"{value:#x}"


def format_text(layout: Layout) -> str:
    """A compact human-readable rendering of a snapshot."""
    out = [f"{layout.machine} ({layout.machine_type}, {layout.accel}, QEMU {layout.qemu_version}) "
           f"phase {layout.phase}"]
    if layout.pci:
        out.append("\nPCI")
        for fn in layout.pci:
            irq = "" if not fn.interrupt_pin else f" INT{'ABCD'[fn.interrupt_pin - 1]}#->irq {fn.interrupt_line}"
            name = f" [{fn.qdev_id}]" if fn.qdev_id else ""
            out.append(f"  {fn.bdf} {fn.vendor:04x}:{fn.device:04x} class {fn.class_code:04x} "
                       f"{fn.description}{name} cmd={fn.command:#06x}{irq}")
            for bar in fn.bars:
                where = _addr(bar.base) + (f"-{bar.end:#x}" if bar.base is not None else "")
                flags = "".join([" 64-bit" if bar.is_64bit else "", " prefetch" if bar.prefetchable else ""])
                out.append(f"      BAR{bar.index} {bar.kind:6} {where} size {bar.size:#x}{flags}")
            if fn.bridge:
                b = fn.bridge
                out.append(f"      bridge buses {b.secondary}-{b.subordinate}"
                           + "".join(f" {n} {w.base:#x}-{w.limit:#x}" for n, w in
                                     (("io", b.io), ("mem", b.memory), ("pref", b.prefetchable))
                                     if w is not None and w.enabled))
    if layout.pirq:
        routes = " ".join(f"{k}={'off' if v is None else v}" for k, v in sorted(layout.pirq.routes.items()))
        out.append(f"\nPIRQ ({layout.pirq.chipset}): {routes}")
    if layout.elcr is not None:
        levels = [str(i) for i in range(16) if layout.elcr >> i & 1]
        out.append(f"ELCR level-triggered IRQs: {', '.join(levels) or 'none'}")
    if layout.isa:
        out.append("\nISA devices")
        for dev in layout.isa:
            props = " ".join(f"{k}={v:#x}" if k.startswith(("iobase", "ioport")) else f"{k}={v}"
                             for k, v in sorted(dev.properties.items()))
            out.append(f"  {dev.id or dev.path:40} {dev.type:16} {props}")
    for space in ("io", "memory"):
        out.append(f"\n{'I/O ports' if space == 'io' else 'Memory'} decoded")
        for r in getattr(layout, space):
            out.append(f"  {r.start:#010x}-{r.end:#010x} {r.name:24} {r.owner or '-'}"
                       + (f" ({r.owner_type})" if r.owner_type else ""))
    if layout.shadowed:
        out.append("\nShadowed (decoded by a device but won by another)")
        for s in layout.shadowed:
            out.append(f"  {s.space} {s.start:#x}-{s.end:#x} {s.name} of {s.owner or '-'}: {s.reason()}")
    return "\n".join(out) + "\n"
