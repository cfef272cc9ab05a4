/* kern SIMD levels: every kernel of every level this CPU runs against the
 * scalar reference, bit for bit (quantizers byte for byte), on odd row
 * lengths and tails; the threaded, tiled matmul against kern_matmul_ref for
 * several thread counts and token counts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#ifndef KERN_SIMD_NO_CMOCKA
#include <cmocka.h>
#else
/* make test-neon: cross-built without cmocka, a minimal stand-in. */
#include <stdio.h>
#include <stdlib.h>
#define fail_msg(...)                                                                              \
    do {                                                                                           \
        printf("ERROR: " __VA_ARGS__);                                                             \
        printf("\n");                                                                              \
        exit(1);                                                                                   \
    } while (0)
#define assert_true(c)                                                                             \
    do {                                                                                           \
        if (!(c))                                                                                  \
            fail_msg("%s:%d: %s", __FILE__, __LINE__, #c);                                         \
    } while (0)
#define assert_int_equal(a, b) assert_true((a) == (b))
#define assert_non_null(p)     assert_true((p) != NULL)
#define assert_null(p)         assert_true((p) == NULL)
struct CMUnitTest {
    const char *name;
    void (*fn)(void **);
};
#define cmocka_unit_test(f)                                                                        \
    { #f, f }
static int run_tests(const struct CMUnitTest *t, size_t n) {
    for (size_t i = 0; i < n; i++) {
        printf("[ RUN      ] %s\n", t[i].name);
        t[i].fn(NULL);
        printf("[       OK ] %s\n", t[i].name);
    }
    printf("[  PASSED  ] %zu test(s).\n", n);
    return 0;
}
#define cmocka_run_group_tests(t, a, b) run_tests(t, sizeof(t) / sizeof((t)[0]))
#endif

#include "../../src/kern/simd.h"
#include "icalign/dtype.h"
#include "icalign/kern.h"
#include "icalign/pool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_rng = 1;

static uint32_t rng_u32(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}

static float rng_unif(void) { /* [-1, 1) */
    return (float)((double)rng_u32() / 2147483648.0 - 1.0);
}

/* Values of mixed scale, with exact ties, zeros and repeated maxima. */
static void fill_x(float *x, int64_t n, int mode) {
    for (int64_t i = 0; i < n; i++) {
        float v = rng_unif();
        switch (mode % 4) {
        case 0:
            break;
        case 1:
            v *= (float)(1 << (rng_u32() % 12)); /* mixed scales */
            break;
        case 2:
            v = (float)((int)(v * 8.0f)) * 0.5f; /* halves: ties after scaling */
            break;
        default:
            v = (rng_u32() % 5 == 0) ? 0.0f : v * 1e-3f;
            break;
        }
        x[i] = v;
    }
    if (mode % 4 == 3 && n >= 32)
        memset(x, 0, 32 * sizeof *x); /* an all-zero block */
}

static const uint32_t k_types[] = {ICA_F32,  ICA_F16,  ICA_BF16, ICA_Q4_0,   ICA_Q4_1,
                                   ICA_Q5_0, ICA_Q5_1, ICA_Q8_0, ICA_Q2_K,   ICA_Q3_K,
                                   ICA_Q4_K, ICA_Q5_K, ICA_Q6_K, ICA_IQ4_NL, ICA_IQ4_XS};
#define N_TYPES (sizeof k_types / sizeof k_types[0])

static int64_t blck(uint32_t t) {
    return ica_dtype_info(t)->blck;
}

/* A weight matrix of type t: random floats through the reference quantizer. */
static void *make_weights(uint32_t t, int64_t rows, int64_t cols, int mode) {
    const struct kern_traits *r = kern_get_traits_ref(t);
    size_t rs = ica_dtype_row_size(t, cols);
    uint8_t *w = malloc(rs * (size_t)rows + 64);
    float *f = malloc((size_t)cols * sizeof *f);
    assert_non_null(w);
    assert_non_null(f);
    for (int64_t i = 0; i < rows; i++) {
        fill_x(f, cols, mode + (int)i);
        r->from_float(f, w + (size_t)i * rs, cols);
    }
    free(f);
    return w;
}

/* The levels to test: scalar and every level up to the current one that this
 * CPU runs (ICALIGN_SIMD=avx2 keeps AVX-512 code out, e.g. under valgrind). */
static int n_levels(int *lv) {
    int n = 0, cur = kern_level_current();
    for (int l = 0; l < KERN_LEVEL_COUNT; l++)
        if (kern_ops_get(l, ICA_Q8_0) && (l == KERN_LEVEL_SCALAR || l <= cur))
            lv[n++] = l;
    return n;
}

static void test_levels(void **state) {
    (void)state;
    int lv[KERN_LEVEL_COUNT];
    int n = n_levels(lv);
    assert_true(n >= 1);
    assert_int_equal(lv[0], KERN_LEVEL_SCALAR);
    printf("# best level %s, current %s, levels tested:", kern_level_name(kern_level_best()),
           kern_level_name(kern_level_current()));
    for (int i = 0; i < n; i++)
        printf(" %s", kern_level_name(lv[i]));
    printf("\n");
    for (size_t i = 0; i < N_TYPES; i++) {
        assert_non_null(kern_get_traits_simd(k_types[i]));
        assert_non_null(kern_get_traits(k_types[i]));
    }
    assert_null(kern_ops_get(KERN_LEVEL_SCALAR, ICA_DTYPE_COUNT));
}

/* Activation quantizers of every level equal the reference byte for byte. */
static void test_quantizers(void **state) {
    (void)state;
    static const uint32_t acts[] = {ICA_Q8_0, ICA_Q8_1, ICA_Q8_K, ICA_F16, ICA_BF16};
    int lv[KERN_LEVEL_COUNT];
    int nl = n_levels(lv);
    const int64_t n = 256 * 5;
    float *x = malloc((size_t)n * sizeof *x);
    uint8_t *a = malloc(8192), *b = malloc(8192);
    for (int mode = 0; mode < 16; mode++) {
        g_rng = 77 + (uint64_t)mode;
        fill_x(x, n, mode);
        if (mode == 5) { /* specials for the float conversions */
            x[1] = INFINITY;
            x[2] = -0.0f;
            x[3] = 1e-40f;
            x[4] = 65520.0f;
            x[5] = 6e-8f;
        }
        for (size_t k = 0; k < sizeof acts / sizeof acts[0]; k++) {
            const uint32_t t = acts[k];
            int64_t len = t == ICA_F16 || t == ICA_BF16 ? n - 3 : n; /* tails */
            if (mode == 5 && t != ICA_F16 && t != ICA_BF16)
                continue;
            size_t rs = ica_dtype_row_size(t, len);
            kern_get_traits_ref(t)->from_float(x, a, len);
            for (int l = 0; l < nl; l++) {
                memset(b, 0xa5, rs);
                kern_ops_get(lv[l], t)->tr.from_float(x, b, len);
                if (memcmp(a, b, rs) != 0)
                    fail_msg("quantizer %s level %s mode %d differs", ica_dtype_info(t)->name,
                             kern_level_name(lv[l]), mode);
            }
        }
    }
    free(x);
    free(a);
    free(b);
}

/* vec_dot of every type and level equals the reference bit for bit. */
static void test_vec_dots(void **state) {
    (void)state;
    int lv[KERN_LEVEL_COUNT];
    int nl = n_levels(lv);
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        const uint32_t t = k_types[ti];
        const struct kern_traits *r = kern_get_traits_ref(t);
        const struct kern_traits *q = kern_get_traits_ref(r->vec_dot_type);
        const int64_t bs = blck(t);
        const int64_t lens_q[] = {bs, 2 * bs, 3 * bs, 5 * bs, 7 * bs, 11 * bs};
        const int64_t lens_p[] = {1, 13, 16, 63, 64, 65, 100, 128, 200, 1000};
        const int plain = bs == 1;
        const int nlen = plain ? 10 : 6;
        for (int li = 0; li < nlen; li++) {
            const int64_t len = plain ? lens_p[li] : lens_q[li];
            for (int mode = 0; mode < 8; mode++) {
                g_rng = 1000 + ti * 31 + (uint64_t)li * 7 + (uint64_t)mode;
                void *w = make_weights(t, 1, len, mode);
                float *x = malloc((size_t)len * sizeof *x);
                void *ya = malloc(ica_dtype_row_size(r->vec_dot_type, len) + 64);
                fill_x(x, len, mode + 1);
                q->from_float(x, ya, len);
                float ref, got;
                r->vec_dot(len, &ref, w, ya);
                for (int l = 0; l < nl; l++) {
                    const struct kern_ops *o = kern_ops_get(lv[l], t);
                    got = -12345.f;
                    o->tr.vec_dot(len, &got, w, ya);
                    uint32_t ub, gb;
                    memcpy(&ub, &ref, 4);
                    memcpy(&gb, &got, 4);
                    if (ub != gb)
                        fail_msg("%s len %lld mode %d level %s: %.9g vs ref %.9g",
                                 ica_dtype_info(t)->name, (long long)len, mode,
                                 kern_level_name(lv[l]), got, ref);
                }
                free(w);
                free(x);
                free(ya);
            }
        }
    }
}

/* ---- raw weight blocks: every bit pattern of the quants and scales ---- */

/* Byte offsets of the fp16 fields (d, m / dmin) of a quantized block; the
 * rest of a raw block is random bytes. -1: none. */
static void f16_fields(uint32_t t, int off[2]) {
    off[0] = 0;
    off[1] = -1;
    switch (t) {
    case ICA_Q4_1:
    case ICA_Q5_1:
    case ICA_Q4_K:
    case ICA_Q5_K:
        off[1] = 2;
        break;
    case ICA_Q2_K:
        off[0] = 80;
        off[1] = 82;
        break;
    case ICA_Q3_K:
        off[0] = 108;
        break;
    case ICA_Q6_K:
        off[0] = 208;
        break;
    default:
        break;
    }
}

/* A row of random blocks of type t with finite fp16 scales. */
static void *make_raw_weights(uint32_t t, int64_t len, int mode) {
    const struct ica_dtype_info *di = ica_dtype_info(t);
    const int64_t nb = len / di->blck;
    uint8_t *w = malloc((size_t)nb * di->type_size + 64);
    assert_non_null(w);
    int off[2];
    f16_fields(t, off);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = w + (size_t)b * di->type_size;
        for (size_t k = 0; k < di->type_size; k++)
            blk[k] = mode == 1 ? 0xff : mode == 2 ? 0x00 : (uint8_t)rng_u32();
        for (int f = 0; f < 2; f++)
            if (off[f] >= 0) {
                const uint16_t h = kern_f32_to_f16(rng_unif() * (float)(1 << (rng_u32() % 8)));
                memcpy(blk + off[f], &h, 2);
            }
    }
    return w;
}

