/* align: demonstration sets, parsing/writing, rendering, transforms, SPEC composition. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "icalign/align.h"
#include "testutil.h"

#include <dirent.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ICL     "data/urial/tml-epfl_icl-alignment/urial_prompts/"
#define DERIVED "data/urial/derived/"

/* ==== a small SHA-256 (FIPS 180-4), test-only ==== */

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const unsigned char *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 =
            hh + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
}

static void sha256_hex(const char *data, size_t n, char out[65]) {
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    size_t i = 0;
    for (; i + 64 <= n; i += 64)
        sha256_block(h, (const unsigned char *)data + i);
    unsigned char last[128] = {0};
    size_t r = n - i;
    memcpy(last, data + i, r);
    last[r] = 0x80;
    size_t tot = r + 9 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)n * 8;
    for (int k = 0; k < 8; k++)
        last[tot - 1 - k] = (unsigned char)(bits >> (8 * k));
    sha256_block(h, last);
    if (tot == 128)
        sha256_block(h, last + 64);
    for (int k = 0; k < 8; k++)
        snprintf(out + 8 * k, 9, "%08x", h[k]);
}

/* ==== helpers ==== */

static struct align_set *load(const char *rel) {
    char path[1024];
    tu_require_shared(path, sizeof path, rel);
    struct align_set *s = NULL;
    struct ica_error e = {0};
    int rc = align_set_load_file(path, &s, &e);
    if (rc)
        fprintf(stderr, "load %s: %s\n", rel, e.msg);
    assert_int_equal(rc, ICA_OK);
    return s;
}

static char *read_shared(const char *rel, size_t *n) {
    char path[1024];
    tu_require_shared(path, sizeof path, rel);
    char *t = tu_read_file(path, n);
    assert_non_null(t);
    return t;
}

static void assert_written_equals(const struct align_set *s, const char *rel) {
    size_t n = 0, m = 0;
    char *want = read_shared(rel, &n);
    char *got = NULL;
    assert_int_equal(align_set_write(s, &got, &m, NULL), ICA_OK);
    if (m != n || memcmp(got, want, n) != 0)
        fail_msg("written set differs from %s (%zu vs %zu bytes)", rel, m, n);
    free(got);
    free(want);
}

/* MT-Bench question 81, turns 1 and 2 (malloc'd). */
static void mt81(char **t1, char **t2) {
    size_t n;
    char *text = read_shared("data/urial/Re-Align_URIAL/run_scripts/mt-bench/question.jsonl", &n);
    *t1 = *t2 = NULL;
    char *line = text;
    while (line < text + n && !*t1) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        json_object *o = json_tokener_parse(line);
        json_object *id, *turns;
        if (o && json_object_object_get_ex(o, "question_id", &id) &&
            json_object_get_int(id) == 81 && json_object_object_get_ex(o, "turns", &turns)) {
            *t1 = strdup(json_object_get_string(json_object_array_get_idx(turns, 0)));
            *t2 = strdup(json_object_get_string(json_object_array_get_idx(turns, 1)));
        }
        json_object_put(o);
        if (!nl)
            break;
        line = nl + 1;
    }
    free(text);
    assert_non_null(*t1);
}

static char *cleaned_turn1(void) {
    size_t n;
    char *text = read_shared(DERIVED "rendered/mtbench81_turn1_illustrative_answer.json", &n);
    json_object *o = json_tokener_parse(text);
    json_object *c, *raw;
    assert_true(json_object_object_get_ex(o, "cleaned_turn1_output", &c));
    assert_true(json_object_object_get_ex(o, "illustrative_raw_turn1_output", &raw));
    /* our post-processing reproduces the published cleaning */
    char *pp = NULL;
    assert_int_equal(align_postprocess(json_object_get_string(raw),
                                       (size_t)json_object_get_string_len(raw), &pp, NULL, NULL),
                     ICA_OK);
    assert_string_equal(pp, json_object_get_string(c));
    free(pp);
    char *r = strdup(json_object_get_string(c));
    json_object_put(o);
    free(text);
    return r;
}

/* SHA-256 listed in SHA256SUMS for name. */
static void sum_of(const char *name, char out[65]) {
    size_t n;
    char *t = read_shared(DERIVED "rendered/SHA256SUMS", &n);
    char *p = strstr(t, name);
    assert_non_null(p);
    assert_true(p - t >= 66);
    memcpy(out, p - 66, 64);
    out[64] = '\0';
    free(t);
}

