/* test_accum.c — gradient accumulation: two micro-batches of one sample each,
 * each loss scaled by 1/2, give the gradients of one batch holding both
 * samples (BAGEL normalizes per micro-batch, so this holds when both samples
 * have the same numbers of CE and MSE tokens, as here); and the packer's
 * draws are the same wherever a sample lands, once set. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../models/model.h"
#include "../../models/pack.h"
#include "../support/gradwrite.h"

static model_config_t cfg;

static void load_cfg(void)
{
    char err[300];
    if (model_config_load(&cfg, "tests/stage/data/train-mini.json", NULL, err, sizeof err))
        fail_msg("%s", err);
}

/* the draws of sample k's latents, whatever the batch */
static void set_draws(model_batch_t *b, int first_lat, int k)
{
    int n = 16; /* (16/4)² latent tokens */
    for (int i = 0; i < n; i++) {
        b->tau[first_lat + i] = 0.3f * (float)(k + 1) - 0.5f;
        for (int d = 0; d < b->lat_dim; d++)
            b->eps[(size_t)(first_lat + i) * b->lat_dim + d] = sinf((float)(k * 1000 + i * 50 + d));
    }
}

static void grads(model_t *m, pack_t **packs, int n, float scale, float *out)
{
    char err[300];
    model_zero_grad(m);
    model_loss_opts_t lo = model_default_loss;
    lo.grad_scale = scale;
    for (int i = 0; i < n; i++) {
        model_losses_t L;
        if (model_forward(m, &packs[i]->b, &lo, 1, &L, err, sizeof err) || model_backward(m, err, sizeof err))
            fail_msg("%s", err);
    }
    memcpy(out, m->grad_mem, m->n_floats * sizeof(float));
}

static void test_accumulation(void **state)
{
    (void)state;
    load_cfg();
    char err[300];
    test_sample_t s[2];
    test_sample_make(&s[0], 0);
    test_sample_make(&s[1], 1);
    pack_opts_t po = {0};
    pack_t both, one[2];
    pack_init(&both, &cfg, &po, 1);
    for (int k = 0; k < 2; k++) {
        pack_sample_t ps = {.n_segments = 2, .seg = s[k].seg};
        if (pack_add(&both, &ps, err, sizeof err))
            fail_msg("%s", err);
        pack_init(&one[k], &cfg, &po, 99 + k);
        if (pack_add(&one[k], &ps, err, sizeof err))
            fail_msg("%s", err);
        set_draws(&one[k].b, 0, k);
        pack_update_t(&one[k].b, cfg.timestep_shift);
    }
    set_draws(&both.b, 0, 0);
    set_draws(&both.b, 16, 1);
    pack_update_t(&both.b, cfg.timestep_shift);
    assert_int_equal(both.b.n_ce, one[0].b.n_ce + one[1].b.n_ce);
    assert_int_equal(one[0].b.n_ce, one[1].b.n_ce);
    assert_int_equal(one[0].b.n_mse, one[1].b.n_mse);

    model_t *m = model_new(&cfg, &op_cpu, err, sizeof err);
    if (!m)
        fail_msg("%s", err);
    model_init_test(m, 5);
    model_caps_t caps = model_caps_of(&both.b);
    if (model_reserve(m, &caps, err, sizeof err))
        fail_msg("%s", err);
    float *g1 = malloc(m->n_floats * sizeof(float)), *g2 = malloc(m->n_floats * sizeof(float));
    pack_t *pb[1] = {&both}, *p2[2] = {&one[0], &one[1]};
    grads(m, pb, 1, 1.0f, g1);
    grads(m, p2, 2, 0.5f, g2);
    double d = 0, r = 0;
    for (size_t i = 0; i < m->n_floats; i++) {
        d += ((double)g1[i] - g2[i]) * ((double)g1[i] - g2[i]);
        r += (double)g1[i] * g1[i];
    }
    printf("# accumulation: |g_batch - g_accum| / |g_batch| = %.3g\n", sqrt(d / r));
    assert_true(r > 0);
    assert_true(sqrt(d / r) < 1e-5);
    free(g1);
    free(g2);
    model_destroy(&m);
    pack_free(&both);
    pack_free(&one[0]);
    pack_free(&one[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_accumulation)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
