/* Remote backend: OpenAI-compatible HTTP servers (vLLM, llama.cpp server,
 * TGI, OpenAI) behind the backend.h interface.
 *
 * Completion requests go to POST {base}/v1/completions, chat requests to
 * POST {base}/v1/chat/completions. Requests run concurrently over libcurl's
 * multi interface; each goes to the least-loaded endpoint. Connection errors,
 * timeouts, HTTP 408/429 (Retry-After honoured) and 5xx are retried with
 * exponential backoff and jitter; other 4xx and malformed responses fail at
 * once. Every finished request is reported through the done callback as soon
 * as it completes. The API key is sent as "Authorization: Bearer" and never
 * appears in describe(), error messages or logs. See docs/BACKENDS.md. */
#ifndef ICALIGN_REMOTE_H
#define ICALIGN_REMOTE_H

#include "icalign/backend.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Which extra field carries the repetition penalty (OpenAI has none). */
enum remote_penalty {
    REMOTE_PENALTY_AUTO = 0, /* refuse for api.openai.com, else send both fields below */
    REMOTE_PENALTY_VLLM,     /* "repetition_penalty" (vLLM, TGI's extension, SGLang) */
    REMOTE_PENALTY_LLAMACPP, /* "repeat_penalty" with "repeat_last_n": -1 (llama.cpp) */
    REMOTE_PENALTY_BOTH,     /* both of the above (servers ignore unknown fields) */
    REMOTE_PENALTY_NONE,     /* server has none: a penalty != 1 is an error */
};

struct remote_options {
    const char *const *base_urls; /* "http://host:8000" or ".../v1"; several = dispatch */
    size_t n_base_urls;
    const char *model;        /* sent as "model"; required */
    const char *api_key_file; /* first line is the key; NULL: $ICALIGN_API_KEY, $OPENAI_API_KEY */
    bool no_env_key;          /* do not read the key from the environment */
    int concurrency;          /* requests in flight at once (>= 1) */
    double timeout_s;         /* whole-request limit, per attempt */
    double connect_timeout_s; /* connection limit, per attempt */
    int max_retries;          /* retries after the first attempt */
    double backoff_s;         /* first backoff; doubles each retry, with jitter */
    double backoff_max_s;     /* backoff cap */
    double retry_after_max_s; /* a server's Retry-After is honoured up to this */
    enum remote_penalty penalty;
    bool stream; /* use SSE streaming (stream callback gets text as it arrives) */
};

/* Defaults: concurrency 4, timeout 600 s, connect 30 s, 5 retries, backoff
 * 1 s doubling up to 60 s, Retry-After up to 300 s, penalty AUTO, no stream. */
ICA_API void remote_options_init(struct remote_options *o);

/* Creates the backend. Copies everything it needs from o. Errors: no URL or
 * model, an unusable URL, an unreadable key file, curl init failure. */
ICA_API int remote_backend_new(const struct remote_options *o, struct backend **out,
                               struct ica_error *err);

/* ---- parsers, exposed for tests and fuzzing ---- */

/* Incremental Server-Sent Events parser: feed bytes split anywhere; the
 * callback receives the data of each complete event (multi-line data joined
 * with '\n'). Returning false from the callback stops the parser (sse_feed
 * then returns false too). */
typedef bool (*sse_event_fn)(void *ud, const char *data, size_t len);

struct sse_parser {
    char *line; /* current partial line */
    size_t line_len, line_cap;
    char *data; /* data of the event being built */
    size_t data_len, data_cap;
    bool has_data;
    bool skip_lf; /* last byte was '\r': a following '\n' belongs to it */
    bool bom_checked;
    bool failed; /* out of memory or line too long */
};

ICA_API void sse_init(struct sse_parser *p);
ICA_API bool sse_feed(struct sse_parser *p, const char *buf, size_t len, sse_event_fn fn, void *ud);
/* End of stream: dispatches a last event not followed by a blank line. */
ICA_API bool sse_finish(struct sse_parser *p, sse_event_fn fn, void *ud);
ICA_API void sse_free(struct sse_parser *p);

/* What one response (or one streamed chunk) said. */
struct remote_parsed {
    char *text; /* malloc'd; NULL when the chunk carries none */
    size_t text_len;
    int finish; /* -1 none yet, else enum backend_finish */
    bool has_usage;
    uint32_t prompt_tokens, completion_tokens, cached_tokens;
    struct backend_logprob *top; /* first token's alternatives, best first */
    size_t n_top;
};

/* Parses a /v1/completions or /v1/chat/completions response body (chat =
 * message.content; streamed chunk = delta.content or text). Fills *out
 * (free with remote_parsed_free). An {"error": ...} body or malformed JSON is
 * ICA_ERR_FORMAT with a message (the caller prefixes the endpoint). */
ICA_API int remote_parse_response(const char *body, size_t len, bool chat, bool chunk,
                                  struct remote_parsed *out, struct ica_error *err);
ICA_API void remote_parsed_free(struct remote_parsed *p);

#endif
