"""The live-machine fuzzer (tests/livefuzz.py, ``make fuzz-machines``): its generator,
its invariants on hand-made layouts, a seeded smoke through the main job, and the QEMU
facts its findings rest on."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest

import livefuzz
from harness.devices import board_model, load_catalog
from harness.qemu.layout import DecodedRange, IsaDevice, Layout, ShadowedRange
from helpers import machine_error, machine_spec

SEEDS = range(200)


# ---------------------------------------------------------------------------- generator
def test_the_same_seed_gives_the_same_file_and_another_seed_another() -> None:
    assert livefuzz.generate(7) == livefuzz.generate(7)
    assert len({livefuzz.machine_text(livefuzz.generate(s)) for s in SEEDS}) == len(SEEDS)


def test_generated_files_are_mostly_valid_and_cover_what_the_issue_asks() -> None:
    catalog = load_catalog()
    machines, refused, features = Counter(), 0, Counter()
    for seed in SEEDS:
        text, spec, attempts = livefuzz.valid_machine(seed, catalog)   # refusals name a file line
        refused += attempts
        machines[spec.machine] += 1
        features["builtin"] += bool(spec.builtin)
        features["after_firmware"] += bool(spec.after_firmware)
        features["bridge"] += any(d.model.bridge for d in spec.devices)
        features["behind a bridge"] += any(d.bus and d.model.bus != "isa" for d in spec.devices)
        features["driver: none"] += any(d.no_driver for d in spec.devices)
        # the second round's classes
        features["APIC HAL on pc"] += livefuzz.hal_of(text) == "apic" and spec.machine == "pc"
        features["port above 0x3ff"] += any(lo > 0x3FF for d in spec.devices if d.model.bus == "isa"
                                            for kind, lo, _ in d.decoded_resources() if kind == "port")
        features["IRQ 2"] += any(lo == 2 for d in spec.devices for kind, lo, _ in d.decoded_resources() if kind == "irq")
        features["16-bit DMA"] += any(lo >= 5 for d in spec.devices for kind, lo, _ in d.decoded_resources() if kind == "dma")
        features["multifunction"] += any(d.multifunction for d in spec.devices)
        features["PCIe switch"] += any(d.model.name == "x3130-upstream" for d in spec.devices)
        features["several builtin"] += len(spec.builtin) > 1
        features["firmware_log: false"] += not spec.firmware_log
        for step in spec.after_firmware:
            features[f"step {step.kind}"] += 1
        assert 1 <= len(spec.devices) <= livefuzz.MAX_DEVICES
    assert set(machines) == {"isapc", "pc", "q35"}
    assert refused < len(SEEDS) // 4, refused
    assert all(features[f] >= 3 for f in features) and len(features) >= 17, features


#: The third round's classes (fuzz3), each in at least a few of :data:`COVERAGE_SEEDS`'s files.
THIRD_ROUND = ("drive", "several ISA cards of one model", "isapc with 7+ ISA cards", "two displays with the VGA window",
               "pci-bridge with devices behind it", "pci-bridge behind a root port", "bridge window step",
               "drivers: list", "claim: block", "override_conflict", "machine q35, HAL pic",
               "step memory_write post-firmware", "step memory_read post-firmware", "step port_read post-firmware",
               "ReactOS's IoReportResourceUsage")
COVERAGE_SEEDS = range(600)


def test_the_third_round_writes_every_catalog_model_and_its_classes() -> None:
    """Generation alone (no QEMU): every model of the catalog (the drives included, which
    the first two rounds never wrote) and every setting is in some file; each class of
    the third round is in at least 1 % of the files; validation still takes most."""
    catalog = load_catalog()
    found = livefuzz.coverage(COVERAGE_SEEDS, catalog)
    assert not [m for m in catalog if not found["models"][m]]
    assert not [f"{m.name}.{p.name}" for m in catalog.values() for p in m.settings
                if not found["settings"][f"{m.name}.{p.name}"]]
    assert {c: found["classes"][c] for c in THIRD_ROUND if found["classes"][c] < len(COVERAGE_SEEDS) // 100} == {}
    assert found["placements"]["pc behind pci-bridge"] and found["placements"]["q35 behind pci-bridge behind pcie-root-port"]
    assert found["refused"]["files"] < len(COVERAGE_SEEDS) // 4


#: The fourth round's classes (fuzz4: the firmware's end moved to SeaBIOS's last log line),
#: each in at least 3 % of :data:`COVERAGE_SEEDS`'s files.
FOURTH_ROUND = ("firmware_log: false (the reboot is the end)", "both firmware ends checked",
                "firmware run twice in one QEMU", "a device on an end-path port (0x70/0x71/0xcf9/0x92/0x64/fw_cfg)",
                "memory BAR moved into 0xc0000-0xfffff", "memory_read in 0xc0000-0xfffff", "machine q35, HAL pic",
                "step memory_read post-drivers")


def test_the_fourth_round_writes_the_firmware_end_classes() -> None:
    catalog = load_catalog()
    for seed, classes in ((161, FOURTH_ROUND[:4]), (30, FOURTH_ROUND[2:5])):   # the smoke's
        text, spec, _ = livefuzz.valid_machine(seed, catalog)
        assert set(classes) <= set(livefuzz.classes_of(text, spec)), seed
    found = livefuzz.coverage(COVERAGE_SEEDS, load_catalog())["classes"]
    assert {c: found[c] for c in FOURTH_ROUND if found[c] < len(COVERAGE_SEEDS) * 3 // 100} == {}


#: The fifth round's classes (fuzz5), each in at least 3 % of :data:`COVERAGE_SEEDS`'s files.
FIFTH_ROUND = ("PnP solution applied and run again", "slowed at attach", "slowed at qmp", "slowed at qtest",
               *(f"a stopper on a port {phase} writes" for phase in livefuzz.STOP_PHASES))


def test_the_fifth_round_writes_stoppers_at_every_moment_slowed_runs_and_pnp_files() -> None:
    catalog = load_catalog()
    for seed, classes in ((222, FIFTH_ROUND[:1]), (20, ("slowed at qmp", "a stopper on a port step writes"))):
        text, spec, _ = livefuzz.valid_machine(seed, catalog)   # the smoke's
        assert set(classes) <= set(livefuzz.classes_of(text, spec)), seed
    found = livefuzz.coverage(COVERAGE_SEEDS, catalog)["classes"]
    assert {c: found[c] for c in FIFTH_ROUND if found[c] < len(COVERAGE_SEEDS) * 3 // 100} == {}


def test_a_solution_file_sets_the_moved_settings_and_moves_the_moved_bars() -> None:
    from types import SimpleNamespace
    from harness.pnp_live import BarComparison
    text = "# pnp: true\nmachine: pc\ndevices:\n- {model: isa-serial, id: com1, iobase: 0x3f8, irq: 4}\n" \
           "- {model: rtl8139, id: nic0}\n"
    report = SimpleNamespace(changes={"com1": {"iobase": (0x3F8, 0x2F8), "irq": (4, 3)}},
                             bars=[BarComparison("nic0", "BAR0 io size 0x100", "0xc000-0xc0ff", "0xc100-0xc1ff", False, ""),
                                   BarComparison("nic0", "BAR1 memory size 0x100", "0xfebf1000-0xfebf10ff",
                                                 "0xfebf1000-0xfebf10ff", True, "")])
    copy = livefuzz.solution_file(text, report)
    spec = livefuzz.parse_machine_text(copy, "copy.yaml")
    assert livefuzz.job_options(copy) == {"pnp": "true"}
    assert dict(spec.device("com1").settings)["iobase"] == 0x2F8 and dict(spec.device("com1").settings)["irq"] == 3
    assert [(a.kind, a.target, a.address) for a in spec.after_firmware] == [("move_bar", "nic0", 0xC100)]


def test_the_other_end_flips_the_log_in_place_and_keeps_every_line() -> None:
    text = "# ends: both\nmachine: pc\ndevices:\n- {model: ib700, id: w, driver: none}\n"
    flipped, spec = livefuzz.other_end(text)
    assert not spec.firmware_log and flipped.splitlines()[:4] == text.splitlines()
    back, spec = livefuzz.other_end(flipped)
    assert spec.firmware_log and back.splitlines()[:4] == text.splitlines()
    assert livefuzz.other_end(text.replace("# ends: both\n", "")) is None     # not asked for
    on_log_port = "# ends: both\nmachine: pc\nfirmware_log: false\ndevices:\n- {model: pvpanic, id: p, ioport: 0x402}\n"
    assert livefuzz.other_end(on_log_port) is None   # the log on would be refused: the file keeps its end


def _collides(spec) -> bool:
    """Whether a device's decode meets the board's or another device's (ports, IRQ, DMA)."""
    taken: list[tuple[str, int, int]] = []
    for part in board_model(spec.machine):
        taken += part.decoded_resources()
    for dev in spec.devices:
        mine = dev.decoded_resources()
        if any(k == kind and lo <= b and a <= hi for kind, lo, hi in mine for k, a, b in taken):
            return True
        taken += mine
    return False


