/* Private to the kern module: SIMD levels, their kernel tables and the
 * multi-token dot products the tiled matmul is built from.
 *
 * Every SIMD kernel computes exactly what its scalar reference in ref.c
 * computes: the same integer sums per lane, the same float lanes, the same
 * fused multiply-adds and the same reduction tree, so results are
 * bit-identical at every level (tests/unit/test_kern_simd.c checks it). */
#ifndef ICALIGN_KERN_SIMD_H
#define ICALIGN_KERN_SIMD_H

#include "icalign/kern.h"

#include <stddef.h>
#include <stdint.h>

enum kern_level {
    KERN_LEVEL_SCALAR = 0,
    KERN_LEVEL_AVX2 = 1,   /* AVX2 + FMA + F16C */
    KERN_LEVEL_AVX512 = 2, /* AVX-512 F/BW/DQ/VL/VNNI (+BF16 where present) */
    KERN_LEVEL_NEON = 3,   /* aarch64 Advanced SIMD */
    KERN_LEVEL_COUNT
};

/* out[t * ostride] = dot(x, y + t * ystride) for t < nt (1 <= nt <= 4): one
 * weight row against up to four activation rows, the weight unpacked once.
 * Each output is bit-identical to vec_dot(n, x, y_t). */
typedef void (*kern_dot4_fn)(int64_t n, const void *x, const void *y, size_t ystride, int nt,
                             float *out, int64_t ostride);

/* out[t * ostride + r] = dot(x + r * xstride, y + t * ystride) for r < 4 and
 * t < nt (1 <= nt <= 4): a tile of four weight rows by up to four tokens,
 * each output bit-identical to vec_dot. */
typedef void (*kern_tile4_fn)(int64_t n, const void *x, size_t xstride, const void *y,
                              size_t ystride, int nt, float *out, int64_t ostride);

/* Packed tiles of R = pack_rows weight rows for prompt batches: pack8
 * rewrites rows x, x + xstride, ... (n elements each) into buf
 * (pack_bytes(n) bytes) in a lane-per-row layout; gemm8 then computes
 * out[t * ostride + r] (r < R,
 * t < nt) from the packed tile, bit-identical to vec_dot. */
typedef void (*kern_pack8_fn)(int64_t n, const void *x, size_t xstride, void *buf);
typedef void (*kern_gemm8_fn)(int64_t n, const void *buf, const void *y, size_t ystride, int64_t nt,
                              float *out, int64_t ostride);
typedef size_t (*kern_pack_bytes_fn)(int64_t n);
/* A repacked tile times nt tokens (see rp_gemm below); aux: rp_aux's values
 * for these nt tokens (stride n / block per token) or NULL. */
typedef void (*kern_rp_gemm_fn)(int64_t n, const void *tile, const void *y, size_t ystride,
                                int64_t nt, const int32_t *aux, float *out, int64_t ostride);

/* The kernels of one level for one weight type. */
struct kern_ops {
    struct kern_traits tr;    /* to_float, from_float, vec_dot as in kern_traits */
    kern_from_float_fn quant; /* from_float of tr.vec_dot_type (activation rounding) */
    kern_dot4_fn dot4;        /* NULL: loop over vec_dot */
    kern_tile4_fn tile4;      /* 4 rows x 4 tokens, NULL: dot4 / vec_dot */
    kern_pack8_fn pack8;      /* packed 8-row tiles (NULL: none) */
    kern_gemm8_fn gemm8;
    kern_pack_bytes_fn pack_bytes;
    int pack_rows;         /* rows per packed tile (8 or 16) */
    kern_dot4_fn sgemm4;   /* F32/F16/BF16: llamafile sgemm order (n_tok > 1), NULL: scalar */
    kern_tile4_fn sgemm44; /* the same order, 4 rows x up to 4 tokens (NULL: sgemm4) */
    /* Weights repacked once (kern_repack, at model load): tiles of rp_rows
     * rows with row r in int32 lane r and the quants still packed (the same
     * bytes per weight as the source), rp_bytes(n) bytes a tile. rp_pack
     * writes one tile from rp_rows source rows; rp_gemm computes
     * out[t * ostride + r] for r < rp_rows, t < nt (nt >= 1) from a tile,
     * bit-identical to vec_dot. NULL: no repacked layout at this level. */
    kern_pack8_fn rp_pack;
    kern_rp_gemm_fn rp_gemm;
    /* per-token, per-block integers the tiles of a product share (Q4_0: -8 *
     * the block's code sum), written to aux[t * nb + b] once per token block;
     * rp_gemm takes aux = NULL too (it then computes them itself) */
    void (*rp_aux)(int64_t n, const void *y, size_t ystride, int64_t nt, int32_t *aux);
    kern_pack_bytes_fn rp_bytes;
    int rp_rows;
};

/* The level in use: the best this CPU runs, lowered by ICALIGN_SIMD
 * (scalar|avx2|avx512|neon) when set. Resolved once, thread-safe. */
int kern_level_current(void);
/* Best level this CPU supports (ignores ICALIGN_SIMD). */
int kern_level_best(void);
const char *kern_level_name(int level);
/* Kernels of type t at a level (a level this CPU lacks gives NULL; so does
 * a type without kernels). Types or kernels a level does not implement fall
 * back to the reference ones. */
const struct kern_ops *kern_ops_get(int level, uint32_t t);
/* kern_traits view of kern_ops_get(kern_level_current(), t). */
const struct kern_traits *kern_get_traits_simd(uint32_t t);

/* y = w x like kern_matmul, at an explicit level (tests). */
void kern_matmul_level(int level, struct pool *pool, uint32_t wtype, const void *w, int64_t n_rows,
                       int64_t n_cols, const float *x, int64_t n_tok, float *y, void *scratch);

/* Repacking and products over repacked weights at an explicit level (tests):
 * kern_repack_size / kern_repack / kern_matmul_rp take kern_level_current(). */
size_t kern_repack_size_level(int level, uint32_t wtype, int64_t n_rows, int64_t n_cols);
void kern_repack_level(int level, uint32_t wtype, const void *w, int64_t n_rows, int64_t n_cols,
                       void *dst);
void kern_matmul_rp_level(int level, struct pool *pool, uint32_t wtype, const void *w,
                          const void *rp, int64_t n_rows, int64_t n_cols, const float *x,
                          int64_t n_tok, float *y, void *scratch);

/* x86: whether the CPU has AVX512-BF16 (VDPBF16PS). */
int kern_x86_has_bf16(void);

/* Per-level tables filled by the level's file: ops[t] fields left NULL fall
 * back to the reference. */
void kern_fill_avx2(struct kern_ops *ops);
void kern_fill_avx512(struct kern_ops *ops);
void kern_fill_neon(struct kern_ops *ops);

#endif
