/* cpu_norm.c — RMSNorm and LayerNorm over the last dimension c of [n, c].
 *
 * Forwards save the per-row statistics (rstd, and mean for LayerNorm) so the
 * backwards need not recompute them. Backwards split in two loops: din in
 * parallel over rows, dw/db in parallel over blocks of columns (each thread
 * sums all rows for its columns), so that no two threads write one weight
 * gradient and no per-thread buffers are needed. */
#include <math.h>

#include "cpu.h"

#define COL_BLOCK 64

/* RMSNorm as Qwen2RMSNorm: normalise in fp32, then multiply by the weight */
void cpu_rmsnorm_fwd(float *out, float *rstd, const float *in, const float *w, int n, int c, float eps)
{
#pragma omp parallel for if ((size_t)n * c > CPU_OMP_MIN)
    for (int r = 0; r < n; r++) {
        const float *x = in + (size_t)r * c;
        float *y = out + (size_t)r * c;
        float ss = 0.0f;
        for (int i = 0; i < c; i++)
            ss += x[i] * x[i];
        float rs = 1.0f / sqrtf(ss / (float)c + eps);
        for (int i = 0; i < c; i++)
            y[i] = w[i] * (x[i] * rs);
        if (rstd)
            rstd[r] = rs;
    }
}

/* With x̂ = x·rstd and g = dout ⊙ w:  din = rstd·(g − x̂·mean(g ⊙ x̂)),
 * since ∂rstd/∂x_j = −rstd³·x_j / c.  dw = Σ_rows dout ⊙ x̂. */
static void rmsnorm_bwd(float *din, float *dw, const float *dout, const float *in, const float *w, const float *rstd,
                        int n, int c, int set)
{
    if (din) {
#pragma omp parallel for if ((size_t)n * c > CPU_OMP_MIN)
        for (int r = 0; r < n; r++) {
            const float *x = in + (size_t)r * c, *g = dout + (size_t)r * c;
            float *dx = din + (size_t)r * c;
            float rs = rstd[r], dot = 0.0f;
            for (int i = 0; i < c; i++)
                dot += g[i] * w[i] * x[i] * rs;
            dot /= (float)c;
            for (int i = 0; i < c; i++)
                dx[i] = (set ? 0.0f : dx[i]) + rs * (g[i] * w[i] - x[i] * rs * dot);
        }
    }
    if (dw) {
        int nblk = (c + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for if ((size_t)n * c > CPU_OMP_MIN)
        for (int blk = 0; blk < nblk; blk++) {
            int i0 = blk * COL_BLOCK, i1 = i0 + COL_BLOCK < c ? i0 + COL_BLOCK : c;
            float acc[COL_BLOCK] = {0};
            for (int r = 0; r < n; r++) {
                const float *x = in + (size_t)r * c, *g = dout + (size_t)r * c;
                float rs = rstd[r];
                for (int i = i0; i < i1; i++)
                    acc[i - i0] += g[i] * x[i] * rs;
            }
            for (int i = i0; i < i1; i++)
                cpu_gw_add(&dw[i], acc[i - i0]);
        }
    }
}

void cpu_rmsnorm_bwd(float *din, float *dw, const float *dout, const float *in, const float *w, const float *rstd,
                     int n, int c)
{
    rmsnorm_bwd(din, dw, dout, in, w, rstd, n, c, 0);
}

void cpu_rmsnorm_bwd_set(float *din, float *dw, const float *dout, const float *in, const float *w,
                         const float *rstd, int n, int c)
{
    rmsnorm_bwd(din, dw, dout, in, w, rstd, n, c, 1);
}

/* Two passes (mean, then squared deviations) rather than E[x²] − E[x]²,
 * which cancels badly when |mean| ≫ std. Variance is biased, as PyTorch. */
void cpu_layernorm_fwd(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b, int n,
                       int c, float eps)
{
#pragma omp parallel for if ((size_t)n * c > CPU_OMP_MIN)
    for (int r = 0; r < n; r++) {
        const float *x = in + (size_t)r * c;
        float *y = out + (size_t)r * c;
        float mu = 0.0f, var = 0.0f;
        for (int i = 0; i < c; i++)
            mu += x[i];
        mu /= (float)c;
        for (int i = 0; i < c; i++)
            var += (x[i] - mu) * (x[i] - mu);
        var /= (float)c;
        float rs = 1.0f / sqrtf(var + eps);
        for (int i = 0; i < c; i++)
            y[i] = (x[i] - mu) * rs * w[i] + (b ? b[i] : 0.0f);
        if (mean)
            mean[r] = mu;
        if (rstd)
            rstd[r] = rs;
    }
}

/* g = dout ⊙ w:  din = rstd·(g − mean(g) − x̂·mean(g ⊙ x̂)) */
void cpu_layernorm_bwd(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                       const float *mean, const float *rstd, int n, int c)
{
    if (din) {
#pragma omp parallel for if ((size_t)n * c > CPU_OMP_MIN)
        for (int r = 0; r < n; r++) {
            const float *x = in + (size_t)r * c, *g = dout + (size_t)r * c;
            float *dx = din + (size_t)r * c;
            float mu = mean[r], rs = rstd[r], gm = 0.0f, gx = 0.0f;
            for (int i = 0; i < c; i++) {
                float gi = g[i] * w[i];
                gm += gi;
                gx += gi * (x[i] - mu) * rs;
            }
            gm /= (float)c;
            gx /= (float)c;
            for (int i = 0; i < c; i++)
                dx[i] += rs * (g[i] * w[i] - gm - (x[i] - mu) * rs * gx);
        }
    }
    if (dw || db) {
        int nblk = (c + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for if ((size_t)n * c > CPU_OMP_MIN)
        for (int blk = 0; blk < nblk; blk++) {
            int i0 = blk * COL_BLOCK, i1 = i0 + COL_BLOCK < c ? i0 + COL_BLOCK : c;
            float aw[COL_BLOCK] = {0}, ab[COL_BLOCK] = {0};
            for (int r = 0; r < n; r++) {
                const float *x = in + (size_t)r * c, *g = dout + (size_t)r * c;
                float mu = mean[r], rs = rstd[r];
                for (int i = i0; i < i1; i++) {
                    aw[i - i0] += g[i] * (x[i] - mu) * rs;
                    ab[i - i0] += g[i];
                }
            }
            for (int i = i0; i < i1; i++) {
                if (dw)
                    cpu_gw_add(&dw[i], aw[i - i0]);
                if (db)
                    cpu_gw_add(&db[i], ab[i - i0]);
            }
        }
    }
}
