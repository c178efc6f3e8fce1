"""Answers that depend only on the QEMU binary (harness/qemu/binaryfacts.py): kept across
runs, used only for the same binary and version, and giving the layout QEMU gives."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from harness.qemu.binaryfacts import BinaryFacts
from harness.qemu.layout import read_static_facts, snapshot
from harness.qemu.machine import Machine
from harness.qemu.qomfacts import STATIC_QUERIES
from helpers import machine_spec

SPEC = "machine: pc\ndevices:\n  - {model: isa-serial, id: com1, iobase: 0x3f8, irq: 4}\n"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "qemu-facts"


def _layout_and_asked(early: bool) -> tuple[dict, list[str]]:
    """A layout of SPEC, and the commands the harness sent QEMU for it."""
    machine = Machine(machine_spec(SPEC))
    try:
        if early:
            machine.launch(start_firmware=True, ask=STATIC_QUERIES)
        else:
            machine.launch()
            machine.start_firmware()
        read_static_facts(machine)
        machine.run_firmware()
        layout = snapshot(machine).to_dict()
        lines = [json.loads(line) for line in machine.qmp_log_path.read_text().splitlines()]
    finally:
        machine.close()
    return layout, [line["cmd"]["execute"] for line in lines if "cmd" in line]


@pytest.mark.parametrize("early", [False, True])
def test_the_type_listing_is_asked_once_per_binary(cache, early) -> None:
    first, asked_first = _layout_and_asked(early)
    assert "qom-list-types" in asked_first
    second, asked_second = _layout_and_asked(early)
    assert "qom-list-types" not in asked_second   # answered by the binary's cache
    assert second == first


def test_answers_of_another_version_or_another_file_are_not_used(cache) -> None:
    _layout_and_asked(False)
    kept, = cache.glob("*.json")
    data = json.loads(kept.read_text())
    data["version"] = "6.2.0 someone else's build"
    kept.write_text(json.dumps(data))
    _, asked = _layout_and_asked(False)
    assert "qom-list-types" in asked                         # the greeting said otherwise: asked again
    assert json.loads(kept.read_text())["version"].startswith("7.")  # and kept for the real one
    data = json.loads(kept.read_text())
    data["identity"][1] += 1                                 # another file at that path (an upgrade)
    kept.write_text(json.dumps(data))
    assert BinaryFacts("qemu-system-x86_64").answers == {}


def test_a_cache_others_can_write_is_not_read(cache) -> None:
    _layout_and_asked(False)
    kept, = cache.glob("*.json")
    assert BinaryFacts("qemu-system-x86_64").answers
    kept.chmod(kept.stat().st_mode | stat.S_IWOTH)
    assert BinaryFacts("qemu-system-x86_64").answers == {}
