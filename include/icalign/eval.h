/* icalign eval — benchmark scoring exactly as the published tools do it.
 *
 * MT-Bench single-answer grading (FastChat llm_judge): judge prompts per category and turn, the
 * "[[rating]]" parser, judgment-file reader and the aggregates of show_result.py (three
 * semantics). AlpacaEval 2.0 (weighted_alpaca_eval_gpt4_turbo): prompt rendering, the seeded
 * order switch of Python's random.Random(str), preference from first-token logprobs, win rate,
 * and the length-controlled win rate (GLM fitted with a C re-implementation of sklearn's
 * liblinear L1 logistic regression and grouped 5-fold cross-validation). just-eval score-mode
 * templates and reply parsing.
 *
 * Protocols: ../shared/data/{mt_bench,alpaca_eval,just_eval}/SPEC.md. Every function that can
 * fail returns an ica_err code and fills e (may be NULL); on failure *out is left NULL. */
#ifndef ICALIGN_EVAL_H
#define ICALIGN_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "icalign/common.h"

/* ==== MT-Bench ==================================================================== */

/* The four single-answer judge prompts of FastChat's judge_prompts.jsonl. */
enum eval_mt_prompt_kind {
    EVAL_MT_SINGLE_V1 = 0,        /* "single-v1": turn 1, general categories */
    EVAL_MT_SINGLE_MATH_V1,       /* "single-math-v1": turn 1, math/reasoning/coding */
    EVAL_MT_SINGLE_V1_MULTI,      /* "single-v1-multi-turn" */
    EVAL_MT_SINGLE_MATH_V1_MULTI, /* "single-math-v1-multi-turn" */
    EVAL_MT_NPROMPTS
};

/* Judge prompts loaded from judge_prompts.jsonl (opaque). */
struct eval_mt_prompts;

/* Reads judge_prompts.jsonl; all four single-answer prompts must be present. */
ICA_API int eval_mt_prompts_load(const char *path, struct eval_mt_prompts **out,
                                 struct ica_error *e) ICA_WUR;
ICA_API void eval_mt_prompts_free(struct eval_mt_prompts *p);

/* FastChat prompt name ("single-v1", ...) of a kind; NULL for an invalid kind. */
ICA_API const char *eval_mt_prompt_name(enum eval_mt_prompt_kind k);

/* True for the categories graded against a reference answer (NEED_REF_CATS: math, reasoning,
 * coding, arena-hard-200). */
ICA_API bool eval_mt_needs_ref(const char *category);

/* Prompt kind for a question's category and turn (1 or 2). */
ICA_API enum eval_mt_prompt_kind eval_mt_prompt_for(const char *category, int turn);

/* Fields that fill a judge prompt. ref1/ref2 are needed only by the math prompts; q2/a2 only
 * by the multi-turn ones. */
struct eval_mt_fill {
    const char *q1, *q2; /* question.turns[0], [1] */
    const char *a1, *a2; /* answer choices[0].turns[0], [1] */
    const char *r1, *r2; /* reference answer turns[0], [1] */
};

/* Builds the judge conversation for (category, turn): *system and *user are the exact system
 * and user message contents FastChat sends (malloc'd, caller frees both). Errors: missing
 * field, unknown placeholder or unbalanced brace in the template (ICA_ERR_FORMAT). */
ICA_API int eval_mt_judge_messages(const struct eval_mt_prompts *p, const char *category, int turn,
                                   const struct eval_mt_fill *f, char **system, char **user,
                                   struct ica_error *e) ICA_WUR;

/* Python str.format with named fields on a template: "{name}" -> value of the field of that
 * name, "{{" / "}}" -> literal braces. names/values have n entries. Returns malloc'd text or
 * NULL with e set. Exposed for tests. */
ICA_API char *eval_format_named(const char *tmpl, const char *const *names,
                                const char *const *values, size_t n, struct ica_error *e);

/* Rating of a judge reply as FastChat's [[rating]] output format: the first match of
 * \[\[(\d+\.?\d*)\]\] anywhere, else the first match of \[(\d+\.?\d*)\], else -1. No clamping.
 * Only ASCII digits count (Python would crash on others). len bytes of text, NUL not needed. */
ICA_API double eval_mt_parse_rating(const char *text, size_t len);

/* One judgment row of a FastChat single-answer judgment file. */
struct eval_mt_judgment {
    int question_id;
    int turn;          /* 1 or 2 */
    double score;      /* stored score; -1 = failed parse */
    char *model;       /* owned */
    char *judgment;    /* judge reply text (owned; "" if absent) */
    char *prompt_name; /* judge[1], e.g. "single-v1" (owned; "" if absent) */
    size_t line;       /* 1-based line in the file */
};

struct eval_mt_judgments {
    struct eval_mt_judgment *rows;
    size_t n;
};

/* Parses a FastChat judgment JSONL buffer (blank lines skipped). name is used in messages
 * ("name:LINE: ..."). */
ICA_API int eval_mt_judgments_parse(const char *buf, size_t len, const char *name,
                                    struct eval_mt_judgments **out, struct ica_error *e) ICA_WUR;
