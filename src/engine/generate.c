#include "icalign/engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct gen_params gen_default_params(void) {
    struct gen_params p;
    memset(&p, 0, sizeof p);
    p.sampling = sampler_default_params();
    p.max_tokens = 128;
    return p;
}

void gen_result_free(struct gen_result *r) {
    if (!r)
        return;
    free(r->ids);
    free(r->text);
    free(r->top_ids);
    free(r->top_logprobs);
    memset(r, 0, sizeof *r);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Bytes at the end of text[0..len) that could still begin a stop string:
 * they are held back from streaming until the next token decides. */
static size_t held_back(const char *text, size_t len, const char *const *stop, uint32_t n_stop) {
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
static const char *find_stop(const char *text, size_t len, size_t from, const char *const *stop,
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

static int append(char **buf, size_t *len, size_t *cap, const char *p, size_t n) {
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
static int top_logprobs(struct gen_result *res, const float *logits, uint32_t V, uint32_t k,
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

int engine_generate(struct model_ctx *c, const struct tok_vocab *vocab, const int32_t *prompt,
                    uint32_t n_prompt, const struct gen_params *gp, gen_emit_fn emit, void *emit_ud,
                    struct gen_result *res, struct ica_error *err) {
    memset(res, 0, sizeof *res);
    const struct model_hparams *hp = model_get_hparams(model_ctx_model(c));
    const uint32_t V = hp->n_vocab;
    if (n_prompt == 0)
        return ica_seterr(err, ICA_ERR_ARG, "empty prompt");
    const uint32_t room = model_ctx_n_ctx(c) - model_ctx_n_past(c);
    if (n_prompt > room)
        return ica_seterr(err, ICA_ERR_RANGE,
                          "prompt of %u tokens does not fit the context (%u positions left)",
                          n_prompt, room);
    float *logits = malloc((size_t)V * sizeof *logits);
    struct sampler *s = sampler_new(&gp->sampling, V, err);
    size_t cap_ids = gp->max_tokens ? gp->max_tokens : 1, text_cap = 0, emitted = 0;
    res->ids = malloc(cap_ids * sizeof *res->ids);
    char piece[256];
    int rc = ICA_OK;
    if (!logits || !s || !res->ids) {
        rc = s ? ica_seterr(err, ICA_ERR_NOMEM, "out of memory") : ICA_ERR_ARG;
        goto done;
    }
    if ((rc = append(&res->text, &res->text_len, &text_cap, "", 0)))
        goto done;
    res->n_prompt = n_prompt;
    if (gp->n_context_ids)
        sampler_accept_prompt(s, gp->context_ids, gp->n_context_ids);
    sampler_accept_prompt(s, prompt, n_prompt);
    double t0 = now_s();
    if ((rc = model_eval(c, prompt, n_prompt, logits, false, err)))
        goto done;
    res->t_prompt_s = now_s() - t0;
    t0 = now_s();
    res->reason = GEN_STOP_MAX_TOKENS;
    if (gp->top_logprobs && (rc = top_logprobs(res, logits, V, gp->top_logprobs, err)))
        goto done;
    for (uint32_t step = 0; step < gp->max_tokens; step++) {
        const int32_t id = sampler_sample(s, logits);
        if (!gp->ignore_eos && vocab && tok_is_eog(vocab, id)) {
            res->reason = GEN_STOP_EOG;
            break;
        }
        sampler_accept(s, id);
        res->ids[res->n_ids++] = id;
        if (vocab) {
            int32_t n = tok_token_to_piece(vocab, id, false, 0, piece, sizeof piece);
            if (n < 0)
                n = 0; /* a piece longer than 256 bytes: no real vocabulary has one */
            const size_t before = res->text_len;
            if (append(&res->text, &res->text_len, &text_cap, piece, (size_t)n)) {
                rc = ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
                goto done;
            }
            size_t longest = 0;
            for (uint32_t k = 0; k < gp->n_stop; k++)
                if (strlen(gp->stop[k]) > longest)
                    longest = strlen(gp->stop[k]);
            const size_t from = before + 1 > longest ? before + 1 - longest : 0;
            const char *hit = find_stop(res->text, res->text_len, from, gp->stop, gp->n_stop);
            if (hit) {
                res->text_len = (size_t)(hit - res->text);
                res->text[res->text_len] = '\0';
                res->reason = GEN_STOP_STRING;
            }
            size_t safe = res->text_len;
            if (!hit)
                safe -= held_back(res->text, res->text_len, gp->stop, gp->n_stop);
            if (emit && safe > emitted) {
                if (!emit(emit_ud, res->text + emitted, safe - emitted)) {
                    emitted = safe;
                    res->reason = GEN_STOP_CANCELLED;
                    break;
                }
                emitted = safe;
            }
            if (hit)
                break;
        }
        if (step + 1 == gp->max_tokens)
            break;
        if (model_ctx_n_past(c) >= model_ctx_n_ctx(c)) {
            rc = ica_seterr(err, ICA_ERR_RANGE,
                            "context full after %u generated tokens (context size %u)", res->n_ids,
                            model_ctx_n_ctx(c));
            goto done;
        }
        if ((rc = model_eval(c, &id, 1, logits, false, err)))
            goto done;
    }
    if (emit && res->text_len > emitted && res->reason != GEN_STOP_CANCELLED)
        (void)emit(emit_ud, res->text + emitted, res->text_len - emitted);
    res->t_gen_s = now_s() - t0;
done:
    free(logits);
    sampler_free(s);
    if (rc != ICA_OK)
        gen_result_free(res);
    return rc;
}
