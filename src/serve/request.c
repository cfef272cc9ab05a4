/* Request bodies of /v1/chat/completions and /v1/completions, and the URIAL rendering of a chat.
 *
 * Body grammar (JSON object; unknown fields are ignored, null means "not set"):
 *   chat:        "messages": [ {"role": "system"|"developer"|"user"|"assistant",
 *                               "content": STRING | null | [ {"type": "text", "text": STRING} ]} ]
 *   completion:  "prompt": STRING | [ STRING ]
 *   both:        "model": STRING, "stream": BOOL, "stream_options": {"include_usage": BOOL},
 *                "temperature": 0..2, "top_p": 0..1, "max_tokens" | "max_completion_tokens": 1..,
 *                "stop": STRING | [ STRING ] (<= 16), "seed": INT >= 0,
 *                "frequency_penalty" | "presence_penalty": -2..2, "n": 1,
 *                extras "repetition_penalty": (0, 10], "top_k": INT >= 0, "min_p": 0..1 */
#include "icalign/serve.h"

#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool fail(struct serve_error *e, const char *param, const char *code, const char *fmt, ...)
    ICA_PRINTF(4, 5);

static bool fail(struct serve_error *e, const char *param, const char *code, const char *fmt, ...) {
    if (!e)
        return false;
    e->status = 400;
    e->type = "invalid_request_error";
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return false;
}

static bool nomem(struct serve_error *e) {
    if (e) {
        e->status = 500;
        e->type = "server_error";
        e->code = NULL;
        e->param[0] = '\0';
        snprintf(e->message, sizeof e->message, "out of memory");
    }
    return false;
}

void serve_request_free(struct serve_request *r) {
    if (!r)
        return;
    for (size_t i = 0; i < r->n_msgs; i++)
        free(r->msgs[i].content);
    free(r->msgs);
    free(r->prompt);
    free(r->model);
    for (size_t i = 0; i < r->n_stop; i++)
        free(r->stop[i]);
    free(r->stop);
    memset(r, 0, sizeof *r);
}

/* A JSON string without NUL bytes, copied. */
static bool get_string(json_object *v, const char *param, char **out, struct serve_error *e) {
    if (!json_object_is_type(v, json_type_string))
        return fail(e, param, NULL, "'%s' must be a string", param);
    const char *s = json_object_get_string(v);
    size_t len = (size_t)json_object_get_string_len(v);
    if (memchr(s, '\0', len))
        return fail(e, param, NULL, "'%s' contains a NUL character", param);
    *out = malloc(len + 1);
    if (!*out)
        return nomem(e);
    memcpy(*out, s, len + 1);
    return true;
}

static bool is_number(json_object *v) {
    return json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int);
}

/* Looks key up; *v = NULL when absent or null. */
static json_object *field(json_object *o, const char *key) {
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
        return NULL;
    return v;
}

static bool get_float(json_object *o, const char *key, double lo, double hi, bool lo_open,
                      bool *has, float *out, struct serve_error *e) {
    json_object *v = field(o, key);
    if (!v)
        return true;
    if (!is_number(v))
        return fail(e, key, NULL, "'%s' must be a number", key);
    double d = json_object_get_double(v);
    if (!isfinite(d) || d < lo || d > hi || (lo_open && d <= lo))
        return fail(e, key, NULL, "'%s' is %g; it must be in %s%g, %g]", key, d,
                    lo_open ? "(" : "[", lo, hi);
    *has = true;
    *out = (float)d;
    return true;
}

static bool get_int(json_object *o, const char *key, int64_t lo, int64_t hi, bool *has,
                    int64_t *out, struct serve_error *e) {
    json_object *v = field(o, key);
    if (!v)
        return true;
    if (json_object_is_type(v, json_type_double)) {
        double d = json_object_get_double(v);
        if (!(d == floor(d)) || d < (double)lo || d > (double)hi)
            return fail(e, key, NULL, "'%s' must be an integer in [%lld, %lld]", key, (long long)lo,
                        (long long)hi);
        *out = (int64_t)d;
    } else if (json_object_is_type(v, json_type_int)) {
        int64_t x = json_object_get_int64(v);
        if (x < lo || x > hi)
            return fail(e, key, NULL, "'%s' is %lld; it must be in [%lld, %lld]", key, (long long)x,
                        (long long)lo, (long long)hi);
        *out = x;
    } else {
        return fail(e, key, NULL, "'%s' must be an integer", key);
    }
    *has = true;
    return true;
}

