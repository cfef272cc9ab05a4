/* Tensor arithmetic: conversion between F32 and every storage type, and the
 * dot products the forward pass is made of.
 *
 * Exactness rule (see ../shared/fixtures/README.md): before a matrix product
 * with weights of type T, llama.cpp rounds the activations to T's vec_dot
 * type (F16 -> F16, BF16 -> BF16, Q4_0/Q5_0/Q8_0/IQ4_NL -> Q8_0,
 * Q4_1/Q5_1 -> Q8_1, K-quants and IQ4_XS -> Q8_K, F32 -> F32). The kernels
 * here reproduce that rounding and the integer arithmetic of ggml's
 * reference kernels; SIMD variants slot in beside the reference through the
 * traits table and must agree with it. */
#ifndef ICALIGN_KERN_H
#define ICALIGN_KERN_H

#include "icalign/common.h"
#include "icalign/dtype.h"

#include <stdbool.h>
#include <stdint.h>

/* Dequantizes k elements (k multiple of the block size) of x to y. */
typedef void (*kern_to_float_fn)(const void *x, float *y, int64_t k);
/* Quantizes k elements of x into y (k multiple of the block size). */
typedef void (*kern_from_float_fn)(const float *x, void *y, int64_t k);
/* *s = dot(x, y) over n elements; x is the weight type, y its vec_dot_type. */
typedef void (*kern_vec_dot_fn)(int64_t n, float *s, const void *x, const void *y);

struct kern_traits {
    uint32_t type;                 /* enum ica_dtype */
    uint32_t vec_dot_type;         /* type activations are rounded to */
    kern_to_float_fn to_float;     /* dequantizer (present for every type with traits) */
    kern_from_float_fn from_float; /* quantizer: bit-exact llama.cpp x86 rounding for the
                                      activation types (F16, BF16, Q8_0, Q8_1, Q8_K); a simple
                                      valid quantizer for the other weight types */
    kern_vec_dot_fn vec_dot;       /* NULL for activation-only types (Q8_1, Q8_K) */
};

/* Traits of the current kernel level for type t, or NULL if t has no kernels. */
ICA_API const struct kern_traits *kern_get_traits(uint32_t t);

/* Scalar reference traits (always available; tests compare against them). */
ICA_API const struct kern_traits *kern_get_traits_ref(uint32_t t);

/* fp16 / bf16 scalar conversions with ggml's rounding (round to nearest
 * even; bf16 keeps NaN quiet). */
ICA_API float kern_f16_to_f32(uint16_t h);
ICA_API uint16_t kern_f32_to_f16(float f);
ICA_API float kern_bf16_to_f32(uint16_t h);
ICA_API uint16_t kern_f32_to_bf16(float f);

/* Scratch bytes kern_matmul_ref needs for n_tok activation rows of n_cols
 * (0 when the weight's vec_dot type is F32; 0 also for unsupported types or
 * n_cols not a multiple of the vec_dot type's block size). */
ICA_API size_t kern_matmul_scratch_size(uint32_t wtype, int64_t n_cols, int64_t n_tok);

/* y[t*n_rows + r] = vec_dot(row r of w, x_t rounded to the vec_dot type) for
 * t < n_tok, r < n_rows. w holds n_rows rows of n_cols elements of type wtype
 * (rows contiguous, ica_dtype_row_size bytes each); x holds n_tok rows of
 * n_cols floats. Each x_t is quantized once into scratch (at least
 * kern_matmul_scratch_size bytes, 4-byte aligned; may be NULL when that size
 * is 0). Uses the scalar reference kernels. wtype must have traits and n_cols
 * must be a multiple of its block size (checked by the caller). */
ICA_API void kern_matmul_ref(uint32_t wtype, const void *w, int64_t n_rows, int64_t n_cols,
                             const float *x, int64_t n_tok, float *y, void *scratch);

