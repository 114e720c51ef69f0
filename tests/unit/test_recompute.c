/* test_recompute.c — activation recomputation (model_caps_t.recompute)
 * changes nothing but memory: on every reference case, the losses and every
 * gradient of a training step are the same bits with and without it, and
 * the activation plan is smaller where the model has more than one layer. */
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

static const char *const cases[] = {"tiny", "mini-mixed", "mini-reweight", "0.5b-1layer"};

/* one step's losses and gradients (host copies, owned by the caller) */
static float *step(refcase_t *rc, int recompute, model_losses_t *L, size_t *n, size_t *act_bytes)
{
    char err[512];
    const model_batch_t *b = &rc->pack.b;
    model_t *m = model_new(&rc->cfg, &op_cpu, err, sizeof err);
    if (!m)
        fail_msg("%s", err);
    model_init_test(m, rc->weights_seed);
    model_caps_t caps = model_caps_of(b);
    caps.recompute = recompute;
    float *g = refcase_step(rc, m, b, &caps, L, n, err, sizeof err);
    if (!g)
        fail_msg("%s", err);
    *act_bytes = m->act_bytes;
    model_destroy(&m);
    return g;
}

static void t_same_bits(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[256], err[512];
        snprintf(path, sizeof path, "tests/reference/cases/%s.json", cases[i]);
        refcase_t rc;
        if (refcase_load(&rc, path, err, sizeof err))
            fail_msg("%s", err);
        model_losses_t a, b;
        size_t na, nb, acta, actb;
        float *ga = step(&rc, 0, &a, &na, &acta), *gb = step(&rc, 1, &b, &nb, &actb);
        assert_int_equal(na, nb);
        if (a.total != b.total || a.ce != b.ce || a.mse != b.mse)
            fail_msg("%s: losses differ with recomputation: %.9g/%.9g/%.9g against %.9g/%.9g/%.9g", cases[i],
                     a.total, a.ce, a.mse, b.total, b.ce, b.mse);
        size_t diff = 0, first = 0;
        for (size_t j = 0; j < na; j++)
            if (memcmp(&ga[j], &gb[j], sizeof(float)) && !diff++)
                first = j;
        if (diff)
            fail_msg("%s: %zu of %zu gradients differ with recomputation (first at %zu: %.9g against %.9g)", cases[i],
                     diff, na, first, ga[first], gb[first]);
        if (rc.cfg.layers > 1 && !(actb < acta))
            fail_msg("%s: recomputation did not shrink the activations (%zu against %zu bytes)", cases[i], actb, acta);
        print_message("%s: %zu gradients identical; activations %zu -> %zu bytes\n", cases[i], na, acta, actb);
        free(ga);
        free(gb);
        refcase_free(&rc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_same_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
