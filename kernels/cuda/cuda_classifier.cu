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

__device__ static float block_max(float v, float *sh)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0)
        sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float x = lane < nw ? sh[lane] : -INFINITY;
        for (int o = 16; o > 0; o >>= 1)
            x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
        if (lane == 0)
            sh[32] = x;
    }
    __syncthreads();
    return sh[32];
}

/* dlogits go to z (fp32, in place) or, where z16 is given, to z16 in bf16 */
__global__ void k_ce_rows(float *loss, float *z_all, __nv_bfloat16 *z16_all, const int32_t *label, const float *dloss,
                          int V, int grad)
{
    __shared__ float sh[33];
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
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < V; j += blockDim.x)
        mx = fmaxf(mx, z[j]);
    mx = block_max(mx, sh);
    float s = 0.0f;
    for (int j = threadIdx.x; j < V; j += blockDim.x)
        s += expf(z[j] - mx);
    s = cuda_block_sum(s, sh); /* ends with a barrier: every z[y] read below precedes any write */
    float lse = mx + logf(s), zy = z[y];
    if (loss && threadIdx.x == 0)
        loss[r] = lse - zy;
    if (grad) {
        float g = dloss[r];
        __syncthreads();
        for (int j = threadIdx.x; j < V; j += blockDim.x) {
            float e = expf(z[j] - lse) * g;
            e = j == y ? e - g : e;
            if (z16)
                z16[j] = __float2bfloat16_rn(e);
            else
                z[j] = e;
        }
    }
}

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
    void *z16 = r16 && grad ? cuda_scratch_slot(CUDA_SCRATCH_C, (size_t)chunk * V * 2 + 16) : NULL;
    float dw_beta = cuda_gw_beta(); /* grad_write: the first chunk writes dw */
    for (int r0 = 0; r0 < n; r0 += chunk) {
        int R = n - r0 < chunk ? n - r0 : chunk;
        const float *hc = h + (size_t)r0 * c;
        const void *h16 = r16 ? cuda_to_bf16(CUDA_SCRATCH_GEMM_A, hc, R, c, c) : NULL;
        product('n', 't', R, V, c, hc, h16, c, w, w16, c, 0.0f, scratch, V);
        k_ce_rows<<<R, 512, 0, cuda_stream>>>(loss ? loss + r0 : NULL, scratch, (__nv_bfloat16 *)z16, label + r0,
                                              dloss ? dloss + r0 : NULL, V, grad);
        CU_LAUNCHED();
        if (!grad)
            continue;
        if (dh)
            product('n', 'n', R, c, V, scratch, z16, V, w, w16, c, 1.0f, dh + (size_t)r0 * c, c);
        if (dw) {
            product('t', 'n', V, c, R, scratch, z16, V, hc, h16, c, dw_beta, dw, c);
            dw_beta = 1.0f;
        }
    }
}
