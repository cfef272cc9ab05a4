/* Internal helpers of the engine module. */
#ifndef ICALIGN_ENGINE_INT_H
#define ICALIGN_ENGINE_INT_H

#include "icalign/engine.h"

#include <stddef.h>
#include <stdint.h>

/* Monotonic clock in seconds. */
double eng_now(void);
/* Bytes at the end of text[0..len) that could still begin a stop string:
 * held back from streaming until the next token decides. */
size_t eng_held_back(const char *text, size_t len, const char *const *stop, uint32_t n_stop);
/* First occurrence of any stop string starting at or after `from`, or NULL. */
const char *eng_find_stop(const char *text, size_t len, size_t from, const char *const *stop,
                          uint32_t n_stop);
/* Appends p[0..n) to a growing NUL-terminated buffer. */
int eng_append(char **buf, size_t *len, size_t *cap, const char *p, size_t n);
/* The k most likely ids of logits with their log-probabilities into res. */
int eng_top_logprobs(struct gen_result *res, const float *logits, uint32_t V, uint32_t k,
                     struct ica_error *err);

#endif
