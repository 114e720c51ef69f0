/* test_infer_ref.c — generation against the PyTorch inference model
 * (tests/reference/FORMAT.md, "Generation"): every case under
 * tests/reference/gen_cases on the CPU backend, within 1e-4 relative. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>

#include "../../kernels/ops.h"
#include "../support/gencheck.h"

static void test_cases(void **state)
{
    (void)state;
    DIR *d = opendir("tests/reference/gen_cases");
    assert_non_null(d);
    struct dirent *e;
    int n = 0, bad = 0;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".json"))
            continue;
        char path[512], msg[512];
        snprintf(path, sizeof path, "tests/reference/gen_cases/%s", e->d_name);
        if (gencheck_case(path, &op_cpu, 1e-4, msg, sizeof msg)) {
            print_error("%s: %s\n", e->d_name, msg);
            bad++;
        } else {
            print_message("# %s\n", msg);
        }
        n++;
    }
    closedir(d);
    assert_true(n >= 16);
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_cases)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
