/* Sampling: turns a row of logits into the next token.
 *
 * Order (as vLLM, which URIAL's runs used): repetition penalty (Hugging Face
 * semantics: every distinct id of prompt + output, positive logits divided by
 * p, others multiplied) and OpenAI frequency/presence penalties (generated
 * tokens only) -> temperature -> top-k -> top-p -> min-p -> draw.
 * temperature <= 0 is greedy: argmax of the penalised logits, ties to the
 * lowest id. */
#ifndef ICALIGN_SAMPLE_H
#define ICALIGN_SAMPLE_H

#include "icalign/common.h"

#include <stdbool.h>
#include <stdint.h>

struct sampler_params {
    float temperature;        /* <= 0: greedy */
    int32_t top_k;            /* <= 0: off */
    float top_p;              /* >= 1: off */
    float min_p;              /* <= 0: off */
    float repetition_penalty; /* 1: off */
    float frequency_penalty;  /* 0: off */
    float presence_penalty;   /* 0: off */
    uint64_t seed;
};

ICA_API struct sampler_params sampler_default_params(void); /* greedy, no penalties */

struct sampler;

/* n_vocab is the logits row length. NULL on allocation failure or bad params
 * (err says which). */
ICA_API struct sampler *sampler_new(const struct sampler_params *p, uint32_t n_vocab,
                                    struct ica_error *err);
ICA_API void sampler_free(struct sampler *s);
/* Forgets the history and reseeds. */
ICA_API void sampler_reset(struct sampler *s);
/* Records prompt tokens (repetition penalty only). */
ICA_API void sampler_accept_prompt(struct sampler *s, const int32_t *ids, uint32_t n);
/* Records a generated token (all penalties). */
ICA_API void sampler_accept(struct sampler *s, int32_t id);
/* Applies the penalties to logits in place (exposed for tests). */
ICA_API void sampler_apply_penalties(const struct sampler *s, float *logits);
/* Picks the next token from logits (modified in place). Does not accept it. */
ICA_API int32_t sampler_sample(struct sampler *s, float *logits);

#endif
