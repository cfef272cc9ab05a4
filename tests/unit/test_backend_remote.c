/* Remote backend against a real OpenAI-compatible HTTP server on 127.0.0.1
 * (libmicrohttpd, started inside the test) with injected faults, plus the
 * SSE and response parsers and the request bodies on their own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/backend/remote_internal.h"
#include "icalign/remote.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <json-c/json.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ==== the test server ==== */

enum mode {
    M_OK,          /* {"choices":[{"text":"re:<prompt>"}]} (chat: message.content) */
    M_STATUS,      /* always `status` with `errbody` */
    M_FAIL_FIRST,  /* `fail_first` times `status` (+ Retry-After if set), then M_OK */
    M_SLOW,        /* sleep `delay` then M_OK */
    M_MALFORMED,   /* 200 with a broken body */
    M_STREAM,      /* SSE in chunks of 1..3 bytes */
    M_STREAM_DROP, /* first `fail_first` streams stop mid-way, then M_STREAM */
    M_ECHO_AUTH,   /* 401 whose body quotes the Authorization header */
    M_RAW,         /* 200 with `raw` as the JSON body */
};

struct srv {
    struct MHD_Daemon *d;
    int port;
    pthread_mutex_t mu;
    enum mode mode;
    int status;
    const char *errbody;
    const char *retry_after;
    const char *raw;
    int fail_first;
    double delay; /* every request sleeps this long first */
    int hits;
    int inflight, max_inflight;
    char last_body[16384];
    char last_auth[256];
    char last_url[256];
};

struct conn {
    char *body;
    size_t len;
};

struct chunked {
    char *data;
    size_t len, pos;
    size_t drop_at; /* SIZE_MAX = never */
    unsigned step;
};

static void msleep(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static ssize_t chunk_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    struct chunked *c = cls;
    if (c->pos >= c->drop_at)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (c->pos >= c->len)
        return MHD_CONTENT_READER_END_OF_STREAM;
    size_t n = 1 + (c->step++ % 3);
    if (n > c->len - c->pos)
        n = c->len - c->pos;
    if (c->drop_at != SIZE_MAX && n > c->drop_at - c->pos)
        n = c->drop_at - c->pos;
    if (n > max)
        n = max;
    memcpy(buf, c->data + c->pos, n);
    c->pos += n;
    msleep(0.0005); /* let each piece go out on its own */
    return (ssize_t)n;
}

static void chunk_free(void *cls) {
    struct chunked *c = cls;
    free(c->data);
    free(c);
}

/* The text the server generates for a request: "re:" + the prompt or the
 * last message. */
static char *reply_text(const char *body, bool *chat) {
    json_object *o = json_tokener_parse(body);
    const char *p = "";
    json_object *v = NULL, *msgs = NULL;
    *chat = false;
    if (o && json_object_object_get_ex(o, "prompt", &v)) {
        p = json_object_get_string(v);
    } else if (o && json_object_object_get_ex(o, "messages", &msgs)) {
        *chat = true;
        size_t n = json_object_array_length(msgs);
        json_object *c = NULL;
        if (n && json_object_object_get_ex(json_object_array_get_idx(msgs, n - 1), "content", &c))
            p = json_object_get_string(c);
    }
    size_t n = strlen(p) + 4;
    char *t = malloc(n);
    snprintf(t, n, "re:%s", p);
    json_object_put(o);
    return t;
}

static char *json_str(const char *s) {
    json_object *j = json_object_new_string(s);
    char *r = strdup(json_object_to_json_string(j));
    json_object_put(j);
    return r;
}

static struct MHD_Response *make_ok(const char *body, unsigned *status) {
    bool chat;
    char *t = reply_text(body, &chat);
    char *js = json_str(t);
    size_t n = strlen(js) + 512;
    char *out = malloc(n);
    if (chat)
        snprintf(out, n,
                 "{\"id\":\"x\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                 "\"content\":%s},\"finish_reason\":\"stop\",\"logprobs\":{\"content\":[{"
                 "\"token\":\"re\",\"logprob\":-0.1,\"top_logprobs\":[{\"token\":\"m\",\"logprob\":"
                 "-2.5},{\"token\":\"re\",\"logprob\":-0.1}]}]}}],\"usage\":{\"prompt_tokens\":7,"
                 "\"completion_tokens\":3,\"prompt_tokens_details\":{\"cached_tokens\":4}}}",
                 js);
    else
        snprintf(out, n,
                 "{\"id\":\"x\",\"object\":\"text_completion\",\"choices\":[{\"index\":0,\"text\":"
                 "%s,\"finish_reason\":\"length\",\"logprobs\":null}],\"usage\":{\"prompt_tokens\":"
                 "5,\"completion_tokens\":2},\"timings\":{\"cache_n\":3}}",
                 js);
    free(t);
    free(js);
    *status = 200;
    return MHD_create_response_from_buffer(strlen(out), out, MHD_RESPMEM_MUST_FREE);
}

