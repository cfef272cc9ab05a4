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

/* What a tensor holds; the data is produced when the writer asks for it. */
struct synth_tensor {
    uint32_t type;
    int64_t cols, rows;
    int kind; /* 0 matrix (variance 1/cols), 1 norm (1 + noise), 2 bias, 3 embedding, 4 given */
    uint64_t seed;
    const float *given; /* kind 4 */
};

static int gen_tensor(void *ud, const char *name, void *buf, size_t nbytes) {
    (void)name;
    (void)nbytes;
    const struct synth_tensor *t = ud;
    const struct kern_traits *tr = kern_get_traits(t->type);
    const size_t rs = ica_dtype_row_size(t->type, t->cols);
    float *row = malloc((size_t)t->cols * sizeof *row);
    if (!row)
        return ICA_ERR_NOMEM;
    uint64_t rng = t->seed;
    const float a = sqrtf(3.0f / (float)t->cols);
    for (int64_t r = 0; r < t->rows; r++) {
        for (int64_t i = 0; i < t->cols; i++) {
            if (t->kind == 1)
                row[i] = 1.0f + rng_uniform(&rng, 0.17f);
            else if (t->kind == 2)
                row[i] = rng_uniform(&rng, 0.1f);
            else if (t->kind == 3)
                row[i] = rng_uniform(&rng, 1.7320508f);
            else if (t->kind == 4)
                row[i] = t->given[r * t->cols + i];
            else
                row[i] = rng_uniform(&rng, a);
        }
        tr->from_float(row, (uint8_t *)buf + (size_t)r * rs, t->cols);
    }
    free(row);
    return ICA_OK;
}

struct synth {
    struct gguf_writer *w;
    struct synth_tensor *ts;
    size_t n, cap;
    uint64_t seed;
    struct ica_error *err;
};

static int add(struct synth *S, const char *name, uint32_t type, uint32_t n_dims, const int64_t *ne,
               int kind, const float *given) {
    int64_t rows = 1;
    for (uint32_t i = 1; i < n_dims; i++)
        rows *= ne[i];
    const size_t rs = ica_dtype_row_size(type, ne[0]);
    const struct kern_traits *tr = kern_get_traits(type);
    if (!rs || !tr || !tr->from_float)
        return ica_seterr(
            S->err, ICA_ERR_UNSUPPORTED, "synth: cannot write %s as %s (row of %lld elements)",
            name, ica_dtype_info(type) ? ica_dtype_info(type)->name : "?", (long long)ne[0]);
    if (S->n == S->cap)
        return ica_seterr(S->err, ICA_ERR_RANGE, "synth: too many tensors");
    struct synth_tensor *t = &S->ts[S->n++];
    t->type = type;
    t->cols = ne[0];
    t->rows = rows;
    t->kind = kind;
    t->given = given;
    /* Each tensor's stream depends only on the seed and its index. */
    uint64_t z = S->seed + 0x9E3779B97F4A7C15ull * S->n;
    t->seed = rng_next(&z);
    int rc =
        gguf_writer_add_tensor_gen(S->w, name, type, n_dims, ne, rs * (size_t)rows, gen_tensor, t);
    if (rc != ICA_OK)
        return ica_seterr(S->err, rc, "synth: cannot add tensor %s", name);
    return ICA_OK;
}

/* A SentencePiece-style vocabulary of n tokens: <unk> <s> </s>, the 256
 * byte tokens, then filler pieces "\u2581a", "b", ... with falling scores. */
