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
 *     a = softmax(q·K * 1/sqrt(hd) + causal mask) · V (ggml's vectorised exp, sums of
 *                                                      16-lane chunks in double)
 *     x = x + Wo a
 *     h = rms_norm(x) * ffn_norm
 *     x = x + Wdown (silu(Wgate h) * Wup h)           (or the MoE mixture)
 *   logits = Woutput (rms_norm(x) * output_norm)
 */
#include "model_impl.h"

#include "icalign/pool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One thread's attention buffers (heads are spread over the threads). */
struct attn_ws {
    void *kh;      /* [n_ctx][head_dim] one head's keys, contiguous (cache type) */
    void *vt;      /* [head_dim_v][n_ctx] one head's values, transposed (cache type) */
    float *qh;     /* [B][head_dim] one head's queries */
    float *kq;     /* [max(B, group)][n_ctx] scores, then probabilities */
    float *oh;     /* [B][head_dim_v] one head's output */
    void *scratch; /* activation rounding of the attention products */
    /* single-token path (no gather): */
    void *qr;     /* [group][head_dim] queries rounded to the cache type */
    float *qf;    /* [group][head_dim] the rounded queries as floats */
    void *pr;     /* [n_ctx] probabilities rounded to the cache type */
    float *pf;    /* [group][n_ctx] the rounded probabilities as floats */
    float *lanes; /* [ATT_HEADS][ATT_LANES][head_dim_v] per-lane sums of V^T p */
    /* several single-token sequences at once (attention_group_avx512), gmax =
     * min(group, ATT_GROUP_MAX) heads of each of att_seq_max sequences: */
    float *gq;  /* [seq][gmax][head_dim] rounded queries as floats */
    float *gkq; /* [seq][gmax][n_ctx] scores, then (rounded) probabilities */
    float *gl;  /* [seq][gmax][4][head_dim_v] four lanes' sums of V^T p */
    float *gs;  /* [seq][gmax][16][head_dim_v] the lanes' first reduction step */
    /* F16 caches: rows converted to F32 once for every sequence that shares
     * them (the conversion is exact, so the F32 kernels give the same bits) */
    float *ck;           /* [64][head_dim] one round of keys */
    const uint8_t **cks; /* [64] their source rows */
    float *cv;           /* [n_ctx / 64 + 1][head_dim_v] one lane's value rows */
    const uint8_t **cvs; /* [n_ctx / 64 + 1] their source rows */
    const uint8_t **cvp; /* [n_ctx] row pointers handed to the kernels */
};

/* The single-token KQV keeps the F32/F16 vec_dot's 64 lanes (4 accumulators
 * of 16) for up to ATT_HEADS query heads that share a kv head. */
#define ATT_LANES 64
#define ATT_HEADS 4
/* query heads per kv head handled at once by the single-token path */
#define ATT_GROUP_MAX 64
/* single-token sequences whose attention runs in one pass over the threads
 * (each thread takes its kv heads for all of them: the rows of a prefix
 * they share stay in its cache) */
#define ATT_SEQ_MAX 8

struct model_ctx {
    const struct model *m;
    uint32_t n_ctx, n_batch, kv_type, n_past;
    size_t kv_elt;    /* bytes per KV element */
    uint8_t *k_cache; /* [n_layer][n_ctx][n_head_kv*head_dim] */
    uint8_t *v_cache; /* [n_layer][n_ctx][n_head_kv*head_dim_v] */
    /* scratch, sized for n_batch tokens */
    float *x;           /* [B][n_embd] residual stream */
    float *h;           /* [B][n_embd] normalized input of a block */
    float *q;           /* [B][n_head*head_dim] */
    float *k;           /* [B][n_head_kv*head_dim] */
    float *v;           /* [B][n_head_kv*head_dim_v] */
    float *att;         /* [B][n_head*head_dim_v] */
    float *tmp;         /* [B][n_embd] */
    float *gate;        /* [B][n_ff] */
    float *up;          /* [B][n_ff] */
    float *rope;        /* [head_dim] cos/sin cache */
    float *router;      /* [n_expert] */
    float *moe_acc;     /* [n_embd] */
    struct attn_ws *ws; /* per-thread attention buffers */
    int n_ws;
    void *mm_scratch;         /* activation rounding for every matrix product */
    uint8_t *row_order;       /* [B] enum kern_order per row */
    uint32_t *b_seq, *b_pos;  /* [B] batch built by model_eval */
    const uint8_t **kp, **vp; /* [ATT_SEQ_MAX][n_ctx] sequences' K and V rows of one layer */
    uint32_t att_seq_max;     /* single-token sequences per attention pass (<= ATT_SEQ_MAX) */
    bool *b_out, *b_decode;
    struct pool *pool; /* threads for the matrix products */
};

struct model_ctx_params model_ctx_default_params(void) {
    struct model_ctx_params p = {0, 512, ICA_F32, 0, false};
    return p;
}

static size_t max_scratch(const struct model *m, uint32_t B, uint32_t n_ctx, uint32_t kv_type) {
    const struct model_hparams *hp = &m->hp;
    size_t best = 0;
#define CONSIDER(type, cols)                                                                       \
    do {                                                                                           \
        size_t s_ = kern_matmul_scratch_size((type), (cols), B);                                   \
        if (s_ > best)                                                                             \
            best = s_;                                                                             \
    } while (0)
#define CONSIDER_W(w, cols)                                                                        \
    do {                                                                                           \
        if ((w)->t)                                                                                \
            CONSIDER((w)->type, (cols));                                                           \
    } while (0)
    CONSIDER_W(&m->output, hp->n_embd);
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const struct model_layer *L = &m->layers[il];
        CONSIDER_W(&L->wq, hp->n_embd);
        CONSIDER_W(&L->wk, hp->n_embd);
        CONSIDER_W(&L->wv, hp->n_embd);
        CONSIDER_W(&L->wo, (int64_t)hp->n_head * hp->head_dim_v);
        CONSIDER_W(&L->ffn_gate, hp->n_embd);
        CONSIDER_W(&L->ffn_up, hp->n_embd);
        CONSIDER_W(&L->ffn_down, hp->n_ff);
        CONSIDER_W(&L->ffn_gate_inp, hp->n_embd);
        CONSIDER_W(&L->ffn_gate_exps, hp->n_embd);
        CONSIDER_W(&L->ffn_up_exps, hp->n_embd);
        CONSIDER_W(&L->ffn_down_exps, hp->n_ff);
    }
    /* attention products: q against the keys, probabilities against V */
    CONSIDER(kv_type, hp->head_dim);
    CONSIDER(kv_type, n_ctx);
#undef CONSIDER_W
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
    const size_t B = c->n_batch, E = hp->n_embd, F = hp->n_ff, C = c->n_ctx;
    const size_t QD = (size_t)hp->n_head * hp->head_dim;
    const size_t KD = (size_t)hp->n_head_kv * hp->head_dim;
    const size_t VD = (size_t)hp->n_head_kv * hp->head_dim_v;
    const size_t OD = (size_t)hp->n_head * hp->head_dim_v;
    const size_t per_pos = (size_t)hp->n_layer * c->kv_elt;
    if (!p->no_own_cache) {
        c->k_cache = calloc(C * KD, per_pos);
        c->v_cache = calloc(C * VD, per_pos);
    }
    c->x = malloc(B * E * sizeof(float));
    c->h = malloc(B * E * sizeof(float));
    c->q = malloc(B * QD * sizeof(float));
    c->k = malloc(B * KD * sizeof(float));
    c->v = malloc(B * VD * sizeof(float));
    c->att = malloc(B * OD * sizeof(float));
    c->tmp = malloc(B * E * sizeof(float));
    c->gate = malloc(B * F * sizeof(float));
    c->up = malloc(B * F * sizeof(float));
    c->rope = malloc((hp->head_dim + 2) * sizeof(float));
    c->router = malloc(B * (hp->n_expert + 1) * sizeof(float));
    c->row_order = malloc(B);
    c->b_seq = malloc(B * sizeof *c->b_seq);
    c->b_pos = malloc(B * sizeof *c->b_pos);
    c->b_out = malloc(B * sizeof *c->b_out);
    c->b_decode = malloc(B * sizeof *c->b_decode);
    c->kp = malloc(ATT_SEQ_MAX * C * sizeof *c->kp);
    c->vp = malloc(ATT_SEQ_MAX * C * sizeof *c->vp);
    c->moe_acc = malloc(E * sizeof(float));
    size_t ss = max_scratch(m, c->n_batch, c->n_ctx, c->kv_type);
    c->mm_scratch = malloc(ss ? ss : 1);
    struct ica_error perr = {0};
    c->pool = pool_new(p->n_threads, &perr);
    bool ws_ok = c->pool != NULL;
    if (ws_ok) {
        c->n_ws = pool_size(c->pool);
        c->ws = calloc((size_t)c->n_ws, sizeof *c->ws);
        ws_ok = c->ws != NULL;
        size_t as = kern_matmul_scratch_size(c->kv_type, hp->head_dim, B);
        const size_t as2 = kern_matmul_scratch_size(c->kv_type, C, B);
        as = as2 > as ? as2 : as;
        const size_t group = hp->n_head / hp->n_head_kv, KQR = B > group ? B : group;
        const size_t gmax = group < ATT_GROUP_MAX ? group : ATT_GROUP_MAX;
        /* the sequences of one pass: their scores take at most 32 MiB a thread */
        size_t sm = ((size_t)32 << 20) / (gmax * C * sizeof(float));
        c->att_seq_max = (uint32_t)(sm < 1 ? 1 : sm > ATT_SEQ_MAX ? ATT_SEQ_MAX : sm);
        const size_t GS = (size_t)c->att_seq_max * gmax;
        for (int t = 0; ws_ok && t < c->n_ws; t++) {
            struct attn_ws *w = &c->ws[t];
            w->kh = calloc(C * hp->head_dim, c->kv_elt);
            w->vt = calloc(C * hp->head_dim_v, c->kv_elt);
            w->qh = malloc(B * hp->head_dim * sizeof(float));
            w->kq = malloc(KQR * C * sizeof(float));
            w->oh = malloc(B * hp->head_dim_v * sizeof(float));
            w->scratch = malloc(as ? as : 1);
            w->qr = malloc(group * hp->head_dim * c->kv_elt);
            w->qf = malloc(group * hp->head_dim * sizeof(float));
            w->pr = malloc(C * c->kv_elt);
            w->pf = malloc(group * C * sizeof(float));
            w->lanes = malloc((size_t)ATT_HEADS * ATT_LANES * hp->head_dim_v * sizeof(float));
            w->gq = malloc(GS * hp->head_dim * sizeof(float));
            w->gkq = malloc(GS * C * sizeof(float));
            w->gl = malloc(GS * 4 * hp->head_dim_v * sizeof(float));
            w->gs = malloc(GS * 16 * hp->head_dim_v * sizeof(float));
            w->ck = malloc(64 * hp->head_dim * sizeof(float));
            w->cks = calloc(64, sizeof *w->cks);
            w->cv = malloc((C / 64 + 1) * hp->head_dim_v * sizeof(float));
            w->cvs = calloc(C / 64 + 1, sizeof *w->cvs);
            w->cvp = calloc(C, sizeof *w->cvp);
            ws_ok = w->kh && w->vt && w->qh && w->kq && w->oh && w->scratch && w->qr && w->qf &&
                    w->pr && w->pf && w->lanes && w->gq && w->gkq && w->gl && w->gs && w->ck &&
                    w->cks && w->cv && w->cvs && w->cvp;
        }
    }
    if ((!p->no_own_cache && (!c->k_cache || !c->v_cache)) || !c->x || !c->h || !c->q || !c->k ||
        !c->v || !c->att || !c->tmp || !c->gate || !c->up || !c->rope || !c->router ||
        !c->moe_acc || !ws_ok || !c->mm_scratch || !c->pool || !c->row_order || !c->b_seq ||
        !c->b_pos || !c->b_out || !c->b_decode || !c->kp || !c->vp) {
        model_ctx_free(c);
        return ica_seterr(err, ICA_ERR_NOMEM,
                          "out of memory for a context of %zu tokens (KV cache %.1f MiB)", C,
                          (double)C * (KD + VD) * per_pos / 1048576.0);
    }
    *out = c;
    return ICA_OK;
}

