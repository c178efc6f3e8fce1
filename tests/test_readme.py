"""Every block of README.md runs (or is parsed, where its mark says it is a fragment), so
the README cannot drift from the code.  See tests/readme_blocks.py for the marks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import REPO
from readme_blocks import USER_SECTION, Block, blocks, commands

BLOCKS = [b for b in blocks() if b.section != USER_SECTION]


def scratch_env(bin_dir: Path) -> dict[str, str]:
    """The environment of a README command: the venv's commands first on PATH, nothing
    of this test session (xdist's worker variables) leaking into an inner pytest."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "HARNESS_DEVICE_MODELS"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_block(block: Block, folder: Path, env: dict[str, str], python: str) -> None:
    """Do what ``block`` and its mark say, in ``folder``; fail naming the README line."""
    def shell(command: str, expected: int = 0) -> None:
        done = subprocess.run(["sh", "-c", command], cwd=folder, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == expected, (f"{block.where}: `{command}` exited {done.returncode}, "
                                             f"expected {expected}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        assert "Traceback" not in done.stderr, f"{block.where}: `{command}`\n{done.stderr[-3000:]}"

    if block.skip:
        pytest.skip(f"{block.where}: {block.skip}")
    if block.file:
        target = folder / block.file
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.text)
    for command in block.before:
        shell(command)
    if block.fragment:
        if block.lang == "python":
            compile(block.text, block.where, "exec")
        elif block.lang == "yaml":
            yaml.safe_load(block.text)
        return
    if block.file:
        return
    if block.lang == "sh":
        for command, expected in commands(block):
            shell(command, expected)
    elif block.lang == "python":
        done = subprocess.run([python, "-c", block.text], cwd=folder, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, f"{block.where}:\n{done.stderr[-3000:]}"
    elif block.lang == "yaml":
        done = subprocess.run([python, "-c", "import sys; from harness.config import parse_machine_text; "
                                             "parse_machine_text(sys.stdin.read(), sys.argv[1])", block.where],
                              cwd=folder, env=env, input=block.text, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    else:
        pytest.fail(f"{block.where}: a ```{block.lang} block needs a readme-test mark saying how to run it")


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A folder laid out like the clone the README speaks from, without writing into it."""
    venv = Path(sys.executable).parent.parent
    for name, target in (("configs", REPO / "configs"), ("machines", REPO / "configs" / "machines"),
                         (".venv", venv)):
        (tmp_path / name).symlink_to(target)
    return tmp_path


# Two groups, so two xdist workers share the blocks (each block has its own folder).
@pytest.mark.parametrize("block", [pytest.param(b, id=f"line{b.line}-{b.lang}",
                                                marks=pytest.mark.xdist_group(f"readme-{i % 2}"))
                                   for i, b in enumerate(BLOCKS)])
def test_readme_block(block: Block, scratch: Path) -> None:
    run_block(block, scratch, scratch_env(Path(sys.executable).parent), sys.executable)


def test_marks_say_why_and_cover_every_kind() -> None:
    every = blocks()
    assert all(b.skip != "?" and b.fragment != "?" for b in every)
    assert [b for b in every if b.section == USER_SECTION], "the user walkthrough is gone"
    skipped = [b for b in every if b.skip]
    assert len(skipped) <= 2, f"more README blocks skipped than expected: {[b.where for b in skipped]}"
