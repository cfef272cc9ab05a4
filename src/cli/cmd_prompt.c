/* icalign prompt: print the exact prompt a base model would get (URIAL rendering). */
#include "cli.h"

#include "icalign/align.h"

#include <getopt.h>
#include <stdint.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *fp) {
    fprintf(fp,
            "usage: icalign prompt [--demos SPEC] (--query TEXT | --conversation FILE.json)\n"
            "                      [--part all|prefix|suffix]\n\n"
            "Prints the rendered prompt bytes exactly (no newline added): the demonstration\n"
            "set's system text, then the conversation as '# Query:'/'# Answer:' blocks and the\n"
            "open answer slot, byte-identical to the URIAL reference.\n\n"
            "  --demos SPEC          demonstration set (default: default); see docs/ALIGN.md:\n"
            "                        PATH, default, none, header-only[:SPEC],\n"
            "                        pool:FILE:ids=A,B | random=N | stratified=N [:seed=S],\n"
            "                        and BASE+[before:|after:]EXTRA to add demos\n"
            "  --query TEXT          a single user message\n"
            "  --conversation FILE   JSON: [\"user\", \"assistant\", \"user\", ...] or\n"
            "                        [{\"role\": \"user\", \"content\": ...}, ...] or\n"
            "                        {\"messages\": [...]} ('-' reads stdin); null or \"\" is an\n"
            "                        empty message (rendered like the reference's falsy message)\n"
            "  --part P              all (default), prefix (shared by every query: header +\n"
            "                        demos) or suffix (the per-conversation part)\n"
            "  -h, --help            this text\n");
}

static char *read_all(const char *path, size_t *n) {
    FILE *fp = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!fp)
        return NULL;
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (len + 1 >= cap) {
            char *t = realloc(buf, cap *= 2);
            if (!t) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = t;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, fp);
        len += got;
        if (got == 0)
            break;
    }
    if (fp != stdin)
        fclose(fp);
    if (buf) {
        buf[len] = '\0';
        *n = len;
    }
    return buf;
}

/* Loads a conversation: fills msgs (borrowed from *root) and returns their count, or -1. */
static long load_conversation(const char *path, json_object **root, const char ***msgs) {
    size_t n = 0;
    char *text = read_all(path, &n);
    if (!text) {
        cli_error("prompt: cannot read %s", path);
        return -1;
    }
    if (n > (size_t)INT32_MAX) {
        cli_error("prompt: %s: too large", path);
        free(text);
        return -1;
    }
    json_tokener *tok = json_tokener_new();
    json_object *o = tok ? json_tokener_parse_ex(tok, text, (int)n) : NULL;
    enum json_tokener_error jerr = tok ? json_tokener_get_error(tok) : json_tokener_error_parse_eof;
    if (tok)
        json_tokener_free(tok);
    free(text);
    if (!o || jerr != json_tokener_success) {
        cli_error("prompt: %s: invalid JSON: %s", path,
                  jerr == json_tokener_continue ? "unexpected end" : json_tokener_error_desc(jerr));
        json_object_put(o);
        return -1;
    }
    *root = o;
    json_object *arr = o;
    if (json_object_is_type(o, json_type_object) &&
        !json_object_object_get_ex(o, "messages", &arr) &&
        !json_object_object_get_ex(o, "turns", &arr))
        arr = NULL;
    if (!arr || !json_object_is_type(arr, json_type_array)) {
        cli_error("prompt: %s: expected a JSON array of messages (or {\"messages\": [...]})", path);
        return -1;
    }
    size_t m = json_object_array_length(arr);
    *msgs = calloc(m ? m : 1, sizeof **msgs);
    if (!*msgs)
        return -1;
    for (size_t i = 0; i < m; i++) {
        json_object *it = json_object_array_get_idx(arr, i);
        if (it && json_object_is_type(it, json_type_object)) {
            json_object *role, *content;
            const char *want = i % 2 ? "assistant" : "user";
            if (json_object_object_get_ex(it, "role", &role) &&
                (!json_object_is_type(role, json_type_string) ||
                 strcmp(json_object_get_string(role), want))) {
                cli_error("prompt: %s: message %zu must have role \"%s\" (messages alternate "
                          "user, assistant, ...)",
                          path, i, want);
                return -1;
            }
            it = json_object_object_get_ex(it, "content", &content) ? content : NULL;
        }
        if (it && !json_object_is_type(it, json_type_string)) {
            cli_error("prompt: %s: message %zu is not a string, null or {role, content}", path, i);
            return -1;
        }
        (*msgs)[i] = it ? json_object_get_string(it) : NULL;
    }
    return (long)m;
}

int cmd_prompt(int argc, char **argv) {
    const char *spec = "default", *query = NULL, *conv = NULL, *part = "all";
    static const struct option opts[] = {{"demos", required_argument, 0, 'd'},
                                         {"query", required_argument, 0, 'q'},
                                         {"conversation", required_argument, 0, 'c'},
                                         {"part", required_argument, 0, 'p'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'd':
            spec = optarg;
            break;
        case 'q':
            query = optarg;
            break;
        case 'c':
            conv = optarg;
            break;
        case 'p':
            part = optarg;
            break;
        case 'h':
            help(stdout);
            return 0;
        default:
            help(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        cli_error("prompt: unexpected argument '%s'", argv[optind]);
        return 2;
    }
    if (!!query == !!conv) {
        cli_error("prompt: give exactly one of --query TEXT and --conversation FILE.json");
        help(stderr);
        return 2;
    }
    if (strcmp(part, "all") && strcmp(part, "prefix") && strcmp(part, "suffix")) {
        cli_error("prompt: --part must be all, prefix or suffix, got '%s'", part);
        return 2;
    }
    struct ica_error err = {0};
    struct align_set *set = NULL;
    if (align_spec_load(spec, &set, &err) != ICA_OK) {
        cli_error("%s", err.msg);
        return 1;
    }
    json_object *root = NULL;
    const char **msgs = NULL;
    long n = 1;
    const char *single[1] = {query};
    if (conv) {
        n = load_conversation(conv, &root, &msgs);
        if (n < 0) {
            json_object_put(root);
            free(msgs);
            align_set_free(set);
            return 1;
        }
        if (n % 2 == 0)
            fprintf(stderr,
                    "icalign: prompt: warning: the conversation has %ld messages (does "
                    "not end with a user message); the answer slot follows anyway\n",
                    n);
    }
    const char *const *m = conv ? msgs : single;
    char *out = NULL;
    size_t len = 0;
    int rc;
    if (!strcmp(part, "prefix"))
        rc = align_render_prefix(set, &out, &len, &err);
    else if (!strcmp(part, "suffix"))
        rc = align_render_suffix(set, m, (size_t)n, &out, &len, &err);
    else
        rc = align_render(set, m, (size_t)n, &out, &len, &err);
    int ret = 0;
    if (rc) {
        cli_error("%s", err.msg);
        ret = 1;
    } else if (fwrite(out, 1, len, stdout) != len || fflush(stdout) != 0) {
        cli_error("prompt: write error");
        ret = 1;
    }
    free(out);
    free(msgs);
    json_object_put(root);
    align_set_free(set);
    return ret;
}
