"""Compiled interval index over the unsigned 64-bit address space (harness/_intervals.c).

Closed ranges ``[start, end]`` with ``0 <= start <= end <= 2**64-1``; each has an owner id
(signed 64-bit) and a share flag and is addressed by the integer handle ``insert`` returns.
Out-of-range integers raise OverflowError, ``start > end`` raises ValueError, non-integers
raise TypeError.  Address order means by start, then by handle.
"""
from collections.abc import Iterable, Iterator
from typing import Final, NamedTuple, SupportsIndex

from typing_extensions import Buffer, Self

ADDRESS_MAX: Final[int]
"""2**64 - 1, the last address."""
LEAF_CAPACITY: Final[int]
"""Ranges per B+-tree leaf (a build constant, exported for tests)."""
FANOUT: Final[int]
"""Children per B+-tree inner node."""

_U64Array = Buffer | Iterable[int]

class Range(NamedTuple):
    """A stored range (a struct sequence at run time)."""

    start: int
    end: int
    owner: int
    shared: bool
    handle: int

class IntervalIndex:
    """Closed ranges over 0..2**64-1 with owner ids and share flags, addressed by handles.

    Iterating yields Range tuples in address order; ``len()`` is the number of stored
    ranges; ``handle in index`` tests for a live handle; instances pickle (handles, owners
    and the free list survive).  Modifying the index invalidates running iterators
    (RuntimeError on their next step).
    """

    def __init__(self) -> None: ...
    @classmethod
    def from_arrays(
        cls,
        starts: _U64Array,
        ends: _U64Array,
        owners: Buffer | Iterable[int] | None = None,
        shared: Buffer | Iterable[bool] | None = None,
    ) -> Self:
        """Build in one pass (sort + bulk load); range i gets handle i.

        starts/ends: uint64 (or non-negative int64) buffers such as numpy arrays or
        array('Q'); owners: int64 buffer; shared: bool/uint8 buffer.  Other iterables are
        converted through array.array.
        """
    def insert(self, start: SupportsIndex, end: SupportsIndex, owner: SupportsIndex = 0, shared: bool = False) -> int:
        """Store [start, end] for owner and return its handle (duplicates and nesting are
        allowed; a removed handle may be handed out again)."""
    def remove(self, handle: SupportsIndex, /) -> None:
        """Remove the range stored under handle; KeyError if there is none."""
    def get(self, handle: SupportsIndex, /) -> Range:
        """The stored range for handle; KeyError if there is none."""
    def first_overlap(self, start: SupportsIndex, end: SupportsIndex, /) -> int | None:
        """Handle of the overlapping range with the lowest start (ties: lowest handle), or None."""
    def overlaps(self, start: SupportsIndex, end: SupportsIndex, /) -> list[int]:
        """Handles of all ranges overlapping [start, end], in address order."""
    def stab(self, point: SupportsIndex, /) -> list[int]:
        """Handles of all ranges containing point, in address order."""
    def count(self, start: SupportsIndex, end: SupportsIndex, /) -> int:
        """Number of ranges overlapping [start, end]."""
    def conflict(
        self,
        start: SupportsIndex,
        end: SupportsIndex,
        shared: bool = False,
        exclude_owner: SupportsIndex | None = None,
    ) -> int | None:
        """Handle of the lowest range conflicting with a request for [start, end], or None.

        Two ranges conflict when they overlap and not both are shared; ranges owned by
        exclude_owner are ignored.
        """
    def find_gap(
        self,
        length: SupportsIndex,
        lo: SupportsIndex = 0,
        hi: SupportsIndex = ...,
        *,
        align: SupportsIndex = 1,
        highest: bool = False,
        ignore_shared: bool = False,
    ) -> int | None:
        """Lowest (highest=True: highest) s with s % align == 0 such that
        [s, s + length - 1] lies inside [lo, hi] and overlaps no stored range (with
        ignore_shared=True, no exclusive range), or None.  hi defaults to 2**64-1.

        length and align must be >= 1 (ValueError otherwise); align may be any positive
        integer, not only a power of two.
        """
    def first_overlap_batch(self, starts: _U64Array, ends: _U64Array | None = None, out: Buffer | None = None) -> Buffer:
        """first_overlap() per query [starts[i], ends[i]] (points if ends is None): handle or -1.

        Returns a new array('q'), or fills and returns out (a writable int64 buffer of the
        same length, e.g. a numpy array).
        """
    def count_batch(self, starts: _U64Array, ends: _U64Array | None = None, out: Buffer | None = None) -> Buffer:
        """count() per query; arguments and result as in first_overlap_batch()."""
    def clear(self) -> None:
        """Remove every range; handles start again from 0."""
    def __len__(self) -> int: ...
    def __contains__(self, handle: object) -> bool: ...
    def __iter__(self) -> Iterator[Range]: ...
    def __reduce__(self) -> tuple[object, tuple[bytes]]: ...
    @classmethod
    def _from_state(cls, state: Buffer, /) -> Self:
        """Rebuild from __reduce__ state (ValueError if it is corrupt)."""
    def _check(self) -> None:
        """Verify internal invariants; AssertionError if broken (for tests)."""

def _set_simd(level: int, /) -> int:
    """Node scans to use: 0 portable C, 1 AVX2, 2 AVX-512, capped at what the CPU has (the
    import picks the best).  Returns the previous level.  For tests: all give the same
    answers."""
