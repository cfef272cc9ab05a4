/* A small thread pool for data-parallel loops: every call runs one function
 * on all threads (the caller is thread 0) and returns when all are done.
 * Workers spin briefly between tasks (a forward pass issues many short ones)
 * and then sleep on a condition variable, so an idle pool costs no CPU. */
#ifndef ICALIGN_POOL_H
#define ICALIGN_POOL_H

#include "icalign/common.h"

typedef void (*pool_task_fn)(void *ctx, int ith, int nth);

struct pool;

/* n_threads <= 0: one per online CPU. NULL on failure (err says why). */
ICA_API struct pool *pool_new(int n_threads, struct ica_error *err);
/* Joins the workers. NULL-safe. */
ICA_API void pool_free(struct pool *p);
ICA_API int pool_size(const struct pool *p);
/* Runs fn(ctx, ith, nth) for ith = 0..nth-1, ith 0 on the calling thread.
 * Not reentrant: one run at a time per pool. p may be NULL (runs fn(ctx, 0, 1)). */
ICA_API void pool_run(struct pool *p, pool_task_fn fn, void *ctx);
/* Default thread count: the number of online CPUs. */
ICA_API int pool_default_threads(void);

#endif
