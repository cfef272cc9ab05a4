/* Part of simd_x86.h (included from it, compiled once per x86 level with
 * the includer's TGT / SFX / X86_VNNI / X86_512): vec_dot and activation
 * kernels for the remaining weight types, each bit-identical to its
 * reference in ref.c. SFX(fill_ext) is called at the end of SFX(fill).
 *
 * Only the basic helpers of simd_x86.h are used here (h2f, hsum8, fma1,
 * hsum_i32, hsum4_i32, dot_ss, dot_ss_abs, dot_us_acc, q4_bytes, loadu256,
 * pf); everything else carries an xe_ prefix. Integer lanes are exact sums
 * (maddubs pairs stay far from int16 saturation for every type here: at
 * most 2 * 127 * 127), so only the float steps have to follow the
 * reference, and they do operation for operation. */

/* ------------------------------------------------------------ helpers */

/* K-quant weights are held in XE_NW vectors of xe_w: 8 chunks of 32 quants
 * in ymm (AVX2), or 4 pairs of chunks (2k | 2k+1) in zmm (AVX-512). Lane l
 * of a chunk is bytes 4l..4l+3 either way; with zmm the two halves' int32
 * lanes are added at the end (exact), giving the reference's 8 lanes. */
#if X86_512
#define XE_NW 4
typedef __m512i xe_w;
typedef __mmask64 xe_neg; /* negative weight bytes (no VPSIGNB on zmm) */
#else
#define XE_NW 8
typedef __m256i xe_w;
typedef __m256i xe_neg; /* the signed weights themselves (for VPSIGNB) */
#endif

/* madd of int16 pairs p by int16 scales s, added to int32 lanes acc. */
TGT static inline __m256i xe_madd_acc(__m256i acc, __m256i p, __m256i s) {
#if X86_VNNI
    return _mm256_dpwssd_epi32(acc, p, s);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, s));
#endif
}

/* 8 int32 lanes: sum over the chunks of sc * (4 products of unsigned
 * weight bytes w by the activation bytes q8), exact. */
TGT static inline __m256i xe_us_lanes(const xe_w *w, const xe_w *sc, const int8_t *q8) {
#if X86_512
    __m512i acc = _mm512_setzero_si512();
    for (int k = 0; k < 4; k++) {
        const __m512i y = _mm512_loadu_si512((const void *)(q8 + 64 * k));
        acc = _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(w[k], y), sc[k]);
    }
    return _mm256_add_epi32(_mm512_castsi512_si256(acc), _mm512_extracti64x4_epi64(acc, 1));
#else
    __m256i acc = _mm256_setzero_si256();
    for (int c = 0; c < 8; c++)
        acc = xe_madd_acc(acc, _mm256_maddubs_epi16(w[c], loadu256(q8 + 32 * c)), sc[c]);
    return acc;
#endif
}

/* The same for signed weights: |w| times q8 negated where w < 0 (exact,
 * q8 is never -128). */
TGT static inline __m256i xe_ss_lanes(const xe_w *ax, const xe_neg *neg, const xe_w *sc,
                                      const int8_t *q8) {
#if X86_512
    __m512i acc = _mm512_setzero_si512();
    for (int k = 0; k < 4; k++) {
        const __m512i y = _mm512_loadu_si512((const void *)(q8 + 64 * k));
        const __m512i sy = _mm512_mask_sub_epi8(y, neg[k], _mm512_setzero_si512(), y);
        acc = _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(ax[k], sy), sc[k]);
    }
    return _mm256_add_epi32(_mm512_castsi512_si256(acc), _mm512_extracti64x4_epi64(acc, 1));
#else
    __m256i acc = _mm256_setzero_si256();
    for (int c = 0; c < 8; c++) {
        const __m256i sy = _mm256_sign_epi8(loadu256(q8 + 32 * c), neg[c]);
        acc = xe_madd_acc(acc, _mm256_maddubs_epi16(ax[c], sy), sc[c]);
    }
    return acc;
#endif
}

TGT static inline void xe_signed(xe_w q, xe_w *ax, xe_neg *neg) {
#if X86_512
    *ax = _mm512_abs_epi8(q);
    *neg = _mm512_movepi8_mask(q);
#else
    *ax = _mm256_sign_epi8(q, q);
    *neg = q;
#endif
}

/* Scale vectors from 16 int16 scales s16 = [s0..s7 | s8..s15], one per 16
 * quants: chunk c takes s[2c] in lanes 0..3 and s[2c+1] in lanes 4..7. */
TGT static inline void xe_sc16_chunks(__m256i s16, xe_w *sc) {
#if X86_512
    const __m512i s = _mm512_castsi256_si512(s16);
    const __m512i base = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_set_m128i(_mm_set1_epi16(1), _mm_set1_epi16(0))),
        _mm256_set_m128i(_mm_set1_epi16(3), _mm_set1_epi16(2)), 1);
    for (int k = 0; k < 4; k++) /* pair k: s[4k], s[4k+1] | s[4k+2], s[4k+3] */
        sc[k] =
            _mm512_permutexvar_epi16(_mm512_add_epi16(base, _mm512_set1_epi16((short)(4 * k))), s);
