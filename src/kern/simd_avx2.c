/* AVX2 + FMA + F16C kernels (bodies in simd_x86.h). */
#if defined(__x86_64__) || defined(__i386__)
#define TGT      __attribute__((target("avx2,fma,f16c")))
#define SFX(n)   n##_avx2
#define X86_VNNI 0
#define X86_512  0
#include "simd_x86.h"

void kern_fill_avx2(struct kern_ops *ops) {
    fill_avx2(ops);
}
#else
typedef int kern_simd_avx2_unused;
#endif
