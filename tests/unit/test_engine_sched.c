/* The scheduler: many requests at once over the shared prefix cache give
 * exactly the tokens each request gets alone without any cache; the shared
 * prefix is computed once; cancellation, a tight KV budget (preemption) and
 * prefix files on disk change nothing in the results. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"

#include "icalign/engine.h"
#include "icalign/kv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NREQ = 6, PREFIX = 40, MAXTOK = 12 };

struct outcome {
    int32_t ids[256];
    uint32_t n;
    enum gen_stop_reason reason;
    int done_calls;
    char streamed[4096];
    size_t streamed_len;
    int err;
};

static bool on_text(void *ud, const char *t, size_t n) {
    struct outcome *o = ud;
    if (o->streamed_len + n < sizeof o->streamed) {
        memcpy(o->streamed + o->streamed_len, t, n);
        o->streamed_len += n;
    }
    return true;
}

static void on_done(void *ud, uint64_t id, struct gen_result *r, const struct ica_error *e) {
    (void)id;
    struct outcome *o = ud;
    o->done_calls++;
    o->err = e ? e->code : 0;
    if (!e) {
        assert_true(r->n_ids <= 256);
        o->n = r->n_ids;
        memcpy(o->ids, r->ids, r->n_ids * sizeof *o->ids);
        o->reason = r->reason;
    }
}

static void prompt_of(int r, uint32_t V, int32_t *p, uint32_t *n) {
    /* a shared prefix, then a few request-specific tokens */
    p[0] = 1;
    for (uint32_t i = 1; i < PREFIX; i++)
        p[i] = (int32_t)(3 + (i * 37u) % (V - 3));
    uint32_t k = PREFIX;
    for (int i = 0; i < 3 + r; i++)
        p[k++] = (int32_t)(3 + ((uint32_t)r * 101u + (uint32_t)i * 13u) % (V - 3));
    *n = k;
}

static struct gen_params params(int r) {
    struct gen_params gp = gen_default_params();
    gp.max_tokens = MAXTOK;
    gp.ignore_eos = true;
    gp.sampling.repetition_penalty = 1.15f;
    if (r % 3 == 2) { /* some requests sample, seeded */
        gp.sampling.temperature = 0.8f;
        gp.sampling.top_p = 0.9f;
        gp.sampling.seed = (uint64_t)r;
    }
    return gp;
}

/* Each request alone, without any cache: the single-sequence generator. */
static void alone(const struct model *m, const struct tok_vocab *v, struct outcome *out) {
    struct ica_error err = {0};
    for (int r = 0; r < NREQ; r++) {
        struct model_ctx_params cp = model_ctx_default_params();
        cp.n_ctx = 128;
        cp.kv_type = engine_default_params().kv_type; /* F16 */
        struct model_ctx *c;
        assert_int_equal(model_ctx_new(m, &cp, &c, &err), ICA_OK);
        int32_t p[PREFIX + 16];
        uint32_t n;
        prompt_of(r, model_get_hparams(m)->n_vocab, p, &n);
        struct gen_params gp = params(r);
        struct gen_result res;
        assert_int_equal(engine_generate(c, v, p, n, &gp, NULL, NULL, &res, &err), ICA_OK);
        out[r].n = res.n_ids;
        memcpy(out[r].ids, res.ids, res.n_ids * sizeof *res.ids);
        out[r].reason = res.reason;
        gen_result_free(&res);
        model_ctx_free(c);
    }
}

static void together(const struct model *m, const struct tok_vocab *v,
                     const struct engine_params *ep, struct outcome *out, struct engine_stats *st) {
    struct ica_error err = {0};
    struct engine *e;
    assert_int_equal(engine_new(m, v, ep, &e, &err), ICA_OK);
    memset(out, 0, NREQ * sizeof *out);
    for (int r = 0; r < NREQ; r++) {
        int32_t p[PREFIX + 16];
        uint32_t n;
        prompt_of(r, model_get_hparams(m)->n_vocab, p, &n);
        struct gen_params gp = params(r);
        uint64_t id;
        assert_int_equal(engine_submit(e, p, n, &gp, on_text, on_done, &out[r], &id, &err), ICA_OK);
        if (r == 1) /* the others join while the first runs */
            assert_int_equal(engine_step(e, &err), ICA_OK);
    }
    assert_int_equal(engine_run(e, &err), ICA_OK);
    assert_int_equal(engine_pending(e), 0);
    engine_get_stats(e, st);
    engine_free(e);
}

static void compare(const struct outcome *a, const struct outcome *b) {
    for (int r = 0; r < NREQ; r++) {
        assert_int_equal(b[r].done_calls, 1);
        assert_int_equal(b[r].err, 0);
        assert_int_equal(a[r].n, b[r].n);
        assert_memory_equal(a[r].ids, b[r].ids, a[r].n * sizeof *a[r].ids);
    }
}

