/* Fuzz the response parser of /v1/completions and /v1/chat/completions in
 * all four modes (completion/chat, whole body/streamed chunk). */
#include "icalign/remote.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (int mode = 0; mode < 4; mode++) {
        struct remote_parsed p;
        struct ica_error e;
        if (remote_parse_response((const char *)data, size, mode & 1, (mode & 2) != 0, &p, &e) ==
            ICA_OK) {
            for (size_t i = 0; i < p.n_top; i++)
                if (!p.top[i].token)
                    __builtin_trap();
            if (p.text && strlen(p.text) > p.text_len)
                __builtin_trap();
            remote_parsed_free(&p);
        }
    }
    return 0;
}