static int synth_vocab(struct gguf_writer *w, uint32_t n, struct ica_error *err) {
    if (n < 259 + 26)
        return ica_seterr(err, ICA_ERR_ARG, "synth: vocabulary of %u tokens is too small (>= 285)",
                          n);
    char **toks = calloc(n, sizeof *toks);
    float *scores = malloc(n * sizeof *scores);
    int32_t *types = malloc(n * sizeof *types);
    int rc = (!toks || !scores || !types) ? ICA_ERR_NOMEM : ICA_OK;
    for (uint32_t i = 0; i < n && rc == ICA_OK; i++) {
        char buf[32];
        if (i == 0)
            snprintf(buf, sizeof buf, "<unk>");
        else if (i == 1)
            snprintf(buf, sizeof buf, "<s>");
        else if (i == 2)
            snprintf(buf, sizeof buf, "</s>");
        else if (i < 259)
            snprintf(buf, sizeof buf, "<0x%02X>", i - 3);
        else {
            /* base-26 name of the index, every other one with the word marker */
            uint32_t k = i - 259;
            size_t len = 0;
            if (k % 2 == 0) {
                memcpy(buf, "\xe2\x96\x81", 3);
                len = 3;
            }
            k /= 2;
            do {
                buf[len++] = (char)('a' + k % 26);
                k /= 26;
            } while (k && len < 30);
            buf[len] = '\0';
        }
        toks[i] = strdup(buf);
        if (!toks[i])
            rc = ICA_ERR_NOMEM;
        scores[i] = i < 259 ? 0.0f : -(float)(i - 259);
        types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
    }
    if (rc == ICA_OK)
        rc = gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    if (rc == ICA_OK)
        rc = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, n);
    if (rc == ICA_OK)
        rc = gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, scores, n);
    if (rc == ICA_OK)
        rc = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, types, n);
    if (rc == ICA_OK)
        rc = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    if (rc == ICA_OK)
        rc = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    if (rc == ICA_OK)
        rc = gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    if (rc == ICA_OK)
        rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    if (rc == ICA_OK)
        rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false);
    for (uint32_t i = 0; toks && i < n; i++)
        free(toks[i]);
    free(toks);
    free(scores);
    free(types);
    return rc == ICA_OK ? ICA_OK : ica_seterr(err, rc, "synth: cannot write the vocabulary");
}

/* Copies every tokenizer.* key of another GGUF file. */
static int copy_vocab(struct gguf_writer *w, const char *path, uint32_t n_vocab,
                      struct ica_error *err) {
    struct gguf_file *f;
    int rc = gguf_open(path, &f, err);
    if (rc != ICA_OK)
        return rc;
    const struct gguf_value *tv = gguf_get(f, "tokenizer.ggml.tokens");
    if (!tv || tv->type != GGUF_VT_ARRAY || tv->n != n_vocab) {
        gguf_close(f);
        return ica_seterr(err, ICA_ERR_ARG, "synth: %s has %llu tokens, the model needs %u", path,
                          tv ? (unsigned long long)tv->n : 0ull, n_vocab);
    }
    for (int64_t i = 0; i < gguf_n_kv(f) && rc == ICA_OK; i++) {
        struct gguf_str k = gguf_key(f, i);
        if (k.len < 10 || memcmp(k.ptr, "tokenizer.", 10) != 0 || k.len > 200)
            continue;
        char key[256];
        memcpy(key, k.ptr, k.len);
        key[k.len] = '\0';
        const struct gguf_value *v = gguf_kv(f, i);
        switch (v->type) {
        case GGUF_VT_STRING: {
            char *str = strndup(v->v.s.ptr, v->v.s.len);
            rc = str ? gguf_writer_set_str(w, key, str) : ICA_ERR_NOMEM;
            free(str);
            break;
        }
        case GGUF_VT_BOOL:
            rc = gguf_writer_set_bool(w, key, v->v.b);
            break;
        case GGUF_VT_UINT8:
        case GGUF_VT_UINT16:
        case GGUF_VT_UINT32:
        case GGUF_VT_UINT64:
            rc = gguf_writer_set_u32(w, key, (uint32_t)v->v.u);
            break;
        case GGUF_VT_INT8:
        case GGUF_VT_INT16:
        case GGUF_VT_INT32:
        case GGUF_VT_INT64:
            rc = gguf_writer_set_i32(w, key, (int32_t)v->v.i);
            break;
        case GGUF_VT_FLOAT32:
        case GGUF_VT_FLOAT64:
            rc = gguf_writer_set_f32(w, key, (float)v->v.f);
            break;
        case GGUF_VT_ARRAY:
            if (v->elem_type == GGUF_VT_STRING) {
                char **strs = calloc(v->n ? v->n : 1, sizeof *strs);
                rc = strs ? ICA_OK : ICA_ERR_NOMEM;
                for (uint64_t j = 0; j < v->n && rc == ICA_OK; j++) {
                    struct gguf_str sv;
                    rc = gguf_arr_str(f, v, j, &sv);
                    if (rc == ICA_OK && !(strs[j] = strndup(sv.ptr, sv.len)))
                        rc = ICA_ERR_NOMEM;
                }
                if (rc == ICA_OK)
                    rc = gguf_writer_set_arr_str(w, key, (const char *const *)strs, v->n);
                for (uint64_t j = 0; strs && j < v->n; j++)
                    free(strs[j]);
                free(strs);
            } else if (gguf_arr_data(f, v)) {
                rc = gguf_writer_set_arr(w, key, v->elem_type, gguf_arr_data(f, v), v->n);
            }
            break;
        }
    }
    gguf_close(f);
    return rc == ICA_OK ? ICA_OK
                        : ica_seterr(err, rc, "synth: cannot copy the vocabulary of %s", path);
}

