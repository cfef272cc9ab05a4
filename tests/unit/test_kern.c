/* kern: fp16/bf16 conversion, quantize/dequantize per type, dot-product
 * consistency with the formats, activation rounding as llama.cpp x86, matmul. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "icalign/kern.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static void rng_seed(uint64_t s) {
    g_rng = s * 0x9e3779b97f4a7c15ull + 1;
}

static uint32_t rng_u32(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}

static float rng_unif(void) { /* [-1, 1) */
    return (float)((double)rng_u32() / 2147483648.0 - 1.0);
}

static float rng_gauss(void) {
    double u1 = ((double)rng_u32() + 1.0) / 4294967297.0;
    double u2 = (double)rng_u32() / 4294967296.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bitsf(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

static uint16_t get16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}

static const uint32_t k_weight_types[] = {ICA_F32,  ICA_F16,  ICA_BF16, ICA_Q4_0,   ICA_Q4_1,
                                          ICA_Q5_0, ICA_Q5_1, ICA_Q8_0, ICA_Q2_K,   ICA_Q3_K,
                                          ICA_Q4_K, ICA_Q5_K, ICA_Q6_K, ICA_IQ4_NL, ICA_IQ4_XS};
#define N_WTYPES (sizeof k_weight_types / sizeof k_weight_types[0])

static const char *tname(uint32_t t) {
    return ica_dtype_info(t)->name;
}

/* ---------------------------------------------------------- fp16/bf16 */

static void test_f16_roundtrip_all(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = kern_f16_to_f32((uint16_t)h);
        uint16_t back = kern_f32_to_f16(f);
        int is_nan = ((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff) != 0;
        if (is_nan) {
            assert_true(isnan(f));
            assert_true((back & 0x7c00) == 0x7c00 && (back & 0x3ff) != 0);
            assert_int_equal(back & 0x8000, h & 0x8000);
        } else if (back != h) {
            print_error("f16 0x%04x -> %a -> 0x%04x\n", h, (double)f, back);
            fail();
        }
    }
    /* independent values */
    assert_true(kern_f16_to_f32(0x3c00) == 1.0f);
    assert_true(kern_f16_to_f32(0xc000) == -2.0f);
    assert_true(kern_f16_to_f32(0x0001) == 0x1p-24f);
    assert_true(kern_f16_to_f32(0x03ff) == 1023 * 0x1p-24f);
    assert_true(kern_f16_to_f32(0x0400) == 0x1p-14f);
    assert_true(kern_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(isinf(kern_f16_to_f32(0x7c00)) && kern_f16_to_f32(0x7c00) > 0);
    assert_true(isinf(kern_f16_to_f32(0xfc00)) && kern_f16_to_f32(0xfc00) < 0);
    assert_true(signbit(kern_f16_to_f32(0x8000)) && kern_f16_to_f32(0x8000) == 0.0f);
    assert_true(kern_f16_to_f32(0x3555) == 0x1.554p-2f);
}

static void test_f16_rounding(void **state) {
    (void)state;
    /* ties to even between neighbours of 1.0 (ulp 2^-10) */
    assert_int_equal(kern_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    assert_int_equal(kern_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    assert_int_equal(kern_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
    assert_int_equal(kern_f32_to_f16(1.0f + 0x1p-11f - 0x1p-22f), 0x3c00);
    assert_int_equal(kern_f32_to_f16(-(1.0f + 3 * 0x1p-11f)), 0xbc02);
    /* overflow: 65504 is max, 65520 is the tie with 2^16 -> inf */
    assert_int_equal(kern_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(kern_f32_to_f16(65519.99f), 0x7bff);
    assert_int_equal(kern_f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(kern_f32_to_f16(1e6f), 0x7c00);
    assert_int_equal(kern_f32_to_f16(-1e30f), 0xfc00);
    assert_int_equal(kern_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(kern_f32_to_f16(-INFINITY), 0xfc00);
    uint16_t hn = kern_f32_to_f16(NAN);
    assert_true((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0);
    /* subnormals: unit 2^-24 */
    assert_int_equal(kern_f32_to_f16(0x1p-25f), 0x0000); /* tie -> even 0 */
    assert_int_equal(kern_f32_to_f16(bitsf(fbits(0x1p-25f) + 1)), 0x0001);
    assert_int_equal(kern_f32_to_f16(3 * 0x1p-25f), 0x0002); /* tie 1|2 -> 2 */
    assert_int_equal(kern_f32_to_f16(5 * 0x1p-25f), 0x0002); /* tie 2|3 -> 2 */
    assert_int_equal(kern_f32_to_f16(0x1p-24f), 0x0001);
    assert_int_equal(kern_f32_to_f16(0x1p-30f), 0x0000);
    assert_int_equal(kern_f32_to_f16(-0x1p-30f), 0x8000);
    assert_int_equal(kern_f32_to_f16(1e-45f), 0x0000);
    assert_int_equal(kern_f32_to_f16(0x1.ff8p-15f), 0x03ff); /* largest subnormal */
    assert_int_equal(kern_f32_to_f16(0x1.ffbp-15f), 0x03ff);
    assert_int_equal(kern_f32_to_f16(0x1.ffcp-15f), 0x0400); /* tie: up into the normals */
    assert_int_equal(kern_f32_to_f16(-0.0f), 0x8000);
    /* random floats: the result is a nearest f16 and ties go to even */
    rng_seed(1);
    for (int i = 0; i < 200000; i++) {
        float f = ldexpf(rng_unif(), (int)(rng_u32() % 44) - 28);
        uint16_t h = kern_f32_to_f16(f);
        double v = kern_f16_to_f32(h);
        double err = fabs((double)f - v);
        for (int dlt = -1; dlt <= 1; dlt += 2) {
            uint16_t nb = (uint16_t)(h + dlt);
            if ((nb & 0x7fff) >= 0x7c00 || ((h & 0x7fff) == 0 && dlt < 0))
                continue;
            double e2 = fabs((double)f - (double)kern_f16_to_f32(nb));
            if (e2 < err || (e2 == err && (h & 1))) {
                print_error("f=%a h=0x%04x nb=0x%04x\n", (double)f, h, nb);
                fail();
            }
        }
    }
}

static void test_bf16(void **state) {
    (void)state;
    assert_int_equal(kern_f32_to_bf16(1.0f), 0x3f80);
    assert_true(kern_bf16_to_f32(0x3f80) == 1.0f);
    assert_true(kern_bf16_to_f32(0xc0a0) == -5.0f);
    assert_int_equal(kern_f32_to_bf16(bitsf(0x3f808000u)), 0x3f80); /* tie, even stays */
    assert_int_equal(kern_f32_to_bf16(bitsf(0x3f818000u)), 0x3f82); /* tie, odd rounds up */
    assert_int_equal(kern_f32_to_bf16(bitsf(0x3f808001u)), 0x3f81);
    assert_int_equal(kern_f32_to_bf16(bitsf(0x3f807fffu)), 0x3f80);
    assert_int_equal(kern_f32_to_bf16(bitsf(0xbf818000u)), 0xbf82);
    assert_int_equal(kern_f32_to_bf16(3.4028235e38f), 0x7f80); /* overflow to inf */
    assert_int_equal(kern_f32_to_bf16(-3.4028235e38f), 0xff80);
    assert_int_equal(kern_f32_to_bf16(INFINITY), 0x7f80);
    assert_int_equal(kern_f32_to_bf16(bitsf(0x7f800001u)), 0x7fc0); /* sNaN -> quiet */
    assert_int_equal(kern_f32_to_bf16(bitsf(0xffc12345u)), 0xffc1);
    assert_int_equal(kern_f32_to_bf16(bitsf(0x00018000u)), 0x0002); /* subnormal tie */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = kern_bf16_to_f32((uint16_t)h);
        if (isnan(f))
            continue;
        assert_int_equal(kern_f32_to_bf16(f), h);
    }
}

/* -------------------------------------------- hand-built blocks per type */

/* Builds one block (or one 256-row for plain types) of type t with known
 * contents into blk and writes the values it must dequantize to into exp;
 * returns the element count. Layouts from ggml-common.h, traversed the way
 * ggml's dequantize_row_* does. */
static int build_block(uint32_t t, uint8_t *blk, float *exp) {
    memset(blk, 0, 512);
    switch (t) {
    case ICA_F32:
        for (int j = 0; j < 32; j++) {
            exp[j] = (float)j * 0.37f - 3.0f;
            memcpy(blk + 4 * j, &exp[j], 4);
        }
        return 32;
    case ICA_F16:
        for (int j = 0; j < 32; j++) {
            put16(blk + 2 * j, (uint16_t)(0x3c00 + j * 3)); /* 1 + 3j/1024 */
            exp[j] = 1.0f + (float)(3 * j) / 1024.0f;
        }
        return 32;
    case ICA_BF16:
        for (int j = 0; j < 32; j++) {
            put16(blk + 2 * j, (uint16_t)(0xc000 + j)); /* -(2 + 2j/128) */
            exp[j] = -(2.0f + (float)(2 * j) / 128.0f);
        }
        return 32;
    case ICA_Q4_0: /* d=0.5; low nibble j, high nibble 15-j */
        put16(blk, 0x3800);
        for (int j = 0; j < 16; j++) {
            blk[2 + j] = (uint8_t)(j | ((15 - j) << 4));
            exp[j] = (float)(j - 8) * 0.5f;
            exp[j + 16] = (float)(7 - j) * 0.5f;
        }
        return 32;
    case ICA_Q4_1: /* d=0.25, m=-1 */
        put16(blk, 0x3400);
        put16(blk + 2, 0xbc00);
        for (int j = 0; j < 16; j++) {
            blk[4 + j] = (uint8_t)(((j * 5) & 15) | ((15 - j) << 4));
            exp[j] = (float)((j * 5) & 15) * 0.25f - 1.0f;
            exp[j + 16] = (float)(15 - j) * 0.25f - 1.0f;
        }
        return 32;
    case ICA_Q5_0:
    case ICA_Q5_1: {
        int off = t == ICA_Q5_0 ? 2 : 4;
        put16(blk, t == ICA_Q5_0 ? 0x3c00 : 0x3800); /* d = 1 or 0.5 */
        if (t == ICA_Q5_1)
            put16(blk + 2, 0x4000); /* m = 2 */
        for (int j = 0; j < 32; j++) {
            int v = (j * 7 + 3) % 32;
            if (j < 16)
                blk[off + 4 + j] |= (uint8_t)(v & 15);
            else
                blk[off + 4 + j - 16] |= (uint8_t)((v & 15) << 4);
            blk[off + j / 8] |= (uint8_t)((v >> 4) << (j % 8)); /* qh bit j, little endian */
            exp[j] = t == ICA_Q5_0 ? (float)(v - 16) : (float)v * 0.5f + 2.0f;
        }
        return 32;
    }
    case ICA_Q8_0: /* d = 0.125 */
        put16(blk, 0x3000);
        for (int j = 0; j < 32; j++) {
            blk[2 + j] = (uint8_t)(int8_t)(j * 8 - 128);
            exp[j] = (float)(j * 8 - 128) * 0.125f;
        }
        return 32;
    case ICA_IQ4_NL: { /* d = 0.5 */
        static const int kv[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                   1,    13,   25,  38,  53,  69,  89,  113};
        put16(blk, 0x3800);
        for (int j = 0; j < 16; j++) {
            int a = j, b = (j * 3 + 1) % 16;
            blk[2 + j] = (uint8_t)(a | (b << 4));
            exp[j] = (float)kv[a] * 0.5f;
            exp[j + 16] = (float)kv[b] * 0.5f;
        }
        return 32;
    }
    case ICA_IQ4_XS: { /* d = 0.25; ls = 8*ib + 1 */
        static const int kv[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                   1,    13,   25,  38,  53,  69,  89,  113};
        put16(blk, 0x3400);
        uint16_t sh = 0;
        for (int ib = 0; ib < 8; ib++) {
            int ls = 8 * ib + 1;
            blk[4 + ib / 2] |= (uint8_t)((ls & 15) << (4 * (ib % 2)));
            sh |= (uint16_t)((ls >> 4) << (2 * ib));
            for (int j = 0; j < 16; j++) {
                int a = (ib + j) % 16, b = (ib * 5 + j * 3) % 16;
                blk[8 + 16 * ib + j] = (uint8_t)(a | (b << 4));
                exp[32 * ib + j] = 0.25f * (float)(ls - 32) * (float)kv[a];
                exp[32 * ib + 16 + j] = 0.25f * (float)(ls - 32) * (float)kv[b];
            }
        }
        put16(blk + 2, sh);
        return 256;
    }
    case ICA_Q2_K: { /* scales[16] qs[64] d dmin; d=1, dmin=0.5 */
        uint8_t *sc = blk, *qs = blk + 16;
        put16(blk + 80, 0x3c00);
        put16(blk + 82, 0x3800);
        for (int s = 0; s < 16; s++)
            sc[s] = (uint8_t)((s & 15) | (((s * 3) & 15) << 4));
        int e = 0;
        for (int n = 0; n < 2; n++)
            for (int sh = 0; sh < 4; sh++)
                for (int half = 0; half < 2; half++)
                    for (int l = 0; l < 16; l++, e++) {
                        int q = (e * 5 + n) % 4, s = e / 16;
                        qs[32 * n + 16 * half + l] |= (uint8_t)(q << (2 * sh));
                        exp[e] = (float)((s & 15) * q) - 0.5f * (float)((s * 3) & 15);
                    }
        return 256;
    }
    case ICA_Q3_K: { /* hmask[32] qs[64] scales[12] d; d = 0.5 */
        uint8_t *hm = blk, *qs = blk + 32, *sc = blk + 96;
        put16(blk + 108, 0x3800);
        int scv[16];
        for (int s = 0; s < 16; s++) {
            scv[s] = (s * 5) % 64 - 32;
            int u = scv[s] + 32;
            /* low nibbles: scales 0-7 in bytes 0-7 low, 8-15 in bytes 0-7 high;
             * top 2 bits of scale s in byte 8 + s%4 at bit 2*(s/4) */
            sc[s % 8] |= (uint8_t)((u & 15) << (s < 8 ? 0 : 4));
            sc[8 + s % 4] |= (uint8_t)((u >> 4) << (2 * (s / 4)));
        }
        int e = 0, bit = 0;
        for (int n = 0; n < 2; n++)
            for (int sh = 0; sh < 4; sh++, bit++)
                for (int l = 0; l < 32; l++, e++) {
                    int q = (e * 3) % 8 - 4, u = q + 4;
                    qs[32 * n + l] |= (uint8_t)((u & 3) << (2 * sh));
                    if (u & 4)
                        hm[l] |= (uint8_t)(1 << bit);
                    exp[e] = 0.5f * (float)scv[e / 16] * (float)q;
                }
        return 256;
    }
    case ICA_Q4_K:
    case ICA_Q5_K: { /* d dmin scales[12] (qh[32]) qs[128]; d = 1, dmin = 0.25 */
        int is5 = t == ICA_Q5_K;
        uint8_t *sc = blk + 4, *qh = blk + 16, *qs = blk + (is5 ? 48 : 16);
        put16(blk, 0x3c00);
        put16(blk + 2, 0x3400);
        int scv[8], mv[8];
        for (int j = 0; j < 8; j++) {
            scv[j] = (j * 9 + 2) % 64;
            mv[j] = (j * 21 + 50) % 64;
            if (j < 4) {
                sc[j] = (uint8_t)scv[j];
                sc[j + 4] = (uint8_t)mv[j];
            }
        }
        for (int j = 4; j < 8; j++) {
            sc[j + 4] = (uint8_t)((scv[j] & 15) | ((mv[j] & 15) << 4));
            sc[j - 4] |= (uint8_t)((scv[j] >> 4) << 6);
            sc[j] |= (uint8_t)((mv[j] >> 4) << 6);
        }
        int e = 0;
        for (int c = 0; c < 4; c++)
            for (int half = 0; half < 2; half++)
                for (int l = 0; l < 32; l++, e++) {
                    int q = is5 ? (e * 7 + 1) % 32 : (e * 7 + 1) % 16;
                    qs[32 * c + l] |= (uint8_t)((q & 15) << (4 * half));
                    if (is5)
                        qh[l] |= (uint8_t)((q >> 4) << (2 * c + half));
                    int s = e / 32;
                    exp[e] = (float)(scv[s] * q) - 0.25f * (float)mv[s];
                }
        return 256;
    }
    case ICA_Q6_K: { /* ql[128] qh[64] scales[16] d; d = 0.25 */
        uint8_t *ql = blk, *qh = blk + 128;
        int8_t scv[16];
        put16(blk + 208, 0x3400);
        for (int s = 0; s < 16; s++) {
            scv[s] = (int8_t)(s * 16 - 128 + s);
            blk[192 + s] = (uint8_t)scv[s];
        }
        for (int n = 0; n < 2; n++)
            for (int l = 0; l < 32; l++)
                for (int k = 0; k < 4; k++) {
                    int e = 128 * n + 32 * k + l;
                    int q = (e * 5 + 7) % 64 - 32, u = q + 32;
                    ql[64 * n + l + (k & 1) * 32] |= (uint8_t)((u & 15) << (k >= 2 ? 4 : 0));
                    qh[32 * n + l] |= (uint8_t)((u >> 4) << (2 * k));
                    exp[e] = 0.25f * (float)scv[e / 16] * (float)q;
                }
        return 256;
    }
    }
    return 0;
}

static void test_dequant_hand_blocks(void **state) {
    (void)state;
    uint8_t blk[512];
    float exp[256], got[256];
    for (size_t ti = 0; ti < N_WTYPES; ti++) {
        uint32_t t = k_weight_types[ti];
        int n = build_block(t, blk, exp);
        assert_true(n > 0);
        const struct kern_traits *tr = kern_get_traits_ref(t);
        assert_non_null(tr);
        assert_int_equal(tr->type, t);
        tr->to_float(blk, got, n);
        for (int j = 0; j < n; j++)
            if (got[j] != exp[j]) {
                print_error("%s elem %d: got %g want %g\n", tname(t), j, (double)got[j],
                            (double)exp[j]);
                fail();
            }
        /* the current level must agree */
        kern_get_traits(t)->to_float(blk, got, n);
        assert_memory_equal(got, exp, (size_t)n * sizeof(float));
    }
}

/* ------------------------------------------------ quantize round trips */

/* rms(dequant(quant(x)) - x) / rms(x) bound per weight type */
static double rt_bound(uint32_t t) {
    switch (t) {
    case ICA_F32:
        return 0;
    case ICA_F16:
        return 3e-4;
    case ICA_BF16:
        return 2.5e-3;
    case ICA_Q8_0:
        return 7e-3;
    case ICA_Q4_0:
    case ICA_Q4_1:
    case ICA_IQ4_NL:
    case ICA_IQ4_XS:
    case ICA_Q4_K:
        return 0.1;
    case ICA_Q5_0:
    case ICA_Q5_1:
    case ICA_Q5_K:
        return 0.05;
    case ICA_Q6_K:
        return 0.025;
    case ICA_Q3_K:
        return 0.2;
    case ICA_Q2_K:
        return 0.4;
    }
    return 0;
}

static void test_quant_roundtrip(void **state) {
    (void)state;
    enum { N = 2048 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    uint8_t *q = malloc(N * 4);
    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(q);
    for (size_t ti = 0; ti < N_WTYPES; ti++) {
        uint32_t t = k_weight_types[ti];
        const struct kern_traits *tr = kern_get_traits_ref(t);
        for (int pass = 0; pass < 3; pass++) {
            rng_seed(100 + ti * 7 + (uint64_t)pass);
            float scale = pass == 0 ? 1.0f : pass == 1 ? 0.02f : 30.0f;
            for (int i = 0; i < N; i++)
                x[i] = scale * (pass == 2 ? rng_unif() : rng_gauss());
            memset(q, 0xab, N * 4);
            tr->from_float(x, q, N);
            tr->to_float(q, y, N);
            double se = 0, sx = 0;
            for (int i = 0; i < N; i++) {
                assert_true(isfinite(y[i]));
                se += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
                sx += (double)x[i] * x[i];
            }
            double rel = sqrt(se / sx);
            if (rel > rt_bound(t)) {
                print_error("%s pass %d: rel rms err %g > %g\n", tname(t), pass, rel, rt_bound(t));
                fail();
            }
            /* deterministic: quantizing the same data twice gives the same bytes */
            uint8_t *q2 = malloc(N * 4);
            assert_non_null(q2);
            memset(q2, 0x5c, N * 4);
            tr->from_float(x, q2, N);
            assert_memory_equal(q, q2, ica_dtype_row_size(t, N));
            free(q2);
        }
        /* all-zero input -> all-zero output, no NaN */
        memset(x, 0, N * sizeof(float));
        tr->from_float(x, q, N);
        tr->to_float(q, y, N);
        for (int i = 0; i < N; i++)
            assert_true(y[i] == 0.0f);
    }
    free(x);
    free(y);
    free(q);
}

/* ------------------------------------------ vec_dot vs dequantized dot */

static void test_vec_dot_consistency(void **state) {
    (void)state;
    enum { N = 1024 };
    float *w = malloc(N * sizeof(float)), *x = malloc(N * sizeof(float));
    float *dw = malloc(N * sizeof(float)), *dx = malloc(N * sizeof(float));
    uint8_t *qw = malloc(N * 4), *qx = malloc(N * 4);
    assert_true(w && x && dw && dx && qw && qx);
    for (size_t ti = 0; ti < N_WTYPES; ti++) {
        uint32_t t = k_weight_types[ti];
        const struct kern_traits *tr = kern_get_traits_ref(t);
        const struct kern_traits *vt = kern_get_traits_ref(tr->vec_dot_type);
        assert_non_null(vt);
        for (int trial = 0; trial < 20; trial++) {
            rng_seed(1000 + ti * 31 + (uint64_t)trial);
            for (int i = 0; i < N; i++) {
                w[i] = rng_gauss() + (trial & 1 ? 0.7f : 0.0f); /* offset exercises mins */
                x[i] = rng_gauss() * (trial & 2 ? 10.0f : 0.3f);
            }
            tr->from_float(w, qw, N);
            vt->from_float(x, qx, N);
            tr->to_float(qw, dw, N);
            vt->to_float(qx, dx, N);
            double ref = 0, mag = 0;
            for (int i = 0; i < N; i++) {
                ref += (double)dw[i] * dx[i];
                mag += fabs((double)dw[i] * dx[i]);
            }
            double tol = 1e-5 * mag;
            if (tr->vec_dot_type == ICA_Q8_1) {
                /* the m term uses Q8_1's s = fp16(d*sum q), not fp16(d)*sum q */
                size_t wb = ica_dtype_info(t)->type_size;
                for (int b = 0; b < N / 32; b++) {
                    float m = kern_f16_to_f32(get16(qw + wb * (size_t)b + 2));
                    const uint8_t *yb = qx + 36 * (size_t)b;
                    float d8 = kern_f16_to_f32(get16(yb)), s8 = kern_f16_to_f32(get16(yb + 2));
                    int sq = 0;
                    for (int j = 0; j < 32; j++)
                        sq += (int8_t)yb[4 + j];
                    ref += (double)m * s8 - (double)m * d8 * sq;
                    mag += fabs((double)m * s8);
                }
                tol = 1e-5 * mag;
            }
            float s = NAN;
            tr->vec_dot(N, &s, qw, qx);
            if (!(fabs((double)s - ref) <= tol)) {
                print_error("%s trial %d: vec_dot %.9g ref %.9g tol %g\n", tname(t), trial,
                            (double)s, ref, tol);
                fail();
            }
        }
    }
    free(w);
    free(x);
    free(dw);
    free(dx);
    free(qw);
    free(qx);
}

/* vec_dot must read every quant: flipping one weight nibble changes the dot
 * by exactly the dequantized difference times the activation. */
static void test_vec_dot_single_element(void **state) {
    (void)state;
    enum { N = 256 };
    uint8_t blk[512], qx[1024];
    float exp[256], x[N], dx[N];
    for (size_t ti = 0; ti < N_WTYPES; ti++) {
        uint32_t t = k_weight_types[ti];
        const struct kern_traits *tr = kern_get_traits_ref(t);
        const struct kern_traits *vt = kern_get_traits_ref(tr->vec_dot_type);
        int n = build_block(t, blk, exp);
        for (int e = 0; e < n; e += 7) {
            /* activation: one-hot 127 at e; every activation type represents it
             * exactly (d = 1 or -1, q = +-127; Q8_1's s = 127) */
            memset(x, 0, sizeof x);
            x[e] = 127.0f;
            vt->from_float(x, qx, n);
            vt->to_float(qx, dx, n);
            assert_true(dx[e] == 127.0f);
            float s;
            tr->vec_dot(n, &s, blk, qx);
            float want = 127.0f * exp[e];
            if (fabsf(s - want) > 1e-6f * fabsf(want) + 1e-6f) {
                print_error("%s one-hot %d: %g want %g\n", tname(t), e, (double)s, (double)want);
                fail();
            }
        }
    }
}

/* ---------------------------------------------- activation quantizers */

/* independent round-half-even via the C library in the default mode */
static int rne(float v) {
    return (int)nearbyintf(v);
}

static void test_q8_0_x86_rounding(void **state) {
    (void)state;
    const struct kern_traits *tr = kern_get_traits_ref(ICA_Q8_0);
    float x[32];
    uint8_t q[34];
    /* amax = 127: d = 1, id = 1; halves must go to even (roundf would not) */
    static const float v[] = {2.5f, 3.5f, -2.5f, -0.5f, 0.5f, 1.5f, 126.5f, -126.5f, 0.49f, -3.5f};
    static const int want[] = {2, 4, -2, 0, 0, 2, 126, -126, 0, -4};
    for (int j = 0; j < 32; j++)
        x[j] = 0;
    x[31] = 127.0f;
    for (int j = 0; j < 10; j++)
        x[j] = v[j];
    tr->from_float(x, q, 32);
    assert_int_equal(get16(q), 0x3c00);
    for (int j = 0; j < 10; j++)
        assert_int_equal((int8_t)q[2 + j], want[j]);
    assert_int_equal((int8_t)q[2 + 31], 127);
    /* negative max */
    x[31] = -127.0f;
    tr->from_float(x, q, 32);
    assert_int_equal((int8_t)q[2 + 31], -127);
    assert_int_equal((int8_t)q[2 + 0], 2);

    /* random blocks vs an independent implementation of the x86 formula
     * (id = 127/amax, nearest-even); count how often the _ref formula
     * (id = 1/d, roundf) would disagree, to show the test can tell. */
    int differs = 0;
    rng_seed(77);
    for (int b = 0; b < 4000; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) {
            x[j] = rng_gauss() * (float)(1 + b % 13);
            if (b % 5 == 0) /* amax 127 -> id 1: values land on .5 exactly */
                x[j] = j == 0 ? 127.0f : (float)((int)(rng_u32() % 253) - 126) + 0.5f;
            amax = fmaxf(amax, fabsf(x[j]));
        }
        tr->from_float(x, q, 32);
        float d = amax / 127.f, id = amax != 0 ? 127.f / amax : 0;
        assert_int_equal(get16(q), kern_f32_to_f16(d));
        for (int j = 0; j < 32; j++) {
            int e = rne(x[j] * id);
            if ((int8_t)q[2 + j] != e) {
                print_error("block %d elem %d: x=%a got %d want %d\n", b, j, (double)x[j],
                            (int8_t)q[2 + j], e);
                fail();
            }
            float idr = d != 0 ? 1.0f / d : 0.0f;
            if ((int)roundf(x[j] * idr) != e)
                differs++;
        }
    }
    assert_true(differs > 0);

    /* the multiplier is 127/amax, not 1/d: find amax and x where the two
     * round differently (products near a .5 boundary) and check which one
     * the quantizer follows */
    int found = 0;
    rng_seed(78);
    for (int trial = 0; trial < 100000 && found < 20; trial++) {
        float amax = 1.0f + (float)(rng_u32() % 100000) / 1000.0f;
        float id1 = 127.f / amax, id2 = 1.0f / (amax / 127.f);
        if (id1 == id2)
            continue;
        int k = (int)(rng_u32() % 126);
        float xv = ((float)k + 0.5f) / id1;
        for (int u = -3; u <= 3; u++) {
            float xu = bitsf((uint32_t)((int32_t)fbits(xv) + u));
            if (xu >= amax || rne(xu * id1) == rne(xu * id2))
                continue;
            memset(x, 0, sizeof x);
            x[0] = amax;
            x[1] = xu;
            x[2] = -xu;
            tr->from_float(x, q, 32);
            assert_int_equal((int8_t)q[3], rne(xu * id1));
            assert_int_equal((int8_t)q[4], rne(-xu * id1));
            found++;
        }
    }
    assert_true(found >= 20);

    /* all zero: d = 0, q = 0 */
    memset(x, 0, sizeof x);
    memset(q, 0x77, sizeof q);
    tr->from_float(x, q, 32);
    for (int j = 0; j < 34; j++)
        assert_int_equal(q[j], 0);
}

static void test_q8_1_sum(void **state) {
    (void)state;
    const struct kern_traits *tr = kern_get_traits_ref(ICA_Q8_1);
    float x[64], dq[64];
    uint8_t q[72];
    /* block 0: x = j+1 (amax 32, id = 127/32 = 3.96875 exact) */
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j + 1);
    /* block 1: amax 127 and ties */
    for (int j = 0; j < 32; j++)
        x[32 + j] = (float)(j - 16) + 0.5f;
    x[63] = -127.0f;
    tr->from_float(x, q, 64);
    for (int b = 0; b < 2; b++) {
        const uint8_t *blk = q + 36 * b;
        float amax = b == 0 ? 32.0f : 127.0f;
        float d = amax / 127.f, id = 127.f / amax;
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            int e = rne(x[32 * b + j] * id);
            assert_int_equal((int8_t)blk[4 + j], e);
            sum += e;
        }
        assert_int_equal(get16(blk), kern_f32_to_f16(d));
        assert_int_equal(get16(blk + 2), kern_f32_to_f16(d * (float)sum));
    }
    /* random blocks: s uses the float d (amax/127), not its fp16 rounding */
    int s_differs = 0;
    rng_seed(31);
    for (int b = 0; b < 3000; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) {
            x[j] = rng_gauss() + 0.8f;
            amax = fmaxf(amax, fabsf(x[j]));
        }
        tr->from_float(x, q, 32);
        float d = amax / 127.f, id = 127.f / amax;
        int sum = 0;
        for (int j = 0; j < 32; j++)
            sum += rne(x[j] * id);
        uint16_t want = kern_f32_to_f16(d * (float)sum);
        assert_int_equal(get16(q + 2), want);
        if (kern_f32_to_f16(kern_f16_to_f32(kern_f32_to_f16(d)) * (float)sum) != want)
            s_differs++;
    }
    assert_true(s_differs > 0);
    for (int j = 0; j < 32; j++)
        x[32 + j] = (float)(j - 16) + 0.5f;
    x[63] = -127.0f;
    tr->from_float(x, q, 64);
    /* block 1 element 0: -15.5 -> -16 (even), element 1: -14.5 -> -14 */
    assert_int_equal((int8_t)q[36 + 4 + 0], -16);
    assert_int_equal((int8_t)q[36 + 4 + 1], -14);
    tr->to_float(q, dq, 64);
    assert_true(dq[63] == -127.0f * kern_f16_to_f32(0x3c00));
    /* zero block */
    memset(x, 0, sizeof x);
    tr->from_float(x, q, 32);
    assert_int_equal(get16(q), 0);
    assert_int_equal(get16(q + 2), 0);
}

static void test_q8_K(void **state) {
    (void)state;
    const struct kern_traits *tr = kern_get_traits_ref(ICA_Q8_K);
    float x[256], dq[256];
    uint8_t q[292];
    /* negative max-abs element: iscale = -127/-127 = 1, d = 1 */
    for (int j = 0; j < 256; j++)
        x[j] = (float)((j % 50) - 25) * 0.5f; /* many .5 ties */
    x[10] = -127.0f;
    x[20] = 127.0f; /* same magnitude later: the first one (negative) wins */
    tr->from_float(x, q, 256);
    float d;
    memcpy(&d, q, 4);
    assert_true(d == 1.0f);
    for (int j = 0; j < 256; j++)
        assert_int_equal((int8_t)q[4 + j], rne(x[j]));
    assert_int_equal((int8_t)q[4 + 1], -12);  /* -12.0 */
    assert_int_equal((int8_t)q[4 + 3], -11);  /* -11.0 */
    assert_int_equal((int8_t)q[4 + 2], -12);  /* -11.5 -> -12 (even) */
    assert_int_equal((int8_t)q[4 + 4], -10);  /* -10.5 -> -10 (even) */
    assert_int_equal((int8_t)q[4 + 20], 127); /* iscale*127 = 127 */
    for (int b = 0; b < 16; b++) {
        int s = 0;
        for (int j = 0; j < 16; j++)
            s += (int8_t)q[4 + 16 * b + j];
        int16_t bs;
        memcpy(&bs, q + 260 + 2 * b, 2);
        assert_int_equal(bs, s);
    }
    /* positive max: iscale = -127/max, quants negated, d negative */
    rng_seed(5);
    for (int trial = 0; trial < 200; trial++) {
        float amax = 0, max = 0;
        for (int j = 0; j < 256; j++) {
            x[j] = rng_gauss() * 3.0f;
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        tr->from_float(x, q, 256);
        float iscale = -127.f / max;
        memcpy(&d, q, 4);
        assert_true(d == 1 / iscale);
        for (int j = 0; j < 256; j++) {
            int e = rne(iscale * x[j]);
            e = e < 127 ? e : 127;
            assert_int_equal((int8_t)q[4 + j], e);
        }
        tr->to_float(q, dq, 256);
        for (int j = 0; j < 256; j++)
            assert_true(fabsf(dq[j] - x[j]) <= fabsf(d) * 0.5f + 1e-6f * amax);
    }
    /* all zero: d = 0 and no NaN */
    memset(x, 0, sizeof x);
    memset(q, 0x55, sizeof q);
    tr->from_float(x, q, 256);
    for (int j = 0; j < 292; j++)
        assert_int_equal(q[j], 0);
    tr->to_float(q, dq, 256);
    for (int j = 0; j < 256; j++)
        assert_true(dq[j] == 0.0f);
}

static void test_f16_bf16_activation(void **state) {
    (void)state;
    float x[64];
    uint16_t h[64];
    rng_seed(9);
    for (int j = 0; j < 64; j++)
        x[j] = rng_gauss() * 100.0f;
    x[0] = 1.0f + 0x1p-11f;
    kern_get_traits_ref(ICA_F16)->from_float(x, h, 64);
    for (int j = 0; j < 64; j++)
        assert_int_equal(h[j], kern_f32_to_f16(x[j]));
    assert_int_equal(h[0], 0x3c00);
    kern_get_traits_ref(ICA_BF16)->from_float(x, h, 64);
    for (int j = 0; j < 64; j++)
        assert_int_equal(h[j], kern_f32_to_bf16(x[j]));
}

/* F32/F16/BF16 dots: exact on data whose products and sums are exact, and
 * sum order/tail handling for lengths that are not multiples of 64. */
static void test_plain_dots(void **state) {
    (void)state;
    enum { N = 200 };
    float x[N], y[N];
    uint16_t hx[N], hy[N];
    for (int n = 1; n <= N; n += 13) {
        double want = 0;
        for (int i = 0; i < n; i++) {
            x[i] = (float)(i % 9) - 4.0f;
            y[i] = (float)((i * 5) % 7) - 3.0f;
            want += (double)x[i] * y[i];
        }
        float s;
        kern_get_traits_ref(ICA_F32)->vec_dot(n, &s, x, y);
        assert_true(s == (float)want);
        kern_get_traits_ref(ICA_F16)->from_float(x, hx, n);
        kern_get_traits_ref(ICA_F16)->from_float(y, hy, n);
        kern_get_traits_ref(ICA_F16)->vec_dot(n, &s, hx, hy);
        assert_true(s == (float)want);
        kern_get_traits_ref(ICA_BF16)->from_float(x, hx, n);
        kern_get_traits_ref(ICA_BF16)->from_float(y, hy, n);
        kern_get_traits_ref(ICA_BF16)->vec_dot(n, &s, hx, hy);
        assert_true(s == (float)want);
    }
}

/* ------------------------------------------------------------- matmul */

static void test_matmul(void **state) {
    (void)state;
    enum { R = 5, C = 512, T = 3 };
    float *w = malloc(R * C * sizeof(float)), *dw = malloc(R * C * sizeof(float));
    float *x = malloc(T * C * sizeof(float)), *y = malloc(T * R * sizeof(float));
    uint8_t *qw = malloc(R * C * 4), *qx = malloc(C * 4);
    assert_true(w && dw && x && y && qw && qx);
    rng_seed(4242);
    for (int i = 0; i < R * C; i++)
        w[i] = rng_gauss() * 0.1f;
    for (int i = 0; i < T * C; i++)
        x[i] = rng_gauss();
    for (size_t ti = 0; ti < N_WTYPES; ti++) {
        uint32_t t = k_weight_types[ti];
        const struct kern_traits *tr = kern_get_traits_ref(t);
        const struct kern_traits *vt = kern_get_traits_ref(tr->vec_dot_type);
        size_t wrs = ica_dtype_row_size(t, C);
        for (int r = 0; r < R; r++) {
            tr->from_float(w + r * C, qw + (size_t)r * wrs, C);
            tr->to_float(qw + (size_t)r * wrs, dw + r * C, C);
        }
        size_t ss = kern_matmul_scratch_size(t, C, T);
        size_t want_ss = t == ICA_F32 ? 0 : ica_dtype_row_size(tr->vec_dot_type, C) * T;
        assert_int_equal(ss, want_ss);
        void *scratch = ss ? malloc(ss) : NULL;
        for (int i = 0; i < T * R; i++)
            y[i] = NAN;
        kern_matmul_ref(t, qw, R, C, x, T, y, scratch);
        /* activation rounding error bound relative to sum |w x| */
        double rel = t == ICA_F32 ? 1e-5 : t == ICA_F16 ? 2e-3 : t == ICA_BF16 ? 1e-2 : 2e-2;
        for (int tk = 0; tk < T; tk++) {
            vt->from_float(x + tk * C, qx, C);
            for (int r = 0; r < R; r++) {
                float s;
                tr->vec_dot(C, &s, qw + (size_t)r * wrs, qx);
                float got = y[tk * R + r];
                assert_true(got == s); /* exactly the row dot on the quantized row */
                double ref = 0, mag = 0;
                for (int c = 0; c < C; c++) {
                    ref += (double)dw[r * C + c] * x[tk * C + c];
                    mag += fabs((double)dw[r * C + c] * x[tk * C + c]);
                }
                if (fabs(got - ref) > rel * mag) {
                    print_error("%s t=%d r=%d: %g vs naive %g (mag %g)\n", tname(t), tk, r,
                                (double)got, ref, mag);
                    fail();
                }
            }
        }
        free(scratch);
    }
    free(w);
    free(dw);
    free(x);
    free(y);
    free(qw);
    free(qx);
}

static void test_traits_table(void **state) {
    (void)state;
    for (size_t ti = 0; ti < N_WTYPES; ti++) {
        const struct kern_traits *tr = kern_get_traits_ref(k_weight_types[ti]);
        assert_non_null(tr);
        assert_non_null(tr->to_float);
        assert_non_null(tr->from_float);
        assert_non_null(tr->vec_dot);
        assert_non_null(kern_get_traits(k_weight_types[ti]));
    }
    static const struct {
        uint32_t w, v;
    } vdt[] = {{ICA_F32, ICA_F32},     {ICA_F16, ICA_F16},   {ICA_BF16, ICA_BF16},
               {ICA_Q4_0, ICA_Q8_0},   {ICA_Q5_0, ICA_Q8_0}, {ICA_Q8_0, ICA_Q8_0},
               {ICA_IQ4_NL, ICA_Q8_0}, {ICA_Q4_1, ICA_Q8_1}, {ICA_Q5_1, ICA_Q8_1},
               {ICA_Q2_K, ICA_Q8_K},   {ICA_Q3_K, ICA_Q8_K}, {ICA_Q4_K, ICA_Q8_K},
               {ICA_Q5_K, ICA_Q8_K},   {ICA_Q6_K, ICA_Q8_K}, {ICA_IQ4_XS, ICA_Q8_K}};
    for (size_t i = 0; i < sizeof vdt / sizeof vdt[0]; i++)
        assert_int_equal(kern_get_traits_ref(vdt[i].w)->vec_dot_type, vdt[i].v);
    assert_non_null(kern_get_traits_ref(ICA_Q8_1));
    assert_null(kern_get_traits_ref(ICA_Q8_1)->vec_dot);
    assert_non_null(kern_get_traits_ref(ICA_Q8_K));
    assert_null(kern_get_traits_ref(ICA_I32));
    assert_null(kern_get_traits_ref(4)); /* removed ggml type id */
    assert_null(kern_get_traits_ref(1000));
    assert_null(kern_get_traits(1000));
}

/* llama.cpp multiplies several tokens with llamafile sgemm (one 16-lane
 * accumulator per output) but one token with ggml_vec_dot_f32 (4 x 16
 * lanes); kern_matmul_ref must follow. x = 1e8, 1, -1e8 on elements 0, 16,
 * 32 of lane 0: sgemm absorbs the 1 (result 0), vec_dot keeps it (1). */
static void test_matmul_sgemm_order(void **state) {
    (void)state;
    enum { R = 4, C = 64, T = 2 };
    float w[R * C], x[T * C], y[T * R];
    for (int i = 0; i < R * C; i++)
        w[i] = 1.0f;
    memset(x, 0, sizeof x);
    for (int t = 0; t < T; t++) {
        x[t * C + 0] = 1e8f;
        x[t * C + 16] = 1.0f;
        x[t * C + 32] = -1e8f;
    }
    kern_matmul_ref(ICA_F32, w, R, C, x, T, y, NULL);
    for (int i = 0; i < T * R; i++)
        assert_true(y[i] == 0.0f);
    kern_matmul_ref(ICA_F32, w, R, C, x, 1, y, NULL);
    for (int i = 0; i < R; i++)
        assert_true(y[i] == 1.0f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_roundtrip_all),
        cmocka_unit_test(test_f16_rounding),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_traits_table),
        cmocka_unit_test(test_dequant_hand_blocks),
        cmocka_unit_test(test_quant_roundtrip),
        cmocka_unit_test(test_vec_dot_consistency),
        cmocka_unit_test(test_vec_dot_single_element),
        cmocka_unit_test(test_q8_0_x86_rounding),
        cmocka_unit_test(test_q8_1_sum),
        cmocka_unit_test(test_q8_K),
        cmocka_unit_test(test_f16_bf16_activation),
        cmocka_unit_test(test_plain_dots),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_matmul_sgemm_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
