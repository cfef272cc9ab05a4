/* The scheduler: continuous batching of many sequences over a shared, paged
 * KV cache (see engine.h). */
#include "engine_int.h"

#include "icalign/kv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

enum { SEQ_QUEUED, SEQ_RUNNING };

struct eng_seq {
    uint64_t id;
    int state;
    bool cancelled;
    int32_t *toks; /* prompt then generated tokens */
    uint32_t n_prompt, n_toks, cap;
    uint32_t n_done;  /* positions whose K/V are computed */
    bool has_pending; /* toks[n_done] was sampled and is evaluated next */
    struct kv_seq *kv;
    struct sampler *smp;
    struct gen_params gp;
    char **stops; /* copies of gp.stop */
    gen_emit_fn emit;
    engine_done_fn done;
    void *ud;
    struct gen_result res;
    size_t text_cap, emitted,
        emitted_before; /* emitted_before: text streamed before a preemption */
    uint32_t cached;    /* prompt tokens reused from the cache */
    size_t promise;     /* KV blocks this sequence may need at most (while running) */
    double t_submit, t_first;
};

struct engine {
    const struct model *m;
    const struct tok_vocab *vocab;
    struct engine_params p;
    struct model_ctx *ctx;
    struct kv_cache *kv;
    uint32_t V;
    struct eng_seq **seqs; /* queue order: running and queued */
    uint32_t n_seqs, cap_seqs;
    uint64_t next_id;
    /* batch buffers */
    int32_t *b_tok;
    uint32_t *b_seq, *b_pos;
    bool *b_out, *b_dec;
    struct model_kv_view *views;
    struct eng_seq **vseq; /* view index -> sequence */
    float *logits;         /* rows of the output tokens */
    uint32_t max_out;
    /* prefix files */
    uint8_t model_hash[16];
    bool have_hash;
    uint64_t saved[64];
    uint32_t n_saved;
    size_t promised; /* sum of the running sequences' promises */
    bool cleared;    /* the cache was emptied to make room; reset by the next forward */
    struct engine_stats st;
};

struct engine_params engine_default_params(void) {
    struct engine_params p;
    memset(&p, 0, sizeof p);
    p.kv_type = ICA_F16;
    return p;
}

static void *view_k(void *ud, uint32_t il, uint32_t pos) {
    return kv_seq_k(((struct eng_seq *)ud)->kv, (int)il, pos);
}

static void *view_v(void *ud, uint32_t il, uint32_t pos) {
    return kv_seq_v(((struct eng_seq *)ud)->kv, (int)il, pos);
}

static void view_rows(void *ud, uint32_t il, uint32_t n, const uint8_t **k, const uint8_t **v) {
    kv_seq_rows(((struct eng_seq *)ud)->kv, (int)il, n, k, v);
}

