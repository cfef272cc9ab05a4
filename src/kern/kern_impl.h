/* Private to the kern module: block layouts (ggml-common.h) and small scalar
 * helpers shared by the reference kernels and the weight quantizers. */
#ifndef ICALIGN_KERN_IMPL_H
#define ICALIGN_KERN_IMPL_H

#include "icalign/kern.h"

#include <stdint.h>
#include <string.h>

#define QK32 32
#define QKK  256

/* Halves (fp16) are stored as raw uint16_t bit patterns. */
typedef struct {
    uint16_t d;
    uint8_t qs[QK32 / 2];
} blk_q4_0;
typedef struct {
    uint16_t d, m;
    uint8_t qs[QK32 / 2];
} blk_q4_1;
typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[QK32 / 2];
} blk_q5_0;
typedef struct {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[QK32 / 2];
} blk_q5_1;
typedef struct {
    uint16_t d;
    int8_t qs[QK32];
} blk_q8_0;
typedef struct {
    uint16_t d, s; /* s = d * sum(qs) */
    int8_t qs[QK32];
} blk_q8_1;
typedef struct {
    uint8_t scales[QKK / 16]; /* low nibble scale, high nibble min */
    uint8_t qs[QKK / 4];
    uint16_t d, dmin;
} blk_q2_K;
typedef struct {
    uint8_t hmask[QKK / 8];
    uint8_t qs[QKK / 4];
    uint8_t scales[12]; /* 16 x 6 bits, offset 32 */
    uint16_t d;
} blk_q3_K;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12]; /* 8 scales + 8 mins, 6 bits each */
    uint8_t qs[QKK / 2];
} blk_q4_K;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[QKK / 8];
    uint8_t qs[QKK / 2];
} blk_q5_K;
typedef struct {
    uint8_t ql[QKK / 2];
    uint8_t qh[QKK / 4];
    int8_t scales[QKK / 16];
    uint16_t d;
} blk_q6_K;
typedef struct {
    float d;
    int8_t qs[QKK];
    int16_t bsums[QKK / 16];
} blk_q8_K;
typedef struct {
    uint16_t d;
    uint8_t qs[QK32 / 2];
} blk_iq4_nl;
typedef struct {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[QKK / 64];
    uint8_t qs[QKK / 2];
} blk_iq4_xs;

_Static_assert(sizeof(blk_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(blk_q4_1) == 20, "q4_1 layout");
_Static_assert(sizeof(blk_q5_0) == 22, "q5_0 layout");
_Static_assert(sizeof(blk_q5_1) == 24, "q5_1 layout");
_Static_assert(sizeof(blk_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(blk_q8_1) == 36, "q8_1 layout");
_Static_assert(sizeof(blk_q2_K) == 84, "q2_K layout");
_Static_assert(sizeof(blk_q3_K) == 110, "q3_K layout");
_Static_assert(sizeof(blk_q4_K) == 144, "q4_K layout");
_Static_assert(sizeof(blk_q5_K) == 176, "q5_K layout");
_Static_assert(sizeof(blk_q6_K) == 210, "q6_K layout");
_Static_assert(sizeof(blk_q8_K) == 292, "q8_K layout");
_Static_assert(sizeof(blk_iq4_nl) == 18, "iq4_nl layout");
_Static_assert(sizeof(blk_iq4_xs) == 136, "iq4_xs layout");

/* The IQ4_NL / IQ4_XS non-linear code book (format data from ggml-common.h). */
extern const int8_t kern_iq4nl_values[16];

/* Weight quantizers (quant_ref.c). */
void kern_quantize_q4_0(const float *x, void *y, int64_t k);
void kern_quantize_q4_1(const float *x, void *y, int64_t k);
void kern_quantize_q5_0(const float *x, void *y, int64_t k);
void kern_quantize_q5_1(const float *x, void *y, int64_t k);
void kern_quantize_q2_K(const float *x, void *y, int64_t k);
void kern_quantize_q3_K(const float *x, void *y, int64_t k);
void kern_quantize_q4_K(const float *x, void *y, int64_t k);
void kern_quantize_q5_K(const float *x, void *y, int64_t k);
void kern_quantize_q6_K(const float *x, void *y, int64_t k);
void kern_quantize_iq4_nl(const float *x, void *y, int64_t k);
void kern_quantize_iq4_xs(const float *x, void *y, int64_t k);

static inline uint32_t kern_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float kern_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* fp16 bits -> float (exact). */
static inline float kern_h2f(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    if (e == 0) {
        /* zero or subnormal: m * 2^-24, exact in float */
        float v = (float)m * 0x1p-24f;
        return kern_bits_f32(kern_f32_bits(v) | sign);
    }
    if (e == 31)
        return kern_bits_f32(sign | 0x7f800000u | (m << 13));
    return kern_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

/* Round to nearest, ties to even, for |v| <= 4194303 (the trick of ggml's
 * nearest_int: adding 1.5*2^23 leaves the rounded integer in the mantissa). */
static inline int kern_nearest_int(float v) {
    float t = v + 12582912.f;
    uint32_t u = kern_f32_bits(t);
    return (int)(u & 0x007fffffu) - 0x00400000;
}

#endif
