/* icalign ablate: the QA-matching ablations (METHOD.md §3.3) as one table. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "report_cli.h"
#include "search_cli.h"

enum {
    OPT_DEMOS = XP_OPT_LAST + 1,
    OPT_VARIANTS,
    OPT_ANSWER_POOL,
    OPT_ID_POOL,
    OPT_OOD_POOL,
    OPT_QUERY_POOL,
    OPT_SHIFT,
    OPT_SEED
};

static void help(FILE *fp) {
    fprintf(fp,
            "usage: icalign ablate [--demos SPEC] [--variants LIST] [--answer-pool FILE]\n"
            "                      --judge-model J.gguf | --judge-base-url URL --judge-name NAME\n"
            "                      (-m MODEL.gguf | --base-url URL -m NAME) --out RUN_DIR\n\n"
            "The QA-matching experiment: the demonstration set and its ablated variants are\n"
            "each used to answer the validation questions, the answers judged, and one table\n"
            "printed (RUN_DIR/ablate.csv; sets in RUN_DIR/sets/; bar chart RUN_DIR/ablate.svg;\n"
            "summary and cost counters RUN_DIR/report.md). Answers and judgments are cached in\n"
            "RUN_DIR/icalign.db (shared with search and sweep). --bench mt-bench / alpaca-eval\n"
            "score the variants as sweep does (turn 1, turn 2, overall / LC win rate).\n\n"
            "Variants (queries, order and header unchanged; only answers change):\n"
            "  correct          the set as is\n"
            "  circular_shift   demo i gets the answer of demo i+SHIFT (mod n)\n"
            "  random_answer    answers replaced, in order, by those of --answer-pool\n"
            "  id_random        same with --id-pool (answers of a similar type)\n"
            "  ood_random       same with --ood-pool (answers of a clearly different type)\n"
            "  no_answer        answer blocks removed\n"
            "  unsupervised     answer-less queries of --query-pool + bridge + the set\n\n"
            "Options:\n"
            "  --demos SPEC            the set (default urial; any icalign prompt SPEC)\n"
            "  --variants LIST         comma-separated (default correct,circular_shift,no_answer)\n"
            "  --answer-pool FILE      answers for random_answer\n"
            "  --id-pool FILE, --ood-pool FILE   answers for id_random / ood_random\n"
            "  --query-pool FILE       queries for unsupervised (default: --answer-pool)\n"
            "  --shift N               circular shift (default 1, as the urial files; the\n"
            "                          urial_plus_3 files use -1)\n"
            "  --seed S                draw random answers with this seed (default: pool order)\n"
            "%s"
            "%s"
            "  -q, --quiet             no progress messages\n"
            "  -h, --help              this text\n\n"
            "Examples:\n"
            "  icalign ablate --variants correct,circular_shift,random_answer,no_answer \\\n"
            "      --answer-pool answers.jsonl -m base.gguf --judge-base-url URL \\\n"
            "      --judge-name gpt-4 --out runs/ablate1\n"
            "  # urial_plus_3's shift direction, both MT-Bench turns, 20 questions\n"
            "  icalign ablate --demos urial.plus.best_4.txt --variants correct,circular_shift \\\n"
            "      --shift -1 --bench mt-bench --limit 20 -m base.gguf \\\n"
            "      --judge-model judge.gguf --out runs/ablate1\n",
            xp_help(), cli_backend_opts_help());
}

int cmd_ablate(int argc, char **argv) {
    struct xp x;
    xp_init(&x, "ablate");
    const char *spec = "urial", *pools[4] = {NULL, NULL, NULL, NULL}; /* answer id ood query */
    char var_buf[256] = "correct,circular_shift,no_answer";
    long shift = 1, seed = -1;
    static const struct option opts[] = {{"demos", required_argument, 0, OPT_DEMOS},
                                         {"variants", required_argument, 0, OPT_VARIANTS},
                                         {"answer-pool", required_argument, 0, OPT_ANSWER_POOL},
                                         {"id-pool", required_argument, 0, OPT_ID_POOL},
                                         {"ood-pool", required_argument, 0, OPT_OOD_POOL},
                                         {"query-pool", required_argument, 0, OPT_QUERY_POOL},
                                         {"shift", required_argument, 0, OPT_SHIFT},
                                         {"seed", required_argument, 0, OPT_SEED},
                                         XP_LONGOPTS,
                                         {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, XP_SHORTOPTS, opts, NULL)) != -1) {
        switch (ch) {
        case OPT_DEMOS:
            spec = optarg;
            continue;
        case OPT_VARIANTS:
            snprintf(var_buf, sizeof var_buf, "%s", optarg);
            continue;
        case OPT_ANSWER_POOL:
        case OPT_ID_POOL:
        case OPT_OOD_POOL:
        case OPT_QUERY_POOL:
            pools[ch - OPT_ANSWER_POOL] = optarg;
            continue;
        case OPT_SHIFT:
            if (!cli_parse_int("--shift", optarg, -1000, 1000, &shift))
                return 2;
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
    if (optind < argc) {
        cli_error("ablate: unexpected argument '%s'", argv[optind]);
        return 2;
    }
    if (!pools[3])
        pools[3] = pools[0];
    char *vars[16];
    size_t nv = xp_split(var_buf, vars, 16);
    struct ica_error e = {0};
    struct align_set *base = NULL, *ps[4] = {NULL, NULL, NULL, NULL};
    struct align_set *sets[16] = {NULL};
    int ret = 2;
    if (nv == 0) {
        cli_error("ablate: --variants needs at least one name");
        return 2;
    }
    if (xp_load_spec(&x, spec, &base))
        return 2;
    for (int k = 0; k < 4; k++)
        if (pools[k] && align_pool_load(pools[k], &ps[k], &e) != ICA_OK) {
            cli_error("ablate: %s", e.msg);
            goto out;
        }
    for (size_t i = 0; i < nv; i++) {
        const char *v = vars[i];
        struct align_set *pool = NULL;
        enum align_variant var;
        if (!strcmp(v, "id_random") || !strcmp(v, "id.random_answer")) {
            var = ALIGN_VARIANT_RANDOM_ANSWER;
            pool = ps[1];
        } else if (!strcmp(v, "ood_random") || !strcmp(v, "ood.random_answer")) {
            var = ALIGN_VARIANT_RANDOM_ANSWER;
            pool = ps[2];
        } else if (align_variant_parse(v, &var, &e) != ICA_OK) {
            cli_error("ablate: %s (or id_random, ood_random)", e.msg);
            goto out;
        } else if (var == ALIGN_VARIANT_RANDOM_ANSWER)
            pool = ps[0];
        else if (var == ALIGN_VARIANT_UNSUPERVISED)
            pool = ps[3];
        if ((var == ALIGN_VARIANT_RANDOM_ANSWER || var == ALIGN_VARIANT_UNSUPERVISED) && !pool) {
            cli_error("ablate: variant %s needs its pool (--answer-pool, --id-pool, --ood-pool or "
                      "--query-pool)",
                      v);
            goto out;
        }
        struct align_transform_opts to = {
            .shift = (int)shift, .pool = pool, .seeded = seed >= 0, .seed = (uint64_t)seed};
        if (align_transform(base, var, &to, &sets[i], &e) != ICA_OK) {
            cli_error("ablate: %s: %s", v, e.msg);
            goto out;
        }
    }
    if ((ret = xp_open(&x)))
        goto out;
    char title[128];
    snprintf(title, sizeof title, "QA-matching ablation (%.60s, %zu questions)", x.val_name,
             x.qs->n);
    ret = xp_eval_table(&x, title, "variant", vars, sets, nv, "ablate.csv");
    if (!ret) {
        struct report_buf md = {0};
        ret = rcli_table("ablate", x.out, "ablate.csv", "ablate.svg", RCLI_BARS, title, "variant",
                         "variant", xp_score_name(&x), xp_score_label(&x), &md);
        xp_costs_md(&x, &md, 0, 0);
        if (!ret)
            ret = rcli_write("ablate", x.out, "report.md", &md);
        report_buf_free(&md);
    }
    if (!ret)
        xp_print_costs(&x, stdout, 0, 0);
out:
    for (size_t i = 0; i < 16; i++)
        align_set_free(sets[i]);
    for (int k = 0; k < 4; k++)
        align_set_free(ps[k]);
    align_set_free(base);
    xp_close(&x);
    return ret;
}
