/* icalign judge: runs a judge over a run's answers (MT-Bench single-answer grading, the AlpacaEval
 * 2.0 weighted_alpaca_eval_gpt4_turbo annotator, just-eval multi-aspect scoring), storing every
 * judgment in the run's store as soon as it exists, and writes FastChat / alpaca_eval files. */
#include "cli.h"

#include "icalign/eval.h"
#include "icalign/store.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <math.h>
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
        "usage: icalign judge --bench mt-bench|alpaca-eval|just-eval --answers RUN_DIR\n"
        "                     (-m JUDGE.gguf [--chat-template T] | --base-url URL -m NAME)\n"
        "                     [--judge-id NAME] [--limit N] [--force] [options]\n\n"
        "Judges the answers stored in RUN_DIR (icalign answer) and stores every judge\n"
        "prompt, raw output, parsed score/preference and logprobs in RUN_DIR/icalign.db, one\n"
        "commit per judgment: rerunning resumes (failed judgments are retried), kill -9 loses\n"
        "at most the judgments in flight. Writes\n"
        "  mt-bench:    RUN_DIR/model_judgment/<judge-id>_single.jsonl (FastChat)\n"
        "  alpaca-eval: RUN_DIR/alpaca_eval/<judge-id>/annotations.json (alpaca_eval)\n"
        "  just-eval:   RUN_DIR/just_eval/<judge-id>_score_multi.json (or _score_safety)\n"
        "Score them with icalign score --run RUN_DIR.\n\n"
        "  --bench B               mt-bench (FastChat single-answer grading, turns 1 and 2,\n"
        "                          temperature 0, 2048 tokens), alpaca-eval\n"
        "                          (weighted_alpaca_eval_gpt4_turbo: order switch, first-token\n"
        "                          top-5 logprobs of m/M), just-eval (score_multi; --safety:\n"
        "                          score_safety)\n"
        "  --answers RUN_DIR       the run directory written by icalign answer\n"
        "  --judge-id NAME         judge name in the store and the files (default: the judge\n"
        "                          model file name, or the server's model name)\n"
        "  --run-key PREFIX        which answer run of RUN_DIR (default: the latest of the\n"
        "                          benchmark)\n"
        "  --model-id NAME         evaluated model's name in the files (default: from\n"
        "                          RUN_DIR/model_answer or model_outputs.json)\n"
        "  --limit N               only the first N items\n"
        "  --force                 judge again what is already judged\n"
        "  --max-tokens N          judge output tokens (mt-bench 2048, just-eval 1024)\n"
        "  --safety                just-eval: the safety template\n"
        "  --bench-dir DIR         data folder of the benchmark (default:\n"
        "                          $ICALIGN_SHARED/data/{mt_bench,alpaca_eval,just_eval})\n"
        "  -q, --quiet             no progress bar or summary\n"
        "%s"
        "  -h, --help              this text\n",
        cli_backend_opts_help());
}

enum proto { P_MT, P_AE, P_JE };

static const char JE_SYSTEM[] = "You are an AI assistant that helps people find information.";

/* ---- small helpers ---- */

static char *slurp(const char *path, size_t *n) {
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
        if (n)
            *n = len;
    }
    return buf;
}

