/* gencheck.h — a generation case checked on a backend (gencheck.c). */
#ifndef BAGEL_GENCHECK_H
#define BAGEL_GENCHECK_H

#include <stddef.h>

#include "../../kernels/ops.h"

/* Runs the case at `path` (tests/reference/gen_cases/NAME.json, from the
 * repository's root) on `ops`; tol is the relative tolerance of hidden
 * states, logits, velocities and latents. 0 with a one-line note of the
 * worst error in msg, or -1 with the first difference in msg. */
int gencheck_case(const char *path, const op_table_t *ops, double tol, char *msg, size_t msglen);

#endif
