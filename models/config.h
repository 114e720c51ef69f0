/* config.h — a BAGEL-shaped model's configuration: the Qwen2 MoT language
 * model, the SigLIP NaViT vision encoder, the generation heads and the
 * autoencoder, read from a bagelpipe config file or from a checkpoint
 * directory (llm_config.json, vit_config.json, optional bagelpipe.json).
 * Values follow bagel-reference.md §2; what the official code forces
 * (qk_norm, layer_module) is forced here too. */
#ifndef BAGEL_MODEL_CONFIG_H
#define BAGEL_MODEL_CONFIG_H

#include <stddef.h>

enum { MODEL_AE_FLUX = 0, MODEL_AE_IDENTITY = 1 };

typedef struct model_config {
    char name[64];

    /* language model (Qwen2, MoT layers) */
    int hidden;         /* H */
    int layers;         /* L */
    int heads;          /* nh */
    int kv_heads;       /* nkv */
    int head_dim;       /* H / nh, computed */
    int inter;          /* I, MLP intermediate */
    int vocab;          /* V, embedding rows */
    float rope_theta;   /* 1e6 for Qwen2.5 */
    float rms_eps;      /* 1e-6 */
    int qk_norm;        /* 1 (forced, as the official trainer does) */
    int tie_embeddings; /* 0: separate lm_head (the official default) */

    /* understanding: SigLIP NaViT + connector */
    int visual_und;
    int vit_hidden;       /* 1152 */
    int vit_layers;       /* layers USED: config layers + 1 + select_layer (27 -> 26) */
    int vit_heads;        /* 16 */
    int vit_inter;        /* 4304 */
    int vit_patch;        /* 14 */
    int vit_positions;    /* rows of the learned position table: (image_size / patch)² */
    int vit_max_side;     /* vit_max_num_patch_per_side, 70 */
    float vit_eps;        /* 1e-6 */
    int vit_select_layer; /* -2: the layer whose output is used, from the end */
    int vit_image_size;   /* 980: SigLIP's image_size (vit_positions = (image_size / patch)²) */

    /* generation: latents, heads, autoencoder */
    int visual_gen;
    int ae;               /* MODEL_AE_FLUX or MODEL_AE_IDENTITY */
    int z_channels;       /* 16 (FLUX), 3 (identity: latent = normalized pixels) */
    int vae_downsample;   /* 8 (FLUX), 1 (identity) */
    int latent_patch;     /* 2 */
    int max_latent_size;  /* latent grid side of latent_pos_embed (64 released, 32 training default) */
    int ae_ch;            /* FLUX autoencoder: channels of its first level (128) */
    int ae_res_blocks;    /* and residual blocks per level (2); its levels are FLUX's four, x1 x2 x4 x4 */
    float ae_scale;       /* 0.3611 (FLUX), 1 (identity) */
    float ae_shift;       /* 0.1159 (FLUX), 0 (identity) */
    float timestep_shift; /* training shift, 1.0 */

    /* image transforms the model expects (bagel-image's options) */
    int vae_max, vae_min; /* stride = vae_downsample * latent_patch */
    int vit_max, vit_min; /* stride = vit_patch */

    /* special tokens */
    int bos_id, eos_id, soi_id, eoi_id; /* 151644 151645 151652 151653 */
} model_config_t;

/* tokens' feature sizes derived from a config */
static inline int model_latent_dim(const model_config_t *c)
{
    return c->latent_patch * c->latent_patch * c->z_channels;
}
static inline int model_vit_dim(const model_config_t *c) { return c->vit_patch * c->vit_patch * 3; }
static inline int model_latent_stride(const model_config_t *c) { return c->vae_downsample * c->latent_patch; }

/* Loads `path`: a bagelpipe config file (JSON, see docs/checkpoints.md), a
 * checkpoint directory, or a shipped config's name ("tiny",
 * "bagel-0.5b-mot", "bagel-7b-mot", looked up in configs_dir). 0 on success;
 * -1 with a one-line reason in err. */
int model_config_load(model_config_t *cfg, const char *path, const char *configs_dir, char *err, size_t errlen);

/* Parses a bagelpipe config from JSON text (an object with "name", "llm" or
 * "llm_config", "vit" or "vit_config", "bagel"); "llm_config"/"vit_config"
 * name files relative to base_dir (NULL: "."). Absent keys take the defaults
 * of docs/checkpoints.md; the result is checked (model_config_check). Errors
 * name the key: `llm.num_attention_heads: 0, expected a positive integer`.
 * 0 or -1 with err. */
int model_config_parse(model_config_t *cfg, const char *json_text, const char *base_dir, char *err, size_t errlen);

/* Checks internal consistency (divisibility, ranges); 0 or -1 with err. */
int model_config_check(const model_config_t *cfg, char *err, size_t errlen);

/* Writes llm_config.json, vit_config.json and bagelpipe.json into dir (a
 * checkpoint directory), so that the official code and this one can read it. */
int model_config_save_dir(const model_config_t *cfg, const char *dir, char *err, size_t errlen);

/* The config as a bagelpipe config file (pretty JSON that model_config_parse
 * reads back to the same struct), into buf like snprintf: returns the length
 * it needs, writes at most cap bytes including the NUL. */
size_t model_config_json(const model_config_t *cfg, char *buf, size_t cap);

/* One line of key=value pairs for a stage's log:
 * `model=tiny H=256 L=4 nh=4 nkv=2 hd=64 I=768 V=151936 vit=192x4 ...` */
size_t model_config_summary(const model_config_t *cfg, char *buf, size_t cap);

#endif
