/* Streaming post-processing (align_postprocess one chunk at a time), UTF-8 sanitizing and the
 * constant-time key comparison.
 *
 * align_postprocess(raw) = strip(replace(replace(rstrip(raw), "```", ""), "<|endoftext|>", " ")).
 * The leading rstrip changes nothing that the final strip would not remove (trailing whitespace
 * holds no backtick and no '<'), so the stream runs three stages, each deciding bytes as early
 * as possible:
 *   1. "```" deletion, left to right and non-overlapping: a maximal run of k backticks leaves
 *      k mod 3, known once a non-backtick byte (or the end) follows the run;
 *   2. "<|endoftext|>" -> " ": '<' occurs only at its start, so a failed partial match is
 *      emitted as it is and only a '<' can start the next one;
 *   3. strip: leading whitespace is dropped, trailing whitespace is held until a non-space
 *      follows (and dropped at the end); whitespace = Python str.isspace, code point by code
 *      point, so a delta never ends inside a UTF-8 sequence. */
#include "icalign/serve.h"

#include <stdlib.h>
#include <string.h>

static const char k_eot[] = "<|endoftext|>";
#define EOT_LEN (sizeof k_eot - 1)

void serve_clean_init(struct serve_clean *c) {
    memset(c, 0, sizeof *c);
}

void serve_clean_free(struct serve_clean *c) {
    if (c)
        free(c->ws);
    if (c)
        memset(c, 0, sizeof *c);
}

static bool grow(char **p, size_t *len, size_t *cap, const void *s, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 64;
        while (nc < *len + n + 1)
            nc *= 2;
        char *t = realloc(*p, nc);
        if (!t)
            return false;
        *p = t;
        *cap = nc;
    }
    memcpy(*p + *len, s, n);
    *len += n;
    (*p)[*len] = '\0';
    return true;
}

struct out {
    char **p;
    size_t *len, *cap;
};

/* Python whitespace code point in u[0..n)? (same table as align_postprocess) */
static bool unit_is_ws(const unsigned char *u, size_t n) {
    if (n == 1)
        return (u[0] >= 0x09 && u[0] <= 0x0D) || (u[0] >= 0x1C && u[0] <= 0x20);
    unsigned cp;
    if (n == 2 && (u[0] & 0xE0) == 0xC0 && (u[1] & 0xC0) == 0x80)
        cp = ((u[0] & 0x1Fu) << 6) | (u[1] & 0x3Fu);
    else if (n == 3 && (u[0] & 0xF0) == 0xE0 && (u[1] & 0xC0) == 0x80 && (u[2] & 0xC0) == 0x80)
        cp = ((u[0] & 0x0Fu) << 12) | ((u[1] & 0x3Fu) << 6) | (u[2] & 0x3Fu);
    else
        return false;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* Stage 3 on one complete unit (code point, or a stray byte). */
static void put_unit(struct serve_clean *c, const unsigned char *u, size_t n, struct out *o) {
    if (unit_is_ws(u, n)) {
        if (c->started && !grow(&c->ws, &c->ws_len, &c->ws_cap, u, n))
            c->failed = true;
        return;
    }
    if (c->ws_len) {
        if (!grow(o->p, o->len, o->cap, c->ws, c->ws_len))
            c->failed = true;
        c->ws_len = 0;
    }
    if (!grow(o->p, o->len, o->cap, u, n))
        c->failed = true;
    c->started = true;
}

static size_t utf8_need(unsigned char b) {
    if (b >= 0xC0 && b < 0xE0)
        return 2;
    if (b >= 0xE0 && b < 0xF0)
        return 3;
    if (b >= 0xF0 && b < 0xF8)
        return 4;
    return 1;
}

static void flush_unit(struct serve_clean *c, struct out *o) {
    /* an incomplete sequence: its bytes stand alone */
    for (size_t i = 0; i < c->unit_len; i++)
        put_unit(c, &c->unit[i], 1, o);
    c->unit_len = c->unit_need = 0;
}

/* Stage 3 input byte. */
static void stage3(struct serve_clean *c, unsigned char b, struct out *o) {
    if (c->unit_len) {
        if ((b & 0xC0) == 0x80) {
            c->unit[c->unit_len++] = b;
            if (c->unit_len == c->unit_need) {
                put_unit(c, c->unit, c->unit_len, o);
                c->unit_len = c->unit_need = 0;
            }
            return;
        }
        flush_unit(c, o);
    }
    size_t need = utf8_need(b);
    if (need == 1) {
        put_unit(c, &b, 1, o);
        return;
    }
    c->unit[0] = b;
    c->unit_len = 1;
    c->unit_need = need;
}

/* Stage 2 input byte. */
static void stage2(struct serve_clean *c, unsigned char b, struct out *o) {
    if (c->eot_len) {
        if ((char)b == k_eot[c->eot_len]) {
            c->eot[c->eot_len++] = (char)b;
            if (c->eot_len == EOT_LEN) {
                c->eot_len = 0;
                stage3(c, ' ', o);
            }
            return;
        }
        for (size_t i = 0; i < c->eot_len; i++)
            stage3(c, (unsigned char)c->eot[i], o);
        c->eot_len = 0;
    }
    if (b == '<') {
        c->eot[0] = '<';
        c->eot_len = 1;
        return;
    }
    stage3(c, b, o);
}

static void flush_ticks(struct serve_clean *c, struct out *o) {
    for (size_t i = 0; i < c->ticks % 3; i++)
        stage2(c, '`', o);
    c->ticks = 0;
}

bool serve_clean_feed(struct serve_clean *c, const char *raw, size_t len, char **out,
                      size_t *out_len, size_t *out_cap) {
    struct out o = {out, out_len, out_cap};
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)raw[i];
        if (b == '`') {
            c->ticks++;
            continue;
        }
        if (c->ticks)
            flush_ticks(c, &o);
        stage2(c, b, &o);
    }
    return !c->failed;
}

