"""Reconciliation against real QEMU (TCG): shipped configs, deliberate conflicts, the
ResourceMap model view and the ``harness verify`` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.config import load_machine
from harness.nt.registry import RESOURCE_MAP, Registry
from harness.nt.resources import (CM_RESOURCE_LIST, CmResourceShareDeviceExclusive, Dma, Interrupt, Isa,
                                  Memory, PCIBus, Port)
from harness.verify import (ACPI_SCI, BOARD_CLAIM, CASCADE, CONFIG_PORTS_SHADOWED, DMA_SHARED, FIRMWARE_REASSIGNED, IRQ_SHARED,
                            NOT_FORWARDED, NOT_PRESENT, OS_REASSIGNED, REGISTERS_MISPLACED, SHADOWED, UNDER_PCI_BAR, UNEXPLAINED, format_table,
                            hardware_view, reconcile, resource_map_claims, verify)
from helpers import CONFIGS, REPO, machine_spec

pytestmark = pytest.mark.qemu

SHIPPED = sorted((CONFIGS / "machines").glob("*.yaml")) + sorted((CONFIGS / "conflicts").glob("*.yaml"))
#: Conflict configs whose conflict only the NT arbiter sees (a HAL claim over a port QEMU
#: leaves undecoded, a block claim over a companion chip).  (A configured device that
#: wins ports from a board device is a hardware finding: Context.board_shadowed.)
ARBITER_ONLY = {"debugcon-in-hal-hole", "sb16-block-adlib",
                # the wrapped port 0x12 is in the HAL's claimed 0x00-0x1f, which QEMU's DMA
                # controller decodes only up to 0x0f
                "applesmc-port-wraps-past-0xffff"}
#: Differences verify cannot explain from the views, and rightly so: the device decodes
#: its ports and does not answer there.  An ib700 is write-only, so no probe can see it.
#: (QEMU's isa-parallel at 0x3bc, whose registers sit at port & 7, is its model's
#: register_block: registers-misplaced.)
UNEXPLAINED_HERE = {"ib700-twice": {("wd1", "probe")}}
#: What the probe guest finds at a base off its model's register block (registers-misplaced).
MISPLACED = {"lpt-at-3bc": ("lpt3", "register 0 at 0x3c0), not at 0x3bc+N"),
             "lpt-3bc-over-vga": ("lpt3", "register 0 at 0x3c0), not at 0x3bc+N"),
             "builtin-fdc-371-under-ide": ("board:floppy-controller", "register 0 at 0x378), not at 0x371+N"),
             "pci-ide-behind-an-unnumbered-bridge-pc": ("board:floppy-controller", "register 0 at 0xd00), not at 0xcfc+N")}


def _after_drivers_only(path: Path) -> bool:
    """A scenario whose steps all run after the drivers: verify's QEMU view is the
    post-firmware one, where nothing has happened yet (the main job sees it)."""
    steps = load_machine(path).after_firmware
    return bool(steps) and all(step.phase == "post-drivers" for step in steps)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_shipped_config_reconciles_with_explanations(path: Path, harness_verify) -> None:
    rec = harness_verify(path, guest="probe")
    if path.stem in UNEXPLAINED_HERE:
        assert {(f.device, f.view) for f in rec.unexplained} == UNEXPLAINED_HERE[path.stem], format_table(rec)
    else:
        rec.assert_explained()
    misplaced = [(f.device, f.reason) for f in rec.findings if f.explanation == REGISTERS_MISPLACED]
    if path.stem in MISPLACED:
        device, says = MISPLACED[path.stem]
        assert [d for d, _ in misplaced] == [device] and says in misplaced[0][1], format_table(rec)
    else:
        assert not misplaced, format_table(rec)
    if path.parent.name == "conflicts" and load_machine(path).expect != "clean" and path.stem not in ARBITER_ONLY \
            and not _after_drivers_only(path):
        assert rec.findings, f"a conflict scenario must produce findings:\n{format_table(rec)}"
    if rec.views["probe"] != "probe-guest":  # only a guest whose PCI config ports are gone may fail
        assert any(f.explanation == CONFIG_PORTS_SHADOWED for f in rec.findings), format_table(rec)


def _findings(rec, explanation: str) -> list:
    return [f for f in rec.findings if f.explanation == explanation]


def test_two_serials_at_one_base_name_the_later_one() -> None:
    rec = verify(machine_spec("""
