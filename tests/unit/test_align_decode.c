/* align: decoding presets, post-processing (clear_output) and the streaming stop matcher. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "icalign/align.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_presets(void **st) {
    (void)st;
    struct align_preset p;
    struct ica_error e = {0};
    assert_int_equal(align_preset_get("urial", &p, &e), ICA_OK);
    assert_true(p.temperature == 0.0f && p.top_p == 1.0f && p.top_k == 0 && p.min_p == 0.0f);
    assert_true(p.repetition_penalty == 1.15f);
    assert_true(p.frequency_penalty == 0.0f && p.presence_penalty == 0.0f);
    assert_int_equal(p.max_new_tokens, 2048);
    assert_int_equal(p.n_stop, 2);
    assert_string_equal(p.stop[0], "# Query");
    assert_string_equal(p.stop[1], "# User");
    assert_int_equal(align_preset_get("urial-moe", &p, &e), ICA_OK);
    assert_true(p.temperature == 0.5f && p.repetition_penalty == 1.0f);
    assert_int_equal(align_preset_get("gpt4-base", &p, &e), ICA_OK);
    assert_true(p.temperature == 0.2f && p.frequency_penalty == 0.3f &&
                p.presence_penalty == 0.1f && p.repetition_penalty == 1.0f);
    assert_int_equal(align_preset_get("greedy", &p, &e), ICA_ERR_NOTFOUND);
    assert_non_null(strstr(e.msg, "'greedy'"));
    assert_non_null(strstr(e.msg, "urial, urial-moe, gpt4-base"));
    assert_int_equal(align_preset_count(), 3);
    assert_null(align_preset_name(3));
}

static void pp(const char *raw, const char *want) {
    char *out = NULL;
    size_t n = 0;
    assert_int_equal(align_postprocess(raw, strlen(raw), &out, &n, NULL), ICA_OK);
    assert_int_equal(n, strlen(out));
    if (strcmp(out, want))
        fail_msg("postprocess(%s) = [%s], want [%s]", raw, out, want);
    free(out);
}

static void test_postprocess(void **st) {
    (void)st;
    /* the typical vLLM output: answer, closing fence, blank line (stop string already cut) */
    pp("Hello!\n```\n\n", "Hello!");
    /* every ``` goes, also inner code fences; the language tag stays as a bare word */
    pp("Code:\n```python\nprint(1)\n```\nDone\n```\n", "Code:\npython\nprint(1)\n\nDone");
    /* <|endoftext|> becomes a space after the fences are removed, then strip */
    pp("A<|endoftext|>B<|endoftext|>", "A B");
    pp("<|endoftext|>x", "x");
    /* rstrip happens BEFORE the replacements: a space that only becomes trailing after removing
     * the fence is removed by the final strip */
    pp("text ```", "text");
    /* overlapping backticks: Python replaces left to right without overlap */
    pp("a````b", "a`b");
    pp("``` ```", "");
    /* empty and whitespace-only answers */
    pp("", "");
    pp(" \n\t\r\v\f ", "");
    pp("```\n```", "");
    /* Python str.strip() also strips Unicode whitespace (NBSP, ideographic space, U+2028) but
     * not zero-width space U+200B */
    pp("\xc2\xa0 x \xe3\x80\x80\xe2\x80\xa8", "x");
    pp("\xe2\x80\x8bx", "\xe2\x80\x8bx");
    /* inner whitespace untouched */
    pp("  a\n\n b  \n", "a\n\n b");
    /* a fence fused into <|endoftext|>: ``` first, then the token */
    pp("a<|endo```ftext|>b", "a b");
}

/* Feeds chunks; returns the emitted text (malloc'd). */
static char *stream(const char *const *chunks, size_t n, bool *stopped, size_t *max_held) {
    struct align_stop s;
    const char *stops[2] = {"# Query", "# User"};
    assert_int_equal(align_stop_init(&s, stops, 2, NULL), ICA_OK);
    char *out = calloc(1, 4096);
    size_t ol = 0;
    *max_held = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(align_stop_feed(&s, chunks[i], strlen(chunks[i]), NULL), ICA_OK);
        const char *p;
        size_t k = align_stop_take(&s, &p);
        memcpy(out + ol, p, k);
        ol += k;
        if (!s.stopped && s.len - s.safe > *max_held)
            *max_held = s.len - s.safe;
    }
    if (!s.stopped)
        align_stop_finish(&s);
    const char *p;
    size_t k = align_stop_take(&s, &p);
    memcpy(out + ol, p, k);
    ol += k;
    out[ol] = '\0';
    assert_string_equal(out, s.text); /* everything emitted, nothing twice */
    *stopped = s.stopped;
    align_stop_free(&s);
    return out;
}

