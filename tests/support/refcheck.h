/* refcheck.h — a reference case checked on a backend (refcheck.c). */
#ifndef BAGEL_REFCHECK_H
#define BAGEL_REFCHECK_H

#include <stddef.h>

#include "../../kernels/ops.h"

/* Runs the case at `path` (tests/reference/cases/NAME.json, run from the
 * repository's root) on `ops`; tol is the relative tolerance of losses,
 * hidden states and gradients. Prints "# ..." lines with the figures. 0, or
 * -1 with the first difference in msg. */
int refcheck_case(const char *path, const op_table_t *ops, double tol, char *msg, size_t msglen);

#endif
