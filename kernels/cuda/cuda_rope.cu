/* cuda_rope.cu — rotary position embedding, half-split (NeoX) style, in
 * place on x[n, h, d] (kernels/cpu/cpu_rope.c has the formula). inv_freq is
 * computed on the host with the same powf expression as the CPU and passed
 * by value, so the angle float(pos)·inv_freq is bit-identical to the CPU's;
 * only cosf/sinf may differ by an ulp. The backward rotates by −angle. */
#include "cuda_internal.h"

#include <math.h>

#define ROPE_MAX_HALF 512

struct rope_freq {
    float f[ROPE_MAX_HALF];
};

/* one thread per (row, head, i < d/2). The frequencies go to shared memory
 * first: read from the parameter bank at 32 indices a warp, their loads took
 * turns (the kernel ran at 0.4 of the memory's rate) */
__global__ void k_rope(float *x, const int32_t *pos, int n, int h, int d, rope_freq fq, float sign)
{
    __shared__ float f[ROPE_MAX_HALF];
    int half = d / 2;
    for (int i = threadIdx.x; i < half; i += blockDim.x)
        f[i] = fq.f[i];
    __syncthreads();
    size_t total = (size_t)n * h * half;
    CU_FOR(t, total)
    {
        int i = (int)(t % half);
        size_t rj = t / half; /* row·h + head */
        int r = (int)(rj / h);
        float ang = (float)pos[r] * f[i];
        float c = cosf(ang), s = sign * sinf(ang);
        float *xh = x + rj * d;
        float a = xh[i], b = xh[i + half];
        xh[i] = a * c - b * s;
        xh[i + half] = b * c + a * s;
    }
}

static void rope_apply(float *x, const int32_t *pos, int n, int h, int d, float theta, float sign)
{
    int half = d / 2;
    if (n <= 0 || h <= 0 || half <= 0)
        return;
    CU_REQUIRE(half <= ROPE_MAX_HALF, "rope: head_dim over 1024");
    rope_freq fq;
    for (int i = 0; i < half; i++)
        fq.f[i] = 1.0f / powf(theta, (float)(2 * i) / (float)d);
    size_t total = (size_t)n * h * half;
    k_rope<<<cuda_blocks(total), CU_THREADS, 0, cuda_stream>>>(x, pos, n, h, d, fq, sign);
    CU_LAUNCHED();
}

void cuda_rope_fwd(float *x, const int32_t *pos, int n, int h, int d, float theta)
{
    rope_apply(x, pos, n, h, d, theta, 1.0f);
}

void cuda_rope_bwd(float *dx, const int32_t *pos, int n, int h, int d, float theta)
{
    rope_apply(dx, pos, n, h, d, theta, -1.0f);
}
