/* x86 kernel bodies, compiled twice: by simd_avx2.c (AVX2 + FMA + F16C) and
 * by simd_avx512.c (the same plus AVX-512 F/BW/DQ/VL/VNNI/BF16). The
 * includer defines TGT (the function target attribute), SFX(name),
 * X86_VNNI (256-bit VPDPBUSD for the signed byte dots) and X86_512 (zmm
 * registers for the float types, VDPBF16PS for BF16).
 *
 * Each kernel follows its reference in ref.c operation for operation (see
 * the comments there for the llama.cpp kernel each one mirrors):
 *  - integer parts are exact sums, so any SIMD order of integer adds that
 *    gives the same integer per float lane is the same; the byte products
 *    use the abs/sign trick (|a| * sign(b, a)), exact for every operand
 *    pair except a < 0 with b = -128, which the activation quantizers never
 *    produce (their codes lie in [-127, 127]);
 *  - float parts keep the reference's lanes, fused multiply-adds and
 *    reduction trees (hsum_float_8, the 16-lane halving tree). */
#include "kern_impl.h"
#include "simd.h"

#include <immintrin.h>
#include <math.h>

/* ------------------------------------------------------------ helpers */

TGT static inline float h2f(uint16_t h) {
    return _cvtsh_ss(h);
}

TGT static inline uint16_t f2h(float f) {
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}

/* int32 lane l = sum of the products of signed bytes 4l..4l+3 of a and b. */
TGT static inline __m256i dot_ss(__m256i a, __m256i b) {
    const __m256i ax = _mm256_sign_epi8(a, a);
    const __m256i sy = _mm256_sign_epi8(b, a);
#if X86_VNNI
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1));
#endif
}

/* The same with |a| precomputed (one weight block, several activations). */
TGT static inline __m256i dot_ss_abs(__m256i ax, __m256i a, __m256i b) {
    const __m256i sy = _mm256_sign_epi8(b, a);
#if X86_VNNI
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1));
#endif
}

/* hsum_float_8: r_i = v[i+4] + v[i], then (r0 + r2) + (r1 + r3). */
TGT static inline float hsum8(__m256 v) {
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

/* The 16-lane halving tree (reduce16 in ref.c) on lanes lo = 0..7, hi = 8..15. */
TGT static inline float reduce16_2x8(__m256 lo, __m256 hi) {
    return hsum8(_mm256_add_ps(hi, lo));
}

TGT static inline int hsum_i32(__m256i v) {
    __m128i r = _mm_add_epi32(_mm256_extracti128_si256(v, 1), _mm256_castsi256_si128(v));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0x4e));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0xb1));
    return _mm_cvtsi128_si32(r);
}

/* [sum(a), sum(b), sum(c), sum(d)] of four 8-lane int32 vectors. */
TGT static inline __m128i hsum4_i32(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_hadd_epi32(a, b);
    const __m256i cd = _mm256_hadd_epi32(c, d);
    const __m256i abcd = _mm256_hadd_epi32(ab, cd);
    return _mm_add_epi32(_mm256_castsi256_si128(abcd), _mm256_extracti128_si256(abcd, 1));
}

/* 32 nibbles of a Q4 block in element order (low nibbles, then high), 0..15. */
TGT static inline __m256i q4_bytes(const uint8_t *qs) {
    const __m128i t = _mm_loadu_si128((const __m128i *)qs);
    const __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0f));
}

/* fmaf without a libm call. */
TGT static inline float fma1(float a, float b, float c) {
    return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)));
}

/* acc + lanes of (unsigned bytes u) . (signed bytes s), 4 products a lane. */
TGT static inline __m256i dot_us_acc(__m256i acc, __m256i u, __m256i s) {
#if X86_VNNI
    return _mm256_dpbusd_epi32(acc, u, s);
#else
    return _mm256_add_epi32(acc,
                            _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

/* Software prefetch PF_DIST bytes ahead of a weight stream: the hardware
 * prefetchers of the VMs measured here fall far behind on 4-8 streams
 * (Q4_0 gemv went from 4.3 to 10.5 GB/s on one core). One call per 64
 * bytes or less of weights read. */
#define PF_DIST 4096
#define pf(p)   _mm_prefetch((const char *)(p) + PF_DIST, _MM_HINT_T0)

TGT static inline __m256i loadu256(const void *p) {
    return _mm256_loadu_si256((const __m256i *)p);
}

/* ------------------------------------------------- activation rounding */

/* 32 floats -> 32 int8 rounded to nearest even, element order, saturated. */
TGT static inline __m256i round_pack32(const float *x, __m256 mul) {
    __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x), mul),
                                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8), mul),
                                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 16), mul),
                                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 24), mul),
                                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const __m256i p01 = _mm256_packs_epi32(i0, i1);
    const __m256i p23 = _mm256_packs_epi32(i2, i3);
    const __m256i p = _mm256_packs_epi16(p01, p23);
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

TGT static inline float amax32(const float *x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_andnot_ps(sign, _mm256_loadu_ps(x));
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8)));
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 16)));
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 24)));
    __m128 r = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
    r = _mm_max_ps(r, _mm_movehl_ps(r, r));
    r = _mm_max_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

TGT static void SFX(quant_q8_0)(const float *x, void *vy, int64_t k) {
    blk_q8_0 *y = vy;
    for (int64_t i = 0; i < k / QK32; i++, x += QK32) {
        const float amax = amax32(x);
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[i].d = f2h(d);
        _mm256_storeu_si256((__m256i *)y[i].qs, round_pack32(x, _mm256_set1_ps(id)));
    }
}

TGT static void SFX(quant_q8_1)(const float *x, void *vy, int64_t k) {
    blk_q8_1 *y = vy;
    for (int64_t i = 0; i < k / QK32; i++, x += QK32) {
        const float amax = amax32(x);
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[i].d = f2h(d);
        const __m256i q = round_pack32(x, _mm256_set1_ps(id));
        _mm256_storeu_si256((__m256i *)y[i].qs, q);
        const __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), q);
        const int sum = hsum_i32(_mm256_madd_epi16(s16, _mm256_set1_epi16(1)));
        y[i].s = f2h(d * (float)sum);
    }
}

