/* gguf reader/writer: fixtures checked against MANIFEST.json, writer
 * round-trip, hand-built malformed files, truncation and byte-flip sweeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "icalign/gguf.h"
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<json-c/json.h>)
#include <json-c/json.h>
#define HAVE_JSONC 1
#endif
#endif

/* ==== Helpers ==== */

static int str_eq(struct gguf_str s, const char *z) {
    return s.ptr && s.len == strlen(z) && memcmp(s.ptr, z, s.len) == 0;
}

static volatile unsigned g_sink;

static void touch(const void *p, size_t n) {
    const unsigned char *b = p;
    if (n) {
        g_sink += b[0];
        g_sink += b[n - 1];
    }
}

static void walk_array(const struct gguf_file *f, const struct gguf_value *v, uint64_t max,
                       int depth);

static void visit_elem(const struct gguf_file *f, const struct gguf_value *v, uint64_t i,
                       uint64_t max, int depth) {
    struct gguf_str s;
    struct gguf_value in;
    int64_t x;
    double d;
    switch (v->elem_type) {
    case GGUF_VT_STRING:
        assert_int_equal(gguf_arr_str(f, v, i, &s), ICA_OK);
        touch(s.ptr, s.len);
        assert_int_equal(gguf_arr_i64(f, v, i, &x), ICA_ERR_TYPE);
        break;
    case GGUF_VT_ARRAY:
        assert_int_equal(gguf_arr_arr(f, v, i, &in), ICA_OK);
        walk_array(f, &in, max, depth + 1);
        break;
    case GGUF_VT_FLOAT32:
    case GGUF_VT_FLOAT64:
        assert_int_equal(gguf_arr_f64(f, v, i, &d), ICA_OK);
        assert_int_equal(gguf_arr_i64(f, v, i, &x), ICA_ERR_TYPE);
        break;
    case GGUF_VT_BOOL:
        assert_int_equal(gguf_arr_i64(f, v, i, &x), ICA_OK);
        assert_true(x == 0 || x == 1);
        break;
    default: {
        int rc = gguf_arr_i64(f, v, i, &x);
        assert_true(rc == ICA_OK || (rc == ICA_ERR_RANGE && v->elem_type == GGUF_VT_UINT64));
        assert_int_equal(gguf_arr_f64(f, v, i, &d), ICA_OK);
        break;
    }
    }
}

/* Visits array elements (at most ~max of them: a stride plus the last). */
static void walk_array(const struct gguf_file *f, const struct gguf_value *v, uint64_t max,
                       int depth) {
    assert_true(depth < 16);
    uint64_t step = v->n > max ? v->n / max : 1;
    for (uint64_t i = 0; i < v->n; i += step)
        visit_elem(f, v, i, max, depth);
    if (v->n && (v->n - 1) % step)
        visit_elem(f, v, v->n - 1, max, depth);
    struct gguf_str s;
    assert_int_equal(gguf_arr_str(f, v, v->n, &s),
                     v->elem_type == GGUF_VT_STRING ? ICA_ERR_RANGE : ICA_ERR_TYPE);
    const void *raw = gguf_arr_data(f, v);
    if (v->elem_type == GGUF_VT_STRING || v->elem_type == GGUF_VT_ARRAY)
        assert_null(raw);
    else
        assert_non_null(raw);
}

/* Calls every accessor on every kv and tensor of an opened file. */
static void walk_file(const struct gguf_file *f, uint64_t max_elems) {
    int64_t nkv = gguf_n_kv(f);
    assert_true(nkv >= 0);
    for (int64_t i = 0; i < nkv; i++) {
        struct gguf_str k = gguf_key(f, i);
        const struct gguf_value *v = gguf_kv(f, i);
        assert_non_null(v);
        touch(k.ptr, k.len);
        if (k.len < 256 && !memchr(k.ptr, '\0', k.len)) {
            char key[256];
            memcpy(key, k.ptr, k.len);
            key[k.len] = '\0';
            assert_int_equal(gguf_find_key(f, key), i);
        }
        if (v->type == GGUF_VT_STRING)
            touch(v->v.s.ptr, v->v.s.len);
        else if (v->type == GGUF_VT_ARRAY)
            walk_array(f, v, max_elems, 0);
        assert_non_null(gguf_vtype_name(v->type));
    }
    assert_null(gguf_kv(f, nkv));
    assert_null(gguf_kv(f, -1));
    assert_null(gguf_key(f, nkv).ptr);
    int64_t nt = gguf_n_tensors(f);
    for (int64_t i = 0; i < nt; i++) {
        const struct gguf_tensor *t = gguf_tensor(f, i);
        assert_non_null(t);
        assert_true(t->n_dims >= 1 && t->n_dims <= 4);
        assert_ptr_equal(gguf_find_tensor(f, t->name), t);
        assert_non_null(ica_dtype_info(t->type));
        assert_true(t->offset % gguf_alignment(f) == 0);
        assert_true(gguf_data_offset(f) + t->offset + t->nbytes <= gguf_file_size(f));
        uint64_t rows = (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3];
        assert_int_equal(t->nbytes, ica_dtype_row_size(t->type, t->ne[0]) * rows);
        touch(t->data, t->nbytes);
    }
    assert_null(gguf_tensor(f, nt));
    assert_null(gguf_find_tensor(f, "no such tensor"));
    assert_int_equal(gguf_find_key(f, "no.such.key"), -1);
}

/* Hand-built GGUF bytes. */
struct bb {
    uint8_t *p;
    size_t n, cap;
};

