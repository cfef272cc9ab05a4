/* icalign answer: answer a whole benchmark with URIAL prompts, resumably, into a run directory. */
#include "cli.h"

#include "icalign/align.h"
#include "icalign/store.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef ICALIGN_VERSION
#define ICALIGN_VERSION "0.1.0"
#endif

static void help(FILE *fp) {
    fprintf(
        fp,
        "usage: icalign answer --bench mt-bench|alpaca-eval|FILE.jsonl\n"
        "                      (-m MODEL.gguf | --base-url URL -m NAME) --out RUN_DIR\n"
        "                      [--demos SPEC] [--preset P] [options]\n\n"
        "Answers every question of a benchmark with the URIAL prompt of the demonstration\n"
        "set. Each generation is stored in RUN_DIR/icalign.db as soon as it exists; rerunning\n"
        "the same command resumes, a changed configuration is a new run. Writes\n"
        "RUN_DIR/model_answer/<model-id>.jsonl (FastChat, MT-Bench and JSONL benches) and\n"
        "RUN_DIR/model_outputs.json (alpaca_eval; single-turn benches).\n"
        "With --instruct it answers as an instruction-tuned model instead: each\n"
        "conversation goes through the model's chat template (--chat-template NAME|FILE\n"
        "to choose one; a server's /v1/chat/completions with --base-url), without\n"
        "demonstrations or URIAL post-processing: the paper's comparison rows.\n\n"
        "  --instruct              instruction-tuned baseline through its chat template\n"
        "  --bench B               mt-bench (turn 1 of every question, then turn 2 with the\n"
        "                          model's own cleaned turn-1 answer), alpaca-eval (the 805\n"
        "                          instructions), or a JSONL file of {\"id\", \"turns\": [..]}\n"
        "                          or {\"instruction\"} lines\n"
        "  --bench-dir DIR         where mt-bench's question.jsonl / alpaca-eval's\n"
        "                          reference_outputs/ are (default: $ICALIGN_SHARED/data/...,\n"
        "                          ../shared/data/...)\n"
        "  --out RUN_DIR           run directory (created)\n"
        "  --demos SPEC            demonstration set (default: default; see icalign prompt)\n"
        "  --preset P              decoding preset: urial (default), urial-moe, gpt4-base\n"
        "  --limit N               only the first N items\n"
        "  --model-id NAME         name in the output files (default: the model file name)\n"
        "  --force                 recompute generations already stored\n"
        "  --max-tokens N          new tokens at most (preset: 2048)\n"
        "  --truncate-output       cap new tokens to what the context leaves (warning)\n"
        "                          instead of failing when prompt + max tokens exceed it\n"
        "  --temp T, --top-p P, --top-k K, --min-p P, --repeat-penalty R,\n"
        "  --frequency-penalty F, --presence-penalty P, --seed S\n"
        "                          override the preset's decoding parameters\n"
        "  --stop STR              stop string (repeatable; replaces the preset's)\n"
        "  -q, --quiet             no progress bar or summary\n"
        "%s"
        "  -h, --help              this text\n",
        cli_backend_opts_help());
}

/* ---- benchmark items ---- */

enum bench_kind { BENCH_MT, BENCH_ALPACA, BENCH_FILE };

struct item {
    char *id;          /* item key in the store */
    json_object *qid;  /* question_id as written in the output (number or string) */
    json_object *data; /* the source record */
    const char **turns;
    size_t n_turns;
    const char *instruction; /* alpaca: instruction; else turns[0] */
    const char *dataset;
};

struct bench {
    enum bench_kind kind;
    char name[64];
    char path[4096];
    char sha[65];
    struct item *items;
    size_t n;
};

static void bench_free(struct bench *b) {
    for (size_t i = 0; i < b->n; i++) {
        free(b->items[i].id);
        free(b->items[i].turns);
        json_object_put(b->items[i].qid);
        json_object_put(b->items[i].data);
    }
    free(b->items);
    b->items = NULL;
    b->n = 0;
}

static char *read_file(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
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
    bool bad = ferror(fp);
    fclose(fp);
    if (bad) {
        free(buf);
        return NULL;
    }
    if (buf) {
        buf[len] = '\0';
        *n = len;
    }
    return buf;
}

static json_object *parse_json(const char *s, size_t n, const char **why) {
    json_tokener *tok = json_tokener_new();
    if (!tok) {
        *why = "out of memory";
        return NULL;
    }
    json_object *o = json_tokener_parse_ex(tok, s, (int)n);
    enum json_tokener_error je = json_tokener_get_error(tok);
    if (o && je == json_tokener_success && json_tokener_get_parse_end(tok) < n) {
        /* trailing bytes after the value (only whitespace allowed) */
        for (size_t k = json_tokener_get_parse_end(tok); k < n; k++)
            if (s[k] != ' ' && s[k] != '\t' && s[k] != '\r' && s[k] != '\n') {
                json_object_put(o);
                json_tokener_free(tok);
                *why = "extra data after the JSON value";
                return NULL;
            }
    }
    if (!o || je != json_tokener_success) {
        *why = je == json_tokener_continue ? "unexpected end of the JSON value"
                                           : json_tokener_error_desc(je);
        json_object_put(o);
        json_tokener_free(tok);
        return NULL;
    }
    json_tokener_free(tok);
    return o;
}

static int add_item(struct bench *b, size_t *cap, struct item it) {
    if (b->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 128;
        struct item *t = realloc(b->items, nc * sizeof *t);
        if (!t)
            return -1;
        b->items = t;
        *cap = nc;
    }
    b->items[b->n++] = it;
    return 0;
}

