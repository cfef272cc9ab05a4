/* Part of simd_x86.h (AVX-512 level only): llamafile sgemm's order for
 * F32 / F16 / BF16 weights with several tokens, as tiles of 4 rows x 4
 * tokens. Every output keeps its own 16-lane accumulator (one zmm) with the
 * reference's FMA (or VDPBF16PS) chain over k and its reduce16 tree, so
 * tiling changes which outputs are computed together, never a value; each
 * weight and activation vector is loaded (and widened) once for 4 uses. */
#if X86_512

TGT static inline __m512 zld_f32(const float *p) {
    return _mm512_loadu_ps(p);
}

TGT static inline __m512 zld_f16(const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

#define SGEMM_T44(name, T, ld)                                                                     \
    TGT static void name(int64_t n, const void *vx, size_t xs, const void *vy, size_t ys, int nt,  \
                         float *out, int64_t os) {                                                 \
        const T *x[4], *y[4];                                                                      \
        for (int k = 0; k < 4; k++) {                                                              \
            x[k] = (const T *)((const char *)vx + (size_t)k * xs);                                 \
            y[k] = (const T *)((const char *)vy + (size_t)(k < nt ? k : 0) * ys);                  \
        }                                                                                          \
        __m512 acc[4][4];                                                                          \
        for (int r = 0; r < 4; r++)                                                                \
            for (int t = 0; t < 4; t++)                                                            \
                acc[r][t] = _mm512_setzero_ps();                                                   \
        for (int64_t i = 0; i < n; i += 16) {                                                      \
            __m512 a[4];                                                                           \
            for (int t = 0; t < 4; t++)                                                            \
                a[t] = ld(y[t] + i);                                                               \
            for (int r = 0; r < 4; r++) {                                                          \
                const __m512 w = ld(x[r] + i);                                                     \
                for (int t = 0; t < 4; t++)                                                        \
                    acc[r][t] = _mm512_fmadd_ps(w, a[t], acc[r][t]);                               \
            }                                                                                      \
        }                                                                                          \
        for (int t = 0; t < nt; t++)                                                               \
            for (int r = 0; r < 4; r++)                                                            \
                out[t * os + r] = reduce16_512(acc[r][t]);                                         \
    }

SGEMM_T44(SFX(sgemm44_f32), float, zld_f32)
SGEMM_T44(SFX(sgemm44_f16), uint16_t, zld_f16)

TGT static void SFX(sgemm44_bf16)(int64_t n, const void *vx, size_t xs, const void *vy, size_t ys,
                                  int nt, float *out, int64_t os) {
    const uint16_t *x[4], *y[4];
    for (int k = 0; k < 4; k++) {
        x[k] = (const uint16_t *)((const char *)vx + (size_t)k * xs);
        y[k] = (const uint16_t *)((const char *)vy + (size_t)(k < nt ? k : 0) * ys);
    }
    __m512 acc[4][4];
    for (int r = 0; r < 4; r++)
        for (int t = 0; t < 4; t++)
            acc[r][t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 32) {
        __m512i a[4];
        for (int t = 0; t < 4; t++)
            a[t] = _mm512_loadu_si512((const void *)(y[t] + i));
        for (int r = 0; r < 4; r++) {
            const __m512i w = _mm512_loadu_si512((const void *)(x[r] + i));
            for (int t = 0; t < 4; t++)
                acc[r][t] = _mm512_dpbf16_ps(acc[r][t], (__m512bh)w, (__m512bh)a[t]);
        }
    }
    for (int t = 0; t < nt; t++)
        for (int r = 0; r < 4; r++)
            out[t * os + r] = reduce16_512(acc[r][t]);
}

/* Q8_0 tiles of 4 rows x up to 4 tokens (the reference keeps 8 int32 /
 * float lanes per output, lane l = bytes 4l..4l+3), in ymm registers (Zen 4
 * runs zmm operations at half rate, so two rows per zmm saves nothing). The
 * weight bytes are made unsigned once per block (x ^ 0x80 = x + 128) and
 * VPDPBUSD'ed with the activation block starting from -128 * (its byte sums
 * per lane), computed once per token and block: one instruction per row,
 * token and block leaves exactly the signed lane dots; then each lane takes
 * the reference's acc = fma(dx * dy, (float)lane, acc). */
/* Block i of row r at xb + r * rs + i * bs: rows as stored (rs = the row
 * stride, bs = 34) or repacked 4-row tiles (rs = 34, bs = 136: one
 * sequential stream, which the hardware prefetchers follow where four
 * row streams a row apart defeat them). */
RP_INLINE void q8_0_t44(int64_t nb, const char *xb, size_t rs, size_t bs, const blk_q8_0 *const *y,
                        const int K, float *out, int64_t os) {
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    __m256 acc[4][4];
    for (int r = 0; r < 4; r++)
        for (int t = 0; t < K; t++)
            acc[r][t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m256i u[4];
        float dx[4];
        const char *bi = xb + (size_t)i * bs;
        if (bs == 4 * sizeof(blk_q8_0)) {
            pf(bi);
            pf(bi + 64);
            pf(bi + 128);
        }
        for (int r = 0; r < 4; r++) {
            const blk_q8_0 *x = (const blk_q8_0 *)(bi + (size_t)r * rs);
            if (bs != 4 * sizeof(blk_q8_0))
                pf(x);
            u[r] = _mm256_xor_si256(loadu256(x->qs), flip);
            dx[r] = h2f(x->d);
        }
        for (int t = 0; t < K; t++) {
            const __m256i yv = loadu256(y[t][i].qs);
            const __m256i nc = _mm256_sub_epi32(
                _mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), flip, yv));
            const float dy = h2f(y[t][i].d);
            for (int r = 0; r < 4; r++) {
                const __m256i l = _mm256_dpbusd_epi32(nc, u[r], yv);
                acc[r][t] =
                    _mm256_fmadd_ps(_mm256_set1_ps(dx[r] * dy), _mm256_cvtepi32_ps(l), acc[r][t]);
            }
        }
    }
    for (int t = 0; t < K; t++)
        for (int r = 0; r < 4; r++)
            out[t * os + r] = hsum8(acc[r][t]);
}