/* Activations whose codes sit at +-127 (every |x| equal) or random. */
static void fill_act(float *x, int64_t n, int mode) {
    if (mode % 2 == 0) {
        fill_x(x, n, mode / 2);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        x[i] = (rng_u32() & 1) ? 1.0f : -1.0f;
}

static int same_bits(float a, float b) {
    uint32_t ua, ub;
    memcpy(&ua, &a, 4);
    memcpy(&ub, &b, 4);
    return ua == ub;
}

/* vec_dot and dot4 (1..4 tokens, strided outputs) of every quantized type
 * and level on raw random weight blocks (all-ones and all-zero quants too)
 * and saturated activations, bit for bit against the reference vec_dot;
 * tile4 (4 rows by 1..4 tokens) where a level has one. */
static void test_dots_raw(void **state) {
    (void)state;
    int lv[KERN_LEVEL_COUNT];
    int nl = n_levels(lv);
    for (int l = 1; l < nl; l++) { /* which types still run the reference */
        printf("# %s: reference vec_dot for", kern_level_name(lv[l]));
        for (size_t ti = 0; ti < N_TYPES; ti++)
            if (kern_ops_get(lv[l], k_types[ti])->tr.vec_dot ==
                kern_get_traits_ref(k_types[ti])->vec_dot)
                printf(" %s", ica_dtype_info(k_types[ti])->name);
        printf("\n");
    }
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        const uint32_t t = k_types[ti];
        const int64_t bs = blck(t);
        if (bs == 1)
            continue;
        const struct kern_traits *r = kern_get_traits_ref(t);
        const struct kern_traits *q = kern_get_traits_ref(r->vec_dot_type);
        const int64_t nbl[] = {1, 2, 3, 4, 5, 7, 9};
        for (size_t li = 0; li < sizeof nbl / sizeof nbl[0]; li++) {
            const int64_t len = nbl[li] * bs;
            const size_t ars = ica_dtype_row_size(r->vec_dot_type, len);
            for (int mode = 0; mode < 12; mode++) {
                g_rng = 70000 + ti * 101 + li * 13 + (uint64_t)mode;
                /* 4 rows (tile4) of raw blocks, 4 tokens */
                uint8_t *w = make_raw_weights(t, 4 * len, mode % 3);
                const size_t wrs = ica_dtype_row_size(t, len);
                float *x = malloc((size_t)(4 * len) * sizeof *x);
                uint8_t *ya = malloc(4 * ars + 64);
                fill_act(x, 4 * len, mode);
                for (int k = 0; k < 4; k++)
                    q->from_float(x + k * len, ya + (size_t)k * ars, len);
                float ref[4][4]; /* [row][token] */
                for (int rr = 0; rr < 4; rr++)
                    for (int k = 0; k < 4; k++)
                        r->vec_dot(len, &ref[rr][k], w + (size_t)rr * wrs, ya + (size_t)k * ars);
                for (int l = 0; l < nl; l++) {
                    const struct kern_ops *o = kern_ops_get(lv[l], t);
                    const char *tn = ica_dtype_info(t)->name, *ln = kern_level_name(lv[l]);
                    for (int rr = 0; rr < 4; rr++) {
                        float got = -12345.f;
                        o->tr.vec_dot(len, &got, w + (size_t)rr * wrs, ya + (size_t)rr * ars);
                        if (!same_bits(got, ref[rr][rr]))
                            fail_msg("raw %s len %lld mode %d level %s: %.9g vs ref %.9g", tn,
                                     (long long)len, mode, ln, got, ref[rr][rr]);
                    }
                    for (int nt = 1; nt <= 4; nt++) {
                        float out[20];
                        if (o->dot4) {
                            for (int k = 0; k < 12; k++)
                                out[k] = -12345.f;
                            o->dot4(len, w + wrs, ya, ars, nt, out, 3); /* row 1 */
                            for (int k = 0; k < 12; k++) {
                                const int used = k % 3 == 0 && k / 3 < nt;
                                const float want = used ? ref[1][k / 3] : -12345.f;
                                if (!same_bits(out[k], want))
                                    fail_msg("raw dot4 %s len %lld mode %d level %s nt %d out %d: "
                                             "%.9g vs ref %.9g",
                                             tn, (long long)len, mode, ln, nt, k, out[k], want);
                            }
                        }
                        if (o->tile4) {
                            for (int k = 0; k < 20; k++)
                                out[k] = -12345.f;
                            o->tile4(len, w, wrs, ya, ars, nt, out, 5);
                            for (int k = 0; k < 20; k++) {
                                const int used = k % 5 < 4 && k / 5 < nt;
                                const float want = used ? ref[k % 5][k / 5] : -12345.f;
                                if (!same_bits(out[k], want))
                                    fail_msg("raw tile4 %s len %lld mode %d level %s nt %d out %d: "
                                             "%.9g vs ref %.9g",
                                             tn, (long long)len, mode, ln, nt, k, out[k], want);
                            }
                        }
                    }
                }
                free(w);
                free(x);
                free(ya);
            }
        }
    }
}