machine: pc
devices:
  - {model: isa-serial, id: first, iobase: 0x2f8, irq: 3}
  - {model: isa-serial, id: second, iobase: 0x2f8, irq: 5}
"""))
    shadowed = _findings(rec, SHADOWED)
    assert {(f.device, f.view) for f in shadowed} >= {("first", "qemu"), ("first", "probe")}
    assert all("second" in f.reason for f in shadowed)
    irq = next(f for f in shadowed if f.resource == "irq")
    assert "IRQ 5" in irq.reason, "the probe of 'first' sees the winner's line"
    assert not any(f.device == "second" for f in rec.findings)
    assert not rec.unexplained


def test_a_bar_moved_after_the_firmware_is_explained_only_by_its_step() -> None:
    """The hardware view runs the post-firmware steps; a guest that read the BAR where the
    firmware left it differs, explained by the move_bar step that placed it and by no other."""
    import dataclasses
    from harness.guests.probe import ProbeBar, ProbePci, ProbeReport
    spec = machine_spec("""
machine: pc
devices:
  - {model: e1000, id: nic0, addr: 3}
after_firmware:
  - {move_bar: nic0, bar: 0, address: 0xe0000000}
""")
    hardware = hardware_view(spec)
    fn = hardware.layout.pci_by_id("nic0")
    assert next(b for b in fn.bars if b.index == 0).base == 0xE0000000, "the step ran before the snapshot"
    elsewhere = ProbePci(fn.bus, fn.slot, fn.function, fn.vendor, fn.device, fn.class_code, fn.header_type,
                         fn.command, fn.interrupt_line or 0, fn.interrupt_pin,
                         tuple(ProbeBar(b.index, b.kind, 0xFEBE0000 if b.index == 0 else b.base, b.size)
                               for b in fn.bars if b.base is not None), None)
    probe = ProbeReport("t", "pc", "probe-guest", True, 0, (elsewhere,), (), {}, "", 0.0)

    def bar0(step_address: int | None):
        steps = () if step_address is None else (dataclasses.replace(spec.after_firmware[0], address=step_address),)
        rec = reconcile(dataclasses.replace(spec, after_firmware=steps), hardware, probe=probe)
        return [f.explanation for f in rec.findings if f.device == "nic0" and f.resource == "BAR0 memory"]

    assert bar0(0xE0000000) == [OS_REASSIGNED]
    assert bar0(None) == [UNEXPLAINED]
    assert bar0(0xD0000000) == [UNEXPLAINED], "a step that put it elsewhere explains nothing"


def test_isa_device_under_a_pci_io_bar() -> None:
    rec = verify(machine_spec("""
machine: pc
devices:
  - {model: isa-serial, id: hidden, iobase: 0xc000, irq: 3}
  - {model: e1000, id: nic0, addr: 3}
"""))
    found = _findings(rec, UNDER_PCI_BAR)
    assert {f.view for f in found} == {"qemu", "probe"} and all("nic0" in f.reason for f in found)
    assert not rec.unexplained


def test_irq_and_dma_sharing_and_the_sci_are_hardware_conflicts() -> None:
    rec = verify(machine_spec("""
machine: pc
devices:
  - {model: floppy, id: fd0, unit: 0}
  - {model: sb16, id: sb0, iobase: 0x220, irq: 5, dma: 2}
  - {model: ne2k_isa, id: ne0, iobase: 0x300, irq: 5}
  - {model: ne2k_isa, id: ne1, iobase: 0x320, irq: 9}
