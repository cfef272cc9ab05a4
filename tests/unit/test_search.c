/* search: greedy forward selection over the cached evaluator, with a fake answering model (its
 * answer lists the markers "<X>" present in the prompt) and a fake judge (the rating is 1 plus
 * the weight of every marker in the judged answer). Known optimum, tie rule, early stop, reuse
 * of every stored answer and judgment, successive halving. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "icalign/search.h"
#include "testutil.h"

#define NM 6
static const char MARK[NM] = {'A', 'B', 'C', 'D', 'E', 'F'};

struct fake {
    struct backend base;
    int judge; /* 0 = answering model, 1 = judge */
    int weight[NM];
    size_t runs, requests;
};

static bool has_mark(const char *s, char m) {
    char pat[4] = {'<', m, '>', 0};
    return strstr(s, pat) != NULL;
}

static int fake_run(struct backend *b, const struct backend_request *reqs, size_t n,
                    backend_stream_fn stream, backend_done_fn done, void *ud,
                    struct ica_error *err) {
    (void)stream;
    (void)err;
    struct fake *f = (struct fake *)b;
    f->runs++;
    for (size_t i = 0; i < n; i++) {
        f->requests++;
        struct backend_result r = {0};
        char buf[256];
        if (!f->judge) {
            /* the answer: the markers in the prompt, in marker order */
            size_t k = 0;
            k += (size_t)snprintf(buf + k, sizeof buf - k, "Sure.");
            for (int m = 0; m < NM; m++)
                if (has_mark(reqs[i].prompt, MARK[m]))
                    k += (size_t)snprintf(buf + k, sizeof buf - k, " <%c>", MARK[m]);
            r.prompt_tokens = (uint32_t)strlen(reqs[i].prompt) / 4;
        } else {
            const char *user = reqs[i].messages[1].content;
            /* only the answer part counts: after "[The Start of Assistant's Answer]" */
            const char *a = strstr(user, "[The Start of Assistant's Answer]");
            assert_non_null(a);
            int s = 1;
            for (int m = 0; m < NM; m++)
                if (has_mark(a, MARK[m]))
                    s += f->weight[m];
            snprintf(buf, sizeof buf, "The answer is fine. Rating: [[%d]]", s);
        }
        r.text = strdup(buf);
        r.text_len = strlen(buf);
        r.finish = BACKEND_FINISH_STOP;
        r.attempts = 1;
        bool go = done(ud, i, &reqs[i], &r, NULL);
        backend_result_free(&r);
        if (!go)
            break;
    }
    return ICA_OK;
}
static int64_t fake_count(struct backend *b, const char *text) {
    (void)b;
    return (int64_t)strlen(text) / 4;
}
static uint32_t fake_ctx(struct backend *b) {
    (void)b;
    return 0;
}
static const char *fake_describe(struct backend *b) {
    return ((struct fake *)b)->judge ? "fake:judge" : "fake:model";
}
static void fake_free(struct backend *b) {
    (void)b;
}
static const struct backend_ops FAKE_OPS = {.kind = "fake",
                                            .run = fake_run,
                                            .count_tokens = fake_count,
                                            .context_size = fake_ctx,
                                            .describe = fake_describe,
                                            .free = fake_free};

struct fixture {
    struct fake model, judge;
    struct eval_mt_prompts *prompts;
    struct search_questions *val;
    struct align_set *base, *pool;
    struct search_answerer ans;
    struct search_judge jd;
    char dir[512];
};

static void append(char *buf, size_t cap, const char *s) {
    size_t n = strlen(buf);
    snprintf(buf + n, cap - n, "%s", s);
}

