"""Durability: SIGKILL during a stream of claims loses no completed claim, tears no pair.

A child process (tests/claims.py) writes claims into an SQLite registry file and reports
each one on a pipe once committed; the test kills it with SIGKILL at random points,
reopens the file (as the next run would) and checks: every reported claim is there with
exactly its bytes, every claim present has both its .Raw and .Translated value, nothing
is present that the child had not at least begun, and SQLite's integrity check passes.
``DURABILITY_KILLS`` kills (a few dozen in ``make test``, more under ``make soak``).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from claims import Claim
from harness.nt.registry import RESOURCE_MAP, Registry
from helpers import REPO, record_figures

DURABILITY_KILLS = int(os.environ.get("DURABILITY_KILLS", "40"))
CLAIMS_SCRIPT = REPO / "tests" / "claims.py"


def _run_and_kill(path: Path, first: int, rng: random.Random) -> tuple[set[int], set[int]]:
    """Start a writer at claim ``first``, SIGKILL it after a random number of claims and
    a random sub-claim delay; return (claims begun, claims reported committed)."""
    child = subprocess.Popen([sys.executable, str(CLAIMS_SCRIPT), str(path), str(first)],
                             stdout=subprocess.PIPE, text=True)
    begun, done = set(), set()
    target = rng.randint(0, 25)
    try:
        assert child.stdout is not None
        while len(done) < target:
            line = child.stdout.readline()  # the writer's own 60 s limit bounds this
            if not line:
                break
            kind, index = line.split()
            (begun if kind == "b" else done).add(int(index))
        time.sleep(rng.uniform(0, 0.004))  # lands anywhere in the next claim's transaction
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        rest = child.stdout.read()  # (not communicate(): it would skip what readline buffered)
    assert child.returncode == -signal.SIGKILL, f"the writer ended by itself ({child.returncode})"
    for line in rest.splitlines():  # reported before the kill: they count
        kind, index = line.split()
        (begun if kind == "b" else done).add(int(index))
    return begun, done


def _stored_claims(path: Path) -> dict[int, set[str]]:
    """Claim index → the value suffixes (Raw/Translated) present, after checking each
    present value has exactly its claim's bytes."""
    found: dict[int, set[str]] = {}
    with Registry(path, create=False) as reg:
        if not reg.key_exists(RESOURCE_MAP):
            return found
        for key, values in reg.walk(RESOURCE_MAP):
            for value in values:
                device, _, half = value.name.rpartition(".")
                claim = Claim(int(device.removeprefix(r"\Device\Chaos")))
                assert key == reg.canonical_path(claim.key), f"{value.name} under {key}"
                raw, translated = claim.lists()
                assert value.value == (raw if half == "Raw" else translated), value.name
                found.setdefault(claim.index, set()).add(half)
    return found


def test_sigkill_during_claims_loses_nothing_completed_and_tears_no_pair(tmp_path: Path) -> None:
    path = tmp_path / "machine.sqlite"
    rng = random.Random(os.environ.get("DURABILITY_SEED", "1"))
    reported: set[int] = set()
    began: set[int] = set()
    in_flight = found_whole = found_absent = 0
    next_index = 0
    for _ in range(DURABILITY_KILLS):
        begun, done = _run_and_kill(path, next_index, rng)
        reported |= done
        began |= begun
        stored = _stored_claims(path)
        torn = {i: halves for i, halves in stored.items() if halves != {"Raw", "Translated"}}
        assert not torn, f"half-written claims: {torn}"
        assert reported <= set(stored), f"lost completed claims: {sorted(reported - set(stored))}"
        assert set(stored) <= began, "a claim appeared that no writer began"
        for index in begun - done:  # the kill landed inside this claim: all of it or none
            in_flight += 1
            if index in stored:
                found_whole += 1  # its commit had reached the file (the kill hit the fsync)
            else:
                found_absent += 1
        next_index = max([next_index - 1, *began]) + 1
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert in_flight > DURABILITY_KILLS // 2, "the kills should mostly land mid-claim"
    record_figures("durability", kills=DURABILITY_KILLS, claims_verified=len(reported),
                   kills_inside_a_claim=in_flight, of_those_whole_after_restart=found_whole,
                   of_those_absent_after_restart=found_absent, torn_pairs=0, lost_claims=0)
