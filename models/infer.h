/* infer.h — generation with a trained model, as BAGEL's inferencer does it
 * (bagel-reference.md §6), on the op table (CPU or CUDA).
 *
 * A context is a key/value cache of everything said so far: text prompts,
 * ViT images and clean VAE images, appended chunk by chunk (§6.1). From a
 * context the engine decodes text (§6.2: greedy, or sampled with
 * temperature, top-k and top-p; stops at <|im_end|>) or draws an image
 * (§6.3: flow-matching Euler steps on the shifted schedule, with
 * classifier-free guidance from a text-unconditioned and an
 * image-unconditioned context, renormalized as the reference does). The
 * image comes out as latent tokens; models/ae.h decodes them to pixels.
 *
 * Contexts live in slots of one cache: slot s owns cache rows
 * [s·slot_rows, (s + 1)·slot_rows). Work on several slots runs as one
 * batch: many prompts, and the CFG branches of an image, go through the
 * model together. */
#ifndef BAGEL_INFER_H
#define BAGEL_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct infer infer_t;

/* one chunk to append to a context */
enum { INFER_TEXT = 0, INFER_VIT = 1, INFER_VAE = 2, INFER_TOKENS = 3 };
typedef struct infer_chunk {
    int kind;
    /* INFER_TEXT: the prompt's ids; the chunk is <|im_start|> ids <|im_end|>.
     * INFER_TOKENS: ids as they are, one position each (a continuation, as
     * decoding appends it) */
    const int32_t *ids;
    int n_ids;
    /* INFER_VIT: an image already sized for the ViT, u8 [h, w, 3] */
    const uint8_t *img;
    int img_h, img_w;
    /* INFER_VAE: a clean image as latent tokens [gh·gw, latent_dim] (patched,
     * scaled as the model sees them), its token grid gh × gw */
    const float *lat;
    int gh, gw;
} infer_chunk_t;

/* text decoding (§6.2); temperature 0 is greedy. top_k 0 and top_p 1 keep
 * every token. Sequence i draws from its own generator seeded seeds[i] (or
 * seed + i), so an output does not depend on what else is in the batch. */
typedef struct infer_text_opts {
    int max_tokens;
    float temperature;
    int top_k;
    float top_p;
    uint64_t seed;
    const uint64_t *seeds; /* per sequence, overriding seed + i; may be NULL */
    int no_stop;           /* 1: <|im_end|> does not stop a sequence (benchmarks) */
} infer_text_opts_t;

extern const infer_text_opts_t infer_text_defaults; /* 256 tokens, greedy */

/* image generation (§6.3) */
enum {
    INFER_RENORM_GLOBAL = OP_RENORM_GLOBAL,
    INFER_RENORM_CHANNEL = OP_RENORM_CHANNEL,
    INFER_RENORM_TEXT_CHANNEL = OP_RENORM_TEXT_CHANNEL
};
typedef struct infer_image_opts {
    int num_timesteps;    /* 50: num_timesteps - 1 model evaluations */
    float timestep_shift; /* 3.0 */
    float cfg_text_scale; /* 3.0 (> 1 turns text CFG on) */
    float cfg_img_scale;  /* 1.5 (> 1 with text CFG turns image CFG on) */
    float cfg_lo, cfg_hi; /* cfg_interval: CFG where cfg_lo < t <= cfg_hi; 0.4, 1.0 */
    int renorm;           /* INFER_RENORM_*, global */
    float renorm_min;     /* 0 */
} infer_image_opts_t;

extern const infer_image_opts_t infer_image_defaults;

/* Called after every Euler step of every image, for tests and progress:
 * v_t and v_i are NULL where that branch did not run. Rows are [n, dim]. */
typedef void (*infer_step_fn)(void *user, int image, int step, float t, float dt, const float *v_c, const float *v_t,
                              const float *v_i, const float *v, const float *x_after, int n, int dim);

/* The engine for model m (its weights loaded; gradients not needed: freeze
 * the model first to save their memory). n_slots contexts of at most
 * slot_rows tokens each, counting the tokens being generated. NULL with err. */
infer_t *infer_new(model_t *m, int n_slots, int slot_rows, char *err, size_t errlen);
void infer_destroy(infer_t **e);

/* The engine holds the model's weights unchanged while it lives
 * (op_table_t.hold_weights: a backend may keep converted copies of them);
 * whoever changes them calls this (the caches are not changed). Only one
 * engine at a time holds weights. */
void infer_weights_changed(infer_t *e);

/* Empties a context; copies one into another (cache rows and position). */
void infer_reset(infer_t *e, int slot);
void infer_copy(infer_t *e, int dst, int src);
/* the cache's shape: contexts and the tokens each can hold */
int infer_slots(const infer_t *e);
int infer_slot_rows(const infer_t *e);
/* tokens held and next RoPE position of a context */
int infer_len(const infer_t *e, int slot);
int infer_rope(const infer_t *e, int slot);

/* Appends chunk c[i] to context slots[i], i < n, all in one forward. A slot
 * may appear once. 0, or -1 with err naming the chunk (nothing appended). */
int infer_append(infer_t *e, const int *slots, const infer_chunk_t *c, int n, char *err, size_t errlen);

/* The final hidden states (after the final norms) of the last forward, in
 * its token order: host out [tokens, hidden]; returns the token count. */
int infer_hidden(infer_t *e, float *out);

/* Decodes text after each of n contexts (their caches grow by what is
 * decoded). ids[i] gets a malloc'd array of the generated ids, the stop token
 * excluded, and n_ids[i] its length; stopped[i] is 1 where <|im_end|> came.
 * When logits_out is given, it receives the first steps' logits: [steps][n][V]
 * for steps < logits_steps (the rows of finished sequences are left as they
 * were). */
int infer_text(infer_t *e, const int *slots, int n, const infer_text_opts_t *o, int32_t **ids, int *n_ids, int *stopped,
               float *logits_out, int logits_steps, char *err, size_t errlen);

/* Draws n images of gh × gw latent tokens. Image i starts from noise_i
 * ([gh·gw, latent_dim] in x, which it is overwritten with the result) and is
 * conditioned on context full[i]; text_unc[i] and img_unc[i] are the contexts
 * for text and image CFG (-1 where not used; needed when the scale asks for
 * them). The caches are not changed. */
int infer_image(infer_t *e, const int *full, const int *text_unc, const int *img_unc, int n, int gh, int gw,
                const infer_image_opts_t *o, float *x, infer_step_fn on_step, void *user, char *err, size_t errlen);

/* An image-unconditioned context that holds the same as the full one (a
 * text-only prompt: interleave_inference gives both the prompt) gives the
 * same velocity, so infer_image evaluates it once and uses it for both
 * branches. Contexts are compared by what was appended to them since their
 * reset (two 64-bit hashes of the chunks in order, with their lengths and
 * positions); weights changed in between (infer_weights_changed) make them
 * differ. On by default; infer_set_dedup(e, 0) evaluates every branch, as the
 * official inferencer does. infer_evaluated: the branch evaluations (query
 * images through the model) of the last infer_image call. */
void infer_set_dedup(infer_t *e, int on);
long infer_evaluated(const infer_t *e);

/* the schedule of §6.3: t_i for i < num_timesteps */
void infer_schedule(float *t, int num_timesteps, float shift);

/* The CFG combination of §6.3 for one image of n tokens (v_t, v_i NULL when
 * that branch is off; scales already gated by the interval): v out. */
void infer_cfg_combine(float *v, const float *v_c, const float *v_t, const float *v_i, int n, int dim, float s_txt,
                       float s_img, int renorm, float renorm_min);

#endif
