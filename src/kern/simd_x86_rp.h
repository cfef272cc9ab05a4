/* Part of simd_x86.h (included from it once per x86 level): weights
 * repacked once, at model load, into tiles of RP_ROWS rows (16 in zmm with
 * AVX-512, 8 in ymm with AVX2) in which int32 lane r belongs to row r and
 * the 4-bit quants stay packed, so a tile holds exactly the bytes of its
 * source rows. The kernels then need no per-call unpacking and no
 * horizontal sums, for one token as for a prompt batch: each lane ends with
 * its row's exact integer dot, then takes the reference's float steps
 * (which are llama.cpp's repacked kernels' steps) with lane r = row r.
 *
 * Q4_0 tile, per block of 32 columns: 4 vectors, vector h holding in lane r
 * the source bytes qs[4h..4h+3] of row r (low nibbles = quants 4h..4h+3,
 * high nibbles = quants 16+4h..16+4h+3), then the RP_ROWS fp16 scales:
 * 18 bytes per row and block, like blk_q4_0.
 *
 * Q4_K tile, per super-block of 256 columns: 32 vectors, vector h holding
 * in lane r the bytes qs[4h..4h+3] of row r (chunk c = h / 8, group g =
 * h % 8: low nibbles = quants 4g.. of sub-block 2c, high nibbles = the same
 * of sub-block 2c + 1); then the 6-bit scales as bytes [sub-block][row],
 * the mins as byte pairs [pair p][row] = (min 2p, min 2p + 1), then the
 * rows' fp16 d and dmin: 148 bytes per row and super-block (blk_q4_K: 144).
 *
 * Q6_K tile, per super-block of 256 columns, in the order it is read (with
 * the scales after the quants a product from memory took 1.2-1.4x longer):
 * the 16 int8 scales as pairs [pair p][row] = (scale 2p, scale 2p + 1),
 * the rows' d widened to float (exact; keeps the block a whole number of
 * vectors), then 6 vectors for each lane l = 0..7 of the reference (quants
 * 32c + 4l .. 32c + 4l + 3 of the 8 chunks c of 32): vector p < 4 holds in
 * lane r bits 0-3 of row r's quants of chunk 2p (low nibbles) and 2p + 1
 * (high nibbles), vector 4 + s bits 4-5 of those of chunk 4s + k at bits
 * 2k: 212 bytes per row and super-block (blk_q6_K: 210). The kernel takes
 * the codes unsigned (0..63) like the reference: per lane l, VPMADDUBSW
 * then VPDPWSSD (AVX2: VPMADDWD + add) by the sub-block's scale, started
 * at -32 * (the lane's two scales . the two bsums); then 8 float
 * accumulators per row and token, and the hsum_float_8 tree across them. */

