/* make_ae.c — writes an autoencoder with the deterministic test weights
 * (tests/reference/FORMAT.md) in the architecture of a model config, for the
 * trainer's tests of encoding images that arrive without latents.
 *
 *   make-ae CONFIG.json SEED OUT.safetensors */
#include <stdio.h>
#include <stdlib.h>

#include "../../kernels/ops.h"
#include "../../models/ae.h"
#include "../../models/config.h"

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: make-ae CONFIG.json SEED OUT.safetensors\n");
        return 2;
    }
    char err[512];
    model_config_t cfg;
    if (model_config_load(&cfg, argv[1], NULL, err, sizeof err)) {
        fprintf(stderr, "make-ae: %s\n", err);
        return 1;
    }
    ae_config_t ac = ae_flux_config;
    ac.z_channels = cfg.z_channels;
    ac.ch = cfg.ae_ch;
    ac.num_res_blocks = cfg.ae_res_blocks;
    ae_t *ae = ae_new(&ac, &op_cpu, err, sizeof err);
    if (!ae) {
        fprintf(stderr, "make-ae: %s\n", err);
        return 1;
    }
    ae_init_test(ae, strtoull(argv[2], NULL, 10));
    int rc = ae_save(ae, argv[3], err, sizeof err);
    if (rc)
        fprintf(stderr, "make-ae: %s\n", err);
    ae_destroy(&ae);
    return rc ? 1 : 0;
}
