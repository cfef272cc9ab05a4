/* AlpacaEval 2.0 scoring: Python random seeding, swap flags, prompt, win rate, fold ids and the
 * length-controlled win rate against the phi-2 dev example and the published leaderboard. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "icalign/eval.h"
#include "testutil.h"

#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void hex(const uint8_t *d, size_t n, char *out) {
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void test_sha512_vectors(void **state) {
    (void)state;
    uint8_t h[64];
    char s[129];
    eval_sha512("abc", 3, h);
    hex(h, 64, s);
    assert_string_equal(s, "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                           "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
    eval_sha512("", 0, h);
    hex(h, 64, s);
    assert_string_equal(s, "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
                           "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e");
    const char *m = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnop"
                    "jklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    eval_sha512(m, strlen(m), h);
    hex(h, 64, s);
    assert_string_equal(s, "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
                           "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909");
    /* 1,000,000 x 'a' exercises many blocks */
    char *big = malloc(1000000);
    assert_non_null(big);
    memset(big, 'a', 1000000);
    eval_sha512(big, 1000000, h);
    free(big);
    hex(h, 64, s);
    assert_string_equal(s, "e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973eb"
                           "de0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b");
}

static void test_mt19937(void **state) {
    (void)state;
    struct eval_mt19937 r;
    /* reference mt19937ar.c: init_by_array({0x123, 0x234, 0x345, 0x456}) first outputs */
    uint32_t key[4] = {0x123, 0x234, 0x345, 0x456};
    eval_mt19937_seed_array(&r, key, 4);
    assert_int_equal(eval_mt19937_next(&r), 1067595299U);
    assert_int_equal(eval_mt19937_next(&r), 955945823U);
    assert_int_equal(eval_mt19937_next(&r), 477289528U);
    /* C++ std::mt19937 default seed 5489: the 10000th output is 4123659995 */
    eval_mt19937_seed(&r, 5489);
    uint32_t v = 0;
    for (int i = 0; i < 10000; i++)
        v = eval_mt19937_next(&r);
    assert_int_equal(v, 4123659995U);
    /* Python: random.seed(0) keys init_by_array with [0]; random.random() = 0.8444218515250481 */
    uint32_t zero = 0;
    eval_mt19937_seed_array(&r, &zero, 1);
    assert_true(eval_pyrandom_random(&r) == 0.8444218515250481);
    /* Python: random.Random("a").random() == 0.2720295377534757 (str seed, version 2), and
     * random.Random("").random() == 0.9602256525641875 (key = sha512 digest alone) */
    eval_pyrandom_seed_str(&r, "a", 1);
    assert_true(eval_pyrandom_random(&r) == 0.2720295377534757);
    eval_pyrandom_seed_str(&r, "", 0);
    assert_true(eval_pyrandom_random(&r) == 0.9602256525641875);
    /* sklearn: RandomState(123).randint(2**31 - 1) */
    assert_int_equal(eval_sklearn_liblinear_seed(123), 843828734U);
}

static void test_switch_flags(void **state) {
    (void)state;
    char path[1024];
    tu_require_shared(path, sizeof path,
                      "data/alpaca_eval/derived/is_switched_outputs_seed0.jsonl");
    size_t n = 0, nsw = 0, bad = 0;
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    char *ln = NULL;
    size_t cap = 0;
    while (getline(&ln, &cap, fp) > 0) {
        json_object *o = json_tokener_parse(ln);
        assert_non_null(o);
        json_object *ins, *flag;
        assert_true(json_object_object_get_ex(o, "instruction", &ins));
        assert_true(json_object_object_get_ex(o, "is_switched_outputs", &flag));
        bool want = json_object_get_boolean(flag);
        bool got = eval_ae_is_switched(json_object_get_string(ins), "0");
        if (got != want)
            bad++;
        nsw += got;
        n++;
        json_object_put(o);
    }
    free(ln);
    fclose(fp);
    assert_int_equal(n, 805);
    assert_int_equal(bad, 0);
    assert_int_equal(nsw, 406);
}

