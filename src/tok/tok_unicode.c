/* Codepoint classes and UTF-8 handling, matching llama.cpp's unicode.cpp.
 *
 * Categories come from utf8proc (Unicode 15.0) plus the code points that
 * Unicode 15.1 assigned, because llama.cpp's generated tables
 * (src/unicode-data.cpp) are Unicode 15.1: U+2FFC..U+2FFF and U+31EF (So)
 * and CJK Extension I U+2EBF0..U+2EE5D (Lo). A program comparing every code
 * point found no other difference (utf8proc 2.8.0). */
#include "tok_int.h"

#include <utf8proc.h>

static unsigned cat_flags(uint32_t c) {
    if (c > 0x10FFFF)
        return 0;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
        return CPT_LETTER;
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
        return CPT_MARK;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
        return CPT_NUMBER;
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
        return CPT_PUNCT;
    case UTF8PROC_CATEGORY_SM:
    case UTF8PROC_CATEGORY_SC:
    case UTF8PROC_CATEGORY_SK:
    case UTF8PROC_CATEGORY_SO:
        return CPT_SYMBOL;
    case UTF8PROC_CATEGORY_CN:
        /* assigned in Unicode 15.1 */
        if ((c >= 0x2FFC && c <= 0x2FFF) || c == 0x31EF)
            return CPT_SYMBOL;
        if (c >= 0x2EBF0 && c <= 0x2EE5D)
            return CPT_LETTER;
        return 0;
    default:
        return 0;
    }
}

static bool is_white(uint32_t c) {
    if (c < 0x80)
        return (c >= 9 && c <= 13) || c == ' ';
    switch (c) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
        return true;
    default:
        return c >= 0x2000 && c <= 0x200A;
    }
}

static unsigned char g_ascii[128];
static bool g_ascii_ready;

static void ascii_init(void) {
    for (uint32_t c = 0; c < 128; c++)
        g_ascii[c] = (unsigned char)(cat_flags(c) | (is_white(c) ? CPT_SPACE : 0));
    __atomic_store_n(&g_ascii_ready, true, __ATOMIC_RELEASE);
}

unsigned tok_cpt_flags(uint32_t c) {
    if (c < 128) {
        if (!__atomic_load_n(&g_ascii_ready, __ATOMIC_ACQUIRE))
            ascii_init(); /* idempotent: racing threads write equal bytes */
        return g_ascii[c];
    }
    return cat_flags(c) | (is_white(c) ? CPT_SPACE : 0);
}

size_t tok_decode_utf8(const char *str, size_t len, uint32_t *out) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, n = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t need;
        uint32_t cp;
        if (c < 0x80) {
            out[n++] = c;
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            need = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            need = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            need = 3;
            cp = c & 0x07;
        } else {
            /* continuation byte or 0xF8.. lead: one replacement char */
            out[n++] = 0xFFFD;
            i++;
            continue;
        }
        /* llama.cpp checks continuation bytes only (no overlong/surrogate
         * checks) and requires them to be inside the text */
        bool ok = i + need < len;
        for (size_t k = 1; ok && k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                ok = false;
            else
                cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (!ok) {
            out[n++] = 0xFFFD;
            i++;
            continue;
        }
        out[n++] = cp;
        i += need + 1;
    }
    return n;
}

size_t tok_encode_utf8(uint32_t c, char *o) {
    unsigned char *u = (unsigned char *)o;
    if (c < 0x80) {
        u[0] = (unsigned char)c;
        return 1;
    }
    if (c < 0x800) {
        u[0] = (unsigned char)(0xC0 | (c >> 6));
        u[1] = (unsigned char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        u[0] = (unsigned char)(0xE0 | (c >> 12));
        u[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
        u[2] = (unsigned char)(0x80 | (c & 0x3F));
        return 3;
    }
    if (c > 0x10FFFF)
        c = 0xFFFD; /* llama.cpp throws here; we keep going */
    if (c < 0x10000)
        return tok_encode_utf8(c, o);
    u[0] = (unsigned char)(0xF0 | (c >> 18));
    u[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
    u[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
    u[3] = (unsigned char)(0x80 | (c & 0x3F));
    return 4;
}
