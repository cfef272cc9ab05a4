/* Forward pass of llama-family models over a batch of tokens of one
 * sequence.
 *
 * Each step mirrors the llama.cpp CPU graph so that logits agree:
 *   x = token_embd[tok]                               (get_rows: dequantize)
 *   per layer:
 *     h = rms_norm(x) * attn_norm                     (sum of squares in double)
 *     q,k,v = W{q,k,v} h (+ bias)                     (activations rounded to vec_dot type)
 *     rope(q), rope(k)                                (theta cache built by repeated
 *                                                      multiplication, as ggml does)
 *     a = softmax(q·K * 1/sqrt(hd) + causal mask) · V (sum of exp in double)
 *     x = x + Wo a
 *     h = rms_norm(x) * ffn_norm
 *     x = x + Wdown (silu(Wgate h) * Wup h)           (or the MoE mixture)
 *   logits = Woutput (rms_norm(x) * output_norm)
 */
#include "model_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct model_ctx {
    const struct model *m;
    uint32_t n_ctx, n_batch, kv_type, n_past;
    size_t kv_elt;    /* bytes per KV element */
    uint8_t *k_cache; /* [n_layer][n_ctx][n_head_kv*head_dim] */
    uint8_t *v_cache; /* [n_layer][n_ctx][n_head_kv*head_dim_v] */
    /* scratch, sized for n_batch tokens */
    float *x;         /* [B][n_embd] residual stream */
    float *h;         /* [B][n_embd] normalized input of a block */
    float *q;         /* [B][n_head*head_dim] */
    float *k;         /* [B][n_head_kv*head_dim] */
    float *v;         /* [B][n_head_kv*head_dim_v] */
    float *att;       /* [B][n_head*head_dim_v] */
    float *tmp;       /* [B][n_embd] */
    float *gate;      /* [B][n_ff] */
    float *up;        /* [B][n_ff] */
    float *scores;    /* [n_ctx] */
    float *rope;      /* [head_dim] cos/sin cache */
    float *router;    /* [n_expert] */
    float *moe_acc;   /* [n_embd] */
    uint16_t *q16;    /* [head_dim] q rounded to f16 (F16 KV) */
    uint16_t *p16;    /* [n_ctx] probabilities rounded to f16 (F16 KV) */
    void *mm_scratch; /* quantized activations for kern_matmul_ref */
};

struct model_ctx_params model_ctx_default_params(void) {
    struct model_ctx_params p = {0, 512, ICA_F32, 0};
    return p;
}

static size_t max_scratch(const struct model *m, uint32_t B) {
    const struct model_hparams *hp = &m->hp;
    size_t best = 0;
    const struct model_weight *ws[] = {&m->tok_embd, &m->output};
#define CONSIDER(w, cols)                                                                          \
    do {                                                                                           \
        if ((w)->t) {                                                                              \
            size_t s = kern_matmul_scratch_size((w)->type, (cols), B);                             \
            if (s > best)                                                                          \
                best = s;                                                                          \
        }                                                                                          \
    } while (0)
    for (size_t i = 0; i < 2; i++)
        CONSIDER(ws[i], hp->n_embd);
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const struct model_layer *L = &m->layers[il];
        CONSIDER(&L->wq, hp->n_embd);
        CONSIDER(&L->wk, hp->n_embd);
        CONSIDER(&L->wv, hp->n_embd);
        CONSIDER(&L->wo, (int64_t)hp->n_head * hp->head_dim_v);
        CONSIDER(&L->ffn_gate, hp->n_embd);
        CONSIDER(&L->ffn_up, hp->n_embd);
        CONSIDER(&L->ffn_down, hp->n_ff);
        CONSIDER(&L->ffn_gate_inp, hp->n_embd);
        CONSIDER(&L->ffn_gate_exps, hp->n_embd);
        CONSIDER(&L->ffn_up_exps, hp->n_embd);
        CONSIDER(&L->ffn_down_exps, hp->n_ff);
    }
#undef CONSIDER
    return best;
}

