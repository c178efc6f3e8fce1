"""Every device model against live QEMU (TCG): what the model says is what QEMU decodes.

Models are booted several to a machine where their decodes do not clash (a greedy
packing by ports, memory, IRQ and DMA; PCI models each in a slot of their own), once per
machine type they support; the firmware runs, and from one snapshot every member is
checked: its decoded port and memory ranges (exactly, as sets, against ``info mtree
-f``), its resource properties and PCI identity and BARs (against the QOM/query-pci
layout and against ``info qtree``), and its probe through HMP port I/O.  A second pass
boots the ISA models with non-default jumpers, proving that each model's relative layout
moves with the base.  Each (model, machine) is still a test of its own: the boot is
shared, the verdict is not.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import pytest

from harness.config import BUILTIN_IDE, DeviceSpec, MachineSpec, parse_machine_text
from harness.devices import DeviceModel, load_catalog
from harness.qemu.bus import HmpPorts
from harness.qemu.layout import ISA_RESOURCE_PROPERTIES, Layout, snapshot
from harness.qemu.machine import Machine

pytestmark = pytest.mark.qemu

CATALOG = load_catalog()
#: The models issues 2 and 17 ask for; the catalog may grow, never lose one of these.
REQUIRED_MODELS = {
    "isa-serial", "isa-parallel", "ne2k_isa", "sb16", "adlib", "gus", "cs4231a", "isa-fdc",
    "floppy", "isa-ide", "ib700", "isa-debugcon", "isa-debug-exit", "pvpanic",
    "e1000", "e1000e", "rtl8139", "ne2k_pci", "pci-testdev", "virtio-net-pci",
    "pci-bridge", "pcie-root-port",
    # issue 17
    "VGA", "cirrus-vga", "isa-vga", "isa-cirrus-vga", "pc-testdev", "isa-ipmi-kcs",
    "isa-ipmi-bt", "ide-cd", "ide-hd", "edu", "ich9-ahci", "lsi53c895a", "megasas",
    "piix3-usb-uhci", "usb-ehci", "qemu-xhci", "intel-hda", "AC97", "ES1370", "i6300esb",
    "pcnet", "vmxnet3", "virtio-blk-pci", "pci-serial", "pci-serial-2x", "pci-serial-4x",
    "pvpanic-pci", "isa-applesmc", "sga",
}
FIRST_SLOT = 5  # PCI members of a boot take slots 5, 6, ...
MAX_PER_BOOT = 8  # keeps one failed boot's report readable
#: Models whose checks are their own tests (a drive decodes nothing itself).
OWN_TESTS = {"floppy", "ide-hd", "ide-cd"}
#: Models that use another's registers without decoding them: sgabios programs COM1's
#: FIFO, so a 16550 booted with it fails its idle-state probe.
USES = {"sga": {"isa-serial"}}

#: A jumper setting other than QEMU's default for every ISA model that has settings.
NON_DEFAULT: dict[str, dict[str, Any]] = {
    "isa-serial": {"iobase": 0x2e8, "irq": 5},
    "isa-parallel": {"iobase": 0x278, "irq": 5},
    "ne2k_isa": {"iobase": 0x280, "irq": 11},
    "sb16": {"iobase": 0x240, "irq": 10, "dma": 3, "dma16": 7},
    "adlib": {"iobase": 0x240},
    "gus": {"iobase": 0x220, "irq": 11, "dma": 1},
    "cs4231a": {"iobase": 0xe84, "irq": 10, "dma": 1},
    "isa-fdc": {"iobase": 0x370, "irq": 5, "dma": 3},
    "isa-ide": {"iobase": 0x170, "iobase2": 0x376, "irq": 15},
    "isa-debugcon": {"iobase": 0x402},  # the firmware log's port: that debugcon is left out
    "isa-debug-exit": {"iobase": 0xf4, "iosize": 4},
    "pvpanic": {"ioport": 0x5a0},
    "isa-ipmi-kcs": {"ioport": 0xca8, "irq": 7},
    "isa-ipmi-bt": {"ioport": 0xe8, "irq": 9},
    "isa-applesmc": {"iobase": 0x320},
}

#: SB16 mixer registers 0x80/0x81 report the IRQ and DMA the card was built with
#: (qemu-facts.md §2): an independent check that the settings reached the card.
SB16_IRQ_BITS = {9: 0x01, 5: 0x02, 7: 0x04, 10: 0x08}


# ---------------------------------------------------------------------- helpers
@dataclass
class Failures:
    """Collects every mismatch of one device, so one report shows all of them."""
    items: list[str] = field(default_factory=list)

    def check(self, ok: bool, message: str) -> None:
        if not ok:
            self.items.append(message)

    def raise_if_any(self, context: str) -> None:
        if self.items:
            pytest.fail(f"{context}:\n  " + "\n  ".join(self.items), pytrace=False)


def _yaml_value(value: Any) -> str:
    return hex(value) if isinstance(value, int) and not isinstance(value, bool) else repr(value)


def _device_line(model: str, dev_id: str, **extra: Any) -> str:
    items = [f"model: {model}", f"id: {dev_id}"] + [f"{k}: {_yaml_value(v)}" for k, v in extra.items()]
    return "  - {" + ", ".join(items) + "}\n"


@contextmanager
def booted(text: str) -> Iterator[tuple[Machine, MachineSpec, Layout]]:
    """Launch the machine described by ``text``, run the firmware, take a snapshot."""
    spec = parse_machine_text(text, "<test_device_models>")
    with Machine(spec) as machine:
        machine.run_firmware()
        yield machine, spec, snapshot(machine)


def _fmt_ranges(ranges) -> str:
    return "{" + ", ".join(f"{a:#x}-{b:#x}" for a, b in sorted(ranges)) + "}" if ranges else "{}"


def run_probe(ports: HmpPorts, model: DeviceModel, settings: Mapping[str, Any]) -> list[str]:
    """Run the model's probe at the configured base; the failed reads, described."""
    base = int(settings[model.probe_base])
    failures = []
    for i, step in enumerate(model.probe):
        port = base + step.offset
        if step.op == "write":
            ports.write_port(port, step.value, step.size)
            continue
        got = ports.read_port(port, step.size)
        if got & step.mask != step.value:
            failures.append(f"probe step {i}: read {port:#x} gave {got:#x}, expected {step.value:#x} "
                            f"under mask {step.mask:#x}")
    return failures