void model_ctx_free(struct model_ctx *c) {
    if (!c)
        return;
    void *bufs[] = {c->k_cache,   c->v_cache, c->x,      c->h,       c->q,
                    c->k,         c->v,       c->att,    c->tmp,     c->gate,
                    c->up,        c->rope,    c->router, c->moe_acc, c->mm_scratch,
                    c->row_order, c->b_seq,   c->b_pos,  c->b_out,   c->b_decode};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    for (int t = 0; c->ws && t < c->n_ws; t++) {
        free(c->ws[t].kh);
        free(c->ws[t].vt);
        free(c->ws[t].qh);
        free(c->ws[t].kq);
        free(c->ws[t].oh);
        free(c->ws[t].scratch);
        free(c->ws[t].qr);
        free(c->ws[t].qf);
        free(c->ws[t].pr);
        free(c->ws[t].pf);
        free(c->ws[t].lanes);
        free(c->ws[t].gq);
        free(c->ws[t].gkq);
        free(c->ws[t].gl);
        free(c->ws[t].gs);
        free(c->ws[t].ck);
        free((void *)c->ws[t].cks);
        free(c->ws[t].cv);
        free((void *)c->ws[t].cvs);
        free((void *)c->ws[t].cvp);
    }
    free((void *)c->kp);
    free((void *)c->vp);
    free(c->ws);
    pool_free(c->pool);
    free(c);
}

const struct model *model_ctx_model(const struct model_ctx *c) {
    return c->m;
}

uint32_t model_ctx_n_past(const struct model_ctx *c) {
    return c->n_past;
}

uint32_t model_ctx_n_batch(const struct model_ctx *c) {
    return c->n_batch;
}

uint32_t model_ctx_kv_type(const struct model_ctx *c) {
    return c->kv_type;
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
    kern_matmul_rp(c->pool, w->type, w->data, w->rp, n_rows, n_cols, x, n_tok, y, c->mm_scratch);
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
            /* ggml's rotate_pairs as gcc contracts it (gnu++17): the first
             * product of each expression is fused, the second rounded. */
            v[a] = fmaf(x0, cs, -(x1 * sn));
            v[b] = fmaf(x0, sn, x1 * cs);
        }
    }
}

/* exp as ggml's vectorised ggml_v_expf (AVX-512/AVX2/NEON share the
 * polynomial): llama.cpp's softmax and SiLU use it for every full vector of
 * 16 lanes and libm's expf for the tail, so the same split is kept here. */
static float ggml_expf(float x) {
    const float r = 0x1.8p23f;
    const float z = fmaf(x, 0x1.715476p+0f, r);
    const float n = z - r;
    const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
    const float u = b * b;
    const float j = fmaf(
        fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
        u, fmaf(0x1.ffffecp-1f, b, 1.0f));
    if (fabsf(n) > 192.0f)
        return n <= 0.0f ? 0.0f : INFINITY;
    return ldexpf(j, (int)n);
}

/* Sum of 16 lanes in the order of _mm512_reduce_add_ps. */
static float reduce16(const float *a) {
    float t3[8], t6[4];
    for (int i = 0; i < 8; i++)
        t3[i] = a[i + 8] + a[i];
    for (int i = 0; i < 4; i++)
        t6[i] = t3[i + 4] + t3[i];
    return (t6[0] + t6[2]) + (t6[1] + t6[3]);
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/* The same polynomial in 16 AVX-512 lanes: every lane computes exactly what
 * ggml_expf computes (the same fused multiply-adds, scalef = ldexp). */
__attribute__((target("avx512f"))) static __m512 expf16_avx512(__m512 x) {
    const __m512 r = _mm512_set1_ps(0x1.8p23f);
    const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), r);
    const __m512 n = _mm512_sub_ps(z, r);
    const __m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f),
                                      _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x));
    const __mmask16 d = _mm512_cmp_ps_mask(_mm512_abs_ps(n), _mm512_set1_ps(192), _CMP_GT_OQ);
    const __m512 u = _mm512_mul_ps(b, b);
    const __m512 j = _mm512_fmadd_ps(
        _mm512_fmadd_ps(
            _mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b, _mm512_set1_ps(0x1.573e2ep-5f)), u,
            _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b, _mm512_set1_ps(0x1.fffdb6p-2f))),
        u, _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1f), b, _mm512_set1_ps(1.0f)));
    const __m512 res = _mm512_scalef_ps(j, n);
    if (!d)
        return res;
    const __m512 alt = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_LE_OQ),
                                            _mm512_set1_ps(INFINITY), _mm512_setzero_ps());
    return _mm512_mask_blend_ps(d, res, alt);
}

/* max_i x[i] (NaNs ignored) and 1 + the index of the last element that is
 * not -inf, for the first n16 (a multiple of 16) elements: maxps keeps its
 * second operand on NaN and equal zeros, as the scalar loop keeps mx (a
 * maximum of -0 instead of +0 changes no exp(x - mx)). */
__attribute__((target("avx512f"))) static void max_live_avx512(const float *x, int64_t n16,
                                                               float *mx, int64_t *live) {
    __m512 m = _mm512_set1_ps(-INFINITY);
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int64_t i = 0; i < n16; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        m = _mm512_max_ps(v, m);
        const unsigned k = _mm512_cmp_ps_mask(v, ninf, _CMP_NEQ_UQ);
        if (k)
            *live = i + 32 - __builtin_clz(k);
    }
    float t[16], r = *mx;
    _mm512_storeu_ps(t, m);
    for (int l = 0; l < 16; l++)
        r = t[l] > r ? t[l] : r;
    *mx = r;
}

/* swiglu's chunks of 16: per lane x / (1 + ggml_expf(0 - x)) * u, the
 * scalar loop's operations in the same order (each rounded the same). */
__attribute__((target("avx512f"))) static void swiglu_avx512(float *g, const float *u,
                                                             int64_t n16) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n16; i += 16) {
        const __m512 x = _mm512_loadu_ps(g + i);
        const __m512 e = expf16_avx512(_mm512_sub_ps(_mm512_setzero_ps(), x));
        const __m512 q = _mm512_div_ps(x, _mm512_add_ps(one, e));
        _mm512_storeu_ps(g + i, _mm512_mul_ps(q, _mm512_loadu_ps(u + i)));
    }
}

__attribute__((target("avx512f"))) static void exp_chunks_avx512(float *y, const float *x,
                                                                 int64_t n16, float mx) {
    const __m512 m = _mm512_set1_ps(mx);
    for (int64_t i = 0; i < n16; i += 16)
        _mm512_storeu_ps(y + i, expf16_avx512(_mm512_sub_ps(_mm512_loadu_ps(x + i), m)));
}
#endif

/* y[i] = ggml_expf(x[i] - mx) for the first n16 (a multiple of 16) elements,
 * vectorised where the CPU allows: identical bits either way. */
static void exp_chunks(float *y, const float *x, int64_t n16, float mx) {
#if defined(__x86_64__) || defined(__i386__)
    if (kern_level_current() >= 2) {
        exp_chunks_avx512(y, x, n16, mx);
        return;
    }
#endif
    for (int64_t i = 0; i < n16; i++)
        y[i] = ggml_expf(x[i] - mx);
}

/* ggml_vec_soft_max_f32 followed by the scaling by 1/sum:
 * y = exp(x - max), sums of 16-lane chunks added in double. Trailing chunks
 * that are entirely -inf (the causal mask) contribute exact zeros, so they
 * are filled without computing exponentials. */
