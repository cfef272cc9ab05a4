/* JSON of the OpenAI-compatible protocol: request bodies for /v1/completions
 * and /v1/chat/completions, and the parser of responses and streamed chunks
 * as OpenAI, vLLM and llama.cpp's server write them. */
#include "remote_internal.h"

#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ==== request ==== */

/* A float as the shortest decimal that reads back as the same float, so that
 * 0.7f goes out as 0.7 and not 0.699999988. */
static json_object *jfloat(float v) {
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v)
            break;
    }
    return json_object_new_double_s((double)v, buf);
}

static int add(json_object *o, const char *k, json_object *v, struct ica_error *err) {
    if (!v || json_object_object_add(o, k, v) != 0) {
        json_object_put(v);
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory building the request");
    }
    return ICA_OK;
}

static const char *role_name(enum backend_role r) {
    switch (r) {
    case BACKEND_SYSTEM:
        return "system";
    case BACKEND_ASSISTANT:
        return "assistant";
    case BACKEND_USER:
    default:
        return "user";
    }
}

int remote_build_body(const struct backend_request *rq, const char *model,
                      enum remote_penalty penalty, bool stream, char **out, struct ica_error *err) {
    *out = NULL;
    const struct backend_sampling *s = &rq->sampling;
    const bool chat = rq->prompt == NULL;
    if (s->repetition_penalty != 1.0f && penalty == REMOTE_PENALTY_NONE)
        return ica_seterr(err, ICA_ERR_UNSUPPORTED,
                          "repetition_penalty %g is not supported by this server (the OpenAI "
                          "API has none): use 1, or frequency/presence penalties",
                          (double)s->repetition_penalty);
    json_object *o = json_object_new_object();
    if (!o)
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory building the request");
    int rc = add(o, "model", json_object_new_string(model), err);
    if (rc == ICA_OK && chat) {
        json_object *msgs = json_object_new_array();
        rc = add(o, "messages", msgs, err);
        for (size_t i = 0; rc == ICA_OK && i < rq->n_messages; i++) {
            json_object *m = json_object_new_object();
            if (!m || json_object_array_add(msgs, m) != 0) {
                json_object_put(m);
                rc = ica_seterr(err, ICA_ERR_NOMEM, "out of memory building the request");
                break;
            }
            rc = add(m, "role", json_object_new_string(role_name(rq->messages[i].role)), err);
            if (rc == ICA_OK) {
                const char *c = rq->messages[i].content ? rq->messages[i].content : "";
                rc = add(m, "content", json_object_new_string(c), err);
            }
        }
    } else if (rc == ICA_OK) {
        rc = add(o, "prompt", json_object_new_string(rq->prompt), err);
    }
    if (rc == ICA_OK)
        rc = add(o, "max_tokens", json_object_new_int64(rq->max_tokens), err);
    if (rc == ICA_OK)
        rc = add(o, "temperature", jfloat(s->temperature), err);
    if (rc == ICA_OK)
        rc = add(o, "top_p", jfloat(s->top_p), err);
    if (rc == ICA_OK && s->seed >= 0)
        rc = add(o, "seed", json_object_new_int64(s->seed), err);
    if (rc == ICA_OK && rq->n_stop > 0) {
        json_object *st = json_object_new_array();
        rc = add(o, "stop", st, err);
        for (size_t i = 0; rc == ICA_OK && i < rq->n_stop; i++) {
            json_object *v = json_object_new_string(rq->stop[i] ? rq->stop[i] : "");
            if (!v || json_object_array_add(st, v) != 0) {
                json_object_put(v);
                rc = ica_seterr(err, ICA_ERR_NOMEM, "out of memory building the request");
            }
        }
    }
    if (rc == ICA_OK)
        rc = add(o, "frequency_penalty", jfloat(s->frequency_penalty), err);
    if (rc == ICA_OK)
        rc = add(o, "presence_penalty", jfloat(s->presence_penalty), err);
    if (rc == ICA_OK && s->repetition_penalty != 1.0f) {
        if (penalty != REMOTE_PENALTY_LLAMACPP)
            rc = add(o, "repetition_penalty", jfloat(s->repetition_penalty), err);
        if (rc == ICA_OK && penalty != REMOTE_PENALTY_VLLM) {
            rc = add(o, "repeat_penalty", jfloat(s->repetition_penalty), err);
            /* llama.cpp penalises only the last 64 tokens by default; -1 = the
             * whole context, as HF's penalty over prompt + output */
            if (rc == ICA_OK)
                rc = add(o, "repeat_last_n", json_object_new_int(-1), err);
        }
    }
    if (rc == ICA_OK && s->top_k > 0)
        rc = add(o, "top_k", json_object_new_int(s->top_k), err);
    if (rc == ICA_OK && s->min_p > 0.0f)
        rc = add(o, "min_p", jfloat(s->min_p), err);
    if (rc == ICA_OK && rq->top_logprobs > 0) {
        if (chat) {
            rc = add(o, "logprobs", json_object_new_boolean(1), err);
            if (rc == ICA_OK)
                rc = add(o, "top_logprobs", json_object_new_int(rq->top_logprobs), err);
        } else {
            rc = add(o, "logprobs", json_object_new_int(rq->top_logprobs), err);
        }
    }
    if (rc == ICA_OK && stream) {
        rc = add(o, "stream", json_object_new_boolean(1), err);
        json_object *so = json_object_new_object();
        if (rc == ICA_OK)
            rc = add(o, "stream_options", so, err);
        else
            json_object_put(so);
        if (rc == ICA_OK)
            rc = add(so, "include_usage", json_object_new_boolean(1), err);
    }
    if (rc == ICA_OK) {
        const char *txt = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                                JSON_C_TO_STRING_NOSLASHESCAPE);
        *out = txt ? strdup(txt) : NULL;
        if (!*out)
            rc = ica_seterr(err, ICA_ERR_NOMEM, "out of memory building the request");
    }
    json_object_put(o);
    return rc;
}