# ---------------------------------------------------------------------- info qtree
@dataclass
class QtreeDevice:
    driver: str
    bus: str  # the name of the bus it hangs on ("isa.0", "pci.0", "ide.1", ...)
    props: dict[str, str]
    lines: list[str]


def parse_qtree(text: str) -> dict[str, QtreeDevice]:
    """Devices with an id, from HMP ``info qtree``: their bus and property lines."""
    out: dict[str, QtreeDevice] = {}
    stack: list[tuple[int, str]] = []  # (indent, bus name)
    current: tuple[int, QtreeDevice] | None = None
    for line in text.splitlines():
        indent = len(line) - len(line.lstrip())
        body = line.strip()
        if current is not None and indent <= current[0]:
            current = None
        bus = re.match(r"bus: (\S+)", body)
        if bus:
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, bus.group(1)))
            continue
        dev = re.match(r'dev: ([^,]+), id "([^"]*)"', body)
        if dev:
            while stack and stack[-1][0] >= indent:
                stack.pop()
            item = QtreeDevice(dev.group(1), stack[-1][1] if stack else "", {}, [])
            if dev.group(2):
                out[dev.group(2)] = item
            current = (indent, item)
            continue
        if current is not None:
            current[1].lines.append(body)
            prop = re.match(r"([\w-]+) = (\S+)", body)
            if prop:
                current[1].props.setdefault(prop.group(1), prop.group(2))
    return out


def _qtree_int(text: str) -> int | None:
    try:
        return int(text, 0)
    except ValueError:
        return None


# ---------------------------------------------------------------------- checks
def _owned(layout: Layout, dut: DeviceSpec, space: str) -> set[tuple[int, int]]:
    """Ranges attributed to ``dut`` in the flat view (a model's ownerless regions, which
    QEMU registers with no owner, are attributed by the layout from the model)."""
    return {(r.start, r.end) for r in layout.ranges_of(dut.id, space)}


def check_isa(fails: Failures, dut: DeviceSpec, layout: Layout, machine: Machine,
              qtree: dict[str, QtreeDevice]) -> None:
    model = dut.model
    resources = dut.decoded_resources()
    for space, kind in (("io", "port"), ("memory", "memory")):
        expected = {(a, b) for k, a, b in resources if k == kind}
        decoded = _owned(layout, dut, space)
        fails.check(expected == decoded, f"{kind}s: model {_fmt_ranges(expected)}, QEMU decodes "
                                         f"{_fmt_ranges(decoded)} for {dut.id}")
    hidden = [(s.start, s.end) for s in layout.shadowed if s.owner == dut.id]
    fails.check(not hidden, f"{dut.id}'s ranges {_fmt_ranges(hidden)} are shadowed by another device")

    node = qtree.get(dut.id)
    fails.check(node is not None and node.driver == model.qemu_driver and node.bus.startswith("isa"),
                f"info qtree: {dut.id} is not a {model.qemu_driver} on the ISA bus ({node})")
    try:
        isa = layout.isa_device(dut.id).properties
    except KeyError:
        fails.check(False, f"{dut.id} is not among the snapshot's ISA devices")
        return
    for prop, value in dut.settings.items():
        if prop in ISA_RESOURCE_PROPERTIES:
            fails.check(isa.get(prop) == value, f"QOM {prop} = {isa.get(prop)!r}, settings say {value:#x}")
            if node is not None:
                fails.check(_qtree_int(node.props.get(prop, "")) == value,
                            f"info qtree {prop} = {node.props.get(prop)!r}, settings say {value:#x}")
    # The model must name every IRQ and DMA property QEMU reports for the device.
    for kind, qom_names in (("irq", ("irq",)), ("dma", ("dma", "dma16"))):
        from_model = {a for k, a, _ in resources if k == kind}
        from_qemu = {v for k, v in isa.items() if k in qom_names}
        fails.check(from_model == from_qemu, f"{kind}: model {sorted(from_model)}, QEMU {sorted(from_qemu)}")

    if model.probe:
        for failure in run_probe(HmpPorts(machine), model, dut.settings):
            fails.check(False, failure)
    else:
        check_presence_reads(fails, dut, HmpPorts(machine))
    if model.name == "sga":
        roms = machine.hmp("info roms")
        fails.check("sgabios" in roms, f"no sgabios option ROM in info roms:\n{roms}")


#: Probe-less ISA models whose ports read as an empty bus: nothing can show them present.
SILENT_TO_READS = {"ib700"}
#: Ports of a decoded range that answer only wider reads: a byte read gives 0xff.
WORD_ONLY_PORTS = {"isa-vga": (0x1CE, 0x1D1)}   # the VBE DISPI index/data ports


