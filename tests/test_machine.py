"""harness.qemu.Machine on a real QEMU (TCG): launch, firmware, failures, no leftovers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from harness.qemu.machine import LaunchError, Machine, MachineDied, QMPTimeout, _wait_exit
from harness.qemu.reaper import OWNER_ENV, reap_own, sweep_orphan_run_dirs, tagged_processes
from harness.qemu.progress import END_LINE, END_RETRY_SECONDS
from helpers import REPO, machine_spec, qemu_pids

SERIAL = "machine: pc\ndevices:\n  - {model: isa-serial, id: com1}\n"


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid not in qemu_pids():
            return True
        time.sleep(0.05)
    return False


def test_launch_firmware_rerun_and_clean_shutdown() -> None:
    with Machine(machine_spec(SERIAL)) as m:
        assert m.phase == "pre-firmware"
        assert m.status() == "prelaunch"  # -S: nothing has run yet
        assert m.accel_used == "tcg" and m.qemu_version.count(".") == 2
        first = m.run_firmware()
        # The harness stopped the machine at SeaBIOS's last line: no reboot ran.
        assert (m.phase, m.firmware_end, m.status()) == ("post-firmware", "log", "paused")
        names = [e["event"] for e in m.events()]
        assert names == ["RESUME", "STOP"], names
        assert m.firmware_log.read_bytes().rstrip().endswith(END_LINE)
        size = m.firmware_log.stat().st_size
        second = m.run_firmware()  # re-run the firmware in the same process
        assert m.events("RESET"), "the re-run must go through a real reset"
        assert m.firmware_end == "log" and not m.events("SHUTDOWN")
        assert m.firmware_log.read_bytes()[size:].rstrip().endswith(END_LINE), "the re-run's own end"
        assert 0 < first < 30 and 0 < second < 30
        run_dir, pid = m.run_dir, m.pid
        argv = (run_dir / "argv.sh").read_text()
        assert "-nodefaults" in argv and "isa-serial,id=com1" in argv
        assert f"reboot-timeout={END_RETRY_SECONDS * 1000}" in argv
        assert oct(run_dir.stat().st_mode & 0o777) == "0o700"
    assert m.exit_outcome.startswith("exited after quit")
    assert not (m.run_dir / "keep").exists()
    assert not run_dir.exists(), "the run folder is removed unless keep=True"
    assert _wait_gone(pid)


def test_without_the_firmware_log_the_reboot_ends_the_firmware() -> None:
    with Machine(machine_spec(SERIAL + "firmware_log: false\n")) as m:
        m.run_firmware()
        assert (m.phase, m.firmware_end, m.status()) == ("post-firmware", "reboot", "shutdown")
        names = [e["event"] for e in m.events()]
        # SeaBIOS's reboot became a shutdown, and the shutdown a pause.  (SeaBIOS may try a
        # second reset method before the pause lands: a trailing SHUTDOWN is harmless.)
        assert names[:3] == ["RESUME", "SHUTDOWN", "STOP"], names
        assert m.events("SHUTDOWN")[0]["data"]["reason"] == "guest-reset"
        m.run_firmware()
        assert m.firmware_end == "reboot" and m.events("RESET")
        assert "reboot-timeout=0" in (m.run_dir / "argv.sh").read_text()


def test_an_exit_reaped_by_another_thread_counts_as_an_exit() -> None:
    """The loop thread's exit watcher and close() both reap QEMU.  While one holds Popen's
    waitpid lock, poll() in the other answers None: close() once took that for a QEMU that
    ignored quit and sent it SIGTERM (a CI failure: "exited after SIGTERM (status 0)")."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    held, release = threading.Event(), threading.Event()

    def hold_the_reap_lock() -> None:
        with proc._waitpid_lock:  # what Popen.wait() holds while it reaps
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_reap_lock)
    holder.start()
    try:
        held.wait(10)
        threading.Timer(0.8, release.set).start()  # the other thread reaps after the exit
        assert _wait_exit(proc, 10.0), "an exited process must not be escalated to signals"
        assert proc.returncode == 0
    finally:
        release.set()
        holder.join(10)
        proc.wait(10)


def test_qmp_log_records_commands_and_events() -> None:
    with Machine(machine_spec(SERIAL), keep=True) as m:
        m.hmp("info pic")
        m.run_firmware()
        log = m.qmp_log_path
    text = log.read_text()
    assert '"human-monitor-command"' in text and '"event": "STOP"' in text and '"shutdown"' in text
    import shutil
    shutil.rmtree(log.parent)


