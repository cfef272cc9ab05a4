/* kv — paged KV cache shared between sequences through a radix tree of token
 * prefixes (the idea of SGLang's RadixAttention), with LRU eviction under a
 * memory budget and an on-disk copy of chosen prefixes.
 *
 * Every workload of icalign repeats a long prefix (URIAL rules + demos, turn 1
 * of MT-Bench, the greedy-search base set, the server's prompt): this module
 * lets all of them pay for it once.
 *
 * ==== Storage ====
 * Blocks of block_tokens positions (default 32), fixed size, from one pool.
 * One block holds K and V of every layer for its positions:
 *     K [n_layer][block_tokens][n_head_kv * head_dim]     then
 *     V [n_layer][block_tokens][n_head_kv * head_dim_v]
 * elements of elem_type (ICA_F16 by default, ICA_F32 selectable). So for one
 * layer the rows of positions p .. p|(block_tokens-1) (the rest of p's block)
 * are contiguous, kv_seq_row_stride() elements apart; the forward pass gathers
 * head h at element offset h*head_dim of each row.
 *
 * Blocks are ref-counted: a sequence's block table holds one reference per
 * block, a tree node one per block it covers. A block is written in place only
 * by a sequence that holds it alone, or that appends right after the block's
 * fill mark (the highest slot anyone may rely on); otherwise the sequence
 * copies it first (copy-on-write), so writing into one sequence's partial
 * block never changes what another sequence or the tree reads.
 *
 * ==== Radix tree ====
 * A compressed trie whose edges are token runs. A node covering positions
 * [start, end) references the blocks start/B .. (end-1)/B; its block for index
 * b holds correct K/V for every position of b up to end along the node's path
 * (so a node that starts inside a block shares or copies the ancestor's part
 * of it). Leaves that no sequence uses are evicted least-recently-used first
 * when the pool is at its budget; referenced blocks are never evicted.
 *
 * ==== Use by the forward pass and the scheduler (invariants) ====
 *  1. The KV of a position must be a pure function of the token ids up to and
 *     including it (same model, same kv type): that is what makes sharing
 *     correct. Anything else that changes K/V (a different RoPE scaling, a
 *     LoRA, another model) needs another kv_cache.
 *  2. kv_seq_new() → compute tokens [n_cached, n) → kv_seq_reserve(n - n_cached)
 *     → write K and V of every new position → then the positions may be read
 *     and committed. Pass max_reuse = n - 1 when the logits of the last prompt
 *     token are needed (a fully cached prompt otherwise computes nothing).
 *  3. Write only positions in [kv_seq_writable_from(seq), kv_seq_len(seq)):
 *     everything below may be shared with the tree or other sequences. Write
 *     each position before it is read or committed.
 *  4. kv_seq_commit(seq, tokens, n) only with the ids of positions 0..n-1 whose
 *     K/V are written (n ≤ kv_seq_len); commit is cheap (no copy) and can be
 *     repeated as the sequence grows (e.g. when a sequence finishes, or after
 *     each MT-Bench turn).
 *  5. Pointers from kv_seq_k/kv_seq_v are valid until the next
 *     kv_seq_reserve/kv_seq_truncate/kv_seq_free of that sequence (a reserve
 *     may replace a shared block by its copy). Calls on other sequences,
 *     kv_seq_new, commits, saves and loads never move a live sequence's blocks.
 *  6. kv_seq_reserve is all-or-nothing. ICA_ERR_RANGE: this sequence can
 *     never fit in the budget (fail the request). ICA_ERR_NOMEM: the pool is
 *     full of blocks other live sequences hold (wait for one to finish, or
 *     preempt one: free it and recompute later), or malloc failed.
 *  7. One thread (or one lock) for all calls on a cache and its sequences.
 *     Different positions may be written concurrently by the forward pass's
 *     worker threads once reserved.
 *  8. Free every sequence before kv_cache_free.
 *
 * ==== File format (kv_cache_save / kv_cache_load) ====
 * "<dir>/<hex model hash, 16 digits>-<kv type name>-<hex XXH3 of token ids>.icakv"
 * Header, 256 bytes, integers little-endian:
 *     0  magic "ICAKVC\r\n"          8  u32 version (1)
 *    12  u32 elem_type              16  u32 n_layer, n_head_kv, head_dim,
 *                                       head_dim_v, block_tokens (5 × u32)
 *    36  u32 byte_order: 0x01020304 written in host order (payload is host order)
 *    40  u32 model_hash_len (≤ 64)  44  u8 model_hash[64]
 *   108  u32 reserved (0)          112  u64 n_tokens, n_blocks, block_bytes,
 *                                       tokens_offset, payload_offset, file_size
 *   160  u64 tokens_xxh3 (XXH3_64 of the token ids)
 *   168  u64 payload_xxh3 (XXH3_64 of the whole payload)
 *   176  zeros up to 248            248  u64 header_xxh3 (XXH3_64 of bytes 0..247)
 * Token ids: n_tokens × i32 LE at tokens_offset (256). Payload at
 * payload_offset (multiple of 4096, so blocks can be mapped in place):
 * n_blocks = ceil(n_tokens/block_tokens) blocks of block_bytes in the layout
 * above, unused slots of the last block zero. Files are written to a temporary
 * name and renamed, so readers never see half a file. */
