"""The Makefile's bookkeeping, checked with make's dry run on a copy of its inputs: a
tree after 'make clean' is rebuilt by the next make, and clean keeps the results."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from helpers import REPO


def make(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-C", str(tree), *args], capture_output=True, text=True, timeout=60)


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    (tree / "harness" / "qemu").mkdir(parents=True)
    for name in ("Makefile", "pyproject.toml", "setup.py", "harness/_intervals.c", "harness/qemu/_lifeline.c"):
        shutil.copy2(REPO / name, tree / name)
    stamps = tree / ".cache" / "stamps"
    stamps.mkdir(parents=True)
    now = time.time()
    for i, name in enumerate(("debian", "venv-base", "venv")):   # every stamp newer than its inputs
        (stamps / name).touch()
        os.utime(stamps / name, (now + 10 + i, now + 10 + i))
    return tree


@pytest.mark.parametrize("built", ["harness/_intervals.cpython-311-x86_64-linux-gnu.so", "harness/qemu/_lifeline"])
def test_a_deleted_build_output_makes_the_venv_stamp_stale(tmp_path: Path, built: str) -> None:
    tree = _tree(tmp_path)
    outputs = [tree / "harness" / "_intervals.cpython-311-x86_64-linux-gnu.so", tree / "harness" / "qemu" / "_lifeline"]
    for output in outputs:
        output.write_bytes(b"")
    assert make(tree, "-q", "setup").returncode == 0, "a complete tree must be up to date"
    (tree / built).unlink()
    assert make(tree, "-q", "setup").returncode == 1
    plan = make(tree, "-n", "setup").stdout
    assert "pip install -q --no-build-isolation --config-settings editable_mode=compat -e '.[test]'" in plan
    assert "apt-get" not in plan and "venv-base" not in plan   # only the build's step


def test_clean_keeps_results_and_removes_build_outputs(tmp_path: Path) -> None:
    plan = make(_tree(tmp_path), "-n", "clean").stdout
    assert "harness/*.so" in plan and "build" in plan
    assert "runs" not in plan and "harness-failures" not in plan
