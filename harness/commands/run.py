"""``harness run CONFIG``: the main job (see :mod:`harness.job`)."""

from __future__ import annotations

import argparse
import sys

from ..names import ACCEL_POLICIES, HAL_CHOICES
from ..qemu.binary import require_qemu


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        description="Boot the machine of CONFIG, run its firmware, detect its hardware into the "
                    "Description tree, load the configured NT drivers in order and print the "
                    "ResourceMap, the error log, claim-before-touch violations and every claim "
                    "compared with what QEMU decodes.  Exit status: 0 clean; 1 conflict (a refused "
                    "claim, a mismatch, a violation, a hardware collision, or an event that stopped "
                    "the firmware); 3 warnings only (legal but lossy, e.g. granted Shared claims on "
                    "an edge-triggered ISA line); 2 on a usage, input or setup error.")
    parser.add_argument("config", help="machine YAML file (configs/machines/*.yaml, configs/conflicts/*.yaml)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--out", help="folder for logs, registry, report and picture "
                                                 "(default: runs/<machine name>)")
    parser.add_argument("--no-picture", action="store_true", help="do not draw resourcemap.png")
    parser.add_argument("--accel", choices=ACCEL_POLICIES, help="override the config's accelerator policy")
    parser.add_argument("--hal", choices=HAL_CHOICES, default="auto",
                        help="the HAL: pic (the PC/AT 8259s, machine paused after its firmware), apic "
                             "(I/O APIC and local APIC, the probe guest's CPU takes the interrupts); "
                             "auto: apic on q35, pic elsewhere (default)")
    parser.add_argument("--reactos", action="store_true",
                        help="IoReportResourceUsage as ReactOS has it: every claim succeeds, nothing is "
                             "written to the ResourceMap, no conflict is logged (what a driver meets there)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_qemu()   # one line naming the binary, before any file is read
    from ..qemu import launchplan
    plan_options = {"accel": args.accel, "hal": args.hal}
    # The PIC HAL's machine is QEMU paused after its firmware: the last run's plan starts
    # it now, before anything heavy is imported (the APIC HAL's probe guest is booted by
    # the job, and has no plan).
    early = launchplan.start(args.config, "run", plan_options)
    from ..cli import qemu_started
    qemu_started(args)
    try:
        from ..config import hal_for, load_machine
        spec = load_machine(args.config, accel=args.accel)
        from ..qemu.machine import start_running
        machine = start_running(spec, early) if hal_for(spec, args.hal) == "pic" else None
    except BaseException:
        if early is not None:
            early.discard()
        raise
    if early is not None and machine is None:
        early.discard()
    try:
        import json
        from pathlib import Path
        from ..job import run_job
        out = Path(args.out) if args.out is not None else Path("runs") / spec.name
        result = run_job(spec, out, picture=not args.no_picture, hal=args.hal, reactos=args.reactos,
                         machine=machine)
        if machine is not None:  # the plan for next time: command line and QOM questions asked
            launchplan.save(args.config, "run", plan_options, machine)
    finally:
        if machine is not None:
            machine.close()
            import shutil
            shutil.rmtree(machine.run_dir, ignore_errors=True)  # the job copied its logs to OUT/qemu
    bundle = None
    if not result.clean:
        from ..repro import write_bundle  # (and PyYAML, to write it) only for a finding
        bundle = write_bundle(result, title=f"harness run {args.config}")
    if args.json:
        print(json.dumps(dict(result.to_dict(), bundle=str(bundle) if bundle else None), indent=1))
    else:
        sys.stdout.write(result.format_text())
        if bundle:
            print(f"Repro bundle: {bundle}  (harness repro {bundle})")
    return result.exit_code
