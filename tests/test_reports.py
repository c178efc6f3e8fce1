"""Reports people look at: the matrix run in shards, merged into one summary, JUnit file and
HTML page, and the main job's HTML report, both loaded in a real headless browser."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from browser import render
from helpers import REPO

#: A slice of the shipped matrix: two machine types × three devices, conflicts and clean
#: cells both, and isapc-e1000 left out (the whole matrix runs in test_matrix.py).
ONLY = "machine=pc,isapc devices=ne2k_isa,sb16,e1000"


def harness(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two shards run separately with the default --out (in one working folder)."""
    work = tmp_path_factory.mktemp("matrix-ci")
    for index in (1, 2):
        run = harness("matrix", "example:matrices/devices", "--only", ONLY, "--run", "--shard", f"{index}/2",
                      "--progress", "none", cwd=work)
        assert run.returncode == 0, run.stdout + run.stderr
    return work


def test_shards_keep_their_own_outputs(shards: Path) -> None:
    root = shards / "runs" / "matrix-devices"
    one, two = (json.loads((root / f"shard-{i}-of-2" / "summary.json").read_text()) for i in (1, 2))
    assert one["shards"] == ["1/2"] and two["shards"] == ["2/2"]
    assert one["selection"] == two["selection"] and len(one["selection"]["cells"]) == 5
    assert one["source"] == "example:matrices/devices" and one["axes"]["machine"] == ["pc", "q35", "isapc"]
    assert one["seen_on"][0]["qemu"].startswith("7.2") and one["seen_on"][0]["shard"] == "1/2"
    ids = [r["cell_id"] for r in one["results"] + two["results"]]
    assert sorted(ids) == sorted(one["selection"]["cells"]) and len(set(ids)) == 5
    cases = ET.parse(root / "shard-1-of-2" / "junit.xml").getroot().findall("testcase")
    assert [c.get("name") for c in cases] == [r["cell_id"] for r in one["results"]]


def test_merge_joins_shards_into_one_junit_file_and_page(shards: Path) -> None:
    root = shards / "runs" / "matrix-devices"
    merged = harness("matrix", "merge", str(root / "shard-1-of-2"), str(root / "shard-2-of-2"), cwd=shards)
    assert merged.returncode == 0, merged.stdout + merged.stderr
    out = root / "merged"
    summary = json.loads((out / "summary.json").read_text())
    cells = summary["selection"]["cells"]
    assert [r["cell_id"] for r in summary["results"]] == cells and summary["missing"] == []
    suite = ET.parse(out / "junit.xml").getroot()
    assert suite.get("tests") == "5" and suite.get("failures") == "0"
    by_name = {c.get("name"): {p.get("name"): p.get("value") for p in c.iter("property")}
               for c in suite.findall("testcase")}
    assert list(by_name) == cells
    conflict = by_name["pc-tcg-ne2k_isa"]
    assert conflict["expect"] == "conflict" and conflict["axis machine"] == "pc" and conflict["shard"] in ("1/2", "2/2")
    assert (out / conflict["out_dir"] / "report.json").is_file()
    dom, console = render(out / "report.html")
    assert console == []
    for cell in cells:
        assert f'id="cell-{cell}"' in dom and f'title="{cell}"' in dom   # in the grid and in detail
    assert 'title="isapc cannot hold e1000 (dut): the model supports pc, q35">left out<' in dom
    detail = dom.split('id="cell-pc-tcg-ne2k_isa"', 1)[1].split("</div>", 1)[0]
    assert "IRQ" in detail and "folder" in detail


def test_merge_names_the_missing_cells(shards: Path, tmp_path: Path) -> None:
    root = shards / "runs" / "matrix-devices"
    merged = harness("matrix", "merge", str(root / "shard-2-of-2"), "--out", str(tmp_path / "m"), cwd=shards)
    assert merged.returncode == 1
    first = json.loads((root / "shard-1-of-2" / "summary.json").read_text())
    missing = [r["cell_id"] for r in first["results"]]
    assert f"missing cells ({len(missing)}): {', '.join(missing)}" in merged.stderr
    suite = ET.parse(tmp_path / "m" / "junit.xml").getroot()
    errors = {c.get("name") for c in suite.findall("testcase") if c.find("error") is not None}
    assert errors == set(missing)
    dom, console = render(tmp_path / "m" / "report.html")
    assert console == [] and all(f'id="cell-{c}"' in dom for c in missing)
    # shards of different selections do not merge
    other = tmp_path / "other"
    (other).mkdir()
    doc = dict(first, selection={"only": [], "cells": ["x"]})
    (other / "summary.json").write_text(json.dumps(doc))
    bad = harness("matrix", "merge", str(root / "shard-1-of-2"), str(other), cwd=shards)
    assert bad.returncode == 2 and "is of another run" in bad.stderr


def test_the_main_jobs_html_report_renders(tmp_path: Path) -> None:
    run = harness("run", "example:conflicts/sb16-ne2000-irq5", "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    page = tmp_path / "r" / "report.html"
    dom, console = render(page)
    assert console == []
    assert "Verdict: <b>conflict</b> (exit 1; " in dom and "IO_ERR_IRQ_CONFLICT_DETECTED" in dom
    assert '<a href="bundle.yaml">' in dom and 'src="data:image/png;base64,' in dom


def test_a_page_with_a_console_error_is_caught(tmp_path: Path) -> None:
    """The browser check itself can fail."""
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>console.error('boom')</script></body></html>")
    assert any("boom" in line for line in render(page)[1])
