#!/usr/bin/env python3
"""Benchmark harness._intervals.IntervalIndex against superintervals, ailist, ncls,
intervaltree and a numpy searchsorted baseline on the same data and the same queries.

    .venv/bin/python benchmarks/bench_intervals.py            # full run (~3-4 min)
    .venv/bin/python benchmarks/bench_intervals.py --quick    # smoke run
    .venv/bin/python benchmarks/bench_intervals.py --sizes 1e6 --only first,update --peers superintervals
                                                              # focused run (does not write the file)

Data (fixed seed): at each N, 40 % port-like ranges (1-32 ports, in one 64 KiB port space
per simulated machine) and 60 % memory-like ranges: bridge windows (1 MiB-256 MiB, up to
2**48) with BARs (4 KiB-1 MiB, size-aligned) nested inside them, plus a few huge RAM
ranges.  Queries: half start near a stored range, half anywhere in the occupied span.

Every figure is the median over repetitions of (loop time / calls), so it includes the
Python loop and call overhead; the "bare call" row shows that overhead alone.
"""
from __future__ import annotations

import argparse
import gc
import operator
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness._intervals import IntervalIndex  # noqa: E402

try:
    from superintervals import IntervalMap
except ImportError:  # pragma: no cover - peers are optional
    IntervalMap = None
try:
    from ailist import AIList
except ImportError:  # pragma: no cover
    AIList = None
try:
    from ncls import NCLS
except ImportError:  # pragma: no cover
    NCLS = None
try:
    from intervaltree import IntervalTree
except ImportError:  # pragma: no cover
    IntervalTree = None

SEED = 20240531
INTERVALTREE_MAX_N = 100_000  # building it at 1e6 takes minutes and gigabytes
PEERS = ["superintervals", "ailist", "ncls", "intervaltree", "numpy"]
BaselineIndex = None  # --baseline: another build of the extension, for A/B runs


