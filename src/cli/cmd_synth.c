/* icalign synth: random-weight models of real shapes, for speed work. */
#include "cli.h"

#include "icalign/model.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

struct preset {
    const char *name;
    const char *arch;
    uint32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx, n_expert, n_used;
    float rope_base;
    bool tied;
    const char *note;
};

/* Shapes of the published models (config.json of each). */
static const struct preset g_presets[] = {
    {"tinyllama-1.1b", "llama", 32000, 2048, 22, 32, 4, 5632, 2048, 0, 0, 10000, false,
     "TinyLlama-1.1B"},
    {"llama2-7b", "llama", 32000, 4096, 32, 32, 32, 11008, 4096, 0, 0, 10000, false, "Llama-2-7B"},
    {"mistral-7b", "llama", 32000, 4096, 32, 32, 8, 14336, 32768, 0, 0, 10000, false,
     "Mistral-7B-v0.1"},
    {"llama3-8b", "llama", 128256, 4096, 32, 32, 8, 14336, 8192, 0, 0, 500000, false,
     "Meta-Llama-3-8B"},
    {"qwen2.5-0.5b", "qwen2", 151936, 896, 24, 14, 2, 4864, 32768, 0, 0, 1000000, true,
     "Qwen2.5-0.5B"},
    {"mixtral-tiny", "llama", 32000, 1024, 4, 16, 4, 2048, 4096, 8, 2, 1000000, false,
     "Mixtral-style 8 experts, top 2, small"},
    {"tiny", "llama", 512, 256, 2, 8, 2, 768, 512, 0, 0, 10000, false, "test-sized"},
    {"tiny-hd64", "llama", 512, 512, 2, 8, 2, 768, 512, 0, 0, 10000, false,
     "test-sized, head_dim 64 like most real models"},
};

static void help(FILE *fp) {
    fprintf(fp, "usage: icalign synth --preset NAME --type T -o OUT.gguf [--seed S] "
                "[--vocab-from F.gguf]\n\n"
                "Writes a random-weight model of a real shape (for speed measurements; the\n"
                "text it generates is noise). Weights are quantized with icalign's own\n"
                "quantizers; the file also loads in llama.cpp.\n\n"
                "  --preset NAME       one of:\n");
    for (size_t i = 0; i < sizeof g_presets / sizeof g_presets[0]; i++) {
        const struct preset *p = &g_presets[i];
        fprintf(fp,
                "                        %-15s %s (dim %u, %u layers, %u/%u heads, ffn %u, "
                "vocab %u%s)\n",
                p->name, p->note, p->n_embd, p->n_layer, p->n_head, p->n_head_kv, p->n_ff,
                p->n_vocab, p->n_expert ? ", MoE" : "");
    }
    fprintf(fp, "  --type T            tensor type of the matrices: f32 f16 bf16 q8_0 q4_0 q4_1 "
                "q5_0\n"
                "                      q5_1 q2_k q3_k q4_k q5_k q6_k iq4_nl iq4_xs, or the mixes\n"
                "                      q4_k_m q5_k_m (llama.cpp's recipe: attn_v and ffn_down of\n"
                "                      the first/last eighth and every third layer in q6_k)\n"
                "                      (default q4_0)\n"
                "  -o, --output PATH   output file\n"
                "  --seed S            random seed (default 1)\n"
                "  --vocab-from F      copy the tokenizer of another GGUF with the same vocabulary "
                "size\n"
                "  -h, --help          this text\n");
}

enum { OPT_PRESET = 3000, OPT_TYPE, OPT_SEED, OPT_VOCAB };