/* ==== rendering: the 4 published vectors ==== */

static void check_vector(const char *system_rel, const char *vec, int turns) {
    struct align_set *s = load(system_rel);
    char *q1, *q2;
    mt81(&q1, &q2);
    char *a1 = turns == 2 ? cleaned_turn1() : NULL;
    const char *msgs[3] = {q1, a1, q2};
    size_t nm = turns == 2 ? 3 : 1;
    char *got = NULL, *pre = NULL, *suf = NULL;
    size_t gl = 0, pl = 0, sl = 0;
    assert_int_equal(align_render(s, msgs, nm, &got, &gl, NULL), ICA_OK);
    char rel[512];
    snprintf(rel, sizeof rel, DERIVED "rendered/%s", vec);
    size_t wl;
    char *want = read_shared(rel, &wl);
    assert_int_equal(gl, wl);
    assert_memory_equal(got, want, wl);
    char hex[65], sum[65];
    sha256_hex(got, gl, hex);
    sum_of(vec, sum);
    assert_string_equal(hex, sum);
    /* prefix + suffix == full prompt, prefix = system text = file bytes */
    assert_int_equal(align_render_prefix(s, &pre, &pl, NULL), ICA_OK);
    assert_int_equal(align_render_suffix(s, msgs, nm, &suf, &sl, NULL), ICA_OK);
    assert_int_equal(pl + sl, gl);
    assert_memory_equal(pre, got, pl);
    assert_memory_equal(suf, got + pl, sl);
    free(pre);
    free(suf);
    free(got);
    free(want);
    free(q1);
    free(q2);
    free(a1);
    align_set_free(s);
}

static void test_sha256_selftest(void **st) {
    (void)st;
    char hex[65];
    sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_vectors(void **st) {
    (void)st;
    check_vector(ICL "urial.txt", "mtbench81_turn1.urial.txt", 1);
    check_vector(ICL "urial.txt", "mtbench81_turn2.urial.txt", 2);
    check_vector(ICL "urial.plus.best_4.examples.txt", "mtbench81_turn1.urial.plus.best_4.txt", 1);
    check_vector(ICL "urial.plus.best_4.examples.txt", "mtbench81_turn2.urial.plus.best_4.txt", 2);
}

/* ==== round trip of every ICL prompt file ==== */

static int roundtrip_dir(const char *dir, int *files) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    int bad = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        struct stat sb;
        assert_int_equal(stat(path, &sb), 0);
        if (S_ISDIR(sb.st_mode)) {
            bad += roundtrip_dir(path, files);
            continue;
        }
        size_t n;
        char *want = tu_read_file(path, &n);
        assert_non_null(want);
        struct align_set *s = NULL;
        struct ica_error e = {0};
        if (align_set_parse(want, n, path, &s, &e) != ICA_OK) {
            fprintf(stderr, "parse failed: %s\n", e.msg);
            bad++;
            free(want);
            continue;
        }
        char *got = NULL;
        size_t m = 0;
        assert_int_equal(align_set_write(s, &got, &m, NULL), ICA_OK);
        if (m != n || memcmp(got, want, n) != 0) {
            fprintf(stderr, "round trip differs: %s\n", path);
            bad++;
        }
        /* every ICL file has demos and ends with the closing fence */
        assert_true(align_set_count(s) >= 3);
        (*files)++;
        free(got);
        free(want);
        align_set_free(s);
    }
    closedir(d);
    return bad;
}

static void test_roundtrip_icl(void **st) {
    (void)st;
    char dir[1024];
    tu_require_shared(dir, sizeof dir, ICL);
    int files = 0;
    assert_int_equal(roundtrip_dir(dir, &files), 0);
    assert_int_equal(files, 40);
}

