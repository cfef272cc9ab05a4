/* Chat templates by fingerprint, rendered by hand. Each renderer follows the
 * model family's published Jinja template (tokenizer_config.json on the
 * model's page; Mistral's cookbook for its versions); comments quote the
 * detail that matters. */
#include "icalign/chat_template.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum ct_kind {
    CT_LLAMA2,
    CT_LLAMA3,
    CT_CHATML,
    CT_MISTRAL_V1,
    CT_MISTRAL_V3,
    CT_MISTRAL_V3_TEKKEN,
    CT_MISTRAL_V7,
    CT_GEMMA,
    CT_PHI3,
    CT_CUSTOM,
};

enum { F_BEGIN, F_SYSTEM, F_USER, F_ASSISTANT, F_GENERATION, F_END, F_N };

struct chat_template {
    enum ct_kind kind;
    const char *name;
    bool leading_bos;
    const char *eot; /* NULL: eos_text */
    /* custom only */
    bool owned, trim;
    char *field[F_N];
    char *owned_name;
};

static const struct chat_template g_builtin[] = {
    {CT_LLAMA2, "llama2", true, NULL, false, false, {0}, NULL},
    {CT_LLAMA3, "llama3", true, "<|eot_id|>", false, false, {0}, NULL},
    {CT_CHATML, "chatml", false, "<|im_end|>", false, false, {0}, NULL},
    {CT_MISTRAL_V1, "mistral-v1", true, NULL, false, false, {0}, NULL},
    {CT_MISTRAL_V3, "mistral-v3", true, NULL, false, false, {0}, NULL},
    {CT_MISTRAL_V3_TEKKEN, "mistral-v3-tekken", true, NULL, false, false, {0}, NULL},
    {CT_MISTRAL_V7, "mistral-v7", true, NULL, false, false, {0}, NULL},
    {CT_GEMMA, "gemma", true, "<end_of_turn>", false, false, {0}, NULL},
    {CT_PHI3, "phi3", false, "<|end|>", false, false, {0}, NULL},
};
#define N_BUILTIN (sizeof g_builtin / sizeof g_builtin[0])

const char *chat_template_names(void) {
    return "llama2, llama3, chatml (qwen, qwen2), mistral-v1, mistral-v3, mistral-v3-tekken, "
           "mistral-v7, gemma, phi3";
}

const struct chat_template *chat_template_from_name(const char *name) {
    if (!name)
        return NULL;
    if (!strcmp(name, "qwen") || !strcmp(name, "qwen2"))
        name = "chatml";
    for (size_t i = 0; i < N_BUILTIN; i++)
        if (!strcmp(name, g_builtin[i].name))
            return &g_builtin[i];
    return NULL;
}

static const struct chat_template *kind(enum ct_kind k) {
    for (size_t i = 0; i < N_BUILTIN; i++)
        if (g_builtin[i].kind == k)
            return &g_builtin[i];
    return NULL;
}

const struct chat_template *chat_template_detect(const char *j) {
    if (!j)
        return NULL;
    const struct chat_template *byname = chat_template_from_name(j);
    if (byname)
        return byname;
#define HAS(s) (strstr(j, (s)) != NULL)
    if (HAS("<|im_start|>")) /* Phi-4 (<|im_sep|>) and SmolVLM are not ChatML */
        return HAS("<|im_sep|>") || HAS("<end_of_utterance>") ? NULL : kind(CT_CHATML);
    if (!strncmp(j, "mistral", 7) || HAS("[INST]")) {
        if (HAS("[SYSTEM_PROMPT]"))
            return kind(CT_MISTRAL_V7);
        if (HAS("' [INST] ' + system_message") || HAS("[AVAILABLE_TOOLS]")) {
            if (HAS(" [INST]"))
                return kind(CT_MISTRAL_V1);
            if (HAS("\"[INST]\""))
                return kind(CT_MISTRAL_V3_TEKKEN);
            return kind(CT_MISTRAL_V3);
        }
        return kind(CT_LLAMA2);
    }
    if (HAS("<|assistant|>") && HAS("<|end|>"))
        return kind(CT_PHI3);
    if (HAS("<start_of_turn>"))
        return kind(CT_GEMMA);
    if (HAS("<|start_header_id|>") && HAS("<|end_header_id|>"))
        return kind(CT_LLAMA3);
#undef HAS
    return NULL;
}