bool serve_clean_finish(struct serve_clean *c, char **out, size_t *out_len, size_t *out_cap) {
    struct out o = {out, out_len, out_cap};
    flush_ticks(c, &o);
    for (size_t i = 0; i < c->eot_len; i++)
        stage3(c, (unsigned char)c->eot[i], &o);
    c->eot_len = 0;
    flush_unit(c, &o);
    c->ws_len = 0; /* trailing whitespace: stripped */
    return !c->failed;
}

char *serve_utf8_sanitize(const char *s, size_t len, size_t *out_len) {
    /* worst case: every byte becomes 3 */
    char *o = malloc(len * 3 + 1);
    if (!o)
        return NULL;
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, n = 0;
    while (i < len) {
        unsigned char b = u[i];
        size_t k = 0;
        unsigned cp = 0;
        if (b >= 0x01 && b < 0x80) {
            o[n++] = (char)b;
            i++;
            continue;
        } else if (b >= 0xC2 && b < 0xE0) {
            k = 2;
            cp = b & 0x1Fu;
        } else if (b >= 0xE0 && b < 0xF0) {
            k = 3;
            cp = b & 0x0Fu;
        } else if (b >= 0xF0 && b < 0xF5) {
            k = 4;
            cp = b & 0x07u;
        }
        bool ok = k > 0 && i + k <= len;
        for (size_t j = 1; ok && j < k; j++) {
            if ((u[i + j] & 0xC0) != 0x80)
                ok = false;
            else
                cp = (cp << 6) | (u[i + j] & 0x3Fu);
        }
        if (ok && ((k == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
                   (k == 4 && (cp < 0x10000 || cp > 0x10FFFF))))
            ok = false;
        if (ok) {
            memcpy(o + n, u + i, k);
            n += k;
            i += k;
        } else {
            memcpy(o + n, "\xEF\xBF\xBD", 3);
            n += 3;
            i++;
        }
    }
    o[n] = '\0';
    if (out_len)
        *out_len = n;
    return o;
}

bool serve_key_equal(const char *given, size_t given_len, const char *want, size_t want_len) {
    /* Every byte of want is compared whatever the input; a length difference counts as a
     * mismatch without an early return. */
    volatile unsigned char acc = (unsigned char)(given_len != want_len);
    for (size_t i = 0; i < want_len; i++) {
        unsigned char g = i < given_len ? (unsigned char)given[i] : 0;
        acc |= (unsigned char)(g ^ (unsigned char)want[i]);
    }
    return acc == 0;
}
