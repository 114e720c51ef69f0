/* cuda_loss.cu — the flow-matching pieces (kernels/cpu/cpu_loss.c): the
 * per-row MSE and its gradient, the noising of latents, and the sinusoidal
 * timestep features. The timestep frequencies are computed on the host with
 * the CPU's expression and passed by value, so only cosf/sinf may differ. */
#include "cuda_internal.h"

#include <math.h>

/* one block per row */
__global__ void k_mse(float *loss, float *dpred, const float *pred, const float *target, const float *dloss, int d)
{
    __shared__ float sh[33];
    int r = blockIdx.x;
    const float *p = pred + (size_t)r * d, *t = target + (size_t)r * d;
    if (loss) {
        float s = 0.0f;
        for (int j = threadIdx.x; j < d; j += blockDim.x)
            s += (p[j] - t[j]) * (p[j] - t[j]);
        s = cuda_block_sum(s, sh);
        if (threadIdx.x == 0)
            loss[r] = s / (float)d;
    }
    if (dpred && dloss) {
        float g = 2.0f * dloss[r] / (float)d;
        float *dp = dpred + (size_t)r * d;
        for (int j = threadIdx.x; j < d; j += blockDim.x)
            dp[j] += g * (p[j] - t[j]);
    }
}

void cuda_mse(float *loss, float *dpred, const float *pred, const float *target, const float *dloss, int n, int d)
{
    if (n <= 0 || d <= 0 || (!loss && !(dpred && dloss)))
        return;
    k_mse<<<n, 256, 0, cuda_stream>>>(loss, dpred, pred, target, dloss, d);
    CU_LAUNCHED();
}

__global__ void k_flow_noise(float *xt, float *target, const float *x0, const float *eps, const float *t, int d,
                             size_t total)
{
    CU_FOR(i, total)
    {
        float tr = t[i / d];
        if (xt)
            xt[i] = (1.0f - tr) * x0[i] + tr * eps[i];
        if (target)
            target[i] = eps[i] - x0[i];
    }
}

void cuda_flow_noise(float *xt, float *target, const float *x0, const float *eps, const float *t, int n, int d)
{
    size_t total = (size_t)(n > 0 ? n : 0) * (d > 0 ? d : 0);
    if (!total || (!xt && !target))
        return;
    k_flow_noise<<<cuda_blocks(total), CU_THREADS, 0, cuda_stream>>>(xt, target, x0, eps, t, d, total);
    CU_LAUNCHED();
}

#define TS_MAX_HALF 1024

struct ts_freq {
    float f[TS_MAX_HALF];
};

__global__ void k_timestep_freq(float *out, const float *t, int half, ts_freq fq, size_t total)
{
    CU_FOR(i, total)
    {
        int k = (int)(i % half);
        size_t r = i / half;
        float arg = t[r] * fq.f[k];
        out[r * 2 * half + k] = cosf(arg);
        out[r * 2 * half + half + k] = sinf(arg);
    }
}

void cuda_timestep_freq(float *out, const float *t, int n, int half)
{
    if (n <= 0 || half <= 0)
        return;
    CU_REQUIRE(half <= TS_MAX_HALF, "timestep_freq: more than 1024 frequencies");
    const float neg_log = -(float)log(10000.0);
    ts_freq fq;
    for (int k = 0; k < half; k++)
        fq.f[k] = expf(neg_log * (float)k / (float)half);
    size_t total = (size_t)n * half;
    k_timestep_freq<<<cuda_blocks(total), CU_THREADS, 0, cuda_stream>>>(out, t, half, fq, total);
    CU_LAUNCHED();
}
