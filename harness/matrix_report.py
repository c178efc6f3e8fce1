"""What a matrix run leaves for CI: ``summary.json``, ``junit.xml``, ``report.txt`` and
``report.html`` in its output folder, and the merge of several shards' folders into one.

``summary.json`` says which matrix (name, source, axes), which selection (``--only``
filters and every cell id they select, so a merge can name the cells no shard ran), which
shard, where it ran (``seen_on``: host, QEMU, accelerator, Python, harness version, when)
and every cell's result with its axes and findings.  Paths in it are relative to the
folder it sits in, so shard folders can be downloaded anywhere and merged.
"""

from __future__ import annotations

import json
import os
import platform
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterable, Mapping

from .atomicio import output_folder, write_text
from .errors import HarnessError
from .matrix import OUTCOME_WORDS, CellResult, Matrix, format_summary

SUMMARY = "summary.json"
JUNIT = "junit.xml"
REPORT_TXT = "report.txt"
REPORT_HTML = "report.html"
SCHEMA = 2


def default_out(matrix: Matrix, shard_text: str | None) -> Path:
    """``runs/matrix-<name>``, or ``runs/matrix-<name>/shard-I-of-N`` for a shard, so two
    shards run in one checkout keep their own files."""
    root = Path("runs") / f"matrix-{matrix.name}"
    if shard_text:
        from .matrix import parse_shard
        index, count = parse_shard(shard_text)
        return root / f"shard-{index}-of-{count}"
    return root


