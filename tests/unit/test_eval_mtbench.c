/* MT-Bench single-answer grading: judge prompts, [[rating]] parsing, judgment files and the
 * aggregates of FastChat show_result.py / URIAL show_results.py. */
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

static double rate(const char *s) {
    return eval_mt_parse_rating(s, strlen(s));
}

static void test_rating(void **state) {
    (void)state;
    assert_true(rate("Rating: [[5]]") == 5);
    assert_true(rate("Rating: [[6.5]]") == 6.5);
    assert_true(rate("[[7.]]") == 7.0);
    assert_true(rate("no rating") == -1);
    assert_true(rate("") == -1);
    /* the double-bracket pattern anywhere wins over an earlier single bracket */
    assert_true(rate("see [1] ... Rating: [[8]]") == 8);
    /* first match wins */
    assert_true(rate("[[3]] then [[9]]") == 3);
    /* backup pattern, first occurrence */
    assert_true(rate("Rating: [4] or [5]") == 4);
    assert_true(rate("footnote [2]. Rating: 7/10") == 2);
    /* no clamping, no sign, no leading dot */
    assert_true(rate("[[15]]") == 15);
    assert_true(rate("[[-3]]") == -1);
    assert_true(rate("[[.5]]") == -1);
    assert_true(rate("[[8/10]]") == -1);
    assert_true(rate("[[ 8 ]]") == -1);
    /* "[[[7]]]" matches the primary pattern at offset 1 */
    assert_true(rate("[[[7]]]") == 7);
    /* "[[7]" has no "]]" but the backup finds "[7]" */
    assert_true(rate("[[7]") == 7);
    assert_true(rate("[[7.5.1]] [3]") == 3);
    /* length-limited: the text is not NUL-terminated at the rating */
    assert_true(eval_mt_parse_rating("[[9]]", 3) == -1);
    assert_true(eval_mt_parse_rating("[[9]]", 4) == 9); /* "[9]" by the backup pattern */
    assert_true(eval_mt_parse_rating("[9]", 3) == 9);
}

static void test_format_named(void **state) {
    (void)state;
    struct ica_error e;
    const char *names[] = {"a", "bb"};
    const char *vals[] = {"{x}", "2"};
    char *s = eval_format_named("<{a}|{bb}|{{lit}}>", names, vals, 2, &e);
    assert_non_null(s);
    assert_string_equal(s, "<{x}|2|{lit}>");
    free(s);
    assert_null(eval_format_named("{c}", names, vals, 2, &e));
    assert_non_null(strstr(e.msg, "'c'"));
    assert_null(eval_format_named("x } y", names, vals, 2, &e));
    assert_null(eval_format_named("x { y", names, vals, 2, &e));
}

static void test_prompt_choice(void **state) {
    (void)state;
    assert_int_equal(eval_mt_prompt_for("writing", 1), EVAL_MT_SINGLE_V1);
    assert_int_equal(eval_mt_prompt_for("stem", 2), EVAL_MT_SINGLE_V1_MULTI);
    assert_int_equal(eval_mt_prompt_for("math", 1), EVAL_MT_SINGLE_MATH_V1);
    assert_int_equal(eval_mt_prompt_for("coding", 2), EVAL_MT_SINGLE_MATH_V1_MULTI);
    assert_int_equal(eval_mt_prompt_for("reasoning", 2), EVAL_MT_SINGLE_MATH_V1_MULTI);
    assert_string_equal(eval_mt_prompt_name(EVAL_MT_SINGLE_MATH_V1_MULTI),
                        "single-math-v1-multi-turn");
    assert_int_equal(eval_mt_category_of_qid(81), 0);
    assert_int_equal(eval_mt_category_of_qid(101), 2);
    assert_int_equal(eval_mt_category_of_qid(160), 7);
    assert_int_equal(eval_mt_category_of_qid(161), -1);
}

/* question id -> turns and category, reference id -> turns */
struct qdb {
    char *q[2][200];
    char *cat[200];
    char *ref[2][200];
};

