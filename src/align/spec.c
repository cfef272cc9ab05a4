/* --demos SPEC: building a demonstration set from a short description (docs/ALIGN.md). */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int load_default(struct align_set **out, struct ica_error *e) {
    const char *t = align_default_text();
    return align_set_parse(t, strlen(t), "default", out, e);
}

static int parse_u64(const char *what, const char *s, size_t n, uint64_t *out,
                     struct ica_error *e) {
    char buf[32];
    if (n == 0 || n >= sizeof buf)
        return ica_seterr(e, ICA_ERR_ARG, "--demos: bad %s '%.*s'", what, (int)n, s);
    memcpy(buf, s, n);
    buf[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (buf[i] < '0' || buf[i] > '9')
            return ica_seterr(e, ICA_ERR_ARG,
                              "--demos: %s must be a non-negative integer, got '%s'", what, buf);
    errno = 0;
    unsigned long long v = strtoull(buf, NULL, 10);
    if (errno)
        return ica_seterr(e, ICA_ERR_ARG, "--demos: %s out of range: '%s'", what, buf);
    *out = v;
    return ICA_OK;
}

/* "pool:PATH[:SEL][:seed=S]" with SEL = ids=A,B | random=N | stratified=N. exclude: demos not to
 * draw again (the base set). */
static int load_poolsel(const char *s, const struct align_set *exclude, struct align_set **out,
                        struct ica_error *e) {
    *out = NULL;
    const char *body = s + strlen("pool:");
    /* the file name ends at the first ":" followed by a lowercase KEY "=" */
    const char *cut = NULL;
    for (const char *c = strchr(body, ':'); c && !cut; c = strchr(c + 1, ':')) {
        const char *k = c + 1;
        while (*k >= 'a' && *k <= 'z')
            k++;
        if (k > c + 1 && *k == '=')
            cut = c;
    }
    size_t plen = cut ? (size_t)(cut - body) : strlen(body);
    if (plen == 0)
        return ica_seterr(e, ICA_ERR_ARG, "--demos: '%s': missing pool file after 'pool:'", s);
    char *path = align_strndup(body, plen);
    if (!path)
        return align_nomem(e);
    enum { ALL, IDS, RANDOM, STRAT } mode = ALL;
    uint64_t count = 0, seed = 0;
    const char *ids = NULL;
    size_t ids_len = 0;
    int rc = ICA_OK;
    const char *p = cut;
    while (p && *p == ':' && !rc) {
        const char *q = p + 1, *nx = strchr(q, ':');
        size_t l = nx ? (size_t)(nx - q) : strlen(q);
        const char *eq = memchr(q, '=', l);
        if (!eq) {
            rc = ica_seterr(e, ICA_ERR_ARG, "--demos: '%.*s' is not KEY=VALUE in '%s'", (int)l, q,
                            s);
            break;
        }
        size_t kl = (size_t)(eq - q), vl = l - kl - 1;
        const char *v = eq + 1;
        if (kl == 3 && !memcmp(q, "ids", 3)) {
            mode = IDS;
            ids = v;
            ids_len = vl;
        } else if (kl == 6 && !memcmp(q, "random", 6)) {
            mode = RANDOM;
            rc = parse_u64("random=N", v, vl, &count, e);
        } else if (kl == 10 && !memcmp(q, "stratified", 10)) {
            mode = STRAT;
            rc = parse_u64("stratified=N", v, vl, &count, e);
        } else if (kl == 4 && !memcmp(q, "seed", 4)) {
            rc = parse_u64("seed=S", v, vl, &seed, e);
        } else {
            rc = ica_seterr(e, ICA_ERR_ARG,
                            "--demos: unknown pool option '%.*s' (valid: ids, random, "
                            "stratified, seed)",
                            (int)kl, q);
        }
        p = nx;
    }
    struct align_set *pool = NULL;
    if (!rc)
        rc = align_pool_load(path, &pool, e);
    free(path);
    if (rc)
        return rc;
    if (mode == ALL) {
        *out = pool;
        return ICA_OK;
    }
    if (mode == RANDOM)
        rc = align_pool_select_random(pool, (size_t)count, seed, exclude, out, e);
    else if (mode == STRAT)
        rc = align_pool_select_stratified(pool, (size_t)count, seed, exclude, out, e);
    else {
        /* split the comma list */
        char *list = align_strndup(ids, ids_len);
        const char **v = calloc(ids_len + 1, sizeof *v);
        size_t n = 0;
        if (!list || !v) {
            rc = align_nomem(e);
        } else {
            char *c = list;
            for (;;) {
                char *comma = strchr(c, ',');
                if (comma)
                    *comma = '\0';
                if (*c)
                    v[n++] = c;
                if (!comma)
                    break;
                c = comma + 1;
            }
            if (n == 0)
                rc = ica_seterr(e, ICA_ERR_ARG, "--demos: empty id list in '%s'", s);
            else
                rc = align_pool_select_ids(pool, v, n, out, e);
        }
        free(list);
        free(v);
    }
    align_set_free(pool);
    return rc;
}

static bool has_prefix(const char *s, const char *p) {
    return strncmp(s, p, strlen(p)) == 0;
}

/* A set whose demos are those of an EXTRA item (file or pool selection). */
static int load_item(const char *s, const struct align_set *base, struct align_set **out,
                     struct ica_error *e) {
    if (has_prefix(s, "pool:"))
        return load_poolsel(s, base, out, e);
    if (has_prefix(s, "file:"))
        s += 5;
    if (!*s)
        return ica_seterr(e, ICA_ERR_ARG, "--demos: empty file name");
    return align_set_load_file(s, out, e);
}

static int load_base(const char *s, struct align_set **out, struct ica_error *e) {
    *out = NULL;
    if (!strcmp(s, "default"))
        return load_default(out, e);
    if (!strcmp(s, "none")) {
        *out = align_set_new(NULL);
        return *out ? ICA_OK : align_nomem(e);
    }
    if (!strcmp(s, "header-only") || has_prefix(s, "header-only:")) {
        struct align_set *full = NULL;
        int rc = s[11] ? load_base(s + 12, &full, e) : load_default(&full, e);
        if (rc)
            return rc;
        *out = align_set_new(full->header);
        align_set_free(full);
        return *out ? ICA_OK : align_nomem(e);
    }
    if (has_prefix(s, "pool:")) {
        struct align_set *sel = NULL, *def = NULL;
        int rc = load_poolsel(s, NULL, &sel, e);
        if (!rc)
            rc = load_default(&def, e);
        if (!rc)
            rc = align_set_set_header(sel, def->header, e);
        align_set_free(def);
        if (rc) {
            align_set_free(sel);
            return rc;
        }
        *out = sel;
        return ICA_OK;
    }
    return load_item(s, NULL, out, e);
}

/* Position of the next "+" that starts a modifier, or NULL. */
static const char *next_plus(const char *s) {
    for (const char *p = strchr(s, '+'); p; p = strchr(p + 1, '+'))
        if (has_prefix(p + 1, "before:") || has_prefix(p + 1, "after:") ||
            has_prefix(p + 1, "pool:") || has_prefix(p + 1, "file:"))
            return p;
    return NULL;
}

int align_spec_load(const char *spec, struct align_set **out, struct ica_error *e) {
    *out = NULL;
    if (!spec || !*spec)
        return ica_seterr(e, ICA_ERR_ARG, "--demos: empty SPEC");
    const char *plus = next_plus(spec);
    size_t bl = plus ? (size_t)(plus - spec) : strlen(spec);
    char *b = align_strndup(spec, bl);
    if (!b)
        return align_nomem(e);
    struct align_set *set = NULL;
    int rc = load_base(b, &set, e);
    free(b);
    while (!rc && plus) {
        const char *item = plus + 1;
        plus = next_plus(item);
        size_t il = plus ? (size_t)(plus - item) : strlen(item);
        char *it = align_strndup(item, il);
        if (!it) {
            rc = align_nomem(e);
            break;
        }
        bool after = false;
        const char *body = it;
        if (has_prefix(body, "before:"))
            body += 7;
        else if (has_prefix(body, "after:")) {
            body += 6;
            after = true;
        }
        struct align_set *extra = NULL;
        rc = load_item(body, set, &extra, e);
        if (!rc)
            rc = align_set_merge(set, extra, after, e);
        align_set_free(extra);
        free(it);
    }
    if (rc) {
        align_set_free(set);
        return rc;
    }
    *out = set;
    return ICA_OK;
}