def seen_on(results: Iterable[CellResult], shard_text: str | None) -> dict[str, Any]:
    from . import __version__
    qemu = accel = ""
    for r in results:
        report = Path(r.out_dir) / "report.json"
        if report.is_file():
            facts = json.loads(report.read_text())
            qemu, accel = facts.get("qemu_version", ""), facts.get("accel", "")
            break
    return {"shard": shard_text or "all", "host": platform.node(), "qemu": qemu, "accel": accel,
            "python": platform.python_version(), "harness": __version__,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def build_summary(matrix: Matrix, source: str, selected: list, only: list[str], shard_text: str | None,
                  results: list[CellResult], seconds: float, out: Path) -> dict[str, Any]:
    cells = {c.id: c for c in matrix.cells}
    return {
        "schema": SCHEMA, "matrix": matrix.name, "source": source,
        "axes": {name: list(values) for name, values in matrix.axes.items()},
        "selection": {"only": list(only), "cells": [c.id for c in selected]},
        "shards": [shard_text or "all"], "seconds": round(seconds, 2),
        "seen_on": [seen_on(results, shard_text)],
        "results": [_result_doc(r, cells[r.cell_id], out) for r in results],
        "missing": [],
        "left_out": [{"id": e.id, "axes": dict(e.axes), "reason": e.reason} for e in matrix.excluded],
    }


def _result_doc(r: CellResult, cell: Any, out: Path) -> dict[str, Any]:
    doc = r.to_dict()
    doc["out_dir"] = os.path.relpath(r.out_dir, out)
    doc["bundle"] = os.path.relpath(r.bundle, out) if r.bundle else None
    doc["axes"] = dict(cell.axes)
    doc["why"] = cell.why
    doc["known_issue"] = cell.known_issue
    report = Path(r.out_dir) / "report.json"
    doc["findings"] = _findings(report)
    return doc


def _findings(report: Path) -> list[str]:
    """The findings of a cell's main job, one line each (from its report.json)."""
    if not report.is_file():
        return []
    return [str(f) for f in json.loads(report.read_text()).get("findings", [])]


def write_outputs(summary: Mapping[str, Any], out: Path) -> None:
    """summary.json, junit.xml, report.txt and report.html of ``summary`` in ``out``."""
    from .htmlreport import matrix_report_html
    output_folder(out)
    write_text(out / SUMMARY, json.dumps(summary, indent=1) + "\n")
    write_text(out / JUNIT, junit_xml(summary))
    write_text(out / REPORT_TXT, format_text(summary))
    write_text(out / REPORT_HTML, matrix_report_html(summary, out))


def format_text(summary: Mapping[str, Any]) -> str:
    results = [CellResult(r["cell_id"], r["outcome"], r["expected"], r["exit_code"], r["seconds"],
                          Path(r["out_dir"]), Path(r["bundle"]) if r.get("bundle") else None, r.get("message", ""))
               for r in summary["results"]]
    text = f"matrix {summary['matrix']} ({summary['source']}), shard(s) {', '.join(summary['shards'])}\n"
    text += format_summary(results, summary.get("seconds") or None)
    if summary.get("missing"):
        text += f"missing ({len(summary['missing'])} cell(s) in no shard's output): {', '.join(summary['missing'])}\n"
    return text


def junit_xml(summary: Mapping[str, Any]) -> str:
    """One testsuite, one testcase per cell (missing cells as errors), with the cell's axes,
    expectation, exit code, folder, bundle and shard as properties."""
    results = summary["results"]
    missing = summary.get("missing", [])
    failures = sum(r["outcome"] == "fail" for r in results)
    errors = sum(r["outcome"] == "error" for r in results) + len(missing)
    suite = ET.Element("testsuite", name=f"matrix-{summary['matrix']}", tests=str(len(results) + len(missing)),
                       failures=str(failures), errors=str(errors),
                       skipped=str(sum(r["outcome"] == "xfail" for r in results)),
                       time=f"{sum(float(r['seconds']) for r in results):.2f}")
    props = ET.SubElement(suite, "properties")
    for key, value in (("matrix", summary["matrix"]), ("source", summary["source"]),
                       ("shards", " ".join(summary["shards"]))):
        ET.SubElement(props, "property", name=key, value=str(value))
    for seen in summary.get("seen_on", []):
        ET.SubElement(props, "property", name=f"seen_on {seen.get('shard')}",
                      value=f"{seen.get('host')} QEMU {seen.get('qemu')} {seen.get('accel')} "
                            f"python {seen.get('python')} harness {seen.get('harness')} {seen.get('finished')}")
    classname = f"matrix.{summary['matrix']}"
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=classname, name=r["cell_id"], time=f"{float(r['seconds']):.2f}")
        cprops = ET.SubElement(case, "properties")
        for key, value in [*(("axis " + k, v) for k, v in r.get("axes", {}).items()),
                           ("expect", r["expected"]), ("exit_code", r["exit_code"]),
                           ("out_dir", r["out_dir"]), ("bundle", r.get("bundle") or ""),
                           ("shard", r.get("shard", summary["shards"][0]))]:
            ET.SubElement(cprops, "property", name=key, value=str(value))
        detail = "\n".join([r.get("message", ""), *r.get("findings", [])]).strip()
        if r["outcome"] == "fail":
            ET.SubElement(case, "failure", message=r.get("message", "")).text = detail
        elif r["outcome"] == "error":
            ET.SubElement(case, "error", message=r.get("message", "")).text = detail
        elif r["outcome"] == "xfail":
            ET.SubElement(case, "skipped", type="pytest.xfail", message=r.get("message", ""))
    for cell_id in missing:
        case = ET.SubElement(suite, "testcase", classname=classname, name=cell_id, time="0")
        ET.SubElement(case, "error", message="missing: no shard's output has this cell")
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def exit_code(summary: Mapping[str, Any]) -> int:
    """0 when every cell agrees with its expectation, 1 when one does not or is missing."""
    bad = any(r["outcome"] in ("fail", "error") for r in summary["results"])
    return 1 if bad or summary.get("missing") else 0


# ---------------------------------------------------------------------------- merging

