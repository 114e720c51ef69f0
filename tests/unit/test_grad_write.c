/* test_grad_write.c — parameter gradients written instead of zeroed and
 * added (op_table_t.grad_write, model_grad_clear) on the CPU: every op that
 * produces them, and the model's whole backward (every part, text only, two
 * micro-batches, tied embeddings), into gradients filled with NaN against
 * the same work into zeroed gradients; equal (tests/support/gradwrite.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "../support/gradwrite.h"

static void test_ops_write(void **state)
{
    (void)state;
    char msg[512];
    if (gradwrite_ops(&op_cpu, 0.0, msg, sizeof msg))
        fail_msg("%s", msg);
}

static void test_model_write(void **state)
{
    (void)state;
    char msg[512];
    if (gradwrite_model(&op_cpu, 0.0, msg, sizeof msg))
        fail_msg("%s", msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ops_write),
        cmocka_unit_test(test_model_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
