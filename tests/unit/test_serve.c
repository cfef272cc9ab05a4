/* serve: request parsing, chat rendering, streaming post-processing, and a real server on
 * 127.0.0.1 (random port) over a fake backend driven with libcurl: 429 with a full queue,
 * client disconnect cancels, 8 concurrent clients, API key, error bodies, stream reassembly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "icalign/serve.h"
#include "testutil.h"

#include <curl/curl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ==== streaming post-processing ==== */

static void check_clean_split(const char *raw, size_t len, uint64_t *rng) {
    char *want = NULL;
    size_t want_len = 0;
    assert_int_equal(align_postprocess(raw, len, &want, &want_len, NULL), ICA_OK);
    struct serve_clean c;
    serve_clean_init(&c);
    char *out = NULL;
    size_t ol = 0, oc = 0, i = 0;
    while (i < len) {
        *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
        size_t k = 1 + (size_t)((*rng >> 33) % 5);
        if (k > len - i)
            k = len - i;
        assert_true(serve_clean_feed(&c, raw + i, k, &out, &ol, &oc));
        i += k;
    }
    assert_true(serve_clean_finish(&c, &out, &ol, &oc));
    assert_int_equal(ol, want_len);
    if (want_len)
        assert_memory_equal(out, want, want_len);
    serve_clean_free(&c);
    free(out);
    free(want);
}

static void test_clean_stream(void **state) {
    (void)state;
    static const char *pieces[] = {
        "```",   "`", "``", " ",   "\n",       "\t", "\xC2\xA0", "\xE3\x80\x80", "<|endoftext|>",
        "<|end", "<", "|",  "abc", "\xC3\xA9", "x",  "# Query",  "\xE2\x80\x83", "\x1f"};
    const size_t np = sizeof pieces / sizeof pieces[0];
    uint64_t rng = 42;
    char buf[512];
    for (int t = 0; t < 4000; t++) {
        size_t len = 0;
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        int n = (int)((rng >> 33) % 24);
        for (int k = 0; k < n; k++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            const char *p = pieces[(rng >> 33) % np];
            size_t pl = strlen(p);
            if (len + pl >= sizeof buf)
                break;
            memcpy(buf + len, p, pl);
            len += pl;
        }
        check_clean_split(buf, len, &rng);
    }
    const char *fixed = "\n```\nHello ```python\nprint(1)``` <|endoftext|> world\n```\n\n";
    check_clean_split(fixed, strlen(fixed), &rng);
}

static void test_sanitize_and_key(void **state) {
    (void)state;
    size_t n = 0;
    char *s = serve_utf8_sanitize("a\xff"
                                  "b\xC3\xA9\xE2\x82",
                                  7, &n);
    assert_string_equal(s, "a\xEF\xBF\xBD"
                           "b\xC3\xA9\xEF\xBF\xBD\xEF\xBF\xBD");
    free(s);
    assert_true(serve_key_equal("secret", 6, "secret", 6));
    assert_false(serve_key_equal("secreT", 6, "secret", 6));
    assert_false(serve_key_equal("secret1", 7, "secret", 6));
    assert_false(serve_key_equal("", 0, "secret", 6));
}

/* ==== request parsing ==== */

static void expect_400(const char *body, bool chat, const char *param) {
    struct serve_request r;
    struct serve_error e;
    memset(&e, 0, sizeof e);
    assert_false(serve_parse_request(body, strlen(body), chat, &r, &e));
    assert_int_equal(e.status, 400);
    assert_string_equal(e.type, "invalid_request_error");
    if (param)
        assert_string_equal(e.param, param);
    assert_true(e.message[0] != '\0');
}

