/* Scalar reference kernels: dequantization, activation quantizers, dot
 * products and the row-level matmul used by the forward pass.
 *
 * Activation rounding (must be bit-exact with llama.cpp 0253fb21 built
 * GGML_NATIVE on x86-64 AVX-512; see ggml/src/ggml-cpu/arch/x86/quants.c and
 * ggml-cpu.c type_traits_cpu[].from_float):
 *
 *  - Q8_0 (quantize_row_q8_0, AVX/AVX2 branch, which AVX-512 builds take):
 *    amax = max |x| over the 32 values; d = amax / 127 (stored as fp16, round
 *    to nearest even); the multiplier is id = 127 / amax (NOT 1/d as in
 *    quantize_row_q8_0_ref), 0 when amax == 0; q = x * id rounded to nearest
 *    with ties to EVEN (_mm256_round_ps(_MM_ROUND_NEAREST)), whereas the _ref
 *    version uses roundf (ties away from zero). Conversion to int8 saturates.
 *  - Q8_1 (quantize_row_q8_1, same branch): qs and d exactly as Q8_0; the s
 *    field is fp16(d * (float)sum(q)), with d the float amax/127 (before its
 *    fp16 rounding), the sum an exact int and the product one float multiply.
 *  - Q8_K: x86 has no own version; quantize_row_q8_K calls
 *    quantize_row_q8_K_ref. max = the first element of largest |x| (with its
 *    sign); iscale = -127 / max; q = min(127, nearest_int(iscale * x)) where
 *    nearest_int rounds to nearest even (the 1.5*2^23 trick); d = 1 / iscale
 *    (a float, so negative for a positive max); bsums = sums of 16 q. An
 *    all-zero block gives d = 0 and q = 0 (ggml leaves bsums untouched there;
 *    we set them to 0, which no dot product can tell apart since d = 0).
 *  - F16: ggml_cpu_fp32_to_fp16 = F16C vcvtps2ph, round to nearest even.
 *  - BF16: ggml_cpu_fp32_to_bf16 = scalar GGML_FP32_TO_BF16 (nearest even).
 *
 * Dot products reproduce the integer arithmetic of ggml's kernels exactly AND
 * the float operation order of the kernel llama.cpp actually runs on an
 * AVX-512 (VNNI, BF16) build with one thread (vec_dot for one token;
 * llamafile sgemm or the repack extra buffer for Q4_0 / IQ4_NL / Q4_K / Q2_K
 * and for several tokens): 8 float lanes + hsum_float_8 for the 32-block
 * types and the AVX2 K-quant kernels, one sequential FMA per block for the
 * repacked types. Each kernel's comment names the llama.cpp kernel it
 * mirrors. With these, the q4_0, q4_1 and q8_0 fixtures match bit for bit;
 * the remaining differences come from non-matmul ops (see the report in the
 * commit history: silu via ggml_v_expf, attention).
 *
 * F32/F16/BF16 dots mirror ggml_vec_dot_* of an AVX-512 build lane for lane:
 *  - F32: GGML_F32_STEP 64 = 4 accumulators x 16 lanes of fused multiply-add,
 *    tree reduction (acc0+acc2, acc1+acc3, then +, then _mm512_reduce_add_ps
 *    halving 16->8->4->2->1), leftovers added to the float sum one rounded
 *    product at a time (not fused: gcc turns that loop into an in-order
 *    vector reduction).
 *  - F16: the F32Cx16 path (no AVX512-FP16 assumed): same lane structure on
 *    converted values, reduced result and leftovers summed in double.
 *  - BF16: the AVX512-BF16 path (_mm512_dpbf16_ps, two accumulators over 64
 *    elements; per lane the odd product then the even product is added, each
 *    add rounded, denormal inputs/outputs flushed to zero as VDPBF16PS does);
 *    the two reduced sums and leftovers are added in double.
 * Several tokens at once go through llamafile sgemm for F32/F16/BF16 (see
 * sgemm_kind below; kern_matmul_ref picks it per n_tok like llama.cpp).
 *
 * Float expressions are written so that no multiply-add contraction changes
 * them: the library is compiled as ISO C (-std=c11, no -ffp-contract=fast
 * default) and fused operations are spelled fmaf() where ggml fuses. */
#include "kern_impl.h"
#include "simd.h"

#include <math.h>
#include <string.h>

const int8_t kern_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                      1,    13,   25,  38,  53,  69,  89,  113};

/* ---------------------------------------------------------------- plain */

static void f32_to_float(const void *x, float *y, int64_t k) {
    memcpy(y, x, (size_t)k * sizeof(float));
}

static void f32_from_float(const float *x, void *y, int64_t k) {
    memcpy(y, x, (size_t)k * sizeof(float));
}

static void f16_to_float(const void *vx, float *y, int64_t k) {
    const uint16_t *x = vx;
    for (int64_t i = 0; i < k; i++)
        y[i] = kern_h2f(x[i]);
}

static void f16_from_float(const float *x, void *vy, int64_t k) {
    uint16_t *y = vy;
    for (int64_t i = 0; i < k; i++)
        y[i] = kern_f32_to_f16(x[i]);
}

static void bf16_to_float(const void *vx, float *y, int64_t k) {
    const uint16_t *x = vx;
    for (int64_t i = 0; i < k; i++)
        y[i] = kern_bf16_to_f32(x[i]);
}

static void bf16_from_float(const float *x, void *vy, int64_t k) {
    uint16_t *y = vy;
    for (int64_t i = 0; i < k; i++)
        y[i] = kern_f32_to_bf16(x[i]);
}

