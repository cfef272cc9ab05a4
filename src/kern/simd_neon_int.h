/* NEON integer-dot kernel bodies, compiled twice by simd_neon.c: with the
 * base Advanced SIMD byte products (SFX(name) = name_neon) and with SDOT
 * (ARMv8.2 dot-product extension, SFX(name) = name_dp, TGT the function
 * target). The two give the same int32 per lane (exact sums), so the same
 * float results; the includer defines TGT, SFX and NEON_DOTPROD and has
 * the helpers these use (hsum8, nibbles, q5_bytes, the K-quant unpackers).
 * The repacked Q4_0 / Q4_K layouts (kern_repack) exist in the SDOT build
 * only: they rest on SDOT by element. */

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

/* vec_dot and dot4 of a kernel from one body: dotk over nt tokens, inlined
 * into dot4 and into vec_dot (nt = 1). */
#define DOT_PAIR(name)                                                                             \
    TGT static void SFX(dot_##name)(int64_t n, float *s, const void *vx, const void *vy) {         \
        SFX(dotk_##name)(n, vx, vy, 0, 1, s, 0);                                                   \
    }                                                                                              \
    TGT static void SFX(dot4_##name)(int64_t n, const void *vx, const void *vy, size_t ys, int nt, \
                                     float *out, int64_t os) {                                     \
        SFX(dotk_##name)(n, vx, vy, ys, nt, out, os);                                              \
    }

/* ------------------------------------------------------ 32-block dots */

/* Q8_0, Q4_1, Q5_0, Q5_1 (ggml's AVX2 vec_dot): 8 lanes of the block's
 * quants times q8, acc = fma(dx*dy, lane, acc), hsum8; Q4_1 / Q5_1 add the
 * scalar chain summs = fma(m, s, summs) at the end. */
#define LANE32(name, blk, yblk, unpack, minterm, has_min)                                          \
    TGT static inline __attribute__((always_inline)) void SFX(dotk_##name)(                        \
        int64_t n, const void *vx, const void *vy, size_t ys, int nt, float *out, int64_t os) {    \
        const blk *x = vx;                                                                         \
        float32x4_t lo[4], hi[4];                                                                  \
        float summs[4] = {0, 0, 0, 0};                                                             \
        for (int t = 0; t < 4; t++)                                                                \
            lo[t] = hi[t] = vdupq_n_f32(0);                                                        \
        for (int64_t i = 0; i < n / QK32; i++) {                                                   \
            int8x16_t a, b;                                                                        \
            unpack(&x[i], &a, &b);                                                                 \
            const float dx = h2f(x[i].d);                                                          \
            for (int t = 0; t < nt; t++) {                                                         \
                const yblk *y = (const yblk *)((const char *)vy + (size_t)t * ys) + i;             \
                summs[t] = minterm(&x[i], 0, y, summs[t]);                                         \
                const int32x4_t l0 = SFX(dot4x4)(a, vld1q_s8(y->qs));                              \
                const int32x4_t l1 = SFX(dot4x4)(b, vld1q_s8(y->qs + 16));                         \
                const float d = dx * h2f(y->d);                                                    \
                lo[t] = vfmaq_n_f32(lo[t], vcvtq_f32_s32(l0), d);                                  \
                hi[t] = vfmaq_n_f32(hi[t], vcvtq_f32_s32(l1), d);                                  \
            }                                                                                      \
        }                                                                                          \
        for (int t = 0; t < nt; t++)                                                               \
            out[t * os] = has_min ? hsum8(lo[t], hi[t]) + summs[t] : hsum8(lo[t], hi[t]);          \
    }                                                                                              \
    DOT_PAIR(name)

LANE32(q8_0, blk_q8_0, blk_q8_0, q8_0_unpack, MIN_NONE, 0)

/* Four Q8_0 rows by up to four tokens, a token at a time: the activation
 * loads and scale shared by the rows; per output the lanes, FMAs and tree
 * of dot_q8_0. */
TGT static void SFX(tile4_q8_0)(int64_t n, const void *vx, size_t xs, const void *vy, size_t ys,
                                int nt, float *out, int64_t os) {
    const blk_q8_0 *x[4];
    for (int r = 0; r < 4; r++)
        x[r] = (const blk_q8_0 *)((const char *)vx + (size_t)r * xs);
    for (int t = 0; t < nt; t++) {
        const blk_q8_0 *y = (const blk_q8_0 *)((const char *)vy + (size_t)t * ys);
        float32x4_t lo[4], hi[4];
        for (int r = 0; r < 4; r++)
            lo[r] = hi[r] = vdupq_n_f32(0);
        for (int64_t i = 0; i < n / QK32; i++) {
            const int8x16_t ya = vld1q_s8(y[i].qs), yb = vld1q_s8(y[i].qs + 16);
            const float dy = h2f(y[i].d);
            for (int r = 0; r < 4; r++) {
                const int32x4_t l0 = SFX(dot4x4)(vld1q_s8(x[r][i].qs), ya);
                const int32x4_t l1 = SFX(dot4x4)(vld1q_s8(x[r][i].qs + 16), yb);
                const float d = h2f(x[r][i].d) * dy;
                lo[r] = vfmaq_n_f32(lo[r], vcvtq_f32_s32(l0), d);
                hi[r] = vfmaq_n_f32(hi[r], vcvtq_f32_s32(l1), d);
            }
        }
        for (int r = 0; r < 4; r++)
            out[t * os + r] = hsum8(lo[r], hi[r]);
    }
}
LANE32(q4_1, blk_q4_1, blk_q8_1, q4_1_unpack, MIN_Q1, 1)
LANE32(q5_0, blk_q5_0, blk_q8_0, q5_0_unpack, MIN_NONE, 0)
LANE32(q5_1, blk_q5_1, blk_q8_1, q5_1_unpack, MIN_Q1, 1)

/* Q4_0 and IQ4_NL (repacked in llama.cpp): per block the exact integer dot,
 * then acc = fma((float)isum, dx*dy, acc), one float chain per output.
 * vec_dot takes blocks 4 at a time (the four sums in one vector, then the
 * sequential chain); dot4 keeps token t's chain in lane t. */
#define CHAIN32(name, blk, unpack)                                                                 \
    TGT static inline int32x4_t SFX(bdot_##name)(const blk *x, const blk_q8_0 *y) {                \
        int8x16_t lo, hi;                                                                          \
        unpack(x, &lo, &hi);                                                                       \
        const int32x4_t a = SFX(dot16_acc)(vdupq_n_s32(0), lo, vld1q_s8(y->qs));                   \
        return SFX(dot16_acc)(a, hi, vld1q_s8(y->qs + 16));                                        \
    }                                                                                              \
    TGT static void SFX(dot_##name)(int64_t n, float *s, const void *vx, const void *vy) {         \
        const blk *x = vx;                                                                         \
        const blk_q8_0 *y = vy;                                                                    \
        const int64_t nb = n / QK32;                                                               \
        float acc = 0;                                                                             \
        int64_t i = 0;                                                                             \
        for (; i + 4 <= nb; i += 4) {                                                              \
            const int32x4_t a01 = vpaddq_s32(SFX(bdot_##name)(&x[i], &y[i]),                       \
                                             SFX(bdot_##name)(&x[i + 1], &y[i + 1]));              \
            const int32x4_t a23 = vpaddq_s32(SFX(bdot_##name)(&x[i + 2], &y[i + 2]),               \
                                             SFX(bdot_##name)(&x[i + 3], &y[i + 3]));              \
            float si[4];                                                                           \
            vst1q_f32(si, vcvtq_f32_s32(vpaddq_s32(a01, a23)));                                    \
            for (int j = 0; j < 4; j++)                                                            \
                acc = fmaf(si[j], h2f(x[i + j].d) * h2f(y[i + j].d), acc);                         \
        }                                                                                          \
        for (; i < nb; i++) {                                                                      \
            const int sumi = vaddvq_s32(SFX(bdot_##name)(&x[i], &y[i]));                           \
            acc = fmaf((float)sumi, h2f(x[i].d) * h2f(y[i].d), acc);                               \
        }                                                                                          \
        *s = acc;                                                                                  \
    }                                                                                              \
    TGT static void SFX(dot4_##name)(int64_t n, const void *vx, const void *vy, size_t ys, int nt, \
                                     float *out, int64_t os) {                                     \
        const blk *x = vx;                                                                         \
        const blk_q8_0 *y[4];                                                                      \
        for (int t = 0; t < 4; t++)                                                                \
            y[t] = (const blk_q8_0 *)((const char *)vy + (size_t)(t < nt ? t : nt - 1) * ys);      \
        float32x4_t acc = vdupq_n_f32(0);                                                          \
        for (int64_t i = 0; i < n / QK32; i++) {                                                   \
            int8x16_t lo, hi;                                                                      \
            unpack(&x[i], &lo, &hi);                                                               \
            int32x4_t l[4];                                                                        \
            for (int t = 0; t < 4; t++)                                                            \
                l[t] = SFX(dot16_acc)(SFX(dot16_acc)(vdupq_n_s32(0), lo, vld1q_s8(y[t][i].qs)),    \
                                      hi, vld1q_s8(y[t][i].qs + 16));                              \
            const int32x4_t si = vpaddq_s32(vpaddq_s32(l[0], l[1]), vpaddq_s32(l[2], l[3]));       \
            const float dyv[4] = {h2f(y[0][i].d), h2f(y[1][i].d), h2f(y[2][i].d), h2f(y[3][i].d)}; \
            const float32x4_t d = vmulq_n_f32(vld1q_f32(dyv), h2f(x[i].d));                        \
            acc = vfmaq_f32(acc, vcvtq_f32_s32(si), d);                                            \
        }                                                                                          \
        float r[4];                                                                                \
        vst1q_f32(r, acc);                                                                         \
        for (int t = 0; t < nt; t++)                                                               \
            out[t * os] = r[t];                                                                    \
    }

/* Four rows by up to four tokens: lane r of token t's accumulator is row
 * r's chain (llama.cpp's repacked layout does the same). */
#define CHAIN32_TILE4(name, blk, unpack)                                                           \
    TGT static void SFX(tile4_##name)(int64_t n, const void *vx, size_t xs, const void *vy,        \
                                      size_t ys, int nt, float *out, int64_t os) {                 \
        const blk *x[4];                                                                           \
        for (int r = 0; r < 4; r++)                                                                \
            x[r] = (const blk *)((const char *)vx + (size_t)r * xs);                               \
        float32x4_t acc[4];                                                                        \
        for (int t = 0; t < 4; t++)                                                                \
            acc[t] = vdupq_n_f32(0);                                                               \
        for (int64_t i = 0; i < n / QK32; i++) {                                                   \
            int8x16_t lo[4], hi[4];                                                                \
            float dxs[4];                                                                          \
            for (int r = 0; r < 4; r++) {                                                          \
                unpack(&x[r][i], &lo[r], &hi[r]);                                                  \
                dxs[r] = h2f(x[r][i].d);                                                           \
            }                                                                                      \
            const float32x4_t dx = vld1q_f32(dxs);                                                 \
            for (int t = 0; t < nt; t++) {                                                         \
                const blk_q8_0 *y = (const blk_q8_0 *)((const char *)vy + (size_t)t * ys) + i;     \
                const int8x16_t ya = vld1q_s8(y->qs), yb = vld1q_s8(y->qs + 16);                   \
                int32x4_t l[4];                                                                    \
                for (int r = 0; r < 4; r++)                                                        \
                    l[r] = SFX(dot16_acc)(SFX(dot16_acc)(vdupq_n_s32(0), lo[r], ya), hi[r], yb);   \
                const int32x4_t si = vpaddq_s32(vpaddq_s32(l[0], l[1]), vpaddq_s32(l[2], l[3]));   \
                const float32x4_t d = vmulq_n_f32(dx, h2f(y->d));                                  \
                acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(si), d);                                  \
            }                                                                                      \
        }                                                                                          \
        for (int t = 0; t < nt; t++)                                                               \
            vst1q_f32(out + t * os, acc[t]);                                                       \
    }

CHAIN32(q4_0, blk_q4_0, q4_0_unpack)
CHAIN32_TILE4(q4_0, blk_q4_0, q4_0_unpack)
CHAIN32_TILE4(iq4_nl, blk_iq4_nl, iq4_nl_unpack)
CHAIN32(iq4_nl, blk_iq4_nl, iq4_nl_unpack)

/* ------------------------------------------------------- K-quant dots */

/* Q4_K and Q2_K (repacked in llama.cpp): exact isum and summs per
 * super-block, then t = d*isum; t = t - dmin*summs; sumf += t in float. */
TGT static inline float SFX(kblock)(float dx, float dmx, float yd, int isum, int summs) {
    const float d = dx * yd;
    float t = d * (float)isum;
    const float dmin = dmx * yd;
    const float m = dmin * (float)summs;
    t = t - m;
    return t;
}

TGT static inline float SFX(q4k_block)(const blk_q4_K *b, const struct q4k_unp *u,
                                       const blk_q8_K *y) {
    int32x4_t isum = vdupq_n_s32(0);
    for (int j = 0; j < 8; j++) {
        int32x4_t t = SFX(dot16_acc)(vdupq_n_s32(0), u->q[2 * j], vld1q_s8(y->qs + 32 * j));
        t = SFX(dot16_acc)(t, u->q[2 * j + 1], vld1q_s8(y->qs + 32 * j + 16));
        isum = vmlaq_n_s32(isum, t, u->sm[j]);
    }
    return SFX(kblock)(h2f(b->d), h2f(b->dmin), y->d, vaddvq_s32(isum),
                       mins_dot8(u->sm + 8, y->bsums));
}

TGT static inline float SFX(q2k_block)(const blk_q2_K *b, const struct q2k_unp *u,
                                       const blk_q8_K *y) {
    int32x4_t isum = vdupq_n_s32(0);
    for (int j = 0; j < 16; j++)
        isum = vmlaq_n_s32(isum, SFX(dot16_acc)(vdupq_n_s32(0), u->q[j], vld1q_s8(y->qs + 16 * j)),
                           u->sc[j]);
    return SFX(kblock)(h2f(b->d), h2f(b->dmin), y->d, vaddvq_s32(isum), q2k_summs(u, y->bsums));
}

#define KBLOCK(name, blk, unp_t, unpack)                                                           \
    TGT static inline __attribute__((always_inline)) void SFX(dotk_##name)(                        \
        int64_t n, const void *vx, const void *vy, size_t ys, int nt, float *out, int64_t os) {    \
        const blk *x = vx;                                                                         \
        struct unp_t u;                                                                            \
        float sumf[4] = {0, 0, 0, 0};                                                              \
        for (int64_t i = 0; i < n / QKK; i++) {                                                    \
            unpack(&x[i], &u);                                                                     \
            for (int t = 0; t < nt; t++) {                                                         \
                const blk_q8_K *y = (const blk_q8_K *)((const char *)vy + (size_t)t * ys) + i;     \
                sumf[t] += SFX(name##_block)(&x[i], &u, y);                                        \
            }                                                                                      \
        }                                                                                          \
        for (int t = 0; t < nt; t++)                                                               \
            out[t * os] = sumf[t];                                                                 \
    }                                                                                              \
    DOT_PAIR(name)

KBLOCK(q4k, blk_q4_K, q4k_unp, q4k_unpack)
KBLOCK(q2k, blk_q2_K, q2k_unp, q2k_unpack)

/* The AVX2 lane kernels (Q3_K, Q5_K, Q6_K, IQ4_XS): int32 lane l (lo = 0..3
 * from elements 0..15 of a chunk, hi = 4..7 from 16..31) adds sc * (4
 * products of bytes 4l..4l+3), sc the scale of that half; Q6_K then takes
 * its offset from the lanes; acc = fma(y.d * fp16(x.d), lane, acc), hsum8;
 * Q5_K adds its scalar min chain. */
TGT static inline void SFX(klanes)(const struct klane_unp *u, const int8_t *y, int32x4_t *lo,
                                   int32x4_t *hi) {
    int32x4_t l = vdupq_n_s32(0), h = vdupq_n_s32(0);
    for (int c = 0; c < 8; c++) {
        l = vmlaq_n_s32(l, SFX(dot4x4)(u->q[2 * c], vld1q_s8(y + 32 * c)), u->sc[2 * c]);
        h = vmlaq_n_s32(h, SFX(dot4x4)(u->q[2 * c + 1], vld1q_s8(y + 32 * c + 16)),
                        u->sc[2 * c + 1]);
    }
    *lo = l;
    *hi = h;
}

#define KLANE(name, blk, unpack, adjust, minterm, has_min)                                         \
    TGT static inline __attribute__((always_inline)) void SFX(dotk_##name)(                        \
        int64_t n, const void *vx, const void *vy, size_t ys, int nt, float *out, int64_t os) {    \
        const blk *x = vx;                                                                         \
        struct klane_unp u;                                                                        \
        float32x4_t alo[4], ahi[4];                                                                \
        float summs[4] = {0, 0, 0, 0};                                                             \
        for (int t = 0; t < 4; t++)                                                                \
            alo[t] = ahi[t] = vdupq_n_f32(0);                                                      \
        for (int64_t i = 0; i < n / QKK; i++) {                                                    \
            unpack(&x[i], &u);                                                                     \
            const float dx = h2f(x[i].d);                                                          \
            for (int t = 0; t < nt; t++) {                                                         \
                const blk_q8_K *y = (const blk_q8_K *)((const char *)vy + (size_t)t * ys) + i;     \
                summs[t] = minterm(&x[i], u, y, summs[t]);                                         \
                int32x4_t lo, hi;                                                                  \
                SFX(klanes)(&u, y->qs, &lo, &hi);                                                  \
                adjust(&x[i], y, &lo, &hi);                                                        \
                kfma(&alo[t], &ahi[t], lo, hi, y->d *dx);                                          \
            }                                                                                      \
        }                                                                                          \
        for (int t = 0; t < nt; t++)                                                               \
            out[t * os] = has_min ? hsum8(alo[t], ahi[t]) + summs[t] : hsum8(alo[t], ahi[t]);      \
    }                                                                                              \
    DOT_PAIR(name)

KLANE(q3_K, blk_q3_K, q3k_unpack, ADJ_NONE, MIN_NONE, 0)
KLANE(q5_K, blk_q5_K, q5k_unpack, ADJ_NONE, MIN_Q5K, 1)
KLANE(q6_K, blk_q6_K, q6k_unpack, ADJ_Q6K, MIN_NONE, 0)
KLANE(iq4_xs, blk_iq4_xs, iq4xs_unpack, ADJ_NONE, MIN_NONE, 0)

#undef DOT_PAIR
#undef LANE32
#undef CHAIN32
#undef CHAIN32_TILE4
#undef KBLOCK
#undef KLANE

#if NEON_DOTPROD
/* ------------------------------------------- repacked Q4_0 (SDOT only) */

/* Tiles of 8 rows, the quants still packed (18 bytes a row and block, as the
 * source): per block 4 groups of 32 bytes, group h = bytes 4h..4h+3 of rows
 * 0..7 (16 bytes rows 0..3, then rows 4..7), i.e. quants 4h..4h+3 in the
 * low nibbles and 16+4h..16+4h+3 in the high ones; then the 8 fp16 scales.
 * SDOT by element (vdotq_laneq_s32) of a group by the activation bytes
 * 4h..4h+3 leaves row r's products in int32 lane r; the unsigned nibbles'
 * offset is -8 * sum(y) (rp_aux). Then the reference's chain
 * acc = fma((float)isum, dx*dy, acc), lane r = row r. */
#define NRP_ROWS      8
#define NRP_Q40_BLOCK (4 * 32 + 2 * NRP_ROWS)

static size_t SFX(rp_bytes_q4_0)(int64_t n) {
    return (size_t)(n / QK32) * NRP_Q40_BLOCK;
}

static void SFX(rp_pack_q4_0)(int64_t n, const void *vx, size_t xs, void *vdst) {
    uint8_t *dst = vdst;
    for (int64_t b = 0; b < n / QK32; b++, dst += NRP_Q40_BLOCK)
        for (int r = 0; r < NRP_ROWS; r++) {
            const blk_q4_0 *x = (const blk_q4_0 *)((const char *)vx + (size_t)r * xs) + b;
            for (int h = 0; h < 4; h++)
                memcpy(dst + 32 * h + 4 * r, x->qs + 4 * h, 4);
            memcpy(dst + 128 + 2 * r, &x->d, 2);
        }
}

/* -8 * (sum of the 32 codes of a Q8_0 block). */
static inline int32_t SFX(q8_0_negsum8)(const blk_q8_0 *y) {
    return -8 * (vaddlvq_s8(vld1q_s8(y->qs)) + vaddlvq_s8(vld1q_s8(y->qs + 16)));
}

static void SFX(rp_aux_q4_0)(int64_t n, const void *vy, size_t ys, int64_t nt, int32_t *aux) {
    const int64_t nb = n / QK32;
    for (int64_t t = 0; t < nt; t++) {
        const blk_q8_0 *y = (const blk_q8_0 *)((const char *)vy + (size_t)t * ys);
        for (int64_t b = 0; b < nb; b++)
            aux[t * nb + b] = SFX(q8_0_negsum8)(&y[b]);
    }
}

/* lanes of 4 rows: acc + sum over the 4 groups q[h] by activation bytes 4h..4h+3 of yv */
TGT static inline int32x4_t SFX(rp_dot4g)(int32x4_t acc, const uint8x16_t q[4], int8x16_t yv) {
    acc = vdotq_laneq_s32(acc, vreinterpretq_s8_u8(q[0]), yv, 0);
    acc = vdotq_laneq_s32(acc, vreinterpretq_s8_u8(q[1]), yv, 1);
    acc = vdotq_laneq_s32(acc, vreinterpretq_s8_u8(q[2]), yv, 2);
    return vdotq_laneq_s32(acc, vreinterpretq_s8_u8(q[3]), yv, 3);
}

TGT static inline __attribute__((always_inline)) void
SFX(rp_q4_0_k)(int64_t nb, const uint8_t *pb, const blk_q8_0 *const *y, const int32_t *const *cs,
               const int K, float *out, int64_t os) {
    float32x4_t acc[4][2];
    for (int t = 0; t < 4; t++)
        acc[t][0] = acc[t][1] = vdupq_n_f32(0);
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    for (int64_t b = 0; b < nb; b++, pb += NRP_Q40_BLOCK) {
        uint8x16_t lo[2][4], hi[2][4]; /* [rows 0..3 | 4..7][group] */
        for (int h = 0; h < 4; h++)
            for (int g = 0; g < 2; g++) {
                const uint8x16_t w = vld1q_u8(pb + 32 * h + 16 * g);
                lo[g][h] = vandq_u8(w, m4);
                hi[g][h] = vshrq_n_u8(w, 4);
            }
        const float32x4_t dx0 =
            vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(pb + 128))));
        const float32x4_t dx1 =
            vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(pb + 136))));
        for (int t = 0; t < K; t++) {
            const int8x16_t ya = vld1q_s8(y[t][b].qs), yb = vld1q_s8(y[t][b].qs + 16);
            const int32_t c = cs[t] ? cs[t][b] : SFX(q8_0_negsum8)(&y[t][b]);
            const int32x4_t i0 = SFX(rp_dot4g)(vdupq_n_s32(c), lo[0], ya);
            const int32x4_t j0 = SFX(rp_dot4g)(vdupq_n_s32(0), hi[0], yb);
            const int32x4_t i1 = SFX(rp_dot4g)(vdupq_n_s32(c), lo[1], ya);
            const int32x4_t j1 = SFX(rp_dot4g)(vdupq_n_s32(0), hi[1], yb);
            const float dy = h2f(y[t][b].d);
            acc[t][0] =
                vfmaq_f32(acc[t][0], vcvtq_f32_s32(vaddq_s32(i0, j0)), vmulq_n_f32(dx0, dy));
            acc[t][1] =
                vfmaq_f32(acc[t][1], vcvtq_f32_s32(vaddq_s32(i1, j1)), vmulq_n_f32(dx1, dy));
        }
    }
    for (int t = 0; t < K; t++) {
        vst1q_f32(out + t * os, acc[t][0]);
        vst1q_f32(out + t * os + 4, acc[t][1]);
    }
}

TGT static void SFX(rp_gemm_q4_0)(int64_t n, const void *tile, const void *vy, size_t ys,
                                  int64_t nt, const int32_t *aux, float *out, int64_t os) {
    const int64_t nb = n / QK32;
    for (int64_t t0 = 0; t0 < nt; t0 += 4) {
        const int k = (int)(nt - t0 < 4 ? nt - t0 : 4);
        const blk_q8_0 *y[4];
        const int32_t *cs[4];
        for (int t = 0; t < 4; t++) {
            const int64_t tt = t0 + (t < k ? t : 0);
            y[t] = (const blk_q8_0 *)((const char *)vy + (size_t)tt * ys);
            cs[t] = aux ? aux + tt * nb : NULL;
        }
        float *o = out + t0 * os;
        switch (k) {
        case 1:
            SFX(rp_q4_0_k)(nb, tile, y, cs, 1, o, os);
            break;
        case 2:
            SFX(rp_q4_0_k)(nb, tile, y, cs, 2, o, os);
            break;
        case 3:
            SFX(rp_q4_0_k)(nb, tile, y, cs, 3, o, os);
            break;
        default:
            SFX(rp_q4_0_k)(nb, tile, y, cs, 4, o, os);
            break;
        }
    }
}
/* Repacked Q4_K, 8-row tiles: per super-block 32 groups of 32 bytes, group
 * 8c+g = bytes 32c+4g..+3 of the rows (rows 0..3, then 4..7): quants of
 * sub-block 2c in the low nibbles, 2c+1 in the high ones; then the 8 rows'
 * scales (byte 8j+r) and mins (the same), d and dmin. Per token: isum and
 * summs of every row exact in int32 lanes, then the reference's
 * t = d*isum; t = t - dmin*summs; sumf += t with lane r = row r. */
#define NRP_Q4K_SC    (32 * 32)
#define NRP_Q4K_MN    (NRP_Q4K_SC + 8 * NRP_ROWS)
#define NRP_Q4K_D     (NRP_Q4K_MN + 8 * NRP_ROWS)
#define NRP_Q4K_BLOCK (NRP_Q4K_D + 4 * NRP_ROWS)

static size_t SFX(rp_bytes_q4_K)(int64_t n) {
    return (size_t)(n / QKK) * NRP_Q4K_BLOCK;
}

static void SFX(rp_pack_q4_K)(int64_t n, const void *vx, size_t xs, void *vdst) {
    uint8_t *dst = vdst;
    for (int64_t b = 0; b < n / QKK; b++, dst += NRP_Q4K_BLOCK)
        for (int r = 0; r < NRP_ROWS; r++) {
            const blk_q4_K *x = (const blk_q4_K *)((const char *)vx + (size_t)r * xs) + b;
            for (int h = 0; h < 32; h++)
                memcpy(dst + 32 * h + 4 * r, x->qs + 4 * h, 4);
            uint8_t sm[16];
            k4_scales16(x->scales, sm);
            for (int j = 0; j < 8; j++) {
                dst[NRP_Q4K_SC + 8 * j + r] = sm[j];
                dst[NRP_Q4K_MN + 8 * j + r] = sm[8 + j];
            }
            memcpy(dst + NRP_Q4K_D + 2 * r, &x->d, 2);
            memcpy(dst + NRP_Q4K_D + 2 * NRP_ROWS + 2 * r, &x->dmin, 2);
        }
}

/* 8 bytes (one per row) as int32 lanes of rows 0..3 and 4..7. */
static inline void SFX(rp_u8x8)(const uint8_t *p, int32x4_t *a, int32x4_t *b) {
    const uint16x8_t v = vmovl_u8(vld1_u8(p));
    *a = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(v)));
    *b = vreinterpretq_s32_u32(vmovl_high_u16(v));
}

static inline float32x4_t SFX(rp_h4)(const uint8_t *p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)p)));
}

