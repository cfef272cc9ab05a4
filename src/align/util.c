#include "internal.h"

#include <stdlib.h>
#include <string.h>

bool abuf_add(struct abuf *b, const char *s, size_t n) {
    if (b->failed)
        return false;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) {
            if (cap > SIZE_MAX / 2) {
                abuf_free(b);
                b->failed = true;
                return false;
            }
            cap *= 2;
        }
        char *d = realloc(b->data, cap);
        if (!d) {
            abuf_free(b);
            b->failed = true;
            return false;
        }
        b->data = d;
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return true;
}

bool abuf_adds(struct abuf *b, const char *s) {
    return abuf_add(b, s, strlen(s));
}

char *abuf_take(struct abuf *b, size_t *len) {
    if (b->failed)
        return NULL;
    if (!b->data && !abuf_add(b, "", 0))
        return NULL;
    char *d = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}

void abuf_free(struct abuf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *align_strndup(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    if (n)
        memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *align_strdup(const char *s) {
    return align_strndup(s, strlen(s));
}

size_t align_line_of(const char *text, size_t off) {
    size_t line = 1;
    for (size_t i = 0; i < off; i++)
        if (text[i] == '\n')
            line++;
    return line;
}

size_t align_utf8_check(const char *str, size_t len) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            min = 0x10000;
        } else {
            return i;
        }
        if (len - i <= n)
            return i;
        unsigned cp = c & (0x3F >> n);
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += n + 1;
    }
    return len;
}

int align_nomem(struct ica_error *e) {
    return ica_seterr(e, ICA_ERR_NOMEM, "align: out of memory");
}
