/* transform.h — the main loop of a stage that enriches samples one in, one
 * out (bagel-tokenize, bagel-image, ...): read records, let the stage's
 * function add to each sample, write every record on. A sample the function
 * refuses becomes a reject naming the stage; rejects and end records pass
 * through untouched; unreadable input is logged and counted; --strict makes
 * the first bad record or reject fatal. */
#ifndef BAGEL_TRANSFORM_H
#define BAGEL_TRANSFORM_H

#include "stage.h"

#include <stdint.h>

/* Enrich sample r in place. 0: done; > 0: refuse it, with the one-line reason
 * in why (REC_ERR_LEN bytes); < 0: out of memory (fatal). */
typedef int (*stage_sample_fn)(void *arg, rec_t *r, char *why);

typedef struct {
    uint64_t samples; // samples handed to the function
    uint64_t rejects; // rejects written: refused here or arriving as rejects
} stage_counts_t;

/* Run the loop over st's inputs and output. Returns the exit code. */
int stage_transform(stage_t *st, stage_sample_fn fn, void *arg, stage_counts_t *counts);

#endif