TGT static inline __attribute__((always_inline)) void SFX(rp_q4_K_k)(int64_t nb, const uint8_t *pb,
                                                                     const blk_q8_K *const *y,
                                                                     const int K, float *out,
                                                                     int64_t os) {
    float32x4_t acc[4][2];
    for (int t = 0; t < 4; t++)
        acc[t][0] = acc[t][1] = vdupq_n_f32(0);
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    for (int64_t b = 0; b < nb; b++, pb += NRP_Q4K_BLOCK) {
        const float32x4_t dx0 = SFX(rp_h4)(pb + NRP_Q4K_D), dx1 = SFX(rp_h4)(pb + NRP_Q4K_D + 8);
        const float32x4_t dm0 = SFX(rp_h4)(pb + NRP_Q4K_D + 16);
        const float32x4_t dm1 = SFX(rp_h4)(pb + NRP_Q4K_D + 24);
        for (int t = 0; t < K; t++) {
            const blk_q8_K *yb = &y[t][b];
            int32x4_t is0 = vdupq_n_s32(0), is1 = vdupq_n_s32(0);
            for (int c = 0; c < 4; c++) {
                int32x4_t l0 = vdupq_n_s32(0), l1 = vdupq_n_s32(0);
                int32x4_t h0 = vdupq_n_s32(0), h1 = vdupq_n_s32(0);
                for (int gh = 0; gh < 2; gh++) {
                    const int8x16_t ylo = vld1q_s8(yb->qs + 64 * c + 16 * gh);
                    const int8x16_t yhi = vld1q_s8(yb->qs + 64 * c + 32 + 16 * gh);
                    const uint8_t *g0 = pb + 32 * (8 * c + 4 * gh);
#define RP_Q4K_G(k)                                                                                \
    do {                                                                                           \
        const uint8x16_t wa = vld1q_u8(g0 + 32 * (k)), wb = vld1q_u8(g0 + 32 * (k) + 16);          \
        l0 = vdotq_laneq_s32(l0, vreinterpretq_s8_u8(vandq_u8(wa, m4)), ylo, k);                   \
        l1 = vdotq_laneq_s32(l1, vreinterpretq_s8_u8(vandq_u8(wb, m4)), ylo, k);                   \
        h0 = vdotq_laneq_s32(h0, vreinterpretq_s8_u8(vshrq_n_u8(wa, 4)), yhi, k);                  \
        h1 = vdotq_laneq_s32(h1, vreinterpretq_s8_u8(vshrq_n_u8(wb, 4)), yhi, k);                  \
    } while (0)
                    RP_Q4K_G(0);
                    RP_Q4K_G(1);
                    RP_Q4K_G(2);
                    RP_Q4K_G(3);
#undef RP_Q4K_G
                }
                int32x4_t sa0, sa1, sb0, sb1;
                SFX(rp_u8x8)(pb + NRP_Q4K_SC + 8 * (2 * c), &sa0, &sa1);
                SFX(rp_u8x8)(pb + NRP_Q4K_SC + 8 * (2 * c + 1), &sb0, &sb1);
                is0 = vmlaq_s32(vmlaq_s32(is0, l0, sa0), h0, sb0);
                is1 = vmlaq_s32(vmlaq_s32(is1, l1, sa1), h1, sb1);
            }
            int32x4_t sm0 = vdupq_n_s32(0), sm1 = vdupq_n_s32(0);
            for (int j = 0; j < 8; j++) {
                int32x4_t m0, m1;
                SFX(rp_u8x8)(pb + NRP_Q4K_MN + 8 * j, &m0, &m1);
                const int32_t bp = yb->bsums[2 * j] + yb->bsums[2 * j + 1];
                sm0 = vmlaq_n_s32(sm0, m0, bp);
                sm1 = vmlaq_n_s32(sm1, m1, bp);
            }
            const float yd = yb->d;
            const int32x4_t isv[2] = {is0, is1}, smv[2] = {sm0, sm1};
            const float32x4_t dxv[2] = {dx0, dx1}, dmv[2] = {dm0, dm1};
            for (int hh = 0; hh < 2; hh++) {
                const float32x4_t d = vmulq_n_f32(dxv[hh], yd);
                float32x4_t tt = vmulq_f32(d, vcvtq_f32_s32(isv[hh]));
                const float32x4_t dmin = vmulq_n_f32(dmv[hh], yd);
                const float32x4_t m = vmulq_f32(dmin, vcvtq_f32_s32(smv[hh]));
                tt = vsubq_f32(tt, m);
                acc[t][hh] = vaddq_f32(acc[t][hh], tt);
            }
        }
    }
    for (int t = 0; t < K; t++) {
        vst1q_f32(out + t * os, acc[t][0]);
        vst1q_f32(out + t * os + 4, acc[t][1]);
    }
}

