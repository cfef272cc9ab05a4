/* The HTTP side: libmicrohttpd with one thread per connection, so a handler may block while its
 * job waits or runs; a disconnected client is noticed by peeking at its socket while waiting
 * and cancels the job. */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <json-c/json.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct serve {
    struct MHD_Daemon *d;
    struct sched *sched;
    struct serve_options o;
    char *model_name;
    char *api_key;
    size_t api_key_len;
    uint16_t port;
    atomic_bool stopping;
    atomic_uint_fast64_t next_id, served, rejected_busy, cancelled;
    uint64_t id_salt;
    pthread_mutex_t log_mu;
};

enum route { R_NONE, R_HEALTH, R_MODELS, R_CHAT, R_COMPLETIONS };

/* Per-request state (MHD's con_cls). */
struct req {
    enum route route;
    char method[16];
    char path[96];
    char *body;
    size_t len, cap;
    bool too_big;
    bool replied;
    bool stream;
    int status;
    double t0;
    struct job *job; /* our reference, for the access log */
};

void serve_options_init(struct serve_options *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->system = SERVE_SYSTEM_EXTEND;
    o->model_name = "icalign";
    o->parallel = 1;
    o->queue = 16;
    o->max_body = 1u << 20;
    o->idle_timeout_s = 30;
    o->max_connections = 256;
    if (align_preset_get("urial", &o->preset, NULL) != ICA_OK)
        memset(&o->preset, 0, sizeof o->preset);
}

/* ==== responses ==== */

static enum MHD_Result reply(struct req *r, struct MHD_Connection *c, int status, const char *body,
                             size_t len, const char *extra_hdr, const char *extra_val) {
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "application/json");
    if (extra_hdr)
        MHD_add_response_header(resp, extra_hdr, extra_val);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    r->status = status;
    r->replied = true;
    return ret;
}

static enum MHD_Result reply_json(struct req *r, struct MHD_Connection *c, int status,
                                  json_object *o) {
    size_t len = 0;
    const char *s = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    enum MHD_Result ret = reply(r, c, status, s, len, NULL, NULL);
    json_object_put(o);
    return ret;
}

static json_object *jstr(const char *s) {
    size_t n = 0;
    char *t = serve_utf8_sanitize(s ? s : "", s ? strlen(s) : 0, &n);
    json_object *o = json_object_new_string_len(t ? t : "", t ? (int)n : 0);
    free(t);
    return o;
}

static json_object *error_object(const struct serve_error *e) {
    json_object *root = json_object_new_object(), *err = json_object_new_object();
    json_object_object_add(err, "message", jstr(e->message));
    json_object_object_add(err, "type", jstr(e->type ? e->type : "server_error"));
    json_object_object_add(err, "param", e->param[0] ? jstr(e->param) : NULL);
    json_object_object_add(err, "code", e->code ? jstr(e->code) : NULL);
    json_object_object_add(root, "error", err);
    return root;
}

static enum MHD_Result reply_error(struct req *r, struct MHD_Connection *c,
                                   const struct serve_error *e, const char *hdr, const char *val) {
    json_object *o = error_object(e);
    size_t len = 0;
    const char *s = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    enum MHD_Result ret = reply(r, c, e->status, s, len, hdr, val);
    json_object_put(o);
    return ret;
}

static enum MHD_Result reply_err(struct req *r, struct MHD_Connection *c, int status,
                                 const char *type, const char *code, const char *param,
                                 const char *msg, const char *hdr, const char *val) {
    struct serve_error e;
    memset(&e, 0, sizeof e);
    e.status = status;
    e.type = type;
    e.code = code;
    snprintf(e.param, sizeof e.param, "%s", param ? param : "");
    snprintf(e.message, sizeof e.message, "%s", msg);
    return reply_error(r, c, &e, hdr, val);
}

/* ==== helpers ==== */