static struct MHD_Response *make_stream(const char *body, size_t drop_at) {
    bool chat;
    char *t = reply_text(body, &chat);
    size_t tl = strlen(t);
    size_t cap = 512 + tl * 160;
    char *out = malloc(cap);
    size_t o = 0;
    o += (size_t)snprintf(out + o, cap - o, ": keep-alive comment\r\n\r\n");
    /* one event per 2 bytes of text, CRLF and LF line ends mixed */
    for (size_t i = 0; i < tl; i += 2) {
        char piece[3] = {t[i], i + 1 < tl ? t[i + 1] : '\0', '\0'};
        char *js = json_str(piece);
        if (chat)
            o += (size_t)snprintf(out + o, cap - o,
                                  "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":%s},"
                                  "\"finish_reason\":null}]}%s",
                                  js, (i / 2) % 2 ? "\r\n\r\n" : "\n\n");
        else
            o += (size_t)snprintf(out + o, cap - o,
                                  "data: {\"choices\":[{\"index\":0,\"text\":%s,"
                                  "\"finish_reason\":null}]}%s",
                                  js, (i / 2) % 2 ? "\r\n\r\n" : "\n\n");
        free(js);
    }
    o += (size_t)snprintf(out + o, cap - o,
                          "data: {\"choices\":[{\"index\":0,\"text\":\"\",\"delta\":{},"
                          "\"finish_reason\":\"stop\"}]}\n\n"
                          "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,"
                          "\"completion_tokens\":%zu}}\n\ndata: [DONE]\n\n",
                          (tl + 1) / 2);
    free(t);
    struct chunked *c = calloc(1, sizeof *c);
    c->data = out;
    c->len = o;
    c->drop_at = drop_at;
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64, chunk_reader, c, chunk_free);
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    return r;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls) {
    (void)method;
    (void)version;
    struct srv *s = cls;
    struct conn *cn = *con_cls;
    if (!cn) {
        cn = calloc(1, sizeof *cn);
        *con_cls = cn;
        return MHD_YES;
    }
    if (*upload_size) {
        cn->body = realloc(cn->body, cn->len + *upload_size + 1);
        memcpy(cn->body + cn->len, upload, *upload_size);
        cn->len += *upload_size;
        cn->body[cn->len] = '\0';
        *upload_size = 0;
        return MHD_YES;
    }
    const char *body = cn->body ? cn->body : "";
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    pthread_mutex_lock(&s->mu);
    int hit = ++s->hits;
    if (++s->inflight > s->max_inflight)
        s->max_inflight = s->inflight;
    snprintf(s->last_body, sizeof s->last_body, "%s", body);
    snprintf(s->last_auth, sizeof s->last_auth, "%s", auth ? auth : "");
    snprintf(s->last_url, sizeof s->last_url, "%s", url);
    enum mode mode = s->mode;
    pthread_mutex_unlock(&s->mu);
    if (s->delay > 0)
        msleep(s->delay);
    unsigned status = 200;
    struct MHD_Response *r = NULL;
    switch (mode) {
    case M_OK:
        r = make_ok(body, &status);
        break;
    case M_STATUS:
        status = (unsigned)s->status;
        r = MHD_create_response_from_buffer(strlen(s->errbody), (void *)s->errbody,
                                            MHD_RESPMEM_PERSISTENT);
        break;
    case M_FAIL_FIRST:
        if (hit <= s->fail_first) {
            status = (unsigned)s->status;
            r = MHD_create_response_from_buffer(strlen(s->errbody), (void *)s->errbody,
                                                MHD_RESPMEM_PERSISTENT);
            if (s->retry_after)
                MHD_add_response_header(r, "Retry-After", s->retry_after);
        } else {
            r = make_ok(body, &status);
        }
        break;
    case M_SLOW:
        msleep(0.8);
        r = make_ok(body, &status);
        break;
    case M_MALFORMED: {
        static const char bad[] = "{\"choices\":[{\"text\":\"oops\"";
        r = MHD_create_response_from_buffer(sizeof bad - 1, (void *)bad, MHD_RESPMEM_PERSISTENT);
        break;
    }
    case M_STREAM:
        r = make_stream(body, SIZE_MAX);
        break;
    case M_STREAM_DROP:
        r = make_stream(body, hit <= s->fail_first ? 150 : SIZE_MAX);
        break;
    case M_ECHO_AUTH: {
        char buf[512];
        snprintf(buf, sizeof buf, "{\"error\":{\"message\":\"bad key: %s\"}}", auth ? auth : "");
        status = 401;
        r = MHD_create_response_from_buffer(strlen(buf), buf, MHD_RESPMEM_MUST_COPY);
        break;
    }
    case M_RAW:
        r = MHD_create_response_from_buffer(strlen(s->raw), (void *)s->raw, MHD_RESPMEM_PERSISTENT);
        break;
    }
    if (mode != M_STREAM && mode != M_STREAM_DROP)
        MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    pthread_mutex_lock(&s->mu);
    s->inflight--;
    pthread_mutex_unlock(&s->mu);
    return ret;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)c;
    (void)toe;
    struct conn *cn = *con_cls;
    if (cn) {
        free(cn->body);
        free(cn);
        *con_cls = NULL;
    }
}

static void srv_start(struct srv *s, enum mode mode) {
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->mode = mode;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = 0;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->d =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL,
                         NULL, handler, s, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED,
                         completed, s, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    assert_non_null(s->d);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    assert_non_null(di);
    s->port = di->port;
    assert_true(s->port > 0);
}

static void srv_stop(struct srv *s) {
    MHD_stop_daemon(s->d);
    pthread_mutex_destroy(&s->mu);
}

static void srv_url(const struct srv *s, char *buf, size_t n) {
    snprintf(buf, n, "http://127.0.0.1:%d", s->port);
}

/* ==== collecting results ==== */

#define MAXR 16

struct got {
    int calls[MAXR];
    char *text[MAXR];
    int finish[MAXR];
    int attempts[MAXR];
    uint32_t pt[MAXR], ct[MAXR], cached[MAXR];
    size_t n_top[MAXR];
    char top0[MAXR][32];
    double top0_lp[MAXR];
    bool failed[MAXR];
    struct ica_error err[MAXR];
    char streamed[MAXR][512];
    size_t streamed_len[MAXR];
    int stream_calls;
    int cancel_after; /* return false after this many done calls (0 = never) */
    int n_done;
};

