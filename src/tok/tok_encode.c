/* Tokenize / detokenize (llama_vocab::impl::tokenize, detokenize). */
#include "tok_int.h"

#include <stdlib.h>
#include <string.h>

/* ---- output id list ---- */
struct ids {
    int32_t *v;
    size_t n, cap;
    bool oom;
};

static void put(struct ids *o, int32_t id) {
    if (o->oom)
        return;
    if (o->n == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 256;
        int32_t *nv = realloc(o->v, nc * sizeof *nv);
        if (!nv) {
            o->oom = true;
            return;
        }
        o->v = nv;
        o->cap = nc;
    }
    o->v[o->n++] = id;
}

/* ---- merge work: symbols and a binary heap of candidate bigrams ---- */
struct sym {
    int32_t prev, next;
    uint32_t off, n; /* bytes in the session text */
    int32_t sid;     /* BPE: string id (token or merge part), -1 */
};

struct bigram {
    int32_t left, right;
    float score;  /* SPM: higher first */
    int32_t rank; /* BPE: lower first */
    int32_t result;
    uint32_t size;
};

struct work {
    struct sym *sym;
    size_t nsym, csym;
    struct bigram *heap;
    size_t nheap, cheap;
    char *buf; /* session text */
    size_t nbuf, cbuf;
    bool oom;
    bool spm;
};

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap)
        return true;
    size_t nc = *cap ? *cap : 64;
    while (nc < need)
        nc *= 2;
    void *np = realloc(*p, nc * elem);
    if (!np)
        return false;
    *p = np;
    *cap = nc;
    return true;
}

/* a before b in pop order */
static inline bool before(const struct work *w, const struct bigram *a, const struct bigram *b) {
    if (w->spm) {
        if (a->score != b->score)
            return a->score > b->score;
    } else if (a->rank != b->rank) {
        return a->rank < b->rank;
    }
    return a->left < b->left;
}

static void heap_push(struct work *w, const struct bigram *b) {
    if (!grow((void **)&w->heap, &w->cheap, w->nheap + 1, sizeof *w->heap)) {
        w->oom = true;
        return;
    }
    size_t i = w->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(w, b, &w->heap[p]))
            break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = *b;
}

static struct bigram heap_pop(struct work *w) {
    struct bigram top = w->heap[0];
    struct bigram last = w->heap[--w->nheap];
    size_t i = 0, n = w->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && before(w, &w->heap[c + 1], &w->heap[c]))
            c++;
        if (!before(w, &w->heap[c], &last))
            break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n)
        w->heap[i] = last;
    return top;
}

static void emit_bytes(const struct tok_vocab *v, const char *s, size_t n, struct ids *o) {
    for (size_t j = 0; j < n; j++) {
        int32_t id = v->byte_tok[(unsigned char)s[j]];
        if (id >= 0)
            put(o, id);
        else if (v->model == TOK_MODEL_SPM && v->unk >= 0)
            put(o, v->unk); /* llama.cpp would throw; never crash */
    }
}

/* ---- SentencePiece ---- */
static void spm_try(const struct tok_vocab *v, struct work *w, int32_t l, int32_t r) {
    if (l < 0 || r < 0)
        return;
    const struct sym *a = &w->sym[l], *b = &w->sym[r];
    uint32_t n = a->n + b->n;
    if (n > v->max_token_len)
        return;
    int32_t id = tok_lookup(v, w->buf + a->off, n);
    if (id < 0 || id >= v->n_tokens)
        return;
    struct bigram bg = {l, r, v->tok[id].score, 0, id, n};
    heap_push(w, &bg);
}

