"""Launch plans (harness/qemu/launchplan.py): the CLI starts the QEMU a machine file
produced last time before it reads the file, and keeps it only when the file still
produces exactly that QEMU.  Every case boots a real QEMU through the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from harness.qemu import lifeline
from helpers import REPO

MACHINE = "name: planned\nmachine: pc\ndevices:\n  - {model: isa-serial, id: com1, iobase: 0x3f8, irq: 4}\n"


@pytest.fixture
def env(tmp_path: Path):
    runs = Path(tempfile.mkdtemp(prefix="hp-", dir="/tmp"))  # short: unix socket paths live there
    yield dict(os.environ, HARNESS_CACHE_DIR=str(tmp_path / "cache"), HARNESS_RUN_DIR=str(runs))
    shutil.rmtree(runs, ignore_errors=True)


def _layout(machine: Path, env: dict[str, str], *extra: str) -> tuple[subprocess.CompletedProcess[str], Path | None]:
    """``harness layout MACHINE --json --keep``; the run folder it kept (None on an error)."""
    done = subprocess.run([sys.executable, "-m", "harness.cli", "layout", str(machine), "--json", "--keep", *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    kept = [line.split(": ", 1)[1] for line in done.stderr.splitlines() if line.startswith("run folder: ")]
    return done, Path(kept[0]) if kept else None


def _plans(env: dict[str, str]) -> list[Path]:
    return sorted((Path(env["HARNESS_CACHE_DIR"]) / "launch-plans").glob("*.json"))


def _early(run_dir: Path) -> bool:
    """Whether qmp.log says the machine ran on the QEMU its launch plan started."""
    for line in (run_dir / "qmp.log").read_text().splitlines():
        info = json.loads(line).get("info")
        if info is not None:
            return info["early_start"]
    raise AssertionError(f"no info line in {run_dir / 'qmp.log'}")


def _qemus_under(root: Path) -> list[int]:
    """QEMU processes whose command line names a folder under ``root`` (ours only)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"qemu-system" in cmdline and str(root).encode() in cmdline:
                found.append(int(entry.name))
    return found


def _no_qemu_left(env: dict[str, str]) -> None:
    root = Path(env["HARNESS_RUN_DIR"])
    deadline = time.monotonic() + 5
    while _qemus_under(root) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _qemus_under(root) == []


def test_the_second_run_starts_qemu_from_the_plan_and_reads_the_same_hardware(tmp_path, env) -> None:
    machine = tmp_path / "m.yaml"
    machine.write_text(MACHINE)
    first, first_dir = _layout(machine, env)
    assert first.returncode == 0, first.stderr
    assert not _early(first_dir)          # no plan yet: launched the usual way
    assert len(_plans(env)) == 1          # and the plan kept
    second, second_dir = _layout(machine, env)
    assert second.returncode == 0, second.stderr
    assert _early(second_dir)             # started from the plan, firmware running at once
    assert json.loads(second.stdout) == json.loads(first.stdout)
    assert (second_dir / "argv.sh").read_text() .replace(str(second_dir), "RUN") == \
        (first_dir / "argv.sh").read_text().replace(str(first_dir), "RUN")
    _no_qemu_left(env)


