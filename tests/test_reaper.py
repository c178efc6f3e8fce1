"""The reaper touches only what it may: QEMUs and run folders of this uid and PID
namespace whose owner is really gone.

A harness in a container (another PID namespace, here made with ``unshare --pid``) looks
dead from the host: its owner pid means another process there, or nothing.  A process
carrying the tag that is not a QEMU may be anything (the tag leaks into every child of a
process that has it).  Neither may ever be killed; each is listed with why.  The
positive controls (a QEMU whose owner's pid now has another start time, folders of a
gone owner) show the checks can see.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from harness.qemu import reaper
from harness.qemu.machine import QEMU_BINARY
from harness.qemu.reaper import KEEP_FILE, OWNER_ENV, OWNER_FILE, Owner, judge_processes, judge_run_root

SERIAL = "machine: pc\ndevices:\n  - {model: isa-serial, id: com1}\n"
#: A bare QEMU that needs nothing and waits (paused) until killed.
BARE_QEMU = [QEMU_BINARY, "-machine", "none", "-nodefaults", "-display", "none", "-S"]


#: Run in a PID namespace of its own: a QEMU carrying the tag of a gone owner (this
#: process's pid with another start time) is judged an orphan, and killed.
ORPHAN_CONTROL = f"""
import os, subprocess, sys, time
from harness.qemu import reaper
from harness.qemu.owner import Owner
me = Owner.me("t")
gone = me._replace(start=me.start + 1).text()
orphan = subprocess.Popen({BARE_QEMU!r}, env={{**os.environ, reaper.OWNER_ENV: gone}})
def started():  # exec'd, with its environment in place (exe changes before the kernel sets it)
    try:
        environ = open(f"/proc/{{orphan.pid}}/environ", "rb").read()
        return reaper.is_qemu(os.readlink(f"/proc/{{orphan.pid}}/exe")) and gone.encode() in environ
    except OSError:
        return False
deadline = time.monotonic() + 10
while not started() and time.monotonic() < deadline:
    time.sleep(0.02)
