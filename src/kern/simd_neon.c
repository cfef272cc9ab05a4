/* aarch64 NEON kernels: the activation quantizers and the dots of every
 * weight type, each with its reference's lanes and reduction tree (see
 * ref.c and simd_x86.h). The integer dots (simd_neon_int.h) are built twice,
 * with base Advanced SIMD byte products and with SDOT (ARMv8.2 dot product,
 * picked at run time where Linux reports it); both give the same bits.
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
 * tests under qemu-user, with SDOT, without it, and scalar). */
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
#include <stdlib.h>
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif
#endif

/* ------------------------------------------------------------ helpers */

/* fp16 -> float by FCVTL: exact, as kern_h2f (only a signalling NaN would
 * come back quiet). */
static inline float h2f(uint16_t h) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
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

/* --------------------------------------------------- weight unpackers */

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

/* acc = fma(d, lane, acc) over the 8 lanes. */
static inline void kfma(float32x4_t *alo, float32x4_t *ahi, int32x4_t lo, int32x4_t hi, float d) {
    *alo = vfmaq_n_f32(*alo, vcvtq_f32_s32(lo), d);
    *ahi = vfmaq_n_f32(*ahi, vcvtq_f32_s32(hi), d);
}

/* Q2_K super-block: 16 sub-blocks of 16 quants 0..3, 4-bit scales and mins. */
struct q2k_unp {
    int8x16_t q[16];
    int sc[16];
    int16x8_t mn[2];
};

static inline void q2k_unpack(const blk_q2_K *b, struct q2k_unp *u) {
    const uint8x16_t m3 = vdupq_n_u8(3);
    for (int h = 0; h < 2; h++) {
        const uint8x16_t v0 = vld1q_u8(b->qs + 32 * h);
        const uint8x16_t v1 = vld1q_u8(b->qs + 32 * h + 16);
        for (int j = 0; j < 4; j++) {
            const int8x16_t shift = vdupq_n_s8((int8_t)(-2 * j));
            u->q[8 * h + 2 * j] = vreinterpretq_s8_u8(vandq_u8(vshlq_u8(v0, shift), m3));
            u->q[8 * h + 2 * j + 1] = vreinterpretq_s8_u8(vandq_u8(vshlq_u8(v1, shift), m3));
        }
    }
    for (int j = 0; j < 16; j++)
        u->sc[j] = b->scales[j] & 0x0f;
    const uint8x16_t sc = vld1q_u8(b->scales);
    u->mn[0] = vreinterpretq_s16_u16(vmovl_u8(vshr_n_u8(vget_low_u8(sc), 4)));
    u->mn[1] = vreinterpretq_s16_u16(vmovl_high_u8(vshrq_n_u8(sc, 4)));
}

/* sum_b bsums[b] * mn[b] over the 16 sub-blocks of Q2_K. */
static inline int q2k_summs(const struct q2k_unp *u, const int16_t *bsums) {
    const int16x8_t bs0 = vld1q_s16(bsums), bs1 = vld1q_s16(bsums + 8);
    int32x4_t sm = vmull_s16(vget_low_s16(bs0), vget_low_s16(u->mn[0]));
    sm = vmlal_high_s16(sm, bs0, u->mn[0]);
    sm = vmlal_s16(sm, vget_low_s16(bs1), vget_low_s16(u->mn[1]));
    sm = vmlal_high_s16(sm, bs1, u->mn[1]);
    return vaddvq_s32(sm);
}

/* A super-block of the AVX2 lane kernels (Q3_K, Q5_K, Q6_K, IQ4_XS): the
 * 32-element chunk c as q[2c] (elements 0..15, int32 lanes 0..3) and
 * q[2c+1] (16..31, lanes 4..7), the scale of each half in sc[2c + h], and
 * Q5_K's mins. */
struct klane_unp {
    int8x16_t q[16];
    int sc[16];
    uint8_t mn[8];
};