#else
    const __m256i lo = _mm256_permute2x128_si256(s16, s16, 0x00);
    const __m256i hi = _mm256_permute2x128_si256(s16, s16, 0x11);
    for (int k = 0; k < 4; k++) {
        const __m256i idx =
            _mm256_set_m128i(_mm_set1_epi16((short)(0x0100 * (4 * k + 3) + 4 * k + 2)),
                             _mm_set1_epi16((short)(0x0100 * (4 * k + 1) + 4 * k)));
        sc[k] = _mm256_shuffle_epi8(lo, idx);
        sc[k + 4] = _mm256_shuffle_epi8(hi, idx);
    }
#endif
}

/* Scale vectors from 8 int16 scales s8 (lanes 0..7), one per chunk. */
TGT static inline void xe_sc8_chunks(__m128i s8, xe_w *sc) {
#if X86_512
    const __m512i s = _mm512_castsi128_si512(s8);
    const __m512i base = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(1), 1);
    for (int k = 0; k < 4; k++) /* pair k: s[2k] | s[2k+1] */
        sc[k] =
            _mm512_permutexvar_epi16(_mm512_add_epi16(base, _mm512_set1_epi16((short)(2 * k))), s);
#else
    const __m256i s = _mm256_broadcastsi128_si256(s8);
    for (int c = 0; c < 8; c++) /* int16 c in every lane */
        sc[c] = _mm256_shuffle_epi8(s, _mm256_set1_epi16((short)(0x0100 * (2 * c + 1) + 2 * c)));
#endif
}

/* Q4_K / Q5_K 12 scale bytes as 8 six-bit scales (bytes 0..7) and 8 mins
 * (bytes 8..15), get_scale_min_k4's layout. Built in registers: a vector
 * load of bytes just stored one by one would stall on store forwarding. */
TGT static inline __m128i xe_k4_scales(const uint8_t *s) {
    uint32_t u[3];
    memcpy(u, s, 12);
    const uint32_t m6 = 0x3f3f3f3fu, m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
    const uint32_t sc03 = u[0] & m6, mn03 = u[1] & m6;
    const uint32_t sc47 = (u[2] & m4) | (((u[0] >> 6) & m2) << 4);
    const uint32_t mn47 = ((u[2] >> 4) & m4) | (((u[1] >> 6) & m2) << 4);
    return _mm_setr_epi32((int)sc03, (int)sc47, (int)mn03, (int)mn47);
}

#if X86_512
/* [a | b] */
TGT static inline __m512i xe_cat(__m256i a, __m256i b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}
#endif

#define XE_Y(T, vy, ys, t) ((const T *)((const char *)(vy) + (size_t)(t) * (ys)))

/* ------------------------------------------------------------ Q5_K */

/* vec_dot_q5_K_q8_K: lane l = sum over the 8 chunks of sc * (4 products of
 * unsigned q5 by q8), acc = fma(d, lane, acc); the mins go through one
 * scalar summs = fma(-y.d * dmin, mins, summs); hsum8(acc) + summs. */
struct xe_q5k {
    xe_w q[XE_NW];  /* chunk c (sub-block c): quants 0..31 */
    xe_w sc[XE_NW]; /* scale of chunk c as int16 */
    __m256i mn2;    /* the 8 mins as int16, each twice (for the bsum pairs) */
};

TGT static inline void xe_q5k_unpack(const blk_q5_K *b, struct xe_q5k *u) {
    /* bit c of qh[l] is the fifth bit of quant l of chunk c */
#if X86_512
    const __m512i m4 = _mm512_set1_epi8(0x0f), one = _mm512_set1_epi8(1);
    const __m256i h = loadu256(b->qh);
    __m512i hb = xe_cat(h, _mm256_srli_epi16(h, 1));
    for (int k = 0; k < 4; k++) {
        const __m256i v = loadu256(b->qs + 32 * k);
        const __m512i h5 = _mm512_slli_epi16(_mm512_and_si512(hb, one), 4);
        hb = _mm512_srli_epi16(hb, 2);
        u->q[k] = _mm512_or_si512(_mm512_and_si512(xe_cat(v, _mm256_srli_epi16(v, 4)), m4), h5);
    }
#else
    const __m256i m4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
    __m256i hb = loadu256(b->qh);
    for (int c2 = 0; c2 < 4; c2++) {
        const __m256i v = loadu256(b->qs + 32 * c2);
        const __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(hb, one), 4);
        hb = _mm256_srli_epi16(hb, 1);
        const __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(hb, one), 4);
        hb = _mm256_srli_epi16(hb, 1);
        u->q[2 * c2] = _mm256_or_si256(_mm256_and_si256(v, m4), h0);
        u->q[2 * c2 + 1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), h1);
    }
#endif
    const __m128i v = xe_k4_scales(b->scales);
    xe_sc8_chunks(_mm_cvtepu8_epi16(v), u->sc);
    const __m128i m = _mm_srli_si128(v, 8);
    u->mn2 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m, m));
}

#define xe_q5k_lanes(u, q8) xe_us_lanes((u)->q, (u)->sc, (q8))

