/* Sampling semantics (METHOD.md §2.3): the repetition penalty acts on the
 * set of token ids of prompt + output (presence, not count), divides positive
 * and multiplies negative logits, before temperature; OpenAI penalties act on
 * generated tokens only; greedy ties go to the lowest id; sampling is
 * deterministic for a seed and respects top-k / top-p / min-p. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "icalign/sample.h"

#include <math.h>
#include <string.h>

enum { V = 8 };

static struct sampler *make(struct sampler_params p) {
    struct ica_error err = {0};
    struct sampler *s = sampler_new(&p, V, &err);
    assert_non_null(s);
    return s;
}

static void test_repetition_penalty_set(void **state) {
    (void)state;
    struct sampler_params p = sampler_default_params();
    p.repetition_penalty = 2.0f;
    struct sampler *s = make(p);
    const int32_t prompt[] = {1, 1, 1, 3}; /* id 1 three times: still one member of the set */
    sampler_accept_prompt(s, prompt, 4);
    sampler_accept(s, 5);
    sampler_accept(s, 5);
    float l[V] = {1.0f, 4.0f, 0.0f, -2.0f, 3.0f, 6.0f, -1.0f, 0.5f};
    sampler_apply_penalties(s, l);
    assert_true(l[0] == 1.0f);  /* not in the set */
    assert_true(l[1] == 2.0f);  /* prompt, positive: divided once, not three times */
    assert_true(l[3] == -4.0f); /* prompt, negative: multiplied */
    assert_true(l[5] == 3.0f);  /* generated twice: still divided once */
    assert_true(l[2] == 0.0f && l[6] == -1.0f && l[7] == 0.5f);
    sampler_free(s);
}

static void test_openai_penalties_output_only(void **state) {
    (void)state;
    struct sampler_params p = sampler_default_params();
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    struct sampler *s = make(p);
    const int32_t prompt[] = {2};
    sampler_accept_prompt(s, prompt, 1);
    sampler_accept(s, 4);
    sampler_accept(s, 4);
    sampler_accept(s, 6);
    float l[V] = {0};
    sampler_apply_penalties(s, l);
    assert_true(l[2] == 0.0f);                /* prompt tokens are not penalised */
    assert_true(l[4] == -(2 * 0.5f + 0.25f)); /* count x frequency + presence */
    assert_true(l[6] == -(1 * 0.5f + 0.25f));
    sampler_free(s);
}

static void test_greedy_and_ties(void **state) {
    (void)state;
    struct sampler *s = make(sampler_default_params());
    float l[V] = {0, 5, 2, 5, 1, 0, 0, 0};
    assert_int_equal(sampler_sample(s, l), 1); /* tie between 1 and 3: lowest id */
    sampler_free(s);
    /* the penalty changes the greedy choice, applied before the argmax */
    struct sampler_params p = sampler_default_params();
    p.repetition_penalty = 1.15f;
    s = make(p);
    const int32_t prompt[] = {1};
    sampler_accept_prompt(s, prompt, 1);
    float l2[V] = {0, 5, 4.5f, 0, 0, 0, 0, 0};
    assert_int_equal(sampler_sample(s, l2), 2); /* 5 / 1.15 < 4.5 */
    sampler_free(s);
}

static int draw_counts(struct sampler_params p, int *counts, int n) {
    struct sampler *s = make(p);
    memset(counts, 0, V * sizeof *counts);
    for (int i = 0; i < n; i++) {
        float l[V] = {3.0f, 2.9f, 2.8f, 1.0f, 0.5f, -1.0f, -2.0f, -3.0f};
        counts[sampler_sample(s, l)]++;
    }
    sampler_free(s);
    int used = 0;
    for (int t = 0; t < V; t++)
        used += counts[t] > 0;
    return used;
}

static void test_sampling_filters_and_seed(void **state) {
    (void)state;
    int c[V], c2[V];
    struct sampler_params p = sampler_default_params();
    p.temperature = 1.0f;
    p.seed = 42;
    assert_true(draw_counts(p, c, 4000) >= 6); /* plain sampling reaches the tail */
    /* same seed, same draws */
    draw_counts(p, c2, 4000);
    assert_memory_equal(c, c2, sizeof c);
    p.top_k = 2;
    assert_int_equal(draw_counts(p, c, 2000), 2);
    assert_true(c[0] > 0 && c[1] > 0);
    p.top_k = 0;
    p.top_p = 0.5f; /* the two best tokens already hold more than half the mass */
    draw_counts(p, c, 2000);
    assert_true(c[3] == 0 && c[4] == 0 && c[7] == 0);
    p.top_p = 1.0f;
    p.min_p = 0.5f; /* keeps tokens with at least half the top probability */
    draw_counts(p, c, 2000);
    assert_true(c[0] > 0 && c[1] > 0 && c[2] > 0);
    assert_int_equal(c[3] + c[4] + c[5] + c[6] + c[7], 0);
    /* low temperature concentrates on the argmax */
    p.min_p = 0.0f;
    p.temperature = 0.01f;
    draw_counts(p, c, 500);
    assert_true(c[0] > 490);
}

static void test_bad_params(void **state) {
    (void)state;
    struct sampler_params p = sampler_default_params();
    p.repetition_penalty = 0.0f;
    struct ica_error err = {0};
    assert_null(sampler_new(&p, V, &err));
    assert_int_equal(err.code, ICA_ERR_ARG);
    p = sampler_default_params();
    p.temperature = NAN;
    assert_null(sampler_new(&p, V, &err));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repetition_penalty_set),
        cmocka_unit_test(test_openai_penalties_output_only),
        cmocka_unit_test(test_greedy_and_ties),
        cmocka_unit_test(test_sampling_filters_and_seed),
        cmocka_unit_test(test_bad_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
