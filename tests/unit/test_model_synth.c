/* Generality: models of shapes the fixtures do not have (other head counts,
 * no GQA, GQA 8:1, head size != n_embd/n_head, qwen2 biases + NEOX rope +
 * tied output, rope_freqs, linear scaling, mixture of experts), written by
 * the test itself, checked against an independent double-precision forward
 * pass written here from the maths alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"

#include "icalign/kern.h"
#include "icalign/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Dequantized copy of a tensor (rows of ne[0] floats). */
static float *deq(const struct gguf_file *g, const char *name) {
    const struct gguf_tensor *t = gguf_find_tensor(g, name);
    if (!t)
        return NULL;
    int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    float *out = malloc((size_t)n * sizeof *out);
    const struct kern_traits *tr = kern_get_traits(t->type);
    assert_non_null(tr);
    const size_t rs = ica_dtype_row_size(t->type, t->ne[0]);
    for (int64_t r = 0; r < n / t->ne[0]; r++)
        tr->to_float((const uint8_t *)t->data + (size_t)r * rs, out + r * t->ne[0], t->ne[0]);
    return out;
}

static void mv(double *y, const float *w, const double *x, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        double s = 0;
        for (int64_t c = 0; c < cols; c++)
            s += (double)w[r * cols + c] * x[c];
        y[r] = s;
    }
}

static void rmsn(double *y, const double *x, const float *w, int64_t n, double eps) {
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += x[i] * x[i];
    double sc = 1.0 / sqrt(s / (double)n + eps);
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] * sc * w[i];
}

static double silu(double x) {
    return x / (1.0 + exp(-x));
}

static void rope(double *v, int n_heads, int hd, int n_rot, int64_t pos, double base,
                 const float *ff, double fscale, bool neox) {
    for (int h = 0; h < n_heads; h++) {
        double *x = v + (size_t)h * hd;
        for (int i = 0; i < n_rot / 2; i++) {
            double theta = (double)pos * pow(base, -2.0 * i / n_rot) * fscale;
            if (ff)
                theta /= ff[i];
            int a = neox ? i : 2 * i, b = neox ? i + n_rot / 2 : 2 * i + 1;
            double x0 = x[a], x1 = x[b];
            x[a] = x0 * cos(theta) - x1 * sin(theta);
            x[b] = x0 * sin(theta) + x1 * cos(theta);
        }
    }
}