def test_most_generated_machines_hold_a_near_collision() -> None:
    catalog = load_catalog()
    specs = [livefuzz.valid_machine(seed, catalog)[1] for seed in SEEDS]
    assert sum(map(_collides, specs)) > len(specs) // 2


# ---------------------------------------------------------------------------- invariants
SPEC = machine_spec("machine: isapc\ndevices:\n"
                    "  - {model: isa-serial, id: com1, iobase: 0x3f8, irq: 4}\n"
                    "  - {model: isa-serial, id: com2, iobase: 0x3f8, irq: 3}\n")


def _layout(isa=(), shadowed=(), pci=()) -> Layout:
    return Layout("m", "isapc", "post-drivers", "7.2.22", "tcg", isa=tuple(isa), shadowed=tuple(shadowed),
                  pci=tuple(pci))


def _report(collisions=(), verdict="conflict") -> dict:
    return {"verdict": verdict, "collisions": [{"kind": k, "devices": list(d)} for k, d in collisions],
            "drivers": [], "error_log": [], "claimants": [], "checks": []}


SHADOW = ShadowedRange("io", 0x3F8, 0x3FF, "serial", "com1", "isa-serial", ("com2",))


def test_a_shadowed_range_must_be_a_collision_between_the_same_two() -> None:
    layout = _layout(shadowed=[SHADOW])
    assert livefuzz.check_overlaps(SPEC, layout, _report([("shadowed", ("com1", "com2"))])) == []
    missing = livefuzz.check_overlaps(SPEC, layout, _report([("shadowed", ("com1", "board:rtc"))]))
    assert missing and "com1 and com2 overlap" in missing[0]
    assert livefuzz.check_overlaps(SPEC, layout, _report(verdict="clean"))


