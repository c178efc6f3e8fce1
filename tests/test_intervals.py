"""Property and edge-case tests of the compiled interval index against a brute-force model.

Speed is measured by benchmarks/bench_intervals.py, never here.
"""
from __future__ import annotations

import array
import pickle
import random

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from harness._intervals import ADDRESS_MAX, IntervalIndex, Range, _set_simd

from interval_model import Model

M = 2**64 - 1
SIMD_LEVELS = (0, 1, 2)  # portable, AVX2, AVX-512; _set_simd caps at what the CPU has

# Coordinates cluster at the bottom, around 2**32 and at the top of the 64-bit space so
# overlaps, adjacency and the edges all come up often; a few are anywhere.
coord = st.one_of(
    st.integers(0, 48),
    st.integers(2**32 - 8, 2**32 + 8),
    st.integers(M - 48, M),
    st.integers(0, M),
)


@st.composite
def ranges(draw):
    a, b = draw(coord), draw(coord)
    return (a, b) if a <= b else (b, a)


owners = st.integers(-3, 3) | st.sampled_from([-(2**63), 2**63 - 1])


def check_all_queries(idx: IntervalIndex, model: Model, qa: int, qb: int) -> None:
    # on the portable node scans, the AVX2 and the AVX-512 ones (those the CPU has)
    for simd in SIMD_LEVELS:
        prev = _set_simd(simd)
        try:
            assert idx.first_overlap(qa, qb) == model.first_overlap(qa, qb)
            assert idx.overlaps(qa, qb) == model.overlaps(qa, qb)
            assert idx.count(qa, qb) == model.count(qa, qb)
            assert idx.stab(qa) == model.overlaps(qa, qa)
            for shared in (False, True):
                for excl in (None, 0, 1):
                    assert idx.conflict(qa, qb, shared, excl) == model.conflict(qa, qb, shared, excl)
        finally:
            _set_simd(prev)


class IndexMachine(RuleBasedStateMachine):
    """Random insert/remove/query sequences; every step is checked against the model."""

    @initialize()
    def setup(self):
        self.idx = IntervalIndex()
        self.model = Model()

    def _insert(self, r, owner, shared):
        h = self.idx.insert(r[0], r[1], owner, shared)
        self.model.insert(h, r[0], r[1], owner, shared)

    @rule(r=ranges(), owner=owners, shared=st.booleans())
    def insert(self, r, owner, shared):
        self._insert(r, owner, shared)

    @rule(rs=st.lists(ranges(), min_size=8, max_size=60), shared=st.booleans())
    def insert_many(self, rs, shared):
        # enough at once to split leaves and grow inner levels
        for i, r in enumerate(rs):
            self._insert(r, i % 3, shared and i % 2 == 0)

    @rule(r=ranges(), n=st.integers(2, 20))
    def insert_duplicates(self, r, n):
        for i in range(n):
            self._insert(r, i, i % 2 == 1)

    @precondition(lambda self: self.model.recs)
    @rule(data=st.data())
    def remove(self, data):
        h = data.draw(st.sampled_from(sorted(self.model.recs)))
        self.idx.remove(h)
        self.model.remove(h)
        assert h not in self.idx

    @precondition(lambda self: len(self.model.recs) > 10)
    @rule(data=st.data())
    def remove_many(self, data):
        # drains leaves so borrow and merge paths run
        hs = sorted(self.model.recs)
        k = data.draw(st.integers(1, len(hs)))
        for h in data.draw(st.permutations(hs))[:k]:
            self.idx.remove(h)
            self.model.remove(h)

    @rule(q=ranges())
    def query(self, q):
        check_all_queries(self.idx, self.model, *q)

    @rule(length=st.integers(1, 40) | st.integers(1, M), lo=coord, hi=coord,
          align=st.integers(1, 16) | st.sampled_from([4096, 2**32, 2**63, M]),
          highest=st.booleans(), ignore_shared=st.booleans())
    def gap(self, length, lo, hi, align, highest, ignore_shared):
        lo, hi = min(lo, hi), max(lo, hi)
        got = self.idx.find_gap(length, lo, hi, align=align, highest=highest, ignore_shared=ignore_shared)
        want = self.model.find_gap(length, lo, hi, align, highest, ignore_shared)
        assert got == want, (length, lo, hi, align, highest, ignore_shared)

    @precondition(lambda self: self.model.recs)
    @rule(data=st.data(), highest=st.booleans(), ignore_shared=st.booleans())
    def gap_exact_fit(self, data, highest, ignore_shared):
        runs = self.model.free_runs(ignore_shared)
        if not runs:  # everything covered
            assert self.idx.find_gap(1, ignore_shared=ignore_shared) is None
            return
        a, b = data.draw(st.sampled_from(runs))
        n = b - a + 1
        if n > M:
            return
        assert self.idx.find_gap(n, highest=highest, ignore_shared=ignore_shared) == \
            self.model.find_gap(n, highest=highest, ignore_shared=ignore_shared)

    @rule()
    def pickle_roundtrip(self):
        clone = pickle.loads(pickle.dumps(self.idx))
        clone._check()
        assert list(clone) == list(self.idx)
        # the free list survives, so both hand out the same next handle; removing it again
        # from the original puts its free list back at the head
        h = self.idx.insert(0, 0)
        assert clone.insert(0, 0) == h
        self.idx.remove(h)

    @invariant()
    def consistent(self):
        self.idx._check()
        assert len(self.idx) == len(self.model.recs)
        got = [(r.start, r.end, r.owner, r.shared, r.handle) for r in self.idx]
        want = [(r.start, r.end, r.owner, r.shared, r.handle) for r in self.model.ordered()]
        assert got == want


IndexMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestIndexMachine = IndexMachine.TestCase


@settings(max_examples=150, deadline=None)
@given(rs=st.lists(st.tuples(ranges(), st.booleans()), max_size=120), qs=st.lists(ranges(), min_size=1, max_size=8))
def test_from_arrays_and_batches_match_model(rs, qs):
    starts = array.array("Q", [r[0][0] for r in rs])
    ends = array.array("Q", [r[0][1] for r in rs])
    shared = bytes(int(r[1]) for r in rs)
    owners = array.array("q", range(len(rs)))
    idx = IntervalIndex.from_arrays(starts, ends, owners, shared)
    idx._check()
    model = Model()
    for h, ((s, e), sh) in enumerate(rs):
        model.insert(h, s, e, h, sh)
    assert [r.handle for r in idx] == [r.handle for r in model.ordered()]
    qa = array.array("Q", [q[0] for q in qs])
    qb = array.array("Q", [q[1] for q in qs])
    want_first = [model.first_overlap(a, b) for a, b in qs]
    for simd in SIMD_LEVELS:
        prev = _set_simd(simd)
        try:
            assert list(idx.first_overlap_batch(qa, qb)) == [-1 if w is None else w for w in want_first]
            assert list(idx.count_batch(qa, qb)) == [model.count(a, b) for a, b in qs]
            assert list(idx.count_batch(qa)) == [model.count(a, a) for a, _ in qs]
        finally:
            _set_simd(prev)
    for a, b in qs:
        check_all_queries(idx, model, a, b)


def test_long_random_sequence_against_model():
    """Thousands of seeded operations: deep trees, splits, borrows, merges, root collapse."""
    rng = random.Random(1234)
    idx, model = IntervalIndex(), Model()

    def rnd_range():
        kind = rng.random()
        if kind < 0.45:  # port-like
            s = rng.randrange(0, 0x10000)
            return s, min(s + rng.choice([0, 1, 3, 7, 15, 31]), M)
        if kind < 0.9:  # memory-like, some at the top of the space
            base = rng.choice([0, 2**32, M - 2**20])
            s = base + rng.randrange(0, 2**20)
            return s, min(s + rng.randrange(0, 2**16), M)
        s = rng.randrange(0, M)
        return s, rng.randrange(s, M + 1)

    for step in range(12000):
        if rng.random() < 0.6 or not model.recs:
            s, e = rnd_range()
            sh = rng.random() < 0.3
            h = idx.insert(s, e, owner=rng.randrange(4), shared=sh)
            model.insert(h, s, e, idx.get(h).owner, sh)
        else:
            h = rng.choice(list(model.recs))
            idx.remove(h)
            model.remove(h)
        if step % 151 == 0:
            idx._check()
            for _ in range(5):
                a, b = rnd_range()
                check_all_queries(idx, model, a, b)
                for highest in (False, True):
                    for ign in (False, True):
                        length = rng.choice([1, 2, 16, 4096, 2**20])
                        align = rng.choice([1, 3, 16, 4096])
                        assert idx.find_gap(length, a, b, align=align, highest=highest, ignore_shared=ign) == \
                            model.find_gap(length, a, b, align, highest, ign)
            # exact fits: ask for precisely the length of a free run, so an off-by-one in
            # any gap bound anywhere in the tree loses it
            for ign in (False, True):
                runs = [r for r in model.free_runs(ign) if r[1] < M]
                for a, b in rng.sample(runs, min(4, len(runs))):
                    for highest in (False, True):
                        want = model.find_gap(b - a + 1, highest=highest, ignore_shared=ign)
                        assert want is not None
                        assert idx.find_gap(b - a + 1, highest=highest, ignore_shared=ign) == want
                        assert idx.find_gap(b - a + 1, a, highest=highest, ignore_shared=ign) == \
                            model.find_gap(b - a + 1, a, M, 1, highest, ign)
        if step == 4000:  # drain almost everything, then grow again
            for h in list(model.recs)[: len(model.recs) - 3]:
                idx.remove(h)
                model.remove(h)
            idx._check()
    idx._check()
    assert [r.handle for r in idx] == [r.handle for r in model.ordered()]


