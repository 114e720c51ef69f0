/* test_vit_features.c — a frozen ViT's output given with the batch
 * (model_batch_t.vit_feat, what bagel-encode --vit stores) stands in for
 * running the ViT: on the reference cases with ViT images, the losses and
 * every gradient are the same bits as when the ViT runs, also with the ViT's
 * weights poisoned (so it cannot have run); while the ViT trains, features
 * are ignored. */
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
#include "../support/refcase.h"

/* one step: losses, and the gradients as a host copy */
static float *step(refcase_t *rc, const model_batch_t *b, int freeze, int poison, model_losses_t *L, size_t *n)
{
    char err[512];
    model_t *m = model_new(&rc->cfg, &op_cpu, err, sizeof err);
    if (!m)
        fail_msg("%s", err);
    model_init_test(m, rc->weights_seed);
    if (freeze)
        model_freeze(m, "vit_model.");
    assert_int_equal(model_vit_trains(m), !freeze);
    if (poison) { /* a ViT that ran would make every loss NaN */
        const model_param_t *p = model_find(m, "vit_model.vision_model.embeddings.patch_embedding.weight");
        assert_non_null(p);
        for (size_t i = 0; i < p->numel; i++)
            (*p->w)[i] = NAN;
    }
    model_caps_t caps = model_caps_of(b);
    float *g = refcase_step(rc, m, b, &caps, L, n, err, sizeof err);
    if (!g)
        fail_msg("%s", err);
    model_destroy(&m);
    return g;
}

static void same(const char *what, const model_losses_t *a, const float *ga, const model_losses_t *b, const float *gb,
                 size_t n)
{
    if (memcmp(&a->total, &b->total, sizeof(double)) || memcmp(&a->ce, &b->ce, sizeof(double)) ||
        memcmp(&a->mse, &b->mse, sizeof(double)))
        fail_msg("%s: losses %.9g/%.9g/%.9g against %.9g/%.9g/%.9g", what, a->total, a->ce, a->mse, b->total, b->ce,
                 b->mse);
    size_t diff = 0;
    for (size_t j = 0; j < n; j++)
        diff += memcmp(&ga[j], &gb[j], sizeof(float)) != 0;
    if (diff)
        fail_msg("%s: %zu of %zu gradients differ", what, diff, n);
}

static void t_features(void **state)
{
    (void)state;
    static const char *const cases[] = {"mini-mixed", "mini-reweight"};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        char path[256], err[512];
        snprintf(path, sizeof path, "tests/reference/cases/%s.json", cases[ci]);
        refcase_t rc;
        if (refcase_load(&rc, path, err, sizeof err))
            fail_msg("%s", err);
        model_batch_t *b = &rc.pack.b;
        assert_true(b->n_vit > 0);
        assert_int_equal(b->n_vit_feat_images, 0);
        /* the ViT's output, from a model of the same weights */
        model_t *m = model_new(&rc.cfg, &op_cpu, err, sizeof err);
        assert_non_null(m);
        model_init_test(m, rc.weights_seed);
        model_caps_t caps = model_caps_of(b);
        if (model_reserve(m, &caps, err, sizeof err))
            fail_msg("%s", err);
        float *feat = malloc((size_t)b->n_vit * rc.cfg.vit_hidden * sizeof(float));
        if (model_vit_features(m, b, feat, err, sizeof err))
            fail_msg("%s", err);
        model_destroy(&m);

        model_losses_t l0, l1, l2, l3;
        size_t n;
        float *g0 = step(&rc, b, 1, 0, &l0, &n); /* frozen ViT, run */
        memcpy(b->vit_feat, feat, (size_t)b->n_vit * rc.cfg.vit_hidden * sizeof(float));
        b->n_vit_feat_images = b->n_vit_images;
        float *g1 = step(&rc, b, 1, 1, &l1, &n); /* frozen ViT, features, the ViT poisoned */
        snprintf(path, sizeof path, "%s: features against the ViT", cases[ci]);
        same(path, &l0, g0, &l1, g1, n);
        /* while the ViT trains, features are ignored */
        float *g3 = step(&rc, b, 0, 0, &l3, &n);
        b->n_vit_feat_images = 0;
        float *g2 = step(&rc, b, 0, 0, &l2, &n);
        snprintf(path, sizeof path, "%s: a training ViT ignores features", cases[ci]);
        same(path, &l2, g2, &l3, g3, n);
        /* ... and one image without features means the ViT runs for all */
        b->n_vit_feat_images = b->n_vit_images - 1;
        float *g4 = step(&rc, b, 1, 0, &l1, &n);
        snprintf(path, sizeof path, "%s: partial features", cases[ci]);
        same(path, &l0, g0, &l1, g4, n);
        print_message("%s: %d ViT patches; losses %.6f with and without the ViT running\n", cases[ci], b->n_vit,
                      l0.total);
        free(feat), free(g0), free(g1), free(g2), free(g3), free(g4);
        refcase_free(&rc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(t_features)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
