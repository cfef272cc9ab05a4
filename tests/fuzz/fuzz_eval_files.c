/* libFuzzer: the FastChat judgment JSONL reader, the alpaca_eval annotations reader and the
 * df_gamed.csv reader; the first byte picks the reader. Malformed input must give an error. */
#include "icalign/eval.h"

#include <math.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;
    struct ica_error e;
    switch (data[0] % 3) {
    case 0: {
        struct eval_mt_judgments *j;
        if (eval_mt_judgments_parse(buf, len, "fuzz.jsonl", &j, &e) == 0) {
            for (int sem = 0; sem < 3; sem++) {
                struct eval_mt_scores *s;
                if (eval_mt_aggregate(j, (enum eval_mt_semantics)sem, NULL, NULL, &s, &e) == 0)
                    eval_mt_scores_free(s);
            }
            eval_mt_judgments_free(j);
        }
        break;
    }
    case 1: {
        struct eval_ae_annotations *a;
        if (eval_ae_annotations_parse(buf, len, "fuzz.json", &a, &e) == 0) {
            double *p = malloc((a->n + 1) * sizeof *p);
            if (p) {
                for (size_t i = 0; i < a->n; i++)
                    p[i] = a->rows[i].preference;
                struct eval_ae_winrate w;
                eval_ae_winrate(p, a->n, &w);
                free(p);
            }
            eval_ae_annotations_free(a);
        }
        break;
    }
    default: {
        struct eval_ae_lcdata *d;
        if (eval_ae_lcdata_parse(buf, len, "fuzz.csv", &d, &e) == 0)
            eval_ae_lcdata_free(d);
        break;
    }
    }
    return 0;
}