static bool on_done(void *ud, size_t i, const struct backend_request *req, struct backend_result *r,
                    const struct ica_error *err) {
    (void)req;
    struct got *g = ud;
    assert_true(i < MAXR);
    g->calls[i]++;
    g->n_done++;
    g->attempts[i] = r->attempts;
    if (err) {
        g->failed[i] = true;
        g->err[i] = *err;
    } else {
        g->text[i] = r->text; /* take ownership */
        r->text = NULL;
        g->finish[i] = (int)r->finish;
        g->pt[i] = r->prompt_tokens;
        g->ct[i] = r->completion_tokens;
        g->cached[i] = r->cached_tokens;
        g->n_top[i] = r->n_top;
        if (r->n_top) {
            snprintf(g->top0[i], sizeof g->top0[i], "%s", r->top[0].token);
            g->top0_lp[i] = r->top[0].logprob;
        }
    }
    return !(g->cancel_after && g->n_done >= g->cancel_after);
}

static bool on_stream(void *ud, size_t i, const char *text, size_t len) {
    struct got *g = ud;
    g->stream_calls++;
    assert_true(g->streamed_len[i] + len < sizeof g->streamed[i]);
    memcpy(g->streamed[i] + g->streamed_len[i], text, len);
    g->streamed_len[i] += len;
    return true;
}

static void got_free(struct got *g) {
    for (int i = 0; i < MAXR; i++)
        free(g->text[i]);
}

static struct backend *mk(const char *const *urls, size_t n, int conc, int retries, double tmo,
                          bool stream) {
    struct remote_options o;
    remote_options_init(&o);
    o.base_urls = urls;
    o.n_base_urls = n;
    o.model = "test-model";
    o.no_env_key = true;
    o.concurrency = conc;
    o.max_retries = retries;
    o.timeout_s = tmo;
    o.backoff_s = 0.02;
    o.backoff_max_s = 0.1;
    o.stream = stream;
    struct backend *b = NULL;
    struct ica_error e = {0};
    assert_int_equal(remote_backend_new(&o, &b, &e), ICA_OK);
    return b;
}

static struct backend_request creq(const char *prompt) {
    struct backend_request r;
    memset(&r, 0, sizeof r);
    r.prompt = prompt;
    r.sampling = backend_default_sampling();
    r.max_tokens = 16;
    return r;
}

/* ==== parsers ==== */

struct evs {
    char buf[4096];
    size_t len;
    int n;
};

static bool collect_ev(void *ud, const char *d, size_t n) {
    struct evs *e = ud;
    assert_true(e->len + n + 2 < sizeof e->buf);
    memcpy(e->buf + e->len, d, n);
    e->len += n;
    e->buf[e->len++] = '|';
    e->buf[e->len] = '\0';
    e->n++;
    return true;
}

static void test_sse_splits(void **st) {
    (void)st;
    static const char in[] = "\xEF\xBB\xBF: comment\r\n"
                             "data: one\r\n\r\n"
                             "event: x\nid: 7\ndata:two\ndata:  three\n\n"
                             "data\r\rdata: {\"a\":1}\r\n"
                             "retry: 10\r\n\r\n"
                             "data: [DONE]\n\n"
                             "data: tail-without-blank";
    static const char want[] = "one|two\n three||{\"a\":1}|[DONE]|tail-without-blank|";
    size_t n = sizeof in - 1;
    /* every split into two pieces, and byte by byte */
    for (size_t cut = 0; cut <= n; cut++) {
        struct sse_parser p;
        struct evs e;
        memset(&e, 0, sizeof e);
        sse_init(&p);
        assert_true(sse_feed(&p, in, cut, collect_ev, &e));
        assert_true(sse_feed(&p, in + cut, n - cut, collect_ev, &e));
        assert_true(sse_finish(&p, collect_ev, &e));
        sse_free(&p);
        assert_string_equal(e.buf, want);
    }
    struct sse_parser p;
    struct evs e;
    memset(&e, 0, sizeof e);
    sse_init(&p);
    for (size_t i = 0; i < n; i++)
        assert_true(sse_feed(&p, in + i, 1, collect_ev, &e));
    assert_true(sse_finish(&p, collect_ev, &e));
    sse_free(&p);
    assert_string_equal(e.buf, want);
    /* no BOM, a stream that is only a BOM prefix */
    memset(&e, 0, sizeof e);
    sse_init(&p);
    assert_true(sse_feed(&p, "\xEF\xBB", 2, collect_ev, &e));
    assert_true(sse_finish(&p, collect_ev, &e));
    sse_free(&p);
    assert_int_equal(e.n, 0);
}

