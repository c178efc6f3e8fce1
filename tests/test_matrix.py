"""Test matrices: parsing, located errors, filters, stable ids, exclusions, sharding, the
CI job matrices, ``harness matrix --run`` (real QEMU) and every cell of the shipped matrix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.commands.matrix import emit
from harness.errors import ConfigError, HarnessError
from harness.verdict import EXIT_CODES
from harness.repro import write_cell_bundle
from harness.matrix import (Cell, _cell_from_wire, _cell_to_wire, load_matrix, parse_matrix_text, parse_shard,
                            run_cell, run_cells,
                            shard, shard_of)
from harness.qemu.reaper import tagged_processes
from helpers import CONFIGS, REPO

SHIPPED = CONFIGS / "matrices" / "devices.yaml"

TINY = """\
name: tiny
axes:
  machine:
    pc: {machine: pc}
    isapc: {machine: isapc}
  devices:
    serial: {devices: [{model: isa-serial, id: com1}]}
    sci: {devices: [{model: ne2k_isa, id: ne0}]}
    nic: {devices: [{model: e1000, id: nic0, addr: 3}]}
exclude:
  - machine=isapc devices=sci
expect:
  - {when: {devices: sci}, outcome: conflict, why: the NE2000's default IRQ 9 is the ACPI SCI}
"""


def matrix_error(text: str, source: str = "mx.yaml") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_matrix_text(text, source)
    return info.value


# ------------------------------------------------------------------ parsing and ids

def test_cells_ids_axes_and_specs() -> None:
    m = parse_matrix_text(TINY, "tiny.yaml")
    assert [c.id for c in m.cells] == ["pc-serial", "pc-sci", "pc-nic", "isapc-serial"]
    cell = m.cell("pc-sci")
    assert dict(cell.axes) == {"machine": "pc", "devices": "sci"}
    assert cell.spec.name == "pc-sci" and cell.spec.machine == "pc" and cell.spec.expect == "conflict"
    assert cell.expect == "conflict" and "ACPI SCI" in cell.why
    assert [d.id for d in cell.spec.devices] == ["ne0"]
    assert m.cell("pc-serial").expect == "clean" and m.cell("pc-serial").why == ""


def test_devices_add_up_over_the_base_and_axes(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("name: ignored\nmachine: pc\nmemory: 64\n"
                                        "devices:\n  - {model: isa-serial, id: com1}\n")
    (tmp_path / "m.yaml").write_text(
        "base: base.yaml\naxes:\n"
        "  board: {small: {memory: 32}, big: {}}\n"
        "  extra:\n    lpt: {devices: [{model: isa-parallel, id: lpt1}]}\n"
        "    nic: {devices: [{model: e1000, id: nic0}]}\n")
    m = load_matrix(tmp_path / "m.yaml")
    small = m.cell("small-lpt").spec
    assert small.machine == "pc" and small.memory_mib == 32 and m.cell("big-lpt").spec.memory_mib == 64
    assert [d.id for d in small.devices] == ["com1", "lpt1"]
    assert m.name == "m" and small.source == str(tmp_path / "m.yaml")


def test_a_machine_file_with_builtin_settings_and_steps_is_a_base_and_an_axis_value(tmp_path: Path) -> None:
    # README: a base is a machine file, an axis value a piece of one; both were refused
    # at 'builtin' and 'after_firmware' (unknown field)
    (tmp_path / "base.yaml").write_text(
        "name: b\nmachine: pc\nbuiltin:\n  i8042: {mouse-irq: 5}\ndevices:\n  - {model: e1000, id: nic0, addr: 3}\n"
        "after_firmware:\n  - {move_bar: nic0, bar: 0, address: 0xa0000}\n")
    (tmp_path / "m.yaml").write_text(
        "base: base.yaml\naxes:\n  kbd: {stock: {}, kbd3: {builtin: {i8042: {kbd-irq: 3}}}}\n"
        "  steps:\n    same: {}\n    poke:\n      after_firmware:\n        - {port_write: 0x80, value: 0x12}\n")
    m = load_matrix(tmp_path / "m.yaml")
    stock, poke = m.cell("stock-same").spec, m.cell("kbd3-poke").spec
    assert dict(stock.builtin["i8042"]) == {"mouse-irq": 5} and dict(poke.builtin["i8042"]) == {"kbd-irq": 3}
    assert [(a.kind, a.line) for a in stock.after_firmware] == [("move_bar", 8)]
    assert [(a.kind, a.line) for a in poke.after_firmware] == [("port_write", 8)]
    # a worker's cell keeps the lines of the file (its spec is parsed from one line of JSON)
    back = _cell_from_wire(json.loads(json.dumps(_cell_to_wire(m.cell("kbd3-poke")))))
    assert back.spec == poke and [a.line for a in back.spec.after_firmware] == [8]
    assert [d.line for d in back.spec.devices] == [d.line for d in poke.devices] == [6]


def test_catalog_generator_gives_each_model_and_each_alternative() -> None:
    m = parse_matrix_text("axes:\n  machine: {q35: {machine: q35}}\n  devices: {from_catalog: each_setting}\n")
    ids = {c.id for c in m.cells}
    from harness.devices import load_catalog
    serial = load_catalog()["isa-serial"]
    alternatives = [(p.name, v) for p in serial.properties.values() for v in p.choices
                    if serial.defaults_for(0).get(p.name) != v]
    assert alternatives and "q35-isa-serial" in ids
    for prop, value in alternatives:
        shown = f"{value:#x}" if prop == "iobase" else str(value)
        cell = m.cell(f"q35-isa-serial_{prop}_{shown}")
        (dut,) = cell.spec.devices
        assert dut.settings[prop] == value and dut.explicit == {prop}
    # a floppy drive on q35 (no built-in controller) gets an isa-fdc to sit on
    assert [d.model.name for d in m.cell("q35-floppy").spec.devices] == ["isa-fdc", "floppy"]
    each_model = parse_matrix_text("axes:\n  m: {q35: {machine: q35}}\n  d: {from_catalog: each_model}\n")
    assert [c.id for c in each_model.cells] == [c.id for c in m.cells if not c.spec.devices[-1].explicit]


def test_ids_are_stable_when_values_are_added_or_reordered() -> None:
    before = {c.id: dict(c.axes) for c in parse_matrix_text(TINY).cells}
    reordered = TINY.replace("    pc: {machine: pc}\n    isapc: {machine: isapc}\n",
                             "    isapc: {machine: isapc}\n    q35: {machine: q35}\n    pc: {machine: pc}\n")
    after = {c.id: dict(c.axes) for c in parse_matrix_text(reordered).cells}
    assert set(after) - set(before) == {"q35-serial", "q35-sci", "q35-nic"}
    assert all(after[cell_id] == axes for cell_id, axes in before.items())


# ------------------------------------------------------------------ located errors

@pytest.mark.parametrize("text, line, field, words", [
    ("axes:\n  m: {pc: {machine: pc}}\nonyl: []\n", 3, "onyl", "did you mean 'only'"),
    ("name: x\n", 1, None, "missing required field 'axes'"),
    ("axes:\n  m: [pc]\n", 2, "axes.m", "expected a mapping"),
    ("axes:\n  m:\n    pc: pc\n", 3, "axes.m.pc", "expected a mapping of machine keys"),
    ("axes:\n  m:\n    pc: {machin: pc}\n", 3, "axes.m.pc.machin", "did you mean 'machine'"),
    ("axes:\n  m:\n    'p c': {machine: pc}\n", 3, "axes.m.p c", "not a valid value name"),
    ("axes:\n  machine: {pc: {machine: pc}}\nonly:\n  - {machin: pc}\n", 4, None, "did you mean 'machine'"),
    ("axes:\n  m: {pc: {machine: pc}}\nonly:\n  - {m: pcc}\n", 4, None, "did you mean 'pc'"),
    ("axes:\n  m: {pc: {machine: pc}}\nexclude:\n  - m=isa*\n", 3, "exclude[0]", "unknown axis 'm' value 'isa*'; values: pc"),
    ("axes:\n  m: {pc: {machine: pc}}\nonly:\n  - m:pc\n", 3, "only[0]", "is not of the form"),
    ("axes:\n  m: {pc: {machine: pc}}\n  a: {x: {machine: q35}}\n", 3, "axes.a.x.machine", "both set 'machine'"),
    ("axes:\n  m: {pc: {machine: pc}}\nexpect:\n  - {when: {m: pc}, outcome: dirty, why: x}\n", 4,
     "expect[0].outcome", "unknown value 'dirty'; expected one of"),
    ("axes:\n  m: {pc: {machine: pc}, isapc: {machine: isapc}}\n  d: {nic: {devices: [{model: e1000, id: n}]}}\n"
     "expect:\n  - {when: {m: isapc}, outcome: conflict, why: x}\n", 5, "expect[0].when", "matches no cell"),
    ("axes:\n  m: {pc: {machine: pc}}\n  d:\n    x: {devices: [{model: isa-serial, id: c, irq: 16}]}\n", 4,
     "axes.d.x.devices[0].irq", "out of range 0..15 (in cell pc-x)"),
    # a top-level key an axis value sets is named where it stands (it said 'memory') (qa8)
    ("axes:\n  m: {pc: {machine: pc, memory: 1}}\n", 2, "axes.m.pc.memory", "1 is out of range; expected 16..16384"),
    ("axes:\n  m: {a-b: {machine: pc}, a: {machine: pc}}\n  d: {c: {}, b-c: {}}\n", 1, "axes", "two cells get the id"),
    ("axes:\n  m: {pc: {machine: pc}}\nno:\n  - m=pc\n", 3, None, "the list of filters that drop cells is 'exclude'"),
    ("base: nowhere.yaml\naxes:\n  m: {pc: {machine: pc}}\n", 1, "base", "cannot load base machine"),
    ("axes:\n  m: {isapc: {machine: isapc}}\n  d: {nic: {devices: [{model: e1000, id: n}]}}\n", 1, "axes",
     "every combination is excluded (isapc-nic: isapc cannot hold e1000"),
])
def test_every_mistake_gets_file_line_and_field(text: str, line: int | None, field: str | None, words: str) -> None:
    error = matrix_error(text)
    assert error.source == "mx.yaml" and error.line == line, str(error)
    if field is not None:
        assert error.field == field, str(error)
    assert words in error.message, str(error)
    assert str(error).startswith(f"mx.yaml:{line}:" if line else "mx.yaml:")


# ------------------------------------------------------------------ filters and exclusions

def test_filters_only_exclude_globs_and_both_forms() -> None:
    text = TINY.replace("exclude:\n  - machine=isapc devices=sci\n",
                        "only:\n  - {devices: [s*]}\n  - machine=pc devices=nic\nexclude:\n  - {machine: isapc}\n")
    m = parse_matrix_text(text)
    assert [c.id for c in m.cells] == ["pc-serial", "pc-sci", "pc-nic"]
    reasons = {e.id: e.reason for e in m.excluded}
    line = text.splitlines().index("  - {machine: isapc}") + 1
    assert reasons["isapc-serial"] == f"dropped by exclude[0] (line {line}): machine=isapc"
    assert reasons["isapc-nic"].startswith("isapc cannot hold e1000 (nic0)")  # capability first
    # the one-line and mapping forms mean the same
    assert m.select(["machine=pc devices=s*"]) == m.select(["devices=serial,sci"])
    assert [c.id for c in m.select(["devices=nic", "devices=sci"])] == ["pc-sci", "pc-nic"]
    with pytest.raises(ConfigError, match="did you mean 'serial'"):
        m.select(["devices=serail"])


def test_machine_types_leave_out_what_they_cannot_hold() -> None:
    m = load_matrix(SHIPPED)
    reasons = {e.id: e.reason for e in m.excluded}
    from harness.devices import load_catalog
    catalog = load_catalog()
    for machine in ("pc", "q35", "isapc"):
        for model in catalog.values():
            cell_id = f"{machine}-tcg-{model.name}"
            if machine in model.machines:
                assert m.cell(cell_id).spec.machine == machine
            else:
                assert f"{machine} cannot hold {model.name}" in reasons[cell_id]


# ------------------------------------------------------------------ shards

def _cells(n: int, prefix: str = "c") -> list[Cell]:
    spec = parse_matrix_text("axes:\n  m: {pc: {machine: pc}}\n").cells[0].spec
    return [Cell(f"{prefix}{i}", {}, spec) for i in range(n)]


@pytest.mark.parametrize("n, count", [(1, 1), (7, 3), (10, 4), (339, 4), (339, 7), (5, 5), (3, 8)])
def test_shards_partition_the_cells_evenly(n: int, count: int) -> None:
    cells = _cells(n)
    parts = [shard(cells, i, count) for i in range(1, count + 1)]
    ids = [c.id for part in parts for c in part]
    assert sorted(ids) == sorted(c.id for c in cells) and len(ids) == len(set(ids))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1, sizes
    assert parts == [shard(list(reversed(cells)), i, count)[::-1] for i in range(1, count + 1)]


def test_adding_a_cell_moves_few_others() -> None:
    cells = _cells(300)
    before = shard_of(cells, 4)
    moved = []
    for extra in range(10):
        after = shard_of(cells + _cells(1, f"new{extra}-"), 4)
        moved.append(sum(before[c.id] != after[c.id] for c in cells))
    # round-robin over sorted ids would move about half of the cells
    assert max(moved) <= 15, moved


@pytest.mark.parametrize("text, parsed", [("2/4", (2, 4)), (" 1 / 1 ", (1, 1))])
def test_parse_shard(text: str, parsed: tuple[int, int]) -> None:
    assert parse_shard(text) == parsed


@pytest.mark.parametrize("text", ["0/4", "5/4", "2", "a/b", "1/0", "-1/2"])
def test_parse_shard_refuses(text: str) -> None:
    with pytest.raises(HarnessError, match="I/N|between 1 and N"):
        parse_shard(text)


# ------------------------------------------------------------------ CI job matrices

def test_emitted_job_matrices_cover_every_cell_once() -> None:
    m = load_matrix(SHIPPED)
    path = "configs/matrices/devices.yaml"
    plain = json.loads(emit(m, path, "json", 4))
    assert [e["shard"] for e in plain["shards"]] == ["1/4", "2/4", "3/4", "4/4"]
    assert plain["shards"][1]["command"] == f"harness matrix {path} --run --shard 2/4"
    assert plain["shards"][1]["pytest_command"] == f"pytest --harness-matrix {path} --harness-shard 2/4"
    assert plain["shards"][1]["out"] == "runs/matrix-devices/shard-2-of-4"
    ids = [cell for entry in plain["shards"] for cell in entry["cells"]]
    assert sorted(ids) == sorted(c.id for c in m.cells) and len(ids) == len(set(ids))
    # each shard's cells are the cells 'harness matrix --run --shard' runs
    assert plain["shards"][2]["cells"] == [c.id for c in shard(m.cells, 3, 4)]
    github = yaml.safe_load(emit(m, path, "github", 4))
    include = github["jobs"]["matrix"]["strategy"]["matrix"]["include"]
    assert [e["cells"] for e in include] == [len(e["cells"]) for e in plain["shards"]]
    steps = github["jobs"]["matrix"]["steps"]
    assert steps[2]["run"] == f"harness matrix {path} --run --shard ${{{{ matrix.shard }}}}"
    upload = steps[3]
    assert upload["uses"].startswith("actions/upload-artifact") and upload["if"] == "always()"
    merge = github["jobs"]["merge"]
    assert merge["needs"] == "matrix" and merge["steps"][3]["run"] == \
        "harness matrix merge runs/matrix-devices/shard-*-of-4 --out runs/matrix-devices/merged"
    gitlab = yaml.safe_load(emit(m, path, "gitlab", 3))
    job = gitlab["matrix-devices"]
    assert job["parallel"]["matrix"] == [{"HARNESS_SHARD": ["1/3", "2/3", "3/3"]}]
    assert job["script"] == [f'harness matrix {path} --run --shard "$HARNESS_SHARD"']
    assert job["artifacts"]["paths"] == ["runs/matrix-devices/"]
    assert gitlab["matrix-devices-merge"]["needs"] == ["matrix-devices"]


def test_emit_with_only_shards_the_selection() -> None:
    m = load_matrix(SHIPPED)
    only = ["machine=isapc devices=sb16*"]
    plain = json.loads(emit(m, "m.yaml", "json", 2, only))
    selected = m.select(only)
    assert sorted(c for e in plain["shards"] for c in e["cells"]) == sorted(c.id for c in selected)
    assert plain["shards"][0]["command"] == "harness matrix m.yaml --only 'machine=isapc devices=sb16*' --run --shard 1/2"
    assert plain["shards"][0]["cells"] == [c.id for c in shard(selected, 1, 2)]
    with pytest.raises(HarnessError, match="no cell"):
        emit(m, "m.yaml", "json", 2, ["machine=isapc devices=pci-bridge*"])


# ------------------------------------------------------------------ running (real QEMU)

def harness(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_run_passes_fails_and_summarises(tmp_path: Path) -> None:
    good = tmp_path / "tiny.yaml"
    good.write_text(TINY.replace("    nic: {devices: [{model: e1000, id: nic0, addr: 3}]}\n", ""))
    run = harness("matrix", str(good), "--run", "-j", "2", "--out", str(tmp_path / "out"))
    assert run.returncode == 0, run.stdout + run.stderr
    rows = {line.split()[0]: line.split() for line in run.stdout.splitlines() if line.startswith(("pc-", "isapc-"))}
    assert set(rows) == {"pc-serial", "pc-sci", "isapc-serial"}
    assert rows["pc-sci"][1:4] == ["pass", "conflict", "1"] and rows["pc-serial"][1:4] == ["pass", "clean", "0"]
    assert "3 cells: 3 pass, 0 fail, 0 error" in run.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert {r["cell_id"] for r in summary["results"]} == set(rows)
    assert (tmp_path / "out" / "pc-sci" / "report.json").is_file()
    # a wrong expectation fails the cell, names its folder and exits 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("outcome: conflict", "outcome: clean"))
    run = harness("matrix", str(bad), "--run", "--only", "machine=pc", "--out", str(tmp_path / "o2"))
    assert run.returncode == 1, run.stdout + run.stderr
    (row,) = [line for line in run.stdout.splitlines() if line.startswith("pc-sci ")]
    assert " fail " in row and str(tmp_path / "o2" / "pc-sci") in row and "found 1 conflict(s)" in row


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


FULL_SET = {"report.json", "report.txt", "report.html", "registry.sqlite", "registry.reg", "qemu/argv.sh"}


def test_cli_artifacts_keeps_every_file_for_failures_or_for_all(tmp_path: Path) -> None:
    """--artifacts failures (the default): a cell that goes as expected keeps report.json
    alone (the summary still has its findings); a failing cell keeps everything and its
    bundle.  --artifacts all: every cell keeps everything."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.replace("outcome: conflict", "outcome: clean"))
    run = harness("matrix", str(bad), "--run", "--only", "machine=pc devices=serial,sci", "--out", str(tmp_path / "f"))
    assert run.returncode == 1, run.stdout + run.stderr
    assert _files(tmp_path / "f" / "pc-serial") == {".harness-run", "report.json"}
    assert FULL_SET | {"bundle.yaml"} <= _files(tmp_path / "f" / "pc-sci")
    summary = json.loads((tmp_path / "f" / "summary.json").read_text())
    sci = next(r for r in summary["results"] if r["cell_id"] == "pc-sci")
    assert sci["outcome"] == "fail" and any("IRQ" in f or "irq" in f for f in sci["findings"]), sci
    assert summary["seen_on"][0]["qemu"]   # read from a trimmed cell's report.json too

    run = harness("matrix", str(bad), "--run", "--only", "machine=isapc devices=serial", "--artifacts", "all",
                  "--out", str(tmp_path / "a"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert FULL_SET <= _files(tmp_path / "a" / "isapc-serial")

    run = harness("matrix", str(bad), "--run", "--artifacts", "some", "--out", str(tmp_path / "x"))
    assert run.returncode == 2 and "argument --artifacts: unknown choice 'some'; choose from: failures, all" in run.stderr, \
        run.stderr
    with pytest.raises(HarnessError, match="artifacts: unknown value 'some'; expected one of: failures, all"):
        run_cells(parse_matrix_text(TINY).cells[:1], 1, tmp_path / "y", artifacts="some")


def test_run_cell_that_raises_keeps_the_logs_and_leaves_no_machine(tmp_path: Path, monkeypatch) -> None:
    """A cell's QEMU is launched before its job (the early launch): when the job then
    raises, the cell is an error with QEMU's logs and the registry kept, its machine
    is gone and its run folder removed."""
    import tempfile
    import harness.matrix as matrix_module

    def broken(cell: Cell, job: object) -> tuple[str, str]:
        raise RuntimeError("judging failed")
    monkeypatch.setattr(matrix_module, "judge", broken)
    with tempfile.TemporaryDirectory(prefix="cellrun-") as runs:   # short: QEMU's unix sockets
        monkeypatch.setenv("HARNESS_RUN_DIR", runs)
        result = run_cell(parse_matrix_text(TINY).cell("pc-serial"), tmp_path / "out")
        assert list(Path(runs).iterdir()) == []
    assert (result.outcome, result.exit_code) == ("error", 2) and "RuntimeError: judging failed" in result.message
    assert {"registry.sqlite", "qemu/argv.sh", "qemu/qemu.log"} <= _files(result.out_dir)
    assert "report.json" not in _files(result.out_dir)
    assert not [p for p in tagged_processes() if p.owner_pid == os.getpid()]


def write_marker(cell: Cell, outcome: object, out_dir: Path) -> Path:
    """An on_failure hook (module level: it runs in the worker process)."""
    marker = out_dir / "bundle.txt"
    marker.write_text(f"{cell.id} {type(outcome).__name__}\n")
    return marker


def test_run_cells_calls_on_failure_in_the_worker(tmp_path: Path) -> None:
    m = parse_matrix_text(TINY.replace("outcome: conflict", "outcome: clean"))
    cells = m.select(["machine=pc devices=sci,serial"])
    seen = []
    results = run_cells(cells, 2, tmp_path, on_failure=write_marker,
                        progress=lambda r, done, total: seen.append((r.cell_id, done, total)))
    assert [r.cell_id for r in results] == ["pc-serial", "pc-sci"]
    assert sorted(seen) == sorted([(seen[0][0], 1, 2), (seen[1][0], 2, 2)])
    assert {s[0] for s in seen} == {"pc-serial", "pc-sci"}
    bad = results[1]
    assert (bad.outcome, bad.exit_code, results[0].outcome) == ("fail", 1, "pass")
    assert bad.bundle == tmp_path / "pc-sci" / "bundle.txt"
    assert bad.bundle.read_text() == "pc-sci JobResult\n" and results[0].bundle is None


def _children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def test_interrupt_leaves_no_qemu_of_the_run(tmp_path: Path) -> None:
    many = tmp_path / "many.yaml"
    many.write_text("axes:\n  machine: {pc: {machine: pc}, q35: {machine: q35}}\n"
                    "  devices: {from_catalog: each_model}\n"
                    "exclude: [devices=isa-debugcon]\n")  # cells are about 0.5 s each
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "matrix", str(many), "--run", "-j", "2",
                             "--out", str(tmp_path / "out"), "--progress", "lines"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers: set[int] = set()
    qemus: set[int] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not qemus:
        workers |= _children(proc.pid)
        qemus = {p.pid for p in tagged_processes() if p.owner_pid in workers}
        time.sleep(0.02)
    assert qemus, "no QEMU of the run was seen within 60 s"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "interrupted" in err and "not run" in err
    # what ran is written down; the cells that did not are named
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["missing"] and len(summary["results"]) + len(summary["missing"]) == len(summary["selection"]["cells"])
    assert (tmp_path / "out" / "junit.xml").is_file()
    time.sleep(0.2)
    alive = [pid for pid in qemus | workers if os.path.exists(f"/proc/{pid}")
             and open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]
    assert alive == [], f"still running after the interrupt: {alive}"
    assert not [p for p in tagged_processes() if p.owner_pid in workers | {proc.pid}]


# ------------------------------------------------------------------ the shipped matrix
# Every cell, each through the real main job; the plugin parametrises the test over the
# cells (known issues as strict xfails) and gives each cell its own xdist group.

SHIPPED_MATRIX = load_matrix(SHIPPED)


@pytest.mark.qemu
@pytest.mark.matrix(SHIPPED)
def test_shipped_matrix_cell(harness_cell: Cell) -> None:
    """The main job on the cell agrees with the cell's expectation."""
    cell = harness_cell
    result = run_cell(cell, Path(os.environ.get("HARNESS_MATRIX_OUT", "runs/test-matrix")),
                      on_failure=write_cell_bundle)
    assert result.outcome != "error", result.message
    agrees = result.exit_code == EXIT_CODES[cell.expect]
    assert agrees, (f"{cell.id}: expected {cell.expect} ({cell.why or 'nothing collides'}), "
                    f"{result.message}; report: {result.out_dir / 'report.txt'}; bundle: {result.bundle}")


def test_the_shipped_matrix_covers_every_model_and_setting() -> None:
    m = SHIPPED_MATRIX
    assert {c.axes["machine"] for c in m.cells} == {"pc", "q35", "isapc"}
    from harness.devices import load_catalog
    models = {d.model.name for c in m.cells for d in c.spec.devices}
    assert models == set(load_catalog())
    conflicts = [c for c in m.cells if c.expect == "conflict"]
    assert conflicts and all(c.why for c in conflicts)
