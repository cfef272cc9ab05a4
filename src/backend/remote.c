/* Remote backend: OpenAI-compatible servers over libcurl's multi interface.
 *
 * One run keeps up to `concurrency` transfers in flight. Each request has a
 * state (waiting, running, done); a waiting request may carry a not-before
 * time (backoff). A finished transfer is classified as success, retryable
 * (connection error, timeout, 408, 429, 5xx, a stream cut before its end) or
 * final (other 4xx, malformed or error responses, retries exhausted), and
 * reported through the done callback at once unless it is retried. */
#include "remote_internal.h"

#include <curl/curl.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define RESP_MAX     (64u << 20) /* response bodies larger than this are refused */
#define SNIPPET_MAX  200         /* bytes of a server's error body quoted in messages */
#define KEY_FILE_MAX 65536

struct endpoint {
    char *base;    /* as given, normalised: no trailing '/' nor "/v1" */
    char *display; /* base + "/v1" without user:password@ */
    char *url_cmpl, *url_chat;
    int inflight;
    unsigned fails;    /* consecutive failed attempts */
    double down_until; /* after a failure, avoided until then while others are up */
};

struct remote {
    struct backend base;
    struct endpoint *ep;
    size_t n_ep;
    char *model;
    char *key;         /* never printed */
    char *auth_header; /* "Authorization: Bearer <key>" */
    char *desc;
    struct remote_options o; /* scalars only: pointers are not kept */
    size_t rr;               /* round-robin start among equally loaded endpoints */
    uint64_t rng;
    CURLM *multi;
};

void remote_options_init(struct remote_options *o) {
    memset(o, 0, sizeof *o);
    o->concurrency = 4;
    o->timeout_s = 600.0;
    o->connect_timeout_s = 30.0;
    o->max_retries = 5;
    o->backoff_s = 1.0;
    o->backoff_max_s = 60.0;
    o->retry_after_max_s = 300.0;
    o->penalty = REMOTE_PENALTY_AUTO;
    o->stream = false;
}

