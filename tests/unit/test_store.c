/* store: SHA-256 vectors, runs (resume, config change = new run), generations (force replace,
 * judgments dropped with a replaced generation), crash safety (a child killed with SIGKILL
 * keeps every committed generation), the file-hash cache, and downloads against a local
 * libmicrohttpd server (resume after a dropped connection, wrong checksum rejected). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "icalign/store.h"
#include "testutil.h"

#include <math.h>
#include <microhttpd.h>
#include <sqlite3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void test_sha256(void **state) {
    (void)state;
    char hex[65];
    store_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    store_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    store_sha256_hex(m, strlen(m), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* one million 'a' fed in odd-sized pieces */
    struct store_sha256 c;
    store_sha256_init(&c);
    char a[997];
    memset(a, 'a', sizeof a);
    size_t left = 1000000;
    while (left) {
        size_t k = left < sizeof a ? left : sizeof a;
        store_sha256_update(&c, a, k);
        left -= k;
    }
    store_sha256_final_hex(&c, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static char *subdir(const char *name) {
    static char buf[8][4096];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, 4096, "%s/%s", tu_tmpdir(), name);
    return b;
}

static struct store_run_info info(const char *config) {
    struct store_run_info ri = {.kind = "answer",
                                .bench = "mt-bench",
                                .config = config,
                                .model_sha256 = "00",
                                .demos_sha256 = "11",
                                .demos_text = "# Instruction\n",
                                .decoding = "{}",
                                .backend = "local:test",
                                .version = "test"};
    return ri;
}

static void put_gen(struct store *s, int64_t run, const char *item, int turn, const char *text) {
    struct ica_error e = {0};
    struct store_generation g = {.item_id = item,
                                 .turn = turn,
                                 .prompt_sha256 = "ab",
                                 .raw = text,
                                 .raw_len = strlen(text),
                                 .cleaned = text,
                                 .cleaned_len = strlen(text),
                                 .finish = "stop",
                                 .prompt_tokens = 10,
                                 .completion_tokens = 3,
                                 .cached_tokens = 2,
                                 .seconds = 0.5,
                                 .attempts = 1};
    assert_int_equal(store_generation_put(s, run, &g, &e), ICA_OK);
}

static void test_runs_and_generations(void **state) {
    (void)state;
    struct ica_error e = {0};
    struct store *s = NULL;
    const char *dir = subdir("runs/nested");
    assert_int_equal(store_open(dir, &s, &e), ICA_OK);
    struct store_run_info ri = info("{\"a\":1}");
    int64_t run = 0, run2 = 0, run3 = 0;
    bool created = false;
    char key[65];
    assert_int_equal(store_run_open(s, &ri, &run, &created, key, &e), ICA_OK);
    assert_true(created);
    assert_int_equal(strlen(key), 64);
    assert_int_equal(store_item_put(s, run, "81", 0, "{\"q\":1}", &e), ICA_OK);
    assert_int_equal(store_item_put(s, run, "81", 0, "{\"q\":1}", &e), ICA_OK); /* idempotent */
    assert_int_equal(store_item_put(s, run, "82", 1, "{}", &e), ICA_OK);
    put_gen(s, run, "81", 1, "hello");
    /* a generation of an unknown item violates the foreign key */
    struct store_generation bad = {
        .item_id = "999", .turn = 1, .prompt_sha256 = "x", .raw = "", .cleaned = ""};
    assert_int_not_equal(store_generation_put(s, run, &bad, &e), ICA_OK);
    store_close(s);

    /* reopen = resume: same configuration, same run, generation still there */
    assert_int_equal(store_open(dir, &s, &e), ICA_OK);
    assert_int_equal(store_run_open(s, &ri, &run2, &created, NULL, &e), ICA_OK);
    assert_false(created);
    assert_int_equal(run2, run);
    struct store_gen_row row;
    bool found = false;
    assert_int_equal(store_generation_get(s, run, "81", 1, &row, &found, &e), ICA_OK);
    assert_true(found);
    assert_string_equal(row.cleaned, "hello");
    assert_int_equal(row.prompt_tokens, 10);
    assert_int_equal(row.cached_tokens, 2);
    int64_t gid = row.id;
    store_gen_row_free(&row);
    assert_int_equal(store_generation_get(s, run, "81", 2, &row, &found, &e), ICA_OK);
    assert_false(found);

    /* a judgment, then --force replaces the generation (same row id) and drops it */
    struct store_judgment j = {.generation_id = gid,
                               .judge = "gpt-4",
                               .prompt_name = "single-v1",
                               .prompt = "judge this",
                               .raw = "[[7]]",
                               .score = 7,
                               .preference = NAN};
    assert_int_equal(store_judgment_put(s, &j, &e), ICA_OK);
    put_gen(s, run, "81", 1, "hello again");
    int64_t n = 0;
    assert_int_equal(store_generation_count(s, run, &n, &e), ICA_OK);
    assert_int_equal(n, 1);
    assert_int_equal(store_generation_get(s, run, "81", 1, &row, &found, &e), ICA_OK);
    assert_string_equal(row.cleaned, "hello again");
    assert_int_equal(row.id, gid);
    store_gen_row_free(&row);
    j.raw = "[[8]]";
    assert_int_equal(store_judgment_put(s, &j, &e), ICA_OK);

    /* a changed configuration is a new run, never mixed with the first */
    struct store_run_info ri2 = info("{\"a\":2}");
    assert_int_equal(store_run_open(s, &ri2, &run3, &created, NULL, &e), ICA_OK);
    assert_true(created);
    assert_int_not_equal(run3, run);
    assert_int_equal(store_generation_count(s, run3, &n, &e), ICA_OK);
    assert_int_equal(n, 0);
    assert_int_equal(store_generation_get(s, run3, "81", 1, &row, &found, &e), ICA_OK);
    assert_false(found);
    store_close(s);
}

