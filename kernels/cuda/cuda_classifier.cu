/* cuda_classifier.cu — the LM head fused with cross-entropy, chunked over
 * token rows so that at most `chunk` rows of logits exist in the caller's
 * scratch (kernels/cpu/cpu_classifier.c): per chunk, logits = h·wᵀ (sgemm),
 * one block per row for a stable logsumexp, the loss and, when gradients
 * are wanted, dlogits = (softmax − onehot)·dloss[r] in place; then
 * dh += dlogits·w and dw += dlogitsᵀ·h (sgemm). A label outside [0, V) is a
 * row without target: loss 0, no gradient. dloss NULL: loss only.
 * With bf16 products the weight is rounded to bf16 once a call (not once
 * a product and chunk: at the 7B shape each rounding of the 152k × 3584
 * head was a 3 GB pass), and dlogits are written in bf16 straight into the
 * operand of both gradient products; the values are those of rounding them
 * for each product. */
#include "cuda_internal.h"

#include <cuda_bf16.h>
#include <math.h>

/* (max, Σ exp(x − max)) pairs merged: the log-sum-exp of both parts */
__device__ static inline void lse_merge(float &m, float &s, float m2, float s2)
{
    float M = fmaxf(m, m2);
    if (M == -INFINITY)
        return;
    s = (m == -INFINITY ? 0.0f : s * expf(m - M)) + (m2 == -INFINITY ? 0.0f : s2 * expf(m2 - M));
    m = M;
}

/* logit j's gradient: (softmax − onehot(y))·g */
__device__ static inline float ce_dlogit(float x, int j, int y, float lse, float g)
{
    float e = expf(x - lse) * g;
    return j == y ? e - g : e;
}

/* the block's merged pair, in every thread; sh holds 2·32 floats */
__device__ static void block_lse(float &m, float &s, float *sh)
{
    for (int o = 16; o > 0; o >>= 1)
        lse_merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0)
        sh[warp] = m, sh[32 + warp] = s;
    __syncthreads();
    m = -INFINITY, s = 0.0f;
    for (int w = 0; w < nw; w++)
        lse_merge(m, s, sh[w], sh[32 + w]);
}

/* One block a row. The logits are read twice: once for the row's maximum
 * and sum of exponentials together (each thread keeps a running pair,
 * rescaled when its maximum grows), once for the gradient. Four at a time
 * where the rows are 16-byte aligned (v4: V a multiple of 4, aligned bases). The earlier
 * kernel read them three times (maximum, sum, gradient) a float at a time:
 * 3.8 ms a 7B step under Nsight Compute, about 2 TB/s.
 * dlogits go to z (fp32, in place) or, where z16 is given, to z16 in bf16. */
__global__ void k_ce_rows(float *loss, float *z_all, __nv_bfloat16 *z16_all, const int32_t *label, const float *dloss,
                          int V, int grad, int v4)
{
    __shared__ float sh[64];
    int r = blockIdx.x;
    float *z = z_all + (size_t)r * V;
    __nv_bfloat16 *z16 = z16_all ? z16_all + (size_t)r * V : NULL;
    int y = label[r];
    if (y < 0 || y >= V) {
        if (loss && threadIdx.x == 0)
            loss[r] = 0.0f;
        for (int j = threadIdx.x; j < V; j += blockDim.x)
            if (z16)
                z16[j] = __float2bfloat16_rn(0.0f);
            else
                z[j] = 0.0f;
        return;
    }
    float m = -INFINITY, s = 0.0f;
    if (v4) {
        const float4 *z4 = reinterpret_cast<const float4 *>(z);
        for (int j = threadIdx.x; j < V / 4; j += blockDim.x) {
            float4 x = z4[j];
            float M = fmaxf(fmaxf(m, fmaxf(x.x, x.y)), fmaxf(x.z, x.w));
            s = (m == -INFINITY ? 0.0f : s * expf(m - M)) + expf(x.x - M) + expf(x.y - M) + expf(x.z - M) +
                expf(x.w - M);
            m = M;
        }
    } else {
        for (int j = threadIdx.x; j < V; j += blockDim.x)
            lse_merge(m, s, z[j], 1.0f);
    }
    block_lse(m, s, sh); /* its barriers: every read of z above precedes any write below */
    float lse = m + logf(s), zy = z[y];
    if (loss && threadIdx.x == 0)
        loss[r] = lse - zy;
    if (!grad)
        return;
    __syncthreads(); /* z[y] read by all before it is overwritten */
    float g = dloss[r];
    if (v4) {
        float4 *z4 = reinterpret_cast<float4 *>(z);
        for (int j = threadIdx.x; j < V / 4; j += blockDim.x) {
            float4 x = z4[j];
            int k = 4 * j;
            float e0 = ce_dlogit(x.x, k, y, lse, g), e1 = ce_dlogit(x.y, k + 1, y, lse, g),
                  e2 = ce_dlogit(x.z, k + 2, y, lse, g), e3 = ce_dlogit(x.w, k + 3, y, lse, g);
            if (z16) {
                __nv_bfloat162 lo = __floats2bfloat162_rn(e0, e1), hi = __floats2bfloat162_rn(e2, e3);
                reinterpret_cast<uint2 *>(z16)[j] =
                    make_uint2(*reinterpret_cast<uint32_t *>(&lo), *reinterpret_cast<uint32_t *>(&hi));
            } else {
                z4[j] = make_float4(e0, e1, e2, e3);
            }
        }
        return;
    }
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float e = ce_dlogit(z[j], j, y, lse, g);
        if (z16)
            z16[j] = __float2bfloat16_rn(e);
        else
            z[j] = e;
    }
}