def check_presence_reads(fails: Failures, dut: DeviceSpec, ports: HmpPorts) -> None:
    """A probe-less model is found by the probe guest's byte reads of its presence range
    (harness/guests/probe.py): some byte there must read other than 0xff."""
    presence = dut.model.presence_ports(dut.settings)
    if presence is None:
        return
    reads = [ports.read_port(p) for p in range(presence[0], min(presence[1], presence[0] + 63) + 1)]
    answers = any(v != 0xFF for v in reads)
    if dut.model.name in SILENT_TO_READS:
        fails.check(not answers, f"{presence[0]:#x}-{presence[1]:#x} now answers byte reads: {reads}")
    else:
        fails.check(answers, f"byte reads of the presence range {presence[0]:#x}-{presence[1]:#x} all give 0xff")
    if dut.model.name in WORD_ONLY_PORTS:
        lo, hi = WORD_ONLY_PORTS[dut.model.name]
        silent = [ports.read_port(p) for p in range(lo, hi + 1)]
        fails.check(all(v == 0xFF for v in silent), f"byte reads of {lo:#x}-{hi:#x} gave {silent}: they answer")
        fails.check(ports.read_port(lo, 2) != 0xFFFF, f"a 16-bit read of {lo:#x} does not answer either")
        fails.check(not presence[0] <= lo <= presence[1], f"the presence range holds {lo:#x}-{hi:#x}")


def check_pci(fails: Failures, dut: DeviceSpec, layout: Layout, machine: Machine,
              qtree: dict[str, QtreeDevice]) -> None:
    model = dut.model
    pci = model.pci
    assert pci is not None
    try:
        fn = layout.pci_by_id(dut.id)
    except KeyError:
        fails.check(False, f"{dut.id} is not in query-pci")
        return
    fails.check((fn.bus, fn.slot, fn.function) == (0, dut.slot, 0), f"{dut.id} is at {fn.bdf}")
    fails.check((fn.vendor, fn.device) == (pci.vendor, pci.device),
                f"id {fn.vendor:04x}:{fn.device:04x}, model {pci.vendor:04x}:{pci.device:04x}")
    fails.check(fn.class_code == pci.class_code, f"class {fn.class_code:#06x}, model {pci.class_code:#06x}")
    fails.check(fn.interrupt_pin == pci.interrupt_pin, f"pin {fn.interrupt_pin}, model {pci.interrupt_pin}")
    fails.check(fn.header_type == (1 if model.bridge else 0), f"header type {fn.header_type}")
    # The identity through configuration mechanism #1, as a driver reads it.
    ports = HmpPorts(machine)
    ident = ports.read_config(fn.bus, fn.slot, fn.function, 0x00, 4)
    fails.check(ident == pci.device << 16 | pci.vendor, f"config dword 0 = {ident:#010x}")

    got = {(b.index, b.kind, b.size, b.is_64bit, b.prefetchable) for b in fn.bars}
    want = {(b.index, b.kind, b.size, b.is_64bit, b.prefetchable) for b in pci.bars}
    fails.check(got == want, f"BARs: QEMU {sorted(got)}, model {sorted(want)}")
    unassigned = [b.index for b in fn.bars if b.base is None]
    fails.check(not unassigned, f"BARs {unassigned} not assigned by the firmware")
    kinds = {b.kind for b in fn.bars}
    fails.check(("io" not in kinds or fn.command & 1) and ("memory" not in kinds or fn.command & 2),
                f"command {fn.command:#06x} does not enable the BARs' decode")

    # info qtree says the same: identity and every BAR with its address.
    node = qtree.get(dut.id)
    if node is None or node.driver != model.qemu_driver:
        fails.check(False, f"info qtree: no {model.qemu_driver} with id {dut.id}")
    else:
        text = "\n".join(node.lines)
        fails.check(f"pci id {pci.vendor:04x}:{pci.device:04x}" in text, f"info qtree: no pci id in {text!r}")
        for bar in fn.bars:
            if bar.base is None or bar.kind == "rom":
                continue
            kind = "i/o" if bar.kind == "io" else "mem"
            fails.check(re.search(rf"bar {bar.index}: {kind} at 0x{bar.base:x} \[0x{bar.end:x}\]", text)
                        is not None, f"info qtree does not show BAR{bar.index} at {bar.base:#x}")

    # A PCI model's own ports are its I/O BARs, which QEMU maps whole, and its fixed
    # legacy decodes (a VGA's 0x3c0...); memory the same with the memory BARs.
    fixed = dut.decoded_resources()
    io_owned = _owned(layout, dut, "io")
    io_bars = {(b.base, b.end) for b in fn.bars if b.kind == "io" and b.base is not None}
    io_fixed = {(a, b) for k, a, b in fixed if k == "port"}
    in_bars = {r for r in io_owned if any(lo <= r[0] and r[1] <= hi for lo, hi in io_bars)}
    fails.check(_merged(in_bars) == _merged(io_bars),
                f"I/O decoded inside the BARs {_fmt_ranges(in_bars)}, I/O BARs {_fmt_ranges(io_bars)}")
    fails.check(io_owned - in_bars == io_fixed,
                f"I/O decoded outside the BARs {_fmt_ranges(io_owned - in_bars)}, fixed {_fmt_ranges(io_fixed)}")
    mem_bars = [(b.base, b.end) for b in fn.bars if b.kind == "memory" and b.base is not None]
    mem_fixed = {(a, b) for k, a, b in fixed if k == "memory"}
    outside = set()
    for a, b in _owned(layout, dut, "memory"):
        if not any(lo <= a and b <= hi for lo, hi in mem_bars):
            outside.add((a, b))
    fails.check(outside == mem_fixed, f"memory outside every BAR {_fmt_ranges(outside)}, "
                                      f"model's fixed memory {_fmt_ranges(mem_fixed)}")
    if model.memdev_size is not None:  # its RAM backend, owned by an object, is the device's BAR
        shared = {(b.base, b.end) for b in fn.bars if b.kind == "memory" and b.size == model.memdev_size}
        fails.check(bool(shared) and shared <= _owned(layout, dut, "memory"),
                    f"the RAM backend's BAR {_fmt_ranges(shared)} is not {dut.id}'s in the flat view")
    if model.bridge:
        check_bridge(fails, fn, layout, f"{dut.id}b")


