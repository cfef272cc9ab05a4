/* Weight quantizers (from_float of the weight types), for writing test
 * models. Q4_0/Q4_1/Q5_0/Q5_1 follow ggml's quantize_row_*_ref arithmetic
 * (scale from the signed max or the range, truncating "+ .5" conversion) and
 * IQ4_NL its quantize_row_iq4_nl_ref (code-book search plus one least-squares
 * scale, no weights). The K-quants and IQ4_XS use a simple min/max scheme:
 * per sub-block scale (and min) from the range, super-block scales from the
 * largest sub-block scale, quants rounded against the fp16-rounded scales
 * actually stored. Valid blocks, modest quality; not bit-identical with
 * llama-quantize (which searches scales). */
#include "kern_impl.h"

#include <math.h>
#include <string.h>

static int clampi(int v, int lo, int hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

/* Signed value of largest magnitude (first one on ties), and that magnitude. */
static float signed_absmax(const float *x, int n, float *amax_out) {
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    *amax_out = amax;
    return max;
}

static void minmax(const float *x, int n, float *mn, float *mx) {
    float lo = x[0], hi = x[0];
    for (int j = 1; j < n; j++) {
        lo = x[j] < lo ? x[j] : lo;
        hi = x[j] > hi ? x[j] : hi;
    }
    *mn = lo;
    *mx = hi;
}

/* ------------------------------------------------------------ 32-blocks */

void kern_quantize_q4_0(const float *x, void *vy, int64_t k) {
    blk_q4_0 *y = vy;
    for (int64_t i = 0; i < k / QK32; i++, x += QK32) {
        float amax;
        float max = signed_absmax(x, QK32, &amax);
        float d = max / -8;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = kern_f32_to_f16(d);
        for (int j = 0; j < 16; j++) {
            int q0 = clampi((int)(int8_t)(x[j] * id + 8.5f), 0, 15);
            int q1 = clampi((int)(int8_t)(x[j + 16] * id + 8.5f), 0, 15);
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void kern_quantize_q4_1(const float *x, void *vy, int64_t k) {
    blk_q4_1 *y = vy;
    for (int64_t i = 0; i < k / QK32; i++, x += QK32) {
        float mn, mx;
        minmax(x, QK32, &mn, &mx);
        float d = (mx - mn) / 15;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = kern_f32_to_f16(d);
        y[i].m = kern_f32_to_f16(mn);
        for (int j = 0; j < 16; j++) {
            int q0 = clampi((int)(int8_t)((x[j] - mn) * id + 0.5f), 0, 15);
            int q1 = clampi((int)(int8_t)((x[j + 16] - mn) * id + 0.5f), 0, 15);
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

static void pack_q5(const int *q, uint8_t *qs, uint8_t *qh4) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4));
        qh |= (uint32_t)((q[j] >> 4) & 1) << j;
        qh |= (uint32_t)((q[j + 16] >> 4) & 1) << (j + 16);
    }
    memcpy(qh4, &qh, 4);
}

void kern_quantize_q5_0(const float *x, void *vy, int64_t k) {
    blk_q5_0 *y = vy;
    for (int64_t i = 0; i < k / QK32; i++, x += QK32) {
        float amax;
        float max = signed_absmax(x, QK32, &amax);
        float d = max / -16;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = kern_f32_to_f16(d);
        int q[QK32];
        for (int j = 0; j < QK32; j++)
            q[j] = clampi((int)(int8_t)(x[j] * id + 16.5f), 0, 31);
        pack_q5(q, y[i].qs, y[i].qh);
    }
}

void kern_quantize_q5_1(const float *x, void *vy, int64_t k) {
    blk_q5_1 *y = vy;
    for (int64_t i = 0; i < k / QK32; i++, x += QK32) {
        float mn, mx;
        minmax(x, QK32, &mn, &mx);
        float d = (mx - mn) / 31;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = kern_f32_to_f16(d);
        y[i].m = kern_f32_to_f16(mn);
        int q[QK32];
        for (int j = 0; j < QK32; j++)
            q[j] = clampi((int)(uint8_t)((x[j] - mn) * id + 0.5f), 0, 31);
        pack_q5(q, y[i].qs, y[i].qh);
    }
}

/* Index of the code-book value nearest to v (lower one on ties). */
static int best_index_iq4(float v) {
    const int8_t *val = kern_iq4nl_values;
    if (v <= val[0])
        return 0;
    if (v >= val[15])
        return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (v < val[mid])
            hi = mid;
        else
            lo = mid;
    }
    return v - val[hi - 1] < val[hi] - v ? hi - 1 : hi;
}

/* One 32-value IQ4 block: indices L and the least-squares scale. */
static float iq4_block(const float *x, uint8_t *L) {
    float amax;
    float max = signed_absmax(x, QK32, &amax);
    if (amax < 1e-15f) {
        memset(L, 0, QK32);
        return 0.0f;
    }
    float d = max / kern_iq4nl_values[0];
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < QK32; j++) {
        int l = best_index_iq4(id * x[j]);
        L[j] = (uint8_t)l;
        float q = kern_iq4nl_values[l];
        float w = x[j] * x[j];
        sumqx += w * q * x[j];
        sumq2 += w * q * q;
    }
    return sumq2 > 0 ? sumqx / sumq2 : 0.0f;
}

static void pack_nibbles32(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < 16; j++)
        qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
}