ICA_API int eval_mt_judgments_read(const char *path, struct eval_mt_judgments **out,
                                   struct ica_error *e) ICA_WUR;
ICA_API void eval_mt_judgments_free(struct eval_mt_judgments *j);

/* Aggregation semantics. */
enum eval_mt_semantics {
    EVAL_MT_CURRENT = 0,  /* FastChat since 2023-07-25: rows with score -1 dropped */
    EVAL_MT_PRE_20230725, /* before: -1 averaged in as -1 */
    EVAL_MT_URIAL_LAST,   /* URIAL show_results.py: dedup (model,turn,qid) keeping the last, then
                             drop -1 */
};

/* Parses "current" | "pre-2023-07-25" | "urial-last"; -1 if unknown. */
ICA_API int eval_mt_semantics_from_name(const char *name);
ICA_API const char *eval_mt_semantics_name(enum eval_mt_semantics s);

#define EVAL_MT_NCAT 8
/* MT-Bench categories in question-file order: writing roleplay reasoning math coding
 * extraction stem humanities. */
ICA_API const char *eval_mt_category_name(int c);
/* Category index of an MT-Bench question id (81..160, 10 per category); -1 otherwise. */
ICA_API int eval_mt_category_of_qid(int question_id);

struct eval_mt_score {
    char *model;
    double turn1, turn2, overall; /* NaN when no rows */
    size_t n_turn1, n_turn2;
    double sum1, sum2;
    double cat[EVAL_MT_NCAT]; /* mean over both turns; NaN when no rows */
    size_t n_cat[EVAL_MT_NCAT];
    size_t n_rows, n_failed, n_duplicates;
    double *scores; /* the kept scores of both turns in file order (owned), for bootstrap CIs */
    size_t n_scores;
};

struct eval_mt_scores {
    struct eval_mt_score *m; /* sorted by model name */
    size_t n;
};

/* Aggregates per model. category_of maps a question id to 0..EVAL_MT_NCAT-1 or -1 (pass NULL
 * for the built-in MT-Bench id table); rows of unknown category count in turn averages only. */
ICA_API int eval_mt_aggregate(const struct eval_mt_judgments *j, enum eval_mt_semantics sem,
                              int (*category_of)(int question_id, void *ctx), void *ctx,
                              struct eval_mt_scores **out, struct ica_error *e) ICA_WUR;
ICA_API void eval_mt_scores_free(struct eval_mt_scores *s);

/* Percentile-bootstrap 95% interval of the mean of x[0..n-1] (resampling with replacement,
 * B resamples, deterministic for a given seed). lo/hi NaN when n == 0. */
ICA_API void eval_bootstrap_ci(const double *x, size_t n, unsigned B, uint64_t seed, double *lo,
                               double *hi);

/* ==== Python random / hashing (exposed for tests) ================================= */

/* SHA-512 of len bytes into out[64]. */
ICA_API void eval_sha512(const void *data, size_t len, uint8_t out[64]);

/* MT19937 state. */
struct eval_mt19937 {
    uint32_t mt[624];
    int mti;
};
ICA_API void eval_mt19937_seed(struct eval_mt19937 *r, uint32_t seed); /* init_genrand */
ICA_API void eval_mt19937_seed_array(struct eval_mt19937 *r, const uint32_t *key, size_t n);
ICA_API uint32_t eval_mt19937_next(struct eval_mt19937 *r);
/* Python random.Random(bytes-of-str) seeding (version 2): key = int.from_bytes(s +
 * sha512(s), "big") split into 32-bit words, least significant first. */
ICA_API void eval_pyrandom_seed_str(struct eval_mt19937 *r, const char *s, size_t len);
/* Python random.random(): 53-bit double in [0,1). */
ICA_API double eval_pyrandom_random(struct eval_mt19937 *r);

/* ==== AlpacaEval 2.0 ============================================================== */

/* Whether the annotator swaps the two outputs for this instruction:
 * random.Random("is_switched_outputs" + instruction + seed).choices([False, True])[0].
 * seed is the annotator seed as text ("0" by default). */
ICA_API bool eval_ae_is_switched(const char *instruction, const char *seed);

/* Renders the annotator prompt template (alpaca_eval make_prompts: literal replacement of the
 * first occurrence of {instruction}, then {output_1}, then {output_2}) and splits it into chat
 * messages as prompt_to_chatml does. output_1/output_2 are the texts to put in the m/M slots
 * (i.e. already switched). *system and *user are malloc'd. */
ICA_API int eval_ae_render_prompt(const char *tmpl, const char *instruction, const char *output_1,
                                  const char *output_2, char **system, char **user,
                                  struct ica_error *e) ICA_WUR;

/* One entry of the first token's top_logprobs. */
struct eval_logprob {
    const char *token;
    double logprob;
};

/* Preference from the first token's top logprobs (logprob_parser with numerator "m" and
 * denominators "m","M"), undoing the switch: 1 = output_1 (reference) preferred, 2 = output_2
 * preferred. NaN if neither token is present. */
ICA_API double eval_ae_preference(const struct eval_logprob *top, size_t n, bool is_switched);