static void test_parse_urial(void **st) {
    (void)st;
    struct align_set *s = load(ICL "urial.txt");
    assert_int_equal(align_set_count(s), 3);
    assert_int_equal(strlen(align_set_header(s)), 643);
    assert_string_equal(align_set_demo(s, 0)->query,
                        "Can you tell me some common types of renewable energy sources?");
    const char *nat = align_set_demo(s, 1)->query;
    assert_int_equal(nat[strlen(nat) - 1], ' '); /* trailing space kept */
    assert_non_null(strstr(align_set_demo(s, 2)->answer, "\xc2\xb0"));
    assert_null(align_set_bridge(s, NULL));
    align_set_free(s);

    /* unsupervised: query-only demos, a bridge, then the URIAL demos */
    s = load(ICL "unsupervised/urial.unsupervised.5.examples.txt");
    assert_int_equal(align_set_count(s), 8);
    size_t at = 0;
    assert_non_null(align_set_bridge(s, &at));
    assert_int_equal(at, 5);
    for (size_t i = 0; i < 5; i++)
        assert_null(align_set_demo(s, i)->answer);
    assert_non_null(align_set_demo(s, 5)->answer);
    align_set_free(s);

    /* inner fences inside a query (OpenHermes demos) */
    s = load(ICL "diversity/openhermes-50.examples.txt");
    assert_int_equal(align_set_count(s), 50);
    align_set_free(s);
}

static void test_pool_matches_files(void **st) {
    (void)st;
    char path[1024];
    tu_require_shared(path, sizeof path, DERIVED "demo_pool.jsonl");
    struct align_set *pool = NULL;
    struct ica_error e = {0};
    assert_int_equal(align_pool_load(path, &pool, &e), ICA_OK);
    assert_int_equal(align_set_count(pool), 493);
    /* the greedy file = top-47 of the pool by rank + URIAL x3: select by id */
    struct align_set *u = load(ICL "urial.txt");
    const char *ids[3];
    for (size_t k = 0; k < 3; k++) {
        for (size_t i = 0; i < align_set_count(pool); i++)
            if (!strcmp(align_set_demo(pool, i)->query, align_set_demo(u, k)->query) &&
                align_set_demo(pool, i)->answer &&
                !strcmp(align_set_demo(pool, i)->answer, align_set_demo(u, k)->answer))
                ids[k] = align_set_demo(pool, i)->id;
    }
    struct align_set *sel = NULL;
    assert_int_equal(align_pool_select_ids(pool, ids, 3, &sel, &e), ICA_OK);
    assert_int_equal(align_set_set_header(sel, align_set_header(u), NULL), ICA_OK);
    assert_written_equals(sel, ICL "urial.txt");
    align_set_free(sel);
    align_set_free(u);
    align_set_free(pool);
}

static void test_realign_files(void **st) {
    (void)st;
    static const char *const ua[] = {"inst_help_v5-1k.txt", "inst_help_v5-2k.txt",
                                     "inst_help_v6-1k.txt", "inst_help_v6-2k.txt",
                                     "inst_help_v3.txt"};
    for (size_t i = 0; i < sizeof ua / sizeof ua[0]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "data/urial/Re-Align_URIAL/urial_prompts/%s", ua[i]);
        struct align_set *s = load(rel);
        assert_true(align_set_count(s) >= 3);
        assert_int_not_equal(align_set_style(s), ALIGN_STYLE_URIAL);
        assert_string_equal(align_set_demo(s, 0)->query,
                            "Can you tell me some common types of renewable energy sources?");
        assert_non_null(align_set_demo(s, align_set_count(s) - 1)->answer);
        assert_written_equals(s, rel);
        align_set_free(s);
    }
    struct align_set *s = load("data/urial/Re-Align_URIAL/urial_prompts/inst_help_v6-1k.txt");
    assert_int_equal(align_set_style(s), ALIGN_STYLE_USER_V6);
    const char *m[1] = {"\nHi\n"};
    char *suf = NULL;
    assert_int_equal(align_render_suffix(s, m, 1, &suf, NULL, NULL), ICA_OK);
    assert_string_equal(suf, "\n\n# User:\nHi\n\n\n# Assistant:\n");
    free(suf);
    align_set_free(s);
    s = load("data/urial/Re-Align_URIAL/urial_prompts/inst_help_v5-1k.txt");
    assert_int_equal(align_set_style(s), ALIGN_STYLE_USER_V5);
    assert_int_equal(align_render_suffix(s, m, 1, &suf, NULL, NULL), ICA_OK);
    assert_string_equal(suf, "\n# User:\n\n\nHi\n\n\n\n# Assistant:\n\n");
    free(suf);
    align_set_free(s);
    /* the ICL paper's urial prompt is the same blob as URIAL's inst_1k_v4.help */
    s = load("data/urial/Re-Align_URIAL/urial_prompts/inst_1k_v4.help.txt");
    assert_written_equals(s, ICL "urial.txt");
    align_set_free(s);
}

