/* checkpoint.h — a model's weights in and out of safetensors with BAGEL's
 * tensor names (bagel-reference.md §5), so that a released BAGEL checkpoint
 * loads here and what is trained here loads in the official code. */
#ifndef BAGEL_CHECKPOINT_H
#define BAGEL_CHECKPOINT_H

#include <stddef.h>

#include "model.h"

/* Writes every parameter (the fixed position tables included, as the
 * official trainer does) to `path` as dtype ST_F32 or ST_BF16. src NULL
 * saves the model's parameters; otherwise a parameter block of the same
 * layout (the EMA copy). */
int model_save(const model_t *m, const float *src, const char *path, int dtype, char *err, size_t errlen);

/* Loads `path` (a .safetensors file, an index json, or a checkpoint
 * directory: ema.safetensors is not chosen implicitly, model.safetensors
 * is) into dst (NULL: the model's parameters). Every parameter but the fixed
 * tables (recomputed, as the official resume does) must be present with its
 * shape; F32, BF16 and F16 are read. A SigLIP patch embedding stored as the
 * convolution [Dv, 3, p, p] is converted to BAGEL's linear form. Loading is
 * strict: every missing and every mis-shaped tensor is named in the error.
 * Tensors the model does not have are counted in *n_extra (may be NULL) and,
 * on success, named in err as a note (err is "" when there are none). */
int model_load(model_t *m, float *dst, const char *path, int *n_extra, char *err, size_t errlen);

#endif
