/* log.h — stage logging to stderr: "stage: message", one line each.
 * Records go to the output and nothing else does (architecture.md §2). */
#ifndef BAGEL_LOG_H
#define BAGEL_LOG_H

#include <stdbool.h>

void log_init(const char *stage);
const char *log_stage(void);
void log_set_quiet(bool quiet);
/* Always printed. */
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Printed unless quiet; by convention short key=value lines. */
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
