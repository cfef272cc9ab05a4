/* icalign pull: download a base-model GGUF into the model cache (resume, sha256 check). */
#include "cli.h"

#include "icalign/store.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Built-in base models (never instruct/chat models: URIAL aligns base models). sha256 NULL =
 * not published where we could verify it: recorded on first download (<file>.sha256) and
 * checked on later pulls. */
struct known_model {
    const char *name, *file, *url, *sha256, *about;
};

static const struct known_model g_models[] = {
    {"qwen2-0.5b", "Qwen2-0.5B.Q8_0.gguf",
     "https://huggingface.co/mradermacher/Qwen2-0.5B-GGUF/resolve/"
     "b5c38a65b498d680735594770f3a140254398b31/Qwen2-0.5B.Q8_0.gguf",
     NULL, "Qwen2-0.5B base (pretrained), Q8_0, 531 MB — the default"},
    {"llama-2-7b", "llama-2-7b.Q4_K_M.gguf",
     "https://huggingface.co/TheBloke/Llama-2-7B-GGUF/resolve/"
     "2c9bfa5c2f55fada6b1ee692e7d68004b7ed764e/llama-2-7b.Q4_K_M.gguf",
     NULL, "Llama-2-7B base (the paper's), Q4_K_M, 4.1 GB"},
    {"mistral-7b-v0.1", "mistral-7b-v0.1.Q4_K_M.gguf",
     "https://huggingface.co/TheBloke/Mistral-7B-v0.1-GGUF/resolve/main/"
     "mistral-7b-v0.1.Q4_K_M.gguf",
     NULL, "Mistral-7B-v0.1 base (the paper's), Q4_K_M, 4.4 GB"},
};
#define DEFAULT_MODEL "qwen2-0.5b"

static void help(FILE *fp) {
    fprintf(fp,
            "usage: icalign pull [NAME|URL] [--sha256 HEX] [--dir DIR] [--print-path] [--list]\n\n"
            "Downloads a GGUF base model into the model cache (default\n"
            "$XDG_CACHE_HOME/icalign/models or ~/.cache/icalign/models), resuming an interrupted\n"
            "download (HTTP Range) and verifying its sha256. Prints the file's path on stdout.\n"
            "NAME is one of the built-in base models (default: " DEFAULT_MODEL ").\n\n"
            "  --sha256 HEX    expected sha256 (overrides the built-in one); a mismatching file\n"
            "                  is deleted\n"
            "  --dir DIR       download into DIR\n"
            "  --print-path    print the path if the model is already downloaded (exit 1 if\n"
            "                  not); downloads nothing\n"
            "  --list          list the built-in models\n"
            "  -q, --quiet     no progress bar\n"
            "  -h, --help      this text\n");
}

static int mkdirs(const char *dir) {
    char p[4096];
    int n = snprintf(p, sizeof p, "%s", dir);
    if (n <= 0 || (size_t)n >= sizeof p)
        return -1;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            return -1;
        *s = '/';
    }
    return mkdir(p, 0777) != 0 && errno != EEXIST ? -1 : 0;
}

static bool read_sidecar(const char *path, char hex[65]) {
    char sc[4200];
    if (snprintf(sc, sizeof sc, "%s.sha256", path) >= (int)sizeof sc)
        return false;
    FILE *fp = fopen(sc, "r");
    if (!fp)
        return false;
    bool ok = fscanf(fp, "%64s", hex) == 1 && strlen(hex) == 64;
    fclose(fp);
    return ok;
}

static void write_sidecar(const char *path, const char *hex) {
    char sc[4200];
    if (snprintf(sc, sizeof sc, "%s.sha256", path) >= (int)sizeof sc)
        return;
    FILE *fp = fopen(sc, "w");
    if (!fp)
        return;
    const char *base = strrchr(path, '/');
    fprintf(fp, "%s  %s\n", hex, base ? base + 1 : path);
    fclose(fp);
}

static bool on_progress(void *ud, uint64_t done, uint64_t total) {
    struct cli_progress *p = ud;
    if (total && p->total != total)
        p->total = total;
    cli_progress_update(p, done, 0, false);
    return true;
}

enum { OPT_SHA = 5000, OPT_DIR, OPT_PRINT, OPT_LIST };

