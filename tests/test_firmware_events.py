"""Events during the firmware are findings (exit 1 with a report), the firmware-log port
is kept free, and verdict levels: clean 0, conflict 1, warning 3 (real QEMU, TCG)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.config import load_machine, parse_machine_text
from harness.errors import ConfigError
from harness.job import Collision, grade_shared_lines, run_job
from harness.verdict import CLEAN, CONFLICT, EXIT_CODES, WARNING
from helpers import CONFIGS, machine_spec


# ---------------------------------------------------------------------- the firmware-log port
@pytest.mark.parametrize("device, field", [
    ("{model: pvpanic, id: p, ioport: 0x402}", "devices[0].ioport"),
    ("{model: isa-serial, id: s, iobase: 0x3fc}", "devices[0].iobase"),            # 0x3fc-0x403
    ("{model: isa-debug-exit, id: x, iobase: 0x400, iosize: 4}", "devices[0].iobase"),
    ("{model: isa-debugcon, id: d, iobase: 0x402}", "devices[0].iobase"),
])
def test_a_device_on_the_firmware_log_port_is_refused(device: str, field: str) -> None:
    text = f"machine: pc\ndevices:\n  - {device}\n"
    with pytest.raises(ConfigError) as info:
        parse_machine_text(text, "m.yaml")
    assert str(info.value).startswith(f"m.yaml:3: {field}: ")
    assert "0x402" in str(info.value) and "firmware_log: false" in str(info.value)
    # Without the harness's log the port is the user's (what the firmware then does to the
    # device is the job's finding).
    assert parse_machine_text("firmware_log: false\n" + text, "m.yaml").devices


@pytest.mark.parametrize("device", [
    "{model: isa-debug-exit, id: x, iobase: 0x400, iosize: 2}",                    # ends at 0x401
    "{model: pvpanic, id: p, ioport: 0x403}",
    "{model: isa-serial, id: s, iobase: 0x3f8}",                                   # ends at 0x3ff
])
def test_next_to_the_firmware_log_port_is_accepted(device: str) -> None:
    assert parse_machine_text(f"machine: pc\ndevices:\n  - {device}\n", "m.yaml").devices


# ---------------------------------------------------------------------- events as findings
EVENTS = {
    # SeaBIOS writes its log to 0x402 even when the harness does not listen (measured).
    "pvpanic-on-log-port": ("machine: pc\nfirmware_log: false\ndevices:\n"
                            "  - {model: pvpanic, id: panic0, ioport: 0x402}\n",
                            "guest-panicked", ("panic0",), "SeaBIOS's debug-log port"),
    # CMOS index writes with bit 0 set (0x0f, 0x8f...) are panic events for a pvpanic there.
    "pvpanic-on-cmos-index": ("machine: isapc\ndevices:\n  - {model: pvpanic, id: panic0, ioport: 0x70}\n",
                              "guest-panicked", ("panic0",), "writes there to board:rtc (0x70)"),
    # ... and an isa-debug-exit there ends QEMU with the first index written: 0x0f, the
    # CMOS shutdown-status register.
    "debug-exit-on-cmos": ("machine: pc\ndevices:\n  - {model: isa-debug-exit, id: bye, iobase: 0x70, iosize: 2}\n",
                           "qemu-exited", ("bye",), "board:rtc (0x70-0x71), which the device displaces; "
                                                    "the firmware wrote 0xf"),
    # sga decodes nothing, but its option ROM (sgabios) writes the BIOS's text to COM1's
    # data port: a pvpanic there panics the guest, one without the sga runs clean
    # (configs/conflicts/pvpanic-at-com1.yaml); the cause names the option ROM.
    "pvpanic-under-sgabios": ("machine: pc\ndevices:\n  - {model: sga, id: sga0}\n"
                              "  - {model: pvpanic, id: panic0, ioport: 0x3f8}\n",
                              "guest-panicked", ("panic0",), "the option ROM of sga0 (sga) writes there"),
    # livefuzz round five (seed 5001046): sgabios waits on COM1's line status register for
    # a transmitter that is never empty, and a pvpanic there answers its events mask
    # forever: the firmware spins (it was an error, exit 2: no board device in the way)
    "pvpanic-on-com1-status-under-sgabios": ("machine: isapc\ndevices:\n  - {model: sga, id: sga0}\n"
                                             "  - {model: pvpanic, id: panic0, ioport: 0x3fd}\n",
                                             "firmware-stalled", ("panic0",),
                                             "the option ROM of sga0 (sga) writes there"),
    "debug-exit-on-log-port": ("machine: pc\nfirmware_log: false\ndevices:\n"
                               "  - {model: isa-debug-exit, id: bye, iobase: 0x402, iosize: 1}\n",
                               "qemu-exited", ("bye",), "wrote 0x53 ('S')"),
    # livefuzz: the firmware leaves 0x60-0x61 alone, the HAL's first write there (the
    # speaker gate) ends QEMU: an event after the firmware, not a job error.
    "debug-exit-on-keyboard-port": ("machine: pc\ndevices:\n  - {model: isa-debug-exit, id: bye, iobase: 0x60}\n",
                                    "qemu-exited", ("bye",), "the HAL or a driver wrote 0x2a"),
    # livefuzz round two (seed 300074): the built-in FDC moved over fw_cfg holds the
    # firmware up as a card there does; it was a job error (no configured device in the way)
    "builtin-fdc-moved-onto-fw-cfg": ("machine: pc\ndevices: []\nbuiltin:\n  fdc: {iobase: 0x50f}\n",
                                      "firmware-stalled", ("board:floppy-controller",),
                                      "moved by the machine file's builtin settings, decodes 0x510-0x514, 0x516 "
                                      "over fwcfg (0x510-0x511)"),
    # livefuzz round two (seeds 400054, 400142): a step's write to a pvpanic panics the
    # agent guest before the HAL's first read (the MADT), which wrapped the silent agent in
    # a HalError: a job error; now the event, naming the step
    "pvpanic-written-by-a-step-under-the-apic-hal": (
        "machine: q35\ndevices:\n  - {model: pvpanic, id: panic0, ioport: 4}\n"
        "after_firmware:\n  - {port_write: 4, value: 0x9f}\n",
        "guest-panicked", ("panic0",), "the machine file's step"),
    # livefuzz round four (seed 4003018): the step that panics the agent guest is followed
    # by a memory_write step, whose request (through the agent) found it silent: a job error
    # (AgentError); now the same event
    "pvpanic-written-by-a-step-before-an-agent-step": (
        "machine: q35\ndevices:\n  - {model: pvpanic, id: panic0}\n"
        "after_firmware:\n  - {port_write: 0x505, value: 0xa9}\n  - {memory_write: 0x20000734, size: 2, value: 0x76}\n",
        "guest-panicked", ("panic0",), "the machine file's step"),
    # livefuzz: pc's PIIX IDE ports have no owner in QEMU's flat view; a UART over them
    # holds SeaBIOS in its ATA wait (a spin) and the board device is still named.
    "uart-over-pc-ide-ports": ("machine: pc\ndevices:\n  - {model: isa-serial, id: com9, iobase: 0x1f1, irq: 3}\n",
                               "firmware-stalled", ("com9",), "board:ide-legacy (0x1f0-0x1f7), which the device displaces"),
    # livefuzz: under the APIC HAL the guest serves the bus; the HAL's write to the ELCR
    # panics it and its agent falls silent: the same finding, not "did not answer".
    "pvpanic-on-elcr-under-the-apic-hal": ((CONFIGS / "conflicts" / "pvpanic-on-elcr-q35.yaml").read_text(),
                                           "guest-panicked", ("panic0",),
                                           "the HAL or a driver writes there to board:interrupt-controllers (0x4d1)"),
}


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_a_firmware_event_is_a_finding_with_its_cause(name: str, tmp_path: Path) -> None:
    text, kind, devices, cause = EVENTS[name]
    result = run_job(machine_spec(text), tmp_path / "out", picture=False)
    (event,) = result.events
    assert (event.kind, event.devices, event.stopped) == (kind, devices, True)
    assert cause in event.cause
    assert result.verdict == CONFLICT and result.exit_code == 1
    assert result.findings() == [event.finding()]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["verdict"] == CONFLICT and report["events"][0]["kind"] == kind
    text_report = (tmp_path / "out" / "report.txt").read_text()
    assert "Firmware events" in text_report and "Result: conflict (exit 1)" in text_report
    assert (tmp_path / "out" / "qemu" / "qmp.log").is_file()



def test_a_qemu_gone_before_the_harness_attaches_is_the_same_finding(tmp_path: Path, monkeypatch) -> None:
    """A firmware that ends QEMU at once can do so before the harness's QMP client has
    connected: QEMU greeted, answered ``qmp_capabilities`` and ``cont`` and hung up, and the
    library found its session ending inside ``connect()`` (CI saw a launch error).  Made
    certain here: QEMU is asked nothing else, and the harness attaches after it exited."""
    from harness.qemu import machine as machine_module
    spawn = machine_module.spawn_qemu

    def spawn_then_wait_for_the_exit(*args, **kwargs):
        spawned = spawn(*args, **{**kwargs, "ask": ()})
        spawned.proc.wait(60)
        return spawned

    monkeypatch.setattr(machine_module, "spawn_qemu", spawn_then_wait_for_the_exit)
    text, kind, devices, cause = EVENTS["debug-exit-on-log-port"]
    result = run_job(machine_spec(text), tmp_path / "out", picture=False)
    assert [(e.kind, e.devices) for e in result.events] == [(kind, devices)]
    assert cause in result.events[0].cause and result.exit_code == 1

#: How long each QMP command is held back in the slow-monitor test: more than the 3 ms
#: slices the firmware's wait listens in (progress.END_POLL), as a loaded host does.
SLOW_MONITOR = 0.02


@pytest.mark.parametrize("name", ["pvpanic-on-cmos-index", "pvpanic-under-sgabios", "pvpanic-on-pic"])
def test_a_panic_the_harness_hears_late_is_the_same_finding(name: str, tmp_path: Path, monkeypatch) -> None:
    """livefuzz round five (seed 5000002, the timing invariant): a pvpanic over the 8259's
    0x20 panicked the guest before the firmware's wait began; that wait listens in 3 ms
    slices and asked QEMU's state inside one, so with the monitor slower than a slice
    (20 ms here, a loaded host) the answer never came in time, the panic went unseen and
    the job reported a firmware stalled 30 s later instead of the guest-panicked event."""
    import asyncio
    from harness.qemu.machine import Machine
    execute = Machine._execute

    async def slow(self, command, arguments=None):
        await asyncio.sleep(SLOW_MONITOR)
        return await execute(self, command, arguments)

    monkeypatch.setattr(Machine, "_execute", slow)
    text, kind, devices, cause = EVENTS.get(name) or (
        "machine: pc\ndevices:\n  - {model: pvpanic, id: panic0, ioport: 0x20}\n",
        "guest-panicked", ("panic0",), "writes there to board:interrupt-controllers")
    start = time.monotonic()
    result = run_job(machine_spec(text), tmp_path / "out", picture=False)
    assert [(e.kind, e.devices) for e in result.events] == [(kind, devices)]
    assert cause in result.events[0].cause and time.monotonic() - start < 10


def test_a_guest_reset_after_the_firmware_under_the_apic_hal_is_a_finding(tmp_path: Path) -> None:
    """The agent guest serves the bus: a write that resets it (here a step through 0xcf9;
    livefuzz: a card over the 8259's mask port, whose stray interrupt resets the guest
    now and then) silences the agent.  That is a `shutdown` event naming the writer, not
    "the guest agent did not answer"."""
    result = run_job(machine_spec("""
