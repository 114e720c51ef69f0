/* pretok.c — the Qwen2 Split pre-tokenizer as a hand-written scanner, UTF-8
 * checking, and the ByteLevel byte <-> character map.
 *
 * The pattern (tokenizer.json's Split, behavior Isolated) is
 *
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d) | [^\r\n\p{L}\p{N}]?\p{L}+ | \p{N}
 *   | ?[^\s\p{L}\p{N}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+
 *
 * and HF runs it with Oniguruma: leftmost-first alternation, backtracking.
 * Every character is matched by some alternative, so the pieces tile the
 * text. tok_pretok_next follows the alternatives in order; the comments at
 * each one say what backtracking makes of it. Classes come from utf8proc's
 * general categories (L = Lu Ll Lt Lm Lo, N = Nd Nl No); \s is Unicode
 * White_Space, as in Oniguruma's Unicode tables. */
#include "tok_impl.h"

#include "unicode9.h"

#include <pthread.h>
#include <stdlib.h>
#include <utf8proc.h>

enum { CL_O, CL_L, CL_N, CL_S, CL_NL }; // other, letter, number, space but not CR/LF, CR/LF

#define N_CP 0x110000
static uint8_t g_cls[N_CP];
static uint8_t g_u9[N_CP / 8]; // bit set: assigned by Unicode 9.0
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static bool is_white(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

static void build_classes(void)
{
    for (uint32_t c = 0; c < N_CP; c++) {
        utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
        uint8_t cl = CL_O;
        if (c == '\r' || c == '\n')
            cl = CL_NL;
        else if (is_white(c))
            cl = CL_S;
        else if (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO)
            cl = CL_L;
        else if (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO)
            cl = CL_N;
        g_cls[c] = cl;
    }
    for (int r = 0; r < TOK_U9_RANGES; r++)
        for (uint32_t c = tok_u9[r][0]; c < tok_u9[r][1]; c++)
            g_u9[c >> 3] |= (uint8_t)(1u << (c & 7));
}

void tok_classes_init(void) { pthread_once(&g_once, build_classes); }

/* The character at i of valid UTF-8: its code point, and its length in *len. */
static inline uint32_t cp_at(const uint8_t *s, size_t i, size_t *len)
{
    uint8_t b = s[i];
    if (b < 0x80) {
        *len = 1;
        return b;
    }
    if (b < 0xe0) {
        *len = 2;
        return (uint32_t)(b & 0x1f) << 6 | (s[i + 1] & 0x3f);
    }
    if (b < 0xf0) {
        *len = 3;
        return (uint32_t)(b & 0x0f) << 12 | (uint32_t)(s[i + 1] & 0x3f) << 6 | (s[i + 2] & 0x3f);
    }
    *len = 4;
    return (uint32_t)(b & 0x07) << 18 | (uint32_t)(s[i + 1] & 0x3f) << 12 | (uint32_t)(s[i + 2] & 0x3f) << 6 |
           (s[i + 3] & 0x3f);
}

/* Class of the character at i (i < n), its length in *len. */
static inline int cls_at(const uint8_t *s, size_t i, size_t *len) { return g_cls[cp_at(s, i, len)]; }

/* End of the run of characters of class cl starting at i. */
static inline size_t run_of(const uint8_t *s, size_t n, size_t i, int cl)
{
    size_t len;
    while (i < n && cls_at(s, i, &len) == cl)
        i += len;
    return i;
}

/* A letter of a contraction, case-insensitively: lower-case ASCII, its upper
 * case, and U+017F LATIN SMALL LETTER LONG S, which case-folds to s. */
static inline size_t fold_is(const uint8_t *s, size_t n, size_t i, char lower)
{
    if (i >= n)
        return 0;
    if (s[i] == (uint8_t)lower || s[i] == (uint8_t)(lower - 32))
        return 1;
    if (lower == 's' && i + 1 < n && s[i] == 0xc5 && s[i + 1] == 0xbf)
        return 2;
    return 0;
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d) at i (s[i] is '): the match length or 0. */
static size_t contraction(const uint8_t *s, size_t n, size_t i)
{
    static const char *const alts[] = {"s", "t", "re", "ve", "m", "ll", "d"};
    for (int a = 0; a < 7; a++) {
        size_t j = i + 1, k;
        const char *p = alts[a];
        for (; *p; p++, j += k)
            if (!(k = fold_is(s, n, j, *p)))
                break;
        if (!*p)
            return j - i;
    }
    return 0;
}

size_t tok_pretok_next(const uint8_t *s, size_t n, size_t i)
{
    size_t len, len2;
    if (s[i] == '\'') {
        size_t m = contraction(s, n, i);
        if (m)
            return i + m;
    }
    int c = cls_at(s, i, &len);
    // [^\r\n\p{L}\p{N}]?\p{L}+ : a letter run, or one other/space character
    // then a letter run (the optional part takes the character when it can)
    if (c == CL_L)
        return run_of(s, n, i + len, CL_L);
    if ((c == CL_O || c == CL_S) && i + len < n && cls_at(s, i + len, &len2) == CL_L)
        return run_of(s, n, i + len + len2, CL_L);
    // \p{N} : one number character
    if (c == CL_N)
        return i + len;
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*' : an optional U+0020, others, then CR/LF
    if (c == CL_O)
        return run_of(s, n, run_of(s, n, i, CL_O), CL_NL);
    if (s[i] == ' ' && i + 1 < n && cls_at(s, i + 1, &len2) == CL_O)
        return run_of(s, n, run_of(s, n, i + 1, CL_O), CL_NL);
    // a whitespace run [i, j); last_nl: the end of its last CR/LF; last: the
    // start of its last character
    size_t j = i, last_nl = 0, last = i;
    while (j < n) {
        int k = cls_at(s, j, &len);
        if (k != CL_S && k != CL_NL)
            break;
        last = j;
        j += len;
        if (k == CL_NL)
            last_nl = j;
    }
    // \s*[\r\n]+ : \s* backtracks to the last CR/LF of the run
    if (last_nl)
        return last_nl;
    // \s+(?!\S) : all of the run at the end of the text, else all but its
    // last character, which is left to precede what follows
    if (j == n || last > i)
        return j == n ? j : last;
    // \s+
    return j;
}

size_t tok_next_after_u9(const uint8_t *s, size_t n, size_t i, size_t *len)
{
    for (; i < n; i += *len) {
        uint32_t c = cp_at(s, i, len);
        if (!(g_u9[c >> 3] >> (c & 7) & 1))
            return i;
    }
    return n;
}

uint32_t tok_byte_char(uint8_t b)
{
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)
        return b;
    // the others, in byte order, become U+0100 upwards
    uint32_t k = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174))
            k++;
    return 256 + k;
}

static int16_t g_rev[324]; // 256 + the 68 bytes that are moved
static pthread_once_t g_rev_once = PTHREAD_ONCE_INIT;

static void build_rev(void)
{
    for (int c = 0; c < 324; c++)
        g_rev[c] = -1;
    for (int b = 0; b < 256; b++)
        g_rev[tok_byte_char((uint8_t)b)] = (int16_t)b;
}

int tok_char_byte(uint32_t cp)
{
    pthread_once(&g_rev_once, build_rev);
    return cp < 324 ? g_rev[cp] : -1;
}
