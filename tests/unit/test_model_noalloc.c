/* The per-token loop allocates nothing: every heap call made by icalign's
 * own code is counted (this test is linked with -Wl,--wrap for malloc,
 * calloc, realloc, posix_memalign and aligned_alloc, see CMakeLists.txt),
 * and decoding 32 more tokens after a warm-up must not add one, both for the
 * single-sequence forward pass (model_eval) and for the scheduler running
 * several sequences over the paged KV cache (engine_step). Models: a Q4_0
 * fixture (repacked weights, threads) and stories260K (F32). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"

#include "icalign/engine.h"
#include "icalign/model.h"
#include "icalign/tok.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_long g_allocs;

void *__real_malloc(size_t n);
void *__real_calloc(size_t a, size_t b);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t a, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t a, size_t b);
void *__wrap_realloc(void *p, size_t n);
int __wrap_posix_memalign(void **p, size_t a, size_t n);
void *__wrap_aligned_alloc(size_t a, size_t n);

void *__wrap_malloc(size_t n) {
    atomic_fetch_add(&g_allocs, 1);
    return __real_malloc(n);
}
void *__wrap_calloc(size_t a, size_t b) {
    atomic_fetch_add(&g_allocs, 1);
    return __real_calloc(a, b);
}
void *__wrap_realloc(void *p, size_t n) {
    atomic_fetch_add(&g_allocs, 1);
    return __real_realloc(p, n);
}
int __wrap_posix_memalign(void **p, size_t a, size_t n) {
    atomic_fetch_add(&g_allocs, 1);
    return __real_posix_memalign(p, a, n);
}
void *__wrap_aligned_alloc(size_t a, size_t n) {
    atomic_fetch_add(&g_allocs, 1);
    return __real_aligned_alloc(a, n);
}

static void eval_loop(const char *rel, int n_threads) {
    char path[1024];
    tu_require_shared(path, sizeof path, rel);
    struct ica_error err = {0};
    struct model *m;
    assert_int_equal(model_load(path, &m, &err), ICA_OK);
    const uint32_t V = model_get_hparams(m)->n_vocab;
    struct model_ctx_params cp = model_ctx_default_params();
    cp.n_ctx = 96;
    cp.n_threads = n_threads;
    struct model_ctx *c;
    assert_int_equal(model_ctx_new(m, &cp, &c, &err), ICA_OK);
    float *logits = malloc((size_t)V * sizeof *logits);
    int32_t prompt[8];
    for (int i = 0; i < 8; i++)
        prompt[i] = (int32_t)(1 + (i * 7) % (V - 1));
    assert_int_equal(model_eval(c, prompt, 8, logits, false, &err), ICA_OK);
    int32_t t = 3;
    assert_int_equal(model_eval(c, &t, 1, logits, false, &err), ICA_OK); /* warm-up */
    const long before = atomic_load(&g_allocs);
    for (int i = 0; i < 32; i++) {
        t = (int32_t)((t * 31 + 7) % V);
        assert_int_equal(model_eval(c, &t, 1, logits, false, &err), ICA_OK);
    }
    const long during = atomic_load(&g_allocs) - before;
    if (during != 0)
        fail_msg("%s: %ld allocations while decoding 32 tokens", rel, during);
    free(logits);
    model_ctx_free(c);
    model_free(m);
}

static void test_eval_q4_0_threads(void **state) {
    (void)state;
    eval_loop("fixtures/random/rand-llama-q4_0.gguf", 2);
}

static void test_eval_stories(void **state) {
    (void)state;
    eval_loop("fixtures/stories260K/stories260K.gguf", 1);
}

struct counter {
    int done;
};

static void on_done(void *ud, uint64_t id, struct gen_result *r, const struct ica_error *e) {
    (void)id;
    (void)r;
    assert_null(e);
    ((struct counter *)ud)->done++;
}

/* Four requests decoding together; after they all run, 560 steps (past
 * several KV blocks and token-array sizes) add no
 * allocation (text streaming off: the caller's callback is not ours). */
static void test_engine_steps(void **state) {
    (void)state;
    char path[1024];
    tu_require_shared(path, sizeof path, "fixtures/random/rand-llama-q4_0.gguf");
    struct ica_error err = {0};
    struct model *m;
    assert_int_equal(model_load(path, &m, &err), ICA_OK);
    struct tok_vocab *v;
    assert_int_equal(tok_vocab_from_gguf(model_gguf(m), &v, &err), ICA_OK);
    const uint32_t V = model_get_hparams(m)->n_vocab;
    struct engine_params ep = engine_default_params();
    ep.n_ctx = 640;
    ep.n_threads = 2;
    struct engine *e;
    assert_int_equal(engine_new(m, v, &ep, &e, &err), ICA_OK);
    struct counter cnt = {0};
    for (int r = 0; r < 4; r++) {
        int32_t p[20];
        for (int i = 0; i < 20; i++)
            p[i] = (int32_t)(1 + (uint32_t)(i < 12 ? i * 5 : i * 5 + r * 11) % (V - 1));
        struct gen_params gp = gen_default_params();
        gp.max_tokens = 600;
        gp.ignore_eos = true;
        gp.sampling.repetition_penalty = 1.1f;
        uint64_t id;
        assert_int_equal(engine_submit(e, p, 20, &gp, NULL, on_done, &cnt, &id, &err), ICA_OK);
    }
    /* admission, prompts and the first decode steps */
    for (int i = 0; i < 8; i++)
        assert_int_equal(engine_step(e, &err), ICA_OK);
    struct engine_stats st0, st1;
    engine_get_stats(e, &st0);
    const long before = atomic_load(&g_allocs);
    for (int i = 0; i < 560; i++)
        assert_int_equal(engine_step(e, &err), ICA_OK);
    const long during = atomic_load(&g_allocs) - before;
    engine_get_stats(e, &st1);
    assert_int_equal(st1.generated_tokens - st0.generated_tokens, 4 * 560);
    if (during != 0)
        fail_msg("%ld allocations in 560 decode steps of 4 sequences", during);
    assert_int_equal(engine_run(e, &err), ICA_OK);
    assert_int_equal(cnt.done, 4);
    engine_free(e);
    tok_vocab_free(v);
    model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eval_q4_0_threads),
        cmocka_unit_test(test_eval_stories),
        cmocka_unit_test(test_engine_steps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