#ifndef ICALIGN_KV_H
#define ICALIGN_KV_H

#include "icalign/common.h"
#include "icalign/dtype.h"

#include <stddef.h>
#include <stdint.h>

struct kv_cache;
struct kv_seq;

struct kv_config {
    int n_layer;
    int n_head_kv;
    int head_dim;             /* K elements per head */
    int head_dim_v;           /* V elements per head */
    int block_tokens;         /* positions per block; 0 = 32 */
    enum ica_dtype elem_type; /* ICA_F16 or ICA_F32 */
    size_t mem_budget;        /* bytes of block storage at most; 0 = unlimited */
};

/* block_tokens 32, ICA_F16, unlimited; the caller sets the dimensions. (A
 * zeroed struct kv_config means ICA_F32, since ICA_F32 is 0.) */
ICA_API struct kv_config kv_default_config(void);

/* Bytes of one block for cfg (0 if cfg is invalid). */
ICA_API size_t kv_block_bytes(const struct kv_config *cfg);

/* Creates an empty cache. ICA_ERR_ARG names the bad field; ICA_ERR_RANGE when
 * mem_budget is smaller than one block. Free with kv_cache_free. */
ICA_API int kv_cache_new(const struct kv_config *cfg, struct kv_cache **out,
                         struct ica_error *err) ICA_WUR;

/* Frees the cache, its tree and blocks. NULL-safe. All sequences must have
 * been freed before. */
ICA_API void kv_cache_free(struct kv_cache *c);

ICA_API const struct kv_config *kv_cache_config(const struct kv_cache *c);

struct kv_stats {
    size_t block_bytes;
    size_t blocks_max;         /* budget in blocks; 0 = unlimited */
    size_t blocks_alloc;       /* allocated = in_use + cached + free */
    size_t blocks_in_use;      /* referenced by at least one live sequence */
    size_t blocks_cached;      /* referenced by the tree only (evictable) */
    size_t blocks_free;        /* allocated, unreferenced, ready for reuse */
    size_t tree_nodes;         /* nodes besides the root */
    size_t tree_tokens;        /* tokens on the tree's edges */
    uint64_t tokens_requested; /* sum of n (capped by max_reuse) over kv_seq_new */
    uint64_t tokens_hit;       /* sum of n_cached over kv_seq_new */
    uint64_t evicted_nodes;
    uint64_t evicted_blocks; /* blocks freed by eviction */
    uint64_t cow_copies;     /* blocks copied before a write */
};

ICA_API void kv_cache_stats(const struct kv_cache *c, struct kv_stats *st);

/* Number of tokens of tokens[0..n) found in the tree (no side effects). */
ICA_API size_t kv_cache_lookup(const struct kv_cache *c, const int32_t *tokens, size_t n);

/* Evicts every tree node no sequence uses (e.g. before measuring). */
ICA_API void kv_cache_clear(struct kv_cache *c);

/* ==== Sequences ==== */

/* Creates a sequence for tokens[0..n): the longest cached prefix of
 * tokens[0..min(n, max_reuse)) is reused (*n_cached tokens, possibly 0, whose
 * blocks the sequence now references); kv_seq_len is *n_cached. The caller
 * computes and appends the rest. tokens may be NULL when n is 0. */
ICA_API int kv_seq_new(struct kv_cache *c, const int32_t *tokens, size_t n, size_t max_reuse,
                       struct kv_seq **out, size_t *n_cached, struct ica_error *err) ICA_WUR;

/* Drops the sequence's references; what it committed stays in the tree.
 * NULL-safe. */
ICA_API void kv_seq_free(struct kv_seq *s);

/* Appends n_more positions (kv_seq_len grows by n_more); the caller writes
 * their K and V. Allocates blocks, copies a shared block before the sequence
 * writes into it, evicts LRU cached blocks when at the budget. All or nothing;
 * errors: see invariant 6. */