static bool client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return false;
    struct pollfd p = {ci->connect_fd, POLLIN, 0};
    if (poll(&p, 1, 0) <= 0)
        return false;
    if (p.revents & (POLLHUP | POLLERR | POLLNVAL))
        return true;
    char b;
    ssize_t n = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void deadline_in(struct timespec *ts, long ms) {
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_nsec += ms * 1000000L;
    while (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static bool authorized(struct serve *s, struct MHD_Connection *c) {
    if (!s->api_key)
        return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    while (*h == ' ')
        h++;
    size_t n = strlen(h);
    while (n > 0 && (h[n - 1] == ' ' || h[n - 1] == '\t'))
        n--;
    return serve_key_equal(h, n, s->api_key, s->api_key_len);
}

static void make_id(struct serve *s, const char *prefix, char *buf, size_t n) {
    uint64_t z = (uint64_t)atomic_fetch_add(&s->next_id, 1) + s->id_salt;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    snprintf(buf, n, "%s-%016llx", prefix, (unsigned long long)z);
}

static json_object *usage_object(const struct backend_result *res) {
    json_object *u = json_object_new_object(), *d = json_object_new_object();
    json_object_object_add(u, "prompt_tokens", json_object_new_int64(res->prompt_tokens));
    json_object_object_add(u, "completion_tokens", json_object_new_int64(res->completion_tokens));
    json_object_object_add(
        u, "total_tokens",
        json_object_new_int64((int64_t)res->prompt_tokens + (int64_t)res->completion_tokens));
    json_object_object_add(d, "cached_tokens", json_object_new_int64(res->cached_tokens));
    json_object_object_add(u, "prompt_tokens_details", d);
    return u;
}

static const char *finish_name(enum backend_finish f) {
    return f == BACKEND_FINISH_LENGTH ? "length" : "stop";
}

static void log_text(struct serve *s, const char *id, const char *what, const char *text,
                     size_t len) {
    if (!s->o.log || !s->o.log_content)
        return;
    pthread_mutex_lock(&s->log_mu);
    fprintf(s->o.log, "=== %s %s (%zu bytes) ===\n", what, id, len);
    fwrite(text, 1, len, s->o.log);
    fprintf(s->o.log, "\n=== end ===\n");
    fflush(s->o.log);
    pthread_mutex_unlock(&s->log_mu);
}

/* ==== streaming ==== */

struct stream {
    struct serve *s;
    struct job *j;
    struct MHD_Connection *c;
    bool chat, include_usage, sent_role, finished;
    char id[48];
    long long created;
    char *out;
    size_t out_len, out_pos, out_cap;
};

static void out_add(struct stream *st, const char *p, size_t n) {
    if (st->out_len + n > st->out_cap) {
        size_t nc = st->out_cap ? st->out_cap : 1024;
        while (nc < st->out_len + n)
            nc *= 2;
        char *t = realloc(st->out, nc);
        if (!t)
            return; /* dropped; the stream ends with what fits */
        st->out = t;
        st->out_cap = nc;
    }
    memcpy(st->out + st->out_len, p, n);
    st->out_len += n;
}

static void out_event(struct stream *st, json_object *o) {
    size_t len = 0;
    const char *s = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    out_add(st, "data: ", 6);
    out_add(st, s, len);
    out_add(st, "\n\n", 2);
    json_object_put(o);
}

/* A chunk event: delta text (or role) and/or finish reason; usage-only when choices is false. */
static void out_chunk(struct stream *st, const char *text, size_t len, bool role,
                      const char *finish, const struct backend_result *usage) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(st->id));
    json_object_object_add(
        o, "object",
        json_object_new_string(st->chat ? "chat.completion.chunk" : "text_completion"));
    json_object_object_add(o, "created", json_object_new_int64(st->created));
    json_object_object_add(o, "model", jstr(st->s->model_name));
    json_object *choices = json_object_new_array();
    if (!usage) {
        json_object *ch = json_object_new_object();
        json_object_object_add(ch, "index", json_object_new_int(0));
        size_t n = 0;
        char *t = text ? serve_utf8_sanitize(text, len, &n) : NULL;
        if (st->chat) {
            json_object *d = json_object_new_object();
            if (role)
                json_object_object_add(d, "role", json_object_new_string("assistant"));
            if (t || role)
                json_object_object_add(d, "content",
                                       json_object_new_string_len(t ? t : "", t ? (int)n : 0));
            json_object_object_add(ch, "delta", d);
        } else {
            json_object_object_add(ch, "text",
                                   json_object_new_string_len(t ? t : "", t ? (int)n : 0));
        }
        free(t);
        json_object_object_add(ch, "logprobs", NULL);
        json_object_object_add(ch, "finish_reason", finish ? json_object_new_string(finish) : NULL);
        json_object_array_add(choices, ch);
    }
    json_object_object_add(o, "choices", choices);
    if (usage)
        json_object_object_add(o, "usage", usage_object(usage));
    out_event(st, o);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    struct stream *st = cls;
    struct job *j = st->j;
    for (;;) {
        if (st->out_pos < st->out_len) {
            size_t n = st->out_len - st->out_pos;
            if (n > max)
                n = max;
            memcpy(buf, st->out + st->out_pos, n);
            st->out_pos += n;
            return (ssize_t)n;
        }
        st->out_len = st->out_pos = 0;
        if (st->finished)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (!st->sent_role && st->chat) {
            st->sent_role = true;
            out_chunk(st, NULL, 0, true, NULL, NULL);
            continue;
        }
        pthread_mutex_lock(&j->mu);
        while (j->pending_len == 0 && !j->done) {
            struct timespec dl;
            deadline_in(&dl, 100);
            pthread_cond_timedwait(&j->cv, &j->mu, &dl);
            if (j->pending_len == 0 && !j->done) {
                pthread_mutex_unlock(&j->mu);
                bool gone = client_gone(st->c);
                pthread_mutex_lock(&j->mu);
                if (gone) {
                    atomic_store(&j->cancel, true);
                    pthread_mutex_unlock(&j->mu);
                    return MHD_CONTENT_READER_END_WITH_ERROR;
                }
            }
        }
        char *text = j->pending;
        size_t len = j->pending_len;
        j->pending = NULL;
        j->pending_len = j->pending_cap = 0;
        const bool done = j->done;
        pthread_mutex_unlock(&j->mu);
        if (len)
            out_chunk(st, text, len, false, NULL, NULL);
        free(text);
        if (done) {
            /* done is final: the fields below no longer change */
            if (j->failed || j->res.finish == BACKEND_FINISH_CANCELLED) {
                struct serve_error e = j->err;
                if (!j->failed) {
                    memset(&e, 0, sizeof e);
                    e.status = 503;
                    e.type = "server_error";
                    e.code = "cancelled";
                    snprintf(e.message, sizeof e.message, "generation cancelled");
                }
                out_event(st, error_object(&e));
            } else {
                log_text(st->s, st->id, "answer", j->answer ? j->answer : "", j->answer_len);
                out_chunk(st, NULL, 0, false, finish_name(j->res.finish), NULL);
                if (st->include_usage)
                    out_chunk(st, NULL, 0, false, NULL, &j->res);
            }
            out_add(st, "data: [DONE]\n\n", 14);
            st->finished = true;
            MHD_set_connection_option(st->c, MHD_CONNECTION_OPTION_TIMEOUT,
                                      st->s->o.idle_timeout_s);
        }
    }
}

