/* icalign complete: one completion or chat request through any backend — a
 * remote OpenAI-compatible server (--base-url) or the embedded engine (-m). */
#include "cli.h"

#include "icalign/remote.h"

#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *fp) {
    fprintf(fp,
            "usage: icalign complete (-m MODEL.gguf | --base-url URL -m NAME)\n"
            "                        (-p TEXT | --chat-file MESSAGES.json) [options]\n\n"
            "Sends one request and prints the generated text. A prompt goes to\n"
            "/v1/completions (base models); --chat-file (a JSON array of\n"
            "{\"role\": \"system\"|\"user\"|\"assistant\", \"content\": ...}) to\n"
            "/v1/chat/completions, or through the chat template locally.\n\n"
            "%s"
            "      --remote-model NAME   the server's model id (instead of -m with --base-url)\n"
            "      --stream              stream the response (SSE) and print it as it comes\n"
            "      --retries N           retries on connection errors, 408, 429, 5xx (5)\n"
            "      --penalty-field F     how the server takes repetition_penalty: auto, vllm,\n"
            "                            llamacpp, both, none (auto: none for api.openai.com)\n"
            "  -p, --prompt TEXT         prompt text\n"
            "      --chat-file FILE      chat messages (JSON array)\n"
            "  -n, --n-predict N         new tokens at most (default 128)\n"
            "      --temp T              temperature; 0 = greedy (default 0)\n"
            "      --top-k K             (0 = off; sent to a server only when set)\n"
            "      --top-p P             (1 = off)\n"
            "      --min-p P             (0 = off; sent only when set)\n"
            "      --repeat-penalty R    Hugging Face repetition penalty (1 = off)\n"
            "      --frequency-penalty F\n"
            "      --presence-penalty P\n"
            "      --seed S              sampling seed (not sent when absent)\n"
            "      --stop STR            stop before STR (repeatable)\n"
            "      --top-logprobs N      show the first token's N best alternatives\n"
            "      --json                print the result as one JSON object\n"
            "  -h, --help                this text\n",
            cli_backend_opts_help());
}

enum {
    OPT_STREAM = 2100,
    OPT_RETRIES,
    OPT_PENALTY_FIELD,
    OPT_CHAT_FILE,
    OPT_TEMP,
    OPT_TOPK,
    OPT_TOPP,
    OPT_MINP,
    OPT_REP,
    OPT_FREQ,
    OPT_PRES,
    OPT_SEED,
    OPT_STOP,
    OPT_TOPLP,
    OPT_JSON,
};

