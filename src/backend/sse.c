/* Incremental Server-Sent Events parser (WHATWG "event stream" grammar):
 * lines end with CRLF, LF or CR; "data:" lines (one optional space after the
 * colon) accumulate into the event, joined with '\n'; a blank line dispatches
 * it; ':' comments and other fields are ignored. Bytes may arrive split at
 * any boundary, including inside a CRLF pair. */
#include "icalign/remote.h"

#include <stdlib.h>
#include <string.h>

#define SSE_MAX_LINE (64u << 20) /* a line longer than this is an error, not memory growth */

void sse_init(struct sse_parser *p) {
    memset(p, 0, sizeof *p);
}

void sse_free(struct sse_parser *p) {
    free(p->line);
    free(p->data);
    memset(p, 0, sizeof *p);
}

static bool grow(char **buf, size_t *cap, size_t need) {
    if (need <= *cap)
        return true;
    if (need > SSE_MAX_LINE)
        return false;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    char *nb = realloc(*buf, c);
    if (!nb)
        return false;
    *buf = nb;
    *cap = c;
    return true;
}

/* Handles one complete line (without its terminator). */
static bool sse_line(struct sse_parser *p, sse_event_fn fn, void *ud) {
    const char *l = p->line ? p->line : "";
    size_t n = p->line_len;
    p->line_len = 0;
    if (n == 0) {
        if (!p->has_data)
            return true;
        p->has_data = false;
        size_t dl = p->data_len;
        p->data_len = 0;
        if (!grow(&p->data, &p->data_cap, dl + 1)) {
            p->failed = true;
            return false;
        }
        p->data[dl] = '\0';
        return fn(ud, p->data, dl);
    }
    if (l[0] == ':')
        return true;
    size_t name_len = 0;
    while (name_len < n && l[name_len] != ':')
        name_len++;
    if (name_len != 4 || memcmp(l, "data", 4) != 0)
        return true; /* event, id, retry and unknown fields: not needed here */
    size_t v = name_len < n ? name_len + 1 : n;
    if (v < n && l[v] == ' ')
        v++;
    size_t add = n - v + (p->has_data ? 1 : 0);
    if (!grow(&p->data, &p->data_cap, p->data_len + add + 1)) {
        p->failed = true;
        return false;
    }
    if (p->has_data)
        p->data[p->data_len++] = '\n';
    memcpy(p->data + p->data_len, l + v, n - v);
    p->data_len += n - v;
    p->has_data = true;
    return true;
}

bool sse_feed(struct sse_parser *p, const char *buf, size_t len, sse_event_fn fn, void *ud) {
    if (p->failed)
        return false;
    size_t i = 0;
    if (!p->bom_checked && len > 0) {
        /* A UTF-8 BOM may open the stream; it can itself arrive split. */
        static const unsigned char bom[3] = {0xEF, 0xBB, 0xBF};
        while (i < len && p->line_len + i < 3 && (unsigned char)buf[i] == bom[p->line_len + i])
            i++;
        if (p->line_len + i == 3) {
            p->bom_checked = true;
            p->line_len = 0;
        } else if (i < len) {
            /* not a BOM: the bytes consumed so far are ordinary line bytes */
            p->bom_checked = true;
            size_t keep = p->line_len;
            p->line_len = 0;
            if (!grow(&p->line, &p->line_cap, keep + i + 1)) {
                p->failed = true;
                return false;
            }
            /* keep + i < 3 here: a proper prefix of the BOM */
            for (size_t k = 0; k < keep + i && k < 3; k++)
                p->line[k] = (char)bom[k];
            p->line_len = keep + i;
        } else {
            /* every byte so far matches a BOM prefix: remember how many */
            p->line_len += i;
            return true;
        }
    }
    for (; i < len; i++) {
        char c = buf[i];
        if (p->skip_lf) {
            p->skip_lf = false;
            if (c == '\n')
                continue;
        }
        if (c == '\r' || c == '\n') {
            p->skip_lf = c == '\r';
            if (!sse_line(p, fn, ud))
                return false;
            continue;
        }
        /* copy the run of ordinary bytes at once */
        size_t j = i;
        while (j < len && buf[j] != '\r' && buf[j] != '\n')
            j++;
        if (!grow(&p->line, &p->line_cap, p->line_len + (j - i) + 1)) {
            p->failed = true;
            return false;
        }
        memcpy(p->line + p->line_len, buf + i, j - i);
        p->line_len += j - i;
        i = j - 1;
    }
    return true;
}

bool sse_finish(struct sse_parser *p, sse_event_fn fn, void *ud) {
    if (p->failed)
        return false;
    if (!p->bom_checked)
        p->line_len = 0; /* a lone BOM prefix */
    if (p->line_len > 0 && !sse_line(p, fn, ud))
        return false;
    p->line_len = 0;
    return sse_line(p, fn, ud); /* blank line: dispatch what is pending */
}
