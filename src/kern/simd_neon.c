/* aarch64 NEON kernels (base Advanced SIMD, no dot-product extension): the
 * activation quantizers and the dots of every weight type, each with its
 * reference's lanes and reduction tree (see ref.c and simd_x86.h).
 *
 *  - The reference's 8 float lanes (hsum_float_8 types) are two
 *    float32x4_t, lo = lanes 0..3 and hi = lanes 4..7; its 16 lanes (plain
 *    types) are four. Integer lane sums are exact, so any order of integer
 *    adds that gives the same int32 per float lane gives the same bits.
 *  - Fused multiply-adds are spelled vfmaq / fmaf exactly where the
 *    reference fuses; everything else is a separate multiply and add.
 *    arm_neon.h writes vmulq_f32 / vaddq_f32 as plain C operators, which a
 *    compiler could contract into FMLA (gcc does under -ffp-contract=fast,
 *    the default outside ISO C modes; clang contracts within an expression),
 *    so contraction is switched off for this file below.
 *
 * Built only for aarch64 (make test-neon cross-compiles and runs the kernel
 * tests under qemu-user). */
#if defined(__aarch64__)
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include "kern_impl.h"
#include "simd.h"

#include <arm_neon.h>
#include <math.h>

/* ------------------------------------------------------------ helpers */

static inline float h2f(uint16_t h) {
    return kern_h2f(h);
}

/* int32 lanes 0..3 = sums of the products of bytes 4l..4l+3 of a, b (16 bytes). */
static inline int32x4_t dot4x4(int8x16_t a, int8x16_t b) {
    const int32x4_t lo = vpaddlq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    const int32x4_t hi = vpaddlq_s16(vmull_high_s8(a, b));
    return vpaddq_s32(lo, hi);
}

/* acc + the 16 products of a and b, spread over 4 int32 lanes (any order). */
static inline int32x4_t dot16_acc(int32x4_t acc, int8x16_t a, int8x16_t b) {
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
}

/* hsum_float_8 on lanes lo = 0..3, hi = 4..7: r_i = v[i+4] + v[i], then
 * (r0 + r2) + (r1 + r3). */
static inline float hsum8(float32x4_t lo, float32x4_t hi) {
    const float32x4_t r = vaddq_f32(hi, lo);
    const float32x2_t s = vadd_f32(vget_low_f32(r), vget_high_f32(r));
    return vget_lane_f32(s, 0) + vget_lane_f32(s, 1);
}

/* reduce16 of ref.c (halve 16 -> 8 -> 4 -> 2 -> 1) on lanes v[q] = 4q..4q+3. */
static inline float reduce16(const float32x4_t v[4]) {
    const float32x4_t a0 = vaddq_f32(v[2], v[0]), a1 = vaddq_f32(v[3], v[1]);
    return hsum8(a0, a1);
}

/* 32 nibbles of a 4-bit block: *lo = low nibbles (elements 0..15), *hi =
 * high nibbles (16..31), 0..15 each. */
static inline void nibbles(const uint8_t *qs, int8x16_t *lo, int8x16_t *hi) {
    const uint8x16_t v = vld1q_u8(qs);
    *lo = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f)));
    *hi = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
}

/* 0x10 in byte j where bit j of the 16 bits is set (the 5th bit of Q5). */
static inline uint8x16_t bits16_x10(uint32_t bits) {
    static const uint8_t m[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t v =
        vcombine_u8(vdup_n_u8((uint8_t)(bits & 0xff)), vdup_n_u8((uint8_t)((bits >> 8) & 0xff)));
    return vandq_u8(vtstq_u8(v, vld1q_u8(m)), vdupq_n_u8(0x10));
}

/* The 32 quants of a Q5 block, element order, unsigned 0..31. */
static inline void q5_bytes(const uint8_t *qs, const uint8_t *qh4, uint8x16_t *lo, uint8x16_t *hi) {
    uint32_t qh;
    memcpy(&qh, qh4, 4);
    const uint8x16_t v = vld1q_u8(qs);
    *lo = vorrq_u8(vandq_u8(v, vdupq_n_u8(0x0f)), bits16_x10(qh));
    *hi = vorrq_u8(vshrq_n_u8(v, 4), bits16_x10(qh >> 16));
}

/* ------------------------------------------------- activation rounding */

static inline float amax32(const float *x, float32x4_t v[8]) {
    float32x4_t m = vdupq_n_f32(0);
    for (int j = 0; j < 8; j++) {
        v[j] = vld1q_f32(x + 4 * j);
        m = vmaxq_f32(m, vabsq_f32(v[j]));
    }
    return vmaxvq_f32(m);
}

/* 32 floats times id, rounded to nearest even, saturated to int8. */
static inline void round_pack32(const float32x4_t v[8], float id, int8x16_t *lo, int8x16_t *hi) {
    int16x8_t h[4];
    for (int j = 0; j < 8; j += 2) {
        const int32x4_t a = vcvtnq_s32_f32(vmulq_n_f32(v[j], id));
        const int32x4_t b = vcvtnq_s32_f32(vmulq_n_f32(v[j + 1], id));
        h[j / 2] = vcombine_s16(vqmovn_s32(a), vqmovn_s32(b));
    }
    *lo = vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1]));
    *hi = vcombine_s8(vqmovn_s16(h[2]), vqmovn_s16(h[3]));
}

static void quant_q8_0_neon(const float *x, void *vy, int64_t k) {
    blk_q8_0 *y = vy;
    for (int64_t i = 0; i < k / QK32; i++, x += QK32) {
        float32x4_t v[8];
        const float amax = amax32(x, v);
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[i].d = kern_f32_to_f16(d);
        int8x16_t lo, hi;
        round_pack32(v, id, &lo, &hi);
        vst1q_s8(y[i].qs, lo);
        vst1q_s8(y[i].qs + 16, hi);
    }
}

