/* golden.h — reading golden tensors (safetensors written by the PyTorch
 * references, tests/reference/FORMAT.md) and the one error measure the
 * tests compare them by. */
#ifndef BAGEL_GOLDEN_H
#define BAGEL_GOLDEN_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../models/safetensors.h"

/* element i of an I64 / F32 tensor (the data may be unaligned) */
static inline int64_t golden_i64(const st_tensor_t *t, int64_t i)
{
    int64_t v;
    memcpy(&v, (const char *)t->data + 8 * i, 8);
    return v;
}

static inline float golden_f32(const st_tensor_t *t, int64_t i)
{
    float v;
    memcpy(&v, (const char *)t->data + 4 * i, 4);
    return v;
}

/* ‖a − ref‖ / ‖ref‖ (‖a − ref‖ where ref is all zero) */
static inline double golden_rel_err(const float *a, const float *ref, size_t n)
{
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
        r += (double)ref[i] * ref[i];
    }
    return r > 0 ? sqrt(d / r) : sqrt(d);
}

#endif
