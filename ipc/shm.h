/* shm.h — message bytes through shared memory between processes of one host.
 *
 * A ZeroMQ writer whose every address is ipc:// or inproc:// puts each
 * message's bytes in a slot of its pool, a sealed memfd, and sends a
 * 48-byte descriptor in their place. The reader opens the memfd through
 * /proc/PID/fd/FD, checks that it is the file the descriptor names (device,
 * inode, seals, header), copies the slot out and checks that the slot was
 * not rewritten meanwhile. The writer frees the slot when the message is
 * acknowledged. A reader that cannot open the file (another user, another
 * PID namespace, BAGEL_IPC_SHM=off) refuses the descriptor and the writer
 * sends those bytes, and all later ones, through the socket (docs/ipc.md,
 * "Shared memory").
 *
 * File layout: a 64-byte header ("BAGELSHM", version, slot count, slot
 * size, data offset), one 64-byte line per slot holding its generation,
 * then the slots from a page-aligned offset. */
#ifndef BAGEL_SHM_H
#define BAGEL_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHM_DESC_LEN 48

/* Is BAGEL_IPC_SHM unset or anything but 0/off/no/false? */
bool shm_enabled(void);

/* Does this message frame look like a descriptor (its first byte, 0xc1, is
 * one msgpack never uses, so it is never a record)? */
bool shm_is_desc(const void *p, size_t n);

/* ---- writer side ---- */

typedef struct shm_pool shm_pool_t;

/* nslots slots of slot_size bytes; NULL with why when memfd or mmap fail. */
shm_pool_t *shm_pool_new(unsigned nslots, size_t slot_size, char *why, size_t why_len);
void shm_pool_destroy(shm_pool_t **p);
size_t shm_pool_slot_size(const shm_pool_t *p);
/* A free slot to write up to slot_size bytes into, its generation already
 * moved on (a reader still copying the slot's old bytes will notice); NULL
 * when every slot is taken. */
void *shm_pool_acquire(shm_pool_t *p, unsigned *slot);
/* The slot holds len bytes: fill desc (SHM_DESC_LEN bytes) naming them. */
void shm_pool_commit(shm_pool_t *p, unsigned slot, size_t len, unsigned char *desc);
/* A committed slot's bytes (to send them again through the socket). */
const void *shm_pool_bytes(const shm_pool_t *p, unsigned slot, size_t *len);
void shm_pool_release(shm_pool_t *p, unsigned slot);
unsigned shm_pool_free_count(const shm_pool_t *p);

/* ---- reader side ---- */

typedef struct {
    int32_t pid, fd;
    uint64_t dev, ino;
    uint32_t slot, len;
    uint64_t gen;
} shm_desc_t;

/* 0, or -1 with why when p is not a well-formed descriptor. */
int shm_desc_parse(const void *p, size_t n, shm_desc_t *d, char *why, size_t why_len);

typedef struct shm_view shm_view_t;

shm_view_t *shm_view_new(void);
void shm_view_destroy(shm_view_t **v);
/* Copy the descriptor's bytes (d->len of them) into a buffer that alloc
 * returns (called once the length is known to lie within the pool; NULL:
 * out of memory, -1). 0: done. -1: the writer's file cannot be opened or is
 * not one of our pools (why): refuse the descriptor, the writer sends the
 * bytes again. -2: the descriptor is outside its pool, or the slot was
 * rewritten while it was copied (why): the message is lost (end-to-end
 * delivery sends its records again). */
int shm_view_copy(shm_view_t *v, const shm_desc_t *d, void *(*alloc)(void *arg, size_t len), void *arg, char *why,
                  size_t why_len);

#endif
