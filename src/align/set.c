/* Demonstration sets: lifecycle, accessors, URIAL-format parser and writer.
 *
 * URIAL layout (METHOD.md §1.3), verified against every ICL-repository file:
 *   FILE   := HEADER BLOCK ( SEP BLOCK )* TRAILER
 *   BLOCK  := "# Query:\n```\n" QUERY "\n```\n" [ "\n# Answer:\n```\n" ANSWER "\n```\n" ]
 *   SEP    := "\n" | "\n" BRIDGE          (at most one BRIDGE: the `unsupervised` layout)
 *   TRAILER:= whitespace (normally empty: files end with "```\n")
 * QUERY/ANSWER are raw text and may contain ``` fences themselves, so a block ends at the
 * first "\n```\n" that is followed by one of: end of file (or only whitespace), "\n#
 * Answer:\n```\n" (query only), "\n# Query:\n```\n", or "\n" + a bridge paragraph without ``` that
 * runs up to the next "# Query:\n```\n" line. A closing fence of the block always lies between an
 * inner fence and the next block, so an inner fence can never be followed by a ```-free run to the
 * next block: the rule is unambiguous.
 *
 * "# User:" layout (URIAL inst_help_v3/v5/v6): HEADER ROLE "\n"{r} MSG "\n"{s} ROLE ... with
 * ROLE alternating "# User:" and "# Assistant:" at the start of a line; messages are stored
 * without surrounding newlines and the newline counts r and s of the first message are kept. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define Q_OPEN    "# Query:\n```\n"
#define A_OPEN    "\n# Answer:\n```\n"
#define FENCE_END "\n```\n"

/* ==== lifecycle and accessors ==== */

struct align_set *align_set_new(const char *header) {
    struct align_set *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->header = align_strdup(header ? header : "");
    s->trailer = align_strdup("");
    if (!s->header || !s->trailer) {
        align_set_free(s);
        return NULL;
    }
    s->ua_role_nl = 1;
    s->ua_sep_nl = 3;
    return s;
}

static void demo_clear(struct align_demo *d) {
    free(d->query);
    free(d->answer);
    free(d->source);
    free(d->id);
    memset(d, 0, sizeof *d);
}

void align_set_free(struct align_set *s) {
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        demo_clear(&s->demos[i]);
    free(s->demos);
    free(s->header);
    free(s->bridge);
    free(s->trailer);
    free(s);
}

const char *align_set_header(const struct align_set *s) {
    return s->header;
}
size_t align_set_count(const struct align_set *s) {
    return s->n;
}
const struct align_demo *align_set_demo(const struct align_set *s, size_t i) {
    return i < s->n ? &s->demos[i] : NULL;
}
enum align_style align_set_style(const struct align_set *s) {
    return s->style;
}
const char *align_set_bridge(const struct align_set *s, size_t *at) {
    if (at)
        *at = s->bridge_at;
    return s->bridge;
}
const char *align_set_trailer(const struct align_set *s) {
    return s->trailer;
}

static int demo_copy(struct align_demo *dst, const struct align_demo *src) {
    memset(dst, 0, sizeof *dst);
    dst->query = align_strdup(src->query ? src->query : "");
    dst->answer = src->answer ? align_strdup(src->answer) : NULL;
    dst->source = align_strdup(src->source ? src->source : "");
    dst->id = align_strdup(src->id ? src->id : "");
    if (!dst->query || (src->answer && !dst->answer) || !dst->source || !dst->id) {
        demo_clear(dst);
        return ICA_ERR_NOMEM;
    }
    return ICA_OK;
}

int align_set_insert(struct align_set *s, size_t pos, const struct align_demo *d,
                     struct ica_error *e) {
    if (pos > s->n)
        return ica_seterr(e, ICA_ERR_RANGE, "align: insert position %zu beyond %zu demos", pos,
                          s->n);
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        struct align_demo *nd = realloc(s->demos, cap * sizeof *nd);
        if (!nd)
            return align_nomem(e);
        s->demos = nd;
        s->cap = cap;
    }
    struct align_demo tmp;
    if (demo_copy(&tmp, d) != ICA_OK)
        return align_nomem(e);
    memmove(&s->demos[pos + 1], &s->demos[pos], (s->n - pos) * sizeof *s->demos);
    s->demos[pos] = tmp;
    s->n++;
    if (s->bridge && pos < s->bridge_at)
        s->bridge_at++;
    return ICA_OK;
}

