/* icalign — shared error handling and small utilities used by every module.
 *
 * Convention: a function that can fail returns an int error code (ICA_OK = 0)
 * and, when given a non-NULL struct ica_error, fills a human-readable message
 * naming the file/field and what was wrong. Nothing in src/ calls exit(). */
#ifndef ICALIGN_COMMON_H
#define ICALIGN_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define ICA_API          __attribute__((visibility("default")))
#define ICA_WUR          __attribute__((warn_unused_result))
#define ICA_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define ICA_API
#define ICA_WUR
#define ICA_PRINTF(a, b)
#endif

enum ica_err {
    ICA_OK = 0,
    ICA_ERR_IO,          /* open/read/write/mmap failed */
    ICA_ERR_FORMAT,      /* malformed input file or text */
    ICA_ERR_NOMEM,       /* allocation failed */
    ICA_ERR_UNSUPPORTED, /* valid input we do not handle (unknown type, architecture) */
    ICA_ERR_ARG,         /* bad argument from the caller */
    ICA_ERR_RANGE,       /* value or size out of range (context full, index too large) */
    ICA_ERR_NOTFOUND,    /* key, tensor or item not present */
    ICA_ERR_TYPE,        /* value present but of another type */
};

#define ICA_ERRMSG_MAX 512

/* Error detail filled by failing functions. code mirrors the return value. */
struct ica_error {
    int code;
    char msg[ICA_ERRMSG_MAX];
};

/* Static description of an error code ("I/O error", ...). Never NULL. */
ICA_API const char *ica_strerror(int code);

/* Records code and a printf-style message in e (if non-NULL); returns code so
 * callers can write `return ica_seterr(e, ICA_ERR_FORMAT, "...", ...);`. */
ICA_API int ica_seterr(struct ica_error *e, int code, const char *fmt, ...) ICA_PRINTF(3, 4);

/* Clears e (code = ICA_OK, empty message). NULL-safe. */
ICA_API void ica_clearerr(struct ica_error *e);

#endif
