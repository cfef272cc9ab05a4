/* search: validation questions. MT-Bench JSONL with both turns and the two reference turns,
 * the AlpacaEval reference-output list (instruction + reference output, --limit), and bad input
 * of both loaders: an error with a message, never a crash or a half-filled result. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "icalign/search.h"
#include "testutil.h"

static const char *put(const char *name, const char *text) {
    static char path[4][512];
    static int k;
    char *p = path[k++ % 4];
    snprintf(p, 512, "%s/%s", tu_tmpdir(), name);
    FILE *fp = fopen(p, "wb");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    return p;
}

static void test_mt_two_turns(void **st) {
    (void)st;
    const char *q = put("q.jsonl", "{\"question_id\": 81, \"category\": \"math\", \"turns\": "
                                   "[\"One?\", \"Two?\"]}\n"
                                   "\n"
                                   "{\"question_id\": 82, \"turns\": [\"Only one\"]}\n"
                                   "{\"question_id\": 83, \"turns\": [\"A\", 7]}\n");
    const char *r = put("r.jsonl", "{\"question_id\": 81, \"choices\": [{\"turns\": "
                                   "[\"R1\", \"R2\"]}]}\n"
                                   "{\"question_id\": 82, \"choices\": [{\"turns\": [5]}]}\n");
    struct search_questions *qs = NULL;
    struct ica_error e = {0};
    assert_int_equal(search_questions_load(q, r, 0, &qs, &e), ICA_OK);
    assert_int_equal(qs->n, 3);
    assert_string_equal(qs->q[0].text, "One?");
    assert_string_equal(qs->q[0].text2, "Two?");
    assert_string_equal(qs->q[0].reference, "R1");
    assert_string_equal(qs->q[0].reference2, "R2");
    assert_string_equal(qs->q[0].category, "math");
    assert_null(qs->q[1].text2);     /* one turn */
    assert_null(qs->q[1].reference); /* a non-string reference is ignored */
    assert_null(qs->q[2].text2);     /* a non-string second turn is no second turn */
    search_questions_free(qs);
    /* limit */
    assert_int_equal(search_questions_load(q, NULL, 1, &qs, &e), ICA_OK);
    assert_int_equal(qs->n, 1);
    assert_null(qs->q[0].reference);
    search_questions_free(qs);
}

static void test_alpaca(void **st) {
    (void)st;
    const char *p = put("ae.json", "[{\"dataset\": \"helpful_base\", \"instruction\": \"Hi?\", "
                                   "\"output\": \"Hello!\", \"generator\": \"gpt4\"},\n"
                                   " {\"instruction\": \"Bye?\", \"output\": \"Bye.\"},\n"
                                   " {\"instruction\": \"Third\", \"output\": \"3\"}]");
    struct search_questions *qs = NULL, *q2 = NULL;
    struct ica_error e = {0};
    assert_int_equal(search_questions_load_alpaca(p, 0, &qs, &e), ICA_OK);
    assert_int_equal(qs->n, 3);
    assert_string_equal(qs->q[0].id, "0");
    assert_string_equal(qs->q[0].text, "Hi?");
    assert_string_equal(qs->q[0].reference, "Hello!");
    assert_string_equal(qs->q[0].category, "helpful_base");
    assert_string_equal(qs->q[1].category, "");
    assert_null(qs->q[0].text2);
    assert_int_equal(strlen(qs->q[0].key), 16);
    assert_string_not_equal(qs->q[0].key, qs->q[1].key);
    assert_int_equal(search_questions_load_alpaca(p, 2, &q2, &e), ICA_OK);
    assert_int_equal(q2->n, 2);
    assert_string_equal(q2->q[1].text, "Bye?");
    /* the question-set hash covers exactly the loaded texts */
    assert_string_not_equal(qs->sha256, q2->sha256);
    search_questions_free(qs);
    search_questions_free(q2);
    /* the real file, when the shared data is there: 805 instructions */
    char real[1024];
    if (tu_shared_path(real, sizeof real,
                       "data/alpaca_eval/reference_outputs/alpaca_eval_gpt4_baseline.json")) {
        assert_int_equal(search_questions_load_alpaca(real, 0, &qs, &e), ICA_OK);
        assert_int_equal(qs->n, 805);
        assert_non_null(qs->q[804].reference);
        search_questions_free(qs);
    }
}

static void test_alpaca_bad_input(void **st) {
    (void)st;
    static const char *bad[] = {
        "",
        "not json",
        "{\"instruction\": \"x\", \"output\": \"y\"}",
        "[]",
        "[{\"instruction\": \"x\"}]",
        "[{\"instruction\": \"x\", \"output\": null}]",
        "[{\"instruction\": 3, \"output\": \"y\"}]",
        "[\"x\"]",
        "[{\"instruction\": \"x\", \"output\": \"y\"}, 5]",
        "[{\"instruction\": \"x\", \"output\": \"y\"",
        "[{\"instruction\": \"x\", \"output\": \"y\"}] trailing",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *p = put("bad.json", bad[i]);
        struct search_questions *qs = (struct search_questions *)1;
        struct ica_error e = {0};
        assert_int_not_equal(search_questions_load_alpaca(p, 0, &qs, &e), ICA_OK);
        assert_null(qs);
        assert_true(e.msg[0] != '\0');
    }
    struct search_questions *qs = NULL;
    struct ica_error e = {0};
    assert_int_not_equal(search_questions_load_alpaca("/nonexistent/ae.json", 0, &qs, &e), ICA_OK);
    assert_null(qs);
    /* white space after the list is fine */
    assert_int_equal(
        search_questions_load_alpaca(put("ok.json", "[{\"instruction\": \"x\", \"output\": "
                                                    "\"y\"}]\n \n"),
                                     0, &qs, &e),
        ICA_OK);
    assert_int_equal(qs->n, 1);
    search_questions_free(qs);
    /* bad JSONL lines */
    static const char *badl[] = {"{\"turns\": []}\n", "[1]\n", "{\"turns\": [1]}\n",
                                 "{\"question_id\": 1}\n", "{\"turns\": [\"x\"]\n"};
    for (size_t i = 0; i < sizeof badl / sizeof *badl; i++) {
        const char *p = put("bad.jsonl", badl[i]);
        qs = (struct search_questions *)1;
        assert_int_not_equal(search_questions_load(p, NULL, 0, &qs, &e), ICA_OK);
        assert_null(qs);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mt_two_turns),
        cmocka_unit_test(test_alpaca),
        cmocka_unit_test(test_alpaca_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
