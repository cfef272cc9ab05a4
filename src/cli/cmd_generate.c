/* icalign generate: complete a prompt with a base model. */
#include "cli.h"

#include "icalign/engine.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *fp) {
    fprintf(fp,
            "usage: icalign generate -m MODEL.gguf (-p TEXT | --ids LIST) [options]\n\n"
            "Completes the prompt and prints the new text as it is generated.\n\n"
            "%s"
            "  -p, --prompt TEXT         prompt text (BOS added as the vocabulary says)\n"
            "      --ids LIST            prompt as token ids; the generated ids are printed too\n"
            "      --no-bos              do not add BOS to -p text\n"
            "      --special             parse special-token text in -p\n"
            "  -n, --n-predict N         new tokens at most (default 128)\n"
            "      --temp T              temperature; 0 = greedy (default 0)\n"
            "      --top-k K             keep the K most likely tokens (0 = off)\n"
            "      --top-p P             nucleus sampling (1 = off)\n"
            "      --min-p P             drop tokens below P x the top probability (0 = off)\n"
            "      --repeat-penalty R    Hugging Face repetition penalty over prompt + output\n"
            "      --frequency-penalty F OpenAI frequency penalty (generated tokens)\n"
            "      --presence-penalty P  OpenAI presence penalty (generated tokens)\n"
            "      --seed S              sampling seed (default 0)\n"
            "      --stop STR            stop before STR (repeatable)\n"
            "      --ignore-eos          do not stop at end-of-generation tokens\n"
            "      --print-ids           print the generated token ids after the text\n"
            "  -q, --quiet               no timing line on stderr\n"
            "  -h, --help                this text\n",
            cli_model_opts_help());
}

enum {
    OPT_IDS = 2000,
    OPT_NO_BOS,
    OPT_SPECIAL,
    OPT_TEMP,
    OPT_TOPK,
    OPT_TOPP,
    OPT_MINP,
    OPT_REP,
    OPT_FREQ,
    OPT_PRES,
    OPT_SEED,
    OPT_STOP,
    OPT_IGNORE_EOS,
    OPT_PRINT_IDS
};

