/* kv persistence: save/load round trip with identical values, choice of the
 * longest usable file, and every kind of corrupt or mismatched file ignored
 * with a message, never used. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kv_testutil.h"
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

static const uint8_t k_hash[32] = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9};
static const uint8_t k_other[32] = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 5};
/* Same first 8 bytes (same file names), another model. */
static const uint8_t k_close[32] = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 10};
static const struct kv_file_key k_key = {k_hash, sizeof k_hash};

static int32_t g_tok[64];

static struct kv_cache *mk(const struct kv_config *cfg) {
    struct kv_cache *c = NULL;
    struct ica_error err = {0};
    if (kv_cache_new(cfg, &c, &err) != ICA_OK)
        fail_msg("kv_cache_new: %s", err.msg);
    return c;
}

/* Computes and commits tok[0..n) in c. */
static void fill(struct kv_cache *c, const struct kv_config *cfg, const int32_t *tok, size_t n) {
    struct kv_seq *s = NULL;
    struct ica_error err = {0};
    size_t nc;
    assert_int_equal(kv_seq_new(c, tok, n, n, &s, &nc, &err), ICA_OK);
    assert_int_equal(kv_seq_reserve(s, n - nc, &err), ICA_OK);
    kvt_write(s, cfg, tok, nc, n);
    assert_int_equal(kv_seq_commit(s, tok, n, &err), ICA_OK);
    kv_seq_free(s);
}

/* The cached prefix of tok[0..n) in c has the reference values; returns its length. */
static size_t verify(struct kv_cache *c, const struct kv_config *cfg, const int32_t *tok,
                     size_t n) {
    struct kv_seq *s = NULL;
    struct ica_error err = {0};
    size_t nc;
    assert_int_equal(kv_seq_new(c, tok, n, n, &s, &nc, &err), ICA_OK);
    assert_int_equal(kvt_check(s, cfg, tok, 0, nc), nc);
    kv_seq_free(s);
    return nc;
}

static void fresh_dir(char *buf, size_t bufsz, const char *name) {
    snprintf(buf, bufsz, "%s/%s", tu_tmpdir(), name);
    mkdir(buf, 0777);
    DIR *d = opendir(buf);
    assert_non_null(d);
    struct dirent *de;
    char p[2048];
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", buf, de->d_name);
            remove(p);
        }
    closedir(d);
}

