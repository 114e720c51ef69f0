/* lines.h — the lines of JSONL files: read in order, or indexed for a
 * shuffle, and the seeded permutation that shuffles them.
 *
 * In order, a file is read through one buffer with memchr; nothing but the
 * current line is held. Shuffled, every file is first scanned once for its
 * line starts (8 bytes a line, the only memory that grows with the data),
 * then lines are read with pread in the order of a keyed Feistel
 * permutation of [0, N): a bijection computed per position, so the order
 * costs no memory and is the same on every machine for the same seed. */
#ifndef BAGEL_READ_LINES_H
#define BAGEL_READ_LINES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- sequential reading ---- */

typedef struct {
    int fd;
    bool own; // close fd at the end
    char *buf;
    size_t cap, start, end;
    bool eof;
    size_t max_line; // longer lines are skipped and reported with their length
    uint64_t offset; // file offset of buf[start]
} lines_t;

/* fd is read from its current position; own: close it at lines_close. */
int lines_open(lines_t *l, int fd, bool own, size_t max_line, char *err, size_t errsize);
/* 1: *line, *len is the next line without its "\n" (and "\r"), valid until
 * the next call; *too_long is then 0. A line over max_line gives 1 with
 * *line NULL and *too_long its length in bytes. 0: end of file. -1: read
 * error (err). *offset (may be NULL) gets the line's starting offset. */
int lines_next(lines_t *l, const char **line, size_t *len, uint64_t *too_long, uint64_t *offset, char *err,
               size_t errsize);
void lines_close(lines_t *l);

/* ---- index for shuffling ---- */

typedef struct {
    uint64_t *start; // start[i]: offset of line i in its file; N entries
    uint64_t n;
    uint64_t cap;
} lines_index_t;

/* Append the line starts of an open file. */
int lines_index_add(lines_index_t *x, int fd, size_t max_line, char *err, size_t errsize);
void lines_index_free(lines_index_t *x);

/* ---- permutation ---- */

typedef struct {
    uint64_t n;
    int half; // bits of each half of the Feistel domain
    uint64_t key[6];
} lines_perm_t;

void lines_perm_init(lines_perm_t *p, uint64_t n, uint64_t seed, uint64_t epoch);
/* The index at position i of the permuted order, i < n. */
uint64_t lines_perm_at(const lines_perm_t *p, uint64_t i);

#endif
