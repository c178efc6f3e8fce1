"""Every decoder has a claimant: the generic legacy driver, board claimants, ``driver: none``
and exact claims (issue 16).  The QEMU-backed checks run the main job; the conflict and
near-conflict machines themselves are in configs/conflicts (tests/test_job.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.claimants import legacy_parameters
from harness.config import GENERIC_DRIVER, VGA_DRIVER, load_machine, parse_machine_text
from harness.devices import load_catalog
from harness.drivers import DRIVERS
from harness.drivers.base import DECODED_PORTS, NtDriver, resources_of
from harness.errors import ConfigError
from harness.job import run_job
from harness.nt.registry import DEVICE_MAP, Registry
from harness.nt.resources import Dma, Interrupt, Isa, Port
from harness.qemu.layout import Layout
from helpers import CONFIGS

CATALOG = load_catalog()
EMPTY_LAYOUT = Layout("t", "pc", "post-firmware", "7.2", "tcg")


def _one(model: str, extra: str = "") -> str:
    kind = "pc" if "pc" in CATALOG[model].machines else CATALOG[model].machines[0]
    return f"machine: {kind}\ndevices:\n  - {{model: {model}, id: d{extra}}}\n"


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_every_catalog_model_has_a_claimant_or_a_reason(name: str) -> None:
    model = CATALOG[name]
    dev = parse_machine_text(_one(name), "<t>").device("d")
    if dev.driver is None:
        assert model.bridge or not (model.ports or model.fixed or model.pci), name
        assert dev.unclaimed_reason
    else:
        assert dev.driver in DRIVERS
        # A display (the legacy VGA window, or PCI class 0x0300) is the VGA miniport's.
        display = (model.pci is not None and model.pci.class_code == 0x0300) or any(
            f.kind == "memory" and f.start == 0xA0000 for f in model.fixed)
        assert dev.driver == (model.nt_driver or (VGA_DRIVER if display else GENERIC_DRIVER))
        assert not dev.unclaimed_reason


def test_driver_none_leaves_the_device_unclaimed() -> None:
    spec = parse_machine_text(_one("gus", ", driver: none"), "t.yaml")
    dev = spec.device("d")
    assert dev.driver is None and "driver: none (line 3)" == dev.unclaimed_reason
    assert spec.drivers == ()
    again = parse_machine_text(__import__("json").dumps(spec.to_dict()), "<again>")
    assert again.device("d").no_driver


@pytest.mark.parametrize("text, message", [
    (_one("gus", ", driver: nobody"), r"t.yaml:3: devices\[0\].driver: unknown value 'nobody'; expected one of: none"),
    (_one("gus", ", driver: 0"), r"t.yaml:3: devices\[0\].driver: expected a string"),
    (_one("sb16") + "drivers: [{name: sb16, claim: wide}]", r"t.yaml:4: drivers\[0\].claim: unknown value 'wide'; expected one of"),
    (_one("gus") + "drivers: [{name: legacy, claim: block}]", r"t.yaml:4: drivers\[0\].claim: legacy claims what"),
])
def test_bad_claimant_settings_name_file_line_and_field(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_machine_text(text, "t.yaml")


def test_resources_of_gives_one_descriptor_per_contiguous_run() -> None:
    resources = resources_of([("port", 0x70, 0x70), ("port", 0x71, 0x71), ("port", 0x224, 0x226),
                              ("port", 0x22a, 0x22a), ("irq", 8, 8), ("dma", 1, 1)], Isa)
    partials = [p for _, p in resources.partials()]
    assert [(p.start, p.length) for p in partials if isinstance(p, Port)] == [(0x70, 2), (0x224, 3), (0x22a, 1)]
    assert [p.level for p in partials if isinstance(p, Interrupt)] == [8]
    assert [p.channel for p in partials if isinstance(p, Dma)] == [1]


@pytest.mark.parametrize("name", sorted(n for n, m in CATALOG.items() if m.bus == "isa" and not m.nt_driver))
def test_the_legacy_driver_is_given_exactly_what_the_model_decodes(name: str) -> None:
    spec = parse_machine_text(_one(name), "<t>")
    dev = spec.device("d")
    (params,) = legacy_parameters([dev], EMPTY_LAYOUT).values()
    partials = [p for _, p in params["Resources"].partials()]
    claimed = {(a, a + n - 1) for a, n in ((p.start, p.length) for p in partials if isinstance(p, Port))}
    runs: list[list[int]] = []
    for a, b in sorted((a, b) for kind, a, b in dev.decoded_resources() if kind == "port"):
        if runs and a <= runs[-1][1] + 1:      # adjacent decoded runs make one descriptor
            runs[-1][1] = max(runs[-1][1], b)
        else:
            runs.append([a, b])
    assert claimed == {(a, b) for a, b in runs}
    assert sorted(p.level for p in partials if isinstance(p, Interrupt)) == \
        sorted(a for kind, a, _ in dev.decoded_resources() if kind == "irq")
    assert sorted(p.channel for p in partials if isinstance(p, Dma)) == \
        sorted(a for kind, a, _ in dev.decoded_resources() if kind == "dma")
    if dev.model.probe:
        assert params["ProbeBase"] == dev.settings[dev.model.probe_base] and params["Probe"]


def test_sample_drivers_claim_the_decoded_runs_unless_told_block() -> None:
    dev = parse_machine_text(_one("sb16"), "<t>").device("d")
    exact = NtDriver.parameters_for([dev])["d"][DECODED_PORTS]
    assert [(p.start, p.length) for _, p in exact.partials()] == [(0x224, 3), (0x22a, 1), (0x22c, 4)]
    assert DECODED_PORTS not in NtDriver.parameters_for([dev], "block")["d"]
    fdc = parse_machine_text(_one("isa-fdc"), "<t>").device("d")
    floppy = DRIVERS["floppy"]
    assert floppy.WHOLE_BLOCK in floppy.parameters_for([fdc], "block")
    assert floppy.WHOLE_BLOCK not in floppy.parameters_for([fdc])
    # the 82077 runs the driver knows are the ones the catalog's isa-fdc decodes
    runs = {(0x3f0 + o, 0x3f0 + o + n - 1) for o, n in floppy.DECODED_RUNS}
    assert runs == {(a, b) for kind, a, b in fdc.decoded_resources() if kind == "port"}


@pytest.mark.qemu
def test_the_default_machine_shows_board_devices_under_their_nt_owners(tmp_path: Path) -> None:
    result = run_job(load_machine(CONFIGS / "machines" / "default.yaml"), tmp_path / "out")
    assert result.clean, result.format_text()
    lines = {c.device: c for c in result.claimants}
    owners = {"board:keyboard-controller": "i8042prt", "board:ide-legacy": "atapi", "board:acpi": "ACPI",
              "board:timer": "PC Compatible Eisa/Isa HAL", "board:interrupt-controllers": "PC Compatible Eisa/Isa HAL",
              "board:dma-controllers": "PC Compatible Eisa/Isa HAL", "board:floppy-controller": "Floppy",
              "sb0": "Sndblst", "lpt1": "Parport", "com1": "Serial"}
    for device, owner in owners.items():
        assert lines[device].status == "claimed" and lines[device].claimant == owner, lines[device]
    assert lines["br0"].status == "unclaimed" and "bridge" in lines["br0"].detail
    assert lines["fd0"].status == "claimed" and "its controller" in lines["fd0"].detail
    # every device of the machine file and of the board has a line, claimed or explained
    assert {d.id for d in result.spec.devices} <= set(lines)
    assert all(c.status == "claimed" or c.detail for c in result.claimants)
    for key in ("ScsiAdapter\\atapi", "PnP Manager\\ACPI", "Hardware Abstraction Layer\\PC Compatible Eisa/Isa HAL",
                "KeyboardPort/PointerPort\\i8042prt  [volatile]\n    \\Device\\KeyboardPort0.Raw"):
        assert key in result.resource_map, key
    report = (tmp_path / "out" / "report.txt").read_text()
    assert "board:keyboard-controller: claimed by i8042prt" in report
    # i8042prt names its port device, and the pointer port's link to it, in the DeviceMap
    with Registry(tmp_path / "out" / "registry.sqlite", create=False) as registry:
        service = registry.get(f"{DEVICE_MAP}\\KeyboardPort", "\\Device\\KeyboardPort0")
        assert service.endswith("\\Services\\i8042prt")
        assert registry.get(f"{DEVICE_MAP}\\PointerPort", "\\Device\\PointerPort0") == service


@pytest.mark.qemu
def test_a_block_claim_over_a_companion_chip_is_explained(tmp_path: Path) -> None:
    result = run_job(load_machine(CONFIGS / "conflicts" / "sb16-block-adlib.yaml"), tmp_path / "out", picture=False)
    (first, *_) = result.conflicts
    assert "opl0 (adlib) is a chip of the same card as sb0 (sb16)" in first["explanation"]
    lines = {c.device: c for c in result.claimants}
    assert lines["opl0"].status == "refused" and lines["sb0"].status == "claimed"


#: isa-vga as measured on QEMU 7.2 (`info mtree -f -o` on isapc): its registers, VBE and
#: the legacy window; a user model (HARNESS_DEVICE_MODELS), not a shipped one.
ISA_VGA_MODEL = """\
name: claimants-isa-vga
description: ISA VGA (test model)
qemu_driver: isa-vga
bus: isa
machines: [isapc]
decodes:
  fixed_ports:
    - {start: 0x1ce, length: 4}
    - {start: 0x3b4, length: 2}
    - {start: 0x3ba, length: 1}
    - {start: 0x3c0, length: 16}
    - {start: 0x3d4, length: 2}
    - {start: 0x3da, length: 1}
  fixed_memory:
    - {start: 0xa0000, length: 0x20000}