/* A child stores generations one by one and is killed with SIGKILL; every generation it
 * committed is there afterwards and the database is consistent. */
/* Judgments (icalign judge): parsed/error columns, get, list joined with items and generations
 * in (judge, position, turn) order, runs and items lists; a schema-1 store gains the columns. */
static void test_judgments(void **state) {
    (void)state;
    struct ica_error e = {0};
    struct store *s = NULL;
    const char *dir = subdir("judged");
    assert_int_equal(store_open(dir, &s, &e), ICA_OK);
    struct store_run_info ri = info("{\"j\":1}");
    int64_t run = 0;
    assert_int_equal(store_run_open(s, &ri, &run, NULL, NULL, &e), ICA_OK);
    assert_int_equal(store_item_put(s, run, "82", 1, "{\"question_id\":82}", &e), ICA_OK);
    assert_int_equal(store_item_put(s, run, "81", 0, "{\"question_id\":81}", &e), ICA_OK);
    put_gen(s, run, "82", 1, "b1");
    put_gen(s, run, "81", 2, "a2");
    put_gen(s, run, "81", 1, "a1");
    int64_t g[3];
    const char *it[3] = {"82", "81", "81"};
    const int tu[3] = {1, 2, 1};
    for (int k = 0; k < 3; k++) {
        struct store_gen_row row;
        bool found = false;
        assert_int_equal(store_generation_get(s, run, it[k], tu[k], &row, &found, &e), ICA_OK);
        assert_true(found);
        g[k] = row.id;
        store_gen_row_free(&row);
    }
    for (int k = 0; k < 3; k++) {
        struct store_judgment j = {.generation_id = g[k],
                                   .judge = "mt-bench/x",
                                   .prompt_name = "single-v1",
                                   .prompt = "[]",
                                   .raw = k == 0 ? "" : "[[5]]",
                                   .score = k == 0 ? NAN : 5,
                                   .preference = NAN,
                                   .parsed_json = k == 0 ? NULL : "{\"score\":5}",
                                   .error = k == 0 ? "item 82 turn 1: too long" : NULL};
        assert_int_equal(store_judgment_put(s, &j, &e), ICA_OK);
    }
    struct store_judgment ja = {.generation_id = g[2],
                                .judge = "alpaca-eval/x",
                                .prompt = "[]",
                                .raw = "m",
                                .score = NAN,
                                .preference = 1.25,
                                .logprobs_json = "[]"};
    assert_int_equal(store_judgment_put(s, &ja, &e), ICA_OK);
    struct store_judgment_row r;
    bool found = false;
    assert_int_equal(store_judgment_get(s, g[0], "mt-bench/x", &r, &found, &e), ICA_OK);
    assert_true(found);
    assert_string_equal(r.error, "item 82 turn 1: too long");
    assert_null(r.parsed);
    assert_true(isnan(r.score));
    store_judgment_row_clear(&r);
    assert_int_equal(store_judgment_get(s, g[0], "other", &r, &found, &e), ICA_OK);
    assert_false(found);

    struct store_judgment_row *rows = NULL;
    size_t n = 0;
    assert_int_equal(store_judgments_list(s, run, "mt-bench/x", &rows, &n, &e), ICA_OK);
    assert_int_equal(n, 3);
    assert_string_equal(rows[0].item_id, "81");
    assert_int_equal(rows[0].turn, 1);
    assert_string_equal(rows[0].cleaned, "a1");
    assert_string_equal(rows[0].parsed, "{\"score\":5}");
    assert_true(rows[0].score == 5);
    assert_int_equal(rows[1].turn, 2);
    assert_string_equal(rows[2].item_id, "82");
    assert_string_equal(rows[2].item_data, "{\"question_id\":82}");
    assert_non_null(rows[2].error);
    store_judgment_rows_free(rows, n);
    assert_int_equal(store_judgments_list(s, run, NULL, &rows, &n, &e), ICA_OK);
    assert_int_equal(n, 4);
    assert_string_equal(rows[0].judge, "alpaca-eval/x"); /* ordered by judge */
    assert_true(rows[0].preference == 1.25);
    store_judgment_rows_free(rows, n);

    struct store_run_row *runs = NULL;
    assert_int_equal(store_runs_list(s, "answer", &runs, &n, &e), ICA_OK);
    assert_int_equal(n, 1);
    assert_int_equal(runs[0].id, run);
    store_run_rows_free(runs, n);
    assert_int_equal(store_runs_list(s, "judge", &runs, &n, &e), ICA_OK);
    assert_int_equal(n, 0);
    store_run_rows_free(runs, n);
    struct store_item_row *items = NULL;
    assert_int_equal(store_items_list(s, run, &items, &n, &e), ICA_OK);
    assert_int_equal(n, 2);
    assert_string_equal(items[0].item_id, "81");
    store_item_rows_free(items, n);
    store_close(s);

    /* a schema-1 store (no parsed/error columns) is upgraded on open */
    const char *old = subdir("schema1");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", old, STORE_DB_NAME);
    mkdir(old, 0777);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "CREATE TABLE judgments(id INTEGER PRIMARY KEY, generation_id INTEGER NOT "
                     "NULL, judge TEXT NOT NULL, prompt_name TEXT, prompt TEXT NOT NULL, raw TEXT "
                     "NOT NULL, score REAL, preference REAL, logprobs TEXT, created_at REAL NOT "
                     "NULL, UNIQUE(generation_id, judge)) STRICT; PRAGMA user_version=1;",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(store_open(old, &s, &e), ICA_OK);
    store_close(s);
    assert_int_equal(store_open(old, &s, &e), ICA_OK); /* reopening does not migrate again */
    store_close(s);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT parsed, error FROM judgments", -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), STORE_SCHEMA_VERSION);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void test_crash_safety(void **state) {
    (void)state;
    const char *dir = subdir("crash");
    struct ica_error e = {0};
    struct store *s = NULL;
    assert_int_equal(store_open(dir, &s, &e), ICA_OK);
    struct store_run_info ri = info("{\"crash\":1}");
    int64_t run = 0;
    assert_int_equal(store_run_open(s, &ri, &run, NULL, NULL, &e), ICA_OK);
    for (int i = 0; i < 50; i++) {
        char id[16];
        snprintf(id, sizeof id, "%d", i);
        assert_int_equal(store_item_put(s, run, id, i, "{}", &e), ICA_OK);
    }
    store_close(s);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        struct store *cs = NULL;
        if (store_open(dir, &cs, NULL) != ICA_OK)
            _exit(3);
        for (int i = 0; i < 50; i++) {
            char id[16];
            snprintf(id, sizeof id, "%d", i);
            put_gen(cs, run, id, 1, "some output text");
            if (write(fds[1], "x", 1) != 1) /* tell the parent: committed */
                _exit(4);
            if (i == 9)
                for (;;) /* wait to be killed with generation 10 done */
                    pause();
        }
        _exit(0);
    }
    close(fds[1]);
    char buf[16];
    int got = 0;
    while (got < 10) {
        ssize_t r = read(fds[0], buf, 1);
        assert_true(r == 1);
        got++;
    }
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    close(fds[0]);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_int_equal(store_open(dir, &s, &e), ICA_OK);
    int64_t run2 = 0;
    assert_int_equal(store_run_open(s, &ri, &run2, NULL, NULL, &e), ICA_OK);
    assert_int_equal(run2, run);
    int64_t n = 0;
    assert_int_equal(store_generation_count(s, run, &n, &e), ICA_OK);
    assert_int_equal(n, 10);
    store_close(s);
}

