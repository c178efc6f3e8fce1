"""Repro bundles: the file format (errors with file:line), replay on a fresh machine,
shrinking to a minimal scenario, and the CLI — with real QEMU."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.nt.iomgr import ReportCall
from harness.nt.resources import CM_RESOURCE_LIST, Interrupt, Isa, Port, CmResourceShareShared
from harness.repro import Bundle, load_bundle, parse_bundle, replay, shrink
from harness.testbed import LoadStep
from harness.yamlio import load_text
from helpers import CONFIGS, machine_spec

MACHINE = """
name: repro-three
machine: pc
devices:
  - {model: isa-serial, id: com1, iobase: 0x3f8, irq: 4}
  - {model: isa-serial, id: com2, iobase: 0x2f8, irq: 3}
  - {model: isa-parallel, id: lpt1, iobase: 0x378, irq: 7}
"""
#: A claim a test made by hand on top of the serial driver's: COM1's ports.
PROBE = ReportCall("Probe", r"\Device\Probe0", None, None,
                   CM_RESOURCE_LIST.single(Isa, 0, Port(0x3F8, 8), Interrupt(4, 4, share=CmResourceShareShared)),
                   False)


def scenario() -> Bundle:
    spec = machine_spec(MACHINE)
    return Bundle(spec, [LoadStep("serial", ("com1", "com2")), LoadStep("parallel", ("lpt1",)), PROBE])


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Bundle]:
    """The scenario run once, written as the bundle a failing test would leave."""
    from harness.repro import bundle_from
    out = tmp_path_factory.mktemp("recorded")
    first = replay(scenario(), out / "run", picture=False)
    path = bundle_from(first.result, first.bundle.steps, title="recorded").write(out / "bundle.yaml")
    return path, load_bundle(path)


def test_a_written_bundle_reads_back_the_same(recorded) -> None:
    path, bundle = recorded
    assert bundle.steps == scenario().steps
    assert bundle.spec.to_dict() | {"drivers": None} == scenario().spec.to_dict() | {"drivers": None}
    text = path.read_text()
    assert "port: 0x3f8" in text and "length: 0x8" in text and "share: shared" in text
    assert bundle.outcome == "conflict"
    assert any(r"Probe \Device\Probe0 ports 0x3f8-0x3ff held by Serial \Device\Serial0" in f
               for f in bundle.findings), bundle.findings
    assert {"qemu_version", "accel", "machine_type", "recorded"} <= set(bundle.seen)


def test_replay_reproduces_on_a_fresh_machine(recorded, tmp_path: Path) -> None:
    _, bundle = recorded
    again = replay(bundle, tmp_path / "run", picture=False)
    assert again.reproduces and not again.missing
    assert "REPRODUCES" in again.format_text()


def test_a_bundle_keeps_how_the_job_ran(recorded, tmp_path: Path) -> None:
    import dataclasses
    path, bundle = recorded
    assert (bundle.hal, bundle.reactos) == ("pic", False) and "hal: pic" in path.read_text()
    # The same scenario under the ReactOS switch: every claim succeeds, the conflict is gone.
    ros = replay(dataclasses.replace(bundle, reactos=True), tmp_path / "ros", picture=False)
    assert ros.result.reactos and not ros.result.conflicts and not ros.reproduces


def test_a_finding_that_does_not_come_back_is_named(recorded, tmp_path: Path) -> None:
    _, bundle = recorded
    bundle = dataclasses.replace(bundle, findings=bundle.findings + ["conflict IO_ERR_DMA_CONFLICT_DETECTED: nobody"])
    again = replay(bundle, tmp_path / "run", picture=False)
    assert not again.reproduces
    assert again.missing == ["conflict IO_ERR_DMA_CONFLICT_DETECTED: nobody"]
    assert "DOES NOT REPRODUCE" in again.format_text()


def test_shrink_keeps_only_what_the_conflict_needs(recorded, tmp_path: Path) -> None:
    _, bundle = recorded
    lines: list[str] = []
    shrunk = shrink(bundle, tmp_path / "run", log=lines.append)
    small = shrunk.bundle
    assert [d.id for d in small.spec.devices] == ["com1"]
    assert small.steps == [LoadStep("serial", ("com1",)), PROBE]
    assert shrunk.runs <= 1 + 2 * (len(bundle.spec.devices) + len(bundle.steps))
    assert all("Parport" not in c and "Serial1" not in c for c in small.claims)
    # 1-minimal: without any remaining device or step the conflict is gone.
    assert replay(small, tmp_path / "check", picture=False).reproduces
    assert not replay(Bundle(small.spec, small.steps[:1], findings=small.findings),
                      tmp_path / "check", picture=False).reproduces


def test_cli_exit_codes(recorded, tmp_path: Path) -> None:
    path, bundle = recorded
    cli = [sys.executable, "-m", "harness.cli", "repro"]
    ok = subprocess.run(cli + [str(path), "--out", str(tmp_path / "a"), "--no-picture"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "Result:" in ok.stdout and "REPRODUCES" in ok.stdout   # the main job's report, then the verdict
    changed = tmp_path / "changed.yaml"
    changed.write_text(path.read_text().replace("iobase: 0x3f8", "iobase: 0x3e8"))
    moved = subprocess.run(cli + [str(changed), "--out", str(tmp_path / "b"), "--no-picture"],
                           capture_output=True, text=True, timeout=120)
    assert moved.returncode == 1 and "DOES NOT REPRODUCE" in moved.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text(path.read_text().replace("load_driver: parallel", "load_driver: paralel"))
    bad = subprocess.run(cli + [str(broken)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and f"{broken}:" in bad.stderr and "unknown driver 'paralel'" in bad.stderr
    # a --shrink output that cannot be written is refused before any replay (it was refused
    # after them all, minutes later), and nothing is left in the folder (qa8)
    for target in (tmp_path / "a-folder", Path("/proc/no-such/min.yaml")):
        target.mkdir() if target.parent == tmp_path else None
        unwritable = subprocess.run(cli + [str(path), "--shrink", "-o", str(target), "--out", str(tmp_path / "c")],
                                    capture_output=True, text=True, timeout=60)
        assert unwritable.returncode == 2 and f"cannot write {target}" in unwritable.stderr, unwritable.stderr
        assert "shrinking" not in unwritable.stdout and not (tmp_path / "c").exists()
    assert not list((tmp_path / "a-folder").iterdir())


def test_harness_run_leaves_a_bundle_only_when_not_clean(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "harness.cli", "run", "--no-picture"]
    conflict = subprocess.run(cli + [str(CONFIGS / "conflicts" / "serial-same-base.yaml"), "--out", str(tmp_path / "c")],
                              capture_output=True, text=True, timeout=120)
    assert conflict.returncode == 1 and f"Repro bundle: {tmp_path / 'c' / 'bundle.yaml'}" in conflict.stdout
    assert load_bundle(tmp_path / "c" / "bundle.yaml").outcome == "conflict"
    clean = subprocess.run(cli + [str(CONFIGS / "machines" / "isapc.yaml"), "--out", str(tmp_path / "d")],
                           capture_output=True, text=True, timeout=120)
    assert clean.returncode == 0 and not (tmp_path / "d" / "bundle.yaml").exists()


BASE = """harness_repro: 1
machine:
  machine: pc
  devices:
    - {model: isa-serial, id: com1, iobase: 0x3f8, irq: 4}