const char *chat_template_name(const struct chat_template *t) {
    return t->owned_name ? t->owned_name : t->name;
}

bool chat_template_leading_bos(const struct chat_template *t) {
    return t->leading_bos;
}

const char *chat_template_end_of_turn(const struct chat_template *t, const char *eos_text) {
    return t->eot ? t->eot : eos_text ? eos_text : "";
}

void chat_template_free(struct chat_template *t) {
    if (!t || !t->owned)
        return;
    for (int i = 0; i < F_N; i++)
        free(t->field[i]);
    free(t->owned_name);
    free(t);
}

/* ==== rendering ==== */

struct sb {
    char *p;
    size_t len, cap;
    bool oom;
};

static void sb_add(struct sb *b, const char *s, size_t n) {
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->len + n + 1)
            c *= 2;
        char *np = realloc(b->p, c);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = c;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_s(struct sb *b, const char *s) {
    sb_add(b, s, strlen(s));
}

/* Jinja's trim / Python's strip(): ASCII whitespace at both ends. */
static void sb_trim(struct sb *b, const char *s) {
    size_t n = strlen(s), a = 0;
    while (a < n && isspace((unsigned char)s[a]))
        a++;
    while (n > a && isspace((unsigned char)s[n - 1]))
        n--;
    sb_add(b, s + a, n - a);
}

static const char *role_str(enum backend_role r) {
    return r == BACKEND_SYSTEM ? "system" : r == BACKEND_ASSISTANT ? "assistant" : "user";
}

static const char *content(const struct backend_message *m) {
    return m->content ? m->content : "";
}

/* llama-2-chat: system folded into the first user turn inside <<SYS>>, the
 * whole turn .strip()'d; every user turn is bos + "[INST] ... [/INST]", every
 * assistant turn " " + strip(content) + " " + eos. No generation prompt. */
static void r_llama2(struct sb *b, const struct backend_message *m, size_t n, const char *sys,
                     const char *bos, const char *eos) {
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        if (m[i].role == BACKEND_USER) {
            sb_s(b, bos);
            sb_s(b, "[INST] ");
            struct sb turn = {0};
            if (first && sys) {
                sb_s(&turn, "<<SYS>>\n");
                sb_s(&turn, sys);
                sb_s(&turn, "\n<</SYS>>\n\n");
            }
            sb_s(&turn, content(&m[i]));
            if (turn.oom)
                b->oom = true;
            else
                sb_trim(b, turn.p ? turn.p : "");
            free(turn.p);
            sb_s(b, " [/INST]");
        } else {
            sb_s(b, " ");
            sb_trim(b, content(&m[i]));
            sb_s(b, " ");
            sb_s(b, eos);
        }
        first = false;
    }
}

/* Llama 3 instruct: bos once, then per message
 * <|start_header_id|>role<|end_header_id|>\n\n + trim(content) + <|eot_id|>. */
