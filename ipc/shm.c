/* shm.c — message bytes through a sealed memfd (shm.h). */
#define _GNU_SOURCE
#include "shm.h"

#include "le.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HDR_LEN   64
#define LINE      64
#define VERSION   1
#define MAX_SLOTS 65536u
#define MAX_SLOT  ((uint64_t)64 << 20)

static const unsigned char FILE_MAGIC[8] = {'B', 'A', 'G', 'E', 'L', 'S', 'H', 'M'};
static const unsigned char DESC_MAGIC[8] = {0xc1, 'b', 's', 'h', 'm', '0', '0', '1'};

bool shm_enabled(void)
{
    const char *e = getenv("BAGEL_IPC_SHM");
    return !e || !(strcmp(e, "0") == 0 || strcasecmp(e, "off") == 0 || strcasecmp(e, "no") == 0 ||
                   strcasecmp(e, "false") == 0);
}

bool shm_is_desc(const void *p, size_t n) { return n >= 1 && *(const unsigned char *)p == DESC_MAGIC[0]; }

static size_t data_offset(unsigned nslots) { return ((size_t)HDR_LEN + (size_t)LINE * nslots + 4095) & ~(size_t)4095; }

static uint64_t *gen_line(unsigned char *base, unsigned slot) { return (uint64_t *)(base + HDR_LEN + (size_t)LINE * slot); }

/* ---- writer side ---- */

struct shm_pool {
    int fd;
    unsigned char *base;
    size_t size, data_off, slot_size;
    unsigned nslots;
    uint64_t dev, ino, next_gen;
    unsigned *free; // a stack: the slot freed last is used first, so few pages are ever touched
    unsigned nfree;
    uint64_t *gen;    // each slot's generation as committed
    uint32_t *len;    // each slot's byte count as committed
};

