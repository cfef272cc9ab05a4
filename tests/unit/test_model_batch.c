/* Several sequences in one forward pass: every sequence's logits are
 * bit-identical to running it alone, whatever shares its batch, and a prompt
 * computed in pieces (as with a cached prefix) gives the same bits as in one
 * piece. This is what makes the prefix cache and continuous batching safe. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"

#include "icalign/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A sequence's cache: n_layer x n_ctx positions of K and V (F32). */
struct cache {
    float *k, *v;
    uint32_t kd, vd, n_ctx;
};

static void *ck(void *ud, uint32_t il, uint32_t pos) {
    struct cache *c = ud;
    return c->k + ((size_t)il * c->n_ctx + pos) * c->kd;
}

static void *cv(void *ud, uint32_t il, uint32_t pos) {
    struct cache *c = ud;
    return c->v + ((size_t)il * c->n_ctx + pos) * c->vd;
}

static void cache_init(struct cache *c, const struct model_hparams *hp, uint32_t n_ctx) {
    c->kd = hp->n_head_kv * hp->head_dim;
    c->vd = hp->n_head_kv * hp->head_dim_v;
    c->n_ctx = n_ctx;
    c->k = calloc((size_t)hp->n_layer * n_ctx * c->kd, sizeof(float));
    c->v = calloc((size_t)hp->n_layer * n_ctx * c->vd, sizeof(float));
}

enum { NSEQ = 3, PROMPT = 11, STEPS = 6 };

/* Logits of the last prompt token and of each decode step, per sequence. */
struct trace {
    float *rows; /* [NSEQ][1 + STEPS][V] */
};

static int32_t tok(uint32_t s, uint32_t i, uint32_t V) {
    return (int32_t)((s * 131u + i * 17u + (i * i) % 7u) % V);
}

/* mode 0: each sequence alone; mode 1: all sequences share every batch;
 * mode 2: alone, prompt split in two pieces (3 + rest). Decode feeds fixed
 * tokens, so the three modes must agree bit for bit. */
static void run(struct model_ctx *ctx, const struct model_hparams *hp, int mode, struct trace *tr) {
    const uint32_t V = hp->n_vocab;
    struct cache caches[NSEQ];
    struct model_kv_view views[NSEQ];
    for (int s = 0; s < NSEQ; s++) {
        cache_init(&caches[s], hp, 64);
        views[s] = (struct model_kv_view){ck, cv, &caches[s], NULL};
    }
    int32_t toks[NSEQ * PROMPT];
    uint32_t seq[NSEQ * PROMPT], pos[NSEQ * PROMPT];
    bool dec[NSEQ * PROMPT];
    float *out = malloc((size_t)NSEQ * V * sizeof(float));
    struct ica_error err = {0};
    /* prompts */
    if (mode == 1) {
        uint32_t n = 0;
        for (uint32_t s = 0; s < NSEQ; s++)
            for (uint32_t i = 0; i < PROMPT; i++, n++) {
                toks[n] = tok(s, i, V);
                seq[n] = s;
                pos[n] = i;
                dec[n] = false;
            }
        struct model_batch b = {n, toks, seq, pos, NULL, dec};
        assert_int_equal(model_forward(ctx, views, NSEQ, &b, out, &err), ICA_OK);
        for (uint32_t s = 0; s < NSEQ; s++)
            memcpy(tr->rows + ((size_t)s * (1 + STEPS)) * V, out + (size_t)s * V,
                   V * sizeof(float));
    } else {
        for (uint32_t s = 0; s < NSEQ; s++) {
            uint32_t first = mode == 2 ? 3 : PROMPT;
            for (uint32_t start = 0; start < PROMPT; start += first, first = PROMPT - first) {
                uint32_t n = 0;
                for (uint32_t i = start; i < start + first; i++, n++) {
                    toks[n] = tok(s, i, V);
                    seq[n] = s;
                    pos[n] = i;
                    dec[n] = false;
                }
                struct model_batch b = {n, toks, seq, pos, NULL, dec};
                assert_int_equal(model_forward(ctx, views, NSEQ, &b, out, &err), ICA_OK);
                if (start + first == PROMPT)
                    memcpy(tr->rows + ((size_t)s * (1 + STEPS)) * V, out, V * sizeof(float));
            }
        }
    }
    /* decode steps */
    for (uint32_t step = 0; step < STEPS; step++) {
        if (mode == 1) {
            for (uint32_t s = 0; s < NSEQ; s++) {
                toks[s] = tok(s, 100 + step, V);
                seq[s] = s;
                pos[s] = PROMPT + step;
                dec[s] = true;
            }
            struct model_batch b = {NSEQ, toks, seq, pos, NULL, dec};
            assert_int_equal(model_forward(ctx, views, NSEQ, &b, out, &err), ICA_OK);
            for (uint32_t s = 0; s < NSEQ; s++)
                memcpy(tr->rows + ((size_t)s * (1 + STEPS) + 1 + step) * V, out + (size_t)s * V,
                       V * sizeof(float));
        } else {
            for (uint32_t s = 0; s < NSEQ; s++) {
                toks[0] = tok(s, 100 + step, V);
                seq[0] = s;
                pos[0] = PROMPT + step;
                dec[0] = true;
                struct model_batch b = {1, toks, seq, pos, NULL, dec};
                assert_int_equal(model_forward(ctx, views, NSEQ, &b, out, &err), ICA_OK);
                memcpy(tr->rows + ((size_t)s * (1 + STEPS) + 1 + step) * V, out, V * sizeof(float));
            }
        }
    }
    for (int s = 0; s < NSEQ; s++) {
        free(caches[s].k);
        free(caches[s].v);
    }
    free(out);
}

