/* kv: block pool, radix tree of token prefixes, sequences (see kv.h). */
#include "kv_int.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ==== Config ==== */

struct kv_config kv_default_config(void) {
    struct kv_config c;
    memset(&c, 0, sizeof c);
    c.block_tokens = 32;
    c.elem_type = ICA_F16;
    return c;
}

static size_t elem_size(enum ica_dtype t) {
    return t == ICA_F16 ? 2 : t == ICA_F32 ? 4 : 0;
}

/* Products of positive ints checked against SIZE_MAX; 0 on overflow. */
static size_t mul_ok(size_t a, size_t b) {
    if (a && b > SIZE_MAX / a)
        return 0;
    return a * b;
}

size_t kv_block_bytes(const struct kv_config *cfg) {
    if (!cfg || cfg->n_layer <= 0 || cfg->n_head_kv <= 0 || cfg->head_dim <= 0 ||
        cfg->head_dim_v <= 0 || cfg->block_tokens < 0 || !elem_size(cfg->elem_type))
        return 0;
    size_t bt = cfg->block_tokens ? (size_t)cfg->block_tokens : 32;
    size_t row = mul_ok((size_t)cfg->n_head_kv,
                        (size_t)cfg->head_dim + (size_t)cfg->head_dim_v); /* K + V elements */
    size_t n = mul_ok(mul_ok(mul_ok((size_t)cfg->n_layer, bt), row), elem_size(cfg->elem_type));
    return n;
}

/* With a budget, every block the cache may ever hold is reserved up front
 * (block records, tables and the data as one address range, mapped without
 * reserving memory: pages count only once written), so that taking a block
 * while decoding never calls the allocator. */