/* ==== rendering edge cases ==== */

static void test_render_empty_answer(void **st) {
    (void)st;
    struct align_set *s = load(ICL "urial.txt");
    const char *msgs[3] = {"Q1", "", "Q2"};
    char *suf = NULL;
    assert_int_equal(align_render_suffix(s, msgs, 3, &suf, NULL, NULL), ICA_OK);
    assert_string_equal(suf, "\n# Query:\n```\nQ1\n```\n"
                             "\n# Answer:\n```\n"
                             "\n# Query:\n```\nQ2\n```\n"
                             "\n# Answer:\n```\n");
    free(suf);
    const char *msgs2[3] = {"Q1", NULL, "Q2"};
    char *suf2 = NULL;
    assert_int_equal(align_render_suffix(s, msgs2, 3, &suf2, NULL, NULL), ICA_OK);
    assert_non_null(strstr(suf2, "# Answer:\n```\n\n# Query:"));
    free(suf2);
    align_set_free(s);
}

static void test_render_none_header_only(void **st) {
    (void)st;
    struct align_set *s = NULL;
    assert_int_equal(align_spec_load("none", &s, NULL), ICA_OK);
    const char *m[1] = {"Hello"};
    char *p = NULL;
    assert_int_equal(align_render(s, m, 1, &p, NULL, NULL), ICA_OK);
    assert_string_equal(p, "# Query:\n```\nHello\n```\n\n# Answer:\n```\n");
    free(p);
    align_set_free(s);

    char path[1024];
    tu_require_shared(path, sizeof path, ICL "urial.txt");
    char spec[1100];
    snprintf(spec, sizeof spec, "header-only:%s", path);
    assert_int_equal(align_spec_load(spec, &s, NULL), ICA_OK);
    assert_int_equal(align_set_count(s), 0);
    assert_int_equal(align_render(s, m, 1, &p, NULL, NULL), ICA_OK);
    size_t n;
    char *u = read_shared(ICL "urial.txt", &n);
    assert_memory_equal(p, u, 642); /* header minus its last newline */
    assert_string_equal(p + 642, "\n# Query:\n```\nHello\n```\n\n# Answer:\n```\n");
    free(u);
    free(p);
    align_set_free(s);
}

/* ==== the default set ==== */

static void test_default_set(void **st) {
    (void)st;
    /* the compiled-in text equals data/demos/default.txt */
    char path[2048];
    snprintf(path, sizeof path, "%s", __FILE__);
    char *slash = strstr(path, "tests/unit/");
    assert_non_null(slash);
    snprintf(slash, sizeof path - (size_t)(slash - path), "data/demos/default.txt");
    size_t n;
    char *t = tu_read_file(path, &n);
    assert_non_null(t);
    assert_int_equal(n, strlen(align_default_text()));
    assert_memory_equal(t, align_default_text(), n);
    free(t);
    struct align_set *s = NULL;
    assert_int_equal(align_spec_load("default", &s, NULL), ICA_OK);
    assert_int_equal(align_set_count(s), 3);
    for (size_t i = 0; i < 3; i++)
        assert_non_null(align_set_demo(s, i)->answer);
    char *w = NULL;
    assert_int_equal(align_set_write(s, &w, NULL, NULL), ICA_OK);
    assert_string_equal(w, align_default_text());
    free(w);
    align_set_free(s);
}

/* ==== ablation transforms ==== */

static void check_transform(const char *in_rel, enum align_variant v, int shift,
                            const char *want_rel) {
    struct align_set *in = load(in_rel), *out = NULL;
    struct align_transform_opts o = {.shift = shift};
    struct ica_error e = {0};
    assert_int_equal(align_transform(in, v, &o, &out, &e), ICA_OK);
    assert_written_equals(out, want_rel);
    align_set_free(in);
    align_set_free(out);
}

