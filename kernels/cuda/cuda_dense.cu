/* cuda_dense.cu — attention where every query sees every key (op_attn_t's
 * dense hint, and the full image chunks of inference against a cache), as
 * three steps on the matrix units instead of one fused kernel:
 *
 *   S = scale·Q·Kᵀ   cuBLAS, a strided batch over the query heads that share
 *                    a key/value head (the keys' stride is 0 in the batch);
 *   P = softmax(S)   a kernel of ours, one block a row, which also writes the
 *                    row's log-sum-exp for the backward;
 *   O = P·V          cuBLAS again, each head's output columns in place.
 *
 * With no mask there is nothing to skip, so the products run at cuBLAS's
 * rate; what it costs beside a fused kernel is S and P in memory: 6 bytes a
 * score (fp32 S, bf16 P) in bf16 mode, 4 in fp32 mode (P over S). Query rows
 * go in chunks so that a chunk's S and P stay within BAGEL_ATTN_DENSE_MIB
 * (512 by default) of the backend's scratch.
 *
 * In bf16 mode Q, K, V and P are rounded to bf16 and the products accumulate
 * in fp32, as in the flash kernel; in fp32 mode everything is fp32 (the
 * handle's pedantic math: no TF32). The same shapes take the same calls
 * whatever else is in a batch, so an image's result does not depend on its
 * batch. */
#include "cuda_internal.h"

#include <cuda_bf16.h>
#include <stdlib.h>
#include <string.h>

#define DENSE_THREADS 256

/* one block a row of S ([rows, nk], row stride nk): P = softmax (bf16 into
 * p16, or fp32 in place when p16 is NULL); lse of row r = hb·R + i (hb the
 * head within the group) goes to lse[(r0 + i)·nh + h0 + hb] */
__global__ void k_dense_softmax(float *s, __nv_bfloat16 *p16, float *lse, int nk, int R, int r0, int nh, int h0)
{
    __shared__ float red[33];
    size_t row = blockIdx.x;
    float *x = s + row * nk;
    float m = -INFINITY;
    for (int j = threadIdx.x; j < nk; j += blockDim.x)
        m = fmaxf(m, x[j]);
    for (int o = 16; o > 0; o >>= 1)
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0)
        red[w] = m;
    __syncthreads();
    m = red[0];
    for (int i = 1; i < (int)(blockDim.x >> 5); i++)
        m = fmaxf(m, red[i]);
    __syncthreads();
    float sum = 0.0f;
    for (int j = threadIdx.x; j < nk; j += blockDim.x)
        sum += __expf(x[j] - m);
    sum = cuda_block_sum(sum, red);
    float inv = 1.0f / sum;
    if (p16) {
        __nv_bfloat16 *y = p16 + row * nk;
        for (int j = threadIdx.x; j < nk; j += blockDim.x)
            y[j] = __float2bfloat16_rn(__expf(x[j] - m) * inv);
    } else {
        for (int j = threadIdx.x; j < nk; j += blockDim.x)
            x[j] = __expf(x[j] - m) * inv;
    }
    if (lse && threadIdx.x == 0) {
        int hb = (int)(row / R), i = (int)(row % R);
        lse[(size_t)(r0 + i) * nh + h0 + hb] = m + logf(sum);
    }
}

static int dense_on = -1;

int cuda_dense_enabled(void)
{
    if (dense_on < 0) {
        const char *e = getenv("BAGEL_ATTN_DENSE");
        dense_on = !(e && !strcmp(e, "0"));
    }
    return dense_on;
}

static size_t dense_budget(void)
{
    const char *e = getenv("BAGEL_ATTN_DENSE_MIB");
    long mib = e ? strtol(e, NULL, 10) : 0;
    return (size_t)(mib > 0 ? mib : 512) << 20;
}

void cuda_dense_attention(float *out, int ldo, float *lse, const float *q, int ldq, const float *k, const float *v,
                          int ldkv, int nq, int nk, int nh, int nkv, int d, float scale)
{
    if (nq <= 0 || nk <= 0)
        return;
    int g = nh / nkv, bf = cuda_bf16;
    cudaDataType_t ty = bf ? CUDA_R_16BF : CUDA_R_32F;
    size_t es = bf ? 2 : 4;
    /* operands: bf16 copies (packed: row strides become nh·d and nkv·d), or
     * the fp32 tensors as they are */
    const void *Q = q, *K = k, *V = v;
    if (bf) {
        Q = cuda_to_bf16(CUDA_SCRATCH_GEMM_A, q, nq, nh * d, ldq);
        K = cuda_to_bf16(CUDA_SCRATCH_GEMM_B, k, nk, nkv * d, ldkv);
        V = cuda_to_bf16(CUDA_SCRATCH_C, v, nk, nkv * d, ldkv);
        ldq = nh * d, ldkv = nkv * d;
    }
    size_t per_row = (size_t)g * nk * (bf ? 6 : 4);
    size_t R = dense_budget() / per_row;
    R = R < 1 ? 1 : R > (size_t)nq ? (size_t)nq : R;
    size_t chunks = (nq + R - 1) / R;
    R = (nq + chunks - 1) / chunks;
    float *S = (float *)cuda_scratch_slot(CUDA_SCRATCH_OPS, per_row * R + 256);
    __nv_bfloat16 *P16 = bf ? (__nv_bfloat16 *)(S + (size_t)g * R * nk) : NULL;
    const float zero = 0.0f, one = 1.0f;
    for (int j = 0; j < nkv; j++) {
        const char *Kj = (const char *)K + (size_t)j * d * es, *Vj = (const char *)V + (size_t)j * d * es;
        for (int r0 = 0; r0 < nq; r0 += (int)R) {
            int rn = nq - r0 < (int)R ? nq - r0 : (int)R;
            const char *Qc = (const char *)Q + ((size_t)r0 * ldq + (size_t)j * g * d) * es;
            /* column-major S[key, query] per head = (K_j)ᵀ·Q_h: row-major S[query][key] */
            CUBLAS_CHECK(cublasGemmStridedBatchedEx(cuda_blas, CUBLAS_OP_T, CUBLAS_OP_N, nk, rn, d, &scale, Kj, ty,
                                                    ldkv, 0, Qc, ty, ldq, d, &zero, S, CUDA_R_32F, nk,
                                                    (long long)rn * nk, g, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
            k_dense_softmax<<<(unsigned)(g * rn), DENSE_THREADS, 0, cuda_stream>>>(S, P16, lse, nk, rn, r0, nh,
                                                                                 j * g);
            CU_LAUNCHED();
            /* column-major O_h[dim, query] = (V_j)ᵀ·P_hᵀ: row-major O[query][h·d + dim] */
            const void *P = bf ? (const void *)P16 : (const void *)S;
            CUBLAS_CHECK(cublasGemmStridedBatchedEx(cuda_blas, CUBLAS_OP_N, CUBLAS_OP_N, d, rn, nk, &one, Vj, ty, ldkv,
                                                    0, P, ty, nk, (long long)rn * nk, &zero,
                                                    out + (size_t)r0 * ldo + (size_t)j * g * d, CUDA_R_32F, ldo, d, g,
                                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        }
    }
}