static void test_parse(void **st) {
    (void)st;
    struct remote_parsed p;
    struct ica_error e = {0};
    const char *cmpl = "{\"choices\":[{\"text\":\"hi\",\"finish_reason\":\"length\",\"logprobs\":"
                       "{\"tokens\":[\"hi\"],\"top_logprobs\":[{\"hi\":-0.5,\"yo\":-1.5,\"a\":-0.1}"
                       "]}}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,"
                       "\"prompt_tokens_details\":{\"cached_tokens\":2}}}";
    assert_int_equal(remote_parse_response(cmpl, strlen(cmpl), false, false, &p, &e), ICA_OK);
    assert_string_equal(p.text, "hi");
    assert_int_equal(p.finish, BACKEND_FINISH_LENGTH);
    assert_int_equal(p.prompt_tokens, 3);
    assert_int_equal(p.completion_tokens, 1);
    assert_int_equal(p.cached_tokens, 2);
    assert_int_equal(p.n_top, 3);
    assert_string_equal(p.top[0].token, "a");
    assert_string_equal(p.top[1].token, "hi");
    assert_string_equal(p.top[2].token, "yo");
    remote_parsed_free(&p);

    /* chat, llama.cpp shape of logprobs, cache count from timings */
    const char *chat = "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"m\"},"
                       "\"finish_reason\":\"stop\",\"logprobs\":{\"content\":[{\"token\":\"m\","
                       "\"logprob\":-0.2,\"top_logprobs\":[{\"token\":\"M\",\"logprob\":-3},"
                       "{\"token\":\"m\",\"logprob\":-0.2}]}]}}],\"timings\":{\"cache_n\":11}}";
    assert_int_equal(remote_parse_response(chat, strlen(chat), true, false, &p, &e), ICA_OK);
    assert_string_equal(p.text, "m");
    assert_int_equal(p.finish, BACKEND_FINISH_STOP);
    assert_int_equal(p.cached_tokens, 11);
    assert_int_equal(p.n_top, 2);
    assert_string_equal(p.top[0].token, "m");
    assert_true(p.top[1].logprob == -3.0);
    remote_parsed_free(&p);

    /* streamed chunks: delta, usage-only, null content */
    const char *c1 = "{\"choices\":[{\"delta\":{\"content\":\"ab\"},\"finish_reason\":null}]}";
    assert_int_equal(remote_parse_response(c1, strlen(c1), true, true, &p, &e), ICA_OK);
    assert_string_equal(p.text, "ab");
    assert_int_equal(p.finish, -1);
    remote_parsed_free(&p);
    const char *c2 = "{\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2}}";
    assert_int_equal(remote_parse_response(c2, strlen(c2), true, true, &p, &e), ICA_OK);
    assert_null(p.text);
    assert_true(p.has_usage);
    assert_int_equal(p.completion_tokens, 2);
    remote_parsed_free(&p);
    const char *c3 = "{\"choices\":[{\"delta\":{\"content\":null},\"finish_reason\":\"stop\"}]}";
    assert_int_equal(remote_parse_response(c3, strlen(c3), true, true, &p, &e), ICA_OK);
    assert_int_equal(p.finish, BACKEND_FINISH_STOP);
    remote_parsed_free(&p);

    /* failures */
    static const char *bad[] = {"",
                                "   ",
                                "{",
                                "[1]",
                                "{\"choices\":[]}",
                                "{\"choices\":[{\"text\":5}]}",
                                "{\"a\":1} x",
                                "{\"choices\":[1]}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ica_clearerr(&e);
        assert_int_equal(remote_parse_response(bad[i], strlen(bad[i]), false, false, &p, &e),
                         ICA_ERR_FORMAT);
        assert_true(e.msg[0] != '\0');
        assert_null(p.text);
    }
    const char *er = "{\"error\":{\"message\":\"model not loaded\",\"code\":503}}";
    assert_int_equal(remote_parse_response(er, strlen(er), false, true, &p, &e), ICA_ERR_IO);
    assert_non_null(strstr(e.msg, "model not loaded"));
}

static json_object *body_of(const struct backend_request *rq, enum remote_penalty pen, bool stream,
                            int want_rc) {
    char *b = NULL;
    struct ica_error e = {0};
    assert_int_equal(remote_build_body(rq, "m1", pen, stream, &b, &e), want_rc);
    if (want_rc != ICA_OK) {
        assert_null(b);
        assert_non_null(strstr(e.msg, "repetition_penalty"));
        return NULL;
    }
    json_object *o = json_tokener_parse(b);
    assert_non_null(o);
    free(b);
    return o;
}

static bool has(json_object *o, const char *k) {
    return json_object_object_get_ex(o, k, NULL);
}

static const char *sval(json_object *o, const char *k) {
    json_object *v = NULL;
    json_object_object_get_ex(o, k, &v);
    return v ? json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN |
                                                     JSON_C_TO_STRING_NOSLASHESCAPE)
             : "(absent)";
}

static void test_bodies(void **st) {
    (void)st;
    struct backend_request rq = creq("Hello \"q\"\n");
    const char *stops[] = {"# Query", "</s>"};
    rq.stop = stops;
    rq.n_stop = 2;
    json_object *o = body_of(&rq, REMOTE_PENALTY_BOTH, false, ICA_OK);
    assert_string_equal(sval(o, "model"), "\"m1\"");
    assert_string_equal(sval(o, "prompt"), "\"Hello \\\"q\\\"\\n\"");
    assert_string_equal(sval(o, "max_tokens"), "16");
    assert_string_equal(sval(o, "temperature"), "0");
    assert_string_equal(sval(o, "top_p"), "1");
    assert_string_equal(sval(o, "stop"), "[\"# Query\",\"</s>\"]");
    assert_string_equal(sval(o, "frequency_penalty"), "0");
    assert_false(has(o, "seed") || has(o, "top_k") || has(o, "min_p") || has(o, "logprobs") ||
                 has(o, "repetition_penalty") || has(o, "stream") || has(o, "messages"));
    json_object_put(o);

    rq.sampling.temperature = 0.7f;
    rq.sampling.top_k = 40;
    rq.sampling.min_p = 0.05f;
    rq.sampling.seed = 42;
    rq.sampling.repetition_penalty = 1.15f;
    rq.top_logprobs = 5;
    o = body_of(&rq, REMOTE_PENALTY_BOTH, true, ICA_OK);
    assert_string_equal(sval(o, "temperature"), "0.7");
    assert_string_equal(sval(o, "top_k"), "40");
    assert_string_equal(sval(o, "min_p"), "0.05");
    assert_string_equal(sval(o, "seed"), "42");
    assert_string_equal(sval(o, "repetition_penalty"), "1.15");
    assert_string_equal(sval(o, "repeat_penalty"), "1.15");
    assert_string_equal(sval(o, "repeat_last_n"), "-1");
    assert_string_equal(sval(o, "logprobs"), "5");
    assert_string_equal(sval(o, "stream"), "true");
    assert_string_equal(sval(o, "stream_options"), "{\"include_usage\":true}");
    json_object_put(o);
    o = body_of(&rq, REMOTE_PENALTY_VLLM, false, ICA_OK);
    assert_true(has(o, "repetition_penalty") && !has(o, "repeat_penalty"));
    json_object_put(o);
    o = body_of(&rq, REMOTE_PENALTY_LLAMACPP, false, ICA_OK);
    assert_true(!has(o, "repetition_penalty") && has(o, "repeat_penalty"));
    json_object_put(o);
    body_of(&rq, REMOTE_PENALTY_NONE, false, ICA_ERR_UNSUPPORTED);

    struct backend_message msgs[2] = {{BACKEND_SYSTEM, "You judge."}, {BACKEND_USER, "Rate it."}};
    struct backend_request cr = creq(NULL);
    cr.messages = msgs;
    cr.n_messages = 2;
    cr.top_logprobs = 5;
    o = body_of(&cr, REMOTE_PENALTY_NONE, false, ICA_OK);
    assert_string_equal(sval(o, "messages"), "[{\"role\":\"system\",\"content\":\"You judge.\"},"
                                             "{\"role\":\"user\",\"content\":\"Rate it.\"}]");
    assert_string_equal(sval(o, "logprobs"), "true");
    assert_string_equal(sval(o, "top_logprobs"), "5");
    assert_false(has(o, "prompt"));
    json_object_put(o);
}