static void bb_put(struct bb *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void bb_u32(struct bb *b, uint32_t v) {
    uint8_t t[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    bb_put(b, t, 4);
}

static void bb_u64(struct bb *b, uint64_t v) {
    bb_u32(b, (uint32_t)v);
    bb_u32(b, (uint32_t)(v >> 32));
}

static void bb_str(struct bb *b, const char *s) {
    bb_u64(b, strlen(s));
    bb_put(b, s, strlen(s));
}

static void bb_header(struct bb *b, uint32_t version, uint64_t nt, uint64_t nkv) {
    bb_put(b, "GGUF", 4);
    bb_u32(b, version);
    bb_u64(b, nt);
    bb_u64(b, nkv);
}

static void bb_kv_u32(struct bb *b, const char *key, uint32_t v) {
    bb_str(b, key);
    bb_u32(b, GGUF_VT_UINT32);
    bb_u32(b, v);
}

static void bb_tinfo(struct bb *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                     uint32_t type, uint64_t off) {
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        bb_u64(b, ne[d]);
    bb_u32(b, type);
    bb_u64(b, off);
}

static void bb_pad(struct bb *b, size_t align) {
    uint8_t z = 0;
    while (b->n % align)
        bb_put(b, &z, 1);
}

static void bb_zeros(struct bb *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint8_t z = 0;
        bb_put(b, &z, 1);
    }
}

/* Opens b (from an exact-size copy so ASan sees over-reads); expects code
 * and a message containing each NULL-terminated substring. */
static void expect_err(const struct bb *b, int code, ...) {
    uint8_t *copy = malloc(b->n ? b->n : 1);
    assert_non_null(copy);
    memcpy(copy, b->p, b->n);
    struct gguf_file *f = (struct gguf_file *)1;
    struct ica_error err = {0};
    int rc = gguf_open_mem(copy, b->n, "bad.gguf", &f, &err);
    if (rc != code)
        fprintf(stderr, "expected code %d, got %d: %s\n", code, rc, err.msg);
    assert_int_equal(rc, code);
    assert_null(f);
    assert_int_equal(err.code, code);
    assert_true(strncmp(err.msg, "bad.gguf: ", 10) == 0);
    va_list ap;
    va_start(ap, code);
    for (const char *s; (s = va_arg(ap, const char *));) {
        if (!strstr(err.msg, s))
            fprintf(stderr, "message '%s' lacks '%s'\n", err.msg, s);
        assert_non_null(strstr(err.msg, s));
    }
    va_end(ap);
    free(copy);
}

static struct gguf_file *open_ok(const struct bb *b) {
    struct gguf_file *f = NULL;
    struct ica_error err = {0};
    int rc = gguf_open_mem(b->p, b->n, "ok.gguf", &f, &err);
    if (rc)
        fprintf(stderr, "unexpected error: %s\n", err.msg);
    assert_int_equal(rc, ICA_OK);
    return f;
}

/* ==== Fixtures vs MANIFEST.json ==== */

#ifdef HAVE_JSONC
static struct json_object *jget(struct json_object *o, const char *k) {
    struct json_object *v = NULL;
    return json_object_object_get_ex(o, k, &v) ? v : NULL;
}

/* Checks key against the JSON value (int, double, bool or string). */
static void check_json_kv(const struct gguf_file *f, const char *key, struct json_object *jv) {
    if (json_object_is_type(jv, json_type_int)) {
        int64_t want = json_object_get_int64(jv), got = 0;
        assert_int_equal(gguf_get_i64(f, key, &got), ICA_OK);
        assert_int_equal(got, want);
    } else if (json_object_is_type(jv, json_type_double)) {
        double want = json_object_get_double(jv), got = 0;
        assert_int_equal(gguf_get_f64(f, key, &got), ICA_OK);
        assert_true(fabs(got - want) <= 1e-12 * fabs(want));
    } else if (json_object_is_type(jv, json_type_boolean)) {
        bool got = false;
        assert_int_equal(gguf_get_bool(f, key, &got), ICA_OK);
        assert_int_equal(got, json_object_get_boolean(jv));
    } else if (json_object_is_type(jv, json_type_string)) {
        struct gguf_str got;
        assert_int_equal(gguf_get_str(f, key, &got), ICA_OK);
        assert_true(str_eq(got, json_object_get_string(jv)));
    }
}

static void check_manifest_entry(const struct gguf_file *f, struct json_object *e) {
    struct json_object *jv;
    if ((jv = jget(e, "bytes")))
        assert_int_equal(gguf_file_size(f), json_object_get_int64(jv));
    const char *arch = NULL;
    if ((jv = jget(e, "architecture"))) {
        arch = json_object_get_string(jv);
        check_json_kv(f, "general.architecture", jv);
    }
    if ((jv = jget(e, "general.name")))
        check_json_kv(f, "general.name", jv);
    if ((jv = jget(e, "file_type")) && json_object_is_type(jv, json_type_int)) {
        uint32_t ft = 0;
        assert_int_equal(gguf_get_u32(f, "general.file_type", &ft), ICA_OK);
        assert_int_equal(ft, json_object_get_int64(jv));
    }
    if ((jv = jget(e, "n_tensors")))
        assert_int_equal(gguf_n_tensors(f), json_object_get_int64(jv));
    struct json_object *hp = jget(e, "hparams");
    if (hp && arch) {
        json_object_object_foreach(hp, hk, hv) {
            char key[256];
            snprintf(key, sizeof key, "%s.%s", arch, hk);
            check_json_kv(f, key, hv);
        }
    }
    struct json_object *tt = jget(e, "tensor_types");
    if (tt) {
        json_object_object_foreach(tt, tname, tcount) {
            int64_t n = 0;
            for (int64_t i = 0; i < gguf_n_tensors(f); i++)
                if (strcmp(ica_dtype_info(gguf_tensor(f, i)->type)->name, tname) == 0)
                    n++;
            assert_int_equal(n, json_object_get_int64(tcount));
        }
    }
    struct json_object *ts = jget(e, "tensors");
    if (ts) {
        json_object_object_foreach(ts, name, info) {
            const struct gguf_tensor *t = gguf_find_tensor(f, name);
            if (!t)
                fprintf(stderr, "missing tensor %s\n", name);
            assert_non_null(t);
            assert_string_equal(ica_dtype_info(t->type)->name,
                                json_object_get_string(jget(info, "type")));
            struct json_object *ne = jget(info, "ne");
            size_t nd = json_object_array_length(ne);
            assert_int_equal(t->n_dims, nd);
            for (size_t d = 0; d < nd; d++)
                assert_int_equal(t->ne[d], json_object_get_int64(json_object_array_get_idx(ne, d)));
        }
    }
    struct json_object *tok = jget(e, "tokenizer");
    if (tok) {
        json_object_object_foreach(tok, tk, tv) {
            const struct gguf_value *v;
            if (strcmp(tk, "n_tokens") == 0) {
                v = gguf_get(f, "tokenizer.ggml.tokens");
                assert_non_null(v);
                assert_int_equal(v->type, GGUF_VT_ARRAY);
                assert_int_equal(v->elem_type, GGUF_VT_STRING);
                assert_int_equal(v->n, json_object_get_int64(tv));
            } else if (strcmp(tk, "n_merges") == 0) {
                v = gguf_get(f, "tokenizer.ggml.merges");
                assert_non_null(v);
                assert_int_equal(v->n, json_object_get_int64(tv));
            } else {
                check_json_kv(f, tk, tv);
            }
        }
    }
}
#endif

static void test_fixtures(void **state) {
    (void)state;
    char dir[1024], mpath[1024];
    tu_require_shared(dir, sizeof dir, "fixtures");
    struct json_object *man = NULL, *files = NULL;
#ifdef HAVE_JSONC
    tu_require_shared(mpath, sizeof mpath, "fixtures/MANIFEST.json");
    man = json_object_from_file(mpath);
    assert_non_null(man);
    files = jget(man, "files");
    assert_non_null(files);
#else
    (void)mpath;
    fprintf(stderr, "note: built without json-c, MANIFEST facts not checked\n");
#endif
    static const char *const subdirs[] = {"random", "stories260K", "tokenizer"};
    int n_opened = 0, n_checked = 0;
    for (size_t s = 0; s < 3; s++) {
        char sub[1200];
        snprintf(sub, sizeof sub, "%s/%s", dir, subdirs[s]);
        DIR *d = opendir(sub);
        assert_non_null(d);
        for (struct dirent *de; (de = readdir(d));) {
            size_t L = strlen(de->d_name);
            if (L < 5 || strcmp(de->d_name + L - 5, ".gguf") != 0)
                continue;
            char path[1600], rel[600];
            snprintf(path, sizeof path, "%s/%s", sub, de->d_name);
            snprintf(rel, sizeof rel, "%s/%s", subdirs[s], de->d_name);
            struct gguf_file *f = NULL;
            struct ica_error err = {0};
            int rc = gguf_open(path, &f, &err);
            if (rc)
                fprintf(stderr, "%s\n", err.msg);
            assert_int_equal(rc, ICA_OK);
            assert_string_equal(gguf_path(f), path);
            assert_true(gguf_version(f) == 2 || gguf_version(f) == 3);
            n_opened++;
            walk_file(f, UINT64_MAX);
#ifdef HAVE_JSONC
            for (size_t i = 0; i < json_object_array_length(files); i++) {
                struct json_object *e = json_object_array_get_idx(files, i);
                if (strcmp(json_object_get_string(jget(e, "path")), rel) == 0) {
                    check_manifest_entry(f, e);
                    n_checked++;
                }
            }
#endif
            gguf_close(f);
        }
        closedir(d);
    }
    assert_true(n_opened >= 20);
#ifdef HAVE_JSONC
    assert_int_equal(n_checked, n_opened);
    json_object_put(man);
#else
    (void)files;
    (void)n_checked;
#endif
}

/* Spot checks independent of the manifest: O(1) vocab access and one
 * tensor's bytes at its documented offset. */
static void test_fixture_details(void **state) {
    (void)state;
    char path[1024];
    tu_require_shared(path, sizeof path, "fixtures/tokenizer/ggml-vocab-llama3.gguf");
    struct gguf_file *f = NULL;
    struct ica_error err = {0};
    assert_int_equal(gguf_open(path, &f, &err), ICA_OK);
    const struct gguf_value *tok = gguf_get(f, "tokenizer.ggml.tokens");
    assert_non_null(tok);
    struct gguf_str s;
    assert_int_equal(gguf_arr_str(f, tok, 128000, &s), ICA_OK);
    assert_true(str_eq(s, "<|begin_of_text|>"));
    assert_int_equal(gguf_arr_str(f, tok, 0, &s), ICA_OK);
    assert_true(str_eq(s, "!"));
    assert_int_equal(gguf_arr_str(f, tok, tok->n, &s), ICA_ERR_RANGE);
    /* Random access over the whole vocab must be cheap. */
    uint64_t total = 0;
    for (int rep = 0; rep < 4; rep++)
        for (uint64_t i = tok->n; i-- > 0;) {
            assert_int_equal(gguf_arr_str(f, tok, i, &s), ICA_OK);
            total += s.len;
        }
    assert_true(total > 4 * tok->n);
    struct gguf_str model;
    assert_int_equal(gguf_get_str(f, "tokenizer.ggml.model", &model), ICA_OK);
    assert_true(str_eq(model, "gpt2"));
    uint32_t u = 0;
    assert_int_equal(gguf_get_u32(f, "no.such.key", &u), ICA_ERR_NOTFOUND);
    assert_int_equal(gguf_get_u32(f, "tokenizer.ggml.model", &u), ICA_ERR_TYPE);
    gguf_close(f);

    tu_require_shared(path, sizeof path, "fixtures/stories260K/stories260K.gguf");
    assert_int_equal(gguf_open(path, &f, &err), ICA_OK);
    const struct gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->type, ICA_F32);
    assert_int_equal(t->ne[0], 64);
    assert_int_equal(t->ne[1], 512);
    assert_int_equal(t->nbytes, 64 * 512 * 4);
    size_t len = 0;
    uint8_t *raw = tu_read_file(path, &len);
    assert_non_null(raw);
    assert_memory_equal(t->data, raw + gguf_data_offset(f) + t->offset, t->nbytes);
    float eps = 0;
    assert_int_equal(gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &eps), ICA_OK);
    assert_true(fabsf(eps - 1e-5f) < 1e-9f);
    uint64_t ctx = 0;
    assert_int_equal(gguf_get_u64(f, "llama.context_length", &ctx), ICA_OK);
    assert_int_equal(ctx, 128);
    gguf_close(f);
    free(raw);
}

