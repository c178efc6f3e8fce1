#!/usr/bin/env python3
"""Benchmark: where the main job's time goes after the firmware (issue 21).

    .venv/bin/python benchmarks/bench_job_phases.py [--rounds 7] [--config configs/machines/default.yaml]
                                                    [--against /path/to/another/checkout]

Each round boots the machine (PIC HAL, paused after its firmware) in this process and does
what ``harness run`` does after the firmware: the post-firmware snapshot and the HAL's
view of it, detection, the board claimants, each configured driver in load order, the
post-driver snapshot, the claims' check (:func:`harness.job.collect`) and the report
files without picture.  For each phase it prints the median time, the QMP commands and
the qtest exchanges it made, and the HAL calls the drivers made that cost the most
(``HalAssignSlotResources``, ``READ_REGISTER_*``).  The boot and firmware are not timed.
``--timeline`` times whole ``harness run`` processes instead (``python -m harness.cli`` of
each checkout), split at the timestamps of their qmp.log: up to QEMU's greeting, the
firmware, the wait for the harness, the job after the firmware, the exit.
Every round runs in a fresh interpreter with Python's default bytecode caching (the first
is a warm-up), so modules imported after the firmware count; with ``--against`` the
rounds of another checkout (a worktree of the base branch) interleave with these, so load
from other processes falls on both alike, and each phase's ratio is printed.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parents[1]
if "--repo" in sys.argv:  # a round of another checkout's harness (see --against)
    sys.path.insert(0, sys.argv[sys.argv.index("--repo") + 1])
else:
    sys.path.insert(0, str(REPO))


class Meter:
    """Time, QMP commands and qtest exchanges per named phase (nested phases count in
    both)."""

    def __init__(self, machine: Any) -> None:
        self.machine = machine
        self.times: dict[str, float] = defaultdict(float)
        self.qmp: dict[str, int] = defaultdict(int)
        self.qtest: dict[str, int] = defaultdict(int)
        self.order: list[str] = []
        self._qmp_count = 0
        real = machine.qmp

        def counting_qmp(*args: Any, **kwargs: Any) -> Any:
            self._qmp_count += 1
            return real(*args, **kwargs)
        machine.qmp = counting_qmp
        real_many = machine.qmp_many

        def counting_many(commands: Any, **kwargs: Any) -> Any:
            self._qmp_count += len(commands)
            return real_many(commands, **kwargs)
        machine.qmp_many = counting_many

    def _exchanges(self) -> int:
        return self.machine.qtest.exchanges if self.machine.qtest is not None else 0

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if name not in self.order:
            self.order.append(name)
        t, q, x = time.perf_counter(), self._qmp_count, self._exchanges()
        try:
            yield
        finally:
            self.times[name] += time.perf_counter() - t
            self.qmp[name] += self._qmp_count - q
            self.qtest[name] += self._exchanges() - x

    def wrap(self, owner: Any, attribute: str, name: Callable[..., str] | str) -> None:
        real = getattr(owner, attribute)

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.phase(name(*args, **kwargs) if callable(name) else name):
                return real(*args, **kwargs)
        setattr(owner, attribute, timed)


def one_round(config: Path) -> Meter:
    from harness import job as job_module
    from harness import testbed as testbed_module
    from harness.config import load_machine
    from harness.nt.hal import Hal
    from harness.nt.registry import Registry
    from harness.qemu.layout import read_static_facts
    from harness.qemu.machine import Machine
    from harness.qemu.livebus import LiveBus

    spec = load_machine(config)
    with tempfile.TemporaryDirectory(prefix="jobphases-") as tmp, Machine(spec) as machine:
        machine.start_firmware()
        read_static_facts(machine)
        job_module.run_firmware_and_steps(machine)
        meter = Meter(machine)
        patches: list[tuple[Any, str, Any]] = []

        def wrap(owner: Any, attribute: str, name: Any) -> None:
            patches.append((owner, attribute, getattr(owner, attribute)))
            meter.wrap(owner, attribute, name)
        wrap(testbed_module, "snapshot", lambda m, phase="post-firmware", **_: f"snapshot {phase}")
        wrap(testbed_module, "routed_view", "routed_view")
        wrap(testbed_module, "detect_hardware", "detection")
        wrap(testbed_module, "resolve_board", "resolve_board")
        wrap(testbed_module.Testbed, "load_driver",
             lambda self, name, *a, **k: f"driver {name}" if a and a[0] != () else f"driver {name} (board)")
        wrap(Hal, "HalAssignSlotResources", "  HalAssignSlotResources (in drivers)")
        wrap(Hal, "_register_read", "  READ_REGISTER_* (in drivers)")
        wrap(LiveBus, "decoded_ranges", "  LiveBus.decoded_ranges (in drivers)")
        wrap(job_module, "check_claims", "check_claims")
        wrap(job_module, "write_outputs", "report files")
        try:
            registry = Registry(Path(tmp) / "registry.sqlite", sync="never")
            try:
                with meter.phase("total after the firmware"):
                    with meter.phase("Testbed (snapshot, detection, board)"):
                        bed = testbed_module.Testbed(machine, registry)
                    with meter.phase("drivers in load order"):
                        bed.run(testbed_module.load_steps(spec))
                    with meter.phase("collect (post-driver snapshot, checks)"):
                        result = job_module.collect(bed, Path(tmp))
                    job_module.write_outputs(result, bed.io, picture=False, registry=registry)
            finally:
                registry.close()
        finally:
            for owner, attribute, real in reversed(patches):
                setattr(owner, attribute, real)
    return meter


def _subprocess_round(repo: Path, config: Path) -> dict[str, Any]:
    """One round in a fresh interpreter importing ``repo``'s harness (its meter as JSON)."""
    import json
    import os
    import subprocess
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # Python's default
    done = subprocess.run([sys.executable, __file__, "--one-round", "--repo", str(repo), "--config", str(config)],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.splitlines()[-1])


