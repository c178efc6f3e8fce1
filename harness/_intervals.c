/*
 * harness._intervals -- the compiled interval index.
 *
 * Closed ranges [start, end] over the full unsigned 64-bit space, each with an owner id
 * (signed 64-bit) and a share flag, stored in a B+-tree ordered by (start, handle).
 *
 * Why a B+-tree: a query is a chain of dependent loads, so the tree is wide (few levels,
 * each level two cache lines of max ends) instead of binary.  Every child slot carries a
 * summary of its subtree:
 *   - max end: "first element in key order whose end >= a" is, per level, the first slot
 *     whose max end >= a -- a compare mask and a count of trailing zeros, no branch per
 *     slot (AVX-512 compares where the CPU has them).  That element is the lowest-start
 *     overlap of [a, b] iff its start <= b (anything later starts later).
 *   - max start and an upper bound on the largest free gap inside the subtree, which lets
 *     the aligned free-gap search skip subtrees that cannot hold the request.
 *   - the same figures over exclusive (non-shared) ranges only, for the share rule and for
 *     gap searches that ignore shared ranges.
 * Handles are slots in an array with a free list; remove finds the leaf by descending on
 * the (start, handle) key stored in the slot.  Nodes come from a per-tree arena of chunks
 * up to one 2 MiB huge page each.
 *
 * Where the time goes at N = 1e6 (a C loop of dependent first-overlap queries on the
 * benchmark's data): ~6 ns per level for the load -> compare -> mask -> child
 * pointer chain even when the node is in L1, plus the misses on the lowest inner level
 * and the leaf; about 30 ns a query.  Wider nodes (32) were measured slower; so were
 * prefetching child lines and non-temporal leaf loads.
 *
 * The core (up to "Python binding") has no Python dependency so tests/fuzz can compile it
 * standalone under AddressSanitizer with IVX_NO_PYTHON defined.
 */
#ifndef IVX_NO_PYTHON
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#endif

#include <stdarg.h>
#include <stddef.h>
#ifdef __linux__
#include <sys/mman.h> /* mmap + madvise(MADV_HUGEPAGE) for the node arena */
#endif
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef IVX_LCAP
#define IVX_LCAP 16 /* entries per leaf */
#endif
#ifndef IVX_FAN
#define IVX_FAN 16 /* children per inner node */
#endif
#define IVX_LMIN (IVX_LCAP / 2)
#define IVX_FMIN (IVX_FAN / 2)
#define IVX_CAPMAX (IVX_LCAP > IVX_FAN ? IVX_LCAP : IVX_FAN)
#define IVX_MAXDEPTH 40 /* FMIN**40 is far beyond 2**32 handles */
#define IVX_NOSLOT UINT32_MAX
#define IVX_MAXSLOTS (UINT32_MAX - 1u)

typedef struct ivx_node {
    int n;
    int leaf;
} ivx_node;

typedef struct ivx_leaf {
    ivx_node h;
    struct ivx_leaf *next; /* address-order chain for iteration */
    uint8_t excl[IVX_LCAP]; /* shares the header's cache line: 6 lines per leaf, not 7 */
    /* The first entry whose end >= a is the lowest-start overlap candidate.  ends comes
     * first and slots >= n hold 0, so that scan needs neither n nor a second array. */
    _Alignas(64) uint64_t end[IVX_LCAP];
    uint64_t start[IVX_LCAP];
    uint32_t hd[IVX_LCAP];
} ivx_leaf;

typedef struct ivx_inner {
    ivx_node h;
    uint8_t hasx[IVX_FAN]; /* child holds exclusive ranges; minx..gapx are valid */
    /* What a query descent reads: the max ends (one vector compare per 8) and then one
     * child pointer, in the lines right after them. */
    _Alignas(64) uint64_t maxend[IVX_FAN]; /* 0 in slots >= n */
    struct ivx_node *child[IVX_FAN];
    uint64_t kstart[IVX_FAN]; /* min key of the child: (kstart, khd) */
    uint32_t khd[IVX_FAN];
    uint64_t maxstart[IVX_FAN];
    uint64_t gap[IVX_FAN];
    uint64_t minx[IVX_FAN];
    uint64_t maxsx[IVX_FAN];
    uint64_t maxex[IVX_FAN];
    uint64_t gapx[IVX_FAN];
} ivx_inner;

typedef struct ivx_slot {
    uint64_t start, end;
    int64_t owner;
    uint32_t next_free;
    uint8_t live, shared;
} ivx_slot;

/* Nodes live in per-tree chunks that grow from 4 KiB to 2 MiB; a 2 MiB chunk is one
 * transparent huge page where the kernel allows it, so a query at N = 1e6 (a ~35 MB tree)
 * pays no TLB misses.  Freed nodes go to a free list per node kind; chunks go back to the
 * allocator when the tree is cleared (or rebuilt by from_arrays / unpickling). */
typedef struct ivx_arena {
    struct ivx_chunk *chunks;
    char *bump, *bump_end; /* the unused tail of the newest chunk */
    void *freel[2];        /* IVX_KLEAF, IVX_KINNER */
    size_t next_size;      /* of the next chunk; 0: IVX_CHUNK_MIN */
} ivx_arena;

typedef struct ivx_tree {
    ivx_arena arena;
    ivx_node *root;
    int height; /* inner levels above the leaves (0: the root is a leaf) */
    size_t n;
    ivx_slot *slots;
    uint32_t nslots, capslots;
    uint32_t free_head;
} ivx_tree;

/* Summary of a subtree, as stored in its parent's slot. */
typedef struct ivx_sum {
    uint64_t kstart, maxstart, maxend, gap;
    uint64_t minx, maxsx, maxex, gapx;
    uint32_t khd;
    uint8_t hasx;
} ivx_sum;

/* ---------------------------------------------------------------------------------- */
/* summaries                                                                           */

/* Fold items in key order into (cover, gap): cover = max end so far, gap = an upper
 * bound on the longest run of uncovered addresses strictly after the first item's start.
 * An item's own internal gap can only shrink under the cover of earlier items, and it
 * lies in [cover+1, maxs-1], hence the min() bound. */
typedef struct {
    uint64_t cover, gap;
    int any;
} ivx_fold;

static inline void fold_add(ivx_fold *f, uint64_t mins, uint64_t maxs, uint64_t maxe, uint64_t g)
{
    if (!f->any) {
        f->any = 1;
        f->cover = maxe;
        if (g > f->gap) f->gap = g;
        return;
    }
    if (f->cover != UINT64_MAX) {
        uint64_t c1 = f->cover + 1;
        if (mins > c1 && mins - c1 > f->gap) f->gap = mins - c1;
        if (g && maxs > c1) {
            uint64_t b = maxs - c1;
            if (b > g) b = g;
            if (b > f->gap) f->gap = b;
        }
    }
    if (maxe > f->cover) f->cover = maxe;
}

static void leaf_refresh(ivx_leaf *l)
{
    for (int j = l->h.n; j < IVX_LCAP; j++) l->end[j] = 0;
}

static void inner_refresh(ivx_inner *in)
{
    for (int k = in->h.n; k < IVX_FAN; k++) {
        in->maxend[k] = 0;
        in->child[k] = NULL;
    }
}

static void leaf_sum(const ivx_leaf *l, ivx_sum *s)
{
    int n = l->h.n, j;
    ivx_fold fa = {0, 0, 0}, fx = {0, 0, 0};
    s->kstart = l->start[0];
    s->khd = l->hd[0];
    s->maxstart = l->start[n - 1];
    s->minx = s->maxsx = 0;
    for (j = 0; j < n; j++) {
        uint64_t st = l->start[j], en = l->end[j];
        fold_add(&fa, st, st, en, 0);
        if (l->excl[j]) {
            if (!fx.any) s->minx = st;
            s->maxsx = st;
            fold_add(&fx, st, st, en, 0);
        }
    }
    s->maxend = fa.cover;
    s->gap = fa.gap;
    s->hasx = (uint8_t)fx.any;
    s->maxex = fx.any ? fx.cover : 0;
    s->gapx = fx.gap;
}

static void inner_sum(const ivx_inner *in, ivx_sum *s)
{
    int n = in->h.n, k;
    ivx_fold fa = {0, 0, 0}, fx = {0, 0, 0};
    s->kstart = in->kstart[0];
    s->khd = in->khd[0];
    s->maxstart = in->maxstart[n - 1];
    s->minx = s->maxsx = 0;
    for (k = 0; k < n; k++) {
        fold_add(&fa, in->kstart[k], in->maxstart[k], in->maxend[k], in->gap[k]);
        if (in->hasx[k]) {
            if (!fx.any) s->minx = in->minx[k];
            s->maxsx = in->maxsx[k];
            fold_add(&fx, in->minx[k], in->maxsx[k], in->maxex[k], in->gapx[k]);
        }
    }
    s->maxend = fa.cover;
    s->gap = fa.gap;
    s->hasx = (uint8_t)fx.any;
    s->maxex = fx.any ? fx.cover : 0;
    s->gapx = fx.gap;
}

static void node_sum(const ivx_node *nd, ivx_sum *s)
{
    if (nd->leaf)
        leaf_sum((const ivx_leaf *)nd, s);
    else
        inner_sum((const ivx_inner *)nd, s);
}

static void inner_put(ivx_inner *in, int k, const ivx_sum *s, ivx_node *c)
{
    in->child[k] = c;
    in->maxend[k] = s->maxend;
    in->kstart[k] = s->kstart;
    in->khd[k] = s->khd;
    in->maxstart[k] = s->maxstart;
    in->gap[k] = s->gap;
    in->hasx[k] = s->hasx;
    in->minx[k] = s->minx;
    in->maxsx[k] = s->maxsx;
    in->maxex[k] = s->maxex;
    in->gapx[k] = s->gapx;
}

static void inner_get(const ivx_inner *in, int k, ivx_sum *s)
{
    s->maxend = in->maxend[k];
    s->kstart = in->kstart[k];
    s->khd = in->khd[k];
    s->maxstart = in->maxstart[k];
    s->gap = in->gap[k];
    s->hasx = in->hasx[k];
    s->minx = in->minx[k];
    s->maxsx = in->maxsx[k];
    s->maxex = in->maxex[k];
    s->gapx = in->gapx[k];
}

static int sum_eq(const ivx_sum *a, const ivx_sum *b)
{
    return a->kstart == b->kstart && a->khd == b->khd && a->maxstart == b->maxstart &&
           a->maxend == b->maxend && a->gap == b->gap && a->hasx == b->hasx &&
           a->minx == b->minx && a->maxsx == b->maxsx && a->maxex == b->maxex &&
           a->gapx == b->gapx;
}

/* ---------------------------------------------------------------------------------- */
/* node storage moves                                                                  */

static void leaf_move(ivx_leaf *d, int di, const ivx_leaf *s, int si, int cnt)
{
    if (cnt <= 0) return;
    memmove(&d->start[di], &s->start[si], (size_t)cnt * sizeof(uint64_t));
    memmove(&d->end[di], &s->end[si], (size_t)cnt * sizeof(uint64_t));
    memmove(&d->hd[di], &s->hd[si], (size_t)cnt * sizeof(uint32_t));
    memmove(&d->excl[di], &s->excl[si], (size_t)cnt * sizeof(uint8_t));
}

static void inner_move(ivx_inner *d, int di, const ivx_inner *s, int si, int cnt)
{
    if (cnt <= 0) return;
#define MV(f) memmove(&d->f[di], &s->f[si], (size_t)cnt * sizeof(d->f[0]))
    MV(maxend);
    MV(child);
    MV(kstart);
    MV(khd);
    MV(maxstart);
    MV(gap);
    MV(hasx);
    MV(minx);
    MV(maxsx);
    MV(maxex);
    MV(gapx);
#undef MV
}

/* ---------------------------------------------------------------------------------- */
/* node arena                                                                          */

#ifndef IVX_CHUNK_MIN
#define IVX_CHUNK_MIN ((size_t)4096)
#endif
#ifndef IVX_CHUNK_MAX
#define IVX_CHUNK_MAX ((size_t)2 << 20) /* one x86-64 huge page */
#endif
#ifndef IVX_ALLOC_FAULT /* the fuzz driver injects node allocation failures here */
#define IVX_ALLOC_FAULT() 0
#endif
enum { IVX_KLEAF = 0, IVX_KINNER = 1 };
#define IVX_NODE_BYTES(kind) \
    ((kind) == IVX_KLEAF ? (sizeof(ivx_leaf) + 63) & ~(size_t)63 : (sizeof(ivx_inner) + 63) & ~(size_t)63)

typedef struct ivx_chunk {
    struct ivx_chunk *next;
    size_t size;
} ivx_chunk;
#define IVX_CHUNK_HDR ((size_t)64) /* keeps the nodes 64-byte aligned */

/* AddressSanitizer builds (the fuzz driver) poison free and not yet carved node memory, so
 * a use after free or past a node is still caught inside a chunk. */
#if defined(__SANITIZE_ADDRESS__)
#define IVX_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define IVX_ASAN 1
#endif
#endif
#ifdef IVX_ASAN
#include <sanitizer/asan_interface.h>
#define IVX_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define IVX_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define IVX_POISON(p, n) ((void)(p), (void)(n))
#define IVX_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* Full-size chunks are mapped fresh and marked for huge pages before their first touch:
 * memory recycled by malloc may already be backed by 4 KiB pages (measured: after numpy's
 * temporaries came and went, only ~1/5 of a 1e6 index sat on huge pages).  Sanitizer
 * builds keep malloc so ASan sees every chunk. */