int align_set_push(struct align_set *s, const struct align_demo *d, struct ica_error *e) {
    return align_set_insert(s, s->n, d, e);
}

struct align_set *align_set_clone(const struct align_set *src) {
    struct align_set *s = align_set_new(src->header);
    if (!s)
        return NULL;
    for (size_t i = 0; i < src->n; i++)
        if (align_set_push(s, &src->demos[i], NULL) != ICA_OK) {
            align_set_free(s);
            return NULL;
        }
    s->style = src->style;
    s->ua_role_nl = src->ua_role_nl;
    s->ua_sep_nl = src->ua_sep_nl;
    free(s->trailer);
    s->trailer = align_strdup(src->trailer);
    if (src->bridge) {
        s->bridge = align_strdup(src->bridge);
        s->bridge_at = src->bridge_at;
    }
    if (!s->trailer || (src->bridge && !s->bridge)) {
        align_set_free(s);
        return NULL;
    }
    return s;
}

int align_set_set_header(struct align_set *s, const char *header, struct ica_error *e) {
    char *h = align_strdup(header ? header : "");
    if (!h)
        return align_nomem(e);
    free(s->header);
    s->header = h;
    return ICA_OK;
}

int align_set_set_bridge(struct align_set *s, const char *text, size_t at, struct ica_error *e) {
    char *b = NULL;
    if (text) {
        if (at > s->n)
            return ica_seterr(e, ICA_ERR_RANGE, "align: bridge position %zu beyond %zu demos", at,
                              s->n);
        if (!(b = align_strdup(text)))
            return align_nomem(e);
    }
    free(s->bridge);
    s->bridge = b;
    s->bridge_at = text ? at : 0;
    return ICA_OK;
}

int align_set_set_answer(struct align_set *s, size_t i, const char *answer, struct ica_error *e) {
    if (i >= s->n)
        return ica_seterr(e, ICA_ERR_RANGE, "align: demo %zu of %zu", i, s->n);
    char *a = NULL;
    if (answer && !(a = align_strdup(answer)))
        return align_nomem(e);
    free(s->demos[i].answer);
    s->demos[i].answer = a;
    return ICA_OK;
}

int align_set_merge(struct align_set *s, const struct align_set *extra, bool after,
                    struct ica_error *e) {
    size_t pos = after ? s->n : 0;
    for (size_t i = 0; i < extra->n; i++) {
        int rc = align_set_insert(s, pos + i, &extra->demos[i], e);
        if (rc)
            return rc;
    }
    return ICA_OK;
}

/* ==== parser ==== */

static bool starts(const char *t, size_t n, size_t at, const char *lit) {
    size_t l = strlen(lit);
    return at <= n && n - at >= l && memcmp(t + at, lit, l) == 0;
}

static bool only_ws(const char *t, size_t from, size_t to) {
    for (size_t i = from; i < to; i++)
        if (t[i] != ' ' && t[i] != '\n' && t[i] != '\t')
            return false;
    return true;
}

/* Offset of the next "# Query:\n```\n" at a line start, at or after from; n when none. */
static size_t next_block(const char *t, size_t n, size_t from) {
    for (size_t i = from; i < n; i++) {
        if (t[i] == '#' && (i == 0 || t[i - 1] == '\n') && starts(t, n, i, Q_OPEN))
            return i;
    }
    return n;
}

static bool has_fence(const char *t, size_t from, size_t to) {
    for (size_t i = from; i + 3 <= to; i++)
        if (t[i] == '`' && t[i + 1] == '`' && t[i + 2] == '`')
            return true;
    return false;
}

enum term { T_NONE, T_EOF, T_ANSWER, T_NEXT, T_BRIDGE, T_BAD };