"""


@pytest.fixture
def isa_vga_model(tmp_path: Path, monkeypatch) -> None:
    """The test ISA VGA model in a user model folder."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "claimants-isa-vga.yaml").write_text(ISA_VGA_MODEL)
    monkeypatch.setenv("HARNESS_DEVICE_MODELS", str(models))


@pytest.mark.qemu
@pytest.mark.usefixtures("isa_vga_model")
def test_a_device_over_the_vga_registers_conflicts_with_the_miniport(tmp_path: Path) -> None:
    spec = parse_machine_text("machine: isapc\nmemory: 32\ndevices:\n"
                              "  - {model: claimants-isa-vga, id: vga0}\n"
                              "  - {model: isa-debugcon, id: dbg0, iobase: 0x3bc}\n"
                              "  - {model: isa-debugcon, id: dbg1, iobase: 0x3c4}\n", "<vga>")
    assert spec.device("vga0").driver == "vga"
    result = run_job(spec, tmp_path / "out", picture=False)
    lines = {c.device: c for c in result.claimants}
    # A second console, mapped last, takes 0x3c4 from the VGA and its claim comes first: the
    # miniport's claim of 0x3c0-0x3df is refused.  The console at 0x3bc, just above the
    # miniport's 0x3b0-0x3bb, is a near-conflict and stays clean.
    assert {(e["driver"], e["conflict"]["holder_device"]) for e in result.conflicts} == \
        {("VgaSave", "\\Device\\Legacy_dbg1")}, result.format_text()
    assert lines["vga0"].status == "refused" and lines["dbg0"].status == "claimed", result.claimants
    assert "shadowed" in {c.kind for c in result.collisions}


