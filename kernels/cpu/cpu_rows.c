/* cpu_rows.c — row gather/scatter: out[oi[r]] = (or +=) in[ii[r]] for rows of
 * c floats. Embedding lookup is a copy with ii = token ids; its backward is an
 * add with oi = token ids, where one id may appear many times. */
#include <string.h>

#include "cpu.h"

#define COL_BLOCK 256

void cpu_rows_copy(float *out, const int32_t *oi, const float *in, const int32_t *ii, int n, int c)
{
#pragma omp parallel for if ((size_t)n * c > CPU_OMP_MIN)
    for (int r = 0; r < n; r++) {
        size_t o = (size_t)(oi ? oi[r] : r), i = (size_t)(ii ? ii[r] : r);
        memcpy(out + o * c, in + i * c, (size_t)c * sizeof(float));
    }
}

/* Repeated destination rows make a parallel loop over r a race; threads own
 * blocks of columns instead and each walks all rows in order, which also
 * keeps the sum order (and so the result) independent of the thread count. */
void cpu_rows_add(float *out, const int32_t *oi, const float *in, const int32_t *ii, int n, int c)
{
    int nblk = (c + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for if ((size_t)n * c > CPU_OMP_MIN && nblk > 1)
    for (int blk = 0; blk < nblk; blk++) {
        int c0 = blk * COL_BLOCK, c1 = c0 + COL_BLOCK < c ? c0 + COL_BLOCK : c;
        for (int r = 0; r < n; r++) {
            float *dst = out + (size_t)(oi ? oi[r] : r) * c;
            const float *src = in + (size_t)(ii ? ii[r] : r) * c;
            for (int j = c0; j < c1; j++)
                dst[j] += src[j];
        }
    }
}

void cpu_argmax_rows(int32_t *out, const float *x, int n, int c)
{
    for (int r = 0; r < n; r++) {
        const float *v = x + (size_t)r * c;
        int best = 0;
        for (int j = 1; j < c; j++)
            if (v[j] > v[best] || (v[best] != v[best] && v[j] == v[j]))
                best = j;
        out[r] = best;
    }
}

/* the CPU multiplies the fp32 weights themselves: nothing to keep */
void cpu_hold_weights(const float *w, size_t n) { (void)w, (void)n; }
void cpu_track_weights(const float *w, size_t n) { (void)w, (void)n; }

int cpu_grad_write_on;
void cpu_grad_write(int on) { cpu_grad_write_on = on != 0; }