/* Runs when MHD drops the response: finished, or the client went away (then cancel). */
static void stream_free(void *cls) {
    struct stream *st = cls;
    if (!st->finished) {
        atomic_store(&st->j->cancel, true);
        atomic_fetch_add(&st->s->cancelled, 1);
    }
    job_release(st->j);
    free(st->out);
    free(st);
}

/* ==== generation endpoints ==== */

static enum MHD_Result generate(struct serve *s, struct req *r, struct MHD_Connection *c) {
    const bool chat = r->route == R_CHAT;
    struct serve_request q;
    struct serve_error e;
    memset(&e, 0, sizeof e);
    if (!serve_parse_request(r->body, r->len, chat, &q, &e))
        return reply_error(r, c, &e, NULL, NULL);
    struct job *j = job_new();
    if (!j) {
        serve_request_free(&q);
        return reply_err(r, c, 500, "server_error", NULL, NULL, "out of memory", NULL, NULL);
    }
    r->job = j; /* the request's reference */
    r->stream = q.stream;
    if (chat) {
        if (!serve_render_chat(s->o.set, s->o.system, &q, &j->prompt, &e)) {
            serve_request_free(&q);
            return reply_error(r, c, &e, NULL, NULL);
        }
    } else {
        j->prompt = q.prompt;
        q.prompt = NULL;
    }
    const struct align_preset *p = &s->o.preset;
    struct backend_sampling sm = backend_default_sampling();
    sm.temperature = q.has_temperature ? q.temperature : p->temperature;
    sm.top_p = q.has_top_p ? q.top_p : p->top_p;
    sm.top_k = q.has_top_k ? q.top_k : p->top_k;
    sm.min_p = q.has_min_p ? q.min_p : p->min_p;
    sm.repetition_penalty = q.has_repetition_penalty ? q.repetition_penalty : p->repetition_penalty;
    sm.frequency_penalty = q.has_frequency_penalty ? q.frequency_penalty : p->frequency_penalty;
    sm.presence_penalty = q.has_presence_penalty ? q.presence_penalty : p->presence_penalty;
    sm.seed = q.has_seed ? q.seed : -1;
    /* stops: the preset's (chat only: the URIAL format's "# Query") + the request's */
    const size_t n_pre = chat ? p->n_stop : 0;
    j->stop = calloc(n_pre + q.n_stop + 1, sizeof *j->stop);
    if (!j->stop) {
        serve_request_free(&q);
        return reply_err(r, c, 500, "server_error", NULL, NULL, "out of memory", NULL, NULL);
    }
    for (size_t i = 0; i < n_pre; i++)
        if ((j->stop[j->n_stop] = strdup(p->stop[i])) != NULL)
            j->n_stop++;
    for (size_t i = 0; i < q.n_stop; i++) {
        j->stop[j->n_stop++] = q.stop[i];
        q.stop[i] = NULL;
    }
    j->chat = chat;
    j->stream = q.stream;
    j->explicit_max = q.has_max_tokens;
    j->req.prompt = j->prompt;
    j->req.sampling = sm;
    j->req.max_tokens = q.has_max_tokens ? q.max_tokens : (uint32_t)p->max_new_tokens;
    j->req.stop = (const char *const *)j->stop;
    j->req.n_stop = j->n_stop;
    const bool include_usage = q.include_usage;
    serve_request_free(&q);