static void softmax(float *y, const float *x, int64_t n) {
    float mx = -INFINITY;
    int64_t live = 0; /* elements up to the last finite one */
    int64_t i0 = 0;
#if defined(__x86_64__) || defined(__i386__)
    if (kern_level_current() >= 2) {
        i0 = n / 16 * 16;
        max_live_avx512(x, i0, &mx, &live);
    }
#endif
    for (int64_t i = i0; i < n; i++) {
        mx = x[i] > mx ? x[i] : mx;
        if (x[i] != -INFINITY)
            live = i + 1;
    }
    const int64_t n16 = n / 16 * 16;
    int64_t e16 = (live + 15) / 16 * 16;
    if (e16 > n16)
        e16 = n16;
    exp_chunks(y, x, e16, mx);
    double sum = 0.0;
    for (int64_t i = 0; i < e16; i += 16)
        sum += (double)reduce16(y + i);
    for (int64_t i = e16; i < n16; i++)
        y[i] = 0.0f; /* exp(-inf) = 0: these chunks add +0 to the sum */
    for (int64_t i = n16; i < n; i++) {
        y[i] = expf(x[i] - mx);
        sum += (double)y[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t k = 0; k < n; k++)
        y[k] *= inv;
}

/* ggml_vec_swiglu_f32: silu(g) * u with the vectorised exp for full vectors
 * of 16 and x/(1+expf(-x)) for the tail. */
static void swiglu(float *g, const float *u, int64_t n) {
    int64_t i = 0;
#if defined(__x86_64__) || defined(__i386__)
    if (kern_level_current() >= 2) {
        i = n / 16 * 16;
        swiglu_avx512(g, u, i);
    }
#endif
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) {
            const float x = g[i + l];
            g[i + l] = x / (1.0f + ggml_expf(0.0f - x)) * u[i + l];
        }
    for (; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static uint32_t round_up(uint32_t x, uint32_t m) {
    return (x + m - 1) / m * m;
}

/* Runs of rows with the same summation order: one product per run. For
 * weight types whose batched and single-token orders agree, one product for
 * all rows. */
static void matmul_rows(struct model_ctx *c, const struct model_weight *w, int64_t n_rows,
                        int64_t n_cols, const float *x, uint32_t rows, const uint8_t *order,
                        float *y) {
    if (!kern_matmul_orders_differ(w->type, n_rows, n_cols)) {
        kern_matmul_rp(c->pool, w->type, w->data, w->rp, n_rows, n_cols, x, rows, y, c->mm_scratch);
        return;
    }
    for (uint32_t r0 = 0; r0 < rows;) {
        uint32_t r1 = r0 + 1;
        while (r1 < rows && order[r1] == order[r0])
            r1++;
        kern_matmul_ex(c->pool, w->type, w->data, n_rows, n_cols, x + (size_t)r0 * n_cols, r1 - r0,
                       y + (size_t)r0 * n_rows, c->mm_scratch, (enum kern_order)order[r0]);
        r0 = r1;
    }
}

/* Products of the same rows x with several matrices (q, k, v; gate, up):
 * one kern_matmul_multi when they share a type and the single and batched
 * orders agree, else one matmul_rows each. */
static void matmul_rows_multi(struct model_ctx *c, const struct model_weight *const *w,
                              const int64_t *n_rows, float *const *y, int n, int64_t n_cols,
                              const float *x, uint32_t rows, const uint8_t *order) {
    bool same = true;
    for (int i = 0; i < n; i++)
        same = same && w[i]->type == w[0]->type &&
               !kern_matmul_orders_differ(w[i]->type, n_rows[i], n_cols);
    if (!same) {
        for (int i = 0; i < n; i++)
            matmul_rows(c, w[i], n_rows[i], n_cols, x, rows, order, y[i]);
        return;
    }
    struct kern_mm mm[KERN_MULTI_MAX];
    for (int i = 0; i < n; i++)
        mm[i] = (struct kern_mm){w[i]->data, w[i]->rp, n_rows[i], y[i]};
    kern_matmul_multi(c->pool, w[0]->type, mm, n, n_cols, x, rows, c->mm_scratch);
}

struct attn_job {
    struct model_ctx *c;
    const struct model_kv_view *kv;
    uint32_t il, t0, t1, pos0, n_kv;
    enum kern_order order;
    bool lanes; /* KQV in vec_dot order without the transpose (see kqv_lanes) */
    const uint8_t *const *kp, *const *vp; /* [used] this sequence's K and V rows */
};

/* Keys (rows) and values (transposed) of kv head kvh into w: cells beyond
 * the used ones are zero, as in llama.cpp's padded window. */
static void gather_kv(const struct attn_job *a, struct attn_ws *w, uint32_t kvh) {
    const struct model_ctx *c = a->c;
    const struct model_hparams *hp = &c->m->hp;
    const uint32_t hd = hp->head_dim, hdv = hp->head_dim_v, n_kv = a->n_kv;
    const uint32_t used = a->pos0 + (a->t1 - a->t0);
    const size_t es = c->kv_elt;
    for (uint32_t j = 0; j < n_kv; j++) {
        uint8_t *kd = (uint8_t *)w->kh + (size_t)j * hd * es;
        if (j < used)
            memcpy(kd, a->kp[j] + (size_t)kvh * hd * es, hd * es);
        else
            memset(kd, 0, hd * es);
    }
    for (uint32_t j = 0; j < n_kv; j++) {
        const uint8_t *vr = j < used ? a->vp[j] + (size_t)kvh * hdv * es : NULL;
        if (es == 4)
            for (uint32_t d = 0; d < hdv; d++)
                ((float *)w->vt)[(size_t)d * n_kv + j] = vr ? ((const float *)vr)[d] : 0.0f;
        else
            for (uint32_t d = 0; d < hdv; d++)
                ((uint16_t *)w->vt)[(size_t)d * n_kv + j] = vr ? ((const uint16_t *)vr)[d] : 0;
    }
}

#if defined(__x86_64__) || defined(__i386__)
static bool kq_prompt_avx512(const struct attn_job *a, struct attn_ws *w, uint32_t n);
#endif

/* Query heads [h0, h1) of one sequence's tokens on one thread: scores =
 * K_h q, scaled, causally masked, softmax, then V_h^T p. */
static void attention_heads(const struct attn_job *a, struct attn_ws *w, uint32_t h0, uint32_t h1) {
    struct model_ctx *c = a->c;
    const struct model_hparams *hp = &c->m->hp;
    const uint32_t hd = hp->head_dim, hdv = hp->head_dim_v, n = a->t1 - a->t0, n_kv = a->n_kv;
    const size_t QD = (size_t)hp->n_head * hd, OD = (size_t)hp->n_head * hdv;
    const uint32_t group = hp->n_head / hp->n_head_kv;
    const float scale = 1.0f / sqrtf((float)hd);
    uint32_t have = UINT32_MAX; /* kv head in w */
    for (uint32_t h = h0; h < h1; h++) {
        const uint32_t kvh = h / group;
        if (kvh != have) {
            gather_kv(a, w, kvh);
            have = kvh;
        }
        for (uint32_t t = 0; t < n; t++)
            memcpy(w->qh + (size_t)t * hd, c->q + (a->t0 + t) * QD + (size_t)h * hd,
                   hd * sizeof(float));
        /* KQ: llama.cpp's q view (permuted, not contiguous for n > 1) never
         * takes the sgemm path, so every token is a vec_dot over head_dim
         * (kq_prompt_avx512: the same dots, 16 keys at a time) */
        bool done = false;
#if defined(__x86_64__) || defined(__i386__)
        done = kq_prompt_avx512(a, w, n);
#endif
        for (uint32_t t = 0; !done && t < n; t++)
            kern_matmul(NULL, c->kv_type, w->kh, n_kv, hd, w->qh + (size_t)t * hd, 1,
                        w->kq + (size_t)t * n_kv, w->scratch);
        for (uint32_t t = 0; t < n; t++) {
            float *row = w->kq + (size_t)t * n_kv;
            const uint32_t pos = a->pos0 + t;
            for (uint32_t j = 0; j < n_kv; j++)
                row[j] = j <= pos ? row[j] * scale : -INFINITY;
            softmax(row, row, n_kv);
        }
        /* KQV: contiguous probabilities, sgemm order for a prompt. */
        kern_matmul_ex(NULL, c->kv_type, w->vt, hdv, n_kv, w->kq, n, w->oh, w->scratch, a->order);
        for (uint32_t t = 0; t < n; t++)
            memcpy(c->att + (a->t0 + t) * OD + (size_t)h * hdv, w->oh + (size_t)t * hdv,
                   hdv * sizeof(float));
    }
}

/* ---- single-token attention straight from the cache rows ----
 *
 * KQV in the vec_dot order of the F32/F16 kernels (ref.c vec_dot_f32/f16):
 * out[d] = sum over positions j of V[j][d] * p[j], position j < n64 (n
 * rounded down to 64) fused into lane j % 64 in increasing j, the 64 lanes
 * reduced as (l + l+32) + (l+16 + l+48), then the 16-lane halving tree, and
 * the positions from n64 on added one rounded product at a time (in double
 * for F16). Each lane is a row of head_dim_v sums, so a position's value row
 * is read as it lies in the cache: no transposed copy. p holds the
 * probabilities already rounded to the cache type (exact in float). */

static void kqv_lanes_scalar(const uint8_t *const *vp, size_t voff, bool f16, uint32_t used,
                             uint32_t n_kv, uint32_t hdv, const float *p, float *acc, float *out) {
    const uint32_t n64 = n_kv & ~(uint32_t)(ATT_LANES - 1);
    for (size_t i = 0; i < (size_t)ATT_LANES * hdv; i++)
        acc[i] = 0.0f;
    for (uint32_t j = 0; j < n64; j++) {
        float *a = acc + (size_t)(j % ATT_LANES) * hdv;
        const uint8_t *r = j < used ? vp[j] + voff : NULL;
        for (uint32_t d = 0; d < hdv; d++) {
            const float v = !r    ? 0.0f
                            : f16 ? kern_f16_to_f32(((const uint16_t *)r)[d])
                                  : ((const float *)r)[d];
            a[d] = fmaf(v, p[j], a[d]);
        }
    }
    for (uint32_t d = 0; d < hdv; d++) {
        float s[16];
        for (int l = 0; l < 16; l++)
            s[l] = (acc[(size_t)l * hdv + d] + acc[(size_t)(l + 32) * hdv + d]) +
                   (acc[(size_t)(l + 16) * hdv + d] + acc[(size_t)(l + 48) * hdv + d]);
        const float r = reduce16(s);
        if (f16) {
            double sum = (double)r;
            for (uint32_t j = n64; j < n_kv; j++) {
                const float v =
                    j < used ? kern_f16_to_f32(((const uint16_t *)(vp[j] + voff))[d]) : 0.0f;
                sum += (double)(v * p[j]);
            }
            out[d] = (float)sum;
        } else {
            float sum = r;
            for (uint32_t j = n64; j < n_kv; j++) {
                const float v = j < used ? ((const float *)(vp[j] + voff))[d] : 0.0f;
                const float pr = v * p[j];
                sum = sum + pr;
            }
            out[d] = sum;
        }
    }
}

#if defined(__x86_64__) || defined(__i386__)
#define ATT_TGT __attribute__((target("avx2,fma,f16c,avx512f")))

/* Lane L of NV*16 value columns from d0 of NH heads: the lane's
 * accumulators stay in registers while it runs over positions L, L+64, ...;
 * dst[h] + d0 receives head h's sums. */
ATT_TGT static inline __attribute__((always_inline)) void
kqv_lane_avx512(const uint8_t *const *vp, size_t voff, bool f16, uint32_t used, uint32_t n64,
                uint32_t d0, const float *const *p, int nh, int nv, uint32_t L, float *const *dst) {
    __m512 acc[ATT_HEADS][4];
    for (int h = 0; h < nh; h++)
        for (int k = 0; k < nv; k++)
            acc[h][k] = _mm512_setzero_ps();
    for (uint32_t j = L; j < n64; j += ATT_LANES) {
        __m512 v[4];
        if (j >= used) {
            for (int k = 0; k < nv; k++)
                v[k] = _mm512_setzero_ps();
        } else if (f16) {
            const uint16_t *r = (const uint16_t *)(vp[j] + voff) + d0;
            for (int k = 0; k < nv; k++)
                v[k] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + 16 * k)));
        } else {
            const float *r = (const float *)(vp[j] + voff) + d0;
            for (int k = 0; k < nv; k++)
                v[k] = _mm512_loadu_ps(r + 16 * k);
        }
        for (int h = 0; h < nh; h++) {
            const __m512 pj = _mm512_set1_ps(p[h][j]);
            for (int k = 0; k < nv; k++)
                acc[h][k] = _mm512_fmadd_ps(v[k], pj, acc[h][k]);
        }
    }
    for (int h = 0; h < nh; h++)
        for (int k = 0; k < nv; k++)
            _mm512_storeu_ps(dst[h] + d0 + 16 * k, acc[h][k]);
}

