/* AVX-512 kernels (F/BW/DQ/VL/VNNI; BF16 where the CPU has it): the bodies
 * of simd_x86.h with VPDPBUSD for the byte dots and zmm for BF16. */
#if defined(__x86_64__) || defined(__i386__)
#define TGT                                                                                        \
    __attribute__((                                                                                \
        target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx512bf16")))
#define SFX(n)   n##_avx512
#define X86_VNNI 1
#define X86_512  1
#include "simd_x86.h"

void kern_fill_avx512(struct kern_ops *ops) {
    fill_avx512(ops);
}
#else
typedef int kern_simd_avx512_unused;
#endif
