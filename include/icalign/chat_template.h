/* Chat templates of instruct models (local judges, instruct baselines),
 * without a Jinja engine: the common templates are recognised from the
 * GGUF's tokenizer.chat_template text by fingerprint (as llama.cpp's
 * llm_chat_detect_template does) and rendered by hand-written code that
 * produces exactly what the model's published template produces.
 *
 * Built-in names: llama2, llama3, chatml (alias qwen, qwen2), mistral-v1,
 * mistral-v3, mistral-v3-tekken, mistral-v7, gemma, phi3. A custom template
 * comes from a file (--chat-template FILE); see docs/BACKENDS.md:
 *
 *     # comment
 *     begin      = "{bos}"
 *     system     = "<|system|>\n{content}<|end|>\n"
 *     user       = "<|user|>\n{content}<|end|>\n"
 *     assistant  = "<|assistant|>\n{content}<|end|>\n"
 *     generation = "<|assistant|>\n"
 *     end        = ""
 *     trim       = "no"
 *
 * BOS: where the model's template writes bos_token, the rendering writes
 * bos_text (NULL = nothing). When chat_template_leading_bos() is true the
 * rendered text already starts with bos_text, so tokenize it with
 * parse_special = true and add_bos = false (or render with bos_text = NULL
 * and let the tokenizer add BOS per the vocabulary — only for templates that
 * write BOS nowhere but at the start; llama2 repeats it before every turn).
 * Templates with leading_bos false (chatml, phi3) rely on the vocabulary's
 * add_bos flag, as llama.cpp does. */
#ifndef ICALIGN_CHAT_TEMPLATE_H
#define ICALIGN_CHAT_TEMPLATE_H

#include "icalign/backend.h"
#include "icalign/common.h"

#include <stdbool.h>
#include <stddef.h>

struct chat_template;

/* A built-in template by name; NULL when unknown. Static: never freed. */
ICA_API const struct chat_template *chat_template_from_name(const char *name);

/* Recognises a Jinja chat template (tokenizer.chat_template) or a built-in
 * name; NULL when no fingerprint matches. */
ICA_API const struct chat_template *chat_template_detect(const char *jinja);

/* Loads a custom template file (format above). Free with chat_template_free. */
ICA_API int chat_template_load(const char *path, struct chat_template **out, struct ica_error *err);
ICA_API void chat_template_free(struct chat_template *t); /* no-op for built-ins */

/* "llama3", ..., or "custom:<path>". */
ICA_API const char *chat_template_name(const struct chat_template *t);

/* Comma-separated list of the built-in names (for help texts). */
ICA_API const char *chat_template_names(void);

/* Whether the rendered text starts with bos_text (see above). */
ICA_API bool chat_template_leading_bos(const struct chat_template *t);

/* Text that ends an assistant turn ("<|eot_id|>", "<|im_end|>", ...; for
 * llama2/mistral the eos_text given). A generation can stop on it. */
ICA_API const char *chat_template_end_of_turn(const struct chat_template *t, const char *eos_text);

/* Renders messages; add_generation_prompt appends the assistant header.
 * *out is malloc'd. ICA_ERR_ARG for a conversation the template refuses
 * (a system message that is not first; no system turn in a custom file). */
ICA_API int chat_template_render(const struct chat_template *t, const struct backend_message *msgs,
                                 size_t n, bool add_generation_prompt, const char *bos_text,
                                 const char *eos_text, char **out, struct ica_error *err);

#endif