TGT static void SFX(rp_gemm_q4_K)(int64_t n, const void *tile, const void *vy, size_t ys,
                                  int64_t nt, const int32_t *aux, float *out, int64_t os) {
    (void)aux;
    const int64_t nb = n / QKK;
    for (int64_t t0 = 0; t0 < nt; t0 += 4) {
        const int k = (int)(nt - t0 < 4 ? nt - t0 : 4);
        const blk_q8_K *y[4];
        for (int t = 0; t < 4; t++)
            y[t] = (const blk_q8_K *)((const char *)vy + (size_t)(t0 + (t < k ? t : 0)) * ys);
        float *o = out + t0 * os;
        switch (k) {
        case 1:
            SFX(rp_q4_K_k)(nb, tile, y, 1, o, os);
            break;
        case 2:
            SFX(rp_q4_K_k)(nb, tile, y, 2, o, os);
            break;
        case 3:
            SFX(rp_q4_K_k)(nb, tile, y, 3, o, os);
            break;
        default:
            SFX(rp_q4_K_k)(nb, tile, y, 4, o, os);
            break;
        }
    }
}
#endif

/* ------------------------------------------------------------- table */

static void SFX(fill_int)(struct kern_ops *ops) {
    static const uint32_t types[] = {ICA_Q8_0, ICA_Q4_0, ICA_Q4_1, ICA_Q5_0, ICA_Q5_1, ICA_IQ4_NL,
                                     ICA_Q2_K, ICA_Q3_K, ICA_Q4_K, ICA_Q5_K, ICA_Q6_K, ICA_IQ4_XS};
    static const kern_vec_dot_fn dots[] = {
        SFX(dot_q8_0), SFX(dot_q4_0), SFX(dot_q4_1), SFX(dot_q5_0), SFX(dot_q5_1), SFX(dot_iq4_nl),
        SFX(dot_q2k),  SFX(dot_q3_K), SFX(dot_q4k),  SFX(dot_q5_K), SFX(dot_q6_K), SFX(dot_iq4_xs)};
    static const kern_dot4_fn dot4s[] = {SFX(dot4_q8_0), SFX(dot4_q4_0), SFX(dot4_q4_1),
                                         SFX(dot4_q5_0), SFX(dot4_q5_1), SFX(dot4_iq4_nl),
                                         SFX(dot4_q2k),  SFX(dot4_q3_K), SFX(dot4_q4k),
                                         SFX(dot4_q5_K), SFX(dot4_q6_K), SFX(dot4_iq4_xs)};
    ops[ICA_Q4_0].tile4 = SFX(tile4_q4_0);
    ops[ICA_Q8_0].tile4 = SFX(tile4_q8_0);
#if NEON_DOTPROD
    ops[ICA_Q4_0].rp_pack = SFX(rp_pack_q4_0);
    ops[ICA_Q4_0].rp_gemm = SFX(rp_gemm_q4_0);
    ops[ICA_Q4_0].rp_bytes = SFX(rp_bytes_q4_0);
    ops[ICA_Q4_0].rp_aux = SFX(rp_aux_q4_0);
    ops[ICA_Q4_0].rp_rows = NRP_ROWS;
    ops[ICA_Q4_K].rp_pack = SFX(rp_pack_q4_K);
    ops[ICA_Q4_K].rp_gemm = SFX(rp_gemm_q4_K);
    ops[ICA_Q4_K].rp_bytes = SFX(rp_bytes_q4_K);
    ops[ICA_Q4_K].rp_rows = NRP_ROWS;
#endif
    ops[ICA_IQ4_NL].tile4 = SFX(tile4_iq4_nl);
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        ops[types[k]].tr.vec_dot = dots[k];
        ops[types[k]].dot4 = dot4s[k];
    }
}