TGT static void SFX(dot_q5_K)(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q5_K *x = vx;
    const blk_q8_K *y = vy;
    struct xe_q5k u;
    __m256 acc = _mm256_setzero_ps();
    float summs = 0;
    for (int64_t i = 0; i < n / QKK; i++) {
        pf(x + i);
        pf((const char *)(x + i) + 64);
        pf((const char *)(x + i) + 128);
        xe_q5k_unpack(&x[i], &u);
        const float d = y[i].d * h2f(x[i].d);
        const float dmin = -y[i].d * h2f(x[i].dmin);
        const int mins = hsum_i32(_mm256_madd_epi16(loadu256(y[i].bsums), u.mn2));
        summs = fma1(dmin, (float)mins, summs);
        const __m256i l = xe_q5k_lanes(&u, y[i].qs);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(l), acc);
    }
    *s = hsum8(acc) + summs;
}

/* The mins of the four tokens are reduced together and their scalar FMA
 * chains run in the four lanes of one vector (same FMA per lane). */
TGT static inline __attribute__((always_inline)) void xe_dot4_q5_K_k(int64_t n, const void *vx,
                                                                     const void *vy, size_t ys,
                                                                     const int nt, float *out,
                                                                     int64_t os) {
    const blk_q5_K *x = vx;
    const blk_q8_K *y[4];
    for (int t = 0; t < 4; t++)
        y[t] = XE_Y(blk_q8_K, vy, ys, t < nt ? t : nt - 1);
    struct xe_q5k u;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    __m128 summs = _mm_setzero_ps();
    for (int64_t i = 0; i < n / QKK; i++) {
        pf(x + i);
        pf((const char *)(x + i) + 64);
        pf((const char *)(x + i) + 128);
        xe_q5k_unpack(&x[i], &u);
        const float dx = h2f(x[i].d);
        __m256i mv[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                         _mm256_setzero_si256()};
        for (int t = 0; t < nt; t++) {
            mv[t] = _mm256_madd_epi16(loadu256(y[t][i].bsums), u.mn2);
            const __m256i l = xe_q5k_lanes(&u, y[t][i].qs);
            const float d = y[t][i].d * dx;
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(l), acc[t]);
        }
        const __m128 yd = _mm_setr_ps(y[0][i].d, y[1][i].d, y[2][i].d, y[3][i].d);
        const __m128 dmin =
            _mm_mul_ps(_mm_xor_ps(yd, _mm_set1_ps(-0.0f)), _mm_set1_ps(h2f(x[i].dmin)));
        const __m128 mins = _mm_cvtepi32_ps(hsum4_i32(mv[0], mv[1], mv[2], mv[3]));
        summs = _mm_fmadd_ps(dmin, mins, summs);
    }
    float sm[4];
    _mm_storeu_ps(sm, summs);
    for (int t = 0; t < nt; t++)
        out[t * os] = hsum8(acc[t]) + sm[t];
}

/* specialised per token count (the loops over tokens unrolled) */
TGT static void SFX(dot4_q5_K)(int64_t n, const void *vx, const void *vy, size_t ys, int nt,
                               float *out, int64_t os) {
    switch (nt) {
    case 1:
        xe_dot4_q5_K_k(n, vx, vy, ys, 1, out, os);
        break;
    case 2:
        xe_dot4_q5_K_k(n, vx, vy, ys, 2, out, os);
        break;
    case 3:
        xe_dot4_q5_K_k(n, vx, vy, ys, 3, out, os);
        break;
    default:
        xe_dot4_q5_K_k(n, vx, vy, ys, 4, out, os);
        break;
    }
}

/* ------------------------------------------------------------ Q3_K */

/* vec_dot_q3_K_q8_K: signed quants -4..3, 16 scales (sc - 32); lane l of
 * chunk c takes scale 2c (lanes 0..3) or 2c+1 (lanes 4..7); acc = fma(d,
 * lane, acc) with d = y.d * fp16(x.d), hsum8. */
struct xe_q3k {
    xe_w ax[XE_NW];    /* |q| */
    xe_neg neg[XE_NW]; /* the signs */
    xe_w sc[XE_NW];    /* scales of the chunks' halves, int16 */
};

/* The 16 six-bit scales minus 32, as int16 [s0..s7 | s8..s15]. */
TGT static inline __m256i xe_q3k_scales(const uint8_t *s) {
    uint32_t a[3], r[4];
    memcpy(a, s, 12);
    const uint32_t m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
    r[0] = (a[0] & m4) | ((a[2] & m2) << 4);
    r[1] = (a[1] & m4) | (((a[2] >> 2) & m2) << 4);
    r[2] = ((a[0] >> 4) & m4) | (((a[2] >> 4) & m2) << 4);
    r[3] = ((a[1] >> 4) & m4) | (((a[2] >> 6) & m2) << 4);
    const __m128i v =
        _mm_sub_epi8(_mm_setr_epi32((int)r[0], (int)r[1], (int)r[2], (int)r[3]), _mm_set1_epi8(32));
    return _mm256_cvtepi8_epi16(v);
}

/* Quants of chunk c = 4h + j: bits 2j..2j+1 of qs[32h + l]; minus 4 where
 * bit c of hmask[l] is clear. */