# ---------------------------------------------------------------------- boot plans
@dataclass(frozen=True)
class Member:
    model: str
    dev_id: str
    settings: tuple[tuple[str, Any], ...] = ()


def _footprint(model: DeviceModel, settings: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    return model.decoded_resources({**model.defaults_for(0), **settings})


def _clash(a: list[tuple[str, int, int]], b: list[tuple[str, int, int]]) -> bool:
    return any(ka == kb and sa <= eb and sb <= ea for ka, sa, ea in a for kb, sb, eb in b)


def _uses(a: str, b: str) -> bool:
    return b in USES.get(a, ()) or a in USES.get(b, ())


def _merged(ranges) -> list[tuple[int, int]]:
    """Adjacent or overlapping ranges as one (a BAR QEMU splits into subregions)."""
    out: list[list[int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def plan(machine: str, cases: list[tuple[str, dict[str, Any]]]) -> list[list[Member]]:
    """Pack ``cases`` (model, settings) into boots whose members' decodes do not clash."""
    boots: list[tuple[list[Member], list[tuple[str, int, int]]]] = []
    for name, settings in cases:
        model = CATALOG[name]
        foot = _footprint(model, settings)
        for members, used in boots:
            if len(members) < MAX_PER_BOOT and not _clash(foot, used) \
                    and not (model.bridge and any(CATALOG[m.model].bridge for m in members)) \
                    and not any(_uses(name, m.model) for m in members) \
                    and not (model.graphic_console == "first"
                             and any(CATALOG[m.model].graphic_console == "first" for m in members)) \
                    and not (model.one_per_machine
                             and any(CATALOG[m.model].one_per_machine == model.one_per_machine for m in members)):
                break
        else:
            members, used = [], []
            boots.append((members, used))
        members.append(Member(name, f"d{len(members)}", tuple(sorted(settings.items()))))
        used += foot
    return [members for members, _ in boots]


def _machine_text(machine: str, members: list[Member]) -> str:
    lines = ""
    slot = FIRST_SLOT
    # A model that must be QEMU's console 0 (qxl-vga) goes first (config enforces it).
    for member in sorted(members, key=lambda m: CATALOG[m.model].graphic_console != "first"):
        model = CATALOG[member.model]
        extra = dict(member.settings)
        if model.pci is not None:
            extra["addr"] = slot
            slot += 1
        lines += _device_line(member.model, member.dev_id, **extra)
        if model.bridge == "pci-bridge":
            lines += _device_line("pci-testdev", f"{member.dev_id}b", bus=member.dev_id, addr=1)
        elif model.bridge == "pcie-root-port":
            lines += _device_line("e1000e", f"{member.dev_id}b", bus=member.dev_id, addr=0)  # slot 0 only
    return f"machine: {machine}\nfirmware_log: false\ndevices:\n{lines}"


DEFAULT_BOOTS = {
    machine: plan(machine, [(n, {}) for n in sorted(CATALOG)
                            if machine in CATALOG[n].machines and n not in OWN_TESTS])
    for machine in ("pc", "q35", "isapc")
}
JUMPER_BOOTS = {
    machine: plan(machine, [(n, s) for n, s in sorted(NON_DEFAULT.items()) if CATALOG[n].machines[0] == machine])
    for machine in ("pc", "q35", "isapc")
}
_RESULTS: dict[tuple[str, str, int], dict[str, list[str]]] = {}


def _extra_checks(fails: Failures, dut: DeviceSpec, layout: Layout, machine: Machine) -> None:
    """For non-default jumpers: the layout moved with the base, and the SB16 says so."""
    model = dut.model
    defaults = model.defaults_for(0)
    # dut decodes no port of its default ranges, except the fixed ones (adlib 0x388, gus MIDI 0x300).
    fixed = {(f.start, f.start + f.length - 1) for f in model.fixed if f.kind == "port"}
    at_default = {(a, b) for k, a, b in model.decoded_resources(defaults) if k == "port"} - fixed
    stale = {r for r in _owned(layout, dut, "io") if any(r[0] <= b and a <= r[1] for a, b in at_default)}
    fails.check(not stale, f"{dut.id} still decodes {_fmt_ranges(stale)}, inside its default ranges")
    if model.name == "sb16":
        ports = HmpPorts(machine)
        base = dut.settings["iobase"]
        ports.write_port(base + 4, 0x80)
        irq_bits = ports.read_port(base + 5)
        ports.write_port(base + 4, 0x81)
        dma_bits = ports.read_port(base + 5)
        want_dma = 1 << dut.settings["dma"] | 1 << dut.settings["dma16"]
        fails.check(irq_bits == SB16_IRQ_BITS[dut.settings["irq"]], f"mixer IRQ bits {irq_bits:#x}")
        fails.check(dma_bits == want_dma, f"mixer DMA bits {dma_bits:#x}, expected {want_dma:#x}")


def boot_results(kind: str, machine_kind: str, index: int) -> dict[str, list[str]]:
    """Boot plan ``index`` once and check every member; model name -> its failures."""
    key = (kind, machine_kind, index)
    if key in _RESULTS:
        return _RESULTS[key]
    members = (DEFAULT_BOOTS if kind == "default" else JUMPER_BOOTS)[machine_kind][index]
    results: dict[str, list[str]] = {}
    try:
        with booted(_machine_text(machine_kind, members)) as (machine, spec, layout):
            qtree = parse_qtree(machine.hmp("info qtree"))
            for member in members:
                dut = spec.device(member.dev_id)
                fails = Failures()
                if dut.model.pci is not None:
                    check_pci(fails, dut, layout, machine, qtree)
                else:
                    check_isa(fails, dut, layout, machine, qtree)
                if kind == "jumpers":
                    _extra_checks(fails, dut, layout, machine)
                results[member.model] = fails.items
    except Exception as exc:  # the boot failed: every member fails with the reason
        results = {m.model: [f"boot with {[x.model for x in members]} failed: {exc}"] for m in members}
    _RESULTS[key] = results
    return results


def _cases(boots: dict[str, list[list[Member]]], kind: str) -> list[Any]:
    return [pytest.param(kind, machine, i, m.model, id=f"{m.model}-{machine}")
            for machine, plans in boots.items() for i, members in enumerate(plans) for m in members]


# ---------------------------------------------------------------------- catalog
def test_catalog_has_every_required_model() -> None:
    assert REQUIRED_MODELS <= set(CATALOG), f"missing models: {sorted(REQUIRED_MODELS - set(CATALOG))}"
    assert len(CATALOG) >= 40


def test_every_isa_model_with_settings_has_a_non_default_case() -> None:
    with_settings = {n for n, m in CATALOG.items() if m.bus == "isa" and m.settings}
    assert with_settings == set(NON_DEFAULT), (
        f"no NON_DEFAULT case for {sorted(with_settings - set(NON_DEFAULT))}; "
        f"stale cases {sorted(set(NON_DEFAULT) - with_settings)}")


def test_every_model_is_booted_on_every_machine_it_supports() -> None:
    planned = {(m.model, machine) for machine, plans in DEFAULT_BOOTS.items() for ms in plans for m in ms}
    planned |= {(n, machine) for n in OWN_TESTS for machine in CATALOG[n].machines}
    wanted = {(n, machine) for n, model in CATALOG.items() for machine in model.machines}
    assert planned == wanted


def test_boot_plans_never_put_clashing_decodes_together() -> None:
    for plans in (*DEFAULT_BOOTS.values(), *JUMPER_BOOTS.values()):
        for members in plans:
            feet = [_footprint(CATALOG[m.model], dict(m.settings)) for m in members]
            for i, a in enumerate(feet):
                for b in feet[i + 1:]:
                    assert not _clash(a, b), [m.model for m in members]
    # and the packing does share boots: far fewer boots than models
    assert sum(map(len, DEFAULT_BOOTS.values())) * 3 < sum(len(m) for p in DEFAULT_BOOTS.values() for m in p)


def test_qtree_parser_reads_buses_and_properties() -> None:
    text = ('bus: main-system-bus\n  dev: i440FX-pcihost, id ""\n    bus: pci.0\n'
            '      dev: piix3-ide, id ""\n        bus: ide.1\n          dev: ide-cd, id "cd"\n'
            '            unit = 0 (0x0)\n      dev: PIIX3, id ""\n        bus: isa.0\n'
            '          dev: isa-serial, id "com1"\n            index = 0 (0x0)\n'
            '            iobase = 1016 (0x3f8)\n')
    tree = parse_qtree(text)
    assert tree["cd"].bus == "ide.1" and tree["cd"].props["unit"] == "0"
    assert tree["com1"].bus == "isa.0" and tree["com1"].driver == "isa-serial"
    assert _qtree_int(tree["com1"].props["iobase"]) == 0x3f8


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_model_is_consistent(name: str) -> None:
    model = CATALOG[name]
    for defaults in model.instance_defaults:
        for prop, value in defaults.items():
            choices = model.properties[prop].choices
            assert not choices or value in choices, f"default {prop}={value} is not one of the jumper choices"
    if model.probe:
        assert model.probe_base in (d.base for d in model.ports), "the probe base decodes no ports"
        assert all(s.op == "read" for s in model.probe) or model.qemu_driver != "isa-debug-exit", \
            "a write to isa-debug-exit ends QEMU"
    if model.bus == "pcie" and model.bridge:
        assert model.machines == ("q35",), "a PCIe root port needs q35's root complex"
    for prop, value in NON_DEFAULT.get(name, {}).items():
        choices = model.properties[prop].choices
        assert not choices or value in choices, f"{prop}={value:#x} is not one of the card's choices"


# ---------------------------------------------------------------------- booted models
@pytest.mark.parametrize(("kind", "machine_kind", "index", "name"), _cases(DEFAULT_BOOTS, "default"))
def test_model(kind: str, machine_kind: str, index: int, name: str) -> None:
    failures = boot_results(kind, machine_kind, index)[name]
    if failures:
        pytest.fail(f"{name} on {machine_kind}:\n  " + "\n  ".join(failures), pytrace=False)


@pytest.mark.parametrize(("kind", "machine_kind", "index", "name"), _cases(JUMPER_BOOTS, "jumpers"))
def test_model_non_default_jumpers(kind: str, machine_kind: str, index: int, name: str) -> None:
    model = CATALOG[name]
    settings = NON_DEFAULT[name]
    assert any(model.defaults_for(0).get(p) != v for p, v in settings.items() if model.properties[p].setting), \
        "NON_DEFAULT must change at least one setting"
    failures = boot_results(kind, machine_kind, index)[name]
    if failures:
        pytest.fail(f"{name} on {machine_kind} with {settings}:\n  " + "\n  ".join(failures), pytrace=False)


def test_serial_and_parallel_index_pick_the_port() -> None:
    """'index' (QEMU's COM/LPT number) picks the base and IRQ, and QEMU agrees."""
    text = ("machine: isapc\nfirmware_log: false\ndevices:\n" + _device_line("isa-serial", "com3", index=2)
            + _device_line("isa-serial", "com4", index=3) + _device_line("isa-parallel", "lpt2", index=1))
    with booted(text) as (machine, spec, layout):
        qtree = parse_qtree(machine.hmp("info qtree"))
        fails = Failures()
        for dev_id, index in (("com3", 2), ("com4", 3), ("lpt2", 1)):
            dut = spec.device(dev_id)
            fails.check(dict(dut.settings) == {**dut.model.defaults_for(index), "index": index},
                        f"{dev_id}: settings {dict(dut.settings)}")
            check_isa(fails, dut, layout, machine, qtree)
        fails.raise_if_any("isa-serial/isa-parallel index")


# ---------------------------------------------------------------------- graphic consoles
#: The model whose launch shows which devices take a graphic console: QEMU refuses it
#: unless it is console 0.
CONSOLE_0 = "qxl-vga"
CONSOLE_0_SLOT = 0x1E  # free on pc and q35, above the boot plans' slots


def _argv(text: str, tmp_path) -> list[str]:
    from harness.qemu.machine import build_argv, create_drive_images
    spec = parse_machine_text(text, "<launch>")
    create_drive_images(spec, tmp_path)
    return build_argv(spec, tmp_path, "tcg")


def _device_arg(argv: list[str], dev_id: str) -> int:
    """The index of device ``dev_id``'s -device value in ``argv``."""
    return next(i for i, a in enumerate(argv) if i and argv[i - 1] == "-device" and f",id={dev_id}," in a + ",")


def _qemu_answer(text: str, last: str, tmp_path, then: str | None = None) -> str:
    """Launch the machine of ``text`` (-S, no firmware run) with device ``last`` moved to
    the end of QEMU's command line (the order config refuses for a console-0 model), or
    with the device of machine text ``then`` added after it (a pair config refuses);
    quit at once.  QEMU's error output ('' if it started)."""
    argv = _argv(text, tmp_path)
    at = _device_arg(argv, last)
    argv = argv[:at - 1] + argv[at + 1:] + argv[at - 1:at + 1]
    if then is not None:
        more = _argv(then, tmp_path)
        at = _device_arg(more, "b")
        argv += more[at - 1:at + 1]
    return _launch(argv)


def _launch(argv: list[str]) -> str:
    """Start QEMU paused and quit at once: its error output ('' if it started)."""
    import subprocess
    done = subprocess.run(argv + ["-monitor", "stdio"], input="quit\n", capture_output=True, text=True, timeout=60)
    return done.stderr if done.returncode else ""


def test_root_bus_only_models_are_what_qemu_does(tmp_path) -> None:
    """A model QEMU takes only on the root bus: behind a pci-bridge QEMU refuses it (config
    refuses the file first); that no other PCI model needs the key shows in
    tests/test_snapreuse.py, which boots every PCI model behind a bridge."""
    names = sorted(n for n, m in CATALOG.items() if m.root_bus_only)
    assert names, "no root-bus-only model left to measure"
    fails = Failures()
    for name in names:
        head = f"machine: pc\nfirmware_log: false\ndevices:\n{_device_line('pci-bridge', 'br', addr=FIRST_SLOT)}"
        argv = _argv(head + _device_line(name, "b", addr=FIRST_SLOT + 1), tmp_path)
        at = _device_arg(argv, "b")
        argv[at] = argv[at].replace(f",addr={FIRST_SLOT + 1:#x}.0", ",bus=br,addr=0x1.0")
        err = _launch(argv)
        fails.check("root bus" in err, f"{name} behind a pci-bridge: QEMU said {err.strip()!r}")
        with pytest.raises(Exception, match="only on the root bus"):
            parse_machine_text(head + _device_line(name, "b", bus="br", addr=1), "<behind>")
    fails.raise_if_any("root bus only")


def _console_machine(model: DeviceModel) -> str | None:
    return next((m for m in ("pc", "q35") if m in model.machines), None)


def test_graphic_console_flags_are_what_qemu_does(tmp_path) -> None:
    """Every model that takes a graphic console says so (config then keeps a console-0
    model first): QEMU refuses a qxl-vga after exactly those.  Models that take none are
    launched in their shared boot plans with the qxl-vga last, which QEMU accepts."""
    fails = Failures()
    console_line = _device_line(CONSOLE_0, CONSOLE_0, addr=CONSOLE_0_SLOT)
    for name, model in sorted(CATALOG.items()):
        machine = _console_machine(model)
        if model.graphic_console != "none" and name != CONSOLE_0 and machine:
            text = f"machine: {machine}\nfirmware_log: false\ndevices:\n{console_line}" \
                   + _device_line(name, "dut", **({"addr": FIRST_SLOT} if model.pci else {}))
            err = _qemu_answer(text, CONSOLE_0, tmp_path)
            fails.check("console 0" in err, f"{name}: a qxl-vga after it was not refused ({err.strip()!r})")
    for machine in ("pc", "q35"):
        quiet = [(n, {}) for n, m in sorted(CATALOG.items()) if m.graphic_console == "none" and n not in OWN_TESTS
                 and _console_machine(m) == machine]
        for members in plan(machine, quiet):
            text = _machine_text(machine, members) + console_line
            err = _qemu_answer(text, CONSOLE_0, tmp_path)
            fails.check(not err, f"{[m.model for m in members]} + {CONSOLE_0} last on {machine}: {err.strip()!r}")
    fails.raise_if_any("graphic consoles")


def test_one_per_machine_groups_are_what_qemu_does(tmp_path) -> None:
    """Two devices of a one-per-machine group (config refuses the pair): QEMU refuses them
    too, for every model of the group (ISA VGAs, pvpanic, sga, balloons), paired with
    itself and with the group's first.
    That no other model needs the key shows in the shared-plan launches above."""
    groups: dict[str, list[str]] = {}
    for name, model in sorted(CATALOG.items()):
        if model.one_per_machine:
            groups.setdefault(model.one_per_machine, []).append(name)
    assert groups, "no one-per-machine model left to measure"
    fails = Failures()
    for group, names in groups.items():
        for name in names:
            for other in dict.fromkeys((name, names[0])):
                head = f"machine: {_console_machine(CATALOG[name])}\nfirmware_log: false\ndevices:\n"
                first, second = (_device_line(m, i, **({"addr": slot} if CATALOG[m].bus == "pci" else {}))
                                 for m, i, slot in ((other, "a", FIRST_SLOT), (name, "b", FIRST_SLOT + 1)))
                err = _qemu_answer(head + first, "a", tmp_path, then=head + second)
                fails.check(bool(err), f"{other} then {name}: QEMU took both ({group})")
                with pytest.raises(Exception, match=f"one {group} device per machine"):
                    parse_machine_text(head + first + second, "<pair>")
    fails.raise_if_any("one per machine")


def test_config_keeps_a_console_0_model_first() -> None:
    consoles = sorted(n for n, m in CATALOG.items() if m.graphic_console == "creates" and "pc" in m.machines)
    assert consoles, "no display model to put before the qxl-vga"
    before = f"machine: pc\ndevices:\n{_device_line(consoles[0], 'vga0')}{_device_line(CONSOLE_0, 'q0')}"
    with pytest.raises(Exception, match=r"<f>:4: devices\[1\]\.model: .*must be the first display device.*'vga0'"):
        parse_machine_text(before, "<f>")
    after = f"machine: pc\ndevices:\n{_device_line(CONSOLE_0, 'q0')}{_device_line(consoles[0], 'vga0')}"
    assert [d.id for d in parse_machine_text(after, "<f>").devices] == ["q0", "vga0"]


# ---------------------------------------------------------------------- floppy
@pytest.mark.parametrize(("name", "machine_kind"), [pytest.param("floppy", m, id=f"floppy-{m}") for m in CATALOG["floppy"].machines])
def test_floppy_model(name: str, machine_kind: str) -> None:
    # pc and isapc have a built-in FDC; q35 needs an isa-fdc named as the controller.
    if machine_kind == "q35":
        devices = _device_line("isa-fdc", "fdc") + "  - {model: %s, id: dut, controller: fdc}\n" % name
    else:
        devices = _device_line(name, "dut")
    with booted(f"machine: {machine_kind}\ndevices:\n{devices}") as (machine, spec, layout):
        dut = spec.device("dut")
        fails = Failures()
        fails.check(dut.decoded_resources() == [], "a drive should decode nothing itself")
        fails.check(layout.ranges_of("dut") == [], "QEMU shows ports owned by the drive")
        qom = "/machine/peripheral/dut"
        fails.check(machine.qmp("qom-get", {"path": qom, "property": "type"}) == dut.model.qemu_driver,
                    "dut is not a floppy device")
        # The blank 1.44 MB image made 'auto' resolve to a 1.44 MB drive.
        drive_type = machine.qmp("qom-get", {"path": qom, "property": "drive-type"})
        fails.check(drive_type == "144", f"drive-type resolved to {drive_type!r}")
        bus = machine.qmp("qom-get", {"path": qom, "property": "parent_bus"})
        if machine_kind == "q35":
            fails.check(bus.startswith("/machine/peripheral/fdc/"), f"drive is on {bus}, not on fdc")
        blocks = [b for b in machine.qmp("query-block") if b.get("qdev") == "dut"]
        fails.check(len(blocks) == 1 and "inserted" in blocks[0], f"no medium in dut: {blocks}")
        # QEMU writes the drive types of the first FDC into CMOS 0x10 (drive A: high nibble).
        ports = HmpPorts(machine)
        ports.write_port(0x70, 0x10)
        cmos = ports.read_port(0x71)
        fails.check(cmos >> 4 == 4, f"CMOS 0x10 = {cmos:#x}: drive A is not a 1.44 MB drive")
        # SeaBIOS read the blank disk's boot sector: the drive works through the controller.
        log = machine.firmware_log.read_text(errors="replace")
        fails.check("Booting from Floppy...\nBoot failed: not a bootable disk" in log,
                    "SeaBIOS did not read the floppy's boot sector")
        fails.raise_if_any(f"{name} on {machine_kind}")




# ---------------------------------------------------------------------- IDE drives
#: ATA status with a drive selected: DRDY | DSC (0x50) for a disk; an ATAPI drive
#: answers a packet signature instead and leaves DRDY clear until IDENTIFY PACKET.
ATA_READY = 0x50


@pytest.mark.parametrize("machine_kind", CATALOG["ide-hd"].machines)
def test_ide_drives_on_builtin_buses(machine_kind: str) -> None:
    """ide-hd and ide-cd on the machine's own IDE buses (ide.N), checked in info qtree and
    query-block; on pc and isapc the disk answers on the legacy command block."""
    channels, units = BUILTIN_IDE[machine_kind]
    cd_channel, cd_unit = (channels - 1, 0) if units == 1 else (0, 1)
    devices = ("  - {model: ide-hd, id: hd, channel: 0, unit: 0, serial: QM0001}\n"
               f"  - {{model: ide-cd, id: cd, channel: {cd_channel}, unit: {cd_unit}}}\n")
    with booted(f"machine: {machine_kind}\nfirmware_log: false\ndevices:\n{devices}") as (machine, spec, layout):
        fails = Failures()
        qtree = parse_qtree(machine.hmp("info qtree"))
        for dev_id, channel, unit in (("hd", 0, 0), ("cd", cd_channel, cd_unit)):
            dut = spec.device(dev_id)
            node = qtree.get(dev_id)
            fails.check(node is not None and node.driver == dut.model.qemu_driver and node.bus == f"ide.{channel}",
                        f"info qtree: {dev_id} is not a {dut.model.qemu_driver} on ide.{channel} ({node})")
            if node is not None:
                fails.check(_qtree_int(node.props.get("unit", "")) == unit, f"{dev_id} unit {node.props.get('unit')}")
            fails.check(dut.decoded_resources() == [] and _owned(layout, dut, "io") == set(),
                        f"{dev_id} decodes ports of its own")
        blocks = {b.get("qdev"): b for b in machine.qmp("query-block")}
        fails.check("inserted" in blocks.get("hd", {}), f"no medium in hd: {blocks.get('hd')}")
        fails.check(blocks.get("cd", {}).get("removable") is True and "inserted" not in blocks.get("cd", {}),
                    f"cd is not an empty removable drive: {blocks.get('cd')}")
        if units == 2:  # legacy command block at 0x1f0: select the master, read the status
            ports = HmpPorts(machine)
            ports.write_port(0x1F6, 0xA0)
            status = ports.read_port(0x1F7)
            fails.check(status & 0xD0 == ATA_READY, f"ide.0 master status {status:#x}, expected DRDY")
        fails.raise_if_any(f"IDE drives on {machine_kind}")


#: The PCI IDE models in compatibility mode, which decode the legacy channels and raise
#: their ISA lines (fixed_irq) with no property to say so.
PCI_IDE_MODELS = sorted(n for n, m in CATALOG.items() if m.pci and m.pci.class_code == 0x0101)


@pytest.mark.parametrize("name", PCI_IDE_MODELS)
def test_pci_ide_raises_its_fixed_isa_lines(name: str, tmp_path) -> None:
    """A disk on each channel of a compatibility-mode PCI IDE function (on pc, beside the
    board's own PIIX3 IDE, whose channels have no disk): the legacy command blocks answer
    with the device's disks (the device, mapped later, wins the ports), and IDENTIFY on
    each channel raises the model's fixed ISA line, read back from the slave 8259's IRR."""
    model = CATALOG[name]
    lines = sorted(f.start for f in model.fixed if f.kind == "irq")
    blocks = sorted(f.start for f in model.fixed if f.kind == "port" and f.length == 8)
    assert len(lines) == len(blocks) == 2, "one line and one command block per channel"
    extra: list[str] = []
    for channel in (0, 1):
        image = tmp_path / f"disk{channel}.img"
        image.write_bytes(b"\0" * 0x100000)
        extra += ["-drive", f"if=none,id=disk{channel},file={image},format=raw",
                  "-device", f"ide-hd,drive=disk{channel},bus=dut.{channel}"]
    spec = parse_machine_text(f"machine: pc\nfirmware_log: false\ndevices:\n{_device_line(name, 'dut', addr=FIRST_SLOT)}",
                              "<pci ide>")
    fails = Failures()
    with Machine(spec, extra_args=tuple(extra)) as machine:
        machine.run_firmware()
        ports = HmpPorts(machine)
        # Which channel drives which line: the primary block (0x1f0) the lower one.
        for base, line in zip(sorted(blocks, reverse=True), lines):
            ports.write_port(base + 0x206, 0x08)   # device control: nIEN clear (SeaBIOS sets it)
            ports.write_port(base + 6, 0xA0)       # select the master
            status = ports.read_port(base + 7)
            fails.check(status & 0xD0 == ATA_READY, f"{base:#x}: status {status:#x}, expected the device's disk")
            ports.write_port(0xA0, 0x0A)           # slave 8259 OCW3: reads give the IRR
            before = ports.read_port(0xA0)
            ports.write_port(base + 7, 0xEC)       # IDENTIFY DEVICE
            after = ports.read_port(0xA0)
            bit = 1 << (line - 8)
            fails.check(not before & bit and after & bit,
                        f"IDENTIFY on {base:#x}: slave IRR {before:#04x} -> {after:#04x}, expected IRQ {line}")
            ports.read_port(base + 7)              # status read: the drive drops its request
    fails.raise_if_any(f"{name} compatibility channels")


def check_bridge(fails: Failures, fn, layout: Layout, behind_id: str) -> None:
    """The device behind the bridge is on its secondary bus, its BARs inside the windows."""
    br = fn.bridge
    if br is None:
        fails.check(False, "query-pci shows no bridge information for dut")
        return
    fails.check(br.secondary >= 1 and br.subordinate >= br.secondary,
                f"bus numbers {br.secondary}-{br.subordinate}")
    try:
        child = layout.pci_by_id(behind_id)
    except KeyError:
        fails.check(False, "the device behind the bridge is not in query-pci")
        return
    fails.check(child.bus == br.secondary, f"device behind is on bus {child.bus}, bridge secondary {br.secondary}")
    for bar in child.bars:
        window = br.io if bar.kind == "io" else (br.prefetchable if bar.prefetchable else br.memory)
        fails.check(bar.base is not None and window is not None and window.enabled
                    and window.base <= bar.base and bar.end <= window.limit,
                    f"BAR{bar.index} of the device behind ({bar.base}) is outside the bridge's {bar.kind} window")