/* Finds the end of a fenced body starting at from. On success *end = offset of the "\n```\n"
 * and the kind of what follows; for T_BRIDGE *bend = offset of the next block. */
static enum term find_end(const char *t, size_t n, size_t from, bool allow_answer, size_t *end,
                          size_t *bend) {
    /* an empty body closes right away: the closing "\n```\n" then starts at from */
    for (size_t i = from; i + 5 <= n; i++) {
        if (t[i] != '\n' || !starts(t, n, i, FENCE_END))
            continue;
        size_t after = i + 5;
        if (only_ws(t, after, n)) {
            *end = i;
            return T_EOF;
        }
        if (allow_answer && starts(t, n, after, A_OPEN)) {
            *end = i;
            return T_ANSWER;
        }
        if (starts(t, n, after, "\n" Q_OPEN)) {
            *end = i;
            return T_NEXT;
        }
        /* a role heading right after a closing fence but without its own fence: malformed */
        if (starts(t, n, after, "\n# Query:") || starts(t, n, after, "\n# Answer:")) {
            *end = after + 1;
            return T_BAD;
        }
        if (t[after] == '\n' && after + 1 < n && t[after + 1] != '\n' && t[after + 1] != '#') {
            size_t nb = next_block(t, n, after + 1);
            if (nb < n && !has_fence(t, after + 1, nb)) {
                *end = i;
                *bend = nb;
                return T_BRIDGE;
            }
        }
    }
    return T_NONE;
}

static const char *base_name(const char *name) {
    const char *b = strrchr(name, '/');
    return b ? b + 1 : name;
}

/* Explains why a block starting at off failed: a role line without its fence, or no end. */
static int block_error(const char *t, size_t n, size_t off, const char *name, struct ica_error *e) {
    for (size_t i = off; i < n; i++) {
        if (i > 0 && t[i - 1] != '\n')
            continue;
        if (starts(t, n, i, "# Query:") && !starts(t, n, i, Q_OPEN) &&
            (i + 8 >= n || t[i + 8] == '\n' || t[i + 8] == ' '))
            return ica_seterr(e, ICA_ERR_FORMAT,
                              "%s:%zu: '# Query:' is not followed by a line with the ``` fence",
                              name, align_line_of(t, i));
        if (starts(t, n, i, "# Answer:") && !starts(t, n, i, &A_OPEN[1]) &&
            (i + 9 >= n || t[i + 9] == '\n' || t[i + 9] == ' '))
            return ica_seterr(e, ICA_ERR_FORMAT,
                              "%s:%zu: '# Answer:' is not followed by a line with the ``` fence",
                              name, align_line_of(t, i));
    }
    return ica_seterr(e, ICA_ERR_FORMAT,
                      "%s:%zu: unterminated block: no closing ``` line followed by an empty line "
                      "and the next '# Query:' block (or the end of the file)",
                      name, align_line_of(t, off));
}

static int add_parsed(struct align_set *s, const char *t, size_t q0, size_t q1, const char *a,
                      size_t alen, const char *bname, struct ica_error *e) {
    char idbuf[512];
    snprintf(idbuf, sizeof idbuf, "%s#%zu", bname, s->n);
    char srcbuf[512];
    snprintf(srcbuf, sizeof srcbuf, "file:%s", bname);
    struct align_demo d = {0};
    d.query = align_strndup(t + q0, q1 - q0);
    d.answer = a ? align_strndup(a, alen) : NULL;
    d.source = srcbuf;
    d.id = idbuf;
    int rc = ICA_OK;
    if (!d.query || (a && !d.answer))
        rc = align_nomem(e);
    else
        rc = align_set_push(s, &d, e);
    free(d.query);
    free(d.answer);
    return rc;
}

