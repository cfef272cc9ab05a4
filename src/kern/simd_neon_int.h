/* NEON integer-dot kernel bodies, compiled twice by simd_neon.c: with the
 * base Advanced SIMD byte products (SFX(name) = name_neon) and with SDOT
 * (ARMv8.2 dot-product extension, SFX(name) = name_dp, TGT the function
 * target). The two give the same int32 per lane (exact sums), so the same
 * float results; the includer defines TGT, SFX and NEON_DOTPROD and has
 * the helpers these use (hsum8, nibbles, q5_bytes, the K-quant unpackers). */

/* ------------------------------------------------- byte dot primitives */

#if NEON_DOTPROD
/* SDOT: int32 lane l += the four products of bytes 4l..4l+3. */
TGT static inline int32x4_t SFX(dot4x4)(int8x16_t a, int8x16_t b) {
    return NEON_SDOT(vdupq_n_s32(0), a, b);
}

TGT static inline int32x4_t SFX(dot16_acc)(int32x4_t acc, int8x16_t a, int8x16_t b) {
    return NEON_SDOT(acc, a, b);
}
#else
/* int32 lanes 0..3 = sums of the products of bytes 4l..4l+3 of a, b (16 bytes). */
TGT static inline int32x4_t SFX(dot4x4)(int8x16_t a, int8x16_t b) {
    const int32x4_t lo = vpaddlq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    const int32x4_t hi = vpaddlq_s16(vmull_high_s8(a, b));
    return vpaddq_s32(lo, hi);
}

/* acc + the 16 products of a and b, spread over 4 int32 lanes (any order). */
TGT static inline int32x4_t SFX(dot16_acc)(int32x4_t acc, int8x16_t a, int8x16_t b) {
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
}
#endif

/* ------------------------------------------------------ 32-block dots */

/* Q8_0 (vec_dot_q8_0_q8_0): 8 lanes, acc = fma(dx*dy, lane, acc), hsum8. */
TGT static void SFX(dot_q8_0)(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q8_0 *x = vx, *y = vy;
    float32x4_t lo = vdupq_n_f32(0), hi = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / QK32; i++) {
        const int32x4_t l0 = SFX(dot4x4)(vld1q_s8(x[i].qs), vld1q_s8(y[i].qs));
        const int32x4_t l1 = SFX(dot4x4)(vld1q_s8(x[i].qs + 16), vld1q_s8(y[i].qs + 16));
        const float d = h2f(x[i].d) * h2f(y[i].d);
        lo = vfmaq_n_f32(lo, vcvtq_f32_s32(l0), d);
        hi = vfmaq_n_f32(hi, vcvtq_f32_s32(l1), d);
    }
    *s = hsum8(lo, hi);
}

