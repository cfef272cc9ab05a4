/* Internal structures of the kv module (shared by kv.c and kv_file.c). */
#ifndef ICALIGN_KV_INT_H
#define ICALIGN_KV_INT_H

#include "icalign/kv.h"

#include <stdbool.h>

struct kv_block {
    uint8_t *data;     /* block_bytes, 64-byte aligned */
    int32_t refs;      /* sequences' block tables + tree nodes */
    int32_t tree_refs; /* tree nodes only */
    size_t fill;       /* slots [0, fill) some holder may rely on */
};

/* Radix tree node: edge tok[0..len) at positions [start, start+len). blk[i]
 * is the block of index start/B + i; it holds correct K/V for the node's path
 * for every position of that block below start+len. */
struct kv_node {
    struct kv_node *parent;
    struct kv_node **child;
    size_t n_child, cap_child;
    int32_t *tok;
    size_t start, len;
    struct kv_block **blk;
    uint64_t last_use;
    struct kv_node *prev, *next; /* list of all non-root nodes (eviction scan) */
};

struct kv_cache {
    struct kv_config cfg;
    size_t B;                  /* block_tokens */
    size_t esz, kdim, vdim;    /* element bytes, K and V row elements */
    size_t block_bytes, v_off; /* V part starts at v_off within a block */
    size_t blocks_max;         /* 0 = unlimited */
    uint8_t *arena;            /* with a budget: every block's data, reserved at creation */
    size_t arena_bytes;
    struct kv_block *arena_rec; /* their records */
    struct kv_block **blocks;   /* every allocated block */
    size_t n_blocks, cap_blocks;
    struct kv_block **freel; /* unreferenced blocks, capacity cap_blocks */
    size_t n_free;
    struct kv_node root;
    struct kv_node *nodes; /* head of the list of non-root nodes */
    size_t n_nodes, tree_tokens;
    size_t n_seqs;
    uint64_t clock;
    uint64_t tokens_requested, tokens_hit, evicted_nodes, evicted_blocks, cow_copies;
};

struct kv_seq {
    struct kv_cache *c;
    struct kv_block **tab; /* tab[i]: block of positions [i*B, (i+1)*B) */
    size_t n_tab, cap_tab;
    size_t len;
    size_t wfrom;
    int32_t *tok; /* known ids of positions 0..n_tok-1 (reused or committed) */
    size_t n_tok, cap_tok;
};

static inline size_t kv_div_up(size_t a, size_t b) {
    return a / b + (a % b != 0);
}

#endif
