/* The forward pass's matrix product: activations rounded once per call,
 * then a tiled product spread over the pool's threads with the kernels of
 * the current SIMD level.
 *
 * Exactness: every output y[t][r] is one dot product computed in the order
 * of kern_matmul_ref (the K dimension is never split), so the result does
 * not depend on the thread count, the tile shape or the level. Tiles only
 * choose which outputs are computed together: a thread owns a range of
 * weight rows (or of tokens when there are few rows); inside it, blocks of
 * tokens whose rounded activations fit in L2 are swept by every row of the
 * range, four tokens at a time through the level's dot4 kernel, which
 * unpacks each weight block once for the four tokens.
 *
 * No allocation: the rounded activations live in the caller's scratch. */
#include "simd.h"

#include "icalign/dtype.h"
#include "icalign/pool.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

/* Below this many multiply-adds a product runs on the calling thread: a
 * pool round trip costs more than it saves (attention of short contexts). */
#define MM_MIN_PARALLEL_WORK (1 << 16)
/* Packed 8-row weight tiles: stack bytes (rows up to 14336 Q4_0 columns)
 * and the fewest tokens that pay for the packing. */
#define MM_PACK_BYTES      (136 * 1024)
#define MM_PACK_MIN_TOKENS 8
/* Rounded activations swept per token block (bytes, about half an L2). */
#define MM_TOKEN_BLOCK_BYTES (256 * 1024)
/* Per-token integers of the repacked kernels for one token block (stack). */
#define MM_AUX_MAX 16384
/* activations (tokens x columns) rounded by every thread from this size */
#define MM_MIN_PARALLEL_QUANT 65536

/* ------------------------------------------------ sgemm order, scalar */

/* llamafile sgemm's dot as kern_matmul_ref takes it (one 16-lane
 * accumulator, _mm512_reduce_add_ps tree): the scalar fallback for levels
 * without an sgemm4 kernel. */
static float reduce16(const float *v) {
    float a[8], b[4], c[2];
    for (int i = 0; i < 8; i++)
        a[i] = v[i + 8] + v[i];
    for (int i = 0; i < 4; i++)
        b[i] = a[i + 4] + a[i];
    for (int i = 0; i < 2; i++)
        c[i] = b[i] + b[i + 2];
    return c[0] + c[1];
}

static float bf16_daz(uint16_t h) {
    if ((h & 0x7f80u) == 0)
        h &= 0x8000u;
    return kern_bf16_to_f32(h);
}

static float ftz(float v) {
    union {
        float f;
        uint32_t u;
    } b = {v};
    if ((b.u & 0x7f800000u) == 0)
        b.u &= 0x80000000u;
    return b.f;
}

static float sgemm_dot_scalar(uint32_t wtype, int64_t n, const void *vx, const void *vy) {
    float acc[16] = {0};
    if (wtype == ICA_F32) {
        const float *x = vx, *y = vy;
        for (int64_t i = 0; i < n; i += 16)
            for (int l = 0; l < 16; l++)
                acc[l] = fmaf(x[i + l], y[i + l], acc[l]);
    } else if (wtype == ICA_F16) {
        const uint16_t *x = vx, *y = vy;
        for (int64_t i = 0; i < n; i += 16)
            for (int l = 0; l < 16; l++)
                acc[l] = fmaf(kern_f16_to_f32(x[i + l]), kern_f16_to_f32(y[i + l]), acc[l]);
    } else {
        const uint16_t *x = vx, *y = vy;
        for (int64_t i = 0; i < n; i += 32)
            for (int l = 0; l < 16; l++) {
                int64_t e = i + 2 * l;
                float odd = bf16_daz(x[e + 1]) * bf16_daz(y[e + 1]);
                float even = bf16_daz(x[e]) * bf16_daz(y[e]);
                acc[l] = ftz(acc[l] + odd);
                acc[l] = ftz(acc[l] + even);
            }
    }
    return reduce16(acc);
}

/* Same rule as kern_matmul_ref: llama.cpp takes llamafile sgemm for several
 * tokens when the shapes allow it, vec_dot otherwise. */
