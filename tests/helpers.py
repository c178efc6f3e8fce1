"""Helpers shared by the test modules (tests/ is on sys.path under pytest)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.config import MachineSpec, parse_machine_text

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"


def machine_spec(text: str, source: str = "<test>") -> MachineSpec:
    """A MachineSpec from inline YAML (the catalog is the repository's device_models/)."""
    return parse_machine_text(text, source)


def qemu_pids() -> set[int]:
    """Pids of every running qemu-system process on this machine."""
    out = subprocess.run(["pgrep", "-f", "^[^ ]*qemu-system"], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}