/* ==== Writer round-trip ==== */

static const char *tmp_path(const char *name) {
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", tu_tmpdir(), name);
    return buf;
}

static void test_writer_roundtrip(void **state) {
    (void)state;
    struct gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(gguf_writer_set_u32(w, "general.alignment", 64), ICA_OK);
    assert_int_equal(gguf_writer_set_u32(w, "k.u32", 7), ICA_OK); /* overwritten below */
    assert_int_equal(gguf_writer_set_i32(w, "k.i32", -123456), ICA_OK);
    assert_int_equal(gguf_writer_set_u64(w, "k.u64", UINT64_MAX), ICA_OK);
    assert_int_equal(gguf_writer_set_f32(w, "k.f32", 0.1f), ICA_OK);
    assert_int_equal(gguf_writer_set_bool(w, "k.bool", true), ICA_OK);
    assert_int_equal(gguf_writer_set_str(w, "k.str", "héllo wörld"), ICA_OK);
    assert_int_equal(gguf_writer_set_str(w, "k.empty", ""), ICA_OK);
    assert_int_equal(gguf_writer_set_u32(w, "k.u32", 4000000000u), ICA_OK);
    /* Scalars without a dedicated setter, as raw encodings. */
    uint8_t u8 = 200;
    int8_t i8 = -100;
    uint8_t u16[2] = {0x34, 0x12}, i16[2] = {0xfe, 0xff};
    uint8_t i64[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x80};
    double f64 = -2.5e300;
    assert_int_equal(gguf_writer_set_raw(w, "k.u8", GGUF_VT_UINT8, &u8, 1), ICA_OK);
    assert_int_equal(gguf_writer_set_raw(w, "k.i8", GGUF_VT_INT8, &i8, 1), ICA_OK);
    assert_int_equal(gguf_writer_set_raw(w, "k.u16", GGUF_VT_UINT16, u16, 2), ICA_OK);
    assert_int_equal(gguf_writer_set_raw(w, "k.i16", GGUF_VT_INT16, i16, 2), ICA_OK);
    assert_int_equal(gguf_writer_set_raw(w, "k.i64", GGUF_VT_INT64, i64, 8), ICA_OK);
    assert_int_equal(gguf_writer_set_raw(w, "k.f64", GGUF_VT_FLOAT64, &f64, 8), ICA_OK);
    /* Numeric arrays of every element type. */
    uint8_t a_u8[] = {0, 1, 255};
    int8_t a_i8[] = {-128, 0, 127};
    uint16_t a_u16[] = {1, 65535};
    int16_t a_i16[] = {-32768, 32767};
    uint32_t a_u32[] = {0, 4294967295u, 42};
    int32_t a_i32[] = {INT32_MIN, -1, INT32_MAX};
    float a_f32[] = {1.5f, -0.0f, 3e38f};
    uint8_t a_bool[] = {1, 0, 1, 1};
    uint64_t a_u64[] = {UINT64_MAX, 5};
    int64_t a_i64[] = {INT64_MIN, INT64_MAX};
    double a_f64[] = {1e-300, -7.25};
    struct {
        const char *key;
        enum gguf_vtype t;
        const void *d;
        uint64_t n;
    } arrs[] = {
        {"a.u8", GGUF_VT_UINT8, a_u8, 3},     {"a.i8", GGUF_VT_INT8, a_i8, 3},
        {"a.u16", GGUF_VT_UINT16, a_u16, 2},  {"a.i16", GGUF_VT_INT16, a_i16, 2},
        {"a.u32", GGUF_VT_UINT32, a_u32, 3},  {"a.i32", GGUF_VT_INT32, a_i32, 3},
        {"a.f32", GGUF_VT_FLOAT32, a_f32, 3}, {"a.bool", GGUF_VT_BOOL, a_bool, 4},
        {"a.u64", GGUF_VT_UINT64, a_u64, 2},  {"a.i64", GGUF_VT_INT64, a_i64, 2},
        {"a.f64", GGUF_VT_FLOAT64, a_f64, 2}, {"a.empty", GGUF_VT_UINT32, NULL, 0},
    };
    size_t n_arrs = sizeof arrs / sizeof arrs[0];
    for (size_t i = 0; i < n_arrs; i++)
        assert_int_equal(gguf_writer_set_arr(w, arrs[i].key, arrs[i].t, arrs[i].d, arrs[i].n),
                         ICA_OK);
    const char *strs[] = {"a", "", "ccc", "\xe2\x82\xac"};
    assert_int_equal(gguf_writer_set_arr_str(w, "a.str", strs, 4), ICA_OK);
    assert_int_equal(gguf_writer_set_arr_str(w, "a.str0", NULL, 0), ICA_OK);
    /* Nested: [["x","yy"], [], ["zzz"]] and [[[1,2]], [[3]]] (u16). */
    struct bb n1 = {0};
    bb_u32(&n1, GGUF_VT_ARRAY);
    bb_u64(&n1, 3);
    bb_u32(&n1, GGUF_VT_STRING);
    bb_u64(&n1, 2);
    bb_str(&n1, "x");
    bb_str(&n1, "yy");
    bb_u32(&n1, GGUF_VT_STRING);
    bb_u64(&n1, 0);
    bb_u32(&n1, GGUF_VT_STRING);
    bb_u64(&n1, 1);
    bb_str(&n1, "zzz");
    assert_int_equal(gguf_writer_set_raw(w, "a.nested_str", GGUF_VT_ARRAY, n1.p, n1.n), ICA_OK);
    struct bb n2 = {0};
    bb_u32(&n2, GGUF_VT_ARRAY);
    bb_u64(&n2, 2);
    bb_u32(&n2, GGUF_VT_ARRAY);
    bb_u64(&n2, 1);
    bb_u32(&n2, GGUF_VT_UINT16);
    bb_u64(&n2, 2);
    uint16_t one_two[2] = {1, 2}, three = 3;
    bb_put(&n2, one_two, 4);
    bb_u32(&n2, GGUF_VT_ARRAY);
    bb_u64(&n2, 1);
    bb_u32(&n2, GGUF_VT_UINT16);
    bb_u64(&n2, 1);
    bb_put(&n2, &three, 2);
    assert_int_equal(gguf_writer_set_raw(w, "a.nested3", GGUF_VT_ARRAY, n2.p, n2.n), ICA_OK);
    free(n1.p);
    free(n2.p);

    /* Tensors of several types and ranks (one borrowed, one empty). */
    struct {
        const char *name;
        uint32_t type, nd;
        int64_t ne[4];
    } ts[] = {
        {"f32.2d", ICA_F32, 2, {8, 3, 1, 1}},
        {"f16.1d", ICA_F16, 1, {16, 1, 1, 1}},
        {"q4_0", ICA_Q4_0, 2, {64, 2, 1, 1}},
        {"q8_0.3d", ICA_Q8_0, 3, {32, 1, 2, 1}},
        {"q4_k", ICA_Q4_K, 2, {256, 2, 1, 1}},
        {"bf16.4d", ICA_BF16, 4, {4, 3, 2, 2}},
        {"empty", ICA_F32, 2, {0, 4, 1, 1}},
        {"i8.odd", ICA_I8, 1, {13, 1, 1, 1}},
        {"q6_k.borrowed", ICA_Q6_K, 2, {256, 3, 1, 1}},
    };
    size_t n_ts = sizeof ts / sizeof ts[0];
    uint8_t *datas[16];
    size_t sizes[16];
    for (size_t i = 0; i < n_ts; i++) {
        sizes[i] = ica_dtype_row_size(ts[i].type, ts[i].ne[0]) * (size_t)ts[i].ne[1] *
                   (size_t)ts[i].ne[2] * (size_t)ts[i].ne[3];
        datas[i] = malloc(sizes[i] + 1);
        for (size_t j = 0; j < sizes[i]; j++)
            datas[i][j] = (uint8_t)(j * 31 + i * 7 + 1);
        int rc = strstr(ts[i].name, "borrowed")
                     ? gguf_writer_add_tensor_ref(w, ts[i].name, ts[i].type, ts[i].nd, ts[i].ne,
                                                  datas[i], sizes[i])
                     : gguf_writer_add_tensor(w, ts[i].name, ts[i].type, ts[i].nd, ts[i].ne,
                                              datas[i], sizes[i]);
        assert_int_equal(rc, ICA_OK);
    }
    /* Invalid tensors are refused. */
    int64_t ne_bad[2] = {33, 1};
    assert_int_equal(gguf_writer_add_tensor(w, "q", ICA_Q4_0, 2, ne_bad, datas[0], 18),
                     ICA_ERR_ARG);
    assert_int_equal(
        gguf_writer_add_tensor(w, "f32.2d", ts[0].type, 2, ts[0].ne, datas[0], sizes[0]),
        ICA_ERR_ARG);
    assert_int_equal(gguf_writer_add_tensor(w, "x", ICA_F32, 2, ts[0].ne, datas[0], sizes[0] - 1),
                     ICA_ERR_ARG);
    assert_int_equal(gguf_writer_add_tensor(w, "x", 99, 2, ts[0].ne, datas[0], sizes[0]),
                     ICA_ERR_UNSUPPORTED);
    assert_int_equal(gguf_writer_add_tensor(w, "x", ICA_F32, 5, ts[0].ne, datas[0], sizes[0]),
                     ICA_ERR_ARG);
    assert_int_equal(gguf_writer_set_arr(w, "bad", GGUF_VT_STRING, strs, 1), ICA_ERR_ARG);

    const char *path = tmp_path("roundtrip.gguf");
    struct ica_error err = {0};
    assert_int_equal(gguf_writer_write(w, path, &err), ICA_OK);
    gguf_writer_free(w);

    struct gguf_file *f = NULL;
    int rc = gguf_open(path, &f, &err);
    if (rc)
        fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, ICA_OK);
    walk_file(f, UINT64_MAX);
    assert_int_equal(gguf_version(f), 3);
    assert_int_equal(gguf_alignment(f), 64);
    assert_int_equal(gguf_data_offset(f) % 64, 0);
    assert_int_equal(gguf_file_size(f) % 64, 0);
    /* Order is insertion order; the overwritten key kept its place. */
    assert_int_equal(gguf_n_kv(f), 14 + (int64_t)n_arrs + 4);
    assert_true(str_eq(gguf_key(f, 0), "general.alignment"));
    assert_true(str_eq(gguf_key(f, 1), "k.u32"));

    uint64_t u;
    int64_t i;
    uint32_t u32;
    double d;
    float fl;
    bool b;
    struct gguf_str s;
    assert_int_equal(gguf_get_u32(f, "k.u32", &u32), ICA_OK);
    assert_int_equal(u32, 4000000000u);
    assert_int_equal(gguf_get_i64(f, "k.i32", &i), ICA_OK);
    assert_int_equal(i, -123456);
    assert_int_equal(gguf_get_u64(f, "k.i32", &u), ICA_ERR_RANGE);
    assert_int_equal(gguf_get_u64(f, "k.u64", &u), ICA_OK);
    assert_true(u == UINT64_MAX);
    assert_int_equal(gguf_get_i64(f, "k.u64", &i), ICA_ERR_RANGE);
    assert_int_equal(gguf_get_u32(f, "k.u64", &u32), ICA_ERR_RANGE);
    assert_int_equal(gguf_get_f32(f, "k.f32", &fl), ICA_OK);
    assert_true(fl == 0.1f);
    assert_int_equal(gguf_get_f64(f, "k.f32", &d), ICA_OK);
    assert_true(d == (double)0.1f);
    assert_int_equal(gguf_get_bool(f, "k.bool", &b), ICA_OK);
    assert_true(b);
    assert_int_equal(gguf_get_bool(f, "k.u8", &b), ICA_ERR_TYPE);
    assert_int_equal(gguf_get_str(f, "k.str", &s), ICA_OK);
    assert_true(str_eq(s, "héllo wörld"));
    assert_int_equal(gguf_get_str(f, "k.empty", &s), ICA_OK);
    assert_int_equal(s.len, 0);
    assert_int_equal(gguf_get_u64(f, "k.u8", &u), ICA_OK);
    assert_int_equal(u, 200);
    assert_int_equal(gguf_get_i64(f, "k.i8", &i), ICA_OK);
    assert_int_equal(i, -100);
    assert_int_equal(gguf_get_u64(f, "k.u16", &u), ICA_OK);
    assert_int_equal(u, 0x1234);
    assert_int_equal(gguf_get_i64(f, "k.i16", &i), ICA_OK);
    assert_int_equal(i, -2);
    assert_int_equal(gguf_get_i64(f, "k.i64", &i), ICA_OK);
    assert_true(i == (int64_t)0x80ffffffffffffffull);
    assert_int_equal(gguf_get_f64(f, "k.f64", &d), ICA_OK);
    assert_true(d == -2.5e300);
    assert_int_equal(gguf_get_f32(f, "k.f64", &fl), ICA_ERR_RANGE);
    assert_int_equal(gguf_get_f64(f, "k.u8", &d), ICA_OK);
    assert_true(d == 200.0);
    assert_int_equal(gguf_get_f64(f, "k.str", &d), ICA_ERR_TYPE);
    assert_int_equal(gguf_get_str(f, "k.u8", &s), ICA_ERR_TYPE);
    assert_int_equal(gguf_get_u64(f, "missing", &u), ICA_ERR_NOTFOUND);

    for (size_t k = 0; k < n_arrs; k++) {
        const struct gguf_value *v = gguf_get(f, arrs[k].key);
        assert_non_null(v);
        assert_int_equal(v->type, GGUF_VT_ARRAY);
        assert_int_equal(v->elem_type, arrs[k].t);
        assert_int_equal(v->n, arrs[k].n);
        const void *raw = gguf_arr_data(f, v);
        assert_non_null(raw);
        size_t esz =
            arrs[k].t == GGUF_VT_UINT8 || arrs[k].t == GGUF_VT_INT8 || arrs[k].t == GGUF_VT_BOOL ? 1
            : arrs[k].t == GGUF_VT_UINT16 || arrs[k].t == GGUF_VT_INT16                          ? 2
            : arrs[k].t == GGUF_VT_UINT64 || arrs[k].t == GGUF_VT_INT64 ||
                    arrs[k].t == GGUF_VT_FLOAT64
                ? 8
                : 4;
        if (arrs[k].n)
            assert_memory_equal(raw, arrs[k].d, esz * arrs[k].n);
        assert_int_equal(gguf_arr_i64(f, v, arrs[k].n, &i),
                         arrs[k].t == GGUF_VT_FLOAT32 || arrs[k].t == GGUF_VT_FLOAT64
                             ? ICA_ERR_TYPE
                             : ICA_ERR_RANGE);
    }
    const struct gguf_value *v = gguf_get(f, "a.i32");
    assert_int_equal(gguf_arr_i64(f, v, 0, &i), ICA_OK);
    assert_int_equal(i, INT32_MIN);
    assert_int_equal(gguf_arr_f64(f, v, 2, &d), ICA_OK);
    assert_true(d == INT32_MAX);
    v = gguf_get(f, "a.u64");
    assert_int_equal(gguf_arr_i64(f, v, 0, &i), ICA_ERR_RANGE);
    assert_int_equal(gguf_arr_i64(f, v, 1, &i), ICA_OK);
    assert_int_equal(i, 5);
    assert_int_equal(gguf_arr_f64(f, v, 0, &d), ICA_OK);
    assert_true(d == 18446744073709551615.0);
    v = gguf_get(f, "a.i16");
    assert_int_equal(gguf_arr_i64(f, v, 0, &i), ICA_OK);
    assert_int_equal(i, -32768);
    v = gguf_get(f, "a.f32");
    assert_int_equal(gguf_arr_f64(f, v, 2, &d), ICA_OK);
    assert_true(d == (double)3e38f);
    v = gguf_get(f, "a.bool");
    assert_int_equal(gguf_arr_i64(f, v, 1, &i), ICA_OK);
    assert_int_equal(i, 0);
    assert_int_equal(gguf_arr_f64(f, v, 1, &d), ICA_ERR_TYPE);

    v = gguf_get(f, "a.str");
    assert_int_equal(v->elem_type, GGUF_VT_STRING);
    assert_int_equal(v->n, 4);
    for (uint64_t k = 0; k < 4; k++) {
        assert_int_equal(gguf_arr_str(f, v, k, &s), ICA_OK);
        assert_true(str_eq(s, strs[k]));
    }
    assert_null(gguf_arr_data(f, v));
    assert_int_equal(gguf_arr_f64(f, v, 0, &d), ICA_ERR_TYPE);
    v = gguf_get(f, "a.str0");
    assert_int_equal(v->n, 0);
    assert_int_equal(gguf_arr_str(f, v, 0, &s), ICA_ERR_RANGE);

    v = gguf_get(f, "a.nested_str");
    assert_int_equal(v->elem_type, GGUF_VT_ARRAY);
    assert_int_equal(v->n, 3);
    struct gguf_value in, in2;
    assert_int_equal(gguf_arr_arr(f, v, 0, &in), ICA_OK);
    assert_int_equal(in.elem_type, GGUF_VT_STRING);
    assert_int_equal(in.n, 2);
    assert_int_equal(gguf_arr_str(f, &in, 1, &s), ICA_OK);
    assert_true(str_eq(s, "yy"));
    assert_int_equal(gguf_arr_arr(f, v, 1, &in), ICA_OK);
    assert_int_equal(in.n, 0);
    assert_int_equal(gguf_arr_arr(f, v, 2, &in), ICA_OK);
    assert_int_equal(gguf_arr_str(f, &in, 0, &s), ICA_OK);
    assert_true(str_eq(s, "zzz"));
    assert_int_equal(gguf_arr_arr(f, v, 3, &in), ICA_ERR_RANGE);
    assert_int_equal(gguf_arr_str(f, v, 0, &s), ICA_ERR_TYPE);
    /* A forged value is refused, not dereferenced. */
    struct gguf_value forged = in;
    forged.v.s.len = 1u << 30;
    assert_int_equal(gguf_arr_str(f, &forged, 0, &s), ICA_ERR_ARG);
    forged = in;
    forged.n = 1000;
    assert_int_equal(gguf_arr_str(f, &forged, 999, &s), ICA_ERR_ARG);

    v = gguf_get(f, "a.nested3");
    assert_int_equal(gguf_arr_arr(f, v, 0, &in), ICA_OK);
    assert_int_equal(in.elem_type, GGUF_VT_ARRAY);
    assert_int_equal(gguf_arr_arr(f, &in, 0, &in2), ICA_OK);
    assert_int_equal(in2.elem_type, GGUF_VT_UINT16);
    assert_int_equal(in2.n, 2);
    assert_int_equal(gguf_arr_i64(f, &in2, 1, &i), ICA_OK);
    assert_int_equal(i, 2);
    assert_int_equal(gguf_arr_arr(f, v, 1, &in), ICA_OK);
    assert_int_equal(gguf_arr_arr(f, &in, 0, &in2), ICA_OK);
    assert_int_equal(gguf_arr_i64(f, &in2, 0, &i), ICA_OK);
    assert_int_equal(i, 3);

    assert_int_equal(gguf_n_tensors(f), (int64_t)n_ts);
    for (size_t k = 0; k < n_ts; k++) {
        const struct gguf_tensor *t = gguf_tensor(f, (int64_t)k);
        assert_string_equal(t->name, ts[k].name);
        assert_ptr_equal(gguf_find_tensor(f, ts[k].name), t);
        assert_int_equal(t->type, ts[k].type);
        assert_int_equal(t->n_dims, ts[k].nd);
        for (int dd = 0; dd < 4; dd++)
            assert_int_equal(t->ne[dd], ts[k].ne[dd]);
        assert_int_equal(t->nbytes, sizes[k]);
        assert_int_equal(t->offset % 64, 0);
        if (sizes[k])
            assert_memory_equal(t->data, datas[k], sizes[k]);
        free(datas[k]);
    }
    gguf_close(f);

    /* The same bytes read back as version 2 (identical layout). */
    size_t len = 0;
    uint8_t *raw = tu_read_file(path, &len);
    assert_non_null(raw);
    raw[4] = 2;
    assert_int_equal(gguf_open_mem(raw, len, "v2", &f, &err), ICA_OK);
    assert_int_equal(gguf_version(f), 2);
    assert_int_equal(gguf_n_tensors(f), (int64_t)n_ts);
    gguf_close(f);
    free(raw);
    unlink(path);
}

