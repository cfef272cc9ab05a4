/* Products with an explicit summation order (see enum kern_order). */
#include "icalign/kern.h"

void kern_matmul_ex(struct pool *pool, uint32_t wtype, const void *w, int64_t n_rows,
                    int64_t n_cols, const float *x, int64_t n_tok, float *y, void *scratch,
                    enum kern_order order) {
    if (order == KERN_ORDER_AUTO || !kern_matmul_orders_differ(wtype, n_rows, n_cols) ||
        (order == KERN_ORDER_SINGLE && n_tok == 1) || (order == KERN_ORDER_BATCH && n_tok >= 2)) {
        kern_matmul(pool, wtype, w, n_rows, n_cols, x, n_tok, y, scratch);
        return;
    }
    if (order == KERN_ORDER_SINGLE) {
        /* one token at a time: each a vector product (y is token-major) */
        for (int64_t t = 0; t < n_tok; t++)
            kern_matmul(pool, wtype, w, n_rows, n_cols, x + t * n_cols, 1, y + t * n_rows, scratch);
        return;
    }
    /* BATCH order for a single token: rare (a one-token prompt chunk) */
    kern_matmul_ref_ex(wtype, w, n_rows, n_cols, x, n_tok, y, scratch, order);
}
