/* Evaluator (cached answers + judgments), greedy forward selection, successive halving. */
#include "icalign/search.h"

#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ==== small helpers ==== */

static char *xstrdup(const char *s) {
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

static int nomem(struct ica_error *e) {
    return ica_seterr(e, ICA_ERR_NOMEM, "out of memory");
}

static int read_whole(const char *path, char **out, size_t *n, struct ica_error *e) {
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return ica_seterr(e, ICA_ERR_IO, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (len + 1 >= cap) {
            char *t = realloc(buf, cap *= 2);
            if (!t) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = t;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, fp);
        len += got;
        if (got == 0)
            break;
    }
    bool bad = ferror(fp) != 0;
    fclose(fp);
    if (!buf)
        return nomem(e);
    if (bad) {
        free(buf);
        return ica_seterr(e, ICA_ERR_IO, "%s: read error", path);
    }
    buf[len] = '\0';
    *out = buf;
    *n = len;
    return ICA_OK;
}

int search_write_file(const char *path, const char *text, size_t len, struct ica_error *e) {
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 5);
    if (!tmp)
        return nomem(e);
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        int rc = ica_seterr(e, ICA_ERR_IO, "%s: %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    bool ok = fwrite(text, 1, len, fp) == len;
    ok = (fclose(fp) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        free(tmp);
        return ica_seterr(e, ICA_ERR_IO, "writing %s failed", path);
    }
    free(tmp);
    return ICA_OK;
}

double search_mean(const double *x, size_t n, size_t *n_valid) {
    double s = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!isnan(x[i])) {
            s += x[i];
            k++;
        }
    if (n_valid)
        *n_valid = k;
    return k ? s / (double)k : NAN;
}

/* Copy with invalid UTF-8 replaced by U+FFFD, so that a base model's byte soup can be put into a
 * JSON request (control bytes are kept: JSON escapes them). The same rule as icalign judge's
 * cli_utf8_sanitize, so both send the same judge prompts for the same answers. */
static char *utf8_clean(const char *s) {
    size_t n = strlen(s);
    char *o = malloc(3 * n + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + len <= n;
        uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
        for (size_t j = 1; ok && j < len; j++) {
            ok = (p[i + j] & 0xc0) == 0x80;
            cp = (cp << 6) | (p[i + j] & 0x3f);
        }
        if (ok && ((len == 2 && cp < 0x80) ||
                   (len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp < 0xe000))) ||
                   (len == 4 && (cp < 0x10000 || cp > 0x10ffff))))
            ok = false;
        if (ok) {
            memcpy(o + k, p + i, len);
            k += len;
            i += len;
        } else {
            memcpy(o + k, "\xef\xbf\xbd", 3);
            k += 3;
            i++;
        }
    }
    o[k] = '\0';
    return o;
}

/* ==== questions ==== */

void search_questions_free(struct search_questions *q) {
    if (!q)
        return;
    for (size_t i = 0; i < q->n; i++) {
        free(q->q[i].id);
        free(q->q[i].text);
        free(q->q[i].category);
        free(q->q[i].reference);
        free(q->q[i].text2);
        free(q->q[i].reference2);
    }
    free(q->q);
    free(q);
}

static const char *jstr(json_object *o, const char *k) {
    json_object *v;
    if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

static char *jid(json_object *o) {
    json_object *v;
    if (!json_object_object_get_ex(o, "question_id", &v) && !json_object_object_get_ex(o, "id", &v))
        return NULL;
    if (json_object_is_type(v, json_type_string) || json_object_is_type(v, json_type_int))
        return xstrdup(json_object_get_string(v));
    return NULL;
}

static const char *first_turn(json_object *o) {
    json_object *t;
    if (json_object_object_get_ex(o, "turns", &t) && json_object_is_type(t, json_type_array) &&
        json_object_array_length(t) > 0) {
        json_object *x = json_object_array_get_idx(t, 0);
        return json_object_is_type(x, json_type_string) ? json_object_get_string(x) : NULL;
    }
    const char *s = jstr(o, "instruction");
    if (!s)
        s = jstr(o, "question");
    if (!s)
        s = jstr(o, "query");
    return s;
}

static const char *second_turn(json_object *o) {
    json_object *t;
    if (json_object_object_get_ex(o, "turns", &t) && json_object_is_type(t, json_type_array) &&
        json_object_array_length(t) > 1) {
        json_object *x = json_object_array_get_idx(t, 1);
        return json_object_is_type(x, json_type_string) ? json_object_get_string(x) : NULL;
    }
    return NULL;
}

/* Calls fn for every non-empty line parsed as a JSON object. */
static int each_json_line(const char *path,
                          int (*fn)(void *, json_object *, size_t, struct ica_error *), void *ud,
                          struct ica_error *e) {
    char *buf = NULL;
    size_t len = 0;
    int rc = read_whole(path, &buf, &len, e);
    if (rc)
        return rc;
    size_t line = 0;
    char *p = buf, *end = buf + len;
    while (p < end && rc == ICA_OK) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        line++;
        size_t k = 0;
        while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r'))
            k++;
        if (k < n) {
            json_tokener *tok = json_tokener_new();
            json_object *o = tok ? json_tokener_parse_ex(tok, p, (int)n) : NULL;
            if (!tok)
                rc = nomem(e);
            else if (!o || !json_object_is_type(o, json_type_object))
                rc = ica_seterr(e, ICA_ERR_FORMAT, "%s:%zu: not a JSON object", path, line);
            else
                rc = fn(ud, o, line, e);
            json_object_put(o);
            if (tok)
                json_tokener_free(tok);
        }
        p = nl ? nl + 1 : end;
    }
    free(buf);
    return rc;
}

struct qload {
    struct search_questions *qs;
    size_t cap, limit;
    const char *path;
};