static void load_jsonl_turns(const char *path, struct qdb *db, int is_ref) {
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    char *ln = NULL;
    size_t cap = 0;
    while (getline(&ln, &cap, fp) > 0) {
        json_object *o = json_tokener_parse(ln), *v, *turns;
        assert_non_null(o);
        assert_true(json_object_object_get_ex(o, "question_id", &v));
        int id = json_object_get_int(v);
        assert_true(id >= 0 && id < 200);
        if (is_ref) {
            json_object *ch;
            assert_true(json_object_object_get_ex(o, "choices", &ch));
            assert_true(
                json_object_object_get_ex(json_object_array_get_idx(ch, 0), "turns", &turns));
        } else {
            assert_true(json_object_object_get_ex(o, "turns", &turns));
            assert_true(json_object_object_get_ex(o, "category", &v));
            db->cat[id] = strdup(json_object_get_string(v));
        }
        for (int t = 0; t < 2; t++) {
            char *s = strdup(json_object_get_string(json_object_array_get_idx(turns, (size_t)t)));
            if (is_ref)
                db->ref[t][id] = s;
            else
                db->q[t][id] = s;
        }
        json_object_put(o);
    }
    free(ln);
    fclose(fp);
}

static void free_qdb(struct qdb *db) {
    for (int i = 0; i < 200; i++) {
        free(db->cat[i]);
        for (int t = 0; t < 2; t++) {
            free(db->q[t][i]);
            free(db->ref[t][i]);
        }
    }
}

/* Copies the text between the first occurrence of a (searching from *from) and the LAST
 * occurrence of b after it. */
static char *between(const char *s, const char *a, const char *b) {
    const char *p = strstr(s, a);
    if (!p)
        return NULL;
    p += strlen(a);
    const char *q = NULL, *z = p;
    while ((z = strstr(z, b)) != NULL) {
        q = z;
        z++;
    }
    if (!q)
        return NULL;
    return strndup(p, (size_t)(q - p));
}

/* Rebuilds every stored judge prompt of the dev judgment file from question.jsonl, the
 * reference answers and the answers cut out of the stored prompt: byte-exact. */
static void test_judge_prompts_dev(void **state) {
    (void)state;
    char qp[1024], rp[1024], jp[1024], dp[1024];
    tu_require_shared(qp, sizeof qp, "data/mt_bench/question.jsonl");
    tu_require_shared(rp, sizeof rp, "data/mt_bench/reference_answer/gpt-4.jsonl");
    tu_require_shared(jp, sizeof jp, "data/mt_bench/judge_prompts.jsonl");
    tu_require_shared(dp, sizeof dp,
                      "data/mt_bench/dev_example/don-tpanic_FastChat.gpt-4_single.jsonl");
    static struct qdb db;
    memset(&db, 0, sizeof db);
    load_jsonl_turns(qp, &db, 0);
    load_jsonl_turns(rp, &db, 1);
    struct ica_error e;
    struct eval_mt_prompts *pr;
    assert_int_equal(eval_mt_prompts_load(jp, &pr, &e), 0);
    FILE *fp = fopen(dp, "r");
    assert_non_null(fp);
    char *ln = NULL;
    size_t cap = 0, n = 0, same = 0;
    while (getline(&ln, &cap, fp) > 0) {
        json_object *o = json_tokener_parse(ln), *v, *judge;
        assert_non_null(o);
        assert_true(json_object_object_get_ex(o, "question_id", &v));
        int id = json_object_get_int(v);
        assert_true(json_object_object_get_ex(o, "turn", &v));
        int turn = json_object_get_int(v);
        assert_true(json_object_object_get_ex(o, "judge", &judge));
        const char *pname = json_object_get_string(json_object_array_get_idx(judge, 1));
        assert_true(json_object_object_get_ex(o, "user_prompt", &v));
        const char *stored = json_object_get_string(v);
        assert_non_null(db.cat[id]);
        assert_string_equal(eval_mt_prompt_name(eval_mt_prompt_for(db.cat[id], turn)), pname);
        struct eval_mt_fill f = {db.q[0][id], db.q[1][id],   NULL,
                                 NULL,        db.ref[0][id], db.ref[1][id]};
        char *a1 = NULL, *a2 = NULL;
        if (turn == 1) {
            a1 = between(stored, "[The Start of Assistant's Answer]\n",
                         "\n[The End of Assistant's Answer]");
        } else {
            char *conv = between(stored, "<|The Start of Assistant A's Conversation with User|>",
                                 "<|The End of Assistant A's Conversation with User|>");
            assert_non_null(conv);
            char mid[8192];
            snprintf(mid, sizeof mid, "\n\n### User:\n%s\n\n### Assistant A:\n", db.q[1][id]);
            char *h = strstr(conv, "\n\n### Assistant A:\n");
            char *m = strstr(conv, mid);
            assert_non_null(h);
            assert_non_null(m);
            h += strlen("\n\n### Assistant A:\n");
            a1 = strndup(h, (size_t)(m - h));
            m += strlen(mid);
            size_t l2 = strlen(m);
            assert_true(l2 >= 2);
            a2 = strndup(m, l2 - 2);
            free(conv);
        }
        assert_non_null(a1);
        f.a1 = a1;
        f.a2 = a2;
        char *sys, *user;
        assert_int_equal(eval_mt_judge_messages(pr, db.cat[id], turn, &f, &sys, &user, &e), 0);
        if (!strcmp(user, stored))
            same++;
        else
            fprintf(stderr, "prompt mismatch: qid %d turn %d\n", id, turn);
        if (turn == 1)
            assert_string_equal(sys, "You are a helpful assistant.");
        else
            assert_true(strlen(sys) > 100 && !strcmp(sys + strlen(sys) - 2, "\n\n"));
        free(sys);
        free(user);
        free(a1);
        free(a2);
        json_object_put(o);
        n++;
    }
    free(ln);
    fclose(fp);
    printf("judge prompts rebuilt byte-exact: %zu of %zu\n", same, n);
    assert_int_equal(n, 800);
    assert_int_equal(same, n);

    /* a direct check of the single-math-v1 layout */
    struct eval_mt_fill f = {"Q?", NULL, "A!", NULL, "R.", NULL};
    char *sys, *user;
    assert_int_equal(eval_mt_judge_messages(pr, "math", 1, &f, &sys, &user, &e), 0);
    const char *tail = "[Question]\nQ?\n\n[The Start of Reference Answer]\nR.\n[The End of "
                       "Reference Answer]\n\n[The Start of Assistant's Answer]\nA!\n[The End of "
                       "Assistant's Answer]";
    assert_true(strlen(user) > strlen(tail));
    assert_string_equal(user + strlen(user) - strlen(tail), tail);
    free(sys);
    free(user);
    /* missing turn-2 fields are an error, not a crash */
    assert_int_not_equal(eval_mt_judge_messages(pr, "writing", 2, &f, &sys, &user, &e), 0);
    assert_null(user);
    eval_mt_prompts_free(pr);
    free_qdb(&db);
}

