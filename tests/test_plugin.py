"""The pytest plugin, used the way users use it: test files run by an inner pytest
(pytester, in a subprocess so xdist and the entry point are real) against real QEMU."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.config import load_machine
from harness.pytest_plugin import missing_requirement
from harness.repro import load_bundle, replay
from helpers import CONFIGS, REPO

pytest_plugins = ("pytester",)

IRQ5 = CONFIGS / "conflicts" / "sb16-ne2000-irq5.yaml"
DEFAULT = CONFIGS / "machines" / "default.yaml"

#: The ten-line test file of the issue: boot, load drivers, assert the conflict.
TEN_LINES = f'''
import pytest

@pytest.mark.machine("{IRQ5}")
def test_ne2000_loses_irq5_to_the_sound_blaster(load_driver, iomgr):
    assert load_driver("sb16").ok
    assert not load_driver("ne2000").ok
    entry, = iomgr.error_log.query()
    assert entry.error_code.name == "IO_ERR_IRQ_CONFLICT_DETECTED"
'''


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", "addopts=", *args, timeout=240)


def test_ten_line_file_passes_under_xdist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=TEN_LINES)
    result = run(pytester, "-n", "2")
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "harness-failures").exists()


def test_failure_folder_has_every_file_and_a_bundle_that_reproduces(pytester: pytest.Pytester) -> None:
    # The same scenario with the wrong expectation: the test fails, the folder is written.
    pytester.makepyfile(test_user=TEN_LINES.replace("assert not load_driver", "assert load_driver"))
    result = run(pytester, "-n", "2", f"--junitxml={pytester.path / 'junit.xml'}")
    result.assert_outcomes(failed=1)
    folder = pytester.path / "harness-failures" / "test_user.py_test_ne2000_loses_irq5_to_the_sound_blaster"
    result.stdout.fnmatch_lines([f"failure files: {folder}", "*harness failure folders*", f"    {folder}"])
    names = {p.name for p in folder.iterdir()}
    assert {"qemu-argv.sh", "qemu.log", "qmp.log", "firmware.log", "layout.json", "layout.txt", "registry.reg",
            "errorlog.json", "report.txt", "report.json", "resourcemap.png", "bundle.yaml"} <= names
    argv = (folder / "qemu-argv.sh").read_text()
    assert "qemu-system-x86_64" in argv and "iobase=0x300" in argv.replace("iobase=768", "iobase=0x300") \
        and "-monitor stdio" in argv
    errors = json.loads((folder / "errorlog.json").read_text())
    assert [e["code"] for e in errors] == ["IO_ERR_IRQ_CONFLICT_DETECTED"]
    # JUnit carries the provenance of the machine.
    props = {p.get("name"): p.get("value") for p in ET.parse(pytester.path / "junit.xml").iter("property")}
    assert props["machine_type"] == "pc" and props["accel"] == "tcg" and props["qemu_version"].startswith("7.")
    assert props["config_hash"] == load_machine(IRQ5).config_hash()
    # The bundle holds what the test did and replays it on a fresh machine.
    bundle = load_bundle(folder / "bundle.yaml")
    assert [(s.driver, s.devices) for s in bundle.steps] == [("sb16", ("sb0",)), ("ne2000", ("ne0",))]
    assert bundle.outcome == "conflict" and any("IRQ 5 held by Sndblst" in f for f in bundle.findings)
    assert replay(bundle, pytester.path / "replay", picture=False).reproduces


def test_machines_are_reused_rebooted_or_recreated_as_declared(pytester: pytest.Pytester) -> None:
    log = pytester.path / "log.jsonl"
    pytester.makepyfile(test_life=f'''
import json, pytest

def note(machine, name):
    with open("{log}", "a") as f:
        f.write(json.dumps([name, machine.pid, len(machine.events("RESET"))]) + "\\n")

@pytest.mark.machine("{DEFAULT}")
def test_a_reads(machine): note(machine, "a")

@pytest.mark.machine("{DEFAULT}", reset="reboot")
def test_b_changes_then_reboot(machine): note(machine, "b")

@pytest.mark.machine("{DEFAULT}", reset="recreate")
def test_c_changes_then_recreate(machine): note(machine, "c")

@pytest.mark.machine("{DEFAULT}")
def test_d_fails(machine):
    note(machine, "d")
    assert False

@pytest.mark.machine("{DEFAULT}")
def test_e_after_failure(machine): note(machine, "e")
''')
    result = run(pytester, "-p", "no:xdist")
    result.assert_outcomes(passed=4, failed=1)
    rows = {name: (pid, resets) for name, pid, resets in map(json.loads, log.read_text().splitlines())}
    assert rows["a"][0] == rows["b"][0]                          # reused
    assert rows["c"][0] == rows["b"][0] and rows["c"][1] > rows["b"][1]   # rebooted after b: same QEMU, reset
    assert rows["d"][0] != rows["c"][0]                          # recreated after c
    assert rows["e"][0] != rows["d"][0]                          # a failed test's machine is not reused


def test_tests_of_one_machine_share_a_worker(pytester: pytest.Pytester) -> None:
    log = pytester.path / "log.jsonl"
    tests = "\n".join(f'''
@pytest.mark.machine("{path}")
def test_{name}_{i}(machine):
    with open("{log}", "a") as f:
        f.write(json.dumps(["{name}", os.environ.get("PYTEST_XDIST_WORKER"), machine.pid]) + "\\n")
''' for name, path in (("default", DEFAULT), ("irq5", IRQ5)) for i in range(4))
    pytester.makepyfile(test_groups="import json, os, pytest\n" + tests)
    run(pytester, "-n", "2").assert_outcomes(passed=8)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    for name in ("default", "irq5"):
        mine = {(w, pid) for n, w, pid in rows if n == name}
        assert len(mine) == 1, f"{name} ran on {mine}: its tests should share one worker and one machine"


def test_options_ini_keys_and_requirements(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_opts='''
import pytest

def test_default_machine(harness_spec, machine):
    assert harness_spec.name == "default" and machine.accel_used == "tcg"

@pytest.mark.requires(machine="q35")
def test_q35_only(machine):
    pass

@pytest.mark.requires(models=["sb16"], buses="isa")
def test_needs_sb16(machine):
    pass
''')
    pytester.makeini(f"[pytest]\nharness_config = {DEFAULT}\nharness_accel = tcg\n")
    result = run(pytester, "-rs")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] test_opts.py:*: requires machine q35; default is pc"])
    # The command line wins over the ini key.
    result = run(pytester, "-rs", f"--harness-config={IRQ5}", "-k", "default_machine")
    result.assert_outcomes(failed=1)


def test_bad_options_and_markers_are_usage_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bad='''
import pytest

@pytest.mark.machine("no/such/file.yaml")
def test_x(machine):
    pass
''')
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*machine file 'no/such/file.yaml' not found*"])
    result = run(pytester, "--harness-accel=fast")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--harness-accel: unknown choice 'fast'; choose from: tcg, kvm, auto*"])
    pytester.makepyfile(test_bad='''
import pytest

@pytest.mark.machine("machine: pc\\ndevices: [{model: isa-serial, id: com1, irq: 16}]")
def test_x(machine):
    pass
''')
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*<test_bad.py::test_x>:2: devices[[]0[]].irq*"])


def test_keep_leaves_the_run_folder(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_keep=f'''
import pytest

@pytest.mark.machine("{DEFAULT}")
def test_x(machine):
    open("{pytester.path / 'run_dir'}", "w").write(str(machine.run_dir))
''')
    run(pytester, "--harness-keep").assert_outcomes(passed=1)
    run_dir = Path((pytester.path / "run_dir").read_text())
    try:
        assert (run_dir / "qemu.log").exists()
    finally:
        import shutil
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.mark.parametrize("kwargs, reason", [
    (dict(machine="q35"), "requires machine q35; default is pc"),
    (dict(machine=("pc", "q35")), None),
    (dict(models=["sb16", "gus"]), "requires device model(s) gus in default"),
    (dict(buses="pci"), None),
    (dict(drivers=["serial", "floppy"]), None),
    (dict(drivers="nosuch"), "requires driver(s) nosuch for default's devices"),
    (dict(accel="tcg"), None),
])
def test_requirement_reasons(kwargs, reason) -> None:
    assert missing_requirement(load_machine(DEFAULT), **kwargs) == reason


def test_harness_matrix_parametrises_and_shards_split_it(pytester: pytest.Pytester) -> None:
    matrix = pytester.path / "small.yaml"
    matrix.write_text("""name: small
