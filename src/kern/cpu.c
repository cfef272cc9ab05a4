/* CPU detection and the kernel tables of each SIMD level.
 *
 * x86-64: cpuid + xgetbv (the OS must save the YMM / ZMM state). The AVX2
 * level needs AVX2, FMA and F16C; the AVX-512 level needs F, BW, DQ, VL and
 * VNNI (BF16 is used for the BF16 dot where present). aarch64: NEON is part
 * of the base ISA. ICALIGN_SIMD=scalar|avx2|avx512|neon lowers the level
 * (a level above the CPU's best is ignored). */
#include "simd.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define KERN_X86 1
#endif

static int g_best = -1;
static int g_cur = -1;
static int g_x86_bf16;
static struct kern_ops g_ops[KERN_LEVEL_COUNT][ICA_DTYPE_COUNT];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

#ifdef KERN_X86
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static int detect_x86(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return KERN_LEVEL_SCALAR;
    const int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave)
        return KERN_LEVEL_SCALAR;
    const uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 6) != 6)
        return KERN_LEVEL_SCALAR;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return KERN_LEVEL_SCALAR;
    const int avx2 = (b >> 5) & 1;
    const int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    const int vnni = (c >> 11) & 1;
    unsigned a1 = 0, b1, c1, d1;
    __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1);
    if (!(avx2 && fma && f16c))
        return KERN_LEVEL_SCALAR;
    if (f && dq && bw && vl && vnni && (xcr0 & 0xe6) == 0xe6) {
        g_x86_bf16 = (a1 >> 5) & 1;
        return KERN_LEVEL_AVX512;
    }
    return KERN_LEVEL_AVX2;
}
#endif

static int detect(void) {
#ifdef KERN_X86
    return detect_x86();
#elif defined(__aarch64__)
    return KERN_LEVEL_NEON;
#else
    return KERN_LEVEL_SCALAR;
#endif
}

static int level_from_env(int best) {
    const char *e = getenv("ICALIGN_SIMD");
    if (!e || !*e)
        return best;
    for (int l = 0; l < KERN_LEVEL_COUNT; l++)
        if (strcmp(e, kern_level_name(l)) == 0) {
            if (l == KERN_LEVEL_SCALAR)
                return l;
            /* neon only on aarch64, x86 levels only up to the best */
            if (best == KERN_LEVEL_NEON)
                return l == KERN_LEVEL_NEON ? l : best;
            return l <= best && l != KERN_LEVEL_NEON ? l : best;
        }
    return best;
}

static void fill_level(int level) {
    struct kern_ops *ops = g_ops[level];
    for (uint32_t t = 0; t < ICA_DTYPE_COUNT; t++) {
        const struct kern_traits *r = kern_get_traits_ref(t);
        if (!r)
            continue;
        ops[t].tr = *r;
        const struct kern_traits *q = kern_get_traits_ref(r->vec_dot_type);
        ops[t].quant = q ? q->from_float : NULL;
    }
    if (level == KERN_LEVEL_AVX2)
        kern_fill_avx2(ops);
    else if (level == KERN_LEVEL_AVX512)
        kern_fill_avx512(ops);
    else if (level == KERN_LEVEL_NEON)
        kern_fill_neon(ops);
    /* the activation quantizer of type t is the from_float of its vec_dot type */
    for (uint32_t t = 0; t < ICA_DTYPE_COUNT; t++)
        if (ops[t].tr.from_float)
            ops[t].quant = ops[ops[t].tr.vec_dot_type].tr.from_float;
}

static void init_once(void) {
    g_best = detect();
    for (int l = 0; l < KERN_LEVEL_COUNT; l++) {
        int ok = l == KERN_LEVEL_SCALAR ||
                 (g_best == KERN_LEVEL_NEON ? l == KERN_LEVEL_NEON
                                            : l <= g_best && l != KERN_LEVEL_NEON);
        if (ok)
            fill_level(l);
    }
    g_cur = level_from_env(g_best);
}

int kern_level_best(void) {
    pthread_once(&g_once, init_once);
    return g_best;
}

int kern_level_current(void) {
    pthread_once(&g_once, init_once);
    return g_cur;
}

int kern_x86_has_bf16(void) {
    /* set by detect() before the tables are filled (called from init_once) */
    return g_x86_bf16;
}

const char *kern_level_name(int level) {
    static const char *const names[KERN_LEVEL_COUNT] = {"scalar", "avx2", "avx512", "neon"};
    return level >= 0 && level < KERN_LEVEL_COUNT ? names[level] : "?";
}

const struct kern_ops *kern_ops_get(int level, uint32_t t) {
    pthread_once(&g_once, init_once);
    if (level < 0 || level >= KERN_LEVEL_COUNT || t >= ICA_DTYPE_COUNT)
        return NULL;
    const struct kern_ops *o = &g_ops[level][t];
    return o->tr.from_float ? o : NULL;
}

const struct kern_traits *kern_get_traits_simd(uint32_t t) {
    const struct kern_ops *o = kern_ops_get(kern_level_current(), t);
    return o ? &o->tr : NULL;
}

#ifndef KERN_X86
void kern_fill_avx2(struct kern_ops *ops) {
    (void)ops;
}
void kern_fill_avx512(struct kern_ops *ops) {
    (void)ops;
}
#endif
#ifndef __aarch64__
void kern_fill_neon(struct kern_ops *ops) {
    (void)ops;
}
#endif
