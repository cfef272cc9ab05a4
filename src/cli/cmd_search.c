/* icalign search: greedy forward selection of extra demonstrations (METHOD.md §3.1). */
#include <getopt.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "report_cli.h"
#include "search_cli.h"

enum { OPT_POOL = XP_OPT_LAST + 1, OPT_BASE, OPT_STEPS, OPT_HALVING, OPT_AFTER, OPT_ALWAYS };

static void help(FILE *fp) {
    fprintf(fp,
            "usage: icalign search --pool POOL.jsonl --judge-model J.gguf | --judge-base-url URL\n"
            "                      --judge-name NAME  (-m MODEL.gguf | --base-url URL -m NAME)\n"
            "                      --out RUN_DIR [--steps K] [--halving] [options]\n\n"
            "Sequential greedy forward selection of demonstrations (the ICL paper's search for\n"
            "extra demonstrations): at each step every remaining pool candidate is inserted\n"
            "after the demonstrations chosen so far, before the base demonstrations, and\n"
            "scored by the mean judge rating of the model's answers to the validation\n"
            "questions; the best is kept (ties: lowest pool index). Stops after K steps or when\n"
            "no candidate improves on the current set. Every (demonstration set, question)\n"
            "answer and judgment is cached in RUN_DIR/icalign.db: rerunning, raising --steps\n"
            "or changing the pool redoes nothing already stored, and a killed search resumes.\n"
            "Writes RUN_DIR/chosen.txt (URIAL prompt file of the final set), RUN_DIR/search.csv\n"
            "(every candidate's score at every step), RUN_DIR/search.svg (score after each\n"
            "step), RUN_DIR/report.md (steps and the cost counters: generations, judge calls,\n"
            "prefill tokens computed vs the naive count) and the store's search_steps rows.\n"
            "Scores are the mean first-turn judge rating (--bench alpaca-eval: use sweep).\n\n"
            "Search:\n"
            "  --pool FILE             candidates: JSONL pool ({\"query\",\"answer\",\"id\",\n"
            "                          \"source\"} lines) or a URIAL prompt file\n"
            "  --base-demos SPEC       base demonstrations (default: urial = URIAL's urial.txt\n"
            "                          from the shared data, else the built-in set; any\n"
            "                          --demos SPEC of icalign prompt)\n"
            "  --steps K               selection steps (default 3, as the paper's best_4&5&6)\n"
            "  --halving               successive halving over the validation questions: all\n"
            "                          candidates on the first questions, the better half on\n"
            "                          twice as many, ... the winner on all of them\n"
            "  --after                 insert the selection after the base demos\n"
            "  --always-take           keep the best candidate even when it does not improve\n"
            "%s"
            "%s"
            "  -q, --quiet             no progress messages\n"
            "  -h, --help              this text\n\n"
            "Examples:\n"
            "  icalign search --pool my_pool.jsonl --steps 3 --halving -m base.gguf -c 8192 \\\n"
            "      --judge-base-url https://api.openai.com/v1 --judge-name gpt-4-turbo \\\n"
            "      --out runs/search1\n"
            "  # one step on 10 MT-Bench questions, short answers, local judge\n"
            "  icalign search --pool my_pool.jsonl --steps 1 --always-take --limit 10 \\\n"
            "      --max-tokens 256 -m base.gguf -t 8 --judge-model judge.gguf --out runs/s2\n",
            xp_help(), cli_backend_opts_help());
}

static const char *fmt_score(double v, char *buf, size_t n) {
    if (isnan(v))
        snprintf(buf, n, "-");
    else
        snprintf(buf, n, "%.3f", v);
    return buf;
}

/* CSV field: quoted when needed. */
static void csv_str(FILE *fp, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, fp);
        return;
    }
    fputc('"', fp);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', fp);
        fputc(*s, fp);
    }
    fputc('"', fp);
}

/* RUN_DIR/report.md (one row per step) and RUN_DIR/search.svg (score of the set after each
 * step, step 0 = the base set). */
