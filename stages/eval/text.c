/* text.c — see text.h. */
#include "text.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

int ev_buf_reserve(ev_buf_t *b, size_t extra)
{
    if (b->cap - b->n > extra)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->n <= extra) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p, b->cap = cap;
    return 0;
}

int ev_buf_put(ev_buf_t *b, const void *s, size_t n)
{
    if (ev_buf_reserve(b, n))
        return -1;
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

int ev_buf_putc(ev_buf_t *b, char c)
{
    if (ev_buf_reserve(b, 1))
        return -1;
    b->p[b->n++] = c;
    b->p[b->n] = 0;
    return 0;
}

int ev_buf_put_cp(ev_buf_t *b, uint32_t cp)
{
    char u[4];
    size_t k;
    if (cp >= 0xDC80 && cp <= 0xDCFF) { // an undecodable byte, given back as it was
        u[0] = (char)(cp - 0xDC00), k = 1;
    } else if (cp < 0x80) {
        u[0] = (char)cp, k = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3F)), k = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[2] = (char)(0x80 | (cp & 0x3F));
        k = 3;
    } else {
        u[0] = (char)(0xF0 | cp >> 18), u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[3] = (char)(0x80 | (cp & 0x3F));
        k = 4;
    }
    return ev_buf_put(b, u, k);
}

void ev_buf_free(ev_buf_t *b)
{
    free(b->p);
    b->p = NULL, b->n = b->cap = 0;
}

size_t ev_utf8_next(const char *s, size_t n, size_t i, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s + i;
    size_t left = n - i;
    unsigned c = u[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t k;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF)
        k = 2, v = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        k = 3, v = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        k = 4, v = c & 0x07, min = 0x10000;
    else
        goto bad;
    if (left < k)
        goto bad;
    for (size_t j = 1; j < k; j++) {
        if ((u[j] & 0xC0) != 0x80)
            goto bad;
        v = v << 6 | (u[j] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        goto bad;
    *cp = v;
    return k;
bad:
    *cp = 0xDC00 + c;
    return 1;
}

bool ev_py_space(uint32_t c)
{
    if (c < 0x80)
        return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20);
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

/* The length of the code point that ends at s[n-1] (a valid one or a byte). */
static size_t last_cp(const char *s, size_t n, uint32_t *cp)
{
    size_t back = 1;
    while (back < 4 && back < n && ((unsigned char)s[n - back] & 0xC0) == 0x80)
        back++;
    for (; back > 1; back--) // the longest decodable suffix that ends exactly at n
        if (((unsigned char)s[n - back] & 0xC0) != 0x80 && ev_utf8_next(s, n, n - back, cp) == back)
            return back;
    ev_utf8_next(s, n, n - 1, cp);
    return 1;
}

size_t ev_rstrip(const char *s, size_t n)
{
    while (n) {
        uint32_t cp;
        size_t k = last_cp(s, n, &cp);
        if (!ev_py_space(cp))
            break;
        n -= k;
    }
    return n;
}

size_t ev_lstrip(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = ev_utf8_next(s, n, i, &cp);
        if (!ev_py_space(cp))
            break;
        i += k;
    }
    return i;
}

/* Python's Cased and Case_Ignorable properties, as far as utf8proc tells them:
 * cased = a letter of case Lu/Ll/Lt or a code point with a case mapping;
 * case-ignorable = Mn, Me, Cf, Lm, Sk or Word_Break MidLetter/MidNumLet/
 * Single_Quote. They only decide between σ and ς. */
static bool is_cased(uint32_t c)
{
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT ||
           utf8proc_tolower((utf8proc_int32_t)c) != (utf8proc_int32_t)c ||
           utf8proc_toupper((utf8proc_int32_t)c) != (utf8proc_int32_t)c;
}

static bool is_case_ignorable(uint32_t c)
{
    switch (c) {
    case 0x27: case 0x2E: case 0x3A: case 0xB7: case 0x387: case 0x55F: case 0x5F4: case 0x2018: case 0x2019:
    case 0x2024: case 0x2027: case 0xFE13: case 0xFE52: case 0xFE55: case 0xFF07: case 0xFF0E: case 0xFF1A:
        return true;
    default: break;
    }
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    return cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_ME || cat == UTF8PROC_CATEGORY_CF ||
           cat == UTF8PROC_CATEGORY_LM || cat == UTF8PROC_CATEGORY_SK;
}

/* Σ at s[i, i+k): final (ς) when a cased letter precedes it and none follows,
 * case-ignorable code points skipped on both sides. */
static bool final_sigma(const char *s, size_t n, size_t i, size_t k)
{
    size_t j = i;
    bool cased = false;
    while (j > 0) {
        uint32_t c;
        size_t b = last_cp(s, j, &c);
        j -= b;
        if (!is_case_ignorable(c)) {
            cased = is_cased(c);
            break;
        }
    }
    if (!cased)
        return false;
    for (j = i + k; j < n;) {
        uint32_t c;
        j += ev_utf8_next(s, n, j, &c);
        if (!is_case_ignorable(c))
            return !is_cased(c);
    }
    return true;
}

int ev_lower(const char *s, size_t n, ev_buf_t *out)
{
    if (ev_buf_reserve(out, n + 1))
        return -1;
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) { // ASCII runs: the common case
            size_t j = i;
            while (j < n && (unsigned char)s[j] < 0x80)
                j++;
            if (ev_buf_reserve(out, j - i))
                return -1;
            for (size_t q = i; q < j; q++)
                out->p[out->n++] = (char)(s[q] >= 'A' && s[q] <= 'Z' ? s[q] + 32 : s[q]);
            out->p[out->n] = 0;
            i = j;
            continue;
        }
        uint32_t cp;
        size_t k = ev_utf8_next(s, n, i, &cp);
        int rc;
        if (cp == 0x130) // İ: the one unconditional full lowercase mapping
            rc = ev_buf_put(out, "i\xCC\x87", 3);
        else if (cp == 0x3A3)
            rc = ev_buf_put_cp(out, final_sigma(s, n, i, k) ? 0x3C2 : 0x3C3);
        else if (cp >= 0xDC80 && cp <= 0xDCFF)
            rc = ev_buf_put(out, s + i, 1);
        else
            rc = ev_buf_put_cp(out, (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp));
        if (rc)
            return -1;
        i += k;
    }
    return 0;
}

