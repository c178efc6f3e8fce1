"""A real headless browser for the HTML reports: Debian's chromium (the Makefile installs
it), run with a fresh profile and nothing that reaches the network."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--enable-logging=stderr", "--v=0")
#: A console message of the page (chromium logs them as "...:CONSOLE(line)] ..." or
#: "...:CONSOLE:line] ..." depending on its version).
_CONSOLE = re.compile(r":CONSOLE[(:]")


def render(page: Path, timeout: float = 120) -> tuple[str, list[str]]:
    """The DOM chromium builds from ``page`` and the console messages it logged."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed; 'make setup' installs it (Debian package chromium)")
    with tempfile.TemporaryDirectory(prefix="harness-chromium-") as profile:
        done = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                               page.resolve().as_uri()], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, [line for line in done.stderr.splitlines() if _CONSOLE.search(line)]
