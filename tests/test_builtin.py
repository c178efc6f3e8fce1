"""Settings of the board's own devices (harness.builtin): validated like a device's
properties, passed as -global, and seen by QEMU (QOM, info qtree, info mtree -f)."""

from __future__ import annotations

import pytest

from harness.builtin import BUILTIN_DEVICES, apply_settings, builtin_settings, global_args
from harness.config import parse_machine_text
from harness.job import REGISTRY_FILE, run_job
from harness.nt.registry import Registry
from harness.qemu.layout import snapshot
from harness.qemu.machine import Machine
from harness.verify import resource_map_claims
from helpers import machine_error


@pytest.mark.parametrize(("text", "field", "message"), [
    ("machine: pc\nbuiltin:\n  fdc: {iobase: 0x10000}\n", "builtin.fdc.iobase", "out of range 0x0..0xffff"),
    ("machine: pc\nbuiltin:\n  i8042: {kbd-irq: 16}\n", "builtin.i8042.kbd-irq", "irq value 16 out of range 0..15"),
    ("machine: pc\nbuiltin:\n  fdc: {dma: 4}\n", "builtin.fdc.dma", "cascade"),
    ("machine: pc\nbuiltin:\n  i8042: {kbd-irq: '1,iobase=2'}\n", "builtin.i8042.kbd-irq", "expected an integer"),
    ("machine: pc\nbuiltin:\n  ide: {irq: 14}\n", "builtin.ide", "expected one of: fdc, i8042"),
    ("machine: pc\nbuiltin:\n  i8042: {kbd_irq: 3}\n", "builtin.i8042.kbd_irq", "did you mean 'kbd-irq'"),
    ("machine: q35\nbuiltin:\n  fdc: {irq: 5}\n", "builtin.fdc", "q35 has no built-in fdc"),
])
def test_builtin_errors_name_file_line_and_field(text: str, field: str, message: str) -> None:
    machine_error(text, 3, field, message)


def test_builtin_round_trips_and_becomes_globals() -> None:
    spec = parse_machine_text("machine: isapc\nbuiltin:\n  fdc: {iobase: 0x370}\n  i8042: {mouse-irq: 11}\n")
    assert parse_machine_text(__import__("yaml").safe_dump(spec.to_dict())).builtin == spec.builtin
    assert global_args(spec.builtin) == ["-global", "isa-fdc.iobase=880", "-global", "i8042.mouse-irq=11"]
    assert builtin_settings(spec, "fdc") == {"iobase": 0x370, "irq": 6, "dma": 2}
    assert "builtin" not in parse_machine_text("machine: pc\n").to_dict()  # old hashes unchanged


def _qtree_props(text: str, qemu_type: str) -> dict[str, int]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if f"dev: {qemu_type}, id" in line)
    indent = len(lines[start]) - len(lines[start].lstrip())
    props = {}
    for line in lines[start + 1:]:
        if len(line) - len(line.lstrip()) <= indent:
            break
        name, _, value = line.strip().partition(" = ")
        if value.split(" ")[0].isdigit():
            props[name] = int(value.split(" ")[0])
    return props


@pytest.mark.qemu
def test_builtin_settings_reach_the_board_and_leave_added_devices_alone() -> None:
    """pc: the built-in FDC moved to 0x370 on IRQ 5 / DMA 3 and the mouse on IRQ 11, while
    an isa-fdc the file adds keeps its own settings (explicit beats -global)."""
    spec = parse_machine_text("machine: pc\nfirmware_log: false\n"
                              "builtin:\n  fdc: {iobase: 0x370, irq: 5, dma: 3}\n  i8042: {mouse-irq: 11}\n"
                              "devices:\n  - {model: isa-fdc, id: fdc2, iobase: 0x3f0, irq: 6, dma: 2}\n")
    with Machine(spec) as machine:
        machine.run_firmware()
        layout = snapshot(machine)
        qtree = machine.hmp("info qtree")
    fdcs = {d.id or "board": d for d in layout.isa if d.type == "isa-fdc"}
    assert fdcs["board"].properties == {**builtin_settings(spec, "fdc")}
    assert fdcs["fdc2"].properties == {"iobase": 0x3F0, "irq": 6, "dma": 2}
    kbc = next(d for d in layout.isa if d.type == "i8042")
    assert kbc.properties == builtin_settings(spec, "i8042") == {"kbd-irq": 1, "mouse-irq": 11}
    assert _qtree_props(qtree, "i8042") == {"kbd-irq": 1, "mouse-irq": 11}
    board_path = fdcs["board"].path
    moved = sorted((r.start, r.end) for r in layout.io if r.owner == board_path)
    assert moved == [(0x371, 0x375), (0x377, 0x377)], moved  # the FDC's ports at the new base
    assert {BUILTIN_DEVICES["fdc"].qemu_type, BUILTIN_DEVICES["i8042"].qemu_type} == {"isa-fdc", "i8042"}


