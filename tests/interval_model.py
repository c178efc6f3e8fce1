"""Brute-force reference model of harness._intervals.IntervalIndex (tests only).

Every query is a linear scan over a dict, written for obviousness rather than speed, so
the compiled index can be checked against it operation by operation.
"""
from __future__ import annotations

from dataclasses import dataclass, field

ADDRESS_MAX = 2**64 - 1


@dataclass(frozen=True)
class Rec:
    start: int
    end: int
    owner: int
    shared: bool
    handle: int


@dataclass
class Model:
    recs: dict[int, Rec] = field(default_factory=dict)

    def insert(self, handle: int, start: int, end: int, owner: int = 0, shared: bool = False) -> None:
        assert handle not in self.recs, f"handle {handle} handed out twice"
        self.recs[handle] = Rec(start, end, owner, shared, handle)

    def remove(self, handle: int) -> None:
        del self.recs[handle]

    def ordered(self) -> list[Rec]:
        return sorted(self.recs.values(), key=lambda r: (r.start, r.handle))

    def overlaps(self, a: int, b: int) -> list[int]:
        return [r.handle for r in self.ordered() if r.start <= b and r.end >= a]

    def first_overlap(self, a: int, b: int) -> int | None:
        hits = self.overlaps(a, b)
        return hits[0] if hits else None

    def count(self, a: int, b: int) -> int:
        return len(self.overlaps(a, b))

    def conflict(self, a: int, b: int, shared: bool = False, exclude_owner: int | None = None) -> int | None:
        for r in self.ordered():
            if r.start <= b and r.end >= a and not (shared and r.shared) and r.owner != exclude_owner:
                return r.handle
        return None

    def free_runs(self, ignore_shared: bool) -> list[tuple[int, int]]:
        """Maximal runs of addresses covered by no (blocking) range, in address order."""
        runs, nxt = [], 0
        for r in self.ordered():
            if ignore_shared and r.shared:
                continue
            if r.start > nxt:
                runs.append((nxt, r.start - 1))
            nxt = max(nxt, r.end + 1)
        if nxt <= ADDRESS_MAX:
            runs.append((nxt, ADDRESS_MAX))
        return runs

    def find_gap(self, length: int, lo: int = 0, hi: int = ADDRESS_MAX, align: int = 1,
                 highest: bool = False, ignore_shared: bool = False) -> int | None:
        found = []
        for a, b in self.free_runs(ignore_shared):
            a, b = max(a, lo), min(b, hi)
            if a > b:
                continue
            if highest:
                s = (b - length + 1) // align * align
                if b - length + 1 >= a and s >= a:
                    found.append(s)
            else:
                s = -(-a // align) * align
                if s + length - 1 <= b:
                    found.append(s)
        if not found:
            return None
        return max(found) if highest else min(found)
