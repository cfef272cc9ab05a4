/* Thread pool: every thread runs each task exactly once, results are
 * complete when pool_run returns, across the spin and the sleep paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "icalign/pool.h"

#include <stdatomic.h>
#include <string.h>
#include <time.h>

struct task {
    int hits[16];
    int nth_seen;
    long *data;
    long n;
    long partial[16];
};

static void count(void *ctx, int ith, int nth) {
    struct task *t = ctx;
    t->hits[ith]++;
    t->nth_seen = nth;
    long s = 0;
    for (long i = ith; i < t->n; i += nth)
        s += t->data[i];
    t->partial[ith] = s;
}

static void run_many(int threads, int runs, int sleep_us) {
    struct ica_error err = {0};
    struct pool *p = pool_new(threads, &err);
    assert_non_null(p);
    assert_int_equal(pool_size(p), threads);
    long data[1000];
    for (long i = 0; i < 1000; i++)
        data[i] = i;
    struct task t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.n = 1000;
    for (int r = 0; r < runs; r++) {
        memset(t.partial, 0, sizeof t.partial);
        pool_run(p, count, &t);
        long s = 0;
        for (int i = 0; i < threads; i++)
            s += t.partial[i];
        assert_int_equal(s, 999 * 1000 / 2);
        if (sleep_us) {
            struct timespec ts = {0, sleep_us * 1000L};
            nanosleep(&ts, NULL);
        }
    }
    for (int i = 0; i < threads; i++)
        assert_int_equal(t.hits[i], runs);
    assert_int_equal(t.nth_seen, threads);
    pool_free(p);
}

static void test_spin(void **state) {
    (void)state;
    run_many(1, 100, 0);
    run_many(2, 3000, 0);
    run_many(4, 300, 0); /* more threads than cores */
}

static void test_sleep(void **state) {
    (void)state;
    run_many(3, 30, 20000); /* 20 ms apart: workers fall asleep between runs */
}

static void test_null_pool(void **state) {
    (void)state;
    struct task t;
    memset(&t, 0, sizeof t);
    long d[3] = {1, 2, 3};
    t.data = d;
    t.n = 3;
    pool_run(NULL, count, &t);
    assert_int_equal(t.partial[0], 6);
    assert_int_equal(t.nth_seen, 1);
    pool_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spin),
        cmocka_unit_test(test_sleep),
        cmocka_unit_test(test_null_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