static void test_parse(void **state) {
    (void)state;
    const char *ok =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hi \"},"
        "{\"type\":\"text\",\"text\":\"there\"}]}],\"temperature\":0.5,"
        "\"top_p\":0.9,\"max_tokens\":7,\"stop\":[\"END\",\"\"],\"seed\":3,"
        "\"frequency_penalty\":0.3,\"presence_penalty\":-0.1,"
        "\"repetition_penalty\":1.15,\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},\"n\":1,\"user\":\"u\"}  \n";
    struct serve_request r;
    struct serve_error e;
    assert_true(serve_parse_request(ok, strlen(ok), true, &r, &e));
    assert_int_equal(r.n_msgs, 2);
    assert_int_equal(r.msgs[0].role, BACKEND_SYSTEM);
    assert_string_equal(r.msgs[1].content, "Hi there");
    assert_true(r.stream && r.include_usage && r.has_temperature && r.has_max_tokens);
    assert_int_equal(r.max_tokens, 7);
    assert_int_equal(r.n_stop, 1);
    assert_string_equal(r.stop[0], "END");
    assert_true(r.has_seed && r.seed == 3);
    assert_true(r.has_repetition_penalty && r.repetition_penalty > 1.14f);
    serve_request_free(&r);
    const char *cp = "{\"prompt\":[\"Once\"],\"stop\":\"x\",\"max_completion_tokens\":3}";
    assert_true(serve_parse_request(cp, strlen(cp), false, &r, &e));
    assert_string_equal(r.prompt, "Once");
    assert_int_equal(r.max_tokens, 3);
    serve_request_free(&r);

    expect_400("{\"messages\":", true, "");
    expect_400("[1,2]", true, "");
    expect_400("{} x", true, "");
    expect_400("{}", true, "messages");
    expect_400("{\"messages\":[]}", true, "messages");
    expect_400("{\"messages\":{}}", true, "messages");
    expect_400("{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", true, "messages[0].role");
    expect_400("{\"messages\":[{\"content\":\"x\"}]}", true, "messages[0].role");
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":5}]}", true, "messages[0].content");
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", true,
               "messages[0].content[0]");
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}", true,
               "messages[0].content");
    const char *m = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],";
    char b[256];
    const char *bad[][2] = {{"\"temperature\":3}", "temperature"},
                            {"\"temperature\":\"hot\"}", "temperature"},
                            {"\"top_p\":1.5}", "top_p"},
                            {"\"max_tokens\":0}", "max_tokens"},
                            {"\"max_tokens\":2.5}", "max_tokens"},
                            {"\"stop\":5}", "stop"},
                            {"\"stop\":[1]}", "stop"},
                            {"\"seed\":-1}", "seed"},
                            {"\"frequency_penalty\":9}", "frequency_penalty"},
                            {"\"repetition_penalty\":0}", "repetition_penalty"},
                            {"\"stream\":\"yes\"}", "stream"},
                            {"\"n\":2}", "n"},
                            {"\"model\":7}", "model"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(b, sizeof b, "%s%s", m, bad[i][0]);
        expect_400(b, true, bad[i][1]);
    }
    expect_400("{}", false, "prompt");
    expect_400("{\"prompt\":[1,2]}", false, "prompt");
    expect_400("{\"prompt\":\"\"}", false, "prompt");
    const char invalid_utf8[] = "{\"prompt\":\"\xff\"}";
    expect_400(invalid_utf8, false, "");
}

/* ==== rendering ==== */

static char *render(const struct align_set *set, enum serve_system_mode mode, const char *body) {
    struct serve_request r;
    struct serve_error e;
    assert_true(serve_parse_request(body, strlen(body), true, &r, &e));
    char *p = NULL;
    bool ok = serve_render_chat(set, mode, &r, &p, &e);
    serve_request_free(&r);
    return ok ? p : NULL;
}

