"""``harness examples``: the shipped example machines and matrices, by the name that
``example:NAME`` takes wherever a machine or matrix file is expected."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..atomicio import write_bytes
from ..errors import HarnessError
from ..packagedata import EXAMPLE_PREFIX, examples, resolve_config


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "examples",
        description="List the example machine files and matrices that ship with the harness. "
                    "Any command that takes a machine or matrix file also takes example:NAME "
                    "(harness run example:conflicts/sb16-ne2000-irq5); --copy writes one into "
                    "your own tree to start from.")
    parser.add_argument("--copy", metavar="NAME", help="copy the example NAME into --to")
    parser.add_argument("--to", type=Path, default=Path("."), help="with --copy: target folder (default .)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.copy:
        source = resolve_config(EXAMPLE_PREFIX + args.copy.removeprefix(EXAMPLE_PREFIX))
        target = args.to / source.name
        if target.exists():
            raise HarnessError(f"{target} exists; not overwriting it")
        try:
            args.to.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HarnessError(f"--to {args.to}: cannot make the folder to copy {args.copy} into: "
                               f"{exc.strerror}") from None
        write_bytes(target, source.read_bytes())   # whole or not at all, naming the file if it fails
        print(target)
        return 0
    found = examples()
    width = max(map(len, found))
    for name, path in found.items():
        first = next((line.lstrip("# ").strip() for line in path.read_text().splitlines()
                      if line.startswith("#") and line.lstrip("# ").strip()), "")
        sys.stdout.write(f"{EXAMPLE_PREFIX}{name:<{width}}  {first}".rstrip() + "\n")
    return 0