/* Logits of every position for tokens[0..n), from the file alone. */
static double *reference_forward(const char *path, const int32_t *tokens, int n) {
    struct gguf_file *g;
    struct ica_error err = {0};
    assert_int_equal(gguf_open(path, &g, &err), ICA_OK);
    struct gguf_str arch;
    assert_int_equal(gguf_get_str(g, "general.architecture", &arch), ICA_OK);
    const bool qwen = arch.len == 5 && memcmp(arch.ptr, "qwen2", 5) == 0;
    char key[128];
    uint32_t E, L, F, H, HKV, X = 0, K = 0, hd;
#define U(k, out)                                                                                  \
    (snprintf(key, sizeof key, "%.*s.%s", (int)arch.len, arch.ptr, k), gguf_get_u32(g, key, out))
    assert_int_equal(U("embedding_length", &E), 0);
    assert_int_equal(U("block_count", &L), 0);
    assert_int_equal(U("feed_forward_length", &F), 0);
    assert_int_equal(U("attention.head_count", &H), 0);
    assert_int_equal(U("attention.head_count_kv", &HKV), 0);
    hd = E / H;
    (void)U("attention.key_length", &hd);
    (void)U("expert_count", &X);
    (void)U("expert_used_count", &K);
    float eps, base, lin = 0;
    snprintf(key, sizeof key, "%.*s.attention.layer_norm_rms_epsilon", (int)arch.len, arch.ptr);
    assert_int_equal(gguf_get_f32(g, key, &eps), 0);
    snprintf(key, sizeof key, "%.*s.rope.freq_base", (int)arch.len, arch.ptr);
    assert_int_equal(gguf_get_f32(g, key, &base), 0);
    snprintf(key, sizeof key, "%.*s.rope.scaling.factor", (int)arch.len, arch.ptr);
    (void)gguf_get_f32(g, key, &lin);
#undef U
    const double fscale = lin > 0 ? 1.0 / lin : 1.0;
    float *emb = deq(g, "token_embd.weight");
    float *out = deq(g, "output.weight");
    if (!out)
        out = emb;
    float *onorm = deq(g, "output_norm.weight");
    float *ff = deq(g, "rope_freqs.weight");
    const int64_t V = gguf_find_tensor(g, "token_embd.weight")->ne[1];
    const int64_t QD = (int64_t)H * hd, KD = (int64_t)HKV * hd;
    double *x = calloc((size_t)n * E, sizeof *x), *h = malloc(E * sizeof *h);
    double *q = malloc(QD * sizeof *q), *a = malloc(QD * sizeof *a), *t = malloc(E * sizeof *t);
    double *kc = malloc((size_t)L * n * KD * sizeof *kc),
           *vc = malloc((size_t)L * n * KD * sizeof *vc);
    double *g1 = malloc(F * sizeof *g1), *u1 = malloc(F * sizeof *u1), *s = malloc(n * sizeof *s);
    double *logits = malloc((size_t)n * V * sizeof *logits);
    for (int p = 0; p < n; p++)
        for (uint32_t i = 0; i < E; i++)
            x[(size_t)p * E + i] = emb[(size_t)tokens[p] * E + i];
    for (uint32_t il = 0; il < L; il++) {
        char nm[96];
#define T(s) (snprintf(nm, sizeof nm, "blk.%u.%s", il, s), deq(g, nm))
        float *an = T("attn_norm.weight"), *wq = T("attn_q.weight"), *wk = T("attn_k.weight");
        float *wv = T("attn_v.weight"), *wo = T("attn_output.weight"), *fn = T("ffn_norm.weight");
        float *bq = T("attn_q.bias"), *bk = T("attn_k.bias"), *bv = T("attn_v.bias");
        float *wg = T("ffn_gate.weight"), *wu = T("ffn_up.weight"), *wd = T("ffn_down.weight");
        float *wr = T("ffn_gate_inp.weight"), *wge = T("ffn_gate_exps.weight");
        float *wue = T("ffn_up_exps.weight"), *wde = T("ffn_down_exps.weight");
#undef T
        for (int p = 0; p < n; p++) {
            double *xp = x + (size_t)p * E;
            double *kp = kc + ((size_t)il * n + p) * KD, *vp = vc + ((size_t)il * n + p) * KD;
            rmsn(h, xp, an, E, eps);
            mv(q, wq, h, QD, E);
            mv(kp, wk, h, KD, E);
            mv(vp, wv, h, KD, E);
            for (int64_t i = 0; bq && i < QD; i++)
                q[i] += bq[i];
            for (int64_t i = 0; bk && i < KD; i++)
                kp[i] += bk[i];
            for (int64_t i = 0; bv && i < KD; i++)
                vp[i] += bv[i];
            rope(q, (int)H, (int)hd, (int)hd, p, base, ff, fscale, qwen);
            rope(kp, (int)HKV, (int)hd, (int)hd, p, base, ff, fscale, qwen);
            for (uint32_t hh = 0; hh < H; hh++) {
                const uint32_t kvh = hh / (H / HKV);
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j <= p; j++) {
                    double d = 0;
                    for (uint32_t c = 0; c < hd; c++)
                        d += q[hh * hd + c] * kc[((size_t)il * n + j) * KD + kvh * hd + c];
                    s[j] = d / sqrt((double)hd);
                    mx = s[j] > mx ? s[j] : mx;
                }
                for (int j = 0; j <= p; j++)
                    sum += (s[j] = exp(s[j] - mx));
                for (uint32_t c = 0; c < hd; c++) {
                    double o = 0;
                    for (int j = 0; j <= p; j++)
                        o += s[j] / sum * vc[((size_t)il * n + j) * KD + kvh * hd + c];
                    a[hh * hd + c] = o;
                }
            }
            mv(t, wo, a, E, QD);
            for (uint32_t i = 0; i < E; i++)
                xp[i] += t[i];
            rmsn(h, xp, fn, E, eps);
            if (X == 0) {
                mv(g1, wg, h, F, E);
                mv(u1, wu, h, F, E);
                for (uint32_t i = 0; i < F; i++)
                    g1[i] = silu(g1[i]) * u1[i];
                mv(t, wd, g1, E, F);
            } else {
                double r[64], pr[64], tot = 0, wsum = 0;
                mv(r, wr, h, X, E);
                double mx = -INFINITY;
                for (uint32_t e = 0; e < X; e++)
                    mx = r[e] > mx ? r[e] : mx;
                for (uint32_t e = 0; e < X; e++)
                    tot += (pr[e] = exp(r[e] - mx));
                int sel[64];
                for (uint32_t k = 0; k < K; k++) {
                    int b = -1;
                    for (uint32_t e = 0; e < X; e++) {
                        bool used = false;
                        for (uint32_t j = 0; j < k; j++)
                            used |= sel[j] == (int)e;
                        if (!used && (b < 0 || pr[e] > pr[b]))
                            b = (int)e;
                    }
                    sel[k] = b;
                    wsum += pr[b] / tot;
                }
                memset(t, 0, E * sizeof *t);
                double *o = malloc(E * sizeof *o);
                for (uint32_t k = 0; k < K; k++) {
                    const size_t e = (size_t)sel[k];
                    mv(g1, wge + e * F * E, h, F, E);
                    mv(u1, wue + e * F * E, h, F, E);
                    for (uint32_t i = 0; i < F; i++)
                        g1[i] = silu(g1[i]) * u1[i];
                    mv(o, wde + e * E * F, g1, E, F);
                    for (uint32_t i = 0; i < E; i++)
                        t[i] += o[i] * (pr[e] / tot) / wsum;
                }
                free(o);
            }
            for (uint32_t i = 0; i < E; i++)
                xp[i] += t[i];
        }
        free(an), free(wq), free(wk), free(wv), free(wo), free(fn), free(bq), free(bk), free(bv);
        free(wg), free(wu), free(wd), free(wr), free(wge), free(wue), free(wde);
    }
    for (int p = 0; p < n; p++) {
        rmsn(h, x + (size_t)p * E, onorm, E, eps);
        double *lp = logits + (size_t)p * V;
        for (int64_t v = 0; v < V; v++) {
            double acc = 0;
            for (uint32_t i = 0; i < E; i++)
                acc += (double)out[v * E + i] * h[i];
            lp[v] = acc;
        }
    }
    if (out != emb)
        free(out);
    free(emb), free(onorm), free(ff), free(x), free(h), free(q), free(a), free(t), free(kc);
    free(vc), free(g1), free(u1), free(s);
    gguf_close(g);
    return logits;
}