/* ---- plain types and float quantizers at the edges of the formats ---- */

/* A float with exponent field drawn from [elo, ehi] (0: subnormal), random
 * sign and mantissa. */
static float rand_f32_exp(unsigned elo, unsigned ehi) {
    const uint32_t e = elo + rng_u32() % (ehi - elo + 1);
    const uint32_t u = ((rng_u32() & 1u) << 31) | (e << 23) | (rng_u32() & 0x7fffffu);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* A value for test_plain_edges: exponent ranges per mode (F16 kept below
 * its overflow): 0 mixed; 1 and 5 all tiny (BF16 / F32 products and sums
 * subnormal: FTZ; F16 subnormal halves); 2 tiny or subnormal weights with
 * huge activations (BF16 DAZ shows), 3 the reverse; 4 normal with some
 * subnormals. */
static float edge_value(uint32_t t, int mode, int wside) {
    const int h = t == ICA_F16;
    switch (mode) {
    case 0:
        switch (rng_u32() % 4) {
        case 0:
            return rand_f32_exp(0, 0);
        case 1:
            return rand_f32_exp(1, 60);
        case 2:
            return h ? rand_f32_exp(100, 114) : rand_f32_exp(1, 3);
        default:
            return rand_f32_exp(112, 135);
        }
    case 1:
    case 5:
        return h ? rand_f32_exp(103, 110) : rand_f32_exp(55, 72);
    case 2:
    case 3:
        if (wside == (mode == 2))
            return h ? rand_f32_exp(103, 112) : rand_f32_exp(0, 2);
        return h ? rand_f32_exp(135, 141) : rand_f32_exp(170, 200);
    default:
        return rng_u32() % 4 ? rand_f32_exp(112, 135) : rand_f32_exp(0, 0);
    }
}

/* F32 / F16 / BF16 rows whose values span subnormals (BF16: flushed by the
 * reference's DAZ), products that underflow to subnormal sums (FTZ) and
 * normal values; vec_dot of every level against the reference (the
 * sgemm order is covered by test_matmul_levels). */
static void test_plain_edges(void **state) {
    (void)state;
    static const uint32_t plain[] = {ICA_F32, ICA_F16, ICA_BF16};
    const int64_t lens[] = {1, 31, 63, 64, 65, 96, 127, 128, 129, 192, 320, 1000};
    int lv[KERN_LEVEL_COUNT];
    int nl = n_levels(lv);
    for (size_t pi = 0; pi < sizeof plain / sizeof plain[0]; pi++) {
        const uint32_t t = plain[pi];
        const size_t es = ica_dtype_info(t)->type_size;
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            const int64_t len = lens[li];
            for (int mode = 0; mode < 6; mode++) {
                g_rng = 91000 + pi * 977 + li * 31 + (uint64_t)mode;
                uint8_t *w = malloc((size_t)len * es + 64);
                uint8_t *a = malloc(4 * (size_t)len * es + 64);
                assert_non_null(w);
                assert_non_null(a);
                for (int64_t i = 0; i < 5 * len; i++) {
                    float v = edge_value(t, mode, i < len);
                    if (mode == 5 && rng_u32() % 2)
                        v = 0.0f * (rng_u32() % 2 ? 1.0f : -1.0f);
                    uint8_t *dst = i < len ? w + (size_t)i * es : a + (size_t)(i - len) * es;
                    if (t == ICA_F32) {
                        memcpy(dst, &v, 4);
                    } else {
                        uint16_t h = t == ICA_F16 ? kern_f32_to_f16(v) : kern_f32_to_bf16(v);
                        if (t == ICA_BF16 && mode >= 3 && rng_u32() % 4 == 0)
                            h = (uint16_t)(h & 0x807fu); /* bf16 subnormal */
                        memcpy(dst, &h, 2);
                    }
                }
                const size_t ars = (size_t)len * es;
                const struct kern_traits *r = kern_get_traits_ref(t);
                float ref[4];
                for (int k = 0; k < 4; k++)
                    r->vec_dot(len, &ref[k], w, a + (size_t)k * ars);
                for (int l = 0; l < nl; l++) {
                    const struct kern_ops *o = kern_ops_get(lv[l], t);
                    for (int k = 0; k < 4; k++) {
                        float got = -12345.f;
                        o->tr.vec_dot(len, &got, w, a + (size_t)k * ars);
                        if (!same_bits(got, ref[k]))
                            fail_msg("edges %s len %lld mode %d level %s: %.9g vs ref %.9g",
                                     ica_dtype_info(t)->name, (long long)len, mode,
                                     kern_level_name(lv[l]), got, ref[k]);
                    }
                }
                free(w);
                free(a);
            }
        }
    }
}