#if defined(__linux__) && defined(MADV_HUGEPAGE) && defined(MAP_ANONYMOUS) && !defined(IVX_ASAN)
#define IVX_MMAP_CHUNKS 1
#endif

static void *chunk_alloc(size_t csz)
{
#ifdef IVX_MMAP_CHUNKS
    if (csz >= IVX_CHUNK_MAX) {
        size_t len = csz + IVX_CHUNK_MAX; /* room to align to a huge page */
        char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return NULL;
        char *a = (char *)(((uintptr_t)p + IVX_CHUNK_MAX - 1) & ~(uintptr_t)(IVX_CHUNK_MAX - 1));
        if (a > p) munmap(p, (size_t)(a - p));
        if (p + len > a + csz) munmap(a + csz, (size_t)(p + len - (a + csz)));
        (void)madvise(a, csz, MADV_HUGEPAGE);
        return a;
    }
#endif
    return aligned_alloc(64, csz);
}

static void chunk_free(void *c, size_t csz)
{
#ifdef IVX_MMAP_CHUNKS
    if (csz >= IVX_CHUNK_MAX) {
        munmap(c, csz);
        return;
    }
#endif
    (void)csz;
    free(c);
}

/* Zeroed node memory, 64-byte aligned, or NULL. */
static void *arena_alloc(ivx_arena *ar, int kind)
{
    size_t sz = IVX_NODE_BYTES(kind);
    void *p = ar->freel[kind];
    if (IVX_ALLOC_FAULT()) return NULL;
    if (p) {
        IVX_UNPOISON(p, sz);
        ar->freel[kind] = *(void **)p;
    } else {
        if ((size_t)(ar->bump_end - ar->bump) < sz) {
            size_t csz = ar->next_size ? ar->next_size : IVX_CHUNK_MIN;
            while (csz - IVX_CHUNK_HDR < sz) csz *= 2;
            ivx_chunk *c = chunk_alloc(csz);
            if (!c) return NULL;
            c->next = ar->chunks;
            c->size = csz;
            ar->chunks = c;
            ar->bump = (char *)c + IVX_CHUNK_HDR;
            ar->bump_end = (char *)c + csz;
            IVX_POISON(ar->bump, csz - IVX_CHUNK_HDR);
            ar->next_size = csz * 2 < IVX_CHUNK_MAX ? csz * 2 : IVX_CHUNK_MAX;
        }
        p = ar->bump;
        ar->bump += sz;
        IVX_UNPOISON(p, sz);
    }
    memset(p, 0, sz);
    return p;
}

static void arena_free(ivx_arena *ar, void *p, int kind)
{
    if (!p) return;
    *(void **)p = ar->freel[kind];
    ar->freel[kind] = p;
    IVX_POISON(p, IVX_NODE_BYTES(kind));
}

static void arena_release(ivx_arena *ar)
{
    ivx_chunk *c = ar->chunks;
    while (c) {
        ivx_chunk *nx = c->next;
        IVX_UNPOISON(c, c->size);
        chunk_free(c, c->size);
        c = nx;
    }
    memset(ar, 0, sizeof(*ar));
}

static ivx_leaf *leaf_new(ivx_arena *ar)
{
    ivx_leaf *l = arena_alloc(ar, IVX_KLEAF);
    if (!l) return NULL;
    l->h.leaf = 1;
    leaf_refresh(l);
    return l;
}

static ivx_inner *inner_new(ivx_arena *ar)
{
    ivx_inner *in = arena_alloc(ar, IVX_KINNER);
    if (!in) return NULL;
    inner_refresh(in);
    return in;
}

static void node_free(ivx_arena *ar, ivx_node *nd)
{
    if (!nd) return;
    if (!nd->leaf) {
        ivx_inner *in = (ivx_inner *)nd;
        for (int k = 0; k < in->h.n; k++) node_free(ar, in->child[k]);
    }
    arena_free(ar, nd, nd->leaf ? IVX_KLEAF : IVX_KINNER);
}

/* ---------------------------------------------------------------------------------- */
/* tree: slots                                                                         */

static void ivx_init(ivx_tree *t)
{
    memset(t, 0, sizeof(*t));
    t->free_head = IVX_NOSLOT;
}

static void ivx_clear(ivx_tree *t)
{
    arena_release(&t->arena);
    free(t->slots);
    ivx_init(t);
}

static int slots_reserve(ivx_tree *t, uint32_t need)
{
    if (need <= t->capslots) return 0;
    uint64_t cap = t->capslots ? t->capslots : 16;
    while (cap < need) cap *= 2;
    if (cap > IVX_MAXSLOTS) cap = IVX_MAXSLOTS;
    if (cap < need) return -1;
    ivx_slot *ns = realloc(t->slots, (size_t)cap * sizeof(ivx_slot));
    if (!ns) return -1;
    t->slots = ns;
    t->capslots = (uint32_t)cap;
    return 0;
}

/* -1: out of memory, -2: handle space exhausted */
static int slot_alloc(ivx_tree *t, uint32_t *h)
{
    if (t->free_head != IVX_NOSLOT) {
        *h = t->free_head;
        t->free_head = t->slots[*h].next_free;
        return 0;
    }
    if (t->nslots >= IVX_MAXSLOTS) return -2;
    if (slots_reserve(t, t->nslots + 1) < 0) return -1;
    *h = t->nslots++;
    return 0;
}

static void slot_release(ivx_tree *t, uint32_t h)
{
    t->slots[h].live = 0;
    t->slots[h].next_free = t->free_head;
    t->free_head = h;
}

static inline int key_lt(uint64_t s1, uint32_t h1, uint64_t s2, uint32_t h2)
{
    return s1 < s2 || (s1 == s2 && h1 < h2);
}

/* Index of the child whose key range holds (s, h): the last child with key <= (s, h). */
static inline int inner_find(const ivx_inner *in, uint64_t s, uint32_t h)
{
    int k = 0;
    for (int i = 1; i < in->h.n; i++) {
        if (key_lt(s, h, in->kstart[i], in->khd[i])) break;
        k = i;
    }
    return k;
}

/* ---------------------------------------------------------------------------------- */
/* insert                                                                              */

/* 0 ok, -1 out of memory, -2 handle space exhausted */
static int ivx_insert(ivx_tree *t, uint64_t s, uint64_t e, int64_t owner, int shared, uint32_t *hout)
{
    ivx_inner *pin[IVX_MAXDEPTH];
    int pk[IVX_MAXDEPTH];
    int d = 0, i, j, rc;
    uint32_t h;
    ivx_leaf *leaf, *lnew = NULL;
    ivx_inner *spare[IVX_MAXDEPTH + 1];
    int nspare = 0, needin = 0;

    rc = slot_alloc(t, &h);
    if (rc < 0) return rc;
    if (!t->root) {
        ivx_leaf *l = leaf_new(&t->arena);
        if (!l) {
            slot_release(t, h);
            return -1;
        }
        t->root = &l->h;
        t->height = 0;
    }

    ivx_node *nd = t->root;
    while (!nd->leaf) {
        ivx_inner *in = (ivx_inner *)nd;
        int k = inner_find(in, s, h);
        pin[d] = in;
        pk[d] = k;
        d++;
        nd = in->child[k];
    }
    leaf = (ivx_leaf *)nd;

    /* Allocate every node a split cascade needs before touching the tree, so an
     * allocation failure leaves it intact. */
    if (leaf->h.n == IVX_LCAP) {
        lnew = leaf_new(&t->arena);
        if (!lnew) goto nomem;
        for (i = d - 1; i >= 0 && pin[i]->h.n == IVX_FAN; i--) needin++;
        if (i < 0) needin++; /* new root */
        for (nspare = 0; nspare < needin; nspare++) {
            spare[nspare] = inner_new(&t->arena);
            if (!spare[nspare]) goto nomem;
        }
    }

    {
        ivx_slot *sl = &t->slots[h];
        sl->start = s;
        sl->end = e;
        sl->owner = owner;
        sl->shared = (uint8_t)(shared != 0);
        sl->live = 1;
        sl->next_free = IVX_NOSLOT;
    }

    /* position among the leaf's entries */
    for (j = 0; j < leaf->h.n && key_lt(leaf->start[j], leaf->hd[j], s, h); j++)
        ;
    ivx_leaf *tgt = leaf;
    if (lnew) {
        int half = IVX_LCAP / 2;
        leaf_move(lnew, 0, leaf, half, IVX_LCAP - half);
        lnew->h.n = IVX_LCAP - half;
        leaf->h.n = half;
        lnew->next = leaf->next;
        leaf->next = lnew;
        if (j > half) {
            tgt = lnew;
            j -= half;
        }
    }
    leaf_move(tgt, j + 1, tgt, j, tgt->h.n - j);
    tgt->start[j] = s;
    tgt->end[j] = e;
    tgt->hd[j] = h;
    tgt->excl[j] = (uint8_t)(shared == 0);
    tgt->h.n++;
    leaf_refresh(leaf);
    if (lnew) leaf_refresh(lnew);

    ivx_node *cur = &leaf->h, *newr = lnew ? &lnew->h : NULL;
    for (i = d - 1; i >= 0; i--) {
        ivx_inner *in = pin[i];
        int k = pk[i];
        ivx_sum sc;
        node_sum(cur, &sc);
        if (!newr) {
            ivx_sum old;
            inner_get(in, k, &old);
            if (sum_eq(&old, &sc)) goto done; /* nothing above can change */
            inner_put(in, k, &sc, cur);
            inner_refresh(in);
            cur = &in->h;
            continue;
        }
        inner_put(in, k, &sc, cur);
        ivx_sum sr;
        node_sum(newr, &sr);
        ivx_inner *dst = in;
        int pos = k + 1;
        ivx_inner *rin = NULL;
        if (in->h.n == IVX_FAN) {
            int half = IVX_FAN / 2;
            rin = spare[--nspare];
            inner_move(rin, 0, in, half, IVX_FAN - half);
            rin->h.n = IVX_FAN - half;
            in->h.n = half;
            if (pos > half) {
                dst = rin;
                pos -= half;
            }
        }
        inner_move(dst, pos + 1, dst, pos, dst->h.n - pos);
        inner_put(dst, pos, &sr, newr);
        dst->h.n++;
        inner_refresh(in);
        if (rin) inner_refresh(rin);
        cur = &in->h;
        newr = rin ? &rin->h : NULL;
    }
    if (newr) {
        ivx_inner *root = spare[--nspare];
        ivx_sum a, b;
        node_sum(cur, &a);
        node_sum(newr, &b);
        inner_put(root, 0, &a, cur);
        inner_put(root, 1, &b, newr);
        root->h.n = 2;
        inner_refresh(root);
        t->root = &root->h;
        t->height++;
    }
done:
    t->n++;
    *hout = h;
    return 0;

nomem:
    while (nspare > 0) arena_free(&t->arena, spare[--nspare], IVX_KINNER);
    arena_free(&t->arena, lnew, IVX_KLEAF);
    slot_release(t, h);
    return -1;
}

/* ---------------------------------------------------------------------------------- */
/* remove                                                                              */