TGT static void q8_0_t44_k(int64_t n, const char *xb, size_t rs, size_t bs, const void *vy,
                           size_t ys, int64_t nt, float *out, int64_t os) {
    const int64_t nb = n / QK32;
    for (int64_t t0 = 0; t0 < nt; t0 += 4) {
        const int k = (int)(nt - t0 < 4 ? nt - t0 : 4);
        const blk_q8_0 *y[4];
        for (int t = 0; t < 4; t++)
            y[t] = (const blk_q8_0 *)((const char *)vy + (size_t)(t0 + (t < k ? t : 0)) * ys);
        float *o = out + t0 * os;
        switch (k) {
        case 1:
            q8_0_t44(nb, xb, rs, bs, y, 1, o, os);
            break;
        case 2:
            q8_0_t44(nb, xb, rs, bs, y, 2, o, os);
            break;
        case 3:
            q8_0_t44(nb, xb, rs, bs, y, 3, o, os);
            break;
        default:
            q8_0_t44(nb, xb, rs, bs, y, 4, o, os);
            break;
        }
    }
}

TGT static void SFX(tile4_q8_0_y)(int64_t n, const void *vx, size_t xs, const void *vy, size_t ys,
                                  int nt, float *out, int64_t os) {
    q8_0_t44_k(n, vx, xs, sizeof(blk_q8_0), vy, ys, nt, out, os);
}

/* Repacked Q8_0: 4-row tiles, block i of the 4 rows side by side (the same
 * bytes), read by the kernel above as one stream. */
static size_t SFX(rp_bytes_q8_0)(int64_t n) {
    return (size_t)(n / QK32) * 4 * sizeof(blk_q8_0);
}

static void SFX(rp_pack_q8_0)(int64_t n, const void *vx, size_t xs, void *vdst) {
    blk_q8_0 *dst = vdst;
    for (int64_t b = 0; b < n / QK32; b++)
        for (int r = 0; r < 4; r++)
            dst[4 * b + r] = ((const blk_q8_0 *)((const char *)vx + (size_t)r * xs))[b];
}

TGT static void SFX(rp_gemm_q8_0)(int64_t n, const void *tile, const void *vy, size_t ys,
                                  int64_t nt, const int32_t *aux, float *out, int64_t os) {
    (void)aux;
    q8_0_t44_k(n, tile, sizeof(blk_q8_0), 4 * sizeof(blk_q8_0), vy, ys, nt, out, os);
}

static void SFX(fill_sgemm)(struct kern_ops *ops) {
    ops[ICA_Q8_0].tile4 = SFX(tile4_q8_0_y);
    ops[ICA_Q8_0].rp_pack = SFX(rp_pack_q8_0);
    ops[ICA_Q8_0].rp_gemm = SFX(rp_gemm_q8_0);
    ops[ICA_Q8_0].rp_bytes = SFX(rp_bytes_q8_0);
    ops[ICA_Q8_0].rp_rows = 4;
    ops[ICA_F32].sgemm44 = SFX(sgemm44_f32);
    ops[ICA_F16].sgemm44 = SFX(sgemm44_f16);
    if (kern_x86_has_bf16())
        ops[ICA_BF16].sgemm44 = SFX(sgemm44_bf16);
}
#else
static void SFX(fill_sgemm)(struct kern_ops *ops) {
    (void)ops;
}
#endif
