/* Shared setup of icalign search / sweep / ablate. */
#include "search_cli.h"

#include <json-c/json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void xp_init(struct xp *x, const char *cmd) {
    memset(x, 0, sizeof *x);
    x->cmd = cmd;
    cli_backend_opts_init(&x->ans);
    cli_backend_opts_init(&x->judge);
    x->val = "mt-bench";
    x->preset = "urial";
    x->judge_prompt = "single-v1";
    x->limit = 0;
    x->max_tokens = -1;
    x->judge_max_tokens = 2048;
}

const char *xp_help(void) {
    return "Validation and decoding:\n"
           "  --val Q                 validation questions: mt-bench (first turns of the 80\n"
           "                          MT-Bench questions, the default) or a JSONL file with\n"
           "                          turns[0] | instruction | question | query per line;\n"
           "                          a set's score is the mean first-turn rating\n"
           "  --bench B               score on a benchmark instead of --val (sweep, ablate):\n"
           "                          mt-bench = both MT-Bench turns (turn 2 answered after\n"
           "                          the model's own turn-1 answer, judged with the\n"
           "                          multi-turn prompt): turn 1, turn 2 and overall (mean\n"
           "                          of all ratings, the score); alpaca-eval = the 805\n"
           "                          AlpacaEval 2.0 instructions, each answer compared with\n"
           "                          the reference output by the weighted_alpaca_eval_\n"
           "                          gpt4_turbo annotator (the judge must return logprobs):\n"
           "                          length-controlled win rate (the score) and win rate.\n"
           "                          search: mt-bench = --val mt-bench (first turns)\n"
           "  --limit N               only the first N validation questions\n"
           "  --preset P              decoding preset of the answers: urial (default),\n"
           "                          urial-moe, gpt4-base\n"
           "  --max-tokens N          new tokens per answer (preset: 2048)\n"
           "  --out RUN_DIR           run directory (created; its store caches everything)\n"
           "Judge (an MT-Bench single-answer judge; a chat model):\n"
           "  --judge-model M         local judge GGUF file, or with --judge-base-url the\n"
           "                          server's model name\n"
           "  --judge-base-url URL    OpenAI-compatible judge server\n"
           "  --judge-name NAME       the server's model name (same as --judge-model)\n"
           "  --judge-chat-template T chat template of a local judge\n"
           "  --judge-ctx N           context of a local judge\n"
           "  --judge-api-key-file F  API key of the judge server\n"
           "  --judge-concurrency N   parallel judge requests (4)\n"
           "  --judge-id ID           name of the judge in the store (default: model name)\n"
           "  --judge-prompt P        single-v1 (every question, the default) or auto\n"
           "                          (FastChat's per-category choice, math prompts with the\n"
           "                          reference answers of mt-bench)\n"
           "  --judge-max-tokens N    judge reply tokens (2048)\n"
           "  --judge-prompts FILE    judge_prompts.jsonl (default: shared data/mt_bench)\n"
           "Answering model (the base model):\n"
           "      --remote-model NAME the server's model id (instead of -m with --base-url)\n";
}