static void quant_q8_1_neon(const float *x, void *vy, int64_t k) {
    blk_q8_1 *y = vy;
    for (int64_t i = 0; i < k / QK32; i++, x += QK32) {
        float32x4_t v[8];
        const float amax = amax32(x, v);
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[i].d = kern_f32_to_f16(d);
        int8x16_t lo, hi;
        round_pack32(v, id, &lo, &hi);
        vst1q_s8(y[i].qs, lo);
        vst1q_s8(y[i].qs + 16, hi);
        const int sum = vaddlvq_s8(lo) + vaddlvq_s8(hi);
        y[i].s = kern_f32_to_f16(d * (float)sum);
    }
}

static void quant_q8_K_neon(const float *x, void *vy, int64_t k) {
    blk_q8_K *y = vy;
    for (int64_t i = 0; i < k / QKK; i++, x += QKK) {
        float32x4_t m = vdupq_n_f32(0);
        for (int j = 0; j < QKK; j += 4)
            m = vmaxq_f32(m, vabsq_f32(vld1q_f32(x + j)));
        const float amax = vmaxvq_f32(m);
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float max = 0;
        for (int j = 0; j < QKK; j++)
            if (fabsf(x[j]) == amax) { /* the first of largest |x|, with its sign */
                max = x[j];
                break;
            }
        const float iscale = -127.f / max;
        for (int j = 0; j < QKK; j += 32) {
            float32x4_t v[8];
            for (int q = 0; q < 8; q++)
                v[q] = vld1q_f32(x + j + 4 * q);
            int8x16_t lo, hi;
            round_pack32(v, iscale, &lo, &hi);
            lo = vminq_s8(lo, vdupq_n_s8(127));
            hi = vminq_s8(hi, vdupq_n_s8(127));
            vst1q_s8(y[i].qs + j, lo);
            vst1q_s8(y[i].qs + j + 16, hi);
            y[i].bsums[j / 16] = vaddlvq_s8(lo);
            y[i].bsums[j / 16 + 1] = vaddlvq_s8(hi);
        }
        y[i].d = 1 / iscale;
    }
}

/* FCVTN rounds to nearest even (the default FPCR mode), keeps subnormal
 * halves, overflows to inf and keeps the top NaN payload bits, quiet: the
 * reference's kern_f32_to_f16. */
static void quant_f16_neon(const float *x, void *vy, int64_t k) {
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
        const float16x4_t a = vcvt_f16_f32(vld1q_f32(x + i));
        const float16x4_t b = vcvt_f16_f32(vld1q_f32(x + i + 4));
        vst1q_u16(y + i, vcombine_u16(vreinterpret_u16_f16(a), vreinterpret_u16_f16(b)));
    }
    for (; i < k; i++)
        y[i] = kern_f32_to_f16(x[i]);
}

/* GGML_FP32_TO_BF16: (u + 0x7fff + ((u >> 16) & 1)) >> 16, NaN -> quiet. */
static inline uint16x4_t bf16_round4(uint32x4_t u) {
    const uint32x4_t nan =
        vcgtq_u32(vandq_u32(u, vdupq_n_u32(0x7fffffff)), vdupq_n_u32(0x7f800000));
    const uint32x4_t odd = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
    const uint32x4_t r = vaddq_u32(u, vaddq_u32(vdupq_n_u32(0x7fff), odd));
    const uint32x4_t q = vorrq_u32(u, vdupq_n_u32(64u << 16));
    return vshrn_n_u32(vbslq_u32(nan, q, r), 16);
}

static void quant_bf16_neon(const float *x, void *vy, int64_t k) {
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
        const uint16x4_t a = bf16_round4(vreinterpretq_u32_f32(vld1q_f32(x + i)));
        const uint16x4_t b = bf16_round4(vreinterpretq_u32_f32(vld1q_f32(x + i + 4)));
        vst1q_u16(y + i, vcombine_u16(a, b));
    }
    for (; i < k; i++)
        y[i] = kern_f32_to_bf16(x[i]);
}

/* ------------------------------------------------------ 32-block dots */

/* Q8_0 (vec_dot_q8_0_q8_0): 8 lanes, acc = fma(dx*dy, lane, acc), hsum8. */
static void dot_q8_0_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q8_0 *x = vx, *y = vy;
    float32x4_t lo = vdupq_n_f32(0), hi = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / QK32; i++) {
        const int32x4_t l0 = dot4x4(vld1q_s8(x[i].qs), vld1q_s8(y[i].qs));
        const int32x4_t l1 = dot4x4(vld1q_s8(x[i].qs + 16), vld1q_s8(y[i].qs + 16));
        const float d = h2f(x[i].d) * h2f(y[i].d);
        lo = vfmaq_n_f32(lo, vcvtq_f32_s32(l0), d);
        hi = vfmaq_n_f32(hi, vcvtq_f32_s32(l1), d);
    }
    *s = hsum8(lo, hi);
}

static void dot4_q8_0_neon(int64_t n, const void *vx, const void *vy, size_t ys, int nt, float *out,
                           int64_t os) {
    const blk_q8_0 *x = vx;
    const blk_q8_0 *y[4];
    for (int t = 0; t < 4; t++)
        y[t] = (const blk_q8_0 *)((const char *)vy + (size_t)(t < nt ? t : nt - 1) * ys);
    float32x4_t lo[4], hi[4];
    for (int t = 0; t < 4; t++)
        lo[t] = hi[t] = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / QK32; i++) {
        const int8x16_t a = vld1q_s8(x[i].qs), b = vld1q_s8(x[i].qs + 16);
        const float dx = h2f(x[i].d);
        for (int t = 0; t < 4; t++) {
            const int32x4_t l0 = dot4x4(a, vld1q_s8(y[t][i].qs));
            const int32x4_t l1 = dot4x4(b, vld1q_s8(y[t][i].qs + 16));
            const float d = dx * h2f(y[t][i].d);
            lo[t] = vfmaq_n_f32(lo[t], vcvtq_f32_s32(l0), d);
            hi[t] = vfmaq_n_f32(hi[t], vcvtq_f32_s32(l1), d);
        }
    }
    for (int t = 0; t < nt; t++)
        out[t * os] = hsum8(lo[t], hi[t]);
}