#if X86_512
#define RP_ROWS 16
typedef __m512i rvi;
typedef __m512 rvf;
TGT static inline rvi rv_load(const void *p) {
    return _mm512_loadu_si512(p);
}
TGT static inline rvi rv_lo(rvi v) {
    return _mm512_and_si512(v, _mm512_set1_epi8(0x0f));
}
TGT static inline rvi rv_hi(rvi v) {
    return _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0f));
}
TGT static inline rvi rv_set1(int32_t v) {
    return _mm512_set1_epi32(v);
}
TGT static inline rvi rv_add(rvi a, rvi b) {
    return _mm512_add_epi32(a, b);
}
TGT static inline rvi rv_mullo(rvi a, rvi b) {
    return _mm512_mullo_epi32(a, b);
}
/* acc + lanes of (unsigned bytes u) . (the 4 signed bytes s), 4 a lane. */
TGT static inline rvi rv_dpbusd(rvi acc, rvi u, int32_t s) {
    return _mm512_dpbusd_epi32(acc, u, _mm512_set1_epi32(s));
}
/* acc + lanes of (int16 pairs a) . (the int16 pair s). */
TGT static inline rvi rv_dpwssd(rvi acc, rvi a, int32_t s) {
    return _mm512_dpwssd_epi32(acc, a, _mm512_set1_epi32(s));
}
/* RP_ROWS bytes -> int32 lanes; 2 * RP_ROWS bytes -> int16 lanes. */
TGT static inline rvi rv_u8_i32(const uint8_t *p) {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
}
TGT static inline rvi rv_u8_i16(const uint8_t *p) {
    return _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)p));
}
TGT static inline rvf rvf_ph(const uint8_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
/* 2 * RP_ROWS signed bytes -> int16 lanes. */
TGT static inline rvi rv_i8_i16(const uint8_t *p) {
    return _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)p));
}
/* int16 lanes of (unsigned bytes u) . (signed bytes s), 2 products a lane. */
TGT static inline rvi rv_maddubs(rvi u, rvi s) {
    return _mm512_maddubs_epi16(u, s);
}
/* acc + lanes of (int16 pairs a) . (int16 pairs b). */
TGT static inline rvi rv_dpwssd_v(rvi acc, rvi a, rvi b) {
    return _mm512_dpwssd_epi32(acc, a, b);
}
TGT static inline rvi rv_shufb(rvi v, rvi ctl) {
    return _mm512_shuffle_epi8(v, ctl);
}
TGT static inline rvi rv_bcast128(__m128i v) {
    return _mm512_broadcast_i32x4(v);
}
TGT static inline rvi rv_set1_8(int8_t v) {
    return _mm512_set1_epi8(v);
}
TGT static inline rvi rv_and(rvi a, rvi b) {
    return _mm512_and_si512(a, b);
}
TGT static inline rvi rv_or(rvi a, rvi b) {
    return _mm512_or_si512(a, b);
}
TGT static inline rvi rv_slli16(rvi v, int k) {
    return _mm512_slli_epi16(v, (unsigned)k);
}
TGT static inline rvi rv_srli16(rvi v, int k) {
    return _mm512_srli_epi16(v, (unsigned)k);
}
TGT static inline rvf rvf_cvt(rvi v) {
    return _mm512_cvtepi32_ps(v);
}
TGT static inline rvf rvf_set1(float v) {
    return _mm512_set1_ps(v);
}
TGT static inline rvf rvf_load(const void *p) {
    return _mm512_loadu_ps(p);
}
TGT static inline rvf rvf_zero(void) {
    return _mm512_setzero_ps();
}
TGT static inline rvf rvf_mul(rvf a, rvf b) {
    return _mm512_mul_ps(a, b);
}
TGT static inline rvf rvf_add(rvf a, rvf b) {
    return _mm512_add_ps(a, b);
}
TGT static inline rvf rvf_sub(rvf a, rvf b) {
    return _mm512_sub_ps(a, b);
}
TGT static inline rvf rvf_fmadd(rvf a, rvf b, rvf c) {
    return _mm512_fmadd_ps(a, b, c);
}
TGT static inline void rvf_store(float *p, rvf v) {
    _mm512_storeu_ps(p, v);
}
#else
#define RP_ROWS 8
typedef __m256i rvi;
typedef __m256 rvf;
TGT static inline rvi rv_load(const void *p) {
    return _mm256_loadu_si256((const __m256i *)p);
}
TGT static inline rvi rv_lo(rvi v) {
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
}
TGT static inline rvi rv_hi(rvi v) {
    return _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0f));
}
TGT static inline rvi rv_set1(int32_t v) {
    return _mm256_set1_epi32(v);
}
TGT static inline rvi rv_add(rvi a, rvi b) {
    return _mm256_add_epi32(a, b);
}
TGT static inline rvi rv_mullo(rvi a, rvi b) {
    return _mm256_mullo_epi32(a, b);
}
TGT static inline rvi rv_dpbusd(rvi acc, rvi u, int32_t s) {
    return dot_us_acc(acc, u, _mm256_set1_epi32(s));
}
TGT static inline rvi rv_dpwssd(rvi acc, rvi a, int32_t s) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(a, _mm256_set1_epi32(s)));
}
TGT static inline rvi rv_u8_i32(const uint8_t *p) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
}
TGT static inline rvi rv_u8_i16(const uint8_t *p) {
    return _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p));
}
TGT static inline rvf rvf_ph(const uint8_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
TGT static inline rvi rv_i8_i16(const uint8_t *p) {
    return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)p));
}
TGT static inline rvi rv_maddubs(rvi u, rvi s) {
    return _mm256_maddubs_epi16(u, s);
}
TGT static inline rvi rv_dpwssd_v(rvi acc, rvi a, rvi b) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
}
TGT static inline rvi rv_shufb(rvi v, rvi ctl) {
    return _mm256_shuffle_epi8(v, ctl);
}
TGT static inline rvi rv_bcast128(__m128i v) {
    return _mm256_broadcastsi128_si256(v);
}
TGT static inline rvi rv_set1_8(int8_t v) {
    return _mm256_set1_epi8(v);
}
TGT static inline rvi rv_and(rvi a, rvi b) {
    return _mm256_and_si256(a, b);
}
TGT static inline rvi rv_or(rvi a, rvi b) {
    return _mm256_or_si256(a, b);
}
TGT static inline rvi rv_slli16(rvi v, int k) {
    return _mm256_slli_epi16(v, k);
}
TGT static inline rvi rv_srli16(rvi v, int k) {
    return _mm256_srli_epi16(v, k);
}
TGT static inline rvf rvf_cvt(rvi v) {
    return _mm256_cvtepi32_ps(v);
}
TGT static inline rvf rvf_set1(float v) {
    return _mm256_set1_ps(v);
}
TGT static inline rvf rvf_load(const void *p) {
    return _mm256_loadu_ps(p);
}
TGT static inline rvf rvf_zero(void) {
    return _mm256_setzero_ps();
}
TGT static inline rvf rvf_mul(rvf a, rvf b) {
    return _mm256_mul_ps(a, b);
}
TGT static inline rvf rvf_add(rvf a, rvf b) {
    return _mm256_add_ps(a, b);
}
TGT static inline rvf rvf_sub(rvf a, rvf b) {
    return _mm256_sub_ps(a, b);
}
TGT static inline rvf rvf_fmadd(rvf a, rvf b, rvf c) {
    return _mm256_fmadd_ps(a, b, c);
}
TGT static inline void rvf_store(float *p, rvf v) {
    _mm256_storeu_ps(p, v);
}
#endif