/* 0 removed, 1 no such handle */
static int ivx_remove(ivx_tree *t, uint32_t h)
{
    ivx_inner *pin[IVX_MAXDEPTH];
    int pk[IVX_MAXDEPTH];
    int d = 0, i, j;

    if (h >= t->nslots || !t->slots[h].live) return 1;
    uint64_t s = t->slots[h].start;
    ivx_node *nd = t->root;
    while (!nd->leaf) {
        ivx_inner *in = (ivx_inner *)nd;
        int k = inner_find(in, s, h);
        pin[d] = in;
        pk[d] = k;
        d++;
        nd = in->child[k];
    }
    ivx_leaf *leaf = (ivx_leaf *)nd;
    for (j = 0; j < leaf->h.n && (leaf->start[j] != s || leaf->hd[j] != h); j++)
        ;
    if (j == leaf->h.n) return 1; /* unreachable while the tree is consistent */
    leaf_move(leaf, j, leaf, j + 1, leaf->h.n - j - 1);
    leaf->h.n--;
    leaf_refresh(leaf);
    slot_release(t, h);
    t->n--;

    ivx_node *cur = &leaf->h;
    for (i = d - 1; i >= 0; i--) {
        ivx_inner *in = pin[i];
        int k = pk[i];
        int minfill = cur->leaf ? IVX_LMIN : IVX_FMIN;
        if (cur->n >= minfill) {
            ivx_sum sc, old;
            node_sum(cur, &sc);
            inner_get(in, k, &old);
            if (sum_eq(&old, &sc)) return 0;
            inner_put(in, k, &sc, cur);
            inner_refresh(in);
            cur = &in->h;
            continue;
        }
        /* underflow: borrow from or merge with a sibling (the parent has >= 2 children) */
        int lk = k > 0 ? k - 1 : k, rk = lk + 1;
        ivx_node *L = in->child[lk], *R = in->child[rk];
        int cap = cur->leaf ? IVX_LCAP : IVX_FAN;
        if (L->n + R->n <= cap) {
            if (cur->leaf) {
                ivx_leaf *ll = (ivx_leaf *)L, *rl = (ivx_leaf *)R;
                leaf_move(ll, ll->h.n, rl, 0, rl->h.n);
                ll->h.n += rl->h.n;
                ll->next = rl->next;
                leaf_refresh(ll);
            } else {
                ivx_inner *li = (ivx_inner *)L, *ri = (ivx_inner *)R;
                inner_move(li, li->h.n, ri, 0, ri->h.n);
                li->h.n += ri->h.n;
                inner_refresh(li);
            }
            arena_free(&t->arena, R, R->leaf ? IVX_KLEAF : IVX_KINNER);
            inner_move(in, rk, in, rk + 1, in->h.n - rk - 1);
            in->h.n--;
            ivx_sum sl;
            node_sum(L, &sl);
            inner_put(in, lk, &sl, L);
        } else {
            /* L + R > cap >= 2 * minfill, so the sibling can spare one */
            if (cur->leaf) {
                ivx_leaf *ll = (ivx_leaf *)L, *rl = (ivx_leaf *)R;
                if (cur == R) {
                    leaf_move(rl, 1, rl, 0, rl->h.n);
                    leaf_move(rl, 0, ll, ll->h.n - 1, 1);
                    rl->h.n++;
                    ll->h.n--;
                } else {
                    leaf_move(ll, ll->h.n, rl, 0, 1);
                    leaf_move(rl, 0, rl, 1, rl->h.n - 1);
                    ll->h.n++;
                    rl->h.n--;
                }
                leaf_refresh(ll);
                leaf_refresh(rl);
            } else {
                ivx_inner *li = (ivx_inner *)L, *ri = (ivx_inner *)R;
                if (cur == R) {
                    inner_move(ri, 1, ri, 0, ri->h.n);
                    inner_move(ri, 0, li, li->h.n - 1, 1);
                    ri->h.n++;
                    li->h.n--;
                } else {
                    inner_move(li, li->h.n, ri, 0, 1);
                    inner_move(ri, 0, ri, 1, ri->h.n - 1);
                    li->h.n++;
                    ri->h.n--;
                }
                inner_refresh(li);
                inner_refresh(ri);
            }
            ivx_sum sl, sr;
            node_sum(L, &sl);
            node_sum(R, &sr);
            inner_put(in, lk, &sl, L);
            inner_put(in, rk, &sr, R);
        }
        inner_refresh(in);
        cur = &in->h;
    }
    /* shrink the root */
    while (!t->root->leaf && t->root->n == 1) {
        ivx_node *old = t->root;
        t->root = ((ivx_inner *)old)->child[0];
        t->height--;
        arena_free(&t->arena, old, IVX_KINNER);
    }
    if (t->root->leaf && t->root->n == 0) {
        arena_free(&t->arena, t->root, IVX_KLEAF);
        t->root = NULL;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* bulk build                                                                          */

/* Stable LSD radix sort of (key, handle) pairs by key: handles given ascending come out
 * in (start, handle) order.  Passes whose digit is constant are skipped. */
typedef struct {
    uint64_t key;
    uint32_t h;
} ivx_kh;

static int radix_sort(ivx_kh *a, size_t n)
{
    size_t i;
    int sorted = 1;
    for (i = 1; i < n; i++)
        if (a[i].key < a[i - 1].key) {
            sorted = 0;
            break;
        }
    if (sorted) return 0;
    ivx_kh *tmp = malloc(n * sizeof(ivx_kh));
    size_t *cnt = malloc(65536 * sizeof(size_t));
    if (!tmp || !cnt) {
        free(tmp);
        free(cnt);
        return -1;
    }
    ivx_kh *src = a, *dst = tmp;
    for (int shift = 0; shift < 64; shift += 16) {
        memset(cnt, 0, 65536 * sizeof(size_t));
        for (i = 0; i < n; i++) cnt[(src[i].key >> shift) & 0xffff]++;
        if (cnt[(src[0].key >> shift) & 0xffff] == n) continue;
        size_t sum = 0;
        for (i = 0; i < 65536; i++) {
            size_t c = cnt[i];
            cnt[i] = sum;
            sum += c;
        }
        for (i = 0; i < n; i++) dst[cnt[(src[i].key >> shift) & 0xffff]++] = src[i];
        ivx_kh *sw = src;
        src = dst;
        dst = sw;
    }
    if (src != a) memcpy(a, src, n * sizeof(ivx_kh));
    free(tmp);
    free(cnt);
    return 0;
}

/* Build the tree over the live slots listed in kh (sorted by (start, handle)).  Nodes are
 * filled evenly so every non-root node meets the minimum fill. */
static int ivx_bulk(ivx_tree *t, const ivx_kh *kh, size_t n)
{
    node_free(&t->arena, t->root);
    t->root = NULL;
    t->height = 0;
    t->n = n;
    if (n == 0) return 0;
    size_t nl = (n + IVX_LCAP - 1) / IVX_LCAP, i, pos = 0;
    ivx_node **level = malloc(nl * sizeof(ivx_node *));
    if (!level) return -1;
    ivx_leaf *prev = NULL;
    for (i = 0; i < nl; i++) {
        size_t cnt = n / nl + (i < n % nl ? 1 : 0);
        ivx_leaf *l = leaf_new(&t->arena);
        if (!l) goto fail;
        for (size_t j = 0; j < cnt; j++, pos++) {
            const ivx_slot *sl = &t->slots[kh[pos].h];
            l->start[j] = sl->start;
            l->end[j] = sl->end;
            l->hd[j] = kh[pos].h;
            l->excl[j] = (uint8_t)!sl->shared;
        }
        l->h.n = (int)cnt;
        leaf_refresh(l);
        if (prev) prev->next = l;
        prev = l;
        level[i] = &l->h;
    }
    size_t m = nl;
    int height = 0;
    while (m > 1) {
        size_t np = (m + IVX_FAN - 1) / IVX_FAN, c = 0;
        for (i = 0; i < np; i++) {
            size_t cnt = m / np + (i < m % np ? 1 : 0);
            ivx_inner *in = inner_new(&t->arena);
            if (!in) {
                /* level[i..] are still owned by the level array; level[0..i) by parents */
                for (size_t r = c; r < m; r++) level[i + (r - c)] = level[r];
                m = i + (m - c);
                goto fail_m;
            }
            for (size_t k = 0; k < cnt; k++, c++) {
                ivx_sum sm;
                node_sum(level[c], &sm);
                inner_put(in, (int)k, &sm, level[c]);
            }
            in->h.n = (int)cnt;
            inner_refresh(in);
            level[i] = &in->h;
        }
        m = np;
        height++;
    }
    t->root = level[0];
    t->height = height;
    free(level);
    return 0;
fail:
    m = i;
fail_m:
    for (i = 0; i < m; i++) node_free(&t->arena, level[i]);
    free(level);
    t->n = 0;
    return -1;
}

/* ---------------------------------------------------------------------------------- */
/* queries                                                                             */

/* The per-node scans ("first slot whose max end >= a") come in three builds: portable C,
 * AVX2 (signed 4-lane compares on sign-flipped values) and AVX-512 (one unsigned compare
 * per 8 slots straight into a mask).  The scalar mask is a chain of ~60 instructions per
 * node that the next level's load waits for; at N = 1e6 the AVX-512 form takes a query
 * from ~60 to ~30 ns.  ivx_cpu_init() picks the best the CPU has at load time; ivx_simd
 * can be lowered (tests and the fuzz driver run every level the CPU has). */
enum { IVX_SIMD_NONE = 0, IVX_SIMD_AVX2 = 1, IVX_SIMD_AVX512 = 2 };
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(IVX_NO_SIMD)
#define IVX_HAVE_AVX512 1
#include <immintrin.h>
#define IVX_AVX512 __attribute__((target("avx512f,popcnt,bmi")))
#define IVX_AVX2 __attribute__((target("avx2,popcnt,bmi")))
#else
#define IVX_AVX512
#define IVX_AVX2
#endif
#define IVX_ALWAYS_INLINE inline __attribute__((always_inline))

static int ivx_simd; /* IVX_SIMD_*: the scans in use */

static int ivx_cpu_simd(void)
{
#ifdef IVX_HAVE_AVX512
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return IVX_SIMD_AVX512;
    if (__builtin_cpu_supports("avx2")) return IVX_SIMD_AVX2;
#endif
    return IVX_SIMD_NONE;
}

static void ivx_cpu_init(void)
{
    ivx_simd = ivx_cpu_simd();
}

/* A bit per node slot.  Capacities are build constants (multiples of 8 for the vector
 * scans); masks are 32-bit while they fit. */
#if IVX_CAPMAX < 32
typedef uint32_t ivx_mask;
#define MASK_CTZ(m) __builtin_ctz(m)
#define MASK_POPCOUNT(m) __builtin_popcount(m)
#else
typedef uint64_t ivx_mask;
#define MASK_CTZ(m) __builtin_ctzll(m)
#define MASK_POPCOUNT(m) __builtin_popcountll(m)
#endif
_Static_assert(IVX_CAPMAX < 64, "node masks are at most 64-bit");

/* Bit masks over a node's slots: bit j set when end (max end) >= a, or when start (min
 * start) <= b.  Padding slots hold max end 0; other padding bits are arbitrary. */
static inline ivx_mask leaf_mask_ge_c(const ivx_leaf *l, uint64_t a)
{
    ivx_mask m = 0;
    for (int j = 0; j < IVX_LCAP; j++) m |= (ivx_mask)(l->end[j] >= a) << j;
    return m;
}

static inline ivx_mask leaf_mask_le_c(const ivx_leaf *l, uint64_t b)
{
    ivx_mask m = 0;
    for (int j = 0; j < IVX_LCAP; j++) m |= (ivx_mask)(l->start[j] <= b) << j;
    return m;
}

static inline ivx_mask inner_mask_ge_c(const ivx_inner *in, uint64_t a)
{
    ivx_mask m = 0;
    for (int k = 0; k < IVX_FAN; k++) m |= (ivx_mask)(in->maxend[k] >= a) << k;
    return m;
}

static inline ivx_mask inner_mask_le_c(const ivx_inner *in, uint64_t b)
{
    ivx_mask m = 0;
    for (int k = 0; k < IVX_FAN; k++) m |= (ivx_mask)(in->kstart[k] <= b) << k;
    return m;
}

/* Index of the first slot with value >= a (padding holds 0), or the capacity if none.  A
 * mask and ctz instead of an early-exit loop: no unpredictable branch per slot. */
static inline int leaf_first_ge_c(const ivx_leaf *l, uint64_t a)
{
    ivx_mask m = leaf_mask_ge_c(l, a);
    return m ? MASK_CTZ(m) : IVX_LCAP;
}

static inline int inner_first_ge_c(const ivx_inner *in, uint64_t a)
{
    ivx_mask m = inner_mask_ge_c(in, a);
    return m ? MASK_CTZ(m) : IVX_FAN;
}

#ifdef IVX_HAVE_AVX512
_Static_assert(IVX_LCAP % 8 == 0 && IVX_FAN % 8 == 0, "the AVX-512 scans take whole vectors");
_Static_assert(offsetof(ivx_leaf, end) % 64 == 0 && offsetof(ivx_inner, maxend) % 64 == 0,
               "the AVX-512 scans use aligned loads");

/* n (a multiple of 8) values from v: bit i set when v[i] >= a (or <= b).  For 16 values
 * (the default capacities) the two halves meet in a mask register (kunpckbw), one move
 * to a general register: the descent waits for every instruction of this. */
IVX_AVX512 static inline ivx_mask vmask_ge(const uint64_t *v, int n, uint64_t a)
{
    __m512i va = _mm512_set1_epi64((long long)a);
    if (n == 16) {
        __mmask8 lo = _mm512_cmpge_epu64_mask(_mm512_loadu_si512((const void *)v), va);
        __mmask8 hi = _mm512_cmpge_epu64_mask(_mm512_loadu_si512((const void *)(v + 8)), va);
        return (ivx_mask)_mm512_kunpackb(hi, lo);
    }
    if (n == 32) {
        __mmask16 lo = _mm512_kunpackb(_mm512_cmpge_epu64_mask(_mm512_loadu_si512((const void *)(v + 8)), va),
                                       _mm512_cmpge_epu64_mask(_mm512_loadu_si512((const void *)v), va));
        __mmask16 hi = _mm512_kunpackb(_mm512_cmpge_epu64_mask(_mm512_loadu_si512((const void *)(v + 24)), va),
                                       _mm512_cmpge_epu64_mask(_mm512_loadu_si512((const void *)(v + 16)), va));
        return (ivx_mask)_cvtmask16_u32(hi) << 16 | _cvtmask16_u32(lo);
    }
    ivx_mask m = 0;
    for (int i = 0; i < n / 8; i++)
        m |= (ivx_mask)_mm512_cmpge_epu64_mask(_mm512_loadu_si512((const void *)(v + 8 * i)), va) << (8 * i);
    return m;
}

IVX_AVX512 static inline ivx_mask vmask_le(const uint64_t *v, int n, uint64_t b)
{
    __m512i vb = _mm512_set1_epi64((long long)b);
    if (n == 16) {
        __mmask8 lo = _mm512_cmple_epu64_mask(_mm512_loadu_si512((const void *)v), vb);
        __mmask8 hi = _mm512_cmple_epu64_mask(_mm512_loadu_si512((const void *)(v + 8)), vb);
        return (ivx_mask)_mm512_kunpackb(hi, lo);
    }
    if (n == 32) {
        __mmask16 lo = _mm512_kunpackb(_mm512_cmple_epu64_mask(_mm512_loadu_si512((const void *)(v + 8)), vb),
                                       _mm512_cmple_epu64_mask(_mm512_loadu_si512((const void *)v), vb));
        __mmask16 hi = _mm512_kunpackb(_mm512_cmple_epu64_mask(_mm512_loadu_si512((const void *)(v + 24)), vb),
                                       _mm512_cmple_epu64_mask(_mm512_loadu_si512((const void *)(v + 16)), vb));
        return (ivx_mask)_cvtmask16_u32(hi) << 16 | _cvtmask16_u32(lo);
    }
    ivx_mask m = 0;
    for (int i = 0; i < n / 8; i++)
        m |= (ivx_mask)_mm512_cmple_epu64_mask(_mm512_loadu_si512((const void *)(v + 8 * i)), vb) << (8 * i);
    return m;
}

IVX_AVX512 static inline int leaf_first_ge_v(const ivx_leaf *l, uint64_t a)
{
    ivx_mask m = vmask_ge(l->end, IVX_LCAP, a);
    return m ? MASK_CTZ(m) : IVX_LCAP;
}

IVX_AVX512 static inline int inner_first_ge_v(const ivx_inner *in, uint64_t a)
{
    ivx_mask m = vmask_ge(in->maxend, IVX_FAN, a);
    return m ? MASK_CTZ(m) : IVX_FAN;
}

#define INNER_MASK_GE_V(in, a) vmask_ge((in)->maxend, IVX_FAN, a)

/* AVX2 has only signed 64-bit compares: flip the sign bits of both sides */
IVX_AVX2 static inline ivx_mask vmask2_ge(const uint64_t *v, int n, uint64_t a)
{
    const __m256i sign = _mm256_set1_epi64x(INT64_MIN);
    __m256i va = _mm256_xor_si256(_mm256_set1_epi64x((long long)a), sign);
    ivx_mask m = 0;
    for (int i = 0; i < n / 4; i++) {
        __m256i x = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)(v + 4 * i)), sign);
        unsigned lt = (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(va, x)));
        m |= (ivx_mask)(~lt & 15u) << (4 * i);
    }
    return m;
}

