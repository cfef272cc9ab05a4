/* icalign — store module: the experiment store of a run directory, and model downloads.
 *
 * A run directory holds one SQLite database, RUN_DIR/icalign.db (WAL journal, STRICT tables,
 * foreign keys on). A run is one configuration (model file sha256, demonstration-set hash and
 * text, decoding parameters, backend, benchmark); its key is the sha256 of the configuration
 * text, so a changed configuration is a new run and results are never mixed. Every generation
 * is committed in its own transaction as soon as it exists (kill -9 loses at most the one being
 * computed); a rerun finds completed generations by (run, item, turn) and skips them. Tables
 * for judgments (icalign judge) and search steps. Schema: docs/ANSWER.md, docs/EVALUATION.md.
 *
 * Also here: SHA-256 (FIPS 180-4), a file-hash cache keyed by path + size + mtime (hashing a
 * 7 GB model once, not at every run), and an HTTP(S) downloader with resume and checksum
 * verification used by `icalign pull`. */
#ifndef ICALIGN_STORE_H
#define ICALIGN_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "icalign/common.h"

/* ==== SHA-256 ==== */

struct store_sha256 {
    uint32_t h[8];
    uint64_t n; /* bytes hashed */
    uint8_t buf[64];
    size_t len; /* bytes in buf */
};

ICA_API void store_sha256_init(struct store_sha256 *c);
ICA_API void store_sha256_update(struct store_sha256 *c, const void *data, size_t len);
/* Writes the digest as 64 lowercase hex digits + NUL into hex. */
ICA_API void store_sha256_final_hex(struct store_sha256 *c, char hex[65]);
/* One-shot helper. */
ICA_API void store_sha256_hex(const void *data, size_t len, char hex[65]);
/* Hashes a whole file (streamed). */
ICA_API int store_sha256_file(const char *path, char hex[65], struct ica_error *e) ICA_WUR;

/* ==== Experiment store ==== */

#define STORE_DB_NAME        "icalign.db"
#define STORE_SCHEMA_VERSION 2

struct store;

/* Creates dir (and missing parents) when needed and opens/creates dir/icalign.db. A database
 * of a newer schema version is refused. */
ICA_API int store_open(const char *dir, struct store **out, struct ica_error *e) ICA_WUR;
ICA_API void store_close(struct store *s);

/* sha256 of a file, from the cache table when path (made absolute), size and mtime match,
 * else computed and cached. *cached (may be NULL) tells which. */
ICA_API int store_file_sha256(struct store *s, const char *path, char hex[65], bool *cached,
                              struct ica_error *e) ICA_WUR;

/* What identifies a run. config is the canonical configuration text (the caller builds it with
 * a fixed key order); key = sha256(config). The other fields are recorded for people and later
 * tools (they are parts of config too, stored apart for queries). */
struct store_run_info {
    const char *kind;   /* "answer" (later "judge", "search") */
    const char *bench;  /* benchmark name or file, may be NULL */
    const char *config; /* canonical configuration text (JSON) */
    const char *model_sha256;
    const char *demos_sha256;
    const char *demos_text;
    const char *decoding; /* JSON */
    const char *backend;  /* backend description */
    const char *version;  /* icalign version */
};

/* Finds the run of this configuration or creates it. *created (may be NULL) tells which. When
 * key_hex is non-NULL it receives the run key. */
ICA_API int store_run_open(struct store *s, const struct store_run_info *ri, int64_t *run_id,
                           bool *created, char key_hex[65], struct ica_error *e) ICA_WUR;

/* Records a benchmark item of the run (its JSON data) unless already there. */
ICA_API int store_item_put(struct store *s, int64_t run_id, const char *item_id, int64_t position,
                           const char *data_json, struct ica_error *e) ICA_WUR;

/* One generation of one turn of one item. */
struct store_generation {
    const char *item_id;
    int turn; /* 1-based */
    const char *prompt_sha256;
    const char *raw; /* raw model output (any bytes but NUL) */
    size_t raw_len;
    const char *cleaned; /* post-processed output */
    size_t cleaned_len;
    const char *finish; /* "stop", "length", "cancelled" */
    uint32_t prompt_tokens, completion_tokens, cached_tokens;
    double seconds;    /* wall time of the request */
    int attempts;      /* 1 + retries */
    double created_at; /* unix time; 0 = now */
};

/* Stores g in one transaction (committed before returning). An existing generation of the
 * same (run, item, turn) is replaced (--force) and its judgments deleted with it. */
ICA_API int store_generation_put(struct store *s, int64_t run_id, const struct store_generation *g,
                                 struct ica_error *e) ICA_WUR;

/* A stored generation, strings malloc'd (free with store_gen_row_free). */
struct store_gen_row {
    int64_t id;
    char *prompt_sha256, *raw, *cleaned, *finish;
    size_t raw_len, cleaned_len;
    uint32_t prompt_tokens, completion_tokens, cached_tokens;
    double seconds, created_at;
};
ICA_API void store_gen_row_free(struct store_gen_row *r);