#define RV_BYTES     (4 * RP_ROWS)
#define RP_Q40_BLOCK (4 * RV_BYTES + 2 * RP_ROWS)
#define RP_Q4K_SC    (32 * RV_BYTES)
#define RP_Q4K_MN    (RP_Q4K_SC + 8 * RP_ROWS)
#define RP_Q4K_D     (RP_Q4K_MN + 8 * RP_ROWS)
#define RP_Q4K_BLOCK (RP_Q4K_D + 4 * RP_ROWS)
#define RP_Q6K_SC    0
#define RP_Q6K_D     (16 * RP_ROWS)
#define RP_Q6K_Q     (20 * RP_ROWS)
#define RP_Q6K_BLOCK (RP_Q6K_Q + 48 * RV_BYTES)
#define RP_INLINE    TGT static inline __attribute__((always_inline))

/* Prefetch of a tile stream: one call per 64 bytes. */
#define RP_PF(p, bytes)                                                                            \
    do {                                                                                           \
        for (int pf_i = 0; pf_i < (bytes); pf_i += 64)                                             \
            pf((const char *)(p) + pf_i);                                                          \
    } while (0)

/* ------------------------------------------------------------- Q4_0 */

static size_t SFX(rp_bytes_q4_0)(int64_t n) {
    return (size_t)(n / QK32) * RP_Q40_BLOCK;
}

static void SFX(rp_pack_q4_0)(int64_t n, const void *vx, size_t xs, void *vdst) {
    uint8_t *dst = vdst;
    for (int64_t b = 0; b < n / QK32; b++, dst += RP_Q40_BLOCK)
        for (int r = 0; r < RP_ROWS; r++) {
            const blk_q4_0 *x = (const blk_q4_0 *)((const char *)vx + (size_t)r * xs) + b;
            for (int h = 0; h < 4; h++)
                memcpy(dst + h * RV_BYTES + 4 * r, x->qs + 4 * h, 4);
            memcpy(dst + 4 * RV_BYTES + 2 * r, &x->d, 2);
        }
}

/* -8 * (sum of the 32 codes of a Q8_0 block): the offset of the unsigned
 * nibbles, the same for every row. */
