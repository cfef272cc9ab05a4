/* Options and setup shared by icalign search, sweep and ablate: the answering backend, the judge
 * backend (--judge-*), validation questions, decoding, the run directory and its evaluator. */
#ifndef ICALIGN_CLI_SEARCH_CLI_H
#define ICALIGN_CLI_SEARCH_CLI_H

#include <getopt.h>
#include <stdio.h>

#include "cli.h"
#include "icalign/report.h"
#include "icalign/search.h"

enum {
    XP_OPT_VAL = 1300,
    XP_OPT_LIMIT,
    XP_OPT_OUT,
    XP_OPT_PRESET,
    XP_OPT_MAXTOK,
    XP_OPT_JMODEL,
    XP_OPT_JURL,
    XP_OPT_JNAME,
    XP_OPT_JTEMPLATE,
    XP_OPT_JCTX,
    XP_OPT_JKEY,
    XP_OPT_JCONC,
    XP_OPT_JID,
    XP_OPT_JPROMPT,
    XP_OPT_JMAXTOK,
    XP_OPT_JPROMPTS_FILE,
    XP_OPT_BENCH,
    XP_OPT_LAST
};

#define XP_LONGOPTS                                                                                \
    CLI_MODEL_LONGOPTS, CLI_BACKEND_LONGOPTS, {"val", required_argument, 0, XP_OPT_VAL},           \
        {"bench", required_argument, 0, XP_OPT_BENCH},                                             \
        {"limit", required_argument, 0, XP_OPT_LIMIT}, {"out", required_argument, 0, XP_OPT_OUT},  \
        {"preset", required_argument, 0, XP_OPT_PRESET},                                           \
        {"max-tokens", required_argument, 0, XP_OPT_MAXTOK},                                       \
        {"judge-model", required_argument, 0, XP_OPT_JMODEL},                                      \
        {"judge-base-url", required_argument, 0, XP_OPT_JURL},                                     \
        {"judge-name", required_argument, 0, XP_OPT_JNAME},                                        \
        {"judge-chat-template", required_argument, 0, XP_OPT_JTEMPLATE},                           \
        {"judge-ctx", required_argument, 0, XP_OPT_JCTX},                                          \
        {"judge-api-key-file", required_argument, 0, XP_OPT_JKEY},                                 \
        {"judge-concurrency", required_argument, 0, XP_OPT_JCONC},                                 \
        {"judge-id", required_argument, 0, XP_OPT_JID},                                            \
        {"judge-prompt", required_argument, 0, XP_OPT_JPROMPT},                                    \
        {"judge-max-tokens", required_argument, 0, XP_OPT_JMAXTOK},                                \
        {"judge-prompts", required_argument, 0, XP_OPT_JPROMPTS_FILE},                             \
        {"quiet", no_argument, 0, 'q'}, {                                                          \
        "help", no_argument, 0, 'h'                                                                \
    }
#define XP_SHORTOPTS CLI_MODEL_SHORTOPTS "qh"

/* What a set's score is: the mean first-turn rating (--val), MT-Bench turn 1 + turn 2
 * (--bench mt-bench) or the AlpacaEval 2.0 length-controlled win rate (--bench alpaca-eval). */
enum xp_mode { XP_FIRST_TURN = 0, XP_MT_BENCH, XP_ALPACA_EVAL };

struct xp {
    const char *cmd;
    enum xp_mode mode;
    bool val_set;
    struct cli_backend_opts ans, judge;
    const char *val, *out, *preset, *judge_id, *judge_prompt, *judge_prompts_file;
    long limit, max_tokens, judge_max_tokens;
    bool quiet;
    /* after xp_open */
    struct backend *ab, *jb;
    struct store *st;
    struct search_questions *qs;
    struct eval_mt_prompts *prompts;
    struct search_answerer a;
    struct search_judge j;
    struct search_env *env;
    struct align_preset pr;
    char model_key[300], judge_name[300], val_name[256];
    char *decoding;
    char *ae_template;            /* XP_ALPACA_EVAL: alpaca_eval_clf.txt */
    struct eval_ae_lcdata *ae_lc; /* XP_ALPACA_EVAL: df_gamed.csv (NULL: LC not available) */
};

void xp_init(struct xp *x, const char *cmd);
/* 1 consumed, 0 not ours, -1 bad value (printed). */
int xp_parse(struct xp *x, int ch, const char *arg);
/* Help text of the shared options. */
const char *xp_help(void);
/* Opens everything; prints the error and returns an exit code (0 = ok). */
int xp_open(struct xp *x);
void xp_close(struct xp *x);
/* Loads a demonstration SPEC; "urial" = the URIAL prompt file of the shared data
 * (data/urial/tml-epfl_icl-alignment/urial_prompts/urial.txt), else the built-in default set. */
int xp_load_spec(struct xp *x, const char *spec, struct align_set **out);
/* Column name and chart axis label of a set's score in this mode. */
const char *xp_score_name(const struct xp *x);
const char *xp_score_label(const struct xp *x);
/* Creates or finds the store run of kind (search/sweep/ablate) for this configuration. */
int xp_run(struct xp *x, const char *kind, const char *config_json, int64_t *run_id);
/* RUN_DIR/name into buf. */
void xp_path(const struct xp *x, char *buf, size_t n, const char *name);
/* Prints the evaluator's cost counters. */
void xp_print_costs(const struct xp *x, FILE *fp, uint64_t full_evals, uint64_t full_tokens);
/* The same text into b, and as a "## Cost" section of report.md into md. */
void xp_costs(const struct xp *x, struct report_buf *b, uint64_t full_evals, uint64_t full_tokens);
void xp_costs_md(const struct xp *x, struct report_buf *md, uint64_t full_evals,
                 uint64_t full_tokens);
/* Scores sets[0..n) on the validation questions (one evaluation: one backend_run for the
 * missing answers, one for the missing judgments), writes each set to RUN_DIR/sets/NAME.txt,
 * prints a table (mean, 95% bootstrap interval, rated answers) and writes RUN_DIR/csv_name.
 * Exit code (0 = ok). */
int xp_eval_table(struct xp *x, const char *title, const char *col, char *const *names,
                  struct align_set *const *sets, size_t n, const char *csv_name);
/* Comma-separated list split in place into at most max items; returns the count. */
size_t xp_split(char *s, char **items, size_t max);

#endif
