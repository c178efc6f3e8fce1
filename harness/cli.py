"""The ``harness`` command line.

Each subcommand lives in its own module under :mod:`harness.commands` and exposes
``register(subparsers)``; this module only assembles them and turns library errors into
one readable line and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from .errors import HarnessError

# Subcommand modules, in the order ``harness --help`` lists them.
COMMAND_MODULES = (
    "harness.commands.run",
    "harness.commands.layout",
    "harness.commands.registry",
    "harness.commands.reap",
    "harness.commands.verify",
    "harness.commands.repro",
    "harness.commands.pnp",
    "harness.commands.matrix",
    "harness.commands.models",
    "harness.commands.examples",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real import error inside an existing command module
                raise
            continue
        module.register(subparsers)
    for command in subparsers.choices.values():   # every command reads the catalog
        command.add_argument("--models", action="append", default=[], metavar="DIR",
                             help="a folder of your own device models, layered over the shipped "
                                  "catalog (repeatable; also $HARNESS_DEVICE_MODELS)")
    return parser


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # SIGTERM (kill, CI cancelling a job) and SIGHUP (a closed terminal) end a command
    # like Ctrl-C: every QEMU is shut down and every run folder removed on the way out.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupted)
    try:
        if args.models:
            from .packagedata import add_user_model_dirs
            add_user_model_dirs(args.models)
        return int(args.func(args) or 0)
    except (HarnessError, OSError) as exc:
        # Refused input or an environment the command cannot use (a file it cannot read
        # or write): a usage error, never 1 (which means "found a problem").
        if args.verbose:
            raise
        print(f"harness {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