static void test_fold_ids(void **state) {
    (void)state;
    char path[1024];
    tu_require_shared(path, sizeof path, "data/alpaca_eval/derived/groupkfold_fold_ids.json");
    json_object *root = json_object_from_file(path), *folds;
    assert_non_null(root);
    assert_true(json_object_object_get_ex(root, "folds", &folds));
    int checked = 0;
    json_object_object_foreach(folds, key, val) {
        size_t n = (size_t)strtol(key, NULL, 10);
        const char *want = json_object_get_string(val);
        assert_int_equal(strlen(want), n);
        int *f = malloc(n * sizeof *f);
        assert_non_null(f);
        assert_int_equal(eval_groupkfold_equal(n, 5, f), 0);
        for (size_t i = 0; i < n; i++)
            if (f[i] != want[i] - '0') {
                fail_msg("n=%zu group %zu: fold %d, want %c", n, i, f[i], want[i]);
            }
        free(f);
        checked++;
    }
    assert_int_equal(checked, 6);
    json_object_put(root);
}

static void test_prompt(void **state) {
    (void)state;
    char path[1024];
    tu_require_shared(path, sizeof path,
                      "data/alpaca_eval/annotator/alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt");
    char *tmpl = tu_read_file(path, NULL);
    assert_non_null(tmpl);
    char *sys, *user;
    struct ica_error e;
    /* a later placeholder inside an inserted value is the one replaced (make_prompts order) */
    assert_int_equal(
        eval_ae_render_prompt(tmpl, "Say {output_2}", "first", "second", &sys, &user, &e), 0);
    assert_string_equal(sys, "You are a highly efficient assistant, who evaluates and selects the "
                             "best large language model (LLMs) based on the quality of their "
                             "responses to a given instruction. This process will be used to "
                             "create a leaderboard reflecting the most accurate and "
                             "human-preferred answers.");
    assert_non_null(strstr(user, "\"instruction\": \"\"\"Say second\"\"\""));
    assert_non_null(
        strstr(user, "\"model_identifier\": \"m\",\n        \"output\": \"\"\"first\"\"\""));
    assert_non_null(strstr(user, "\"output\": \"\"\"{output_2}\"\"\""));
    assert_true(strncmp(user, "I require a leaderboard", 23) == 0);
    size_t ul = strlen(user);
    assert_true(ul > 24 && !strcmp(user + ul - 24, "## Best Model Identifier"));
    free(sys);
    free(user);
    free(tmpl);
}

static void test_preference(void **state) {
    (void)state;
    struct eval_logprob top[3] = {{"m", log(0.75)}, {"M", log(0.25)}, {"x", -1}};
    /* first slot (m) preferred with p = 0.75 -> raw 1.25; switched -> 1.75 */
    assert_true(fabs(eval_ae_preference(top, 3, false) - 1.25) < 1e-15);
    assert_true(fabs(eval_ae_preference(top, 3, true) - 1.75) < 1e-15);
    struct eval_logprob only_M[1] = {{"M", -0.1}};
    assert_true(eval_ae_preference(only_M, 1, false) == 2.0);
    struct eval_logprob none[2] = {{" m", -0.1}, {"mm", -2}};
    assert_true(isnan(eval_ae_preference(none, 2, false)));
}

static void test_winrate_small(void **state) {
    (void)state;
    double p[6] = {1.0, 2.0, 1.5, 0.0, NAN, 1.7};
    struct eval_ae_winrate w;
    eval_ae_winrate(p, 6, &w);
    /* valid: 1, 2, 1.5, 1.5 (0 -> draw), 1.7 -> q = 0, 1, .5, .5, .7 */
    assert_int_equal(w.n_total, 5);
    assert_int_equal(w.n_draws, 2);
    assert_int_equal(w.n_wins, 2);
    assert_int_equal(w.n_wins_base, 1);
    assert_true(fabs(w.win_rate - 54.0) < 1e-12);
    /* discrete: 1.7 -> 2 */
    assert_true(fabs(w.discrete_win_rate - 60.0) < 1e-12);
}

static double jnum(json_object *o, const char *k) {
    json_object *v;
    assert_true(json_object_object_get_ex(o, k, &v));
    return json_object_get_double(v);
}

