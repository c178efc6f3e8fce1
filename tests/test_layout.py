"""The layout snapshot against real QEMU (TCG): phases, PCI, PIRQ, ISA, overlaps."""

from __future__ import annotations

import json

import pytest

from harness.qemu.bus import HmpPorts
from harness.qemu.layout import Layout, diff, format_text, snapshot
from harness.qemu.machine import Machine
from harness.config import load_machine
from helpers import CONFIGS, machine_spec

PC_PCI = """
machine: pc
devices:
  - {model: e1000, id: nic0, addr: 3}
  - {model: pci-bridge, id: br0, addr: 7}
  - {model: rtl8139, id: nic1, bus: br0, addr: 1}
"""


@pytest.fixture(scope="module")
def pc_phases() -> tuple[Layout, Layout, Layout]:
    with Machine(machine_spec(PC_PCI)) as m:
        before = snapshot(m)
        m.run_firmware()
        after = snapshot(m)
        again = snapshot(m)
    return before, after, again


def test_pre_firmware_pci_is_unprogrammed(pc_phases) -> None:
    before = pc_phases[0]
    assert before.phase == "pre-firmware"
    nic = before.pci_by_id("nic0")
    assert (nic.bus, nic.slot, nic.function) == (0, 3, 0)
    assert nic.bars and all(bar.base is None for bar in nic.bars)
    assert nic.command == 0
    # Bridges have no bus numbers yet, so nothing behind them is visible.
    assert not any(fn.qdev_id == "nic1" for fn in before.pci)
    assert before.pirq is not None and before.pirq.chipset == "piix3"
    assert before.pirq.raw == {"A": 0x80, "B": 0x80, "C": 0x80, "D": 0x80}
    assert set(before.pirq.routes.values()) == {None}


def test_post_firmware_pci_is_assigned_and_routed(pc_phases) -> None:
    after = pc_phases[1]
    nic = after.pci_by_id("nic0")
    assert all(bar.base is not None for bar in nic.bars if bar.kind != "rom")
    assert nic.command & 0x3 == 0x3  # I/O and memory decode on
    io_bar = next(b for b in nic.bars if b.kind == "io")
    assert io_bar.base >= 0xC000 and io_bar.base % io_bar.size == 0
    behind = after.pci_by_id("nic1")
    bridge = after.pci_by_id("br0")
    assert bridge.header_type == 1 and bridge.bridge.secondary == behind.bus == 1
    window = bridge.bridge.io
    io_behind = next(b for b in behind.bars if b.kind == "io")
    assert window.base <= io_behind.base and io_behind.end <= window.limit
    assert after.pirq.routes == {"A": 10, "B": 10, "C": 11, "D": 11}
    assert after.elcr & (1 << 10) and after.elcr & (1 << 11)
    # The flat view shows the BARs where query-pci says they are, owned by the device.
    assert any(r.start == io_bar.base and r.end == io_bar.end for r in after.ranges_of("nic0", "io"))
    mem_bar = next(b for b in nic.bars if b.kind == "memory")
    assert any(r.start == mem_bar.base and r.end == mem_bar.end for r in after.ranges_of("nic0", "memory"))


def test_diff_names_what_the_firmware_changed(pc_phases) -> None:
    before, after, _ = pc_phases
    lines = diff(before, after)
    assert any(line.startswith("pci 00:03.0 BAR0") and "unassigned -> 0x" in line for line in lines)
    assert "PIRQA: 0x80 -> 0x0a" in lines and "PIRQC: 0x80 -> 0x0b" in lines
    assert "pci 01:01.0: appeared" in lines
    assert diff(after, after) == []


def test_snapshots_are_stable_and_round_trip(pc_phases) -> None:
    _, after, again = pc_phases
    assert after == again, "two snapshots of an unchanged machine must be identical"
    assert Layout.from_json(after.to_json()) == after
    data = json.loads(after.to_json())
    assert data["schema"] == 1 and data["phase"] == "post-firmware"
    text = format_text(after)
    assert "00:03.0 8086:100e" in text and "PIRQ (piix3): A=10 B=10 C=11 D=11" in text


def test_q35_reads_ich9_pirq_links() -> None:
    with Machine(machine_spec("machine: q35\n")) as m:
        m.run_firmware()
        lay = snapshot(m)
    assert lay.machine_type == "pc-q35-7.2"
    assert lay.pirq.chipset == "ich9"
    assert lay.pirq.routes == {"A": 10, "B": 10, "C": 11, "D": 11, "E": 10, "F": 10, "G": 11, "H": 11}
    assert any(fn.slot == 0x1F and fn.function == 0 for fn in lay.pci)


