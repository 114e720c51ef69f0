/* cuda_linear.cu — the linear layer on cuBLAS (fp32 without TF32, or bf16
 * tensor-core math with fp32 accumulation: cuda_ops_set_bf16), the
 * row-major-to-column-major gemm wrapper every product here goes through,
 * and the column-sum kernel for bias gradients. */
#include "cuda_internal.h"

#include <cuda_bf16.h>

/* rows × cols of x (row stride ld) into a packed bf16 copy, 4 a thread */
__global__ void k_to_bf16(__nv_bfloat16 *dst, const float *x, int rows, int cols, int ld)
{
    size_t n4 = ((size_t)rows * cols + 3) / 4;
    CU_FOR(i4, n4)
    {
        for (int u = 0; u < 4; u++) {
            size_t i = i4 * 4 + u;
            if (i >= (size_t)rows * cols)
                break;
            size_t r = i / cols, c = i % cols;
            dst[i] = __float2bfloat16_rn(x[r * ld + c]);
        }
    }
}

/* the packed case: 16-byte loads, 8-byte stores (n a multiple of 4, both
 * pointers aligned) */
__global__ void k_to_bf16_packed(__nv_bfloat16 *dst, const float4 *x, size_t n4)
{
    CU_FOR(i, n4)
    {
        float4 v = x[i];
        __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
        uint2 w = make_uint2(*reinterpret_cast<uint32_t *>(&lo), *reinterpret_cast<uint32_t *>(&hi));
        reinterpret_cast<uint2 *>(dst)[i] = w;
    }
}

static __nv_bfloat16 *to_bf16(int slot, const float *x, int rows, int cols, int ld)
{
    size_t n = (size_t)rows * cols;
    __nv_bfloat16 *d = (__nv_bfloat16 *)cuda_scratch_slot(slot, n * sizeof(__nv_bfloat16) + 16);
    if (n && (ld == cols || rows == 1) && n % 4 == 0 && ((uintptr_t)x & 15) == 0) {
        k_to_bf16_packed<<<cuda_blocks(n / 4), CU_THREADS, 0, cuda_stream>>>(d, (const float4 *)x, n / 4);
        CU_LAUNCHED();
    } else if (n) {
        k_to_bf16<<<cuda_blocks((n + 3) / 4), CU_THREADS, 0, cuda_stream>>>(d, x, rows, cols, ld);
        CU_LAUNCHED();
    }
    return d;
}

/* A row-major X[r, c] with stride ld is the column-major Xᵀ with the same
 * ld, so C = op(A)·op(B) in row-major is Cᵀ = op(B)ᵀ·op(A)ᵀ in column-major:
 * swap the operands and keep each one's transpose flag. */
void cuda_gemm_rm(char ta, char tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                  float beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0)
        return;
    cublasOperation_t opb = tb == 't' ? CUBLAS_OP_T : CUBLAS_OP_N, opa = ta == 't' ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (!cuda_bf16) {
        CUBLAS_CHECK(cublasSgemm(cuda_blas, opb, opa, n, m, k, &alpha, b, ldb, a, lda, &beta, c, ldc));
        return;
    }
    /* bf16 copies of both operands (a pass over each, small beside the
     * product: measured, cuBLAS's own fp32-in bf16 mode ran at about half
     * the rate of bf16 operands), fp32 accumulation and output */
    int ra = ta == 't' ? k : m, ca = ta == 't' ? m : k, rb = tb == 't' ? n : k, cb = tb == 't' ? k : n;
    __nv_bfloat16 *a16 = to_bf16(CUDA_SCRATCH_GEMM_A, a, ra, ca, lda);
    __nv_bfloat16 *b16 = to_bf16(CUDA_SCRATCH_GEMM_B, b, rb, cb, ldb);
    CUBLAS_CHECK(cublasGemmEx(cuda_blas, opb, opa, n, m, k, &alpha, b16, CUDA_R_16BF, cb, a16, CUDA_R_16BF, ca, &beta,
                              c, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

__global__ void k_bias_rows(float *out, const float *b, size_t total, int c)
{
    CU_FOR(i, total) out[i] = b ? b[i % c] : 0.0f;
}

void cuda_colsum_add(float *dst, const float *src, int n, int c) { cuda_col_reduce(NULL, dst, src, NULL, NULL, NULL, n, c); }

void cuda_linear_fwd(float *out, const float *in, const float *w, const float *b, int n, int in_dim, int out_dim)
{
    if (n <= 0 || out_dim <= 0)
        return;
    size_t total = (size_t)n * out_dim;
    if (b || in_dim <= 0) { /* the bias first, so the product accumulates onto it */
        k_bias_rows<<<cuda_blocks(total), CU_THREADS, 0, cuda_stream>>>(out, b, total, out_dim);
        CU_LAUNCHED();
    }
    if (in_dim <= 0)
        return;
    cuda_gemm_rm('n', 't', n, out_dim, in_dim, 1.0f, in, in_dim, w, in_dim, b ? 1.0f : 0.0f, out, out_dim);
}

void cuda_linear_bwd(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int n,
                     int in_dim, int out_dim)
{
    if (n <= 0 || out_dim <= 0)
        return;
    if (din && in_dim > 0) /* din[n,i] += dout[n,o] · w[o,i] */
        cuda_gemm_rm('n', 'n', n, in_dim, out_dim, 1.0f, dout, out_dim, w, in_dim, 1.0f, din, in_dim);
    if (dw && in_dim > 0) /* dw[o,i] += dout[n,o]ᵀ · in[n,i] */
        cuda_gemm_rm('t', 'n', out_dim, in_dim, n, 1.0f, dout, out_dim, in, in_dim, 1.0f, dw, in_dim);
    if (db)
        cuda_colsum_add(db, dout, n, out_dim);
}