static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void fixture_init(struct fixture *F, const char *name, const int *w, size_t n_q) {
    memset(F, 0, sizeof *F);
    char jp[512];
    tu_require_shared(jp, sizeof jp, "data/mt_bench/judge_prompts.jsonl");
    struct ica_error e = {0};
    assert_int_equal(eval_mt_prompts_load(jp, &F->prompts, &e), ICA_OK);
    F->model.base.ops = &FAKE_OPS;
    F->judge.base.ops = &FAKE_OPS;
    F->judge.judge = 1;
    memcpy(F->judge.weight, w, sizeof F->judge.weight);
    snprintf(F->dir, sizeof F->dir, "%s/%s", tu_tmpdir(), name);
    char qp[600], pp[600];
    snprintf(qp, sizeof qp, "%s.val.jsonl", F->dir);
    snprintf(pp, sizeof pp, "%s.pool.jsonl", F->dir);
    const char *qs[] = {"{\"question_id\": 1, \"turns\": [\"Name a fruit.\"]}\n",
                        "{\"question_id\": 2, \"turns\": [\"Name a colour.\"]}\n",
                        "{\"id\": \"x3\", \"instruction\": \"Name a city.\"}\n",
                        "{\"question\": \"Name a river.\", \"category\": \"writing\"}\n"};
    char qtext[1024] = "";
    for (size_t i = 0; i < n_q && i < 4; i++)
        append(qtext, sizeof qtext, qs[i]);
    write_text(qp, qtext);
    char pool[2048] = "";
    for (int m = 0; m < NM; m++) {
        char line[200];
        snprintf(line, sizeof line,
                 "{\"id\": \"d%c\", \"query\": \"Demo question %c?\", \"answer\": \"Demo answer "
                 "<%c>.\", \"source\": \"s%d\"}\n",
                 MARK[m], MARK[m], MARK[m], m % 2);
        append(pool, sizeof pool, line);
    }
    write_text(pp, pool);
    assert_int_equal(search_questions_load(qp, NULL, 0, &F->val, &e), ICA_OK);
    assert_int_equal(F->val->n, n_q);
    assert_int_equal(align_pool_load(pp, &F->pool, &e), ICA_OK);
    assert_int_equal(align_spec_load("default", &F->base, &e), ICA_OK);
    F->ans = (struct search_answerer){.backend = &F->model.base,
                                      .model_key = "fake",
                                      .sampling = backend_default_sampling(),
                                      .max_tokens = 16,
                                      .decoding_json = "{}"};
    F->jd = (struct search_judge){
        .backend = &F->judge.base, .prompts = F->prompts, .name = "test-judge", .max_tokens = 8};
}

static void fixture_free(struct fixture *F) {
    eval_mt_prompts_free(F->prompts);
    search_questions_free(F->val);
    align_set_free(F->base);
    align_set_free(F->pool);
}

/* Runs the greedy search on F->dir; returns the result (caller frees). */
static struct search_result *run(struct fixture *F, size_t steps, bool halving, bool after,
                                 struct search_stats *stats) {
    struct ica_error e = {0};
    struct store *st = NULL;
    assert_int_equal(store_open(F->dir, &st, &e), ICA_OK);
    struct search_env *env = NULL;
    assert_int_equal(search_env_new(F->dir, st, &F->ans, &F->jd, F->val, &env, &e), ICA_OK);
    struct store_run_info ri = {.kind = "search", .config = "{\"test\":1}"};
    int64_t run_id = 0;
    assert_int_equal(store_run_open(st, &ri, &run_id, NULL, NULL, &e), ICA_OK);
    struct search_greedy_opts o = {.base = F->base,
                                   .pool = F->pool,
                                   .after = after,
                                   .steps = steps,
                                   .halving = halving,
                                   .run_id = run_id};
    struct search_result *R = NULL;
    int rc = search_greedy(env, &o, &R, &e);
    if (rc)
        fprintf(stderr, "search_greedy: %s\n", e.msg);
    assert_int_equal(rc, ICA_OK);
    *stats = *search_env_stats(env);
    search_env_free(env);
    store_close(st);
    return R;
}