IVX_AVX2 static inline ivx_mask vmask2_le(const uint64_t *v, int n, uint64_t b)
{
    const __m256i sign = _mm256_set1_epi64x(INT64_MIN);
    __m256i vb = _mm256_xor_si256(_mm256_set1_epi64x((long long)b), sign);
    ivx_mask m = 0;
    for (int i = 0; i < n / 4; i++) {
        __m256i x = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)(v + 4 * i)), sign);
        unsigned gt = (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(x, vb)));
        m |= (ivx_mask)(~gt & 15u) << (4 * i);
    }
    return m;
}

#define FIRST_OF(m, cap) ((m) ? (int)MASK_CTZ(m) : (cap))
/* vec: the IVX_SIMD_* level, a constant in each instantiation of the templates below */
#define LEAF_FIRST_GE(l, a, vec)                                                               \
    ((vec) == IVX_SIMD_AVX512 ? leaf_first_ge_v(l, a)                                          \
     : (vec) == IVX_SIMD_AVX2 ? FIRST_OF(vmask2_ge((l)->end, IVX_LCAP, a), IVX_LCAP)            \
                              : leaf_first_ge_c(l, a))
#define INNER_FIRST_GE(in, a, vec)                                                             \
    ((vec) == IVX_SIMD_AVX512 ? inner_first_ge_v(in, a)                                        \
     : (vec) == IVX_SIMD_AVX2 ? FIRST_OF(vmask2_ge((in)->maxend, IVX_FAN, a), IVX_FAN)          \
                              : inner_first_ge_c(in, a))
#define LEAF_MASK_GE(l, a, vec)                                                                \
    ((vec) == IVX_SIMD_AVX512 ? vmask_ge((l)->end, IVX_LCAP, a)                                \
     : (vec) == IVX_SIMD_AVX2 ? vmask2_ge((l)->end, IVX_LCAP, a)                               \
                              : leaf_mask_ge_c(l, a))
#define LEAF_MASK_LE(l, b, vec)                                                                \
    ((vec) == IVX_SIMD_AVX512 ? vmask_le((l)->start, IVX_LCAP, b)                              \
     : (vec) == IVX_SIMD_AVX2 ? vmask2_le((l)->start, IVX_LCAP, b)                             \
                              : leaf_mask_le_c(l, b))
#define INNER_MASK_GE(in, a, vec)                                                              \
    ((vec) == IVX_SIMD_AVX512 ? INNER_MASK_GE_V(in, a)                                         \
     : (vec) == IVX_SIMD_AVX2 ? vmask2_ge((in)->maxend, IVX_FAN, a)                            \
                              : inner_mask_ge_c(in, a))
#define INNER_MASK_LE(in, b, vec)                                                              \
    ((vec) == IVX_SIMD_AVX512 ? vmask_le((in)->kstart, IVX_FAN, b)                             \
     : (vec) == IVX_SIMD_AVX2 ? vmask2_le((in)->kstart, IVX_FAN, b)                            \
                              : inner_mask_le_c(in, b))
#else
#define LEAF_FIRST_GE(l, a, vec) ((void)(vec), leaf_first_ge_c(l, a))
#define INNER_FIRST_GE(in, a, vec) ((void)(vec), inner_first_ge_c(in, a))
#define LEAF_MASK_GE(l, a, vec) ((void)(vec), leaf_mask_ge_c(l, a))
#define LEAF_MASK_LE(l, b, vec) ((void)(vec), leaf_mask_le_c(l, b))
#define INNER_MASK_GE(in, a, vec) ((void)(vec), inner_mask_ge_c(in, a))
#define INNER_MASK_LE(in, b, vec) ((void)(vec), inner_mask_le_c(in, b))
#endif

/* Handle of the lowest (start, handle) range overlapping [a, b], or -1: the first range in
 * key order whose end >= a, provided it starts <= b (every later one starts later).
 * Padding slots hold max end 0, which only a == 0 matches, and then slot 0 matches first:
 * the first match is always a real slot, so the descent reads neither n nor the leaf flag
 * (the node header's own cache line).  Only the root can have no match. */
static IVX_ALWAYS_INLINE int64_t first_tpl(const ivx_tree *t, uint64_t a, uint64_t b, const int vec)
{
    const ivx_node *nd = t->root;
    if (!nd) return -1;
    for (int d = t->height; d > 0; d--) {
        const ivx_inner *in = (const ivx_inner *)nd;
        int k = INNER_FIRST_GE(in, a, vec);
        if (k >= IVX_FAN) return -1;
        nd = in->child[k];
    }
    const ivx_leaf *l = (const ivx_leaf *)nd;
    /* start[j] and hd[j] are needed once j is known: fetch their lines alongside end[] */
    for (int i = 0; i < IVX_LCAP; i += 8) __builtin_prefetch(&l->start[i]);
    for (int i = 0; i < IVX_LCAP; i += 16) __builtin_prefetch(&l->hd[i]);
    int j = LEAF_FIRST_GE(l, a, vec);
    if (j >= IVX_LCAP) return -1;
    return l->start[j] <= b ? (int64_t)l->hd[j] : -1;
}

static int64_t ivx_first_c(const ivx_tree *t, uint64_t a, uint64_t b)
{
    return first_tpl(t, a, b, 0);
}

#ifdef IVX_HAVE_AVX512
IVX_AVX2 static int64_t ivx_first_a2(const ivx_tree *t, uint64_t a, uint64_t b)
{
    return first_tpl(t, a, b, IVX_SIMD_AVX2);
}

IVX_AVX512 static int64_t ivx_first_v(const ivx_tree *t, uint64_t a, uint64_t b)
{
    return first_tpl(t, a, b, IVX_SIMD_AVX512);
}
#define IVX_DISPATCH(fc, fa2, fv) \
    (ivx_simd == IVX_SIMD_AVX512 ? (fv) : ivx_simd == IVX_SIMD_AVX2 ? (fa2) : (fc))
#else
#define IVX_DISPATCH(fc, fa2, fv) (fc)
#endif

static inline int64_t ivx_first(const ivx_tree *t, uint64_t a, uint64_t b)
{
    return IVX_DISPATCH(ivx_first_c(t, a, b), ivx_first_a2(t, a, b), ivx_first_v(t, a, b));
}

/* Same over exclusive ranges only (the share rule for a shared request). */
static int64_t ivx_first_x(const ivx_tree *t, uint64_t a, uint64_t b)
{
    const ivx_node *nd = t->root;
    if (!nd) return -1;
    while (!nd->leaf) {
        const ivx_inner *in = (const ivx_inner *)nd;
        int k;
        for (k = 0; k < in->h.n; k++)
            if (in->hasx[k] && in->maxex[k] >= a) break;
        if (k == in->h.n) return -1;
        if (in->minx[k] > b) return -1;
        nd = in->child[k];
    }
    const ivx_leaf *l = (const ivx_leaf *)nd;
    for (int j = 0; j < l->h.n; j++)
        if (l->excl[j] && l->end[j] >= a) return l->start[j] <= b ? (int64_t)l->hd[j] : -1;
    return -1;
}

enum { W_COUNT, W_COLLECT, W_FIRST_NOT_OWNER };

typedef struct {
    uint64_t a, b;
    int x, mode;
    int64_t owner;
    const ivx_slot *slots;
    size_t count;
    uint32_t *buf; /* W_COLLECT: the caller's buffer of cap handles, or (heap) a malloc'd one */
    size_t cap;
    int heap;
    int64_t found;
    int oom;
} ivx_walk;

static int walk_emit(ivx_walk *w, uint32_t h)
{
    switch (w->mode) {
    case W_COUNT:
        w->count++;
        return 0;
    case W_COLLECT:
        if (w->count == w->cap) {
            size_t nc = w->cap ? w->cap * 2 : 64;
            uint32_t *nb = w->heap ? realloc(w->buf, nc * sizeof(uint32_t)) : malloc(nc * sizeof(uint32_t));
            if (!nb) {
                w->oom = 1;
                return 1;
            }
            if (!w->heap && w->count) memcpy(nb, w->buf, w->count * sizeof(uint32_t));
            w->buf = nb;
            w->cap = nc;
            w->heap = 1;
        }
        w->buf[w->count++] = h;
        return 0;
    default:
        if (w->slots[h].owner != w->owner) {
            w->found = h;
            return 1;
        }
        return 0;
    }
}

/* In-order walk of the ranges overlapping [a, b]; returns 1 to stop. */
static int walk_c(const ivx_node *nd, ivx_walk *w);
#ifdef IVX_HAVE_AVX512
IVX_AVX2 static int walk_a2(const ivx_node *nd, ivx_walk *w);
IVX_AVX512 static int walk_v(const ivx_node *nd, ivx_walk *w);
#define WALK(nd, w, vec) \
    ((vec) == IVX_SIMD_AVX512 ? walk_v(nd, w) : (vec) == IVX_SIMD_AVX2 ? walk_a2(nd, w) : walk_c(nd, w))
#else
#define WALK(nd, w, vec) walk_c(nd, w)
#endif

/* Per node: le = slots whose (min) start <= b, a prefix of the node; ge = slots whose (max)
 * end >= a.  Visit le & ge in order; once a slot starts after b, so does everything later
 * in key order, and the walk stops. */
static IVX_ALWAYS_INLINE int walk_tpl(const ivx_node *nd, ivx_walk *w, const int vec)
{
    ivx_mask full = ((ivx_mask)1 << nd->n) - 1;
    if (nd->leaf) {
        const ivx_leaf *l = (const ivx_leaf *)nd;
        if (w->x) {
            for (int j = 0; j < l->h.n; j++) {
                if (l->start[j] > w->b) return 1;
                if (l->end[j] >= w->a && l->excl[j] && walk_emit(w, l->hd[j])) return 1;
            }
            return 0;
        }
        ivx_mask le = LEAF_MASK_LE(l, w->b, vec) & full, m = le & LEAF_MASK_GE(l, w->a, vec);
        if (w->mode == W_COUNT) {
            w->count += (size_t)MASK_POPCOUNT(m);
        } else {
            for (; m; m &= m - 1)
                if (walk_emit(w, l->hd[MASK_CTZ(m)])) return 1;
        }
        return le != full;
    }
    const ivx_inner *in = (const ivx_inner *)nd;
    if (w->x) {
        for (int k = 0; k < in->h.n; k++) {
            if (in->kstart[k] > w->b) return 1;
            if (in->hasx[k] && in->maxex[k] >= w->a && WALK(in->child[k], w, vec)) return 1;
        }
        return 0;
    }
    ivx_mask le = INNER_MASK_LE(in, w->b, vec) & full, m = le & INNER_MASK_GE(in, w->a, vec);
    for (; m; m &= m - 1)
        if (WALK(in->child[MASK_CTZ(m)], w, vec)) return 1;
    return le != full;
}

static int walk_c(const ivx_node *nd, ivx_walk *w)
{
    return walk_tpl(nd, w, 0);
}

#ifdef IVX_HAVE_AVX512
IVX_AVX2 static int walk_a2(const ivx_node *nd, ivx_walk *w)
{
    return walk_tpl(nd, w, IVX_SIMD_AVX2);
}

IVX_AVX512 static int walk_v(const ivx_node *nd, ivx_walk *w)
{
    return walk_tpl(nd, w, IVX_SIMD_AVX512);
}
#endif

static void ivx_walk_run(const ivx_tree *t, ivx_walk *w)
{
    if (t->root) IVX_DISPATCH(walk_c(t->root, w), walk_a2(t->root, w), walk_v(t->root, w));
}

/* ---------------------------------------------------------------------------------- */
/* aligned free-gap search                                                             */

typedef struct {
    uint64_t len, align, lo, hi;
    int x;
} ivx_gq;

enum { G_CONT = 0, G_FOUND = 1, G_STOP = 2 };

