/* GGUF reader and writer.
 *
 * Format (v2 and v3, little-endian):
 *   magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv × { string key | u32 value_type | value }
 *   n_tensors × { string name | u32 n_dims | u64 ne[n_dims] | u32 dtype | u64 offset }
 *   padding to general.alignment (default 32) | tensor data (each offset aligned)
 *   string = u64 len | bytes (not NUL-terminated)
 *   array  = u32 elem_type | u64 n | n values (arrays may nest)
 *
 * The reader maps the file read-only; every length, count and offset is
 * checked against the file size before it is used. Strings and tensor data
 * returned by the accessors are borrowed from the mapping: valid until
 * gguf_close(). */
#ifndef ICALIGN_GGUF_H
#define ICALIGN_GGUF_H

#include "icalign/common.h"
#include "icalign/dtype.h"

#include <stdbool.h>
#include <stdint.h>

enum gguf_vtype {
    GGUF_VT_UINT8 = 0,
    GGUF_VT_INT8 = 1,
    GGUF_VT_UINT16 = 2,
    GGUF_VT_INT16 = 3,
    GGUF_VT_UINT32 = 4,
    GGUF_VT_INT32 = 5,
    GGUF_VT_FLOAT32 = 6,
    GGUF_VT_BOOL = 7,
    GGUF_VT_STRING = 8,
    GGUF_VT_ARRAY = 9,
    GGUF_VT_UINT64 = 10,
    GGUF_VT_INT64 = 11,
    GGUF_VT_FLOAT64 = 12,
};

/* Borrowed string: not NUL-terminated. */
struct gguf_str {
    const char *ptr;
    uint64_t len;
};

/* One metadata value. For arrays, elem_type/n describe the array; elements
 * are read with gguf_arr_*() (the reader keeps private lookup data in v.s
 * of an array value, so pass values as the reader returned them). */
struct gguf_value {
    enum gguf_vtype type;
    union {
        uint64_t u; /* UINT8/16/32/64 */
        int64_t i;  /* INT8/16/32/64 */
        double f;   /* FLOAT32/64 (FLOAT32 widened exactly) */
        bool b;     /* BOOL */
        struct gguf_str s;
    } v;
    enum gguf_vtype elem_type; /* ARRAY only */
    uint64_t n;                /* ARRAY only: element count */
};

struct gguf_tensor {
    const char *name; /* NUL-terminated, owned by the gguf_file */
    uint32_t n_dims;  /* 1..4 */
    int64_t ne[4];    /* elements per dim, ne[0] contiguous; unused dims = 1 */
    uint32_t type;    /* enum ica_dtype id */
    uint64_t offset;  /* relative to the data section */
    const void *data; /* borrowed from the mapping */
    size_t nbytes;    /* bytes of data */
};

struct gguf_file;

/* Opens and validates path (mmap, read-only). On error *out is NULL and err
 * names the file, the field and what was wrong. */
ICA_API int gguf_open(const char *path, struct gguf_file **out, struct ica_error *err) ICA_WUR;

/* Same, over a caller-owned buffer (tests, fuzzing); buf must outlive the
 * handle. name is used in error messages. */
ICA_API int gguf_open_mem(const void *buf, size_t len, const char *name, struct gguf_file **out,
                          struct ica_error *err) ICA_WUR;

/* Unmaps and frees. NULL-safe. */
ICA_API void gguf_close(struct gguf_file *f);

ICA_API uint32_t gguf_version(const struct gguf_file *f);
ICA_API uint64_t gguf_alignment(const struct gguf_file *f);
ICA_API uint64_t gguf_file_size(const struct gguf_file *f);
ICA_API const char *gguf_path(const struct gguf_file *f);
/* File offset where the tensor data section starts (tensor offsets are
 * relative to it): the end of the tensor infos rounded up to the alignment. */
ICA_API uint64_t gguf_data_offset(const struct gguf_file *f);

/* Metadata. Keys are indexed 0..n_kv-1. */
ICA_API int64_t gguf_n_kv(const struct gguf_file *f);
ICA_API struct gguf_str gguf_key(const struct gguf_file *f, int64_t i);
ICA_API const struct gguf_value *gguf_kv(const struct gguf_file *f, int64_t i);
/* Index of key (exact match) or -1. */
ICA_API int64_t gguf_find_key(const struct gguf_file *f, const char *key);
/* Value of key or NULL. */
ICA_API const struct gguf_value *gguf_get(const struct gguf_file *f, const char *key);

/* Typed getters. Integers convert between widths when the value fits;
 * floats accept FLOAT32/FLOAT64 (and integers). Return ICA_ERR_NOTFOUND when
 * the key is absent (out untouched), ICA_ERR_TYPE/RANGE otherwise. */