/* ==== against the server ==== */

static void test_ok_and_key(void **st) {
    (void)st;
    struct srv s;
    srv_start(&s, M_OK);
    char url[64], keyfile[512];
    srv_url(&s, url, sizeof url);
    snprintf(keyfile, sizeof keyfile, "%s/key.txt", tu_tmpdir());
    FILE *f = fopen(keyfile, "w");
    assert_non_null(f);
    fputs("  sk-SECRET-123456\nsecond line\n", f);
    fclose(f);
    char full[128];
    snprintf(full, sizeof full, "%s/v1/", url);
    const char *urls[1] = {full};
    struct remote_options o;
    remote_options_init(&o);
    o.base_urls = urls;
    o.n_base_urls = 1;
    o.model = "test-model";
    o.api_key_file = keyfile;
    struct backend *b = NULL;
    struct ica_error e = {0};
    assert_int_equal(remote_backend_new(&o, &b, &e), ICA_OK);
    assert_string_equal(b->ops->kind, "remote");
    char want[160];
    snprintf(want, sizeof want, "remote:%s/v1 test-model", url);
    assert_string_equal(backend_describe(b), want);
    assert_null(strstr(backend_describe(b), "SECRET"));
    assert_int_equal(backend_count_tokens(b, "x"), -1);

    struct backend_request rq[2] = {creq("Once upon"), creq(NULL)};
    struct backend_message m[2] = {{BACKEND_SYSTEM, "sys"}, {BACKEND_USER, "judge this"}};
    rq[1].messages = m;
    rq[1].n_messages = 2;
    rq[1].top_logprobs = 2;
    struct got g;
    memset(&g, 0, sizeof g);
    assert_int_equal(backend_run(b, rq, 2, NULL, on_done, &g, &e), ICA_OK);
    assert_int_equal(g.calls[0], 1);
    assert_int_equal(g.calls[1], 1);
    assert_false(g.failed[0] || g.failed[1]);
    assert_string_equal(g.text[0], "re:Once upon");
    assert_int_equal(g.finish[0], BACKEND_FINISH_LENGTH);
    assert_int_equal(g.pt[0], 5);
    assert_int_equal(g.ct[0], 2);
    assert_int_equal(g.cached[0], 3);
    assert_int_equal(g.attempts[0], 1);
    assert_string_equal(g.text[1], "re:judge this");
    assert_int_equal(g.finish[1], BACKEND_FINISH_STOP);
    assert_int_equal(g.cached[1], 4);
    assert_int_equal(g.n_top[1], 2);
    assert_string_equal(g.top0[1], "re");
    assert_string_equal(s.last_auth, "Bearer sk-SECRET-123456");
    assert_int_equal(s.hits, 2);
    got_free(&g);
    backend_free(b);

    /* a server that echoes the key in its error: the message shows *** */
    s.mode = M_ECHO_AUTH;
    assert_int_equal(remote_backend_new(&o, &b, &e), ICA_OK);
    memset(&g, 0, sizeof g);
    assert_int_equal(backend_run(b, rq, 1, NULL, on_done, &g, &e), ICA_OK);
    assert_true(g.failed[0]);
    assert_int_equal(g.attempts[0], 1); /* 401 is not retried */
    assert_non_null(strstr(g.err[0].msg, "HTTP 401"));
    assert_non_null(strstr(g.err[0].msg, "bad key: Bearer ***"));
    assert_null(strstr(g.err[0].msg, "SECRET"));
    got_free(&g);
    backend_free(b);

    /* credentials in the URL are not shown either */
    char cred[160];
    snprintf(cred, sizeof cred, "http://user:hunter2@127.0.0.1:%d", s.port);
    urls[0] = cred;
    o.api_key_file = NULL;
    o.no_env_key = true;
    assert_int_equal(remote_backend_new(&o, &b, &e), ICA_OK);
    assert_null(strstr(backend_describe(b), "hunter2"));
    memset(&g, 0, sizeof g);
    s.mode = M_STATUS;
    s.status = 404;
    s.errbody = "{\"error\":\"no such route\"}";
    assert_int_equal(backend_run(b, rq, 1, NULL, on_done, &g, &e), ICA_OK);
    assert_true(g.failed[0]);
    assert_null(strstr(g.err[0].msg, "hunter2"));
    assert_non_null(strstr(g.err[0].msg, "HTTP 404"));
    assert_non_null(strstr(g.err[0].msg, "no such route"));
    got_free(&g);
    backend_free(b);

    /* missing key file: error names the file */
    o.api_key_file = "/nonexistent/key";
    assert_int_equal(remote_backend_new(&o, &b, &e), ICA_ERR_IO);
    assert_non_null(strstr(e.msg, "/nonexistent/key"));
    srv_stop(&s);
}

