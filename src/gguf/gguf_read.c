/* GGUF reader (format summary in include/icalign/gguf.h).
 *
 * The file is one read-only mapping (or a caller buffer). Parsing walks it
 * once with a bounds-checked cursor and builds:
 *   kvs[]      key + decoded value per metadata entry (strings borrowed)
 *   arrs[]     one descriptor per array, nested ones included: element
 *              pointer, count and, for string/array elements, where their
 *              per-element index starts, so element i is found in O(1)
 *   offs[]     file offset of every string element's length field
 *   tensors[]  shape, type, data pointer; names copied into one arena
 * plus open-addressing hash tables for key and tensor-name lookups. */
#include "gguf_int.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Smallest encodings, used to cap counts before anything is allocated:
 * kv = u64 key len + u32 type + 1-byte value; tensor info = u64 name len +
 * 1-byte name + u32 n_dims + u64 ne + u32 type + u64 offset; string = u64 len;
 * array = u32 element type + u64 count. */
#define MIN_KV_BYTES     13u
#define MIN_TENSOR_BYTES 33u
#define MIN_STR_BYTES    8u
#define MIN_ARR_BYTES    12u

struct arr_desc {
    const uint8_t *data; /* first element */
    uint64_t n;
    uint32_t elem_type;
    uint64_t first; /* STRING: index into offs[]; ARRAY: index of the first child in arrs[] */
};

struct kv_ent {
    struct gguf_str key;
    struct gguf_value val;
};

struct gguf_file {
    const uint8_t *base;
    size_t size;
    bool mapped;
    char *path;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_start;

    struct kv_ent *kvs;
    int64_t n_kv;
    struct arr_desc *arrs;
    uint64_t n_arrs, cap_arrs;
    uint64_t *offs;
    uint64_t n_offs, cap_offs;
    struct gguf_tensor *tensors;
    int64_t n_tensors;
    char *names;

    int64_t *kv_hash; /* index + 1, 0 = empty */
    uint64_t kv_mask;
    int64_t *t_hash;
    uint64_t t_mask;
};

struct cur {
    struct gguf_file *f;
    size_t pos;
    struct ica_error *err;
};

/* ==== Little helpers ==== */

static uint16_t ld_u16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t ld_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t ld_u64(const uint8_t *p) {
    return ld_u32(p) | ((uint64_t)ld_u32(p + 4) << 32);
}

size_t gguf_vtype_size(uint32_t t) {
    switch (t) {
    case GGUF_VT_UINT8:
    case GGUF_VT_INT8:
    case GGUF_VT_BOOL:
        return 1;
    case GGUF_VT_UINT16:
    case GGUF_VT_INT16:
        return 2;
    case GGUF_VT_UINT32:
    case GGUF_VT_INT32:
    case GGUF_VT_FLOAT32:
        return 4;
    case GGUF_VT_UINT64:
    case GGUF_VT_INT64:
    case GGUF_VT_FLOAT64:
        return 8;
    default:
        return 0;
    }
}