def test_two_isa_devices_on_one_line_overlap_but_routed_pci_pins_are_one_source() -> None:
    from harness.qemu.layout import PciFunction
    isa = [IsaDevice("/p/com1", "com1", "isa-serial", {"irq": 4}),
           IsaDevice("/p/com2", "com2", "isa-serial", {"irq": 4})]
    assert livefuzz.irq_drivers(SPEC, _layout(isa))[4] == ["com1", "com2"]
    overlaps = livefuzz.layout_overlaps(SPEC, _layout(isa))
    assert [o.resource for o in overlaps] == ["irq 4"]

    def fn(slot: int, qdev: str) -> PciFunction:
        return PciFunction(0, slot, 0, 0x10EC, 0x8029, 0, 0, 0x200, "nic", 0, 3, 1, 11, qdev, ())
    pci_spec = machine_spec("machine: pc\ndevices:\n  - {model: ne2k_pci, id: n1}\n  - {model: ne2k_pci, id: n2}\n")
    layout = Layout("m", "pc", "post-drivers", "7.2.22", "tcg", pci=(fn(3, "n1"), fn(4, "n2")))
    assert livefuzz.irq_drivers(pci_spec, layout)[11] == ["n1"]   # the router ORs them: one driver
    assert not [o for o in livefuzz.layout_overlaps(pci_spec, layout) if o.resource == "irq 11"]