static int q_line(void *ud, json_object *o, size_t line, struct ica_error *e) {
    struct qload *L = ud;
    if (L->limit && L->qs->n >= L->limit)
        return ICA_OK;
    const char *text = first_turn(o);
    if (!text)
        return ica_seterr(e, ICA_ERR_FORMAT,
                          "%s:%zu: no question text (turns[0], instruction, question or query)",
                          L->path, line);
    if (L->qs->n == L->cap) {
        size_t nc = L->cap ? 2 * L->cap : 64;
        struct search_question *t = realloc(L->qs->q, nc * sizeof *t);
        if (!t)
            return nomem(e);
        L->qs->q = t;
        L->cap = nc;
    }
    struct search_question *q = &L->qs->q[L->qs->n];
    memset(q, 0, sizeof *q);
    q->id = jid(o);
    if (!q->id) {
        char b[32];
        snprintf(b, sizeof b, "%zu", line);
        q->id = xstrdup(b);
    }
    q->text = xstrdup(text);
    const char *cat = jstr(o, "category"), *t2 = second_turn(o);
    q->category = xstrdup(cat ? cat : "");
    q->text2 = xstrdup(t2);
    L->qs->n++;
    if (!q->id || !q->text || !q->category || (t2 && !q->text2))
        return nomem(e);
    char hex[65];
    store_sha256_hex(text, strlen(text), hex);
    memcpy(q->key, hex, 16);
    q->key[16] = '\0';
    return ICA_OK;
}

static int ref_line(void *ud, json_object *o, size_t line, struct ica_error *e) {
    (void)line;
    (void)e;
    struct search_questions *qs = ud;
    char *id = jid(o);
    json_object *ch, *t;
    if (!id)
        return ICA_OK;
    if (json_object_object_get_ex(o, "choices", &ch) && json_object_is_type(ch, json_type_array) &&
        json_object_array_length(ch) > 0 &&
        json_object_object_get_ex(json_object_array_get_idx(ch, 0), "turns", &t) &&
        json_object_is_type(t, json_type_array) && json_object_array_length(t) > 0) {
        json_object *r1 = json_object_array_get_idx(t, 0);
        json_object *r2 = json_object_array_length(t) > 1 ? json_object_array_get_idx(t, 1) : NULL;
        const char *r =
            json_object_is_type(r1, json_type_string) ? json_object_get_string(r1) : NULL;
        const char *rr =
            r2 && json_object_is_type(r2, json_type_string) ? json_object_get_string(r2) : NULL;
        for (size_t i = 0; r && i < qs->n; i++)
            if (!qs->q[i].reference && strcmp(qs->q[i].id, id) == 0) {
                qs->q[i].reference = xstrdup(r);
                if (rr && !qs->q[i].reference2)
                    qs->q[i].reference2 = xstrdup(rr);
            }
    }
    free(id);
    return ICA_OK;
}

static void questions_hash(struct search_questions *qs) {
    struct store_sha256 c;
    store_sha256_init(&c);
    for (size_t i = 0; i < qs->n; i++)
        store_sha256_update(&c, qs->q[i].text, strlen(qs->q[i].text) + 1);
    store_sha256_final_hex(&c, qs->sha256);
}

int search_questions_load(const char *path, const char *refs, size_t limit,
                          struct search_questions **out, struct ica_error *e) {
    *out = NULL;
    struct qload L = {.limit = limit, .path = path};
    L.qs = calloc(1, sizeof *L.qs);
    if (!L.qs)
        return nomem(e);
    int rc = each_json_line(path, q_line, &L, e);
    if (!rc && refs)
        rc = each_json_line(refs, ref_line, L.qs, e);
    if (!rc && L.qs->n == 0)
        rc = ica_seterr(e, ICA_ERR_FORMAT, "%s: no questions", path);
    if (rc) {
        search_questions_free(L.qs);
        return rc;
    }
    questions_hash(L.qs);
    *out = L.qs;
    return ICA_OK;
}

int search_questions_load_alpaca(const char *path, size_t limit, struct search_questions **out,
                                 struct ica_error *e) {
    *out = NULL;
    char *buf = NULL;
    size_t len = 0;
    int rc = read_whole(path, &buf, &len, e);
    if (rc)
        return rc;
    json_tokener *tok = len < INT32_MAX ? json_tokener_new() : NULL;
    json_object *arr = tok ? json_tokener_parse_ex(tok, buf, (int)len) : NULL;
    if (arr) { /* nothing but white space after the list */
        for (size_t k = json_tokener_get_parse_end(tok); k < len; k++)
            if (!strchr(" \t\r\n", buf[k])) {
                json_object_put(arr);
                arr = NULL;
                break;
            }
    }
    if (tok)
        json_tokener_free(tok);
    free(buf);
    if (!arr || !json_object_is_type(arr, json_type_array)) {
        json_object_put(arr);
        return ica_seterr(e, ICA_ERR_FORMAT, "%s: not a JSON list of AlpacaEval outputs", path);
    }
    size_t n = json_object_array_length(arr);
    if (limit && n > limit)
        n = limit;
    struct search_questions *qs = calloc(1, sizeof *qs);
    if (qs)
        qs->q = calloc(n ? n : 1, sizeof *qs->q);
    if (!qs || !qs->q) {
        free(qs);
        json_object_put(arr);
        return nomem(e);
    }
    for (size_t i = 0; i < n && !rc; i++) {
        json_object *o = json_object_array_get_idx(arr, i);
        const char *ins = json_object_is_type(o, json_type_object) ? jstr(o, "instruction") : NULL;
        const char *ref = ins ? jstr(o, "output") : NULL;
        if (!ins || !ref) {
            rc = ica_seterr(e, ICA_ERR_FORMAT,
                            "%s: entry %zu: needs \"instruction\" and \"output\"", path, i);
            break;
        }
        const char *ds = jstr(o, "dataset");
        struct search_question *q = &qs->q[qs->n++];
        char b[32];
        snprintf(b, sizeof b, "%zu", i);
        q->id = xstrdup(b);
        q->text = xstrdup(ins);
        q->reference = xstrdup(ref);
        q->category = xstrdup(ds ? ds : "");
        if (!q->id || !q->text || !q->reference || !q->category) {
            rc = nomem(e);
            break;
        }
        char hex[65];
        store_sha256_hex(ins, strlen(ins), hex);
        memcpy(q->key, hex, 16);
        q->key[16] = '\0';
    }
    json_object_put(arr);
    if (!rc && qs->n == 0)
        rc = ica_seterr(e, ICA_ERR_FORMAT, "%s: no instructions", path);
    if (rc) {
        search_questions_free(qs);
        return rc;
    }
    questions_hash(qs);
    *out = qs;
    return ICA_OK;
}

