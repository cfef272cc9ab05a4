/* icalign demos: inspect, compose and transform demonstration sets. */
#include "cli.h"

#include "icalign/align.h"

#include "icalign/tok.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *fp) {
    fprintf(fp, "usage: icalign demos show SPEC [-m MODEL.gguf]\n"
                "       icalign demos write SPEC [-o OUT]\n"
                "       icalign demos transform --variant V [--shift +1|-1] [--answers POOL]\n"
                "                               [--queries POOL] [--seed S] [-o OUT] IN\n\n"
                "show       lists the demonstrations of a set: index, id, source, characters;\n"
                "           with -m, the token count of the rendered prefix in that model's\n"
                "           tokenizer (BOS included when the vocabulary adds it)\n"
                "write      writes the composed set as a URIAL-format prompt file\n"
                "transform  applies an ablation of METHOD.md §3.3 and writes the result:\n"
                "           correct         unchanged\n"
                "           circular_shift  demo i takes the answer of demo i+shift (mod n);\n"
                "                           the ICL files use +1 (urial) and -1 (urial_plus_3)\n"
                "           random_answer   answers replaced by those of POOL, in pool order, or\n"
                "                           drawn without replacement with --seed\n"
                "           no_answer       answer blocks removed\n"
                "           unsupervised    the queries of POOL (without answers), a bridge\n"
                "                           sentence, then the demos of IN\n"
                "SPEC and IN use the --demos grammar (docs/ALIGN.md); POOL is a URIAL-format file\n"
                "or a .jsonl pool. OUT defaults to stdout; output bytes are exact.\n");
}

static size_t utf8_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static int emit(const char *out_path, const char *buf, size_t len) {
    FILE *fp = out_path ? fopen(out_path, "wb") : stdout;
    if (!fp) {
        cli_error("demos: cannot create %s", out_path);
        return 1;
    }
    int bad = fwrite(buf, 1, len, fp) != len;
    bad |= out_path ? fclose(fp) != 0 : fflush(fp) != 0;
    if (bad) {
        cli_error("demos: write error on %s", out_path ? out_path : "stdout");
        return 1;
    }
    return 0;
}

static int write_set(const struct align_set *s, const char *out_path) {
    struct ica_error err = {0};
    char *buf = NULL;
    size_t len = 0;
    if (align_set_write(s, &buf, &len, &err) != ICA_OK) {
        cli_error("%s", err.msg);
        return 1;
    }
    int rc = emit(out_path, buf, len);
    free(buf);
    return rc;
}

static void preview(const char *q, char *out, size_t cap) {
    size_t o = 0;
    for (const char *p = q; *p && o + 4 < cap; p++)
        out[o++] = (*p == '\n' || *p == '\t') ? ' ' : *p;
    if (strlen(q) > o)
        memcpy(out + o, "...", 4);
    else
        out[o] = '\0';
    /* do not cut a UTF-8 sequence */
    while (o > 0 && ((unsigned char)out[o - 1] & 0xC0) == 0x80 && strlen(q) > o)
        o--;
}

