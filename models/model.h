/* model.h — the BAGEL network written once against the op table
 * (kernels/ops.h): Qwen2 language model with Mixture-of-Transformers layers
 * (an understanding and a generation expert sharing one attention), the
 * SigLIP NaViT encoder and its connector, latent and ViT position tables, the
 * timestep embedder, vae2llm and llm2vae; the joint loss (CE + flow-matching
 * MSE). Forward and backward are written out by hand, layer by layer, in the
 * order of bagel-reference.md §1.
 *
 * Memory: one planned allocation each for parameters, gradients and
 * activations (model_plan_print shows the bytes of each group). Activations
 * are sized for a capacity (model_caps_t); a batch beyond it is an error, not
 * a reallocation. */
#ifndef BAGEL_MODEL_H
#define BAGEL_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../kernels/ops.h"
#include "batch.h"
#include "config.h"

#define MODEL_TIME_FREQ 256 /* TimestepEmbedder frequency features */

/* one expert's weights in one decoder layer (shapes: H hidden, Q = nh·hd,
 * K = nkv·hd, I intermediate) */
typedef struct model_expert {
    float *in_norm;         /* (H) */
    float *q_w, *q_b;       /* (Q, H), (Q) */
    float *k_w, *k_b;       /* (K, H), (K) */
    float *v_w, *v_b;       /* (K, H), (K) */
    float *o_w;             /* (H, Q) */
    float *q_norm, *k_norm; /* (hd) */
    float *post_norm;       /* (H) */
    float *gate_w, *up_w;   /* (I, H) */
    float *down_w;          /* (H, I) */
} model_expert_t;

typedef struct model_vit_layer {
    float *ln1_w, *ln1_b;                                 /* (Dv) */
    float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b; /* (Dv, Dv), (Dv) */
    float *ln2_w, *ln2_b;                                 /* (Dv) */
    float *fc1_w, *fc1_b;                                 /* (Iv, Dv), (Iv) */
    float *fc2_w, *fc2_b;                                 /* (Dv, Iv), (Dv) */
} model_vit_layer_t;

/* parameters, and with the same layout their gradients (NULL where frozen) */
typedef struct model_weights {
    float *embed;           /* (V, H) */
    model_expert_t *layers; /* (L, 2): [l*2 + 0] understanding, [l*2 + 1] generation */
    float *norm[2];         /* (H) final norms: und, gen */
    float *lm_head;         /* (V, H); = embed when tied */
    /* generation */
    float *te1_w, *te1_b;         /* (H, 256), (H) */
    float *te2_w, *te2_b;         /* (H, H), (H) */
    float *vae2llm_w, *vae2llm_b; /* (H, D), (H) */
    float *llm2vae_w, *llm2vae_b; /* (D, H), (D) */
    float *latent_pos;            /* (G², H) fixed sin-cos */
    /* understanding */
    float *patch_w, *patch_b; /* (Dv, 3·p²), (Dv) */
    float *vit_posemb;        /* (positions, Dv) learned */
    model_vit_layer_t *vit;   /* (Lv) */
    float *post_w, *post_b;   /* (Dv) */
    float *conn1_w, *conn1_b; /* (H, Dv), (H) */
    float *conn2_w, *conn2_b; /* (H, H), (H) */
    float *vit_pos;           /* (max_side², H) fixed sin-cos */
} model_weights_t;

enum { MODEL_GROUP_LLM, MODEL_GROUP_GEN_HEADS, MODEL_GROUP_VIT, MODEL_GROUP_FIXED, MODEL_GROUP_COUNT };

typedef struct model_param {
    char name[112]; /* BAGEL's state-dict name */
    int ndim;
    int64_t shape[2];
    size_t offset; /* floats from the start of the parameter block */
    size_t numel;
    int trainable;  /* 0 for the fixed sin-cos tables and frozen parts */
    int group;      /* MODEL_GROUP_* */
    float **w, **g; /* the slots in model_t.w / model_t.g */
} model_param_t;

/* activation capacity: the largest batch the model accepts */
typedef struct model_caps {
    int S;        /* tokens */
    int n_vit;    /* ViT patches */
    int n_lat;    /* latent tokens */
    int n_ce;     /* CE positions */
    int n_splits; /* attention splits */
    int n_vit_images;
    int ce_chunk; /* classifier rows per chunk (0: 64) */
    int recompute; /* activation recomputation: one layer's activations
                    * (language model and ViT each) instead of every layer's;
                    * the backward runs each layer's forward again from its
                    * saved input first. Same results, bit for bit; about a
                    * third more compute for the layers. */
} model_caps_t;

typedef struct model_loss_opts {
    float ce_weight, mse_weight; /* 1, 1 */
    int ce_reweight;             /* weights 1/sqrt(n+1) per text (len2weight "square") */
    float grad_scale;            /* 1 / gradient-accumulation steps */
    double ce_norm, mse_norm;    /* denominators; 0 = this batch's own (count or Σ weights) */
} model_loss_opts_t;

extern const model_loss_opts_t model_default_loss;

typedef struct model_losses {
    double ce, mse, total;  /* normalized as the reference does */
    double ce_sum, mse_sum; /* Σ per-token losses (weighted for ce when reweighting) */
    int n_ce, n_mse;
} model_losses_t;

typedef struct model_acts model_acts_t;