/* _mm512_reduce_add_ps as gcc/clang implement it: halve 16->8->4->2->1. */
static float reduce16(const float *v) {
    float a[8], b[4], c[2];
    for (int i = 0; i < 8; i++)
        a[i] = v[i + 8] + v[i];
    for (int i = 0; i < 4; i++)
        b[i] = a[i + 4] + a[i];
    for (int i = 0; i < 2; i++)
        c[i] = b[i] + b[i + 2];
    return c[0] + c[1];
}

/* 4 accumulators of 16 lanes, reduced like GGML_F32x16_REDUCE. */
static float reduce_4x16(float acc[4][16]) {
    for (int l = 0; l < 16; l++) {
        acc[0][l] = acc[0][l] + acc[2][l];
        acc[1][l] = acc[1][l] + acc[3][l];
    }
    for (int l = 0; l < 16; l++)
        acc[0][l] = acc[0][l] + acc[1][l];
    return reduce16(acc[0]);
}

static void vec_dot_f32(int64_t n, float *s, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    float acc[4][16] = {{0}};
    int64_t np = n & ~(int64_t)63;
    for (int64_t i = 0; i < np; i += 64)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 16; l++)
                acc[j][l] = fmaf(x[i + 16 * j + l], y[i + 16 * j + l], acc[j][l]);
    float sumf = reduce_4x16(acc);
    /* gcc vectorizes this leftover loop as an in-order (fold-left)
     * reduction: the products are rounded, then added one by one, so no
     * multiply-add is fused here (checked against llama.cpp's KQ values). */
    for (int64_t i = np; i < n; i++) {
        const float p = x[i] * y[i];
        sumf = sumf + p;
    }
    *s = sumf;
}

static void vec_dot_f16(int64_t n, float *s, const void *vx, const void *vy) {
    const uint16_t *x = vx, *y = vy;
    float acc[4][16] = {{0}};
    int64_t np = n & ~(int64_t)63;
    for (int64_t i = 0; i < np; i += 64)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 16; l++)
                acc[j][l] =
                    fmaf(kern_h2f(x[i + 16 * j + l]), kern_h2f(y[i + 16 * j + l]), acc[j][l]);
    double sumf = (double)reduce_4x16(acc);
    for (int64_t i = np; i < n; i++)
        sumf += (double)(kern_h2f(x[i]) * kern_h2f(y[i]));
    *s = (float)sumf;
}

/* bf16 with denormals treated as zero (VDPBF16PS runs with DAZ). */
static float bf16_daz(uint16_t h) {
    if ((h & 0x7f80u) == 0)
        h &= 0x8000u;
    return kern_bf16_to_f32(h);
}

/* flush a denormal float result to signed zero (FTZ). */
static float ftz(float v) {
    uint32_t u = kern_f32_bits(v);
    if ((u & 0x7f800000u) == 0)
        u &= 0x80000000u;
    return kern_bits_f32(u);
}

static void vec_dot_bf16(int64_t n, float *s, const void *vx, const void *vy) {
    const uint16_t *x = vx, *y = vy;
    float c[2][16] = {{0}};
    int64_t i = 0;
    for (; i + 64 <= n; i += 64)
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 16; l++) {
                int64_t e = i + 32 * h + 2 * l;
                /* bf16 x bf16 products are exact in float */
                float odd = bf16_daz(x[e + 1]) * bf16_daz(y[e + 1]);
                float even = bf16_daz(x[e]) * bf16_daz(y[e]);
                c[h][l] = ftz(c[h][l] + odd);
                c[h][l] = ftz(c[h][l] + even);
            }
    double sumf = 0;
    sumf += (double)reduce16(c[0]);
    sumf += (double)reduce16(c[1]);
    for (; i < n; i++)
        sumf += (double)(kern_bf16_to_f32(x[i]) * kern_bf16_to_f32(y[i]));
    *s = (float)sumf;
}

/* ------------------------------------------------- activation quantizers */

static void quantize_q8_0(const float *x, void *vy, int64_t k) {
    blk_q8_0 *y = vy;
    for (int64_t i = 0; i < k / QK32; i++, x += QK32) {
        float amax = 0.0f;
        for (int j = 0; j < QK32; j++) {
            float a = fabsf(x[j]);
            amax = a > amax ? a : amax;
        }
        float d = amax / 127.f;
        float id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[i].d = kern_f32_to_f16(d);
        for (int j = 0; j < QK32; j++) {
            int q = kern_nearest_int(x[j] * id);
            y[i].qs[j] = (int8_t)(q > 127 ? 127 : q < -128 ? -128 : q);
        }
    }
}

static void quantize_q8_1(const float *x, void *vy, int64_t k) {
    blk_q8_1 *y = vy;
    for (int64_t i = 0; i < k / QK32; i++, x += QK32) {
        float amax = 0.0f;
        for (int j = 0; j < QK32; j++) {
            float a = fabsf(x[j]);
            amax = a > amax ? a : amax;
        }
        float d = amax / 127.f;
        float id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[i].d = kern_f32_to_f16(d);
        int sum = 0;
        for (int j = 0; j < QK32; j++) {
            int q = kern_nearest_int(x[j] * id);
            q = q > 127 ? 127 : q < -128 ? -128 : q;
            y[i].qs[j] = (int8_t)q;
            sum += q;
        }
        y[i].s = kern_f32_to_f16(d * (float)sum);
    }
}

