"""What a matrix worker and the machine commands import, and the cheaper readers that
keep them light (issue 21): a cell's JSON read without PyYAML to the same document, and
the modules a worker's first cell must not load."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from harness import yamlio
from harness.errors import ConfigError
from harness.matrix import _cell_from_wire, _cell_to_wire, load_matrix
from helpers import CONFIGS, REPO


def _same(a: object, b: object) -> bool:
    """Equal, of the same types, with the same source, lines and field on every mapping."""
    if isinstance(a, yamlio.Node):
        return (isinstance(b, yamlio.Node) and list(a) == list(b) and a._lines == b._lines
                and (a.source, a.line, a.field) == (b.source, b.line, b.field)
                and all(_same(a[k], b[k]) for k in a))
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


def _both(text: str) -> tuple[object, object]:
    """(load_json's reading, load_text's reading) of ``text``; an error as its message."""
    out = []
    for reader in (yamlio.load_json, yamlio.load_text):
        try:
            out.append(reader(text, "<wire>"))
        except ConfigError as exc:
            out.append(("error", str(exc)))
    return out[0], out[1]


def _shipped_specs() -> list[dict]:
    matrix = load_matrix(CONFIGS / "matrices" / "devices.yaml")
    return [c.spec.to_dict() for c in matrix.cells]


def test_json_of_every_shipped_cell_reads_as_yaml_reads_it() -> None:
    specs = _shipped_specs()
    assert len(specs) > 50
    for spec in specs:
        for text in (json.dumps(spec), json.dumps(spec, separators=(",", ":")), json.dumps(spec, sort_keys=True)):
            fast, slow = _both(text)
            assert isinstance(fast, yamlio.Node) and _same(fast, slow), text


@pytest.mark.parametrize("value", [
    {"a": 1, "b": [True, False, None, -0, 12345678901234567890], "c": {"d": {"e": []}}, "f": {}},
    {"text": "quote \" backslash \\ slash / controls \b\f\n\r\t\x00\x1f end"},
    {"latin": "é ü ß", "cjk": "中文", "astral": "😀 𝔘"},   # escaped; astral ones as surrogate pairs
    {"s": "1e5", "t": "0x3f8", "u": "yes", "v": "~", "w": "<<", "x": "- a", "y": "[1]", "z": ": :"},
    {"<<": {"a": 1}, "&a": 1, "*a": 2, "!!int": "3", "#": "c"},
    ["a", 1, [2, [3, {"k": "v"}]]],
    "plain", 7, None, True, [], {},
    {"float": 1.5}, {"exp": 1e100}, {"nan": float("nan")}, {"inf": float("-inf")},
    {"long": int("9" * 101)}, {"edge": int("9" * 100)},
])
def test_json_reads_as_yaml_reads_it_for_edge_values(value: object) -> None:
    for text in (json.dumps(value), json.dumps(value, separators=(",", ":"))):
        fast, slow = _both(text)
        assert _same(fast, slow), (text, fast, slow)


@pytest.mark.parametrize("text", [
    '{"a": 1, "a": 2}',                    # a key twice: YAML's error, with its line
    '{"a": 1,\n "b": [1,\n 2]}',           # more than one line: keys on their own lines
    '{"a":\t1}', '{"a": "\\u00e9"}', '{"a": "é"}', '{"a": "\\ud83d\\ude00"}', '{"a": "\x85"}',
    '{"a": 1', '{"a": 1}}', '{a: 1}', "", "   ", '{"a": 01}', '{"a": .5}', '{"a": NaN}', '{"a": -Infinity}',
    '{"a": "\\x41"}', '{"a": "\\/"}', '{"a": [1, 2,]}', "[1, 2] [3]", '{"a": "%s"}' % ("x" * 5000),
    '{"a": 1} # comment', "--- {}", '{"a": !!str 1}', '{"a": &x 1, "b": *x}',
])
def test_json_and_yaml_agree_on_odd_texts(text: str) -> None:
    fast, slow = _both(text)
    assert _same(fast, slow), (text, fast, slow)


def test_a_key_twice_is_reported_with_its_line_and_field() -> None:
    with pytest.raises(ConfigError, match=r"<wire>:1: a: duplicate key 'a'"):
        yamlio.load_json('{"a": 1, "a": 2}', "<wire>")


def test_a_cell_off_the_wire_is_the_cell_sent() -> None:
    matrix = load_matrix(CONFIGS / "matrices" / "devices.yaml")
    for cell in matrix.cells[::7]:
        back = _cell_from_wire(json.loads(json.dumps(_cell_to_wire(cell))))
        assert back == cell, cell.id
        assert back.spec.config_hash() == cell.spec.config_hash()


#: Modules a matrix worker's first PIC cell needs none of (each was 1-12 ms of its start-up):
#: PyYAML (the cell comes as JSON), importlib.resources with zipfile (the package's folder),
#: tempfile, secrets and random (a registry file's name), the APIC model and the I/O APIC
#: table reader (a PIC machine), the .reg writer (a passing cell writes no .reg file).
WORKER_NEVER = {"yaml", "importlib.resources", "zipfile", "tempfile", "secrets", "random", "difflib",
                "harness.nt.apic", "harness.qemu.pic", "harness.nt.regfile"}


def test_a_matrix_workers_first_cell_stays_light(tmp_path) -> None:
    matrix = load_matrix(CONFIGS / "matrices" / "devices.yaml")
    cell, = [c for c in matrix.cells if c.id == "pc-tcg-e1000"]
    wire = tmp_path / "cell.json"
    wire.write_text(json.dumps(_cell_to_wire(cell)))
    code = ("import json, sys\nfrom pathlib import Path\nimport harness.matrix as m\n"
            "r = m.run_cell(m._cell_from_wire(json.loads(Path(sys.argv[1]).read_text())), Path(sys.argv[2]))\n"
            "print('OUTCOME', r.outcome, r.message)\nprint('MODULES', ' '.join(sorted(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", code, str(wire), str(tmp_path / "out")], cwd=REPO,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if line.startswith(("OUTCOME", "MODULES")))
    assert lines["OUTCOME"].startswith("pass"), lines["OUTCOME"]
    loaded = set(lines["MODULES"].split())
    assert "harness.job" in loaded and "harness.qemu.layout" in loaded  # (the cell ran)
    assert not WORKER_NEVER & loaded, WORKER_NEVER & loaded


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and every subcommand's parser below it."""
    out = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                out += _parsers(sub)
    return out


@pytest.mark.parametrize("columns", ["30", "100", "junk", None])
def test_the_cli_formats_help_as_argparse_does(monkeypatch, columns) -> None:
    """The CLI's own help formatter (it spares shutil's import before QEMU starts) sizes
    and prints help, usage and errors exactly as argparse's own does."""
    from harness import cli
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    for command in (None, *cli.COMMANDS):
        parsers = _parsers(cli._top_level(command))
        ours = [(p.format_help(), p.format_usage()) for p in parsers]
        assert all(p.formatter_class is cli._HelpFormatter for p in parsers)
        for p in parsers:
            p.formatter_class = argparse.HelpFormatter
        assert [(p.format_help(), p.format_usage()) for p in parsers] == ours, command
