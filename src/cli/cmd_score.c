/* icalign score: MT-Bench averages from FastChat judgment files and AlpacaEval 2.0 win rates
 * (raw and length-controlled) from alpaca_eval annotation files. */
#include "cli.h"

#include "icalign/eval.h"

#include <getopt.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_FILES 32

static void help(FILE *fp) {
    fprintf(fp,
            "usage: icalign score --judgments FILE.jsonl [...] [--semantics S] [--json|--csv]\n"
            "       icalign score --annotations annotations.json [...] [--json|--csv]\n\n"
            "MT-Bench: one row per model found in the FastChat single-answer judgment files:\n"
            "turn 1, turn 2, overall (pooled over both turns) and per-category averages.\n"
            "AlpacaEval 2.0: one row per generator_2 of the annotation files: win rate,\n"
            "standard error, discrete win rate, counts, length-controlled win rate.\n\n"
            "  -j, --judgments FILE      FastChat judgment JSONL (repeatable)\n"
            "  -s, --semantics S         current (default; -1 dropped), pre-2023-07-25\n"
            "                            (-1 averaged in), urial-last (last duplicate kept)\n"
            "  -q, --questions FILE      question.jsonl for categories (default: MT-Bench ids)\n"
            "  -a, --annotations FILE    alpaca_eval annotations.json (repeatable)\n"
            "  -o, --model-outputs FILE  model_outputs.json for avg_length (default: the\n"
            "                            annotations' output_2)\n"
            "  -g, --df-gamed FILE       length_controlled/df_gamed.csv (default: from\n"
            "                            $ICALIGN_SHARED or ../shared data/alpaca_eval)\n"
            "      --bootstrap N         resamples for the 95%% intervals in the table (1000;\n"
            "                            0 = none)\n"
            "      --seed N              bootstrap seed (0)\n"
            "      --json                JSON list, one object per model\n"
            "      --csv                 CSV, one line per model\n"
            "  -h, --help                this text\n");
}

struct qcat {
    int cat[1024];
};

static int cat_from_questions(int qid, void *ctx) {
    const struct qcat *q = ctx;
    return qid >= 0 && qid < 1024 ? q->cat[qid] : -1;
}

static int load_questions(const char *path, struct qcat *q) {
    for (int i = 0; i < 1024; i++)
        q->cat[i] = -1;
    FILE *fp = fopen(path, "r");
    if (!fp) {
        cli_error("%s: cannot open", path);
        return -1;
    }
    char *ln = NULL;
    size_t cap = 0, lineno = 0;
    int rc = 0;
    while (getline(&ln, &cap, fp) > 0) {
        lineno++;
        json_object *o = json_tokener_parse(ln), *id, *cat;
        if (!o) {
            if (strspn(ln, " \t\r\n") == strlen(ln))
                continue;
            cli_error("%s:%zu: invalid JSON", path, lineno);
            rc = -1;
            break;
        }
        if (json_object_object_get_ex(o, "question_id", &id) &&
            json_object_object_get_ex(o, "category", &cat)) {
            int qid = json_object_get_int(id);
            const char *c = json_object_get_string(cat);
            for (int k = 0; k < EVAL_MT_NCAT && qid >= 0 && qid < 1024; k++)
                if (c && !strcmp(c, eval_mt_category_name(k)))
                    q->cat[qid] = k;
        }
        json_object_put(o);
    }
    free(ln);
    fclose(fp);
    return rc;
}

static json_object *jnum(double v) {
    return isfinite(v) ? json_object_new_double(v) : NULL;
}

static void csv_num(double v) {
    if (isfinite(v))
        printf("%.17g", v);
}

