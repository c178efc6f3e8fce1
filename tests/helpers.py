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


def tiny_bios(code: bytes) -> bytes:
    """A 64 KiB firmware image whose reset vector (offset 0xfff0) runs ``code``.

    For guests that must misbehave on purpose: the CPU starts at 0xffff:fff0 in real mode
    with this image mapped below 1 MiB and 4 GiB; the rest of the image is ``hlt``.
    """
    if len(code) > 16:
        raise ValueError("the reset vector has 16 bytes before the end of the image")
    image = bytearray(b"\xf4" * 0x10000)
    image[0xFFF0:0xFFF0 + len(code)] = code
    return bytes(image)


#: Real-mode code for tiny_bios: spin forever (``jmp $``) / write 1 to pvpanic's port 0x505.
SPIN_FOREVER = bytes([0xEB, 0xFE])
PANIC_VIA_PVPANIC = bytes([0xBA, 0x05, 0x05, 0xB0, 0x01, 0xEE, 0xF4, 0xEB, 0xFD])

FIGURES = REPO / "build" / "reliability"


def record_figures(name: str, **figures: object) -> None:
    """Keep the numbers a reliability test measured (``build/reliability/NAME.json``);
    ``make reliability-figures`` prints them all."""
    import json
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / f"{name}.json").write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")