TGT static void SFX(quant_q8_K)(const float *x, void *vy, int64_t k) {
    blk_q8_K *y = vy;
    for (int64_t i = 0; i < k / QKK; i++, x += QKK) {
        float amax = 0;
        for (int j = 0; j < QKK; j += 32) {
            const float a = amax32(x + j);
            amax = a > amax ? a : amax;
        }
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float max = 0;
        for (int j = 0; j < QKK; j++)
            if (fabsf(x[j]) == amax) {
                max = x[j];
                break;
            }
        const float iscale = -127.f / max;
        const __m256 mul = _mm256_set1_ps(iscale);
        const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
        for (int j = 0; j < QKK; j += 32) {
            /* min(127, .) before the pack: the pack saturates only below */
            __m256i q = round_pack32(x + j, mul);
            q = _mm256_min_epi8(q, _mm256_set1_epi8(127));
            _mm256_storeu_si256((__m256i *)(y[i].qs + j), q);
            /* sums of 16: int16 pairs, then pairs of pairs (lanes 0-1 | 2-3 ...) */
            const __m256i s32 = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q), ones16);
            const __m256i s = _mm256_hadd_epi32(s32, s32); /* [01 23 01 23 | 45 67 45 67] */
            const __m256i t = _mm256_hadd_epi32(s, s);
            y[i].bsums[j / 16] = (int16_t)_mm256_extract_epi32(t, 0);
            y[i].bsums[j / 16 + 1] = (int16_t)_mm256_extract_epi32(t, 4);
        }
        y[i].d = 1 / iscale;
    }
}

TGT static void SFX(quant_f16)(const float *x, void *vy, int64_t k) {
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 8 <= k; i += 8)
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < k; i++)
        y[i] = kern_f32_to_f16(x[i]);
}

/* GGML_FP32_TO_BF16: (u + 0x7fff + ((u >> 16) & 1)) >> 16, NaN -> quiet. */
TGT static void SFX(quant_bf16)(const float *x, void *vy, int64_t k) {
    uint16_t *y = vy;
    int64_t i = 0;
    const __m256i absm = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    for (; i + 8 <= k; i += 8) {
        const __m256i u = _mm256_loadu_si256((const __m256i *)(x + i));
        const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, absm), inf);
        const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
        __m256i r = _mm256_srli_epi32(
            _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), odd)), 16);
        const __m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(64));
        r = _mm256_blendv_epi8(r, q, nan);
        const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
        _mm_storeu_si128((__m128i *)(y + i), _mm256_castsi256_si128(p));
    }
    for (; i < k; i++)
        y[i] = kern_f32_to_bf16(x[i]);
}

/* ------------------------------------------------------ 32-block dots */

/* Q8_0 (vec_dot_q8_0_q8_0): 8 lanes, acc = fma(dx*dy, lane, acc), hsum8. */
TGT static void SFX(dot_q8_0)(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q8_0 *x = vx, *y = vy;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK32; i++) {
        pf(x + i);
        const __m256i l = dot_ss(loadu256(x[i].qs), loadu256(y[i].qs));
        const float d = h2f(x[i].d) * h2f(y[i].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(l), acc);
    }
    *s = hsum8(acc);
}

TGT static void SFX(dot4_q8_0)(int64_t n, const void *vx, const void *vy, size_t ys, int nt,
                               float *out, int64_t os) {
    const blk_q8_0 *x = vx;
    const blk_q8_0 *y[4];
    for (int t = 0; t < 4; t++)
        y[t] = (const blk_q8_0 *)((const char *)vy + (size_t)(t < nt ? t : nt - 1) * ys);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    for (int64_t i = 0; i < n / QK32; i++) {
        const __m256i q = loadu256(x[i].qs);
        const __m256i ax = _mm256_sign_epi8(q, q);
        const float dx = h2f(x[i].d);
        for (int t = 0; t < 4; t++) {
            const __m256i l = dot_ss_abs(ax, q, loadu256(y[t][i].qs));
            const float d = dx * h2f(y[t][i].d);
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(l), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++)
        out[t * os] = hsum8(acc[t]);
}

/* Four Q8_0 rows by up to four tokens, two rows at a time: the activation
 * loads and scales are shared by the two rows; per output the lanes, FMAs
 * and tree of dot_q8_0. */
TGT static void SFX(tile4_q8_0)(int64_t n, const void *vx, size_t xs, const void *vy, size_t ys,
                                int nt, float *out, int64_t os) {
    const blk_q8_0 *y[4];
    for (int t = 0; t < 4; t++)
        y[t] = (const blk_q8_0 *)((const char *)vy + (size_t)(t < nt ? t : nt - 1) * ys);
    for (int rp = 0; rp < 4; rp += 2) {
        const blk_q8_0 *x0 = (const blk_q8_0 *)((const char *)vx + (size_t)rp * xs);
        const blk_q8_0 *x1 = (const blk_q8_0 *)((const char *)vx + (size_t)(rp + 1) * xs);
        __m256 a0[4], a1[4];
        for (int t = 0; t < 4; t++)
            a0[t] = a1[t] = _mm256_setzero_ps();
        for (int64_t i = 0; i < n / QK32; i++) {
            pf(x0 + i);
            pf(x1 + i);
            const __m256i q0 = loadu256(x0[i].qs), q1 = loadu256(x1[i].qs);
            const __m256i ax0 = _mm256_sign_epi8(q0, q0), ax1 = _mm256_sign_epi8(q1, q1);
            const float d0 = h2f(x0[i].d), d1 = h2f(x1[i].d);
            for (int t = 0; t < nt; t++) {
                const __m256i yv = loadu256(y[t][i].qs);
                const float dy = h2f(y[t][i].d);
                const __m256i l0 = dot_ss_abs(ax0, q0, yv);
                const __m256i l1 = dot_ss_abs(ax1, q1, yv);
                a0[t] = _mm256_fmadd_ps(_mm256_set1_ps(d0 * dy), _mm256_cvtepi32_ps(l0), a0[t]);
                a1[t] = _mm256_fmadd_ps(_mm256_set1_ps(d1 * dy), _mm256_cvtepi32_ps(l1), a1[t]);
            }
        }
        for (int t = 0; t < nt; t++) {
            out[t * os + rp] = hsum8(a0[t]);
            out[t * os + rp + 1] = hsum8(a1[t]);
        }
    }
}

/* Q4_0 (repacked gemv/gemm in llama.cpp): per block the exact integer dot,
 * then acc = fma((float)isum, dx*dy, acc), one float chain per output. */
TGT static inline __m256i q4_0_signed(const uint8_t *qs) {
    return _mm256_sub_epi8(q4_bytes(qs), _mm256_set1_epi8(8));
}

TGT static void SFX(dot_q4_0)(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q4_0 *x = vx;
    const blk_q8_0 *y = vy;
    const int64_t nb = n / QK32;
    float acc = 0;
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        pf(x + i);
        pf(x + i + 2);
        __m256i l[4];
        for (int j = 0; j < 4; j++)
            l[j] = dot_ss(q4_0_signed(x[i + j].qs), loadu256(y[i + j].qs));
        float si[4];
        _mm_storeu_ps(si, _mm_cvtepi32_ps(hsum4_i32(l[0], l[1], l[2], l[3])));
        for (int j = 0; j < 4; j++)
            acc = fma1(si[j], h2f(x[i + j].d) * h2f(y[i + j].d), acc);
    }
    for (; i < nb; i++) {
        const int sumi = hsum_i32(dot_ss(q4_0_signed(x[i].qs), loadu256(y[i].qs)));
        acc = fma1((float)sumi, h2f(x[i].d) * h2f(y[i].d), acc);
    }
    *s = acc;
}

