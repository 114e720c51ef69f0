/* prof.h — an op table that times another: every op is forwarded to the
 * inner table between two of its syncs, and its wall time added up per op.
 * For finding where a step's time goes (bench-model --profile); the syncs
 * remove the overlap of queued work, so the sum exceeds an unprofiled step
 * by about one launch latency per op. Not thread-safe: one wrapped table a
 * process. */
#ifndef BAGEL_PROF_H
#define BAGEL_PROF_H

#include <stdio.h>

#include "ops.h"

/* the wrapping table (counts reset) */
const op_table_t *op_prof_wrap(const op_table_t *inner);
void op_prof_reset(void);
/* per op: calls, total ms, ms a call, share; sorted by total; per `steps`
 * (the totals divided by it) */
void op_prof_print(FILE *f, int steps);

#endif