int engine_new(const struct model *m, const struct tok_vocab *vocab, const struct engine_params *p,
               struct engine **out, struct ica_error *err) {
    *out = NULL;
    const struct model_hparams *hp = model_get_hparams(m);
    struct engine *e = calloc(1, sizeof *e);
    if (!e)
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
    e->m = m;
    e->vocab = vocab;
    e->p = p ? *p : engine_default_params();
    if (!e->p.n_ctx)
        e->p.n_ctx = hp->n_ctx_train < 8192 ? hp->n_ctx_train : 8192;
    if (!e->p.n_batch)
        e->p.n_batch = 512;
    if (!e->p.n_seq_max)
        e->p.n_seq_max = 8;
    if (e->p.kv_type != ICA_F16)
        e->p.kv_type = ICA_F32;
    e->V = hp->n_vocab;
    struct model_ctx_params cp = model_ctx_default_params();
    cp.n_ctx = e->p.n_ctx;
    cp.n_batch = e->p.n_batch;
    cp.kv_type = e->p.kv_type;
    cp.n_threads = e->p.n_threads;
    cp.no_own_cache = true;
    int rc = model_ctx_new(m, &cp, &e->ctx, err);
    if (rc != ICA_OK) {
        free(e);
        return rc;
    }
    e->p.n_batch = model_ctx_n_batch(e->ctx);
    struct kv_config kc = kv_default_config();
    kc.n_layer = (int)hp->n_layer;
    kc.n_head_kv = (int)hp->n_head_kv;
    kc.head_dim = (int)hp->head_dim;
    kc.head_dim_v = (int)hp->head_dim_v;
    kc.block_tokens = e->p.block_tokens ? (int)e->p.block_tokens : 32;
    kc.elem_type = e->p.kv_type == ICA_F16 ? ICA_F16 : ICA_F32;
    const size_t bb = kv_block_bytes(&kc);
    /* a full context, plus blocks a copy-on-write of a shared block needs meanwhile */
    const size_t per_seq = bb * ((e->p.n_ctx + kc.block_tokens - 1) / kc.block_tokens + 3);
    size_t budget = e->p.kv_mem;
    if (!budget) {
        /* n_seq_max full contexts, at most a quarter of the physical memory */
        budget = per_seq * e->p.n_seq_max;
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        if (pages > 0 && psz > 0 && budget > (size_t)pages * (size_t)psz / 4)
            budget = (size_t)pages * (size_t)psz / 4;
        if (budget < per_seq)
            budget = per_seq;
    } else if (budget < per_seq) {
        ica_seterr(err, ICA_ERR_ARG,
                   "KV budget of %zu bytes is below one sequence of %u tokens (%.1f MiB)", budget,
                   e->p.n_ctx, (double)per_seq / 1048576.0);
        engine_free(e);
        return ICA_ERR_ARG;
    }
    kc.mem_budget = budget;
    if ((rc = kv_cache_new(&kc, &e->kv, err)) != ICA_OK) {
        engine_free(e);
        return rc;
    }
    const uint32_t B = e->p.n_batch, S = e->p.n_seq_max;
    e->max_out = 2 * S;
    e->b_tok = malloc(B * sizeof *e->b_tok);
    e->b_seq = malloc(B * sizeof *e->b_seq);
    e->b_pos = malloc(B * sizeof *e->b_pos);
    e->b_out = malloc(B * sizeof *e->b_out);
    e->b_dec = malloc(B * sizeof *e->b_dec);
    e->views = malloc(S * sizeof *e->views);
    e->vseq = malloc(S * sizeof *e->vseq);
    e->logits = malloc((size_t)e->max_out * e->V * sizeof *e->logits);
    if (!e->b_tok || !e->b_seq || !e->b_pos || !e->b_out || !e->b_dec || !e->views || !e->vseq ||
        !e->logits) {
        engine_free(e);
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory for the engine's buffers");
    }
    *out = e;
    return ICA_OK;
}

static void seq_free(struct eng_seq *s) {
    if (!s)
        return;
    kv_seq_free(s->kv);
    sampler_free(s->smp);
    for (uint32_t i = 0; i < s->gp.n_stop; i++)
        free(s->stops[i]);
    free(s->stops);
    free(s->toks);
    gen_result_free(&s->res);
    free(s);
}

void engine_free(struct engine *e) {
    if (!e)
        return;
    for (uint32_t i = 0; i < e->n_seqs; i++)
        seq_free(e->seqs[i]);
    free(e->seqs);
    kv_cache_free(e->kv);
    model_ctx_free(e->ctx);
    free(e->b_tok);
    free(e->b_seq);
    free(e->b_pos);
    free(e->b_out);
    free(e->b_dec);
    free(e->views);
    free(e->vseq);
    free(e->logits);
    free(e);
}

uint32_t engine_pending(const struct engine *e) {
    return e->n_seqs;
}

uint32_t engine_n_ctx(const struct engine *e) {
    return e->p.n_ctx;
}

void engine_get_stats(const struct engine *e, struct engine_stats *st) {
    *st = e->st;
}

