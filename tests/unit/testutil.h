/* Helpers shared by the unit tests. Include after cmocka's prerequisites. */
#ifndef ICALIGN_TESTUTIL_H
#define ICALIGN_TESTUTIL_H

#include <stddef.h>

/* Directory of the shared fixtures/data: $ICALIGN_SHARED or the build's
 * default (../shared beside the checkout). */
const char *tu_shared_dir(void);

/* Writes "<shared>/<rel>" into buf; returns 1 if the path exists, else 0. */
int tu_shared_path(char *buf, size_t bufsz, const char *rel);

/* Like tu_shared_path but calls cmocka's skip() with a clear message when
 * ../shared is absent. */
void tu_require_shared(char *buf, size_t bufsz, const char *rel);

/* Reads a whole file (malloc'd, NUL-terminated beyond *len); NULL on error. */
void *tu_read_file(const char *path, size_t *len);

/* A fresh temporary directory for this test process (created once). */
const char *tu_tmpdir(void);

#endif
