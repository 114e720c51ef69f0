/* bench_util.h — the clock and the median the benchmark tools share. */
#ifndef BAGEL_BENCH_UTIL_H
#define BAGEL_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

/* seconds on the monotonic clock */
static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* sorts v[0, n) in place; the middle value, the mean of the two middle ones
 * for even n */
static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#endif
