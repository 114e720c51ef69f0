/* text.h — the string machinery the text metrics share: growable buffers,
 * UTF-8 decoding that never fails, Python's notions of whitespace and of
 * str.lower(), whitespace splitting, and a string intern table.
 *
 * The references are Python programs working on str (code points); these
 * helpers reproduce the parts of Python's behaviour the metrics depend on.
 * Input is meant to be valid UTF-8 (bagel-eval rejects anything else before
 * scoring); invalid bytes still decode, each as one code point of its own
 * (0xDC80 + byte, as Python's surrogateescape would), so nothing here can read
 * out of bounds or loop on bad input. */
#ifndef BAGEL_EVAL_TEXT_H
#define BAGEL_EVAL_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *p;
    size_t n, cap;
} ev_buf_t;

/* 0, or -1 when out of memory (the buffer keeps what it had). */
int ev_buf_reserve(ev_buf_t *b, size_t extra);
int ev_buf_put(ev_buf_t *b, const void *s, size_t n);
int ev_buf_putc(ev_buf_t *b, char c);
int ev_buf_put_cp(ev_buf_t *b, uint32_t cp); // UTF-8 of one code point
void ev_buf_free(ev_buf_t *b);

/* The code point at s[i] (i < n) into *cp; returns the bytes it took (1-4). */
size_t ev_utf8_next(const char *s, size_t n, size_t i, uint32_t *cp);

/* Python's str.isspace() set, which str.split(), str.strip() and re's \s use. */
bool ev_py_space(uint32_t cp);
/* The length of s without trailing / the offset past leading Python whitespace. */
size_t ev_rstrip(const char *s, size_t n);
size_t ev_lstrip(const char *s, size_t n);

/* Python str.lower() of s[0,n) appended to out: full lowercasing (U+0130 to
 * "i" U+0307) and the Final_Sigma rule. 0 or -1 (out of memory). */
int ev_lower(const char *s, size_t n, ev_buf_t *out);

/* A token: s + off, len bytes. */
typedef struct {
    uint32_t off, len;
} ev_span_t;

typedef struct {
    ev_span_t *v;
    size_t n, cap;
} ev_spans_t;

/* Python str.split(): the runs of s[0,n) between Python whitespace, appended
 * to out. 0 or -1 (out of memory, or a text over 4 GiB). */
int ev_split(const char *s, size_t n, ev_spans_t *out);
void ev_spans_free(ev_spans_t *t);

/* FNV-1a, 64 bits, then mixed: the hash of every table here. */
uint64_t ev_hash(const void *p, size_t n);

/* Strings to dense ids 0, 1, 2, ... (equal strings, equal ids). */
typedef struct ev_intern ev_intern_t;
ev_intern_t *ev_intern_new(void);
void ev_intern_destroy(ev_intern_t **t);
/* The id of s[0,n), added when new; UINT32_MAX when out of memory. */
uint32_t ev_intern(ev_intern_t *t, const char *s, size_t n);
/* The id of s[0,n) or UINT32_MAX when it was never added. */
uint32_t ev_intern_find(const ev_intern_t *t, const char *s, size_t n);
const char *ev_intern_str(const ev_intern_t *t, uint32_t id, size_t *n);
uint32_t ev_intern_count(const ev_intern_t *t);

#endif