/* Q3_K: signed quants -4..3, 16 six-bit scales (offset 32). */
static inline void q3k_unpack(const blk_q3_K *b, struct klane_unp *u) {
    for (int j = 0; j < 16; j++) {
        const int lo = j < 8 ? (b->scales[j] & 0x0f) : (b->scales[j - 8] >> 4);
        const int hi = (b->scales[8 + j % 4] >> (2 * (j / 4))) & 3;
        u->sc[j] = (lo | (hi << 4)) - 32;
    }
    const uint8x16_t hm0 = vld1q_u8(b->hmask), hm1 = vld1q_u8(b->hmask + 16);
    const uint8x16_t m3 = vdupq_n_u8(3), four = vdupq_n_u8(4);
    for (int h = 0; h < 2; h++) {
        const uint8x16_t v0 = vld1q_u8(b->qs + 32 * h);
        const uint8x16_t v1 = vld1q_u8(b->qs + 32 * h + 16);
        for (int j = 0; j < 4; j++) {
            const int c = 4 * h + j;
            const int8x16_t shift = vdupq_n_s8((int8_t)(-2 * j));
            const uint8x16_t bit = vdupq_n_u8((uint8_t)(1u << c));
            /* lo - 4 where the hmask bit is clear */
            const uint8x16_t f0 = vbicq_u8(four, vtstq_u8(hm0, bit));
            const uint8x16_t f1 = vbicq_u8(four, vtstq_u8(hm1, bit));
            u->q[2 * c] = vreinterpretq_s8_u8(vsubq_u8(vandq_u8(vshlq_u8(v0, shift), m3), f0));
            u->q[2 * c + 1] = vreinterpretq_s8_u8(vsubq_u8(vandq_u8(vshlq_u8(v1, shift), m3), f1));
        }
    }
}

/* Q5_K: unsigned quants 0..31, one six-bit scale per chunk, mins. */
static inline void q5k_unpack(const blk_q5_K *b, struct klane_unp *u) {
    uint8_t sm[16];
    k4_scales16(b->scales, sm);
    memcpy(u->mn, sm + 8, 8);
    const uint8x16_t qh0 = vld1q_u8(b->qh), qh1 = vld1q_u8(b->qh + 16);
    const uint8x16_t m4 = vdupq_n_u8(0x0f), b16 = vdupq_n_u8(16);
    for (int c = 0; c < 8; c++) {
        const uint8x16_t v0 = vld1q_u8(b->qs + 32 * (c / 2));
        const uint8x16_t v1 = vld1q_u8(b->qs + 32 * (c / 2) + 16);
        const uint8x16_t bit = vdupq_n_u8((uint8_t)(1u << c));
        const uint8x16_t h0 = vandq_u8(vtstq_u8(qh0, bit), b16);
        const uint8x16_t h1 = vandq_u8(vtstq_u8(qh1, bit), b16);
        const uint8x16_t l0 = c % 2 == 0 ? vandq_u8(v0, m4) : vshrq_n_u8(v0, 4);
        const uint8x16_t l1 = c % 2 == 0 ? vandq_u8(v1, m4) : vshrq_n_u8(v1, 4);
        u->q[2 * c] = vreinterpretq_s8_u8(vorrq_u8(l0, h0));
        u->q[2 * c + 1] = vreinterpretq_s8_u8(vorrq_u8(l1, h1));
        u->sc[2 * c] = u->sc[2 * c + 1] = sm[c];
    }
}

/* Q6_K: the UNSIGNED 6-bit quants 0..63 (the offset 32 goes through the
 * bsums, q6k_offset), 16 int8 scales. */
static inline void q6k_unpack(const blk_q6_K *b, struct klane_unp *u) {
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
    for (int j = 0; j < 16; j++)
        u->sc[j] = b->scales[j];
}

/* Q6_K's lane l minus 32 * (sc[2l]*bsums[2l] + sc[2l+1]*bsums[2l+1]). */
static inline void q6k_offset(const blk_q6_K *b, const blk_q8_K *y, int32x4_t *lo, int32x4_t *hi) {
    const int8x16_t sc = vld1q_s8(b->scales);
    const int16x8_t s0 = vmovl_s8(vget_low_s8(sc)), s1 = vmovl_high_s8(sc);
    const int16x8_t b0 = vld1q_s16(y->bsums), b1 = vld1q_s16(y->bsums + 8);
    const int32x4_t p0 = vmull_s16(vget_low_s16(s0), vget_low_s16(b0));
    const int32x4_t p1 = vmull_high_s16(s0, b0);
    const int32x4_t p2 = vmull_s16(vget_low_s16(s1), vget_low_s16(b1));
    const int32x4_t p3 = vmull_high_s16(s1, b1);
    *lo = vsubq_s32(*lo, vshlq_n_s32(vpaddq_s32(p0, p1), 5));
    *hi = vsubq_s32(*hi, vshlq_n_s32(vpaddq_s32(p2, p3), 5));
}

