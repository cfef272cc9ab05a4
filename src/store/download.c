/* HTTP(S) download with resume (Range) and checksum verification, for `icalign pull`. */
#include "icalign/store.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct dl {
    FILE *fp;
    CURL *curl;
    uint64_t offset;  /* bytes present when this attempt started */
    uint64_t written; /* bytes written in this attempt */
    uint64_t total;   /* expected size, 0 = unknown */
    long code;        /* HTTP status, read at the first body byte */
    bool started, restart, aborted, write_failed;
    const struct store_download_opts *o;
};

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud) {
    struct dl *d = ud;
    size_t n = size * nmemb;
    if (!d->started) {
        d->started = true;
        curl_easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, &d->code);
        if (d->code == 200 && d->offset > 0) {
            /* The server ignored the Range: start over. */
            d->restart = true;
            if (fflush(d->fp) != 0 || ftruncate(fileno(d->fp), 0) != 0 ||
                fseek(d->fp, 0, SEEK_SET) != 0) {
                d->write_failed = true;
                return 0;
            }
            d->offset = 0;
        }
        curl_off_t cl = -1;
        if (curl_easy_getinfo(d->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK &&
            cl >= 0 && (d->code == 200 || d->code == 206))
            d->total = d->offset + (uint64_t)cl;
    }
    if (d->code != 200 && d->code != 206)
        return n; /* error body: discard */
    if (fwrite(ptr, 1, n, d->fp) != n) {
        d->write_failed = true;
        return 0;
    }
    d->written += n;
    return n;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ult,
                       curl_off_t ulnow) {
    (void)ult;
    (void)ulnow;
    struct dl *d = ud;
    if (!d->o->progress)
        return 0;
    uint64_t total = d->total ? d->total : (dltotal > 0 ? d->offset + (uint64_t)dltotal : 0);
    uint64_t now = d->offset + (dlnow > 0 ? (uint64_t)dlnow : 0);
    if (!d->o->progress(d->o->ud, now, total)) {
        d->aborted = true;
        return 1;
    }
    return 0;
}

static bool hex_equal(const char *a, const char *b) {
    for (size_t i = 0; i < 64; i++)
        if (!a[i] || !b[i] || tolower((unsigned char)a[i]) != tolower((unsigned char)b[i]))
            return false;
    return a[64] == '\0' && b[64] == '\0';
}

static bool valid_hex64(const char *h) {
    size_t i = 0;
    for (; h[i]; i++)
        if (!isxdigit((unsigned char)h[i]))
            return false;
    return i == 64;
}