static int score_mt(const char **files, int nfiles, int sem, const char *questions, int fmt,
                    unsigned boot, unsigned long seed) {
    struct eval_mt_judgments all = {0};
    struct eval_mt_judgments *parts[MAX_FILES] = {0};
    struct ica_error e;
    int rc = 0;
    size_t total = 0;
    for (int f = 0; f < nfiles; f++) {
        if (eval_mt_judgments_read(files[f], &parts[f], &e)) {
            cli_error("%s", e.msg);
            rc = 1;
            goto out;
        }
        total += parts[f]->n;
    }
    all.rows = malloc((total ? total : 1) * sizeof *all.rows);
    if (!all.rows) {
        cli_error("out of memory");
        rc = 1;
        goto out;
    }
    for (int f = 0; f < nfiles; f++)
        for (size_t i = 0; i < parts[f]->n; i++)
            all.rows[all.n++] = parts[f]->rows[i]; /* shallow: parts keep ownership */
    struct qcat qc;
    if (questions && load_questions(questions, &qc)) {
        rc = 1;
        goto out;
    }
    struct eval_mt_scores *s;
    if (eval_mt_aggregate(&all, (enum eval_mt_semantics)sem, questions ? cat_from_questions : NULL,
                          questions ? &qc : NULL, &s, &e)) {
        cli_error("%s", e.msg);
        rc = 1;
        goto out;
    }
    if (fmt == 1) {
        json_object *arr = json_object_new_array();
        for (size_t m = 0; m < s->n; m++) {
            const struct eval_mt_score *x = &s->m[m];
            json_object *o = json_object_new_object(), *cats = json_object_new_object();
            json_object_object_add(o, "model", json_object_new_string(x->model));
            json_object_object_add(o, "turn1", jnum(x->turn1));
            json_object_object_add(o, "turn2", jnum(x->turn2));
            json_object_object_add(o, "overall", jnum(x->overall));
            json_object_object_add(o, "n_turn1", json_object_new_int64((int64_t)x->n_turn1));
            json_object_object_add(o, "n_turn2", json_object_new_int64((int64_t)x->n_turn2));
            for (int c = 0; c < EVAL_MT_NCAT; c++)
                if (x->n_cat[c])
                    json_object_object_add(cats, eval_mt_category_name(c), jnum(x->cat[c]));
            json_object_object_add(o, "categories", cats);
            json_object_object_add(o, "semantics",
                                   json_object_new_string(eval_mt_semantics_name(sem)));
            json_object_object_add(o, "n_failed", json_object_new_int64((int64_t)x->n_failed));
            json_object_object_add(o, "n_duplicates",
                                   json_object_new_int64((int64_t)x->n_duplicates));
            json_object_array_add(arr, o);
        }
        printf("%s\n", json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(arr);
    } else if (fmt == 2) {
        printf("model,turn1,turn2,overall,n_turn1,n_turn2");
        for (int c = 0; c < EVAL_MT_NCAT; c++)
            printf(",%s", eval_mt_category_name(c));
        printf("\n");
        for (size_t m = 0; m < s->n; m++) {
            const struct eval_mt_score *x = &s->m[m];
            printf("\"%s\",", x->model);
            csv_num(x->turn1);
            putchar(',');
            csv_num(x->turn2);
            putchar(',');
            csv_num(x->overall);
            printf(",%zu,%zu", x->n_turn1, x->n_turn2);
            for (int c = 0; c < EVAL_MT_NCAT; c++) {
                putchar(',');
                csv_num(x->cat[c]);
            }
            printf("\n");
        }
    } else {
        printf("MT-Bench single-answer grading, semantics %s\n\n", eval_mt_semantics_name(sem));
        printf("%-32s %7s %7s %7s %-17s %4s %4s", "model", "turn1", "turn2", "overall",
               boot ? "95% CI (overall)" : "", "n1", "n2");
        for (int c = 0; c < EVAL_MT_NCAT; c++)
            printf(" %6.6s", eval_mt_category_name(c));
        printf("\n");
        for (size_t m = 0; m < s->n; m++) {
            const struct eval_mt_score *x = &s->m[m];
            char ci[64] = "";
            if (boot) {
                double lo, hi;
                eval_bootstrap_ci(x->scores, x->n_scores, boot, seed, &lo, &hi);
                snprintf(ci, sizeof ci, "[%.2f, %.2f]", lo, hi);
            }
            printf("%-32.32s %7.4f %7.4f %7.4f %-17s %4zu %4zu", x->model, x->turn1, x->turn2,
                   x->overall, ci, x->n_turn1, x->n_turn2);
            for (int c = 0; c < EVAL_MT_NCAT; c++)
                printf(" %6.3f", x->cat[c]);
            printf("\n");
        }
    }
    eval_mt_scores_free(s);
out:
    free(all.rows);
    for (int f = 0; f < nfiles; f++)
        eval_mt_judgments_free(parts[f]);
    return rc;
}

static const char *default_df_gamed(char *buf, size_t n) {
    const char *sh = getenv("ICALIGN_SHARED");
    const char *rel = "data/alpaca_eval/length_controlled/df_gamed.csv";
    struct stat st;
    if (sh && *sh) {
        snprintf(buf, n, "%s/%s", sh, rel);
        if (!stat(buf, &st))
            return buf;
    }
    snprintf(buf, n, "../shared/%s", rel);
    return stat(buf, &st) ? NULL : buf;
}

/* avg_length from a model_outputs.json: int(mean(len(output))) per generator */
static int avg_length_of(const char *path, const char *generator, double *out) {
    json_object *root = json_object_from_file(path);
    if (!root || !json_object_is_type(root, json_type_array)) {
        cli_error("%s: not a JSON list of outputs", path);
        json_object_put(root);
        return -1;
    }
    double tot = 0;
    size_t n = 0, len = json_object_array_length(root);
    for (size_t i = 0; i < len; i++) {
        json_object *o = json_object_array_get_idx(root, i), *v, *g;
        if (!json_object_object_get_ex(o, "output", &v) ||
            !json_object_is_type(v, json_type_string)) {
            cli_error("%s: record %zu: 'output' missing or not a string", path, i);
            json_object_put(root);
            return -1;
        }
        if (json_object_object_get_ex(o, "generator", &g) &&
            json_object_is_type(g, json_type_string) && generator &&
            strcmp(json_object_get_string(g), generator))
            continue;
        tot += (double)eval_utf8_len(json_object_get_string(v));
        n++;
    }
    json_object_put(root);
    *out = n ? floor(tot / (double)n) : NAN;
    return 0;
}

static int score_ae(const char **files, int nfiles, const char *outputs, const char *gamed, int fmt,
                    unsigned boot, unsigned long seed) {
    struct ica_error e;
    struct eval_ae_lcdata *d = NULL;
    char gbuf[4096];
    if (!gamed)
        gamed = default_df_gamed(gbuf, sizeof gbuf);
    if (gamed) {
        if (eval_ae_lcdata_read(gamed, &d, &e)) {
            cli_error("%s", e.msg);
            return 1;
        }
    } else {
        cli_error("df_gamed.csv not found (--df-gamed): length-controlled win rate omitted");
    }
    json_object *arr = json_object_new_array();
    int rc = 0;
    if (fmt == 2)
        printf("model,win_rate,standard_error,n_wins,n_wins_base,n_draws,n_total,"
               "discrete_win_rate,avg_length,length_controlled_winrate,lc_standard_error\n");
    else if (fmt == 0)
        printf("%-36s %8s %6s %-17s %8s %6s %5s %5s %5s %5s %7s\n", "model", "win_rate", "se",
               boot ? "95% CI" : "", "LC", "LC se", "wins", "base", "draws", "total", "avg_len");
    for (int f = 0; f < nfiles && !rc; f++) {
        struct eval_ae_annotations *a;
        if (eval_ae_annotations_read(files[f], &a, &e)) {
            cli_error("%s", e.msg);
            rc = 1;
            break;
        }
        /* one result per generator_2, rows kept in file order */
        unsigned char *done = calloc(a->n ? a->n : 1, 1);
        double *pref = malloc((a->n ? a->n : 1) * sizeof *pref);
        size_t *l1 = malloc((a->n ? a->n : 1) * sizeof *l1);
        size_t *l2 = malloc((a->n ? a->n : 1) * sizeof *l2);
        if (!done || !pref || !l1 || !l2) {
            cli_error("out of memory");
            rc = 1;
        }
        for (size_t s = 0; s < a->n && !rc; s++) {
            if (done[s])
                continue;
            const char *gen = a->rows[s].generator_2;
            size_t n = 0, nsame = 0;
            for (size_t i = s; i < a->n; i++)
                if (!strcmp(a->rows[i].generator_2, gen)) {
                    done[i] = 1;
                    pref[n] = a->rows[i].preference;
                    l1[n] = a->rows[i].len_1;
                    l2[n] = a->rows[i].len_2;
                    if (!strcmp(a->rows[i].generator_1, gen))
                        nsame++;
                    n++;
                }
            struct eval_ae_winrate w;
            eval_ae_winrate(pref, n, &w);
            double avg_len;
            if (outputs) {
                if (avg_length_of(outputs, gen, &avg_len)) {
                    rc = 1;
                    break;
                }
            } else {
                double tot = 0;
                for (size_t i = 0; i < n; i++)
                    tot += (double)l2[i];
                avg_len = floor(tot / (double)n);
            }
            struct eval_ae_lc lc = {0};
            int have_lc = 0;
            if (d || nsame == n) {
                if (eval_ae_length_controlled(d, pref, l1, l2, n, nsame == n && n > 0, &lc, &e))
                    cli_error("%s: %s: length-controlled win rate: %s", files[f], gen, e.msg);
                else
                    have_lc = 1;
            }
            double lcw = have_lc ? lc.winrate : NAN, lcse = have_lc ? lc.standard_error : NAN;
            if (fmt == 1) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "model", json_object_new_string(gen));
                json_object_object_add(o, "win_rate", jnum(w.win_rate));
                json_object_object_add(o, "standard_error", jnum(w.standard_error));
                json_object_object_add(o, "n_wins", json_object_new_int64((int64_t)w.n_wins));
                json_object_object_add(o, "n_wins_base",
                                       json_object_new_int64((int64_t)w.n_wins_base));
                json_object_object_add(o, "n_draws", json_object_new_int64((int64_t)w.n_draws));
                json_object_object_add(o, "n_total", json_object_new_int64((int64_t)w.n_total));
                json_object_object_add(o, "discrete_win_rate", jnum(w.discrete_win_rate));
                json_object_object_add(o, "avg_length",
                                       isfinite(avg_len) ? json_object_new_int64((int64_t)avg_len)
                                                         : NULL);
                json_object_object_add(o, "length_controlled_winrate", jnum(lcw));
                json_object_object_add(o, "lc_standard_error", jnum(lcse));
                if (have_lc) {
                    json_object *gw = json_object_new_object();
                    json_object_object_add(gw, "np.tanh(std_delta_len)", jnum(lc.w_len));
                    json_object_object_add(gw, "instruction_difficulty", jnum(lc.w_id));
                    json_object_object_add(gw, "not_gamed_baseline.astype(float)", jnum(lc.w_m));
                    json_object_object_add(o, "glm_weights", gw);
                }
                json_object_array_add(arr, o);
            } else if (fmt == 2) {
                printf("\"%s\",", gen);
                csv_num(w.win_rate);
                putchar(',');
                csv_num(w.standard_error);
                printf(",%zu,%zu,%zu,%zu,", w.n_wins, w.n_wins_base, w.n_draws, w.n_total);
                csv_num(w.discrete_win_rate);
                putchar(',');
                if (isfinite(avg_len))
                    printf("%.0f", avg_len);
                putchar(',');
                csv_num(lcw);
                putchar(',');
                csv_num(lcse);
                printf("\n");
            } else {
                char ci[64] = "";
                if (boot) {
                    double *q = malloc((n ? n : 1) * sizeof *q), lo, hi;
                    size_t nq = 0;
                    for (size_t i = 0; q && i < n; i++) {
                        double p = pref[i] == 0 ? 1.5 : pref[i];
                        if (p >= 1 && p <= 2)
                            q[nq++] = 100 * (p - 1);
                    }
                    if (q) {
                        eval_bootstrap_ci(q, nq, boot, seed, &lo, &hi);
                        snprintf(ci, sizeof ci, "[%.2f, %.2f]", lo, hi);
                    }
                    free(q);
                }
                printf("%-36.36s %8.3f %6.3f %-17s %8.3f %6.3f %5zu %5zu %5zu %5zu %7.0f\n", gen,
                       w.win_rate, w.standard_error, ci, lcw, lcse, w.n_wins, w.n_wins_base,
                       w.n_draws, w.n_total, avg_len);
            }
            free(lc.glm_pref);
        }
        free(done);
        free(pref);
        free(l1);
        free(l2);
        eval_ae_annotations_free(a);
    }
    if (fmt == 1 && !rc)
        printf("%s\n", json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(arr);
    eval_ae_lcdata_free(d);
    return rc;
}

