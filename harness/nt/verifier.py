"""Claim-before-touch: every port a driver touches must be claimed by that driver first.

Seed 003: "Never attempt to initialize a physical device without claiming the necessary
bus-relative I/O ports ... in the registry first", and seed 001: after an overridden
conflict "the caller cannot use any resource for which a conflict was detected".  So an
access by driver ``D`` to ``[port, port + size)`` is

* ``unclaimed`` when some byte of it is in none of ``D``'s port claims;
* ``owned-by-other`` when another driver claimed a byte of it *earlier*, with a claim
  ``D``'s may not share (the arbiter's share rule): ``D`` overrode a conflict and may not
  use what it got that way.  The earlier holder keeps its right to the resource.

:class:`ClaimVerifier` is a HAL port hook (it sees READ_PORT_* / WRITE_PORT_* before they
happen, attributed to the driver the I/O manager is running) and records each violation
with the driver, port, size, access kind and the driver's call site; in strict mode it
also refuses the access.  :meth:`ClaimVerifier.check_trace` checks a whole recorded trace
in one batch with the interval index.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from .._intervals import IntervalIndex
from ..errors import HarnessError
from .arbiter import Arbiter, Claim, ResourceKind, compatible

_NT_DIR = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class Violation:
    """A rule a driver broke: ``unclaimed`` / ``owned-by-other`` port access, or a life
    cycle rule (``claims-left``, ``devices-left``, ``reinitialize-on-failure``)."""

    kind: str
    driver: str
    detail: str = ""
    port: int | None = None
    size: int | None = None
    access: str | None = None      # "read" / "write"
    other: str | None = None       # the other driver, for owned-by-other
    site: str | None = None        # file:line (function) in the driver
    space: str = "io"

    def __str__(self) -> str:
        if self.port is None:
            return f"{self.driver}: {self.kind}: {self.detail}"
        where = f" at {self.site}" if self.site else ""
        noun = "port" if self.space == "io" else "memory"
        return (f"{self.driver}: {self.kind}: {self.access} of {self.size} byte(s) at {noun} "
                f"{self.port:#x}{where}" + (f" ({self.detail})" if self.detail else ""))

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class ClaimViolationError(HarnessError):
    """Raised by a strict verifier instead of letting the access through."""

    def __init__(self, violation: Violation) -> None:
        self.violation = violation
        super().__init__(str(violation))


@dataclass(frozen=True)
class TraceEntry:
    """One register access a driver made, as the claim verifier records it."""

    driver: str
    access: str
    port: int              # port, or physical address for a memory register
    size: int
    site: str | None = None
    space: str = "io"

    @property
    def kind(self) -> ResourceKind:
        return ResourceKind.PORT if self.space == "io" else ResourceKind.MEMORY


def call_site() -> str | None:
    """The first frame outside the NT model: the driver's line that made the access."""
    frame = sys._getframe(1)
    cwd = os.getcwd()  # (relative file names and the printed path depend on it)
    while frame is not None:
        code = frame.f_code
        if not _in_nt_model(code.co_filename, cwd):
            return f"{_relative(code.co_filename, cwd)}:{frame.f_lineno} ({code.co_name})"
        frame = frame.f_back
    return None


# Every port access a driver makes asks for its call site: path arithmetic once per file.
@functools.lru_cache(maxsize=1024)
def _in_nt_model(filename: str, cwd: str) -> bool:
    return os.path.abspath(os.path.join(cwd, filename)).startswith(_NT_DIR)


@functools.lru_cache(maxsize=1024)
def _relative(filename: str, cwd: str) -> str:
    return os.path.relpath(filename, cwd)