TGT static void SFX(dot4_q8_0)(int64_t n, const void *vx, const void *vy, size_t ys, int nt,
                               float *out, int64_t os) {
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
            const int32x4_t l0 = SFX(dot4x4)(a, vld1q_s8(y[t][i].qs));
            const int32x4_t l1 = SFX(dot4x4)(b, vld1q_s8(y[t][i].qs + 16));
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
TGT static inline int32x4_t SFX(q4_0_dot)(const blk_q4_0 *x, const blk_q8_0 *y) {
    int8x16_t lo, hi;
    nibbles(x->qs, &lo, &hi);
    lo = vsubq_s8(lo, vdupq_n_s8(8));
    hi = vsubq_s8(hi, vdupq_n_s8(8));
    int32x4_t a = SFX(dot16_acc)(vdupq_n_s32(0), lo, vld1q_s8(y->qs));
    return SFX(dot16_acc)(a, hi, vld1q_s8(y->qs + 16));
}

TGT static inline int32x4_t SFX(iq4_nl_dot)(const blk_iq4_nl *x, const blk_q8_0 *y) {
    const int8x16_t tbl = vld1q_s8(kern_iq4nl_values);
    int8x16_t lo, hi;
    nibbles(x->qs, &lo, &hi);
    lo = vqtbl1q_s8(tbl, vreinterpretq_u8_s8(lo));
    hi = vqtbl1q_s8(tbl, vreinterpretq_u8_s8(hi));
    int32x4_t a = SFX(dot16_acc)(vdupq_n_s32(0), lo, vld1q_s8(y->qs));
    return SFX(dot16_acc)(a, hi, vld1q_s8(y->qs + 16));
}

/* Blocks 4 at a time: the four integer sums in one vector, the four dx*dy
 * as separate products, then the sequential fused chain. */
#define DOT_CHAIN(name, blk, blockdot)                                                             \
    TGT static void name(int64_t n, float *s, const void *vx, const void *vy) {                    \
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

DOT_CHAIN(SFX(dot_q4_0), blk_q4_0, SFX(q4_0_dot))
DOT_CHAIN(SFX(dot_iq4_nl), blk_iq4_nl, SFX(iq4_nl_dot))

/* One Q4_0 row by up to four tokens: lane t of acc is token t's chain. */
TGT static void SFX(dot4_q4_0)(int64_t n, const void *vx, const void *vy, size_t ys, int nt,
                               float *out, int64_t os) {
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
            l[t] = SFX(dot16_acc)(SFX(dot16_acc)(vdupq_n_s32(0), lo, vld1q_s8(y[t][i].qs)), hi,
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
TGT static void SFX(dot_q4_1)(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q4_1 *x = vx;
    const blk_q8_1 *y = vy;
    float32x4_t lo = vdupq_n_f32(0), hi = vdupq_n_f32(0);
    float summs = 0;
    for (int64_t i = 0; i < n / QK32; i++) {
        summs = fmaf(h2f(x[i].m), h2f(y[i].s), summs);
        int8x16_t a, b;
        nibbles(x[i].qs, &a, &b);
        const int32x4_t l0 = SFX(dot4x4)(a, vld1q_s8(y[i].qs));
        const int32x4_t l1 = SFX(dot4x4)(b, vld1q_s8(y[i].qs + 16));
        const float d = h2f(x[i].d) * h2f(y[i].d);
        lo = vfmaq_n_f32(lo, vcvtq_f32_s32(l0), d);
        hi = vfmaq_n_f32(hi, vcvtq_f32_s32(l1), d);
    }
    *s = hsum8(lo, hi) + summs;
}

TGT static void SFX(dot_q5_1)(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q5_1 *x = vx;
    const blk_q8_1 *y = vy;
    float32x4_t lo = vdupq_n_f32(0), hi = vdupq_n_f32(0);
    float summs = 0;
    for (int64_t i = 0; i < n / QK32; i++) {
        summs = fmaf(h2f(x[i].m), h2f(y[i].s), summs);
        uint8x16_t a, b;
        q5_bytes(x[i].qs, x[i].qh, &a, &b);
        const int32x4_t l0 = SFX(dot4x4)(vreinterpretq_s8_u8(a), vld1q_s8(y[i].qs));
        const int32x4_t l1 = SFX(dot4x4)(vreinterpretq_s8_u8(b), vld1q_s8(y[i].qs + 16));
        const float d = h2f(x[i].d) * h2f(y[i].d);
        lo = vfmaq_n_f32(lo, vcvtq_f32_s32(l0), d);
        hi = vfmaq_n_f32(hi, vcvtq_f32_s32(l1), d);
    }
    *s = hsum8(lo, hi) + summs;
}

TGT static void SFX(dot_q5_0)(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q5_0 *x = vx;
    const blk_q8_0 *y = vy;
    float32x4_t lo = vdupq_n_f32(0), hi = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / QK32; i++) {
        uint8x16_t a, b;
        q5_bytes(x[i].qs, x[i].qh, &a, &b);
        const int8x16_t sa = vsubq_s8(vreinterpretq_s8_u8(a), vdupq_n_s8(16));
        const int8x16_t sb = vsubq_s8(vreinterpretq_s8_u8(b), vdupq_n_s8(16));
        const int32x4_t l0 = SFX(dot4x4)(sa, vld1q_s8(y[i].qs));
        const int32x4_t l1 = SFX(dot4x4)(sb, vld1q_s8(y[i].qs + 16));
        const float d = h2f(x[i].d) * h2f(y[i].d);
        lo = vfmaq_n_f32(lo, vcvtq_f32_s32(l0), d);
        hi = vfmaq_n_f32(hi, vcvtq_f32_s32(l1), d);
    }
    *s = hsum8(lo, hi);
}

TGT static inline float SFX(q4k_block)(const blk_q4_K *b, const struct q4k_unp *u,
                                       const blk_q8_K *y) {
    int32x4_t isum = vdupq_n_s32(0);
    for (int j = 0; j < 8; j++) {
        int32x4_t t = SFX(dot16_acc)(vdupq_n_s32(0), u->q[2 * j], vld1q_s8(y->qs + 32 * j));
        t = SFX(dot16_acc)(t, u->q[2 * j + 1], vld1q_s8(y->qs + 32 * j + 16));
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

TGT static void SFX(dot_q4_K)(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q4_K *x = vx;
    const blk_q8_K *y = vy;
    struct q4k_unp u;
    float sumf = 0;
    for (int64_t i = 0; i < n / QKK; i++) {
        q4k_unpack(&x[i], &u);
        sumf += SFX(q4k_block)(&x[i], &u, &y[i]);
    }
    *s = sumf;
}

TGT static void SFX(dot4_q4_K)(int64_t n, const void *vx, const void *vy, size_t ys, int nt,
                               float *out, int64_t os) {
    const blk_q4_K *x = vx;
    struct q4k_unp u;
    float sumf[4] = {0, 0, 0, 0};
    for (int64_t i = 0; i < n / QKK; i++) {
        q4k_unpack(&x[i], &u);
        for (int t = 0; t < nt; t++) {
            const blk_q8_K *y = (const blk_q8_K *)((const char *)vy + (size_t)t * ys);
            sumf[t] += SFX(q4k_block)(&x[i], &u, &y[i]);
        }
    }
    for (int t = 0; t < nt; t++)
        out[t * os] = sumf[t];
}

/* Q2_K (repacked in llama.cpp): as Q4_K, 16 sub-blocks of 16, 4-bit scales
 * and mins. */
TGT static void SFX(dot_q2_K)(int64_t n, float *s, const void *vx, const void *vy) {
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
                const int32x4_t t0 = SFX(dot16_acc)(vdupq_n_s32(0), q0, vld1q_s8(y[i].qs + e));
                const int32x4_t t1 = SFX(dot16_acc)(vdupq_n_s32(0), q1, vld1q_s8(y[i].qs + e + 16));
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
TGT static inline void SFX(klane_acc)(int32x4_t *lo, int32x4_t *hi, int8x16_t qa, int8x16_t qb,
                                      const int8_t *y, int sca, int scb) {
    *lo = vmlaq_n_s32(*lo, SFX(dot4x4)(qa, vld1q_s8(y)), sca);
    *hi = vmlaq_n_s32(*hi, SFX(dot4x4)(qb, vld1q_s8(y + 16)), scb);
}

/* Q3_K (ggml_vec_dot_q3_K_q8_K, AVX2): signed quants -4..3, 16 six-bit
 * scales (offset 32), acc = fma(y.d * fp16(x.d), lane, acc), hsum8. */
TGT static void SFX(dot_q3_K)(int64_t n, float *s, const void *vx, const void *vy) {
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
                SFX(klane_acc)(&lo, &hi, q0, q1, y[i].qs + 32 * c, sc[2 * c], sc[2 * c + 1]);
            }
        }
        kfma(&alo, &ahi, lo, hi, y[i].d * h2f(b->d));
    }
    *s = hsum8(alo, ahi);
}

/* Q5_K (ggml_vec_dot_q5_K_q8_K, AVX2): unsigned quants 0..31, one scale per
 * chunk; summs = fma(-y.d * fp16(x.dmin), mins, summs); hsum8(acc) + summs. */
TGT static void SFX(dot_q5_K)(int64_t n, float *s, const void *vx, const void *vy) {
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
            SFX(klane_acc)
            (&lo, &hi, vreinterpretq_s8_u8(vorrq_u8(l0, h0)), vreinterpretq_s8_u8(vorrq_u8(l1, h1)),
             y[i].qs + 32 * c, sm[c], sm[c]);
        }
        kfma(&alo, &ahi, lo, hi, d);
    }
    *s = hsum8(alo, ahi) + summs;
}

TGT static inline void SFX(q6k_lanes)(const blk_q6_K *b, const struct q6k_unp *u, const blk_q8_K *y,
                                      int32x4_t *lo, int32x4_t *hi) {
    int32x4_t l = vdupq_n_s32(0), h = vdupq_n_s32(0);
    for (int c = 0; c < 8; c++)
        SFX(klane_acc)
    (&l, &h, u->q[2 * c], u->q[2 * c + 1], y->qs + 32 * c, b->scales[2 * c], b->scales[2 * c + 1]);
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

TGT static void SFX(dot_q6_K)(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q6_K *x = vx;
    const blk_q8_K *y = vy;
    struct q6k_unp u;
    float32x4_t alo = vdupq_n_f32(0), ahi = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / QKK; i++) {
        q6k_unpack(&x[i], &u);
        int32x4_t lo, hi;
        SFX(q6k_lanes)(&x[i], &u, &y[i], &lo, &hi);
        kfma(&alo, &ahi, lo, hi, y[i].d * h2f(x[i].d));
    }
    *s = hsum8(alo, ahi);
}

/* IQ4_XS (ggml_vec_dot_iq4_xs_q8_K, AVX2): code book values, one six-bit
 * scale (offset 32) per 32-element chunk, as Q3_K otherwise. */
TGT static void SFX(dot_iq4_xs)(int64_t n, float *s, const void *vx, const void *vy) {
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
            SFX(klane_acc)(&lo, &hi, qa, qb, y[i].qs + 32 * ib, ls - 32, ls - 32);
        }
        kfma(&alo, &ahi, lo, hi, y[i].d * h2f(b->d));
    }
    *s = hsum8(alo, ahi);
}

