/* Local backend: the embedded engine behind the backend interface. */
#include "icalign/backend_local.h"
#include "icalign/chat_template.h"
#include "icalign/engine.h"
#include "icalign/model.h"
#include "icalign/tok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct local {
    struct backend base;
    struct local_options opt;
    char *path;
    char desc[600];
    struct model *model;
    struct tok_vocab *vocab;
    struct engine *engine;
    /* Chat template for chat requests (NULL until the first chat request
     * finds one); owned when loaded from a file. */
    const struct chat_template *tmpl;
    struct chat_template *tmpl_owned;
    bool tmpl_looked_up;
};

struct local_options local_default_options(void) {
    struct local_options o;
    memset(&o, 0, sizeof o);
    o.kv_type = ICA_F16;
    return o;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The chat template: --chat-template NAME or FILE, else the model's
 * tokenizer.chat_template recognised by fingerprint. */
static int find_template(struct local *l, struct ica_error *err) {
    if (l->tmpl_looked_up)
        return l->tmpl ? ICA_OK
                       : ica_seterr(err, ICA_ERR_UNSUPPORTED,
                                    "%s: no chat template (give --chat-template %s or a file)",
                                    l->path, chat_template_names());
    l->tmpl_looked_up = true;
    const char *want = l->opt.chat_template;
    if (want && strcmp(want, "auto") != 0) {
        l->tmpl = chat_template_from_name(want);
        if (!l->tmpl) {
            int rc = chat_template_load(want, &l->tmpl_owned, err);
            if (rc != ICA_OK)
                return rc;
            l->tmpl = l->tmpl_owned;
        }
        return ICA_OK;
    }
    struct gguf_str js;
    if (gguf_get_str(model_gguf(l->model), "tokenizer.chat_template", &js) == ICA_OK) {
        char *jinja = malloc(js.len + 1);
        if (!jinja)
            return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
        memcpy(jinja, js.ptr, js.len);
        jinja[js.len] = '\0';
        l->tmpl = chat_template_detect(jinja);
        free(jinja);
    }
    if (!l->tmpl)
        return ica_seterr(err, ICA_ERR_UNSUPPORTED,
                          "%s: the model's chat template is missing or not recognised (give "
                          "--chat-template %s or a file)",
                          l->path, chat_template_names());
    return ICA_OK;
}

static const char *token_text(const struct tok_vocab *v, int32_t id) {
    return id >= 0 ? tok_text(v, id, NULL) : "";
}

/* Renders and tokenizes one request: raw prompts as they are (BOS per the
 * vocabulary, special-token text not parsed); chat messages through the chat
 * template, whose special tokens are parsed as control tokens and whose own
 * BOS text replaces the vocabulary's. */
static int request_tokens(struct local *l, const struct backend_request *r, int32_t **ids,
                          size_t *n, struct ica_error *err) {
    if (r->prompt)
        return tok_tokenize(l->vocab, r->prompt, strlen(r->prompt), true, false, ids, n, err);
    int rc = find_template(l, err);
    if (rc != ICA_OK)
        return rc;
    char *text = NULL;
    rc = chat_template_render(l->tmpl, r->messages, r->n_messages, true,
                              token_text(l->vocab, tok_bos(l->vocab)),
                              token_text(l->vocab, tok_eos(l->vocab)), &text, err);
    if (rc != ICA_OK)
        return rc;
    const bool add_special = !chat_template_leading_bos(l->tmpl);
    rc = tok_tokenize(l->vocab, text, strlen(text), add_special, true, ids, n, err);
    free(text);
    return rc;
}

/* One request in flight in the engine (freed by its done callback). */
struct job {
    struct local *l;
    const struct backend_request *req;
    size_t i;
    backend_stream_fn stream;
    backend_done_fn done;
    void *ud;
    uint32_t n_prompt;
    double t0;
    bool *stop_all; /* local_run: a done callback asked to stop */
};

static bool job_text(void *ud, const char *text, size_t len) {
    struct job *j = ud;
    return j->stream(j->ud, j->i, text, len);
}

static void job_done(void *ud, uint64_t id, struct gen_result *g, const struct ica_error *e) {
    (void)id;
    struct job *j = ud;
    struct backend_result res;
    memset(&res, 0, sizeof res);
    if (!e) {
        res.text = g->text;
        res.text_len = g->text_len;
        g->text = NULL;
        if (!res.text)
            res.text = calloc(1, 1);
        res.finish = g->reason == GEN_STOP_MAX_TOKENS  ? BACKEND_FINISH_LENGTH
                     : g->reason == GEN_STOP_CANCELLED ? BACKEND_FINISH_CANCELLED
                                                       : BACKEND_FINISH_STOP;
        res.prompt_tokens = j->n_prompt;
        res.completion_tokens = g->n_ids;
        res.cached_tokens = g->n_cached;
        res.attempts = 1;
        if (g->n_top) {
            res.top = calloc(g->n_top, sizeof *res.top);
            for (uint32_t k = 0; res.top && k < g->n_top; k++) {
                char piece[256];
                int32_t len =
                    tok_token_to_piece(j->l->vocab, g->top_ids[k], true, 0, piece, sizeof piece);
                if (len < 0)
                    len = 0;
                res.top[k].token = malloc((size_t)len + 1);
                if (res.top[k].token) {
                    memcpy(res.top[k].token, piece, (size_t)len);
                    res.top[k].token[len] = '\0';
                }
                res.top[k].logprob = g->top_logprobs[k];
                res.n_top = k + 1;
            }
        }
        res.seconds = now_s() - j->t0;
    }
    const bool skip = j->stop_all && *j->stop_all;
    if (!skip && !j->done(j->ud, j->i, j->req, e ? NULL : &res, e) && j->stop_all)
        *j->stop_all = true;
    backend_result_free(&res);
    free(j);
}

/* Tokenizes and queues one request in the engine. */
static int submit_job(struct local *l, const struct backend_request *r, size_t i,
                      backend_stream_fn stream, backend_done_fn done, void *ud, bool *stop_all,
                      uint64_t *handle, struct ica_error *err) {
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
    *j = (struct job){l, r, i, stream, done, ud, 0, now_s(), stop_all};
    int32_t *ids = NULL;
    size_t nt = 0;
    int rc = request_tokens(l, r, &ids, &nt, err);
    if (rc == ICA_OK && nt == 0)
        rc = ica_seterr(err, ICA_ERR_ARG, "empty prompt");
    if (rc == ICA_OK) {
        struct gen_params gp = gen_default_params();
        gp.sampling.temperature = r->sampling.temperature;
        gp.sampling.top_p = r->sampling.top_p;
        gp.sampling.top_k = r->sampling.top_k;
        gp.sampling.min_p = r->sampling.min_p;
        gp.sampling.repetition_penalty = r->sampling.repetition_penalty;
        gp.sampling.frequency_penalty = r->sampling.frequency_penalty;
        gp.sampling.presence_penalty = r->sampling.presence_penalty;
        gp.sampling.seed = r->sampling.seed >= 0 ? (uint64_t)r->sampling.seed : 0;
        gp.max_tokens = r->max_tokens;
        gp.stop = r->stop;
        gp.n_stop = (uint32_t)r->n_stop;
        gp.top_logprobs = r->top_logprobs > 0 ? (uint32_t)r->top_logprobs : 0;
        j->n_prompt = (uint32_t)nt;
        rc = engine_submit(l->engine, ids, (uint32_t)nt, &gp, stream ? job_text : NULL, job_done, j,
                           handle, err);
    }
    free(ids);
    if (rc != ICA_OK)
        free(j);
    return rc;
}

static int local_submit(struct backend *b, const struct backend_request *req,
                        backend_stream_fn stream, backend_done_fn done, void *ud, uint64_t *handle,
                        struct ica_error *err) {
    return submit_job((struct local *)b, req, 0, stream, done, ud, NULL, handle, err);
}

static int local_poll(struct backend *b, struct ica_error *err) {
    struct local *l = (struct local *)b;
    if (engine_step(l->engine, err) != ICA_OK)
        return -1;
    return (int)engine_pending(l->engine);
}

static void local_cancel(struct backend *b, uint64_t handle) {
    engine_cancel(((struct local *)b)->engine, handle);
}

static int local_run(struct backend *b, const struct backend_request *reqs, size_t n,
                     backend_stream_fn stream, backend_done_fn done, void *ud,
                     struct ica_error *err) {
    struct local *l = (struct local *)b;
    uint64_t *ids = calloc(n ? n : 1, sizeof *ids);
    if (!ids)
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory for %zu requests", n);
    bool stop_all = false;
    int rc = ICA_OK;
    for (size_t i = 0; i < n && !stop_all; i++) {
        struct ica_error e = {0};
        if (submit_job(l, &reqs[i], i, stream, done, ud, &stop_all, &ids[i], &e) != ICA_OK &&
            !done(ud, i, &reqs[i], NULL, &e))
            stop_all = true;
    }
    while (engine_pending(l->engine)) {
        if (stop_all)
            for (size_t i = 0; i < n; i++)
                if (ids[i])
                    engine_cancel(l->engine, ids[i]);
        if ((rc = engine_step(l->engine, err)) != ICA_OK)
            break;
    }
    free(ids);
    return rc;
}

static int64_t local_count(struct backend *b, const char *text) {
    struct local *l = (struct local *)b;
    int32_t *ids = NULL;
    size_t n = 0;
    if (tok_tokenize(l->vocab, text, strlen(text), true, false, &ids, &n, NULL) != ICA_OK)
        return -1;
    free(ids);
    return (int64_t)n;
}

static uint32_t local_ctx_size(struct backend *b) {
    return engine_n_ctx(((struct local *)b)->engine);
}

static const char *local_describe(struct backend *b) {
    return ((struct local *)b)->desc;
}

static void local_free(struct backend *b) {
    struct local *l = (struct local *)b;
    engine_free(l->engine);
    tok_vocab_free(l->vocab);
    model_free(l->model);
    chat_template_free(l->tmpl_owned);
    free(l->path);
    free(l);
}

static const struct backend_ops g_local_ops = {
    "local",    local_run,    local_count, local_ctx_size, local_describe,
    local_free, local_submit, local_poll,  local_cancel,
};

int local_backend_new(const struct local_options *o, struct backend **out, struct ica_error *err) {
    *out = NULL;
    if (!o || !o->model_path)
        return ica_seterr(err, ICA_ERR_ARG, "local backend: no model path");
    struct local *l = calloc(1, sizeof *l);
    if (!l)
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
    l->base.ops = &g_local_ops;
    l->opt = *o;
    size_t pl = strlen(o->model_path);
    l->path = malloc(pl + 1);
    if (!l->path) {
        free(l);
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
    }
    memcpy(l->path, o->model_path, pl + 1);
    snprintf(l->desc, sizeof l->desc, "local:%s", o->model_path);
    int rc = model_load(o->model_path, &l->model, err);
    if (rc == ICA_OK)
        rc = tok_vocab_from_gguf(model_gguf(l->model), &l->vocab, err);
    if (rc == ICA_OK) {
        struct engine_params ep = engine_default_params();
        ep.n_ctx = o->n_ctx;
        ep.n_batch = o->n_batch;
        ep.kv_type = o->kv_type;
        ep.n_threads = o->n_threads;
        ep.n_seq_max = o->n_parallel;
        ep.kv_mem = o->kv_mem;
        ep.prefix_cache_dir = o->prefix_cache_dir;
        rc = engine_new(l->model, l->vocab, &ep, &l->engine, err);
    }
    if (rc != ICA_OK) {
        local_free(&l->base);
        return rc;
    }
    *out = &l->base;
    return ICA_OK;
}
