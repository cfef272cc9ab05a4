/* Tokenizer tests: llama.cpp's ids for every fixture line, round trips,
 * properties on extra strings, URIAL prompt, invalid UTF-8, speed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "icalign/gguf.h"
#include "icalign/tok.h"
#include "testutil.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const g_vocabs[] = {
    "fixtures/tokenizer/ggml-vocab-llama-spm", "fixtures/tokenizer/ggml-vocab-llama3",
    "fixtures/tokenizer/ggml-vocab-qwen2",     "fixtures/tokenizer/ggml-vocab-gpt-2",
    "fixtures/stories260K/stories260K",
};
#define N_VOCABS (sizeof g_vocabs / sizeof g_vocabs[0])

static struct tok_vocab *load(const char *base) {
    char rel[256], path[1024];
    snprintf(rel, sizeof rel, "%s.gguf", base);
    tu_require_shared(path, sizeof path, rel);
    struct tok_vocab *v = NULL;
    struct ica_error e = {0};
    int rc = tok_vocab_load(path, &v, &e);
    if (rc)
        fail_msg("%s: %s", path, e.msg);
    return v;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void tokenize_ok(const struct tok_vocab *v, const char *s, size_t n, bool add, bool sp,
                        int32_t **ids, size_t *nid) {
    struct ica_error e = {0};
    int rc = tok_tokenize(v, s, n, add, sp, ids, nid, &e);
    if (rc)
        fail_msg("tokenize: %s", e.msg);
}

static char *detok(const struct tok_vocab *v, const int32_t *ids, size_t n, bool rm, bool sp,
                   size_t *len) {
    char *out = NULL;
    struct ica_error e = {0};
    int rc = tok_detokenize(v, ids, n, rm, sp, &out, len, &e);
    if (rc)
        fail_msg("detokenize: %s", e.msg);
    return out;
}

/* Every fixture line gives exactly llama.cpp's ids. */
static void test_fixtures(void **state) {
    (void)state;
    size_t total = 0;
    for (size_t k = 0; k < N_VOCABS; k++) {
        struct tok_vocab *v = load(g_vocabs[k]);
        char rel[256], path[1024];
        snprintf(rel, sizeof rel, "%s.tokens.jsonl", g_vocabs[k]);
        tu_require_shared(path, sizeof path, rel);
        FILE *fp = fopen(path, "r");
        assert_non_null(fp);
        char *line = NULL;
        size_t cap = 0;
        ssize_t ll;
        int lineno = 0, bad = 0;
        while ((ll = getline(&line, &cap, fp)) > 0) {
            lineno++;
            json_object *o = json_tokener_parse(line);
            assert_non_null(o);
            json_object *jt, *jb, *js, *ji;
            assert_true(json_object_object_get_ex(o, "text", &jt));
            assert_true(json_object_object_get_ex(o, "add_bos", &jb));
            assert_true(json_object_object_get_ex(o, "parse_special", &js));
            assert_true(json_object_object_get_ex(o, "ids", &ji));
            const char *text = json_object_get_string(jt);
            size_t tlen = (size_t)json_object_get_string_len(jt);
            bool add = json_object_get_boolean(jb);
            assert_int_equal(add, tok_add_bos(v));
            int32_t *ids = NULL;
            size_t n = 0;
            tokenize_ok(v, text, tlen, true, json_object_get_boolean(js), &ids, &n);
            size_t ne = json_object_array_length(ji);
            bool same = ne == n;
            for (size_t i = 0; same && i < n; i++)
                same = ids[i] == json_object_get_int(json_object_array_get_idx(ji, i));
            if (!same) {
                bad++;
                fprintf(stderr, "%s.tokens.jsonl:%d mismatch for %s\n  got:", g_vocabs[k], lineno,
                        json_object_to_json_string(jt));
                for (size_t i = 0; i < n; i++)
                    fprintf(stderr, " %d", ids[i]);
                fprintf(stderr, "\n  want: %s\n", json_object_to_json_string(ji));
            }
            free(ids);
            json_object_put(o);
            total++;
        }
        free(line);
        fclose(fp);
        tok_vocab_free(v);
        assert_int_equal(bad, 0);
    }
    fprintf(stderr, "fixtures: %zu lines checked\n", total);
    assert_true(total >= 5 * 2 * 100);
}

/* Round trip where llama.cpp round-trips: without BOS, detokenize strips
 * the SPM dummy-prefix space from the first token (with a BOS first, llama.cpp
 * keeps it, so tokenize without add_special). */
