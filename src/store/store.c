/* The experiment store: one SQLite database per run directory. */
#include "icalign/store.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

struct store {
    sqlite3 *db;
    char *path;
};

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS meta(\n"
    "  key TEXT PRIMARY KEY,\n"
    "  value TEXT NOT NULL) STRICT;\n"
    "CREATE TABLE IF NOT EXISTS file_hashes(\n"
    "  path TEXT NOT NULL,\n"
    "  size INTEGER NOT NULL,\n"
    "  mtime_ns INTEGER NOT NULL,\n"
    "  sha256 TEXT NOT NULL,\n"
    "  hashed_at REAL NOT NULL,\n"
    "  PRIMARY KEY(path, size, mtime_ns)) STRICT;\n"
    "CREATE TABLE IF NOT EXISTS runs(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  key TEXT NOT NULL UNIQUE,\n"
    "  kind TEXT NOT NULL,\n"
    "  bench TEXT,\n"
    "  config TEXT NOT NULL,\n"
    "  model_sha256 TEXT,\n"
    "  demos_sha256 TEXT,\n"
    "  demos_text TEXT,\n"
    "  decoding TEXT,\n"
    "  backend TEXT,\n"
    "  version TEXT,\n"
    "  created_at REAL NOT NULL) STRICT;\n"
    "CREATE TABLE IF NOT EXISTS items(\n"
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
    "  item_id TEXT NOT NULL,\n"
    "  position INTEGER NOT NULL,\n"
    "  data TEXT NOT NULL,\n"
    "  PRIMARY KEY(run_id, item_id)) STRICT;\n"
    "CREATE TABLE IF NOT EXISTS generations(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  run_id INTEGER NOT NULL,\n"
    "  item_id TEXT NOT NULL,\n"
    "  turn INTEGER NOT NULL CHECK(turn >= 1),\n"
    "  prompt_sha256 TEXT NOT NULL,\n"
    "  raw TEXT NOT NULL,\n"
    "  cleaned TEXT NOT NULL,\n"
    "  finish TEXT NOT NULL,\n"
    "  prompt_tokens INTEGER NOT NULL,\n"
    "  completion_tokens INTEGER NOT NULL,\n"
    "  cached_tokens INTEGER NOT NULL,\n"
    "  seconds REAL NOT NULL,\n"
    "  attempts INTEGER NOT NULL,\n"
    "  created_at REAL NOT NULL,\n"
    "  UNIQUE(run_id, item_id, turn),\n"
    "  FOREIGN KEY(run_id, item_id) REFERENCES items(run_id, item_id) ON DELETE CASCADE)\n"
    "  STRICT;\n"
    "CREATE TABLE IF NOT EXISTS judgments(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  generation_id INTEGER NOT NULL REFERENCES generations(id) ON DELETE CASCADE,\n"
    "  judge TEXT NOT NULL,\n"
    "  prompt_name TEXT,\n"
    "  prompt TEXT NOT NULL,\n"
    "  raw TEXT NOT NULL,\n"
    "  score REAL,\n"
    "  preference REAL,\n"
    "  logprobs TEXT,\n"
    "  created_at REAL NOT NULL,\n"
    "  parsed TEXT,\n"
    "  error TEXT,\n"
    "  UNIQUE(generation_id, judge)) STRICT;\n"
    "CREATE TABLE IF NOT EXISTS search_steps(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
    "  step INTEGER NOT NULL,\n"
    "  data TEXT NOT NULL,\n"
    "  score REAL,\n"
    "  created_at REAL NOT NULL,\n"
    "  UNIQUE(run_id, step)) STRICT;\n"
    "CREATE INDEX IF NOT EXISTS generations_run ON generations(run_id);\n"
    "CREATE INDEX IF NOT EXISTS judgments_judge ON judgments(judge);\n";

static double now_unix(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int dberr(struct store *s, struct ica_error *e, const char *what) {
    return ica_seterr(e, ICA_ERR_IO, "%s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

static int exec(struct store *s, const char *sql, struct ica_error *e) {
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = ica_seterr(e, ICA_ERR_IO, "%s: %s", s->path, msg ? msg : "SQL error");
        sqlite3_free(msg);
        return rc;
    }
    return ICA_OK;
}

/* mkdir -p */
static int make_dirs(const char *dir, struct ica_error *e) {
    size_t n = strlen(dir);
    char *p = malloc(n + 1);
    if (!p)
        return ica_seterr(e, ICA_ERR_NOMEM, "out of memory");
    memcpy(p, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            int rc =
                ica_seterr(e, ICA_ERR_IO, "%s: cannot create directory: %s", p, strerror(errno));
            free(p);
            return rc;
        }
        p[i] = c;
    }
    free(p);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return ica_seterr(e, ICA_ERR_IO, "%s: not a directory", dir);
    return ICA_OK;
}

int store_open(const char *dir, struct store **out, struct ica_error *e) {
    *out = NULL;
    int rc = make_dirs(dir, e);
    if (rc)
        return rc;
    struct store *s = calloc(1, sizeof *s);
    size_t n = strlen(dir) + sizeof "/" STORE_DB_NAME;
    if (!s || !(s->path = malloc(n))) {
        free(s);
        return ica_seterr(e, ICA_ERR_NOMEM, "out of memory");
    }
    snprintf(s->path, n, "%s/%s", dir, STORE_DB_NAME);
    if (sqlite3_open_v2(s->path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        rc = ica_seterr(e, ICA_ERR_IO, "%s: cannot open database: %s", s->path,
                        s->db ? sqlite3_errmsg(s->db) : "out of memory");
        store_close(s);
        return rc;
    }
    sqlite3_busy_timeout(s->db, 10000);
    /* journal_mode=WAL returns a row; exec ignores it. synchronous=FULL: a commit survives a
     * power loss, not only a killed process. */
    if ((rc = exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
                   e))) {
        store_close(s);
        return rc;
    }
    sqlite3_stmt *st = NULL;
    int version = 0;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version > STORE_SCHEMA_VERSION) {
        rc = ica_seterr(e, ICA_ERR_UNSUPPORTED,
                        "%s: schema version %d is newer than this icalign's (%d); use a newer "
                        "icalign",
                        s->path, version, STORE_SCHEMA_VERSION);
        store_close(s);
        return rc;
    }
    if ((rc = exec(s, "BEGIN IMMEDIATE", e))) {
        store_close(s);
        return rc;
    }
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version=%d", STORE_SCHEMA_VERSION);
    /* Version 1 -> 2: judgments gained parsed and error (icalign judge). Read again inside the
     * transaction: another process may have migrated meanwhile. */
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version == 1)
        rc = exec(s,
                  "ALTER TABLE judgments ADD COLUMN parsed TEXT; "
                  "ALTER TABLE judgments ADD COLUMN error TEXT;",
                  e);
    if (rc || (rc = exec(s, SCHEMA, e)) || (rc = exec(s, sql, e)) || (rc = exec(s, "COMMIT", e))) {
        (void)exec(s, "ROLLBACK", NULL);
        store_close(s);
        return rc;
    }
    *out = s;
    return ICA_OK;
}