int ev_split(const char *s, size_t n, ev_spans_t *out)
{
    if (n > UINT32_MAX)
        return -1;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k;
        // skip whitespace
        while (i < n) {
            unsigned char c = (unsigned char)s[i];
            if (c < 0x80) {
                if (!((c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20)))
                    break;
                i++;
                continue;
            }
            k = ev_utf8_next(s, n, i, &cp);
            if (!ev_py_space(cp))
                break;
            i += k;
        }
        if (i >= n)
            break;
        size_t start = i;
        while (i < n) {
            unsigned char c = (unsigned char)s[i];
            if (c < 0x80) {
                if ((c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20))
                    break;
                i++;
                continue;
            }
            k = ev_utf8_next(s, n, i, &cp);
            if (ev_py_space(cp))
                break;
            i += k;
        }
        if (out->n == out->cap) {
            size_t cap = out->cap ? out->cap * 2 : 32;
            ev_span_t *v = realloc(out->v, cap * sizeof *v);
            if (!v)
                return -1;
            out->v = v, out->cap = cap;
        }
        out->v[out->n++] = (ev_span_t){(uint32_t)start, (uint32_t)(i - start)};
    }
    return 0;
}

void ev_spans_free(ev_spans_t *t)
{
    free(t->v);
    t->v = NULL, t->n = t->cap = 0;
}