    char id[48];
    make_id(s, chat ? "chatcmpl" : "cmpl", id, sizeof id);
    const long long created = (long long)time(NULL);
    log_text(s, id, "prompt", j->prompt, strlen(j->prompt));

    if (atomic_load(&s->stopping))
        return reply_err(r, c, 503, "server_error", "shutting_down", NULL,
                         "the server is shutting down", NULL, NULL);
    if (!sched_submit(s->sched, j)) {
        atomic_fetch_add(&s->rejected_busy, 1);
        return reply_err(r, c, 429, "rate_limit_error", "queue_full", NULL,
                         "the server is busy: every slot runs and the queue is full; retry later",
                         "Retry-After", "1");
    }
    /* Generation may take longer than the idle timeout: none until the answer is out. */
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    pthread_mutex_lock(&j->mu);
    while (!j->done && !(r->stream && j->admitted)) {
        struct timespec dl;
        deadline_in(&dl, 100);
        pthread_cond_timedwait(&j->cv, &j->mu, &dl);
        if (!j->done && !(r->stream && j->admitted)) {
            pthread_mutex_unlock(&j->mu);
            bool gone = client_gone(c);
            pthread_mutex_lock(&j->mu);
            if (gone) {
                atomic_store(&j->cancel, true);
                atomic_fetch_add(&s->cancelled, 1);
                pthread_mutex_unlock(&j->mu);
                r->status = 499;
                return MHD_NO;
            }
        }
    }
    const bool done = j->done;
    pthread_mutex_unlock(&j->mu);
    if (done && j->failed) {
        MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, s->o.idle_timeout_s);
        return reply_error(r, c, &j->err, NULL, NULL);
    }
    if (done && j->res.finish == BACKEND_FINISH_CANCELLED && !r->stream) {
        MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, s->o.idle_timeout_s);
        return reply_err(r, c, 503, "server_error", "cancelled", NULL,
                         "generation cancelled (the server is shutting down)", NULL, NULL);
    }
    if (!r->stream) {
        log_text(s, id, "answer", j->answer, j->answer_len);
        atomic_fetch_add(&s->served, 1);
        json_object *o = json_object_new_object(), *choices = json_object_new_array(),
                    *ch = json_object_new_object();
        json_object_object_add(o, "id", json_object_new_string(id));
        json_object_object_add(
            o, "object", json_object_new_string(chat ? "chat.completion" : "text_completion"));
        json_object_object_add(o, "created", json_object_new_int64(created));
        json_object_object_add(o, "model", jstr(s->model_name));
        json_object_object_add(ch, "index", json_object_new_int(0));
        size_t n = 0;
        char *t = serve_utf8_sanitize(j->answer, j->answer_len, &n);
        json_object *text = json_object_new_string_len(t ? t : "", t ? (int)n : 0);
        free(t);
        if (chat) {
            json_object *m = json_object_new_object();
            json_object_object_add(m, "role", json_object_new_string("assistant"));
            json_object_object_add(m, "content", text);
            json_object_object_add(ch, "message", m);
        } else {
            json_object_object_add(ch, "text", text);
        }
        json_object_object_add(ch, "logprobs", NULL);
        json_object_object_add(ch, "finish_reason",
                               json_object_new_string(finish_name(j->res.finish)));
        json_object_array_add(choices, ch);
        json_object_object_add(o, "choices", choices);
        json_object_object_add(o, "usage", usage_object(&j->res));
        MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, s->o.idle_timeout_s);
        return reply_json(r, c, 200, o);
    }
    struct stream *st = calloc(1, sizeof *st);
    if (!st)
        return reply_err(r, c, 500, "server_error", NULL, NULL, "out of memory", NULL, NULL);
    st->s = s;
    st->j = j;
    st->c = c;
    st->chat = chat;
    st->include_usage = include_usage;
    snprintf(st->id, sizeof st->id, "%s", id);
    st->created = created;
    pthread_mutex_lock(&j->mu);
    j->refs++; /* the stream's reference */
    pthread_mutex_unlock(&j->mu);
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024,
                                                                  stream_read, st, stream_free);
    if (!resp) {
        stream_free(st);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    r->status = 200;
    r->replied = true;
    atomic_fetch_add(&s->served, 1);
    return ret;
}