static bool emit(void *ud, size_t i, const char *text, size_t len) {
    (void)ud;
    (void)i;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

/* Reads [{"role","content"}...]; fills msgs (malloc'd) pointing into *root. */
static int read_chat(const char *path, json_object **root, struct backend_message **msgs,
                     size_t *n) {
    *root = json_object_from_file(path);
    if (!*root || !json_object_is_type(*root, json_type_array)) {
        cli_error("complete: %s: not a JSON array of messages", path);
        return 1;
    }
    size_t k = json_object_array_length(*root);
    *msgs = calloc(k ? k : 1, sizeof **msgs);
    if (!*msgs) {
        cli_error("out of memory");
        return 1;
    }
    for (size_t i = 0; i < k; i++) {
        json_object *m = json_object_array_get_idx(*root, i), *r = NULL, *c = NULL;
        if (!json_object_object_get_ex(m, "role", &r) ||
            !json_object_object_get_ex(m, "content", &c) ||
            !json_object_is_type(c, json_type_string)) {
            cli_error("complete: %s: message %zu needs \"role\" and a string \"content\"", path,
                      i + 1);
            return 1;
        }
        const char *role = json_object_get_string(r);
        if (!strcmp(role, "system"))
            (*msgs)[i].role = BACKEND_SYSTEM;
        else if (!strcmp(role, "user"))
            (*msgs)[i].role = BACKEND_USER;
        else if (!strcmp(role, "assistant"))
            (*msgs)[i].role = BACKEND_ASSISTANT;
        else {
            cli_error("complete: %s: message %zu: unknown role '%s'", path, i + 1, role);
            return 1;
        }
        (*msgs)[i].content = json_object_get_string(c);
    }
    *n = k;
    return 0;
}

static const char *finish_str(enum backend_finish f) {
    return f == BACKEND_FINISH_LENGTH      ? "length"
           : f == BACKEND_FINISH_CANCELLED ? "cancelled"
                                           : "stop";
}

int cmd_complete(int argc, char **argv) {
    struct cli_backend_opts bo;
    cli_backend_opts_init(&bo);
    struct backend_request rq;
    memset(&rq, 0, sizeof rq);
    rq.sampling = backend_default_sampling();
    rq.max_tokens = 128;
    const char *chat_file = NULL;
    bool stream = false, as_json = false;
    long retries = 5;
    enum remote_penalty pen = REMOTE_PENALTY_AUTO;
    const char **stops = calloc((size_t)argc + 1, sizeof *stops);
    json_object *chat_root = NULL;
    struct backend_message *msgs = NULL;
    struct backend *b = NULL;
    static const struct option opts[] = {CLI_MODEL_LONGOPTS,
                                         CLI_BACKEND_LONGOPTS,
                                         {"stream", no_argument, 0, OPT_STREAM},
                                         {"retries", required_argument, 0, OPT_RETRIES},
                                         {"penalty-field", required_argument, 0, OPT_PENALTY_FIELD},
                                         {"prompt", required_argument, 0, 'p'},
                                         {"chat-file", required_argument, 0, OPT_CHAT_FILE},
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
                                         {"top-logprobs", required_argument, 0, OPT_TOPLP},
                                         {"json", no_argument, 0, OPT_JSON},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int ch, rc = 2;
    long lv;
    double dv;
    if (!stops) {
        cli_error("out of memory");
        return 1;
    }
    optind = 1;
    while ((ch = getopt_long(argc, argv, CLI_MODEL_SHORTOPTS "p:n:h", opts, NULL)) != -1) {
        int r = cli_backend_opts_parse(&bo, ch, optarg);
        if (r < 0)
            goto out;
        if (r > 0)
            continue;
        switch (ch) {
        case OPT_STREAM:
            stream = true;
            break;
        case OPT_RETRIES:
            if (!cli_parse_int("--retries", optarg, 0, 100, &retries))
                goto out;
            break;
        case OPT_PENALTY_FIELD:
            if (!strcmp(optarg, "auto"))
                pen = REMOTE_PENALTY_AUTO;
            else if (!strcmp(optarg, "vllm"))
                pen = REMOTE_PENALTY_VLLM;
            else if (!strcmp(optarg, "llamacpp"))
                pen = REMOTE_PENALTY_LLAMACPP;
            else if (!strcmp(optarg, "both"))
                pen = REMOTE_PENALTY_BOTH;
            else if (!strcmp(optarg, "none"))
                pen = REMOTE_PENALTY_NONE;
            else {
                cli_error("--penalty-field: auto, vllm, llamacpp, both or none");
                goto out;
            }
            break;
        case 'p':
            rq.prompt = optarg;
            break;
        case OPT_CHAT_FILE:
            chat_file = optarg;
            break;
        case 'n':
            if (!cli_parse_int("-n", optarg, 1, 1 << 24, &lv))
                goto out;
            rq.max_tokens = (uint32_t)lv;
            break;
        case OPT_TEMP:
            if (!cli_parse_float("--temp", optarg, 0, 100, &dv))
                goto out;
            rq.sampling.temperature = (float)dv;
            break;
        case OPT_TOPK:
            if (!cli_parse_int("--top-k", optarg, 0, 1 << 30, &lv))
                goto out;
            rq.sampling.top_k = (int32_t)lv;
            break;
        case OPT_TOPP:
            if (!cli_parse_float("--top-p", optarg, 0, 1, &dv))
                goto out;
            rq.sampling.top_p = (float)dv;
            break;
        case OPT_MINP:
            if (!cli_parse_float("--min-p", optarg, 0, 1, &dv))
                goto out;
            rq.sampling.min_p = (float)dv;
            break;
        case OPT_REP:
            if (!cli_parse_float("--repeat-penalty", optarg, 0.01, 100, &dv))
                goto out;
            rq.sampling.repetition_penalty = (float)dv;
            break;
        case OPT_FREQ:
            if (!cli_parse_float("--frequency-penalty", optarg, -2, 2, &dv))
                goto out;
            rq.sampling.frequency_penalty = (float)dv;
            break;
        case OPT_PRES:
            if (!cli_parse_float("--presence-penalty", optarg, -2, 2, &dv))
                goto out;
            rq.sampling.presence_penalty = (float)dv;
            break;
        case OPT_SEED:
            if (!cli_parse_int("--seed", optarg, 0, 0x7fffffffL, &lv))
                goto out;
            rq.sampling.seed = lv;
            break;
        case OPT_STOP:
            stops[rq.n_stop++] = optarg;
            break;
        case OPT_TOPLP:
            if (!cli_parse_int("--top-logprobs", optarg, 0, 20, &lv))
                goto out;
            rq.top_logprobs = (int)lv;
            break;
        case OPT_JSON:
            as_json = true;
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
    if (optind < argc || (!rq.prompt) == (!chat_file)) {
        cli_error("complete: give exactly one of -p TEXT and --chat-file FILE");
        goto out;
    }
    rq.stop = stops;
    if (chat_file) {
        if (read_chat(chat_file, &chat_root, &msgs, &rq.n_messages)) {
            rc = 1;
            goto out;
        }
        rq.messages = msgs;
        if (!rq.n_messages) {
            cli_error("complete: %s has no messages", chat_file);
            goto out;
        }
    }
    if (bo.n_base_urls) {
        struct remote_options ro;
        remote_options_init(&ro);
        ro.base_urls = bo.base_urls;
        ro.n_base_urls = (size_t)bo.n_base_urls;
        ro.model = bo.remote_model ? bo.remote_model : bo.local.path;
        ro.api_key_file = bo.api_key_file;
        ro.concurrency = bo.concurrency;
        ro.timeout_s = bo.timeout_s;
        ro.max_retries = (int)retries;
        ro.penalty = pen;
        ro.stream = stream;
        if (!ro.model) {
            cli_error("complete: name the server's model: --base-url URL -m NAME");
            goto out;
        }
        struct ica_error e = {0};
        if (remote_backend_new(&ro, &b, &e) != ICA_OK) {
            cli_error("complete: %s", e.msg);
            rc = 1;
            goto out;
        }
    } else {
        rc = cli_backend_open(&bo, "complete", &b);
        if (rc)
            goto out;
    }
    struct backend_result res;
    struct ica_error e = {0};
    bool live = stream && !as_json;
    int brc = backend_complete1(b, &rq, live ? emit : NULL, NULL, &res, &e);
    if (brc != ICA_OK) {
        if (live)
            fputc('\n', stdout);
        cli_error("complete: %s", e.msg);
        rc = 1;
        goto out;
    }
    if (as_json) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "backend", json_object_new_string(backend_describe(b)));
        json_object_object_add(
            o, "text", json_object_new_string_len(res.text ? res.text : "", (int)res.text_len));
        json_object_object_add(o, "finish", json_object_new_string(finish_str(res.finish)));
        json_object_object_add(o, "prompt_tokens", json_object_new_int64(res.prompt_tokens));
        json_object_object_add(o, "completion_tokens",
                               json_object_new_int64(res.completion_tokens));
        json_object_object_add(o, "cached_tokens", json_object_new_int64(res.cached_tokens));
        json_object_object_add(o, "attempts", json_object_new_int(res.attempts));
        json_object_object_add(o, "seconds", json_object_new_double(res.seconds));
        json_object *top = json_object_new_array();
        for (size_t i = 0; i < res.n_top; i++) {
            json_object *t = json_object_new_object();
            json_object_object_add(t, "token", json_object_new_string(res.top[i].token));
            json_object_object_add(t, "logprob", json_object_new_double(res.top[i].logprob));
            json_object_array_add(top, t);
        }
        json_object_object_add(o, "top_logprobs", top);
        printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
    } else {
        if (!live)
            fwrite(res.text ? res.text : "", 1, res.text_len, stdout);
        fputc('\n', stdout);
        for (size_t i = 0; i < res.n_top; i++)
            fprintf(stderr, "top %zu: %-16s %.4f\n", i + 1, res.top[i].token, res.top[i].logprob);
        fprintf(
            stderr, "[%s: %s, %u prompt + %u generated tokens (%u cached), %.2f s, %d attempt%s]\n",
            backend_describe(b), finish_str(res.finish), res.prompt_tokens, res.completion_tokens,
            res.cached_tokens, res.seconds, res.attempts, res.attempts == 1 ? "" : "s");
    }
    backend_result_free(&res);
    rc = 0;
out:
    backend_free(b);
    free(msgs);
    json_object_put(chat_root);
    free(stops);
    return rc;
}