verdicts = reaper.judge_processes()
why = dict((p.pid, w) for p, w in verdicts.skipped).get(orphan.pid, "not among the tagged processes")
print("orphan" if orphan.pid in [p.pid for p in verdicts.orphans] else "not-an-orphan: " + why)
mine = [p for p in verdicts.orphans if p.pid == orphan.pid]
print("killed" if reaper._kill(mine) == [orphan.pid] and orphan.wait(5) is not None else "not-killed")
"""


def _gone_owner(**changes: int) -> Owner:
    """This process's tag with another start time: the pid lives, but as someone else
    (what a reused pid looks like)."""
    me = Owner.me("t")
    return me._replace(**{"start": me.start + 1, **changes})


def _wait(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _pids_with(marker: str) -> list[int]:
    needle = marker.encode()
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    out.append(int(entry.name))
            except OSError:
                pass
    return out


@pytest.mark.skipif(os.getuid() != 0 or shutil.which("unshare") is None, reason="unshare --pid needs root")
def test_the_reaper_kills_only_our_orphaned_qemus(tmp_path: Path) -> None:
    marker = f"REAPER_TEST={os.getpid()}-{time.monotonic_ns()}"
    root = Path(tempfile.mkdtemp(prefix="hn-", dir="/tmp"))  # short: unix socket paths
    env = dict(os.environ, HARNESS_RUN_DIR=str(root), **dict([marker.split("=", 1)]))
    script = (f"import time\nfrom harness.config import parse_machine_text\n"
              f"from harness.qemu.machine import Machine\n"
              f"m = Machine(parse_machine_text({SERIAL!r}))\nm.launch()\n"
              f"print(m.pid, flush=True)\ntime.sleep(120)\n")
    started: list[subprocess.Popen[bytes]] = []
    try:
        # 1. A live harness in another PID namespace, with its QEMU.
        container = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
                                      sys.executable, "-c", script], env=env, stdout=subprocess.PIPE)
        started.append(container)
        assert container.stdout is not None
        assert container.stdout.readline().strip(), "the contained harness did not start QEMU"
        foreign = [p for p in _pids_with(marker) if reaper.is_qemu(os.readlink(f"/proc/{p}/exe"))]
        assert len(foreign) == 1
        # 2. A process that is not a QEMU but carries the tag of a gone owner.
        gone = _gone_owner().text()
        sleeper = subprocess.Popen(["sleep", "120"], env={**env, OWNER_ENV: gone})
        # 3. A QEMU of another user with the tag of a gone owner.
        other_user = subprocess.Popen(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                                       *BARE_QEMU], env={**env, OWNER_ENV: gone}, stderr=subprocess.DEVNULL)
        started += [sleeper, other_user]
        # exec'd, with the tag readable (/proc/PID/exe changes before the environment is set)
        assert _wait(lambda: reaper.is_qemu(_exe(other_user.pid)) and
                     {sleeper.pid, other_user.pid} <= {p.pid for p in reaper.tagged_processes()})

        verdicts = judge_processes()
        skipped = {proc.pid: why for proc, why in verdicts.skipped}
        assert "another PID namespace" in skipped[foreign[0]]
        assert "not a QEMU" in skipped[sleeper.pid]
        assert "uid 65534" in skipped[other_user.pid]
        assert not {foreign[0], sleeper.pid, other_user.pid} & {p.pid for p in verdicts.orphans}
        # 4. The positive control: our QEMU whose owner is gone is judged an orphan and
        # killed.  It runs in a PID namespace of its own: any reaper of this uid on the host
        # (every pytest session this suite starts reaps at its start) would rightly kill it
        # before it is judged here.  And it is judged once its environment can be read:
        # /proc/PID/exe names QEMU a moment before the kernel has set up the new
        # environment, and a process whose tag cannot be read is no tagged process (1 run
        # in 5 failed so).
        control = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
                                  sys.executable, "-c", ORPHAN_CONTROL], env=env, capture_output=True,
                                 text=True, timeout=60)
        assert control.returncode == 0 and control.stdout.split() == ["orphan", "killed"], control
        assert _alive(foreign[0]) and sleeper.poll() is None and other_user.poll() is None

        # The contained harness's run folder: another namespace's, so never swept.
        remove, kept = judge_run_root(root)
        assert remove == [] and any("another PID namespace" in why for _, why in kept), kept
        # `harness reap --list` says what it skipped and why.
        out = subprocess.run([sys.executable, "-m", "harness.cli", "reap", "--list"], env=env,
                             capture_output=True, text=True, timeout=60).stdout
        assert f"skipped pid {foreign[0]}: its owner lives in another PID namespace" in out, out
        assert f"skipped pid {sleeper.pid}: not a QEMU" in out, out
    finally:
        for proc in started:
            proc.kill()
            proc.wait(10)
        assert _wait(lambda: not _pids_with(marker)), "a process of this test outlived it"
        shutil.rmtree(root, ignore_errors=True)


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def _folder(root: Path, name: str, owner: Owner | str | None, *, keep: bool = False) -> Path:
    folder = root / name
    folder.mkdir()
    if owner is not None:
        (folder / OWNER_FILE).write_text(owner if isinstance(owner, str) else owner.text())
    if keep:
        (folder / KEEP_FILE).touch()
    return folder


def test_run_folders_and_owned_files_are_swept_by_the_same_rule(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    me, gone = Owner.me("t"), _gone_owner()
    live = _folder(root, "live", me)
    dead = _folder(root, "dead", gone)
    other_ns = _folder(root, "other-ns", _gone_owner(pidns=1))
    kept = _folder(root, "kept", gone, keep=True)
    live_kept = _folder(root, "live-kept", me, keep=True)
    untagged = _folder(root, "untagged", None)
    old_format = _folder(root, "old-format", f"{os.getpid()}:abc")
    target = tmp_path / "elsewhere"
    _folder(tmp_path, "elsewhere", gone)
    (root / "link").symlink_to(target)
    dead_groups = root / f"xdist-groups-1@{gone.stem()}.gw0.json"
    live_groups = root / f"{reaper.owned_name('xdist-groups-2')}.gw0.json"
    for path in (dead_groups, live_groups, root / "unrelated.json"):
        path.write_text("{}")
    # Run folders killed while being made (spawn.new_run_dir): untagged, but their staging
    # name says whose they are.
    dead_staging = root / f".new-x1y2@{gone.stem()}"
    live_staging = root / f".new-x3y4@{Owner.me().stem()}"
    for staging in (dead_staging, live_staging):
        staging.mkdir()
        (staging / ".owner.1.tmp").write_text("half")
    foreign = _folder(root, "foreign", gone)
    if os.getuid() == 0:
        os.chown(foreign, 65534, 65534)

    remove, skipped = judge_run_root(root)
    why = {p.name: w for p, w in skipped}
    assert sorted(p.name for p in remove) == sorted([dead.name, dead_groups.name, dead_staging.name]
                                                   + ([] if os.getuid() == 0 else [foreign.name]))
    assert "alive" in why["live"] and "alive" in why["live-kept"] and "alive" in why[live_groups.name]
    assert "alive" in why[live_staging.name]
    assert "another PID namespace" in why["other-ns"]
    assert "marked keep" in why["kept"]
    assert "not a run folder" in why["untagged"]
    assert "another harness version" in why["old-format"]
    assert "link" not in why and root / "link" not in remove
    if os.getuid() == 0:
        assert "uid 65534" in why["foreign"]

    # A day later: the keep-marked folder of the gone owner goes too.
    removed = reaper.sweep_orphan_run_dirs(root, now=time.time() + reaper.KEEP_GRACE + 60)
    assert sorted(p.name for p in removed) == sorted(
        [dead.name, dead_groups.name, kept.name, dead_staging.name] + ([] if os.getuid() == 0 else [foreign.name]))
    assert not dead.exists() and not kept.exists() and not dead_groups.exists()
    assert live.is_dir() and live_kept.is_dir() and other_ns.is_dir() and old_format.is_dir()
    assert untagged.is_dir(), "a folder without a tag is not the harness's to remove"
    assert live_groups.exists() and (root / "unrelated.json").exists()
    assert (target / OWNER_FILE).exists(), "a link was followed"


def test_the_owner_tag_names_pid_start_time_uid_and_namespace() -> None:
    me = Owner.me("tok")
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    assert (me.pid, me.start, me.uid) == (os.getpid(), int(fields[19]), os.getuid())
    assert os.readlink("/proc/self/ns/pid") == f"pid:[{me.pidns}]"
    assert Owner.parse(me.text()) == me and me.is_me() and not me.gone()
    assert _gone_owner().gone() and not _gone_owner().is_me()
    assert Owner.parse("123:tok") is None and Owner.parse("a:b:c:d:e") is None
    # A pid no process has.
    free = max(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()) + 10_000
    assert Owner(free, 1, os.getuid(), me.pidns).gone()


def test_a_sigterm_or_sighup_ends_harness_run_like_ctrl_c(tmp_path: Path) -> None:
    """The signal arrives while QEMU runs the firmware; the command shuts QEMU down and
    removes its run folder on the way out (exit 130)."""
    root = Path(tempfile.mkdtemp(prefix="hs-", dir="/tmp"))
    machine = tmp_path / "m.yaml"
    machine.write_text(SERIAL)
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            env = dict(os.environ, HARNESS_RUN_DIR=str(root))
            proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(machine), "--out",
                                     str(tmp_path / f"out-{sig}"), "--no-picture"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            assert _wait(lambda: any(reaper.is_qemu(_exe(c)) for c in _children(proc.pid)), 60)
            qemu = next(c for c in _children(proc.pid) if reaper.is_qemu(_exe(c)))
            proc.send_signal(sig)
            assert proc.wait(30) == 130, proc.stderr.read() if proc.stderr else ""
            assert not _alive(qemu)
            assert list(root.iterdir()) == [], f"run folder left after {sig.name}"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out
