"""The firmware progress watch (harness.qemu.progress): a firmware a card holds up ends its
wait early (FirmwareStalled) by the rule measured for it; a clean one, slowed or not, is
never cut short (real QEMU, TCG).  Every port's rule: tests/test_board_overlaps.py
test_a_card_on_these_ports_stops_the_firmware; the figures: benchmarks/bench_firmware_stalls.py."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from harness.config import parse_machine_text
from harness.qemu import progress
from harness.qemu.machine import FIRMWARE_TIMEOUT, FirmwareStalled, FirmwareTimeout, Machine
from harness.qemu.progress import FirmwareWatch
from helpers import SPIN_FOREVER, tiny_bios_args


def card(kind: str, port: int) -> str:
    return f"machine: {kind}\ndevices:\n  - {{model: isa-debugcon, id: d, iobase: {port:#x}}}\n"


def _starve(pid: int, done: threading.Event) -> None:
    """A host too loaded to run QEMU: stopped for longer than the spin rule's silent wait,
    then let run one part in five until ``done``."""
    os.kill(pid, signal.SIGSTOP)
    try:
        done.wait(progress.SILENT_WAIT + 1.0)
        while not done.is_set():
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.005)
            os.kill(pid, signal.SIGSTOP)
            time.sleep(0.02)
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_clean_firmware_starved_of_cpu_is_not_cut_short() -> None:
    """Wall-clock silence is no stall: QEMU stopped past SILENT_WAIT right after the
    firmware's start, then slowed five-fold, still finishes under the watch."""
    with Machine(parse_machine_text("machine: pc\n", "<clean>")) as m:
        m.start_firmware()
        done = threading.Event()
        starver = threading.Thread(target=_starve, args=(m.pid, done))
        starver.start()
        try:
            took = m.run_firmware()
        finally:
            done.set()
            starver.join()
        assert took > progress.SILENT_WAIT and b"No bootable device" in m.firmware_log.read_bytes()
        took_again = m.run_firmware()  # and unstarved, the same machine again
        assert took_again < took


@pytest.mark.parametrize("port, rule, kind, log", [(0x70, "halt", "pc", False), (0x510, "retry", "q35", True)])
def test_a_held_up_firmware_ends_early_by_its_rule(port: int, rule: str, kind: str, log: bool) -> None:
    """A port of each stop class that ends at once (test_board_overlaps has them all; a
    spin: the firmware below that spins from its first instruction): the wait ends with
    FirmwareStalled, a FirmwareTimeout, well before the bound, saying how it knew.  The
    halt comes in SeaBIOS's reboot, the end of a run without the log: with a card on the
    RTC's index port it cannot read the CMOS shutdown status there and halts."""
    with Machine(parse_machine_text(card(kind, port) + f"firmware_log: {str(log).lower()}\n", "<held>")) as m:
        start = time.monotonic()
        with pytest.raises(FirmwareTimeout) as info:
            m.run_firmware()
        waited = time.monotonic() - start
        assert m.running and m.status() == "running"   # the machine is left as it was
    stall = info.value.stall if isinstance(info.value, FirmwareStalled) else None
    assert stall is not None and stall.rule == rule, str(info.value)
    assert waited < FIRMWARE_TIMEOUT["tcg"] / 2 and stall.seconds <= waited
    assert not log or (stall.last_line and repr(stall.last_line) in stall.how)


def test_with_the_log_a_card_on_the_rtc_index_port_lets_the_firmware_end() -> None:
    """The converse: SeaBIOS boots past a card on 0x70 and gives up booting; the harness
    stops it there, so the reboot that would halt never runs."""
    with Machine(parse_machine_text(card("pc", 0x70), "<rtc>")) as m:
        m.run_firmware()
        assert m.firmware_end == "log" and b"Unimplemented shutdown status" not in m.firmware_log.read_bytes()


