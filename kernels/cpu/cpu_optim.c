/* cpu_optim.c — the optimizer step and the vector helpers around it:
 * AdamW, the EMA of the weights, Σ g² (gradient-norm clipping), scale, axpy. */
#include <math.h>

#include "cpu.h"

/* AdamW exactly in the order of PyTorch's single-tensor torch.optim.AdamW:
 * the decoupled decay first, p *= 1 − lr·wd, then
 *   m += (1 − b1)(g − m)             (exp_avg.lerp_)
 *   v = b2·v + (1 − b2)·g²
 *   p −= lr/(1 − b1^step) · m / (sqrt(v)/sqrt(1 − b2^step) + eps).
 * The bias corrections are computed in double as Python computes them. This
 * equals p −= lr·(m̂/(sqrt(v̂) + eps) + wd·p) up to the order of the decay:
 * PyTorch decays the weight before the Adam step, so that is what we do. */
void cpu_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2, float eps,
               float wd, int step, float gscale, float *e, float e_decay)
{
    float decay = (float)(1.0 - (double)lr * wd);
    float step_size = (float)((double)lr / (1.0 - pow((double)b1, step)));
    float bc2_sqrt = (float)sqrt(1.0 - pow((double)b2, step));
#pragma omp parallel for if (n > CPU_OMP_MIN)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * gscale;
        float mi = m[i] + (1.0f - b1) * (gi - m[i]);
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float pi = p[i] * decay - step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
        p[i] = pi;
        if (e)
            e[i] = e_decay * e[i] + (1.0f - e_decay) * pi;
    }
}

void cpu_ema(float *e, const float *p, size_t n, float decay)
{
#pragma omp parallel for if (n > CPU_OMP_MIN)
    for (size_t i = 0; i < n; i++)
        e[i] = decay * e[i] + (1.0f - decay) * p[i];
}

double cpu_sumsq(const float *g, size_t n)
{
    double s = 0.0;
#pragma omp parallel for reduction(+ : s) if (n > CPU_OMP_MIN)
    for (size_t i = 0; i < n; i++)
        s += (double)g[i] * g[i];
    return s;
}

void cpu_scale(float *x, float s, size_t n)
{
#pragma omp parallel for if (n > CPU_OMP_MIN)
    for (size_t i = 0; i < n; i++)
        x[i] *= s;
}

void cpu_axpy(float *y, float a, const float *x, size_t m)
{
#pragma omp parallel for if (m > CPU_OMP_MIN)
    for (size_t i = 0; i < m; i++)
        y[i] += a * x[i];
}