static void test_stop_stream(void **st) {
    (void)st;
    bool stopped;
    size_t held;
    /* stop string spanning three chunks */
    const char *a[] = {"Answer.\n```\n\n#", " Qu", "ery:\n```\nmore"};
    char *o = stream(a, 3, &stopped, &held);
    assert_true(stopped);
    assert_string_equal(o, "Answer.\n```\n\n");
    assert_true(held <= strlen("# Qu"));
    free(o);
    /* a false start ("# Quick") is released once it cannot match any more */
    const char *b[] = {"See # Qu", "ick notes", " # Us", "er"};
    o = stream(b, 4, &stopped, &held);
    assert_true(stopped);
    assert_string_equal(o, "See # Quick notes ");
    free(o);
    /* no stop: everything comes out at the end, "#" held back until finish */
    const char *c[] = {"x #"};
    o = stream(c, 1, &stopped, &held);
    assert_false(stopped);
    assert_string_equal(o, "x #");
    assert_int_equal(held, 1);
    free(o);
    /* the stop string inside one chunk, text after it ignored, later chunks ignored */
    const char *d[] = {"ok# Query:\n# User", "zzz"};
    o = stream(d, 2, &stopped, &held);
    assert_true(stopped);
    assert_string_equal(o, "ok");
    free(o);
    /* one byte at a time */
    const char *txt = "Fine.\n# User: hi";
    const char *one[32];
    char bytes[32][2];
    size_t nb = strlen(txt);
    for (size_t i = 0; i < nb; i++) {
        bytes[i][0] = txt[i];
        bytes[i][1] = '\0';
        one[i] = bytes[i];
    }
    o = stream(one, nb, &stopped, &held);
    assert_true(stopped);
    assert_string_equal(o, "Fine.\n");
    free(o);
    /* an incomplete UTF-8 sequence is never emitted half */
    struct align_stop s;
    const char *stops[1] = {"# Query"};
    assert_int_equal(align_stop_init(&s, stops, 1, NULL), ICA_OK);
    assert_int_equal(align_stop_feed(&s, "caf\xc3", 4, NULL), ICA_OK);
    assert_int_equal(s.safe, 3);
    assert_int_equal(align_stop_feed(&s, "\xa9!", 2, NULL), ICA_OK);
    assert_int_equal(s.safe, 6);
    assert_int_equal(s.which, -1);
    align_stop_free(&s);
    /* the earliest of two stop strings wins; which tells which one */
    assert_int_equal(align_stop_init(&s, (const char *const[]){"# Query", "# User", ""}, 3, NULL),
                     ICA_OK);
    assert_int_equal(s.n_stop, 2);
    assert_int_equal(align_stop_feed(&s, "a # User b # Query", 18, NULL), ICA_OK);
    assert_true(s.stopped);
    assert_int_equal(s.which, 1);
    assert_int_equal(s.len, 2);
    align_stop_free(&s);
}

static void test_stop_then_postprocess(void **st) {
    (void)st;
    /* the whole path of one answer: stream, cut at the stop string, clean */
    bool stopped;
    size_t held;
    const char *chunks[] = {"Hi! Here is code:\n```", "python\nx = 1\n```\nBye.\n``", "`\n\n# Qu",
                            "ery:\n```\nnext"};
    char *o = stream(chunks, 4, &stopped, &held);
    assert_true(stopped);
    char *clean = NULL;
    assert_int_equal(align_postprocess(o, strlen(o), &clean, NULL, NULL), ICA_OK);
    assert_string_equal(clean, "Hi! Here is code:\npython\nx = 1\n\nBye.");
    free(clean);
    free(o);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_postprocess),
        cmocka_unit_test(test_stop_stream),
        cmocka_unit_test(test_stop_then_postprocess),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
