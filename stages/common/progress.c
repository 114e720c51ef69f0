/* progress.c — see progress.h. */
#include "progress.h"

#include "log.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

struct progress {
    bool tty, off;
    double start, last, interval;
    uint64_t records, bytes, rejects, calls;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

progress_t *progress_new(progress_mode_t mode)
{
    progress_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->off = mode == PROGRESS_OFF;
    p->tty = isatty(2);
    p->interval = p->tty ? 0.5 : 10.0;
    // a supervisor reading the lines for its status asks for them oftener
    const char *every = getenv("BAGEL_PROGRESS_SECONDS");
    if (every && atof(every) > 0)
        p->interval = atof(every);
    p->start = p->last = now();
    return p;
}

static void draw(progress_t *p, bool final)
{
    double t = now(), el = t - p->start > 1e-9 ? t - p->start : 1e-9;
    char line[256];
    snprintf(line, sizeof line, "records=%llu rejects=%llu MB=%.1f rec/s=%.0f MB/s=%.1f elapsed=%.1fs",
             (unsigned long long)p->records, (unsigned long long)p->rejects, (double)p->bytes / 1e6,
             (double)p->records / el, (double)p->bytes / 1e6 / el, el);
    if (p->tty) {
        fprintf(stderr, "\r\033[K%s: %s%s", log_stage(), line, final ? "\n" : "");
        fflush(stderr);
    } else {
        log_info("%s%s", final ? "done " : "", line);
    }
}

void progress_update(progress_t *p, uint64_t records, uint64_t bytes, uint64_t rejects)
{
    if (!p || p->off)
        return;
    p->records = records, p->bytes = bytes, p->rejects = rejects;
    // reading the clock for every record would cost more than the record
    if ((++p->calls & 63) != 0)
        return;
    double t = now();
    if (t - p->last >= p->interval) {
        p->last = t;
        draw(p, false);
    }
}

void progress_done(progress_t **pp)
{
    if (!pp || !*pp)
        return;
    if (!(*pp)->off)
        draw(*pp, true);
    free(*pp);
    *pp = NULL;
}