static void check_shape(struct model_synth_config cfg, const char *label, double rel_tol) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.gguf", tu_tmpdir(), label);
    struct ica_error err = {0};
    if (model_synth_write(path, &cfg, &err) != ICA_OK)
        fail_msg("%s: %s", label, err.msg);
    struct model *m;
    if (model_load(path, &m, &err) != ICA_OK)
        fail_msg("%s: %s", label, err.msg);
    const int n = 13;
    int32_t toks[13];
    for (int i = 0; i < n; i++)
        toks[i] = (int32_t)((i * 7919u + cfg.seed) % cfg.n_vocab);
    const uint32_t V = cfg.n_vocab;
    float *got = malloc((size_t)n * V * sizeof *got);
    struct model_ctx_params cp = model_ctx_default_params();
    cp.n_ctx = 32;
    cp.n_batch = 5; /* prompt split across batches on purpose */
    struct model_ctx *c;
    assert_int_equal(model_ctx_new(m, &cp, &c, &err), ICA_OK);
    assert_int_equal(model_eval(c, toks, n, got, true, &err), ICA_OK);
    double *want = reference_forward(path, toks, n);
    double max_abs = 0, max_ref = 0;
    for (size_t i = 0; i < (size_t)n * V; i++) {
        max_abs = fmax(max_abs, fabs(got[i] - want[i]));
        max_ref = fmax(max_ref, fabs(want[i]));
    }
    printf("  %-18s max|logit| %.3g, max|diff| %.3g (relative %.2g)\n", label, max_ref, max_abs,
           max_abs / max_ref);
    if (!(max_abs <= rel_tol * max_ref))
        fail_msg("%s: logits differ from the double reference by %g (max |logit| %g)", label,
                 max_abs, max_ref);
    /* Same model, F16 KV cache: close to the F32 cache. */
    model_ctx_free(c);
    cp.kv_type = ICA_F16;
    assert_int_equal(model_ctx_new(m, &cp, &c, &err), ICA_OK);
    float *got16 = malloc((size_t)n * V * sizeof *got16);
    assert_int_equal(model_eval(c, toks, n, got16, true, &err), ICA_OK);
    double d16 = 0;
    for (size_t i = 0; i < (size_t)n * V; i++)
        d16 = fmax(d16, fabs(got16[i] - got[i]));
    if (!(d16 <= 0.02 * max_ref))
        fail_msg("%s: F16 KV cache moves logits by %g", label, d16);
    free(got16);
    model_ctx_free(c);
    free(want);
    free(got);
    model_free(m);
}

