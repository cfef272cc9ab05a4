/* icalign bench -m MODEL [-p 512] [-n 128] [-r 3] [-t T] [--json]: prompt
 * processing and generation speed in llama-bench's terms, so that the two
 * programs' tables can be printed side by side:
 *   ppP: P tokens in one batch on an empty context (one forward pass per
 *        --batch tokens), tokens/s = P / time;
 *   tgN: N tokens one at a time on an empty context, tokens/s = N / time.
 * Each repetition starts from an empty context; one untimed warm-up run of
 * each test comes first (as llama-bench does). Token ids are fixed
 * pseudo-random values, never special ones. */
#include "cli.h"

#include "icalign/dtype.h"
#include "icalign/gguf.h"
#include "icalign/model.h"
#include "icalign/pool.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { OPT_JSON = 0x400, OPT_NO_WARMUP };

static void usage(FILE *fp) {
    fprintf(fp,
            "usage: icalign bench -m MODEL.gguf [-p N] [-n N] [-r N] [-t N] [--json]\n"
            "       icalign bench --workload urial -m MODEL.gguf [options]   (see --workload "
            "urial --help)\n\n"
            "Prompt processing (ppN: N tokens in one batch) and generation (tgN: N tokens one\n"
            "at a time) speed of the local engine, each on an empty context, mean +- sd over\n"
            "the repetitions after one warm-up run; the table matches llama-bench's so the\n"
            "two can be compared on the same file and thread count.\n\n"
            "%s"
            "  -p, --n-prompt N       prompt tokens (default 512; 0 = no pp test)\n"
            "  -n, --n-gen N          generated tokens (default 128; 0 = no tg test)\n"
            "  -r, --repetitions N    timed repetitions of each test (default 3)\n"
            "      --no-warmup        skip the untimed first run\n"
            "      --json             one JSON array (llama-bench -o json fields)\n"
            "  -h, --help             this text\n\n"
            "Example:\n"
            "  icalign bench -m tl-q4_0.gguf -p 512 -n 128 -t 2 -r 3\n"
            "  llama-bench  -m tl-q4_0.gguf -p 512 -n 128 -t 2 -r 3\n",
            cli_model_opts_help());
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One run: n tokens as one prompt (pp) or one at a time (tg). Returns
 * tokens/s, or a negative value after printing an error. */
static double run_once(struct model_ctx *c, uint32_t V, uint32_t n, bool pp, uint64_t seed) {
    struct ica_error err = {0};
    model_ctx_truncate(c, 0);
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    if (!ids) {
        cli_error("bench: out of memory");
        return -1;
    }
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (uint32_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ids[i] = (int32_t)(V > 100 ? 100 + x % (V - 100) : x % V);
    }
    const double t0 = now_s();
    int rc = ICA_OK;
    if (pp)
        rc = model_eval(c, ids, n, NULL, false, &err);
    else
        for (uint32_t i = 0; i < n && rc == ICA_OK; i++)
            rc = model_eval(c, &ids[i], 1, NULL, false, &err);
    const double dt = now_s() - t0;
    free(ids);
    if (rc != ICA_OK) {
        cli_error("bench: %s", err.msg);
        return -1;
    }
    return (double)n / (dt > 0 ? dt : 1e-9);
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int cmd_bench_speed(int argc, char **argv) {
    struct cli_model_opts mo;
    cli_model_opts_init(&mo);
    long n_prompt = 512, n_gen = 128, reps = 3;
    bool json = false, warmup = true;
    static const struct option opts[] = {CLI_MODEL_LONGOPTS,
                                         {"n-prompt", required_argument, 0, 'p'},
                                         {"n-gen", required_argument, 0, 'n'},
                                         {"repetitions", required_argument, 0, 'r'},
                                         {"json", no_argument, 0, OPT_JSON},
                                         {"no-warmup", no_argument, 0, OPT_NO_WARMUP},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, CLI_MODEL_SHORTOPTS "p:n:r:h", opts, NULL)) != -1) {
        int r = cli_model_opts_parse(&mo, ch, optarg);
        if (r < 0)
            return 2;
        if (r > 0)
            continue;
        switch (ch) {
        case 'p':
            if (!cli_parse_int("--n-prompt", optarg, 0, 1 << 20, &n_prompt))
                return 2;
            break;
        case 'n':
            if (!cli_parse_int("--n-gen", optarg, 0, 1 << 20, &n_gen))
                return 2;
            break;
        case 'r':
            if (!cli_parse_int("--repetitions", optarg, 1, 1000, &reps))
                return 2;
            break;
        case OPT_JSON:
            json = true;
            break;
        case OPT_NO_WARMUP:
            warmup = false;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        cli_error("bench: unexpected argument '%s'", argv[optind]);
        return 2;
    }
    if (n_prompt == 0 && n_gen == 0) {
        cli_error("bench: nothing to measure (-p 0 and -n 0)");
        return 2;
    }
    int rc = cli_model_open(&mo, "bench");
    if (rc)
        return rc;
    const uint32_t need = (uint32_t)(n_prompt > n_gen ? n_prompt : n_gen);
    if (!mo.n_ctx)
        mo.n_ctx = need;
    if ((rc = cli_model_new_ctx(&mo, "bench", need))) {
        cli_model_close(&mo);
        return rc;
    }
    const struct model_hparams *hp = model_get_hparams(mo.model);
    const struct gguf_file *g = model_gguf(mo.model);
    double bytes = 0, params = 0;
    uint32_t main_type = 0;
    double main_bytes = 0;
    double type_bytes[ICA_DTYPE_COUNT] = {0};
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const struct gguf_tensor *t = gguf_tensor(g, i);
        double ne = 1;
        for (uint32_t d = 0; d < t->n_dims; d++)
            ne *= (double)t->ne[d];
        bytes += (double)t->nbytes;
        params += ne;
        if (t->type < ICA_DTYPE_COUNT)
            type_bytes[t->type] += (double)t->nbytes;
    }
    for (uint32_t t = 0; t < ICA_DTYPE_COUNT; t++)
        if (type_bytes[t] > main_bytes) {
            main_bytes = type_bytes[t];
            main_type = t;
        }
    const int threads = mo.n_threads > 0 ? mo.n_threads : pool_default_threads();
    if (json)
        printf("[\n");
    else {
        printf("| model | size | params | backend | threads | test | t/s |\n");
        printf("| --- | ---: | ---: | --- | ---: | ---: | ---: |\n");
    }
    int first = 1;
    for (int k = 0; k < 2; k++) {
        const bool pp = k == 0;
        const uint32_t n = (uint32_t)(pp ? n_prompt : n_gen);
        if (!n)
            continue;
        if (warmup && run_once(mo.ctx, hp->n_vocab, pp ? n : 1, pp, 99) < 0) {
            cli_model_close(&mo);
            return 1;
        }
        double *ts = calloc((size_t)reps, sizeof *ts);
        if (!ts) {
            cli_model_close(&mo);
            return 1;
        }
        double sum = 0, sq = 0;
        for (long r = 0; r < reps; r++) {
            ts[r] = run_once(mo.ctx, hp->n_vocab, n, pp, (uint64_t)r + 1);
            if (ts[r] < 0) {
                free(ts);
                cli_model_close(&mo);
                return 1;
            }
            sum += ts[r];
            sq += ts[r] * ts[r];
        }
        const double mean = sum / (double)reps;
        const double var = reps > 1 ? (sq - (double)reps * mean * mean) / (double)(reps - 1) : 0;
        const double sd = var > 0 ? sqrt(var) : 0;
        char test[32];
        snprintf(test, sizeof test, "%s%u", pp ? "pp" : "tg", n);
        if (json) {
            printf("%s  {\"model_filename\": \"%s\", \"model_type\": \"%s %s\", \"model_size\": "
                   "%.0f, \"model_n_params\": %.0f, \"n_threads\": %d, \"n_prompt\": %u, "
                   "\"n_gen\": %u, \"avg_ts\": %.6f, \"stddev_ts\": %.6f, \"samples_ts\": [",
                   first ? "" : ",\n", base_name(mo.path), hp->arch,
                   ica_dtype_info(main_type)->name, bytes, params, threads, pp ? n : 0, pp ? 0 : n,
                   mean, sd);
            for (long r = 0; r < reps; r++)
                printf("%s%.6f", r ? ", " : "", ts[r]);
            printf("]}");
        } else {
            const double pv = params >= 1e9   ? params / 1e9
                              : params >= 1e6 ? params / 1e6
                                              : params / 1e3;
            const char *pu = params >= 1e9 ? "B" : params >= 1e6 ? "M" : "K";
            printf("| %s %s | %.2f MiB | %.2f %s | CPU | %d | %s | %.2f ± %.2f |\n", hp->arch,
                   ica_dtype_info(main_type)->name, bytes / 1048576.0, pv, pu, threads, test, mean,
                   sd);
        }
        fflush(stdout);
        first = 0;
        free(ts);
    }
    if (json)
        printf("\n]\n");
    cli_model_close(&mo);
    return 0;
}