/* ==== small helpers ==== */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static char *dupn(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static char *cat3(const char *a, const char *b, const char *c) {
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *d = malloc(la + lb + lc + 1);
    if (d) {
        memcpy(d, a, la);
        memcpy(d + la, b, lb);
        memcpy(d + la + lb, c, lc);
        d[la + lb + lc] = '\0';
    }
    return d;
}

static const char *find_bytes(const char *h, size_t hn, const char *n, size_t nn) {
    if (nn == 0)
        return h;
    for (size_t i = 0; i + nn <= hn; i++)
        if (h[i] == n[0] && memcmp(h + i, n, nn) == 0)
            return h + i;
    return NULL;
}

/* ==== construction ==== */

static int endpoint_init(struct endpoint *e, const char *url, struct ica_error *err) {
    size_t n = strlen(url);
    while (n > 0 && isspace((unsigned char)url[n - 1]))
        n--;
    while (n > 0 && url[n - 1] == '/')
        n--;
    if (n >= 3 && !memcmp(url + n - 3, "/v1", 3))
        n -= 3;
    while (n > 0 && url[n - 1] == '/')
        n--;
    size_t scheme = 0;
    if (n > 7 && !strncmp(url, "http://", 7))
        scheme = 7;
    else if (n > 8 && !strncmp(url, "https://", 8))
        scheme = 8;
    if (!scheme)
        return ica_seterr(err, ICA_ERR_ARG,
                          "base URL must start with http:// or https:// and name a host");
    e->base = dupn(url, n);
    if (!e->base)
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
    /* drop user:password@ from what is shown */
    const char *host = e->base + scheme;
    size_t auth_end = strcspn(host, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < auth_end; i++)
        if (host[i] == '@')
            at = host + i;
    if (at) {
        char *pre = dupn(e->base, scheme);
        e->display = pre ? cat3(pre, at + 1, "/v1") : NULL;
        free(pre);
    } else {
        e->display = cat3(e->base, "/v1", "");
    }
    e->url_cmpl = cat3(e->base, "/v1/completions", "");
    e->url_chat = cat3(e->base, "/v1/chat/completions", "");
    if (!e->display || !e->url_cmpl || !e->url_chat)
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
    return ICA_OK;
}

static char *trim_dup(const char *s, size_t n) {
    size_t a = 0;
    while (a < n && isspace((unsigned char)s[a]))
        a++;
    size_t b = a;
    while (b < n && s[b] != '\n' && s[b] != '\r')
        b++;
    while (b > a && isspace((unsigned char)s[b - 1]))
        b--;
    return dupn(s + a, b - a);
}

static int load_key(const struct remote_options *o, char **key, struct ica_error *err) {
    *key = NULL;
    if (o->api_key_file) {
        FILE *f = fopen(o->api_key_file, "rb");
        if (!f)
            return ica_seterr(err, ICA_ERR_IO, "cannot open API key file %s: %s", o->api_key_file,
                              strerror(errno));
        char *buf = malloc(KEY_FILE_MAX);
        size_t n = buf ? fread(buf, 1, KEY_FILE_MAX, f) : 0;
        fclose(f);
        if (!buf)
            return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
        *key = trim_dup(buf, n);
        memset(buf, 0, KEY_FILE_MAX);
        free(buf);
        if (!*key)
            return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
        if (!**key) {
            free(*key);
            *key = NULL;
            return ica_seterr(err, ICA_ERR_FORMAT, "API key file %s: first line is empty",
                              o->api_key_file);
        }
        return ICA_OK;
    }
    if (o->no_env_key)
        return ICA_OK;
    const char *names[2] = {"ICALIGN_API_KEY", "OPENAI_API_KEY"};
    for (int i = 0; i < 2; i++) {
        const char *v = getenv(names[i]);
        if (v && *v) {
            *key = trim_dup(v, strlen(v));
            if (!*key)
                return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
            if (**key)
                return ICA_OK;
            free(*key);
            *key = NULL;
        }
    }
    return ICA_OK;
}

static void remote_free(struct backend *b);
static int remote_run(struct backend *b, const struct backend_request *reqs, size_t n,
                      backend_stream_fn stream, backend_done_fn done, void *ud,
                      struct ica_error *err);
static const char *remote_describe(struct backend *b) {
    return ((struct remote *)b)->desc;
}
static int64_t remote_count_tokens(struct backend *b, const char *text) {
    (void)b;
    (void)text;
    return -1;
}
static uint32_t remote_context_size(struct backend *b) {
    (void)b;
    return 0;
}

static const struct backend_ops remote_ops = {
    "remote",
    remote_run,
    remote_count_tokens,
    remote_context_size,
    remote_describe,
    remote_free,
    NULL,
    NULL,
    NULL, /* no asynchronous interface: concurrency is inside run */
};

int remote_backend_new(const struct remote_options *o, struct backend **out,
                       struct ica_error *err) {
    *out = NULL;
    if (!o || o->n_base_urls == 0 || !o->base_urls)
        return ica_seterr(err, ICA_ERR_ARG, "remote backend: give at least one base URL");
    if (!o->model || !*o->model)
        return ica_seterr(err, ICA_ERR_ARG, "remote backend: give the model name (--model)");
    if (o->concurrency < 1 || o->concurrency > 4096)
        return ica_seterr(err, ICA_ERR_ARG, "remote backend: concurrency %d out of 1..4096",
                          o->concurrency);
    if (!(o->timeout_s > 0) || !(o->connect_timeout_s > 0) || o->max_retries < 0 ||
        !(o->backoff_s >= 0) || !(o->backoff_max_s >= 0) || !(o->retry_after_max_s >= 0))
        return ica_seterr(err, ICA_ERR_ARG, "remote backend: bad timeout/retry options");
    struct remote *r = calloc(1, sizeof *r);
    if (!r)
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
    r->base.ops = &remote_ops;
    r->o = *o;
    r->o.base_urls = NULL;
    r->o.model = NULL;
    r->o.api_key_file = NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        free(r);
        return ica_seterr(err, ICA_ERR_IO, "curl_global_init failed");
    }
    int rc = ICA_OK;
    r->ep = calloc(o->n_base_urls, sizeof *r->ep);
    r->model = strdup(o->model);
    if (!r->ep || !r->model)
        rc = ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
    for (size_t i = 0; rc == ICA_OK && i < o->n_base_urls; i++) {
        r->n_ep = i + 1;
        rc = endpoint_init(&r->ep[i], o->base_urls[i] ? o->base_urls[i] : "", err);
    }
    if (rc == ICA_OK)
        rc = load_key(o, &r->key, err);
    if (rc == ICA_OK && r->key) {
        r->auth_header = cat3("Authorization: Bearer ", r->key, "");
        if (!r->auth_header)
            rc = ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
    }
    if (rc == ICA_OK && r->o.penalty == REMOTE_PENALTY_AUTO) {
        bool openai = false;
        for (size_t i = 0; i < r->n_ep; i++)
            if (strstr(r->ep[i].display, "://api.openai.com"))
                openai = true;
        r->o.penalty = openai ? REMOTE_PENALTY_NONE : REMOTE_PENALTY_BOTH;
    }
    if (rc == ICA_OK) {
        size_t len = strlen("remote:") + strlen(r->model) + 2;
        for (size_t i = 0; i < r->n_ep; i++)
            len += strlen(r->ep[i].display) + 1;
        r->desc = malloc(len);
        if (!r->desc) {
            rc = ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
        } else {
            size_t p = (size_t)snprintf(r->desc, len, "remote:");
            for (size_t i = 0; i < r->n_ep; i++)
                p += (size_t)snprintf(r->desc + p, len - p, "%s%s", i ? "," : "", r->ep[i].display);
            snprintf(r->desc + p, len - p, " %s", r->model);
        }
    }
    if (rc == ICA_OK) {
        r->multi = curl_multi_init();
        if (!r->multi)
            rc = ica_seterr(err, ICA_ERR_NOMEM, "curl_multi_init failed");
    }
    r->rng = (uint64_t)time(NULL) ^ ((uint64_t)(uintptr_t)r << 16);
    if (rc != ICA_OK) {
        remote_free(&r->base);
        return rc;
    }
    *out = &r->base;
    return ICA_OK;
}

