"""Reports as HTML pages people open in a browser: one machine's main job (``report.html``
beside ``report.txt``) and a matrix run (``report.html`` in the run's or the merge's
folder).

Each page is one self-contained file: the style is inline, pictures are embedded as data
URIs, there is no script and nothing is fetched, so the page reads the same from a CI
artifact, a mail attachment or a local folder.  Links to bundles and cell folders are
relative to the page, so the folder can be moved or downloaded whole.
"""

from __future__ import annotations

import base64
import html
import os
from itertools import product
from pathlib import Path
from typing import Any, Iterable, Mapping

#: Outcome word → colour class (a matrix cell's outcome; a machine's verdict, harness.verdict).
_CLASSES = {"pass": "ok", "clean": "ok", "xfail": "known", "fail": "bad", "conflict": "bad", "warning": "warn",
            "error": "err", "missing": "missing"}

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}h3{font-size:1em;margin:.2em 0}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #bbb;padding:.25em .5em;text-align:left}
th{background:#eee}td.cell{text-align:center;min-width:5em}
.ok{background:#d7f5d7}.bad{background:#f8caca}.err{background:#f6dd9a}.warn{background:#fbeec2}.known{background:#dde4f7}
.missing{background:#ddd;color:#555}.left{color:#888;font-size:.85em}
pre{background:#f6f6f6;padding:.6em;overflow:auto;font-size:.85em}
.detail{border:1px solid #ccc;padding:.5em .8em;margin:.6em 0}
img{max-width:100%;border:1px solid #ccc}
.counts span{margin-right:1em;padding:.1em .4em}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: Iterable[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def embedded_png(path: Path | None, alt: str) -> str:
    """The PNG at ``path`` as an inline image (empty when there is none)."""
    if path is None or not Path(path).is_file():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def link(target: Path | str | None, base: Path, text: str) -> str:
    """A link to ``target`` relative to the folder ``base`` of the page."""
    if not target:
        return ""
    href = os.path.relpath(Path(target), base)
    return f'<a href="{esc(Path(href).as_posix())}">{esc(text)}</a>'


# ---------------------------------------------------------------------------- one machine

def machine_report_html(result: Any) -> str:
    """The main job's report for ``result`` (a :class:`harness.job.JobResult`): verdict,
    findings, the resource-map picture and the full text report."""
    findings = result.findings()
    verdict = result.verdict   # the report's own (clean, warning, conflict), as report.txt ends
    out_dir = Path(result.out_dir)
    bundle = out_dir / "bundle.yaml"
    body = [f"<h1>Machine {esc(result.spec.name)}</h1>",
            f"<p>{esc(result.layout.machine_type)}, {esc(result.layout.accel)}, QEMU "
            f"{esc(result.layout.qemu_version)}; config {esc(result.spec.source)}</p>",
            f'<p class="{_CLASSES[verdict]}" id="verdict">Verdict: <b>{verdict}</b> '
            f"(exit {result.exit_code}; {len(findings)} finding(s))</p>"]
    if findings:
        body += ["<h2>Findings</h2>", "<ul>", *(f"<li>{esc(f)}</li>" for f in findings), "</ul>"]
    if bundle.is_file():
        body.append(f"<p>Repro bundle: {link(bundle, out_dir, bundle.name)} "
                    f"(<code>harness repro {esc(bundle)}</code>)</p>")
    picture = embedded_png(result.picture, f"resource map of {result.spec.name}")
    if picture:
        body += ["<h2>Resource map</h2>", picture]
    body += ["<h2>Report</h2>", f"<pre>{esc(result.format_text())}</pre>"]
    return page(f"harness run {result.spec.name}", body)


# ---------------------------------------------------------------------------- a matrix

def matrix_report_html(summary: Mapping[str, Any], out_dir: Path) -> str:
    """The page of a matrix run or merge: the cells as a grid by axis with their
    outcomes, the missing cells, then each cell that did not pass with its findings,
    picture, folder and bundle.  ``summary`` is the run's summary (see
    :mod:`harness.matrix_report`); paths in it are relative to ``out_dir``."""
    results = {r["cell_id"]: r for r in summary["results"]}
    missing = list(summary.get("missing", []))
    axes: dict[str, list[str]] = {name: list(values) for name, values in summary.get("axes", {}).items()}
    cells_axes = {cid: r.get("axes", {}) for cid, r in results.items()}
    cells_axes.update(summary.get("missing_axes", {}))
    counts: dict[str, int] = {}
    for r in results.values():
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    if missing:
        counts["missing"] = len(missing)
    title = f"matrix {summary['matrix']}"
    body = [f"<h1>Matrix {esc(summary['matrix'])}</h1>",
            f"<p>{esc(summary.get('source', ''))}; shard(s): {esc(', '.join(summary.get('shards', [])) or 'all')}; "
            f"{len(results)} cell(s) run</p>",
            '<p class="counts">' + "".join(f'<span class="{_CLASSES.get(w, "")}">{esc(w)}: {n}</span>'
                                           for w, n in sorted(counts.items())) + "</p>"]
    seen = summary.get("seen_on") or []
    if seen:
        body += ["<h2>Seen on</h2>", _table(["shard", "host", "QEMU", "accel", "python", "harness", "when"],
                                          [[s.get(k, "") for k in ("shard", "host", "qemu", "accel", "python",
                                                                   "harness", "finished")] for s in seen])]
    left_out = {tuple(e["axes"].get(name, "") for name in axes): e["reason"]
                for e in summary.get("left_out", [])}
    body += ["<h2>Cells</h2>", _grid(axes, cells_axes, results, missing, left_out)]
    if missing:
        body += ["<h2>Missing cells</h2>", "<p>Selected by the matrix but in no shard's output:</p>",
                 "<ul>", *(f'<li class="missing" id="cell-{esc(c)}">{esc(c)}</li>' for c in missing), "</ul>"]
    body.append("<h2>Cells in detail</h2>")
    for cid, r in results.items():
        body.append(_cell_detail(cid, r, out_dir))
    return page(title, body)


def _table(head: list[str], rows: list[list[Any]]) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>" for row in rows]
    return "\n".join(out + ["</table>"])


def _grid(axes: dict[str, list[str]], cells_axes: Mapping[str, Mapping[str, str]],
          results: Mapping[str, Any], missing: list[str], left_out: Mapping[tuple, str]) -> str:
    """Columns: the values of the axis with the fewest (more than one) values; rows: every
    combination of the other axes that has a cell.  Each grid cell shows the outcome of the
    matrix cell there and links to its detail; a combination the matrix leaves out says so
    (its reason on hover); one that is not selected stays empty."""
    names = list(axes)
    if not names:   # no axis known: a plain list
        return _table(["cell", "outcome"], [[cid, r["outcome"]] for cid, r in results.items()])
    wide = [n for n in names if len(axes[n]) > 1] or names
    col_axis = min(wide, key=lambda n: len(axes[n]))
    row_axes = [n for n in names if n != col_axis]
    by_axes = {tuple(a.get(name, "") for name in names): cid for cid, a in cells_axes.items()}

    def key(row: tuple[str, ...], value: str) -> tuple[str, ...]:
        values = dict(zip(row_axes, row), **{col_axis: value})
        return tuple(values[name] for name in names)

    rows = [combo for combo in product(*(axes[a] for a in row_axes))
            if any(key(combo, v) in by_axes for v in axes[col_axis])]
    head = ("<tr><th>" + esc(" × ".join(row_axes) or "cell") + " \\ " + esc(col_axis) + "</th>"
            + "".join(f"<th>{esc(v)}</th>" for v in axes[col_axis]) + "</tr>")
    lines = []
    for combo in rows:
        tds = []
        for value in axes[col_axis]:
            cid = by_axes.get(key(combo, value))
            if cid is None:
                reason = left_out.get(key(combo, value))
                tds.append(f'<td class="cell left" title="{esc(reason)}">left out</td>' if reason
                           else '<td class="cell"></td>')
                continue
            word = results[cid]["outcome"] if cid in results else "missing"
            tds.append(f'<td class="cell {_CLASSES.get(word, "")}" title="{esc(cid)}">'
                       f'<a href="#cell-{esc(cid)}">{esc(word)}</a></td>')
        lines.append(f"<tr><th>{esc(' '.join(combo)) or 'cell'}</th>{''.join(tds)}</tr>")
    return "\n".join(['<table class="grid">', head, *lines, "</table>"])


def _cell_detail(cid: str, r: Mapping[str, Any], out_dir: Path) -> str:
    word = r["outcome"]
    folder = out_dir / r["out_dir"] if r.get("out_dir") else None
    parts = [f'<div class="detail {_CLASSES.get(word, "")}" id="cell-{esc(cid)}">',
             f"<h3>{esc(cid)}: {esc(word)}</h3>",
             f"<p>expected {esc(r.get('expected', ''))}, exit {esc(r.get('exit_code', ''))}, "
             f"{float(r.get('seconds', 0)):.2f} s; axes: "
             + esc(", ".join(f"{k}={v}" for k, v in r.get("axes", {}).items())) + "</p>"]
    if r.get("message"):
        parts.append(f"<p>{esc(r['message'])}</p>")
    findings = r.get("findings") or []
    if findings:
        parts += ["<ul>", *(f"<li>{esc(f)}</li>" for f in findings), "</ul>"]
    links = [link(folder, out_dir, "folder") if folder else "",
             link(folder / "report.html", out_dir, "report") if folder and (folder / "report.html").is_file() else "",
             link(out_dir / r["bundle"], out_dir, "bundle") if r.get("bundle") else ""]
    if any(links):
        parts.append("<p>" + " · ".join(x for x in links if x) + "</p>")
    if word != "pass" and folder is not None:
        parts.append(embedded_png(folder / "resourcemap.png", f"resource map of {cid}"))
    parts.append("</div>")
    return "\n".join(p for p in parts if p)