machine: q35
devices:
  - {model: isa-serial, id: com1, iobase: 0x3f8, irq: 4}
after_firmware:
  - {port_write: 0xcf9, value: 0x06, phase: post-drivers}
"""), tmp_path / "out", picture=False)
    (event,) = result.events
    assert (event.kind, event.stopped, result.hal) == ("shutdown", True, "apic"), result.format_text()
    assert "(guest-reset) after the firmware" in event.detail and "o /b 0xcf9 0x6" in event.cause
    assert result.verdict == CONFLICT and result.exit_code == 1


def test_near_the_firmware_writes_the_job_stays_clean(tmp_path: Path) -> None:
    result = run_job(machine_spec("""
machine: pc
devices:
  - {model: pvpanic, id: panic0, ioport: 0x403}
  - {model: isa-debug-exit, id: bye, iobase: 0x400, iosize: 2}
"""), tmp_path / "out", picture=False)
    assert not result.events and result.verdict == CLEAN and result.exit_code == 0, result.format_text()


def test_an_early_reset_is_a_finding_and_the_job_goes_on(tmp_path: Path) -> None:
    # With the PCI configuration ports shadowed SeaBIOS cannot unlock RAM and resets at
    # once: the machine is still there (paused), so the drivers run on it too.
    result = run_job(load_machine(CONFIGS / "conflicts" / "serial-at-cf8.yaml"), tmp_path / "out", picture=False)
    (event,) = result.events
    assert event.kind == "early-reset" and not event.stopped and event.devices == ("com1",)
    assert "Unable to unlock ram" in event.cause and "0xcf8-0xcff" in event.cause
    assert result.conflicts and result.verdict == CONFLICT
    # A machine whose firmware finishes has no event.
    clean = run_job(machine_spec("machine: pc\ndevices:\n  - {model: isa-serial, id: com1, iobase: 0xcf0}\n"),
                    tmp_path / "near", picture=False)
    assert not clean.events, clean.format_text()


def test_cli_exit_codes_follow_the_verdict(tmp_path: Path, capsys) -> None:
    panic = tmp_path / "panic.yaml"
    panic.write_text(EVENTS["pvpanic-on-log-port"][0])
    assert main(["run", str(panic), "--no-picture", "--out", str(tmp_path / "p")]) == EXIT_CODES[CONFLICT] == 1
    assert "guest-panicked" in capsys.readouterr().out
    edge = CONFIGS / "conflicts" / "shared-isa-irq-edge.yaml"
    assert main(["run", str(edge), "--json", "--no-picture", "--out", str(tmp_path / "e")]) == EXIT_CODES[WARNING] == 3
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == WARNING and report["exit_code"] == 3 and report["bundle"]
    assert {c["level"] for c in report["collisions"]} == {WARNING}
    refused = tmp_path / "bad.yaml"
    refused.write_text("machine: pc\ndevices:\n  - {model: pvpanic, id: p, ioport: 0x402}\n")
    assert main(["run", str(refused), "--out", str(tmp_path / "b")]) == 2
    assert "bad.yaml:3: devices[0].ioport" in capsys.readouterr().err


# ---------------------------------------------------------------------- warning or conflict
def _irq(devices: tuple[str, ...], kind: str = "irq-shared") -> Collision:
    return Collision(kind, "irq 4", devices, "...")


@pytest.mark.parametrize("consented, elcr, level", [
    ({4: {"com1", "com3"}}, 0x0000, WARNING),          # both granted Shared, edge line
    ({4: {"com1", "com3"}}, None, WARNING),            # no ELCR (isapc): ISA lines are edge
    ({4: {"com1"}}, 0x0000, CONFLICT),                 # com3 holds no Shared claim on it
    ({4: {"com1", "com3"}}, 1 << 4, CONFLICT),         # a level-triggered line
    ({}, 0x0000, CONFLICT),
])
def test_a_shared_line_is_a_warning_only_when_every_driver_consented(consented, elcr, level) -> None:
    graded = grade_shared_lines([_irq(("com1", "com3")), _irq(("com1 (x)", "com3 (y)"), "irq-lost"),
                                 Collision("shadowed", "io 0x3f8-0x3ff", ("com1", "com3"), "...")],
                                consented, elcr)
    assert [c.level for c in graded] == [level, level, CONFLICT]


def test_an_isa_card_on_a_pci_level_line_stays_a_conflict(tmp_path: Path) -> None:
    result = run_job(machine_spec("""
