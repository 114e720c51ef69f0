/* optim.h — the math of one training step after the backward pass, as the
 * official BAGEL trainer does it (bagel-reference.md §4.4): the learning-rate
 * schedule, global gradient-norm clipping, the AdamW update, the EMA of the
 * weights, and the optimizer state in and out of safetensors. Every vector
 * operation goes through the op table (ops->sumsq, scale, adamw, ema, zero),
 * so the same code drives the CPU and the CUDA backend; block pointers are
 * backend memory.
 *
 * Not here: the loss scaling for gradient accumulation (the trainer divides
 * the loss by the number of micro-steps), the EMA and model weight files
 * (checkpoint.h), distributed reduction.
 *
 * Layout. The trainer keeps one parameter block of n_floats floats and a
 * gradient block of the same layout (model.h: frozen parameters and the fixed
 * position tables have no gradient). The optimizer is told which ranges are
 * trained, as (offset, count) spans into that layout; everything outside the
 * spans is never read or written (gradients, parameters, EMA). Adjacent spans
 * are merged. The AdamW moments m and v are compact: n_trainable floats each,
 * the spans' ranges one after the other.
 *
 * Steps. o->step counts the updates taken. The schedule is indexed by the
 * same count: the update number k (k = 0, 1, ...) uses optim_lr(s, k), and
 * AdamW's bias correction uses k + 1, as torch's AdamW with a LambdaLR
 * stepped after every optimizer.step() does.
 *
 * State file (optim_save / optim_load), safetensors, little-endian:
 *   __metadata__ {"format": "bagelpipe-optim", "version": "1", plus the
 *                 hyperparameters for information ("beta1", "beta2", "eps",
 *                 "weight_decay"; not checked on load, a resume may change
 *                 them)}
 *   "exp_avg"     F32 [n_trainable]   m, compact as above
 *   "exp_avg_sq"  F32 [n_trainable]   v
 *   "spans"       I64 [n_spans, 2]    (offset, count) of the merged spans
 *   "n_floats"    I64 []              the parameter block's length
 *   "step"        I64 []              updates taken
 * Two whole blocks rather than one tensor per parameter: the state is only
 * for resuming this trainer (torch's own optimizer file is a pickle nobody
 * else reads either), and a block saves and loads as raw f32, so a resume is
 * bit-exact. The load refuses a file whose spans or n_floats differ from the
 * optimizer's (the set of trained parameters changed) and anything but F32.
 */
#ifndef BAGEL_OPTIM_H
#define BAGEL_OPTIM_H

#include <stddef.h>

#include "../kernels/ops.h"

/* ---- learning-rate schedules (transformers 4.49, run by torch's LambdaLR) */

typedef enum {
    /* "fixed": λ = 1 (transformers' get_constant_schedule, which
     * transformers names "constant"; the names here are BAGEL's, whose
     * --lr_scheduler constant means the warmup schedule below) */
    OPTIM_SCHED_FIXED,
    /* "constant" (BAGEL's name; alias "constant_with_warmup"):
     * λ = k / max(1, warmup) for k < warmup, else 1 — the first update of a
     * run with warmup uses lr 0 (get_constant_schedule_with_warmup) */
    OPTIM_SCHED_CONSTANT,
    /* "linear": warmup as above, then λ = max(0, (total − k) / max(1, total −
     * warmup)) (get_linear_schedule_with_warmup) */
    OPTIM_SCHED_LINEAR,
    /* "cosine" (BAGEL's name; alias "cosine_with_min_lr"): warmup as above,
     * then p = (k − warmup) / max(1, total − warmup),
     * λ = max(0, f·(1 − r) + r), f = 0.5·(1 + cos(π·p)), r = min_lr / lr
     * (get_cosine_with_min_lr_schedule_with_warmup(min_lr=...), num_cycles
     * 0.5). This is bagel-reference.md's r + (1 − r)·f with transformers'
     * order of operations, so values match LambdaLR to the last bit. As in
     * transformers, p is not clamped: past `total` the rate climbs back
     * towards lr (BAGEL stops at total_steps, so it never gets there).
     * min_lr 0 gives transformers' plain "cosine" schedule. */
    OPTIM_SCHED_COSINE,
    OPTIM_SCHED_COUNT
} optim_sched_kind_t;

typedef struct optim_sched {
    int kind;      /* optim_sched_kind_t */
    double lr;     /* peak learning rate (BAGEL: 1e-4; fine-tune recipe 2e-5) */
    double min_lr; /* cosine floor (BAGEL: 1e-7); unused by the others */
    long warmup;   /* warmup updates (BAGEL: 2000) */
    long total;    /* total updates (BAGEL: 500000); linear and cosine */
} optim_sched_t;

/* Fills *s from a schedule name ("fixed", "constant", "constant_with_warmup",
 * "linear", "cosine", "cosine_with_min_lr") and the numbers; checks them
 * (lr > 0 finite, 0 <= min_lr, warmup >= 0, total >= 0). 0, or -1 with err. */