static void test_greedy_optimum_ties_stop_reuse(void **state) {
    (void)state;
    struct fixture F;
    /* A=1, B=3, C=3 (tie with B: B wins, lowest pool index), D=2, E=-1, F=-2 */
    const int w[NM] = {1, 3, 3, 2, -1, -2};
    fixture_init(&F, "greedy", w, 3);
    struct search_stats s1, s2;
    struct search_result *R = run(&F, 10, false, false, &s1);
    assert_int_equal(R->n_selected, 4);
    assert_int_equal(R->selected[0], 1); /* B (tie with C) */
    assert_int_equal(R->selected[1], 2); /* C */
    assert_int_equal(R->selected[2], 3); /* D */
    assert_int_equal(R->selected[3], 0); /* A */
    assert_true(R->base_score == 1.0);
    assert_true(R->final_score == 10.0);
    /* 5 steps: the fifth finds nothing that improves (E, F lower the score) */
    assert_int_equal(R->n_steps, 5);
    assert_int_equal(R->steps[4].chosen, -1);
    assert_int_equal(R->steps[0].n_c, 6);
    assert_true(R->steps[0].c[1].score == 4.0 && R->steps[0].c[2].score == 4.0);
    /* selected demos before the base demos, in selection order */
    size_t nb = align_set_count(F.base);
    assert_int_equal(align_set_count(R->final_set), nb + 4);
    assert_string_equal(align_set_demo(R->final_set, 0)->id, "dB");
    assert_string_equal(align_set_demo(R->final_set, 3)->id, "dA");
    /* base 3 + steps 6,5,4,3,2 candidates x 3 questions */
    uint64_t want = 3 + 3 * (6 + 5 + 4 + 3 + 2);
    assert_int_equal(s1.gen_new, want);
    assert_int_equal(s1.judge_new, want);
    assert_int_equal(F.judge.requests, want);
    assert_int_equal(F.model.runs, 6); /* one backend_run per evaluation */
    search_result_free(R);

    /* rerun: everything comes from the store */
    size_t before = F.model.requests, jbefore = F.judge.requests;
    R = run(&F, 10, false, false, &s2);
    assert_int_equal(s2.gen_new, 0);
    assert_int_equal(s2.judge_new, 0);
    assert_int_equal(s2.gen_cached, want);
    assert_int_equal(s2.judge_cached, want);
    assert_int_equal(F.model.requests, before);
    assert_int_equal(F.judge.requests, jbefore);
    assert_int_equal(R->n_selected, 4);
    assert_int_equal(R->selected[0], 1);
    search_result_free(R);

    /* the steps table holds every candidate's score of every step */
    char db[600];
    snprintf(db, sizeof db, "%s/icalign.db", F.dir);
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(h,
                                        "SELECT count(*), sum(json_array_length(data, "
                                        "'$.candidates')) FROM search_steps",
                                        -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 5);
    assert_int_equal(sqlite3_column_int(q, 1), 6 + 5 + 4 + 3 + 2);
    sqlite3_finalize(q);
    sqlite3_close(h);
    fixture_free(&F);
}

static void test_early_stop_and_after(void **state) {
    (void)state;
    struct fixture F;
    const int w[NM] = {-1, -2, -1, -3, -1, -1};
    fixture_init(&F, "stop", w, 2);
    struct search_stats s;
    struct search_result *R = run(&F, 3, false, false, &s);
    assert_int_equal(R->n_selected, 0);
    assert_int_equal(R->n_steps, 1);
    assert_int_equal(R->steps[0].chosen, -1);
    assert_true(R->final_score == 1.0);
    search_result_free(R);
    fixture_free(&F);

    const int w2[NM] = {0, 0, 0, 0, 0, 5};
    fixture_init(&F, "after", w2, 2);
    R = run(&F, 1, false, true, &s);
    assert_int_equal(R->n_selected, 1);
    assert_int_equal(R->selected[0], 5);
    size_t nb = align_set_count(F.base);
    assert_string_equal(align_set_demo(R->final_set, nb)->id, "dF");
    search_result_free(R);
    fixture_free(&F);
}

static void test_halving(void **state) {
    (void)state;
    struct fixture F;
    const int w[NM] = {1, 2, 0, 6, 3, 0};
    fixture_init(&F, "full", w, 4);
    struct search_stats sf, sh;
    struct search_result *full = run(&F, 2, false, false, &sf);
    fixture_free(&F);
    fixture_init(&F, "halving", w, 4);
    struct search_result *hv = run(&F, 2, true, false, &sh);
    assert_int_equal(full->n_selected, 2);
    assert_int_equal(hv->n_selected, 2);
    assert_int_equal(full->selected[0], 3);
    assert_int_equal(full->selected[1], 4);
    assert_int_equal(hv->selected[0], 3);
    assert_int_equal(hv->selected[1], 4);
    assert_true(hv->final_score == full->final_score);
    assert_true(sh.judge_new < sf.judge_new);
    assert_true(sh.gen_new < sf.gen_new);
    /* dropped candidates were scored on fewer questions */
    size_t dropped = 0;
    for (size_t i = 0; i < hv->steps[0].n_c; i++)
        dropped += hv->steps[0].c[i].n_q < 4;
    assert_true(dropped >= 3);
    assert_true(hv->full_prompt_tokens > 0);
    search_result_free(full);
    search_result_free(hv);
    fixture_free(&F);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_optimum_ties_stop_reuse),
        cmocka_unit_test(test_early_stop_and_after),
        cmocka_unit_test(test_halving),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