# ---- edges and semantics -------------------------------------------------------------

def test_adjacent_ranges_do_not_overlap():
    idx = IntervalIndex()
    a = idx.insert(0, 9)
    b = idx.insert(10, 19)
    assert idx.first_overlap(9, 9) == a
    assert idx.first_overlap(10, 10) == b
    assert idx.overlaps(9, 10) == [a, b]
    assert idx.conflict(10, 19, exclude_owner=None) == b
    assert idx.count(0, 9) == 1


def test_nesting_and_duplicates():
    idx = IntervalIndex()
    window = idx.insert(0x1000, 0x1FFF, owner=1)
    bar1 = idx.insert(0x1000, 0x10FF, owner=2)
    bar2 = idx.insert(0x1100, 0x11FF, owner=3)
    dup = idx.insert(0x1000, 0x10FF, owner=4)
    assert idx.stab(0x1050) == [window, bar1, dup]
    assert idx.first_overlap(0x1150, 0x1150) == window
    assert idx.conflict(0x1150, 0x1150, exclude_owner=1) == bar2
    idx.remove(window)
    assert idx.first_overlap(0x1150, 0x1150) == bar2


def test_top_of_address_space():
    idx = IntervalIndex()
    h = idx.insert(M, M)
    g = idx.insert(M - 15, M - 8)
    assert idx.stab(M) == [h]
    assert idx.overlaps(0, M) == [g, h]
    assert idx.find_gap(8, M - 15, M) is None
    assert idx.find_gap(7, M - 7, M) == M - 7
    assert idx.find_gap(1, highest=True) == M - 1
    assert idx.find_gap(M) is None
    assert idx.find_gap(M - 16) == 0
    assert idx.find_gap(2**63, align=2**63) == 0
    assert idx.find_gap(1, M - 7, M, align=2**63) is None
    assert ADDRESS_MAX == M


def test_whole_space_range_and_empty_index_gaps():
    idx = IntervalIndex()
    assert idx.find_gap(16, align=4096) == 0
    assert idx.find_gap(16, align=4096, highest=True) == M - 4095
    assert idx.find_gap(M) == 0
    h = idx.insert(0, M, shared=True)
    assert idx.find_gap(1) is None
    assert idx.find_gap(1, ignore_shared=True) == 0
    assert idx.conflict(5, 5, shared=True) is None
    assert idx.conflict(5, 5) == h


def test_share_rule_and_exclude_owner():
    idx = IntervalIndex()
    s1 = idx.insert(0x3F8, 0x3FF, owner=7, shared=True)
    x1 = idx.insert(0x3F8, 0x3FF, owner=8)
    assert idx.conflict(0x3F8, 0x3F8, shared=True) == x1
    assert idx.conflict(0x3F8, 0x3F8) == s1
    assert idx.conflict(0x3F8, 0x3F8, shared=True, exclude_owner=8) is None
    assert idx.conflict(0x3F8, 0x3F8, exclude_owner=7) == x1
    assert idx.conflict(0x400, 0x4FF) is None


