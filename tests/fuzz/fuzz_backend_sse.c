/* Fuzz the SSE parser and the streamed-chunk parser together: the input is
 * split at data-chosen points and each event is parsed as a chunk. */
#include "icalign/remote.h"

#include <stdint.h>
#include <string.h>

static bool on_event(void *ud, const char *data, size_t len) {
    size_t *n = ud;
    (*n)++;
    struct remote_parsed p;
    struct ica_error e;
    if (remote_parse_response(data, len, (*n & 1) != 0, true, &p, &e) == ICA_OK)
        remote_parsed_free(&p);
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    size_t step = 1 + data[0] % 17; /* piece size */
    const char *s = (const char *)data + 1;
    size_t n = size - 1, events = 0;
    struct sse_parser p;
    sse_init(&p);
    for (size_t i = 0; i < n; i += step) {
        size_t k = n - i < step ? n - i : step;
        if (!sse_feed(&p, s + i, k, on_event, &events))
            break;
    }
    sse_finish(&p, on_event, &events);
    sse_free(&p);
    return 0;
}
