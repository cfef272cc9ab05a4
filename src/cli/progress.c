/* Helpers of the answer/chat/pull commands: progress bar, shared data lookup, UTF-8. */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void cli_progress_init(struct cli_progress *p, const char *label, uint64_t total, bool bytes) {
    memset(p, 0, sizeof *p);
    p->label = label;
    p->total = total;
    p->bytes = bytes;
    p->enabled = isatty(STDERR_FILENO) && !getenv("ICALIGN_NO_PROGRESS");
    p->t0 = mono_s();
    p->last = 0;
}

static void fmt_bytes(char *buf, size_t n, double v) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    snprintf(buf, n, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

static void fmt_eta(char *buf, size_t n, double s) {
    if (s < 0 || s > 359999) {
        snprintf(buf, n, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

void cli_progress_update(struct cli_progress *p, uint64_t done, uint64_t tokens, bool force) {
    p->done = done;
    p->tokens = tokens;
    if (!p->enabled)
        return;
    double now = mono_s();
    if (!force && now - p->last < 0.1) /* <= 10 Hz */
        return;
    p->last = now;
    double el = now - p->t0;
    char line[256], eta[32] = "--:--", rate[48] = "", cnt[64];
    double frac = p->total ? (double)done / (double)p->total : 0;
    if (frac > 1)
        frac = 1;
    if (done > p->base && p->total > done && el > 0.2) {
        double per = el / (double)(done - p->base);
        fmt_eta(eta, sizeof eta, per * (double)(p->total - done));
    } else if (p->total && done >= p->total) {
        snprintf(eta, sizeof eta, "done");
    }
    if (p->bytes) {
        char a[32], b[32], r[32];
        fmt_bytes(a, sizeof a, (double)done);
        fmt_bytes(b, sizeof b, (double)p->total);
        fmt_bytes(r, sizeof r, el > 0 ? (double)(done - p->base) / el : 0);
        snprintf(cnt, sizeof cnt, "%s/%s", a, p->total ? b : "?");
        snprintf(rate, sizeof rate, "%s/s", r);
    } else {
        snprintf(cnt, sizeof cnt, "%llu/%llu", (unsigned long long)done,
                 (unsigned long long)p->total);
        snprintf(rate, sizeof rate, "%.1f tok/s", el > 0 ? (double)tokens / el : 0.0);
    }
    char bar[31];
    int w = (int)(frac * 30 + 0.5);
    for (int i = 0; i < 30; i++)
        bar[i] = i < w ? '#' : '.';
    bar[30] = '\0';
    int n = snprintf(line, sizeof line, "\r%s [%s] %s  ETA %s  %s\x1b[K", p->label ? p->label : "",
                     bar, cnt, eta, rate);
    if (n > 0) {
        size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
        ssize_t wr = write(STDERR_FILENO, line, len); /* one write per frame */
        (void)wr;
    }
    p->drawn = true;
}

void cli_progress_end(struct cli_progress *p) {
    if (!p->enabled || !p->drawn)
        return;
    cli_progress_update(p, p->done, p->tokens, true);
    ssize_t wr = write(STDERR_FILENO, "\n", 1);
    (void)wr;
    p->drawn = false;
}

/* <dir>/<rel> exists? */
static bool try_path(char *buf, size_t n, const char *dir, const char *rel) {
    struct stat st;
    int k = snprintf(buf, n, "%s/%s", dir, rel);
    return k > 0 && (size_t)k < n && stat(buf, &st) == 0;
}

bool cli_shared_path(char *buf, size_t n, const char *rel) {
    const char *sh = getenv("ICALIGN_SHARED");
    if (sh && *sh && try_path(buf, n, sh, rel))
        return true;
    if (try_path(buf, n, "../shared", rel))
        return true;
    /* beside the checkout of the binary: <repo>/<build>/icalign -> <repo>/../shared */
    char exe[4096];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            char dir[4200];
            snprintf(dir, sizeof dir, "%s/../../shared", exe);
            if (try_path(buf, n, dir, rel))
                return true;
        }
    }
    return false;
}

char *cli_utf8_sanitize(const char *s, size_t len) {
    char *out = malloc(len * 3 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        unsigned c = p[i];
        size_t need = c < 0x80         ? 1
                      : (c >> 5) == 6  ? 2
                      : (c >> 4) == 14 ? 3
                      : (c >> 3) == 30 ? 4
                                       : 0;
        bool ok = need > 0 && i + need <= len && c != 0;
        if (ok && need > 1) {
            uint32_t cp = c & (0xff >> (need + 1));
            for (size_t k = 1; k < need; k++) {
                if ((p[i + k] & 0xc0) != 0x80) {
                    ok = false;
                    break;
                }
                cp = cp << 6 | (p[i + k] & 0x3f);
            }
            if (ok &&
                ((need == 2 && cp < 0x80) || (need == 3 && cp < 0x800) ||
                 (need == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff)))
                ok = false;
        }
        if (ok) {
            memcpy(out + o, p + i, need);
            o += need;
            i += need;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3); /* U+FFFD */
            o += 3;
            i++;
        }
    }
    out[o] = '\0';
    return out;
}