/* IQ4_XS: code book values, one six-bit scale (offset 32) per chunk. */
static inline void iq4xs_unpack(const blk_iq4_xs *b, struct klane_unp *u) {
    const int8x16_t tbl = vld1q_s8(kern_iq4nl_values);
    for (int ib = 0; ib < 8; ib++) {
        const int ls = ((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f) |
                       (((b->scales_h >> (2 * ib)) & 3) << 4);
        int8x16_t qa, qb;
        nibbles(b->qs + 16 * ib, &qa, &qb);
        u->q[2 * ib] = vqtbl1q_s8(tbl, vreinterpretq_u8_s8(qa));
        u->q[2 * ib + 1] = vqtbl1q_s8(tbl, vreinterpretq_u8_s8(qb));
        u->sc[2 * ib] = u->sc[2 * ib + 1] = ls - 32;
    }
}

/* 32-blocks: the 32 quants in element order, lo = 0..15, hi = 16..31. */
static inline void q4_0_unpack(const blk_q4_0 *b, int8x16_t *lo, int8x16_t *hi) {
    nibbles(b->qs, lo, hi);
    *lo = vsubq_s8(*lo, vdupq_n_s8(8));
    *hi = vsubq_s8(*hi, vdupq_n_s8(8));
}

static inline void iq4_nl_unpack(const blk_iq4_nl *b, int8x16_t *lo, int8x16_t *hi) {
    const int8x16_t tbl = vld1q_s8(kern_iq4nl_values);
    nibbles(b->qs, lo, hi);
    *lo = vqtbl1q_s8(tbl, vreinterpretq_u8_s8(*lo));
    *hi = vqtbl1q_s8(tbl, vreinterpretq_u8_s8(*hi));
}

static inline void q4_1_unpack(const blk_q4_1 *b, int8x16_t *lo, int8x16_t *hi) {
    nibbles(b->qs, lo, hi);
}

static inline void q5_1_unpack(const blk_q5_1 *b, int8x16_t *lo, int8x16_t *hi) {
    uint8x16_t a, c;
    q5_bytes(b->qs, b->qh, &a, &c);
    *lo = vreinterpretq_s8_u8(a);
    *hi = vreinterpretq_s8_u8(c);
}

static inline void q5_0_unpack(const blk_q5_0 *b, int8x16_t *lo, int8x16_t *hi) {
    uint8x16_t a, c;
    q5_bytes(b->qs, b->qh, &a, &c);
    *lo = vsubq_s8(vreinterpretq_s8_u8(a), vdupq_n_s8(16));
    *hi = vsubq_s8(vreinterpretq_s8_u8(c), vdupq_n_s8(16));
}

static inline void q8_0_unpack(const blk_q8_0 *b, int8x16_t *lo, int8x16_t *hi) {
    *lo = vld1q_s8(b->qs);
    *hi = vld1q_s8(b->qs + 16);
}

/* The min terms of the lane kernels: Q4_1 / Q5_1 summs = fma(m, s, summs),
 * Q5_K summs = fma(-y.d * fp16(x.dmin), mins, summs), none for the others. */
#define MIN_Q1(xb, u, yb, acc) fmaf(h2f((xb)->m), h2f((yb)->s), acc)
#define MIN_Q5K(xb, u, yb, acc)                                                                    \
    fmaf(-(yb)->d *h2f((xb)->dmin), (float)mins_dot8((u).mn, (yb)->bsums), acc)
#define MIN_NONE(xb, u, yb, acc) (acc)
#define ADJ_Q6K(xb, yb, lo, hi)  q6k_offset(xb, yb, lo, hi)
#define ADJ_NONE(xb, yb, lo, hi) ((void)0)

/* ------------------------------------------- integer dots, two builds */

#define TGT
#define SFX(name)    name##_neon
#define NEON_DOTPROD 0
#include "simd_neon_int.h"
#undef TGT
#undef SFX
#undef NEON_DOTPROD

/* SDOT kernels, chosen at run time on Linux (HWCAP). clang 14 declares
 * vdotq_s32 only when the whole file targets dotprod, so clang builds get
 * them only then. */
#if defined(__linux__) && (!defined(__clang__) || defined(__ARM_FEATURE_DOTPROD))
#define NEON_HAVE_DP 1
#if defined(__clang__)
#define TGT __attribute__((target("dotprod")))
#else
#define TGT __attribute__((target("arch=armv8.2-a+dotprod")))
#endif
#define NEON_SDOT    vdotq_s32
#define SFX(name)    name##_dp
#define NEON_DOTPROD 1
#include "simd_neon_int.h"
#undef TGT
#undef SFX
#undef NEON_DOTPROD
#undef NEON_SDOT

/* SDOT where the kernel reports it (ICALIGN_NEON_DOTPROD=0 keeps the base
 * kernels, to test them on such a CPU). */
static int has_dotprod(void) {
    const char *e = getenv("ICALIGN_NEON_DOTPROD");
    if (e && e[0] == '0')
        return 0;
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
}
#endif

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

    fill_int_neon(ops);
#ifdef NEON_HAVE_DP
    if (has_dotprod())
        fill_int_dp(ops);
#endif
}
#else
typedef int kern_simd_neon_unused;
#endif
