/* fuzz_shm — libFuzzer target for shared-memory descriptors (ipc/shm.h), as a
 * reader gets them from the wire. The input's first byte picks the mode:
 * even, the rest is taken as a descriptor as it is (any process, any file
 * number); odd, the rest overwrites the fields of a good descriptor of a
 * real pool made here (slot, length, generation, device, inode), so that
 * the checks against a mapped pool are reached. Either way the copy stays
 * inside the destination, and a failure says why in one line. */
#include "../../ipc/shm.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SLOT 4096

static shm_pool_t *pool;
static shm_view_t *view;
static unsigned char good[SHM_DESC_LEN];

/* the buffer the view copies into: asked for only once the length is known
 * to fit a slot, so a length from the wire never sizes an allocation */
static void *grab(void *arg, size_t len)
{
    if (len > SLOT)
        abort();
    return *(unsigned char **)arg = malloc(len ? len : 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[256];
    if (!pool) {
        if (!(pool = shm_pool_new(4, SLOT, why, sizeof why)) || !(view = shm_view_new()))
            abort();
        unsigned slot;
        char *p = shm_pool_acquire(pool, &slot);
        memset(p, 0x5a, 100);
        shm_pool_commit(pool, slot, 100, good);
    }
    if (size == 0)
        return 0;
    unsigned char desc[SHM_DESC_LEN + 16];
    size_t n;
    if (data[0] & 1) {
        memcpy(desc, good, SHM_DESC_LEN);
        n = SHM_DESC_LEN;
        // bytes 16.. (device, inode, slot, length, generation) from the input
        size_t k = size - 1 < SHM_DESC_LEN - 16 ? size - 1 : SHM_DESC_LEN - 16;
        memcpy(desc + 16, data + 1, k);
    } else {
        n = size - 1 < sizeof desc ? size - 1 : sizeof desc;
        memcpy(desc, data + 1, n);
    }
    why[0] = 0;
    shm_desc_t d;
    if (shm_desc_parse(desc, n, &d, why, sizeof why) != 0) {
        if (!why[0] || memchr(why, '\n', strnlen(why, sizeof why)))
            abort();
        return 0;
    }
    unsigned char *dst = NULL;
    int rc = shm_view_copy(view, &d, grab, &dst, why, sizeof why);
    if (rc == 0) {
        for (uint32_t i = 0; i < d.len && i < 100; i++)
            if (dst[i] != 0x5a)
                abort(); // only the good slot's bytes can be read whole
    } else if (!why[0] || memchr(why, '\n', strnlen(why, sizeof why))) {
        abort();
    }
    free(dst);
    return 0;
}