TGT static inline void xe_q3k_unpack(const blk_q3_K *b, struct xe_q3k *u) {
#if X86_512
    const __m512i m3 = _mm512_set1_epi8(3), one = _mm512_set1_epi8(1);
    const __m256i h = loadu256(b->hmask);
    __m512i hb = xe_cat(h, _mm256_srli_epi16(h, 1));
    for (int hh = 0; hh < 2; hh++) {
        const __m256i v = loadu256(b->qs + 32 * hh);
        __m512i z = xe_cat(v, _mm256_srli_epi16(v, 2));
        for (int j2 = 0; j2 < 2; j2++) {
            const int k = 2 * hh + j2;
            const __m512i h4 = _mm512_slli_epi16(_mm512_andnot_si512(hb, one), 2);
            hb = _mm512_srli_epi16(hb, 2);
            const __m512i q = _mm512_sub_epi8(_mm512_and_si512(z, m3), h4);
            z = _mm512_srli_epi16(z, 4);
            xe_signed(q, &u->ax[k], &u->neg[k]);
        }
    }
#else
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    __m256i hb = loadu256(b->hmask);
    for (int h = 0; h < 2; h++) {
        __m256i v = loadu256(b->qs + 32 * h);
        for (int j = 0; j < 4; j++) {
            const int c = 4 * h + j;
            const __m256i h4 = _mm256_slli_epi16(_mm256_andnot_si256(hb, one), 2);
            hb = _mm256_srli_epi16(hb, 1);
            const __m256i q = _mm256_sub_epi8(_mm256_and_si256(v, m3), h4);
            v = _mm256_srli_epi16(v, 2);
            xe_signed(q, &u->ax[c], &u->neg[c]);
        }
    }
#endif
    xe_sc16_chunks(xe_q3k_scales(b->scales), u->sc);
}

TGT static void SFX(dot_q3_K)(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q3_K *x = vx;
    const blk_q8_K *y = vy;
    struct xe_q3k u;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QKK; i++) {
        pf(x + i);
        pf((const char *)(x + i) + 64);
        xe_q3k_unpack(&x[i], &u);
        const __m256i l = xe_ss_lanes(u.ax, u.neg, u.sc, y[i].qs);
        const float d = y[i].d * h2f(x[i].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(l), acc);
    }
    *s = hsum8(acc);
}

TGT static void SFX(dot4_q3_K)(int64_t n, const void *vx, const void *vy, size_t ys, int nt,
                               float *out, int64_t os) {
    const blk_q3_K *x = vx;
    struct xe_q3k u;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    for (int64_t i = 0; i < n / QKK; i++) {
        pf(x + i);
        pf((const char *)(x + i) + 64);
        xe_q3k_unpack(&x[i], &u);
        const float dx = h2f(x[i].d);
        for (int t = 0; t < nt; t++) {
            const blk_q8_K *y = XE_Y(blk_q8_K, vy, ys, t) + i;
            const __m256i l = xe_ss_lanes(u.ax, u.neg, u.sc, y->qs);
            const float d = y->d * dx;
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(l), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++)
        out[t * os] = hsum8(acc[t]);
}

/* ------------------------------------------------------------ Q2_K */

/* Q2_K (repacked in llama.cpp, DOT_K in ref.c): exact isum (16 scales) and
 * summs (16 mins by the 16 bsums) per super-block, then t = d*isum;
 * t = t - dmin*summs; sumf += t, all in float. */
struct xe_q2k {
    xe_w q[XE_NW];  /* quants 0..3 */
    xe_w sc[XE_NW]; /* scales of the chunks' halves, int16 */
    __m256i mn;     /* the 16 mins as int16 */
};

TGT static inline void xe_q2k_unpack(const blk_q2_K *b, struct xe_q2k *u) {
#if X86_512
    const __m512i m3 = _mm512_set1_epi8(3);
    for (int h = 0; h < 2; h++) {
        const __m256i v = loadu256(b->qs + 32 * h);
        const __m512i z = xe_cat(v, _mm256_srli_epi16(v, 2));
        u->q[2 * h] = _mm512_and_si512(z, m3);
        u->q[2 * h + 1] = _mm512_and_si512(_mm512_srli_epi16(z, 4), m3);
    }
#else
    const __m256i m3 = _mm256_set1_epi8(3);
    for (int h = 0; h < 2; h++) {
        __m256i v = loadu256(b->qs + 32 * h);
        for (int j = 0; j < 4; j++) {
            u->q[4 * h + j] = _mm256_and_si256(v, m3);
            v = _mm256_srli_epi16(v, 2);
        }
    }
#endif
    const __m128i sv = _mm_loadu_si128((const __m128i *)b->scales);
    const __m128i lo = _mm_and_si128(sv, _mm_set1_epi8(0x0f));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(sv, 4), _mm_set1_epi8(0x0f));
    u->mn = _mm256_cvtepu8_epi16(hi);
    xe_sc16_chunks(_mm256_cvtepu8_epi16(lo), u->sc);
}

TGT static inline float xe_q2k_block(const blk_q2_K *b, const struct xe_q2k *u, const blk_q8_K *y) {
    const __m256i acc = xe_us_lanes(u->q, u->sc, y->qs);
    const __m256i mp = _mm256_madd_epi16(loadu256(y->bsums), u->mn);
    /* [a01 a23 m01 m23 | a45 a67 m45 m67] -> [a0123 m0123 . . | a4567 m4567 . .] */
    const __m256i b1 = _mm256_hadd_epi32(acc, mp);
    const __m256i b2 = _mm256_hadd_epi32(b1, b1);
    const int isum = _mm256_extract_epi32(b2, 0) + _mm256_extract_epi32(b2, 4);
    const int summs = _mm256_extract_epi32(b2, 1) + _mm256_extract_epi32(b2, 5);
    const float d = h2f(b->d) * y->d;
    float t = d * (float)isum;
    const float dmin = h2f(b->dmin) * y->d;
    const float m = dmin * (float)summs;
    t = t - m;
    return t;
}

