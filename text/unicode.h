/* unicode.h: the Unicode properties that Python's str.lower() needs and utf8proc lacks,
 * one copy for the tokenizer (text/tokenizer.c) and the answer normalization of the
 * SQuAD/KorQuAD metrics (tasks/metrics.c).
 *
 * "Cased" and "Case_Ignorable" (for the final-sigma rule) are derived from utf8proc's
 * categories and case mappings, plus two short lists: the Word_Break punctuation that is
 * case-ignorable, and the Other_Lowercase/Other_Uppercase characters that have no case
 * mapping and are not case-ignorable (U+00AA, U+00BA, U+1F130..). */
#ifndef BERTCC_TEXT_UNICODE_H
#define BERTCC_TEXT_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* utf8proc's general category of cp (a UTF8PROC_CATEGORY_* value). */
int tx_category(int32_t cp);
/* Cased: Lu, Ll, Lt, anything with a case mapping, and the few Other_Lowercase /
 * Other_Uppercase characters without one. */
int tx_is_cased(int32_t cp);
/* Case_Ignorable: Mn, Me, Cf, Lm, Sk, and Word_Break MidLetter/MidNumLet/Single_Quote. */
int tx_is_case_ignorable(int32_t cp);
/* Python's final-sigma context for a capital sigma at k within the code points
 * cp[lo * stride], ..., cp[(hi - 1) * stride] (stride: int32 elements from one code point
 * to the next, 1 for a plain array): 1 when it lower-cases to ς, 0 for σ. */
int tx_final_sigma(const int32_t *cp, size_t stride, size_t lo, size_t hi, size_t k);

/* 1 if s[0..n) is valid UTF-8. */
int tx_valid_utf8(const char *s, size_t n);
/* Python's str.isspace over a whole line, or the line is empty: a document break in a
 * corpus of one sentence per line. Invalid UTF-8 is not blank (the tokenizer reports
 * it). */
int tx_is_blank_line(const char *s, size_t n);

#endif