static void check_model(uint32_t wtype, const char *arch) {
    struct model_synth_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.arch = arch;
    cfg.n_vocab = 300;
    cfg.n_embd = 256;
    cfg.n_layer = 2;
    cfg.n_head = 4;
    cfg.n_head_kv = 2;
    cfg.n_ff = 512;
    cfg.n_ctx = 64;
    cfg.wtype = wtype;
    cfg.seed = 7;
    char path[512];
    snprintf(path, sizeof path, "%s/batch-%s-%u.gguf", tu_tmpdir(), arch, wtype);
    struct ica_error err = {0};
    assert_int_equal(model_synth_write(path, &cfg, &err), ICA_OK);
    struct model *m;
    assert_int_equal(model_load(path, &m, &err), ICA_OK);
    const struct model_hparams *hp = model_get_hparams(m);
    struct model_ctx_params cp = model_ctx_default_params();
    cp.n_ctx = 64;
    cp.n_batch = 64;
    struct model_ctx *ctx;
    assert_int_equal(model_ctx_new(m, &cp, &ctx, &err), ICA_OK);
    const size_t sz = (size_t)NSEQ * (1 + STEPS) * hp->n_vocab * sizeof(float);
    struct trace alone = {malloc(sz)}, shared = {malloc(sz)}, split = {malloc(sz)};
    run(ctx, hp, 0, &alone);
    run(ctx, hp, 1, &shared);
    run(ctx, hp, 2, &split);
    assert_memory_equal(alone.rows, shared.rows, sz);
    assert_memory_equal(alone.rows, split.rows, sz);

    /* the single-sequence API gives the same prompt logits as a batch */
    float *l = malloc(hp->n_vocab * sizeof(float));
    int32_t p[PROMPT];
    for (uint32_t i = 0; i < PROMPT; i++)
        p[i] = tok(0, i, hp->n_vocab);
    assert_int_equal(model_eval(ctx, p, PROMPT, l, false, &err), ICA_OK);
    assert_memory_equal(l, alone.rows, hp->n_vocab * sizeof(float));
    free(l);
    free(alone.rows);
    free(shared.rows);
    free(split.rows);
    model_ctx_free(ctx);
    model_free(m);
}

static void test_batch_invariance(void **state) {
    (void)state;
    /* F32 and F16 weights have different batched and single-token orders:
     * the hard case. Q8_0 and Q4_K take the same path either way. */
    check_model(ICA_F32, "llama");
    check_model(ICA_F16, "llama");
    check_model(ICA_Q8_0, "qwen2");
    check_model(ICA_Q4_K, "llama");
}

