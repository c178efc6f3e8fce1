#!/usr/bin/env python3
"""Benchmark: a matrix cell's Python CPU, by phase (issue 21, the matrix target).

    .venv/bin/python benchmarks/bench_cell_cpu.py [--cells 30] [--rounds 5]
                                                  [--against /path/to/another/checkout]

At ``-j 2`` on 2 CPUs the matrix is CPU-bound, so what a cell costs is its CPU.  A round
runs ``--cells`` cells of the shipped matrix (configs/matrices/devices.yaml, an even
spread over its shards) one after another with ``harness.matrix.run_cell`` as a matrix
worker does (``--artifacts failures``), in a fresh process after one warm-up cell, and
measures this process's CPU (``time.process_time``: the job and its event-loop thread;
QEMU's own CPU is not in it) per cell, in total and inside the NT-model phases: the
driver loads (``IoManager.load_driver``), hardware detection, the HAL's own claims, the
board's resolution, the claimant lines, the routed views, the claims' check and the
report files.  It then runs the same cells again with SQLite's statement trace on and
counts the registry's statements per cell (untimed).

With ``--against`` the rounds of another checkout (a worktree of the base branch, with its
``_intervals`` extension built) interleave with this one's, so load from other processes
falls on both alike; the medians and each phase's ratio are printed.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

#: (module, attribute path, label): the phases timed inside a cell.
PHASES = [
    ("harness.nt.iomgr", "IoManager.load_driver", "driver loads (IoManager.load_driver)"),
    ("harness.testbed", "detect_hardware", "detection (detect_hardware)"),
    ("harness.nt.iomgr", "IoManager.report_hal_resources", "HAL claims (report_hal_resources)"),
    ("harness.testbed", "resolve_board", "board (resolve_board)"),
    ("harness.testbed", "Testbed.claimants", "claimant lines (Testbed.claimants)"),
    ("harness.testbed", "routed_view", "routed views (routed_view)"),
    ("harness.job", "check_claims", "claims' check (check_claims)"),
    ("harness.job", "write_outputs", "report files (write_outputs)"),
]
TOTAL = "whole cell (run_cell)"
#: The part of TOTAL spent on the harness's event-loop thread (QMP: qemu.qmp and its asyncio).
LOOP = "of which the QMP event-loop thread"
STATEMENTS = "registry SQL statements"


def _wrap(module: str, path: str, label: str, spent: dict[str, float]) -> None:
    import importlib
    owner: Any = importlib.import_module(module)
    *parents, name = path.split(".")
    for part in parents:
        owner = getattr(owner, part)
    real = getattr(owner, name)
    depth = [0]

    @functools.wraps(real)
    def timed(*args: Any, **kwargs: Any) -> Any:
        depth[0] += 1
        start = time.process_time()
        try:
            return real(*args, **kwargs)
        finally:
            depth[0] -= 1
            if depth[0] == 0:  # (a phase calling itself counts once)
                spent[label] = spent.get(label, 0.0) + time.process_time() - start
    setattr(owner, name, timed)


def one_round(cells_wanted: int) -> dict[str, float]:
    """This process: CPU ms per cell by phase, then SQL statements per cell."""
    from harness.matrix import load_matrix, run_cell, shard
    from harness.nt import registry as registry_module
    matrix = load_matrix(Path(sys.path[0]) / "configs" / "matrices" / "devices.yaml")
    cells = [shard(matrix.cells, i, cells_wanted)[0] for i in range(1, cells_wanted + 1)]
    spent: dict[str, float] = {}
    for module, path, label in PHASES:
        _wrap(module, path, label, spent)
    with tempfile.TemporaryDirectory(prefix="bench-cell-cpu-") as tmp:
        out = Path(tmp)
        run_cell(cells[0], out / "warm", artifacts="failures")
        from harness.qemu import loop as harness_loop
        spent.clear()
        start, loop_start = time.process_time(), harness_loop.call_soon(time.thread_time)
        for i, cell in enumerate(cells):
            result = run_cell(cell, out / f"t{i}", artifacts="failures")
            if result.outcome not in ("pass", "xfail"):
                raise SystemExit(f"{cell.id}: {result.outcome}: {result.message}")
        spent[TOTAL] = time.process_time() - start
        spent[LOOP] = harness_loop.call_soon(time.thread_time) - loop_start
        figures = {label: 1000 * seconds / len(cells) for label, seconds in spent.items()}
        statements = [0]
        real_init = registry_module.Registry.__init__

        def tracing_init(self: Any, *args: Any, **kwargs: Any) -> None:
            real_init(self, *args, **kwargs)
            self._conn.set_trace_callback(lambda _sql: statements.__setitem__(0, statements[0] + 1))
        registry_module.Registry.__init__ = tracing_init
        for i, cell in enumerate(cells):
            run_cell(cell, out / f"s{i}", artifacts="failures")
        figures[STATEMENTS] = statements[0] / len(cells)
    return figures


def _subprocess_round(repo: Path, cells: int, script: Path = Path(__file__)) -> dict[str, float]:
    """One round of ``script`` (this benchmark, or one shaped like it: ``--repo``, ``--one``,
    ``--cells``, a JSON line out) on checkout ``repo``, in a fresh process."""
    env = dict(os.environ, PYTHONPATH=str(repo))
    # cwd = the checkout: the cell's worker code and data come from it, not this one
    answer = subprocess.run([sys.executable, str(script.resolve()), "--repo", str(repo),
                             "--one", "--cells", str(cells)], cwd=repo, env=env, check=True,
                            capture_output=True, text=True, timeout=900)
    return json.loads(answer.stdout.strip().splitlines()[-1])


def interleaved_rounds(sides: dict[str, Path], rounds: int, cells: int,
                       script: Path = Path(__file__)) -> dict[str, list[dict[str, float]]]:
    """``rounds`` rounds of each side (name -> checkout), one side after the other, so that
    load from other processes falls on both alike."""
    out: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    for _ in range(rounds):
        for side, repo in sides.items():
            out[side].append(_subprocess_round(repo, cells, script))
    return out


def add_round_options(parser: argparse.ArgumentParser) -> None:
    """The options of a benchmark run in interleaved rounds: ``--against`` a checkout, and
    the hidden ones of the round run in a fresh process (``--repo``, ``--one``)."""
    parser.add_argument("--against", type=Path, help="another checkout to interleave rounds with")
    parser.add_argument("--repo", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)


def print_medians(rounds: dict[str, list[dict[str, float]]], labels: list[str], width: int = 40) -> None:
    """Each label's median per side, with this side's ratio to the other's when there is one."""
    against = "against" in rounds
    print(f"  {'phase':{width}} {'this':>8}" + (f" {'against':>8}  ratio" if against else ""))
    for label in labels:
        mine = statistics.median(r.get(label, 0.0) for r in rounds["this"])
        line = f"  {label:{width}} {mine:8.2f}"
        if against:
            theirs = statistics.median(r.get(label, 0.0) for r in rounds["against"])
            line += f" {theirs:8.2f}  {mine / theirs:.2f}x" if theirs else f" {theirs:8.2f}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    add_round_options(parser)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_round(args.cells)))
        return
    sides = {"this": REPO, **({"against": args.against.resolve()} if args.against else {})}
    print("load average at start " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    rounds = interleaved_rounds(sides, args.rounds, args.cells)
    print(f"Python CPU per cell (ms; statements: count), medians of {args.rounds} rounds of "
          f"{args.cells} cells; load average at end {os.getloadavg()[0]:.2f}")
    print_medians(rounds, [TOTAL, LOOP, *(label for _, _, label in PHASES), STATEMENTS])


def run_on_checkout(main: Any, repo: Path = REPO) -> None:
    """Run a benchmark's ``main`` with the harness of ``--repo`` (a round in a fresh
    process) or else of ``repo`` first on the path."""
    sys.path.insert(0, sys.argv[sys.argv.index("--repo") + 1] if "--repo" in sys.argv else str(repo))
    main()


if __name__ == "__main__":
    run_on_checkout(main)