static void test_writer_defaults_and_errors(void **state) {
    (void)state;
    struct gguf_writer *w = gguf_writer_new();
    float data[3] = {1, 2, 3};
    int64_t ne[1] = {3};
    assert_int_equal(gguf_writer_add_tensor(w, "a", ICA_F32, 1, ne, data, 12), ICA_OK);
    assert_int_equal(gguf_writer_add_tensor(w, "b", ICA_F32, 1, ne, data, 12), ICA_OK);
    const char *path = tmp_path("defaults.gguf");
    struct ica_error err = {0};
    assert_int_equal(gguf_writer_write(w, path, &err), ICA_OK);
    struct gguf_file *f = NULL;
    assert_int_equal(gguf_open(path, &f, &err), ICA_OK);
    assert_int_equal(gguf_alignment(f), 32);
    assert_int_equal(gguf_n_kv(f), 0);
    assert_int_equal(gguf_tensor(f, 1)->offset, 32);
    assert_memory_equal(gguf_tensor(f, 1)->data, data, 12);
    gguf_close(f);
    unlink(path);

    assert_int_equal(gguf_writer_write(w, "/nonexistent-dir/x.gguf", &err), ICA_ERR_IO);
    assert_non_null(strstr(err.msg, "/nonexistent-dir/x.gguf"));
    assert_int_equal(gguf_writer_set_u32(w, "general.alignment", 48), ICA_OK);
    assert_int_equal(gguf_writer_write(w, path, &err), ICA_ERR_ARG);
    assert_non_null(strstr(err.msg, "power of two"));
    assert_int_equal(gguf_writer_set_u64(w, "general.alignment", 64), ICA_OK);
    assert_int_equal(gguf_writer_write(w, path, &err), ICA_ERR_ARG);
    assert_non_null(strstr(err.msg, "uint32"));
    gguf_writer_free(w);
    gguf_writer_free(NULL);
    gguf_close(NULL);
    assert_int_equal(gguf_n_kv(NULL), 0);
    assert_null(gguf_find_tensor(NULL, "x"));
    assert_int_equal(gguf_find_key(NULL, "x"), -1);
    assert_string_equal(gguf_vtype_name(GGUF_VT_FLOAT64), "float64");
    assert_string_equal(gguf_vtype_name(99), "unknown");
}