static bool get_bool(json_object *o, const char *key, bool *out, struct serve_error *e) {
    json_object *v = field(o, key);
    if (!v)
        return true;
    if (!json_object_is_type(v, json_type_boolean))
        return fail(e, key, NULL, "'%s' must be a boolean", key);
    *out = json_object_get_boolean(v);
    return true;
}

/* content: string, null, or an array of {"type": "text", "text": ...} parts (joined). */
static bool get_content(json_object *v, const char *param, char **out, struct serve_error *e) {
    if (!v) {
        *out = strdup("");
        return *out ? true : nomem(e);
    }
    if (json_object_is_type(v, json_type_string))
        return get_string(v, param, out, e);
    if (!json_object_is_type(v, json_type_array))
        return fail(e, param, NULL, "'%s' must be a string, null or an array of text parts", param);
    size_t n = json_object_array_length(v), len = 0;
    char *acc = malloc(1);
    if (!acc)
        return nomem(e);
    acc[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        json_object *p = json_object_array_get_idx(v, i), *t = NULL;
        char pname[64];
        snprintf(pname, sizeof pname, "%.40s[%zu]", param, i);
        if (!json_object_is_type(p, json_type_object) || !(t = field(p, "type")) ||
            !json_object_is_type(t, json_type_string) ||
            strcmp(json_object_get_string(t), "text") != 0) {
            free(acc);
            return fail(e, pname, NULL,
                        "'%s': only {\"type\": \"text\", \"text\": ...} content parts are "
                        "supported",
                        pname);
        }
        char *s = NULL;
        json_object *tx = field(p, "text");
        if (!tx) {
            free(acc);
            return fail(e, pname, NULL, "'%s' has no text", pname);
        }
        if (!get_string(tx, pname, &s, e)) {
            free(acc);
            return false;
        }
        size_t sl = strlen(s);
        char *t2 = realloc(acc, len + sl + 1);
        if (!t2) {
            free(s);
            free(acc);
            return nomem(e);
        }
        acc = t2;
        memcpy(acc + len, s, sl + 1);
        len += sl;
        free(s);
    }
    *out = acc;
    return true;
}

static bool parse_messages(json_object *root, struct serve_request *r, struct serve_error *e) {
    json_object *m = field(root, "messages");
    if (!m)
        return fail(e, "messages", NULL, "'messages' is required");
    if (!json_object_is_type(m, json_type_array))
        return fail(e, "messages", NULL, "'messages' must be an array");
    size_t n = json_object_array_length(m);
    if (n == 0)
        return fail(e, "messages", NULL, "'messages' is empty");
    if (n > SERVE_MAX_MESSAGES)
        return fail(e, "messages", NULL, "'messages' has %zu entries; at most %d", n,
                    SERVE_MAX_MESSAGES);
    r->msgs = calloc(n, sizeof *r->msgs);
    if (!r->msgs)
        return nomem(e);
    for (size_t i = 0; i < n; i++) {
        json_object *msg = json_object_array_get_idx(m, i);
        char pname[64];
        snprintf(pname, sizeof pname, "messages[%zu]", i);
        if (!json_object_is_type(msg, json_type_object))
            return fail(e, pname, NULL, "'%s' must be an object", pname);
        json_object *role = field(msg, "role");
        snprintf(pname, sizeof pname, "messages[%zu].role", i);
        if (!role || !json_object_is_type(role, json_type_string))
            return fail(e, pname, NULL, "'%s' is required and must be a string", pname);
        const char *rs = json_object_get_string(role);
        enum backend_role br;
        if (!strcmp(rs, "system") || !strcmp(rs, "developer"))
            br = BACKEND_SYSTEM;
        else if (!strcmp(rs, "user"))
            br = BACKEND_USER;
        else if (!strcmp(rs, "assistant"))
            br = BACKEND_ASSISTANT;
        else
            return fail(e, pname, NULL,
                        "'%s': unknown role '%.40s' (system, developer, user, assistant)", pname,
                        rs);
        snprintf(pname, sizeof pname, "messages[%zu].content", i);
        char *content = NULL;
        if (!get_content(field(msg, "content"), pname, &content, e))
            return false;
        r->msgs[i].role = br;
        r->msgs[i].content = content;
        r->n_msgs = i + 1;
    }
    return true;
}

static bool parse_prompt(json_object *root, struct serve_request *r, struct serve_error *e) {
    json_object *p = field(root, "prompt");
    if (!p)
        return fail(e, "prompt", NULL, "'prompt' is required");
    if (json_object_is_type(p, json_type_array)) {
        if (json_object_array_length(p) != 1)
            return fail(e, "prompt", NULL, "'prompt' must be a string or an array of one string");
        p = json_object_array_get_idx(p, 0);
    }
    if (!json_object_is_type(p, json_type_string))
        return fail(e, "prompt", NULL,
                    "'prompt' must be a string (token arrays are not supported)");
    if (!get_string(p, "prompt", &r->prompt, e))
        return false;
    if (!r->prompt[0])
        return fail(e, "prompt", NULL, "'prompt' is empty");
    return true;
}

