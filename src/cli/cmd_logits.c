/* icalign logits: teacher-forced evaluation, every position's logits. */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *fp) {
    fprintf(fp,
            "usage: icalign logits -m MODEL.gguf (--ids 1,2,3 | -p TEXT) -o OUT.f32 [options]\n\n"
            "Evaluates the tokens in one pass and writes the logits of every position as\n"
            "float32 little-endian rows (n_tokens x n_vocab, no header), the layout of\n"
            "llama.cpp's reference files. Row i is the distribution of token i+1.\n\n"
            "%s"
            "      --ids LIST         token ids, comma separated\n"
            "  -p, --prompt TEXT      text, tokenized with the model's tokenizer\n"
            "      --no-bos           do not add BOS to -p text\n"
            "      --special          parse special-token text in -p (e.g. <s>)\n"
            "  -o, --output PATH      output file ('-' = stdout)\n"
            "  -h, --help             this text\n",
            cli_model_opts_help());
}

enum { OPT_IDS = 2000, OPT_NO_BOS, OPT_SPECIAL };

int cmd_logits(int argc, char **argv) {
    struct cli_model_opts mo;
    cli_model_opts_init(&mo);
    const char *ids_arg = NULL, *prompt = NULL, *out_path = NULL;
    bool no_bos = false, special = false;
    static const struct option opts[] = {CLI_MODEL_LONGOPTS,
                                         {"ids", required_argument, 0, OPT_IDS},
                                         {"prompt", required_argument, 0, 'p'},
                                         {"no-bos", no_argument, 0, OPT_NO_BOS},
                                         {"special", no_argument, 0, OPT_SPECIAL},
                                         {"output", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, CLI_MODEL_SHORTOPTS "p:o:h", opts, NULL)) != -1) {
        int r = cli_model_opts_parse(&mo, ch, optarg);
        if (r < 0)
            return 2;
        if (r > 0)
            continue;
        switch (ch) {
        case OPT_IDS:
            ids_arg = optarg;
            break;
        case 'p':
            prompt = optarg;
            break;
        case OPT_NO_BOS:
            no_bos = true;
            break;
        case OPT_SPECIAL:
            special = true;
            break;
        case 'o':
            out_path = optarg;
            break;
        case 'h':
            help(stdout);
            return 0;
        default:
            help(stderr);
            return 2;
        }
    }
    if (!!ids_arg == !!prompt) {
        cli_error("logits: give exactly one of --ids and -p");
        return 2;
    }
    if (!out_path) {
        cli_error("logits: -o OUT.f32 is required");
        return 2;
    }
    int rc = cli_model_open(&mo, "logits");
    if (rc)
        return rc;
    size_t n = 0;
    int32_t *ids = cli_prompt_ids(&mo, prompt, ids_arg, no_bos, special, &n);
    if (!ids || n == 0) {
        if (ids)
            cli_error("logits: no tokens given");
        free(ids);
        cli_model_close(&mo);
        return 1;
    }
    if ((rc = cli_model_new_ctx(&mo, "logits", (uint32_t)n))) {
        free(ids);
        cli_model_close(&mo);
        return rc;
    }
    const uint32_t V = model_get_hparams(mo.model)->n_vocab;
    float *logits = malloc(n * V * sizeof *logits);
    struct ica_error err = {0};
    rc = 0;
    if (!logits) {
        cli_error("logits: out of memory for %zu x %u logits", n, V);
        rc = 1;
    } else if (model_eval(mo.ctx, ids, (uint32_t)n, logits, true, &err) != ICA_OK) {
        cli_error("%s", err.msg);
        rc = 1;
    } else {
        FILE *fp = strcmp(out_path, "-") ? fopen(out_path, "wb") : stdout;
        if (!fp || fwrite(logits, sizeof(float) * V, n, fp) != n ||
            (fp != stdout && fclose(fp) != 0)) {
            cli_error("logits: cannot write %s", out_path);
            rc = 1;
        } else {
            fprintf(stderr, "icalign: wrote %zu x %u logits to %s\n", n, V, out_path);
        }
    }
    free(logits);
    free(ids);
    cli_model_close(&mo);
    return rc;
}