static void remote_free(struct backend *b) {
    struct remote *r = (struct remote *)b;
    if (!r)
        return;
    for (size_t i = 0; i < r->n_ep; i++) {
        free(r->ep[i].base);
        free(r->ep[i].display);
        free(r->ep[i].url_cmpl);
        free(r->ep[i].url_chat);
    }
    free(r->ep);
    free(r->model);
    if (r->key)
        memset(r->key, 0, strlen(r->key));
    if (r->auth_header)
        memset(r->auth_header, 0, strlen(r->auth_header));
    free(r->key);
    free(r->auth_header);
    free(r->desc);
    if (r->multi)
        curl_multi_cleanup(r->multi);
    curl_global_cleanup();
    free(r);
}

/* ==== one run ==== */

enum rstate { RS_WAITING, RS_RUNNING, RS_DONE };

struct reqstate {
    enum rstate st;
    int attempts;
    double t_first, not_before;
    size_t emitted; /* bytes already given to the stream callback (across attempts) */
};

struct run;

struct xfer {
    struct run *run;
    size_t idx;
    bool chat, stream_mode; /* stream_mode: the response is being parsed as SSE */
    bool decided_mode;
    CURL *easy;
    struct curl_slist *hdrs;
    char *body;
    struct endpoint *ep;
    char *resp; /* raw body (non-stream, or an error body) */
    size_t resp_len, resp_cap;
    bool resp_overflow;
    struct sse_parser sse;
    bool got_done; /* "[DONE]" seen */
    char *text;    /* accumulated generated text (stream) */
    size_t text_len, text_cap;
    size_t scan_from; /* stop search resumes here */
    int finish;
    struct remote_parsed usage; /* only the usage fields are used */
    struct backend_logprob *top;
    size_t n_top;
    long retry_after; /* seconds, -1 none */
    bool stop_hit, user_cancel, parse_failed;
    struct ica_error perr;
};

struct run {
    struct remote *r;
    const struct backend_request *reqs;
    size_t n;
    struct reqstate *rs;
    backend_stream_fn stream;
    backend_done_fn done;
    void *ud;
    bool cancelled;
    struct xfer **slots;
    int n_slots;
};

/* ---- client-side stop strings ---- */

/* Earliest match of any stop string in t[0..n) at or after from; n if none. */
static size_t stop_find(const struct backend_request *rq, const char *t, size_t n, size_t from) {
    size_t best = n;
    for (size_t i = 0; i < rq->n_stop; i++) {
        const char *s = rq->stop[i];
        size_t sl = s ? strlen(s) : 0;
        if (!sl)
            continue;
        const char *m = find_bytes(t + from, n - from, s, sl);
        if (m && (size_t)(m - t) < best)
            best = (size_t)(m - t);
    }
    return best;
}

/* Longest suffix of t[0..n) that is a proper prefix of a stop string: text
 * that must be held back from the stream callback until it is resolved. */
static size_t stop_holdback(const struct backend_request *rq, const char *t, size_t n) {
    size_t best = 0;
    for (size_t i = 0; i < rq->n_stop; i++) {
        const char *s = rq->stop[i];
        size_t sl = s ? strlen(s) : 0;
        for (size_t k = sl > 0 ? sl - 1 : 0; k > best; k--)
            if (k <= n && memcmp(t + n - k, s, k) == 0) {
                best = k;
                break;
            }
    }
    return best;
}