TGT static inline int32_t q8_0_negsum8_1(const blk_q8_0 *y) {
    const __m256i v = _mm256_xor_si256(loadu256(y->qs), _mm256_set1_epi8((char)0x80));
    const __m256i sd = _mm256_sad_epu8(v, _mm256_setzero_si256());
    __m128i h = _mm_add_epi64(_mm256_castsi256_si128(sd), _mm256_extracti128_si256(sd, 1));
    h = _mm_add_epi64(h, _mm_unpackhi_epi64(h, h));
    return -8 * (_mm_cvtsi128_si32(h) - 32 * 128);
}

/* The shared per-token values of nt tokens: for token t, aux[2 nb t + b]
 * is block b's code offset (q8_0_negsum8_1) and aux[2 nb t + nb + b] the
 * bits of its scale as a float, so that the kernels read both with one
 * broadcast each. */
static void SFX(rp_aux_q4_0)(int64_t n, const void *vy, size_t ys, int64_t nt, int32_t *aux) {
    const int64_t nb = n / QK32;
    for (int64_t t = 0; t < nt; t++) {
        const blk_q8_0 *y = (const blk_q8_0 *)((const char *)vy + (size_t)t * ys);
        int32_t *a = aux + 2 * nb * t;
        for (int64_t b = 0; b < nb; b++) {
            a[b] = q8_0_negsum8_1(&y[b]);
            const float d = h2f(y[b].d);
            memcpy(&a[nb + b], &d, sizeof d);
        }
    }
}

#if X86_512
#define RP_Q40_KMAX 8
#else
#define RP_Q40_KMAX 4 /* 16 ymm registers: 8 unpacked vectors + 4 sums */
#endif

RP_INLINE int32_t rp_ld32(const void *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* K tokens (1..RP_Q40_KMAX) against one tile, the block's nibbles split once
 * for all of them; cs: each token's aux row (rp_aux_q4_0), or NULL (the
 * offsets and scales are then computed here, block by block). */
RP_INLINE void rp_q4_0_k(int64_t nb, const uint8_t *pb, const blk_q8_0 *const *y,
                         const int32_t *const *cs, const int K, float *out, int64_t os) {
    rvf acc[RP_Q40_KMAX];
    for (int t = 0; t < K; t++)
        acc[t] = rvf_zero();
    for (int64_t b = 0; b < nb; b++, pb += RP_Q40_BLOCK) {
        RP_PF(pb, RP_Q40_BLOCK);
        rvi q[8];
        for (int h = 0; h < 4; h++) {
            const rvi w = rv_load(pb + h * RV_BYTES);
            q[h] = rv_lo(w);
            q[h + 4] = rv_hi(w);
        }
        const rvf dx = rvf_ph(pb + 4 * RV_BYTES);
        for (int t = 0; t < K; t++) {
            const int8_t *yq = y[t][b].qs;
            /* two chains: a single token's block is 8 dependent dot steps */
            rvi i0 = rv_set1(cs ? cs[t][b] : q8_0_negsum8_1(&y[t][b])), i1 = rv_set1(0);
            for (int g = 0; g < 4; g++) {
                i0 = rv_dpbusd(i0, q[g], rp_ld32(yq + 4 * g));
                i1 = rv_dpbusd(i1, q[g + 4], rp_ld32(yq + 16 + 4 * g));
            }
            const rvf si = rvf_cvt(rv_add(i0, i1));
            float dy;
            if (cs)
                memcpy(&dy, &cs[t][nb + b], sizeof dy);
            else
                dy = h2f(y[t][b].d);
            acc[t] = rvf_fmadd(si, rvf_mul(dx, rvf_set1(dy)), acc[t]);
        }
    }
    for (int t = 0; t < K; t++)
        rvf_store(out + t * os, acc[t]);
}

#define RP_Q40_CASE(k)                                                                             \
    case k:                                                                                        \
        if (aux)                                                                                   \
            rp_q4_0_k(nb, tile, y, cs, k, o, os);                                                  \
        else                                                                                       \
            rp_q4_0_k(nb, tile, y, NULL, k, o, os);                                                \
        break

