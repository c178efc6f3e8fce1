"""``harness models``: listing, showing, the generated README table; and the machine-file
keys that came with the new models (IDE channel, COM/LPT index)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.commands.models import BEGIN, END, markdown_table, update_text
from harness.config import parse_machine_text
from harness.devices import load_catalog
from harness.errors import ConfigError, HarnessError
from helpers import REPO, machine_error

CATALOG = load_catalog()


def test_readme_model_table_is_current() -> None:
    text = (REPO / "README.md").read_text()
    assert update_text(text, CATALOG) == text, \
        "README's model table is stale: run 'harness models --update-readme README.md'"


def test_table_has_one_row_per_model_with_measured_decodes() -> None:
    rows = [line for line in markdown_table(CATALOG).splitlines()[2:]]
    assert len(rows) == len(CATALOG) >= 40
    vga = next(r for r in rows if r.startswith("| `VGA` |"))
    assert "PCI 1234:1111 class 0300 no pin" in vga and "memory 0xa0000-0xbffff" in vga
    serial = next(r for r in rows if r.startswith("| `isa-serial` |"))
    assert "iobase 0x3f8/0x2f8/0x3e8/0x2e8" in serial and "irq 4/3/5" in serial and serial.endswith("| serial |")


def test_update_text_needs_one_pair_of_markers(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="exactly one pair of markers"):
        update_text("no markers here", CATALOG)
    page = tmp_path / "page.md"
    page.write_text(f"# title\n\n{BEGIN}\nold\n{END}\nafter\n")
    assert main(["models", "--update-readme", str(page)]) == 0
    text = page.read_text()
    assert "old" not in text and text.endswith(f"{END}\nafter\n") and "| `sga` |" in text
    assert update_text(text, CATALOG) == text  # idempotent


@pytest.mark.parametrize("content, says", [
    (None, "cannot read file: No such file or directory"),
    (b"\x7fELF\x02\xd0\x00", "not UTF-8 text (byte 5: invalid continuation byte)"),
    (b"no markers\n", "exactly one pair of markers"),
])
def test_update_readme_refuses_a_file_it_cannot_use_naming_it(tmp_path: Path, capsys, content, says) -> None:
    """One line naming the file, exit 2, the file untouched (a binary file raised a
    UnicodeDecodeError traceback; a missing one said '[Errno 2] ...')."""
    page = tmp_path / "page.md"
    if content is not None:
        page.write_bytes(content)
    assert main(["models", "--update-readme", str(page)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"harness models: error: {page}: ") and says in err and "Traceback" not in err
    assert (page.read_bytes() if content is not None else None) == content


def test_models_list_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert f"{len(CATALOG)} models" in out and "isa-ipmi-kcs" in out
    assert main(["models", "vga"]) == 0  # names are matched without case as a fallback
    shown = capsys.readouterr().out
    assert shown.startswith("VGA: ") and "ports 0x3c0-0x3cf" in shown
    assert main(["models", "isa-serial"]) == 0
    shown = capsys.readouterr().out
    assert "instance 1   iobase 0x2f8, irq 3" in shown and "property     index (index) choices 0, 1, 2, 3" in shown
    assert main(["models", "isa-serail"]) == 2
    assert "unknown device model 'isa-serail' (did you mean 'isa-serial'" in capsys.readouterr().err


# ---------------------------------------------------------------------- machine-file keys
@pytest.mark.parametrize(("device", "field", "message"), [
    ("{model: ide-hd, id: d, channel: 2}", "devices[0].channel", "out of range"),
    ("{model: ide-cd, id: d, unit: 2}", "devices[0].unit", "out of range"),
    ("{model: ide-cd, id: d, bus: x}", "devices[0].bus", "names its 'controller'"),
    ("{model: ide-cd, id: d, controller: nope}", "devices[0].controller", "not the id of an isa-ide"),
    ("{model: isa-serial, id: d, channel: 0}", "devices[0].channel", "only IDE drives have a channel"),
    ("{model: isa-serial, id: d, index: 4}", "devices[0].index", "index value 4 out of range 0..3"),
    ("{model: isa-serial, id: d, index: '1'}", "devices[0].index", "expected an integer"),
])
def test_new_device_keys_are_validated(device: str, field: str, message: str) -> None:
    machine_error(f"machine: pc\ndevices:\n  - {device}\n", 3, field, message)


def test_q35_ide_buses_take_one_drive_each() -> None:
    with pytest.raises(ConfigError, match="one drive each"):
        parse_machine_text("machine: q35\ndevices:\n  - {model: ide-cd, id: d, channel: 5, unit: 1}\n", "m.yaml")
    spec = parse_machine_text("machine: q35\ndevices:\n  - {model: ide-cd, id: d, channel: 5}\n")
    assert spec.device("d").channel == 5
    assert parse_machine_text(__import__("yaml").safe_dump(spec.to_dict())).device("d").channel == 5


def test_index_picks_the_defaults_and_counts_like_qemu() -> None:
    spec = parse_machine_text("machine: pc\ndevices:\n  - {model: isa-serial, id: a, index: 1}\n"
                              "  - {model: isa-serial, id: b}\n  - {model: isa-parallel, id: c, index: 2}\n")
    assert dict(spec.device("a").settings) == {"iobase": 0x2F8, "irq": 3, "index": 1}
    # QEMU's own counter has reached 1 after the first port, whatever its index: COM2 again.
    assert dict(spec.device("b").settings) == {"iobase": 0x2F8, "irq": 3}
    assert dict(spec.device("c").settings) == {"iobase": 0x3BC, "irq": 7, "index": 2}


@pytest.mark.parametrize(("devices", "field", "message"), [
    # QEMU gives the first drive unit 0, then refuses "IDE unit 0 is in use" (measured)
    ("  - {model: ide-cd, id: a}\n  - {model: ide-cd, id: b, unit: 0}\n", "devices[1].unit", "unit 0 of ide.0 is already 'a'"),
    ("  - {model: ide-cd, id: a, channel: 1}\n  - {model: ide-hd, id: b, channel: 1}\n  - {model: ide-cd, id: c, channel: 1}\n",
     "devices[2].model", "ide.1 takes 2 drive(s): a, b already sit there"),
    ("  - {model: floppy, id: a, unit: 1}\n  - {model: floppy, id: b}\n  - {model: floppy, id: c}\n",
     "devices[2].model", "the built-in floppy controller takes 2 drive(s)"),
])
def test_drive_places_are_checked_like_qemu(devices: str, field: str, message: str) -> None:
    machine_error(f"machine: pc\ndevices:\n{devices}", range(4, 7), field, message)
    # a drive without a unit takes the free one: these are fine
    parse_machine_text("machine: pc\ndevices:\n  - {model: ide-cd, id: a, unit: 1}\n  - {model: ide-cd, id: b}\n")
