/* Internal helpers of the eval module. */
#ifndef ICALIGN_EVAL_INTERNAL_H
#define ICALIGN_EVAL_INTERNAL_H

#include <stddef.h>

#include "icalign/common.h"

/* Growable byte buffer; on allocation failure sets oom and keeps appending as no-ops. */
struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
};

void sb_add(struct sbuf *b, const char *s, size_t n);
void sb_adds(struct sbuf *b, const char *s);
/* Returns the NUL-terminated text (owned by the caller) or NULL if out of memory. */
char *sb_take(struct sbuf *b);

/* Reads a whole file (NUL-terminated); NULL with e set. */
char *ev_read_file(const char *path, size_t *len, struct ica_error *e);

char *ev_strdup(const char *s);

#endif