/* Q4_0 and IQ4_NL (repacked in llama.cpp): per block the exact integer dot,
 * then acc = fma((float)isum, dx*dy, acc), one float chain per output. */
static inline int32x4_t q4_0_dot(const blk_q4_0 *x, const blk_q8_0 *y) {
    int8x16_t lo, hi;
    nibbles(x->qs, &lo, &hi);
    lo = vsubq_s8(lo, vdupq_n_s8(8));
    hi = vsubq_s8(hi, vdupq_n_s8(8));
    int32x4_t a = dot16_acc(vdupq_n_s32(0), lo, vld1q_s8(y->qs));
    return dot16_acc(a, hi, vld1q_s8(y->qs + 16));
}

static inline int32x4_t iq4_nl_dot(const blk_iq4_nl *x, const blk_q8_0 *y) {
    const int8x16_t tbl = vld1q_s8(kern_iq4nl_values);
    int8x16_t lo, hi;
    nibbles(x->qs, &lo, &hi);
    lo = vqtbl1q_s8(tbl, vreinterpretq_u8_s8(lo));
    hi = vqtbl1q_s8(tbl, vreinterpretq_u8_s8(hi));
    int32x4_t a = dot16_acc(vdupq_n_s32(0), lo, vld1q_s8(y->qs));
    return dot16_acc(a, hi, vld1q_s8(y->qs + 16));
}

/* Blocks 4 at a time: the four integer sums in one vector, the four dx*dy
 * as separate products, then the sequential fused chain. */
#define DOT_CHAIN(name, blk, blockdot)                                                             \
    static void name(int64_t n, float *s, const void *vx, const void *vy) {                        \
        const blk *x = vx;                                                                         \
        const blk_q8_0 *y = vy;                                                                    \
        const int64_t nb = n / QK32;                                                               \
        float acc = 0;                                                                             \
        int64_t i = 0;                                                                             \
        for (; i + 4 <= nb; i += 4) {                                                              \
            const int32x4_t a01 =                                                                  \
                vpaddq_s32(blockdot(&x[i], &y[i]), blockdot(&x[i + 1], &y[i + 1]));                \
            const int32x4_t a23 =                                                                  \
                vpaddq_s32(blockdot(&x[i + 2], &y[i + 2]), blockdot(&x[i + 3], &y[i + 3]));        \
            float si[4];                                                                           \
            vst1q_f32(si, vcvtq_f32_s32(vpaddq_s32(a01, a23)));                                    \
            for (int j = 0; j < 4; j++)                                                            \
                acc = fmaf(si[j], h2f(x[i + j].d) * h2f(y[i + j].d), acc);                         \
        }                                                                                          \
        for (; i < nb; i++) {                                                                      \
            const int sumi = vaddvq_s32(blockdot(&x[i], &y[i]));                                   \
            acc = fmaf((float)sumi, h2f(x[i].d) * h2f(y[i].d), acc);                               \
        }                                                                                          \
        *s = acc;                                                                                  \
    }

DOT_CHAIN(dot_q4_0_neon, blk_q4_0, q4_0_dot)
DOT_CHAIN(dot_iq4_nl_neon, blk_iq4_nl, iq4_nl_dot)

/* One Q4_0 row by up to four tokens: lane t of acc is token t's chain. */
static void dot4_q4_0_neon(int64_t n, const void *vx, const void *vy, size_t ys, int nt, float *out,
                           int64_t os) {
    const blk_q4_0 *x = vx;
    const blk_q8_0 *y[4];
    for (int t = 0; t < 4; t++)
        y[t] = (const blk_q8_0 *)((const char *)vy + (size_t)(t < nt ? t : nt - 1) * ys);
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / QK32; i++) {
        int8x16_t lo, hi;
        nibbles(x[i].qs, &lo, &hi);
        lo = vsubq_s8(lo, vdupq_n_s8(8));
        hi = vsubq_s8(hi, vdupq_n_s8(8));
        int32x4_t l[4];
        for (int t = 0; t < 4; t++)
            l[t] = dot16_acc(dot16_acc(vdupq_n_s32(0), lo, vld1q_s8(y[t][i].qs)), hi,
                             vld1q_s8(y[t][i].qs + 16));
        const int32x4_t si = vpaddq_s32(vpaddq_s32(l[0], l[1]), vpaddq_s32(l[2], l[3]));
        const float dyv[4] = {h2f(y[0][i].d), h2f(y[1][i].d), h2f(y[2][i].d), h2f(y[3][i].d)};
        const float32x4_t d = vmulq_n_f32(vld1q_f32(dyv), h2f(x[i].d));
        acc = vfmaq_f32(acc, vcvtq_f32_s32(si), d);
    }
    float r[4];
    vst1q_f32(r, acc);
    for (int t = 0; t < nt; t++)
        out[t * os] = r[t];
}

/* Q4_1 / Q5_1 (vec_dot_q4_1_q8_1 / _q5_1_q8_1, AVX2): 8 lanes of unsigned
 * quants times q8, acc = fma(dx*dy, lane, acc); summs = fma(m, s, summs);
 * result hsum8(acc) + summs. Q5_0: the same lanes with signed quants, no
 * min term. */
static void dot_q4_1_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q4_1 *x = vx;
    const blk_q8_1 *y = vy;
    float32x4_t lo = vdupq_n_f32(0), hi = vdupq_n_f32(0);
    float summs = 0;
    for (int64_t i = 0; i < n / QK32; i++) {
        summs = fmaf(h2f(x[i].m), h2f(y[i].s), summs);
        int8x16_t a, b;
        nibbles(x[i].qs, &a, &b);
        const int32x4_t l0 = dot4x4(a, vld1q_s8(y[i].qs));
        const int32x4_t l1 = dot4x4(b, vld1q_s8(y[i].qs + 16));
        const float d = h2f(x[i].d) * h2f(y[i].d);
        lo = vfmaq_n_f32(lo, vcvtq_f32_s32(l0), d);
        hi = vfmaq_n_f32(hi, vcvtq_f32_s32(l1), d);
    }
    *s = hsum8(lo, hi) + summs;
}