static void test_bad_batches(void **state) {
    (void)state;
    struct model_synth_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.arch = "llama";
    cfg.n_vocab = 300;
    cfg.n_embd = 64;
    cfg.n_layer = 1;
    cfg.n_head = 2;
    cfg.n_head_kv = 1;
    cfg.n_ff = 96;
    cfg.wtype = ICA_F32;
    char path[512];
    snprintf(path, sizeof path, "%s/batch-bad.gguf", tu_tmpdir());
    struct ica_error err = {0};
    assert_int_equal(model_synth_write(path, &cfg, &err), ICA_OK);
    struct model *m;
    assert_int_equal(model_load(path, &m, &err), ICA_OK);
    struct model_ctx_params cp = model_ctx_default_params();
    cp.n_ctx = 16;
    cp.n_batch = 8;
    struct model_ctx *ctx;
    assert_int_equal(model_ctx_new(m, &cp, &ctx, &err), ICA_OK);
    struct cache c;
    cache_init(&c, model_get_hparams(m), 16);
    struct model_kv_view v = {ck, cv, &c, NULL};
    float out[2 * 300];
    int32_t toks[2] = {1, 2};
    uint32_t seq[2] = {0, 0}, pos[2] = {0, 2};
    struct model_batch b = {2, toks, seq, pos, NULL, NULL};
    assert_int_equal(model_forward(ctx, &v, 1, &b, out, &err), ICA_ERR_ARG); /* gap */
    pos[1] = 1;
    seq[1] = 3;
    assert_int_equal(model_forward(ctx, &v, 1, &b, out, &err), ICA_ERR_ARG); /* bad seq */
    seq[1] = 0;
    pos[0] = 15;
    pos[1] = 16;
    assert_int_equal(model_forward(ctx, &v, 1, &b, out, &err), ICA_ERR_RANGE);
    assert_non_null(strstr(err.msg, "16"));
    free(c.k);
    free(c.v);
    model_ctx_free(ctx);
    model_free(m);
}

/* model_impl.h's test hook */
void model_attn_force_gather(bool on);

/* Decode logits of one sequence (prompt of 5, then one token per pass up to
 * the end of a context that is not a multiple of 64) with single tokens'
 * attention reading the cache rows in place, and with the gathered copies:
 * identical bits, for F32 and F16 caches and head sizes 64 and 48. */
static void check_attention_paths(uint32_t kv_type, uint32_t n_embd, uint32_t n_head) {
    struct model_synth_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.arch = "llama";
    cfg.n_vocab = 300;
    cfg.n_embd = n_embd;
    cfg.n_layer = 2;
    cfg.n_head = n_head;
    cfg.n_head_kv = 2;
    cfg.n_ff = 128;
    cfg.n_ctx = 256;
    cfg.wtype = ICA_F32; /* no activation rounding hides a last-bit difference */
    cfg.seed = 11;
    char path[512];
    snprintf(path, sizeof path, "%s/attn-%u.gguf", tu_tmpdir(), n_embd);
    struct ica_error err = {0};
    assert_int_equal(model_synth_write(path, &cfg, &err), ICA_OK);
    struct model *m;
    assert_int_equal(model_load(path, &m, &err), ICA_OK);
    const uint32_t V = model_get_hparams(m)->n_vocab, N = 150;
    struct model_ctx_params cp = model_ctx_default_params();
    cp.n_ctx = N;
    cp.kv_type = kv_type;
    float *rows[2];
    for (int g = 0; g < 2; g++) {
        model_attn_force_gather(g == 1);
        struct model_ctx *ctx;
        assert_int_equal(model_ctx_new(m, &cp, &ctx, &err), ICA_OK);
        rows[g] = calloc((size_t)N * V, sizeof(float)); /* rows 1-4 stay 0 */
        int32_t p[5];
        for (uint32_t i = 0; i < 5; i++)
            p[i] = tok(1, i, V);
        assert_int_equal(model_eval(ctx, p, 5, rows[g], false, &err), ICA_OK);
        for (uint32_t i = 5; i < N; i++) {
            const int32_t t = tok(2, i, V);
            assert_int_equal(model_eval(ctx, &t, 1, rows[g] + (size_t)i * V, false, &err), ICA_OK);
        }
        model_ctx_free(ctx);
    }
    model_attn_force_gather(false);
    assert_memory_equal(rows[0], rows[1], (size_t)N * V * sizeof(float));
    free(rows[0]);
    free(rows[1]);
    model_free(m);
}