static const char *const g_extra[] = {
    "",
    " ",
    "  ",
    "\t\t\n\n\r\n",
    "Hello world",
    "                                                                     many spaces",
    "line1\r\nline2\r\n\r\n\tindented",
    "1,234,567.89 and 1_000_000 and 3.14159e-10 and 0x7fff",
    "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7 family",
    "e\xcc\x81 combining, a\xcc\x8a\xcc\x81 stacked",
    "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xce\xb3\xce\xb5\xce\xb9\xce\xac "
    "\xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7 \xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d "
    "\xe0\xa4\xa8\xe0\xa4\xae\xe0\xa4\xb8\xe0\xa5\x8d\xe0\xa4\xa4\xe0\xa5\x87 "
    "\xe4\xbd\xa0\xe5\xa5\xbd \xec\x95\x88\xeb\x85\x95 \xe0\xb8\xaa\xe0\xb8\xa7\xe0\xb8\xb1",
    "```python\ndef f(x):\n    return x ** 2  # square\n```\n",
    "# Query:\n```\nWhat?\n```\n\n# Answer:\n```\n",
    "it's they're we've I'm you'll he'd IT'S",
    "\xe1\x9a\x80ogham\xe3\x80\x80ideographic\xc2\xa0nbsp\xc2\x85nel",
    "\xf0\xaf\xa8\x80 \xe2\xbf\xbc \xf0\xae\xaf\xb0 unicode 15.1",
};
#define N_EXTRA (sizeof g_extra / sizeof g_extra[0])

static void test_round_trip(void **state) {
    (void)state;
    for (size_t k = 0; k < N_VOCABS; k++) {
        struct tok_vocab *v = load(g_vocabs[k]);
        for (size_t i = 0; i < N_EXTRA; i++) {
            const char *s = g_extra[i];
            size_t n = strlen(s);
            int32_t *ids = NULL;
            size_t nid = 0;
            tokenize_ok(v, s, n, false, false, &ids, &nid);
            for (size_t j = 0; j < nid; j++) {
                assert_true(ids[j] >= 0);
                assert_true(ids[j] < tok_n_tokens(v));
            }
            size_t len = 0;
            char *back = detok(v, ids, nid, false, false, &len);
            /* GPT-2-style "clean spaces" deliberately changes " ." etc.; the
             * strings above have none of those patterns. */
            if (len != n || memcmp(back, s, n))
                fail_msg("%s: round trip of extra[%zu] gave '%s'", g_vocabs[k], i, back);
            free(back);
            free(ids);
        }
        tok_vocab_free(v);
    }
}

/* Byte fallback covers every byte: random bytes tokenize without error and
 * SPM with byte tokens maps invalid UTF-8 to byte tokens (round trip). */
static void test_invalid_utf8(void **state) {
    (void)state;
    unsigned seed = 12345;
    char buf[4096];
    for (size_t k = 0; k < N_VOCABS; k++) {
        struct tok_vocab *v = load(g_vocabs[k]);
        for (int iter = 0; iter < 50; iter++) {
            size_t n = (size_t)(iter * 80);
            for (size_t i = 0; i < n; i++) {
                seed = seed * 1103515245u + 12345u;
                buf[i] = (char)(seed >> 16);
            }
            for (int sp = 0; sp < 2; sp++) {
                int32_t *ids = NULL;
                size_t nid = 0;
                tokenize_ok(v, buf, n, true, sp, &ids, &nid);
                size_t len = 0;
                char *back = detok(v, ids, nid, false, sp, &len);
                if (tok_vocab_model(v) == TOK_MODEL_SPM && !sp && strstr(g_vocabs[k], "spm")) {
                    /* SPM byte fallback keeps raw bytes: exact round trip
                     * (no BOS). Not with spaces: a truncated UTF-8 lead
                     * byte swallows part of the U+2581 escape, in llama.cpp
                     * too. */
                    for (size_t i = 0; i < n; i++)
                        if (buf[i] == ' ')
                            buf[i] = 'x';
                    int32_t *i2 = NULL;
                    size_t n2 = 0;
                    tokenize_ok(v, buf, n, false, false, &i2, &n2);
                    char *b2 = detok(v, i2, n2, false, false, &len);
                    free(i2);
                    assert_int_equal(len, n);
                    assert_memory_equal(b2, buf, n);
                    free(b2);
                }
                free(back);
                free(ids);
            }
        }
        tok_vocab_free(v);
    }
}

