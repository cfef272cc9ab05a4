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
    struct model_ctx *ctx;
    /* Chat template for chat requests (NULL until the first chat request
     * finds one); owned when loaded from a file. */
    const struct chat_template *tmpl;
    struct chat_template *tmpl_owned;
    bool tmpl_looked_up;
    /* Tokens whose keys/values are in the context, in order. */
    int32_t *cached;
    uint32_t n_cached;
};

struct local_options local_default_options(void) {
    struct local_options o;
    memset(&o, 0, sizeof o);
    o.kv_type = ICA_F32;
    return o;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct stream_ctx {
    backend_stream_fn fn;
    void *ud;
    size_t i;
};

static bool on_text(void *ud, const char *text, size_t len) {
    struct stream_ctx *s = ud;
    return s->fn(s->ud, s->i, text, len);
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

static int run_one(struct local *l, const struct backend_request *r, size_t i,
                   backend_stream_fn stream, void *ud, struct backend_result *res,
                   struct ica_error *err) {
    const double t0 = now_s();
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = request_tokens(l, r, &ids, &n, err);
    if (rc != ICA_OK)
        return rc;
    if (n == 0) {
        free(ids);
        return ica_seterr(err, ICA_ERR_ARG, "empty prompt");
    }
    const uint32_t n_ctx = model_ctx_n_ctx(l->ctx);
    if (n + r->max_tokens > n_ctx) {
        free(ids);
        return ica_seterr(err, ICA_ERR_RANGE,
                          "prompt of %zu tokens + %u new tokens exceeds the context of %u tokens",
                          n, r->max_tokens, n_ctx);
    }
    /* Reuse the longest common prefix with what the cache holds; at least
     * one token is evaluated to get the next logits. */
    uint32_t keep = 0;
    while (keep < l->n_cached && keep < n && l->cached[keep] == ids[keep])
        keep++;
    if (keep == n)
        keep--;
    model_ctx_truncate(l->ctx, keep);
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
    gp.context_ids = ids;
    gp.n_context_ids = keep;
    gp.top_logprobs = r->top_logprobs > 0 ? (uint32_t)r->top_logprobs : 0;
    struct stream_ctx sc = {stream, ud, i};
    struct gen_result g;
    l->n_cached = keep; /* the cache is only valid up to here if generation fails */
    rc = engine_generate(l->ctx, l->vocab, ids + keep, (uint32_t)(n - keep), &gp,
                         stream ? on_text : NULL, &sc, &g, err);
    if (rc != ICA_OK) {
        free(ids);
        return rc;
    }
    /* The context now holds the prompt and all generated tokens but the last. */
    const uint32_t total = (uint32_t)n + (g.n_ids ? g.n_ids - 1 : 0);
    int32_t *c = realloc(l->cached, (total + 1) * sizeof *c);
    if (c) {
        l->cached = c;
        memcpy(c, ids, n * sizeof *c);
        if (g.n_ids > 1)
            memcpy(c + n, g.ids, (g.n_ids - 1) * sizeof *c);
        l->n_cached = model_ctx_n_past(l->ctx) < total ? model_ctx_n_past(l->ctx) : total;
    }
    res->text = g.text;
    res->text_len = g.text_len;
    g.text = NULL;
    res->finish = g.reason == GEN_STOP_MAX_TOKENS  ? BACKEND_FINISH_LENGTH
                  : g.reason == GEN_STOP_CANCELLED ? BACKEND_FINISH_CANCELLED
                                                   : BACKEND_FINISH_STOP;
    res->prompt_tokens = (uint32_t)n;
    res->completion_tokens = g.n_ids;
    res->cached_tokens = keep;
    res->attempts = 1;
    if (g.n_top) {
        res->top = calloc(g.n_top, sizeof *res->top);
        for (uint32_t k = 0; res->top && k < g.n_top; k++) {
            char piece[256];
            int32_t len = tok_token_to_piece(l->vocab, g.top_ids[k], true, 0, piece, sizeof piece);
            if (len < 0)
                len = 0;
            res->top[k].token = malloc((size_t)len + 1);
            if (res->top[k].token) {
                memcpy(res->top[k].token, piece, (size_t)len);
                res->top[k].token[len] = '\0';
            }
            res->top[k].logprob = g.top_logprobs[k];
            res->n_top = k + 1;
        }
    }
    gen_result_free(&g);
    free(ids);
    res->seconds = now_s() - t0;
    return ICA_OK;
}

static int local_run(struct backend *b, const struct backend_request *reqs, size_t n,
                     backend_stream_fn stream, backend_done_fn done, void *ud,
                     struct ica_error *err) {
    struct local *l = (struct local *)b;
    (void)err;
    for (size_t i = 0; i < n; i++) {
        struct backend_result res;
        memset(&res, 0, sizeof res);
        struct ica_error e = {0};
        int rc = run_one(l, &reqs[i], i, stream, ud, &res, &e);
        bool go_on = done(ud, i, &reqs[i], rc == ICA_OK ? &res : NULL, rc == ICA_OK ? NULL : &e);
        backend_result_free(&res);
        if (!go_on)
            break;
    }
    return ICA_OK;
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
    return model_ctx_n_ctx(((struct local *)b)->ctx);
}

static const char *local_describe(struct backend *b) {
    return ((struct local *)b)->desc;
}

static void local_free(struct backend *b) {
    struct local *l = (struct local *)b;
    model_ctx_free(l->ctx);
    tok_vocab_free(l->vocab);
    model_free(l->model);
    chat_template_free(l->tmpl_owned);
    free(l->cached);
    free(l->path);
    free(l);
}

static const struct backend_ops g_local_ops = {
    "local", local_run, local_count, local_ctx_size, local_describe, local_free,
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
        const struct model_hparams *hp = model_get_hparams(l->model);
        struct model_ctx_params cp = model_ctx_default_params();
        cp.n_ctx = o->n_ctx ? o->n_ctx : (hp->n_ctx_train < 8192 ? hp->n_ctx_train : 8192);
        if (o->n_batch)
            cp.n_batch = o->n_batch;
        cp.kv_type = o->kv_type ? o->kv_type : ICA_F32;
        cp.n_threads = o->n_threads;
        rc = model_ctx_new(l->model, &cp, &l->ctx, err);
    }
    if (rc != ICA_OK) {
        local_free(&l->base);
        return rc;
    }
    *out = &l->base;
    return ICA_OK;
}
