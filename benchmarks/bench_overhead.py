#!/usr/bin/env python3
"""Benchmark: what the harness costs over QEMU itself, as ratios (``make bench-overhead``).

    .venv/bin/python benchmarks/bench_overhead.py [--rounds 9] [--only cli,layout,run,matrix,pytest]

The floor is a **bare QEMU process**: the machine's own command line
(:func:`harness.qemu.machine.build_argv`) minus the harness's channels and ``-S``, with
``-boot reboot-timeout=0 -action shutdown=poweroff`` so that SeaBIOS's "no bootable
device" reboot ends the process: start → firmware → exit, nothing else (each run's
firmware log is checked for that line).  The harness stops its machines at that line and
never runs the reboot (~40 ms of QEMU CPU under TCG), so the matrix is also compared
with bare processes killed at the line (an extra figure, not the issue's floor).  Every comparison runs its two sides interleaved, round after round, and
reports medians, so load from other processes moves both sides alike:

* ``cli``     ``harness --help`` against ``python -c pass`` (the same interpreter);
* ``layout``  ``harness layout configs/machines/default.yaml --json`` against the bare cycle;
* ``run``     ``harness run configs/machines/default.yaml --no-picture`` against the bare cycle;
* ``matrix``  ``harness.matrix.run_cells`` at ``--jobs`` on ``--cells`` cells spread over
  configs/matrices/devices.yaml, in a fresh process each round with the matrix loaded (as
  ``harness matrix --run``; worker start-up included), against the same cells' bare
  processes ``--jobs`` at a time: cells/s as a share of bare cycles/s
  (``--matrix-workers fork,spawn``: also with workers started as fresh interpreters);
* ``channels`` what the faster channels save (port reads over qtest against HMP, batched
  reads, QOM facts from ``info qtree`` against the per-device QOM walk);
* ``phases``  where one layout cycle's time goes, step by step, in fresh processes;
* ``pytest``  a generated file of 50 tests on one reused machine spec taking no fixture,
  50 taking ``machine`` and 50 taking ``testbed``; a conftest times each test's setup and
  teardown (where fixtures work; the call is the test's own work).  A fixture's cost per
  test is that time minus a fixture-less test's, the first test of each kind (the boot)
  reported apart.

The targets of issue 21 are printed next to each ratio.  PYTHONDONTWRITEBYTECODE is unset
for the processes measured (Python's default: compiled modules are kept, as an installed
harness has them).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_MACHINE = REPO / "configs" / "machines" / "default.yaml"
#: The installed console script, as a user runs it (``make setup`` installs it in the venv).
HARNESS = [str(Path(sys.executable).parent / "harness")]
FIRMWARE_END = b"No bootable device"
PYTEST_TESTS = 50


# ---------------------------------------------------------------------- the floor
def bare_argv(spec, run_dir: Path, *, reboot: bool = True) -> list[str]:
    """The machine's QEMU command line without -S and with shutdown=poweroff: the process
    runs SeaBIOS and exits at its reboot (``reboot``: with ``reboot-timeout=0``, at once;
    else with the harness's own reboot-timeout, seconds later, for a caller that stops it
    at the line before)."""
    from harness.qemu.accel import resolve_accel
    from harness.qemu.machine import build_argv, create_drive_images
    argv = build_argv(spec, run_dir, resolve_accel(spec.accel))
    create_drive_images(spec, run_dir)
    argv.remove("-S")
    if reboot:
        # SeaBIOS's reboot is how a process without a monitor ends at the firmware's end
        # (the harness stops its machines at the line before it, and never runs the reboot).
        argv[argv.index("-boot") + 1] = "reboot-timeout=0"
    action = argv.index("-action") + 1
    if argv[action] != "reboot=shutdown,shutdown=pause":
        raise SystemExit(f"unexpected -action {argv[action]!r}: update bench_overhead.bare_argv")
    argv[action] = "reboot=shutdown,shutdown=poweroff"
    return argv


def bare_cycle(spec, *, at_end_line: bool = False) -> float:
    """One bare QEMU process of ``spec``: start → SeaBIOS end → exit, its wall time.
    ``at_end_line``: killed as soon as its log shows the line where the harness stops its
    machines (SeaBIOS giving up booting), instead of exiting through SeaBIOS's reboot."""
    from harness.qemu.progress import END_LINE
    run_dir = Path(tempfile.mkdtemp(prefix="bare-", dir=os.environ.get("HARNESS_RUN_DIR")))
    try:
        argv = bare_argv(spec, run_dir, reboot=not at_end_line)
        log = run_dir / "firmware.log"
        start = time.perf_counter()
        if at_end_line:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            deadline, size = time.monotonic() + 120, 0
            try:
                while True:
                    grown = log.stat().st_size if log.exists() else 0
                    if grown != size and END_LINE in log.read_bytes():
                        break
                    size = grown
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"bare QEMU never showed {END_LINE!r} (status {proc.returncode})")
                    time.sleep(0.002)
            finally:
                proc.kill()
                proc.wait()
            return time.perf_counter() - start
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=120)
        seconds = time.perf_counter() - start
        if done.returncode != 0 or not log.is_file() or FIRMWARE_END not in log.read_bytes():
            raise SystemExit(f"bare QEMU did not end at the firmware's end (status {done.returncode}): "
                             f"{done.stderr.decode(errors='replace')[-500:]}")
        return seconds
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def timed(argv: list[str], *, cwd: Path = REPO, ok: tuple[int, ...] = (0,)) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=600)
    seconds = time.perf_counter() - start
    if done.returncode not in ok:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode(errors='replace')[-800:]}")
    return seconds


