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

    def start(self, ident: int, args: list[str], env: dict[str, str]) -> None:
        with self._lock:
            assert self.proc.stdin is not None
            request = {"id": ident, "args": args, "env": env, "log": str(self.log(ident))}
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
    deadline = time.monotonic() + GONE_TIMEOUT
    while (left := [p for p, (i, _) in tagged(tag).items() if i == str(ident)]) and time.monotonic() < deadline:
        time.sleep(0.01)
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
        seen: list[dict[str, Any]] = []
        zygote.start(-1, [f"{SUBJECT}::test_nothing", "-q", "-p", "no:cacheprovider"], {TAG_ENV: f"{tag}:-1"})
        final = zygote.wait_for(-1, "exit", seen)
        assert final is not None and final["returncode"] == 0, seen
        zygote.close()
        wall = time.monotonic() - started
        processes_left = tagged(tag)
        files_left = sorted(str(p.relative_to(base)) for p in base.rglob("*")
                            if p not in (base / "t", base / "r") and p.parent != base / "logs"
                            and p != base / "logs")
    finally:
        if zygote.proc.poll() is None:
            zygote.proc.kill()
        for pid in tagged(tag):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)

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