/* SIMD level in use (0 scalar, 1 AVX2+FMA, 2 AVX-512, 3 NEON): the best this
 * CPU runs, lowered by ICALIGN_SIMD=scalar|avx2|avx512|neon. Code outside
 * kern with its own vector paths follows it so that one switch selects the
 * scalar reference everywhere. */
ICA_API int kern_level_current(void);

/* Summation order of a product. llama.cpp picks it by batch size (one token:
 * vector dots; several: llamafile's sgemm, which adds F32/F16/BF16 products
 * in another order); the forward pass may force one so that a token's result
 * does not depend on what else shares its batch. */
enum kern_order { KERN_ORDER_AUTO, KERN_ORDER_SINGLE, KERN_ORDER_BATCH };

/* kern_matmul_ref with an explicit order. */
ICA_API void kern_matmul_ref_ex(uint32_t wtype, const void *w, int64_t n_rows, int64_t n_cols,
                                const float *x, int64_t n_tok, float *y, void *scratch,
                                enum kern_order order);
/* Whether SINGLE and BATCH give different bits for this weight type and shape. */
ICA_API bool kern_matmul_orders_differ(uint32_t wtype, int64_t n_rows, int64_t n_cols);
/* kern_matmul with an explicit order (fast path when the order does not matter). */
struct pool;
ICA_API void kern_matmul_ex(struct pool *pool, uint32_t wtype, const void *w, int64_t n_rows,
                            int64_t n_cols, const float *x, int64_t n_tok, float *y, void *scratch,
                            enum kern_order order);

/* The matrix product the forward pass uses: same contract and bit-identical
 * results as kern_matmul_ref for every thread count, spread over the
 * threads of pool (NULL = the calling thread only) with the fastest kernels
 * of this CPU. scratch must hold kern_matmul_scratch_size bytes. */
struct pool;
ICA_API void kern_matmul(struct pool *pool, uint32_t wtype, const void *w, int64_t n_rows,
                         int64_t n_cols, const float *x, int64_t n_tok, float *y, void *scratch);

/* Weight repacking (llama.cpp's CPU_REPACK idea): at this CPU's SIMD level
 * some types (Q4_0, Q4_K on x86) have a layout of their own, tiles of 8 or
 * 16 interleaved rows with the same bytes per weight, that products read
 * without per-call unpacking, for one token as for a prompt. Results are
 * unchanged (bit-identical to kern_matmul).
 *
 * kern_repack_size: bytes of the repacked copy of a n_rows x n_cols matrix,
 * 0 when the type has no repacked layout at this level (then pass rp = NULL).
 * Only whole tiles are repacked; the last n_rows % tile rows are read from w.
 * kern_repack writes it to dst (64-byte aligned). kern_matmul_rp is
 * kern_matmul reading the repacked rows from rp (NULL: kern_matmul); w must
 * stay readable for the rows outside the tiles. */
ICA_API size_t kern_repack_size(uint32_t wtype, int64_t n_rows, int64_t n_cols);
ICA_API void kern_repack(uint32_t wtype, const void *w, int64_t n_rows, int64_t n_cols, void *dst);
ICA_API void kern_matmul_rp(struct pool *pool, uint32_t wtype, const void *w, const void *rp,
                            int64_t n_rows, int64_t n_cols, const float *x, int64_t n_tok, float *y,
                            void *scratch);

/* Several products of the same activations x (n_tok x n_cols) with matrices
 * of one type (the q, k and v projections; ffn gate and up): the
 * activations are rounded once and the rows of all the matrices are shared
 * out in one pass over the threads. Each y[i] gets exactly what
 * kern_matmul_rp would give it. At most KERN_MULTI_MAX matrices. */
#define KERN_MULTI_MAX 4
struct kern_mm {
    const void *w, *rp; /* as kern_matmul_rp */
    int64_t n_rows;
    float *y;
};
ICA_API void kern_matmul_multi(struct pool *pool, uint32_t wtype, const struct kern_mm *mm, int n,
                               int64_t n_cols, const float *x, int64_t n_tok, void *scratch);

#endif
