"""Verdict levels and the exit codes that carry them (one place for both).

* ``clean``: nothing found.
* ``warning``: only legal-but-lossy situations: what NT allows and the emulated hardware
  does imperfectly, e.g. two granted Shared claims on an edge-triggered ISA line, where
  QEMU (no wired-OR) loses the second device's edge.  Nothing is misconfigured.
* ``conflict``: a refused claim, a claim the hardware does not decode as claimed, a
  claim-before-touch violation, a hardware collision nobody agreed to, an event that
  stopped the firmware (guest panic, QEMU exit, early reset), or an error-log entry of
  error severity.

The error log (nt-semantics.md §7) is what the user reads to learn why a device does not
work (seed 002: "a system administrator or user then can determine why a particular device
is not working by using the Win32 event viewer"), so each entry weighs what its code's
severity says (:data:`ERROR_LOG_VERDICTS`): an error (every *_CONFLICT entry, and a
driver's own IO_ERR_INCORRECT_IRQL, IO_ERR_TIMEOUT, IO_ERR_INVALID_IOBASE, ...: the device
is not working as configured) is a conflict; a warning (IO_WRN_BAD_FIRMWARE: it works,
worse) a warning; a success or informational entry (IO_ERR_RETRY_SUCCEEDED) is shown and
changes nothing.

``harness run`` (and ``report.json``'s ``exit_code``) exits with :data:`EXIT_CODES`;
:data:`EXIT_USAGE` is any usage, input or setup error (the CLI prints it on one line).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

CLEAN = "clean"
WARNING = "warning"
CONFLICT = "conflict"
#: Verdicts, mildest first.
VERDICTS = (CLEAN, WARNING, CONFLICT)
EXIT_CODES = {CLEAN: 0, CONFLICT: 1, WARNING: 3}
EXIT_USAGE = 2


#: The verdict an error-log entry carries, by its code's severity (harness.nt.status.severity).
ERROR_LOG_VERDICTS = {"error": CONFLICT, "warning": WARNING, "informational": CLEAN, "success": CLEAN}


def error_log_verdict(entry: Mapping[str, Any]) -> str:
    """The verdict one error-log entry (its ``to_dict()`` form, as reports keep it) carries."""
    return ERROR_LOG_VERDICTS[entry["severity"]]


def worst(levels: Iterable[str]) -> str:
    """The most severe of ``levels`` (``clean`` when there are none)."""
    return max(levels, key=VERDICTS.index, default=CLEAN)


__all__ = ["CLEAN", "CONFLICT", "ERROR_LOG_VERDICTS", "EXIT_CODES", "EXIT_USAGE", "VERDICTS", "WARNING",
           "error_log_verdict", "worst"]
