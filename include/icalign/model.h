/* Model: architecture configuration read from GGUF metadata, weight views
 * over the memory-mapped file, and the forward pass.
 *
 * Supported: `llama` (Llama 1/2/3/3.1 incl. rope_freqs and linear rope
 * scaling, Mistral, TinyLlama, SmolLM, Yi; llama-style MoE as in Mixtral) and
 * `qwen2` (QKV biases, NEOX rope, tied output). The forward pass follows
 * llama.cpp's graph operation by operation (RMSNorm, rope cache, scaled
 * softmax, SwiGLU, activation rounding before each matrix product) so that
 * logits agree with llama.cpp's CPU backend. */
#ifndef ICALIGN_MODEL_H
#define ICALIGN_MODEL_H

#include "icalign/common.h"
#include "icalign/gguf.h"

#include <stdbool.h>
#include <stdint.h>

struct model_hparams {
    char arch[32];
    char name[128]; /* general.name, may be empty */
    uint32_t n_vocab;
    uint32_t n_ctx_train;
    uint32_t n_embd;
    uint32_t n_layer;
    uint32_t n_head;
    uint32_t n_head_kv;
    uint32_t head_dim;   /* per-head size of q and k */
    uint32_t head_dim_v; /* per-head size of v */
    uint32_t n_ff;
    uint32_t n_rot;    /* rotary dimensions per head (<= head_dim) */
    uint32_t n_expert; /* 0 for dense models */
    uint32_t n_expert_used;
    float rms_eps;
    float rope_freq_base;
    float rope_freq_scale; /* 1/linear scaling factor */
    bool rope_neox;        /* half-split rotation (qwen2) vs adjacent pairs */
    bool has_rope_freqs;   /* rope_freqs.weight divides theta (Llama 3.1) */
    bool tied_output;      /* no output.weight: token_embd is the output matrix */
    bool has_qkv_bias;
    uint32_t file_type; /* general.file_type or UINT32_MAX */
};

struct model;

/* Opens a GGUF model, validates every tensor's presence, type and shape
 * against the hyper-parameters, and keeps the weights memory-mapped (never
 * copied). Errors name the file and the tensor or key. */
ICA_API int model_load(const char *path, struct model **out, struct ica_error *err) ICA_WUR;
ICA_API void model_free(struct model *m);
ICA_API const struct model_hparams *model_get_hparams(const struct model *m);
/* The underlying file (tokenizer metadata lives there). Valid until model_free. */
ICA_API const struct gguf_file *model_gguf(const struct model *m);
/* Bytes of the weights repacked at load for this CPU's kernels (kern_repack; 0 when none,
 * e.g. with ICALIGN_REPACK=0). The mapped pages of a repacked matrix are given back to the
 * kernel after repacking; model_release_repacked gives them back again after something read
 * the whole file (hashing). */
ICA_API size_t model_repacked_bytes(const struct model *m);
ICA_API void model_release_repacked(const struct model *m);

struct model_ctx_params {
    uint32_t n_ctx;    /* positions in the KV cache; 0 = the model's training context */
    uint32_t n_batch;  /* tokens per forward pass (prompt chunking); 0 = 512 */
    uint32_t kv_type;  /* ICA_F32 or ICA_F16 */
    int n_threads;     /* threads of the matrix products; <= 0 = one per CPU */
    bool no_own_cache; /* no single-sequence cache: only model_forward with views works (the
                          scheduler keeps keys and values in its paged cache) */
};

ICA_API struct model_ctx_params model_ctx_default_params(void);

/* One sequence's state: KV cache and scratch, all allocated up front so that
 * model_eval never allocates. */
struct model_ctx;

ICA_API int model_ctx_new(const struct model *m, const struct model_ctx_params *p,
                          struct model_ctx **out, struct ica_error *err) ICA_WUR;
ICA_API void model_ctx_free(struct model_ctx *c);
/* The model this context evaluates. */
ICA_API const struct model *model_ctx_model(const struct model_ctx *c);
/* Number of positions already in the KV cache. */
ICA_API uint32_t model_ctx_n_past(const struct model_ctx *c);
ICA_API uint32_t model_ctx_n_ctx(const struct model_ctx *c);
/* Forgets positions >= n (n <= n_past): the next eval continues from n. */
ICA_API void model_ctx_truncate(struct model_ctx *c, uint32_t n);