/* llama.cpp's file type code (LLAMA_FTYPE_*) for files whose matrices are
 * all of one type: what llama.cpp shows as the model's quantization. */
static uint32_t file_type_of(uint32_t t) {
    switch (t) {
    case ICA_F32:
        return 0;
    case ICA_F16:
        return 1;
    case ICA_Q4_0:
        return 2;
    case ICA_Q4_1:
        return 3;
    case ICA_Q8_0:
        return 7;
    case ICA_Q5_0:
        return 8;
    case ICA_Q5_1:
        return 9;
    case ICA_Q2_K:
        return 10;
    case ICA_Q3_K:
        return 11; /* Q3_K_S */
    case ICA_Q4_K:
        return 14; /* Q4_K_S */
    case ICA_Q5_K:
        return 16; /* Q5_K_S */
    case ICA_Q6_K:
        return 18;
    case ICA_IQ4_NL:
        return 25;
    case ICA_IQ4_XS:
        return 30;
    case ICA_BF16:
        return 32;
    default:
        return 0;
    }
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
    rc |= gguf_writer_set_u32(w, "general.file_type",
                              cfg->file_type ? cfg->file_type : file_type_of(cfg->wtype));
#undef KEY
    if (rc != ICA_OK) {
        gguf_writer_free(w);
        return ica_seterr(err, ICA_ERR_NOMEM, "synth: cannot set metadata");
    }
    struct synth S = {w, NULL, 0, 16 + 16 * (size_t)cfg->n_layer, cfg->seed, err};
    S.ts = calloc(S.cap, sizeof *S.ts);
    float *ff = NULL;
    if (!S.ts)
        rc = ica_seterr(err, ICA_ERR_NOMEM, "synth: out of memory");
    if (rc == ICA_OK)
        rc = cfg->vocab_from ? copy_vocab(w, cfg->vocab_from, cfg->n_vocab, err)
                             : synth_vocab(w, cfg->n_vocab, err);
    const int64_t E = cfg->n_embd, V = cfg->n_vocab, F = cfg->n_ff, X = cfg->n_expert;
    const int64_t QD = (int64_t)cfg->n_head * hd, KD = (int64_t)cfg->n_head_kv * hd;
    const uint32_t wt = cfg->wtype;
#define ADD(name, type, nd, kind, ...)                                                             \
    do {                                                                                           \
        if (rc == ICA_OK)                                                                          \
            rc = add(&S, name, type, nd, (int64_t[]){__VA_ARGS__}, kind, NULL);                    \
    } while (0)
    ADD("token_embd.weight", wt, 2, 3, E, V);
    ADD("output_norm.weight", ICA_F32, 1, 1, E);
    if (!cfg->tied_output)
        ADD("output.weight", cfg->out_type ? cfg->out_type : wt, 2, 0, E, V);
    if (cfg->rope_freqs && rc == ICA_OK) {
        /* Llama 3.1 style factors: 1 for high frequencies, up to 8 for low. */
        ff = malloc(hd / 2 * sizeof *ff);
        if (!ff) {
            rc = ica_seterr(err, ICA_ERR_NOMEM, "synth: out of memory");
        } else {
            for (uint32_t i = 0; i < hd / 2; i++)
                ff[i] = 1.0f + 7.0f * (float)i / (float)(hd / 2);
            rc = add(&S, "rope_freqs.weight", ICA_F32, 1, (int64_t[]){hd / 2}, 4, ff);
        }
    }
    for (uint32_t il = 0; il < cfg->n_layer && rc == ICA_OK; il++) {
        char nm[96];
#define NM(s) (snprintf(nm, sizeof nm, "blk.%u.%s", il, s), nm)
        ADD(NM("attn_norm.weight"), ICA_F32, 1, 1, E);
        ADD(NM("attn_q.weight"), wt, 2, 0, E, QD);
        ADD(NM("attn_k.weight"), wt, 2, 0, E, KD);
        /* llama.cpp's use_more_bits(i, n) for the K_M mixes */
        const uint32_t n8 = cfg->n_layer / 8;
        const bool more = cfg->more_type && (il < n8 || il >= 7 * cfg->n_layer / 8 ||
                                             (il >= n8 && (il - n8) % 3 == 2));
        const uint32_t wmore = more ? cfg->more_type : wt;
        ADD(NM("attn_v.weight"), wmore, 2, 0, E, KD);
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
            ADD(NM("ffn_down.weight"), wmore, 2, 0, F, E);
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
    free(S.ts);
    free(ff);
    return rc;
}