/* ==== Malformed files ==== */

static void test_malformed_header(void **state) {
    (void)state;
    struct bb b = {0};
    bb_put(&b, "GGUX", 4);
    bb_u32(&b, 3);
    bb_u64(&b, 0);
    bb_u64(&b, 0);
    expect_err(&b, ICA_ERR_FORMAT, "bad magic", NULL);
    b.n = 3;
    expect_err(&b, ICA_ERR_FORMAT, "too small", NULL);
    b.n = 0;
    expect_err(&b, ICA_ERR_FORMAT, "too small", NULL);

    b.n = 0;
    bb_header(&b, 1, 0, 0);
    expect_err(&b, ICA_ERR_UNSUPPORTED, "version 1", NULL);
    b.n = 0;
    bb_header(&b, 0x03000000u, 0, 0);
    expect_err(&b, ICA_ERR_UNSUPPORTED, "big-endian", NULL);
    b.n = 0;
    bb_header(&b, 4, 0, 0);
    expect_err(&b, ICA_ERR_UNSUPPORTED, "version 4", NULL);
    b.n = 0;
    bb_header(&b, 3, 0, 0);
    b.n = 20;
    expect_err(&b, ICA_ERR_FORMAT, "n_kv", "file ends at 20", NULL);

    b.n = 0;
    bb_header(&b, 3, 1ull << 60, 0);
    expect_err(&b, ICA_ERR_FORMAT, "n_tensors 1152921504606846976", NULL);
    b.n = 0;
    bb_header(&b, 3, UINT64_MAX, UINT64_MAX);
    expect_err(&b, ICA_ERR_FORMAT, "n_tensors", NULL);
    b.n = 0;
    bb_header(&b, 3, 0, 1000);
    bb_kv_u32(&b, "a", 1);
    expect_err(&b, ICA_ERR_FORMAT, "n_kv 1000", NULL);

    /* An empty, valid file. */
    b.n = 0;
    bb_header(&b, 3, 0, 0);
    struct gguf_file *f = open_ok(&b);
    assert_int_equal(gguf_n_kv(f), 0);
    assert_int_equal(gguf_n_tensors(f), 0);
    gguf_close(f);
    free(b.p);
}

