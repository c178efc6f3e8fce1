#!/usr/bin/env python3
"""Benchmark: the monitor work QEMU does for a matrix cell, in QEMU's own CPU (issue 21).

    .venv/bin/python benchmarks/bench_cell_qemu.py [--rounds 15] [--cells 20] [--cell-rounds 3]
                                                   [--against /path/to/another/checkout]

QEMU's CPU is read from ``/proc/PID/task/*/schedstat`` (every thread, nanoseconds), so a
single monitor command's cost can be seen.  Two parts:

* **Questions** (this checkout), on the first cell's machine paused after SeaBIOS,
  interleaved ``--rounds`` times, medians: the QOM questions a snapshot needs asked the
  way they were (a ``qom-list`` per container, a ``qom-get type`` per memory-region owner
  outside them, a ``qom-get`` per anonymous i8259) against now (``info qom-tree``, one
  ``qom-get``); ``query-status``; and hardware detection with its acknowledging reads
  posted against one read per exchange (the same accesses in the same order).
* **Cells**: ``--cells`` cells of the shipped matrix (an even spread over its shards) run
  as a worker runs them (``run_cell``, ``--artifacts failures``), ``--cell-rounds`` times,
  each round in a fresh process; per cell, QEMU's CPU when the machine closes (its whole
  life: firmware and monitor work, its live threads; and what of it came after the
  firmware's end: the snapshot, detection, drivers), all children's CPU (``getrusage``:
  QEMU with its ended threads, the lifeline), the monitor commands QEMU was sent (those
  written before it started included) and the qtest exchanges.  With ``--against`` the rounds of another
  checkout (a worktree of the base with its ``_intervals`` and ``_lifeline`` built: without
  the compiled lifeline each QEMU process first runs the Python one, ~20 ms of CPU counted
  as QEMU's) interleave with this one's.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]


def qemu_cpu_ms(pid: int) -> float:
    """CPU milliseconds every live thread of process ``pid`` has used."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass  # a thread that ended meanwhile
    return total / 1e6


def questions(rounds: int) -> None:
    from harness.matrix import load_matrix, shard
    from harness.nt.detect import HardwareDetector
    from harness.qemu.layout import QomReader, _owning_device, parse_mtree_flat, parse_mtree_tree
    from harness.qemu.livebus import LiveBus
    from harness.qemu.machine import Machine
    from harness.qemu.qomfacts import QOM_CONTAINERS, QOM_TREE_QUERY, parse_qom_tree

    class OneAtATime:  # the bus without the posted reads
        def __init__(self, bus: Any) -> None:
            self._bus = bus

        def __getattr__(self, name: str) -> Any:
            if name == "post_reads":
                raise AttributeError(name)
            return getattr(self._bus, name)

    matrix = load_matrix(REPO / "configs" / "matrices" / "devices.yaml")
    cell = shard(matrix.cells, 1, 20)[0]
    with Machine(cell.spec) as m:
        m.run_firmware()
        objects = parse_qom_tree(m.qmp_many([QOM_TREE_QUERY])[0])
        assert objects is not None
        listed = {path for path, parent, _ in objects if parent in QOM_CONTAINERS}
        flat = parse_mtree_flat(m.hmp("info mtree -f -o"))
        tree = parse_mtree_tree(m.hmp("info mtree -o -D"))
        owners = sorted({_owning_device(r)[1] for view in (flat, tree) for regions in view.values()
                         for r in regions if r.owner_kind == "dev"} - listed)
        pics = [path for path, _, kind in objects if kind == "isa-i8259" and path not in owners]
        before = ([("qom-list", {"path": c}) for c in QOM_CONTAINERS]
                  + [("qom-get", {"path": p, "property": "type"}) for p in owners]
                  + [("qom-get", {"path": p, "property": "iobase"}) for p in pics])
        now = [QOM_TREE_QUERY, *[("qom-get", {"path": p, "property": "iobase"}) for p in pics[:-1]]]
        reader_asks = QomReader(m)
        reader_asks.isa_devices()
        sets: dict[str, Callable[[], Any]] = {
            f"QOM facts as asked before ({len(before)} commands)": lambda: m.qmp_many(before),
            f"QOM facts now ({len(now)} commands)": lambda: m.qmp_many(now),
            "query-status": lambda: m.qmp("query-status"),
            "detection, reads one per exchange": lambda: HardwareDetector(OneAtATime(LiveBus(m))).detect(),
            "detection, acknowledging reads posted": lambda: HardwareDetector(LiveBus(m)).detect(),
        }
        HardwareDetector(LiveBus(m)).detect()  # the keyboard's first IRQ edge: later ones alike
        spent: dict[str, list[float]] = {label: [] for label in sets}
        exchanges: dict[str, int] = {label: 0 for label in sets}
        for _ in range(rounds):
            for label, run in sets.items():
                q0, x0 = qemu_cpu_ms(m.pid), m.qtest.exchanges
                run()
                spent[label].append(qemu_cpu_ms(m.pid) - q0)
                exchanges[label] += m.qtest.exchanges - x0
    print(f"QEMU CPU per question set on a paused {cell.spec.machine} cell ({cell.id}), medians of {rounds} "
          f"interleaved rounds; load average {os.getloadavg()[0]:.2f}")
    for label, values in spent.items():
        print(f"  {label:45} {statistics.median(values):7.3f} ms   qtest exchanges {exchanges[label] / rounds:5.1f}")
    keys = list(spent)
    print(f"  QOM facts now / before: {statistics.median(spent[keys[1]]) / statistics.median(spent[keys[0]]):.2f}x; "
          f"detection posted / one per exchange: {statistics.median(spent[keys[4]]) / statistics.median(spent[keys[3]]):.2f}x")


