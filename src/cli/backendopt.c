/* Options naming a model: a local GGUF file or a remote server. */
#include "cli.h"

#include "icalign/backend_local.h"
#include "icalign/remote.h"

#include <stdio.h>
#include <string.h>

void cli_backend_opts_init(struct cli_backend_opts *o) {
    memset(o, 0, sizeof *o);
    cli_model_opts_init(&o->local);
    o->concurrency = 4;
    o->timeout_s = 600;
}

const char *cli_backend_opts_help(void) {
    return "  -m, --model PATH       local GGUF model (embedded engine)\n"
           "  -c, --ctx N            context size (local; default: training context, <= 8192)\n"
           "      --kv-type T        KV cache type f32|f16 (local)\n"
           "      --batch N          prompt tokens per forward pass (local)\n"
           "  -t, --threads N        threads (local)\n"
           "      --base-url URL     OpenAI-compatible server (repeatable); -m/--model NAME then\n"
           "                         names the server's model\n"
           "      --api-key-file F   API key file (else $ICALIGN_API_KEY or $OPENAI_API_KEY)\n"
           "      --concurrency N    parallel requests to the server (4)\n"
           "      --timeout S        per-request timeout in seconds (600)\n"
           "      --chat-template T  chat template name or file for chat requests\n"
           "      --parallel N       sequences generated at once (local: one batch; default 8)\n"
           "      --kv-mem SIZE      KV cache budget, e.g. 4G (local; default: --parallel full\n"
           "                         contexts, at most a quarter of the memory)\n"
           "      --prefix-cache DIR keep shared prompt prefixes on disk and reuse them across\n"
           "                         runs (local)\n";
}

int cli_backend_opts_parse(struct cli_backend_opts *o, int ch, const char *arg) {
    int r = cli_model_opts_parse(&o->local, ch, arg);
    if (r)
        return r;
    long v;
    double d;
    switch (ch) {
    case CLI_OPT_BASE_URL:
        if (o->n_base_urls == 16) {
            cli_error("at most 16 --base-url");
            return -1;
        }
        o->base_urls[o->n_base_urls++] = arg;
        return 1;
    case CLI_OPT_REMOTE_MODEL:
        o->remote_model = arg;
        return 1;
    case CLI_OPT_API_KEY_FILE:
        o->api_key_file = arg;
        return 1;
    case CLI_OPT_CONCURRENCY:
        if (!cli_parse_int("--concurrency", arg, 1, 1024, &v))
            return -1;
        o->concurrency = (int)v;
        return 1;
    case CLI_OPT_TIMEOUT:
        if (!cli_parse_float("--timeout", arg, 0.1, 86400, &d))
            return -1;
        o->timeout_s = d;
        return 1;
    case CLI_OPT_CHAT_TEMPLATE:
        o->chat_template = arg;
        return 1;
    case CLI_OPT_PARALLEL:
        if (!cli_parse_int("--parallel", arg, 1, 1024, &v))
            return -1;
        o->parallel = (int)v;
        return 1;
    case CLI_OPT_KV_MEM:
        return cli_parse_size("--kv-mem", arg, &o->kv_mem) ? 1 : -1;
    case CLI_OPT_PREFIX_CACHE:
        o->prefix_cache = arg;
        return 1;
    default:
        return 0;
    }
}

int cli_backend_open(struct cli_backend_opts *o, const char *cmd, struct backend **out) {
    struct ica_error err = {0};
    *out = NULL;
    if (o->n_base_urls) {
        /* With --base-url, -m/--model names the server's model (OpenAI style). */
        struct remote_options ro;
        remote_options_init(&ro);
        ro.base_urls = o->base_urls;
        ro.n_base_urls = (size_t)o->n_base_urls;
        ro.model = o->remote_model ? o->remote_model : o->local.path;
        ro.api_key_file = o->api_key_file;
        ro.concurrency = o->concurrency;
        ro.timeout_s = o->timeout_s;
        if (o->parallel > 0)
            ro.concurrency = o->parallel;
        if (!ro.model) {
            cli_error("%s: --base-url needs the server's model name: -m NAME", cmd);
            return 2;
        }
        if (remote_backend_new(&ro, out, &err) != ICA_OK) {
            cli_error("%s: %s", cmd, err.msg);
            return 1;
        }
        return 0;
    }
    if (!o->local.path) {
        cli_error("%s: name a model: -m MODEL.gguf, or --base-url URL -m NAME", cmd);
        return 2;
    }
    struct local_options lo = local_default_options();
    lo.model_path = o->local.path;
    lo.n_ctx = o->local.n_ctx;
    lo.n_batch = o->local.n_batch;
    lo.kv_type = o->local.kv_type;
    lo.n_threads = o->local.n_threads;
    lo.chat_template = o->chat_template;
    lo.n_parallel = o->parallel > 0 ? (uint32_t)o->parallel : 0;
    lo.kv_mem = (size_t)o->kv_mem;
    lo.prefix_cache_dir = o->prefix_cache;
    if (local_backend_new(&lo, out, &err) != ICA_OK) {
        cli_error("%s", err.msg);
        return 1;
    }
    return 0;
}
