"""Steps after the firmware (harness.actions): validation with file, line and field, the
machine-file round trip, and on live QEMU: a BAR moved onto an ISA device's memory is seen
by the main job (layout, claims, collision) and its repro bundle replays it."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import load_machine, parse_machine_text
from harness.errors import ConfigError
from harness.job import run_job
from harness.repro import load_bundle, replay
from helpers import CONFIGS, machine_error

BASE = "machine: pc\ndevices:\n  - {model: e1000, id: nic0, addr: 3}\n  - {model: isa-serial, id: com1}\nafter_firmware:\n"


def _parse(steps: str):
    return parse_machine_text(BASE + steps, "m.yaml")


@pytest.mark.parametrize(("step", "field", "message"), [
    ("  - {move_bar: nic0, bar: 2, address: 0xa0000}", "after_firmware[0].bar", "e1000 has no BAR2 (it has BAR0, BAR1)"),
    ("  - {move_bar: nic0, bar: 0, address: 0xa1000}", "after_firmware[0].address", "not aligned to BAR0's size 0x20000"),
    ("  - {move_bar: nic0, bar: 1, address: 0x10000}", "after_firmware[0].address", "out of range"),
    ("  - {move_bar: com1, bar: 0, address: 0xa0000}", "after_firmware[0].move_bar", "is a isa-serial, not a PCI device"),
    ("  - {move_bar: nicx, bar: 0, address: 0xa0000}", "after_firmware[0].move_bar", "neither a device id"),
    ("  - {pci_write: 00:01.1, offset: 0x3c, value: 1}", "after_firmware[0].pci_write", "quote a bus address"),
    ("  - {pci_write: nic0, offset: 2, value: 1}", "after_firmware[0].offset", "read-only"),
    ("  - {pci_write: nic0, offset: 0x11, size: 2, value: 1}", "after_firmware[0].offset", "not aligned"),
    ("  - {pci_write: nic0, offset: 0x10, size: 2, value: 0x10000}", "after_firmware[0].value", "out of range"),
    ("  - {port_write: 0x10000, value: 1}", "after_firmware[0].port_write", "out of range"),
    ("  - {port_write: 0x80, value: 0x100}", "after_firmware[0].value", "out of range"),
    ("  - {port_write: 0x80, size: 3, value: 1}", "after_firmware[0].size", "expected 1, 2 or 4"),
    ("  - {port_write: 0x80}", "after_firmware[0]", "missing required field 'value'"),
    ("  - {port_read: 0x80, expect: 0x100}", "after_firmware[0].expect", "out of range"),
    ("  - {port_write: 0x80, value: 1, phase: later}", "after_firmware[0].phase", "post-firmware, post-drivers"),
    ("  - {port_write: 0x80, value: 1, address: 3}", "after_firmware[0]", "address"),
    ("  - {port_write: 0x80, port_read: 0x80, value: 1}", "after_firmware", "exactly one action"),
    ("  - 7", "after_firmware", "must be a mapping"),
])
def test_step_errors_name_file_line_and_field(step: str, field: str, message: str) -> None:
    # the step's own line, or the list's for a step that is no mapping
    machine_error(BASE + step + "\n", (6, 5), field, message)


def test_isapc_has_no_pci_steps() -> None:
    with pytest.raises(ConfigError, match="isapc has no PCI bus"):
        parse_machine_text("machine: isapc\nafter_firmware:\n  - {set_command: '00:01.0', value: 0}\n", "m.yaml")


def test_steps_round_trip_and_read_as_a_user_wrote_them() -> None:
    spec = _parse("  - {move_bar: nic0, bar: 0, address: 0xa0000}\n"
                  "  - {set_command: '00:01.1', value: 0x5, phase: post-drivers}\n"
                  "  - {port_write: 0x3fc, size: 2, value: 0x1234}\n"
                  "  - {memory_read: 0xa0000, size: 4, expect: 0x140240, mask: 0xffffff}\n")
    again = parse_machine_text(__import__("yaml").safe_dump(spec.to_dict()), "again.yaml")
    assert again.after_firmware == spec.after_firmware
    assert again.config_hash() == spec.config_hash()
    assert [a.describe() for a in spec.after_firmware] == [
        "[post-firmware] move nic0 BAR0 to 0xa0000",
        "[post-drivers] set 00:01.1's command register to 0x0005",
        "[post-firmware] o /h 0x3fc 0x1234",
        "[post-firmware] xp /1wx 0xa0000, expect 0x140240 under mask 0xffffff"]
    assert spec.after_firmware[1].bdf == (0, 1, 1)
    # A machine without steps hashes as before (old bundles and caches keep their keys).
    assert "after_firmware" not in parse_machine_text("machine: pc\n").to_dict()


@pytest.mark.qemu
def test_bar_moved_onto_isa_memory_is_reported_and_replays(tmp_path: Path) -> None:
    spec = load_machine(CONFIGS / "conflicts" / "bar-moved-onto-isa-memory.yaml")
    result = run_job(spec, tmp_path / "run", picture=False)
    assert [a.ok for a in result.actions] == [True, True, True]
    assert result.actions[0].commands == ["o /w 0xcf8 0x80001810", "o /w 0xcfc 0xa0000"]
    # The window at 0xa0000 answered with the e1000's CTRL register, not VGA memory.
    assert result.actions[1].read is not None and result.actions[1].read != 0xFFFFFFFF
    bar0 = next(b for b in result.layout.pci_by_id("nic0").bars if b.index == 0)
    assert (bar0.base, bar0.end) == (0xA0000, 0xBFFFF), "the post-drivers layout shows the moved BAR"
    findings = result.findings()
    assert any(f.startswith("hardware [post-drivers] shadowed: memory 0xa0000-0xbffff: vga0, nic0") for f in findings), findings
    assert any(f.startswith("mismatch \\Device\\PciNet0: memory") and "nothing decodes" in f for f in findings), findings
    assert not result.clean and spec.expect == "conflict"
    text = (tmp_path / "run" / "report.txt").read_text()
    assert "Steps after the firmware" in text and "o /w 0xcfc 0xa0000" in text
    # The bundle carries the steps; a fresh machine shows the same findings.
    from harness.repro import write_bundle
    bundle = load_bundle(write_bundle(result, title="test"))
    assert bundle.spec.after_firmware == spec.after_firmware
    again = replay(bundle, tmp_path / "again", picture=False)
    assert again.reproduces, again.missing


@pytest.mark.qemu
def test_port_and_command_steps_and_a_failed_expectation(tmp_path: Path) -> None:
    text = ("machine: pc\ndevices:\n  - {model: ne2k_pci, id: ne, addr: 4}\n  - {model: isa-serial, id: com1}\n"
            "after_firmware:\n"
            "  - {port_write: 0x3ff, value: 0x5a}\n"             # the 16550's scratch register
            "  - {port_read: 0x3ff, expect: 0x5a}\n"
            "  - {port_read: 0x3fd, expect: 0x00}\n"             # wrong on purpose: LSR is 0x60
            "  - {memory_read: 0xd0000000, size: 4}\n"          # nothing decodes it: QEMU's xp refuses
            "  - {set_command: ne, value: 0x0, phase: post-drivers}\n")  # I/O decode off
    spec = parse_machine_text(text, "steps.yaml")
    result = run_job(spec, tmp_path / "run", picture=False)
    assert [(a.ok, a.read) for a in result.actions] == [(True, None), (True, 0x5A), (False, 0x60), (False, None),
                                                        (True, None)]
    assert result.actions[2].problem == "read 0x60, expected 0x0 under mask 0xff"
    # a refused read is what the step found (it ended the job with exit 2 and no report)
    assert result.actions[3].problem.startswith("the read was refused: ") and "0xd0000000" in result.actions[3].problem
    assert "step [post-firmware] i /b 0x3fd, expect 0x0: read 0x60, expected 0x0 under mask 0xff" in result.findings()
    fn = result.layout.pci_by_id("ne")
    assert fn.command & 0x3 == 0, "the post-drivers snapshot sees the decode switched off"
    assert any("nothing decodes this range" in f for c in result.mismatches for f in c.findings)


def test_a_bundle_step_error_names_the_bundle_line_and_field() -> None:
    from harness.repro import parse_bundle
    from harness.yamlio import load_text
    text = ("harness_repro: 1\nmachine:\n  machine: pc\n  devices:\n  - {model: e1000, id: nic0, addr: 3}\n"
            "  after_firmware:\n  - {move_bar: nic0, bar: 1, address: 0xc001}\n")
    with pytest.raises(ConfigError) as info:
        parse_bundle(load_text(text, "b.yaml"), "b.yaml")
    assert str(info.value).startswith("b.yaml:7: machine.after_firmware[0].address: 0xc001 is not aligned "
                                      "to BAR1's size 0x40"), str(info.value)


@pytest.mark.qemu
def test_a_test_bed_step_is_journaled_and_its_bundle_replays_it(tmp_path: Path) -> None:
    """A test moves a BAR among its driver loads (Testbed.act): the step lands in the
    journal, the bundle written from the bed holds it in order, and a replay does it again."""
    from harness.job import collect
    from harness.nt.registry import Registry
    from harness.qemu.actions import run_firmware_and_steps
    from harness.qemu.machine import Machine
    from harness.repro import bundle_from, parse_bundle
    from harness.testbed import LoadStep, Testbed
    from harness.yamlio import load_text
    spec = parse_machine_text("machine: pc\nfirmware_log: false\ndevices:\n  - {model: isa-vga, id: vga0}\n"
                              "  - {model: e1000, id: nic0, addr: 3}\n")
    registry = Registry(tmp_path / "reg.sqlite")
    try:
        with Machine(spec) as machine:
            run_firmware_and_steps(machine)
            bed = Testbed(machine, registry)
            bed.load_driver("pcinet")
            with pytest.raises(ConfigError, match="not aligned"):
                bed.act({"move_bar": "nic0", "bar": 0, "address": 0xA1000})
            record = bed.act({"move_bar": "nic0", "bar": 0, "address": 0xA0000})
            assert record.ok and record.commands[-1] == "o /w 0xcfc 0xa0000"
            assert [type(s).__name__ for s in bed.steps] == ["LoadStep", "Action"]
            result = collect(bed, tmp_path / "run")
    finally:
        registry.close()
    assert result.actions == [record]
    assert any("shadowed: memory 0xa0000-0xbffff: vga0, nic0" in f for f in result.findings())
    text = bundle_from(result, bed.steps, title="t").dump()
    assert "- move_bar: nic0\n  address: 0xa0000\n  bar: 0\n" in text and "phase" not in text
    bundle = parse_bundle(load_text(text, "b.yaml"), "b.yaml")
    assert isinstance(bundle.steps[0], LoadStep) and bundle.steps[1].describe() == "[in-order] move nic0 BAR0 to 0xa0000"
    again = replay(bundle, tmp_path / "again", picture=False)
    assert again.reproduces, again.missing
    assert [a.action.describe() for a in again.result.actions] == ["[in-order] move nic0 BAR0 to 0xa0000"]


@pytest.mark.qemu
def test_memory_writes_go_through_the_guest_agent(tmp_path: Path) -> None:
    """HMP cannot write memory: on the APIC HAL's job the probe guest's agent does it (read
    back through xp); on the PIC HAL's job, which has no agent, the step stops the job."""
    from harness.errors import HarnessError
    text = ("machine: pc\nafter_firmware:\n"
            "  - {memory_write: 0x7000000, size: 4, value: 0x5a5aa5a5}\n"   # RAM no one uses
            "  - {memory_read: 0x7000000, size: 4, expect: 0x5a5aa5a5}\n")
    spec = parse_machine_text(text, "mem.yaml")
    result = run_job(spec, tmp_path / "apic", picture=False, hal="apic")
    assert [(a.ok, a.read) for a in result.actions] == [(True, None), (True, 0x5A5AA5A5)], result.format_text()
    assert result.actions[0].commands == ["agent: write /w 0x7000000 0x5a5aa5a5"]
    with pytest.raises(HarnessError, match="HMP cannot write guest memory"):
        run_job(spec, tmp_path / "pic", picture=False, hal="pic")


def test_memory_write_steps_are_validated() -> None:
    machine_error(BASE + "  - {memory_write: 0x100000000, value: 1}\n", 6, "after_firmware[0].memory_write", "out of range")
    machine_error(BASE + "  - {memory_write: 0x1002, size: 4, value: 1}\n", 6, "after_firmware[0].memory_write", "not aligned")
    machine_error("machine: isapc\nafter_firmware:\n  - {memory_write: 0x1000, value: 1}\n", 3,
                  "after_firmware[0].memory_write", "isapc cannot run")