int xp_parse(struct xp *x, int ch, const char *arg) {
    long v;
    switch (ch) {
    case XP_OPT_VAL:
        if (x->mode != XP_FIRST_TURN) {
            cli_error("%s: --val and --bench exclude each other", x->cmd);
            return -1;
        }
        x->val = arg;
        x->val_set = true;
        return 1;
    case XP_OPT_BENCH:
        if (x->val_set) {
            cli_error("%s: --val and --bench exclude each other", x->cmd);
            return -1;
        }
        if (!strcmp(arg, "mt-bench") || !strcmp(arg, "mt_bench"))
            x->mode = XP_MT_BENCH;
        else if (!strcmp(arg, "alpaca-eval") || !strcmp(arg, "alpaca_eval"))
            x->mode = XP_ALPACA_EVAL;
        else {
            cli_error("%s: --bench must be mt-bench or alpaca-eval (or give --val FILE)", x->cmd);
            return -1;
        }
        x->val = "mt-bench";
        return 1;
    case XP_OPT_LIMIT:
        return cli_parse_int("--limit", arg, 1, INT32_MAX, &x->limit) ? 1 : -1;
    case XP_OPT_OUT:
        x->out = arg;
        return 1;
    case XP_OPT_PRESET:
        x->preset = arg;
        return 1;
    case XP_OPT_MAXTOK:
        return cli_parse_int("--max-tokens", arg, 1, 1 << 24, &x->max_tokens) ? 1 : -1;
    case XP_OPT_JMODEL:
    case XP_OPT_JNAME:
        if (x->judge.n_base_urls || ch == XP_OPT_JNAME)
            x->judge.remote_model = arg;
        if (ch == XP_OPT_JMODEL)
            x->judge.local.path = arg;
        return 1;
    case XP_OPT_JURL:
        return cli_backend_opts_parse(&x->judge, CLI_OPT_BASE_URL, arg);
    case XP_OPT_JTEMPLATE:
        x->judge.chat_template = arg;
        return 1;
    case XP_OPT_JCTX:
        if (!cli_parse_int("--judge-ctx", arg, 16, 1 << 24, &v))
            return -1;
        x->judge.local.n_ctx = (uint32_t)v;
        return 1;
    case XP_OPT_JKEY:
        x->judge.api_key_file = arg;
        return 1;
    case XP_OPT_JCONC:
        return cli_backend_opts_parse(&x->judge, CLI_OPT_CONCURRENCY, arg);
    case XP_OPT_JID:
        x->judge_id = arg;
        return 1;
    case XP_OPT_JPROMPT:
        if (strcmp(arg, "single-v1") && strcmp(arg, "auto")) {
            cli_error("%s: --judge-prompt must be single-v1 or auto", x->cmd);
            return -1;
        }
        x->judge_prompt = arg;
        return 1;
    case XP_OPT_JMAXTOK:
        return cli_parse_int("--judge-max-tokens", arg, 1, 1 << 20, &x->judge_max_tokens) ? 1 : -1;
    case XP_OPT_JPROMPTS_FILE:
        x->judge_prompts_file = arg;
        return 1;
    case 'q':
        x->quiet = true;
        return 1;
    default:
        return cli_backend_opts_parse(&x->ans, ch, arg);
    }
}

