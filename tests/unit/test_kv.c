/* kv: radix sharing, copy-on-write inside a block, longest-prefix matches,
 * LRU eviction under a budget, the errors, truncate, commit of generated
 * tokens, and a randomized run against a reference model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kv_testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct kv_cache *mk(const struct kv_config *cfg) {
    struct kv_cache *c = NULL;
    struct ica_error err = {0};
    int rc = kv_cache_new(cfg, &c, &err);
    if (rc != ICA_OK)
        fail_msg("kv_cache_new: %s", err.msg);
    return c;
}

/* New sequence for tok[0..n), computes what is not cached; returns it. */
static struct kv_seq *run(struct kv_cache *c, const struct kv_config *cfg, const int32_t *tok,
                          size_t n, size_t max_reuse, size_t *n_cached) {
    struct kv_seq *s = NULL;
    struct ica_error err = {0};
    size_t nc = 0;
    assert_int_equal(kv_seq_new(c, tok, n, max_reuse, &s, &nc, &err), ICA_OK);
    assert_int_equal(kv_seq_len(s), nc);
    assert_int_equal(kvt_check(s, cfg, tok, 0, nc), nc);
    if (kv_seq_reserve(s, n - nc, &err) != ICA_OK)
        fail_msg("reserve: %s", err.msg);
    assert_true(kv_seq_writable_from(s) <= nc);
    kvt_write(s, cfg, tok, nc, n);
    assert_int_equal(kvt_check(s, cfg, tok, 0, n), n);
    if (n_cached)
        *n_cached = nc;
    return s;
}

static void commit(struct kv_seq *s, const int32_t *tok, size_t n) {
    struct ica_error err = {0};
    if (kv_seq_commit(s, tok, n, &err) != ICA_OK)
        fail_msg("commit: %s", err.msg);
}

static void test_config(void **state) {
    (void)state;
    struct kv_cache *c = NULL;
    struct ica_error err = {0};
    struct kv_config cfg = kv_default_config();
    assert_int_equal(cfg.block_tokens, 32);
    assert_int_equal(cfg.elem_type, ICA_F16);
    assert_int_equal(kv_cache_new(&cfg, &c, &err), ICA_ERR_ARG);
    assert_non_null(strstr(err.msg, "n_layer"));
    cfg = kvt_config(4, ICA_Q4_0, 0);
    assert_int_equal(kv_cache_new(&cfg, &c, &err), ICA_ERR_UNSUPPORTED);
    cfg = kvt_config(4, ICA_F32, 0);
    cfg.mem_budget = kv_block_bytes(&cfg) - 1;
    assert_int_equal(kv_cache_new(&cfg, &c, &err), ICA_ERR_RANGE);
    assert_non_null(strstr(err.msg, "smaller than one block"));
    assert_null(c);
    /* 2 layers × 4 tokens × 2 heads × (4 + 3) × 4 bytes */
    assert_int_equal(kv_block_bytes(&cfg), 2 * 4 * 2 * 7 * 4);
    cfg.block_tokens = 0;
    cfg.mem_budget = 0;
    c = mk(&cfg);
    assert_int_equal(kv_cache_config(c)->block_tokens, 32);
    kv_cache_free(c);
    kv_cache_free(NULL);
    kv_seq_free(NULL);
}

