/* report: SVG charts are well-formed (balanced tags, escaped text), byte-identical for the same
 * input, survive NaN and empty inputs; Markdown tables escape their cells. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "icalign/report.h"

/* Minimal XML check: one root, every start tag closed in order, no stray '<' or '&' in text,
 * attribute values quoted. Returns the number of elements, -1 when malformed. */
static int xml_check(const char *s) {
    char stack[64][32];
    int depth = 0, elems = 0, roots = 0;
    while (*s) {
        if (*s == '&') {
            const char *ents[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
            int ok = 0;
            for (int i = 0; i < 5; i++)
                if (!strncmp(s, ents[i], strlen(ents[i])))
                    ok = 1;
            if (!ok)
                return -1;
            s++;
            continue;
        }
        if (*s == '>')
            return -1;
        if (*s != '<') {
            s++;
            continue;
        }
        if (s[1] == '?') {
            const char *e = strstr(s, "?>");
            if (!e)
                return -1;
            s = e + 2;
            continue;
        }
        int closing = s[1] == '/';
        const char *n = s + 1 + closing;
        size_t nl = strcspn(n, " \t\n/>");
        if (nl == 0 || nl >= 32)
            return -1;
        const char *p = n + nl;
        int quote = 0;
        while (*p && (quote || *p != '>')) {
            if (*p == '"')
                quote = !quote;
            else if (quote && (*p == '<'))
                return -1;
            p++;
        }
        if (!*p)
            return -1;
        int self = p[-1] == '/';
        if (closing) {
            if (depth == 0 || strlen(stack[depth - 1]) != nl || strncmp(stack[depth - 1], n, nl))
                return -1;
            depth--;
        } else {
            if (depth == 0 && ++roots > 1)
                return -1;
            elems++;
            if (!self) {
                if (depth == 64)
                    return -1;
                memcpy(stack[depth], n, nl);
                stack[depth][nl] = '\0';
                depth++;
            }
        }
        s = p + 1;
    }
    return depth == 0 && roots == 1 ? elems : -1;
}

static size_t count(const char *s, const char *sub) {
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, sub)); p += strlen(sub))
        n++;
    return n;
}

static const struct report_point PTS[] = {
    {"random-3", 3, 5.5, 5.0, 6.0},
    {"random-5", 5, 6.25, 5.5, 7.0},
    {"random-10", 10, NAN, NAN, NAN},
    {"random-20", 20, 7.0, NAN, NAN},
};
static const struct report_chart CH = {"Score <vs> N & \"more\"", "N (demos)", "mean score"};

typedef int (*chart_fn)(struct report_buf *, const struct report_chart *,
                        const struct report_point *, size_t);

/* No class of the root <svg> element is styled by the chart's own <style>: a rule meant for one
 * element (".ica-line{fill:none;stroke:...}") would otherwise be inherited by every text and
 * shape (it made Chromium draw all text of the line chart in blue outline). */
static void check_root_classes(const char *svg) {
    const char *r = strstr(svg, "<svg ");
    assert_non_null(r);
    const char *c = strstr(r, "class=\"");
    assert_non_null(c);
    assert_true(c < strchr(r, '>'));
    c += 7;
    while (*c && *c != '"') {
        size_t n = strcspn(c, " \"");
        char sel[80];
        assert_true(n > 0 && n < 60);
        snprintf(sel, sizeof sel, ".%.*s{", (int)n, c);
        assert_null(strstr(svg, sel));
        snprintf(sel, sizeof sel, ".%.*s,", (int)n, c);
        assert_null(strstr(svg, sel));
        c += n;
        while (*c == ' ')
            c++;
    }
}