static void test_malformed_metadata(void **state) {
    (void)state;
    struct bb b = {0};
    /* Key length runs past EOF. */
    bb_header(&b, 3, 0, 1);
    bb_u64(&b, 1000);
    bb_put(&b, "abcdefghijklmnop", 16);
    expect_err(&b, ICA_ERR_FORMAT, "kv 0", "key length 1000", "runs past end of file", NULL);

    /* String value length past EOF. */
    b.n = 0;
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "general.name");
    bb_u32(&b, GGUF_VT_STRING);
    bb_u64(&b, UINT64_MAX);
    bb_put(&b, "xyzxyzxyzxyz", 12);
    expect_err(&b, ICA_ERR_FORMAT, "'general.name'", "string value length", NULL);

    /* Array counts whose byte size overflows 64 bits. */
    b.n = 0;
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "arr");
    bb_u32(&b, GGUF_VT_ARRAY);
    bb_u32(&b, GGUF_VT_UINT32);
    bb_u64(&b, (1ull << 62) + 1); /* * 4 wraps to 4 */
    bb_u32(&b, 7);
    expect_err(&b, ICA_ERR_FORMAT, "'arr'", "4611686018427387905 uint32 elements", NULL);
    b.n = 0;
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "arr");
    bb_u32(&b, GGUF_VT_ARRAY);
    bb_u32(&b, GGUF_VT_STRING);
    bb_u64(&b, UINT64_MAX);
    bb_str(&b, "x");
    expect_err(&b, ICA_ERR_FORMAT, "string elements", NULL);
    b.n = 0;
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "arr");
    bb_u32(&b, GGUF_VT_ARRAY);
    bb_u32(&b, GGUF_VT_ARRAY);
    bb_u64(&b, 1ull << 61);
    bb_zeros(&b, 24);
    expect_err(&b, ICA_ERR_FORMAT, "array elements", NULL);

    /* String element inside an array runs past EOF. */
    b.n = 0;
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "arr");
    bb_u32(&b, GGUF_VT_ARRAY);
    bb_u32(&b, GGUF_VT_STRING);
    bb_u64(&b, 2);
    bb_str(&b, "ok");
    bb_u64(&b, 5);
    bb_put(&b, "abc", 3);
    expect_err(&b, ICA_ERR_FORMAT, "string array element length 5", NULL);

    /* Unknown value type and array element type. */
    b.n = 0;
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, 13);
    bb_u64(&b, 0);
    expect_err(&b, ICA_ERR_FORMAT, "'k'", "unknown value type 13", NULL);
    b.n = 0;
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_VT_ARRAY);
    bb_u32(&b, 77);
    bb_u64(&b, 0);
    expect_err(&b, ICA_ERR_FORMAT, "unknown element type 77", NULL);

    /* Arrays nested too deep. */
    b.n = 0;
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "deep");
    bb_u32(&b, GGUF_VT_ARRAY);
    for (int i = 0; i < 20; i++) {
        bb_u32(&b, GGUF_VT_ARRAY);
        bb_u64(&b, 1);
    }
    bb_u32(&b, GGUF_VT_UINT8);
    bb_u64(&b, 0);
    expect_err(&b, ICA_ERR_UNSUPPORTED, "'deep'", "deeper", NULL);

    /* Duplicate key. */
    b.n = 0;
    bb_header(&b, 3, 0, 3);
    bb_kv_u32(&b, "a.b", 1);
    bb_kv_u32(&b, "a.c", 2);
    bb_kv_u32(&b, "a.b", 3);
    expect_err(&b, ICA_ERR_FORMAT, "kv 2 'a.b'", "duplicate key", NULL);

    /* Keys are compared with their length: "a.b" and "a.b\0x" differ. */
    b.n = 0;
    bb_header(&b, 3, 0, 2);
    bb_kv_u32(&b, "a.b", 1);
    bb_u64(&b, 5);
    bb_put(&b, "a.b\0x", 5);
    bb_u32(&b, GGUF_VT_UINT32);
    bb_u32(&b, 2);
    struct gguf_file *f = open_ok(&b);
    uint32_t u = 0;
    assert_int_equal(gguf_get_u32(f, "a.b", &u), ICA_OK);
    assert_int_equal(u, 1);
    assert_int_equal(gguf_find_key(f, "a.b"), 0);
    gguf_close(f);

    /* general.alignment: not a power of two, zero, wrong type. */
    uint32_t bad_aligns[] = {48, 0, 3};
    for (size_t i = 0; i < 3; i++) {
        b.n = 0;
        bb_header(&b, 3, 0, 1);
        bb_kv_u32(&b, "general.alignment", bad_aligns[i]);
        expect_err(&b, ICA_ERR_FORMAT, "general.alignment", "power of two", NULL);
    }
    b.n = 0;
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "general.alignment");
    bb_u32(&b, GGUF_VT_UINT64);
    bb_u64(&b, 64);
    expect_err(&b, ICA_ERR_FORMAT, "general.alignment has type uint64", NULL);
    free(b.p);
}

