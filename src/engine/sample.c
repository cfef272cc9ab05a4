#include "icalign/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct sampler {
    struct sampler_params p;
    uint32_t n_vocab;
    uint8_t *in_prompt;  /* [n_vocab] token seen in the prompt */
    uint32_t *out_count; /* [n_vocab] times generated */
    uint32_t *touched;   /* ids with a nonzero mark, to apply penalties sparsely */
    uint32_t n_touched;
    uint64_t rng;
    /* candidate scratch */
    uint32_t *idx;
    float *prob;
};

struct sampler_params sampler_default_params(void) {
    struct sampler_params p = {0.0f, 0, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f, 0};
    return p;
}

struct sampler *sampler_new(const struct sampler_params *p, uint32_t n_vocab,
                            struct ica_error *err) {
    if (n_vocab == 0 || !(p->repetition_penalty > 0.0f) || isnan(p->temperature) ||
        isnan(p->top_p) || isnan(p->min_p) || isnan(p->frequency_penalty) ||
        isnan(p->presence_penalty)) {
        ica_seterr(err, ICA_ERR_ARG,
                   "invalid sampling parameters (repetition penalty must be > 0)");
        return NULL;
    }
    struct sampler *s = calloc(1, sizeof *s);
    if (!s) {
        ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
        return NULL;
    }
    s->p = *p;
    s->n_vocab = n_vocab;
    s->in_prompt = calloc(n_vocab, 1);
    s->out_count = calloc(n_vocab, sizeof *s->out_count);
    s->touched = calloc(n_vocab, sizeof *s->touched);
    s->idx = malloc(n_vocab * sizeof *s->idx);
    s->prob = malloc(n_vocab * sizeof *s->prob);
    if (!s->in_prompt || !s->out_count || !s->touched || !s->idx || !s->prob) {
        sampler_free(s);
        ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
        return NULL;
    }
    sampler_reset(s);
    return s;
}

void sampler_free(struct sampler *s) {
    if (!s)
        return;
    free(s->in_prompt);
    free(s->out_count);
    free(s->touched);
    free(s->idx);
    free(s->prob);
    free(s);
}

void sampler_reset(struct sampler *s) {
    for (uint32_t i = 0; i < s->n_touched; i++) {
        s->in_prompt[s->touched[i]] = 0;
        s->out_count[s->touched[i]] = 0;
    }
    s->n_touched = 0;
    /* splitmix64 of the seed: distinct seeds give unrelated streams. */
    s->rng = s->p.seed ^ 0x9E3779B97F4A7C15ull;
}

static void touch(struct sampler *s, uint32_t id) {
    if (!s->in_prompt[id] && !s->out_count[id])
        s->touched[s->n_touched++] = id;
}

void sampler_accept_prompt(struct sampler *s, const int32_t *ids, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (uint32_t)ids[i] >= s->n_vocab)
            continue;
        touch(s, (uint32_t)ids[i]);
        s->in_prompt[ids[i]] = 1;
    }
}

void sampler_accept(struct sampler *s, int32_t id) {
    if (id < 0 || (uint32_t)id >= s->n_vocab)
        return;
    touch(s, (uint32_t)id);
    s->out_count[id]++;
}

void sampler_apply_penalties(const struct sampler *s, float *logits) {
    const float rp = s->p.repetition_penalty;
    const float fp = s->p.frequency_penalty, pp = s->p.presence_penalty;
    for (uint32_t i = 0; i < s->n_touched; i++) {
        const uint32_t id = s->touched[i];
        float l = logits[id];
        if (rp != 1.0f)
            l = l > 0.0f ? l / rp : l * rp;
        const uint32_t cnt = s->out_count[id];
        if (cnt)
            l -= (float)cnt * fp + pp;
        logits[id] = l;
    }
}

static uint64_t next_u64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* qsort has no context argument in C11; a thread-local pointer keeps the
 * comparator simple (a sampler is used by one thread at a time). Ties go to
 * the lower id so that sampling is deterministic for a seed. */
static _Thread_local const float *g_sort_logits;
static int cmp_desc(const void *a, const void *b) {
    const float *l = g_sort_logits;
    const uint32_t ia = *(const uint32_t *)a, ib = *(const uint32_t *)b;
    if (l[ia] > l[ib])
        return -1;
    if (l[ia] < l[ib])
        return 1;
    return ia < ib ? -1 : ia > ib;
}

int32_t sampler_sample(struct sampler *s, float *logits) {
    const uint32_t V = s->n_vocab;
    sampler_apply_penalties(s, logits);
    if (s->p.temperature <= 0.0f) {
        uint32_t best = 0;
        for (uint32_t i = 1; i < V; i++)
            if (logits[i] > logits[best])
                best = i;
        return (int32_t)best;
    }
    for (uint32_t i = 0; i < V; i++)
        logits[i] /= s->p.temperature;
    for (uint32_t i = 0; i < V; i++)
        s->idx[i] = i;
    g_sort_logits = logits;
    qsort(s->idx, V, sizeof *s->idx, cmp_desc);
    uint32_t n = V;
    if (s->p.top_k > 0 && (uint32_t)s->p.top_k < n)
        n = (uint32_t)s->p.top_k;
    /* softmax over the candidates, in descending order */
    const float mx = logits[s->idx[0]];
    double sum = 0.0;
    for (uint32_t i = 0; i < n; i++) {
        s->prob[i] = expf(logits[s->idx[i]] - mx);
        sum += s->prob[i];
    }
    for (uint32_t i = 0; i < n; i++)
        s->prob[i] = (float)(s->prob[i] / sum);
    if (s->p.top_p < 1.0f) {
        double cum = 0.0;
        uint32_t keep = n;
        for (uint32_t i = 0; i < n; i++) {
            cum += s->prob[i];
            if (cum >= s->p.top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
    }
    if (s->p.min_p > 0.0f) {
        const float thr = s->p.min_p * s->prob[0];
        uint32_t keep = 1;
        while (keep < n && s->prob[keep] >= thr)
            keep++;
        n = keep;
    }
    double total = 0.0;
    for (uint32_t i = 0; i < n; i++)
        total += s->prob[i];
    const double r = (double)(next_u64(&s->rng) >> 11) * (1.0 / 9007199254740992.0) * total;
    double cum = 0.0;
    for (uint32_t i = 0; i < n; i++) {
        cum += s->prob[i];
        if (r < cum)
            return (int32_t)s->idx[i];
    }
    return (int32_t)s->idx[n - 1];
}
