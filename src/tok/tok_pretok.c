/* BPE pre-tokenizers (tokenizer.ggml.pre).
 *
 * llama.cpp splits with a list of regexes applied in turn, each one
 * re-splitting the pieces of the previous one (unicode_regex_split). Three
 * regexes (GPT-2's, Llama 3's and Qwen2's) run as hand-written scanners in
 * llama.cpp; they are reproduced here as scanners with the same decisions.
 * Every other regex runs in llama.cpp through std::regex on a "collapsed"
 * text where each code point becomes one byte (ASCII stays, other code
 * points become 0xD0..0xD5 by category, whitespace 0x0B) and \p{..} classes
 * are rewritten to those bytes. We do the same with PCRE2 (8-bit, no UTF,
 * JIT), which gives llama.cpp's splits exactly, including its Unicode 15.1
 * categories, and needs no UTF check at all. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tok_int.h"

#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#define ANY 0x100u /* in range: llama.cpp's flags are never 0 there */
#define OOR 0xFFFFFFFFu

/* ---- growable length list ---- */
struct lens {
    size_t *v;
    size_t n, cap;
    bool oom;
};

static void push(struct lens *l, size_t x) {
    if (x == 0 || l->oom)
        return;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        size_t *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) {
            l->oom = true;
            return;
        }
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = x;
}

/* ---- the scanners ---- */
struct scan {
    const uint32_t *c;
    size_t ini, end, prev;
    struct lens *out;
};