static void test_file_hash_cache(void **state) {
    (void)state;
    struct ica_error e = {0};
    struct store *s = NULL;
    assert_int_equal(store_open(subdir("hash"), &s, &e), ICA_OK);
    char path[4096];
    snprintf(path, sizeof path, "%s/model.bin", tu_tmpdir());
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fputs("abc", fp);
    fclose(fp);
    char hex[65];
    bool cached = true;
    assert_int_equal(store_file_sha256(s, path, hex, &cached, &e), ICA_OK);
    assert_false(cached);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(store_file_sha256(s, path, hex, &cached, &e), ICA_OK);
    assert_true(cached);
    fp = fopen(path, "wb"); /* new size: hashed again */
    fputs("abcd", fp);
    fclose(fp);
    assert_int_equal(store_file_sha256(s, path, hex, &cached, &e), ICA_OK);
    assert_false(cached);
    assert_string_equal(hex, "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589");
    assert_int_not_equal(store_file_sha256(s, "/nonexistent/x", hex, &cached, &e), ICA_OK);
    store_close(s);
}

/* ---- downloads against a local server ---- */

#define PAYLOAD 200000
static unsigned char g_payload[PAYLOAD];
static int g_requests, g_range_requests, g_drop_first;

struct body {
    size_t start, end, sent, limit;
};

