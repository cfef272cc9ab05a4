/* QA-matching ablations and the unsupervised layout (METHOD.md §3.2-3.3). */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* Texts of the ICL repository's unsupervised prompt files (verified for all 7 files). */
static const char k_unsup_intro[] = "You will be provided Problems similar to the ones below:\n\n";
static const char k_unsup_bridge[] =
    "Now, I am going to give you a series of conversations between a human and an AI assistant "
    "(you). When you respond, respond only with the Answer of the final Problem, thinking step "
    "by step.\n\n";
static const char k_unsup_dropped_line[] = "Below is a list of conversations";

static const char *const k_names[] = {"correct", "circular_shift", "random_answer", "no_answer",
                                      "unsupervised"};

const char *align_variant_name(enum align_variant v) {
    return (unsigned)v < sizeof k_names / sizeof k_names[0] ? k_names[v] : "?";
}

int align_variant_parse(const char *name, enum align_variant *v, struct ica_error *e) {
    char buf[32];
    size_t i = 0;
    for (; name[i] && i + 1 < sizeof buf; i++)
        buf[i] = name[i] == '-' ? '_' : name[i];
    buf[i] = '\0';
    for (size_t k = 0; k < sizeof k_names / sizeof k_names[0]; k++)
        if (!name[i] && strcmp(buf, k_names[k]) == 0) {
            *v = (enum align_variant)k;
            return ICA_OK;
        }
    return ica_seterr(e, ICA_ERR_ARG,
                      "unknown variant '%s' (valid: correct, circular_shift, random_answer, "
                      "no_answer, unsupervised)",
                      name);
}

/* Header without the line that starts with k_unsup_dropped_line, plus the intro. */
static char *unsup_header(const char *h) {
    struct abuf b = {0};
    const char *p = h;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) + 1 : strlen(p);
        if (strncmp(p, k_unsup_dropped_line, strlen(k_unsup_dropped_line)) != 0)
            abuf_add(&b, p, l);
        p += l;
    }
    abuf_adds(&b, k_unsup_intro);
    return abuf_take(&b, NULL);
}

static int do_unsupervised(struct align_set *s, const struct align_set *pool, struct ica_error *e) {
    if (!pool)
        return ica_seterr(e, ICA_ERR_ARG, "unsupervised needs a pool of queries (--queries)");
    char *h = unsup_header(s->header);
    if (!h)
        return align_nomem(e);
    free(s->header);
    s->header = h;
    for (size_t i = 0; i < pool->n; i++) {
        struct align_demo d = pool->demos[i];
        d.answer = NULL;
        int rc = align_set_insert(s, i, &d, e);
        if (rc)
            return rc;
    }
    return align_set_set_bridge(s, k_unsup_bridge, pool->n, e);
}

int align_transform(const struct align_set *in, enum align_variant v,
                    const struct align_transform_opts *o, struct align_set **out,
                    struct ica_error *e) {
    *out = NULL;
    static const struct align_transform_opts defaults = {.shift = 1};
    if (!o)
        o = &defaults;
    struct align_set *s = align_set_clone(in);
    if (!s)
        return align_nomem(e);
    int rc = ICA_OK;
    size_t na = 0;
    size_t *ans = malloc((s->n ? s->n : 1) * sizeof *ans); /* indices of answered demos */
    if (!ans) {
        align_set_free(s);
        return align_nomem(e);
    }
    for (size_t i = 0; i < s->n; i++)
        if (s->demos[i].answer)
            ans[na++] = i;
    switch (v) {
    case ALIGN_VARIANT_CORRECT:
        break;
    case ALIGN_VARIANT_NO_ANSWER:
        for (size_t i = 0; i < s->n; i++) {
            free(s->demos[i].answer);
            s->demos[i].answer = NULL;
        }
        break;
    case ALIGN_VARIANT_CIRCULAR_SHIFT: {
        if (o->shift != 1 && o->shift != -1) {
            rc = ica_seterr(e, ICA_ERR_ARG, "circular_shift: shift must be +1 or -1, got %d",
                            o->shift);
            break;
        }
        if (na < 2)
            break;
        char **old = malloc(na * sizeof *old);
        if (!old) {
            rc = align_nomem(e);
            break;
        }
        for (size_t k = 0; k < na; k++)
            old[k] = s->demos[ans[k]].answer;
        for (size_t k = 0; k < na; k++) {
            size_t from = o->shift > 0 ? (k + 1) % na : (k + na - 1) % na;
            s->demos[ans[k]].answer = old[from];
        }
        free(old);
        break;
    }
    case ALIGN_VARIANT_RANDOM_ANSWER: {
        const struct align_set *p = o->pool;
        if (!p) {
            rc = ica_seterr(e, ICA_ERR_ARG, "random_answer needs an answer pool (--answers)");
            break;
        }
        size_t np = 0;
        size_t *pidx = malloc((p->n ? p->n : 1) * sizeof *pidx);
        if (!pidx) {
            rc = align_nomem(e);
            break;
        }
        for (size_t i = 0; i < p->n; i++)
            if (p->demos[i].answer)
                pidx[np++] = i;
        if (np < na) {
            rc = ica_seterr(e, ICA_ERR_RANGE,
                            "random_answer: the answer pool has %zu answers, %zu are needed", np,
                            na);
            free(pidx);
            break;
        }
        if (o->seeded) {
            struct align_rng r;
            align_rng_seed(&r, o->seed);
            for (size_t k = 0; k < na; k++) {
                size_t j = k + (size_t)align_rng_below(&r, np - k);
                size_t t = pidx[k];
                pidx[k] = pidx[j];
                pidx[j] = t;
            }
        }
        for (size_t k = 0; k < na && !rc; k++)
            rc = align_set_set_answer(s, ans[k], p->demos[pidx[k]].answer, e);
        free(pidx);
        break;
    }
    case ALIGN_VARIANT_UNSUPERVISED:
        rc = do_unsupervised(s, o->pool, e);
        break;
    default:
        rc = ica_seterr(e, ICA_ERR_ARG, "unknown variant %d", (int)v);
    }
    free(ans);
    if (rc) {
        align_set_free(s);
        return rc;
    }
    *out = s;
    return ICA_OK;
}
