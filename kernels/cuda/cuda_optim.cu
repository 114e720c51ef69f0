/* cuda_optim.cu — the optimizer step and the vector helpers around it
 * (kernels/cpu/cpu_optim.c): AdamW in PyTorch's order (decoupled decay
 * first; bias corrections computed in double on the host, as the CPU does),
 * the EMA, Σ g² in double, scale and axpy. sumsq returns to the host, so it
 * waits for the stream. AdamW and Σ g² read and write four floats at a
 * time where the arrays are 16-byte aligned alike. AdamW also rewrites the
 * bf16 copy of the weights it updates where the block is tracked
 * (op_table_t.track_weights). */
#include "cuda_internal.h"

#include <cuda_bf16.h>
#include <math.h>

/* one element's step: the moments, the weight, and the EMA when there is one */
__device__ __forceinline__ void adamw_one(float &p, float g, float &m, float &v, float *e, float b1, float b2, float eps,
                                          float decay, float step_size, float bc2_sqrt, float gscale, float e_decay)
{
    float gi = g * gscale;
    m = m + (1.0f - b1) * (gi - m);
    v = b2 * v + (1.0f - b2) * gi * gi;
    p = p * decay - step_size * m / (sqrtf(v) / bc2_sqrt + eps);
    if (e)
        *e = e_decay * *e + (1.0f - e_decay) * p;
}

/* p16: the tracked bf16 copy of p (cuda_linear.cu), rewritten beside p, or NULL */
__global__ void k_adamw(float *p, __nv_bfloat16 *p16, const float *g, float *m, float *v, size_t n, float b1, float b2,
                        float eps, float decay, float step_size, float bc2_sqrt, float gscale, float *e, float e_decay)
{
    CU_FOR(i, n)
    {
        float pi = p[i], mi = m[i], vi = v[i];
        adamw_one(pi, g[i], mi, vi, e ? e + i : NULL, b1, b2, eps, decay, step_size, bc2_sqrt, gscale, e_decay);
        p[i] = pi, m[i] = mi, v[i] = vi;
        if (p16)
            p16[i] = __float2bfloat16_rn(pi);
    }
}

/* The same four at a time: one 16-byte load and store per array. AdamW is a
 * pass over 32 or 36 bytes of state a parameter; with one float a load the
 * 3.4 B parameters of the 7B shape took 36 ms, 3.4 TB/s. */
__global__ void k_adamw4(float4 *p, uint2 *p16, const float4 *g, float4 *m, float4 *v, size_t n4, float b1, float b2,
                         float eps, float decay, float step_size, float bc2_sqrt, float gscale, float4 *e,
                         float e_decay)
{
    CU_FOR(i, n4)
    {
        float4 P = p[i], G = g[i], M = m[i], V = v[i], E = e ? e[i] : make_float4(0.f, 0.f, 0.f, 0.f);
        adamw_one(P.x, G.x, M.x, V.x, e ? &E.x : NULL, b1, b2, eps, decay, step_size, bc2_sqrt, gscale, e_decay);
        adamw_one(P.y, G.y, M.y, V.y, e ? &E.y : NULL, b1, b2, eps, decay, step_size, bc2_sqrt, gscale, e_decay);
        adamw_one(P.z, G.z, M.z, V.z, e ? &E.z : NULL, b1, b2, eps, decay, step_size, bc2_sqrt, gscale, e_decay);
        adamw_one(P.w, G.w, M.w, V.w, e ? &E.w : NULL, b1, b2, eps, decay, step_size, bc2_sqrt, gscale, e_decay);
        p[i] = P, m[i] = M, v[i] = V;
        if (e)
            e[i] = E;
        if (p16) {
            __nv_bfloat162 lo = __floats2bfloat162_rn(P.x, P.y), hi = __floats2bfloat162_rn(P.z, P.w);
            p16[i] = make_uint2(*reinterpret_cast<uint32_t *>(&lo), *reinterpret_cast<uint32_t *>(&hi));
        }
    }
}

static bool aligned16(const void *q) { return ((uintptr_t)q & 15) == 0; }

void cuda_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2, float eps,
                float wd, int step, float gscale, float *e, float e_decay)
{
    if (!n)
        return;
    float decay = (float)(1.0 - (double)lr * wd);
    float step_size = (float)((double)lr / (1.0 - pow((double)b1, step)));
    float bc2_sqrt = (float)sqrt(1.0 - pow((double)b2, step));
    __nv_bfloat16 *p16 = (__nv_bfloat16 *)cuda_tracked_bf16(p, n);
    size_t n4 = 0;
    if (aligned16(p) && aligned16(g) && aligned16(m) && aligned16(v) && (!e || aligned16(e)) &&
        (!p16 || ((uintptr_t)p16 & 7) == 0)) {
        n4 = n / 4;
        if (n4) {
            k_adamw4<<<cuda_blocks(n4), CU_THREADS, 0, cuda_stream>>>(
                (float4 *)p, (uint2 *)p16, (const float4 *)g, (float4 *)m, (float4 *)v, n4, b1, b2, eps, decay,
                step_size, bc2_sqrt, gscale, (float4 *)e, e_decay);
            CU_LAUNCHED();
        }
    }
    size_t at = 4 * n4; /* the rest, or all when the arrays are not aligned alike */
    if (at < n) {
        k_adamw<<<cuda_blocks(n - at), CU_THREADS, 0, cuda_stream>>>(
            p + at, p16 ? p16 + at : NULL, g + at, m + at, v + at, n - at, b1, b2, eps, decay, step_size, bc2_sqrt,
            gscale, e ? e + at : NULL, e_decay);
        CU_LAUNCHED();
    }
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

/* the same four at a time (16-byte loads: with one float a load and 1024
 * blocks too few bytes were in flight to keep the memory busy) */
__global__ void k_sumsq4(double *out, const float4 *g, size_t n4)
{
    __shared__ double sh[33];
    double s = 0.0;
    CU_FOR(i, n4)
    {
        float4 x = g[i];
        s += (double)x.x * x.x + (double)x.y * x.y + (double)x.z * x.z + (double)x.w * x.w;
    }
    s = cuda_block_sum(s, sh);
    if (threadIdx.x == 0)
        atomicAdd(out, s);
}

double cuda_sumsq(const float *g, size_t n)
{
    if (!n)
        return 0.0;
    double *acc = cuda_scratch_double(), s = 0.0;
    CU_CHECK(cudaMemsetAsync(acc, 0, sizeof(double), cuda_stream));
    size_t n4 = aligned16(g) ? n / 4 : 0;
    if (n4) {
        size_t blocks = cuda_blocks(n4) < 4096 ? cuda_blocks(n4) : 4096;
        k_sumsq4<<<(unsigned)blocks, CU_THREADS, 0, cuda_stream>>>(acc, (const float4 *)g, n4);
        CU_LAUNCHED();
    }
    if (4 * n4 < n) {
        size_t rest = n - 4 * n4, blocks = cuda_blocks(rest) < 1024 ? cuda_blocks(rest) : 1024;
        k_sumsq<<<(unsigned)blocks, CU_THREADS, 0, cuda_stream>>>(acc, g + 4 * n4, rest);
        CU_LAUNCHED();
    }
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
