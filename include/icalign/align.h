/* icalign — align module: in-context alignment of base LLMs with URIAL-style prompts.
 *
 * A demonstration set is a rules header followed by an ordered list of demonstrations
 * {query, answer (optional), source, id}. This module loads sets (URIAL prompt files and
 * JSONL pools), composes them (pool ids, seeded random / stratified draws, placement before or
 * after the base demos), writes them back as URIAL prompt files, renders conversations exactly
 * as the URIAL reference code does (../shared/design/METHOD.md §1.3-1.4), applies the
 * QA-matching ablations (§3.3), and holds the decoding presets, the stop-string matcher and
 * the output post-processing of the reference (§2). It knows nothing of GGUF or the engine.
 *
 * Strings are NUL-terminated UTF-8. Every function that can fail returns an enum ica_err code
 * and fills e (may be NULL) with a message naming the file and line when input is at fault.
 * See docs/ALIGN.md for the file grammar, the --demos SPEC grammar and the PRNG. */
#ifndef ICALIGN_ALIGN_H
#define ICALIGN_ALIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "icalign/common.h"

/* ==== Demonstration sets ==== */

/* One demonstration. In a set the strings are owned by the set; answer == NULL means the block
 * has no "# Answer:" part (unsupervised queries, no_answer ablation). source and id are never
 * NULL inside a set (empty string when unknown). */
struct align_demo {
    char *query;
    char *answer;
    char *source;
    char *id;
};

/* How the set is laid out in its file and how conversations are appended when rendering:
 * URIAL = "# Query:"/"# Answer:" blocks with ``` fences (conv template urial_backticks, every
 * ICL-paper file); USER_V5 / USER_V6 = the "# User:"/"# Assistant:" layouts of URIAL's
 * inst_help_v3/v5/v6 files (templates urial_v5 / urial_v6). */
enum align_style {
    ALIGN_STYLE_URIAL = 0,
    ALIGN_STYLE_USER_V5,
    ALIGN_STYLE_USER_V6,
};

struct align_set; /* opaque */

/* New empty set with the given header (NULL = ""). Returns NULL when out of memory. */
ICA_API struct align_set *align_set_new(const char *header);
/* Deep copy; NULL when out of memory. */
ICA_API struct align_set *align_set_clone(const struct align_set *s);
/* Frees a set and everything it owns. NULL-safe. */
ICA_API void align_set_free(struct align_set *s);

/* Parses a URIAL-format prompt file held in text[0..len) ("name" is used in messages and to pick
 * the v5/v6 render style of "# User:" files, as the reference does by file name). CRLF and CR
 * are read as LF (Python universal newlines); NUL bytes and invalid UTF-8 are errors. Layouts:
 *   HEADER BLOCK ("\n" BLOCK)* [WS]        BLOCK = "# Query:\n```\n" Q "\n```\n"
 *                                                  ["\n# Answer:\n```\n" A "\n```\n"]
 * optionally one bridge paragraph between two blocks (the `unsupervised` layout), or the
 * "# User:"/"# Assistant:" layout. A file without any block is a header-only set.
 * Demos get source = "file:<basename>" and id = "<basename>#<index>". *out is a new set. */
ICA_API int align_set_parse(const char *text, size_t len, const char *name, struct align_set **out,
                            struct ica_error *e) ICA_WUR;
/* Reads path and parses it (align_set_parse). */
ICA_API int align_set_load_file(const char *path, struct align_set **out,
                                struct ica_error *e) ICA_WUR;

/* Parses a JSONL demonstration pool: one JSON object per non-empty line with "query" (string,
 * required), "answer" (string or null/absent), "id" (string or number; default "<name>:<line>"),
 * "source" (string; default the first entry of "families", else "pool"). Unknown fields are
 * ignored. Errors name the file and the line. The result is a set with an empty header. */
ICA_API int align_pool_parse_jsonl(const char *text, size_t len, const char *name,
                                   struct align_set **out, struct ica_error *e) ICA_WUR;
