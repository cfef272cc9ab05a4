/* libFuzzer target: gguf_open_mem on arbitrary bytes; on success every kv
 * (array elements included) and every tensor is visited. */
#include "icalign/gguf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static volatile uint64_t g_sink;

static void touch(const void *p, uint64_t n) {
    const unsigned char *b = p;
    if (n) {
        g_sink += b[0];
        g_sink += b[n - 1];
    }
}

static void walk_array(const struct gguf_file *f, const struct gguf_value *v, int depth) {
    if (depth > 16)
        abort(); /* the reader caps nesting; deeper means a bug */
    for (uint64_t i = 0; i < v->n; i++) {
        struct gguf_str s;
        struct gguf_value in;
        int64_t x;
        double d;
        if (gguf_arr_str(f, v, i, &s) == ICA_OK)
            touch(s.ptr, s.len);
        if (gguf_arr_i64(f, v, i, &x) == ICA_OK)
            g_sink += (uint64_t)x;
        if (gguf_arr_f64(f, v, i, &d) == ICA_OK)
            g_sink += d == d;
        if (gguf_arr_arr(f, v, i, &in) == ICA_OK)
            walk_array(f, &in, depth + 1);
    }
    struct gguf_str s;
    if (gguf_arr_str(f, v, v->n, &s) == ICA_OK)
        abort();
    const void *raw = gguf_arr_data(f, v);
    if (raw)
        g_sink += (uintptr_t)raw & 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct gguf_file *f = NULL;
    struct ica_error err = {0};
    if (gguf_open_mem(data, size, "fuzz.gguf", &f, &err) != ICA_OK) {
        if (f || err.msg[0] == '\0')
            abort();
        return 0;
    }
    for (int64_t i = 0; i < gguf_n_kv(f); i++) {
        struct gguf_str k = gguf_key(f, i);
        const struct gguf_value *v = gguf_kv(f, i);
        touch(k.ptr, k.len);
        if (k.len < 128 && !memchr(k.ptr, 0, k.len)) {
            char key[128];
            memcpy(key, k.ptr, k.len);
            key[k.len] = '\0';
            if (gguf_find_key(f, key) != i)
                abort();
        }
        if (v->type == GGUF_VT_STRING)
            touch(v->v.s.ptr, v->v.s.len);
        else if (v->type == GGUF_VT_ARRAY)
            walk_array(f, v, 0);
    }
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const struct gguf_tensor *t = gguf_tensor(f, i);
        if (gguf_find_tensor(f, t->name) != t)
            abort();
        touch(t->data, t->nbytes);
        g_sink += (uint64_t)(t->ne[0] + t->ne[1] + t->ne[2] + t->ne[3]) + t->type;
    }
    gguf_close(f);
    return 0;
}