/* ==== environment ==== */

struct run_memo {
    char sha[65];
    int64_t run_id;
    bool *item_put; /* per validation question */
};

struct search_env {
    struct store *st;
    sqlite3 *db;
    const struct search_answerer *a;
    const struct search_judge *j;
    const struct search_questions *val;
    struct run_memo *runs;
    size_t n_runs, cap_runs;
    struct search_stats stats;
    search_log_fn log;
    void *log_ud;
};

static void logf_(struct search_env *env, const char *fmt, ...) ICA_PRINTF(2, 3);
static void logf_(struct search_env *env, const char *fmt, ...) {
    if (!env->log)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    env->log(env->log_ud, buf);
}

int search_env_new(const char *run_dir, struct store *st, const struct search_answerer *a,
                   const struct search_judge *j, const struct search_questions *val,
                   struct search_env **out, struct ica_error *e) {
    *out = NULL;
    struct search_env *env = calloc(1, sizeof *env);
    if (!env)
        return nomem(e);
    size_t n = strlen(run_dir) + strlen(STORE_DB_NAME) + 2;
    char *path = malloc(n);
    if (!path) {
        free(env);
        return nomem(e);
    }
    snprintf(path, n, "%s/%s", run_dir, STORE_DB_NAME);
    if (sqlite3_open_v2(path, &env->db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        int rc = ica_seterr(e, ICA_ERR_IO, "%s: %s", path,
                            env->db ? sqlite3_errmsg(env->db) : "cannot open");
        sqlite3_close(env->db);
        free(path);
        free(env);
        return rc;
    }
    free(path);
    sqlite3_busy_timeout(env->db, 30000);
    env->st = st;
    env->a = a;
    env->j = j;
    env->val = val;
    *out = env;
    return ICA_OK;
}

void search_env_free(struct search_env *env) {
    if (!env)
        return;
    for (size_t i = 0; i < env->n_runs; i++)
        free(env->runs[i].item_put);
    free(env->runs);
    sqlite3_close(env->db);
    free(env);
}

void search_env_set_log(struct search_env *env, search_log_fn fn, void *ud) {
    env->log = fn;
    env->log_ud = ud;
}

const struct search_stats *search_env_stats(const struct search_env *env) {
    return &env->stats;
}

int search_step_put(struct search_env *env, int64_t run_id, int64_t step, const char *data_json,
                    double score, struct ica_error *e) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(
            env->db,
            "INSERT INTO search_steps(run_id,step,data,score,created_at) "
            "VALUES(?1,?2,?3,?4,(julianday('now')-2440587.5)*86400.0) ON CONFLICT(run_id,step) DO "
            "UPDATE SET data=excluded.data, score=excluded.score",
            -1, &st, NULL) != SQLITE_OK)
        return ica_seterr(e, ICA_ERR_IO, "search steps: %s", sqlite3_errmsg(env->db));
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_int64(st, 2, step);
    sqlite3_bind_text(st, 3, data_json, -1, SQLITE_TRANSIENT);
    if (isnan(score))
        sqlite3_bind_null(st, 4);
    else
        sqlite3_bind_double(st, 4, score);
    int rc = ICA_OK;
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = ica_seterr(e, ICA_ERR_IO, "storing a search step: %s", sqlite3_errmsg(env->db));
    sqlite3_finalize(st);
    return rc;
}

/* The store run caching the answers of one demonstration set. */
static int set_run(struct search_env *env, const struct align_set *set, struct run_memo **out,
                   struct ica_error *e) {
    char *text = NULL;
    size_t len = 0;
    int rc = align_set_write(set, &text, &len, e);
    if (rc)
        return rc;
    char sha[65];
    store_sha256_hex(text, len, sha);
    for (size_t i = 0; i < env->n_runs; i++)
        if (strcmp(env->runs[i].sha, sha) == 0) {
            free(text);
            *out = &env->runs[i];
            return ICA_OK;
        }
    if (env->n_runs == env->cap_runs) {
        size_t nc = env->cap_runs ? 2 * env->cap_runs : 64;
        struct run_memo *t = realloc(env->runs, nc * sizeof *t);
        if (!t) {
            free(text);
            return nomem(e);
        }
        env->runs = t;
        env->cap_runs = nc;
    }
    json_object *cfg = json_object_new_object();
    json_object_object_add(cfg, "kind", json_object_new_string("answer"));
    json_object_object_add(cfg, "bench", json_object_new_string("search"));
    json_object_object_add(cfg, "model", json_object_new_string(env->a->model_key));
    json_object_object_add(cfg, "demos_sha256", json_object_new_string(sha));
    json_object_object_add(cfg, "demos_style", json_object_new_int(align_set_style(set)));
    json_object_object_add(
        cfg, "decoding",
        json_object_new_string(env->a->decoding_json ? env->a->decoding_json : ""));
    const char *cfg_text = json_object_to_json_string_ext(cfg, JSON_C_TO_STRING_PLAIN |
                                                                   JSON_C_TO_STRING_NOSLASHESCAPE);
    struct store_run_info ri = {.kind = "answer",
                                .bench = "search",
                                .config = cfg_text,
                                .model_sha256 = NULL,
                                .demos_sha256 = sha,
                                .demos_text = text,
                                .decoding = env->a->decoding_json,
                                .backend = backend_describe(env->a->backend),
                                .version = "search"};
    struct run_memo *m = &env->runs[env->n_runs];
    memset(m, 0, sizeof *m);
    rc = store_run_open(env->st, &ri, &m->run_id, NULL, NULL, e);
    json_object_put(cfg);
    free(text);
    if (rc)
        return rc;
    m->item_put = calloc(env->val->n ? env->val->n : 1, sizeof *m->item_put);
    if (!m->item_put)
        return nomem(e);
    memcpy(m->sha, sha, sizeof sha);
    env->n_runs++;
    *out = m;
    return ICA_OK;
}

