/* fp16 / bf16 <-> f32 scalar conversions, bit-level (no _Float16).
 *
 * f32 -> f16 rounds to nearest even like x86 F16C (vcvtps2ph with
 * _MM_FROUND_TO_NEAREST_INT), which is what llama.cpp's CPU backend uses for
 * F16 activations, and like ggml's portable GGML_FP32_TO_FP16 for every
 * non-NaN input. Overflow gives +-inf; NaN stays NaN, quiet, keeping the top
 * payload bits (F16C behaviour; ggml's portable path gives 0x7e00).
 *
 * f32 -> bf16 is GGML_FP32_TO_BF16: round to nearest even on the top 16 bits;
 * NaN is truncated and forced quiet (| 0x40). */
#include "kern_impl.h"

float kern_f16_to_f32(uint16_t h) {
    return kern_h2f(h);
}

uint16_t kern_f32_to_f16(float f) {
    uint32_t x = kern_f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) /* NaN */
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    uint32_t e = ax >> 23;
    if (e > 142) /* >= 2^16, or inf */
        return (uint16_t)(sign | 0x7c00u);
    if (e >= 113) { /* normal half (before rounding) */
        uint32_t h = ((e - 112u) << 10) | ((ax >> 13) & 0x3ffu);
        uint32_t rem = ax & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
            h++; /* a carry into the exponent is correct, up to inf */
        return (uint16_t)(sign | h);
    }
    /* subnormal half: value = mant * 2^(e-150) = (mant >> (126-e)) units of 2^-24 */
    if (e < 102) /* < 2^-25: rounds to zero (2^-25 itself is a tie to 0, e=102 handled below) */
        return sign;
    uint32_t mant = (ax & 0x7fffffu) | (e ? 0x800000u : 0u);
    uint32_t shift = 126u - e; /* 14..24 */
    uint32_t q = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u)))
        q++; /* may become 0x400, the smallest normal: still the right encoding */
    return (uint16_t)(sign | q);
}

float kern_bf16_to_f32(uint16_t h) {
    return kern_bits_f32((uint32_t)h << 16);
}

uint16_t kern_f32_to_bf16(float f) {
    uint32_t u = kern_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 64u);
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}