TGT static void SFX(dot_q2_K)(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q2_K *x = vx;
    const blk_q8_K *y = vy;
    struct xe_q2k u;
    float sumf = 0;
    for (int64_t i = 0; i < n / QKK; i++) {
        pf(x + i);
        pf((const char *)(x + i) + 64);
        xe_q2k_unpack(&x[i], &u);
        sumf += xe_q2k_block(&x[i], &u, &y[i]);
    }
    *s = sumf;
}

TGT static void SFX(dot4_q2_K)(int64_t n, const void *vx, const void *vy, size_t ys, int nt,
                               float *out, int64_t os) {
    const blk_q2_K *x = vx;
    struct xe_q2k u;
    float sumf[4] = {0, 0, 0, 0};
    for (int64_t i = 0; i < n / QKK; i++) {
        pf(x + i);
        pf((const char *)(x + i) + 64);
        xe_q2k_unpack(&x[i], &u);
        for (int t = 0; t < nt; t++)
            sumf[t] += xe_q2k_block(&x[i], &u, XE_Y(blk_q8_K, vy, ys, t) + i);
    }
    for (int t = 0; t < nt; t++)
        out[t * os] = sumf[t];
}

/* ----------------------------------------------------------- IQ4_XS */

/* vec_dot_iq4_xs_q8_K (DOT_K_LANES): code-book quants -127..113, 8 scales
 * (ls - 32) of 32 quants; lanes, FMAs and hsum8 as Q3_K. */
struct xe_iq4xs {
    xe_w ax[XE_NW];
    xe_neg neg[XE_NW];
    xe_w sc[XE_NW];
};

TGT static inline __m256i xe_iq4_lut(void) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)kern_iq4nl_values));
}

TGT static inline void xe_iq4xs_unpack(const blk_iq4_xs *b, struct xe_iq4xs *u) {
#if X86_512
    const __m512i lut = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)kern_iq4nl_values));
    for (int k = 0; k < 4; k++) {
        /* chunk 2k: nibbles of qs[32k..32k+15], chunk 2k+1: of the next 16 */
        const __m256i v = loadu256(b->qs + 32 * k);
        __m512i z = xe_cat(v, _mm256_srli_epi16(v, 4)); /* [lo0 lo1 | hi0 hi1] */
        z = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
        const __m512i q = _mm512_shuffle_epi8(lut, _mm512_and_si512(z, _mm512_set1_epi8(0x0f)));
        xe_signed(q, &u->ax[k], &u->neg[k]);
    }
#else
    const __m256i lut = xe_iq4_lut();
    for (int c = 0; c < 8; c++) {
        const __m256i q = _mm256_shuffle_epi8(lut, q4_bytes(b->qs + 16 * c));
        xe_signed(q, &u->ax[c], &u->neg[c]);
    }
#endif
    uint64_t ls = 0; /* the 8 six-bit scales as bytes */
    for (int c = 0; c < 8; c++) {
        const unsigned v =
            ((b->scales_l[c / 2] >> (4 * (c % 2))) & 0x0f) | (((b->scales_h >> (2 * c)) & 3) << 4);
        ls |= (uint64_t)v << (8 * c);
    }
    const __m128i s8 = _mm_sub_epi8(_mm_cvtsi64_si128((long long)ls), _mm_set1_epi8(32));
    xe_sc8_chunks(_mm_cvtepi8_epi16(s8), u->sc);
}

TGT static void SFX(dot_iq4_xs)(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_iq4_xs *x = vx;
    const blk_q8_K *y = vy;
    struct xe_iq4xs u;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QKK; i++) {
        pf(x + i);
        pf((const char *)(x + i) + 64);
        pf((const char *)(x + i) + 128);
        xe_iq4xs_unpack(&x[i], &u);
        const __m256i l = xe_ss_lanes(u.ax, u.neg, u.sc, y[i].qs);
        const float d = y[i].d * h2f(x[i].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(l), acc);
    }
    *s = hsum8(acc);
}