/* Header + alignment kv + tensor infos; data section follows. */
static void tensor_file(struct bb *b, uint32_t align, int n, const char *const *names,
                        const uint32_t *nd, const uint64_t (*ne)[5], const uint32_t *type,
                        const uint64_t *off) {
    b->n = 0;
    bb_header(b, 3, (uint64_t)n, 1);
    bb_kv_u32(b, "general.alignment", align);
    for (int i = 0; i < n; i++)
        bb_tinfo(b, names[i], nd[i], ne[i], type[i], off[i]);
    bb_pad(b, align);
}

static void test_malformed_tensors(void **state) {
    (void)state;
    struct bb b = {0};
    const char *names[2] = {"blk.0.attn_q.weight", "blk.0.attn_k.weight"};
    uint32_t nd[2] = {2, 2};
    uint64_t ne[2][5] = {{32, 32}, {32, 32}};
    uint32_t type[2] = {ICA_F32, ICA_F32};
    uint64_t off[2] = {0, 4096};

    /* Valid baseline. */
    tensor_file(&b, 32, 2, names, nd, ne, type, off);
    size_t ds = b.n;
    bb_zeros(&b, 8192);
    struct gguf_file *f = open_ok(&b);
    assert_int_equal(gguf_data_offset(f), ds);
    assert_int_equal(gguf_tensor(f, 1)->nbytes, 4096);
    gguf_close(f);

    /* Data past the end: the message names tensor, offset, size, file size. */
    b.n -= 1;
    char want[256];
    snprintf(want, sizeof want,
             "bad.gguf: tensor 'blk.0.attn_k.weight': data [offset %zu, 4096 bytes] runs past "
             "end of file (size %zu)",
             ds + 4096, b.n);
    expect_err(&b, ICA_ERR_FORMAT, want, NULL);
    off[1] = 1ull << 62;
    tensor_file(&b, 32, 2, names, nd, ne, type, off);
    bb_zeros(&b, 8192);
    expect_err(&b, ICA_ERR_FORMAT, "'blk.0.attn_k.weight'", "runs past end of file", NULL);

    /* Overlapping data. */
    off[1] = 2048;
    tensor_file(&b, 32, 2, names, nd, ne, type, off);
    bb_zeros(&b, 8192);
    expect_err(&b, ICA_ERR_FORMAT, "overlaps", NULL);
    off[1] = 0;
    tensor_file(&b, 32, 2, names, nd, ne, type, off);
    bb_zeros(&b, 8192);
    expect_err(&b, ICA_ERR_FORMAT, "overlaps", NULL);

    /* Misaligned offset (alignment 64). */
    off[1] = 4096 + 32;
    tensor_file(&b, 64, 2, names, nd, ne, type, off);
    bb_zeros(&b, 9000);
    expect_err(&b, ICA_ERR_FORMAT, "'blk.0.attn_k.weight'", "offset 4128",
               "not a multiple of the alignment 64", NULL);
    off[1] = 4096;

    /* Unknown tensor type: named, with its id. */
    type[1] = 99;
    tensor_file(&b, 32, 2, names, nd, ne, type, off);
    bb_zeros(&b, 8192);
    expect_err(&b, ICA_ERR_UNSUPPORTED, "tensor 'blk.0.attn_k.weight'", "unknown tensor type 99",
               NULL);
    type[1] = 4; /* Q4_2: removed from ggml */
    tensor_file(&b, 32, 2, names, nd, ne, type, off);
    bb_zeros(&b, 8192);
    expect_err(&b, ICA_ERR_UNSUPPORTED, "unknown tensor type 4", NULL);
    type[1] = ICA_F32;

    /* Duplicate tensor name. */
    names[1] = names[0];
    tensor_file(&b, 32, 2, names, nd, ne, type, off);
    bb_zeros(&b, 8192);
    expect_err(&b, ICA_ERR_FORMAT, "'blk.0.attn_q.weight'", "duplicate name", NULL);
    names[1] = "blk.0.attn_k.weight";

    /* n_dims 0 and 5, negative ne, shape overflow, block size. */
    nd[1] = 0;
    tensor_file(&b, 32, 2, names, nd, ne, type, off);
    bb_zeros(&b, 8192);
    expect_err(&b, ICA_ERR_FORMAT, "n_dims 0", NULL);
    nd[1] = 5;
    tensor_file(&b, 32, 2, names, nd, ne, type, off);
    bb_zeros(&b, 8192);
    expect_err(&b, ICA_ERR_FORMAT, "n_dims 5", NULL);
    nd[1] = 2;
    ne[1][1] = (uint64_t)-5;
    tensor_file(&b, 32, 2, names, nd, ne, type, off);
    bb_zeros(&b, 8192);
    expect_err(&b, ICA_ERR_FORMAT, "ne[1] = -5 is negative", NULL);
    ne[1][0] = 1ull << 32;
    ne[1][1] = 1ull << 32;
    tensor_file(&b, 32, 2, names, nd, ne, type, off);
    bb_zeros(&b, 8192);
    expect_err(&b, ICA_ERR_FORMAT, "overflows", NULL);
    ne[1][0] = 1ull << 61; /* elements fit int64, bytes do not */
    ne[1][1] = 2;
    tensor_file(&b, 32, 2, names, nd, ne, type, off);
    bb_zeros(&b, 8192);
    expect_err(&b, ICA_ERR_FORMAT, "overflows", NULL);
    ne[1][0] = 33;
    ne[1][1] = 1;
    type[1] = ICA_Q4_0;
    tensor_file(&b, 32, 2, names, nd, ne, type, off);
    bb_zeros(&b, 8192);
    expect_err(&b, ICA_ERR_FORMAT, "ne[0] = 33 is not a multiple of the block size 32", NULL);
    ne[1][0] = 32;
    type[1] = ICA_F32;

    /* Names: embedded NUL, empty, too long. */
    b.n = 0;
    bb_header(&b, 3, 1, 0);
    bb_u64(&b, 4);
    bb_put(&b, "ab\0c", 4);
    bb_u32(&b, 1);
    bb_u64(&b, 4);
    bb_u32(&b, ICA_F32);
    bb_u64(&b, 0);
    bb_pad(&b, 32);
    bb_zeros(&b, 64);
    expect_err(&b, ICA_ERR_FORMAT, "NUL", NULL);
    b.n = 0;
    bb_header(&b, 3, 1, 0);
    bb_u64(&b, 0);
    bb_u32(&b, 1);
    bb_u64(&b, 4);
    bb_u32(&b, ICA_F32);
    bb_u64(&b, 0);
    bb_pad(&b, 32);
    bb_zeros(&b, 64);
    expect_err(&b, ICA_ERR_FORMAT, "empty name", NULL);
    b.n = 0;
    bb_header(&b, 3, 1, 0);
    bb_u64(&b, 70000);
    for (int i = 0; i < 70000; i++)
        bb_put(&b, "n", 1);
    bb_u32(&b, 1);
    bb_u64(&b, 4);
    bb_u32(&b, ICA_F32);
    bb_u64(&b, 0);
    bb_pad(&b, 32);
    bb_zeros(&b, 64);
    expect_err(&b, ICA_ERR_FORMAT, "longer than 65536", NULL);

    /* Tensor infos end exactly at EOF (no padding, no data). */
    b.n = 0;
    bb_header(&b, 3, 1, 0);
    bb_tinfo(&b, "t", 1, ne[0], ICA_F32, 0);
    expect_err(&b, ICA_ERR_FORMAT, "past end of file", NULL);
    free(b.p);
}