static size_t max_stop_len(const struct backend_request *rq) {
    size_t m = 0;
    for (size_t i = 0; i < rq->n_stop; i++) {
        size_t sl = rq->stop[i] ? strlen(rq->stop[i]) : 0;
        if (sl > m)
            m = sl;
    }
    return m;
}

/* Gives the stream callback text up to limit that it has not seen yet. */
static void emit_upto(struct xfer *x, size_t limit) {
    struct run *run = x->run;
    struct reqstate *s = &run->rs[x->idx];
    if (!run->stream || x->user_cancel || limit <= s->emitted)
        return;
    if (!run->stream(run->ud, x->idx, x->text + s->emitted, limit - s->emitted))
        x->user_cancel = true;
    s->emitted = limit;
}

/* ---- SSE events ---- */

static bool append(char **buf, size_t *len, size_t *cap, const char *d, size_t n) {
    if (*len + n + 1 > RESP_MAX)
        return false;
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 1024;
        while (c < *len + n + 1)
            c *= 2;
        char *nb = realloc(*buf, c);
        if (!nb)
            return false;
        *buf = nb;
        *cap = c;
    }
    memcpy(*buf + *len, d, n);
    *len += n;
    (*buf)[*len] = '\0';
    return true;
}

static bool on_event(void *ud, const char *data, size_t len) {
    struct xfer *x = ud;
    const struct backend_request *rq = &x->run->reqs[x->idx];
    if (len == 6 && !memcmp(data, "[DONE]", 6)) {
        x->got_done = true;
        return true;
    }
    struct remote_parsed p;
    if (remote_parse_response(data, len, x->chat, true, &p, &x->perr) != ICA_OK) {
        x->parse_failed = true;
        return false;
    }
    if (p.text_len) {
        if (!append(&x->text, &x->text_len, &x->text_cap, p.text, p.text_len)) {
            remote_parsed_free(&p);
            x->parse_failed = true;
            ica_seterr(&x->perr, ICA_ERR_NOMEM, "generated text too large");
            return false;
        }
    }
    if (p.finish >= 0)
        x->finish = p.finish;
    if (p.has_usage) {
        x->usage.has_usage = true;
        x->usage.prompt_tokens = p.prompt_tokens;
        x->usage.completion_tokens = p.completion_tokens;
    }
    if (p.cached_tokens > x->usage.cached_tokens)
        x->usage.cached_tokens = p.cached_tokens;
    if (!x->top && p.n_top) {
        x->top = p.top;
        x->n_top = p.n_top;
        p.top = NULL;
        p.n_top = 0;
    }
    remote_parsed_free(&p);
    size_t cut = stop_find(rq, x->text, x->text_len, x->scan_from);
    if (cut < x->text_len) {
        x->text_len = cut;
        x->text[cut] = '\0';
        x->stop_hit = true;
        emit_upto(x, cut);
        return false; /* nothing after a stop string matters: end the transfer */
    }
    size_t ms = max_stop_len(rq);
    x->scan_from = x->text_len >= ms ? x->text_len - ms + 1 : 0;
    emit_upto(x, x->text_len - stop_holdback(rq, x->text, x->text_len));
    return !x->user_cancel;
}

/* ---- curl callbacks ---- */

static size_t on_header(char *buf, size_t size, size_t nitems, void *ud) {
    struct xfer *x = ud;
    size_t n = size * nitems;
    static const char name[] = "retry-after:";
    if (n > sizeof name - 1 && !strncasecmp(buf, name, sizeof name - 1)) {
        size_t i = sizeof name - 1;
        while (i < n && (buf[i] == ' ' || buf[i] == '\t'))
            i++;
        long v = 0;
        bool digits = false;
        while (i < n && buf[i] >= '0' && buf[i] <= '9' && v < 1000000) {
            v = v * 10 + (buf[i] - '0');
            i++;
            digits = true;
        }
        /* an HTTP-date is not parsed: the backoff applies then */
        if (digits)
            x->retry_after = v;
    }
    return n;
}