def test_a_pci_pin_is_on_the_line_its_pirq_route_says_not_its_line_register() -> None:
    """livefuzz round two: a step rewrote a NIC's interrupt line register (0x3c) to 9 and the
    checker took that note for the line the pin drives (an SCI overlap the hardware does not
    have); slot 3's INTA# on the PIIX3 is PIRQC, routed to 11."""
    from harness.qemu.layout import PciFunction, PirqRouting
    nic = PciFunction(0, 3, 0, 0x10EC, 0x8029, 0, 0, 0x200, "nic", 0, 3, 1, 9, "n1", ())
    spec = machine_spec("machine: pc\ndevices:\n  - {model: ne2k_pci, id: n1, addr: 3}\n")
    routes = PirqRouting("piix3", {"A": 10, "B": 10, "C": 11, "D": 11}, {})
    layout = Layout("m", "pc", "post-drivers", "7.2.22", "tcg", pci=(nic,), pirq=routes)
    assert livefuzz.pci_pin_line(layout, nic) == 11
    assert "n1" in livefuzz.irq_drivers(spec, layout)[11] and "n1" not in livefuzz.irq_drivers(spec, layout).get(9, [])
    disabled = PirqRouting("piix3", {**routes.routes, "C": None}, {})
    assert livefuzz.pci_pin_line(Layout(**{**layout.__dict__, "pirq": disabled}), nic) is None
    # no router read (isapc's layout has none): the register is all there is, unless a
    # step wrote it (seed 300160: q35's board slot 0x1c, whose D2xIR the layout lacks)
    assert livefuzz.pci_pin_line(Layout(**{**layout.__dict__, "pirq": None}), nic) == 9
    assert livefuzz.pci_pin_line(Layout(**{**layout.__dict__, "pirq": None}), nic, rewritten=True) is None
    board_slot = PciFunction(0, 0x1C, 0, 0x8086, 0x100E, 0, 0, 0x200, "nic", 0, 3, 1, 13, "mf0", ())
    q35 = Layout("m", "q35", "post-drivers", "7.2.22", "tcg", pci=(board_slot,),
                 pirq=PirqRouting("ich9", {k: 10 for k in "ABCDEFGH"}, {}))
    stepped = machine_spec("machine: q35\ndevices:\n  - {model: e1000, id: mf0, addr: 0x1c}\n"
                           "after_firmware:\n  - {pci_write: mf0, offset: 0x3c, size: 1, value: 13}\n")
    assert 13 not in livefuzz.irq_drivers(stepped, q35)


def test_determinism_ignores_the_seconds_a_stall_took_to_find_but_not_how_it_was_found() -> None:
    """livefuzz round two (seeds 200061, 200180): a firmware event's text carries measured
    seconds ("found after 7.1 s", "2.9 s of QEMU CPU"), which differ from run to run."""
    def report(detail: str) -> dict:
        return {**_report(), "findings": [f"event [firmware] firmware-stalled: d0: {detail}"], "timings": {"job": 1.0}}
    spin = report("the firmware stopped making progress (spin, found after 7.1 s): 2.9 s of QEMU CPU")
    assert livefuzz.normalised(spin) == livefuzz.normalised(
        report("the firmware stopped making progress (spin, found after 7.4 s): 3.1 s of QEMU CPU"))
    assert livefuzz.normalised(spin) != livefuzz.normalised(
        report("the firmware stopped making progress (halt, found after 7.1 s): 2.9 s of QEMU CPU"))
    assert livefuzz.normalised(report("waits 60 s before its reboot")) != livefuzz.normalised(
        report("waits 30 s before its reboot"))   # SeaBIOS's own words are no measurement


def test_a_registry_difference_names_its_key_and_lines() -> None:
    def reg(value: str) -> bytes:
        return ("\ufeffWindows Registry Editor Version 5.00\r\n\r\n[HKEY_LOCAL_MACHINE\\HARDWARE\\A]\r\n"
                f'"Irq"=dword:{value}\r\n').encode("utf-16-le")
    assert livefuzz.registry_diff(reg("00000001"), reg("00000001")) == "the same lines"
    found = livefuzz.registry_diff(reg("00000001"), reg("00000000"))
    assert "[HKEY_LOCAL_MACHINE\\HARDWARE\\A]" in found and "dword:00000001" in found and "dword:00000000" in found


def test_a_board_line_collision_names_the_board_implicitly() -> None:
    isa = [IsaDevice("/p/com1", "com1", "isa-serial", {"irq": 2})]
    overlaps = livefuzz.layout_overlaps(SPEC, _layout(isa))
    assert [(o.resource, o.parties) for o in overlaps] == [("irq 2", ("board", "com1"))]
    assert livefuzz.check_overlaps(SPEC, _layout(isa), _report([("pic-cascade", ("com1",))])) == []
    assert livefuzz.check_overlaps(SPEC, _layout(isa), _report([("irq-shared", ("com1",))]))


def test_a_claim_called_ok_outside_the_decode_is_caught() -> None:
    layout = _layout()
    layout = Layout(**{**layout.__dict__, "io": (DecodedRange("io", 0x3F8, 0x3FF, "serial", "com1", "isa-serial", 0, "i/o"),)})
    report = _report()
    report["checks"] = [{"ok": True, "resource": "port 0x3f8-0x3ff (length 0x8)", "expected": ["com1"],
                         "device": "\\Device\\Serial0", "driver": "Serial"}]
    assert livefuzz.check_claims(SPEC, layout, report) == []
    report["checks"][0]["resource"] = "port 0x3f8-0x400 (length 0x9)"
    assert livefuzz.check_claims(SPEC, layout, report)


