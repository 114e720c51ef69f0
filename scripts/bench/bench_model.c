/* bench_model.c — forward + backward of the model on the CPU backend over one
 * reference case's packed batch (tests/reference/FORMAT.md), in tokens per
 * second; scripts/bench/model.sh runs the PyTorch reference beside it on the
 * same batch with the same threads.
 *
 *   bench-model CASE.json [ITERS] [cpu|cuda]     (threads: OMP_NUM_THREADS) */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../../kernels/ops.h"
#include "../../models/model.h"
#include "../../tests/support/refcase.h"
#include "../../stages/common/compute_env.h"
#include <string.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench-model CASE.json [ITERS]\n");
        return 2;
    }
    int iters = argc > 2 ? atoi(argv[2]) : 5;
    char err[512];
    refcase_t rc;
    if (refcase_load(&rc, argv[1], err, sizeof err)) {
        fprintf(stderr, "bench-model: %s\n", err);
        return 1;
    }
    model_batch_t *b = &rc.pack.b;
    const op_table_t *ops;
    if (compute_ops(argc > 3 ? argv[3] : "cpu", &ops, NULL, err, sizeof err)) {
        fprintf(stderr, "bench-model: %s\n", err);
        return 1;
    }
    model_t *m = model_new(&rc.cfg, ops, err, sizeof err);
    if (!m) {
        fprintf(stderr, "bench-model: %s\n", err);
        return 1;
    }
    model_init_test(m, rc.weights_seed);
    model_caps_t caps = {.S = b->S,
                         .n_vit = b->n_vit,
                         .n_lat = b->n_lat,
                         .n_ce = b->n_ce,
                         .n_splits = b->n_splits,
                         .n_vit_images = b->n_vit_images};
    if (model_reserve(m, &caps, err, sizeof err)) {
        fprintf(stderr, "bench-model: %s\n", err);
        return 1;
    }
    model_plan_print(m, stderr);
    double best = 1e30, total = 0;
    model_losses_t L = {0};
    for (int it = -1; it < iters; it++) { /* one warm-up */
        double t0 = now();
        model_zero_grad(m);
        if (model_forward(m, b, &rc.loss, 1, &L, err, sizeof err) || model_backward(m, err, sizeof err)) {
            fprintf(stderr, "bench-model: %s\n", err);
            return 1;
        }
        double dt = now() - t0;
        if (it >= 0) {
            total += dt;
            if (dt < best)
                best = dt;
        }
    }
    printf("bench-model device=%s case=%s tokens=%d threads=%d iters=%d loss=%.6f best_ms=%.1f mean_ms=%.1f "
           "tokens_per_s=%.0f\n",
           ops->name, rc.name, b->S, omp_get_max_threads(), iters, L.total, best * 1e3, total / iters * 1e3,
           b->S / best);
    model_destroy(&m);
    refcase_free(&rc);
    return 0;
}