/* ==== dispatch ==== */

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload_data,
                               size_t *upload_data_size, void **con_cls) {
    (void)version;
    struct serve *s = cls;
    struct req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        *con_cls = r;
        r->t0 = serve_now();
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->path, sizeof r->path, "%s", url);
        const bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
        const bool post = !strcmp(method, "POST");
        if (!strcmp(url, "/health"))
            r->route = R_HEALTH;
        else if (!strcmp(url, "/v1/models"))
            r->route = R_MODELS;
        else if (!strcmp(url, "/v1/chat/completions"))
            r->route = R_CHAT;
        else if (!strcmp(url, "/v1/completions"))
            r->route = R_COMPLETIONS;
        char msg[200];
        if (r->route == R_NONE) {
            snprintf(msg, sizeof msg, "unknown URL: %s %.100s", method, url);
            return reply_err(r, c, 404, "invalid_request_error", "unknown_url", NULL, msg, NULL,
                             NULL);
        }
        const bool gen = r->route == R_CHAT || r->route == R_COMPLETIONS;
        if ((gen && !post) || (!gen && !get)) {
            snprintf(msg, sizeof msg, "method %s not allowed on %s (use %s)", method, url,
                     gen ? "POST" : "GET");
            return reply_err(r, c, 405, "invalid_request_error", "method_not_allowed", NULL, msg,
                             "Allow", gen ? "POST" : "GET, HEAD");
        }
        if (r->route != R_HEALTH && !authorized(s, c))
            return reply_err(r, c, 401, "invalid_request_error", "invalid_api_key", NULL,
                             "missing or incorrect API key (Authorization: Bearer KEY)",
                             "WWW-Authenticate", "Bearer");
        if (gen) {
            const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
            if (cl) {
                char *end = NULL;
                unsigned long long v = strtoull(cl, &end, 10);
                if (end != cl && v > s->o.max_body)
                    r->too_big = true;
            }
            if (r->too_big) {
                snprintf(msg, sizeof msg, "request body larger than the limit of %zu bytes",
                         s->o.max_body);
                return reply_err(r, c, 413, "invalid_request_error", "request_too_large", NULL, msg,
                                 "Connection", "close");
            }
            return MHD_YES;
        }
        if (r->route == R_HEALTH) {
            struct serve_stats st;
            serve_get_stats(s, &st);
            json_object *o = json_object_new_object();
            json_object_object_add(
                o, "status", json_object_new_string(atomic_load(&s->stopping) ? "stopping" : "ok"));
            json_object_object_add(o, "running", json_object_new_int64((int64_t)st.running));
            json_object_object_add(o, "queued", json_object_new_int64((int64_t)st.queued));
            return reply_json(r, c, atomic_load(&s->stopping) ? 503 : 200, o);
        }
        json_object *o = json_object_new_object(), *arr = json_object_new_array(),
                    *m = json_object_new_object();
        json_object_object_add(m, "id", jstr(s->model_name));
        json_object_object_add(m, "object", json_object_new_string("model"));
        json_object_object_add(m, "created", json_object_new_int64(0));
        json_object_object_add(m, "owned_by", json_object_new_string("icalign"));
        json_object_array_add(arr, m);
        json_object_object_add(o, "object", json_object_new_string("list"));
        json_object_object_add(o, "data", arr);
        return reply_json(r, c, 200, o);
    }
    if (r->replied) { /* an early error: discard the rest of the body */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->too_big || r->len + n > s->o.max_body) {
            /* MHD cannot answer before the body is read: discard it and answer 413 at the end;
             * a client that keeps sending far beyond the limit is disconnected. */
            r->too_big = true;
            free(r->body);
            r->body = NULL;
            r->cap = 0;
            r->len += n;
            return r->len > 16 * s->o.max_body + (1u << 20) ? MHD_NO : MHD_YES;
        }
        if (r->len + n + 1 > r->cap) {
            size_t nc = r->cap ? r->cap : 4096;
            while (nc < r->len + n + 1)
                nc *= 2;
            char *t = realloc(r->body, nc);
            if (!t)
                return MHD_NO;
            r->body = t;
            r->cap = nc;
        }
        memcpy(r->body + r->len, upload_data, n);
        r->len += n;
        r->body[r->len] = '\0';
        return MHD_YES;
    }
    if (r->too_big) {
        char msg[120];
        snprintf(msg, sizeof msg, "request body larger than the limit of %zu bytes", s->o.max_body);
        return reply_err(r, c, 413, "invalid_request_error", "request_too_large", NULL, msg,
                         "Connection", "close");
    }
    return generate(s, r, c);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe) {
    struct serve *s = cls;
    struct req *r = *con_cls;
    if (!r)
        return;
    *con_cls = NULL;
    if (s->o.log) {
        char who[64] = "-";
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, who,
                      sizeof who);
        else if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ci->client_addr)->sin6_addr, who,
                      sizeof who);
        char tok[160] = "";
        if (r->job) {
            pthread_mutex_lock(&r->job->mu);
            if (r->job->done && !r->job->failed)
                snprintf(tok, sizeof tok, " prompt=%u completion=%u cached=%u finish=%s%s",
                         r->job->res.prompt_tokens, r->job->res.completion_tokens,
                         r->job->res.cached_tokens,
                         r->job->res.finish == BACKEND_FINISH_CANCELLED
                             ? "cancelled"
                             : finish_name(r->job->res.finish),
                         r->stream ? " stream" : "");
            else if (!r->job->done && r->status == 200)
                snprintf(tok, sizeof tok, " cancelled");
            pthread_mutex_unlock(&r->job->mu);
        }
        time_t now = time(NULL);
        struct tm tmv;
        char ts[32];
        gmtime_r(&now, &tmv);
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tmv);
        pthread_mutex_lock(&s->log_mu);
        fprintf(s->o.log, "%s %s %s %s %d %.0fms%s%s\n", ts, who, r->method, r->path,
                r->status ? r->status : 0, (serve_now() - r->t0) * 1e3, tok,
                toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted");
        fflush(s->o.log);
        pthread_mutex_unlock(&s->log_mu);
    }
    job_release(r->job);
    free(r->body);
    free(r);
}

