/* Tokenizers read from GGUF metadata (tokenizer.ggml.*), reproducing
 * llama.cpp (commit 0253fb21) exactly:
 *   model "llama": SentencePiece (score-ordered bigram merges, byte fallback
 *                  <0xXX>, dummy-prefix space, U+2581 escaping);
 *   model "gpt2":  byte-level BPE with ranked merges and the pre-tokenizer
 *                  selected by tokenizer.ggml.pre.
 * Special-token text (control / user-defined tokens) is split out before the
 * model runs; control tokens only when parse_special is on, user-defined ones
 * always (as llama.cpp does).
 *
 * A tok_vocab is immutable after creation: all functions taking a const
 * vocab may be called from several threads at once. It copies everything it
 * needs, so the gguf_file may be closed afterwards. */
#ifndef ICALIGN_TOK_H
#define ICALIGN_TOK_H

#include "icalign/common.h"
#include "icalign/gguf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Token types as stored in tokenizer.ggml.token_type. */
enum tok_type {
    TOK_TYPE_UNDEFINED = 0,
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6,
};

/* Token attributes as llama.cpp derives them (bit set). */
enum tok_attr {
    TOK_ATTR_UNDEFINED = 0,
    TOK_ATTR_UNKNOWN = 1 << 0,
    TOK_ATTR_UNUSED = 1 << 1,
    TOK_ATTR_NORMAL = 1 << 2,
    TOK_ATTR_CONTROL = 1 << 3,
    TOK_ATTR_USER_DEFINED = 1 << 4,
    TOK_ATTR_BYTE = 1 << 5,
};

enum tok_model {
    TOK_MODEL_SPM = 1, /* tokenizer.ggml.model = "llama" */
    TOK_MODEL_BPE = 2, /* tokenizer.ggml.model = "gpt2" */
};

struct tok_vocab;

/* Builds a vocabulary from an opened GGUF file. Fails with
 * ICA_ERR_UNSUPPORTED for other tokenizer models or pre-tokenizers, and
 * ICA_ERR_FORMAT for malformed metadata; err names the key. */
ICA_API int tok_vocab_from_gguf(const struct gguf_file *f, struct tok_vocab **out,
                                struct ica_error *err) ICA_WUR;
/* Opens path, builds the vocabulary, closes the file. */
ICA_API int tok_vocab_load(const char *path, struct tok_vocab **out, struct ica_error *err) ICA_WUR;
ICA_API void tok_vocab_free(struct tok_vocab *v);

ICA_API int32_t tok_n_tokens(const struct tok_vocab *v);
ICA_API enum tok_model tok_vocab_model(const struct tok_vocab *v);
/* tokenizer.ggml.pre as read ("" when absent or for SPM). */
ICA_API const char *tok_vocab_pre(const struct tok_vocab *v);

/* Special ids, -1 if none. */
ICA_API int32_t tok_bos(const struct tok_vocab *v);
ICA_API int32_t tok_eos(const struct tok_vocab *v);
ICA_API int32_t tok_eot(const struct tok_vocab *v);
ICA_API int32_t tok_unk(const struct tok_vocab *v);
ICA_API int32_t tok_pad(const struct tok_vocab *v);
ICA_API int32_t tok_newline(const struct tok_vocab *v);
/* Whether tokenizing with add_special adds BOS / EOS (metadata defaults). */
ICA_API bool tok_add_bos(const struct tok_vocab *v);
ICA_API bool tok_add_eos(const struct tok_vocab *v);

/* Per-token data; id must be in [0, n_tokens) (else NULL / 0 / UNDEFINED).
 * tok_text is the raw vocabulary string (NUL-terminated, *len if non-NULL). */
ICA_API const char *tok_text(const struct tok_vocab *v, int32_t id, size_t *len);
ICA_API float tok_score(const struct tok_vocab *v, int32_t id);
ICA_API enum tok_type tok_get_type(const struct tok_vocab *v, int32_t id);
ICA_API uint32_t tok_get_attr(const struct tok_vocab *v, int32_t id);
ICA_API bool tok_is_control(const struct tok_vocab *v, int32_t id);
/* End of generation: EOS, EOT, EOM and the other tokens llama.cpp treats
 * as ending generation (<|eot_id|>, <|im_end|>, <|endoftext|>, ...). */
ICA_API bool tok_is_eog(const struct tok_vocab *v, int32_t id);
/* Looks up exact token text; -1 if absent. */
ICA_API int32_t tok_find(const struct tok_vocab *v, const char *text, size_t len);

/* Tokenizes text[0..len). add_special adds BOS/EOS as the metadata says;
 * parse_special turns control-token text into the control token. *ids is
 * malloc'd (free() it; may be NULL when *n == 0). Never fails on odd bytes:
 * invalid UTF-8 is handled as llama.cpp does. */
ICA_API int tok_tokenize(const struct tok_vocab *v, const char *text, size_t len, bool add_special,
                         bool parse_special, int32_t **ids, size_t *n,
                         struct ica_error *err) ICA_WUR;

/* Text of one token (llama_token_to_piece): control/unknown tokens render
 * only when special is true; up to lstrip leading spaces are skipped.
 * Returns the piece length, or -(needed length) if bufsz is too small,
 * or 0 for an out-of-range id. */
ICA_API int32_t tok_token_to_piece(const struct tok_vocab *v, int32_t id, bool special,
                                   int32_t lstrip, char *buf, size_t bufsz);
/* Borrowed piece (rendered as with special = true, no lstrip). */
ICA_API const char *tok_piece(const struct tok_vocab *v, int32_t id, size_t *len);

/* Detokenizes (llama_detokenize): remove_special drops a leading BOS /
 * trailing EOS the vocab adds; unparse_special renders control tokens.
 * *out is malloc'd and NUL-terminated, *len excludes the NUL. */
ICA_API int tok_detokenize(const struct tok_vocab *v, const int32_t *ids, size_t n,
                           bool remove_special, bool unparse_special, char **out, size_t *len,
                           struct ica_error *err) ICA_WUR;

#endif
