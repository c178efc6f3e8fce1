"""The probe guest on real QEMU (TCG): build cache, what it sees, and how it fails."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from harness.config import load_machine
from harness.errors import HarnessError
from harness.guests import probe as probe_mod
from harness.guests.probe import (EXIT_STATUS, ProbeError, build_probe, command_line, parse_report,
                                  run_probe)
from harness.qemu.layout import Layout, snapshot
from harness.qemu.machine import GuestBoot, Machine, QMPTimeout
from helpers import CONFIGS, machine_spec

pytestmark = pytest.mark.qemu


@pytest.fixture(scope="module")
def default_views() -> tuple[Layout, probe_mod.ProbeReport]:
    spec = load_machine(CONFIGS / "machines" / "default.yaml")
    with Machine(spec) as m:
        m.run_firmware()
        layout = snapshot(m)
    return layout, run_probe(spec, layout)


def test_build_is_cached_and_follows_the_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = tmp_path / "probe"
    shutil.copytree(probe_mod.PROBE_SOURCES, sources)
    monkeypatch.setattr(probe_mod, "PROBE_SOURCES", sources)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    first = build_probe()
    assert first.is_file() and first.read_bytes()[:4] == b"\x7fELF"
    built_at = first.stat().st_mtime_ns
    assert build_probe() == first and first.stat().st_mtime_ns == built_at, "a current build is reused"
    (sources / "probe.c").write_text((sources / "probe.c").read_text() + "\n/* changed */\n")
    second = build_probe()
    assert second != first and second.is_file(), "a changed source gives a new build"


def test_a_broken_source_fails_with_the_compiler_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = tmp_path / "probe"
    shutil.copytree(probe_mod.PROBE_SOURCES, sources)
    (sources / "probe.c").write_text("this is not C\n")
    monkeypatch.setattr(probe_mod, "PROBE_SOURCES", sources)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ProbeError, match=r"building the probe guest failed[\s\S]*probe\.c"):
        build_probe()


def test_isa_devices_answer_at_the_modelled_ports_on_the_modelled_irqs(default_views) -> None:
    layout, report = default_views
    spec = load_machine(CONFIGS / "machines" / "default.yaml")
    isa = [d for d in spec.devices if d.model.bus == "isa"]
    assert isa, "the default machine has ISA devices"
    for dev in isa:
        seen = report.isa_device(dev.id)
        assert seen.present, dev.id
        assert seen.port == dev.settings[dev.model.probe_base]
        assert seen.irqs == (dev.settings["irq"],), (dev.id, seen.irqs)
    # The board's own floppy controller is probed too (found through the layout).
    fdc = next(d for d in report.isa if d.kind == "fdc")
    board = next(b for b in layout.isa if b.path == fdc.id)
    assert fdc.present and fdc.irqs == (board.properties["irq"],)
    sb16 = report.isa_device("sb0")
    assert (sb16.details["dsp_major"], sb16.details["dsp_minor"]) == (4, 5)


def test_pci_matches_the_snapshot_and_intx_follows_the_pirq_registers(default_views) -> None:
    layout, report = default_views
    assert report.pci_conf1
    assert {f.bdf for f in report.pci} == {f.bdf for f in layout.pci}, "bridges are followed"
    for fn in layout.pci:
        seen = report.pci_function(fn.bdf)
        assert (seen.vendor, seen.device) == (fn.vendor, fn.device)
        assert seen.interrupt_line == (fn.interrupt_line or 0)
        expected = {(b.index, b.base, b.size) for b in fn.bars if b.base is not None}
        assert {(b.index, b.base, b.size) for b in seen.bars} == expected, fn.bdf
    assert report.pirq_routes("pc") == layout.pirq.routes
    nic = report.pci_function(layout.pci_by_id("nic0").bdf)
    assert nic.irq_observed == (nic.interrupt_line,), "e1000 INTx arrives on the routed line"
    behind = report.pci_function(layout.pci_by_id("nic2").bdf)
    assert behind.bus == 1 and behind.irq_observed == (behind.interrupt_line,)
    assert report.pci_function(layout.pci_by_id("nic1").bdf).irq_observed is None  # rtl8139: no trigger


def test_a_shadowed_serial_shows_the_winners_irq() -> None:
    # Two UARTs at one base: the later one answers for both (qemu-facts §3a), so the probe
    # of the earlier one sees the later one's IRQ line.
    spec = machine_spec("""