#define Z16_WHOLE ((size_t)2 << 30)

/* a product of fp32 operands, or of their bf16 copies where given */
static void product(char ta, char tb, int m, int n, int k, const float *a, const void *a16, int lda, const float *b,
                    const void *b16, int ldb, float beta, float *c, int ldc)
{
    if (a16)
        cuda_gemm16_rm(ta, tb, m, n, k, 1.0f, a16, lda, b16, ldb, beta, c, ldc);
    else
        cuda_gemm_rm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

void cuda_classifier_ce(float *loss, float *dh, float *dw, const float *h, const float *w, const int32_t *label,
                        const float *dloss, int n, int c, int V, float *scratch, int chunk)
{
    if (n <= 0 || V <= 0 || c <= 0)
        return;
    if (chunk <= 0 || chunk > n)
        chunk = n;
    int grad = (dh || dw) && dloss, r16 = cuda_gemm16_on();
    /* bf16: the weight once (its tracked copy, else slot B), each chunk's rows (slot A, read again
     * by dw's product), dlogits (slot C) */
    const void *w16 = r16 ? cuda_tracked_bf16(w, (size_t)V * c) : NULL;
    if (r16 && !w16)
        w16 = cuda_to_bf16(CUDA_SCRATCH_GEMM_B, w, V, c, c);
    /* With bf16 products and several chunks, the weight's gradient is one
     * product over all rows, from every chunk's dlogits kept in slot C (up to
     * Z16_WHOLE bytes): a product per chunk read and wrote the head's whole
     * fp32 gradient each time (4.4 GB at the 7B shape), 1.5 ms of a 7B step
     * on an H200 for three chunks against one */
    int whole = r16 && grad && dw && n > chunk && (size_t)n * V * 2 <= Z16_WHOLE;
    size_t zrows = whole ? (size_t)n : (size_t)chunk;
    __nv_bfloat16 *z16 = r16 && grad ? (__nv_bfloat16 *)cuda_scratch_slot(CUDA_SCRATCH_C, zrows * V * 2 + 16) : NULL;
    int v4 = (V & 3) == 0 && ((uintptr_t)scratch & 15) == 0 && (!z16 || ((uintptr_t)z16 & 7) == 0);
    float dw_beta = cuda_gw_beta(); /* grad_write: the first product writes dw */
    for (int r0 = 0; r0 < n; r0 += chunk) {
        int R = n - r0 < chunk ? n - r0 : chunk;
        const float *hc = h + (size_t)r0 * c;
        __nv_bfloat16 *zc = z16 && whole ? z16 + (size_t)r0 * V : z16;
        const void *h16 = r16 ? cuda_to_bf16(CUDA_SCRATCH_GEMM_A, hc, R, c, c) : NULL;
        product('n', 't', R, V, c, hc, h16, c, w, w16, c, 0.0f, scratch, V);
        k_ce_rows<<<R, 512, 0, cuda_stream>>>(loss ? loss + r0 : NULL, scratch, zc, label + r0,
                                              dloss ? dloss + r0 : NULL, V, grad, v4);
        CU_LAUNCHED();
        if (!grad)
            continue;
        if (dh)
            product('n', 'n', R, c, V, scratch, zc, V, w, w16, c, 1.0f, dh + (size_t)r0 * c, c);
        if (dw && !whole) {
            product('t', 'n', V, c, R, scratch, zc, V, hc, h16, c, dw_beta, dw, c);
            dw_beta = 1.0f;
        }
    }
    if (whole) {
        const void *h16 = cuda_to_bf16(CUDA_SCRATCH_GEMM_A, h, n, c, c);
        product('t', 'n', V, c, n, NULL, z16, V, h, h16, c, dw_beta, dw, c);
    }
}