void kern_quantize_iq4_nl(const float *x, void *vy, int64_t k) {
    blk_iq4_nl *y = vy;
    for (int64_t i = 0; i < k / QK32; i++, x += QK32) {
        uint8_t L[QK32];
        float d = iq4_block(x, L);
        y[i].d = kern_f32_to_f16(d);
        pack_nibbles32(L, y[i].qs);
    }
}

void kern_quantize_iq4_xs(const float *x, void *vy, int64_t k) {
    blk_iq4_xs *y = vy;
    for (int64_t i = 0; i < k / QKK; i++, x += QKK) {
        uint8_t L[QK32];
        float scales[8];
        float max_scale = 0, amax_scale = 0;
        for (int ib = 0; ib < 8; ib++) {
            scales[ib] = iq4_block(x + 32 * ib, L);
            if (fabsf(scales[ib]) > amax_scale) {
                amax_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        memset(&y[i], 0, sizeof y[i]);
        y[i].d = kern_f32_to_f16(-max_scale / 32);
        float d = kern_h2f(y[i].d);
        float id = d != 0.0f ? 1 / d : 0.0f;
        for (int ib = 0; ib < 8; ib++) {
            int l = clampi(kern_nearest_int(id * scales[ib]), -32, 31);
            float dl = d * (float)l;
            float idl = dl != 0.0f ? 1 / dl : 0.0f;
            for (int j = 0; j < QK32; j++)
                L[j] = (uint8_t)best_index_iq4(idl * x[32 * ib + j]);
            pack_nibbles32(L, y[i].qs + 16 * ib);
            l += 32;
            y[i].scales_l[ib / 2] |= (uint8_t)((l & 0x0f) << (4 * (ib % 2)));
            y[i].scales_h |= (uint16_t)((l >> 4) << (2 * ib));
        }
    }
}

/* -------------------------------------------------------------- K-quants */

/* Asymmetric sub-blocks (Q2_K, Q4_K, Q5_K): x ~ d*sc*q - dmin*m with
 * q in [0, qmax], sc and m in [0, smax]. Fills q[256], sc[], m[] and the two
 * fp16 super-block scales. */
static void kquant_asym(const float *x, int nsub, int qmax, int smax, int *q, int *sc, int *m,
                        uint16_t *dh, uint16_t *dminh) {
    int len = QKK / nsub;
    float scale[16], minv[16], max_scale = 0, max_min = 0;
    for (int j = 0; j < nsub; j++) {
        float mn, mx;
        minmax(x + j * len, len, &mn, &mx);
        if (mn > 0)
            mn = 0;
        scale[j] = (mx - mn) / (float)qmax;
        minv[j] = -mn;
        max_scale = scale[j] > max_scale ? scale[j] : max_scale;
        max_min = minv[j] > max_min ? minv[j] : max_min;
    }
    *dh = kern_f32_to_f16(max_scale / (float)smax);
    *dminh = kern_f32_to_f16(max_min / (float)smax);
    float d = kern_h2f(*dh), dmin = kern_h2f(*dminh);
    for (int j = 0; j < nsub; j++) {
        sc[j] = d > 0 ? clampi(kern_nearest_int(scale[j] / d), 0, smax) : 0;
        m[j] = dmin > 0 ? clampi(kern_nearest_int(minv[j] / dmin), 0, smax) : 0;
        float dl = d * (float)sc[j], ml = dmin * (float)m[j];
        for (int l = 0; l < len; l++) {
            float v = x[j * len + l];
            q[j * len + l] = dl > 0 ? clampi(kern_nearest_int((v + ml) / dl), 0, qmax) : 0;
        }
    }
}

/* Symmetric sub-blocks (Q3_K, Q6_K): x ~ d*sc*q, q in [qmin, -qmin-1],
 * sc in [smin, -smin-1]. */
static void kquant_sym(const float *x, int nsub, int qmin, int smin, int *q, int *sc,
                       uint16_t *dh) {
    int len = QKK / nsub;
    float scale[16], amax_scale = 0;
    for (int j = 0; j < nsub; j++) {
        float amax;
        float max = signed_absmax(x + j * len, len, &amax);
        scale[j] = max / (float)qmin;
        amax_scale = fabsf(scale[j]) > amax_scale ? fabsf(scale[j]) : amax_scale;
    }
    *dh = kern_f32_to_f16(amax_scale / (float)(-smin - 1));
    float d = kern_h2f(*dh);
    for (int j = 0; j < nsub; j++) {
        sc[j] = d > 0 ? clampi(kern_nearest_int(scale[j] / d), smin, -smin - 1) : 0;
        float dl = d * (float)sc[j];
        for (int l = 0; l < len; l++) {
            float v = x[j * len + l];
            q[j * len + l] = dl != 0 ? clampi(kern_nearest_int(v / dl), qmin, -qmin - 1) : 0;
        }
    }
}

void kern_quantize_q2_K(const float *x, void *vy, int64_t k) {
    blk_q2_K *y = vy;
    for (int64_t i = 0; i < k / QKK; i++, x += QKK) {
        int q[QKK], sc[16], m[16];
        kquant_asym(x, 16, 3, 15, q, sc, m, &y[i].d, &y[i].dmin);
        memset(y[i].qs, 0, sizeof y[i].qs);
        for (int j = 0; j < 16; j++)
            y[i].scales[j] = (uint8_t)(sc[j] | (m[j] << 4));
        for (int e = 0; e < QKK; e++) {
            int n = e / 128, r = e % 128;
            y[i].qs[32 * n + r % 32] |= (uint8_t)(q[e] << (2 * (r / 32)));
        }
    }
}

void kern_quantize_q3_K(const float *x, void *vy, int64_t k) {
    blk_q3_K *y = vy;
    for (int64_t i = 0; i < k / QKK; i++, x += QKK) {
        int q[QKK], sc[16];
        kquant_sym(x, 16, -4, -32, q, sc, &y[i].d);
        memset(y[i].qs, 0, sizeof y[i].qs);
        memset(y[i].hmask, 0, sizeof y[i].hmask);
        memset(y[i].scales, 0, sizeof y[i].scales);
        for (int e = 0; e < QKK; e++) {
            int n = e / 128, r = e % 128, j = r / 32, l = r % 32;
            int u = q[e] + 4;
            y[i].qs[32 * n + l] |= (uint8_t)((u & 3) << (2 * j));
            if (u & 4)
                y[i].hmask[l] |= (uint8_t)(1u << (4 * n + j));
        }
        for (int j = 0; j < 16; j++) {
            int v = sc[j] + 32;
            if (j < 8)
                y[i].scales[j] |= (uint8_t)(v & 0x0f);
            else
                y[i].scales[j - 8] |= (uint8_t)((v & 0x0f) << 4);
            y[i].scales[8 + j % 4] |= (uint8_t)((v >> 4) << (2 * (j / 4)));
        }
    }
}

static void pack_k4_scales(const int *sc, const int *m, uint8_t *s) {
    memset(s, 0, 12);
    for (int j = 0; j < 4; j++) {
        s[j] |= (uint8_t)(sc[j] & 63);
        s[j + 4] |= (uint8_t)(m[j] & 63);
    }
    for (int j = 4; j < 8; j++) {
        s[j + 4] = (uint8_t)((sc[j] & 0x0f) | ((m[j] & 0x0f) << 4));
        s[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
        s[j] |= (uint8_t)((m[j] >> 4) << 6);
    }
}

void kern_quantize_q4_K(const float *x, void *vy, int64_t k) {
    blk_q4_K *y = vy;
    for (int64_t i = 0; i < k / QKK; i++, x += QKK) {
        int q[QKK], sc[8], m[8];
        kquant_asym(x, 8, 15, 63, q, sc, m, &y[i].d, &y[i].dmin);
        pack_k4_scales(sc, m, y[i].scales);
        memset(y[i].qs, 0, sizeof y[i].qs);
        for (int e = 0; e < QKK; e++) {
            int c = e / 64, r = e % 64;
            y[i].qs[32 * c + r % 32] |= (uint8_t)(q[e] << (r < 32 ? 0 : 4));
        }
    }
}

void kern_quantize_q5_K(const float *x, void *vy, int64_t k) {
    blk_q5_K *y = vy;
    for (int64_t i = 0; i < k / QKK; i++, x += QKK) {
        int q[QKK], sc[8], m[8];
        kquant_asym(x, 8, 31, 63, q, sc, m, &y[i].d, &y[i].dmin);
        pack_k4_scales(sc, m, y[i].scales);
        memset(y[i].qs, 0, sizeof y[i].qs);
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int e = 0; e < QKK; e++) {
            int c = e / 64, r = e % 64;
            y[i].qs[32 * c + r % 32] |= (uint8_t)((q[e] & 0x0f) << (r < 32 ? 0 : 4));
            y[i].qh[e % 32] |= (uint8_t)((q[e] >> 4) << (e / 32));
        }
    }
}

void kern_quantize_q6_K(const float *x, void *vy, int64_t k) {
    blk_q6_K *y = vy;
    for (int64_t i = 0; i < k / QKK; i++, x += QKK) {
        int q[QKK], sc[16];
        kquant_sym(x, 16, -32, -128, q, sc, &y[i].d);
        memset(y[i].ql, 0, sizeof y[i].ql);
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int j = 0; j < 16; j++)
            y[i].scales[j] = (int8_t)sc[j];
        for (int e = 0; e < QKK; e++) {
            int n = e / 128, r = e % 128, kk = r / 32, l = r % 32;
            int u = q[e] + 32;
            y[i].ql[64 * n + l + 32 * (kk & 1)] |= (uint8_t)((u & 0x0f) << (kk < 2 ? 0 : 4));
            y[i].qh[32 * n + l] |= (uint8_t)((u >> 4) << (2 * kk));
        }
    }
}