static void run_model(const char *path) {
    struct ica_error err = {0};
    struct model *m;
    assert_int_equal(model_load(path, &m, &err), ICA_OK);
    struct tok_vocab *v;
    assert_int_equal(tok_vocab_from_gguf(model_gguf(m), &v, &err), ICA_OK);
    struct outcome ref[NREQ], got[NREQ];
    alone(m, v, ref);

    struct engine_params ep = engine_default_params();
    ep.n_ctx = 128;
    ep.n_batch = 32; /* prompts span several steps, mixed with decoding */
    ep.block_tokens = 8;
    struct engine_stats st;
    /* one at a time, two, eight at once: the same tokens */
    static const uint32_t widths[] = {1, 2, 8, 4};
    for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) {
        ep.n_seq_max = widths[w];
        together(m, v, &ep, got, &st);
        compare(ref, got);
    }
    /* the shared prefix was computed once, not six times */
    assert_true(st.prompt_tokens_cached >= (NREQ - 2) * (PREFIX - 8));
    /* streamed text equals the pieces of the generated ids */
    for (int r = 0; r < NREQ; r++) {
        char text[4096];
        size_t len = 0;
        for (uint32_t i = 0; i < got[r].n; i++) {
            int32_t k =
                tok_token_to_piece(v, got[r].ids[i], false, 0, text + len, sizeof text - len);
            assert_true(k >= 0);
            len += (size_t)k;
        }
        assert_int_equal(len, got[r].streamed_len);
        assert_memory_equal(text, got[r].streamed, len);
    }

    /* a budget of one full sequence for three: they wait or are preempted,
     * with the same tokens */
    const struct model_hparams *hp = model_get_hparams(m);
    struct kv_config kc = kv_default_config();
    kc.n_layer = (int)hp->n_layer;
    kc.n_head_kv = (int)hp->n_head_kv;
    kc.head_dim = (int)hp->head_dim;
    kc.head_dim_v = (int)hp->head_dim_v;
    kc.block_tokens = 8;
    kc.elem_type = ep.kv_type; /* the engine's default, F16 */
    ep.n_ctx = 64;
    ep.n_seq_max = 3;
    ep.kv_mem = kv_block_bytes(&kc) * (64 / 8 + 3) - 1; /* one full sequence + COW slack */
    struct engine *probe = NULL;
    assert_int_equal(engine_new(m, v, &ep, &probe, &err), ICA_ERR_ARG);
    assert_non_null(strstr(err.msg, "KV budget"));
    ep.kv_mem += 1;
    together(m, v, &ep, got, &st);
    compare(ref, got);

    /* prefix files: a second engine loads the shared prefix from disk */
    char dir[600];
    snprintf(dir, sizeof dir, "%s/prefix-%s", tu_tmpdir(), strrchr(path, '/') + 1);
    ep = engine_default_params();
    ep.n_ctx = 128;
    ep.block_tokens = 8;
    ep.prefix_cache_dir = dir;
    together(m, v, &ep, got, &st);
    compare(ref, got);
    assert_true(st.prefix_files_saved >= 1);
    together(m, v, &ep, got, &st);
    compare(ref, got);
    assert_true(st.prefix_files_loaded >= 1);

    tok_vocab_free(v);
    model_free(m);
}

static void test_same_tokens_as_alone(void **state) {
    (void)state;
    char path[1024];
    tu_require_shared(path, sizeof path, "fixtures/stories260K/stories260K.gguf");
    run_model(path);
    /* F32 weights: batched and single-token orders differ, the hard case */
    tu_require_shared(path, sizeof path, "fixtures/random/rand-llama-f32.gguf");
    run_model(path);
    tu_require_shared(path, sizeof path, "fixtures/random/rand-llama-q8_0.gguf");
    run_model(path);
}

static void test_cancel_and_errors(void **state) {
    (void)state;
    char path[1024];
    tu_require_shared(path, sizeof path, "fixtures/stories260K/stories260K.gguf");
    struct ica_error err = {0};
    struct model *m;
    assert_int_equal(model_load(path, &m, &err), ICA_OK);
    struct tok_vocab *v;
    assert_int_equal(tok_vocab_from_gguf(model_gguf(m), &v, &err), ICA_OK);
    struct engine_params ep = engine_default_params();
    struct engine *e;
    assert_int_equal(engine_new(m, v, &ep, &e, &err), ICA_OK);
    assert_int_equal(engine_n_ctx(e), 128);
    int32_t p[8] = {1, 403, 407, 261, 378, 432, 383, 286};
    struct gen_params gp = gen_default_params();
    gp.max_tokens = 200;
    uint64_t id;
    struct outcome o[2];
    memset(o, 0, sizeof o);
    /* too long for the context: refused at once, naming the numbers */
    assert_int_equal(engine_submit(e, p, 8, &gp, NULL, on_done, &o[0], &id, &err), ICA_ERR_RANGE);
    assert_non_null(strstr(err.msg, "128"));
    gp.max_tokens = 60;
    gp.ignore_eos = true;
    assert_int_equal(engine_submit(e, p, 8, &gp, on_text, on_done, &o[0], &id, &err), ICA_OK);
    uint64_t id2;
    assert_int_equal(engine_submit(e, p, 8, &gp, on_text, on_done, &o[1], &id2, &err), ICA_OK);
    for (int i = 0; i < 5; i++)
        assert_int_equal(engine_step(e, &err), ICA_OK);
    engine_cancel(e, id);
    assert_int_equal(engine_run(e, &err), ICA_OK);
    assert_int_equal(o[0].done_calls, 1);
    assert_int_equal(o[0].reason, GEN_STOP_CANCELLED);
    assert_true(o[0].n < 60);
    assert_int_equal(o[1].done_calls, 1);
    assert_int_equal(o[1].n, 60);
    engine_free(e);
    tok_vocab_free(v);
    model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_tokens_as_alone),
        cmocka_unit_test(test_cancel_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