/* ==== evaluation ==== */

struct slot {
    int64_t run_id;
    long dup; /* index of the slot holding the same (run, question), -1 if none */
    int64_t gen_id;
    char *answer; /* cleaned answer */
    char *prompt;
    char sha[65];
    uint32_t ptoks;
    double score;
    char *jsys, *juser;
    char *a1;         /* turn 2: the model's cleaned turn-1 answer */
    bool is_switched; /* AlpacaEval: outputs swapped in the annotator prompt */
};

struct ev {
    struct search_env *env;
    struct slot *slots;
    size_t *idx; /* request i -> slot */
    const struct search_question *const *qs;
    int turn;
    int rc;
    struct ica_error err;
};

static const char *finish_name(enum backend_finish f) {
    return f == BACKEND_FINISH_STOP ? "stop" : f == BACKEND_FINISH_LENGTH ? "length" : "cancelled";
}

static bool on_gen(void *ud, size_t i, const struct backend_request *req, struct backend_result *r,
                   const struct ica_error *err) {
    (void)req;
    struct ev *E = ud;
    struct search_env *env = E->env;
    struct slot *s = &E->slots[E->idx[i]];
    if (err) {
        env->stats.gen_failed++;
        logf_(env, "generation failed: %s", err->msg);
        return true;
    }
    char *clean = NULL;
    size_t clen = 0;
    if (align_postprocess(r->text ? r->text : "", r->text_len, &clean, &clen, &E->err) != ICA_OK) {
        E->rc = E->err.code;
        return false;
    }
    const struct search_question *q = E->qs[E->idx[i]];
    struct store_generation g = {.item_id = q->key,
                                 .turn = E->turn,
                                 .prompt_sha256 = s->sha,
                                 .raw = r->text ? r->text : "",
                                 .raw_len = r->text ? r->text_len : 0,
                                 .cleaned = clean,
                                 .cleaned_len = clen,
                                 .finish = finish_name(r->finish),
                                 .prompt_tokens = r->prompt_tokens,
                                 .completion_tokens = r->completion_tokens,
                                 .cached_tokens = r->cached_tokens,
                                 .seconds = r->seconds,
                                 .attempts = r->attempts};
    int rc = store_generation_put(env->st, s->run_id, &g, &E->err);
    struct store_gen_row row;
    bool found = false;
    if (!rc)
        rc = store_generation_get(env->st, s->run_id, q->key, E->turn, &row, &found, &E->err);
    if (rc) {
        free(clean);
        E->rc = rc;
        return false;
    }
    if (found) {
        s->gen_id = row.id;
        store_gen_row_free(&row);
    }
    s->answer = clean;
    s->ptoks = r->prompt_tokens;
    env->stats.gen_new++;
    env->stats.prompt_tokens += r->prompt_tokens;
    env->stats.cached_tokens += r->cached_tokens;
    return true;
}