/* Loads a pool: a *.jsonl file as above, anything else as a URIAL-format prompt file. */
ICA_API int align_pool_load(const char *path, struct align_set **out, struct ica_error *e) ICA_WUR;

/* Writes the set in its file format (URIAL layout: HEADER BLOCK ("\n" BLOCK)*, bridge and
 * trailing whitespace kept). *out is malloc'd and NUL-terminated; *len (may be NULL) is its
 * length. For every file of the ICL repository parse+write is the identity. */
ICA_API int align_set_write(const struct align_set *s, char **out, size_t *len,
                            struct ica_error *e) ICA_WUR;

/* Accessors. Returned pointers are borrowed: valid until the set is modified or freed. */
ICA_API const char *align_set_header(const struct align_set *s);
ICA_API size_t align_set_count(const struct align_set *s);
ICA_API const struct align_demo *align_set_demo(const struct align_set *s, size_t i);
ICA_API enum align_style align_set_style(const struct align_set *s);
/* The bridge paragraph (unsupervised layout) or NULL; *at (may be NULL) receives the index of
 * the demo it precedes. */
ICA_API const char *align_set_bridge(const struct align_set *s, size_t *at);
/* Bytes after the last block (whitespace only), "" when none. */
ICA_API const char *align_set_trailer(const struct align_set *s);

/* Mutators (copy their string arguments). */
ICA_API int align_set_set_header(struct align_set *s, const char *header,
                                 struct ica_error *e) ICA_WUR;
/* Sets (text != NULL) or removes (NULL) the bridge placed before demo index at. */
ICA_API int align_set_set_bridge(struct align_set *s, const char *text, size_t at,
                                 struct ica_error *e) ICA_WUR;
/* Inserts a copy of d at position pos (0..count). NULL source/id become "". */
ICA_API int align_set_insert(struct align_set *s, size_t pos, const struct align_demo *d,
                             struct ica_error *e) ICA_WUR;
/* Replaces the answer of demo i (NULL removes the answer block). */
ICA_API int align_set_set_answer(struct align_set *s, size_t i, const char *answer,
                                 struct ica_error *e) ICA_WUR;
/* Inserts copies of all demos of extra before (after = false) or after (after = true) the demos
 * of s; a bridge of s keeps preceding the same demo. */
ICA_API int align_set_merge(struct align_set *s, const struct align_set *extra, bool after,
                            struct ica_error *e) ICA_WUR;

/* ==== Composition ==== */

/* Deterministic PRNG used by every seeded choice: splitmix64 (Steele, Lea, Flood 2014). State
 * starts at the seed; next: s += 0x9E3779B97F4A7C15, z = s; z = (z ^ z>>30) * 0xBF58476D1CE4E5B9;
 * z = (z ^ z>>27) * 0x94D049BB133111EB; return z ^ z>>31. Bounded draws use rejection sampling
 * (unbiased). Same seed = same demos on every platform. */
struct align_rng {
    uint64_t state;
};
ICA_API void align_rng_seed(struct align_rng *r, uint64_t seed);
ICA_API uint64_t align_rng_next(struct align_rng *r);
/* Uniform integer in [0, n); n > 0. */
ICA_API uint64_t align_rng_below(struct align_rng *r, uint64_t n);

/* Demos of pool with the given ids, in the order given; an unknown id is an error naming it. */
ICA_API int align_pool_select_ids(const struct align_set *pool, const char *const *ids, size_t n,
                                  struct align_set **out, struct ica_error *e) ICA_WUR;
/* n demos drawn uniformly without replacement (partial Fisher-Yates over the pool order, seeded
 * align_rng), in draw order. Only demos with an answer are drawn, and never one whose query also
 * appears in exclude (may be NULL). Asking for more demos than available is an error. */
ICA_API int align_pool_select_random(const struct align_set *pool, size_t n, uint64_t seed,
                                     const struct align_set *exclude, struct align_set **out,
                                     struct ica_error *e) ICA_WUR;