static void dot_q5_1_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q5_1 *x = vx;
    const blk_q8_1 *y = vy;
    float32x4_t lo = vdupq_n_f32(0), hi = vdupq_n_f32(0);
    float summs = 0;
    for (int64_t i = 0; i < n / QK32; i++) {
        summs = fmaf(h2f(x[i].m), h2f(y[i].s), summs);
        uint8x16_t a, b;
        q5_bytes(x[i].qs, x[i].qh, &a, &b);
        const int32x4_t l0 = dot4x4(vreinterpretq_s8_u8(a), vld1q_s8(y[i].qs));
        const int32x4_t l1 = dot4x4(vreinterpretq_s8_u8(b), vld1q_s8(y[i].qs + 16));
        const float d = h2f(x[i].d) * h2f(y[i].d);
        lo = vfmaq_n_f32(lo, vcvtq_f32_s32(l0), d);
        hi = vfmaq_n_f32(hi, vcvtq_f32_s32(l1), d);
    }
    *s = hsum8(lo, hi) + summs;
}

static void dot_q5_0_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q5_0 *x = vx;
    const blk_q8_0 *y = vy;
    float32x4_t lo = vdupq_n_f32(0), hi = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / QK32; i++) {
        uint8x16_t a, b;
        q5_bytes(x[i].qs, x[i].qh, &a, &b);
        const int8x16_t sa = vsubq_s8(vreinterpretq_s8_u8(a), vdupq_n_s8(16));
        const int8x16_t sb = vsubq_s8(vreinterpretq_s8_u8(b), vdupq_n_s8(16));
        const int32x4_t l0 = dot4x4(sa, vld1q_s8(y[i].qs));
        const int32x4_t l1 = dot4x4(sb, vld1q_s8(y[i].qs + 16));
        const float d = h2f(x[i].d) * h2f(y[i].d);
        lo = vfmaq_n_f32(lo, vcvtq_f32_s32(l0), d);
        hi = vfmaq_n_f32(hi, vcvtq_f32_s32(l1), d);
    }
    *s = hsum8(lo, hi);
}

/* ------------------------------------------------------- K-quant dots */

/* The 12 scale bytes of Q4_K / Q5_K as 8 six-bit scales (bytes 0..7) and
 * 8 mins (bytes 8..15). */
static inline void k4_scales16(const uint8_t *s, uint8_t out[16]) {
    uint32_t u[4];
    memcpy(u, s, 12);
    const uint32_t m6 = 0x3f3f3f3fu, m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
    u[3] = ((u[2] >> 4) & m4) | (((u[1] >> 6) & m2) << 4); /* mins 4..7 */
    const uint32_t mins03 = u[1] & m6;
    u[1] = (u[2] & m4) | (((u[0] >> 6) & m2) << 4); /* scales 4..7 */
    u[2] = mins03;
    u[0] &= m6; /* scales 0..3 */
    memcpy(out, u, 16);
}

/* sum_j mn[j] * (bsums[2j] + bsums[2j+1]) for 8 mins (bytes). */
static inline int mins_dot8(const uint8_t *mn8, const int16_t *bsums) {
    const int16x8_t bp = vpaddq_s16(vld1q_s16(bsums), vld1q_s16(bsums + 8));
    const int16x8_t m = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mn8)));
    const int32x4_t p = vmull_s16(vget_low_s16(bp), vget_low_s16(m));
    return vaddvq_s32(vmlal_high_s16(p, bp, m));
}

/* Q4_K (repacked in llama.cpp): exact isum and summs per super-block, then
 * t = d*isum; t = t - dmin*summs; sumf += t in float. */
struct q4k_unp {
    int8x16_t q[16]; /* sub-block j: q[2j] elements 0..15, q[2j+1] 16..31 */
    uint8_t sm[16];  /* scales 0..7, mins 8..15 */
};

static inline void q4k_unpack(const blk_q4_K *b, struct q4k_unp *u) {
    for (int c = 0; c < 4; c++)
        for (int h = 0; h < 2; h++) {
            const uint8x16_t v = vld1q_u8(b->qs + 32 * c + 16 * h);
            u->q[4 * c + h] = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f)));
            u->q[4 * c + 2 + h] = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
        }
    k4_scales16(b->scales, u->sm);
}

static inline float q4k_block(const blk_q4_K *b, const struct q4k_unp *u, const blk_q8_K *y) {
    int32x4_t isum = vdupq_n_s32(0);
    for (int j = 0; j < 8; j++) {
        int32x4_t t = dot16_acc(vdupq_n_s32(0), u->q[2 * j], vld1q_s8(y->qs + 32 * j));
        t = dot16_acc(t, u->q[2 * j + 1], vld1q_s8(y->qs + 32 * j + 16));
        isum = vmlaq_n_s32(isum, t, u->sm[j]);
    }
    const int is = vaddvq_s32(isum);
    const int summs = mins_dot8(u->sm + 8, y->bsums);
    const float d = h2f(b->d) * y->d;
    float t = d * (float)is;
    const float dmin = h2f(b->dmin) * y->d;
    const float m = dmin * (float)summs;
    t = t - m;
    return t;
}

static void dot_q4_K_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q4_K *x = vx;
    const blk_q8_K *y = vy;
    struct q4k_unp u;
    float sumf = 0;
    for (int64_t i = 0; i < n / QKK; i++) {
        q4k_unpack(&x[i], &u);
        sumf += q4k_block(&x[i], &u, &y[i]);
    }
    *s = sumf;
}

static void dot4_q4_K_neon(int64_t n, const void *vx, const void *vy, size_t ys, int nt, float *out,
                           int64_t os) {
    const blk_q4_K *x = vx;
    struct q4k_unp u;
    float sumf[4] = {0, 0, 0, 0};
    for (int64_t i = 0; i < n / QKK; i++) {
        q4k_unpack(&x[i], &u);
        for (int t = 0; t < nt; t++) {
            const blk_q8_K *y = (const blk_q8_K *)((const char *)vy + (size_t)t * ys);
            sumf[t] += q4k_block(&x[i], &u, &y[i]);
        }
    }
    for (int t = 0; t < nt; t++)
        out[t * os] = sumf[t];
}