def test_builtin_argv_passes_the_argv_rules(tmp_path) -> None:
    from harness.qemu.machine import build_argv
    from helpers import argv_violations
    spec = parse_machine_text("machine: pc\nbuiltin:\n  fdc: {iobase: 0x370}\n  i8042: {kbd-irq: 1}\n"
                              "devices:\n  - {model: isa-ipmi-kcs, id: kcs}\n")
    argv = build_argv(spec, tmp_path, "tcg")
    assert argv_violations(argv, spec, tmp_path) == []
    hostile = [*argv, "-global", "isa-fdc.iobase=1,romfile=/etc/passwd"]
    assert any("-global" in f for f in argv_violations(hostile, spec, tmp_path))


def test_settings_move_the_board_decode_they_change() -> None:
    fdc = [("port", 0x3F1, 0x3F5), ("port", 0x3F7, 0x3F7), ("irq", 6, 6), ("dma", 2, 2)]
    moved = apply_settings("isa-fdc", fdc, {"fdc": {"iobase": 0x370, "dma": 3}})
    assert moved == [("port", 0x371, 0x375), ("port", 0x377, 0x377), ("irq", 6, 6), ("dma", 3, 3)]
    kbd = [("port", 0x60, 0x60), ("port", 0x64, 0x64), ("irq", 1, 1), ("irq", 12, 12)]
    swapped = apply_settings("i8042", kbd, {"i8042": {"kbd-irq": 12, "mouse-irq": 1}})
    assert swapped == [("port", 0x60, 0x60), ("port", 0x64, 0x64), ("irq", 12, 12), ("irq", 1, 1)]
    assert apply_settings("i8042", kbd, {}) == kbd
    assert apply_settings("mc146818rtc", [("port", 0x70, 0x71)], {"fdc": {"iobase": 0x370}}) == [("port", 0x70, 0x71)]


@pytest.mark.qemu
def test_board_claimants_claim_where_the_settings_put_the_device(tmp_path) -> None:
    """The board's FDC moved to 0x370/IRQ 5/DMA 3 and the mouse moved to IRQ 11 are seen
    where the settings put them, not at QEMU's defaults: the mouse is claimed on IRQ 11;
    the floppy driver claims the board's FDC at 0x371 (setup writes the board controller's
    Parameters from the builtin settings) beside the file's isa-fdc at 0x3f0, so every
    decoder has its claim and the job is clean."""
    spec = parse_machine_text("machine: pc\nfirmware_log: false\n"
                              "builtin:\n  fdc: {iobase: 0x370, irq: 5, dma: 3}\n  i8042: {mouse-irq: 11}\n"
                              "devices:\n  - {model: isa-fdc, id: fdc2, iobase: 0x3f0, irq: 6, dma: 2}\n")
    result = run_job(spec, tmp_path / "out", picture=False)
    assert result.exit_code == 0, result.format_text()
    lines = {c.device: c for c in result.claimants}
    assert lines["board:floppy-controller"].status == "claimed" and not result.unclaimed, result.format_text()
    claims = resource_map_claims(Registry(tmp_path / "out" / REGISTRY_FILE))
    held = {(c.owner.split("\\")[1], c.kind, c.start, c.end) for c in claims}
    assert ("Floppy", "port", 0x3F1, 0x3F5) in held and ("Floppy", "dma", 2, 2) in held, held  # fdc2
    assert {("Floppy", "port", 0x371, 0x375), ("Floppy", "irq", 5, 5), ("Floppy", "dma", 3, 3)} <= held, held
    assert {c.start for c in claims if c.kind == "irq" and c.owner.split("\\")[1] == "i8042prt"} == {1, 11}
