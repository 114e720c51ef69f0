/* compute_env.c — see compute_env.h. */
#include "compute_env.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../../kernels/ops.h"
#include "../../kernels/prof.h"
#include "log.h"
#include "stage.h"

#ifdef BAGEL_CUDA
#include "../../kernels/cuda/ops_cuda.h"
#include "../../kernels/cuda/runtime.h"
#endif

char *openblas_get_corename(void);

static int cpu_has(const char *flag)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return 0;
    char line[8192];
    int found = 0;
    while (!found && fgets(line, sizeof line, f))
        if (!strncmp(line, "flags", 5)) {
            char pat[64];
            snprintf(pat, sizeof pat, " %s ", flag);
            size_t n = strlen(line);
            if (n && line[n - 1] == '\n')
                line[n - 1] = ' ';
            found = strstr(line, pat) != NULL;
            break;
        }
    fclose(f);
    return found;
}

void compute_env_setup(char **argv)
{
    if (getenv("BAGEL_COMPUTE_ENV"))
        return; /* already done, or turned off */
    int again = 0;
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
        again = 1;
    }
    const char *core = openblas_get_corename();
    if (!getenv("OPENBLAS_CORETYPE") && core &&
        (!strcasecmp(core, "prescott") || !strcasecmp(core, "core2") || !strcasecmp(core, "nehalem"))) {
        const char *want = cpu_has("avx512f") && cpu_has("avx512bw") ? "SkylakeX" : cpu_has("avx2") ? "Haswell" : NULL;
        if (want) {
            setenv("OPENBLAS_CORETYPE", want, 1);
            again = 1;
        }
    }
    setenv("BAGEL_COMPUTE_ENV", "1", 1);
    if (!again)
        return;
    execv("/proc/self/exe", argv);
    log_error("re-executing with OMP_WAIT_POLICY/OPENBLAS_CORETYPE set failed; going on without");
}

#ifdef BAGEL_CUDA
/* The official trainer's table of peak dense bf16 TFLOP/s by device name
 * (bagel-reference.md §4.6); 0 when unknown. */
static double gpu_peak_tflops(const char *name)
{
    static const struct {
        const char *key;
        double tflops;
    } t[] = {{"MI300X", 1336}, {"H100", 989},  {"H800", 989}, {"H200", 989}, {"A100", 312},     {"A800", 312},
             {"L40", 181.05},  {"L20", 119.5}, {"H20", 148},  {"910B", 354}, {"3070 Ti", 21.75}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strstr(name, t[i].key))
            return t[i].tflops;
    return 0;
}
#endif

static int compute_ops_select(const char *device, const char *precision, const op_table_t **ops, double *peak_tflops,
                              char *err, size_t errlen)
{
    *ops = &op_cpu;
    if (peak_tflops)
        *peak_tflops = 0;
    if (precision && strcmp(precision, "fp32") && strcmp(precision, "bf16")) {
        snprintf(err, errlen, "--precision: %s: expected fp32 or bf16", precision);
        return EXIT_USAGE;
    }
    if (!strcmp(device, "cpu")) {
        if (precision && !strcmp(precision, "bf16")) {
            snprintf(err, errlen, "--precision bf16: the cpu backend computes in fp32 only");
            return EXIT_USAGE;
        }
        return 0;
    }
    if (strcmp(device, "cuda")) {
        snprintf(err, errlen, "--device: %s: expected cpu or cuda", device);
        return EXIT_USAGE;
    }
#ifdef BAGEL_CUDA
    cuda_env_t env;
    char line[600], e2[CUDA_ENV_ERR_LEN];
    if (cuda_env_probe(&env, 0, e2)) {
        snprintf(err, errlen, "--device cuda: %s", e2);
        return EXIT_FATAL;
    }
    cuda_env_format(&env, line, sizeof line);
    log_info("%s", line);
    if (cuda_ops_init(0, e2, sizeof e2)) {
        snprintf(err, errlen, "--device cuda: %s", e2);
        return EXIT_FATAL;
    }
    cuda_ops_set_bf16(!precision || !strcmp(precision, "bf16"));
    log_info("precision: %s", cuda_ops_bf16() ? "bf16 matrix math (tensor cores), fp32 storage and accumulation"
                                              : "fp32 throughout");
    if (peak_tflops)
        *peak_tflops = gpu_peak_tflops(env.name);
    *ops = &op_cuda;
    return 0;
#else
    snprintf(err, errlen, "--device cuda: this %s was built without CUDA (make CUDA=1)", log_stage());
    return EXIT_USAGE;
#endif
}

/* BAGEL_PROFILE=1: the table is wrapped in the timing one of kernels/prof.h,
 * and compute_ops_done prints where the time went */
static const op_table_t *prof_inner, *prof_outer;

int compute_ops(const char *device, const char *precision, const op_table_t **ops, double *peak_tflops, char *err,
                size_t errlen)
{
    int rc = compute_ops_select(device, precision, ops, peak_tflops, err, errlen);
    const char *p = getenv("BAGEL_PROFILE");
    if (!rc && p && *p && strcmp(p, "0")) {
        prof_inner = *ops;
        prof_outer = *ops = op_prof_wrap(*ops);
        log_info("BAGEL_PROFILE: every op timed between syncs; the totals print when the stage ends");
    }
    return rc;
}

void compute_ops_done(const op_table_t *ops)
{
    if (ops && ops == prof_outer) {
        op_prof_print(stderr, 1);
        ops = prof_inner;
    }
#ifdef BAGEL_CUDA
    if (ops == &op_cuda)
        cuda_ops_shutdown();
#else
    (void)ops;
#endif
}
