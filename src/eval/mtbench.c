/* MT-Bench single-answer grading as FastChat llm_judge does it (data/mt_bench/SPEC.md). */
#include "internal.h"
#include "icalign/eval.h"

#include <json-c/json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const g_prompt_names[EVAL_MT_NPROMPTS] = {
    "single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn"};

static const char *const g_categories[EVAL_MT_NCAT] = {
    "writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"};

struct eval_mt_prompts {
    char *system[EVAL_MT_NPROMPTS];
    char *tmpl[EVAL_MT_NPROMPTS];
};

const char *eval_mt_prompt_name(enum eval_mt_prompt_kind k) {
    return (unsigned)k < EVAL_MT_NPROMPTS ? g_prompt_names[k] : NULL;
}

const char *eval_mt_category_name(int c) {
    return c >= 0 && c < EVAL_MT_NCAT ? g_categories[c] : NULL;
}

int eval_mt_category_of_qid(int qid) {
    /* MT-Bench question ids: 81..160 in blocks of ten per category, in g_categories order */
    if (qid < 81 || qid > 160)
        return -1;
    return (qid - 81) / 10;
}

bool eval_mt_needs_ref(const char *category) {
    static const char *const need[] = {"math", "reasoning", "coding", "arena-hard-200"};
    if (!category)
        return false;
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if (!strcmp(category, need[i]))
            return true;
    return false;
}

enum eval_mt_prompt_kind eval_mt_prompt_for(const char *category, int turn) {
    bool ref = eval_mt_needs_ref(category);
    if (turn == 2)
        return ref ? EVAL_MT_SINGLE_MATH_V1_MULTI : EVAL_MT_SINGLE_V1_MULTI;
    return ref ? EVAL_MT_SINGLE_MATH_V1 : EVAL_MT_SINGLE_V1;
}

void eval_mt_prompts_free(struct eval_mt_prompts *p) {
    if (!p)
        return;
    for (int i = 0; i < EVAL_MT_NPROMPTS; i++) {
        free(p->system[i]);
        free(p->tmpl[i]);
    }
    free(p);
}