void store_close(struct store *s) {
    if (!s)
        return;
    sqlite3_close(s->db);
    free(s->path);
    free(s);
}

static int prep(struct store *s, const char *sql, sqlite3_stmt **st, struct ica_error *e) {
    if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK)
        return dberr(s, e, "prepare");
    return ICA_OK;
}

static void bind_text(sqlite3_stmt *st, int i, const char *t) {
    if (t)
        sqlite3_bind_text(st, i, t, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

int store_file_sha256(struct store *s, const char *path, char hex[65], bool *cached,
                      struct ica_error *e) {
    if (cached)
        *cached = false;
    struct stat stt;
    if (stat(path, &stt) != 0)
        return ica_seterr(e, ICA_ERR_IO, "%s: %s", path, strerror(errno));
    char *abs = realpath(path, NULL);
    const char *key = abs ? abs : path;
    const int64_t size = (int64_t)stt.st_size;
    const int64_t mtime = (int64_t)stt.st_mtim.tv_sec * 1000000000 + stt.st_mtim.tv_nsec;
    sqlite3_stmt *st = NULL;
    int rc =
        prep(s, "SELECT sha256 FROM file_hashes WHERE path=?1 AND size=?2 AND mtime_ns=?3", &st, e);
    if (rc)
        goto out;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, size);
    sqlite3_bind_int64(st, 3, mtime);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *h = sqlite3_column_text(st, 0);
        if (h && strlen((const char *)h) == 64) {
            memcpy(hex, h, 65);
            if (cached)
                *cached = true;
            goto out;
        }
    }
    sqlite3_finalize(st);
    st = NULL;
    if ((rc = store_sha256_file(path, hex, e)))
        goto out;
    if ((rc = prep(s,
                   "INSERT OR REPLACE INTO file_hashes(path,size,mtime_ns,sha256,hashed_at) "
                   "VALUES(?1,?2,?3,?4,?5)",
                   &st, e)))
        goto out;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, size);
    sqlite3_bind_int64(st, 3, mtime);
    sqlite3_bind_text(st, 4, hex, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(st, 5, now_unix());
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = dberr(s, e, "caching a file hash");
out:
    sqlite3_finalize(st);
    free(abs);
    return rc;
}