/* Tokens of text in the tokenizer of a GGUF file (only the vocabulary is read). */
static long count_tokens(const char *model, const char *text, size_t len) {
    struct ica_error err = {0};
    struct tok_vocab *v = NULL;
    if (tok_vocab_load(model, &v, &err) != ICA_OK) {
        cli_error("%s", err.msg);
        return -1;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    long r = -1;
    if (tok_tokenize(v, text, len, true, false, &ids, &n, &err) == ICA_OK)
        r = (long)n;
    else
        cli_error("%s", err.msg);
    free(ids);
    tok_vocab_free(v);
    return r;
}

static int show(const char *spec, const char *model) {
    struct ica_error err = {0};
    struct align_set *s = NULL;
    if (align_spec_load(spec, &s, &err) != ICA_OK) {
        cli_error("%s", err.msg);
        return 1;
    }
    char *prefix = NULL;
    size_t plen = 0;
    if (align_render_prefix(s, &prefix, &plen, &err) != ICA_OK) {
        cli_error("%s", err.msg);
        align_set_free(s);
        return 1;
    }
    size_t at = 0;
    const char *bridge = align_set_bridge(s, &at);
    printf("set:     %s\n", spec);
    printf("style:   %s\n", align_set_style(s) == ALIGN_STYLE_URIAL     ? "urial (# Query/# Answer)"
                            : align_set_style(s) == ALIGN_STYLE_USER_V5 ? "urial_v5 (# User)"
                                                                        : "urial_v6 (# User)");
    printf("header:  %zu chars\n", utf8_chars(align_set_header(s)));
    printf("demos:   %zu\n", align_set_count(s));
    if (bridge)
        printf("bridge:  before demo %zu (%zu chars)\n", at, utf8_chars(bridge));
    if (model) {
        const long nt = count_tokens(model, prefix, plen);
        if (nt < 0) {
            free(prefix);
            align_set_free(s);
            return 1;
        }
        printf("prefix:  %zu bytes, %zu chars, %ld tokens (%s)\n", plen, utf8_chars(prefix), nt,
               model);
    } else {
        printf("prefix:  %zu bytes, %zu chars (give -m MODEL.gguf for the token count)\n", plen,
               utf8_chars(prefix));
    }
    free(prefix);
    if (align_set_count(s))
        printf("\n%4s  %-24s  %-22s  %7s  %7s  %s\n", "#", "id", "source", "q.chars", "a.chars",
               "query");
    for (size_t i = 0; i < align_set_count(s); i++) {
        const struct align_demo *d = align_set_demo(s, i);
        char pv[48], ac[16];
        preview(d->query, pv, sizeof pv);
        if (d->answer)
            snprintf(ac, sizeof ac, "%zu", utf8_chars(d->answer));
        else
            snprintf(ac, sizeof ac, "-");
        printf("%4zu  %-24.24s  %-22.22s  %7zu  %7s  %s\n", i, d->id, d->source,
               utf8_chars(d->query), ac, pv);
    }
    align_set_free(s);
    return 0;
}

static int transform(int argc, char **argv) {
    const char *variant = NULL, *answers = NULL, *queries = NULL, *out_path = NULL;
    long shift = 1, seed = 0;
    bool seeded = false;
    static const struct option opts[] = {
        {"variant", required_argument, 0, 'v'}, {"shift", required_argument, 0, 's'},
        {"answers", required_argument, 0, 'a'}, {"queries", required_argument, 0, 'q'},
        {"seed", required_argument, 0, 'S'},    {"output", required_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'v':
            variant = optarg;
            break;
        case 's':
            if (!cli_parse_int("--shift", optarg[0] == '+' ? optarg + 1 : optarg, -1, 1, &shift))
                return 2;
            if (shift == 0) {
                cli_error("--shift must be +1 or -1");
                return 2;
            }
            break;
        case 'a':
            answers = optarg;
            break;
        case 'q':
            queries = optarg;
            break;
        case 'S':
            if (!cli_parse_int("--seed", optarg, 0, 0x7fffffffL, &seed))
                return 2;
            seeded = true;
            break;
        case 'o':
            out_path = optarg;
            break;
        case 'h':
            help(stdout);
            return 0;
        default:
            help(stderr);
            return 2;
        }
    }
    if (!variant || optind != argc - 1) {
        cli_error("demos transform: need --variant V and exactly one input set");
        help(stderr);
        return 2;
    }
    struct ica_error err = {0};
    enum align_variant v;
    if (align_variant_parse(variant, &v, &err) != ICA_OK) {
        cli_error("%s", err.msg);
        return 2;
    }
    const char *pool_path = v == ALIGN_VARIANT_UNSUPERVISED ? queries : answers;
    if (v == ALIGN_VARIANT_RANDOM_ANSWER && !answers) {
        cli_error("demos transform: random_answer needs --answers POOL");
        return 2;
    }
    if (v == ALIGN_VARIANT_UNSUPERVISED && !queries) {
        cli_error("demos transform: unsupervised needs --queries POOL");
        return 2;
    }
    struct align_set *in = NULL, *pool = NULL, *out = NULL;
    int ret = 1;
    if (align_spec_load(argv[optind], &in, &err) != ICA_OK)
        goto fail;
    if (pool_path && align_pool_load(pool_path, &pool, &err) != ICA_OK)
        goto fail;
    struct align_transform_opts o = {
        .shift = (int)shift, .pool = pool, .seeded = seeded, .seed = (uint64_t)seed};
    if (align_transform(in, v, &o, &out, &err) != ICA_OK)
        goto fail;
    ret = write_set(out, out_path);
    goto done;
fail:
    cli_error("%s", err.msg);
done:
    align_set_free(in);
    align_set_free(pool);
    align_set_free(out);
    return ret;
}

int cmd_demos(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        help(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "transform"))
        return transform(argc - 1, argv + 1);
    if (!strcmp(sub, "show")) {
        const char *spec = NULL, *model = NULL;
        bool extra = false;
        for (int i = 2; i < argc; i++) {
            if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc)
                model = argv[++i];
            else if (!spec)
                spec = argv[i];
            else
                extra = true;
        }
        if (!spec || extra) {
            cli_error("demos show: need exactly one SPEC (and optionally -m MODEL.gguf)");
            return 2;
        }
        return show(spec, model);
    }
    if (!strcmp(sub, "write")) {
        const char *out_path = NULL, *spec = NULL;
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "-o") && i + 1 < argc)
                out_path = argv[++i];
            else if (!spec)
                spec = argv[i];
            else {
                cli_error("demos write: unexpected argument '%s'", argv[i]);
                return 2;
            }
        }
        if (!spec) {
            cli_error("demos write: need a SPEC");
            return 2;
        }
        struct ica_error err = {0};
        struct align_set *s = NULL;
        if (align_spec_load(spec, &s, &err) != ICA_OK) {
            cli_error("%s", err.msg);
            return 1;
        }
        int rc = write_set(s, out_path);
        align_set_free(s);
        return rc;
    }
    cli_error("demos: unknown subcommand '%s' (show, write, transform)", sub);
    return 2;
}