TGT static void SFX(dot4_iq4_xs)(int64_t n, const void *vx, const void *vy, size_t ys, int nt,
                                 float *out, int64_t os) {
    const blk_iq4_xs *x = vx;
    struct xe_iq4xs u;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    for (int64_t i = 0; i < n / QKK; i++) {
        pf(x + i);
        pf((const char *)(x + i) + 64);
        pf((const char *)(x + i) + 128);
        xe_iq4xs_unpack(&x[i], &u);
        const float dx = h2f(x[i].d);
        for (int t = 0; t < nt; t++) {
            const blk_q8_K *y = XE_Y(blk_q8_K, vy, ys, t) + i;
            const __m256i l = xe_ss_lanes(u.ax, u.neg, u.sc, y->qs);
            const float d = y->d * dx;
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(l), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++)
        out[t * os] = hsum8(acc[t]);
}

/* ----------------------------------------------------------- IQ4_NL */

/* IQ4_NL (repacked like Q4_0 in llama.cpp): per block the exact integer
 * dot of the code-book values, then acc = fma((float)isum, dx*dy, acc),
 * one float chain per output. */
TGT static inline __m256i xe_iq4nl_q(const uint8_t *qs, __m256i lut) {
    return _mm256_shuffle_epi8(lut, q4_bytes(qs));
}

TGT static void SFX(dot_iq4_nl)(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_iq4_nl *x = vx;
    const blk_q8_0 *y = vy;
    const __m256i lut = xe_iq4_lut();
    const int64_t nb = n / QK32;
    float acc = 0;
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        pf(x + i);
        pf(x + i + 2);
        __m256i l[4];
        for (int j = 0; j < 4; j++)
            l[j] = dot_ss(xe_iq4nl_q(x[i + j].qs, lut), loadu256(y[i + j].qs));
        float si[4];
        _mm_storeu_ps(si, _mm_cvtepi32_ps(hsum4_i32(l[0], l[1], l[2], l[3])));
        for (int j = 0; j < 4; j++)
            acc = fma1(si[j], h2f(x[i + j].d) * h2f(y[i + j].d), acc);
    }
    for (; i < nb; i++) {
        const int sumi = hsum_i32(dot_ss(xe_iq4nl_q(x[i].qs, lut), loadu256(y[i].qs)));
        acc = fma1((float)sumi, h2f(x[i].d) * h2f(y[i].d), acc);
    }
    *s = acc;
}

TGT static void SFX(dot4_iq4_nl)(int64_t n, const void *vx, const void *vy, size_t ys, int nt,
                                 float *out, int64_t os) {
    const blk_iq4_nl *x = vx;
    const blk_q8_0 *y[4];
    for (int t = 0; t < 4; t++)
        y[t] = XE_Y(blk_q8_0, vy, ys, t < nt ? t : nt - 1);
    const __m256i lut = xe_iq4_lut();
    __m128 acc = _mm_setzero_ps();
    for (int64_t i = 0; i < n / QK32; i++) {
        pf(x + i);
        const __m256i q = xe_iq4nl_q(x[i].qs, lut);
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

/* Four IQ4_NL rows by up to four tokens: lane r of each token's float
 * accumulator is row r's chain, as in dot_iq4_nl. With VNNI the code-book
 * values are made unsigned (v + 128, VPDPBUSD has no int16 step to
 * saturate) and -128 * (4 activation bytes) starts each lane, once per
 * token and block for the four rows; AVX2 keeps |v| . sign(y, v). */
TGT static void SFX(tile4_iq4_nl)(int64_t n, const void *vx, size_t xs, const void *vy, size_t ys,
                                  int nt, float *out, int64_t os) {
    const blk_iq4_nl *x[4];
    const blk_q8_0 *y[4];
    for (int r = 0; r < 4; r++)
        x[r] = XE_Y(blk_iq4_nl, vx, xs, r);
    for (int t = 0; t < 4; t++)
        y[t] = XE_Y(blk_q8_0, vy, ys, t < nt ? t : nt - 1);
    __m128 acc[4] = {_mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps()};
#if X86_VNNI
    const __m256i lut = _mm256_xor_si256(xe_iq4_lut(), _mm256_set1_epi8((char)0x80));
    const __m256i k128 = _mm256_set1_epi8((char)0x80);
#else
    const __m256i lut = xe_iq4_lut();
#endif
    for (int64_t i = 0; i < n / QK32; i++) {
        __m256i q[4];
#if !X86_VNNI
        __m256i ax[4];
#endif
        for (int r = 0; r < 4; r++) {
            pf(x[r] + i);
            q[r] = _mm256_shuffle_epi8(lut, q4_bytes(x[r][i].qs));
#if !X86_VNNI
            ax[r] = _mm256_sign_epi8(q[r], q[r]);
#endif
        }
        const __m128 dx = _mm_cvtph_ps(_mm_setr_epi16(
            (short)x[0][i].d, (short)x[1][i].d, (short)x[2][i].d, (short)x[3][i].d, 0, 0, 0, 0));
        for (int t = 0; t < nt; t++) {
            const __m256i yv = loadu256(y[t][i].qs);
            __m256i l[4];
#if X86_VNNI
            const __m256i corr = _mm256_sub_epi32(
                _mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), k128, yv));
            for (int r = 0; r < 4; r++)
                l[r] = _mm256_dpbusd_epi32(corr, q[r], yv);
#else
            for (int r = 0; r < 4; r++)
                l[r] = dot_ss_abs(ax[r], q[r], yv);
#endif
            const __m128 si = _mm_cvtepi32_ps(hsum4_i32(l[0], l[1], l[2], l[3]));
            const __m128 d = _mm_mul_ps(dx, _mm_set1_ps(h2f(y[t][i].d)));
            acc[t] = _mm_fmadd_ps(si, d, acc[t]);
        }
    }
    for (int t = 0; t < nt; t++)
        _mm_storeu_ps(out + t * os, acc[t]);
}

/* ------------------------------------------- Q5_0, Q4_1, Q5_1 (8 lanes) */

/* 0x10 in byte j where bit j of the little-endian 32-bit word at p is set. */
TGT static inline __m256i xe_bits16(const uint8_t *p) {
    uint32_t w;
    memcpy(&w, p, 4);
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                          2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)w), shuf);
    const __m256i bm = _mm256_set1_epi64x(0x8040201008040201LL);
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, bm), bm), _mm256_set1_epi8(0x10));
}