int eval_mt_prompts_load(const char *path, struct eval_mt_prompts **out, struct ica_error *e) {
    *out = NULL;
    size_t len;
    char *buf = ev_read_file(path, &len, e);
    if (!buf)
        return e ? e->code : ICA_ERR_IO;
    struct eval_mt_prompts *p = calloc(1, sizeof *p);
    int rc = ICA_OK;
    if (!p) {
        free(buf);
        return ica_seterr(e, ICA_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t lineno = 0;
    char *save = buf;
    while (*save && rc == ICA_OK) {
        char *nl = strchr(save, '\n');
        char *line = save;
        if (nl) {
            *nl = '\0';
            save = nl + 1;
        } else {
            save += strlen(save);
        }
        lineno++;
        if (strspn(line, " \t\r") == strlen(line))
            continue;
        json_object *o = json_tokener_parse(line);
        json_object *name, *sys, *tmpl;
        if (!o || !json_object_is_type(o, json_type_object) ||
            !json_object_object_get_ex(o, "name", &name) ||
            !json_object_object_get_ex(o, "system_prompt", &sys) ||
            !json_object_object_get_ex(o, "prompt_template", &tmpl) ||
            !json_object_is_type(name, json_type_string) ||
            !json_object_is_type(sys, json_type_string) ||
            !json_object_is_type(tmpl, json_type_string)) {
            rc = ica_seterr(e, ICA_ERR_FORMAT,
                            "%s:%zu: not a judge prompt (need name, system_prompt, "
                            "prompt_template strings)",
                            path, lineno);
        } else {
            for (int k = 0; k < EVAL_MT_NPROMPTS; k++) {
                if (strcmp(json_object_get_string(name), g_prompt_names[k]))
                    continue;
                free(p->system[k]);
                free(p->tmpl[k]);
                p->system[k] = ev_strdup(json_object_get_string(sys));
                p->tmpl[k] = ev_strdup(json_object_get_string(tmpl));
                if (!p->system[k] || !p->tmpl[k])
                    rc = ica_seterr(e, ICA_ERR_NOMEM, "%s: out of memory", path);
            }
        }
        json_object_put(o);
    }
    free(buf);
    for (int k = 0; k < EVAL_MT_NPROMPTS && rc == ICA_OK; k++)
        if (!p->tmpl[k])
            rc = ica_seterr(e, ICA_ERR_NOTFOUND, "%s: judge prompt '%s' missing", path,
                            g_prompt_names[k]);
    if (rc) {
        eval_mt_prompts_free(p);
        return rc;
    }
    *out = p;
    return ICA_OK;
}

char *eval_format_named(const char *tmpl, const char *const *names, const char *const *values,
                        size_t n, struct ica_error *e) {
    struct sbuf b = {0};
    const char *s = tmpl;
    while (*s) {
        const char *br = strpbrk(s, "{}");
        if (!br) {
            sb_adds(&b, s);
            break;
        }
        sb_add(&b, s, (size_t)(br - s));
        if (br[0] == br[1]) { /* "{{" or "}}" */
            sb_add(&b, br, 1);
            s = br + 2;
            continue;
        }
        if (*br == '}') {
            free(sb_take(&b));
            ica_seterr(e, ICA_ERR_FORMAT, "template: single '}' at offset %zu",
                       (size_t)(br - tmpl));
            return NULL;
        }
        const char *end = strchr(br + 1, '}');
        if (!end) {
            free(sb_take(&b));
            ica_seterr(e, ICA_ERR_FORMAT, "template: unclosed '{' at offset %zu",
                       (size_t)(br - tmpl));
            return NULL;
        }
        size_t kl = (size_t)(end - br - 1);
        size_t k;
        for (k = 0; k < n; k++)
            if (strlen(names[k]) == kl && !memcmp(names[k], br + 1, kl))
                break;
        if (k == n || !values[k]) {
            free(sb_take(&b));
            ica_seterr(e, ICA_ERR_FORMAT, "template: no value for field '%.*s'", (int)kl, br + 1);
            return NULL;
        }
        sb_adds(&b, values[k]);
        s = end + 1;
    }
    char *r = sb_take(&b);
    if (!r)
        ica_seterr(e, ICA_ERR_NOMEM, "out of memory");
    return r;
}

int eval_mt_judge_messages(const struct eval_mt_prompts *p, const char *category, int turn,
                           const struct eval_mt_fill *f, char **system, char **user,
                           struct ica_error *e) {
    *system = *user = NULL;
    if (!p || !f || (turn != 1 && turn != 2))
        return ica_seterr(e, ICA_ERR_ARG, "judge prompt: bad arguments (turn %d)", turn);
    enum eval_mt_prompt_kind k = eval_mt_prompt_for(category, turn);
    const char *names[] = {"question",   "answer",   "ref_answer_1", "question_1",
                           "question_2", "answer_1", "answer_2",     "ref_answer_2"};
    const char *vals[] = {f->q1, f->a1, f->r1, f->q1, f->q2, f->a1, f->a2, f->r2};
    char *u = eval_format_named(p->tmpl[k], names, vals, 8, e);
    if (!u)
        return e ? e->code : ICA_ERR_FORMAT;
    char *s = ev_strdup(p->system[k]);
    if (!s) {
        free(u);
        return ica_seterr(e, ICA_ERR_NOMEM, "out of memory");
    }
    *system = s;
    *user = u;
    return ICA_OK;
}

/* One attempt of \[(\[)?(\d+\.?\d*)\](\])? at t[i]; returns the value or -1 when no match. */
static int match_at(const char *t, size_t len, size_t i, int dbl, double *val) {
    size_t j = i;
    if (j >= len || t[j] != '[')
        return 0;
    j++;
    if (dbl) {
        if (j >= len || t[j] != '[')
            return 0;
        j++;
    }
    size_t ds = j;
    while (j < len && t[j] >= '0' && t[j] <= '9')
        j++;
    if (j == ds)
        return 0;
    if (j < len && t[j] == '.') {
        j++;
        while (j < len && t[j] >= '0' && t[j] <= '9')
            j++;
    }
    size_t de = j;
    if (j >= len || t[j] != ']')
        return 0;
    j++;
    if (dbl && (j >= len || t[j] != ']'))
        return 0;
    /* the greedy match is the only possible one: backtracking can only end on a digit or
     * a dot where ']' is required */
    char tmp[64];
    size_t n = de - ds;
    if (n >= sizeof tmp) {
        /* a huge digit string: Python makes it an int/float; strtod on a heap copy */
        char *h = malloc(n + 1);
        if (!h)
            return 0;
        memcpy(h, t + ds, n);
        h[n] = '\0';
        *val = strtod(h, NULL);
        free(h);
        return 1;
    }
    memcpy(tmp, t + ds, n);
    tmp[n] = '\0';
    *val = strtod(tmp, NULL);
    return 1;
}

double eval_mt_parse_rating(const char *text, size_t len) {
    double v;
    if (!text)
        return -1;
    for (int dbl = 1; dbl >= 0; dbl--)
        for (const char *q = memchr(text, '[', len); q;
             q = memchr(q + 1, '[', len - (size_t)(q + 1 - text)))
            if (match_at(text, len, (size_t)(q - text), dbl, &v))
                return v;
    return -1;
}

/* ---- judgment files ---- */

void eval_mt_judgments_free(struct eval_mt_judgments *j) {
    if (!j)
        return;
    for (size_t i = 0; i < j->n; i++) {
        free(j->rows[i].model);
        free(j->rows[i].judgment);
        free(j->rows[i].prompt_name);
    }
    free(j->rows);
    free(j);
}

static int get_int(json_object *o, const char *key, int *out) {
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
        return -1;
    int64_t x = json_object_get_int64(v);
    if (x < INT32_MIN || x > INT32_MAX)
        return -1;
    *out = (int)x;
    return 0;
}

int eval_mt_judgments_parse(const char *buf, size_t len, const char *name,
                            struct eval_mt_judgments **out, struct ica_error *e) {
    *out = NULL;
    struct eval_mt_judgments *j = calloc(1, sizeof *j);
    if (!j)
        return ica_seterr(e, ICA_ERR_NOMEM, "%s: out of memory", name);
    size_t cap = 0, lineno = 0, pos = 0;
    int rc = ICA_OK;
    json_tokener *tok = json_tokener_new();
    if (!tok) {
        free(j);
        return ica_seterr(e, ICA_ERR_NOMEM, "%s: out of memory", name);
    }
    while (pos < len && rc == ICA_OK) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - line) : len - pos;
        pos += ll + (nl ? 1 : 0);
        lineno++;
        size_t k = 0;
        while (k < ll && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r'))
            k++;
        if (k == ll)
            continue;
        if (ll > INT32_MAX) {
            rc = ica_seterr(e, ICA_ERR_RANGE, "%s:%zu: line too long", name, lineno);
            break;
        }
        json_tokener_reset(tok);
        json_object *o = json_tokener_parse_ex(tok, line, (int)ll);
        enum json_tokener_error te = json_tokener_get_error(tok);
        int trailing = 0;
        if (o && te == json_tokener_success)
            for (size_t q = json_tokener_get_parse_end(tok); q < ll; q++)
                if (line[q] != ' ' && line[q] != '\t' && line[q] != '\r')
                    trailing = 1;
        if (!o || te != json_tokener_success || trailing) {
            rc = ica_seterr(e, ICA_ERR_FORMAT, "%s:%zu: invalid JSON (%s)", name, lineno,
                            trailing ? "trailing characters"
                                     : (te == json_tokener_continue ? "incomplete record"
                                                                    : json_tokener_error_desc(te)));
            json_object_put(o);
            break;
        }
        struct eval_mt_judgment r = {0};
        json_object *v;
        r.line = lineno;
        if (!json_object_is_type(o, json_type_object)) {
            rc = ica_seterr(e, ICA_ERR_FORMAT, "%s:%zu: record is not a JSON object", name, lineno);
        } else if (get_int(o, "question_id", &r.question_id)) {
            rc = ica_seterr(e, ICA_ERR_FORMAT, "%s:%zu: 'question_id' missing or not an integer",
                            name, lineno);
        } else if (get_int(o, "turn", &r.turn) || (r.turn != 1 && r.turn != 2)) {
            rc = ica_seterr(e, ICA_ERR_FORMAT, "%s:%zu: 'turn' missing or not 1/2", name, lineno);
        } else if (!json_object_object_get_ex(o, "model", &v) ||
                   !json_object_is_type(v, json_type_string)) {
            rc = ica_seterr(e, ICA_ERR_FORMAT, "%s:%zu: 'model' missing or not a string", name,
                            lineno);
        } else {
            r.model = ev_strdup(json_object_get_string(v));
            json_object *s;
            if (!json_object_object_get_ex(o, "score", &s) ||
                !(json_object_is_type(s, json_type_int) ||
                  json_object_is_type(s, json_type_double)) ||
                !isfinite(json_object_get_double(s))) {
                rc = ica_seterr(e, ICA_ERR_FORMAT, "%s:%zu: 'score' missing or not a number", name,
                                lineno);
            } else {
                r.score = json_object_get_double(s);
            }
            const char *jt = "";
            if (json_object_object_get_ex(o, "judgment", &v) &&
                json_object_is_type(v, json_type_string))
                jt = json_object_get_string(v);
            r.judgment = ev_strdup(jt);
            const char *pn = "";
            if (json_object_object_get_ex(o, "judge", &v) &&
                json_object_is_type(v, json_type_array) && json_object_array_length(v) >= 2) {
                json_object *x = json_object_array_get_idx(v, 1);
                if (json_object_is_type(x, json_type_string))
                    pn = json_object_get_string(x);
            }
            r.prompt_name = ev_strdup(pn);
            if (rc == ICA_OK && (!r.model || !r.judgment || !r.prompt_name))
                rc = ica_seterr(e, ICA_ERR_NOMEM, "%s: out of memory", name);
            if (rc == ICA_OK && j->n == cap) {
                size_t nc = cap ? cap * 2 : 256;
                struct eval_mt_judgment *nr = realloc(j->rows, nc * sizeof *nr);
                if (!nr)
                    rc = ica_seterr(e, ICA_ERR_NOMEM, "%s: out of memory", name);
                else {
                    j->rows = nr;
                    cap = nc;
                }
            }
            if (rc == ICA_OK) {
                j->rows[j->n++] = r;
            } else {
                free(r.model);
                free(r.judgment);
                free(r.prompt_name);
            }
        }
        json_object_put(o);
    }
    json_tokener_free(tok);
    if (rc) {
        eval_mt_judgments_free(j);
        return rc;
    }
    *out = j;
    return ICA_OK;
}

int eval_mt_judgments_read(const char *path, struct eval_mt_judgments **out, struct ica_error *e) {
    *out = NULL;
    size_t len;
    char *buf = ev_read_file(path, &len, e);
    if (!buf)
        return e ? e->code : ICA_ERR_IO;
    int rc = eval_mt_judgments_parse(buf, len, path, out, e);
    free(buf);
    return rc;
}

/* ---- aggregation ---- */

int eval_mt_semantics_from_name(const char *s) {
    if (!s)
        return -1;
    if (!strcmp(s, "current"))
        return EVAL_MT_CURRENT;
    if (!strcmp(s, "pre-2023-07-25"))
        return EVAL_MT_PRE_20230725;
    if (!strcmp(s, "urial-last"))
        return EVAL_MT_URIAL_LAST;
    return -1;
}

const char *eval_mt_semantics_name(enum eval_mt_semantics s) {
    switch (s) {
    case EVAL_MT_CURRENT:
        return "current";
    case EVAL_MT_PRE_20230725:
        return "pre-2023-07-25";
    case EVAL_MT_URIAL_LAST:
        return "urial-last";
    }
    return "?";
}

void eval_mt_scores_free(struct eval_mt_scores *s) {
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->m[i].model);
        free(s->m[i].scores);
    }
    free(s->m);
    free(s);
}