@pytest.mark.qemu
@pytest.mark.usefixtures("isa_vga_model")
def test_the_vga_miniport_claims_the_legacy_vga_ranges(tmp_path: Path) -> None:
    spec = parse_machine_text("machine: isapc\nmemory: 32\ndevices:\n"
                              "  - {model: claimants-isa-vga, id: vga0}\n", "<vga>")
    result = run_job(spec, tmp_path / "out", picture=False)
    assert result.clean, result.format_text()
    line = next(c for c in result.claimants if c.device == "vga0")
    assert line.status == "claimed" and line.claimant == "VgaSave", line
    for shown in ("0x3b0-0x3bb", "0x3c0-0x3df", "0xa0000-0xbffff", "0x1ce-0x1d1"):
        assert shown in result.resource_map, shown
    # the video port driver lists its device, and the highest number, for win32k
    with Registry(tmp_path / "out" / "registry.sqlite", create=False) as registry:
        assert registry.get(f"{DEVICE_MAP}\\VIDEO", "\\Device\\Video0").endswith("\\Services\\VgaSave\\Device0")
        assert registry.get(f"{DEVICE_MAP}\\VIDEO", "MaxObjectNumber") == 0


def test_a_bundle_keeps_claim_style_and_driver_none() -> None:
    from harness.repro import Bundle, parse_bundle
    from harness.testbed import LoadStep
    from harness.yamlio import load_text
    spec = load_machine(CONFIGS / "conflicts" / "sb16-block-adlib.yaml")
    bundle = Bundle(spec, [LoadStep("sb16", ("sb0",), claim="block"), LoadStep("legacy", ("opl0",))])
    back = parse_bundle(load_text(bundle.dump(), "<b>"), "<b>")
    assert back.steps == bundle.steps
    quiet = parse_machine_text(_one("gus", ", driver: none"), "<t>")
    back = parse_bundle(load_text(Bundle(quiet, []).dump(), "<q>"), "<q>")
    assert back.spec.device("d").no_driver and back.steps == []
    with pytest.raises(ConfigError, match=r"steps\[0\]|claim"):
        parse_bundle(load_text(bundle.dump().replace("claim: block", "claim: all"), "<bad>"), "<bad>")