/* Q5_0 quants -16..15, Q5_1 quants 0..31, element order. */
TGT static inline __m256i xe_q5_0_q(const blk_q5_0 *b) {
    return _mm256_sub_epi8(_mm256_or_si256(q4_bytes(b->qs), xe_bits16(b->qh)),
                           _mm256_set1_epi8(16));
}

TGT static inline __m256i xe_q5_1_q(const blk_q5_1 *b) {
    return _mm256_or_si256(q4_bytes(b->qs), xe_bits16(b->qh));
}

/* Q5_0 (vec_dot_q5_0_q8_0): 8 lanes, acc = fma(dx*dy, lane, acc), hsum8. */
TGT static void SFX(dot_q5_0)(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q5_0 *x = vx;
    const blk_q8_0 *y = vy;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK32; i++) {
        pf(x + i);
        const __m256i l = dot_ss(xe_q5_0_q(&x[i]), loadu256(y[i].qs));
        const float d = h2f(x[i].d) * h2f(y[i].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(l), acc);
    }
    *s = hsum8(acc);
}

TGT static void SFX(dot4_q5_0)(int64_t n, const void *vx, const void *vy, size_t ys, int nt,
                               float *out, int64_t os) {
    const blk_q5_0 *x = vx;
    const blk_q8_0 *y[4];
    for (int t = 0; t < 4; t++)
        y[t] = XE_Y(blk_q8_0, vy, ys, t < nt ? t : nt - 1);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    for (int64_t i = 0; i < n / QK32; i++) {
        pf(x + i);
        const __m256i q = xe_q5_0_q(&x[i]);
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

/* Q4_1 / Q5_1 (vec_dot_q4_1_q8_1, vec_dot_q5_1_q8_1): unsigned quants, 8
 * lanes, acc = fma(dx*dy, lane, acc); summs = fma(m, y.s, summs);
 * hsum8(acc) + summs. */
#define XE_DOT_MIN(tn, blk, qfn)                                                                   \
    TGT static void SFX(dot_##tn)(int64_t n, float *s, const void *vx, const void *vy) {           \
        const blk *x = vx;                                                                         \
        const blk_q8_1 *y = vy;                                                                    \
        __m256 acc = _mm256_setzero_ps();                                                          \
        float summs = 0;                                                                           \
        for (int64_t i = 0; i < n / QK32; i++) {                                                   \
            pf(x + i);                                                                             \
            summs = fma1(h2f(x[i].m), h2f(y[i].s), summs);                                         \
            const __m256i l = dot_us_acc(_mm256_setzero_si256(), qfn, loadu256(y[i].qs));          \
            const float d = h2f(x[i].d) * h2f(y[i].d);                                             \
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(l), acc);                  \
        }                                                                                          \
        *s = hsum8(acc) + summs;                                                                   \
    }                                                                                              \
    TGT static void SFX(dot4_##tn)(int64_t n, const void *vx, const void *vy, size_t ys, int nt,   \
                                   float *out, int64_t os) {                                       \
        const blk *x = vx;                                                                         \
        const blk_q8_1 *y[4];                                                                      \
        for (int t = 0; t < 4; t++)                                                                \
            y[t] = XE_Y(blk_q8_1, vy, ys, t < nt ? t : nt - 1);                                    \
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),            \
                         _mm256_setzero_ps()};                                                     \
        float summs[4] = {0, 0, 0, 0};                                                             \
        for (int64_t i = 0; i < n / QK32; i++) {                                                   \
            pf(x + i);                                                                             \
            const __m256i q = qfn;                                                                 \
            const float dx = h2f(x[i].d), mx = h2f(x[i].m);                                        \
            for (int t = 0; t < 4; t++) {                                                          \
                summs[t] = fma1(mx, h2f(y[t][i].s), summs[t]);                                     \
                const __m256i l = dot_us_acc(_mm256_setzero_si256(), q, loadu256(y[t][i].qs));     \
                const float d = dx * h2f(y[t][i].d);                                               \
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(l), acc[t]);        \
            }                                                                                      \
        }                                                                                          \
        for (int t = 0; t < nt; t++)                                                               \
            out[t * os] = hsum8(acc[t]) + summs[t];                                                \
    }

XE_DOT_MIN(q4_1, blk_q4_1, q4_bytes(x[i].qs))
XE_DOT_MIN(q5_1, blk_q5_1, xe_q5_1_q(&x[i]))

/* Four rows of an 8-lane type (Q5_0, Q4_1) by up to four tokens, two
 * rows at a time: the activation loads, scales and (Q5_0) the offset term
 * -16 * (4 activation bytes) per lane are shared by the two rows, the
 * quants stay unsigned; per output the lanes, FMAs and tree of vec_dot.
 * (Q5_1 measured no faster this way than vec_dot / dot4.) */