int engine_submit(struct engine *e, const int32_t *prompt, uint32_t n_prompt,
                  const struct gen_params *gp, gen_emit_fn emit, engine_done_fn done, void *ud,
                  uint64_t *id, struct ica_error *err) {
    if (n_prompt == 0)
        return ica_seterr(err, ICA_ERR_ARG, "empty prompt");
    if ((uint64_t)n_prompt + gp->max_tokens > e->p.n_ctx)
        return ica_seterr(err, ICA_ERR_RANGE,
                          "prompt of %u tokens + %u new tokens exceeds the context of %u tokens",
                          n_prompt, gp->max_tokens, e->p.n_ctx);
    for (uint32_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || (uint32_t)prompt[i] >= e->V)
            return ica_seterr(err, ICA_ERR_ARG,
                              "token id %d at position %u is outside the "
                              "vocabulary (0..%u)",
                              prompt[i], i, e->V - 1);
    struct eng_seq *s = calloc(1, sizeof *s);
    if (!s)
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
    s->cap = n_prompt + gp->max_tokens + 1;
    s->toks = malloc(s->cap * sizeof *s->toks);
    s->gp = *gp;
    s->stops = calloc(gp->n_stop + 1, sizeof *s->stops);
    bool ok = s->toks && s->stops;
    for (uint32_t i = 0; ok && i < gp->n_stop; i++)
        ok = (s->stops[i] = strdup(gp->stop[i])) != NULL;
    s->gp.stop = (const char *const *)s->stops;
    s->gp.context_ids = NULL;
    s->gp.n_context_ids = 0;
    if (ok && e->n_seqs == e->cap_seqs) {
        uint32_t nc = e->cap_seqs ? 2 * e->cap_seqs : 16;
        struct eng_seq **t = realloc(e->seqs, nc * sizeof *t);
        ok = t != NULL;
        if (ok) {
            e->seqs = t;
            e->cap_seqs = nc;
        }
    }
    if (!ok) {
        seq_free(s);
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
    }
    memcpy(s->toks, prompt, n_prompt * sizeof *s->toks);
    s->n_prompt = s->n_toks = n_prompt;
    s->emit = emit;
    s->done = done;
    s->ud = ud;
    s->id = ++e->next_id;
    s->state = SEQ_QUEUED;
    s->t_submit = eng_now();
    e->seqs[e->n_seqs++] = s;
    if (id)
        *id = s->id;
    return ICA_OK;
}

void engine_cancel(struct engine *e, uint64_t id) {
    for (uint32_t i = 0; i < e->n_seqs; i++)
        if (e->seqs[i]->id == id)
            e->seqs[i]->cancelled = true;
}

/* Reports the end of a request and removes it. KV of everything it computed
 * stays in the tree for later requests. */
static void finish(struct engine *e, uint32_t idx, const struct ica_error *fail) {
    struct eng_seq *s = e->seqs[idx];
    e->promised -= s->promise;
    if (s->kv && s->n_done) {
        /* best effort: a refused commit only means less reuse later */
        const int crc = kv_seq_commit(s->kv, s->toks, s->n_done, NULL);
        (void)crc;
    }
    if (!fail && s->emit && s->res.text && s->res.text_len > s->emitted &&
        s->res.reason != GEN_STOP_CANCELLED)
        (void)s->emit(s->ud, s->res.text + s->emitted, s->res.text_len - s->emitted);
    s->res.n_prompt = s->n_prompt;
    s->res.n_cached = s->cached;
    s->res.t_gen_s = eng_now() - (s->t_first ? s->t_first : s->t_submit);
    if (s->done)
        s->done(s->ud, s->id, &s->res, fail);
    seq_free(s);
    memmove(&e->seqs[idx], &e->seqs[idx + 1], (e->n_seqs - idx - 1) * sizeof *e->seqs);
    e->n_seqs--;
}

static uint64_t tokens_hash(const int32_t *t, size_t n) {
    return XXH3_64bits(t, n * sizeof *t);
}

/* The model file's identity for prefix files: XXH3-128 of its bytes, once. */
static void ensure_hash(struct engine *e) {
    if (e->have_hash)
        return;
    const struct gguf_file *g = model_gguf(e->m);
    XXH3_state_t *st = XXH3_createState();
    if (!st)
        return;
    XXH3_128bits_reset(st);
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const struct gguf_tensor *t = gguf_tensor(g, i);
        XXH3_128bits_update(st, t->name, strlen(t->name));
        XXH3_128bits_update(st, t->data, t->nbytes);
    }
    XXH128_hash_t h = XXH3_128bits_digest(st);
    XXH3_freeState(st);
    model_release_repacked(e->m); /* the hash read the repacked matrices' pages again */
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    memcpy(e->model_hash, c.digest, sizeof e->model_hash);
    e->have_hash = true;
}

/* Starts a queued sequence: reuse of the longest cached prefix (after
 * loading a prefix file when enabled), sampler state. Returns false when it
 * should wait (another running sequence is computing a longer shared prefix,
 * or the cache is full). */
