/* cuda_linear.cu — the linear layer on cuBLAS (fp32 without TF32, or bf16
 * tensor-core math with fp32 accumulation: cuda_ops_set_bf16), the
 * row-major-to-column-major gemm wrapper every product here goes through,
 * and the column-sum kernel for bias gradients. */
#include "cuda_internal.h"

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
    /* fp32 operands rounded to bf16 on the way into the tensor cores, fp32
     * accumulation and output */
    CUBLAS_CHECK(cublasGemmEx(cuda_blas, opb, opa, n, m, k, &alpha, b, CUDA_R_32F, ldb, a, CUDA_R_32F, lda, &beta, c,
                              CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT));
}

__global__ void k_bias_rows(float *out, const float *b, size_t total, int c)
{
    CU_FOR(i, total) out[i] = b ? b[i % c] : 0.0f;
}

/* 32 columns a block, 8 rows of threads summing strided rows, then a shared
 * reduction over the 8 */
__global__ void k_colsum_add(float *dst, const float *src, int n, int c)
{
    __shared__ float sh[8][33];
    int j = blockIdx.x * 32 + threadIdx.x;
    float acc = 0.0f;
    if (j < c)
        for (int r = threadIdx.y; r < n; r += 8)
            acc += src[(size_t)r * c + j];
    sh[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && j < c) {
        float s = 0.0f;
        for (int y = 0; y < 8; y++)
            s += sh[y][threadIdx.x];
        dst[j] += s;
    }
}

void cuda_colsum_add(float *dst, const float *src, int n, int c)
{
    if (n <= 0 || c <= 0)
        return;
    k_colsum_add<<<(c + 31) / 32, dim3(32, 8), 0, cuda_stream>>>(dst, src, n, c);
    CU_LAUNCHED();
}

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