TGT static void SFX(rp_gemm_q4_0)(int64_t n, const void *tile, const void *vy, size_t ys,
                                  int64_t nt, const int32_t *aux, float *out, int64_t os) {
    const int64_t nb = n / QK32;
    for (int64_t t0 = 0; t0 < nt; t0 += RP_Q40_KMAX) {
        const int k = (int)(nt - t0 < RP_Q40_KMAX ? nt - t0 : RP_Q40_KMAX);
        const blk_q8_0 *y[RP_Q40_KMAX];
        const int32_t *cs[RP_Q40_KMAX];
        for (int t = 0; t < RP_Q40_KMAX; t++) {
            const int64_t tt = t0 + (t < k ? t : 0);
            y[t] = (const blk_q8_0 *)((const char *)vy + (size_t)tt * ys);
            cs[t] = aux ? aux + 2 * nb * tt : NULL;
        }
        float *o = out + t0 * os;
        switch (k) {
            RP_Q40_CASE(1);
            RP_Q40_CASE(2);
            RP_Q40_CASE(3);
#if RP_Q40_KMAX > 4
            RP_Q40_CASE(4);
            RP_Q40_CASE(5);
            RP_Q40_CASE(6);
            RP_Q40_CASE(7);
#endif
        default:
            if (aux)
                rp_q4_0_k(nb, tile, y, cs, RP_Q40_KMAX, o, os);
            else
                rp_q4_0_k(nb, tile, y, NULL, RP_Q40_KMAX, o, os);
            break;
        }
    }
}
#undef RP_Q40_CASE

/* ------------------------------------------------------------- Q4_K */

static size_t SFX(rp_bytes_q4_K)(int64_t n) {
    return (size_t)(n / QKK) * RP_Q4K_BLOCK;
}

static void SFX(rp_pack_q4_K)(int64_t n, const void *vx, size_t xs, void *vdst) {
    uint8_t *dst = vdst;
    for (int64_t b = 0; b < n / QKK; b++, dst += RP_Q4K_BLOCK)
        for (int r = 0; r < RP_ROWS; r++) {
            const blk_q4_K *x = (const blk_q4_K *)((const char *)vx + (size_t)r * xs) + b;
            for (int h = 0; h < 32; h++)
                memcpy(dst + h * RV_BYTES + 4 * r, x->qs + 4 * h, 4);
            uint8_t sm[16];
            k4_scales16(x->scales, sm);
            for (int j = 0; j < 8; j++)
                dst[RP_Q4K_SC + j * RP_ROWS + r] = sm[j];
            for (int p = 0; p < 4; p++) {
                dst[RP_Q4K_MN + p * 2 * RP_ROWS + 2 * r] = sm[8 + 2 * p];
                dst[RP_Q4K_MN + p * 2 * RP_ROWS + 2 * r + 1] = sm[8 + 2 * p + 1];
            }
            memcpy(dst + RP_Q4K_D + 2 * r, &x->d, 2);
            memcpy(dst + RP_Q4K_D + 2 * RP_ROWS + 2 * r, &x->dmin, 2);
        }
}

