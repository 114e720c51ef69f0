/* batch.h — one packed micro-batch as BAGEL lays it out (bagel-reference.md
 * §3.3–3.8): the sequence of every sample's tokens, their RoPE positions,
 * attention splits, expert routing, ViT patches, latents with their noise and
 * timesteps, and the loss positions. Host memory; the model uploads what it
 * needs to its backend. Built by the packer (pack.h).
 *
 * Sequence positions p run over the whole pack. For the MoT layers the model
 * stores tokens in "expert order": understanding tokens (text and ViT) first,
 * in increasing p, then generation tokens (all VAE latents) in increasing p;
 * row_of_pos / pos_of_row translate. */
#ifndef BAGEL_BATCH_H
#define BAGEL_BATCH_H

#include <stdint.h>

typedef struct model_batch {
    int S; /* tokens in the packed sequence */
    int n_samples;
    int32_t *sample_lens; /* (n_samples) */

    /* attention splits (ops.h op_attn_t) */
    int n_splits;
    int32_t *split_start; /* (n_splits + 1) */
    uint8_t *split_mode;  /* (n_splits) OP_SPLIT_* */
    int32_t *split_first; /* (n_splits) first split of the same sample */

    int32_t *pos;        /* (S) RoPE position ids */
    int n_und, n_gen;    /* rows of each expert; n_und + n_gen = S */
    int32_t *row_of_pos; /* (S) */
    int32_t *pos_of_row; /* (S) */

    /* text tokens, incl. BAGEL's special tokens */
    int n_text;
    int32_t *text_ids; /* (n_text) */
    int32_t *text_pos; /* (n_text) sequence positions */

    /* ViT patches of understanding images */
    int n_vit;          /* patches */
    int vit_dim;        /* 3·patch² */
    float *vit_tokens;  /* (n_vit, vit_dim) normalized to [-1, 1] */
    int32_t *vit_posid; /* (n_vit) row·max_side + col */
    int32_t *vit_pos;   /* (n_vit) sequence positions */
    int n_vit_images;
    int32_t *vit_lens; /* (n_vit_images) patches per image */
    /* the frozen ViT's output for the patches (after its post-layernorm,
     * before the connector), as bagel-encode --vit stores it: used instead
     * of running the ViT when every ViT image of the batch has it and the
     * ViT is frozen */
    int vit_feat_dim;        /* vit_hidden */
    float *vit_feat;         /* (n_vit, vit_feat_dim) */
    int n_vit_feat_images;   /* ViT images that came with features */

    /* latent tokens of VAE images, noisy targets and clean conditions */
    int n_lat;
    int lat_dim;        /* latent_patch² · z_channels */
    float *x0;          /* (n_lat, lat_dim) clean latent tokens */
    float *eps;         /* (n_lat, lat_dim) noise */
    float *tau;         /* (n_lat) raw logit-normal draw, -inf for clean images */
    float *t;           /* (n_lat) sigmoid(tau) then shifted; 0 for clean */
    int32_t *lat_posid; /* (n_lat) row·max_latent_size + col */
    int32_t *lat_pos;   /* (n_lat) sequence positions */
    int n_vae_images;
    int32_t *vae_hw; /* (n_vae_images, 2) latent token grid h, w */

    /* losses */
    int n_mse;
    int32_t *mse_pos; /* (n_mse) sequence positions of noisy latents */
    int32_t *mse_lat; /* (n_mse) their latent token index */
    int n_ce;
    int32_t *ce_pos;   /* (n_ce) sequence positions with a CE label */
    int32_t *ce_label; /* (n_ce) */
    float *ce_weight;  /* (n_ce) len2weight "square": 1/sqrt(n+1) */

    /* capacities of the arrays above (the packer grows them) */
    int cap_S, cap_splits, cap_samples, cap_vit, cap_lat, cap_vit_images, cap_vae_images;
} model_batch_t;

void model_batch_free(model_batch_t *b);
void model_batch_clear(model_batch_t *b); /* keeps capacity */

#endif