static int write_report(const struct xp *x, const struct search_result *R,
                        const struct align_set *pool, uint64_t full) {
    size_t n = R->n_steps + 1;
    struct report_point *pts = calloc(n, sizeof *pts);
    const char **cells = calloc(4 * n, sizeof *cells);
    char(*txt)[3][32] = calloc(n, sizeof *txt);
    struct report_buf md = {0}, svg = {0};
    int ret = 1;
    if (!pts || !cells || !txt) {
        cli_error("search: report: out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const struct search_step *S = i ? &R->steps[i - 1] : NULL;
        double y = !S ? R->base_score : S->chosen >= 0 ? S->chosen_score : S->current;
        const char *id = !S               ? "(base set)"
                         : S->chosen >= 0 ? align_set_demo(pool, (size_t)S->chosen)->id
                                          : "(stop: no improvement)";
        pts[i] = (struct report_point){id, (double)i, y, NAN, NAN};
        snprintf(txt[i][0], sizeof txt[i][0], "%zu", i);
        fmt_score(y, txt[i][1], sizeof txt[i][1]);
        snprintf(txt[i][2], sizeof txt[i][2], "%zu", S ? S->n_c : (size_t)0);
        cells[4 * i] = txt[i][0];
        cells[4 * i + 1] = id;
        cells[4 * i + 2] = txt[i][1];
        cells[4 * i + 3] = txt[i][2];
    }
    char title[160];
    snprintf(title, sizeof title, "Greedy search (%zu validation questions)", x->qs->n);
    struct report_chart ch = {title, "step", "mean judge score"};
    const char *hdr[] = {"step", "chosen", "score", "candidates"};
    report_buf_printf(&md, "## %s\n\n", title);
    if (report_md_table(&md, hdr, 4, cells, n) != ICA_OK ||
        report_svg_steps(&svg, &ch, pts, n) != ICA_OK) {
        cli_error("search: report: out of memory");
        goto out;
    }
    report_buf_puts(&md, "\n![search](search.svg)\n\nEvery candidate: [search.csv](search.csv); "
                         "chosen set: [chosen.txt](chosen.txt)\n");
    xp_costs_md(x, &md, full, R->full_prompt_tokens);
    ret = rcli_write("search", x->out, "search.svg", &svg) ||
          rcli_write("search", x->out, "report.md", &md);
out:
    report_buf_free(&md);
    report_buf_free(&svg);
    free(pts);
    free(cells);
    free(txt);
    return ret;
}

int cmd_search(int argc, char **argv) {
    struct xp x;
    xp_init(&x, "search");
    const char *pool_path = NULL, *base_spec = "urial";
    long steps = 3;
    bool halving = false, after = false, always = false;
    static const struct option opts[] = {{"pool", required_argument, 0, OPT_POOL},
                                         {"base-demos", required_argument, 0, OPT_BASE},
                                         {"steps", required_argument, 0, OPT_STEPS},
                                         {"halving", no_argument, 0, OPT_HALVING},
                                         {"after", no_argument, 0, OPT_AFTER},
                                         {"always-take", no_argument, 0, OPT_ALWAYS},
                                         XP_LONGOPTS,
                                         {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, XP_SHORTOPTS, opts, NULL)) != -1) {
        switch (ch) {
        case OPT_POOL:
            pool_path = optarg;
            continue;
        case OPT_BASE:
            base_spec = optarg;
            continue;
        case OPT_STEPS:
            if (!cli_parse_int("--steps", optarg, 1, 100000, &steps))
                return 2;
            continue;
        case OPT_HALVING:
            halving = true;
            continue;
        case OPT_AFTER:
            after = true;
            continue;
        case OPT_ALWAYS:
            always = true;
            continue;
        case 'h':
            help(stdout);
            return 0;
        default:
            break;
        }
        int r = xp_parse(&x, ch, optarg);
        if (r < 0)
            return 2;
        if (r == 0) {
            help(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        cli_error("search: unexpected argument '%s'", argv[optind]);
        return 2;
    }
    if (!pool_path) {
        cli_error("search: --pool FILE is required (see icalign search --help)");
        return 2;
    }
    if (x.mode == XP_ALPACA_EVAL) {
        cli_error("search: --bench alpaca-eval is for sweep and ablate (search selects by the "
                  "mean first-turn judge rating; --val FILE for other questions)");
        return 2;
    }
    x.mode = XP_FIRST_TURN; /* --bench mt-bench: the first turns, as --val mt-bench */
    struct ica_error e = {0};
    struct align_set *base = NULL, *pool = NULL;
    if (xp_load_spec(&x, base_spec, &base))
        return 2;
    if (align_pool_load(pool_path, &pool, &e) != ICA_OK) {
        cli_error("search: %s", e.msg);
        align_set_free(base);
        return 2;
    }
    int ret = xp_open(&x);
    struct search_result *R = NULL;
    json_object *cfg = NULL;
    char *text = NULL;
    if (ret)
        goto out;
    ret = 1;
    /* the search run: what identifies its steps (not K: raising K continues the run) */
    char *bt = NULL, *pt = NULL;
    size_t bl = 0, pl = 0;
    char bsha[65], psha[65];
    if (align_set_write(base, &bt, &bl, &e) != ICA_OK || align_set_write(pool, &pt, &pl, &e)) {
        free(bt);
        free(pt);
        cli_error("search: %s", e.msg);
        goto out;
    }
    store_sha256_hex(bt, bl, bsha);
    store_sha256_hex(pt, pl, psha);
    free(bt);
    free(pt);
    cfg = json_object_new_object();
    json_object_object_add(cfg, "kind", json_object_new_string("search"));
    json_object_object_add(cfg, "model", json_object_new_string(x.model_key));
    json_object_object_add(cfg, "judge", json_object_new_string(x.judge_name));
    json_object_object_add(cfg, "val_sha256", json_object_new_string(x.qs->sha256));
    json_object_object_add(cfg, "base_sha256", json_object_new_string(bsha));
    json_object_object_add(cfg, "pool_sha256", json_object_new_string(psha));
    json_object_object_add(cfg, "decoding", json_object_new_string(x.decoding));
    json_object_object_add(cfg, "after", json_object_new_boolean(after));
    json_object_object_add(cfg, "always_take", json_object_new_boolean(always));
    json_object_object_add(cfg, "halving", json_object_new_boolean(halving));
    int64_t run_id = 0;
    if (xp_run(&x, "search", json_object_to_json_string_ext(cfg, JSON_C_TO_STRING_PLAIN), &run_id))
        goto out;
    if (!x.quiet)
        fprintf(stderr,
                "icalign: search: %zu candidates, %zu validation questions, up to %ld steps%s\n",
                align_set_count(pool), x.qs->n, steps, halving ? " (successive halving)" : "");
    struct search_greedy_opts o = {.base = base,
                                   .pool = pool,
                                   .after = after,
                                   .steps = (size_t)steps,
                                   .always_take = always,
                                   .halving = halving,
                                   .run_id = run_id};
    if (search_greedy(x.env, &o, &R, &e) != ICA_OK) {
        cli_error("search: %s", e.msg);
        goto out;
    }
    /* table + CSV */
    char path[4096], b1[32], b2[32];
    xp_path(&x, path, sizeof path, "search.csv");
    FILE *csv = fopen(path, "w");
    if (!csv) {
        cli_error("search: cannot write %s", path);
        goto out;
    }
    fprintf(csv, "step,pool_index,id,score,n_questions,n_rated,chosen\n");
    printf("base set: %s\n", fmt_score(R->base_score, b1, sizeof b1));
    uint64_t full = x.qs->n; /* the base set */
    for (size_t s = 0; s < R->n_steps; s++) {
        const struct search_step *S = &R->steps[s];
        full += S->full_calls;
        printf("\nstep %zu (current %s)\n", S->step, fmt_score(S->current, b1, sizeof b1));
        printf("  %5s  %-24s %8s %5s\n", "pool#", "id", "score", "n");
        for (size_t i = 0; i < S->n_c; i++) {
            const struct search_cand *c = &S->c[i];
            const char *id = align_set_demo(pool, c->pool_index)->id;
            bool chosen = (long)c->pool_index == S->chosen;
            printf("  %5zu  %-24.24s %8s %5zu%s\n", c->pool_index, id,
                   fmt_score(c->score, b2, sizeof b2), c->n_q, chosen ? "  <- chosen" : "");
            fprintf(csv, "%zu,%zu,", S->step, c->pool_index);
            csv_str(csv, id);
            fprintf(csv, ",%s,%zu,%zu,%d\n",
                    isnan(c->score) ? "" : fmt_score(c->score, b2, sizeof b2), c->n_q, c->n_valid,
                    chosen ? 1 : 0);
        }
        if (S->chosen < 0)
            printf("  no candidate improves: stop\n");
    }
    if (fclose(csv) != 0) {
        cli_error("search: writing %s failed", path);
        goto out;
    }
    printf("\nselected:");
    for (size_t i = 0; i < R->n_selected; i++)
        printf(" %s", align_set_demo(pool, R->selected[i])->id);
    printf("%s\nfinal score: %s (base %s)\n", R->n_selected ? "" : " (none)",
           fmt_score(R->final_score, b1, sizeof b1), fmt_score(R->base_score, b2, sizeof b2));
    size_t tl = 0;
    if (align_set_write(R->final_set, &text, &tl, &e) != ICA_OK) {
        cli_error("search: %s", e.msg);
        goto out;
    }
    xp_path(&x, path, sizeof path, "chosen.txt");
    if (search_write_file(path, text, tl, &e) != ICA_OK) {
        cli_error("search: %s", e.msg);
        goto out;
    }
    printf("chosen set written to %s\n", path);
    if (write_report(&x, R, pool, full))
        goto out;
    xp_print_costs(&x, stdout, full, R->full_prompt_tokens);
    ret = 0;
out:
    free(text);
    json_object_put(cfg);
    search_result_free(R);
    xp_close(&x);
    align_set_free(base);
    align_set_free(pool);
    return ret;
}