/* The URIAL prompt gives llama-tokenize's ids (tests/data/urial.llama-spm.ids,
 * see tests/data/README.md). */
static void test_urial(void **state) {
    (void)state;
    char path[1024];
    tu_require_shared(path, sizeof path,
                      "data/urial/tml-epfl_icl-alignment/urial_prompts/urial.txt");
    size_t tlen = 0;
    char *text = tu_read_file(path, &tlen);
    assert_non_null(text);
    struct tok_vocab *v = load(g_vocabs[0]);
    int32_t *ids = NULL;
    size_t n = 0;
    tokenize_ok(v, text, tlen, true, false, &ids, &n);
    size_t elen = 0;
    char epath[1024];
    const char *src = __FILE__; /* .../tests/unit/test_tok.c */
    const char *cut = strstr(src, "tests/unit/");
    snprintf(epath, sizeof epath, "%.*stests/data/urial.llama-spm.ids", cut ? (int)(cut - src) : 0,
             src);
    char *exp = tu_read_file(epath, &elen);
    assert_non_null(exp);
    size_t ne = 0;
    bool same = true;
    for (char *p = exp; *p;) {
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p) {
            p++;
            continue;
        }
        same = same && ne < n && ids[ne] == x;
        ne++;
        p = end;
    }
    fprintf(stderr, "urial: %zu tokens (expected %zu)\n", n, ne);
    assert_int_equal(n, ne);
    assert_true(same);
    /* llama.cpp keeps the dummy-prefix space after a removed BOS */
    size_t blen = 0;
    char *back = detok(v, ids, n, true, false, &blen);
    assert_int_equal(blen, tlen + 1);
    assert_int_equal(back[0], ' ');
    assert_memory_equal(back + 1, text, tlen);
    free(back);
    free(exp);
    free(ids);
    free(text);
    tok_vocab_free(v);
}

/* Special tokens, attributes, pieces. */
static void test_specials(void **state) {
    (void)state;
    struct tok_vocab *v = load(g_vocabs[1]); /* llama3 */
    assert_int_equal(tok_bos(v), 128000);
    assert_true(tok_add_bos(v));
    assert_true(tok_is_eog(v, tok_eos(v)));
    int32_t eot = tok_find(v, "<|eot_id|>", 10);
    assert_true(eot >= 0);
    assert_true(tok_is_eog(v, eot));
    assert_true(tok_is_control(v, eot));
    assert_false(tok_is_eog(v, tok_bos(v)));
    const char *s = "<|begin_of_text|>hi<|eot_id|>";
    int32_t *ids = NULL;
    size_t n = 0;
    tokenize_ok(v, s, strlen(s), false, true, &ids, &n);
    assert_true(n >= 3);
    assert_int_equal(ids[0], 128000);
    assert_int_equal(ids[n - 1], eot);
    char buf[64];
    assert_int_equal(tok_token_to_piece(v, eot, false, 0, buf, sizeof buf), 0);
    assert_int_equal(tok_token_to_piece(v, eot, true, 0, buf, sizeof buf), 10);
    assert_int_equal(tok_token_to_piece(v, eot, true, 0, buf, 3), -10);
    size_t len = 0;
    char *back = detok(v, ids, n, false, true, &len);
    assert_string_equal(back, s);
    free(back);
    back = detok(v, ids, n, false, false, &len);
    assert_string_equal(back, "hi");
    free(back);
    free(ids);
    tokenize_ok(v, s, strlen(s), false, false, &ids, &n);
    assert_true(n > 3);
    for (size_t i = 0; i < n; i++)
        assert_false(tok_is_control(v, ids[i]));
    free(ids);
    assert_int_equal(tok_token_to_piece(v, -1, true, 0, buf, sizeof buf), 0);
    assert_int_equal(tok_token_to_piece(v, 1 << 30, true, 0, buf, sizeof buf), 0);
    int32_t badid = 1 << 30;
    char *o = NULL;
    struct ica_error e = {0};
    assert_int_equal(tok_detokenize(v, &badid, 1, false, false, &o, &len, &e), ICA_ERR_RANGE);
    tok_vocab_free(v);

    v = load(g_vocabs[0]); /* spm */
    assert_int_equal(tok_bos(v), 1);
    assert_int_equal(tok_eos(v), 2);
    assert_int_equal(tok_unk(v), 0);
    assert_int_equal(tok_get_type(v, 3), TOK_TYPE_BYTE);
    assert_int_equal(tok_newline(v), 13);
    tok_vocab_free(v);
}

