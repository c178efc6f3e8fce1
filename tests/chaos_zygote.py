"""Fork server for the chaos test: one process that has imported pytest and the harness
forks each pytest worker the test then strikes, so an iteration costs a fork, not a
Python start-up (about 1 s of CPU on this machine, 200 times over).

Protocol (JSON lines): requests on stdin ``{"id", "args", "env", "log"}`` (with
``"cli": true`` the worker runs ``harness ARGS`` instead of ``pytest ARGS``) (the worker's
output goes to the file ``log``); on stdout the
zygote answers ``{"id", "event": "forked", "pid"}`` and ``{"id", "event": "exit",
"returncode"}`` (negative: killed by that signal), and the workers themselves add their
own events (tests/chaos_subject.py) on a duplicate of the same pipe.  EOF on stdin ends
the zygote once its workers have ended (SIGKILLed after ``DRAIN_S``).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import selectors
import signal
import sys
import time

# Imported before forking: that is the point.  (hypothesis's plugin imports hypothesis
# itself only to print its summary: a second per worker that fails.)
import hypothesis  # noqa: F401
import pytest  # noqa: F401

import harness.qemu.machine  # noqa: F401
from harness.qemu.lifeline import die_with_parent

for entry in importlib.metadata.entry_points(group="pytest11"):
    entry.load()  # the plugins pytest would import in every worker

DRAIN_S = 30.0


def emit(event: dict[str, object]) -> None:
    os.write(1, (json.dumps(event) + "\n").encode())  # one write: atomic on a pipe


def run_worker(request: dict[str, object], zygote: int) -> int:
    die_with_parent(zygote)
    os.environ.update(request["env"])  # type: ignore[arg-type]
    os.environ["CHAOS_REPORT_FD"] = str(os.dup(1))  # the pipe; pytest's output goes to the log
    log = os.open(str(request["log"]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.environ["CHAOS_ID"] = str(request["id"])
    if request.get("cli"):  # a harness command (run, verify, matrix) instead of pytest
        from harness.cli import main as harness_main
        return int(harness_main(list(request["args"])))  # type: ignore[arg-type]
    return int(pytest.main(list(request["args"])))  # type: ignore[arg-type]


def main() -> None:
    workers: dict[int, object] = {}
    selector = selectors.DefaultSelector()
    selector.register(sys.stdin, selectors.EVENT_READ)
    open_stdin, drain_deadline = True, None
    while open_stdin or workers:
        if open_stdin and selector.select(timeout=0.02):
            line = sys.stdin.readline()
            if not line:
                open_stdin, drain_deadline = False, time.monotonic() + DRAIN_S
                selector.unregister(sys.stdin)
            else:
                request = json.loads(line)
                zygote = os.getpid()
                pid = os.fork()
                if pid == 0:
                    code = 70
                    try:
                        code = run_worker(request, zygote)
                    finally:
                        os._exit(code)
                workers[pid] = request["id"]
                emit({"id": request["id"], "event": "forked", "pid": pid})
        elif not open_stdin:
            time.sleep(0.02)
            if drain_deadline is not None and time.monotonic() > drain_deadline:
                for pid in workers:
                    os.kill(pid, signal.SIGKILL)
        while workers:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            emit({"id": workers.pop(pid), "event": "exit",
                  "returncode": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    main()