class ClaimVerifier:
    """Checks driver port accesses against the arbiter's claims.

    ``current_driver`` names the driver whose code is running (None: not a driver, e.g.
    hardware detection, which is not checked); violations go to ``sink``; ``trace`` keeps
    every checked access for :meth:`check_trace`.
    """

    def __init__(self, arbiter: Arbiter, current_driver: Callable[[], str | None], *,
                 strict: bool = False, sink: Callable[[Violation], None] | None = None) -> None:
        self.arbiter = arbiter
        self.current_driver = current_driver
        self.strict = strict
        self.sink = sink
        self.trace: list[TraceEntry] = []

    def __call__(self, access: Any) -> None:
        """The HAL port hook (:class:`harness.nt.hal.PortAccess`)."""
        if access.phase != "before":
            return
        driver = self.current_driver()
        if driver is None:
            return
        entry = TraceEntry(driver, access.kind, access.port, access.size, call_site(), access.space)
        self.trace.append(entry)
        violation = self.check(entry)
        if violation is None:
            return
        if self.sink is not None:
            self.sink(violation)
        if self.strict:
            raise ClaimViolationError(violation)

    def check(self, entry: TraceEntry) -> Violation | None:
        """The verdict on one access against the claims as they are now."""
        end = entry.port + entry.size - 1
        held = self.arbiter.holders(entry.kind, entry.port, end)
        own = [c for c in held if c.owner.driver == entry.driver]
        covered = _covered(own, entry.port, end)
        if covered < end - entry.port + 1:
            return self._violation("unclaimed", entry, f"{covered} of {entry.size} byte(s) claimed")
        for other in held:
            mine = [c for c in own if _touch(c, other)]
            if other.owner.driver != entry.driver and any(
                    not compatible(c, other) and self.arbiter.claimed_before(other.owner, c.owner)
                    for c in mine):
                return self._violation("owned-by-other", entry, f"held by {other.owner}: {other.describe()}",
                                       other=other.owner.driver)
        return None

    @staticmethod
    def _violation(kind: str, entry: TraceEntry, detail: str, other: str | None = None) -> Violation:
        return Violation(kind, entry.driver, detail, entry.port, entry.size, entry.access, other, entry.site,
                         entry.space)

    def check_trace(self, trace: Sequence[TraceEntry] | None = None) -> list[Violation]:
        """Check a whole trace in one batch against the current claims: per driver and space, one
        merged index of its own ranges and one of everyone else's exclusive ranges, and a
        batched query each.  Gives what :meth:`check` would for each entry, in order."""
        trace = self.trace if trace is None else trace
        all_claims = [c for c in self.arbiter.claims() if not c.empty]
        out: list[tuple[int, Violation]] = []
        groups: dict[tuple[str, ResourceKind], list[int]] = {}
        for i, entry in enumerate(trace):
            groups.setdefault((entry.driver, entry.kind), []).append(i)
        for (driver, kind), positions in groups.items():
            claims = [c for c in all_claims if c.kind is kind]
            own = _merged([(c.start, c.end) for c in claims if c.owner.driver == driver])
            own_index = IntervalIndex.from_arrays([s for s, _ in own], [e for _, e in own])
            starts = [trace[i].port for i in positions]
            ends = [trace[i].port + trace[i].size - 1 for i in positions]
            first = own_index.first_overlap_batch(starts, ends)
            others = [c for c in claims if c.owner.driver != driver]
            other_index = IntervalIndex()
            for c in others:
                other_index.insert(c.start, c.end)
            clash = other_index.count_batch(starts, ends)
            for k, i in enumerate(positions):
                entry = trace[i]
                h = first[k]
                inside = h >= 0 and own[h][0] <= starts[k] and ends[k] <= own[h][1]
                if not inside or clash[k]:
                    verdict = self.check(entry)  # the exact reason (and share rule) for the few hits
                    if verdict is not None:
                        out.append((i, verdict))
        return [v for _, v in sorted(out, key=lambda item: item[0])]


def _touch(a: Claim, b: Claim) -> bool:
    return a.start <= b.end and b.start <= a.end


def _covered(claims: Iterable[Claim], start: int, end: int) -> int:
    """How many bytes of [start, end] the claims cover."""
    spans = _merged([(max(c.start, start), min(c.end, end)) for c in claims if not c.empty
                     and c.start <= end and start <= c.end])
    return sum(e - s + 1 for s, e in spans)


def _merged(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out