/* Every lane of NV*16 value columns from d0 of NH heads into lanes. */
ATT_TGT static inline __attribute__((always_inline)) void
kqv_lanes_block_avx512(const uint8_t *const *vp, size_t voff, bool f16, uint32_t used, uint32_t n64,
                       uint32_t hdv, uint32_t d0, const float *const *p, int nh, int nv,
                       float *lanes) {
    for (uint32_t L = 0; L < ATT_LANES; L++) {
        float *dst[ATT_HEADS];
        for (int h = 0; h < nh; h++)
            dst[h] = lanes + ((size_t)h * ATT_LANES + L) * hdv;
        kqv_lane_avx512(vp, voff, f16, used, n64, d0, p, nh, nv, L, dst);
    }
}

/* kqv_lane_avx512 for 4 heads and 64 columns of F32 rows, written out so
 * that the 16 accumulators stay in registers (the generic one spills). */
ATT_TGT __attribute__((noinline)) static void
kqv_lane44_avx512(const uint8_t *const *vp, size_t voff, uint32_t used, uint32_t n64, uint32_t d0,
                  const float *const *p, uint32_t L, float *const *dst) {
    const float *p0 = p[0], *p1 = p[1], *p2 = p[2], *p3 = p[3];
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
    __m512 a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    __m512 a20 = a00, a21 = a00, a22 = a00, a23 = a00;
    __m512 a30 = a00, a31 = a00, a32 = a00, a33 = a00;
    const uint32_t end = used < n64 ? used : n64;
    uint32_t j = L;
#define KQV44_HEAD(P, A0, A1, A2, A3, V0, V1, V2, V3)                                              \
    do {                                                                                           \
        const __m512 b = _mm512_set1_ps((P)[j]);                                                   \
        A0 = _mm512_fmadd_ps(V0, b, A0);                                                           \
        A1 = _mm512_fmadd_ps(V1, b, A1);                                                           \
        A2 = _mm512_fmadd_ps(V2, b, A2);                                                           \
        A3 = _mm512_fmadd_ps(V3, b, A3);                                                           \
    } while (0)
#define KQV44_STEP(V0, V1, V2, V3)                                                                 \
    do {                                                                                           \
        KQV44_HEAD(p0, a00, a01, a02, a03, V0, V1, V2, V3);                                        \
        KQV44_HEAD(p1, a10, a11, a12, a13, V0, V1, V2, V3);                                        \
        KQV44_HEAD(p2, a20, a21, a22, a23, V0, V1, V2, V3);                                        \
        KQV44_HEAD(p3, a30, a31, a32, a33, V0, V1, V2, V3);                                        \
    } while (0)
    for (; j < end; j += ATT_LANES) {
        const float *r = (const float *)(vp[j] + voff) + d0;
        if (j + ATT_LANES < end) {
            /* the next row is 64 positions on: the prefetchers do not see it */
            const char *nx = (const char *)((const float *)(vp[j + ATT_LANES] + voff) + d0);
            for (int c = 0; c < 256; c += 64)
                _mm_prefetch(nx + c, _MM_HINT_T0);
        }
        const __m512 v0 = _mm512_loadu_ps(r), v1 = _mm512_loadu_ps(r + 16);
        const __m512 v2 = _mm512_loadu_ps(r + 32), v3 = _mm512_loadu_ps(r + 48);
        KQV44_STEP(v0, v1, v2, v3);
    }
    /* cells past the used ones: zero rows, as the padded window has */
    const __m512 z = _mm512_setzero_ps();
    for (; j < n64; j += ATT_LANES)
        KQV44_STEP(z, z, z, z);
#undef KQV44_STEP
#undef KQV44_HEAD
#define KQV44_STORE(h, A0, A1, A2, A3)                                                             \
    do {                                                                                           \
        _mm512_storeu_ps(dst[h] + d0, A0);                                                         \
        _mm512_storeu_ps(dst[h] + d0 + 16, A1);                                                    \
        _mm512_storeu_ps(dst[h] + d0 + 32, A2);                                                    \
        _mm512_storeu_ps(dst[h] + d0 + 48, A3);                                                    \
    } while (0)
    KQV44_STORE(0, a00, a01, a02, a03);
    KQV44_STORE(1, a10, a11, a12, a13);
    KQV44_STORE(2, a20, a21, a22, a23);
    KQV44_STORE(3, a30, a31, a32, a33);
#undef KQV44_STORE
}

/* kqv_lane_avx512 for any nh <= ATT_HEADS and nv <= 4, specialised (not
 * inlined: its 16 accumulators need the register file to themselves). */
ATT_TGT __attribute__((noinline)) static void
kqv_lane_any_avx512(const uint8_t *const *vp, size_t voff, bool f16, uint32_t used, uint32_t n64,
                    uint32_t d0, const float *const *p, int nh, int nv, uint32_t L,
                    float *const *dst) {
#define KQV_LANE(NH, NV) kqv_lane_avx512(vp, voff, f16, used, n64, d0, p, NH, NV, L, dst)
#define KQV_LANE_NV(NH)                                                                            \
    do {                                                                                           \
        switch (nv) {                                                                              \
        case 4:                                                                                    \
            KQV_LANE(NH, 4);                                                                       \
            break;                                                                                 \
        case 3:                                                                                    \
            KQV_LANE(NH, 3);                                                                       \
            break;                                                                                 \
        case 2:                                                                                    \
            KQV_LANE(NH, 2);                                                                       \
            break;                                                                                 \
        default:                                                                                   \
            KQV_LANE(NH, 1);                                                                       \
            break;                                                                                 \
        }                                                                                          \
    } while (0)
    switch (nh) {
    case 4:
        KQV_LANE_NV(4);
        break;
    case 3:
        KQV_LANE_NV(3);
        break;
    case 2:
        KQV_LANE_NV(2);
        break;
    default:
        KQV_LANE_NV(1);
        break;
    }
#undef KQV_LANE_NV
#undef KQV_LANE
}

#define KQV_BLOCK(NH, NV)                                                                          \
    kqv_lanes_block_avx512(vp, voff, f16, used, n64, hdv, d0, p, NH, NV, lanes)
#define KQV_BLOCKS(NV)                                                                             \
    do {                                                                                           \
        switch (nh) {                                                                              \
        case 4:                                                                                    \
            KQV_BLOCK(4, NV);                                                                      \
            break;                                                                                 \
        case 3:                                                                                    \
            KQV_BLOCK(3, NV);                                                                      \
            break;                                                                                 \
        case 2:                                                                                    \
            KQV_BLOCK(2, NV);                                                                      \
            break;                                                                                 \
        default:                                                                                   \
            KQV_BLOCK(1, NV);                                                                      \
            break;                                                                                 \
        }                                                                                          \
    } while (0)

/* hdv % 16 == 0, nh <= ATT_HEADS heads sharing the value rows. */
ATT_TGT static void kqv_lanes_avx512(const uint8_t *const *vp, size_t voff, bool f16, uint32_t used,
                                     uint32_t n_kv, uint32_t hdv, const float *const *p, int nh,
                                     float *lanes, float *const *out) {
    const uint32_t n64 = n_kv & ~(uint32_t)(ATT_LANES - 1);
    for (uint32_t d0 = 0; d0 < hdv; d0 += 64) {
        switch (hdv - d0 >= 64 ? 4 : (hdv - d0) / 16) {
        case 4:
            KQV_BLOCKS(4);
            break;
        case 3:
            KQV_BLOCKS(3);
            break;
        case 2:
            KQV_BLOCKS(2);
            break;
        default:
            KQV_BLOCKS(1);
            break;
        }
    }
    for (int h = 0; h < nh; h++) {
        const float *A = lanes + (size_t)h * ATT_LANES * hdv;
        for (uint32_t d = 0; d < hdv; d += 16) {
            __m512 s[16];
            for (int l = 0; l < 16; l++)
                s[l] =
                    _mm512_add_ps(_mm512_add_ps(_mm512_loadu_ps(A + (size_t)l * hdv + d),
                                                _mm512_loadu_ps(A + (size_t)(l + 32) * hdv + d)),
                                  _mm512_add_ps(_mm512_loadu_ps(A + (size_t)(l + 16) * hdv + d),
                                                _mm512_loadu_ps(A + (size_t)(l + 48) * hdv + d)));
            for (int l = 0; l < 8; l++)
                s[l] = _mm512_add_ps(s[l + 8], s[l]);
            for (int l = 0; l < 4; l++)
                s[l] = _mm512_add_ps(s[l + 4], s[l]);
            for (int l = 0; l < 2; l++)
                s[l] = _mm512_add_ps(s[l], s[l + 2]);
            _mm512_storeu_ps(out[h] + d, _mm512_add_ps(s[0], s[1]));
        }
        if (n64 == n_kv)
            continue;
        /* leftover positions (a context size not a multiple of 64) */
        for (uint32_t d = 0; d < hdv; d++) {
            if (f16) {
                double sum = (double)out[h][d];
                for (uint32_t j = n64; j < n_kv; j++) {
                    const float v =
                        j < used ? kern_f16_to_f32(((const uint16_t *)(vp[j] + voff))[d]) : 0.0f;
                    sum += (double)(v * p[h][j]);
                }
                out[h][d] = (float)sum;
            } else {
                float sum = out[h][d];
                for (uint32_t j = n64; j < n_kv; j++) {
                    const float v = j < used ? ((const float *)(vp[j] + voff))[d] : 0.0f;
                    const float pr = v * p[h][j];
                    sum = sum + pr;
                }
                out[h][d] = sum;
            }
        }
    }
}
/* KQ for 16 keys at once in the vec_dot order (hd % 64 == 0): per key the
 * 4 x 16-lane fused sums over head_dim, (acc0 + acc2) + (acc1 + acc3), then
 * the 16-lane halving tree (i + 8, i + 4, i + 2, i + 1) done for the 16 keys
 * together by shuffles, which add the same pairs of partial sums. */