/* The only .icakv file in dir (path into buf); fails if not exactly one. */
static void only_file(const char *dir, char *buf, size_t bufsz) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)) != NULL)
        if (strstr(de->d_name, ".icakv")) {
            snprintf(buf, bufsz, "%s/%s", dir, de->d_name);
            n++;
        }
    closedir(d);
    assert_int_equal(n, 1);
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void test_round_trip(void **state) {
    (void)state;
    for (int t = 0; t < 2; t++) {
        struct kv_config cfg = kvt_config(t ? 5 : 4, t ? ICA_F32 : ICA_F16, 0);
        struct kv_cache *c = mk(&cfg);
        struct ica_error err = {0};
        char dir[1024], path[2048];
        fresh_dir(dir, sizeof dir, t ? "rt1" : "rt0");
        fill(c, &cfg, g_tok, 23);
        assert_int_equal(kv_cache_save(c, dir, &k_key, g_tok, 30, &err), ICA_ERR_NOTFOUND);
        assert_non_null(strstr(err.msg, "only 23 of the 30"));
        assert_int_equal(kv_cache_save(c, dir, &k_key, g_tok, 23, &err), ICA_OK);
        assert_int_equal(kv_cache_save(c, dir, &k_key, g_tok, 23, &err), ICA_OK); /* replaces */
        only_file(dir, path, sizeof path);
        assert_non_null(strstr(path, t ? "deadbeef01020304-f32-" : "deadbeef01020304-f16-"));
        struct kv_stats st;
        kv_cache_stats(c, &st);
        assert_int_equal(st.tokens_requested, 23); /* saving is not a request */
        kv_cache_free(c);

        /* A fresh process: the file gives back exactly the same values. */
        c = mk(&cfg);
        struct kv_load_result res;
        assert_int_equal(kv_cache_load(c, dir, &k_key, g_tok, 40, &res, &err), ICA_OK);
        assert_int_equal(res.n_loaded, 23);
        assert_int_equal(res.n_cached, 23);
        assert_int_equal(res.n_ignored, 0);
        assert_int_equal(res.warning.code, ICA_OK);
        assert_string_equal(res.path, path);
        assert_int_equal(verify(c, &cfg, g_tok, 40), 23);
        /* Already cached: nothing to do. */
        assert_int_equal(kv_cache_load(c, dir, &k_key, g_tok, 23, &res, &err), ICA_OK);
        assert_int_equal(res.n_loaded, 0);
        assert_int_equal(res.n_cached, 23);
        kv_cache_free(c);

        /* Token ids are verified: only the common prefix is used. */
        c = mk(&cfg);
        int32_t other[23];
        memcpy(other, g_tok, sizeof other);
        other[10] = 999;
        assert_int_equal(kv_cache_load(c, dir, &k_key, other, 23, &res, &err), ICA_OK);
        assert_int_equal(res.n_loaded, 10);
        assert_int_equal(verify(c, &cfg, other, 23), 10);
        assert_int_equal(kv_cache_load(c, dir, &k_key, g_tok, 23, &res, &err), ICA_OK);
        assert_int_equal(res.n_loaded, 13);
        assert_int_equal(verify(c, &cfg, g_tok, 23), 23);
        other[0] = 998;
        assert_int_equal(kv_cache_load(c, dir, &k_key, other, 23, &res, &err), ICA_OK);
        assert_int_equal(res.n_loaded, 0);
        kv_cache_free(c);

        /* Another model's files are not even opened. */
        c = mk(&cfg);
        struct kv_file_key ok = {k_other, sizeof k_other};
        assert_int_equal(kv_cache_load(c, dir, &ok, g_tok, 23, &res, &err), ICA_OK);
        assert_int_equal(res.n_loaded, 0);
        assert_int_equal(res.n_ignored, 0);
        struct kv_file_key ck = {k_close, sizeof k_close};
        assert_int_equal(kv_cache_load(c, dir, &ck, g_tok, 23, &res, &err), ICA_OK);
        assert_int_equal(res.n_loaded, 0);
        assert_int_equal(res.n_ignored, 1);
        assert_non_null(strstr(res.warning.msg, "model hash differs"));
        assert_int_equal(kv_cache_lookup(c, g_tok, 23), 0);
        /* A missing directory is no error. */
        assert_int_equal(kv_cache_load(c, "/nonexistent/kv", &k_key, g_tok, 23, &res, &err),
                         ICA_OK);
        assert_int_equal(res.n_loaded, 0);
        kv_cache_free(c);

        /* A budget too small for the file's prefix is the reserve's error. */
        struct kv_config small = cfg;
        small.mem_budget = 2 * kv_block_bytes(&cfg);
        c = mk(&small);
        assert_int_equal(kv_cache_load(c, dir, &k_key, g_tok, 23, &res, &err), ICA_ERR_RANGE);
        kv_cache_free(c);
    }
}