def merge(folders: list[Path], out: Path | None = None) -> tuple[dict[str, Any], Path]:
    """One summary of the shard outputs in ``folders`` (each holding a summary.json), with
    paths rewritten relative to ``out`` (default ``runs/matrix-<name>/merged``) and the
    selected cells no shard ran as missing; returns it with ``out``."""
    if not folders:
        raise HarnessError("merge: name at least one shard output folder")
    summaries = []
    for folder in folders:
        path = folder / SUMMARY
        if not path.is_file():
            raise HarnessError(f"merge: {folder} has no {SUMMARY} (not the --out folder of 'harness matrix --run')")
        try:
            doc = json.loads(path.read_text())
        except (ValueError, RecursionError) as exc:   # RecursionError: nested deeper than any summary
            raise HarnessError(f"merge: {path}: not JSON ({exc})") from None
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            schema = doc.get("schema") if isinstance(doc, dict) else None
            raise HarnessError(f"merge: {path}: summary schema {schema!r}, expected {SCHEMA}")
        _check_summary(path, doc)
        summaries.append((folder, doc))
    first_folder, first = summaries[0]
    for folder, doc in summaries[1:]:
        for key in ("matrix", "selection"):
            if doc[key] != first[key]:
                raise HarnessError(f"merge: {folder / SUMMARY} is of another run than {first_folder / SUMMARY}: "
                                   f"its {key} differs ({doc[key] if key == 'matrix' else 'other cells'})")
    if out is None:
        out = Path("runs") / f"matrix-{first['matrix']}" / "merged"
    results: dict[str, dict[str, Any]] = {}
    where: dict[str, Path] = {}
    for folder, doc in summaries:
        for r in doc["results"]:
            if r["cell_id"] in results:
                raise HarnessError(f"merge: cell {r['cell_id']} is in both {where[r['cell_id']]} and {folder}")
            moved = dict(r, shard=doc["shards"][0])
            moved["out_dir"] = os.path.relpath(folder / r["out_dir"], out)
            moved["bundle"] = os.path.relpath(folder / r["bundle"], out) if r.get("bundle") else None
            results[r["cell_id"]] = moved
            where[r["cell_id"]] = folder
    order = first["selection"]["cells"]
    missing = [c for c in order if c not in results]
    return {
        "schema": SCHEMA, "matrix": first["matrix"], "source": first["source"], "axes": first["axes"],
        "selection": first["selection"], "shards": [s for _, doc in summaries for s in doc["shards"]],
        "seconds": round(sum(doc.get("seconds", 0) for _, doc in summaries), 2),
        "seen_on": [s for _, doc in summaries for s in doc.get("seen_on", [])],
        "results": [results[c] for c in order if c in results]
                   + [r for c, r in results.items() if c not in set(order)],
        "missing": missing,
        "left_out": first.get("left_out", []),
    }, out


def _check_summary(path: Path, doc: dict[str, Any]) -> None:
    """What :func:`merge` reads of a summary is there, of the types :func:`build_summary`
    writes: an edited or damaged file is refused naming it and the field, not a traceback."""
    def need(ok: bool, field: str, expected: str) -> None:
        if not ok:
            raise HarnessError(f"merge: {path}: {field}: expected {expected} (not a summary 'harness matrix "
                               "--run' wrote, or edited)")
    need(isinstance(doc.get("matrix"), str), "matrix", "the matrix's name")
    need(isinstance(doc.get("source"), str), "source", "a path")
    need(isinstance(doc.get("axes"), dict), "axes", "a mapping")
    selection = doc.get("selection")
    need(isinstance(selection, dict) and isinstance(selection.get("cells"), list)
         and all(isinstance(c, str) for c in selection["cells"]), "selection.cells", "a list of cell ids")
    need(isinstance(doc.get("shards"), list) and bool(doc["shards"]), "shards", "a list of shards")
    need(isinstance(doc.get("results"), list), "results", "a list of cells")
    for i, r in enumerate(doc["results"]):
        need(isinstance(r, dict) and isinstance(r.get("cell_id"), str) and isinstance(r.get("out_dir"), str)
             and isinstance(r.get("bundle"), (str, type(None))), f"results[{i}]",
             "a cell with cell_id, out_dir and bundle")


def outcome_counts(summary: Mapping[str, Any]) -> str:
    counts = {w: sum(r["outcome"] == w for r in summary["results"]) for w in OUTCOME_WORDS}
    text = ", ".join(f"{n} {w}" for w, n in counts.items())
    return text + (f", {len(summary['missing'])} missing" if summary.get("missing") else "")


def describe_missing(summary: Mapping[str, Any]) -> str:
    missing = summary.get("missing", [])
    return f"missing cells ({len(missing)}): {', '.join(missing)}" if missing else ""