RP_INLINE void rp_q4_K_k(int64_t nb, const uint8_t *pb, const blk_q8_K *const *y, const int K,
                         float *out, int64_t os) {
    rvf acc[4] = {rvf_zero(), rvf_zero(), rvf_zero(), rvf_zero()};
    for (int64_t b = 0; b < nb; b++, pb += RP_Q4K_BLOCK) {
        rvi isum[4], summs[4];
        for (int t = 0; t < K; t++)
            isum[t] = summs[t] = rv_set1(0);
        for (int c = 0; c < 4; c++) {
            RP_PF(pb + c * 8 * RV_BYTES, 8 * RV_BYTES);
            rvi ilo[4], ihi[4];
            for (int t = 0; t < K; t++)
                ilo[t] = ihi[t] = rv_set1(0);
            for (int g = 0; g < 8; g++) {
                const rvi w = rv_load(pb + (8 * c + g) * RV_BYTES);
                const rvi lo = rv_lo(w), hi = rv_hi(w);
                for (int t = 0; t < K; t++) {
                    int32_t a, h;
                    memcpy(&a, y[t][b].qs + 64 * c + 4 * g, 4);
                    memcpy(&h, y[t][b].qs + 64 * c + 32 + 4 * g, 4);
                    ilo[t] = rv_dpbusd(ilo[t], lo, a);
                    ihi[t] = rv_dpbusd(ihi[t], hi, h);
                }
            }
            const rvi s0 = rv_u8_i32(pb + RP_Q4K_SC + 2 * c * RP_ROWS);
            const rvi s1 = rv_u8_i32(pb + RP_Q4K_SC + (2 * c + 1) * RP_ROWS);
            for (int t = 0; t < K; t++)
                isum[t] = rv_add(isum[t], rv_add(rv_mullo(ilo[t], s0), rv_mullo(ihi[t], s1)));
        }
        RP_PF(pb + RP_Q4K_SC, RP_Q4K_BLOCK - RP_Q4K_SC);
        for (int p = 0; p < 4; p++) {
            const rvi mn = rv_u8_i16(pb + RP_Q4K_MN + p * 2 * RP_ROWS);
            for (int t = 0; t < K; t++) {
                const int16_t *bs = y[t][b].bsums + 4 * p;
                const uint16_t b0 = (uint16_t)(bs[0] + bs[1]), b1 = (uint16_t)(bs[2] + bs[3]);
                summs[t] = rv_dpwssd(summs[t], mn, (int32_t)((uint32_t)b0 | (uint32_t)b1 << 16));
            }
        }
        const rvf dx = rvf_ph(pb + RP_Q4K_D);
        const rvf dm = rvf_ph(pb + RP_Q4K_D + 2 * RP_ROWS);
        for (int t = 0; t < K; t++) {
            const rvf yd = rvf_set1(y[t][b].d);
            const rvf d = rvf_mul(dx, yd);
            rvf tt = rvf_mul(d, rvf_cvt(isum[t]));
            const rvf dmin = rvf_mul(dm, yd);
            const rvf m = rvf_mul(dmin, rvf_cvt(summs[t]));
            tt = rvf_sub(tt, m);
            acc[t] = rvf_add(acc[t], tt);
        }
    }
    for (int t = 0; t < K; t++)
        rvf_store(out + t * os, acc[t]);
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
            rp_q4_K_k(nb, tile, y, 1, o, os);
            break;
        case 2:
            rp_q4_K_k(nb, tile, y, 2, o, os);
            break;
        case 3:
            rp_q4_K_k(nb, tile, y, 3, o, os);
            break;
        default:
            rp_q4_K_k(nb, tile, y, 4, o, os);
            break;
        }
    }
}

/* ------------------------------------------------------------- Q6_K */

#if X86_512
#define RP_Q6K_KMAX 8
#else
#define RP_Q6K_KMAX 4
#endif

static size_t SFX(rp_bytes_q6_K)(int64_t n) {
    return (size_t)(n / QKK) * RP_Q6K_BLOCK;
}

/* The 256 unsigned codes (0..63) of a Q6_K super-block, element order. */
static void q6k_codes(const blk_q6_K *x, uint8_t *q) {
    for (int e = 0; e < QKK; e++) {
        const int n = e / 128, r = e % 128, k = r / 32, l = r % 32;
        const uint8_t lb = x->ql[64 * n + l + 32 * (k & 1)];
        const int lo = k < 2 ? (lb & 0x0f) : (lb >> 4);
        q[e] = (uint8_t)(lo | ((x->qh[32 * n + l] >> (2 * k)) & 3) << 4);
    }
}