TGT static void SFX(dot4_q4_0)(int64_t n, const void *vx, const void *vy, size_t ys, int nt,
                               float *out, int64_t os) {
    const blk_q4_0 *x = vx;
    const blk_q8_0 *y[4];
    for (int t = 0; t < 4; t++)
        y[t] = (const blk_q8_0 *)((const char *)vy + (size_t)(t < nt ? t : nt - 1) * ys);
    __m128 acc = _mm_setzero_ps();
    for (int64_t i = 0; i < n / QK32; i++) {
        const __m256i q = q4_0_signed(x[i].qs);
        const __m256i ax = _mm256_sign_epi8(q, q);
        const __m256i l0 = dot_ss_abs(ax, q, loadu256(y[0][i].qs));
        const __m256i l1 = dot_ss_abs(ax, q, loadu256(y[1][i].qs));
        const __m256i l2 = dot_ss_abs(ax, q, loadu256(y[2][i].qs));
        const __m256i l3 = dot_ss_abs(ax, q, loadu256(y[3][i].qs));
        const __m128 si = _mm_cvtepi32_ps(hsum4_i32(l0, l1, l2, l3));
        const __m128 dy =
            _mm_setr_ps(h2f(y[0][i].d), h2f(y[1][i].d), h2f(y[2][i].d), h2f(y[3][i].d));
        const __m128 d = _mm_mul_ps(_mm_set1_ps(h2f(x[i].d)), dy);
        acc = _mm_fmadd_ps(si, d, acc);
    }
    float r[4];
    _mm_storeu_ps(r, acc);
    for (int t = 0; t < nt; t++)
        out[t * os] = r[t];
}

/* Four Q4_0 rows by up to four tokens: lane r of each token's float
 * accumulator is row r's chain (llama.cpp's repacked layout does the same).
 * The nibbles stay unsigned: (q - 8) . y = q . y - 8 * sum(y), the second
 * term once per token and block for the four rows. */
TGT static void SFX(tile4_q4_0)(int64_t n, const void *vx, size_t xs, const void *vy, size_t ys,
                                int nt, float *out, int64_t os) {
    const blk_q4_0 *x[4];
    const blk_q8_0 *y[4];
    for (int r = 0; r < 4; r++)
        x[r] = (const blk_q4_0 *)((const char *)vx + (size_t)r * xs);
    for (int t = 0; t < 4; t++)
        y[t] = (const blk_q8_0 *)((const char *)vy + (size_t)(t < nt ? t : nt - 1) * ys);
    __m128 acc[4] = {_mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps()};
    const __m256i eight = _mm256_set1_epi8(8);
    for (int64_t i = 0; i < n / QK32; i++) {
        if ((i & 3) == 0)
            for (int r = 0; r < 4; r++)
                _mm_prefetch((const char *)(x[r] + i) + 8192, _MM_HINT_T0);
        const __m256i q0 = q4_bytes(x[0][i].qs), q1 = q4_bytes(x[1][i].qs);
        const __m256i q2 = q4_bytes(x[2][i].qs), q3 = q4_bytes(x[3][i].qs);
        const __m128 dx = _mm_cvtph_ps(_mm_setr_epi16(
            (short)x[0][i].d, (short)x[1][i].d, (short)x[2][i].d, (short)x[3][i].d, 0, 0, 0, 0));
        for (int t = 0; t < nt; t++) {
            const __m256i yv = loadu256(y[t][i].qs);
            const __m256i corr = _mm256_sub_epi32(_mm256_setzero_si256(),
                                                  dot_us_acc(_mm256_setzero_si256(), eight, yv));
            const __m256i l0 = dot_us_acc(corr, q0, yv), l1 = dot_us_acc(corr, q1, yv);
            const __m256i l2 = dot_us_acc(corr, q2, yv), l3 = dot_us_acc(corr, q3, yv);
            const __m128 si = _mm_cvtepi32_ps(hsum4_i32(l0, l1, l2, l3));
            const __m128 d = _mm_mul_ps(dx, _mm_set1_ps(h2f(y[t][i].d)));
            acc[t] = _mm_fmadd_ps(si, d, acc[t]);
        }
    }
    for (int t = 0; t < nt; t++)
        _mm_storeu_ps(out + t * os, acc[t]);
}

