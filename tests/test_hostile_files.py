"""Damaged, foreign and missing files in, half-written files out: neither may happen.

* A registry with a damaged page, or an SQLite file that is not a registry, is refused at
  open with an error naming the file; one that opens reads whole (no raw sqlite3 error).
* Readers never create files (``harness registry dump`` of a missing or empty file).
* Every output is written under a temporary name and renamed: a kill leaves the old file
  or the new one, never an empty one; an unwritable output is exit status 2.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.atomicio import OutputError, atomic_output, write_bytes, write_text
from harness.cli import main
from harness.errors import ConfigError
from harness.nt.errors import RegistryFileError
from harness.nt.registry import RESOURCE_MAP, Registry, format_tree
from harness.nt.resources import CM_RESOURCE_LIST, Isa, Port
from helpers import REPO, record_figures

PAGE = 4096
DAMAGE_SEED = 1919


def _registry_with_pages(path: Path) -> int:
    """A registry spread over several pages; returns how many."""
    with Registry(path) as reg:
        with reg.transaction():
            for n in range(60):
                key = rf"{RESOURCE_MAP}\Class{n % 7}\Driver{n}"
                reg.create_key(key)
                reg.set_value(key, rf"\Device\Dev{n}.Raw", CM_RESOURCE_LIST.single(Isa, 0, Port(0x100 + n * 8, 8)))
                reg.set_value(key, "Description", f"device number {n} " * 8)
    assert not Path(f"{path}-wal").exists()
    return path.stat().st_size // PAGE


def _read_everything(path: Path) -> str:
    with Registry(path, create=False) as reg:
        return format_tree(reg)


def test_damaged_registries_are_refused_at_open_or_read_whole(tmp_path: Path) -> None:
    good = tmp_path / "good.sqlite"
    pages = _registry_with_pages(good)
    assert pages >= 4
    rng = random.Random(DAMAGE_SEED)
    refused = read = 0
    for page in range(pages):
        for variant in range(4):
            bad = tmp_path / f"bad-{page}-{variant}.sqlite"
            data = bytearray(good.read_bytes())
            offset = page * PAGE + (rng.randrange(100) if variant == 0 else rng.randrange(PAGE - 64))
            data[offset:offset + 32] = rng.randbytes(32)
            bad.write_bytes(bytes(data))
            try:
                _read_everything(bad)
                read += 1
            except RegistryFileError as exc:
                assert str(bad) in str(exc), exc
                assert exc.__context__ is None or exc.__suppress_context__, "a raw sqlite3 error rides along"
                refused += 1
    record_figures("damaged_registries", files=refused + read, refused_at_open=refused, read_whole=read)
    assert refused > 0 and refused + read == pages * 4


def test_foreign_and_empty_files_are_refused_and_never_changed(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (1)")
    before = foreign.read_bytes()
    with pytest.raises(RegistryFileError, match=r"foreign\.sqlite.*not a harness registry"):
        Registry(foreign)
    assert foreign.read_bytes() == before, "the journal mode of a foreign file was changed"
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all\n" * 20)
    with pytest.raises(RegistryFileError, match="notes.txt"):
        Registry(text, create=False)
    assert text.read_text() == "not a database at all\n" * 20


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_registry_dump_never_creates_a_file(tmp_path: Path, state: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.sqlite"
    if state == "empty":
        path.touch()
    assert main(["registry", "dump", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and ("does not exist" in err or "is empty" in err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if state == "missing" else ["r.sqlite"])
    assert state == "missing" or path.stat().st_size == 0


def test_atomic_output_leaves_the_old_file_or_the_new(tmp_path: Path) -> None:
    target = tmp_path / "report.txt"
    write_text(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as handle:
            handle.write("half")
            raise RuntimeError("killed half-way")
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["report.txt"]
    write_bytes(target, b"new\n")
    assert target.read_bytes() == b"new\n"
    # A link planted at any name in the folder is never written through.
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "link.txt").symlink_to(victim)
    write_text(tmp_path / "link.txt", "replaced the link, not its target")
    assert victim.read_text() == "precious" and not (tmp_path / "link.txt").is_symlink()
    with pytest.raises(OutputError, match=r"cannot write .*nowhere/x\.txt"):
        write_text(tmp_path / "nowhere" / "x.txt", "x")


_WRITER = textwrap.dedent("""
    import sys
    from harness.atomicio import atomic_output
    path = sys.argv[1]
    with atomic_output(path) as f:
        for i in range(200000):
            f.write(f"line {i} of a long report\\n")
            if i == 1000:
                print("writing", flush=True)
                sys.stdin.readline()   # SIGKILLed here, half-way through