/* JSONL: {"question_id"|"id", "turns": [...], "category"} or {"instruction"}. */
static int load_jsonl(struct bench *b, const char *path) {
    size_t len = 0;
    char *text = read_file(path, &len);
    if (!text) {
        cli_error("answer: cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    store_sha256_hex(text, len, b->sha);
    size_t cap = 0, line = 0;
    int rc = 0;
    for (char *p = text; p < text + len && rc == 0;) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        char *end = nl ? nl : text + len;
        line++;
        size_t n = (size_t)(end - p);
        char *q = p;
        p = nl ? nl + 1 : text + len;
        bool blank = true;
        for (size_t k = 0; k < n; k++)
            if (q[k] != ' ' && q[k] != '\t' && q[k] != '\r')
                blank = false;
        if (blank)
            continue;
        const char *why = NULL;
        if (n > (size_t)INT32_MAX) {
            cli_error("answer: %s:%zu: line too long", path, line);
            rc = -1;
            break;
        }
        json_object *o = parse_json(q, n, &why);
        if (!o) {
            cli_error("answer: %s:%zu: invalid JSON: %s", path, line, why);
            rc = -1;
            break;
        }
        struct item it = {0};
        it.data = o;
        json_object *v;
        if (!json_object_is_type(o, json_type_object)) {
            cli_error("answer: %s:%zu: expected a JSON object", path, line);
            rc = -1;
        } else if (json_object_object_get_ex(o, "turns", &v)) {
            if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) == 0) {
                cli_error("answer: %s:%zu: \"turns\" must be a non-empty array of strings", path,
                          line);
                rc = -1;
            } else {
                it.n_turns = json_object_array_length(v);
                it.turns = calloc(it.n_turns, sizeof *it.turns);
                for (size_t k = 0; it.turns && k < it.n_turns; k++) {
                    json_object *t = json_object_array_get_idx(v, k);
                    if (!json_object_is_type(t, json_type_string)) {
                        cli_error("answer: %s:%zu: turns[%zu] is not a string", path, line, k);
                        rc = -1;
                        break;
                    }
                    it.turns[k] = json_object_get_string(t);
                }
                if (!it.turns)
                    rc = -1;
            }
        } else if (json_object_object_get_ex(o, "instruction", &v) &&
                   json_object_is_type(v, json_type_string)) {
            it.n_turns = 1;
            it.turns = calloc(1, sizeof *it.turns);
            if (!it.turns)
                rc = -1;
            else
                it.turns[0] = json_object_get_string(v);
        } else {
            cli_error("answer: %s:%zu: needs \"turns\" (array of strings) or \"instruction\" "
                      "(string)",
                      path, line);
            rc = -1;
        }
        if (rc == 0) {
            json_object *idv = NULL;
            if (!json_object_object_get_ex(o, "question_id", &idv))
                json_object_object_get_ex(o, "id", &idv);
            char buf[64];
            if (idv && json_object_is_type(idv, json_type_int)) {
                snprintf(buf, sizeof buf, "%lld", (long long)json_object_get_int64(idv));
                it.id = strdup(buf);
                it.qid = json_object_get(idv);
            } else if (idv && json_object_is_type(idv, json_type_string)) {
                it.id = strdup(json_object_get_string(idv));
                it.qid = json_object_get(idv);
            } else if (idv && !json_object_is_type(idv, json_type_null)) {
                cli_error("answer: %s:%zu: \"question_id\"/\"id\" must be a number or a string",
                          path, line);
                rc = -1;
            } else {
                snprintf(buf, sizeof buf, "%zu", line);
                it.id = strdup(buf);
                it.qid = json_object_new_int64((int64_t)line);
            }
            if (rc == 0 && !it.id)
                rc = -1;
            it.instruction = it.turns ? it.turns[0] : NULL;
            if (json_object_object_get_ex(o, "dataset", &v) &&
                json_object_is_type(v, json_type_string))
                it.dataset = json_object_get_string(v);
            for (size_t k = 0; rc == 0 && k < b->n; k++)
                if (!strcmp(b->items[k].id, it.id)) {
                    cli_error("answer: %s:%zu: duplicate id '%s'", path, line, it.id);
                    rc = -1;
                }
        }
        if (rc == 0 && add_item(b, &cap, it) != 0) {
            cli_error("answer: out of memory");
            rc = -1;
        }
        if (rc != 0) {
            free(it.id);
            free(it.turns);
            json_object_put(it.qid);
            json_object_put(it.data);
        }
    }
    free(text);
    if (rc == 0 && b->n == 0) {
        cli_error("answer: %s: no items", path);
        rc = -1;
    }
    return rc;
}