/* Packed Q4_0 tiles (prompt batches). Per block: 8 groups of 32 bytes, group
 * g holding the unsigned quants 4g..4g+3 of rows 0..7 (4 bytes per row, an
 * int32 lane per row), then the 8 rows' fp16 scales as floats. A block of a
 * token is then 8 VPDPBUSD of a packed group by the broadcast activation
 * bytes 4g..4g+3: lane r ends with row r's exact q . y; minus 8 * sum(y)
 * (same for all lanes, from 8 more VPDPBUSD of 8s), then the reference's
 * acc = fma((float)isum, dx * dy, acc) with lane r = row r. */
#define Q4P_BLOCK 288
/* Longest row the packed kernels take (blocks), for their stack arrays. */
#define QP_MAX_BLOCKS 512

/* cs[b] = -8 * (sum of the 32 codes of block b): the offset of Q4_0's
 * unsigned nibbles, the same for every row. */
TGT static inline void q8_0_negsum8(const blk_q8_0 *y, int64_t nb, int32_t *cs) {
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (int64_t b = 0; b < nb; b++) {
        const __m256i v = _mm256_xor_si256(loadu256(y[b].qs), flip);
        const __m256i sd = _mm256_sad_epu8(v, _mm256_setzero_si256());
        __m128i h = _mm_add_epi64(_mm256_castsi256_si128(sd), _mm256_extracti128_si256(sd, 1));
        h = _mm_add_epi64(h, _mm_unpackhi_epi64(h, h));
        cs[b] = -8 * (_mm_cvtsi128_si32(h) - 32 * 128);
    }
}

static size_t SFX(pack_bytes_q4_0)(int64_t n) {
    return (size_t)(n / QK32) * Q4P_BLOCK;
}

/* 8x8 transpose of int32 lanes. */
TGT static inline void transpose8(__m256i r[8]) {
    __m256i t[8], u[8];
    for (int k = 0; k < 4; k++) {
        t[2 * k] = _mm256_unpacklo_epi32(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm256_unpackhi_epi32(r[2 * k], r[2 * k + 1]);
    }
    for (int k = 0; k < 2; k++) {
        u[4 * k + 0] = _mm256_unpacklo_epi64(t[4 * k], t[4 * k + 2]);
        u[4 * k + 1] = _mm256_unpackhi_epi64(t[4 * k], t[4 * k + 2]);
        u[4 * k + 2] = _mm256_unpacklo_epi64(t[4 * k + 1], t[4 * k + 3]);
        u[4 * k + 3] = _mm256_unpackhi_epi64(t[4 * k + 1], t[4 * k + 3]);
    }
    for (int g = 0; g < 4; g++) {
        r[g] = _mm256_permute2x128_si256(u[g], u[g + 4], 0x20);
        r[g + 4] = _mm256_permute2x128_si256(u[g], u[g + 4], 0x31);
    }
}

TGT static void SFX(pack8_q4_0)(int64_t n, const void *vx, size_t xs, void *vbuf) {
    uint8_t *buf = vbuf;
    for (int64_t b = 0; b < n / QK32; b++, buf += Q4P_BLOCK) {
        __m256i r[8];
        float dx[8];
        for (int k = 0; k < 8; k++) {
            const blk_q4_0 *x = (const blk_q4_0 *)((const char *)vx + (size_t)k * xs) + b;
            r[k] = q4_bytes(x->qs);
            dx[k] = h2f(x->d);
        }
        transpose8(r);
        for (int g = 0; g < 8; g++)
            _mm256_storeu_si256((__m256i *)(buf + 32 * g), r[g]);
        memcpy(buf + 256, dx, sizeof dx);
    }
}

TGT static void SFX(gemm8_q4_0)(int64_t n, const void *vbuf, const void *vy, size_t ys, int64_t nt,
                                float *out, int64_t os) {
    const int64_t nb = n / QK32;
    for (int64_t t0 = 0; t0 < nt; t0 += 4) {
        const int k = (int)(nt - t0 < 4 ? nt - t0 : 4);
        const blk_q8_0 *y[4];
        for (int t = 0; t < 4; t++)
            y[t] = (const blk_q8_0 *)((const char *)vy + (size_t)(t0 + (t < k ? t : k - 1)) * ys);
        int32_t cs[4][QP_MAX_BLOCKS];
        for (int t = 0; t < 4; t++)
            q8_0_negsum8(y[t], nb, cs[t]);
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                         _mm256_setzero_ps()};
        const uint8_t *pb = vbuf;
        for (int64_t b = 0; b < nb; b++, pb += Q4P_BLOCK) {
            const __m256 dx = _mm256_loadu_ps((const float *)(pb + 256));
            for (int t = 0; t < 4; t++) {
                const int8_t *yq = y[t][b].qs;
                __m256i ia = _mm256_set1_epi32(cs[t][b]);
                for (int g = 0; g < 8; g++) {
                    int32_t v;
                    memcpy(&v, yq + 4 * g, 4);
                    ia = dot_us_acc(ia, loadu256(pb + 32 * g), _mm256_set1_epi32(v));
                }
                const __m256 si = _mm256_cvtepi32_ps(ia);
                const __m256 d = _mm256_mul_ps(dx, _mm256_set1_ps(h2f(y[t][b].d)));
                acc[t] = _mm256_fmadd_ps(si, d, acc[t]);
            }
        }
        for (int t = 0; t < k; t++)
            _mm256_storeu_ps(out + (t0 + t) * os, acc[t]);
    }
}

#if X86_512
/* The same with 16 rows in zmm lanes (576 bytes per block: 8 groups of
 * 64 bytes, then 16 float scales). */
#define Q4P16_BLOCK 576

static size_t SFX(pack_bytes16_q4_0)(int64_t n) {
    return (size_t)(n / QK32) * Q4P16_BLOCK;
}

