/* data.h — the trainer's input side: sample records to packer segments, and
 * the data thread that packs them into token-budget micro-batches ahead of the
 * step, following BAGEL's PackedDataset loop (bagel-reference.md §3.7) with an
 * overflow buffer; rejects and end records are accounted for, not lost.
 *
 * Determinism: every batch's random draws (condition dropout, timesteps,
 * noise, latent sampling) come from a stream seeded by (seed, batch index), so
 * a resumed run draws what the uninterrupted run drew. The data position saved
 * with a checkpoint is the input ordinal to continue from plus the ordinals
 * read but not yet trained on (the overflow buffer, a sample held back). */
#ifndef BAGEL_TRAIN_DATA_H
#define BAGEL_TRAIN_DATA_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#include "../../ipc/stream.h"
#include "../../models/pack.h"

#define DATA_MAX_OUTSTANDING 1024

struct ae;

typedef struct data_opts {
    long expected_tokens;      /* a batch is complete at this many tokens (32768) */
    long max_tokens;           /* and never longer (36864) */
    long max_per_sample;       /* longer samples are rejected (16384) */
    long prefer_buffer_before; /* take held-back samples first while shorter (16384) */
    int max_buffer;            /* held-back samples (50) */
    int prefetch;              /* batches packed ahead (2) */
    uint64_t seed;
    pack_opts_t pack; /* condition dropout */
    int train;        /* 0: validation (no dropout, fixed draws) */
    struct ae *ae;    /* the frozen autoencoder for images that come without latents; may be NULL */
} data_opts_t;

extern const data_opts_t data_default_opts;

/* where the input stands after a batch: resume from here */
typedef struct data_pos {
    uint64_t next; /* first ordinal not read */
    int n_out;     /* read but not trained: held back first, then the buffer in order */
    uint64_t out[DATA_MAX_OUTSTANDING];
    uint64_t batches; /* batches made so far */
} data_pos_t;

/* per-sample facts of a packed batch, for metrics */
typedef struct data_sample_info {
    char task[16];
    int start, len; /* sequence positions */
} data_sample_info_t;

typedef struct data_batch {
    pack_t pack;    /* pack.b is the micro-batch */
    data_pos_t pos; /* after this batch */
    uint64_t index; /* batch number */
    int n_info, cap_info;
    data_sample_info_t *info;
    int state; /* internal */
} data_batch_t;

typedef struct data_stats {
    uint64_t samples, rejects, too_long, bad, ends, held_back, epochs_complete;
} data_stats_t;

typedef struct data data_t;

/* Starts the data thread reading `in` (an open reader, borrowed). rejects: a
 * stream for the rejects log (JSON lines), may be NULL. resume: a position to
 * continue from, NULL for the start; input_offset: the ordinal of the first
 * record the reader will give (bagel-read --skip). */
data_t *data_start(rd_t *in, const model_config_t *cfg, const data_opts_t *o, FILE *rejects, const data_pos_t *resume,
                   uint64_t input_offset, char *err, size_t errlen);
/* The next packed batch; NULL at the end of the input (or on a fatal error:
 * data_error says). *wait_s: seconds spent waiting for it. */
data_batch_t *data_next(data_t *d, double *wait_s);
/* Gives a batch back once the step is done with it. */
void data_release(data_t *d, data_batch_t *b);
const char *data_error(const data_t *d);
data_stats_t data_stats(data_t *d);
/* Stops the thread and frees everything (the reader stays open). */
void data_stop(data_t **d);

/* One sample record as packer segments: tokens copied, images borrowed from
 * the record, latents (posterior mean and log-variance) sampled with rng and
 * scaled. Owned memory is released by data_sample_free. 0, or -1 with a
 * one-line reason (the sample is rejected). */
typedef struct data_sample {
    rec_t *rec;
    uint64_t ordinal;
    int from_buffer;
    long tokens; /* BAGEL's length estimate */
    char task[16];
    int n_seg;
    pack_segment_t *seg;
    void **owned;
    int n_owned;
    const float **moments; /* per segment: latent moments to sample, or NULL */
    int *moments_bf16;
} data_sample_t;

int data_sample_from_rec(data_sample_t *s, rec_t *rec, const model_config_t *cfg, int can_encode, char *err,
                         size_t errlen);
/* Encodes, with the autoencoder, the images that came without latents. */
int data_sample_encode(data_sample_t *s, struct ae *ae, char *err, size_t errlen);
int data_sample_draw_latents(data_sample_t *s, const model_config_t *cfg, rng_t *rng, char *err, size_t errlen);
void data_sample_free(data_sample_t *s);

#endif
