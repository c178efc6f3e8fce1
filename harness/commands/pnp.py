"""``harness pnp CONFIG``: PnP resource assignment for a machine, optionally applied."""

from __future__ import annotations

import argparse
import math
import sys

from ..qemu.binary import require_qemu
from ..config import ACCEL_POLICIES, load_machine
from ..errors import COMMAND_LINE, ConfigError, HarnessError
from ..nt.pnp import DEFAULT_NODE_BUDGET, DEFAULT_TIMEOUT, PnpSearchLimit


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pnp",
        description="Boot the machine of CONFIG, build its device tree (PCI functions from the bus, "
                    "ISA devices from their device models' settings, what detection finds), give each "
                    "device node its logical configurations and search for a conflict-free assignment "
                    "(forced, boot, then the requirement lists by LCPRI).  Prints the assignment, the "
                    "ISA settings that must change, and SeaBIOS's BARs against the assignment; when no "
                    "assignment exists, the smallest set of devices that cannot be satisfied together.  "
                    "--apply makes it so on a live machine (relaunching QEMU for ISA changes, programming "
                    "BARs through the HAL) and reconciles.  Exit 1 when impossible or not proved.")
    parser.add_argument("config", help="machine YAML file")
    parser.add_argument("--apply", action="store_true", help="apply the assignment on a live machine and reconcile")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--budget", type=int, default=DEFAULT_NODE_BUDGET,
                        help=f"search node budget (default {DEFAULT_NODE_BUDGET})")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"search time limit in seconds (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--accel", choices=ACCEL_POLICIES, help="override the config's accelerator policy")
    parser.add_argument("--keep", action="store_true", help="keep QEMU's run folders")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..pnp_live import report_json, run_pnp
    if args.budget < 1:
        raise ConfigError(f"must be at least 1, not {args.budget}", source=COMMAND_LINE, field="--budget")
    if not 0 < args.timeout < math.inf:   # also refuses nan, which every comparison passes over
        raise ConfigError(f"must be a positive number of seconds, not {args.timeout:g}",
                          source=COMMAND_LINE, field="--timeout")
    spec = load_machine(args.config, accel=args.accel)
    require_qemu()   # one line naming the binary (the SeaBIOS comparison boots the machine)
    try:
        report = run_pnp(spec, apply=args.apply, budget=args.budget, timeout=args.timeout, keep=args.keep)
    except PnpSearchLimit as exc:   # no verdict either way: not "a problem found" (exit 1)
        raise HarnessError(f"{exc}; --budget and --timeout give the search more") from None
    sys.stdout.write(report_json(report) + "\n" if args.json else report.format_text())
    return report.exit_code