static int sgemm_kind(uint32_t wtype, int64_t n_rows, int64_t n_cols, int64_t n_tok) {
    if (n_tok < 2 || n_rows % 4 != 0)
        return 0;
    if ((wtype == ICA_F32 || wtype == ICA_F16) && n_cols % 16 == 0)
        return 1;
    if (wtype == ICA_BF16 && n_cols % 32 == 0)
        return 1;
    return 0;
}

/* ------------------------------------------------------------ tasks */

struct mm_task {
    const struct kern_ops *ops;
    uint32_t wtype;
    const char *w;
    size_t wrs;     /* weight row bytes */
    const char *rp; /* repacked tiles of rows [0, rp_end), or NULL */
    size_t rp_tile; /* bytes per tile */
    int64_t rp_end;
    int64_t n_rows, n_cols, n_tok;
    const float *x;
    float *y;
    const char *act; /* rounded activations (or x) */
    size_t ars;      /* their row bytes */
    char *scratch;
    int64_t blk; /* activation block elements, for the quantizer split */
    size_t blk_bytes;
    int sg;            /* sgemm order */
    int by_tokens;     /* split tokens, not rows, across threads */
    int64_t chunk;     /* rows per work item (multiple of 16) */
    atomic_llong next; /* next row chunk */
};

static void split(int64_t n, int ith, int nth, int64_t *a, int64_t *b) {
    int64_t per = (n + nth - 1) / nth;
    *a = per * ith < n ? per * ith : n;
    *b = *a + per < n ? *a + per : n;
}

static void quant_task(void *vctx, int ith, int nth) {
    const struct mm_task *m = vctx;
    const int64_t nb = m->n_tok * m->n_cols / m->blk;
    int64_t b0, b1;
    split(nb, ith, nth, &b0, &b1);
    if (b1 > b0)
        m->ops->quant(m->x + b0 * m->blk, m->scratch + (size_t)b0 * m->blk_bytes,
                      (b1 - b0) * m->blk);
}

/* The repacked kernel's shared per-token values for nt tokens at a, in
 * buf (MM_AUX_MAX entries), or NULL when the type has none or they do not
 * fit (the kernel then computes them itself). */
static const int32_t *rp_aux(const struct mm_task *m, const char *a, int64_t nt, int32_t *buf) {
    const struct kern_ops *o = m->ops;
    const int64_t nb = m->n_cols / ica_dtype_info(o->tr.vec_dot_type)->blck;
    if (!o->rp_aux || nt * nb * 2 > MM_AUX_MAX) /* two entries a block (rp_aux_q4_0) */
        return NULL;
    o->rp_aux(m->n_cols, a, m->ars, nt, buf);
    return buf;
}

/* Rows [r0, r1) against tokens [t0, t1); aux0: the repacked kernel's
 * per-token values of all these tokens when the caller has them (NULL:
 * computed here). */
static void dot_rows(const struct mm_task *m, int64_t r0, int64_t r1, int64_t t0, int64_t t1,
                     const int32_t *aux0);

/* The repacked kernel's per-token values of all the tokens, once per
 * thread, when they make one token block of dot_rows (else NULL). */
static const int32_t *thread_aux(const struct mm_task *m, int32_t *buf) {
    if (!m->rp || !m->ops->rp_aux)
        return NULL;
    int64_t tb = (int64_t)(MM_TOKEN_BLOCK_BYTES / (m->ars ? m->ars : 1));
    tb = tb < 4 ? 4 : tb & ~(int64_t)3;
    return m->n_tok <= tb ? rp_aux(m, m->act, m->n_tok, buf) : NULL;
}

