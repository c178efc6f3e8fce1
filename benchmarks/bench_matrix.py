#!/usr/bin/env python3
"""Benchmark: matrix throughput against bare QEMU cycles, in the same run.

    .venv/bin/python benchmarks/bench_matrix.py [--cells 60] [--jobs 2] [--picture]
                                                [--artifacts failures|all] [--cpu]

Takes ``--cells`` cells of the shipped matrix (configs/matrices/devices.yaml, an even
spread over its shards) and runs them two ways, ``--jobs`` at a time:

* ``bare QEMU``: for each cell's machine, launch QEMU paused, run SeaBIOS to its end and
  quit (harness.qemu.machine.Machine, nothing else), in ``--jobs`` worker processes that
  have already imported everything (the floor: what QEMU itself costs);
* ``matrix``: ``harness.matrix.run_cells`` — the main job per cell (detection, drivers,
  claims against the hardware, report files), timed from the call, worker start-up
  included, as ``harness matrix FILE --run -j N`` pays it.

It prints cells per second for both, the ratio (target: the matrix at 80 % of bare QEMU
or better) and where a cell's time goes (the main job's own timings, averaged).

At ``-j 2`` on 2 CPUs both sides are CPU-bound, so what a cell costs is its CPU time.
``--cpu`` measures it one cell at a time in this process (interleaved, cell by cell):
a bare ``Machine`` cycle, ``run_cell`` as the matrix runs it (``--artifacts failures``:
a passing cell writes report.json alone) and ``run_cell`` writing every file
(``--artifacts all``), each split into this process's CPU (Python: the job, its
event-loop thread) and its children's (QEMU, the lifeline).
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.matrix import ARTIFACTS, load_matrix, run_cell, run_cells, shard  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _warm(_: object = None) -> None:
    import harness.qemu.machine  # noqa: F401


def bare_cycle(spec_dict: dict) -> float:
    """One launch → firmware → quit of the cell's machine; its wall time."""
    from harness.config import parse_machine_text
    from harness.qemu.machine import Machine
    spec = parse_machine_text(json.dumps(spec_dict), "<bench>")
    start = time.perf_counter()
    with Machine(spec) as machine:
        machine.run_firmware()
    return time.perf_counter() - start


def _cpu() -> tuple[float, float]:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def cpu_per_cell(cells: list) -> None:
    """Wall, Python CPU and children's CPU per cell, one cell at a time, three ways."""
    from harness.qemu.machine import Machine
    out = Path(tempfile.mkdtemp(prefix="bench-matrix-cpu-"))

    def bare(cell: object) -> None:
        with Machine(cell.spec) as machine:
            machine.run_firmware()

    def cell_run(artifacts: str) -> object:
        def run(cell: object) -> None:
            result = run_cell(cell, out / artifacts, artifacts=artifacts)
            if result.outcome not in ("pass", "xfail"):
                raise SystemExit(f"{cell.id}: {result.outcome}: {result.message}")
        return run

    ways = {"bare Machine cycle": bare, "cell, --artifacts failures": cell_run("failures"),
            "cell, --artifacts all": cell_run("all")}
    totals = {name: [0.0, 0.0, 0.0] for name in ways}
    try:
        cell_run("all")(cells[0])      # warm-up: imports, catalog, QEMU's own caches
        for cell in cells:
            for name, way in ways.items():
                wall, (own, children) = time.perf_counter(), _cpu()
                way(cell)
                after = _cpu()
                for i, value in enumerate((time.perf_counter() - wall, after[0] - own, after[1] - children)):
                    totals[name][i] += value
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print(f"\nCPU per cell, one cell at a time ({len(cells)} cells, interleaved):")
    print(f"{'':28} {'wall':>8} {'Python CPU':>11} {'children CPU':>13} {'all CPU':>9} {'vs bare':>8}")
    bare_cpu = sum(totals["bare Machine cycle"][1:])
    for name, (wall, own, children) in totals.items():
        n = len(cells)
        print(f"{name:28} {1000 * wall / n:6.0f} ms {1000 * own / n:8.1f} ms {1000 * children / n:10.1f} ms "
              f"{1000 * (own + children) / n:6.0f} ms {(own + children) / bare_cpu:7.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=60)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--picture", action="store_true", help="also draw each cell's picture")
    parser.add_argument("--artifacts", choices=ARTIFACTS, default="failures",
                        help="which cells keep every file of their job (default failures, as "
                             "harness matrix --run)")
    parser.add_argument("--cpu", action="store_true", help="also measure each cell's CPU, one at a time")
    args = parser.parse_args()

    matrix = load_matrix(REPO / "configs" / "matrices" / "devices.yaml")
    # Cells spread over the whole matrix: the first of each of --cells shards.
    count = min(args.cells, len(matrix.cells))
    cells = [shard(matrix.cells, i, count)[0] for i in range(1, count + 1)]
    specs = [c.spec.to_dict() for c in cells]

    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        list(pool.map(_warm, [None] * args.jobs))
        start = time.perf_counter()
        cycles = list(pool.map(bare_cycle, specs))
        bare_seconds = time.perf_counter() - start

    out = Path(tempfile.mkdtemp(prefix="bench-matrix-"))
    try:
        start = time.perf_counter()
        results = run_cells(cells, args.jobs, out, progress=None, picture=args.picture,
                            artifacts=args.artifacts)
        matrix_seconds = time.perf_counter() - start
        timings = [json.loads((r.out_dir / "report.json").read_text())["timings"] for r in results
                   if (r.out_dir / "report.json").is_file()]
    finally:
        shutil.rmtree(out, ignore_errors=True)
    bad = [r for r in results if r.outcome not in ("pass", "xfail")]
    if bad:
        raise SystemExit(f"{len(bad)} cell(s) did not pass: {bad[0].cell_id}: {bad[0].message}")

    bare_rate, matrix_rate = count / bare_seconds, count / matrix_seconds
    print(f"{count} cells of {matrix.source}, {args.jobs} at a time, --artifacts {args.artifacts}"
          + (", with pictures" if args.picture else ""))
    print(f"{'run':22} {'seconds':>8} {'cells/s':>8} {'per cell (wall, per job)':>25}")
    print(f"{'bare QEMU cycles':22} {bare_seconds:8.2f} {bare_rate:8.2f} {statistics.mean(cycles):21.3f} s")
    print(f"{'matrix (main job)':22} {matrix_seconds:8.2f} {matrix_rate:8.2f} "
          f"{statistics.mean(r.seconds for r in results):21.3f} s")
    print(f"ratio: matrix at {100 * matrix_rate / bare_rate:.0f} % of bare QEMU (target >= 80 %)")
    keys = sorted({k for t in timings for k in t})
    print("main job timings, mean per cell: "
          + ", ".join(f"{k} {100 * statistics.mean(t.get(k, 0.0) for t in timings):.0f} % of cells"
                      if k.endswith(" reused") else  # a 0/1 flag among the seconds
                      f"{k} {statistics.mean(t.get(k, 0.0) for t in timings):.3f} s" for k in keys))
    if args.cpu:
        cpu_per_cell(cells)


if __name__ == "__main__":
    main()
