"""Every wait of a Machine is bounded, and each bound is measured on a real QEMU (TCG).

Each timeout error must say what was awaited and show the log tail; a QEMU that paused
itself in a state it never leaves (what a KVM internal error does) must be noticed at once
and ended, not waited out.  The measured times go to RELIABILITY.md.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import pytest

from harness.qemu.machine import (QUIT_TIMEOUT, LaunchError, Machine, MachineStuck, QMPTimeout)
from helpers import (PANIC_VIA_PVPANIC, SPIN_FOREVER, machine_spec, qemu_pids, record_figures,
                     tiny_bios_args)

BARE = "machine: pc\n"
#: Slack on top of a bound: scheduling on a loaded 2-core host, plus the log-tail read.
SLACK = 1.0


def _gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while pid in qemu_pids():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_qemu_that_never_greets_fails_the_launch_within_its_bound() -> None:
    # A chardev server with wait=on blocks QEMU's start-up before the monitor greets:
    # a real QEMU that hangs at launch.
    with tempfile.TemporaryDirectory(prefix="hw-") as hold:  # (short: a socket path)
        m = Machine(machine_spec(BARE), extra_args=(
            "-chardev", f"socket,id=hold,path={hold}/hold.sock,server=on,wait=on"))
        start = time.monotonic()
        with pytest.raises(LaunchError) as info:
            m.launch(timeout=1.0)
        elapsed = time.monotonic() - start
    text = str(info.value)
    assert "did not answer QMP within 1 s" in text and "argv:" in text
    assert "waiting for connection" in text, "the tail of qemu.log must show why"
    assert 1.0 <= elapsed < 1.0 + 0.5 + SLACK  # + the 0.5 s given QEMU to exit with its status
    assert _gone(m.pid) and not m.run_dir.exists()
    record_figures("timeout-launch", bound_s=1.0, raised_after_s=round(elapsed, 3))


def test_a_qmp_call_to_a_hung_qemu_times_out_and_close_is_bounded() -> None:
    m = Machine(machine_spec(BARE))
    m.launch()
    os.kill(m.pid, signal.SIGSTOP)  # QEMU hangs: it answers nothing any more
    start = time.monotonic()
    with pytest.raises(QMPTimeout) as info:
        m.qmp("query-status", timeout=1.0)
    elapsed = time.monotonic() - start
    text = str(info.value)
    assert "'query-status' got no answer within 1 s" in text
    assert "last lines of" in text and "qmp.log" in text and '"query-status"' in text
    assert 1.0 <= elapsed < 1.0 + SLACK
    start = time.monotonic()
    m.close()
    closed = time.monotonic() - start
    # quit goes unanswered for QUIT_TIMEOUT, then SIGTERM + SIGCONT end it at once.
    assert closed < QUIT_TIMEOUT + SLACK, m.exit_outcome
    assert "SIGTERM" in m.exit_outcome and _gone(m.pid)
    record_figures("timeout-qmp-hung", bound_s=1.0, raised_after_s=round(elapsed, 3),
                   close_s=round(closed, 3), close_outcome=m.exit_outcome)


def test_a_firmware_that_never_finishes_times_out_naming_the_event(tmp_path: Path) -> None:
    with Machine(machine_spec(BARE), extra_args=tiny_bios_args(tmp_path, SPIN_FOREVER)) as m:
        start = time.monotonic()
        with pytest.raises(QMPTimeout) as info:
            m.run_firmware(timeout=1.0)
        elapsed = time.monotonic() - start
        assert m.status() == "running", "a spinning guest is not stuck, only slow"
    text = str(info.value)
    assert "event SHUTDOWN did not arrive within 1 s" in text
    assert '"event": "RESUME"' in text, "the QMP log tail shows the machine did start"
    assert 1.0 <= elapsed < 1.0 + SLACK
    record_figures("timeout-firmware", bound_s=1.0, raised_after_s=round(elapsed, 3))


def _io_error_args(tmp_path: Path) -> tuple[str, ...]:
    # SeaBIOS reads the boot sector of an IDE disk whose reads fail (blkdebug); with
    # rerror=stop QEMU pauses in io-error for good.
    conf = tmp_path / "fail-reads.conf"
    conf.write_text('[inject-error]\nevent = "read_aio"\nerrno = "5"\n')
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    return ("-drive", f"if=ide,format=raw,rerror=stop,werror=stop,file=blkdebug:{conf}:{disk}")


@pytest.mark.parametrize("state", ["io-error", "guest-panicked"])
def test_a_qemu_paused_forever_is_noticed_at_once_and_ended(tmp_path: Path, state: str) -> None:
    if state == "io-error":
        spec, args, event = machine_spec(BARE), _io_error_args(tmp_path), "BLOCK_IO_ERROR"
    else:
        spec = machine_spec("machine: pc\ndevices:\n  - {model: pvpanic, id: panic}\n")
        args, event = tiny_bios_args(tmp_path, PANIC_VIA_PVPANIC), "GUEST_PANICKED"
    with Machine(spec, extra_args=args) as m:
        pid = m.pid
        start = time.monotonic()
        with pytest.raises(MachineStuck) as info:
            m.run_firmware()  # the default bound: 30 s under TCG
        elapsed = time.monotonic() - start
        assert m.phase == "stopped" and m.exit_outcome.startswith("exited after quit")
        assert _gone(pid), "the harness must end a stuck QEMU itself"
    err = info.value
    assert err.state == state
    assert f"state {state!r}" in str(err) and "waiting for event SHUTDOWN" in str(err)
    assert f'"event": "{event}"' in str(err), "the QMP log tail shows the cause"
    assert elapsed < 3.0, f"noticed after {elapsed:.2f} s: the stuck state was waited out"
    record_figures(f"stuck-{state}", firmware_bound_s=30.0, noticed_and_ended_after_s=round(elapsed, 3))
