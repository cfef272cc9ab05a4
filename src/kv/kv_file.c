/* kv: on-disk copies of cached prefixes (format in kv.h). */
#include "kv_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define HDR_SIZE      256
#define HDR_VERSION   1
#define PAYLOAD_ALIGN 4096
#define HASH_MAX      64
static const char k_magic[8] = {'I', 'C', 'A', 'K', 'V', 'C', '\r', '\n'};

enum {
    O_VERSION = 8,
    O_TYPE = 12,
    O_DIMS = 16, /* n_layer, n_head_kv, head_dim, head_dim_v, block_tokens */
    O_BYTEORDER = 36,
    O_HASHLEN = 40,
    O_HASH = 44,
    O_NTOK = 112,
    O_NBLK = 120,
    O_BLKBYTES = 128,
    O_TOKOFF = 136,
    O_PAYOFF = 144,
    O_FSIZE = 152,
    O_TOKXXH = 160,
    O_PAYXXH = 168,
    O_HDRXXH = 248,
};

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static const char *type_name(enum ica_dtype t) {
    return t == ICA_F16 ? "f16" : "f32";
}

/* "<16 hex of the model hash>-<type>-": files of this model and kv type. */
static void name_prefix(const struct kv_cache *c, const struct kv_file_key *key, char *buf,
                        size_t bufsz) {
    char hex[17];
    size_t n = key->model_hash_len < 8 ? key->model_hash_len : 8;
    for (size_t i = 0; i < 8; i++)
        snprintf(hex + 2 * i, 3, "%02x", i < n ? key->model_hash[i] : 0);
    snprintf(buf, bufsz, "%s-%s-", hex, type_name(c->cfg.elem_type));
}

static uint64_t tokens_xxh3(const int32_t *tok, size_t n) {
    /* Hash the little-endian bytes so that names and checksums agree across hosts. */
    XXH3_state_t *st = XXH3_createState();
    uint64_t h = 0;
    if (!st)
        return 0;
    XXH3_64bits_reset(st);
    uint8_t buf[1024];
    for (size_t i = 0; i < n;) {
        size_t k = 0;
        for (; i < n && k < sizeof buf; i++, k += 4)
            put32(buf + k, (uint32_t)tok[i]);
        XXH3_64bits_update(st, buf, k);
    }
    h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}

static int check_key(const struct kv_file_key *key, struct ica_error *err) {
    if (!key || !key->model_hash || key->model_hash_len == 0 || key->model_hash_len > HASH_MAX)
        return ica_seterr(err, ICA_ERR_ARG, "kv file key: model hash of 1..%d bytes required",
                          HASH_MAX);
    return ICA_OK;
}

/* ==== Save ==== */