int store_download(const struct store_download_opts *o, char got_hex[65], struct ica_error *e) {
    if (!o->url || !o->dest)
        return ica_seterr(e, ICA_ERR_ARG, "download: url and dest are required");
    if (o->sha256 && !valid_hex64(o->sha256))
        return ica_seterr(e, ICA_ERR_ARG, "download: '%s' is not a sha256 (64 hex digits)",
                          o->sha256);
    static int inited;
    if (!inited) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return ica_seterr(e, ICA_ERR_IO, "download: libcurl initialization failed");
        inited = 1;
    }
    size_t plen = strlen(o->dest) + sizeof ".part";
    char *part = malloc(plen);
    if (!part)
        return ica_seterr(e, ICA_ERR_NOMEM, "out of memory");
    snprintf(part, plen, "%s.part", o->dest);
    const int attempts = o->max_attempts > 0 ? o->max_attempts : 5;
    int rc = ICA_OK;
    uint64_t total = 0;
    bool complete = false;
    char errbuf[CURL_ERROR_SIZE];
    for (int a = 0; a < attempts && !complete; a++) {
        struct stat st;
        uint64_t have = stat(part, &st) == 0 ? (uint64_t)st.st_size : 0;
        if (total && have == total) {
            complete = true;
            break;
        }
        if (total && have > total) { /* cannot be ours: start over */
            if (unlink(part) != 0) {
                rc = ica_seterr(e, ICA_ERR_IO, "%s: %s", part, strerror(errno));
                break;
            }
            have = 0;
        }
        struct dl d = {0};
        d.o = o;
        d.offset = have;
        d.fp = fopen(part, "ab");
        if (!d.fp) {
            rc = ica_seterr(e, ICA_ERR_IO, "%s: cannot write: %s", part, strerror(errno));
            break;
        }
        d.curl = curl_easy_init();
        if (!d.curl) {
            fclose(d.fp);
            rc = ica_seterr(e, ICA_ERR_NOMEM, "download: curl_easy_init failed");
            break;
        }
        errbuf[0] = '\0';
        curl_easy_setopt(d.curl, CURLOPT_URL, o->url);
        curl_easy_setopt(d.curl, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(d.curl, CURLOPT_MAXREDIRS, 10L);
        curl_easy_setopt(d.curl, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(d.curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(d.curl, CURLOPT_USERAGENT, "icalign-pull/0.1");
        curl_easy_setopt(d.curl, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(d.curl, CURLOPT_WRITEDATA, &d);
        curl_easy_setopt(d.curl, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(d.curl, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(d.curl, CURLOPT_XFERINFODATA, &d);
        curl_easy_setopt(d.curl, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(d.curl, CURLOPT_CONNECTTIMEOUT,
                         o->connect_timeout_s > 0 ? o->connect_timeout_s : 30L);
        curl_easy_setopt(d.curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(d.curl, CURLOPT_LOW_SPEED_TIME,
                         o->low_speed_time_s > 0 ? o->low_speed_time_s : 60L);
        curl_easy_setopt(d.curl, CURLOPT_NOSIGNAL, 1L);
        if (have)
            curl_easy_setopt(d.curl, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)have);
        CURLcode cr = curl_easy_perform(d.curl);
        long code = d.code;
        if (!d.started)
            curl_easy_getinfo(d.curl, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_cleanup(d.curl);
        bool wfail = fclose(d.fp) != 0 || d.write_failed;
        if (d.total)
            total = d.total;
        if (wfail) {
            rc = ica_seterr(e, ICA_ERR_IO, "%s: write error", part);
            break;
        }
        if (d.aborted) {
            rc = ica_seterr(e, ICA_ERR_IO, "download of %s cancelled (partial file kept: %s)",
                            o->url, part);
            break;
        }
        if (code == 416 && have > 0) {
            /* Range not satisfiable: the part file already holds everything (or is bogus —
             * the checksum decides). */
            complete = true;
            break;
        }
        if (code >= 400 && code < 500) {
            rc = ica_seterr(e, ICA_ERR_NOTFOUND, "%s: HTTP %ld", o->url, code);
            break;
        }
        if (cr == CURLE_OK && (code == 200 || code == 206)) {
            if (!total || have + d.written >= total) {
                complete = true;
                break;
            }
        }
        if (cr == CURLE_OK && code == 0) { /* file:// or similar */
            complete = true;
            break;
        }
        /* Dropped connection, 5xx, short body: retry from what we have. */
        rc = ica_seterr(e, ICA_ERR_IO, "%s: %s", o->url,
                        cr != CURLE_OK ? (errbuf[0] ? errbuf : curl_easy_strerror(cr))
                                       : "incomplete transfer");
        if (a + 1 < attempts)
            sleep(a < 3 ? (unsigned)a : 3u);
    }
    if (complete) {
        rc = ICA_OK;
        ica_clearerr(e);
        char hex[65];
        if ((rc = store_sha256_file(part, hex, e)) == ICA_OK) {
            if (got_hex)
                memcpy(got_hex, hex, 65);
            if (o->sha256 && !hex_equal(hex, o->sha256)) {
                unlink(part);
                rc = ica_seterr(e, ICA_ERR_FORMAT,
                                "%s: sha256 mismatch: expected %s, got %s (file deleted)", o->url,
                                o->sha256, hex);
            } else if (rename(part, o->dest) != 0) {
                rc = ica_seterr(e, ICA_ERR_IO, "%s: cannot rename to %s: %s", part, o->dest,
                                strerror(errno));
            }
        }
    } else if (rc == ICA_OK) {
        rc = ica_seterr(e, ICA_ERR_IO, "%s: download failed", o->url);
    }
    free(part);
    return rc;
}