static void spm_session(const struct tok_vocab *v, struct work *w, struct ids *o) {
    const char *t = w->buf;
    size_t len = w->nbuf;
    w->nsym = 0;
    w->nheap = 0;
    for (size_t off = 0; off < len;) {
        size_t cl = tok_utf8_len((unsigned char)t[off]);
        if (cl > len - off)
            cl = len - off;
        if (!grow((void **)&w->sym, &w->csym, w->nsym + 1, sizeof *w->sym)) {
            w->oom = true;
            return;
        }
        int32_t i = (int32_t)w->nsym++;
        w->sym[i] =
            (struct sym){i - 1, off + cl == len ? -1 : i + 1, (uint32_t)off, (uint32_t)cl, -1};
        off += cl;
    }
    for (size_t i = 1; i < w->nsym; i++)
        spm_try(v, w, (int32_t)i - 1, (int32_t)i);
    while (w->nheap && !w->oom) {
        struct bigram bg = heap_pop(w);
        struct sym *a = &w->sym[bg.left], *b = &w->sym[bg.right];
        if (a->n == 0 || b->n == 0 || a->n + b->n != bg.size)
            continue;
        a->n += b->n;
        b->n = 0;
        a->next = b->next;
        if (b->next >= 0)
            w->sym[b->next].prev = bg.left;
        spm_try(v, w, a->prev, bg.left);
        spm_try(v, w, bg.left, a->next);
    }
    if (w->oom)
        return;
    for (int32_t i = w->nsym ? 0 : -1; i != -1; i = w->sym[i].next) {
        const struct sym *s = &w->sym[i];
        int32_t id = tok_lookup(v, t + s->off, s->n);
        if (id >= 0 && id < v->n_tokens)
            put(o, id);
        else
            emit_bytes(v, t + s->off, s->n, o);
    }
}

static void spm_fragment(const struct tok_vocab *v, struct work *w, const char *s, size_t n,
                         bool prefix, struct ids *o) {
    /* worst case every byte is a space -> 3 bytes */
    if (!grow((void **)&w->buf, &w->cbuf, 3 * n + 4, 1)) {
        w->oom = true;
        return;
    }
    size_t k = 0;
    if (prefix) {
        memcpy(w->buf, "\xe2\x96\x81", 3);
        k = 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(w->buf + k, "\xe2\x96\x81", 3);
            k += 3;
        } else {
            w->buf[k++] = s[i];
        }
    }
    w->nbuf = k;
    spm_session(v, w, o);
}

/* ---- byte-level BPE ---- */
static void bpe_try(const struct tok_vocab *v, struct work *w, int32_t l, int32_t r) {
    if (l < 0 || r < 0)
        return;
    const struct sym *a = &w->sym[l], *b = &w->sym[r];
    if (a->sid < 0 || b->sid < 0)
        return;
    uint64_t key = ((uint64_t)(uint32_t)(a->sid + 1) << 32) | (uint32_t)(b->sid + 1);
    size_t h = tok_hash(&key, sizeof key) & v->merge_mask;
    for (;;) {
        const struct tok_merge *m = &v->merges[h];
        if (!m->key)
            return;
        if (m->key == key) {
            struct bigram bg = {l, r, 0.0f, m->rank, m->result, a->n + b->n};
            heap_push(w, &bg);
            return;
        }
        h = (h + 1) & v->merge_mask;
    }
}

/* one pre-tokenized word: cps[0..n) */
static void bpe_word(const struct tok_vocab *v, struct work *w, const uint32_t *cps, size_t n,
                     struct ids *o) {
    /* UTF-8 (as llama.cpp re-encodes) then GPT-2 byte encoding */
    char u8[4];
    w->nsym = 0;
    w->nheap = 0;
    w->nbuf = 0;
    for (size_t i = 0; i < n; i++) {
        size_t ul = tok_encode_utf8(cps[i], u8);
        for (size_t k = 0; k < ul; k++) {
            unsigned char b = (unsigned char)u8[k];
            size_t bl = v->byte_enc_len[b];
            if (!grow((void **)&w->buf, &w->cbuf, w->nbuf + bl + 1, 1) ||
                !grow((void **)&w->sym, &w->csym, w->nsym + 1, sizeof *w->sym)) {
                w->oom = true;
                return;
            }
            int32_t id = (int32_t)w->nsym++;
            w->sym[id] = (struct sym){id - 1, id + 1, (uint32_t)w->nbuf, (uint32_t)bl, -1};
            memcpy(w->buf + w->nbuf, v->byte_enc[b], bl);
            w->nbuf += bl;
        }
    }
    if (!w->nsym)
        return;
    w->sym[w->nsym - 1].next = -1;
    if (v->ignore_merges) {
        int32_t id = tok_lookup(v, w->buf, w->nbuf);
        if (id >= 0 && id < v->n_tokens) {
            put(o, id);
            return;
        }
    }
    for (size_t i = 0; i < w->nsym; i++)
        w->sym[i].sid = tok_lookup(v, w->buf + w->sym[i].off, w->sym[i].n);
    for (size_t i = 1; i < w->nsym; i++)
        bpe_try(v, w, (int32_t)i - 1, (int32_t)i);
    while (w->nheap && !w->oom) {
        struct bigram bg = heap_pop(w);
        struct sym *a = &w->sym[bg.left], *b = &w->sym[bg.right];
        if (a->n == 0 || b->n == 0 || a->n + b->n != bg.size)
            continue;
        a->n += b->n;
        a->sid = bg.result;
        b->n = 0;
        a->next = b->next;
        if (b->next >= 0)
            w->sym[b->next].prev = bg.left;
        bpe_try(v, w, a->prev, bg.left);
        bpe_try(v, w, bg.left, a->next);
    }
    for (int32_t i = 0; i != -1; i = w->sym[i].next) {
        const struct sym *s = &w->sym[i];
        if (s->sid >= 0 && s->sid < v->n_tokens)
            put(o, s->sid);
        else
            emit_bytes(v, w->buf + s->off, s->n, o);
    }
}