static struct model_synth_config base_cfg(void) {
    struct model_synth_config c;
    memset(&c, 0, sizeof c);
    c.arch = "llama";
    c.n_vocab = 300;
    c.n_embd = 96;
    c.n_layer = 2;
    c.n_head = 6;
    c.n_head_kv = 2;
    c.n_ff = 160;
    c.n_ctx = 64;
    c.wtype = ICA_F32;
    c.seed = 1;
    return c;
}

static void test_shapes(void **state) {
    (void)state;
    struct model_synth_config c = base_cfg();
    check_shape(c, "gqa3", 1e-5);
    c = base_cfg();
    c.n_head_kv = c.n_head; /* no GQA */
    c.seed = 2;
    check_shape(c, "mha", 1e-5);
    c = base_cfg();
    c.n_embd = 128;
    c.n_head = 8;
    c.n_head_kv = 1; /* multi-query */
    c.n_layer = 3;
    c.seed = 3;
    check_shape(c, "mqa", 1e-5);
    c = base_cfg();
    c.head_dim = 24; /* head size != n_embd / n_head */
    c.n_head = 4;
    c.n_head_kv = 4;
    c.seed = 4;
    check_shape(c, "headdim", 1e-5);
    c = base_cfg();
    c.arch = "qwen2";
    c.tied_output = true;
    c.seed = 5;
    check_shape(c, "qwen2-tied", 1e-5);
    c = base_cfg();
    c.rope_freqs = true;
    c.rope_base = 500000;
    c.seed = 6;
    check_shape(c, "ropefreqs", 1e-5);
    c = base_cfg();
    c.rope_linear = 4;
    c.seed = 7;
    check_shape(c, "ropelinear", 1e-5);
    c = base_cfg();
    c.n_expert = 4;
    c.n_expert_used = 2;
    c.seed = 8;
    check_shape(c, "moe4x2", 1e-5);
}

/* Quantized weights: the double reference uses dequantized weights with
 * exact activations, so agreement is loose (activation rounding), but a
 * wrong block layout or dot product would be far off. */
static void test_quantized_shapes(void **state) {
    (void)state;
    static const uint32_t types[] = {ICA_F16,  ICA_BF16, ICA_Q8_0, ICA_Q4_0,
                                     ICA_Q5_1, ICA_Q4_K, ICA_Q6_K, ICA_IQ4_XS};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        struct model_synth_config c = base_cfg();
        c.n_embd = 256;
        c.n_head = 4;
        c.n_head_kv = 2;
        c.n_ff = 512;
        c.wtype = types[i];
        c.seed = 20 + i;
        char label[32];
        snprintf(label, sizeof label, "q-%s", ica_dtype_info(types[i])->name);
        check_shape(c, label, types[i] == ICA_F16 || types[i] == ICA_BF16 ? 0.02 : 0.15);
    }
}

static void test_bad_models(void **state) {
    (void)state;
    struct ica_error err = {0};
    struct model *m = NULL;
    char path[512];
    /* Unknown architecture: clear error naming it. */
    struct gguf_writer *w = gguf_writer_new();
    assert_int_equal(gguf_writer_set_str(w, "general.architecture", "mamba"), 0);
    snprintf(path, sizeof path, "%s/mamba.gguf", tu_tmpdir());
    assert_int_equal(gguf_writer_write(w, path, &err), 0);
    gguf_writer_free(w);
    assert_int_equal(model_load(path, &m, &err), ICA_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "mamba"));
    assert_null(m);
    /* Missing tensor: named. */
    struct model_synth_config c = base_cfg();
    snprintf(path, sizeof path, "%s/ok.gguf", tu_tmpdir());
    assert_int_equal(model_synth_write(path, &c, &err), 0);
    size_t len;
    char *buf = tu_read_file(path, &len);
    assert_non_null(buf);
    char *hit = NULL;
    for (size_t i = 0; i + 19 <= len && !hit; i++)
        if (memcmp(buf + i, "blk.1.ffn_up.weight", 19) == 0)
            hit = buf + i;
    assert_non_null(hit);
    hit[10] = 'X'; /* the tensor is now "blk.1.ffn_Xp.weight" */
    FILE *fp = fopen(path, "wb");
    assert_int_equal(fwrite(buf, 1, len, fp), len);
    fclose(fp);
    free(buf);
    assert_int_not_equal(model_load(path, &m, &err), ICA_OK);
    assert_non_null(strstr(err.msg, "blk.1.ffn_up.weight"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes),
        cmocka_unit_test(test_quantized_shapes),
        cmocka_unit_test(test_bad_models),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