/* Looks up (run, item, turn); *found false when absent (out then zeroed). */
ICA_API int store_generation_get(struct store *s, int64_t run_id, const char *item_id, int turn,
                                 struct store_gen_row *out, bool *found,
                                 struct ica_error *e) ICA_WUR;
/* Number of generations stored for a run. */
ICA_API int store_generation_count(struct store *s, int64_t run_id, int64_t *n,
                                   struct ica_error *e) ICA_WUR;

/* A judgment of one generation (issue 6). */
struct store_judgment {
    int64_t generation_id;
    const char *judge; /* judge model / configuration name; one judgment per (generation, judge) */
    const char *prompt_name;
    const char *prompt;        /* full judge prompt */
    const char *raw;           /* judge output */
    double score;              /* NaN = none */
    double preference;         /* NaN = none */
    const char *logprobs_json; /* may be NULL */
    const char *parsed_json;   /* the parse result as JSON (protocol specific), may be NULL */
    const char *error;         /* non-NULL: the request failed (raw ""); a rerun retries it */
};
/* Stores j in its own statement (autocommit: committed before returning); an existing judgment
 * of (generation, judge) is replaced. */
ICA_API int store_judgment_put(struct store *s, const struct store_judgment *j,
                               struct ica_error *e) ICA_WUR;

/* A stored judgment joined with its generation and item (strings malloc'd). */
struct store_judgment_row {
    int64_t id, generation_id, run_id, position;
    char *item_id, *judge, *prompt_name, *prompt, *raw, *logprobs, *parsed, *error;
    char *item_data; /* the item's JSON record */
    char *cleaned;   /* the judged generation's cleaned output */
    size_t cleaned_len;
    int turn;
    double score, preference; /* NaN when NULL */
    double created_at;
};

/* Looks up the judgment of (generation, judge); *found false when absent (out then zeroed).
 * Only id, generation_id, judge, prompt_name, prompt, raw, score, preference, logprobs, parsed,
 * error and created_at are filled. */
ICA_API int store_judgment_get(struct store *s, int64_t generation_id, const char *judge,
                               struct store_judgment_row *out, bool *found,
                               struct ica_error *e) ICA_WUR;

/* All judgments of a run whose judge equals judge (NULL = every judge), ordered by judge, item
 * position, turn. Free with store_judgment_rows_free. */
ICA_API int store_judgments_list(struct store *s, int64_t run_id, const char *judge,
                                 struct store_judgment_row **rows, size_t *n,
                                 struct ica_error *e) ICA_WUR;
ICA_API void store_judgment_rows_free(struct store_judgment_row *rows, size_t n);
/* Frees the strings of one row and zeroes it. */
ICA_API void store_judgment_row_clear(struct store_judgment_row *r);

/* A run (strings malloc'd). */
struct store_run_row {
    int64_t id;
    char *key, *kind, *bench, *config, *backend;
    double created_at;
};
/* Runs of a kind (NULL = all), oldest first. Free with store_run_rows_free. */
ICA_API int store_runs_list(struct store *s, const char *kind, struct store_run_row **rows,
                            size_t *n, struct ica_error *e) ICA_WUR;
ICA_API void store_run_rows_free(struct store_run_row *rows, size_t n);

/* An item of a run. */
struct store_item_row {
    char *item_id, *data;
    int64_t position;
};
/* Items of a run ordered by position. Free with store_item_rows_free. */
ICA_API int store_items_list(struct store *s, int64_t run_id, struct store_item_row **rows,
                             size_t *n, struct ica_error *e) ICA_WUR;
ICA_API void store_item_rows_free(struct store_item_row *rows, size_t n);

/* ==== Downloads (icalign pull) ==== */

/* Progress: bytes present so far and total (0 when unknown). Return false to abort. */
typedef bool (*store_progress_fn)(void *ud, uint64_t done, uint64_t total);

struct store_download_opts {
    const char *url;
    const char *dest;           /* final path; data goes to dest + ".part" until verified */
    const char *sha256;         /* expected lowercase/uppercase hex, or NULL = not checked */
    int max_attempts;           /* connection drops retried with Range (default 5 when <= 0) */
    long connect_timeout_s;     /* default 30 */
    long low_speed_time_s;      /* abort a transfer below 1 byte/s for this long (default 60) */
    store_progress_fn progress; /* may be NULL */
    void *ud;
};

/* Downloads url to dest, resuming dest.part (HTTP Range) after a dropped connection or from an
 * earlier interrupted download. With sha256 set, a mismatching file is deleted (never left as
 * dest) and ICA_ERR_FORMAT returned naming both hashes. got_hex (may be NULL) receives the
 * sha256 of the file. */
ICA_API int store_download(const struct store_download_opts *o, char got_hex[65],
                           struct ica_error *e) ICA_WUR;

#endif
