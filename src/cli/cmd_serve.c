/* icalign serve: an OpenAI-compatible server that answers chat requests with a base model
 * through URIAL in-context alignment (docs/SERVE.md). */
#include "cli.h"

#include "icalign/align.h"
#include "icalign/remote.h"
#include "icalign/serve.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *fp) {
    fprintf(fp,
            "usage: icalign serve (-m MODEL.gguf | --base-url URL -m NAME) [--demos SPEC]\n"
            "                     [--preset P] [--host 127.0.0.1] [--port 8080]\n"
            "                     [--api-key-file F] [--parallel N] [--queue N] [options]\n\n"
            "Serves a base model as a chat model over the OpenAI API: each chat request is\n"
            "rendered as a URIAL prompt after the demonstrations and its answer is\n"
            "post-processed as in the paper. Endpoints: POST /v1/chat/completions,\n"
            "POST /v1/completions (raw prompt), GET /v1/models, GET /health.\n"
            "SIGINT/SIGTERM stop it gracefully.\n\n"
            "  --demos SPEC            demonstration set (default: default; see docs/ALIGN.md)\n"
            "  --preset P              decoding defaults: urial (default), urial-moe, gpt4-base\n"
            "  --system-mode M         a request's system message: extend (default: appended to\n"
            "                          the rules header), replace (replaces it), ignore\n"
            "  --host ADDR             bind address (default 127.0.0.1)\n"
            "  --port N                port (default 8080; 0 = any free port)\n"
            "  --port-file F           write the bound port to F once listening\n"
            "  --api-key-file F        require 'Authorization: Bearer KEY' (first line of F)\n"
            "  --upstream-key-file F   API key for --base-url servers (else $ICALIGN_API_KEY,\n"
            "                          $OPENAI_API_KEY)\n"
            "  --parallel N            requests generated at once (default 1; local: sequences\n"
            "                          in one batch, remote: concurrent requests)\n"
            "  --queue N               requests waiting at most (default 16); 429 beyond\n"
            "  --kv-mem SIZE           KV cache budget of the local batch and its shared\n"
            "                          prefixes (default: --parallel full contexts)\n"
            "  --max-body SIZE         request body limit (default 1M); 413 beyond\n"
            "  --idle-timeout S        idle / slow client limit in seconds (default 30)\n"
            "  --max-connections N     open connections at most (default 256)\n"
            "  --served-model-name N   model id in responses (default: the file name or NAME)\n"
            "  --grace S               shutdown: seconds running requests may finish (10)\n"
            "  --log-content           log rendered prompts and answers (default: no content)\n"
            "  -q, --quiet             no access log\n"
            "%s"
            "  -h, --help              this text\n",
            cli_backend_opts_help());
}

enum {
    OPT_DEMOS = 4100,
    OPT_PRESET,
    OPT_SYSMODE,
    OPT_HOST,
    OPT_PORT,
    OPT_PORT_FILE,
    OPT_UPKEY,
    OPT_QUEUE,
    OPT_MAXBODY,
    OPT_IDLE,
    OPT_MAXCONN,
    OPT_NAME,
    OPT_GRACE,
    OPT_LOGCONTENT
};

/* "512", "64K", "1M", "8G" -> bytes. */

