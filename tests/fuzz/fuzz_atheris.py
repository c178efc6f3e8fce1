"""Coverage-guided fuzzing of one entry of tests/fuzz_targets.py with atheris (libFuzzer).

usage: python tests/fuzz/fuzz_atheris.py TARGET [libFuzzer flags, e.g. -runs=20000]

libFuzzer's bytes drive the target's hypothesis strategy (``fuzz_one_input``), so the
coverage feedback steers the same structured inputs ``make test`` draws at random; the
harness package is instrumented.  A finding is any exception check_one lets through.
``make fuzz-atheris`` installs atheris (the [fuzz] extra) and runs every target.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports(include=["harness"]):
    from fuzz_targets import TARGETS, check_one

from hypothesis import HealthCheck, given, settings  # noqa: E402


def main() -> None:
    target = TARGETS[sys.argv[1]]

    @settings(database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(value=target.inputs)
    def one(value: object) -> None:
        check_one(target, value)

    atheris.Setup([sys.argv[0], *sys.argv[2:]], one.hypothesis.fuzz_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
