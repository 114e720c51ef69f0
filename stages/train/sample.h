/* sample.h — the trainer's sample generations (--sample-every): a few fixed
 * held-out prompts, given as sample records (bagel-read | bagel-tokenize |
 * bagel-image, and bagel-encode for FLUX, into a file), generated every K
 * steps with the current EMA weights into the run directory, where
 * report.html shows them step by step.
 *
 * Each record's target (the segment marked "generate", else its last loss
 * segment) is generated from the segments before it, as bagel-generate
 * does (stages/generate/gen.h): a caption or answer for a text target, an
 * image (text-to-image, or an edit when the context holds an image) for an
 * image target. Files, under the run directory:
 *   samples/index.jsonl        one line per prompt and step: {"step", "k",
 *                              "kind", "prompt", "reference", "text" or
 *                              "image", "ref_image"}
 *   samples/step-N/k.png       the images of step N
 *   samples/ref-k.png          the target images of the records
 * The sampler keeps its own copy of the weights and its own activations and
 * cache: memory of one more model copy. */
#ifndef BAGEL_TRAIN_SAMPLE_H
#define BAGEL_TRAIN_SAMPLE_H

#include <stddef.h>

#include "../../models/model.h"

typedef struct sampler_opts {
    const char *prompts;   /* the records file (msgpack stream) */
    int count;             /* prompts taken from its start (6) */
    int steps;             /* image timesteps (30) */
    int max_tokens;        /* text (48) */
    const char *vae;       /* the FLUX autoencoder, NULL for the identity */
    const char *tokenizer; /* to turn generated ids into text */
    const char *run_dir;
} sampler_opts_t;

typedef struct sampler sampler_t;

/* Reads the prompts and sets up the generation model on ops. NULL with err. */
sampler_t *sampler_open(const sampler_opts_t *o, const model_config_t *cfg, const op_table_t *ops, char *err,
                        size_t errlen);
/* Generates with weights (a parameter block of the trained model's layout,
 * the EMA copy or the parameters; backend memory) as of `step`. 0, or -1
 * with err (the run goes on without samples). */
int sampler_run(sampler_t *s, const model_t *trained, const float *weights, long step, char *err, size_t errlen);
void sampler_close(sampler_t **s);

#endif