def test_a_block_claim_may_hold_its_cards_holes_but_not_another_devices_ports() -> None:
    """livefuzz round three (seeds 900156, 900183): with ``claim: block`` the SB16 driver
    claims 0x220-0x22f, the card's jumper block, where QEMU's sb16 decodes 0x224-0x226,
    0x22a and 0x22c-0x22f; the holes nobody decodes are the card's (the job notes them),
    a byte another device decodes is not."""
    def spec(claim: str):
        return machine_spec("machine: isapc\ndevices:\n  - {model: sb16, id: sb, iobase: 0x220}\n"
                            f"drivers:\n  - {{name: sb16, claim: {claim}}}\n")
    sb16 = [DecodedRange("io", a, b, "sb16", "sb", "sb16", 0, "i/o") for a, b in ((0x224, 0x226), (0x22A, 0x22A),
                                                                                 (0x22C, 0x22F))]
    report = _report()
    report["checks"] = [{"ok": True, "resource": "port 0x220-0x22f (length 0x10)", "expected": ["sb"],
                         "device": "\\Device\\SoundBlaster0", "driver": "Sndblst"}]
    layout = Layout(**{**_layout().__dict__, "io": tuple(sb16)})
    assert livefuzz.check_claims(spec("block"), layout, report) == []
    assert livefuzz.check_claims(spec("decoded"), layout, report)   # an exact claim has no holes
    adlib = DecodedRange("io", 0x220, 0x223, "adlib", "opl", "adlib", 0, "i/o")
    assert livefuzz.check_claims(spec("block"), Layout(**{**layout.__dict__, "io": (adlib, *sb16)}), report)


def test_a_device_called_claimed_must_have_every_range_it_decodes_claimed() -> None:
    """The decode invariant: the claim invariant the other way round."""
    com1 = DecodedRange("io", 0x3F8, 0x3FF, "serial", "com1", "isa-serial", 0, "i/o")
    extra = DecodedRange("io", 0x400, 0x401, "serial-extra", "com1", "isa-serial", 0, "i/o")
    report = _report()
    report["claimants"] = [{"device": "com1", "claimant": "Serial", "status": "claimed", "detail": ""}]
    report["checks"] = [{"ok": True, "resource": "port 0x3f8-0x3ff (length 0x8)", "expected": ["com1"],
                         "device": "\\Device\\Serial0", "driver": "Serial"}]
    layout = Layout(**{**_layout().__dict__, "io": (com1,)})
    assert livefuzz.check_decodes_claimed(SPEC, layout, report) == []
    wider = Layout(**{**layout.__dict__, "io": (com1, extra)})
    (found,) = livefuzz.check_decodes_claimed(SPEC, wider, report)
    assert "com1 decodes io 0x400-0x401" in found
    report["claimants"][0]["status"] = "refused"   # a line that says so is honest
    assert livefuzz.check_decodes_claimed(SPEC, wider, report) == []


class _Ticks:
    """A detector whose probes see the given IRR rises, one per round (no machine)."""

    def __init__(self, *rises: int) -> None:
        from harness.nt.detect import HardwareDetector

        class Scripted(HardwareDetector):
            def _out(self, port: int, value: int) -> None:
                pass

            def _lines_that_rise(self, request, withdraw) -> int:
                return next(script)
        script = iter(rises)
        self.detector = Scripted(bus=None, hal=object())
        self.detector._elcr = (0, 0)


@pytest.mark.parametrize("rises, found", [
    ((1 << 0, 0), set()),            # a lone timer tick the first time only: not the device's line
    ((1 << 0, 1 << 0), {0}),         # it rose twice: the device's
    ((1 << 1, 1 << 1), {1}),         # the 8042 on IRQ 1, confirmed
    ((1 << 4,), {4}),                # a level-capable line is seen for what it is at once
    ((1 << 0 | 1 << 4, 1 << 4), {4}),
])
def test_a_lone_edge_only_line_must_rise_twice(rises: tuple[int, ...], found: set[int]) -> None:
    """livefuzz: on q35 (the timer running under the APIC HAL's guest) an 8042 on IRQ 2 was
    detected on IRQ 0 in some runs: the registry differed between two runs."""
    assert _Ticks(*rises).detector.probe_irq(lambda: None, lambda: None) == found