""")


def test_a_kill_while_writing_leaves_the_previous_output(tmp_path: Path) -> None:
    target = tmp_path / "registry.reg"
    target.write_text("previous run\n")
    for _ in range(10):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], cwd=REPO,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert target.read_text() == "previous run\n"
    left = [p.name for p in tmp_path.iterdir() if p.name != target.name]
    assert all(n.startswith(".registry.reg.") and n.endswith(".tmp") for n in left) and len(left) == 10


def _readonly_dir(tmp_path: Path) -> Path:
    """A folder nobody can write into, root included (a file where a folder should be)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, so nothing can be created below it")
    return blocker / "out"


def test_an_unwritable_out_or_reg_is_exit_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reg = tmp_path / "r.sqlite"
    with Registry(reg) as r:
        r.create_key(rf"{RESOURCE_MAP}\Other")
    bad = _readonly_dir(tmp_path)
    assert main(["registry", "dump", str(reg), "--reg", str(bad / "x.reg")]) == 2
    assert "cannot write" in capsys.readouterr().err
    machine = tmp_path / "m.yaml"
    machine.write_text("machine: pc\n")
    assert main(["run", str(machine), "--out", str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err
    assert main(["repro", str(machine), "--shrink", "--max-runs", "0"]) == 2
    assert "--max-runs" in capsys.readouterr().err


@pytest.mark.parametrize("class_name,driver", [("Odd\\Class", "Serial"), ("OtherDrivers", "Ser\\ial"),
                                                ("OtherDrivers", "Serial")])
def test_a_backslash_in_a_class_or_driver_name_is_refused_not_lost_on_reopen(
        tmp_path: Path, class_name: str, driver: str) -> None:
    from harness.nt.iomgr import DeviceObject, DriverObject, IoManager
    from harness.nt.status import NTSTATUS
    path = tmp_path / "r.sqlite"
    com = CM_RESOURCE_LIST.single(Isa, 0, Port(0x3F8, 8))
    with Registry(path) as reg:
        io = IoManager(reg)
        drv = DriverObject(driver, io.service_key("Serial"))
        status, _ = io.IoReportResourceUsage(class_name, drv, None, 0, DeviceObject(r"\Device\Serial0", drv),
                                             com, com.size(reg.arch), False)
        accepted = "\\" not in class_name + driver
        assert status == (NTSTATUS.STATUS_SUCCESS if accepted else NTSTATUS.STATUS_OBJECT_NAME_INVALID)
        status, _ = io.IoAssignResources(io.service_key("Serial"), class_name, drv, None, None)
        assert status == (NTSTATUS.STATUS_SUCCESS if accepted else NTSTATUS.STATUS_OBJECT_NAME_INVALID)
    with Registry(path, create=False) as reg:  # what the next run takes over
        owners = {(c, d) for c in reg.subkeys(RESOURCE_MAP) for d in reg.subkeys(rf"{RESOURCE_MAP}\{c}")} \
            if reg.key_exists(RESOURCE_MAP) else set()
        assert owners == ({(class_name, driver)} if accepted else set())
        assert IoManager(reg).arbiter is not None  # the take-over reads it back without error


# ---- readers: bounded, and every error at the right file, line and field ------------------
def _error(fn, *args) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        fn(*args)
    return info.value


def test_an_explicit_tag_on_an_empty_value_is_a_located_error_in_every_reader(tmp_path: Path) -> None:
    from harness.config import load_machine
    from harness.matrix import load_matrix
    from harness.repro import load_bundle
    for tag in ("!!int", "!!float", "!!int ''", "!!float \"\"", "!!bool", "!!timestamp"):
        machine = tmp_path / "m.yaml"
        machine.write_text(f"machine: pc\nmemory: {tag}\n")
        exc = _error(load_machine, machine)
        assert (exc.source, exc.line) == (str(machine), 2), exc
        matrix = tmp_path / "x.yaml"
        matrix.write_text(f"axes:\n  m: {{pc: {{machine: pc, memory: {tag}}}}}\n")
        assert _error(load_matrix, matrix).line == 2
        bundle = tmp_path / "b.yaml"
        bundle.write_text(f"harness_repro: 1\nmachine: {{machine: pc}}\nseen: {{n: {tag}}}\n")
        assert _error(load_bundle, bundle).line == 3


def test_matrix_errors_name_the_file_and_line_they_come_from(tmp_path: Path) -> None:
    from harness.matrix import load_matrix
    base = tmp_path / "base.yaml"
    base.write_text("machine: pc\n\nmemory: 99999\n")
    matrix = tmp_path / "x.yaml"
    matrix.write_text("name: x\nbase: base.yaml\naxes:\n  a: {one: {accel: tcg}}\n")
    exc = _error(load_matrix, matrix)
    assert (exc.source, exc.line, exc.field) == (str(base), 3, "memory"), exc
    base.write_text("machine: pc\nbogus: 1\n")
    exc = _error(load_matrix, matrix)
    assert (exc.source, exc.line, exc.field) == (str(base), 2, "bogus") and str(matrix) in exc.message
    # A cell whose id (its value names joined) is no valid machine name: at the axes line.
    long = "v" * 40
    matrix.write_text(f"name: x\naxes:\n  a: {{{long}: {{machine: pc}}}}\n  b: {{{long}: {{accel: tcg}}}}\n")
    exc = _error(load_matrix, matrix)
    assert (exc.source, exc.line, exc.field) == (str(matrix), 2, "name"), exc


def test_matrix_size_and_shard_count_are_bounded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import time

    from harness.matrix import MAX_COMBINATIONS, load_matrix, parse_shard, shard_of
    values = ", ".join(f"v{i}: {{}}" for i in range(30))
    matrix = tmp_path / "big.yaml"
    matrix.write_text("axes:\n" + "".join(f"  a{n}: {{{values}}}\n" for n in range(6)))  # 30**6
    start = time.monotonic()
    exc = _error(load_matrix, matrix)
    assert time.monotonic() - start < 5 and exc.field == "axes" and str(MAX_COMBINATIONS) in exc.message
    from harness.errors import HarnessError
    for text in ("1/999999", "1/0", "0/3", "x"):
        with pytest.raises(HarnessError):
            parse_shard(text)
    with pytest.raises(HarnessError):
        shard_of([], 10**6)
    small = tmp_path / "small.yaml"
    small.write_text("axes:\n  m: {pc: {machine: pc}}\n")
    start = time.monotonic()
    assert main(["matrix", str(small), "--shard", "1/999999"]) == 2
    assert main(["matrix", str(small), "--only", "m=pcx"]) == 2
    assert time.monotonic() - start < 10
    assert "the command line: --only 'm=pcx'" in capsys.readouterr().err


def test_bundle_fields_are_bounded_and_located(tmp_path: Path) -> None:
    from harness.repro import load_bundle
    bundle = tmp_path / "b.yaml"
    head = "harness_repro: 1\nmachine: {machine: pc, devices: [{model: isa-serial, id: com1}]}\n"
    bundle.write_text(head + "steps:\n  - report:\n      driver: serial\n      device: com1\n"
                      "      device_list:\n        - interface: Isa\n          bus: 0x1ffffffff\n"
                      "          resources: [{port: 0x3f8, length: 8}]\n")
    exc = _error(load_bundle, bundle)
    assert (exc.line, exc.field) == (9, "steps[0].report.device_list[0].bus"), exc
    bundle.write_text(head + "seen: {qemu_version: 7.2.0, nested: {a: 1}}\n")
    exc = _error(load_bundle, bundle)
    assert (exc.line, exc.field) == (3, "seen.nested"), exc
    bundle.write_text(head + "seen: {qemu_version: 7.2.0, accel: tcg}\n")
    out = load_bundle(bundle).write(tmp_path / "again.yaml")  # what loads can be written
    assert load_bundle(out).seen == {"qemu_version": "7.2.0", "accel": "tcg"}
    huge = tmp_path / "huge.yaml"
    huge.write_text(head + "title: '" + "x" * (2 << 20) + "'\n")
    assert "larger than" in _error(load_bundle, huge).message
    # a machine file given for a bundle says so (it said: unknown field 'name')
    bundle.write_text("name: m\nmachine: pc\ndevices: []\n")
    assert "this is a machine file, not a repro bundle: 'harness run' takes it" in str(_error(load_bundle, bundle))
    # so does a shipped example's name (it said "file not found")
    assert "shipped examples are machine files and matrices, not repro bundles" in str(
        _error(load_bundle, "example:conflicts/sb16-ne2000-irq5"))
    # a report step whose call could only return STATUS_OBJECT_NAME_INVALID (which no
    # report shows: the replay looked like one without the step) is refused at its field
    for key, name in (("driver", "''"), ("driver", "'a\\b'"), ("class", "'x\\y'")):
        other = "" if key == "driver" else "      driver: serial\n"
        bundle.write_text(head + f"steps:\n  - report:\n      {key}: {name}\n{other}      device: com1\n"
                          "      device_list: [{resources: [{port: 0x3f8, length: 8}]}]\n")
        exc = _error(load_bundle, bundle)
        assert (exc.line, exc.field) == (5, f"steps[0].report.{key}") and "STATUS_OBJECT_NAME_INVALID" in str(exc), exc


@pytest.mark.parametrize("text, says", [
    ("[" * 100_000, "not JSON"),                       # a RecursionError traceback, exit 1
    ("[1]", "summary schema None"),                    # 'list' object has no attribute 'get'
    ('{"schema": 2}', "matrix: expected"),             # KeyError: 'results'
    ('{"schema": 2, "matrix": "m", "source": "m.yaml", "axes": {}, "selection": {"cells": ["a"]}, '
     '"shards": ["all"], "results": [{"cell_id": "a"}]}', "results[0]: expected a cell"),
])
def test_matrix_merge_refuses_a_damaged_summary_naming_it(tmp_path: Path, text: str, says: str, capsys) -> None:
    shard = tmp_path / "shard"
    shard.mkdir()
    (shard / "summary.json").write_text(text)
    assert main(["matrix", "merge", str(shard), "--out", str(tmp_path / "merged")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"harness matrix: error: merge: {shard / 'summary.json'}: ") and says in err, err
    assert not (tmp_path / "merged").exists()


def test_matrix_output_onto_a_file_is_refused_before_any_cell_runs(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("mine\n")
    matrix = tmp_path / "m.yaml"
    matrix.write_text("name: m\naxes:\n  machine: {isapc: {machine: isapc}}\n")
    for argv in (["matrix", str(matrix), "--run", "--out", str(blocker)],
                 ["matrix", "merge", str(tmp_path), "--out", str(blocker)]):
        if argv[1] == "merge":   # a shard folder to merge, so the output folder is what fails
            (tmp_path / "summary.json").write_text('{"schema": 2, "matrix": "m", "source": "m.yaml", "axes": {}, '
                                                   '"selection": {"cells": []}, "shards": ["all"], "results": []}')
        assert main(argv) == 2
        assert f"error: cannot make the output folder {blocker}: File exists" in capsys.readouterr().err
        assert blocker.read_text() == "mine\n"   # it said "[Errno 17] File exists"
