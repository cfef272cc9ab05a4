/* Small helpers: growable buffer, file reading, UTF-8 length, numpy pairwise sum. */
#include "internal.h"
#include "icalign/eval.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sb_add(struct sbuf *b, const char *s, size_t n) {
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void sb_adds(struct sbuf *b, const char *s) {
    sb_add(b, s, strlen(s));
}

char *sb_take(struct sbuf *b) {
    if (b->oom) {
        free(b->p);
        b->p = NULL;
        return NULL;
    }
    if (!b->p) {
        b->p = malloc(1);
        if (b->p)
            b->p[0] = '\0';
    }
    char *r = b->p;
    b->p = NULL;
    b->n = b->cap = 0;
    return r;
}

char *ev_strdup(const char *s) {
    size_t n = strlen(s);
    char *p = malloc(n + 1);
    if (p)
        memcpy(p, s, n + 1);
    return p;
}

char *ev_read_file(const char *path, size_t *len, struct ica_error *e) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        ica_seterr(e, ICA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct sbuf b = {0};
    char tmp[65536];
    size_t k;
    while ((k = fread(tmp, 1, sizeof tmp, fp)) > 0)
        sb_add(&b, tmp, k);
    int err = ferror(fp);
    fclose(fp);
    if (err) {
        free(b.p);
        ica_seterr(e, ICA_ERR_IO, "%s: read error", path);
        return NULL;
    }
    size_t n = b.n;
    char *r = sb_take(&b);
    if (!r) {
        ica_seterr(e, ICA_ERR_NOMEM, "%s: out of memory", path);
        return NULL;
    }
    if (len)
        *len = n;
    return r;
}

size_t eval_utf8_len(const char *s) {
    /* Counts bytes that do not continue a sequence; json-c gives valid UTF-8 for decoded text. */
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p & 0xC0) != 0x80)
            n++;
    return n;
}

/* numpy's pairwise_sum for contiguous doubles (blocks of 128, 8 partial sums). */
double eval_np_sum(const double *a, size_t n) {
    if (n < 8) {
        double res = 0.;
        for (size_t i = 0; i < n; i++)
            res += a[i];
        return res;
    } else if (n <= 128) {
        double r[8], res;
        for (int k = 0; k < 8; k++)
            r[k] = a[k];
        size_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int k = 0; k < 8; k++)
                r[k] += a[i + k];
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++)
            res += a[i];
        return res;
    } else {
        size_t n2 = n / 2;
        n2 -= n2 % 8;
        return eval_np_sum(a, n2) + eval_np_sum(a + n2, n - n2);
    }
}
