/* fuzz_safetensors — libFuzzer target for the safetensors reader: every
 * accepted file must hold only tensors whose bytes lie inside the buffer, be
 * findable by name, convert (when a float dtype) without reading outside, and
 * write back to a file that reads back the same; every refusal is one line. */
#include "../../models/safetensors.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512] = "";
    // an exact-size copy, so that ASan sees any read past the end
    uint8_t *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    st_file_t *f = st_open_mem(buf, size, "fuzz.safetensors", err, sizeof err);
    if (!f) {
        if (!err[0] || memchr(err, '\n', strnlen(err, sizeof err)))
            abort(); // a refusal says why, on one line
        free(buf);
        return 0;
    }
    size_t total = 0;
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor_t *t = st_get(f, i);
        const uint8_t *p = t->data;
        if (p < buf || p + t->nbytes > buf + size || st_find(f, t->name) != t)
            abort();
        if (t->nbytes != (size_t)t->numel * st_dtype_size(t->dtype))
            abort();
        total += t->nbytes;
        if (t->numel <= 4096 &&
            (t->dtype == ST_F32 || t->dtype == ST_BF16 || t->dtype == ST_F16 || t->dtype == ST_F64)) {
            float *dst = malloc((size_t)t->numel * 4 + 4);
            if (st_read_f32(t, dst, (size_t)t->numel, err, sizeof err) != 0)
                abort();
            free(dst);
        }
    }
    if (total > size)
        abort();
    // write it back (small files only) and read it again: same tensors
    if (size <= 65536) {
        char path[64];
        snprintf(path, sizeof path, "/tmp/fuzz_safetensors.%d", (int)getpid());
        st_writer_t *w = st_writer_new();
        int ok = 1;
        for (int i = 0; ok && i < st_metadata_count(f); i++)
            ok = st_writer_set_metadata(w, st_metadata_key(f, i), st_metadata_value(f, i), err, sizeof err) == 0;
        for (int i = 0; ok && i < st_count(f); i++) {
            const st_tensor_t *t = st_get(f, i);
            // names the writer refuses: empty ones (HF accepts them)
            if (!t->name[0])
                ok = 0;
            else if (st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, err, sizeof err) != 0)
                abort();
        }
        if (ok && st_writer_write(w, path, err, sizeof err) == 0) {
            st_file_t *g = st_open(path, err, sizeof err);
            if (!g || st_count(g) != st_count(f))
                abort();
            for (int i = 0; i < st_count(f); i++) {
                const st_tensor_t *a = st_get(f, i), *b = st_find(g, a->name);
                if (!b || a->nbytes != b->nbytes || a->dtype != b->dtype || a->ndim != b->ndim ||
                    memcmp(a->data, b->data, a->nbytes) != 0)
                    abort();
            }
            st_close(&g);
            unlink(path);
        }
        st_writer_destroy(&w);
    }
    st_close(&f);
    free(buf);
    return 0;
}