static bool on_judge(void *ud, size_t i, const struct backend_request *req,
                     struct backend_result *r, const struct ica_error *err) {
    (void)req;
    struct ev *E = ud;
    struct search_env *env = E->env;
    struct slot *s = &E->slots[E->idx[i]];
    if (err) {
        env->stats.judge_failed++;
        logf_(env, "judgment failed: %s", err->msg);
        return true;
    }
    const char *raw = r->text ? r->text : "";
    double rating, pref = NAN;
    if (env->j->ae_template) {
        struct eval_logprob *top = calloc(r->n_top ? r->n_top : 1, sizeof *top);
        if (!top) {
            E->rc = nomem(&E->err);
            return false;
        }
        for (size_t k = 0; k < r->n_top; k++)
            top[k] =
                (struct eval_logprob){r->top[k].token ? r->top[k].token : "", r->top[k].logprob};
        pref = eval_ae_preference(top, r->n_top, s->is_switched);
        free(top);
        rating = isnan(pref) ? -1 : pref;
    } else
        rating = eval_mt_parse_rating(raw, r->text ? r->text_len : 0);
    s->score = rating < 0 ? NAN : rating;
    if (rating < 0)
        env->stats.judge_failed++;
    json_object *msgs = json_object_new_array();
    json_object *m1 = json_object_new_object(), *m2 = json_object_new_object();
    json_object_object_add(m1, "role", json_object_new_string("system"));
    json_object_object_add(m1, "content", json_object_new_string(s->jsys));
    json_object_object_add(m2, "role", json_object_new_string("user"));
    json_object_object_add(m2, "content", json_object_new_string(s->juser));
    json_object_array_add(msgs, m1);
    json_object_array_add(msgs, m2);
    const struct search_question *q = E->qs[E->idx[i]];
    const char *pname =
        env->j->ae_template
            ? "weighted_alpaca_eval_gpt4_turbo"
            : eval_mt_prompt_name(env->j->per_category ? eval_mt_prompt_for(q->category, E->turn)
                                  : E->turn == 2       ? EVAL_MT_SINGLE_V1_MULTI
                                                       : EVAL_MT_SINGLE_V1);
    struct store_judgment jd = {.generation_id = s->gen_id,
                                .judge = env->j->name,
                                .prompt_name = pname,
                                .prompt = json_object_to_json_string_ext(
                                    msgs, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
                                .raw = raw,
                                .score = env->j->ae_template ? NAN : s->score,
                                .preference = pref};
    int rc = store_judgment_put(env->st, &jd, &E->err);
    json_object_put(msgs);
    env->stats.judge_new++;
    if (rc) {
        E->rc = rc;
        return false;
    }
    return true;
}

/* Looks up a stored judgment: 1 found (score set), 0 absent, <0 error. */
static int judgment_lookup(struct search_env *env, int64_t gen_id, double *score,
                           struct ica_error *e) {
    sqlite3_stmt *st = NULL;
    const char *sql = env->j->ae_template
                          ? "SELECT preference FROM judgments WHERE generation_id=?1 AND judge=?2 "
                            "AND (raw<>'' OR preference IS NOT NULL)"
                          : "SELECT score FROM judgments WHERE generation_id=?1 AND judge=?2 AND "
                            "raw<>''";
    if (sqlite3_prepare_v2(env->db, sql, -1, &st, NULL) != SQLITE_OK) {
        ica_seterr(e, ICA_ERR_IO, "judgments: %s", sqlite3_errmsg(env->db));
        return -1;
    }
    sqlite3_bind_int64(st, 1, gen_id);
    sqlite3_bind_text(st, 2, env->j->name, -1, SQLITE_STATIC);
    int r = sqlite3_step(st), found = 0;
    if (r == SQLITE_ROW) {
        *score = sqlite3_column_type(st, 0) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 0);
        found = 1;
    } else if (r != SQLITE_DONE) {
        ica_seterr(e, ICA_ERR_IO, "judgments: %s", sqlite3_errmsg(env->db));
        found = -1;
    }
    sqlite3_finalize(st);
    return found;
}

