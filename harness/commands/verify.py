"""``harness verify CONFIG``: reconcile the model, QEMU's decode and the guests' views."""

from __future__ import annotations

import argparse
import sys

from ..qemu.binary import require_qemu
from ..config import ACCEL_POLICIES, load_machine
from ..verify import GUEST_CHOICES, format_table, to_json, verify


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify", help="compare model, QEMU decode and guest views of a machine",
        description="Boot the machine of CONFIG, snapshot what QEMU decodes after the firmware, "
                    "run the chosen guest(s) on it, and print every modelled port range, IRQ, "
                    "DMA channel and PCI BAR as each view sees it.  Every difference is a "
                    "finding with an explanation class; the exit status is 1 when any is "
                    "unexplained.")
    parser.add_argument("config", help="machine YAML file (configs/machines/*.yaml, configs/conflicts/*.yaml)")
    parser.add_argument("--guest", choices=GUEST_CHOICES, default="probe",
                        help="which guest view(s) to collect (default: probe)")
    parser.add_argument("--registry", metavar="FILE",
                        help="a registry (SQLite) whose HARDWARE\\RESOURCEMAP claims are the model view")
    parser.add_argument("--json", action="store_true", help="print the reconciliation as JSON")
    parser.add_argument("--accel", choices=ACCEL_POLICIES, help="override the config's accelerator policy")
    parser.add_argument("--keep", action="store_true", help="keep the run folders (logs, reports)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_qemu()   # one line naming the binary, before any file is read
    spec = load_machine(args.config, accel=args.accel)
    if args.registry:
        from ..nt.registry import Registry
        with Registry(args.registry, create=False) as registry:
            rec = verify(spec, guest=args.guest, registry=registry, keep=args.keep)
    else:
        rec = verify(spec, guest=args.guest, keep=args.keep)
    sys.stdout.write(to_json(rec) + "\n" if args.json else format_table(rec))
    return 1 if rec.unexplained else 0