/* n demos stratified by source: sources sorted by name then shuffled, each source's demos
 * shuffled, then one demo per source in round-robin order until n are drawn (so per-source
 * counts differ by at most one while every source has demos left). */
ICA_API int align_pool_select_stratified(const struct align_set *pool, size_t n, uint64_t seed,
                                         const struct align_set *exclude, struct align_set **out,
                                         struct ica_error *e) ICA_WUR;

/* The built-in default set (data/demos/default.txt, compiled in): its text. */
ICA_API const char *align_default_text(void);

/* Builds a set from a --demos SPEC (grammar in docs/ALIGN.md):
 *   SPEC  := BASE ( "+" [ "before:" | "after:" ] EXTRA )*
 *   BASE  := "default" | "none" | "header-only" [ ":" SPEC-BASE ] | "file:" PATH | PATH | POOLSEL
 *   EXTRA := POOLSEL | "file:" PATH | PATH
 *   POOLSEL := "pool:" PATH ":" ( "ids=" ID("," ID)* | "random=" N | "stratified=" N )
 *              [ ":seed=" S ]
 * A "+" only splits where it is followed by "before:", "after:", "pool:" or "file:". */
ICA_API int align_spec_load(const char *spec, struct align_set **out, struct ica_error *e) ICA_WUR;

/* ==== Rendering (METHOD.md §1.4) ==== */

/* A conversation is msgs[0..n): user, assistant, user, ... A NULL or "" message is rendered
 * like Python's falsy message in the reference (role line and opening fence only). The
 * generation slot ("\n# Answer:\n```\n" in the URIAL style) is appended after the last message,
 * so n is normally odd. */

/* The part shared by every query: the system text (header + demos, i.e. the written file; for a
 * set without demos the header minus one trailing newline, so the query block follows the rules
 * after one empty line as a first demo would). malloc'd. */
ICA_API int align_render_prefix(const struct align_set *s, char **out, size_t *len,
                                struct ica_error *e) ICA_WUR;
/* The per-conversation part: message blocks + generation slot. prefix + suffix = full prompt.
 * When the prefix is empty the leading newline of the first block is dropped. */
ICA_API int align_render_suffix(const struct align_set *s, const char *const *msgs, size_t n,
                                char **out, size_t *len, struct ica_error *e) ICA_WUR;
/* The full prompt (prefix + suffix), byte-identical to URIAL's apply_template + get_prompt. */
ICA_API int align_render(const struct align_set *s, const char *const *msgs, size_t n, char **out,
                         size_t *len, struct ica_error *e) ICA_WUR;

/* ==== Ablation transforms (METHOD.md §3.3) ==== */

enum align_variant {
    ALIGN_VARIANT_CORRECT = 0,    /* unchanged */
    ALIGN_VARIANT_CIRCULAR_SHIFT, /* demo i gets the answer of demo (i + shift) mod n */
    ALIGN_VARIANT_RANDOM_ANSWER,  /* answers replaced from an answer pool */
    ALIGN_VARIANT_NO_ANSWER,      /* answer blocks removed */
    ALIGN_VARIANT_UNSUPERVISED,   /* answer-less queries + bridge + answered demos */
};

struct align_transform_opts {
    int shift;                    /* circular_shift: +1 (urial files) or -1 (urial_plus_3) */
    const struct align_set *pool; /* random_answer: answers; unsupervised: queries */
    bool seeded;                  /* random_answer: draw answers with seed (else pool order) */
    uint64_t seed;
};

/* Parses "correct", "circular_shift", "random_answer", "no_answer", "unsupervised" ("-" may
 * replace "_"). Unknown name: ICA_ERR_ARG listing the valid ones. */
ICA_API int align_variant_parse(const char *name, enum align_variant *v,
                                struct ica_error *e) ICA_WUR;