static size_t on_write(char *buf, size_t size, size_t nmemb, void *ud) {
    struct xfer *x = ud;
    size_t n = size * nmemb;
    if (!x->decided_mode) {
        x->decided_mode = true;
        long code = 0;
        char *ct = NULL;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ct);
        /* a server may ignore "stream" and answer with one JSON body */
        x->stream_mode = x->run->r->o.stream && code >= 200 && code < 300 &&
                         !(ct && !strncasecmp(ct, "application/json", 16));
    }
    if (!x->stream_mode) {
        if (!append(&x->resp, &x->resp_len, &x->resp_cap, buf, n)) {
            x->resp_overflow = true;
            return 0;
        }
        return n;
    }
    if (!sse_feed(&x->sse, buf, n, on_event, x)) {
        if (!x->parse_failed && !x->stop_hit && !x->user_cancel) {
            x->parse_failed = true;
            ica_seterr(&x->perr, ICA_ERR_NOMEM, "event stream line too long");
        }
        return 0;
    }
    return n;
}

/* ---- errors ---- */

/* Quotes up to SNIPPET_MAX bytes of a body: control bytes become spaces and
 * the API key, should a server echo it, becomes "***". */
static void snippet(const struct remote *r, const char *body, size_t len, char *out, size_t outsz) {
    size_t o = 0;
    size_t kl = r->key ? strlen(r->key) : 0;
    for (size_t i = 0; i < len && o + 4 < outsz && i < SNIPPET_MAX * 4 && o < SNIPPET_MAX; i++) {
        if (kl && i + kl <= len && !memcmp(body + i, r->key, kl)) {
            memcpy(out + o, "***", 3);
            o += 3;
            i += kl - 1;
            continue;
        }
        unsigned char c = (unsigned char)body[i];
        out[o++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    if (o < len && o + 4 < outsz && len > SNIPPET_MAX) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

/* Removes the key from a message that came from elsewhere (curl). */
static void scrub(const struct remote *r, char *msg) {
    size_t kl = r->key ? strlen(r->key) : 0;
    if (!kl)
        return;
    char *p;
    while ((p = strstr(msg, r->key)) != NULL) {
        memmove(p + 3, p + kl, strlen(p + kl) + 1);
        memcpy(p, "***", 3);
    }
}

static bool curl_retryable(CURLcode c) {
    switch (c) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_OUT_OF_MEMORY:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_FILESIZE_EXCEEDED:
    case CURLE_WRITE_ERROR:
        return false;
    default:
        return true;
    }
}

/* ==== transfers ==== */

static void xfer_free(struct xfer *x) {
    if (!x)
        return;
    if (x->easy) {
        curl_multi_remove_handle(x->run->r->multi, x->easy);
        curl_easy_cleanup(x->easy);
    }
    if (x->ep)
        x->ep->inflight--;
    curl_slist_free_all(x->hdrs);
    free(x->body);
    free(x->resp);
    sse_free(&x->sse);
    free(x->text);
    for (size_t i = 0; i < x->n_top; i++)
        free(x->top[i].token);
    free(x->top);
    free(x);
}

/* Least-loaded endpoint among those not cooling down after a failure (all
 * of them when every one is); ties go round-robin. */
static struct endpoint *pick_endpoint(struct remote *r) {
    struct endpoint *best = NULL;
    double t = now_s();
    bool any_up = false;
    for (size_t k = 0; k < r->n_ep; k++)
        any_up |= r->ep[k].down_until <= t;
    for (size_t k = 0; k < r->n_ep; k++) {
        struct endpoint *e = &r->ep[(r->rr + k) % r->n_ep];
        if (any_up && e->down_until > t)
            continue;
        if (!best || e->inflight < best->inflight ||
            (e->inflight == best->inflight && e->fails < best->fails))
            best = e;
    }
    r->rr = (r->rr + 1) % r->n_ep;
    return best;
}

static int xfer_start(struct run *run, size_t idx, struct xfer **out, struct ica_error *err) {
    struct remote *r = run->r;
    const struct backend_request *rq = &run->reqs[idx];
    struct xfer *x = calloc(1, sizeof *x);
    if (!x)
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
    x->run = run;
    x->idx = idx;
    x->chat = rq->prompt == NULL;
    x->finish = -1;
    x->retry_after = -1;
    sse_init(&x->sse);
    int rc = remote_build_body(rq, r->model, r->o.penalty, r->o.stream, &x->body, err);
    if (rc) {
        xfer_free(x);
        return rc;
    }
    x->easy = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    x->hdrs = h;
    if (h)
        h = curl_slist_append(x->hdrs, "Expect:");
    if (h && r->o.stream)
        h = curl_slist_append(x->hdrs, "Accept: text/event-stream");
    if (h && r->auth_header)
        h = curl_slist_append(x->hdrs, r->auth_header);
    if (!x->easy || !h) {
        xfer_free(x);
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory (curl)");
    }
    x->ep = pick_endpoint(r);
    x->ep->inflight++;
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_URL, x->chat ? x->ep->url_chat : x->ep->url_cmpl);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(x->body));
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(r->o.timeout_s * 1000.0 + 0.5));
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(r->o.connect_timeout_s * 1000.0 + 0.5));
    curl_easy_setopt(e, CURLOPT_USERAGENT, "icalign/0.1");
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (curl_multi_add_handle(r->multi, e) != CURLM_OK) {
        xfer_free(x);
        return ica_seterr(err, ICA_ERR_IO, "curl_multi_add_handle failed");
    }
    *out = x;
    return ICA_OK;
}