/* Q2_K (repacked in llama.cpp): as Q4_K, 16 sub-blocks of 16, 4-bit scales
 * and mins. */
static void dot_q2_K_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q2_K *x = vx;
    const blk_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QKK; i++) {
        const blk_q2_K *b = &x[i];
        int32x4_t isum = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {
            const uint8x16_t v0 = vld1q_u8(b->qs + 32 * h);
            const uint8x16_t v1 = vld1q_u8(b->qs + 32 * h + 16);
            for (int j = 0; j < 4; j++) {
                const int8x16_t shift = vdupq_n_s8((int8_t)(-2 * j));
                const uint8x16_t m3 = vdupq_n_u8(3);
                const int8x16_t q0 = vreinterpretq_s8_u8(vandq_u8(vshlq_u8(v0, shift), m3));
                const int8x16_t q1 = vreinterpretq_s8_u8(vandq_u8(vshlq_u8(v1, shift), m3));
                const int e = 128 * h + 32 * j, sb = e / 16;
                const int32x4_t t0 = dot16_acc(vdupq_n_s32(0), q0, vld1q_s8(y[i].qs + e));
                const int32x4_t t1 = dot16_acc(vdupq_n_s32(0), q1, vld1q_s8(y[i].qs + e + 16));
                isum = vmlaq_n_s32(isum, t0, b->scales[sb] & 0x0f);
                isum = vmlaq_n_s32(isum, t1, b->scales[sb + 1] & 0x0f);
            }
        }
        const int is = vaddvq_s32(isum);
        const uint8x16_t sc = vld1q_u8(b->scales);
        const int16x8_t mn0 = vreinterpretq_s16_u16(vmovl_u8(vshr_n_u8(vget_low_u8(sc), 4)));
        const int16x8_t mn1 = vreinterpretq_s16_u16(vmovl_high_u8(vshrq_n_u8(sc, 4)));
        const int16x8_t bs0 = vld1q_s16(y[i].bsums), bs1 = vld1q_s16(y[i].bsums + 8);
        int32x4_t sm = vmull_s16(vget_low_s16(bs0), vget_low_s16(mn0));
        sm = vmlal_high_s16(sm, bs0, mn0);
        sm = vmlal_s16(sm, vget_low_s16(bs1), vget_low_s16(mn1));
        sm = vmlal_high_s16(sm, bs1, mn1);
        const int summs = vaddvq_s32(sm);
        const float d = h2f(b->d) * y[i].d;
        float t = d * (float)is;
        const float dmin = h2f(b->dmin) * y[i].d;
        const float m = dmin * (float)summs;
        t = t - m;
        sumf += t;
    }
    *s = sumf;
}

/* The AVX2 lane kernels (Q3_K, Q5_K, Q6_K, IQ4_XS): int32 lane l (lo = 0..3
 * from elements 0..15 of a 32-element chunk, hi = 4..7 from 16..31) adds
 * sc * (4 products of bytes 4l..4l+3), sc the scale of that half's
 * sub-block. */
static inline void klane_acc(int32x4_t *lo, int32x4_t *hi, int8x16_t qa, int8x16_t qb,
                             const int8_t *y, int sca, int scb) {
    *lo = vmlaq_n_s32(*lo, dot4x4(qa, vld1q_s8(y)), sca);
    *hi = vmlaq_n_s32(*hi, dot4x4(qb, vld1q_s8(y + 16)), scb);
}

/* acc = fma(d, lane, acc) over the 8 lanes. */
static inline void kfma(float32x4_t *alo, float32x4_t *ahi, int32x4_t lo, int32x4_t hi, float d) {
    *alo = vfmaq_n_f32(*alo, vcvtq_f32_s32(lo), d);
    *ahi = vfmaq_n_f32(*ahi, vcvtq_f32_s32(hi), d);
}

/* Q3_K (ggml_vec_dot_q3_K_q8_K, AVX2): signed quants -4..3, 16 six-bit
 * scales (offset 32), acc = fma(y.d * fp16(x.d), lane, acc), hsum8. */
static void dot_q3_K_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q3_K *x = vx;
    const blk_q8_K *y = vy;
    float32x4_t alo = vdupq_n_f32(0), ahi = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / QKK; i++) {
        const blk_q3_K *b = &x[i];
        int sc[16];
        for (int j = 0; j < 16; j++) {
            const int lo = j < 8 ? (b->scales[j] & 0x0f) : (b->scales[j - 8] >> 4);
            const int hi = (b->scales[8 + j % 4] >> (2 * (j / 4))) & 3;
            sc[j] = (lo | (hi << 4)) - 32;
        }
        const uint8x16_t hm0 = vld1q_u8(b->hmask), hm1 = vld1q_u8(b->hmask + 16);
        int32x4_t lo = vdupq_n_s32(0), hi = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {
            const uint8x16_t v0 = vld1q_u8(b->qs + 32 * h);
            const uint8x16_t v1 = vld1q_u8(b->qs + 32 * h + 16);
            for (int j = 0; j < 4; j++) {
                const int c = 4 * h + j;
                const int8x16_t shift = vdupq_n_s8((int8_t)(-2 * j));
                const uint8x16_t m3 = vdupq_n_u8(3);
                const uint8x16_t bit = vdupq_n_u8((uint8_t)(1u << c));
                /* lo - 4 where the hmask bit is clear */
                const uint8x16_t f0 = vbicq_u8(vdupq_n_u8(4), vtstq_u8(hm0, bit));
                const uint8x16_t f1 = vbicq_u8(vdupq_n_u8(4), vtstq_u8(hm1, bit));
                const int8x16_t q0 =
                    vsubq_s8(vreinterpretq_s8_u8(vandq_u8(vshlq_u8(v0, shift), m3)),
                             vreinterpretq_s8_u8(f0));
                const int8x16_t q1 =
                    vsubq_s8(vreinterpretq_s8_u8(vandq_u8(vshlq_u8(v1, shift), m3)),
                             vreinterpretq_s8_u8(f1));
                klane_acc(&lo, &hi, q0, q1, y[i].qs + 32 * c, sc[2 * c], sc[2 * c + 1]);
            }
        }
        kfma(&alo, &ahi, lo, hi, y[i].d * h2f(b->d));
    }
    *s = hsum8(alo, ahi);
}