static void r_llama3(struct sb *b, const struct backend_message *m, size_t n, bool gen,
                     const char *bos) {
    sb_s(b, bos);
    for (size_t i = 0; i < n; i++) {
        sb_s(b, "<|start_header_id|>");
        sb_s(b, role_str(m[i].role));
        sb_s(b, "<|end_header_id|>\n\n");
        sb_trim(b, content(&m[i]));
        sb_s(b, "<|eot_id|>");
    }
    if (gen)
        sb_s(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void r_chatml(struct sb *b, const struct backend_message *m, size_t n, bool gen) {
    for (size_t i = 0; i < n; i++) {
        sb_s(b, "<|im_start|>");
        sb_s(b, role_str(m[i].role));
        sb_s(b, "\n");
        sb_s(b, content(&m[i]));
        sb_s(b, "<|im_end|>\n");
    }
    if (gen)
        sb_s(b, "<|im_start|>assistant\n");
}

/* Mistral v1/v3/v3-tekken (Mistral's cookbook): bos once; the system message
 * goes into the first user turn (v1: loop.first) or the last message when it
 * is a user turn (v3: loop.last). v1: " [INST] " .. " [/INST]", assistant
 * " " + content + eos; v3: "[INST] " .. "[/INST]", assistant " " +
 * trim(content) + eos; tekken: "[INST]" .. "[/INST]", assistant content + eos. */
static void r_mistral(struct sb *b, enum ct_kind k, const struct backend_message *m, size_t n,
                      const char *sys, const char *bos, const char *eos) {
    sb_s(b, bos);
    size_t first_user = n;
    for (size_t i = 0; i < n && first_user == n; i++)
        if (m[i].role == BACKEND_USER)
            first_user = i;
    for (size_t i = 0; i < n; i++) {
        if (m[i].role == BACKEND_USER) {
            bool with_sys = sys && (k == CT_MISTRAL_V1 ? i == first_user : i == n - 1);
            sb_s(b, k == CT_MISTRAL_V1 ? " [INST] " : k == CT_MISTRAL_V3 ? "[INST] " : "[INST]");
            if (with_sys) {
                sb_s(b, sys);
                sb_s(b, "\n\n");
            }
            sb_s(b, content(&m[i]));
            sb_s(b, k == CT_MISTRAL_V1 ? " [/INST]" : "[/INST]");
        } else {
            if (k == CT_MISTRAL_V3_TEKKEN) {
                sb_s(b, content(&m[i]));
            } else {
                sb_s(b, " ");
                if (k == CT_MISTRAL_V3)
                    sb_trim(b, content(&m[i]));
                else
                    sb_s(b, content(&m[i]));
            }
            sb_s(b, eos);
        }
    }
}

/* Mistral v7 (Mistral-Large-2411): bos, then [SYSTEM_PROMPT] s[/SYSTEM_PROMPT],
 * [INST] u[/INST], " " + a + eos, in order. */
static void r_mistral_v7(struct sb *b, const struct backend_message *m, size_t n, const char *bos,
                         const char *eos) {
    sb_s(b, bos);
    for (size_t i = 0; i < n; i++) {
        if (m[i].role == BACKEND_SYSTEM) {
            sb_s(b, "[SYSTEM_PROMPT] ");
            sb_s(b, content(&m[i]));
            sb_s(b, "[/SYSTEM_PROMPT]");
        } else if (m[i].role == BACKEND_USER) {
            sb_s(b, "[INST] ");
            sb_s(b, content(&m[i]));
            sb_s(b, "[/INST]");
        } else {
            sb_s(b, " ");
            sb_s(b, content(&m[i]));
            sb_s(b, eos);
        }
    }
}

/* Gemma (3's template; 1 and 2 refuse a system role): bos, the system text +
 * "\n\n" opens the first turn, "assistant" is "model", content trimmed. */
static void r_gemma(struct sb *b, const struct backend_message *m, size_t n, const char *sys,
                    bool gen, const char *bos) {
    sb_s(b, bos);
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        sb_s(b, "<start_of_turn>");
        sb_s(b, m[i].role == BACKEND_ASSISTANT ? "model" : "user");
        sb_s(b, "\n");
        if (first && sys) {
            sb_s(b, sys);
            sb_s(b, "\n\n");
        }
        first = false;
        sb_trim(b, content(&m[i]));
        sb_s(b, "<end_of_turn>\n");
    }
    if (gen)
        sb_s(b, "<start_of_turn>model\n");
}

/* Phi-3 (mini-4k-instruct, later revision): <|role|>\n + content + <|end|>\n;
 * generation prompt <|assistant|>\n, else eos at the end. */
static void r_phi3(struct sb *b, const struct backend_message *m, size_t n, bool gen,
                   const char *eos) {
    for (size_t i = 0; i < n; i++) {
        sb_s(b, "<|");
        sb_s(b, role_str(m[i].role));
        sb_s(b, "|>\n");
        sb_s(b, content(&m[i]));
        sb_s(b, "<|end|>\n");
    }
    sb_s(b, gen ? "<|assistant|>\n" : eos);
}

/* Expands {bos}, {eos} and {content} in a custom field. */
static void expand(struct sb *b, const char *f, const char *c, bool trim, const char *bos,
                   const char *eos) {
    while (*f) {
        if (*f == '{') {
            if (!strncmp(f, "{content}", 9)) {
                if (trim)
                    sb_trim(b, c);
                else
                    sb_s(b, c);
                f += 9;
                continue;
            }
            if (!strncmp(f, "{bos}", 5)) {
                sb_s(b, bos);
                f += 5;
                continue;
            }
            if (!strncmp(f, "{eos}", 5)) {
                sb_s(b, eos);
                f += 5;
                continue;
            }
        }
        const char *nx = strchr(f + 1, '{');
        size_t k = nx ? (size_t)(nx - f) : strlen(f);
        sb_add(b, f, k);
        f += k;
    }
}

static int r_custom(struct sb *b, const struct chat_template *t, const struct backend_message *m,
                    size_t n, bool gen, const char *bos, const char *eos, struct ica_error *err) {
    expand(b, t->field[F_BEGIN] ? t->field[F_BEGIN] : "", "", false, bos, eos);
    for (size_t i = 0; i < n; i++) {
        int f = m[i].role == BACKEND_SYSTEM ? F_SYSTEM
                : m[i].role == BACKEND_USER ? F_USER
                                            : F_ASSISTANT;
        if (!t->field[f])
            return ica_seterr(err, ICA_ERR_ARG, "chat template %s has no %s turn",
                              chat_template_name(t), role_str(m[i].role));
        expand(b, t->field[f], content(&m[i]), t->trim, bos, eos);
    }
    const char *tail = gen ? t->field[F_GENERATION] : t->field[F_END];
    expand(b, tail ? tail : "", "", false, bos, eos);
    return ICA_OK;
}

int chat_template_render(const struct chat_template *t, const struct backend_message *msgs,
                         size_t n, bool gen, const char *bos, const char *eos, char **out,
                         struct ica_error *err) {
    *out = NULL;
    if (!t)
        return ica_seterr(err, ICA_ERR_ARG, "no chat template");
    bos = bos ? bos : "";
    eos = eos ? eos : "";
    /* built-ins take the system message only as the first message */
    const char *sys = NULL;
    size_t skip = 0;
    if (t->kind != CT_CUSTOM) {
        for (size_t i = 0; i < n; i++)
            if (msgs[i].role == BACKEND_SYSTEM && i > 0)
                return ica_seterr(err, ICA_ERR_ARG,
                                  "chat template %s: a system message may only come first "
                                  "(message %zu is one)",
                                  t->name, i + 1);
        if (n > 0 && msgs[0].role == BACKEND_SYSTEM) {
            sys = content(&msgs[0]);
            /* templates that fold the system text into a turn skip it here */
            if (t->kind != CT_LLAMA3 && t->kind != CT_CHATML && t->kind != CT_MISTRAL_V7 &&
                t->kind != CT_PHI3)
                skip = 1;
        }
    }
    struct sb b = {0};
    int rc = ICA_OK;
    const struct backend_message *m = msgs + skip;
    size_t k = n - skip;
    switch (t->kind) {
    case CT_LLAMA2:
        r_llama2(&b, m, k, sys, bos, eos);
        break;
    case CT_LLAMA3:
        r_llama3(&b, m, k, gen, bos);
        break;
    case CT_CHATML:
        r_chatml(&b, m, k, gen);
        break;
    case CT_MISTRAL_V1:
    case CT_MISTRAL_V3:
    case CT_MISTRAL_V3_TEKKEN:
        r_mistral(&b, t->kind, m, k, sys, bos, eos);
        break;
    case CT_MISTRAL_V7:
        r_mistral_v7(&b, m, k, bos, eos);
        break;
    case CT_GEMMA:
        r_gemma(&b, m, k, sys, gen, bos);
        break;
    case CT_PHI3:
        r_phi3(&b, m, k, gen, eos);
        break;
    case CT_CUSTOM:
        rc = r_custom(&b, t, m, k, gen, bos, eos, err);
        break;
    }
    if (rc == ICA_OK && !b.oom && !b.p)
        sb_add(&b, "", 0);
    if (rc == ICA_OK && b.oom)
        rc = ica_seterr(err, ICA_ERR_NOMEM, "out of memory rendering the chat template");
    if (rc != ICA_OK) {
        free(b.p);
        return rc;
    }
    *out = b.p;
    return ICA_OK;
}

/* ==== custom template files ==== */

static const char *const g_fields[F_N] = {"begin",     "system",     "user",
                                          "assistant", "generation", "end"};

/* Parses a double-quoted string with \n \t \r \\ \" escapes at *p. */
static char *parse_quoted(const char **p) {
    const char *s = *p;
    if (*s != '"')
        return NULL;
    s++;
    struct sb b = {0};
    sb_add(&b, "", 0);
    while (*s && *s != '"' && *s != '\n') {
        char c = *s++;
        if (c == '\\') {
            char e = *s ? *s++ : '\0';
            c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
            if (e != 'n' && e != 't' && e != 'r' && e != '\\' && e != '"') {
                free(b.p);
                return NULL;
            }
        }
        sb_add(&b, &c, 1);
    }
    if (*s != '"' || b.oom) {
        free(b.p);
        return NULL;
    }
    *p = s + 1;
    return b.p;
}

int chat_template_load(const char *path, struct chat_template **out, struct ica_error *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return ica_seterr(err, ICA_ERR_IO, "cannot open chat template %s: %s", path,
                          strerror(errno));
    struct chat_template *t = calloc(1, sizeof *t);
    size_t nm = strlen(path) + 8;
    char *name = malloc(nm);
    if (!t || !name) {
        fclose(f);
        free(t);
        free(name);
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
    }
    snprintf(name, nm, "custom:%s", path);
    t->kind = CT_CUSTOM;
    t->owned = true;
    t->owned_name = name;
    int rc = ICA_OK;
    char line[8192];
    int lineno = 0;
    while (rc == ICA_OK && fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            rc = ica_seterr(err, ICA_ERR_FORMAT, "%s:%d: line too long", path, lineno);
            break;
        }
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '#' || *p == '\n' || *p == '\r' || !*p)
            continue;
        const char *k = p;
        while (*p && (isalnum((unsigned char)*p) || *p == '_'))
            p++;
        size_t kl = (size_t)(p - k);
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != '=') {
            rc = ica_seterr(err, ICA_ERR_FORMAT, "%s:%d: expected key = \"value\"", path, lineno);
            break;
        }
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        char *v = parse_quoted(&p);
        if (!v) {
            rc = ica_seterr(err, ICA_ERR_FORMAT,
                            "%s:%d: value must be a double-quoted string (escapes \\n \\t \\r "
                            "\\\\ \\\")",
                            path, lineno);
            break;
        }
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
            p++;
        if (*p && *p != '#') {
            free(v);
            rc = ica_seterr(err, ICA_ERR_FORMAT, "%s:%d: text after the value", path, lineno);
            break;
        }
        if (kl == 4 && !strncmp(k, "trim", 4)) {
            if (strcmp(v, "yes") && strcmp(v, "no")) {
                free(v);
                rc = ica_seterr(err, ICA_ERR_FORMAT, "%s:%d: trim must be \"yes\" or \"no\"", path,
                                lineno);
                break;
            }
            t->trim = !strcmp(v, "yes");
            free(v);
            continue;
        }
        int fi = -1;
        for (int i = 0; i < F_N; i++)
            if (strlen(g_fields[i]) == kl && !strncmp(k, g_fields[i], kl))
                fi = i;
        if (fi < 0) {
            free(v);
            rc = ica_seterr(err, ICA_ERR_FORMAT,
                            "%s:%d: unknown key (begin, system, user, assistant, generation, "
                            "end, trim)",
                            path, lineno);
            break;
        }
        if ((fi == F_SYSTEM || fi == F_USER || fi == F_ASSISTANT) && !strstr(v, "{content}")) {
            free(v);
            rc = ica_seterr(err, ICA_ERR_FORMAT, "%s:%d: %s must contain {content}", path, lineno,
                            g_fields[fi]);
            break;
        }
        free(t->field[fi]);
        t->field[fi] = v;
    }
    fclose(f);
    if (rc == ICA_OK && (!t->field[F_USER] || !t->field[F_ASSISTANT]))
        rc = ica_seterr(err, ICA_ERR_FORMAT, "%s: a chat template needs user and assistant", path);
    if (rc != ICA_OK) {
        chat_template_free(t);
        return rc;
    }
    t->leading_bos = t->field[F_BEGIN] && !strncmp(t->field[F_BEGIN], "{bos}", 5);
    *out = t;
    return ICA_OK;
}
