#!/usr/bin/env python3
"""Benchmark: what stopping at SeaBIOS's last line saves over running its reboot (issue 21).

    .venv/bin/python benchmarks/bench_firmware_end.py [--rounds 15]

The harness ends a firmware run where SeaBIOS gives up booting ("No bootable device.
Retrying in 5 seconds.", :class:`harness.qemu.progress.FirmwareEnd`) instead of at the
reboot that follows (which it used to turn into a pause).  Before that reboot SeaBIOS copies
its pristine image back over its shadowed code (``qemu_prep_reset`` in SeaBIOS's
src/fw/shadow.c), and under TCG every write into translated code is slow.  For each machine
type, a bare QEMU process of a plain machine (``bench_overhead.bare_argv``) is run both
ways, interleaved, and its CPU (``RUSAGE_CHILDREN``: every thread, start to exit) compared:
exiting through the reboot (``reboot-timeout=0``, ``shutdown=poweroff``) against killed as
soon as its log shows the line.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_overhead import REPO, bare_cycle, interleave  # noqa: E402


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    from harness.config import parse_machine_text
    print(f"load average at start {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"QEMU CPU of one bare firmware run (ms), medians of {args.rounds} interleaved rounds")
    print(f"  {'machine':8} {'reboot':>8} {'at line':>8} {'saved':>8} {'ratio':>7}")
    for kind in ("pc", "q35", "isapc"):
        spec = parse_machine_text(f"machine: {kind}\n", f"<{kind}>")
        cpu: dict[str, list[float]] = {"reboot": [], "line": []}

        def measured(at_end_line: bool):
            def run() -> float:
                before = children_cpu()
                bare_cycle(spec, at_end_line=at_end_line)
                cpu["line" if at_end_line else "reboot"].append(children_cpu() - before)
                return 0.0
            return run
        interleave(args.rounds, {"reboot": measured(False), "line": measured(True)})
        # (interleave throws the warm-up round's value away; the CPU lists keep it: drop it)
        reboot, line = (1000 * statistics.median(cpu[k][1:]) for k in ("reboot", "line"))
        print(f"  {kind:8} {reboot:8.1f} {line:8.1f} {reboot - line:8.1f} {line / reboot:6.2f}x", flush=True)
    print(f"load average at end {' '.join(f'{v:.2f}' for v in os.getloadavg())}; repo {REPO}")


if __name__ == "__main__":
    main()
