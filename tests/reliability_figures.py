"""Print the figures the reliability tests recorded (build/reliability/*.json).

usage: python tests/reliability_figures.py [PREFIX]   (e.g. ``fuzz`` for the fuzz runs)
"""

from __future__ import annotations

import json
import sys

from helpers import FIGURES


def main(prefix: str = "") -> None:
    total = 0
    for path in sorted(FIGURES.glob(f"{prefix}*.json")):
        figures = json.loads(path.read_text())
        total += figures.get("inputs", 0) if path.stem.startswith("fuzz-") else 0
        print(f"{path.stem}: {json.dumps(figures, sort_keys=True)}")
    if total:
        print(f"fuzz inputs in all: {total}")


if __name__ == "__main__":
    main(*sys.argv[1:])