def test_isapc_has_no_pci_but_its_isa_devices() -> None:
    with Machine(machine_spec("machine: isapc\ndevices:\n  - {model: isa-serial, id: com1}\n")) as m:
        m.run_firmware()
        lay = snapshot(m)
    assert lay.pci == () and lay.pirq is None
    com1 = lay.isa_device("com1")
    assert com1.type == "isa-serial" and com1.properties["iobase"] == 0x3F8 and com1.properties["irq"] == 4
    assert [(r.start, r.end) for r in lay.ranges_of("com1")] == [(0x3F8, 0x3FF)]


def test_two_serials_on_one_base_last_wins_and_the_first_is_shadowed() -> None:
    spec = machine_spec("""
machine: pc
devices:
  - {model: isa-serial, id: first, iobase: 0x3f8, irq: 4}
  - {model: isa-serial, id: second, iobase: 0x3f8, irq: 4}
""")
    with Machine(spec) as m:
        lay = snapshot(m)
        HmpPorts(m).write_port(0x3F8, ord("Z"))  # THR: lands in the winner's chardev
        out_first, out_second = m.chardev_path("first"), m.chardev_path("second")
        written = out_second.read_bytes(), out_first.read_bytes()
    assert [(r.start, r.end) for r in lay.ranges_of("second")] == [(0x3F8, 0x3FF)]
    assert lay.ranges_of("first") == []
    shadow = [s for s in lay.shadowed if s.owner == "first"]
    assert [(s.start, s.end, s.hidden_by) for s in shadow] == [(0x3F8, 0x3FF, ("second",))]
    assert written == (b"Z", b"")


def test_partial_overlap_is_split_port_by_port() -> None:
    spec = machine_spec("""
machine: pc
devices:
  - {model: ne2k_isa, id: ne, iobase: 0x300, irq: 10}
  - {model: isa-serial, id: com, iobase: 0x310, irq: 4}
""")
    with Machine(spec) as m:
        lay = snapshot(m)
    assert [(r.start, r.end) for r in lay.ranges_of("ne")] == [(0x300, 0x30F), (0x318, 0x31F)]
    assert [(r.start, r.end) for r in lay.ranges_of("com")] == [(0x310, 0x317)]
    assert [(s.start, s.end, s.hidden_by) for s in lay.shadowed if s.owner == "ne"] == [(0x310, 0x317, ("com",))]


def test_firmware_bar_hides_an_isa_device_at_runtime() -> None:
    # SeaBIOS puts the PIIX3 IDE bus-master BAR at 0xc000; PCI BARs have priority 1.
    spec = machine_spec("machine: pc\ndevices:\n  - {model: isa-serial, id: com, iobase: 0xc000, irq: 4}\n")
    with Machine(spec) as m:
        before = snapshot(m)
        m.run_firmware()
        after = snapshot(m)
    assert [(r.start, r.end) for r in before.ranges_of("com")] == [(0xC000, 0xC007)]
    assert after.ranges_of("com") == []
    winner = after.owner_at(0xC000)
    assert winner.owner_type == "piix3-ide"  # its BAR container has priority 1 over ISA
    hidden = [s for s in after.shadowed if s.owner == "com"]
    assert hidden and {s.hidden_by for s in hidden} == {(winner.owner,)}
    assert min(s.start for s in hidden) == 0xC000