static void test_retry_after_429(void **st) {
    (void)st;
    struct srv s;
    srv_start(&s, M_FAIL_FIRST);
    s.status = 429;
    s.errbody = "{\"error\":{\"message\":\"rate limited\"}}";
    s.retry_after = "1";
    s.fail_first = 1;
    char url[64];
    srv_url(&s, url, sizeof url);
    const char *urls[1] = {url};
    struct backend *b = mk(urls, 1, 2, 3, 10.0, false);
    struct backend_request rq = creq("x");
    struct got g;
    memset(&g, 0, sizeof g);
    struct ica_error e = {0};
    double t0 = now_s();
    assert_int_equal(backend_run(b, &rq, 1, NULL, on_done, &g, &e), ICA_OK);
    double dt = now_s() - t0;
    assert_false(g.failed[0]);
    assert_int_equal(g.attempts[0], 2);
    assert_int_equal(s.hits, 2);
    assert_true(dt >= 0.95); /* the server's Retry-After: 1, not the 0.02 s backoff */
    assert_string_equal(g.text[0], "re:x");
    got_free(&g);
    backend_free(b);
    srv_stop(&s);
}

static void test_5xx_exhausted(void **st) {
    (void)st;
    static const int codes[3] = {500, 503, 408};
    for (int k = 0; k < 3; k++) {
        struct srv s;
        srv_start(&s, M_STATUS);
        s.status = codes[k];
        s.errbody = "upstream exploded\nwith details";
        char url[64];
        srv_url(&s, url, sizeof url);
        const char *urls[1] = {url};
        struct backend *b = mk(urls, 1, 2, 2, 10.0, k == 1);
        struct backend_request rq = creq("x");
        struct got g;
        memset(&g, 0, sizeof g);
        struct ica_error e = {0};
        assert_int_equal(backend_run(b, &rq, 1, NULL, on_done, &g, &e), ICA_OK);
        assert_int_equal(g.calls[0], 1);
        assert_true(g.failed[0]);
        assert_int_equal(g.attempts[0], 3);
        assert_int_equal(s.hits, 3);
        char want[128];
        snprintf(want, sizeof want, "POST %s/v1/completions: HTTP %d: upstream exploded with", url,
                 codes[k]);
        assert_non_null(strstr(g.err[0].msg, want));
        assert_non_null(strstr(g.err[0].msg, "gave up after 3 attempts"));
        got_free(&g);
        backend_free(b);
        srv_stop(&s);
    }
}

static void test_4xx_not_retried(void **st) {
    (void)st;
    struct srv s;
    srv_start(&s, M_STATUS);
    s.status = 400;
    s.errbody = "{\"error\":{\"message\":\"max_tokens too large\"}}";
    char url[64];
    srv_url(&s, url, sizeof url);
    const char *urls[1] = {url};
    struct backend *b = mk(urls, 1, 2, 5, 10.0, false);
    struct backend_request rq = creq("x");
    struct got g;
    memset(&g, 0, sizeof g);
    struct ica_error e = {0};
    assert_int_equal(backend_run(b, &rq, 1, NULL, on_done, &g, &e), ICA_OK);
    assert_true(g.failed[0]);
    assert_int_equal(g.attempts[0], 1);
    assert_int_equal(s.hits, 1);
    assert_non_null(strstr(g.err[0].msg, "HTTP 400"));
    assert_non_null(strstr(g.err[0].msg, "max_tokens too large"));
    assert_null(strstr(g.err[0].msg, "gave up"));
    got_free(&g);
    backend_free(b);
    srv_stop(&s);
}

static void test_timeout(void **st) {
    (void)st;
    struct srv s;
    srv_start(&s, M_SLOW);
    char url[64];
    srv_url(&s, url, sizeof url);
    const char *urls[1] = {url};
    struct backend *b = mk(urls, 1, 2, 1, 0.2, false);
    struct backend_request rq = creq("x");
    struct got g;
    memset(&g, 0, sizeof g);
    struct ica_error e = {0};
    assert_int_equal(backend_run(b, &rq, 1, NULL, on_done, &g, &e), ICA_OK);
    assert_true(g.failed[0]);
    assert_int_equal(g.attempts[0], 2);
    assert_non_null(strstr(g.err[0].msg, "timed out"));
    assert_non_null(strstr(g.err[0].msg, url));
    got_free(&g);
    backend_free(b);
    srv_stop(&s);
}

static void test_malformed(void **st) {
    (void)st;
    struct srv s;
    srv_start(&s, M_MALFORMED);
    char url[64];
    srv_url(&s, url, sizeof url);
    const char *urls[1] = {url};
    struct backend *b = mk(urls, 1, 2, 3, 10.0, false);
    struct backend_request rq = creq("x");
    struct got g;
    memset(&g, 0, sizeof g);
    struct ica_error e = {0};
    assert_int_equal(backend_run(b, &rq, 1, NULL, on_done, &g, &e), ICA_OK);
    assert_true(g.failed[0]);
    assert_int_equal(g.attempts[0], 1);
    assert_int_equal(g.err[0].code, ICA_ERR_FORMAT);
    assert_non_null(strstr(g.err[0].msg, url));
    assert_non_null(strstr(g.err[0].msg, "malformed JSON"));
    got_free(&g);
    /* a 200 whose JSON lacks choices, and an error object */
    s.mode = M_RAW;
    s.raw = "{\"object\":\"list\"}";
    memset(&g, 0, sizeof g);
    assert_int_equal(backend_run(b, &rq, 1, NULL, on_done, &g, &e), ICA_OK);
    assert_true(g.failed[0]);
    assert_non_null(strstr(g.err[0].msg, "no \"choices\""));
    got_free(&g);
    backend_free(b);
    srv_stop(&s);
}