def test_a_plan_that_no_longer_matches_is_killed_and_the_machine_started_afresh(tmp_path, env) -> None:
    machine = tmp_path / "m.yaml"
    machine.write_text(MACHINE)
    first, _ = _layout(machine, env)
    assert first.returncode == 0, first.stderr
    plan_path, = _plans(env)
    plan = json.loads(plan_path.read_text())
    memory = plan["argv"].index("-m") + 1
    plan["argv"][memory] = str(int(plan["argv"][memory]) * 2)  # what an older model or harness made
    plan_path.write_text(json.dumps(plan))
    second, second_dir = _layout(machine, env)
    assert second.returncode == 0, second.stderr
    assert not _early(second_dir)          # the guess was wrong: not adopted
    assert json.loads(second.stdout) == json.loads(first.stdout)
    # The early QEMU's folder went with it: only the two kept runs remain.
    assert len([p for p in Path(env["HARNESS_RUN_DIR"]).iterdir() if p.is_dir()]) == 2
    fixed = json.loads(plan_path.read_text())
    assert fixed["argv"][memory] == str(int(plan["argv"][memory]) // 2)  # the plan is right again
    _no_qemu_left(env)


def test_an_edited_machine_file_is_not_started_from_its_old_plan(tmp_path, env) -> None:
    machine = tmp_path / "m.yaml"
    machine.write_text(MACHINE)
    assert _layout(machine, env)[0].returncode == 0
    machine.write_text(MACHINE.replace("0x3f8", "0x2f8").replace("irq: 4", "irq: 3"))
    done, run_dir = _layout(machine, env)
    assert done.returncode == 0, done.stderr
    assert not _early(run_dir)
    assert "iobase=760,irq=3" in (run_dir / "argv.sh").read_text()  # 0x2f8


def test_a_plan_others_can_write_is_ignored(tmp_path, env) -> None:
    machine = tmp_path / "m.yaml"
    machine.write_text(MACHINE)
    assert _layout(machine, env)[0].returncode == 0
    plan_path, = _plans(env)
    plan_path.chmod(plan_path.stat().st_mode | stat.S_IWOTH)
    done, run_dir = _layout(machine, env)
    assert done.returncode == 0, done.stderr
    assert not _early(run_dir)


def test_an_error_after_the_early_start_leaves_no_qemu_and_no_run_folder(tmp_path, env) -> None:
    """The plan matches the machine file, but a model it uses broke since: the early QEMU
    and its run folder go, the error is the model's."""
    models = tmp_path / "models"
    models.mkdir()
    shipped = (REPO / "device_models" / "isa-serial.yaml").read_text()
    (models / "isa-serial.yaml").write_text(shipped)
    env["HARNESS_DEVICE_MODELS"] = str(models)
    machine = tmp_path / "m.yaml"
    machine.write_text(MACHINE)
    first, first_dir = _layout(machine, env)
    assert first.returncode == 0, first.stderr
    (models / "isa-serial.yaml").write_text(shipped.replace("qemu_driver:", "qemu_driver_typo:"))
    done = subprocess.run([sys.executable, "-m", "harness.cli", "layout", str(machine), "--json"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "isa-serial.yaml" in done.stderr
    _no_qemu_left(env)
    left = [p for p in Path(env["HARNESS_RUN_DIR"]).iterdir() if p.is_dir() and p != first_dir]
    assert left == []


def test_harness_run_uses_its_plan_too(tmp_path, env) -> None:
    machine = tmp_path / "m.yaml"
    machine.write_text(MACHINE)
    reports = []
    for attempt in range(2):
        out = tmp_path / f"out{attempt}"
        done = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(machine), "--no-picture",
                               "--json", "--out", str(out)], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        reports.append(json.loads(done.stdout))
        assert _early(out / "qemu") == (attempt == 1)
    assert reports[0]["verdict"] == reports[1]["verdict"] == "clean"
    assert len(_plans(env)) == 1
    _no_qemu_left(env)


def test_a_firmware_that_ends_qemu_at_once_is_the_same_finding_from_a_plan(tmp_path, env) -> None:
    """SeaBIOS's first log byte makes an isa-debug-exit end QEMU, maybe before the harness
    has attached to the QEMU its plan started: still the firmware event, never a launch error."""
    machine = tmp_path / "m.yaml"
    machine.write_text("name: bye\nmachine: pc\nfirmware_log: false\ndevices:\n"
                       "  - {model: isa-debug-exit, id: bye, iobase: 0x402, iosize: 1}\n")
    events = []
    for attempt in range(2):
        done = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(machine), "--no-picture", "--json",
                               "--out", str(tmp_path / f"out{attempt}")], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=180)
        assert done.returncode == 1, done.stderr
        events.append([(e["kind"], e["devices"]) for e in json.loads(done.stdout)["events"]])
    assert events[0] == events[1] == [("qemu-exited", ["bye"])]
    _no_qemu_left(env)


# ---- the compiled lifeline ----------------------------------------------------------

def test_the_compiled_lifeline_was_built_and_is_used() -> None:
    assert lifeline.command(os.getpid()) == [lifeline.PROGRAM, str(os.getpid())]


@pytest.mark.parametrize("compiled", [True, False])
def test_a_lifeline_whose_parent_is_gone_starts_nothing(compiled: bool, tmp_path: Path) -> None:
    """Started for a parent that is not its parent (as when the parent died before the
    signal was armed): exit 125, the program never runs."""
    marker = tmp_path / "ran"
    not_parent = os.getppid()  # alive, but not the lifeline's parent
    done = subprocess.run([*lifeline.command(not_parent, compiled=compiled), "touch", str(marker)], timeout=30)
    assert done.returncode == lifeline.ORPHANED_EXIT
    assert not marker.exists()
    done = subprocess.run([*lifeline.command(os.getpid(), compiled=compiled), "touch", str(marker)], timeout=30)
    assert done.returncode == 0 and marker.exists()