def interleave(rounds: int, sides: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Each side once per round, in turn; one warm-up round is thrown away."""
    out: dict[str, list[float]] = {name: [] for name in sides}
    for index in range(rounds + 1):
        for name, run in sides.items():
            value = run()
            if index:
                out[name].append(value)
    return out


def loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# ---------------------------------------------------------------------- the comparisons
class Report:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []

    def add(self, what: str, harness: str, bare: str, ratio: str, target: str, met: bool | None) -> None:
        """One row; ``met`` None for a figure without a target."""
        verdict = "" if met is None else f"{target} {'met' if met else 'NOT met'}"
        self.rows.append((what, harness, bare, ratio, verdict or "-"))
        print(f"  {what}: {harness} vs {bare} -> {ratio}" + (f" ({verdict})" if verdict else ""), flush=True)

    def table(self) -> str:
        head = ("comparison", "harness (median)", "floor (median)", "ratio", "target")
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


def bench_cli(report: Report, rounds: int) -> None:
    times = interleave(rounds * 2, {
        "python -c pass": lambda: timed([sys.executable, "-c", "pass"]),
        "harness --help": lambda: timed([*HARNESS, "--help"]),
    })
    bare, cli = statistics.median(times["python -c pass"]), statistics.median(times["harness --help"])
    report.add("`harness --help` / `python -c pass`", f"{cli * 1000:.0f} ms", f"{bare * 1000:.0f} ms",
               f"{cli / bare:.2f}x", "<= 5x", cli / bare <= 5)


def bench_machine_command(report: Report, rounds: int, label: str, argv: list[str], target: float,
                          ok: tuple[int, ...] = (0,)) -> None:
    from harness.config import load_machine
    spec = load_machine(DEFAULT_MACHINE)
    times = interleave(rounds, {"bare": lambda: bare_cycle(spec), "harness": lambda: timed(argv, ok=ok)})
    bare, cmd = statistics.median(times["bare"]), statistics.median(times["harness"])
    report.add(label, f"{cmd * 1000:.0f} ms", f"{bare * 1000:.0f} ms (bare QEMU cycle)",
               f"{cmd / bare:.2f}x", f"<= {target:g}x", cmd / bare <= target)


#: One matrix round in a fresh process, as ``harness matrix --run`` runs it: the matrix is
#: loaded first (the CLI does that before it runs anything), then ``run_cells`` is timed
#: with its CPU and that of every worker and QEMU.  A fresh process each round: a process
#: that ran a matrix before would fork its workers with the job already imported.
#: ``spawn``: workers as fresh interpreters (what a runner with other threads gets).
MATRIX_ROUND = """
import json, resource, sys, time
import harness.dataclass_cache
harness.dataclass_cache.install()  # as the command line does before any command
import harness.matrix as hm
count, jobs, out, workers = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
matrix = hm.load_matrix(sys.argv[5])
cells = [hm.shard(matrix.cells, i, count)[0] for i in range(1, count + 1)]
if workers == "spawn":
    hm._can_fork = lambda: False
def cpu():
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
start, used = time.perf_counter(), cpu()
results = hm.run_cells(cells, jobs, out, progress=None)
seconds = time.perf_counter() - start
bad = [f"{r.cell_id}: {r.outcome}: {r.message}" for r in results if r.outcome not in ("pass", "xfail")]
print(json.dumps({"rate": count / seconds, "cpu": (cpu() - used) / count, "bad": bad}))
"""


def bench_matrix(report: Report, rounds: int, cells_wanted: int, jobs: int, workers: list[str]) -> None:
    from harness.matrix import load_matrix, shard
    source = REPO / "configs" / "matrices" / "devices.yaml"
    matrix = load_matrix(source)
    count = min(cells_wanted, len(matrix.cells))
    cells = [shard(matrix.cells, i, count)[0] for i in range(1, count + 1)]
    out = Path(tempfile.mkdtemp(prefix="bench-overhead-matrix-"))
    cpu: dict[str, list[float]] = {"bare": [], "bare-at-end": [], **{w: [] for w in workers}}  # CPU per cell

    def all_cpu() -> float:
        """This process's CPU and that of its waited-for descendants (workers, QEMUs)."""
        import resource
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def bare(at_end_line: bool) -> Callable[[], float]:
        def run() -> float:
            start, used = time.perf_counter(), all_cpu()
            with ThreadPoolExecutor(jobs) as pool:
                list(pool.map(lambda spec: bare_cycle(spec, at_end_line=at_end_line), [c.spec for c in cells]))
            cpu["bare-at-end" if at_end_line else "bare"].append((all_cpu() - used) / count)
            return count / (time.perf_counter() - start)
        return run

    def harness(kind: str) -> Callable[[], float]:
        def run() -> float:
            shutil.rmtree(out, ignore_errors=True)
            done = subprocess.run([sys.executable, "-c", MATRIX_ROUND, str(count), str(jobs), str(out), kind,
                                   str(source)], cwd=REPO, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                raise SystemExit(f"the matrix round failed:\n{done.stderr[-3000:]}")
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            if figures["bad"]:
                raise SystemExit(f"{len(figures['bad'])} cell(s) did not pass: {figures['bad'][0]}")
            cpu[kind].append(figures["cpu"])
            return figures["rate"]
        return run

    try:
        rates = interleave(max(1, rounds // 3), {"bare": bare(False), "bare-at-end": bare(True),
                                                 **{w: harness(w) for w in workers}})
    finally:
        shutil.rmtree(out, ignore_errors=True)
    b = statistics.median(rates["bare"])
    for kind in workers:
        m = statistics.median(rates[kind])
        label = f"matrix, {count} cells at -j {jobs} (cells/s)" + ("" if kind == "fork" else f", {kind}ed workers")
        report.add(label, f"{m:.2f}/s", f"{b:.2f}/s (bare QEMU processes)", f"{100 * m / b:.0f} %", ">= 80 %",
                   m / b >= 0.8)
    # The harness stops a machine where SeaBIOS gives up booting and never runs its reboot,
    # which a bare process needs to exit: against bare processes stopped at that line too
    # (killed by this process when their log shows it), what the harness costs by itself.
    at_end = statistics.median(rates["bare-at-end"])
    for kind in workers:
        print(f"  against bare processes stopped at the harness's end (no reboot), {kind}ed workers: "
              f"{statistics.median(rates[kind]):.2f}/s vs {at_end:.2f}/s -> "
              f"{100 * statistics.median(rates[kind]) / at_end:.0f} %", flush=True)
    # Both sides are CPU-bound at -j 2 on 2 CPUs: the CPU ratio is the throughput ratio's
    # ceiling, and it moves less with the load (the warm-up round is in these too).
    bare_cpu, end_cpu = statistics.median(cpu["bare"]), statistics.median(cpu["bare-at-end"])
    for kind in workers:
        cell_cpu = statistics.median(cpu[kind])
        print(f"  CPU per cell (the run's processes, workers and QEMUs included), {kind}ed workers: "
              f"bare {1000 * bare_cpu:.0f} ms, matrix {1000 * cell_cpu:.0f} ms -> {100 * bare_cpu / cell_cpu:.0f} %; "
              f"bare stopped at the harness's end {1000 * end_cpu:.0f} ms -> {100 * end_cpu / cell_cpu:.0f} %",
              flush=True)


PYTEST_FILE = '''import pytest

pytestmark = pytest.mark.machine({config!r})

@pytest.mark.parametrize("n", range({count}))
def test_plain(n):
    assert n >= 0

@pytest.mark.parametrize("n", range({count}))
def test_machine(machine, n):
    assert machine.running

@pytest.mark.parametrize("n", range({count}))
def test_testbed(testbed, n):
    assert testbed.hal is not None
'''
#: Times every test's setup and teardown (where fixtures do their work) into timings.jsonl.
PYTEST_CONFTEST = '''import json, time
import pytest

_OUT = open("timings.jsonl", "a")

def _timed(phase):
    @pytest.hookimpl(hookwrapper=True)
    def hook(item, *args):
        start = time.perf_counter()
        yield
        _OUT.write(json.dumps([item.name, phase, time.perf_counter() - start]) + "\\n")
        _OUT.flush()
    return hook

pytest_runtest_setup = _timed("setup")
pytest_runtest_teardown = _timed("teardown")
pytest_runtest_call = _timed("call")
'''


def bench_pytest(report: Report, rounds: int) -> None:
    """One pytest session per round runs the three kinds of test; a test's fixture cost is
    its setup plus teardown time (the call is the test's own work), the first test of a
    kind (which boots the machine) left out, minus what a fixture-less test's setup and
    teardown cost (pytest's own)."""
    import json
    folder = Path(tempfile.mkdtemp(prefix="bench-overhead-pytest-"))
    try:
        (folder / "test_reuse.py").write_text(PYTEST_FILE.format(config=str(DEFAULT_MACHINE), count=PYTEST_TESTS))
        (folder / "conftest.py").write_text(PYTEST_CONFTEST)
        (folder / "pytest.ini").write_text("[pytest]\n")
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
                "-p", "no:xdist", "test_reuse.py"]
        sessions = [timed(argv, cwd=folder) for _ in range(max(1, rounds // 3))]
        cost: dict[tuple[str, str], list[float]] = {}  # (kind, phase) -> seconds, reused machine
        first: dict[str, list[float]] = {}  # kind -> setup of its first test (the boot)
        for line in (folder / "timings.jsonl").read_text().splitlines():
            name, phase, seconds = json.loads(line)
            kind, n = name.split("[")[0].removeprefix("test_"), int(name.split("[")[1].rstrip("]"))
            if phase == "call":
                continue
            if n == 0:
                first.setdefault(kind, []).append(seconds)
            else:
                cost.setdefault((kind, phase), []).append(seconds)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    def fixture_ms(kind: str) -> float:
        return 1000 * sum(statistics.median(cost[(kind, phase)]) for phase in ("setup", "teardown"))

    plain = fixture_ms("plain")
    for kind, target in (("machine", 20.0), ("testbed", 50.0)):
        ms = fixture_ms(kind) - plain
        report.add(f"`{kind}` fixture per test, {PYTEST_TESTS} tests on one reused spec",
                   f"{ms:.1f} ms/test", f"pytest's own setup+teardown {plain:.1f} ms/test",
                   f"{ms:.1f} ms/test", f"<= {target:.0f} ms", ms <= target)
    print(f"  pytest sessions of {3 * PYTEST_TESTS} tests: median {statistics.median(sessions):.1f} s; "
          f"first test of a kind (boots): " + ", ".join(f"{k} {1000 * statistics.median(v):.0f} ms"
                                                       for k, v in sorted(first.items())))


def bench_channels(report: Report, rounds: int) -> None:
    """What the faster channels save on one machine: a port read over qtest against HMP,
    one exchange of 16 reads against 16 exchanges, and the ISA devices' QOM facts from
    ``info qtree`` against the per-device QOM walk."""
    from harness.config import load_machine
    from harness.qemu.bus import HmpPorts, QtestPorts
    from harness.qemu.layout import QOM_CONTAINERS, QomReader
    from harness.qemu.machine import Machine
    reads = 200
    with Machine(load_machine(DEFAULT_MACHINE)) as machine:
        machine.run_firmware()
        qtest, hmp = QtestPorts(machine.qtest), HmpPorts(machine)

        def per_read(ports) -> Callable[[], float]:
            def run() -> float:
                start = time.perf_counter()
                for _ in range(reads):
                    ports.read_port(0x21)
                return (time.perf_counter() - start) / reads
            return run

        def batched() -> float:
            start = time.perf_counter()
            for _ in range(reads // 16):
                qtest.transfer([("in", 0x21, 1, None)] * 16)
            return (time.perf_counter() - start) / (reads // 16 * 16)

        def qom(fast: bool) -> Callable[[], float]:
            def run() -> float:
                machine.static_facts.clear()
                reader = QomReader(machine)
                start = time.perf_counter()
                if fast:
                    reader.isa_devices()
                else:
                    isa_types, *listings = machine.qmp_many(
                        [("qom-list-types", {"implements": "isa-device", "abstract": False})]
                        + [("qom-list", {"path": c}) for c in QOM_CONTAINERS])
                    reader._walk_isa_devices(reader._isa_in_containers({x["name"] for x in isa_types}, listings))
                return time.perf_counter() - start
            return run

        times = interleave(rounds, {"hmp": per_read(hmp), "qtest": per_read(qtest), "batched": batched,
                                    "walk": qom(False), "qtree": qom(True)})
    med = {k: statistics.median(v) for k, v in times.items()}
    report.add("port read, qtest / HMP `i`", f"{med['qtest'] * 1e6:.0f} us", f"{med['hmp'] * 1e6:.0f} us",
               f"{med['hmp'] / med['qtest']:.0f}x faster", "", None)
    report.add("port read in a 16-read qtest exchange", f"{med['batched'] * 1e6:.0f} us",
               f"{med['qtest'] * 1e6:.0f} us alone", f"{med['qtest'] / med['batched']:.1f}x faster",
               "", None)
    report.add("ISA devices' QOM facts, `info qtree` / QOM walk", f"{med['qtree'] * 1000:.1f} ms",
               f"{med['walk'] * 1000:.1f} ms", f"{med['walk'] / med['qtree']:.1f}x faster", "", None)


def layout_timeline(run_root: Path) -> tuple[float, list[tuple[str, float]]]:
    """One real ``harness layout default.yaml --json --keep`` in a fresh process, and when
    things happened in it, read from its kept qmp.log (every line is timestamped; QMP events
    carry QEMU's own clock): its wall time and ``(step, seconds since the previous step)``."""
    import json
    start = time.time()
    done = subprocess.run([*HARNESS, "layout", str(DEFAULT_MACHINE), "--json", "--keep"], cwd=REPO,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, HARNESS_RUN_DIR=str(run_root)))
    wall = time.time() - start
    if done.returncode:
        raise SystemExit(f"harness layout exited {done.returncode}: {done.stderr[-800:]}")
    kept = Path(next(l.split(": ", 1)[1] for l in done.stderr.splitlines() if l.startswith("run folder: ")))
    lines = [json.loads(l) for l in (kept / "qmp.log").read_text().splitlines()]
    shutil.rmtree(kept)

    def event(name: str) -> float:
        e = next(l["event"] for l in lines if l.get("event", {}).get("event") == name)
        return e["timestamp"]["seconds"] + e["timestamp"]["microseconds"] / 1e6
    attached = lines[0]["t"]                       # the harness logs its first line once attached
    # The harness stops the machine at SeaBIOS's last line ("stop"); without the log, its
    # reboot's SHUTDOWN is the end.
    ends = ("stop", "query-status")
    stopped = next((l["t"] for l in lines if l.get("cmd", {}).get("execute") == "stop"), None)
    fw_end = stopped if stopped is not None else event("SHUTDOWN")
    after = next(l["t"] for l in lines if "cmd" in l and "written" not in l["cmd"] and l["t"] >= fw_end
                 and l["cmd"].get("execute") not in ends)
    quit_at = next(l["t"] for l in lines if l.get("cmd", {}).get("execute") == "quit")
    gone = next(l["t"] for l in lines if "shutdown" in l)
    marks = [("QEMU's monitor ran cont (the plan's QEMU up)", event("RESUME")),
             ("Python attached (imports, machine file, catalog)", attached),
             ("firmware end (the harness's stop at SeaBIOS's last line)", fw_end),
             ("first question after the firmware", max(after, fw_end)),
             ("snapshot and output done, quit sent", quit_at),
             ("QEMU gone, run folder closed", gone),
             ("process exit", start + wall)]
    steps, previous = [], start
    for name, at in sorted(marks, key=lambda m: m[1]):
        steps.append((name, at - previous))
        previous = at
    return wall, steps


def bench_phases(report: Report, rounds: int) -> None:
    """Where a real layout cycle's time goes (medians over fresh processes), with the bare cycle."""
    from harness.config import load_machine
    spec = load_machine(DEFAULT_MACHINE)
    runs: list[list[tuple[str, float]]] = []
    root = Path(tempfile.mkdtemp(prefix="bench-tl-", dir="/tmp"))

    def timeline() -> float:
        wall, steps = layout_timeline(root)
        runs.append(steps)
        return wall

    try:
        times = interleave(rounds, {"bare": lambda: bare_cycle(spec), "layout": timeline})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    runs = runs[1:]  # the warm-up round (it also made the launch plan)
    print(f"  where a layout cycle goes (medians of {len(runs)} real runs; bare QEMU cycle "
          f"{1000 * statistics.median(times['bare']):.0f} ms), from the process's start:")
    names = [name for name, _ in runs[-1]]
    for index, name in enumerate(names):
        print(f"    {1000 * statistics.median(r[index][1] for r in runs if len(r) > index):7.1f} ms  {name}")
    print(f"    {1000 * statistics.median(times['layout']):7.1f} ms  in all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9, help="rounds per comparison (matrix and pytest: a third)")
    parser.add_argument("--only", default="cli,layout,run,matrix,pytest,phases,channels",
                        help="comparisons to run (phases: where a layout cycle's time goes)")
    parser.add_argument("--cells", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--matrix-workers", default="fork", choices=["fork", "spawn", "fork,spawn", "spawn,fork"],
                        help="matrix workers forked from the runner (what harness matrix does), fresh "
                             "interpreters (spawn), or both interleaved")
    args = parser.parse_args()
    chosen = set(args.only.split(","))
    # Python's default is to keep compiled modules (pip compiles them at install time too);
    # with PYTHONDONTWRITEBYTECODE every harness process would compile ~150 modules from
    # source, which no installed harness does.  The warm-up round writes them.
    if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
        sys.dont_write_bytecode = False
        print("PYTHONDONTWRITEBYTECODE was set: unset for the runs measured (Python's default)")
    print(f"{platform.node()}: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}; load average at start {loadavg()}", flush=True)
    report = Report()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-overhead-run-") as out:
        if "cli" in chosen:
            bench_cli(report, args.rounds)
        if "layout" in chosen:
            bench_machine_command(report, args.rounds, "`harness layout default.yaml --json` / bare cycle",
                                  [*HARNESS, "layout", str(DEFAULT_MACHINE), "--json"], 1.5)
        if "run" in chosen:
            bench_machine_command(report, args.rounds, "`harness run default.yaml --no-picture` / bare cycle",
                                  [*HARNESS, "run", str(DEFAULT_MACHINE), "--no-picture", "--out",
                                   str(Path(out) / "run")], 2.5)
    if "matrix" in chosen:
        bench_matrix(report, args.rounds, args.cells, args.jobs, args.matrix_workers.split(","))
    if "pytest" in chosen:
        bench_pytest(report, args.rounds)
    if "phases" in chosen:
        bench_phases(report, args.rounds)
    if "channels" in chosen:
        bench_channels(report, args.rounds)
    print(f"\nload average at end {loadavg()}; {time.monotonic() - started:.0f} s in all\n")
    print(report.table())


if __name__ == "__main__":
    main()