static void test_render(void **state) {
    (void)state;
    struct align_set *set = NULL;
    assert_int_equal(align_spec_load("default", &set, NULL), ICA_OK);
    /* multi-turn = URIAL's rendering of [q1, a1, q2] */
    const char *conv = "{\"messages\":[{\"role\":\"user\",\"content\":\"Q1\"},"
                       "{\"role\":\"assistant\",\"content\":\"A1\"},"
                       "{\"role\":\"user\",\"content\":\"Q2\"}]}";
    char *p = render(set, SERVE_SYSTEM_EXTEND, conv);
    const char *msgs[] = {"Q1", "A1", "Q2"};
    char *want = NULL;
    size_t wl = 0;
    assert_int_equal(align_render(set, msgs, 3, &want, &wl, NULL), ICA_OK);
    assert_non_null(p);
    assert_string_equal(p, want);
    free(p);
    free(want);
    /* system message: extend keeps the rules, replace swaps them, ignore drops the message */
    const char *sys = "{\"messages\":[{\"role\":\"system\",\"content\":\"Talk like a pirate.\"},"
                      "{\"role\":\"user\",\"content\":\"Hi\"}]}";
    const char *hdr = align_set_header(set);
    char first_line[64];
    snprintf(first_line, sizeof first_line, "%.*s", (int)strcspn(hdr, "\n"), hdr);
    p = render(set, SERVE_SYSTEM_EXTEND, sys);
    assert_non_null(p);
    assert_true(strncmp(p, first_line, strlen(first_line)) == 0);
    assert_non_null(strstr(p, "\n\nTalk like a pirate.\n\n# Query:"));
    free(p);
    p = render(set, SERVE_SYSTEM_REPLACE, sys);
    assert_non_null(p);
    assert_true(strncmp(p, "Talk like a pirate.\n\n# Query:", 29) == 0);
    free(p);
    p = render(set, SERVE_SYSTEM_IGNORE, sys);
    const char *one[] = {"Hi"};
    assert_int_equal(align_render(set, one, 1, &want, &wl, NULL), ICA_OK);
    assert_string_equal(p, want);
    free(p);
    free(want);
    /* consecutive user messages are one block; bad shapes are 400 on "messages" */
    p = render(set, SERVE_SYSTEM_EXTEND,
               "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
               "{\"role\":\"user\",\"content\":\"b\"}]}");
    const char *ab[] = {"a\n\nb"};
    assert_int_equal(align_render(set, ab, 1, &want, &wl, NULL), ICA_OK);
    assert_string_equal(p, want);
    free(p);
    free(want);
    assert_null(render(set, SERVE_SYSTEM_EXTEND,
                       "{\"messages\":[{\"role\":\"assistant\",\"content\":\"a\"}]}"));
    assert_null(render(set, SERVE_SYSTEM_EXTEND,
                       "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
                       "{\"role\":\"assistant\",\"content\":\"b\"}]}"));
    assert_null(render(set, SERVE_SYSTEM_EXTEND,
                       "{\"messages\":[{\"role\":\"system\",\"content\":\"a\"}]}"));
    align_set_free(set);
}

/* ==== a fake backend ==== */

/* Answers "answer to <last query>" word by word (delay_ms between words, or many filler words
 * when the query is "long"), fails on "FAIL", waits for the gate when closed, and records
 * cancellations (the stream callback returned false). */
struct fake {
    struct backend base;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool gate_closed;
    int started;
    int delay_ms;
    atomic_int cancelled;
    atomic_int runs;
    uint32_t ctx;
};

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static char *last_query(const char *prompt) {
    const char *q = prompt, *t;
    while ((t = strstr(q, "# Query:\n```\n")) != NULL)
        q = t + 13;
    const char *e = strstr(q, "\n```");
    size_t n = e ? (size_t)(e - q) : strlen(q);
    char *s = malloc(n + 1);
    memcpy(s, q, n);
    s[n] = '\0';
    return s;
}

static int fake_run(struct backend *b, const struct backend_request *reqs, size_t n,
                    backend_stream_fn stream, backend_done_fn done, void *ud,
                    struct ica_error *err) {
    (void)err;
    struct fake *f = (struct fake *)b;
    for (size_t i = 0; i < n; i++) {
        atomic_fetch_add(&f->runs, 1);
        pthread_mutex_lock(&f->mu);
        f->started++;
        pthread_cond_broadcast(&f->cv);
        for (int k = 0; f->gate_closed && k < 1000; k++) {
            struct timespec dl;
            clock_gettime(CLOCK_REALTIME, &dl);
            dl.tv_nsec += 10000000L;
            if (dl.tv_nsec >= 1000000000L) {
                dl.tv_sec++;
                dl.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&f->cv, &f->mu, &dl);
        }
        pthread_mutex_unlock(&f->mu);
        char *q = last_query(reqs[i].prompt);
        if (strstr(q, "FAIL")) {
            struct ica_error e;
            ica_seterr(&e, ICA_ERR_IO, "fake backend failure");
            done(ud, i, &reqs[i], NULL, &e);
            free(q);
            continue;
        }
        char text[8192];
        if (!strcmp(q, "long")) {
            size_t l = 0;
            for (int k = 0; k < 400 && l + 8 < sizeof text; k++)
                l += (size_t)snprintf(text + l, sizeof text - l, "w%d ", k % 10);
        } else {
            snprintf(text, sizeof text, "answer to %s\n```\n\n", q);
        }
        free(q);
        size_t len = strlen(text), pos = 0, words = 0;
        bool cancelled = false;
        while (pos < len) {
            size_t e = pos;
            while (e < len && text[e] != ' ')
                e++;
            if (e < len)
                e++;
            words++;
            if (stream && !stream(ud, i, text + pos, e - pos)) {
                cancelled = true;
                pos = e;
                break;
            }
            pos = e;
            if (f->delay_ms)
                sleep_ms(f->delay_ms);
        }
        if (cancelled)
            atomic_fetch_add(&f->cancelled, 1);
        struct backend_result r;
        memset(&r, 0, sizeof r);
        r.text = malloc(pos + 1);
        memcpy(r.text, text, pos);
        r.text[pos] = '\0';
        r.text_len = pos;
        r.finish = cancelled ? BACKEND_FINISH_CANCELLED : BACKEND_FINISH_STOP;
        r.prompt_tokens = (uint32_t)strlen(reqs[i].prompt) / 4;
        r.completion_tokens = (uint32_t)words;
        r.cached_tokens = 3;
        done(ud, i, &reqs[i], &r, NULL);
        backend_result_free(&r);
    }
    return ICA_OK;
}

