/* JSONL demonstration pools, the seeded PRNG and pool selections. */
#include "internal.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ==== PRNG: splitmix64 ==== */

void align_rng_seed(struct align_rng *r, uint64_t seed) {
    r->state = seed;
}

uint64_t align_rng_next(struct align_rng *r) {
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

uint64_t align_rng_below(struct align_rng *r, uint64_t n) {
    if (n <= 1)
        return 0;
    /* reject the top partial bucket so every residue is equally likely */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = align_rng_next(r);
    while (x >= limit);
    return x % n;
}

/* ==== JSONL ==== */

static int get_str_field(json_object *o, const char *key, const char **out, bool *present) {
    json_object *v;
    *out = NULL;
    *present = json_object_object_get_ex(o, key, &v);
    if (!*present || v == NULL)
        return 0;
    if (!json_object_is_type(v, json_type_string))
        return -1;
    *out = json_object_get_string(v);
    return 0;
}

static int parse_line(struct align_set *s, const char *line, size_t len, const char *name,
                      size_t lineno, struct ica_error *e) {
    json_tokener *tok = json_tokener_new();
    if (!tok)
        return align_nomem(e);
    json_object *o = json_tokener_parse_ex(tok, line, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!o || jerr != json_tokener_success) {
        json_object_put(o);
        return ica_seterr(e, ICA_ERR_FORMAT, "%s:%zu: invalid JSON: %s", name, lineno,
                          jerr == json_tokener_continue ? "unexpected end of line"
                                                        : json_tokener_error_desc(jerr));
    }
    for (; end < len; end++)
        if (line[end] != ' ' && line[end] != '\t') {
            json_object_put(o);
            return ica_seterr(e, ICA_ERR_FORMAT, "%s:%zu: extra text after the JSON object", name,
                              lineno);
        }
    int rc = ICA_OK;
    const char *q, *a, *src, *id;
    bool pq, pa, ps;
    char idbuf[64];
    if (!json_object_is_type(o, json_type_object)) {
        rc = ica_seterr(e, ICA_ERR_FORMAT, "%s:%zu: expected a JSON object", name, lineno);
        goto done;
    }
    if (get_str_field(o, "query", &q, &pq) || !q) {
        rc = ica_seterr(e, ICA_ERR_FORMAT, "%s:%zu: \"query\" must be a string", name, lineno);
        goto done;
    }
    if (get_str_field(o, "answer", &a, &pa)) {
        rc = ica_seterr(e, ICA_ERR_FORMAT, "%s:%zu: \"answer\" must be a string or null", name,
                        lineno);
        goto done;
    }
    if (get_str_field(o, "source", &src, &ps)) {
        rc = ica_seterr(e, ICA_ERR_FORMAT, "%s:%zu: \"source\" must be a string", name, lineno);
        goto done;
    }
    if (!src) {
        json_object *fam;
        if (json_object_object_get_ex(o, "families", &fam) &&
            json_object_is_type(fam, json_type_array) && json_object_array_length(fam) > 0 &&
            json_object_is_type(json_object_array_get_idx(fam, 0), json_type_string))
            src = json_object_get_string(json_object_array_get_idx(fam, 0));
        else
            src = "pool";
    }
    {
        json_object *jid;
        id = NULL;
        if (json_object_object_get_ex(o, "id", &jid) && jid) {
            if (json_object_is_type(jid, json_type_string)) {
                id = json_object_get_string(jid);
            } else if (json_object_is_type(jid, json_type_int)) {
                snprintf(idbuf, sizeof idbuf, "%lld", (long long)json_object_get_int64(jid));
                id = idbuf;
            } else {
                rc = ica_seterr(e, ICA_ERR_FORMAT, "%s:%zu: \"id\" must be a string or integer",
                                name, lineno);
                goto done;
            }
        }
        if (!id) {
            snprintf(idbuf, sizeof idbuf, "%zu", lineno);
            id = idbuf;
        }
    }
    if (align_utf8_check(q, strlen(q)) != strlen(q) ||
        (a && align_utf8_check(a, strlen(a)) != strlen(a))) {
        rc =
            ica_seterr(e, ICA_ERR_FORMAT, "%s:%zu: invalid UTF-8 in query or answer", name, lineno);
        goto done;
    }
    {
        struct align_demo d = {(char *)q, (char *)a, (char *)src, (char *)id};
        rc = align_set_push(s, &d, e);
    }
done:
    json_object_put(o);
    return rc;
}

int align_pool_parse_jsonl(const char *text, size_t len, const char *name, struct align_set **out,
                           struct ica_error *e) {
    *out = NULL;
    if (!name)
        name = "<jsonl>";
    struct align_set *s = align_set_new(NULL);
    if (!s)
        return align_nomem(e);
    size_t lineno = 0, i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && text[j] != '\n')
            j++;
        lineno++;
        size_t l = j - i;
        if (l > 0 && text[i + l - 1] == '\r')
            l--;
        size_t k = 0;
        while (k < l && (text[i + k] == ' ' || text[i + k] == '\t'))
            k++;
        if (k < l) {
            if (memchr(text + i, '\0', l)) {
                align_set_free(s);
                return ica_seterr(e, ICA_ERR_FORMAT, "%s:%zu: NUL byte", name, lineno);
            }
            if (l > (size_t)INT32_MAX) {
                align_set_free(s);
                return ica_seterr(e, ICA_ERR_RANGE, "%s:%zu: line too long", name, lineno);
            }
            int rc = parse_line(s, text + i, l, name, lineno, e);
            if (rc) {
                align_set_free(s);
                return rc;
            }
        }
        i = j + 1;
    }
    *out = s;
    return ICA_OK;
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