/* Appends n tokens at positions n_past..n_past+n-1 (processed in batches of
 * n_batch). If logits is non-NULL it receives n_vocab floats per token when
 * all_logits is true (n rows), else only the last token's row. Fails with
 * ICA_ERR_RANGE when the context would overflow and ICA_ERR_ARG on a token id
 * outside the vocabulary; the cache is unchanged on failure. */
ICA_API int model_eval(struct model_ctx *c, const int32_t *tokens, uint32_t n, float *logits,
                       bool all_logits, struct ica_error *err) ICA_WUR;

/* ---- several sequences in one forward pass (the scheduler's interface) ---- */

/* Where the forward pass reads and writes one sequence's keys and values:
 * k/v return the n_head_kv*head_dim (head_dim_v) elements of position pos in
 * layer il, in the context's KV type. Positions below the batch's first
 * position of that sequence must already hold their values. */
struct model_kv_view {
    void *(*k)(void *ud, uint32_t il, uint32_t pos);
    void *(*v)(void *ud, uint32_t il, uint32_t pos);
    void *ud;
    /* optional (NULL: k and v per position): the rows of positions [0, n)
     * of layer il at once, k[pos] and v[pos] as k() and v() would give */
    void (*rows)(void *ud, uint32_t il, uint32_t n, const uint8_t **k, const uint8_t **v);
};

/* A batch: the tokens of one sequence are contiguous with consecutive
 * positions. output marks rows whose logits are wanted (NULL = the last token
 * of each sequence); decode marks generated tokens (NULL = none), which use
 * the single-token summation order while prompt tokens use the batched one,
 * so that results do not depend on batching or caching. */
struct model_batch {
    uint32_t n;
    const int32_t *tokens;
    const uint32_t *seq; /* index into the views */
    const uint32_t *pos;
    const bool *output;
    const bool *decode;
};

/* One forward pass (n <= n_batch tokens, positions < n_ctx). logits gets
 * n_vocab floats per output row, in batch order. Does not touch the
 * context's own single-sequence cache (model_eval's). */
ICA_API int model_forward(struct model_ctx *c, const struct model_kv_view *views, uint32_t n_views,
                          const struct model_batch *b, float *logits,
                          struct ica_error *err) ICA_WUR;
ICA_API uint32_t model_ctx_n_batch(const struct model_ctx *c);
ICA_API uint32_t model_ctx_kv_type(const struct model_ctx *c);

/* ---- synthetic models (tests, benchmarks, `icalign synth`) ---- */

struct model_synth_config {
    const char *arch; /* "llama" or "qwen2" */
    const char *name; /* general.name */
    uint32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx;
    uint32_t n_expert, n_expert_used; /* 0 = dense */
    uint32_t wtype;                   /* type of the 2-D matrices (norms and biases stay F32) */
    uint32_t out_type;                /* type of output.weight (0 = F32; ignored when tied) */
    uint32_t more_type; /* K_M mixes: attn_v and ffn_down of llama.cpp's "more bits" layers (the
                           first and last eighth, every third between) in this type; 0 = none */
    uint32_t file_type; /* general.file_type to write (LLAMA_FTYPE_*); 0 = from wtype */
    bool tied_output;   /* omit output.weight */
    bool qkv_bias;      /* attn_{q,k,v}.bias (qwen2 always has them) */
    bool rope_freqs;    /* write a rope_freqs.weight (Llama 3.1 style factors) */
    float rope_base;    /* 0 = 10000 */
    float rope_linear;  /* linear rope scaling factor, 0 = none */
    uint64_t seed;
    const char *vocab_from; /* copy tokenizer.* metadata from this GGUF (its token count must
                               equal n_vocab); NULL = a synthetic SentencePiece vocabulary */
};

/* Writes a random-weight model of the given shape as GGUF (weights uniform
 * with variance 1/fan_in, norm weights 1 + noise), quantized with kern's
 * quantizers, one tensor at a time (multi-GB files need little memory).
 * Tokenizer metadata: copied from cfg->vocab_from, or a synthetic
 * SentencePiece vocabulary (<unk> <s> </s>, 256 byte tokens, filler pieces)
 * that llama.cpp also loads. */
ICA_API int model_synth_write(const char *path, const struct model_synth_config *cfg,
                              struct ica_error *err) ICA_WUR;

#endif