static int bpe_fragment(const struct tok_vocab *v, struct work *w, const char *s, size_t n,
                        struct ids *o) {
    uint32_t *cps = malloc((n + 1) * sizeof *cps);
    if (!cps)
        return ICA_ERR_NOMEM;
    size_t nc = tok_decode_utf8(s, n, cps);
    size_t *lens = NULL, nl = 0;
    int rc = tok_pretok_split(&v->pretok, cps, nc, &lens, &nl);
    size_t at = 0;
    for (size_t i = 0; !rc && i < nl && !w->oom && !o->oom; i++) {
        bpe_word(v, w, cps + at, lens[i], o);
        at += lens[i];
    }
    free(lens);
    free(cps);
    return rc ? rc : (w->oom || o->oom) ? ICA_ERR_NOMEM : ICA_OK;
}

/* ---- special-token partition ----
 * llama.cpp takes the special tokens longest first and, for each, splits
 * every remaining raw fragment at its leftmost non-overlapping occurrences.
 * Equivalently: an occurrence of token k is taken iff it lies inside text
 * not yet taken by an earlier token and after the previous taken
 * occurrence of k. We find candidate occurrences in one pass over the text
 * (first-byte filter + hash lookup per special-token length), then apply
 * that rule in priority order. */
struct occ {
    int32_t prio; /* index in v->special */
    uint32_t pad;
    size_t pos;
};