/* Activation quantizers on exact rounding ties, the first-of-largest-|x|
 * sign rule of Q8_K, f16 overflow / subnormal ties and NaN payloads. */
static void test_quant_edges(void **state) {
    (void)state;
    static const uint32_t acts[] = {ICA_Q8_0, ICA_Q8_1, ICA_Q8_K, ICA_F16, ICA_BF16};
    int lv[KERN_LEVEL_COUNT];
    int nl = n_levels(lv);
    const int64_t n = 256 * 3;
    float *x = malloc((size_t)n * sizeof *x);
    uint8_t *a = malloc(8192), *b = malloc(8192);
    assert_non_null(x);
    for (int mode = 0; mode < 8; mode++) {
        g_rng = 333 + (uint64_t)mode;
        for (int64_t i = 0; i < n; i++) {
            const int k = (int)(rng_u32() % 253) - 126; /* -126..126 */
            x[i] = (float)k + (rng_u32() % 2 ? 0.5f : 0.0f);
        }
        /* |x| = 127 first with one sign, later with the other: scale 1 and
         * exact ties for Q8_0 / Q8_1 / Q8_K */
        for (int64_t blk = 0; blk < n; blk += 32) {
            const float sgn = (mode + blk / 32) % 2 ? 1.0f : -1.0f;
            x[blk + (mode % 5)] = 127.0f * sgn;
            x[blk + 20] = -127.0f * sgn;
        }
        if (mode >= 4) /* the float formats' edges (the Q8 rows differ too) */
            for (int64_t i = 0; i < n; i++) {
                uint32_t u;
                const uint16_t h = (uint16_t)(rng_u32() & 0x7bffu); /* finite half */
                const float hv = kern_f16_to_f32(h);
                memcpy(&u, &hv, 4);
                switch (rng_u32() % 6) {
                case 0: /* halfway between two halves (normal: f32 bit 12) */
                    u |= 0x1000u;
                    break;
                case 1: /* halfway between two subnormal halves */
                    u = 0;
                    {
                        const float f = ((float)(rng_u32() % 1024) + 0.5f) * 0x1p-24f;
                        memcpy(&u, &f, 4);
                    }
                    break;
                case 2: /* halfway between two bf16 */
                    u = (u & 0xffff0000u) | 0x8000u;
                    break;
                case 3: { /* around the f16 overflow */
                    const float f = 65504.0f + (float)(rng_u32() % 64);
                    memcpy(&u, &f, 4);
                    break;
                }
                default:
                    break;
                }
                u |= (rng_u32() & 1u) << 31;
                memcpy(&x[i], &u, 4);
            }
        for (size_t k = 0; k < sizeof acts / sizeof acts[0]; k++) {
            const uint32_t t = acts[k];
            const int fl = t == ICA_F16 || t == ICA_BF16;
            const int64_t len = fl ? n - 5 : n;
            if (fl && mode == 7) { /* NaNs with payloads, quiet and signalling */
                static const uint32_t nans[] = {0x7fc00000u, 0xffc12345u, 0x7f812345u, 0xff800001u,
                                                0x7fffffffu};
                for (int j = 0; j < 5; j++)
                    memcpy(&x[3 + 17 * j], &nans[j], 4);
            }
            const size_t rs = ica_dtype_row_size(t, len);
            kern_get_traits_ref(t)->from_float(x, a, len);
            for (int l = 0; l < nl; l++) {
                memset(b, 0xa5, rs);
                kern_ops_get(lv[l], t)->tr.from_float(x, b, len);
                if (memcmp(a, b, rs) != 0)
                    fail_msg("quantizer edges %s level %s mode %d differs", ica_dtype_info(t)->name,
                             kern_level_name(lv[l]), mode);
            }
        }
    }
    free(x);
    free(a);
    free(b);
}