int model_ctx_new(const struct model *m, const struct model_ctx_params *p, struct model_ctx **out,
                  struct ica_error *err) {
    *out = NULL;
    const struct model_hparams *hp = &m->hp;
    struct model_ctx_params d = model_ctx_default_params();
    if (!p)
        p = &d;
    if (p->kv_type != ICA_F32 && p->kv_type != ICA_F16)
        return ica_seterr(err, ICA_ERR_ARG, "KV cache type must be F32 or F16");
    struct model_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
    c->m = m;
    c->n_ctx = p->n_ctx ? p->n_ctx : hp->n_ctx_train;
    c->n_batch = p->n_batch ? p->n_batch : 512;
    if (c->n_batch > c->n_ctx)
        c->n_batch = c->n_ctx;
    c->kv_type = p->kv_type;
    c->kv_elt = p->kv_type == ICA_F16 ? 2 : 4;
    const size_t B = c->n_batch, E = hp->n_embd, F = hp->n_ff;
    const size_t QD = (size_t)hp->n_head * hp->head_dim;
    const size_t KD = (size_t)hp->n_head_kv * hp->head_dim;
    const size_t VD = (size_t)hp->n_head_kv * hp->head_dim_v;
    const size_t OD = (size_t)hp->n_head * hp->head_dim_v;
    const size_t per_pos = (size_t)hp->n_layer * c->kv_elt;
    c->k_cache = calloc((size_t)c->n_ctx * KD, per_pos);
    c->v_cache = calloc((size_t)c->n_ctx * VD, per_pos);
    c->x = malloc(B * E * sizeof(float));
    c->h = malloc(B * E * sizeof(float));
    c->q = malloc(B * QD * sizeof(float));
    c->k = malloc(B * KD * sizeof(float));
    c->v = malloc(B * VD * sizeof(float));
    c->att = malloc(B * OD * sizeof(float));
    c->tmp = malloc(B * E * sizeof(float));
    c->gate = malloc(B * F * sizeof(float));
    c->up = malloc(B * F * sizeof(float));
    c->scores = malloc(c->n_ctx * sizeof(float));
    c->rope = malloc((hp->head_dim + 2) * sizeof(float));
    c->router = malloc((hp->n_expert + 1) * sizeof(float));
    c->moe_acc = malloc(E * sizeof(float));
    c->q16 = malloc(hp->head_dim * sizeof(uint16_t));
    c->p16 = malloc(c->n_ctx * sizeof(uint16_t));
    size_t ss = max_scratch(m, c->n_batch);
    c->mm_scratch = malloc(ss ? ss : 1);
    if (!c->k_cache || !c->v_cache || !c->x || !c->h || !c->q || !c->k || !c->v || !c->att ||
        !c->tmp || !c->gate || !c->up || !c->scores || !c->rope || !c->router || !c->moe_acc ||
        !c->q16 || !c->p16 || !c->mm_scratch) {
        model_ctx_free(c);
        return ica_seterr(err, ICA_ERR_NOMEM,
                          "out of memory for a context of %u tokens (KV cache %.1f MiB)", p->n_ctx,
                          (double)c->n_ctx * (KD + VD) * per_pos / 1048576.0);
    }
    *out = c;
    return ICA_OK;
}

void model_ctx_free(struct model_ctx *c) {
    if (!c)
        return;
    free(c->k_cache);
    free(c->v_cache);
    free(c->x);
    free(c->h);
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->att);
    free(c->tmp);
    free(c->gate);
    free(c->up);
    free(c->scores);
    free(c->rope);
    free(c->router);
    free(c->moe_acc);
    free(c->q16);
    free(c->p16);
    free(c->mm_scratch);
    free(c);
}

const struct model *model_ctx_model(const struct model_ctx *c) {
    return c->m;
}

uint32_t model_ctx_n_past(const struct model_ctx *c) {
    return c->n_past;
}

uint32_t model_ctx_n_ctx(const struct model_ctx *c) {
    return c->n_ctx;
}

void model_ctx_truncate(struct model_ctx *c, uint32_t n) {
    if (n < c->n_past)
        c->n_past = n;
}

/* ---- building blocks ---- */

/* y = x / sqrt(mean(x^2) + eps) * w; the sum of squares is accumulated in
 * double from float products, as ggml's rms_norm does. */
static void rms_norm(float *y, const float *x, const float *w, int64_t n, float eps) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] * scale * w[i];
}

static void matmul(struct model_ctx *c, const struct model_weight *w, int64_t n_rows,
                   int64_t n_cols, const float *x, int64_t n_tok, float *y) {
    kern_matmul_ref(w->type, w->data, n_rows, n_cols, x, n_tok, y, c->mm_scratch);
}

static void add_bias(float *y, const struct model_weight *b, int64_t n_rows, int64_t n_tok) {
    if (!b->t)
        return;
    const float *bias = b->data;
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t r = 0; r < n_rows; r++)
            y[t * n_rows + r] += bias[r];
}

/* cos/sin pairs for one position: theta_i = p * base^(-2i/n_rot), computed
 * by repeated multiplication in float like ggml's rope cache, divided by
 * rope_freqs[i] when present and scaled by the linear factor. */