static bool admit(struct engine *e, struct eng_seq *s, struct ica_error *fail) {
    const size_t bt = (size_t)kv_cache_config(e->kv)->block_tokens;
    /* Admission control: the worst case of every running sequence fits the
     * budget, so running sequences never wait for blocks (shared blocks are
     * counted once per sequence: conservative). The first one always runs. */
    struct kv_stats ks;
    kv_cache_stats(e->kv, &ks);
    const size_t promise = (s->n_prompt + s->gp.max_tokens + bt - 1) / bt + 1;
    if (ks.blocks_max && e->promised && e->promised + promise > ks.blocks_max)
        return false;
    const size_t max_reuse = e->p.no_prefix_reuse ? 0 : s->n_prompt - 1;
    size_t cached = kv_cache_lookup(e->kv, s->toks, max_reuse);
    /* Another sequence still reading a prompt that shares more with this one:
     * wait for it, so the shared part is computed once. */
    for (uint32_t i = 0; i < e->n_seqs; i++) {
        const struct eng_seq *o = e->seqs[i];
        if (o == s || o->state != SEQ_RUNNING || o->n_done >= o->n_prompt || !max_reuse)
            continue;
        uint32_t common = 0;
        while (common < o->n_prompt && common < s->n_prompt - 1 &&
               o->toks[common] == s->toks[common])
            common++;
        if (common > cached + bt)
            return false;
    }
    if (e->p.prefix_cache_dir && max_reuse && cached < s->n_prompt - 1) {
        ensure_hash(e);
        if (e->have_hash) {
            struct kv_file_key key = {e->model_hash, sizeof e->model_hash};
            struct kv_load_result lr;
            struct ica_error le = {0};
            if (kv_cache_load(e->kv, e->p.prefix_cache_dir, &key, s->toks, s->n_prompt - 1, &lr,
                              &le) == ICA_OK &&
                lr.n_loaded)
                e->st.prefix_files_loaded++;
        }
    }
    size_t n_cached = 0;
    struct ica_error ke = {0};
    int rc = kv_seq_new(e->kv, s->toks, s->n_prompt, max_reuse, &s->kv, &n_cached, &ke);
    if (rc != ICA_OK) {
        *fail = ke;
        return true;
    }
    struct ica_error se = {0};
    s->smp = sampler_new(&s->gp.sampling, e->V, &se);
    if (!s->smp) {
        *fail = se;
        return true;
    }
    sampler_accept_prompt(s->smp, s->toks, s->n_prompt);
    s->n_done = (uint32_t)n_cached;
    s->cached = (uint32_t)n_cached;
    s->state = SEQ_RUNNING;
    s->promise = promise;
    e->promised += promise;
    e->st.prompt_tokens += s->n_prompt;
    e->st.prompt_tokens_cached += n_cached;
    /* A prefix shared with an earlier request is worth keeping on disk. */
    if (e->p.prefix_cache_dir && n_cached >= bt && e->have_hash) {
        const uint64_t h = tokens_hash(s->toks, n_cached);
        bool seen = false;
        for (uint32_t i = 0; i < e->n_saved && !seen; i++)
            seen = e->saved[i] == h;
        if (!seen) {
            struct kv_file_key key = {e->model_hash, sizeof e->model_hash};
            struct ica_error we = {0};
            if (kv_cache_save(e->kv, e->p.prefix_cache_dir, &key, s->toks, n_cached, &we) ==
                ICA_OK) {
                e->st.prefix_files_saved++;
                e->saved[e->n_saved++ % 64] = h;
            }
        }
    } else if (e->p.prefix_cache_dir && !e->have_hash && n_cached >= bt) {
        ensure_hash(e);
    }
    return true;
}

/* Puts a running sequence back in the queue (KV budget exhausted): it will be
 * recomputed from its prompt, deterministically; text already streamed is not
 * streamed again. */
static void preempt(struct engine *e, struct eng_seq *s) {
    e->promised -= s->promise;
    s->promise = 0;
    kv_seq_free(s->kv);
    s->kv = NULL;
    sampler_free(s->smp);
    s->smp = NULL;
    s->n_toks = s->n_prompt;
    s->n_done = 0;
    s->has_pending = false;
    s->emitted_before = s->emitted > s->emitted_before ? s->emitted : s->emitted_before;
    s->emitted = 0;
    free(s->res.ids);
    free(s->res.text);
    free(s->res.top_ids);
    free(s->res.top_logprobs);
    memset(&s->res, 0, sizeof s->res);
    s->text_cap = 0;
    s->state = SEQ_QUEUED;
}

/* Sampling, text, stop conditions after a sequence's output row. Returns
 * true when the sequence is finished. */
