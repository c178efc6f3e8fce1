"""Machine-file devices whose ids are board device names ('acpi', 'rtc', 'smbus', ...):
QEMU takes such ids, and the main job must tell the two kinds apart by kind, not by name.

Each case runs a machine file twice through the main job, as written and with its
devices renamed to board device names of its machine type, and requires the same report
with the names swapped: the same verdict, findings, claim checks, collisions, claimant
lines, error log and ResourceMap.  Before board devices were told apart by kind, a
debugcon 'acpi' took the ACPI driver's claims as its own (15 false mismatches)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness.config import parse_machine_text
from harness.devices import board_label, board_model
from harness.job import JobResult, run_job

from helpers import CONFIGS

# (machine file, board device names of its machine type its devices take in turn).  The
# ids and the names are paired in sorted order: a driver numbers its devices in the order
# of their Parameters subkeys (\Device\Serial0 is the first id), which a rename keeps.
CASES = [
    # 'ide' is no board device's name but that of the PIIX's owner-less legacy IDE regions,
    # which is whom the IDE miniport's claims are for
    ("machines/default.yaml", ["acpi", "dma-controllers", "floppy-controller", "fw_cfg", "ide", "ide-legacy",
                               "keyboard-controller", "rtc", "smbus", "timer"]),
    ("machines/q35.yaml", ["acpi", "dma-controllers", "fw_cfg", "hpet", "keyboard-controller", "reset-control",
                           "rtc", "sata", "smbus"]),
    ("machines/isapc.yaml", ["dma-controllers", "floppy-controller", "fw_cfg", "ide-legacy", "keyboard-controller",
                             "rtc"]),
    # the renamed device collides with its namesake: the RTC's ports, the FDC's DMA channel,
    # the ACPI PM block, the IDE's 0x376, the FDC itself
    ("conflicts/ipmi-bt-over-rtc.yaml", ["rtc"]),
    ("conflicts/floppy-sb16-dma2.yaml", ["dma-controllers", "floppy-controller"]),
    ("conflicts/debugcon-in-q35-acpi.yaml", ["acpi"]),
    ("conflicts/builtin-fdc-onto-serial.yaml", ["ide-legacy"]),
    # an isa-fdc named as the board's FDC, at its base, driven by the same Floppy driver
    ("conflicts/isa-fdc-over-board-fdc.yaml", ["floppy-controller"]),
]


# The new ids a board claimant's Parameters also holds a subkey of (the configured
# device's driver writes its own under its id: two services, one name).
TWICE = {"machines/default.yaml": {"ide-legacy"},                       # the NE2000's and atapi's
         "machines/q35.yaml": {"acpi", "keyboard-controller", "sata"},     # Serial's, Parport's, Legacy's
         "machines/isapc.yaml": {"ide-legacy", "keyboard-controller"},     # Parport's, Ne2000's
         "conflicts/debugcon-in-q35-acpi.yaml": {"acpi"},                  # Legacy's
         "conflicts/builtin-fdc-onto-serial.yaml": {"ide-legacy"}}         # Serial's


def _rename(text: str, names: dict[str, str]) -> str:
    """``text`` with each id of ``names`` replaced where it stands as a whole name (also
    after '_', as in a driver's device name \\Device\\Legacy_<id>)."""
    pattern = re.compile(r"(?<![A-Za-z0-9:-])(" + "|".join(map(re.escape, names)) + r")(?![A-Za-z0-9_-])")
    return pattern.sub(lambda m: names[m.group(1)], text)


def _report(result: JobResult) -> dict[str, Any]:
    """What the job found, without what differs between two runs (timings, folders)."""
    d = result.to_dict()
    out = {k: d[k] for k in ("verdict", "findings", "checks", "collisions", "claimants", "error_log",
                             "violations", "shared_interrupts")}
    out["drivers"] = [{**drv, "devices": [{k: v for k, v in dev.items() if k != "facts"} for dev in drv["devices"]]}
                      for drv in d["drivers"]]
    out["resource_map"] = result.resource_map
    return out


@pytest.mark.parametrize("path,new_ids", CASES, ids=[Path(p).stem for p, _ in CASES])
def test_ids_that_are_board_device_names_change_nothing_but_the_names(
        path: str, new_ids: list[str], tmp_path: Path) -> None:
    text = (CONFIGS / path).read_text()
    original = parse_machine_text(text, str(CONFIGS / path))
    assert new_ids == sorted(new_ids) and len(new_ids) == len(original.devices)
    assert set(new_ids) - {"ide"} <= {d.name for d in board_model(original.machine)}
    names = dict(zip(sorted(d.id for d in original.devices), new_ids))
    renamed = parse_machine_text(_rename(text, names), str(tmp_path / Path(path).name))
    assert {d.id for d in renamed.devices} == set(names.values())

    before = run_job(original, tmp_path / "before", picture=False)
    after = run_job(renamed, tmp_path / "after", picture=False)
    expected = json.loads(_rename(json.dumps(_report(before)), names))
    got = _report(after)
    for key in expected:
        assert got[key] == expected[key], (key, after.format_text())

    # Both kinds are in the claimants list, each under its own name.
    lines = {c.device for c in after.claimants}
    assert set(names.values()) - {"ide"} <= lines and {board_label(n) for n in names.values() if n != "ide"} <= lines
    # ... and in the registry: each device's Parameters subkey renamed, the board claimants'
    # ones of the same name beside them (the ACPI driver's 'acpi' and the debugcon's).
    keys = _parameters_keys(tmp_path / "after")
    assert keys == {(service, names.get(key, key)) for service, key in _parameters_keys(tmp_path / "before")}
    twice = {key for key in names.values() if len({service for service, k in keys if k == key}) > 1}
    assert twice == TWICE.get(path, set())


def _parameters_keys(out_dir: Path) -> set[tuple[str, str]]:
    """(service, subkey) of every Services\\<service>\\Parameters\\<subkey> the job's registry.reg holds."""
    reg = (out_dir / "registry.reg").read_text(encoding="utf-16")
    return set(re.findall(r"^\[HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Services\\([^\\\]]+)\\Parameters"
                          r"\\([^\\\]]+)\]$", reg, re.M))


def test_a_winner_is_a_device_by_its_region_not_by_its_name() -> None:
    # hidden_by names a winner by its owner, or by its region name when it has none: the
    # region that wins says which ('ide' is the PIIX's owner-less regions and may be an id).
    from harness.qemu.layout import DecodedRange, Layout, ShadowedRange
    lost = ShadowedRange("io", 0x170, 0x177, "serial", "com3", "isa-serial", ("ide",))

    def layout(owner: str | None) -> Layout:
        return Layout("m", "pc", "post-firmware", "7.2", "tcg", io=(
            DecodedRange("io", 0x170, 0x177, "ide", owner, "isa-ide" if owner else None, 0, "i/o"),
            DecodedRange("io", 0x3f8, 0x3ff, "serial", "ide", "isa-serial", 0, "i/o")), shadowed=(lost,))

    ids = {"com3", "ide"}
    assert lost.device_winners(layout(None), ids) == ()
    assert [r.start for r in lost.winning_regions(layout(None))] == [0x170]
    assert lost.device_winners(layout("ide"), ids) == ("ide",)
    assert lost.device_winners(layout("ide"), {"com3"}) == ()

    # The job's collision names the owner-less winner as the board device it is.
    from harness.job import hardware_collisions
    from harness.verify import HardwareView
    spec = parse_machine_text("machine: pc\ndevices:\n  - {model: isa-serial, id: com3, iobase: 0x170, irq: 4}\n"
                              "  - {model: isa-serial, id: ide, iobase: 0x3f8, irq: 3}\n")
    [collision] = hardware_collisions(HardwareView(layout(None), {}), spec)
    assert collision.devices == ("com3", board_label("ide-legacy")), collision
