/* icalign — search module: the paper's demonstration experiments (METHOD.md §3) over a cache.
 *
 * An evaluator answers validation questions with a demonstration set on the answering backend,
 * judges every answer with an MT-Bench single-answer judge prompt on the judge backend, and
 * returns per-question scores. Everything is cached in the run directory's store:
 *   - one store run (kind "answer", bench "search") per (answering model, decoding,
 *     demonstration-set sha256); its items are the questions, keyed by the sha256 of their
 *     text, so a (demonstration set, question) pair is answered once whatever experiment,
 *     pool, step or validation list asks for it;
 *   - one judgment per (generation, judge name) in the store's judgments table.
 * All missing generations of one evaluation go to the answering backend in ONE backend_run
 * (the local scheduler then computes a shared prompt prefix once: the header and the chosen
 * demos once per step, each candidate's own demo once, then only the questions), then all
 * missing judgments in one run on the judge backend. Every result is committed as soon as it
 * arrives, so a killed search loses at most the requests in flight.
 *
 * On top of the evaluator: sequential greedy forward selection with optional successive
 * halving over the validation questions (search_greedy), the single-step ranking used by the
 * greedy-ranked scaling family, and the search steps table. */
#ifndef ICALIGN_SEARCH_H
#define ICALIGN_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "icalign/align.h"
#include "icalign/backend.h"
#include "icalign/common.h"
#include "icalign/eval.h"
#include "icalign/store.h"

/* ==== Validation questions ==== */

struct search_question {
    char *id;         /* question id as given ("81") */
    char *text;       /* the (first-turn) question */
    char *category;   /* "" when unknown */
    char *reference;  /* first-turn reference answer or NULL (AlpacaEval: the reference output) */
    char *text2;      /* second turn (MT-Bench turns[1]) or NULL */
    char *reference2; /* second-turn reference answer or NULL */
    char key[17];     /* first 16 hex digits of sha256(text): the cache's item id */
};

struct search_questions {
    struct search_question *q;
    size_t n;
    char sha256[65]; /* of the question texts in order */
};

/* Loads questions from a JSONL file: one object per line with the text in "turns"[0] (MT-Bench)
 * or "instruction" / "question" / "query", the id in "question_id" or "id" (default the line
 * number), and an optional "category"; "turns"[1], when present, is the second turn. refs (may
 * be NULL) is an MT-Bench reference answer file (question_id + choices[0].turns[0] and [1]).
 * limit 0 = all. */
ICA_API int search_questions_load(const char *path, const char *refs, size_t limit,
                                  struct search_questions **out, struct ica_error *e) ICA_WUR;
/* Loads the AlpacaEval 2.0 instructions from the reference outputs file (a JSON list of
 * {"instruction", "output", "dataset"}, e.g. alpaca_eval_gpt4_baseline.json): text =
 * instruction, reference = output, category = dataset, id = 0-based position. limit 0 = all. */
ICA_API int search_questions_load_alpaca(const char *path, size_t limit,
                                         struct search_questions **out,
                                         struct ica_error *e) ICA_WUR;
ICA_API void search_questions_free(struct search_questions *q);

/* ==== Evaluator ==== */

struct search_answerer {
    struct backend *backend;
    const char *model_key; /* identity of the answering model (file sha256 or server+model) */
    struct backend_sampling sampling;
    uint32_t max_tokens;
    const char *const *stop;
    size_t n_stop;
    const char *decoding_json; /* canonical decoding text, part of the cache key */
};

struct search_judge {
    struct backend *backend;
    const struct eval_mt_prompts *prompts;
    const char *name;  /* judgments.judge value, e.g. "search:single-v1/gpt-4-turbo" */
    bool per_category; /* false: "single-v1" for every question; true: FastChat's choice by
                          category (math prompts with the reference answer when one is given) */
    uint32_t max_tokens;
    /* Non-NULL: an AlpacaEval 2.0 annotator instead (weighted_alpaca_eval_gpt4_turbo, this
     * alpaca_eval_clf.txt template): each answer is compared with the question's reference
     * output (order switched as alpaca_eval does, 1 token, first-token top-5 logprobs) and its
     * rating is the preference, 1 = reference preferred ... 2 = answer preferred (stored in the
     * judgments' preference column). Identical outputs are 1.5 without a request. */
    const char *ae_template;
};

/* Work counters (cumulative over the evaluator's life). */
struct search_stats {
    uint64_t gen_new, gen_cached, gen_failed;
    uint64_t judge_new, judge_cached, judge_failed; /* failed = request error or no rating */
    uint64_t prompt_tokens;                         /* prompt tokens of the new generations */
    uint64_t cached_tokens;        /* of which the backend took from its prefix cache */
    uint64_t stored_prompt_tokens; /* prompt tokens of generations found in the store */
};

