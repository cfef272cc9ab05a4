/* Vocabulary loading (llama.cpp llama_vocab::impl::load semantics). */
#include "tok_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t tok_hash(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t k;
        memcpy(&k, s, 8);
        h = (h ^ k) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t k = 0;
    memcpy(&k, s, n);
    h = (h ^ k) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    return h;
}

int32_t tok_lookup(const struct tok_vocab *v, const char *s, size_t n) {
    const struct tok_map *m = &v->map;
    size_t i = tok_hash(s, n) & m->mask;
    for (;;) {
        uint32_t e = m->slots[i];
        if (!e)
            return -1;
        uint32_t id = e - 1;
        if (v->str_len[id] == n && !memcmp(v->str[id], s, n))
            return (int32_t)id;
        i = (i + 1) & m->mask;
    }
}

/* Inserts string id (overwrites an equal key when replace). */
static void map_put(struct tok_vocab *v, uint32_t id, bool replace) {
    struct tok_map *m = &v->map;
    size_t i = tok_hash(v->str[id], v->str_len[id]) & m->mask;
    for (;;) {
        uint32_t e = m->slots[i];
        if (!e) {
            m->slots[i] = id + 1;
            return;
        }
        uint32_t o = e - 1;
        if (v->str_len[o] == v->str_len[id] && !memcmp(v->str[o], v->str[id], v->str_len[id])) {
            if (replace)
                m->slots[i] = id + 1;
            return;
        }
        i = (i + 1) & m->mask;
    }
}

static int map_rebuild(struct tok_vocab *v, size_t want) {
    size_t cap = 1024;
    while (cap < want * 2)
        cap *= 2;
    uint32_t *s = calloc(cap, sizeof *s);
    if (!s)
        return ICA_ERR_NOMEM;
    free(v->map.slots);
    v->map.slots = s;
    v->map.mask = cap - 1;
    for (int32_t i = 0; i < v->n_str; i++)
        map_put(v, (uint32_t)i, i < v->n_tokens);
    return ICA_OK;
}

/* ---- string table growth (virtual strings for BPE merges) ---- */
static int32_t str_add(struct tok_vocab *v, const char *s, size_t n, size_t *cap) {
    if ((size_t)v->n_str == *cap) {
        size_t nc = *cap * 2;
        const char **ns = realloc(v->str, nc * sizeof *ns);
        if (!ns)
            return -1;
        v->str = ns;
        uint32_t *nl = realloc(v->str_len, nc * sizeof *nl);
        if (!nl)
            return -1;
        v->str_len = nl;
        *cap = nc;
    }
    int32_t id = v->n_str++;
    v->str[id] = s;
    v->str_len[id] = (uint32_t)n;
    if ((size_t)v->n_str * 2 > v->map.mask + 1) {
        if (map_rebuild(v, (size_t)v->n_str))
            return -1;
    } else {
        map_put(v, (uint32_t)id, false);
    }
    return id;
}

static uint64_t merge_key(int32_t l, int32_t r) {
    return ((uint64_t)(uint32_t)(l + 1) << 32) | (uint32_t)(r + 1);
}

/* ---- GPT-2 bytes_to_unicode ---- */
static void byte_encoding(struct tok_vocab *v) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        uint32_t cp;
        if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE))
            cp = (uint32_t)b;
        else
            cp = 256u + (uint32_t)n++;
        v->byte_enc_len[b] = (uint8_t)tok_encode_utf8(cp, v->byte_enc[b]);
        v->byte_enc[b][v->byte_enc_len[b]] = 0;
    }
}

/* byte of a GPT-2 encoded code point, or -1 */
static int byte_decode(uint32_t cp) {
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF))
        return (int)cp;
    if (cp < 256 || cp >= 256 + 68)
        return -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE))
            continue;
        if (256u + (uint32_t)n == cp)
            return b;
        n++;
    }
    return -1;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* strtol(text.substr(3, 2), 16) as llama.cpp's token_to_byte */