/* ==== gguf_open on files: I/O errors, no fd leak ==== */

static int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static void test_open_files(void **state) {
    (void)state;
    struct gguf_file *f = (struct gguf_file *)1;
    struct ica_error err = {0};
    assert_int_equal(gguf_open("/nonexistent/x.gguf", &f, &err), ICA_ERR_IO);
    assert_null(f);
    assert_non_null(strstr(err.msg, "/nonexistent/x.gguf"));
    assert_int_equal(gguf_open(tu_tmpdir(), &f, &err), ICA_ERR_IO);
    assert_non_null(strstr(err.msg, "not a regular file"));

    /* Write a valid file, then truncated copies; every failure must close
     * its descriptor. */
    struct gguf_writer *w = gguf_writer_new();
    assert_int_equal(gguf_writer_set_str(w, "general.name", "t"), ICA_OK);
    float data[64] = {0};
    int64_t ne[2] = {8, 8};
    assert_int_equal(gguf_writer_add_tensor(w, "w", ICA_F32, 2, ne, data, sizeof data), ICA_OK);
    const char *path = tmp_path("fd.gguf");
    assert_int_equal(gguf_writer_write(w, path, &err), ICA_OK);
    gguf_writer_free(w);
    size_t len = 0;
    uint8_t *raw = tu_read_file(path, &len);
    assert_non_null(raw);
    int fds0 = count_fds();
    for (size_t cut = 0; cut < len; cut += 7) {
        FILE *fp = fopen(path, "wb");
        assert_non_null(fp);
        assert_int_equal(fwrite(raw, 1, cut, fp), cut);
        fclose(fp);
        int rc = gguf_open(path, &f, &err);
        assert_true(rc != ICA_OK);
        assert_null(f);
        assert_true(err.msg[0] != '\0');
    }
    assert_int_equal(count_fds(), fds0);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(raw, 1, len, fp), len);
    fclose(fp);
    assert_int_equal(gguf_open(path, &f, &err), ICA_OK);
    assert_int_equal(count_fds(), fds0); /* the mapping holds no descriptor */
    gguf_close(f);
    free(raw);
    unlink(path);
}

/* ==== Corruption sweeps over the fixtures ==== */

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Opens buf[0..len) (from an exact-size heap copy if do_copy): either an error with a
 * message, or a file whose accessors are all safe. Returns the code. */
static long g_opens, g_accepted;

static int try_open(const uint8_t *buf, size_t len, uint64_t max_elems, bool do_copy) {
    uint8_t *copy = do_copy ? malloc(len ? len : 1) : (uint8_t *)buf;
    assert_non_null(copy);
    if (do_copy)
        memcpy(copy, buf, len);
    struct gguf_file *f = NULL;
    struct ica_error err = {0};
    int rc = gguf_open_mem(copy, len, "c.gguf", &f, &err);
    g_opens++;
    g_accepted += rc == ICA_OK;
    if (rc) {
        assert_null(f);
        assert_int_equal(err.code, rc);
        assert_true(strlen(err.msg) > strlen("c.gguf: "));
    } else {
        walk_file(f, max_elems);
        gguf_close(f);
    }
    if (do_copy)
        free(copy);
    return rc;
}

static void corrupt_one(const char *path, int n_flips, int n_strides) {
    size_t len = 0;
    uint8_t *raw = tu_read_file(path, &len);
    assert_non_null(raw);
    struct gguf_file *f = NULL;
    struct ica_error err = {0};
    assert_int_equal(gguf_open_mem(raw, len, path, &f, &err), ICA_OK);
    /* Any cut before this point loses needed bytes. */
    uint64_t need = gguf_data_offset(f) - gguf_alignment(f) + 1;
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const struct gguf_tensor *t = gguf_tensor(f, i);
        if (t->nbytes && gguf_data_offset(f) + t->offset + t->nbytes > need)
            need = gguf_data_offset(f) + t->offset + t->nbytes;
    }
    size_t meta_end = (size_t)gguf_data_offset(f);
    if (meta_end > len)
        meta_end = len;
    gguf_close(f);

    /* Truncations: every offset in the first 4 KB, then a stride. */
    size_t dense = len < 4096 ? len : 4096;
    for (size_t cut = 0; cut < dense; cut++) {
        int rc = try_open(raw, cut, 64, true);
        if (cut < need)
            assert_true(rc != ICA_OK);
    }
    size_t stride = (len - dense) / (size_t)n_strides + 1;
    for (size_t cut = dense; cut < len; cut += stride + (cut & 7)) {
        int rc = try_open(raw, cut, 64, true);
        if (cut < need)
            assert_true(rc != ICA_OK);
    }
    int rc_last = try_open(raw, len - 1, 64, true);
    if (len - 1 < need)
        assert_true(rc_last != ICA_OK);

    /* Byte flips in the header/metadata/tensor-info region (biased to the
     * first KB, where counts and lengths live), on a mutable copy. */
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    memcpy(buf, raw, len);
    uint64_t seed = 0x5eed0000u + len;
    for (int k = 0; k < n_flips; k++) {
        /* Thirds: anywhere, the first KB, the last 2 KB (tensor infos). */
        size_t lo = 0, region = meta_end;
        if (k % 3 == 1 && meta_end > 1024)
            region = 1024;
        else if (k % 3 == 2 && meta_end > 2048) {
            lo = meta_end - 2048;
            region = 2048;
        }
        int nb = 1 + (int)(rng_next(&seed) % 3);
        size_t pos[3];
        for (int j = 0; j < nb; j++) {
            pos[j] = lo + (size_t)(rng_next(&seed) % region);
            uint64_t r = rng_next(&seed);
            buf[pos[j]] ^= (r & 0x100) ? (uint8_t)(1u << (r & 7)) : (uint8_t)(r | 1);
        }
        /* buf is an exact-size heap block, so no copy is needed. */
        (void)try_open(buf, len, 64, false);
        for (int j = 0; j < nb; j++)
            buf[pos[j]] = raw[pos[j]];
    }
    free(buf);
    free(raw);
}

static void test_corruption_sweeps(void **state) {
    (void)state;
    char dir[1024];
    tu_require_shared(dir, sizeof dir, "fixtures");
    static const char *const subdirs[] = {"random", "stories260K", "tokenizer"};
    int n = 0;
    for (size_t s = 0; s < 3; s++) {
        char sub[1200];
        snprintf(sub, sizeof sub, "%s/%s", dir, subdirs[s]);
        DIR *d = opendir(sub);
        assert_non_null(d);
        for (struct dirent *de; (de = readdir(d));) {
            size_t L = strlen(de->d_name);
            if (L < 5 || strcmp(de->d_name + L - 5, ".gguf") != 0)
                continue;
            char path[1600];
            snprintf(path, sizeof path, "%s/%s", sub, de->d_name);
            /* Vocab files are all metadata and large: sample them lightly. */
            if (s == 2)
                corrupt_one(path, 60, 16);
            else
                corrupt_one(path, 600, 200);
            n++;
        }
        closedir(d);
    }
    assert_true(n >= 20);
    fprintf(stderr, "corruption sweeps: %d files, %ld opens, %ld accepted\n", n, g_opens,
            g_accepted);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures),          cmocka_unit_test(test_fixture_details),
        cmocka_unit_test(test_writer_roundtrip),  cmocka_unit_test(test_writer_defaults_and_errors),
        cmocka_unit_test(test_malformed_header),  cmocka_unit_test(test_malformed_metadata),
        cmocka_unit_test(test_malformed_tensors), cmocka_unit_test(test_open_files),
        cmocka_unit_test(test_corruption_sweeps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
