"""``harness reap``: end QEMU processes and remove run folders a dead harness left behind."""

from __future__ import annotations

import argparse

from ..qemu.machine import run_root
from ..qemu.reaper import KEEP_GRACE, judge_processes, judge_run_root, reap_orphans, sweep_orphan_run_dirs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reap",
        description="Every QEMU the harness starts, and every run folder, carries a tag naming its "
                    "owner (pid and start time, uid, PID namespace). This kills the QEMUs of this "
                    "user and PID namespace whose owner no longer runs (normally the parent-death "
                    "signal already has) and removes their run folders; a folder marked keep goes "
                    f"{KEEP_GRACE / 3600:g} h after it was made. Processes that are not QEMUs, "
                    "belong to another user or namespace, or whose owner lives are left alone, "
                    "and listed with why.")
    parser.add_argument("--list", action="store_true", help="only list what would be done and why")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root = run_root()
    verdicts = judge_processes()
    remove, kept = judge_run_root(root)
    if args.list:
        for proc in verdicts.orphans:
            print(f"orphan  pid {proc.pid} owner {proc.owner_pid} ({proc.exe})")
        for path in remove:
            print(f"orphan  {path}")
    else:
        killed = reap_orphans(verdicts)
        print(f"killed {len(killed)} orphaned QEMU process(es)" + (f": {killed}" if killed else ""))
        swept = sweep_orphan_run_dirs(root)
        print(f"removed {len(swept)} run folder(s) and file(s) of dead harness processes")
    for proc, why in verdicts.skipped:
        print(f"skipped pid {proc.pid}: {why}")
    for path, why in kept:
        print(f"skipped {path}: {why}")
    return 0