static int eval_impl(struct search_env *env, struct align_set *const *sets, size_t n_sets,
                     size_t n_q, int turn, double *scores, uint32_t *ptoks, size_t *lens,
                     struct ica_error *e) {
    if (n_q > env->val->n)
        n_q = env->val->n;
    size_t n = n_sets * n_q;
    for (size_t i = 0; i < n; i++) {
        scores[i] = NAN;
        if (ptoks)
            ptoks[i] = 0;
        if (lens)
            lens[i] = 0;
    }
    if (n == 0)
        return ICA_OK;
    struct ev E = {.env = env, .turn = turn};
    E.slots = calloc(n, sizeof *E.slots);
    E.idx = calloc(n, sizeof *E.idx);
    const struct search_question **qs = calloc(n, sizeof *qs);
    struct backend_request *reqs = calloc(n, sizeof *reqs);
    struct backend_message *jm = calloc(2 * n, sizeof *jm);
    E.qs = qs;
    int rc = ICA_OK;
    if (!E.slots || !E.idx || !qs || !reqs || !jm) {
        rc = nomem(e);
        goto out;
    }
    /* 1. runs, items, stored generations; requests for the missing ones */
    size_t nr = 0;
    for (size_t si = 0; si < n_sets && !rc; si++) {
        struct run_memo *m = NULL;
        if ((rc = set_run(env, sets[si], &m, e)))
            break;
        long first = -1;
        for (size_t sj = 0; sj < si; sj++)
            if (E.slots[sj * n_q].run_id == m->run_id) {
                first = (long)sj;
                break;
            }
        for (size_t q = 0; q < n_q && !rc; q++) {
            size_t k = si * n_q + q;
            struct slot *s = &E.slots[k];
            const struct search_question *qq = &env->val->q[q];
            qs[k] = qq;
            s->run_id = m->run_id;
            s->score = NAN;
            s->dup = first >= 0 ? first * (long)n_q + (long)q : -1;
            if (s->dup >= 0)
                continue;
            if (!m->item_put[q]) {
                json_object *d = json_object_new_object();
                json_object_object_add(d, "id", json_object_new_string(qq->id));
                json_object_object_add(d, "category", json_object_new_string(qq->category));
                json_object_object_add(d, "instruction", json_object_new_string(qq->text));
                rc = store_item_put(env->st, m->run_id, qq->key, (int64_t)q,
                                    json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN), e);
                json_object_put(d);
                if (rc)
                    break;
                m->item_put[q] = true;
            }
            const char *msgs[3] = {qq->text, NULL, qq->text2};
            size_t plen;
            struct store_gen_row row;
            bool found = false;
            if (turn == 2) {
                /* the second turn follows the model's own turn-1 answer */
                if (!qq->text2)
                    continue;
                if ((rc = store_generation_get(env->st, m->run_id, qq->key, 1, &row, &found, e)))
                    break;
                if (!found)
                    continue;
                s->a1 = row.cleaned;
                row.cleaned = NULL;
                store_gen_row_free(&row);
                msgs[1] = s->a1;
            }
            if ((rc = align_render(sets[si], msgs, turn == 2 ? 3 : 1, &s->prompt, &plen, e)))
                break;
            store_sha256_hex(s->prompt, plen, s->sha);
            found = false;
            if ((rc = store_generation_get(env->st, m->run_id, qq->key, turn, &row, &found, e)))
                break;
            if (found && strcmp(row.prompt_sha256, s->sha) == 0) {
                s->gen_id = row.id;
                s->answer = row.cleaned;
                row.cleaned = NULL;
                s->ptoks = row.prompt_tokens;
                env->stats.gen_cached++;
                env->stats.stored_prompt_tokens += row.prompt_tokens;
            } else {
                struct backend_request *r = &reqs[nr];
                r->prompt = s->prompt;
                r->sampling = env->a->sampling;
                r->max_tokens = env->a->max_tokens;
                r->stop = env->a->stop;
                r->n_stop = env->a->n_stop;
                E.idx[nr++] = k;
            }
            if (found)
                store_gen_row_free(&row);
        }
    }
    if (rc)
        goto out;
    if (nr) {
        logf_(env, "answering %zu prompts", nr);
        rc = backend_run(env->a->backend, reqs, nr, NULL, on_gen, &E, e);
        if (!rc && E.rc) {
            rc = E.rc;
            *e = E.err;
        }
        if (rc)
            goto out;
    }
    /* 2. stored judgments; requests for the missing ones */
    nr = 0;
    memset(reqs, 0, n * sizeof *reqs);
    for (size_t k = 0; k < n && !rc; k++) {
        struct slot *s = &E.slots[k];
        if (s->dup >= 0 || !s->answer || s->gen_id == 0)
            continue;
        double sc;
        int f = judgment_lookup(env, s->gen_id, &sc, e);
        if (f < 0) {
            rc = e ? e->code : ICA_ERR_IO;
            break;
        }
        if (f == 1) {
            s->score = sc;
            env->stats.judge_cached++;
            continue;
        }
        const struct search_question *q = qs[k];
        char *clean = utf8_clean(s->answer);
        if (!clean) {
            rc = nomem(e);
            break;
        }
        free(s->answer);
        s->answer = clean;
        struct backend_request *r = &reqs[nr];
        r->sampling = backend_default_sampling();
        r->max_tokens = env->j->max_tokens ? env->j->max_tokens : 2048;
        if (env->j->ae_template) {
            /* AlpacaEval 2.0: reference output vs the answer, order switched per instruction */
            const char *o1 = q->reference;
            if (!o1)
                continue; /* no reference output: no preference */
            if (strcmp(o1, s->answer) == 0) {
                s->score = 1.5; /* identical outputs: a draw, as alpaca_eval */
                continue;
            }
            s->is_switched = eval_ae_is_switched(q->text, "0");
            if ((rc = eval_ae_render_prompt(
                     env->j->ae_template, q->text, s->is_switched ? s->answer : o1,
                     s->is_switched ? o1 : s->answer, &s->jsys, &s->juser, e)))
                break;
            r->sampling.temperature = 1;
            r->sampling.top_p = 1;
            r->top_logprobs = 5;
            r->max_tokens = 1;
        } else {
            char *a1 = NULL;
            if (turn == 2 && !(a1 = utf8_clean(s->a1 ? s->a1 : ""))) {
                rc = nomem(e);
                break;
            }
            if (a1) {
                free(s->a1);
                s->a1 = a1;
            }
            struct eval_mt_fill fill = {
                .q1 = q->text, .a1 = turn == 2 ? s->a1 : s->answer, .r1 = q->reference};
            if (turn == 2) {
                fill.q2 = q->text2;
                fill.a2 = s->answer;
                fill.r2 = q->reference2;
            }
            const char *cat = env->j->per_category ? q->category : "";
            if (env->j->per_category && eval_mt_needs_ref(cat) &&
                (!q->reference || (turn == 2 && !q->reference2)))
                cat = ""; /* no reference answer: the general prompt */
            if ((rc = eval_mt_judge_messages(env->j->prompts, cat, turn, &fill, &s->jsys, &s->juser,
                                             e)))
                break;
        }
        jm[2 * nr] = (struct backend_message){BACKEND_SYSTEM, s->jsys};
        jm[2 * nr + 1] = (struct backend_message){BACKEND_USER, s->juser};
        r->messages = &jm[2 * nr];
        r->n_messages = 2;
        E.idx[nr++] = k;
    }
    if (rc)
        goto out;
    if (nr) {
        logf_(env, "judging %zu answers", nr);
        rc = backend_run(env->j->backend, reqs, nr, NULL, on_judge, &E, e);
        if (!rc && E.rc) {
            rc = E.rc;
            *e = E.err;
        }
        if (rc)
            goto out;
    }
    for (size_t k = 0; k < n; k++) {
        struct slot *s = &E.slots[k];
        const struct slot *src = s->dup >= 0 ? &E.slots[s->dup] : s;
        scores[k] = src->score;
        if (ptoks)
            ptoks[k] = src->ptoks;
        if (lens && src->answer) {
            char *c = utf8_clean(src->answer);
            if (!c) {
                rc = nomem(e);
                break;
            }
            lens[k] = eval_utf8_len(c);
            free(c);
        }
    }
out:
    for (size_t k = 0; E.slots && k < n; k++) {
        free(E.slots[k].a1);
        free(E.slots[k].answer);
        free(E.slots[k].prompt);
        free(E.slots[k].jsys);
        free(E.slots[k].juser);
    }
    free(E.slots);
    free(E.idx);
    free(qs);
    free(reqs);
    free(jm);
    return rc;
}

int search_eval(struct search_env *env, struct align_set *const *sets, size_t n_sets, size_t n_q,
                double *scores, struct ica_error *e) {
    return eval_impl(env, sets, n_sets, n_q, 1, scores, NULL, NULL, e);
}

int search_eval_turn(struct search_env *env, struct align_set *const *sets, size_t n_sets,
                     size_t n_q, int turn, double *scores, size_t *lens, struct ica_error *e) {
    if (turn != 1 && turn != 2)
        return ica_seterr(e, ICA_ERR_ARG, "search: turn %d (1 or 2)", turn);
    if (turn == 2 && env->j->ae_template)
        return ica_seterr(e, ICA_ERR_ARG, "search: AlpacaEval has one turn");
    return eval_impl(env, sets, n_sets, n_q, turn, scores, NULL, lens, e);
}

