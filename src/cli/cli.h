/* Shared helpers of the icalign command-line tool. cli/ is the only module
 * that prints for humans and the only one that exits. */
#ifndef ICALIGN_CLI_H
#define ICALIGN_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cli_cmd {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
};

/* Each command lives in its own cmd_<name>.c. */
int cmd_info(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_prompt(int argc, char **argv);
int cmd_demos(int argc, char **argv);
int cmd_answer(int argc, char **argv);
int cmd_judge(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_bench(int argc, char **argv);
/* bench without --workload: llama-bench-like pp/tg speed (bench_speed.c). */
int cmd_bench_speed(int argc, char **argv);
int cmd_complete(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
int cmd_ablate(int argc, char **argv);

/* Prints "icalign: <msg>\n" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parses a comma/space separated list of integers; returns a malloc'd array
 * and its length in *n, or NULL with a message printed on a bad list. */
int32_t *cli_parse_ids(const char *s, size_t *n);

/* Strict numeric option parsing: the whole string must be a number in range.
 * Print an error naming opt and return false otherwise. */
bool cli_parse_int(const char *opt, const char *s, long min, long max, long *out);
bool cli_parse_float(const char *opt, const char *s, double min, double max, double *out);
/* A byte size with an optional k/M/G suffix (binary), e.g. 512M. */
bool cli_parse_size(const char *opt, const char *s, unsigned long long *out);

/* ---- local model options (-m, -c, --kv-type, --batch, -t) ---- */
#include "icalign/model.h"
#include "icalign/tok.h"

enum { CLI_OPT_KV_TYPE = 1000, CLI_OPT_BATCH };
#define CLI_MODEL_LONGOPTS                                                                         \
    {"model", required_argument, 0, 'm'}, {"ctx", required_argument, 0, 'c'},                      \
        {"kv-type", required_argument, 0, CLI_OPT_KV_TYPE},                                        \
        {"batch", required_argument, 0, CLI_OPT_BATCH}, {                                          \
        "threads", required_argument, 0, 't'                                                       \
    }
#define CLI_MODEL_SHORTOPTS "m:c:t:"

struct cli_model_opts {
    const char *path;
    uint32_t n_ctx, n_batch, kv_type;
    int n_threads;
    struct model *model;
    struct tok_vocab *vocab; /* NULL when the file has no usable tokenizer */
    struct model_ctx *ctx;
};

void cli_model_opts_init(struct cli_model_opts *o);
const char *cli_model_opts_help(void);
/* Handles one getopt result; 1 = consumed, 0 = not a model option, -1 = bad value. */
int cli_model_opts_parse(struct cli_model_opts *o, int ch, const char *arg);
/* Loads model and tokenizer; prints the error and returns an exit code (0 = ok). */
int cli_model_open(struct cli_model_opts *o, const char *cmd);
/* Creates the context: -c if given (error if smaller than min_ctx), else the
 * training context capped at 4096, raised to min_ctx. Exit code as above. */
int cli_model_new_ctx(struct cli_model_opts *o, const char *cmd, uint32_t min_ctx);
void cli_model_close(struct cli_model_opts *o);
/* Prompt ids from --ids or from text through the tokenizer (BOS per the
 * vocabulary unless no_bos). malloc'd; NULL after printing an error. */
int32_t *cli_prompt_ids(struct cli_model_opts *o, const char *text, const char *ids, bool no_bos,
                        bool special, size_t *n);

/* ---- any backend: -m MODEL.gguf (local engine) or --base-url URL --model NAME ---- */
#include "icalign/backend.h"

enum {
    CLI_OPT_BASE_URL = 1100,
    CLI_OPT_REMOTE_MODEL,
    CLI_OPT_API_KEY_FILE,
    CLI_OPT_CONCURRENCY,
    CLI_OPT_TIMEOUT,
    CLI_OPT_CHAT_TEMPLATE,
    CLI_OPT_PARALLEL,
    CLI_OPT_KV_MEM,
    CLI_OPT_PREFIX_CACHE
};
/* Long options of a backend (use together with CLI_MODEL_LONGOPTS). */
/* clang-format off */
#define CLI_BACKEND_LONGOPTS                                                                       \
    {"base-url", required_argument, 0, CLI_OPT_BASE_URL},                                          \
    {"remote-model", required_argument, 0, CLI_OPT_REMOTE_MODEL},                                  \
    {"api-key-file", required_argument, 0, CLI_OPT_API_KEY_FILE},                                  \
    {"concurrency", required_argument, 0, CLI_OPT_CONCURRENCY},                                    \
    {"timeout", required_argument, 0, CLI_OPT_TIMEOUT},                                            \
    {"chat-template", required_argument, 0, CLI_OPT_CHAT_TEMPLATE},                                \
    {"parallel", required_argument, 0, CLI_OPT_PARALLEL},                                          \
    {"kv-mem", required_argument, 0, CLI_OPT_KV_MEM},                                              \
    {"prefix-cache", required_argument, 0, CLI_OPT_PREFIX_CACHE}
/* clang-format on */

struct cli_backend_opts {
    struct cli_model_opts local; /* -m, -c, --kv-type, --batch, -t */
    const char *base_urls[16];   /* --base-url (repeatable) */
    int n_base_urls;
    const char *remote_model; /* --remote-model NAME (the server's model id) */
    const char *api_key_file;
    int concurrency;
    double timeout_s;
    const char *chat_template;
    int parallel;              /* --parallel: sequences at once (0 = default) */
    unsigned long long kv_mem; /* --kv-mem: KV budget in bytes (0 = automatic) */
    const char *prefix_cache;  /* --prefix-cache DIR */
};

void cli_backend_opts_init(struct cli_backend_opts *o);
const char *cli_backend_opts_help(void);
/* 1 = consumed, 0 = not a backend option, -1 = bad value (printed). */
int cli_backend_opts_parse(struct cli_backend_opts *o, int ch, const char *arg);
/* Opens the backend the options name; prints the error and returns an exit
 * code (0 = ok). */
int cli_backend_open(struct cli_backend_opts *o, const char *cmd, struct backend **out);

/* ---- answer / chat / pull helpers (progress.c) ---- */
/* Progress bar on stderr, drawn only when stderr is a terminal: done/total, ETA and tokens/s
 * (or bytes and bytes/s), at most 10 frames per second, one write() per frame. */
struct cli_progress {
    const char *label;
    uint64_t total, done, tokens, base;
    bool bytes, enabled, drawn;
    double t0, last;
};
void cli_progress_init(struct cli_progress *p, const char *label, uint64_t total, bool bytes);
void cli_progress_update(struct cli_progress *p, uint64_t done, uint64_t tokens, bool force);
void cli_progress_end(struct cli_progress *p);
/* Finds <shared>/<rel> ($ICALIGN_SHARED, ../shared, or beside the binary's checkout). */
bool cli_shared_path(char *buf, size_t n, const char *rel);
/* Copy of s[0..len) with invalid UTF-8 (and NUL) replaced by U+FFFD; malloc'd. */
char *cli_utf8_sanitize(const char *s, size_t len);

#endif