/* 1 MB must not take seconds (the O(n^2) merge loop would). */
static void test_speed(void **state) {
    (void)state;
    size_t n = 1 << 20;
    char *big = malloc(n);
    assert_non_null(big);
    const char *pat =
        "The quick brown fox, 1234567 jumps!  \n\t\xc3\xa9t\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd ";
    size_t pl = strlen(pat);
    for (size_t i = 0; i < n; i++)
        big[i] = pat[i % pl];
    for (size_t k = 0; k < N_VOCABS; k++) {
        struct tok_vocab *v = load(g_vocabs[k]);
        double t0 = now();
        int32_t *ids = NULL;
        size_t nid = 0;
        tokenize_ok(v, big, n, true, true, &ids, &nid);
        double dt = now() - t0;
        fprintf(stderr, "%s: 1 MiB -> %zu tokens in %.3f s\n", g_vocabs[k], nid, dt);
        assert_true(dt < 5.0); /* generous: sanitizer builds are slow */
        free(ids);
        /* one long run of a single character (worst case for merges) */
        memset(big, 'a', n);
        t0 = now();
        tokenize_ok(v, big, n, false, false, &ids, &nid);
        dt = now() - t0;
        fprintf(stderr, "%s: 1 MiB of 'a' -> %zu tokens in %.3f s\n", g_vocabs[k], nid, dt);
        assert_true(dt < 5.0);
        free(ids);
        for (size_t i = 0; i < n; i++)
            big[i] = pat[i % pl];
        tok_vocab_free(v);
    }
    free(big);
}

/* Hand-made GGUF files: unsupported model, bad metadata. */
static void test_bad_meta(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/badvocab.gguf", tu_tmpdir());
    struct gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(gguf_writer_set_str(w, "tokenizer.ggml.model", "t5"), 0);
    struct ica_error e = {0};
    assert_int_equal(gguf_writer_write(w, path, &e), 0);
    gguf_writer_free(w);
    struct tok_vocab *v = NULL;
    assert_int_equal(tok_vocab_load(path, &v, &e), ICA_ERR_UNSUPPORTED);
    assert_null(v);

    w = gguf_writer_new();
    assert_int_equal(gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2"), 0);
    assert_int_equal(gguf_writer_set_str(w, "tokenizer.ggml.pre", "no-such-pre"), 0);
    const char *toks[] = {"a", "b", "ab"};
    assert_int_equal(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 3), 0);
    const char *merges[] = {"a b"};
    assert_int_equal(gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, 1), 0);
    assert_int_equal(gguf_writer_write(w, path, &e), 0);
    gguf_writer_free(w);
    assert_int_equal(tok_vocab_load(path, &v, &e), ICA_ERR_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "no-such-pre"));

    /* a tiny valid BPE vocab: merges through a non-token intermediate */
    w = gguf_writer_new();
    assert_int_equal(gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2"), 0);
    assert_int_equal(gguf_writer_set_str(w, "tokenizer.ggml.pre", "gpt-2"), 0);
    const char *toks2[] = {"a", "b", "c", "abc", "\xc4\x8a"};
    assert_int_equal(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks2, 5), 0);
    const char *merges2[] = {"a b", "ab c", "nospace"};
    assert_int_equal(gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges2, 3), 0);
    assert_int_equal(gguf_writer_write(w, path, &e), 0);
    gguf_writer_free(w);
    assert_int_equal(tok_vocab_load(path, &v, &e), 0);
    int32_t *ids = NULL;
    size_t n = 0;
    tokenize_ok(v, "abc ab\n", 7, true, true, &ids, &n);
    /* "abc" -> 3; " ab": space has no token, "ab" is not a token -> bytes
     * a, b; "\n" -> 4 */
    assert_int_equal(n, 4);
    assert_int_equal(ids[0], 3);
    assert_int_equal(ids[1], 0);
    assert_int_equal(ids[2], 1);
    assert_int_equal(ids[3], 4);
    free(ids);
    tok_vocab_free(v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures),     cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_invalid_utf8), cmocka_unit_test(test_urial),
        cmocka_unit_test(test_specials),     cmocka_unit_test(test_speed),
        cmocka_unit_test(test_bad_meta),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