static void test_shared_prefix(void **state) {
    (void)state;
    struct kv_config cfg = kvt_config(4, ICA_F32, 0);
    struct kv_cache *c = mk(&cfg);
    int32_t a[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    size_t nc;
    struct kv_seq *s = run(c, &cfg, a, 10, 10, &nc);
    assert_int_equal(nc, 0);
    commit(s, a, 10);
    kv_seq_free(s);
    assert_int_equal(kv_cache_lookup(c, a, 12), 10);

    struct kv_stats st;
    kv_cache_stats(c, &st);
    assert_int_equal(st.blocks_alloc, 3);
    assert_int_equal(st.blocks_cached, 3);
    assert_int_equal(st.blocks_in_use, 0);
    assert_int_equal(st.tree_tokens, 10);

    struct kv_seq *t = run(c, &cfg, a, 12, 12, &nc);
    assert_int_equal(nc, 10);
    struct kv_seq *u = run(c, &cfg, a, 10, 9, &nc); /* max_reuse: last token computed */
    assert_int_equal(nc, 9);
    struct kv_seq *v = run(c, &cfg, a, 4, 100, &nc);
    assert_int_equal(nc, 4);
    /* t extended the shared partial block in place (it appends at the fill
     * mark); u wrote position 9 inside the tree's part: copy-on-write. */
    kv_cache_stats(c, &st);
    assert_int_equal(st.cow_copies, 1);
    assert_int_equal(kvt_check(t, &cfg, a, 0, 12), 12);
    assert_int_equal(kvt_check(u, &cfg, a, 0, 10), 10);
    assert_int_equal(kvt_check(v, &cfg, a, 0, 4), 4);
    assert_int_equal(st.tokens_hit, 23);
    /* kv_seq_rows: every layer's rows as kv_seq_k/kv_seq_v give them, whole
     * and partial blocks, shared and copied ones */
    for (int layer = 0; layer < cfg.n_layer; layer++)
        for (size_t n = 0; n <= 12; n += 5) {
            const uint8_t *kr[12], *vr[12];
            kv_seq_rows(t, layer, n, kr, vr);
            for (size_t p = 0; p < n; p++) {
                assert_ptr_equal(kr[p], kv_seq_k(t, layer, p));
                assert_ptr_equal(vr[p], kv_seq_v(t, layer, p));
            }
            kv_seq_rows(u, layer, n < 10 ? n : 10, kr, vr);
            for (size_t p = 0; p < (n < 10 ? n : 10); p++) {
                assert_ptr_equal(kr[p], kv_seq_k(u, layer, p));
                assert_ptr_equal(vr[p], kv_seq_v(u, layer, p));
            }
        }
    kv_seq_free(t);
    kv_seq_free(u);
    kv_seq_free(v);
    kv_cache_stats(c, &st);
    assert_int_equal(st.blocks_in_use, 0);
    kv_cache_free(c);
}

/* Divergence inside a block: each sequence's writes stay its own. */
static void test_cow_inside_block(void **state) {
    (void)state;
    for (int t = 0; t < 2; t++) {
        struct kv_config cfg = kvt_config(4, t ? ICA_F16 : ICA_F32, 0);
        struct kv_cache *c = mk(&cfg);
        int32_t base[6] = {1, 2, 3, 4, 5, 6};
        int32_t b[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        int32_t b2[8] = {1, 2, 3, 4, 5, 6, 70, 80};
        int32_t cc[7] = {1, 2, 3, 4, 5, 9, 9};
        struct kv_seq *s = run(c, &cfg, base, 6, 6, NULL);
        commit(s, base, 6);
        /* s stays alive and keeps its block: writes from others must not leak. */
        size_t nc;
        struct kv_seq *sb = run(c, &cfg, b, 8, 8, &nc);
        assert_int_equal(nc, 6);
        struct kv_seq *sb2 = run(c, &cfg, b2, 8, 8, &nc);
        assert_int_equal(nc, 6);
        struct kv_seq *sc = run(c, &cfg, cc, 7, 7, &nc);
        assert_int_equal(nc, 5);
        assert_int_equal(kvt_check(s, &cfg, base, 0, 6), 6);
        assert_int_equal(kvt_check(sb, &cfg, b, 0, 8), 8);
        assert_int_equal(kvt_check(sb2, &cfg, b2, 0, 8), 8);
        assert_int_equal(kvt_check(sc, &cfg, cc, 0, 7), 7);
        struct kv_stats st;
        kv_cache_stats(c, &st);
        assert_int_equal(st.cow_copies, 2); /* sb2 and sc; sb appended in place */
        /* All three publish; the tree then serves each branch. */
        commit(sb, b, 8);
        commit(sb2, b2, 8);
        commit(sc, cc, 7);
        kv_seq_free(s);
        kv_seq_free(sb);
        kv_seq_free(sb2);
        kv_seq_free(sc);
        struct kv_seq *r = run(c, &cfg, b2, 8, 8, &nc);
        assert_int_equal(nc, 8);
        kv_seq_free(r);
        r = run(c, &cfg, cc, 7, 7, &nc);
        assert_int_equal(nc, 7);
        kv_seq_free(r);
        r = run(c, &cfg, b, 8, 8, &nc);
        assert_int_equal(nc, 8);
        kv_seq_free(r);
        r = run(c, &cfg, base, 6, 6, &nc);
        assert_int_equal(nc, 6);
        kv_seq_free(r);
        kv_cache_free(c);
    }
}

static size_t lcp(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i])
        i++;
    return i;
}