static void rope_cache(const struct model *m, float *cache, int64_t pos) {
    const struct model_hparams *hp = &m->hp;
    const float theta_scale = powf(hp->rope_freq_base, -2.0f / (float)hp->n_rot);
    const float *ff = hp->has_rope_freqs ? (const float *)m->rope_freqs.data : NULL;
    float theta = (float)pos;
    for (uint32_t i0 = 0; i0 < hp->n_rot; i0 += 2) {
        const float f = ff ? ff[i0 / 2] : 1.0f;
        const float t = hp->rope_freq_scale * (theta / f);
        cache[i0] = cosf(t);
        cache[i0 + 1] = sinf(t);
        theta *= theta_scale;
    }
}

static void rope_apply(const struct model_hparams *hp, const float *cache, float *x, int n_heads) {
    const uint32_t hd = hp->head_dim, nr = hp->n_rot;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * hd;
        for (uint32_t i0 = 0; i0 < nr; i0 += 2) {
            const float cs = cache[i0], sn = cache[i0 + 1];
            /* NORMAL rotates adjacent pairs; NEOX pairs i with i + n_rot/2. */
            const uint32_t a = hp->rope_neox ? i0 / 2 : i0;
            const uint32_t b = hp->rope_neox ? i0 / 2 + nr / 2 : i0 + 1;
            const float x0 = v[a], x1 = v[b];
            v[a] = x0 * cs - x1 * sn;
            v[b] = x0 * sn + x1 * cs;
        }
    }
}

static float silu(float x) {
    return x / (1.0f + expf(-x));
}

/* Attention of batch token t (absolute position pos) over cache rows 0..pos
 * of layer il, writing n_head*head_dim_v outputs. */
static void attention(struct model_ctx *c, uint32_t il, const float *q, uint32_t pos, float *out) {
    const struct model_hparams *hp = &c->m->hp;
    const uint32_t hd = hp->head_dim, hdv = hp->head_dim_v;
    const size_t KD = (size_t)hp->n_head_kv * hd, VD = (size_t)hp->n_head_kv * hdv;
    const uint32_t group = hp->n_head / hp->n_head_kv;
    const float scale = 1.0f / sqrtf((float)hd);
    const uint32_t n_kv = pos + 1;
    const uint8_t *kl = c->k_cache + (size_t)il * c->n_ctx * KD * c->kv_elt;
    const uint8_t *vl = c->v_cache + (size_t)il * c->n_ctx * VD * c->kv_elt;
    float *s = c->scores;
    for (uint32_t h = 0; h < hp->n_head; h++) {
        const uint32_t kvh = h / group;
        const float *qh = q + (size_t)h * hd;
        if (c->kv_type == ICA_F16) {
            /* ggml rounds q to the F16 vec_dot type of the cache. */
            for (uint32_t d = 0; d < hd; d++)
                c->q16[d] = kern_f32_to_f16(qh[d]);
            for (uint32_t j = 0; j < n_kv; j++) {
                const uint16_t *kr = (const uint16_t *)(kl + ((size_t)j * KD + kvh * hd) * 2);
                float acc = 0.0f;
                for (uint32_t d = 0; d < hd; d++)
                    acc += kern_f16_to_f32(kr[d]) * kern_f16_to_f32(c->q16[d]);
                s[j] = acc;
            }
        } else {
            for (uint32_t j = 0; j < n_kv; j++) {
                const float *kr = (const float *)(kl + ((size_t)j * KD + kvh * hd) * 4);
                float acc = 0.0f;
                for (uint32_t d = 0; d < hd; d++)
                    acc += kr[d] * qh[d];
                s[j] = acc;
            }
        }
        /* softmax(s * scale): max, exp(x - max) summed in double, then one
         * multiplication by the reciprocal of the sum, as ggml_soft_max. */
        float mx = -INFINITY;
        for (uint32_t j = 0; j < n_kv; j++) {
            s[j] *= scale;
            if (s[j] > mx)
                mx = s[j];
        }
        double sum = 0.0;
        for (uint32_t j = 0; j < n_kv; j++) {
            s[j] = expf(s[j] - mx);
            sum += (double)s[j];
        }
        const float inv = (float)(1.0 / sum);
        for (uint32_t j = 0; j < n_kv; j++)
            s[j] *= inv;
        float *o = out + (size_t)h * hdv;
        memset(o, 0, hdv * sizeof(float));
        if (c->kv_type == ICA_F16) {
            for (uint32_t j = 0; j < n_kv; j++)
                c->p16[j] = kern_f32_to_f16(s[j]);
            for (uint32_t j = 0; j < n_kv; j++) {
                const float p = kern_f16_to_f32(c->p16[j]);
                const uint16_t *vr = (const uint16_t *)(vl + ((size_t)j * VD + kvh * hdv) * 2);
                for (uint32_t d = 0; d < hdv; d++)
                    o[d] += p * kern_f16_to_f32(vr[d]);
            }
        } else {
            for (uint32_t j = 0; j < n_kv; j++) {
                const float p = s[j];
                const float *vr = (const float *)(vl + ((size_t)j * VD + kvh * hdv) * 4);
                for (uint32_t d = 0; d < hdv; d++)
                    o[d] += p * vr[d];
            }
        }
    }
}

