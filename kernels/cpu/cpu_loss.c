/* cpu_loss.c — the generation branch's pieces around the model: the MSE of
 * predicted velocity, the flow-matching noising of latents, and the
 * sinusoidal timestep features of BAGEL's TimestepEmbedder. */
#include <math.h>

#include "cpu.h"

/* loss[r] = mean_d (pred − target)²;  dpred += dloss[r]·2(pred − target)/d.
 * Either output may be NULL. */
void cpu_mse(float *loss, float *dpred, const float *pred, const float *target, const float *dloss, int n, int d)
{
#pragma omp parallel for if ((size_t)n * d > CPU_OMP_MIN)
    for (int r = 0; r < n; r++) {
        const float *p = pred + (size_t)r * d, *t = target + (size_t)r * d;
        if (loss) {
            float s = 0.0f;
            for (int j = 0; j < d; j++)
                s += (p[j] - t[j]) * (p[j] - t[j]);
            loss[r] = s / (float)d;
        }
        if (dpred && dloss) {
            float g = 2.0f * dloss[r] / (float)d;
            float *dp = dpred + (size_t)r * d;
            for (int j = 0; j < d; j++)
                dp[j] += g * (p[j] - t[j]);
        }
    }
}

/* xt = (1 − t)·x0 + t·eps (the path from data to noise), target = eps − x0
 * (its velocity) */
void cpu_flow_noise(float *xt, float *target, const float *x0, const float *eps, const float *t, int n, int d)
{
#pragma omp parallel for if ((size_t)n * d > CPU_OMP_MIN)
    for (int r = 0; r < n; r++) {
        float tr = t[r];
        for (int j = 0; j < d; j++) {
            size_t i = (size_t)r * d + j;
            if (xt)
                xt[i] = (1.0f - tr) * x0[i] + tr * eps[i];
            if (target)
                target[i] = eps[i] - x0[i];
        }
    }
}

/* In fp32 step by step as the PyTorch code: freqs = exp(−ln(10000) ·
 * arange(half) / half), args = t · freqs, then [cos(args), sin(args)]. */
void cpu_timestep_freq(float *out, const float *t, int n, int half)
{
    const float neg_log = -(float)log(10000.0);
#pragma omp parallel for if ((size_t)n * half > CPU_OMP_MIN)
    for (int r = 0; r < n; r++) {
        float *o = out + (size_t)r * 2 * half;
        for (int k = 0; k < half; k++) {
            float f = expf(neg_log * (float)k / (float)half);
            float arg = t[r] * f;
            o[k] = cosf(arg);
            o[half + k] = sinf(arg);
        }
    }
}
