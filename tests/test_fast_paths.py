"""The harness's fast paths give what the slow ones gave (issue 21): the lazy CLI, the
qtest port channel with posted writes, pipelined QMP, and libyaml parsing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness import yamlio
from harness.errors import HarnessError
from harness.qemu.bus import HmpPorts, QtestPorts, machine_ports
from harness.qemu.layout import snapshot
from harness.qemu.machine import Machine, MachineDied, QEMUError, QMPTimeout
from harness.qemu.qtest import QtestError
from helpers import CONFIGS, REPO, machine_spec

SERIAL = "machine: pc\ndevices:\n  - {model: isa-serial, id: com1, iobase: 0x3f8, irq: 4}\n"
SCRATCH, THR = 0x3FF, 0x3F8


def _harness_modules(*argv: str) -> set[str]:
    """The harness modules a CLI run of ``argv`` imported (it may exit through SystemExit)."""
    code = ("import sys\nfrom harness.cli import main\ntry:\n    main(sys.argv[1:])\n"
            "except SystemExit:\n    pass\n"
            "print('MODULES', ' '.join(m for m in sys.modules if m.split('.')[0] == 'harness'))")
    out = subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO, capture_output=True, text=True,
                         timeout=60).stdout
    line, = [l for l in out.splitlines() if l.startswith("MODULES")]
    return set(line.split()[1:])


def test_help_imports_no_command_and_a_command_imports_only_its_own() -> None:
    assert _harness_modules("--help") == {"harness", "harness.cli", "harness.errors"}
    chosen = _harness_modules("reap", "--help")
    assert "harness.commands.reap" in chosen
    assert not {m for m in chosen if m.startswith("harness.commands.") and m != "harness.commands.reap"}
    assert not {m for m in chosen if m.startswith("harness.nt")}  # reap needs no NT model
    # An unknown command is refused by the parser before anything is imported.
    assert _harness_modules("bogus") == {"harness", "harness.cli", "harness.errors"}


@pytest.fixture(scope="module")
def serial_machine():
    with Machine(machine_spec(SERIAL)) as m:
        m.run_firmware()
        yield m


def test_qtest_reads_what_hmp_reads(serial_machine) -> None:
    m = serial_machine
    fast, slow = machine_ports(m), HmpPorts(m)
    assert isinstance(fast, QtestPorts)
    for port, size in ((0x21, 1), (0xA1, 1), (0x4D0, 1), (0x4D1, 1), (0x3FD, 1), (0x3FE, 1), (0xCF8, 4)):
        assert fast.read_port(port, size) == slow.read_port(port, size), hex(port)
    for slot in range(4):
        for offset, size in ((0x00, 4), (0x04, 2), (0x0A, 2), (0x3D, 1)):
            assert fast.read_config(0, slot, 0, offset, size) == slow.read_config(0, slot, 0, offset, size)
    fast.write_port(SCRATCH, 0x3C)
    assert slow.read_port(SCRATCH) == 0x3C
    slow.write_port(SCRATCH, 0xC3)
    assert fast.read_port(SCRATCH) == 0xC3


def test_posted_writes_go_out_with_the_next_read_or_any_qmp_command(serial_machine) -> None:
    m = serial_machine
    ports, channel = machine_ports(m), m.qtest
    with ports.posting():
        before = channel.exchanges
        ports.write_port(SCRATCH, 0x11)
        ports.write_port(SCRATCH, 0x22)
        assert channel.exchanges == before  # held back
        assert ports.read_port(SCRATCH) == 0x22  # both writes rode along with the read
        assert channel.exchanges == before + 1
        ports.write_port(SCRATCH, 0x33)
        # A QMP command is ordered after every posted write.
        assert "0x33" in m.hmp(f"i /b {SCRATCH:#x}")
        ports.write_port(THR, ord("Q"))
        assert channel.exchanges == before + 2
    assert channel.exchanges == before + 3  # the block's end sent the last one
    assert (m.run_dir / "com1.out").read_bytes().endswith(b"Q")


def test_pipelined_qmp_answers_in_order_with_each_refusal_in_its_place(serial_machine) -> None:
    m = serial_machine
    answers = m.qmp_many([("query-status", None), ("qom-get", {"path": "/nowhere", "property": "type"}),
                          ("qom-get", {"path": "/machine/peripheral/com1", "property": "type"})])
    assert answers[0]["status"] == "shutdown"
    assert isinstance(answers[1], QEMUError)
    assert answers[2] == "isa-serial"
    assert m.qmp_many([]) == []


def test_snapshot_is_the_same_asked_one_command_at_a_time(serial_machine) -> None:
    """The pipelined QOM reads and the container-listing types give what one qom-get per
    question gives (a machine without qmp_many is asked that way)."""
    m = serial_machine

    class OneByOne:
        static_facts: dict = {}

        def __getattr__(self, name: str):
            if name == "qmp_many":
                raise AttributeError(name)
            return getattr(m, name)

    m.static_facts.clear()
    assert snapshot(OneByOne(), "post-firmware") == snapshot(m, "post-firmware")


def test_a_refused_qtest_command_is_an_error_and_the_channel_goes_on(serial_machine) -> None:
    with pytest.raises(QtestError, match="bogus"):
        serial_machine.qtest.execute(["bogus 1"])
    assert machine_ports(serial_machine).read_port(0x21) == HmpPorts(serial_machine).read_port(0x21)
    with pytest.raises(HarnessError, match="one line"):
        serial_machine.qtest.execute(["inb 0x21\ninb 0x21"])


def test_a_stopped_qemu_times_out_and_a_dead_one_is_reported_dead() -> None:
    with Machine(machine_spec(SERIAL)) as m:
        os.kill(m.pid, signal.SIGSTOP)
        try:
            with pytest.raises(QMPTimeout, match="qtest 'inb 0x21' got no answer within 0.3 s"):
                m.qtest.execute(["inb 0x21"], timeout=0.3)
        finally:
            os.kill(m.pid, signal.SIGCONT)
    with Machine(machine_spec(SERIAL)) as m:
        os.kill(m.pid, signal.SIGKILL)
        with pytest.raises(MachineDied, match="during qtest"):
            machine_ports(m).read_port(0x21)


def test_the_hmp_channel_remains_selectable(monkeypatch) -> None:
    monkeypatch.setenv("HARNESS_PORT_CHANNEL", "hmp")
    with Machine(machine_spec(SERIAL)) as m:
        assert m.qtest is None and isinstance(machine_ports(m), HmpPorts)
        assert "qtest" not in " ".join(m.argv)
    monkeypatch.setenv("HARNESS_PORT_CHANNEL", "fast")
    with pytest.raises(HarnessError, match="HARNESS_PORT_CHANNEL must be 'qtest' or 'hmp', not 'fast'"):
        with Machine(machine_spec(SERIAL)):
            pass


def _tree(value):
    if isinstance(value, yamlio.Node):
        return ("node", value.line, [(k, value.line_of(k), _tree(value[k])) for k in value])
    if isinstance(value, list):
        return [_tree(v) for v in value]
    return (type(value).__name__, value)


@pytest.mark.skipif(yamlio._FastLoader is None, reason="PyYAML without libyaml")
def test_libyaml_and_the_python_loader_build_the_same_trees(monkeypatch) -> None:
    files = sorted((REPO / "device_models").glob("*.yaml")) + sorted(CONFIGS.rglob("*.yaml"))
    fast = [_tree(yamlio.load_file(p)) for p in files]
    monkeypatch.setattr(yamlio, "_FastLoader", None)
    slow = [_tree(yamlio.load_file(p)) for p in files]
    assert len(files) > 20 and fast == slow


def test_an_error_still_comes_from_the_python_loader() -> None:
    for text, message in (("a: 1\na: 2\n", "duplicate key 'a' (first on line 1)"),
                          ("a: [1, 2\n", "YAML syntax error"),
                          ("a: \x07\n", "character U+0007 is not allowed in YAML")):
        with pytest.raises(HarnessError, match=re.escape(message)):
            yamlio.load_text(text, "<t>")


def test_a_registry_without_per_commit_sync_keeps_everything_once_closed(tmp_path: Path) -> None:
    from harness.nt.registry import Registry
    path = tmp_path / "reg.sqlite"
    with Registry(path, durable_commits=False) as reg:
        reg.create_key(r"\Registry\Machine\Software\Bench")
        reg.set_value(r"\Registry\Machine\Software\Bench", "Answer", 42)
        assert reg._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    # Closing checkpointed the write-ahead log into the database file.
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    with Registry(path, create=False) as reg:
        assert reg.get_value(r"\Registry\Machine\Software\Bench", "Answer").data == (42).to_bytes(4, "little")
        assert reg._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL, the default