static void quantize_q8_K(const float *x, void *vy, int64_t k) {
    blk_q8_K *y = vy;
    for (int64_t i = 0; i < k / QKK; i++, x += QKK) {
        float max = 0, amax = 0;
        for (int j = 0; j < QKK; j++) {
            float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        memset(y[i].bsums, 0, sizeof y[i].bsums);
        if (amax == 0.0f) {
            y[i].d = 0;
            memset(y[i].qs, 0, sizeof y[i].qs);
            continue;
        }
        float iscale = -127.f / max;
        for (int j = 0; j < QKK; j++) {
            int v = kern_nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < QKK / 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++)
                sum += y[i].qs[16 * j + l];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

/* --------------------------------------------------------- dequantizers */

static void deq_q4_0(const void *vx, float *y, int64_t k) {
    const blk_q4_0 *x = vx;
    for (int64_t i = 0; i < k / QK32; i++, y += QK32) {
        float d = kern_h2f(x[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((x[i].qs[j] & 0x0f) - 8) * d;
            y[j + 16] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void deq_q4_1(const void *vx, float *y, int64_t k) {
    const blk_q4_1 *x = vx;
    for (int64_t i = 0; i < k / QK32; i++, y += QK32) {
        float d = kern_h2f(x[i].d), m = kern_h2f(x[i].m);
        for (int j = 0; j < 16; j++) {
            float p0 = (float)(x[i].qs[j] & 0x0f) * d;
            float p1 = (float)(x[i].qs[j] >> 4) * d;
            y[j] = p0 + m;
            y[j + 16] = p1 + m;
        }
    }
}

/* 5-bit value j (0..31) of a Q5_0/Q5_1 block. */
static int q5_val(const uint8_t *qs, const uint8_t *qh4, int j) {
    uint32_t qh;
    memcpy(&qh, qh4, 4);
    int lo = j < 16 ? (qs[j] & 0x0f) : (qs[j - 16] >> 4);
    return lo | (int)(((qh >> j) & 1u) << 4);
}

static void deq_q5_0(const void *vx, float *y, int64_t k) {
    const blk_q5_0 *x = vx;
    for (int64_t i = 0; i < k / QK32; i++, y += QK32) {
        float d = kern_h2f(x[i].d);
        for (int j = 0; j < QK32; j++)
            y[j] = (float)(q5_val(x[i].qs, x[i].qh, j) - 16) * d;
    }
}

static void deq_q5_1(const void *vx, float *y, int64_t k) {
    const blk_q5_1 *x = vx;
    for (int64_t i = 0; i < k / QK32; i++, y += QK32) {
        float d = kern_h2f(x[i].d), m = kern_h2f(x[i].m);
        for (int j = 0; j < QK32; j++) {
            float p = (float)q5_val(x[i].qs, x[i].qh, j) * d;
            y[j] = p + m;
        }
    }
}

static void deq_q8_0(const void *vx, float *y, int64_t k) {
    const blk_q8_0 *x = vx;
    for (int64_t i = 0; i < k / QK32; i++, y += QK32) {
        float d = kern_h2f(x[i].d);
        for (int j = 0; j < QK32; j++)
            y[j] = (float)x[i].qs[j] * d;
    }
}

static void deq_q8_1(const void *vx, float *y, int64_t k) {
    const blk_q8_1 *x = vx;
    for (int64_t i = 0; i < k / QK32; i++, y += QK32) {
        float d = kern_h2f(x[i].d);
        for (int j = 0; j < QK32; j++)
            y[j] = (float)x[i].qs[j] * d;
    }
}

static void deq_q8_K(const void *vx, float *y, int64_t k) {
    const blk_q8_K *x = vx;
    for (int64_t i = 0; i < k / QKK; i++, y += QKK)
        for (int j = 0; j < QKK; j++)
            y[j] = x[i].d * (float)x[i].qs[j];
}

static void deq_iq4_nl(const void *vx, float *y, int64_t k) {
    const blk_iq4_nl *x = vx;
    for (int64_t i = 0; i < k / QK32; i++, y += QK32) {
        float d = kern_h2f(x[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)kern_iq4nl_values[x[i].qs[j] & 0x0f];
            y[j + 16] = d * (float)kern_iq4nl_values[x[i].qs[j] >> 4];
        }
    }
}

/* K-quant super-blocks unpacked to integer quants, integer sub-block scales
 * and mins (mins 0 for symmetric types). nsub sub-blocks of 256/nsub. */
struct kunpack {
    int nsub;
    int8_t q[QKK];
    int sc[16];
    int mn[16];
};

/* 6-bit scale/min j (0..7) of Q4_K/Q5_K (get_scale_min_k4 layout). */
static void k4_scale_min(const uint8_t *s, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

static void unpack_q2_K(const blk_q2_K *b, struct kunpack *u) {
    u->nsub = 16;
    for (int e = 0; e < QKK; e++) {
        int n = e / 128, r = e % 128, j = r / 32, l = r % 32;
        u->q[e] = (int8_t)((b->qs[32 * n + l] >> (2 * j)) & 3);
    }
    for (int j = 0; j < 16; j++) {
        u->sc[j] = b->scales[j] & 0x0f;
        u->mn[j] = b->scales[j] >> 4;
    }
}

static void unpack_q3_K(const blk_q3_K *b, struct kunpack *u) {
    u->nsub = 16;
    for (int e = 0; e < QKK; e++) {
        int n = e / 128, r = e % 128, j = r / 32, l = r % 32;
        int lo = (b->qs[32 * n + l] >> (2 * j)) & 3;
        int hi = (b->hmask[l] >> (4 * n + j)) & 1;
        u->q[e] = (int8_t)(lo - (hi ? 0 : 4));
    }
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? (b->scales[j] & 0x0f) : (b->scales[j - 8] >> 4);
        int hi = (b->scales[8 + j % 4] >> (2 * (j / 4))) & 3;
        u->sc[j] = (lo | (hi << 4)) - 32;
        u->mn[j] = 0;
    }
}

static void unpack_q4_K(const blk_q4_K *b, struct kunpack *u) {
    u->nsub = 8;
    for (int e = 0; e < QKK; e++) {
        int c = e / 64, r = e % 64, l = r % 32;
        uint8_t v = b->qs[32 * c + l];
        u->q[e] = (int8_t)(r < 32 ? (v & 0x0f) : (v >> 4));
    }
    for (int j = 0; j < 8; j++)
        k4_scale_min(b->scales, j, &u->sc[j], &u->mn[j]);
}

static void unpack_q5_K(const blk_q5_K *b, struct kunpack *u) {
    u->nsub = 8;
    for (int e = 0; e < QKK; e++) {
        int c = e / 64, r = e % 64, l = r % 32;
        uint8_t v = b->qs[32 * c + l];
        int lo = r < 32 ? (v & 0x0f) : (v >> 4);
        int hi = (b->qh[l] >> (e / 32)) & 1;
        u->q[e] = (int8_t)(lo + 16 * hi);
    }
    for (int j = 0; j < 8; j++)
        k4_scale_min(b->scales, j, &u->sc[j], &u->mn[j]);
}

static void unpack_q6_K(const blk_q6_K *b, struct kunpack *u) {
    u->nsub = 16;
    for (int e = 0; e < QKK; e++) {
        int n = e / 128, r = e % 128, k = r / 32, l = r % 32;
        uint8_t lb = b->ql[64 * n + l + 32 * (k & 1)];
        int lo = k < 2 ? (lb & 0x0f) : (lb >> 4);
        int hi = (b->qh[32 * n + l] >> (2 * k)) & 3;
        u->q[e] = (int8_t)((lo | (hi << 4)) - 32);
    }
    for (int j = 0; j < 16; j++) {
        u->sc[j] = b->scales[j];
        u->mn[j] = 0;
    }
}

static void unpack_iq4_xs(const blk_iq4_xs *b, struct kunpack *u) {
    u->nsub = 8;
    for (int e = 0; e < QKK; e++) {
        int ib = e / 32, r = e % 32;
        uint8_t v = b->qs[16 * ib + r % 16];
        u->q[e] = kern_iq4nl_values[r < 16 ? (v & 0x0f) : (v >> 4)];
    }
    for (int ib = 0; ib < 8; ib++) {
        int ls = ((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f) |
                 (((b->scales_h >> (2 * ib)) & 3) << 4);
        u->sc[ib] = ls - 32;
        u->mn[ib] = 0;
    }
}

/* y = dl*q - ml per sub-block: dl = d*sc, ml = dmin*mn as ggml computes them
 * (Q6_K's d*sc*q is (d*sc)*q; symmetric types have no min term). */
static void deq_kunpack(const struct kunpack *u, float d, float dmin, int has_min, float *y) {
    int len = QKK / u->nsub;
    for (int j = 0; j < u->nsub; j++) {
        float dl = d * (float)u->sc[j];
        float ml = dmin * (float)u->mn[j];
        for (int l = 0; l < len; l++) {
            float p = dl * (float)u->q[j * len + l];
            y[j * len + l] = has_min ? p - ml : p;
        }
    }
}

#define DEQ_K(name, blk, unpack, has_min, dminexpr)                                                \
    static void name(const void *vx, float *y, int64_t k) {                                        \
        const blk *x = vx;                                                                         \
        struct kunpack u;                                                                          \
        for (int64_t i = 0; i < k / QKK; i++, y += QKK) {                                          \
            unpack(&x[i], &u);                                                                     \
            deq_kunpack(&u, kern_h2f(x[i].d), dminexpr, has_min, y);                               \
        }                                                                                          \
    }

DEQ_K(deq_q2_K, blk_q2_K, unpack_q2_K, 1, kern_h2f(x[i].dmin))
DEQ_K(deq_q3_K, blk_q3_K, unpack_q3_K, 0, 0.0f)
DEQ_K(deq_q4_K, blk_q4_K, unpack_q4_K, 1, kern_h2f(x[i].dmin))
DEQ_K(deq_q5_K, blk_q5_K, unpack_q5_K, 1, kern_h2f(x[i].dmin))
DEQ_K(deq_q6_K, blk_q6_K, unpack_q6_K, 0, 0.0f)
DEQ_K(deq_iq4_xs, blk_iq4_xs, unpack_iq4_xs, 0, 0.0f)

/* ------------------------------------------------------ 32-block dots */

/* Shared lane model of ggml's AVX2 / AVX-512 (VNNI) integer kernels: a block of
 * 32 quants sits in one 256-bit register, byte b holding quant b (after
 * bytes_from_nibbles_32 the low nibbles are bytes 0..15 and the high nibbles
 * bytes 16..31, i.e. element order). _mm256_dpbusd_epi32 (mul_sum_i8_pairs_float
 * / mul_sum_us8_pairs_float on AVX512-VNNI+VL, and tinyBLAS_Q0_AVX's updot)
 * leaves in int32 lane l the exact sum of the four products of bytes
 * 4l..4l+3; the lanes are converted to float and fused into 8 float
 * accumulators. hsum_float_8 then reduces: r_i = acc[i+4] + acc[i]
 * (i = 0..3), then (r0 + r2) + (r1 + r3). */
static void lanes8_dot(const int8_t *a, const int8_t *b, int32_t out[8]) {
    for (int l = 0; l < 8; l++) {
        int32_t t = 0;
        for (int i = 0; i < 4; i++)
            t += a[4 * l + i] * b[4 * l + i];
        out[l] = t;
    }
}

static float hsum8(const float acc[8]) {
    float r[4];
    for (int i = 0; i < 4; i++)
        r[i] = acc[i + 4] + acc[i];
    float s02 = r[0] + r[2], s13 = r[1] + r[3];
    return s02 + s13;
}

/* acc[l] = fma(d, (float)lane[l], acc[l]) for the 8 lanes of one block. */
static void lanes8_fma(float acc[8], float d, const int8_t *a, const int8_t *b) {
    int32_t lane[8];
    lanes8_dot(a, b, lane);
    for (int l = 0; l < 8; l++)
        acc[l] = fmaf(d, (float)lane[l], acc[l]);
}

static void unpack_q4_nib(const uint8_t *qs, int off, int8_t q[QK32]) {
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)((qs[j] & 0x0f) - off);
        q[j + 16] = (int8_t)((qs[j] >> 4) - off);
    }
}

/* Q4_0 and IQ4_NL: llama.cpp repacks these weights (repack.cpp, "CPU_REPACK"
 * extra buffer: q4_0_8x8_q8_0 / iq4_nl_8x8_q8_0 on AVX2) and multiplies with
 * gemv_q4_b32_8x8_q8_0_lut_avx (one token) or gemm_q4_b32_8x8_q8_0_lut_avx
 * (4-token groups; AVX-512 variant): every output has its own float lane
 * that, block after block, does acc = fma((float)isum, dx*dy, acc) with isum
 * the exact integer dot of the block and dx*dy = fp16(x.d) * fp16(y.d)
 * rounded once. No horizontal reduction. The activations of the 4-row
 * groups are quantized by ggml_quantize_mat_q8_0_4x8, whose rounding equals
 * quantize_row_q8_0's, so one kernel serves every batch size. */
static void vec_dot_q4_0_q8_0(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q4_0 *x = vx;
    const blk_q8_0 *y = vy;
    float acc = 0;
    for (int64_t i = 0; i < n / QK32; i++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            sumi += ((x[i].qs[j] & 0x0f) - 8) * y[i].qs[j];
            sumi += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + 16];
        }
        float d = kern_h2f(x[i].d) * kern_h2f(y[i].d);
        acc = fmaf((float)sumi, d, acc);
    }
    *s = acc;
}

static void vec_dot_iq4_nl_q8_0(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_iq4_nl *x = vx;
    const blk_q8_0 *y = vy;
    float acc = 0;
    for (int64_t i = 0; i < n / QK32; i++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            sumi += y[i].qs[j] * kern_iq4nl_values[x[i].qs[j] & 0x0f];
            sumi += y[i].qs[j + 16] * kern_iq4nl_values[x[i].qs[j] >> 4];
        }
        float d = kern_h2f(x[i].d) * kern_h2f(y[i].d);
        acc = fmaf((float)sumi, d, acc);
    }
    *s = acc;
}

/* Q4_1: ggml_vec_dot_q4_1_q8_1, AVX2 branch (no sgemm or repack for Q4_1, so
 * every batch size runs it): 8 lanes, acc = fma(dx*dy, lane, acc); the min
 * term summs += m * s is one scalar float sum that gcc contracts to an FMA
 * (-ffp-contract=fast, gnu11); result hsum_float_8(acc) + summs. */
static void vec_dot_q4_1_q8_1(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q4_1 *x = vx;
    const blk_q8_1 *y = vy;
    float acc[8] = {0};
    float summs = 0;
    for (int64_t i = 0; i < n / QK32; i++) {
        int8_t q[QK32];
        summs = fmaf(kern_h2f(x[i].m), kern_h2f(y[i].s), summs);
        unpack_q4_nib(x[i].qs, 0, q);
        lanes8_fma(acc, kern_h2f(x[i].d) * kern_h2f(y[i].d), q, y[i].qs);
    }
    *s = hsum8(acc) + summs;
}

/* Q5_0: ggml_vec_dot_q5_0_q8_0, AVX2 branch (one token) and
 * tinyBLAS_Q0_AVX<block_q5_0> (llamafile sgemm, several tokens): both keep 8
 * lanes per output with acc = fma(dx*dy, lane, acc) and reduce with the
 * hsum_float_8 tree, so they give identical bits. */
static void vec_dot_q5_0_q8_0(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q5_0 *x = vx;
    const blk_q8_0 *y = vy;
    float acc[8] = {0};
    for (int64_t i = 0; i < n / QK32; i++) {
        int8_t q[QK32];
        for (int j = 0; j < QK32; j++)
            q[j] = (int8_t)(q5_val(x[i].qs, x[i].qh, j) - 16);
        lanes8_fma(acc, kern_h2f(x[i].d) * kern_h2f(y[i].d), q, y[i].qs);
    }
    *s = hsum8(acc);
}

/* Q5_1: ggml_vec_dot_q5_1_q8_1, AVX2 branch (every batch size): as Q4_1. */
static void vec_dot_q5_1_q8_1(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q5_1 *x = vx;
    const blk_q8_1 *y = vy;
    float acc[8] = {0};
    float summs = 0;
    for (int64_t i = 0; i < n / QK32; i++) {
        int8_t q[QK32];
        summs = fmaf(kern_h2f(x[i].m), kern_h2f(y[i].s), summs);
        for (int j = 0; j < QK32; j++)
            q[j] = (int8_t)q5_val(x[i].qs, x[i].qh, j);
        lanes8_fma(acc, kern_h2f(x[i].d) * kern_h2f(y[i].d), q, y[i].qs);
    }
    *s = hsum8(acc) + summs;
}

/* Q8_0: ggml_vec_dot_q8_0_q8_0, AVX2 branch (one token) and
 * tinyBLAS_Q0_AVX<block_q8_0> (several tokens): identical lane structure,
 * see vec_dot_q5_0_q8_0. */
static void vec_dot_q8_0_q8_0(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q8_0 *x = vx;
    const blk_q8_0 *y = vy;
    float acc[8] = {0};
    for (int64_t i = 0; i < n / QK32; i++)
        lanes8_fma(acc, kern_h2f(x[i].d) * kern_h2f(y[i].d), x[i].qs, y[i].qs);
    *s = hsum8(acc);
}

/* ------------------------------------------------------- K-quant dots */

/* isum = sum_j sc[j] * dot(q_j, q8_j); summs = sum over the 16 bsums of
 * bsum * mn[sub-block of that bsum]. */
static void kdot_ints(const struct kunpack *u, const blk_q8_K *y, int *isum, int *summs) {
    int len = QKK / u->nsub;
    int is = 0, sm = 0;
    for (int j = 0; j < u->nsub; j++) {
        int t = 0;
        for (int l = 0; l < len; l++)
            t += u->q[j * len + l] * y->qs[j * len + l];
        is += u->sc[j] * t;
    }
    for (int b = 0; b < 16; b++)
        sm += y->bsums[b] * u->mn[b * 16 / len];
    *isum = is;
    *summs = sm;
}

/* The AVX2 K-quant kernels (Q3_K, Q5_K, Q6_K, IQ4_XS) walk the super-block in
 * 256-bit registers of 32 consecutive quants (element order as unpacked
 * here) and accumulate, in int32 lane l, sc * (4 products of bytes 4l..4l+3)
 * over the 8 registers of the super-block (maddubs + madd by the scale; no
 * int16 saturation is reachable with these ranges). lane[] receives that. */
static void klanes(const struct kunpack *u, const int8_t *q8, int32_t lane[8]) {
    int len = QKK / u->nsub;
    for (int l = 0; l < 8; l++)
        lane[l] = 0;
    for (int c = 0; c < QKK / 32; c++)
        for (int l = 0; l < 8; l++) {
            int e = 32 * c + 4 * l;
            int t = 0;
            for (int i = 0; i < 4; i++)
                t += u->q[e + i] * q8[e + i];
            lane[l] += u->sc[e / len] * t;
        }
}

/* Q2_K and Q4_K are repacked by llama.cpp on AVX2/AVX-512 machines (see
 * repack.cpp); these kernels accumulate one float per output row,
 * super-block after super-block. */
#define DOT_K(name, blk, unpack, has_min)                                                          \
    static void name(int64_t n, float *s, const void *vx, const void *vy) {                        \
        const blk *x = vx;                                                                         \
        const blk_q8_K *y = vy;                                                                    \
        struct kunpack u;                                                                          \
        float sumf = 0;                                                                            \
        for (int64_t i = 0; i < n / QKK; i++) {                                                    \
            int isum, summs;                                                                       \
            unpack(&x[i], &u);                                                                     \
            kdot_ints(&u, &y[i], &isum, &summs);                                                   \
            float d = kern_h2f(x[i].d) * y[i].d;                                                   \
            float t = d * (float)isum;                                                             \
            if (has_min) {                                                                         \
                float dmin = kern_h2f(x[i].dmin) * y[i].d;                                         \
                float m = dmin * (float)summs;                                                     \
                t = t - m;                                                                         \
            }                                                                                      \
            sumf += t;                                                                             \
        }                                                                                          \
        *s = sumf;                                                                                 \
    }

DOT_K(vec_dot_q2_K_q8_K, blk_q2_K, unpack_q2_K, 1)
DOT_K(vec_dot_q4_K_q8_K, blk_q4_K, unpack_q4_K, 1)

/* Q3_K (ggml_vec_dot_q3_K_q8_K, AVX2 branch) and IQ4_XS
 * (ggml_vec_dot_iq4_xs_q8_K, AVX2 branch): 8 lanes of signed quants times
 * scales (klanes), acc = fma(d, lane, acc) with d = y.d * fp16(x.d), then
 * hsum_float_8. No sgemm/repack for these types: every batch size. */
#define DOT_K_LANES(name, blk, unpack)                                                             \
    static void name(int64_t n, float *s, const void *vx, const void *vy) {                        \
        const blk *x = vx;                                                                         \
        const blk_q8_K *y = vy;                                                                    \
        struct kunpack u;                                                                          \
        float acc[8] = {0};                                                                        \
        for (int64_t i = 0; i < n / QKK; i++) {                                                    \
            int32_t lane[8];                                                                       \
            unpack(&x[i], &u);                                                                     \
            klanes(&u, y[i].qs, lane);                                                             \
            float d = y[i].d * kern_h2f(x[i].d);                                                   \
            for (int l = 0; l < 8; l++)                                                            \
                acc[l] = fmaf(d, (float)lane[l], acc[l]);                                          \
        }                                                                                          \
        *s = hsum8(acc);                                                                           \
    }

DOT_K_LANES(vec_dot_q3_K_q8_K, blk_q3_K, unpack_q3_K)
DOT_K_LANES(vec_dot_iq4_xs_q8_K, blk_iq4_xs, unpack_iq4_xs)

/* Q5_K: ggml_vec_dot_q5_K_q8_K, AVX2 branch (every batch size). Lanes hold
 * sc * q5 (unsigned 0..31) * q8; the mins go through a scalar float
 * summs = fma(-y.d * fp16(x.dmin), (float)sum(mn * bsum-pairs), summs)
 * (gcc contracts it); result hsum_float_8(acc) + summs. */
static void vec_dot_q5_K_q8_K(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q5_K *x = vx;
    const blk_q8_K *y = vy;
    struct kunpack u;
    float acc[8] = {0};
    float summs = 0;
    for (int64_t i = 0; i < n / QKK; i++) {
        int32_t lane[8];
        unpack_q5_K(&x[i], &u);
        float d = y[i].d * kern_h2f(x[i].d);
        float dmin = -y[i].d * kern_h2f(x[i].dmin);
        int mins = 0;
        for (int j = 0; j < 8; j++)
            mins += u.mn[j] * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        summs = fmaf(dmin, (float)mins, summs);
        klanes(&u, y[i].qs, lane);
        for (int l = 0; l < 8; l++)
            acc[l] = fmaf(d, (float)lane[l], acc[l]);
    }
    *s = hsum8(acc) + summs;
}

/* Q6_K: ggml_vec_dot_q6_K_q8_K, AVX2 branch (every batch size). The lanes
 * multiply the UNSIGNED 6-bit quants (0..63) and subtract the offset 32 per
 * lane from the bsums: lane l gets -32 * (sc[2l]*bsum[2l] + sc[2l+1]*bsum[2l+1])
 * (q8sclsub), which spreads the offset over the lanes differently from the
 * quants themselves. acc = fma(d, lane, acc), then hsum_float_8. */
static void vec_dot_q6_K_q8_K(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q6_K *x = vx;
    const blk_q8_K *y = vy;
    struct kunpack u;
    float acc[8] = {0};
    for (int64_t i = 0; i < n / QKK; i++) {
        int32_t lane[8];
        unpack_q6_K(&x[i], &u);
        for (int e = 0; e < QKK; e++)
            u.q[e] = (int8_t)(u.q[e] + 32);
        klanes(&u, y[i].qs, lane);
        float d = y[i].d * kern_h2f(x[i].d);
        for (int l = 0; l < 8; l++) {
            int sub = u.sc[2 * l] * y[i].bsums[2 * l] + u.sc[2 * l + 1] * y[i].bsums[2 * l + 1];
            acc[l] = fmaf(d, (float)(lane[l] - 32 * sub), acc[l]);
        }
    }
    *s = hsum8(acc);
}

/* ------------------------------------------------------------- traits */

static const struct kern_traits g_ref[ICA_DTYPE_COUNT] = {
    [ICA_F32] = {ICA_F32, ICA_F32, f32_to_float, f32_from_float, vec_dot_f32},
    [ICA_F16] = {ICA_F16, ICA_F16, f16_to_float, f16_from_float, vec_dot_f16},
    [ICA_BF16] = {ICA_BF16, ICA_BF16, bf16_to_float, bf16_from_float, vec_dot_bf16},
    [ICA_Q4_0] = {ICA_Q4_0, ICA_Q8_0, deq_q4_0, kern_quantize_q4_0, vec_dot_q4_0_q8_0},
    [ICA_Q4_1] = {ICA_Q4_1, ICA_Q8_1, deq_q4_1, kern_quantize_q4_1, vec_dot_q4_1_q8_1},
    [ICA_Q5_0] = {ICA_Q5_0, ICA_Q8_0, deq_q5_0, kern_quantize_q5_0, vec_dot_q5_0_q8_0},
    [ICA_Q5_1] = {ICA_Q5_1, ICA_Q8_1, deq_q5_1, kern_quantize_q5_1, vec_dot_q5_1_q8_1},
    [ICA_Q8_0] = {ICA_Q8_0, ICA_Q8_0, deq_q8_0, quantize_q8_0, vec_dot_q8_0_q8_0},
    [ICA_Q8_1] = {ICA_Q8_1, ICA_Q8_1, deq_q8_1, quantize_q8_1, NULL},
    [ICA_Q2_K] = {ICA_Q2_K, ICA_Q8_K, deq_q2_K, kern_quantize_q2_K, vec_dot_q2_K_q8_K},
    [ICA_Q3_K] = {ICA_Q3_K, ICA_Q8_K, deq_q3_K, kern_quantize_q3_K, vec_dot_q3_K_q8_K},
    [ICA_Q4_K] = {ICA_Q4_K, ICA_Q8_K, deq_q4_K, kern_quantize_q4_K, vec_dot_q4_K_q8_K},
    [ICA_Q5_K] = {ICA_Q5_K, ICA_Q8_K, deq_q5_K, kern_quantize_q5_K, vec_dot_q5_K_q8_K},
    [ICA_Q6_K] = {ICA_Q6_K, ICA_Q8_K, deq_q6_K, kern_quantize_q6_K, vec_dot_q6_K_q8_K},
    [ICA_Q8_K] = {ICA_Q8_K, ICA_Q8_K, deq_q8_K, quantize_q8_K, NULL},
    [ICA_IQ4_NL] = {ICA_IQ4_NL, ICA_Q8_0, deq_iq4_nl, kern_quantize_iq4_nl, vec_dot_iq4_nl_q8_0},
    [ICA_IQ4_XS] = {ICA_IQ4_XS, ICA_Q8_K, deq_iq4_xs, kern_quantize_iq4_xs, vec_dot_iq4_xs_q8_K},
};

const struct kern_traits *kern_get_traits_ref(uint32_t t) {
    if (t >= ICA_DTYPE_COUNT || g_ref[t].from_float == NULL)
        return NULL;
    return &g_ref[t];
}

/* The kernels of the current SIMD level (cpu.c: the best this CPU runs,
 * lowered by ICALIGN_SIMD); bit-identical to the reference ones. */
const struct kern_traits *kern_get_traits(uint32_t t) {
    return kern_get_traits_simd(t);
}

/* ------------------------------------------------------------- matmul */

size_t kern_matmul_scratch_size(uint32_t wtype, int64_t n_cols, int64_t n_tok) {
    const struct kern_traits *tr = kern_get_traits_ref(wtype);
    if (!tr || n_tok < 0 || tr->vec_dot_type == ICA_F32)
        return 0;
    return ica_dtype_row_size(tr->vec_dot_type, n_cols) * (size_t)n_tok;
}

/* llamafile_sgemm (ggml-cpu.c calls it first whenever src1 has more than one
 * row; threads = 1) for the plain types, built with AVX-512 (+BF16):
 * tinyBLAS<16, __m512, __m512, float|fp16> and tinyBLAS<32, __m512,
 * __m512bh, bf16>. It only accepts k % KN == 0 and m % 4 == 0 (m = weight
 * rows) and otherwise falls back to vec_dot. Each output keeps ONE 16-lane
 * accumulator: lane l gets fma(a, b, acc) for elements l, l+16, ... (F32,
 * F16 after conversion to float), or one _mm512_dpbf16_ps per 32 elements
 * (BF16: lane l takes the pair 2l, 2l+1; odd product added first, each add
 * rounded, DAZ/FTZ - checked against VDPBF16PS on a Zen 4). The tile shape
 * only changes the order of independent outputs; the result is
 * _mm512_reduce_add_ps of the accumulator. */
static float sgemm_dot_f32(int64_t n, const float *x, const float *y) {
    float acc[16] = {0};
    for (int64_t i = 0; i < n; i += 16)
        for (int l = 0; l < 16; l++)
            acc[l] = fmaf(x[i + l], y[i + l], acc[l]);
    return reduce16(acc);
}

static float sgemm_dot_f16(int64_t n, const uint16_t *x, const uint16_t *y) {
    float acc[16] = {0};
    for (int64_t i = 0; i < n; i += 16)
        for (int l = 0; l < 16; l++)
            acc[l] = fmaf(kern_h2f(x[i + l]), kern_h2f(y[i + l]), acc[l]);
    return reduce16(acc);
}

static float sgemm_dot_bf16(int64_t n, const uint16_t *x, const uint16_t *y) {
    float acc[16] = {0};
    for (int64_t i = 0; i < n; i += 32)
        for (int l = 0; l < 16; l++) {
            int64_t e = i + 2 * l;
            float odd = bf16_daz(x[e + 1]) * bf16_daz(y[e + 1]);
            float even = bf16_daz(x[e]) * bf16_daz(y[e]);
            acc[l] = ftz(acc[l] + odd);
            acc[l] = ftz(acc[l] + even);
        }
    return reduce16(acc);
}

/* Which sgemm dot llama.cpp would use for this product, or 0 for vec_dot. */
static int sgemm_kind(uint32_t wtype, int64_t n_rows, int64_t n_cols, int64_t n_tok) {
    if (n_tok < 2 || n_rows % 4 != 0)
        return 0;
    if ((wtype == ICA_F32 || wtype == ICA_F16) && n_cols % 16 == 0)
        return 1;
    if (wtype == ICA_BF16 && n_cols % 32 == 0)
        return 1;
    return 0;
}

void kern_matmul_ref(uint32_t wtype, const void *w, int64_t n_rows, int64_t n_cols, const float *x,
                     int64_t n_tok, float *y, void *scratch) {
    kern_matmul_ref_ex(wtype, w, n_rows, n_cols, x, n_tok, y, scratch, KERN_ORDER_AUTO);
}

bool kern_matmul_orders_differ(uint32_t wtype, int64_t n_rows, int64_t n_cols) {
    return sgemm_kind(wtype, n_rows, n_cols, 2) != 0;
}

void kern_matmul_ref_ex(uint32_t wtype, const void *w, int64_t n_rows, int64_t n_cols,
                        const float *x, int64_t n_tok, float *y, void *scratch,
                        enum kern_order order) {
    const struct kern_traits *tr = kern_get_traits_ref(wtype);
    if (!tr || !tr->vec_dot)
        return;
    const struct kern_traits *qt = kern_get_traits_ref(tr->vec_dot_type);
    size_t wrs = ica_dtype_row_size(wtype, n_cols);
    size_t qrs = ica_dtype_row_size(tr->vec_dot_type, n_cols);
    const char *act = (const char *)x;
    if (tr->vec_dot_type != ICA_F32) {
        for (int64_t t = 0; t < n_tok; t++)
            qt->from_float(x + t * n_cols, (char *)scratch + (size_t)t * qrs, n_cols);
        act = scratch;
    }
    /* AUTO: llama.cpp's choice by batch size; SINGLE/BATCH force one order. */
    const int64_t as_tok = order == KERN_ORDER_AUTO ? n_tok : order == KERN_ORDER_BATCH ? 2 : 1;
    const int sg = sgemm_kind(wtype, n_rows, n_cols, as_tok);
    for (int64_t r = 0; r < n_rows; r++) {
        const char *wr = (const char *)w + (size_t)r * wrs;
        for (int64_t t = 0; t < n_tok; t++) {
            const char *at = act + (size_t)t * qrs;
            float *out = &y[t * n_rows + r];
            if (!sg)
                tr->vec_dot(n_cols, out, wr, at);
            else if (wtype == ICA_F32)
                *out = sgemm_dot_f32(n_cols, (const float *)wr, (const float *)at);
            else if (wtype == ICA_F16)
                *out = sgemm_dot_f16(n_cols, (const uint16_t *)wr, (const uint16_t *)at);
            else
                *out = sgemm_dot_bf16(n_cols, (const uint16_t *)wr, (const uint16_t *)at);
        }
    }
}