/* ==== response ==== */

void remote_parsed_free(struct remote_parsed *p) {
    if (!p)
        return;
    free(p->text);
    for (size_t i = 0; i < p->n_top; i++)
        free(p->top[i].token);
    free(p->top);
    memset(p, 0, sizeof *p);
    p->finish = -1;
}

static json_object *get(json_object *o, const char *k) {
    json_object *v = NULL;
    if (!o || !json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, k, &v))
        return NULL;
    return v;
}

static bool get_u32(json_object *o, const char *k, uint32_t *out) {
    json_object *v = get(o, k);
    if (!v || !(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)))
        return false;
    int64_t x = json_object_get_int64(v);
    *out = x < 0 ? 0 : x > UINT32_MAX ? UINT32_MAX : (uint32_t)x;
    return true;
}

static int finish_of(const char *s) {
    if (!strcmp(s, "length") || !strcmp(s, "max_tokens") || !strcmp(s, "limit"))
        return BACKEND_FINISH_LENGTH;
    return BACKEND_FINISH_STOP; /* stop, eos, content_filter, tool_calls, ... */
}

static int push_top(struct remote_parsed *p, const char *tok, size_t tok_len, double lp,
                    struct ica_error *err) {
    struct backend_logprob *nt = realloc(p->top, (p->n_top + 1) * sizeof *nt);
    if (!nt)
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
    p->top = nt;
    char *t = malloc(tok_len + 1);
    if (!t)
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
    memcpy(t, tok, tok_len);
    t[tok_len] = '\0';
    p->top[p->n_top].token = t;
    p->top[p->n_top].logprob = lp;
    p->n_top++;
    return ICA_OK;
}

static int cmp_top(const void *a, const void *b) {
    const struct backend_logprob *x = a, *y = b;
    if (x->logprob != y->logprob)
        return x->logprob > y->logprob ? -1 : 1;
    return strcmp(x->token, y->token);
}

static bool is_num(json_object *v) {
    return v && (json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int));
}

/* logprobs in either shape: {"content":[{"top_logprobs":[{"token","logprob"}]}]}
 * (chat; llama.cpp also for completions) or the legacy completions one,
 * {"top_logprobs":[{"tok": lp, ...}]}. Only the first token matters. */
static int parse_logprobs(json_object *lp, struct remote_parsed *p, struct ica_error *err) {
    json_object *content = get(lp, "content");
    if (content && json_object_is_type(content, json_type_array)) {
        if (json_object_array_length(content) == 0)
            return ICA_OK;
        json_object *tl = get(json_object_array_get_idx(content, 0), "top_logprobs");
        if (!tl || !json_object_is_type(tl, json_type_array))
            return ICA_OK;
        size_t n = json_object_array_length(tl);
        for (size_t i = 0; i < n; i++) {
            json_object *e = json_object_array_get_idx(tl, i);
            json_object *t = get(e, "token"), *l = get(e, "logprob");
            if (!t || !json_object_is_type(t, json_type_string) || !is_num(l))
                continue;
            int rc = push_top(p, json_object_get_string(t), (size_t)json_object_get_string_len(t),
                              json_object_get_double(l), err);
            if (rc)
                return rc;
        }
    } else {
        json_object *tl = get(lp, "top_logprobs");
        if (!tl || !json_object_is_type(tl, json_type_array) || json_object_array_length(tl) == 0)
            return ICA_OK;
        json_object *first = json_object_array_get_idx(tl, 0);
        if (!first || !json_object_is_type(first, json_type_object))
            return ICA_OK;
        json_object_object_foreach(first, k, v) {
            if (!is_num(v))
                continue;
            int rc = push_top(p, k, strlen(k), json_object_get_double(v), err);
            if (rc)
                return rc;
        }
    }
    if (p->n_top > 1)
        qsort(p->top, p->n_top, sizeof *p->top, cmp_top);
    return ICA_OK;
}

