#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

int32_t *cli_parse_ids(const char *s, size_t *n) {
    size_t cap = 16, len = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids)
        return NULL;
    const char *p = s;
    for (;;) {
        while (*p == ',' || *p == ' ' || *p == '\t' || *p == '\n' || *p == '[' || *p == ']')
            p++;
        if (!*p)
            break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX) {
            cli_error("bad token id list near '%.20s'", p);
            free(ids);
            return NULL;
        }
        if (len == cap) {
            int32_t *t = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!t) {
                free(ids);
                return NULL;
            }
            ids = t;
        }
        ids[len++] = (int32_t)v;
        p = end;
    }
    *n = len;
    return ids;
}

bool cli_parse_int(const char *opt, const char *s, long min, long max, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < min || v > max) {
        cli_error("%s expects an integer in [%ld, %ld], got '%s'", opt, min, max, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_float(const char *opt, const char *s, double min, double max, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || isnan(v) || v < min || v > max) {
        cli_error("%s expects a number in [%g, %g], got '%s'", opt, min, max, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_size(const char *opt, const char *s, unsigned long long *out) {
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s) {
        cli_error("%s expects a size such as 1M, got '%s'", opt, s);
        return false;
    }
    unsigned long long mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1ull << 10;
    else if (*end == 'm' || *end == 'M')
        mul = 1ull << 20;
    else if (*end == 'g' || *end == 'G')
        mul = 1ull << 30;
    if (mul > 1)
        end++;
    if ((*end == 'b' || *end == 'B') && mul > 1)
        end++;
    if (*end || v > (1ull << 50) / mul) {
        cli_error("%s expects a size such as 1M, got '%s'", opt, s);
        return false;
    }
    *out = v * mul;
    return true;
}
