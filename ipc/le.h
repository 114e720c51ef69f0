/* le.h — little-endian integers in byte buffers, as the wire formats of
 * ipc/ lay them out (message seqs, acknowledgements, shared-memory
 * descriptors and pool headers). */
#ifndef BAGEL_LE_H
#define BAGEL_LE_H

#include <stdint.h>

static inline void le32_put(unsigned char *p, uint32_t v)
{
    for (int b = 0; b < 4; b++)
        p[b] = (unsigned char)(v >> (8 * b));
}

static inline void le64_put(unsigned char *p, uint64_t v)
{
    for (int b = 0; b < 8; b++)
        p[b] = (unsigned char)(v >> (8 * b));
}

static inline uint32_t le32_get(const unsigned char *p)
{
    uint32_t v = 0;
    for (int b = 3; b >= 0; b--)
        v = v << 8 | p[b];
    return v;
}

static inline uint64_t le64_get(const unsigned char *p)
{
    uint64_t v = 0;
    for (int b = 7; b >= 0; b--)
        v = v << 8 | p[b];
    return v;
}

#endif
