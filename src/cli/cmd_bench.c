/* icalign bench --workload urial: the URIAL-shaped workload of the paper's
 * experiments (one long shared prompt, many questions) through the engine's
 * scheduler, with and without the prefix cache. A benchmark, not a test:
 * numbers go to docs/PERFORMANCE.md. */
#include "cli.h"

#include "icalign/align.h"
#include "icalign/engine.h"

#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static void help(FILE *fp) {
    fprintf(fp,
            "usage: icalign bench --workload urial -m MODEL.gguf [options]\n\n"
            "Answers MT-Bench first-turn questions after the URIAL prompt through the\n"
            "engine's scheduler (continuous batching, radix prefix cache) and reports\n"
            "prefill tokens computed, cache hit rate, wall time, generated tokens/s, KV\n"
            "bytes per token and peak RSS. Generation ignores EOS so every run does the\n"
            "same work. \"decode-only\" is the speed of the forward passes that held\n"
            "only decode tokens (no prompt chunk): batched decoding proper; compare\n"
            "--batch-seqs 8 with --batch-seqs 1 for its gain.\n\n"
            "%s"
            "      --workload W       urial (the only workload so far)\n"
            "      --demos SPEC       demonstrations (default: ../shared's urial.txt, else the\n"
            "                         built-in default set)\n"
            "      --questions FILE   MT-Bench question.jsonl (default: ../shared's)\n"
            "      --limit N          questions (default 80)\n"
            "  -n, --tokens N         tokens generated per question (default 16)\n"
            "      --batch-seqs N     sequences generated at once (default 8)\n"
            "      --no-cache         compute every prompt in full (no prefix reuse)\n"
            "      --json             one JSON object instead of the table\n"
            "      --dump-prompts F   write the workload's requests to F as JSON lines\n"
            "                         ({\"index\", \"prompt\", \"tokens\"}: the rendered text and\n"
            "                         its token ids, BOS included) and exit without running\n"
            "                         (tools/bench_llama_server.py sends them to llama-server)\n"
            "  -h, --help             this text\n",
            cli_model_opts_help());
}

enum {
    OPT_WORKLOAD = 5000,
    OPT_DEMOS,
    OPT_QUESTIONS,
    OPT_LIMIT,
    OPT_BATCHSEQ,
    OPT_NOCACHE,
    OPT_JSON,
    OPT_DUMP
};

