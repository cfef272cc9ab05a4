#include "icalign/dtype.h"

#include <strings.h>

/* Layouts from ggml's block definitions (ggml-common.h): QK4_0 = 32,
 * QK_K = 256, fp16 scales. Entries with a NULL name are unknown ids. */
static const struct ica_dtype_info g_info[ICA_DTYPE_COUNT] = {
    [ICA_F32] = {"F32", 1, 4},
    [ICA_F16] = {"F16", 1, 2},
    [ICA_Q4_0] = {"Q4_0", 32, 2 + 16},
    [ICA_Q4_1] = {"Q4_1", 32, 2 + 2 + 16},
    [ICA_Q5_0] = {"Q5_0", 32, 2 + 4 + 16},
    [ICA_Q5_1] = {"Q5_1", 32, 2 + 2 + 4 + 16},
    [ICA_Q8_0] = {"Q8_0", 32, 2 + 32},
    [ICA_Q8_1] = {"Q8_1", 32, 2 + 2 + 32},
    [ICA_Q2_K] = {"Q2_K", 256, 256 / 16 + 256 / 4 + 2 + 2},
    [ICA_Q3_K] = {"Q3_K", 256, 256 / 8 + 256 / 4 + 12 + 2},
    [ICA_Q4_K] = {"Q4_K", 256, 2 + 2 + 12 + 256 / 2},
    [ICA_Q5_K] = {"Q5_K", 256, 2 + 2 + 12 + 256 / 8 + 256 / 2},
    [ICA_Q6_K] = {"Q6_K", 256, 256 / 2 + 256 / 4 + 256 / 16 + 2},
    [ICA_Q8_K] = {"Q8_K", 256, 4 + 256 + 16 * 2},
    [ICA_IQ4_NL] = {"IQ4_NL", 32, 2 + 16},
    [ICA_IQ4_XS] = {"IQ4_XS", 256, 2 + 2 + 256 / 64 + 256 / 2},
    [ICA_I8] = {"I8", 1, 1},
    [ICA_I16] = {"I16", 1, 2},
    [ICA_I32] = {"I32", 1, 4},
    [ICA_I64] = {"I64", 1, 8},
    [ICA_F64] = {"F64", 1, 8},
    [ICA_BF16] = {"BF16", 1, 2},
};

const struct ica_dtype_info *ica_dtype_info(uint32_t t) {
    if (t >= ICA_DTYPE_COUNT || g_info[t].name == NULL)
        return NULL;
    return &g_info[t];
}

size_t ica_dtype_row_size(uint32_t t, int64_t n) {
    const struct ica_dtype_info *in = ica_dtype_info(t);
    if (!in || n < 0 || n % in->blck != 0)
        return 0;
    return (size_t)(n / in->blck) * in->type_size;
}

int ica_dtype_from_name(const char *name) {
    for (int t = 0; t < ICA_DTYPE_COUNT; t++)
        if (g_info[t].name && strcasecmp(g_info[t].name, name) == 0)
            return t;
    return -1;
}