ATT_TGT static inline __attribute__((always_inline)) __m512
kq_key_avx512(const uint8_t *kr, bool f16, uint32_t hd, const float *q) {
    __m512 acc[4];
    for (int k = 0; k < 4; k++)
        acc[k] = _mm512_setzero_ps();
    for (uint32_t i = 0; i < hd; i += 64)
        for (int k = 0; k < 4; k++) {
            const __m512 kv = f16 ? _mm512_cvtph_ps(_mm256_loadu_si256(
                                        (const __m256i *)((const uint16_t *)kr + i + 16 * k)))
                                  : _mm512_loadu_ps((const float *)kr + i + 16 * k);
            acc[k] = _mm512_fmadd_ps(kv, _mm512_loadu_ps(q + i + 16 * k), acc[k]);
        }
    return _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]));
}

/* scores[h][j] = vec_dot(key row j, q[h]) for j_from <= j < n_keys (j_from a
 * multiple of 16) and nh heads, q as floats (already rounded to the cache
 * type); 16 keys per round (their rows stay in L1 for every head), the last
 * round padded with key 0. */
ATT_TGT static inline __attribute__((always_inline)) void
kq_keys_impl_avx512(const uint8_t *const *kp, size_t koff, bool f16, uint32_t hd, uint32_t j_from,
                    uint32_t n_keys, const float *const *qs, uint32_t nh, float *scores,
                    size_t stride) {
    const __m512i perm = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
    for (uint32_t j0 = j_from; j0 < n_keys; j0 += 16) {
        /* the next round's rows, while this one is computed */
        const uint32_t pe = j0 + 32 < n_keys ? j0 + 32 : n_keys;
        for (uint32_t j = j0 + 16; j < pe; j++)
            for (uint32_t c = 0; c < hd * (f16 ? 2 : 4); c += 64)
                _mm_prefetch((const char *)(kp[j] + koff) + c, _MM_HINT_T0);
        for (uint32_t h = 0; h < nh; h++) {
            const float *q = qs[h];
            float *out = scores + h * stride;
            __m512 w[8];
            for (int k = 0; k < 8; k++) {
                const uint32_t ja = j0 + 2 * k, jb = ja + 1;
                const __m512 a = kq_key_avx512(kp[ja < n_keys ? ja : 0] + koff, f16, hd, q);
                const __m512 b = kq_key_avx512(kp[jb < n_keys ? jb : 0] + koff, f16, hd, q);
                /* lanes 0-7: key ja's s[i] + s[i+8]; lanes 8-15: key jb's */
                w[k] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44),
                                     _mm512_shuffle_f32x4(a, b, 0xEE));
            }
            __m512 x[4];
            for (int k = 0; k < 4; k++) /* 128-bit lane m: key 4k+m's a[i] + a[i+4] */
                x[k] = _mm512_add_ps(_mm512_shuffle_f32x4(w[2 * k], w[2 * k + 1], 0x88),
                                     _mm512_shuffle_f32x4(w[2 * k], w[2 * k + 1], 0xDD));
            __m512 y[2];
            for (int k = 0; k < 2; k++) /* lane m: keys 8k+m, 8k+4+m: b[i] + b[i+2] */
                y[k] = _mm512_add_ps(_mm512_shuffle_ps(x[2 * k], x[2 * k + 1], 0x44),
                                     _mm512_shuffle_ps(x[2 * k], x[2 * k + 1], 0xEE));
            /* element 4m+t: key 4t+m's c0 + c1 */
            const __m512 z = _mm512_add_ps(_mm512_shuffle_ps(y[0], y[1], 0x88),
                                           _mm512_shuffle_ps(y[0], y[1], 0xDD));
            const __m512 r = _mm512_permutexvar_ps(perm, z);
            if (j0 + 16 <= n_keys) {
                _mm512_storeu_ps(out + j0, r);
            } else {
                float tmp[16];
                _mm512_storeu_ps(tmp, r);
                memcpy(out + j0, tmp, (n_keys - j0) * sizeof(float));
            }
        }
    }
}

/* kq_keys_impl_avx512 compiled for the common head sizes (constant trip
 * counts: the query stays in registers across the 16 keys). */
ATT_TGT static void kq_keys_avx512(const uint8_t *const *kp, size_t koff, bool f16, uint32_t hd,
                                   uint32_t j_from, uint32_t n_keys, const float *const *qs,
                                   uint32_t nh, float *scores, size_t stride) {
    if (!f16 && hd == 64)
        kq_keys_impl_avx512(kp, koff, false, 64, j_from, n_keys, qs, nh, scores, stride);
    else if (!f16 && hd == 128)
        kq_keys_impl_avx512(kp, koff, false, 128, j_from, n_keys, qs, nh, scores, stride);
    else if (f16 && hd == 64)
        kq_keys_impl_avx512(kp, koff, true, 64, j_from, n_keys, qs, nh, scores, stride);
    else if (f16 && hd == 128)
        kq_keys_impl_avx512(kp, koff, true, 128, j_from, n_keys, qs, nh, scores, stride);
    else
        kq_keys_impl_avx512(kp, koff, f16, hd, j_from, n_keys, qs, nh, scores, stride);
}

#undef KQV_BLOCKS
#undef KQV_BLOCK
#endif

static bool attn_force_gather; /* test hook: model_attn_force_gather */

void model_attn_force_gather(bool on) {
    attn_force_gather = on;
}

/* Whether this CPU level and shape take the single-token path for KQV. */
static bool kqv_lanes_fast(const struct model_hparams *hp) {
#if defined(__x86_64__) || defined(__i386__)
    return kern_level_current() >= 2 && hp->head_dim_v % 16 == 0;
#else
    (void)hp;
    return false;
#endif
}

/* Query heads [h0, h1) of one sequence's tokens, every token in the
 * single-token order: KQ as vec_dots over the cache's key rows, KQV by
 * kqv_lanes. Same bits as attention_heads with KERN_ORDER_SINGLE. */
static void attention_heads_single(const struct attn_job *a, struct attn_ws *w, uint32_t h0,
                                   uint32_t h1) {
    struct model_ctx *c = a->c;
    const struct model_hparams *hp = &c->m->hp;
    const uint32_t hd = hp->head_dim, hdv = hp->head_dim_v, n = a->t1 - a->t0, n_kv = a->n_kv;
    const uint32_t used = a->pos0 + n;
    const size_t QD = (size_t)hp->n_head * hd, OD = (size_t)hp->n_head * hdv, es = c->kv_elt;
    const uint32_t group = hp->n_head / hp->n_head_kv;
    const float scale = 1.0f / sqrtf((float)hd);
    const bool f16 = c->kv_type == ICA_F16;
    const struct kern_traits *tr = kern_get_traits(c->kv_type);
    const bool fast = kqv_lanes_fast(hp);
    for (uint32_t t = 0; t < n; t++) {
        const uint32_t pos = a->pos0 + t;
        const float *qt = c->q + (a->t0 + t) * QD;
        for (uint32_t hb = h0; hb < h1;) {
            const uint32_t kvh = hb / group;
            uint32_t he = (kvh + 1) * group < h1 ? (kvh + 1) * group : h1;
            if (he - hb > ATT_GROUP_MAX)
                he = hb + ATT_GROUP_MAX;
            const uint32_t nh = he - hb;
            const void *qv[ATT_GROUP_MAX];
            for (uint32_t i = 0; i < nh; i++) {
                const float *q = qt + (size_t)(hb + i) * hd;
                if (f16) {
                    void *r = (uint8_t *)w->qr + (size_t)i * hd * es;
                    tr->from_float(q, r, hd);
                    qv[i] = r;
                } else {
                    qv[i] = q;
                }
            }
            /* KQ: one vec_dot per key (the keys after pos are masked) */
            const size_t koff = (size_t)kvh * hd * es;
#if defined(__x86_64__) || defined(__i386__)
            if (fast && hd % 64 == 0) {
                const float *qf[ATT_GROUP_MAX];
                for (uint32_t i = 0; i < nh; i++) {
                    qf[i] = qv[i];
                    if (f16) {
                        float *qd = w->qf + (size_t)i * hd;
                        tr->to_float(qv[i], qd, hd);
                        qf[i] = qd;
                    }
                }
                kq_keys_avx512(a->kp, koff, f16, hd, 0, pos + 1, qf, nh, w->kq, n_kv);
            } else
#endif
                for (uint32_t j = 0; j <= pos; j++) {
                    const uint8_t *kr = a->kp[j] + koff;
                    for (uint32_t i = 0; i < nh; i++)
                        tr->vec_dot(hd, w->kq + (size_t)i * n_kv + j, kr, qv[i]);
                }
            const float *pv[ATT_GROUP_MAX];
            for (uint32_t i = 0; i < nh; i++) {
                float *row = w->kq + (size_t)i * n_kv;
                for (uint32_t j = 0; j < n_kv; j++)
                    row[j] = j <= pos ? row[j] * scale : -INFINITY;
                softmax(row, row, n_kv);
                if (f16) {
                    /* the product rounds the probabilities to F16 */
                    float *pf = w->pf + (size_t)i * n_kv;
                    tr->from_float(row, w->pr, n_kv);
                    tr->to_float(w->pr, pf, n_kv);
                    pv[i] = pf;
                } else {
                    pv[i] = row;
                }
            }
            const size_t voff = (size_t)kvh * hdv * es;
            float *ov[ATT_GROUP_MAX];
            for (uint32_t i = 0; i < nh; i++)
                ov[i] = c->att + (a->t0 + t) * OD + (size_t)(hb + i) * hdv;
#if defined(__x86_64__) || defined(__i386__)
            if (fast) {
                for (uint32_t i = 0; i < nh; i += ATT_HEADS)
                    kqv_lanes_avx512(a->vp, voff, f16, used, n_kv, hdv, pv + i,
                                     nh - i < ATT_HEADS ? (int)(nh - i) : ATT_HEADS, w->lanes,
                                     ov + i);
            } else
#endif
                for (uint32_t i = 0; i < nh; i++)
                    kqv_lanes_scalar(a->vp, voff, f16, used, n_kv, hdv, pv[i], w->lanes, ov[i]);
            hb = he;
        }
    }
    (void)fast;
}