/* Q5_K (ggml_vec_dot_q5_K_q8_K, AVX2): unsigned quants 0..31, one scale per
 * chunk; summs = fma(-y.d * fp16(x.dmin), mins, summs); hsum8(acc) + summs. */
static void dot_q5_K_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q5_K *x = vx;
    const blk_q8_K *y = vy;
    float32x4_t alo = vdupq_n_f32(0), ahi = vdupq_n_f32(0);
    float summs = 0;
    for (int64_t i = 0; i < n / QKK; i++) {
        const blk_q5_K *b = &x[i];
        uint8_t sm[16];
        k4_scales16(b->scales, sm);
        const float d = y[i].d * h2f(b->d);
        const float dmin = -y[i].d * h2f(b->dmin);
        const int mins = mins_dot8(sm + 8, y[i].bsums);
        summs = fmaf(dmin, (float)mins, summs);
        const uint8x16_t qh0 = vld1q_u8(b->qh), qh1 = vld1q_u8(b->qh + 16);
        int32x4_t lo = vdupq_n_s32(0), hi = vdupq_n_s32(0);
        for (int c = 0; c < 8; c++) {
            const uint8x16_t v0 = vld1q_u8(b->qs + 32 * (c / 2));
            const uint8x16_t v1 = vld1q_u8(b->qs + 32 * (c / 2) + 16);
            const uint8x16_t bit = vdupq_n_u8((uint8_t)(1u << c));
            const uint8x16_t h0 = vandq_u8(vtstq_u8(qh0, bit), vdupq_n_u8(16));
            const uint8x16_t h1 = vandq_u8(vtstq_u8(qh1, bit), vdupq_n_u8(16));
            uint8x16_t l0, l1;
            if (c % 2 == 0) {
                l0 = vandq_u8(v0, vdupq_n_u8(0x0f));
                l1 = vandq_u8(v1, vdupq_n_u8(0x0f));
            } else {
                l0 = vshrq_n_u8(v0, 4);
                l1 = vshrq_n_u8(v1, 4);
            }
            klane_acc(&lo, &hi, vreinterpretq_s8_u8(vorrq_u8(l0, h0)),
                      vreinterpretq_s8_u8(vorrq_u8(l1, h1)), y[i].qs + 32 * c, sm[c], sm[c]);
        }
        kfma(&alo, &ahi, lo, hi, d);
    }
    *s = hsum8(alo, ahi) + summs;
}

/* Q6_K (ggml_vec_dot_q6_K_q8_K, AVX2): unsigned quants 0..63, lane l minus
 * 32 * (sc[2l]*bsums[2l] + sc[2l+1]*bsums[2l+1]), acc = fma(d, lane, acc). */
struct q6k_unp {
    int8x16_t q[16]; /* chunk c: q[2c] elements 0..15, q[2c+1] 16..31 */
};

static inline void q6k_unpack(const blk_q6_K *b, struct q6k_unp *u) {
    const uint8x16_t m4 = vdupq_n_u8(0x0f), m3 = vdupq_n_u8(3);
    for (int nh = 0; nh < 2; nh++)
        for (int h = 0; h < 2; h++) {
            const uint8x16_t q0 = vld1q_u8(b->ql + 64 * nh + 16 * h);
            const uint8x16_t q1 = vld1q_u8(b->ql + 64 * nh + 32 + 16 * h);
            const uint8x16_t hb = vld1q_u8(b->qh + 32 * nh + 16 * h);
            const uint8x16_t h0 = vshlq_n_u8(vandq_u8(hb, m3), 4);
            const uint8x16_t h1 = vshlq_n_u8(vandq_u8(vshrq_n_u8(hb, 2), m3), 4);
            const uint8x16_t h2 = vshlq_n_u8(vandq_u8(vshrq_n_u8(hb, 4), m3), 4);
            const uint8x16_t h3 = vshlq_n_u8(vshrq_n_u8(hb, 6), 4);
            int8x16_t *q = &u->q[8 * nh + h];
            q[0] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q0, m4), h0));
            q[2] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q1, m4), h1));
            q[4] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q0, 4), h2));
            q[6] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q1, 4), h3));
        }
}

static inline void q6k_lanes(const blk_q6_K *b, const struct q6k_unp *u, const blk_q8_K *y,
                             int32x4_t *lo, int32x4_t *hi) {
    int32x4_t l = vdupq_n_s32(0), h = vdupq_n_s32(0);
    for (int c = 0; c < 8; c++)
        klane_acc(&l, &h, u->q[2 * c], u->q[2 * c + 1], y->qs + 32 * c, b->scales[2 * c],
                  b->scales[2 * c + 1]);
    /* lane l: sc[2l]*bsums[2l] + sc[2l+1]*bsums[2l+1] */
    const int8x16_t sc = vld1q_s8(b->scales);
    const int16x8_t s0 = vmovl_s8(vget_low_s8(sc)), s1 = vmovl_high_s8(sc);
    const int16x8_t b0 = vld1q_s16(y->bsums), b1 = vld1q_s16(y->bsums + 8);
    const int32x4_t p0 = vmull_s16(vget_low_s16(s0), vget_low_s16(b0));
    const int32x4_t p1 = vmull_high_s16(s0, b0);
    const int32x4_t p2 = vmull_s16(vget_low_s16(s1), vget_low_s16(b1));
    const int32x4_t p3 = vmull_high_s16(s1, b1);
    *lo = vsubq_s32(l, vshlq_n_s32(vpaddq_s32(p0, p1), 5));
    *hi = vsubq_s32(h, vshlq_n_s32(vpaddq_s32(p2, p3), 5));
}

