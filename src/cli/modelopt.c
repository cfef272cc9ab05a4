/* Options shared by the commands that run a local model. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cli_model_opts_init(struct cli_model_opts *o) {
    memset(o, 0, sizeof *o);
    o->kv_type = ICA_F16;
    o->n_batch = 512;
}

const char *cli_model_opts_help(void) {
    return "  -m, --model PATH       GGUF model file\n"
           "  -c, --ctx N            context size in tokens (default: the model's training\n"
           "                         context, capped at 4096)\n"
           "      --kv-type T        KV cache type: f16 or f32 (default f16; f32 = the\n"
           "                         llama.cpp reference runs of ../shared/fixtures)\n"
           "      --batch N          tokens per forward pass when reading a prompt (512)\n"
           "  -t, --threads N        threads (default: all cores)\n";
}

int cli_model_opts_parse(struct cli_model_opts *o, int ch, const char *arg) {
    long v;
    switch (ch) {
    case 'm':
        o->path = arg;
        return 1;
    case 'c':
        if (!cli_parse_int("--ctx", arg, 1, 1 << 24, &v))
            return -1;
        o->n_ctx = (uint32_t)v;
        return 1;
    case CLI_OPT_KV_TYPE:
        if (!strcmp(arg, "f32") || !strcmp(arg, "F32"))
            o->kv_type = ICA_F32;
        else if (!strcmp(arg, "f16") || !strcmp(arg, "F16"))
            o->kv_type = ICA_F16;
        else {
            cli_error("--kv-type expects f32 or f16, got '%s'", arg);
            return -1;
        }
        return 1;
    case CLI_OPT_BATCH:
        if (!cli_parse_int("--batch", arg, 1, 1 << 20, &v))
            return -1;
        o->n_batch = (uint32_t)v;
        return 1;
    case 't':
        if (!cli_parse_int("--threads", arg, 1, 1024, &v))
            return -1;
        o->n_threads = (int)v;
        return 1;
    default:
        return 0;
    }
}

int cli_model_open(struct cli_model_opts *o, const char *cmd) {
    struct ica_error err = {0};
    if (!o->path) {
        cli_error("%s: -m MODEL.gguf is required", cmd);
        return 2;
    }
    if (model_load(o->path, &o->model, &err) != ICA_OK) {
        cli_error("%s", err.msg);
        return 1;
    }
    if (tok_vocab_from_gguf(model_gguf(o->model), &o->vocab, &err) != ICA_OK) {
        /* A model without a usable tokenizer can still run on ids. */
        fprintf(stderr, "icalign: warning: no tokenizer: %s\n", err.msg);
        o->vocab = NULL;
    }
    return 0;
}

int cli_model_new_ctx(struct cli_model_opts *o, const char *cmd, uint32_t min_ctx) {
    struct ica_error err = {0};
    const struct model_hparams *hp = model_get_hparams(o->model);
    struct model_ctx_params cp = model_ctx_default_params();
    cp.n_ctx = o->n_ctx ? o->n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    if (cp.n_ctx < min_ctx) {
        if (o->n_ctx) {
            cli_error("%s: %u tokens do not fit the context size %u (-c)", cmd, min_ctx, cp.n_ctx);
            return 1;
        }
        cp.n_ctx = min_ctx;
    }
    cp.n_batch = o->n_batch;
    cp.kv_type = o->kv_type;
    cp.n_threads = o->n_threads;
    if (model_ctx_new(o->model, &cp, &o->ctx, &err) != ICA_OK) {
        cli_error("%s", err.msg);
        return 1;
    }
    return 0;
}

void cli_model_close(struct cli_model_opts *o) {
    model_ctx_free(o->ctx);
    tok_vocab_free(o->vocab);
    model_free(o->model);
    o->ctx = NULL;
    o->vocab = NULL;
    o->model = NULL;
}

int32_t *cli_prompt_ids(struct cli_model_opts *o, const char *text, const char *ids, bool no_bos,
                        bool special, size_t *n) {
    if (ids)
        return cli_parse_ids(ids, n);
    if (!o->vocab) {
        cli_error("this model has no usable tokenizer: give the prompt as --ids");
        return NULL;
    }
    struct ica_error err = {0};
    int32_t *out = NULL;
    if (tok_tokenize(o->vocab, text, strlen(text), !no_bos, special, &out, n, &err) != ICA_OK) {
        cli_error("tokenize: %s", err.msg);
        return NULL;
    }
    if (*n == 0) {
        free(out);
        cli_error("the prompt is empty after tokenization");
        return NULL;
    }
    return out;
}