int store_run_open(struct store *s, const struct store_run_info *ri, int64_t *run_id, bool *created,
                   char key_hex[65], struct ica_error *e) {
    if (!ri->config || !ri->kind)
        return ica_seterr(e, ICA_ERR_ARG, "store_run_open: config and kind are required");
    char key[65];
    store_sha256_hex(ri->config, strlen(ri->config), key);
    if (key_hex)
        memcpy(key_hex, key, 65);
    if (created)
        *created = false;
    sqlite3_stmt *st = NULL;
    int rc = prep(s,
                  "INSERT INTO runs(key,kind,bench,config,model_sha256,demos_sha256,demos_text,"
                  "decoding,backend,version,created_at) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11) "
                  "ON CONFLICT(key) DO NOTHING",
                  &st, e);
    if (rc)
        return rc;
    bind_text(st, 1, key);
    bind_text(st, 2, ri->kind);
    bind_text(st, 3, ri->bench);
    bind_text(st, 4, ri->config);
    bind_text(st, 5, ri->model_sha256);
    bind_text(st, 6, ri->demos_sha256);
    bind_text(st, 7, ri->demos_text);
    bind_text(st, 8, ri->decoding);
    bind_text(st, 9, ri->backend);
    bind_text(st, 10, ri->version);
    sqlite3_bind_double(st, 11, now_unix());
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = dberr(s, e, "creating a run");
        sqlite3_finalize(st);
        return rc;
    }
    if (created)
        *created = sqlite3_changes(s->db) > 0;
    sqlite3_finalize(st);
    if ((rc = prep(s, "SELECT id, config FROM runs WHERE key=?1", &st, e)))
        return rc;
    bind_text(st, 1, key);
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = dberr(s, e, "finding a run");
    } else {
        const char *cfg = (const char *)sqlite3_column_text(st, 1);
        if (!cfg || strcmp(cfg, ri->config))
            rc = ica_seterr(e, ICA_ERR_FORMAT,
                            "%s: run %s: stored configuration differs (hash "
                            "collision or edited database)",
                            s->path, key);
        *run_id = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return rc;
}

int store_item_put(struct store *s, int64_t run_id, const char *item_id, int64_t position,
                   const char *data_json, struct ica_error *e) {
    sqlite3_stmt *st = NULL;
    int rc = prep(s,
                  "INSERT INTO items(run_id,item_id,position,data) VALUES(?1,?2,?3,?4) "
                  "ON CONFLICT(run_id,item_id) DO NOTHING",
                  &st, e);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, run_id);
    bind_text(st, 2, item_id);
    sqlite3_bind_int64(st, 3, position);
    bind_text(st, 4, data_json ? data_json : "{}");
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = dberr(s, e, "storing an item");
    sqlite3_finalize(st);
    return rc;
}

