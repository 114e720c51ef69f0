/* log.c — see log.h. A whole line goes out in one write so lines from
 * replicas sharing a terminal or log file do not interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *stage_name = "bagel";
static bool quiet;

void log_init(const char *stage) { stage_name = stage; }
const char *log_stage(void) { return stage_name; }
void log_set_quiet(bool q) { quiet = q; }

static void emit(const char *fmt, va_list ap)
{
    char line[2048];
    int n = snprintf(line, sizeof line, "%s: ", stage_name);
    if (n < 0 || (size_t)n >= sizeof line)
        return;
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    if (m < 0)
        return;
    size_t len = strlen(line);
    line[len++] = '\n';
    ssize_t w = write(2, line, len);
    (void)w; // nothing useful to do when stderr itself fails
}

void log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(fmt, ap);
    va_end(ap);
}

void log_info(const char *fmt, ...)
{
    if (quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    emit(fmt, ap);
    va_end(ap);
}
