/* lines.c — see lines.h. */
#include "lines.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINES_CHUNK (1u << 20)

int lines_open(lines_t *l, int fd, bool own, size_t max_line, char *err, size_t errsize)
{
    memset(l, 0, sizeof *l);
    l->fd = fd;
    l->own = own;
    l->max_line = max_line;
    l->cap = 4 * (size_t)LINES_CHUNK;
    if (!(l->buf = malloc(l->cap))) {
        snprintf(err, errsize, "out of memory");
        return -1;
    }
    return 0;
}

void lines_close(lines_t *l)
{
    if (l->own && l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    free(l->buf);
    l->buf = NULL;
}

/* Read more bytes after buf[end]; 0 at end of file, -1 on error. */
static ssize_t fill(lines_t *l, char *err, size_t errsize)
{
    if (l->start > 0 && (l->end == l->cap || l->cap - l->end < LINES_CHUNK)) {
        memmove(l->buf, l->buf + l->start, l->end - l->start);
        l->end -= l->start;
        l->start = 0;
    }
    if (l->end == l->cap) {
        // a line longer than the buffer but within max_line: grow
        size_t cap = l->cap * 2;
        char *b = realloc(l->buf, cap);
        if (!b) {
            snprintf(err, errsize, "out of memory");
            return -1;
        }
        l->buf = b, l->cap = cap;
    }
    for (;;) {
        ssize_t n = read(l->fd, l->buf + l->end, l->cap - l->end);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errsize, "%s", strerror(errno));
            return -1;
        }
        l->end += (size_t)n;
        if (n == 0)
            l->eof = true;
        return n;
    }
}

int lines_next(lines_t *l, const char **line, size_t *len, uint64_t *too_long, uint64_t *offset, char *err,
               size_t errsize)
{
    size_t scanned = 0;   // bytes after start known to hold no newline
    uint64_t skipped = 0; // bytes of an over-long line already dropped
    for (;;) {
        char *p =
            l->start + scanned < l->end ? memchr(l->buf + l->start + scanned, '\n', l->end - l->start - scanned) : NULL;
        if (p || (l->eof && l->end > l->start) || (l->eof && skipped)) {
            size_t n = p ? (size_t)(p - (l->buf + l->start)) : l->end - l->start;
            if (offset)
                *offset = l->offset - skipped;
            uint64_t total = skipped + n;
            size_t adv = n + (p ? 1 : 0);
            if (total > l->max_line) {
                *line = NULL;
                *len = 0;
                *too_long = total;
            } else {
                *line = l->buf + l->start;
                *len = n && l->buf[l->start + n - 1] == '\r' ? n - 1 : n;
                *too_long = 0;
            }
            l->start += adv;
            l->offset += adv;
            return 1;
        }
        if (l->eof)
            return 0;
        scanned = l->end - l->start;
        if (skipped || scanned > l->max_line) {
            // over the limit: drop what is buffered and keep scanning for its end
            skipped += scanned;
            l->offset += scanned;
            l->start = l->end;
            scanned = 0;
        }
        // fill may move the buffer; scanned stays relative to start
        if (fill(l, err, errsize) < 0)
            return -1;
    }
}

int lines_index_add(lines_index_t *x, int fd, size_t max_line, char *err, size_t errsize)
{
    lines_t l;
    if (lines_open(&l, fd, false, max_line, err, errsize))
        return -1;
    const char *line;
    size_t len;
    uint64_t tl, off;
    int rc;
    while ((rc = lines_next(&l, &line, &len, &tl, &off, err, errsize)) > 0) {
        if (x->n == x->cap) {
            uint64_t cap = x->cap ? 2 * x->cap : 1 << 16;
            uint64_t *s = realloc(x->start, cap * sizeof *s);
            if (!s) {
                snprintf(err, errsize, "out of memory indexing %llu lines (8 bytes a line)", (unsigned long long)x->n);
                lines_close(&l);
                return -1;
            }
            x->start = s, x->cap = cap;
        }
        x->start[x->n++] = off;
    }
    lines_close(&l);
    return rc;
}

void lines_index_free(lines_index_t *x)
{
    free(x->start);
    memset(x, 0, sizeof *x);
}

/* ---- permutation ---- */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void lines_perm_init(lines_perm_t *p, uint64_t n, uint64_t seed, uint64_t epoch)
{
    memset(p, 0, sizeof *p);
    p->n = n;
    int bits = 2;
    while (bits < 64 && (1ull << bits) < n)
        bits++;
    bits += bits & 1; // an even split: the domain is at most 4n
    p->half = bits / 2;
    uint64_t k = splitmix64(seed ^ splitmix64(epoch + 0x5bd1e995));
    for (int i = 0; i < 6; i++)
        p->key[i] = k = splitmix64(k);
}

uint64_t lines_perm_at(const lines_perm_t *p, uint64_t i)
{
    uint64_t mask = p->half >= 32 ? 0xffffffffull : (1ull << p->half) - 1;
    uint64_t x = i;
    // cycle-walking: apply the permutation of [0, 2^bits) until the value
    // falls in [0, n); a bijection of [0, n) since each cycle is followed
    do {
        uint64_t l = x >> p->half, r = x & mask;
        for (int k = 0; k < 6; k++) {
            uint64_t t = l ^ (splitmix64(r ^ p->key[k]) & mask);
            l = r, r = t;
        }
        x = l << p->half | r;
    } while (x >= p->n);
    return x;
}