# ---------------------------------------------------------------------- recorded layer
# `info mtree` text captured from QEMU 7.2 (two serials at 0x3f8 and 0x3fc on pc, -S):
# the parsers are checked without booting anything.
def test_recorded_mtree_parses_and_yields_the_shadow() -> None:
    from pathlib import Path

    from harness.qemu.layout import compute_shadowed, parse_mtree_flat, parse_mtree_tree
    data = Path(__file__).parent / "data"
    flat = parse_mtree_flat((data / "mtree-flat-serial-overlap.txt").read_text())
    tree = parse_mtree_tree((data / "mtree-tree-serial-overlap.txt").read_text())
    io = flat["I/O"]
    assert flat["memory"] is flat["cpu-memory-0"]  # one FlatView shared by two spaces
    first = [(r.start, r.end) for r in io if r.owner == "first"]
    second = [(r.start, r.end) for r in io if r.owner == "second"]
    assert first == [(0x3F8, 0x3FB)] and second == [(0x3FC, 0x403)]
    rtc = [r for r in io if r.name.startswith("rtc")]
    assert {r.owner for r in rtc} == {"/machine/unattached/device[9]"}
    found = compute_shadowed(tree["I/O"], io, "io")
    shadows = {(s.region.owner, s.start, s.end, s.winner.owner) for s in found}
    assert ("first", 0x3FC, 0x3FF, "second") in shadows
    # The harness's firmware-log debugcon at 0x402 is inside the second serial's range.
    assert ("harness-fwlog", 0x402, 0x402, "second") in shadows
    # rtc-index inside rtc (same owner) is not a shadow.
    assert not any(owner == "/machine/unattached/device[9]" for owner, *_ in shadows)
    # Before the firmware the PIIX4 PM block is disabled at 0: QEMU hides its line and
    # prints its acpi-* subregions one level too deep; they decode nothing, lose nothing.
    assert not any(s.region.name.startswith("acpi-") for s in found)
    causes = {s.region.owner: s.cause for s in found}
    assert causes["first"].startswith("being mapped later (equal priority 0")
    assert causes["/machine/i440fx"] == "higher priority (1 over 0)"   # 0xcf9 reset control


def test_diff_pairs_bars_by_index_not_position(pc_phases) -> None:
    import dataclasses
    _, after, _ = pc_phases
    nic = after.pci_by_id("nic0")
    without_bar0 = dataclasses.replace(nic, bars=tuple(b for b in nic.bars if b.index != 0))
    changed = dataclasses.replace(after, pci=tuple(without_bar0 if f is nic else f for f in after.pci))
    lines = diff(changed, after)
    assert [line for line in lines if line.startswith("pci 00:03.0")] == ["pci 00:03.0 BAR0 (memory): appeared"]


def test_only_decoders_lose_addresses_and_each_loss_names_its_winner_and_rule() -> None:
    from harness.job import hardware_collisions
    from harness.verify import HardwareView
    spec = machine_spec("""
machine: pc
devices:
  - {model: isa-serial, id: gap, iobase: 0x610, irq: 4}
  - {model: isa-serial, id: pm, iobase: 0x600, irq: 3}
  - {model: isa-serial, id: bar, iobase: 0xc000, irq: 4}
""")
    with Machine(spec) as m:
        m.run_firmware()
        lay = snapshot(m)
    pm_block = lay.owner_at(0x600).owner   # acpi-evt, after SeaBIOS set PMBASE
    # The PIIX4 PM container (0x600-0x63f) decodes nothing between its subregions: the
    # serial at 0x610 takes nothing from it, and nothing from the serial.
    assert not any(s.owner == pm_block or s.owner == "gap" for s in lay.shadowed), format_text(lay)
    assert [(r.start, r.end) for r in lay.ranges_of("gap")] == [(0x610, 0x617)]
    # The serial at 0x600 really loses 0x600-0x605 (acpi-evt, acpi-cnt), to the PM block
    # mapped when the firmware set PMBASE; it keeps 0x606-0x607.
    (pm,) = [s for s in lay.shadowed if s.owner == "pm"]
    assert (pm.start, pm.end, pm.hidden_by) == (0x600, 0x605, (pm_block,))
    assert pm.cause.startswith("being mapped later (equal priority 0")
    assert [(r.start, r.end) for r in lay.ranges_of("pm")] == [(0x606, 0x607)]
    # Under the IDE's bus-master BAR: its container has priority 1.
    (bar,) = [s for s in lay.shadowed if s.owner == "bar"]
    assert (bar.start, bar.end) == (0xC000, 0xC007)
    assert bar.cause == "higher priority (1 of piix-bmdma-container over 0)"
    consequences = {c.resource: c.consequence for c in hardware_collisions(HardwareView(lay, {}), spec)}
    assert "by higher priority (1 of piix-bmdma-container over 0)" in consequences["io 0xc000-0xc007"]
    assert "by being mapped later" in consequences["io 0x600-0x605"]
    assert not any("0x60c" in r or "0x63f" in r for r in consequences)


def test_q35_pm_block_container_gaps_are_nobodys_loss() -> None:
    spec = machine_spec("""
machine: q35
devices:
  - {model: isa-serial, id: gap, iobase: 0x640, irq: 4}
  - {model: isa-serial, id: smi, iobase: 0x630, irq: 3}
""")
    with Machine(spec) as m:
        m.run_firmware()
        lay = snapshot(m)
    # ICH9's PM container spans 0x600-0x67f; 0x640-0x647 lies between acpi-smi and sm-tco.
    lpc = lay.owner_at(0x600).owner
    assert not any(s.owner in ("gap", lpc) for s in lay.shadowed), format_text(lay)
    (smi,) = [s for s in lay.shadowed if s.owner == "smi"]
    assert (smi.start, smi.end, smi.hidden_by) == (0x630, 0x637, (lpc,)) and "mapped later" in smi.cause


