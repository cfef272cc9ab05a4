/* Rendering conversations as the URIAL reference does (METHOD.md §1.4).
 *
 * Reference (URIAL/ICL src/fastchat_conversation.py, style URIAL / URIAL_V6):
 *   prompt = system_text
 *   for each message m with role r (even index "# Query:", odd "# Answer:"):
 *       urial_backticks: m ? "\n" r "\n```\n" m "\n```\n" : "\n" r "\n```\n"
 *       urial_v5       : m ? "\n" r "\n\n" m "\n\n"        : "\n" r "\n\n"
 *       urial_v6       : m ? "\n\n" r "\n" strip_nl(m) "\n" : "\n\n" r "\n"
 *   then the open generation slot = the assistant role rendered with an empty message.
 * A falsy (empty) message has no body and no closing fence: the empty-message quirk. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

int align_render_prefix(const struct align_set *s, char **out, size_t *len, struct ica_error *e) {
    *out = NULL;
    if (s->n > 0)
        return align_set_write(s, out, len, e);
    size_t hl = strlen(s->header);
    if (hl >= 2 && s->header[hl - 1] == '\n' && s->header[hl - 2] == '\n')
        hl--; /* the query block follows the rules after one empty line, like a first demo */
    char *r = align_strndup(s->header, hl);
    if (!r)
        return align_nomem(e);
    if (len)
        *len = hl;
    *out = r;
    return ICA_OK;
}

static void render_msg(struct abuf *b, enum align_style st, int role, const char *m, bool lead) {
    static const char *const urial_roles[2] = {"# Query:", "# Answer:"};
    static const char *const user_roles[2] = {"# User:", "# Assistant:"};
    bool empty = !m || !*m;
    switch (st) {
    case ALIGN_STYLE_URIAL:
        if (lead)
            abuf_adds(b, "\n");
        abuf_adds(b, urial_roles[role]);
        abuf_adds(b, "\n```\n");
        if (!empty) {
            abuf_adds(b, m);
            abuf_adds(b, "\n```\n");
        }
        break;
    case ALIGN_STYLE_USER_V5:
        if (lead)
            abuf_adds(b, "\n");
        abuf_adds(b, user_roles[role]);
        abuf_adds(b, "\n\n");
        if (!empty) {
            abuf_adds(b, m);
            abuf_adds(b, "\n\n");
        }
        break;
    case ALIGN_STYLE_USER_V6:
        if (lead)
            abuf_adds(b, "\n\n");
        abuf_adds(b, user_roles[role]);
        abuf_adds(b, "\n");
        if (!empty) {
            size_t a = 0, z = strlen(m);
            while (a < z && m[a] == '\n')
                a++;
            while (z > a && m[z - 1] == '\n')
                z--;
            abuf_add(b, m + a, z - a);
            abuf_adds(b, "\n");
        }
        break;
    }
}

static int suffix_into(struct abuf *b, const struct align_set *s, const char *const *msgs, size_t n,
                       bool prefix_empty) {
    for (size_t i = 0; i <= n; i++) {
        const char *m = i < n ? msgs[i] : NULL;
        int role = i < n ? (int)(i % 2) : 1;
        render_msg(b, s->style, role, m, !(i == 0 && prefix_empty));
    }
    return b->failed ? ICA_ERR_NOMEM : ICA_OK;
}

static bool prefix_is_empty(const struct align_set *s) {
    return s->n == 0 && s->header[0] == '\0';
}

int align_render_suffix(const struct align_set *s, const char *const *msgs, size_t n, char **out,
                        size_t *len, struct ica_error *e) {
    *out = NULL;
    if (n > 0 && !msgs)
        return ica_seterr(e, ICA_ERR_ARG, "align: %zu messages but no array", n);
    struct abuf b = {0};
    if (suffix_into(&b, s, msgs, n, prefix_is_empty(s)) != ICA_OK)
        return align_nomem(e);
    if (!(*out = abuf_take(&b, len)))
        return align_nomem(e);
    return ICA_OK;
}

int align_render(const struct align_set *s, const char *const *msgs, size_t n, char **out,
                 size_t *len, struct ica_error *e) {
    *out = NULL;
    if (n > 0 && !msgs)
        return ica_seterr(e, ICA_ERR_ARG, "align: %zu messages but no array", n);
    char *pre = NULL;
    size_t pl = 0;
    int rc = align_render_prefix(s, &pre, &pl, e);
    if (rc)
        return rc;
    struct abuf b = {0};
    abuf_add(&b, pre, pl);
    free(pre);
    if (suffix_into(&b, s, msgs, n, pl == 0) != ICA_OK)
        return align_nomem(e);
    if (!(*out = abuf_take(&b, len)))
        return align_nomem(e);
    return ICA_OK;
}
