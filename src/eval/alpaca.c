/* AlpacaEval 2.0 annotation side: order switch, prompt, logprob preference, annotation files and
 * win rate (data/alpaca_eval/SPEC.md sections 2-3). */
#include "internal.h"
#include "icalign/eval.h"

#include <json-c/json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

bool eval_ae_is_switched(const char *instruction, const char *seed) {
    struct sbuf b = {0};
    sb_adds(&b, "is_switched_outputs");
    sb_adds(&b, instruction ? instruction : "");
    sb_adds(&b, seed ? seed : "0");
    size_t n = b.n;
    char *s = sb_take(&b);
    if (!s)
        return false;
    struct eval_mt19937 r;
    eval_pyrandom_seed_str(&r, s, n);
    free(s);
    /* choices([False, True]) picks index floor(random() * 2) */
    return floor(eval_pyrandom_random(&r) * 2.0) >= 1.0;
}

/* Replaces the first occurrence of key in *text by val (Python str.replace(key, val, 1)). */
static int replace_first(char **text, const char *key, const char *val) {
    char *p = strstr(*text, key);
    if (!p)
        return 0;
    struct sbuf b = {0};
    sb_add(&b, *text, (size_t)(p - *text));
    sb_adds(&b, val);
    sb_adds(&b, p + strlen(key));
    char *r = sb_take(&b);
    if (!r)
        return -1;
    free(*text);
    *text = r;
    return 0;
}

static int is_py_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Python strip() of [s, s+n) (ASCII whitespace; the templates hold no other). */
static void strip_span(const char **s, size_t *n) {
    while (*n && is_py_space(**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n && is_py_space((*s)[*n - 1]))
        (*n)--;
}

static char *dup_span(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

int eval_ae_render_prompt(const char *tmpl, const char *instruction, const char *output_1,
                          const char *output_2, char **system, char **user, struct ica_error *e) {
    *system = *user = NULL;
    char *t = ev_strdup(tmpl);
    if (!t || replace_first(&t, "{instruction}", instruction) ||
        replace_first(&t, "{output_1}", output_1) || replace_first(&t, "{output_2}", output_2)) {
        free(t);
        return ica_seterr(e, ICA_ERR_NOMEM, "out of memory");
    }
    /* prompt_to_chatml: strip, split on <|im_start|>, role = first line, content up to
     * <|im_end|>, both stripped */
    const char *s = t;
    size_t n = strlen(t);
    strip_span(&s, &n);
    const char *end = s + n;
    const char *tag = "<|im_start|>";
    size_t tl = strlen(tag);
    int rc = ICA_OK;
    const char *p = s;
    while (p < end && rc == ICA_OK) {
        const char *q = p;
        const char *nx = NULL;
        for (const char *z = p; z + tl <= end; z++)
            if (!memcmp(z, tag, tl)) {
                nx = z;
                break;
            }
        const char *chunk_end = nx ? nx : end;
        size_t cl = (size_t)(chunk_end - q);
        p = nx ? nx + tl : end;
        const char *c = q;
        size_t cn = cl;
        strip_span(&c, &cn);
        if (cn == 0)
            continue;
        const char *nl = memchr(c, '\n', cn);
        if (!nl) {
            rc = ica_seterr(e, ICA_ERR_FORMAT, "annotator prompt: chat chunk without a role line");
            break;
        }
        const char *role = c;
        size_t rl = (size_t)(nl - c);
        strip_span(&role, &rl);
        const char *body = nl + 1;
        size_t bl = cn - (size_t)(body - c);
        const char *im_end = "<|im_end|>";
        for (const char *z = body; z + strlen(im_end) <= body + bl; z++)
            if (!memcmp(z, im_end, strlen(im_end))) {
                bl = (size_t)(z - body);
                break;
            }
        strip_span(&body, &bl);
        char **dst = NULL;
        if (rl == 6 && !memcmp(role, "system", 6))
            dst = system;
        else if (rl == 4 && !memcmp(role, "user", 4))
            dst = user;
        else {
            rc = ica_seterr(e, ICA_ERR_FORMAT, "annotator prompt: unexpected role '%.*s'",
                            (int)(rl > 40 ? 40 : rl), role);
            break;
        }
        free(*dst);
        *dst = dup_span(body, bl);
        if (!*dst)
            rc = ica_seterr(e, ICA_ERR_NOMEM, "out of memory");
    }
    free(t);
    if (rc == ICA_OK && (!*system || !*user))
        rc = ica_seterr(e, ICA_ERR_FORMAT, "annotator prompt: need a system and a user message");
    if (rc) {
        free(*system);
        free(*user);
        *system = *user = NULL;
    }
    return rc;
}

double eval_ae_preference(const struct eval_logprob *top, size_t n, bool is_switched) {
    double lm = -INFINITY, lM = -INFINITY;
    int have = 0;
    for (size_t i = 0; i < n; i++) {
        if (!top[i].token)
            continue;
        /* a later entry of the same token wins, as in the dict alpaca_eval builds */
        if (!strcmp(top[i].token, "m")) {
            lm = top[i].logprob;
            have = 1;
        } else if (!strcmp(top[i].token, "M")) {
            lM = top[i].logprob;
            have = 1;
        }
    }
    if (!have)
        return NAN;
    double mx = lm > lM ? lm : lM;
    double lse = mx + log(exp(lm - mx) + exp(lM - mx));
    double pm = exp(lm - lse);
    double raw = 2.0 - pm;
    return is_switched ? 3.0 - raw : raw;
}

/* ---- annotations.json ---- */

void eval_ae_annotations_free(struct eval_ae_annotations *a) {
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++) {
        struct eval_ae_annotation *r = &a->rows[i];
        free(r->instruction);
        free(r->output_1);
        free(r->output_2);
        free(r->generator_1);
        free(r->generator_2);
    }
    free(a->rows);
    free(a);
}

static int get_str(json_object *o, const char *key, char **out, int required) {
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null)) {
        if (required)
            return -1;
        *out = ev_strdup("");
        return *out ? 0 : -2;
    }
    if (!json_object_is_type(v, json_type_string))
        return -1;
    *out = ev_strdup(json_object_get_string(v));
    return *out ? 0 : -2;
}