int cmd_pull(int argc, char **argv) {
    const char *sha = NULL, *dir = NULL;
    bool print_only = false, list = false, quiet = false;
    static const struct option opts[] = {{"sha256", required_argument, 0, OPT_SHA},
                                         {"dir", required_argument, 0, OPT_DIR},
                                         {"print-path", no_argument, 0, OPT_PRINT},
                                         {"list", no_argument, 0, OPT_LIST},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (ch) {
        case OPT_SHA:
            sha = optarg;
            break;
        case OPT_DIR:
            dir = optarg;
            break;
        case OPT_PRINT:
            print_only = true;
            break;
        case OPT_LIST:
            list = true;
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
    }
    if (list) {
        for (size_t i = 0; i < sizeof g_models / sizeof g_models[0]; i++)
            printf("%-16s %s\n%16s sha256 %s\n", g_models[i].name, g_models[i].about, "",
                   g_models[i].sha256 ? g_models[i].sha256
                                      : "unknown (recorded on first download)");
        return 0;
    }
    if (argc - optind > 1) {
        cli_error("pull: one model at a time");
        return 2;
    }
    const char *what = optind < argc ? argv[optind] : DEFAULT_MODEL;
    const struct known_model *km = NULL;
    for (size_t i = 0; i < sizeof g_models / sizeof g_models[0]; i++)
        if (!strcmp(what, g_models[i].name))
            km = &g_models[i];
    const char *url = km ? km->url : what;
    if (!km && strncmp(url, "http://", 7) && strncmp(url, "https://", 8)) {
        cli_error("pull: '%s' is neither a built-in model (see --list) nor an http(s) URL", what);
        return 2;
    }
    if (!sha && km)
        sha = km->sha256;
    if (sha && strlen(sha) != 64) {
        cli_error("pull: --sha256 must be 64 hex digits");
        return 2;
    }
    /* file name: the built-in one or the URL's last path segment */
    char file[512];
    if (km) {
        snprintf(file, sizeof file, "%s", km->file);
    } else {
        size_t end = strcspn(url, "?#");
        const char *s = url + end;
        while (s > url && s[-1] != '/')
            s--;
        size_t n = (size_t)(url + end - s);
        if (n == 0 || n >= sizeof file || (n <= 2 && s[0] == '.')) {
            cli_error("pull: cannot take a file name from %s", url);
            return 2;
        }
        memcpy(file, s, n);
        file[n] = '\0';
    }
    char dbuf[4096];
    if (!dir) {
        const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        if (xdg && *xdg)
            snprintf(dbuf, sizeof dbuf, "%s/icalign/models", xdg);
        else if (home && *home)
            snprintf(dbuf, sizeof dbuf, "%s/.cache/icalign/models", home);
        else {
            cli_error("pull: no $HOME; give --dir DIR");
            return 2;
        }
        dir = dbuf;
    }
    char dest[4700];
    snprintf(dest, sizeof dest, "%s/%s", dir, file);
    struct stat st;
    char recorded[65] = "";
    bool have_recorded = read_sidecar(dest, recorded);
    if (stat(dest, &st) == 0) {
        if (print_only) {
            printf("%s\n", dest);
            return 0;
        }
        const char *want = sha ? sha : have_recorded ? recorded : NULL;
        if (want) {
            char hex[65];
            struct ica_error err = {0};
            if (store_sha256_file(dest, hex, &err) != ICA_OK) {
                cli_error("pull: %s", err.msg);
                return 1;
            }
            if (strcasecmp(hex, want)) {
                cli_error("pull: %s exists but its sha256 is %s, not %s; delete it to download "
                          "again",
                          dest, hex, want);
                return 1;
            }
        }
        if (!quiet)
            fprintf(stderr, "icalign: pull: %s is already present%s\n", dest,
                    want ? " (sha256 verified)" : "");
        printf("%s\n", dest);
        return 0;
    }
    if (print_only)
        return 1;
    if (mkdirs(dir) != 0) {
        cli_error("pull: cannot create %s: %s", dir, strerror(errno));
        return 1;
    }
    if (!quiet)
        fprintf(stderr, "icalign: pull: %s\n  -> %s\n", url, dest);
    struct cli_progress prog;
    cli_progress_init(&prog, "pull", 0, true);
    if (quiet)
        prog.enabled = false;
    struct store_download_opts o = {0};
    o.url = url;
    o.dest = dest;
    o.sha256 = sha;
    o.progress = on_progress;
    o.ud = &prog;
    char got[65];
    struct ica_error err = {0};
    int rc = store_download(&o, got, &err);
    cli_progress_end(&prog);
    if (rc != ICA_OK) {
        cli_error("pull: %s", err.msg);
        return 1;
    }
    write_sidecar(dest, got);
    if (!quiet) {
        if (sha)
            fprintf(stderr, "icalign: pull: sha256 verified: %s\n", got);
        else
            fprintf(stderr,
                    "icalign: pull: sha256 %s (no published hash known: recorded on first "
                    "download in %s.sha256)\n",
                    got, dest);
    }
    printf("%s\n", dest);
    return 0;
}
