/* Helpers shared by the kv unit tests: every position's K/V is a pure
 * function of the token prefix up to it, as in a real model (kv.h invariant
 * 1), so any mix-up between sequences or blocks shows as a wrong value. */
#ifndef ICALIGN_KV_TESTUTIL_H
#define ICALIGN_KV_TESTUTIL_H

#include "icalign/kv.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static inline uint64_t kvt_prefix_hash(const int32_t *tok, size_t pos) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i <= pos; i++) {
        h ^= (uint32_t)tok[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* Element e of the K (kind 0) or V (kind 1) row of a layer. */
static inline uint32_t kvt_val(uint64_t h, int layer, int kind, size_t e) {
    uint64_t x = h ^ ((uint64_t)layer * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)kind << 40) ^ e;
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 32;
    return (uint32_t)x;
}

static inline size_t kvt_esz(const struct kv_config *c) {
    return c->elem_type == ICA_F16 ? 2 : 4;
}

static inline void kvt_put(void *row, size_t e, size_t esz, uint32_t v) {
    if (esz == 2) {
        uint16_t x = (uint16_t)v;
        memcpy((uint8_t *)row + 2 * e, &x, 2);
    } else {
        /* Any 32-bit pattern round-trips through memcpy, NaNs included. */
        memcpy((uint8_t *)row + 4 * e, &v, 4);
    }
}

static inline uint32_t kvt_get(const void *row, size_t e, size_t esz) {
    if (esz == 2) {
        uint16_t x;
        memcpy(&x, (const uint8_t *)row + 2 * e, 2);
        return x;
    }
    uint32_t v;
    memcpy(&v, (const uint8_t *)row + 4 * e, 4);
    return v;
}

static inline uint32_t kvt_expect(uint64_t h, int layer, int kind, size_t e, size_t esz) {
    uint32_t v = kvt_val(h, layer, kind, e);
    return esz == 2 ? (uint16_t)v : v;
}

/* Writes K and V of positions [from, to) of s for the ids tok. */
static inline void kvt_write(struct kv_seq *s, const struct kv_config *c, const int32_t *tok,
                             size_t from, size_t to) {
    size_t esz = kvt_esz(c);
    size_t kd = (size_t)c->n_head_kv * (size_t)c->head_dim;
    size_t vd = (size_t)c->n_head_kv * (size_t)c->head_dim_v;
    for (size_t p = from; p < to; p++) {
        uint64_t h = kvt_prefix_hash(tok, p);
        for (int l = 0; l < c->n_layer; l++) {
            void *k = kv_seq_k(s, l, p), *v = kv_seq_v(s, l, p);
            for (size_t e = 0; e < kd; e++)
                kvt_put(k, e, esz, kvt_val(h, l, 0, e));
            for (size_t e = 0; e < vd; e++)
                kvt_put(v, e, esz, kvt_val(h, l, 1, e));
        }
    }
}

/* First position in [from, to) whose K or V differs from the ids tok, or to. */
static inline size_t kvt_check(struct kv_seq *s, const struct kv_config *c, const int32_t *tok,
                               size_t from, size_t to) {
    size_t esz = kvt_esz(c);
    size_t kd = (size_t)c->n_head_kv * (size_t)c->head_dim;
    size_t vd = (size_t)c->n_head_kv * (size_t)c->head_dim_v;
    for (size_t p = from; p < to; p++) {
        uint64_t h = kvt_prefix_hash(tok, p);
        for (int l = 0; l < c->n_layer; l++) {
            const void *k = kv_seq_k(s, l, p), *v = kv_seq_v(s, l, p);
            if (!k || !v)
                return p;
            for (size_t e = 0; e < kd; e++)
                if (kvt_get(k, e, esz) != kvt_expect(h, l, 0, e, esz))
                    return p;
            for (size_t e = 0; e < vd; e++)
                if (kvt_get(v, e, esz) != kvt_expect(h, l, 1, e, esz))
                    return p;
        }
    }
    return to;
}

static inline struct kv_config kvt_config(int block_tokens, enum ica_dtype t, size_t blocks) {
    struct kv_config c = kv_default_config();
    c.n_layer = 2;
    c.n_head_kv = 2;
    c.head_dim = 4;
    c.head_dim_v = 3;
    c.block_tokens = block_tokens;
    c.elem_type = t;
    c.mem_budget = blocks * kv_block_bytes(&c);
    return c;
}

#endif