static bool after_logits(struct engine *e, struct eng_seq *s, float *row, struct ica_error *fail) {
    if (!s->t_first) {
        s->t_first = eng_now();
        s->res.t_prompt_s = s->t_first - s->t_submit;
        if (s->gp.top_logprobs &&
            eng_top_logprobs(&s->res, row, e->V, s->gp.top_logprobs, fail) != ICA_OK)
            return true;
    }
    if (s->res.n_ids >= s->gp.max_tokens) {
        s->res.reason = GEN_STOP_MAX_TOKENS;
        return true;
    }
    const int32_t id = sampler_sample(s->smp, row);
    if (!s->gp.ignore_eos && e->vocab && tok_is_eog(e->vocab, id)) {
        s->res.reason = GEN_STOP_EOG;
        return true;
    }
    sampler_accept(s->smp, id);
    if (!s->res.ids) {
        /* the whole output's ids, and room for its text at 16 bytes a token
         * (longer pieces grow it), taken once at the first token */
        s->res.ids = malloc((s->gp.max_tokens + 1) * sizeof *s->res.ids);
        const size_t want = (size_t)s->gp.max_tokens * 16 + 256;
        char *t = s->res.ids ? realloc(s->res.text, want) : NULL;
        if (!t) {
            ica_seterr(fail, ICA_ERR_NOMEM, "out of memory");
            return true;
        }
        s->res.text = t;
        if (s->text_cap < want)
            s->text_cap = want;
    }
    s->res.ids[s->res.n_ids++] = id;
    s->toks[s->n_toks++] = id;
    e->st.generated_tokens++;
    if (e->vocab) {
        char piece[256];
        int32_t n = tok_token_to_piece(e->vocab, id, false, 0, piece, sizeof piece);
        if (n < 0)
            n = 0;
        const size_t before = s->res.text_len;
        if (eng_append(&s->res.text, &s->res.text_len, &s->text_cap, piece, (size_t)n)) {
            ica_seterr(fail, ICA_ERR_NOMEM, "out of memory");
            return true;
        }
        size_t longest = 0;
        for (uint32_t k = 0; k < s->gp.n_stop; k++)
            if (strlen(s->gp.stop[k]) > longest)
                longest = strlen(s->gp.stop[k]);
        const size_t from = before + 1 > longest ? before + 1 - longest : 0;
        const char *hit =
            eng_find_stop(s->res.text, s->res.text_len, from, s->gp.stop, s->gp.n_stop);
        if (hit) {
            s->res.text_len = (size_t)(hit - s->res.text);
            s->res.text[s->res.text_len] = '\0';
            s->res.reason = GEN_STOP_STRING;
        }
        size_t safe = s->res.text_len;
        if (!hit)
            safe -= eng_held_back(s->res.text, s->res.text_len, s->gp.stop, s->gp.n_stop);
        /* after a preemption, text up to emitted_before was streamed already */
        size_t start = s->emitted > s->emitted_before ? s->emitted : s->emitted_before;
        if (s->emit && safe > start) {
            if (!s->emit(s->ud, s->res.text + start, safe - start)) {
                s->emitted = safe;
                s->res.reason = GEN_STOP_CANCELLED;
                return true;
            }
        }
        if (safe > s->emitted)
            s->emitted = safe;
        if (hit)
            return true;
    }
    if (s->res.n_ids >= s->gp.max_tokens) {
        s->res.reason = GEN_STOP_MAX_TOKENS;
        return true;
    }
    s->has_pending = true;
    return false;
}

