#!/usr/bin/env python3
"""Benchmark: where a matrix run's CPU goes, with forked and with spawned workers (issue 21).

    .venv/bin/python benchmarks/bench_matrix_runner.py [--cells 20] [--jobs 2] [--rounds 3]

Each round runs ``harness.matrix.run_cells`` on ``--cells`` cells of the shipped matrix
(configs/matrices/devices.yaml, an even spread over its shards) at ``--jobs``, in a fresh
process that has loaded the matrix first (as ``harness matrix --run`` does), once with the
workers forked from it (what a runner without other threads does) and once with workers
started as fresh interpreters (what a runner with threads does), interleaved.  Every
cell's ``run_cell`` is timed inside its worker (``getrusage``: the worker's own CPU, and
its children's: the cell's QEMU and lifeline), so a run's CPU splits into

* the runner itself (for forked workers: importing what the cells need, once),
* the workers outside their cells (start-up, collection after the first cell, exit),
* the cells' Python: each worker's first cell apart, then the others,
* the cells' QEMU (and lifeline),

printed as medians per run and per cell, with the wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Installed in every worker: each run_cell's CPU, one JSON line per cell in $BENCH_CELLS.
TIMING = '''
import json as _json, os as _os, resource as _resource
import harness.matrix as _matrix
def _timed(real):
    def run_cell(*args, **kwargs):
        own, kids = _resource.getrusage(_resource.RUSAGE_SELF), _resource.getrusage(_resource.RUSAGE_CHILDREN)
        result = real(*args, **kwargs)
        own2, kids2 = _resource.getrusage(_resource.RUSAGE_SELF), _resource.getrusage(_resource.RUSAGE_CHILDREN)
        with open(_os.environ["BENCH_CELLS"], "a") as out:
            out.write(_json.dumps([_os.getpid(), own2.ru_utime + own2.ru_stime - own.ru_utime - own.ru_stime,
                                   kids2.ru_utime + kids2.ru_stime - kids.ru_utime - kids.ru_stime]) + "\\n")
        return result
    return run_cell
_matrix.run_cell = _timed(_matrix.run_cell)
'''

ROUND = '''
import json, os, resource, subprocess, sys, time
import harness.dataclass_cache
harness.dataclass_cache.install()  # as the command line does before any command
import harness.matrix as hm
count, jobs, out, workers, timing = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
matrix = hm.load_matrix(sys.argv[6])
cells = [hm.shard(matrix.cells, i, count)[0] for i in range(1, count + 1)]
if workers == "spawn":
    hm._can_fork = lambda: False
    def spawn(theirs):
        code = (f"import gc; gc.disable(); import harness.dataclass_cache as d; d.install(); "
                f"import harness.matrix as m; exec({timing!r}); "
                f"m._worker_main({theirs.fileno()}, {os.getpid()})")
        return subprocess.Popen([sys.executable, "-c", code], pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
    hm._spawn_worker = spawn
else:
    exec(timing)   # inherited by the forked workers
preloading = hm._preload
spent = {}
def preload():
    start = time.process_time()
    preloading()
    spent["preload"] = time.process_time() - start
hm._preload = preload
def cpu(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime
start, own, kids = time.perf_counter(), cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
results = hm.run_cells(cells, jobs, out, progress=None)
wall = time.perf_counter() - start
bad = [f"{r.cell_id}: {r.outcome}: {r.message}" for r in results if r.outcome not in ("pass", "xfail")]
print(json.dumps({"wall": wall, "runner": cpu(resource.RUSAGE_SELF) - own, "preload": spent.get("preload", 0.0),
                  "children": cpu(resource.RUSAGE_CHILDREN) - kids, "bad": bad}))
'''


def one_round(kind: str, cells: int, jobs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-matrix-runner-") as tmp:
        timings = Path(tmp) / "cells.jsonl"
        env = dict(os.environ, BENCH_CELLS=str(timings))
        env.pop("PYTHONDONTWRITEBYTECODE", None)   # as an installed harness runs
        done = subprocess.run([sys.executable, "-c", ROUND, str(cells), str(jobs), str(Path(tmp) / "out"), kind,
                               TIMING, str(REPO / "configs" / "matrices" / "devices.yaml")],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise SystemExit(f"the {kind} round failed:\n{done.stderr[-3000:]}")
        run = json.loads(done.stdout.strip().splitlines()[-1])
        if run["bad"]:
            raise SystemExit(f"{len(run['bad'])} cell(s) did not pass: {run['bad'][0]}")
        rows = [json.loads(line) for line in timings.read_text().splitlines()]
    seen: set[int] = set()
    first, rest = [], []
    for pid, python, _ in rows:
        (rest if pid in seen else first).append(python)
        seen.add(pid)
    qemu = sum(row[2] for row in rows)
    in_cells = sum(row[1] for row in rows) + qemu
    ms = 1000.0
    return {"wall (s)": run["wall"], "runner": run["runner"] * ms, "of which the preload": run["preload"] * ms,
            "workers outside their cells": (run["children"] - in_cells) * ms,
            "first cells' Python, each": statistics.median(first) * ms,
            "other cells' Python, each": statistics.median(rest) * ms if rest else 0.0,
            "cells' QEMU and lifeline, each": qemu / len(rows) * ms,
            "all, per cell": (run["runner"] + run["children"]) / len(rows) * ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    kinds = ("fork", "spawn")
    print("load average at start " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    rounds: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for _ in range(args.rounds):
        for kind in kinds:
            rounds[kind].append(one_round(kind, args.cells, args.jobs))
    print(f"{args.cells} cells at -j {args.jobs}, medians of {args.rounds} interleaved rounds (CPU in ms); "
          f"load average at end {os.getloadavg()[0]:.2f}")
    print(f"  {'':34} {'forked':>9} {'spawned':>9}  ratio")
    for label in rounds["fork"][0]:
        fork, spawn = (statistics.median(r[label] for r in rounds[k]) for k in kinds)
        print(f"  {label:34} {fork:9.2f} {spawn:9.2f}" + (f"  {fork / spawn:.2f}x" if spawn else ""))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