"""))
    irq5 = _findings(rec, IRQ_SHARED)
    assert [f.resource for f in irq5] == ["irq 5"] and {"sb0", "ne0"} <= set(irq5[0].device.split(", "))
    sci = _findings(rec, ACPI_SCI)
    assert [(f.resource, f.device) for f in sci] == [("irq 9", "ne1")]
    dma = _findings(rec, DMA_SHARED)
    assert [f.resource for f in dma] == ["dma 2"]
    # the board's controller named as the claimants and the job's collisions name it
    assert dma[0].device == "board:floppy-controller, sb0" and dma[0].reason.endswith("the last, sb0, owns the channel and the others stall")
    assert not rec.unexplained


def test_a_serial_on_the_pci_configuration_ports_blinds_firmware_and_guest() -> None:
    rec = verify(machine_spec("""
machine: pc
devices:
  - {model: isa-serial, id: evil, iobase: 0xcf8, irq: 4}
  - {model: e1000, id: nic0, addr: 3}
"""))
    config = _findings(rec, CONFIG_PORTS_SHADOWED)
    assert {f.device for f in config} == {"nic0", "(guest)"}
    assert all("shadowed by evil" in f.reason for f in config)
    assert rec.views["probe"] == "failed"
    assert not rec.unexplained


@pytest.fixture(scope="module")
def default_hardware():
    from harness.config import load_machine
    spec = load_machine(CONFIGS / "machines" / "default.yaml")
    return spec, hardware_view(spec)


def _registry_with(*claims: tuple[str, str, CM_RESOURCE_LIST]) -> Registry:
    registry = Registry(":memory:")
    for key, name, cm_list in claims:
        path = RESOURCE_MAP + "\\" + key
        registry.create_key(path)
        registry.set_value(path, name, cm_list)
    return registry


def test_resource_map_claims_are_read_from_raw_values_only() -> None:
    serial = CM_RESOURCE_LIST.single(Isa, 0, Port(0x3F8, 8, share=CmResourceShareDeviceExclusive),
                                     Interrupt(4, 4))
    registry = _registry_with(("OtherDrivers\\Serial", "\\Device\\Serial0.Raw", serial),
                              ("OtherDrivers\\Serial", "\\Device\\Serial0.Translated",
                               CM_RESOURCE_LIST.single(Isa, 0, Port(0x9999, 1))))
    claims = resource_map_claims(registry)
    assert [(c.owner, c.kind, c.start, c.end) for c in claims] == [
        ("OtherDrivers\\Serial\\\\Device\\Serial0", "port", 0x3F8, 0x3FF),
        ("OtherDrivers\\Serial\\\\Device\\Serial0", "irq", 4, 4)]
    assert resource_map_claims(Registry(":memory:")) == []


def test_resource_map_view_against_the_hardware(default_hardware) -> None:
    spec, hardware = default_hardware
    nic_bar0 = next(b for b in hardware.layout.pci_by_id("nic0").bars if b.index == 0)
    registry = _registry_with(
        ("OtherDrivers\\Serial", "\\Device\\Serial0.Raw",
         CM_RESOURCE_LIST.single(Isa, 0, Port(0x3F8, 8), Interrupt(4, 4))),
        ("OtherDrivers\\Sound", ".Raw", CM_RESOURCE_LIST.single(Isa, 0, Dma(1), Dma(3))),
        ("LanDrivers\\E1000", "\\Device\\E1000.Raw",   # where a model guessed the BAR would go
         CM_RESOURCE_LIST.single(PCIBus, 0, Memory(nic_bar0.base - 0x100000, nic_bar0.size))),
        ("OtherDrivers\\Ghost", "\\Device\\Ghost.Raw", CM_RESOURCE_LIST.single(Isa, 0, Port(0x100, 4))),
        # the HAL's one claim of both 8259s' edge/level registers, and a stranger's of the same
        ("Hardware Abstraction Layer\\PC Compatible Eisa/Isa HAL", ".Raw",
         CM_RESOURCE_LIST.single(Isa, 0, Port(0x4D0, 2))),
        ("OtherDrivers\\Odd", "\\Device\\Odd.Raw", CM_RESOURCE_LIST.single(Isa, 0, Port(0x4D0, 2))),
    )
    rec = reconcile(spec, hardware, claims=resource_map_claims(registry))
    by_resource = {(r.device, r.resource): r for r in rec.rows if "\\" in r.device}
    serial = by_resource[("OtherDrivers\\Serial\\\\Device\\Serial0", "port 0x3f8-0x3ff")]
    assert serial.cells["qemu"] == "com1" and not serial.findings
    assert not by_resource[("OtherDrivers\\Serial\\\\Device\\Serial0", "irq 4")].findings
    assert not by_resource[("OtherDrivers\\Sound\\(driver)", "dma 1")].findings
    assert by_resource[("OtherDrivers\\Sound\\(driver)", "dma 3")].findings[0].explanation == NOT_PRESENT
    moved = next(r for (d, _), r in by_resource.items() if d.startswith("LanDrivers"))
    assert moved.findings[0].explanation == FIRMWARE_REASSIGNED and f"{nic_bar0.base:#x}" in moved.findings[0].reason
    ghost = by_resource[("OtherDrivers\\Ghost\\\\Device\\Ghost", "port 0x100-0x103")]
    assert ghost.findings[0].explanation == NOT_PRESENT
    elcr = by_resource[("Hardware Abstraction Layer\\PC Compatible Eisa/Isa HAL\\(driver)", "port 0x4d0-0x4d1")]
    assert elcr.findings[0].explanation == BOARD_CLAIM and "board:interrupt-controllers" in elcr.findings[0].reason
    odd = by_resource[("OtherDrivers\\Odd\\\\Device\\Odd", "port 0x4d0-0x4d1")]
    assert odd.findings[0].explanation == UNEXPLAINED
    # QEMU's side named as every report names it: never a QOM path or an owner-less region's name
    assert elcr.cells["qemu"] == odd.cells["qemu"] == "board:interrupt-controllers", elcr.cells
    assert odd.findings[0].reason.endswith("decodes: board:interrupt-controllers"), odd.findings[0].reason
    assert not [r for r in rec.rows if "/machine/" in r.cells.get("qemu", "") + "".join(f.reason for f in r.findings)
                or r.cells.get("qemu") in ("ide", "ioportF0")], format_table(rec)
    assert "resourcemap (model)" in format_table(rec)


def test_cli_prints_the_table_and_fails_on_unexplained_differences(tmp_path: Path) -> None:
    config = CONFIGS / "machines" / "isapc.yaml"
    ok = subprocess.run([sys.executable, "-m", "harness.cli", "verify", str(config)],
                        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "probe (probe-guest)" in ok.stdout and "0 unexplained" in ok.stdout
    # A claim straddling three devices' ports (IDE alt status, FDC DIR, COM1) with no
    # shadowing: nothing explains it.
    path = tmp_path / "model.sqlite"
    with Registry(path) as registry:
        key = RESOURCE_MAP + "\\OtherDrivers\\Odd"
        registry.create_key(key)
        registry.set_value(key, "\\Device\\Odd.Raw", CM_RESOURCE_LIST.single(Isa, 0, Port(0x3F6, 3)))
    bad = subprocess.run([sys.executable, "-m", "harness.cli", "verify", str(config), "--guest", "none",
                          "--registry", str(path)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"[{UNEXPLAINED}]" in bad.stdout and "the claim spans 3 QEMU devices' decodes: " in bad.stdout
    assert "board:floppy-controller" in bad.stdout and "/machine/" not in bad.stdout, bad.stdout
    missing = subprocess.run([sys.executable, "-m", "harness.cli", "verify", str(config), "--registry",
                              str(tmp_path / "nope.sqlite")], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_cascade_gus_blocks_and_trigger_modes_are_explained() -> None:
    # A GUS answers in its register block at base+0x100, not at its write-only base port;
    # a UART on IRQ 2 sits on the 8259 cascade; an ISA card on a PCI line meets a
    # level-triggered line; the parallel port shares the GUS's edge-triggered IRQ 7.
    rec = verify(machine_spec("""