static void test_phi2(void **state) {
    (void)state;
    char ann[1024], exp[1024], gam[1024], csv[1024], mo[1024];
    tu_require_shared(ann, sizeof ann, "data/alpaca_eval/dev_example/phi-2/annotations.json");
    tu_require_shared(exp, sizeof exp, "data/alpaca_eval/dev_example/phi-2/expected.json");
    tu_require_shared(gam, sizeof gam, "data/alpaca_eval/length_controlled/df_gamed.csv");
    tu_require_shared(csv, sizeof csv,
                      "data/alpaca_eval/dev_example/phi-2/expected_glm_preferences.csv");
    tu_require_shared(mo, sizeof mo, "data/alpaca_eval/dev_example/phi-2/model_outputs.json");
    struct ica_error e;
    struct eval_ae_annotations *a;
    assert_int_equal(eval_ae_annotations_read(ann, &a, &e), 0);
    json_object *ex = json_object_from_file(exp), *pub, *rec;
    assert_non_null(ex);
    assert_true(json_object_object_get_ex(ex, "published_leaderboard_row", &pub));
    assert_true(json_object_object_get_ex(ex, "independent_recomputation", &rec));
    double *pref = malloc(a->n * sizeof *pref);
    size_t *l1 = malloc(a->n * sizeof *l1), *l2 = malloc(a->n * sizeof *l2);
    for (size_t i = 0; i < a->n; i++) {
        pref[i] = a->rows[i].preference;
        l1[i] = a->rows[i].len_1;
        l2[i] = a->rows[i].len_2;
    }
    struct eval_ae_winrate w;
    eval_ae_winrate(pref, a->n, &w);
    assert_true(fabs(w.win_rate - jnum(pub, "win_rate")) < 1e-9);
    assert_true(fabs(w.standard_error - jnum(pub, "standard_error")) < 1e-9);
    assert_true(fabs(w.discrete_win_rate - jnum(pub, "discrete_win_rate")) < 1e-9);
    assert_int_equal(w.n_wins, (size_t)jnum(pub, "n_wins"));
    assert_int_equal(w.n_wins_base, (size_t)jnum(pub, "n_wins_base"));
    assert_int_equal(w.n_draws, (size_t)jnum(pub, "n_draws"));
    assert_int_equal(w.n_total, (size_t)jnum(pub, "n_total"));

    /* avg_length from model_outputs.json (today's file; the published 626 predates a fix) */
    json_object *outs = json_object_from_file(mo);
    assert_non_null(outs);
    double tot = 0;
    size_t no = json_object_array_length(outs);
    for (size_t i = 0; i < no; i++) {
        json_object *o = json_object_array_get_idx(outs, i), *t;
        assert_true(json_object_object_get_ex(o, "output", &t));
        tot += (double)eval_utf8_len(json_object_get_string(t));
    }
    assert_int_equal((long)(tot / (double)no), (long)jnum(rec, "avg_length_from_model_outputs"));
    json_object_put(outs);

    struct eval_ae_lcdata *d;
    assert_int_equal(eval_ae_lcdata_read(gam, &d, &e), 0);
    struct eval_ae_lc lc;
    int rc = eval_ae_length_controlled(d, pref, l1, l2, a->n, false, &lc, &e);
    if (rc)
        fail_msg("%s", e.msg);
    json_object *cvs;
    assert_true(json_object_object_get_ex(rec, "cv_mean_score_per_C", &cvs));
    for (int c = 0; c < EVAL_LC_NC; c++)
        printf("C[%d]=%.13g cv %.17g (expected %.17g)\n", c, lc.cs[c], lc.cv_score[c],
               json_object_get_double(json_object_array_get_idx(cvs, (size_t)c)));
    printf("best C %d, n_train %zu, w = %.17g %.17g %.17g\n", lc.best_c, lc.n_train, lc.w_len,
           lc.w_id, lc.w_m);
    printf("LC %.15f (published %.15f, diff %.3g points); SE %.15f (recomputed %.15f)\n",
           lc.winrate, jnum(pub, "length_controlled_winrate"),
           lc.winrate - jnum(pub, "length_controlled_winrate"), lc.standard_error,
           jnum(rec, "lc_standard_error"));
    assert_int_equal(lc.n_train, (size_t)jnum(rec, "n_training_rows"));
    assert_int_equal(lc.best_c, (int)jnum(rec, "cv_best_C_index"));
    for (int c = 0; c < EVAL_LC_NC; c++)
        assert_true(fabs(lc.cv_score[c] -
                         json_object_get_double(json_object_array_get_idx(cvs, (size_t)c))) < 1e-9);
    json_object *gw;
    assert_true(json_object_object_get_ex(ex, "published_glm_weights_row", &gw));
    assert_true(fabs(lc.w_len - jnum(gw, "np.tanh(std_delta_len)")) < 1e-9);
    assert_true(fabs(lc.w_id - jnum(gw, "instruction_difficulty")) < 1e-9);
    assert_true(fabs(lc.w_m - jnum(gw, "not_gamed_baseline.astype(float)")) < 1e-9);
    assert_true(fabs(lc.winrate - jnum(pub, "length_controlled_winrate")) < 0.01);
    assert_true(fabs(lc.winrate - jnum(pub, "length_controlled_winrate")) < 1e-9);
    assert_true(fabs(lc.standard_error - jnum(rec, "lc_standard_error")) < 1e-9);

    /* per-row GLM preferences */
    FILE *fp = fopen(csv, "r");
    assert_non_null(fp);
    char line[256];
    size_t row = 0;
    double maxd = 0;
    assert_non_null(fgets(line, sizeof line, fp)); /* header */
    while (fgets(line, sizeof line, fp)) {
        char *c = strchr(line, ',');
        assert_non_null(c);
        long idx = strtol(line, NULL, 10);
        double v = strtod(c + 1, NULL);
        assert_int_equal(idx, (long)row);
        assert_true(row < lc.n);
        double dd = fabs(v - lc.glm_pref[row]);
        if (dd > maxd)
            maxd = dd;
        row++;
    }
    fclose(fp);
    printf("GLM preferences: %zu rows, max |diff| %.3g\n", row, maxd);
    assert_int_equal(row, a->n);
    assert_true(maxd < 1e-12);

    /* the baseline against itself */
    struct eval_ae_lc lb;
    assert_int_equal(eval_ae_length_controlled(d, pref, l1, l2, a->n, true, &lb, &e), 0);
    assert_true(lb.winrate == 50 && lb.w_m == 0);
    free(lb.glm_pref);

    free(lc.glm_pref);
    eval_ae_lcdata_free(d);
    json_object_put(ex);
    free(pref);
    free(l1);
    free(l2);
    eval_ae_annotations_free(a);
}