ICA_API const char *align_variant_name(enum align_variant v);
/* Applies the variant to a copy of in; *out is a new set. Only answered demos take part in
 * circular_shift and random_answer. random_answer assigns the pool's answers in pool order
 * (answer k to the k-th answered demo) or, when seeded, drawn without replacement. unsupervised
 * drops the header line "Below is a list of conversations ..." and puts the pool's queries
 * (without answers) before the demos of in, with the ICL repository's intro and bridge texts. */
ICA_API int align_transform(const struct align_set *in, enum align_variant v,
                            const struct align_transform_opts *o, struct align_set **out,
                            struct ica_error *e) ICA_WUR;

/* ==== Decoding presets and output handling (METHOD.md §2) ==== */

#define ALIGN_MAX_STOP 4

/* Decoding parameters. temperature 0 = greedy (argmax, lowest id on ties). repetition_penalty
 * p applies to the SET of token ids in prompt + generated text (presence, not count; logit / p
 * if > 0 else * p); frequency/presence penalties are OpenAI-style on generated tokens only
 * (l -= freq * count + pres * [count > 0]). top_k 0 = off, min_p 0 = off. Stop strings are
 * matched on the detokenized text and the output is cut before the first match. */
struct align_preset {
    const char *name;
    float temperature;
    float top_p;
    int top_k;
    float min_p;
    float repetition_penalty;
    float frequency_penalty;
    float presence_penalty;
    int max_new_tokens;
    size_t n_stop;
    const char *stop[ALIGN_MAX_STOP];
};

/* Copies the named preset ("urial", "urial-moe", "gpt4-base") into *out. Unknown name:
 * ICA_ERR_NOTFOUND with a message listing the valid names. */
ICA_API int align_preset_get(const char *name, struct align_preset *out,
                             struct ica_error *e) ICA_WUR;
/* Number of presets and the i-th name (NULL when out of range). */
ICA_API size_t align_preset_count(void);
ICA_API const char *align_preset_name(size_t i);

/* The reference's clear_output: Python rstrip(), delete every "```", replace "<|endoftext|>"
 * with " ", strip() (whitespace = Python str.isspace, incl. Unicode spaces). *out malloc'd. */
ICA_API int align_postprocess(const char *raw, size_t len, char **out, size_t *out_len,
                              struct ica_error *e) ICA_WUR;

/* Incremental stop-string matcher for streamed text. Feed each newly decoded chunk; the matcher
 * accumulates the text, finds the first occurrence of any stop string (also across chunk
 * boundaries) and tells how many bytes are safe to show: bytes that cannot be the start of a
 * stop string and do not end inside an incomplete UTF-8 sequence. */
struct align_stop {
    char **stops;
    size_t n_stop;
    size_t max_len;
    char *text; /* accumulated text (NUL-terminated), cut at the stop once stopped */
    size_t len; /* bytes in text */
    size_t cap;
    size_t safe;  /* text[0..safe) may be emitted */
    size_t taken; /* bytes already handed out by align_stop_take */
    bool stopped; /* a stop string was found; len == safe == cut position */
    int which;    /* index of the stop string found, -1 if none */
};

/* Initializes st with copies of the stop strings (empty strings are ignored). */
ICA_API int align_stop_init(struct align_stop *st, const char *const *stops, size_t n,
                            struct ica_error *e) ICA_WUR;
ICA_API void align_stop_free(struct align_stop *st);
/* Appends chunk and updates safe/stopped. After a stop, further chunks are ignored. Returns
 * ICA_OK or ICA_ERR_NOMEM. */
ICA_API int align_stop_feed(struct align_stop *st, const char *chunk, size_t len,
                            struct ica_error *e) ICA_WUR;
/* End of generation without a stop: everything becomes safe. */
ICA_API void align_stop_finish(struct align_stop *st);
/* Hands out the bytes that became safe since the last call: *p points into st->text. */
ICA_API size_t align_stop_take(struct align_stop *st, const char **p);

#endif