static void SFX(rp_pack_q6_K)(int64_t n, const void *vx, size_t xs, void *vdst) {
    uint8_t *dst = vdst;
    for (int64_t b = 0; b < n / QKK; b++, dst += RP_Q6K_BLOCK)
        for (int r = 0; r < RP_ROWS; r++) {
            const blk_q6_K *x = (const blk_q6_K *)((const char *)vx + (size_t)r * xs) + b;
            uint8_t q[QKK];
            q6k_codes(x, q);
            for (int l = 0; l < 8; l++)
                for (int i = 0; i < 4; i++) {
                    uint8_t *v = dst + RP_Q6K_Q + 6 * l * RV_BYTES + 4 * r + i;
                    const uint8_t *g = q + 4 * l + i; /* g[32 * c]: chunk c's code */
                    for (int p = 0; p < 4; p++)
                        v[p * RV_BYTES] =
                            (uint8_t)((g[64 * p] & 0x0f) | (g[64 * p + 32] & 0x0f) << 4);
                    for (int s = 0; s < 2; s++) {
                        int h = 0;
                        for (int k = 0; k < 4; k++)
                            h |= (g[32 * (4 * s + k)] >> 4) << (2 * k);
                        v[(4 + s) * RV_BYTES] = (uint8_t)h;
                    }
                }
            for (int j = 0; j < 16; j++)
                dst[RP_Q6K_SC + (j / 2) * 2 * RP_ROWS + 2 * r + j % 2] = (uint8_t)x->scales[j];
            const float d = kern_h2f(x->d);
            memcpy(dst + RP_Q6K_D + 4 * r, &d, 4);
        }
}

RP_INLINE void rp_q6_K_k(int64_t nb, const uint8_t *pb, const blk_q8_K *const *y, const int K,
                         float *out, int64_t os) {
    const rvi m4 = rv_set1_8(0x0f), m3 = rv_set1_8(0x30);
    /* int16 pairs (a, b) of a lane -> (a, a) and (b, b) */
    const rvi dlo = rv_bcast128(_mm_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13));
    const rvi dhi =
        rv_bcast128(_mm_setr_epi8(2, 3, 2, 3, 6, 7, 6, 7, 10, 11, 10, 11, 14, 15, 14, 15));
    rvf acc[RP_Q6K_KMAX][8];
    for (int t = 0; t < K; t++)
        for (int l = 0; l < 8; l++)
            acc[t][l] = rvf_zero();
    for (int64_t b = 0; b < nb; b++, pb += RP_Q6K_BLOCK) {
        RP_PF(pb, RP_Q6K_Q);
        rvi sc[2][8], off[8]; /* sc[h][c]: (scale 2c + h) twice */
        for (int p = 0; p < 8; p++) {
            const rvi s = rv_i8_i16(pb + RP_Q6K_SC + p * 2 * RP_ROWS);
            sc[0][p] = rv_shufb(s, dlo);
            sc[1][p] = rv_shufb(s, dhi);
            off[p] = rv_slli16(s, 5); /* 32 * scale: |.| <= 4096 */
        }
        const rvf dx = rvf_load(pb + RP_Q6K_D);
        rvf d[RP_Q6K_KMAX];
        int32_t nbs[RP_Q6K_KMAX][8];
        for (int t = 0; t < K; t++) {
            d[t] = rvf_mul(dx, rvf_set1(y[t][b].d));
            const __m256i bs = loadu256(y[t][b].bsums);
            _mm256_storeu_si256((__m256i *)nbs[t], _mm256_sub_epi16(_mm256_setzero_si256(), bs));
        }
        for (int l = 0; l < 8; l++) {
            const uint8_t *pl = pb + RP_Q6K_Q + 6 * l * RV_BYTES;
            RP_PF(pl, 6 * RV_BYTES);
            rvi w[8];
            for (int s = 0; s < 2; s++) {
                const rvi a0 = rv_load(pl + 2 * s * RV_BYTES);
                const rvi a1 = rv_load(pl + (2 * s + 1) * RV_BYTES);
                const rvi h = rv_load(pl + (4 + s) * RV_BYTES);
                w[4 * s] = rv_or(rv_and(a0, m4), rv_and(rv_slli16(h, 4), m3));
                w[4 * s + 1] = rv_or(rv_and(rv_srli16(a0, 4), m4), rv_and(rv_slli16(h, 2), m3));
                w[4 * s + 2] = rv_or(rv_and(a1, m4), rv_and(h, m3));
                w[4 * s + 3] = rv_or(rv_and(rv_srli16(a1, 4), m4), rv_and(rv_srli16(h, 2), m3));
            }
            const rvi *scl = sc[l / 4];
            for (int t = 0; t < K; t++) {
                const int8_t *yq = y[t][b].qs + 4 * l;
                /* two chains: one token's lane is 9 dependent steps */
                rvi i0 = rv_dpwssd(rv_set1(0), off[l], nbs[t][l]), i1 = rv_set1(0);
                for (int c = 0; c < 8; c += 2) {
                    int32_t v0, v1;
                    memcpy(&v0, yq + 32 * c, 4);
                    memcpy(&v1, yq + 32 * c + 32, 4);
                    i0 = rv_dpwssd_v(i0, rv_maddubs(w[c], rv_set1(v0)), scl[c]);
                    i1 = rv_dpwssd_v(i1, rv_maddubs(w[c + 1], rv_set1(v1)), scl[c + 1]);
                }
                acc[t][l] = rvf_fmadd(d[t], rvf_cvt(rv_add(i0, i1)), acc[t][l]);
            }
        }
    }
    for (int t = 0; t < K; t++) {
        /* hsum_float_8 with lane r = row r */
        const rvf r0 = rvf_add(acc[t][4], acc[t][0]), r1 = rvf_add(acc[t][5], acc[t][1]);
        const rvf r2 = rvf_add(acc[t][6], acc[t][2]), r3 = rvf_add(acc[t][7], acc[t][3]);
        rvf_store(out + t * os, rvf_add(rvf_add(r0, r2), rvf_add(r1, r3)));
    }
}