static void test_stream_tiny_chunks(void **st) {
    (void)st;
    struct srv s;
    srv_start(&s, M_STREAM);
    char url[64];
    srv_url(&s, url, sizeof url);
    const char *urls[1] = {url};
    struct backend *b = mk(urls, 1, 2, 2, 10.0, true);
    struct backend_request rq[2] = {creq("The quick brown fox jumps"), creq(NULL)};
    struct backend_message m[1] = {{BACKEND_USER, "chat message here"}};
    rq[1].messages = m;
    rq[1].n_messages = 1;
    struct got g;
    memset(&g, 0, sizeof g);
    struct ica_error e = {0};
    assert_int_equal(backend_run(b, rq, 2, on_stream, on_done, &g, &e), ICA_OK);
    assert_false(g.failed[0] || g.failed[1]);
    assert_string_equal(g.text[0], "re:The quick brown fox jumps");
    assert_string_equal(g.text[1], "re:chat message here");
    assert_int_equal(g.finish[0], BACKEND_FINISH_STOP);
    assert_int_equal(g.pt[0], 9);
    assert_int_equal(g.ct[0], 14);
    assert_true(g.stream_calls > 10);
    assert_int_equal(g.streamed_len[0], strlen(g.text[0]));
    assert_memory_equal(g.streamed[0], g.text[0], g.streamed_len[0]);
    assert_memory_equal(g.streamed[1], g.text[1], g.streamed_len[1]);
    assert_non_null(strstr(s.last_body, "\"stream\":true"));
    got_free(&g);

    /* client-side stop: the server ignores it; the stop string spans chunks
     * and the stream callback never sees any of it */
    const char *stops[1] = {"brown"};
    rq[0].stop = stops;
    rq[0].n_stop = 1;
    memset(&g, 0, sizeof g);
    assert_int_equal(backend_run(b, rq, 1, on_stream, on_done, &g, &e), ICA_OK);
    assert_string_equal(g.text[0], "re:The quick ");
    assert_int_equal(g.finish[0], BACKEND_FINISH_STOP);
    assert_int_equal(g.streamed_len[0], strlen("re:The quick "));
    assert_memory_equal(g.streamed[0], "re:The quick ", g.streamed_len[0]);
    got_free(&g);
    backend_free(b);

    /* and without streaming */
    s.mode = M_OK;
    b = mk(urls, 1, 2, 2, 10.0, false);
    memset(&g, 0, sizeof g);
    assert_int_equal(backend_run(b, rq, 1, NULL, on_done, &g, &e), ICA_OK);
    assert_string_equal(g.text[0], "re:The quick ");
    assert_int_equal(g.finish[0], BACKEND_FINISH_STOP);
    assert_non_null(strstr(s.last_body, "\"stop\":[\"brown\"]"));
    got_free(&g);
    backend_free(b);
    srv_stop(&s);
}

static void test_stream_dropped(void **st) {
    (void)st;
    struct srv s;
    srv_start(&s, M_STREAM_DROP);
    s.fail_first = 2;
    char url[64];
    srv_url(&s, url, sizeof url);
    const char *urls[1] = {url};
    struct backend *b = mk(urls, 1, 1, 3, 10.0, true);
    struct backend_request rq = creq("a longer prompt so that the stream is long enough");
    struct got g;
    memset(&g, 0, sizeof g);
    struct ica_error e = {0};
    assert_int_equal(backend_run(b, &rq, 1, on_stream, on_done, &g, &e), ICA_OK);
    assert_false(g.failed[0]);
    assert_int_equal(g.attempts[0], 3);
    assert_int_equal(s.hits, 3);
    assert_string_equal(g.text[0], "re:a longer prompt so that the stream is long enough");
    /* text streamed before the drops is not repeated */
    assert_int_equal(g.streamed_len[0], strlen(g.text[0]));
    assert_memory_equal(g.streamed[0], g.text[0], g.streamed_len[0]);
    got_free(&g);

    /* always dropped: fails after the retries, naming the endpoint */
    s.fail_first = 1000;
    s.hits = 0;
    memset(&g, 0, sizeof g);
    assert_int_equal(backend_run(b, &rq, 1, on_stream, on_done, &g, &e), ICA_OK);
    assert_true(g.failed[0]);
    assert_int_equal(g.attempts[0], 4);
    assert_int_equal(s.hits, 4);
    assert_non_null(strstr(g.err[0].msg, url));
    got_free(&g);
    backend_free(b);
    srv_stop(&s);
}

static void test_concurrency(void **st) {
    (void)st;
    struct srv s;
    srv_start(&s, M_OK);
    s.delay = 0.3;
    char url[64];
    srv_url(&s, url, sizeof url);
    const char *urls[1] = {url};
    struct backend *b = mk(urls, 1, 8, 0, 10.0, false);
    struct backend_request rq[8];
    char prompts[8][16];
    for (int i = 0; i < 8; i++) {
        snprintf(prompts[i], sizeof prompts[i], "p%d", i);
        rq[i] = creq(prompts[i]);
    }
    struct got g;
    memset(&g, 0, sizeof g);
    struct ica_error e = {0};
    double t0 = now_s();
    assert_int_equal(backend_run(b, rq, 8, NULL, on_done, &g, &e), ICA_OK);
    double dt = now_s() - t0, serial = 8 * s.delay;
    assert_true(dt < 0.6 * serial);
    assert_int_equal(s.hits, 8);
    assert_true(s.max_inflight >= 4);
    for (int i = 0; i < 8; i++) {
        char want[16];
        snprintf(want, sizeof want, "re:p%d", i);
        assert_int_equal(g.calls[i], 1);
        assert_false(g.failed[i]);
        assert_string_equal(g.text[i], want);
    }
    assert_int_equal(g.n_done, 8);
    got_free(&g);
    backend_free(b);
    srv_stop(&s);
}