static void dot_q6_K_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q6_K *x = vx;
    const blk_q8_K *y = vy;
    struct q6k_unp u;
    float32x4_t alo = vdupq_n_f32(0), ahi = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / QKK; i++) {
        q6k_unpack(&x[i], &u);
        int32x4_t lo, hi;
        q6k_lanes(&x[i], &u, &y[i], &lo, &hi);
        kfma(&alo, &ahi, lo, hi, y[i].d * h2f(x[i].d));
    }
    *s = hsum8(alo, ahi);
}

/* IQ4_XS (ggml_vec_dot_iq4_xs_q8_K, AVX2): code book values, one six-bit
 * scale (offset 32) per 32-element chunk, as Q3_K otherwise. */
static void dot_iq4_xs_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_iq4_xs *x = vx;
    const blk_q8_K *y = vy;
    const int8x16_t tbl = vld1q_s8(kern_iq4nl_values);
    float32x4_t alo = vdupq_n_f32(0), ahi = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / QKK; i++) {
        const blk_iq4_xs *b = &x[i];
        int32x4_t lo = vdupq_n_s32(0), hi = vdupq_n_s32(0);
        for (int ib = 0; ib < 8; ib++) {
            const int ls = ((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f) |
                           (((b->scales_h >> (2 * ib)) & 3) << 4);
            int8x16_t qa, qb;
            nibbles(b->qs + 16 * ib, &qa, &qb);
            qa = vqtbl1q_s8(tbl, vreinterpretq_u8_s8(qa));
            qb = vqtbl1q_s8(tbl, vreinterpretq_u8_s8(qb));
            klane_acc(&lo, &hi, qa, qb, y[i].qs + 32 * ib, ls - 32, ls - 32);
        }
        kfma(&alo, &ahi, lo, hi, y[i].d * h2f(b->d));
    }
    *s = hsum8(alo, ahi);
}

/* --------------------------------------------------------- plain dots */

/* 4 accumulators x 16 lanes (4 x float32x4 each), tree acc0+acc2,
 * acc1+acc3, +, then reduce16 (ref.c reduce_4x16). */
static inline float reduce_4x16(float32x4_t acc[4][4]) {
    float32x4_t v[4];
    for (int q = 0; q < 4; q++) {
        const float32x4_t a02 = vaddq_f32(acc[0][q], acc[2][q]);
        const float32x4_t a13 = vaddq_f32(acc[1][q], acc[3][q]);
        v[q] = vaddq_f32(a02, a13);
    }
    return reduce16(v);
}

static inline float32x4_t ld4_f16(const uint16_t *p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

static void dot_f32_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    float32x4_t acc[4][4];
    for (int j = 0; j < 4; j++)
        for (int q = 0; q < 4; q++)
            acc[j][q] = vdupq_n_f32(0);
    const int64_t np = n & ~(int64_t)63;
    for (int64_t i = 0; i < np; i += 64)
        for (int j = 0; j < 4; j++)
            for (int q = 0; q < 4; q++)
                acc[j][q] = vfmaq_f32(acc[j][q], vld1q_f32(x + i + 16 * j + 4 * q),
                                      vld1q_f32(y + i + 16 * j + 4 * q));
    float sumf = reduce_4x16(acc);
    for (int64_t i = np; i < n; i++) { /* unfused, as ref.c */
        const float p = x[i] * y[i];
        sumf = sumf + p;
    }
    *s = sumf;
}

/* F16: the F32 lanes on converted values (exact), reduced result and
 * leftovers summed in double. */
static void dot_f16_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const uint16_t *x = vx, *y = vy;
    float32x4_t acc[4][4];
    for (int j = 0; j < 4; j++)
        for (int q = 0; q < 4; q++)
            acc[j][q] = vdupq_n_f32(0);
    const int64_t np = n & ~(int64_t)63;
    for (int64_t i = 0; i < np; i += 64)
        for (int j = 0; j < 4; j++)
            for (int q = 0; q < 4; q++)
                acc[j][q] = vfmaq_f32(acc[j][q], ld4_f16(x + i + 16 * j + 4 * q),
                                      ld4_f16(y + i + 16 * j + 4 * q));
    double sumf = (double)reduce_4x16(acc);
    for (int64_t i = np; i < n; i++)
        sumf += (double)(h2f(x[i]) * h2f(y[i]));
    *s = (float)sumf;
}

/* BF16 as VDPBF16PS: lane l of a 16-lane accumulator takes the pair 2l,
 * 2l+1 of each 32 elements; the odd product then the even one is added,
 * each add rounded; inputs and sums with a zero exponent are flushed to
 * signed zero (DAZ / FTZ). bf16 x bf16 products are exact in float. */
static inline float32x4_t flush4(uint32x4_t u) {
    const uint32x4_t keep = vtstq_u32(u, vdupq_n_u32(0x7f800000));
    return vreinterpretq_f32_u32(vbslq_u32(keep, u, vandq_u32(u, vdupq_n_u32(0x80000000))));
}

static inline void dpbf16(float32x4_t c[4], const uint16_t *x, const uint16_t *y) {
    for (int g = 0; g < 2; g++) { /* lanes 8g..8g+7: elements 16g..16g+15 */
        const uint16x8x2_t a = vld2q_u16(x + 16 * g), b = vld2q_u16(y + 16 * g);
        for (int h = 0; h < 2; h++) {
            float32x4_t *cc = &c[2 * g + h];
            uint32x4_t xe, xo, ye, yo;
            if (h == 0) {
                xe = vshll_n_u16(vget_low_u16(a.val[0]), 16);
                xo = vshll_n_u16(vget_low_u16(a.val[1]), 16);
                ye = vshll_n_u16(vget_low_u16(b.val[0]), 16);
                yo = vshll_n_u16(vget_low_u16(b.val[1]), 16);
            } else {
                xe = vshll_high_n_u16(a.val[0], 16);
                xo = vshll_high_n_u16(a.val[1], 16);
                ye = vshll_high_n_u16(b.val[0], 16);
                yo = vshll_high_n_u16(b.val[1], 16);
            }
            const float32x4_t odd = vmulq_f32(flush4(xo), flush4(yo));
            const float32x4_t even = vmulq_f32(flush4(xe), flush4(ye));
            *cc = flush4(vreinterpretq_u32_f32(vaddq_f32(*cc, odd)));
            *cc = flush4(vreinterpretq_u32_f32(vaddq_f32(*cc, even)));
        }
    }
}

