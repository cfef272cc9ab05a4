/* GGUF v3 writer. Metadata values are kept encoded exactly as they will be
 * written; tensor data is copied (or borrowed) and streamed to the file one
 * tensor at a time, so no whole-file buffer is ever built. */
#include "gguf_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct wkv {
    char *key;
    uint32_t type;
    uint8_t *enc; /* encoded value bytes */
    size_t n;
};

struct wtensor {
    char *name;
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[4];
    const void *data;
    void *owned;            /* copy of data, or NULL when borrowed */
    gguf_tensor_gen_fn gen; /* produces the data at write time (data == NULL) */
    void *gen_ud;
    size_t nbytes;
    uint64_t offset;
};

struct gguf_writer {
    struct wkv *kvs;
    size_t n_kv, cap_kv;
    struct wtensor *ts;
    size_t n_t, cap_t;
};

/* Growable byte buffer used to encode values. */
struct bbuf {
    uint8_t *p;
    size_t n, cap;
    int oom;
};

static void bb_put(struct bbuf *b, const void *src, size_t n) {
    if (b->oom)
        return;
    if (n > SIZE_MAX - b->n) {
        b->oom = 1;
        return;
    }
    if (b->n + n > b->cap) {
        size_t ncap = b->cap ? b->cap : 64;
        while (ncap < b->n + n)
            ncap = ncap > SIZE_MAX / 2 ? b->n + n : ncap * 2;
        uint8_t *np = realloc(b->p, ncap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    if (n)
        memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void le_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void le_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void bb_u32(struct bbuf *b, uint32_t v) {
    uint8_t t[4];
    le_u32(t, v);
    bb_put(b, t, 4);
}

static void bb_u64(struct bbuf *b, uint64_t v) {
    uint8_t t[8];
    le_u64(t, v);
    bb_put(b, t, 8);
}

struct gguf_writer *gguf_writer_new(void) {
    return calloc(1, sizeof(struct gguf_writer));
}

void gguf_writer_free(struct gguf_writer *w) {
    if (!w)
        return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].enc);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        free(w->ts[i].name);
        free(w->ts[i].owned);
    }
    free(w->kvs);
    free(w->ts);
    free(w);
}

/* Stores key = (type, enc); takes ownership of enc (freed on error). */
static int set_kv(struct gguf_writer *w, const char *key, uint32_t type, uint8_t *enc, size_t n) {
    if (!w || !key) {
        free(enc);
        return ICA_ERR_ARG;
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, key) == 0) {
            free(w->kvs[i].enc);
            w->kvs[i].type = type;
            w->kvs[i].enc = enc;
            w->kvs[i].n = n;
            return ICA_OK;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t ncap = w->cap_kv ? 2 * w->cap_kv : 16;
        struct wkv *np = realloc(w->kvs, ncap * sizeof *np);
        if (!np) {
            free(enc);
            return ICA_ERR_NOMEM;
        }
        w->kvs = np;
        w->cap_kv = ncap;
    }
    char *k = strdup(key);
    if (!k) {
        free(enc);
        return ICA_ERR_NOMEM;
    }
    w->kvs[w->n_kv++] = (struct wkv){k, type, enc, n};
    return ICA_OK;
}

static int set_bytes(struct gguf_writer *w, const char *key, uint32_t type, const void *src,
                     size_t n) {
    uint8_t *enc = malloc(n ? n : 1);
    if (!enc)
        return ICA_ERR_NOMEM;
    if (n)
        memcpy(enc, src, n);
    return set_kv(w, key, type, enc, n);
}

static int set_bb(struct gguf_writer *w, const char *key, uint32_t type, struct bbuf *b) {
    if (b->oom) {
        free(b->p);
        return ICA_ERR_NOMEM;
    }
    if (!b->p && !(b->p = malloc(1)))
        return ICA_ERR_NOMEM;
    return set_kv(w, key, type, b->p, b->n);
}

int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v) {
    uint8_t t[4];
    le_u32(t, v);
    return set_bytes(w, key, GGUF_VT_UINT32, t, 4);
}

int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v) {
    uint8_t t[4];
    le_u32(t, (uint32_t)v);
    return set_bytes(w, key, GGUF_VT_INT32, t, 4);
}

int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v) {
    uint8_t t[8];
    le_u64(t, v);
    return set_bytes(w, key, GGUF_VT_UINT64, t, 8);
}

int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    uint8_t t[4];
    le_u32(t, bits);
    return set_bytes(w, key, GGUF_VT_FLOAT32, t, 4);
}

int gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v) {
    uint8_t t = v ? 1 : 0;
    return set_bytes(w, key, GGUF_VT_BOOL, &t, 1);
}

