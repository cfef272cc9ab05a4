/* Helpers shared by the single-sequence generator and the scheduler. */
#include "engine_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double eng_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Bytes at the end of text[0..len) that could still begin a stop string:
 * they are held back from streaming until the next token decides. */
size_t eng_held_back(const char *text, size_t len, const char *const *stop, uint32_t n_stop) {
    size_t hold = 0;
    for (uint32_t s = 0; s < n_stop; s++) {
        const size_t sl = strlen(stop[s]);
        for (size_t k = sl > 1 ? sl - 1 : 0; k > hold; k--)
            if (k <= len && memcmp(text + len - k, stop[s], k) == 0) {
                hold = k;
                break;
            }
    }
    return hold;
}

/* First occurrence of any stop string starting at or after `from`. */
const char *eng_find_stop(const char *text, size_t len, size_t from, const char *const *stop,
                          uint32_t n_stop) {
    const char *best = NULL;
    for (uint32_t s = 0; s < n_stop; s++) {
        const size_t sl = strlen(stop[s]);
        if (sl == 0 || sl > len)
            continue;
        for (size_t i = from; i + sl <= len; i++)
            if (text[i] == stop[s][0] && memcmp(text + i, stop[s], sl) == 0) {
                if (!best || text + i < best)
                    best = text + i;
                break;
            }
    }
    return best;
}

int eng_append(char **buf, size_t *len, size_t *cap, const char *p, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap * 2 : 256;
        while (nc < *len + n + 1)
            nc *= 2;
        char *t = realloc(*buf, nc);
        if (!t)
            return ICA_ERR_NOMEM;
        *buf = t;
        *cap = nc;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = '\0';
    return ICA_OK;
}

/* The k most likely ids of the raw distribution with their log-probabilities
 * (log-softmax in double; ties to the lower id). */
int eng_top_logprobs(struct gen_result *res, const float *logits, uint32_t V, uint32_t k,
                     struct ica_error *err) {
    if (k > V)
        k = V;
    res->top_ids = malloc(k * sizeof *res->top_ids);
    res->top_logprobs = malloc(k * sizeof *res->top_logprobs);
    if (!res->top_ids || !res->top_logprobs)
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
    float mx = logits[0];
    for (uint32_t i = 1; i < V; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (uint32_t i = 0; i < V; i++)
        sum += exp((double)logits[i] - mx);
    const double lse = (double)mx + log(sum);
    for (uint32_t j = 0; j < k; j++) {
        int32_t best = -1;
        for (uint32_t i = 0; i < V; i++) {
            bool taken = false;
            for (uint32_t t = 0; t < j && !taken; t++)
                taken = res->top_ids[t] == (int32_t)i;
            if (!taken && (best < 0 || logits[i] > logits[best]))
                best = (int32_t)i;
        }
        res->top_ids[j] = best;
        res->top_logprobs[j] = (float)((double)logits[best] - lse);
    }
    res->n_top = k;
    return ICA_OK;
}