/* Several files: the longest usable one wins; a corrupt one is skipped. */
static void test_choose_longest(void **state) {
    (void)state;
    struct kv_config cfg = kvt_config(4, ICA_F16, 0);
    struct kv_cache *c = mk(&cfg);
    struct ica_error err = {0};
    char dir[1024];
    fresh_dir(dir, sizeof dir, "longest");
    fill(c, &cfg, g_tok, 40);
    assert_int_equal(kv_cache_save(c, dir, &k_key, g_tok, 9, &err), ICA_OK);
    assert_int_equal(kv_cache_save(c, dir, &k_key, g_tok, 17, &err), ICA_OK);
    assert_int_equal(kv_cache_save(c, dir, &k_key, g_tok, 40, &err), ICA_OK);
    kv_cache_free(c);
    c = mk(&cfg);
    struct kv_load_result res;
    assert_int_equal(kv_cache_load(c, dir, &k_key, g_tok, 30, &res, &err), ICA_OK);
    assert_int_equal(res.n_loaded, 30); /* the 40-token file, its first 30 */
    assert_int_equal(verify(c, &cfg, g_tok, 30), 30);
    kv_cache_free(c);

    /* Corrupt the payload of the 40-token file: the 17-token one is used. */
    DIR *d = opendir(dir);
    struct dirent *de;
    char p[2048];
    int corrupted = 0;
    while ((de = readdir(d)) != NULL) {
        if (!strstr(de->d_name, ".icakv"))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        size_t len = 0;
        uint8_t *b = tu_read_file(p, &len);
        assert_non_null(b);
        uint64_t ntok = 0;
        memcpy(&ntok, b + 112, 8);
        if (ntok == 40) {
            b[len - 1] ^= 0x40;
            write_file(p, b, len);
            corrupted = 1;
        }
        free(b);
    }
    closedir(d);
    assert_true(corrupted);
    c = mk(&cfg);
    assert_int_equal(kv_cache_load(c, dir, &k_key, g_tok, 30, &res, &err), ICA_OK);
    assert_int_equal(res.n_loaded, 17);
    assert_int_equal(res.n_ignored, 1);
    assert_non_null(strstr(res.warning.msg, "payload checksum"));
    assert_int_equal(verify(c, &cfg, g_tok, 30), 17);
    kv_cache_free(c);
}

/* ==== Corruption ==== */

static void put32(uint8_t *p, uint32_t v) {
    memcpy(p, &v, 4); /* little-endian hosts only, like the format's test */
}
static void put64(uint8_t *p, uint64_t v) {
    memcpy(p, &v, 8);
}
static void fix_header(uint8_t *b) {
    put64(b + 248, XXH3_64bits(b, 248));
}

struct corrupt_case {
    const char *name;
    const char *expect; /* in the warning */
    void (*apply)(uint8_t *b, size_t *len);
};

static void c_empty(uint8_t *b, size_t *len) {
    (void)b;
    *len = 0;
}
static void c_short_header(uint8_t *b, size_t *len) {
    (void)b;
    *len = 255;
}
static void c_short_payload(uint8_t *b, size_t *len) {
    (void)b;
    *len -= 100;
}
static void c_extended(uint8_t *b, size_t *len) {
    b[*len] = 0;
    *len += 1;
}
static void c_magic(uint8_t *b, size_t *len) {
    (void)len;
    b[1] ^= 1;
}
static void c_version(uint8_t *b, size_t *len) {
    (void)len;
    put32(b + 8, 2);
    fix_header(b);
}
static void c_header_sum(uint8_t *b, size_t *len) {
    (void)len;
    b[60] ^= 0x10;
}
static void c_byte_order(uint8_t *b, size_t *len) {
    (void)len;
    put32(b + 36, 0x04030201);
    fix_header(b);
}
static void c_model(uint8_t *b, size_t *len) {
    (void)len;
    b[44 + 31] ^= 1;
    fix_header(b);
}
static void c_model_len(uint8_t *b, size_t *len) {
    (void)len;
    put32(b + 40, 65);
    fix_header(b);
}
static void c_type(uint8_t *b, size_t *len) {
    (void)len;
    put32(b + 12, ICA_F32);
    fix_header(b);
}
static void c_layers(uint8_t *b, size_t *len) {
    (void)len;
    put32(b + 16, 3);
    fix_header(b);
}
static void c_heads(uint8_t *b, size_t *len) {
    (void)len;
    put32(b + 20, 1);
    fix_header(b);
}
static void c_head_dim_v(uint8_t *b, size_t *len) {
    (void)len;
    put32(b + 28, 4);
    fix_header(b);
}
static void c_block_tokens(uint8_t *b, size_t *len) {
    (void)len;
    put32(b + 32, 8);
    fix_header(b);
}
static void c_block_bytes(uint8_t *b, size_t *len) {
    (void)len;
    put64(b + 128, 12345);
    fix_header(b);
}
static void c_n_blocks(uint8_t *b, size_t *len) {
    (void)len;
    put64(b + 120, 99);
    fix_header(b);
}
static void c_n_tokens_zero(uint8_t *b, size_t *len) {
    (void)len;
    put64(b + 112, 0);
    put64(b + 120, 0);
    fix_header(b);
}
static void c_n_tokens_huge(uint8_t *b, size_t *len) {
    (void)len;
    put64(b + 112, UINT64_MAX - 2);
    put64(b + 120, (UINT64_MAX - 2) / 4 + 1);
    fix_header(b);
}
static void c_payload_offset(uint8_t *b, size_t *len) {
    (void)len;
    put64(b + 144, 0);
    fix_header(b);
}
static void c_tokens_offset(uint8_t *b, size_t *len) {
    (void)len;
    put64(b + 136, 1 << 20);
    fix_header(b);
}
static void c_file_size(uint8_t *b, size_t *len) {
    put64(b + 152, *len + 4096);
    fix_header(b);
    /* and the file really is that long, with the payload where it was */
    memset(b + *len, 0, 4096);
    *len += 4096;
}
static void c_token_id(uint8_t *b, size_t *len) {
    (void)len;
    b[256 + 4 * 3] ^= 1;
}
static void c_payload(uint8_t *b, size_t *len) {
    (void)len;
    b[4096 + 77] ^= 0x80;
}
static void c_payload_last(uint8_t *b, size_t *len) {
    b[*len - 1] ^= 1; /* an unused slot of the last block: still checked */
}

