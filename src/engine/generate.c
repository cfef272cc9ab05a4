#include "engine_int.h"

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
    if ((rc = eng_append(&res->text, &res->text_len, &text_cap, "", 0)))
        goto done;
    res->n_prompt = n_prompt;
    if (gp->n_context_ids)
        sampler_accept_prompt(s, gp->context_ids, gp->n_context_ids);
    sampler_accept_prompt(s, prompt, n_prompt);
    double t0 = eng_now();
    if ((rc = model_eval(c, prompt, n_prompt, logits, false, err)))
        goto done;
    res->t_prompt_s = eng_now() - t0;
    t0 = eng_now();
    res->reason = GEN_STOP_MAX_TOKENS;
    if (gp->top_logprobs && (rc = eng_top_logprobs(res, logits, V, gp->top_logprobs, err)))
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
            if (eng_append(&res->text, &res->text_len, &text_cap, piece, (size_t)n)) {
                rc = ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
                goto done;
            }
            size_t longest = 0;
            for (uint32_t k = 0; k < gp->n_stop; k++)
                if (strlen(gp->stop[k]) > longest)
                    longest = strlen(gp->stop[k]);
            const size_t from = before + 1 > longest ? before + 1 - longest : 0;
            const char *hit = eng_find_stop(res->text, res->text_len, from, gp->stop, gp->n_stop);
            if (hit) {
                res->text_len = (size_t)(hit - res->text);
                res->text[res->text_len] = '\0';
                res->reason = GEN_STOP_STRING;
            }
            size_t safe = res->text_len;
            if (!hit)
                safe -= eng_held_back(res->text, res->text_len, gp->stop, gp->n_stop);
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
    res->t_gen_s = eng_now() - t0;
done:
    free(logits);
    sampler_free(s);
    if (rc != ICA_OK)
        gen_result_free(res);
    return rc;
}
