/* gen.h — generation jobs on the inference engine (models/infer.h), shared
 * by bagel-generate and the trainer's sample generations (--sample-every).
 *
 * A job is a context, given as the chunks BAGEL's interleave_inference adds
 * (text, ViT images, clean VAE images, in order), and what to make from it:
 * text, or an image of a latent grid. Jobs run in batches: text jobs decode
 * together; image jobs of one grid size step together, each with its three
 * contexts (full, text-unconditioned, image-unconditioned; §6.3), all in one
 * forward per step. A job that cannot run (too long for the cache, a size
 * the model cannot take) fails alone with its reason. */
#ifndef BAGEL_GEN_H
#define BAGEL_GEN_H

#include <stdint.h>

#include "../../ipc/rec.h"
#include "../../models/infer.h"
#include "../common/latent.h"
#include "../train/data.h"

typedef struct gen_job {
    /* in */
    int want_image;
    int n_chunks;
    const infer_chunk_t *chunks;
    int gh, gw; /* image: the latent token grid */
    uint64_t seed;
    /* out */
    int failed;
    char err[256];
    int32_t *ids; /* text (malloc'd), without the stop token */
    int n_ids, stopped;
    float *lat; /* image: latent tokens [gh·gw, latent_dim] (malloc'd) */
} gen_job_t;

typedef struct gen_opts {
    infer_text_opts_t text;
    infer_image_opts_t image;
    int batch; /* jobs per batch (contexts: one per text job, three per image job) */
} gen_opts_t;

/* A sample record as a job: its target is the segment marked
 * "generate": true, else its last segment with a loss; the segments before
 * it are the context (texts; images as their clean VAE copy when cond, then
 * their ViT copy when und; a noisy-only image is invisible to what follows,
 * as in training). A clean VAE copy is the posterior drawn with seed (from
 * the record's latent moments, or from its pixels through lat; lat may be
 * NULL when no image needs it). The target's size is the target image's.
 * The record stays the caller's (borrowed by g until gen_rec_free). 0, or -1
 * with a one-line reason in why (REC_ERR_LEN bytes). */
typedef struct gen_rec {
    data_sample_t ds;
    int have_ds;
    int target; /* segment index */
    infer_chunk_t *ch;
    float **lat; /* per chunk: owned latent tokens, or NULL */
    int n_ch;
    gen_job_t job;
} gen_rec_t;

int gen_rec_job(gen_rec_t *g, rec_t *r, const model_config_t *cfg, lat_t *lat, uint64_t seed, char *why);
void gen_rec_free(gen_rec_t *g);

/* positions job j's context takes (its chunks, markers included) */
long gen_context_tokens(const model_config_t *cfg, const gen_job_t *j);

/* The slots an engine needs for batches of `batch` jobs. */
static inline int gen_slots(int batch) { return 3 * batch; }

/* Runs jobs [0, n) in batches. Per-job failures are in the jobs; returns -1
 * with err only when the engine itself fails. */
int gen_run(infer_t *e, const model_config_t *cfg, gen_job_t *jobs, int n, const gen_opts_t *o, char *err,
            size_t errlen);
void gen_job_clear(gen_job_t *j);

struct tok;
/* Generated ids as text: the tokenizer's bytes as valid UTF-8 (ill-formed
 * sequences, which a token split can leave, become U+FFFD). malloc'd, NULL
 * when out of memory or the ids are not the tokenizer's. */
char *gen_text(const struct tok *t, const int32_t *ids, int n);

/* An image's latent tokens to pixels: u8 [gh·stride, gw·stride, 3] where
 * stride = model_latent_stride(cfg). The identity autoencoder's tokens are
 * pixels, converted as BAGEL's decode converts (§6.4); FLUX's are unscaled
 * and decoded by l. 0, or -1 with err. */
int gen_pixels(lat_t *l, const model_config_t *cfg, const float *lat, int gh, int gw, uint8_t *img, char *err,
               size_t errlen);

/* An input image for a VAE chunk: pixels u8 [H, W, 3] (H, W multiples of the
 * latent stride) to latent tokens [(H/stride)·(W/stride), latent_dim], the
 * posterior sampled with rng as BAGEL conditions on it (§6.1) and scaled. */
int gen_latent_of(lat_t *l, const model_config_t *cfg, const uint8_t *img, int H, int W, uint64_t seed, float *tokens,
                  char *err, size_t errlen);

#endif
