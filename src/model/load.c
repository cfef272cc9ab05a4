/* Model loading: hyper-parameters from GGUF metadata and weight views over
 * the mapping. Every tensor is checked for presence, type and shape here so
 * that the forward pass can trust them. */
#include "model_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Reads "<arch>.<suffix>" as u32; missing keys keep *out (the default). */
static int get_arch_u32(const struct model *m, const char *suffix, uint32_t *out, bool required,
                        struct ica_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->hp.arch, suffix);
    int rc = gguf_get_u32(m->gguf, key, out);
    if (rc == ICA_ERR_NOTFOUND && !required)
        return ICA_OK;
    if (rc != ICA_OK)
        return ica_seterr(err, rc == ICA_ERR_NOTFOUND ? ICA_ERR_FORMAT : rc, "%s: key '%s': %s",
                          m->path, key,
                          rc == ICA_ERR_NOTFOUND ? "missing" : "not a valid unsigned integer");
    return ICA_OK;
}

static int get_arch_f32(const struct model *m, const char *suffix, float *out,
                        struct ica_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->hp.arch, suffix);
    int rc = gguf_get_f32(m->gguf, key, out);
    if (rc == ICA_ERR_NOTFOUND)
        return ICA_OK;
    if (rc != ICA_OK)
        return ica_seterr(err, rc, "%s: key '%s': not a number", m->path, key);
    return ICA_OK;
}

/* Finds a tensor and checks its shape: ne[i] must equal want[i] for i < n
 * and the tensor must have no further non-unit dims. type_ok restricts the
 * types (NULL = any type with kernels). */
static int bind(struct model *m, struct model_weight *w, const char *name, uint32_t n,
                const int64_t *want, bool required, bool f32_only, struct ica_error *err) {
    memset(w, 0, sizeof *w);
    const struct gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    if (!t) {
        if (!required)
            return ICA_OK;
        return ica_seterr(err, ICA_ERR_FORMAT, "%s: tensor '%s' is missing (architecture %s)",
                          m->path, name, m->hp.arch);
    }
    for (uint32_t i = 0; i < 4; i++) {
        int64_t expect = i < n ? want[i] : 1;
        if (t->ne[i] != expect) {
            char got[96], exp[96];
            snprintf(got, sizeof got, "[%lld, %lld, %lld, %lld]", (long long)t->ne[0],
                     (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3]);
            snprintf(exp, sizeof exp, "[%lld, %lld, %lld, %lld]", (long long)want[0],
                     (long long)(n > 1 ? want[1] : 1), (long long)(n > 2 ? want[2] : 1), 1LL);
            return ica_seterr(err, ICA_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s",
                              m->path, name, got, exp);
        }
    }
    const struct ica_dtype_info *di = ica_dtype_info(t->type);
    if (f32_only && t->type != ICA_F32)
        return ica_seterr(err, ICA_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s; expected F32",
                          m->path, name, di ? di->name : "unknown");
    const struct kern_traits *tr = kern_get_traits(t->type);
    if (!tr || !tr->vec_dot || !tr->to_float)
        return ica_seterr(err, ICA_ERR_UNSUPPORTED,
                          "%s: tensor '%s' has type %s (id %u), which icalign cannot compute with",
                          m->path, name, di ? di->name : "unknown", t->type);
    w->t = t;
    w->type = t->type;
    w->data = t->data;
    w->row_size = ica_dtype_row_size(t->type, t->ne[0]);
    w->traits = tr;
    return ICA_OK;
}

