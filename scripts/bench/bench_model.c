/* bench_model.c — the model's speed over one reference case's packed batch
 * (tests/reference/FORMAT.md):
 *
 *  - default: forward + backward, in tokens per second; scripts/bench/model.sh
 *    runs the PyTorch reference beside it on the CPU with the same threads;
 *  - --train: the whole training step as bagel-train takes it (forward and
 *    backward writing the gradients (model_grad_clear), clip at 1.0, AdamW,
 *    EMA 0.9999, fp32 master weights and optimizer state), with step ms, tokens/s, model TFLOP/s, MFU
 *    over --peak and the device memory in use; scripts/bench/model-gpu.sh runs
 *    it beside the PyTorch peer (tests/reference/bench_torch_gpu.py);
 *  - --profile: also the time of every op, each between two syncs, summed
 *    per op over the timed steps (kernels/prof.h); the step times of such a
 *    run include those syncs;
 *  - --recompute: activation recomputation (model_caps_t.recompute);
 *  - --zero-grad: the gradients zeroed before each step and added to
 *    (model_zero_grad), for comparison with their writing;
 *  - --count: only packs the case and prints its model FLOPs, the line
 *    `bench_ref.py flops` prints for the same case (the two counts agree).
 *
 *   bench-model CASE.json [ITERS] [cpu|cuda] [fp32|bf16] [--train] [--count]
 *               [--profile] [--recompute] [--zero-grad] [--warmup N]
 *               [--peak TFLOPS]                    (threads: OMP_NUM_THREADS)
 *
 * Timing: a host clock around each step, after ops->sync (the CUDA backend
 * queues work on one stream; sync waits for it); median and best of ITERS
 * after --warmup steps (default 1). The FLOPs are the count of issue 8
 * (docs/model.md, "Benchmark: the recipe batch"): linears 6 x parameters
 * used per token by token kind, attention 12 x head_dim x heads per visible
 * query-key pair, lm_head on CE tokens only. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../kernels/ops.h"
#include "../../kernels/prof.h"
#include "../../models/model.h"
#include "../../models/optim.h"
#include "../../stages/common/compute_env.h"
#include "../../tests/support/refcase.h"
#include "bench_util.h"

#ifdef BAGEL_CUDA
#include <cuda_runtime_api.h>
#endif


/* ---- model FLOPs of one step (the terms of bench_ref.py model_flops) */

enum { F_LIN_UND, F_LIN_GEN, F_VIT, F_CONN, F_LAT_IN, F_LLM2VAE, F_LM_HEAD, F_ATTN_LLM, F_ATTN_VIT, F_COUNT };
static const char *const flop_names[F_COUNT] = {"linear_und", "linear_gen", "vit",      "connector", "latent_in",
                                                "llm2vae",    "lm_head",    "attn_llm", "attn_vit"};

typedef struct flops {
    double term[F_COUNT];
    double total;
    long long pairs_llm, pairs_vit; /* visible query-key pairs, one head, one layer */
    int n_und, n_gen;
} flops_t;

/* Visible query-key pairs of the packed sequence by the rule of ops.h
 * (op_attn_visible), split by split: a query sees every earlier non-noise
 * split of its sample whole, and its own split up to itself (causal) or whole. */
static long long attn_pairs(const model_batch_t *b)
{
    long long pairs = 0;
    for (int qs = 0; qs < b->n_splits; qs++) {
        long long l = b->split_start[qs + 1] - b->split_start[qs], before = 0;
        for (int ks = b->split_first[qs]; ks < qs; ks++)
            if (b->split_mode[ks] != OP_SPLIT_NOISE)
                before += b->split_start[ks + 1] - b->split_start[ks];
        pairs += l * before + (b->split_mode[qs] == OP_SPLIT_CAUSAL ? l * (l + 1) / 2 : l * l);
    }
    return pairs;
}

static flops_t model_flops(const model_config_t *c, const model_batch_t *b)
{
    flops_t f = {0};
    double H = c->hidden, hd = c->head_dim, nh = c->heads, nkv = c->kv_heads, I = c->inter, L = c->layers;
    double per_tok = L * (H * nh * hd + 2 * H * nkv * hd + nh * hd * H + 3 * H * I);
    f.n_gen = b->n_lat;
    f.n_und = b->S - b->n_lat;
    f.term[F_LIN_UND] = 6 * f.n_und * per_tok;
    f.term[F_LIN_GEN] = 6 * f.n_gen * per_tok;
    if (c->visual_und) {
        double vH = c->vit_hidden, vI = c->vit_inter, Lv = c->vit_layers;
        f.term[F_VIT] = 6.0 * b->n_vit * (vH * model_vit_dim(c) + Lv * (4 * vH * vH + 2 * vH * vI));
        f.term[F_CONN] = 6.0 * b->n_vit * (vH * H + H * H);
        for (int i = 0; i < b->n_vit_images; i++)
            f.pairs_vit += (long long)b->vit_lens[i] * b->vit_lens[i];
        f.term[F_ATTN_VIT] = 12.0 * f.pairs_vit * vH * Lv;
    }
    if (c->visual_gen) {
        double D = model_latent_dim(c);
        f.term[F_LAT_IN] = 6.0 * b->n_lat * (D * H + MODEL_TIME_FREQ * H + H * H);
        f.term[F_LLM2VAE] = 6.0 * b->n_mse * H * D;
    }
    f.term[F_LM_HEAD] = 6.0 * b->n_ce * H * c->vocab;
    f.pairs_llm = attn_pairs(b);
    f.term[F_ATTN_LLM] = 12.0 * f.pairs_llm * hd * nh * L;
    for (int i = 0; i < F_COUNT; i++)
        f.total += f.term[i];
    return f;
}

