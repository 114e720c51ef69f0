/* test_model_ref.c — the C model against the PyTorch reference
 * (tests/reference/FORMAT.md): for every case under tests/reference/cases,
 * pack the samples, run forward and backward on the CPU backend and compare
 * the packed batch, the masks, the losses, the final hidden states and every
 * parameter's gradient with the golden file PyTorch wrote.
 *
 * BAGEL_REF_CASES=a,b limits the cases (the big 0.5B case takes seconds and
 * about 4 GB). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>

#include "../../kernels/ops.h"
#include "../../models/model.h"
#include "../../models/pack.h"
#include "../../models/rng.h"
#include "../../models/safetensors.h"
#include "../support/refcheck.h"

#define REF_DIR "tests/reference"

static int wanted(const char *name)
{
    /* under the sanitizers the two large cases (86M and 332M parameters)
     * take many minutes: the small ones cover every code path */
    if (getenv("BAGEL_SANITIZED") && !getenv("BAGEL_REF_CASES") && strncmp(name, "mini", 4))
        return 0;
    const char *only = getenv("BAGEL_REF_CASES");
    if (!only || !*only)
        return 1;
    size_t n = strlen(name);
    for (const char *p = only; *p;) {
        const char *c = strchr(p, ',');
        size_t k = c ? (size_t)(c - p) : strlen(p);
        if (k == n && !strncmp(p, name, n))
            return 1;
        p += k + (c ? 1 : 0);
    }
    return 0;
}

static void test_cases(void **state)
{
    (void)state;
    DIR *d = opendir(REF_DIR "/cases");
    assert_non_null(d);
    struct dirent *e;
    char names[64][128];
    int n = 0;
    while ((e = readdir(d)) && n < 64) {
        size_t l = strlen(e->d_name);
        if (l > 5 && !strcmp(e->d_name + l - 5, ".json"))
            snprintf(names[n++], 128, "%.*s", (int)(l - 5), e->d_name);
    }
    closedir(d);
    assert_true(n > 0);
    qsort(names, (size_t)n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    for (int i = 0; i < n; i++) {
        if (!wanted(names[i])) {
            printf("# %s: skipped (BAGEL_REF_CASES, or a large case under the sanitizers)\n", names[i]);
            continue;
        }
        char path[300];
        snprintf(path, sizeof path, REF_DIR "/cases/%s.json", names[i]);
        char msg[1024];
        if (refcheck_case(path, &op_cpu, 1e-4, msg, sizeof msg))
            fail_msg("%s", msg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_cases)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