int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *v) {
    if (!v)
        return ICA_ERR_ARG;
    struct bbuf b = {0};
    size_t n = strlen(v);
    bb_u64(&b, n);
    bb_put(&b, v, n);
    return set_bb(w, key, GGUF_VT_STRING, &b);
}

int gguf_writer_set_arr(struct gguf_writer *w, const char *key, enum gguf_vtype elem_type,
                        const void *data, uint64_t n) {
    size_t esz = gguf_vtype_size(elem_type);
    if (!esz || (n && !data) || n > SIZE_MAX / esz)
        return ICA_ERR_ARG;
    struct bbuf b = {0};
    bb_u32(&b, elem_type);
    bb_u64(&b, n);
    bb_put(&b, data, (size_t)n * esz);
    return set_bb(w, key, GGUF_VT_ARRAY, &b);
}

int gguf_writer_set_arr_str(struct gguf_writer *w, const char *key, const char *const *strs,
                            uint64_t n) {
    if (n && !strs)
        return ICA_ERR_ARG;
    for (uint64_t i = 0; i < n; i++)
        if (!strs[i])
            return ICA_ERR_ARG;
    struct bbuf b = {0};
    bb_u32(&b, GGUF_VT_STRING);
    bb_u64(&b, n);
    for (uint64_t i = 0; i < n; i++) {
        size_t len = strlen(strs[i]);
        bb_u64(&b, len);
        bb_put(&b, strs[i], len);
    }
    return set_bb(w, key, GGUF_VT_ARRAY, &b);
}

int gguf_writer_set_raw(struct gguf_writer *w, const char *key, enum gguf_vtype type,
                        const void *encoded, size_t nbytes) {
    if ((uint32_t)type > GGUF_VT_FLOAT64 || (nbytes && !encoded))
        return ICA_ERR_ARG;
    return set_bytes(w, key, type, encoded, nbytes);
}

static int add_tensor(struct gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                      const int64_t *ne, const void *data, size_t nbytes, bool copy) {
    if (!w || !name || !ne || n_dims < 1 || n_dims > 4 || (nbytes && !data && copy))
        return ICA_ERR_ARG;
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen > GGUF_MAX_NAME)
        return ICA_ERR_ARG;
    const struct ica_dtype_info *ti = ica_dtype_info(type);
    if (!ti)
        return ICA_ERR_UNSUPPORTED;
    struct wtensor t = {.type = type, .n_dims = n_dims, .ne = {1, 1, 1, 1}, .nbytes = nbytes};
    uint64_t rows = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] < 0)
            return ICA_ERR_ARG;
        t.ne[d] = ne[d];
        if (d > 0) {
            if (ne[d] && rows > (uint64_t)INT64_MAX / (uint64_t)ne[d])
                return ICA_ERR_RANGE;
            rows *= (uint64_t)ne[d];
        }
    }
    size_t row = ica_dtype_row_size(type, t.ne[0]);
    if (t.ne[0] % ti->blck != 0 || (t.ne[0] && !row))
        return ICA_ERR_ARG;
    if (rows && row > SIZE_MAX / rows)
        return ICA_ERR_RANGE;
    if ((uint64_t)row * rows != nbytes)
        return ICA_ERR_ARG;
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->ts[i].name, name) == 0)
            return ICA_ERR_ARG;
    if (w->n_t == w->cap_t) {
        size_t ncap = w->cap_t ? 2 * w->cap_t : 16;
        struct wtensor *np = realloc(w->ts, ncap * sizeof *np);
        if (!np)
            return ICA_ERR_NOMEM;
        w->ts = np;
        w->cap_t = ncap;
    }
    t.name = strdup(name);
    if (!t.name)
        return ICA_ERR_NOMEM;
    if (copy && nbytes) {
        t.owned = malloc(nbytes);
        if (!t.owned) {
            free(t.name);
            return ICA_ERR_NOMEM;
        }
        memcpy(t.owned, data, nbytes);
        t.data = t.owned;
    } else {
        t.data = data;
    }
    w->ts[w->n_t++] = t;
    return ICA_OK;
}

int gguf_writer_add_tensor_gen(struct gguf_writer *w, const char *name, uint32_t type,
                               uint32_t n_dims, const int64_t *ne, size_t nbytes,
                               gguf_tensor_gen_fn gen, void *ud) {
    if (!gen)
        return ICA_ERR_ARG;
    int rc = add_tensor(w, name, type, n_dims, ne, NULL, nbytes, false);
    if (rc == ICA_OK) {
        w->ts[w->n_t - 1].gen = gen;
        w->ts[w->n_t - 1].gen_ud = ud;
    }
    return rc;
}

int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                           const int64_t *ne, const void *data, size_t nbytes) {
    return add_tensor(w, name, type, n_dims, ne, data, nbytes, true);
}