struct rowref {
    const struct eval_mt_judgment *r;
    size_t idx; /* file order */
};

static int cmp_key(const void *a, const void *b) {
    const struct rowref *x = a, *y = b;
    int c = strcmp(x->r->model, y->r->model);
    if (c)
        return c;
    if (x->r->turn != y->r->turn)
        return x->r->turn < y->r->turn ? -1 : 1;
    if (x->r->question_id != y->r->question_id)
        return x->r->question_id < y->r->question_id ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

/* qsort has no context argument: the rows being ordered, per thread */
static _Thread_local const struct rowref *g_sort_base;

static int cmp_file_order(const void *a, const void *b) {
    size_t x = g_sort_base[*(const size_t *)a].idx, y = g_sort_base[*(const size_t *)b].idx;
    return x < y ? -1 : (x > y);
}

static int builtin_cat(int qid, void *ctx) {
    (void)ctx;
    return eval_mt_category_of_qid(qid);
}

int eval_mt_aggregate(const struct eval_mt_judgments *j, enum eval_mt_semantics sem,
                      int (*category_of)(int, void *), void *ctx, struct eval_mt_scores **out,
                      struct ica_error *e) {
    *out = NULL;
    if (!category_of)
        category_of = builtin_cat;
    size_t n = j ? j->n : 0;
    struct rowref *rr = calloc(n ? n : 1, sizeof *rr);
    struct eval_mt_scores *s = calloc(1, sizeof *s);
    if (!rr || !s) {
        free(rr);
        free(s);
        return ica_seterr(e, ICA_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        rr[i].r = &j->rows[i];
        rr[i].idx = i;
    }
    qsort(rr, n, sizeof *rr, cmp_key);
    size_t nmodels = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || strcmp(rr[i].r->model, rr[i - 1].r->model))
            nmodels++;
    s->m = calloc(nmodels ? nmodels : 1, sizeof *s->m);
    if (!s->m) {
        free(rr);
        free(s);
        return ica_seterr(e, ICA_ERR_NOMEM, "out of memory");
    }
    /* sums are accumulated in file order within each model, as pandas does */
    size_t mi = 0;
    for (size_t a = 0; a < n;) {
        size_t b = a;
        while (b < n && !strcmp(rr[b].r->model, rr[a].r->model))
            b++;
        struct eval_mt_score *m = &s->m[mi];
        m->model = ev_strdup(rr[a].r->model);
        if (!m->model) {
            free(rr);
            s->n = mi;
            eval_mt_scores_free(s);
            return ica_seterr(e, ICA_ERR_NOMEM, "out of memory");
        }
        mi++;
        s->n = mi;
        /* mark kept rows */
        size_t cnt = b - a;
        unsigned char *keep = calloc(cnt, 1);
        size_t *order = calloc(cnt, sizeof *order);
        m->scores = malloc(cnt * sizeof *m->scores);
        if (!keep || !order || !m->scores) {
            free(keep);
            free(order);
            free(rr);
            eval_mt_scores_free(s);
            return ica_seterr(e, ICA_ERR_NOMEM, "out of memory");
        }
        for (size_t i = a; i < b; i++) {
            const struct eval_mt_judgment *r = rr[i].r;
            m->n_rows++;
            if (r->score == -1)
                m->n_failed++;
            int dup_next = i + 1 < b && rr[i + 1].r->turn == r->turn &&
                           rr[i + 1].r->question_id == r->question_id;
            if (dup_next)
                m->n_duplicates++;
            int k = 1;
            if (sem == EVAL_MT_URIAL_LAST && dup_next)
                k = 0; /* a later line with the same key wins */
            if (sem != EVAL_MT_PRE_20230725 && r->score == -1)
                k = 0;
            keep[i - a] = (unsigned char)k;
        }
        /* restore file order for summation: sort (file index, position) pairs */
        for (size_t i = 0; i < cnt; i++)
            order[i] = i;
        g_sort_base = rr + a;
        qsort(order, cnt, sizeof *order, cmp_file_order);
        double cs[EVAL_MT_NCAT] = {0};
        for (size_t q = 0; q < cnt; q++) {
            size_t i = order[q];
            if (!keep[i])
                continue;
            const struct eval_mt_judgment *r = rr[a + i].r;
            m->scores[m->n_scores++] = r->score;
            if (r->turn == 1) {
                m->sum1 += r->score;
                m->n_turn1++;
            } else {
                m->sum2 += r->score;
                m->n_turn2++;
            }
            int c = category_of(r->question_id, ctx);
            if (c >= 0 && c < EVAL_MT_NCAT) {
                cs[c] += r->score;
                m->n_cat[c]++;
            }
        }
        m->turn1 = m->n_turn1 ? m->sum1 / (double)m->n_turn1 : NAN;
        m->turn2 = m->n_turn2 ? m->sum2 / (double)m->n_turn2 : NAN;
        m->overall =
            m->n_turn1 + m->n_turn2 ? (m->sum1 + m->sum2) / (double)(m->n_turn1 + m->n_turn2) : NAN;
        for (int c = 0; c < EVAL_MT_NCAT; c++)
            m->cat[c] = m->n_cat[c] ? cs[c] / (double)m->n_cat[c] : NAN;
        free(keep);
        free(order);
        a = b;
    }
    free(rr);
    *out = s;
    return ICA_OK;
}

/* splitmix64 for the bootstrap resampling indices */
static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void eval_bootstrap_ci(const double *x, size_t n, unsigned B, uint64_t seed, double *lo,
                       double *hi) {
    *lo = *hi = NAN;
    if (n == 0 || B == 0)
        return;
    double *means = malloc(B * sizeof *means);
    if (!means)
        return;
    uint64_t st = seed;
    for (unsigned b = 0; b < B; b++) {
        double sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += x[splitmix(&st) % n];
        means[b] = sum / (double)n;
    }
    qsort(means, B, sizeof *means, cmp_dbl);
    /* percentile with linear interpolation (numpy default) */
    double q[2] = {0.025, 0.975}, r[2];
    for (int k = 0; k < 2; k++) {
        double pos = q[k] * (double)(B - 1);
        size_t i0 = (size_t)floor(pos);
        size_t i1 = i0 + 1 < B ? i0 + 1 : i0;
        double f = pos - (double)i0;
        r[k] = means[i0] + (means[i1] - means[i0]) * f;
    }
    *lo = r[0];
    *hi = r[1];
    free(means);
}
