"""The matrix runner's worker processes: forked from a runner without other threads,
spawned (``python -c``) from one with threads; either way a worker that dies or overruns
is replaced, its QEMU is killed, and no output of the runner is written twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from harness import matrix
from helpers import REPO

TEXT = """\
name: workers
axes:
  machine:
    pc: {machine: pc}
  devices:
    serial: {devices: [{model: isa-serial, id: com1}]}
    sci: {devices: [{model: ne2k_isa, id: ne0}]}
expect:
  - {when: {devices: sci}, outcome: conflict, why: the NE2000's default IRQ 9 is the ACPI SCI}
"""

#: Runs in a fresh interpreter (no thread but the main one, as in ``harness matrix``),
#: prints one JSON line per scenario.
SCRIPT = textwrap.dedent('''
    import gc, json, os, signal, sys, tempfile, threading, time
    from pathlib import Path
    import harness.job
    import harness.matrix as hm
    from harness.qemu.reaper import tagged_processes

    made = []
    original = hm._Worker.__init__
    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append((self.forked, self.proc.pid))
    hm._Worker.__init__ = init

    def die(cell, outcome, out_dir):       # on_failure, in the worker: SIGTERM ends it
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
        os._exit(3)

    def interrupted(signum, frame):       # as the CLI's SIGTERM handler: for the runner only
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupted)

    cells = hm.parse_matrix_text(sys.argv[1]).cells
    out = tempfile.mkdtemp(prefix="workers-")

    def run(name, **kwargs):
        made.clear()
        results = hm.run_cells(cells, 2, out, progress=None, **kwargs)
        pids = {pid for _, pid in made}
        print(json.dumps({"scenario": name, "forked": [f for f, _ in made], "frozen": gc.get_freeze_count(),
                          "results": [[r.cell_id, r.outcome, r.message] for r in results],
                          "workers_alive": [p for p in pids if os.path.exists(f"/proc/{p}")],
                          "qemus_left": [p.pid for p in tagged_processes() if p.owner_pid in pids]}),
              flush=True)

    sys.stdout.write("said once before the workers fork\\n")   # left in the buffer on purpose
    run("plain")
    # the sci cell fails (it expects clean) and its worker dies of SIGTERM in the hook
    expected = cells
    cells = [hm.Cell(c.id, c.axes, c.spec, "clean", c.why, c.known_issue) for c in expected]
    run("died", on_failure=die)
    cells = expected
    # a worker hangs with its cell's QEMU running: killed after the timeout, with its QEMU
    real = harness.job.run_job
    harness.job.run_job = lambda *args, **kwargs: time.sleep(120)
    run("overran", timeout=1.0)
    harness.job.run_job = real
    # a runner that closes its end without a word: the worker sees the end and exits
    worker = hm._Worker(Path(out), None, False, "failures")
    worker.close()
    print(json.dumps({"scenario": "closed", "forked": [worker.forked], "frozen": gc.get_freeze_count(),
                      "results": [], "exit": worker.proc.wait(20), "workers_alive": [], "qemus_left": []}),
          flush=True)
    # another thread in the runner: fresh interpreters instead
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, args=(60,))
    thread.start()
    try:
        run("threaded")
    finally:
        stop.set()
''')


@pytest.mark.qemu
def test_workers_forked_spawned_replaced_and_cleaned_up() -> None:
    # buffered output, as a runner's stdout to a pipe or file has (unless PYTHONUNBUFFERED)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, TEXT], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("said once before the workers fork") == 1, proc.stdout
    runs = {r["scenario"]: r for r in map(json.loads, proc.stdout.splitlines()[1:])}
    assert set(runs) == {"plain", "died", "overran", "closed", "threaded"}, proc.stdout
    for name, run in runs.items():
        assert run["workers_alive"] == [] and run["qemus_left"] == [], run
        assert run["frozen"] == 0, run   # the runner's collector as it was (workers get theirs frozen)
        assert run["forked"] and run["forked"] == [name != "threaded"] * len(run["forked"]), run

    assert [r[:2] for r in runs["plain"]["results"]] == [["pc-serial", "pass"], ["pc-sci", "pass"]]
    assert [r[:2] for r in runs["threaded"]["results"]] == [["pc-serial", "pass"], ["pc-sci", "pass"]]
    # the dead worker's cell is an error naming its exit status (SIGTERM's default
    # action, not the runner's handler); the other cell passed
    died = dict((r[0], r[1:]) for r in runs["died"]["results"])
    assert died["pc-serial"][0] == "pass", died
    assert died["pc-sci"] == ["error", "the worker process died (exit status -15)"], died
    # both cells overran: each worker was killed and replaced
    for cell_id, outcome, message in runs["overran"]["results"]:
        assert (outcome, message) == ("error", "no result within 1 s: the worker was killed"), cell_id
    assert len(runs["overran"]["forked"]) == 4, runs["overran"]
    assert runs["closed"]["exit"] == 0, runs["closed"]


def test_only_a_runner_without_other_threads_forks() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, args=(10,))
    thread.start()
    try:
        assert not matrix._can_fork()
    finally:
        stop.set()
        thread.join()
