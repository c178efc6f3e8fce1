/*
 * Deterministic fuzz driver for the interval index core, meant for AddressSanitizer and
 * UBSan (see the fuzz-intervals make target).  It compiles harness/_intervals.c without
 * Python, runs a seeded random stream of operations -- insert, remove, every query, gap
 * searches, bulk rebuilds, injected allocation failures -- and checks each result against
 * a brute-force model kept in plain arrays.  Prints how many operations it survived.
 *
 * usage: fuzz_intervals [ops] [seed]
 */
#define IVX_NO_PYTHON
#include <stdio.h>
#include <stdlib.h>

/* Allocation failure injection: the core's allocations go through these. */
static int fail_rate; /* fail one allocation in fail_rate (0 = never) */
static unsigned long long alloc_calls, alloc_failures;
static unsigned long long rng_state;

static unsigned long long rnd(void)
{ /* splitmix64 */
    unsigned long long z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int should_fail(void)
{
    alloc_calls++;
    if (fail_rate && rnd() % (unsigned)fail_rate == 0) {
        alloc_failures++;
        return 1;
    }
    return 0;
}

static void *fz_malloc(size_t n) { return should_fail() ? NULL : malloc(n); }
static void *fz_realloc(void *p, size_t n) { return should_fail() ? NULL : realloc(p, n); }
static void *fz_aligned_alloc(size_t a, size_t n) { return should_fail() ? NULL : aligned_alloc(a, n); }

/* Node allocations fail independently of chunk allocations, and chunks stay small so
 * trees span many of them. */
#define IVX_ALLOC_FAULT() should_fail()
#define IVX_CHUNK_MAX ((size_t)16384)
#define malloc fz_malloc
#define realloc fz_realloc
#define aligned_alloc fz_aligned_alloc
#include "../../harness/_intervals.c"
#undef malloc
#undef realloc
#undef aligned_alloc

#define M UINT64_MAX
#define MAXH 200000

typedef struct {
    uint64_t s, e;
    int64_t owner;
    int shared, live;
} rec;

static rec model[MAXH];
static uint32_t nh; /* handles ever seen (model array extent) */
static size_t nlive;
static unsigned long long ops;

#define FAIL(...)                                                                            \
    do {                                                                                     \
        fprintf(stderr, "fuzz_intervals: op %llu: ", ops);                                   \
        fprintf(stderr, __VA_ARGS__);                                                        \
        fprintf(stderr, "\n");                                                               \
        exit(1);                                                                             \
    } while (0)

static uint64_t rnd_coord(void)
{
    switch (rnd() % 6) {
    case 0:
    case 1:
        return rnd() % 400;
    case 2:
        return (1ULL << 32) - 100 + rnd() % 200;
    case 3:
        return M - rnd() % 400;
    case 4:
        return rnd() % 0x10000;
    default:
        return rnd();
    }
}

static void rnd_range(uint64_t *s, uint64_t *e)
{
    uint64_t a = rnd_coord();
    switch (rnd() % 4) {
    case 0: { /* short, clamped at the top */
        uint64_t len = rnd() % 16;
        *s = a;
        *e = a > M - len ? M : a + len;
        return;
    }
    case 1: {
        uint64_t b = rnd_coord();
        *s = a < b ? a : b;
        *e = a < b ? b : a;
        return;
    }
    case 2:
        *s = a;
        *e = a + (M - a) / (1 + rnd() % 1000);
        return;
    default:
        *s = *e = a;
    }
}

/* model queries */
static int overlaps(const rec *r, uint64_t a, uint64_t b) { return r->live && r->s <= b && r->e >= a; }

static int keyless(uint32_t h1, uint32_t h2)
{
    return model[h1].s < model[h2].s || (model[h1].s == model[h2].s && h1 < h2);
}

static int64_t model_first(uint64_t a, uint64_t b, int x, int excl_on, int64_t excl)
{
    int64_t best = -1;
    for (uint32_t h = 0; h < nh; h++) {
        const rec *r = &model[h];
        if (!overlaps(r, a, b) || (x && r->shared) || (excl_on && r->owner == excl)) continue;
        if (best < 0 || keyless(h, (uint32_t)best)) best = h;
    }
    return best;
}

static int cmp_h(const void *p, const void *q)
{
    uint32_t a = *(const uint32_t *)p, b = *(const uint32_t *)q;
    return keyless(a, b) ? -1 : keyless(b, a) ? 1 : 0;
}

static uint32_t *sorted_live(size_t *n, int x)
{
    uint32_t *v = calloc(nlive ? nlive : 1, sizeof(uint32_t));
    size_t k = 0;
    if (!v) FAIL("out of memory in the model");
    for (uint32_t h = 0; h < nh; h++)
        if (model[h].live && !(x && model[h].shared)) v[k++] = h;
    qsort(v, k, sizeof(uint32_t), cmp_h);
    *n = k;
    return v;
}

static int model_gap(const ivx_gq *q, int highest, uint64_t *out)
{
    size_t n;
    uint32_t *v = sorted_live(&n, q->x);
    int found = 0;
    uint64_t nf = 0;
    int sat = 0;
    for (size_t i = 0; i <= n && !sat; i++) {
        uint64_t a = nf, b;
        int have;
        if (i < n) {
            have = model[v[i]].s > nf;
            b = have ? model[v[i]].s - 1 : 0;
        } else {
            have = 1;
            b = M;
        }
        uint64_t s;
        if (have && (highest ? fit_high(q, a, b, &s) : fit_low(q, a, b, &s))) {
            if (!found || highest) *out = s; /* runs are in order: keep first / last */
            found = 1;
            if (!highest) break;
        }
        if (i < n && model[v[i]].e >= nf) {
            if (model[v[i]].e == M) sat = 1;
            else nf = model[v[i]].e + 1;
        }
    }
    free(v);
    return found;
}

static void check_walk(const ivx_tree *t, uint64_t a, uint64_t b)
{
    ivx_walk w = {0};
    uint32_t local[5];
    w.a = a;
    w.b = b;
    w.mode = W_COLLECT;
    if (rnd() % 2) { /* a caller's buffer that may overflow to the heap */
        w.cap = 1 + rnd() % 5;
        w.buf = local;
    }
    ivx_walk_run(t, &w);
    if (w.oom) { /* injected failure: nothing to compare */
        if (w.heap) free(w.buf);
        return;
    }
    size_t n, k = 0;
    uint32_t *v = sorted_live(&n, 0);
    for (size_t i = 0; i < n; i++) {
        if (!overlaps(&model[v[i]], a, b)) continue;
        if (k >= w.count || w.buf[k] != v[i]) FAIL("overlaps(%llu, %llu) differs at %zu", (unsigned long long)a, (unsigned long long)b, k);
        k++;
    }
    if (k != w.count) FAIL("overlaps(%llu, %llu): %zu results, model %zu", (unsigned long long)a, (unsigned long long)b, w.count, k);
    ivx_walk c = {0};
    c.a = a;
    c.b = b;
    c.mode = W_COUNT;
    ivx_walk_run(t, &c);
    if (c.count != k) FAIL("count mismatch");
    free(v);
    if (w.heap) free(w.buf);
}

static void rebuild(ivx_tree *t)
{
    /* bulk-load a copy of the tree from its slots, as unpickling does, and swap it in */
    ivx_tree nt;
    ivx_init(&nt);
    ivx_kh *kh = NULL;
    if (t->nslots && slots_reserve(&nt, t->nslots) < 0) goto fail;
    if (t->nslots) memcpy(nt.slots, t->slots, t->nslots * sizeof(ivx_slot));
    nt.nslots = t->nslots;
    nt.free_head = t->free_head;
    kh = malloc((t->n ? t->n : 1) * sizeof(ivx_kh));
    if (!kh) goto fail;
    size_t k = 0;
    for (uint32_t h = 0; h < t->nslots; h++)
        if (t->slots[h].live) {
            kh[k].key = t->slots[h].start;
            kh[k].h = h;
            k++;
        }
    if (radix_sort(kh, k) < 0 || ivx_bulk(&nt, kh, k) < 0) goto fail;
    free(kh);
    ivx_clear(t);
    *t = nt;
    return;
fail:
    free(kh);
    ivx_clear(&nt);
}

int main(int argc, char **argv)
{
    unsigned long long nops = argc > 1 ? strtoull(argv[1], NULL, 10) : 3000000ULL;
    rng_state = argc > 2 ? strtoull(argv[2], NULL, 10) : 20240531ULL;
    ivx_tree t;
    ivx_init(&t);
    size_t cap_live = 64;
    /* queries run on the portable node scans and on every vector level the CPU has */
    ivx_cpu_init();
    int simd_best = ivx_simd;
    unsigned long long simd_queries[3] = {0, 0, 0};

    for (ops = 1; ops <= nops; ops++) {
        unsigned r = (unsigned)(rnd() % 1000);
        /* live-set target drifts so the tree grows deep and shrinks back to nothing */
        if (ops % 200000 == 1) cap_live = (size_t)1 << (3 + rnd() % 9);
        fail_rate = (ops / 50000) % 4 == 3 ? 50 : 0;

        if (r < 380 && nlive < cap_live) {
            uint64_t s, e;
            rnd_range(&s, &e);
            int64_t owner = (int64_t)(rnd() % 5) - 2;
            int sh = rnd() % 3 == 0;
            uint32_t h;
            size_t before = t.n;
            int rc = ivx_insert(&t, s, e, owner, sh, &h);
            if (rc == -1) {
                if (!fail_rate) FAIL("insert failed without injected failure");
                if (t.n != before) FAIL("failed insert changed the count");
                continue;
            }
            if (rc) FAIL("insert rc %d", rc);
            if (h >= MAXH) FAIL("handle %u too large", h);
            if (h < nh && model[h].live) FAIL("handle %u handed out twice", h);
            if (h >= nh) nh = h + 1;
            model[h] = (rec){s, e, owner, sh, 1};
            nlive++;
        } else if (r < 700) {
            if (!nlive || rnd() % 50 == 0) {
                uint32_t h = (uint32_t)(rnd() % (nh + 3));
                int want = !(h < nh && model[h].live);
                if (want && ivx_remove(&t, h) != 1) FAIL("remove of dead handle %u succeeded", h);
                continue;
            }
            uint32_t h;
            do h = (uint32_t)(rnd() % nh); while (!model[h].live);
            if (ivx_remove(&t, h) != 0) FAIL("remove %u failed", h);
            model[h].live = 0;
            nlive--;
        } else if (r < 900) {
            uint64_t a, b;
            rnd_range(&a, &b);
            ivx_simd = (int)(rnd() % (unsigned)(simd_best + 1));
            simd_queries[ivx_simd]++;
            int64_t got = ivx_first(&t, a, b), want = model_first(a, b, 0, 0, 0);
            if (got != want) FAIL("first(%llu,%llu) = %lld, model %lld (simd %d)", (unsigned long long)a, (unsigned long long)b, (long long)got, (long long)want, ivx_simd);
            if (ivx_first_c(&t, a, b) != want) FAIL("portable first mismatch");
#ifdef IVX_HAVE_AVX512
            if (simd_best >= IVX_SIMD_AVX2 && ivx_first_a2(&t, a, b) != want) FAIL("AVX2 first mismatch");
            if (simd_best >= IVX_SIMD_AVX512 && ivx_first_v(&t, a, b) != want) FAIL("AVX-512 first mismatch");
#endif
            got = ivx_first_x(&t, a, b);
            want = model_first(a, b, 1, 0, 0);
            if (got != want) FAIL("first_x mismatch");
            ivx_walk w = {0};
            w.a = a;
            w.b = b;
            w.x = rnd() % 2;
            w.mode = W_FIRST_NOT_OWNER;
            w.owner = (int64_t)(rnd() % 5) - 2;
            w.slots = t.slots;
            w.found = -1;
            ivx_walk_run(&t, &w);
            if (w.found != model_first(a, b, w.x, 1, w.owner)) FAIL("conflict with exclude_owner mismatch");
            if (r < 740) check_walk(&t, a, b);
        } else if (r < 990) {
            ivx_gq q;
            uint64_t a = rnd_coord(), b = rnd_coord();
            q.lo = a < b ? a : b;
            q.hi = a < b ? b : a;
            if (rnd() % 4 == 0) {
                q.lo = 0;
                q.hi = M;
            }
            switch (rnd() % 4) {
            case 0: q.len = 1 + rnd() % 8; break;
            case 1: q.len = 1 + rnd() % 300; break;
            case 2: q.len = 1ULL << (rnd() % 64); break;
            default: q.len = 1 + rnd() % M; break;
            }
            switch (rnd() % 4) {
            case 0: q.align = 1; break;
            case 1: q.align = 1 + rnd() % 17; break;
            case 2: q.align = 1ULL << (rnd() % 64); break;
            default: q.align = 1 + rnd() % M; break;
            }
            q.x = rnd() % 2;
            int highest = rnd() % 2;
            uint64_t g1 = 0, g2 = 0;
            int f1 = ivx_gap(&t, &q, highest, &g1), f2 = model_gap(&q, highest, &g2);
            if (f1 != f2 || (f1 && g1 != g2))
                FAIL("gap(len=%llu align=%llu lo=%llu hi=%llu x=%d high=%d): %d/%llu model %d/%llu",
                     (unsigned long long)q.len, (unsigned long long)q.align, (unsigned long long)q.lo,
                     (unsigned long long)q.hi, q.x, highest, f1, (unsigned long long)g1, f2, (unsigned long long)g2);
        } else if (r < 996) {
            rebuild(&t);
        } else if (r == 996 && rnd() % 20 == 0) {
            ivx_clear(&t);
            memset(model, 0, sizeof(rec) * nh);
            nh = 0;
            nlive = 0;
        }
        if (ops % 997 == 0 || nlive < 40) {
            const char *err = ivx_check(&t);
            if (err) FAIL("invariant: %s", err);
            if (t.n != nlive) FAIL("size %zu, model %zu", t.n, nlive);
        }
    }
    const char *err = ivx_check(&t);
    if (err) FAIL("invariant at end: %s", err);
    ivx_clear(&t);
    printf("fuzz_intervals: survived %llu operations (seed %llu, %llu allocations, %llu injected failures; "
           "%s)\n",
           nops, argc > 2 ? strtoull(argv[2], NULL, 10) : 20240531ULL, alloc_calls, alloc_failures,
           simd_best == IVX_SIMD_AVX512 ? "queries on portable, AVX2 and AVX-512 scans"
           : simd_best == IVX_SIMD_AVX2 ? "queries on portable and AVX2 scans (no AVX-512)"
                                        : "portable scans only");
    for (int i = 0; i <= simd_best; i++)
        if (!simd_queries[i]) FAIL("scan level %d never ran", i);
    return 0;
}
