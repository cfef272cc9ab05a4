/* icalign — serve module: an OpenAI-compatible HTTP server (libmicrohttpd) that answers chat
 * requests with a base model through URIAL in-context alignment.
 *
 *   POST /v1/chat/completions  messages -> URIAL multi-turn prompt over the demonstration set ->
 *                              backend -> align post-processing; optional SSE streaming
 *   POST /v1/completions       raw prompt (the caller renders), raw continuation
 *   GET  /v1/models            the one served model
 *   GET  /health               {"status": "ok", "running": R, "queued": Q}
 *
 * Errors are OpenAI-shaped: {"error": {"message", "type", "param", "code"}}. Requests are jobs in
 * a bounded queue served by worker threads, one per backend (a backend is owned by one worker;
 * the local backend is one backend today, so local requests run one at a time; a remote backend
 * per --parallel slot runs them concurrently). See docs/SERVE.md. */
#ifndef ICALIGN_SERVE_H
#define ICALIGN_SERVE_H

#include "icalign/align.h"
#include "icalign/backend.h"
#include "icalign/common.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ==== Request parsing (exposed for tests and fuzzing) ==== */

/* What a request failed on, as an HTTP status and an OpenAI-shaped error. type and code point
 * to static strings; param names the offending field ("" when none). */
struct serve_error {
    int status;
    const char *type; /* "invalid_request_error", "server_error", ... */
    const char *code; /* NULL or "invalid_json", "context_length_exceeded", ... */
    char param[64];
    char message[512];
};

struct serve_message {
    enum backend_role role;
    char *content; /* text parts joined; "" for null content */
};

/* A parsed /v1/chat/completions or /v1/completions body. has_* tell which decoding fields the
 * request set (the others come from the preset). */
struct serve_request {
    bool chat;
    struct serve_message *msgs; /* chat: in request order, system messages included */
    size_t n_msgs;
    char *prompt; /* completion */
    char *model;  /* as sent (may be NULL); informational only */
    bool stream, include_usage;
    bool has_temperature, has_top_p, has_top_k, has_min_p, has_max_tokens, has_seed;
    bool has_frequency_penalty, has_presence_penalty, has_repetition_penalty;
    float temperature, top_p, min_p, frequency_penalty, presence_penalty, repetition_penalty;
    int32_t top_k;
    uint32_t max_tokens;
    int64_t seed;
    char **stop; /* request stop strings (owned) */
    size_t n_stop;
};

#define SERVE_MAX_STOP     16
#define SERVE_MAX_MESSAGES 4096

/* Parses body[0..len) (not NUL-terminated) as a chat (chat = true) or completion request.
 * Returns true and fills *out (free with serve_request_free), or false with *err describing a
 * 400 error that names the field (malformed JSON, wrong type, value out of range, unknown role,
 * missing messages/prompt, unsupported n). Never crashes on any input. */
ICA_API bool serve_parse_request(const char *body, size_t len, bool chat, struct serve_request *out,
                                 struct serve_error *err);
ICA_API void serve_request_free(struct serve_request *r);

/* How a request's system message(s) change the rules header of the demonstration set. */
enum serve_system_mode {
    SERVE_SYSTEM_EXTEND = 0, /* header, blank line, system text (the URIAL rules stay) */
    SERVE_SYSTEM_REPLACE,    /* the system text replaces the header; demos stay */
    SERVE_SYSTEM_IGNORE,     /* system messages are dropped */
};
/* "extend", "replace", "ignore"; false for anything else. */
ICA_API bool serve_system_mode_parse(const char *s, enum serve_system_mode *m);

/* Renders a parsed chat request into the URIAL prompt over set: system messages (joined by a
 * blank line) change the header as mode says; consecutive messages of the same role are joined
 * by a blank line; the conversation must start and end with a user message. *prompt is malloc'd.
 * False with a 400 error naming "messages" otherwise. */
ICA_API bool serve_render_chat(const struct align_set *set, enum serve_system_mode mode,
                               const struct serve_request *r, char **prompt,
                               struct serve_error *err);

/* ==== Streaming post-processing ==== */

