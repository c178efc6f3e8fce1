#!/usr/bin/env python3
"""Benchmark: what the post-drivers layout costs, fresh against reused, in CPU.

    .venv/bin/python benchmarks/bench_snapreuse.py [--rounds 40] [--cells 20] [--cell-rounds 4]

On each shipped machine file (the PIC HAL's path: a paused machine after SeaBIOS), a
LiveBus adopts a post-firmware snapshot as the main job's test bed does; then, interleaved
``--rounds`` times:

* ``fresh``: ``layout.snapshot`` (``info mtree -f -o``, ``info mtree -o -D``, query-pci,
  the register transfer, parsing, shadowing);
* ``reused``: ``LiveBus.layout_unchanged`` (read-back of nothing written, the qmp.log
  tail) and ``LiveBus.refresh`` (the register transfer alone).

Each is split into this process's CPU (Python, the event-loop thread included: median
per layout) and the QEMU process's own (``/proc/PID/stat`` utime + stime, counted in
clock ticks: the mean over the rounds); it prints the ratio reused / fresh and checks
the two layouts are equal (but for the phase).

Then what it means for a matrix cell: ``--cells`` cells of the shipped matrix (an even
spread over its shards), each run as the matrix runs it (``run_cell``, ``--artifacts
failures``) with the post-drivers layout fresh (``collect(fresh_layout=True)``, as before
the reuse) and reused, interleaved cell by cell in this process, ``--cell-rounds`` times;
mean CPU per cell, this process's and its children's (QEMU).
"""
from __future__ import annotations

import argparse
import functools
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import harness.job as job  # noqa: E402
from harness.config import load_machine  # noqa: E402
from harness.matrix import load_matrix, run_cell, shard  # noqa: E402
from harness.qemu.layout import snapshot  # noqa: E402
from harness.qemu.livebus import LiveBus  # noqa: E402
from harness.qemu.machine import Machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def qemu_cpu(pid: int) -> float:
    """Seconds of CPU the QEMU process has used (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def measure(fn, pid: int) -> tuple[float, float]:
    q0, p0 = qemu_cpu(pid), time.process_time()
    fn()
    return time.process_time() - p0, qemu_cpu(pid) - q0


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cells_fresh_and_reused(count: int, rounds: int) -> None:
    matrix = load_matrix(REPO / "configs" / "matrices" / "devices.yaml")
    cells = [shard(matrix.cells, i, count)[0] for i in range(1, count + 1)]
    out = Path(tempfile.mkdtemp(prefix="bench-snapreuse-"))
    real = job.collect
    cpu: dict[str, tuple[list[float], list[float]]] = {"fresh": ([], []), "reused": ([], [])}
    try:
        run_cell(cells[0], out / "warm", artifacts="failures")
        for index, cell in enumerate(cell for _ in range(rounds) for cell in cells):
            for mode in (("fresh", "reused") if index % 2 else ("reused", "fresh")):
                job.collect = functools.partial(real, fresh_layout=mode == "fresh")
                py, qemu = time.process_time(), children_cpu()
                run_cell(cell, out / f"{mode}-{index}", artifacts="failures")
                cpu[mode][0].append(time.process_time() - py)
                cpu[mode][1].append(children_cpu() - qemu)
    finally:
        job.collect = real
        shutil.rmtree(out, ignore_errors=True)
    print(f"\n{count} matrix cells x {rounds}, fresh and reused interleaved; CPU per cell (mean), "
          f"load average {os.getloadavg()[0]:.2f}")
    mean = {mode: (statistics.mean(py) * 1000, statistics.mean(qemu) * 1000) for mode, (py, qemu) in cpu.items()}
    for mode, (py, qemu) in mean.items():
        print(f"  {mode:7} Python {py:6.2f} ms  QEMU {qemu:6.2f} ms  all {py + qemu:6.2f} ms")
    (fp, fq), (rp, rq) = mean["fresh"], mean["reused"]
    print(f"  saved   Python {fp - rp:6.2f} ms  QEMU {fq - rq:6.2f} ms  all {fp + fq - rp - rq:6.2f} ms"
          f"  (reused / fresh: {(rp + rq) / (fp + fq):.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--cells", type=int, default=20, help="matrix cells (0: none)")
    parser.add_argument("--cell-rounds", type=int, default=4)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}, {args.rounds} rounds per machine; CPU per layout")
    print(f"{'machine':10} {'fresh py':>9} {'fresh qemu':>11} {'reused py':>10} {'reused qemu':>12} "
          f"{'py ratio':>9} {'all ratio':>10}")
    for path in sorted((REPO / "configs" / "machines").glob("*.yaml")):
        with Machine(load_machine(path)) as machine:
            machine.run_firmware()
            bus = LiveBus(machine)
            kept = snapshot(machine, "post-firmware", monitor_reads_to=bus.adopt)
            fresh: list[tuple[float, float]] = []
            reused: list[tuple[float, float]] = []
            for _ in range(args.rounds):
                fresh.append(measure(lambda: snapshot(machine, "post-drivers"), machine.pid))
                # The fresh snapshot's 0xCF8 writes are not the bus's: adopt again.
                kept = snapshot(machine, "post-firmware", monitor_reads_to=bus.adopt)
                reused.append(measure(lambda: (bus.layout_unchanged(), bus.refresh(kept, "post-drivers")), machine.pid))
            assert bus.layout_unchanged() is None
            again = bus.refresh(kept, "post-drivers")
            assert again.to_dict() == snapshot(machine, "post-drivers").to_dict()
        fp, rp = (statistics.median(py for py, _ in runs) * 1000 for runs in (fresh, reused))
        fq, rq = (statistics.mean(q for _, q in runs) * 1000 for runs in (fresh, reused))
        print(f"{path.stem:10} {fp:7.2f}ms {fq:9.2f}ms {rp:8.2f}ms {rq:10.2f}ms "
              f"{rp / fp:9.3f} {(rp + rq) / (fp + fq):10.3f}")
    if args.cells:
        cells_fresh_and_reused(args.cells, args.cell_rounds)


if __name__ == "__main__":
    main()