static void store_kv(struct model_ctx *c, uint32_t il, uint32_t pos, const float *k,
                     const float *v) {
    const struct model_hparams *hp = &c->m->hp;
    const size_t KD = (size_t)hp->n_head_kv * hp->head_dim;
    const size_t VD = (size_t)hp->n_head_kv * hp->head_dim_v;
    uint8_t *kd = c->k_cache + ((size_t)il * c->n_ctx + pos) * KD * c->kv_elt;
    uint8_t *vd = c->v_cache + ((size_t)il * c->n_ctx + pos) * VD * c->kv_elt;
    if (c->kv_type == ICA_F16) {
        for (size_t i = 0; i < KD; i++)
            ((uint16_t *)kd)[i] = kern_f32_to_f16(k[i]);
        for (size_t i = 0; i < VD; i++)
            ((uint16_t *)vd)[i] = kern_f32_to_f16(v[i]);
    } else {
        memcpy(kd, k, KD * sizeof(float));
        memcpy(vd, v, VD * sizeof(float));
    }
}

/* Mixture of experts for one token (llama.cpp build_moe_ffn with softmax
 * gating and normalised top-k weights): probabilities over all experts, the
 * n_expert_used largest (ties to the lower index), renormalised, and the
 * weighted sum of the selected experts' SwiGLU outputs. */
static void moe_token(struct model_ctx *c, const struct model_layer *L, const float *h,
                      float *out) {
    const struct model_hparams *hp = &c->m->hp;
    const uint32_t X = hp->n_expert, K = hp->n_expert_used, E = hp->n_embd, F = hp->n_ff;
    float *r = c->router;
    matmul(c, &L->ffn_gate_inp, X, E, h, 1, r);
    float mx = -INFINITY;
    for (uint32_t e = 0; e < X; e++)
        mx = r[e] > mx ? r[e] : mx;
    double sum = 0.0;
    for (uint32_t e = 0; e < X; e++) {
        r[e] = expf(r[e] - mx);
        sum += (double)r[e];
    }
    const float inv = (float)(1.0 / sum);
    for (uint32_t e = 0; e < X; e++)
        r[e] *= inv;
    int sel[64];
    float wsel[64];
    uint32_t k_used = K < 64 ? K : 64;
    float wsum = 0.0f;
    for (uint32_t k = 0; k < k_used; k++) {
        int best = -1;
        for (uint32_t e = 0; e < X; e++) {
            bool taken = false;
            for (uint32_t j = 0; j < k; j++)
                taken |= sel[j] == (int)e;
            if (!taken && (best < 0 || r[e] > r[best]))
                best = (int)e;
        }
        sel[k] = best;
        wsel[k] = r[best];
        wsum += wsel[k];
    }
    memset(out, 0, E * sizeof(float));
    for (uint32_t k = 0; k < k_used; k++) {
        const size_t e = (size_t)sel[k];
        struct model_weight g = L->ffn_gate_exps, u = L->ffn_up_exps, d = L->ffn_down_exps;
        g.data = (const uint8_t *)g.data + e * g.row_size * F;
        u.data = (const uint8_t *)u.data + e * u.row_size * F;
        d.data = (const uint8_t *)d.data + e * d.row_size * E;
        matmul(c, &g, F, E, h, 1, c->gate);
        matmul(c, &u, F, E, h, 1, c->up);
        for (uint32_t i = 0; i < F; i++)
            c->gate[i] = silu(c->gate[i]) * c->up[i];
        matmul(c, &d, E, F, c->gate, 1, c->moe_acc);
        const float w = wsel[k] / wsum;
        for (uint32_t i = 0; i < E; i++)
            out[i] += c->moe_acc[i] * w;
    }
}