static unsigned char token_byte(const struct tok_token *t) {
    unsigned val = 0;
    for (uint32_t i = 3; i < 5 && i < t->len; i++) {
        int h = hexval(t->text[i]);
        if (h < 0)
            break;
        val = val * 16 + (unsigned)h;
    }
    return (unsigned char)val;
}

/* ---- pieces ---- */
struct sbuf {
    char *p;
    size_t n, cap;
};

static int sb_put(struct sbuf *b, const void *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->n + n + 1)
            nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np)
            return ICA_ERR_NOMEM;
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return ICA_OK;
}

static int piece_of(const struct tok_vocab *v, int32_t id, struct sbuf *b) {
    const struct tok_token *t = &v->tok[id];
    if (t->attr & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED))
        return sb_put(b, t->text, t->len);
    if (t->attr & TOK_ATTR_NORMAL) {
        if (v->model == TOK_MODEL_SPM) {
            for (uint32_t i = 0; i < t->len; i++) {
                if (i + 2 < t->len && !memcmp(t->text + i, "\xe2\x96\x81", 3)) {
                    if (sb_put(b, " ", 1))
                        return ICA_ERR_NOMEM;
                    i += 2;
                } else if (sb_put(b, t->text + i, 1)) {
                    return ICA_ERR_NOMEM;
                }
            }
            return ICA_OK;
        }
        uint32_t *cps = malloc((t->len + 1) * sizeof *cps);
        if (!cps)
            return ICA_ERR_NOMEM;
        size_t n = tok_decode_utf8(t->text, t->len, cps);
        int rc = ICA_OK;
        for (size_t i = 0; i < n && !rc; i++) {
            int byte = byte_decode(cps[i]);
            if (byte >= 0) {
                unsigned char c = (unsigned char)byte;
                rc = sb_put(b, &c, 1);
                continue;
            }
            /* llama_decode_text's marker for code points outside the map */
            char u[4], hex[40];
            size_t ul = tok_encode_utf8(cps[i], u);
            int hl = snprintf(hex, sizeof hex, "[UNK_BYTE_0x");
            for (size_t k = 0; k < ul; k++)
                hl += snprintf(hex + hl, sizeof hex - (size_t)hl, "%02x", (unsigned char)u[k]);
            rc = sb_put(b, hex, (size_t)hl);
            if (!rc)
                rc = sb_put(b, t->text, t->len);
            if (!rc)
                rc = sb_put(b, "]", 1);
        }
        free(cps);
        return rc;
    }
    if (t->attr & TOK_ATTR_BYTE) {
        unsigned char c = token_byte(t);
        return sb_put(b, &c, 1);
    }
    return ICA_OK;
}

/* ---- metadata helpers ---- */
static int get_id(const struct gguf_file *f, const char *key, int32_t n, int32_t *id) {
    int64_t x;
    if (gguf_get_i64(f, key, &x) != ICA_OK)
        return 0;
    if (x >= 0 && x < n)
        *id = (int32_t)x; /* out of range: llama.cpp keeps the default */
    return 1;
}

static void get_flag(const struct gguf_file *f, const char *key, bool *b) {
    bool x;
    if (gguf_get_bool(f, key, &x) == ICA_OK)
        *b = x;
}

static bool text_is(const struct tok_token *t, const char *s) {
    size_t n = strlen(s);
    return t->len == n && !memcmp(t->text, s, n);
}

static bool text_in(const struct tok_token *t, const char *const *list) {
    for (; *list; list++)
        if (text_is(t, *list))
            return true;
    return false;
}

static void detect(struct tok_vocab *v, int32_t *id, const char *const *names) {
    if (*id >= 0)
        return;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        if (text_in(&v->tok[i], names)) {
            *id = i;
            v->tok[i].attr |= TOK_ATTR_CONTROL;
            return;
        }
    }
}