static void log_line(void *ud, const char *msg) {
    const struct xp *x = ud;
    if (!x->quiet)
        fprintf(stderr, "icalign: %s: %s\n", x->cmd, msg);
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int xp_load_spec(struct xp *x, const char *spec, struct align_set **out) {
    struct ica_error e = {0};
    char path[4096];
    if (strcmp(spec, "urial") == 0) {
        if (cli_shared_path(path, sizeof path,
                            "data/urial/tml-epfl_icl-alignment/urial_prompts/urial.txt"))
            spec = path;
        else {
            if (!x->quiet)
                fprintf(stderr,
                        "icalign: %s: urial.txt not found in the shared data; using the built-in "
                        "default set\n",
                        x->cmd);
            spec = "default";
        }
    }
    if (align_spec_load(spec, out, &e) != ICA_OK) {
        cli_error("%s: %s", x->cmd, e.msg);
        return 1;
    }
    return 0;
}

int xp_open(struct xp *x) {
    struct ica_error e = {0};
    if (!x->out) {
        cli_error("%s: --out RUN_DIR is required", x->cmd);
        return 2;
    }
    if (!x->judge.local.path && !x->judge.remote_model) {
        cli_error("%s: name a judge: --judge-model FILE.gguf, or --judge-base-url URL "
                  "--judge-name NAME",
                  x->cmd);
        return 2;
    }
    if (x->judge.n_base_urls && !x->judge.remote_model)
        x->judge.remote_model = x->judge.local.path;
    if (align_preset_get(x->preset, &x->pr, &e) != ICA_OK) {
        cli_error("%s: %s", x->cmd, e.msg);
        return 2;
    }
    /* validation questions */
    char qpath[4096], rpath[4096];
    const char *refs = NULL;
    if (x->mode == XP_ALPACA_EVAL) {
        char tp[4096], gp[4096];
        if (!cli_shared_path(qpath, sizeof qpath,
                             "data/alpaca_eval/reference_outputs/alpaca_eval_gpt4_baseline.json") ||
            !cli_shared_path(tp, sizeof tp,
                             "data/alpaca_eval/annotator/alpaca_eval_clf_gpt4_turbo/"
                             "alpaca_eval_clf.txt")) {
            cli_error("%s: AlpacaEval reference outputs or annotator template not found (set "
                      "ICALIGN_SHARED)",
                      x->cmd);
            return 1;
        }
        char *t = NULL;
        size_t tl = 0;
        FILE *fp = fopen(tp, "rb");
        if (fp) {
            t = malloc(1 << 20);
            tl = t ? fread(t, 1, (1 << 20) - 1, fp) : 0;
            if (t)
                t[tl] = '\0';
            fclose(fp);
        }
        if (!t || tl == 0) {
            free(t);
            cli_error("%s: cannot read %s", x->cmd, tp);
            return 1;
        }
        x->ae_template = t;
        if (!cli_shared_path(gp, sizeof gp, "data/alpaca_eval/length_controlled/df_gamed.csv") ||
            eval_ae_lcdata_read(gp, &x->ae_lc, &e) != ICA_OK) {
            x->ae_lc = NULL;
            if (!x->quiet)
                fprintf(stderr,
                        "icalign: %s: df_gamed.csv not usable; no length-controlled win rate\n",
                        x->cmd);
        }
        if (search_questions_load_alpaca(qpath, (size_t)x->limit, &x->qs, &e) != ICA_OK) {
            cli_error("%s: %s", x->cmd, e.msg);
            return 1;
        }
        snprintf(x->val_name, sizeof x->val_name, "alpaca-eval");
    } else if (strcmp(x->val, "mt-bench") == 0) {
        if (!cli_shared_path(qpath, sizeof qpath, "data/mt_bench/question.jsonl")) {
            cli_error("%s: MT-Bench questions not found (set ICALIGN_SHARED or give --val FILE)",
                      x->cmd);
            return 1;
        }
        if (cli_shared_path(rpath, sizeof rpath, "data/mt_bench/reference_answer/gpt-4.jsonl"))
            refs = rpath;
        snprintf(x->val_name, sizeof x->val_name, "mt-bench");
    } else {
        snprintf(qpath, sizeof qpath, "%s", x->val);
        snprintf(x->val_name, sizeof x->val_name, "%s", base_name(x->val));
    }
    if (x->mode != XP_ALPACA_EVAL &&
        search_questions_load(qpath, refs, (size_t)x->limit, &x->qs, &e) != ICA_OK) {
        cli_error("%s: %s", x->cmd, e.msg);
        return 1;
    }
    char jp[4096];
    if (x->judge_prompts_file)
        snprintf(jp, sizeof jp, "%s", x->judge_prompts_file);
    else if (!cli_shared_path(jp, sizeof jp, "data/mt_bench/judge_prompts.jsonl")) {
        cli_error("%s: judge_prompts.jsonl not found (set ICALIGN_SHARED or --judge-prompts)",
                  x->cmd);
        return 1;
    }
    if (eval_mt_prompts_load(jp, &x->prompts, &e) != ICA_OK) {
        cli_error("%s: %s", x->cmd, e.msg);
        return 1;
    }
    if (store_open(x->out, &x->st, &e) != ICA_OK) {
        cli_error("%s: %s", x->cmd, e.msg);
        return 1;
    }
    int rc = cli_backend_open(&x->ans, x->cmd, &x->ab);
    if (rc)
        return rc;
    if ((rc = cli_backend_open(&x->judge, x->cmd, &x->jb)))
        return rc;
    if (!x->ans.n_base_urls) {
        char sha[65];
        if (store_file_sha256(x->st, x->ans.local.path, sha, NULL, &e) != ICA_OK) {
            cli_error("%s: %s", x->cmd, e.msg);
            return 1;
        }
        snprintf(x->model_key, sizeof x->model_key, "sha256:%s", sha);
    } else
        snprintf(x->model_key, sizeof x->model_key, "%s", backend_describe(x->ab));
    const char *jid = x->judge_id            ? x->judge_id
                      : x->judge.n_base_urls ? x->judge.remote_model
                                             : base_name(x->judge.local.path);
    if (x->mode == XP_ALPACA_EVAL)
        snprintf(x->judge_name, sizeof x->judge_name, "search:weighted_alpaca_eval_gpt4_turbo/%s",
                 jid);
    else
        snprintf(x->judge_name, sizeof x->judge_name, "search:%s/%s", x->judge_prompt, jid);
    /* decoding (part of every cache key) */
    struct backend_sampling smp = backend_default_sampling();
    smp.temperature = x->pr.temperature;
    smp.top_p = x->pr.top_p;
    smp.top_k = x->pr.top_k;
    smp.min_p = x->pr.min_p;
    smp.repetition_penalty = x->pr.repetition_penalty;
    smp.frequency_penalty = x->pr.frequency_penalty;
    smp.presence_penalty = x->pr.presence_penalty;
    uint32_t maxtok = x->max_tokens > 0 ? (uint32_t)x->max_tokens : (uint32_t)x->pr.max_new_tokens;
    json_object *d = json_object_new_object();
    json_object_object_add(d, "preset", json_object_new_string(x->pr.name));
    json_object_object_add(d, "max_tokens", json_object_new_int64(maxtok));
    json_object *sa = json_object_new_array();
    for (size_t k = 0; k < x->pr.n_stop; k++)
        json_object_array_add(sa, json_object_new_string(x->pr.stop[k]));
    json_object_object_add(d, "stop", sa);
    x->decoding = strdup(json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN));
    json_object_put(d);
    if (!x->decoding)
        return 1;
    x->a = (struct search_answerer){.backend = x->ab,
                                    .model_key = x->model_key,
                                    .sampling = smp,
                                    .max_tokens = maxtok,
                                    .stop = x->pr.stop,
                                    .n_stop = x->pr.n_stop,
                                    .decoding_json = x->decoding};
    x->j = (struct search_judge){.backend = x->jb,
                                 .prompts = x->prompts,
                                 .name = x->judge_name,
                                 .per_category = strcmp(x->judge_prompt, "auto") == 0,
                                 .max_tokens = (uint32_t)x->judge_max_tokens,
                                 .ae_template = x->ae_template};
    if (search_env_new(x->out, x->st, &x->a, &x->j, x->qs, &x->env, &e) != ICA_OK) {
        cli_error("%s: %s", x->cmd, e.msg);
        return 1;
    }
    search_env_set_log(x->env, log_line, x);
    return 0;
}