static bool parse_stop(json_object *root, struct serve_request *r, struct serve_error *e) {
    json_object *s = field(root, "stop");
    if (!s)
        return true;
    size_t n = 1;
    bool arr = json_object_is_type(s, json_type_array);
    if (arr)
        n = json_object_array_length(s);
    else if (!json_object_is_type(s, json_type_string))
        return fail(e, "stop", NULL, "'stop' must be a string or an array of strings");
    if (n > SERVE_MAX_STOP)
        return fail(e, "stop", NULL, "'stop' has %zu strings; at most %d", n, SERVE_MAX_STOP);
    r->stop = calloc(n ? n : 1, sizeof *r->stop);
    if (!r->stop)
        return nomem(e);
    for (size_t i = 0; i < n; i++) {
        json_object *v = arr ? json_object_array_get_idx(s, i) : s;
        char *str = NULL;
        if (!get_string(v, "stop", &str, e))
            return false;
        if (!str[0]) { /* an empty stop string stops nothing */
            free(str);
            continue;
        }
        r->stop[r->n_stop++] = str;
    }
    return true;
}

bool serve_parse_request(const char *body, size_t len, bool chat, struct serve_request *out,
                         struct serve_error *err) {
    memset(out, 0, sizeof *out);
    out->chat = chat;
    if (len > INT32_MAX)
        return fail(err, "", "invalid_json", "request body too large to parse");
    struct json_tokener *tok = json_tokener_new_ex(64);
    if (!tok)
        return nomem(err);
    json_tokener_set_flags(tok, JSON_TOKENER_VALIDATE_UTF8);
    json_object *root = json_tokener_parse_ex(tok, body ? body : "", (int)len);
    enum json_tokener_error je = json_tokener_get_error(tok);
    size_t used = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!root || je != json_tokener_success) {
        json_object_put(root);
        return fail(err, "", "invalid_json", "malformed JSON body: %s",
                    je == json_tokener_continue ? "unexpected end of input"
                                                : json_tokener_error_desc(je));
    }
    for (size_t i = used; i < len; i++)
        if (body[i] != ' ' && body[i] != '\t' && body[i] != '\r' && body[i] != '\n') {
            json_object_put(root);
            return fail(err, "", "invalid_json", "malformed JSON body: data after the object");
        }
    bool ok = true;
    if (!json_object_is_type(root, json_type_object)) {
        ok = fail(err, "", "invalid_json", "the body must be a JSON object");
        goto done;
    }
    json_object *v;
    if ((v = field(root, "model")) && !(ok = get_string(v, "model", &out->model, err)))
        goto done;
    ok = chat ? parse_messages(root, out, err) : parse_prompt(root, out, err);
    ok = ok && get_bool(root, "stream", &out->stream, err);
    if (ok && (v = field(root, "stream_options"))) {
        if (!json_object_is_type(v, json_type_object))
            ok = fail(err, "stream_options", NULL, "'stream_options' must be an object");
        else
            ok = get_bool(v, "include_usage", &out->include_usage, err);
    }
    ok = ok &&
         get_float(root, "temperature", 0, 2, false, &out->has_temperature, &out->temperature, err);
    ok = ok && get_float(root, "top_p", 0, 1, false, &out->has_top_p, &out->top_p, err);
    ok = ok && get_float(root, "min_p", 0, 1, false, &out->has_min_p, &out->min_p, err);
    ok = ok && get_float(root, "frequency_penalty", -2, 2, false, &out->has_frequency_penalty,
                         &out->frequency_penalty, err);
    ok = ok && get_float(root, "presence_penalty", -2, 2, false, &out->has_presence_penalty,
                         &out->presence_penalty, err);
    ok = ok && get_float(root, "repetition_penalty", 0, 10, true, &out->has_repetition_penalty,
                         &out->repetition_penalty, err);
    int64_t x = 0;
    bool has = false;
    ok = ok && get_int(root, "top_k", 0, INT32_MAX, &has, &x, err);
    if (ok && has) {
        out->has_top_k = true;
        out->top_k = (int32_t)x;
    }
    has = false;
    ok = ok && get_int(root, "max_tokens", 1, 1 << 24, &has, &x, err);
    if (ok && !has)
        ok = get_int(root, "max_completion_tokens", 1, 1 << 24, &has, &x, err);
    if (ok && has) {
        out->has_max_tokens = true;
        out->max_tokens = (uint32_t)x;
    }
    ok = ok && get_int(root, "seed", 0, INT64_MAX, &out->has_seed, &out->seed, err);
    has = false;
    ok = ok && get_int(root, "n", INT64_MIN, INT64_MAX, &has, &x, err);
    if (ok && has && x != 1)
        ok = fail(err, "n", NULL, "'n' must be 1 (one choice per request)");
    ok = ok && parse_stop(root, out, err);