static void test_attention_paths(void **state) {
    (void)state;
    check_attention_paths(ICA_F32, 256, 4); /* head_dim 64 */
    check_attention_paths(ICA_F16, 256, 4);
    check_attention_paths(ICA_F32, 192, 4); /* head_dim 48 */
    check_attention_paths(ICA_F16, 192, 4);
}

/* A sequence reading a shared prefix cache below `shared_len` and its own
 * cache from there on (what the radix cache does with shared blocks). */
struct pcache {
    uint8_t *k, *v;         /* own rows */
    const uint8_t *sk, *sv; /* the shared prefix's rows */
    uint32_t shared_len, n_ctx;
    size_t krow, vrow; /* bytes a position and layer */
};

static void *pk(void *ud, uint32_t il, uint32_t pos) {
    struct pcache *c = ud;
    const uint8_t *base = pos < c->shared_len ? c->sk : c->k;
    return (void *)(base + ((size_t)il * c->n_ctx + pos) * c->krow);
}

static void *pv(void *ud, uint32_t il, uint32_t pos) {
    struct pcache *c = ud;
    const uint8_t *base = pos < c->shared_len ? c->sv : c->v;
    return (void *)(base + ((size_t)il * c->n_ctx + pos) * c->vrow);
}

enum { GSEQ = 11, GPREFIX = 67, GSTEPS = 7, GCTX = 212 };

/* Decode logits of GSEQ sequences sharing a 67-token prefix (the same rows),
 * with suffixes of different lengths (contexts from 68 to 210 positions:
 * several 64-key rounds, a context past the last multiple of 64, more
 * sequences than one attention pass takes), decoded one sequence per pass
 * and all in one pass: identical bits. */