static int load_hparams(struct model *m, struct ica_error *err) {
    struct model_hparams *hp = &m->hp;
    struct gguf_str s;
    if (gguf_get_str(m->gguf, "general.architecture", &s) != ICA_OK)
        return ica_seterr(err, ICA_ERR_FORMAT, "%s: key 'general.architecture' missing", m->path);
    if (s.len == 0 || s.len >= sizeof hp->arch)
        return ica_seterr(err, ICA_ERR_UNSUPPORTED, "%s: architecture name of %llu bytes", m->path,
                          (unsigned long long)s.len);
    memcpy(hp->arch, s.ptr, s.len);
    hp->arch[s.len] = '\0';
    if (strcmp(hp->arch, "llama") != 0 && strcmp(hp->arch, "qwen2") != 0)
        return ica_seterr(err, ICA_ERR_UNSUPPORTED,
                          "%s: architecture '%s' is not supported (supported: llama, qwen2)",
                          m->path, hp->arch);
    if (gguf_get_str(m->gguf, "general.name", &s) == ICA_OK) {
        size_t n = s.len < sizeof hp->name - 1 ? (size_t)s.len : sizeof hp->name - 1;
        memcpy(hp->name, s.ptr, n);
        hp->name[n] = '\0';
    }
    hp->file_type = UINT32_MAX;
    (void)gguf_get_u32(m->gguf, "general.file_type", &hp->file_type);

    int rc;
    if ((rc = get_arch_u32(m, "embedding_length", &hp->n_embd, true, err)) ||
        (rc = get_arch_u32(m, "block_count", &hp->n_layer, true, err)) ||
        (rc = get_arch_u32(m, "feed_forward_length", &hp->n_ff, true, err)) ||
        (rc = get_arch_u32(m, "attention.head_count", &hp->n_head, true, err)))
        return rc;
    hp->n_ctx_train = 4096;
    hp->n_head_kv = hp->n_head;
    if ((rc = get_arch_u32(m, "context_length", &hp->n_ctx_train, false, err)) ||
        (rc = get_arch_u32(m, "attention.head_count_kv", &hp->n_head_kv, false, err)))
        return rc;
    if (hp->n_embd == 0 || hp->n_layer == 0 || hp->n_head == 0 || hp->n_ff == 0 ||
        hp->n_head_kv == 0 || hp->n_head % hp->n_head_kv != 0 || hp->n_layer > 4096 ||
        hp->n_embd > (1u << 20) || hp->n_head > 4096)
        return ica_seterr(err, ICA_ERR_FORMAT,
                          "%s: inconsistent dimensions (n_embd %u, layers %u, heads %u/%u, ffn %u)",
                          m->path, hp->n_embd, hp->n_layer, hp->n_head, hp->n_head_kv, hp->n_ff);
    hp->head_dim = hp->n_embd % hp->n_head == 0 ? hp->n_embd / hp->n_head : 0;
    if ((rc = get_arch_u32(m, "attention.key_length", &hp->head_dim, false, err)))
        return rc;
    hp->head_dim_v = hp->head_dim;
    if ((rc = get_arch_u32(m, "attention.value_length", &hp->head_dim_v, false, err)))
        return rc;
    if (hp->head_dim == 0 || hp->head_dim_v == 0 || hp->head_dim > 4096 || hp->head_dim_v > 4096)
        return ica_seterr(err, ICA_ERR_FORMAT, "%s: head size %u/%u is invalid", m->path,
                          hp->head_dim, hp->head_dim_v);
    hp->n_rot = hp->head_dim;
    if ((rc = get_arch_u32(m, "rope.dimension_count", &hp->n_rot, false, err)))
        return rc;
    if (hp->n_rot > hp->head_dim || hp->n_rot % 2)
        return ica_seterr(err, ICA_ERR_FORMAT,
                          "%s: rope.dimension_count %u must be even and <= head size %u", m->path,
                          hp->n_rot, hp->head_dim);
    hp->rms_eps = 1e-5f;
    hp->rope_freq_base = 10000.0f;
    hp->rope_freq_scale = 1.0f;
    if ((rc = get_arch_f32(m, "attention.layer_norm_rms_epsilon", &hp->rms_eps, err)) ||
        (rc = get_arch_f32(m, "rope.freq_base", &hp->rope_freq_base, err)))
        return rc;
    /* Rope scaling: linear divides positions (multiplies theta) by factor. */
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", hp->arch);
    struct gguf_str st = {"none", 4};
    (void)gguf_get_str(m->gguf, key, &st);
    float factor = 0.0f;
    if ((rc = get_arch_f32(m, "rope.scaling.factor", &factor, err)))
        return rc;
    if (factor == 0.0f && (rc = get_arch_f32(m, "rope.scale_linear", &factor, err)))
        return rc;
    if (st.len == 6 && memcmp(st.ptr, "linear", 6) == 0) {
        if (factor > 0.0f)
            hp->rope_freq_scale = 1.0f / factor;
    } else if (st.len == 4 && memcmp(st.ptr, "none", 4) == 0) {
        /* Older files carry only rope.scale_linear. */
        if (factor > 0.0f && factor != 1.0f)
            hp->rope_freq_scale = 1.0f / factor;
    } else {
        return ica_seterr(err, ICA_ERR_UNSUPPORTED, "%s: rope scaling type '%.*s' not supported",
                          m->path, (int)(st.len > 32 ? 32 : st.len), st.ptr);
    }
    if (!(hp->rope_freq_base > 0.0f) || !(hp->rms_eps >= 0.0f))
        return ica_seterr(err, ICA_ERR_FORMAT, "%s: invalid rope base %g or norm epsilon %g",
                          m->path, (double)hp->rope_freq_base, (double)hp->rms_eps);
    if ((rc = get_arch_u32(m, "expert_count", &hp->n_expert, false, err)) ||
        (rc = get_arch_u32(m, "expert_used_count", &hp->n_expert_used, false, err)))
        return rc;
    if (hp->n_expert > 0 &&
        (hp->n_expert_used == 0 || hp->n_expert_used > hp->n_expert || hp->n_expert > 1024))
        return ica_seterr(err, ICA_ERR_FORMAT, "%s: expert_used_count %u / expert_count %u",
                          m->path, hp->n_expert_used, hp->n_expert);
    hp->rope_neox = strcmp(hp->arch, "qwen2") == 0;
    return ICA_OK;
}

