#include "icalign/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

/* Spins before sleeping: long enough to bridge the gap between the matrix
 * products of one layer, short enough not to burn a core when idle. */
#define SPIN_ITERS 4000

enum { SLOT_FREE, SLOT_RUN, SLOT_DONE, SLOT_TAKEN };

struct pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Each run bumps the generation; workers run the task once per bump. */
    _Alignas(64) atomic_uint gen;
    /* Per worker, per run: SLOT_FREE until the worker claims its share
     * (SLOT_RUN, then SLOT_DONE) or the caller, done with its own share,
     * takes it over (SLOT_TAKEN). A worker the OS has not scheduled yet thus
     * never holds up a run on a busy machine. */
    atomic_int *slot;
    _Alignas(64) atomic_int sleepers;
    pool_task_fn fn;
    void *ctx;
    atomic_bool stop;
};

struct worker_arg {
    struct pool *p;
    int ith;
};

static void *worker(void *arg) {
    struct worker_arg *wa = arg;
    struct pool *p = wa->p;
    const int ith = wa->ith;
    free(wa);
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen &&
               !atomic_load(&p->stop)) {
            if (++spins < SPIN_ITERS) {
                CPU_RELAX();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop))
            return NULL;
        seen = g;
        int expect = SLOT_FREE;
        if (atomic_compare_exchange_strong(&p->slot[ith], &expect, SLOT_RUN)) {
            p->fn(p->ctx, ith, p->n);
            atomic_store_explicit(&p->slot[ith], SLOT_DONE, memory_order_release);
        }
    }
}

int pool_default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 1024 ? (int)n : 1;
}

struct pool *pool_new(int n_threads, struct ica_error *err) {
    if (n_threads <= 0)
        n_threads = pool_default_threads();
    struct pool *p = calloc(1, sizeof *p);
    if (!p) {
        ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
        return NULL;
    }
    p->n = n_threads;
    atomic_init(&p->gen, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->stop, false);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    p->slot = calloc((size_t)n_threads, sizeof *p->slot);
    if (!p->threads || !p->slot) {
        pool_free(p);
        ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *wa = malloc(sizeof *wa);
        if (wa) {
            wa->p = p;
            wa->ith = i;
        }
        if (!wa || pthread_create(&p->threads[i], NULL, worker, wa) != 0) {
            free(wa);
            p->n = i; /* join what was started */
            pool_free(p);
            ica_seterr(err, ICA_ERR_NOMEM, "cannot start thread %d of %d", i, n_threads);
            return NULL;
        }
    }
    return p;
}

void pool_free(struct pool *p) {
    if (!p)
        return;
    if (p->threads) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->stop, true);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        for (int i = 1; i < p->n; i++)
            pthread_join(p->threads[i], NULL);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p->slot);
    free(p);
}

int pool_size(const struct pool *p) {
    return p ? p->n : 1;
}

void pool_run(struct pool *p, pool_task_fn fn, void *ctx) {
    if (!p || p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    for (int i = 1; i < p->n; i++)
        atomic_store_explicit(&p->slot[i], SLOT_FREE, memory_order_release);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: ordered before the sleepers load */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(ctx, 0, p->n);
    /* shares no worker has claimed yet are done here */
    for (int i = 1; i < p->n; i++) {
        int expect = SLOT_FREE;
        if (atomic_compare_exchange_strong(&p->slot[i], &expect, SLOT_TAKEN))
            fn(ctx, i, p->n);
    }
    /* wait for the shares workers are running (yield on oversubscribed machines) */
    for (int i = 1; i < p->n; i++)
        for (int spins = 0; atomic_load_explicit(&p->slot[i], memory_order_acquire) == SLOT_RUN;
             spins++) {
            if (spins < SPIN_ITERS)
                CPU_RELAX();
            else
                sched_yield();
        }
}