int optim_sched_parse(optim_sched_t *s, const char *name, double lr, double min_lr, long warmup, long total, char *err,
                      size_t errlen);
/* the canonical name of a kind ("fixed", "constant", "linear", "cosine") */
const char *optim_sched_name(int kind);
/* the learning rate of the update that follows k updates: lr·λ(k), k >= 0 */
double optim_lr(const optim_sched_t *s, long k);

/* ---- the optimizer */

typedef struct optim_span {
    size_t offset; /* floats from the start of the parameter block */
    size_t count;
} optim_span_t;

typedef struct optim_hparams {
    float beta1, beta2;   /* 0.9, 0.95 */
    float eps;            /* 1e-15 */
    float weight_decay;   /* 0 (decoupled: p *= 1 − lr·wd, before the Adam step) */
    float ema_decay;      /* 0.9999 */
    double max_grad_norm; /* 1.0; <= 0: no clipping (the norm is still measured) */
} optim_hparams_t;

/* BAGEL's values, listed above */
extern const optim_hparams_t optim_bagel_hparams;

typedef struct optim {
    const op_table_t *ops;
    optim_hparams_t hp;
    size_t n_floats;     /* the parameter block's length */
    int n_spans;         /* after merging */
    optim_span_t *spans; /* (n_spans) ascending, disjoint, none empty */
    size_t n_trainable;  /* Σ counts */
    float *m, *v;        /* (n_trainable) f32 backend memory; NULL when 0 */
    long step;           /* updates taken */
} optim_t;

/* Copies and checks the spans (each inside n_floats, ascending, disjoint;
 * empty ones dropped, adjacent ones merged) and allocates zeroed moments on
 * the backend. NULL with err. */
optim_t *optim_new(const op_table_t *ops, const optim_hparams_t *hp, size_t n_floats, const optim_span_t *spans,
                   int n_spans, char *err, size_t errlen);
/* Frees and sets *o to NULL; NULL or *o == NULL is fine. */
void optim_destroy(optim_t **o);

/* Zeroes the gradients inside the spans (what zero_grad() does to trained
 * parameters). grads (n_floats). */
void optim_zero(const optim_t *o, float *grads);

/* The global L2 norm of the gradients inside the spans, Σ g² accumulated in
 * double (ops->sumsq per span). */
double optim_grad_norm(const optim_t *o, const float *grads);

/* torch.nn.utils.clip_grad_norm_: measures the norm, and when it is finite
 * multiplies every gradient by min(1, max_norm / (norm + 1e-6)) (nothing is
 * touched when that is 1, which equals torch's multiply by 1.0). Returns the
 * pre-clip norm. A NaN or infinite norm is returned as it is and the
 * gradients are left alone (torch would multiply them into NaN); the caller
 * skips that step. max_norm <= 0: only measures. */
double optim_clip(const optim_t *o, float *grads, double max_norm);

/* One AdamW update of the parameters inside the spans with learning rate lr
 * (ops->adamw, bias correction with o->step + 1), then o->step += 1. */
void optim_adamw(optim_t *o, float *params, const float *grads, double lr);

/* ema = decay·ema + (1 − decay)·params inside the spans (ops->ema). */
void optim_ema(const optim_t *o, float *ema, const float *params, float decay);

/* What one optimizer step did. */
typedef struct optim_report {
    double norm; /* pre-clip gradient norm */
    double lr;   /* learning rate of this update (0 when skipped) */
    int skipped; /* 1: non-finite norm, no update, step count unchanged */
} optim_report_t;

/* BAGEL's order after the last micro-step of an accumulation window:
 * clip_grad_norm_(hp.max_grad_norm), AdamW with optim_lr(s, o->step), EMA
 * (hp.ema_decay; ema may be NULL for none). A non-finite norm skips all
 * three and leaves the step count (and so the schedule) where it was. The
 * clip's coefficient and the EMA go into AdamW's one pass over the state
 * (ops->adamw), with the same bits as the three one after the other; the
 * gradients are left as they were: neither scaled nor zeroed (the trainer's
 * next model_grad_clear, or optim_zero).
 * Returns r->skipped ? -1 : 0. */
int optim_update(optim_t *o, const optim_sched_t *s, float *params, const float *grads, float *ema,
                 optim_report_t *r);

/* ---- state file (layout in the header comment) */

/* Writes m, v, the spans and the step count to path (tmp, fsync, rename).
 * 0, or -1 with err. */
int optim_save(const optim_t *o, const char *path, char *err, size_t errlen);
/* Reads a file written by optim_save into o (same n_floats and spans
 * required): m, v bit-identical, o->step restored. On error o is unchanged.
 * 0, or -1 with err. */
int optim_load(optim_t *o, const char *path, char *err, size_t errlen);

#endif