int align_pool_load(const char *path, struct align_set **out, struct ica_error *e) {
    *out = NULL;
    if (!ends_with(path, ".jsonl"))
        return align_set_load_file(path, out, e);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return ica_seterr(e, ICA_ERR_IO, "%s: cannot open", path);
    struct abuf b = {0};
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, fp)) > 0)
        if (!abuf_add(&b, chunk, got))
            break;
    int err = ferror(fp);
    fclose(fp);
    if (b.failed)
        return align_nomem(e);
    if (err) {
        abuf_free(&b);
        return ica_seterr(e, ICA_ERR_IO, "%s: read error", path);
    }
    size_t n = 0;
    char *text = abuf_take(&b, &n);
    if (!text)
        return align_nomem(e);
    int rc = align_pool_parse_jsonl(text, n, path, out, e);
    free(text);
    return rc;
}

/* ==== selections ==== */

int align_pool_select_ids(const struct align_set *pool, const char *const *ids, size_t n,
                          struct align_set **out, struct ica_error *e) {
    *out = NULL;
    struct align_set *s = align_set_new(NULL);
    if (!s)
        return align_nomem(e);
    for (size_t k = 0; k < n; k++) {
        size_t i = 0;
        while (i < pool->n && strcmp(pool->demos[i].id, ids[k]) != 0)
            i++;
        if (i == pool->n) {
            align_set_free(s);
            return ica_seterr(e, ICA_ERR_NOTFOUND, "align: no demo with id '%s' in the pool",
                              ids[k]);
        }
        int rc = align_set_push(s, &pool->demos[i], e);
        if (rc) {
            align_set_free(s);
            return rc;
        }
    }
    *out = s;
    return ICA_OK;
}

static bool excluded(const struct align_set *ex, const struct align_demo *d) {
    if (!ex)
        return false;
    for (size_t i = 0; i < ex->n; i++)
        if (strcmp(ex->demos[i].query, d->query) == 0)
            return true;
    return false;
}

/* Indices of the pool demos that have an answer and are not excluded; *m: their count. */
static size_t *candidates(const struct align_set *pool, const struct align_set *ex, size_t *m) {
    size_t *idx = malloc((pool->n ? pool->n : 1) * sizeof *idx);
    if (!idx)
        return NULL;
    *m = 0;
    for (size_t i = 0; i < pool->n; i++)
        if (pool->demos[i].answer && !excluded(ex, &pool->demos[i]))
            idx[(*m)++] = i;
    return idx;
}

