/* Golden tests: logits of every fixture model against llama.cpp's reference
 * files (../shared/fixtures, see its README for formats and tolerances).
 *
 * For each model M with M.p1.json: feed prompt_ids followed by
 * greedy_ids[0..N-2] and compare every row with M.p1.logits.f32 (prompt
 * rows) and M.p1.gen-logits.f32 (generation rows). Two schedules are run:
 * the whole sequence in one batch, and the reference's own schedule (prompt
 * in one batch, then one token per evaluation through the KV cache). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"

#include "icalign/engine.h"
#include "icalign/model.h"
#include "icalign/tok.h"

#include <dirent.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct ref {
    int32_t *prompt;
    size_t n_prompt;
    int32_t *greedy;
    size_t n_greedy;
    float *prompt_logits; /* n_prompt x V */
    float *gen_logits;    /* n_greedy x V */
};

static int32_t *json_ids(json_object *arr, size_t *n) {
    *n = json_object_array_length(arr);
    int32_t *ids = malloc(*n * sizeof *ids + 1);
    for (size_t i = 0; i < *n; i++)
        ids[i] = json_object_get_int(json_object_array_get_idx(arr, i));
    return ids;
}

/* Loads dir/name.{tag}.json and its logits files; 0 if absent. */
static int load_ref(const char *base, const char *tag, uint32_t V, struct ref *r) {
    char p[1024];
    memset(r, 0, sizeof *r);
    snprintf(p, sizeof p, "%s.%s.json", base, tag);
    json_object *j = json_object_from_file(p);
    if (!j)
        return 0;
    json_object *a;
    assert_true(json_object_object_get_ex(j, "prompt_ids", &a));
    r->prompt = json_ids(a, &r->n_prompt);
    assert_true(json_object_object_get_ex(j, "greedy_ids", &a));
    r->greedy = json_ids(a, &r->n_greedy);
    json_object_put(j);
    size_t len;
    snprintf(p, sizeof p, "%s.%s.logits.f32", base, tag);
    r->prompt_logits = tu_read_file(p, &len);
    assert_non_null(r->prompt_logits);
    assert_int_equal(len, r->n_prompt * V * sizeof(float));
    snprintf(p, sizeof p, "%s.%s.gen-logits.f32", base, tag);
    r->gen_logits = tu_read_file(p, &len);
    assert_non_null(r->gen_logits);
    assert_int_equal(len, r->n_greedy * V * sizeof(float));
    return 1;
}

static void free_ref(struct ref *r) {
    free(r->prompt);
    free(r->greedy);
    free(r->prompt_logits);
    free(r->gen_logits);
}

static double tolerance_for(const struct model *m) {
    /* The weight type of the matrices decides the activation rounding. */
    const struct gguf_tensor *t = gguf_find_tensor(model_gguf(m), "blk.0.attn_q.weight");
    assert_non_null(t);
    if (t->type == ICA_F32)
        return 1e-3;
    if (t->type == ICA_F16 || t->type == ICA_BF16)
        return 0.15;
    return 0.3;
}

/* Row comparison: max |diff| and argmax agreement where the reference's
 * top-1 margin exceeds twice the observed error. */
static void compare_rows(const char *name, const char *what, const float *got, const float *want,
                         size_t rows, uint32_t V, double *max_err, size_t *argmax_checked) {
    for (size_t r = 0; r < rows; r++) {
        const float *g = got + r * V, *w = want + r * V;
        double e = 0;
        uint32_t ag = 0, aw = 0, second = UINT32_MAX;
        for (uint32_t i = 0; i < V; i++) {
            double d = fabs((double)g[i] - (double)w[i]);
            if (!(d <= e))
                e = isnan(d) ? INFINITY : d;
            if (g[i] > g[ag])
                ag = i;
            if (w[i] > w[aw])
                aw = i;
        }
        for (uint32_t i = 0; i < V; i++)
            if (i != aw && (second == UINT32_MAX || w[i] > w[second]))
                second = i;
        const double margin = (double)w[aw] - (double)w[second];
        if (e > *max_err)
            *max_err = e;
        if (margin > 2 * e) {
            (*argmax_checked)++;
            if (ag != aw)
                fail_msg("%s %s row %zu: argmax %u, reference %u (margin %g, error %g)", name, what,
                         r, ag, aw, margin, e);
        }
    }
}

struct result {
    char name[64];
    double err_batch, err_seq, tol;
    size_t rows, argmax_checked;
};

static struct result g_results[64];
static int g_failures;
static size_t g_n_results;