static void test_transforms_published(void **st) {
    (void)st;
    const char *u = ICL "urial.txt", *u3 = ICL "urial.plus.best_4&5&6.examples.txt";
    check_transform(u, ALIGN_VARIANT_CORRECT, 1, ICL "qa_matching/urial/urial.correct.txt");
    check_transform(u, ALIGN_VARIANT_CIRCULAR_SHIFT, 1,
                    ICL "qa_matching/urial/urial.circular_shift.txt");
    check_transform(u, ALIGN_VARIANT_NO_ANSWER, 1, ICL "qa_matching/urial/urial.no_answer.txt");
    check_transform(u3, ALIGN_VARIANT_CORRECT, 1,
                    ICL "qa_matching/urial_plus_3/urial_plus_3.correct.txt");
    check_transform(u3, ALIGN_VARIANT_CIRCULAR_SHIFT, -1,
                    ICL "qa_matching/urial_plus_3/urial_plus_3.circular_shift.txt");
    check_transform(u3, ALIGN_VARIANT_NO_ANSWER, 1,
                    ICL "qa_matching/urial_plus_3/urial_plus_3.no_answer.txt");
}

/* random_answer with the published replacement answers: the pool is the published file's own
 * answer list (qa_matching_map.json says which are external); answer heads are checked. */
static void check_random(const char *in_rel, const char *key, const char *want_rel,
                         json_object *map) {
    struct align_set *in = load(in_rel), *pool = load(want_rel), *out = NULL;
    json_object *entries;
    assert_true(json_object_object_get_ex(map, key, &entries));
    assert_int_equal(json_object_array_length(entries), align_set_count(pool));
    for (size_t i = 0; i < align_set_count(pool); i++) {
        json_object *ent = json_object_array_get_idx(entries, i), *src, *head;
        assert_true(json_object_object_get_ex(ent, "answer_source", &src));
        assert_string_equal(json_object_get_string(src), "external");
        assert_true(json_object_object_get_ex(ent, "answer_head", &head));
        const char *h = json_object_get_string(head);
        assert_memory_equal(align_set_demo(pool, i)->answer, h, strlen(h));
    }
    struct align_transform_opts o = {.pool = pool};
    assert_int_equal(align_transform(in, ALIGN_VARIANT_RANDOM_ANSWER, &o, &out, NULL), ICA_OK);
    assert_written_equals(out, want_rel);
    align_set_free(out);
    /* seeded draws are deterministic and use every pool answer at most once */
    struct align_set *o1 = NULL, *o2 = NULL;
    o.seeded = true;
    o.seed = 42;
    assert_int_equal(align_transform(in, ALIGN_VARIANT_RANDOM_ANSWER, &o, &o1, NULL), ICA_OK);
    assert_int_equal(align_transform(in, ALIGN_VARIANT_RANDOM_ANSWER, &o, &o2, NULL), ICA_OK);
    for (size_t i = 0; i < align_set_count(o1); i++) {
        assert_string_equal(align_set_demo(o1, i)->answer, align_set_demo(o2, i)->answer);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(align_set_demo(o1, i)->answer, align_set_demo(o1, j)->answer);
    }
    align_set_free(o1);
    align_set_free(o2);
    align_set_free(in);
    align_set_free(pool);
}

static void test_transforms_random(void **st) {
    (void)st;
    size_t n;
    char *t = read_shared(DERIVED "qa_matching_map.json", &n);
    json_object *map = json_tokener_parse(t);
    assert_non_null(map);
    const char *u = ICL "urial.txt", *u3 = ICL "urial.plus.best_4&5&6.examples.txt";
    check_random(u, "urial.id.random_answer", ICL "qa_matching/urial/urial.id.random_answer.txt",
                 map);
    check_random(u, "urial.ood.random_answer", ICL "qa_matching/urial/urial.ood.random_answer.txt",
                 map);
    check_random(u3, "urial_plus_3.id.random_answer",
                 ICL "qa_matching/urial_plus_3/urial_plus_3.id.random_answer.txt", map);
    check_random(u3, "urial_plus_3.ood.random_answer",
                 ICL "qa_matching/urial_plus_3/urial_plus_3.ood.random_answer.txt", map);
    /* the circular shifts agree with the map's answer_of_demo_j entries */
    json_object *cs;
    assert_true(json_object_object_get_ex(map, "urial_plus_3.circular_shift", &cs));
    for (size_t i = 0; i < 6; i++) {
        json_object *src;
        assert_true(
            json_object_object_get_ex(json_object_array_get_idx(cs, i), "answer_source", &src));
        char want[32];
        snprintf(want, sizeof want, "answer_of_demo_%zu", (i + 5) % 6);
        assert_string_equal(json_object_get_string(src), want);
    }
    json_object_put(map);
    free(t);
}