static int load_weights(struct model *m, struct ica_error *err) {
    struct model_hparams *hp = &m->hp;
    const struct gguf_tensor *emb = gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!emb)
        return ica_seterr(err, ICA_ERR_FORMAT, "%s: tensor 'token_embd.weight' is missing",
                          m->path);
    if (emb->ne[1] <= 0 || emb->ne[1] > INT32_MAX)
        return ica_seterr(err, ICA_ERR_FORMAT, "%s: token_embd.weight has %lld rows", m->path,
                          (long long)emb->ne[1]);
    hp->n_vocab = (uint32_t)emb->ne[1];
    const int64_t E = hp->n_embd, V = hp->n_vocab, F = hp->n_ff, X = hp->n_expert;
    const int64_t QD = (int64_t)hp->n_head * hp->head_dim;
    const int64_t KD = (int64_t)hp->n_head_kv * hp->head_dim;
    const int64_t VD = (int64_t)hp->n_head_kv * hp->head_dim_v;
    const int64_t OD = (int64_t)hp->n_head * hp->head_dim_v;
    int rc;
    if ((rc = bind(m, &m->tok_embd, "token_embd.weight", 2, (int64_t[]){E, V}, true, false, err)) ||
        (rc = bind(m, &m->output_norm, "output_norm.weight", 1, (int64_t[]){E}, true, true, err)) ||
        (rc = bind(m, &m->output, "output.weight", 2, (int64_t[]){E, V}, false, false, err)))
        return rc;
    hp->tied_output = m->output.t == NULL;
    if (hp->tied_output)
        m->output = m->tok_embd;
    if ((rc = bind(m, &m->rope_freqs, "rope_freqs.weight", 1, (int64_t[]){hp->n_rot / 2}, false,
                   true, err)))
        return rc;
    hp->has_rope_freqs = m->rope_freqs.t != NULL;

    m->layers = calloc(hp->n_layer, sizeof *m->layers);
    if (!m->layers)
        return ica_seterr(err, ICA_ERR_NOMEM, "%s: out of memory for %u layers", m->path,
                          hp->n_layer);
    const bool bias = strcmp(hp->arch, "qwen2") == 0;
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        struct model_layer *L = &m->layers[il];
        char nm[96];
#define BIND(field, suffix, n, req, f32, ...)                                                      \
    do {                                                                                           \
        snprintf(nm, sizeof nm, "blk.%u.%s", il, suffix);                                          \
        if ((rc = bind(m, &L->field, nm, n, (int64_t[]){__VA_ARGS__}, req, f32, err)))             \
            return rc;                                                                             \
    } while (0)
        BIND(attn_norm, "attn_norm.weight", 1, true, true, E);
        BIND(wq, "attn_q.weight", 2, true, false, E, QD);
        BIND(wk, "attn_k.weight", 2, true, false, E, KD);
        BIND(wv, "attn_v.weight", 2, true, false, E, VD);
        BIND(wo, "attn_output.weight", 2, true, false, OD, E);
        BIND(bq, "attn_q.bias", 1, bias, true, QD);
        BIND(bk, "attn_k.bias", 1, bias, true, KD);
        BIND(bv, "attn_v.bias", 1, bias, true, VD);
        BIND(bo, "attn_output.bias", 1, false, true, E);
        BIND(ffn_norm, "ffn_norm.weight", 1, true, true, E);
        if (hp->n_expert == 0) {
            BIND(ffn_gate, "ffn_gate.weight", 2, true, false, E, F);
            BIND(ffn_up, "ffn_up.weight", 2, true, false, E, F);
            BIND(ffn_down, "ffn_down.weight", 2, true, false, F, E);
        } else {
            BIND(ffn_gate_inp, "ffn_gate_inp.weight", 2, true, false, E, X);
            BIND(ffn_gate_exps, "ffn_gate_exps.weight", 3, true, false, E, F, X);
            BIND(ffn_up_exps, "ffn_up_exps.weight", 3, true, false, E, F, X);
            BIND(ffn_down_exps, "ffn_down_exps.weight", 3, true, false, F, E, X);
        }