@pytest.mark.qemu
def test_a_probe_over_a_running_counter_reports_the_same_line_every_run(tmp_path: Path) -> None:
    """livefuzz round three (seed 903118): with ReactOS's IoReportResourceUsage nothing
    refuses a CS4231A at 0x608 under q35's PM timer, the generic driver's probe reads the
    counter, and the finding quoted the value read: 0x2c, 0xa0, 0x7f, 0xff run to run (a
    repro bundle of it never reproduced)."""
    text = "# reactos: true\nmachine: q35\ndevices:\n  - {model: cs4231a, id: d2, iobase: 0x608, irq: 2, dma: 5}\n"
    failures = livefuzz.check_machine(text, machine_spec(text), tmp_path)
    assert failures.pop("verdict") == ["conflict"] and failures == {}, failures


@pytest.mark.qemu
def test_a_step_on_a_device_behind_an_unnumbered_bridge_is_a_failed_step(tmp_path: Path) -> None:
    """livefuzz: with 0xcf8-0xcfa under an IPMI BT the firmware resets early and never
    numbers the bridge's bus, so query-pci shows no rtl8139; its step raised (a job error)."""
    from harness.job import run_job
    result = run_job(machine_spec("machine: pc\ndevices:\n  - {model: pci-bridge-seat, id: br, addr: 0x12}\n"
                                  "  - {model: isa-ipmi-bt, id: bt, ioport: 0xcf7}\n"
                                  "  - {model: rtl8139, id: nic, bus: br, addr: 5}\n"
                                  "after_firmware:\n  - {move_bar: nic, bar: 0, address: 0, phase: post-drivers}\n"),
                     tmp_path / "out", picture=False)
    (failed,) = result.failed_actions
    assert "is on no PCI bus QEMU reports" in failed.problem and result.verdict == "conflict"


# ---------------------------------------------------------------------------- QEMU facts
def _bare_qemu(*device: str) -> subprocess.CompletedProcess:
    """QEMU with ``device`` on isapc, told over QMP on stdin to quit at once."""
    return subprocess.run(
        ["qemu-system-x86_64", "-M", "isapc", "-nodefaults", "-S", "-display", "none", "-qmp", "stdio",
         "-audiodev", "none,id=snd0", "-device", ",".join(device)],
        input='{"execute": "qmp_capabilities"}\n{"execute": "quit"}\n', capture_output=True, text=True, timeout=30)


def _flat_io(*args: str) -> list[tuple[int, int, str]]:
    """QEMU's flat I/O view (start, end, region) of isapc with ``args`` (paused, never run)."""
    import json
    from harness.qemu.layout import parse_mtree_flat
    done = subprocess.run(
        ["qemu-system-x86_64", "-M", "isapc", "-nodefaults", "-S", "-display", "none", "-qmp", "stdio", *args],
        input='{"execute": "qmp_capabilities"}\n{"execute": "human-monitor-command", '
              '"arguments": {"command-line": "info mtree -f -o"}}\n{"execute": "quit"}\n',
        capture_output=True, text=True, timeout=30)
    text = next(json.loads(line)["return"] for line in done.stdout.splitlines()
                if line.startswith('{"return": "'))
    return [(r.start, r.end, r.name) for r in parse_mtree_flat(text)["I/O"]]


@pytest.mark.qemu
@pytest.mark.parametrize("model, settings, args, regions", [
    # livefuzz round two: +0x1e of 0xfff4 is 0x12 (the run's start is a uint16_t in QEMU)
    ("isa-applesmc", {"iobase": 0xFFF4}, ("-device", "isa-applesmc,iobase=0xfff4"), ("applesmc",)),
    # a run that starts below 0xffff and reaches past it is cut at the end of the space
    ("isa-serial", {"iobase": 0xFFFC, "irq": 4}, ("-chardev", "null,id=c", "-device", "isa-serial,iobase=0xfffc,chardev=c"),
     ("serial",)),
])
def test_qemu_wraps_a_port_run_past_0xffff_as_the_model_says(model, settings, args, regions) -> None:
    flat = {(lo, hi) for lo, hi, name in _flat_io(*args) if name.startswith(regions)}
    decoded = {(lo, hi) for kind, lo, hi in load_catalog()[model].decoded_resources(settings) if kind == "port"}
    assert flat == decoded and all(hi <= 0xFFFF for _, hi in decoded), (flat, decoded)