machine: pc
devices:
  - {model: ne2k_isa, id: ne0, iobase: 0x300, irq: 11}
  - {model: e1000, id: nic0, addr: 3}
"""), tmp_path / "out", picture=False)
    shared = [c for c in result.collisions if c.kind == "irq-shared"]
    assert shared and all(c.level == CONFLICT for c in shared) and result.verdict == CONFLICT, result.format_text()
    # The line's mode is the live ELCR's after the drivers (the HAL sets it for whichever
    # driver connected: Latched clears the bit SeaBIOS set for the PCI line).
    level = result.layout.elcr >> 11 & 1
    assert ("level-triggered (ELCR bit 11 set)" if level else "edge-triggered (ELCR bit 11 clear)") \
        in shared[0].consequence


@pytest.mark.parametrize("state, devices", [("internal-error", ()), ("io-error", ()), ("watchdog", ("dog",))])
def test_other_frozen_states_are_findings_too(state: str, devices: tuple[str, ...]) -> None:
    # QEMU enters these under KVM or with a guest that arms the watchdog; the cause is
    # derived from the state and the spec alone (the machine is already gone).  A UART
    # over the RTC's index port is something in the machine that may stop the guest.
    from harness.firmware_events import stopped_by
    from harness.qemu.machine import MachineStuck
    spec = machine_spec("machine: pc\ndevices:\n  - {model: ib700, id: dog}\n"
                        "  - {model: isa-serial, id: com, iobase: 0x70, irq: 4}\n")
    event = stopped_by(spec, None, MachineStuck("stuck", machine=None, state=state))
    assert (event.kind, event.devices, event.stopped) == (state, devices, True)
    assert state in event.detail


@pytest.mark.parametrize("text, after_firmware, failed", [
    ("machine: isapc\n", False, True),                                   # this host's KVM on a plain isapc
    ("machine: pc\ndevices:\n  - {model: ib700, id: dog}\n", False, True),  # nowhere near the board
    ("machine: pc\ndevices:\n  - {model: ib700, id: dog}\n", True, True),
    ("machine: isapc\nafter_firmware:\n  - {port_write: 0x80, value: 1}\n", True, False),  # a step wrote
    ("machine: isapc\nafter_firmware:\n  - {port_write: 0x80, value: 1}\n", False, True),  # not yet
    ("machine: isapc\ndevices:\n  - {model: isa-vga, id: vga}\n", False, False),  # fixed memory decode
    ("machine: pc\nbuiltin:\n  fdc: {iobase: 0x516}\n", False, False),  # a moved FDC over fw_cfg
])
def test_an_internal_error_nothing_in_the_machine_explains_is_the_emulators(text: str, after_firmware: bool,
                                                                             failed: bool) -> None:
    """KVM stops a guest in internal-error when it cannot emulate something (measured here:
    the nested KVM of this host does so for a plain isapc's firmware): with nothing in the
    machine file that reaches the board, the verdict would blame a machine that is not at
    fault, so it is an error naming the accelerator."""
    from harness.firmware_events import EmulatorFailed, stopped_by
    from harness.qemu.machine import MachineStuck

    class Kvm:
        accel = "kvm"
    stuck = MachineStuck("stuck", machine=None, state="internal-error")
    spec = machine_spec(text)
    if failed:
        with pytest.raises(EmulatorFailed, match=r"the accelerator \(kvm\) failed, not the machine.*--accel tcg"):
            stopped_by(spec, Kvm(), stuck, after_firmware=after_firmware)
    else:
        event = stopped_by(spec, Kvm(), stuck, after_firmware=after_firmware)
        assert (event.kind, event.stopped) == ("internal-error", True)


def test_a_matrix_leaves_out_cells_on_the_firmware_log_port() -> None:
    from harness.matrix import parse_matrix_text
    text = "axes:\n  machine: {pc: {machine: pc}}\n  devices: {from_catalog: each_setting}\n"
    left_out = {e.id: e.reason for e in parse_matrix_text(text).excluded}
    assert "firmware-log port 0x402" in left_out["pc-isa-debugcon_iobase_0x402"]
    quiet = text.replace("devices:", "log: {quiet: {firmware_log: false}}\n  devices:")
    assert "pc-quiet-isa-debugcon_iobase_0x402" in {c.id for c in parse_matrix_text(quiet).cells}


def test_verify_reports_a_stopped_firmware_as_a_finding() -> None:
    from harness.verify import FIRMWARE_EVENT, verify
    rec = verify(machine_spec(EVENTS["debug-exit-on-log-port"][0]))
    assert rec.views["qemu"] == "firmware stopped" and not rec.rows
    (finding,) = rec.findings
    assert (finding.device, finding.explanation) == ("bye", FIRMWARE_EVENT) and "status 167" in finding.reason
    assert not rec.unexplained


def test_bundles_of_events_and_warnings_replay(tmp_path: Path) -> None:
    from harness.repro import load_bundle, replay, write_bundle
    panic = run_job(machine_spec(EVENTS["pvpanic-on-log-port"][0]), tmp_path / "p", picture=False)
    edge = run_job(load_machine(CONFIGS / "conflicts" / "shared-isa-irq-edge.yaml"), tmp_path / "e", picture=False)
    for result, verdict in ((panic, CONFLICT), (edge, WARNING)):
        bundle = load_bundle(write_bundle(result, title="t"))
        assert bundle.outcome == verdict and bundle.findings == result.findings()
        again = replay(bundle, tmp_path / f"again-{verdict}", picture=False)
        assert again.reproduces and not again.missing, again.format_text()


def test_a_guest_boot_that_never_answers_is_checked_for_a_frozen_or_gone_qemu() -> None:
    # The APIC HAL's agent boot waits for the guest's hello without watching QEMU; when
    # that wait gives up, the job asks what became of QEMU (measured by hand: q35 with a
    # pvpanic on 0x70 gives this finding after the agent's 30 s bound).
    from harness.firmware_events import stopped_during_boot
    from harness.qemu.machine import Machine
    spec = machine_spec("machine: q35\ndevices:\n  - {model: pvpanic, id: panic0, ioport: 0x70}\n")
    with Machine(spec) as machine:
        assert stopped_during_boot(spec, machine) is None          # paused before the firmware
        machine.resume()
        machine.wait_event("GUEST_PANICKED", timeout=30)
        event = stopped_during_boot(spec, machine)
    assert event is not None and (event.kind, event.devices) == ("guest-panicked", ("panic0",))
    assert "board:rtc (0x70)" in event.cause


def test_a_firmware_held_up_by_a_card_is_a_finding_and_with_nothing_in_its_way_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A card on fw_cfg's selector port keeps SeaBIOS from finishing (measured:
    tests/board_overlaps.py): the progress watch sees it stop at once (its 60 s reboot wait
    comes past the bound), a ``firmware-stalled`` event naming the card, the board device
    it displaces and how the harness knew (a conflict, exit 1, not a harness error).  One
    the watch does not see stop before the bound (a spin, which needs seconds) is the same
    event past the bound.  A firmware that runs past the bound with nothing in its way
    stays an error."""
    from harness.qemu import machine as machine_module
    spec = parse_machine_text("machine: pc\ndevices:\n  - {model: isa-debugcon, id: dbg, iobase: 0x510}\n", "m.yaml")
    result = run_job(spec, tmp_path / "held", picture=False)
    (event,) = result.events
    assert (event.kind, event.devices, event.stopped) == ("firmware-stalled", ("dbg",), True)
    assert "board:fw_cfg (0x510" in event.cause and "the firmware stopped making progress (retry" in event.detail
    assert "the harness knew before the bound" in event.cause and "Retrying in 60 seconds" in event.cause
    # the finding's line is the same every run (a repro bundle compares it): timings stay in the cause
    assert "found after" in event.cause and not re.search(r"\d s\b", event.finding()), event.finding()
    assert result.timings["boot+firmware"] < machine_module.FIRMWARE_TIMEOUT["tcg"] / 2
    assert result.verdict == CONFLICT and result.exit_code == EXIT_CODES[CONFLICT]
    monkeypatch.setitem(machine_module.FIRMWARE_TIMEOUT, "tcg", 3.0)
    spin = parse_machine_text("machine: pc\ndevices:\n  - {model: isa-debugcon, id: dbg, iobase: 0x518}\n", "s.yaml")
    result = run_job(spin, tmp_path / "bound", picture=False)
    (event,) = result.events
    assert (event.kind, event.devices) == ("firmware-stalled", ("dbg",)) and "within 3 s" in event.detail
    assert "SeaBIOS's last log line: 'QEMU fw_cfg DMA interface supported'" in event.cause
    monkeypatch.setitem(machine_module.FIRMWARE_TIMEOUT, "tcg", 0.01)  # SeaBIOS needs ~50 ms
    clean = parse_machine_text("machine: pc\ndevices:\n  - {model: isa-serial, id: com1}\n", "clean.yaml")
    with pytest.raises(machine_module.FirmwareTimeout):
        run_job(clean, tmp_path / "slow", picture=False)

    # Under the APIC HAL the firmware runs on the way to the agent guest, whose wait asks
    # the same watch.
    q35 = parse_machine_text("machine: q35\ndevices:\n  - {model: isa-debugcon, id: dbg, iobase: 0x510}\n", "q.yaml")
    result = run_job(q35, tmp_path / "apic", picture=False)
    (event,) = result.events
    assert (event.kind, event.devices) == ("firmware-stalled", ("dbg",))
    assert "the firmware stopped making progress (retry" in event.detail and "agent's hello" in event.detail
    assert "board:fw_cfg (0x510" in event.cause and result.exit_code == EXIT_CODES[CONFLICT]
    assert result.timings["boot+firmware"] < 10.0
