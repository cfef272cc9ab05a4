/* icalign — report files of the experiment commands. */
#include "report_cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "icalign/search.h"

int rcli_write(const char *cmd, const char *dir, const char *name, const struct report_buf *buf) {
    char path[4400];
    struct ica_error e = {0};
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (buf->err) {
        cli_error("%s: %s: out of memory", cmd, path);
        return 1;
    }
    if (search_write_file(path, buf->data ? buf->data : "", buf->len, &e) != ICA_OK) {
        cli_error("%s: %s", cmd, e.msg);
        return 1;
    }
    return 0;
}

static double field_num(const char *s) {
    if (!s || !*s)
        return NAN;
    char *end = NULL;
    double v = strtod(s, &end);
    return end == s ? NAN : v;
}

#define RCLI_NF 8 /* name,score,ci_low,ci_high,n_rated,n_questions + up to 2 extra columns */

struct row {
    char *f[RCLI_NF];
};

/* Splits line at commas into f[0..RCLI_NF) (missing fields NULL); line is modified. */
static void split_fields(char *p, char **f) {
    for (int k = 0; k < RCLI_NF; k++) {
        f[k] = p;
        if (!p)
            continue;
        char *c = strchr(p, ',');
        if (c)
            *c++ = '\0';
        p = c;
    }
}

int rcli_table(const char *cmd, const char *dir, const char *csv_name, const char *svg_name,
               enum rcli_chart kind, const char *title, const char *col, const char *xlabel,
               const char *score_name, const char *ylabel, struct report_buf *md) {
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, csv_name);
    FILE *fp = fopen(path, "r");
    if (!fp) {
        cli_error("%s: cannot read %s", cmd, path);
        return 1;
    }
    struct row *rows = NULL;
    size_t n = 0, cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    int ret = 1, first = 1;
    char *hdr_line = NULL, *hf[RCLI_NF] = {0};
    size_t n_extra = 0;
    while (getline(&line, &lcap, fp) > 0) {
        line[strcspn(line, "\r\n")] = '\0';
        if (first) { /* header: columns after the sixth are shown as they are */
            first = 0;
            if (!(hdr_line = strdup(line)))
                goto out;
            split_fields(hdr_line, hf);
            for (int k = 6; k < RCLI_NF && hf[k] && *hf[k]; k++)
                n_extra++;
            continue;
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            struct row *r = realloc(rows, nc * sizeof *r);
            if (!r)
                goto out;
            rows = r;
            cap = nc;
        }
        struct row *r = &rows[n];
        memset(r, 0, sizeof *r);
        char *dup = strdup(line);
        if (!dup)
            goto out;
        split_fields(dup, r->f);
        n++;
    }
    struct report_point *pts = calloc(n + 1, sizeof *pts);
    const size_t nc = 5 + n_extra;
    const char **cells = calloc(nc * n + 1, sizeof *cells);
    char(*num)[4][32] = calloc(n + 1, sizeof *num);
    if (!pts || !cells || !num) {
        free(pts);
        free(cells);
        free(num);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = rows[i].f[0] ? rows[i].f[0] : "";
        const char *dash = strrchr(name, '-');
        pts[i].label = name;
        pts[i].x = kind == RCLI_LINE ? field_num(dash ? dash + 1 : name) : (double)i;
        pts[i].y = field_num(rows[i].f[1]);
        pts[i].lo = field_num(rows[i].f[2]);
        pts[i].hi = field_num(rows[i].f[3]);
        report_fmt(pts[i].y, num[i][0], sizeof num[i][0]);
        if (isnan(pts[i].lo) || isnan(pts[i].hi))
            snprintf(num[i][1], sizeof num[i][1], "-");
        else
            snprintf(num[i][1], sizeof num[i][1], "[%.3f, %.3f]", pts[i].lo, pts[i].hi);
        const char **c = &cells[nc * i];
        c[0] = name;
        c[1] = num[i][0];
        c[2] = num[i][1];
        c[3] = rows[i].f[4] ? rows[i].f[4] : "";
        c[4] = rows[i].f[5] ? rows[i].f[5] : "";
        for (size_t k = 0; k < n_extra && k < 2; k++) {
            /* extra numeric columns with the score's precision */
            report_fmt(field_num(rows[i].f[6 + k]), num[i][2 + k], sizeof num[i][2 + k]);
            c[5 + k] = num[i][2 + k];
        }
    }
    struct report_chart ch = {title, xlabel, ylabel ? ylabel : "mean judge score"};
    struct report_buf svg = {0};
    int rc =
        kind == RCLI_LINE ? report_svg_line(&svg, &ch, pts, n) : report_svg_bars(&svg, &ch, pts, n);
    const char *hdr[RCLI_NF] = {col, score_name ? score_name : "score", "95% CI", "rated",
                                "questions"};
    for (size_t k = 0; k < n_extra && k < 2; k++)
        hdr[5 + k] = hf[6 + k];
    if (rc == ICA_OK) {
        report_buf_puts(md, "## ");
        report_buf_puts(md, title);
        report_buf_puts(md, "\n\n");
        rc = report_md_table(md, hdr, nc, cells, n);
        report_buf_printf(md, "\n![%s](%s)\n\nData: [%s](%s)\n\n", title, svg_name, csv_name,
                          csv_name);
    }
    if (rc != ICA_OK)
        cli_error("%s: report: out of memory", cmd);
    else
        ret = rcli_write(cmd, dir, svg_name, &svg);
    report_buf_free(&svg);
    free(pts);
    free(cells);
    free(num);
out:
    for (size_t i = 0; i < n; i++)
        free(rows[i].f[0]);
    free(rows);
    free(line);
    free(hdr_line);
    fclose(fp);
    return ret;
}
