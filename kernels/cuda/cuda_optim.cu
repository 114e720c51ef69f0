/* cuda_optim.cu — the optimizer step and the vector helpers around it
 * (kernels/cpu/cpu_optim.c): AdamW in PyTorch's order (decoupled decay
 * first; bias corrections computed in double on the host, as the CPU does),
 * the EMA, Σ g² in double, scale and axpy. sumsq returns to the host, so it
 * waits for the stream. */
#include "cuda_internal.h"

#include <math.h>

__global__ void k_adamw(float *p, const float *g, float *m, float *v, size_t n, float b1, float b2, float eps,
                        float decay, float step_size, float bc2_sqrt, float gscale, float *e, float e_decay)
{
    CU_FOR(i, n)
    {
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

void cuda_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2, float eps,
                float wd, int step, float gscale, float *e, float e_decay)
{
    if (!n)
        return;
    float decay = (float)(1.0 - (double)lr * wd);
    float step_size = (float)((double)lr / (1.0 - pow((double)b1, step)));
    float bc2_sqrt = (float)sqrt(1.0 - pow((double)b2, step));
    k_adamw<<<cuda_blocks(n), CU_THREADS, 0, cuda_stream>>>(p, g, m, v, n, b1, b2, eps, decay, step_size, bc2_sqrt,
                                                             gscale, e, e_decay);
    CU_LAUNCHED();
}

__global__ void k_ema(float *e, const float *p, size_t n, float decay)
{
    CU_FOR(i, n) e[i] = decay * e[i] + (1.0f - decay) * p[i];
}

void cuda_ema(float *e, const float *p, size_t n, float decay)
{
    if (!n)
        return;
    k_ema<<<cuda_blocks(n), CU_THREADS, 0, cuda_stream>>>(e, p, n, decay);
    CU_LAUNCHED();
}

/* per block a double partial sum, added atomically into *out */
__global__ void k_sumsq(double *out, const float *g, size_t n)
{
    __shared__ double sh[33];
    double s = 0.0;
    CU_FOR(i, n) s += (double)g[i] * g[i];
    s = cuda_block_sum(s, sh);
    if (threadIdx.x == 0)
        atomicAdd(out, s);
}

double cuda_sumsq(const float *g, size_t n)
{
    if (!n)
        return 0.0;
    double *acc = cuda_scratch_double(), s = 0.0;
    size_t blocks = cuda_blocks(n) < 1024 ? cuda_blocks(n) : 1024;
    CU_CHECK(cudaMemsetAsync(acc, 0, sizeof(double), cuda_stream));
    k_sumsq<<<(unsigned)blocks, CU_THREADS, 0, cuda_stream>>>(acc, g, n);
    CU_LAUNCHED();
    CU_CHECK(cudaMemcpyAsync(&s, acc, sizeof(double), cudaMemcpyDeviceToHost, cuda_stream));
    CU_CHECK(cudaStreamSynchronize(cuda_stream));
    return s;
}

__global__ void k_scale(float *x, float s, size_t n) { CU_FOR(i, n) x[i] *= s; }

void cuda_scale(float *x, float s, size_t n)
{
    if (!n)
        return;
    k_scale<<<cuda_blocks(n), CU_THREADS, 0, cuda_stream>>>(x, s, n);
    CU_LAUNCHED();
}

__global__ void k_axpy(float *y, float a, const float *x, size_t m) { CU_FOR(i, m) y[i] += a * x[i]; }

void cuda_axpy(float *y, float a, const float *x, size_t m)
{
    if (!m)
        return;
    k_axpy<<<cuda_blocks(m), CU_THREADS, 0, cuda_stream>>>(y, a, x, m);
    CU_LAUNCHED();
}