static void run_model(const char *dir, const char *name) {
    char base[900], path[1024];
    snprintf(base, sizeof base, "%s/%s", dir, name);
    snprintf(path, sizeof path, "%s.gguf", base);
    struct ica_error err = {0};
    struct model *m;
    if (model_load(path, &m, &err) != ICA_OK)
        fail_msg("%s", err.msg);
    const uint32_t V = model_get_hparams(m)->n_vocab;
    struct ref r;
    assert_true(load_ref(base, "p1", V, &r));
    const size_t n_all = r.n_prompt + r.n_greedy - 1;
    int32_t *all = malloc(n_all * sizeof *all);
    memcpy(all, r.prompt, r.n_prompt * sizeof *all);
    memcpy(all + r.n_prompt, r.greedy, (r.n_greedy - 1) * sizeof *all);
    float *logits = malloc(n_all * V * sizeof *logits);
    struct result *res = &g_results[g_n_results++];
    snprintf(res->name, sizeof res->name, "%s", name);
    res->tol = tolerance_for(m);
    res->rows = n_all;

    /* Schedule 1: one batch. */
    struct model_ctx_params cp = model_ctx_default_params();
    cp.n_ctx = (uint32_t)n_all + 8;
    struct model_ctx *c;
    assert_int_equal(model_ctx_new(m, &cp, &c, &err), ICA_OK);
    if (model_eval(c, all, (uint32_t)n_all, logits, true, &err) != ICA_OK)
        fail_msg("%s", err.msg);
    compare_rows(name, "prompt", logits, r.prompt_logits, r.n_prompt, V, &res->err_batch,
                 &res->argmax_checked);
    compare_rows(name, "gen", logits + (r.n_prompt - 1) * V, r.gen_logits, r.n_greedy, V,
                 &res->err_batch, &res->argmax_checked);

    /* Schedule 2: prompt batch, then one token at a time. */
    model_ctx_truncate(c, 0);
    assert_int_equal(model_eval(c, r.prompt, (uint32_t)r.n_prompt, logits, true, &err), ICA_OK);
    for (size_t s = 1; s < r.n_greedy; s++)
        assert_int_equal(
            model_eval(c, &r.greedy[s - 1], 1, logits + (r.n_prompt - 1 + s) * V, false, &err),
            ICA_OK);
    compare_rows(name, "prompt(seq)", logits, r.prompt_logits, r.n_prompt, V, &res->err_seq,
                 &res->argmax_checked);
    compare_rows(name, "gen(seq)", logits + (r.n_prompt - 1) * V, r.gen_logits, r.n_greedy, V,
                 &res->err_seq, &res->argmax_checked);
    printf("  %-24s max|diff| batch %.3g, sequential %.3g (tolerance %.3g, %zu rows)\n", name,
           res->err_batch, res->err_seq, res->tol, n_all);
    if (!(res->err_batch <= res->tol) || !(res->err_seq <= res->tol)) {
        printf("  FAIL %s: logits differ from llama.cpp by %g / %g > %g\n", name, res->err_batch,
               res->err_seq, res->tol);
        g_failures++;
    }
    model_ctx_free(c);
    free(all);
    free(logits);
    free_ref(&r);
    model_free(m);
}

static void test_random_fixtures(void **state) {
    (void)state;
    char dir[1024];
    tu_require_shared(dir, sizeof dir, "fixtures/random");
    /* Every model with a reference run, whatever the directory holds. */
    DIR *d = opendir(dir);
    assert_non_null(d);
    char names[64][256];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 64) {
        size_t len = strlen(e->d_name);
        if (len > 5 && len < 200 && strcmp(e->d_name + len - 5, ".gguf") == 0) {
            char json[1400];
            snprintf(json, sizeof json, "%s/%.*s.p1.json", dir, (int)(len - 5), e->d_name);
            if (access(json, R_OK) == 0)
                snprintf(names[n++], sizeof names[0], "%.*s", (int)(len - 5), e->d_name);
        }
    }
    closedir(d);
    qsort(names, n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    assert_true(n >= 1);
    for (size_t i = 0; i < n; i++)
        run_model(dir, names[i]);
    if (g_failures)
        fail_msg("%d fixture(s) outside tolerance", g_failures);
}

static void test_stories260k(void **state) {
    (void)state;
    char dir[1024];
    tu_require_shared(dir, sizeof dir, "fixtures/stories260K");
    g_failures = 0;
    run_model(dir, "stories260K");
    if (g_failures)
        fail_msg("stories260K outside tolerance");

    /* The 64-token greedy continuation of "Once upon a time" is identical. */
    char base[1100], path[1200];
    snprintf(base, sizeof base, "%s/stories260K", dir);
    snprintf(path, sizeof path, "%s.gguf", base);
    struct ica_error err = {0};
    struct model *m;
    assert_int_equal(model_load(path, &m, &err), ICA_OK);
    struct ref r;
    assert_true(load_ref(base, "once", model_get_hparams(m)->n_vocab, &r));
    struct tok_vocab *v = NULL;
    assert_int_equal(tok_vocab_from_gguf(model_gguf(m), &v, &err), ICA_OK);
    struct model_ctx *c;
    struct model_ctx_params cp = model_ctx_default_params();
    assert_int_equal(model_ctx_new(m, &cp, &c, &err), ICA_OK);
    struct gen_params gp = gen_default_params();
    gp.max_tokens = (uint32_t)r.n_greedy;
    gp.ignore_eos = true;
    struct gen_result res;
    assert_int_equal(
        engine_generate(c, v, r.prompt, (uint32_t)r.n_prompt, &gp, NULL, NULL, &res, &err), ICA_OK);
    assert_int_equal(res.n_ids, r.n_greedy);
    for (size_t i = 0; i < r.n_greedy; i++)
        assert_int_equal(res.ids[i], r.greedy[i]);
    gen_result_free(&res);
    model_ctx_free(c);
    tok_vocab_free(v);
    free_ref(&r);
    model_free(m);
}

/* Writes the per-fixture table (docs/ keeps a copy) when asked. */
static void test_report(void **state) {
    (void)state;
    const char *out = getenv("ICALIGN_FIXTURE_REPORT");
    if (!out || !g_n_results)
        return;
    FILE *fp = fopen(out, "w");
    assert_non_null(fp);
    fprintf(fp,
            "| fixture | rows | max abs diff (one batch) | max abs diff (prompt batch + "
            "one token per step) | tolerance | argmax rows checked |\n|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < g_n_results; i++)
        fprintf(fp, "| %s | %zu | %.3g | %.3g | %.3g | %zu |\n", g_results[i].name,
                g_results[i].rows, g_results[i].err_batch, g_results[i].err_seq, g_results[i].tol,
                g_results[i].argmax_checked);
    fclose(fp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_fixtures),
        cmocka_unit_test(test_stories260k),
        cmocka_unit_test(test_report),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