static void test_transform_unsupervised(void **st) {
    (void)st;
    static const int ns[] = {3, 5, 10, 20, 30, 40, 50};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        char rel[256];
        snprintf(rel, sizeof rel, ICL "unsupervised/urial.unsupervised.%d.examples.txt", ns[k]);
        struct align_set *pub = load(rel);
        /* the queries: those of diversity/openhermes-N where the README's reuse holds, else the
         * published file's own query-only demos */
        struct align_set *q = NULL;
        if (ns[k] != 10 && ns[k] != 20) {
            char drel[256];
            snprintf(drel, sizeof drel, ICL "diversity/openhermes-%d.examples.txt", ns[k]);
            q = load(drel);
        } else {
            q = align_set_new(NULL);
            for (size_t i = 0; i < align_set_count(pub); i++)
                if (!align_set_demo(pub, i)->answer)
                    assert_int_equal(
                        align_set_insert(q, align_set_count(q), align_set_demo(pub, i), NULL),
                        ICA_OK);
        }
        struct align_set *u = load(ICL "urial.txt"), *out = NULL;
        struct align_transform_opts o = {.pool = q};
        assert_int_equal(align_transform(u, ALIGN_VARIANT_UNSUPERVISED, &o, &out, NULL), ICA_OK);
        assert_written_equals(out, rel);
        align_set_free(out);
        align_set_free(u);
        align_set_free(q);
        align_set_free(pub);
    }
}

static void test_variant_names(void **st) {
    (void)st;
    enum align_variant v;
    struct ica_error e = {0};
    assert_int_equal(align_variant_parse("circular-shift", &v, &e), ICA_OK);
    assert_int_equal(v, ALIGN_VARIANT_CIRCULAR_SHIFT);
    assert_int_equal(align_variant_parse("shuffle", &v, &e), ICA_ERR_ARG);
    assert_non_null(strstr(e.msg, "no_answer"));
    struct align_set *s = align_set_new("h\n"), *out = NULL;
    struct align_transform_opts o = {.shift = 2};
    assert_int_equal(align_transform(s, ALIGN_VARIANT_CIRCULAR_SHIFT, &o, &out, &e), ICA_ERR_ARG);
    o.shift = 1;
    assert_int_equal(align_transform(s, ALIGN_VARIANT_RANDOM_ANSWER, &o, &out, &e), ICA_ERR_ARG);
    align_set_free(s);
}

/* ==== composition ==== */