static int cmp_occ(const void *a, const void *b) {
    const struct occ *x = a, *y = b;
    if (x->prio != y->prio)
        return x->prio < y->prio ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

struct frag {
    int32_t tok; /* -1: raw text */
    size_t off, len;
};

static int partition(const struct tok_vocab *v, const char *s, size_t n, bool parse_special,
                     struct frag **out, size_t *nout) {
    *out = NULL;
    *nout = 0;
    /* which special tokens participate; first bytes; lengths */
    uint8_t first[256] = {0};
    int32_t *prio_of = NULL; /* token id -> priority, for the candidates */
    uint32_t lens[64];
    int nlens = 0;
    bool any = false, fast = true;
    for (int32_t k = 0; k < v->n_special; k++) {
        const struct tok_token *t = &v->tok[v->special[k]];
        if (!parse_special && (t->attr & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN)))
            continue;
        if (t->len == 0 || t->len > n)
            continue;
        any = true;
        first[(unsigned char)t->text[0]] = 1;
        bool have = false;
        for (int i = 0; i < nlens; i++)
            have |= lens[i] == t->len;
        if (!have && nlens < 64)
            lens[nlens++] = t->len;
        else if (!have)
            fast = false;
    }
    struct occ *oc = NULL;
    size_t noc = 0, coc = 0;
    if (any && fast) {
        prio_of = malloc((size_t)v->n_tokens * sizeof *prio_of);
        if (!prio_of)
            return ICA_ERR_NOMEM;
        for (int32_t k = 0; k < v->n_tokens; k++)
            prio_of[k] = -1;
        for (int32_t k = v->n_special - 1; k >= 0; k--) {
            const struct tok_token *t = &v->tok[v->special[k]];
            if (!parse_special && (t->attr & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN)))
                continue;
            prio_of[v->special[k]] = k;
        }
        for (size_t p = 0; p < n; p++) {
            if (!first[(unsigned char)s[p]])
                continue;
            for (int i = 0; i < nlens; i++) {
                if (lens[i] > n - p)
                    continue;
                int32_t id = tok_lookup(v, s + p, lens[i]);
                if (id < 0 || id >= v->n_tokens || prio_of[id] < 0)
                    continue;
                /* equal texts: the map holds the last id; take the first
                 * one in priority order, as llama.cpp's scan would */
                int32_t pr = prio_of[id];
                for (int32_t k = 0; k < pr; k++) {
                    int32_t o2 = v->special[k];
                    if (v->tok[o2].len == lens[i] && prio_of[o2] >= 0 &&
                        !memcmp(v->tok[o2].text, s + p, lens[i])) {
                        pr = k;
                        break;
                    }
                }
                if (!grow((void **)&oc, &coc, noc + 1, sizeof *oc)) {
                    free(prio_of);
                    free(oc);
                    return ICA_ERR_NOMEM;
                }
                oc[noc++] = (struct occ){pr, 0, p};
            }
        }
        free(prio_of);
    } else if (any) {
        /* generic path (many distinct lengths): memmem per token */
        for (int32_t k = 0; k < v->n_special; k++) {
            const struct tok_token *t = &v->tok[v->special[k]];
            if (!parse_special && (t->attr & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN)))
                continue;
            if (t->len == 0 || t->len > n)
                continue;
            for (const char *q = s; (q = tok_memmem(q, n - (size_t)(q - s), t->text, t->len));
                 q++) {
                if (!grow((void **)&oc, &coc, noc + 1, sizeof *oc)) {
                    free(oc);
                    return ICA_ERR_NOMEM;
                }
                oc[noc++] = (struct occ){k, 0, (size_t)(q - s)};
            }
        }
    }
    /* apply in priority order */
    struct occ *taken = NULL;
    size_t ntaken = 0;
    uint8_t *cover = NULL;
    if (noc) {
        qsort(oc, noc, sizeof *oc, cmp_occ);
        cover = calloc(n, 1);
        taken = malloc(noc * sizeof *taken);
        if (!cover || !taken) {
            free(oc);
            free(cover);
            free(taken);
            return ICA_ERR_NOMEM;
        }
        size_t last_end = 0;
        int32_t last_prio = -1;
        for (size_t i = 0; i < noc; i++) {
            const struct tok_token *t = &v->tok[v->special[oc[i].prio]];
            size_t p = oc[i].pos, e = p + t->len;
            if (oc[i].prio != last_prio) {
                last_prio = oc[i].prio;
                last_end = 0;
            }
            if (p < last_end)
                continue;
            bool free_span = true;
            for (size_t q = p; q < e && free_span; q++)
                free_span = !cover[q];
            if (!free_span)
                continue;
            memset(cover + p, 1, t->len);
            last_end = e;
            taken[ntaken++] = oc[i];
        }
        free(cover);
        /* by position */
        for (size_t i = 0; i < ntaken; i++)
            taken[i].prio = v->special[taken[i].prio]; /* now the token id */
        qsort(taken, ntaken, sizeof *taken, cmp_occ);
        /* cmp_occ sorts by id first: re-sort by position */
        for (size_t i = 1; i < ntaken; i++) {
            struct occ x = taken[i];
            size_t j = i;
            while (j > 0 && taken[j - 1].pos > x.pos) {
                taken[j] = taken[j - 1];
                j--;
            }
            taken[j] = x;
        }
    }
    free(oc);
    struct frag *fr = malloc((2 * ntaken + 1) * sizeof *fr);
    if (!fr) {
        free(taken);
        return ICA_ERR_NOMEM;
    }
    size_t nf = 0, at = 0;
    for (size_t i = 0; i < ntaken; i++) {
        if (taken[i].pos > at)
            fr[nf++] = (struct frag){-1, at, taken[i].pos - at};
        fr[nf++] = (struct frag){taken[i].prio, taken[i].pos, 0};
        at = taken[i].pos + v->tok[taken[i].prio].len;
    }
    if (at < n)
        fr[nf++] = (struct frag){-1, at, n - at};
    free(taken);
    *out = fr;
    *nout = nf;
    return ICA_OK;
}