@pytest.mark.parametrize("compiled", [True, False])
def test_a_lifelined_program_dies_with_its_parent(compiled: bool) -> None:
    """A parent (a Python process) starts ``sleep`` under the lifeline and is killed: the
    sleep is killed with it."""
    code = ("import os, subprocess, sys, time\nfrom harness.qemu import lifeline\n"
            f"p = subprocess.Popen([*lifeline.command(os.getpid(), compiled={compiled}), 'sleep', '300'])\n"
            "print(p.pid, flush=True)\ntime.sleep(300)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        deadline = time.monotonic() + 10
        while b"sleep" not in Path(f"/proc/{child}/cmdline").read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)  # exec'd past the lifeline: the signal is armed
    finally:
        parent.kill()
        parent.wait(10)
    deadline = time.monotonic() + 10
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _gone(child)


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# ---- the same from Python: cont and questions written before QEMU starts -------------

def test_a_machine_launched_running_with_its_questions_asked_reads_the_same_layout() -> None:
    from harness.qemu.layout import read_static_facts, snapshot
    from harness.qemu.machine import Machine
    from harness.qemu.qomfacts import STATIC_QUERIES
    from helpers import machine_spec
    spec = machine_spec(MACHINE)
    with Machine(spec) as usual:
        usual.start_firmware()
        read_static_facts(usual)
        usual.run_firmware()
        expected = snapshot(usual).to_dict()
    ahead = Machine(spec)
    try:
        ahead.launch(start_firmware=True, ask=STATIC_QUERIES)
        assert ahead.phase == "firmware"
        read_static_facts(ahead)   # answered from what QEMU said at its start
        ahead.run_firmware()
        got = snapshot(ahead).to_dict()
        asked_later = [json.loads(line)["cmd"]["execute"] for line in ahead.qmp_log_path.read_text().splitlines()
                       if "cmd" in json.loads(line) and "written" not in json.loads(line)["cmd"]]
    finally:
        ahead.close()
    assert "qom-list-types" not in asked_later and "cont" not in asked_later
    for layout in (expected, got):
        layout.pop("qemu_version", None)
    assert got == expected


def test_a_new_run_folder_has_its_tag_before_its_name(tmp_path, monkeypatch) -> None:
    """spawn.new_run_dir tags a staging folder whose name names the owner, then renames
    it: the folder never exists under its own name untagged, and nothing is left over."""
    from harness.qemu.owner import OWNER_FILE, Owner
    from harness.qemu.spawn import new_run_dir
    monkeypatch.setenv("HARNESS_RUN_DIR", str(tmp_path))
    folder = Path(new_run_dir("m"))
    assert Owner.parse((folder / OWNER_FILE).read_text()).is_me()
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]
    assert sorted(p.name for p in folder.iterdir()) == [OWNER_FILE]


def test_plans_ask_the_qom_questions_of_last_time_and_are_pruned(tmp_path, env, monkeypatch) -> None:
    from harness.qemu import launchplan
    machine = tmp_path / "m.yaml"
    machine.write_text(MACHINE)
    plan_files = []
    for run in range(3):
        done, run_dir = _layout(machine, env)
        assert done.returncode == 0, done.stderr
        plan_files.append(os.stat(_plans(env)[0]).st_ino)
        if run:
            # Later runs ask ahead what the first asked after its start: nothing QOM later
            # (the second and the third alike: the plan does not lose what it asked ahead).
            later = [json.loads(l)["cmd"]["execute"] for l in (run_dir / "qmp.log").read_text().splitlines()
                     if "cmd" in json.loads(l) and "written" not in json.loads(l)["cmd"]]
            assert not {"qom-get", "qom-list", "qom-list-types"} & set(later), (run, later)
    # The plan was written once; an unchanged plan is not written again, and it holds QOM reads only.
    assert plan_files[1] == plan_files[2], "an unchanged plan was rewritten"
    asked = json.loads(_plans(env)[0].read_text())["ask"]
    assert asked and all(command in ("qom-get", "qom-list", "qom-list-types") for command, _ in asked), asked
    # A plan's questions are only QOM reads: anything else in the file is dropped.
    assert launchplan._static_questions([["qom-get", {"path": "/machine", "property": "type"}],
                                         ["human-monitor-command", {"command-line": "quit"}],
                                         ["qom-get", {"path": ["x"]}], "junk"]) == \
        [("qom-get", {"path": "/machine", "property": "type"})]
    # Only the most recently used plans are kept.
    monkeypatch.setattr(launchplan, "MAX_PLANS", 3)
    plan, = _plans(env)
    for n in range(5):
        (plan.parent / f"old{n}.json").write_text("{}")
        os.utime(plan.parent / f"old{n}.json", (n, n))
    launchplan._prune(str(plan.parent))
    assert sorted(p.name for p in plan.parent.glob("*.json")) == sorted([plan.name, "old3.json", "old4.json"])