/* One batch of n <= n_batch tokens at positions n_past.. */
static void forward_batch(struct model_ctx *c, const int32_t *tokens, uint32_t n, float *logits,
                          bool all_logits) {
    const struct model *m = c->m;
    const struct model_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, F = hp->n_ff;
    const int64_t QD = (int64_t)hp->n_head * hp->head_dim;
    const int64_t KD = (int64_t)hp->n_head_kv * hp->head_dim;
    const int64_t VD = (int64_t)hp->n_head_kv * hp->head_dim_v;
    const int64_t OD = (int64_t)hp->n_head * hp->head_dim_v;

    for (uint32_t t = 0; t < n; t++) {
        const uint8_t *row =
            (const uint8_t *)m->tok_embd.data + (size_t)tokens[t] * m->tok_embd.row_size;
        m->tok_embd.traits->to_float(row, c->x + t * E, E);
    }
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const struct model_layer *L = &m->layers[il];
        for (uint32_t t = 0; t < n; t++)
            rms_norm(c->h + t * E, c->x + t * E, L->attn_norm.data, E, hp->rms_eps);
        matmul(c, &L->wq, QD, E, c->h, n, c->q);
        matmul(c, &L->wk, KD, E, c->h, n, c->k);
        matmul(c, &L->wv, VD, E, c->h, n, c->v);
        add_bias(c->q, &L->bq, QD, n);
        add_bias(c->k, &L->bk, KD, n);
        add_bias(c->v, &L->bv, VD, n);
        for (uint32_t t = 0; t < n; t++) {
            rope_cache(m, c->rope, (int64_t)c->n_past + t);
            rope_apply(hp, c->rope, c->q + t * QD, (int)hp->n_head);
            rope_apply(hp, c->rope, c->k + t * KD, (int)hp->n_head_kv);
            store_kv(c, il, c->n_past + t, c->k + t * KD, c->v + t * VD);
        }
        for (uint32_t t = 0; t < n; t++)
            attention(c, il, c->q + t * QD, c->n_past + t, c->att + t * OD);
        matmul(c, &L->wo, E, OD, c->att, n, c->tmp);
        add_bias(c->tmp, &L->bo, E, n);
        for (int64_t i = 0; i < (int64_t)n * E; i++)
            c->x[i] += c->tmp[i];
        for (uint32_t t = 0; t < n; t++)
            rms_norm(c->h + t * E, c->x + t * E, L->ffn_norm.data, E, hp->rms_eps);
        if (hp->n_expert == 0) {
            matmul(c, &L->ffn_gate, F, E, c->h, n, c->gate);
            matmul(c, &L->ffn_up, F, E, c->h, n, c->up);
            for (int64_t i = 0; i < (int64_t)n * F; i++)
                c->gate[i] = silu(c->gate[i]) * c->up[i];
            matmul(c, &L->ffn_down, E, F, c->gate, n, c->tmp);
        } else {
            for (uint32_t t = 0; t < n; t++)
                moe_token(c, L, c->h + t * E, c->tmp + t * E);
        }
        for (int64_t i = 0; i < (int64_t)n * E; i++)
            c->x[i] += c->tmp[i];
    }
    if (!logits)
        return;
    const uint32_t first = all_logits ? 0 : n - 1;
    const uint32_t n_out = n - first;
    for (uint32_t t = first; t < n; t++)
        rms_norm(c->h + (t - first) * E, c->x + t * E, m->output_norm.data, E, hp->rms_eps);
    matmul(c, &m->output, hp->n_vocab, E, c->h, n_out, logits);
}

int model_eval(struct model_ctx *c, const int32_t *tokens, uint32_t n, float *logits,
               bool all_logits, struct ica_error *err) {
    const struct model_hparams *hp = &c->m->hp;
    if (n == 0)
        return ica_seterr(err, ICA_ERR_ARG, "no tokens to evaluate");
    if ((uint64_t)c->n_past + n > c->n_ctx)
        return ica_seterr(err, ICA_ERR_RANGE,
                          "context overflow: %u tokens in the cache + %u new > context size %u",
                          c->n_past, n, c->n_ctx);
    for (uint32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= hp->n_vocab)
            return ica_seterr(err, ICA_ERR_ARG,
                              "token id %d at position %u is outside the "
                              "vocabulary (0..%u)",
                              tokens[i], i, hp->n_vocab - 1);
    for (uint32_t done = 0; done < n;) {
        uint32_t nb = n - done < c->n_batch ? n - done : c->n_batch;
        const bool last_chunk = done + nb == n;
        float *out = NULL;
        if (logits && all_logits)
            out = logits + (size_t)done * hp->n_vocab;
        else if (logits && last_chunk)
            out = logits;
        forward_batch(c, tokens + done, nb, out, all_logits);
        c->n_past += nb;
        done += nb;
    }
    return ICA_OK;
}
