/* run.h — one training run: settings, the model, the step loop, checkpoints
 * and resume, validation, metrics (run.c). bagel-train's main parses options
 * into train_opts_t and calls train_run. */
#ifndef BAGEL_TRAIN_RUN_H
#define BAGEL_TRAIN_RUN_H

#include <stdint.h>

#include "../../ipc/stream.h"
#include "data.h"

typedef struct train_opts {
    const char *out, *config, *init, *finetune, *freeze, *resume, *val, *schedule, *val_metric, *vae, *device, *precision,
        *tokenizer;
    int init_ema;
    long steps, save_every, log_every, warmup, val_every;
    int accum, keep_last, save_bf16, max_bad_steps, patience, quiet, ce_reweight;
    uint64_t seed, input_offset;
    unsigned long long max_memory;
    double peak_tflops; /* for MFU; 0: known GPUs' peaks, none on the CPU */
    int recompute;      /* --recompute: one layer's activations, recomputed in the backward */
    const char *sample_prompts; /* --sample-prompts: held-out records to generate from */
    long sample_every;
    int sample_count, sample_steps;
    double lr, min_lr, beta1, beta2, eps, weight_decay, clip, ema, ce_weight, mse_weight, timestep_shift;
    data_opts_t data;
    const char *const *inputs;
    int ninputs;
    const stream_opts_t *stream;
} train_opts_t;

void train_opts_default(train_opts_t *o);
/* an exit code of stage.h's table */
int train_run(train_opts_t *o);

#endif
