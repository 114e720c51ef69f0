/* latent.h — the autoencoder of a model config as bagel-encode and
 * bagel-decode use it: FLUX's (models/ae.h) or the identity, behind one
 * interface. Moments are [2z, h, w] f32, the mean then the log-variance, as
 * bagel-train reads them (docs/formats.md "latent").
 *
 * The identity's latent is the normalized pixels (x/255 − 0.5)/0.5 as
 * [3, H, W] means with log-variance LAT_LOGVAR_EXACT, and its inverse rounds,
 * so encode then decode gives the pixels back exactly. Not a trainer: no
 * gradients. The activations grow to the largest batch and image seen. */
#ifndef BAGEL_LATENT_H
#define BAGEL_LATENT_H

#include <stddef.h>
#include <stdint.h>

#include "../../kernels/ops.h"
#include "../../models/ae.h"
#include "../../models/config.h"

/* the log-variance of a latent that is a point, not a distribution: the
 * trainer's draw adds exp(−15)·N(0,1) ≈ 3e-7·N(0,1), below bf16's precision */
#define LAT_LOGVAR_EXACT (-30.0f)

typedef struct lat {
    model_config_t cfg;
    ae_t *ae; /* NULL for the identity */
    int down; /* pixels per latent position along a side: 8 (FLUX), 1 (identity) */
    int z;    /* latent channels */
} lat_t;

/* Sets up the autoencoder of cfg on ops; vae_path is required for FLUX and
 * refused for the identity. A missing or mis-shaped tensor is an error naming
 * it. 0, or -1 with err. */
int lat_open(lat_t *l, const model_config_t *cfg, const char *vae_path, const op_table_t *ops, char *err,
             size_t errlen);
void lat_close(lat_t *l);

/* A stage's start: the op table for --device/--precision (compute_ops), the
 * config named by --config, then lat_open. Logs one line and returns the
 * stage's exit status on failure (ops released), 0 on success; the caller
 * ends with lat_close and compute_ops_done(*ops). */
int lat_start(lat_t *l, const op_table_t **ops, const char *device, const char *precision, const char *config,
              const char *vae_path);

/* img: u8 [H, W, 3] -> moments [2z, H/down, W/down] f32. 0, or -1 with err
 * (a size the autoencoder cannot take). */
int lat_encode(lat_t *l, const uint8_t *img, int H, int W, float *moments, char *err, size_t errlen);
/* n (1..AE_MAX_BATCH) images of one size in one autoencoder call ->
 * moments [n, 2z, h, w], image i's equal to lat_encode's of img[i]. */
int lat_encode_batch(lat_t *l, int n, const uint8_t *const *img, int H, int W, float *moments, char *err,
                     size_t errlen);

/* The mean of moments [2z, h, w] (unscaled, as stored) -> img u8
 * [h·down, w·down, 3]. 0, or -1 with err. */
int lat_decode(lat_t *l, const float *moments, int h, int w, uint8_t *img, char *err, size_t errlen);

#endif
