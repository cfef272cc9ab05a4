/* icalign tokenize / detokenize: the model's own tokenizer (llama.cpp-exact). */
#include "cli.h"

#include "icalign/tok.h"

#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help_tok(FILE *fp) {
    fprintf(fp, "usage: icalign tokenize -m MODEL.gguf [--no-bos] [--special] [--json] [TEXT]\n"
                "       icalign tokenize -m MODEL.gguf --file F [...]\n"
                "       icalign tokenize -m MODEL.gguf --batch IN.jsonl\n\n"
                "Tokenizes TEXT (or the file, or standard input) with the tokenizer stored in\n"
                "the GGUF file, exactly as llama.cpp does. BOS/EOS are added as the model's\n"
                "metadata says.\n\n"
                "  -m, --model PATH   GGUF file (a vocabulary-only GGUF is enough)\n"
                "      --no-bos       do not add BOS/EOS\n"
                "      --special      parse special-token text (<s>, <|eot_id|>, ...) as tokens\n"
                "      --json         print a JSON array of ids instead of 'id piece' lines\n"
                "  -f, --file F       read the text from F ('-' = standard input)\n"
                "      --batch IN     JSONL lines {\"text\":..., \"add_bos\":bool, "
                "\"parse_special\":bool}\n"
                "                     -> one JSON array of ids per line, in order ('-' = stdin)\n"
                "  -h, --help         this text\n");
}

static void help_detok(FILE *fp) {
    fprintf(fp, "usage: icalign detokenize -m MODEL.gguf --ids 1,2,3 [--special] [--keep-bos]\n\n"
                "Turns token ids back into text, as llama.cpp's llama_detokenize.\n\n"
                "  -m, --model PATH   GGUF file\n"
                "      --ids LIST     comma or space separated token ids\n"
                "      --special      render control tokens (<s>, <|eot_id|>, ...)\n"
                "      --keep-bos     do not drop a leading BOS / trailing EOS\n"
                "  -h, --help         this text\n");
}

static char *read_all(FILE *fp, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap + 1);
    if (!b)
        return NULL;
    for (;;) {
        if (n == cap) {
            char *nb = realloc(b, cap * 2 + 1);
            if (!nb) {
                free(b);
                return NULL;
            }
            b = nb;
            cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n, fp);
        n += r;
        if (r == 0)
            break;
    }
    if (ferror(fp)) {
        free(b);
        return NULL;
    }
    b[n] = 0;
    *len = n;
    return b;
}

static char *read_path(const char *path, size_t *len) {
    if (!strcmp(path, "-"))
        return read_all(stdin, len);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    char *b = read_all(fp, len);
    fclose(fp);
    return b;
}

static void print_json_ids(FILE *fp, const int32_t *ids, size_t n) {
    fputc('[', fp);
    for (size_t i = 0; i < n; i++)
        fprintf(fp, i ? ",%d" : "%d", ids[i]);
    fputs("]\n", fp);
}

static void print_piece(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c == '\r')
            fputs("\\r", stdout);
        else if (c == '\\')
            fputs("\\\\", stdout);
        else if (c < 0x20 || c == 0x7F)
            printf("\\x%02x", c);
        else
            fputc(c, stdout);
    }
}

