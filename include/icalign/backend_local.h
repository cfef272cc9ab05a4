/* The embedded engine as a backend: a local GGUF model. */
#ifndef ICALIGN_BACKEND_LOCAL_H
#define ICALIGN_BACKEND_LOCAL_H

#include "icalign/backend.h"

struct local_options {
    const char *model_path;
    uint32_t n_ctx;            /* 0 = the model's training context, capped at 8192 */
    uint32_t n_batch;          /* 0 = 512 */
    uint32_t kv_type;          /* ICA_F32 (default) or ICA_F16 */
    int n_threads;             /* <= 0 = default */
    const char *chat_template; /* for chat requests: a template name, a file, or NULL = from
                                  the model's tokenizer.chat_template */
};

ICA_API struct local_options local_default_options(void);

/* Loads the model and its tokenizer. Requests run one after another on one
 * sequence; the KV cache of the previous request is reused up to the longest
 * common token prefix, so a long shared prompt (URIAL rules and
 * demonstrations) is computed once. */
ICA_API int local_backend_new(const struct local_options *o, struct backend **out,
                              struct ica_error *err) ICA_WUR;

#endif