TGT static void SFX(pack16_q4_0)(int64_t n, const void *vx, size_t xs, void *vbuf) {
    uint8_t *buf = vbuf;
    for (int64_t b = 0; b < n / QK32; b++, buf += Q4P16_BLOCK) {
        __m256i r[2][8];
        float dx[16];
        for (int k = 0; k < 16; k++) {
            const blk_q4_0 *x = (const blk_q4_0 *)((const char *)vx + (size_t)k * xs) + b;
            r[k / 8][k % 8] = q4_bytes(x->qs);
            dx[k] = h2f(x->d);
        }
        transpose8(r[0]);
        transpose8(r[1]);
        for (int g = 0; g < 8; g++) {
            _mm256_storeu_si256((__m256i *)(buf + 64 * g), r[0][g]);
            _mm256_storeu_si256((__m256i *)(buf + 64 * g + 32), r[1][g]);
        }
        memcpy(buf + 512, dx, sizeof dx);
    }
}

TGT static void SFX(gemm16_q4_0)(int64_t n, const void *vbuf, const void *vy, size_t ys, int64_t nt,
                                 float *out, int64_t os) {
    const int64_t nb = n / QK32;
    for (int64_t t0 = 0; t0 < nt; t0 += 4) {
        const int k = (int)(nt - t0 < 4 ? nt - t0 : 4);
        const blk_q8_0 *y[4];
        for (int t = 0; t < 4; t++)
            y[t] = (const blk_q8_0 *)((const char *)vy + (size_t)(t0 + (t < k ? t : k - 1)) * ys);
        int32_t cs[4][QP_MAX_BLOCKS];
        for (int t = 0; t < 4; t++)
            q8_0_negsum8(y[t], nb, cs[t]);
        __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                         _mm512_setzero_ps()};
        const uint8_t *pb = vbuf;
        for (int64_t b = 0; b < nb; b++, pb += Q4P16_BLOCK) {
            const __m512 dx = _mm512_loadu_ps((const float *)(pb + 512));
            __m512i w[8];
            for (int g = 0; g < 8; g++)
                w[g] = _mm512_loadu_si512((const void *)(pb + 64 * g));
            for (int t = 0; t < 4; t++) {
                const int8_t *yq = y[t][b].qs;
                __m512i ia = _mm512_set1_epi32(cs[t][b]);
                for (int g = 0; g < 8; g++) {
                    int32_t v;
                    memcpy(&v, yq + 4 * g, 4);
                    ia = _mm512_dpbusd_epi32(ia, w[g], _mm512_set1_epi32(v));
                }
                const __m512 si = _mm512_cvtepi32_ps(ia);
                const __m512 d = _mm512_mul_ps(dx, _mm512_set1_ps(h2f(y[t][b].d)));
                acc[t] = _mm512_fmadd_ps(si, d, acc[t]);
            }
        }
        for (int t = 0; t < k; t++)
            _mm512_storeu_ps(out + (t0 + t) * os, acc[t]);
    }
}
#endif

/* ------------------------------------------------------- K-quant dots */

/* Q4_K (repacked in llama.cpp): exact isum and summs per super-block, then
 * t = d*isum; t = t - dmin*summs; sumf += t in float. */
struct q4k_unp {
    __m256i q[8]; /* sub-block j: 32 quants 0..15 */
    __m256i sc;   /* the 8 scales as int16, in both 128-bit halves */
    __m128i mn;   /* the 8 mins as int16 */
};

/* The 12 scale bytes as 8 six-bit scales (bytes 0..7) and 8 mins (8..15). */
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

TGT static inline void q4k_unpack(const blk_q4_K *b, struct q4k_unp *u) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (int c = 0; c < 4; c++) {
        const __m256i v = loadu256(b->qs + 32 * c);
        u->q[2 * c] = _mm256_and_si256(v, m4);
        u->q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    }
    uint8_t sm[16];
    k4_scales16(b->scales, sm);
    const __m128i v = _mm_loadu_si128((const __m128i *)sm);
    u->sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(v));
    u->mn = _mm_cvtepu8_epi16(_mm_srli_si128(v, 8));
}

TGT static inline float q4k_block(const blk_q4_K *b, const struct q4k_unp *u, const blk_q8_K *y) {
    __m256i acc = _mm256_setzero_si256();
    for (int j = 0; j < 8; j++) {
        /* int16 j of sc in every int16 lane */
        const __m256i shuf = _mm256_set1_epi16((short)(0x0100 * (2 * j + 1) + 2 * j));
        const __m256i scj = _mm256_shuffle_epi8(u->sc, shuf);
        const __m256i p = _mm256_maddubs_epi16(u->q[j], loadu256(y->qs + 32 * j));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, scj));
    }
    const __m256i bs = loadu256(y->bsums);
    const __m128i bp = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    const __m128i mp = _mm_madd_epi16(bp, u->mn);
    /* isum (8 lanes) and summs (4 lanes) reduced together */
    const __m256i both = _mm256_hadd_epi32(acc, _mm256_castsi128_si256(mp));
    const __m256i b2 = _mm256_hadd_epi32(both, both);
    /* lanes: [a01+a23, s01+s23, ., . | a45+a67, ., ., .] */
    const int isum = _mm256_extract_epi32(b2, 0) + _mm256_extract_epi32(b2, 4);
    const int summs = _mm256_extract_epi32(b2, 1);
    const float d = h2f(b->d) * y->d;
    float t = d * (float)isum;
    const float dmin = h2f(b->dmin) * y->d;
    const float m = dmin * (float)summs;
    t = t - m;
    return t;
}

/* Packed Q4_K tiles of 8 rows (prompt batches). Per super-block: for each
 * sub-block j and group g, 32 bytes = quants 32j+4g..+3 of rows 0..7 (one
 * int32 lane per row); then per j the rows' scales (int32 lanes) and mins
 * (int16 pairs (mn, mn), for the bsum pairs); then d and dmin per row. A
 * sub-block of a token: 8 VPDPBUSD of a packed group by the broadcast
 * activation bytes leave row r's exact q . y in lane r; times the scale,
 * summed: isum; summs from 8 pair products of the bsums. Then the
 * reference's float steps, lane r = row r. */
#define Q4KP_Q     2048
#define Q4KP_SC    (Q4KP_Q)
#define Q4KP_MN    (Q4KP_SC + 256)
#define Q4KP_D     (Q4KP_MN + 256)
#define Q4KP_BLOCK (Q4KP_D + 64)

