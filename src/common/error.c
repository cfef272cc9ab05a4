#include "icalign/common.h"

#include <stdarg.h>
#include <stdio.h>

const char *ica_strerror(int code) {
    switch (code) {
    case ICA_OK:
        return "success";
    case ICA_ERR_IO:
        return "I/O error";
    case ICA_ERR_FORMAT:
        return "malformed input";
    case ICA_ERR_NOMEM:
        return "out of memory";
    case ICA_ERR_UNSUPPORTED:
        return "unsupported";
    case ICA_ERR_ARG:
        return "invalid argument";
    case ICA_ERR_RANGE:
        return "out of range";
    case ICA_ERR_NOTFOUND:
        return "not found";
    case ICA_ERR_TYPE:
        return "wrong type";
    default:
        return "unknown error";
    }
}

int ica_seterr(struct ica_error *e, int code, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        e->code = code;
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void ica_clearerr(struct ica_error *e) {
    if (e) {
        e->code = ICA_OK;
        e->msg[0] = '\0';
    }
}
