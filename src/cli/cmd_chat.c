/* icalign chat: interactive multi-turn chat with a base model through a URIAL prompt. */
#include "cli.h"

#include "icalign/align.h"

#include <getopt.h>
#include <json-c/json.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef ICALIGN_HAVE_LIBEDIT
#include <editline/readline.h>
#endif

static void help(FILE *fp) {
    fprintf(fp,
            "usage: icalign chat (-m MODEL.gguf | --base-url URL -m NAME) [--demos SPEC]\n"
            "                    [--preset P] [options]\n\n"
            "Chats with a base model: the conversation is rendered after the demonstrations as\n"
            "'# Query:'/'# Answer:' blocks, exactly as URIAL does, and the answer streams as it\n"
            "is generated. Ctrl-C cancels the current answer. When stdin is not a terminal each\n"
            "line is one message (scriptable).\n\n"
            "commands: /reset (forget the conversation), /demos (the demonstration set),\n"
            "          /params (decoding), /save FILE (conversation as JSON), /quit\n\n"
            "  --demos SPEC           demonstration set (default: default)\n"
            "  --preset P             urial (default), urial-moe, gpt4-base\n"
            "  --max-tokens N         new tokens per answer (default: the preset's)\n"
            "  --temp T, --top-p P, --repeat-penalty R, --seed S\n"
            "                         override the preset\n"
            "  --show-prompt          print each rendered prompt to stderr (debugging)\n"
            "%s"
            "  -h, --help             this text\n",
            cli_backend_opts_help());
}

static volatile sig_atomic_t g_cancel;

static void on_sigint(int sig) {
    (void)sig;
    g_cancel = 1;
}

static bool on_stream(void *ud, size_t i, const char *text, size_t len) {
    (void)ud;
    (void)i;
    if (g_cancel)
        return false;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

struct chat {
    char **msgs; /* user, assistant, user, ... (owned) */
    size_t n, cap;
};

static void chat_reset(struct chat *c) {
    for (size_t i = 0; i < c->n; i++)
        free(c->msgs[i]);
    c->n = 0;
}

static bool chat_push(struct chat *c, const char *s, size_t len) {
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 16;
        char **t = realloc(c->msgs, nc * sizeof *t);
        if (!t)
            return false;
        c->msgs = t;
        c->cap = nc;
    }
    char *d = malloc(len + 1);
    if (!d)
        return false;
    memcpy(d, s, len);
    d[len] = '\0';
    c->msgs[c->n++] = d;
    return true;
}

