/* libFuzzer target for the align parsers: URIAL prompt files, JSONL pools, rendering,
 * transforms, post-processing and the stop matcher. Checks that a parsed URIAL-layout file is
 * written back byte for byte (after CRLF normalisation) and that nothing crashes or leaks. */
#include "icalign/align.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_roundtrip(const char *in, size_t n, const struct align_set *s) {
    if (align_set_style(s) != ALIGN_STYLE_URIAL || memchr(in, '\r', n))
        return;
    char *w = NULL;
    size_t wl = 0;
    if (align_set_write(s, &w, &wl, NULL) != ICA_OK)
        return;
    if (wl != n || memcmp(w, in, n) != 0)
        __builtin_trap();
    free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *in = (const char *)data;
    struct ica_error e;
    struct align_set *s = NULL, *pool = NULL;
    if (align_set_parse(in, size, "fuzz.txt", &s, &e) == ICA_OK) {
        check_roundtrip(in, size, s);
        const char *msgs[3] = {"q", "", "q2"};
        char *r = NULL;
        if (align_render(s, msgs, 3, &r, NULL, &e) == ICA_OK)
            free(r);
        for (int v = ALIGN_VARIANT_CORRECT; v <= ALIGN_VARIANT_UNSUPERVISED; v++) {
            struct align_transform_opts o = {.shift = (v & 1) ? 1 : -1, .pool = s, .seeded = v & 1};
            struct align_set *t = NULL;
            if (align_transform(s, (enum align_variant)v, &o, &t, &e) == ICA_OK) {
                char *w = NULL;
                if (align_set_write(t, &w, NULL, &e) == ICA_OK)
                    free(w);
                align_set_free(t);
            }
        }
        align_set_free(s);
    }
    if (align_pool_parse_jsonl(in, size, "fuzz.jsonl", &pool, &e) == ICA_OK) {
        struct align_set *sel = NULL;
        if (align_pool_select_stratified(pool, align_set_count(pool) / 2, size, NULL, &sel, &e) ==
            ICA_OK)
            align_set_free(sel);
        align_set_free(pool);
    }
    char *pp = NULL;
    if (align_postprocess(in, size, &pp, NULL, &e) == ICA_OK)
        free(pp);
    struct align_stop st;
    const char *stops[2] = {"# Query", "# User"};
    if (align_stop_init(&st, stops, 2, &e) == ICA_OK) {
        size_t step = size % 7 + 1;
        for (size_t i = 0; i < size && !st.stopped; i += step) {
            size_t k = size - i < step ? size - i : step;
            if (align_stop_feed(&st, in + i, k, &e) != ICA_OK)
                break;
            const char *p;
            align_stop_take(&st, &p);
            if (st.safe > st.len)
                __builtin_trap();
        }
        align_stop_free(&st);
    }
    return 0;
}