int eval_ae_annotations_parse(const char *buf, size_t len, const char *name,
                              struct eval_ae_annotations **out, struct ica_error *e) {
    *out = NULL;
    if (len > INT32_MAX)
        return ica_seterr(e, ICA_ERR_RANGE, "%s: file too large", name);
    json_tokener *tok = json_tokener_new_ex(JSON_TOKENER_DEFAULT_DEPTH);
    if (!tok)
        return ica_seterr(e, ICA_ERR_NOMEM, "%s: out of memory", name);
    json_object *root = json_tokener_parse_ex(tok, buf, (int)len);
    enum json_tokener_error te = json_tokener_get_error(tok);
    size_t pe = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    int trailing = 0;
    if (root && te == json_tokener_success)
        for (size_t q = pe; q < len; q++)
            if (!is_py_space(buf[q]))
                trailing = 1;
    if (!root || te != json_tokener_success || trailing) {
        json_object_put(root);
        return ica_seterr(
            e, ICA_ERR_FORMAT, "%s: invalid JSON (%s)", name,
            trailing ? "trailing characters"
                     : (te == json_tokener_continue ? "truncated" : json_tokener_error_desc(te)));
    }
    if (!json_object_is_type(root, json_type_array)) {
        json_object_put(root);
        return ica_seterr(e, ICA_ERR_FORMAT, "%s: top level is not a list of annotations", name);
    }
    size_t n = json_object_array_length(root);
    struct eval_ae_annotations *a = calloc(1, sizeof *a);
    if (a)
        a->rows = calloc(n ? n : 1, sizeof *a->rows);
    if (!a || !a->rows) {
        free(a);
        json_object_put(root);
        return ica_seterr(e, ICA_ERR_NOMEM, "%s: out of memory", name);
    }
    int rc = ICA_OK;
    for (size_t i = 0; i < n && rc == ICA_OK; i++) {
        json_object *o = json_object_array_get_idx(root, i);
        struct eval_ae_annotation *r = &a->rows[i];
        a->n = i + 1;
        r->preference = NAN;
        if (!json_object_is_type(o, json_type_object)) {
            rc = ica_seterr(e, ICA_ERR_FORMAT, "%s: record %zu: not a JSON object", name, i);
            break;
        }
        static const char *const keys[] = {"instruction", "output_1", "output_2", "generator_1",
                                           "generator_2"};
        char **dst[] = {&r->instruction, &r->output_1, &r->output_2, &r->generator_1,
                        &r->generator_2};
        for (int k = 0; k < 5 && rc == ICA_OK; k++) {
            int g = get_str(o, keys[k], dst[k], k < 3);
            if (g == -1)
                rc = ica_seterr(e, ICA_ERR_FORMAT, "%s: record %zu: '%s' missing or not a string",
                                name, i, keys[k]);
            else if (g == -2)
                rc = ica_seterr(e, ICA_ERR_NOMEM, "%s: out of memory", name);
        }
        if (rc)
            break;
        json_object *p;
        if (json_object_object_get_ex(o, "preference", &p) &&
            !json_object_is_type(p, json_type_null)) {
            if (json_object_is_type(p, json_type_int) || json_object_is_type(p, json_type_double))
                r->preference = json_object_get_double(p);
            else
                rc = ica_seterr(e, ICA_ERR_FORMAT,
                                "%s: record %zu: 'preference' is neither a number nor null", name,
                                i);
        }
        r->len_1 = eval_utf8_len(r->output_1);
        r->len_2 = eval_utf8_len(r->output_2);
    }
    json_object_put(root);
    if (rc) {
        eval_ae_annotations_free(a);
        return rc;
    }
    *out = a;
    return ICA_OK;
}

