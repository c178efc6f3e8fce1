"""``harness layout CONFIG``: boot a machine and print what its hardware decodes."""

from __future__ import annotations

import argparse
import sys

from ..names import ACCEL_POLICIES
from ..qemu.binary import require_qemu


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "layout",
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
    from ..qemu import launchplan
    plan_options = {"accel": args.accel}
    # The post-firmware layout starts QEMU from the last run's plan before anything is
    # imported (launchplan.py); the machine file is still read and checked in full.
    early = (launchplan.start(args.config, "layout", plan_options, keep=args.keep)
             if args.phase == "post-firmware" else None)
    from ..cli import qemu_started
    qemu_started(args)
    try:
        from ..config import load_machine
        from ..qemu.machine import Machine
        spec = load_machine(args.config, accel=args.accel)
    except BaseException:
        if early is not None:
            early.discard()
        raise
    with Machine(spec, keep=args.keep, early=early) as machine:
        if args.phase == "post-firmware":
            machine.start_firmware()  # SeaBIOS runs while the layout code is imported
        from ..qemu.actions import run_firmware_and_steps
        from ..qemu.layout import read_static_facts, snapshot
        read_static_facts(machine)  # QOM, asked while the firmware runs
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
        machine.quit_soon()  # QEMU tears down while the plan and the output are written
        if args.phase == "post-firmware":
            # The plan for next time: this QEMU's command line and the QOM questions asked.
            launchplan.save(args.config, "layout", plan_options, machine)
        if args.keep:
            print(f"run folder: {machine.run_dir}", file=sys.stderr)
        text = _render(layouts, as_json=args.json)
    sys.stdout.write(text)
    return 0


def _render(layouts: list, *, as_json: bool) -> str:
    import json
    from ..qemu.layout import diff, format_text
    if as_json:
        payload = [lay.to_dict() for lay in layouts]
        return json.dumps(payload if len(payload) > 1 else payload[0], indent=1, sort_keys=True) + "\n"
    out = [format_text(lay) for lay in layouts]
    if len(layouts) == 2:
        out.append("\nChanged by the firmware\n")
        out += [f"  {line}\n" for line in diff(*layouts)]
    return "".join(out)