static double jd(json_object *o, const char *k) {
    json_object *v;
    if (!json_object_object_get_ex(o, k, &v))
        fail_msg("key %s missing", k);
    return json_object_get_double(v);
}

static void test_dev_scores_and_aggregates(void **state) {
    (void)state;
    char dp[1024], ep[1024];
    tu_require_shared(dp, sizeof dp,
                      "data/mt_bench/dev_example/don-tpanic_FastChat.gpt-4_single.jsonl");
    tu_require_shared(ep, sizeof ep, "data/mt_bench/dev_example/expected_aggregates.json");
    struct ica_error e;
    struct eval_mt_judgments *j;
    assert_int_equal(eval_mt_judgments_read(dp, &j, &e), 0);
    assert_int_equal(j->n, 800);
    size_t nonint = 0;
    for (size_t i = 0; i < j->n; i++) {
        double s = eval_mt_parse_rating(j->rows[i].judgment, strlen(j->rows[i].judgment));
        if (s != j->rows[i].score)
            fail_msg("line %zu: parsed %g, stored %g", j->rows[i].line, s, j->rows[i].score);
        if (s != floor(s))
            nonint++;
    }
    assert_int_equal(nonint, 6);
    json_object *root = json_object_from_file(ep), *file;
    assert_non_null(root);
    assert_true(json_object_object_get_ex(root, "don-tpanic_FastChat.gpt-4_single.jsonl", &file));
    const char *semkey[3] = {"fastchat_current", "fastchat_pre_2023-07-25_no_minus1_filter",
                             "urial_dedup_last"};
    size_t nmodels = 0;
    for (int sem = 0; sem < 3; sem++) {
        struct eval_mt_scores *s;
        assert_int_equal(eval_mt_aggregate(j, (enum eval_mt_semantics)sem, NULL, NULL, &s, &e), 0);
        assert_int_equal(s->n, (size_t)json_object_object_length(file));
        for (size_t m = 0; m < s->n; m++) {
            json_object *mo, *so, *cats;
            assert_true(json_object_object_get_ex(file, s->m[m].model, &mo));
            assert_true(json_object_object_get_ex(mo, semkey[sem], &so));
            assert_true(fabs(s->m[m].turn1 - jd(so, "turn1")) < 1e-9);
            assert_true(fabs(s->m[m].turn2 - jd(so, "turn2")) < 1e-9);
            assert_true(fabs(s->m[m].overall - jd(so, "overall")) < 1e-9);
            assert_int_equal(s->m[m].n_rows, (size_t)jd(mo, "n_rows"));
            assert_int_equal(s->m[m].n_failed, (size_t)jd(mo, "n_failed_parse_-1"));
            assert_int_equal(s->m[m].n_duplicates, (size_t)jd(mo, "n_duplicate_keys"));
            if (sem == EVAL_MT_CURRENT) {
                assert_int_equal(s->m[m].n_turn1, (size_t)jd(so, "n_turn1"));
                assert_int_equal(s->m[m].n_turn2, (size_t)jd(so, "n_turn2"));
                nmodels++;
            }
            if (sem == EVAL_MT_URIAL_LAST) {
                assert_true(json_object_object_get_ex(so, "per_category_both_turns", &cats));
                int seen = 0;
                for (int c = 0; c < EVAL_MT_NCAT; c++) {
                    json_object *cv;
                    if (!json_object_object_get_ex(cats, eval_mt_category_name(c), &cv))
                        continue;
                    seen++;
                    assert_true(fabs(s->m[m].cat[c] - json_object_get_double(cv)) < 1e-9);
                }
                assert_int_equal(seen, EVAL_MT_NCAT);
            }
        }
        eval_mt_scores_free(s);
    }
    assert_int_equal(nmodels, 5);
    json_object_put(root);
    eval_mt_judgments_free(j);
}