/* lowest aligned s with [s, s+len-1] inside free [a, b] and [lo, hi] */
static int fit_low(const ivx_gq *q, uint64_t a, uint64_t b, uint64_t *out)
{
    if (a < q->lo) a = q->lo;
    if (b > q->hi) b = q->hi;
    if (a > b) return 0;
    uint64_t s = a, r = a % q->align;
    if (r) {
        uint64_t add = q->align - r;
        if (s > UINT64_MAX - add) return 0;
        s += add;
    }
    if (s > b || b - s < q->len - 1) return 0;
    *out = s;
    return 1;
}

static int fit_high(const ivx_gq *q, uint64_t a, uint64_t b, uint64_t *out)
{
    if (a < q->lo) a = q->lo;
    if (b > q->hi) b = q->hi;
    if (a > b || b - a < q->len - 1) return 0;
    uint64_t top = b - (q->len - 1);
    uint64_t s = top - top % q->align;
    if (s < a) return 0;
    *out = s;
    return 1;
}

/* A node's items in key order as seen by the search view: children (inner) or single
 * ranges (leaf), each with min start, max start, max end and internal-gap bound. */
typedef struct {
    int m;
    uint64_t mins[IVX_CAPMAX], maxs[IVX_CAPMAX], me[IVX_CAPMAX], g[IVX_CAPMAX];
    const ivx_node *ch[IVX_CAPMAX];
} ivx_items;

static void node_items(const ivx_node *nd, int x, ivx_items *it)
{
    int m = 0;
    if (nd->leaf) {
        const ivx_leaf *l = (const ivx_leaf *)nd;
        for (int j = 0; j < l->h.n; j++) {
            if (x && !l->excl[j]) continue;
            it->mins[m] = it->maxs[m] = l->start[j];
            it->me[m] = l->end[j];
            it->g[m] = 0;
            it->ch[m] = NULL;
            m++;
        }
    } else {
        const ivx_inner *in = (const ivx_inner *)nd;
        for (int k = 0; k < in->h.n; k++) {
            if (x) {
                if (!in->hasx[k]) continue;
                it->mins[m] = in->minx[k];
                it->maxs[m] = in->maxsx[k];
                it->me[m] = in->maxex[k];
                it->g[m] = in->gapx[k];
            } else {
                it->mins[m] = in->kstart[k];
                it->maxs[m] = in->maxstart[k];
                it->me[m] = in->maxend[k];
                it->g[m] = in->gap[k];
            }
            it->ch[m] = in->child[k];
            m++;
        }
    }
    it->m = m;
}

/* Left to right; *nf is the lowest address not known to be covered (starts at lo and
 * stays <= hi while the search continues). */
static int gap_low(const ivx_node *nd, const ivx_gq *q, uint64_t *nf, uint64_t *out)
{
    ivx_items it;
    node_items(nd, q->x, &it);
    for (int i = 0; i < it.m; i++) {
        if (it.mins[i] > *nf) {
            if (fit_low(q, *nf, it.mins[i] - 1, out)) return G_FOUND;
            if (it.mins[i] > q->hi) return G_STOP;
        }
        if (it.me[i] < *nf) continue;
        if (it.ch[i] && it.g[i] >= q->len && it.maxs[i] > *nf) {
            uint64_t top = it.maxs[i] - 1;
            if (top > q->hi) top = q->hi;
            if (top >= *nf && top - *nf >= q->len - 1) {
                int r = gap_low(it.ch[i], q, nf, out);
                if (r != G_CONT) return r;
                continue;
            }
        }
        if (it.me[i] >= q->hi) return G_STOP;
        *nf = it.me[i] + 1;
    }
    return G_CONT;
}

/* Right to left over the gaps strictly inside the subtree (after its first item, before
 * the end of its last); nf_in is the next free address given everything before it. */
static int gap_high(const ivx_node *nd, const ivx_gq *q, uint64_t nf_in, uint64_t *out)
{
    ivx_items it;
    uint64_t pre[IVX_CAPMAX + 1];
    node_items(nd, q->x, &it);
    int last = it.m - 1;
    pre[0] = nf_in;
    for (int i = 0; i < it.m; i++) {
        if (it.me[i] == UINT64_MAX) { /* nothing after this item is free */
            last = i;
            break;
        }
        pre[i + 1] = pre[i] > it.me[i] + 1 ? pre[i] : it.me[i] + 1;
    }
    for (int i = last; i >= 0; i--) {
        if (i < last && it.mins[i + 1] > pre[i + 1] &&
            fit_high(q, pre[i + 1], it.mins[i + 1] - 1, out))
            return G_FOUND;
        if (it.maxs[i] <= q->lo) return G_STOP;
        if (it.ch[i] && it.g[i] >= q->len && it.mins[i] != UINT64_MAX) {
            uint64_t low = pre[i];
            if (low < q->lo) low = q->lo;
            if (low < it.mins[i] + 1) low = it.mins[i] + 1;
            uint64_t top = it.maxs[i] - 1;
            if (top > q->hi) top = q->hi;
            if (top >= low && top - low >= q->len - 1) {
                int r = gap_high(it.ch[i], q, pre[i], out);
                if (r != G_CONT) return r;
            }
        }
    }
    return G_CONT;
}

/* 1 found (*out), 0 none */
static int ivx_gap(const ivx_tree *t, const ivx_gq *q, int highest, uint64_t *out)
{
    if (q->hi < q->lo || q->hi - q->lo < q->len - 1) return 0;
    ivx_sum rs;
    int empty = 1;
    if (t->root) {
        node_sum(t->root, &rs);
        empty = q->x ? !rs.hasx : 0;
    }
    if (empty) return highest ? fit_high(q, 0, UINT64_MAX, out) : fit_low(q, 0, UINT64_MAX, out);
    if (!highest) {
        uint64_t nf = q->lo;
        int r = gap_low(t->root, q, &nf, out);
        if (r == G_FOUND) return 1;
        if (r == G_STOP) return 0;
        return fit_low(q, nf, UINT64_MAX, out);
    }
    uint64_t me = q->x ? rs.maxex : rs.maxend, mins = q->x ? rs.minx : rs.kstart;
    if (me != UINT64_MAX && fit_high(q, me + 1, UINT64_MAX, out)) return 1;
    int r = gap_high(t->root, q, 0, out);
    if (r == G_FOUND) return 1;
    if (r == G_STOP) return 0;
    return mins > 0 && fit_high(q, 0, mins - 1, out);
}

/* ---------------------------------------------------------------------------------- */
/* consistency check (tests and fuzzing)                                               */

static const char *check_node(const ivx_tree *t, const ivx_node *nd, int depth, int *leafdepth,
                              int isroot, const ivx_leaf **prevleaf, size_t *count,
                              uint64_t *ps, uint32_t *ph, int *haveprev)
{
    if (nd->leaf) {
        const ivx_leaf *l = (const ivx_leaf *)nd;
        if (*leafdepth < 0) *leafdepth = depth;
        if (*leafdepth != depth) return "leaves at different depths";
        if (l->h.n < 1 || l->h.n > IVX_LCAP) return "leaf count out of range";
        if (!isroot && l->h.n < IVX_LMIN) return "leaf underfull";
        if (*prevleaf && (*prevleaf)->next != l) return "leaf chain broken";
        *prevleaf = l;
        for (int j = 0; j < IVX_LCAP; j++) {
            if (j < l->h.n) {
                const ivx_slot *sl;
                if (l->hd[j] >= t->nslots) return "leaf handle out of range";
                sl = &t->slots[l->hd[j]];
                if (!sl->live) return "leaf holds a free handle";
                if (sl->start != l->start[j] || sl->end != l->end[j] || sl->shared == l->excl[j])
                    return "leaf entry disagrees with its slot";
                if (l->start[j] > l->end[j]) return "start > end";
                if (*haveprev && !key_lt(*ps, *ph, l->start[j], l->hd[j])) return "keys out of order";
                *haveprev = 1;
                *ps = l->start[j];
                *ph = l->hd[j];
                (*count)++;
            } else if (l->end[j] != 0) {
                return "leaf padding wrong";
            }
        }
        return NULL;
    }
    const ivx_inner *in = (const ivx_inner *)nd;
    if (in->h.n < (isroot ? 2 : IVX_FMIN) || in->h.n > IVX_FAN) return "inner count out of range";
    for (int k = 0; k < IVX_FAN; k++) {
        if (k < in->h.n) {
            ivx_sum want, have;
            const char *e = check_node(t, in->child[k], depth + 1, leafdepth, 0, prevleaf, count,
                                       ps, ph, haveprev);
            if (e) return e;
            node_sum(in->child[k], &want);
            inner_get(in, k, &have);
            if (!sum_eq(&want, &have)) return "stale child summary";
        } else if (in->maxend[k] != 0 || in->child[k]) {
            return "inner padding wrong";
        }
    }
    return NULL;
}

static const char *ivx_check(const ivx_tree *t)
{
    size_t count = 0, live = 0, nfree = 0;
    int leafdepth = -1, haveprev = 0;
    const ivx_leaf *prevleaf = NULL;
    uint64_t ps = 0;
    uint32_t ph = 0;
    if (t->root) {
        const char *e = check_node(t, t->root, 0, &leafdepth, 1, &prevleaf, &count, &ps, &ph, &haveprev);
        if (e) return e;
        if (prevleaf->next) return "last leaf has a successor";
        if (leafdepth != t->height) return "height wrong";
    }
    if (count != t->n) return "count mismatch";
    for (uint32_t h = 0; h < t->nslots; h++) live += t->slots[h].live;
    if (live != t->n) return "live slot count mismatch";
    for (uint32_t h = t->free_head; h != IVX_NOSLOT; h = t->slots[h].next_free) {
        if (h >= t->nslots || t->slots[h].live) return "free list corrupt";
        if (++nfree > t->nslots) return "free list cycle";
    }
    if (nfree + live != t->nslots) return "free list incomplete";
    return NULL;
}

#ifndef IVX_NO_PYTHON
/* ================================================================================== */
/* Python binding                                                                      */

typedef struct {
    PyObject_HEAD
    ivx_tree t;
    uint64_t version; /* bumped by every mutation; iterators check it */
} IndexObject;

typedef struct {
    PyObject_HEAD
    IndexObject *idx;
    const ivx_leaf *leaf;
    int pos;
    uint64_t version;
} IterObject;

typedef struct {
    PyTypeObject *index_type;
    PyTypeObject *iter_type;
    PyTypeObject *range_type;
    PyObject *array_ctor; /* array.array */
} module_state;

static module_state g_state; /* single-phase init: one copy per process */

static PyStructSequence_Field range_fields[] = {
    {"start", "first address (inclusive)"},
    {"end", "last address (inclusive)"},
    {"owner", "owner id (signed 64-bit)"},
    {"shared", "True if the range may be shared"},
    {"handle", "handle returned by insert"},
    {NULL, NULL},
};

static PyStructSequence_Desc range_desc = {
    "harness._intervals.Range",
    "A stored range: (start, end, owner, shared, handle), closed [start, end].",
    range_fields,
    5,
};

/* ---- argument helpers ---- */

/* PyErr_Format knows no %llx; addresses read best in hex */
static void set_error(PyObject *exc, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    PyErr_SetString(exc, buf);
}

static int parse_kw(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                    const char *const *names, int npos, int nreq, PyObject **out)
{
    int nnames = 0;
    while (names[nnames]) nnames++;
    for (int i = 0; i < nnames; i++) out[i] = NULL;
    if (nargs > npos) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d positional arguments (%zd given)", fname,
                     npos, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) out[i] = args[i];
    if (kwnames) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t i = 0; i < nkw; i++) {
            PyObject *kn = PyTuple_GET_ITEM(kwnames, i);
            int k;
            for (k = 0; k < nnames; k++)
                if (PyUnicode_CompareWithASCIIString(kn, names[k]) == 0) break;
            if (k == nnames) {
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname, kn);
                return -1;
            }
            if (out[k]) {
                PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname,
                             names[k]);
                return -1;
            }
            out[k] = args[nargs + i];
        }
    }
    for (int i = 0; i < nreq; i++)
        if (!out[i]) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname, names[i]);
            return -1;
        }
    return 0;
}

/* Exact ints of up to three 30-bit digits read straight from the object on CPython 3.11
 * (its layout is fixed per version): no call into the runtime on the query path. */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000 && PyLong_SHIFT == 30 && \
    !defined(Py_LIMITED_API)
#define IVX_FAST_INT 1
#endif

static int u64_arg_slow(PyObject *o, const char *name, uint64_t *out);

static inline int u64_arg(PyObject *o, const char *name, uint64_t *out)
{
#ifdef IVX_FAST_INT
    if (PyLong_CheckExact(o)) {
        const digit *d = ((PyLongObject *)o)->ob_digit;
        switch (Py_SIZE(o)) {
        case 0:
            *out = 0;
            return 0;
        case 1:
            *out = d[0];
            return 0;
        case 2:
            *out = (uint64_t)d[0] | (uint64_t)d[1] << 30;
            return 0;
        case 3:
            if (d[2] < 16) {
                *out = (uint64_t)d[0] | (uint64_t)d[1] << 30 | (uint64_t)d[2] << 60;
                return 0;
            }
            break;
        default:
            break;
        }
    }
#endif
    return u64_arg_slow(o, name, out);
}

