/* Fuzz the request-body parser of /v1/chat/completions and /v1/completions, the URIAL rendering
 * of a parsed chat, and the streaming post-processor (which must equal align_postprocess). */
#include "icalign/serve.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static struct align_set *g_set;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_set && align_spec_load("default", &g_set, NULL) != ICA_OK)
        return 0;
    for (int chat = 0; chat < 2; chat++) {
        struct serve_request r;
        struct serve_error e;
        if (!serve_parse_request((const char *)data, size, chat, &r, &e)) {
            if (e.status != 400 && e.status != 500)
                __builtin_trap();
            continue;
        }
        if (chat) {
            for (int m = 0; m < 3; m++) {
                char *p = NULL;
                if (serve_render_chat(g_set, (enum serve_system_mode)m, &r, &p, &e))
                    free(p);
                else if (e.status != 400 && e.status != 500)
                    __builtin_trap();
            }
        } else if (!r.prompt) {
            __builtin_trap();
        }
        serve_request_free(&r);
    }
    /* the raw bytes as a model answer, streamed in 3-byte chunks */
    char *want = NULL, *out = NULL;
    size_t wl = 0, ol = 0, oc = 0;
    if (align_postprocess((const char *)data, size, &want, &wl, NULL) != ICA_OK)
        return 0;
    struct serve_clean c;
    serve_clean_init(&c);
    for (size_t i = 0; i < size; i += 3)
        serve_clean_feed(&c, (const char *)data + i, size - i < 3 ? size - i : 3, &out, &ol, &oc);
    serve_clean_finish(&c, &out, &ol, &oc);
    /* on valid UTF-8 the stream equals the whole-text post-processing */
    size_t sl = 0;
    char *san = serve_utf8_sanitize((const char *)data, size, &sl);
    if (san && sl == size && memcmp(san, data, size) == 0 && !c.failed &&
        (ol != wl || (wl && memcmp(out, want, wl) != 0)))
        __builtin_trap();
    free(san);
    serve_clean_free(&c);
    free(out);
    free(want);
    return 0;
}
