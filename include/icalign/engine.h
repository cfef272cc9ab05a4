/* Engine: drives a model context to complete a prompt — sampling, stop
 * conditions (end-of-generation token, max tokens, stop strings matched on
 * the decoded text across token boundaries) and streaming of the text.
 * The multi-sequence scheduler with the shared prefix cache grows here. */
#ifndef ICALIGN_ENGINE_H
#define ICALIGN_ENGINE_H

#include "icalign/common.h"
#include "icalign/model.h"
#include "icalign/sample.h"
#include "icalign/tok.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gen_params {
    struct sampler_params sampling;
    uint32_t max_tokens;     /* new tokens at most */
    const char *const *stop; /* stop strings (text is cut before the first match) */
    uint32_t n_stop;
    bool ignore_eos; /* keep going past end-of-generation tokens */
    /* Tokens already in the context that belong to this prompt (a cached
     * prefix): they count for the repetition penalty like the prompt. */
    const int32_t *context_ids;
    uint32_t n_context_ids;
    uint32_t top_logprobs; /* > 0: keep the top alternatives of the first token */
};

ICA_API struct gen_params gen_default_params(void); /* greedy, 128 tokens, no stops */

enum gen_stop_reason { GEN_STOP_EOG, GEN_STOP_MAX_TOKENS, GEN_STOP_STRING, GEN_STOP_CANCELLED };

struct gen_result {
    int32_t *ids; /* generated ids (malloc'd), the EOG token excluded */
    uint32_t n_ids;
    char *text; /* decoded text, cut before a stop string (malloc'd, NUL-terminated) */
    size_t text_len;
    enum gen_stop_reason reason;
    uint32_t n_prompt;
    double t_prompt_s, t_gen_s; /* wall time of prompt processing and generation */
    int32_t *top_ids;           /* first step: top_logprobs best ids (raw log-softmax) */
    float *top_logprobs;
    uint32_t n_top;
};

/* Called with each piece of text that is final (no longer able to start a
 * stop string); return false to cancel. */
typedef bool (*gen_emit_fn)(void *ud, const char *text, size_t len);

ICA_API void gen_result_free(struct gen_result *r);

/* Evaluates prompt (appending to what the context already holds) and
 * generates. Afterwards the context holds the prompt and every generated
 * token but the last (which was sampled, not evaluated). On error res is
 * empty. vocab may be NULL (no text, no stop strings, no EOG detection). */
ICA_API int engine_generate(struct model_ctx *c, const struct tok_vocab *vocab,
                            const int32_t *prompt, uint32_t n_prompt, const struct gen_params *gp,
                            gen_emit_fn emit, void *emit_ud, struct gen_result *res,
                            struct ica_error *err) ICA_WUR;

#endif
