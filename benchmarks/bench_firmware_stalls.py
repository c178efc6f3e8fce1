#!/usr/bin/env python3
"""Measurement: how a firmware held up by a card ends, and how much a clean one moves.

    .venv/bin/python benchmarks/bench_firmware_stalls.py [--stops] [--clean] [--job]
    (make bench-firmware-stalls: all three; last figures in RESULTS-firmware-stalls.md)

``--stops`` (default: all three): for every port of tests/board_overlaps.py's
FIRMWARE_STOPS and fw_cfg's DMA port 0x518, per machine type, an isa-debugcon there; the
firmware runs under the progress watch (harness.qemu.progress) to its FirmwareStalled;
printed: SeaBIOS's last log line, whether the vCPU then spins (QEMU's CPU time over one
wall second) or halts (``info registers``: HLT, EFLAGS.IF), the watch's rule and when it
knew.
``--clean``: every machine of configs/ (and a bare pc, q35 and isapc), its firmware run
with no watch, sampled every 10 ms: log lines, QEMU CPU time, the largest QEMU CPU and
wall gaps between two log lines, and whether the watch would have cut it short (it
polls beside the sampler); the figures behind the watch's thresholds, with their ratio.
``--job``: the main job's wall time for a card on 0x510 on pc, with the watch and with
it off (the 30 s bound: what the harness did before the watch).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from board_overlaps import FIRMWARE_STOPS  # noqa: E402
from harness.config import load_machine, parse_machine_text  # noqa: E402
from harness.errors import HarnessError  # noqa: E402
from harness.qemu import progress  # noqa: E402
from harness.qemu.machine import FirmwareStalled, FirmwareTimeout, Machine  # noqa: E402
from harness.qemu.owner import cpu_seconds  # noqa: E402

FW_CFG_DMA = 0x518


def card(kind: str, port: int) -> str:
    return (f"name: stall-{kind}-{port:x}\nmachine: {kind}\n"
            f"devices:\n  - {{model: isa-debugcon, id: d, iobase: {port:#x}}}\n")


def stops() -> None:
    print("kind   port   rule   knew(s)  cpu/wall  HLT IF  last log line")
    for kind, ports in FIRMWARE_STOPS.items():
        for port in sorted(ports | {FW_CFG_DMA}):
            with Machine(parse_machine_text(card(kind, port), "<stops>")) as m:
                try:
                    m.run_firmware()
                    print(f"{kind:6} {port:#5x}  firmware finished")
                    continue
                except FirmwareStalled as exc:
                    stall = exc.stall
                except FirmwareTimeout:
                    print(f"{kind:6} {port:#5x}  bound reached, watch silent")
                    continue
                c0, t0 = cpu_seconds(m.pid), time.monotonic()
                time.sleep(1.0)
                rate = (cpu_seconds(m.pid) - c0) / (time.monotonic() - t0)
                halted, eflags = progress.vcpu_halt_state(m) or (False, 0)
                interrupts = eflags & progress.EFLAGS_IF
                print(f"{kind:6} {port:#5x}  {stall.rule:6} {stall.seconds:6.2f}  {rate:8.2f}  "
                      f"{int(halted):3} {int(bool(interrupts)):2}  {stall.last_line!r}")


def clean_machines() -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = [(f"bare {k}", parse_machine_text(f"machine: {k}\n", f"<bare {k}>"))
                                     for k in FIRMWARE_STOPS]
    for path in sorted((REPO / "configs").glob("*/*.yaml")):
        try:
            out.append((str(path.relative_to(REPO)), load_machine(path)))
        except HarnessError:
            continue  # not a machine file (matrices), or one meant to be refused
    return out


def trace(spec: object, bound: float = 30.0) -> dict[str, float] | None:
    """One firmware run sampled every 10 ms; None when it did not finish."""
    with Machine(spec) as m:
        m.start_firmware()
        start = time.monotonic()
        watch = progress.FirmwareWatch(m, start + bound)
        cpu0 = last_cpu = cpu_seconds(m.pid)
        last_wall, size, polled = start, -1, start
        gaps: list[tuple[float, float]] = []   # (QEMU CPU, wall) between two log lines
        fired = None
        while not m.events("SHUTDOWN"):
            now = time.monotonic()
            if now - start > bound or m.returncode is not None:
                return None
            cpu = cpu_seconds(m.pid)
            grown = m.firmware_log.stat().st_size if m.firmware_log.exists() else 0
            if grown != size:
                gaps.append((cpu - last_cpu, now - last_wall))
                size, last_cpu, last_wall = grown, cpu, now
            if now - polled >= progress.POLL_INTERVAL:
                polled = now
                fired = fired or watch.poll()
            time.sleep(0.01)
        end = time.monotonic()
        cpu = cpu_seconds(m.pid)
        gaps.append((cpu - last_cpu, end - last_wall))
        lines = m.firmware_log.read_bytes().count(b"\n") if m.firmware_log.exists() else 0
        # the CPU between two lines where SeaBIOS did not sit in a timed wait (under 1 s)
        work = max((c for c, w in gaps if w < 1.0), default=0.0)
        return {"wall": end - start, "cpu": cpu - cpu0, "lines": lines, "gap_cpu": max(c for c, _ in gaps),
                "gap_cpu_no_wait": work, "gap_wall": max(w for _, w in gaps), "fired": fired is not None}


def clean() -> None:
    rows = []
    unfinished = []
    for name, spec in clean_machines():
        try:
            row = trace(spec)
        except HarnessError as exc:
            print(f"  {name}: {str(exc).splitlines()[0]}")
            continue
        if row is None:
            unfinished.append(name)
            continue
        rows.append((name, row))
    print(f"{len(rows)} clean firmware runs ({len(unfinished)} machines whose firmware does not finish: "
          f"{', '.join(unfinished) or 'none'})")
    for key in ("wall", "cpu", "lines", "gap_cpu", "gap_cpu_no_wait", "gap_wall"):
        worst = max(rows, key=lambda r: r[1][key])
        print(f"  largest {key:15}: {worst[1][key]:8.3f}  ({worst[0]})")
    fired = [name for name, row in rows if row["fired"]]
    print(f"  the watch fired on {len(fired)} of them{': ' + ', '.join(fired) if fired else ''}")
    work = max(row["gap_cpu_no_wait"] for _, row in rows)
    silent = max(row["gap_wall"] for _, row in rows)
    print(f"  spin rule: {progress.SPIN_CPU['tcg']} s of QEMU CPU = {progress.SPIN_CPU['tcg'] / max(work, 0.01):.0f}x "
          f"the largest CPU gap outside a timed wait (CPU time tick 0.01 s); {progress.SILENT_WAIT} s since "
          f"the line = {progress.SILENT_WAIT / silent:.2f}x the longest silence (a timed wait)")


def job() -> None:
    from harness.job import run_job
    spec = parse_machine_text(card("pc", 0x510), "<job>")
    for label in ("watch on", "watch off (the bound)"):
        if label.startswith("watch off"):
            progress.FirmwareWatch.poll = lambda self: None  # type: ignore[method-assign]
        with tempfile.TemporaryDirectory() as folder:
            t = time.monotonic()
            result = run_job(spec, Path(folder) / "out", picture=False, all_files=lambda r: False, hal="pic")
            took = time.monotonic() - t
        print(f"  pc, card on 0x510, {label}: {took:.2f} s, events {[e.kind for e in result.events]}")
        if label == "watch on":
            first = took
    print(f"  ratio off/on: {took / first:.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--stops", "--clean", "--job"):
        parser.add_argument(flag, action="store_true")
    args = parser.parse_args()
    every = not (args.stops or args.clean or args.job)
    if args.stops or every:
        stops()
    if args.clean or every:
        clean()
    if args.job or every:
        job()


if __name__ == "__main__":
    main()