@pytest.mark.qemu
def test_the_generic_driver_claims_isa_and_pci_models_alike(tmp_path: Path) -> None:
    spec = parse_machine_text("""machine: q35
devices:
  - {model: pci-testdev, id: t0, addr: 5}
  - {model: virtio-net-pci, id: v0, addr: 6}
  - {model: e1000e, id: n0, addr: 7}
  - {model: ib700, id: wd0}
  - {model: pvpanic, id: pp0}
  - {model: isa-debug-exit, id: ex0, iobase: 0x501}
  - {model: gus, id: gus0, iobase: 0x240, irq: 7, dma: 3}
  - {model: cs4231a, id: wss0, iobase: 0x530, irq: 5, dma: 1}
  - {model: isa-ide, id: ide0}
""", "<generic>")
    assert {d.driver for d in spec.devices} == {"legacy"}
    result = run_job(spec, tmp_path / "out", picture=False)
    assert result.clean, result.format_text()
    lines = {c.device: c for c in result.claimants}
    for dev in spec.devices:
        assert lines[dev.id].status == "claimed" and lines[dev.id].claimant == "Legacy", lines[dev.id]
    checks = [c for c in result.checks if c.driver == "Legacy"]
    # every port run, memory BAR, line and channel of every device, each decoded by it
    assert checks and all(c.ok for c in checks)
    ports = {c.resource for c in checks if c.device == "\\Device\\Legacy_gus0" and c.resource.startswith("port")}
    assert ports == {"port 0x240-0x240 (length 0x1)", "port 0x246-0x24f (length 0xa)",
                     "port 0x300-0x301 (length 0x2)", "port 0x340-0x347 (length 0x8)"}


def _claimed_ranges(result, device: str) -> set[tuple[str, int]]:
    """(kind, first) of each port/memory claim the job checked for NT device ``device``."""
    out = set()
    for check in result.checks:
        if check.device == device and check.resource.split()[0] in ("port", "memory"):
            kind, span = check.resource.split()[:2]
            out.add((kind, int(span.split("-")[0], 16)))
    return out


def _bars(fn) -> set[tuple[str, int]]:
    return {("port" if b.kind == "io" else "memory", b.base) for b in fn.bars if b.base and b.kind != "rom"}


#: A second PIIX3 IDE function for pc (a user model, not a shipped one): its bus-master
#: BAR only, the part placed per function (QEMU 7.2 maps every instance's compatibility
#: ports at the same 0x1f0/0x170 addresses, which the board's atapi claim covers).
PIIX3_IDE_MODEL = """\
name: claimants-piix3-ide
description: PIIX3 IDE function (test model, bus-master BAR only)
qemu_driver: piix3-ide
bus: pci
machines: [pc]
pci:
  vendor: 0x8086
  device: 0x7010
  class: 0x0101
  bars:
    - {bar: 4, kind: io, size: 0x10}
"""