static int64_t fake_count(struct backend *b, const char *text) {
    (void)b;
    return (int64_t)strlen(text) / 4;
}
static uint32_t fake_ctx(struct backend *b) {
    return ((struct fake *)b)->ctx;
}
static const char *fake_describe(struct backend *b) {
    (void)b;
    return "fake";
}
static void fake_free(struct backend *b) {
    (void)b;
}
static const struct backend_ops fake_ops = {
    "fake", fake_run, fake_count, fake_ctx, fake_describe, fake_free, NULL, NULL, NULL};

static void fake_init(struct fake *f) {
    memset(f, 0, sizeof *f);
    f->base.ops = &fake_ops;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->ctx = 100000;
}

static void fake_gate(struct fake *f, bool closed) {
    pthread_mutex_lock(&f->mu);
    f->gate_closed = closed;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static bool fake_wait_started(struct fake *f, int n) {
    bool ok = false;
    for (int k = 0; k < 500 && !ok; k++) {
        pthread_mutex_lock(&f->mu);
        ok = f->started >= n;
        pthread_mutex_unlock(&f->mu);
        if (!ok)
            sleep_ms(10);
    }
    return ok;
}

/* ==== HTTP client ==== */

struct resp {
    long status;
    char *body;
    size_t len;
    size_t abort_after; /* > 0: abort the transfer once this many bytes arrived */
};

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
    struct resp *r = ud;
    size_t k = sz * n;
    char *t = realloc(r->body, r->len + k + 1);
    assert_non_null(t);
    r->body = t;
    memcpy(r->body + r->len, p, k);
    r->len += k;
    r->body[r->len] = '\0';
    if (r->abort_after && r->len >= r->abort_after)
        return 0;
    return k;
}

