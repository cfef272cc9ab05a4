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
    uint32_t n_cached;          /* prompt tokens whose keys/values were reused */
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

/* ---- the scheduler: many sequences, shared prefixes, continuous batching ----
 *
 * Requests are submitted at any time; each step is one forward pass that
 * carries one decode token of every running sequence plus prefill chunks of
 * sequences still reading their prompt (up to n_batch tokens), so sequences
 * finish and join without draining the batch. Keys and values live in a
 * paged cache shared through a radix tree of token prefixes (kv.h): a
 * sequence whose prompt starts like an earlier one reuses those positions and
 * computes only the rest. Every sequence's tokens are identical to running it
 * alone without the cache (the forward pass's per-row summation orders do not
 * depend on the batch). One thread drives an engine; callbacks run on it. */

struct engine_params {
    uint32_t n_ctx;        /* positions per sequence at most (0 = training context, <= 8192) */
    uint32_t n_batch;      /* tokens per forward pass (0 = 512) */
    uint32_t n_seq_max;    /* sequences running at once (0 = 8) */
    uint32_t kv_type;      /* ICA_F16 (default) or ICA_F32 */
    size_t kv_mem;         /* KV budget in bytes (0 = n_seq_max full contexts) */
    uint32_t block_tokens; /* positions per KV block (0 = 32) */
    int n_threads;         /* <= 0: one per CPU */
    const char *prefix_cache_dir; /* save/load shared prefixes here (NULL = off) */
    bool no_prefix_reuse;         /* compute every prompt in full (benchmarks, checks) */
};

ICA_API struct engine_params engine_default_params(void);

struct engine;

/* Result of one finished request (ids and text owned by the engine until
 * the callback returns; take them by moving the pointers out). */
typedef void (*engine_done_fn)(void *ud, uint64_t id, struct gen_result *res,
                               const struct ica_error *err);

/* Creates an engine over a loaded model and its tokenizer (both borrowed:
 * they must outlive the engine). */
ICA_API int engine_new(const struct model *m, const struct tok_vocab *vocab,
                       const struct engine_params *p, struct engine **out,
                       struct ica_error *err) ICA_WUR;
ICA_API void engine_free(struct engine *e);

/* Queues a request (prompt and params are copied). emit streams its text
 * (may be NULL; returning false cancels it), done reports its end (always
 * called exactly once, also for errors and cancellation). *id identifies it. */
ICA_API int engine_submit(struct engine *e, const int32_t *prompt, uint32_t n_prompt,
                          const struct gen_params *gp, gen_emit_fn emit, engine_done_fn done,
                          void *ud, uint64_t *id, struct ica_error *err) ICA_WUR;
/* Cancels a queued or running request (its done callback reports
 * GEN_STOP_CANCELLED at the next step). Unknown ids are ignored. */
ICA_API void engine_cancel(struct engine *e, uint64_t id);
/* One forward pass (or none when idle). Returns ICA_OK, or an error that
 * stopped the engine itself (the requests involved are reported failed). */
ICA_API int engine_step(struct engine *e, struct ica_error *err) ICA_WUR;
/* Requests not yet finished (queued + running). */
ICA_API uint32_t engine_pending(const struct engine *e);
/* Steps until no request is pending. */
ICA_API int engine_run(struct engine *e, struct ica_error *err) ICA_WUR;

struct engine_stats {
    uint64_t steps, prompt_tokens, prompt_tokens_cached, generated_tokens;
    uint64_t prefix_files_loaded, prefix_files_saved;
    double t_forward_s;
    /* forward passes made only of decode tokens (one per sequence): the
     * speed of batched decoding without prompt chunks mixed in */
    uint64_t decode_steps, decode_step_tokens;
    double t_decode_steps_s;
};
ICA_API void engine_get_stats(const struct engine *e, struct engine_stats *st);
ICA_API uint32_t engine_n_ctx(const struct engine *e);

#endif