static void attn_task(void *ud, int ith, int nth) {
    const struct attn_job *a = ud;
    const uint32_t H = a->c->m->hp.n_head;
    /* contiguous blocks of query heads: each thread gathers few kv heads */
    const uint32_t h0 = (uint32_t)((uint64_t)H * (uint64_t)ith / (uint64_t)nth);
    const uint32_t h1 = (uint32_t)((uint64_t)H * (uint64_t)(ith + 1) / (uint64_t)nth);
    if (a->lanes)
        attention_heads_single(a, &a->c->ws[ith], h0, h1);
    else
        attention_heads(a, &a->c->ws[ith], h0, h1);
}

/* Single-token sequences of one layer together: each thread takes its
 * query heads' kv heads one at a time, for every sequence. */
struct attn_group {
    struct attn_job job[ATT_SEQ_MAX];
    uint32_t n;
};

#if defined(__x86_64__) || defined(__i386__)
/* Query heads [hb, he) of one kv head (he - hb <= ATT_GROUP_MAX) for every
 * single-token sequence of g, with the same operations as
 * attention_heads_single (so the same bits) in another loop order: every
 * round of keys, and every lane's value rows, is taken by all the
 * sequences while it is in L1, so the rows of a shared prefix are read
 * from memory once per step instead of once per sequence. */
/* KQ of a prompt chunk over the gathered keys w->kh (queries in w->qh) with
 * kq_keys_avx512, which gives the vec_dot's bits: up to 64 tokens at a
 * time against the keys up to the last one's position (the others' extra
 * keys are masked afterwards). False when this level or shape has no such
 * kernel. */
ATT_TGT static void f16_round_avx512(float *x, uint32_t n);
static bool kq_prompt_avx512(const struct attn_job *a, struct attn_ws *w, uint32_t n) {
    const struct model_ctx *c = a->c;
    const struct model_hparams *hp = &c->m->hp;
    const uint32_t hd = hp->head_dim, n_kv = a->n_kv;
    if (!kqv_lanes_fast(hp) || hd % 64 != 0)
        return false;
    const bool f16 = c->kv_type == ICA_F16;
    for (uint32_t j = 0; j < n_kv; j++)
        w->cvp[j] = (const uint8_t *)w->kh + (size_t)j * hd * c->kv_elt;
    for (uint32_t t0 = 0; t0 < n; t0 += 64) {
        const uint32_t t1 = t0 + 64 < n ? t0 + 64 : n;
        const float *qs[64];
        for (uint32_t t = t0; t < t1; t++) {
            float *q = w->qh + (size_t)t * hd;
            if (f16) /* the product rounds q to the cache type */
                f16_round_avx512(q, hd);
            qs[t - t0] = q;
        }
        uint32_t nk = a->pos0 + t1; /* keys of the chunk's last token */
        if (nk > n_kv)
            nk = n_kv;
        kq_keys_avx512(w->cvp, 0, f16, hd, 0, nk, qs, t1 - t0, w->kq + (size_t)t0 * n_kv, n_kv);
    }
    return true;
}

/* n F16 values (n % 16 == 0) to floats: exact */
ATT_TGT static inline void f16_row_avx512(const uint8_t *src, float *dst, uint32_t n) {
    for (uint32_t i = 0; i < n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(
                                      (const __m256i *)((const uint16_t *)src + i))));
}

/* x rounded to F16 (to nearest even, as the F16 from_float) and back, in
 * place: what a product with an F16 operand sees of it */
ATT_TGT static void f16_round_avx512(float *x, uint32_t n) {
    uint32_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(x + i, _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_loadu_ps(x + i),
                                                                _MM_FROUND_TO_NEAREST_INT)));
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(x + i, k,
                              _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_maskz_loadu_ps(k, x + i),
                                                              _MM_FROUND_TO_NEAREST_INT)));
    }
}

ATT_TGT static void attention_group_avx512(const struct attn_group *g, struct attn_ws *w,
                                           uint32_t hb, uint32_t he) {
    struct model_ctx *c = g->job[0].c;
    const struct model_hparams *hp = &c->m->hp;
    const uint32_t hd = hp->head_dim, hdv = hp->head_dim_v, C = c->n_ctx;
    const size_t QD = (size_t)hp->n_head * hd, OD = (size_t)hp->n_head * hdv, es = c->kv_elt;
    const uint32_t group = hp->n_head / hp->n_head_kv;
    const uint32_t gmax = group < ATT_GROUP_MAX ? group : ATT_GROUP_MAX;
    const float scale = 1.0f / sqrtf((float)hd);
    const bool f16 = c->kv_type == ICA_F16;
    const uint32_t kvh = hb / group, nh = he - hb, ns = g->n;
    const size_t koff = (size_t)kvh * hd * es, voff = (size_t)kvh * hdv * es;
    /* queries rounded to the cache type, as floats */
    uint32_t max_keys = 0;
    for (uint32_t s = 0; s < ns; s++) {
        const struct attn_job *a = &g->job[s];
        const float *qt = c->q + a->t0 * QD;
        for (uint32_t i = 0; i < nh; i++) {
            const float *q = qt + (size_t)(hb + i) * hd;
            float *dst = w->gq + ((size_t)s * gmax + i) * hd;
            memcpy(dst, q, hd * sizeof(float));
            if (f16)
                f16_round_avx512(dst, hd);
        }
        if (a->pos0 + 1 > max_keys)
            max_keys = a->pos0 + 1;
    }
    /* KQ, 64 keys at a time for every sequence that has them */
    for (uint32_t ja = 0; ja < max_keys; ja += 64) {
        uint32_t conv_n = 0; /* keys of this round in w->ck */
        for (uint32_t s = 0; s < ns; s++) {
            const struct attn_job *a = &g->job[s];
            const uint32_t nk = a->pos0 + 1;
            if (ja >= nk)
                continue;
            const uint32_t jb = ja + 64 < nk ? ja + 64 : nk;
            const float *qf[ATT_GROUP_MAX];
            for (uint32_t i = 0; i < nh; i++)
                qf[i] = w->gq + ((size_t)s * gmax + i) * hd;
            if (!f16) {
                kq_keys_avx512(a->kp, koff, false, hd, ja, jb, qf, nh,
                               w->gkq + (size_t)s * gmax * C, C);
                continue;
            }
            bool same = conv_n >= jb - ja;
            for (uint32_t j = ja; same && j < jb; j++)
                same = w->cks[j - ja] == a->kp[j];
            if (!same) {
                for (uint32_t j = ja; j < jb; j++) {
                    if (j + 64 < nk) /* the next round's row: first touch of the cache */
                        for (uint32_t o = 0; o < hd * 2; o += 64)
                            _mm_prefetch((const char *)(a->kp[j + 64] + koff) + o, _MM_HINT_T0);
                    w->cks[j - ja] = a->kp[j];
                    f16_row_avx512(a->kp[j] + koff, w->ck + (size_t)(j - ja) * hd, hd);
                }
                conv_n = jb - ja;
            }
            const uint8_t *rows[64];
            for (uint32_t j = 0; j < jb - ja; j++)
                rows[j] = (const uint8_t *)(w->ck + (size_t)j * hd);
            kq_keys_avx512(rows, 0, false, hd, 0, jb - ja, qf, nh,
                           w->gkq + (size_t)s * gmax * C + ja, C);
        }
    }
    /* scale, causal mask, softmax; the product rounds the probabilities to
     * the cache type */
    for (uint32_t s = 0; s < ns; s++) {
        const struct attn_job *a = &g->job[s];
        for (uint32_t i = 0; i < nh; i++) {
            float *row = w->gkq + ((size_t)s * gmax + i) * C;
            for (uint32_t j = 0; j < a->n_kv; j++)
                row[j] = j <= a->pos0 ? row[j] * scale : -INFINITY;
            softmax(row, row, a->n_kv);
            if (f16)
                f16_round_avx512(row, a->n_kv);
        }
    }
    /* KQV: lanes l, l + 32, l + 16, l + 48 for every sequence and head, then
     * their first reduction step (A_l + A_l+32) + (A_l+16 + A_l+48) */
    static const uint32_t lane_off[4] = {0, 32, 16, 48};
    for (uint32_t l = 0; l < 16; l++) {
        for (uint32_t qn = 0; qn < 4; qn++) {
            const uint32_t L = l + lane_off[qn];
            uint32_t conv_n = 0; /* rows L, L + 64, ... in w->cv */
            for (uint32_t s = 0; s < ns; s++) {
                const struct attn_job *a = &g->job[s];
                const uint32_t used = a->pos0 + 1, n64 = a->n_kv & ~(uint32_t)(ATT_LANES - 1);
                const uint8_t *const *vrows = a->vp;
                size_t vo = voff;
                if (f16) {
                    /* this sequence's rows of lane L (the cells past `used`
                     * are zeros the kernel makes itself) */
                    const uint32_t end = used < n64 ? used : n64;
                    const uint32_t nr = end > L ? (end - L + ATT_LANES - 1) / ATT_LANES : 0;
                    bool same = conv_n >= nr;
                    for (uint32_t k = 0; same && k < nr; k++)
                        same = w->cvs[k] == a->vp[L + k * ATT_LANES];
                    if (!same) {
                        /* the lane that comes next in this loop: its rows too */
                        const uint32_t Ln = qn < 3 ? l + lane_off[qn + 1] : l + 1;
                        for (uint32_t k = 0; k < nr; k++) {
                            if (Ln < ATT_LANES && Ln + k * ATT_LANES < end)
                                for (uint32_t o = 0; o < hdv * 2; o += 64)
                                    _mm_prefetch((const char *)(a->vp[Ln + k * ATT_LANES] + voff) +
                                                     o,
                                                 _MM_HINT_T0);
                            const uint8_t *src = a->vp[L + k * ATT_LANES];
                            w->cvs[k] = src;
                            f16_row_avx512(src + voff, w->cv + (size_t)k * hdv, hdv);
                        }
                        conv_n = nr;
                    }
                    for (uint32_t k = 0; k < nr; k++)
                        w->cvp[L + k * ATT_LANES] = (const uint8_t *)(w->cv + (size_t)k * hdv);
                    vrows = w->cvp;
                    vo = 0;
                }
                for (uint32_t i0 = 0; i0 < nh; i0 += ATT_HEADS) {
                    const int nhh = nh - i0 < ATT_HEADS ? (int)(nh - i0) : ATT_HEADS;
                    const float *p[ATT_HEADS];
                    float *dst[ATT_HEADS];
                    for (int h = 0; h < nhh; h++) {
                        const size_t r = (size_t)s * gmax + i0 + (uint32_t)h;
                        p[h] = w->gkq + r * C;
                        dst[h] = w->gl + (r * 4 + qn) * hdv;
                    }
                    for (uint32_t d0 = 0; d0 < hdv; d0 += 64) {
                        const int nv = hdv - d0 >= 64 ? 4 : (int)(hdv - d0) / 16;
                        if (nhh == 4 && nv == 4)
                            kqv_lane44_avx512(vrows, vo, used, n64, d0, p, L, dst);
                        else
                            kqv_lane_any_avx512(vrows, vo, false, used, n64, d0, p, nhh, nv, L,
                                                dst);
                    }
                }
            }
        }
        for (uint32_t s = 0; s < ns; s++)
            for (uint32_t i = 0; i < nh; i++) {
                const size_t r = (size_t)s * gmax + i;
                const float *A = w->gl + r * 4 * hdv;
                float *S = w->gs + (r * 16 + l) * hdv;
                for (uint32_t d = 0; d < hdv; d += 16)
                    _mm512_storeu_ps(
                        S + d, _mm512_add_ps(_mm512_add_ps(_mm512_loadu_ps(A + d),
                                                           _mm512_loadu_ps(A + hdv + d)),
                                             _mm512_add_ps(_mm512_loadu_ps(A + 2 * hdv + d),
                                                           _mm512_loadu_ps(A + 3 * hdv + d))));
            }
    }
    /* the 16-lane halving tree, then positions from n64 on (kqv_lanes_avx512) */
    for (uint32_t s = 0; s < ns; s++) {
        const struct attn_job *a = &g->job[s];
        const uint32_t used = a->pos0 + 1, n_kv = a->n_kv;
        const uint32_t n64 = n_kv & ~(uint32_t)(ATT_LANES - 1);
        for (uint32_t i = 0; i < nh; i++) {
            const size_t r = (size_t)s * gmax + i;
            const float *S = w->gs + r * 16 * hdv, *p = w->gkq + r * C;
            float *out = c->att + a->t0 * OD + (size_t)(hb + i) * hdv;
            for (uint32_t d = 0; d < hdv; d += 16) {
                __m512 v[16];
                for (int k = 0; k < 16; k++)
                    v[k] = _mm512_loadu_ps(S + (size_t)k * hdv + d);
                for (int k = 0; k < 8; k++)
                    v[k] = _mm512_add_ps(v[k + 8], v[k]);
                for (int k = 0; k < 4; k++)
                    v[k] = _mm512_add_ps(v[k + 4], v[k]);
                for (int k = 0; k < 2; k++)
                    v[k] = _mm512_add_ps(v[k], v[k + 2]);
                _mm512_storeu_ps(out + d, _mm512_add_ps(v[0], v[1]));
            }
            for (uint32_t d = 0; n64 != n_kv && d < hdv; d++) {
                if (f16) {
                    double sum = (double)out[d];
                    for (uint32_t j = n64; j < n_kv; j++) {
                        const float v =
                            j < used ? kern_f16_to_f32(((const uint16_t *)(a->vp[j] + voff))[d])
                                     : 0.0f;
                        sum += (double)(v * p[j]);
                    }
                    out[d] = (float)sum;
                } else {
                    float sum = out[d];
                    for (uint32_t j = n64; j < n_kv; j++) {
                        const float v = j < used ? ((const float *)(a->vp[j] + voff))[d] : 0.0f;
                        const float pr = v * p[j];
                        sum = sum + pr;
                    }
                    out[d] = sum;
                }
            }
        }
    }
}
#endif