/* alpaca_eval reference outputs: a JSON array of {"dataset", "instruction", "output", ...}. */
static int load_alpaca(struct bench *b, const char *path) {
    size_t len = 0;
    char *text = read_file(path, &len);
    if (!text) {
        cli_error("answer: cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    store_sha256_hex(text, len, b->sha);
    const char *why = NULL;
    json_object *root = len <= (size_t)INT32_MAX ? parse_json(text, len, &why) : NULL;
    free(text);
    if (!root || !json_object_is_type(root, json_type_array)) {
        cli_error("answer: %s: %s", path, root ? "expected a JSON array" : why ? why : "too large");
        json_object_put(root);
        return -1;
    }
    size_t n = json_object_array_length(root), cap = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        json_object *o = json_object_array_get_idx(root, i), *v;
        if (!json_object_is_type(o, json_type_object) ||
            !json_object_object_get_ex(o, "instruction", &v) ||
            !json_object_is_type(v, json_type_string)) {
            cli_error("answer: %s: record %zu: \"instruction\" missing or not a string", path, i);
            rc = -1;
            break;
        }
        struct item it = {0};
        char buf[32];
        snprintf(buf, sizeof buf, "%zu", i);
        it.id = strdup(buf);
        it.qid = json_object_new_int64((int64_t)i);
        it.data = json_object_get(o);
        it.n_turns = 1;
        it.turns = calloc(1, sizeof *it.turns);
        if (it.turns)
            it.turns[0] = json_object_get_string(v);
        it.instruction = it.turns ? it.turns[0] : NULL;
        if (json_object_object_get_ex(o, "dataset", &v) && json_object_is_type(v, json_type_string))
            it.dataset = json_object_get_string(v);
        if (!it.id || !it.turns || add_item(b, &cap, it) != 0) {
            free(it.id);
            free(it.turns);
            json_object_put(it.qid);
            json_object_put(it.data);
            cli_error("answer: out of memory");
            rc = -1;
        }
    }
    json_object_put(root); /* items hold references to their records */
    return rc;
}

static int load_bench(struct bench *b, const char *name, const char *dir) {
    char buf[4096];
    if (!strcmp(name, "mt-bench") || !strcmp(name, "mt_bench")) {
        b->kind = BENCH_MT;
        snprintf(b->name, sizeof b->name, "mt-bench");
        if (dir) {
            snprintf(buf, sizeof buf, "%s/question.jsonl", dir);
        } else if (!cli_shared_path(buf, sizeof buf, "data/mt_bench/question.jsonl")) {
            cli_error("answer: MT-Bench questions not found; give --bench-dir DIR (the folder "
                      "of question.jsonl) or set ICALIGN_SHARED");
            return -1;
        }
        snprintf(b->path, sizeof b->path, "%s", buf);
        return load_jsonl(b, b->path);
    }
    if (!strcmp(name, "alpaca-eval") || !strcmp(name, "alpaca_eval")) {
        b->kind = BENCH_ALPACA;
        snprintf(b->name, sizeof b->name, "alpaca-eval");
        const char *rel = "reference_outputs/alpaca_eval_gpt4_baseline.json";
        if (dir) {
            struct stat st;
            if (stat(dir, &st) == 0 && S_ISREG(st.st_mode))
                snprintf(buf, sizeof buf, "%s", dir);
            else
                snprintf(buf, sizeof buf, "%s/%s", dir, rel);
        } else if (!cli_shared_path(buf, sizeof buf,
                                    "data/alpaca_eval/reference_outputs/"
                                    "alpaca_eval_gpt4_baseline.json")) {
            cli_error("answer: AlpacaEval reference outputs not found; give --bench-dir DIR (the "
                      "folder of %s) or set ICALIGN_SHARED",
                      rel);
            return -1;
        }
        snprintf(b->path, sizeof b->path, "%s", buf);
        return load_alpaca(b, b->path);
    }
    b->kind = BENCH_FILE;
    const char *base = strrchr(name, '/');
    snprintf(b->name, sizeof b->name, "file:%s", base ? base + 1 : name);
    snprintf(b->path, sizeof b->path, "%s", name);
    return load_jsonl(b, b->path);
}

/* ---- the run ---- */

struct job {
    size_t item;
    char *prompt;                 /* URIAL prompt, or the conversation as JSON (--instruct) */
    struct backend_message *msgs; /* --instruct: the chat messages */
    char prompt_sha[65];
};

struct run {
    struct store *st;
    int64_t run_id;
    struct bench *b;
    int turn;
    struct job *jobs;
    struct cli_progress prog;
    uint64_t done, tokens, computed, failed;
    long kill_after; /* test hook: SIGKILL self after this many stored generations */
    bool store_failed;
    bool instruct; /* answers of an instruct model: whitespace-trimmed, not URIAL-cleaned */
    struct ica_error serr;
};

static const char *finish_name(enum backend_finish f) {
    return f == BACKEND_FINISH_LENGTH      ? "length"
           : f == BACKEND_FINISH_CANCELLED ? "cancelled"
                                           : "stop";
}

static bool on_done(void *ud, size_t i, const struct backend_request *req, struct backend_result *r,
                    const struct ica_error *err) {
    (void)req;
    struct run *R = ud;
    struct job *j = &R->jobs[i];
    const struct item *it = &R->b->items[j->item];
    if (err || !r) {
        if (R->prog.drawn)
            fputc('\n', stderr);
        cli_error("answer: item %s turn %d: %s", it->id, R->turn, err ? err->msg : "failed");
        R->failed++;
        R->done++;
        cli_progress_update(&R->prog, R->done, R->tokens, true);
        return true;
    }
    char *clean = NULL;
    size_t clen = 0;
    struct ica_error e = {0};
    if (R->instruct) {
        /* an instruct model's own answer: only surrounding white space goes */
        const char *t = r->text ? r->text : "";
        size_t a = 0, z = r->text ? r->text_len : 0;
        while (a < z && (t[a] == ' ' || t[a] == '\n' || t[a] == '\t' || t[a] == '\r'))
            a++;
        while (z > a &&
               (t[z - 1] == ' ' || t[z - 1] == '\n' || t[z - 1] == '\t' || t[z - 1] == '\r'))
            z--;
        clean = strndup(t + a, z - a);
        clen = z - a;
        if (!clean) {
            ica_seterr(&e, ICA_ERR_NOMEM, "out of memory");
            R->serr = e;
            R->store_failed = true;
            return false;
        }
    } else if (align_postprocess(r->text ? r->text : "", r->text_len, &clean, &clen, &e) !=
               ICA_OK) {
        R->serr = e;
        R->store_failed = true;
        return false;
    }
    struct store_generation g = {0};
    g.item_id = it->id;
    g.turn = R->turn;
    g.prompt_sha256 = j->prompt_sha;
    g.raw = r->text ? r->text : "";
    g.raw_len = r->text ? r->text_len : 0;
    g.cleaned = clean;
    g.cleaned_len = clen;
    g.finish = finish_name(r->finish);
    g.prompt_tokens = r->prompt_tokens;
    g.completion_tokens = r->completion_tokens;
    g.cached_tokens = r->cached_tokens;
    g.seconds = r->seconds;
    g.attempts = r->attempts;
    int rc = store_generation_put(R->st, R->run_id, &g, &e);
    free(clean);
    if (rc != ICA_OK) {
        R->serr = e;
        R->store_failed = true;
        return false;
    }
    R->computed++;
    R->done++;
    R->tokens += r->completion_tokens;
    cli_progress_update(&R->prog, R->done, R->tokens, false);
    if (R->kill_after > 0 && (long)R->computed >= R->kill_after)
        kill(getpid(), SIGKILL);
    return true;
}

/* Config text: fixed key order (json-c keeps insertion order). */
static json_object *jnum(double d) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.6g", d);
    return json_object_new_double_s(strtod(buf, NULL), buf);
}

