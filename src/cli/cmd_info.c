/* icalign info: what a GGUF model is. */
#include "cli.h"

#include "icalign/model.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

static void help(FILE *fp) {
    fprintf(fp, "usage: icalign info -m MODEL.gguf [--tensors]\n\n"
                "Shows the architecture, dimensions, tensor types, vocabulary, context and\n"
                "file size of a GGUF model, and the resident memory after loading it\n"
                "(weights stay memory-mapped).\n\n"
                "  -m, --model PATH   GGUF file\n"
                "      --tensors      list every tensor with its type and shape\n"
                "  -h, --help         this text\n");
}

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    int tensors = 0;
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"tensors", no_argument, 0, 'T'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "m:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'm':
            path = optarg;
            break;
        case 'T':
            tensors = 1;
            break;
        case 'h':
            help(stdout);
            return 0;
        default:
            help(stderr);
            return 2;
        }
    }
    if (!path) {
        cli_error("info: -m MODEL.gguf is required");
        help(stderr);
        return 2;
    }
    struct ica_error err = {0};
    struct model *m;
    if (model_load(path, &m, &err) != ICA_OK) {
        cli_error("%s", err.msg);
        return 1;
    }
    const struct model_hparams *hp = model_get_hparams(m);
    const struct gguf_file *g = model_gguf(m);
    printf("file:          %s (%.2f MiB, GGUF v%u, %lld tensors, %lld metadata keys)\n", path,
           (double)gguf_file_size(g) / 1048576.0, gguf_version(g), (long long)gguf_n_tensors(g),
           (long long)gguf_n_kv(g));
    if (hp->name[0])
        printf("name:          %s\n", hp->name);
    printf("architecture:  %s%s\n", hp->arch, hp->n_expert ? " (mixture of experts)" : "");
    printf("dimensions:    n_embd %u, layers %u, heads %u (kv %u), head size %u, ffn %u\n",
           hp->n_embd, hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_ff);
    if (hp->n_expert)
        printf("experts:       %u, %u used per token\n", hp->n_expert, hp->n_expert_used);
    printf("rope:          %s, base %g, %u dims%s%s\n", hp->rope_neox ? "neox" : "normal",
           (double)hp->rope_freq_base, hp->n_rot, hp->has_rope_freqs ? ", rope_freqs" : "",
           hp->rope_freq_scale != 1.0f ? ", linear scaling" : "");
    printf("norm eps:      %g\n", (double)hp->rms_eps);
    printf("context:       %u (training)\n", hp->n_ctx_train);
    printf("vocabulary:    %u%s\n", hp->n_vocab,
           hp->tied_output ? " (output tied to embeddings)" : "");
    struct gguf_str tm;
    if (gguf_get_str(g, "tokenizer.ggml.model", &tm) == ICA_OK)
        printf("tokenizer:     %.*s\n", (int)(tm.len > 64 ? 64 : tm.len), tm.ptr);
    /* Tensor type histogram. */
    long counts[ICA_DTYPE_COUNT] = {0};
    double bytes[ICA_DTYPE_COUNT] = {0};
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const struct gguf_tensor *t = gguf_tensor(g, i);
        if (t->type < ICA_DTYPE_COUNT) {
            counts[t->type]++;
            bytes[t->type] += (double)t->nbytes;
        }
    }
    printf("tensor types: ");
    for (int t = 0; t < ICA_DTYPE_COUNT; t++)
        if (counts[t])
            printf(" %s x%ld (%.2f MiB)", ica_dtype_info((uint32_t)t)->name, counts[t],
                   bytes[t] / 1048576.0);
    printf("\n");
    if (tensors) {
        for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
            const struct gguf_tensor *t = gguf_tensor(g, i);
            printf("  %-32s %-6s [", t->name, ica_dtype_info(t->type)->name);
            for (uint32_t d = 0; d < t->n_dims; d++)
                printf("%s%lld", d ? ", " : "", (long long)t->ne[d]);
            printf("]\n");
        }
    }
    const size_t rp = model_repacked_bytes(m);
    if (rp)
        printf("repacked:      %.2f MiB of matrices copied into this CPU's tile layout at load\n",
               rp / 1048576.0);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        printf("max RSS:       %.1f MiB after load (weights are memory-mapped%s)\n",
               (double)ru.ru_maxrss / 1024.0, rp ? "; repacked ones read once" : ", not read");
    model_free(m);
    return 0;
}