#undef BIND
        if (L->bq.t || L->bk.t || L->bv.t)
            hp->has_qkv_bias = true;
    }
    return ICA_OK;
}

/* The mapped pages wholly inside the repacked rows of w: MADV_DONTNEED on a
 * private read-only file mapping drops them from this process; a later read
 * (the rows after the last whole tile, a hash of the file) refaults them
 * from the page cache. */
static void release_source(const struct model_weight *w) {
    if (!w->rp)
        return;
    const uintptr_t ps = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t a = ((uintptr_t)w->data + ps - 1) & ~(ps - 1);
    const uintptr_t b = ((uintptr_t)w->data + w->t->nbytes) & ~(ps - 1);
    if (b > a)
        (void)madvise((void *)a, b - a, MADV_DONTNEED);
}

static void for_each_matrix(struct model *m,
                            void (*fn)(struct model *, struct model_weight *, void *), void *ud) {
    fn(m, &m->output, ud);
    for (uint32_t il = 0; m->layers && il < m->hp.n_layer; il++) {
        struct model_layer *L = &m->layers[il];
        struct model_weight *ws[] = {&L->wq,       &L->wk,     &L->wv,      &L->wo,
                                     &L->ffn_gate, &L->ffn_up, &L->ffn_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
            fn(m, ws[i], ud);
    }
}

static void repack_one(struct model *m, struct model_weight *w, void *ud) {
    int *failed = ud;
    if (*failed || !w->t || w->t->n_dims != 2)
        return;
    const size_t n = kern_repack_size(w->type, w->t->ne[1], w->t->ne[0]);
    if (!n)
        return;
    void *p = NULL;
    if (posix_memalign(&p, 64, n) != 0) {
        *failed = 1;
        return;
    }
    kern_repack(w->type, w->data, w->t->ne[1], w->t->ne[0], p);
    w->rp = p;
    m->rp_bytes += n;
    release_source(w); /* at once: the peak stays near one copy of the weights */
}

static void free_one(struct model *m, struct model_weight *w, void *ud) {
    (void)m;
    (void)ud;
    free(w->rp);
    w->rp = NULL;
}

static void release_one(struct model *m, struct model_weight *w, void *ud) {
    (void)m;
    (void)ud;
    release_source(w);
}

/* Repacks every matrix that has a repacked layout at this CPU's level
 * (ICALIGN_REPACK=0 turns it off), then gives the mapped pages back. */
static int repack_weights(struct model *m, struct ica_error *err) {
    const char *env = getenv("ICALIGN_REPACK");
    if (env && strcmp(env, "0") == 0)
        return ICA_OK;
    int failed = 0;
    for_each_matrix(m, repack_one, &failed);
    if (failed) {
        for_each_matrix(m, free_one, NULL);
        m->rp_bytes = 0;
        return ica_seterr(err, ICA_ERR_NOMEM, "%s: out of memory repacking the weights", m->path);
    }
    return ICA_OK;
}

size_t model_repacked_bytes(const struct model *m) {
    return m->rp_bytes;
}

void model_release_repacked(const struct model *m) {
    for_each_matrix((struct model *)m, release_one, NULL);
}

int model_load(const char *path, struct model **out, struct ica_error *err) {
    *out = NULL;
    struct model *m = calloc(1, sizeof *m);
    if (!m)
        return ica_seterr(err, ICA_ERR_NOMEM, "%s: out of memory", path);
    size_t n = strlen(path);
    m->path = malloc(n + 1);
    if (!m->path) {
        free(m);
        return ica_seterr(err, ICA_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(m->path, path, n + 1);
    int rc = gguf_open(path, &m->gguf, err);
    if (rc == ICA_OK)
        rc = load_hparams(m, err);
    if (rc == ICA_OK)
        rc = load_weights(m, err);
    if (rc == ICA_OK)
        rc = repack_weights(m, err);
    if (rc != ICA_OK) {
        model_free(m);
        return rc;
    }
    *out = m;
    return ICA_OK;
}

void model_free(struct model *m) {
    if (!m)
        return;
    for_each_matrix(m, free_one, NULL);
    gguf_close(m->gguf);
    free(m->layers);
    free(m->path);
    free(m);
}

const struct model_hparams *model_get_hparams(const struct model *m) {
    return &m->hp;
}

const struct gguf_file *model_gguf(const struct model *m) {
    return m->gguf;
}
