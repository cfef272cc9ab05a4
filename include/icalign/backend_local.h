/* The embedded engine as a backend: a local GGUF model. */
#ifndef ICALIGN_BACKEND_LOCAL_H
#define ICALIGN_BACKEND_LOCAL_H

#include "icalign/backend.h"

struct local_options {
    const char *model_path;
    uint32_t n_ctx;               /* 0 = the model's training context, capped at 8192 */
    uint32_t n_batch;             /* 0 = 512 */
    uint32_t kv_type;             /* ICA_F16 (default) or ICA_F32 */
    int n_threads;                /* <= 0 = default */
    const char *chat_template;    /* for chat requests: a template name, a file, or NULL = from
                                     the model's tokenizer.chat_template */
    uint32_t n_parallel;          /* sequences generated at once (0 = 8) */
    size_t kv_mem;                /* KV cache budget in bytes (0 = automatic) */
    const char *prefix_cache_dir; /* keep shared prompt prefixes on disk here (NULL = off) */
};

ICA_API struct local_options local_default_options(void);

/* Loads the model and its tokenizer. Requests run through the engine's
 * scheduler: up to n_parallel at once in one batch, keys and values shared
 * through the radix prefix cache, so a long shared prompt (URIAL rules and
 * demonstrations) is computed once for all requests. Each request's tokens
 * are the same as when it runs alone. */
ICA_API int local_backend_new(const struct local_options *o, struct backend **out,
                              struct ica_error *err) ICA_WUR;

#endif
