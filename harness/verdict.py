"""Verdict levels and the exit codes that carry them (one place for both).

* ``clean``: nothing found.
* ``warning``: only legal-but-lossy situations: what NT allows and the emulated hardware
  does imperfectly, e.g. two granted Shared claims on an edge-triggered ISA line, where
  QEMU (no wired-OR) loses the second device's edge.  Nothing is misconfigured.
* ``conflict``: a refused claim, a claim the hardware does not decode as claimed, a
  claim-before-touch violation, a hardware collision nobody agreed to, or an event that
  stopped the firmware (guest panic, QEMU exit, early reset).

``harness run`` (and ``report.json``'s ``exit_code``) exits with :data:`EXIT_CODES`;
:data:`EXIT_USAGE` is any usage, input or setup error (the CLI prints it on one line).
"""

from __future__ import annotations

from typing import Iterable

CLEAN = "clean"
WARNING = "warning"
CONFLICT = "conflict"
#: Verdicts, mildest first.
VERDICTS = (CLEAN, WARNING, CONFLICT)
EXIT_CODES = {CLEAN: 0, CONFLICT: 1, WARNING: 3}
EXIT_USAGE = 2


def worst(levels: Iterable[str]) -> str:
    """The most severe of ``levels`` (``clean`` when there are none)."""
    return max(levels, key=VERDICTS.index, default=CLEAN)


__all__ = ["CLEAN", "CONFLICT", "EXIT_CODES", "EXIT_USAGE", "VERDICTS", "WARNING", "worst"]