/* Reports request x->idx as finished (res or err) to the caller. */
static void report(struct run *run, size_t idx, struct backend_result *res,
                   const struct ica_error *err) {
    run->rs[idx].st = RS_DONE;
    if (!run->done(run->ud, idx, &run->reqs[idx], res, err))
        run->cancelled = true;
}

static void finish_ok(struct run *run, struct xfer *x, const struct remote_parsed *p) {
    struct reqstate *s = &run->rs[x->idx];
    const struct backend_request *rq = &run->reqs[x->idx];
    struct backend_result res;
    memset(&res, 0, sizeof res);
    if (p) { /* non-streamed body */
        if (!append(&x->text, &x->text_len, &x->text_cap, p->text ? p->text : "", p->text_len))
            x->text_len = 0;
        x->finish = p->finish;
        x->usage.prompt_tokens = p->prompt_tokens;
        x->usage.completion_tokens = p->completion_tokens;
        x->usage.cached_tokens = p->cached_tokens;
    }
    if (!x->text && !append(&x->text, &x->text_len, &x->text_cap, "", 0)) {
        struct ica_error e;
        ica_seterr(&e, ICA_ERR_NOMEM, "out of memory");
        report(run, x->idx, &res, &e);
        return;
    }
    /* the server applies the stop strings too; cut again to be safe */
    size_t cut = stop_find(rq, x->text, x->text_len, 0);
    if (cut < x->text_len) {
        x->text_len = cut;
        x->text[cut] = '\0';
        x->stop_hit = true;
    }
    emit_upto(x, x->text_len);
    res.text = x->text;
    res.text_len = x->text_len;
    x->text = NULL;
    x->text_len = x->text_cap = 0;
    res.finish = x->user_cancel   ? BACKEND_FINISH_CANCELLED
                 : x->stop_hit    ? BACKEND_FINISH_STOP
                 : x->finish >= 0 ? (enum backend_finish)x->finish
                                  : BACKEND_FINISH_STOP;
    res.prompt_tokens = x->usage.prompt_tokens;
    res.completion_tokens = x->usage.completion_tokens;
    res.cached_tokens = x->usage.cached_tokens;
    if (p && p->n_top) {
        struct remote_parsed *pp = (struct remote_parsed *)p;
        res.top = pp->top;
        res.n_top = pp->n_top;
        pp->top = NULL;
        pp->n_top = 0;
    } else {
        res.top = x->top;
        res.n_top = x->n_top;
        x->top = NULL;
        x->n_top = 0;
    }
    res.seconds = now_s() - s->t_first;
    res.attempts = s->attempts;
    x->ep->fails = 0;
    x->ep->down_until = 0;
    report(run, x->idx, &res, NULL);
    backend_result_free(&res);
}

/* Either schedules another attempt or reports the failure for good. */
static void finish_fail(struct run *run, struct xfer *x, bool retryable, int code,
                        const char *msg) {
    struct remote *r = run->r;
    struct reqstate *s = &run->rs[x->idx];
    x->ep->fails++;
    if (retryable) {
        unsigned f = x->ep->fails < 16 ? x->ep->fails : 16;
        double cool = r->o.backoff_s * ldexp(1.0, (int)f - 1);
        x->ep->down_until = now_s() + (cool < r->o.backoff_max_s ? cool : r->o.backoff_max_s);
    }
    if (retryable && s->attempts <= r->o.max_retries) {
        double d;
        if (x->retry_after >= 0) {
            d = (double)x->retry_after;
            if (d > r->o.retry_after_max_s)
                d = r->o.retry_after_max_s;
            d += d * 0.1 * (double)(rng_next(&r->rng) >> 11) * 0x1.0p-53;
        } else {
            d = r->o.backoff_s * ldexp(1.0, s->attempts - 1);
            if (d > r->o.backoff_max_s)
                d = r->o.backoff_max_s;
            d *= 0.5 + 0.5 * (double)(rng_next(&r->rng) >> 11) * 0x1.0p-53; /* jitter */
        }
        s->st = RS_WAITING;
        s->not_before = now_s() + d;
        return;
    }
    struct ica_error e;
    if (retryable && s->attempts > 1)
        ica_seterr(&e, code, "%s (gave up after %d attempts)", msg, s->attempts);
    else
        ica_seterr(&e, code, "%s", msg);
    scrub(r, e.msg);
    struct backend_result res;
    memset(&res, 0, sizeof res);
    res.attempts = s->attempts;
    res.seconds = now_s() - s->t_first;
    report(run, x->idx, &res, &e);
}

