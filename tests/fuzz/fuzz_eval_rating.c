/* libFuzzer: MT-Bench [[rating]] parser, just-eval reply parser and the str.format / template
 * renderers on arbitrary judge replies. */
#include "icalign/eval.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* not NUL-terminated on purpose: the parser must honour the length */
    double r = eval_mt_parse_rating((const char *)data, size);
    if (!(r == -1 || r >= 0))
        abort();
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    struct ica_error e;
    const char *names[] = {"question", "answer"};
    const char *vals[] = {"Q", "A"};
    free(eval_format_named(s, names, vals, 2, &e));
    double sc[EVAL_JE_NASPECT];
    (void)eval_je_parse_scores(s, size & 1, sc, &e);
    free(eval_je_render(s, "I", "C", &e));
    free(s);
    return 0;
}
