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
 * float lanes per output, lane l = bytes 4l..4l+3): two rows per zmm, row
 * 2p in lanes 0..7 and row 2p+1 in lanes 8..15. The weight bytes are made
 * unsigned once per block (x ^ 0x80 = x + 128) and VPDPBUSD'ed with the
 * broadcast activation block, starting from -128 * (the activation's byte
 * sums per lane), which leaves exactly the signed lane dots; then each
 * lane takes the reference's acc = fma(dx * dy, (float)lane, acc). */
TGT static void SFX(tile4_q8_0_z)(int64_t n, const void *vx, size_t xs, const void *vy, size_t ys,
                                  int nt, float *out, int64_t os) {
    const blk_q8_0 *x[4], *y[4];
    for (int k = 0; k < 4; k++) {
        x[k] = (const blk_q8_0 *)((const char *)vx + (size_t)k * xs);
        y[k] = (const blk_q8_0 *)((const char *)vy + (size_t)(k < nt ? k : 0) * ys);
    }
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    __m512 acc[2][4];
    for (int p = 0; p < 2; p++)
        for (int t = 0; t < 4; t++)
            acc[p][t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / QK32; i++) {
        __m512i u[2];
        __m512 dx[2];
        for (int p = 0; p < 2; p++) {
            pf(x[2 * p] + i);
            pf(x[2 * p + 1] + i);
            const __m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(loadu256(x[2 * p][i].qs)),
                                                 loadu256(x[2 * p + 1][i].qs), 1);
            u[p] = _mm512_xor_si512(w, flip);
            dx[p] = _mm512_insertf32x8(_mm512_set1_ps(h2f(x[2 * p][i].d)),
                                       _mm256_set1_ps(h2f(x[2 * p + 1][i].d)), 1);
        }
        for (int t = 0; t < nt; t++) {
            const __m512i yb = _mm512_broadcast_i64x4(loadu256(y[t][i].qs));
            const __m512i c = _mm512_dpbusd_epi32(_mm512_setzero_si512(), flip, yb);
            const __m512i nc = _mm512_sub_epi32(_mm512_setzero_si512(), c);
            const __m512 dy = _mm512_set1_ps(h2f(y[t][i].d));
            for (int p = 0; p < 2; p++) {
                const __m512i l = _mm512_dpbusd_epi32(nc, u[p], yb);
                acc[p][t] =
                    _mm512_fmadd_ps(_mm512_mul_ps(dx[p], dy), _mm512_cvtepi32_ps(l), acc[p][t]);
            }
        }
    }
    for (int t = 0; t < nt; t++)
        for (int p = 0; p < 2; p++) {
            out[t * os + 2 * p] = hsum8(_mm512_castps512_ps256(acc[p][t]));
            out[t * os + 2 * p + 1] = hsum8(_mm512_extractf32x8_ps(acc[p][t], 1));
        }
}

static void SFX(fill_sgemm)(struct kern_ops *ops) {
    ops[ICA_Q8_0].tile4 = SFX(tile4_q8_0_z);
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