def test_an_msix_bar_over_another_bar_is_a_container() -> None:
    # A pcie-root-port's exclusive MSI-X BAR (an ops-less "pcie-root-port-msix" container
    # holding msix-table and msix-pba) moved onto an e1000's BAR0 (where the firmware put
    # it: configs/conflicts/bridge-msix-bar-onto-nic.yaml): the e1000 keeps every address
    # but the table's and the PBA's, and the root port loses nothing (the e1000-covered
    # gaps came out as "rp0 no longer answers there").
    from harness.qemu.actions import run_firmware_and_steps
    spec = load_machine(CONFIGS / "conflicts" / "bridge-msix-bar-onto-nic.yaml")
    with Machine(spec) as m:
        (step,) = run_firmware_and_steps(m)
        lay = snapshot(m)
    base = lay.pci_by_id("nic0").bars[0].base
    assert step.ok and lay.pci_by_id("rp0").bars[0].base == base
    assert not [s for s in lay.shadowed if s.owner == "rp0"], format_text(lay)
    assert sorted((s.start - base, s.end - base) for s in lay.shadowed if s.owner == "nic0") == \
        [(0, 0xF), (0x800, 0x807)]


def test_identical_ownerless_twins_lose_to_the_last_mapped() -> None:
    # Three PIIX IDE functions in compatibility mode on pc (the board's, then two of the
    # file's) register the same ownerless "ide" ports under one parent: info mtree lists
    # them alike, last mapped first.  The flat view's is the last device's; the other
    # device and the board (owner None, board:ide-legacy) lose them to it.  Before, twins
    # shared one key and nobody lost anything.
    spec = machine_spec("""
machine: pc
devices:
  - {model: piix3-ide, id: ide1, addr: 5}
  - {model: piix4-ide, id: ide2, addr: 6}
""")
    with Machine(spec) as m:
        lay = snapshot(m)
    assert lay.owner_at(0x1F0).owner == "ide2"
    lost = sorted((s.owner or "", s.start, s.end, s.hidden_by) for s in lay.shadowed if s.start == 0x1F0)
    assert lost == [("", 0x1F0, 0x1F7, ("ide2",)), ("ide1", 0x1F0, 0x1F7, ("ide2",))], format_text(lay)
    assert all("mapped later" in s.cause for s in lay.shadowed if s.start == 0x1F0)
    assert {(s.start, s.end) for s in lay.shadowed if s.owner == "ide1"} == \
        {(0x1F0, 0x1F7), (0x3F6, 0x3F6), (0x170, 0x177), (0x376, 0x376)}


def test_a_region_with_subregions_that_decodes_still_loses_its_own_ports() -> None:
    # The RTC's region (0x70-0x71) holds its index port (0x70) as a subregion and decodes
    # 0x71 itself; a debugcon there takes 0x71, and that is a loss, not a container gap.
    spec = machine_spec("machine: pc\ndevices:\n  - {model: isa-debugcon, id: con, iobase: 0x71}\n")
    with Machine(spec) as m:
        lay = snapshot(m)          # before the firmware, which would read the CMOS through it
    rtc = lay.owner_at(0x70).owner
    assert [(s.start, s.end, s.hidden_by) for s in lay.shadowed if s.owner == rtc] == [(0x71, 0x71, ("con",))]


def test_bar_regions_belong_to_the_pci_function_the_guest_sees() -> None:
    # Measured: qemu-xhci's BAR0 is a container whose subregions QEMU registers under its
    # embedded child device xhci-core (capabilities, operational, runtime, doorbell; the
    # MSI-X table and PBA under the function itself), with holes between them; the VGA's
    # BAR0 frame buffer is RAM (vga.vram) the device owns.
    spec = machine_spec("""
machine: pc
devices:
  - {model: qemu-xhci, id: usb, addr: 4}
  - {model: VGA, id: vga, addr: 5}
""")
    with Machine(spec) as m:
        m.run_firmware()
        lay = snapshot(m)
    xhci = next(b for b in lay.pci_by_id("usb").bars if b.index == 0)
    inside = [r for r in lay.memory if xhci.base <= r.start and r.end <= xhci.end]
    assert {r.name for r in inside} >= {"capabilities", "operational", "runtime", "doorbell", "msix-table"}
    assert {(r.owner, r.owner_type) for r in inside} == {("usb", "qemu-xhci")}, format_text(lay)
    assert sum(r.end - r.start + 1 for r in inside) < xhci.size, "the BAR container has holes"
    vram = next(b for b in lay.pci_by_id("vga").bars if b.index == 0)
    (fb,) = [r for r in lay.memory if r.start <= vram.base <= r.end]
    assert (fb.start, fb.end, fb.kind, fb.owner) == (vram.base, vram.end, "ram", "vga")


