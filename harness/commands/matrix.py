"""``harness matrix FILE``: list, shard, emit CI job matrices for, or run a test matrix
(see :mod:`harness.matrix`)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from ..atomicio import write_text
from ..errors import HarnessError
from ..repro import write_cell_bundle
from ..matrix import (Matrix, RunAborted, format_summary, load_matrix, parse_shard, run_cells,
                      shard, shard_of)

EMIT_FORMATS = ("github", "gitlab", "json")
DEFAULT_SHARDS = 4


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "matrix", help="list, shard, emit a CI job matrix for, or run a test matrix",
        description="Expand the matrix FILE (configs/matrices/*.yaml) into cells and list them "
                    "(with the reason for every combination left out), print the job matrix a CI "
                    "system fans out (--emit), or run every cell's main job in parallel (--run). "
                    "Exit status of --run: 0 when every cell agrees with its expectation, 1 when "
                    "one does not, 2 on a usage or setup error, 130 when interrupted.")
    parser.add_argument("file", help="matrix YAML file")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--list", action="store_true",
                      help="list the cells with their expectation, then the left-out combinations "
                           "and why (the default when neither --emit nor --run is given)")
    what.add_argument("--emit", choices=EMIT_FORMATS,
                      help="print the job matrix for GitHub Actions (JSON for strategy.matrix), "
                           "GitLab CI (a parallel:matrix job) or plain JSON (every shard's cells)")
    what.add_argument("--run", action="store_true", help="run the main job of every selected cell")
    parser.add_argument("--shards", type=int, default=DEFAULT_SHARDS,
                        help=f"with --emit: how many CI jobs to split the cells into (default {DEFAULT_SHARDS})")
    parser.add_argument("--shard", metavar="I/N", help="only the cells of shard I of N (1-based)")
    parser.add_argument("--only", action="append", default=[], metavar="FILTER",
                        help="only the cells matching FILTER ('axis=value[,value] axis=value', globs "
                             "allowed); repeat to widen")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="with --run: cells at a time (default 2)")
    parser.add_argument("--out", type=Path, help="with --run: folder for the cells' files "
                                                 "(default runs/matrix-<name>)")
    parser.add_argument("--picture", action="store_true", help="with --run: draw each cell's resourcemap.png")
    parser.add_argument("--progress", choices=("auto", "bar", "lines", "none"), default="auto",
                        help="with --run: a bar on a terminal, a line per cell otherwise (default auto)")
    parser.set_defaults(func=run)


def _selected(matrix: Matrix, args: argparse.Namespace) -> list:
    cells = matrix.select(args.only)
    if args.shard:
        index, count = parse_shard(args.shard)
        cells = shard(cells, index, count)
    return cells


def run(args: argparse.Namespace) -> int:
    matrix = load_matrix(args.file)
    if args.emit:
        if args.shard or args.only:
            raise HarnessError("--emit describes the whole matrix: leave out --shard and --only")
        sys.stdout.write(emit(matrix, args.file, args.emit, args.shards))
        return 0
    cells = _selected(matrix, args)
    if not args.run:
        sys.stdout.write(format_listing(matrix, cells))
        return 0
    if args.jobs < 1:
        raise HarnessError("-j must be at least 1")
    out = args.out if args.out is not None else Path("runs") / f"matrix-{matrix.name}"
    print(f"matrix {matrix.name}: {len(cells)} cell(s), {args.jobs} at a time, files under {out}",
          file=sys.stderr)
    start = time.monotonic()
    try:
        results = run_cells(cells, args.jobs, out, on_failure=write_cell_bundle, progress=None if args.progress == "none" else args.progress,
                            picture=args.picture)
    except RunAborted as aborted:
        sys.stdout.write(format_summary(aborted.results, time.monotonic() - start))
        print(f"interrupted: {len(cells) - len(aborted.results)} cell(s) not run; "
              "every worker and QEMU of this run has been stopped", file=sys.stderr)
        return 130
    seconds = time.monotonic() - start
    write_text(out / "summary.json", json.dumps(
        {"matrix": matrix.name, "source": args.file, "seconds": round(seconds, 2),
         "results": [r.to_dict() for r in results]}, indent=1) + "\n")
    sys.stdout.write(format_summary(results, seconds))
    return 1 if any(r.outcome in ("fail", "error") for r in results) else 0


def format_listing(matrix: Matrix, cells: list) -> str:
    width = max([len("cell"), *(len(c.id) for c in cells)])
    out = [f"matrix {matrix.name} ({matrix.source}): {len(cells)} of {len(matrix.cells)} cell(s) "
           f"selected, {len(matrix.excluded)} combination(s) left out",
           "axes: " + "; ".join(f"{a} ({len(v)})" for a, v in matrix.axes.items()), "",
           f"{'cell':<{width}}  expect    why"]
    for cell in cells:
        why = cell.why + (f" [known issue: {cell.known_issue}]" if cell.known_issue else "")
        out.append(f"{cell.id:<{width}}  {cell.expect:<8}  {why}".rstrip())
    if matrix.excluded:
        out += ["", "left out:"]
        width = max(len(e.id) for e in matrix.excluded)
        out += [f"{e.id:<{width}}  {e.reason}" for e in matrix.excluded]
    return "\n".join(out) + "\n"


def shard_commands(path: str, shard_text: str) -> dict[str, str]:
    """What a CI runner runs for one shard: under pytest (the plugin's options) or alone."""
    return {"command": f"pytest --harness-matrix {shlex.quote(path)} --harness-shard {shard_text}",
            "harness_command": f"harness matrix {shlex.quote(path)} --run --shard {shard_text}"}


def emit(matrix: Matrix, path: str, fmt: str, shards: int) -> str:
    if shards < 1:
        raise HarnessError("--shards must be at least 1")
    shards = min(shards, len(matrix.cells))
    assigned = shard_of(matrix.cells, shards)
    entries = []
    for index in range(1, shards + 1):
        ids = [c.id for c in matrix.cells if assigned[c.id] == index]
        entries.append({"shard": f"{index}/{shards}", "cells": ids, **shard_commands(path, f"{index}/{shards}")})
    if fmt == "json":
        return json.dumps({"matrix": matrix.name, "source": path, "shards": entries,
                           "cells": [{"id": c.id, "axes": dict(c.axes), "expect": c.expect, "why": c.why}
                                     for c in matrix.cells]}, indent=1) + "\n"
    if fmt == "github":
        include = [{"shard": e["shard"], "name": f"{matrix.name} {e['shard']}", "cells": len(e["cells"]),
                    "command": e["command"], "harness_command": e["harness_command"]} for e in entries]
        return json.dumps({"include": include}) + "\n"
    import yaml
    job = {f"matrix-{matrix.name}": {
        "parallel": {"matrix": [{"HARNESS_SHARD": [e["shard"] for e in entries]}]},
        "script": [shard_commands(path, '"$HARNESS_SHARD"')["command"]],
    }}
    header = (f"# {len(matrix.cells)} cells of matrix {matrix.name} in {shards} jobs; standalone "
              f"runners use: {shard_commands(path, '$HARNESS_SHARD')['harness_command']}\n")
    return header + yaml.safe_dump(job, sort_keys=False, width=200)
