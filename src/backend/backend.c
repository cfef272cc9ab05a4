/* Backend dispatch and the helpers shared by every implementation. */
#include "icalign/backend.h"

#include <stdlib.h>
#include <string.h>

struct backend_sampling backend_default_sampling(void) {
    struct backend_sampling s = {0.0f, 1.0f, 0, 0.0f, 1.0f, 0.0f, 0.0f, -1};
    return s;
}

void backend_result_free(struct backend_result *r) {
    if (!r)
        return;
    free(r->text);
    for (size_t i = 0; i < r->n_top; i++)
        free(r->top[i].token);
    free(r->top);
    memset(r, 0, sizeof *r);
}

int backend_run(struct backend *b, const struct backend_request *reqs, size_t n,
                backend_stream_fn stream, backend_done_fn done, void *ud, struct ica_error *err) {
    for (size_t i = 0; i < n; i++) {
        const bool has_prompt = reqs[i].prompt != NULL, has_msgs = reqs[i].n_messages > 0;
        if (has_prompt == has_msgs)
            return ica_seterr(err, ICA_ERR_ARG,
                              "request %zu: give exactly one of a prompt and chat messages", i);
    }
    return b->ops->run(b, reqs, n, stream, done, ud, err);
}

int64_t backend_count_tokens(struct backend *b, const char *text) {
    return b->ops->count_tokens ? b->ops->count_tokens(b, text) : -1;
}

uint32_t backend_context_size(struct backend *b) {
    return b->ops->context_size ? b->ops->context_size(b) : 0;
}

const char *backend_describe(struct backend *b) {
    return b->ops->describe(b);
}

void backend_free(struct backend *b) {
    if (b)
        b->ops->free(b);
}

struct one {
    struct backend_result *out;
    struct ica_error *err;
    int rc;
    backend_stream_fn stream;
    void *stream_ud;
};

static bool take_one(void *ud, size_t i, const struct backend_request *req,
                     struct backend_result *r, const struct ica_error *e) {
    (void)i;
    (void)req;
    struct one *o = ud;
    if (e) {
        o->rc = e->code != ICA_OK ? e->code : ICA_ERR_IO;
        if (o->err)
            *o->err = *e;
        return true;
    }
    /* Move the result out: the backend frees only what it still owns. */
    *o->out = *r;
    memset(r, 0, sizeof *r);
    return true;
}

static bool stream_one(void *ud, size_t i, const char *text, size_t len) {
    struct one *o = ud;
    return o->stream(o->stream_ud, i, text, len);
}

int backend_complete1(struct backend *b, const struct backend_request *req,
                      backend_stream_fn stream, void *ud, struct backend_result *out,
                      struct ica_error *err) {
    memset(out, 0, sizeof *out);
    struct one o = {out, err, ICA_OK, stream, ud};
    int rc = backend_run(b, req, 1, stream ? stream_one : NULL, take_one, &o, err);
    return rc != ICA_OK ? rc : o.rc;
}

bool backend_has_async(const struct backend *b) {
    return b->ops->submit && b->ops->poll && b->ops->cancel;
}

int backend_submit(struct backend *b, const struct backend_request *req, backend_stream_fn stream,
                   backend_done_fn done, void *ud, uint64_t *handle, struct ica_error *err) {
    if (!backend_has_async(b))
        return ica_seterr(err, ICA_ERR_UNSUPPORTED, "%s: no asynchronous interface",
                          backend_describe(b));
    if ((req->prompt != NULL) == (req->n_messages > 0))
        return ica_seterr(err, ICA_ERR_ARG, "give exactly one of a prompt and chat messages");
    return b->ops->submit(b, req, stream, done, ud, handle, err);
}

int backend_poll(struct backend *b, struct ica_error *err) {
    if (!backend_has_async(b)) {
        ica_seterr(err, ICA_ERR_UNSUPPORTED, "%s: no asynchronous interface", backend_describe(b));
        return -1;
    }
    return b->ops->poll(b, err);
}

void backend_cancel(struct backend *b, uint64_t handle) {
    if (backend_has_async(b))
        b->ops->cancel(b, handle);
}