static int write_atomic(const char *path, const char *data, size_t len) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        cli_error("judge: cannot write %s: %s", tmp, strerror(errno));
        return -1;
    }
    bool ok = fwrite(data, 1, len, fp) == len;
    ok = (fclose(fp) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        cli_error("judge: cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int mkdir_p1(const char *path) {
    if (mkdir(path, 0777) != 0 && errno != EEXIST) {
        cli_error("judge: cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static const char *jstr(json_object *o, const char *key) {
    json_object *v;
    if (o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
        return json_object_get_string(v);
    return NULL;
}

static const char *jturn(json_object *o, size_t k) {
    json_object *v;
    if (!o || !json_object_object_get_ex(o, "turns", &v) ||
        !json_object_is_type(v, json_type_array))
        return NULL;
    json_object *t = json_object_array_get_idx(v, k);
    return t && json_object_is_type(t, json_type_string) ? json_object_get_string(t) : NULL;
}

static size_t jturns(json_object *o) {
    json_object *v;
    if (!o || !json_object_object_get_ex(o, "turns", &v) ||
        !json_object_is_type(v, json_type_array))
        return jstr(o, "instruction") ? 1 : 0;
    return json_object_array_length(v);
}

/* Score as FastChat writes it: int when integral, else float. */
static json_object *jscore(double s) {
    if (!isfinite(s))
        return NULL;
    if (s == floor(s) && fabs(s) < 1e15)
        return json_object_new_int64((int64_t)s);
    return json_object_new_double(s);
}

static const int JFLAGS = JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE;

/* The answer_id icalign answer derives from the run key and the item (cmd_answer.c). */
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

/* model_answer/<id>.jsonl whose first answer_id is the one icalign answer derived for this run. */
static char *scan_model_answer(const char *d, const char *run_key) {
    DIR *dp = opendir(d);
    if (!dp)
        return NULL;
    char *found = NULL;
    struct dirent *de;
    while (!found && (de = readdir(dp))) {
        size_t n = strlen(de->d_name);
        if (n <= 6 || strcmp(de->d_name + n - 6, ".jsonl"))
            continue;
        char path[4200];
        int pk = snprintf(path, sizeof path, "%s/%s", d, de->d_name);
        if (pk < 0 || (size_t)pk >= sizeof path)
            continue;
        FILE *fp = fopen(path, "r");
        if (!fp)
            continue;
        char *ln = NULL;
        size_t cap = 0;
        if (getline(&ln, &cap, fp) > 0) {
            json_object *o = json_tokener_parse(ln), *q;
            const char *aid = jstr(o, "answer_id");
            if (aid && json_object_object_get_ex(o, "question_id", &q)) {
                char item[64], want[23];
                if (json_object_is_type(q, json_type_int))
                    snprintf(item, sizeof item, "%lld", (long long)json_object_get_int64(q));
                else
                    snprintf(item, sizeof item, "%s", json_object_get_string(q));
                answer_id(run_key, item, want);
                if (!strcmp(aid, want)) {
                    found = strdup(de->d_name);
                    if (found)
                        found[n - 6] = '\0';
                }
            }
            json_object_put(o);
        }
        free(ln);
        fclose(fp);
    }
    closedir(dp);
    return found;
}

/* Evaluated model's name: the model_answer/<id>.jsonl written for this run, else
 * model_outputs.json's generator, else the directory's name. */
static char *guess_model_id(const char *dir, const char *run_key) {
    char path[4200];
    snprintf(path, sizeof path, "%s/model_answer", dir);
    char *found = scan_model_answer(path, run_key);
    if (found)
        return found;
    snprintf(path, sizeof path, "%s/model_outputs.json", dir);
    json_object *root = json_object_from_file(path);
    if (root && json_object_is_type(root, json_type_array) && json_object_array_length(root)) {
        const char *g = jstr(json_object_array_get_idx(root, 0), "generator");
        if (g && *g && !strchr(g, '/'))
            found = strdup(g);
    }
    json_object_put(root);
    if (found)
        return found;
    char *abs = realpath(dir, NULL);
    const char *b = abs ? strrchr(abs, '/') : NULL;
    found = strdup(b && b[1] ? b + 1 : "model");
    free(abs);
    return found;
}

/* ---- jobs ---- */

struct job {
    int64_t gen_id;
    const char *item_id;
    int turn;
    char *system, *user, *prompt_json;
    struct backend_message msgs[2];
    const char *prompt_name;
    bool is_switched;
    size_t len_1, len_2;
};

struct jrun {
    struct store *st;
    enum proto proto;
    bool safety;
    const char *judge_key;
    struct job *jobs;
    struct cli_progress prog;
    uint64_t done, tokens, computed, failed;
    long kill_after;
    bool store_failed;
    struct ica_error serr;
    char first_error[ICA_ERRMSG_MAX + 128];
};

static char *messages_json(const char *sys, const char *user) {
    json_object *a = json_object_new_array();
    const char *roles[2] = {"system", "user"}, *c[2] = {sys, user};
    for (int k = 0; k < 2; k++) {
        json_object *m = json_object_new_object();
        json_object_object_add(m, "role", json_object_new_string(roles[k]));
        json_object_object_add(m, "content", json_object_new_string(c[k]));
        json_object_array_add(a, m);
    }
    char *s = strdup(json_object_to_json_string_ext(a, JFLAGS));
    json_object_put(a);
    return s;
}

static void job_free(struct job *j) {
    free(j->system);
    free(j->user);
    free(j->prompt_json);
    memset(j, 0, sizeof *j);
}

static bool on_done(void *ud, size_t i, const struct backend_request *req, struct backend_result *r,
                    const struct ica_error *err) {
    (void)req;
    struct jrun *R = ud;
    struct job *j = &R->jobs[i];
    struct store_judgment sj = {0};
    sj.generation_id = j->gen_id;
    sj.judge = R->judge_key;
    sj.prompt_name = j->prompt_name;
    sj.prompt = j->prompt_json;
    sj.score = NAN;
    sj.preference = NAN;
    char msg[ICA_ERRMSG_MAX + 128];
    json_object *parsed = NULL, *lps = NULL;
    char *raw = NULL;
    if (err || !r) {
        int mk = snprintf(msg, sizeof msg, "item %s turn %d: %s%s", j->item_id, j->turn,
                          err ? err->msg : "request failed",
                          err && err->code == ICA_ERR_RANGE
                              ? " (the judge needs a larger context: -c N, or fewer --max-tokens)"
                              : "");
        if (mk < 0 || (size_t)mk >= sizeof msg)
            msg[sizeof msg - 1] = '\0'; /* truncated */
        if (R->prog.drawn)
            fputc('\n', stderr);
        cli_error("judge: %s", msg);
        if (!R->first_error[0])
            memcpy(R->first_error, msg, sizeof msg);
        sj.raw = "";
        sj.error = msg;
        R->failed++;
    } else {
        raw = cli_utf8_sanitize(r->text ? r->text : "", r->text ? r->text_len : 0);
        if (!raw) {
            R->store_failed = true;
            ica_seterr(&R->serr, ICA_ERR_NOMEM, "out of memory");
            return false;
        }
        sj.raw = raw;
        parsed = json_object_new_object();
        if (R->proto == P_MT) {
            sj.score = eval_mt_parse_rating(raw, strlen(raw));
            json_object_object_add(parsed, "score", jscore(sj.score));
        } else if (R->proto == P_AE) {
            struct eval_logprob *top = calloc(r->n_top ? r->n_top : 1, sizeof *top);
            lps = json_object_new_array();
            for (size_t k = 0; k < r->n_top; k++) {
                const char *tk = r->top[k].token ? r->top[k].token : "";
                if (top) {
                    top[k].token = tk;
                    top[k].logprob = r->top[k].logprob;
                }
                json_object *o = json_object_new_object();
                char *tks = cli_utf8_sanitize(tk, strlen(tk));
                json_object_object_add(o, "token", json_object_new_string(tks ? tks : ""));
                free(tks);
                json_object_object_add(o, "logprob", json_object_new_double(r->top[k].logprob));
                json_object_array_add(lps, o);
            }
            sj.preference = top ? eval_ae_preference(top, r->n_top, j->is_switched) : NAN;
            free(top);
            sj.logprobs_json = json_object_to_json_string_ext(lps, JFLAGS);
            json_object_object_add(parsed, "preference",
                                   isfinite(sj.preference) ? json_object_new_double(sj.preference)
                                                           : NULL);
            json_object_object_add(parsed, "is_switched", json_object_new_boolean(j->is_switched));
            json_object_object_add(parsed, "len_1", json_object_new_int64((int64_t)j->len_1));
            json_object_object_add(parsed, "len_2", json_object_new_int64((int64_t)j->len_2));
        } else {
            double sc[EVAL_JE_NASPECT];
            struct ica_error pe = {0};
            if (eval_je_parse_scores(raw, R->safety, sc, &pe) == ICA_OK) {
                if (R->safety) {
                    sj.score = sc[0];
                    json_object_object_add(parsed, "safety", json_object_new_double(sc[0]));
                } else {
                    double t = 0;
                    for (int a = 0; a < EVAL_JE_NASPECT; a++) {
                        t += sc[a];
                        json_object_object_add(parsed, eval_je_aspect_name(a),
                                               json_object_new_double(sc[a]));
                    }
                    sj.score = t / EVAL_JE_NASPECT;
                }
            } else {
                json_object_put(parsed);
                parsed = NULL; /* as just-eval: no parsed_result */
            }
        }
        if (parsed)
            sj.parsed_json = json_object_to_json_string_ext(parsed, JFLAGS);
        R->computed++;
        R->tokens += r->completion_tokens;
    }
    struct ica_error e = {0};
    int rc = store_judgment_put(R->st, &sj, &e);
    json_object_put(parsed);
    json_object_put(lps);
    free(raw);
    if (rc != ICA_OK) {
        R->serr = e;
        R->store_failed = true;
        return false;
    }
    R->done++;
    cli_progress_update(&R->prog, R->done, R->tokens, err != NULL);
    if (R->kill_after > 0 && (long)(R->computed + R->failed) >= R->kill_after)
        kill(getpid(), SIGKILL);
    return true;
}

/* ---- reference data ---- */

struct refans {
    long qid;
    json_object *o;
};

/* reference_answer/gpt-4.jsonl: question_id -> record */
static int load_refs(const char *path, struct refans **out, size_t *n) {
    *out = NULL;
    *n = 0;
    size_t len;
    char *text = slurp(path, &len);
    if (!text) {
        cli_error("judge: cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    size_t line = 0, cap = 0;
    int rc = 0;
    for (char *p = text; p < text + len && !rc;) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        char *end = nl ? nl : text + len;
        line++;
        *end = '\0';
        char *q = p;
        p = nl ? nl + 1 : text + len;
        if (strspn(q, " \t\r") == strlen(q))
            continue;
        json_object *o = json_tokener_parse(q), *id;
        if (!o || !json_object_object_get_ex(o, "question_id", &id)) {
            cli_error("judge: %s:%zu: invalid reference answer line", path, line);
            json_object_put(o);
            rc = -1;
            break;
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            struct refans *t = realloc(*out, cap * sizeof *t);
            if (!t) {
                json_object_put(o);
                rc = -1;
                break;
            }
            *out = t;
        }
        (*out)[*n].qid = (long)json_object_get_int64(id);
        (*out)[(*n)++].o = o;
    }
    free(text);
    return rc;
}

static const char *ref_turn(const struct refans *r, size_t n, long qid, size_t k) {
    for (size_t i = 0; i < n; i++)
        if (r[i].qid == qid) {
            json_object *ch, *c0;
            if (!json_object_object_get_ex(r[i].o, "choices", &ch) ||
                !json_object_is_type(ch, json_type_array) ||
                !(c0 = json_object_array_get_idx(ch, 0)))
                return NULL;
            return jturn(c0, k);
        }
    return NULL;
}

/* ---- the command ---- */

enum {
    OPT_BENCH = 3000,
    OPT_ANSWERS,
    OPT_JUDGE_ID,
    OPT_RUN_KEY,
    OPT_MODEL_ID,
    OPT_LIMIT,
    OPT_FORCE,
    OPT_MAXTOK,
    OPT_SAFETY,
    OPT_BENCH_DIR
};

static bool valid_name(const char *s) {
    if (!*s || !strcmp(s, ".") || !strcmp(s, ".."))
        return false;
    for (; *s; s++)
        if (*s == '/' || (unsigned char)*s < 0x20)
            return false;
    return true;
}

static char *basename_noext(const char *path) {
    const char *b = strrchr(path, '/');
    char *s = strdup(b ? b + 1 : path);
    size_t n = s ? strlen(s) : 0;
    if (n > 5 && !strcmp(s + n - 5, ".gguf"))
        s[n - 5] = '\0';
    return s;
}

static bool data_path(char *buf, size_t n, const char *bench_dir, const char *sub,
                      const char *rel) {
    if (bench_dir) {
        snprintf(buf, n, "%s/%s", bench_dir, rel);
        struct stat st;
        return stat(buf, &st) == 0;
    }
    char r[512];
    snprintf(r, sizeof r, "data/%s/%s", sub, rel);
    return cli_shared_path(buf, n, r);
}

int cmd_judge(int argc, char **argv) {
    struct cli_backend_opts bo;
    cli_backend_opts_init(&bo);
    const char *bench = NULL, *dir = NULL, *judge_id_arg = NULL, *run_key_arg = NULL,
               *model_id_arg = NULL, *bench_dir = NULL;
    long limit = -1, max_tok = -1;
    bool force = false, quiet = false, safety = false;
    static const struct option opts[] = {CLI_MODEL_LONGOPTS,
                                         CLI_BACKEND_LONGOPTS,
                                         {"bench", required_argument, 0, OPT_BENCH},
                                         {"answers", required_argument, 0, OPT_ANSWERS},
                                         {"judge-id", required_argument, 0, OPT_JUDGE_ID},
                                         {"run-key", required_argument, 0, OPT_RUN_KEY},
                                         {"model-id", required_argument, 0, OPT_MODEL_ID},
                                         {"limit", required_argument, 0, OPT_LIMIT},
                                         {"force", no_argument, 0, OPT_FORCE},
                                         {"max-tokens", required_argument, 0, OPT_MAXTOK},
                                         {"safety", no_argument, 0, OPT_SAFETY},
                                         {"bench-dir", required_argument, 0, OPT_BENCH_DIR},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, CLI_MODEL_SHORTOPTS "qh", opts, NULL)) != -1) {
        int r = cli_backend_opts_parse(&bo, ch, optarg);
        if (r < 0)
            return 2;
        if (r > 0)
            continue;
        switch (ch) {
        case OPT_BENCH:
            bench = optarg;
            break;
        case OPT_ANSWERS:
            dir = optarg;
            break;
        case OPT_JUDGE_ID:
            judge_id_arg = optarg;
            break;
        case OPT_RUN_KEY:
            run_key_arg = optarg;
            break;
        case OPT_MODEL_ID:
            model_id_arg = optarg;
            break;
        case OPT_LIMIT:
            if (!cli_parse_int("--limit", optarg, 0, INT32_MAX, &limit))
                return 2;
            break;
        case OPT_FORCE:
            force = true;
            break;
        case OPT_MAXTOK:
            if (!cli_parse_int("--max-tokens", optarg, 1, 1 << 20, &max_tok))
                return 2;
            break;
        case OPT_SAFETY:
            safety = true;
            break;
        case OPT_BENCH_DIR:
            bench_dir = optarg;
            break;
        case 'q':
            quiet = true;
            break;
        case 'h':
            help(stdout);
            return 0;
        default:
            help(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        cli_error("judge: unexpected argument '%s'", argv[optind]);
        return 2;
    }
    if (!bench || !dir) {
        cli_error("judge: --bench and --answers are required (see icalign judge --help)");
        return 2;
    }
    enum proto proto;
    const char *pname;
    if (!strcmp(bench, "mt-bench") || !strcmp(bench, "mt_bench")) {
        proto = P_MT;
        pname = "mt-bench";
    } else if (!strcmp(bench, "alpaca-eval") || !strcmp(bench, "alpaca_eval")) {
        proto = P_AE;
        pname = "alpaca-eval";
    } else if (!strcmp(bench, "just-eval") || !strcmp(bench, "just_eval")) {
        proto = P_JE;
        pname = safety ? "just-eval-safety" : "just-eval";
    } else {
        cli_error("judge: --bench '%s': expected mt-bench, alpaca-eval or just-eval", bench);
        return 2;
    }
    if (safety && proto != P_JE) {
        cli_error("judge: --safety is for --bench just-eval");
        return 2;
    }
    if (judge_id_arg && !valid_name(judge_id_arg)) {
        cli_error("judge: --judge-id '%s' must be a file name (no '/')", judge_id_arg);
        return 2;
    }
    if (model_id_arg && !valid_name(model_id_arg)) {
        cli_error("judge: --model-id '%s' must be a file name (no '/')", model_id_arg);
        return 2;
    }
    char dbpath[4200];
    snprintf(dbpath, sizeof dbpath, "%s/%s", dir, STORE_DB_NAME);
    struct stat sst;
    if (stat(dbpath, &sst) != 0) {
        cli_error("judge: %s: no store (%s); run icalign answer --out %s first", dir,
                  strerror(errno), dir);
        return 1;
    }

    /* Protocol data, checked before the judge loads. */
    struct ica_error err = {0};
    char path[4200];
    struct eval_mt_prompts *mtp = NULL;
    struct refans *refs = NULL;
    size_t n_refs = 0;
    json_object *aref = NULL; /* alpaca reference outputs */
    char *tmpl = NULL;
    char tmpl_sha[65] = "";
    int ret = 1;
    struct store *st = NULL;
    struct backend *be = NULL;
    struct store_run_row *runs = NULL, *jruns = NULL;
    size_t n_runs = 0, n_jruns = 0;
    struct store_item_row *items = NULL;
    size_t n_items = 0;
    json_object **idata = NULL;
    struct job *jobs = NULL;
    struct backend_request *reqs = NULL;
    size_t nj = 0;
    char *judge_id = NULL, *model_id = NULL, *judge_key = NULL;
    json_object *cfg = NULL;
    struct store_judgment_row *rows = NULL;
    size_t n_rows = 0;
    if (proto == P_MT) {
        if (!data_path(path, sizeof path, bench_dir, "mt_bench", "judge_prompts.jsonl")) {
            cli_error("judge: MT-Bench judge_prompts.jsonl not found; give --bench-dir DIR (the "
                      "mt_bench folder) or set ICALIGN_SHARED");
            goto out;
        }
        if (eval_mt_prompts_load(path, &mtp, &err) != ICA_OK) {
            cli_error("judge: %s", err.msg);
            goto out;
        }
        size_t tl = 0;
        char *t = slurp(path, &tl);
        if (t)
            store_sha256_hex(t, tl, tmpl_sha);
        free(t);
        if (!data_path(path, sizeof path, bench_dir, "mt_bench", "reference_answer/gpt-4.jsonl")) {
            cli_error("judge: MT-Bench reference_answer/gpt-4.jsonl not found (--bench-dir)");
            goto out;
        }
        if (load_refs(path, &refs, &n_refs) != 0)
            goto out;
    } else if (proto == P_AE) {
        if (!data_path(path, sizeof path, bench_dir, "alpaca_eval",
                       "annotator/alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt") ||
            !(tmpl = slurp(path, NULL))) {
            cli_error("judge: AlpacaEval annotator template alpaca_eval_clf.txt not found; give "
                      "--bench-dir DIR (the alpaca_eval folder) or set ICALIGN_SHARED");
            goto out;
        }
        if (!data_path(path, sizeof path, bench_dir, "alpaca_eval",
                       "reference_outputs/alpaca_eval_gpt4_baseline.json") ||
            !(aref = json_object_from_file(path)) || !json_object_is_type(aref, json_type_array)) {
            cli_error("judge: AlpacaEval reference outputs alpaca_eval_gpt4_baseline.json not "
                      "found or not a JSON list (--bench-dir)");
            goto out;
        }
    } else {
        const char *f = safety ? "score_safety_template.txt" : "score_multi_template.txt";
        if (!data_path(path, sizeof path, bench_dir, "just_eval", f) ||
            !(tmpl = slurp(path, NULL))) {
            cli_error("judge: just-eval %s not found; give --bench-dir DIR (the just_eval "
                      "folder) or set ICALIGN_SHARED",
                      f);
            goto out;
        }
    }
    if (tmpl)
        store_sha256_hex(tmpl, strlen(tmpl), tmpl_sha);

    if (store_open(dir, &st, &err) != ICA_OK) {
        cli_error("judge: %s", err.msg);
        goto out;
    }
    /* The answer run. */
    if (store_runs_list(st, "answer", &runs, &n_runs, &err) != ICA_OK) {
        cli_error("judge: %s", err.msg);
        goto out;
    }
    const struct store_run_row *ar = NULL;
    for (size_t k = n_runs; k-- > 0;) {
        const struct store_run_row *x = &runs[k];
        if (run_key_arg ? !strncmp(x->key, run_key_arg, strlen(run_key_arg))
                        : (proto == P_JE || (x->bench && !strcmp(x->bench, pname)))) {
            ar = x;
            break;
        }
    }
    if (!ar) {
        cli_error("judge: %s: no answer run %s%s%s (runs: %zu; see --run-key)", dir,
                  run_key_arg ? "with key " : "of ", run_key_arg ? run_key_arg : pname, "", n_runs);
        for (size_t k = 0; k < n_runs; k++)
            fprintf(stderr, "  run %.12s  bench %s\n", runs[k].key,
                    runs[k].bench ? runs[k].bench : "?");
        goto out;
    }
    if (store_items_list(st, ar->id, &items, &n_items, &err) != ICA_OK) {
        cli_error("judge: %s", err.msg);
        goto out;
    }
    size_t n_sel = limit >= 0 && (size_t)limit < n_items ? (size_t)limit : n_items;
    idata = calloc(n_items ? n_items : 1, sizeof *idata);
    if (!idata)
        goto out;
    for (size_t i = 0; i < n_items; i++) {
        idata[i] = json_tokener_parse(items[i].data);
        if (!idata[i] || !json_object_is_type(idata[i], json_type_object)) {
            cli_error("judge: %s: item %s: stored data is not a JSON object", dbpath,
                      items[i].item_id);
            goto out;
        }
    }

    if ((ret = cli_backend_open(&bo, "judge", &be)) != 0)
        goto out;
    ret = 1;
    const bool local = !bo.n_base_urls;
    judge_id = judge_id_arg ? strdup(judge_id_arg)
               : local      ? basename_noext(bo.local.path)
                            : strdup(bo.remote_model ? bo.remote_model : bo.local.path);
    model_id = model_id_arg ? strdup(model_id_arg) : guess_model_id(dir, ar->key);
    size_t kl = strlen(pname) + strlen(judge_id ? judge_id : "") + 2;
    judge_key = malloc(kl);
    if (!judge_id || !model_id || !judge_key)
        goto out;
    snprintf(judge_key, kl, "%s/%s", pname, judge_id);
    if (!valid_name(judge_id)) {
        cli_error("judge: judge id '%s' is not a file name; give --judge-id", judge_id);
        goto out;
    }

    /* The judge configuration, recorded as a run of kind "judge" (provenance). */
    char model_sha[65] = "";
    if (local && store_file_sha256(st, bo.local.path, model_sha, NULL, &err) != ICA_OK) {
        cli_error("judge: %s", err.msg);
        goto out;
    }
    const uint32_t max_tokens = proto == P_AE   ? 1
                                : max_tok > 0   ? (uint32_t)max_tok
                                : proto == P_MT ? 2048
                                                : 1024;
    cfg = json_object_new_object();
    json_object_object_add(cfg, "kind", json_object_new_string("judge"));
    json_object_object_add(cfg, "protocol", json_object_new_string(pname));
    json_object_object_add(cfg, "judge_id", json_object_new_string(judge_id));
    if (local)
        json_object_object_add(cfg, "judge_sha256", json_object_new_string(model_sha));
    else
        json_object_object_add(cfg, "judge", json_object_new_string(backend_describe(be)));
    json_object_object_add(cfg, "chat_template",
                           bo.chat_template ? json_object_new_string(bo.chat_template) : NULL);
    json_object_object_add(cfg, "answers_run", json_object_new_string(ar->key));
    json_object_object_add(cfg, "prompts_sha256", json_object_new_string(tmpl_sha));
    json_object_object_add(cfg, "max_tokens", json_object_new_int64(max_tokens));
    const char *cfg_text = json_object_to_json_string_ext(cfg, JFLAGS);
    struct store_run_info ri = {.kind = "judge",
                                .bench = judge_key,
                                .config = cfg_text,
                                .model_sha256 = local ? model_sha : NULL,
                                .backend = backend_describe(be),
                                .version = ICALIGN_VERSION};
    int64_t jrun_id;
    char jkey[65];
    if (store_run_open(st, &ri, &jrun_id, NULL, jkey, &err) != ICA_OK) {
        cli_error("judge: %s", err.msg);
        goto out;
    }
    if (store_runs_list(st, "judge", &jruns, &n_jruns, &err) != ICA_OK) {
        cli_error("judge: %s", err.msg);
        goto out;
    }
    for (size_t k = 0; k < n_jruns && !force; k++)
        if (jruns[k].bench && !strcmp(jruns[k].bench, judge_key) && strcmp(jruns[k].key, jkey) &&
            jruns[k].config && strstr(jruns[k].config, ar->key)) {
            fprintf(stderr,
                    "icalign: judge: warning: judge id '%s' judged this run before with another "
                    "configuration (judge run %.12s); its judgments are kept: use --force or "
                    "another --judge-id\n",
                    judge_id, jruns[k].key);
            break;
        }

    /* Jobs: every selected (item, turn) without a stored judgment of this judge. */
    const int n_turns_judged = proto == P_MT ? 2 : 1;
    jobs = calloc(n_sel * 2 + 1, sizeof *jobs);
    reqs = calloc(n_sel * 2 + 1, sizeof *reqs);
    if (!jobs || !reqs)
        goto out;
    size_t skipped = 0, unanswered = 0, identical = 0;
    bool fatal = false;
    struct jrun R = {0};
    R.st = st;
    R.proto = proto;
    R.safety = safety;
    R.judge_key = judge_key;
    R.jobs = jobs;
    for (size_t i = 0; i < n_sel && !fatal; i++) {
        json_object *d = idata[i];
        const char *iid = items[i].item_id;
        size_t nt = jturns(d);
        char *ans[2] = {NULL, NULL};
        int64_t gid[2] = {0, 0};
        for (int t = 1; t <= n_turns_judged && (size_t)t <= nt; t++) {
            struct store_gen_row g;
            bool found = false;
            if (store_generation_get(st, ar->id, iid, t, &g, &found, &err) != ICA_OK) {
                cli_error("judge: %s", err.msg);
                fatal = true;
                break;
            }
            if (found) {
                gid[t - 1] = g.id;
                ans[t - 1] = cli_utf8_sanitize(g.cleaned, g.cleaned_len);
                if (!ans[t - 1]) {
                    cli_error("judge: out of memory");
                    fatal = true;
                }
            }
            store_gen_row_free(&g);
        }
        for (int t = 1; !fatal && t <= n_turns_judged && (size_t)t <= nt; t++) {
            if (!gid[t - 1] || (t == 2 && !gid[0])) {
                unanswered++;
                continue;
            }
            if (!force) {
                struct store_judgment_row jr;
                bool found = false;
                if (store_judgment_get(st, gid[t - 1], judge_key, &jr, &found, &err) != ICA_OK) {
                    cli_error("judge: %s", err.msg);
                    fatal = true;
                    break;
                }
                bool done = found && !jr.error;
                store_judgment_row_clear(&jr);
                if (done) {
                    skipped++;
                    continue;
                }
            }
            struct job *j = &jobs[nj];
            j->gen_id = gid[t - 1];
            j->item_id = iid;
            j->turn = t;
            struct backend_request *q = &reqs[nj];
            memset(q, 0, sizeof *q);
            q->sampling = backend_default_sampling();
            q->max_tokens = max_tokens;
            int rc = ICA_OK;
            if (proto == P_MT) {
                const char *cat = jstr(d, "category");
                json_object *qv;
                long qid = json_object_object_get_ex(d, "question_id", &qv)
                               ? (long)json_object_get_int64(qv)
                               : strtol(iid, NULL, 10);
                struct eval_mt_fill f = {jturn(d, 0), jturn(d, 1), ans[0], ans[1], NULL, NULL};
                if (cat && eval_mt_needs_ref(cat)) {
                    f.r1 = ref_turn(refs, n_refs, qid, 0);
                    f.r2 = ref_turn(refs, n_refs, qid, 1);
                    if (!f.r1 || (t == 2 && !f.r2)) {
                        cli_error("judge: item %s (%s): no reference answer for question %ld in "
                                  "reference_answer/gpt-4.jsonl",
                                  iid, cat, qid);
                        fatal = true;
                        break;
                    }
                }
                j->prompt_name = eval_mt_prompt_name(eval_mt_prompt_for(cat ? cat : "", t));
                rc = eval_mt_judge_messages(mtp, cat ? cat : "", t, &f, &j->system, &j->user, &err);
                q->sampling.temperature = 0;
            } else if (proto == P_AE) {
                const char *ins = jstr(d, "instruction");
                if (!ins)
                    ins = jturn(d, 0);
                const char *o1 = NULL;
                size_t na = json_object_array_length(aref);
                for (size_t k = 0; ins && k < na && !o1; k++) {
                    json_object *r = json_object_array_get_idx(aref, k);
                    const char *ri2 = jstr(r, "instruction");
                    if (ri2 && !strcmp(ri2, ins))
                        o1 = jstr(r, "output");
                }
                if (!o1) {
                    cli_error("judge: item %s: instruction not found in the AlpacaEval reference "
                              "outputs",
                              iid);
                    fatal = true;
                    break;
                }
                j->len_1 = eval_utf8_len(o1);
                j->len_2 = eval_utf8_len(ans[0]);
                j->is_switched = eval_ae_is_switched(ins, "0");
                j->prompt_name = "weighted_alpaca_eval_gpt4_turbo";
                rc =
                    eval_ae_render_prompt(tmpl, ins, j->is_switched ? ans[0] : o1,
                                          j->is_switched ? o1 : ans[0], &j->system, &j->user, &err);
                q->sampling.temperature = 1;
                q->sampling.top_p = 1;
                q->top_logprobs = 5;
                if (rc == ICA_OK && !strcmp(o1, ans[0])) {
                    /* alpaca_eval: identical outputs are a draw without asking the judge */
                    char *pj = messages_json(j->system, j->user);
                    char parsed[160];
                    snprintf(parsed, sizeof parsed,
                             "{\"preference\":1.5,\"identical_outputs\":true,\"len_1\":%zu,"
                             "\"len_2\":%zu}",
                             j->len_1, j->len_2);
                    struct store_judgment sj = {.generation_id = j->gen_id,
                                                .judge = judge_key,
                                                .prompt_name = j->prompt_name,
                                                .prompt = pj ? pj : "",
                                                .raw = "",
                                                .score = NAN,
                                                .preference = 1.5,
                                                .parsed_json = parsed};
                    rc = store_judgment_put(st, &sj, &err);
                    free(pj);
                    job_free(j);
                    if (rc != ICA_OK) {
                        cli_error("judge: %s", err.msg);
                        fatal = true;
                        break;
                    }
                    identical++;
                    continue;
                }
            } else {
                const char *ins = jstr(d, "instruction");
                if (!ins)
                    ins = jturn(d, 0);
                j->prompt_name = safety ? "score_safety" : "score_multi";
                j->system = strdup(JE_SYSTEM);
                j->user = eval_je_render(tmpl, ins ? ins : "", ans[0], &err);
                if (!j->system || !j->user)
                    rc = err.code ? err.code : ICA_ERR_NOMEM;
                q->sampling.temperature = 0;
            }
            if (rc != ICA_OK) {
                cli_error("judge: item %s turn %d: %s", iid, t, err.msg);
                job_free(j);
                fatal = true;
                break;
            }
            j->prompt_json = messages_json(j->system, j->user);
            if (!j->prompt_json) {
                job_free(j);
                fatal = true;
                break;
            }
            j->msgs[0] = (struct backend_message){BACKEND_SYSTEM, j->system};
            j->msgs[1] = (struct backend_message){BACKEND_USER, j->user};
            q->messages = j->msgs;
            q->n_messages = 2;
            nj++;
        }
        free(ans[0]);
        free(ans[1]);
    }
    if (fatal)
        goto out;
    if (!quiet)
        fprintf(stderr,
                "icalign: judge: %s of run %.12s in %s by %s (%zu items; %zu to judge, %zu "
                "already judged)\n",
                pname, ar->key, dir, backend_describe(be), n_sel, nj, skipped);
    const char *ka = getenv("ICALIGN_TEST_KILL_AFTER");
    R.kill_after = ka ? strtol(ka, NULL, 10) : 0;
    if (nj) {
        if (!quiet)
            cli_progress_init(&R.prog, "judge", nj, false);
        int brc = backend_run(be, reqs, nj, NULL, on_done, &R, &err);
        cli_progress_end(&R.prog);
        if (brc != ICA_OK) {
            cli_error("judge: %s", err.msg);
            goto out;
        }
        if (R.store_failed) {
            cli_error("judge: %s", R.serr.msg);
            goto out;
        }
    }

    /* Output files from the store (every judgment of this judge in this run). */
    if (store_judgments_list(st, ar->id, judge_key, &rows, &n_rows, &err) != ICA_OK) {
        cli_error("judge: %s", err.msg);
        goto out;
    }
    int wrc = 0;
    size_t n_written = 0, n_err = 0;
    if (proto == P_MT) {
        char *buf = NULL;
        size_t blen = 0;
        FILE *m = open_memstream(&buf, &blen);
        if (!m)
            goto out;
        for (size_t k = 0; k < n_rows; k++) {
            const struct store_judgment_row *x = &rows[k];
            if (x->error) {
                n_err++;
                continue;
            }
            json_object *d = json_tokener_parse(x->item_data), *qv = NULL;
            json_object *pr = json_tokener_parse(x->prompt ? x->prompt : "[]");
            json_object *o = json_object_new_object(), *jj = json_object_new_array();
            if (d && json_object_object_get_ex(d, "question_id", &qv))
                json_object_object_add(o, "question_id", json_object_get(qv));
            else
                json_object_object_add(o, "question_id", json_object_new_string(x->item_id));
            json_object_object_add(o, "model", json_object_new_string(model_id));
            json_object_array_add(jj, json_object_new_string(judge_id));
            json_object_array_add(jj, json_object_new_string(x->prompt_name ? x->prompt_name : ""));
            json_object_object_add(o, "judge", jj);
            const char *up = jstr(json_object_array_get_idx(pr, 1), "content");
            json_object_object_add(o, "user_prompt", json_object_new_string(up ? up : ""));
            json_object_object_add(o, "judgment", json_object_new_string(x->raw ? x->raw : ""));
            json_object_object_add(o, "score", jscore(x->score));
            json_object_object_add(o, "turn", json_object_new_int(x->turn));
            json_object_object_add(o, "tstamp", json_object_new_double(x->created_at));
            fprintf(m, "%s\n", json_object_to_json_string_ext(o, JFLAGS));
            json_object_put(o);
            json_object_put(d);
            json_object_put(pr);
            n_written++;
        }
        fclose(m);
        snprintf(path, sizeof path, "%s/model_judgment", dir);
        if (mkdir_p1(path) != 0)
            wrc = -1;
        else {
            snprintf(path, sizeof path, "%s/model_judgment/%s_single.jsonl", dir, judge_id);
            wrc = write_atomic(path, buf ? buf : "", blen);
        }
        free(buf);
    } else {
        json_object *arr = json_object_new_array();
        for (size_t k = 0; k < n_rows; k++) {
            const struct store_judgment_row *x = &rows[k];
            if (x->error) {
                n_err++;
                continue;
            }
            json_object *d = json_tokener_parse(x->item_data);
            const char *ins = jstr(d, "instruction");
            if (!ins)
                ins = jturn(d, 0);
            char *out2 = cli_utf8_sanitize(x->cleaned, x->cleaned_len);
            json_object *o = json_object_new_object();
            if (proto == P_AE) {
                const char *o1 = NULL, *ds = jstr(d, "dataset"), *g1 = NULL;
                size_t na = json_object_array_length(aref);
                for (size_t r = 0; ins && r < na && !o1; r++) {
                    json_object *rr = json_object_array_get_idx(aref, r);
                    const char *ri2 = jstr(rr, "instruction");
                    if (ri2 && !strcmp(ri2, ins)) {
                        o1 = jstr(rr, "output");
                        g1 = jstr(rr, "generator");
                        if (!ds)
                            ds = jstr(rr, "dataset");
                    }
                }
                json_object_object_add(o, "instruction", json_object_new_string(ins ? ins : ""));
                json_object_object_add(o, "output_1", json_object_new_string(o1 ? o1 : ""));
                json_object_object_add(o, "generator_1",
                                       json_object_new_string(g1 ? g1 : "gpt4_1106_preview"));
                if (ds)
                    json_object_object_add(o, "dataset", json_object_new_string(ds));
                json_object_object_add(o, "output_2", json_object_new_string(out2 ? out2 : ""));
                json_object_object_add(o, "generator_2", json_object_new_string(model_id));
                json_object_object_add(o, "annotator",
                                       json_object_new_string("weighted_alpaca_eval_gpt4_turbo"));
                json_object_object_add(
                    o, "preference",
                    isfinite(x->preference) ? json_object_new_double(x->preference) : NULL);
                json_object_object_add(o, "raw_completion",
                                       json_object_new_string(x->raw ? x->raw : ""));
                json_object_object_add(o, "top_logprobs",
                                       x->logprobs ? json_tokener_parse(x->logprobs) : NULL);
                json_object_object_add(o, "judge", json_object_new_string(judge_id));
            } else {
                json_object_object_add(o, "id", json_object_new_string(x->item_id));
                json_object_object_add(o, "instruction", json_object_new_string(ins ? ins : ""));
                json_object_object_add(o, "output", json_object_new_string(out2 ? out2 : ""));
                json_object_object_add(o, "generator", json_object_new_string(model_id));
                json_object_object_add(o, "parsed_result",
                                       x->parsed ? json_tokener_parse(x->parsed) : NULL);
                json_object_object_add(o, "judge", json_object_new_string(judge_id));
                json_object_object_add(o, "raw_completion",
                                       json_object_new_string(x->raw ? x->raw : ""));
            }
            free(out2);
            json_object_put(d);
            json_object_array_add(arr, o);
            n_written++;
        }
        const char *s = json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY |
                                                                JSON_C_TO_STRING_NOSLASHESCAPE);
        if (proto == P_AE) {
            snprintf(path, sizeof path, "%s/alpaca_eval", dir);
            if (mkdir_p1(path) == 0) {
                snprintf(path, sizeof path, "%s/alpaca_eval/%s", dir, judge_id);
                if (mkdir_p1(path) == 0) {
                    snprintf(path, sizeof path, "%s/alpaca_eval/%s/annotations.json", dir,
                             judge_id);
                    wrc = write_atomic(path, s, strlen(s));
                } else
                    wrc = -1;
            } else
                wrc = -1;
        } else {
            snprintf(path, sizeof path, "%s/just_eval", dir);
            if (mkdir_p1(path) == 0) {
                snprintf(path, sizeof path, "%s/just_eval/%s_%s.json", dir, judge_id,
                         safety ? "score_safety" : "score_multi");
                wrc = write_atomic(path, s, strlen(s));
            } else
                wrc = -1;
        }
        json_object_put(arr);
    }
    if (wrc == 0 && !quiet)
        fprintf(stderr, "icalign: judge: wrote %s (%zu judgments)\n", path, n_written);
    if (!quiet)
        fprintf(stderr,
                "icalign: judge: %llu judgments computed, %zu already stored, %llu failed%s\n",
                (unsigned long long)R.computed, skipped, (unsigned long long)R.failed,
                identical ? " (identical outputs counted as draws without the judge)" : "");
    if (unanswered)
        cli_error("judge: %zu turns of the selected items have no stored answer (run icalign "
                  "answer again)",
                  unanswered);
    if (n_err)
        cli_error("judge: %zu judgments failed and are recorded with their error in %s "
                  "(judgments.error)%s%s; rerun to retry them",
                  n_err, dbpath, R.first_error[0] ? ", first: " : "", R.first_error);
    ret = (wrc || n_err || unanswered || R.failed) ? 1 : 0;
out:
    store_judgment_rows_free(rows, n_rows);
    for (size_t k = 0; k < nj; k++)
        job_free(&jobs[k]);
    free(jobs);
    free(reqs);
    json_object_put(cfg);
    free(judge_id);
    free(model_id);
    free(judge_key);
    for (size_t i = 0; idata && i < n_items; i++)
        json_object_put(idata[i]);
    free(idata);
    store_item_rows_free(items, n_items);
    store_run_rows_free(runs, n_runs);
    store_run_rows_free(jruns, n_jruns);
    backend_free(be);
    store_close(st);
    for (size_t k = 0; k < n_refs; k++)
        json_object_put(refs[k].o);
    free(refs);
    json_object_put(aref);
    free(tmpl);
    eval_mt_prompts_free(mtp);
    return ret;
}