static int save_chat(const struct chat *c, const char *spec, const char *path) {
    json_object *root = json_object_new_object(), *arr = json_object_new_array();
    json_object_object_add(root, "demos", json_object_new_string(spec));
    for (size_t i = 0; i < c->n; i++) {
        json_object *m = json_object_new_object();
        char *s = cli_utf8_sanitize(c->msgs[i], strlen(c->msgs[i]));
        json_object_object_add(m, "role", json_object_new_string(i % 2 ? "assistant" : "user"));
        json_object_object_add(m, "content", json_object_new_string(s ? s : ""));
        free(s);
        json_object_array_add(arr, m);
    }
    json_object_object_add(root, "messages", arr);
    int rc = json_object_to_file_ext(path, root,
                                     JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
    json_object_put(root);
    return rc;
}

/* Next input line without its newline (malloc'd), or NULL at end of input. */
static char *read_line(bool tty, const char *prompt) {
#ifdef ICALIGN_HAVE_LIBEDIT
    if (tty) {
        char *l = readline(prompt);
        if (l && *l)
            add_history(l);
        return l;
    }
#else
    if (tty) {
        fputs(prompt, stdout);
        fflush(stdout);
    }
#endif
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
        free(line);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    return line;
}

enum { OPT_DEMOS = 4000, OPT_PRESET, OPT_MAXTOK, OPT_TEMP, OPT_TOPP, OPT_REP, OPT_SEED, OPT_SHOW };

int cmd_chat(int argc, char **argv) {
    setlocale(LC_ALL, "");
    struct cli_backend_opts bo;
    cli_backend_opts_init(&bo);
    const char *spec = "default", *preset_name = "urial";
    bool show_prompt = false, s_temp = false, s_topp = false, s_rep = false, s_max = false,
         s_seed = false;
    double temp = 0, topp = 1, rep = 1;
    long maxtok = 0, seed = 0;
    static const struct option opts[] = {CLI_MODEL_LONGOPTS,
                                         CLI_BACKEND_LONGOPTS,
                                         {"demos", required_argument, 0, OPT_DEMOS},
                                         {"preset", required_argument, 0, OPT_PRESET},
                                         {"max-tokens", required_argument, 0, OPT_MAXTOK},
                                         {"temp", required_argument, 0, OPT_TEMP},
                                         {"top-p", required_argument, 0, OPT_TOPP},
                                         {"repeat-penalty", required_argument, 0, OPT_REP},
                                         {"seed", required_argument, 0, OPT_SEED},
                                         {"show-prompt", no_argument, 0, OPT_SHOW},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, CLI_MODEL_SHORTOPTS "h", opts, NULL)) != -1) {
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
        case OPT_MAXTOK:
            ok = s_max = cli_parse_int("--max-tokens", optarg, 1, 1 << 24, &maxtok);
            break;
        case OPT_TEMP:
            ok = s_temp = cli_parse_float("--temp", optarg, 0, 100, &temp);
            break;
        case OPT_TOPP:
            ok = s_topp = cli_parse_float("--top-p", optarg, 0, 1, &topp);
            break;
        case OPT_REP:
            ok = s_rep = cli_parse_float("--repeat-penalty", optarg, 1e-3, 100, &rep);
            break;
        case OPT_SEED:
            ok = s_seed = cli_parse_int("--seed", optarg, 0, INT32_MAX, &seed);
            break;
        case OPT_SHOW:
            show_prompt = true;
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
        cli_error("chat: unexpected argument '%s'", argv[optind]);
        return 2;
    }
    struct ica_error err = {0};
    struct align_preset pr;
    if (align_preset_get(preset_name, &pr, &err) != ICA_OK) {
        cli_error("chat: %s", err.msg);
        return 2;
    }
    struct backend_sampling smp = backend_default_sampling();
    smp.temperature = s_temp ? (float)temp : pr.temperature;
    smp.top_p = s_topp ? (float)topp : pr.top_p;
    smp.top_k = pr.top_k;
    smp.min_p = pr.min_p;
    smp.repetition_penalty = s_rep ? (float)rep : pr.repetition_penalty;
    smp.frequency_penalty = pr.frequency_penalty;
    smp.presence_penalty = pr.presence_penalty;
    smp.seed = s_seed ? seed : -1;
    const uint32_t max_tokens = s_max ? (uint32_t)maxtok : (uint32_t)pr.max_new_tokens;

    struct align_set *set = NULL;
    if (align_spec_load(spec, &set, &err) != ICA_OK) {
        cli_error("chat: %s", err.msg);
        return 1;
    }
    struct backend *be = NULL;
    int ret = cli_backend_open(&bo, "chat", &be);
    if (ret) {
        align_set_free(set);
        return ret;
    }
    const bool tty = isatty(STDIN_FILENO);
    if (tty)
        fprintf(stderr,
                "icalign chat — %s, demos %s (%zu), preset %s. /reset /demos /params "
                "/save FILE /quit; Ctrl-C cancels an answer.\n",
                backend_describe(be), spec, align_set_count(set), pr.name);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    struct chat c = {0};
    const uint32_t n_ctx = backend_context_size(be);
    size_t n_prompt = 0;
    char *line;
    ret = 0;
    while ((line = read_line(tty, "> ")) != NULL) {
        if (!*line) {
            free(line);
            continue;
        }
        if (line[0] == '/') {
            const char *arg = strchr(line, ' ');
            while (arg && *arg == ' ')
                arg++;
            size_t cl = strcspn(line, " ");
            if ((cl == 5 && !strncmp(line, "/quit", 5)) ||
                (cl == 5 && !strncmp(line, "/exit", 5))) {
                free(line);
                break;
            } else if (cl == 6 && !strncmp(line, "/reset", 6)) {
                chat_reset(&c);
                fprintf(stderr, "(conversation cleared)\n");
            } else if (cl == 6 && !strncmp(line, "/demos", 6)) {
                char *prefix = NULL;
                size_t plen = 0;
                if (align_render_prefix(set, &prefix, &plen, NULL) == ICA_OK) {
                    int64_t nt = backend_count_tokens(be, prefix);
                    printf("demos: %s — %zu demonstrations, prefix %zu bytes", spec,
                           align_set_count(set), plen);
                    if (nt >= 0)
                        printf(", %lld tokens", (long long)nt);
                    printf("\n");
                    for (size_t i = 0; i < align_set_count(set); i++) {
                        const struct align_demo *d = align_set_demo(set, i);
                        printf("  %zu. %.70s%s\n", i + 1, d->query,
                               strlen(d->query) > 70 ? "..." : "");
                    }
                }
                free(prefix);
            } else if (cl == 7 && !strncmp(line, "/params", 7)) {
                printf("preset %s: temperature %g, top_p %g, top_k %d, min_p %g, "
                       "repetition_penalty %g, frequency_penalty %g, presence_penalty %g, "
                       "max_tokens %u, context %u, stop:",
                       pr.name, smp.temperature, smp.top_p, smp.top_k, smp.min_p,
                       smp.repetition_penalty, smp.frequency_penalty, smp.presence_penalty,
                       max_tokens, n_ctx);
                for (size_t k = 0; k < pr.n_stop; k++)
                    printf(" \"%s\"", pr.stop[k]);
                printf("\n");
            } else if (cl == 5 && !strncmp(line, "/save", 5)) {
                if (!arg || !*arg)
                    cli_error("chat: /save FILE");
                else if (save_chat(&c, spec, arg) != 0)
                    cli_error("chat: cannot write %s", arg);
                else
                    fprintf(stderr, "(saved %zu messages to %s)\n", c.n, arg);
            } else {
                cli_error("chat: unknown command '%.*s' (/reset /demos /params /save FILE "
                          "/quit)",
                          (int)cl, line);
            }
            fflush(stdout);
            free(line);
            continue;
        }
        if (!chat_push(&c, line, strlen(line))) {
            free(line);
            ret = 1;
            break;
        }
        free(line);
        char *prompt = NULL;
        size_t plen = 0;
        if (align_render(set, (const char *const *)c.msgs, c.n, &prompt, &plen, &err) != ICA_OK) {
            cli_error("chat: %s", err.msg);
            free(c.msgs[--c.n]);
            continue;
        }
        n_prompt++;
        if (show_prompt) {
            fprintf(stderr, "=== prompt %zu (%zu bytes) ===\n", n_prompt, plen);
            fwrite(prompt, 1, plen, stderr);
            fprintf(stderr, "\n=== end ===\n");
            fflush(stderr);
        }
        struct backend_request q;
        memset(&q, 0, sizeof q);
        q.prompt = prompt;
        q.sampling = smp;
        q.max_tokens = max_tokens;
        q.stop = pr.stop;
        q.n_stop = pr.n_stop;
        int64_t np = n_ctx ? backend_count_tokens(be, prompt) : -1;
        if (np >= 0 && (uint64_t)np + q.max_tokens > n_ctx) {
            if ((uint64_t)np >= n_ctx) {
                cli_error("chat: the conversation (%lld tokens) fills the context of %u tokens; "
                          "/reset to start over",
                          (long long)np, n_ctx);
                free(prompt);
                free(c.msgs[--c.n]);
                continue;
            }
            q.max_tokens = (uint32_t)(n_ctx - (uint64_t)np);
            fprintf(stderr,
                    "icalign: chat: warning: prompt of %lld tokens leaves %u new tokens in the "
                    "context of %u\n",
                    (long long)np, q.max_tokens, n_ctx);
        }
        g_cancel = 0;
        sigaction(SIGINT, &sa, &old);
        struct backend_result res;
        memset(&res, 0, sizeof res);
        int rc = backend_complete1(be, &q, on_stream, NULL, &res, &err);
        sigaction(SIGINT, &old, NULL);
        free(prompt);
        printf("\n");
        fflush(stdout);
        if (rc != ICA_OK) {
            cli_error("chat: %s", err.msg);
            free(c.msgs[--c.n]);
            backend_result_free(&res);
            continue;
        }
        if (g_cancel || res.finish == BACKEND_FINISH_CANCELLED) {
            fprintf(stderr, "(cancelled; the question is dropped from the conversation)\n");
            free(c.msgs[--c.n]);
            backend_result_free(&res);
            continue;
        }
        char *clean = NULL;
        size_t clen = 0;
        if (align_postprocess(res.text ? res.text : "", res.text_len, &clean, &clen, &err) !=
                ICA_OK ||
            !chat_push(&c, clean, clen)) {
            cli_error("chat: out of memory");
            free(clean);
            backend_result_free(&res);
            ret = 1;
            break;
        }
        free(clean);
        backend_result_free(&res);
    }
    chat_reset(&c);
    free(c.msgs);
    backend_free(be);
    align_set_free(set);
    return ret;
}