static int parse_urial(struct align_set *s, const char *t, size_t n, size_t p, const char *name,
                       struct ica_error *e) {
    const char *bname = base_name(name);
    for (;;) {
        size_t q0 = p + strlen(Q_OPEN), end = 0, bend = 0;
        enum term k = find_end(t, n, q0, true, &end, &bend);
        if (k == T_NONE || k == T_BAD)
            return block_error(t, n, k == T_BAD ? end : p, name, e);
        size_t q1 = end < q0 ? q0 : end;
        const char *ans = NULL;
        size_t alen = 0;
        if (k == T_ANSWER) {
            size_t a0 = end + 5 + strlen(A_OPEN);
            k = find_end(t, n, a0, false, &end, &bend);
            if (k == T_NONE || k == T_BAD)
                return block_error(t, n, k == T_BAD ? end : q1 + 6, name, e);
            ans = t + a0;
            alen = end < a0 ? 0 : end - a0;
        }
        int rc = add_parsed(s, t, q0, q1, ans, alen, bname, e);
        if (rc)
            return rc;
        size_t after = end + 5;
        if (k == T_EOF) {
            free(s->trailer);
            if (!(s->trailer = align_strndup(t + after, n - after)))
                return align_nomem(e);
            return ICA_OK;
        }
        if (k == T_NEXT) {
            p = after + 1;
        } else { /* T_BRIDGE */
            if (s->bridge)
                return ica_seterr(e, ICA_ERR_FORMAT,
                                  "%s:%zu: a second paragraph between blocks (only one bridge "
                                  "paragraph is supported)",
                                  name, align_line_of(t, after + 1));
            if (!(s->bridge = align_strndup(t + after + 1, bend - after - 1)))
                return align_nomem(e);
            s->bridge_at = s->n;
            p = bend;
        }
    }
}

/* Offset of the next line starting with role followed by '\n', at or after from; n if none. */
static size_t next_role(const char *t, size_t n, size_t from, const char *role) {
    size_t l = strlen(role);
    for (size_t i = from; i < n; i++)
        if ((i == 0 || t[i - 1] == '\n') && starts(t, n, i, role) && i + l < n && t[i + l] == '\n')
            return i;
    return n;
}

static int parse_user(struct align_set *s, const char *t, size_t n, size_t p, const char *name,
                      struct ica_error *e) {
    static const char *const roles[2] = {"# User:", "# Assistant:"};
    const char *bname = base_name(name);
    s->style = strstr(bname, "v6") ? ALIGN_STYLE_USER_V6 : ALIGN_STYLE_USER_V5;
    size_t q0 = 0, q1 = 0;
    bool have_q = false, first = true;
    for (int r = 0;; r ^= 1) {
        size_t m0 = p + strlen(roles[r]);
        size_t nl = 0;
        while (m0 < n && t[m0] == '\n')
            m0++, nl++;
        size_t nx = next_role(t, n, m0, roles[r ^ 1]);
        size_t m1 = nx, tail = 0;
        while (m1 > m0 && t[m1 - 1] == '\n')
            m1--, tail++;
        if (first) {
            s->ua_role_nl = (int)nl;
            if (nx < n)
                s->ua_sep_nl = (int)tail;
            first = false;
        }
        if (r == 0) {
            q0 = m0;
            q1 = m1;
            have_q = true;
        } else {
            int rc = add_parsed(s, t, q0, q1, t + m0, m1 - m0, bname, e);
            if (rc)
                return rc;
            have_q = false;
        }
        if (nx >= n) {
            free(s->trailer);
            if (!(s->trailer = align_strndup(t + m1, n - m1)))
                return align_nomem(e);
            break;
        }
        p = nx;
    }
    if (have_q)
        return add_parsed(s, t, q0, q1, NULL, 0, bname, e);
    return ICA_OK;
}