static void dot_rows(const struct mm_task *m, int64_t r0, int64_t r1, int64_t t0, int64_t t1,
                     const int32_t *aux0) {
    const struct kern_ops *o = m->ops;
    if (t1 - t0 == 1 && !m->sg) {
        const char *a = m->act + (size_t)t0 * m->ars;
        float *out = m->y + t0 * m->n_rows;
        int64_t r = r0;
        if (m->rp && r % o->rp_rows == 0) {
            int32_t aux[MM_AUX_MAX];
            const int32_t *ax = aux0 ? aux0 : rp_aux(m, a, 1, aux);
            for (; r + o->rp_rows <= r1 && r + o->rp_rows <= m->rp_end; r += o->rp_rows)
                o->rp_gemm(m->n_cols, m->rp + (size_t)(r / o->rp_rows) * m->rp_tile, a, m->ars, 1,
                           ax, &out[r], m->n_rows);
        }
        if (o->tile4)
            for (; r + 4 <= r1; r += 4)
                o->tile4(m->n_cols, m->w + (size_t)r * m->wrs, m->wrs, a, m->ars, 1, &out[r],
                         m->n_rows);
        for (; r < r1; r++)
            o->tr.vec_dot(m->n_cols, &out[r], m->w + (size_t)r * m->wrs, a);
        return;
    }
    /* packed weight tile (8 rows), on the stack: no allocation */
    _Alignas(64) unsigned char pack[MM_PACK_BYTES];
    /* token blocks that stay in L2 while every row of the range sweeps them */
    int64_t tb = (int64_t)(MM_TOKEN_BLOCK_BYTES / (m->ars ? m->ars : 1));
    tb = tb < 4 ? 4 : tb & ~(int64_t)3;
    for (int64_t tb0 = t0; tb0 < t1; tb0 += tb) {
        const int64_t tb1 = tb0 + tb < t1 ? tb0 + tb : t1;
        int64_t r = r0;
        if (m->rp && r % o->rp_rows == 0 && r + o->rp_rows <= r1) {
            int32_t aux[MM_AUX_MAX];
            const char *a = m->act + (size_t)tb0 * m->ars;
            const int32_t *ax =
                aux0 && tb0 == t0 && tb1 == t1 ? aux0 : rp_aux(m, a, tb1 - tb0, aux);
            for (; r + o->rp_rows <= r1 && r + o->rp_rows <= m->rp_end; r += o->rp_rows)
                o->rp_gemm(m->n_cols, m->rp + (size_t)(r / o->rp_rows) * m->rp_tile, a, m->ars,
                           tb1 - tb0, ax, &m->y[tb0 * m->n_rows + r], m->n_rows);
        }
        if (o->gemm8 && !m->sg && tb1 - tb0 >= MM_PACK_MIN_TOKENS &&
            o->pack_bytes(m->n_cols) <= sizeof pack && m->n_cols <= 32 * 512)
            for (; r + o->pack_rows <= r1; r += o->pack_rows) {
                o->pack8(m->n_cols, m->w + (size_t)r * m->wrs, m->wrs, pack);
                o->gemm8(m->n_cols, pack, m->act + (size_t)tb0 * m->ars, m->ars, tb1 - tb0,
                         &m->y[tb0 * m->n_rows + r], m->n_rows);
            }
        if (m->sg && o->sgemm44)
            for (; r + 4 <= r1; r += 4)
                for (int64_t t = tb0; t < tb1; t += 4) {
                    const int nt = (int)(tb1 - t < 4 ? tb1 - t : 4);
                    o->sgemm44(m->n_cols, m->w + (size_t)r * m->wrs, m->wrs,
                               m->act + (size_t)t * m->ars, m->ars, nt, &m->y[t * m->n_rows + r],
                               m->n_rows);
                }
        if (o->tile4 && !m->sg)
            for (; r + 4 <= r1; r += 4)
                for (int64_t t = tb0; t < tb1; t += 4) {
                    const int nt = (int)(tb1 - t < 4 ? tb1 - t : 4);
                    o->tile4(m->n_cols, m->w + (size_t)r * m->wrs, m->wrs,
                             m->act + (size_t)t * m->ars, m->ars, nt, &m->y[t * m->n_rows + r],
                             m->n_rows);
                }
        for (; r < r1; r++) {
            const char *wr = m->w + (size_t)r * m->wrs;
            for (int64_t t = tb0; t < tb1; t += 4) {
                const int nt = (int)(tb1 - t < 4 ? tb1 - t : 4);
                const char *a = m->act + (size_t)t * m->ars;
                float *out = &m->y[t * m->n_rows + r];
                if (m->sg) {
                    if (o->sgemm4)
                        o->sgemm4(m->n_cols, wr, a, m->ars, nt, out, m->n_rows);
                    else
                        for (int k = 0; k < nt; k++)
                            out[k * m->n_rows] =
                                sgemm_dot_scalar(m->wtype, m->n_cols, wr, a + (size_t)k * m->ars);
                } else if (o->dot4) {
                    o->dot4(m->n_cols, wr, a, m->ars, nt, out, m->n_rows);
                } else {
                    for (int k = 0; k < nt; k++)
                        o->tr.vec_dot(m->n_cols, &out[k * m->n_rows], wr, a + (size_t)k * m->ars);
                }
            }
        }
    }
}