static size_t SFX(pack_bytes_q4_K)(int64_t n) {
    return (size_t)(n / QKK) * Q4KP_BLOCK;
}

TGT static void SFX(pack8_q4_K)(int64_t n, const void *vx, size_t xs, void *vbuf) {
    uint8_t *buf = vbuf;
    for (int64_t b = 0; b < n / QKK; b++, buf += Q4KP_BLOCK) {
        int32_t sc[8][8];
        int16_t mn[8][16];
        float d[16];
        __m256i r[8][8]; /* [sub-block][row] */
        for (int k = 0; k < 8; k++) {
            const blk_q4_K *x = (const blk_q4_K *)((const char *)vx + (size_t)k * xs) + b;
            struct q4k_unp u;
            q4k_unpack(x, &u);
            for (int j = 0; j < 8; j++)
                r[j][k] = u.q[j];
            uint8_t sm[16];
            k4_scales16(x->scales, sm);
            for (int j = 0; j < 8; j++) {
                sc[j][k] = sm[j];
                mn[j][2 * k] = mn[j][2 * k + 1] = sm[8 + j];
            }
            d[k] = h2f(x->d);
            d[8 + k] = h2f(x->dmin);
        }
        for (int j = 0; j < 8; j++) {
            transpose8(r[j]);
            for (int g = 0; g < 8; g++)
                _mm256_storeu_si256((__m256i *)(buf + 256 * j + 32 * g), r[j][g]);
        }
        memcpy(buf + Q4KP_SC, sc, sizeof sc);
        memcpy(buf + Q4KP_MN, mn, sizeof mn);
        memcpy(buf + Q4KP_D, d, sizeof d);
    }
}

TGT static void SFX(gemm8_q4_K)(int64_t n, const void *vbuf, const void *vy, size_t ys, int64_t nt,
                                float *out, int64_t os) {
    const int64_t nb = n / QKK;
    for (int64_t t0 = 0; t0 < nt; t0 += 4) {
        const int k = (int)(nt - t0 < 4 ? nt - t0 : 4);
        const blk_q8_K *y[4];
        for (int t = 0; t < 4; t++)
            y[t] = (const blk_q8_K *)((const char *)vy + (size_t)(t0 + (t < k ? t : k - 1)) * ys);
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                         _mm256_setzero_ps()};
        const uint8_t *pb = vbuf;
        for (int64_t b = 0; b < nb; b++, pb += Q4KP_BLOCK) {
            __m256i isum[4], summs[4];
            for (int t = 0; t < 4; t++)
                isum[t] = summs[t] = _mm256_setzero_si256();
            for (int j = 0; j < 8; j++) {
                __m256i ia[4];
                for (int t = 0; t < 4; t++)
                    ia[t] = _mm256_setzero_si256();
                for (int g = 0; g < 8; g++) {
                    const __m256i w = loadu256(pb + 256 * j + 32 * g);
                    for (int t = 0; t < 4; t++) {
                        int32_t v;
                        memcpy(&v, y[t][b].qs + 32 * j + 4 * g, 4);
                        ia[t] = dot_us_acc(ia[t], w, _mm256_set1_epi32(v));
                    }
                }
                const __m256i scj = loadu256(pb + Q4KP_SC + 32 * j);
                const __m256i mnj = loadu256(pb + Q4KP_MN + 32 * j);
                for (int t = 0; t < 4; t++) {
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_mullo_epi32(ia[t], scj));
                    int32_t bp;
                    memcpy(&bp, y[t][b].bsums + 2 * j, 4);
                    summs[t] =
                        _mm256_add_epi32(summs[t], _mm256_madd_epi16(mnj, _mm256_set1_epi32(bp)));
                }
            }
            const __m256 dx = _mm256_loadu_ps((const float *)(pb + Q4KP_D));
            const __m256 dm = _mm256_loadu_ps((const float *)(pb + Q4KP_D + 32));
            for (int t = 0; t < 4; t++) {
                const __m256 yd = _mm256_set1_ps(y[t][b].d);
                const __m256 d = _mm256_mul_ps(dx, yd);
                __m256 tt = _mm256_mul_ps(d, _mm256_cvtepi32_ps(isum[t]));
                const __m256 dmin = _mm256_mul_ps(dm, yd);
                const __m256 m = _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(summs[t]));
                tt = _mm256_sub_ps(tt, m);
                acc[t] = _mm256_add_ps(acc[t], tt);
            }
        }
        for (int t = 0; t < k; t++)
            _mm256_storeu_ps(out + (t0 + t) * os, acc[t]);
    }
}

TGT static void SFX(dot_q4_K)(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q4_K *x = vx;
    const blk_q8_K *y = vy;
    struct q4k_unp u;
    float sumf = 0;
    for (int64_t i = 0; i < n / QKK; i++) {
        pf(x + i);
        pf((const char *)(x + i) + 64);
        pf((const char *)(x + i) + 128);
        q4k_unpack(&x[i], &u);
        sumf += q4k_block(&x[i], &u, &y[i]);
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
            sumf[t] += q4k_block(&x[i], &u, &y[i]);
        }
    }
    for (int t = 0; t < nt; t++)
        out[t * os] = sumf[t];
}

/* Q6_K (ggml_vec_dot_q6_K_q8_K, AVX2): lanes of sc * (unsigned q6 * q8),
 * minus 32 * (sc * bsums) per lane pair, acc = fma(d, lane, acc), hsum8. */
struct q6k_unp {
    __m256i q[8];  /* 32-element chunk c: quants 0..63 */
    __m256i sc[8]; /* int16 scale of each half of chunk c */
    __m256i sub;   /* 32 * (sc[2l]*bsums[2l] + ...) needs y: scales as int16 */
    __m256i sc16;  /* the 16 scales as int16 */
};