"""


@pytest.mark.parametrize("tail, where, message", [
    ("steps:\n  - load_driver: serial\n    devices: [com9]\n", ":8: steps[0].devices",
     "'com9' is not a device of this machine that serial drives (those are: com1)"),
    ("steps:\n  - {frobnicate: 1}\n", ":6: steps", "step 0 must be a mapping with 'load_driver', 'report' or an action (move_bar"),
    ("steps:\n  - report: {driver: P, device: D, device_list: [{resources: [{port: 0x10}]}]}\n",
     ":7: steps[0].report.device_list[0].resources[0]", "missing required field 'length'"),
    ("steps:\n  - report: {driver: P, device_list: [{resources: [{port: 0x10, length: 1}]}]}\n",
     ":7: steps[0].report.device_list", "a device list needs the 'device' it is for"),
    ("steps:\n  - report: {driver: P, device: D, device_list: [{resources: [{irq: 3}]}]}\n",
     ":7: steps[0].report.device_list[0].resources", "exactly one of port, memory, interrupt, dma"),
    ("steps:\n  - report:\n      driver: P\n      device: D\n      device_list:\n"
     "        - resources: [{port: 0x10, length: 1, share: sometimes}]\n",
     ":11: steps[0].report.device_list[0].resources[0].share", "unknown value 'sometimes'"),
    ("expect: {outcome: maybe}\n", ":6: expect.outcome", "unknown value 'maybe'; expected one of: clean, warning, conflict"),
    ("hal: x2apic\n", ":6: hal", "unknown value 'x2apic' (did you mean 'apic' or 'pic'?); expected one of: auto, pic, apic"),
    ("reactos: perhaps\n", ":6: reactos", "expected"),
    ("drivers: [serial]\nsteps: []\n", ":6: drivers", "unknown field 'drivers'; expected one of: claims,"),
])
def test_bundle_errors_name_file_line_and_field(tail: str, where: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_bundle(load_text(BASE + tail, "b.yaml"), "b.yaml")
    text = str(info.value)
    assert text.startswith("b.yaml" + where) and message in text, text


def test_drivers_and_steps_together_are_refused() -> None:
    text = BASE.replace("  devices:", "  drivers: [serial]\n  devices:") + "steps: []\n"
    with pytest.raises(ConfigError, match=r"b.yaml:4: machine.drivers: give the driver load order either here"):
        parse_bundle(load_text(text, "b.yaml"), "b.yaml")


def test_an_unknown_bundle_version_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"b.yaml:1: harness_repro: bundle format 2 is not supported"):
        parse_bundle(load_text(BASE.replace("harness_repro: 1", "harness_repro: 2"), "b.yaml"), "b.yaml")


def test_a_clean_bundle_has_nothing_to_reproduce_or_shrink(tmp_path: Path) -> None:
    """A bundle of a clean outcome (a test that failed for a reason of its own) must not
    replay as REPRODUCES, and shrinking it would remove everything: refused."""
    from harness.config import load_machine
    from harness.job import run_job
    from harness.repro import write_bundle
    result = run_job(load_machine(CONFIGS / "machines" / "isapc.yaml"), tmp_path / "job", picture=False)
    assert result.clean
    path = write_bundle(result, title="clean on purpose")
    cli = [sys.executable, "-m", "harness.cli", "repro", str(path), "--no-picture", "--out", str(tmp_path / "r")]
    again = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "REPRODUCES" not in again.stdout.replace("NOTHING TO REPRODUCE", "")
    assert "NOTHING TO REPRODUCE: the bundle records no finding; the machine is still clean" in again.stdout
    shrunk = subprocess.run(cli + ["--shrink"], capture_output=True, text=True, timeout=120)
    assert shrunk.returncode == 2 and "records a clean outcome, no finding: nothing to shrink" in shrunk.stderr
    assert not path.with_name("bundle.min.yaml").exists()


def test_the_runs_argv_script_points_at_the_kept_copy(tmp_path: Path) -> None:
    """runs/<machine>/qemu/argv.sh names the copied files (chardev outputs, the floppy
    image), not the run folder that is deleted with the machine."""
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--no-picture",
                           str(CONFIGS / "machines" / "isapc.yaml"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    script = (out / "qemu" / "argv.sh").read_text()
    paths = [p.split(",")[0] for p in re.findall(r"(?:path|file)=([^ ,]+)", script)]
    assert paths and all(Path(p).parent == (out / "qemu").resolve() for p in paths), paths
    assert all(Path(p).exists() for p in paths if not p.endswith(".out")), paths
