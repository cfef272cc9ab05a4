/* Private helpers of the align module. */
#ifndef ICALIGN_ALIGN_INTERNAL_H
#define ICALIGN_ALIGN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "icalign/align.h"

/* Growable byte buffer, always NUL-terminated when data != NULL. On allocation failure it frees
 * its memory and stays failed (every later call returns false), so callers check once. */
struct abuf {
    char *data;
    size_t len;
    size_t cap;
    bool failed;
};

bool abuf_add(struct abuf *b, const char *s, size_t n);
bool abuf_adds(struct abuf *b, const char *s);
/* Hands the buffer to the caller (never NULL unless failed): "" for an empty buffer. */
char *abuf_take(struct abuf *b, size_t *len);
void abuf_free(struct abuf *b);

char *align_strdup(const char *s);
char *align_strndup(const char *s, size_t n);

/* The set, opaque to users. */
struct align_set {
    char *header;
    struct align_demo *demos;
    size_t n, cap;
    enum align_style style;
    char *bridge;     /* NULL = none */
    size_t bridge_at; /* demo index the bridge precedes */
    char *trailer;    /* whitespace after the last block; never NULL */
    /* "# User:" layouts: newlines after a role line and between messages */
    int ua_role_nl, ua_sep_nl;
};

/* 1-based line number of byte offset off in text. */
size_t align_line_of(const char *text, size_t off);
/* Validates UTF-8; returns the offset of the first bad byte or len when valid. */
size_t align_utf8_check(const char *s, size_t len);

/* Fills e for out-of-memory and returns ICA_ERR_NOMEM. */
int align_nomem(struct ica_error *e);

/* Appends a copy of d at the end (helper of align_set_insert). */
int align_set_push(struct align_set *s, const struct align_demo *d, struct ica_error *e);

#endif