static void dot_task(void *vctx, int ith, int nth) {
    const struct mm_task *m = vctx;
    int64_t a, b;
    if (m->by_tokens) {
        split(m->n_tok, ith, nth, &a, &b);
        if (b > a)
            dot_rows(m, 0, m->n_rows, a, b, NULL);
    } else {
        /* chunks of rows handed out by an atomic counter: a thread that the
         * OS delays (shared machines) takes fewer chunks instead of holding
         * the others at the end of the product. Which thread computes an
         * output never changes its value. */
        struct mm_task *mt = vctx;
        int32_t aux[MM_AUX_MAX];
        const int32_t *ax = thread_aux(m, aux);
        for (;;) {
            const int64_t c = atomic_fetch_add_explicit(&mt->next, 1, memory_order_relaxed);
            a = c * m->chunk;
            if (a >= m->n_rows)
                break;
            b = a + m->chunk < m->n_rows ? a + m->chunk : m->n_rows;
            dot_rows(m, a, b, 0, m->n_tok, ax);
        }
        (void)ith;
        (void)nth;
    }
}

size_t kern_repack_size_level(int level, uint32_t wtype, int64_t n_rows, int64_t n_cols) {
    const struct kern_ops *o = kern_ops_get(level, wtype);
    const struct ica_dtype_info *di = ica_dtype_info(wtype);
    if (!o || !o->rp_pack || !di || n_cols <= 0 || n_cols % di->blck != 0 || n_rows < o->rp_rows)
        return 0;
    return (size_t)(n_rows / o->rp_rows) * o->rp_bytes(n_cols);
}

void kern_repack_level(int level, uint32_t wtype, const void *w, int64_t n_rows, int64_t n_cols,
                       void *dst) {
    if (!kern_repack_size_level(level, wtype, n_rows, n_cols))
        return;
    const struct kern_ops *o = kern_ops_get(level, wtype);
    const size_t wrs = ica_dtype_row_size(wtype, n_cols), tile = o->rp_bytes(n_cols);
    for (int64_t i = 0; i < n_rows / o->rp_rows; i++)
        o->rp_pack(n_cols, (const char *)w + (size_t)(i * o->rp_rows) * wrs, wrs,
                   (char *)dst + (size_t)i * tile);
}

size_t kern_repack_size(uint32_t wtype, int64_t n_rows, int64_t n_cols) {
    return kern_repack_size_level(kern_level_current(), wtype, n_rows, n_cols);
}

void kern_repack(uint32_t wtype, const void *w, int64_t n_rows, int64_t n_cols, void *dst) {
    kern_repack_level(kern_level_current(), wtype, w, n_rows, n_cols, dst);
}

void kern_matmul_level(int level, struct pool *pool, uint32_t wtype, const void *w, int64_t n_rows,
                       int64_t n_cols, const float *x, int64_t n_tok, float *y, void *scratch) {
    kern_matmul_rp_level(level, pool, wtype, w, NULL, n_rows, n_cols, x, n_tok, y, scratch);
}

