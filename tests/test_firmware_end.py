"""The firmware's end: SeaBIOS's "gave up booting" line, read from its log, stops the
machine before the reboot (harness.qemu.progress.FirmwareEnd, Machine.run_firmware)."""

from __future__ import annotations

import time
from pathlib import Path

from harness.qemu.layout import snapshot
from harness.qemu.machine import Machine
from harness.qemu.owner import cpu_seconds
from harness.qemu.progress import END_LINE, FirmwareEnd, FirmwareWatch
from helpers import machine_spec


def test_the_end_line_counts_only_whole_and_with_the_harness_number(tmp_path: Path) -> None:
    log = tmp_path / "firmware.log"
    end = FirmwareEnd(log)
    assert not end.reached()                      # no log yet: QEMU makes it as it starts
    log.write_bytes(b"SeaBIOS (version 1.16.2)\nNo bootable device.  Retrying in 60 seconds.\n")
    assert not end.reached()                      # a firmware that never read fw_cfg: not the end
    with log.open("ab") as f:
        f.write(END_LINE[:20])
    assert not end.reached()                      # cut mid-line
    with log.open("ab") as f:
        f.write(END_LINE[20:])
    assert not end.reached()                      # the line is not ended yet
    with log.open("ab") as f:
        f.write(b"\n")
    assert end.reached()
    end.close()
    # A re-run's end counts only from where its log starts.
    assert not FirmwareEnd(log, offset=log.stat().st_size).reached()
    assert FirmwareEnd(log, offset=0).reached()
    later = FirmwareEnd(log, offset=log.stat().st_size)
    with log.open("ab") as f:
        f.write(b"No bootable device.  Retrying in 50 seconds.\n")  # 5 is not a prefix of 50 here
    assert not later.reached()
    later.close()


def test_the_end_is_sleep_and_the_bios_as_handed_to_a_boot_loader() -> None:
    """Measured on this QEMU: after the line SeaBIOS sleeps on its timer (the vCPU halted
    with interrupts on, next to no CPU), and its shadow of itself is read-only, as a boot
    loader finds it.  The reboot's way (without the log) first makes the shadow writable
    again and copies the BIOS back over it; the layout shows system RAM either way."""
    with Machine(machine_spec("machine: pc\n")) as m:
        m.start_firmware()
        log, deadline = m.firmware_log, time.monotonic() + 60
        while END_LINE not in (log.read_bytes() if log.exists() else b""):
            assert time.monotonic() < deadline and m.status() == "running"
            time.sleep(0.01)
        cpu = cpu_seconds(m.pid)
        time.sleep(0.5)
        assert cpu_seconds(m.pid) - cpu < 0.2, "a sleeping firmware uses next to no CPU"
        assert m.status() == "running" and not m.events("SHUTDOWN")  # no reboot for 5 s
        # The line is the harness's end, not a stall, even when the bound is nearer than
        # its 5 s (the watch can see it before the waiter does: test_chaos met that).
        assert FirmwareWatch(m, time.monotonic() + 1.0).poll() is None
        m.run_firmware()  # sees the line at once
        assert m.firmware_end == "log"
        locked = m.hmp("info mtree")
        assert "pam-rom @pc.ram 00000000000f0000" in locked
        lay = snapshot(m)
    with Machine(machine_spec("machine: pc\nfirmware_log: false\n")) as m:
        m.run_firmware()
        assert m.firmware_end == "reboot"
        assert "pam-ram @pc.ram 00000000000f0000" in m.hmp("info mtree")
        rebooting = snapshot(m)
    for layout in (lay, rebooting):
        low = [r for r in layout.memory if r.start <= 0xF0000 <= r.end]
        assert [(r.kind, r.owner) for r in low] == [("ram", None)], low
