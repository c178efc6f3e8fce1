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
    assert "inb" not in m.qemu_log.read_text()  # qtest does not log its traffic to QEMU's output


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
    assert answers[0]["status"] == "paused"  # stopped at the firmware's end
    assert isinstance(answers[1], QEMUError)
    assert answers[2] == "isa-serial"
    assert m.qmp_many([]) == []


def test_no_posted_writes_on_a_machine_running_a_guest(serial_machine) -> None:
    from harness.qemu.livebus import LiveBus

    class Running:
        boot = object()  # what a machine booted with a guest kernel has

        def __getattr__(self, name: str):
            return getattr(serial_machine, name)

    bus = LiveBus(Running())
    with bus.posted_writes():
        before = serial_machine.qtest.exchanges
        bus.write_port(SCRATCH, 0x44)
        assert serial_machine.qtest.exchanges == before + 1  # went out at once


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


@pytest.mark.skipif(yamlio._fast_loader() is None, reason="PyYAML without libyaml")
def test_libyaml_and_the_python_loader_build_the_same_trees(monkeypatch) -> None:
    files = sorted((REPO / "device_models").glob("*.yaml")) + sorted(CONFIGS.rglob("*.yaml"))
    fast = [_tree(yamlio.load_file(p)) for p in files]
    monkeypatch.setattr(yamlio, "_fast_loader", lambda: None)
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
    with Registry(path, sync="close") as reg:
        reg.create_key(r"\Registry\Machine\Software\Bench")
        reg.set_value(r"\Registry\Machine\Software\Bench", "Answer", 42)
        assert reg._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    # Closing checkpointed the write-ahead log into the database file.
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    with Registry(path, create=False) as reg:
        assert reg.get_value(r"\Registry\Machine\Software\Bench", "Answer").data == (42).to_bytes(4, "little")
        assert reg._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL, the default


SHIPPED_MACHINES = sorted((CONFIGS / "machines").glob("*.yaml")) + sorted((CONFIGS / "conflicts").glob("*.yaml"))


def test_isa_devices_from_qtree_are_the_qom_walks_on_every_shipped_machine() -> None:
    """One ``info qtree`` instead of a qom-list per device and a qom-get per property gives
    exactly what the QOM walk gives (QOM does not need the firmware: launched is enough)."""
    from harness.config import load_machine
    from harness.qemu.layout import QOM_CONTAINERS, QomReader
    key = lambda d: (d.type, d.path)  # noqa: E731
    for path in SHIPPED_MACHINES:
        with Machine(load_machine(path)) as m:
            reader = QomReader(m)
            fast = reader._read_isa_devices()
            assert reader.asked < 20, path  # the walk asks 30-60
            isa_types, *listings = m.qmp_many(
                [("qom-list-types", {"implements": "isa-device", "abstract": False})]
                + [("qom-list", {"path": c}) for c in QOM_CONTAINERS])
            devices = reader._isa_in_containers({t["name"] for t in isa_types}, listings)
            assert sorted(fast, key=key) == sorted(reader._walk_isa_devices(devices), key=key), path


QTREE = '''bus: main-system-bus
  type System
  dev: hpet, id ""
    timers = 3 (0x3)
  dev: piix3, id ""
    bus: isa.0
      type ISA
      dev: isa-serial, id "com1"
        index = 0 (0x0)
        iobase = 1016 (0x3f8)
        irq = 4 (0x4)
        chardev = "c"
      dev: isa-fdc, id ""
        iobase = 1008 (0x3f0)
        dma = -1 (0xffffffffffffffff)
        bus: floppy-bus.0
          type floppy-bus
          dev: floppy, id "fd0"
            unit = 0 (0x0)
            irq = 9 (0x9)
        iosize = 512 (512 B)
      dev: i8257, id ""
        base = 0 (0x0)
  dev: other, id ""
    iobase = 5 (0x5)
'''


def test_parse_qtree_keeps_only_isa_devices_and_their_integer_resources() -> None:
    from harness.qemu.layout import parse_qtree_isa
    assert parse_qtree_isa(QTREE) == [("isa-serial", "com1", {"index": 0, "iobase": 0x3F8, "irq": 4}),
                                      ("isa-fdc", None, {"iobase": 0x3F0, "dma": -1}),
                                      ("i8257", None, {})]


def test_a_qtree_that_does_not_match_one_to_one_is_not_used() -> None:
    from harness.qemu.layout import QomReader
    reader = QomReader(type("NoMachine", (), {"static_facts": {}})())
    devices = [("/machine/peripheral/com1", "com1", "isa-serial"), ("/machine/unattached/device[3]", None, "i8257")]
    qtree = [("isa-serial", "com1", {"iobase": 0x3F8}), ("i8257", None, {})]
    assert [d.properties for d in reader._match_qtree(devices, qtree)] == [{"iobase": 0x3F8}, {}]
    assert reader._match_qtree(devices, qtree[:1]) is None                     # one missing
    assert reader._match_qtree(devices, [("isa-parallel", "com1", {}), qtree[1]]) is None  # other type
    assert reader._match_qtree(devices, [qtree[0], ("i8257", "dma", {})]) is None  # named, not anonymous


def test_a_scratch_registry_never_syncs_and_a_bad_mode_is_refused(tmp_path: Path) -> None:
    from harness.nt.registry import Registry, RegistryError
    with Registry(tmp_path / "scratch.sqlite", sync="never") as reg:
        assert reg._conn.execute("PRAGMA synchronous").fetchone()[0] == 0  # OFF
        reg.create_key(r"\Registry\Machine\Software\Scratch")
    with Registry(tmp_path / "scratch.sqlite", create=False) as reg:  # committed all the same
        assert reg.key_exists(r"\Registry\Machine\Software\Scratch")
    with pytest.raises(RegistryError, match="sync must be one of commit, close, never, not 'sometimes'"):
        Registry(tmp_path / "other.sqlite", sync="sometimes")


def test_detection_batched_finds_what_one_access_at_a_time_finds() -> None:
    """Detection reads several registers in one exchange and posts its writes on a LiveBus;
    through a bus with only the BusAccess methods it does one access at a time: same result."""
    from harness.config import load_machine
    from harness.nt.detect import HardwareDetector
    from harness.qemu.livebus import LiveBus

    class OneAtATime:
        def __init__(self, bus):
            self._bus = bus

        def __getattr__(self, name):
            if name in ("read_ports", "posted_writes", "post_reads"):
                raise AttributeError(name)
            return getattr(self._bus, name)

    with Machine(load_machine(CONFIGS / "machines" / "default.yaml")) as m:
        m.run_firmware()
        # The first detection finds the keyboard's IRQ 1 edge fresh, later ones find it
        # latched (and fall back to the PC/AT line): compare in the later state.
        HardwareDetector(LiveBus(m)).detect()
        sent: list[bytes] = []  # every qtest line, in the order QEMU gets them
        send = m.qtest._send
        m.qtest._send = lambda data, *rest: (sent.extend(data.splitlines()), send(data, *rest))[1]
        before = m.qtest.exchanges
        batched = HardwareDetector(LiveBus(m)).detect()
        middle, batched_lines = m.qtest.exchanges, len(sent)
        plain = HardwareDetector(OneAtATime(LiveBus(m))).detect()
        assert batched == plain and len(batched.controllers) >= 5
        assert middle - before < m.qtest.exchanges - middle
        # The same accesses in the same order, reads posted or not: only the exchanges differ.
        assert sent[:batched_lines] == sent[batched_lines:]
