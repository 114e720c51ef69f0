/* refcase.h — loads a reference case (tests/reference/FORMAT.md): its
 * config, loss settings and weight seed, and packs its samples with the
 * case's forced dropout decisions, timesteps and noise. Shared by the model's
 * golden test and its benchmark. */
#ifndef BAGEL_REFCASE_H
#define BAGEL_REFCASE_H

#include <stddef.h>
#include <stdint.h>

#include "../../models/model.h"
#include "../../models/pack.h"

typedef struct refcase {
    char name[128];
    model_config_t cfg;
    model_loss_opts_t loss;
    uint64_t weights_seed;
    pack_t pack; /* pack.b is the batch */
    void **owned;
    int n_owned, cap_owned;
} refcase_t;

int refcase_load(refcase_t *rc, const char *path, char *err, size_t errlen);
void refcase_free(refcase_t *rc);

/* One training step of m (made from rc->cfg and prepared by the caller) on
 * batch b (the case's, or one made from it) with the case's loss settings
 * and caps: reserve, zero the gradients, forward, backward. Returns a host
 * copy of every gradient (*n floats, the caller frees it) and the losses in
 * *L, or NULL with one line in err. */
float *refcase_step(const refcase_t *rc, model_t *m, const model_batch_t *b, const model_caps_t *caps,
                    model_losses_t *L, size_t *n, char *err, size_t errlen);

#endif
