/* test_prof.c — the timing op table (kernels/prof.h) around the CPU table:
 * every op forwarded (the wrapped product equals the plain one), calls
 * counted per op and per shape, and op_prof_reset forgetting the counts of
 * both, so that a benchmark's warm-up steps do not leak into its per-shape
 * figures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../kernels/ops.h"
#include "../../kernels/prof.h"

/* the profile as text */
static char *printed(int steps)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    op_prof_print(f, steps);
    fclose(f);
    return buf;
}

/* the number of calls on the line of `key` (an op name or a shape), -1 when
 * there is none */
static long calls_of(const char *text, const char *key)
{
    const char *p = text;
    while ((p = strstr(p, key)) != NULL) {
        const char *line = p;
        while (line > text && line[-1] != '\n')
            line--;
        if (!strncmp(line, "profile:", 8)) {
            const char *c = p + strlen(key);
            while (*c == ' ')
                c++;
            if (*c >= '0' && *c <= '9')
                return strtol(c, NULL, 10);
        }
        p += strlen(key);
    }
    return -1;
}

static void test_counts_and_reset(void **state)
{
    (void)state;
    const op_table_t *P = op_prof_wrap(&op_cpu);
    enum { N = 3, I = 5, O = 4 };
    float in[N * I], w[O * I], b[O], a[N * O], c[N * O];
    for (int i = 0; i < N * I; i++)
        in[i] = (float)(i % 7) - 3.0f;
    for (int i = 0; i < O * I; i++)
        w[i] = 0.25f * (float)(i % 5) - 0.5f;
    for (int i = 0; i < O; i++)
        b[i] = (float)i;
    op_cpu.linear_fwd(a, in, w, b, N, I, O);
    P->linear_fwd(c, in, w, b, N, I, O);
    assert_memory_equal(a, c, sizeof a);

    /* warm-up: three calls of one shape, one of another */
    for (int k = 0; k < 3; k++)
        P->linear_fwd(c, in, w, b, N, I, O);
    P->linear_fwd(c, in, w, b, 2, I, O);
    char *t = printed(1);
    assert_int_equal(calls_of(t, "linear_fwd "), 5);
    assert_int_equal(calls_of(t, "3x5->4"), 4);
    assert_int_equal(calls_of(t, "2x5->4"), 1);
    free(t);

    /* after the reset only what follows counts, per op and per shape */
    op_prof_reset();
    P->linear_fwd(c, in, w, b, 2, I, O);
    P->linear_fwd(c, in, w, b, 2, I, O);
    P->linear_fwd(c, in, w, b, N, I, O);
    t = printed(1);
    assert_int_equal(calls_of(t, "linear_fwd "), 3);
    assert_int_equal(calls_of(t, "2x5->4"), 2);
    assert_int_equal(calls_of(t, "3x5->4"), 1);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_and_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