def test_qmp_messages_are_pretty_printed_only_for_a_debug_log(monkeypatch, caplog) -> None:
    """qemu.qmp's message hooks log each message at DEBUG; its text (json.dumps with
    indent) is built only when that level is on, and then the messages are logged."""
    import logging
    from qemu.qmp.message import Message
    printed = []
    real = Message.__str__
    monkeypatch.setattr(Message, "__str__", lambda msg: printed.append(1) or real(msg))
    with Machine(machine_spec(SERIAL)) as m:
        m.hmp("info pic")
        assert printed == [], "no text built while DEBUG is off"
        with caplog.at_level(logging.DEBUG, logger="qemu.qmp"):
            m.hmp("info pic")
    assert printed, "with DEBUG on the messages are printed"
    assert any("<--" in r.getMessage() and "return" in r.getMessage() for r in caplog.records)


def test_an_interrupt_while_qemu_is_being_spawned_leaves_no_qemu(monkeypatch) -> None:
    """SIGTERM/Ctrl-C in the caller while the loop thread spawns QEMU: the caller never
    hears back from the spawn, yet the QEMU it started is killed before launch() re-raises
    (not left to the parent-death signal, which only fires when this process is gone)."""
    import threading
    from harness.qemu import machine as machine_module
    real = machine_module.spawn_qemu
    spawned = []

    def spawn_then_interrupt(*args, **kwargs):
        result = real(*args, **kwargs)
        spawned.append(result.proc.pid)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # the caller is waiting
        time.sleep(0.2)  # so the interrupt lands before the caller hears back
        return result

    monkeypatch.setattr(machine_module, "spawn_qemu", spawn_then_interrupt)
    m = Machine(machine_spec(SERIAL))
    with pytest.raises(KeyboardInterrupt):
        m.launch()
    assert spawned and not _alive_pid(spawned[0]), "the QEMU spawned during the interrupt is still running"
    assert not m.run_dir.exists()


