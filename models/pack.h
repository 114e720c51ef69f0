/* pack.h — the packer: sample layouts in, one packed micro-batch out,
 * following BAGEL's PackedDataset.pack_sequence item by item
 * (bagel-reference.md §3.3): special tokens, next-token labels and their
 * weights, RoPE positions (one per image, noisy targets not advancing),
 * attention splits (causal text, full clean images, noise targets),
 * condition dropout, timesteps and noise.
 *
 * It is not the token-budget loop that decides which samples go together
 * (that is the trainer's data thread); it packs what it is given. */
#ifndef BAGEL_PACK_H
#define BAGEL_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "config.h"
#include "rng.h"

enum { PACK_TEXT = 0, PACK_IMAGE = 1 };

/* -1: draw with the packer's probability (when cfg is set); 0 keep; 1 drop */
enum { PACK_DRAW = -1 };

typedef struct pack_segment {
    int kind;              /* PACK_TEXT or PACK_IMAGE */
    int loss, cfg;         /* text: CE; image: a noisy VAE target */
    int drop;              /* text: condition-dropout decision (PACK_DRAW, 0, 1) */
    const int32_t *tokens; /* text ids, without special tokens */
    int n_tokens;
    int und, cond;          /* image: a ViT copy; a clean VAE copy */
    int drop_vae, drop_vit; /* image: decisions for the clean copies */
    const uint8_t *vit;     /* (vit_h, vit_w, 3) u8, when und */
    int vit_h, vit_w;
    const float *vit_feat;  /* optional: the frozen ViT's output for those patches, (patches, vit_hidden) */
    const uint8_t *vae; /* (vae_h, vae_w, 3) u8: pixels for the identity autoencoder */
    int vae_h, vae_w;
    const float *latent; /* (lat_c, lat_h, lat_w) scaled latent z, for the FLUX autoencoder */
    int lat_c, lat_h, lat_w;
} pack_segment_t;

typedef struct pack_sample {
    int n_segments;
    const pack_segment_t *seg;
} pack_sample_t;

typedef struct pack_opts {
    float text_drop, vae_drop, vit_drop; /* condition dropout: 0.1, 0.3, 0.3 */
    int ce_reweight_weights;             /* unused by the packer: weights are always filled */
} pack_opts_t;

extern const pack_opts_t pack_default_opts;

typedef struct pack {
    const model_config_t *cfg;
    pack_opts_t opts;
    rng_t rng; /* dropout draws, timesteps and noise */
    int rope0;  /* the RoPE position each new sample starts at: 0 in training;
                 * an inference context's next position when a chunk extends it */
    model_batch_t b;
} pack_t;

void pack_init(pack_t *p, const model_config_t *cfg, const pack_opts_t *opts, uint64_t seed);
void pack_free(pack_t *p);
/* starts a new batch (keeps the arrays' capacity) */
void pack_reset(pack_t *p);

/* BAGEL's estimate of a sample's length: Σ text tokens + Σ image tokens + 2
 * per plan item (before dropout, which only shortens it) */
long pack_sample_tokens(const model_config_t *cfg, const pack_sample_t *s);

/* Appends one sample. Draws dropout decisions, timesteps (logit-normal, then
 * the config's shift) and noise from the packer's rng. On error the batch is
 * unchanged and err says which segment and what. */
int pack_add(pack_t *p, const pack_sample_t *s, char *err, size_t errlen);

/* Appends a sample of bare text tokens (no special tokens around them, no
 * loss) at positions rope0, rope0 + 1, ... in one causal split: the tokens an
 * inference context is extended by while decoding. */
int pack_add_tokens(pack_t *p, const int32_t *ids, int n, char *err, size_t errlen);

/* t = shift(sigmoid(tau)) for every latent token (0 where tau = -inf); the
 * packer calls it, and so can a caller that sets tau itself */
void pack_update_t(model_batch_t *b, float shift);
#endif