static void test_spec_pool(void **st) {
    (void)st;
    char pool[1024], urial[1024], spec[4096];
    tu_require_shared(pool, sizeof pool, DERIVED "demo_pool.jsonl");
    tu_require_shared(urial, sizeof urial, ICL "urial.txt");
    struct align_set *a = NULL, *b = NULL;
    struct ica_error e = {0};
    /* N random demos before the URIAL demos: deterministic for a seed, never a URIAL demo */
    snprintf(spec, sizeof spec, "%s+pool:%s:random=5:seed=7", urial, pool);
    assert_int_equal(align_spec_load(spec, &a, &e), ICA_OK);
    assert_int_equal(align_spec_load(spec, &b, &e), ICA_OK);
    assert_int_equal(align_set_count(a), 8);
    for (size_t i = 0; i < 8; i++)
        assert_string_equal(align_set_demo(a, i)->id, align_set_demo(b, i)->id);
    assert_string_equal(align_set_demo(a, 5)->query,
                        "Can you tell me some common types of renewable energy sources?");
    for (size_t i = 0; i < 5; i++)
        assert_string_not_equal(align_set_demo(a, i)->query, align_set_demo(a, 5)->query);
    align_set_free(b);
    snprintf(spec, sizeof spec, "%s+pool:%s:random=5:seed=8", urial, pool);
    assert_int_equal(align_spec_load(spec, &b, &e), ICA_OK);
    int same = 0;
    for (size_t i = 0; i < 5; i++)
        same += !strcmp(align_set_demo(a, i)->id, align_set_demo(b, i)->id);
    assert_true(same < 5);
    align_set_free(a);
    align_set_free(b);

    /* after: */
    snprintf(spec, sizeof spec, "%s+after:pool:%s:ids=878cadd5470f", urial, pool);
    assert_int_equal(align_spec_load(spec, &a, &e), ICA_OK);
    assert_int_equal(align_set_count(a), 4);
    assert_string_equal(align_set_demo(a, 3)->id, "878cadd5470f");
    align_set_free(a);

    /* stratified: every source represented as evenly as possible */
    snprintf(spec, sizeof spec, "pool:%s:stratified=8:seed=3", pool);
    assert_int_equal(align_spec_load(spec, &a, &e), ICA_OK);
    assert_int_equal(align_set_count(a), 8);
    int per[8] = {0};
    const char *names[8] = {0};
    size_t nn = 0;
    for (size_t i = 0; i < 8; i++) {
        const char *src = align_set_demo(a, i)->source;
        size_t k = 0;
        while (k < nn && strcmp(names[k], src))
            k++;
        if (k == nn)
            names[nn++] = src;
        per[k]++;
    }
    /* answered demos by first family: diversity 158, random 135, greedy 50, top 1: round robin
     * gives 1 to top and 7 split 3/2/2 over the others */
    assert_int_equal(nn, 4);
    int ones = 0, threes = 0;
    for (size_t k = 0; k < nn; k++) {
        assert_true(per[k] >= 1 && per[k] <= 3);
        ones += per[k] == 1;
        threes += per[k] == 3;
    }
    assert_int_equal(ones, 1);
    assert_int_equal(threes, 1);
    /* a pool-based set has the default header */
    struct align_set *d = NULL;
    assert_int_equal(align_spec_load("default", &d, NULL), ICA_OK);
    assert_string_equal(align_set_header(a), align_set_header(d));
    align_set_free(d);
    align_set_free(a);

    /* errors */
    snprintf(spec, sizeof spec, "pool:%s:ids=nope", pool);
    assert_int_equal(align_spec_load(spec, &a, &e), ICA_ERR_NOTFOUND);
    assert_non_null(strstr(e.msg, "nope"));
    snprintf(spec, sizeof spec, "pool:%s:random=100000", pool);
    assert_int_equal(align_spec_load(spec, &a, &e), ICA_ERR_RANGE);
    snprintf(spec, sizeof spec, "pool:%s:count=3", pool);
    assert_int_equal(align_spec_load(spec, &a, &e), ICA_ERR_ARG);
    assert_int_equal(align_spec_load("/nonexistent/file.txt", &a, &e), ICA_ERR_IO);
    assert_non_null(strstr(e.msg, "/nonexistent/file.txt"));
}

static void test_rng(void **st) {
    (void)st;
    struct align_rng r;
    align_rng_seed(&r, 1234567);
    /* splitmix64 reference values for seed 1234567 */
    assert_true(align_rng_next(&r) == 6457827717110365317ULL);
    assert_true(align_rng_next(&r) == 3203168211198807973ULL);
    for (int i = 0; i < 1000; i++)
        assert_true(align_rng_below(&r, 7) < 7);
}

/* ==== malformed input ==== */

static void expect_parse_error(const char *text, const char *needle) {
    struct align_set *s = NULL;
    struct ica_error e = {0};
    int rc = align_set_parse(text, strlen(text), "bad.txt", &s, &e);
    assert_int_equal(rc, ICA_ERR_FORMAT);
    assert_null(s);
    if (!strstr(e.msg, needle))
        fail_msg("error '%s' lacks '%s'", e.msg, needle);
}