typedef struct model {
    model_config_t cfg;
    const op_table_t *ops;
    int n_params;
    model_param_t *params;
    size_t n_floats;    /* parameter floats */
    size_t n_trainable; /* gradient floats */
    float *param_mem, *grad_mem;
    model_weights_t w, g;
    model_caps_t caps;
    size_t act_bytes;
    void *act_mem;
    model_acts_t *a;  /* pointers into act_mem */
    int loaded_batch; /* a batch's activations are present for backward */
    int grad_fresh;   /* model_grad_clear: the next pass writes the gradients */
    unsigned char *grad_done; /* (n_params) written in this fresh pass */
    int *grad_order;          /* (n_params) parameter indices by offset */
    int infer_loaded; /* model_infer_load's batch is the one in backend memory */
} model_t;

/* Lays out parameters (BAGEL names) and allocates parameters and gradients on
 * the backend; the fixed position tables are filled, every other parameter is
 * zero. NULL with err on failure. */
model_t *model_new(const model_config_t *cfg, const op_table_t *ops, char *err, size_t errlen);
void model_destroy(model_t **m);

/* Allocates activations for caps (once; again only to grow). */
int model_reserve(model_t *m, const model_caps_t *caps, char *err, size_t errlen);
/* The capacity of exactly one packed batch (the other fields zero). */
model_caps_t model_caps_of(const model_batch_t *b);

/* Freezes a group of parameters (no gradient memory use, no update). Call
 * before model_reserve... any time before training; it drops their grads. */
void model_freeze(model_t *m, const char *name_prefix);

/* The plan: bytes per group of parameters, gradients and activations. */
void model_plan_print(const model_t *m, FILE *out);

const model_param_t *model_find(const model_t *m, const char *name);

/* Forward over a packed batch, then (when train) the gradients of the
 * normalized loss accumulate into m->g with model_backward. */
int model_forward(model_t *m, const model_batch_t *b, const model_loss_opts_t *lo, int train, model_losses_t *out,
                  char *err, size_t errlen);
int model_backward(model_t *m, char *err, size_t errlen);
/* the whole gradient block zeroed now */
void model_zero_grad(model_t *m);
/* The gradients count as zero from here, without a pass over them: the next
 * training forward and backward write each trainable parameter's gradient
 * (op_table_t.grad_write) instead of adding to it, and zero those the batch
 * gives nothing. Call it where model_zero_grad would go before a step's
 * first micro-batch; the later micro-batches add as usual. Until that
 * backward has ended, m->grad_mem holds stale values. */
void model_grad_clear(model_t *m);

/* Inference: a key/value cache the decoder layers read and write instead of
 * the packed attention (models/infer.h manages it). Per layer, k[l] and v[l]
 * hold [rows, kv_heads, head_dim] (keys after QK-norm and RoPE). A forward
 * stores the key and value of batch storage row r at cache row store_row[r]
 * and runs attn, whose queries are the batch's storage rows. */
typedef struct model_kv {
    float **k, **v;           /* (layers) backend memory */
    const int32_t *store_row; /* (S) backend memory */
    const op_kv_attn_t *attn;
} model_kv_t;

/* A forward for inference over batch b against kv: latents come as x_t
 * itself (b->x0, with b->t their timesteps; b->eps is not read) and no loss
 * is formed. Returns the final hidden states (after the final norms) in
 * storage-row order, backend memory [S, H], valid until the next forward;
 * NULL with err. */
const float *model_infer_forward(model_t *m, const model_batch_t *b, const model_kv_t *kv, char *err, size_t errlen);

/* model_infer_forward in two halves, for a caller that runs one batch many
 * times (the denoising steps): model_infer_load uploads b; model_infer_run
 * runs the loaded batch against kv, as often as asked. Between runs the
 * caller may rewrite the latents' x_t [n_lat, latent dim] and t [n_lat] in
 * backend memory where model_infer_latents points (NULL, NULL when no
 * batch is loaded). Any other upload, or a model_reserve that grows the
 * activations, unloads it. */
int model_infer_load(model_t *m, const model_batch_t *b, char *err, size_t errlen);
const float *model_infer_run(model_t *m, const model_kv_t *kv, char *err, size_t errlen);
void model_infer_latents(model_t *m, float **xt, float **t);

/* 1 while any ViT parameter has a gradient (the ViT trains); 0 when it is
 * frozen: then a batch's precomputed ViT output (model_batch_t.vit_feat) is
 * used instead of running the ViT, and the backward stops at the
 * connector. */
int model_vit_trains(const model_t *m);

/* The ViT's output (after its post-layernorm, before the connector) for the
 * ViT patches of batch b: host out [n_vit, vit_hidden], in patch order. What
 * bagel-encode --vit stores. 0, or -1 with err. */
int model_vit_features(model_t *m, const model_batch_t *b, float *out, char *err, size_t errlen);

/* Per-token losses of the last forward, as the forward already brought them
 * to the host: ce [n_ce] in the batch's ce_pos order, mse [n_mse] in mse_pos
 * order. Valid until the next forward. */
void model_token_losses(const model_t *m, const float **ce, const float **mse);

/* The final hidden states (after the final norms) in sequence order, host
 * memory [S, H], of the last forward. */
void model_hidden(const model_t *m, const model_batch_t *b, float *out);

/* Initializations: the deterministic test weights of
 * tests/reference/FORMAT.md, and a fresh BAGEL-style init for training from
 * scratch (PyTorch Linear defaults, norms 1, llm2vae zero, generation expert
 * copied from the understanding one). */
void model_init_test(model_t *m, uint64_t seed);
void model_init_fresh(model_t *m, uint64_t seed);
/* the generator of FORMAT.md, for tests */
uint64_t model_fnv1a64(const char *s);
uint64_t model_splitmix64(uint64_t x);

#endif