def test_which_finds_what_shutil_which_finds(tmp_path, monkeypatch) -> None:
    import shutil
    from harness.qemu.binary import which
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "tool").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "tool").chmod(0o755)
    (tmp_path / "bin" / "plain").write_text("")
    (tmp_path / "bin" / "dir").mkdir(mode=0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    for name in ("tool", "plain", "dir", "qemu-system-x86_64", "sh", "no-such-tool", str(tmp_path / "bin" / "tool"),
                 str(tmp_path / "bin"), "/usr/bin/env"):
        assert which(name) == shutil.which(name), name


def test_quit_soon_lets_qemu_go_while_the_caller_works_and_close_waits_for_it() -> None:
    from harness.qemu.machine import Machine
    from helpers import machine_spec
    machine = Machine(machine_spec(MACHINE))
    machine.launch(start_firmware=True)
    machine.run_firmware()
    pid = machine.pid
    machine.quit_soon()
    machine.quit_soon()  # once is enough: the second asks nothing
    quits = [l for l in machine.qmp_log_path.read_text().splitlines()
             if json.loads(l).get("cmd", {}).get("execute") == "quit"]
    machine.close()
    assert len(quits) == 1
    assert machine.exit_outcome == "exited after quit (status 0)"
    assert _gone(pid)


def test_qemu_from_a_plan_starts_before_the_heavy_imports(tmp_path, env) -> None:
    """What runs before a planned QEMU starts is on every command's critical path: the
    standard library's lighter half and the spawn path, not asyncio, qemu.qmp, typing,
    PyYAML or the NT model (they load while the firmware runs)."""
    machine = tmp_path / "m.yaml"
    machine.write_text(MACHINE)
    assert _layout(machine, env)[0].returncode == 0  # the plan
    code = ("import subprocess, sys\n"
            "real = subprocess.Popen.__init__\n"
            "def first(self, *a, **k):\n"
            "    if not hasattr(first, 'seen'):\n"
            "        first.seen = True\n"
            "        print('AT_SPAWN', ' '.join(sorted(sys.modules)), file=sys.stderr)\n"
            "    real(self, *a, **k)\n"
            "subprocess.Popen.__init__ = first\n"
            "from harness.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    done = subprocess.run([sys.executable, "-c", code, "layout", str(machine), "--json"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    line, = [l for l in done.stderr.splitlines() if l.startswith("AT_SPAWN")]
    loaded = set(line.split()[1:])
    assert "harness.qemu.spawn" in loaded
    heavy = {"asyncio", "qemu.qmp", "typing", "socket", "yaml", "dataclasses", "harness.config", "harness.nt",
             "harness.qemu.machine", "hashlib", "pickle", "tempfile", "zipfile", "importlib.resources", "shutil"}
    assert not heavy & loaded, heavy & loaded
    _no_qemu_left(env)


#: What neither machine command uses on a PIC machine with warm caches, so neither imports
#: it (each was 1-12 ms of CPU, issue 21): PyYAML (the parsed-document cache answers),
#: importlib.resources with zipfile (the package's own folder), tempfile, secrets and random
#: (file names from os.urandom), difflib (only for an error's suggestion), the APIC model
#: and the I/O APIC table reader.
UNUSED_BY_MACHINE_COMMANDS = {"yaml", "importlib.resources", "zipfile", "tempfile", "secrets", "random", "difflib",
                              "harness.nt.apic", "harness.qemu.pic"}


@pytest.mark.parametrize("command", [("layout", "--json"), ("run", "--no-picture")])
def test_a_warm_machine_command_imports_nothing_it_does_not_use(tmp_path, env, command) -> None:
    machine = tmp_path / "m.yaml"
    machine.write_text(MACHINE)
    code = ("import sys\nfrom harness.cli import main\nstatus = main(sys.argv[1:])\n"
            "print('AT_END', ' '.join(sorted(sys.modules)), file=sys.stderr)\nsys.exit(status)\n")
    for _ in range(2):  # the first run fills the caches and writes the plan
        done = subprocess.run([sys.executable, "-c", code, command[0], str(machine), command[1]], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    line, = [l for l in done.stderr.splitlines() if l.startswith("AT_END")]
    loaded = set(line.split()[1:])
    assert "harness.qemu.layout" in loaded and ("harness.job" in loaded) == (command[0] == "run")
    assert not UNUSED_BY_MACHINE_COMMANDS & loaded, UNUSED_BY_MACHINE_COMMANDS & loaded
    if command[0] == "layout":  # the layout needs no NT model beyond the bus protocol
        assert not {m for m in loaded if m.startswith("harness.nt.") and m != "harness.nt.busaccess"}
    _no_qemu_left(env)
