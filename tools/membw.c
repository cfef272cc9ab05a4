/* Memory read bandwidth for docs/PERFORMANCE.md's roofline (a tool, not part
 * of the build): each of T threads sums its share of a 2 GiB buffer with AVX2
 * loads, 5 passes, best pass reported.
 *   cc -O2 -mavx2 -pthread tools/membw.c -o membw && ./membw 1 && ./membw 2 */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static char *buf;
static size_t N = (size_t)2 << 30;
static int T;
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}
static pthread_barrier_t bar;
static volatile long long sink;
static void *run(void *a) {
    long id = (long)a;
    size_t per = N / T;
    const char *p = buf + per * id;
    __m256i acc = _mm256_setzero_si256();
    for (int pass = 0; pass < 5; pass++) {
        pthread_barrier_wait(&bar);
        for (size_t i = 0; i < per; i += 128) {
            acc = _mm256_add_epi64(acc, _mm256_load_si256((const __m256i *)(p + i)));
            acc = _mm256_add_epi64(acc, _mm256_load_si256((const __m256i *)(p + i + 32)));
            acc = _mm256_add_epi64(acc, _mm256_load_si256((const __m256i *)(p + i + 64)));
            acc = _mm256_add_epi64(acc, _mm256_load_si256((const __m256i *)(p + i + 96)));
        }
        pthread_barrier_wait(&bar);
    }
    long long o[4];
    memcpy(o, &acc, 32);
    sink += o[0] + o[1] + o[2] + o[3];
    return NULL;
}
int main(int c, char **v) {
    T = c > 1 ? atoi(v[1]) : 1;
    buf = aligned_alloc(64, N);
    memset(buf, 1, N);
    pthread_barrier_init(&bar, NULL, T + 1);
    pthread_t th[8];
    for (long i = 0; i < T; i++)
        pthread_create(&th[i], NULL, run, (void *)i);
    double best = 1e9;
    for (int pass = 0; pass < 5; pass++) {
        pthread_barrier_wait(&bar);
        double t0 = now();
        pthread_barrier_wait(&bar);
        double dt = now() - t0;
        if (dt < best)
            best = dt;
    }
    for (int i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    printf("threads %d: %.1f GB/s (%.0f MiB/s), best of 5 passes over 2 GiB\n", T, N / best / 1e9,
           N / best / 1048576.0);
    return 0;
}