/* kern_matmul_level (tiles, dot4/sgemm4, threads) equals kern_matmul_ref. */
static void test_matmul_levels(void **state) {
    (void)state;
    int lv[KERN_LEVEL_COUNT];
    int nl = n_levels(lv);
    struct pool *pools[3] = {NULL, pool_new(2, NULL), pool_new(3, NULL)};
    assert_non_null(pools[1]);
    assert_non_null(pools[2]);
    const int64_t rows_l[] = {1, 4, 12, 37, 64};
    const int64_t tok_l[] = {1, 2, 3, 4, 5, 9};
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        const uint32_t t = k_types[ti];
        const int64_t bs = blck(t);
        for (size_t ri = 0; ri < sizeof rows_l / sizeof rows_l[0]; ri++) {
            const int64_t rows = rows_l[ri];
            /* plain types: a length with leftovers (not a multiple of 64) too */
            const int64_t cols = bs == 1 ? (ri % 2 ? 100 : 320) : (bs == 32 ? 32 * 9 : 256 * 3);
            g_rng = 5000 + ti * 13 + ri;
            void *w = make_weights(t, rows, cols, (int)ri);
            for (size_t ki = 0; ki < sizeof tok_l / sizeof tok_l[0]; ki++) {
                const int64_t nt = tok_l[ki];
                float *x = malloc((size_t)(nt * cols) * sizeof *x);
                fill_x(x, nt * cols, (int)ki);
                size_t ss = kern_matmul_scratch_size(t, cols, nt);
                void *sc = malloc(ss + 64);
                float *yr = malloc((size_t)(nt * rows) * sizeof *yr);
                float *yg = malloc((size_t)(nt * rows) * sizeof *yg);
                kern_matmul_ref(t, w, rows, cols, x, nt, yr, sc);
                for (int l = 0; l < nl; l++)
                    for (int p = 0; p < 3; p++) {
                        memset(yg, 0xff, (size_t)(nt * rows) * sizeof *yg);
                        kern_matmul_level(lv[l], pools[p], t, w, rows, cols, x, nt, yg, sc);
                        if (memcmp(yr, yg, (size_t)(nt * rows) * sizeof *yg) != 0)
                            fail_msg("matmul %s rows %lld tok %lld level %s pool %d differs",
                                     ica_dtype_info(t)->name, (long long)rows, (long long)nt,
                                     kern_level_name(lv[l]), p);
                    }
                free(x);
                free(sc);
                free(yr);
                free(yg);
            }
            free(w);
        }
    }
    /* a product big enough to take the threaded path (work above the cut) */
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        const uint32_t t = k_types[ti];
        const int64_t cols = blck(t) == 1 ? 1024 : 1024, rows = 96, nt = 7;
        g_rng = 9000 + ti;
        void *w = make_weights(t, rows, cols, 1);
        float *x = malloc((size_t)(nt * cols) * sizeof *x);
        fill_x(x, nt * cols, 0);
        void *sc = malloc(kern_matmul_scratch_size(t, cols, nt) + 64);
        float *yr = malloc((size_t)(nt * rows) * sizeof *yr);
        float *yg = malloc((size_t)(nt * rows) * sizeof *yg);
        for (int64_t k = 1; k <= nt; k += 6) {
            kern_matmul_ref(t, w, rows, cols, x, k, yr, sc);
            for (int l = 0; l < nl; l++)
                for (int p = 0; p < 3; p++) {
                    kern_matmul_level(lv[l], pools[p], t, w, rows, cols, x, k, yg, sc);
                    if (memcmp(yr, yg, (size_t)(k * rows) * sizeof *yg) != 0)
                        fail_msg("big matmul %s tok %lld level %s pool %d differs",
                                 ica_dtype_info(t)->name, (long long)k, kern_level_name(lv[l]), p);
                }
        }
        free(w);
        free(x);
        free(sc);
        free(yr);
        free(yg);
    }
    pool_free(pools[1]);
    pool_free(pools[2]);
}