@pytest.mark.qemu
@pytest.mark.parametrize("iobase, aborts", [(0x380, False), (0x381, True), (0x3F3, True)])
def test_qemu_aborts_with_an_adlib_above_0x380(iobase: int, aborts: bool) -> None:
    """QEMU registers adlib's base+0..3, base+8..9 and 0x388 as one ascending port list
    (livefuzz found QEMU aborting at 0x3f3): the model's max."""
    done = _bare_qemu("adlib", f"iobase={iobase:#x}", "audiodev=snd0")
    assert (done.returncode == -6 and "portio_list_add" in done.stderr) == aborts, (done.returncode, done.stderr)
    if not aborts:
        assert done.returncode == 0, done.stderr
    assert load_catalog()["adlib"].properties["iobase"].maximum == 0x380


@pytest.mark.qemu
@pytest.mark.parametrize("model", sorted(n for n, m in load_catalog().items() if m.instance_property))
def test_qemu_numbers_isa_ports_in_order_and_refuses_one_past_the_models_last_index(model: str) -> None:
    """livefuzz round three (seed 900135): a fourth isa-parallel, every one at its own base,
    made QEMU exit ("Max. supported number of parallel ports is 3"): QEMU numbers them in
    -device order whatever their bases; an explicit index takes the place of the count."""
    index = load_catalog()[model].instance_property
    count = len(load_catalog()[model].properties[index].choices)

    def ports(n: int, *last: str) -> list[str]:
        args = []
        for i in range(n):
            args += ["-chardev", f"null,id=c{i}", "-device",
                     ",".join((model, f"chardev=c{i}", f"iobase={0x100 + 8 * i:#x}", *(last if i == n - 1 else ())))]
        return args
    for args, refused in ((ports(count), False), (ports(count + 1), True), (ports(count + 1, f"{index}=0"), False)):
        done = subprocess.run(["qemu-system-x86_64", "-M", "isapc", "-nodefaults", "-S", "-display", "none",
                               "-qmp", "stdio", *args], input='{"execute": "qmp_capabilities"}\n{"execute": "quit"}\n',
                              capture_output=True, text=True, timeout=30)
        assert (done.returncode != 0 and "Max. supported number" in done.stderr) == refused, (args, done.stderr)
    head = "machine: isapc\ndevices:\n" + "".join(f"  - {{model: {model}, id: p{i}, iobase: {0x100 + 8 * i:#x}}}\n"
                                                   for i in range(count))
    machine_error(head + f"  - {{model: {model}, id: last, iobase: 0x200}}\n", count + 3, f"devices[{count}].model",
                  f"QEMU gives it {index} {count} and takes {index} 0-{count - 1} only")
    machine_spec(head + f"  - {{model: {model}, id: last, iobase: 0x200, {index}: 0}}\n")


def test_validation_refuses_the_adlib_qemu_aborts_on() -> None:
    machine_error("machine: isapc\ndevices:\n  - {model: adlib, id: fm, iobase: 0x3f3}\n", 3,
                  "devices[0].iobase", "0x3f3 is above 0x380, the highest iobase QEMU takes")


def test_only_a_card_where_the_reboot_writes_excuses_a_reboot_end_that_stopped() -> None:
    spec = machine_spec("machine: pc\ndevices:\n  - {model: isa-serial, id: com9, iobase: 0x70, irq: 4}\n"
                        "  - {model: isa-serial, id: com8, iobase: 0x2e8, irq: 3}\n")
    halted = {"events": [{"kind": "firmware-stalled", "devices": ["com9"], "stopped": True}]}
    assert livefuzz._reboot_met(spec, {"events": []}, halted)
    assert not livefuzz._reboot_met(spec, halted, halted)        # the log's end stopped too: compared
    other = {"events": [{"kind": "firmware-stalled", "devices": ["com8"], "stopped": True}]}
    assert not livefuzz._reboot_met(spec, {"events": []}, other)  # a card the reboot does not meet
    isapc = machine_spec("machine: isapc\ndevices:\n  - {model: isa-debug-exit, id: bye, iobase: 0xcf9}\n")
    exited = {"events": [{"kind": "qemu-exited", "devices": ["bye"], "stopped": True}]}
    assert livefuzz._reboot_met(isapc, {"events": []}, exited)   # isapc's reboot writes 0xcf9 (seed 5002256)