static void test_annotation_errors(void **state) {
    (void)state;
    struct ica_error e;
    struct eval_ae_annotations *a;
    const char *bad1 = "[{\"instruction\":\"x\",\"output_1\":\"a\",\"output_2\":\"b\"},"
                       " {\"instruction\":\"y\",\"output_1\":1,\"output_2\":\"b\"}]";
    assert_int_not_equal(eval_ae_annotations_parse(bad1, strlen(bad1), "ann.json", &a, &e), 0);
    assert_null(a);
    assert_non_null(strstr(e.msg, "ann.json: record 1"));
    assert_non_null(strstr(e.msg, "output_1"));
    const char *bad2 = "[{\"instruction\":\"x\",\"output_1\":\"a\",\"output_2\":\"b\","
                       "\"preference\":\"2\"}]";
    assert_int_not_equal(eval_ae_annotations_parse(bad2, strlen(bad2), "ann.json", &a, &e), 0);
    assert_non_null(strstr(e.msg, "record 0"));
    const char *bad3 = "[{\"instruction\":\"x\"";
    assert_int_not_equal(eval_ae_annotations_parse(bad3, strlen(bad3), "ann.json", &a, &e), 0);
    assert_non_null(strstr(e.msg, "ann.json"));
    const char *ok = "[{\"instruction\":\"x\",\"output_1\":\"h\\u00e9\",\"output_2\":\"b\","
                     "\"preference\":null,\"generator_2\":\"m\"}]";
    assert_int_equal(eval_ae_annotations_parse(ok, strlen(ok), "ann.json", &a, &e), 0);
    assert_int_equal(a->n, 1);
    assert_true(isnan(a->rows[0].preference));
    assert_int_equal(a->rows[0].len_1, 2);
    eval_ae_annotations_free(a);
    struct eval_ae_lcdata *d;
    const char *csv = "preference,index,std_delta_len,instruction_difficulty,not_gamed_baseline\n"
                      "0.5,0,1.0,0.1,False\n0.5,x,1.0,0.1,False\n";
    assert_int_not_equal(eval_ae_lcdata_parse(csv, strlen(csv), "g.csv", &d, &e), 0);
    assert_non_null(strstr(e.msg, "g.csv:3"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha512_vectors),
        cmocka_unit_test(test_mt19937),
        cmocka_unit_test(test_switch_flags),
        cmocka_unit_test(test_fold_ids),
        cmocka_unit_test(test_prompt),
        cmocka_unit_test(test_preference),
        cmocka_unit_test(test_winrate_small),
        cmocka_unit_test(test_phi2),
        cmocka_unit_test(test_annotation_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
