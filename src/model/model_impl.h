/* Internal structures of the model module. */
#ifndef ICALIGN_MODEL_IMPL_H
#define ICALIGN_MODEL_IMPL_H

#include "icalign/gguf.h"
#include "icalign/kern.h"
#include "icalign/model.h"

#include <stddef.h>

/* A weight matrix: ne[0] (columns) contiguous, rows of row_size bytes. */
struct model_weight {
    const struct gguf_tensor *t; /* NULL when absent (optional tensors) */
    uint32_t type;
    const void *data;
    size_t row_size;
    const struct kern_traits *traits;
    void *rp; /* repacked copy (kern_repack), owned; NULL when none */
};

struct model_layer {
    struct model_weight attn_norm;        /* [n_embd] */
    struct model_weight wq, wk, wv, wo;   /* [n_embd, n_head*hd], ..., wo [n_head*hd_v, n_embd] */
    struct model_weight bq, bk, bv, bo;   /* optional biases */
    struct model_weight ffn_norm;         /* [n_embd] */
    struct model_weight ffn_gate, ffn_up; /* [n_embd, n_ff] */
    struct model_weight ffn_down;         /* [n_ff, n_embd] */
    struct model_weight ffn_gate_inp;     /* MoE router [n_embd, n_expert] */
    struct model_weight ffn_gate_exps;    /* [n_embd, n_ff, n_expert] */
    struct model_weight ffn_up_exps;      /* [n_embd, n_ff, n_expert] */
    struct model_weight ffn_down_exps;    /* [n_ff, n_embd, n_expert] */
};

struct model {
    char *path;
    struct gguf_file *gguf;
    struct model_hparams hp;
    struct model_weight tok_embd;    /* [n_embd, n_vocab] */
    struct model_weight output_norm; /* [n_embd] */
    struct model_weight output;      /* [n_embd, n_vocab] (= tok_embd when tied) */
    struct model_weight rope_freqs;  /* optional [n_rot/2] */
    struct model_layer *layers;
    size_t rp_bytes; /* bytes of all repacked copies */
};

/* Tests: true makes every attention gather the keys and transposed values
 * (the prompt path) instead of reading single tokens' rows in place; both
 * must give the same bits. Not thread-safe; default false. */
void model_attn_force_gather(bool on);

#endif