/* Longest-prefix matches across many committed sequences (no eviction). */
static void test_longest_prefix_many(void **state) {
    (void)state;
    struct kv_config cfg = kvt_config(5, ICA_F32, 0);
    struct kv_cache *c = mk(&cfg);
    enum { NS = 60, ML = 40 };
    int32_t seqs[NS][ML];
    size_t lens[NS];
    srand(7);
    for (int i = 0; i < NS; i++) {
        int from = i ? rand() % i : 0;
        size_t keep = i ? (size_t)rand() % (lens[from] + 1) : 0;
        size_t room = ML - keep;
        lens[i] = keep + (room ? 1 + (size_t)rand() % room : 0);
        for (size_t p = 0; p < lens[i]; p++)
            seqs[i][p] = p < keep ? seqs[from][p] : rand() % 3;
        size_t expect = 0;
        for (int j = 0; j < i; j++) {
            size_t l = lcp(seqs[i], lens[i], seqs[j], lens[j]);
            expect = l > expect ? l : expect;
        }
        size_t nc;
        struct kv_seq *s = run(c, &cfg, seqs[i], lens[i], lens[i], &nc);
        assert_int_equal(nc, expect);
        assert_int_equal(kv_cache_lookup(c, seqs[i], lens[i]), expect);
        commit(s, seqs[i], lens[i]);
        kv_seq_free(s);
    }
    for (int i = 0; i < NS; i++) {
        size_t nc;
        struct kv_seq *s = run(c, &cfg, seqs[i], lens[i], lens[i], &nc);
        assert_int_equal(nc, lens[i]);
        kv_seq_free(s);
    }
    kv_cache_free(c);
}

/* Under a tight budget the least recently used unreferenced prefixes go
 * first, and blocks a live sequence holds are never evicted. */
static void test_lru_eviction(void **state) {
    (void)state;
    struct kv_config cfg = kvt_config(4, ICA_F32, 8);
    struct kv_cache *c = mk(&cfg);
    int32_t a[8] = {1, 1, 1, 1, 1, 1, 1, 1}, b[8] = {2, 2, 2, 2, 2, 2, 2, 2},
            d[8] = {3, 3, 3, 3, 3, 3, 3, 3}, e[8] = {4, 4, 4, 4, 4, 4, 4, 4};
    struct kv_seq *held = run(c, &cfg, a, 8, 8, NULL); /* 2 blocks, never committed */
    struct kv_seq *s = run(c, &cfg, b, 8, 8, NULL);
    commit(s, b, 8);
    kv_seq_free(s);
    s = run(c, &cfg, d, 8, 8, NULL);
    commit(s, d, 8);
    kv_seq_free(s);
    /* Touch b: d is now the least recently used. */
    size_t nc;
    s = run(c, &cfg, b, 8, 8, &nc);
    assert_int_equal(nc, 8);
    kv_seq_free(s);
    struct kv_stats st;
    kv_cache_stats(c, &st);
    assert_int_equal(st.blocks_alloc, 6);
    assert_int_equal(st.blocks_in_use, 2);
    assert_int_equal(st.blocks_cached, 4);
    struct kv_seq *se = run(c, &cfg, e, 8, 8, NULL); /* the budget's last 2 blocks */
    kv_cache_stats(c, &st);
    assert_int_equal(st.blocks_alloc, 8);
    assert_int_equal(st.evicted_blocks, 0);
    assert_int_equal(kv_cache_lookup(c, d, 8), 8);
    commit(se, e, 8);
    kv_seq_free(se);
    s = run(c, &cfg, a, 8, 0, NULL); /* needs 2 blocks: evicts the LRU prefix d */
    kv_cache_stats(c, &st);
    assert_int_equal(st.blocks_alloc, 8);
    assert_int_equal(kv_cache_lookup(c, d, 8), 0);
    assert_int_equal(kv_cache_lookup(c, b, 8), 8);
    assert_int_equal(kv_cache_lookup(c, e, 8), 8);
    assert_int_equal(kvt_check(held, &cfg, a, 0, 8), 8);
    kv_seq_free(s);
    /* Pressure until everything unreferenced is gone; held survives. */
    int32_t x[24];
    for (int i = 0; i < 24; i++)
        x[i] = 100 + i;
    s = run(c, &cfg, x, 24, 0, NULL);
    kv_cache_stats(c, &st);
    assert_int_equal(st.blocks_in_use, 8);
    assert_int_equal(kv_cache_lookup(c, b, 8), 0);
    assert_int_equal(kv_cache_lookup(c, e, 8), 0);
    assert_true(st.evicted_blocks >= 6);
    assert_int_equal(kvt_check(held, &cfg, a, 0, 8), 8);
    assert_int_equal(kvt_check(s, &cfg, x, 0, 24), 24);
    kv_seq_free(s);
    kv_seq_free(held);
    kv_cache_clear(c);
    kv_cache_stats(c, &st);
    assert_int_equal(st.tree_nodes, 0);
    assert_int_equal(st.blocks_free, st.blocks_alloc);
    kv_cache_free(c);
}