int store_generation_put(struct store *s, int64_t run_id, const struct store_generation *g,
                         struct ica_error *e) {
    if (!g->item_id || g->turn < 1 || !g->prompt_sha256 || !g->raw || !g->cleaned)
        return ica_seterr(e, ICA_ERR_ARG, "store_generation_put: incomplete generation");
    if (g->raw_len > INT_MAX || g->cleaned_len > INT_MAX)
        return ica_seterr(e, ICA_ERR_RANGE, "store_generation_put: output too large");
    int rc = exec(s, "BEGIN IMMEDIATE", e);
    if (rc)
        return rc;
    sqlite3_stmt *st = NULL;
    /* A replaced generation's judgments judged the old text: drop them. */
    if ((rc = prep(s,
                   "DELETE FROM judgments WHERE generation_id IN (SELECT id FROM generations "
                   "WHERE run_id=?1 AND item_id=?2 AND turn=?3)",
                   &st, e)))
        goto fail;
    sqlite3_bind_int64(st, 1, run_id);
    bind_text(st, 2, g->item_id);
    sqlite3_bind_int(st, 3, g->turn);
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = dberr(s, e, "replacing a generation");
        goto fail;
    }
    sqlite3_finalize(st);
    st = NULL;
    if ((rc = prep(s,
                   "INSERT INTO generations(run_id,item_id,turn,prompt_sha256,raw,cleaned,finish,"
                   "prompt_tokens,completion_tokens,cached_tokens,seconds,attempts,created_at) "
                   "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13) "
                   "ON CONFLICT(run_id,item_id,turn) DO UPDATE SET "
                   "prompt_sha256=excluded.prompt_sha256, raw=excluded.raw, "
                   "cleaned=excluded.cleaned, finish=excluded.finish, "
                   "prompt_tokens=excluded.prompt_tokens, "
                   "completion_tokens=excluded.completion_tokens, "
                   "cached_tokens=excluded.cached_tokens, seconds=excluded.seconds, "
                   "attempts=excluded.attempts, created_at=excluded.created_at",
                   &st, e)))
        goto fail;
    sqlite3_bind_int64(st, 1, run_id);
    bind_text(st, 2, g->item_id);
    sqlite3_bind_int(st, 3, g->turn);
    bind_text(st, 4, g->prompt_sha256);
    sqlite3_bind_text(st, 5, g->raw, (int)g->raw_len, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 6, g->cleaned, (int)g->cleaned_len, SQLITE_TRANSIENT);
    bind_text(st, 7, g->finish ? g->finish : "stop");
    sqlite3_bind_int64(st, 8, g->prompt_tokens);
    sqlite3_bind_int64(st, 9, g->completion_tokens);
    sqlite3_bind_int64(st, 10, g->cached_tokens);
    sqlite3_bind_double(st, 11, g->seconds);
    sqlite3_bind_int(st, 12, g->attempts > 0 ? g->attempts : 1);
    sqlite3_bind_double(st, 13, g->created_at > 0 ? g->created_at : now_unix());
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = dberr(s, e, "storing a generation");
        goto fail;
    }
    sqlite3_finalize(st);
    st = NULL;
    if ((rc = exec(s, "COMMIT", e)))
        goto fail;
    return ICA_OK;
fail:
    sqlite3_finalize(st);
    (void)exec(s, "ROLLBACK", NULL);
    return rc;
}

void store_gen_row_free(struct store_gen_row *r) {
    if (!r)
        return;
    free(r->prompt_sha256);
    free(r->raw);
    free(r->cleaned);
    free(r->finish);
    memset(r, 0, sizeof *r);
}

static char *col_dup(sqlite3_stmt *st, int i, size_t *len) {
    const unsigned char *t = sqlite3_column_text(st, i);
    size_t n = (size_t)sqlite3_column_bytes(st, i);
    char *p = malloc(n + 1);
    if (!p)
        return NULL;
    if (t)
        memcpy(p, t, n);
    p[n] = '\0';
    if (len)
        *len = n;
    return p;
}

