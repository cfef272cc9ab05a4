/* icalign sweep: the many-shot scaling experiment (METHOD.md §3.2). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "report_cli.h"
#include "search_cli.h"

enum { OPT_POOL = XP_OPT_LAST + 1, OPT_BASE, OPT_FAMILY, OPT_N, OPT_SEED };

static void help(FILE *fp) {
    fprintf(
        fp,
        "usage: icalign sweep --pool POOL.jsonl --family F[,F...] --n 3,5,10,20,50\n"
        "                     --judge-model J.gguf | --judge-base-url URL --judge-name NAME\n"
        "                     (-m MODEL.gguf | --base-url URL -m NAME) --out RUN_DIR\n\n"
        "Score vs number of demonstrations N for each family (the paper's many-shot\n"
        "experiment): each set is built, the validation questions answered with it and\n"
        "judged (everything cached in RUN_DIR/icalign.db, shared with search and ablate),\n"
        "and a table of mean score with a 95%% bootstrap interval is printed and written to\n"
        "RUN_DIR/sweep-FAMILY.csv; every set is written to RUN_DIR/sets/FAMILY-N.txt, the\n"
        "chart of each family to RUN_DIR/sweep-FAMILY.svg (score vs N, interval as a band)\n"
        "and a summary with the cost counters to RUN_DIR/report.md. With --bench mt-bench\n"
        "the table has turn 1, turn 2 and overall (the score); with --bench alpaca-eval the\n"
        "length-controlled win rate (the score, interval +-1.96 standard errors) and the\n"
        "win rate against the reference outputs.\n\n"
        "Families (B = number of base demos, URIAL: 3):\n"
        "  random        N-B demos drawn at random from the pool (seed + N), then the base\n"
        "                demos\n"
        "  greedy-rank   the top N-B pool demos of the single-step ranking (each pool demo\n"
        "                alone before the base demos, scored on the validation questions),\n"
        "                then the base demos; the ranking's answers are cached too\n"
        "  diversity     N demos stratified over the pool's source field, no base demos\n"
        "  unsupervised  N answer-less pool queries (stratified), the bridge text, then\n"
        "                the base demos (the ICL repository's unsupervised layout)\n\n"
        "Options:\n"
        "  --pool FILE             demonstration pool (JSONL or URIAL prompt file)\n"
        "  --family LIST           families, comma-separated (default random)\n"
        "  --n LIST                values of N (default 3,5,10,20,30,40,50)\n"
        "  --base-demos SPEC       base demonstrations (default urial)\n"
        "  --seed S                seed of the random and stratified draws (default 0)\n"
        "%s"
        "%s"
        "  -q, --quiet             no progress messages\n"
        "  -h, --help              this text\n\n"
        "Examples:\n"
        "  icalign sweep --pool my_pool.jsonl --family random,diversity --n 3,5,10 \\\n"
        "      -m base.gguf --judge-base-url http://localhost:8000/v1 --judge-name judge \\\n"
        "      --limit 20 --out runs/sweep1\n"
        "  # MT-Bench turn 1 / turn 2 / overall of the greedy-ranked sets, local judge\n"
        "  icalign sweep --pool my_pool.jsonl --family greedy-rank --n 3,5,10 --bench mt-bench \\\n"
        "      -m base.gguf -c 8192 --judge-model judge.gguf --out runs/sweep1\n"
        "  # AlpacaEval 2.0 length-controlled win rate (the judge must return logprobs)\n"
        "  icalign sweep --pool my_pool.jsonl --family random --n 3,10 --bench alpaca-eval \\\n"
        "      -m base.gguf --judge-base-url https://api.openai.com/v1 \\\n"
        "      --judge-name gpt-4-1106-preview --out runs/sweep1\n",
        xp_help(), cli_backend_opts_help());
}

static int rank_cmp_score(const double *s, size_t a, size_t b) {
    bool an = isnan(s[a]), bn = isnan(s[b]);
    if (an != bn)
        return an ? 1 : -1;
    if (!an && s[a] != s[b])
        return s[a] > s[b] ? -1 : 1;
    return a < b ? -1 : a > b ? 1 : 0;
}

int cmd_sweep(int argc, char **argv) {
    struct xp x;
    xp_init(&x, "sweep");
    const char *pool_path = NULL, *base_spec = "urial";
    char fam_buf[256] = "random", n_buf[256] = "3,5,10,20,30,40,50";
    long seed = 0;
    static const struct option opts[] = {{"pool", required_argument, 0, OPT_POOL},
                                         {"base-demos", required_argument, 0, OPT_BASE},
                                         {"family", required_argument, 0, OPT_FAMILY},
                                         {"n", required_argument, 0, OPT_N},
                                         {"seed", required_argument, 0, OPT_SEED},
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
        case OPT_FAMILY:
            snprintf(fam_buf, sizeof fam_buf, "%s", optarg);
            continue;
        case OPT_N:
            snprintf(n_buf, sizeof n_buf, "%s", optarg);
            continue;
        case OPT_SEED:
            if (!cli_parse_int("--seed", optarg, 0, INT32_MAX, &seed))
                return 2;
            continue;
        case 'h':
            help(stdout);
            return 0;
        default:
            break;
        }
        int r = xp_parse(&x, ch, optarg);
        if (r <= 0) {
            if (r == 0)
                help(stderr);
            return 2;
        }
    }
    if (optind < argc || !pool_path) {
        cli_error("sweep: %s", optind < argc ? "unexpected argument" : "--pool FILE is required");
        return 2;
    }
    char *fams[8], *ns_s[64];
    size_t nf = xp_split(fam_buf, fams, 8), nn = xp_split(n_buf, ns_s, 64);
    long ns[64];
    for (size_t i = 0; i < nn; i++)
        if (!cli_parse_int("--n", ns_s[i], 0, 100000, &ns[i]))
            return 2;
    for (size_t f = 0; f < nf; f++)
        if (strcmp(fams[f], "random") && strcmp(fams[f], "greedy-rank") &&
            strcmp(fams[f], "diversity") && strcmp(fams[f], "unsupervised")) {
            cli_error("sweep: unknown family '%s' (random, greedy-rank, diversity, unsupervised)",
                      fams[f]);
            return 2;
        }
    if (nf == 0 || nn == 0) {
        cli_error("sweep: --family and --n need at least one value");
        return 2;
    }
    struct ica_error e = {0};
    struct align_set *base = NULL, *pool = NULL;
    if (xp_load_spec(&x, base_spec, &base))
        return 2;
    if (align_pool_load(pool_path, &pool, &e) != ICA_OK) {
        cli_error("sweep: %s", e.msg);
        align_set_free(base);
        return 2;
    }
    const size_t nb = align_set_count(base), np = align_set_count(pool);
    int ret = xp_open(&x);
    struct align_set **sets = calloc(nn + np + 1, sizeof *sets);
    char **names = calloc(nn + 1, sizeof *names);
    size_t *rank = calloc(np + 1, sizeof *rank);
    double *rs = NULL;
    struct report_buf md = {0};
    if (ret)
        goto out;
    ret = 1;
    if (!sets || !names || !rank)
        goto out;
    for (size_t f = 0; f < nf; f++) {
        const char *fam = fams[f];
        if (strcmp(fam, "greedy-rank") == 0 && !rs) {
            /* single-step ranking: each pool demo alone before the base demos */
            for (size_t p = 0; p < np; p++)
                if (search_compose(base, pool, &p, 1, false, &sets[p], &e) != ICA_OK) {
                    cli_error("sweep: %s", e.msg);
                    goto out;
                }
            double *sc = calloc(np * x.qs->n + 1, sizeof *sc);
            rs = calloc(np + 1, sizeof *rs);
            if (!sc || !rs || search_eval(x.env, sets, np, x.qs->n, sc, &e) != ICA_OK) {
                free(sc);
                cli_error("sweep: ranking: %s", e.msg);
                goto out;
            }
            for (size_t p = 0; p < np; p++) {
                rs[p] = search_mean(&sc[p * x.qs->n], x.qs->n, NULL);
                rank[p] = p;
                align_set_free(sets[p]);
                sets[p] = NULL;
            }
            free(sc);
            for (size_t i = 1; i < np; i++) /* stable insertion sort: score desc, index asc */
                for (size_t k = i; k > 0 && rank_cmp_score(rs, rank[k - 1], rank[k]) > 0; k--) {
                    size_t t = rank[k];
                    rank[k] = rank[k - 1];
                    rank[k - 1] = t;
                }
        }
        size_t n = 0;
        for (size_t i = 0; i < nn; i++) {
            size_t N = (size_t)ns[i];
            struct align_set *s = NULL, *x1 = NULL;
            int rc = ICA_OK;
            bool with_base = !strcmp(fam, "random") || !strcmp(fam, "greedy-rank");
            if (with_base && N < nb) {
                fprintf(stderr, "icalign: sweep: %s: N=%zu is below the %zu base demos; skipped\n",
                        fam, N, nb);
                continue;
            }
            if (!strcmp(fam, "random")) {
                rc = align_pool_select_random(pool, N - nb, (uint64_t)seed + N, base, &x1, &e);
                if (!rc && !(s = align_set_clone(base)))
                    rc = ICA_ERR_NOMEM;
                if (!rc)
                    rc = align_set_merge(s, x1, false, &e);
            } else if (!strcmp(fam, "greedy-rank")) {
                if (N - nb > np)
                    rc = ica_seterr(&e, ICA_ERR_RANGE, "the pool has %zu demos", np);
                else
                    rc = search_compose(base, pool, rank, N - nb, false, &s, &e);
            } else if (!strcmp(fam, "diversity")) {
                rc = align_pool_select_stratified(pool, N, (uint64_t)seed + N, NULL, &x1, &e);
                if (!rc && !(s = align_set_new(align_set_header(base))))
                    rc = ICA_ERR_NOMEM;
                if (!rc)
                    rc = align_set_merge(s, x1, false, &e);
            } else {
                rc = align_pool_select_stratified(pool, N, (uint64_t)seed + N, NULL, &x1, &e);
                struct align_transform_opts to = {.pool = x1};
                if (!rc)
                    rc = align_transform(base, ALIGN_VARIANT_UNSUPERVISED, &to, &s, &e);
            }
            align_set_free(x1);
            if (rc) {
                align_set_free(s);
                cli_error("sweep: %s N=%zu: %s", fam, N, e.msg);
                goto out;
            }
            char nm[64];
            snprintf(nm, sizeof nm, "%s-%zu", fam, N);
            names[n] = strdup(nm);
            sets[n++] = s;
        }
        char title[128], csv[128];
        snprintf(title, sizeof title, "\nfamily %.40s (%.60s, %zu questions)", fam, x.val_name,
                 x.qs->n);
        snprintf(csv, sizeof csv, "sweep-%s.csv", fam);
        int trc = n ? xp_eval_table(&x, title, "set", names, sets, n, csv) : 0;
        if (!trc && n) {
            char svg[128], rtitle[160];
            snprintf(svg, sizeof svg, "sweep-%s.svg", fam);
            snprintf(rtitle, sizeof rtitle, "Sweep: family %.40s (%.60s, %zu questions)", fam,
                     x.val_name, x.qs->n);
            trc = rcli_table("sweep", x.out, csv, svg, RCLI_LINE, rtitle, "set",
                             "N (demonstrations)", xp_score_name(&x), xp_score_label(&x), &md);
        }
        for (size_t i = 0; i < n; i++) {
            align_set_free(sets[i]);
            sets[i] = NULL;
            free(names[i]);
            names[i] = NULL;
        }
        if (trc)
            goto out;
    }
    xp_costs_md(&x, &md, 0, 0);
    if (md.len && rcli_write("sweep", x.out, "report.md", &md))
        goto out;
    xp_print_costs(&x, stdout, 0, 0);
    ret = 0;
out:
    report_buf_free(&md);
    for (size_t i = 0; sets && i < nn + np + 1; i++)
        align_set_free(sets[i]);
    for (size_t i = 0; names && i < nn + 1; i++)
        free(names[i]);
    free(sets);
    free(names);
    free(rank);
    free(rs);
    xp_close(&x);
    align_set_free(base);
    align_set_free(pool);
    return ret;
}
