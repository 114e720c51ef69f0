/* compute_env.h — process settings for the stages that compute (bagel-train,
 * and later bagel-encode and bagel-generate) that must be in the environment
 * before the libraries start: both read it when they are loaded. */
#ifndef BAGEL_COMPUTE_ENV_H
#define BAGEL_COMPUTE_ENV_H

#include <stddef.h>

/* When the user has not chosen otherwise, re-executes the program once with
 *  - OMP_WAIT_POLICY=PASSIVE: the OpenMP threads of our kernels otherwise
 *    spin between parallel regions and take the cores OpenBLAS's own threads
 *    need for the matrix products (measured: 3-4x slower steps on 2 cores);
 *  - OPENBLAS_CORETYPE naming the CPU's vector level when OpenBLAS cannot
 *    name the CPU itself and falls back to its oldest kernels (some VMs
 *    report a generic model).
 * Returns only when nothing was to be done (or exec failed). */
void compute_env_setup(char **argv);

/* The op table for a --device value: "cpu", or "cuda" when this executable
 * was built with CUDA (-DBAGEL_CUDA), which probes device 0 and logs its line
 * (kernels/cuda/runtime.h) before starting the backend. precision is a
 * --precision value: "fp32", "bf16" (CUDA only: bf16 operands on the tensor
 * cores for the matrix products and attention, fp32 accumulation, storage,
 * master weights and optimizer state) or NULL for the device's default (bf16
 * on cuda, fp32 on cpu). *peak_tflops (may be
 * NULL) gets the device's peak bf16 TFLOP/s from the official trainer's table
 * of GPU names, 0 where none is known (the CPU). Returns 0, or EXIT_USAGE (an
 * unknown device, CUDA not built) or EXIT_FATAL (the device fails) with one
 * line in err. With BAGEL_PROFILE=1 in the environment the table is wrapped
 * in kernels/prof.h's timing table, and compute_ops_done prints the time
 * each op took (one line per op, "profile: ...", on stderr). */
struct op_table;
int compute_ops(const char *device, const char *precision, const struct op_table **ops, double *peak_tflops, char *err,
                size_t errlen);
/* Releases what compute_ops started for ops (the CUDA backend's handles);
 * prints the profile where BAGEL_PROFILE asked for one. */
void compute_ops_done(const struct op_table *ops);

#endif
