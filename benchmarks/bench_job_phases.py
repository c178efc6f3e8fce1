#!/usr/bin/env python3
"""Benchmark: where the main job's time goes after the firmware (issue 21).

    .venv/bin/python benchmarks/bench_job_phases.py [--rounds 7] [--config configs/machines/default.yaml]

Each round boots the machine (PIC HAL, paused after its firmware) in this process and does
what ``harness run`` does after the firmware: the post-firmware snapshot and the HAL's
view of it, detection, the board claimants, each configured driver in load order, the
post-driver snapshot, the claims' check (:func:`harness.job.collect`) and the report
files without picture.  For each phase it prints the median time, the QMP commands and
the qtest exchanges it made, and the HAL calls the drivers made that cost the most
(``HalAssignSlotResources``, ``READ_REGISTER_*``).  The boot and firmware are not timed.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "machines" / "default.yaml")
    args = parser.parse_args()
    import os
    print(f"load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    meters = [one_round(args.config) for _ in range(args.rounds + 1)][1:]  # a warm-up round
    print(f"medians of {len(meters)} rounds on {args.config.name} (PIC HAL):")
    print(f"  {'phase':48} {'ms':>7} {'QMP':>5} {'qtest':>6}")
    for name in meters[0].order:
        ms = statistics.median(m.times[name] for m in meters) * 1000
        qmp = statistics.median(m.qmp[name] for m in meters)
        qtest = statistics.median(m.qtest[name] for m in meters)
        print(f"  {name:48} {ms:7.1f} {qmp:5.0f} {qtest:6.0f}")
    print(f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