uint64_t ev_hash(const void *p, size_t n)
{
    const unsigned char *u = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ u[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

/* ---- intern table: strings in one arena, open addressing over ids */

struct ev_intern {
    char *arena;
    size_t arena_n, arena_cap;
    struct ent {
        size_t off;
        uint32_t len;
        uint64_t hash;
    } *ents;
    uint32_t n, ents_cap;
    uint32_t *slots; // id + 1; 0: empty
    size_t nslots;   // a power of two
};

ev_intern_t *ev_intern_new(void)
{
    ev_intern_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->nslots = 1024;
    t->slots = calloc(t->nslots, sizeof *t->slots);
    if (!t->slots) {
        free(t);
        return NULL;
    }
    return t;
}

void ev_intern_destroy(ev_intern_t **tp)
{
    ev_intern_t *t = *tp;
    if (!t)
        return;
    free(t->arena);
    free(t->ents);
    free(t->slots);
    free(t);
    *tp = NULL;
}

static uint32_t lookup(const ev_intern_t *t, const char *s, size_t n, uint64_t h, size_t *slot)
{
    size_t mask = t->nslots - 1, i = (size_t)h & mask;
    for (;;) {
        uint32_t v = t->slots[i];
        if (!v) {
            *slot = i;
            return UINT32_MAX;
        }
        const struct ent *e = &t->ents[v - 1];
        if (e->hash == h && e->len == n && memcmp(t->arena + e->off, s, n) == 0)
            return v - 1;
        i = (i + 1) & mask;
    }
}

uint32_t ev_intern_find(const ev_intern_t *t, const char *s, size_t n)
{
    size_t slot;
    return lookup(t, s, n, ev_hash(s, n), &slot);
}

static int grow_slots(ev_intern_t *t)
{
    size_t ns = t->nslots * 2;
    uint32_t *slots = calloc(ns, sizeof *slots);
    if (!slots)
        return -1;
    for (uint32_t id = 0; id < t->n; id++) {
        size_t i = (size_t)t->ents[id].hash & (ns - 1);
        while (slots[i])
            i = (i + 1) & (ns - 1);
        slots[i] = id + 1;
    }
    free(t->slots);
    t->slots = slots, t->nslots = ns;
    return 0;
}

uint32_t ev_intern(ev_intern_t *t, const char *s, size_t n)
{
    uint64_t h = ev_hash(s, n);
    size_t slot;
    uint32_t id = lookup(t, s, n, h, &slot);
    if (id != UINT32_MAX)
        return id;
    if (n > UINT32_MAX || t->n >= UINT32_MAX - 1)
        return UINT32_MAX;
    if ((size_t)(t->n + 1) * 2 > t->nslots) {
        if (grow_slots(t))
            return UINT32_MAX;
        lookup(t, s, n, h, &slot);
    }
    if (t->n == t->ents_cap) {
        uint32_t cap = t->ents_cap ? t->ents_cap * 2 : 256;
        struct ent *e = realloc(t->ents, (size_t)cap * sizeof *e);
        if (!e)
            return UINT32_MAX;
        t->ents = e, t->ents_cap = cap;
    }
    if (t->arena_cap - t->arena_n < n + 1) {
        size_t cap = t->arena_cap ? t->arena_cap : 4096;
        while (cap - t->arena_n < n + 1)
            cap *= 2;
        char *a = realloc(t->arena, cap);
        if (!a)
            return UINT32_MAX;
        t->arena = a, t->arena_cap = cap;
    }
    memcpy(t->arena + t->arena_n, s, n);
    t->arena[t->arena_n + n] = 0;
    t->ents[t->n] = (struct ent){t->arena_n, (uint32_t)n, h};
    t->arena_n += n + 1;
    t->slots[slot] = t->n + 1;
    return t->n++;
}

const char *ev_intern_str(const ev_intern_t *t, uint32_t id, size_t *n)
{
    if (n)
        *n = t->ents[id].len;
    return t->arena + t->ents[id].off;
}

uint32_t ev_intern_count(const ev_intern_t *t) { return t->n; }
