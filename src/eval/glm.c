/* AlpacaEval length-controlled win rate: the GLM of alpaca_eval glm_winrate.py, fitted with a C
 * re-implementation of sklearn's bundled liblinear (L1R_LR, newGLMNET) under GroupKFold(5)
 * cross-validation (data/alpaca_eval/SPEC.md section 4). */
#include "internal.h"
#include "icalign/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ==== df_gamed.csv ==== */

struct eval_ae_lcdata {
    size_t n;
    double *pref, *sdl, *diff; /* preference in [0,1], std_delta_len, instruction_difficulty */
    long *index;
    unsigned char *not_gamed;
    /* difficulty by df_gamed row label for the first occurrence of each index value */
    double *label_diff;
    unsigned char *label_ok;
};

void eval_ae_lcdata_free(struct eval_ae_lcdata *d) {
    if (!d)
        return;
    free(d->pref);
    free(d->sdl);
    free(d->diff);
    free(d->index);
    free(d->not_gamed);
    free(d->label_diff);
    free(d->label_ok);
    free(d);
}

/* Splits one CSV line (no quoting needed for this numeric file, but quoted fields are
 * accepted) into at most max fields; returns the count or -1. Modifies line. */
static int csv_split(char *line, char **f, int max) {
    int nf = 0;
    char *p = line;
    for (;;) {
        if (nf == max)
            return -1;
        if (*p == '"') {
            p++;
            f[nf++] = p;
            char *w = p;
            for (;;) {
                if (!*p)
                    return -1;
                if (*p == '"') {
                    if (p[1] == '"') {
                        *w++ = '"';
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                *w++ = *p++;
            }
            *w = '\0';
            if (*p == ',') {
                p++;
                continue;
            }
            if (*p)
                return -1;
            return nf;
        }
        f[nf++] = p;
        char *c = strchr(p, ',');
        if (!c)
            return nf;
        *c = '\0';
        p = c + 1;
    }
}

static int parse_num(const char *s, double *v) {
    char *end;
    if (!*s)
        return -1;
    *v = strtod(s, &end);
    return *end ? -1 : 0;
}

int eval_ae_lcdata_parse(const char *buf, size_t len, const char *name, struct eval_ae_lcdata **out,
                         struct ica_error *e) {
    *out = NULL;
    struct eval_ae_lcdata *d = calloc(1, sizeof *d);
    char *copy = malloc(len + 1);
    if (!d || !copy) {
        free(d);
        free(copy);
        return ica_seterr(e, ICA_ERR_NOMEM, "%s: out of memory", name);
    }
    memcpy(copy, buf, len);
    copy[len] = '\0';
    size_t cap = 0, lineno = 0;
    int col[6] = {-1, -1, -1, -1, -1, -1}; /* preference,index,sdl,difficulty,not_gamed */
    int rc = ICA_OK, header = 1;
    char *p = copy;
    while (p < copy + len && rc == ICA_OK) {
        char *nl = memchr(p, '\n', (size_t)(copy + len - p));
        char *line = p;
        if (nl) {
            *nl = '\0';
            p = nl + 1;
        } else {
            p = copy + len;
        }
        lineno++;
        size_t ll = strlen(line);
        if (ll && line[ll - 1] == '\r')
            line[--ll] = '\0';
        if (!ll)
            continue;
        char *f[16];
        int nf = csv_split(line, f, 16);
        if (nf < 0) {
            rc = ica_seterr(e, ICA_ERR_FORMAT, "%s:%zu: malformed CSV line", name, lineno);
            break;
        }
        if (header) {
            static const char *const want[5] = {"preference", "index", "std_delta_len",
                                                "instruction_difficulty", "not_gamed_baseline"};
            for (int i = 0; i < nf; i++)
                for (int k = 0; k < 5; k++)
                    if (!strcmp(f[i], want[k]))
                        col[k] = i;
            for (int k = 0; k < 5; k++)
                if (col[k] < 0)
                    rc = ica_seterr(e, ICA_ERR_FORMAT, "%s:%zu: column '%s' missing", name, lineno,
                                    want[k]);
            header = 0;
            continue;
        }
        int maxc = 0;
        for (int k = 0; k < 5; k++)
            if (col[k] > maxc)
                maxc = col[k];
        if (nf <= maxc) {
            rc = ica_seterr(e, ICA_ERR_FORMAT, "%s:%zu: %d fields, expected at least %d", name,
                            lineno, nf, maxc + 1);
            break;
        }
        if (d->n == cap) {
            size_t nc = cap ? cap * 2 : 2048;
            double *a = realloc(d->pref, nc * sizeof *a);
            if (a)
                d->pref = a;
            double *b = realloc(d->sdl, nc * sizeof *b);
            if (b)
                d->sdl = b;
            double *c = realloc(d->diff, nc * sizeof *c);
            if (c)
                d->diff = c;
            long *ix = realloc(d->index, nc * sizeof *ix);
            if (ix)
                d->index = ix;
            unsigned char *g = realloc(d->not_gamed, nc);
            if (g)
                d->not_gamed = g;
            if (!a || !b || !c || !ix || !g) {
                rc = ica_seterr(e, ICA_ERR_NOMEM, "%s: out of memory", name);
                break;
            }
            cap = nc;
        }
        double pv, iv, sv, dv;
        const char *gs = f[col[4]];
        if (parse_num(f[col[0]], &pv) || parse_num(f[col[1]], &iv) || parse_num(f[col[2]], &sv) ||
            parse_num(f[col[3]], &dv) || iv < 0 || iv > 1e9 || iv != floor(iv) ||
            (strcmp(gs, "True") && strcmp(gs, "False"))) {
            rc =
                ica_seterr(e, ICA_ERR_FORMAT, "%s:%zu: bad numeric field or boolean", name, lineno);
            break;
        }
        d->pref[d->n] = pv;
        d->index[d->n] = (long)iv;
        d->sdl[d->n] = sv;
        d->diff[d->n] = dv;
        d->not_gamed[d->n] = !strcmp(gs, "True");
        d->n++;
    }
    free(copy);
    if (rc == ICA_OK && (header || d->n == 0))
        rc = ica_seterr(e, ICA_ERR_FORMAT, "%s: no data rows", name);
    if (rc == ICA_OK) {
        /* drop_duplicates("index") keeps the first row of each index value, with its row label;
         * the model rows then look difficulty up BY LABEL (= row position in df_gamed) */
        d->label_diff = calloc(d->n, sizeof *d->label_diff);
        d->label_ok = calloc(d->n, 1);
        if (!d->label_diff || !d->label_ok)
            rc = ica_seterr(e, ICA_ERR_NOMEM, "%s: out of memory", name);
        for (size_t i = 0; i < d->n && rc == ICA_OK; i++) {
            int first = 1;
            for (size_t k = 0; k < i && first; k++)
                if (d->index[k] == d->index[i])
                    first = 0;
            if (first) {
                d->label_ok[i] = 1;
                d->label_diff[i] = d->diff[i];
            }
        }
    }
    if (rc) {
        eval_ae_lcdata_free(d);
        return rc;
    }
    *out = d;
    return ICA_OK;
}

int eval_ae_lcdata_read(const char *path, struct eval_ae_lcdata **out, struct ica_error *e) {
    *out = NULL;
    size_t len;
    char *buf = ev_read_file(path, &len, e);
    if (!buf)
        return e ? e->code : ICA_ERR_IO;
    int rc = eval_ae_lcdata_parse(buf, len, path, out, e);
    free(buf);
    return rc;
}

/* ==== GroupKFold on equal-size groups ==== */

int eval_groupkfold_equal(size_t n, int n_splits, int *fold) {
    if (n_splits < 2 || (size_t)n_splits > n)
        return ICA_ERR_ARG;
    size_t *t = malloc(n * sizeof *t);
    /* stack depth of introsort's partition is O(log n) as the smaller side is pushed */
    size_t stack[2 * 128];
    size_t sp = 0;
    if (!t)
        return ICA_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        t[i] = i;
    /* numpy's quicksort on all-equal keys: median-of-3 swaps, the unguarded partition stops at
     * every element, insertion sort moves nothing */
    ptrdiff_t pl = 0, pr = (ptrdiff_t)n - 1;
    for (;;) {
        while (pr - pl > 15) {
            ptrdiff_t pm = pl + ((pr - pl) >> 1);
            size_t tmp = t[pm];
            t[pm] = t[pr - 1];
            t[pr - 1] = tmp;
            ptrdiff_t pi = pl, pj = pr - 1;
            for (;;) {
                pi++;
                pj--;
                if (pi >= pj)
                    break;
                tmp = t[pi];
                t[pi] = t[pj];
                t[pj] = tmp;
            }
            tmp = t[pi];
            t[pi] = t[pr - 1];
            t[pr - 1] = tmp;
            if (sp + 2 > sizeof stack / sizeof stack[0]) {
                free(t);
                return ICA_ERR_RANGE;
            }
            if (pi - pl < pr - pi) {
                stack[sp++] = (size_t)(pi + 1);
                stack[sp++] = (size_t)pr;
                pr = pi - 1;
            } else {
                stack[sp++] = (size_t)pl;
                stack[sp++] = (size_t)(pi - 1);
                pl = pi + 1;
            }
        }
        if (sp == 0)
            break;
        pr = (ptrdiff_t)stack[--sp];
        pl = (ptrdiff_t)stack[--sp];
    }
    for (size_t j = 0; j < n; j++)
        fold[t[n - 1 - j]] = (int)(j % (size_t)n_splits);
    free(t);
    return ICA_OK;
}

/* ==== liblinear L1R_LR (sklearn's bundled copy) ==== */

struct col_entry {
    size_t row;
    double val;
};

static int bounded_rand(struct eval_mt19937 *r, int orig_range) {
    /* Lemire's method as sklearn's newrand.h bounded_rand_int */
    uint32_t range = (uint32_t)orig_range;
    uint32_t x = eval_mt19937_next(r);
    uint64_t m = (uint64_t)x * (uint64_t)range;
    uint32_t l = (uint32_t)m;
    if (l < range) {
        uint32_t t = -range;
        if (t >= range) {
            t -= range;
            if (t >= range)
                t %= range;
        }
        while (l < t) {
            x = eval_mt19937_next(r);
            m = (uint64_t)x * (uint64_t)range;
            l = (uint32_t)m;
        }
    }
    return (int)(m >> 32);
}

static void swap_int(int *a, int *b) {
    int t = *a;
    *a = *b;
    *b = t;
}

int eval_liblinear_l1r_lr(const double *X, const int *t, const double *sw, size_t l_in, size_t nf,
                          double Cval, double eps, int max_newton_iter, uint32_t seed, double *w,
                          struct ica_error *e) {
    size_t l = 0, pos = 0;
    for (size_t i = 0; i < l_in; i++)
        if (sw[i] > 0) {
            l++;
            if (t[i])
                pos++;
        }
    size_t neg = l - pos;
    if (nf == 0 || nf > 1000000)
        return ica_seterr(e, ICA_ERR_ARG, "liblinear: bad feature count %zu", nf);
    for (size_t j = 0; j < nf; j++)
        w[j] = 0;
    if (pos == 0 || neg == 0)
        return ica_seterr(e, ICA_ERR_ARG,
                          "liblinear: training data needs both classes with positive weight");
    const double INF = HUGE_VAL;
    int rc = ICA_OK;
    /* rows in liblinear's order: class 0 (y = -1) first, then class 1, each in input order */
    size_t *src = malloc(l * sizeof *src);
    signed char *y = malloc(l);
    double *Cw = malloc(l * sizeof *Cw);
    size_t *colstart = calloc(nf + 1, sizeof *colstart);
    struct col_entry *ent = NULL;
    int *index = malloc(nf * sizeof *index);
    double *Hdiag = malloc(nf * sizeof *Hdiag), *Grad = malloc(nf * sizeof *Grad);
    double *wpd = malloc(nf * sizeof *wpd), *xjneg_sum = malloc(nf * sizeof *xjneg_sum);
    double *xTd = malloc(l * sizeof *xTd), *exp_wTx = malloc(l * sizeof *exp_wTx);
    double *exp_wTx_new = malloc(l * sizeof *exp_wTx_new), *tau = malloc(l * sizeof *tau);
    double *D = malloc(l * sizeof *D);
    if (!src || !y || !Cw || !colstart || !index || !Hdiag || !Grad || !wpd || !xjneg_sum || !xTd ||
        !exp_wTx || !exp_wTx_new || !tau || !D) {
        rc = ica_seterr(e, ICA_ERR_NOMEM, "liblinear: out of memory");
        goto done;
    }
    {
        size_t k = 0;
        for (int cls = 0; cls <= 1; cls++)
            for (size_t i = 0; i < l_in; i++)
                if (sw[i] > 0 && (t[i] != 0) == cls) {
                    src[k] = i;
                    y[k] = cls ? 1 : -1;
                    Cw[k] = sw[i] * Cval;
                    k++;
                }
    }
    /* column-major copy of the nonzero entries (sklearn's dense_to_sparse skips zeros) */
    {
        size_t nnz = 0;
        for (size_t i = 0; i < l; i++)
            for (size_t j = 0; j < nf; j++)
                if (X[src[i] * nf + j] != 0) {
                    colstart[j + 1]++;
                    nnz++;
                }
        for (size_t j = 0; j < nf; j++)
            colstart[j + 1] += colstart[j];
        ent = malloc((nnz ? nnz : 1) * sizeof *ent);
        size_t *fill = malloc(nf * sizeof *fill);
        if (!ent || !fill) {
            free(fill);
            rc = ica_seterr(e, ICA_ERR_NOMEM, "liblinear: out of memory");
            goto done;
        }
        memcpy(fill, colstart, nf * sizeof *fill);
        for (size_t i = 0; i < l; i++)
            for (size_t j = 0; j < nf; j++) {
                double v = X[src[i] * nf + j];
                if (v != 0) {
                    ent[fill[j]].row = i;
                    ent[fill[j]].val = v;
                    fill[j]++;
                }
            }
        free(fill);
    }
    {
        double eps_p =
            eps * (double)(pos < neg ? (pos > 1 ? pos : 1) : (neg > 1 ? neg : 1)) / (double)l;
        int w_size = (int)nf;
        int j, s, newton_iter = 0, iter = 0;
        const int max_iter = 1000, max_num_linesearch = 20;
        int active_size, QP_active_size, QP_no_change = 0;
        double nu = 1e-12, inner_eps = 1, sigma = 0.01;
        double w_norm, w_norm_new, z, G, H;
        double Gnorm1_init = -1.0, Gmax_old = INF, Gmax_new, Gnorm1_new;
        double QP_Gmax_old = INF, QP_Gmax_new, QP_Gnorm1_new;
        double delta, negsum_xTd, cond;
        struct eval_mt19937 rng;
        eval_mt19937_seed(&rng, seed);

        for (size_t i = 0; i < l; i++)
            exp_wTx[i] = 0;
        w_norm = 0;
        for (j = 0; j < w_size; j++) {
            w_norm += fabs(w[j]);
            wpd[j] = w[j];
            index[j] = j;
            xjneg_sum[j] = 0;
            for (size_t q = colstart[j]; q < colstart[j + 1]; q++) {
                size_t ind = ent[q].row;
                exp_wTx[ind] += w[j] * ent[q].val;
                if (y[ind] == -1)
                    xjneg_sum[j] += Cw[ind] * ent[q].val;
            }
        }
        for (size_t i = 0; i < l; i++) {
            exp_wTx[i] = exp(exp_wTx[i]);
            double tau_tmp = 1 / (1 + exp_wTx[i]);
            tau[i] = Cw[i] * tau_tmp;
            D[i] = Cw[i] * exp_wTx[i] * tau_tmp * tau_tmp;
        }
        while (newton_iter < max_newton_iter) {
            Gmax_new = 0;
            Gnorm1_new = 0;
            active_size = w_size;
            for (s = 0; s < active_size; s++) {
                j = index[s];
                Hdiag[j] = nu;
                Grad[j] = 0;
                double tmp = 0;
                for (size_t q = colstart[j]; q < colstart[j + 1]; q++) {
                    size_t ind = ent[q].row;
                    Hdiag[j] += ent[q].val * ent[q].val * D[ind];
                    tmp += ent[q].val * tau[ind];
                }
                Grad[j] = -tmp + xjneg_sum[j];
                double Gp = Grad[j] + 1, Gn = Grad[j] - 1, violation = 0;
                if (w[j] == 0) {
                    if (Gp < 0)
                        violation = -Gp;
                    else if (Gn > 0)
                        violation = Gn;
                    else if (Gp > Gmax_old / (double)l && Gn < -Gmax_old / (double)l) {
                        active_size--;
                        swap_int(&index[s], &index[active_size]);
                        s--;
                        continue;
                    }
                } else if (w[j] > 0)
                    violation = fabs(Gp);
                else
                    violation = fabs(Gn);
                Gmax_new = Gmax_new > violation ? Gmax_new : violation;
                Gnorm1_new += violation;
            }
            if (newton_iter == 0)
                Gnorm1_init = Gnorm1_new;
            if (Gnorm1_new <= eps_p * Gnorm1_init || QP_no_change >= 10)
                break;
            QP_no_change++;
            iter = 0;
            QP_Gmax_old = INF;
            QP_active_size = active_size;
            for (size_t i = 0; i < l; i++)
                xTd[i] = 0;
            while (iter < max_iter) {
                QP_Gmax_new = 0;
                QP_Gnorm1_new = 0;
                for (j = 0; j < QP_active_size; j++) {
                    int i = j + bounded_rand(&rng, QP_active_size - j);
                    swap_int(&index[i], &index[j]);
                }
                for (s = 0; s < QP_active_size; s++) {
                    j = index[s];
                    H = Hdiag[j];
                    G = Grad[j] + (wpd[j] - w[j]) * nu;
                    for (size_t q = colstart[j]; q < colstart[j + 1]; q++) {
                        size_t ind = ent[q].row;
                        G += ent[q].val * D[ind] * xTd[ind];
                    }
                    double Gp = G + 1, Gn = G - 1, violation = 0;
                    if (wpd[j] == 0) {
                        if (Gp < 0)
                            violation = -Gp;
                        else if (Gn > 0)
                            violation = Gn;
                        else if (Gp > QP_Gmax_old / (double)l && Gn < -QP_Gmax_old / (double)l) {
                            QP_active_size--;
                            swap_int(&index[s], &index[QP_active_size]);
                            s--;
                            continue;
                        }
                    } else if (wpd[j] > 0)
                        violation = fabs(Gp);
                    else
                        violation = fabs(Gn);
                    if (Gp < H * wpd[j])
                        z = -Gp / H;
                    else if (Gn > H * wpd[j])
                        z = -Gn / H;
                    else
                        z = -wpd[j];
                    if (fabs(z) < 1.0e-12)
                        continue;
                    z = z < -10.0 ? -10.0 : (z > 10.0 ? 10.0 : z);
                    QP_no_change = 0;
                    QP_Gmax_new = QP_Gmax_new > violation ? QP_Gmax_new : violation;
                    QP_Gnorm1_new += violation;
                    wpd[j] += z;
                    for (size_t q = colstart[j]; q < colstart[j + 1]; q++)
                        xTd[ent[q].row] += ent[q].val * z;
                }
                iter++;
                if (QP_Gnorm1_new <= inner_eps * Gnorm1_init) {
                    if (QP_active_size == active_size)
                        break;
                    QP_active_size = active_size;
                    QP_Gmax_old = INF;
                    continue;
                }
                QP_Gmax_old = QP_Gmax_new;
            }
            delta = 0;
            w_norm_new = 0;
            for (j = 0; j < w_size; j++) {
                delta += Grad[j] * (wpd[j] - w[j]);
                if (wpd[j] != 0)
                    w_norm_new += fabs(wpd[j]);
            }
            delta += (w_norm_new - w_norm);
            negsum_xTd = 0;
            for (size_t i = 0; i < l; i++)
                if (y[i] == -1)
                    negsum_xTd += Cw[i] * xTd[i];
            int num_linesearch;
            for (num_linesearch = 0; num_linesearch < max_num_linesearch; num_linesearch++) {
                cond = w_norm_new - w_norm + negsum_xTd - sigma * delta;
                for (size_t i = 0; i < l; i++) {
                    double exp_xTd = exp(xTd[i]);
                    exp_wTx_new[i] = exp_wTx[i] * exp_xTd;
                    cond += Cw[i] * log((1 + exp_wTx_new[i]) / (exp_xTd + exp_wTx_new[i]));
                }
                if (cond <= 0) {
                    w_norm = w_norm_new;
                    for (j = 0; j < w_size; j++)
                        w[j] = wpd[j];
                    for (size_t i = 0; i < l; i++) {
                        exp_wTx[i] = exp_wTx_new[i];
                        double tau_tmp = 1 / (1 + exp_wTx[i]);
                        tau[i] = Cw[i] * tau_tmp;
                        D[i] = Cw[i] * exp_wTx[i] * tau_tmp * tau_tmp;
                    }
                    break;
                } else {
                    w_norm_new = 0;
                    for (j = 0; j < w_size; j++) {
                        wpd[j] = (w[j] + wpd[j]) * 0.5;
                        if (wpd[j] != 0)
                            w_norm_new += fabs(wpd[j]);
                    }
                    delta *= 0.5;
                    negsum_xTd *= 0.5;
                    for (size_t i = 0; i < l; i++)
                        xTd[i] *= 0.5;
                }
            }
            if (num_linesearch >= max_num_linesearch) {
                for (size_t i = 0; i < l; i++)
                    exp_wTx[i] = 0;
                for (int i = 0; i < w_size; i++) {
                    if (w[i] == 0)
                        continue;
                    for (size_t q = colstart[i]; q < colstart[i + 1]; q++)
                        exp_wTx[ent[q].row] += w[i] * ent[q].val;
                }
                for (size_t i = 0; i < l; i++)
                    exp_wTx[i] = exp(exp_wTx[i]);
            }
            if (iter == 1)
                inner_eps *= 0.25;
            newton_iter++;
            Gmax_old = Gmax_new;
        }
    }
done:
    free(src);
    free(y);
    free(Cw);
    free(colstart);
    free(ent);
    free(index);
    free(Hdiag);
    free(Grad);
    free(wpd);
    free(xjneg_sum);
    free(xTd);
    free(exp_wTx);
    free(exp_wTx_new);
    free(tau);
    free(D);
    return rc;
}

/* ==== length-controlled win rate ==== */

static double expit(double x) {
    return 1.0 / (1.0 + exp(-x));
}

/* sample standard deviation (ddof = 1) as pandas computes it: mean first, then squares */
static double std_ddof1(const double *x, size_t n, double *tmp) {
    if (n < 2)
        return NAN;
    double mean = eval_np_sum(x, n) / (double)n;
    for (size_t i = 0; i < n; i++)
        tmp[i] = (mean - x[i]) * (mean - x[i]);
    return sqrt(eval_np_sum(tmp, n) / (double)(n - 1));
}

#define NF 3

int eval_ae_length_controlled(const struct eval_ae_lcdata *d, const double *pref,
                              const size_t *len_1, const size_t *len_2, size_t n, bool is_baseline,
                              struct eval_ae_lc *out, struct ica_error *e) {
    memset(out, 0, sizeof *out);
    out->best_c = -1;
    for (int c = 0; c < EVAL_LC_NC; c++) {
        /* numpy.logspace(-4, 4, 10): linspace with the last point set exactly */
        double yv = c == EVAL_LC_NC - 1 ? 4.0 : (double)c * (8.0 / 9.0) + -4.0;
        out->cs[c] = pow(10.0, yv);
        out->cv_score[c] = NAN;
    }
    if (n == 0)
        return ica_seterr(e, ICA_ERR_ARG, "length-controlled win rate: no annotations");
    out->n = n;
    out->glm_pref = malloc(n * sizeof *out->glm_pref);
    if (!out->glm_pref)
        return ica_seterr(e, ICA_ERR_NOMEM, "out of memory");
    if (is_baseline) {
        for (size_t i = 0; i < n; i++)
            out->glm_pref[i] = 0.5;
        out->winrate = 50;
        out->standard_error = 0;
        return ICA_OK;
    }
    if (!d)
        return ica_seterr(e, ICA_ERR_ARG, "length-controlled win rate: df_gamed data missing");
    int rc = ICA_OK;
    size_t nt_max = d->n + n, N = 2 * nt_max;
    double *delta = malloc(n * sizeof *delta), *tmp = malloc((n > N ? n : N) * sizeof *tmp);
    double *diff = malloc(n * sizeof *diff);
    double *X = malloc(N * NF * sizeof *X), *tp = malloc(N * sizeof *tp);
    double *sw = malloc(N * sizeof *sw), *tsw = malloc(N * sizeof *tsw);
    int *lab = malloc(N * sizeof *lab), *fold = malloc(nt_max * sizeof *fold);
    double *Xf = malloc(N * NF * sizeof *Xf), *swf = malloc(N * sizeof *swf);
    int *labf = malloc(N * sizeof *labf);
    if (!delta || !tmp || !diff || !X || !tp || !sw || !tsw || !lab || !fold || !Xf || !swf ||
        !labf) {
        rc = ica_seterr(e, ICA_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        delta[i] = (double)len_1[i] - (double)len_2[i];
        /* row i looks its difficulty up by df_gamed row label i (SPEC 4.2) */
        if (i >= d->n || !d->label_ok[i]) {
            rc = ica_seterr(e, ICA_ERR_RANGE,
                            "length-controlled win rate: annotation row %zu has no instruction "
                            "difficulty (df_gamed has no first-occurrence row with label %zu)",
                            i, i);
            goto done;
        }
        diff[i] = d->label_diff[i];
    }
    double sd = std_ddof1(delta, n, tmp);
    if (!(sd > 0) || !isfinite(sd)) {
        rc = ica_seterr(e, ICA_ERR_ARG,
                        "length-controlled win rate: output length differences have no spread");
        goto done;
    }
    /* training rows: df_gamed (weight lambda/2 = 0.1 unless flagged not gamed), then the model */
    size_t nt = 0;
    double *ty = tmp; /* soft labels of the training rows, reused below */
    double *ts = malloc(nt_max * sizeof *ts);
    double *tx = malloc(nt_max * NF * sizeof *tx);
    if (!ts || !tx) {
        free(ts);
        free(tx);
        rc = ica_seterr(e, ICA_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t r = 0; r < d->n; r++) {
        if (isnan(d->pref[r]))
            continue;
        tx[nt * NF + 0] = tanh(d->sdl[r]);
        tx[nt * NF + 1] = d->diff[r];
        tx[nt * NF + 2] = d->not_gamed[r] ? 1.0 : 0.0;
        ty[nt] = d->pref[r];
        ts[nt] = (d->not_gamed[r] ? 1.0 : 0.0) + (d->not_gamed[r] ? 0.0 : 0.2) / 2;
        nt++;
    }
    for (size_t i = 0; i < n; i++) {
        double p = pref[i];
        if (p == 0)
            p = 1.5;
        double yv = p - 1;
        if (isnan(yv))
            continue;
        tx[nt * NF + 0] = tanh(delta[i] / sd);
        tx[nt * NF + 1] = diff[i];
        tx[nt * NF + 2] = 1.0;
        ty[nt] = yv;
        ts[nt] = 1.0;
        nt++;
    }
    out->n_train = nt;
    /* duplicated rows: copies A (class 1, weight y*s) then copies B (class 0, (1-y)*s) */
    size_t NN = 2 * nt;
    for (size_t r = 0; r < nt; r++) {
        for (int k = 0; k < 2; k++) {
            size_t q = r + (size_t)k * nt;
            memcpy(&X[q * NF], &tx[r * NF], NF * sizeof *X);
            tp[q] = k == 0 ? ty[r] : 1 - ty[r];
            sw[q] = tp[q] * ts[r];
            tsw[q] = ts[r];
            lab[q] = k == 0;
        }
    }
    free(ts);
    free(tx);
    if (nt < 5 || eval_groupkfold_equal(nt, 5, fold)) {
        rc = ica_seterr(e, ICA_ERR_ARG, "length-controlled win rate: too few training rows (%zu)",
                        nt);
        goto done;
    }
    uint32_t seed = eval_sklearn_liblinear_seed(123);
    double sum_score[EVAL_LC_NC];
    for (int c = 0; c < EVAL_LC_NC && rc == ICA_OK; c++) {
        sum_score[c] = 0;
        for (int k = 0; k < 5 && rc == ICA_OK; k++) {
            size_t m = 0;
            for (size_t q = 0; q < NN; q++)
                if (fold[q % nt] != k) {
                    memcpy(&Xf[m * NF], &X[q * NF], NF * sizeof *X);
                    swf[m] = sw[q];
                    labf[m] = lab[q];
                    m++;
                }
            double w[NF];
            rc = eval_liblinear_l1r_lr(Xf, labf, swf, m, NF, out->cs[c], 1e-4, 100, seed, w, e);
            if (rc)
                break;
            size_t nte = 0;
            for (size_t q = 0; q < NN; q++) {
                if (fold[q % nt] != k)
                    continue;
                const double *x = &X[q * NF];
                double qv = expit(x[0] * w[0] + x[1] * w[1] + x[2] * w[2]);
                if (qv < 1e-15)
                    qv = 1e-15;
                if (qv > 1 - 1e-15)
                    qv = 1 - 1e-15;
                double yt = lab[q] ? tp[q] : 1 - tp[q];
                swf[nte++] = (yt * log(qv) + (1 - yt) * log(1 - qv)) * tsw[q];
            }
            sum_score[c] += eval_np_sum(swf, nte) / (double)nte;
        }
        out->cv_score[c] = sum_score[c] / 5;
    }
    if (rc)
        goto done;
    int best = 0;
    for (int c = 1; c < EVAL_LC_NC; c++)
        if (sum_score[c] > sum_score[best])
            best = c;
    out->best_c = best;
    for (size_t q = 0; q < NN; q++)
        labf[q] = lab[q];
    double w[NF];
    rc = eval_liblinear_l1r_lr(X, labf, sw, NN, NF, out->cs[best], 1e-4, 100, seed, w, e);
    if (rc)
        goto done;
    out->w_len = w[0];
    out->w_id = w[1];
    out->w_m = w[2];
    for (size_t i = 0; i < n; i++)
        out->glm_pref[i] = expit(0.0 * w[0] + diff[i] * w[1] + 1.0 * w[2]);
    out->winrate = 100 * eval_np_sum(out->glm_pref, n) / (double)n;
    out->standard_error = n > 1 ? 100 * std_ddof1(out->glm_pref, n, tmp) / sqrt((double)n) : NAN;
done:
    free(delta);
    free(tmp);
    free(diff);
    free(X);
    free(tp);
    free(sw);
    free(tsw);
    free(lab);
    free(fold);
    free(Xf);
    free(swf);
    free(labf);
    if (rc) {
        free(out->glm_pref);
        out->glm_pref = NULL;
    }
    return rc;
}