void xp_close(struct xp *x) {
    search_env_free(x->env);
    if (x->ab)
        backend_free(x->ab);
    if (x->jb)
        backend_free(x->jb);
    if (x->st)
        store_close(x->st);
    search_questions_free(x->qs);
    if (x->prompts)
        eval_mt_prompts_free(x->prompts);
    free(x->decoding);
    free(x->ae_template);
    eval_ae_lcdata_free(x->ae_lc);
}

const char *xp_score_name(const struct xp *x) {
    return x->mode == XP_MT_BENCH ? "overall" : x->mode == XP_ALPACA_EVAL ? "LC win rate" : "score";
}

const char *xp_score_label(const struct xp *x) {
    return x->mode == XP_MT_BENCH      ? "MT-Bench score (both turns)"
           : x->mode == XP_ALPACA_EVAL ? "LC win rate (%)"
                                       : "mean judge score";
}

int xp_run(struct xp *x, const char *kind, const char *config_json, int64_t *run_id) {
    struct ica_error e = {0};
    struct store_run_info ri = {.kind = kind,
                                .bench = x->val_name,
                                .config = config_json,
                                .decoding = x->decoding,
                                .backend = backend_describe(x->ab),
                                .version = "0.1.0"};
    if (store_run_open(x->st, &ri, run_id, NULL, NULL, &e) != ICA_OK) {
        cli_error("%s: %s", x->cmd, e.msg);
        return 1;
    }
    return 0;
}

void xp_path(const struct xp *x, char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", x->out, name);
}

void xp_costs(const struct xp *x, struct report_buf *b, uint64_t full_evals, uint64_t full_tokens) {
    const struct search_stats *s = search_env_stats(x->env);
    report_buf_printf(b, "cost:\n");
    report_buf_printf(b, "  generations  %8llu new, %8llu from the store, %llu failed\n",
                      (unsigned long long)s->gen_new, (unsigned long long)s->gen_cached,
                      (unsigned long long)s->gen_failed);
    report_buf_printf(b, "  judge calls  %8llu new, %8llu from the store, %llu failed or unrated\n",
                      (unsigned long long)s->judge_new, (unsigned long long)s->judge_cached,
                      (unsigned long long)s->judge_failed);
    if (full_evals) {
        double saved = 100.0 * (1.0 - (double)s->judge_new / (double)full_evals);
        report_buf_printf(b, "  full search  %8llu generations and judge calls (%.1f%% saved)\n",
                          (unsigned long long)full_evals, saved);
    }
    uint64_t computed = s->prompt_tokens - s->cached_tokens;
    report_buf_printf(b,
                      "  prefill      %8llu prompt tokens computed (%llu of %llu prompt tokens of "
                      "new generations came from the prefix cache)\n",
                      (unsigned long long)computed, (unsigned long long)s->cached_tokens,
                      (unsigned long long)s->prompt_tokens);
    if (full_tokens) {
        report_buf_printf(b,
                          "  naive        %8llu prompt tokens for the full search from scratch "
                          "(%.1fx)\n",
                          (unsigned long long)full_tokens,
                          computed ? (double)full_tokens / (double)computed : INFINITY);
    }
}