/* First line of path without its line end; malloc'd or NULL (error printed). */
static char *read_key(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        cli_error("serve: cannot read the API key file %s", path);
        return NULL;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    fclose(f);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
                     line[n - 1] == '\t'))
        line[--n] = '\0';
    if (n <= 0) {
        free(line);
        cli_error("serve: the API key file %s is empty", path);
        return NULL;
    }
    return line;
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int cmd_serve(int argc, char **argv) {
    struct cli_backend_opts bo;
    cli_backend_opts_init(&bo);
    struct serve_options so;
    serve_options_init(&so);
    const char *spec = "default", *preset_name = "urial", *key_file = NULL, *upkey = NULL,
               *port_file = NULL, *name = NULL;
    long v;
    double grace = 10;
    unsigned long long size;
    bool quiet = false;
    static const struct option opts[] = {CLI_MODEL_LONGOPTS,
                                         CLI_BACKEND_LONGOPTS,
                                         {"demos", required_argument, 0, OPT_DEMOS},
                                         {"preset", required_argument, 0, OPT_PRESET},
                                         {"system-mode", required_argument, 0, OPT_SYSMODE},
                                         {"host", required_argument, 0, OPT_HOST},
                                         {"port", required_argument, 0, OPT_PORT},
                                         {"port-file", required_argument, 0, OPT_PORT_FILE},
                                         {"upstream-key-file", required_argument, 0, OPT_UPKEY},
                                         {"queue", required_argument, 0, OPT_QUEUE},
                                         {"max-body", required_argument, 0, OPT_MAXBODY},
                                         {"idle-timeout", required_argument, 0, OPT_IDLE},
                                         {"max-connections", required_argument, 0, OPT_MAXCONN},
                                         {"served-model-name", required_argument, 0, OPT_NAME},
                                         {"grace", required_argument, 0, OPT_GRACE},
                                         {"log-content", no_argument, 0, OPT_LOGCONTENT},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, CLI_MODEL_SHORTOPTS "qh", opts, NULL)) != -1) {
        /* --api-key-file protects this server; the upstream key has its own option */
        if (ch == CLI_OPT_API_KEY_FILE) {
            key_file = optarg;
            continue;
        }
        int r = cli_backend_opts_parse(&bo, ch, optarg);
        if (r < 0)
            return 2;
        if (r > 0)
            continue;
        bool ok = true;
        switch (ch) {
        case OPT_DEMOS:
            spec = optarg;
            break;
        case OPT_PRESET:
            preset_name = optarg;
            break;
        case OPT_SYSMODE:
            if (!serve_system_mode_parse(optarg, &so.system)) {
                cli_error("--system-mode expects extend, replace or ignore, got '%s'", optarg);
                ok = false;
            }
            break;
        case OPT_HOST:
            so.host = optarg;
            break;
        case OPT_PORT:
            ok = cli_parse_int("--port", optarg, 0, 65535, &v);
            so.port = (uint16_t)v;
            break;
        case OPT_PORT_FILE:
            port_file = optarg;
            break;
        case OPT_UPKEY:
            upkey = optarg;
            break;
        case OPT_QUEUE:
            ok = cli_parse_int("--queue", optarg, 0, 1 << 20, &v);
            so.queue = (int)v;
            break;
        case OPT_MAXBODY:
            ok = cli_parse_size("--max-body", optarg, &size);
            so.max_body = (size_t)size;
            if (ok && size < 64) {
                cli_error("--max-body must be at least 64 bytes");
                ok = false;
            }
            break;
        case OPT_IDLE:
            ok = cli_parse_int("--idle-timeout", optarg, 1, 86400, &v);
            so.idle_timeout_s = (unsigned)v;
            break;
        case OPT_MAXCONN:
            ok = cli_parse_int("--max-connections", optarg, 1, 65536, &v);
            so.max_connections = (unsigned)v;
            break;
        case OPT_NAME:
            name = optarg;
            break;
        case OPT_GRACE:
            ok = cli_parse_float("--grace", optarg, 0, 86400, &grace);
            break;
        case OPT_LOGCONTENT:
            so.log_content = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'h':
            help(stdout);
            return 0;
        default:
            help(stderr);
            return 2;
        }
        if (!ok)
            return 2;
    }
    if (optind < argc) {
        cli_error("serve: unexpected argument '%s'", argv[optind]);
        return 2;
    }
    /* Block the stop signals before any thread starts (the model loader's included) so that
     * only sigwait sees them: a SIGTERM during loading stops the server once it is up. */
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGINT);
    sigaddset(&ss, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &ss, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct ica_error err = {0};
    if (align_preset_get(preset_name, &so.preset, &err) != ICA_OK) {
        cli_error("serve: %s", err.msg);
        return 2;
    }
    struct align_set *set = NULL;
    if (align_spec_load(spec, &set, &err) != ICA_OK) {
        cli_error("serve: %s", err.msg);
        return 1;
    }
    char *key = NULL;
    if (key_file && !(key = read_key(key_file))) {
        align_set_free(set);
        return 1;
    }
    if (bo.parallel > 0)
        so.parallel = bo.parallel;
    /* Backends: one local engine, or one remote backend per parallel slot (each worker owns
     * one; a remote backend streams so that a client leaving cancels its request). */
    size_t n_be = 1;
    struct backend **be = calloc((size_t)so.parallel, sizeof *be);
    int ret = be ? 0 : 1;
    if (ret == 0 && bo.n_base_urls) {
        struct remote_options ro;
        remote_options_init(&ro);
        ro.base_urls = bo.base_urls;
        ro.n_base_urls = (size_t)bo.n_base_urls;
        ro.model = bo.remote_model ? bo.remote_model : bo.local.path;
        ro.api_key_file = upkey;
        ro.concurrency = 1;
        ro.timeout_s = bo.timeout_s;
        ro.stream = true;
        if (!ro.model) {
            cli_error("serve: --base-url needs the server's model name: -m NAME");
            ret = 2;
        }
        n_be = (size_t)so.parallel;
        for (size_t i = 0; ret == 0 && i < n_be; i++)
            if (remote_backend_new(&ro, &be[i], &err) != ICA_OK) {
                cli_error("serve: %s", err.msg);
                ret = 1;
            }
        if (!name)
            name = ro.model;
    } else if (ret == 0) {
        /* the engine generates --parallel sequences in one batch */
        if (bo.parallel <= 0)
            bo.parallel = so.parallel;
        ret = cli_backend_open(&bo, "serve", &be[0]);
        if (!name && bo.local.path) {
            static char nm[256];
            snprintf(nm, sizeof nm, "%s", base_name(bo.local.path));
            size_t nl = strlen(nm);
            if (nl > 5 && !strcmp(nm + nl - 5, ".gguf"))
                nm[nl - 5] = '\0';
            name = nm;
        }
    }
    struct serve *srv = NULL;
    if (ret == 0) {
        so.backends = be;
        so.n_backends = n_be;
        so.set = set;
        so.api_key = key;
        so.model_name = name ? name : "icalign";
        so.log = quiet ? NULL : stderr;
        if (serve_start(&so, &srv, &err) != ICA_OK) {
            cli_error("%s", err.msg);
            ret = 1;
        } else {
            fprintf(stderr,
                    "icalign serve: listening on http://%s:%u — model %s (%s), demos %s (%zu), "
                    "preset %s, system messages %s, %zu worker%s, queue %d%s\n",
                    so.host, (unsigned)serve_port(srv), so.model_name, backend_describe(be[0]),
                    spec, align_set_count(set), so.preset.name,
                    so.system == SERVE_SYSTEM_EXTEND    ? "extend the rules"
                    : so.system == SERVE_SYSTEM_REPLACE ? "replace the rules"
                                                        : "ignored",
                    n_be < (size_t)so.parallel ? n_be : (size_t)so.parallel,
                    n_be > 1 && so.parallel > 1 ? "s" : "", so.queue,
                    key ? ", API key required" : "");
            if (port_file) {
                FILE *pf = fopen(port_file, "w");
                if (pf) {
                    fprintf(pf, "%u\n", (unsigned)serve_port(srv));
                    fclose(pf);
                } else {
                    cli_error("serve: cannot write %s", port_file);
                }
            }
            int sig = 0;
            sigwait(&ss, &sig);
            fprintf(stderr, "icalign serve: %s, stopping (grace %.0f s)\n",
                    sig == SIGINT ? "SIGINT" : "SIGTERM", grace);
            serve_stop(srv, grace);
            fprintf(stderr, "icalign serve: stopped\n");
        }
    }
    for (size_t i = 0; be && i < n_be; i++)
        backend_free(be[i]);
    free(be);
    if (key) {
        memset(key, 0, strlen(key));
        free(key);
    }
    align_set_free(set);
    return ret;
}