static void shuffle_prefix(size_t *v, size_t m, size_t k, struct align_rng *r) {
    for (size_t i = 0; i < k && i < m; i++) {
        size_t j = i + (size_t)align_rng_below(r, m - i);
        size_t t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

int align_pool_select_random(const struct align_set *pool, size_t n, uint64_t seed,
                             const struct align_set *exclude, struct align_set **out,
                             struct ica_error *e) {
    *out = NULL;
    size_t m;
    size_t *idx = candidates(pool, exclude, &m);
    if (!idx)
        return align_nomem(e);
    if (n > m) {
        free(idx);
        return ica_seterr(e, ICA_ERR_RANGE,
                          "align: asked for %zu random demos but the pool has only %zu", n, m);
    }
    struct align_rng r;
    align_rng_seed(&r, seed);
    shuffle_prefix(idx, m, n, &r);
    struct align_set *s = align_set_new(NULL);
    int rc = s ? ICA_OK : align_nomem(e);
    for (size_t i = 0; i < n && !rc; i++)
        rc = align_set_push(s, &pool->demos[idx[i]], e);
    free(idx);
    if (rc) {
        align_set_free(s);
        return rc;
    }
    *out = s;
    return ICA_OK;
}

struct stratum {
    const char *source;
    size_t *idx;
    size_t n, next;
};

static int cmp_stratum(const void *a, const void *b) {
    return strcmp(((const struct stratum *)a)->source, ((const struct stratum *)b)->source);
}

int align_pool_select_stratified(const struct align_set *pool, size_t n, uint64_t seed,
                                 const struct align_set *exclude, struct align_set **out,
                                 struct ica_error *e) {
    *out = NULL;
    size_t m;
    size_t *idx = candidates(pool, exclude, &m);
    if (!idx)
        return align_nomem(e);
    if (n > m) {
        free(idx);
        return ica_seterr(e, ICA_ERR_RANGE,
                          "align: asked for %zu stratified demos but the pool has only %zu", n, m);
    }
    struct stratum *st = calloc(m ? m : 1, sizeof *st);
    size_t *store = malloc((m ? m : 1) * sizeof *store);
    struct align_set *s = align_set_new(NULL);
    int rc = ICA_OK;
    if (!st || !store || !s) {
        rc = align_nomem(e);
        goto done;
    }
    size_t ns = 0;
    /* group candidate indices by source (stable: pool order inside a stratum) */
    for (size_t i = 0; i < m; i++) {
        const char *src = pool->demos[idx[i]].source;
        size_t k = 0;
        while (k < ns && strcmp(st[k].source, src) != 0)
            k++;
        if (k == ns)
            st[ns++].source = src;
        st[k].n++;
    }
    qsort(st, ns, sizeof *st, cmp_stratum);
    size_t off = 0;
    for (size_t k = 0; k < ns; k++) {
        st[k].idx = store + off;
        off += st[k].n;
        st[k].n = 0;
    }
    for (size_t i = 0; i < m; i++) {
        const char *src = pool->demos[idx[i]].source;
        for (size_t k = 0; k < ns; k++)
            if (strcmp(st[k].source, src) == 0) {
                st[k].idx[st[k].n++] = idx[i];
                break;
            }
    }
    struct align_rng r;
    align_rng_seed(&r, seed);
    for (size_t k = ns; k > 1; k--) { /* shuffle the source order */
        size_t j = (size_t)align_rng_below(&r, k);
        struct stratum t = st[k - 1];
        st[k - 1] = st[j];
        st[j] = t;
    }
    for (size_t k = 0; k < ns; k++)
        shuffle_prefix(st[k].idx, st[k].n, st[k].n, &r);
    size_t taken = 0;
    while (taken < n && !rc) {
        for (size_t k = 0; k < ns && taken < n && !rc; k++) {
            if (st[k].next >= st[k].n)
                continue;
            rc = align_set_push(s, &pool->demos[st[k].idx[st[k].next++]], e);
            taken++;
        }
    }
done:
    free(idx);
    free(st);
    free(store);
    if (rc) {
        align_set_free(s);
        return rc;
    }
    *out = s;
    return ICA_OK;
}
