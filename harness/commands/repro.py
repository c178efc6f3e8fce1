"""``harness repro FILE``: replay a repro bundle; ``--shrink`` reduces it (see :mod:`harness.repro`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import COMMAND_LINE, ConfigError
from ..qemu.binary import require_qemu
from ..repro import load_bundle, replay, shrink


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "repro",
        description="Boot a fresh machine from the bundle, do its steps (driver loads and claims) "
                    "and print the main job's report, then whether every recorded finding came "
                    "back.  Exit status 0 when the scenario reproduces, 1 when it does not, 2 when "
                    "the bundle or the machine cannot be used.  With --shrink, remove steps and "
                    "devices one at a time while it still reproduces and write the smallest bundle.")
    parser.add_argument("bundle", type=Path, help="repro bundle (YAML) written by a failing test, "
                                                  "matrix cell or main job")
    parser.add_argument("--shrink", action="store_true", help="reduce the bundle to a minimal one")
    parser.add_argument("-o", "--output", type=Path,
                        help="where --shrink writes the minimal bundle (default: BUNDLE with .min.yaml)")
    parser.add_argument("--max-runs", type=int, default=200, metavar="N",
                        help="--shrink: at most N replays (default 200)")
    parser.add_argument("--out", type=Path, help="folder for the replay's logs, registry, report "
                                                 "(default: runs/repro-<bundle name>)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-picture", action="store_true", help="do not draw resourcemap.png")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_qemu()   # one line naming the binary, before any file is read
    if args.max_runs < 1:
        raise ConfigError(f"must be at least 1, not {args.max_runs}", source=COMMAND_LINE, field="--max-runs")
    bundle = load_bundle(args.bundle)
    out = args.out if args.out is not None else Path("runs") / f"repro-{args.bundle.stem}"
    if args.shrink:
        target = args.output or args.bundle.with_name(args.bundle.name.removesuffix(".yaml") + ".min.yaml")
        _can_write(target)   # before minutes of replays, not after them
        print(f"shrinking {args.bundle}: {len(bundle.spec.devices)} device(s), {len(bundle.steps)} step(s)")
        shrunk = shrink(bundle, out, max_runs=args.max_runs, log=lambda line: print(line, flush=True))
        shrunk.bundle.title = f"{bundle.title} (shrunk)" if bundle.title else "shrunk"
        shrunk.bundle.write(target)
        b = shrunk.bundle
        print(f"minimal bundle: {len(b.spec.devices)} device(s) ({', '.join(d.id for d in b.spec.devices)}), "
              f"{len(b.steps)} step(s), after {shrunk.runs} replay(s) -> {target}")
        return 0
    result = replay(bundle, out, picture=not args.no_picture)
    if args.json:
        print(json.dumps(dict(result.result.to_dict(), repro={
            "reproduces": result.reproduces, "missing": result.missing, "new": result.new}), indent=1))
    else:
        sys.stdout.write(result.result.format_text() + "\n" + result.format_text())
    return 0 if result.reproduces else 1


class _Probe(Exception):
    pass


def _can_write(target: Path) -> None:
    """Refuse a --shrink output that cannot be written, as the end would: its folder made
    (as Bundle.write does) and a temporary file made and removed there."""
    from ..atomicio import OutputError, atomic_output
    if target.is_dir():
        raise OutputError(f"cannot write {target}: Is a directory")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with atomic_output(target, sync=False):
            raise _Probe
    except _Probe:
        pass