static int run_batch(const struct tok_vocab *v, const char *path) {
    FILE *fp = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!fp) {
        cli_error("tokenize: cannot open %s", path);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t ll;
    long lineno = 0;
    int rc = 0;
    json_tokener *jt = json_tokener_new();
    while (jt && (ll = getline(&line, &cap, fp)) >= 0) {
        lineno++;
        while (ll > 0 && (line[ll - 1] == '\n' || line[ll - 1] == '\r'))
            line[--ll] = 0;
        if (ll == 0)
            continue;
        json_tokener_reset(jt);
        json_object *o = json_tokener_parse_ex(jt, line, (int)ll);
        json_object *jtext = NULL, *jb = NULL, *js = NULL;
        if (!o || !json_object_is_type(o, json_type_object) ||
            !json_object_object_get_ex(o, "text", &jtext) ||
            !json_object_is_type(jtext, json_type_string)) {
            cli_error("tokenize: %s:%ld: expected an object with a \"text\" string", path, lineno);
            json_object_put(o);
            rc = 1;
            break;
        }
        bool add = true, sp = false;
        if (json_object_object_get_ex(o, "add_bos", &jb))
            add = json_object_get_boolean(jb);
        if (json_object_object_get_ex(o, "parse_special", &js))
            sp = json_object_get_boolean(js);
        int32_t *ids = NULL;
        size_t n = 0;
        struct ica_error err = {0};
        if (tok_tokenize(v, json_object_get_string(jtext),
                         (size_t)json_object_get_string_len(jtext), add, sp, &ids, &n, &err)) {
            cli_error("tokenize: %s:%ld: %s", path, lineno, err.msg);
            json_object_put(o);
            rc = 1;
            break;
        }
        print_json_ids(stdout, ids, n);
        free(ids);
        json_object_put(o);
    }
    if (!jt) {
        cli_error("tokenize: out of memory");
        rc = 1;
    }
    json_tokener_free(jt);
    free(line);
    if (fp != stdin)
        fclose(fp);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *file = NULL, *batch = NULL;
    bool no_bos = false, special = false, json = false;
    enum { O_NOBOS = 256, O_SPECIAL, O_JSON, O_BATCH };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},   {"no-bos", no_argument, 0, O_NOBOS},
        {"special", no_argument, 0, O_SPECIAL}, {"json", no_argument, 0, O_JSON},
        {"file", required_argument, 0, 'f'},    {"batch", required_argument, 0, O_BATCH},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "m:f:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'm':
            model = optarg;
            break;
        case 'f':
            file = optarg;
            break;
        case O_NOBOS:
            no_bos = true;
            break;
        case O_SPECIAL:
            special = true;
            break;
        case O_JSON:
            json = true;
            break;
        case O_BATCH:
            batch = optarg;
            break;
        case 'h':
            help_tok(stdout);
            return 0;
        default:
            help_tok(stderr);
            return 2;
        }
    }
    if (!model) {
        cli_error("tokenize: -m MODEL.gguf is required");
        help_tok(stderr);
        return 2;
    }
    if ((file != NULL) + (batch != NULL) + (optind < argc) > 1 || argc - optind > 1) {
        cli_error("tokenize: give one of TEXT, --file or --batch");
        return 2;
    }
    struct ica_error err = {0};
    struct tok_vocab *v = NULL;
    if (tok_vocab_load(model, &v, &err)) {
        cli_error("%s", err.msg);
        return 1;
    }
    int rc = 0;
    if (batch) {
        rc = run_batch(v, batch);
        tok_vocab_free(v);
        return rc;
    }
    char *text = NULL;
    size_t len = 0;
    if (optind < argc) {
        len = strlen(argv[optind]);
        text = malloc(len + 1);
        if (text)
            memcpy(text, argv[optind], len + 1);
    } else {
        text = read_path(file ? file : "-", &len);
        if (!text)
            cli_error("tokenize: cannot read %s", file ? file : "standard input");
    }
    int32_t *ids = NULL;
    size_t n = 0;
    if (!text) {
        rc = 1;
    } else if (tok_tokenize(v, text, len, !no_bos, special, &ids, &n, &err)) {
        cli_error("tokenize: %s", err.msg);
        rc = 1;
    } else if (json) {
        print_json_ids(stdout, ids, n);
    } else {
        for (size_t i = 0; i < n; i++) {
            size_t pl = 0;
            const char *p = tok_piece(v, ids[i], &pl);
            printf("%6d '", ids[i]);
            print_piece(p, pl);
            fputs("'\n", stdout);
        }
    }
    free(ids);
    free(text);
    tok_vocab_free(v);
    return rc;
}

int cmd_detokenize(int argc, char **argv) {
    const char *model = NULL, *list = NULL;
    bool special = false, keep = false;
    enum { O_IDS = 256, O_SPECIAL, O_KEEP };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},   {"ids", required_argument, 0, O_IDS},
        {"special", no_argument, 0, O_SPECIAL}, {"keep-bos", no_argument, 0, O_KEEP},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "m:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'm':
            model = optarg;
            break;
        case O_IDS:
            list = optarg;
            break;
        case O_SPECIAL:
            special = true;
            break;
        case O_KEEP:
            keep = true;
            break;
        case 'h':
            help_detok(stdout);
            return 0;
        default:
            help_detok(stderr);
            return 2;
        }
    }
    if (!model || !list || optind < argc) {
        cli_error("detokenize: -m MODEL.gguf and --ids LIST are required");
        help_detok(stderr);
        return 2;
    }
    size_t n = 0;
    int32_t *ids = cli_parse_ids(list, &n);
    if (!ids)
        return 2;
    struct ica_error err = {0};
    struct tok_vocab *v = NULL;
    if (tok_vocab_load(model, &v, &err)) {
        cli_error("%s", err.msg);
        free(ids);
        return 1;
    }
    char *out = NULL;
    size_t len = 0;
    int rc = 0;
    if (tok_detokenize(v, ids, n, !keep, special, &out, &len, &err)) {
        cli_error("detokenize: %s", err.msg);
        rc = 1;
    } else {
        fwrite(out, 1, len, stdout);
        fputc('\n', stdout);
    }
    free(out);
    free(ids);
    tok_vocab_free(v);
    return rc;
}