def test_isa_vga_maps_its_vbe_frame_buffer_from_the_start() -> None:
    # Measured: isa-vga maps vga.vram at 0xe0000000 (8 MiB) before and after the firmware,
    # without any guest enabling VBE: the model's fixed memory range is decoded.
    spec = machine_spec("machine: isapc\nmemory: 32\ndevices:\n  - {model: isa-vga, id: vga}\n")
    with Machine(spec) as m:
        before = snapshot(m)
        m.run_firmware()
        after = snapshot(m)
    expected = [("memory", a, b) for k, a, b in spec.device("vga").decoded_resources() if k == "memory"]
    for lay in (before, after):
        for _, lo, hi in expected:
            pieces = [r for r in lay.memory if r.start <= hi and lo <= r.end]
            assert [(r.start, r.end, r.owner) for r in pieces] == [(lo, hi, "vga")], format_text(lay)
    assert ("memory", 0xE0000000, 0xE07FFFFF) in expected


def test_address_spaces_printed_over_one_tree_each_get_it() -> None:
    """QEMU prints address spaces that share a root region as consecutive headers over one
    tree (an lsi53c895a's ``lsi-pci-io`` is an address space on the I/O root): the tree is
    every one's, not only the last header's (the I/O tree came out empty, so no I/O range
    was ever found shadowed and the HAL saw no PCI I/O window on such a machine)."""
    from harness.qemu.layout import parse_mtree_tree
    text = ("address-space: I/O\naddress-space: lsi-pci-io\n"
            "  0000000000000000-000000000000ffff (prio 0, i/o): io owner:{obj path=/machine/unattached}\n"
            "    00000000000003f8-00000000000003ff (prio 0, i/o): serial owner:{dev id=com1}\n\n"
            "address-space: tulip\n"
            "  0000000000000000-ffffffffffffffff (prio 0, i/o): bus master container owner:{dev id=t}\n")
    tree = parse_mtree_tree(text)
    assert tree["I/O"] == tree["lsi-pci-io"] and [r.name for r in tree["I/O"]] == ["io", "serial"]
    assert [r.name for r in tree["tulip"]] == ["bus master container"]


def test_a_parsed_region_is_what_its_constructor_makes() -> None:
    """The parser builds regions without their ``__init__`` (layout._new_region, a matrix
    cell's hottest line): each must equal, hash, print and replace as the constructor's."""
    import dataclasses
    import pickle
    from pathlib import Path

    from harness.qemu.layout import MtreeRegion, _parse_line, parse_mtree_flat, parse_mtree_tree
    assert "__post_init__" not in vars(MtreeRegion) and not hasattr(MtreeRegion, "__slots__")
    data = Path(__file__).parent / "data"
    regions = [r for spaces in (parse_mtree_flat((data / "mtree-flat-serial-overlap.txt").read_text()),
                                parse_mtree_tree((data / "mtree-tree-serial-overlap.txt").read_text()))
               for space in spaces.values() for r in space]
    regions.append(_parse_line("    0000000000000600-000000000000063f (prio 0, i/o): piix4-pm [disabled] "
                               "owner:{dev path=/machine/i440fx/pci.0/piix4_pm}"))
    regions.append(_parse_line("0000000000000000-000000000000ffff (prio 0, i/o): io"))
    assert len(regions) > 100 and any(r.disabled for r in regions) and any(r.has_children for r in regions)
    assert any(r.alias for r in regions) and any(r.owner is None for r in regions)
    for region in regions:
        made = MtreeRegion(*(getattr(region, f.name) for f in dataclasses.fields(MtreeRegion)))
        assert region == made and hash(region) == hash(made) and repr(region) == repr(made)
        assert vars(region) == vars(made) and list(vars(region)) == list(vars(made))
        assert pickle.loads(pickle.dumps(region)) == made
        assert dataclasses.replace(region, start=0) == dataclasses.replace(made, start=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        regions[0].start = 1