static int u64_arg_slow(PyObject *o, const char *name, uint64_t *out)
{
    PyObject *num;
    if (PyLong_CheckExact(o)) {
        num = o;
        Py_INCREF(num);
    } else {
        num = PyNumber_Index(o);
        if (!num) {
            PyErr_Format(PyExc_TypeError, "%s must be an integer, not %.100s", name, Py_TYPE(o)->tp_name);
            return -1;
        }
    }
#if ULONG_MAX == UINT64_MAX
    unsigned long v = PyLong_AsUnsignedLong(num);
    int bad = v == (unsigned long)-1 && PyErr_Occurred();
#else
    unsigned long long v = PyLong_AsUnsignedLongLong(num);
    int bad = v == (unsigned long long)-1 && PyErr_Occurred();
#endif
    if (bad) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_OverflowError, "%s must be in 0..2**64-1, got %R", name, num);
        }
        Py_DECREF(num);
        return -1;
    }
    Py_DECREF(num);
    *out = (uint64_t)v;
    return 0;
}

static int i64_arg(PyObject *o, const char *name, int64_t *out)
{
    PyObject *num = PyNumber_Index(o);
    if (!num) {
        PyErr_Format(PyExc_TypeError, "%s must be an integer, not %.100s", name, Py_TYPE(o)->tp_name);
        return -1;
    }
    long long v = PyLong_AsLongLong(num);
    if (v == -1 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_OverflowError, "%s must be in -2**63..2**63-1, got %R", name, num);
        }
        Py_DECREF(num);
        return -1;
    }
    Py_DECREF(num);
    *out = (int64_t)v;
    return 0;
}

static int range_args(PyObject *so, PyObject *eo, uint64_t *s, uint64_t *e)
{
    if (u64_arg(so, "start", s) < 0 || u64_arg(eo, "end", e) < 0) return -1;
    if (*s > *e) {
        set_error(PyExc_ValueError,
                     "empty range: start 0x%llx > end 0x%llx (ranges are closed [start, end])",
                     (unsigned long long)*s, (unsigned long long)*e);
        return -1;
    }
    return 0;
}

static int handle_arg(PyObject *o, uint32_t *h)
{
    uint64_t v;
    if (u64_arg(o, "handle", &v) < 0) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            PyErr_SetObject(PyExc_KeyError, o);
        }
        return -1;
    }
    *h = v > IVX_MAXSLOTS ? IVX_NOSLOT : (uint32_t)v;
    return 0;
}

/* Handle ints below IVX_HANDLE_CACHE are made once per process and shared, like CPython's
 * own small ints: most indexes in the harness are small, and an overlaps() list of them
 * then costs no allocation per element. */
#define IVX_HANDLE_CACHE 1024
static PyObject *handle_ints[IVX_HANDLE_CACHE];

static inline PyObject *handle_int(uint32_t h)
{
    if (h < IVX_HANDLE_CACHE) {
        PyObject *o = handle_ints[h];
        if (!o) {
            o = PyLong_FromUnsignedLong(h);
            if (!o) return NULL;
            handle_ints[h] = o; /* the cache's own reference, never dropped */
        }
        return Py_NewRef(o);
    }
    return PyLong_FromUnsignedLong(h);
}

static PyObject *make_range(IndexObject *self, uint32_t h)
{
    const ivx_slot *sl = &self->t.slots[h];
    PyObject *r = PyStructSequence_New(g_state.range_type);
    if (!r) return NULL;
    PyObject *v0 = PyLong_FromUnsignedLongLong(sl->start), *v1 = PyLong_FromUnsignedLongLong(sl->end),
             *v2 = PyLong_FromLongLong(sl->owner), *v4 = PyLong_FromUnsignedLong(h);
    if (!v0 || !v1 || !v2 || !v4) {
        Py_XDECREF(v0);
        Py_XDECREF(v1);
        Py_XDECREF(v2);
        Py_XDECREF(v4);
        Py_DECREF(r);
        return NULL;
    }
    PyStructSequence_SET_ITEM(r, 0, v0);
    PyStructSequence_SET_ITEM(r, 1, v1);
    PyStructSequence_SET_ITEM(r, 2, v2);
    PyStructSequence_SET_ITEM(r, 3, Py_NewRef(sl->shared ? Py_True : Py_False));
    PyStructSequence_SET_ITEM(r, 4, v4);
    return r;
}

/* ---- buffers ---- */

enum { BUF_U64, BUF_I64, BUF_BOOL };

/* A contiguous 1-D buffer of 8-byte integers (or bytes for BUF_BOOL).  Objects without
 * the buffer protocol (lists, ranges...) go through array.array first. */
typedef struct {
    Py_buffer view;
    PyObject *tmp;
    const void *ptr;
    Py_ssize_t n;
    int is_signed;
    int ok;
} ivx_buf;

static void buf_release(ivx_buf *b)
{
    if (b->ok) PyBuffer_Release(&b->view);
    Py_XDECREF(b->tmp);
    b->ok = 0;
    b->tmp = NULL;
}

static char fmt_char(const char *f)
{
    if (!f) return 'B';
    if (*f == '@' || *f == '=' || *f == '<') {
        /* '<' and '=' are only native on little-endian hosts */
#if PY_BIG_ENDIAN
        if (*f == '<') return 0;
#endif
        f++;
    }
    return f[0] && !f[1] ? f[0] : 0;
}

static int buf_get(PyObject *o, int kind, const char *name, ivx_buf *b, int writable)
{
    memset(b, 0, sizeof(*b));
    PyObject *src = o;
    if (!PyObject_CheckBuffer(o)) {
        if (writable) {
            PyErr_Format(PyExc_TypeError, "%s must be a writable int64 buffer", name);
            return -1;
        }
        b->tmp = PyObject_CallFunction(g_state.array_ctor, "sO",
                                       kind == BUF_U64 ? "Q" : kind == BUF_I64 ? "q" : "B", o);
        if (!b->tmp) return -1;
        src = b->tmp;
    }
    if (PyObject_GetBuffer(src, &b->view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0) {
        buf_release(b);
        return -1;
    }
    b->ok = 1;
    char c = fmt_char(b->view.format);
    int good;
    if (kind == BUF_BOOL) {
        good = b->view.itemsize == 1 && (c == '?' || c == 'B' || c == 'b' || c == 'c');
    } else {
        good = b->view.itemsize == 8 && (c == 'Q' || c == 'L' || c == 'q' || c == 'l' || c == 'K' || c == 'N' || c == 'n');
        b->is_signed = c == 'q' || c == 'l' || c == 'n';
        if (kind == BUF_I64 && !b->is_signed) good = 0;
        if (writable && !b->is_signed) good = 0;
    }
    if (!good) {
        PyErr_Format(PyExc_TypeError, "%s: expected a contiguous buffer of %s, got format '%s' itemsize %zd",
                     name,
                     kind == BUF_BOOL ? "bool/uint8" : kind == BUF_I64 || writable ? "int64" : "uint64 (or non-negative int64)",
                     b->view.format ? b->view.format : "B", b->view.itemsize);
        buf_release(b);
        return -1;
    }
    b->ptr = b->view.buf;
    b->n = b->view.len / b->view.itemsize;
    if (kind == BUF_U64 && b->is_signed) {
        const int64_t *p = b->ptr;
        for (Py_ssize_t i = 0; i < b->n; i++)
            if (p[i] < 0) {
                PyErr_Format(PyExc_OverflowError, "%s[%zd] = %lld is negative; addresses are 0..2**64-1", name,
                             i, (long long)p[i]);
                buf_release(b);
                return -1;
            }
    }
    return 0;
}

/* ---- IntervalIndex ---- */

static PyObject *Index_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    if (PyTuple_GET_SIZE(args) || (kw && PyDict_GET_SIZE(kw))) {
        PyErr_SetString(PyExc_TypeError, "IntervalIndex() takes no arguments; use IntervalIndex.from_arrays()");
        return NULL;
    }
    IndexObject *self = (IndexObject *)type->tp_alloc(type, 0);
    if (!self) return NULL;
    ivx_init(&self->t);
    return (PyObject *)self;
}

static void Index_dealloc(IndexObject *self)
{
    ivx_clear(&self->t);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t Index_len(IndexObject *self)
{
    return (Py_ssize_t)self->t.n;
}

static int Index_contains(IndexObject *self, PyObject *o)
{
    uint64_t v;
    if (!PyLong_Check(o) && !PyIndex_Check(o)) return 0;
    if (u64_arg(o, "handle", &v) < 0) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            return 0;
        }
        return -1;
    }
    return v < self->t.nslots && self->t.slots[v].live;
}

static PyObject *raise_nomem_or_full(int rc)
{
    if (rc == -2) return PyErr_Format(PyExc_OverflowError, "IntervalIndex is full (2**32-1 handles)");
    return PyErr_NoMemory();
}

PyDoc_STRVAR(insert_doc,
"insert(start, end, owner=0, shared=False) -> int\n--\n\n"
"Store the closed range [start, end] (0 <= start <= end <= 2**64-1) for owner (a signed\n"
"64-bit id) and return its handle.  Duplicates and nested ranges are allowed.  Handles\n"
"are small non-negative ints; a removed handle may be handed out again.");

static PyObject *Index_insert(IndexObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"start", "end", "owner", "shared", NULL};
    PyObject *a[4];
    uint64_t s, e;
    int64_t owner = 0;
    int shared = 0;
    uint32_t h;
    if (!kwnames && nargs == 2) {
        a[0] = args[0];
        a[1] = args[1];
        a[2] = a[3] = NULL;
    } else if (parse_kw("insert", args, nargs, kwnames, names, 4, 2, a) < 0) {
        return NULL;
    }
    if (range_args(a[0], a[1], &s, &e) < 0) return NULL;
    if (a[2] && i64_arg(a[2], "owner", &owner) < 0) return NULL;
    if (a[3] && (shared = PyObject_IsTrue(a[3])) < 0) return NULL;
    int rc = ivx_insert(&self->t, s, e, owner, shared, &h);
    if (rc < 0) return raise_nomem_or_full(rc);
    self->version++;
    return handle_int(h);
}

PyDoc_STRVAR(remove_doc,
"remove(handle, /) -> None\n--\n\n"
"Remove the range stored under handle.  KeyError if no live range has that handle.");

static PyObject *Index_remove(IndexObject *self, PyObject *arg)
{
    uint32_t h;
    if (handle_arg(arg, &h) < 0) return NULL;
    if (ivx_remove(&self->t, h)) {
        PyErr_SetObject(PyExc_KeyError, arg);
        return NULL;
    }
    self->version++;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(get_doc,
"get(handle, /) -> Range\n--\n\n"
"The stored range for handle as Range(start, end, owner, shared, handle); KeyError if none.");

static PyObject *Index_get(IndexObject *self, PyObject *arg)
{
    uint32_t h;
    if (handle_arg(arg, &h) < 0) return NULL;
    if (h >= self->t.nslots || !self->t.slots[h].live) {
        PyErr_SetObject(PyExc_KeyError, arg);
        return NULL;
    }
    return make_range(self, h);
}

static int two_range_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, uint64_t *a, uint64_t *b)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "%s() takes exactly 2 arguments (start, end), %zd given", fname, nargs);
        return -1;
    }
    return range_args(args[0], args[1], a, b);
}

PyDoc_STRVAR(first_overlap_doc,
"first_overlap(start, end, /) -> int | None\n--\n\n"
"Handle of the stored range overlapping [start, end] with the lowest start (ties: lowest\n"
"handle), or None.  O(log n).");

static PyObject *Index_first_overlap(IndexObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t a, b;
    if (two_range_args("first_overlap", args, nargs, &a, &b) < 0) return NULL;
    int64_t h = ivx_first(&self->t, a, b);
    if (h < 0) Py_RETURN_NONE;
    return handle_int((uint32_t)h);
}

static PyObject *collect(IndexObject *self, uint64_t a, uint64_t b)
{
    uint32_t local[64]; /* most queries hit a few ranges: no malloc for them */
    ivx_walk w = {0};
    w.a = a;
    w.b = b;
    w.mode = W_COLLECT;
    w.buf = local;
    w.cap = sizeof local / sizeof local[0];
    ivx_walk_run(&self->t, &w);
    PyObject *list = NULL;
    if (w.oom) {
        PyErr_NoMemory();
        goto out;
    }
    list = PyList_New((Py_ssize_t)w.count);
    if (!list) goto out;
    for (size_t i = 0; i < w.count; i++) {
        PyObject *v = handle_int(w.buf[i]);
        if (!v) {
            Py_CLEAR(list);
            goto out;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, v);
    }
out:
    if (w.heap) free(w.buf);
    return list;
}

PyDoc_STRVAR(overlaps_doc,
"overlaps(start, end, /) -> list[int]\n--\n\n"
"Handles of all stored ranges overlapping [start, end], in address order (by start, then\n"
"handle).  O(log n + k) for k results.");

static PyObject *Index_overlaps(IndexObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t a, b;
    if (two_range_args("overlaps", args, nargs, &a, &b) < 0) return NULL;
    return collect(self, a, b);
}

PyDoc_STRVAR(stab_doc,
"stab(point, /) -> list[int]\n--\n\n"
"Handles of all stored ranges containing point, in address order.");

static PyObject *Index_stab(IndexObject *self, PyObject *arg)
{
    uint64_t p;
    if (u64_arg(arg, "point", &p) < 0) return NULL;
    return collect(self, p, p);
}

PyDoc_STRVAR(count_doc,
"count(start, end, /) -> int\n--\n\n"
"Number of stored ranges overlapping [start, end].");

static PyObject *Index_count(IndexObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t a, b;
    if (two_range_args("count", args, nargs, &a, &b) < 0) return NULL;
    ivx_walk w = {0};
    w.a = a;
    w.b = b;
    w.mode = W_COUNT;
    ivx_walk_run(&self->t, &w);
    return PyLong_FromSize_t(w.count);
}

