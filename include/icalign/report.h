/* icalign — report module: deterministic hand-written SVG charts and Markdown tables for the
 * experiment commands (search, sweep, ablate).
 *
 * Output depends only on the input: fixed number formatting ("%.2f" coordinates, "%.3f"
 * values), no timestamps, no locale-dependent text. Every text is XML-escaped. Elements carry
 * CSS classes (ica-title, ica-axis, ica-tick, ica-grid, ica-band, ica-line, ica-point, ica-bar,
 * ica-err, ica-step) and each data point has a <title> tooltip. NaN values are skipped (a NaN
 * score draws no point, a NaN interval no band or error bar); an empty series gives a chart
 * with axes only. */
#ifndef ICALIGN_REPORT_H
#define ICALIGN_REPORT_H

#include <stddef.h>

#include "icalign/common.h"

/* Growable text buffer; on allocation failure err is set and later appends are ignored. */
struct report_buf {
    char *data; /* NUL-terminated (NULL while empty) */
    size_t len, cap;
    int err;
};

ICA_API void report_buf_free(struct report_buf *b);
ICA_API void report_buf_puts(struct report_buf *b, const char *s);
ICA_API void report_buf_printf(struct report_buf *b, const char *fmt, ...) ICA_PRINTF(2, 3);
/* Appends s with & < > " ' escaped (XML text and attribute values). */
ICA_API void report_buf_xml(struct report_buf *b, const char *s);

struct report_point {
    const char *label; /* category / point name (bars: the x tick; may be NULL) */
    double x;          /* line and step charts */
    double y;          /* the score (NaN: missing) */
    double lo, hi;     /* interval (NaN: none) */
};

struct report_chart {
    const char *title, *xlabel, *ylabel;
};

/* Line chart of y vs x with a confidence band from lo to hi (sweep: score vs N). */
ICA_API int report_svg_line(struct report_buf *b, const struct report_chart *c,
                            const struct report_point *p, size_t n) ICA_WUR;
/* Bar chart, one bar per point with an error bar from lo to hi (ablation variants). */
ICA_API int report_svg_bars(struct report_buf *b, const struct report_chart *c,
                            const struct report_point *p, size_t n) ICA_WUR;
/* Step chart of y (best score so far) vs x (search step). */
ICA_API int report_svg_steps(struct report_buf *b, const struct report_chart *c,
                             const struct report_point *p, size_t n) ICA_WUR;

/* Markdown table: header[0..ncols), then nrows rows of cells[r * ncols + c] (NULL = empty).
 * '|' and newlines in cells are escaped. */
ICA_API int report_md_table(struct report_buf *b, const char *const *header, size_t ncols,
                            const char *const *cells, size_t nrows) ICA_WUR;

/* Score text as used in the tables: "%.3f", "-" for NaN. */
ICA_API const char *report_fmt(double v, char *buf, size_t n);

#endif
