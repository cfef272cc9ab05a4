/* icalign score: MT-Bench averages from FastChat judgment files and AlpacaEval 2.0 win rates
 * (raw and length-controlled) from alpaca_eval annotation files. */
#include "cli.h"

#include "icalign/eval.h"
#include "icalign/store.h"

#include <errno.h>
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
            "       icalign score --annotations annotations.json [...] [--json|--csv]\n"
            "       icalign score --run RUN_DIR [--run RUN_DIR ...] [--json|--csv]\n\n"
            "MT-Bench: one row per model found in the FastChat single-answer judgment files:\n"
            "turn 1, turn 2, overall (pooled over both turns) and per-category averages.\n"
            "AlpacaEval 2.0: one row per generator_2 of the annotation files: win rate,\n"
            "standard error, discrete win rate, counts, length-controlled win rate.\n\n"
            "  -j, --judgments FILE      FastChat judgment JSONL (repeatable)\n"
            "  -s, --semantics S         current (default; -1 dropped), pre-2023-07-25\n"
            "                            (-1 averaged in), urial-last (last duplicate kept)\n"
            "  -q, --questions FILE      question.jsonl for categories (default: MT-Bench ids)\n"
            "  -a, --annotations FILE    alpaca_eval annotations.json (repeatable)\n"
            "  -r, --run RUN_DIR         the judgments stored by icalign judge in a run\n"
            "                            directory (repeatable: runs side by side, one row per\n"
            "                            directory, judge and answer run; --json objects carry\n"
            "                            \"bench\": mt-bench|alpaca-eval|just-eval)\n"
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

/* Prints MT-Bench scores: table (fmt 0), JSON (1; appended to out_arr when given, with "bench":
 * tag when tag is set) or CSV (2). */