done:
    json_object_put(root);
    if (!ok)
        serve_request_free(out);
    return ok;
}

bool serve_system_mode_parse(const char *s, enum serve_system_mode *m) {
    if (!strcmp(s, "extend"))
        *m = SERVE_SYSTEM_EXTEND;
    else if (!strcmp(s, "replace"))
        *m = SERVE_SYSTEM_REPLACE;
    else if (!strcmp(s, "ignore"))
        *m = SERVE_SYSTEM_IGNORE;
    else
        return false;
    return true;
}

/* Growing string. */
struct sbuf {
    char *p;
    size_t len, cap;
    bool bad;
};

static void sb_add(struct sbuf *b, const char *s, size_t n) {
    if (b->bad)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 64;
        while (nc < b->len + n + 1)
            nc *= 2;
        char *t = realloc(b->p, nc);
        if (!t) {
            b->bad = true;
            return;
        }
        b->p = t;
        b->cap = nc;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static size_t rstrip_len(const char *s, size_t n) {
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        n--;
    return n;
}

bool serve_render_chat(const struct align_set *set, enum serve_system_mode mode,
                       const struct serve_request *r, char **prompt, struct serve_error *err) {
    *prompt = NULL;
    struct sbuf sys = {0};
    char **turns = calloc(r->n_msgs ? r->n_msgs : 1, sizeof *turns);
    size_t n = 0;
    bool ok = turns != NULL;
    enum backend_role last = BACKEND_SYSTEM;
    for (size_t i = 0; ok && i < r->n_msgs; i++) {
        const struct serve_message *m = &r->msgs[i];
        const size_t cl = strlen(m->content);
        if (m->role == BACKEND_SYSTEM) {
            if (sys.len)
                sb_add(&sys, "\n\n", 2);
            sb_add(&sys, m->content, cl);
            continue;
        }
        if (n == 0 && m->role != BACKEND_USER) {
            ok = fail(err, "messages", NULL,
                      "the conversation must start with a user message (messages[%zu] is an "
                      "assistant message)",
                      i);
            break;
        }
        if (n > 0 && m->role == last) { /* consecutive turns of one role: one block */
            char *prev = turns[n - 1];
            size_t pl = strlen(prev);
            char *t = realloc(prev, pl + 2 + cl + 1);
            if (!t) {
                ok = nomem(err);
                break;
            }
            memcpy(t + pl, "\n\n", 2);
            memcpy(t + pl + 2, m->content, cl + 1);
            turns[n - 1] = t;
            continue;
        }
        turns[n] = strdup(m->content);
        if (!turns[n]) {
            ok = nomem(err);
            break;
        }
        n++;
        last = m->role;
    }
    if (ok && sys.bad)
        ok = nomem(err);
    if (ok && n == 0)
        ok = fail(err, "messages", NULL, "'messages' has no user message");
    if (ok && last != BACKEND_USER)
        ok = fail(err, "messages", NULL,
                  "the last message must be a user message (the answer is generated after it)");
    struct align_set *own = NULL;
    if (ok && sys.len && mode != SERVE_SYSTEM_IGNORE) {
        own = align_set_clone(set);
        struct sbuf h = {0};
        if (mode == SERVE_SYSTEM_EXTEND) {
            const char *old = align_set_header(set);
            size_t ol = rstrip_len(old, strlen(old));
            sb_add(&h, old, ol);
            if (ol)
                sb_add(&h, "\n\n", 2);
        }
        sb_add(&h, sys.p, rstrip_len(sys.p, sys.len));
        sb_add(&h, "\n\n", 2);
        if (!own || h.bad || align_set_set_header(own, h.p, NULL) != ICA_OK)
            ok = nomem(err);
        free(h.p);
    }
    if (ok) {
        struct ica_error e = {0};
        size_t plen = 0;
        if (align_render(own ? own : set, (const char *const *)turns, n, prompt, &plen, &e) !=
            ICA_OK)
            ok = fail(err, "messages", NULL, "cannot render the conversation: %s", e.msg);
    }
    align_set_free(own);
    for (size_t i = 0; turns && i < n; i++)
        free(turns[i]);
    free(turns);
    free(sys.p);
    return ok;
}