@pytest.mark.parametrize("kind, port, rule", [("pc", 0x510, "retry"), ("pc", 0x518, "spin")])
def test_a_wait_that_could_end_inside_the_bound_is_waited_for(kind: str, port: int, rule: str) -> None:
    """A rule fires only when the firmware's possible way out comes past the waiter's
    bound: SeaBIOS's 60 s reboot wait (retry), its 30 s and longer timed waits (spin).  Two
    watches over the same held-up firmware: with the usual 30 s bound the rule fires, with
    a 90 s one it does not (nor the halt rule: the sleeping vCPU's interrupts are on, the
    spinning one is not halted)."""
    with Machine(parse_machine_text(card(kind, port), "<bounds>")) as m:
        m.start_firmware()
        near = FirmwareWatch(m, time.monotonic() + FIRMWARE_TIMEOUT["tcg"])
        far = FirmwareWatch(m, time.monotonic() + 90.0)
        end = time.monotonic() + FIRMWARE_TIMEOUT["tcg"]
        found_far = found_near = None
        while time.monotonic() < end and found_near is None:
            found_far = found_far or far.poll()
            found_near = near.poll()
            time.sleep(progress.POLL_INTERVAL)
        for _ in range(int(1.0 / progress.POLL_INTERVAL)):  # a second more of the far watch
            found_far = found_far or far.poll()
            time.sleep(progress.POLL_INTERVAL)
    assert found_near is not None and found_near.rule == rule, found_near
    assert found_far is None, found_far


def test_under_the_apic_hal_a_panic_in_the_firmware_ends_the_agent_wait_at_once(tmp_path) -> None:
    """QEMU pausing the guest for good (a pvpanic on SeaBIOS's log port) while the agent
    guest's wait runs: the event comes at once, not after the wait's bound."""
    from harness.guests.agent import BOOT_TIMEOUT
    from harness.job import run_job
    spec = parse_machine_text("machine: q35\nfirmware_log: false\ndevices:\n"
                              "  - {model: pvpanic, id: panic0, ioport: 0x402}\n", "panic.yaml")
    result = run_job(spec, tmp_path / "out", picture=False, hal="apic")
    (event,) = result.events
    assert (event.kind, event.devices) == ("guest-panicked", ("panic0",))
    assert result.timings["boot+firmware"] < BOOT_TIMEOUT / 2


#: Firmware of our own making at the reset vector: halted with interrupts off, and halted
#: with them on (a timer could wake it: no stall).
HALT_INTERRUPTS_OFF = bytes([0xFA, 0xF4, 0xEB, 0xFD])   # cli; 1: hlt; jmp 1b
HALT_INTERRUPTS_ON = bytes([0xFB, 0xF4, 0xEB, 0xFD])    # sti; 1: hlt; jmp 1b


def test_a_firmware_that_spins_from_its_first_instruction_is_a_spin(tmp_path) -> None:
    """No log line at all: the silence counts from the firmware's start."""
    with Machine(parse_machine_text("machine: pc\n", "<spin>"), extra_args=tiny_bios_args(tmp_path, SPIN_FOREVER)) as m:
        with pytest.raises(FirmwareStalled) as info:
            m.run_firmware()
    stall = info.value.stall
    assert stall.rule == "spin" and "after the firmware's start" in stall.how and stall.last_line is None
    # both halves of the rule: QEMU's CPU and the silence past SeaBIOS's timed waits
    spent = float(stall.how.split("no progress in ")[1].split(" s")[0])
    assert spent >= progress.SPIN_CPU["tcg"] and progress.SILENT_WAIT <= stall.seconds < FIRMWARE_TIMEOUT["tcg"]


def test_only_a_halt_with_interrupts_off_is_a_stall(tmp_path) -> None:
    """Halted with interrupts on, the guest is silent past SILENT_WAIT and QEMU uses no
    CPU, as a starved QEMU's guest is: no rule fires (wall-clock silence is no stall)."""
    found = {}
    for name, code in (("off", HALT_INTERRUPTS_OFF), ("on", HALT_INTERRUPTS_ON)):
        with Machine(parse_machine_text("machine: pc\n", f"<halt-{name}>"), extra_args=tiny_bios_args(tmp_path, code)) as m:
            m.start_firmware()
            watch = FirmwareWatch(m, time.monotonic() + FIRMWARE_TIMEOUT["tcg"])
            end = time.monotonic() + progress.SILENT_WAIT + 1.0
            while time.monotonic() < end and name not in found:
                stall = watch.poll()
                if stall is not None:
                    found[name] = stall
                time.sleep(progress.POLL_INTERVAL)
            assert progress.vcpu_halt_state(m)[0]   # halted in both cases
    assert found["off"].rule == "halt" and "EFLAGS 0x2" in found["off"].how
    assert "on" not in found
