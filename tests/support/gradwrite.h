/* gradwrite.h — parameter gradients written instead of added
 * (op_table_t.grad_write, model_grad_clear), checked on a backend
 * (gradwrite.c). Each check runs the same work twice: into gradients zeroed
 * first with the writing off, and into gradients filled with NaN with the
 * writing on; the two must agree within tol (relative to the largest value;
 * 0: equal), with no NaN left. 0, or -1 with the first difference in msg. */
#ifndef BAGEL_GRADWRITE_H
#define BAGEL_GRADWRITE_H

#include <stddef.h>

#include <stdint.h>

#include "../../kernels/ops.h"
#include "../../models/pack.h"

/* sample k of the model tests (this file's and tests/unit/test_accum.c): a
 * caption with loss (seg[0]), then a generated image with loss and its ViT
 * copy (seg[1]), for tests/stage/data/train-mini.json */
typedef struct test_sample {
    int32_t tok[6];
    uint8_t vae[16 * 16 * 3];
    uint8_t vit[28 * 28 * 3];
    pack_segment_t seg[2];
} test_sample_t;
void test_sample_make(test_sample_t *s, int k);

/* every op that produces parameter gradients, on small random inputs; and
 * attention_bwd with op_attn_t.write (dq, dk, dv written) */
int gradwrite_ops(const op_table_t *t, double tol, char *msg, size_t msglen);

/* the model (tests/stage/data/train-mini.json, run from the repository's
 * root): a batch of every part, a text-only batch (no image, no latent: the
 * ViT's, the generation expert's and the heads' gradients zeroed by the
 * finish), two micro-batches accumulated, and the same with tied
 * embeddings (the classifier writes the embedding's gradient, the lookup
 * adds to it) */
int gradwrite_model(const op_table_t *t, double tol, char *msg, size_t msglen);

#endif
