"""The firmware run again in one QEMU after it ended at SeaBIOS's last log line (a reused
machine's reset, ``Machine.run_firmware`` twice): a cold POST from the ROM, whatever sits
on the RTC's ports (livefuzz round four, seeds 4001042 and others)."""

from __future__ import annotations

import pytest

from harness.qemu.actions import run_firmware_and_steps
from harness.qemu.bus import machine_ports
from harness.qemu.layout import snapshot
from harness.qemu.machine import PAM_COUNT, PAM_REGISTERS, Machine
from harness.qemu.progress import END_LINE
from helpers import machine_spec

#: SeaBIOS's words when it finds its own shadow after a reset and takes the resume path
#: (which reads the CMOS shutdown status through 0x70/0x71).
RESUME_LINE = b"In resume"


@pytest.mark.qemu
@pytest.mark.parametrize("machine", ["pc", "q35"])
def test_qemus_reset_keeps_the_pam_registers_the_firmware_locked(machine: str) -> None:
    """Measured on this QEMU: the PAM bytes SeaBIOS left (its shadow read-only) survive
    ``system_reset``; so a reset alone would run SeaBIOS from its used shadow."""
    with Machine(machine_spec(f"machine: {machine}\n")) as m:
        m.run_firmware()
        ports = machine_ports(m)
        first = PAM_REGISTERS[machine]

        def pam() -> list[int]:
            return [ports.read_config(0, 0, 0, offset, 1) for offset in range(first, first + PAM_COUNT)]
        locked = pam()
        assert any(locked), locked
        m.qmp("set-action", {"reboot": "reset"})
        m.qmp("system_reset")
        assert pam() == locked


@pytest.mark.qemu
@pytest.mark.parametrize("machine", ["pc", "q35", "isapc"])
def test_the_firmware_runs_again_from_its_rom_with_a_card_on_the_rtc_index(machine: str) -> None:
    """A COM port at 0x70 takes the RTC's index port: SeaBIOS's POST gets to its end, but
    its resume path (a reset that finds its shadow) halted reading the shutdown status, and
    the re-run waited 10 s for a reset that never came (QMPTimeout).  The re-run is now a
    cold POST (the PAM registers at their power-on 0): it ends at the log's line again, the
    same layout, no resume."""
    spec = machine_spec(f"machine: {machine}\ndevices:\n  - {{model: isa-serial, id: rtcport, iobase: 0x70}}\n")
    with Machine(spec) as m:
        m.run_firmware()
        assert m.firmware_end == "log"
        before = snapshot(m, "post-firmware").to_dict()
        size = m.firmware_log.stat().st_size
        m.run_firmware()
        again = m.firmware_log.read_bytes()[size:]
        assert m.firmware_end == "log" and again.rstrip().endswith(END_LINE)
        assert RESUME_LINE not in again
        assert snapshot(m, "post-firmware").to_dict() == before


@pytest.mark.qemu
def test_the_pam_registers_are_reset_where_a_step_moved_a_bar_over_the_config_ports() -> None:
    """A step moved an I/O BAR over 0xcf8-0xcff after the firmware: the PAM writes go after
    the reset, which takes the BAR away, so they reach the host bridge (before it they went
    to the card, and SeaBIOS resumed from its shadow into its reboot: a 'reboot' end)."""
    spec = machine_spec("machine: pc\ndevices:\n  - {model: rtl8139, id: nic0}\n"
                        "after_firmware:\n  - {move_bar: nic0, bar: 0, address: 0xc00}\n")
    with Machine(spec) as m:
        run_firmware_and_steps(m)
        size = m.firmware_log.stat().st_size
        run_firmware_and_steps(m)
        assert m.firmware_end == "log" and RESUME_LINE not in m.firmware_log.read_bytes()[size:]