static void special_tokens(struct tok_vocab *v) {
    static const char *const eot[] = {"<|eot_id|>",
                                      "<|im_end|>",
                                      "<|end|>",
                                      "<end_of_turn>",
                                      "<|endoftext|>",
                                      "<|end_of_text|>",
                                      "<EOT>",
                                      "_<EOT>",
                                      "[EOT]",
                                      "<\xef\xbd\x9c"
                                      "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                                      "<end_of_utterance>",
                                      NULL};
    static const char *const eom[] = {"<|eom_id|>", NULL};
    static const char *const pre[] = {"<|fim_prefix|>",
                                      "<fim-prefix>",
                                      "<fim_prefix>",
                                      "<\xef\xbd\x9c"
                                      "fim\xe2\x96\x81"
                                      "begin\xef\xbd\x9c>",
                                      "<PRE>",
                                      "\xe2\x96\x81<PRE>",
                                      "<|code_prefix|>",
                                      "<|prefix|>",
                                      NULL};
    static const char *const suf[] = {"<|fim_suffix|>",
                                      "<fim-suffix>",
                                      "<fim_suffix>",
                                      "<\xef\xbd\x9c"
                                      "fim\xe2\x96\x81hole\xef\xbd\x9c>",
                                      "<SUF>",
                                      "\xe2\x96\x81<SUF>",
                                      "<|code_suffix|>",
                                      "<|suffix|>",
                                      NULL};
    static const char *const mid[] = {"<|fim_middle|>",
                                      "<fim-middle>",
                                      "<fim_middle>",
                                      "<\xef\xbd\x9c"
                                      "fim\xe2\x96\x81"
                                      "end\xef\xbd\x9c>",
                                      "<MID>",
                                      "\xe2\x96\x81<MID>",
                                      "<|code_middle|>",
                                      "<|middle|>",
                                      NULL};
    static const char *const pad[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>",
                                      "<PAD>",       "[PAD]",     NULL};
    static const char *const rep[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
                                      "<REPO>",       "<reponame>",    NULL};
    static const char *const sep[] = {"<|file_sep|>", NULL};
    static const char *const eog[] = {"<|eot_id|>",
                                      "<|im_end|>",
                                      "<|end|>",
                                      "<|return|>",
                                      "<|call|>",
                                      "<|flush|>",
                                      "<|calls|>",
                                      "<end_of_turn>",
                                      "<|endoftext|>",
                                      "</s>",
                                      "<|eom_id|>",
                                      "<EOT>",
                                      "_<EOT>",
                                      "[EOT]",
                                      "[EOS]",
                                      "<|end_of_text|>",
                                      "<end_of_utterance>",
                                      "<eos>",
                                      "<turn|>",
                                      "<|tool_response>",
                                      "<\xef\xbd\x9c"
                                      "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                                      NULL};
    static const char *const always_user[] = {"<|channel|>", "<|message|>", "<|start|>",
                                              "<|constrain|>", NULL};

    detect(v, &v->eot, eot);
    detect(v, &v->eom, eom);
    detect(v, &v->fim_pre, pre);
    detect(v, &v->fim_suf, suf);
    detect(v, &v->fim_mid, mid);
    detect(v, &v->fim_pad, pad);
    detect(v, &v->fim_rep, rep);
    detect(v, &v->fim_sep, sep);

    for (int32_t i = 0; i < v->n_tokens; i++) {
        struct tok_token *t = &v->tok[i];
        if ((t->attr & TOK_ATTR_CONTROL) && !(t->attr & TOK_ATTR_UNUSED) &&
            tok_memmem(t->text, t->len, "unused", 6))
            t->attr |= TOK_ATTR_UNUSED;
    }

    uint8_t *g = v->eog;
    if (v->fim_pad >= 0)
        g[v->fim_pad] = 1;
    if (v->fim_rep >= 0)
        g[v->fim_rep] = 1;
    if (v->fim_sep >= 0)
        g[v->fim_sep] = 1;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        if (text_in(&v->tok[i], eog)) {
            g[i] = 1;
            v->tok[i].attr |= TOK_ATTR_CONTROL;
        }
    }
    for (int32_t i = 0; i < v->n_tokens; i++)
        if (text_in(&v->tok[i], always_user))
            v->tok[i].attr = TOK_ATTR_USER_DEFINED;
    if (v->eos >= 0)
        g[v->eos] = 1;
    if (v->eot >= 0)
        g[v->eot] = 1;
    if (v->eom >= 0)
        g[v->eom] = 1;

    bool has_return = false, has_call = false, has_flush = false, has_tool = false;
    int32_t end_id = -1, s_id = -1;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        if (!g[i])
            continue;
        const struct tok_token *t = &v->tok[i];
        if (text_is(t, "<|return|>"))
            has_return = true;
        else if (text_is(t, "<|call|>") || text_is(t, "<|calls|>"))
            has_call = true;
        else if (text_is(t, "<|flush|>"))
            has_flush = true;
        else if (text_is(t, "<|end|>"))
            end_id = i;
        else if (text_is(t, "<|tool_response>"))
            has_tool = true;
        else if (text_is(t, "</s>"))
            s_id = i;
    }
    if (end_id >= 0 && ((has_return && has_call) || (has_call && has_flush))) {
        g[end_id] = 0;
        v->tok[end_id].attr = TOK_ATTR_USER_DEFINED;
    }
    if (has_tool && s_id >= 0) {
        g[s_id] = 0;
        v->tok[s_id].attr = TOK_ATTR_NORMAL;
    }
}