/* ==== lifecycle ==== */

int serve_start(const struct serve_options *o, struct serve **out, struct ica_error *err) {
    *out = NULL;
    if (!o || !o->backends || o->n_backends == 0 || !o->set)
        return ica_seterr(err, ICA_ERR_ARG, "serve: give a backend and a demonstration set");
    if (o->parallel < 1 || o->queue < 0)
        return ica_seterr(err, ICA_ERR_ARG, "serve: --parallel must be >= 1 and --queue >= 0");
    struct serve *s = calloc(1, sizeof *s);
    if (!s)
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
    s->o = *o;
    s->model_name = strdup(o->model_name ? o->model_name : "icalign");
    if (o->api_key) {
        s->api_key = strdup(o->api_key);
        s->api_key_len = s->api_key ? strlen(s->api_key) : 0;
    }
    if (!s->model_name || (o->api_key && !s->api_key)) {
        free(s->model_name);
        free(s->api_key);
        free(s);
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
    }
    if (!s->o.max_body)
        s->o.max_body = 1u << 20;
    pthread_mutex_init(&s->log_mu, NULL);
    atomic_init(&s->stopping, false);
    atomic_init(&s->next_id, 1);
    atomic_init(&s->served, 0);
    atomic_init(&s->rejected_busy, 0);
    atomic_init(&s->cancelled, 0);
    s->id_salt = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid();
    const size_t n_workers =
        (size_t)o->parallel < o->n_backends ? (size_t)o->parallel : o->n_backends;
    /* one asynchronous backend (the local engine) takes all parallel slots in one batch */
    const size_t slots = n_workers ? (size_t)o->parallel / n_workers : 1;
    int rc = sched_new(o->backends, n_workers, slots, (size_t)o->queue, &s->sched, err);
    if (rc != ICA_OK) {
        serve_stop(s, 0);
        return rc;
    }
    const char *host = o->host ? o->host : "127.0.0.1";
    struct sockaddr_in sa4;
    struct sockaddr_in6 sa6;
    memset(&sa4, 0, sizeof sa4);
    memset(&sa6, 0, sizeof sa6);
    const struct sockaddr *sa;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ITC;
    if (inet_pton(AF_INET, host, &sa4.sin_addr) == 1) {
        sa4.sin_family = AF_INET;
        sa4.sin_port = htons(o->port);
        sa = (const struct sockaddr *)&sa4;
    } else if (inet_pton(AF_INET6, host, &sa6.sin6_addr) == 1) {
        sa6.sin6_family = AF_INET6;
        sa6.sin6_port = htons(o->port);
        sa = (const struct sockaddr *)&sa6;
        flags |= MHD_USE_IPv6;
    } else {
        serve_stop(s, 0);
        return ica_seterr(err, ICA_ERR_ARG, "serve: --host '%s' is not an IPv4 or IPv6 address",
                          host);
    }
    s->d = MHD_start_daemon(
        flags, o->port, NULL, NULL, handler, s, MHD_OPTION_SOCK_ADDR, sa,
        MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)(o->idle_timeout_s ? o->idle_timeout_s : 30), MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)(o->max_connections ? o->max_connections : 256), MHD_OPTION_END);
    if (!s->d) {
        serve_stop(s, 0);
        return ica_seterr(err, ICA_ERR_IO, "serve: cannot listen on %s port %u (in use?)", host,
                          (unsigned)o->port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_LISTEN_FD);
    s->port = o->port;
    if (di) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (getsockname(di->listen_fd, (struct sockaddr *)&ss, &sl) == 0)
            s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                     : ((struct sockaddr_in *)&ss)->sin_port);
    }
    *out = s;
    return ICA_OK;
}

