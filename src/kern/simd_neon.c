/* aarch64 NEON kernels: the Q8_0 activation quantizer, the Q8_0 dot and
 * the F32 dot, each with its reference's lanes and reduction tree (see
 * simd_x86.h). Other types keep the reference kernels at this level.
 * Built only for aarch64 (make test-neon cross-compiles and runs the kernel
 * tests under qemu-user). */
#if defined(__aarch64__)
#include "kern_impl.h"
#include "simd.h"

#include <arm_neon.h>
#include <math.h>

static inline float h2f(uint16_t h) {
    return kern_h2f(h);
}

static void quant_q8_0_neon(const float *x, void *vy, int64_t k) {
    blk_q8_0 *y = vy;
    for (int64_t i = 0; i < k / QK32; i++, x += QK32) {
        float32x4_t v[8];
        float32x4_t m = vdupq_n_f32(0);
        for (int j = 0; j < 8; j++) {
            v[j] = vld1q_f32(x + 4 * j);
            m = vmaxq_f32(m, vabsq_f32(v[j]));
        }
        const float amax = vmaxvq_f32(m);
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[i].d = kern_f32_to_f16(d);
        for (int j = 0; j < 8; j += 2) {
            /* round to nearest, ties to even, like the reference */
            const int32x4_t a = vcvtnq_s32_f32(vmulq_n_f32(v[j], id));
            const int32x4_t b = vcvtnq_s32_f32(vmulq_n_f32(v[j + 1], id));
            const int16x8_t h = vcombine_s16(vqmovn_s32(a), vqmovn_s32(b));
            vst1_s8(y[i].qs + 4 * j, vqmovn_s16(h));
        }
    }
}

/* int32 lanes 0..3 = sums of the products of bytes 4l..4l+3 of a, b (16 bytes). */
static inline int32x4_t dot4x4(int8x16_t a, int8x16_t b) {
    const int32x4_t lo = vpaddlq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    const int32x4_t hi = vpaddlq_s16(vmull_s8(vget_high_s8(a), vget_high_s8(b)));
    return vpaddq_s32(lo, hi);
}

/* hsum_float_8 on lanes lo = 0..3, hi = 4..7. */
static inline float hsum8(float32x4_t lo, float32x4_t hi) {
    const float32x4_t r = vaddq_f32(hi, lo);
    const float32x2_t s = vadd_f32(vget_low_f32(r), vget_high_f32(r));
    return vget_lane_f32(s, 0) + vget_lane_f32(s, 1);
}

static void dot_q8_0_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const blk_q8_0 *x = vx, *y = vy;
    float32x4_t lo = vdupq_n_f32(0), hi = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / QK32; i++) {
        const int32x4_t l0 = dot4x4(vld1q_s8(x[i].qs), vld1q_s8(y[i].qs));
        const int32x4_t l1 = dot4x4(vld1q_s8(x[i].qs + 16), vld1q_s8(y[i].qs + 16));
        const float d = h2f(x[i].d) * h2f(y[i].d);
        lo = vfmaq_n_f32(lo, vcvtq_f32_s32(l0), d);
        hi = vfmaq_n_f32(hi, vcvtq_f32_s32(l1), d);
    }
    *s = hsum8(lo, hi);
}

/* 4 accumulators x 16 lanes (4 x float32x4 each), reduced like ref.c. */
static void dot_f32_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    float32x4_t acc[4][4];
    for (int j = 0; j < 4; j++)
        for (int q = 0; q < 4; q++)
            acc[j][q] = vdupq_n_f32(0);
    const int64_t np = n & ~(int64_t)63;
    for (int64_t i = 0; i < np; i += 64)
        for (int j = 0; j < 4; j++)
            for (int q = 0; q < 4; q++)
                acc[j][q] = vfmaq_f32(acc[j][q], vld1q_f32(x + i + 16 * j + 4 * q),
                                      vld1q_f32(y + i + 16 * j + 4 * q));
    float32x4_t v[4];
    for (int q = 0; q < 4; q++) {
        const float32x4_t a02 = vaddq_f32(acc[0][q], acc[2][q]);
        const float32x4_t a13 = vaddq_f32(acc[1][q], acc[3][q]);
        v[q] = vaddq_f32(a02, a13);
    }
    /* 16 -> 8 (v[i+8] + v[i]) -> 4 -> 2 -> 1 */
    const float32x4_t a0 = vaddq_f32(v[2], v[0]), a1 = vaddq_f32(v[3], v[1]);
    const float32x4_t b = vaddq_f32(a1, a0);
    const float32x2_t c = vadd_f32(vget_low_f32(b), vget_high_f32(b));
    float sumf = vget_lane_f32(c, 0) + vget_lane_f32(c, 1);
    for (int64_t i = np; i < n; i++) { /* unfused, as ref.c */
        const float p = x[i] * y[i];
        sumf = sumf + p;
    }
    *s = sumf;
}

void kern_fill_neon(struct kern_ops *ops) {
    ops[ICA_Q8_0].tr.from_float = quant_q8_0_neon;
    ops[ICA_Q8_0].tr.vec_dot = dot_q8_0_neon;
    ops[ICA_F32].tr.vec_dot = dot_f32_neon;
}
#else
typedef int kern_simd_neon_unused;
#endif
