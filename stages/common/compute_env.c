/* compute_env.c — see compute_env.h. */
#include "compute_env.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"

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