int engine_step(struct engine *e, struct ica_error *err) {
    /* cancellations */
    for (uint32_t i = 0; i < e->n_seqs;) {
        if (e->seqs[i]->cancelled) {
            e->seqs[i]->res.reason = GEN_STOP_CANCELLED;
            finish(e, i, NULL);
        } else {
            i++;
        }
    }
    /* admissions, in submission order */
    uint32_t running = 0;
    for (uint32_t i = 0; i < e->n_seqs; i++)
        running += e->seqs[i]->state == SEQ_RUNNING;
    for (uint32_t i = 0; i < e->n_seqs && running < e->p.n_seq_max;) {
        struct eng_seq *s = e->seqs[i];
        if (s->state != SEQ_QUEUED) {
            i++;
            continue;
        }
        struct ica_error fail = {0};
        if (!admit(e, s, &fail)) {
            i++;
            continue;
        }
        if (fail.code != ICA_OK) {
            finish(e, i, &fail);
            continue;
        }
        running++;
        i++;
    }
    /* the batch: decode tokens first, then prompt chunks */
    const uint32_t B = e->p.n_batch;
    uint32_t n = 0, nv = 0, n_out = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t i = 0; i < e->n_seqs && n < B; i++) {
            struct eng_seq *s = e->seqs[i];
            if (s->state != SEQ_RUNNING)
                continue;
            const bool decode = s->has_pending;
            if ((pass == 0) != decode || (!decode && s->n_done >= s->n_prompt))
                continue;
            uint32_t cnt = decode ? 1 : s->n_prompt - s->n_done;
            if (cnt > B - n)
                cnt = B - n;
            const bool completes = decode || s->n_done + cnt == s->n_prompt;
            if (completes && n_out == e->max_out)
                continue;
            struct ica_error re = {0};
            int rc = kv_seq_reserve(s->kv, s->n_done + cnt - kv_seq_len(s->kv), &re);
            if (rc == ICA_ERR_NOMEM)
                continue; /* wait for memory; see the preemption below */
            if (rc != ICA_OK) {
                finish(e, i, &re);
                i--;
                continue;
            }
            e->views[nv] = (struct model_kv_view){view_k, view_v, s, view_rows};
            e->vseq[nv] = s;
            for (uint32_t k = 0; k < cnt; k++, n++) {
                e->b_tok[n] = s->toks[s->n_done + k];
                e->b_seq[n] = nv;
                e->b_pos[n] = s->n_done + k;
                e->b_dec[n] = decode;
                e->b_out[n] = completes && k == cnt - 1;
            }
            n_out += completes;
            nv++;
        }
    }
    if (n == 0) {
        /* Nothing could run: running sequences wait for KV memory. Preempt the
         * most recently admitted one so that the others can go on. */
        for (uint32_t i = e->n_seqs; i-- > 0;)
            if (e->seqs[i]->state == SEQ_RUNNING) {
                if (running == 1)
                    break;
                preempt(e, e->seqs[i]);
                return ICA_OK;
            }
        if (running == 1) {
            /* First drop every cached prefix nobody uses, then retry once. */
            if (!e->cleared) {
                kv_cache_clear(e->kv);
                e->cleared = true;
                return ICA_OK;
            }
            for (uint32_t i = 0; i < e->n_seqs; i++)
                if (e->seqs[i]->state == SEQ_RUNNING) {
                    struct ica_error fe;
                    ica_seterr(&fe, ICA_ERR_RANGE,
                               "the KV cache budget cannot hold this sequence (raise --kv-mem)");
                    finish(e, i, &fe);
                    break;
                }
        }
        return ICA_OK;
    }
    e->cleared = false;
    const struct model_batch batch = {n, e->b_tok, e->b_seq, e->b_pos, e->b_out, e->b_dec};
    const double t0 = eng_now();
    int rc = model_forward(e->ctx, e->views, nv, &batch, e->logits, err);
    const double dt = eng_now() - t0;
    e->st.t_forward_s += dt;
    e->st.steps++;
    if (n == nv && e->b_dec[0] && e->b_dec[n - 1]) { /* decode tokens come first */
        e->st.decode_steps++;
        e->st.decode_step_tokens += n;
        e->st.t_decode_steps_s += dt;
    }
    if (rc != ICA_OK) {
        for (uint32_t v = 0; v < nv; v++)
            for (uint32_t i = 0; i < e->n_seqs; i++)
                if (e->seqs[i] == e->vseq[v]) {
                    finish(e, i, err);
                    break;
                }
        return rc;
    }
    /* advance every sequence of the batch, then handle its output row */
    uint32_t row = 0;
    for (uint32_t v = 0, t = 0; v < nv; v++) {
        struct eng_seq *s = e->vseq[v];
        uint32_t cnt = 0;
        bool has_out = false;
        while (t < n && e->b_seq[t] == v) {
            has_out |= e->b_out[t];
            cnt++;
            t++;
        }
        const bool was_prefill = !s->has_pending;
        s->n_done += cnt;
        s->has_pending = false;
        if (was_prefill) {
            const int crc = kv_seq_commit(s->kv, s->toks, s->n_done, NULL);
            (void)crc;
        }
        struct ica_error fail = {0};
        bool fin = false;
        if (has_out)
            fin = after_logits(e, s, e->logits + (size_t)row++ * e->V, &fail);
        if (fin || s->cancelled) {
            if (s->cancelled)
                s->res.reason = GEN_STOP_CANCELLED;
            for (uint32_t i = 0; i < e->n_seqs; i++)
                if (e->seqs[i] == s) {
                    finish(e, i, fail.code != ICA_OK ? &fail : NULL);
                    break;
                }
        }
    }
    return ICA_OK;
}

int engine_run(struct engine *e, struct ica_error *err) {
    while (e->n_seqs) {
        int rc = engine_step(e, err);
        if (rc != ICA_OK)
            return rc;
    }
    return ICA_OK;
}
