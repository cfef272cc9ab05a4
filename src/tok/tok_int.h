/* Internals of the tok module. */
#ifndef ICALIGN_TOK_INT_H
#define ICALIGN_TOK_INT_H

#include "icalign/tok.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- string -> id hash map (open addressing, keys borrowed) ---- */
struct tok_map {
    uint32_t *slots; /* id + 1; 0 = empty */
    size_t mask;
    const char *const *keys; /* keys[id] */
    const uint32_t *lens;    /* lens[id] */
};

uint64_t tok_hash(const void *p, size_t n);

/* memmem (a GNU extension, not in our feature set) */
static inline const char *tok_memmem(const char *h, size_t hn, const char *nd, size_t nn) {
    if (nn == 0)
        return h;
    while (hn >= nn) {
        const char *p = memchr(h, nd[0], hn - nn + 1);
        if (!p)
            return NULL;
        if (!memcmp(p, nd, nn))
            return p;
        hn -= (size_t)(p - h) + 1;
        h = p + 1;
    }
    return NULL;
}

/* ---- codepoints (tok_unicode.c) ---- */
enum {
    CPT_NUMBER = 1 << 0,
    CPT_LETTER = 1 << 1,
    CPT_PUNCT = 1 << 2,
    CPT_MARK = 1 << 3,
    CPT_SYMBOL = 1 << 4,
    CPT_SPACE = 1 << 5, /* llama.cpp's whitespace set (Unicode White_Space) */
};

/* Category flags as llama.cpp's unicode tables (Unicode 15.1) give them. */
unsigned tok_cpt_flags(uint32_t c);
/* Byte length llama.cpp assumes from a lead byte (unicode_len_utf8). */
static inline size_t tok_utf8_len(unsigned char c) {
    static const unsigned char lut[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lut[c >> 4];
}
/* Decodes like unicode_cpts_from_utf8: invalid sequences give U+FFFD for
 * one byte. out needs len entries; returns the count. */
size_t tok_decode_utf8(const char *s, size_t len, uint32_t *out);
/* Encodes c (U+FFFD when above U+10FFFF); returns bytes written (1..4). */
size_t tok_encode_utf8(uint32_t c, char *out);

/* ---- pre-tokenizer (tok_pretok.c) ---- */
enum tok_split_kind { SPLIT_GPT2 = 1, SPLIT_LLAMA3, SPLIT_QWEN2, SPLIT_REGEX };

struct tok_split {
    enum tok_split_kind kind;
    void *code; /* pcre2_code_8 * for SPLIT_REGEX (collapsed form) */
    void *mctx; /* match context */
    bool collapsed;
};

enum {
    TOK_PRE_NO_CLEAN = 1,      /* clean_spaces = false */
    TOK_PRE_IGNORE_MERGES = 2, /* a word that is a token is taken whole */
    TOK_PRE_ADD_BOS = 4,       /* add_bos default true */
    TOK_PRE_NO_BOS = 8,        /* no BOS token */
};

struct tok_pretok {
    struct tok_split splits[8];
    int n;
    int flags; /* TOK_PRE_* */
};

/* Sets up the pre-tokenizer for tokenizer.ggml.pre = name. */
int tok_pretok_init(struct tok_pretok *p, const char *name, struct ica_error *err);
void tok_pretok_free(struct tok_pretok *p);

/* Splits cpts[0..n) into words; writes word lengths (in codepoints) to a
 * malloc'd array. Returns 0 or ICA_ERR_NOMEM. */
int tok_pretok_split(const struct tok_pretok *p, const uint32_t *cpts, size_t n, size_t **lens,
                     size_t *n_lens);

/* ---- vocabulary ---- */
struct tok_token {
    const char *text; /* NUL-terminated, in the arena */
    uint32_t len;
    float score;
    uint16_t attr;
    uint8_t type;
};

struct tok_merge {
    uint64_t key; /* left id << 32 | right id; 0 = empty slot (ids are + 1) */
    int32_t rank;
    int32_t result; /* string id of the merged text */
};

struct tok_vocab {
    enum tok_model model;
    char pre[64];
    int32_t n_tokens;
    struct tok_token *tok;
    /* strings: ids [0, n_tokens) are tokens; [n_tokens, n_str) are merge
     * parts that are not tokens (BPE only). */
    int32_t n_str;
    const char **str;
    uint32_t *str_len;
    struct tok_map map;

    struct tok_merge *merges;
    size_t merge_mask;

    char *arena;
    size_t arena_len, arena_cap;
    char *extra; /* extra string storage (virtual strings) */

    uint32_t *piece_off; /* pieces (special = true) in piece_buf */
    uint32_t *piece_len;
    char *piece_buf;

    int32_t bos, eos, eot, eom, unk, sep, pad, mask, newline;
    int32_t fim_pre, fim_suf, fim_mid, fim_pad, fim_rep, fim_sep;
    bool add_bos, add_eos, add_space_prefix, ignore_merges, clean_spaces;
    uint8_t *eog; /* n_tokens flags */

    int32_t *special; /* control / user-defined / unknown ids, longest first */
    int32_t n_special;
    uint32_t max_token_len;

    int32_t byte_tok[256]; /* SPM: <0xXX> (or raw byte) ids; BPE: byte-encoded ids */
    char byte_enc[256][3]; /* GPT-2 bytes_to_unicode, UTF-8, NUL-terminated */
    uint8_t byte_enc_len[256];

    struct tok_pretok pretok;
};

/* Id of exact string in the map (tokens, then virtual strings); -1. */
int32_t tok_lookup(const struct tok_vocab *v, const char *s, size_t n);

#endif