axes:
  machine: {pc: {machine: pc}, isapc: {machine: isapc, memory: 32}}
  devices:
    com: {devices: [{model: isa-serial, id: com1}]}
    lpt: {devices: [{model: isa-parallel, id: lpt1}]}
""")
    pytester.makepyfile(test_cells='''
def test_boots(machine, harness_cell):
    assert machine.spec.name == harness_cell.id

def test_without_machine():
    pass
''')
    # The matrix is the run: the test that takes no cell is left out.
    result = run(pytester, f"--harness-matrix={matrix}", "-n", "2")
    result.assert_outcomes(passed=4)

    def collected(*args: str) -> set[str]:
        out = run(pytester, f"--harness-matrix={matrix}", "--collect-only", "-q", *args)
        return {line.split(" ")[0] for line in out.stdout.lines if "::" in line}

    everything = collected()
    assert not [n for n in everything if "test_without_machine" in n]
    assert {n.split("[")[-1].rstrip("]") for n in everything if "[" in n} == {"pc-com", "pc-lpt", "isapc-com", "isapc-lpt"}
    one, two = collected("--harness-shard=1/2"), collected("--harness-shard=2/2")
    assert one | two == everything and not one & two and one and two
    bad = run(pytester, f"--harness-matrix={matrix}", "--harness-shard=3/2")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR



USAGE_CASES = {
    "bad machine value": ("""
