/* ae.h — the FLUX autoencoder BAGEL uses for generation
 * (bagel-reference.md §1.9), written once against the op table
 * (kernels/ops.h). Forward only: the autoencoder is frozen, so there are no
 * gradients and no saved activations.
 *
 * Encoder: u8 image [H, W, 3] -> normalized [3, H, W] -> posterior moments
 * [2z, H/8, W/8] (mean, then logvar). The latent BAGEL trains on is the
 * sample mean + exp(0.5·logvar)·ε, scaled as scale·(z − shift)
 * (ae_sample_scaled). Decoder: scaled latent -> z/scale + shift -> pixels
 * [3, H, W] in about [-1, 1] -> u8 [H, W, 3] as BAGEL converts them (§6.4).
 *
 * Parameters have the BFL names of ae.safetensors (§5.3) and one allocation.
 * Activations are planned for a largest image (ae_reserve) and allocated
 * once; an image beyond it is an error, not a reallocation. The encoder
 * takes up to AE_MAX_BATCH images of one size per call in the convolutions'
 * batch dimension (each gets the moments it gets alone: the ops work image by
 * image inside a batch); the decoder one. Host pointers in and out; the op
 * table's memory in between. */
#ifndef BAGEL_AE_H
#define BAGEL_AE_H

#include <stddef.h>
#include <stdint.h>

#include "../kernels/ops.h"

#define AE_MAX_LEVELS 6
#define AE_MAX_BLOCKS 8 /* res blocks per decoder level: num_res_blocks + 1 */
#define AE_GROUPS     32
#define AE_NORM_EPS   1e-6f
#define AE_MAX_BATCH  256 /* images per ae_encode_batch */

typedef struct ae_config {
    int in_channels;            /* 3 */
    int out_channels;           /* 3 */
    int ch;                     /* 128: channels of level 0 */
    int n_levels;               /* 4 (the image shrinks by 2^(n_levels − 1)) */
    int ch_mult[AE_MAX_LEVELS]; /* {1, 2, 4, 4} */
    int num_res_blocks;         /* 2 per encoder level, one more per decoder level */
    int z_channels;             /* 16 */
    float scale, shift;         /* 0.3611, 0.1159 */
} ae_config_t;

/* FLUX.1's autoencoder as BAGEL builds it */
extern const ae_config_t ae_flux_config;

typedef struct ae_resblock {
    int cin, cout;
    float *norm1_w, *norm1_b; /* (cin) */
    float *conv1_w, *conv1_b; /* (cout, cin, 3, 3), (cout) */
    float *norm2_w, *norm2_b; /* (cout) */
    float *conv2_w, *conv2_b; /* (cout, cout, 3, 3), (cout) */
    float *nin_w, *nin_b;     /* (cout, cin, 1, 1), (cout); NULL when cin == cout */
} ae_resblock_t;

typedef struct ae_attn {
    int c;
    float *norm_w, *norm_b;                                     /* (C) */
    float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *proj_w, *proj_b; /* (C, C, 1, 1), (C) */
} ae_attn_t;

typedef struct ae_level {
    ae_resblock_t block[AE_MAX_BLOCKS];
    float *resample_w, *resample_b; /* Downsample / Upsample conv (C, C, 3, 3), (C); NULL where none */
} ae_level_t;

/* the encoder or the decoder */
typedef struct ae_coder {
    float *conv_in_w, *conv_in_b; /* (C0, cin, 3, 3), (C0) */
    ae_level_t level[AE_MAX_LEVELS];
    ae_resblock_t mid1, mid2;
    ae_attn_t attn;
    float *norm_out_w, *norm_out_b; /* (C) */
    float *conv_out_w, *conv_out_b; /* (cout, C, 3, 3), (cout) */
} ae_coder_t;

typedef struct ae_param {
    char name[64]; /* the BFL name */
    int ndim;      /* 1 or 4 */
    int64_t shape[4];
    size_t offset; /* floats from the start of the parameter block */
    size_t numel;
    float **w; /* the slot in ae_t.enc / ae_t.dec */
} ae_param_t;