void kern_matmul_rp_level(int level, struct pool *pool, uint32_t wtype, const void *w,
                          const void *rp, int64_t n_rows, int64_t n_cols, const float *x,
                          int64_t n_tok, float *y, void *scratch) {
    const struct kern_ops *o = kern_ops_get(level, wtype);
    if (!o || !o->tr.vec_dot || n_rows <= 0 || n_tok <= 0)
        return;
    struct mm_task m = {0};
    m.ops = o;
    m.wtype = wtype;
    m.w = w;
    m.wrs = ica_dtype_row_size(wtype, n_cols);
    if (rp && kern_repack_size_level(level, wtype, n_rows, n_cols)) {
        m.rp = rp;
        m.rp_tile = o->rp_bytes(n_cols);
        m.rp_end = n_rows / o->rp_rows * o->rp_rows;
    }
    m.n_rows = n_rows;
    m.n_cols = n_cols;
    m.n_tok = n_tok;
    m.x = x;
    m.y = y;
    m.sg = sgemm_kind(wtype, n_rows, n_cols, n_tok);
    const double work = (double)n_rows * (double)n_cols * (double)n_tok;
    struct pool *p = work < MM_MIN_PARALLEL_WORK ? NULL : pool;
    const int nth = p ? pool_size(p) : 1;
    const uint32_t vt = o->tr.vec_dot_type;
    if (vt == ICA_F32) {
        m.act = (const char *)x;
        m.ars = (size_t)n_cols * sizeof(float);
    } else {
        m.scratch = scratch;
        m.ars = ica_dtype_row_size(vt, n_cols);
        const struct ica_dtype_info *di = ica_dtype_info(vt);
        m.blk = di->blck;
        m.blk_bytes = di->type_size;
        /* a few tokens are rounded faster than the threads meet */
        if (nth > 1 && n_tok * n_cols >= MM_MIN_PARALLEL_QUANT)
            pool_run(p, quant_task, &m);
        else
            quant_task(&m, 0, 1);
        m.act = scratch;
    }
    m.by_tokens = n_rows < 16 * nth && n_tok >= nth;
    /* about 8 chunks per thread, at least 16 rows (a packed tile) */
    m.chunk = (n_rows / (8 * nth) + 15) & ~(int64_t)15;
    if (m.chunk < 16)
        m.chunk = 16;
    if (nth == 1)
        m.chunk = n_rows;
    atomic_init(&m.next, 0);
    if (nth > 1)
        pool_run(p, dot_task, &m);
    else
        dot_task(&m, 0, 1);
}

/* kern_matmul_multi: one task per matrix, chunks numbered across them */
struct mm_multi {
    struct mm_task t[KERN_MULTI_MAX];
    int64_t first[KERN_MULTI_MAX + 1]; /* first chunk of each matrix; first[n] = total */
    int n;
    atomic_llong next;
};

static void multi_task(void *vctx, int ith, int nth) {
    struct mm_multi *mm = vctx;
    (void)ith;
    (void)nth;
    int32_t aux[MM_AUX_MAX];
    const int32_t *ax = thread_aux(&mm->t[0], aux);
    int i = 0;
    for (;;) {
        const int64_t c = atomic_fetch_add_explicit(&mm->next, 1, memory_order_relaxed);
        if (c >= mm->first[mm->n])
            break;
        while (c >= mm->first[i + 1])
            i++;
        const struct mm_task *m = &mm->t[i];
        const int64_t a = (c - mm->first[i]) * m->chunk;
        const int64_t b = a + m->chunk < m->n_rows ? a + m->chunk : m->n_rows;
        /* aux depends on the activations only: valid for every matrix with
         * repacked rows (m0 has them iff all do: same type and columns) */
        dot_rows(m, a, b, 0, m->n_tok, m->rp ? ax : NULL);
    }
}