static CURLcode http(uint16_t port, const char *method, const char *path, const char *body,
                     const char *auth, struct resp *r) {
    CURL *c = curl_easy_init();
    char url[128], hdr[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", (unsigned)port, path);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (auth) {
        snprintf(hdr, sizeof hdr, "Authorization: %s", auth);
        h = curl_slist_append(h, hdr);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return rc;
}

static void resp_free(struct resp *r) {
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* The error object of an OpenAI-shaped error body; asserts the shape. */
static void expect_error(struct resp *r, long status, const char *type, const char *param) {
    assert_int_equal(r->status, status);
    json_object *o = json_tokener_parse(r->body ? r->body : "");
    assert_non_null(o);
    json_object *e = NULL, *v = NULL;
    assert_true(json_object_object_get_ex(o, "error", &e));
    assert_true(json_object_object_get_ex(e, "message", &v));
    assert_true(json_object_get_string_len(v) > 0);
    assert_true(json_object_object_get_ex(e, "type", &v));
    if (type)
        assert_string_equal(json_object_get_string(v), type);
    assert_true(json_object_object_get_ex(e, "code", &v));
    if (param) {
        assert_true(json_object_object_get_ex(e, "param", &v));
        assert_string_equal(json_object_get_string(v), param);
    }
    json_object_put(o);
}

/* message.content of a chat completion (malloc'd). */
static char *chat_content(const char *body) {
    json_object *o = json_tokener_parse(body), *ch, *m, *c;
    assert_non_null(o);
    assert_true(json_object_object_get_ex(o, "choices", &ch));
    assert_true(json_object_object_get_ex(json_object_array_get_idx(ch, 0), "message", &m));
    assert_true(json_object_object_get_ex(m, "content", &c));
    char *s = strdup(json_object_get_string(c));
    json_object_put(o);
    return s;
}

/* Reassembles the delta contents of an SSE chat stream; asserts it ends with [DONE]. */
static char *sse_content(const char *body, const char **finish) {
    char *acc = calloc(1, 1);
    size_t len = 0;
    bool done = false;
    *finish = NULL;
    static char fin[32];
    const char *p = body;
    while ((p = strstr(p, "data: ")) != NULL) {
        p += 6;
        const char *e = strstr(p, "\n\n");
        assert_non_null(e);
        if (!strncmp(p, "[DONE]", 6)) {
            done = true;
            break;
        }
        char *one = strndup(p, (size_t)(e - p));
        json_object *ev = json_tokener_parse(one), *ch, *d, *c, *f;
        free(one);
        assert_non_null(ev);
        assert_false(json_object_object_get_ex(ev, "error", NULL));
        assert_true(json_object_object_get_ex(ev, "choices", &ch));
        if (json_object_array_length(ch) > 0) {
            json_object *c0 = json_object_array_get_idx(ch, 0);
            if (json_object_object_get_ex(c0, "delta", &d) &&
                json_object_object_get_ex(d, "content", &c)) {
                size_t k = (size_t)json_object_get_string_len(c);
                acc = realloc(acc, len + k + 1);
                memcpy(acc + len, json_object_get_string(c), k + 1);
                len += k;
            }
            if (json_object_object_get_ex(c0, "finish_reason", &f) && f) {
                snprintf(fin, sizeof fin, "%s", json_object_get_string(f));
                *finish = fin;
            }
        }
        json_object_put(ev);
        p = e;
    }
    assert_true(done);
    return acc;
}

/* ==== server tests ==== */

struct fixture {
    struct fake f[2];
    struct backend *be[2];
    struct align_set *set;
    struct serve *s;
    uint16_t port;
};

static void start(struct fixture *x, int parallel, int queue, const char *key, size_t max_body) {
    memset(x, 0, sizeof *x);
    fake_init(&x->f[0]);
    fake_init(&x->f[1]);
    x->be[0] = &x->f[0].base;
    x->be[1] = &x->f[1].base;
    assert_int_equal(align_spec_load("none", &x->set, NULL), ICA_OK);
    struct serve_options o;
    serve_options_init(&o);
    o.port = 0;
    o.backends = x->be;
    o.n_backends = (size_t)parallel;
    o.parallel = parallel;
    o.queue = queue;
    o.set = x->set;
    o.api_key = key;
    o.model_name = "fake-model";
    if (max_body)
        o.max_body = max_body;
    struct ica_error e = {0};
    assert_int_equal(serve_start(&o, &x->s, &e), ICA_OK);
    x->port = serve_port(x->s);
    assert_true(x->port > 0);
}

static void stop(struct fixture *x) {
    serve_stop(x->s, 5);
    align_set_free(x->set);
}

static char *chat_body(const char *q, bool stream, const char *extra) {
    char *b = malloc(strlen(q) + 256);
    snprintf(b, strlen(q) + 256,
             "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],"
             "\"stream\":%s%s}",
             q, stream ? "true" : "false", extra ? extra : "");
    return b;
}

static void test_endpoints(void **state) {
    (void)state;
    struct fixture x;
    start(&x, 1, 4, NULL, 2048);
    struct resp r = {0};
    assert_int_equal(http(x.port, "GET", "/health", NULL, NULL, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"status\":\"ok\""));
    resp_free(&r);
    http(x.port, "GET", "/v1/models", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"id\":\"fake-model\""));
    resp_free(&r);
    /* chat: post-processed ("```" and trailing space removed), usage filled */
    char *b = chat_body("hello", false, NULL);
    http(x.port, "POST", "/v1/chat/completions", b, NULL, &r);
    free(b);
    assert_int_equal(r.status, 200);
    char *c = chat_content(r.body);
    assert_string_equal(c, "answer to hello");
    free(c);
    assert_non_null(strstr(r.body, "\"object\":\"chat.completion\""));
    assert_non_null(strstr(r.body, "\"prompt_tokens_details\":{\"cached_tokens\":3}"));
    assert_non_null(strstr(r.body, "\"finish_reason\":\"stop\""));
    resp_free(&r);
    /* streaming reassembles to the same answer */
    b = chat_body("hello", true, ",\"stream_options\":{\"include_usage\":true}");
    http(x.port, "POST", "/v1/chat/completions", b, NULL, &r);
    free(b);
    assert_int_equal(r.status, 200);
    const char *fin = NULL;
    c = sse_content(r.body, &fin);
    assert_string_equal(c, "answer to hello");
    assert_string_equal(fin, "stop");
    assert_non_null(strstr(r.body, "\"usage\":{"));
    assert_non_null(strstr(r.body, "chat.completion.chunk"));
    free(c);
    resp_free(&r);
    /* completions: raw text */
    http(x.port, "POST", "/v1/completions", "{\"prompt\":\"# Query:\\n```\\nraw\\n```\"}", NULL,
         &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"text\":\"answer to raw\\n```\\n\\n\""));
    resp_free(&r);
    /* errors */
    http(x.port, "POST", "/v1/chat/completions", "{\"messages\":[", NULL, &r);
    expect_error(&r, 400, "invalid_request_error", NULL);
    resp_free(&r);
    http(x.port, "POST", "/v1/chat/completions", "{}", NULL, &r);
    expect_error(&r, 400, "invalid_request_error", "messages");
    resp_free(&r);
    http(x.port, "POST", "/v1/chat/completions",
         "{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", NULL, &r);
    expect_error(&r, 400, "invalid_request_error", "messages[0].role");
    resp_free(&r);
    http(x.port, "GET", "/v1/chat/completions", NULL, NULL, &r);
    expect_error(&r, 405, "invalid_request_error", NULL);
    resp_free(&r);
    http(x.port, "POST", "/v1/models", "{}", NULL, &r);
    expect_error(&r, 405, "invalid_request_error", NULL);
    resp_free(&r);
    http(x.port, "GET", "/v2/nothing", NULL, NULL, &r);
    expect_error(&r, 404, "invalid_request_error", NULL);
    resp_free(&r);
    char big[4096];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    b = chat_body(big, false, NULL);
    http(x.port, "POST", "/v1/chat/completions", b, NULL, &r);
    free(b);
    expect_error(&r, 413, "invalid_request_error", NULL);
    resp_free(&r);
    /* backend failure: 500 */
    b = chat_body("FAIL now", false, NULL);
    http(x.port, "POST", "/v1/chat/completions", b, NULL, &r);
    free(b);
    expect_error(&r, 500, "server_error", NULL);
    resp_free(&r);
    /* context: max_tokens beyond the window names the field */
    x.f[0].ctx = 64;
    b = chat_body("hi", false, ",\"max_tokens\":1000");
    http(x.port, "POST", "/v1/chat/completions", b, NULL, &r);
    free(b);
    expect_error(&r, 400, "invalid_request_error", "max_tokens");
    assert_non_null(strstr(r.body, "context_length_exceeded"));
    resp_free(&r);
    /* without max_tokens the preset's 2048 is capped to what fits */
    b = chat_body("hi", false, NULL);
    http(x.port, "POST", "/v1/chat/completions", b, NULL, &r);
    free(b);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* the server still serves after all that */
    http(x.port, "GET", "/health", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    stop(&x);
}

static void test_api_key(void **state) {
    (void)state;
    struct fixture x;
    start(&x, 1, 4, "s3cret-key", 0);
    struct resp r = {0};
    http(x.port, "GET", "/v1/models", NULL, NULL, &r);
    expect_error(&r, 401, "invalid_request_error", NULL);
    assert_null(strstr(r.body, "s3cret"));
    resp_free(&r);
    http(x.port, "GET", "/v1/models", NULL, "Bearer s3cret-kez", &r);
    expect_error(&r, 401, NULL, NULL);
    resp_free(&r);
    char *b = chat_body("hi", false, NULL);
    http(x.port, "POST", "/v1/chat/completions", b, "Bearer wrong", &r);
    expect_error(&r, 401, NULL, NULL);
    resp_free(&r);
    http(x.port, "POST", "/v1/chat/completions", b, "Bearer s3cret-key", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    free(b);
    http(x.port, "GET", "/health", NULL, NULL, &r); /* health needs no key */
    assert_int_equal(r.status, 200);
    resp_free(&r);
    stop(&x);
}

struct client {
    uint16_t port;
    char q[32];
    bool stream;
    struct resp r;
    pthread_t th;
};

static void *client_main(void *arg) {
    struct client *c = arg;
    char *b = chat_body(c->q, c->stream, NULL);
    http(c->port, "POST", "/v1/chat/completions", b, NULL, &c->r);
    free(b);
    return NULL;
}

static int health_queued(uint16_t port) {
    struct resp r = {0};
    http(port, "GET", "/health", NULL, NULL, &r);
    const char *q = r.body ? strstr(r.body, "\"queued\":") : NULL;
    int n = q ? (int)strtol(q + 9, NULL, 10) : -1;
    resp_free(&r);
    return n;
}

static void test_queue_full(void **state) {
    (void)state;
    struct fixture x;
    start(&x, 1, 1, NULL, 0);
    fake_gate(&x.f[0], true);
    struct client a = {.port = x.port, .q = "A"}, b = {.port = x.port, .q = "B"};
    pthread_create(&a.th, NULL, client_main, &a);
    assert_true(fake_wait_started(&x.f[0], 1));
    pthread_create(&b.th, NULL, client_main, &b);
    int q = 0;
    for (int k = 0; k < 500 && (q = health_queued(x.port)) < 1; k++)
        sleep_ms(10);
    assert_int_equal(q, 1);
    struct resp r = {0};
    char *body = chat_body("C", false, NULL);
    http(x.port, "POST", "/v1/chat/completions", body, NULL, &r);
    free(body);
    expect_error(&r, 429, "rate_limit_error", NULL);
    resp_free(&r);
    fake_gate(&x.f[0], false);
    pthread_join(a.th, NULL);
    pthread_join(b.th, NULL);
    assert_int_equal(a.r.status, 200);
    assert_int_equal(b.r.status, 200);
    char *ca = chat_content(a.r.body), *cb = chat_content(b.r.body);
    assert_string_equal(ca, "answer to A");
    assert_string_equal(cb, "answer to B");
    free(ca);
    free(cb);
    resp_free(&a.r);
    resp_free(&b.r);
    stop(&x);
}

static void test_disconnect_cancels(void **state) {
    (void)state;
    struct fixture x;
    start(&x, 1, 4, NULL, 0);
    x.f[0].delay_ms = 5;
    struct resp r = {0};
    r.abort_after = 600; /* a few chunks in, the client hangs up */
    char *b = chat_body("long", true, NULL);
    CURLcode rc = http(x.port, "POST", "/v1/chat/completions", b, NULL, &r);
    free(b);
    assert_int_equal(rc, CURLE_WRITE_ERROR);
    bool seen = false;
    for (int k = 0; k < 500 && !seen; k++) {
        seen = atomic_load(&x.f[0].cancelled) == 1;
        if (!seen)
            sleep_ms(10);
    }
    assert_true(seen);
    resp_free(&r);
    stop(&x);
}

static void test_concurrent_clients(void **state) {
    (void)state;
    struct fixture x;
    start(&x, 2, 8, NULL, 0);
    x.f[0].delay_ms = x.f[1].delay_ms = 2;
    struct client c[8];
    for (int i = 0; i < 8; i++) {
        memset(&c[i], 0, sizeof c[i]);
        c[i].port = x.port;
        snprintf(c[i].q, sizeof c[i].q, "question %d", i);
        c[i].stream = i % 2 == 1;
        pthread_create(&c[i].th, NULL, client_main, &c[i]);
    }
    for (int i = 0; i < 8; i++)
        pthread_join(c[i].th, NULL);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(c[i].r.status, 200);
        char want[64];
        snprintf(want, sizeof want, "answer to question %d", i);
        const char *fin = NULL;
        char *got = c[i].stream ? sse_content(c[i].r.body, &fin) : chat_content(c[i].r.body);
        assert_string_equal(got, want);
        free(got);
        resp_free(&c[i].r);
    }
    /* every request ran exactly once, spread over both backends */
    assert_int_equal(atomic_load(&x.f[0].runs) + atomic_load(&x.f[1].runs), 8);
    struct serve_stats st;
    serve_get_stats(x.s, &st);
    assert_int_equal(st.served, 8);
    stop(&x);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_stream),
        cmocka_unit_test(test_sanitize_and_key),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_endpoints),
        cmocka_unit_test(test_api_key),
        cmocka_unit_test(test_queue_full),
        cmocka_unit_test(test_disconnect_cancels),
        cmocka_unit_test(test_concurrent_clients),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