static const struct tok_vocab *g_sort_vocab;

static int cmp_special(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint32_t lx = g_sort_vocab->tok[x].len, ly = g_sort_vocab->tok[y].len;
    if (lx != ly)
        return lx > ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

static int build_merges(struct tok_vocab *v, const struct gguf_file *f, const struct gguf_value *mv,
                        struct ica_error *err) {
    uint64_t nm = mv->n;
    if (mv->type != GGUF_VT_ARRAY || mv->elem_type != GGUF_VT_STRING || nm > INT32_MAX)
        return ica_seterr(err, ICA_ERR_FORMAT, "tokenizer.ggml.merges: not a string array");
    size_t need = 0;
    for (uint64_t i = 0; i < nm; i++) {
        struct gguf_str s;
        if (gguf_arr_str(f, mv, i, &s) != ICA_OK)
            return ica_seterr(err, ICA_ERR_FORMAT, "tokenizer.ggml.merges[%llu]: unreadable",
                              (unsigned long long)i);
        need += 2 * s.len + 2;
    }
    v->extra = malloc(need + 1);
    size_t cap = 1;
    while (cap < nm * 2 + 16)
        cap *= 2;
    v->merges = calloc(cap, sizeof *v->merges);
    if (!v->extra || !v->merges)
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory (merges)");
    v->merge_mask = cap - 1;
    size_t used = 0, str_cap = (size_t)v->n_str;
    for (uint64_t i = 0; i < nm; i++) {
        struct gguf_str s;
        (void)gguf_arr_str(f, mv, i, &s);
        const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
        if (!sp)
            continue; /* llama.cpp records ("", ""), which never matches */
        size_t l1 = (size_t)(sp - s.ptr), l2 = s.len - l1 - 1;
        /* strings that are not tokens are stored in extra */
        char *cat = v->extra + used;
        memcpy(cat, s.ptr, l1);
        memcpy(cat + l1, sp + 1, l2);
        cat[l1 + l2] = 0;
        char *p2 = cat + l1 + l2 + 1;
        memcpy(p2, sp + 1, l2);
        p2[l2] = 0;
        bool added = false;
        int32_t a = tok_lookup(v, cat, l1);
        if (a < 0) {
            a = str_add(v, cat, l1, &str_cap);
            added = true;
        }
        int32_t b = tok_lookup(v, p2, l2);
        if (b < 0) {
            b = str_add(v, p2, l2, &str_cap);
            added = true;
        }
        int32_t c = tok_lookup(v, cat, l1 + l2);
        if (c < 0) {
            c = str_add(v, cat, l1 + l2, &str_cap);
            added = true;
        }
        if (a < 0 || b < 0 || c < 0)
            return ica_seterr(err, ICA_ERR_NOMEM, "out of memory (merges)");
        if (added)
            used += l1 + l2 + 1 + l2 + 1;
        uint64_t key = merge_key(a, b);
        size_t h = tok_hash(&key, sizeof key) & v->merge_mask;
        while (v->merges[h].key && v->merges[h].key != key)
            h = (h + 1) & v->merge_mask;
        if (!v->merges[h].key) { /* first rank wins (emplace) */
            v->merges[h].key = key;
            v->merges[h].rank = (int32_t)i;
            v->merges[h].result = c;
        }
    }
    return ICA_OK;
}

int tok_vocab_from_gguf(const struct gguf_file *f, struct tok_vocab **out, struct ica_error *err) {
    *out = NULL;
    struct gguf_str ms;
    if (gguf_get_str(f, "tokenizer.ggml.model", &ms) != ICA_OK)
        return ica_seterr(err, ICA_ERR_NOTFOUND, "%s: no tokenizer.ggml.model", gguf_path(f));
    struct tok_vocab *v = calloc(1, sizeof *v);
    if (!v)
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
    int rc = ICA_OK;
    if (ms.len == 5 && !memcmp(ms.ptr, "llama", 5)) {
        v->model = TOK_MODEL_SPM;
    } else if (ms.len == 4 && !memcmp(ms.ptr, "gpt2", 4)) {
        v->model = TOK_MODEL_BPE;
    } else {
        rc = ica_seterr(err, ICA_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model '%.*s' not supported",
                        gguf_path(f), (int)(ms.len > 64 ? 64 : ms.len), ms.ptr);
        goto fail;
    }
    struct gguf_str ps;
    if (v->model == TOK_MODEL_BPE && gguf_get_str(f, "tokenizer.ggml.pre", &ps) == ICA_OK) {
        size_t n = ps.len < sizeof v->pre - 1 ? ps.len : sizeof v->pre - 1;
        memcpy(v->pre, ps.ptr, n);
        v->pre[n] = 0;
    }
    if (v->model == TOK_MODEL_BPE) {
        rc = tok_pretok_init(&v->pretok, v->pre, err);
        if (rc)
            goto fail;
    }

    const struct gguf_value *tv = gguf_get(f, "tokenizer.ggml.tokens");
    if (!tv || tv->type != GGUF_VT_ARRAY || tv->elem_type != GGUF_VT_STRING || tv->n == 0 ||
        tv->n > INT32_MAX / 4) {
        rc = ica_seterr(err, ICA_ERR_FORMAT, "%s: tokenizer.ggml.tokens missing or not strings",
                        gguf_path(f));
        goto fail;
    }
    int32_t n = (int32_t)tv->n;
    v->n_tokens = n;
    const struct gguf_value *sv = gguf_get(f, "tokenizer.ggml.scores");
    const struct gguf_value *yv = gguf_get(f, "tokenizer.ggml.token_type");
    if ((sv && (sv->type != GGUF_VT_ARRAY || sv->n < (uint64_t)n)) ||
        (yv && (yv->type != GGUF_VT_ARRAY || yv->n < (uint64_t)n))) {
        rc = ica_seterr(err, ICA_ERR_FORMAT,
                        "%s: tokenizer.ggml.scores/token_type shorter than tokens", gguf_path(f));
        goto fail;
    }
    size_t arena = 0;
    for (int32_t i = 0; i < n; i++) {
        struct gguf_str s;
        if (gguf_arr_str(f, tv, (uint64_t)i, &s) != ICA_OK || s.len > UINT32_MAX / 2) {
            rc = ica_seterr(err, ICA_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%d] unreadable",
                            gguf_path(f), i);
            goto fail;
        }
        arena += (s.len ? s.len : 24) + 1;
    }
    v->tok = calloc((size_t)n, sizeof *v->tok);
    v->arena = malloc(arena);
    v->str = malloc((size_t)n * sizeof *v->str);
    v->str_len = malloc((size_t)n * sizeof *v->str_len);
    v->eog = calloc((size_t)n, 1);
    if (!v->tok || !v->arena || !v->str || !v->str_len || !v->eog) {
        rc = ica_seterr(err, ICA_ERR_NOMEM, "out of memory (vocab of %d tokens)", n);
        goto fail;
    }
    size_t at = 0;
    for (int32_t i = 0; i < n; i++) {
        struct gguf_str s;
        (void)gguf_arr_str(f, tv, (uint64_t)i, &s);
        char *p = v->arena + at;
        size_t len = s.len;
        if (len == 0)
            len = (size_t)snprintf(p, 24, "[EMPTY_%d]", i);
        else
            memcpy(p, s.ptr, len);
        p[len] = 0;
        at += len + 1;
        struct tok_token *t = &v->tok[i];
        t->text = p;
        t->len = (uint32_t)len;
        if (len > v->max_token_len)
            v->max_token_len = (uint32_t)len;
        double sc = 0;
        if (sv && gguf_arr_f64(f, sv, (uint64_t)i, &sc) != ICA_OK)
            sc = 0;
        t->score = (float)sc;
        int64_t ty = TOK_TYPE_NORMAL;
        t->attr = TOK_ATTR_NORMAL;
        if (yv && gguf_arr_i64(f, yv, (uint64_t)i, &ty) == ICA_OK) {
            static const uint16_t map[7] = {
                TOK_ATTR_UNDEFINED,    TOK_ATTR_NORMAL, TOK_ATTR_UNKNOWN, TOK_ATTR_CONTROL,
                TOK_ATTR_USER_DEFINED, TOK_ATTR_UNUSED, TOK_ATTR_BYTE};
            t->attr = (ty >= 0 && ty <= 6) ? map[ty] : TOK_ATTR_UNDEFINED;
        }
        t->type = (uint8_t)((ty >= 0 && ty <= 6) ? ty : 0);
        v->str[i] = p;
        v->str_len[i] = (uint32_t)len;
    }
    v->n_str = n;
    if (map_rebuild(v, (size_t)n + 1024)) {
        rc = ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
        goto fail;
    }
    byte_encoding(v);

    if (v->model == TOK_MODEL_BPE) {
        const struct gguf_value *mv = gguf_get(f, "tokenizer.ggml.merges");
        if (!mv) {
            rc = ica_seterr(err, ICA_ERR_FORMAT, "%s: tokenizer.ggml.merges missing", gguf_path(f));
            goto fail;
        }
        rc = build_merges(v, f, mv, err);
        if (rc)
            goto fail;
    }

    /* defaults, then metadata (llama.cpp order) */
    v->eot = v->eom = v->sep = v->pad = v->mask = -1;
    v->fim_pre = v->fim_suf = v->fim_mid = v->fim_pad = v->fim_rep = v->fim_sep = -1;
    if (v->model == TOK_MODEL_SPM) {
        v->bos = 1;
        v->eos = 2;
        v->unk = 0;
        v->add_bos = true;
        v->add_space_prefix = true;
    } else {
        v->bos = 11;
        v->eos = 11;
        v->unk = -1;
        v->clean_spaces = !(v->pretok.flags & TOK_PRE_NO_CLEAN);
        v->ignore_merges = v->pretok.flags & TOK_PRE_IGNORE_MERGES;
        v->add_bos = v->pretok.flags & TOK_PRE_ADD_BOS;
        if (v->pretok.flags & TOK_PRE_NO_BOS)
            v->bos = -1;
    }
    if (v->bos >= n)
        v->bos = -1;
    if (v->eos >= n)
        v->eos = -1;
    if (v->unk >= n)
        v->unk = -1;
    get_flag(f, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix);
    get_id(f, "tokenizer.ggml.bos_token_id", n, &v->bos);
    get_id(f, "tokenizer.ggml.eos_token_id", n, &v->eos);
    get_id(f, "tokenizer.ggml.eot_token_id", n, &v->eot);
    get_id(f, "tokenizer.ggml.eom_token_id", n, &v->eom);
    get_id(f, "tokenizer.ggml.unknown_token_id", n, &v->unk);
    get_id(f, "tokenizer.ggml.seperator_token_id", n, &v->sep);
    get_id(f, "tokenizer.ggml.padding_token_id", n, &v->pad);
    get_id(f, "tokenizer.ggml.mask_token_id", n, &v->mask);
    get_id(f, "tokenizer.ggml.fim_pre_token_id", n, &v->fim_pre);
    get_id(f, "tokenizer.ggml.fim_suf_token_id", n, &v->fim_suf);
    get_id(f, "tokenizer.ggml.fim_mid_token_id", n, &v->fim_mid);
    get_id(f, "tokenizer.ggml.fim_pad_token_id", n, &v->fim_pad);
    get_id(f, "tokenizer.ggml.fim_rep_token_id", n, &v->fim_rep);
    get_id(f, "tokenizer.ggml.fim_sep_token_id", n, &v->fim_sep);
    get_id(f, "tokenizer.ggml.prefix_token_id", n, &v->fim_pre);
    get_id(f, "tokenizer.ggml.suffix_token_id", n, &v->fim_suf);
    get_id(f, "tokenizer.ggml.middle_token_id", n, &v->fim_mid);
    get_flag(f, "tokenizer.ggml.add_bos_token", &v->add_bos);
    get_flag(f, "tokenizer.ggml.add_eos_token", &v->add_eos);
    if (v->add_bos && v->bos < 0)
        v->add_bos = false; /* llama.cpp would assert */
    if (v->add_eos && v->eos < 0)
        v->add_eos = false;

    special_tokens(v);

    /* byte fallback ids */
    for (int b = 0; b < 256; b++) {
        char buf[8];
        v->byte_tok[b] = -1;
        if (v->model == TOK_MODEL_SPM) {
            snprintf(buf, sizeof buf, "<0x%02X>", b);
            v->byte_tok[b] = tok_lookup(v, buf, 6);
        }
        if (v->byte_tok[b] < 0 || v->byte_tok[b] >= n) {
            buf[0] = (char)b;
            v->byte_tok[b] = tok_lookup(v, buf, 1);
            if (v->byte_tok[b] >= n)
                v->byte_tok[b] = -1;
        }
    }

    /* special-token cache, longest first */
    v->special = malloc((size_t)n * sizeof *v->special);
    if (!v->special) {
        rc = ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int32_t i = 0; i < n; i++)
        if (v->tok[i].attr & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN))
            v->special[v->n_special++] = i;
    g_sort_vocab = v; /* qsort has no context argument; load is not reentrant here */
    qsort(v->special, (size_t)v->n_special, sizeof *v->special, cmp_special);

    /* piece cache */
    struct sbuf pb = {0};
    v->piece_off = malloc((size_t)n * sizeof *v->piece_off);
    v->piece_len = malloc((size_t)n * sizeof *v->piece_len);
    if (!v->piece_off || !v->piece_len) {
        rc = ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int32_t i = 0; i < n; i++) {
        size_t o = pb.n;
        if (piece_of(v, i, &pb) || pb.n > UINT32_MAX - 1024) {
            free(pb.p);
            rc = ica_seterr(err, ICA_ERR_NOMEM, "out of memory (pieces)");
            goto fail;
        }
        v->piece_off[i] = (uint32_t)o;
        v->piece_len[i] = (uint32_t)(pb.n - o);
    }
    if (sb_put(&pb, "", 0)) {
        free(pb.p);
        rc = ica_seterr(err, ICA_ERR_NOMEM, "out of memory (pieces)");
        goto fail;
    }
    pb.p[pb.n] = 0;
    v->piece_buf = pb.p;

    /* newline token */
    v->newline = -1;
    if (v->model == TOK_MODEL_SPM) {
        v->newline = v->byte_tok['\n'] >= 0 ? v->byte_tok['\n'] : v->pad;
    } else {
        int32_t *ids = NULL;
        size_t nid = 0;
        if (tok_tokenize(v, "\n", 1, false, false, &ids, &nid, NULL) == ICA_OK && nid > 0)
            v->newline = ids[0];
        else
            v->newline = v->pad;
        free(ids);
    }
    *out = v;
    return ICA_OK;
