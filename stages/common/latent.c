/* latent.c — see latent.h. */
#include "latent.h"

#include "compute_env.h"
#include "log.h"
#include "stage.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int lat_open(lat_t *l, const model_config_t *cfg, const char *vae_path, const op_table_t *ops, char *err, size_t errlen)
{
    *l = (lat_t){.cfg = *cfg, .down = cfg->vae_downsample, .z = cfg->z_channels};
    if (cfg->ae == MODEL_AE_IDENTITY) {
        if (vae_path) {
            snprintf(err, errlen, "--vae: the %s model's autoencoder is the identity, not FLUX's", cfg->name);
            return -1;
        }
        if (cfg->z_channels != 3 || cfg->vae_downsample != 1) {
            snprintf(err, errlen, "config %s: the identity autoencoder needs z_channels 3 and downsample 1", cfg->name);
            return -1;
        }
        return 0;
    }
    if (!vae_path) {
        snprintf(err, errlen, "--vae: missing: the %s model's autoencoder is FLUX's; name its ae.safetensors",
                 cfg->name);
        return -1;
    }
    ae_config_t ac = ae_flux_config;
    ac.z_channels = cfg->z_channels;
    ac.ch = cfg->ae_ch;
    ac.num_res_blocks = cfg->ae_res_blocks;
    ac.scale = cfg->ae_scale;
    ac.shift = cfg->ae_shift;
    if (ae_downsample(&ac) != cfg->vae_downsample) {
        snprintf(err, errlen, "config %s: FLUX's autoencoder downsamples by %d, the config says %d", cfg->name,
                 ae_downsample(&ac), cfg->vae_downsample);
        return -1;
    }
    l->ae = ae_new(&ac, ops, err, errlen);
    if (!l->ae)
        return -1;
    if (ae_load(l->ae, vae_path, NULL, err, errlen)) {
        ae_destroy(&l->ae);
        return -1;
    }
    return 0;
}

void lat_close(lat_t *l) { ae_destroy(&l->ae); }

int lat_start(lat_t *l, const op_table_t **ops, const char *device, const char *precision, const char *config,
              const char *vae_path)
{
    char err[512];
    int rc = compute_ops(device, precision, ops, NULL, err, sizeof err);
    if (rc) {
        log_error("%s", err);
        return rc;
    }
    model_config_t cfg;
    if (model_config_load(&cfg, config, NULL, err, sizeof err)) {
        log_error("--config: %s", err);
        rc = EXIT_USAGE;
    } else if (lat_open(l, &cfg, vae_path, *ops, err, sizeof err)) {
        log_error("%s", err);
        rc = EXIT_FATAL;
    }
    if (rc)
        compute_ops_done(*ops);
    return rc;
}

int lat_encode_batch(lat_t *l, int n, const uint8_t *const *img, int H, int W, float *moments, char *err,
                     size_t errlen)
{
    if (H < 1 || W < 1 || H % l->down || W % l->down) {
        snprintf(err, errlen, "image %dx%d: sides must be positive multiples of %d", W, H, l->down);
        return -1;
    }
    /* ae_reserve_batch returns at once when the plan fits, and keeps what
     * fitted before when it grows */
    if (l->ae)
        return ae_reserve_batch(l->ae, n, H, W, err, errlen) ||
                       ae_encode_batch(l->ae, n, img, H, W, moments, err, errlen)
                   ? -1
                   : 0;
    size_t px = (size_t)H * W;
    for (int k = 0; k < n; k++) {
        float *mo = moments + (size_t)k * 6 * px;
        for (int c = 0; c < 3; c++)
            for (size_t i = 0; i < px; i++) {
                mo[c * px + i] = ((float)img[k][i * 3 + c] / 255.0f - 0.5f) / 0.5f; /* as bagel-train's patchify_u8 */
                mo[(3 + c) * px + i] = LAT_LOGVAR_EXACT;
            }
    }
    return 0;
}

int lat_encode(lat_t *l, const uint8_t *img, int H, int W, float *moments, char *err, size_t errlen)
{
    return lat_encode_batch(l, 1, &img, H, W, moments, err, errlen);
}

int lat_decode(lat_t *l, const float *moments, int h, int w, uint8_t *img, char *err, size_t errlen)
{
    size_t n = (size_t)h * w;
    if (l->ae) {
        if (ae_reserve(l->ae, h * l->down, w * l->down, err, errlen))
            return -1;
        float *z = malloc((size_t)l->z * n * sizeof(float)); /* [z, h, w] */
        if (!z) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        for (size_t i = 0; i < (size_t)l->z * n; i++)
            z[i] = l->cfg.ae_scale * (moments[i] - l->cfg.ae_shift);
        int rc = ae_decode(l->ae, z, h, w, img, NULL, err, errlen);
        free(z);
        return rc;
    }
    /* rounding, not truncation, inverts lat_encode exactly (even from bf16,
     * whose error is under a quarter of a pixel step in [-1, 1]) */
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < n; i++) {
            float v = (moments[c * n + i] * 0.5f + 0.5f) * 255.0f;
            v = v > 0.0f ? (v < 255.0f ? v : 255.0f) : 0.0f; /* NaN -> 0 */
            img[i * 3 + c] = (uint8_t)lrintf(v);
        }
    return 0;
}