#define XE_TILE4(tn, blk, yblk, qfn, off, has_min, MX, SY)                                         \
    TGT static void SFX(tile4_##tn)(int64_t n, const void *vx, size_t xs, const void *vy,          \
                                    size_t ys, int nt, float *out, int64_t os) {                   \
        const yblk *y[4];                                                                          \
        for (int t = 0; t < 4; t++)                                                                \
            y[t] = XE_Y(yblk, vy, ys, t < nt ? t : nt - 1);                                        \
        for (int rp = 0; rp < 4; rp += 2) {                                                        \
            const blk *x0 = XE_Y(blk, vx, xs, rp), *x1 = XE_Y(blk, vx, xs, rp + 1);                \
            __m256 a0[4], a1[4];                                                                   \
            float s0[4] = {0, 0, 0, 0}, s1[4] = {0, 0, 0, 0};                                      \
            for (int t = 0; t < 4; t++)                                                            \
                a0[t] = a1[t] = _mm256_setzero_ps();                                               \
            for (int64_t i = 0; i < n / QK32; i++) {                                               \
                pf(x0 + i);                                                                        \
                pf(x1 + i);                                                                        \
                const __m256i q0 = qfn(x0 + i), q1 = qfn(x1 + i);                                  \
                const float d0 = h2f(x0[i].d), d1 = h2f(x1[i].d);                                  \
                for (int t = 0; t < nt; t++) {                                                     \
                    const __m256i yv = loadu256(y[t][i].qs);                                       \
                    const float dy = h2f(y[t][i].d);                                               \
                    __m256i corr = _mm256_setzero_si256();                                         \
                    if (off)                                                                       \
                        corr =                                                                     \
                            _mm256_sub_epi32(corr, dot_us_acc(corr, _mm256_set1_epi8(off), yv));   \
                    const __m256i l0 = dot_us_acc(corr, q0, yv);                                   \
                    const __m256i l1 = dot_us_acc(corr, q1, yv);                                   \
                    a0[t] =                                                                        \
                        _mm256_fmadd_ps(_mm256_set1_ps(d0 * dy), _mm256_cvtepi32_ps(l0), a0[t]);   \
                    a1[t] =                                                                        \
                        _mm256_fmadd_ps(_mm256_set1_ps(d1 * dy), _mm256_cvtepi32_ps(l1), a1[t]);   \
                    if (has_min) {                                                                 \
                        s0[t] = fma1(MX(x0 + i), SY(y[t] + i), s0[t]);                             \
                        s1[t] = fma1(MX(x1 + i), SY(y[t] + i), s1[t]);                             \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
            for (int t = 0; t < nt; t++) {                                                         \
                out[t * os + rp] = has_min ? hsum8(a0[t]) + s0[t] : hsum8(a0[t]);                  \
                out[t * os + rp + 1] = has_min ? hsum8(a1[t]) + s1[t] : hsum8(a1[t]);              \
            }                                                                                      \
        }                                                                                          \
    }

/* fp16 m of a Q4_1/Q5_1 block and s of its Q8_1 activation block; 0 for
 * Q5_0 (unused there: has_min 0). */
#define XE_MX(b)   h2f((b)->m)
#define XE_SY(b)   h2f((b)->s)
#define XE_NONE(b) 0.0f
TGT static inline __m256i xe_q5_0_u(const blk_q5_0 *b) {
    return _mm256_or_si256(q4_bytes(b->qs), xe_bits16(b->qh));
}
TGT static inline __m256i xe_q4_1_u(const blk_q4_1 *b) {
    return q4_bytes(b->qs);
}

XE_TILE4(q5_0, blk_q5_0, blk_q8_0, xe_q5_0_u, 16, 0, XE_NONE, XE_NONE)
XE_TILE4(q4_1, blk_q4_1, blk_q8_1, xe_q4_1_u, 0, 1, XE_MX, XE_SY)

/* ------------------------------------------------------------- table */

static void SFX(fill_ext)(struct kern_ops *ops) {
    ops[ICA_Q5_K].tr.vec_dot = SFX(dot_q5_K);
    ops[ICA_Q5_K].dot4 = SFX(dot4_q5_K);
    ops[ICA_Q3_K].tr.vec_dot = SFX(dot_q3_K);
    ops[ICA_Q3_K].dot4 = SFX(dot4_q3_K);
    ops[ICA_Q2_K].tr.vec_dot = SFX(dot_q2_K);
    ops[ICA_Q2_K].dot4 = SFX(dot4_q2_K);
    ops[ICA_IQ4_XS].tr.vec_dot = SFX(dot_iq4_xs);
    ops[ICA_IQ4_XS].dot4 = SFX(dot4_iq4_xs);
    ops[ICA_IQ4_NL].tr.vec_dot = SFX(dot_iq4_nl);
    ops[ICA_IQ4_NL].dot4 = SFX(dot4_iq4_nl);
    ops[ICA_Q5_0].tr.vec_dot = SFX(dot_q5_0);
    ops[ICA_Q5_0].dot4 = SFX(dot4_q5_0);
    ops[ICA_Q4_1].tr.vec_dot = SFX(dot_q4_1);
    ops[ICA_Q4_1].dot4 = SFX(dot4_q4_1);
    ops[ICA_Q5_1].tr.vec_dot = SFX(dot_q5_1);
    ops[ICA_Q5_1].dot4 = SFX(dot4_q5_1);
    ops[ICA_IQ4_NL].tile4 = SFX(tile4_iq4_nl);
    ops[ICA_Q5_0].tile4 = SFX(tile4_q5_0);
    ops[ICA_Q4_1].tile4 = SFX(tile4_q4_1);
}