void xp_print_costs(const struct xp *x, FILE *fp, uint64_t full_evals, uint64_t full_tokens) {
    struct report_buf b = {0};
    xp_costs(x, &b, full_evals, full_tokens);
    if (b.data)
        fputs(b.data, fp);
    report_buf_free(&b);
}

void xp_costs_md(const struct xp *x, struct report_buf *md, uint64_t full_evals,
                 uint64_t full_tokens) {
    report_buf_puts(md, "\n## Cost\n\n```\n");
    xp_costs(x, md, full_evals, full_tokens);
    report_buf_puts(md, "```\n");
}

size_t xp_split(char *s, char **items, size_t max) {
    size_t n = 0;
    char *p = s;
    while (p && *p && n < max) {
        char *c = strchr(p, ',');
        if (c)
            *c = '\0';
        if (*p)
            items[n++] = p;
        p = c ? c + 1 : NULL;
    }
    return n;
}

int xp_eval_table(struct xp *x, const char *title, const char *col, char *const *names,
                  struct align_set *const *sets, size_t n, const char *csv_name) {
    struct ica_error e = {0};
    size_t nq = x->qs->n;
    double *sc = calloc(n * nq + 1, sizeof *sc);
    if (!sc)
        return 1;
    /* the prompt files of the sets */
    char dir[4096];
    xp_path(x, dir, sizeof dir, "sets");
    (void)mkdir(dir, 0777);
    for (size_t i = 0; i < n; i++) {
        char *text = NULL, path[4400];
        size_t len = 0;
        if (align_set_write(sets[i], &text, &len, &e) != ICA_OK) {
            cli_error("%s: %s", x->cmd, e.msg);
            free(sc);
            return 1;
        }
        snprintf(path, sizeof path, "%s/%s.txt", dir, names[i]);
        int rc = search_write_file(path, text, len, &e);
        free(text);
        if (rc) {
            cli_error("%s: %s", x->cmd, e.msg);
            free(sc);
            return 1;
        }
    }
    /* turn 1 (AlpacaEval: the only turn, with the answers' lengths), then MT-Bench turn 2 */
    double *sc2 = x->mode == XP_MT_BENCH ? calloc(n * nq + 1, sizeof *sc2) : NULL;
    size_t *len2 = x->mode == XP_ALPACA_EVAL ? calloc(n * nq + 1, sizeof *len2) : NULL;
    size_t *len1 = x->mode == XP_ALPACA_EVAL ? calloc(nq + 1, sizeof *len1) : NULL;
    double *all = calloc(2 * nq + 1, sizeof *all);
    int ret = 1;
    FILE *csv = NULL;
    char path[4096];
    if (!all || (x->mode == XP_MT_BENCH && !sc2) ||
        (x->mode == XP_ALPACA_EVAL && (!len1 || !len2))) {
        cli_error("%s: out of memory", x->cmd);
        goto out;
    }
    if (search_eval_turn(x->env, sets, n, nq, 1, sc, len2, &e) != ICA_OK ||
        (sc2 && search_eval_turn(x->env, sets, n, nq, 2, sc2, NULL, &e) != ICA_OK)) {
        cli_error("%s: %s", x->cmd, e.msg);
        goto out;
    }
    for (size_t q = 0; len1 && q < nq; q++)
        len1[q] = eval_utf8_len(x->qs->q[q].reference ? x->qs->q[q].reference : "");
    xp_path(x, path, sizeof path, csv_name);
    csv = fopen(path, "w");
    if (!csv) {
        cli_error("%s: cannot write %s", x->cmd, path);
        goto out;
    }
    fprintf(csv, "%s,score,ci_low,ci_high,n_rated,n_questions%s\n", col,
            x->mode == XP_MT_BENCH      ? ",turn1,turn2"
            : x->mode == XP_ALPACA_EVAL ? ",win_rate"
                                        : "");
    if (x->mode == XP_MT_BENCH)
        printf("%s\n  %-28s %8s %8s %8s  %-17s %6s\n", title, col, "turn 1", "turn 2", "overall",
               "95% CI", "n");
    else if (x->mode == XP_ALPACA_EVAL)
        printf("%s\n  %-28s %8s  %-17s %8s %6s\n", title, col, "LC wr %", "95% CI", "win rate",
               "n");
    else
        printf("%s\n  %-28s %8s  %-17s %6s\n", title, col, "score", "95% CI", "n");
    for (size_t i = 0; i < n; i++) {
        const double *row = &sc[i * nq];
        size_t nv = 0;
        double m = NAN, lo = NAN, hi = NAN, t1 = NAN, t2 = NAN, wr = NAN;
        if (x->mode == XP_ALPACA_EVAL) {
            struct eval_ae_winrate w;
            eval_ae_winrate(row, nq, &w);
            wr = w.win_rate;
            nv = w.n_total;
            struct eval_ae_lc lc = {0};
            struct ica_error le = {0};
            if (x->ae_lc && eval_ae_length_controlled(x->ae_lc, row, len1, &len2[i * nq], nq, false,
                                                      &lc, &le) == ICA_OK) {
                m = lc.winrate;
                lo = m - 1.96 * lc.standard_error;
                hi = m + 1.96 * lc.standard_error;
            } else if (x->ae_lc && !x->quiet)
                fprintf(stderr, "icalign: %s: %s: length-controlled win rate: %s\n", x->cmd,
                        names[i], le.msg);
            free(lc.glm_pref);
        } else {
            size_t k = 0;
            for (size_t q = 0; q < nq; q++)
                if (!isnan(row[q]))
                    all[k++] = row[q];
            t1 = search_mean(row, nq, NULL);
            if (sc2) {
                t2 = search_mean(&sc2[i * nq], nq, NULL);
                for (size_t q = 0; q < nq; q++)
                    if (!isnan(sc2[i * nq + q]))
                        all[k++] = sc2[i * nq + q];
            }
            nv = k;
            m = search_mean(all, k, NULL);
            eval_bootstrap_ci(all, k, 1000, 1234, &lo, &hi);
        }
        char ci[64], ms[32], t1s[32], t2s[32], wrs[32];
        if (isnan(lo))
            snprintf(ci, sizeof ci, "-");
        else
            snprintf(ci, sizeof ci, "[%.3f, %.3f]", lo, hi);
#define XP_FMT(buf, v, f)                                                                          \
    (isnan(v) ? snprintf(buf, sizeof buf, "-") : snprintf(buf, sizeof buf, f, v))
        XP_FMT(ms, m, "%.3f");
        XP_FMT(t1s, t1, "%.3f");
        XP_FMT(t2s, t2, "%.3f");
        XP_FMT(wrs, wr, "%.2f");
#undef XP_FMT
        if (x->mode == XP_MT_BENCH)
            printf("  %-28s %8s %8s %8s  %-17s %6zu\n", names[i], t1s, t2s, ms, ci, nv);
        else if (x->mode == XP_ALPACA_EVAL)
            printf("  %-28s %8s  %-17s %8s %6zu\n", names[i], ms, ci, wrs, nv);
        else
            printf("  %-28s %8s  %-17s %6zu\n", names[i], ms, ci, nv);
        fprintf(csv, "%s,", names[i]);
        if (!isnan(m))
            fprintf(csv, "%.6f", m);
        fputc(',', csv);
        if (!isnan(lo))
            fprintf(csv, "%.6f,%.6f", lo, hi);
        else
            fputc(',', csv);
        fprintf(csv, ",%zu,%zu", nv, nq);
        if (x->mode == XP_MT_BENCH) {
            fputc(',', csv);
            if (!isnan(t1))
                fprintf(csv, "%.6f", t1);
            fputc(',', csv);
            if (!isnan(t2))
                fprintf(csv, "%.6f", t2);
        } else if (x->mode == XP_ALPACA_EVAL) {
            fputc(',', csv);
            if (!isnan(wr))
                fprintf(csv, "%.6f", wr);
        }
        fputc('\n', csv);
    }
    int cr = fclose(csv);
    csv = NULL;
    if (cr != 0) {
        cli_error("%s: writing %s failed", x->cmd, path);
        goto out;
    }
    printf("table written to %s\n", path);
    ret = 0;
out:
    if (csv)
        fclose(csv);
    free(sc);
    free(sc2);
    free(len1);
    free(len2);
    free(all);
    return ret;
}