void kern_matmul_multi(struct pool *pool, uint32_t wtype, const struct kern_mm *mm, int n,
                       int64_t n_cols, const float *x, int64_t n_tok, void *scratch) {
    const int level = kern_level_current();
    const struct kern_ops *o = kern_ops_get(level, wtype);
    if (!o || !o->tr.vec_dot || n <= 0 || n_tok <= 0)
        return;
    int64_t rows = 0;
    bool simple = n <= KERN_MULTI_MAX && sgemm_kind(wtype, 1, n_cols, n_tok) == 0;
    for (int i = 0; i < n && simple; i++) {
        rows += mm[i].n_rows;
        /* every matrix repacked or none (aux), no row-poor one (by tokens) */
        const bool rp = mm[i].rp && kern_repack_size_level(level, wtype, mm[i].n_rows, n_cols);
        const bool rp0 = mm[0].rp && kern_repack_size_level(level, wtype, mm[0].n_rows, n_cols);
        simple =
            rp == rp0 && mm[i].n_rows > 0 && sgemm_kind(wtype, mm[i].n_rows, n_cols, n_tok) == 0;
    }
    const int nth = pool ? pool_size(pool) : 1;
    if (!simple || nth == 1 ||
        (double)rows * (double)n_cols * (double)n_tok < MM_MIN_PARALLEL_WORK ||
        rows < 16 * (int64_t)nth * n) {
        for (int i = 0; i < n; i++)
            kern_matmul_rp_level(level, pool, wtype, mm[i].w, mm[i].rp, mm[i].n_rows, n_cols, x,
                                 n_tok, mm[i].y, scratch);
        return;
    }
    struct mm_multi g;
    memset(&g, 0, sizeof g);
    g.n = n;
    struct mm_task *m = &g.t[0];
    m->ops = o;
    m->wtype = wtype;
    m->n_cols = n_cols;
    m->n_tok = n_tok;
    m->x = x;
    const uint32_t vt = o->tr.vec_dot_type;
    if (vt == ICA_F32) {
        m->act = (const char *)x;
        m->ars = (size_t)n_cols * sizeof(float);
    } else {
        m->scratch = scratch;
        m->ars = ica_dtype_row_size(vt, n_cols);
        const struct ica_dtype_info *di = ica_dtype_info(vt);
        m->blk = di->blck;
        m->blk_bytes = di->type_size;
        if (n_tok * n_cols >= MM_MIN_PARALLEL_QUANT)
            pool_run(pool, quant_task, m);
        else
            quant_task(m, 0, 1);
        m->act = scratch;
    }
    /* about 8 chunks per thread over all the rows, at least 16 rows */
    int64_t chunk = (rows / (8 * nth) + 15) & ~(int64_t)15;
    if (chunk < 16)
        chunk = 16;
    for (int i = 0; i < n; i++) {
        struct mm_task *t = &g.t[i];
        if (i > 0)
            *t = (struct mm_task){.ops = o,
                                  .wtype = wtype,
                                  .n_cols = n_cols,
                                  .n_tok = n_tok,
                                  .x = x,
                                  .act = m->act,
                                  .ars = m->ars,
                                  .scratch = m->scratch,
                                  .blk = m->blk,
                                  .blk_bytes = m->blk_bytes};
        t->w = mm[i].w;
        t->wrs = ica_dtype_row_size(wtype, n_cols);
        if (mm[i].rp && kern_repack_size_level(level, wtype, mm[i].n_rows, n_cols)) {
            t->rp = mm[i].rp;
            t->rp_tile = o->rp_bytes(n_cols);
            t->rp_end = mm[i].n_rows / o->rp_rows * o->rp_rows;
        }
        t->n_rows = mm[i].n_rows;
        t->y = mm[i].y;
        t->chunk = chunk;
        g.first[i + 1] = g.first[i] + (mm[i].n_rows + chunk - 1) / chunk;
    }
    atomic_init(&g.next, 0);
    pool_run(pool, multi_task, &g);
}

void kern_matmul(struct pool *pool, uint32_t wtype, const void *w, int64_t n_rows, int64_t n_cols,
                 const float *x, int64_t n_tok, float *y, void *scratch) {
    kern_matmul_level(kern_level_current(), pool, wtype, w, n_rows, n_cols, x, n_tok, y, scratch);
}

void kern_matmul_rp(struct pool *pool, uint32_t wtype, const void *w, const void *rp,
                    int64_t n_rows, int64_t n_cols, const float *x, int64_t n_tok, float *y,
                    void *scratch) {
    kern_matmul_rp_level(kern_level_current(), pool, wtype, w, rp, n_rows, n_cols, x, n_tok, y,
                         scratch);
}