#undef DOT_CHAIN

/* ------------------------------------------------------------- table */

static void SFX(fill_int)(struct kern_ops *ops) {
    ops[ICA_Q8_0].tr.vec_dot = SFX(dot_q8_0);
    ops[ICA_Q8_0].dot4 = SFX(dot4_q8_0);
    ops[ICA_Q4_0].tr.vec_dot = SFX(dot_q4_0);
    ops[ICA_Q4_0].dot4 = SFX(dot4_q4_0);
    ops[ICA_Q4_1].tr.vec_dot = SFX(dot_q4_1);
    ops[ICA_Q5_0].tr.vec_dot = SFX(dot_q5_0);
    ops[ICA_Q5_1].tr.vec_dot = SFX(dot_q5_1);
    ops[ICA_IQ4_NL].tr.vec_dot = SFX(dot_iq4_nl);
    ops[ICA_Q2_K].tr.vec_dot = SFX(dot_q2_K);
    ops[ICA_Q3_K].tr.vec_dot = SFX(dot_q3_K);
    ops[ICA_Q4_K].tr.vec_dot = SFX(dot_q4_K);
    ops[ICA_Q4_K].dot4 = SFX(dot4_q4_K);
    ops[ICA_Q5_K].tr.vec_dot = SFX(dot_q5_K);
    ops[ICA_Q6_K].tr.vec_dot = SFX(dot_q6_K);
    ops[ICA_IQ4_XS].tr.vec_dot = SFX(dot_iq4_xs);
}