/* ==== greedy forward selection ==== */

int search_compose(const struct align_set *base, const struct align_set *pool, const size_t *sel,
                   size_t n_sel, bool after, struct align_set **out, struct ica_error *e) {
    *out = NULL;
    struct align_set *s = align_set_clone(base);
    struct align_set *x = align_set_new(NULL);
    int rc = (!s || !x) ? nomem(e) : ICA_OK;
    for (size_t i = 0; i < n_sel && !rc; i++)
        rc = align_set_insert(x, i, align_set_demo(pool, sel[i]), e);
    if (!rc)
        rc = align_set_merge(s, x, after, e);
    align_set_free(x);
    if (rc) {
        align_set_free(s);
        return rc;
    }
    *out = s;
    return ICA_OK;
}

void search_result_free(struct search_result *r) {
    if (!r)
        return;
    for (size_t i = 0; i < r->n_steps; i++)
        free(r->steps[i].c);
    free(r->steps);
    free(r->selected);
    align_set_free(r->final_set);
    free(r);
}

/* Candidate order for halving and choice: score descending (NaN last), pool index ascending. */
static int cand_better(const struct search_cand *a, const struct search_cand *b) {
    bool an = isnan(a->score), bn = isnan(b->score);
    if (an != bn)
        return bn;
    if (!an && a->score != b->score)
        return a->score > b->score;
    return a->pool_index < b->pool_index;
}

static int cand_cmp(const void *x, const void *y) {
    const struct search_cand *a = *(const struct search_cand *const *)x;
    const struct search_cand *b = *(const struct search_cand *const *)y;
    return cand_better(a, b) ? -1 : cand_better(b, a) ? 1 : 0;
}

static json_object *jnum(double d) {
    return isnan(d) ? NULL : json_object_new_double(d);
}

static int store_step(struct search_env *env, const struct search_greedy_opts *o,
                      const struct search_step *st, struct ica_error *e) {
    if (!o->run_id)
        return ICA_OK;
    json_object *j = json_object_new_object();
    json_object_object_add(j, "step", json_object_new_int64((int64_t)st->step));
    json_object_object_add(j, "current", jnum(st->current));
    json_object_object_add(j, "chosen", st->chosen >= 0 ? json_object_new_int64(st->chosen) : NULL);
    json_object_object_add(
        j, "chosen_id",
        st->chosen >= 0 ? json_object_new_string(align_set_demo(o->pool, (size_t)st->chosen)->id)
                        : NULL);
    json_object_object_add(j, "chosen_score", jnum(st->chosen_score));
    json_object *arr = json_object_new_array();
    for (size_t i = 0; i < st->n_c; i++) {
        const struct search_cand *c = &st->c[i];
        json_object *x = json_object_new_object();
        json_object_object_add(x, "pool_index", json_object_new_int64((int64_t)c->pool_index));
        json_object_object_add(x, "id",
                               json_object_new_string(align_set_demo(o->pool, c->pool_index)->id));
        json_object_object_add(x, "score", jnum(c->score));
        json_object_object_add(x, "n_q", json_object_new_int64((int64_t)c->n_q));
        json_object_object_add(x, "n_valid", json_object_new_int64((int64_t)c->n_valid));
        json_object_array_add(arr, x);
    }
    json_object_object_add(j, "candidates", arr);
    int rc = search_step_put(env, o->run_id, (int64_t)st->step,
                             json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN),
                             st->chosen >= 0 ? st->chosen_score : NAN, e);
    json_object_put(j);
    return rc;
}

/* Adds the prompt tokens of the full step (every candidate on every question): known counts
 * from the evaluation, the backend's tokenizer for the pairs halving skipped. */
static void full_tokens(struct search_env *env, struct align_set *const *sets, size_t n_sets,
                        const uint32_t *known, const size_t *known_nq, uint64_t *sum) {
    size_t nv = env->val->n;
    for (size_t s = 0; s < n_sets; s++)
        for (size_t q = 0; q < nv; q++) {
            if (q < known_nq[s] && known[s * nv + q]) {
                *sum += known[s * nv + q];
                continue;
            }
            char *p = NULL;
            size_t len;
            const char *msg = env->val->q[q].text;
            if (align_render(sets[s], &msg, 1, &p, &len, NULL) == ICA_OK) {
                int64_t t = backend_count_tokens(env->a->backend, p);
                if (t > 0)
                    *sum += (uint64_t)t;
            }
            free(p);
        }
}