ICA_API int gguf_get_u64(const struct gguf_file *f, const char *key, uint64_t *out);
ICA_API int gguf_get_i64(const struct gguf_file *f, const char *key, int64_t *out);
ICA_API int gguf_get_u32(const struct gguf_file *f, const char *key, uint32_t *out);
ICA_API int gguf_get_f64(const struct gguf_file *f, const char *key, double *out);
ICA_API int gguf_get_f32(const struct gguf_file *f, const char *key, float *out);
ICA_API int gguf_get_bool(const struct gguf_file *f, const char *key, bool *out);
ICA_API int gguf_get_str(const struct gguf_file *f, const char *key, struct gguf_str *out);

/* Array elements of a value (v->type == GGUF_VT_ARRAY), O(1) each (the
 * reader indexes string arrays). Return ICA_ERR_TYPE on a type mismatch,
 * ICA_ERR_RANGE when i >= v->n. Nested arrays: gguf_arr_arr gives the inner
 * array as a value. */
ICA_API int gguf_arr_str(const struct gguf_file *f, const struct gguf_value *v, uint64_t i,
                         struct gguf_str *out);
ICA_API int gguf_arr_i64(const struct gguf_file *f, const struct gguf_value *v, uint64_t i,
                         int64_t *out); /* any integer or bool element type */
ICA_API int gguf_arr_f64(const struct gguf_file *f, const struct gguf_value *v, uint64_t i,
                         double *out); /* float or integer element types */
ICA_API int gguf_arr_arr(const struct gguf_file *f, const struct gguf_value *v, uint64_t i,
                         struct gguf_value *out);
/* Raw pointer to the packed elements of a numeric array (little-endian, as
 * in the file; may be unaligned) or NULL for string/array elements. */
ICA_API const void *gguf_arr_data(const struct gguf_file *f, const struct gguf_value *v);

/* Tensors, indexed 0..n_tensors-1, in file order. */
ICA_API int64_t gguf_n_tensors(const struct gguf_file *f);
ICA_API const struct gguf_tensor *gguf_tensor(const struct gguf_file *f, int64_t i);
ICA_API const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f, const char *name);

/* Human-readable name of a value type ("uint32", "string", ...). */
ICA_API const char *gguf_vtype_name(uint32_t t);

/* ---- writer ---- */

struct gguf_writer;

ICA_API struct gguf_writer *gguf_writer_new(void);
ICA_API void gguf_writer_free(struct gguf_writer *w);
/* Metadata setters copy key and value; a key set twice keeps the last value. */
ICA_API int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v);
ICA_API int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v);
ICA_API int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v);
ICA_API int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v);
ICA_API int gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v);
ICA_API int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *v);
/* Numeric array of n elements of elem_type (packed, host little-endian). */
ICA_API int gguf_writer_set_arr(struct gguf_writer *w, const char *key, enum gguf_vtype elem_type,
                                const void *data, uint64_t n);
ICA_API int gguf_writer_set_arr_str(struct gguf_writer *w, const char *key, const char *const *strs,
                                    uint64_t n);
/* Any value, including nested arrays, as raw already-encoded value bytes
 * (used by tests to write unusual files). */
ICA_API int gguf_writer_set_raw(struct gguf_writer *w, const char *key, enum gguf_vtype type,
                                const void *encoded, size_t nbytes);
/* Adds a tensor; data (nbytes, which must equal the row size of type × rows)
 * is copied. ne has n_dims entries. */
ICA_API int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, uint32_t type,
                                   uint32_t n_dims, const int64_t *ne, const void *data,
                                   size_t nbytes);
/* Same, but borrows data instead of copying it: it must stay valid until
 * gguf_writer_write() returns (saves a copy of multi-GB synthetic models). */
ICA_API int gguf_writer_add_tensor_ref(struct gguf_writer *w, const char *name, uint32_t type,
                                       uint32_t n_dims, const int64_t *ne, const void *data,
                                       size_t nbytes);
/* Writes version-3 GGUF (alignment from general.alignment if set, else 32). */
/* Tensor whose nbytes of data gen produces at write time, one tensor at a
 * time, so that multi-GB files are written without holding them in memory.
 * gen returns ICA_OK or an error code that aborts the write. */
typedef int (*gguf_tensor_gen_fn)(void *ud, const char *name, void *buf, size_t nbytes);
ICA_API int gguf_writer_add_tensor_gen(struct gguf_writer *w, const char *name, uint32_t type,
                                       uint32_t n_dims, const int64_t *ne, size_t nbytes,
                                       gguf_tensor_gen_fn gen, void *ud);
ICA_API int gguf_writer_write(struct gguf_writer *w, const char *path, struct ica_error *err);

#endif
