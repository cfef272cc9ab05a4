/* The forward pass's matrix product. For now the reference kernels on the
 * calling thread; the SIMD and threaded versions replace this body. */
#include "icalign/kern.h"
#include "icalign/pool.h"

void kern_matmul(struct pool *pool, uint32_t wtype, const void *w, int64_t n_rows, int64_t n_cols,
                 const float *x, int64_t n_tok, float *y, void *scratch) {
    (void)pool;
    kern_matmul_ref(wtype, w, n_rows, n_cols, x, n_tok, y, scratch);
}