static int write_atomic(const char *path, const char *data, size_t len) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        cli_error("answer: cannot write %s: %s", tmp, strerror(errno));
        return -1;
    }
    bool ok = fwrite(data, 1, len, fp) == len;
    ok = (fclose(fp) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        cli_error("answer: cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* FastChat answer_id: 22 characters of [A-Z0-9], derived from the run key and the item so that
 * rewriting the file gives the same ids (FastChat draws them with shortuuid). */
static void answer_id(const char *run_key, const char *item, char out[23]) {
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    struct store_sha256 c;
    char hex[65];
    store_sha256_init(&c);
    store_sha256_update(&c, run_key, strlen(run_key));
    store_sha256_update(&c, "\n", 1);
    store_sha256_update(&c, item, strlen(item));
    store_sha256_final_hex(&c, hex);
    for (int i = 0; i < 22; i++) {
        unsigned v = (unsigned)strtoul((char[]){hex[2 * i], hex[2 * i + 1], 0}, NULL, 16);
        out[i] = al[v % 36];
    }
    out[22] = '\0';
}

enum {
    OPT_BENCH = 3000,
    OPT_BENCH_DIR,
    OPT_OUT,
    OPT_DEMOS,
    OPT_PRESET,
    OPT_LIMIT,
    OPT_MODEL_ID,
    OPT_FORCE,
    OPT_MAXTOK,
    OPT_TRUNC,
    OPT_TEMP,
    OPT_TOPP,
    OPT_TOPK,
    OPT_MINP,
    OPT_REP,
    OPT_FREQ,
    OPT_PRES,
    OPT_SEED,
    OPT_STOP,
    OPT_INSTRUCT
};

struct overrides {
    bool temp, top_p, top_k, min_p, rep, freq, pres, max;
    double v_temp, v_top_p, v_min_p, v_rep, v_freq, v_pres;
    long v_top_k, v_max;
};

static char *dup_basename_noext(const char *path) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    char *s = strdup(b);
    if (!s)
        return NULL;
    size_t n = strlen(s);
    if (n > 5 && !strcmp(s + n - 5, ".gguf"))
        s[n - 5] = '\0';
    return s;
}

static bool valid_model_id(const char *s) {
    if (!*s || !strcmp(s, ".") || !strcmp(s, ".."))
        return false;
    for (; *s; s++)
        if (*s == '/' || (unsigned char)*s < 0x20)
            return false;
    return true;
}

int cmd_answer(int argc, char **argv) {
    struct cli_backend_opts bo;
    cli_backend_opts_init(&bo);
    const char *bench_name = NULL, *bench_dir = NULL, *out_dir = NULL, *spec = "default",
               *preset_name = "urial", *model_id_arg = NULL;
    long limit = -1, seed = -1;
    bool force = false, truncate_out = false, quiet = false, have_seed = false, instruct = false;
    struct overrides ov = {0};
    const char **stops = calloc((size_t)argc + 1, sizeof *stops);
    size_t n_stops = 0;
    if (!stops)
        return 1;
    static const struct option opts[] = {CLI_MODEL_LONGOPTS,
                                         CLI_BACKEND_LONGOPTS,
                                         {"bench", required_argument, 0, OPT_BENCH},
                                         {"bench-dir", required_argument, 0, OPT_BENCH_DIR},
                                         {"out", required_argument, 0, OPT_OUT},
                                         {"demos", required_argument, 0, OPT_DEMOS},
                                         {"preset", required_argument, 0, OPT_PRESET},
                                         {"limit", required_argument, 0, OPT_LIMIT},
                                         {"model-id", required_argument, 0, OPT_MODEL_ID},
                                         {"force", no_argument, 0, OPT_FORCE},
                                         {"max-tokens", required_argument, 0, OPT_MAXTOK},
                                         {"truncate-output", no_argument, 0, OPT_TRUNC},
                                         {"temp", required_argument, 0, OPT_TEMP},
                                         {"top-p", required_argument, 0, OPT_TOPP},
                                         {"top-k", required_argument, 0, OPT_TOPK},
                                         {"min-p", required_argument, 0, OPT_MINP},
                                         {"repeat-penalty", required_argument, 0, OPT_REP},
                                         {"frequency-penalty", required_argument, 0, OPT_FREQ},
                                         {"presence-penalty", required_argument, 0, OPT_PRES},
                                         {"seed", required_argument, 0, OPT_SEED},
                                         {"stop", required_argument, 0, OPT_STOP},
                                         {"instruct", no_argument, 0, OPT_INSTRUCT},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int ch, ret = 2;
    while ((ch = getopt_long(argc, argv, CLI_MODEL_SHORTOPTS "qh", opts, NULL)) != -1) {
        int r = cli_backend_opts_parse(&bo, ch, optarg);
        if (r < 0)
            goto out_args;
        if (r > 0)
            continue;
        bool ok = true;
        switch (ch) {
        case OPT_BENCH:
            bench_name = optarg;
            break;
        case OPT_BENCH_DIR:
            bench_dir = optarg;
            break;
        case OPT_OUT:
            out_dir = optarg;
            break;
        case OPT_DEMOS:
            spec = optarg;
            break;
        case OPT_PRESET:
            preset_name = optarg;
            break;
        case OPT_LIMIT:
            ok = cli_parse_int("--limit", optarg, 0, INT32_MAX, &limit);
            break;
        case OPT_MODEL_ID:
            model_id_arg = optarg;
            break;
        case OPT_FORCE:
            force = true;
            break;
        case OPT_MAXTOK:
            ok = ov.max = cli_parse_int("--max-tokens", optarg, 1, 1 << 24, &ov.v_max);
            break;
        case OPT_TRUNC:
            truncate_out = true;
            break;
        case OPT_TEMP:
            ok = ov.temp = cli_parse_float("--temp", optarg, 0, 100, &ov.v_temp);
            break;
        case OPT_TOPP:
            ok = ov.top_p = cli_parse_float("--top-p", optarg, 0, 1, &ov.v_top_p);
            break;
        case OPT_TOPK:
            ok = ov.top_k = cli_parse_int("--top-k", optarg, 0, 1 << 24, &ov.v_top_k);
            break;
        case OPT_MINP:
            ok = ov.min_p = cli_parse_float("--min-p", optarg, 0, 1, &ov.v_min_p);
            break;
        case OPT_REP:
            ok = ov.rep = cli_parse_float("--repeat-penalty", optarg, 1e-3, 100, &ov.v_rep);
            break;
        case OPT_FREQ:
            ok = ov.freq = cli_parse_float("--frequency-penalty", optarg, -2, 2, &ov.v_freq);
            break;
        case OPT_PRES:
            ok = ov.pres = cli_parse_float("--presence-penalty", optarg, -2, 2, &ov.v_pres);
            break;
        case OPT_SEED:
            ok = have_seed = cli_parse_int("--seed", optarg, 0,
                                           INT64_MAX > LONG_MAX ? LONG_MAX : INT64_MAX, &seed);
            break;
        case OPT_INSTRUCT:
            instruct = true;
            break;
        case OPT_STOP:
            stops[n_stops++] = optarg;
            break;
        case 'q':
            quiet = true;
            break;
        case 'h':
            help(stdout);
            ret = 0;
            goto out_args;
        default:
            help(stderr);
            goto out_args;
        }
        if (!ok)
            goto out_args;
    }
    if (optind < argc) {
        cli_error("answer: unexpected argument '%s'", argv[optind]);
        goto out_args;
    }
    if (!bench_name || !out_dir) {
        cli_error("answer: --bench and --out are required (see icalign answer --help)");
        goto out_args;
    }
    if (model_id_arg && !valid_model_id(model_id_arg)) {
        cli_error("answer: --model-id '%s' must be a file name (no '/')", model_id_arg);
        goto out_args;
    }

    /* Everything that can fail on the user's input is checked before the model loads. */
    struct ica_error err = {0};
    struct align_preset pr;
    if (align_preset_get(preset_name, &pr, &err) != ICA_OK) {
        cli_error("answer: %s", err.msg);
        goto out_args;
    }
    if (n_stops) {
        if (n_stops > ALIGN_MAX_STOP) {
            cli_error("answer: at most %d --stop strings", ALIGN_MAX_STOP);
            goto out_args;
        }
        pr.n_stop = n_stops;
        for (size_t k = 0; k < n_stops; k++)
            pr.stop[k] = stops[k];
    }
    struct backend_sampling smp = backend_default_sampling();
    smp.temperature = ov.temp ? (float)ov.v_temp : pr.temperature;
    smp.top_p = ov.top_p ? (float)ov.v_top_p : pr.top_p;
    smp.top_k = ov.top_k ? (int32_t)ov.v_top_k : pr.top_k;
    smp.min_p = ov.min_p ? (float)ov.v_min_p : pr.min_p;
    smp.repetition_penalty = ov.rep ? (float)ov.v_rep : pr.repetition_penalty;
    smp.frequency_penalty = ov.freq ? (float)ov.v_freq : pr.frequency_penalty;
    smp.presence_penalty = ov.pres ? (float)ov.v_pres : pr.presence_penalty;
    smp.seed = have_seed ? seed : -1;
    const uint32_t max_tokens = ov.max ? (uint32_t)ov.v_max : (uint32_t)pr.max_new_tokens;

    ret = 1;
    struct bench b = {0};
    struct align_set *set = NULL;
    struct backend *be = NULL;
    struct store *st = NULL;
    char *prefix = NULL, *demos_text = NULL, *model_id = NULL;
    json_object *cfg = NULL;
    struct backend_request *reqs = NULL;
    struct run R = {0};
    if (load_bench(&b, bench_name, bench_dir) != 0)
        goto out;
    size_t n_sel = limit >= 0 && (size_t)limit < b.n ? (size_t)limit : b.n;
    if (align_spec_load(spec, &set, &err) != ICA_OK) {
        cli_error("answer: %s", err.msg);
        goto out;
    }
    size_t plen = 0, dlen = 0;
    if (align_render_prefix(set, &prefix, &plen, &err) != ICA_OK ||
        align_set_write(set, &demos_text, &dlen, &err) != ICA_OK) {
        cli_error("answer: %s", err.msg);
        goto out;
    }
    if (store_open(out_dir, &st, &err) != ICA_OK) {
        cli_error("answer: %s", err.msg);
        goto out;
    }
    if ((ret = cli_backend_open(&bo, "answer", &be)) != 0)
        goto out;
    ret = 1;
    const bool local = !bo.n_base_urls;
    char model_sha[65] = "";
    if (local) {
        bool cached = false;
        if (!quiet) {
            struct stat mst;
            if (stat(bo.local.path, &mst) == 0 && mst.st_size > (1 << 28))
                fprintf(stderr, "icalign: answer: hashing %s (once; cached in %s/%s)\n",
                        bo.local.path, out_dir, STORE_DB_NAME);
        }
        if (store_file_sha256(st, bo.local.path, model_sha, &cached, &err) != ICA_OK) {
            cli_error("answer: %s", err.msg);
            goto out;
        }
    }
    model_id = model_id_arg ? strdup(model_id_arg)
               : local      ? dup_basename_noext(bo.local.path)
                            : strdup(bo.remote_model ? bo.remote_model : "model");
    if (!model_id)
        goto out;

    /* The configuration that identifies the run. */
    char demos_sha[65];
    store_sha256_hex(demos_text, dlen, demos_sha);
    cfg = json_object_new_object();
    json_object *dec = json_object_new_object();
    json_object_object_add(cfg, "kind", json_object_new_string("answer"));
    json_object_object_add(cfg, "bench", json_object_new_string(b.name));
    json_object_object_add(cfg, "bench_sha256", json_object_new_string(b.sha));
    if (local)
        json_object_object_add(cfg, "model_sha256", json_object_new_string(model_sha));
    else
        /* the served model's name, not the endpoint: a run resumes against a
         * restarted server, another port or several endpoints */
        json_object_object_add(cfg, "model",
                               json_object_new_string(bo.remote_model ? bo.remote_model
                                                      : bo.local.path ? bo.local.path
                                                                      : "model"));
    if (instruct) {
        /* an instruction-tuned baseline: its own chat template, no demonstrations */
        json_object_object_add(cfg, "mode", json_object_new_string("instruct"));
        json_object_object_add(
            cfg, "chat_template",
            json_object_new_string(bo.chat_template ? bo.chat_template : "model's own"));
    } else {
        json_object_object_add(cfg, "demos_sha256", json_object_new_string(demos_sha));
        json_object_object_add(cfg, "demos_style", json_object_new_int(align_set_style(set)));
    }
    json_object_object_add(dec, "preset", json_object_new_string(pr.name));
    json_object_object_add(dec, "temperature", jnum(smp.temperature));
    json_object_object_add(dec, "top_p", jnum(smp.top_p));
    json_object_object_add(dec, "top_k", json_object_new_int(smp.top_k));
    json_object_object_add(dec, "min_p", jnum(smp.min_p));
    json_object_object_add(dec, "repetition_penalty", jnum(smp.repetition_penalty));
    json_object_object_add(dec, "frequency_penalty", jnum(smp.frequency_penalty));
    json_object_object_add(dec, "presence_penalty", jnum(smp.presence_penalty));
    json_object_object_add(dec, "seed", json_object_new_int64(smp.seed));
    json_object_object_add(dec, "max_tokens", json_object_new_int64(max_tokens));
    json_object_object_add(dec, "truncate_output", json_object_new_boolean(truncate_out));
    json_object *sa = json_object_new_array();
    for (size_t k = 0; k < pr.n_stop; k++)
        json_object_array_add(sa, json_object_new_string(pr.stop[k]));
    json_object_object_add(dec, "stop", sa);
    json_object_object_add(cfg, "decoding", dec);
    const int jflags = JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE;
    const char *cfg_text = json_object_to_json_string_ext(cfg, jflags);
    char *dec_text = strdup(json_object_to_json_string_ext(dec, jflags));
    struct store_run_info ri = {.kind = "answer",
                                .bench = b.name,
                                .config = cfg_text,
                                .model_sha256 = local ? model_sha : NULL,
                                .demos_sha256 = demos_sha,
                                .demos_text = demos_text,
                                .decoding = dec_text,
                                .backend = backend_describe(be),
                                .version = ICALIGN_VERSION};
    bool created = false;
    char run_key[65];
    int rrc = store_run_open(st, &ri, &R.run_id, &created, run_key, &err);
    free(dec_text);
    if (rrc != ICA_OK) {
        cli_error("answer: %s", err.msg);
        goto out;
    }
    for (size_t i = 0; i < n_sel; i++) {
        const char *data = json_object_to_json_string_ext(b.items[i].data, jflags);
        if (store_item_put(st, R.run_id, b.items[i].id, (int64_t)i, data, &err) != ICA_OK) {
            cli_error("answer: %s", err.msg);
            goto out;
        }
    }
    if (!quiet)
        fprintf(stderr, "icalign: answer: %s run %.12s in %s (%zu of %zu items, %s)\n",
                created ? "new" : "resuming", run_key, out_dir, n_sel, b.n, backend_describe(be));

    size_t max_turns = 0;
    for (size_t i = 0; i < n_sel; i++)
        if (b.items[i].n_turns > max_turns)
            max_turns = b.items[i].n_turns;
    R.st = st;
    R.b = &b;
    R.instruct = instruct;
    R.jobs = calloc(n_sel ? n_sel : 1, sizeof *R.jobs);
    reqs = calloc(n_sel ? n_sel : 1, sizeof *reqs);
    const char **msgs = calloc(2 * max_turns + 1, sizeof *msgs);
    char **hist = calloc(2 * max_turns + 1, sizeof *hist); /* owned stored answers */
    if (!R.jobs || !reqs || !msgs || !hist) {
        free(msgs);
        free(hist);
        cli_error("answer: out of memory");
        goto out;
    }
    const char *ka = getenv("ICALIGN_TEST_KILL_AFTER");
    R.kill_after = ka ? strtol(ka, NULL, 10) : 0;
    const uint32_t n_ctx = backend_context_size(be);
    uint64_t skipped = 0;
    bool fatal = false;
    for (size_t turn = 1; turn <= max_turns && !fatal; turn++) {
        size_t nj = 0;
        for (size_t i = 0; i < n_sel && !fatal; i++) {
            struct item *it = &b.items[i];
            if (it->n_turns < turn)
                continue;
            /* History: the questions and this run's stored cleaned answers. */
            bool missing = false;
            for (size_t t = 1; t < turn; t++) {
                struct store_gen_row row;
                bool found = false;
                if (store_generation_get(st, R.run_id, it->id, (int)t, &row, &found, &err) !=
                    ICA_OK) {
                    cli_error("answer: %s", err.msg);
                    fatal = true;
                    break;
                }
                if (!found) {
                    missing = true;
                    break;
                }
                hist[2 * (t - 1) + 1] = row.cleaned;
                row.cleaned = NULL;
                store_gen_row_free(&row);
            }
            for (size_t t = 0; t < turn; t++)
                msgs[2 * t] = it->turns[t];
            for (size_t t = 1; t < turn; t++)
                msgs[2 * (t - 1) + 1] = hist[2 * (t - 1) + 1];
            char *prompt = NULL;
            size_t len = 0;
            struct backend_message *cm = NULL;
            if (!fatal && !missing && instruct) {
                /* the conversation as chat messages; its JSON identifies the prompt */
                cm = calloc(2 * turn - 1, sizeof *cm);
                json_object *conv = json_object_new_array();
                for (size_t k = 0; cm && k < 2 * turn - 1; k++) {
                    cm[k].role = k % 2 ? BACKEND_ASSISTANT : BACKEND_USER;
                    cm[k].content = msgs[k] ? msgs[k] : "";
                    json_object_array_add(conv, json_object_new_string(cm[k].content));
                }
                const char *js = json_object_to_json_string_ext(
                    conv, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
                prompt = cm && js ? strdup(js) : NULL;
                len = prompt ? strlen(prompt) : 0;
                json_object_put(conv);
                if (!prompt) {
                    cli_error("answer: out of memory");
                    fatal = true;
                }
            } else if (!fatal && !missing &&
                       align_render(set, msgs, 2 * turn - 1, &prompt, &len, &err) != ICA_OK) {
                cli_error("answer: item %s turn %zu: %s", it->id, turn, err.msg);
                fatal = true;
            }
            for (size_t t = 1; t < turn; t++) {
                free(hist[2 * (t - 1) + 1]);
                hist[2 * (t - 1) + 1] = NULL;
            }
            if (fatal || missing) {
                free(prompt);
                free(cm);
                continue; /* an earlier turn failed: this one cannot run */
            }
            char sha[65];
            store_sha256_hex(prompt, len, sha);
            if (!force) {
                struct store_gen_row row;
                bool found = false;
                if (store_generation_get(st, R.run_id, it->id, (int)turn, &row, &found, &err) !=
                    ICA_OK) {
                    cli_error("answer: %s", err.msg);
                    free(prompt);
                    fatal = true;
                    break;
                }
                bool same = found && !strcmp(row.prompt_sha256, sha);
                store_gen_row_free(&row);
                if (same) {
                    skipped++;
                    free(prompt);
                    free(cm);
                    continue;
                }
            }
            struct backend_request *q = &reqs[nj];
            memset(q, 0, sizeof *q);
            q->prompt = instruct ? NULL : prompt;
            q->messages = cm;
            q->n_messages = cm ? 2 * turn - 1 : 0;
            q->sampling = smp;
            q->max_tokens = max_tokens;
            /* URIAL's stop strings belong to the URIAL format; an instruct model
             * ends its turn itself (only explicit --stop strings apply) */
            q->stop = instruct && !n_stops ? NULL : pr.stop;
            q->n_stop = instruct && !n_stops ? 0 : pr.n_stop;
            if (n_ctx && !instruct) {
                int64_t np = backend_count_tokens(be, prompt);
                if (np >= 0 && (uint64_t)np + max_tokens > n_ctx) {
                    if (!truncate_out || (uint64_t)np >= n_ctx) {
                        cli_error("answer: item %s turn %zu: prompt of %lld tokens + %u new "
                                  "tokens exceeds the context of %u tokens (use --max-tokens, "
                                  "--truncate-output, a larger -c or fewer demonstrations)",
                                  it->id, turn, (long long)np, max_tokens, n_ctx);
                        free(prompt);
                        free(cm);
                        fatal = true;
                        break;
                    }
                    q->max_tokens = (uint32_t)(n_ctx - (uint64_t)np);
                    fprintf(stderr,
                            "icalign: answer: warning: item %s turn %zu: prompt of %lld tokens "
                            "leaves %u of %u new tokens in the context of %u; output capped\n",
                            it->id, turn, (long long)np, q->max_tokens, max_tokens, n_ctx);
                }
            }
            R.jobs[nj].item = i;
            R.jobs[nj].prompt = prompt;
            R.jobs[nj].msgs = cm;
            memcpy(R.jobs[nj].prompt_sha, sha, 65);
            nj++;
        }
        if (!fatal && nj) {
            char label[32];
            snprintf(label, sizeof label, "turn %zu", turn);
            R.turn = (int)turn;
            R.done = 0;
            R.tokens = 0;
            if (!quiet)
                cli_progress_init(&R.prog, label, nj, false);
            int brc = backend_run(be, reqs, nj, NULL, on_done, &R, &err);
            cli_progress_end(&R.prog);
            if (brc != ICA_OK) {
                cli_error("answer: %s", err.msg);
                fatal = true;
            } else if (R.store_failed) {
                cli_error("answer: %s", R.serr.msg);
                fatal = true;
            }
        }
        for (size_t k = 0; k < nj; k++) {
            free(R.jobs[k].prompt);
            R.jobs[k].prompt = NULL;
            free(R.jobs[k].msgs);
            R.jobs[k].msgs = NULL;
        }
    }
    free(msgs);
    free(hist);
    if (fatal)
        goto out;

    /* Output files from the store. */
    char path[4200];
    snprintf(path, sizeof path, "%s/model_answer", out_dir);
    bool all_single = true;
    for (size_t i = 0; i < n_sel; i++)
        if (b.items[i].n_turns != 1)
            all_single = false;
    const bool want_fastchat = b.kind != BENCH_ALPACA;
    const bool want_alpaca = b.kind == BENCH_ALPACA || (b.kind == BENCH_FILE && all_single);
    size_t incomplete = 0;
    char *fc = NULL;
    size_t fc_len = 0;
    FILE *fcm = want_fastchat ? open_memstream(&fc, &fc_len) : NULL;
    json_object *alp = want_alpaca ? json_object_new_array() : NULL;
    for (size_t i = 0; i < n_sel; i++) {
        struct item *it = &b.items[i];
        json_object *turns = json_object_new_array();
        double tstamp = 0;
        bool ok = true;
        for (size_t t = 1; t <= it->n_turns && ok; t++) {
            struct store_gen_row row;
            bool found = false;
            if (store_generation_get(st, R.run_id, it->id, (int)t, &row, &found, &err) != ICA_OK) {
                cli_error("answer: %s", err.msg);
                json_object_put(turns);
                json_object_put(alp);
                if (fcm)
                    fclose(fcm);
                free(fc);
                goto out;
            }
            if (!found) {
                ok = false;
                break;
            }
            char *s = cli_utf8_sanitize(row.cleaned, row.cleaned_len);
            json_object_array_add(turns, json_object_new_string(s ? s : ""));
            free(s);
            if (row.created_at > tstamp)
                tstamp = row.created_at;
            store_gen_row_free(&row);
        }
        if (!ok) {
            incomplete++;
            json_object_put(turns);
            continue;
        }
        if (fcm) {
            json_object *o = json_object_new_object(), *ch0 = json_object_new_object(),
                        *choices = json_object_new_array();
            char aid[23];
            answer_id(run_key, it->id, aid);
            json_object_object_add(o, "question_id", json_object_get(it->qid));
            json_object_object_add(o, "answer_id", json_object_new_string(aid));
            json_object_object_add(o, "model_id", json_object_new_string(model_id));
            json_object_object_add(ch0, "index", json_object_new_int(0));
            json_object_object_add(ch0, "turns", json_object_get(turns));
            json_object_array_add(choices, ch0);
            json_object_object_add(o, "choices", choices);
            json_object_object_add(o, "tstamp", json_object_new_double(tstamp));
            fprintf(fcm, "%s\n", json_object_to_json_string_ext(o, jflags));
            json_object_put(o);
        }
        if (alp) {
            json_object *o = json_object_new_object();
            if (it->dataset)
                json_object_object_add(o, "dataset", json_object_new_string(it->dataset));
            char *ins = cli_utf8_sanitize(it->instruction, strlen(it->instruction));
            json_object_object_add(o, "instruction", json_object_new_string(ins ? ins : ""));
            free(ins);
            json_object_object_add(o, "output",
                                   json_object_get(json_object_array_get_idx(turns, 0)));
            json_object_object_add(o, "generator", json_object_new_string(model_id));
            json_object_array_add(alp, o);
        }
        json_object_put(turns);
    }
    int wrc = 0;
    if (fcm) {
        fclose(fcm);
        if (mkdir(path, 0777) != 0 && errno != EEXIST) {
            cli_error("answer: cannot create %s: %s", path, strerror(errno));
            wrc = -1;
        } else {
            snprintf(path, sizeof path, "%s/model_answer/%s.jsonl", out_dir, model_id);
            wrc = write_atomic(path, fc ? fc : "", fc_len);
            if (wrc == 0 && !quiet)
                fprintf(stderr, "icalign: answer: wrote %s\n", path);
        }
        free(fc);
    }
    if (alp) {
        snprintf(path, sizeof path, "%s/model_outputs.json", out_dir);
        const char *s = json_object_to_json_string_ext(alp, JSON_C_TO_STRING_PRETTY |
                                                                JSON_C_TO_STRING_NOSLASHESCAPE);
        if (write_atomic(path, s, strlen(s)) != 0)
            wrc = -1;
        else if (!quiet)
            fprintf(stderr, "icalign: answer: wrote %s\n", path);
        json_object_put(alp);
    }
    if (!quiet)
        fprintf(stderr,
                "icalign: answer: %llu generations computed, %llu already stored, %llu failed\n",
                (unsigned long long)R.computed, (unsigned long long)skipped,
                (unsigned long long)R.failed);
    if (incomplete)
        cli_error("answer: %zu items incomplete (failed generations); rerun to retry them",
                  incomplete);
    ret = (wrc || incomplete || R.failed) ? 1 : 0;
out:
    free(R.jobs);
    free(reqs);
    json_object_put(cfg);
    free(model_id);
    free(prefix);
    free(demos_text);
    backend_free(be);
    store_close(st);
    align_set_free(set);
    bench_free(&b);
out_args:
    free(stops);
    return ret;
}