struct counter {
    uint32_t done, generated, decoded;
    double (*iv)[2]; /* per request: [first token, end] (wall clock) */
    size_t n_iv, cap_iv;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void on_done(void *ud, uint64_t id, struct gen_result *r, const struct ica_error *e) {
    (void)id;
    struct counter *c = ud;
    c->done++;
    if (!e) {
        c->generated += r->n_ids;
        c->decoded += r->n_ids ? r->n_ids - 1 : 0;
        if (c->n_iv < c->cap_iv) {
            const double end = now_s();
            c->iv[c->n_iv][0] = end - r->t_gen_s;
            c->iv[c->n_iv][1] = end;
            c->n_iv++;
        }
    } else {
        cli_error("bench: request failed: %s", e->msg);
    }
}

static int cmp_iv(const void *a, const void *b) {
    const double *x = a, *y = b;
    return (x[0] > y[0]) - (x[0] < y[0]);
}

/* Seconds during which at least one sequence was decoding (after its first
 * token): the union of the requests' [first token, end] intervals. Batched
 * runs count the prompt chunks that share those forward passes too. */
static double decode_seconds(struct counter *c) {
    qsort(c->iv, c->n_iv, sizeof *c->iv, cmp_iv);
    double total = 0, a = 0, b = -1;
    for (size_t i = 0; i < c->n_iv; i++) {
        if (c->iv[i][0] > b) {
            if (b > a)
                total += b - a;
            a = c->iv[i][0];
            b = c->iv[i][1];
        } else if (c->iv[i][1] > b) {
            b = c->iv[i][1];
        }
    }
    if (b > a)
        total += b - a;
    return total;
}

/* First turns of question.jsonl (malloc'd strings). */
static char **load_questions(const char *path, long limit, size_t *n) {
    FILE *fp = fopen(path, "r");
    if (!fp) {
        cli_error("bench: cannot open %s", path);
        return NULL;
    }
    char **qs = calloc((size_t)limit, sizeof *qs);
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    *n = 0;
    while (qs && *n < (size_t)limit && getline(&line, &cap, fp) > 0) {
        lineno++;
        json_object *j = json_tokener_parse(line), *turns;
        if (!j || !json_object_object_get_ex(j, "turns", &turns) ||
            !json_object_is_type(turns, json_type_array) || json_object_array_length(turns) < 1) {
            cli_error("bench: %s:%zu: not a question with turns", path, lineno);
            json_object_put(j);
            continue;
        }
        const char *t = json_object_get_string(json_object_array_get_idx(turns, 0));
        qs[(*n)++] = strdup(t ? t : "");
        json_object_put(j);
    }
    free(line);
    fclose(fp);
    return qs;
}

int cmd_bench(int argc, char **argv) {
    /* without --workload: prompt/generation speed like llama-bench */
    bool has_workload = false;
    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], "--workload", 10))
            has_workload = true;
    if (!has_workload)
        return cmd_bench_speed(argc, argv);
    struct cli_model_opts mo;
    cli_model_opts_init(&mo);
    const char *workload = "urial", *demos = NULL, *qpath = NULL, *dump = NULL;
    long limit = 80, tokens = 16, batch = 8;
    bool no_cache = false, json = false;
    static const struct option opts[] = {CLI_MODEL_LONGOPTS,
                                         {"workload", required_argument, 0, OPT_WORKLOAD},
                                         {"demos", required_argument, 0, OPT_DEMOS},
                                         {"questions", required_argument, 0, OPT_QUESTIONS},
                                         {"limit", required_argument, 0, OPT_LIMIT},
                                         {"tokens", required_argument, 0, 'n'},
                                         {"batch-seqs", required_argument, 0, OPT_BATCHSEQ},
                                         {"no-cache", no_argument, 0, OPT_NOCACHE},
                                         {"json", no_argument, 0, OPT_JSON},
                                         {"dump-prompts", required_argument, 0, OPT_DUMP},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    /* --batch (model options) is the prompt chunk; sequences at once are --batch-seqs */
    int ch;
    while ((ch = getopt_long(argc, argv, CLI_MODEL_SHORTOPTS "n:h", opts, NULL)) != -1) {
        int r = cli_model_opts_parse(&mo, ch, optarg);
        if (r < 0)
            return 2;
        if (r > 0)
            continue;
        switch (ch) {
        case OPT_WORKLOAD:
            workload = optarg;
            break;
        case OPT_DEMOS:
            demos = optarg;
            break;
        case OPT_QUESTIONS:
            qpath = optarg;
            break;
        case OPT_LIMIT:
            if (!cli_parse_int("--limit", optarg, 1, 100000, &limit))
                return 2;
            break;
        case 'n':
            if (!cli_parse_int("-n", optarg, 1, 100000, &tokens))
                return 2;
            break;
        case OPT_BATCHSEQ:
            if (!cli_parse_int("--batch-seqs", optarg, 1, 1024, &batch))
                return 2;
            break;
        case OPT_NOCACHE:
            no_cache = true;
            break;
        case OPT_JSON:
            json = true;
            break;
        case OPT_DUMP:
            dump = optarg;
            break;
        case 'h':
            help(stdout);
            return 0;
        default:
            help(stderr);
            return 2;
        }
    }
    if (strcmp(workload, "urial") != 0) {
        cli_error("bench: unknown workload '%s' (urial)", workload);
        return 2;
    }
    char dpath[4096], qbuf[4096];
    if (!demos)
        demos = cli_shared_path(dpath, sizeof dpath,
                                "data/urial/tml-epfl_icl-alignment/urial_prompts/urial.txt")
                    ? dpath
                    : "default";
    if (!qpath) {
        if (!cli_shared_path(qbuf, sizeof qbuf, "data/mt_bench/question.jsonl")) {
            cli_error("bench: give --questions question.jsonl (../shared not found)");
            return 2;
        }
        qpath = qbuf;
    }
    int rc = cli_model_open(&mo, "bench");
    if (rc)
        return rc;
    if (!mo.vocab) {
        cli_error("bench: the model has no usable tokenizer");
        cli_model_close(&mo);
        return 1;
    }
    struct ica_error err = {0};
    struct align_set *set = NULL;
    size_t nq = 0;
    char **qs = load_questions(qpath, limit, &nq);
    if (!qs || align_spec_load(demos, &set, &err) != ICA_OK) {
        if (err.msg[0])
            cli_error("%s", err.msg);
        cli_model_close(&mo);
        return 1;
    }
    /* tokenize every prompt first: the timing covers the engine only */
    int32_t **ids = calloc(nq, sizeof *ids);
    size_t *nids = calloc(nq, sizeof *nids), max_prompt = 0;
    FILE *dfp = NULL;
    if (dump && !(dfp = fopen(dump, "w"))) {
        cli_error("bench: cannot write %s", dump);
        rc = 1;
    }
    for (size_t i = 0; rc == 0 && ids && nids && i < nq; i++) {
        char *prompt = NULL;
        size_t plen = 0;
        const char *msg = qs[i];
        if (align_render(set, &msg, 1, &prompt, &plen, &err) != ICA_OK ||
            tok_tokenize(mo.vocab, prompt, plen, true, false, &ids[i], &nids[i], &err) != ICA_OK) {
            cli_error("%s", err.msg);
            free(prompt);
            rc = 1;
            break;
        }
        if (dfp) {
            json_object *o = json_object_new_object(), *toks = json_object_new_array();
            json_object_object_add(o, "index", json_object_new_int64((int64_t)i));
            json_object_object_add(o, "prompt", json_object_new_string_len(prompt, (int)plen));
            for (size_t k = 0; k < nids[i]; k++)
                json_object_array_add(toks, json_object_new_int(ids[i][k]));
            json_object_object_add(o, "tokens", toks);
            fprintf(dfp, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
            json_object_put(o);
        }
        free(prompt);
        if (nids[i] > max_prompt)
            max_prompt = nids[i];
    }
    if (dfp && fclose(dfp) != 0 && rc == 0) {
        cli_error("bench: cannot write %s", dump);
        rc = 1;
    }
    struct engine *e = NULL;
    if (rc == 0 && !dump) {
        struct engine_params ep = engine_default_params();
        ep.n_ctx = mo.n_ctx ? mo.n_ctx : (uint32_t)(max_prompt + (size_t)tokens + 1);
        ep.n_batch = mo.n_batch;
        ep.kv_type = mo.kv_type;
        ep.n_threads = mo.n_threads;
        ep.n_seq_max = (uint32_t)batch;
        ep.no_prefix_reuse = no_cache;
        if (engine_new(mo.model, mo.vocab, &ep, &e, &err) != ICA_OK) {
            cli_error("%s", err.msg);
            rc = 1;
        }
    }
    struct counter cnt = {0};
    cnt.iv = calloc(nq ? nq : 1, sizeof *cnt.iv);
    cnt.cap_iv = cnt.iv ? nq : 0;
    double t0 = now_s(), wall = 0;
    if (rc == 0 && !dump) {
        struct gen_params gp = gen_default_params();
        gp.max_tokens = (uint32_t)tokens;
        gp.ignore_eos = true;
        gp.sampling.repetition_penalty = 1.15f; /* the urial preset's decoding */
        for (size_t i = 0; i < nq && rc == 0; i++) {
            uint64_t id;
            if (engine_submit(e, ids[i], (uint32_t)nids[i], &gp, NULL, on_done, &cnt, &id, &err) !=
                ICA_OK) {
                cli_error("%s", err.msg);
                rc = 1;
            }
        }
        if (rc == 0 && engine_run(e, &err) != ICA_OK) {
            cli_error("%s", err.msg);
            rc = 1;
        }
        wall = now_s() - t0;
    }
    if (rc == 0 && !dump) {
        struct engine_stats st;
        engine_get_stats(e, &st);
        const struct model_hparams *hp = model_get_hparams(mo.model);
        const double kv_per_tok = (double)hp->n_layer * hp->n_head_kv *
                                  (hp->head_dim + hp->head_dim_v) *
                                  (mo.kv_type == ICA_F16 ? 2.0 : 4.0);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        const uint64_t computed = st.prompt_tokens - st.prompt_tokens_cached;
        const double dec_s = decode_seconds(&cnt);
        const double hit =
            st.prompt_tokens ? (double)st.prompt_tokens_cached / st.prompt_tokens : 0;
        if (json) {
            printf("{\"workload\":\"urial\",\"questions\":%zu,\"batch\":%ld,\"cache\":%s,"
                   "\"prompt_tokens\":%llu,\"prefill_computed\":%llu,\"hit_rate\":%.4f,"
                   "\"generated\":%u,\"wall_s\":%.3f,\"gen_tok_s\":%.2f,\"decoded\":%u,"
                   "\"decode_s\":%.3f,\"decode_tok_s\":%.2f,\"steps\":%llu,"
                   "\"decode_steps\":%llu,\"decode_step_tokens\":%llu,"
                   "\"decode_step_s\":%.3f,\"decode_step_tok_s\":%.2f,"
                   "\"kv_bytes_per_token\":%.0f,\"peak_rss_mib\":%.1f}\n",
                   nq, batch, no_cache ? "false" : "true", (unsigned long long)st.prompt_tokens,
                   (unsigned long long)computed, hit, cnt.generated, wall,
                   wall > 0 ? cnt.generated / wall : 0.0, cnt.decoded, dec_s,
                   dec_s > 0 ? cnt.decoded / dec_s : 0.0, (unsigned long long)st.steps,
                   (unsigned long long)st.decode_steps, (unsigned long long)st.decode_step_tokens,
                   st.t_decode_steps_s,
                   st.t_decode_steps_s > 0 ? st.decode_step_tokens / st.t_decode_steps_s : 0.0,
                   kv_per_tok, (double)ru.ru_maxrss / 1024.0);
        } else {
            printf("workload:          urial, %zu questions, %ld tokens each, %ld at once, cache "
                   "%s\n",
                   nq, tokens, batch, no_cache ? "off" : "on");
            printf("prompt tokens:     %llu (%llu computed, %.1f%% reused)\n",
                   (unsigned long long)st.prompt_tokens, (unsigned long long)computed, 100 * hit);
            printf("generated tokens:  %u in %.2f s wall (%.2f tok/s aggregate)\n", cnt.generated,
                   wall, wall > 0 ? cnt.generated / wall : 0.0);
            printf("decoding:          %u tokens after the first of each in %.2f s while any "
                   "sequence decoded (%.2f tok/s)\n",
                   cnt.decoded, dec_s, dec_s > 0 ? cnt.decoded / dec_s : 0.0);
            printf("forward passes:    %llu (%.2f s)\n", (unsigned long long)st.steps,
                   st.t_forward_s);
            printf("decode-only:       %llu passes of %.2f sequences on average, %llu tokens in "
                   "%.2f s (%.2f tok/s)\n",
                   (unsigned long long)st.decode_steps,
                   st.decode_steps ? (double)st.decode_step_tokens / st.decode_steps : 0.0,
                   (unsigned long long)st.decode_step_tokens, st.t_decode_steps_s,
                   st.t_decode_steps_s > 0 ? st.decode_step_tokens / st.t_decode_steps_s : 0.0);
            printf("KV per token:      %.0f bytes (%s)\n", kv_per_tok,
                   mo.kv_type == ICA_F16 ? "f16" : "f32");
            printf("peak RSS:          %.1f MiB\n", (double)ru.ru_maxrss / 1024.0);
        }
        if (cnt.done != nq)
            rc = 1;
    }
    engine_free(e);
    free(cnt.iv);
    for (size_t i = 0; i < nq; i++) {
        free(qs[i]);
        if (ids)
            free(ids[i]);
    }
    free(qs);
    free(ids);
    free(nids);
    align_set_free(set);
    cli_model_close(&mo);
    return rc;
}