static void test_two_endpoints(void **st) {
    (void)st;
    struct srv a, c;
    srv_start(&a, M_OK);
    srv_start(&c, M_OK);
    a.delay = c.delay = 0.1;
    char u1[64], u2[64];
    srv_url(&a, u1, sizeof u1);
    srv_url(&c, u2, sizeof u2);
    const char *urls[2] = {u1, u2};
    struct backend *b = mk(urls, 2, 4, 0, 10.0, false);
    assert_non_null(strstr(backend_describe(b), u1));
    assert_non_null(strstr(backend_describe(b), u2));
    struct backend_request rq[8];
    for (int i = 0; i < 8; i++)
        rq[i] = creq("q");
    struct got g;
    memset(&g, 0, sizeof g);
    struct ica_error e = {0};
    assert_int_equal(backend_run(b, rq, 8, NULL, on_done, &g, &e), ICA_OK);
    assert_int_equal(a.hits + c.hits, 8);
    assert_true(a.hits >= 2 && c.hits >= 2);
    for (int i = 0; i < 8; i++)
        assert_int_equal(g.calls[i], 1);
    got_free(&g);
    backend_free(b);

    /* one endpoint dead: requests that hit it are retried on the other */
    srv_stop(&c);
    b = mk(urls, 2, 2, 3, 10.0, false);
    a.hits = 0;
    memset(&g, 0, sizeof g);
    assert_int_equal(backend_run(b, rq, 4, NULL, on_done, &g, &e), ICA_OK);
    for (int i = 0; i < 4; i++) {
        if (g.failed[i])
            fprintf(stderr, "request %d: %s\n", i, g.err[i].msg);
        assert_false(g.failed[i]);
        assert_string_equal(g.text[i], "re:q");
    }
    assert_int_equal(a.hits, 4);
    got_free(&g);
    backend_free(b);
    srv_stop(&a);
}

static void test_refused_and_cancel(void **st) {
    (void)st;
    /* a port nobody listens on: find one by starting and stopping a server */
    struct srv s;
    srv_start(&s, M_OK);
    char url[64];
    srv_url(&s, url, sizeof url);
    srv_stop(&s);
    const char *urls[1] = {url};
    struct backend *b = mk(urls, 1, 2, 2, 5.0, false);
    struct backend_request rq[3] = {creq("a"), creq("b"), creq("c")};
    struct got g;
    memset(&g, 0, sizeof g);
    struct ica_error e = {0};
    assert_int_equal(backend_run(b, rq, 3, NULL, on_done, &g, &e), ICA_OK);
    for (int i = 0; i < 3; i++) {
        assert_true(g.failed[i]);
        assert_int_equal(g.attempts[i], 3);
        assert_non_null(strstr(g.err[i].msg, url));
    }
    got_free(&g);
    backend_free(b);

    /* the callback cancels after the first result: nothing else is reported */
    srv_start(&s, M_OK);
    s.delay = 0.05;
    srv_url(&s, url, sizeof url);
    b = mk(urls, 1, 1, 0, 5.0, false);
    memset(&g, 0, sizeof g);
    g.cancel_after = 1;
    assert_int_equal(backend_run(b, rq, 3, NULL, on_done, &g, &e), ICA_OK);
    assert_int_equal(g.n_done, 1);
    assert_int_equal(s.hits, 1);
    got_free(&g);
    backend_free(b);
    srv_stop(&s);
}

static void test_openai_penalty(void **st) {
    (void)st;
    const char *urls[1] = {"https://api.openai.com/v1"};
    struct backend *b = mk(urls, 1, 1, 0, 5.0, false);
    assert_string_equal(backend_describe(b), "remote:https://api.openai.com/v1 test-model");
    struct backend_request rq = creq("x");
    rq.sampling.repetition_penalty = 1.1f;
    struct got g;
    memset(&g, 0, sizeof g);
    struct ica_error e = {0};
    assert_int_equal(backend_run(b, &rq, 1, NULL, on_done, &g, &e), ICA_ERR_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "repetition_penalty"));
    assert_int_equal(g.n_done, 0);
    backend_free(b);
    /* bad options */
    struct remote_options o;
    remote_options_init(&o);
    assert_int_equal(remote_backend_new(&o, &b, &e), ICA_ERR_ARG);
    const char *bad[1] = {"ftp://x"};
    o.base_urls = bad;
    o.n_base_urls = 1;
    o.model = "m";
    assert_int_equal(remote_backend_new(&o, &b, &e), ICA_ERR_ARG);
    assert_null(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sse_splits),      cmocka_unit_test(test_parse),
        cmocka_unit_test(test_bodies),          cmocka_unit_test(test_ok_and_key),
        cmocka_unit_test(test_retry_after_429), cmocka_unit_test(test_5xx_exhausted),
        cmocka_unit_test(test_4xx_not_retried), cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_malformed),       cmocka_unit_test(test_stream_tiny_chunks),
        cmocka_unit_test(test_stream_dropped),  cmocka_unit_test(test_concurrency),
        cmocka_unit_test(test_two_endpoints),   cmocka_unit_test(test_refused_and_cancel),
        cmocka_unit_test(test_openai_penalty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
