#!/usr/bin/env python3
"""Benchmark: what the post-drivers layout costs, fresh against reused, in CPU.

    .venv/bin/python benchmarks/bench_snapreuse.py [--rounds 40]

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
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.config import load_machine  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
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


if __name__ == "__main__":
    main()