/* Builds a judgment file with a failed turn-2 parse, duplicates and half points, and checks the
 * integer facts of SPEC.md section 7 (claude-instant-v1: 624/80, 633/79, 1257/159, 7.85). */
static void test_integer_facts(void **state) {
    (void)state;
    char *buf = NULL;
    size_t bl = 0;
    FILE *mf = open_memstream(&buf, &bl);
    assert_non_null(mf);
    /* turn 1: 80 rows summing to 624 (76 x 8 + 4 x 4) */
    for (int q = 81; q <= 160; q++)
        fprintf(mf,
                "{\"question_id\": %d, \"model\": \"m\", \"judge\": [\"gpt-4\", \"single-v1\"], "
                "\"judgment\": \"x\", \"score\": %d, \"turn\": 1}\n",
                q, q <= 156 ? 8 : 4);
    /* turn 2: 79 rows summing to 633 (78 x 8 + 9), one failed parse */
    int sum2 = 0;
    for (int q = 81; q <= 159; q++) {
        int s = q <= 158 ? 8 : 9;
        sum2 += s;
        fprintf(mf,
                "{\"question_id\": %d, \"model\": \"m\", \"judge\": [\"gpt-4\", "
                "\"single-v1-multi-turn\"], \"judgment\": \"x\", \"score\": %d, \"turn\": 2}\n",
                q, s);
    }
    fprintf(mf, "{\"question_id\": 160, \"model\": \"m\", \"judgment\": \"$ERROR$\", "
                "\"score\": -1, \"turn\": 2}\n");
    fclose(mf);
    assert_int_equal(sum2, 633);
    struct ica_error e;
    struct eval_mt_judgments *j;
    assert_int_equal(eval_mt_judgments_parse(buf, bl, "mem", &j, &e), 0);
    struct eval_mt_scores *s;
    assert_int_equal(eval_mt_aggregate(j, EVAL_MT_CURRENT, NULL, NULL, &s, &e), 0);
    assert_int_equal(s->m[0].n_turn1, 80);
    assert_int_equal(s->m[0].n_turn2, 79);
    assert_true(s->m[0].turn1 == 624.0 / 80);
    assert_true(s->m[0].turn2 == 633.0 / 79);
    assert_true(s->m[0].overall == 1257.0 / 159);
    assert_true(fabs(s->m[0].overall - 7.905660) < 1e-6);
    assert_true(fabs((s->m[0].turn1 + s->m[0].turn2) / 2 - 7.906329) < 1e-6);
    eval_mt_scores_free(s);
    assert_int_equal(eval_mt_aggregate(j, EVAL_MT_PRE_20230725, NULL, NULL, &s, &e), 0);
    assert_int_equal(s->m[0].n_turn2, 80);
    assert_true(s->m[0].overall == 1256.0 / 160);
    assert_true(fabs(s->m[0].overall - 7.85) < 1e-12);
    assert_int_equal(s->m[0].n_failed, 1);
    eval_mt_scores_free(s);
    eval_mt_judgments_free(j);
    free(buf);

    /* duplicates and half points: current averages both, urial keeps the last line */
    const char *dup = "{\"question_id\": 81, \"model\": \"a\", \"score\": 4, \"turn\": 1}\n"
                      "{\"question_id\": 81, \"model\": \"a\", \"score\": 8.5, \"turn\": 1}\n"
                      "\n"
                      "{\"question_id\": 101, \"model\": \"a\", \"score\": 6, \"turn\": 2}\n"
                      "{\"question_id\": 101, \"model\": \"a\", \"score\": -1, \"turn\": 2}\n"
                      "{\"question_id\": 81, \"model\": \"b\", \"score\": 2, \"turn\": 1}\n";
    assert_int_equal(eval_mt_judgments_parse(dup, strlen(dup), "dup", &j, &e), 0);
    assert_int_equal(eval_mt_aggregate(j, EVAL_MT_CURRENT, NULL, NULL, &s, &e), 0);
    assert_int_equal(s->n, 2);
    assert_string_equal(s->m[0].model, "a");
    assert_true(s->m[0].turn1 == 6.25);
    assert_true(s->m[0].turn2 == 6);
    assert_true(s->m[0].overall == 18.5 / 3);
    assert_int_equal(s->m[0].n_duplicates, 2);
    eval_mt_scores_free(s);
    assert_int_equal(eval_mt_aggregate(j, EVAL_MT_URIAL_LAST, NULL, NULL, &s, &e), 0);
    assert_true(s->m[0].turn1 == 8.5);
    assert_int_equal(s->m[0].n_turn2, 0); /* the last duplicate failed: the key is gone */
    assert_true(isnan(s->m[0].turn2));
    assert_true(s->m[0].overall == 8.5);
    assert_true(s->m[0].cat[0] == 8.5);
    assert_int_equal(s->m[0].n_cat[2], 0);
    eval_mt_scores_free(s);
    assert_int_equal(eval_mt_aggregate(j, EVAL_MT_PRE_20230725, NULL, NULL, &s, &e), 0);
    assert_true(s->m[0].turn2 == 2.5);
    eval_mt_scores_free(s);
    eval_mt_judgments_free(j);
}