PyDoc_STRVAR(conflict_doc,
"conflict(start, end, shared=False, exclude_owner=None) -> int | None\n--\n\n"
"Handle of the lowest stored range that conflicts with a request for [start, end], or\n"
"None.  Two ranges conflict when they overlap and not both are shared.  Ranges whose\n"
"owner equals exclude_owner are ignored (e.g. the requester's own earlier claim).");

static PyObject *Index_conflict(IndexObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"start", "end", "shared", "exclude_owner", NULL};
    PyObject *a[4];
    uint64_t s, e;
    int shared = 0;
    if (parse_kw("conflict", args, nargs, kwnames, names, 4, 2, a) < 0) return NULL;
    if (range_args(a[0], a[1], &s, &e) < 0) return NULL;
    if (a[2] && (shared = PyObject_IsTrue(a[2])) < 0) return NULL;
    int64_t h;
    if (!a[3] || a[3] == Py_None) {
        h = shared ? ivx_first_x(&self->t, s, e) : ivx_first(&self->t, s, e);
    } else {
        ivx_walk w = {0};
        if (i64_arg(a[3], "exclude_owner", &w.owner) < 0) return NULL;
        w.a = s;
        w.b = e;
        w.x = shared;
        w.mode = W_FIRST_NOT_OWNER;
        w.slots = self->t.slots;
        w.found = -1;
        ivx_walk_run(&self->t, &w);
        h = w.found;
    }
    if (h < 0) Py_RETURN_NONE;
    return handle_int((uint32_t)h);
}

PyDoc_STRVAR(find_gap_doc,
"find_gap(length, lo=0, hi=2**64-1, *, align=1, highest=False, ignore_shared=False) -> int | None\n--\n\n"
"Lowest (or with highest=True the highest) s with s % align == 0 such that\n"
"[s, s + length - 1] lies inside [lo, hi] and overlaps no stored range; None if there is\n"
"none.  With ignore_shared=True shared ranges do not block (a shared request).\n"
"length and align are 1..2**64-1; align may be any positive integer.");

static PyObject *Index_find_gap(IndexObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"length", "lo", "hi", "align", "highest", "ignore_shared", NULL};
    PyObject *a[6];
    ivx_gq q = {0, 1, 0, UINT64_MAX, 0};
    int highest = 0;
    uint64_t out;
    if (parse_kw("find_gap", args, nargs, kwnames, names, 3, 1, a) < 0) return NULL;
    if (u64_arg(a[0], "length", &q.len) < 0) return NULL;
    if (a[1] && u64_arg(a[1], "lo", &q.lo) < 0) return NULL;
    if (a[2] && u64_arg(a[2], "hi", &q.hi) < 0) return NULL;
    if (a[3] && u64_arg(a[3], "align", &q.align) < 0) return NULL;
    if (a[4] && (highest = PyObject_IsTrue(a[4])) < 0) return NULL;
    if (a[5] && (q.x = PyObject_IsTrue(a[5])) < 0) return NULL;
    if (q.len == 0) {
        PyErr_SetString(PyExc_ValueError, "length must be >= 1 (zero-length ranges do not exist)");
        return NULL;
    }
    if (q.align == 0) {
        PyErr_SetString(PyExc_ValueError, "align must be >= 1");
        return NULL;
    }
    if (q.lo > q.hi) {
        set_error(PyExc_ValueError, "empty window: lo 0x%llx > hi 0x%llx", (unsigned long long)q.lo,
                     (unsigned long long)q.hi);
        return NULL;
    }
    if (!ivx_gap(&self->t, &q, highest, &out)) Py_RETURN_NONE;
    return PyLong_FromUnsignedLongLong(out);
}

/* Batch: fill out[i] per query; points when ends is None. */
static PyObject *batch(IndexObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                       const char *fname, int do_count)
{
    static const char *const names[] = {"starts", "ends", "out", NULL};
    PyObject *a[3];
    ivx_buf bs, be, bo;
    PyObject *res = NULL;
    int have_e = 0, have_o = 0;
    if (parse_kw(fname, args, nargs, kwnames, names, 3, 1, a) < 0) return NULL;
    if (buf_get(a[0], BUF_U64, "starts", &bs, 0) < 0) return NULL;
    if (a[1] && a[1] != Py_None) {
        if (buf_get(a[1], BUF_U64, "ends", &be, 0) < 0) goto out;
        have_e = 1;
        if (be.n != bs.n) {
            PyErr_Format(PyExc_ValueError, "starts and ends differ in length (%zd, %zd)", bs.n, be.n);
            goto out;
        }
    }
    Py_ssize_t n = bs.n;
    int64_t *dst;
    if (a[2] && a[2] != Py_None) {
        if (buf_get(a[2], BUF_I64, "out", &bo, 1) < 0) goto out;
        have_o = 1;
        if (bo.n != n) {
            PyErr_Format(PyExc_ValueError, "out has length %zd, expected %zd", bo.n, n);
            goto out;
        }
        dst = bo.view.buf;
        res = Py_NewRef(a[2]);
    } else {
        res = PyObject_CallFunction(g_state.array_ctor, "s", "q");
        if (!res) goto out;
        /* array('q') grown to n zeros via its buffer: build from bytes of the right size */
        PyObject *zeros = PyBytes_FromStringAndSize(NULL, n * 8);
        if (!zeros) goto fail;
        memset(PyBytes_AS_STRING(zeros), 0, (size_t)n * 8);
        PyObject *r = PyObject_CallMethod(res, "frombytes", "O", zeros);
        Py_DECREF(zeros);
        if (!r) goto fail;
        Py_DECREF(r);
        if (PyObject_GetBuffer(res, &bo.view, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) goto fail;
        bo.ok = 1;
        bo.tmp = NULL;
        have_o = 1;
        dst = bo.view.buf;
    }
    const uint64_t *ps = bs.ptr, *pe = have_e ? (const uint64_t *)be.ptr : ps;
    for (Py_ssize_t i = 0; i < n; i++)
        if (ps[i] > pe[i]) {
            set_error(PyExc_ValueError, "query %zd is empty: start 0x%llx > end 0x%llx", i,
                         (unsigned long long)ps[i], (unsigned long long)pe[i]);
            goto fail;
        }
    if (do_count) {
        ivx_walk w = {0};
        w.mode = W_COUNT;
        for (Py_ssize_t i = 0; i < n; i++) {
            w.a = ps[i];
            w.b = pe[i];
            w.count = 0;
            ivx_walk_run(&self->t, &w);
            dst[i] = (int64_t)w.count;
        }
    } else {
        for (Py_ssize_t i = 0; i < n; i++) dst[i] = ivx_first(&self->t, ps[i], pe[i]);
    }
    goto out;
fail:
    Py_CLEAR(res);
out:
    buf_release(&bs);
    if (have_e) buf_release(&be);
    if (have_o) buf_release(&bo);
    return res;
}

PyDoc_STRVAR(first_overlap_batch_doc,
"first_overlap_batch(starts, ends=None, out=None) -> array('q')\n--\n\n"
"first_overlap() for each query [starts[i], ends[i]] (points if ends is None): the handle\n"
"or -1.  starts/ends: contiguous uint64 (or non-negative int64) buffers such as numpy\n"
"arrays or array('Q'); other iterables are converted.  out: optional writable int64\n"
"buffer of the same length to fill (and return) instead of a new array('q').");

static PyObject *Index_first_overlap_batch(IndexObject *self, PyObject *const *args, Py_ssize_t nargs,
                                           PyObject *kwnames)
{
    return batch(self, args, nargs, kwnames, "first_overlap_batch", 0);
}

PyDoc_STRVAR(count_batch_doc,
"count_batch(starts, ends=None, out=None) -> array('q')\n--\n\n"
"count() for each query [starts[i], ends[i]]; arguments as in first_overlap_batch().");

static PyObject *Index_count_batch(IndexObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return batch(self, args, nargs, kwnames, "count_batch", 1);
}

/* Rebuild the slot table from explicit records and bulk-load the tree. */
static int load_records(IndexObject *self, Py_ssize_t n, uint32_t nslots, const uint32_t *handles,
                        const uint64_t *starts, const uint64_t *ends, const int64_t *owners,
                        const uint8_t *shared, const uint32_t *freelist, uint32_t nfree)
{
    ivx_tree nt;
    ivx_init(&nt);
    ivx_kh *kh = NULL;
    if (nslots && slots_reserve(&nt, nslots) < 0) goto nomem;
    nt.nslots = nslots;
    for (uint32_t h = 0; h < nslots; h++) {
        nt.slots[h].live = 0;
        nt.slots[h].next_free = IVX_NOSLOT;
    }
    kh = malloc((size_t)(n ? n : 1) * sizeof(ivx_kh));
    if (!kh) goto nomem;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t h = handles ? handles[i] : (uint32_t)i;
        ivx_slot *sl = &nt.slots[h];
        sl->start = starts[i];
        sl->end = ends[i];
        sl->owner = owners ? owners[i] : 0;
        sl->shared = (uint8_t)(shared && shared[i] != 0);
        sl->live = 1;
        kh[i].key = starts[i];
        kh[i].h = h;
    }
    /* free list in the given order, head first */
    for (uint32_t i = nfree; i-- > 0;) {
        nt.slots[freelist[i]].next_free = nt.free_head;
        nt.free_head = freelist[i];
    }
    if (radix_sort(kh, (size_t)n) < 0) goto nomem;
    if (ivx_bulk(&nt, kh, (size_t)n) < 0) goto nomem;
    free(kh);
    ivx_clear(&self->t);
    self->t = nt;
    self->version++;
    return 0;
nomem:
    free(kh);
    ivx_clear(&nt);
    PyErr_NoMemory();
    return -1;
}

PyDoc_STRVAR(from_arrays_doc,
"from_arrays(starts, ends, owners=None, shared=None) -> IntervalIndex\n--\n\n"
"Build an index in one pass (sort + bulk load).  Range i gets handle i.  starts/ends are\n"
"uint64 buffers (or iterables), owners an int64 buffer, shared a bool/uint8 buffer.");

static PyObject *Index_from_arrays(PyObject *cls, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"starts", "ends", "owners", "shared", NULL};
    PyObject *a[4];
    ivx_buf b[4];
    int have[4] = {0, 0, 0, 0};
    PyObject *res = NULL;
    if (parse_kw("from_arrays", args, nargs, kwnames, names, 4, 2, a) < 0) return NULL;
    static const int kinds[4] = {BUF_U64, BUF_U64, BUF_I64, BUF_BOOL};
    for (int i = 0; i < 4; i++) {
        if (!a[i] || (i >= 2 && a[i] == Py_None)) continue;
        if (buf_get(a[i], kinds[i], names[i], &b[i], 0) < 0) goto out;
        have[i] = 1;
        if (b[i].n != b[0].n) {
            PyErr_Format(PyExc_ValueError, "%s has length %zd, starts has %zd", names[i], b[i].n, b[0].n);
            goto out;
        }
    }
    Py_ssize_t n = b[0].n;
    if ((uint64_t)n > IVX_MAXSLOTS) {
        PyErr_SetString(PyExc_OverflowError, "too many ranges (max 2**32-1)");
        goto out;
    }
    const uint64_t *ps = b[0].ptr, *pe = b[1].ptr;
    for (Py_ssize_t i = 0; i < n; i++)
        if (ps[i] > pe[i]) {
            set_error(PyExc_ValueError, "range %zd is empty: start 0x%llx > end 0x%llx", i,
                         (unsigned long long)ps[i], (unsigned long long)pe[i]);
            goto out;
        }
    res = PyObject_CallNoArgs(cls);
    if (!res) goto out;
    if (!PyObject_TypeCheck(res, g_state.index_type)) {
        PyErr_SetString(PyExc_TypeError, "from_arrays() needs an IntervalIndex subclass");
        Py_CLEAR(res);
        goto out;
    }
    if (load_records((IndexObject *)res, n, (uint32_t)n, NULL, ps, pe, have[2] ? b[2].ptr : NULL,
                     have[3] ? b[3].ptr : NULL, NULL, 0) < 0)
        Py_CLEAR(res);
out:
    for (int i = 0; i < 4; i++)
        if (have[i]) buf_release(&b[i]);
    return res;
}

/* ---- pickling: little-endian packed state ---- */

#define REC_SIZE 29 /* u32 handle, u64 start, u64 end, i64 owner, u8 shared */
static const char STATE_MAGIC[4] = {'I', 'V', 'X', '1'};