def test_gap_alignment_arbitrary_positive():
    idx = IntervalIndex()
    idx.insert(0, 99)
    assert idx.find_gap(10, align=7) == 105
    assert idx.find_gap(10, 0, 114, align=7) == 105
    assert idx.find_gap(10, 0, 113, align=7) is None
    assert idx.find_gap(10, 0, 200, align=7, highest=True) == 189


@pytest.mark.parametrize("args, exc", [
    ((5, 4), ValueError),
    ((-1, 4), OverflowError),
    ((0, 2**64), OverflowError),
    ((0.0, 4), TypeError),
    (("0", 4), TypeError),
])
def test_bad_ranges_rejected(args, exc):
    idx = IntervalIndex()
    with pytest.raises(exc):
        idx.insert(*args)
    with pytest.raises(exc):
        idx.first_overlap(*args)
    with pytest.raises(exc):
        idx.overlaps(*args)
    with pytest.raises(exc):
        idx.conflict(*args)
    assert len(idx) == 0


def test_error_messages_are_clear():
    idx = IntervalIndex()
    with pytest.raises(ValueError, match=r"start 0x5 > end 0x4"):
        idx.insert(5, 4)
    with pytest.raises(OverflowError, match=r"end must be in 0\.\.2\*\*64-1"):
        idx.insert(0, 2**64)
    with pytest.raises(OverflowError, match="owner"):
        idx.insert(0, 1, owner=2**63)
    with pytest.raises(ValueError, match="length"):
        idx.find_gap(0)
    with pytest.raises(ValueError, match="align"):
        idx.find_gap(1, align=0)
    with pytest.raises(ValueError, match="lo"):
        idx.find_gap(1, 10, 5)
    with pytest.raises(TypeError):
        idx.insert(0, 1, 2, True, 5)
    with pytest.raises(TypeError):
        idx.insert(0, 1, colour=2)
    with pytest.raises(TypeError):
        idx.insert(0, 1, 2, owner=3)


def test_handles_remove_get_contains():
    idx = IntervalIndex()
    h = idx.insert(1, 2, owner=-5, shared=True)
    assert idx.get(h) == Range((1, 2, -5, True, h))
    assert h in idx and -1 not in idx and 2**70 not in idx and "x" not in idx
    idx.remove(h)
    with pytest.raises(KeyError):
        idx.remove(h)
    with pytest.raises(KeyError):
        idx.get(h)
    with pytest.raises(KeyError):
        idx.remove(-1)
    with pytest.raises(KeyError):
        idx.remove(2**40)
    assert idx.insert(3, 4) == h  # freed handles are reused


def test_iteration_is_address_ordered_and_detects_mutation():
    idx = IntervalIndex.from_arrays([50, 10, 10, 30], [60, 20, 15, 30])
    assert [(r.start, r.handle) for r in idx] == [(10, 1), (10, 2), (30, 3), (50, 0)]
    it = iter(idx)
    next(it)
    idx.insert(0, 0)
    with pytest.raises(RuntimeError):
        next(it)


def test_pickle_preserves_handles_owners_and_free_list():
    idx = IntervalIndex()
    hs = [idx.insert(i * 10, i * 10 + 5, owner=-i, shared=i % 2 == 0) for i in range(100)]
    for h in hs[::3]:
        idx.remove(h)
    clone = pickle.loads(pickle.dumps(idx, protocol=pickle.HIGHEST_PROTOCOL))
    clone._check()
    assert list(clone) == list(idx)
    assert [clone.insert(0, 1) for _ in range(5)] == [idx.insert(0, 1) for _ in range(5)]
    assert pickle.loads(pickle.dumps(IntervalIndex())).overlaps(0, M) == []


def test_corrupt_state_rejected():
    idx = IntervalIndex()
    idx.insert(1, 2)
    func, (state,) = idx.__reduce__()
    for bad in (b"", state[:-1], b"XXXX" + state[4:], state[:16] + state[16:20] + (5).to_bytes(8, "little")
                + (1).to_bytes(8, "little") + state[36:]):
        with pytest.raises(ValueError):
            func(bad)