static const struct corrupt_case k_cases[] = {
    {"empty", "truncated", c_empty},
    {"short header", "truncated", c_short_header},
    {"short payload", "truncated or extended", c_short_payload},
    {"extended", "truncated or extended", c_extended},
    {"magic", "bad magic", c_magic},
    {"version", "version 2", c_version},
    {"header checksum", "header checksum", c_header_sum},
    {"byte order", "byte order", c_byte_order},
    {"model hash", "model hash", c_model},
    {"model hash length", "model hash", c_model_len},
    {"kv type", "kv type 0", c_type},
    {"n_layer", "n_layer 3", c_layers},
    {"n_head_kv", "n_head_kv 1", c_heads},
    {"head_dim_v", "head_dim_v 4", c_head_dim_v},
    {"block_tokens", "block_tokens 8", c_block_tokens},
    {"block_bytes", "block_bytes 12345", c_block_bytes},
    {"n_blocks", "disagree", c_n_blocks},
    {"no tokens", "disagree", c_n_tokens_zero},
    {"huge n_tokens", "disagree", c_n_tokens_huge},
    {"payload_offset", "do not fit", c_payload_offset},
    {"tokens_offset", "do not fit", c_tokens_offset},
    {"file_size", "do not fit", c_file_size},
    {"token id", "token ids checksum", c_token_id},
    {"payload", "payload checksum", c_payload},
    {"payload last byte", "payload checksum", c_payload_last},
};