static void check_group_decode(uint32_t kv_type) {
    struct model_synth_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.arch = "llama";
    cfg.n_vocab = 300;
    cfg.n_embd = 512;
    cfg.n_layer = 2;
    cfg.n_head = 8; /* head_dim 64, 4 query heads a kv head */
    cfg.n_head_kv = 2;
    cfg.n_ff = 128;
    cfg.n_ctx = GCTX;
    cfg.wtype = ICA_F32;
    cfg.seed = 5;
    char path[512];
    snprintf(path, sizeof path, "%s/group-%u.gguf", tu_tmpdir(), kv_type);
    struct ica_error err = {0};
    assert_int_equal(model_synth_write(path, &cfg, &err), ICA_OK);
    struct model *m;
    assert_int_equal(model_load(path, &m, &err), ICA_OK);
    const struct model_hparams *hp = model_get_hparams(m);
    const uint32_t V = hp->n_vocab;
    static const uint32_t suffix[GSEQ] = {1, 20, 60, 61, 100, 125, 136, 3, 40, 64, 129};
    struct model_ctx_params cp = model_ctx_default_params();
    cp.n_ctx = GCTX;
    cp.n_batch = 256;
    cp.kv_type = kv_type;
    struct model_ctx *ctx;
    assert_int_equal(model_ctx_new(m, &cp, &ctx, &err), ICA_OK);
    const size_t es = kv_type == ICA_F16 ? 2 : 4;
    const size_t krow = (size_t)hp->n_head_kv * hp->head_dim * es;
    const size_t vrow = (size_t)hp->n_head_kv * hp->head_dim_v * es;
    const size_t kbytes = (size_t)hp->n_layer * GCTX * krow,
                 vbytes = (size_t)hp->n_layer * GCTX * vrow;
    uint8_t *sk = calloc(1, kbytes), *sv = calloc(1, vbytes);
    struct pcache pc[GSEQ + 1];
    struct model_kv_view views[GSEQ + 1];
    for (uint32_t s = 0; s <= GSEQ; s++) {
        /* view GSEQ writes the shared prefix */
        const bool pre = s == GSEQ;
        pc[s] = (struct pcache){pre ? sk : calloc(1, kbytes),
                                pre ? sv : calloc(1, vbytes),
                                sk,
                                sv,
                                0,
                                GCTX,
                                krow,
                                vrow};
        views[s] = (struct model_kv_view){pk, pv, &pc[s], NULL};
    }
    int32_t toks[256];
    uint32_t seq[256], pos[256];
    bool dec[256] = {false};
    float *out = malloc((size_t)GSEQ * V * sizeof(float));
    for (uint32_t i = 0; i < GPREFIX; i++) {
        toks[i] = tok(9, i, V);
        seq[i] = GSEQ;
        pos[i] = i;
        dec[i] = false;
    }
    struct model_batch b = {GPREFIX, toks, seq, pos, NULL, dec};
    assert_int_equal(model_forward(ctx, views, GSEQ + 1, &b, out, &err), ICA_OK);
    for (uint32_t s = 0; s < GSEQ; s++) {
        pc[s].shared_len = GPREFIX;
        for (uint32_t i = 0; i < suffix[s]; i++) {
            toks[i] = tok(s, i, V);
            seq[i] = s;
            pos[i] = GPREFIX + i;
            dec[i] = false;
        }
        struct model_batch bs = {suffix[s], toks, seq, pos, NULL, dec};
        assert_int_equal(model_forward(ctx, views, GSEQ, &bs, out, &err), ICA_OK);
    }
    /* the same decode steps, one sequence a pass, then all together (the
     * second run overwrites each position's K and V with the same values) */
    const size_t sz = (size_t)GSEQ * GSTEPS * V * sizeof(float);
    float *rows[2] = {malloc(sz), malloc(sz)};
    for (int mode = 0; mode < 2; mode++)
        for (uint32_t step = 0; step < GSTEPS; step++) {
            for (uint32_t s = 0; s < GSEQ; s++) {
                toks[s] = tok(s, 200 + step, V);
                seq[s] = s;
                pos[s] = GPREFIX + suffix[s] + step;
                dec[s] = true;
            }
            if (mode == 0) {
                for (uint32_t s = 0; s < GSEQ; s++) {
                    struct model_batch b1 = {1, toks + s, seq + s, pos + s, NULL, dec + s};
                    assert_int_equal(model_forward(ctx, views, GSEQ, &b1, out, &err), ICA_OK);
                    memcpy(rows[0] + ((size_t)s * GSTEPS + step) * V, out, V * sizeof(float));
                }
            } else {
                struct model_batch ball = {GSEQ, toks, seq, pos, NULL, dec};
                assert_int_equal(model_forward(ctx, views, GSEQ, &ball, out, &err), ICA_OK);
                for (uint32_t s = 0; s < GSEQ; s++)
                    memcpy(rows[1] + ((size_t)s * GSTEPS + step) * V, out + (size_t)s * V,
                           V * sizeof(float));
            }
        }
    assert_memory_equal(rows[0], rows[1], sz);
    /* and the gathered (portable) path agrees with both */
    model_attn_force_gather(true);
    for (uint32_t s = 0; s < GSEQ; s++) {
        toks[0] = tok(s, 200, V);
        seq[0] = s;
        pos[0] = GPREFIX + suffix[s];
        struct model_batch b1 = {1, toks, seq, pos, NULL, dec};
        assert_int_equal(model_forward(ctx, views, GSEQ, &b1, out, &err), ICA_OK);
        assert_memory_equal(out, rows[0] + (size_t)s * GSTEPS * V, V * sizeof(float));
    }
    model_attn_force_gather(false);
    for (uint32_t s = 0; s < GSEQ; s++) {
        free(pc[s].k);
        free(pc[s].v);
    }
    free(sk);
    free(sv);
    free(rows[0]);
    free(rows[1]);
    free(out);
    model_ctx_free(ctx);
    model_free(m);
}

static void test_group_decode(void **state) {
    (void)state;
    check_group_decode(ICA_F32);
    check_group_decode(ICA_F16);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_invariance),
        cmocka_unit_test(test_bad_batches),
        cmocka_unit_test(test_attention_paths),
        cmocka_unit_test(test_group_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
