/* Backend: the one completion interface used by chat, answer, judge, search
 * and serve. Two implementations: the embedded engine (a local GGUF model)
 * and remote OpenAI-compatible servers (vLLM, llama.cpp server, TGI, OpenAI)
 * over HTTP. Callers never know which one they talk to.
 *
 * Two kinds of request:
 *   - completion: raw prompt text in, continuation out (base models; URIAL
 *     prompts are rendered by align/ and sent whole);
 *   - chat: system/user/assistant messages in (instruct models and judges);
 *     a remote backend sends them to /v1/chat/completions, the local one
 *     renders them with the model's chat template.
 *
 * Many requests may be submitted at once (backend_run); a backend runs them
 * with whatever concurrency it has and reports each result through a
 * callback as soon as it is complete, so the caller can store it at once. */
#ifndef ICALIGN_BACKEND_H
#define ICALIGN_BACKEND_H

#include "icalign/common.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum backend_role { BACKEND_SYSTEM, BACKEND_USER, BACKEND_ASSISTANT };

struct backend_message {
    enum backend_role role;
    const char *content;
};

struct backend_sampling {
    float temperature;        /* 0 = greedy */
    float top_p;              /* 1 = off */
    int32_t top_k;            /* <= 0 = off (local only; remote sends it only when set) */
    float min_p;              /* 0 = off */
    float repetition_penalty; /* 1 = off; HF semantics over prompt + output */
    float frequency_penalty;  /* 0 = off */
    float presence_penalty;   /* 0 = off */
    int64_t seed;             /* < 0 = not set */
};

/* Greedy, no penalties, no seed. */
ICA_API struct backend_sampling backend_default_sampling(void);

struct backend_request {
    /* exactly one of prompt (completion) and messages (chat) */
    const char *prompt;
    const struct backend_message *messages;
    size_t n_messages;
    struct backend_sampling sampling;
    uint32_t max_tokens;
    const char *const *stop; /* cut before the first match, stop string excluded */
    size_t n_stop;
    int top_logprobs; /* > 0: top alternatives of the first generated token */
    void *user;       /* passed back in the result callback */
};

enum backend_finish { BACKEND_FINISH_STOP, BACKEND_FINISH_LENGTH, BACKEND_FINISH_CANCELLED };

struct backend_logprob {
    char *token;
    double logprob;
};

struct backend_result {
    char *text; /* malloc'd, NUL-terminated, valid UTF-8 not guaranteed */
    size_t text_len;
    enum backend_finish finish;
    uint32_t prompt_tokens, completion_tokens, cached_tokens;
    struct backend_logprob *top; /* first token's alternatives, best first */
    size_t n_top;
    double seconds; /* wall time of this request */
    int attempts;   /* 1 + retries (remote) */
};

ICA_API void backend_result_free(struct backend_result *r);

/* Called for each finished request (i = its index in the submitted array),
 * with err non-NULL when that request failed for good (after retries; r is
 * then empty). Return false to cancel the requests not yet finished. The
 * backend frees r after the call; the callback may take ownership of any
 * field by moving it out and setting it to NULL / 0. */
typedef bool (*backend_done_fn)(void *ud, size_t i, const struct backend_request *req,
                                struct backend_result *r, const struct ica_error *err);

/* Called with new text of request i as it streams (optional). */
typedef bool (*backend_stream_fn)(void *ud, size_t i, const char *text, size_t len);

struct backend;

struct backend_ops {
    const char *kind; /* "local" or "remote" */
    int (*run)(struct backend *b, const struct backend_request *reqs, size_t n,
               backend_stream_fn stream, backend_done_fn done, void *ud, struct ica_error *err);
    /* Tokens of text in the model's tokenizer; -1 when unknown (remote). */
    int64_t (*count_tokens)(struct backend *b, const char *text);
    /* Context window in tokens; 0 when unknown. */
    uint32_t (*context_size)(struct backend *b);
    /* Short description for logs and the store ("local:/path/m.gguf", "remote:http://h/v1 model").
     */
    const char *(*describe)(struct backend *b);
    void (*free)(struct backend *b);
    /* Optional asynchronous interface (NULL when absent): submit queues one
     * request (req must stay valid until its done callback), whose callbacks
     * then run from poll; poll advances every submitted request by one step
     * and returns how many are still pending (< 0 on an error that stopped the
     * backend); cancel ends one request (its done reports it cancelled). */
    int (*submit)(struct backend *b, const struct backend_request *req, backend_stream_fn stream,
                  backend_done_fn done, void *ud, uint64_t *handle, struct ica_error *err);
    int (*poll)(struct backend *b, struct ica_error *err);
    void (*cancel)(struct backend *b, uint64_t handle);
};

struct backend {
    const struct backend_ops *ops;
};

/* Runs n requests; returns ICA_OK when every request was attempted (failed
 * requests are reported through done) or an error that stopped the whole run. */
ICA_API int backend_run(struct backend *b, const struct backend_request *reqs, size_t n,
                        backend_stream_fn stream, backend_done_fn done, void *ud,
                        struct ica_error *err);
ICA_API int64_t backend_count_tokens(struct backend *b, const char *text);
ICA_API uint32_t backend_context_size(struct backend *b);
ICA_API const char *backend_describe(struct backend *b);
ICA_API void backend_free(struct backend *b);

/* The asynchronous interface (see struct backend_ops): lets a server keep
 * adding requests to a running batch. backend_has_async tells whether the
 * backend has it; the others answer ICA_ERR_UNSUPPORTED. */
ICA_API bool backend_has_async(const struct backend *b);
ICA_API int backend_submit(struct backend *b, const struct backend_request *req,
                           backend_stream_fn stream, backend_done_fn done, void *ud,
                           uint64_t *handle, struct ica_error *err);
ICA_API int backend_poll(struct backend *b, struct ica_error *err);
ICA_API void backend_cancel(struct backend *b, uint64_t handle);

/* Convenience: one request, result into *out (caller frees with
 * backend_result_free). */
ICA_API int backend_complete1(struct backend *b, const struct backend_request *req,
                              backend_stream_fn stream, void *ud, struct backend_result *out,
                              struct ica_error *err);

#endif
