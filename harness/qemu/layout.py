"""The layout snapshot: what the emulated hardware really decodes, at one phase.

Sources, all read on a paused machine:

* ``query-pci`` (every function, behind every bridge the firmware has numbered), plus
  each function's command register and the chipset's PIRQ routing registers read through
  0xCF8/0xCFC, and the ELCR (edge/level per IRQ);
* QOM for ISA devices and their resource properties (iobase, irq, dma, ...);
* ``info mtree -f -o``: the flat I/O-port and memory maps QEMU dispatches, each range
  attributed to its owning device;
* ``info mtree -o``: the tree with every region, hidden ones included, from which the
  *shadowed* ranges are computed (a region whose ports the flat view gives to another
  owner: QEMU never refuses ISA overlaps, the device mapped last wins port by port).

A :class:`Layout` is plain data: JSON round-trips, stable ordering so two snapshots diff
cleanly, and it is labelled with the phase (``pre-firmware``, ``post-firmware``, later
``post-os``) so every difference is attributed to the right actor.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from .bus import HmpPorts

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


@dataclass(frozen=True)
class ShadowedRange:
    space: str
    start: int
    end: int
    name: str
    owner: str | None
    owner_type: str | None
    hidden_by: tuple[str, ...]  # owners (or region names) that win these addresses


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
                           for s in data["shadowed"]),
            schema=data.get("schema", SCHEMA_VERSION))

    @classmethod
    def from_json(cls, text: str) -> "Layout":
        return cls.from_dict(json.loads(text))


# ---------------------------------------------------------------------- taking a snapshot
def snapshot(machine: Any, phase: str | None = None) -> Layout:
    """Read the layout of a launched, paused :class:`~harness.qemu.machine.Machine`."""
    phase = phase or machine.phase
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, not {phase!r}")
    reader = _Reader(machine)
    ports = HmpPorts(machine)
    pci = _read_pci(machine, ports) if machine.spec.machine != "isapc" else ()
    flat = parse_mtree_flat(machine.hmp("info mtree -f -o"))
    tree = parse_mtree_tree(machine.hmp("info mtree -o"))
    io = tuple(reader.attribute(r, "io") for r in flat.get("I/O", []) if not _is_background(r))
    memory = tuple(reader.attribute(r, "memory") for r in flat.get("memory", []))
    shadowed = tuple(reader.attribute_shadow(s) for s in
                     compute_shadowed(tree.get("I/O", []), flat.get("I/O", []), "io")
                     + compute_shadowed(tree.get("memory", []), flat.get("memory", []), "memory"))
    return Layout(
        machine=machine.spec.name,
        machine_type=_machine_type(machine),
        phase=phase,
        qemu_version=machine.qemu_version or "",
        accel=machine.accel_used or machine.accel,
        pci=tuple(sorted(pci, key=lambda f: (f.bus, f.slot, f.function))),
        pirq=_read_pirq(machine.spec.machine, ports),
        elcr=ports.read_port(ELCR_PORTS[0]) | ports.read_port(ELCR_PORTS[1]) << 8,
        isa=tuple(sorted(reader.isa_devices(), key=lambda d: (d.type, d.path))),
        io=tuple(sorted(io, key=_range_key)),
        memory=tuple(sorted(memory, key=_range_key)),
        shadowed=tuple(sorted(shadowed, key=lambda s: (s.space, s.start, s.end, s.owner or ""))),
    )


def _range_key(r: DecodedRange) -> tuple[int, int, str]:
    return (r.start, r.end, r.owner or "")


def _machine_type(machine: Any) -> str:
    from .machine import MACHINE_TYPES
    return MACHINE_TYPES[machine.spec.machine]


class _Reader:
    """QOM look-ups, each asked once per machine: the QOM tree of a running QEMU does not
    change (the harness plugs no device after launch), so a later snapshot of the same
    machine (post-drivers after post-firmware) reuses them from ``machine.static_facts``."""

    def __init__(self, machine: Any) -> None:
        self.machine = machine
        facts = getattr(machine, "static_facts", None)
        self._facts: dict[str, Any] = facts if facts is not None else {}
        self._types: dict[str, str | None] = self._facts.setdefault("qom-types", {})

    def qom_type(self, path: str) -> str | None:
        if path not in self._types:
            try:
                self._types[path] = self.machine.qmp("qom-get", {"path": path, "property": "type"})
            except Exception:
                self._types[path] = None
        return self._types[path]

    def attribute(self, region: "MtreeRegion", space: str) -> DecodedRange:
        owner, owner_type = self._owner(region)
        return DecodedRange(space, region.start, region.end, region.name, owner, owner_type,
                            region.priority, region.kind)

    def attribute_shadow(self, item: tuple["MtreeRegion", int, int, tuple["MtreeRegion", ...], str]) -> ShadowedRange:
        region, start, end, winners, space = item
        owner, owner_type = self._owner(region)
        hidden_by = tuple(sorted({self._owner(w)[0] or w.name for w in winners}))
        return ShadowedRange(space, start, end, region.name, owner, owner_type, hidden_by)

    def _owner(self, region: "MtreeRegion") -> tuple[str | None, str | None]:
        if region.owner_kind != "dev":
            return self._ownerless_owner(region)
        if region.owner_ref == "id":
            return region.owner, self.qom_type(f"/machine/peripheral/{region.owner}")
        return region.owner, self.qom_type(region.owner)

    def _ownerless_owner(self, region: "MtreeRegion") -> tuple[str | None, str | None]:
        """A region QEMU registered with no owner device (the IPMI interfaces): the device
        of the machine file whose model names that region and decodes exactly its range."""
        spec = getattr(self.machine, "spec", None)
        for dev in getattr(spec, "devices", ()):
            if region.name in dev.model.ownerless_regions and \
                    ("port", region.start, region.end) in dev.decoded_resources():
                return dev.id, dev.model.qemu_driver
        return None, None

    def isa_devices(self) -> list[IsaDevice]:
        if "isa-devices" not in self._facts:
            self._facts["isa-devices"] = tuple(self._read_isa_devices())
        return list(self._facts["isa-devices"])

    def _read_isa_devices(self) -> list[IsaDevice]:
        isa_types = {t["name"] for t in self.machine.qmp(
            "qom-list-types", {"implements": "isa-device", "abstract": False})}
        found = []
        for container in ("/machine/unattached", "/machine/peripheral", "/machine/peripheral-anon"):
            try:
                children = self.machine.qmp("qom-list", {"path": container})
            except Exception:
                continue
            for child in children:
                match = re.fullmatch(r"child<(.+)>", child["type"])
                if not match or match.group(1) not in isa_types:
                    continue
                path = f"{container}/{child['name']}"
                props = {}
                for prop in self.machine.qmp("qom-list", {"path": path}):
                    if prop["name"] in ISA_RESOURCE_PROPERTIES and prop["type"].startswith(("uint", "int")):
                        props[prop["name"]] = int(self.machine.qmp(
                            "qom-get", {"path": path, "property": prop["name"]}))
                dev_id = child["name"] if container == "/machine/peripheral" else None
                found.append(IsaDevice(path, dev_id, match.group(1), props))
        return found


def _read_pci(machine: Any, ports: HmpPorts) -> list[PciFunction]:
    out: list[PciFunction] = []

    def walk(devices: Iterable[dict[str, Any]]) -> None:
        for dev in devices:
            bus, slot, fn = dev["bus"], dev["slot"], dev["function"]
            command = ports.read_config(bus, slot, fn, 0x04, 2)
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

    for bus in machine.qmp("query-pci"):
        walk(bus["devices"])
    return out


def _window(w: dict[str, int] | None) -> Window | None:
    return Window(w["base"], w["limit"]) if w else None


def _read_pirq(kind: str, ports: HmpPorts) -> PirqRouting | None:
    if kind not in PIRQ_REGISTERS:
        return None
    (bus, slot, fn), registers = PIRQ_REGISTERS[kind]
    raw: dict[str, int] = {}
    for first in sorted({off & ~3 for off in registers.values()}):
        dword = ports.read_config(bus, slot, fn, first, 4)
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

    @property
    def owner_key(self) -> tuple[str | None, ...]:
        if self.owner_kind == "dev":
            return ("dev", self.owner)
        return ("obj", self.owner, self.name.split(" @")[0])


_LINE_RE = re.compile(r"^(\s*)([0-9a-f]{16})-([0-9a-f]{16}) \(prio (-?\d+), ([\w/]+)\): (.*)$")
_OWNER_RE = re.compile(r"\s+(owner|parent):\{(dev|obj) (id|path)=([^}]*)\}\s*$")


def _parse_line(line: str) -> MtreeRegion | None:
    match = _LINE_RE.match(line)
    if not match:
        return None
    indent, start, end, prio, kind, rest = match.groups()
    owner_kind = owner_ref = owner = None
    om = _OWNER_RE.search(rest)
    if om:
        owner_kind, owner_ref, owner = om.group(2), om.group(3), om.group(4)
        rest = rest[:om.start()]
    rest = rest.replace(" [disabled]", "")
    alias = rest.startswith("alias ")
    return MtreeRegion(len(indent) // 2, int(start, 16), int(end, 16), int(prio), kind,
                       rest.strip(), owner_kind, owner_ref, owner, alias)


def parse_mtree_flat(text: str) -> dict[str, list[MtreeRegion]]:
    """``info mtree -f -o`` → {address-space name: regions} for every FlatView."""
    views: dict[str, list[MtreeRegion]] = {}
    names: list[str] = []
    current: list[MtreeRegion] | None = None
    for line in text.splitlines():
        if line.startswith("FlatView #"):
            names, current = [], []
            continue
        m = re.match(r'\s*AS "([^"]+)"', line)
        if m and current is not None and not current:
            names.append(m.group(1))
            views[m.group(1)] = current
            continue
        region = _parse_line(line)
        if region is not None and current is not None:
            current.append(region)
    return views


def parse_mtree_tree(text: str) -> dict[str, list[MtreeRegion]]:
    """``info mtree -o`` → {address-space name: regions in tree order, with depth}."""
    spaces: dict[str, list[MtreeRegion]] = {}
    current: list[MtreeRegion] | None = None
    for line in text.splitlines():
        m = re.match(r"(address-space|memory-region): (.+)$", line)
        if m:
            current = spaces.setdefault(m.group(2).strip(), []) if m.group(1) == "address-space" else None
            continue
        region = _parse_line(line)
        if region is not None and current is not None:
            if current and region.depth > current[-1].depth:
                current[-1] = dataclasses.replace(current[-1], has_children=True)
            current.append(region)
    return spaces


def _is_background(region: MtreeRegion) -> bool:
    """The PCI I/O space's own region shows through where no device decodes: not a device."""
    return region.owner_kind == "obj" and region.name.split(" @")[0] == "io"