int store_generation_get(struct store *s, int64_t run_id, const char *item_id, int turn,
                         struct store_gen_row *out, bool *found, struct ica_error *e) {
    memset(out, 0, sizeof *out);
    *found = false;
    sqlite3_stmt *st = NULL;
    int rc = prep(s,
                  "SELECT id,prompt_sha256,raw,cleaned,finish,prompt_tokens,completion_tokens,"
                  "cached_tokens,seconds,created_at FROM generations WHERE run_id=?1 AND "
                  "item_id=?2 AND turn=?3",
                  &st, e);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, run_id);
    bind_text(st, 2, item_id);
    sqlite3_bind_int(st, 3, turn);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        out->id = sqlite3_column_int64(st, 0);
        out->prompt_sha256 = col_dup(st, 1, NULL);
        out->raw = col_dup(st, 2, &out->raw_len);
        out->cleaned = col_dup(st, 3, &out->cleaned_len);
        out->finish = col_dup(st, 4, NULL);
        out->prompt_tokens = (uint32_t)sqlite3_column_int64(st, 5);
        out->completion_tokens = (uint32_t)sqlite3_column_int64(st, 6);
        out->cached_tokens = (uint32_t)sqlite3_column_int64(st, 7);
        out->seconds = sqlite3_column_double(st, 8);
        out->created_at = sqlite3_column_double(st, 9);
        if (!out->prompt_sha256 || !out->raw || !out->cleaned || !out->finish) {
            store_gen_row_free(out);
            rc = ica_seterr(e, ICA_ERR_NOMEM, "out of memory");
        } else {
            *found = true;
        }
    } else if (r != SQLITE_DONE) {
        rc = dberr(s, e, "reading a generation");
    }
    sqlite3_finalize(st);
    return rc;
}

int store_generation_count(struct store *s, int64_t run_id, int64_t *n, struct ica_error *e) {
    sqlite3_stmt *st = NULL;
    int rc = prep(s, "SELECT count(*) FROM generations WHERE run_id=?1", &st, e);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, run_id);
    if (sqlite3_step(st) == SQLITE_ROW)
        *n = sqlite3_column_int64(st, 0);
    else
        rc = dberr(s, e, "counting generations");
    sqlite3_finalize(st);
    return rc;
}

int store_judgment_put(struct store *s, const struct store_judgment *j, struct ica_error *e) {
    if (!j->judge || !j->prompt || !j->raw)
        return ica_seterr(e, ICA_ERR_ARG, "store_judgment_put: judge, prompt and raw required");
    sqlite3_stmt *st = NULL;
    int rc = prep(s,
                  "INSERT INTO judgments(generation_id,judge,prompt_name,prompt,raw,score,"
                  "preference,logprobs,created_at,parsed,error) "
                  "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11) "
                  "ON CONFLICT(generation_id,judge) DO UPDATE SET prompt_name=excluded.prompt_name,"
                  " prompt=excluded.prompt, raw=excluded.raw, score=excluded.score, "
                  "preference=excluded.preference, logprobs=excluded.logprobs, "
                  "created_at=excluded.created_at, parsed=excluded.parsed, error=excluded.error",
                  &st, e);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, j->generation_id);
    bind_text(st, 2, j->judge);
    bind_text(st, 3, j->prompt_name);
    bind_text(st, 4, j->prompt);
    bind_text(st, 5, j->raw);
    if (isnan(j->score))
        sqlite3_bind_null(st, 6);
    else
        sqlite3_bind_double(st, 6, j->score);
    if (isnan(j->preference))
        sqlite3_bind_null(st, 7);
    else
        sqlite3_bind_double(st, 7, j->preference);
    bind_text(st, 8, j->logprobs_json);
    sqlite3_bind_double(st, 9, now_unix());
    bind_text(st, 10, j->parsed_json);
    bind_text(st, 11, j->error);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = dberr(s, e, "storing a judgment");
    sqlite3_finalize(st);
    return rc;
}