@pytest.mark.qemu
@pytest.mark.parametrize("machine", ["pc", "isapc"])
def test_seabios_reboot_writes_the_rtc_index_and_stops_on_a_card_there(machine: str) -> None:
    """The ends invariant's exception, measured: a debug console on the RTC's index port
    records what SeaBIOS writes there.  Stopped at its last log line it wrote some bytes;
    going on into its reboot (the end without the log) it writes the shutdown-status index
    0x8f more, reads the status from the RTC it no longer reaches, and halts for good."""
    from harness.qemu.machine import FirmwareStalled, Machine
    written = {}
    for log in (True, False):
        text = (f"machine: {machine}\nfirmware_log: {str(log).lower()}\n"
                f"devices:\n  - {{model: isa-debugcon, id: dc, iobase: {livefuzz.REBOOT_STOPS_AT:#x}}}\n")
        with Machine(machine_spec(text)) as m:
            if log:
                m.run_firmware()
                assert m.firmware_end == "log"
            else:
                with pytest.raises(FirmwareStalled, match="halt"):
                    m.run_firmware()
            written[log] = m.chardev_path("dc").read_bytes()
    assert written[False].startswith(written[True]) and set(written[False][len(written[True]):]) == {0x8F}


@pytest.mark.qemu
@pytest.mark.parametrize("machine", ["isapc", "pc", "q35"])
def test_seabios_reboot_writes_the_ports_the_ends_invariant_excuses(machine: str) -> None:
    """The ends invariant's other exception, measured: a debug console at each end-path
    port SeaBIOS writes (0x70 stops the reboot: the test above) records what it gets
    stopped at the log's line and going on into the reboot; the reboot writes more, or
    other, bytes exactly where REBOOT_WRITES says (isapc's 0xcf9 gets 0x02, 0x06: livefuzz
    round five, seed 5002075, an IPMI KCS there answered its driver otherwise)."""
    from harness.qemu.machine import Machine
    differs = set()
    # (a card on pc's or q35's RTC data port 0x71 holds SeaBIOS before either end: not asked)
    for port in (0x92, 0xCF9, 0x64, *((0x71,) if machine == "isapc" else ())):
        written = {}
        for log in (True, False):
            text = (f"machine: {machine}\nfirmware_log: {str(log).lower()}\n"
                    f"devices:\n  - {{model: isa-debugcon, id: dc, iobase: {port:#x}}}\n")
            with Machine(machine_spec(text)) as m:
                m.run_firmware()
                written[log] = m.chardev_path("dc").read_bytes()
        if written[True] != written[False]:
            differs.add(port)
    assert differs == set(livefuzz.REBOOT_WRITES[machine]) - {livefuzz.REBOOT_STOPS_AT}


# ---------------------------------------------------------------------------- smoke
#: Seeds of machines (isapc and pc, steps after the firmware and builtin settings among
#: them) that hold collisions the report must name:
#: a handful through the main job twice, so the generator and the checker cannot rot.
#: Round two: 122 (the APIC HAL on pc, a multifunction slot, a command step, a port above
#: 0x3ff), 86 (a PCIe switch on q35, interrupt-line and command steps).
#: Round three: 230 (a pci-bridge behind a q35 root port with a window step, memory_write
#: into a moved BAR, a drivers list with claim: block), 387 (pc's APIC HAL with a
#: memory_write, override_conflict), 205 (isapc with eleven legacy cards, several of one model),
#: 18 (ReactOS's IoReportResourceUsage under pc's APIC HAL).
#: Round four: 161 (pc with firmware_log: false checked at both ends, the firmware run twice,
#: a card on an end-path port), 30 (q35 run twice, a memory BAR moved into 0xc0000-0xfffff).
#: Round five: 222 (isapc whose PnP solution moves three cards, applied and run again), 20
#: (q35, a pvpanic a post-drivers step writes, run again with every QMP command slowed).
SMOKE_SEEDS = (5, 12, 22, 28, 36, 122, 86, 230, 387, 205, 18, 161, 30, 222, 20)


@pytest.mark.qemu
@pytest.mark.parametrize("seed", SMOKE_SEEDS)
def test_seeded_machines_keep_every_invariant(seed: int, tmp_path: Path) -> None:
    text, spec, _ = livefuzz.valid_machine(seed)
    failures = livefuzz.check_machine(text, spec, tmp_path)
    failures.pop("verdict")
    failures.pop("checked", None)
    assert failures == {}, text