int tok_tokenize(const struct tok_vocab *v, const char *text, size_t len, bool add_special,
                 bool parse_special, int32_t **ids_out, size_t *n_out, struct ica_error *err) {
    *ids_out = NULL;
    *n_out = 0;
    if (!v || (!text && len))
        return ica_seterr(err, ICA_ERR_ARG, "tok_tokenize: NULL argument");
    struct frag *fr = NULL;
    size_t nf = 0;
    if (len && partition(v, text, len, parse_special, &fr, &nf))
        return ica_seterr(err, ICA_ERR_NOMEM, "tok_tokenize: out of memory (%zu bytes)", len);
    struct ids o = {0};
    struct work w = {0};
    w.spm = v->model == TOK_MODEL_SPM;
    int rc = ICA_OK;
    if (add_special && v->add_bos)
        put(&o, v->bos);
    bool prev_special = true;
    for (size_t i = 0; i < nf && !rc && !o.oom && !w.oom; i++) {
        if (fr[i].tok >= 0) {
            put(&o, fr[i].tok);
            prev_special = true;
            continue;
        }
        if (w.spm) {
            spm_fragment(v, &w, text + fr[i].off, fr[i].len, v->add_space_prefix && prev_special,
                         &o);
            prev_special = false;
        } else {
            rc = bpe_fragment(v, &w, text + fr[i].off, fr[i].len, &o);
        }
    }
    if (add_special && v->add_eos)
        put(&o, v->eos);
    free(fr);
    free(w.sym);
    free(w.heap);
    free(w.buf);
    if (rc || o.oom || w.oom) {
        free(o.v);
        return ica_seterr(err, ICA_ERR_NOMEM, "tok_tokenize: out of memory (%zu bytes)", len);
    }
    *ids_out = o.v;
    *n_out = o.n;
    return ICA_OK;
}

/* ---- detokenize ---- */
int tok_detokenize(const struct tok_vocab *v, const int32_t *ids, size_t n, bool remove_special,
                   bool unparse_special, char **out, size_t *len_out, struct ica_error *err) {
    *out = NULL;
    if (len_out)
        *len_out = 0;
    if (!v || (!ids && n))
        return ica_seterr(err, ICA_ERR_ARG, "tok_detokenize: NULL argument");
    bool remove_space = v->add_space_prefix;
    if (remove_special && v->add_bos && n > 0 && ids[0] == v->bos) {
        remove_space = false;
        ids++;
        n--;
    }
    if (remove_special && v->add_eos && n > 0 && ids[n - 1] == v->eos)
        n--;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= v->n_tokens)
            return ica_seterr(err, ICA_ERR_RANGE,
                              "tok_detokenize: token id %d out of range [0, %d)", ids[i],
                              v->n_tokens);
        total += v->piece_len[ids[i]];
    }
    char *t = malloc(total + 1);
    if (!t)
        return ica_seterr(err, ICA_ERR_NOMEM, "tok_detokenize: out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t r =
            tok_token_to_piece(v, ids[i], unparse_special, remove_space ? 1 : 0, t + k, total - k);
        remove_space = false;
        if (r > 0)
            k += (size_t)r;
    }
    if (v->clean_spaces && k > 0) {
        /* " ?", " !", " .", " ," lose the space */
        size_t m = 1;
        for (size_t i = 1; i < k; i++) {
            char x = t[i];
            if (t[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ','))
                m--;
            t[m++] = x;
        }
        k = m;
        /* " ' " -> "'" */
        m = 1;
        for (size_t i = 1; i < k; i++) {
            char x = t[i];
            if (x == '\'' && i + 1 < k && t[i - 1] == ' ' && t[i + 1] == ' ') {
                m--;
                t[++i] = '\0';
            }
            t[m++] = x;
        }
        k = m;
        /* " 's", " 'm", " 're", " 've" lose the space */
        m = 1;
        for (size_t i = 1; i < k; i++) {
            char x = t[i];
            if (t[i - 1] == ' ' && x == '\'' && i + 1 < k) {
                char x1 = t[i + 1];
                if (x1 == 's' || x1 == 'm')
                    m--;
                else if (x1 != 't' && x1 != 'd' && i + 2 < k) {
                    char x2 = t[i + 2];
                    if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e'))
                        m--;
                }
            }
            t[m++] = x;
        }
        k = m;
    }
    t[k] = 0;
    *out = t;
    if (len_out)
        *len_out = k;
    return ICA_OK;
}
