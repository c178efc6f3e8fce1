"""Session checks for the test suite.  Tests that boot QEMU use the real binary (TCG)."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(autouse=True, scope="session")
def _require_qemu() -> None:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.exit("qemu-system-x86_64 is not installed; run 'make test' (it installs it)", returncode=3)
