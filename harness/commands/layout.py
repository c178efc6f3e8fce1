"""``harness layout CONFIG``: boot a machine and print what its hardware decodes."""

from __future__ import annotations

import argparse
import json
import sys

from ..qemu.binary import require_qemu
from ..config import ACCEL_POLICIES, load_machine
from ..qemu.actions import run_firmware_and_steps
from ..qemu.layout import diff, format_text, snapshot
from ..qemu.machine import Machine


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "layout", help="boot a machine and print its layout snapshot",
        description="Boot the machine of CONFIG (paused, firmware run to its end) and print the "
                    "PCI functions, PIRQ routing, ISA devices and the I/O and memory ranges QEMU "
                    "really decodes, with shadowed ranges.")
    parser.add_argument("config", help="machine YAML file (configs/machines/*.yaml)")
    parser.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    parser.add_argument("--phase", choices=("pre-firmware", "post-firmware", "both"),
                        default="post-firmware",
                        help="snapshot before the firmware runs, after it, or both with their diff")
    parser.add_argument("--accel", choices=ACCEL_POLICIES, help="override the config's accelerator policy")
    parser.add_argument("--keep", action="store_true", help="keep the run folder (logs, argv.sh)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_qemu()   # one line naming the binary, before any file is read
    spec = load_machine(args.config, accel=args.accel)
    with Machine(spec, keep=args.keep) as machine:
        layouts = []
        if args.phase in ("pre-firmware", "both"):
            layouts.append(snapshot(machine))
        if args.phase in ("post-firmware", "both"):
            # The machine file's post-firmware steps belong to that phase (a moved BAR).
            for record in run_firmware_and_steps(machine):
                print(f"step line {record.action.line}: {record.action.describe()}"
                      + (f" -> {record.read:#x}" if record.read is not None else "")
                      + (f" ! {record.problem}" if record.problem else ""), file=sys.stderr)
            layouts.append(snapshot(machine))
        if args.keep:
            print(f"run folder: {machine.run_dir}", file=sys.stderr)
    if args.json:
        payload = [lay.to_dict() for lay in layouts]
        print(json.dumps(payload if len(payload) > 1 else payload[0], indent=1, sort_keys=True))
        return 0
    for lay in layouts:
        sys.stdout.write(format_text(lay))
    if len(layouts) == 2:
        print("\nChanged by the firmware")
        for line in diff(*layouts):
            print("  " + line)
    return 0