static void test_malformed_files(void **st) {
    (void)st;
    expect_parse_error("# Rules\n\n# Query:\nno fence\n", "bad.txt:3: '# Query:' is not followed");
    expect_parse_error("# Rules\n\n# Query:\n```\nunterminated\n", "bad.txt:3: unterminated");
    expect_parse_error("# Query:\n```\nq\n```\n\n# Answer:\n```\nnever closed\n",
                       "bad.txt:6: unterminated");
    expect_parse_error("# Query:\n```\nq\n```\n\n# Answer:\nno fence\n```\n",
                       "bad.txt:6: '# Answer:' is not followed");
    expect_parse_error("h\n\n# Query:\n```\nq\n```\ngarbage", "unterminated");
    expect_parse_error("bad \xff byte\n", "bad.txt:1: invalid UTF-8");
    struct align_set *s = NULL;
    struct ica_error e = {0};
    assert_int_equal(align_set_parse("a\n\0b", 4, "nul.txt", &s, &e), ICA_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "nul.txt:2"));
    /* CRLF is read as LF; trailing blank lines are kept as a trailer */
    const char *crlf = "H\r\n\r\n# Query:\r\n```\r\nq\r\n```\r\n\n\n";
    assert_int_equal(align_set_parse(crlf, strlen(crlf), "crlf.txt", &s, &e), ICA_OK);
    assert_int_equal(align_set_count(s), 1);
    assert_string_equal(align_set_demo(s, 0)->query, "q");
    assert_string_equal(align_set_trailer(s), "\n\n");
    align_set_free(s);
    /* an empty query and an empty answer are valid */
    const char *empty = "# Query:\n```\n\n```\n\n# Answer:\n```\n\n```\n";
    assert_int_equal(align_set_parse(empty, strlen(empty), "e.txt", &s, &e), ICA_OK);
    assert_int_equal(align_set_count(s), 1);
    assert_string_equal(align_set_demo(s, 0)->query, "");
    assert_string_equal(align_set_demo(s, 0)->answer, "");
    char *w = NULL;
    assert_int_equal(align_set_write(s, &w, NULL, NULL), ICA_OK);
    assert_string_equal(w, empty);
    free(w);
    align_set_free(s);
    /* a header-only file */
    assert_int_equal(align_set_parse("rules\n", 6, "h.txt", &s, &e), ICA_OK);
    assert_int_equal(align_set_count(s), 0);
    align_set_free(s);
}

static void test_malformed_jsonl(void **st) {
    (void)st;
    struct align_set *s = NULL;
    struct ica_error e = {0};
    const char *t = "{\"query\": \"a\", \"answer\": \"b\"}\n\n{\"query\": \"c\", \"answer\": \n";
    assert_int_equal(align_pool_parse_jsonl(t, strlen(t), "p.jsonl", &s, &e), ICA_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "p.jsonl:3:"));
    t = "{\"query\": 5}\n";
    assert_int_equal(align_pool_parse_jsonl(t, strlen(t), "p.jsonl", &s, &e), ICA_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "p.jsonl:1: \"query\""));
    t = "[1,2]\n";
    assert_int_equal(align_pool_parse_jsonl(t, strlen(t), "p.jsonl", &s, &e), ICA_ERR_FORMAT);
    t = "{\"query\": \"a\"} x\n";
    assert_int_equal(align_pool_parse_jsonl(t, strlen(t), "p.jsonl", &s, &e), ICA_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "p.jsonl:1: extra text"));
    t = "{\"query\": \"a\", \"answer\": null, \"id\": 7, \"source\": \"s\"}\r\n"
        "{\"query\": \"b\", \"families\": [\"greedy\"]}";
    assert_int_equal(align_pool_parse_jsonl(t, strlen(t), "p.jsonl", &s, &e), ICA_OK);
    assert_int_equal(align_set_count(s), 2);
    assert_null(align_set_demo(s, 0)->answer);
    assert_string_equal(align_set_demo(s, 0)->id, "7");
    assert_string_equal(align_set_demo(s, 0)->source, "s");
    assert_string_equal(align_set_demo(s, 1)->source, "greedy");
    assert_string_equal(align_set_demo(s, 1)->id, "2");
    align_set_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_selftest),
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_roundtrip_icl),
        cmocka_unit_test(test_parse_urial),
        cmocka_unit_test(test_pool_matches_files),
        cmocka_unit_test(test_realign_files),
        cmocka_unit_test(test_render_empty_answer),
        cmocka_unit_test(test_render_none_header_only),
        cmocka_unit_test(test_default_set),
        cmocka_unit_test(test_transforms_published),
        cmocka_unit_test(test_transforms_random),
        cmocka_unit_test(test_transform_unsupervised),
        cmocka_unit_test(test_variant_names),
        cmocka_unit_test(test_spec_pool),
        cmocka_unit_test(test_rng),
        cmocka_unit_test(test_malformed_files),
        cmocka_unit_test(test_malformed_jsonl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