int align_set_parse(const char *text, size_t len, const char *name, struct align_set **out,
                    struct ica_error *e) {
    *out = NULL;
    if (!name)
        name = "<text>";
    /* universal newlines: CRLF and CR become LF */
    char *t = malloc(len + 1);
    if (!t)
        return align_nomem(e);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\0') {
            free(t);
            return ica_seterr(e, ICA_ERR_FORMAT, "%s:%zu: NUL byte in a prompt file", name,
                              align_line_of(text, i));
        }
        if (text[i] == '\r') {
            t[n++] = '\n';
            if (i + 1 < len && text[i + 1] == '\n')
                i++;
        } else {
            t[n++] = text[i];
        }
    }
    t[n] = '\0';
    size_t bad = align_utf8_check(t, n);
    if (bad < n) {
        int rc = ica_seterr(e, ICA_ERR_FORMAT, "%s:%zu: invalid UTF-8 (byte 0x%02x)", name,
                            align_line_of(t, bad), (unsigned char)t[bad]);
        free(t);
        return rc;
    }
    size_t p = next_block(t, n, 0);
    bool user = false;
    if (p == n) {
        size_t u = next_role(t, n, 0, "# User:");
        if (u < n) {
            p = u;
            user = true;
        }
    }
    struct align_set *s = align_set_new(NULL);
    if (!s) {
        free(t);
        return align_nomem(e);
    }
    free(s->header);
    s->header = align_strndup(t, p);
    int rc = s->header ? ICA_OK : align_nomem(e);
    if (!rc && p < n)
        rc = user ? parse_user(s, t, n, p, name, e) : parse_urial(s, t, n, p, name, e);
    if (!rc && p == n) {
        /* no block at all: a header-only file, unless a role line lacks its fence */
        for (size_t i = 0; i < n && !rc; i++)
            if ((i == 0 || t[i - 1] == '\n') &&
                (starts(t, n, i, "# Query:") || starts(t, n, i, "# Answer:")))
                rc = block_error(t, n, 0, name, e);
    }
    free(t);
    if (rc) {
        align_set_free(s);
        return rc;
    }
    *out = s;
    return ICA_OK;
}

int align_set_load_file(const char *path, struct align_set **out, struct ica_error *e) {
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return ica_seterr(e, ICA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct abuf b = {0};
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, fp)) > 0)
        if (!abuf_add(&b, chunk, got))
            break;
    int err = ferror(fp);
    fclose(fp);
    if (b.failed)
        return align_nomem(e);
    if (err) {
        abuf_free(&b);
        return ica_seterr(e, ICA_ERR_IO, "%s: read error", path);
    }
    size_t n = 0;
    char *text = abuf_take(&b, &n);
    if (!text)
        return align_nomem(e);
    int rc = align_set_parse(text, n, path, out, e);
    free(text);
    return rc;
}

/* ==== writer ==== */

static void put_nl(struct abuf *b, int k) {
    for (int i = 0; i < k; i++)
        abuf_add(b, "\n", 1);
}

int align_set_write(const struct align_set *s, char **out, size_t *len, struct ica_error *e) {
    struct abuf b = {0};
    abuf_adds(&b, s->header);
    if (s->style == ALIGN_STYLE_URIAL) {
        for (size_t i = 0; i < s->n; i++) {
            const struct align_demo *d = &s->demos[i];
            if (i > 0)
                abuf_add(&b, "\n", 1);
            if (s->bridge && s->bridge_at == i && i > 0)
                abuf_adds(&b, s->bridge);
            abuf_adds(&b, Q_OPEN);
            abuf_adds(&b, d->query);
            abuf_adds(&b, FENCE_END);
            if (d->answer) {
                abuf_adds(&b, A_OPEN);
                abuf_adds(&b, d->answer);
                abuf_adds(&b, FENCE_END);
            }
        }
        if (s->n > 0)
            abuf_adds(&b, s->trailer);
    } else {
        for (size_t i = 0; i < s->n; i++) {
            const struct align_demo *d = &s->demos[i];
            if (i > 0)
                put_nl(&b, s->ua_sep_nl);
            abuf_adds(&b, "# User:");
            put_nl(&b, s->ua_role_nl);
            abuf_adds(&b, d->query);
            if (d->answer) {
                put_nl(&b, s->ua_sep_nl);
                abuf_adds(&b, "# Assistant:");
                put_nl(&b, s->ua_role_nl);
                abuf_adds(&b, d->answer);
            }
        }
        if (s->n > 0)
            abuf_adds(&b, s->trailer);
    }
    char *r = abuf_take(&b, len);
    if (!r)
        return align_nomem(e);
    *out = r;
    return ICA_OK;
}