static void test_cannot_fit(void **state) {
    (void)state;
    struct kv_config cfg = kvt_config(4, ICA_F32, 4);
    struct kv_cache *c = mk(&cfg);
    struct ica_error err = {0};
    struct kv_seq *s = NULL;
    int32_t t[17] = {0};
    size_t nc;
    assert_int_equal(kv_seq_new(c, t, 17, 17, &s, &nc, &err), ICA_OK);
    assert_int_equal(kv_seq_reserve(s, 17, &err), ICA_ERR_RANGE);
    assert_non_null(strstr(err.msg, "17 tokens"));
    assert_non_null(strstr(err.msg, "5 KV blocks"));
    assert_non_null(strstr(err.msg, "budget"));
    assert_int_equal(kv_seq_len(s), 0);
    /* 16 fit exactly; a second sequence then finds the pool held: NOMEM. */
    assert_int_equal(kv_seq_reserve(s, 16, &err), ICA_OK);
    struct kv_seq *s2 = NULL;
    assert_int_equal(kv_seq_new(c, t, 1, 1, &s2, &nc, &err), ICA_OK);
    assert_int_equal(kv_seq_reserve(s2, 1, &err), ICA_ERR_NOMEM);
    assert_non_null(strstr(err.msg, "held by live sequences"));
    assert_int_equal(kv_seq_len(s2), 0);
    kv_seq_free(s);
    assert_int_equal(kv_seq_reserve(s2, 1, &err), ICA_OK);
    kv_seq_free(s2);
    kv_cache_free(c);
}

