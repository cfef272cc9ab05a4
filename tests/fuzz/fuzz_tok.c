/* libFuzzer target: arbitrary bytes through tokenize / detokenize for every
 * fixture vocabulary (loaded once from $ICALIGN_SHARED or ../shared). The
 * first input byte picks the vocabulary and the flags. Invariants checked:
 * ids are in range, detokenize succeeds, and with the SPM vocabulary (byte
 * fallback) input without spaces or U+2581 survives the round trip. */
#include "icalign/tok.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const g_names[] = {
    "fixtures/tokenizer/ggml-vocab-llama-spm.gguf", "fixtures/tokenizer/ggml-vocab-llama3.gguf",
    "fixtures/tokenizer/ggml-vocab-qwen2.gguf",     "fixtures/tokenizer/ggml-vocab-gpt-2.gguf",
    "fixtures/stories260K/stories260K.gguf",
};
#define N_V (sizeof g_names / sizeof g_names[0])
static struct tok_vocab *g_v[N_V];
static size_t g_nv;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *dir = getenv("ICALIGN_SHARED");
    if (!dir || !*dir)
        dir = "../shared";
    for (size_t i = 0; i < N_V; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, g_names[i]);
        struct tok_vocab *v = NULL;
        struct ica_error e = {0};
        if (tok_vocab_load(path, &v, &e) == ICA_OK)
            g_v[g_nv++] = v;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (g_nv == 0 || size == 0)
        return 0;
    const struct tok_vocab *v = g_v[data[0] % g_nv];
    bool add = data[0] & 0x10, sp = data[0] & 0x20, rm = data[0] & 0x40;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    int32_t *ids = NULL;
    size_t nid = 0;
    if (tok_tokenize(v, text, n, add, sp, &ids, &nid, NULL) != ICA_OK)
        abort();
    for (size_t i = 0; i < nid; i++)
        if (ids[i] < 0 || ids[i] >= tok_n_tokens(v))
            abort();
    char *out = NULL;
    size_t len = 0;
    if (tok_detokenize(v, ids, nid, rm, sp, &out, &len, NULL) != ICA_OK)
        abort();
    if (tok_vocab_model(v) == TOK_MODEL_SPM && tok_n_tokens(v) > 1000 && !add && !sp &&
        !memchr(text, ' ', n) && !memchr(text, '\xe2', n)) {
        free(out);
        out = NULL;
        if (tok_detokenize(v, ids, nid, false, false, &out, &len, NULL) != ICA_OK || len != n ||
            (n && memcmp(out, text, n)))
            abort();
    }
    for (size_t i = 0; i < nid; i++) {
        char buf[8];
        (void)tok_token_to_piece(v, ids[i], sp, 1, buf, sizeof buf);
    }
    free(out);
    free(ids);
    return 0;
}
