/* utf8.c — see utf8.h. */
#include "utf8.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

size_t utf8_valid_prefix(const void *str, size_t n)
{
    const unsigned char *s = str;
    size_t i = 0;
    while (i < n) {
        // ASCII runs, 8 bytes at a time: nearly all of typical text
        while (i + 8 <= n) {
            uint64_t x;
            memcpy(&x, s + i, 8);
            if (x & 0x8080808080808080ull)
                break;
            i += 8;
        }
        if (i >= n)
            break;
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf)
            len = 2, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            len = 3, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            len = 4, cp = c & 0x07;
        else
            return i;
        if (n - i < len)
            return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return i;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            return i;
        i += len;
    }
    return n;
}

/* bytes 1.. of a sequence led by c that may follow: the second byte's range
 * (the later ones are 0x80..0xbf) */
static int second_range(unsigned c, unsigned *lo, unsigned *hi)
{
    *lo = 0x80, *hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        return 2;
    if (c == 0xe0)
        return *lo = 0xa0, 3;
    if (c == 0xed)
        return *hi = 0x9f, 3;
    if (c >= 0xe1 && c <= 0xef)
        return 3;
    if (c == 0xf0)
        return *lo = 0x90, 4;
    if (c == 0xf4)
        return *hi = 0x8f, 4;
    if (c >= 0xf1 && c <= 0xf3)
        return 4;
    return 0;
}

char *utf8_lossy(const void *str, size_t n)
{
    const unsigned char *s = str;
    char *out = malloc(3 * n + 1), *o = out;
    if (!out)
        return NULL;
    size_t i = 0;
    while (i < n) {
        size_t v = utf8_valid_prefix(s + i, n - i);
        memcpy(o, s + i, v);
        o += v, i += v;
        if (i >= n)
            break;
        /* the maximal subpart of a sequence that starts here */
        unsigned lo, hi;
        int len = second_range(s[i], &lo, &hi);
        size_t k = 1;
        if (len && i + 1 < n && s[i + 1] >= lo && s[i + 1] <= hi) {
            k = 2;
            while ((int)k < len && i + k < n && (s[i + k] & 0xc0) == 0x80)
                k++;
        }
        memcpy(o, "\xef\xbf\xbd", 3);
        o += 3, i += k;
    }
    *o = 0;
    return out;
}