static void test_truncate(void **state) {
    (void)state;
    struct kv_config cfg = kvt_config(4, ICA_F32, 0);
    struct kv_cache *c = mk(&cfg);
    int32_t a[10] = {5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
    int32_t b[10] = {5, 6, 7, 8, 9, 20, 21, 22, 23, 24};
    struct kv_seq *s = run(c, &cfg, a, 10, 10, NULL);
    commit(s, a, 10);
    kv_seq_truncate(s, 5);
    assert_int_equal(kv_seq_len(s), 5);
    assert_int_equal(kv_seq_writable_from(s), 5);
    assert_null(kv_seq_k(s, 0, 5));
    struct ica_error err = {0};
    assert_int_equal(kv_seq_reserve(s, 5, &err), ICA_OK);
    kvt_write(s, &cfg, b, 5, 10); /* copy-on-write: the tree keeps a */
    assert_int_equal(kvt_check(s, &cfg, b, 0, 10), 10);
    size_t nc;
    struct kv_seq *r = run(c, &cfg, a, 10, 10, &nc);
    assert_int_equal(nc, 10);
    kv_seq_free(r);
    commit(s, b, 10);
    /* Commit checks the ids against those the sequence reused or committed. */
    assert_int_equal(kv_seq_commit(s, a, 10, &err), ICA_ERR_ARG);
    assert_non_null(strstr(err.msg, "token 5"));
    assert_int_equal(kv_seq_commit(s, b, 11, &err), ICA_ERR_ARG);
    kv_seq_truncate(s, 0);
    assert_int_equal(kv_seq_len(s), 0);
    kv_seq_truncate(s, 3); /* no-op */
    assert_int_equal(kv_seq_len(s), 0);
    kv_seq_free(s);
    r = run(c, &cfg, b, 10, 10, &nc);
    assert_int_equal(nc, 10);
    kv_seq_free(r);
    kv_cache_free(c);
}

/* MT-Bench: turn 1 is prompt + generated answer, committed; turn 2's prompt
 * extends it and reuses all of it. Commit mid-generation costs no copy. */
static void test_turn2_extends_turn1(void **state) {
    (void)state;
    struct kv_config cfg = kvt_config(8, ICA_F16, 0);
    struct kv_cache *c = mk(&cfg);
    int32_t tok[64];
    for (int i = 0; i < 64; i++)
        tok[i] = 1000 + (i * 37) % 101;
    size_t np = 21, ng = 9, nq = 15;
    struct ica_error err = {0};
    size_t nc;
    struct kv_seq *s = run(c, &cfg, tok, np, np - 1, &nc);
    commit(s, tok, np);
    for (size_t i = 0; i < ng; i++) { /* decode: one position at a time */
        assert_int_equal(kv_seq_reserve(s, 1, &err), ICA_OK);
        kvt_write(s, &cfg, tok, np + i, np + i + 1);
        if (i == 3)
            commit(s, tok, np + i + 1);
    }
    struct kv_stats st;
    kv_cache_stats(c, &st);
    assert_int_equal(st.cow_copies, 0);
    commit(s, tok, np + ng);
    kv_seq_free(s);
    struct kv_seq *t = run(c, &cfg, tok, np + ng + nq, np + ng + nq - 1, &nc);
    assert_int_equal(nc, np + ng);
    kv_seq_free(t);
    kv_cache_stats(c, &st);
    assert_int_equal(st.tokens_hit, np + ng);
    kv_cache_free(c);
}

/* ==== Randomized run against a reference model ==== */

#define RMAX_SEQ  6
#define RMAX_LEN  48
#define RMAX_HIST 4096 /* more than the steps: every commit is recorded */

struct rseq {
    struct kv_seq *s;
    int32_t tok[RMAX_LEN];
    size_t len;
};

static uint64_t g_rng;
static uint32_t rnd(uint32_t n) {
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(g_rng >> 33) % n;
}

static void randomized(int block_tokens, enum ica_dtype et, size_t budget_blocks, uint64_t seed,
                       int steps) {
    struct kv_config cfg = kvt_config(block_tokens, et, budget_blocks);
    struct kv_cache *c = mk(&cfg);
    struct rseq live[RMAX_SEQ];
    memset(live, 0, sizeof live);
    static int32_t hist[RMAX_HIST][RMAX_LEN];
    static size_t hlen[RMAX_HIST];
    size_t nh = 0;
    struct ica_error err = {0};
    g_rng = seed;
    for (int step = 0; step < steps; step++) {
        int i = (int)rnd(RMAX_SEQ);
        struct rseq *r = &live[i];
        uint32_t op = rnd(10);
        if (!r->s) {
            /* New sequence: a committed history entry, cut and extended. */
            size_t n = 1 + rnd(RMAX_LEN);
            size_t keep = 0;
            if (nh && rnd(4)) {
                size_t h = rnd((uint32_t)nh);
                keep = hlen[h] < n ? hlen[h] : n;
                keep = rnd(3) ? keep : rnd((uint32_t)keep + 1);
                memcpy(r->tok, hist[h], keep * sizeof(int32_t));
            }
            for (size_t p = keep; p < n; p++)
                r->tok[p] = (int32_t)rnd(3);
            size_t max_reuse = rnd(3) ? n : rnd((uint32_t)n + 1);
            size_t nc = 0;
            assert_int_equal(kv_seq_new(c, r->tok, n, max_reuse, &r->s, &nc, &err), ICA_OK);
            assert_true(nc <= n && nc <= max_reuse);
            if (!budget_blocks) { /* nothing evicted: the match is exact */
                size_t want = n < max_reuse ? n : max_reuse, expect = 0;
                for (size_t h = 0; h < nh; h++) {
                    size_t l = lcp(r->tok, want, hist[h], hlen[h]);
                    expect = l > expect ? l : expect;
                }
                assert_int_equal(nc, expect);
            }
            r->len = nc;
            if (kv_seq_reserve(r->s, n - nc, &err) == ICA_OK) {
                kvt_write(r->s, &cfg, r->tok, nc, n);
                r->len = n;
            } else {
                assert_int_equal(err.code, ICA_ERR_NOMEM);
                assert_int_equal(kv_seq_len(r->s), nc);
            }
        } else if (op < 3) { /* decode a few tokens */
            size_t k = 1 + rnd(4);
            if (r->len + k > RMAX_LEN)
                k = RMAX_LEN - r->len;
            if (k && kv_seq_reserve(r->s, k, &err) == ICA_OK) {
                for (size_t p = r->len; p < r->len + k; p++)
                    r->tok[p] = (int32_t)rnd(3);
                assert_true(kv_seq_writable_from(r->s) <= r->len);
                kvt_write(r->s, &cfg, r->tok, r->len, r->len + k);
                r->len += k;
            }
        } else if (op < 6) { /* commit all or part */
            size_t n = rnd(2) ? r->len : rnd((uint32_t)r->len + 1);
            assert_int_equal(kv_seq_commit(r->s, r->tok, n, &err), ICA_OK);
            if (n) {
                assert_true(nh < RMAX_HIST);
                memcpy(hist[nh], r->tok, n * sizeof(int32_t));
                hlen[nh++] = n;
            }
        } else if (op < 8) {
            size_t n = rnd((uint32_t)r->len + 1);
            kv_seq_truncate(r->s, n);
            r->len = n;
        } else {
            kv_seq_free(r->s);
            r->s = NULL;
        }
        for (int j = 0; j < RMAX_SEQ; j++)
            if (live[j].s) {
                assert_int_equal(kv_seq_len(live[j].s), live[j].len);
                size_t bad = kvt_check(live[j].s, &cfg, live[j].tok, 0, live[j].len);
                if (bad != live[j].len)
                    fail_msg("step %d seed %llu: sequence %d position %zu holds wrong K/V", step,
                             (unsigned long long)seed, j, bad);
            }
        struct kv_stats st;
        kv_cache_stats(c, &st);
        assert_int_equal(st.blocks_alloc, st.blocks_in_use + st.blocks_cached + st.blocks_free);
        if (budget_blocks)
            assert_true(st.blocks_alloc <= budget_blocks);
    }
    for (int j = 0; j < RMAX_SEQ; j++)
        kv_seq_free(live[j].s);
    struct kv_stats st;
    kv_cache_stats(c, &st);
    assert_true(st.tokens_hit > 0);
    if (block_tokens > 1)
        assert_true(st.cow_copies > 0);
    if (budget_blocks)
        assert_true(st.evicted_blocks > 0);
    /* Whatever the tree still holds is correct. */
    for (size_t h = 0; h < nh; h++) {
        struct kv_seq *s = NULL;
        size_t nc;
        assert_int_equal(kv_seq_new(c, hist[h], hlen[h], hlen[h], &s, &nc, &err), ICA_OK);
        if (!budget_blocks)
            assert_int_equal(nc, hlen[h]);
        assert_int_equal(kvt_check(s, &cfg, hist[h], 0, nc), nc);
        kv_seq_free(s);
    }
    kv_cache_free(c);
}

static void test_randomized(void **state) {
    (void)state;
    for (uint64_t seed = 1; seed <= 6; seed++) {
        randomized(4, ICA_F32, 0, seed, 3000);
        randomized(3, ICA_F16, 0, seed + 100, 3000);
        randomized(4, ICA_F32, 40, seed + 200, 3000);
        randomized(1, ICA_F16, 100, seed + 300, 3000);
        randomized(8, ICA_F32, 20, seed + 400, 3000);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),           cmocka_unit_test(test_shared_prefix),
        cmocka_unit_test(test_cow_inside_block), cmocka_unit_test(test_longest_prefix_many),
        cmocka_unit_test(test_lru_eviction),     cmocka_unit_test(test_cannot_fit),
        cmocka_unit_test(test_truncate),         cmocka_unit_test(test_turn2_extends_turn1),
        cmocka_unit_test(test_randomized),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