static void attn_group_task(void *ud, int ith, int nth) {
    const struct attn_group *g = ud;
    const struct model_hparams *hp = &g->job[0].c->m->hp;
    const uint32_t H = hp->n_head, group = hp->n_head / hp->n_head_kv;
    const uint32_t h0 = (uint32_t)((uint64_t)H * (uint64_t)ith / (uint64_t)nth);
    const uint32_t h1 = (uint32_t)((uint64_t)H * (uint64_t)(ith + 1) / (uint64_t)nth);
#if defined(__x86_64__) || defined(__i386__)
    if (kqv_lanes_fast(hp) && hp->head_dim % 64 == 0) {
        for (uint32_t hb = h0; hb < h1;) {
            uint32_t he = (hb / group + 1) * group < h1 ? (hb / group + 1) * group : h1;
            if (he - hb > ATT_GROUP_MAX)
                he = hb + ATT_GROUP_MAX;
            attention_group_avx512(g, &g->job[0].c->ws[ith], hb, he);
            hb = he;
        }
        return;
    }
#endif
    for (uint32_t hb = h0; hb < h1;) {
        const uint32_t he = (hb / group + 1) * group < h1 ? (hb / group + 1) * group : h1;
        for (uint32_t s = 0; s < g->n; s++)
            attention_heads_single(&g->job[s], &g->job[s].c->ws[ith], hb, he);
        hb = he;
    }
}

/* Runs the queued single-token sequences. */
static void attention_flush(struct model_ctx *c, struct attn_group *g) {
    if (g->n)
        pool_run(c->pool, attn_group_task, g);
    g->n = 0;
}

/* Attention of the tokens t0..t1-1 of one sequence (positions pos0..) in
 * layer il, heads spread over the threads, as llama.cpp's non-flash path.
 * llama.cpp runs these products over a KV window padded to 256 cells (zeros
 * beyond the used ones); padding to 64 gives the same kernel paths and sums,
 * since padded cells add exact zeros in every lane. Tokens in the
 * single-token order read the cache rows in place (queued in g, run by
 * attention_flush); a prompt (sgemm order) gathers each kv head's keys and
 * transposed values once for all its tokens and runs at once. */
static void attention_seq(struct model_ctx *c, const struct model_kv_view *kv, uint32_t il,
                          uint32_t t0, uint32_t t1, uint32_t pos0, enum kern_order order,
                          struct attn_group *g) {
    const struct model_hparams *hp = &c->m->hp;
    const uint32_t used = pos0 + (t1 - t0);
    uint32_t n_kv = round_up(used, 64);
    if (n_kv > c->n_ctx)
        n_kv = c->n_ctx;
    /* the order kern_matmul_ex would give the KQV product */
    const uint32_t n = t1 - t0;
    bool single = n == 1 ? order != KERN_ORDER_BATCH : order == KERN_ORDER_SINGLE;
    if (!kern_matmul_orders_differ(c->kv_type, hp->head_dim_v, n_kv))
        single = true; /* both orders give the same bits */
    /* the scalar level (ICALIGN_SIMD=scalar, a reference mode) takes it too,
     * so that its portable kqv_lanes_scalar is exercised */
    const bool lanes =
        single && !attn_force_gather && (kqv_lanes_fast(hp) || kern_level_current() == 0);
    if (!lanes && g->n)
        attention_flush(c, g); /* its row tables are reused below */
    const uint32_t slot = lanes ? g->n : 0;
    const uint8_t **kp = c->kp + (size_t)slot * c->n_ctx, **vp = c->vp + (size_t)slot * c->n_ctx;
    if (kv->rows) {
        kv->rows(kv->ud, il, used, kp, vp);
    } else {
        for (uint32_t j = 0; j < used; j++) {
            kp[j] = kv->k(kv->ud, il, j);
            vp[j] = kv->v(kv->ud, il, j);
        }
    }
    struct attn_job a = {c, kv, il, t0, t1, pos0, n_kv, order, lanes, kp, vp};
    if (!lanes) {
        pool_run(c->pool, attn_task, &a);
        return;
    }
    g->job[g->n++] = a;
    if (g->n == c->att_seq_max)
        attention_flush(c, g);
}

static void store_kv(struct model_ctx *c, const struct model_kv_view *kv, uint32_t il, uint32_t pos,
                     const float *k, const float *v) {
    const struct model_hparams *hp = &c->m->hp;
    const size_t KD = (size_t)hp->n_head_kv * hp->head_dim;
    const size_t VD = (size_t)hp->n_head_kv * hp->head_dim_v;
    void *kd = kv->k(kv->ud, il, pos), *vd = kv->v(kv->ud, il, pos);
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

/* Mixture of experts for one token, given its router probabilities
 * (llama.cpp build_moe_ffn with softmax gating and normalised top-k weights):
 * the n_expert_used largest (ties to the lower index), divided by their sum
 * (in double, as ggml_sum_rows), and the weighted sum of the selected
 * experts' SwiGLU outputs in rank order. */
static void moe_token(struct model_ctx *c, const struct model_layer *L, const float *h,
                      const float *r, float *out) {
    const struct model_hparams *hp = &c->m->hp;
    const uint32_t X = hp->n_expert, K = hp->n_expert_used, E = hp->n_embd, F = hp->n_ff;
    int sel[64];
    float wsel[64];
    const uint32_t k_used = K < 64 ? K : 64;
    double wsum = 0.0;
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
        wsum += (double)wsel[k];
    }
    const float fsum = (float)wsum;
    for (uint32_t k = 0; k < k_used; k++) {
        const size_t e = (size_t)sel[k];
        struct model_weight g = L->ffn_gate_exps, u = L->ffn_up_exps, d = L->ffn_down_exps;
        g.data = (const uint8_t *)g.data + e * g.row_size * F;
        u.data = (const uint8_t *)u.data + e * u.row_size * F;
        d.data = (const uint8_t *)d.data + e * d.row_size * E;
        /* llama.cpp's mul_mat_id computes each expert row with vector dots */
        matmul(c, &g, F, E, h, 1, c->gate);
        matmul(c, &u, F, E, h, 1, c->up);
        swiglu(c->gate, c->up, F);
        matmul(c, &d, E, F, c->gate, 1, c->moe_acc);
        const float w = wsel[k] / fsum;
        for (uint32_t i = 0; i < E; i++)
            out[i] = k == 0 ? c->moe_acc[i] * w : out[i] + c->moe_acc[i] * w;
    }
}