/* Incremental align_postprocess: feeding a raw answer in chunks split anywhere yields, over all
 * serve_clean_feed outputs plus serve_clean_finish, exactly align_postprocess(raw). It holds back
 * what later bytes could still change: a run of backticks (a run of k becomes k mod 3, since
 * every "```" is deleted), a possible prefix of "<|endoftext|>" (replaced by a space), trailing
 * whitespace (stripped at the end) and an incomplete UTF-8 sequence. Leading whitespace is
 * dropped. */
struct serve_clean {
    size_t ticks; /* trailing run of backticks not yet decided */
    char eot[16]; /* partial "<|endoftext|>" */
    size_t eot_len;
    unsigned char unit[4]; /* partial UTF-8 code point */
    size_t unit_len, unit_need;
    char *ws; /* whitespace after the last emitted non-space */
    size_t ws_len, ws_cap;
    bool started; /* a non-space was emitted */
    bool failed;  /* out of memory */
};
ICA_API void serve_clean_init(struct serve_clean *c);
ICA_API void serve_clean_free(struct serve_clean *c);
/* Appends the text that became final to *out (malloc'd growing buffer out, out_len, out_cap).
 * False when out of memory. */
ICA_API bool serve_clean_feed(struct serve_clean *c, const char *raw, size_t len, char **out,
                              size_t *out_len, size_t *out_cap);
ICA_API bool serve_clean_finish(struct serve_clean *c, char **out, size_t *out_len,
                                size_t *out_cap);

/* Copy of s[0..len) with invalid UTF-8 and NUL bytes replaced by U+FFFD (JSON strings must be
 * valid UTF-8). malloc'd, NUL-terminated; NULL when out of memory. */
ICA_API char *serve_utf8_sanitize(const char *s, size_t len, size_t *out_len);

/* Constant-time comparison of a presented key with the expected one (time depends only on the
 * expected key's length). */
ICA_API bool serve_key_equal(const char *given, size_t given_len, const char *want,
                             size_t want_len);

/* ==== The server ==== */

struct serve_options {
    const char *host; /* bind address (default "127.0.0.1") */
    uint16_t port;    /* 0 = any free port (see serve_port) */
    /* Backends: each is used by one worker thread at a time (never concurrently). Give several
     * (e.g. one remote backend per parallel slot) to answer requests concurrently. Borrowed:
     * they must outlive the server. */
    struct backend *const *backends;
    size_t n_backends;
    const struct align_set *set;   /* demonstration set (borrowed, read-only) */
    struct align_preset preset;    /* decoding defaults and stop strings */
    enum serve_system_mode system; /* system message semantics */
    const char *model_name;        /* id in responses and /v1/models */
    const char *api_key;           /* NULL = no authentication (copied) */
    int parallel;                  /* concurrent requests at most (>= 1; default 1) */
    int queue;                     /* requests waiting at most (>= 0; default 16); 429 beyond */
    size_t max_body;               /* request body limit in bytes (default 1 MiB); 413 beyond */
    unsigned idle_timeout_s;       /* idle / slow client limit (default 30) */
    unsigned max_connections;      /* open connections at most (default 256) */
    FILE *log;                     /* access log (one line per request) or NULL */
    bool log_content;              /* also log rendered prompts and answers */
};

ICA_API void serve_options_init(struct serve_options *o);

struct serve;

/* Starts listening and the worker threads. Errors: bad options, bind failure (address in use),
 * thread creation. */
ICA_API int serve_start(const struct serve_options *o, struct serve **out,
                        struct ica_error *err) ICA_WUR;
/* The port actually bound. */
ICA_API uint16_t serve_port(const struct serve *s);

struct serve_stats {
    size_t running, queued;
    uint64_t served, rejected_busy, cancelled;
};
ICA_API void serve_get_stats(struct serve *s, struct serve_stats *st);

/* Graceful shutdown: stops accepting connections, answers queued requests with 503, lets
 * running requests finish for up to grace_s seconds and then cancels them, closes every
 * connection, joins the threads and frees s. NULL-safe. */
ICA_API void serve_stop(struct serve *s, double grace_s);

#endif