static double col_num(sqlite3_stmt *st, int i) {
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

/* NULL stays NULL; out of memory sets *oom. */
static char *col_opt(sqlite3_stmt *st, int i, bool *oom) {
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return NULL;
    char *p = col_dup(st, i, NULL);
    if (!p)
        *oom = true;
    return p;
}

void store_judgment_row_clear(struct store_judgment_row *r) {
    free(r->item_id);
    free(r->judge);
    free(r->prompt_name);
    free(r->prompt);
    free(r->raw);
    free(r->logprobs);
    free(r->parsed);
    free(r->error);
    free(r->item_data);
    free(r->cleaned);
    memset(r, 0, sizeof *r);
}

void store_judgment_rows_free(struct store_judgment_row *rows, size_t n) {
    for (size_t i = 0; rows && i < n; i++)
        store_judgment_row_clear(&rows[i]);
    free(rows);
}

#define JUDGMENT_COLS                                                                              \
    "j.id, j.generation_id, j.judge, j.prompt_name, j.prompt, j.raw, j.score, j.preference, "      \
    "j.logprobs, j.parsed, j.error, j.created_at"

/* Fills the judgment columns 0..11 of JUDGMENT_COLS; false when out of memory. */
static bool judgment_cols(sqlite3_stmt *st, struct store_judgment_row *r) {
    bool oom = false;
    r->id = sqlite3_column_int64(st, 0);
    r->generation_id = sqlite3_column_int64(st, 1);
    r->judge = col_opt(st, 2, &oom);
    r->prompt_name = col_opt(st, 3, &oom);
    r->prompt = col_opt(st, 4, &oom);
    r->raw = col_opt(st, 5, &oom);
    r->score = col_num(st, 6);
    r->preference = col_num(st, 7);
    r->logprobs = col_opt(st, 8, &oom);
    r->parsed = col_opt(st, 9, &oom);
    r->error = col_opt(st, 10, &oom);
    r->created_at = sqlite3_column_double(st, 11);
    return !oom;
}

int store_judgment_get(struct store *s, int64_t generation_id, const char *judge,
                       struct store_judgment_row *out, bool *found, struct ica_error *e) {
    memset(out, 0, sizeof *out);
    *found = false;
    sqlite3_stmt *st = NULL;
    int rc = prep(s,
                  "SELECT " JUDGMENT_COLS " FROM judgments j WHERE j.generation_id=?1 AND "
                  "j.judge=?2",
                  &st, e);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, generation_id);
    bind_text(st, 2, judge);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        if (!judgment_cols(st, out)) {
            store_judgment_row_clear(out);
            rc = ica_seterr(e, ICA_ERR_NOMEM, "out of memory");
        } else {
            *found = true;
        }
    } else if (r != SQLITE_DONE) {
        rc = dberr(s, e, "reading a judgment");
    }
    sqlite3_finalize(st);
    return rc;
}

int store_judgments_list(struct store *s, int64_t run_id, const char *judge,
                         struct store_judgment_row **rows, size_t *n, struct ica_error *e) {
    *rows = NULL;
    *n = 0;
    sqlite3_stmt *st = NULL;
    int rc = prep(s,
                  "SELECT " JUDGMENT_COLS ", g.run_id, g.item_id, g.turn, i.position, i.data, "
                  "g.cleaned FROM judgments j JOIN generations g ON g.id = j.generation_id "
                  "JOIN items i ON i.run_id = g.run_id AND i.item_id = g.item_id "
                  "WHERE g.run_id=?1 AND (?2 IS NULL OR j.judge=?2) "
                  "ORDER BY j.judge, i.position, g.turn",
                  &st, e);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, run_id);
    bind_text(st, 2, judge);
    size_t cap = 0;
    struct store_judgment_row *v = NULL;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            size_t nc = cap ? 2 * cap : 64;
            struct store_judgment_row *t = realloc(v, nc * sizeof *t);
            if (!t) {
                rc = ica_seterr(e, ICA_ERR_NOMEM, "out of memory");
                break;
            }
            v = t;
            cap = nc;
        }
        struct store_judgment_row *x = &v[*n];
        memset(x, 0, sizeof *x);
        (*n)++;
        bool ok = judgment_cols(st, x);
        x->run_id = sqlite3_column_int64(st, 12);
        x->item_id = col_dup(st, 13, NULL);
        x->turn = sqlite3_column_int(st, 14);
        x->position = sqlite3_column_int64(st, 15);
        x->item_data = col_dup(st, 16, NULL);
        x->cleaned = col_dup(st, 17, &x->cleaned_len);
        if (!ok || !x->item_id || !x->item_data || !x->cleaned) {
            rc = ica_seterr(e, ICA_ERR_NOMEM, "out of memory");
            break;
        }
    }
    if (!rc && r != SQLITE_DONE)
        rc = dberr(s, e, "listing judgments");
    sqlite3_finalize(st);
    if (rc) {
        store_judgment_rows_free(v, *n);
        *n = 0;
        return rc;
    }
    *rows = v;
    return ICA_OK;
}