@pytest.mark.qemu
@pytest.mark.parametrize("machine, model, board_line, board_device, board_bdf", [
    ("q35", "ich9-ahci", "board:sata", "PnpReserved_sata", "00:1f.2"),
    ("pc", "claimants-piix3-ide", "board:ide-busmaster", "Ide_ide-busmaster", "00:01.1"),
])
def test_a_user_device_that_is_the_boards_chip_is_claimed_by_its_own_driver(
        machine: str, model: str, board_line: str, board_device: str, board_bdf: str,
        tmp_path: Path, monkeypatch) -> None:
    """A user device with the IDs of a built-in function (q35's AHCI 00:1f.2, pc's PIIX3
    IDE 00:01.1) at slot 3: the board's claimant must hold the built-in function's BARs,
    the generic driver the user's, with no conflict between them (an ID search finds the
    user's ich9-ahci first on q35)."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "claimants-piix3-ide.yaml").write_text(PIIX3_IDE_MODEL)
    monkeypatch.setenv("HARNESS_DEVICE_MODELS", str(models))
    spec = parse_machine_text(f"machine: {machine}\ndevices:\n  - {{model: {model}, id: twin, addr: 3}}\n",
                              "<twin>")
    result = run_job(spec, tmp_path / "out", picture=False)
    assert result.clean, result.format_text()
    lines = {c.device: c for c in result.claimants}
    assert lines["twin"].status == "claimed" and lines["twin"].claimant == "Legacy", lines["twin"]
    assert lines[board_line].status == "claimed" and board_device in lines[board_line].detail, lines[board_line]
    by_bdf = {fn.bdf: fn for fn in result.layout.pci}
    built_in, user = by_bdf[board_bdf], by_bdf["00:03.0"]
    assert (built_in.vendor, built_in.device) == (user.vendor, user.device)
    assert _claimed_ranges(result, f"\\Device\\{board_device}") == _bars(built_in)
    assert _claimed_ranges(result, "\\Device\\Legacy_twin") == _bars(user)


# --- a second display behind a bridge; a BAR's ownerless RAM (qa5) ---------------------

def _vga_pair() -> tuple[list, "Layout"]:
    """svga0 on bus 0, ati0 behind a bridge whose VGA enable is off: the flat view shows
    only svga0 at the legacy VGA ranges (as QEMU 7.2 does after SeaBIOS)."""
    from harness.qemu.layout import Bar, DecodedRange, PciFunction
    spec = parse_machine_text("machine: pc\ndevices:\n  - {model: vmware-svga, id: svga0, addr: 2}\n"
                              "  - {model: pci-bridge, id: br0, addr: 5}\n"
                              "  - {model: ati-vga, id: ati0, bus: br0, addr: 1}\n", "<t>")

    def fn(bus: int, slot: int, qdev_id: str, bars: tuple) -> PciFunction:
        return PciFunction(bus, slot, 0, 0, 0, 0, 0, 0x300, "VGA", 0, 3, 0, None, qdev_id, bars)
    pci = (fn(0, 2, "svga0", (Bar(0, "io", 0xd010, 0x10),)), fn(1, 1, "ati0", (Bar(1, "io", 0xc000, 0x100),)))
    io = tuple(DecodedRange("io", a, b, "vga", "svga0", "vmware-svga", 0, "i/o")
               for a, b in ((0x3b4, 0x3b5), (0x3c0, 0x3cf), (0x3d4, 0x3d5)))
    layout = Layout("t", "pc", "post-firmware", "7.2", "tcg", pci=pci, io=io)
    return [spec.device("svga0"), spec.device("ati0")], layout


def _ports(params: dict) -> set[tuple[int, int]]:
    return {(p.start, p.start + p.length - 1) for _, p in params["Resources"].partials() if isinstance(p, Port)}


def test_the_vga_block_is_claimed_only_for_the_display_that_reaches_the_cpu() -> None:
    devices, layout = _vga_pair()
    params = legacy_parameters(devices, layout, (("port", 0x3B0, 0x3BB), ("port", 0x3C0, 0x3DF)))
    assert {(0x3b0, 0x3bb), (0x3c0, 0x3df), (0xd010, 0xd01f)} <= _ports(params["svga0"])
    assert _ports(params["ati0"]) == {(0xc000, 0xc0ff)}   # its BAR alone: its VGA ports reach nobody


def test_an_ownerless_region_inside_a_bar_is_the_bar_devices() -> None:
    from harness.qemu.layout import MtreeRegion, own_ownerless
    devices, _ = _vga_pair()
    fifo = MtreeRegion(0, 0xfe000000, 0xfe00ffff, 1, "ram", "vmsvga.fifo", None, None, None)
    stray = MtreeRegion(0, 0xfe100000, 0xfe10ffff, 1, "ram", "vmsvga.fifo", None, None, None)
    bars = {"svga0": [(0xfe000000, 0xfe00ffff)], "ati0": [(0xfe100000, 0xfe10ffff)]}
    for flat in (True, False):
        mine, other = own_ownerless([fifo, stray], devices, flat=flat, bars=bars)
        assert (mine.owner_kind, mine.owner) == ("dev", "svga0")
        assert other.owner is None      # inside ati0's BAR, but no ati-vga region of that name
    assert own_ownerless([fifo], devices, flat=True)[0].owner is None   # no BARs given: nobody's