uint16_t serve_port(const struct serve *s) {
    return s->port;
}

void serve_get_stats(struct serve *s, struct serve_stats *st) {
    memset(st, 0, sizeof *st);
    if (s->sched)
        sched_counts(s->sched, &st->running, &st->queued);
    st->served = atomic_load(&s->served);
    st->rejected_busy = atomic_load(&s->rejected_busy);
    st->cancelled = atomic_load(&s->cancelled);
}

void serve_stop(struct serve *s, double grace_s) {
    if (!s)
        return;
    atomic_store(&s->stopping, true);
    MHD_socket lfd = MHD_INVALID_SOCKET;
    if (s->d)
        lfd = MHD_quiesce_daemon(s->d);
    struct serve_error e;
    memset(&e, 0, sizeof e);
    e.status = 503;
    e.type = "server_error";
    e.code = "shutting_down";
    snprintf(e.message, sizeof e.message, "the server is shutting down");
    sched_shutdown(s->sched, &e, grace_s);
    if (s->d)
        MHD_stop_daemon(s->d);
    if (lfd != MHD_INVALID_SOCKET)
        close(lfd);
    sched_destroy(s->sched);
    pthread_mutex_destroy(&s->log_mu);
    free(s->model_name);
    if (s->api_key) {
        memset(s->api_key, 0, s->api_key_len);
        free(s->api_key);
    }
    free(s);
}