def _alive_pid(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_launch_failure_carries_argv_status_and_qemu_output() -> None:
    m = Machine(machine_spec(SERIAL), extra_args=("-device", "no-such-device"))
    with pytest.raises(LaunchError) as info:
        m.launch()
    err = info.value
    assert err.returncode == 1
    assert "no-such-device" in str(err)  # QEMU's own message, from the log tail
    assert "argv: " in str(err) and "qemu-system-x86_64" in str(err)
    assert not m.run_dir.exists(), "a failed launch cleans up after itself"
    assert m.pid not in qemu_pids()


def test_timeout_error_says_what_was_awaited_and_shows_the_log() -> None:
    with Machine(machine_spec(SERIAL)) as m:
        with pytest.raises(QMPTimeout) as info:
            m.wait_event("GUEST_PANICKED", timeout=0.3)
        assert "GUEST_PANICKED" in str(info.value) and "qmp.log" in str(info.value)


def test_qemu_killed_from_outside_is_reported_as_death() -> None:
    with Machine(machine_spec(SERIAL)) as m:
        os.kill(m.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        with pytest.raises(MachineDied) as info:
            while time.monotonic() < deadline:
                m.status()
                time.sleep(0.05)
        assert "status -9" in str(info.value) or "exited" in str(info.value)
    assert "SIGKILL" not in (m.exit_outcome or "")


def test_hung_qemu_is_killed_within_bounded_time() -> None:
    m = Machine(machine_spec(SERIAL))
    m.launch()
    os.kill(m.pid, signal.SIGSTOP)  # QEMU hangs: it answers nothing any more
    start = time.monotonic()
    m.close()
    assert time.monotonic() - start < 15
    assert "SIGKILL" in m.exit_outcome or "SIGTERM" in m.exit_outcome
    assert _wait_gone(m.pid)


def test_qemu_dies_with_its_python_parent_even_on_sigkill(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from harness.config import parse_machine_text
        from harness.qemu.machine import Machine
        m = Machine(parse_machine_text({SERIAL!r}))
        m.launch()
        print(m.pid, m.run_dir, flush=True)
        time.sleep(60)
    """))
    # A private (short: unix socket paths) run root, so that a concurrent session's
    # start-up sweep cannot race this test.
    import tempfile
    root = tempfile.mkdtemp(prefix="hr-")
    env = dict(os.environ, HARNESS_RUN_DIR=root)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        pid_text, run_dir = parent.stdout.readline().split()
        qemu_pid = int(pid_text)
        assert qemu_pid in qemu_pids()
        parent.kill()  # SIGKILL: no atexit, no finally
        parent.wait(10)
        assert _wait_gone(qemu_pid, 10), "QEMU outlived its SIGKILLed parent"
        # Nobody could clean its run folder; the sweep (run at session start) does.
        assert Path(run_dir).is_dir()
        assert Path(run_dir) in sweep_orphan_run_dirs(Path(run_dir).parent)
        assert not Path(run_dir).exists()
    finally:
        parent.kill()
        import shutil
        shutil.rmtree(root, ignore_errors=True)


def test_every_qemu_is_tagged_with_its_owner_for_the_reaper() -> None:
    with Machine(machine_spec(SERIAL)) as m:
        tags = {p.pid: p for p in tagged_processes()}
        assert m.pid in tags and tags[m.pid].owner_pid == os.getpid()
        environ = Path(f"/proc/{m.pid}/environ").read_bytes()
        assert f"{OWNER_ENV}={os.getpid()}:".encode() in environ
        # The session-end reaper kills survivors of this process.
        assert m.pid in reap_own()
        assert _wait_gone(m.pid)


def test_accelerator_policies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.errors import HarnessError
    from harness.qemu import accel
    assert accel.resolve_accel("tcg") == "tcg"
    with pytest.raises(HarnessError, match="unknown accelerator policy"):
        accel.resolve_accel("hvf")
    monkeypatch.setattr(accel, "KVM_DEVICE", str(tmp_path / "no-kvm"))
    with pytest.raises(accel.AccelUnavailable, match="no-kvm"):
        accel.resolve_accel("kvm")
    assert accel.resolve_accel("auto") == "tcg"  # KVM unusable: auto never fails


def test_auto_uses_the_cached_calibration_verdict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json as _json

    from harness.qemu import accel
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("HARNESS_CACHE_DIR", raising=False)  # (it would come before XDG_CACHE_HOME)
    monkeypatch.setattr(accel, "kvm_usable", lambda: True)
    monkeypatch.setattr(accel, "host_is_guest", lambda: True)
    calls = []
    monkeypatch.setattr(accel, "_firmware_seconds", lambda a: calls.append(a) or {"tcg": 0.1, "kvm": 4.0}[a])
    assert accel.resolve_accel("auto") == "tcg" and calls == ["tcg", "kvm"]
    cached = _json.loads((tmp_path / "qemu-nt-harness" / "accel.json").read_text())
    assert cached["choice"] == "tcg" and cached["seconds"] == {"tcg": 0.1, "kvm": 4.0}
    assert accel.resolve_accel("auto") == "tcg" and calls == ["tcg", "kvm"]  # no re-measurement


def test_a_run_folder_too_long_for_sockets_is_refused_up_front(tmp_path: Path) -> None:
    from harness.errors import HarnessError
    deep = tmp_path / ("d" * 120)
    with pytest.raises(HarnessError, match="too long for unix sockets"):
        Machine(machine_spec(SERIAL), run_dir=deep)


def test_a_qmp_error_answer_is_reported_at_once() -> None:
    from harness.qemu.machine import QEMUError
    with Machine(machine_spec(SERIAL)) as m:
        start = time.monotonic()
        with pytest.raises(QEMUError, match="qom-get"):
            m.qmp("qom-get", {"path": "/machine/peripheral/com1", "property": "no-such-property"})
        assert time.monotonic() - start < 0.5, "an error answer must not wait for a process exit"
        assert m.status() == "prelaunch"


def test_a_run_folder_is_tagged_once_with_its_machines_token(tmp_path):
    """new_run_dir tags a fresh folder with a token of its own; the machine made on it takes
    that token (its QEMU's environment carries the same tag) and writes no second tag; a
    folder it is given untagged gets its tag from the machine."""
    from harness.qemu.owner import OWNER_FILE, Owner
    from harness.qemu.spawn import folder_token, new_run_dir
    folder = Path(new_run_dir("tagged"))
    made = (folder / OWNER_FILE).stat()
    token = folder_token(folder)
    assert token and Owner.parse((folder / OWNER_FILE).read_text()).is_me()
    assert folder_token(tmp_path) is None
    try:
        machine = Machine(machine_spec("machine: isapc\n"), run_dir=folder)
        try:
            machine.launch()
            environ = Path(f"/proc/{machine.pid}/environ").read_bytes().split(b"\0")
            tag = next(v for v in environ if v.startswith(OWNER_ENV.encode() + b"="))
            assert Owner.parse(tag.split(b"=", 1)[1].decode()).token == token
            after = (folder / OWNER_FILE).stat()
            assert (after.st_ino, after.st_mtime_ns) == (made.st_ino, made.st_mtime_ns)   # not written again
        finally:
            machine.close()
        given = tmp_path / "given"
        with Machine(machine_spec("machine: isapc\n"), run_dir=given) as other:
            assert folder_token(given) == other._token and other._token != token
    finally:
        import shutil
        shutil.rmtree(folder, ignore_errors=True)


def test_an_event_sent_before_an_answer_is_kept_when_the_command_returns():
    """Events reach the machine in the order QEMU sends them (the client hands each over
    as it reads it, no queue and reader task between): QEMU sends RESUME before cont's
    answer and STOP before stop's, so each is in events() once the command returns."""
    with Machine(machine_spec("machine: isapc\n")) as machine:   # launched paused
        for command, event in (("cont", "RESUME"), ("stop", "STOP"), ("cont", "RESUME"), ("stop", "STOP")):
            before = machine.event_count
            machine.qmp(command)
            assert [e["event"] for e in machine.events()[before:]][:1] == [event]
        log = machine.qmp_log_path.read_text()
        assert log.count('"event": "RESUME"') == 2 and log.count('"event": "STOP"') >= 2
