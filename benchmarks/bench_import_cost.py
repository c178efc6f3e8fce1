#!/usr/bin/env python3
"""Benchmark: what importing the harness costs a matrix worker and a CLI command (issue 21).

    .venv/bin/python benchmarks/bench_import_cost.py [--rounds 9] [--only worker,layout,run]
                                                     [--against /path/to/another/checkout]
                                                     [--importtime worker|layout|run]

Each round starts fresh processes (Python's default bytecode caching on, as an installed
harness has it) and reads their own CPU (``time.process_time``: the interpreter's start,
every import, the work; QEMU's CPU is not in it):

* ``worker``  what a matrix worker does for its first cell: ``import harness.matrix``,
  decode the cell from its wire form (``_cell_from_wire``), ``run_cell``; then the same
  cell again in the same process.  Reported: CPU at the end of the import, at the end of
  the first cell, and the first cell's extra over the second (what the worker's start-up
  costs that a warm worker does not pay);
* ``layout``  ``harness layout configs/machines/default.yaml --json``: CPU when QEMU is
  spawned (the first ``subprocess.Popen``) and at the command's exit, and its wall time;
* ``run``     ``harness run configs/machines/default.yaml --no-picture``: the same.

With ``--against`` the rounds of another checkout (e.g. a worktree of the base branch,
its ``_intervals`` extension built or copied) interleave with this one's, so load from
other processes falls on both alike; medians and ratios are printed.  ``--importtime``
prints ``python -X importtime``'s largest module self-times for one path instead.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MACHINE = "configs/machines/default.yaml"
CELL_ID = "pc-tcg-e1000"  # a PIC machine with a PCI NIC: what most of the matrix is

#: Runs in the measured process (cwd: the checkout measured).  argv: path, wire file, out folder.
_WORKER = """
import json, sys, time
from pathlib import Path
import harness.matrix as m
imported = time.process_time()
wire = json.load(open(sys.argv[1]))
out = Path(sys.argv[2])
first = m.run_cell(m._cell_from_wire(wire), out / "first")
done = time.process_time()
second = m.run_cell(m._cell_from_wire(wire), out / "second")
again = time.process_time()
if {first.outcome, second.outcome} - {"pass", "xfail"}:
    raise SystemExit(f"cell {first.cell_id}: {first.outcome} {first.message} / {second.outcome}")
print("FIGURES", json.dumps({"import": imported, "first cell": done, "start-up": (done - imported) - (again - done)}))
"""

#: The CLI with the first Popen (QEMU's spawn) and the quick exit timed.
_CLI = """
import os, subprocess, sys, time
figures = {}
real_init, real_exit = subprocess.Popen.__init__, os._exit
def spawn(self, *args, **kwargs):
    figures.setdefault("spawn", time.process_time())
    real_init(self, *args, **kwargs)
def leave(code):
    figures["exit"] = time.process_time()
    print("FIGURES", figures, file=sys.stderr, flush=True)
    real_exit(code)