def load_baseline(path: str):
    import importlib.machinery
    import importlib.util
    loader = importlib.machinery.ExtensionFileLoader("baseline._intervals", path)
    spec = importlib.util.spec_from_file_location("baseline._intervals", path, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod.IntervalIndex


SECTIONS = ["build", "first", "all", "batch", "update", "gap"]


# ---- data --------------------------------------------------------------------------------

def make_data(n: int, rng: np.random.Generator):
    n_ports = int(n * 0.4)
    n_ram = max(1, n // 100_000)
    n_mem = n - n_ports - n_ram
    n_win = max(1, n_mem // 40)
    n_bar = n_mem - n_win
    machines = max(1, n // 2000)
    # ports: one 64 KiB I/O space per machine, laid out above 2**52
    p_machine = rng.integers(0, machines, n_ports, dtype=np.uint64)
    p_len = rng.choice(np.array([1, 2, 4, 8, 16, 32], dtype=np.uint64), n_ports)
    p_start = (2**52 + p_machine * 0x10000 + rng.integers(0, 0x10000, n_ports, dtype=np.uint64) // p_len * p_len)
    p_end = np.minimum(p_start + p_len - 1, 2**52 + p_machine * 0x10000 + 0xFFFF)
    # windows: 1 MiB .. 256 MiB, size-aligned, below 2**48
    w_size = np.uint64(1) << rng.integers(20, 29, n_win, dtype=np.uint64)
    w_start = rng.integers(0, 2**48, n_win, dtype=np.uint64) // w_size * w_size
    w_end = w_start + w_size - 1
    # BARs: 4 KiB .. 1 MiB, size-aligned, inside a random window
    owner = rng.integers(0, n_win, n_bar)
    b_size = np.uint64(1) << rng.integers(12, 21, n_bar, dtype=np.uint64)
    b_off = rng.integers(0, 2**30, n_bar, dtype=np.uint64) % w_size[owner] // b_size * b_size
    b_start = w_start[owner] + b_off
    b_end = np.minimum(b_start + b_size - 1, w_end[owner])
    # RAM: a few huge ranges
    r_start = rng.integers(0, 2**47, n_ram, dtype=np.uint64)
    r_end = r_start + (np.uint64(1) << rng.integers(32, 40, n_ram, dtype=np.uint64)) - 1
    starts = np.concatenate([p_start, w_start, b_start, r_start])
    ends = np.concatenate([p_end, w_end, b_end, r_end])
    perm = rng.permutation(n)
    return starts[perm].copy(), ends[perm].copy()


def make_queries(starts, ends, q: int, rng: np.random.Generator):
    half = q // 2
    pick = rng.integers(0, len(starts), half)
    qa1 = starts[pick] + rng.integers(0, 64, half, dtype=np.uint64)
    lo, hi = int(starts.min()), int(ends.max())
    qa2 = rng.integers(lo, hi, q - half, dtype=np.uint64)
    qa = np.concatenate([qa1, qa2])
    qlen = rng.choice(np.array([0, 0, 3, 15, 4095], dtype=np.uint64), q)
    qb = qa + qlen
    perm = rng.permutation(q)
    return qa[perm].copy(), qb[perm].copy()


def rank_compress(*arrays):
    """Map every coordinate to its rank among all distinct values: order (and so every
    overlap relation between closed ranges) is preserved, and ranks fit in int32."""
    allv = np.unique(np.concatenate(arrays))
    assert len(allv) < 2**31 - 2
    return [np.searchsorted(allv, a).astype(np.int64) for a in arrays]


# ---- timing ------------------------------------------------------------------------------

def timeit(fn, calls: int, reps: int) -> float:
    """Median ns per call of fn() (which performs `calls` operations)."""
    out = []
    for _ in range(reps):
        gc.disable()
        t0 = time.perf_counter_ns()
        fn()
        t1 = time.perf_counter_ns()
        gc.enable()
        out.append((t1 - t0) / calls)
    return statistics.median(out)


def timeit_rotating(fns: dict, calls: int, reps: int) -> dict:
    """Like timeit() for several contenders at once, taking turns within every repetition
    (rotating who goes first), so drift on a noisy machine hits them all alike."""
    names = list(fns)
    out = {k: [] for k in names}
    for r in range(reps):
        for i in range(len(names)):
            k = names[(r + i) % len(names)]
            gc.disable()
            t0 = time.perf_counter_ns()
            fns[k]()
            t1 = time.perf_counter_ns()
            gc.enable()
            out[k].append((t1 - t0) / calls)
    return {k: statistics.median(v) for k, v in out.items()}


def timeit_setup(setup, fn, calls: int, reps: int) -> float:
    out = []
    for _ in range(reps):
        state = setup()
        gc.disable()
        t0 = time.perf_counter_ns()
        fn(state)
        t1 = time.perf_counter_ns()
        gc.enable()
        out.append((t1 - t0) / calls)
    return statistics.median(out)


# ---- the run -----------------------------------------------------------------------------

def bench_n(n: int, args, notes: set[str]) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(SEED + n)
    starts, ends = make_data(n, rng)
    qa, qb = make_queries(starts, ends, args.batch, rng)
    q = args.queries
    sqa, sqb = qa[:q].tolist(), qb[:q].tolist()
    R = args.reps
    res: dict[str, dict[str, float]] = {}

    def put(metric, who, ns):
        res.setdefault(metric, {})[who] = ns

    # rank-compressed coordinates for the 32-bit peers
    rs, re_, rqa, rqb = rank_compress(starts, ends, qa, qb)
    rsqa, rsqb = rqa[:q].tolist(), rqb[:q].tolist()

    section = args.only_set.__contains__
    peers_ok = set(args.peers.split(",")) if args.peers else set(PEERS)

    # ---- build ----
    if section("build"):
        put("build (ns/range)", "ours", timeit(lambda: IntervalIndex.from_arrays(starts, ends), n, R))
    idx = IntervalIndex.from_arrays(starts, ends)
    base = BaselineIndex.from_arrays(starts, ends) if BaselineIndex else None

    def np_build():
        order = np.argsort(starts, kind="stable")
        s_sorted = starts[order]
        runmax = np.maximum.accumulate(ends[order])
        e_sorted = np.sort(ends)
        return order, s_sorted, runmax, e_sorted
    if section("build"):
        put("build (ns/range)", "numpy", timeit(np_build, n, R))
    order, s_sorted, runmax, e_sorted = np_build()

    si = ail = nc = it = None
    if IntervalMap and "superintervals" in peers_ok:
        rs32, re32 = rs.astype(np.int32), re_.astype(np.int32)

        def si_build():
            m = IntervalMap.from_arrays(rs32, re32)
            m.build()
            return m
        if section("build"):
            put("build (ns/range)", "superintervals", timeit(si_build, n, R))
        si = si_build()
    if AIList and "ailist" in peers_ok:
        ids = np.arange(n, dtype=np.int64)

        def ail_build():
            a = AIList()
            a.add(rs, re_ + 1, ids)
            a.construct()
            return a
        if section("build"):
            put("build (ns/range)", "ailist", timeit(ail_build, n, R))
        ail = ail_build()
    if NCLS and "ncls" in peers_ok:
        ids = np.arange(n, dtype=np.int64)
        s64, e64 = starts.astype(np.int64), (ends + 1).astype(np.int64)
        if section("build"):
            put("build (ns/range)", "ncls", timeit(lambda: NCLS(s64, e64, ids), n, R))
        nc = NCLS(s64, e64, ids)
    if IntervalTree and "intervaltree" in peers_ok and n <= INTERVALTREE_MAX_N:
        tuples = list(zip(starts.tolist(), (ends + 1).tolist(), range(n)))
        if section("build"):
            put("build (ns/range)", "intervaltree", timeit(lambda: IntervalTree.from_tuples(tuples), n, 1))
        it = IntervalTree.from_tuples(tuples)
    elif IntervalTree and "intervaltree" in peers_ok:
        notes.add(f"intervaltree is skipped above N={INTERVALTREE_MAX_N:,} (building it takes minutes).")

    # ---- sanity: every peer agrees with us on the number of overlaps ----
    for i in range(0, q, max(1, q // 200)):
        a, b = sqa[i], sqb[i]
        want = len(idx.overlaps(a, b))
        if si is not None:
            assert si.count(rsqa[i], rsqb[i]) == want, ("superintervals", a, b)
        if ail is not None:
            assert len(ail.intersect_ids(rsqa[i], rsqb[i] + 1)) == want, ("ailist", a, b)
        if nc is not None:
            assert len(list(nc.find_overlap(a, b + 1))) == want, ("ncls", a, b)
        if it is not None:
            assert len(it.overlap(a, b + 1)) == want, ("intervaltree", a, b)

    # ---- bare call overhead: the same loop around a trivial C call ----
    if section("first"):
        is_ = operator.is_

        def bare():
            for a, b in zip(sqa, sqb):
                is_(a, b)
        put("bare call (ns)", "ours", timeit(bare, q, R))

    # ---- first overlap ----
    if section("first"):
        f = idx.first_overlap

        def ours_first():
            for a, b in zip(sqa, sqb):
                f(a, b)
        contenders = {"ours": ours_first}
        if base is not None:
            fb = base.first_overlap

            def base_first():
                for a, b in zip(sqa, sqb):
                    fb(a, b)
            contenders["baseline"] = base_first
        if si is not None:
            g = si.has_overlaps

            def si_first():
                for a, b in zip(rsqa, rsqb):
                    g(a, b)
            contenders["superintervals"] = si_first
        for who, t in timeit_rotating(contenders, q, R).items():
            put("first overlap (ns)", who, t)
        if nc is not None:
            g2 = nc.has_overlap

            def nc_first():
                for a, b in zip(sqa, sqb):
                    g2(a, b + 1)
            put("first overlap (ns)", "ncls", timeit(nc_first, q, R))
        if it is not None:
            g3 = it.overlaps
            qi = min(q, 3000)

            def it_first():
                for a, b in zip(sqa[:qi], sqb[:qi]):
                    g3(a, b + 1)
            put("first overlap (ns)", "intervaltree", timeit(it_first, qi, R))
        notes.add("first overlap and all overlaps: ours and superintervals are timed in turns within "
                  "each repetition (who goes first rotates), so machine noise hits both alike.")
        notes.add("first overlap: superintervals/ncls/intervaltree only offer an any-overlap test "
                  "(has_overlaps / has_overlap / overlaps -> bool), which is what they are timed with; "
                  "ours returns the handle of the lowest overlapping range. ailist has no such call.")

    # ---- all overlaps ----
    if section("all"):
        qa_all = min(q, 10000)
        g4 = idx.overlaps

        def ours_all():
            for a, b in zip(sqa[:qa_all], sqb[:qa_all]):
                g4(a, b)
        contenders = {"ours": ours_all}
        if base is not None:
            gb = base.overlaps

            def base_all():
                for a, b in zip(sqa[:qa_all], sqb[:qa_all]):
                    gb(a, b)
            contenders["baseline"] = base_all
        if si is not None:
            g5 = si.search_idxs

            def si_all():
                for a, b in zip(rsqa[:qa_all], rsqb[:qa_all]):
                    g5(a, b)
            contenders["superintervals"] = si_all
        for who, t in timeit_rotating(contenders, qa_all, R).items():
            put("all overlaps (ns)", who, t)
        if ail is not None:
            g6 = ail.intersect_ids

            def ail_all():
                for a, b in zip(rsqa[:qa_all], rsqb[:qa_all]):
                    g6(a, b + 1)
            put("all overlaps (ns)", "ailist", timeit(ail_all, qa_all, R))
        if nc is not None:
            g7 = nc.find_overlap

            def nc_all():
                for a, b in zip(sqa[:qa_all], sqb[:qa_all]):
                    list(g7(a, b + 1))
            put("all overlaps (ns)", "ncls", timeit(nc_all, qa_all, R))
        if it is not None:
            g8 = it.overlap
            qi = min(qa_all, 3000)

            def it_all():
                for a, b in zip(sqa[:qi], sqb[:qi]):
                    g8(a, b + 1)
            put("all overlaps (ns)", "intervaltree", timeit(it_all, qi, R))
        notes.add("all overlaps: ours and superintervals return a list of int handles; ailist a numpy "
                  "array of ids; ncls an iterator of (start, end, id) tuples (listed); intervaltree a set "
                  "of Interval objects.")

    # ---- batch ----
    if section("batch"):
        nb = len(qa)
        put("batch first overlap (ns/query)", "ours", timeit(lambda: idx.first_overlap_batch(qa, qb), nb, R))
        out = np.empty(nb, dtype=np.int64)
        put("batch first overlap, out= (ns/query)", "ours", timeit(lambda: idx.first_overlap_batch(qa, qb, out=out), nb, R))
        handles_sorted = order.astype(np.int64)

        def np_first():
            i = np.searchsorted(runmax, qa, "left")
            ok = i < n
            i = np.minimum(i, n - 1)
            ok &= s_sorted[i] <= qb
            return np.where(ok, handles_sorted[i], -1)
        put("batch first overlap (ns/query)", "numpy", timeit(np_first, nb, R))
        put("batch first overlap, out= (ns/query)", "numpy", res["batch first overlap (ns/query)"]["numpy"])
        assert np.array_equal(np.asarray(idx.first_overlap_batch(qa, qb)), np_first())
        if nc is not None:
            qi64, qa64, qb64 = np.arange(nb, dtype=np.int64), qa.astype(np.int64), (qb + 1).astype(np.int64)
            put("batch first overlap (ns/query)", "ncls", timeit(lambda: nc.first_overlap_both(qa64, qb64, qi64), nb, R))

        put("batch count (ns/query)", "ours", timeit(lambda: idx.count_batch(qa, qb, out=out), nb, R))

        def np_count():
            return np.searchsorted(s_sorted, qb, "right") - np.searchsorted(e_sorted, qa, "left")
        put("batch count (ns/query)", "numpy", timeit(np_count, nb, R))
        assert np.array_equal(np.asarray(idx.count_batch(qa, qb)), np_count())
        if si is not None:
            rqa32, rqb32 = rqa.astype(np.int32), rqb.astype(np.int32)
            put("batch count (ns/query)", "superintervals", timeit(lambda: si.count_batch(rqa32, rqb32), nb, R))
        if ail is not None and hasattr(ail, "nhits_from_array"):
            rqb1 = rqb + 1
            put("batch count (ns/query)", "ailist", timeit(lambda: ail.nhits_from_array(rqa, rqb1), nb, R))
        notes.add("batch first overlap numpy baseline: searchsorted on the running max of ends in start "
                  "order (exact for the lowest-start overlap); batch count numpy baseline: "
                  "searchsorted(starts, b) - searchsorted(ends, a). ncls first_overlap_both returns "
                  "only the hits (two arrays).")

    # ---- insert / remove ----
    if section("update"):
        k = args.updates
        ins_s = rng.integers(0, 2**48, k, dtype=np.uint64)
        ins_e = ins_s + rng.integers(0, 2**16, k, dtype=np.uint64)
        ins = list(zip(ins_s.tolist(), ins_e.tolist()))

        def ins_setup():
            return IntervalIndex.from_arrays(starts, ends)

        handles_holder = {}

        def do_ins(ix):
            add = ix.insert
            handles_holder["h"] = [add(a, b) for a, b in ins]
            handles_holder["ix"] = ix
        put("insert (ns/op)", "ours", timeit_setup(ins_setup, do_ins, k, R))
        if base is not None:
            put("insert (ns/op)", "baseline",
                timeit_setup(lambda: BaselineIndex.from_arrays(starts, ends), do_ins, k, R))

        def rem_setup():
            ix = IntervalIndex.from_arrays(starts, ends)
            add = ix.insert
            return ix, [add(a, b) for a, b in ins]

        def do_rem(state):
            ix, hs = state
            rm = ix.remove
            for h in hs:
                rm(h)
        put("remove (ns/op)", "ours", timeit_setup(rem_setup, do_rem, k, R))
        if base is not None:
            def rem_setup_base():
                ix = BaselineIndex.from_arrays(starts, ends)
                add = ix.insert
                return ix, [add(a, b) for a, b in ins]
            put("remove (ns/op)", "baseline", timeit_setup(rem_setup_base, do_rem, k, R))

        one_s, one_e = np.append(rs, rs[0]), np.append(re_, re_[0])
        if si is not None:
            o32s, o32e = one_s.astype(np.int32), one_e.astype(np.int32)

            def si_rebuild():
                m = IntervalMap.from_arrays(o32s, o32e)
                m.build()
            t = timeit(si_rebuild, 1, max(1, R // 2))
            put("insert (ns/op)", "superintervals", t)
            put("remove (ns/op)", "superintervals", t)
        if ail is not None:
            ids1 = np.arange(n + 1, dtype=np.int64)

            def ail_rebuild():
                a = AIList()
                a.add(one_s, one_e + 1, ids1)
                a.construct()
            t = timeit(ail_rebuild, 1, max(1, R // 2))
            put("insert (ns/op)", "ailist", t)
            put("remove (ns/op)", "ailist", t)
        if nc is not None:
            ids1 = np.arange(n + 1, dtype=np.int64)
            s1 = np.append(starts, starts[0]).astype(np.int64)
            e1 = (np.append(ends, ends[0]) + 1).astype(np.int64)
            t = timeit(lambda: NCLS(s1, e1, ids1), 1, max(1, R // 2))
            put("insert (ns/op)", "ncls", t)
            put("remove (ns/op)", "ncls", t)
        if it is not None:
            kk = min(k, 2000)

            def it_ins():
                for j, (a, b) in enumerate(ins[:kk]):
                    it.addi(a, b + 1, -1 - j)

            def it_rem():
                for j, (a, b) in enumerate(ins[:kk]):
                    it.removei(a, b + 1, -1 - j)
            ti, tr = [], []
            for _ in range(R):
                t0 = time.perf_counter_ns(); it_ins(); t1 = time.perf_counter_ns(); it_rem(); t2 = time.perf_counter_ns()
                ti.append((t1 - t0) / kk)
                tr.append((t2 - t1) / kk)
            put("insert (ns/op)", "intervaltree", statistics.median(ti))
            put("remove (ns/op)", "intervaltree", statistics.median(tr))
        notes.add("insert/remove: superintervals, ailist and ncls are static; their figure is one full "
                  "rebuild from arrays with the range added (or removed).")

    # ---- gap search ----
    if section("gap"):
        gq = min(q, 20000)
        sizes = (np.uint64(1) << rng.integers(12, 24, gq, dtype=np.uint64)).tolist()
        los = rng.integers(0, 2**48, gq, dtype=np.uint64).tolist()
        g9 = idx.find_gap

        def gap_low():
            for ln, lo in zip(sizes, los):
                g9(ln, lo, lo + 2**40, align=ln)

        def gap_high():
            for ln, lo in zip(sizes, los):
                g9(ln, lo, lo + 2**40, align=ln, highest=True)

        def gap_shared():
            for ln, lo in zip(sizes, los):
                g9(ln, lo, lo + 2**40, align=ln, ignore_shared=True)
        put("gap search lowest (ns)", "ours", timeit(gap_low, gq, R))
        put("gap search highest (ns)", "ours", timeit(gap_high, gq, R))
        put("gap search ignore_shared (ns)", "ours", timeit(gap_shared, gq, R))
        notes.add("gap search: size-aligned requests of 4 KiB-8 MiB in a random 1 TiB window; no peer "
                  "has an aligned free-gap search.")
    return res


def fmt_ns(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.1f} ms"
    if v >= 1e3:
        return f"{v / 1e3:.2f} µs"
    return f"{v:.0f} ns"


def table(results: dict[int, dict[str, dict[str, float]]]) -> str:
    cols = ["ours"] + PEERS
    lines = ["| N | operation | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for n, res in results.items():
        for metric, row in res.items():
            cells = []
            ours = row.get("ours")
            for c in cols:
                if c not in row:
                    cells.append("—")
                elif c == "ours" or not ours:
                    cells.append(fmt_ns(row[c]))
                else:
                    cells.append(f"{fmt_ns(row[c])} (×{row[c] / ours:.2f})")
            lines.append(f"| {n:.0e} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(results) -> list[str]:
    out = []

    def get(n, m, who):
        return results.get(n, {}).get(m, {}).get(who)

    for n, need in ((1000, 1.0), (100_000, 1.0), (1_000_000, 1.2)):
        o, s = get(n, "first overlap (ns)", "ours"), get(n, "first overlap (ns)", "superintervals")
        if o and s:
            ok = s / o >= need
            out.append(f"first overlap N={n:.0e}: superintervals/ours = {s / o:.2f} (need ≥ {need}) "
                       f"{'MET' if ok else 'MISSED'}")
    for n in results:
        o, s = get(n, "all overlaps (ns)", "ours"), get(n, "all overlaps (ns)", "superintervals")
        if o and s:
            out.append(f"all overlaps N={n:.0e}: superintervals/ours = {s / o:.2f} (need ≥ 1) "
                       f"{'MET' if s >= o else 'MISSED'}")
    big = max(results)
    for m, lim in (("insert (ns/op)", 1000), ("remove (ns/op)", 1000), ("gap search lowest (ns)", 2000),
                   ("gap search highest (ns)", 2000), ("gap search ignore_shared (ns)", 2000)):
        o = get(big, m, "ours")
        if o:
            out.append(f"{m} N={big:.0e}: {fmt_ns(o)} (need ≤ {fmt_ns(lim)}) {'MET' if o <= lim else 'MISSED'}")
    for n in results:
        for m in ("batch first overlap (ns/query)", "batch count (ns/query)"):
            o, b = get(n, m, "ours"), get(n, m, "numpy")
            if o and b:
                out.append(f"{m} N={n:.0e}: numpy/ours = {b / o:.2f} (need ≥ 1) {'MET' if b >= o else 'MISSED'}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,100000,1000000", help="comma-separated N values")
    ap.add_argument("--queries", type=int, default=20000, help="scalar queries per repetition")
    ap.add_argument("--batch", type=int, default=200000, help="queries per batch call")
    ap.add_argument("--updates", type=int, default=20000, help="inserts/removes per repetition")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="small sizes and few repetitions")
    ap.add_argument("--only", default="", metavar="SECTIONS",
                    help="comma-separated subset of " + ",".join(SECTIONS) + " (default: all)")
    ap.add_argument("--baseline", default="", metavar="SO",
                    help="another build of harness/_intervals (.so) to time next to ours as column "
                         "'baseline' (first overlap, insert, remove): for A/B runs of a change")
    ap.add_argument("--peers", default="", metavar="PEERS",
                    help="comma-separated subset of peers to build and time (default: all)")
    ap.add_argument("--write", metavar="FILE", default=str(Path(__file__).with_name("RESULTS-intervals.md")),
                    help="write the markdown table here ('' to skip)")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.queries, args.batch, args.updates, args.reps = "1000,20000", 2000, 20000, 2000, 3
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    args.only_set = set(args.only.split(",")) if args.only else set(SECTIONS)
    if args.baseline:
        global BaselineIndex
        BaselineIndex = load_baseline(args.baseline)
        PEERS.insert(0, "baseline")
    if args.only or args.peers or args.baseline:
        args.write = ""  # a partial run never replaces the results file

    t0 = time.time()
    notes: set[str] = {
        "superintervals and ailist take 32-bit coordinates, so they get rank-compressed inputs "
        "(every start/end of data and queries replaced by its rank; overlap relations are unchanged). "
        "ncls (int64) and intervaltree get the real coordinates (all data is below 2**53).",
        "ailist, ncls and intervaltree are half-open: they get [start, end + 1).",
        "Cells: median time per operation, then (×peer/ours): above 1 means ours is faster.",
    }
    results = {}
    for n in sizes:
        print(f"N = {n:,} ...", file=sys.stderr, flush=True)
        results[n] = bench_n(n, args, notes)
    tab = table(results)
    versions = []
    for mod in ("superintervals", "ailist", "ncls", "intervaltree", "numpy"):
        try:
            from importlib.metadata import version
            versions.append(f"{mod} {version(mod)}")
        except Exception:
            pass
    head = (f"Interval index benchmark — {platform.processor() or platform.machine()}, "
            f"Python {platform.python_version()}, {', '.join(versions)}; seed {SEED}; "
            f"{args.queries} scalar / {args.batch} batch queries, {args.updates} updates, "
            f"median of {args.reps}; run took {time.time() - t0:.0f} s.")
    tgt = targets(results)
    text = "\n".join([head, "", tab, "", "Targets (issue 3):", *[f"- {t}" for t in tgt], "",
                      "Notes:", *[f"- {n}" for n in sorted(notes)]])
    print(text)
    if args.write and not args.quick:
        Path(args.write).write_text("# Interval index benchmark (latest run)\n\n"
                                    "Command: `make bench-intervals` "
                                    "(= `.venv/bin/python benchmarks/bench_intervals.py`)\n\n" + text + "\n")
        print(f"\nwritten to {args.write}", file=sys.stderr)


if __name__ == "__main__":
    main()
