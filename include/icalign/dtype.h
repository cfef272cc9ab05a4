/* Tensor element types as numbered by GGUF/ggml (the ids are part of the file
 * format). Block size and bytes per block describe the storage layout; the
 * arithmetic on these types lives in kern.h. */
#ifndef ICALIGN_DTYPE_H
#define ICALIGN_DTYPE_H

#include "icalign/common.h"

#include <stdbool.h>
#include <stdint.h>

enum ica_dtype {
    ICA_F32 = 0,
    ICA_F16 = 1,
    ICA_Q4_0 = 2,
    ICA_Q4_1 = 3,
    ICA_Q5_0 = 6,
    ICA_Q5_1 = 7,
    ICA_Q8_0 = 8,
    ICA_Q8_1 = 9,
    ICA_Q2_K = 10,
    ICA_Q3_K = 11,
    ICA_Q4_K = 12,
    ICA_Q5_K = 13,
    ICA_Q6_K = 14,
    ICA_Q8_K = 15,
    ICA_IQ4_NL = 20,
    ICA_IQ4_XS = 23,
    ICA_I8 = 24,
    ICA_I16 = 25,
    ICA_I32 = 26,
    ICA_I64 = 27,
    ICA_F64 = 28,
    ICA_BF16 = 30,
    ICA_DTYPE_COUNT = 40 /* upper bound of ids we know the layout of */
};

struct ica_dtype_info {
    const char *name; /* "Q4_K", ... */
    int64_t blck;     /* elements per block (1 for plain types) */
    size_t type_size; /* bytes per block */
};

/* Layout of type id t, or NULL when t is not a type this build knows the
 * layout of (unknown or removed ggml types). */
ICA_API const struct ica_dtype_info *ica_dtype_info(uint32_t t);

/* Bytes needed by n elements of type t, or 0 when t is unknown or n is not a
 * multiple of the block size. */
ICA_API size_t ica_dtype_row_size(uint32_t t, int64_t n);

/* Type id from its name (case-insensitive, "q4_k" or "Q4_K"); -1 if unknown. */
ICA_API int ica_dtype_from_name(const char *name);

#endif
