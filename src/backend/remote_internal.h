/* Internals of the remote backend shared by its source files. */
#ifndef ICALIGN_REMOTE_INTERNAL_H
#define ICALIGN_REMOTE_INTERNAL_H

#include "icalign/remote.h"

/* JSON body of one request (completion when rq->prompt is set, else chat).
 * *out is malloc'd. ICA_ERR_UNSUPPORTED when the request asks for a
 * repetition penalty and penalty is REMOTE_PENALTY_NONE. */
int remote_build_body(const struct backend_request *rq, const char *model,
                      enum remote_penalty penalty, bool stream, char **out, struct ica_error *err);

#endif