static void put_le(unsigned char *p, uint64_t v, int nbytes)
{
    for (int i = 0; i < nbytes; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int nbytes)
{
    uint64_t v = 0;
    for (int i = 0; i < nbytes; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static PyObject *Index_reduce(IndexObject *self, PyObject *Py_UNUSED(ignored))
{
    const ivx_tree *t = &self->t;
    uint32_t nfree = 0;
    for (uint32_t h = t->free_head; h != IVX_NOSLOT; h = t->slots[h].next_free) nfree++;
    size_t size = 16 + t->n * REC_SIZE + (size_t)nfree * 4;
    PyObject *bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (!bytes) return NULL;
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(bytes);
    memcpy(p, STATE_MAGIC, 4);
    put_le(p + 4, t->nslots, 4);
    put_le(p + 8, t->n, 4);
    put_le(p + 12, nfree, 4);
    p += 16;
    for (uint32_t h = 0; h < t->nslots; h++) {
        const ivx_slot *sl = &t->slots[h];
        if (!sl->live) continue;
        put_le(p, h, 4);
        put_le(p + 4, sl->start, 8);
        put_le(p + 12, sl->end, 8);
        put_le(p + 20, (uint64_t)sl->owner, 8);
        p[28] = sl->shared;
        p += REC_SIZE;
    }
    for (uint32_t h = t->free_head; h != IVX_NOSLOT; h = t->slots[h].next_free) {
        put_le(p, h, 4);
        p += 4;
    }
    PyObject *mod_fn = PyObject_GetAttrString((PyObject *)Py_TYPE(self), "_from_state");
    if (!mod_fn) {
        Py_DECREF(bytes);
        return NULL;
    }
    return Py_BuildValue("(N(N))", mod_fn, bytes);
}

PyDoc_STRVAR(from_state_doc, "_from_state(state: bytes) -> IntervalIndex (pickle support)");

static PyObject *Index_from_state(PyObject *cls, PyObject *arg)
{
    Py_buffer v;
    PyObject *res = NULL;
    uint32_t *handles = NULL, *freelist = NULL;
    uint64_t *starts = NULL, *ends = NULL;
    int64_t *owners = NULL;
    uint8_t *shared = NULL, *seen = NULL;
    if (PyObject_GetBuffer(arg, &v, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *p = v.buf;
    if (v.len < 16 || memcmp(p, STATE_MAGIC, 4) != 0) goto bad;
    uint32_t nslots = (uint32_t)get_le(p + 4, 4), nlive = (uint32_t)get_le(p + 8, 4),
             nfree = (uint32_t)get_le(p + 12, 4);
    if (nslots > IVX_MAXSLOTS || (uint64_t)nlive + nfree != nslots ||
        (uint64_t)v.len != 16 + (uint64_t)nlive * REC_SIZE + (uint64_t)nfree * 4)
        goto bad;
    size_t nl = nlive ? nlive : 1, nf = nfree ? nfree : 1;
    handles = malloc(nl * 4);
    starts = malloc(nl * 8);
    ends = malloc(nl * 8);
    owners = malloc(nl * 8);
    shared = malloc(nl);
    freelist = malloc(nf * 4);
    seen = calloc(nslots ? nslots : 1, 1);
    if (!handles || !starts || !ends || !owners || !shared || !freelist || !seen) {
        PyErr_NoMemory();
        goto out;
    }
    p += 16;
    for (uint32_t i = 0; i < nlive; i++, p += REC_SIZE) {
        handles[i] = (uint32_t)get_le(p, 4);
        starts[i] = get_le(p + 4, 8);
        ends[i] = get_le(p + 12, 8);
        owners[i] = (int64_t)get_le(p + 20, 8);
        shared[i] = p[28];
        /* ascending handles keep the stable sort in (start, handle) order */
        if (handles[i] >= nslots || (i && handles[i] <= handles[i - 1]) || starts[i] > ends[i] || shared[i] > 1)
            goto bad;
        seen[handles[i]] = 1;
    }
    for (uint32_t i = 0; i < nfree; i++, p += 4) {
        freelist[i] = (uint32_t)get_le(p, 4);
        if (freelist[i] >= nslots || seen[freelist[i]]) goto bad;
        seen[freelist[i]] = 1;
    }
    res = PyObject_CallNoArgs(cls);
    if (!res) goto out;
    if (!PyObject_TypeCheck(res, g_state.index_type)) {
        PyErr_SetString(PyExc_TypeError, "_from_state() needs an IntervalIndex subclass");
        Py_CLEAR(res);
        goto out;
    }
    if (load_records((IndexObject *)res, nlive, nslots, handles, starts, ends, owners, shared, freelist, nfree) < 0)
        Py_CLEAR(res);
    goto out;
bad:
    PyErr_SetString(PyExc_ValueError, "corrupt IntervalIndex state");
out:
    PyBuffer_Release(&v);
    free(handles);
    free(starts);
    free(ends);
    free(owners);
    free(shared);
    free(freelist);
    free(seen);
    return res;
}

PyDoc_STRVAR(clear_doc, "clear() -> None\n--\n\nRemove every range; handles start again from 0.");

static PyObject *Index_clear(IndexObject *self, PyObject *Py_UNUSED(ignored))
{
    ivx_clear(&self->t);
    self->version++;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(check_doc, "_check() -> None\n--\n\nVerify internal invariants; AssertionError if broken.");

static PyObject *Index_check(IndexObject *self, PyObject *Py_UNUSED(ignored))
{
    const char *e = ivx_check(&self->t);
    if (e) {
        PyErr_Format(PyExc_AssertionError, "IntervalIndex corrupt: %s", e);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Index_repr(IndexObject *self)
{
    const int show = 6;
    PyObject *parts = PyList_New(0), *res = NULL;
    if (!parts) return NULL;
    const ivx_node *nd = self->t.root;
    while (nd && !nd->leaf) nd = ((const ivx_inner *)nd)->child[0];
    const ivx_leaf *l = (const ivx_leaf *)nd;
    int shown = 0;
    for (; l && shown < show; l = l->next)
        for (int j = 0; j < l->h.n && shown < show; j++, shown++) {
            const ivx_slot *sl = &self->t.slots[l->hd[j]];
            char tmp[128]; /* PyUnicode_FromFormat has no %llx */
            snprintf(tmp, sizeof tmp, "[0x%llx, 0x%llx] owner=%lld%s #%u", (unsigned long long)sl->start,
                     (unsigned long long)sl->end, (long long)sl->owner, sl->shared ? " shared" : "",
                     (unsigned)l->hd[j]);
            PyObject *s = PyUnicode_FromString(tmp);
            if (!s || PyList_Append(parts, s) < 0) {
                Py_XDECREF(s);
                goto out;
            }
            Py_DECREF(s);
        }
    if ((size_t)shown < self->t.n) {
        PyObject *s = PyUnicode_FromFormat("... %zu more", self->t.n - (size_t)shown);
        if (!s || PyList_Append(parts, s) < 0) {
            Py_XDECREF(s);
            goto out;
        }
        Py_DECREF(s);
    }
    {
        PyObject *sep = PyUnicode_FromString(", ");
        if (!sep) goto out;
        PyObject *body = PyUnicode_Join(sep, parts);
        Py_DECREF(sep);
        if (!body) goto out;
        res = PyUnicode_FromFormat("<%s n=%zu: %U>", Py_TYPE(self)->tp_name, self->t.n, body);
        Py_DECREF(body);
    }
out:
    Py_DECREF(parts);
    return res;
}

static PyObject *Index_iter(IndexObject *self)
{
    IterObject *it = PyObject_GC_New(IterObject, g_state.iter_type);
    if (!it) return NULL;
    const ivx_node *nd = self->t.root;
    while (nd && !nd->leaf) nd = ((const ivx_inner *)nd)->child[0];
    it->idx = (IndexObject *)Py_NewRef(self);
    it->leaf = (const ivx_leaf *)nd;
    it->pos = 0;
    it->version = self->version;
    PyObject_GC_Track(it);
    return (PyObject *)it;
}

static PyObject *Iter_next(IterObject *it)
{
    if (!it->idx) return NULL;
    if (it->version != it->idx->version) {
        PyErr_SetString(PyExc_RuntimeError, "IntervalIndex changed during iteration");
        return NULL;
    }
    while (it->leaf && it->pos >= it->leaf->h.n) {
        it->leaf = it->leaf->next;
        it->pos = 0;
    }
    if (!it->leaf) {
        Py_CLEAR(it->idx);
        return NULL;
    }
    return make_range(it->idx, it->leaf->hd[it->pos++]);
}

static int Iter_traverse(IterObject *it, visitproc visit, void *arg)
{
    Py_VISIT(it->idx);
    return 0;
}

static void Iter_dealloc(IterObject *it)
{
    PyObject_GC_UnTrack(it);
    Py_XDECREF(it->idx);
    PyObject_GC_Del(it);
}

static PyMethodDef Index_methods[] = {
    {"insert", (PyCFunction)(void (*)(void))Index_insert, METH_FASTCALL | METH_KEYWORDS, insert_doc},
    {"remove", (PyCFunction)Index_remove, METH_O, remove_doc},
    {"get", (PyCFunction)Index_get, METH_O, get_doc},
    {"first_overlap", (PyCFunction)(void (*)(void))Index_first_overlap, METH_FASTCALL, first_overlap_doc},
    {"overlaps", (PyCFunction)(void (*)(void))Index_overlaps, METH_FASTCALL, overlaps_doc},
    {"stab", (PyCFunction)Index_stab, METH_O, stab_doc},
    {"count", (PyCFunction)(void (*)(void))Index_count, METH_FASTCALL, count_doc},
    {"conflict", (PyCFunction)(void (*)(void))Index_conflict, METH_FASTCALL | METH_KEYWORDS, conflict_doc},
    {"find_gap", (PyCFunction)(void (*)(void))Index_find_gap, METH_FASTCALL | METH_KEYWORDS, find_gap_doc},
    {"first_overlap_batch", (PyCFunction)(void (*)(void))Index_first_overlap_batch, METH_FASTCALL | METH_KEYWORDS,
     first_overlap_batch_doc},
    {"count_batch", (PyCFunction)(void (*)(void))Index_count_batch, METH_FASTCALL | METH_KEYWORDS, count_batch_doc},
    {"from_arrays", (PyCFunction)(void (*)(void))Index_from_arrays, METH_FASTCALL | METH_KEYWORDS | METH_CLASS,
     from_arrays_doc},
    {"_from_state", (PyCFunction)Index_from_state, METH_O | METH_CLASS, from_state_doc},
    {"__reduce__", (PyCFunction)Index_reduce, METH_NOARGS, "pickle support"},
    {"clear", (PyCFunction)Index_clear, METH_NOARGS, clear_doc},
    {"_check", (PyCFunction)Index_check, METH_NOARGS, check_doc},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods Index_as_sequence = {
    .sq_length = (lenfunc)Index_len,
    .sq_contains = (objobjproc)Index_contains,
};

PyDoc_STRVAR(Index_doc,
"IntervalIndex()\n--\n\n"
"Closed ranges [start, end] over 0..2**64-1, each with an owner id (signed 64-bit) and a\n"
"share flag, addressed by integer handles.  Iterating yields Range tuples in address order\n"
"(by start, then handle); len() is the number of stored ranges; instances pickle.\n"
"Not thread-safe without the GIL (all methods hold it).");

static PyTypeObject IndexType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "harness._intervals.IntervalIndex",
    .tp_basicsize = sizeof(IndexObject),
    .tp_dealloc = (destructor)Index_dealloc,
    .tp_repr = (reprfunc)Index_repr,
    .tp_as_sequence = &Index_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = Index_doc,
    .tp_iter = (getiterfunc)Index_iter,
    .tp_methods = Index_methods,
    .tp_new = Index_new,
};

static PyTypeObject IterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "harness._intervals._Iterator",
    .tp_basicsize = sizeof(IterObject),
    .tp_dealloc = (destructor)Iter_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)Iter_traverse,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)Iter_next,
};

PyDoc_STRVAR(set_simd_doc,
"_set_simd(level, /) -> int\n--\n\n"
"Node scans to use: 0 portable C, 1 AVX2, 2 AVX-512, capped at what the CPU has (the\n"
"import picks the best).  Returns the previous level.  For tests: all give the same\n"
"answers.");

static PyObject *mod_set_simd(PyObject *Py_UNUSED(m), PyObject *arg)
{
    long level = PyLong_AsLong(arg);
    int prev = ivx_simd, best = ivx_cpu_simd();
    if (level == -1 && PyErr_Occurred()) return NULL;
    ivx_simd = level <= 0 ? IVX_SIMD_NONE : level >= best ? best : (int)level;
    return PyLong_FromLong(prev);
}

static PyMethodDef module_methods[] = {
    {"_set_simd", mod_set_simd, METH_O, set_simd_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "harness._intervals",
    .m_methods = module_methods,
    .m_doc = "Compiled interval index over the unsigned 64-bit address space (see IntervalIndex).",
    .m_size = -1,
};

static int PyModule_Add_u64(PyObject *m, const char *name, uint64_t v)
{
    PyObject *o = PyLong_FromUnsignedLongLong(v);
    int rc = PyModule_AddObjectRef(m, name, o);
    Py_XDECREF(o);
    return rc;
}

PyMODINIT_FUNC PyInit__intervals(void)
{
    PyObject *m = NULL, *arraymod = NULL;
    if (PyType_Ready(&IndexType) < 0 || PyType_Ready(&IterType) < 0) return NULL;
    ivx_cpu_init();
    if (!g_state.range_type) {
        g_state.range_type = PyStructSequence_NewType(&range_desc);
        if (!g_state.range_type) return NULL;
    }
    arraymod = PyImport_ImportModule("array");
    if (!arraymod) return NULL;
    Py_XSETREF(g_state.array_ctor, PyObject_GetAttrString(arraymod, "array"));
    Py_DECREF(arraymod);
    if (!g_state.array_ctor) return NULL;
    g_state.index_type = &IndexType;
    g_state.iter_type = &IterType;
    m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "IntervalIndex", (PyObject *)&IndexType) < 0 ||
        PyModule_AddObjectRef(m, "Range", (PyObject *)g_state.range_type) < 0 ||
        PyModule_Add_u64(m, "ADDRESS_MAX", UINT64_MAX) < 0 ||
        PyModule_AddIntConstant(m, "LEAF_CAPACITY", IVX_LCAP) < 0 ||
        PyModule_AddIntConstant(m, "FANOUT", IVX_FAN) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
#endif /* IVX_NO_PYTHON */
