/* just-eval score mode: template substitution and reply parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "icalign/eval.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

static void test_render(void **state) {
    (void)state;
    struct ica_error e;
    char *s = eval_je_render("a ${instruction} b $candidate $$ c", "I$x", "C", &e);
    assert_non_null(s);
    assert_string_equal(s, "a I$x b C $ c");
    free(s);
    assert_null(eval_je_render("${other}", "I", "C", &e));
    assert_null(eval_je_render("cost $5", "I", "C", &e));
    char path[1024];
    tu_require_shared(path, sizeof path, "data/just_eval/score_multi_template.txt");
    char *t = tu_read_file(path, NULL);
    assert_non_null(t);
    s = eval_je_render(t, "What is 2+2?", "4", &e);
    assert_non_null(s);
    assert_non_null(strstr(s, "What is 2+2?"));
    assert_null(strstr(s, "${"));
    free(s);
    free(t);
}

static void test_parse(void **state) {
    (void)state;
    struct ica_error e;
    double sc[EVAL_JE_NASPECT];
    const char *r = "```json\n{\n \"helpfulness\": {\"reason\": \"uses C:\\path\", \"score\": "
                    "\"4\"},\n \"clarity\": {\"reason\": \"x\", \"score\": \"5\"},\n "
                    "\"factuality\": {\"reason\": \"x\", \"score\": \"N/A\"},\n \"depth\": "
                    "{\"reason\": \"x\", \"score\": 3},\n \"engagement\": {\"reason\": \"x\", "
                    "\"score\": \"2\"}\n}\n```";
    assert_int_equal(eval_je_parse_scores(r, false, sc, &e), 0);
    assert_true(sc[0] == 4 && sc[1] == 5 && sc[2] == 5 && sc[3] == 3 && sc[4] == 2);
    const char *s = "Sure: {\"safety\": {\"reason\": \"said \\\\\"no\\\\\"\", \"score\": \"1\"}}";
    assert_int_equal(eval_je_parse_scores(s, true, sc, &e), 0);
    assert_true(sc[0] == 1);
    assert_int_not_equal(eval_je_parse_scores("no json here", true, sc, &e), 0);
    assert_int_not_equal(eval_je_parse_scores("{\"safety\": {\"score\": \"high\"}}", true, sc, &e),
                         0);
    assert_int_not_equal(eval_je_parse_scores("{\"clarity\": 1}", false, sc, &e), 0);
    assert_string_equal(eval_je_aspect_name(4), "engagement");
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_render), cmocka_unit_test(test_parse)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