int eval_ae_annotations_read(const char *path, struct eval_ae_annotations **out,
                             struct ica_error *e) {
    *out = NULL;
    size_t len;
    char *buf = ev_read_file(path, &len, e);
    if (!buf)
        return e ? e->code : ICA_ERR_IO;
    int rc = eval_ae_annotations_parse(buf, len, path, out, e);
    free(buf);
    return rc;
}

/* ---- win rate ---- */

void eval_ae_winrate(const double *pref, size_t n, struct eval_ae_winrate *out) {
    memset(out, 0, sizeof *out);
    double *q = malloc((n ? n : 1) * sizeof *q);
    double *d = malloc((n ? n : 1) * sizeof *d);
    if (!q || !d) {
        free(q);
        free(d);
        out->win_rate = out->standard_error = out->discrete_win_rate = NAN;
        return;
    }
    size_t nq = 0, nd = 0;
    for (size_t i = 0; i < n; i++) {
        double p = pref[i];
        if (p == 0)
            p = 1.5; /* legacy draw code */
        if (p == 1.5)
            out->n_draws++;
        if (p >= 1 && p <= 2) {
            double v = p - 1;
            q[nq++] = v;
            if (v > 0.5)
                out->n_wins++;
            else if (v < 0.5)
                out->n_wins_base++;
        }
        /* discrete: draws kept at 1.5, others rounded half-to-even */
        double dd = p == 1.5 ? 0 : nearbyint(p);
        if (dd == 0)
            dd = 1.5;
        if (dd >= 1 && dd <= 2)
            d[nd++] = dd - 1;
    }
    out->n_total = nq;
    if (nq) {
        double mean = eval_np_sum(q, nq) / (double)nq;
        out->win_rate = 100 * mean;
        if (nq > 1) {
            double ss = 0;
            for (size_t i = 0; i < nq; i++)
                ss += (q[i] - mean) * (q[i] - mean);
            out->standard_error = 100 * sqrt(ss / (double)(nq - 1)) / sqrt((double)nq);
        } else {
            out->standard_error = NAN;
        }
    } else {
        out->win_rate = out->standard_error = NAN;
    }
    out->discrete_win_rate = nd ? 100 * eval_np_sum(d, nd) / (double)nd : NAN;
    free(q);
    free(d);
}