/* floats of each activation buffer for one image size and batch */
typedef struct ae_plan {
    size_t big; /* largest [C, h, w] tensor of either pass */
    size_t tok; /* mid-block attention [S, C] */
    int S;      /* mid-block positions */
    size_t img; /* u8 pixels */
    int n;      /* images per encoder call */
} ae_plan_t;

typedef struct ae_acts ae_acts_t;

typedef struct ae {
    ae_config_t cfg;
    const op_table_t *ops;
    int n_params;
    ae_param_t *params;
    size_t n_floats;
    float *param_mem;
    ae_coder_t enc, dec;
    int max_h, max_w; /* reserved image size; 0 before ae_reserve */
    int max_n;        /* reserved images per encoder call */
    ae_plan_t cap;
    size_t act_bytes;
    void *act_mem;
    ae_acts_t *a; /* pointers into act_mem */
} ae_t;

/* 0, or -1 with err naming the bad field */
int ae_config_check(const ae_config_t *cfg, char *err, size_t errlen);

/* Lays out the parameters (BFL names) and allocates them on the backend,
 * zeroed. NULL with err. */
ae_t *ae_new(const ae_config_t *cfg, const op_table_t *ops, char *err, size_t errlen);
void ae_destroy(ae_t **ae);

/* Allocates activations for images up to max_h × max_w pixels (once; again
 * only to grow: what fitted before still fits). */
int ae_reserve(ae_t *ae, int max_h, int max_w, char *err, size_t errlen);
/* The same for n (1..AE_MAX_BATCH) images of up to max_h × max_w encoded in
 * one ae_encode_batch; ae_reserve is n = 1. */
int ae_reserve_batch(ae_t *ae, int n, int max_h, int max_w, char *err, size_t errlen);

const ae_param_t *ae_find(const ae_t *ae, const char *name);

/* Loads every parameter from an ae.safetensors with BFL names (F32, BF16 or
 * F16). A missing or mis-shaped tensor is an error naming it; *n_extra (may
 * be NULL) gets the number of tensors in the file that were not used. */
int ae_load(ae_t *ae, const char *path, int *n_extra, char *err, size_t errlen);

/* The deterministic test weights of tests/reference/FORMAT.md
 * ("Autoencoder"). */
void ae_init_test(ae_t *ae, uint64_t seed);
/* Writes every parameter under its BFL name (F32) to path: for tests and for
 * autoencoders made here. 0, or -1 with err. */
int ae_save(const ae_t *ae, const char *path, char *err, size_t errlen);

/* img: u8 [H, W, in_channels]; H and W multiples of 2^(n_levels − 1).
 * mean_logvar: [2z, H/8, W/8] f32 (host), the first z planes the mean. */
int ae_encode(ae_t *ae, const uint8_t *img, int H, int W, float *mean_logvar, char *err, size_t errlen);
/* n images of one size at once: img[i] u8 [H, W, in_channels] -> mean_logvar
 * [n, 2z, H/8, W/8] (host), image i's moments equal to ae_encode's of img[i]
 * on the CPU backend bit for bit (the ops run per image inside the batch). */
int ae_encode_batch(ae_t *ae, int n, const uint8_t *const *img, int H, int W, float *mean_logvar, char *err,
                    size_t errlen);

/* z = scale·(mean + exp(0.5·logvar)·eps − shift), all host memory:
 * mean_logvar [2z, h, w], eps and z [z, h, w]. */
int ae_sample_scaled(ae_t *ae, const float *mean_logvar, const float *eps, int h, int w, float *z, char *err,
                     size_t errlen);

/* z_scaled: [z, h, w] (host) -> img u8 [8h, 8w, out_channels] (may be
 * NULL) and pixels [out_channels, 8h, 8w] f32, the decoder's output before the
 * u8 conversion (may be NULL). */
int ae_decode(ae_t *ae, const float *z_scaled, int h, int w, uint8_t *img, float *pixels, char *err, size_t errlen);

/* pixels per latent position along each side: 2^(n_levels − 1) */
static inline int ae_downsample(const ae_config_t *cfg) { return 1 << (cfg->n_levels - 1); }

#endif