static void xfer_done(struct run *run, struct xfer *x, CURLcode cc) {
    long code = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    const char *shown = x->ep->display;
    const char *path = x->chat ? "/chat/completions" : "/completions";
    char msg[ICA_ERRMSG_MAX];
    char snip[SNIPPET_MAX + 8];
    if (x->user_cancel || x->stop_hit) {
        finish_ok(run, x, NULL);
        return;
    }
    if (x->parse_failed) {
        snprintf(msg, sizeof msg, "POST %s%s: bad event stream: %.300s", shown, path, x->perr.msg);
        finish_fail(run, x, false, x->perr.code ? x->perr.code : ICA_ERR_FORMAT, msg);
        return;
    }
    if (x->resp_overflow) {
        snprintf(msg, sizeof msg, "POST %s%s: response larger than %u bytes", shown, path,
                 RESP_MAX);
        finish_fail(run, x, false, ICA_ERR_RANGE, msg);
        return;
    }
    if (cc != CURLE_OK) {
        const char *what = cc == CURLE_OPERATION_TIMEDOUT ? "timed out" : curl_easy_strerror(cc);
        if (code >= 200 && code < 300)
            snprintf(msg, sizeof msg, "POST %s%s: connection lost mid-response: %s", shown, path,
                     what);
        else if (cc == CURLE_OPERATION_TIMEDOUT)
            snprintf(msg, sizeof msg, "POST %s%s: timed out after %.3g s", shown, path,
                     run->r->o.timeout_s);
        else
            snprintf(msg, sizeof msg, "POST %s%s: %s", shown, path, what);
        finish_fail(run, x, curl_retryable(cc), ICA_ERR_IO, msg);
        return;
    }
    if (code < 200 || code >= 300) {
        snippet(run->r, x->resp ? x->resp : "", x->resp_len, snip, sizeof snip);
        snprintf(msg, sizeof msg, "POST %s%s: HTTP %ld%s%s", shown, path, code, snip[0] ? ": " : "",
                 snip);
        bool retry = code == 408 || code == 429 || code >= 500;
        finish_fail(run, x, retry, code == 404 ? ICA_ERR_NOTFOUND : ICA_ERR_IO, msg);
        return;
    }
    if (x->stream_mode) {
        if (!sse_finish(&x->sse, on_event, x) && (x->parse_failed)) {
            snprintf(msg, sizeof msg, "POST %s%s: bad event stream: %.300s", shown, path,
                     x->perr.msg);
            finish_fail(run, x, false, x->perr.code ? x->perr.code : ICA_ERR_FORMAT, msg);
            return;
        }
        if (x->user_cancel || x->stop_hit || x->got_done || x->finish >= 0) {
            finish_ok(run, x, NULL);
            return;
        }
        snprintf(msg, sizeof msg, "POST %s%s: event stream ended before [DONE]", shown, path);
        finish_fail(run, x, true, ICA_ERR_IO, msg);
        return;
    }
    struct remote_parsed p;
    struct ica_error pe;
    ica_clearerr(&pe);
    if (remote_parse_response(x->resp ? x->resp : "", x->resp_len, x->chat, false, &p, &pe)) {
        snippet(run->r, x->resp ? x->resp : "", x->resp_len, snip, sizeof snip);
        snprintf(msg, sizeof msg, "POST %s%s: HTTP %ld: %.200s%s%s", shown, path, code, pe.msg,
                 snip[0] ? ": " : "", snip);
        finish_fail(run, x, false, pe.code, msg);
        return;
    }
    finish_ok(run, x, &p);
    remote_parsed_free(&p);
}

