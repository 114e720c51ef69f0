/* compute_env.h — process settings for the stages that compute (bagel-train,
 * and later bagel-encode and bagel-generate) that must be in the environment
 * before the libraries start: both read it when they are loaded. */
#ifndef BAGEL_COMPUTE_ENV_H
#define BAGEL_COMPUTE_ENV_H

/* When the user has not chosen otherwise, re-executes the program once with
 *  - OMP_WAIT_POLICY=PASSIVE: the OpenMP threads of our kernels otherwise
 *    spin between parallel regions and take the cores OpenBLAS's own threads
 *    need for the matrix products (measured: 3-4x slower steps on 2 cores);
 *  - OPENBLAS_CORETYPE naming the CPU's vector level when OpenBLAS cannot
 *    name the CPU itself and falls back to its oldest kernels (some VMs
 *    report a generic model).
 * Returns only when nothing was to be done (or exec failed). */
void compute_env_setup(char **argv);

#endif