#: The stretches of one ``harness run`` process, split at what its qmp.log records.
TIMELINE = ("start -> QMP greeting", "greeting -> firmware's end (STOP)", "firmware's end -> first question after it",
            "the job after the firmware (-> last monitor line)", "last monitor line -> process exit", "in all")


def _timeline_round(repo: Path, config: Path, out: Path) -> list[float]:
    """One ``harness run CONFIG --no-picture`` of ``repo`` (``python -m harness.cli`` with
    the checkout first on the path: an exported tree needs no installation), split by the
    timestamps of its qmp.log: QMP greeting, the firmware's STOP, the first question after
    it, the last line (QEMU's shutdown)."""
    import json
    import os
    import subprocess
    import time as clock
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(repo)
    start = clock.time()
    subprocess.run([sys.executable, "-m", "harness.cli", "run", str(config), "--no-picture", "--out", str(out)],
                   cwd=repo, env=env, stdout=subprocess.DEVNULL, check=True, timeout=300)
    end = clock.time()
    rows = [json.loads(line) for line in (out / "qemu" / "qmp.log").read_text().splitlines()]
    greeting = rows[0]["t"]
    stop = next(r["t"] for r in rows if r.get("event", {}).get("event") == "STOP")
    asked = next(r["t"] for r in rows if r["t"] >= stop and "cmd" in r)
    last = rows[-1]["t"]
    return [greeting - start, stop - greeting, asked - stop, last - asked, end - last, end - start]


def timeline(rounds: int, config: Path, sides: dict[str, Path]) -> None:
    """Whole ``harness run`` processes of each checkout, interleaved, split by qmp.log."""
    runs: dict[str, list[list[float]]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory(prefix="jobtimeline-") as tmp:
        for index in range(rounds + 1):
            for name, repo in sides.items():
                split = _timeline_round(repo, config, Path(tmp) / name)
                if index:
                    runs[name].append(split)
    print(f"whole `harness run {config.name} --no-picture` processes, medians of {rounds} interleaved rounds (ms):")
    print(f"  {'stretch':52} " + " ".join(f"{name:>9}" for name in sides))
    for column, label in enumerate(TIMELINE):
        print(f"  {label:52} " + " ".join(f"{1000 * statistics.median(r[column] for r in runs[name]):9.0f}"
                                           for name in sides))


def main() -> None:
    import json
    import os
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "machines" / "default.yaml")
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout whose harness is measured")
    parser.add_argument("--against", type=Path,
                        help="another checkout (e.g. a worktree of main): its rounds interleave with these, "
                             "each in a fresh interpreter, and the ratios are printed")
    parser.add_argument("--timeline", action="store_true",
                        help="time whole `harness run` processes instead (`python -m harness.cli` of each "
                             "checkout), split at what their qmp.log records")
    parser.add_argument("--one-round", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_round:
        meter = one_round(args.config)
        print(json.dumps({"order": meter.order, "times": meter.times, "qmp": meter.qmp, "qtest": meter.qtest}))
        return
    print(f"load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    sides = {"this": args.repo.resolve()}
    if args.against is not None:
        sides["against"] = args.against.resolve()
    if args.timeline:
        timeline(args.rounds, args.config.resolve(), sides)
        print(f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    for index in range(args.rounds + 1):  # a warm-up round, thrown away
        for name, repo in sides.items():
            result = _subprocess_round(repo, args.config)
            if index:
                runs[name].append(result)
    order = list(dict.fromkeys(n for r in runs.values() for n in r[0]["order"]))
    print(f"medians of {args.rounds} rounds on {args.config.name} (PIC HAL), each round a fresh process:")
    head = f"  {'phase':48} " + " ".join(f"{name + ' ms':>11} {'QMP':>4} {'qtest':>5}" for name in sides)
    print(head + ("  ratio" if len(sides) == 2 else ""))
    for phase in order:
        cells, ms = [], []
        for name in sides:
            got = [r for r in runs[name] if phase in r["times"]]
            if not got:
                cells.append(f"{'-':>11} {'-':>4} {'-':>5}")
                ms.append(None)
                continue
            ms.append(statistics.median(r["times"][phase] for r in got) * 1000)
            cells.append(f"{ms[-1]:11.1f} {statistics.median(r['qmp'][phase] for r in got):4.0f} "
                         f"{statistics.median(r['qtest'][phase] for r in got):5.0f}")
        ratio = f"  {ms[0] / ms[1]:.2f}x" if len(ms) == 2 and ms[0] is not None and ms[1] else ""
        print(f"  {phase:48} " + " ".join(cells) + ratio)
    print(f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
