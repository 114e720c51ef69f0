/* progress.h — a progress line on stderr: records/s and MB/s.
 * On a terminal it updates in place (twice a second); otherwise it prints a
 * plain key=value line every 10 seconds (BAGEL_PROGRESS_SECONDS: another
 * interval), fit for log files. */
#ifndef BAGEL_PROGRESS_H
#define BAGEL_PROGRESS_H

#include <stdint.h>

typedef enum { PROGRESS_ON, PROGRESS_OFF } progress_mode_t;

typedef struct progress progress_t;

progress_t *progress_new(progress_mode_t mode);
/* Totals so far; cheap enough to call for every record. */
void progress_update(progress_t *p, uint64_t records, uint64_t bytes, uint64_t rejects);
/* The final line (always printed unless OFF), then free. */
void progress_done(progress_t **p);

#endif