int cmd_score(int argc, char **argv) {
    const char *jfiles[MAX_FILES], *afiles[MAX_FILES];
    int nj = 0, na = 0, fmt = 0, sem = EVAL_MT_CURRENT;
    const char *questions = NULL, *outputs = NULL, *gamed = NULL;
    long boot = 1000, seed = 0;
    enum { OPT_JSON = 256, OPT_CSV, OPT_BOOT, OPT_SEED };
    static const struct option opts[] = {{"judgments", required_argument, 0, 'j'},
                                         {"semantics", required_argument, 0, 's'},
                                         {"questions", required_argument, 0, 'q'},
                                         {"annotations", required_argument, 0, 'a'},
                                         {"model-outputs", required_argument, 0, 'o'},
                                         {"df-gamed", required_argument, 0, 'g'},
                                         {"bootstrap", required_argument, 0, OPT_BOOT},
                                         {"seed", required_argument, 0, OPT_SEED},
                                         {"json", no_argument, 0, OPT_JSON},
                                         {"csv", no_argument, 0, OPT_CSV},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "j:s:q:a:o:g:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'j':
        case 'a':
            if ((ch == 'j' ? nj : na) >= MAX_FILES) {
                cli_error("at most %d files per kind", MAX_FILES);
                return 2;
            }
            if (ch == 'j')
                jfiles[nj++] = optarg;
            else
                afiles[na++] = optarg;
            break;
        case 's':
            sem = eval_mt_semantics_from_name(optarg);
            if (sem < 0) {
                cli_error("--semantics: '%s' is not current, pre-2023-07-25 or urial-last", optarg);
                return 2;
            }
            break;
        case 'q':
            questions = optarg;
            break;
        case 'o':
            outputs = optarg;
            break;
        case 'g':
            gamed = optarg;
            break;
        case OPT_BOOT:
            if (!cli_parse_int("--bootstrap", optarg, 0, 1000000, &boot))
                return 2;
            break;
        case OPT_SEED:
            if (!cli_parse_int("--seed", optarg, 0, 2147483647L, &seed))
                return 2;
            break;
        case OPT_JSON:
            fmt = 1;
            break;
        case OPT_CSV:
            fmt = 2;
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
        cli_error("unexpected argument '%s'", argv[optind]);
        return 2;
    }
    if ((nj == 0) == (na == 0)) {
        cli_error("give --judgments (MT-Bench) or --annotations (AlpacaEval), not both");
        help(stderr);
        return 2;
    }
    if (nj)
        return score_mt(jfiles, nj, sem, questions, fmt, (unsigned)boot, (unsigned long)seed);
    return score_ae(afiles, na, outputs, gamed, fmt, (unsigned)boot, (unsigned long)seed);
}