static void flops_print(const char *name, const model_batch_t *b, const flops_t *f)
{
    printf("flops case=%s S=%d und=%d gen=%d vit=%d ce=%d mse=%d pairs_llm=%lld pairs_vit=%lld", name, b->S, f->n_und,
           f->n_gen, b->n_vit, b->n_ce, b->n_mse, f->pairs_llm, f->pairs_vit);
    for (int i = 0; i < F_COUNT; i++)
        printf(" %s=%.6g", flop_names[i], f->term[i]);
    printf(" total=%.6g\n", f->total);
}

/* ---- device memory */

/* bytes in use on the device (total − free), 0 when not known (the CPU) */
static double device_used(const op_table_t *ops)
{
#ifdef BAGEL_CUDA
    size_t fr = 0, tot = 0;
    if (!strcmp(ops->name, "cuda") && cudaMemGetInfo(&fr, &tot) == cudaSuccess)
        return (double)(tot - fr);
#else
    (void)ops;
#endif
    return 0;
}


/* before a step: the gradients written by its backward (model_grad_clear,
 * as bagel-train), or with --zero-grad zeroed now and added to */
static void clear_grads(model_t *m, int zero_grad)
{
    if (zero_grad)
        model_zero_grad(m);
    else
        model_grad_clear(m);
}