static ssize_t reader(void *cls, uint64_t pos, char *buf, size_t max) {
    struct body *b = cls;
    size_t at = b->start + (size_t)pos;
    if (b->limit && (size_t)pos >= b->limit)
        return MHD_CONTENT_READER_END_WITH_ERROR; /* drop the connection mid-body */
    if (at >= b->end)
        return MHD_CONTENT_READER_END_OF_STREAM;
    size_t n = b->end - at < max ? b->end - at : max;
    if (b->limit && (size_t)pos + n > b->limit)
        n = b->limit - (size_t)pos;
    memcpy(buf, g_payload + at, n);
    return (ssize_t)n;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls) {
    (void)cls;
    (void)method;
    (void)version;
    (void)upload;
    (void)upload_size;
    (void)con_cls;
    g_requests++;
    if (strcmp(url, "/model.gguf")) {
        struct MHD_Response *r =
            MHD_create_response_from_buffer(9, (void *)"not found", MHD_RESPMEM_PERSISTENT);
        enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_NOT_FOUND, r);
        MHD_destroy_response(r);
        return ret;
    }
    struct body *b = calloc(1, sizeof *b);
    b->end = PAYLOAD;
    unsigned code = MHD_HTTP_OK;
    const char *range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Range");
    unsigned long long from = 0;
    if (range && sscanf(range, "bytes=%llu-", &from) == 1 && from < PAYLOAD) {
        g_range_requests++;
        b->start = (size_t)from;
        code = MHD_HTTP_PARTIAL_CONTENT;
    }
    if (g_drop_first && g_requests == 1)
        b->limit = PAYLOAD / 3;
    struct MHD_Response *r =
        MHD_create_response_from_callback(b->end - b->start, 32768, reader, b, free);
    if (code == MHD_HTTP_PARTIAL_CONTENT) {
        char cr[96];
        snprintf(cr, sizeof cr, "bytes %zu-%d/%d", b->start, PAYLOAD - 1, PAYLOAD);
        MHD_add_response_header(r, "Content-Range", cr);
    }
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static struct MHD_Daemon *start_server(uint16_t *port) {
    struct MHD_Daemon *d =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                         &handler, NULL, MHD_OPTION_SOCK_ADDR, NULL, MHD_OPTION_END);
    if (!d)
        return NULL;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    *port = di ? di->port : 0;
    return d;
}