static void mt_emit(const struct eval_mt_scores *s, int sem, int fmt, unsigned boot,
                    unsigned long seed, json_object *out_arr, const char *tag) {
    if (fmt == 1) {
        json_object *arr = out_arr ? out_arr : json_object_new_array();
        for (size_t m = 0; m < s->n; m++) {
            const struct eval_mt_score *x = &s->m[m];
            json_object *o = json_object_new_object(), *cats = json_object_new_object();
            if (tag)
                json_object_object_add(o, "bench", json_object_new_string(tag));
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
        if (!out_arr) {
            printf("%s\n", json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY |
                                                                   JSON_C_TO_STRING_NOSLASHESCAPE));
            json_object_put(arr);
        }
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
    mt_emit(s, sem, fmt, boot, seed, NULL, NULL);
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

/* Prints one AlpacaEval row (n preferences with reference/model lengths): table line (fmt 0),
 * JSON object appended to arr (1, with "bench": tag when tag is set) or CSV line (2). */
static void ae_emit(const char *gen, const double *pref, const size_t *l1, const size_t *l2,
                    size_t n, bool is_base, double avg_len, const struct eval_ae_lcdata *d, int fmt,
                    unsigned boot, unsigned long seed, json_object *arr, const char *tag,
                    const char *src) {
    struct ica_error e;
    struct eval_ae_winrate w;
    eval_ae_winrate(pref, n, &w);
    struct eval_ae_lc lc = {0};
    int have_lc = 0;
    if (d || is_base) {
        if (eval_ae_length_controlled(d, pref, l1, l2, n, is_base, &lc, &e))
            cli_error("%s: %s: length-controlled win rate: %s", src, gen, e.msg);
        else
            have_lc = 1;
    }
    double lcw = have_lc ? lc.winrate : NAN, lcse = have_lc ? lc.standard_error : NAN;
    if (fmt == 1) {
        json_object *o = json_object_new_object();
        if (tag)
            json_object_object_add(o, "bench", json_object_new_string(tag));
        json_object_object_add(o, "model", json_object_new_string(gen));
        json_object_object_add(o, "win_rate", jnum(w.win_rate));
        json_object_object_add(o, "standard_error", jnum(w.standard_error));
        json_object_object_add(o, "n_wins", json_object_new_int64((int64_t)w.n_wins));
        json_object_object_add(o, "n_wins_base", json_object_new_int64((int64_t)w.n_wins_base));
        json_object_object_add(o, "n_draws", json_object_new_int64((int64_t)w.n_draws));
        json_object_object_add(o, "n_total", json_object_new_int64((int64_t)w.n_total));
        json_object_object_add(o, "discrete_win_rate", jnum(w.discrete_win_rate));
        json_object_object_add(o, "avg_length",
                               isfinite(avg_len) ? json_object_new_int64((int64_t)avg_len) : NULL);
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
               w.win_rate, w.standard_error, ci, lcw, lcse, w.n_wins, w.n_wins_base, w.n_draws,
               w.n_total, avg_len);
    }
    free(lc.glm_pref);
}

static void ae_header(int fmt, unsigned boot) {
    if (fmt == 2)
        printf("model,win_rate,standard_error,n_wins,n_wins_base,n_draws,n_total,"
               "discrete_win_rate,avg_length,length_controlled_winrate,lc_standard_error\n");
    else if (fmt == 0)
        printf("%-36s %8s %6s %-17s %8s %6s %5s %5s %5s %5s %7s\n", "model", "win_rate", "se",
               boot ? "95% CI" : "", "LC", "LC se", "wins", "base", "draws", "total", "avg_len");
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
    ae_header(fmt, boot);
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
            ae_emit(gen, pref, l1, l2, n, nsame == n && n > 0, avg_len, d, fmt, boot, seed, arr,
                    NULL, files[f]);
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

/* ==== scores from run stores (icalign judge) ==== */

struct qcmap {
    int *qid, *cat;
    size_t n, cap;
};

static int cat_from_map(int qid, void *ctx) {
    const struct qcmap *m = ctx;
    for (size_t i = 0; i < m->n; i++)
        if (m->qid[i] == qid)
            return m->cat[i];
    return eval_mt_category_of_qid(qid);
}

static void qcmap_add(struct qcmap *m, int qid, int cat) {
    for (size_t i = 0; i < m->n; i++)
        if (m->qid[i] == qid)
            return;
    if (m->n == m->cap) {
        size_t nc = m->cap ? 2 * m->cap : 64;
        int *a = realloc(m->qid, nc * sizeof *a), *b = a ? realloc(m->cat, nc * sizeof *b) : NULL;
        if (a)
            m->qid = a;
        if (!b)
            return;
        m->cat = b;
        m->cap = nc;
    }
    m->qid[m->n] = qid;
    m->cat[m->n++] = cat;
}

/* One (run directory, answer run, judge) group of judgments. */
struct rgroup {
    char *label, *proto, *judge;
    struct store_judgment_row *rows; /* borrowed */
    size_t n;
};

static const char *jget_str(json_object *o, const char *k) {
    json_object *v;
    return o && json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

/* just-eval means per aspect over parsed items. */
static void je_emit(const struct rgroup *g, bool safety, int fmt, json_object *arr, bool *header) {
    double sum[EVAL_JE_NASPECT + 1] = {0};
    size_t n = 0, n_total = 0;
    double words = 0;
    const int na = safety ? 1 : EVAL_JE_NASPECT;
    for (size_t k = 0; k < g->n; k++) {
        const struct store_judgment_row *x = &g->rows[k];
        if (x->error)
            continue;
        n_total++;
        /* length = whitespace-separated words of the output */
        bool in = false;
        for (size_t c = 0; c < x->cleaned_len; c++) {
            bool ws = x->cleaned[c] == ' ' || x->cleaned[c] == '\n' || x->cleaned[c] == '\t' ||
                      x->cleaned[c] == '\r' || x->cleaned[c] == '\f' || x->cleaned[c] == '\v';
            if (!ws && !in)
                words++;
            in = !ws;
        }
        json_object *p = x->parsed ? json_tokener_parse(x->parsed) : NULL, *v;
        bool ok = p != NULL;
        double sc[EVAL_JE_NASPECT];
        for (int a = 0; ok && a < na; a++) {
            const char *name = safety ? "safety" : eval_je_aspect_name(a);
            if (json_object_object_get_ex(p, name, &v))
                sc[a] = json_object_get_double(v);
            else
                ok = false;
        }
        if (ok) {
            for (int a = 0; a < na; a++)
                sum[a] += sc[a];
            n++;
        }
        json_object_put(p);
    }
    double mean[EVAL_JE_NASPECT], avg = 0;
    for (int a = 0; a < na; a++) {
        mean[a] = n ? sum[a] / (double)n : NAN;
        avg += mean[a] / na;
    }
    const double len = n_total ? words / (double)n_total : NAN;
    if (fmt == 1) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "bench",
                               json_object_new_string(safety ? "just-eval-safety" : "just-eval"));
        json_object_object_add(o, "model", json_object_new_string(g->label));
        for (int a = 0; a < na; a++)
            json_object_object_add(o, safety ? "safety" : eval_je_aspect_name(a), jnum(mean[a]));
        if (!safety)
            json_object_object_add(o, "avg", jnum(avg));
        json_object_object_add(o, "n_parsed", json_object_new_int64((int64_t)n));
        json_object_object_add(o, "n_total", json_object_new_int64((int64_t)n_total));
        json_object_object_add(o, "length", jnum(len));
        json_object_array_add(arr, o);
        return;
    }
    if (!*header) {
        *header = true;
        if (fmt == 2) {
            printf("model");
            for (int a = 0; a < na; a++)
                printf(",%s", safety ? "safety" : eval_je_aspect_name(a));
            printf("%s,n_parsed,n_total,length\n", safety ? "" : ",avg");
        } else {
            printf("\njust-eval %s (1-5, mean over parsed judgments)\n\n",
                   safety ? "safety" : "multi-aspect");
            printf("%-36s", "model");
            for (int a = 0; a < na; a++)
                printf(" %7.7s", safety ? "safety" : eval_je_aspect_name(a));
            printf("%s %6s %6s %7s\n", safety ? "" : "     avg", "parsed", "total", "length");
        }
    }
    if (fmt == 2) {
        printf("\"%s\"", g->label);
        for (int a = 0; a < na; a++) {
            putchar(',');
            csv_num(mean[a]);
        }
        if (!safety) {
            putchar(',');
            csv_num(avg);
        }
        printf(",%zu,%zu,", n, n_total);
        csv_num(len);
        printf("\n");
    } else {
        printf("%-36.36s", g->label);
        for (int a = 0; a < na; a++)
            printf(" %7.3f", mean[a]);
        if (!safety)
            printf(" %7.3f", avg);
        printf(" %6zu %6zu %7.1f\n", n, n_total, len);
    }
}

static int score_runs(const char **dirs, int nd, int sem, const char *gamed, int fmt, unsigned boot,
                      unsigned long seed) {
    struct ica_error e = {0};
    int rc = 0;
    struct store *stores[MAX_FILES] = {0};
    struct store_judgment_row *rowsets[MAX_FILES * 8] = {0};
    size_t nrowsets[MAX_FILES * 8] = {0}, n_sets = 0;
    struct rgroup *groups = NULL;
    size_t ng = 0, capg = 0;
    struct store_run_row *runs = NULL;
    size_t n_runs = 0;
    for (int d = 0; d < nd && !rc; d++) {
        char db[4200];
        struct stat st;
        snprintf(db, sizeof db, "%s/%s", dirs[d], STORE_DB_NAME);
        if (stat(db, &st) != 0) {
            cli_error("%s: no run store (%s)", db, strerror(errno));
            rc = 1;
            break;
        }
        if (store_open(dirs[d], &stores[d], &e) ||
            store_runs_list(stores[d], "answer", &runs, &n_runs, &e)) {
            cli_error("%s", e.msg);
            rc = 1;
            break;
        }
        char *abs = realpath(dirs[d], NULL);
        const char *base =
            abs && strrchr(abs, '/') && strrchr(abs, '/')[1] ? strrchr(abs, '/') + 1 : dirs[d];
        size_t first = ng, runs_with = 0;
        for (size_t r = 0; r < n_runs && !rc; r++) {
            struct store_judgment_row *rows = NULL;
            size_t n = 0;
            if (n_sets == MAX_FILES * 8) {
                cli_error("too many runs");
                rc = 1;
                break;
            }
            if (store_judgments_list(stores[d], runs[r].id, NULL, &rows, &n, &e)) {
                cli_error("%s", e.msg);
                rc = 1;
                break;
            }
            rowsets[n_sets] = rows;
            nrowsets[n_sets++] = n;
            if (n)
                runs_with++;
            for (size_t k = 0; k < n;) {
                size_t k2 = k;
                while (k2 < n && !strcmp(rows[k2].judge, rows[k].judge))
                    k2++;
                if (ng == capg) {
                    capg = capg ? 2 * capg : 16;
                    struct rgroup *t = realloc(groups, capg * sizeof *t);
                    if (!t) {
                        rc = 1;
                        break;
                    }
                    groups = t;
                }
                struct rgroup *g = &groups[ng++];
                memset(g, 0, sizeof *g);
                g->rows = rows + k;
                g->n = k2 - k;
                const char *sl = strchr(rows[k].judge, '/');
                g->proto = strndup(rows[k].judge,
                                   sl ? (size_t)(sl - rows[k].judge) : strlen(rows[k].judge));
                g->judge = strdup(sl ? sl + 1 : "");
                /* label: the directory, + judge when it has several judges of the protocol,
                 * + run key when it has several judged answer runs (fixed below) */
                size_t ll = strlen(base) + strlen(g->judge) + 32;
                g->label = malloc(ll);
                if (g->label)
                    snprintf(g->label, ll, "%s@%.8s", base, runs[r].key);
                k = k2;
            }
        }
        /* simplify labels */
        for (size_t a = first; a < ng; a++) {
            size_t same_proto = 0;
            for (size_t b = first; b < ng; b++)
                if (!strcmp(groups[a].proto, groups[b].proto))
                    same_proto++;
            char *at = groups[a].label ? strchr(groups[a].label, '@') : NULL;
            char key[16] = "";
            if (at) {
                snprintf(key, sizeof key, "%s", at);
                *at = '\0';
            }
            size_t ll =
                strlen(groups[a].label ? groups[a].label : "") + strlen(groups[a].judge) + 32;
            char *lab = malloc(ll);
            if (lab) {
                snprintf(lab, ll, "%s%s%s%s%s", groups[a].label ? groups[a].label : "",
                         runs_with > 1 ? key : "", same_proto > 1 ? " (" : "",
                         same_proto > 1 ? groups[a].judge : "", same_proto > 1 ? ")" : "");
                free(groups[a].label);
                groups[a].label = lab;
            }
        }
        free(abs);
        store_run_rows_free(runs, n_runs);
        runs = NULL;
        n_runs = 0;
    }
    if (rc)
        goto out;
    if (ng == 0) {
        cli_error("no judgments in the run store%s (run icalign judge first)", nd > 1 ? "s" : "");
        rc = 1;
        goto out;
    }
    json_object *arr = fmt == 1 ? json_object_new_array() : NULL;
    bool any_out = false;
    /* MT-Bench */
    size_t n_mt = 0;
    for (size_t g = 0; g < ng; g++)
        if (!strcmp(groups[g].proto, "mt-bench"))
            n_mt += groups[g].n;
    if (n_mt) {
        struct eval_mt_judgments all = {0};
        struct qcmap qm = {0};
        all.rows = calloc(n_mt, sizeof *all.rows);
        for (size_t g = 0; all.rows && g < ng; g++) {
            if (strcmp(groups[g].proto, "mt-bench"))
                continue;
            for (size_t k = 0; k < groups[g].n; k++) {
                const struct store_judgment_row *x = &groups[g].rows[k];
                if (x->error || !isfinite(x->score))
                    continue;
                json_object *d = json_tokener_parse(x->item_data), *q;
                int qid = d && json_object_object_get_ex(d, "question_id", &q)
                              ? json_object_get_int(q)
                              : (int)strtol(x->item_id, NULL, 10);
                const char *cat = jget_str(d, "category");
                for (int c = 0; cat && c < EVAL_MT_NCAT; c++)
                    if (!strcmp(cat, eval_mt_category_name(c)))
                        qcmap_add(&qm, qid, c);
                json_object_put(d);
                struct eval_mt_judgment *r = &all.rows[all.n++];
                r->question_id = qid;
                r->turn = x->turn;
                r->score = x->score;
                r->model = groups[g].label;
                r->judgment = x->raw ? x->raw : (char *)"";
                r->prompt_name = x->prompt_name ? x->prompt_name : (char *)"";
                r->line = (size_t)x->id;
            }
        }
        struct eval_mt_scores *sc = NULL;
        if (!all.rows ||
            eval_mt_aggregate(&all, (enum eval_mt_semantics)sem, cat_from_map, &qm, &sc, &e)) {
            cli_error("%s", all.rows ? e.msg : "out of memory");
            rc = 1;
        } else {
            mt_emit(sc, sem, fmt, boot, seed, arr, "mt-bench");
            any_out = true;
        }
        eval_mt_scores_free(sc);
        free(all.rows);
        free(qm.qid);
        free(qm.cat);
    }
    /* AlpacaEval */
    bool ae_head = false;
    struct eval_ae_lcdata *lcd = NULL;
    for (size_t g = 0; g < ng && !rc; g++) {
        if (strcmp(groups[g].proto, "alpaca-eval"))
            continue;
        if (!ae_head) {
            char gbuf[4096];
            const char *gp = gamed ? gamed : default_df_gamed(gbuf, sizeof gbuf);
            if (gp && eval_ae_lcdata_read(gp, &lcd, &e)) {
                cli_error("%s", e.msg);
                rc = 1;
                break;
            }
            if (!gp)
                cli_error("df_gamed.csv not found (--df-gamed): length-controlled win rate "
                          "omitted");
            if (fmt == 0)
                printf("%sAlpacaEval 2.0 (weighted_alpaca_eval_gpt4_turbo)\n\n",
                       any_out ? "\n" : "");
            else if (fmt == 2 && any_out)
                printf("\n");
            if (fmt != 1)
                ae_header(fmt, boot);
            ae_head = true;
            any_out = true;
        }
        size_t n = groups[g].n, m = 0;
        double *pref = malloc((n ? n : 1) * sizeof *pref), tot = 0;
        size_t *l1 = malloc((n ? n : 1) * sizeof *l1), *l2 = malloc((n ? n : 1) * sizeof *l2);
        for (size_t k = 0; pref && l1 && l2 && k < n; k++) {
            const struct store_judgment_row *x = &groups[g].rows[k];
            if (x->error)
                continue;
            json_object *p = x->parsed ? json_tokener_parse(x->parsed) : NULL, *v;
            l1[m] = p && json_object_object_get_ex(p, "len_1", &v)
                        ? (size_t)json_object_get_int64(v)
                        : 0;
            l2[m] = p && json_object_object_get_ex(p, "len_2", &v)
                        ? (size_t)json_object_get_int64(v)
                        : 0;
            json_object_put(p);
            pref[m] = x->preference;
            char *san = cli_utf8_sanitize(x->cleaned, x->cleaned_len);
            tot += (double)eval_utf8_len(san ? san : "");
            free(san);
            m++;
        }
        if (pref && l1 && l2 && m)
            ae_emit(groups[g].label, pref, l1, l2, m, false, floor(tot / (double)m), lcd, fmt, boot,
                    seed, arr, "alpaca-eval", groups[g].label);
        free(pref);
        free(l1);
        free(l2);
    }
    eval_ae_lcdata_free(lcd);
    /* just-eval */
    for (int safety = 0; safety < 2 && !rc; safety++) {
        bool head = false;
        for (size_t g = 0; g < ng; g++) {
            if (strcmp(groups[g].proto, safety ? "just-eval-safety" : "just-eval"))
                continue;
            if (!head && fmt == 2 && any_out)
                printf("\n");
            je_emit(&groups[g], safety, fmt, arr, &head);
            any_out = true;
        }
    }
    if (arr) {
        if (!rc)
            printf("%s\n", json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY |
                                                                   JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(arr);
    }
out:
    for (size_t g = 0; g < ng; g++) {
        free(groups[g].label);
        free(groups[g].proto);
        free(groups[g].judge);
    }
    free(groups);
    store_run_rows_free(runs, n_runs);
    for (size_t k = 0; k < n_sets; k++)
        store_judgment_rows_free(rowsets[k], nrowsets[k]);
    for (int d = 0; d < nd; d++)
        store_close(stores[d]);
    return rc;
}

int cmd_score(int argc, char **argv) {
    const char *jfiles[MAX_FILES], *afiles[MAX_FILES], *rdirs[MAX_FILES];
    int nj = 0, na = 0, nr = 0, fmt = 0, sem = EVAL_MT_CURRENT;
    const char *questions = NULL, *outputs = NULL, *gamed = NULL;
    long boot = 1000, seed = 0;
    enum { OPT_JSON = 256, OPT_CSV, OPT_BOOT, OPT_SEED };
    static const struct option opts[] = {{"judgments", required_argument, 0, 'j'},
                                         {"semantics", required_argument, 0, 's'},
                                         {"questions", required_argument, 0, 'q'},
                                         {"annotations", required_argument, 0, 'a'},
                                         {"model-outputs", required_argument, 0, 'o'},
                                         {"df-gamed", required_argument, 0, 'g'},
                                         {"run", required_argument, 0, 'r'},
                                         {"bootstrap", required_argument, 0, OPT_BOOT},
                                         {"seed", required_argument, 0, OPT_SEED},
                                         {"json", no_argument, 0, OPT_JSON},
                                         {"csv", no_argument, 0, OPT_CSV},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "j:s:q:a:o:g:r:h", opts, NULL)) != -1) {
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
        case 'r':
            if (nr >= MAX_FILES) {
                cli_error("at most %d --run", MAX_FILES);
                return 2;
            }
            rdirs[nr++] = optarg;
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
    if ((nj > 0) + (na > 0) + (nr > 0) != 1) {
        cli_error("give --judgments (MT-Bench), --annotations (AlpacaEval) or --run (run "
                  "stores), one kind");
        help(stderr);
        return 2;
    }
    if (nr)
        return score_runs(rdirs, nr, sem, gamed, fmt, (unsigned)boot, (unsigned long)seed);
    if (nj)
        return score_mt(jfiles, nj, sem, questions, fmt, (unsigned)boot, (unsigned long)seed);
    return score_ae(afiles, na, outputs, gamed, fmt, (unsigned)boot, (unsigned long)seed);
}
