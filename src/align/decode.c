/* Decoding presets, output post-processing and the streaming stop-string matcher (METHOD.md §2).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* ==== presets ==== */

/* urial: the ICL/URIAL vLLM runs (T=0, rp=1.15 over prompt+output, top_p 1, 2048 new tokens,
 * stop "# Query"/"# User"); urial-moe: the MoE runs (T=0.5, rp=1); gpt4-base: the OpenAI
 * completions run (T=0.2, frequency 0.3, presence 0.1). */
static const struct align_preset k_presets[] = {
    {"urial", 0.0f, 1.0f, 0, 0.0f, 1.15f, 0.0f, 0.0f, 2048, 2, {"# Query", "# User"}},
    {"urial-moe", 0.5f, 1.0f, 0, 0.0f, 1.0f, 0.0f, 0.0f, 2048, 2, {"# Query", "# User"}},
    {"gpt4-base", 0.2f, 1.0f, 0, 0.0f, 1.0f, 0.3f, 0.1f, 2048, 2, {"# Query", "# User"}},
};
#define N_PRESETS (sizeof k_presets / sizeof k_presets[0])

size_t align_preset_count(void) {
    return N_PRESETS;
}

const char *align_preset_name(size_t i) {
    return i < N_PRESETS ? k_presets[i].name : NULL;
}

int align_preset_get(const char *name, struct align_preset *out, struct ica_error *e) {
    for (size_t i = 0; i < N_PRESETS; i++)
        if (name && strcmp(name, k_presets[i].name) == 0) {
            *out = k_presets[i];
            return ICA_OK;
        }
    return ica_seterr(e, ICA_ERR_NOTFOUND,
                      "unknown preset '%s' (valid: urial, urial-moe, gpt4-base)",
                      name ? name : "(null)");
}

/* ==== post-processing ==== */

/* Length of the Python-whitespace code point ending at s[end) (0 if none). */
static size_t ws_before(const unsigned char *s, size_t start, size_t end) {
    if (end <= start)
        return 0;
    unsigned c = s[end - 1];
    if ((c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20))
        return 1;
    if (c < 0x80)
        return 0;
    size_t k = end - 1; /* find the lead byte */
    while (k > start && (s[k] & 0xC0) == 0x80 && end - k < 4)
        k--;
    size_t n = end - k;
    unsigned cp;
    if (n == 2 && (s[k] & 0xE0) == 0xC0)
        cp = ((s[k] & 0x1Fu) << 6) | (s[k + 1] & 0x3Fu);
    else if (n == 3 && (s[k] & 0xF0) == 0xE0)
        cp = ((s[k] & 0x0Fu) << 12) | ((s[k + 1] & 0x3Fu) << 6) | (s[k + 2] & 0x3Fu);
    else
        return 0;
    bool ws = cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
              cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
    return ws ? n : 0;
}

static size_t ws_after(const unsigned char *s, size_t start, size_t end) {
    if (start >= end)
        return 0;
    unsigned c = s[start];
    if ((c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20))
        return 1;
    size_t n = c >= 0xE0 && c < 0xF0 ? 3 : (c >= 0xC0 && c < 0xE0 ? 2 : 0);
    if (!n || end - start < n)
        return 0;
    return ws_before(s, start, start + n) == n ? n : 0;
}

static void rstrip(const char *t, size_t *a, size_t *z) {
    size_t k;
    while ((k = ws_before((const unsigned char *)t, *a, *z)) > 0)
        *z -= k;
}

static void lstrip(const char *t, size_t *a, size_t *z) {
    size_t k;
    while ((k = ws_after((const unsigned char *)t, *a, *z)) > 0)
        *a += k;
}

/* Python str.replace(old, new): left to right, non-overlapping. */
static bool replace_all(struct abuf *b, const char *t, size_t n, const char *old, const char *nw) {
    size_t ol = strlen(old), i = 0, run = 0;
    while (i < n) {
        if (n - i >= ol && memcmp(t + i, old, ol) == 0) {
            abuf_add(b, t + run, i - run);
            abuf_adds(b, nw);
            i += ol;
            run = i;
        } else {
            i++;
        }
    }
    abuf_add(b, t + run, n - run);
    return !b->failed;
}

