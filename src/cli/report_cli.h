/* icalign — report files of the experiment commands (RUN_DIR/report.md and the SVG charts). */
#ifndef ICALIGN_CLI_REPORT_CLI_H
#define ICALIGN_CLI_REPORT_CLI_H

#include "icalign/report.h"

enum rcli_chart { RCLI_LINE, RCLI_BARS };

/* Reads dir/csv_name (a table written by xp_eval_table: name,score,ci_low,ci_high,n_rated,
 * n_questions[,up to two extra numeric columns, shown in the Markdown table under their CSV
 * names]), writes its chart to dir/svg_name (line: x = the number after the name's last
 * '-'; bars: one bar per row; y axis ylabel, NULL = "mean judge score") and appends a section
 * (heading, Markdown table, chart link) to md. Returns 0, or 1 after printing an error. */
int rcli_table(const char *cmd, const char *dir, const char *csv_name, const char *svg_name,
               enum rcli_chart kind, const char *title, const char *col, const char *xlabel,
               const char *score_name, const char *ylabel, struct report_buf *md);

/* Writes buf to dir/name atomically. Returns 0, or 1 after printing an error. */
int rcli_write(const char *cmd, const char *dir, const char *name, const struct report_buf *buf);

#endif