static bool emit_stdout(void *ud, const char *text, size_t len) {
    (void)ud;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

int cmd_generate(int argc, char **argv) {
    struct cli_model_opts mo;
    cli_model_opts_init(&mo);
    struct gen_params gp = gen_default_params();
    const char *ids_arg = NULL, *prompt = NULL;
    bool no_bos = false, special = false, print_ids = false, quiet = false;
    const char **stops = calloc((size_t)argc + 1, sizeof *stops);
    uint32_t n_stops = 0;
    static const struct option opts[] = {CLI_MODEL_LONGOPTS,
                                         {"prompt", required_argument, 0, 'p'},
                                         {"ids", required_argument, 0, OPT_IDS},
                                         {"no-bos", no_argument, 0, OPT_NO_BOS},
                                         {"special", no_argument, 0, OPT_SPECIAL},
                                         {"n-predict", required_argument, 0, 'n'},
                                         {"temp", required_argument, 0, OPT_TEMP},
                                         {"top-k", required_argument, 0, OPT_TOPK},
                                         {"top-p", required_argument, 0, OPT_TOPP},
                                         {"min-p", required_argument, 0, OPT_MINP},
                                         {"repeat-penalty", required_argument, 0, OPT_REP},
                                         {"frequency-penalty", required_argument, 0, OPT_FREQ},
                                         {"presence-penalty", required_argument, 0, OPT_PRES},
                                         {"seed", required_argument, 0, OPT_SEED},
                                         {"stop", required_argument, 0, OPT_STOP},
                                         {"ignore-eos", no_argument, 0, OPT_IGNORE_EOS},
                                         {"print-ids", no_argument, 0, OPT_PRINT_IDS},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int ch, rc = 2;
    long lv;
    double dv;
    if (!stops) {
        cli_error("out of memory");
        return 1;
    }
    while ((ch = getopt_long(argc, argv, CLI_MODEL_SHORTOPTS "p:n:qh", opts, NULL)) != -1) {
        int r = cli_model_opts_parse(&mo, ch, optarg);
        if (r < 0)
            goto out;
        if (r > 0)
            continue;
        switch (ch) {
        case 'p':
            prompt = optarg;
            break;
        case OPT_IDS:
            ids_arg = optarg;
            print_ids = true;
            break;
        case OPT_NO_BOS:
            no_bos = true;
            break;
        case OPT_SPECIAL:
            special = true;
            break;
        case 'n':
            if (!cli_parse_int("-n", optarg, 0, 1 << 24, &lv))
                goto out;
            gp.max_tokens = (uint32_t)lv;
            break;
        case OPT_TEMP:
            if (!cli_parse_float("--temp", optarg, 0, 100, &dv))
                goto out;
            gp.sampling.temperature = (float)dv;
            break;
        case OPT_TOPK:
            if (!cli_parse_int("--top-k", optarg, 0, 1 << 30, &lv))
                goto out;
            gp.sampling.top_k = (int32_t)lv;
            break;
        case OPT_TOPP:
            if (!cli_parse_float("--top-p", optarg, 0, 1, &dv))
                goto out;
            gp.sampling.top_p = (float)dv;
            break;
        case OPT_MINP:
            if (!cli_parse_float("--min-p", optarg, 0, 1, &dv))
                goto out;
            gp.sampling.min_p = (float)dv;
            break;
        case OPT_REP:
            if (!cli_parse_float("--repeat-penalty", optarg, 1e-3, 100, &dv))
                goto out;
            gp.sampling.repetition_penalty = (float)dv;
            break;
        case OPT_FREQ:
            if (!cli_parse_float("--frequency-penalty", optarg, -100, 100, &dv))
                goto out;
            gp.sampling.frequency_penalty = (float)dv;
            break;
        case OPT_PRES:
            if (!cli_parse_float("--presence-penalty", optarg, -100, 100, &dv))
                goto out;
            gp.sampling.presence_penalty = (float)dv;
            break;
        case OPT_SEED:
            if (!cli_parse_int("--seed", optarg, 0, 0x7fffffffffffffffL, &lv))
                goto out;
            gp.sampling.seed = (uint64_t)lv;
            break;
        case OPT_STOP:
            if (!*optarg) {
                cli_error("--stop needs a non-empty string");
                goto out;
            }
            stops[n_stops++] = optarg;
            break;
        case OPT_IGNORE_EOS:
            gp.ignore_eos = true;
            break;
        case OPT_PRINT_IDS:
            print_ids = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'h':
            help(stdout);
            rc = 0;
            goto out;
        default:
            help(stderr);
            goto out;
        }
    }
    if (optind < argc) {
        cli_error("generate: unexpected argument '%s'", argv[optind]);
        goto out;
    }
    if (!!ids_arg == !!prompt) {
        cli_error("generate: give exactly one of -p TEXT and --ids LIST");
        goto out;
    }
    gp.stop = stops;
    gp.n_stop = n_stops;
    if ((rc = cli_model_open(&mo, "generate")))
        goto out;
    size_t n = 0;
    int32_t *ids = cli_prompt_ids(&mo, prompt, ids_arg, no_bos, special, &n);
    if (!ids || n == 0) {
        free(ids);
        rc = 1;
        goto out;
    }
    if ((rc = cli_model_new_ctx(&mo, "generate", (uint32_t)n + gp.max_tokens))) {
        free(ids);
        goto out;
    }
    struct gen_result res;
    struct ica_error err = {0};
    if (engine_generate(mo.ctx, mo.vocab, ids, (uint32_t)n, &gp, emit_stdout, NULL, &res, &err) !=
        ICA_OK) {
        fputc('\n', stdout);
        cli_error("%s", err.msg);
        free(ids);
        rc = 1;
        goto out;
    }
    fputc('\n', stdout);
    if (print_ids) {
        printf("ids:");
        for (uint32_t i = 0; i < res.n_ids; i++)
            printf("%s%d", i ? "," : " ", res.ids[i]);
        printf("\n");
    }
    if (!quiet) {
        static const char *why[] = {"end of generation", "max tokens", "stop string", "cancelled"};
        fprintf(stderr,
                "icalign: prompt %u tokens in %.2f s (%.1f tok/s), generated %u tokens in %.2f s "
                "(%.1f tok/s), stopped on %s\n",
                res.n_prompt, res.t_prompt_s,
                res.t_prompt_s > 0 ? res.n_prompt / res.t_prompt_s : 0.0, res.n_ids, res.t_gen_s,
                res.t_gen_s > 0 ? res.n_ids / res.t_gen_s : 0.0, why[res.reason]);
    }
    gen_result_free(&res);
    free(ids);
    rc = 0;
out:
    cli_model_close(&mo);
    free(stops);
    return rc;
}