ICA_API int kv_seq_reserve(struct kv_seq *s, size_t n_more, struct ica_error *err) ICA_WUR;

/* Drops positions n.. (n ≤ kv_seq_len; larger n is a no-op). */
ICA_API void kv_seq_truncate(struct kv_seq *s, size_t n);

/* Publishes positions 0..n-1 (ids tokens[0..n), n ≤ kv_seq_len) in the tree
 * so later sequences reuse them. ICA_ERR_ARG when n > kv_seq_len or when the
 * ids differ from the cached prefix the sequence was created with. */
ICA_API int kv_seq_commit(struct kv_seq *s, const int32_t *tokens, size_t n,
                          struct ica_error *err) ICA_WUR;

ICA_API size_t kv_seq_len(const struct kv_seq *s);

/* First position the sequence may write (invariant 3). */
ICA_API size_t kv_seq_writable_from(const struct kv_seq *s);

/* K (or V) row of position pos in layer: n_head_kv*head_dim (head_dim_v)
 * elements of elem_type. NULL when layer or pos is out of range. Rows of the
 * following positions up to the end of pos's block follow at
 * kv_seq_row_stride (kv_seq_row_stride_v) elements. Validity: invariant 5. */
ICA_API void *kv_seq_k(struct kv_seq *s, int layer, size_t pos);
ICA_API void *kv_seq_v(struct kv_seq *s, int layer, size_t pos);
ICA_API size_t kv_seq_row_stride(const struct kv_seq *s);
/* kv_seq_k and kv_seq_v of positions [0, n) of a layer into k[] and v[]
 * (n <= kv_seq_len; a block at a time, no division per position). */
ICA_API void kv_seq_rows(const struct kv_seq *s, int layer, size_t n, const uint8_t **k,
                         const uint8_t **v);
ICA_API size_t kv_seq_row_stride_v(const struct kv_seq *s);

/* ==== Persistence ==== */

/* Identifies the model a file belongs to: the model file's hash (sha256 from
 * store.h, 1..64 bytes). The kv type and dims come from the cache config. */
struct kv_file_key {
    const uint8_t *model_hash;
    size_t model_hash_len;
};

/* Writes the K/V of tokens[0..n) (which must be cached: ICA_ERR_NOTFOUND
 * names how many are) to a file in dir (created if missing). Overwrites a file
 * for the same tokens. ICA_ERR_IO names the path. */
ICA_API int kv_cache_save(struct kv_cache *c, const char *dir, const struct kv_file_key *key,
                          const int32_t *tokens, size_t n, struct ica_error *err) ICA_WUR;

struct kv_load_result {
    size_t n_loaded;          /* tokens of tokens[] inserted from a file (0 if none) */
    size_t n_cached;          /* tokens of tokens[] cached after the call */
    int n_ignored;            /* files of this model and kv type ignored */
    struct ica_error warning; /* code + message (path, field, reason) of the last
                                 ignored file; code ICA_OK when none */
    char path[1024];          /* file loaded from ("" if none) */
};

/* Inserts, from the file in dir (for this key, kv type and dims) whose token
 * ids share the longest prefix with tokens[0..n), that common prefix when it
 * is longer than what is cached already (a file saved for "URIAL + question
 * 1" thus serves the URIAL part of question 2; the ids themselves are
 * compared, never trusted from the name). Every file read is checked (magic, version, header
 * checksum, sizes against the file size, model hash, kv type, dims, token ids against tokens, token
 * and payload checksums); a file failing a check is ignored with a warning in res and the next
 * candidate is tried. Returns ICA_OK unless a hard error happens: bad arguments, out of memory,
 * ICA_ERR_RANGE/NOMEM when the budget cannot hold the prefix (see kv_seq_reserve). A missing dir is
 * not an error. */
ICA_API int kv_cache_load(struct kv_cache *c, const char *dir, const struct kv_file_key *key,
                          const int32_t *tokens, size_t n, struct kv_load_result *res,
                          struct ica_error *err) ICA_WUR;

/* The same checks and insertion for a file image in memory (name is used in
 * messages). tokens may be NULL: then the file's own token ids are inserted
 * (they still pass every other check). A rejected image gives ICA_OK with
 * res->warning set and res->n_ignored = 1. */
ICA_API int kv_cache_load_mem(struct kv_cache *c, const void *data, size_t size, const char *name,
                              const struct kv_file_key *key, const int32_t *tokens, size_t n,
                              struct kv_load_result *res, struct ica_error *err) ICA_WUR;

#endif
