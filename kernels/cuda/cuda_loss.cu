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

/* ---- cfg_euler: one Euler step under classifier-free guidance ---------- */

__device__ inline float cfg_clamp(float num, float den, float lo)
{
    float r = num / (den + 1e-8f);
    return r < lo ? lo : r > 1.0f ? 1.0f : r;
}

/* one warp a row: the text-guided row, the text-channel renorm, the image
 * guidance into v, then the channel renorm and the step; with the global
 * renorm the row's squared norms go to part[row] and part[n + row] instead
 * and k_cfg_global finishes */
__global__ void k_cfg_rows(float *x, float *v, double *part, const float *vc, const float *vt, const float *vi,
                           int n, int dim, float s_txt, float s_img, int renorm, float lo, float dt)
{
    int row = (int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    if (row >= n)
        return; /* the whole warp */
    size_t o = (size_t)row * dim;
    const float *c = vc + o, *t = vt + o, *im = vi ? vi + o : NULL;
    float *w = v + o;
    float nc = 0.0f, nu = 0.0f;
    for (int j = lane; j < dim; j += 32) {
        float u = t[j] + s_txt * (c[j] - t[j]);
        nc += c[j] * c[j], nu += u * u;
    }
    nc = sqrtf(cuda_warp_sum(nc)), nu = sqrtf(cuda_warp_sum(nu));
    float s1 = renorm == OP_RENORM_TEXT_CHANNEL ? cfg_clamp(nc, nu, lo) : 1.0f, nw = 0.0f;
    for (int j = lane; j < dim; j += 32) {
        float u = t[j] + s_txt * (c[j] - t[j]);
        if (renorm == OP_RENORM_TEXT_CHANNEL)
            u *= s1;
        if (im)
            u = im[j] + s_img * (u - im[j]);
        w[j] = u, nw += u * u;
    }
    nw = cuda_warp_sum(nw);
    if (renorm == OP_RENORM_GLOBAL) {
        if (lane == 0)
            part[row] = (double)nc * nc, part[n + row] = nw;
        return;
    }
    float s2 = renorm == OP_RENORM_CHANNEL ? cfg_clamp(nc, sqrtf(nw), lo) : 1.0f;
    for (int j = lane; j < dim; j += 32) {
        float u = w[j];
        if (renorm == OP_RENORM_CHANNEL)
            w[j] = u = u * s2;
        if (x)
            x[o + j] -= u * dt;
    }
}

/* the global renorm's scale from the rows' squared norms, then the step */
__global__ void k_cfg_global(float *x, float *v, const double *part, int n, size_t m, float lo, float dt)
{
    __shared__ double sh[33];
    __shared__ float scale;
    double a = 0.0, b = 0.0;
    for (int r = threadIdx.x; r < n; r += blockDim.x)
        a += part[r], b += part[n + r];
    a = cuda_block_sum(a, sh);
    b = cuda_block_sum(b, sh);
    if (threadIdx.x == 0) {
        double q = sqrt(a) / (sqrt(b) + 1e-8);
        scale = (float)(q < lo ? lo : q > 1.0 ? 1.0 : q);
    }
    __syncthreads();
    float s = scale;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < m; i += (size_t)gridDim.x * blockDim.x) {
        float u = v[i] * s;
        v[i] = u;
        if (x)
            x[i] -= u * dt;
    }
}

/* no text guidance: v = v_c */
__global__ void k_cfg_plain(float *x, float *v, const float *vc, size_t m, float dt)
{
    CU_FOR(i, m)
    {
        float u = vc[i];
        v[i] = u;
        if (x)
            x[i] -= u * dt;
    }
}

void cuda_cfg_euler(float *x, float *v, const float *v_c, const float *v_t, const float *v_i, int n, int dim,
                    float s_txt, float s_img, int renorm, float renorm_min, float dt)
{
    size_t m = (size_t)(n > 0 ? n : 0) * (dim > 0 ? dim : 0);
    if (!m)
        return;
    if (!(s_txt > 1.0f) || !v_t) {
        k_cfg_plain<<<cuda_blocks(m), CU_THREADS, 0, cuda_stream>>>(x, v, v_c, m, dt);
        CU_LAUNCHED();
        return;
    }
    const float *vi = s_img > 1.0f ? v_i : NULL;
    double *part = renorm == OP_RENORM_GLOBAL ? (double *)cuda_scratch_slot(CUDA_SCRATCH_OPS, (size_t)2 * n * 8) : NULL;
    unsigned blocks = (unsigned)(((size_t)n * 32 + CU_THREADS - 1) / CU_THREADS);
    k_cfg_rows<<<blocks, CU_THREADS, 0, cuda_stream>>>(x, v, part, v_c, v_t, vi, n, dim, s_txt, s_img, renorm,
                                                       renorm_min, dt);
    CU_LAUNCHED();
    if (part) {
        /* every block sums the rows' parts itself (n reads each): the scale
         * needs no launch of its own */
        k_cfg_global<<<cuda_blocks(m) < 132 ? cuda_blocks(m) : 132, CU_THREADS, 0, cuda_stream>>>(x, v, part, n, m,
                                                                                               renorm_min, dt);
        CU_LAUNCHED();
    }
}