TGT static void SFX(rp_gemm_q6_K)(int64_t n, const void *tile, const void *vy, size_t ys,
                                  int64_t nt, const int32_t *aux, float *out, int64_t os) {
    (void)aux;
    const int64_t nb = n / QKK;
    for (int64_t t0 = 0; t0 < nt; t0 += RP_Q6K_KMAX) {
        const int k = (int)(nt - t0 < RP_Q6K_KMAX ? nt - t0 : RP_Q6K_KMAX);
        const blk_q8_K *y[RP_Q6K_KMAX];
        for (int t = 0; t < RP_Q6K_KMAX; t++)
            y[t] = (const blk_q8_K *)((const char *)vy + (size_t)(t0 + (t < k ? t : 0)) * ys);
        float *o = out + t0 * os;
        switch (k) {
        case 1:
            rp_q6_K_k(nb, tile, y, 1, o, os);
            break;
        case 2:
            rp_q6_K_k(nb, tile, y, 2, o, os);
            break;
        case 3:
            rp_q6_K_k(nb, tile, y, 3, o, os);
            break;
#if RP_Q6K_KMAX > 4
        case 4:
            rp_q6_K_k(nb, tile, y, 4, o, os);
            break;
        case 5:
            rp_q6_K_k(nb, tile, y, 5, o, os);
            break;
        case 6:
            rp_q6_K_k(nb, tile, y, 6, o, os);
            break;
        case 7:
            rp_q6_K_k(nb, tile, y, 7, o, os);
            break;
#endif
        default:
            rp_q6_K_k(nb, tile, y, RP_Q6K_KMAX, o, os);
            break;
        }
    }
}

static void SFX(fill_rp)(struct kern_ops *ops) {
    ops[ICA_Q4_0].rp_pack = SFX(rp_pack_q4_0);
    ops[ICA_Q4_0].rp_gemm = SFX(rp_gemm_q4_0);
    ops[ICA_Q4_0].rp_bytes = SFX(rp_bytes_q4_0);
    ops[ICA_Q4_0].rp_aux = SFX(rp_aux_q4_0);
    ops[ICA_Q4_0].rp_rows = RP_ROWS;
    ops[ICA_Q4_K].rp_pack = SFX(rp_pack_q4_K);
    ops[ICA_Q4_K].rp_gemm = SFX(rp_gemm_q4_K);
    ops[ICA_Q4_K].rp_bytes = SFX(rp_bytes_q4_K);
    ops[ICA_Q4_K].rp_rows = RP_ROWS;
    ops[ICA_Q6_K].rp_pack = SFX(rp_pack_q6_K);
    ops[ICA_Q6_K].rp_gemm = SFX(rp_gemm_q6_K);
    ops[ICA_Q6_K].rp_bytes = SFX(rp_bytes_q6_K);
    ops[ICA_Q6_K].rp_rows = RP_ROWS;
}