def one_round(cells_wanted: int) -> dict[str, float]:
    """This process: per cell, QEMU's CPU at close, monitor commands, qtest exchanges."""
    from harness.matrix import load_matrix, run_cell, shard
    from harness.qemu.machine import Machine
    matrix = load_matrix(Path(sys.path[0]) / "configs" / "matrices" / "devices.yaml")
    cells = [shard(matrix.cells, i, cells_wanted)[0] for i in range(1, cells_wanted + 1)]
    seen: list[tuple[float, float, int, int]] = []
    firmware_end: dict[int, float] = {}
    real_close, real_firmware = Machine.close, Machine.run_firmware

    def run_firmware(self: Any, *args: Any, **kwargs: Any) -> float:
        seconds = real_firmware(self, *args, **kwargs)
        firmware_end[self.pid] = qemu_cpu_ms(self.pid)
        return seconds

    def close(self: Any) -> None:
        if self.pid is not None and self.returncode is None and not self._closed:
            now = qemu_cpu_ms(self.pid)
            seen.append((now, now - firmware_end.get(self.pid, now), len(self.commands),
                         self.qtest.exchanges if self.qtest else 0))
        real_close(self)
    Machine.close, Machine.run_firmware = close, run_firmware  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory(prefix="bench-cell-qemu-") as tmp:
        run_cell(cells[0], Path(tmp) / "warm", artifacts="failures")
        seen.clear()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        for i, cell in enumerate(cells):
            result = run_cell(cell, Path(tmp) / f"c{i}", artifacts="failures")
            if result.outcome not in ("pass", "xfail"):
                raise SystemExit(f"{cell.id}: {result.outcome}: {result.message}")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    waited = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    return {"children's CPU (ms)": 1000 * waited / len(cells),
            "QEMU CPU at close (ms)": statistics.mean(s[0] for s in seen),
            "of which after the firmware": statistics.mean(s[1] for s in seen),
            "monitor commands": statistics.mean(s[2] for s in seen),
            "qtest exchanges": statistics.mean(s[3] for s in seen), "machines": len(seen)}


def main() -> None:
    from bench_cell_cpu import add_round_options, interleaved_rounds, print_medians  # (this script's folder)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15, help="rounds of the question sets (0: none)")
    parser.add_argument("--cells", type=int, default=20)
    parser.add_argument("--cell-rounds", type=int, default=3, help="rounds of cells per side (0: none)")
    add_round_options(parser)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_round(args.cells)))
        return
    if args.rounds:
        questions(args.rounds)
    if not args.cell_rounds:
        return
    sides = {"this": REPO, **({"against": args.against.resolve()} if args.against else {})}
    load = os.getloadavg()[0]
    started = time.monotonic()
    rounds = interleaved_rounds(sides, args.cell_rounds, args.cells, Path(__file__))
    print(f"Per cell, medians of {args.cell_rounds} rounds of {args.cells} cells ({time.monotonic() - started:.0f} s); "
          f"load average {load:.2f} -> {os.getloadavg()[0]:.2f}")
    print_medians(rounds, ["children's CPU (ms)", "QEMU CPU at close (ms)", "of which after the firmware",
                           "monitor commands", "qtest exchanges"], width=28)


if __name__ == "__main__":
    from bench_cell_cpu import run_on_checkout
    run_on_checkout(main, REPO)
