"""``harness reap``: end QEMU processes left behind by a harness process that died."""

from __future__ import annotations

import argparse

from ..qemu.machine import run_root
from ..qemu.reaper import reap_orphans, sweep_orphan_run_dirs, tagged_processes


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reap",
        description="Every QEMU the harness starts carries its owner's pid. This kills those "
                    "whose owner no longer runs (normally the parent-death signal already has).")
    parser.add_argument("--list", action="store_true", help="only list harness QEMUs and owners")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list:
        for proc in tagged_processes():
            print(f"pid {proc.pid} owner {proc.owner_pid} token {proc.token}")
        return 0
    killed = reap_orphans()
    print(f"killed {len(killed)} orphaned QEMU process(es)" + (f": {killed}" if killed else ""))
    swept = sweep_orphan_run_dirs(run_root())
    print(f"removed {len(swept)} run folder(s) of dead harness processes")
    return 0