/* One forward pass over a batch of tokens of one or more sequences (see
 * model_forward for the contract). Summation orders per row: prompt tokens
 * use the batched order and generated tokens the single-token one, so a
 * token's result does not depend on what shares its batch or on how much of
 * its prompt was cached; as in llama.cpp, the last layer keeps only the
 * output rows, and a prompt with a single output row computes that row's
 * feed-forward part and logits in the single-token order. */
static void forward_batch(struct model_ctx *c, const struct model_kv_view *views,
                          const struct model_batch *b, float *logits) {
    const struct model *m = c->m;
    const struct model_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, F = hp->n_ff, X = hp->n_expert;
    const int64_t QD = (int64_t)hp->n_head * hp->head_dim;
    const int64_t KD = (int64_t)hp->n_head_kv * hp->head_dim;
    const int64_t VD = (int64_t)hp->n_head_kv * hp->head_dim_v;
    const int64_t OD = (int64_t)hp->n_head * hp->head_dim_v;
    const uint32_t n = b->n;
    uint8_t *order = c->row_order;

    for (uint32_t t = 0; t < n; t++) {
        const uint8_t *row =
            (const uint8_t *)m->tok_embd.data + (size_t)b->tokens[t] * m->tok_embd.row_size;
        m->tok_embd.traits->to_float(row, c->x + t * E, E);
        order[t] = b->decode && b->decode[t] ? KERN_ORDER_SINGLE : KERN_ORDER_BATCH;
    }
    uint32_t rows = n; /* rows of the residual stream still computed */
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const struct model_layer *L = &m->layers[il];
        for (uint32_t t = 0; t < n; t++)
            rms_norm(c->h + t * E, c->x + t * E, L->attn_norm.data, E, hp->rms_eps);
        {
            const struct model_weight *w3[3] = {&L->wq, &L->wk, &L->wv};
            const int64_t r3[3] = {QD, KD, VD};
            float *const y3[3] = {c->q, c->k, c->v};
            matmul_rows_multi(c, w3, r3, y3, 3, E, c->h, n, order);
        }
        add_bias(c->q, &L->bq, QD, n);
        add_bias(c->k, &L->bk, KD, n);
        add_bias(c->v, &L->bv, VD, n);
        for (uint32_t t = 0; t < n; t++) {
            rope_cache(m, c->rope, (int64_t)b->pos[t]);
            rope_apply(hp, c->rope, c->q + t * QD, (int)hp->n_head);
            rope_apply(hp, c->rope, c->k + t * KD, (int)hp->n_head_kv);
            store_kv(c, &views[b->seq[t]], il, b->pos[t], c->k + t * KD, c->v + t * VD);
        }
        struct attn_group g;
        g.n = 0;
        for (uint32_t t0 = 0; t0 < n;) {
            uint32_t t1 = t0 + 1;
            while (t1 < n && b->seq[t1] == b->seq[t0])
                t1++;
            attention_seq(c, &views[b->seq[t0]], il, t0, t1, b->pos[t0], (enum kern_order)order[t0],
                          &g);
            t0 = t1;
        }
        attention_flush(c, &g);
        matmul_rows(c, &L->wo, E, OD, c->att, n, order, c->tmp);
        add_bias(c->tmp, &L->bo, E, n);
        if (il == hp->n_layer - 1) {
            /* keep only the output rows (ggml_get_rows on cur and inpSA) */
            uint32_t kept = 0;
            for (uint32_t t0 = 0; t0 < n;) {
                uint32_t t1 = t0 + 1, outs = 0;
                while (t1 < n && b->seq[t1] == b->seq[t0])
                    t1++;
                for (uint32_t t = t0; t < t1; t++)
                    outs += b->output ? b->output[t] : t == t1 - 1;
                for (uint32_t t = t0; t < t1; t++) {
                    if (!(b->output ? b->output[t] : t == t1 - 1))
                        continue;
                    if (kept != t) {
                        memmove(c->tmp + (size_t)kept * E, c->tmp + (size_t)t * E,
                                E * sizeof(float));
                        memmove(c->x + (size_t)kept * E, c->x + (size_t)t * E, E * sizeof(float));
                    }
                    order[kept++] = outs == 1 ? KERN_ORDER_SINGLE : order[t];
                }
                t0 = t1;
            }
            rows = kept;
            if (!rows)
                return;
        }
        for (int64_t i = 0; i < (int64_t)rows * E; i++)
            c->x[i] += c->tmp[i];
        for (uint32_t t = 0; t < rows; t++)
            rms_norm(c->h + t * E, c->x + t * E, L->ffn_norm.data, E, hp->rms_eps);
        if (X == 0) {
            const struct model_weight *w2[2] = {&L->ffn_gate, &L->ffn_up};
            const int64_t r2[2] = {F, F};
            float *const y2[2] = {c->gate, c->up};
            matmul_rows_multi(c, w2, r2, y2, 2, E, c->h, rows, order);
            for (uint32_t t = 0; t < rows; t++)
                swiglu(c->gate + (size_t)t * F, c->up + (size_t)t * F, F);
            matmul_rows(c, &L->ffn_down, E, F, c->gate, rows, order, c->tmp);
        } else {
            /* router logits for every row, then the softmax gating per row */
            matmul_rows(c, &L->ffn_gate_inp, X, E, c->h, rows, order, c->router);
            for (uint32_t t = 0; t < rows; t++) {
                float *r = c->router + (size_t)t * X;
                softmax(r, r, X);
                moe_token(c, L, c->h + t * E, r, c->tmp + t * E);
            }
        }
        for (int64_t i = 0; i < (int64_t)rows * E; i++)
            c->x[i] += c->tmp[i];
    }
    for (uint32_t t = 0; t < rows; t++)
        rms_norm(c->h + t * E, c->x + t * E, m->output_norm.data, E, hp->rms_eps);
    matmul_rows(c, &m->output, hp->n_vocab, E, c->h, rows, order, logits);
}

int model_forward(struct model_ctx *c, const struct model_kv_view *views, uint32_t n_views,
                  const struct model_batch *b, float *logits, struct ica_error *err) {
    const struct model_hparams *hp = &c->m->hp;
    if (b->n == 0 || b->n > c->n_batch)
        return ica_seterr(err, ICA_ERR_ARG, "batch of %u tokens (1..%u allowed)", b->n, c->n_batch);
    for (uint32_t i = 0; i < b->n; i++) {
        if (b->tokens[i] < 0 || (uint32_t)b->tokens[i] >= hp->n_vocab)
            return ica_seterr(err, ICA_ERR_ARG,
                              "token id %d at batch position %u is outside the vocabulary (0..%u)",
                              b->tokens[i], i, hp->n_vocab - 1);
        if (b->seq[i] >= n_views)
            return ica_seterr(err, ICA_ERR_ARG, "batch token %u names sequence %u of %u", i,
                              b->seq[i], n_views);
        if (b->pos[i] >= c->n_ctx)
            return ica_seterr(err, ICA_ERR_RANGE, "position %u is beyond the context size %u",
                              b->pos[i], c->n_ctx);
        if (i > 0 && b->seq[i] == b->seq[i - 1] && b->pos[i] != b->pos[i - 1] + 1)
            return ica_seterr(err, ICA_ERR_ARG,
                              "batch token %u: positions of a sequence must be consecutive", i);
    }
    forward_batch(c, views, b, logits);
    return ICA_OK;
}

/* The context's own single-sequence cache as a view. */
static void *own_k(void *ud, uint32_t il, uint32_t pos) {
    struct model_ctx *c = ud;
    const struct model_hparams *hp = &c->m->hp;
    const size_t KD = (size_t)hp->n_head_kv * hp->head_dim;
    return c->k_cache + ((size_t)il * c->n_ctx + pos) * KD * c->kv_elt;
}

static void *own_v(void *ud, uint32_t il, uint32_t pos) {
    struct model_ctx *c = ud;
    const struct model_hparams *hp = &c->m->hp;
    const size_t VD = (size_t)hp->n_head_kv * hp->head_dim_v;
    return c->v_cache + ((size_t)il * c->n_ctx + pos) * VD * c->kv_elt;
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
                              "token id %d at position %u is outside the vocabulary (0..%u)",
                              tokens[i], i, hp->n_vocab - 1);
    if (!c->k_cache)
        return ica_seterr(err, ICA_ERR_ARG, "this context has no cache of its own (n_ctx 0)");
    const struct model_kv_view view = {own_k, own_v, c, NULL};
    for (uint32_t done = 0; done < n;) {
        const uint32_t nb = n - done < c->n_batch ? n - done : c->n_batch;
        const bool last_chunk = done + nb == n;
        float *out = NULL;
        for (uint32_t i = 0; i < nb; i++) {
            c->b_seq[i] = 0;
            c->b_pos[i] = c->n_past + i;
            c->b_out[i] = logits && (all_logits || (last_chunk && i == nb - 1));
            /* llama.cpp's order by batch size: one token = vector products */
            c->b_decode[i] = nb == 1;
        }
        if (logits && all_logits)
            out = logits + (size_t)done * hp->n_vocab;
        else if (logits && last_chunk)
            out = logits;
        const struct model_batch batch = {nb,       tokens + done, c->b_seq,
                                          c->b_pos, c->b_out,      c->b_decode};
        forward_batch(c, &view, &batch, out);
        c->n_past += nb;
        done += nb;
    }
    return ICA_OK;
}