int search_greedy(struct search_env *env, const struct search_greedy_opts *o,
                  struct search_result **out, struct ica_error *e) {
    *out = NULL;
    const size_t np = align_set_count(o->pool), nv = env->val->n;
    struct search_result *R = calloc(1, sizeof *R);
    if (!R)
        return nomem(e);
    R->selected = calloc(np + 1, sizeof *R->selected);
    R->steps = calloc(o->steps + 1, sizeof *R->steps);
    struct align_set **sets = calloc(np + 1, sizeof *sets);
    double *sc = calloc((np + 1) * (nv ? nv : 1), sizeof *sc);
    uint32_t *tk = calloc((np + 1) * (nv ? nv : 1), sizeof *tk);
    size_t *nq_of = calloc(np + 1, sizeof *nq_of);
    struct search_cand **order = calloc(np + 1, sizeof *order);
    bool *taken = calloc(np + 1, sizeof *taken);
    int rc = ICA_OK;
    if (!R->selected || !R->steps || !sets || !sc || !tk || !nq_of || !order || !taken) {
        rc = nomem(e);
        goto out;
    }
    bool count_full = backend_count_tokens(env->a->backend, "x") >= 0;
    /* the base set */
    struct align_set *cur = NULL;
    if ((rc = search_compose(o->base, o->pool, NULL, 0, o->after, &cur, e)))
        goto out;
    rc = eval_impl(env, &cur, 1, nv, 1, sc, NULL, NULL, e);
    align_set_free(cur);
    if (rc)
        goto out;
    double current = search_mean(sc, nv, NULL);
    R->base_score = current;
    logf_(env, "base set: %.4f", current);
    for (size_t step = 1; step <= o->steps; step++) {
        struct search_step *S = &R->steps[R->n_steps];
        memset(S, 0, sizeof *S);
        S->step = step;
        S->current = current;
        S->chosen = -1;
        S->chosen_score = NAN;
        size_t nc = 0;
        S->c = calloc(np + 1, sizeof *S->c);
        if (!S->c) {
            rc = nomem(e);
            goto out;
        }
        R->n_steps++;
        for (size_t p = 0; p < np; p++) {
            if (taken[p])
                continue;
            size_t sel_n = R->n_selected;
            R->selected[sel_n] = p;
            if ((rc = search_compose(o->base, o->pool, R->selected, sel_n + 1, o->after, &sets[nc],
                                     e)))
                goto out_sets;
            S->c[nc] = (struct search_cand){.pool_index = p, .score = NAN};
            nq_of[nc] = 0;
            nc++;
        }
        S->n_c = nc;
        S->full_calls = (uint64_t)nc * nv;
        if (nc == 0) {
            logf_(env, "step %zu: no candidate left", step);
            rc = store_step(env, o, S, e);
            goto out_sets;
        }
        /* survivors: indices into sets / S->c */
        size_t n_surv = nc;
        size_t *surv = calloc(nc, sizeof *surv);
        struct align_set **ss = calloc(nc, sizeof *ss);
        double *ssc = calloc(nc * (nv ? nv : 1), sizeof *ssc);
        uint32_t *stk = calloc(nc * (nv ? nv : 1), sizeof *stk);
        if (!surv || !ss || !ssc || !stk) {
            free(surv);
            free(ss);
            free(ssc);
            free(stk);
            rc = nomem(e);
            goto out_sets;
        }
        for (size_t i = 0; i < nc; i++)
            surv[i] = i;
        size_t nq = nv;
        if (o->halving && nc > 1) {
            size_t rounds = 0;
            while (((size_t)1 << rounds) < nc)
                rounds++;
            nq = nv >> rounds;
            if (nq < 1)
                nq = 1;
        }
        for (;;) {
            for (size_t i = 0; i < n_surv; i++)
                ss[i] = sets[surv[i]];
            if ((rc = eval_impl(env, ss, n_surv, nq, 1, ssc, stk, NULL, e)))
                break;
            S->evals += (uint64_t)n_surv * nq;
            for (size_t i = 0; i < n_surv; i++) {
                struct search_cand *c = &S->c[surv[i]];
                c->score = search_mean(&ssc[i * nq], nq, &c->n_valid);
                c->n_q = nq;
                nq_of[surv[i]] = nq;
                for (size_t q = 0; q < nq; q++) {
                    sc[surv[i] * nv + q] = ssc[i * nq + q];
                    tk[surv[i] * nv + q] = stk[i * nq + q];
                }
            }
            if (!o->halving || n_surv == 1 || nq >= nv)
                break;
            for (size_t i = 0; i < n_surv; i++)
                order[i] = &S->c[surv[i]];
            qsort(order, n_surv, sizeof *order, cand_cmp);
            size_t keep = (n_surv + 1) / 2;
            for (size_t i = 0; i < keep; i++)
                surv[i] = (size_t)(order[i] - S->c);
            n_surv = keep;
            /* keep survivors in pool order (deterministic request order) */
            for (size_t i = 1; i < n_surv; i++)
                for (size_t k = i; k > 0 && surv[k - 1] > surv[k]; k--) {
                    size_t t = surv[k];
                    surv[k] = surv[k - 1];
                    surv[k - 1] = t;
                }
            nq = nq * 2 > nv ? nv : nq * 2;
            if (n_surv == 1)
                nq = nv; /* the winner is scored on every question */
        }
        free(ss);
        free(ssc);
        free(stk);
        free(surv);
        if (rc)
            goto out_sets;
        if (count_full)
            full_tokens(env, sets, nc, tk, nq_of, &R->full_prompt_tokens);
        /* the best among the candidates scored on every question */
        const struct search_cand *best = NULL;
        for (size_t i = 0; i < nc; i++)
            if (S->c[i].n_q == nv && (!best || cand_better(&S->c[i], best)))
                best = &S->c[i];
        bool improves = best && !isnan(best->score) && (isnan(current) || best->score > current);
        if (best && (improves || (o->always_take && !isnan(best->score)))) {
            S->chosen = (long)best->pool_index;
            S->chosen_score = best->score;
            taken[best->pool_index] = true;
            R->selected[R->n_selected++] = best->pool_index;
            current = best->score;
            logf_(env, "step %zu: chose pool #%zu (%s): %.4f", step, best->pool_index,
                  align_set_demo(o->pool, best->pool_index)->id, best->score);
        } else {
            logf_(env, "step %zu: no candidate improves on %.4f; stopping", step, current);
        }
        rc = store_step(env, o, S, e);
    out_sets:
        for (size_t i = 0; i < nc; i++) {
            align_set_free(sets[i]);
            sets[i] = NULL;
        }
        if (rc)
            goto out;
        if (S->chosen < 0)
            break;
    }
    R->final_score = current;
    rc = search_compose(o->base, o->pool, R->selected, R->n_selected, o->after, &R->final_set, e);
out:
    free(sets);
    free(sc);
    free(tk);
    free(nq_of);
    free(order);
    free(taken);
    if (rc) {
        search_result_free(R);
        return rc;
    }
    *out = R;
    return ICA_OK;
}
