#!/usr/bin/env python3
"""Benchmark: read every PCI function's whole 256-byte configuration space.

    .venv/bin/python benchmarks/bench_hal_config.py [--repeat 3] [--machines default,q35]

For each machine (configs/machines/<name>.yaml, TCG, after SeaBIOS) it reads the full
configuration space of every function QEMU lists, four ways:

* ``naive``: 64 dword reads per function, each an HMP ``o /w 0xcf8`` and ``i /w 0xcfc``
  (harness.qemu.bus.HmpPorts, the mechanism a driver would use);
* ``livebus``: harness.qemu.livebus.LiveBus as the HAL uses it (query-pci for presence and
  the bytes it carries exactly, q35 ECAM through one ``xp /64wx`` per function, 0xCF8
  written only when it changes);
* ``livebus-no-ecam``: the same without ECAM (what pc gets);
* ``cached``: a second full pass over the same LiveBus (the per-phase cache).

It prints round trips, wall time (median of ``--repeat`` runs), and the time expressed in
bare round trips (QMP ``query-status``, the monitor's floor), and checks that every way
read the same bytes.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.config import load_machine  # noqa: E402
from harness.qemu.bus import HmpPorts  # noqa: E402
from harness.qemu.livebus import LiveBus  # noqa: E402
from harness.qemu.machine import Machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def bare_round_trip(m: Machine, count: int = 200) -> float:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        m.qmp("query-status")
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def naive(m: Machine, functions) -> tuple[int, dict]:
    ports = HmpPorts(m)
    data = {key: b"".join(ports.read_config(*key, off, 4).to_bytes(4, "little") for off in range(0, 256, 4))
            for key in functions}
    return ports.round_trips, data


def live(m: Machine, functions, **options) -> tuple[int, dict, LiveBus]:
    bus = LiveBus(m, **options)
    bus.functions()
    data = {key: bus.read_config(*key, 0, 256) for key in functions}
    return bus.round_trips, data, bus


def measure(fn, repeat: int):
    results, times = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        results.append(fn())
        times.append(time.perf_counter() - start)
    return results[-1], statistics.median(times)


def run(name: str, repeat: int) -> list[tuple]:
    spec = load_machine(REPO / "configs" / "machines" / f"{name}.yaml")
    rows = []
    with Machine(spec) as m:
        m.run_firmware()
        functions = LiveBus(m).functions()
        bare = bare_round_trip(m)
        (n_rt, n_data), n_time = measure(lambda: naive(m, functions), repeat)
        (l_rt, l_data, _), l_time = measure(lambda: live(m, functions), repeat)
        (e_rt, e_data, _), e_time = measure(lambda: live(m, functions, use_ecam=False), repeat)
        _, _, bus = live(m, functions)
        before = bus.round_trips
        start = time.perf_counter()
        c_data = {key: bus.read_config(*key, 0, 256) for key in functions}
        c_time = time.perf_counter() - start
        c_rt = bus.round_trips - before
        if not (n_data == l_data == e_data == c_data):
            raise SystemExit(f"{name}: the ways disagree about the bytes")
        for label, rt, t in (("naive", n_rt, n_time), ("livebus", l_rt, l_time),
                             ("livebus-no-ecam", e_rt, e_time), ("cached", c_rt, c_time)):
            rows.append((name, spec.machine, len(functions), label, rt, t, bare, n_time))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--machines", default="default,q35")
    args = parser.parse_args()
    rows = []
    for name in args.machines.split(","):
        rows += run(name, args.repeat)
    print(f"{'machine':10} {'type':5} {'fns':>3} {'method':16} {'round trips':>11} {'time ms':>9} "
          f"{'= bare RTs':>10} {'speed-up':>8}")
    for name, kind, fns, label, rt, t, bare, naive_time in rows:
        print(f"{name:10} {kind:5} {fns:3} {label:16} {rt:11} {t * 1000:9.1f} {t / bare:10.0f} "
              f"{naive_time / t if t else float('inf'):7.1f}x")
    bares = {(r[0]): r[6] for r in rows}
    print("bare round trip (QMP query-status, median): "
          + ", ".join(f"{k} {v * 1000:.2f} ms" for k, v in bares.items()))


if __name__ == "__main__":
    main()