static void check_chart(chart_fn fn, const char *cls) {
    struct report_buf a = {0}, b = {0};
    assert_int_equal(fn(&a, &CH, PTS, 4), 0);
    assert_int_equal(fn(&b, &CH, PTS, 4), 0);
    assert_non_null(a.data);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len); /* deterministic */
    assert_true(xml_check(a.data) > 5);
    check_root_classes(a.data);
    assert_non_null(strstr(a.data, "Score &lt;vs&gt; N &amp; &quot;more&quot;"));
    assert_null(strstr(a.data, "<vs>"));
    assert_null(strstr(a.data, "nan"));
    assert_null(strstr(a.data, "inf"));
    assert_non_null(strstr(a.data, cls));
    assert_non_null(strstr(a.data, "N (demos)"));
    assert_non_null(strstr(a.data, "mean score"));
    /* a tooltip per drawn point (3 finite scores) */
    assert_true(count(a.data, "<title>") >= 4);
    report_buf_free(&a);
    report_buf_free(&b);
    /* empty and all-NaN input: axes only, still well-formed */
    assert_int_equal(fn(&a, &CH, NULL, 0), 0);
    assert_true(xml_check(a.data) > 0);
    report_buf_free(&a);
    struct report_point nanp[2] = {{NULL, NAN, NAN, NAN, NAN}, {NULL, 1, NAN, NAN, NAN}};
    assert_int_equal(fn(&a, NULL, nanp, 2), 0);
    assert_true(xml_check(a.data) > 0);
    assert_null(strstr(a.data, "nan"));
    report_buf_free(&a);
    /* a single point (zero-width ranges) */
    assert_int_equal(fn(&a, &CH, PTS, 1), 0);
    assert_true(xml_check(a.data) > 0);
    assert_null(strstr(a.data, "nan"));
    report_buf_free(&a);
}

static void test_line(void **st) {
    (void)st;
    check_chart(report_svg_line, "ica-band");
}
static void test_bars(void **st) {
    (void)st;
    check_chart(report_svg_bars, "ica-err");
}
static void test_steps(void **st) {
    (void)st;
    check_chart(report_svg_steps, "ica-step");
}

static void test_xml_escape_and_checker(void **st) {
    (void)st;
    struct report_buf b = {0};
    report_buf_puts(&b, "<a x=\"");
    report_buf_xml(&b, "1 < 2 & \"q\" 'p' >");
    report_buf_puts(&b, "\">");
    report_buf_xml(&b, "<b>&\x01");
    report_buf_puts(&b, "</a>");
    assert_string_equal(b.data, "<a x=\"1 &lt; 2 &amp; &quot;q&quot; &apos;p&apos; &gt;\">"
                                "&lt;b&gt;&amp; </a>");
    assert_int_equal(xml_check(b.data), 1);
    report_buf_free(&b);
    assert_int_equal(xml_check("<a><b></a></b>"), -1);
    assert_int_equal(xml_check("<a>x & y</a>"), -1);
    assert_int_equal(xml_check("<a/><b/>"), -1);
    assert_int_equal(xml_check("<a><b/></a>"), 2);
    /* long printf output goes through the slow path */
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    report_buf_printf(&b, "[%s]", big);
    assert_int_equal(b.len, sizeof big + 1);
    report_buf_free(&b);
}

static void test_md_table(void **st) {
    (void)st;
    const char *hdr[] = {"set", "score"};
    const char *cells[] = {"a|b", "1.000", NULL, "line\nbreak"};
    struct report_buf b = {0};
    assert_int_equal(report_md_table(&b, hdr, 2, cells, 2), 0);
    assert_string_equal(b.data, "| set | score |\n| --- | --- |\n| a\\|b | 1.000 |\n"
                                "|  | line break |\n");
    report_buf_free(&b);
    assert_int_equal(report_md_table(&b, hdr, 2, NULL, 0), 0);
    assert_string_equal(b.data, "| set | score |\n| --- | --- |\n");
    report_buf_free(&b);
    assert_int_not_equal(report_md_table(&b, NULL, 0, NULL, 0), 0);
    char buf[16];
    assert_string_equal(report_fmt(NAN, buf, sizeof buf), "-");
    assert_string_equal(report_fmt(6.25, buf, sizeof buf), "6.250");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line),     cmocka_unit_test(test_bars),
        cmocka_unit_test(test_steps),    cmocka_unit_test(test_xml_escape_and_checker),
        cmocka_unit_test(test_md_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
