/* icalign — report module: deterministic SVG charts and Markdown tables. */
#include "icalign/report.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void report_buf_free(struct report_buf *b) {
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->err = 0;
}

static int buf_reserve(struct report_buf *b, size_t add) {
    if (b->err)
        return -1;
    if (b->len + add + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + add + 1)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
        b->err = ICA_ERR_NOMEM;
        return -1;
    }
    b->data = d;
    b->cap = cap;
    return 0;
}

static void buf_put(struct report_buf *b, const char *s, size_t n) {
    if (buf_reserve(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void report_buf_puts(struct report_buf *b, const char *s) {
    if (s)
        buf_put(b, s, strlen(s));
}

void report_buf_printf(struct report_buf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->err = ICA_ERR_FORMAT;
        return;
    }
    if ((size_t)n < sizeof tmp) {
        buf_put(b, tmp, (size_t)n);
        return;
    }
    if (buf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void report_buf_xml(struct report_buf *b, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            report_buf_puts(b, "&amp;");
            break;
        case '<':
            report_buf_puts(b, "&lt;");
            break;
        case '>':
            report_buf_puts(b, "&gt;");
            break;
        case '"':
            report_buf_puts(b, "&quot;");
            break;
        case '\'':
            report_buf_puts(b, "&apos;");
            break;
        default:
            if ((unsigned char)*s < 0x20 && *s != '\n' && *s != '\t')
                report_buf_puts(b, " "); /* not allowed in XML 1.0 */
            else
                buf_put(b, s, 1);
        }
    }
}

const char *report_fmt(double v, char *buf, size_t n) {
    if (isnan(v))
        snprintf(buf, n, "-");
    else
        snprintf(buf, n, "%.3f", v);
    return buf;
}

/* ---- chart frame ---- */

enum { W = 640, H = 400, ML = 64, MR = 24, MT = 44, MB = 60 };

struct frame {
    double x0, x1, y0, y1; /* data ranges */
};

static double px(const struct frame *f, double x) {
    return ML + (x - f->x0) / (f->x1 - f->x0) * (W - ML - MR);
}
static double py(const struct frame *f, double y) {
    return H - MB - (y - f->y0) / (f->y1 - f->y0) * (H - MT - MB);
}

static void range_add(double v, double *lo, double *hi, int *any) {
    if (!isfinite(v))
        return;
    if (!*any || v < *lo)
        *lo = v;
    if (!*any || v > *hi)
        *hi = v;
    *any = 1;
}

static void fix_range(double *lo, double *hi, int any, double pad_frac) {
    if (!any) {
        *lo = 0;
        *hi = 1;
        return;
    }
    if (*hi - *lo < 1e-9) {
        *lo -= 0.5;
        *hi += 0.5;
        return;
    }
    double pad = (*hi - *lo) * pad_frac;
    *lo -= pad;
    *hi += pad;
}

static void y_range(struct frame *f, const struct report_point *p, size_t n, int from_zero) {
    int any = 0;
    double lo = 0, hi = 0;
    if (from_zero)
        range_add(0, &lo, &hi, &any);
    for (size_t i = 0; i < n; i++) {
        range_add(p[i].y, &lo, &hi, &any);
        range_add(p[i].lo, &lo, &hi, &any);
        range_add(p[i].hi, &lo, &hi, &any);
    }
    double min = lo;
    fix_range(&lo, &hi, any, 0.05);
    if (from_zero && any && min >= 0) /* bars start at the axis */
        lo = 0;
    f->y0 = lo;
    f->y1 = hi;
}

static void x_range(struct frame *f, const struct report_point *p, size_t n) {
    int any = 0;
    double lo = 0, hi = 0;
    for (size_t i = 0; i < n; i++)
        range_add(p[i].x, &lo, &hi, &any);
    fix_range(&lo, &hi, any, 0.05);
    f->x0 = lo;
    f->x1 = hi;
}

static void svg_open(struct report_buf *b, const struct report_chart *c, const char *kind) {
    report_buf_printf(b,
                      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                      "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"ica-chart ica-chart-%s\" "
                      "width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                      "font-family=\"sans-serif\" font-size=\"12\">\n",
                      kind, W, H, W, H);
    report_buf_puts(b, "<title>");
    report_buf_xml(b, c && c->title ? c->title : "");
    report_buf_puts(b, "</title>\n<style>\n"
                       ".ica-grid{stroke:#ddd;stroke-width:1}\n"
                       ".ica-axis{stroke:#333;stroke-width:1}\n"
                       ".ica-band{fill:#4c72b0;fill-opacity:0.2;stroke:none}\n"
                       ".ica-line,.ica-step{fill:none;stroke:#4c72b0;stroke-width:2}\n"
                       ".ica-point{fill:#4c72b0}\n"
                       ".ica-bar{fill:#4c72b0;fill-opacity:0.8}\n"
                       ".ica-err{stroke:#222;stroke-width:1.5}\n"
                       ".ica-title{font-size:15px;font-weight:bold}\n"
                       "</style>\n");
    report_buf_printf(b, "<rect class=\"ica-bg\" width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n", W,
                      H);
    report_buf_printf(b, "<text class=\"ica-title\" x=\"%d\" y=\"24\" text-anchor=\"middle\">",
                      W / 2);
    report_buf_xml(b, c && c->title ? c->title : "");
    report_buf_puts(b, "</text>\n");
}

static void svg_axes(struct report_buf *b, const struct report_chart *c, const struct frame *f) {
    report_buf_puts(b, "<g class=\"ica-yticks\">\n");
    for (int i = 0; i <= 5; i++) {
        double v = f->y0 + (f->y1 - f->y0) * i / 5.0, y = py(f, v);
        report_buf_printf(b,
                          "<line class=\"ica-grid\" x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\"/>"
                          "<text class=\"ica-tick\" x=\"%d\" y=\"%.2f\" text-anchor=\"end\">%.2f"
                          "</text>\n",
                          ML, y, W - MR, y, ML - 6, y + 4, v);
    }
    report_buf_puts(b, "</g>\n");
    report_buf_printf(b,
                      "<line class=\"ica-axis\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>\n"
                      "<line class=\"ica-axis\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>\n",
                      ML, MT, ML, H - MB, ML, H - MB, W - MR, H - MB);
    report_buf_printf(b, "<text class=\"ica-xlabel\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">",
                      (ML + W - MR) / 2, H - 12);
    report_buf_xml(b, c && c->xlabel ? c->xlabel : "");
    report_buf_printf(b,
                      "</text>\n<text class=\"ica-ylabel\" x=\"16\" y=\"%d\" "
                      "text-anchor=\"middle\" transform=\"rotate(-90 16 %d)\">",
                      (MT + H - MB) / 2, (MT + H - MB) / 2);
    report_buf_xml(b, c && c->ylabel ? c->ylabel : "");
    report_buf_puts(b, "</text>\n");
}

static void x_tick(struct report_buf *b, double x, const char *text) {
    report_buf_printf(b,
                      "<line class=\"ica-axis\" x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\"/>"
                      "<text class=\"ica-tick\" x=\"%.2f\" y=\"%d\" text-anchor=\"middle\">",
                      x, H - MB, x, H - MB + 5, x, H - MB + 18);
    report_buf_xml(b, text);
    report_buf_puts(b, "</text>\n");
}

static void fmt_num(double v, char *buf, size_t n) {
    if (isnan(v))
        snprintf(buf, n, "-");
    else if (v == floor(v) && fabs(v) < 1e15)
        snprintf(buf, n, "%.0f", v);
    else
        snprintf(buf, n, "%.2f", v);
}

static void tooltip(struct report_buf *b, const struct report_point *p, const char *xname) {
    char s1[32], s2[32], s3[32], sx[32];
    report_buf_puts(b, "<title>");
    if (p->label)
        report_buf_xml(b, p->label);
    else {
        fmt_num(p->x, sx, sizeof sx);
        report_buf_xml(b, xname);
        report_buf_printf(b, " %s", sx);
    }
    report_buf_printf(b, ": %s", report_fmt(p->y, s1, sizeof s1));
    if (!isnan(p->lo) && !isnan(p->hi))
        report_buf_printf(b, " [%s, %s]", report_fmt(p->lo, s2, sizeof s2),
                          report_fmt(p->hi, s3, sizeof s3));
    report_buf_puts(b, "</title>");
}

static int svg_close(struct report_buf *b) {
    report_buf_puts(b, "</svg>\n");
    return b->err ? b->err : ICA_OK;
}

static int finite_pt(const struct report_point *p) {
    return isfinite(p->x) && isfinite(p->y);
}

int report_svg_line(struct report_buf *b, const struct report_chart *c,
                    const struct report_point *p, size_t n) {
    if (!b || (n && !p))
        return ICA_ERR_ARG;
    struct frame f;
    x_range(&f, p, n);
    y_range(&f, p, n, 0);
    svg_open(b, c, "line");
    svg_axes(b, c, &f);
    const char *xname = c && c->xlabel ? c->xlabel : "x";
    report_buf_puts(b, "<g class=\"ica-xticks\">\n");
    for (size_t i = 0; i < n; i++)
        if (isfinite(p[i].x)) {
            char t[32];
            fmt_num(p[i].x, t, sizeof t);
            x_tick(b, px(&f, p[i].x), t);
        }
    report_buf_puts(b, "</g>\n");
    /* band: upper edge left to right, lower edge back */
    size_t nb = 0;
    for (size_t i = 0; i < n; i++)
        nb += isfinite(p[i].x) && isfinite(p[i].lo) && isfinite(p[i].hi);
    if (nb) {
        report_buf_puts(b, "<polygon class=\"ica-band\" points=\"");
        const char *sep = "";
        for (size_t i = 0; i < n; i++)
            if (isfinite(p[i].x) && isfinite(p[i].lo) && isfinite(p[i].hi)) {
                report_buf_printf(b, "%s%.2f,%.2f", sep, px(&f, p[i].x), py(&f, p[i].hi));
                sep = " ";
            }
        for (size_t i = n; i-- > 0;)
            if (isfinite(p[i].x) && isfinite(p[i].lo) && isfinite(p[i].hi))
                report_buf_printf(b, " %.2f,%.2f", px(&f, p[i].x), py(&f, p[i].lo));
        report_buf_puts(b, "\"/>\n");
    }
    size_t nl = 0;
    for (size_t i = 0; i < n; i++)
        nl += finite_pt(&p[i]);
    if (nl) {
        report_buf_puts(b, "<polyline class=\"ica-line\" points=\"");
        const char *sep = "";
        for (size_t i = 0; i < n; i++)
            if (finite_pt(&p[i])) {
                report_buf_printf(b, "%s%.2f,%.2f", sep, px(&f, p[i].x), py(&f, p[i].y));
                sep = " ";
            }
        report_buf_puts(b, "\"/>\n");
    }
    report_buf_puts(b, "<g class=\"ica-points\">\n");
    for (size_t i = 0; i < n; i++)
        if (finite_pt(&p[i])) {
            report_buf_printf(b, "<circle class=\"ica-point\" cx=\"%.2f\" cy=\"%.2f\" r=\"4\">",
                              px(&f, p[i].x), py(&f, p[i].y));
            tooltip(b, &p[i], xname);
            report_buf_puts(b, "</circle>\n");
        }
    report_buf_puts(b, "</g>\n");
    return svg_close(b);
}

int report_svg_bars(struct report_buf *b, const struct report_chart *c,
                    const struct report_point *p, size_t n) {
    if (!b || (n && !p))
        return ICA_ERR_ARG;
    struct frame f = {.x0 = 0, .x1 = n ? (double)n : 1};
    y_range(&f, p, n, 1);
    svg_open(b, c, "bars");
    svg_axes(b, c, &f);
    const double slot = (double)(W - ML - MR) / (n ? (double)n : 1), bw = slot * 0.6;
    report_buf_puts(b, "<g class=\"ica-xticks\">\n");
    for (size_t i = 0; i < n; i++) {
        char t[32];
        snprintf(t, sizeof t, "%zu", i + 1);
        x_tick(b, ML + slot * ((double)i + 0.5), p[i].label ? p[i].label : t);
    }
    report_buf_puts(b, "</g>\n<g class=\"ica-bars\">\n");
    const double base = py(&f, f.y0 > 0 ? f.y0 : f.y1 < 0 ? f.y1 : 0);
    for (size_t i = 0; i < n; i++) {
        double cx = ML + slot * ((double)i + 0.5);
        if (isfinite(p[i].y)) {
            double y = py(&f, p[i].y), top = y < base ? y : base, h = fabs(base - y);
            report_buf_printf(b,
                              "<rect class=\"ica-bar\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" "
                              "height=\"%.2f\">",
                              cx - bw / 2, top, bw, h);
            tooltip(b, &p[i], "");
            report_buf_puts(b, "</rect>\n");
        }
        if (isfinite(p[i].lo) && isfinite(p[i].hi)) {
            double ylo = py(&f, p[i].lo), yhi = py(&f, p[i].hi);
            report_buf_printf(b,
                              "<path class=\"ica-err\" d=\"M%.2f,%.2fV%.2fM%.2f,%.2fH%.2fM%.2f,"
                              "%.2fH%.2f\">",
                              cx, ylo, yhi, cx - 6, ylo, cx + 6, cx - 6, yhi, cx + 6);
            tooltip(b, &p[i], "");
            report_buf_puts(b, "</path>\n");
        }
    }
    report_buf_puts(b, "</g>\n");
    return svg_close(b);
}

int report_svg_steps(struct report_buf *b, const struct report_chart *c,
                     const struct report_point *p, size_t n) {
    if (!b || (n && !p))
        return ICA_ERR_ARG;
    struct frame f;
    x_range(&f, p, n);
    y_range(&f, p, n, 0);
    svg_open(b, c, "steps");
    svg_axes(b, c, &f);
    const char *xname = c && c->xlabel ? c->xlabel : "step";
    report_buf_puts(b, "<g class=\"ica-xticks\">\n");
    for (size_t i = 0; i < n; i++)
        if (isfinite(p[i].x)) {
            char t[32];
            fmt_num(p[i].x, t, sizeof t);
            x_tick(b, px(&f, p[i].x), t);
        }
    report_buf_puts(b, "</g>\n");
    int started = 0;
    for (size_t i = 0; i < n; i++) {
        if (!finite_pt(&p[i]))
            continue;
        double x = px(&f, p[i].x), y = py(&f, p[i].y);
        if (!started) {
            report_buf_printf(b, "<path class=\"ica-step\" d=\"M%.2f,%.2f", x, y);
            started = 1;
        } else
            report_buf_printf(b, "H%.2fV%.2f", x, y);
    }
    if (started)
        report_buf_puts(b, "\"/>\n");
    report_buf_puts(b, "<g class=\"ica-points\">\n");
    for (size_t i = 0; i < n; i++)
        if (finite_pt(&p[i])) {
            report_buf_printf(b, "<circle class=\"ica-point\" cx=\"%.2f\" cy=\"%.2f\" r=\"4\">",
                              px(&f, p[i].x), py(&f, p[i].y));
            tooltip(b, &p[i], xname);
            report_buf_puts(b, "</circle>\n");
        }
    report_buf_puts(b, "</g>\n");
    return svg_close(b);
}

static void md_cell(struct report_buf *b, const char *s) {
    report_buf_puts(b, " ");
    for (; s && *s; s++) {
        if (*s == '|')
            report_buf_puts(b, "\\|");
        else if (*s == '\n' || *s == '\r')
            report_buf_puts(b, " ");
        else
            buf_put(b, s, 1);
    }
    report_buf_puts(b, " |");
}

int report_md_table(struct report_buf *b, const char *const *header, size_t ncols,
                    const char *const *cells, size_t nrows) {
    if (!b || !header || !ncols || (nrows && !cells))
        return ICA_ERR_ARG;
    report_buf_puts(b, "|");
    for (size_t c = 0; c < ncols; c++)
        md_cell(b, header[c]);
    report_buf_puts(b, "\n|");
    for (size_t c = 0; c < ncols; c++)
        report_buf_puts(b, " --- |");
    report_buf_puts(b, "\n");
    for (size_t r = 0; r < nrows; r++) {
        report_buf_puts(b, "|");
        for (size_t c = 0; c < ncols; c++)
            md_cell(b, cells[r * ncols + c]);
        report_buf_puts(b, "\n");
    }
    return b->err ? b->err : ICA_OK;
}