typedef void (*search_log_fn)(void *ud, const char *msg);

struct search_env;

/* The store stays owned by the caller; run_dir is the directory it was opened on (the search
 * tables are read and written through a second connection to run_dir/icalign.db). */
ICA_API int search_env_new(const char *run_dir, struct store *st, const struct search_answerer *a,
                           const struct search_judge *j, const struct search_questions *val,
                           struct search_env **out, struct ica_error *e) ICA_WUR;
ICA_API void search_env_free(struct search_env *env);
ICA_API void search_env_set_log(struct search_env *env, search_log_fn fn, void *ud);
ICA_API const struct search_stats *search_env_stats(const struct search_env *env);

/* Scores sets[0..n_sets) on the first n_q validation questions: scores[s * n_q + q] is the
 * judge's rating (NaN when the generation or the judgment failed or had no rating). Missing
 * work is computed (one backend_run for the answers, one for the judgments) and stored. */
ICA_API int search_eval(struct search_env *env, struct align_set *const *sets, size_t n_sets,
                        size_t n_q, double *scores, struct ica_error *e) ICA_WUR;

/* search_eval for one MT-Bench turn (1 or 2) that also returns, when lens is not NULL, the
 * length in code points of each answer (0 when none). Turn 2 answers the question's second turn
 * after its first turn and the model's own cleaned turn-1 answer with the same set (as icalign
 * answer does; turn 1 must have been evaluated first: pairs without a stored turn-1 answer or
 * without a second turn are NaN) and judges it with the multi-turn prompt. */
ICA_API int search_eval_turn(struct search_env *env, struct align_set *const *sets, size_t n_sets,
                             size_t n_q, int turn, double *scores, size_t *lens,
                             struct ica_error *e) ICA_WUR;

/* Mean of the non-NaN values of x[0..n) (NaN when none); *n_valid (may be NULL) counts them. */
ICA_API double search_mean(const double *x, size_t n, size_t *n_valid);

/* ==== Greedy forward selection ==== */

struct search_greedy_opts {
    const struct align_set *base; /* base demonstrations (e.g. URIAL's three) and the header */
    const struct align_set *pool; /* candidates */
    bool after;                   /* insert the selection after the base demos (default before) */
    size_t steps;                 /* K */
    bool always_take;             /* keep the best candidate even when it does not improve */
    bool halving;                 /* successive halving over the validation questions */
    int64_t run_id;               /* store run of kind "search" for the steps table (0 = none) */
};

struct search_cand {
    size_t pool_index;
    double score; /* mean over the questions it was scored on (NaN: no valid rating) */
    size_t n_q;   /* questions it was scored on (< all: dropped by halving) */
    size_t n_valid;
};

struct search_step {
    size_t step;           /* 1-based */
    double current;        /* score of the set before this step (all questions) */
    struct search_cand *c; /* every candidate of the step, in pool order */
    size_t n_c;
    long chosen; /* pool index taken, -1 = stopped (no improvement / no candidate) */
    double chosen_score;
    uint64_t full_calls; /* generations (= judge calls) the full step would make */
    uint64_t evals;      /* (candidate, question) pairs this step looked at */
};

struct search_result {
    size_t *selected; /* pool indices in selection order */
    size_t n_selected;
    struct search_step *steps;
    size_t n_steps;
    double base_score;  /* the base set's score */
    double final_score; /* the final set's score */
    struct align_set *final_set;
    uint64_t full_prompt_tokens; /* prompt tokens of every (candidate, question) prompt of the
                                    full search (0 when the backend cannot count tokens) */
};

ICA_API int search_greedy(struct search_env *env, const struct search_greedy_opts *o,
                          struct search_result **out, struct ica_error *e) ICA_WUR;
ICA_API void search_result_free(struct search_result *r);

/* The set "selection inserted into base" used for every candidate (selection may be NULL). */
ICA_API int search_compose(const struct align_set *base, const struct align_set *pool,
                           const size_t *sel, size_t n_sel, bool after, struct align_set **out,
                           struct ica_error *e) ICA_WUR;

/* Stores one row of the search_steps table (replaced when (run, step) exists). */
ICA_API int search_step_put(struct search_env *env, int64_t run_id, int64_t step,
                            const char *data_json, double score, struct ica_error *e) ICA_WUR;

/* ==== Report helpers ==== */

/* Writes text to path atomically (path.tmp + rename). */
ICA_API int search_write_file(const char *path, const char *text, size_t len,
                              struct ica_error *e) ICA_WUR;

#endif