def compute_shadowed(tree: list[MtreeRegion], flat: list[MtreeRegion], space: str):
    """Regions of the tree whose addresses the flat view gives to someone else.

    Skipped: the root, containers without an owning device (the PCI hole, the I/O root),
    RAM, negative priorities, and everything inside an alias (its addresses are the
    alias target's, not absolute; devices behind bridges appear in the flat view).
    """
    out = []
    alias_depth: int | None = None
    for region in tree:
        if alias_depth is not None:
            if region.depth > alias_depth:
                continue
            alias_depth = None
        if region.alias:
            alias_depth = region.depth
            continue
        if region.depth <= 1 or region.priority < 0 or region.kind == "ram":
            continue
        if region.has_children and region.owner_kind != "dev":
            continue
        key = region.owner_key
        visible = [f for f in flat if f.start <= region.end and f.end >= region.start]
        for piece in _gaps(region.start, region.end,
                           [(f.start, f.end) for f in visible if f.owner_key == key]):
            winners = tuple(f for f in visible if f.start <= piece[1] and f.end >= piece[0]
                            and f.owner_key != key and not _is_background(f))
            if winners:
                out.append((region, piece[0], piece[1], winners, space))
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
            out.append(f"  {s.space} {s.start:#x}-{s.end:#x} {s.name} of {s.owner or '-'} "
                       f"hidden by {', '.join(s.hidden_by)}")
    return "\n".join(out) + "\n"
