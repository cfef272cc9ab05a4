/* Random-weight models of any shape, written through the GGUF writer. */
#include "model_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [-a, a). */
static float rng_uniform(uint64_t *s, float a) {
    return ((float)(rng_next(s) >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * a;
}

/* Adds a tensor of ne[0] x rows (x experts) filled with uniform noise of
 * variance 1/ne[0] (or 1 + noise for norms) converted to type. */
static int add(struct gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
               const int64_t *ne, uint64_t *rng, int kind, struct ica_error *err) {
    int64_t rows = 1;
    for (uint32_t i = 1; i < n_dims; i++)
        rows *= ne[i];
    const int64_t cols = ne[0];
    const size_t rs = ica_dtype_row_size(type, cols);
    const struct kern_traits *tr = kern_get_traits(type);
    if (!rs || !tr || !tr->from_float)
        return ica_seterr(err, ICA_ERR_UNSUPPORTED,
                          "synth: cannot write %s as type %u (row of %lld)", name, type,
                          (long long)cols);
    uint8_t *data = malloc(rs * (size_t)rows);
    float *row = malloc((size_t)cols * sizeof *row);
    if (!data || !row) {
        free(data);
        free(row);
        return ica_seterr(err, ICA_ERR_NOMEM, "synth: out of memory for %s", name);
    }
    const float a = sqrtf(3.0f / (float)cols);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols; i++) {
            if (kind == 1) /* norm weight */
                row[i] = 1.0f + rng_uniform(rng, 0.17f);
            else if (kind == 2) /* bias */
                row[i] = rng_uniform(rng, 0.1f);
            else if (kind == 3) /* embeddings: unit variance */
                row[i] = rng_uniform(rng, 1.7320508f);
            else
                row[i] = rng_uniform(rng, a);
        }
        tr->from_float(row, data + (size_t)r * rs, cols);
    }
    int rc = gguf_writer_add_tensor(w, name, type, n_dims, ne, data, rs * (size_t)rows);
    free(data);
    free(row);
    if (rc != ICA_OK)
        return ica_seterr(err, rc, "synth: cannot add tensor %s", name);
    return ICA_OK;
}

int model_synth_write(const char *path, const struct model_synth_config *cfg,
                      struct ica_error *err) {
    const bool qwen = strcmp(cfg->arch, "qwen2") == 0;
    if (!qwen && strcmp(cfg->arch, "llama") != 0)
        return ica_seterr(err, ICA_ERR_ARG, "synth: unknown architecture '%s'", cfg->arch);
    if (!cfg->n_head || !cfg->n_head_kv || cfg->n_head % cfg->n_head_kv || !cfg->n_embd ||
        !cfg->n_layer || !cfg->n_ff || !cfg->n_vocab)
        return ica_seterr(err, ICA_ERR_ARG, "synth: inconsistent dimensions");
    const uint32_t hd = cfg->head_dim ? cfg->head_dim : cfg->n_embd / cfg->n_head;
    struct gguf_writer *w = gguf_writer_new();
    if (!w)
        return ica_seterr(err, ICA_ERR_NOMEM, "synth: out of memory");
    char key[128];
    int rc = ICA_OK;
#define KEY(suffix) (snprintf(key, sizeof key, "%s.%s", cfg->arch, suffix), key)
    rc |= gguf_writer_set_str(w, "general.architecture", cfg->arch);
    rc |= gguf_writer_set_str(w, "general.name", cfg->name ? cfg->name : "icalign-synth");
    rc |= gguf_writer_set_u32(w, KEY("context_length"), cfg->n_ctx ? cfg->n_ctx : 2048);
    rc |= gguf_writer_set_u32(w, KEY("embedding_length"), cfg->n_embd);
    rc |= gguf_writer_set_u32(w, KEY("block_count"), cfg->n_layer);
    rc |= gguf_writer_set_u32(w, KEY("feed_forward_length"), cfg->n_ff);
    rc |= gguf_writer_set_u32(w, KEY("attention.head_count"), cfg->n_head);
    rc |= gguf_writer_set_u32(w, KEY("attention.head_count_kv"), cfg->n_head_kv);
    rc |= gguf_writer_set_u32(w, KEY("rope.dimension_count"), hd);
    if (hd * cfg->n_head != cfg->n_embd) {
        rc |= gguf_writer_set_u32(w, KEY("attention.key_length"), hd);
        rc |= gguf_writer_set_u32(w, KEY("attention.value_length"), hd);
    }
    rc |= gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), qwen ? 1e-6f : 1e-5f);
    rc |= gguf_writer_set_f32(w, KEY("rope.freq_base"),
                              cfg->rope_base > 0 ? cfg->rope_base : (qwen ? 1e6f : 1e4f));
    if (cfg->rope_linear > 0) {
        rc |= gguf_writer_set_str(w, KEY("rope.scaling.type"), "linear");
        rc |= gguf_writer_set_f32(w, KEY("rope.scaling.factor"), cfg->rope_linear);
    }
    if (cfg->n_expert) {
        rc |= gguf_writer_set_u32(w, KEY("expert_count"), cfg->n_expert);
        rc |= gguf_writer_set_u32(w, KEY("expert_used_count"), cfg->n_expert_used);
    }
    rc |= gguf_writer_set_u32(w, "general.file_type", cfg->wtype);