/* Products over repacked weights (kern_repack_level + kern_matmul_rp_level)
 * equal kern_matmul_ref bit for bit, for every type and level that has a
 * repacked layout: row counts with and without a partial last tile, one and
 * several tokens, with and without threads; the repacked copy has the
 * documented size and types without a layout report 0. */
static void test_matmul_repacked(void **state) {
    (void)state;
    int lv[KERN_LEVEL_COUNT];
    int nl = n_levels(lv);
    struct pool *pools[3] = {NULL, pool_new(2, NULL), pool_new(3, NULL)};
    assert_non_null(pools[1]);
    assert_non_null(pools[2]);
    const int64_t rows_l[] = {8, 16, 17, 40, 96, 131};
    const int64_t tok_l[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 17};
    int tested = 0;
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        const uint32_t t = k_types[ti];
        for (int l = 0; l < nl; l++) {
            const struct kern_ops *o = kern_ops_get(lv[l], t);
            if (!o->rp_pack) {
                assert_int_equal(kern_repack_size_level(lv[l], t, 64, 32 * blck(t)), 0);
                continue;
            }
            for (size_t ri = 0; ri < sizeof rows_l / sizeof rows_l[0]; ri++) {
                const int64_t rows = rows_l[ri];
                const int64_t cols = blck(t) * (int64_t)(1 + (ri * 5) % 11);
                g_rng = 7000 + ti * 17 + ri;
                void *w = make_weights(t, rows, cols, (int)ri);
                const size_t rs = kern_repack_size_level(lv[l], t, rows, cols);
                assert_int_equal(rs, (size_t)(rows / o->rp_rows) * o->rp_bytes(cols));
                if (rows < o->rp_rows) {
                    free(w);
                    continue;
                }
                void *rp = malloc(rs);
                assert_non_null(rp);
                kern_repack_level(lv[l], t, w, rows, cols, rp);
                for (size_t ki = 0; ki < sizeof tok_l / sizeof tok_l[0]; ki++) {
                    const int64_t nt = tok_l[ki];
                    float *x = malloc((size_t)(nt * cols) * sizeof *x);
                    fill_x(x, nt * cols, (int)(ki + ri));
                    void *sc = malloc(kern_matmul_scratch_size(t, cols, nt) + 64);
                    float *yr = malloc((size_t)(nt * rows) * sizeof *yr);
                    float *yg = malloc((size_t)(nt * rows) * sizeof *yg);
                    kern_matmul_ref(t, w, rows, cols, x, nt, yr, sc);
                    for (int p = 0; p < 3; p++) {
                        memset(yg, 0xff, (size_t)(nt * rows) * sizeof *yg);
                        kern_matmul_rp_level(lv[l], pools[p], t, w, rp, rows, cols, x, nt, yg, sc);
                        if (memcmp(yr, yg, (size_t)(nt * rows) * sizeof *yg) != 0)
                            fail_msg("repacked %s rows %lld cols %lld tok %lld level %s pool %d",
                                     ica_dtype_info(t)->name, (long long)rows, (long long)cols,
                                     (long long)nt, kern_level_name(lv[l]), p);
                        tested++;
                    }
                    free(x);
                    free(sc);
                    free(yr);
                    free(yg);
                }
                free(rp);
                free(w);
            }
        }
    }
    printf("repacked products checked: %d\n", tested);
    pool_free(pools[1]);
    pool_free(pools[2]);
}

