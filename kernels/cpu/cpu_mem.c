/* cpu_mem.c — memory ops of the CPU backend: backend memory is host memory,
 * so upload and download are copies and sync has nothing to wait for. */
#include <stdlib.h>
#include <string.h>

#include "cpu.h"

/* 64-byte alignment: a cache line, and the widest vector loads (AVX-512).
 * A zero-byte request still returns a distinct pointer, so that NULL always
 * means failure. */
void *cpu_alloc(size_t bytes)
{
    size_t size = (bytes + 63) & ~(size_t)63;
    if (size < bytes)
        return NULL; /* overflow */
    if (size == 0)
        size = 64;
    void *p = NULL;
    if (posix_memalign(&p, 64, size) != 0)
        return NULL;
    memset(p, 0, size);
    return p;
}

void cpu_free(void *p) { free(p); }

/* memset/memcpy with a NULL pointer are undefined even for 0 bytes */
void cpu_zero(void *p, size_t bytes)
{
    if (bytes)
        memset(p, 0, bytes);
}

void cpu_upload(void *dst, const void *host_src, size_t bytes)
{
    if (bytes)
        memcpy(dst, host_src, bytes);
}

void cpu_download(void *host_dst, const void *src, size_t bytes)
{
    if (bytes)
        memcpy(host_dst, src, bytes);
}

void cpu_sync(void) {}