static void dot_bf16_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const uint16_t *x = vx, *y = vy;
    float32x4_t c0[4], c1[4];
    for (int q = 0; q < 4; q++)
        c0[q] = c1[q] = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        dpbf16(c0, x + i, y + i);
        dpbf16(c1, x + i + 32, y + i + 32);
    }
    double sumf = 0;
    sumf += (double)reduce16(c0);
    sumf += (double)reduce16(c1);
    for (; i < n; i++)
        sumf += (double)(kern_bf16_to_f32(x[i]) * kern_bf16_to_f32(y[i]));
    *s = (float)sumf;
}

/* llamafile sgemm order (several tokens, n % 16 == 0, BF16 n % 32 == 0):
 * one 16-lane accumulator per output, reduce16. */
static void sgemm4_f32_neon(int64_t n, const void *vx, const void *vy, size_t ys, int nt,
                            float *out, int64_t os) {
    const float *x = vx;
    const float *y[4];
    for (int t = 0; t < 4; t++)
        y[t] = (const float *)((const char *)vy + (size_t)(t < nt ? t : nt - 1) * ys);
    float32x4_t acc[4][4];
    for (int t = 0; t < 4; t++)
        for (int q = 0; q < 4; q++)
            acc[t][q] = vdupq_n_f32(0);
    for (int64_t i = 0; i < n; i += 16)
        for (int q = 0; q < 4; q++) {
            const float32x4_t xv = vld1q_f32(x + i + 4 * q);
            for (int t = 0; t < 4; t++)
                acc[t][q] = vfmaq_f32(acc[t][q], xv, vld1q_f32(y[t] + i + 4 * q));
        }
    for (int t = 0; t < nt; t++)
        out[t * os] = reduce16(acc[t]);
}

static void sgemm4_f16_neon(int64_t n, const void *vx, const void *vy, size_t ys, int nt,
                            float *out, int64_t os) {
    const uint16_t *x = vx;
    const uint16_t *y[4];
    for (int t = 0; t < 4; t++)
        y[t] = (const uint16_t *)((const char *)vy + (size_t)(t < nt ? t : nt - 1) * ys);
    float32x4_t acc[4][4];
    for (int t = 0; t < 4; t++)
        for (int q = 0; q < 4; q++)
            acc[t][q] = vdupq_n_f32(0);
    for (int64_t i = 0; i < n; i += 16)
        for (int q = 0; q < 4; q++) {
            const float32x4_t xv = ld4_f16(x + i + 4 * q);
            for (int t = 0; t < 4; t++)
                acc[t][q] = vfmaq_f32(acc[t][q], xv, ld4_f16(y[t] + i + 4 * q));
        }
    for (int t = 0; t < nt; t++)
        out[t * os] = reduce16(acc[t]);
}

static void sgemm4_bf16_neon(int64_t n, const void *vx, const void *vy, size_t ys, int nt,
                             float *out, int64_t os) {
    const uint16_t *x = vx;
    float32x4_t acc[4][4];
    for (int t = 0; t < 4; t++)
        for (int q = 0; q < 4; q++)
            acc[t][q] = vdupq_n_f32(0);
    for (int t = 0; t < nt; t++) {
        const uint16_t *y = (const uint16_t *)((const char *)vy + (size_t)t * ys);
        for (int64_t i = 0; i < n; i += 32)
            dpbf16(acc[t], x + i, y + i);
        out[t * os] = reduce16(acc[t]);
    }
}

/* ------------------------------------------------------------- table */

void kern_fill_neon(struct kern_ops *ops) {
    ops[ICA_F16].tr.from_float = quant_f16_neon;
    ops[ICA_BF16].tr.from_float = quant_bf16_neon;
    ops[ICA_Q8_0].tr.from_float = quant_q8_0_neon;
    ops[ICA_Q8_1].tr.from_float = quant_q8_1_neon;
    ops[ICA_Q8_K].tr.from_float = quant_q8_K_neon;

    ops[ICA_F32].tr.vec_dot = dot_f32_neon;
    ops[ICA_F16].tr.vec_dot = dot_f16_neon;
    ops[ICA_BF16].tr.vec_dot = dot_bf16_neon;
    ops[ICA_F32].sgemm4 = sgemm4_f32_neon;
    ops[ICA_F16].sgemm4 = sgemm4_f16_neon;
    ops[ICA_BF16].sgemm4 = sgemm4_bf16_neon;
    ops[ICA_Q8_0].tr.vec_dot = dot_q8_0_neon;
    ops[ICA_Q8_0].dot4 = dot4_q8_0_neon;
    ops[ICA_Q4_0].tr.vec_dot = dot_q4_0_neon;
    ops[ICA_Q4_0].dot4 = dot4_q4_0_neon;
    ops[ICA_Q4_1].tr.vec_dot = dot_q4_1_neon;
    ops[ICA_Q5_0].tr.vec_dot = dot_q5_0_neon;
    ops[ICA_Q5_1].tr.vec_dot = dot_q5_1_neon;
    ops[ICA_IQ4_NL].tr.vec_dot = dot_iq4_nl_neon;
    ops[ICA_Q2_K].tr.vec_dot = dot_q2_K_neon;
    ops[ICA_Q3_K].tr.vec_dot = dot_q3_K_neon;
    ops[ICA_Q4_K].tr.vec_dot = dot_q4_K_neon;
    ops[ICA_Q4_K].dot4 = dot4_q4_K_neon;
    ops[ICA_Q5_K].tr.vec_dot = dot_q5_K_neon;
    ops[ICA_Q6_K].tr.vec_dot = dot_q6_K_neon;
    ops[ICA_IQ4_XS].tr.vec_dot = dot_iq4_xs_neon;
}
#else
typedef int kern_simd_neon_unused;
#endif