machine: pc
devices:
  - {model: isa-serial, id: first, iobase: 0x2f8, irq: 3}
  - {model: isa-serial, id: second, iobase: 0x2f8, irq: 5}
""")
    report = run_probe(spec)
    assert report.isa_device("first").irqs == (5,)
    assert report.isa_device("second").irqs == (5,)


def test_an_isa_device_under_a_pci_io_bar_is_not_there() -> None:
    # SeaBIOS puts the e1000's I/O BAR at 0xc000; PCI BARs (priority 1) beat ISA devices.
    spec = machine_spec("""
machine: pc
devices:
  - {model: isa-serial, id: hidden, iobase: 0xc000, irq: 3}
  - {model: e1000, id: nic0, addr: 3}
""")
    report = run_probe(spec)
    assert report.isa_device("hidden").present is False


def test_report_and_exit_ports_move_out_of_a_devices_way() -> None:
    spec = machine_spec("machine: pc\ndevices:\n  - {model: isa-debugcon, id: dbg, iobase: 0xe9}\n")
    line, report_port, exit_port = command_line(spec)
    assert report_port != 0xE9 and f"report={report_port:#x}" in line
    report = run_probe(spec)
    assert report.isa_device("dbg").present  # debugcon reads back 0xe9


def test_a_channel_port_on_a_device_is_refused_before_launch(tmp_path: Path) -> None:
    spec = machine_spec("machine: pc\ndevices:\n  - {model: isa-serial, id: com1, iobase: 0x3f8}\n")
    boot = GuestBoot(kernel=build_probe(), report_port=0x3F9)
    with pytest.raises(HarnessError, match=r"report port 0x3f9 collides with device 'com1'"):
        Machine(spec, boot=boot, run_dir=tmp_path / "run")


def test_waiting_for_an_exit_that_never_comes_times_out_with_the_logs() -> None:
    spec = machine_spec("machine: pc\n")
    with Machine(spec, boot=GuestBoot(kernel=build_probe(), report_port=0xE9, exit_port=0xF4)) as m:
        start = time.monotonic()
        with pytest.raises(QMPTimeout, match=r"did not exit within 0.5 s \(waiting for the test's exit\)"):
            m.wait_exit(0.5, "the test's exit")  # never resumed: it stays paused
        assert time.monotonic() - start < 5


def test_probe_runs_on_q35_and_isapc() -> None:
    for name in ("q35", "isapc"):
        spec = load_machine(CONFIGS / "machines" / f"{name}.yaml")
        report = run_probe(spec)
        assert report.pci_conf1 == (name != "isapc")
        for dev in spec.devices:
            if dev.model.guest_probe:
                seen = report.isa_device(dev.id)
                assert seen.present and seen.irqs in (None, (dev.settings["irq"],)), (name, dev.id, seen)
        assert report.seconds < 30


def test_parse_report_refuses_broken_and_incomplete_reports() -> None:
    good_hello = '{"kind":"hello","cmdline":"x","elcr":"0x0c00","pic_mask":"0xffff","pci_conf1":true}'
    with pytest.raises(ProbeError, match="printed nothing"):
        parse_report("")
    with pytest.raises(ProbeError, match="without 'done'"):
        parse_report(good_hello + "\n")
    with pytest.raises(ProbeError, match=r"line 2: .*0x-hex"):
        parse_report(good_hello + '\n{"kind":"isa","id":"a","dev":"uart","port":1016,"present":true}\n')
    with pytest.raises(ProbeError, match=r"line 2: done says 5 lines, 2 arrived"):
        parse_report(good_hello + '\n{"kind":"done","lines":5}\n')
    report = parse_report(good_hello + '\n{"kind":"done","lines":2}\n')
    assert report.elcr == 0x0C00 and report.pci == () and EXIT_STATUS == 33