int cmd_synth(int argc, char **argv) {
    const char *preset = NULL, *type = "q4_0", *out = NULL, *vocab = NULL;
    long seed = 1;
    static const struct option opts[] = {{"preset", required_argument, 0, OPT_PRESET},
                                         {"type", required_argument, 0, OPT_TYPE},
                                         {"output", required_argument, 0, 'o'},
                                         {"seed", required_argument, 0, OPT_SEED},
                                         {"vocab-from", required_argument, 0, OPT_VOCAB},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (ch) {
        case OPT_PRESET:
            preset = optarg;
            break;
        case OPT_TYPE:
            type = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case OPT_SEED:
            if (!cli_parse_int("--seed", optarg, 0, 0x7fffffffL, &seed))
                return 2;
            break;
        case OPT_VOCAB:
            vocab = optarg;
            break;
        case 'h':
            help(stdout);
            return 0;
        default:
            help(stderr);
            return 2;
        }
    }
    if (!preset || !out) {
        cli_error("synth: --preset and -o are required");
        help(stderr);
        return 2;
    }
    const struct preset *p = NULL;
    for (size_t i = 0; i < sizeof g_presets / sizeof g_presets[0]; i++)
        if (!strcasecmp(g_presets[i].name, preset))
            p = &g_presets[i];
    if (!p) {
        cli_error("synth: unknown preset '%s' (see --help)", preset);
        return 2;
    }
    /* K_M mixes: the base K type, attn_v / ffn_down of some layers one step up */
    uint32_t more = 0, ftype = 0;
    if (!strcasecmp(type, "q4_k_m")) {
        type = "q4_k";
        more = ICA_Q6_K;
        ftype = 15; /* LLAMA_FTYPE_MOSTLY_Q4_K_M */
    } else if (!strcasecmp(type, "q5_k_m")) {
        type = "q5_k";
        more = ICA_Q6_K;
        ftype = 17; /* LLAMA_FTYPE_MOSTLY_Q5_K_M */
    }
    int t = ica_dtype_from_name(type);
    static const int allowed[] = {ICA_F32,  ICA_F16,  ICA_BF16, ICA_Q8_0,   ICA_Q4_0,
                                  ICA_Q4_1, ICA_Q5_0, ICA_Q5_1, ICA_Q2_K,   ICA_Q3_K,
                                  ICA_Q4_K, ICA_Q5_K, ICA_Q6_K, ICA_IQ4_NL, ICA_IQ4_XS};
    bool ok = false;
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        ok |= t == allowed[i];
    if (!ok) {
        cli_error("synth: unknown or unsupported tensor type '%s'", type);
        return 2;
    }
    struct model_synth_config c;
    memset(&c, 0, sizeof c);
    c.arch = p->arch;
    c.name = p->name;
    c.n_vocab = p->n_vocab;
    c.n_embd = p->n_embd;
    c.n_layer = p->n_layer;
    c.n_head = p->n_head;
    c.n_head_kv = p->n_head_kv;
    c.n_ff = p->n_ff;
    c.n_ctx = p->n_ctx;
    c.n_expert = p->n_expert;
    c.n_expert_used = p->n_used;
    c.rope_base = p->rope_base;
    c.tied_output = p->tied;
    c.wtype = (uint32_t)t;
    c.more_type = more;
    c.file_type = ftype;
    c.seed = (uint64_t)seed;
    c.vocab_from = vocab;
    /* llama.cpp keeps the output matrix of quantized models in Q6_K (or Q8_0
     * where the row length does not fit 256-element blocks); mirror that. */
    if (t != ICA_F32 && t != ICA_F16 && t != ICA_BF16)
        c.out_type = p->n_embd % 256 == 0 ? ICA_Q6_K : ICA_Q8_0;
    if ((t == ICA_Q2_K || t == ICA_Q3_K || t == ICA_Q4_K || t == ICA_Q5_K || t == ICA_Q6_K ||
         t == ICA_IQ4_XS) &&
        (p->n_embd % 256 || p->n_ff % 256)) {
        cli_error("synth: %s needs dimensions that are multiples of 256 (preset %s has %u/%u)",
                  type, p->name, p->n_embd, p->n_ff);
        return 2;
    }
    struct ica_error err = {0};
    fprintf(stderr, "icalign: writing %s (%s, %s) ...\n", out, p->name,
            ica_dtype_info((uint32_t)t)->name);
    if (model_synth_write(out, &c, &err) != ICA_OK) {
        cli_error("%s", err.msg);
        return 1;
    }
    fprintf(stderr, "icalign: wrote %s\n", out);
    return 0;
}
