/* The demonstration pool and the answer pools shipped in data/pool/, loaded through the real
 * parser (align_pool_load): sizes, unique ids, non-empty queries and answers, the required
 * categories, no query shared with MT-Bench or between the files, and the sets the search,
 * sweep and ablate commands build from them (URIAL round trip, stratified draws, the
 * random-answer ablations). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "icalign/align.h"
#include "testutil.h"

#include <ctype.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Path of data/pool/<name> in this source tree (found from this file's path). */
static void pool_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s", __FILE__);
    char *slash = strstr(buf, "tests/unit/");
    assert_non_null(slash);
    snprintf(slash, n - (size_t)(slash - buf), "data/pool/%s", name);
}

static struct align_set *load(const char *name) {
    char path[4096];
    pool_path(path, sizeof path, name);
    struct align_set *s = NULL;
    struct ica_error e = {0};
    int rc = align_pool_load(path, &s, &e);
    if (rc != ICA_OK)
        fail_msg("%s: %s", path, e.msg);
    return s;
}

/* Lower-cased, whitespace-collapsed, trimmed copy (malloc'd). */
static char *norm(const char *s) {
    char *o = malloc(strlen(s) + 1);
    assert_non_null(o);
    size_t k = 0;
    int space = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isspace(*p)) {
            space = k > 0;
            continue;
        }
        if (space)
            o[k++] = ' ';
        space = 0;
        o[k++] = (char)tolower(*p);
    }
    o[k] = 0;
    return o;
}

static int blank(const char *s) {
    for (; s && *s; s++)
        if (!isspace((unsigned char)*s))
            return 0;
    return 1;
}

/* Every demo has an id, a non-blank query and answer, no ``` (the URIAL fences), and the ids
 * are unique within the set. */
static void check_entries(const struct align_set *s, const char *name) {
    size_t n = align_set_count(s);
    for (size_t i = 0; i < n; i++) {
        const struct align_demo *d = align_set_demo(s, i);
        if (blank(d->id) || blank(d->query) || !d->answer || blank(d->answer))
            fail_msg("%s entry %zu (%s): empty id, query or answer", name, i, d->id);
        if (strstr(d->query, "```") || strstr(d->answer, "```"))
            fail_msg("%s entry %s contains a ``` fence", name, d->id);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(align_set_demo(s, j)->id, d->id))
                fail_msg("%s: id %s appears twice", name, d->id);
    }
}

static size_t count_source(const struct align_set *s, const char *src) {
    size_t c = 0;
    for (size_t i = 0; i < align_set_count(s); i++)
        c += !strcmp(align_set_demo(s, i)->source, src);
    return c;
}

static void test_pool(void **st) {
    (void)st;
    struct align_set *p = load("pool.jsonl");
    size_t n = align_set_count(p);
    assert_true(n >= 60);
    check_entries(p, "pool.jsonl");
    static const char *const required[] = {"general-knowledge", "reasoning", "maths", "coding",
                                           "writing",           "safety"};
    for (size_t k = 0; k < sizeof required / sizeof *required; k++)
        if (count_source(p, required[k]) < 8)
            fail_msg("pool.jsonl: category %s has %zu entries (< 8)", required[k],
                     count_source(p, required[k]));
    /* every entry belongs to a documented category, and the optional ones have some too */
    size_t known = count_source(p, "advice") + count_source(p, "explanation");
    assert_true(count_source(p, "advice") >= 4 && count_source(p, "explanation") >= 4);
    for (size_t k = 0; k < sizeof required / sizeof *required; k++)
        known += count_source(p, required[k]);
    assert_int_equal(known, n);
    /* answers in the URIAL answer style: not one-liners (the pool averages ~190 words) */
    for (size_t i = 0; i < n; i++)
        if (strlen(align_set_demo(p, i)->answer) < 400)
            fail_msg("pool.jsonl %s: answer shorter than 400 bytes", align_set_demo(p, i)->id);
    align_set_free(p);
}

static void test_answer_pools(void **st) {
    (void)st;
    static const char *const names[] = {"answers-id.jsonl", "answers-ood.jsonl"};
    for (size_t k = 0; k < 2; k++) {
        struct align_set *s = load(names[k]);
        assert_true(align_set_count(s) >= 32);
        check_entries(s, names[k]);
        align_set_free(s);
    }
}

/* No query of one file is the query of another entry of any file (ids distinct across files
 * too), and no query is an MT-Bench question (either turn) or a URIAL demo query. */