static inline uint32_t cp(const struct scan *s, size_t p) {
    return p >= s->ini && p < s->end ? s->c[p] : OOR;
}
static inline unsigned fl(const struct scan *s, size_t p) {
    return p >= s->ini && p < s->end ? tok_cpt_flags(s->c[p]) | ANY : 0;
}
static inline void emit(struct scan *s, size_t end) {
    push(s->out, end - s->prev);
    s->prev = end;
}
static inline uint32_t lower_ascii(uint32_t c) {
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* 's 't 're 've 'm 'll 'd at p (p is a quote); returns length or 0. */
static size_t contraction(const struct scan *s, size_t p, bool icase) {
    if (p + 1 >= s->end)
        return 0;
    uint32_t a = cp(s, p + 1);
    if (icase)
        a = lower_ascii(a);
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if (p + 2 >= s->end)
        return 0;
    uint32_t b = cp(s, p + 2);
    if (icase)
        b = lower_ascii(b);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        return 3;
    return 0;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S) */
static void scan_gpt2(struct scan *s) {
    size_t p = s->ini;
    while (p < s->end) {
        uint32_t c = cp(s, p);
        unsigned f = fl(s, p);
        if (c == '\'') {
            size_t k = contraction(s, p, false);
            if (k) {
                p += k;
                emit(s, p);
                continue;
            }
        }
        unsigned f2 = c == ' ' ? fl(s, p + 1) : f;
        if (f2 & CPT_LETTER) {
            p += c == ' ';
            while (fl(s, p) & CPT_LETTER)
                p++;
            emit(s, p);
            continue;
        }
        if (f2 & CPT_NUMBER) {
            p += c == ' ';
            while (fl(s, p) & CPT_NUMBER)
                p++;
            emit(s, p);
            continue;
        }
        if (!(f2 & (CPT_SPACE | CPT_LETTER | CPT_NUMBER)) && f2) {
            p += c == ' ';
            for (unsigned g = fl(s, p); !(g & (CPT_SPACE | CPT_LETTER | CPT_NUMBER)) && g;
                 g = fl(s, p))
                p++;
            emit(s, p);
            continue;
        }
        size_t nws = 0;
        while (fl(s, p + nws) & CPT_SPACE)
            nws++;
        if (nws > 1 && cp(s, p + nws) != OOR) {
            p += nws - 1;
            emit(s, p);
            continue;
        }
        if (nws > 0) {
            p += nws;
            emit(s, p);
            continue;
        }
        emit(s, ++p);
    }
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * (Qwen2: \p{N} instead of \p{N}{1,3}) */
static void scan_llama3(struct scan *s, size_t max_digits) {
    size_t p = s->ini;
    while (p < s->end) {
        uint32_t c = cp(s, p);
        unsigned f = fl(s, p);
        if (c == '\'') {
            size_t k = contraction(s, p, true);
            if (k) {
                p += k;
                emit(s, p);
                continue;
            }
        }
        if (!(c == '\r' || c == '\n' || (f & CPT_NUMBER))) {
            if ((f & CPT_LETTER) || (fl(s, p + 1) & CPT_LETTER)) {
                p++;
                while (fl(s, p) & CPT_LETTER)
                    p++;
                emit(s, p);
                continue;
            }
        }
        if (f & CPT_NUMBER) {
            size_t ini = p;
            while (fl(s, p) & CPT_NUMBER) {
                p++;
                if (p - ini >= max_digits) {
                    emit(s, p);
                    ini = p;
                }
            }
            emit(s, p);
            continue;
        }
        unsigned f2 = c == ' ' ? fl(s, p + 1) : f;
        if (!(f2 & (CPT_SPACE | CPT_LETTER | CPT_NUMBER)) && f) {
            p += c == ' ';
            for (unsigned g = fl(s, p); !(g & (CPT_SPACE | CPT_LETTER | CPT_NUMBER)) && g;
                 g = fl(s, p))
                p++;
            for (uint32_t d = cp(s, p); d == '\r' || d == '\n'; d = cp(s, p))
                p++;
            emit(s, p);
            continue;
        }
        size_t nws = 0, last_rn = 0;
        while (fl(s, p + nws) & CPT_SPACE) {
            uint32_t d = cp(s, p + nws);
            if (d == '\r' || d == '\n')
                last_rn = p + nws + 1;
            nws++;
        }
        if (last_rn > 0) {
            p = last_rn;
            emit(s, p);
            continue;
        }
        if (nws > 1 && cp(s, p + nws) != OOR) {
            p += nws - 1;
            emit(s, p);
            continue;
        }
        if (nws > 0) {
            p += nws;
            emit(s, p);
            continue;
        }
        emit(s, ++p);
    }
}

/* ---- regexes run on collapsed text ---- */
static const char RE_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
static const char RE_LLAMA3[] =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_QWEN2[] =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

struct pre_def {
    const char *names; /* '|'-separated */
    int flags;         /* TOK_PRE_* */
    const char *re[7];
};

/* The lists of llama.cpp's llm_tokenizer_bpe for the pre-tokenizers whose
 * regexes are ASCII-only (all of them can use the collapsed text). */
static const struct pre_def g_pre[] = {
    {"default", 0, {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}},
    {"llama3|llama-v3|llama-bpe|falcon3|falcon-h1|pixtral|midm-2.0|lfm2|jina-v5-nano",
     TOK_PRE_IGNORE_MERGES | TOK_PRE_ADD_BOS,
     {RE_LLAMA3}},
    {"dbrx|smaug-bpe", 0, {RE_LLAMA3}},
    {"glm4|chatglm-bpe", TOK_PRE_NO_BOS, {RE_LLAMA3}},
    {"falcon", 0, {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}},
    {"starcoder|refact|codeshell|exaone|minerva-7b", 0, {"\\p{N}", RE_GPT2}},
    {"command-r|smollm", TOK_PRE_NO_CLEAN, {"\\p{N}", RE_GPT2}},
    {"gpt-2|phi-2|jina-es|jina-de|gigachat|jina-v2-es|jina-v2-de|a.x-4.0|mellum|modern-bert|"
     "jina-v1-en|jina-v2-code|roberta-bpe|exaone4|mpt|olmo|jais",
     0,
     {RE_GPT2}},
    {"trillion|granite-docling", TOK_PRE_NO_CLEAN, {RE_GPT2}},
    {"qwen2|deepseek-r1-qwen|kormo|f2llmv2|hunyuan|solar-open|grok-2",
     TOK_PRE_NO_CLEAN,
     {RE_QWEN2}},
    {"megrez|stablelm2", 0, {RE_QWEN2}},
    {"jais-2",
     0,
     {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
      "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s{512}(?!\\S)|\\s{256}(?!\\S)|"
      "\\s{128}(?!\\S)|\\s{64}(?!\\S)|\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)|"
      "\\s{1,2}(?!\\S)|\\s{1}"}},
    {"tekken",
     TOK_PRE_NO_CLEAN | TOK_PRE_IGNORE_MERGES | TOK_PRE_ADD_BOS,
     {"[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?"
      "((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|"
      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    {"gpt-4o|llama4|kanana2|minimax-m2",
     TOK_PRE_NO_CLEAN,
     {"[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR]["
      "eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{"
      "L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| "
      "?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    {"bailingmoe|bailingmoe2|llada-moe",
     TOK_PRE_NO_CLEAN,
     {"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
      "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"}},
    {"seed-coder",
     TOK_PRE_NO_CLEAN,
     {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
      "\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    {"chameleon",
     TOK_PRE_NO_CLEAN | TOK_PRE_ADD_BOS,
     {"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}",
      "[\\p{P}!-/:-@\\[-`{-~]", RE_GPT2}},
};

static bool name_in(const char *names, const char *name) {
    size_t n = strlen(name);
    for (const char *p = names; *p;) {
        const char *e = strchr(p, '|');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !memcmp(p, name, n))
            return true;
        if (!e)
            break;
        p = e + 1;
    }
    return false;
}

/* Category bytes of the collapsed text / regex (llama.cpp's k_ucat_*). */
static const struct {
    const char *pat;
    char byte;
    const char *ascii;
} g_ucat[] = {
    {"\\p{N}", '\xD1', "0-9"},
    {"\\p{L}", '\xD2', "A-Za-z"},
    {"\\p{P}", '\xD3', "!-#%-*,-/:-;?-@\\[-\\]_\\{\\}"},
    {"\\p{M}", '\xD4', ""},
    {"\\p{S}", '\xD5', "\\$\\+<->^`\\|"},
    {"\\p{Lu}", '\xD2', "A-Za-z"},
    {"\\p{Ll}", '\xD2', "A-Za-z"},
    {"\\p{Lt}", '\xD2', "A-Za-z"},
    {"\\p{Lm}", '\xD2', "A-Za-z"},
    {"\\p{Lo}", '\xD2', "A-Za-z"},
};

/* Rewrites \p{..} as llama.cpp does; returns malloc'd string or NULL. */
static char *collapse_regex(const char *re) {
    size_t n = strlen(re);
    char *o = malloc(n * 24 + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    bool inside = false;
    for (size_t i = 0; i < n; i++) {
        if (re[i] == '[' && (i == 0 || re[i - 1] != '\\')) {
            o[k++] = '[';
            inside = true;
            continue;
        }
        if (inside && re[i] == ']' && re[i - 1] != '\\') {
            o[k++] = ']';
            inside = false;
            continue;
        }
        if (re[i] == '\\' && i + 3 < n && re[i + 1] == 'p' && re[i + 2] == '{') {
            const char *close = strchr(re + i + 3, '}');
            bool done = false;
            if (close && (size_t)(close - re) <= i + 10) {
                size_t plen = (size_t)(close - re) - i + 1;
                for (size_t u = 0; u < sizeof g_ucat / sizeof g_ucat[0]; u++) {
                    if (strlen(g_ucat[u].pat) == plen && !memcmp(g_ucat[u].pat, re + i, plen)) {
                        if (!inside)
                            o[k++] = '[';
                        o[k++] = g_ucat[u].byte;
                        size_t al = strlen(g_ucat[u].ascii);
                        memcpy(o + k, g_ucat[u].ascii, al);
                        k += al;
                        if (!inside)
                            o[k++] = ']';
                        i += plen - 1;
                        done = true;
                        break;
                    }
                }
            }
            if (done)
                continue;
        }
        o[k++] = re[i];
    }
    o[k] = 0;
    return o;
}

int tok_pretok_init(struct tok_pretok *p, const char *name, struct ica_error *err) {
    memset(p, 0, sizeof *p);
    const struct pre_def *def = NULL;
    const char *nm = (name && *name) ? name : "default";
    for (size_t i = 0; i < sizeof g_pre / sizeof g_pre[0]; i++)
        if (name_in(g_pre[i].names, nm))
            def = &g_pre[i];
    if (!def)
        return ica_seterr(err, ICA_ERR_UNSUPPORTED,
                          "tokenizer.ggml.pre: unsupported pre-tokenizer '%s'", nm);
    p->flags = def->flags;
    for (int i = 0; i < 7 && def->re[i]; i++) {
        struct tok_split *s = &p->splits[p->n++];
        if (def->re[i] == RE_GPT2) {
            s->kind = SPLIT_GPT2;
            continue;
        }
        if (def->re[i] == RE_LLAMA3) {
            s->kind = SPLIT_LLAMA3;
            continue;
        }
        if (def->re[i] == RE_QWEN2) {
            s->kind = SPLIT_QWEN2;
            continue;
        }
        s->kind = SPLIT_REGEX;
        char *cre = collapse_regex(def->re[i]);
        if (!cre) {
            tok_pretok_free(p);
            return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
        }
        int ec;
        PCRE2_SIZE eo;
        pcre2_code *code = pcre2_compile((PCRE2_SPTR)cre, PCRE2_ZERO_TERMINATED, 0, &ec, &eo, NULL);
        free(cre);
        if (!code) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(ec, msg, sizeof msg);
            tok_pretok_free(p);
            return ica_seterr(err, ICA_ERR_FORMAT, "pre-tokenizer '%s': regex %d: %s", nm, i,
                              (const char *)msg);
        }
        (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* interpreter if JIT fails */
        s->code = code;
    }
    return ICA_OK;
}

void tok_pretok_free(struct tok_pretok *p) {
    for (int i = 0; i < p->n; i++)
        if (p->splits[i].code)
            pcre2_code_free((pcre2_code *)p->splits[i].code);
    p->n = 0;
}

static char collapse_cpt(uint32_t c) {
    if (c < 128)
        return (char)c;
    unsigned f = tok_cpt_flags(c);
    if (f & CPT_SPACE)
        return '\x0B';
    if (f & CPT_NUMBER)
        return '\xD1';
    if (f & CPT_LETTER)
        return '\xD2';
    if (f & CPT_PUNCT)
        return '\xD3';
    if (f & CPT_MARK)
        return '\xD4';
    if (f & CPT_SYMBOL)
        return '\xD5';
    return '\xD0';
}

static int split_regex(const struct tok_split *s, const char *text, const size_t *in, size_t n_in,
                       struct lens *out) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern((pcre2_code *)s->code, NULL);
    if (!md)
        return ICA_ERR_NOMEM;
    size_t start = 0;
    for (size_t w = 0; w < n_in; w++) {
        const char *sub = text + start;
        size_t len = in[w], pos = 0;
        while (pos < len) {
            int rc = pcre2_match((pcre2_code *)s->code, (PCRE2_SPTR)sub, len, pos, 0, md, NULL);
            if (rc < 0)
                break;
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            size_t ms = ov[0], me = ov[1];
            if (me == ms) { /* empty match: none of our regexes produce one */
                pos = ms + 1;
                continue;
            }
            push(out, ms - pos);
            push(out, me - ms);
            pos = me;
        }
        push(out, len - pos);
        start += len;
    }
    pcre2_match_data_free(md);
    return out->oom ? ICA_ERR_NOMEM : ICA_OK;
}

int tok_pretok_split(const struct tok_pretok *p, const uint32_t *cpts, size_t n, size_t **lens_out,
                     size_t *n_out) {
    *lens_out = NULL;
    *n_out = 0;
    if (n == 0)
        return ICA_OK;
    struct lens cur = {0}, nxt = {0};
    push(&cur, n);
    char *collapsed = NULL;
    for (int i = 0; i < p->n && !cur.oom; i++) {
        const struct tok_split *s = &p->splits[i];
        nxt.n = 0;
        if (s->kind == SPLIT_REGEX) {
            if (!collapsed) {
                collapsed = malloc(n);
                if (!collapsed) {
                    cur.oom = true;
                    break;
                }
                for (size_t k = 0; k < n; k++)
                    collapsed[k] = collapse_cpt(cpts[k]);
            }
            if (split_regex(s, collapsed, cur.v, cur.n, &nxt)) {
                cur.oom = true;
                break;
            }
        } else {
            size_t start = 0;
            for (size_t w = 0; w < cur.n; w++) {
                struct scan sc = {cpts, start, start + cur.v[w], start, &nxt};
                if (s->kind == SPLIT_GPT2)
                    scan_gpt2(&sc);
                else
                    scan_llama3(&sc, s->kind == SPLIT_LLAMA3 ? 3 : 1);
                start += cur.v[w];
            }
        }
        if (nxt.oom) {
            cur.oom = true;
            break;
        }
        struct lens t = cur;
        cur = nxt;
        nxt = t;
    }
    free(collapsed);
    free(nxt.v);
    if (cur.oom) {
        free(cur.v);
        return ICA_ERR_NOMEM;
    }
    *lens_out = cur.v;
    *n_out = cur.n;
    return ICA_OK;
}