void store_run_rows_free(struct store_run_row *rows, size_t n) {
    for (size_t i = 0; rows && i < n; i++) {
        free(rows[i].key);
        free(rows[i].kind);
        free(rows[i].bench);
        free(rows[i].config);
        free(rows[i].backend);
    }
    free(rows);
}

int store_runs_list(struct store *s, const char *kind, struct store_run_row **rows, size_t *n,
                    struct ica_error *e) {
    *rows = NULL;
    *n = 0;
    sqlite3_stmt *st = NULL;
    int rc = prep(s,
                  "SELECT id, key, kind, bench, config, backend, created_at FROM runs "
                  "WHERE ?1 IS NULL OR kind=?1 ORDER BY id",
                  &st, e);
    if (rc)
        return rc;
    bind_text(st, 1, kind);
    size_t cap = 0;
    struct store_run_row *v = NULL;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            size_t nc = cap ? 2 * cap : 8;
            struct store_run_row *t = realloc(v, nc * sizeof *t);
            if (!t) {
                rc = ica_seterr(e, ICA_ERR_NOMEM, "out of memory");
                break;
            }
            v = t;
            cap = nc;
        }
        struct store_run_row *x = &v[(*n)++];
        bool oom = false;
        x->id = sqlite3_column_int64(st, 0);
        x->key = col_opt(st, 1, &oom);
        x->kind = col_opt(st, 2, &oom);
        x->bench = col_opt(st, 3, &oom);
        x->config = col_opt(st, 4, &oom);
        x->backend = col_opt(st, 5, &oom);
        x->created_at = sqlite3_column_double(st, 6);
        if (oom) {
            rc = ica_seterr(e, ICA_ERR_NOMEM, "out of memory");
            break;
        }
    }
    if (!rc && r != SQLITE_DONE)
        rc = dberr(s, e, "listing runs");
    sqlite3_finalize(st);
    if (rc) {
        store_run_rows_free(v, *n);
        *n = 0;
        return rc;
    }
    *rows = v;
    return ICA_OK;
}

void store_item_rows_free(struct store_item_row *rows, size_t n) {
    for (size_t i = 0; rows && i < n; i++) {
        free(rows[i].item_id);
        free(rows[i].data);
    }
    free(rows);
}

int store_items_list(struct store *s, int64_t run_id, struct store_item_row **rows, size_t *n,
                     struct ica_error *e) {
    *rows = NULL;
    *n = 0;
    sqlite3_stmt *st = NULL;
    int rc = prep(s, "SELECT item_id, data, position FROM items WHERE run_id=?1 ORDER BY position",
                  &st, e);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, run_id);
    size_t cap = 0;
    struct store_item_row *v = NULL;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            size_t nc = cap ? 2 * cap : 64;
            struct store_item_row *t = realloc(v, nc * sizeof *t);
            if (!t) {
                rc = ica_seterr(e, ICA_ERR_NOMEM, "out of memory");
                break;
            }
            v = t;
            cap = nc;
        }
        struct store_item_row *x = &v[(*n)++];
        x->item_id = col_dup(st, 0, NULL);
        x->data = col_dup(st, 1, NULL);
        x->position = sqlite3_column_int64(st, 2);
        if (!x->item_id || !x->data) {
            rc = ica_seterr(e, ICA_ERR_NOMEM, "out of memory");
            break;
        }
    }
    if (!rc && r != SQLITE_DONE)
        rc = dberr(s, e, "listing items");
    sqlite3_finalize(st);
    if (rc) {
        store_item_rows_free(v, *n);
        *n = 0;
        return rc;
    }
    *rows = v;
    return ICA_OK;
}