static void test_queries_distinct(void **st) {
    (void)st;
    static const char *const names[] = {"pool.jsonl", "answers-id.jsonl", "answers-ood.jsonl"};
    struct align_set *s[3];
    size_t total = 0;
    for (size_t k = 0; k < 3; k++) {
        s[k] = load(names[k]);
        total += align_set_count(s[k]);
    }
    char **q = calloc(total, sizeof *q);
    const char **ids = calloc(total, sizeof *ids);
    assert_non_null(q);
    assert_non_null(ids);
    size_t m = 0;
    for (size_t k = 0; k < 3; k++)
        for (size_t i = 0; i < align_set_count(s[k]); i++) {
            q[m] = norm(align_set_demo(s[k], i)->query);
            ids[m] = align_set_demo(s[k], i)->id;
            for (size_t j = 0; j < m; j++) {
                if (!strcmp(q[j], q[m]))
                    fail_msg("query of %s also in %s", ids[m], ids[j]);
                if (!strcmp(ids[j], ids[m]))
                    fail_msg("id %s used twice", ids[m]);
            }
            m++;
        }

    char path[4096];
    tu_require_shared(path, sizeof path, "data/mt_bench/question.jsonl");
    size_t len;
    char *text = tu_read_file(path, &len);
    assert_non_null(text);
    size_t nturns = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_object *o = json_tokener_parse(line);
        assert_non_null(o);
        json_object *turns;
        assert_true(json_object_object_get_ex(o, "turns", &turns));
        for (size_t t = 0; t < json_object_array_length(turns); t++) {
            char *mt = norm(json_object_get_string(json_object_array_get_idx(turns, t)));
            for (size_t j = 0; j < m; j++)
                if (!strcmp(mt, q[j]))
                    fail_msg("%s is an MT-Bench question", ids[j]);
            free(mt);
            nturns++;
        }
        json_object_put(o);
    }
    assert_int_equal(nturns, 160);
    free(text);

    struct align_set *urial = NULL;
    if (tu_shared_path(path, sizeof path,
                       "data/urial/tml-epfl_icl-alignment/urial_prompts/urial.txt")) {
        assert_int_equal(align_set_load_file(path, &urial, NULL), ICA_OK);
        for (size_t i = 0; i < align_set_count(urial); i++) {
            char *u = norm(align_set_demo(urial, i)->query);
            for (size_t j = 0; j < m; j++)
                if (!strcmp(u, q[j]))
                    fail_msg("%s is a URIAL demo query", ids[j]);
            free(u);
        }
        align_set_free(urial);
    }
    for (size_t j = 0; j < m; j++)
        free(q[j]);
    free(q);
    free(ids);
    for (size_t k = 0; k < 3; k++)
        align_set_free(s[k]);
}

/* The whole pool written as a URIAL prompt file parses back to the same demos (no answer
 * breaks the block grammar), and a 50-demo stratified draw (the sweep's largest diversity
 * set) covers every category. */
static void test_pool_as_set(void **st) {
    (void)st;
    struct align_set *p = load("pool.jsonl");
    char *text = NULL;
    struct align_set *def = NULL;
    assert_int_equal(align_spec_load("default", &def, NULL), ICA_OK);
    assert_int_equal(align_set_set_header(p, align_set_header(def), NULL), ICA_OK);
    size_t len;
    assert_int_equal(align_set_write(p, &text, &len, NULL), ICA_OK);
    struct align_set *back = NULL;
    struct ica_error e = {0};
    if (align_set_parse(text, len, "pool.txt", &back, &e) != ICA_OK)
        fail_msg("pool as a URIAL file: %s", e.msg);
    assert_int_equal(align_set_count(back), align_set_count(p));
    for (size_t i = 0; i < align_set_count(p); i++) {
        assert_string_equal(align_set_demo(back, i)->query, align_set_demo(p, i)->query);
        assert_string_equal(align_set_demo(back, i)->answer, align_set_demo(p, i)->answer);
    }
    free(text);
    align_set_free(back);

    struct align_set *d = NULL;
    assert_int_equal(align_pool_select_stratified(p, 50, 53, def, &d, NULL), ICA_OK);
    assert_int_equal(align_set_count(d), 50);
    static const char *const cats[] = {"general-knowledge", "reasoning", "maths",  "coding",
                                       "writing",           "safety",    "advice", "explanation"};
    for (size_t k = 0; k < 8; k++)
        assert_true(count_source(d, cats[k]) >= 5);
    align_set_free(d);
    /* the sweep's random family at N = 50 with 3 base demos */
    assert_int_equal(align_pool_select_random(p, 47, 50, def, &d, NULL), ICA_OK);
    assert_int_equal(align_set_count(d), 47);
    align_set_free(d);
    align_set_free(def);
    align_set_free(p);
}

/* id_random / ood_random on a 3-demo set: the answers are those of the pools, in pool order,
 * and the first three ID answers are the type-matched ones documented in data/pool/README.md. */
static void test_random_answer(void **st) {
    (void)st;
    struct align_set *def = NULL, *id = load("answers-id.jsonl"), *ood = load("answers-ood.jsonl");
    assert_int_equal(align_spec_load("default", &def, NULL), ICA_OK);
    struct align_set *pools[2] = {id, ood};
    for (size_t k = 0; k < 2; k++) {
        struct align_transform_opts o = {.shift = 1, .pool = pools[k]};
        struct align_set *out = NULL;
        assert_int_equal(align_transform(def, ALIGN_VARIANT_RANDOM_ANSWER, &o, &out, NULL), ICA_OK);
        assert_int_equal(align_set_count(out), 3);
        for (size_t i = 0; i < 3; i++) {
            assert_string_equal(align_set_demo(out, i)->query, align_set_demo(def, i)->query);
            assert_string_equal(align_set_demo(out, i)->answer,
                                align_set_demo(pools[k], i)->answer);
        }
        align_set_free(out);
        /* seeded draws work for the 6-demo urial_plus_3 set size too */
        o.seeded = true;
        o.seed = 7;
        struct align_set *six = align_set_clone(def);
        assert_non_null(six);
        assert_int_equal(align_set_merge(six, def, false, NULL), ICA_OK);
        assert_int_equal(align_transform(six, ALIGN_VARIANT_RANDOM_ANSWER, &o, &out, NULL), ICA_OK);
        assert_int_equal(align_set_count(out), 6);
        align_set_free(out);
        align_set_free(six);
    }
    /* type matching of the first three ID answers: a list, an arithmetic solution, a procedure */
    assert_non_null(strstr(align_set_demo(id, 0)->answer, "\n1. "));
    assert_non_null(strstr(align_set_demo(id, 1)->answer, " = "));
    assert_non_null(strstr(align_set_demo(id, 2)->answer, "step-by-step"));
    align_set_free(def);
    align_set_free(id);
    align_set_free(ood);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_answer_pools),
        cmocka_unit_test(test_queries_distinct),
        cmocka_unit_test(test_pool_as_set),
        cmocka_unit_test(test_random_answer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