/* One annotation row (alpaca_eval annotations.json). */
struct eval_ae_annotation {
    char *instruction, *output_1, *output_2, *generator_1, *generator_2; /* owned */
    double preference;                                                   /* NaN if null */
    size_t len_1, len_2; /* code points of output_1/output_2 */
};

struct eval_ae_annotations {
    struct eval_ae_annotation *rows;
    size_t n;
};

ICA_API int eval_ae_annotations_parse(const char *buf, size_t len, const char *name,
                                      struct eval_ae_annotations **out,
                                      struct ica_error *e) ICA_WUR;
ICA_API int eval_ae_annotations_read(const char *path, struct eval_ae_annotations **out,
                                     struct ica_error *e) ICA_WUR;
ICA_API void eval_ae_annotations_free(struct eval_ae_annotations *a);

/* Number of Unicode code points of a UTF-8 string (Python len()). */
ICA_API size_t eval_utf8_len(const char *s);

struct eval_ae_winrate {
    double win_rate, standard_error, discrete_win_rate; /* in percent */
    size_t n_wins, n_wins_base, n_draws, n_total;
};

/* Win-rate metrics of alpaca_eval get_winrate over n preferences (NaN = invalid). */
ICA_API void eval_ae_winrate(const double *pref, size_t n, struct eval_ae_winrate *out);

/* Gamed baseline rows and instruction difficulty (length_controlled/df_gamed.csv). */
struct eval_ae_lcdata;
ICA_API int eval_ae_lcdata_read(const char *df_gamed_csv, struct eval_ae_lcdata **out,
                                struct ica_error *e) ICA_WUR;
ICA_API int eval_ae_lcdata_parse(const char *buf, size_t len, const char *name,
                                 struct eval_ae_lcdata **out, struct ica_error *e) ICA_WUR;
ICA_API void eval_ae_lcdata_free(struct eval_ae_lcdata *d);

/* GroupKFold(n_splits) fold of each of n equal-size groups (sklearn <= 1.5 with numpy's
 * introsort on equal keys). fold[] has n entries. */
ICA_API int eval_groupkfold_equal(size_t n, int n_splits, int *fold);

/* Draw of numpy RandomState(random_state).randint(2**31 - 1), the seed sklearn passes to
 * liblinear. */
ICA_API uint32_t eval_sklearn_liblinear_seed(uint32_t random_state);

#define EVAL_LC_NC 10
struct eval_ae_lc {
    double winrate, standard_error; /* percent */
    double w_len, w_id, w_m;        /* GLM weights */
    int best_c;                     /* index into Cs */
    double cs[EVAL_LC_NC];          /* the C grid */
    double cv_score[EVAL_LC_NC];    /* mean CV score per C (higher is better) */
    size_t n_train;                 /* training rows (gamed + valid model rows) */
    double *glm_pref;               /* per annotation row, malloc'd (caller frees) */
    size_t n;
};

/* Length-controlled win rate of one model's annotations (rows in annotation order; pref NaN =
 * invalid). len_1/len_2 = code points of reference/model outputs. is_baseline: the model is the
 * baseline itself (LC = 50). */
ICA_API int eval_ae_length_controlled(const struct eval_ae_lcdata *d, const double *pref,
                                      const size_t *len_1, const size_t *len_2, size_t n,
                                      bool is_baseline, struct eval_ae_lc *out,
                                      struct ica_error *e) ICA_WUR;

/* L1-regularised logistic regression with instance weights exactly as sklearn's liblinear
 * (solver L1R_LR, newGLMNET): minimise ||w||_1 + C sum_k sw_k log(1 + exp(-t_k w.x_k)).
 * X is row-major l x nf, t in {0,1} (class), sw >= 0 (rows with 0 weight are removed as
 * sklearn does). seed: liblinear's mt19937 seed. Returns 0 or an error code. */
ICA_API int eval_liblinear_l1r_lr(const double *X, const int *t, const double *sw, size_t l,
                                  size_t nf, double C, double eps, int max_iter, uint32_t seed,
                                  double *w, struct ica_error *e) ICA_WUR;

/* numpy's pairwise summation of n doubles (what .mean()/.sum() use). */
ICA_API double eval_np_sum(const double *x, size_t n);

/* ==== just-eval =================================================================== */

#define EVAL_JE_NASPECT 5
/* helpfulness, clarity, factuality, depth, engagement */
ICA_API const char *eval_je_aspect_name(int a);

/* string.Template substitution of ${instruction} and ${candidate}. malloc'd. */
ICA_API char *eval_je_render(const char *tmpl, const char *instruction, const char *candidate,
                             struct ica_error *e);

/* Parses a score-mode judge reply (multi: 5 aspects; safety: one "safety" aspect). Scores
 * "1".."5" (or numbers); "N/A" counts 5. scores[] receives EVAL_JE_NASPECT values (multi) or 1
 * (safety). Returns 0 or ICA_ERR_FORMAT when the reply does not parse. */
ICA_API int eval_je_parse_scores(const char *reply, bool safety, double *scores,
                                 struct ica_error *e);

#endif