import pytest

@pytest.mark.machine("machine: pc\\ndevices: [{model: isa-serial, id: com1, irq: 16}]")
def test_x(machine):
    pass
""", "*<test_bad.py::test_x>:2: devices[[]0[]].irq: irq value 16 out of range 0..15*"),
    "bad requires keyword": ("""
import pytest

@pytest.mark.requires(machnie="pc")
@pytest.mark.machine("example:machines/isapc")
def test_x(machine):
    pass
""", "*test_bad.py::test_x: requires(): unknown keyword 'machnie' (did you mean 'machine'?); keywords: machine, *"),
    "bad matrix marker": ("""
import pytest

@pytest.mark.matrix("bad-matrix.yaml")
def test_x(machine, harness_cell):
    pass
""", "*bad-matrix.yaml:2: axes: *"),
}


def test_usage_errors_read_the_same_with_and_without_xdist(pytester: pytest.Pytester) -> None:
    """Every usage error of the session is reported, each with its file:line: field:, the
    same lines and exit status 4 with or without -n (no INTERNALERROR)."""
    for case, (source, _) in USAGE_CASES.items():
        pytester.makepyfile(**{f"test_{case.replace(' ', '_')}": source})
    (pytester.path / "bad-matrix.yaml").write_text("name: bad\naxes: []\n")
    outputs = []
    for args in ((), ("-n", "2")):
        result = run(pytester, *args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR, (args, result.outlines, result.errlines)
        text = result.stderr.str()
        for case, (_, line) in USAGE_CASES.items():
            result.stderr.fnmatch_lines([line.replace("test_bad.py", f"test_{case.replace(' ', '_')}.py")])
        assert "INTERNALERROR" not in result.stdout.str() + text
        outputs.append(sorted(e for e in result.errlines if e.strip()))
    assert outputs[0] == outputs[1]


def test_a_matrix_that_parametrises_nothing_is_an_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_named="""
import pytest

@pytest.mark.machine("example:machines/isapc")
def test_x(machine):
    pass