TGT static inline void q6k_unpack(const blk_q6_K *b, struct q6k_unp *u) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3);
    for (int h = 0; h < 2; h++) {
        const __m256i q0 = loadu256(b->ql + 64 * h);
        const __m256i q1 = loadu256(b->ql + 64 * h + 32);
        const __m256i hb = loadu256(b->qh + 32 * h);
        const __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4);
        const __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m3), 4);
        const __m256i h2 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m3), 4);
        const __m256i h3 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m3), 4);
        u->q[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(q0, m4), h0);
        u->q[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(q1, m4), h1);
        u->q[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q0, 4), m4), h2);
        u->q[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q1, 4), m4), h3);
    }
    for (int c = 0; c < 8; c++)
        u->sc[c] = _mm256_set_m128i(_mm_set1_epi16(b->scales[2 * c + 1]),
                                    _mm_set1_epi16(b->scales[2 * c]));
    u->sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
}

TGT static inline __m256i q6k_lanes(const struct q6k_unp *u, const blk_q8_K *y) {
    __m256i acc = _mm256_setzero_si256();
    for (int c = 0; c < 8; c++) {
        const __m256i p = _mm256_maddubs_epi16(u->q[c], loadu256(y->qs + 32 * c));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, u->sc[c]));
    }
    const __m256i bs = loadu256(y->bsums);
    const __m256i sub = _mm256_madd_epi16(bs, u->sc16);
    return _mm256_sub_epi32(acc, _mm256_slli_epi32(sub, 5));
}

TGT static void SFX(dot_q6_K)(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q6_K *x = vx;
    const blk_q8_K *y = vy;
    struct q6k_unp u;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QKK; i++) {
        pf(x + i);
        pf((const char *)(x + i) + 64);
        pf((const char *)(x + i) + 128);
        pf((const char *)(x + i) + 192);
        q6k_unpack(&x[i], &u);
        const __m256i l = q6k_lanes(&u, &y[i]);
        const float d = y[i].d * h2f(x[i].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(l), acc);
    }
    *s = hsum8(acc);
}

TGT static void SFX(dot4_q6_K)(int64_t n, const void *vx, const void *vy, size_t ys, int nt,
                               float *out, int64_t os) {
    const blk_q6_K *x = vx;
    struct q6k_unp u;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    for (int64_t i = 0; i < n / QKK; i++) {
        q6k_unpack(&x[i], &u);
        const float dx = h2f(x[i].d);
        for (int t = 0; t < nt; t++) {
            const blk_q8_K *y = (const blk_q8_K *)((const char *)vy + (size_t)t * ys);
            const __m256i l = q6k_lanes(&u, &y[i]);
            const float d = y[i].d * dx;
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(l), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++)
        out[t * os] = hsum8(acc[t]);
}

/* --------------------------------------------------------- plain dots */

/* Loads 16 elements of F32 or F16 as float lanes lo (0..7) and hi (8..15). */
TGT static inline void ld16_f32(const float *p, __m256 *lo, __m256 *hi) {
    *lo = _mm256_loadu_ps(p);
    *hi = _mm256_loadu_ps(p + 8);
}

TGT static inline void ld16_f16(const uint16_t *p, __m256 *lo, __m256 *hi) {
    *lo = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    *hi = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 8)));
}

/* GGML_F32_STEP 64: 4 accumulators x 16 lanes (here 2 x 8 each), tree
 * (acc0+acc2, acc1+acc3, +), then the 16-lane halving tree. */
#define PLAIN_DOT(name, T, ld, tail_expr, tail_double)                                             \
    TGT static void name(int64_t n, float *s, const void *vx, const void *vy) {                    \
        const T *x = vx, *y = vy;                                                                  \
        __m256 lo[4], hi[4];                                                                       \
        for (int j = 0; j < 4; j++)                                                                \
            lo[j] = hi[j] = _mm256_setzero_ps();                                                   \
        const int64_t np = n & ~(int64_t)63;                                                       \
        for (int64_t i = 0; i < np; i += 64)                                                       \
            for (int j = 0; j < 4; j++) {                                                          \
                __m256 xl, xh, yl, yh;                                                             \
                ld(x + i + 16 * j, &xl, &xh);                                                      \
                ld(y + i + 16 * j, &yl, &yh);                                                      \
                lo[j] = _mm256_fmadd_ps(xl, yl, lo[j]);                                            \
                hi[j] = _mm256_fmadd_ps(xh, yh, hi[j]);                                            \
            }                                                                                      \
        const __m256 l02 = _mm256_add_ps(lo[0], lo[2]), l13 = _mm256_add_ps(lo[1], lo[3]);         \
        const __m256 h02 = _mm256_add_ps(hi[0], hi[2]), h13 = _mm256_add_ps(hi[1], hi[3]);         \
        const float r = reduce16_2x8(_mm256_add_ps(l02, l13), _mm256_add_ps(h02, h13));            \
        if (tail_double) {                                                                         \
            double sumf = (double)r;                                                               \
            for (int64_t i = np; i < n; i++)                                                       \
                sumf += (double)(tail_expr);                                                       \
            *s = (float)sumf;                                                                      \
        } else {                                                                                   \
            float sumf = r;                                                                        \
            for (int64_t i = np; i < n; i++) { /* unfused, as ref.c */                             \
                const float p = (tail_expr);                                                       \
                sumf = sumf + p;                                                                   \
            }                                                                                      \
            *s = sumf;                                                                             \
        }                                                                                          \
    }

PLAIN_DOT(SFX(dot_f32), float, ld16_f32, x[i] * y[i], 0)
PLAIN_DOT(SFX(dot_f16), uint16_t, ld16_f16, h2f(x[i]) * h2f(y[i]), 1)