static void test_corrupt_files(void **state) {
    (void)state;
    struct kv_config cfg = kvt_config(4, ICA_F16, 0);
    struct kv_cache *c = mk(&cfg);
    struct ica_error err = {0};
    char dir[1024], path[2048];
    fresh_dir(dir, sizeof dir, "corrupt");
    fill(c, &cfg, g_tok, 21);
    assert_int_equal(kv_cache_save(c, dir, &k_key, g_tok, 21, &err), ICA_OK);
    kv_cache_free(c);
    only_file(dir, path, sizeof path);
    size_t len0 = 0;
    uint8_t *orig = tu_read_file(path, &len0);
    assert_non_null(orig);
    uint8_t *b = malloc(len0 + 8192);
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++) {
        const struct corrupt_case *k = &k_cases[i];
        memcpy(b, orig, len0);
        size_t len = len0;
        k->apply(b, &len);
        write_file(path, b, len);
        c = mk(&cfg);
        struct kv_load_result res;
        assert_int_equal(kv_cache_load(c, dir, &k_key, g_tok, 21, &res, &err), ICA_OK);
        if (res.n_loaded != 0 || res.n_ignored != 1 || res.warning.code == ICA_OK ||
            !strstr(res.warning.msg, k->expect) || !strstr(res.warning.msg, path) ||
            !strstr(res.warning.msg, "ignored"))
            fail_msg("case %s: loaded %zu, ignored %d, warning \"%s\"", k->name, res.n_loaded,
                     res.n_ignored, res.warning.msg);
        assert_int_equal(kv_cache_lookup(c, g_tok, 21), 0);
        /* The in-memory reader says the same. */
        assert_int_equal(kv_cache_load_mem(c, b, len, "mem", &k_key, g_tok, 21, &res, &err),
                         ICA_OK);
        if (res.n_loaded != 0 || res.n_ignored != 1 || !strstr(res.warning.msg, k->expect))
            fail_msg("case %s (memory): loaded %zu, warning \"%s\"", k->name, res.n_loaded,
                     res.warning.msg);
        kv_cache_free(c);
    }
    /* The untouched file still loads. */
    write_file(path, orig, len0);
    c = mk(&cfg);
    struct kv_load_result res;
    assert_int_equal(kv_cache_load(c, dir, &k_key, g_tok, 21, &res, &err), ICA_OK);
    assert_int_equal(res.n_loaded, 21);
    assert_int_equal(verify(c, &cfg, g_tok, 21), 21);
    kv_cache_free(c);

    /* Random damage: either rejected, or (bytes no check covers, like the
     * padding before the payload) loaded with exactly the right values. */
    uint64_t rng = 12345;
    int loaded = 0, rejected = 0;
    for (int it = 0; it < 400; it++) {
        memcpy(b, orig, len0);
        size_t len = len0;
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        int nflip = 1 + (int)((rng >> 60) & 3);
        for (int f = 0; f < nflip; f++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(rng >> 33) % (it % 2 ? 512 : len0);
            b[at] ^= (uint8_t)(1u << ((rng >> 20) & 7));
        }
        if (it % 7 == 0)
            len = (size_t)(rng >> 35) % len0;
        c = mk(&cfg);
        assert_int_equal(kv_cache_load_mem(c, b, len, "rand", &k_key, g_tok, 21, &res, &err),
                         ICA_OK);
        if (res.n_loaded) {
            assert_int_equal(res.n_ignored, 0);
            assert_int_equal(verify(c, &cfg, g_tok, 21), 21);
            loaded++;
        } else {
            assert_int_equal(res.n_ignored, 1);
            assert_true(res.warning.msg[0] != '\0');
            rejected++;
        }
        kv_cache_free(c);
    }
    assert_true(loaded > 0 && rejected > 0);
    free(b);
    free(orig);
}

/* The file's own ids when the caller gives none (used by the fuzz target). */
static void test_load_mem_own_tokens(void **state) {
    (void)state;
    struct kv_config cfg = kvt_config(4, ICA_F32, 0);
    struct kv_cache *c = mk(&cfg);
    struct ica_error err = {0};
    char dir[1024], path[2048];
    fresh_dir(dir, sizeof dir, "own");
    fill(c, &cfg, g_tok, 13);
    assert_int_equal(kv_cache_save(c, dir, &k_key, g_tok, 13, &err), ICA_OK);
    kv_cache_free(c);
    only_file(dir, path, sizeof path);
    size_t len = 0;
    uint8_t *b = tu_read_file(path, &len);
    c = mk(&cfg);
    struct kv_load_result res;
    assert_int_equal(kv_cache_load_mem(c, b, len, path, &k_key, NULL, 0, &res, &err), ICA_OK);
    assert_int_equal(res.n_loaded, 13);
    assert_int_equal(verify(c, &cfg, g_tok, 13), 13);
    struct kv_file_key bad = {k_hash, 0};
    assert_int_equal(kv_cache_load_mem(c, b, len, path, &bad, NULL, 0, &res, &err), ICA_ERR_ARG);
    kv_cache_free(c);
    free(b);
}

int main(void) {
    for (int i = 0; i < 64; i++)
        g_tok[i] = 3000 + (i * 7919) % 5003;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_choose_longest),
        cmocka_unit_test(test_corrupt_files),
        cmocka_unit_test(test_load_mem_own_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