static void test_download(void **state) {
    (void)state;
    for (size_t i = 0; i < PAYLOAD; i++)
        g_payload[i] = (unsigned char)(i * 7919 >> 3);
    char want[65];
    store_sha256_hex(g_payload, PAYLOAD, want);
    uint16_t port = 0;
    struct MHD_Daemon *d = start_server(&port);
    if (!d || !port) {
        if (d)
            MHD_stop_daemon(d);
        skip();
    }
    char url[128], dest[4096], part[4200];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/model.gguf", (unsigned)port);
    snprintf(dest, sizeof dest, "%s/dl.gguf", tu_tmpdir());
    snprintf(part, sizeof part, "%s.part", dest);
    struct ica_error e = {0};
    char got[65];
    struct stat st;

    /* the first connection drops after a third of the file: resumed with Range */
    g_requests = g_range_requests = 0;
    g_drop_first = 1;
    struct store_download_opts o = {.url = url, .dest = dest, .sha256 = want, .max_attempts = 4};
    assert_int_equal(store_download(&o, got, &e), ICA_OK);
    assert_string_equal(got, want);
    assert_true(g_requests >= 2);
    assert_true(g_range_requests >= 1);
    size_t len = 0;
    unsigned char *data = tu_read_file(dest, &len);
    assert_non_null(data);
    assert_int_equal(len, PAYLOAD);
    assert_memory_equal(data, g_payload, PAYLOAD);
    free(data);
    assert_int_not_equal(stat(part, &st), 0);
    unlink(dest);

    /* a wrong checksum: error naming both hashes, nothing kept as valid */
    g_requests = g_range_requests = 0;
    g_drop_first = 0;
    o.sha256 = "0000000000000000000000000000000000000000000000000000000000000000";
    assert_int_equal(store_download(&o, got, &e), ICA_ERR_FORMAT);
    assert_non_null(strstr(e.msg, want));
    assert_non_null(strstr(e.msg, "sha256 mismatch"));
    assert_int_not_equal(stat(dest, &st), 0);
    assert_int_not_equal(stat(part, &st), 0);

    /* an interrupted earlier download (a .part) is resumed, not restarted */
    FILE *fp = fopen(part, "wb");
    assert_non_null(fp);
    fwrite(g_payload, 1, 12345, fp);
    fclose(fp);
    g_requests = g_range_requests = 0;
    o.sha256 = want;
    assert_int_equal(store_download(&o, got, &e), ICA_OK);
    assert_int_equal(g_range_requests, 1);
    assert_int_equal(stat(dest, &st), 0);
    assert_int_equal(st.st_size, PAYLOAD);
    unlink(dest);

    /* 404: a clear error, no file */
    snprintf(url, sizeof url, "http://127.0.0.1:%u/missing.gguf", (unsigned)port);
    o.url = url;
    assert_int_equal(store_download(&o, got, &e), ICA_ERR_NOTFOUND);
    assert_non_null(strstr(e.msg, "404"));
    assert_int_not_equal(stat(dest, &st), 0);
    MHD_stop_daemon(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256),       cmocka_unit_test(test_runs_and_generations),
        cmocka_unit_test(test_crash_safety), cmocka_unit_test(test_file_hash_cache),
        cmocka_unit_test(test_download),     cmocka_unit_test(test_judgments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
