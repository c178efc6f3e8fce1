"""Fuzzing every reader of outside input (the table is tests/fuzz_targets.py).

``FUZZ_EXAMPLES`` inputs per target: a few hundred in ``make test``, enough for 10**5 in
all under ``make fuzz``.  Each input must be accepted (and then survive the target's
round trips and checks) or refused with a documented exception; nothing else.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings

from fuzz_targets import TARGETS, check_one
from helpers import record_figures

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_target(name: str) -> None:
    target = TARGETS[name]
    counts: Counter[str] = Counter()

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(value=target.inputs)
    def fuzz(value: object) -> None:
        counts["inputs"] += 1
        counts["accepted" if check_one(target, value) else "refused"] += 1

    start = time.monotonic()
    fuzz()
    assert counts["inputs"] >= FUZZ_EXAMPLES
    record_figures(f"fuzz-{name}", inputs=counts["inputs"], accepted=counts["accepted"],
                   refused_as_documented=counts["refused"], failures=0,
                   seconds=round(time.monotonic() - start, 1))


INTERVAL_FUZZ_OPS = int(os.environ.get("INTERVAL_FUZZ_OPS", "300000"))


def test_interval_index_under_address_sanitizer() -> None:
    """The C interval index core under ASan+UBSan (the fuzz-intervals make target, so the
    flags live in one place) against its brute-force model, with a fresh seed each run."""
    import random
    import re
    import subprocess

    from helpers import REPO
    seed = random.randrange(2**32)
    run = subprocess.run(["make", "-s", "fuzz-intervals", f"FUZZ_OPS={INTERVAL_FUZZ_OPS}",
                          f"FUZZ_SEED={seed}"], cwd=REPO, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, (f"make fuzz-intervals FUZZ_SEED={seed} failed:\n"
                                 f"{run.stdout[-2000:]}{run.stderr[-4000:]}")
    survived = re.search(r"survived (\d+) operations .*?(\d+) injected failures", run.stdout)
    assert survived and int(survived.group(1)) == INTERVAL_FUZZ_OPS, run.stdout
    record_figures("fuzz-intervals-asan", operations=int(survived.group(1)), seed=seed,
                   injected_allocation_failures=int(survived.group(2)), sanitizers="address,undefined")
