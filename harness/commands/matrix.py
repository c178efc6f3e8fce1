"""``harness matrix FILE``: list, shard, emit CI job matrices for, or run a test matrix
(see :mod:`harness.matrix`)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from ..errors import HarnessError
from ..qemu.binary import require_qemu
from ..repro import write_cell_bundle
from ..matrix import (ARTIFACTS, Matrix, RunAborted, format_summary, load_matrix, parse_shard,
                      run_cells, shard, shard_of)
from .. import matrix_report

EMIT_FORMATS = ("github", "gitlab", "json")
DEFAULT_SHARDS = 4


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "matrix",
        description="Expand the matrix FILE (configs/matrices/*.yaml, or example:NAME) into cells "
                    "and list them (with the reason for every combination left out), print the CI "
                    "jobs that run it in shards and merge them (--emit), or run every cell's main "
                    "job in parallel (--run), writing summary.json, junit.xml, report.txt and "
                    "report.html.  'harness matrix merge DIR... [--out DIR]' joins the output "
                    "folders of shards into one summary, JUnit file and report and names the "
                    "cells no shard ran.  Exit status of --run and merge: 0 when every cell's "
                    "verdict (clean, warning or conflict) is its expectation, 1 when one is not "
                    "(or, merged, is missing), "
                    "2 on a usage or setup error, 130 when interrupted.")
    parser.add_argument("file", help="matrix YAML file, or 'merge' followed by shard output folders")
    parser.add_argument("folders", nargs="*", type=Path, metavar="DIR",
                        help="with merge: the --out folders of the shards to merge")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--list", action="store_true",
                      help="list the cells with their expectation, then the left-out combinations "
                           "and why (the default when neither --emit nor --run is given)")
    what.add_argument("--emit", choices=EMIT_FORMATS,
                      help="print the CI jobs: a GitHub Actions workflow, a GitLab CI pipeline (each a "
                           "job per shard that uploads its results, then a job that merges them) or "
                           "plain JSON (every shard's cells and commands)")
    what.add_argument("--run", action="store_true", help="run the main job of every selected cell")
    parser.add_argument("--shards", type=int, default=DEFAULT_SHARDS,
                        help=f"with --emit: how many CI jobs to split the cells into (default {DEFAULT_SHARDS})")
    parser.add_argument("--shard", metavar="I/N", help="only the cells of shard I of N (1-based)")
    parser.add_argument("--only", action="append", default=[], metavar="FILTER",
                        help="only the cells matching FILTER ('axis=value[,value] axis=value', globs "
                             "allowed); repeat to widen")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="with --run: cells at a time (default 2)")
    parser.add_argument("--out", type=Path, help="with --run: folder for the cells' files (default "
                                                 "runs/matrix-<name>, runs/matrix-<name>/shard-I-of-N for "
                                                 "a shard); with merge: the merged files' folder (default "
                                                 "runs/matrix-<name>/merged)")
    parser.add_argument("--picture", action="store_true", help="with --run: draw each cell's resourcemap.png")
    parser.add_argument("--artifacts", choices=ARTIFACTS, default="failures",
                        help="with --run: which cells keep every file of their main job (report.txt, "
                             "report.html, registry.sqlite, registry.reg, QEMU's logs): 'failures' "
                             "(the default: cells that fail or error; the others keep report.json) "
                             "or 'all'")
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
    if args.file == "merge":
        return run_merge(args)
    if args.folders:
        raise HarnessError(f"unexpected argument(s) after the matrix file: {' '.join(map(str, args.folders))} "
                           "(only 'harness matrix merge' takes folders)")
    matrix = load_matrix(args.file)
    if args.emit:
        if args.shard:
            raise HarnessError("--emit describes every shard: leave out --shard (use --shards N)")
        sys.stdout.write(emit(matrix, args.file, args.emit, args.shards, args.only))
        return 0
    cells = _selected(matrix, args)
    if not args.run:
        sys.stdout.write(format_listing(matrix, cells))
        return 0
    if args.jobs < 1:
        raise HarnessError("-j must be at least 1")
    require_qemu()
    out = args.out if args.out is not None else matrix_report.default_out(matrix, args.shard)
    print(f"matrix {matrix.name}: {len(cells)} cell(s), {args.jobs} at a time, files under {out}",
          file=sys.stderr)
    start = time.monotonic()
    try:
        results = run_cells(cells, args.jobs, out, on_failure=write_cell_bundle,
                            progress=None if args.progress == "none" else args.progress,
                            picture=args.picture, artifacts=args.artifacts)
    except RunAborted as aborted:
        # What ran is still written down (a cancelled CI job keeps its JUnit file); a merge
        # names the cells that did not run as missing.
        _write(matrix, args, cells, aborted.results, time.monotonic() - start, out)
        sys.stdout.write(format_summary(aborted.results, time.monotonic() - start))
        print(f"interrupted: {len(cells) - len(aborted.results)} cell(s) not run; "
              "every worker and QEMU of this run has been stopped", file=sys.stderr)
        return 130
    seconds = time.monotonic() - start
    _write(matrix, args, cells, results, seconds, out)
    sys.stdout.write(format_summary(results, seconds))
    print(f"summary, junit.xml and report.html: {out}", file=sys.stderr)
    return 1 if any(r.outcome in ("fail", "error") for r in results) else 0


def _write(matrix: Matrix, args: argparse.Namespace, cells: list, results: list, seconds: float,
           out: Path) -> None:
    selection = matrix.select(args.only)   # what a merge of every shard must cover
    summary = matrix_report.build_summary(matrix, args.file, selection, args.only, args.shard, results,
                                          seconds, out)
    ran = {r.cell_id for r in results}
    summary["missing"] = [c.id for c in cells if c.id not in ran]   # this run's own, if interrupted
    matrix_report.write_outputs(summary, out)


def run_merge(args: argparse.Namespace) -> int:
    summary, out = matrix_report.merge(list(args.folders), args.out)
    matrix_report.write_outputs(summary, out)
    sys.stdout.write(matrix_report.format_text(summary))
    print(f"merged {len(args.folders)} shard output(s): {matrix_report.outcome_counts(summary)}; "
          f"files under {out}", file=sys.stderr)
    if summary["missing"]:
        print(matrix_report.describe_missing(summary), file=sys.stderr)
    return matrix_report.exit_code(summary)


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


def shard_commands(path: str, shard_text: str, only: list[str] = ()) -> dict[str, str]:
    """What a CI runner runs for one shard: the matrix's cells alone (``harness matrix
    --run``, the CI jobs' command), or a project's own tests over them (pytest)."""
    filters = "".join(f" --only {shlex.quote(f)}" for f in only)
    return {"command": f"harness matrix {shlex.quote(path)}{filters} --run --shard {shard_text}",
            "pytest_command": f"pytest --harness-matrix {shlex.quote(path)} --harness-shard {shard_text}"}


def emit(matrix: Matrix, path: str, fmt: str, shards: int, only: list[str] = ()) -> str:
    if shards < 1:
        raise HarnessError("--shards must be at least 1")
    cells = matrix.select(only)
    if not cells:
        raise HarnessError(f"--only {' '.join(only)}: no cell of matrix {matrix.name} matches")
    shards = min(shards, len(cells))
    assigned = shard_of(cells, shards)
    root = f"runs/matrix-{matrix.name}"
    entries = []
    for index in range(1, shards + 1):
        ids = [c.id for c in cells if assigned[c.id] == index]
        entry = {"shard": f"{index}/{shards}", "cells": ids, "out": f"{root}/shard-{index}-of-{shards}",
                 **shard_commands(path, f"{index}/{shards}", only)}
        if only:
            del entry["pytest_command"]
        entries.append(entry)
    merge = f"harness matrix merge {root}/shard-*-of-{shards} --out {root}/merged"
    if fmt == "json":
        return json.dumps({"matrix": matrix.name, "source": path, "only": list(only), "shards": entries,
                           "merge_command": merge,
                           "cells": [{"id": c.id, "axes": dict(c.axes), "expect": c.expect, "why": c.why}
                                     for c in cells]}, indent=1) + "\n"
    import yaml
    header = (f"# {len(cells)} cell(s) of matrix {matrix.name} in {shards} job(s), then one job that "
              f"merges their results\n# (summary.json, junit.xml, report.html).  Adjust the install step "
              f"to where you get the harness (a wheel, a path, an index).\n")
    install = "sudo apt-get update && sudo apt-get install -y qemu-system-x86 && pip install qemu-nt-harness"
    if fmt == "github":
        jobs = {
            "matrix": {
                "runs-on": "ubuntu-latest",
                "strategy": {"fail-fast": False, "matrix": {"include": [
                    {"shard": e["shard"], "name": f"{matrix.name} {e['shard']}", "cells": len(e["cells"]),
                     "out": e["out"], "artifact": f"matrix-{matrix.name}-shard-{e['shard'].replace('/', '-of-')}"}
                    for e in entries]}},
                "steps": [
                    {"uses": "actions/checkout@v4"},
                    {"name": "install", "run": install},
                    {"name": "run the shard", "run": shard_commands(path, "${{ matrix.shard }}", only)["command"]},
                    {"name": "upload the shard's results", "if": "always()", "uses": "actions/upload-artifact@v4",
                     "with": {"name": "${{ matrix.artifact }}", "path": f"{root}/"}},
                ]},
            "merge": {
                "runs-on": "ubuntu-latest", "needs": "matrix", "if": "always()",
                "steps": [
                    {"uses": "actions/checkout@v4"},
                    {"name": "install", "run": install},
                    {"name": "download every shard", "uses": "actions/download-artifact@v4",
                     "with": {"pattern": f"matrix-{matrix.name}-shard-*", "path": f"{root}/",
                              "merge-multiple": True}},
                    {"name": "merge", "run": merge},
                    {"name": "upload the merged results", "if": "always()", "uses": "actions/upload-artifact@v4",
                     "with": {"name": f"matrix-{matrix.name}", "path": f"{root}/merged/"}},
                ]},
        }
        return header + yaml.safe_dump({"name": f"matrix {matrix.name}", "on": ["push", "pull_request"],
                                        "jobs": jobs}, sort_keys=False, width=200)
    job = f"matrix-{matrix.name}"
    pipeline = {
        "stages": ["test", "report"],
        job: {
            "stage": "test",
            "parallel": {"matrix": [{"HARNESS_SHARD": [e["shard"] for e in entries]}]},
            "before_script": [install],
            "script": [shard_commands(path, '"$HARNESS_SHARD"', only)["command"]],
            "artifacts": {"when": "always", "paths": [f"{root}/"], "reports": {"junit": f"{root}/shard-*/junit.xml"}},
        },
        f"{job}-merge": {
            "stage": "report", "when": "always", "needs": [job],
            "before_script": [install],
            "script": [merge],
            "artifacts": {"when": "always", "paths": [f"{root}/merged/"], "reports": {"junit": f"{root}/merged/junit.xml"}},
        },
    }
    return header + yaml.safe_dump(pipeline, sort_keys=False, width=200)
