/* libFuzzer target: the KV cache file reader (kv_cache_load_mem).
 * First byte: mode. Mode 0: the rest is a whole file image. Otherwise the
 * rest edits a valid file built at start-up ((u16 offset, u8 xor) triples,
 * then an optional cut), and mode bits 2..4 recompute the header, token and
 * payload checksums so the fuzzer gets past them to the later checks and the
 * insertion. A rejected image must come with a message; an accepted one is
 * read back in full. */
#include "icalign/kv.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#define NTOK 11

static const uint8_t k_hash[32] = {1, 2, 3, 4, 5, 6, 7, 8};
static const struct kv_file_key k_key = {k_hash, sizeof k_hash};
static int32_t g_tok[NTOK];
static uint8_t *g_base;
static size_t g_base_len;
static struct kv_config g_cfg;
static volatile uint64_t g_sink;

static struct kv_cache *mk(void) {
    struct kv_cache *c = NULL;
    struct ica_error err = {0};
    if (kv_cache_new(&g_cfg, &c, &err) != ICA_OK)
        abort();
    return c;
}

/* A valid file for g_tok, written once through kv_cache_save. */
static void init(void) {
    g_cfg = kv_default_config();
    g_cfg.n_layer = 2;
    g_cfg.n_head_kv = 1;
    g_cfg.head_dim = 2;
    g_cfg.head_dim_v = 3;
    g_cfg.block_tokens = 4;
    for (int i = 0; i < NTOK; i++)
        g_tok[i] = 100 + i * 3;
    struct kv_cache *c = mk();
    struct kv_seq *s = NULL;
    struct ica_error err = {0};
    size_t nc;
    if (kv_seq_new(c, g_tok, NTOK, NTOK, &s, &nc, &err) || kv_seq_reserve(s, NTOK, &err))
        abort();
    for (int p = 0; p < NTOK; p++)
        for (int l = 0; l < 2; l++) {
            memset(kv_seq_k(s, l, (size_t)p), p + l, 2 * 2);
            memset(kv_seq_v(s, l, (size_t)p), 0x40 + p + l, 3 * 2);
        }
    if (kv_seq_commit(s, g_tok, NTOK, &err))
        abort();
    kv_seq_free(s);
    char dir[] = "/tmp/fuzz_kv_XXXXXX";
    if (!mkdtemp(dir) || kv_cache_save(c, dir, &k_key, g_tok, NTOK, &err))
        abort();
    kv_cache_free(c);
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[512] = "";
    while (d && (de = readdir(d)) != NULL)
        if (strstr(de->d_name, ".icakv"))
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
    if (d)
        closedir(d);
    FILE *f = fopen(path, "rb");
    if (!f)
        abort();
    g_base = malloc(1 << 16);
    g_base_len = fread(g_base, 1, 1 << 16, f);
    fclose(f);
    if (unlink(path) != 0 || rmdir(dir) != 0 || g_base_len < 256)
        abort();
}

static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void try_load(const uint8_t *img, size_t len, const int32_t *tok, size_t n) {
    struct kv_cache *c = mk();
    struct kv_load_result res;
    struct ica_error err = {0};
    int rc = kv_cache_load_mem(c, img, len, "fuzz.icakv", &k_key, tok, n, &res, &err);
    if (rc != ICA_OK) {
        if (err.msg[0] == '\0')
            abort();
    } else if (res.n_ignored) {
        if (res.n_loaded || res.warning.msg[0] == '\0')
            abort();
    } else if (res.n_loaded) {
        /* Read every loaded position back (ASan checks the bounds). */
        struct kv_seq *s = NULL;
        size_t nc = 0, nids = tok ? n : res.n_loaded;
        int32_t *ids = malloc(nids * sizeof *ids + 1);
        if (!ids)
            abort();
        if (tok)
            memcpy(ids, tok, n * sizeof *tok);
        else
            memcpy(ids, img + 256, nids * sizeof *ids); /* the file's ids, checked */
        if (kv_seq_new(c, ids, nids, nids, &s, &nc, &err) != ICA_OK || nc < res.n_loaded)
            abort();
        for (size_t p = 0; p < nc; p++)
            for (int l = 0; l < g_cfg.n_layer; l++) {
                const uint8_t *k = kv_seq_k(s, l, p), *v = kv_seq_v(s, l, p);
                g_sink += k[0] + k[3] + v[0] + v[5];
            }
        kv_seq_free(s);
        free(ids);
        struct kv_stats st;
        kv_cache_stats(c, &st);
        if (st.tree_tokens < res.n_loaded)
            abort();
    }
    kv_cache_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_base)
        init();
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    if ((mode & 3) == 0) {
        try_load(data, size, NULL, 0);
        try_load(data, size, g_tok, NTOK);
        return 0;
    }
    uint8_t *img = malloc(g_base_len);
    if (!img)
        return 0;
    memcpy(img, g_base, g_base_len);
    size_t len = g_base_len, i = 0;
    for (; i + 3 <= size && i < 3 * 64; i += 3) {
        size_t at = ((size_t)data[i] | (size_t)data[i + 1] << 8) % g_base_len;
        img[at] ^= data[i + 2];
    }
    if (i + 2 <= size && (mode & 0x80))
        len = ((size_t)data[i] | (size_t)data[i + 1] << 8) % (g_base_len + 1);
    if (len >= 256) {
        uint64_t ntok = get64(img + 112), tokoff = get64(img + 136), payoff = get64(img + 144);
        if ((mode & 8) && tokoff <= len && ntok <= (len - tokoff) / 4)
            put64(img + 160, XXH3_64bits(img + tokoff, 4 * ntok));
        if ((mode & 16) && payoff <= len)
            put64(img + 168, XXH3_64bits(img + payoff, len - payoff));
        if (mode & 4)
            put64(img + 248, XXH3_64bits(img, 248));
    }
    try_load(img, len, (mode & 0x40) ? NULL : g_tok, NTOK);
    free(img);
    return 0;
}