/* llamafile sgemm order (n % 16 == 0): one 16-lane accumulator per output. */
#define SGEMM4(name, T, ld)                                                                        \
    TGT static void name(int64_t n, const void *vx, const void *vy, size_t ys, int nt, float *out, \
                         int64_t os) {                                                             \
        const T *x = vx;                                                                           \
        const T *y[4];                                                                             \
        for (int t = 0; t < 4; t++)                                                                \
            y[t] = (const T *)((const char *)vy + (size_t)(t < nt ? t : nt - 1) * ys);             \
        __m256 lo[4], hi[4];                                                                       \
        for (int t = 0; t < 4; t++)                                                                \
            lo[t] = hi[t] = _mm256_setzero_ps();                                                   \
        for (int64_t i = 0; i < n; i += 16) {                                                      \
            __m256 xl, xh;                                                                         \
            ld(x + i, &xl, &xh);                                                                   \
            for (int t = 0; t < 4; t++) {                                                          \
                __m256 yl, yh;                                                                     \
                ld(y[t] + i, &yl, &yh);                                                            \
                lo[t] = _mm256_fmadd_ps(xl, yl, lo[t]);                                            \
                hi[t] = _mm256_fmadd_ps(xh, yh, hi[t]);                                            \
            }                                                                                      \
        }                                                                                          \
        for (int t = 0; t < nt; t++)                                                               \
            out[t * os] = reduce16_2x8(lo[t], hi[t]);                                              \
    }

SGEMM4(SFX(sgemm4_f32), float, ld16_f32)
SGEMM4(SFX(sgemm4_f16), uint16_t, ld16_f16)

#if X86_512
/* VDPBF16PS: per lane the odd then the even product added, each rounded,
 * DAZ/FTZ - exactly what the reference emulates. */
TGT static inline __m512 dpbf16(__m512 acc, const uint16_t *x, const uint16_t *y) {
    const __m512i a = _mm512_loadu_si512((const void *)x);
    const __m512i b = _mm512_loadu_si512((const void *)y);
    return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}

TGT static inline float reduce16_512(__m512 v) {
    return reduce16_2x8(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
}

TGT static void SFX(dot_bf16)(int64_t n, float *s, const void *vx, const void *vy) {
    const uint16_t *x = vx, *y = vy;
    __m512 c0 = _mm512_setzero_ps(), c1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        c0 = dpbf16(c0, x + i, y + i);
        c1 = dpbf16(c1, x + i + 32, y + i + 32);
    }
    double sumf = 0;
    sumf += (double)reduce16_512(c0);
    sumf += (double)reduce16_512(c1);
    for (; i < n; i++)
        sumf += (double)(kern_bf16_to_f32(x[i]) * kern_bf16_to_f32(y[i]));
    *s = (float)sumf;
}

TGT static void SFX(sgemm4_bf16)(int64_t n, const void *vx, const void *vy, size_t ys, int nt,
                                 float *out, int64_t os) {
    const uint16_t *x = vx;
    const uint16_t *y[4];
    for (int t = 0; t < 4; t++)
        y[t] = (const uint16_t *)((const char *)vy + (size_t)(t < nt ? t : nt - 1) * ys);
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    for (int64_t i = 0; i < n; i += 32)
        for (int t = 0; t < 4; t++)
            acc[t] = dpbf16(acc[t], x + i, y[t] + i);
    for (int t = 0; t < nt; t++)
        out[t * os] = reduce16_512(acc[t]);
}
#endif

#include "simd_x86_ext.h"
#include "simd_x86_rp.h"
#include "simd_x86_sgemm.h"

/* ------------------------------------------------------------- table */

static void SFX(fill)(struct kern_ops *ops) {
    ops[ICA_F32].tr.vec_dot = SFX(dot_f32);
    ops[ICA_F32].sgemm4 = SFX(sgemm4_f32);
    ops[ICA_F16].tr.from_float = SFX(quant_f16);
    ops[ICA_F16].tr.vec_dot = SFX(dot_f16);
    ops[ICA_F16].sgemm4 = SFX(sgemm4_f16);
    ops[ICA_BF16].tr.from_float = SFX(quant_bf16);
#if X86_512
    if (kern_x86_has_bf16()) {
        ops[ICA_BF16].tr.vec_dot = SFX(dot_bf16);
        ops[ICA_BF16].sgemm4 = SFX(sgemm4_bf16);
    }
#endif
    ops[ICA_Q8_0].tr.from_float = SFX(quant_q8_0);
    ops[ICA_Q8_1].tr.from_float = SFX(quant_q8_1);
    ops[ICA_Q8_K].tr.from_float = SFX(quant_q8_K);
    ops[ICA_Q8_0].tr.vec_dot = SFX(dot_q8_0);
    ops[ICA_Q8_0].dot4 = SFX(dot4_q8_0);
    ops[ICA_Q8_0].tile4 = SFX(tile4_q8_0);
    ops[ICA_Q4_0].tr.vec_dot = SFX(dot_q4_0);
    ops[ICA_Q4_0].dot4 = SFX(dot4_q4_0);
    ops[ICA_Q4_0].tile4 = SFX(tile4_q4_0);
    ops[ICA_Q4_0].pack8 = SFX(pack8_q4_0);
    ops[ICA_Q4_0].gemm8 = SFX(gemm8_q4_0);
    ops[ICA_Q4_0].pack_bytes = SFX(pack_bytes_q4_0);
    ops[ICA_Q4_0].pack_rows = 8;
#if X86_512
    ops[ICA_Q4_0].pack8 = SFX(pack16_q4_0);
    ops[ICA_Q4_0].gemm8 = SFX(gemm16_q4_0);
    ops[ICA_Q4_0].pack_bytes = SFX(pack_bytes16_q4_0);
    ops[ICA_Q4_0].pack_rows = 16;
#endif
    ops[ICA_Q4_K].tr.vec_dot = SFX(dot_q4_K);
    ops[ICA_Q4_K].dot4 = SFX(dot4_q4_K);
    ops[ICA_Q4_K].pack8 = SFX(pack8_q4_K);
    ops[ICA_Q4_K].gemm8 = SFX(gemm8_q4_K);
    ops[ICA_Q4_K].pack_bytes = SFX(pack_bytes_q4_K);
    ops[ICA_Q4_K].pack_rows = 8;
    ops[ICA_Q6_K].tr.vec_dot = SFX(dot_q6_K);
    ops[ICA_Q6_K].dot4 = SFX(dot4_q6_K);
    SFX(fill_ext)(ops);
    SFX(fill_rp)(ops);
    SFX(fill_sgemm)(ops);
}