machine: pc
devices:
  - {model: gus, id: gus0}
  - {model: isa-serial, id: com1, iobase: 0x3f8, irq: 2}
  - {model: ne2k_isa, id: ne0, iobase: 0x280, irq: 11}
  - {model: e1000, id: nic0, addr: 3}
  - {model: isa-parallel, id: lpt1, iobase: 0x378, irq: 7}
"""))
    assert not rec.unexplained, format_table(rec)
    gus_port_rows = [r for r in rec.rows if r.device == "gus0" and r.resource.startswith("port")]
    assert len(gus_port_rows) == 4 and not any(r.findings for r in gus_port_rows), format_table(rec)
    assert [r.cells["probe"] for r in gus_port_rows if r.resource == "port 0x340-0x347"] == ["present"]
    cascade = _findings(rec, CASCADE)
    assert {(f.device, f.view) for f in cascade} == {("com1", "probe"), ("com1", "hardware")}
    shared = {f.resource: f.reason for f in _findings(rec, IRQ_SHARED)}
    assert "level-triggered (ELCR bit 11 set)" in shared["irq 11"]
    assert "edge-triggered (ELCR bit 7 clear)" in shared["irq 7"]
    assert not any(f.resource == "irq 2" and f.explanation == IRQ_SHARED for f in rec.findings)


def test_a_fixed_decode_a_bridge_does_not_forward_is_explained() -> None:
    """A VGA behind a pci-bridge: the bridge's VGA enable forwards 0x3b0-0x3bb, 0x3c0-0x3df
    and 0xa0000-0xbffff, never the Bochs VBE ports, which nothing decodes at the CPU."""
    rec = verify(load_machine(CONFIGS / "conflicts" / "vga-behind-bridge.yaml"))
    found = _findings(rec, NOT_FORWARDED)
    assert [(f.device, f.resource) for f in found] == [("vga0", "port 0x1ce-0x1d1")], format_table(rec)
    assert not rec.unexplained


def test_a_pci_function_with_intx_disabled_drives_no_line() -> None:
    """The fact behind pci-intx-disabled-beside-uart: a function whose command register
    sets Interrupt Disable (bit 10) cannot assert its pin (QEMU's pci_irq_handler), so it
    drives no ISA line.  Measured: an ne2k_pci at 00:03 (PIRQC -> 11) raises its remote-DMA
    interrupt, IRQ 11 goes high on the slave 8259 (irr bit 3), drops with the bit set and
    comes back without it."""
    from harness.qemu.machine import Machine
    spec = machine_spec("machine: pc\ndevices:\n  - {model: ne2k_pci, id: nic0, addr: 3}\n")

    def irq11(m: Machine) -> bool:
        pic1 = next(line for line in m.hmp("info pic").splitlines() if line.startswith("pic1"))
        return bool(int(pic1.split("irr=")[1].split()[0], 16) & 0x08)

    def command(m: Machine, value: int) -> None:
        m.hmp(f"o /w 0xcf8 {0x80000000 | 3 << 11 | 0x04:#x}")
        m.hmp(f"o /h 0xcfc {value:#x}")

    with Machine(spec) as m:
        m.run_firmware()
        m.hmp(f"o /w 0xcf8 {0x80000000 | 3 << 11 | 0x10:#x}")
        io = int(m.hmp("i /w 0xcfc").split("=")[-1], 16) & ~3
        m.hmp(f"o /b {io + 0xf:#x} 0x40")    # IMR: remote DMA complete
        m.hmp(f"o /b {io:#x} 0x0a")          # CR: a remote read of 0 bytes completes at once
        assert irq11(m)
        command(m, 0x503)
        assert not irq11(m)
        command(m, 0x103)
        assert irq11(m)
    rec = verify(load_machine(CONFIGS / "conflicts" / "pci-intx-disabled-beside-uart.yaml"))
    assert not [f for f in rec.findings if f.explanation == IRQ_SHARED], format_table(rec)


def test_who_answers_a_contested_range_is_the_layouts_not_the_last_mapped() -> None:
    """harness.verify.who_answers, on a layout of our own making: a sibling that shadows
    the other there wins (whatever the order: priority beats mapping), else the one the
    flat view shows there at all, else nobody can tell; a DMA channel goes to the handler
    registered last."""
    from harness.qemu.layout import DecodedRange, IsaDevice, Layout, ShadowedRange
    from harness.verify import who_answers
    spec = machine_spec("machine: pc\ndevices:\n  - {model: sb16, id: sb0}\n  - {model: gus, id: gus0}\n")
    io = (DecodedRange("io", 0x3c0, 0x3cf, "vga", "vga0", "VGA", 1, "i/o"),
          DecodedRange("io", 0x3d0, 0x3d3, "cirrus-io", "vga1", "isa-cirrus-vga", 0, "i/o"),
          DecodedRange("io", 0x3d4, 0x3d5, "vga", "vga0", "VGA", 1, "i/o"))
    layout = Layout("m", "pc", "post-firmware", "7.2", "tcg", io=io,
                    memory=(DecodedRange("memory", 0xa0000, 0xbffff, "vga-lowmem", "vga0", "VGA", 1, "i/o"),),
                    shadowed=(ShadowedRange("io", 0x3c0, 0x3cf, "cirrus-io", "vga1", "isa-cirrus-vga", ("vga0",),
                                            "higher priority (1 over 0)"),),
                    isa=(IsaDevice("/a", "sb0", "sb16", {"dma": 1}), IsaDevice("/b", "gus0", "gus", {"dma": 1})))
    prefers = who_answers(spec, layout)
    # shadowing decides, even where the loser still answers part of the range
    assert prefers("port", 0x3b0, 0x3df, "vga0", "vga1") is True
    assert prefers("port", 0x3b0, 0x3df, "vga1", "vga0") is False
    # no shadowing there: the one the flat view shows at all (vga1 shows nowhere)
    assert prefers("memory", 0xa0000, 0xbffff, "vga1", "vga0") is False
    assert prefers("port", 0x3d0, 0x3d3, "vga1", "vga0") is True
    # both shown and nobody shadowed there, or neither shown: cannot tell
    assert prefers("port", 0x3d0, 0x3d5, "vga1", "vga0") is None
    assert prefers("port", 0x300, 0x307, "vga0", "vga1") is None
    # DMA: the handler registered last owns the channel; an unknown channel cannot tell
    assert prefers("dma", 1, 1, "sb0", "gus0") is False and prefers("dma", 1, 1, "gus0", "sb0") is True
    assert prefers("dma", 3, 3, "sb0", "gus0") is None


def test_a_second_display_behind_a_bridge_is_not_forwarded_where_the_primary_answers() -> None:
    """The bridge above the ATI has no VGA enable (SeaBIOS sets it for the primary VGA
    alone), so its legacy ports reach no CPU; the SVGA on bus 0 decodes them there.  Not
    forwarded, naming who answers; before, 'someone else and no shadowing' (unexplained)."""
    rec = verify(load_machine(CONFIGS / "conflicts" / "second-display-behind-bridge-beside-svga.yaml"))
    found = _findings(rec, NOT_FORWARDED)
    assert {f.device for f in found} == {"ati0"} and "port 0x3c0-0x3cf" in {f.resource for f in found}
    assert all("svga0 decode them" in f.reason for f in found if f.resource != "port 0x1ce-0x1d1"), format_table(rec)
    assert not rec.unexplained, format_table(rec)


def test_a_built_in_device_the_file_moves_has_rows_like_a_device_of_the_file() -> None:
    """`builtin:` moves the board's FDC to 0x371 (qa8 showed only the collision): its
    decode there, line and channel are rows named by its board label, QEMU's owners by
    theirs, and the port the IDE takes is explained by who takes it."""
    rec = verify(load_machine(CONFIGS / "conflicts" / "builtin-fdc-371-under-ide.yaml"), guest="none")
    rows = {(r.device, r.resource): r for r in rec.rows}
    assert list(rows) == [("board:floppy-controller", "port 0x372-0x376"), ("board:floppy-controller", "port 0x378-0x378"),
                          ("board:floppy-controller", "irq"), ("board:floppy-controller", "dma")], format_table(rec)
    lost = rows["board:floppy-controller", "port 0x372-0x376"]
    assert lost.cells["qemu"] == "0x372-0x375 board:floppy-controller, 0x376-0x376 board:ide-legacy"
    (finding,) = lost.findings
    assert finding.explanation == SHADOWED and finding.reason.startswith("shadowed by board:ide-legacy (0x376-0x376: "
                                                                         "board:ide-legacy wins them by being mapped later")
    assert [r.cells for r in rec.rows[2:]] == [{"model": "6", "qemu": "6"}, {"model": "2", "qemu": "2"}]
    assert not rec.rows[1].findings and not rec.unexplained
    # the hardware finding names the winner as the rows do (it said 'ide wins them')
    (hardware,) = [f for f in rec.findings if f.view == "hardware"]
    assert hardware.device == "board:ide-legacy" and "board:ide-legacy wins them" in hardware.reason, hardware
    # the keyboard controller's lines, one moved onto COM2's, as QEMU's QOM holds them
    rec = verify(load_machine(CONFIGS / "conflicts" / "builtin-kbd-irq3-com2.yaml"), guest="none")
    kbd = [(r.resource, r.cells) for r in rec.rows if r.device == "board:keyboard-controller"]
    assert kbd == [("port 0x60-0x60", {"model": "0x60-0x60", "qemu": "board:keyboard-controller"}),
                   ("port 0x64-0x64", {"model": "0x64-0x64", "qemu": "board:keyboard-controller"}),
                   ("irq (kbd-irq)", {"model": "3", "qemu": "3"}), ("irq (mouse-irq)", {"model": "12", "qemu": "12"})], \
        format_table(rec)


def test_an_isa_property_a_post_firmware_step_rewrote_is_the_steps_doing() -> None:
    # the SB16's mixer told IRQ 7 before the drivers: QEMU's sb16 stores it in its irq
    # property (the card keeps raising 5); verify called the difference unexplained
    rec = verify(load_machine(CONFIGS / "conflicts" / "sb16-mixer-irq-select-before-drivers.yaml"), guest="none")
    (finding,) = rec.findings
    assert (finding.device, finding.resource, finding.explanation) == ("sb0", "irq", OS_REASSIGNED), format_table(rec)
    assert finding.reason.startswith("QEMU's irq property is 7 after the post-firmware step(s) writing its ports "
                                     "(line 16: [post-firmware] o /b 0x224 0x80, line 17:"), finding.reason


def test_a_pci_function_winning_through_a_fixed_legacy_decode_is_no_bar() -> None:
    # the second PCI VGA takes the first one's VGA ports by being mapped later (priority
    # 0, like an ISA device): verify said 'under the BAR of PCI device vga1'
    rec = verify(load_machine(CONFIGS / "conflicts" / "two-pci-vgas.yaml"), guest="none")
    lost = [f for f in rec.findings if f.device == "vga0" and f.resource.startswith("port 0x3")]
    assert lost and {f.explanation for f in lost} == {SHADOWED}, format_table(rec)
    assert all(f.reason.startswith("shadowed by vga1 (") and "mapped later" in f.reason for f in lost)
    assert not _findings(rec, UNDER_PCI_BAR), format_table(rec)