fail:
    tok_vocab_free(v);
    return rc;
}

int tok_vocab_load(const char *path, struct tok_vocab **out, struct ica_error *err) {
    struct gguf_file *f = NULL;
    *out = NULL;
    int rc = gguf_open(path, &f, err);
    if (rc)
        return rc;
    rc = tok_vocab_from_gguf(f, out, err);
    gguf_close(f);
    return rc;
}

void tok_vocab_free(struct tok_vocab *v) {
    if (!v)
        return;
    tok_pretok_free(&v->pretok);
    free(v->tok);
    free(v->arena);
    free(v->extra);
    free(v->str);
    free(v->str_len);
    free(v->map.slots);
    free(v->merges);
    free(v->piece_off);
    free(v->piece_len);
    free(v->piece_buf);
    free(v->eog);
    free(v->special);
    free(v);
}

/* ---- accessors ---- */
static bool ok_id(const struct tok_vocab *v, int32_t id) {
    return v && id >= 0 && id < v->n_tokens;
}
int32_t tok_n_tokens(const struct tok_vocab *v) {
    return v->n_tokens;
}
enum tok_model tok_vocab_model(const struct tok_vocab *v) {
    return v->model;
}
const char *tok_vocab_pre(const struct tok_vocab *v) {
    return v->pre;
}
int32_t tok_bos(const struct tok_vocab *v) {
    return v->bos;
}
int32_t tok_eos(const struct tok_vocab *v) {
    return v->eos;
}
int32_t tok_eot(const struct tok_vocab *v) {
    return v->eot;
}
int32_t tok_unk(const struct tok_vocab *v) {
    return v->unk;
}
int32_t tok_pad(const struct tok_vocab *v) {
    return v->pad;
}
int32_t tok_newline(const struct tok_vocab *v) {
    return v->newline;
}
bool tok_add_bos(const struct tok_vocab *v) {
    return v->add_bos;
}
bool tok_add_eos(const struct tok_vocab *v) {
    return v->add_eos;
}
const char *tok_text(const struct tok_vocab *v, int32_t id, size_t *len) {
    if (!ok_id(v, id))
        return NULL;
    if (len)
        *len = v->tok[id].len;
    return v->tok[id].text;
}
float tok_score(const struct tok_vocab *v, int32_t id) {
    return ok_id(v, id) ? v->tok[id].score : 0.0f;
}
enum tok_type tok_get_type(const struct tok_vocab *v, int32_t id) {
    return ok_id(v, id) ? (enum tok_type)v->tok[id].type : TOK_TYPE_UNDEFINED;
}
uint32_t tok_get_attr(const struct tok_vocab *v, int32_t id) {
    return ok_id(v, id) ? v->tok[id].attr : 0;
}
bool tok_is_control(const struct tok_vocab *v, int32_t id) {
    return ok_id(v, id) && (v->tok[id].attr & TOK_ATTR_CONTROL);
}
bool tok_is_eog(const struct tok_vocab *v, int32_t id) {
    return ok_id(v, id) && v->eog[id];
}
int32_t tok_find(const struct tok_vocab *v, const char *text, size_t len) {
    int32_t id = tok_lookup(v, text, len);
    return id < v->n_tokens ? id : -1;
}
const char *tok_piece(const struct tok_vocab *v, int32_t id, size_t *len) {
    if (!ok_id(v, id)) {
        if (len)
            *len = 0;
        return "";
    }
    if (len)
        *len = v->piece_len[id];
    return v->piece_buf + v->piece_off[id];
}

int32_t tok_token_to_piece(const struct tok_vocab *v, int32_t id, bool special, int32_t lstrip,
                           char *buf, size_t bufsz) {
    if (!ok_id(v, id))
        return 0;
    if (!special && (v->tok[id].attr & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL)))
        return 0;
    const char *p = v->piece_buf + v->piece_off[id];
    size_t n = v->piece_len[id];
    for (int32_t i = 0; i < lstrip && n && *p == ' '; i++) {
        p++;
        n--;
    }
    if (n > INT32_MAX)
        return 0;
    if (bufsz < n)
        return -(int32_t)n;
    if (n)
        memcpy(buf, p, n);
    return (int32_t)n;
}
