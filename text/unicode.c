/* unicode.c: see unicode.h. */
#include "unicode.h"

#include <utf8proc.h>

int tx_category(int32_t cp)
{
    return (int)utf8proc_category(cp);
}

int tx_is_cased(int32_t cp)
{
    if (cp == 0xAA || cp == 0xBA || (cp >= 0x1F130 && cp <= 0x1F149) ||
        (cp >= 0x1F150 && cp <= 0x1F169) || (cp >= 0x1F170 && cp <= 0x1F189))
        return 1;
    int c = tx_category(cp);
    return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL ||
           c == UTF8PROC_CATEGORY_LT || utf8proc_tolower(cp) != cp ||
           utf8proc_toupper(cp) != cp;
}

int tx_is_case_ignorable(int32_t cp)
{
    static const int32_t mid[] = {0x27,   0x2E,   0x3A,   0xB7,   0x387,  0x55F,
                                  0x5F4,  0x2018, 0x2019, 0x2024, 0x2027, 0xFE13,
                                  0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A};
    int c = tx_category(cp);
    if (c == UTF8PROC_CATEGORY_MN || c == UTF8PROC_CATEGORY_ME ||
        c == UTF8PROC_CATEGORY_CF || c == UTF8PROC_CATEGORY_LM || c == UTF8PROC_CATEGORY_SK)
        return 1;
    for (size_t i = 0; i < sizeof mid / sizeof *mid; i++)
        if (mid[i] == cp)
            return 1;
    return 0;
}

int tx_final_sigma(const int32_t *cp, size_t stride, size_t lo, size_t hi, size_t k)
{
    size_t j = k;
    while (j > lo && tx_is_case_ignorable(cp[(j - 1) * stride]))
        j--;
    if (j == lo || !tx_is_cased(cp[(j - 1) * stride]))
        return 0;
    j = k + 1;
    while (j < hi && tx_is_case_ignorable(cp[j * stride]))
        j++;
    return j == hi || !tx_is_cased(cp[j * stride]);
}

int tx_valid_utf8(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                              (utf8proc_ssize_t)(n - i), &c);
        if (k <= 0)
            return 0;
        i += (size_t)k;
    }
    return 1;
}

int tx_is_blank_line(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                              (utf8proc_ssize_t)(n - i), &c);
        if (k <= 0)
            return 0;
        i += (size_t)k;
        const utf8proc_property_t *p = utf8proc_get_property(c);
        if (p->category != UTF8PROC_CATEGORY_ZS &&
            p->bidi_class != UTF8PROC_BIDI_CLASS_WS &&
            p->bidi_class != UTF8PROC_BIDI_CLASS_B &&
            p->bidi_class != UTF8PROC_BIDI_CLASS_S)
            return 0;
    }
    return 1;
}
