/* utf8.h — UTF-8 validation shared by the stages that read text. */
#ifndef BAGEL_UTF8_H
#define BAGEL_UTF8_H

#include <stddef.h>

/* The length of the longest valid UTF-8 prefix of s[0,n): n when all of it is
 * valid, else the offset of the first byte of the first bad sequence.
 * Refused: stray continuation bytes, overlong forms, UTF-16 surrogates, code
 * points past U+10FFFF, a sequence cut off by the end. */
size_t utf8_valid_prefix(const void *s, size_t n);

/* s[0,n) as valid UTF-8, NUL-terminated (malloc'd; NULL when out of
 * memory): each maximal subpart of an ill-formed sequence becomes U+FFFD,
 * as Python's decode(errors="replace") does. */
char *utf8_lossy(const void *s, size_t n);

#endif