/* The same on raw random weight blocks (every code and scale, all-ones and
 * all-zero quants) and saturated activations (codes at -128 and 127): 2 and
 * 3 super-blocks of columns, a partial last tile, 1..9 and 17 tokens. */
static void test_matmul_repacked_raw(void **state) {
    (void)state;
    int lv[KERN_LEVEL_COUNT];
    int nl = n_levels(lv);
    struct pool *pool = pool_new(2, NULL);
    assert_non_null(pool);
    const int64_t rows_l[] = {16, 37, 48};
    const int64_t tok_l[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 17};
    int tested = 0;
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        const uint32_t t = k_types[ti];
        for (int l = 0; l < nl; l++) {
            const struct kern_ops *o = kern_ops_get(lv[l], t);
            if (!o->rp_pack)
                continue;
            for (size_t ri = 0; ri < sizeof rows_l / sizeof rows_l[0]; ri++) {
                const int64_t rows = rows_l[ri], cols = 256 * (int64_t)(2 + ri % 2);
                for (int mode = 0; mode < 3; mode++) {
                    g_rng = 90000 + ti * 31 + ri * 7 + (uint64_t)mode;
                    void *w = make_raw_weights(t, rows * cols, mode);
                    void *rp = malloc(kern_repack_size_level(lv[l], t, rows, cols));
                    assert_non_null(rp);
                    kern_repack_level(lv[l], t, w, rows, cols, rp);
                    for (size_t ki = 0; ki < sizeof tok_l / sizeof tok_l[0]; ki++) {
                        const int64_t nt = tok_l[ki];
                        float *x = malloc((size_t)(nt * cols) * sizeof *x);
                        fill_act(x, nt * cols, (int)ki + mode);
                        void *sc = malloc(kern_matmul_scratch_size(t, cols, nt) + 64);
                        float *yr = malloc((size_t)(nt * rows) * sizeof *yr);
                        float *yg = malloc((size_t)(nt * rows) * sizeof *yg);
                        kern_matmul_ref(t, w, rows, cols, x, nt, yr, sc);
                        for (int p = 0; p < 2; p++) {
                            memset(yg, 0xff, (size_t)(nt * rows) * sizeof *yg);
                            kern_matmul_rp_level(lv[l], p ? pool : NULL, t, w, rp, rows, cols, x,
                                                 nt, yg, sc);
                            if (memcmp(yr, yg, (size_t)(nt * rows) * sizeof *yg) != 0)
                                fail_msg("raw repacked %s rows %lld cols %lld tok %lld mode %d "
                                         "level %s pool %d",
                                         ica_dtype_info(t)->name, (long long)rows, (long long)cols,
                                         (long long)nt, mode, kern_level_name(lv[l]), p);
                            tested++;
                        }
                        free(x);
                        free(sc);
                        free(yr);
                        free(yg);
                    }
                    free(rp);
                    free(w);
                }
            }
        }
    }
    printf("raw repacked products checked: %d\n", tested);
    pool_free(pool);
}

