/* batch.h — make a run of lines of one format on several threads. Each line
 * depends on (seed, format, line number) alone, so the threads change how
 * fast the files come, never what is in them. */
#ifndef BAGEL_SYNTH_BATCH_H
#define BAGEL_SYNTH_BATCH_H

#include "formats.h"

#include <stdint.h>

#define SYNTH_MAX_THREADS 64

/* Make lines [first, first + n) of format f: their images are written, and
 * lines[k] gets the compact JSON of line first + k (free() each). proto gives
 * the settings; each thread has its own pixel buffer. Returns 0, 1 when a
 * stop was requested (ipc_stop_level) and -1 with err on a failure; on
 * anything but 0, lines[] is all NULL. */
int synth_batch(const synth_ctx_t *proto, int f, uint64_t first, int n, int threads, char **lines, char *err);

#endif
