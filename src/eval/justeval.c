/* just-eval score mode: template rendering and judge-reply parsing (data/just_eval/SPEC.md). */
#include "internal.h"
#include "icalign/eval.h"

#include <ctype.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

static const char *const g_aspects[EVAL_JE_NASPECT] = {"helpfulness", "clarity", "factuality",
                                                       "depth", "engagement"};

const char *eval_je_aspect_name(int a) {
    return a >= 0 && a < EVAL_JE_NASPECT ? g_aspects[a] : NULL;
}

static int ident_start(char c) {
    return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int ident_char(char c) {
    return ident_start(c) || (c >= '0' && c <= '9');
}

char *eval_je_render(const char *tmpl, const char *instruction, const char *candidate,
                     struct ica_error *e) {
    /* Python string.Template.substitute: $$ -> $, $name / ${name} -> value, anything else after
     * a $ is an error (ValueError), an unknown name too (KeyError) */
    struct sbuf b = {0};
    const char *s = tmpl;
    while (*s) {
        const char *d = strchr(s, '$');
        if (!d) {
            sb_adds(&b, s);
            break;
        }
        sb_add(&b, s, (size_t)(d - s));
        const char *p = d + 1, *name = NULL;
        size_t nl = 0;
        if (*p == '$') {
            sb_add(&b, "$", 1);
            s = p + 1;
            continue;
        }
        if (*p == '{') {
            const char *q = p + 1;
            if (ident_start(*q)) {
                const char *r = q;
                while (ident_char(*r))
                    r++;
                if (*r == '}') {
                    name = q;
                    nl = (size_t)(r - q);
                    s = r + 1;
                }
            }
        } else if (ident_start(*p)) {
            const char *r = p;
            while (ident_char(*r))
                r++;
            name = p;
            nl = (size_t)(r - p);
            s = r;
        }
        if (!name) {
            free(sb_take(&b));
            ica_seterr(e, ICA_ERR_FORMAT, "template: invalid placeholder at offset %zu",
                       (size_t)(d - tmpl));
            return NULL;
        }
        const char *val = NULL;
        if (nl == 11 && !memcmp(name, "instruction", 11))
            val = instruction;
        else if (nl == 9 && !memcmp(name, "candidate", 9))
            val = candidate;
        if (!val) {
            free(sb_take(&b));
            ica_seterr(e, ICA_ERR_FORMAT, "template: unknown placeholder '%.*s'",
                       (int)(nl > 40 ? 40 : nl), name);
            return NULL;
        }
        sb_adds(&b, val);
    }
    char *r = sb_take(&b);
    if (!r)
        ica_seterr(e, ICA_ERR_NOMEM, "out of memory");
    return r;
}

/* Replaces every occurrence of a by c in s (malloc'd result). */
static char *replace_all(const char *s, const char *a, const char *c) {
    struct sbuf b = {0};
    size_t al = strlen(a);
    for (const char *p = s;;) {
        const char *q = strstr(p, a);
        if (!q) {
            sb_adds(&b, p);
            break;
        }
        sb_add(&b, p, (size_t)(q - p));
        sb_adds(&b, c);
        p = q + al;
    }
    return sb_take(&b);
}

static int score_value(json_object *v, double *out) {
    if (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) {
        *out = json_object_get_double(v);
        return 0;
    }
    if (!json_object_is_type(v, json_type_string))
        return -1;
    const char *s = json_object_get_string(v);
    if (!strcmp(s, "N/A")) {
        *out = 5.0; /* just-eval counts N/A as the best score */
        return 0;
    }
    /* Python float(): surrounding whitespace allowed */
    while (isspace((unsigned char)*s))
        s++;
    char *end;
    double x = strtod(s, &end);
    if (end == s)
        return -1;
    while (isspace((unsigned char)*end))
        end++;
    if (*end)
        return -1;
    *out = x;
    return 0;
}

int eval_je_parse_scores(const char *reply, bool safety, double *scores, struct ica_error *e) {
    if (!reply)
        return ica_seterr(e, ICA_ERR_ARG, "just-eval: no reply");
    char *t = replace_all(reply, "```", "");
    char *u = NULL;
    if (t)
        u = strstr(t, "\\\\\"") ? replace_all(t, "\\\\\"", "\\\"") : replace_all(t, "\\", "\\\\");
    free(t);
    if (!u)
        return ica_seterr(e, ICA_ERR_NOMEM, "out of memory");
    char *open = strchr(u, '{'), *close = strrchr(u, '}');
    if (!open || !close || close < open) {
        free(u);
        return ica_seterr(e, ICA_ERR_FORMAT, "just-eval: no JSON object in the reply");
    }
    /* keep { ... }, drop newlines */
    size_t k = 0;
    for (char *p = open; p <= close; p++)
        if (*p != '\n')
            u[k++] = *p;
    u[k] = '\0';
    json_tokener *tok = json_tokener_new();
    json_object *o = tok ? json_tokener_parse_ex(tok, u, (int)k) : NULL;
    int ok = tok && o && json_tokener_get_error(tok) == json_tokener_success &&
             json_tokener_get_parse_end(tok) == k;
    json_tokener_free(tok);
    free(u);
    if (!ok || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return ica_seterr(e, ICA_ERR_FORMAT, "just-eval: the reply is not valid JSON");
    }
    int na = safety ? 1 : EVAL_JE_NASPECT, rc = ICA_OK;
    for (int a = 0; a < na && rc == ICA_OK; a++) {
        const char *key = safety ? "safety" : g_aspects[a];
        json_object *asp, *sc;
        if (!json_object_object_get_ex(o, key, &asp) ||
            !json_object_is_type(asp, json_type_object) ||
            !json_object_object_get_ex(asp, "score", &sc) || score_value(sc, &scores[a]))
            rc = ica_seterr(e, ICA_ERR_FORMAT, "just-eval: aspect '%s' has no usable score", key);
    }
    json_object_put(o);
    return rc;
}
