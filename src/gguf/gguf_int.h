/* Internals shared by the gguf reader and writer. */
#ifndef ICALIGN_GGUF_INT_H
#define ICALIGN_GGUF_INT_H

#include "icalign/gguf.h"

#include <stddef.h>
#include <stdint.h>

#define GGUF_MAGIC             "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32u
#define GGUF_MAX_NAME          65536u /* longest tensor name accepted (bytes) */
#define GGUF_MAX_DEPTH         8      /* deepest array nesting accepted */

/* Bytes of one element of a fixed-size type; 0 for string, array, unknown. */
size_t gguf_vtype_size(uint32_t t);

#endif