""")
    (pytester.path / "one.yaml").write_text("name: one\naxes:\n  machine: {isapc: {machine: isapc}}\n")
    for args in ((), ("-n", "2")):
        result = run(pytester, "--harness-matrix=one.yaml", *args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["ERROR: --harness-matrix one.yaml: no test takes its cells*"])


def test_missing_qemu_is_one_line_once_per_session(pytester: pytest.Pytester, monkeypatch) -> None:
    pytester.makepyfile(test_two="""
import pytest

@pytest.mark.machine("example:machines/isapc")
def test_x(machine):
    pass

@pytest.mark.machine("example:machines/default")
def test_y(machine):
    pass
""")
    monkeypatch.setenv("HARNESS_QEMU", "no-such-qemu-binary")
    for args in ((), ("-n", "2")):
        result = run(pytester, *args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        errors = [line for line in result.errlines if line.strip()]
        assert errors == ["ERROR: QEMU binary 'no-such-qemu-binary' not found ($HARNESS_QEMU is "
                          "'no-such-qemu-binary'): install QEMU (Debian: apt-get install qemu-system-x86) "
                          "or set HARNESS_QEMU to its path"]


def test_models_and_configs_settings_layer_user_folders(pytester: pytest.Pytester) -> None:
    models, machines = pytester.path / "models", pytester.path / "machines"
    models.mkdir(), machines.mkdir()
    text = (REPO / "device_models" / "isa-serial.yaml").read_text().replace("name: isa-serial", "name: my-uart")
    (models / "my-uart.yaml").write_text(text)
    (machines / "mine.yaml").write_text("name: mine\nmachine: isapc\nmemory: 32\n"
                                        "devices:\n  - {model: my-uart, id: com1}\n")
    pytester.makepyfile(test_mine="""
import pytest

@pytest.mark.machine("mine.yaml")
def test_x(harness_spec):
    assert harness_spec.devices[0].model.name == "my-uart"
""")
    assert run(pytester).ret == pytest.ExitCode.USAGE_ERROR   # neither folder is known yet
    pytester.makeini("[pytest]\nharness_models = models\nharness_configs = machines\n")
    run(pytester, "-n", "2").assert_outcomes(passed=1)
    pytester.makeini("[pytest]\n")
    run(pytester, "--harness-models=models", "--harness-configs=machines").assert_outcomes(passed=1)


def test_failure_folders_without_a_finding_say_what_they_hold(pytester: pytest.Pytester) -> None:
    """A test that fails for a reason of its own gets no bundle and no replay hint; a test
    that used only the machine gets its argv, logs and layout, and a note saying so."""
    pytester.makepyfile(test_own="""
import pytest

@pytest.mark.machine("example:machines/isapc")
def test_own_assertion(load_driver):
    assert load_driver("serial").ok
    assert False, "the test's own reason"

@pytest.mark.machine("example:machines/isapc")
def test_machine_only(machine, layout):
    assert False
""")
    result = run(pytester, "-n", "2")
    result.assert_outcomes(failed=2)
    assert "replay: harness repro" not in result.stdout.str()
    root = pytester.path / "harness-failures"
    own, bare = root / "test_own.py_test_own_assertion", root / "test_own.py_test_machine_only"
    own_files, bare_files = {p.name for p in own.iterdir()}, {p.name for p in bare.iterdir()}
    assert "bundle.yaml" not in own_files and {"report.txt", "report.html", "NOTE.txt"} <= own_files
    assert "found nothing" in (own / "NOTE.txt").read_text()
    assert {"NOTE.txt", "qemu-argv.sh", "layout.txt", "layout.json", "qemu.log"} <= bare_files
    assert "bundle.yaml" not in bare_files and "machine (or layout) fixture only" in (bare / "NOTE.txt").read_text()
    # the script runs from the folder's own copies: the floppy image is here
    argv = (bare / "qemu-argv.sh").read_text()
    assert str(bare / "fd0.img") in argv and (bare / "fd0.img").is_file()