int gguf_writer_add_tensor_ref(struct gguf_writer *w, const char *name, uint32_t type,
                               uint32_t n_dims, const int64_t *ne, const void *data,
                               size_t nbytes) {
    return add_tensor(w, name, type, n_dims, ne, data, nbytes, false);
}

/* ==== Output ==== */

struct out {
    FILE *fp;
    uint64_t pos;
    int failed;
};

static void out_put(struct out *o, const void *p, size_t n) {
    if (o->failed || n == 0)
        return;
    if (fwrite(p, 1, n, o->fp) != n)
        o->failed = errno ? errno : EIO;
    o->pos += n;
}

static void out_u32(struct out *o, uint32_t v) {
    uint8_t t[4];
    le_u32(t, v);
    out_put(o, t, 4);
}

static void out_u64(struct out *o, uint64_t v) {
    uint8_t t[8];
    le_u64(t, v);
    out_put(o, t, 8);
}

static void out_pad(struct out *o, uint64_t align) {
    static const uint8_t zeros[256];
    while (o->pos % align) {
        uint64_t n = align - o->pos % align;
        out_put(o, zeros, n > sizeof zeros ? sizeof zeros : (size_t)n);
        if (o->failed)
            return;
    }
}

static int writer_alignment(const struct gguf_writer *w, const char *path, uint64_t *align,
                            struct ica_error *err) {
    *align = GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, "general.alignment") != 0)
            continue;
        const struct wkv *k = &w->kvs[i];
        if (k->type != GGUF_VT_UINT32 || k->n != 4)
            return ica_seterr(err, ICA_ERR_ARG, "%s: general.alignment must be a uint32", path);
        uint32_t a = (uint32_t)k->enc[0] | ((uint32_t)k->enc[1] << 8) |
                     ((uint32_t)k->enc[2] << 16) | ((uint32_t)k->enc[3] << 24);
        if (a == 0 || (a & (a - 1)))
            return ica_seterr(err, ICA_ERR_ARG,
                              "%s: general.alignment %u is not a nonzero power of two", path, a);
        *align = a;
    }
    return ICA_OK;
}

int gguf_writer_write(struct gguf_writer *w, const char *path, struct ica_error *err) {
    if (!w || !path)
        return ica_seterr(err, ICA_ERR_ARG, "gguf_writer_write: NULL argument");
    uint64_t align;
    int rc = writer_alignment(w, path, &align, err);
    if (rc)
        return rc;
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        w->ts[i].offset = off;
        uint64_t n = w->ts[i].nbytes;
        if (n > UINT64_MAX - off - align)
            return ica_seterr(err, ICA_ERR_RANGE, "%s: tensor data too large", path);
        off = (off + n + align - 1) / align * align;
    }

    struct out o = {fopen(path, "wb"), 0, 0};
    if (!o.fp)
        return ica_seterr(err, ICA_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    setvbuf(o.fp, NULL, _IOFBF, 1 << 20);
    errno = 0;
    out_put(&o, GGUF_MAGIC, 4);
    out_u32(&o, 3);
    out_u64(&o, w->n_t);
    out_u64(&o, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        const struct wkv *k = &w->kvs[i];
        size_t kl = strlen(k->key);
        out_u64(&o, kl);
        out_put(&o, k->key, kl);
        out_u32(&o, k->type);
        out_put(&o, k->enc, k->n);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        const struct wtensor *t = &w->ts[i];
        size_t nl = strlen(t->name);
        out_u64(&o, nl);
        out_put(&o, t->name, nl);
        out_u32(&o, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            out_u64(&o, (uint64_t)t->ne[d]);
        out_u32(&o, t->type);
        out_u64(&o, t->offset);
    }
    out_pad(&o, align);
    int gen_rc = ICA_OK;
    for (size_t i = 0; i < w->n_t && !o.failed && gen_rc == ICA_OK; i++) {
        const struct wtensor *t = &w->ts[i];
        if (t->gen) {
            /* One tensor at a time: a multi-GB model never sits in memory whole. */
            void *buf = malloc(t->nbytes ? t->nbytes : 1);
            if (!buf)
                gen_rc = ICA_ERR_NOMEM;
            else if ((gen_rc = t->gen(t->gen_ud, t->name, buf, t->nbytes)) == ICA_OK)
                out_put(&o, buf, t->nbytes);
            free(buf);
        } else {
            out_put(&o, t->data, t->nbytes);
        }
        out_pad(&o, align);
    }
    if (gen_rc != ICA_OK) {
        fclose(o.fp);
        remove(path);
        return ica_seterr(err, gen_rc, "%s: producing tensor data failed", path);
    }
    int e = o.failed;
    if (fclose(o.fp) != 0 && !e)
        e = errno ? errno : EIO;
    if (e) {
        remove(path);
        return ica_seterr(err, ICA_ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    return ICA_OK;
}
