#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *tu_shared_dir(void) {
    const char *e = getenv("ICALIGN_SHARED");
    if (e && *e)
        return e;
#ifdef ICA_SHARED_DIR
    return ICA_SHARED_DIR;
#else
    return "../shared";
#endif
}

int tu_shared_path(char *buf, size_t bufsz, const char *rel) {
    snprintf(buf, bufsz, "%s/%s", tu_shared_dir(), rel);
    struct stat st;
    return stat(buf, &st) == 0;
}

void tu_require_shared(char *buf, size_t bufsz, const char *rel) {
    if (!tu_shared_path(buf, bufsz, rel)) {
        fprintf(stderr, "SKIP: %s not found (set ICALIGN_SHARED to the shared/ folder)\n", buf);
        skip();
    }
}

void *tu_read_file(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    if (fseek(fp, 0, SEEK_END) != 0) {
        fclose(fp);
        return NULL;
    }
    long n = ftell(fp);
    if (n < 0 || fseek(fp, 0, SEEK_SET) != 0) {
        fclose(fp);
        return NULL;
    }
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(fp);
    if (buf) {
        buf[n] = '\0';
        if (len)
            *len = (size_t)n;
    }
    return buf;
}

const char *tu_tmpdir(void) {
    static char dir[256];
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/icalign-test-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(dir))
            snprintf(dir, sizeof dir, "/tmp");
    }
    return dir;
}