static int arena_new(struct kv_cache *c) {
    const size_t n = c->blocks_max, sz = (c->block_bytes + 63) / 64 * 64;
    if (n > SIZE_MAX / sz)
        return ICA_ERR_NOMEM;
    c->arena_bytes = n * sz;
    void *mem = mmap(NULL, c->arena_bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    c->arena_rec = calloc(n, sizeof *c->arena_rec);
    c->blocks = malloc(n * sizeof *c->blocks);
    c->freel = malloc(n * sizeof *c->freel);
    if (mem == MAP_FAILED || !c->arena_rec || !c->blocks || !c->freel) {
        if (mem != MAP_FAILED)
            munmap(mem, c->arena_bytes);
        free(c->arena_rec);
        free(c->blocks);
        free(c->freel);
        c->arena_rec = NULL;
        c->blocks = c->freel = NULL;
        return ICA_ERR_NOMEM;
    }
    c->arena = mem;
    c->cap_blocks = n;
    for (size_t i = 0; i < n; i++)
        c->arena_rec[i].data = (uint8_t *)mem + i * sz;
    return ICA_OK;
}

int kv_cache_new(const struct kv_config *cfg, struct kv_cache **out, struct ica_error *err) {
    if (!out || !cfg)
        return ica_seterr(err, ICA_ERR_ARG, "kv_cache_new: NULL argument");
    *out = NULL;
    if (cfg->n_layer <= 0 || cfg->n_head_kv <= 0 || cfg->head_dim <= 0 || cfg->head_dim_v <= 0)
        return ica_seterr(err, ICA_ERR_ARG,
                          "kv config: n_layer %d, n_head_kv %d, head_dim %d, head_dim_v %d must "
                          "all be positive",
                          cfg->n_layer, cfg->n_head_kv, cfg->head_dim, cfg->head_dim_v);
    if (cfg->block_tokens < 0 || cfg->block_tokens > 65536)
        return ica_seterr(err, ICA_ERR_ARG, "kv config: block_tokens %d not in 0..65536",
                          cfg->block_tokens);
    if (!elem_size(cfg->elem_type))
        return ica_seterr(err, ICA_ERR_UNSUPPORTED,
                          "kv config: elem_type %d (KV elements are F16 or F32)",
                          (int)cfg->elem_type);
    size_t bb = kv_block_bytes(cfg);
    if (!bb)
        return ica_seterr(err, ICA_ERR_RANGE, "kv config: block size overflows");
    if (cfg->mem_budget && cfg->mem_budget < bb)
        return ica_seterr(err, ICA_ERR_RANGE,
                          "KV memory budget of %zu bytes is smaller than one block (%zu bytes: "
                          "%d tokens of %d layers)",
                          cfg->mem_budget, bb, cfg->block_tokens ? cfg->block_tokens : 32,
                          cfg->n_layer);
    struct kv_cache *c = calloc(1, sizeof *c);
    if (!c)
        return ica_seterr(err, ICA_ERR_NOMEM, "kv cache: out of memory");
    c->cfg = *cfg;
    if (!c->cfg.block_tokens)
        c->cfg.block_tokens = 32;
    c->B = (size_t)c->cfg.block_tokens;
    c->esz = elem_size(cfg->elem_type);
    c->kdim = (size_t)cfg->n_head_kv * (size_t)cfg->head_dim;
    c->vdim = (size_t)cfg->n_head_kv * (size_t)cfg->head_dim_v;
    c->block_bytes = bb;
    c->v_off = (size_t)cfg->n_layer * c->B * c->kdim * c->esz;
    c->blocks_max = cfg->mem_budget ? cfg->mem_budget / bb : 0;
    if (c->blocks_max && arena_new(c) != ICA_OK) {
        const size_t n = c->blocks_max;
        free(c);
        return ica_seterr(err, ICA_ERR_NOMEM,
                          "kv cache: cannot reserve %zu blocks of %zu bytes (KV memory budget)", n,
                          bb);
    }
    *out = c;
    return ICA_OK;
}

const struct kv_config *kv_cache_config(const struct kv_cache *c) {
    return c ? &c->cfg : NULL;
}

/* ==== Blocks ==== */

static void block_unref(struct kv_cache *c, struct kv_block *b) {
    if (--b->refs == 0) {
        b->fill = 0;
        c->freel[c->n_free++] = b;
    }
}

/* Removes leaf n from the tree and drops its block references. */
static void node_evict(struct kv_cache *c, struct kv_node *n) {
    struct kv_node *p = n->parent;
    for (size_t i = 0; i < p->n_child; i++) {
        if (p->child[i] == n) {
            p->child[i] = p->child[--p->n_child];
            break;
        }
    }
    size_t nb = n->len ? (n->start + n->len - 1) / c->B - n->start / c->B + 1 : 0;
    for (size_t i = 0; i < nb; i++) {
        n->blk[i]->tree_refs--;
        if (n->blk[i]->refs == 1)
            c->evicted_blocks++;
        block_unref(c, n->blk[i]);
    }
    if (n->prev)
        n->prev->next = n->next;
    else
        c->nodes = n->next;
    if (n->next)
        n->next->prev = n->prev;
    c->n_nodes--;
    c->tree_tokens -= n->len;
    c->evicted_nodes++;
    free(n->child);
    free(n->tok);
    free(n->blk);
    free(n);
}

static size_t node_nblk(const struct kv_cache *c, const struct kv_node *n) {
    return n->len ? (n->start + n->len - 1) / c->B - n->start / c->B + 1 : 0;
}

/* A leaf whose blocks only the tree references: evicting it frees memory and
 * no live sequence loses anything. */
static bool node_evictable(const struct kv_cache *c, const struct kv_node *n) {
    if (n->n_child)
        return false;
    size_t nb = node_nblk(c, n);
    for (size_t i = 0; i < nb; i++)
        if (n->blk[i]->refs != n->blk[i]->tree_refs)
            return false;
    return true;
}

/* Evicts the least recently used evictable leaf; false when there is none. */
static bool evict_one(struct kv_cache *c) {
    struct kv_node *best = NULL;
    for (struct kv_node *n = c->nodes; n; n = n->next)
        if ((!best || n->last_use < best->last_use) && node_evictable(c, n))
            best = n;
    if (!best)
        return false;
    node_evict(c, best);
    return true;
}

void kv_cache_clear(struct kv_cache *c) {
    if (c)
        while (evict_one(c)) {
        }
}

static size_t blocks_held_by_seqs(const struct kv_cache *c) {
    size_t n = 0;
    for (size_t i = 0; i < c->n_blocks; i++)
        n += c->blocks[i]->refs > c->blocks[i]->tree_refs;
    return n;
}

/* A block with refs = 1 (the caller's), fill 0: from the free list, new
 * memory within the budget, or evicted LRU cache. */
static int block_alloc(struct kv_cache *c, struct kv_block **out, struct ica_error *err) {
    for (;;) {
        if (c->n_free) {
            struct kv_block *b = c->freel[--c->n_free];
            b->refs = 1;
            b->tree_refs = 0;
            b->fill = 0;
            *out = b;
            return ICA_OK;
        }
        if (!c->blocks_max || c->n_blocks < c->blocks_max)
            break;
        if (!evict_one(c))
            return ica_seterr(err, ICA_ERR_NOMEM,
                              "KV cache full: %zu of its %zu blocks (%zu bytes each, budget %zu "
                              "bytes) are held by live sequences",
                              blocks_held_by_seqs(c), c->blocks_max, c->block_bytes,
                              c->cfg.mem_budget);
    }
    if (c->arena) {
        struct kv_block *b = &c->arena_rec[c->n_blocks];
        b->refs = 1;
        b->tree_refs = 0;
        b->fill = 0;
        c->blocks[c->n_blocks++] = b;
        *out = b;
        return ICA_OK;
    }
    if (c->n_blocks == c->cap_blocks) {
        size_t cap = c->cap_blocks ? c->cap_blocks * 2 : 64;
        struct kv_block **nb = realloc(c->blocks, cap * sizeof *nb);
        if (!nb)
            return ica_seterr(err, ICA_ERR_NOMEM, "kv cache: out of memory (block table)");
        c->blocks = nb;
        struct kv_block **nf = realloc(c->freel, cap * sizeof *nf);
        if (!nf)
            return ica_seterr(err, ICA_ERR_NOMEM, "kv cache: out of memory (free list)");
        c->freel = nf;
        c->cap_blocks = cap;
    }
    struct kv_block *b = calloc(1, sizeof *b);
    void *mem = NULL;
    size_t sz = (c->block_bytes + 63) / 64 * 64;
    if (!b || posix_memalign(&mem, 64, sz) != 0) {
        free(b);
        return ica_seterr(err, ICA_ERR_NOMEM, "kv cache: out of memory (block of %zu bytes)",
                          c->block_bytes);
    }
    b->data = mem;
    b->refs = 1;
    c->blocks[c->n_blocks++] = b;
    *out = b;
    return ICA_OK;
}

static void node_free_rec(struct kv_node *n) {
    for (size_t i = 0; i < n->n_child; i++)
        node_free_rec(n->child[i]);
    free(n->child);
    free(n->tok);
    free(n->blk);
    free(n);
}

void kv_cache_free(struct kv_cache *c) {
    if (!c)
        return;
    for (size_t i = 0; i < c->root.n_child; i++)
        node_free_rec(c->root.child[i]);
    free(c->root.child);
    if (c->arena) {
        munmap(c->arena, c->arena_bytes);
        free(c->arena_rec);
    } else {
        for (size_t i = 0; i < c->n_blocks; i++) {
            free(c->blocks[i]->data);
            free(c->blocks[i]);
        }
    }
    free(c->blocks);
    free(c->freel);
    free(c);
}

void kv_cache_stats(const struct kv_cache *c, struct kv_stats *st) {
    memset(st, 0, sizeof *st);
    if (!c)
        return;
    st->block_bytes = c->block_bytes;
    st->blocks_max = c->blocks_max;
    st->blocks_alloc = c->n_blocks;
    for (size_t i = 0; i < c->n_blocks; i++) {
        const struct kv_block *b = c->blocks[i];
        if (b->refs == 0)
            st->blocks_free++;
        else if (b->refs > b->tree_refs)
            st->blocks_in_use++;
        else
            st->blocks_cached++;
    }
    st->tree_nodes = c->n_nodes;
    st->tree_tokens = c->tree_tokens;
    st->tokens_requested = c->tokens_requested;
    st->tokens_hit = c->tokens_hit;
    st->evicted_nodes = c->evicted_nodes;
    st->evicted_blocks = c->evicted_blocks;
    st->cow_copies = c->cow_copies;
}

/* ==== Radix tree ==== */

static struct kv_node *find_child(const struct kv_node *n, int32_t t) {
    for (size_t i = 0; i < n->n_child; i++)
        if (n->child[i]->tok[0] == t)
            return n->child[i];
    return NULL;
}

static size_t common_len(const int32_t *a, const int32_t *b, size_t n) {
    size_t i = 0;
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

/* Walks the longest cached prefix of tokens[0..n). With tab, stores for each
 * block index the block of the deepest node covering part of it (borrowed);
 * with stamp, marks the path as used now. Returns the matched length. */
static size_t tree_match(const struct kv_cache *c, const int32_t *tokens, size_t n,
                         struct kv_block **tab, uint64_t stamp) {
    const struct kv_node *node = &c->root;
    size_t p = 0;
    while (p < n) {
        struct kv_node *ch = find_child(node, tokens[p]);
        if (!ch)
            break;
        size_t m = ch->len < n - p ? ch->len : n - p;
        size_t k = common_len(ch->tok, tokens + p, m);
        if (stamp)
            ch->last_use = stamp;
        if (tab)
            for (size_t bi = p / c->B; k && bi <= (p + k - 1) / c->B; bi++)
                tab[bi] = ch->blk[bi - ch->start / c->B];
        p += k;
        if (k < ch->len)
            break;
        node = ch;
    }
    return p;
}

size_t kv_cache_lookup(const struct kv_cache *c, const int32_t *tokens, size_t n) {
    if (!c || !tokens)
        return 0;
    return tree_match(c, tokens, n, NULL, 0);
}

static int add_child(struct kv_node *p, struct kv_node *ch) {
    if (p->n_child == p->cap_child) {
        size_t cap = p->cap_child ? p->cap_child * 2 : 4;
        struct kv_node **a = realloc(p->child, cap * sizeof *a);
        if (!a)
            return ICA_ERR_NOMEM;
        p->child = a;
        p->cap_child = cap;
    }
    p->child[p->n_child++] = ch;
    ch->parent = p;
    return ICA_OK;
}

static void list_add(struct kv_cache *c, struct kv_node *n) {
    n->prev = NULL;
    n->next = c->nodes;
    if (c->nodes)
        c->nodes->prev = n;
    c->nodes = n;
    c->n_nodes++;
    c->tree_tokens += n->len;
}

static void tree_ref(struct kv_block *b) {
    b->refs++;
    b->tree_refs++;
}

/* New node for positions [start, start+len) with ids tok, blocks from tab
 * (indexed by block index), under parent. */
static int node_new(struct kv_cache *c, struct kv_node *parent, const int32_t *tok, size_t start,
                    size_t len, struct kv_block **tab, uint64_t stamp) {
    struct kv_node *n = calloc(1, sizeof *n);
    size_t b0 = start / c->B, nb = (start + len - 1) / c->B - b0 + 1;
    if (!n)
        return ICA_ERR_NOMEM;
    n->tok = malloc(len * sizeof *n->tok);
    n->blk = malloc(nb * sizeof *n->blk);
    if (!n->tok || !n->blk || add_child(parent, n) != ICA_OK) {
        free(n->tok);
        free(n->blk);
        free(n);
        return ICA_ERR_NOMEM;
    }
    memcpy(n->tok, tok, len * sizeof *tok);
    n->start = start;
    n->len = len;
    n->last_use = stamp;
    for (size_t i = 0; i < nb; i++) {
        n->blk[i] = tab[b0 + i];
        tree_ref(n->blk[i]);
    }
    list_add(c, n);
    return ICA_OK;
}

/* Splits n after k tokens (0 < k < len): a new node takes [start, start+k)
 * and n keeps the rest as its only child. Returns the new node or NULL. */
static struct kv_node *node_split(struct kv_cache *c, struct kv_node *n, size_t k) {
    struct kv_node *m = calloc(1, sizeof *m);
    size_t B = c->B;
    size_t b0 = n->start / B;
    size_t mb = (n->start + k - 1) / B - b0 + 1; /* blocks of the first part */
    size_t rb0 = (n->start + k) / B;             /* first block of the rest */
    size_t rnb = (n->start + n->len - 1) / B - rb0 + 1;
    struct kv_node **kids = malloc(4 * sizeof *kids);
    if (!m || !kids)
        goto fail;
    m->tok = malloc(k * sizeof *m->tok);
    m->blk = malloc(mb * sizeof *m->blk);
    struct kv_block **rest = malloc(rnb * sizeof *rest);
    if (!m->tok || !m->blk || !rest) {
        free(rest);
        goto fail;
    }
    memcpy(m->tok, n->tok, k * sizeof *m->tok);
    memcpy(m->blk, n->blk, mb * sizeof *m->blk);
    memcpy(rest, n->blk + (rb0 - b0), rnb * sizeof *rest);
    if (rb0 < b0 + mb) /* the block at the split is shared by both parts */
        tree_ref(rest[0]);
    memmove(n->tok, n->tok + k, (n->len - k) * sizeof *n->tok);
    free(n->blk);
    n->blk = rest;
    m->start = n->start;
    m->len = k;
    m->last_use = n->last_use;
    struct kv_node *p = n->parent;
    for (size_t i = 0; i < p->n_child; i++)
        if (p->child[i] == n)
            p->child[i] = m;
    m->parent = p;
    m->child = kids;
    m->cap_child = 4;
    m->child[0] = n;
    m->n_child = 1;
    n->parent = m;
    n->start += k;
    n->len -= k;
    c->tree_tokens -= k; /* list_add adds m's k back */
    list_add(c, m);
    return m;
fail:
    if (m) {
        free(m->tok);
        free(m->blk);
    }
    free(m);
    free(kids);
    return NULL;
}

/* ==== Sequences ==== */

static int seq_grow_tab(struct kv_seq *s, size_t n) {
    if (n <= s->cap_tab)
        return ICA_OK;
    /* with a budget, room for the most blocks a sequence can hold, once */
    size_t cap = s->cap_tab ? s->cap_tab : s->c->blocks_max ? s->c->blocks_max : 16;
    while (cap < n)
        cap *= 2;
    struct kv_block **t = realloc(s->tab, cap * sizeof *t);
    if (!t)
        return ICA_ERR_NOMEM;
    s->tab = t;
    s->cap_tab = cap;
    return ICA_OK;
}

static int seq_set_tokens(struct kv_seq *s, const int32_t *tokens, size_t n) {
    if (n > s->cap_tok) {
        size_t cap = s->cap_tok ? s->cap_tok : 64;
        while (cap < n)
            cap *= 2;
        int32_t *t = realloc(s->tok, cap * sizeof *t);
        if (!t)
            return ICA_ERR_NOMEM;
        s->tok = t;
        s->cap_tok = cap;
    }
    if (n > s->n_tok)
        memcpy(s->tok + s->n_tok, tokens + s->n_tok, (n - s->n_tok) * sizeof *tokens);
    s->n_tok = n;
    return ICA_OK;
}

int kv_seq_new(struct kv_cache *c, const int32_t *tokens, size_t n, size_t max_reuse,
               struct kv_seq **out, size_t *n_cached, struct ica_error *err) {
    if (!c || !out || (n && !tokens))
        return ica_seterr(err, ICA_ERR_ARG, "kv_seq_new: NULL argument");
    *out = NULL;
    if (n_cached)
        *n_cached = 0;
    struct kv_seq *s = calloc(1, sizeof *s);
    if (!s)
        return ica_seterr(err, ICA_ERR_NOMEM, "kv_seq_new: out of memory");
    s->c = c;
    size_t want = n < max_reuse ? n : max_reuse;
    size_t nb = kv_div_up(want, c->B);
    if (seq_grow_tab(s, nb) != ICA_OK) {
        free(s);
        return ica_seterr(err, ICA_ERR_NOMEM, "kv_seq_new: out of memory");
    }
    size_t m = tree_match(c, tokens, want, s->tab, ++c->clock);
    if (seq_set_tokens(s, tokens, m) != ICA_OK) {
        free(s->tab);
        free(s);
        return ica_seterr(err, ICA_ERR_NOMEM, "kv_seq_new: out of memory");
    }
    s->n_tab = kv_div_up(m, c->B);
    for (size_t i = 0; i < s->n_tab; i++)
        s->tab[i]->refs++;
    s->len = s->wfrom = m;
    c->n_seqs++;
    c->tokens_requested += want;
    c->tokens_hit += m;
    if (n_cached)
        *n_cached = m;
    *out = s;
    return ICA_OK;
}

void kv_seq_free(struct kv_seq *s) {
    if (!s)
        return;
    for (size_t i = 0; i < s->n_tab; i++)
        block_unref(s->c, s->tab[i]);
    s->c->n_seqs--;
    free(s->tab);
    free(s->tok);
    free(s);
}

int kv_seq_reserve(struct kv_seq *s, size_t n_more, struct ica_error *err) {
    if (!s)
        return ica_seterr(err, ICA_ERR_ARG, "kv_seq_reserve: NULL sequence");
    struct kv_cache *c = s->c;
    size_t B = c->B;
    if (n_more == 0)
        return ICA_OK;
    if (n_more > SIZE_MAX / 2 - s->len)
        return ica_seterr(err, ICA_ERR_RANGE, "kv_seq_reserve: %zu more positions overflow",
                          n_more);
    size_t new_len = s->len + n_more;
    size_t total = kv_div_up(new_len, B);
    if (c->blocks_max && total > c->blocks_max)
        return ica_seterr(err, ICA_ERR_RANGE,
                          "a sequence of %zu tokens needs %zu KV blocks of %zu bytes (%zu "
                          "bytes), over the KV memory budget of %zu bytes (%zu blocks of %zu "
                          "tokens); raise --kv-mem or shorten the prompt",
                          new_len, total, c->block_bytes, total * c->block_bytes, c->cfg.mem_budget,
                          c->blocks_max, B);
    /* The partially filled last block: write in place when the sequence holds
     * it alone or appends right at its fill mark; else copy it first. */
    size_t o = s->len % B;
    struct kv_block *last = o ? s->tab[s->len / B] : NULL;
    bool cow = last && last->refs > 1 && last->fill != o;
    size_t n_new = total - s->n_tab + (cow ? 1 : 0);
    if (seq_grow_tab(s, total) != ICA_OK)
        return ica_seterr(err, ICA_ERR_NOMEM, "kv_seq_reserve: out of memory");
    struct kv_block *fresh[64];
    struct kv_block **nbl = n_new <= 64 ? fresh : malloc(n_new * sizeof *nbl);
    if (!nbl)
        return ica_seterr(err, ICA_ERR_NOMEM, "kv_seq_reserve: out of memory");
    for (size_t i = 0; i < n_new; i++) {
        int rc = block_alloc(c, &nbl[i], err);
        if (rc != ICA_OK) {
            for (size_t j = 0; j < i; j++)
                block_unref(c, nbl[j]);
            if (nbl != fresh)
                free(nbl);
            if (rc == ICA_ERR_NOMEM && err && c->blocks_max)
                ica_seterr(err, ICA_ERR_NOMEM,
                           "KV cache full: this sequence (%zu tokens) needs %zu more blocks; "
                           "%zu of %zu blocks (%zu bytes each) are held by live sequences",
                           new_len, n_new, blocks_held_by_seqs(c), c->blocks_max, c->block_bytes);
            return rc;
        }
    }
    size_t k = 0;
    if (last) {
        size_t end = o + n_more < B ? o + n_more : B;
        if (cow) {
            struct kv_block *nb = nbl[k++];
            /* Only the o slots this sequence relies on: the rest may be
             * being written by the sequence that claimed them. */
            for (size_t l = 0; l < (size_t)c->cfg.n_layer; l++) {
                size_t rk = l * B * c->kdim * c->esz, rv = c->v_off + l * B * c->vdim * c->esz;
                memcpy(nb->data + rk, last->data + rk, o * c->kdim * c->esz);
                memcpy(nb->data + rv, last->data + rv, o * c->vdim * c->esz);
            }
            block_unref(c, last);
            s->tab[s->len / B] = nb;
            last = nb;
            c->cow_copies++;
        }
        last->fill = end;
    }
    for (size_t i = s->n_tab; i < total; i++) {
        struct kv_block *b = nbl[k++];
        size_t hi = (i + 1) * B < new_len ? B : new_len - i * B;
        b->fill = hi;
        s->tab[i] = b;
    }
    s->n_tab = total;
    s->len = new_len;
    if (nbl != fresh)
        free(nbl);
    return ICA_OK;
}

void kv_seq_truncate(struct kv_seq *s, size_t n) {
    if (!s || n >= s->len)
        return;
    size_t keep = kv_div_up(n, s->c->B);
    for (size_t i = keep; i < s->n_tab; i++)
        block_unref(s->c, s->tab[i]);
    s->n_tab = keep;
    s->len = n;
    if (s->wfrom > n)
        s->wfrom = n;
    if (s->n_tok > n)
        s->n_tok = n;
}

int kv_seq_commit(struct kv_seq *s, const int32_t *tokens, size_t n, struct ica_error *err) {
    if (!s || (n && !tokens))
        return ica_seterr(err, ICA_ERR_ARG, "kv_seq_commit: NULL argument");
    struct kv_cache *c = s->c;
    if (n > s->len)
        return ica_seterr(err, ICA_ERR_ARG,
                          "kv_seq_commit: %zu tokens but the sequence has %zu positions", n,
                          s->len);
    size_t known = s->n_tok < n ? s->n_tok : n;
    size_t d = common_len(s->tok, tokens, known);
    if (d < known)
        return ica_seterr(err, ICA_ERR_ARG,
                          "kv_seq_commit: token %zu is %d but the sequence's position %zu holds "
                          "token %d",
                          d, (int)tokens[d], d, (int)s->tok[d]);
    uint64_t stamp = ++c->clock;
    struct kv_node *node = &c->root;
    size_t p = 0;
    int rc = ICA_OK;
    while (p < n) {
        struct kv_node *ch = find_child(node, tokens[p]);
        if (!ch) {
            rc = node_new(c, node, tokens + p, p, n - p, s->tab, stamp);
            break;
        }
        size_t m = ch->len < n - p ? ch->len : n - p;
        size_t k = common_len(ch->tok, tokens + p, m);
        ch->last_use = stamp;
        if (k == ch->len) {
            node = ch;
            p += k;
            continue;
        }
        if (p + k == n)
            break; /* already cached inside this edge */
        struct kv_node *mid = node_split(c, ch, k);
        if (!mid) {
            rc = ICA_ERR_NOMEM;
            break;
        }
        rc = node_new(c, mid, tokens + p + k, p + k, n - p - k, s->tab, stamp);
        break;
    }
    if (rc != ICA_OK)
        return ica_seterr(err, rc, "kv_seq_commit: out of memory");
    if (seq_set_tokens(s, tokens, n > s->n_tok ? n : s->n_tok) != ICA_OK)
        return ica_seterr(err, ICA_ERR_NOMEM, "kv_seq_commit: out of memory");
    if (s->wfrom < n)
        s->wfrom = n;
    return ICA_OK;
}

size_t kv_seq_len(const struct kv_seq *s) {
    return s ? s->len : 0;
}

size_t kv_seq_writable_from(const struct kv_seq *s) {
    return s ? s->wfrom : 0;
}

void *kv_seq_k(struct kv_seq *s, int layer, size_t pos) {
    if (!s || layer < 0 || layer >= s->c->cfg.n_layer || pos >= s->len)
        return NULL;
    const struct kv_cache *c = s->c;
    size_t slot = (size_t)layer * c->B + pos % c->B;
    return s->tab[pos / c->B]->data + slot * c->kdim * c->esz;
}

void *kv_seq_v(struct kv_seq *s, int layer, size_t pos) {
    if (!s || layer < 0 || layer >= s->c->cfg.n_layer || pos >= s->len)
        return NULL;
    const struct kv_cache *c = s->c;
    size_t slot = (size_t)layer * c->B + pos % c->B;
    return s->tab[pos / c->B]->data + c->v_off + slot * c->vdim * c->esz;
}

void kv_seq_rows(const struct kv_seq *s, int layer, size_t n, const uint8_t **k,
                 const uint8_t **v) {
    if (!s || layer < 0 || layer >= s->c->cfg.n_layer || n > s->len)
        return;
    const struct kv_cache *c = s->c;
    const size_t kr = c->kdim * c->esz, vr = c->vdim * c->esz, B = c->B;
    for (size_t b0 = 0; b0 < n; b0 += B) {
        const uint8_t *d = s->tab[b0 / B]->data;
        const uint8_t *kb = d + (size_t)layer * B * kr, *vb = d + c->v_off + (size_t)layer * B * vr;
        const size_t m = n - b0 < B ? n - b0 : B;
        for (size_t i = 0; i < m; i++) {
            k[b0 + i] = kb + i * kr;
            v[b0 + i] = vb + i * vr;
        }
    }
}

size_t kv_seq_row_stride(const struct kv_seq *s) {
    return s ? s->c->kdim : 0;
}

size_t kv_seq_row_stride_v(const struct kv_seq *s) {
    return s ? s->c->vdim : 0;
}