static int write_all(FILE *f, const void *p, size_t n, const char *path, struct ica_error *err) {
    if (n && fwrite(p, 1, n, f) != n)
        return ica_seterr(err, ICA_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return ICA_OK;
}

int kv_cache_save(struct kv_cache *c, const char *dir, const struct kv_file_key *key,
                  const int32_t *tokens, size_t n, struct ica_error *err) {
    if (!c || !dir || !tokens || n == 0)
        return ica_seterr(err, ICA_ERR_ARG, "kv_cache_save: NULL argument or no tokens");
    int rc = check_key(key, err);
    if (rc != ICA_OK)
        return rc;
    if (n > (SIZE_MAX - HDR_SIZE - PAYLOAD_ALIGN) / 4)
        return ica_seterr(err, ICA_ERR_RANGE, "kv_cache_save: %zu tokens", n);
    struct kv_seq *s = NULL;
    size_t nc = 0;
    rc = kv_seq_new(c, tokens, n, n, &s, &nc, err);
    if (rc != ICA_OK)
        return rc;
    c->tokens_requested -= n;
    c->tokens_hit -= nc;
    if (nc < n) {
        kv_seq_free(s);
        return ica_seterr(err, ICA_ERR_NOTFOUND,
                          "kv_cache_save: only %zu of the %zu tokens are cached", nc, n);
    }
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        kv_seq_free(s);
        return ica_seterr(err, ICA_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
    }
    char prefix[64], path[4096], tmp[4200];
    name_prefix(c, key, prefix, sizeof prefix);
    uint64_t th = tokens_xxh3(tokens, n);
    int pl = snprintf(path, sizeof path, "%s/%s%016llx.icakv", dir, prefix, (unsigned long long)th);
    if (pl < 0 || (size_t)pl >= sizeof path) {
        kv_seq_free(s);
        return ica_seterr(err, ICA_ERR_ARG, "%s: directory name too long", dir);
    }
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());

    size_t B = c->B, nblk = kv_div_up(n, B);
    size_t tok_end = HDR_SIZE + 4 * n;
    size_t payoff = (tok_end + PAYLOAD_ALIGN - 1) / PAYLOAD_ALIGN * PAYLOAD_ALIGN;
    if (nblk > (SIZE_MAX - payoff) / c->block_bytes) {
        kv_seq_free(s);
        return ica_seterr(err, ICA_ERR_RANGE, "kv_cache_save: file size overflows");
    }
    size_t fsize = payoff + nblk * c->block_bytes;
    uint8_t hdr[HDR_SIZE];
    memset(hdr, 0, sizeof hdr);
    uint8_t *buf = malloc(c->block_bytes > PAYLOAD_ALIGN ? c->block_bytes : PAYLOAD_ALIGN);
    XXH3_state_t *st = XXH3_createState();
    FILE *f = NULL;
    if (!buf || !st) {
        rc = ica_seterr(err, ICA_ERR_NOMEM, "kv_cache_save: out of memory");
        goto out;
    }
    f = fopen(tmp, "wb");
    if (!f) {
        rc = ica_seterr(err, ICA_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto out;
    }
    /* Header placeholder, token ids, padding; the header is rewritten last. */
    rc = write_all(f, hdr, HDR_SIZE, tmp, err);
    for (size_t i = 0; rc == ICA_OK && i < n;) {
        size_t k = 0;
        for (; i < n && k + 4 <= PAYLOAD_ALIGN; i++, k += 4)
            put32(buf + k, (uint32_t)tokens[i]);
        rc = write_all(f, buf, k, tmp, err);
    }
    memset(buf, 0, PAYLOAD_ALIGN);
    if (rc == ICA_OK)
        rc = write_all(f, buf, payoff - tok_end, tmp, err);
    XXH3_64bits_reset(st);
    for (size_t bi = 0; rc == ICA_OK && bi < nblk; bi++) {
        memcpy(buf, s->tab[bi]->data, c->block_bytes);
        size_t used = (bi + 1) * B <= n ? B : n - bi * B;
        if (used < B) /* zero the unused slots: files are deterministic */
            for (int l = 0; l < c->cfg.n_layer; l++) {
                size_t r = (size_t)l * B;
                memset(buf + (r + used) * c->kdim * c->esz, 0, (B - used) * c->kdim * c->esz);
                memset(buf + c->v_off + (r + used) * c->vdim * c->esz, 0,
                       (B - used) * c->vdim * c->esz);
            }
        XXH3_64bits_update(st, buf, c->block_bytes);
        rc = write_all(f, buf, c->block_bytes, tmp, err);
    }
    if (rc != ICA_OK)
        goto out;
    memcpy(hdr, k_magic, 8);
    put32(hdr + O_VERSION, HDR_VERSION);
    put32(hdr + O_TYPE, (uint32_t)c->cfg.elem_type);
    put32(hdr + O_DIMS, (uint32_t)c->cfg.n_layer);
    put32(hdr + O_DIMS + 4, (uint32_t)c->cfg.n_head_kv);
    put32(hdr + O_DIMS + 8, (uint32_t)c->cfg.head_dim);
    put32(hdr + O_DIMS + 12, (uint32_t)c->cfg.head_dim_v);
    put32(hdr + O_DIMS + 16, (uint32_t)c->cfg.block_tokens);
    uint32_t bo = 0x01020304;
    memcpy(hdr + O_BYTEORDER, &bo, 4);
    put32(hdr + O_HASHLEN, (uint32_t)key->model_hash_len);
    memcpy(hdr + O_HASH, key->model_hash, key->model_hash_len);
    put64(hdr + O_NTOK, n);
    put64(hdr + O_NBLK, nblk);
    put64(hdr + O_BLKBYTES, c->block_bytes);
    put64(hdr + O_TOKOFF, HDR_SIZE);
    put64(hdr + O_PAYOFF, payoff);
    put64(hdr + O_FSIZE, fsize);
    put64(hdr + O_TOKXXH, tokens_xxh3(tokens, n));
    put64(hdr + O_PAYXXH, XXH3_64bits_digest(st));
    put64(hdr + O_HDRXXH, XXH3_64bits(hdr, O_HDRXXH));
    if (fseek(f, 0, SEEK_SET) != 0) {
        rc = ica_seterr(err, ICA_ERR_IO, "%s: seek failed: %s", tmp, strerror(errno));
        goto out;
    }
    rc = write_all(f, hdr, HDR_SIZE, tmp, err);
    if (rc == ICA_OK && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        rc = ica_seterr(err, ICA_ERR_IO, "%s: flush failed: %s", tmp, strerror(errno));
    if (fclose(f) != 0 && rc == ICA_OK)
        rc = ica_seterr(err, ICA_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    f = NULL;
    if (rc == ICA_OK && rename(tmp, path) != 0)
        rc = ica_seterr(err, ICA_ERR_IO, "%s: rename to %s failed: %s", tmp, path, strerror(errno));
out:
    if (f)
        fclose(f);
    if (rc != ICA_OK)
        unlink(tmp);
    XXH3_freeState(st);
    free(buf);
    kv_seq_free(s);
    return rc;
}

/* ==== Load ==== */

struct file_view {
    size_t n_tokens;    /* in the file */
    size_t n_use;       /* common prefix with the caller's tokens */
    const uint8_t *tok; /* n_tokens × i32 LE */
    const uint8_t *payload;
};

#define BAD(code, ...) (ica_seterr(warn, code, __VA_ARGS__), 1)

/* Checks a file image against the cache and key; with tokens, n_use is the
 * common prefix of the file's ids and tokens[0..n). The payload checksum is
 * verified only when full (it reads the whole file). Returns 0 when usable,
 * else 1 with warn naming the file, field and reason. */
static int file_check(const struct kv_cache *c, const uint8_t *d, size_t size, const char *name,
                      const struct kv_file_key *key, const int32_t *tokens, size_t n, bool full,
                      struct file_view *v, struct ica_error *warn) {
    memset(v, 0, sizeof *v);
    if (size < HDR_SIZE)
        return BAD(ICA_ERR_FORMAT, "%s: truncated: %zu bytes, the header needs %d; ignored", name,
                   size, HDR_SIZE);
    if (memcmp(d, k_magic, 8) != 0)
        return BAD(ICA_ERR_FORMAT, "%s: bad magic (not an icalign KV cache file); ignored", name);
    uint32_t ver = get32(d + O_VERSION);
    if (ver != HDR_VERSION)
        return BAD(ICA_ERR_UNSUPPORTED, "%s: version %u, this build reads version %d; ignored",
                   name, ver, HDR_VERSION);
    if (get64(d + O_HDRXXH) != XXH3_64bits(d, O_HDRXXH))
        return BAD(ICA_ERR_FORMAT, "%s: header checksum mismatch (corrupt header); ignored", name);
    uint32_t bo;
    memcpy(&bo, d + O_BYTEORDER, 4);
    if (bo != 0x01020304)
        return BAD(ICA_ERR_UNSUPPORTED, "%s: written on a host of another byte order; ignored",
                   name);
    uint32_t hl = get32(d + O_HASHLEN);
    if (hl != key->model_hash_len || memcmp(d + O_HASH, key->model_hash, hl) != 0)
        return BAD(ICA_ERR_UNSUPPORTED,
                   "%s: model hash differs from the loaded model's (file of another model); "
                   "ignored",
                   name);
    uint32_t et = get32(d + O_TYPE);
    if (et != (uint32_t)c->cfg.elem_type)
        return BAD(ICA_ERR_UNSUPPORTED, "%s: kv type %u, the cache uses %u (%s); ignored", name, et,
                   (unsigned)c->cfg.elem_type, type_name(c->cfg.elem_type));
    static const char *dim_names[5] = {"n_layer", "n_head_kv", "head_dim", "head_dim_v",
                                       "block_tokens"};
    const int dims[5] = {c->cfg.n_layer, c->cfg.n_head_kv, c->cfg.head_dim, c->cfg.head_dim_v,
                         c->cfg.block_tokens};
    for (int i = 0; i < 5; i++) {
        uint32_t x = get32(d + O_DIMS + 4 * i);
        if (x != (uint32_t)dims[i])
            return BAD(ICA_ERR_UNSUPPORTED, "%s: %s %u, the cache has %d; ignored", name,
                       dim_names[i], x, dims[i]);
    }
    uint64_t ntok = get64(d + O_NTOK), nblk = get64(d + O_NBLK), bb = get64(d + O_BLKBYTES);
    uint64_t tokoff = get64(d + O_TOKOFF), payoff = get64(d + O_PAYOFF), fsize = get64(d + O_FSIZE);
    if (bb != c->block_bytes)
        return BAD(ICA_ERR_FORMAT, "%s: block_bytes %llu, expected %zu; ignored", name,
                   (unsigned long long)bb, c->block_bytes);
    if (ntok == 0 || ntok > (uint64_t)(SIZE_MAX / 8) || nblk != (ntok + c->B - 1) / c->B)
        return BAD(ICA_ERR_FORMAT, "%s: n_tokens %llu and n_blocks %llu disagree; ignored", name,
                   (unsigned long long)ntok, (unsigned long long)nblk);
    if (fsize != size)
        return BAD(ICA_ERR_FORMAT,
                   "%s: truncated or extended: %zu bytes, the header says %llu; ignored", name,
                   size, (unsigned long long)fsize);
    if (tokoff != HDR_SIZE || payoff % PAYLOAD_ALIGN != 0 || payoff < tokoff + 4 * ntok ||
        payoff > size || nblk > (size - payoff) / bb || payoff + nblk * bb != size)
        return BAD(ICA_ERR_FORMAT,
                   "%s: tokens_offset %llu / payload_offset %llu / n_blocks %llu do not fit "
                   "%zu bytes; ignored",
                   name, (unsigned long long)tokoff, (unsigned long long)payoff,
                   (unsigned long long)nblk, size);
    v->n_tokens = (size_t)ntok;
    v->tok = d + tokoff;
    v->payload = d + payoff;
    /* tokens_xxh3 hashes the LE ids, which is exactly the file's bytes. */
    if (get64(d + O_TOKXXH) != XXH3_64bits(v->tok, 4 * v->n_tokens))
        return BAD(ICA_ERR_FORMAT, "%s: token ids checksum mismatch (corrupt); ignored", name);
    if (tokens) {
        size_t m = v->n_tokens < n ? v->n_tokens : n, i = 0;
        while (i < m && (int32_t)get32(v->tok + 4 * i) == tokens[i])
            i++;
        v->n_use = i;
    } else {
        v->n_use = v->n_tokens;
    }
    if (full && get64(d + O_PAYXXH) != XXH3_64bits(v->payload, (size_t)(nblk * bb)))
        return BAD(ICA_ERR_FORMAT, "%s: payload checksum mismatch (corrupt KV data); ignored",
                   name);
    return 0;
}

/* Inserts positions [0, v->n_use) of a checked file into the tree. */
static int insert_view(struct kv_cache *c, const struct file_view *v, const int32_t *tokens,
                       struct kv_load_result *res, struct ica_error *err) {
    size_t n = v->n_use;
    int32_t *own = NULL;
    if (!tokens) {
        own = malloc((n ? n : 1) * sizeof *own);
        if (!own)
            return ica_seterr(err, ICA_ERR_NOMEM, "kv load: out of memory");
        for (size_t i = 0; i < n; i++)
            own[i] = (int32_t)get32(v->tok + 4 * i);
        tokens = own;
    }
    struct kv_seq *s = NULL;
    size_t nc = 0;
    int rc = kv_seq_new(c, tokens, n, n, &s, &nc, err);
    if (rc == ICA_OK) { /* not a request: keep the hit statistics clean */
        c->tokens_requested -= n;
        c->tokens_hit -= nc;
    }
    if (rc == ICA_OK && nc < n)
        rc = kv_seq_reserve(s, n - nc, err);
    if (rc == ICA_OK && nc < n) {
        size_t B = c->B;
        for (size_t bi = nc / B; bi < kv_div_up(n, B); bi++) {
            size_t lo = bi * B > nc ? 0 : nc - bi * B;
            size_t hi = (bi + 1) * B <= n ? B : n - bi * B;
            const uint8_t *src = v->payload + bi * c->block_bytes;
            for (int l = 0; l < c->cfg.n_layer; l++) {
                size_t pos = bi * B + lo;
                size_t rk = ((size_t)l * B + lo) * c->kdim * c->esz;
                size_t rv = c->v_off + ((size_t)l * B + lo) * c->vdim * c->esz;
                memcpy(kv_seq_k(s, l, pos), src + rk, (hi - lo) * c->kdim * c->esz);
                memcpy(kv_seq_v(s, l, pos), src + rv, (hi - lo) * c->vdim * c->esz);
            }
        }
        rc = kv_seq_commit(s, tokens, n, err);
        if (rc == ICA_OK)
            res->n_loaded = n - nc;
    }
    kv_seq_free(s);
    free(own);
    return rc;
}

static void res_init(struct kv_load_result *res) {
    memset(res, 0, sizeof *res);
}

int kv_cache_load_mem(struct kv_cache *c, const void *data, size_t size, const char *name,
                      const struct kv_file_key *key, const int32_t *tokens, size_t n,
                      struct kv_load_result *res, struct ica_error *err) {
    if (!c || !res || (!data && size))
        return ica_seterr(err, ICA_ERR_ARG, "kv_cache_load_mem: NULL argument");
    res_init(res);
    int rc = check_key(key, err);
    if (rc != ICA_OK)
        return rc;
    struct file_view v;
    if (file_check(c, data, size, name ? name : "(memory)", key, tokens, n, true, &v,
                   &res->warning)) {
        res->n_ignored = 1;
        res->n_cached = tokens ? kv_cache_lookup(c, tokens, n) : 0;
        return ICA_OK;
    }
    rc = insert_view(c, &v, tokens, res, err);
    if (tokens)
        res->n_cached = kv_cache_lookup(c, tokens, n);
    else
        res->n_cached = res->n_loaded ? v.n_use : 0;
    return rc;
}

/* A file mapped read-only; data NULL when it could not be (warn says why). */
static const uint8_t *map_file(const char *path, size_t *size, struct ica_error *warn) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0) {
        ica_seterr(warn, ICA_ERR_IO, "%s: cannot open: %s; ignored", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        ica_seterr(warn, ICA_ERR_IO, "%s: not a regular file; ignored", path);
        close(fd);
        return NULL;
    }
    *size = (size_t)sb.st_size;
    if (*size < HDR_SIZE) {
        ica_seterr(warn, ICA_ERR_FORMAT, "%s: truncated: %zu bytes, the header needs %d; ignored",
                   path, *size, HDR_SIZE);
        close(fd);
        return NULL;
    }
    void *p = mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        ica_seterr(warn, ICA_ERR_IO, "%s: mmap failed: %s; ignored", path, strerror(errno));
        return NULL;
    }
    return p;
}

struct cand {
    char *path;
    size_t n_use;
};

static int cand_cmp(const void *a, const void *b) {
    const struct cand *x = a, *y = b;
    return x->n_use < y->n_use ? 1 : x->n_use > y->n_use ? -1 : strcmp(x->path, y->path);
}

int kv_cache_load(struct kv_cache *c, const char *dir, const struct kv_file_key *key,
                  const int32_t *tokens, size_t n, struct kv_load_result *res,
                  struct ica_error *err) {
    if (!c || !dir || !res || (n && !tokens))
        return ica_seterr(err, ICA_ERR_ARG, "kv_cache_load: NULL argument");
    res_init(res);
    int rc = check_key(key, err);
    if (rc != ICA_OK)
        return rc;
    if (n == 0)
        return ICA_OK;
    size_t have = kv_cache_lookup(c, tokens, n);
    res->n_cached = have;
    DIR *dp = opendir(dir);
    if (!dp)
        return ICA_OK; /* no cache directory yet */
    char prefix[64];
    name_prefix(c, key, prefix, sizeof prefix);
    size_t plen = strlen(prefix);
    struct cand *cands = NULL;
    size_t nc = 0, cap = 0;
    struct dirent *de;
    /* Pass 1: headers and token ids of this model's files. */
    while (rc == ICA_OK && (de = readdir(dp)) != NULL) {
        size_t ln = strlen(de->d_name);
        if (strncmp(de->d_name, prefix, plen) != 0 || ln < plen + 6 ||
            strcmp(de->d_name + ln - 6, ".icakv") != 0)
            continue;
        size_t pl = strlen(dir) + 1 + ln + 1;
        char *path = malloc(pl);
        if (!path) {
            rc = ica_seterr(err, ICA_ERR_NOMEM, "kv_cache_load: out of memory");
            break;
        }
        snprintf(path, pl, "%s/%s", dir, de->d_name);
        size_t size = 0;
        const uint8_t *d = map_file(path, &size, &res->warning);
        struct file_view v;
        if (!d || file_check(c, d, size, path, key, tokens, n, false, &v, &res->warning)) {
            res->n_ignored++;
            if (d)
                munmap((void *)d, size);
            free(path);
            continue;
        }
        munmap((void *)d, size);
        if (v.n_use <= have) {
            free(path);
            continue;
        }
        if (nc == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            struct cand *a = realloc(cands, ncap * sizeof *a);
            if (!a) {
                free(path);
                rc = ica_seterr(err, ICA_ERR_NOMEM, "kv_cache_load: out of memory");
                break;
            }
            cands = a;
            cap = ncap;
        }
        cands[nc].path = path;
        cands[nc++].n_use = v.n_use;
    }
    closedir(dp);
    if (nc)
        qsort(cands, nc, sizeof *cands, cand_cmp);
    /* Pass 2: the longest candidate whose payload checks out. */
    for (size_t i = 0; rc == ICA_OK && i < nc; i++) {
        size_t size = 0;
        const uint8_t *d = map_file(cands[i].path, &size, &res->warning);
        struct file_view v;
        if (!d || file_check(c, d, size, cands[i].path, key, tokens, n, true, &v, &res->warning)) {
            res->n_ignored++;
            if (d)
                munmap((void *)d, size);
            continue;
        }
        rc = insert_view(c, &v, tokens, res, err);
        munmap((void *)d, size);
        if (rc == ICA_OK) {
            snprintf(res->path, sizeof res->path, "%s", cands[i].path);
            break;
        }
    }
    for (size_t i = 0; i < nc; i++)
        free(cands[i].path);
    free(cands);
    res->n_cached = kv_cache_lookup(c, tokens, n);
    return rc;
}
