"""Chaos: strike real pytest workers and real QEMUs mid-boot; nothing may be left behind.

``CHAOS_ITERATIONS`` (200 in ``make test``) iterations, spread evenly over five ways to
fail, each a fresh pytest worker (forked by tests/chaos_zygote.py) running
tests/chaos_subject.py, which keeps a QEMU rebooting through SeaBIOS until struck:

* ``worker-sigkill``: the worker gets SIGKILL (no teardown, no atexit);
* ``qemu-kill9``: QEMU gets SIGKILL; the test must fail with MachineDied;
* ``qemu-sigstop``: QEMU is frozen; the test must fail with QMPTimeout and close it;
* ``timeout-signal`` / ``timeout-thread``: pytest-timeout ends the test mid-boot, by
  exception (teardown runs) or by ``os._exit`` (it does not).

After each iteration no process of that iteration may remain (the QEMUs carry a
chaos-run tag in their environment, so other people's QEMUs are never counted or
touched); after the run, one more session's start-up sweep must leave the private run
root and temp folder empty.  Figures go to RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import queue
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.qemu import lifeline
from helpers import REPO, record_figures

CHAOS_ITERATIONS = int(os.environ.get("CHAOS_ITERATIONS", "200"))
CHAOS_PARALLEL = int(os.environ.get("CHAOS_PARALLEL", "4"))
KINDS = ("worker-sigkill", "qemu-kill9", "qemu-sigstop", "timeout-signal", "timeout-thread")
#: What the test in the worker must report, per kind (None: it cannot report).
EXPECTED_ERROR = {"worker-sigkill": None, "qemu-kill9": "MachineDied", "qemu-sigstop": "QMPTimeout",
                  "timeout-signal": "Failed", "timeout-thread": None}
EXPECTED_EXIT = {"worker-sigkill": -signal.SIGKILL, "qemu-kill9": 1, "qemu-sigstop": 1,
                 "timeout-signal": 1, "timeout-thread": 1}
TAG_ENV = "HARNESS_CHAOS"
SUBJECT = str(REPO / "tests" / "chaos_subject.py")
EVENT_TIMEOUT = 30.0  # for any one event of a worker; every worker ends itself within 60 s
GONE_TIMEOUT = 10.0


def tagged(tag: str) -> dict[int, tuple[str, str]]:
    """pid → (iteration, command name) of live processes carrying ``TAG_ENV=tag:...``."""
    needle = f"{TAG_ENV}={tag}:".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            comm = (entry / "comm").read_text().strip()
        except (OSError, IndexError):
            continue
        if state == "Z":
            continue
        for var in environ.split(b"\0"):
            if var.startswith(needle):
                found[int(entry.name)] = (var[len(needle):].decode(), comm)
    return found


class Zygote:
    """The fork server and the one reader of its pipe, sorting events by iteration."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.logs = logs
        self.junk: list[str] = []  # lines that are not events: a worker wrote to the pipe
        self.proc = subprocess.Popen([*lifeline.command(os.getpid()), sys.executable, str(REPO / "tests" / "chaos_zygote.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                     cwd=REPO, text=True)
        self._queues: dict[int, queue.Queue[dict[str, Any]]] = defaultdict(queue.Queue)
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _queue(self, ident: int) -> queue.Queue[dict[str, Any]]:
        with self._lock:
            return self._queues[ident]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                self.junk.append(line)
                continue
            self._queue(message["id"]).put(message)

    def start(self, ident: int, args: list[str], env: dict[str, str], *, cli: bool = False) -> None:
        with self._lock:
            assert self.proc.stdin is not None
            request = {"id": ident, "args": args, "env": env, "log": str(self.log(ident)), "cli": cli}
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()

    def log(self, ident: int) -> Path:
        return self.logs / f"{ident}.log"

    def wait_for(self, ident: int, wanted: str, seen: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The next ``wanted`` event of iteration ``ident`` (None if the worker exited
        first); every event read on the way is appended to ``seen``."""
        for message in seen:
            if message["event"] == wanted:
                return message
        while True:
            try:
                message = self._queue(ident).get(timeout=EVENT_TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"iteration {ident}: no {wanted!r} within {EVENT_TIMEOUT} s") from None
            seen.append(message)
            if message["event"] == wanted:
                return message
            if message["event"] == "exit":
                return None

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(60)
        self._reader.join(10)


def left_of(tag: str, ident: int) -> list[int]:
    """The processes of iteration ``ident`` still there after up to GONE_TIMEOUT."""
    deadline = time.monotonic() + GONE_TIMEOUT
    while (left := [p for p, (i, _) in tagged(tag).items() if i == str(ident)]) and time.monotonic() < deadline:
        time.sleep(0.01)
    return left


def sweep_and_close(zygote: Zygote, tag: str) -> None:
    """One more pytest session (its start-up sweep removes what dead workers left), then
    the zygote ends."""
    seen: list[dict[str, Any]] = []
    zygote.start(-1, [f"{SUBJECT}::test_nothing", "-q", "-p", "no:cacheprovider"], {TAG_ENV: f"{tag}:-1"})
    final = zygote.wait_for(-1, "exit", seen)
    assert final is not None and final["returncode"] == 0, seen
    zygote.close()


def clean_up(zygote: Zygote, tag: str, base: Path) -> None:
    """Whatever happened: the zygote and every process of the run killed, its folder gone."""
    if zygote.proc.poll() is None:
        zygote.proc.kill()
    for pid in tagged(tag):
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(base, ignore_errors=True)


@dataclass
class Result:
    kind: str
    problems: list[str] = field(default_factory=list)
    struck: bool = False
    exit_s: float | None = None  # strike (or start) → worker exit
    gone_s: float | None = None  # strike (or start) → no process of the iteration left
    leaked: int = 0
    qemu_started: bool = False
    run_dir_left: bool = False


def run_iteration(zygote: Zygote, tag: str, ident: int, kind: str, rng: random.Random) -> Result:
    result = Result(kind)
    args = [f"{SUBJECT}::test_boot_until_struck", "-q", "-p", "no:cacheprovider"]
    env = {TAG_ENV: f"{tag}:{ident}"}
    if kind == "qemu-sigstop":
        env.update(CHAOS_QMP_TIMEOUT="0.5", CHAOS_FIRMWARE_TIMEOUT="1")
    if kind.startswith("timeout-"):
        args += [f"--timeout={rng.uniform(0.3, 0.8):.2f}", "-o", f"timeout_method={kind[8:]}"]
    seen: list[dict[str, Any]] = []
    start = time.monotonic()
    zygote.start(ident, args, env)
    forked = zygote.wait_for(ident, "forked", seen)
    assert forked is not None
    up = zygote.wait_for(ident, "qemu-up", seen)
    if kind.startswith("timeout-"):
        result.struck = True  # the timeout strikes by itself, in launch or in the firmware
    elif up is None:
        result.problems.append("the worker ended before its QEMU came up")
    else:
        time.sleep(rng.uniform(0.0, 0.15))  # somewhere in a firmware run
        target = forked["pid"] if kind == "worker-sigkill" else up["qemu"]
        sig = signal.SIGSTOP if kind == "qemu-sigstop" else signal.SIGKILL
        start = time.monotonic()
        try:
            os.kill(target, sig)
            result.struck = True
        except ProcessLookupError:
            pass  # it had failed by itself (counted: see `missed`)
    exited = zygote.wait_for(ident, "exit", seen)
    assert exited is not None
    result.exit_s = time.monotonic() - start
    left = left_of(tag, ident)
    result.gone_s = time.monotonic() - start
    if left:
        result.leaked = len(left)
        result.problems.append(f"{len(left)} process(es) left: {left}")
        for pid in left:  # ours (tagged with this run): never leave them running
            os.kill(pid, signal.SIGKILL)
    outcome = next((m for m in seen if m["event"] == "outcome"), None)
    tail = zygote.log(ident).read_text(errors="replace")[-600:]
    if result.struck:
        want = EXPECTED_ERROR[kind]
        got = outcome["error"] if outcome else None
        if got != want:
            result.problems.append(f"test ended with {got} ({outcome and outcome['message']!r}), expected {want}")
        if exited["returncode"] != EXPECTED_EXIT[kind]:
            result.problems.append(f"worker exit {exited['returncode']}, expected {EXPECTED_EXIT[kind]}; "
                                   f"its output ends:\n{tail}")
    if up is not None:
        result.qemu_started = True
        result.run_dir_left = Path(up["run_dir"]).exists()
        if result.run_dir_left and EXPECTED_ERROR[kind] is not None:
            result.problems.append(f"teardown ran but left {up['run_dir']}")
    return result


def _private_env(base: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "HARNESS_"))}
    for name in ("t", "r", "logs"):
        (base / name).mkdir(mode=0o700)
    env.update(TMPDIR=str(base / "t"), HARNESS_RUN_DIR=str(base / "r"), PYTHONPATH=str(REPO / "tests"))
    return env


def test_chaos_leaves_no_process_and_no_file() -> None:
    base = Path(tempfile.mkdtemp(prefix="hc-", dir="/tmp"))  # short: unix socket paths
    tag = base.name
    rng = random.Random(os.environ.get("CHAOS_SEED", "10"))
    kinds = [KINDS[i % len(KINDS)] for i in range(CHAOS_ITERATIONS)]
    seeds = [rng.random() for _ in kinds]
    zygote = Zygote(_private_env(base), base / "logs")
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(CHAOS_PARALLEL) as pool:
            results = list(pool.map(lambda i: run_iteration(zygote, tag, i, kinds[i], random.Random(seeds[i])),
                                    range(len(kinds))))
        left_by_dead_workers = len(list((base / "r").iterdir()))
        sweep_and_close(zygote, tag)
        wall = time.monotonic() - started
        processes_left = tagged(tag)
        files_left = sorted(str(p.relative_to(base)) for p in base.rglob("*")
                            if p not in (base / "t", base / "r") and p.parent != base / "logs"
                            and p != base / "logs")
    finally:
        clean_up(zygote, tag, base)

    problems = [f"iteration {i} ({r.kind}): {p}" for i, r in enumerate(results) for p in r.problems]
    by_kind: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by_kind[r.kind].append(r)
    figures: dict[str, Any] = {
        "iterations": len(results), "wall_s": round(wall, 1), "parallel": CHAOS_PARALLEL,
        "qemu_started": sum(r.qemu_started for r in results),
        "processes_left": sum(r.leaked for r in results) + len(processes_left),
        "files_left": len(files_left), "run_folders_left_by_dead_workers_then_swept": left_by_dead_workers,
        "problems": len(problems)}
    for kind, rs in by_kind.items():
        struck = [r for r in rs if r.struck]
        figures[kind] = {"iterations": len(rs), "struck": len(struck),
                         "exit_s_median": round(statistics.median(r.exit_s for r in struck), 3),
                         "exit_s_max": round(max(r.exit_s for r in struck), 3),
                         "gone_s_max": round(max(r.gone_s for r in struck), 3),
                         "run_folder_left_until_sweep": sum(r.run_dir_left for r in rs)}
    record_figures("chaos", **figures)
    assert not problems, "\n".join(problems[:20])
    assert zygote.junk == [], f"stray output on the event pipe: {zygote.junk[:5]}"
    assert processes_left == {}, f"processes left: {processes_left}"
    assert files_left == [], f"files left: {files_left[:20]}"
    missed = Counter(r.kind for r in results if not r.struck)
    assert all(missed[k] <= len(by_kind[k]) // 10 for k in KINDS), f"strikes that missed: {missed}"


# ---- kills timed at QEMU's start --------------------------------------------------------
#: ``START_KILLS`` (20 in make test, 200 in make soak) strikes, spread over the processes
#: that start QEMUs: a pytest worker, ``harness run``, ``harness verify`` and a
#: ``harness matrix --run`` worker.  Each is SIGKILLed 0-80 ms after the process that will
#: become QEMU appears (the lifeline, harness/qemu/lifeline.py), so strikes land before
#: the parent-death signal is armed, between arming and exec, and in QEMU's start-up.
START_KILLS = int(os.environ.get("START_KILLS", "20"))
STARTERS = ("pytest", "run", "verify", "matrix-worker")
LIFELINE = b"lifeline"  # the script (lifeline.py) or the program (_lifeline)


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    except (OSError, ValueError):
        pass
    return out


def _qemu_start(root: int, min_depth: int) -> tuple[int, int] | None:
    """(the process starting a QEMU, its new child) at ``min_depth`` or deeper below
    ``root``: a child running the lifeline or QEMU, or one just forked (its command line
    still its parent's: the fork has not exec'd yet)."""
    stack = [(root, 0)]
    while stack:
        pid, depth = stack.pop()
        try:
            own = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        for child in _children(pid):
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if depth >= min_depth and (LIFELINE in cmdline or b"qemu-system" in cmdline or cmdline == own):
                return pid, child
            stack.append((child, depth + 1))
    return None


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _starter_request(kind: str, base: Path, ident: int) -> tuple[list[str], bool]:
    machine = base / "m.yaml"
    out = str(base / "out" / str(ident))
    if kind == "pytest":
        return [f"{SUBJECT}::test_boot_until_struck", "-q", "-p", "no:cacheprovider"], False
    if kind == "run":
        return ["run", str(machine), "--out", out, "--no-picture"], True
    if kind == "verify":
        return ["verify", str(machine)], True
    return ["matrix", str(base / "x.yaml"), "--run", "-j", "1", "--out", out, "--progress", "none"], True


def test_kills_timed_at_qemu_start_leave_no_qemu_and_no_run_folder() -> None:
    base = Path(tempfile.mkdtemp(prefix="hk-", dir="/tmp"))
    tag = base.name
    rng = random.Random(os.environ.get("CHAOS_SEED", "19"))
    (base / "m.yaml").write_text("name: k\nmachine: pc\ndevices:\n  - {model: isa-serial, id: com1}\n")
    (base / "x.yaml").write_text("name: kx\naxes:\n  m: {pc: {machine: pc, devices: [{model: isa-serial, id: com1}]}}\n")
    zygote = Zygote(_private_env(base), base / "logs")
    figures: dict[str, Any] = {k: {"kills": 0, "before_exec": 0, "after_exec": 0, "missed": 0} for k in STARTERS}
    problems: list[str] = []
    started = time.monotonic()
    try:
        for ident in range(START_KILLS):
            kind = STARTERS[ident % len(STARTERS)]
            args, cli = _starter_request(kind, base, ident)
            seen: list[dict[str, Any]] = []
            zygote.start(ident, args, {TAG_ENV: f"{tag}:{ident}"}, cli=cli)
            forked = zygote.wait_for(ident, "forked", seen)
            assert forked is not None
            deadline = time.monotonic() + EVENT_TIMEOUT
            found = None
            while found is None and time.monotonic() < deadline and _running(forked["pid"]):
                found = _qemu_start(forked["pid"], 1 if kind == "matrix-worker" else 0)
            if found is None:
                figures[kind]["missed"] += 1
                tail = zygote.log(ident).read_text(errors="replace")[-800:]
                problems.append(f"iteration {ident} ({kind}): no QEMU started; the output ends:\n{tail}")
                if _running(forked["pid"]):
                    os.kill(forked["pid"], signal.SIGKILL)
            else:
                time.sleep(rng.choice((0.0, rng.uniform(0.0, 0.08))))
                starter, child = found
                try:
                    exe = os.readlink(f"/proc/{child}/exe")
                except OSError:
                    exe = ""
                figures[kind]["after_exec" if "qemu-system" in exe else "before_exec"] += 1
                os.kill(starter, signal.SIGKILL)
                figures[kind]["kills"] += 1
            exited = zygote.wait_for(ident, "exit", seen)
            assert exited is not None
            left = left_of(tag, ident)
            if left:
                problems.append(f"iteration {ident} ({kind}): process(es) left: {tagged(tag)}")
                for pid in left:
                    os.kill(pid, signal.SIGKILL)
        sweep_and_close(zygote, tag)
        run_folders_left = sorted(p.name for p in (base / "r").iterdir())
        processes_left = tagged(tag)
    finally:
        clean_up(zygote, tag, base)
    record_figures("start_kills", kills=sum(f["kills"] for f in figures.values()),
                   wall_s=round(time.monotonic() - started, 1), qemu_left=len(processes_left),
                   run_folders_left=len(run_folders_left), by_starter=figures)
    assert not problems, "\n".join(problems[:20])
    assert processes_left == {}, f"processes left: {processes_left}"
    assert run_folders_left == [], f"run folders left after the sweep: {run_folders_left}"
    assert sum(f["before_exec"] for f in figures.values()) > 0, "no strike landed before QEMU's exec"