static int remote_run(struct backend *b, const struct backend_request *reqs, size_t n,
                      backend_stream_fn stream, backend_done_fn done, void *ud,
                      struct ica_error *err) {
    struct remote *r = (struct remote *)b;
    if (n == 0)
        return ICA_OK;
    if (!done)
        return ica_seterr(err, ICA_ERR_ARG, "backend_run: no done callback");
    for (size_t i = 0; i < n; i++)
        if (reqs[i].sampling.repetition_penalty != 1.0f && r->o.penalty == REMOTE_PENALTY_NONE)
            return ica_seterr(err, ICA_ERR_UNSUPPORTED,
                              "%s: request %zu asks for repetition_penalty %g, which this server "
                              "does not accept (the OpenAI API has none): use 1, or "
                              "frequency/presence penalties",
                              r->desc, i, (double)reqs[i].sampling.repetition_penalty);
    struct run run;
    memset(&run, 0, sizeof run);
    run.r = r;
    run.reqs = reqs;
    run.n = n;
    run.stream = stream;
    run.done = done;
    run.ud = ud;
    run.n_slots = r->o.concurrency;
    run.rs = calloc(n, sizeof *run.rs);
    run.slots = calloc((size_t)run.n_slots, sizeof *run.slots);
    if (!run.rs || !run.slots) {
        free(run.rs);
        free(run.slots);
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
    }
    int rc = ICA_OK;
    size_t n_done = 0, first_waiting = 0;
    int active = 0;
    while (!run.cancelled) {
        /* start what may start */
        double t = now_s();
        double next_ready = INFINITY;
        for (size_t i = first_waiting; i < n && active < run.n_slots && !run.cancelled; i++) {
            struct reqstate *s = &run.rs[i];
            if (s->st != RS_WAITING)
                continue;
            if (s->not_before > t) {
                if (s->not_before < next_ready)
                    next_ready = s->not_before;
                continue;
            }
            int slot = 0;
            while (run.slots[slot])
                slot++;
            struct ica_error se;
            ica_clearerr(&se);
            if (s->attempts == 0)
                s->t_first = t;
            s->attempts++;
            s->st = RS_RUNNING;
            int src = xfer_start(&run, i, &run.slots[slot], &se);
            if (src == ICA_ERR_NOMEM) {
                rc = ica_seterr(err, src, "%s", se.msg);
                goto out;
            }
            if (src != ICA_OK) {
                struct backend_result res;
                memset(&res, 0, sizeof res);
                res.attempts = s->attempts;
                report(&run, i, &res, &se);
                continue;
            }
            active++;
        }
        n_done = 0;
        while (first_waiting < n && run.rs[first_waiting].st == RS_DONE)
            first_waiting++;
        for (size_t i = first_waiting; i < n; i++)
            n_done += run.rs[i].st == RS_DONE;
        n_done += first_waiting;
        if (n_done == n || run.cancelled)
            break;
        int running = 0;
        CURLMcode mc = curl_multi_perform(r->multi, &running);
        if (mc != CURLM_OK) {
            rc = ica_seterr(err, ICA_ERR_IO, "curl_multi_perform: %s", curl_multi_strerror(mc));
            goto out;
        }
        bool progressed = false;
        CURLMsg *m;
        int left = 0;
        while ((m = curl_multi_info_read(r->multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE)
                continue;
            char *priv = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
            struct xfer *x = (struct xfer *)(void *)priv;
            CURLcode cc = m->data.result;
            int slot = 0;
            while (slot < run.n_slots && run.slots[slot] != x)
                slot++;
            if (!x || slot == run.n_slots)
                continue;
            if (!run.cancelled)
                xfer_done(&run, x, cc);
            run.slots[slot] = NULL;
            xfer_free(x);
            active--;
            progressed = true;
        }
        if (run.cancelled)
            break;
        if (progressed)
            continue; /* slots freed or retries scheduled: start before waiting */
        /* wait for traffic, a curl timer or the next backoff to expire */
        long tmo = 100;
        long ct = -1;
        curl_multi_timeout(r->multi, &ct);
        if (ct >= 0 && ct < tmo)
            tmo = ct;
        if (next_ready < INFINITY) {
            double w = (next_ready - now_s()) * 1000.0;
            if (w < (double)tmo)
                tmo = w < 0 ? 0 : (long)w + 1;
        }
        if (active > 0 || tmo > 0) {
            mc = curl_multi_poll(r->multi, NULL, 0, (int)tmo, NULL);
            if (mc != CURLM_OK) {
                rc = ica_seterr(err, ICA_ERR_IO, "curl_multi_poll: %s", curl_multi_strerror(mc));
                goto out;
            }
        }
    }
out:
    for (int s = 0; s < run.n_slots; s++) {
        xfer_free(run.slots[s]);
        run.slots[s] = NULL;
    }
    free(run.slots);
    free(run.rs);
    return rc;
}