const char *gguf_vtype_name(uint32_t t) {
    static const char *const names[] = {
        "uint8", "int8",   "uint16", "int16",  "uint32", "int32",   "float32",
        "bool",  "string", "array",  "uint64", "int64",  "float64",
    };
    return t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

static uint64_t hash_bytes(const void *p, size_t n) {
    const uint8_t *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* Copies up to ~60 bytes of s into buf, replacing unprintable bytes, for
 * error messages about keys/names that may be garbage. */
static const char *printable(char *buf, size_t bufsz, const char *s, uint64_t len) {
    size_t max = bufsz - 4, j = 0;
    for (uint64_t i = 0; i < len && j < max; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (len > max) {
        buf[j++] = '.';
        buf[j++] = '.';
        buf[j++] = '.';
    }
    buf[j] = '\0';
    return buf;
}

static int ferr(struct cur *c, int code, const char *fmt, ...) ICA_PRINTF(3, 4);
static int ferr(struct cur *c, int code, const char *fmt, ...) {
    char msg[ICA_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ica_seterr(c->err, code, "%s: %s", c->f->path, msg);
}

static size_t remaining(const struct cur *c) {
    return c->f->size - c->pos;
}

static int need(struct cur *c, size_t n, const char *ctx, const char *what) {
    if (remaining(c) < n)
        return ferr(c, ICA_ERR_FORMAT,
                    "%s: %s at offset %zu needs %zu bytes, but the file ends at %zu", ctx, what,
                    c->pos, n, c->f->size);
    return ICA_OK;
}

static int rd_u32(struct cur *c, uint32_t *v, const char *ctx, const char *what) {
    int rc = need(c, 4, ctx, what);
    if (rc)
        return rc;
    *v = ld_u32(c->f->base + c->pos);
    c->pos += 4;
    return ICA_OK;
}

static int rd_u64(struct cur *c, uint64_t *v, const char *ctx, const char *what) {
    int rc = need(c, 8, ctx, what);
    if (rc)
        return rc;
    *v = ld_u64(c->f->base + c->pos);
    c->pos += 8;
    return ICA_OK;
}

static int rd_str(struct cur *c, struct gguf_str *s, const char *ctx, const char *what) {
    size_t at = c->pos;
    uint64_t len;
    int rc = rd_u64(c, &len, ctx, what);
    if (rc)
        return rc;
    if (len > remaining(c))
        return ferr(c, ICA_ERR_FORMAT,
                    "%s: %s length %llu at offset %zu runs past end of file (size %zu)", ctx, what,
                    (unsigned long long)len, at, c->f->size);
    s->ptr = (const char *)c->f->base + c->pos;
    s->len = len;
    c->pos += (size_t)len;
    return ICA_OK;
}

/* Makes room for `more` entries of elsz bytes in *p (capacity *cap). */
static int grow(struct cur *c, void **p, uint64_t *cap, uint64_t used, uint64_t more, size_t elsz) {
    if (more > UINT64_MAX - used)
        return ferr(c, ICA_ERR_NOMEM, "index too large");
    uint64_t want = used + more;
    if (want <= *cap)
        return ICA_OK;
    uint64_t ncap = *cap ? *cap : 16;
    while (ncap < want)
        ncap = ncap > UINT64_MAX / 2 ? want : ncap * 2;
    if (ncap > SIZE_MAX / elsz)
        return ferr(c, ICA_ERR_NOMEM, "index of %llu entries does not fit in memory",
                    (unsigned long long)ncap);
    void *np = realloc(*p, (size_t)ncap * elsz);
    if (!np)
        return ferr(c, ICA_ERR_NOMEM, "out of memory indexing %llu entries",
                    (unsigned long long)ncap);
    *p = np;
    *cap = ncap;
    return ICA_OK;
}

/* ==== Metadata ==== */

/* Parses the array at the cursor into arrs[di] (already allocated). */
static int parse_array(struct cur *c, uint64_t di, int depth, const char *ctx) {
    struct gguf_file *f = c->f;
    size_t at = c->pos;
    uint32_t et;
    uint64_t n;
    int rc = rd_u32(c, &et, ctx, "array element type");
    if (!rc)
        rc = rd_u64(c, &n, ctx, "array length");
    if (rc)
        return rc;
    if (et > GGUF_VT_FLOAT64)
        return ferr(c, ICA_ERR_FORMAT, "%s: array at offset %zu has unknown element type %u", ctx,
                    at, et);
    size_t rem = remaining(c);
    size_t esz = gguf_vtype_size(et);
    size_t min = et == GGUF_VT_STRING ? MIN_STR_BYTES : et == GGUF_VT_ARRAY ? MIN_ARR_BYTES : esz;
    if (n > rem / min)
        return ferr(c, ICA_ERR_FORMAT,
                    "%s: array at offset %zu of %llu %s elements (at least %zu bytes each) runs "
                    "past end of file (size %zu)",
                    ctx, at, (unsigned long long)n, gguf_vtype_name(et), min, f->size);
    const uint8_t *data = f->base + c->pos;
    uint64_t first = 0;
    if (esz) {
        c->pos += (size_t)(n * esz);
    } else if (et == GGUF_VT_STRING) {
        rc = grow(c, (void **)&f->offs, &f->cap_offs, f->n_offs, n, sizeof *f->offs);
        if (rc)
            return rc;
        first = f->n_offs;
        f->n_offs += n;
        for (uint64_t i = 0; i < n; i++) {
            struct gguf_str s;
            f->offs[first + i] = c->pos;
            rc = rd_str(c, &s, ctx, "string array element");
            if (rc)
                return rc;
        }
    } else {
        if (depth + 1 >= GGUF_MAX_DEPTH)
            return ferr(c, ICA_ERR_UNSUPPORTED,
                        "%s: array at offset %zu nests arrays deeper than %d levels", ctx, at,
                        GGUF_MAX_DEPTH);
        rc = grow(c, (void **)&f->arrs, &f->cap_arrs, f->n_arrs, n, sizeof *f->arrs);
        if (rc)
            return rc;
        first = f->n_arrs;
        f->n_arrs += n;
        for (uint64_t i = 0; i < n; i++) {
            rc = parse_array(c, first + i, depth + 1, ctx);
            if (rc)
                return rc;
        }
    }
    f->arrs[di] = (struct arr_desc){data, n, et, first};
    return ICA_OK;
}

static void array_value(const struct gguf_file *f, uint64_t di, struct gguf_value *v) {
    const struct arr_desc *d = &f->arrs[di];
    memset(v, 0, sizeof *v);
    v->type = GGUF_VT_ARRAY;
    v->elem_type = (enum gguf_vtype)d->elem_type;
    v->n = d->n;
    /* Arrays use the string slot to find their descriptor (checked on use). */
    v->v.s.ptr = (const char *)d->data;
    v->v.s.len = di;
}

static int parse_value(struct cur *c, uint32_t type, struct gguf_value *v, const char *ctx) {
    memset(v, 0, sizeof *v);
    v->type = (enum gguf_vtype)type;
    size_t sz = gguf_vtype_size(type);
    if (sz) {
        int rc = need(c, sz, ctx, "value");
        if (rc)
            return rc;
        const uint8_t *p = c->f->base + c->pos;
        c->pos += sz;
        switch (type) {
        case GGUF_VT_UINT8:
            v->v.u = p[0];
            break;
        case GGUF_VT_INT8:
            v->v.i = (int8_t)p[0];
            break;
        case GGUF_VT_UINT16:
            v->v.u = ld_u16(p);
            break;
        case GGUF_VT_INT16:
            v->v.i = (int16_t)ld_u16(p);
            break;
        case GGUF_VT_UINT32:
            v->v.u = ld_u32(p);
            break;
        case GGUF_VT_INT32:
            v->v.i = (int32_t)ld_u32(p);
            break;
        case GGUF_VT_UINT64:
            v->v.u = ld_u64(p);
            break;
        case GGUF_VT_INT64:
            v->v.i = (int64_t)ld_u64(p);
            break;
        case GGUF_VT_BOOL:
            v->v.b = p[0] != 0;
            break;
        case GGUF_VT_FLOAT32: {
            uint32_t bits = ld_u32(p);
            float x;
            memcpy(&x, &bits, sizeof x);
            v->v.f = x;
            break;
        }
        default: { /* FLOAT64 */
            uint64_t bits = ld_u64(p);
            memcpy(&v->v.f, &bits, sizeof v->v.f);
            break;
        }
        }
        return ICA_OK;
    }
    if (type == GGUF_VT_STRING)
        return rd_str(c, &v->v.s, ctx, "string value");
    if (type != GGUF_VT_ARRAY)
        return ferr(c, ICA_ERR_FORMAT, "%s: unknown value type %u", ctx, type);
    struct gguf_file *f = c->f;
    int rc = grow(c, (void **)&f->arrs, &f->cap_arrs, f->n_arrs, 1, sizeof *f->arrs);
    if (rc)
        return rc;
    uint64_t di = f->n_arrs++;
    rc = parse_array(c, di, 0, ctx);
    if (rc)
        return rc;
    array_value(f, di, v);
    return ICA_OK;
}

static uint64_t table_size(uint64_t n) {
    uint64_t s = 8;
    while (s < 2 * n)
        s *= 2;
    return s;
}

static int alloc_table(struct cur *c, int64_t **tab, uint64_t *mask, uint64_t n) {
    uint64_t s = table_size(n);
    if (s > SIZE_MAX / sizeof **tab)
        return ferr(c, ICA_ERR_NOMEM, "hash table too large");
    *tab = calloc((size_t)s, sizeof **tab);
    if (!*tab)
        return ferr(c, ICA_ERR_NOMEM, "out of memory for a hash table of %llu entries",
                    (unsigned long long)s);
    *mask = s - 1;
    return ICA_OK;
}

/* Looks key up in the kv table; returns the slot holding it or the empty
 * slot where it belongs. */
static uint64_t kv_slot(const struct gguf_file *f, const char *key, uint64_t len) {
    uint64_t h = hash_bytes(key, (size_t)len) & f->kv_mask;
    for (;;) {
        int64_t e = f->kv_hash[h];
        if (e == 0)
            return h;
        const struct gguf_str *k = &f->kvs[e - 1].key;
        if (k->len == len && memcmp(k->ptr, key, (size_t)len) == 0)
            return h;
        h = (h + 1) & f->kv_mask;
    }
}

static uint64_t t_slot(const struct gguf_file *f, const char *name, size_t len) {
    uint64_t h = hash_bytes(name, len) & f->t_mask;
    for (;;) {
        int64_t e = f->t_hash[h];
        if (e == 0)
            return h;
        const char *tn = f->tensors[e - 1].name;
        if (strncmp(tn, name, len) == 0 && tn[len] == '\0')
            return h;
        h = (h + 1) & f->t_mask;
    }
}

static int parse_kvs(struct cur *c) {
    struct gguf_file *f = c->f;
    char ctx[128], kb[72];
    int rc = alloc_table(c, &f->kv_hash, &f->kv_mask, (uint64_t)f->n_kv);
    if (rc)
        return rc;
    for (int64_t i = 0; i < f->n_kv; i++) {
        struct kv_ent *e = &f->kvs[i];
        snprintf(ctx, sizeof ctx, "kv %lld", (long long)i);
        rc = rd_str(c, &e->key, ctx, "key");
        if (rc)
            return rc;
        snprintf(ctx, sizeof ctx, "kv %lld '%s'", (long long)i,
                 printable(kb, sizeof kb, e->key.ptr, e->key.len));
        uint32_t type;
        rc = rd_u32(c, &type, ctx, "value type");
        if (rc)
            return rc;
        rc = parse_value(c, type, &e->val, ctx);
        if (rc)
            return rc;
        uint64_t s = kv_slot(f, e->key.ptr, e->key.len);
        if (f->kv_hash[s])
            return ferr(c, ICA_ERR_FORMAT, "%s: duplicate key (also kv %lld)", ctx,
                        (long long)(f->kv_hash[s] - 1));
        f->kv_hash[s] = i + 1;
    }
    return ICA_OK;
}

static int check_alignment(struct cur *c) {
    struct gguf_file *f = c->f;
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const struct gguf_value *v = gguf_get(f, "general.alignment");
    if (!v)
        return ICA_OK;
    if (v->type != GGUF_VT_UINT32)
        return ferr(c, ICA_ERR_FORMAT, "general.alignment has type %s, expected uint32",
                    gguf_vtype_name(v->type));
    if (v->v.u == 0 || (v->v.u & (v->v.u - 1)) != 0)
        return ferr(c, ICA_ERR_FORMAT, "general.alignment %llu is not a nonzero power of two",
                    (unsigned long long)v->v.u);
    f->alignment = v->v.u;
    return ICA_OK;
}

/* ==== Tensors ==== */

/* Reads one tensor info; the name goes to names[*names_len...] (NUL-
 * terminated) and its arena offset to *name_off. */
static int parse_tensor(struct cur *c, int64_t i, uint64_t *names_cap, uint64_t *names_len,
                        uint64_t *name_off) {
    struct gguf_file *f = c->f;
    struct gguf_tensor *t = &f->tensors[i];
    char ctx[128], nb[72];
    struct gguf_str name;
    snprintf(ctx, sizeof ctx, "tensor %lld", (long long)i);
    int rc = rd_str(c, &name, ctx, "name");
    if (rc)
        return rc;
    if (name.len == 0)
        return ferr(c, ICA_ERR_FORMAT, "%s: empty name", ctx);
    if (name.len > GGUF_MAX_NAME)
        return ferr(c, ICA_ERR_FORMAT, "%s: name of %llu bytes is longer than %u", ctx,
                    (unsigned long long)name.len, GGUF_MAX_NAME);
    if (memchr(name.ptr, '\0', (size_t)name.len))
        return ferr(c, ICA_ERR_FORMAT, "%s: name '%s' contains a NUL byte", ctx,
                    printable(nb, sizeof nb, name.ptr, name.len));
    rc = grow(c, (void **)&f->names, names_cap, *names_len, name.len + 1, 1);
    if (rc)
        return rc;
    *name_off = *names_len;
    memcpy(f->names + *names_len, name.ptr, (size_t)name.len);
    f->names[*names_len + name.len] = '\0';
    *names_len += name.len + 1;
    snprintf(ctx, sizeof ctx, "tensor '%s'", printable(nb, sizeof nb, name.ptr, name.len));

    rc = rd_u32(c, &t->n_dims, ctx, "n_dims");
    if (rc)
        return rc;
    if (t->n_dims < 1 || t->n_dims > 4)
        return ferr(c, ICA_ERR_FORMAT, "%s: n_dims %u (must be 1..4)", ctx, t->n_dims);
    for (int d = 0; d < 4; d++)
        t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t ne;
        rc = rd_u64(c, &ne, ctx, "ne");
        if (rc)
            return rc;
        if (ne > (uint64_t)INT64_MAX)
            return ferr(c, ICA_ERR_FORMAT, "%s: ne[%u] = %lld is negative", ctx, d,
                        (long long)(int64_t)ne);
        t->ne[d] = (int64_t)ne;
    }
    rc = rd_u32(c, &t->type, ctx, "type");
    if (rc)
        return rc;
    const struct ica_dtype_info *ti = ica_dtype_info(t->type);
    if (!ti)
        return ferr(c, ICA_ERR_UNSUPPORTED, "%s: unknown tensor type %u", ctx, t->type);
    if (t->ne[0] % ti->blck != 0)
        return ferr(c, ICA_ERR_FORMAT,
                    "%s: ne[0] = %lld is not a multiple of the block size %lld of type %s", ctx,
                    (long long)t->ne[0], (long long)ti->blck, ti->name);
    /* Element count and byte size must not overflow. */
    uint64_t rows = 1, nel = (uint64_t)t->ne[0];
    for (int d = 1; d < 4; d++) {
        uint64_t ne = (uint64_t)t->ne[d];
        if (ne && rows > (uint64_t)INT64_MAX / ne)
            return ferr(c, ICA_ERR_FORMAT, "%s: shape [%lld, %lld, %lld, %lld] overflows", ctx,
                        (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                        (long long)t->ne[3]);
        rows *= ne;
    }
    if (rows && nel > (uint64_t)INT64_MAX / rows)
        return ferr(c, ICA_ERR_FORMAT, "%s: shape [%lld, %lld, %lld, %lld] overflows", ctx,
                    (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                    (long long)t->ne[3]);
    uint64_t blocks = nel / (uint64_t)ti->blck;
    uint64_t row = blocks * ti->type_size; /* blocks <= 2^63, type_size small: check */
    if (blocks && row / blocks != ti->type_size)
        return ferr(c, ICA_ERR_FORMAT, "%s: row size overflows", ctx);
    if (rows && row > (uint64_t)SIZE_MAX / rows)
        return ferr(c, ICA_ERR_FORMAT, "%s: data size overflows", ctx);
    t->nbytes = (size_t)(row * rows);
    return rd_u64(c, &t->offset, ctx, "offset");
}

struct span {
    uint64_t off, n;
    int64_t idx;
};

static int cmp_span(const void *a, const void *b) {
    const struct span *x = a, *y = b;
    if (x->off != y->off)
        return x->off < y->off ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int check_overlap(struct cur *c) {
    struct gguf_file *f = c->f;
    if (f->n_tensors < 2)
        return ICA_OK;
    struct span *sp = malloc((size_t)f->n_tensors * sizeof *sp);
    if (!sp)
        return ferr(c, ICA_ERR_NOMEM, "out of memory");
    int64_t m = 0;
    for (int64_t i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].nbytes)
            sp[m++] = (struct span){f->tensors[i].offset, f->tensors[i].nbytes, i};
    qsort(sp, (size_t)m, sizeof *sp, cmp_span);
    int rc = ICA_OK;
    for (int64_t i = 1; i < m && !rc; i++) {
        const struct span *p = &sp[i - 1], *q = &sp[i];
        if (q->off < p->off + p->n) {
            const struct gguf_tensor *a = &f->tensors[p->idx], *b = &f->tensors[q->idx];
            rc = ferr(c, ICA_ERR_FORMAT,
                      "tensor '%.100s': data [offset %llu, %zu bytes] overlaps tensor '%.100s' "
                      "[offset %llu, %zu bytes]",
                      b->name, (unsigned long long)(f->data_start + b->offset), b->nbytes, a->name,
                      (unsigned long long)(f->data_start + a->offset), a->nbytes);
        }
    }
    free(sp);
    return rc;
}

static int parse_tensors(struct cur *c) {
    struct gguf_file *f = c->f;
    uint64_t names_cap = 0, names_len = 0;
    uint64_t *name_off = NULL;
    int rc = ICA_OK;
    if (f->n_tensors) {
        name_off = malloc((size_t)f->n_tensors * sizeof *name_off);
        if (!name_off)
            return ferr(c, ICA_ERR_NOMEM, "out of memory for %lld tensors",
                        (long long)f->n_tensors);
    }
    for (int64_t i = 0; i < f->n_tensors && !rc; i++)
        rc = parse_tensor(c, i, &names_cap, &names_len, &name_off[i]);
    for (int64_t i = 0; i < f->n_tensors && !rc; i++)
        f->tensors[i].name = f->names + name_off[i];
    free(name_off);
    if (rc)
        return rc;

    rc = alloc_table(c, &f->t_hash, &f->t_mask, (uint64_t)f->n_tensors);
    if (rc)
        return rc;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const char *nm = f->tensors[i].name;
        uint64_t s = t_slot(f, nm, strlen(nm));
        if (f->t_hash[s])
            return ferr(c, ICA_ERR_FORMAT,
                        "tensor '%.200s': duplicate name (tensors %lld and %lld)", nm,
                        (long long)(f->t_hash[s] - 1), (long long)i);
        f->t_hash[s] = i + 1;
    }

    uint64_t a = f->alignment;
    f->data_start = ((uint64_t)c->pos + a - 1) / a * a;
    if (f->n_tensors == 0)
        return ICA_OK;
    if (f->data_start > f->size)
        return ferr(c, ICA_ERR_FORMAT,
                    "data section starts at %llu (after tensor infos ending at %zu, aligned to "
                    "%llu), past end of file (size %zu)",
                    (unsigned long long)f->data_start, c->pos, (unsigned long long)a, f->size);
    uint64_t avail = f->size - f->data_start;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        struct gguf_tensor *t = &f->tensors[i];
        if (t->offset % a)
            return ferr(c, ICA_ERR_FORMAT,
                        "tensor '%.200s': offset %llu is not a multiple of the alignment %llu",
                        t->name, (unsigned long long)t->offset, (unsigned long long)a);
        if (t->offset > avail || t->nbytes > avail - t->offset)
            return ferr(c, ICA_ERR_FORMAT,
                        "tensor '%.200s': data [offset %llu, %zu bytes] runs past end of file "
                        "(size %zu)",
                        t->name,
                        (unsigned long long)(t->offset > UINT64_MAX - f->data_start
                                                 ? t->offset
                                                 : f->data_start + t->offset),
                        t->nbytes, f->size);
        t->data = f->base + f->data_start + t->offset;
    }
    return check_overlap(c);
}

/* ==== Open / close ==== */

static int parse(struct cur *c) {
    struct gguf_file *f = c->f;
    if (f->size < 4)
        return ferr(c, ICA_ERR_FORMAT, "file of %zu bytes is too small for the GGUF magic",
                    f->size);
    if (memcmp(f->base, GGUF_MAGIC, 4) != 0)
        return ferr(c, ICA_ERR_FORMAT, "bad magic %02x %02x %02x %02x (expected \"GGUF\")",
                    f->base[0], f->base[1], f->base[2], f->base[3]);
    c->pos = 4;
    int rc = rd_u32(c, &f->version, "header", "version");
    if (rc)
        return rc;
    uint32_t v = f->version;
    if (v == 1)
        return ferr(c, ICA_ERR_UNSUPPORTED, "GGUF version 1 is not supported (only v2 and v3)");
    uint32_t sw = (v >> 24) | ((v >> 8) & 0xff00u) | ((v << 8) & 0xff0000u) | (v << 24);
    if (sw >= 1 && sw <= 3)
        return ferr(c, ICA_ERR_UNSUPPORTED,
                    "big-endian GGUF (version %u, byte-swapped) is not supported", sw);
    if (v != 2 && v != 3)
        return ferr(c, ICA_ERR_UNSUPPORTED, "unsupported GGUF version %u (expected 2 or 3)", v);
    uint64_t nt, nkv;
    rc = rd_u64(c, &nt, "header", "n_tensors");
    if (!rc)
        rc = rd_u64(c, &nkv, "header", "n_kv");
    if (rc)
        return rc;
    size_t rem = remaining(c);
    if (nt > rem / MIN_TENSOR_BYTES)
        return ferr(c, ICA_ERR_FORMAT,
                    "header: n_tensors %llu is more than the remaining %zu bytes could hold",
                    (unsigned long long)nt, rem);
    if (nkv > rem / MIN_KV_BYTES)
        return ferr(c, ICA_ERR_FORMAT,
                    "header: n_kv %llu is more than the remaining %zu bytes could hold",
                    (unsigned long long)nkv, rem);
    if (nt * MIN_TENSOR_BYTES + nkv * MIN_KV_BYTES > rem)
        return ferr(c, ICA_ERR_FORMAT,
                    "header: %llu tensors and %llu kvs are more than the remaining %zu bytes "
                    "could hold",
                    (unsigned long long)nt, (unsigned long long)nkv, rem);
    f->n_kv = (int64_t)nkv;
    f->n_tensors = (int64_t)nt;
    if (nkv && !(f->kvs = calloc((size_t)nkv, sizeof *f->kvs)))
        return ferr(c, ICA_ERR_NOMEM, "out of memory for %llu kvs", (unsigned long long)nkv);
    if (nt && !(f->tensors = calloc((size_t)nt, sizeof *f->tensors)))
        return ferr(c, ICA_ERR_NOMEM, "out of memory for %llu tensors", (unsigned long long)nt);
    rc = parse_kvs(c);
    if (!rc)
        rc = check_alignment(c);
    if (!rc)
        rc = parse_tensors(c);
    return rc;
}

/* Takes ownership of the mapping (if mapped) whatever happens. */
static int open_common(const uint8_t *base, size_t size, bool mapped, const char *name,
                       struct gguf_file **out, struct ica_error *err) {
    struct gguf_file *f = calloc(1, sizeof *f);
    if (!f) {
        if (mapped)
            munmap((void *)base, size);
        return ica_seterr(err, ICA_ERR_NOMEM, "%s: out of memory", name);
    }
    f->base = base;
    f->size = size;
    f->mapped = mapped;
    f->path = strdup(name);
    if (!f->path) {
        gguf_close(f);
        return ica_seterr(err, ICA_ERR_NOMEM, "%s: out of memory", name);
    }
    struct cur c = {f, 0, err};
    int rc = parse(&c);
    if (rc) {
        gguf_close(f);
        return rc;
    }
    *out = f;
    return ICA_OK;
}

int gguf_open(const char *path, struct gguf_file **out, struct ica_error *err) {
    if (!out)
        return ica_seterr(err, ICA_ERR_ARG, "gguf_open: out is NULL");
    *out = NULL;
    if (!path)
        return ica_seterr(err, ICA_ERR_ARG, "gguf_open: path is NULL");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ica_seterr(err, ICA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return ica_seterr(err, ICA_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ica_seterr(err, ICA_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size < 4) {
        close(fd);
        return ica_seterr(err, ICA_ERR_FORMAT,
                          "%s: file of %lld bytes is too small for the GGUF magic", path,
                          (long long)st.st_size);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return ica_seterr(err, ICA_ERR_RANGE, "%s: file too large to map", path);
    }
    size_t size = (size_t)st.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping stays valid */
    if (map == MAP_FAILED)
        return ica_seterr(err, ICA_ERR_IO, "%s: mmap of %zu bytes failed: %s", path, size,
                          strerror(e));
    return open_common(map, size, true, path, out, err);
}

int gguf_open_mem(const void *buf, size_t len, const char *name, struct gguf_file **out,
                  struct ica_error *err) {
    if (!out)
        return ica_seterr(err, ICA_ERR_ARG, "gguf_open_mem: out is NULL");
    *out = NULL;
    if (!name)
        name = "<memory>";
    if (!buf && len)
        return ica_seterr(err, ICA_ERR_ARG, "%s: buffer is NULL", name);
    static const uint8_t empty[1];
    return open_common(buf ? buf : empty, len, false, name, out, err);
}

void gguf_close(struct gguf_file *f) {
    if (!f)
        return;
    if (f->mapped && f->base)
        munmap((void *)f->base, f->size);
    free(f->path);
    free(f->kvs);
    free(f->arrs);
    free(f->offs);
    free(f->tensors);
    free(f->names);
    free(f->kv_hash);
    free(f->t_hash);
    free(f);
}

/* ==== Accessors ==== */

uint32_t gguf_version(const struct gguf_file *f) {
    return f ? f->version : 0;
}
uint64_t gguf_alignment(const struct gguf_file *f) {
    return f ? f->alignment : 0;
}
uint64_t gguf_file_size(const struct gguf_file *f) {
    return f ? f->size : 0;
}
uint64_t gguf_data_offset(const struct gguf_file *f) {
    return f ? f->data_start : 0;
}

const char *gguf_path(const struct gguf_file *f) {
    return f ? f->path : NULL;
}
int64_t gguf_n_kv(const struct gguf_file *f) {
    return f ? f->n_kv : 0;
}
int64_t gguf_n_tensors(const struct gguf_file *f) {
    return f ? f->n_tensors : 0;
}

struct gguf_str gguf_key(const struct gguf_file *f, int64_t i) {
    if (!f || i < 0 || i >= f->n_kv)
        return (struct gguf_str){NULL, 0};
    return f->kvs[i].key;
}

const struct gguf_value *gguf_kv(const struct gguf_file *f, int64_t i) {
    if (!f || i < 0 || i >= f->n_kv)
        return NULL;
    return &f->kvs[i].val;
}

int64_t gguf_find_key(const struct gguf_file *f, const char *key) {
    if (!f || !key || !f->kv_hash)
        return -1;
    int64_t e = f->kv_hash[kv_slot(f, key, strlen(key))];
    return e - 1;
}

const struct gguf_value *gguf_get(const struct gguf_file *f, const char *key) {
    return gguf_kv(f, gguf_find_key(f, key));
}

const struct gguf_tensor *gguf_tensor(const struct gguf_file *f, int64_t i) {
    if (!f || i < 0 || i >= f->n_tensors)
        return NULL;
    return &f->tensors[i];
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f, const char *name) {
    if (!f || !name || !f->t_hash)
        return NULL;
    int64_t e = f->t_hash[t_slot(f, name, strlen(name))];
    return e ? &f->tensors[e - 1] : NULL;
}

/* ==== Typed getters ==== */

static bool is_uint(uint32_t t) {
    return t == GGUF_VT_UINT8 || t == GGUF_VT_UINT16 || t == GGUF_VT_UINT32 || t == GGUF_VT_UINT64;
}

static bool is_int(uint32_t t) {
    return t == GGUF_VT_INT8 || t == GGUF_VT_INT16 || t == GGUF_VT_INT32 || t == GGUF_VT_INT64;
}

static bool is_float(uint32_t t) {
    return t == GGUF_VT_FLOAT32 || t == GGUF_VT_FLOAT64;
}

int gguf_get_u64(const struct gguf_file *f, const char *key, uint64_t *out) {
    const struct gguf_value *v = gguf_get(f, key);
    if (!v)
        return ICA_ERR_NOTFOUND;
    if (is_uint(v->type)) {
        *out = v->v.u;
        return ICA_OK;
    }
    if (is_int(v->type)) {
        if (v->v.i < 0)
            return ICA_ERR_RANGE;
        *out = (uint64_t)v->v.i;
        return ICA_OK;
    }
    return ICA_ERR_TYPE;
}

int gguf_get_i64(const struct gguf_file *f, const char *key, int64_t *out) {
    const struct gguf_value *v = gguf_get(f, key);
    if (!v)
        return ICA_ERR_NOTFOUND;
    if (is_int(v->type)) {
        *out = v->v.i;
        return ICA_OK;
    }
    if (is_uint(v->type)) {
        if (v->v.u > (uint64_t)INT64_MAX)
            return ICA_ERR_RANGE;
        *out = (int64_t)v->v.u;
        return ICA_OK;
    }
    return ICA_ERR_TYPE;
}

int gguf_get_u32(const struct gguf_file *f, const char *key, uint32_t *out) {
    uint64_t u;
    int rc = gguf_get_u64(f, key, &u);
    if (rc)
        return rc;
    if (u > UINT32_MAX)
        return ICA_ERR_RANGE;
    *out = (uint32_t)u;
    return ICA_OK;
}

int gguf_get_f64(const struct gguf_file *f, const char *key, double *out) {
    const struct gguf_value *v = gguf_get(f, key);
    if (!v)
        return ICA_ERR_NOTFOUND;
    if (is_float(v->type))
        *out = v->v.f;
    else if (is_uint(v->type))
        *out = (double)v->v.u;
    else if (is_int(v->type))
        *out = (double)v->v.i;
    else
        return ICA_ERR_TYPE;
    return ICA_OK;
}

int gguf_get_f32(const struct gguf_file *f, const char *key, float *out) {
    double d;
    int rc = gguf_get_f64(f, key, &d);
    if (rc)
        return rc;
    if (isfinite(d) && fabs(d) > FLT_MAX)
        return ICA_ERR_RANGE;
    *out = (float)d;
    return ICA_OK;
}

int gguf_get_bool(const struct gguf_file *f, const char *key, bool *out) {
    const struct gguf_value *v = gguf_get(f, key);
    if (!v)
        return ICA_ERR_NOTFOUND;
    if (v->type != GGUF_VT_BOOL)
        return ICA_ERR_TYPE;
    *out = v->v.b;
    return ICA_OK;
}

int gguf_get_str(const struct gguf_file *f, const char *key, struct gguf_str *out) {
    const struct gguf_value *v = gguf_get(f, key);
    if (!v)
        return ICA_ERR_NOTFOUND;
    if (v->type != GGUF_VT_STRING)
        return ICA_ERR_TYPE;
    *out = v->v.s;
    return ICA_OK;
}

/* ==== Array elements ==== */

/* Descriptor of array value v, or NULL (with *rc set) when v is not an
 * array of this file. */
static const struct arr_desc *arr_of(const struct gguf_file *f, const struct gguf_value *v,
                                     int *rc) {
    if (!f || !v) {
        *rc = ICA_ERR_ARG;
        return NULL;
    }
    if (v->type != GGUF_VT_ARRAY) {
        *rc = ICA_ERR_TYPE;
        return NULL;
    }
    uint64_t di = v->v.s.len;
    if (di >= f->n_arrs || (const char *)f->arrs[di].data != v->v.s.ptr || f->arrs[di].n != v->n ||
        f->arrs[di].elem_type != (uint32_t)v->elem_type) {
        *rc = ICA_ERR_ARG;
        return NULL;
    }
    *rc = ICA_OK;
    return &f->arrs[di];
}

int gguf_arr_str(const struct gguf_file *f, const struct gguf_value *v, uint64_t i,
                 struct gguf_str *out) {
    int rc;
    const struct arr_desc *d = arr_of(f, v, &rc);
    if (!d)
        return rc;
    if (d->elem_type != GGUF_VT_STRING)
        return ICA_ERR_TYPE;
    if (i >= d->n)
        return ICA_ERR_RANGE;
    const uint8_t *p = f->base + f->offs[d->first + i];
    out->len = ld_u64(p);
    out->ptr = (const char *)p + 8;
    return ICA_OK;
}

int gguf_arr_i64(const struct gguf_file *f, const struct gguf_value *v, uint64_t i, int64_t *out) {
    int rc;
    const struct arr_desc *d = arr_of(f, v, &rc);
    if (!d)
        return rc;
    uint32_t et = d->elem_type;
    if (!is_uint(et) && !is_int(et) && et != GGUF_VT_BOOL)
        return ICA_ERR_TYPE;
    if (i >= d->n)
        return ICA_ERR_RANGE;
    const uint8_t *p = d->data + i * gguf_vtype_size(et);
    switch (et) {
    case GGUF_VT_UINT8:
        *out = p[0];
        break;
    case GGUF_VT_INT8:
        *out = (int8_t)p[0];
        break;
    case GGUF_VT_BOOL:
        *out = p[0] != 0;
        break;
    case GGUF_VT_UINT16:
        *out = ld_u16(p);
        break;
    case GGUF_VT_INT16:
        *out = (int16_t)ld_u16(p);
        break;
    case GGUF_VT_UINT32:
        *out = ld_u32(p);
        break;
    case GGUF_VT_INT32:
        *out = (int32_t)ld_u32(p);
        break;
    case GGUF_VT_INT64:
        *out = (int64_t)ld_u64(p);
        break;
    default: { /* UINT64 */
        uint64_t u = ld_u64(p);
        if (u > (uint64_t)INT64_MAX)
            return ICA_ERR_RANGE;
        *out = (int64_t)u;
        break;
    }
    }
    return ICA_OK;
}

int gguf_arr_f64(const struct gguf_file *f, const struct gguf_value *v, uint64_t i, double *out) {
    int rc;
    const struct arr_desc *d = arr_of(f, v, &rc);
    if (!d)
        return rc;
    uint32_t et = d->elem_type;
    if (!is_float(et) && !is_uint(et) && !is_int(et))
        return ICA_ERR_TYPE;
    if (i >= d->n)
        return ICA_ERR_RANGE;
    const uint8_t *p = d->data + i * gguf_vtype_size(et);
    if (et == GGUF_VT_FLOAT32) {
        uint32_t bits = ld_u32(p);
        float x;
        memcpy(&x, &bits, sizeof x);
        *out = x;
    } else if (et == GGUF_VT_FLOAT64) {
        uint64_t bits = ld_u64(p);
        memcpy(out, &bits, sizeof *out);
    } else if (et == GGUF_VT_UINT64) {
        *out = (double)ld_u64(p);
    } else {
        int64_t x;
        rc = gguf_arr_i64(f, v, i, &x);
        if (rc)
            return rc;
        *out = (double)x;
    }
    return ICA_OK;
}

int gguf_arr_arr(const struct gguf_file *f, const struct gguf_value *v, uint64_t i,
                 struct gguf_value *out) {
    int rc;
    const struct arr_desc *d = arr_of(f, v, &rc);
    if (!d)
        return rc;
    if (d->elem_type != GGUF_VT_ARRAY)
        return ICA_ERR_TYPE;
    if (i >= d->n)
        return ICA_ERR_RANGE;
    array_value(f, d->first + i, out);
    return ICA_OK;
}

const void *gguf_arr_data(const struct gguf_file *f, const struct gguf_value *v) {
    int rc;
    const struct arr_desc *d = arr_of(f, v, &rc);
    if (!d || gguf_vtype_size(d->elem_type) == 0)
        return NULL;
    return d->data;
}
