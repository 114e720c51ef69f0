/* cpu_loss.c — the generation branch's pieces around the model: the MSE of
 * predicted velocity, the flow-matching noising of latents, and the
 * sinusoidal timestep features of BAGEL's TimestepEmbedder. */
#include <math.h>
#include <string.h>

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

static double row_norm(const float *x, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return sqrt(s);
}

static float clamp_ratio(double num, double den, float lo)
{
    double r = num / (den + 1e-8);
    return (float)(r < lo ? lo : r > 1.0 ? 1.0 : r);
}

/* rows of dim floats scaled each by clamp(|v_c row| / (|v row| + 1e-8)) */
static void renorm_rows(float *v, const float *v_c, int n, int dim, float lo)
{
    for (int r = 0; r < n; r++) {
        float *u = v + (size_t)r * dim;
        float sc = clamp_ratio(row_norm(v_c + (size_t)r * dim, dim), row_norm(u, dim), lo);
        for (int j = 0; j < dim; j++)
            u[j] *= sc;
    }
}

/* The inferencer's order (bagel-reference.md §6.3): text guidance, the
 * text-channel renorm, image guidance, then the global or channel renorm. */
void cpu_cfg_euler(float *x, float *v, const float *v_c, const float *v_t, const float *v_i, int n, int dim,
                   float s_txt, float s_img, int renorm, float renorm_min, float dt)
{
    size_t m = (size_t)n * dim;
    if (!(s_txt > 1.0f) || !v_t) {
        memcpy(v, v_c, m * sizeof(float));
    } else {
        int img = s_img > 1.0f && v_i;
        for (size_t j = 0; j < m; j++)
            v[j] = v_t[j] + s_txt * (v_c[j] - v_t[j]);
        if (renorm == OP_RENORM_TEXT_CHANNEL)
            renorm_rows(v, v_c, n, dim, renorm_min);
        if (img)
            for (size_t j = 0; j < m; j++)
                v[j] = v_i[j] + s_img * (v[j] - v_i[j]);
        if (renorm == OP_RENORM_GLOBAL) {
            float sc = clamp_ratio(row_norm(v_c, m), row_norm(v, m), renorm_min);
            for (size_t j = 0; j < m; j++)
                v[j] *= sc;
        } else if (renorm == OP_RENORM_CHANNEL) {
            renorm_rows(v, v_c, n, dim, renorm_min);
        }
    }
    if (x)
        for (size_t j = 0; j < m; j++)
            x[j] -= v[j] * dt;
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