def test_batch_buffers_and_out():
    np = pytest.importorskip("numpy")
    idx = IntervalIndex.from_arrays(np.array([0, 100, 2**63], dtype=np.uint64),
                                    np.array([9, 199, M], dtype=np.uint64))
    q = np.array([5, 10, 150, M], dtype=np.uint64)
    assert list(idx.first_overlap_batch(q)) == [0, -1, 1, 2]
    out = np.empty(4, dtype=np.int64)
    assert idx.count_batch(q, q, out=out) is out
    assert out.tolist() == [1, 0, 1, 1]
    assert list(idx.first_overlap_batch(np.array([5, 10], dtype=np.int64))) == [0, -1]
    with pytest.raises(OverflowError):
        idx.first_overlap_batch(np.array([-1], dtype=np.int64))
    with pytest.raises(TypeError):
        idx.first_overlap_batch(np.array([1.0]))
    with pytest.raises(ValueError):
        idx.first_overlap_batch(q, q[:2])
    with pytest.raises(ValueError):
        idx.first_overlap_batch(np.array([5], dtype=np.uint64), np.array([4], dtype=np.uint64))
    with pytest.raises(TypeError):
        idx.count_batch(q, out=np.empty(4, dtype=np.uint64))
    assert list(idx.first_overlap_batch([], [])) == []


def test_from_arrays_validates():
    with pytest.raises(ValueError, match="range 1"):
        IntervalIndex.from_arrays([1, 5], [2, 4])
    with pytest.raises(ValueError):
        IntervalIndex.from_arrays([1, 5], [2])
    with pytest.raises(TypeError):
        IntervalIndex.from_arrays(None, [2])
    with pytest.raises(TypeError):
        IntervalIndex(5)


def test_repr_and_clear():
    idx = IntervalIndex()
    idx.insert(0x3F8, 0x3FF, owner=3, shared=True)
    assert "[0x3f8, 0x3ff] owner=3 shared #0" in repr(idx)
    for i in range(10):
        idx.insert(i, i)
    assert "more" in repr(idx)
    idx.clear()
    assert len(idx) == 0 and list(idx) == [] and idx.insert(1, 1) == 0


@settings(max_examples=200, deadline=None)
@given(rs=st.lists(ranges(), max_size=40), length=st.integers(1, 2**64 - 1), align=st.integers(1, 2**64 - 1),
       lo=coord, hi=coord, highest=st.booleans())
def test_gap_search_any_length_and_alignment(rs, length, align, lo, hi, highest):
    assume(lo <= hi)
    idx, model = IntervalIndex(), Model()
    for s, e in rs:
        model.insert(idx.insert(s, e), s, e)
    got = idx.find_gap(length, lo, hi, align=align, highest=highest)
    assert got == model.find_gap(length, lo, hi, align, highest)
    if got is not None:
        assert got % align == 0 and lo <= got and got + length - 1 <= hi
        assert idx.count(got, got + length - 1) == 0


def test_gap_inside_partially_covered_leaf_three_levels_deep():
    """A range in one leaf covers part of the next leaf's internal gap; the gap left over
    ends right before that leaf's last start.  Only a correct bound for such a child lets
    the root descend to it (it needs three levels, so LEAF_CAPACITY * 17 ranges)."""
    from harness._intervals import LEAF_CAPACITY as L
    n = L * 17
    starts = [10 * i for i in range(n)]
    ends = [10 * i + 9 for i in range(n)]
    a_last, b_last = 3 * L - 1, 4 * L - 1  # last entries of leaves 2 and 3
    ends[a_last] = 10 * (b_last - 2) + 50  # reaches into leaf 3's gap
    shift = 1000
    for i in range(b_last, n):
        starts[i] += shift
        ends[i] += shift
    idx = IntervalIndex.from_arrays(starts, ends)
    idx._check()
    free_lo, free_hi = ends[a_last] + 1, starts[b_last] - 1
    length = free_hi - free_lo + 1
    assert idx.find_gap(length) == free_lo
    assert idx.find_gap(length, highest=True, hi=starts[-1]) == free_lo
    assert idx.find_gap(length + 1) == ends[-1] + 1


def test_set_simd_levels():
    best = _set_simd(2)
    try:
        assert best in (0, 1, 2)
        assert _set_simd(0) == best  # nothing above what the CPU has
        assert _set_simd(-5) == 0
        assert _set_simd(1) == 0
        assert _set_simd(99) == min(1, best)
        assert _set_simd(best) == best
    finally:
        _set_simd(best)