static int usage(void)
{
    fprintf(stderr, "usage: bench-model CASE.json [ITERS] [cpu|cuda] [fp32|bf16] [--train] [--count] [--profile] [--recompute] [--zero-grad] "
                    "[--warmup N] [--peak TFLOPS]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *pos[4] = {0};
    int npos = 0, train = 0, count_only = 0, warmup = 1, profile = 0, recompute = 0, zero_grad = 0;
    double peak = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--train"))
            train = 1;
        else if (!strcmp(argv[i], "--profile"))
            profile = 1;
        else if (!strcmp(argv[i], "--recompute"))
            recompute = 1;
        else if (!strcmp(argv[i], "--zero-grad"))
            zero_grad = 1;
        else if (!strcmp(argv[i], "--count"))
            count_only = 1;
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc)
            warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--peak") && i + 1 < argc)
            peak = atof(argv[++i]);
        else if (argv[i][0] == '-' && argv[i][1] == '-')
            return usage();
        else if (npos < 4)
            pos[npos++] = argv[i];
        else
            return usage();
    }
    if (npos < 1 || warmup < 0)
        return usage();
    int iters = npos > 1 ? atoi(pos[1]) : 5;
    if (iters < 1)
        return usage();
    char err[512];
    refcase_t rc;
    if (refcase_load(&rc, pos[0], err, sizeof err)) {
        fprintf(stderr, "bench-model: %s\n", err);
        return 1;
    }
    model_batch_t *b = &rc.pack.b;
    flops_t fl = model_flops(&rc.cfg, b);
    flops_print(rc.name, b, &fl);
    if (count_only) {
        refcase_free(&rc);
        return 0;
    }
    const op_table_t *ops;
    int rcode = compute_ops(npos > 2 ? pos[2] : "cpu", npos > 3 ? pos[3] : NULL, &ops, NULL, err, sizeof err);
    if (rcode) {
        fprintf(stderr, "bench-model: %s\n", err);
        return rcode;
    }
    const op_table_t *ops_started = ops;
    if (profile) /* every op timed between syncs (kernels/prof.h) */
        ops = op_prof_wrap(ops);
    double mem0 = device_used(ops);
    model_t *m = model_new(&rc.cfg, ops, err, sizeof err);
    if (!m) {
        fprintf(stderr, "bench-model: %s\n", err);
        return 1;
    }
    model_init_test(m, rc.weights_seed);
    model_caps_t caps = model_caps_of(b);
    caps.recompute = recompute;
    if (model_reserve(m, &caps, err, sizeof err)) {
        fprintf(stderr, "bench-model: %s\n", err);
        return 1;
    }
    model_plan_print(m, stderr);

    /* the optimizer as bagel-train sets it up: every trainable parameter,
     * BAGEL's hyperparameters (clip 1.0, EMA 0.9999), a fixed rate */
    optim_t *opt = NULL;
    float *ema = NULL;
    optim_sched_t sched;
    if (train) {
        optim_span_t *spans = calloc((size_t)m->n_params + 1, sizeof *spans);
        int ns = 0;
        if (!spans) {
            fprintf(stderr, "bench-model: out of memory\n");
            return 1;
        }
        for (int i = 0; i < m->n_params; i++)
            if (m->params[i].trainable)
                spans[ns++] = (optim_span_t){m->params[i].offset, m->params[i].numel};
        optim_hparams_t hp = optim_bagel_hparams;
        hp.max_grad_norm = 1.0;
        hp.ema_decay = 0.9999f;
        opt = optim_new(ops, &hp, m->n_floats, spans, ns, err, sizeof err);
        free(spans);
        if (!opt || optim_sched_parse(&sched, "fixed", 1e-4, 0, 0, 0, err, sizeof err)) {
            fprintf(stderr, "bench-model: %s\n", err);
            return 1;
        }
        ema = ops->alloc(m->n_floats * sizeof(float));
        float *host = malloc(m->n_floats * sizeof(float));
        if (!ema || !host) {
            fprintf(stderr, "bench-model: out of memory for the EMA copy (%zu floats)\n", m->n_floats);
            return 1;
        }
        ops->download(host, m->param_mem, m->n_floats * sizeof(float));
        ops->upload(ema, host, m->n_floats * sizeof(float));
        free(host);
        clear_grads(m, zero_grad);
    }

    double *dt = malloc((size_t)iters * sizeof *dt);
    if (!dt)
        return 1;
    model_losses_t L = {0};
    double first_loss = NAN, norm = 0;
    int skipped = 0;
    if (train) /* as bagel-train: the weights change only through AdamW from here */
        ops->track_weights(m->param_mem, m->n_floats);
    ops->sync();
    for (int it = -warmup; it < iters; it++) {
        double t0 = bench_now();
        if (train) {
            if (model_forward(m, b, &rc.loss, 1, &L, err, sizeof err) || model_backward(m, err, sizeof err)) {
                fprintf(stderr, "bench-model: %s\n", err);
                return 1;
            }
            optim_report_t rep = {0};
            optim_update(opt, &sched, m->param_mem, m->grad_mem, ema, &rep);
            clear_grads(m, zero_grad);
            norm = rep.norm;
            skipped += rep.skipped;
        } else {
            clear_grads(m, zero_grad);
            if (model_forward(m, b, &rc.loss, 1, &L, err, sizeof err) || model_backward(m, err, sizeof err)) {
                fprintf(stderr, "bench-model: %s\n", err);
                return 1;
            }
        }
        ops->sync();
        double t = bench_now() - t0;
        if (it == -warmup)
            first_loss = L.total;
        if (it == -1 && profile)
            op_prof_reset();
        if (it >= 0)
            dt[it] = t;
    }
    double mem = device_used(ops) - mem0;
    double total = 0;
    for (int i = 0; i < iters; i++)
        total += dt[i];
    double med = bench_median(dt, iters), best = dt[0];
    if (train) {
        double tflops = fl.total / med / 1e12;
        size_t P = m->n_floats * 4, T = m->n_trainable * 4;
        printf("bench-model mode=train device=%s case=%s tokens=%d threads=%d warmup=%d iters=%d first_loss=%.6f "
               "loss=%.6f grad_norm=%.4g skipped=%d step_ms=%.1f best_ms=%.1f mean_ms=%.1f tokens_per_s=%.0f "
               "model_tflop=%.4f tflops=%.4g peak_tflops=%.4g mfu=%.2f mem_gib=%.2f plan_gib=%.2f\n",
               ops->name, rc.name, b->S, omp_get_max_threads(), warmup, iters, first_loss, L.total, norm, skipped,
               med * 1e3, best * 1e3, total / iters * 1e3, b->S / med, fl.total / 1e12, tflops, peak,
               peak > 0 ? 100 * tflops / peak : 0, mem / 1073741824.0,
               (P * 2.0 + T * 3.0 + m->act_bytes) / 1073741824.0);
    } else {
        printf("bench-model device=%s case=%s tokens=%d threads=%d iters=%d loss=%.6f best_ms=%.1f mean_ms=%.1f "
               "tokens_per_s=%.0f\n",
               ops->name, rc.name, b->S, omp_get_max_threads(), iters, L.total, best * 1e3, total / iters * 1e3,
               b->S / best);
    }
    if (profile)
        op_prof_print(stdout, iters);
    free(dt);
    if (ema)
        ops->free(ema);
    optim_destroy(&opt);
    model_destroy(&m);
    compute_ops_done(ops_started);
    refcase_free(&rc);
    return 0;
}