static int parse_obj(json_object *root, bool chat, bool chunk, struct remote_parsed *out,
                     struct ica_error *err) {
    if (!json_object_is_type(root, json_type_object))
        return ica_seterr(err, ICA_ERR_FORMAT, "response is not a JSON object");
    json_object *e = get(root, "error");
    if (e && !json_object_is_type(e, json_type_null)) {
        json_object *m = get(e, "message");
        const char *msg = m && json_object_is_type(m, json_type_string)
                              ? json_object_get_string(m)
                              : json_object_to_json_string_ext(e, JSON_C_TO_STRING_PLAIN);
        return ica_seterr(err, ICA_ERR_IO, "server reported an error: %.300s", msg ? msg : "");
    }
    json_object *choices = get(root, "choices");
    json_object *c0 = NULL;
    if (choices && json_object_is_type(choices, json_type_array) &&
        json_object_array_length(choices) > 0)
        c0 = json_object_array_get_idx(choices, 0);
    if (!c0 && !chunk)
        return ica_seterr(err, ICA_ERR_FORMAT, "response has no \"choices\"");
    if (c0 && !json_object_is_type(c0, json_type_object))
        return ica_seterr(err, ICA_ERR_FORMAT, "\"choices\"[0] is not an object");
    if (c0) {
        json_object *t = NULL;
        if (chat) {
            t = get(get(c0, chunk ? "delta" : "message"), "content");
            if (!t)
                t = get(c0, "text");
        } else {
            t = get(c0, "text");
        }
        if (t && json_object_is_type(t, json_type_string)) {
            size_t n = (size_t)json_object_get_string_len(t);
            out->text = malloc(n + 1);
            if (!out->text)
                return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
            memcpy(out->text, json_object_get_string(t), n);
            out->text[n] = '\0';
            out->text_len = n;
        } else if (t && !json_object_is_type(t, json_type_null)) {
            return ica_seterr(err, ICA_ERR_FORMAT, "the generated text is not a string");
        } else if (!chunk && !chat) {
            return ica_seterr(err, ICA_ERR_FORMAT, "\"choices\"[0] has no \"text\"");
        }
        json_object *fr = get(c0, "finish_reason");
        if (fr && json_object_is_type(fr, json_type_string))
            out->finish = finish_of(json_object_get_string(fr));
        json_object *lp = get(c0, "logprobs");
        if (lp && json_object_is_type(lp, json_type_object)) {
            int rc = parse_logprobs(lp, out, err);
            if (rc)
                return rc;
        }
    }
    json_object *u = get(root, "usage");
    if (u && json_object_is_type(u, json_type_object)) {
        out->has_usage = true;
        get_u32(u, "prompt_tokens", &out->prompt_tokens);
        get_u32(u, "completion_tokens", &out->completion_tokens);
        get_u32(get(u, "prompt_tokens_details"), "cached_tokens", &out->cached_tokens);
    }
    /* llama.cpp's server: cached prompt tokens in timings.cache_n (OpenAI
     * endpoints) or tokens_cached (its own /completion) */
    uint32_t c = 0;
    if (get_u32(get(root, "timings"), "cache_n", &c) && c > out->cached_tokens)
        out->cached_tokens = c;
    if (get_u32(root, "tokens_cached", &c) && c > out->cached_tokens)
        out->cached_tokens = c;
    return ICA_OK;
}

int remote_parse_response(const char *body, size_t len, bool chat, bool chunk,
                          struct remote_parsed *out, struct ica_error *err) {
    memset(out, 0, sizeof *out);
    out->finish = -1;
    if (len > INT_MAX)
        return ica_seterr(err, ICA_ERR_FORMAT, "response too large (%zu bytes)", len);
    size_t lead = 0;
    while (lead < len &&
           (body[lead] == ' ' || body[lead] == '\n' || body[lead] == '\r' || body[lead] == '\t'))
        lead++;
    if (lead == len)
        return ica_seterr(err, ICA_ERR_FORMAT, "empty response body");
    json_tokener *tok = json_tokener_new();
    if (!tok)
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
    json_object *root = json_tokener_parse_ex(tok, body, (int)len);
    enum json_tokener_error je = json_tokener_get_error(tok);
    size_t used = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!root || je != json_tokener_success) {
        json_object_put(root);
        return ica_seterr(err, ICA_ERR_FORMAT, "malformed JSON (%s)",
                          je == json_tokener_continue ? "truncated" : json_tokener_error_desc(je));
    }
    while (used < len &&
           (body[used] == ' ' || body[used] == '\n' || body[used] == '\r' || body[used] == '\t'))
        used++;
    int rc = used < len ? ica_seterr(err, ICA_ERR_FORMAT, "malformed JSON (trailing bytes)")
                        : parse_obj(root, chat, chunk, out, err);
    json_object_put(root);
    if (rc)
        remote_parsed_free(out);
    return rc;
}