shm_pool_t *shm_pool_new(unsigned nslots, size_t slot_size, char *why, size_t why_len)
{
    if (nslots == 0 || nslots > MAX_SLOTS || slot_size == 0 || slot_size > MAX_SLOT) {
        snprintf(why, why_len, "shared memory: %u slots of %zu bytes is out of range", nslots, slot_size);
        return NULL;
    }
    shm_pool_t *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    p->fd = -1;
    p->nslots = nslots;
    p->slot_size = slot_size;
    p->data_off = data_offset(nslots);
    p->size = p->data_off + (size_t)nslots * slot_size;
    p->next_gen = 1;
    struct stat st;
    if (!(p->free = malloc(nslots * sizeof *p->free)) || !(p->gen = calloc(nslots, sizeof *p->gen)) ||
        !(p->len = calloc(nslots, sizeof *p->len))) {
        snprintf(why, why_len, "out of memory");
        goto fail;
    }
    // the file is only ever as large as it is at creation: sealed against
    // shrinking, so a reader's mapping can never fault past its end
    if ((p->fd = memfd_create("bagel-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING)) < 0 ||
        ftruncate(p->fd, (off_t)p->size) != 0 ||
        fcntl(p->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0 || fstat(p->fd, &st) != 0) {
        snprintf(why, why_len, "shared memory: %s", strerror(errno));
        goto fail;
    }
    p->dev = (uint64_t)st.st_dev;
    p->ino = (uint64_t)st.st_ino;
    p->base = mmap(NULL, p->size, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd, 0);
    if (p->base == MAP_FAILED) {
        p->base = NULL;
        snprintf(why, why_len, "shared memory: mmap: %s", strerror(errno));
        goto fail;
    }
    memcpy(p->base, FILE_MAGIC, 8);
    le32_put(p->base + 8, VERSION);
    le32_put(p->base + 12, nslots);
    le64_put(p->base + 16, slot_size);
    le64_put(p->base + 24, p->data_off);
    for (unsigned i = 0; i < nslots; i++)
        p->free[i] = nslots - 1 - i; // slot 0 on top
    p->nfree = nslots;
    return p;
fail:
    shm_pool_destroy(&p);
    return NULL;
}

void shm_pool_destroy(shm_pool_t **pp)
{
    shm_pool_t *p = pp ? *pp : NULL;
    if (!p)
        return;
    *pp = NULL;
    if (p->base)
        munmap(p->base, p->size);
    if (p->fd >= 0)
        close(p->fd);
    free(p->free);
    free(p->gen);
    free(p->len);
    free(p);
}

size_t shm_pool_slot_size(const shm_pool_t *p) { return p->slot_size; }
unsigned shm_pool_free_count(const shm_pool_t *p) { return p->nfree; }

void *shm_pool_acquire(shm_pool_t *p, unsigned *slot)
{
    if (p->nfree == 0)
        return NULL;
    unsigned s = p->free[--p->nfree];
    p->gen[s] = p->next_gen++;
    // the new generation is visible before any of the new bytes: a reader
    // that copied some of them sees it when it checks after its copy
    __atomic_store_n(gen_line(p->base, s), p->gen[s], __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    *slot = s;
    return p->base + p->data_off + (size_t)s * p->slot_size;
}

void shm_pool_commit(shm_pool_t *p, unsigned slot, size_t len, unsigned char *desc)
{
    p->len[slot] = (uint32_t)len;
    memcpy(desc, DESC_MAGIC, 8);
    le32_put(desc + 8, (uint32_t)getpid());
    le32_put(desc + 12, (uint32_t)p->fd);
    le64_put(desc + 16, p->dev);
    le64_put(desc + 24, p->ino);
    le32_put(desc + 32, slot);
    le32_put(desc + 36, (uint32_t)len);
    le64_put(desc + 40, p->gen[slot]);
}

const void *shm_pool_bytes(const shm_pool_t *p, unsigned slot, size_t *len)
{
    *len = p->len[slot];
    return p->base + p->data_off + (size_t)slot * p->slot_size;
}

void shm_pool_release(shm_pool_t *p, unsigned slot)
{
    if (slot < p->nslots && p->nfree < p->nslots)
        p->free[p->nfree++] = slot;
}

/* ---- reader side ---- */

int shm_desc_parse(const void *buf, size_t n, shm_desc_t *d, char *why, size_t why_len)
{
    const unsigned char *p = buf;
    if (n != SHM_DESC_LEN || memcmp(p, DESC_MAGIC, 8) != 0) {
        snprintf(why, why_len, "not a shared-memory descriptor (%zu bytes; %d expected, magic %s)", n,
                 SHM_DESC_LEN, n >= 8 && memcmp(p, DESC_MAGIC, 8) == 0 ? "right" : "wrong");
        return -1;
    }
    d->pid = (int32_t)le32_get(p + 8);
    d->fd = (int32_t)le32_get(p + 12);
    d->dev = le64_get(p + 16);
    d->ino = le64_get(p + 24);
    d->slot = le32_get(p + 32);
    d->len = le32_get(p + 36);
    d->gen = le64_get(p + 40);
    if (d->pid <= 0 || d->fd < 0) {
        snprintf(why, why_len, "shared-memory descriptor names process %d, file %d", d->pid, d->fd);
        return -1;
    }
    // a writer numbers its slots' generations from 1; a slot never written
    // holds 0, so generation 0 would let a descriptor read an unused slot
    if (d->gen == 0) {
        snprintf(why, why_len, "shared-memory descriptor names generation 0 of slot %u (no message)", d->slot);
        return -1;
    }
    return 0;
}

#define VIEW_MAPS 32
#define VIEW_IDLE 30.0 // seconds: a writer's mapping unused this long is let go

typedef struct {
    int32_t pid, fd;
    uint64_t dev, ino;
    unsigned char *base;
    size_t size, data_off, slot_size;
    unsigned nslots;
    double used;
} view_map_t;

struct shm_view {
    view_map_t m[VIEW_MAPS];
    int n;
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

shm_view_t *shm_view_new(void) { return calloc(1, sizeof(shm_view_t)); }

static void view_drop(shm_view_t *v, int i)
{
    munmap(v->m[i].base, v->m[i].size);
    v->m[i] = v->m[--v->n];
}

void shm_view_destroy(shm_view_t **vp)
{
    shm_view_t *v = vp ? *vp : NULL;
    if (!v)
        return;
    *vp = NULL;
    while (v->n > 0)
        view_drop(v, 0);
    free(v);
}

/* Map the writer's pool the descriptor names: NULL (why) when it cannot be
 * opened or is not a pool. The header is read once, here, into the entry:
 * the writer could rewrite it later, the file's size it cannot change. */
static view_map_t *view_open(shm_view_t *v, const shm_desc_t *d, double now, char *why, size_t why_len)
{
    for (int i = 0; i < v->n; i++) // let go of writers gone quiet
        if (now - v->m[i].used > VIEW_IDLE)
            view_drop(v, i--);
    if (v->n == VIEW_MAPS) { // and of the least recently used, when full
        int old = 0;
        for (int i = 1; i < v->n; i++)
            if (v->m[i].used < v->m[old].used)
                old = i;
        view_drop(v, old);
    }
    // The descriptor comes from the wire: the file is looked at through an
    // O_PATH handle (opening nothing: a FIFO or a device named there would
    // block or act on open) and opened for reading only once it is the
    // regular file named.
    char path[64], self[64];
    snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)d->pid, (int)d->fd);
    int pfd = open(path, O_PATH | O_CLOEXEC);
    if (pfd < 0) {
        snprintf(why, why_len, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(pfd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_dev != d->dev ||
        (uint64_t)st.st_ino != d->ino) {
        snprintf(why, why_len, "%s: not the file the descriptor names", path);
        close(pfd);
        return NULL;
    }
    snprintf(self, sizeof self, "/proc/self/fd/%d", pfd);
    int fd = open(self, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    close(pfd);
    if (fd < 0) {
        snprintf(why, why_len, "%s: %s", path, strerror(errno));
        return NULL;
    }
    int seals = fcntl(fd, F_GET_SEALS);
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_dev != d->dev || (uint64_t)st.st_ino != d->ino) {
        snprintf(why, why_len, "%s: not the file the descriptor names", path);
        close(fd);
        return NULL;
    }
    if (seals < 0 || !(seals & F_SEAL_SHRINK) || st.st_size < HDR_LEN) {
        snprintf(why, why_len, "%s: not a sealed shared-memory pool", path);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    unsigned char *base = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (base == MAP_FAILED) {
        snprintf(why, why_len, "%s: mmap: %s", path, strerror(errno));
        return NULL;
    }
    unsigned char hdr[HDR_LEN];
    memcpy(hdr, base, HDR_LEN);
    uint32_t nslots = le32_get(hdr + 12);
    uint64_t slot_size = le64_get(hdr + 16), data_off = le64_get(hdr + 24);
    if (memcmp(hdr, FILE_MAGIC, 8) != 0 || le32_get(hdr + 8) != VERSION || nslots == 0 || nslots > MAX_SLOTS ||
        slot_size == 0 || slot_size > MAX_SLOT || data_off != data_offset(nslots) ||
        data_off + (uint64_t)nslots * slot_size != (uint64_t)size) {
        snprintf(why, why_len, "%s: not a shared-memory pool of version %d", path, VERSION);
        munmap(base, size);
        return NULL;
    }
    view_map_t *m = &v->m[v->n++];
    *m = (view_map_t){d->pid, d->fd, d->dev, d->ino, base, size, (size_t)data_off, (size_t)slot_size, nslots, now};
    return m;
}

int shm_view_copy(shm_view_t *v, const shm_desc_t *d, void *(*alloc)(void *arg, size_t len), void *arg, char *why,
                  size_t why_len)
{
    double now = mono_s();
    view_map_t *m = NULL;
    for (int i = 0; i < v->n && !m; i++)
        if (v->m[i].pid == d->pid && v->m[i].fd == d->fd && v->m[i].dev == d->dev && v->m[i].ino == d->ino)
            m = &v->m[i];
    if (!m && !(m = view_open(v, d, now, why, why_len)))
        return -1;
    m->used = now;
    if (d->slot >= m->nslots || d->len > m->slot_size) {
        snprintf(why, why_len, "shared-memory descriptor: slot %u of %u, %u bytes of at most %zu", d->slot, m->nslots,
                 d->len, m->slot_size);
        return -2;
    }
    const uint64_t *g = (const uint64_t *)(m->base + HDR_LEN + (size_t)LINE * d->slot);
    if (__atomic_load_n(g, __ATOMIC_ACQUIRE) != d->gen) {
        snprintf(why, why_len, "shared-memory slot %u was reused before it was read", d->slot);
        return -2;
    }
    void *dst = alloc(arg, d->len);
    if (!dst) {
        snprintf(why, why_len, "out of memory for %u bytes", d->len);
        return -1;
    }
    memcpy(dst, m->base + m->data_off + (size_t)d->slot * m->slot_size, d->len);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(g, __ATOMIC_RELAXED) != d->gen) {
        snprintf(why, why_len, "shared-memory slot %u was rewritten while it was read", d->slot);
        return -2;
    }
    return 0;
}