/* kern_matmul_multi: three matrices of one type against the same
 * activations give each exactly kern_matmul_ref's result, with and without
 * repacked copies and threads, for token counts on both sides of the
 * parallel rounding threshold. */
static void test_matmul_multi(void **state) {
    (void)state;
    struct pool *pools[3] = {NULL, pool_new(2, NULL), pool_new(3, NULL)};
    assert_non_null(pools[1]);
    assert_non_null(pools[2]);
    const uint32_t types[] = {ICA_Q4_0, ICA_Q4_K, ICA_Q8_0, ICA_Q6_K, ICA_F16, ICA_F32};
    const int64_t rows[3] = {160, 64, 131};
    const int64_t tok_l[] = {1, 3, 8, 13, 40};
    int tested = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const uint32_t t = types[ti];
        const int64_t cols = blck(t) * (t == ICA_Q4_0 || t == ICA_Q8_0 ? 64 : 8);
        void *w[3], *rp[3];
        for (int i = 0; i < 3; i++) {
            g_rng = 9100 + ti * 7 + (size_t)i;
            w[i] = make_weights(t, rows[i], cols, i);
            const size_t rs = kern_repack_size(t, rows[i], cols);
            rp[i] = rs ? malloc(rs) : NULL;
            if (rp[i])
                kern_repack(t, w[i], rows[i], cols, rp[i]);
        }
        for (size_t ki = 0; ki < sizeof tok_l / sizeof tok_l[0]; ki++) {
            const int64_t nt = tok_l[ki];
            float *x = malloc((size_t)(nt * cols) * sizeof *x);
            fill_x(x, nt * cols, (int)ki);
            void *sc = malloc(kern_matmul_scratch_size(t, cols, nt) + 64);
            float *yr[3], *yg[3];
            for (int i = 0; i < 3; i++) {
                yr[i] = malloc((size_t)(nt * rows[i]) * sizeof(float));
                yg[i] = malloc((size_t)(nt * rows[i]) * sizeof(float));
                kern_matmul_ref(t, w[i], rows[i], cols, x, nt, yr[i], sc);
            }
            for (int p = 0; p < 3; p++)
                for (int with_rp = 0; with_rp < 2; with_rp++) {
                    struct kern_mm mm[3];
                    for (int i = 0; i < 3; i++) {
                        memset(yg[i], 0xff, (size_t)(nt * rows[i]) * sizeof(float));
                        mm[i] = (struct kern_mm){w[i], with_rp ? rp[i] : NULL, rows[i], yg[i]};
                    }
                    kern_matmul_multi(pools[p], t, mm, 3, cols, x, nt, sc);
                    for (int i = 0; i < 3; i++)
                        if (memcmp(yr[i], yg[i], (size_t)(nt * rows[i]) * sizeof(float)) != 0)
                            fail_msg("multi %s matrix %d tok %lld pool %d repacked %d",
                                     ica_dtype_info(t)->name, i, (long long)nt, p, with_rp);
                    tested++;
                }
            for (int i = 0; i < 3; i++) {
                free(yr[i]);
                free(yg[i]);
            }
            free(x);
            free(sc);
        }
        for (int i = 0; i < 3; i++) {
            free(w[i]);
            free(rp[i]);
        }
    }
    printf("multi products checked: %d\n", tested);
    pool_free(pools[1]);
    pool_free(pools[2]);
}

int main(void) {
    // clang-format off
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_quantizers),
        cmocka_unit_test(test_vec_dots),
        cmocka_unit_test(test_dots_raw),
        cmocka_unit_test(test_plain_edges),
        cmocka_unit_test(test_quant_edges),
        cmocka_unit_test(test_matmul_levels),
        cmocka_unit_test(test_matmul_repacked),
        cmocka_unit_test(test_matmul_repacked_raw),
        cmocka_unit_test(test_matmul_multi),
    };
    // clang-format on
    return cmocka_run_group_tests(tests, NULL, NULL);
}