int align_postprocess(const char *raw, size_t len, char **out, size_t *out_len,
                      struct ica_error *e) {
    *out = NULL;
    size_t a = 0, z = len;
    rstrip(raw, &a, &z);
    struct abuf b1 = {0}, b2 = {0};
    if (!replace_all(&b1, raw, z, "```", "") || !abuf_add(&b1, "", 0))
        return align_nomem(e);
    if (!replace_all(&b2, b1.data, b1.len, "<|endoftext|>", " ") || !abuf_add(&b2, "", 0)) {
        abuf_free(&b1);
        return align_nomem(e);
    }
    abuf_free(&b1);
    a = 0;
    z = b2.len;
    rstrip(b2.data, &a, &z);
    lstrip(b2.data, &a, &z);
    char *r = align_strndup(b2.data + a, z - a);
    abuf_free(&b2);
    if (!r)
        return align_nomem(e);
    if (out_len)
        *out_len = z - a;
    *out = r;
    return ICA_OK;
}

/* ==== stop strings ==== */

int align_stop_init(struct align_stop *st, const char *const *stops, size_t n,
                    struct ica_error *e) {
    memset(st, 0, sizeof *st);
    st->which = -1;
    st->stops = calloc(n ? n : 1, sizeof *st->stops);
    st->text = malloc(1);
    if (!st->stops || !st->text) {
        align_stop_free(st);
        return align_nomem(e);
    }
    st->text[0] = '\0';
    st->cap = 1;
    for (size_t i = 0; i < n; i++) {
        if (!stops[i] || !stops[i][0])
            continue;
        if (!(st->stops[st->n_stop] = align_strdup(stops[i]))) {
            align_stop_free(st);
            return align_nomem(e);
        }
        size_t l = strlen(stops[i]);
        if (l > st->max_len)
            st->max_len = l;
        st->n_stop++;
    }
    return ICA_OK;
}

void align_stop_free(struct align_stop *st) {
    if (st->stops)
        for (size_t i = 0; i < st->n_stop; i++)
            free(st->stops[i]);
    free(st->stops);
    free(st->text);
    memset(st, 0, sizeof *st);
    st->which = -1;
}

/* Length of an incomplete UTF-8 sequence at the end of t[0..n) (0 if it ends cleanly). */
static size_t utf8_incomplete_tail(const char *t, size_t n) {
    const unsigned char *s = (const unsigned char *)t;
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned c = s[n - k];
        if ((c & 0xC0) == 0x80)
            continue;
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > k ? k : 0;
    }
    return 0;
}

int align_stop_feed(struct align_stop *st, const char *chunk, size_t len, struct ica_error *e) {
    if (st->stopped || len == 0)
        return ICA_OK;
    if (st->len + len + 1 > st->cap) {
        size_t cap = st->cap ? st->cap : 64;
        while (cap < st->len + len + 1)
            cap *= 2;
        char *t = realloc(st->text, cap);
        if (!t)
            return align_nomem(e);
        st->text = t;
        st->cap = cap;
    }
    size_t old = st->len;
    memcpy(st->text + st->len, chunk, len);
    st->len += len;
    st->text[st->len] = '\0';
    /* a match must end in the new bytes: start where the longest stop could still reach them */
    size_t from = st->max_len && old >= st->max_len - 1 ? old - (st->max_len - 1) : 0;
    size_t best = SIZE_MAX;
    int which = -1;
    for (size_t i = 0; i < st->n_stop; i++) {
        size_t l = strlen(st->stops[i]);
        for (size_t p = from; p + l <= st->len && p < best; p++)
            if (memcmp(st->text + p, st->stops[i], l) == 0) {
                best = p;
                which = (int)i;
                break;
            }
    }
    if (which >= 0) {
        st->stopped = true;
        st->which = which;
        st->len = best;
        st->text[best] = '\0';
        st->safe = best;
        return ICA_OK;
    }
    /* hold back the longest tail that is a proper prefix of a stop string */
    size_t hold = 0;
    for (size_t i = 0; i < st->n_stop; i++) {
        size_t l = strlen(st->stops[i]);
        for (size_t k = l - 1; k > hold; k--)
            if (k <= st->len && memcmp(st->text + st->len - k, st->stops[i], k) == 0) {
                hold = k;
                break;
            }
    }
    size_t safe = st->len - hold;
    safe -= utf8_incomplete_tail(st->text, safe);
    if (safe > st->safe)
        st->safe = safe;
    return ICA_OK;
}

void align_stop_finish(struct align_stop *st) {
    st->safe = st->len;
}

size_t align_stop_take(struct align_stop *st, const char **p) {
    if (st->taken > st->safe) /* cannot happen: safe only grows, a stop cuts at >= safe */
        st->taken = st->safe;
    *p = st->text + st->taken;
    size_t n = st->safe - st->taken;
    st->taken = st->safe;
    return n;
}