#undef KEY
    if (rc != ICA_OK) {
        gguf_writer_free(w);
        return ica_seterr(err, ICA_ERR_NOMEM, "synth: cannot set metadata");
    }
    uint64_t rng = cfg->seed * 0x2545F4914F6CDD1Dull + 1;
    const int64_t E = cfg->n_embd, V = cfg->n_vocab, F = cfg->n_ff, X = cfg->n_expert;
    const int64_t QD = (int64_t)cfg->n_head * hd, KD = (int64_t)cfg->n_head_kv * hd;
    const uint32_t wt = cfg->wtype;
#define ADD(name, type, nd, kind, ...)                                                             \
    do {                                                                                           \
        if (rc == ICA_OK)                                                                          \
            rc = add(w, name, type, nd, (int64_t[]){__VA_ARGS__}, &rng, kind, err);                \
    } while (0)
    ADD("token_embd.weight", wt, 2, 3, E, V);
    ADD("output_norm.weight", ICA_F32, 1, 1, E);
    if (!cfg->tied_output)
        ADD("output.weight", cfg->out_type ? cfg->out_type : wt, 2, 0, E, V);
    if (cfg->rope_freqs && rc == ICA_OK) {
        /* Llama 3.1 style factors: 1 for high frequencies, up to 8 for low. */
        float *ff = malloc(hd / 2 * sizeof *ff);
        if (!ff) {
            rc = ica_seterr(err, ICA_ERR_NOMEM, "synth: out of memory");
        } else {
            for (uint32_t i = 0; i < hd / 2; i++)
                ff[i] = 1.0f + 7.0f * (float)i / (float)(hd / 2);
            rc = gguf_writer_add_tensor(w, "rope_freqs.weight", ICA_F32, 1, (int64_t[]){hd / 2}, ff,
                                        hd / 2 * sizeof *ff);
            free(ff);
        }
    }
    for (uint32_t il = 0; il < cfg->n_layer && rc == ICA_OK; il++) {
        char nm[96];
#define NM(s) (snprintf(nm, sizeof nm, "blk.%u.%s", il, s), nm)
        ADD(NM("attn_norm.weight"), ICA_F32, 1, 1, E);
        ADD(NM("attn_q.weight"), wt, 2, 0, E, QD);
        ADD(NM("attn_k.weight"), wt, 2, 0, E, KD);
        ADD(NM("attn_v.weight"), wt, 2, 0, E, KD);
        ADD(NM("attn_output.weight"), wt, 2, 0, QD, E);
        if (qwen || cfg->qkv_bias) {
            ADD(NM("attn_q.bias"), ICA_F32, 1, 2, QD);
            ADD(NM("attn_k.bias"), ICA_F32, 1, 2, KD);
            ADD(NM("attn_v.bias"), ICA_F32, 1, 2, KD);
        }
        ADD(NM("ffn_norm.weight"), ICA_F32, 1, 1, E);
        if (X == 0) {
            ADD(NM("ffn_gate.weight"), wt, 2, 0, E, F);
            ADD(NM("ffn_up.weight"), wt, 2, 0, E, F);
            ADD(NM("ffn_down.weight"), wt, 2, 0, F, E);
        } else {
            ADD(NM("ffn_gate_inp.weight"), ICA_F32, 2, 0, E, X);
            ADD(NM("ffn_gate_exps.weight"), wt, 3, 0, E, F, X);
            ADD(NM("ffn_up_exps.weight"), wt, 3, 0, E, F, X);
            ADD(NM("ffn_down_exps.weight"), wt, 3, 0, F, E, X);
        }
#undef NM
    }
#undef ADD
    if (rc == ICA_OK)
        rc = gguf_writer_write(w, path, err);
    gguf_writer_free(w);
    return rc;
}