static void test_judgment_errors(void **state) {
    (void)state;
    struct ica_error e;
    struct eval_mt_judgments *j;
    const char *cases[][2] = {
        {"{\"question_id\": 81, \"model\": \"a\", \"score\": 4, \"turn\": 1}\n{\"question_id\"",
         "f.jsonl:2"},
        {"\n\n{\"question_id\": \"81\", \"model\": \"a\", \"score\": 4, \"turn\": 1}", "f.jsonl:3"},
        {"{\"question_id\": 81, \"model\": \"a\", \"score\": \"4\", \"turn\": 1}", "f.jsonl:1"},
        {"{\"question_id\": 81, \"model\": \"a\", \"score\": 4, \"turn\": 3}", "f.jsonl:1"},
        {"{\"question_id\": 81, \"score\": 4, \"turn\": 1}", "f.jsonl:1"},
        {"[1, 2]", "f.jsonl:1"},
        {"{\"question_id\": 81, \"model\": \"a\", \"score\": 4, \"turn\": 1} x", "f.jsonl:1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = eval_mt_judgments_parse(cases[i][0], strlen(cases[i][0]), "f.jsonl", &j, &e);
        assert_int_not_equal(rc, 0);
        assert_null(j);
        if (!strstr(e.msg, cases[i][1]))
            fail_msg("case %zu: message '%s' lacks '%s'", i, e.msg, cases[i][1]);
    }
    assert_int_not_equal(eval_mt_judgments_read("/nonexistent/x.jsonl", &j, &e), 0);
    assert_non_null(strstr(e.msg, "/nonexistent/x.jsonl"));
}

static void test_bootstrap(void **state) {
    (void)state;
    double x[80];
    for (int i = 0; i < 80; i++)
        x[i] = (double)(i % 10) + 1;
    double lo, hi, lo2, hi2;
    eval_bootstrap_ci(x, 80, 2000, 42, &lo, &hi);
    eval_bootstrap_ci(x, 80, 2000, 42, &lo2, &hi2);
    assert_true(lo == lo2 && hi == hi2);
    assert_true(lo < 5.5 && hi > 5.5);
    assert_true(hi - lo > 0.8 && hi - lo < 1.6); /* 2 * 1.96 * 2.87 / sqrt(80) = 1.26 */
    eval_bootstrap_ci(x, 0, 2000, 42, &lo, &hi);
    assert_true(isnan(lo) && isnan(hi));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rating),
        cmocka_unit_test(test_format_named),
        cmocka_unit_test(test_prompt_choice),
        cmocka_unit_test(test_judge_prompts_dev),
        cmocka_unit_test(test_dev_scores_and_aggregates),
        cmocka_unit_test(test_integer_facts),
        cmocka_unit_test(test_judgment_errors),
        cmocka_unit_test(test_bootstrap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