subprocess.Popen.__init__, os._exit = spawn, leave
sys.argv[0] = "harness"
from harness.cli import entry
entry()
"""


def _env(repo: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(repo))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # compiled modules kept, as installed
    return env


def _figures(text: str) -> dict[str, float]:
    line, = [l for l in text.splitlines() if l.startswith("FIGURES")]
    raw = line.split(" ", 1)[1]
    values = json.loads(raw.replace("'", '"'))
    return {k: 1000 * v for k, v in values.items()}


def _cli_argv(path: str) -> list[str]:
    return ["run", MACHINE, "--no-picture"] if path == "run" else ["layout", MACHINE, "--json"]


def measure(repo: Path, path: str, wire: Path, *, importtime: bool = False) -> tuple[dict[str, float], str]:
    """One fresh process of ``path`` in ``repo``: its CPU figures (ms) and its stderr."""
    flags = ["-X", "importtime"] if importtime else []
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        if path == "worker":
            argv = [sys.executable, *flags, "-c", _WORKER, str(wire), tmp]
        else:
            argv = [sys.executable, *flags, "-c", _CLI, *_cli_argv(path)]
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=repo, env=_env(repo), capture_output=True, text=True, timeout=300)
        wall = time.perf_counter() - start
    ok = (0,) if path != "run" else (0, 1)
    if done.returncode not in ok:
        raise SystemExit(f"{path} in {repo} exited {done.returncode}: {done.stderr[-1500:]}")
    stream = done.stdout if path == "worker" else done.stderr
    figures = _figures(stream)
    if path != "worker":
        figures["wall"] = 1000 * wall  # the command's own time, start to exit (not CPU)
    return figures, done.stderr


def write_wire(repo: Path, folder: Path) -> Path:
    """The wire form of CELL_ID, as the matrix parent sends it (made by ``repo``'s code)."""
    code = ("import json, sys\nfrom harness.matrix import load_matrix, _cell_to_wire\n"
            "m = load_matrix('configs/matrices/devices.yaml')\n"
            f"cell, = [c for c in m.cells if c.id == {CELL_ID!r}]\n"
            "json.dump(_cell_to_wire(cell), open(sys.argv[1], 'w'))\n")
    wire = folder / f"wire-{abs(hash(str(repo)))}.json"
    subprocess.run([sys.executable, "-c", code, str(wire)], cwd=repo, env=_env(repo), check=True, timeout=120)
    return wire


def print_importtime(stderr: str, top: int = 30) -> None:
    rows = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "self" not in line:
            own, total, name = line[len("import time:"):].split("|")
            rows.append((int(own), int(total), name.rstrip()))
    print(f"  all imports' self time: {sum(r[0] for r in rows) / 1000:.1f} ms over {len(rows)} modules")
    for own, total, name in sorted(rows, reverse=True)[:top]:
        print(f"  {own / 1000:7.2f} ms self {total / 1000:7.2f} ms cumulative  {name.strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--only", default="worker,layout,run")
    parser.add_argument("--against", type=Path, help="another checkout to interleave rounds with")
    parser.add_argument("--importtime", choices=("worker", "layout", "run"))
    args = parser.parse_args()
    paths = args.only.split(",")
    if set(paths) - {"worker", "layout", "run"}:
        parser.error("--only takes worker, layout and run")
    sides = {"this": REPO, **({"against": args.against.resolve()} if args.against else {})}
    folder = Path(tempfile.mkdtemp(prefix="bench-import-wire-"))
    try:
        wires = {side: write_wire(repo, folder) for side, repo in sides.items()}
        if args.importtime:
            for side, repo in sides.items():
                measure(repo, args.importtime, wires[side])  # warm: plans, caches, bytecode
                print(f"{args.importtime} ({side}: {repo})")
                print_importtime(measure(repo, args.importtime, wires[side], importtime=True)[1])
            return
        print("load average at start " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
        runs: dict[tuple[str, str], list[dict[str, float]]] = {(s, p): [] for s in sides for p in paths}
        for index in range(args.rounds + 1):  # round 0 warms plans, caches and bytecode
            for path in paths:
                for side, repo in sides.items():
                    figures = measure(repo, path, wires[side])[0]
                    if index:
                        runs[side, path].append(figures)
        print(f"CPU of a fresh process (ms), medians of {args.rounds} interleaved rounds; "
              f"load average at end {os.getloadavg()[0]:.2f}")
        for path in paths:
            print(f"  {path}")
            for key in runs["this", path][0]:
                mine = statistics.median(r[key] for r in runs["this", path])
                line = f"    {key:12} {mine:8.1f}"
                if args.against:
                    theirs = statistics.median(r[key] for r in runs["against", path])
                    line += f"  against {theirs:8.1f}  {mine / theirs:.2f}x  ({mine - theirs:+.1f} ms)"
                print(line)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
