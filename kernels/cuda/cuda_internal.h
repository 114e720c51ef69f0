/* cuda_internal.h — shared by the files of the CUDA backend: the check
 * macros, the stream and handles, launch helpers and every cuda_* function
 * that cuda_table.cu gathers into op_cuda. Not for models: they call op_cuda.
 *
 * All functions have C linkage so that the table and C tests see them. */
#ifndef BAGEL_CUDA_INTERNAL_H
#define BAGEL_CUDA_INTERNAL_H

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stddef.h>
#include <stdint.h>

#include "ops_cuda.h"

extern "C" {

/* print "cuda_ops: file:line: what: msg" and abort (see ops_cuda.h for why) */
[[noreturn]] void cuda_ops_die(const char *file, int line, const char *what, const char *msg);

#define CU_CHECK(call)                                                                                                 \
    do {                                                                                                               \
        cudaError_t e_ = (call);                                                                                       \
        if (e_ != cudaSuccess)                                                                                         \
            cuda_ops_die(__FILE__, __LINE__, #call, cudaGetErrorString(e_));                                           \
    } while (0)
#define CUBLAS_CHECK(call)                                                                                             \
    do {                                                                                                               \
        cublasStatus_t e_ = (call);                                                                                    \
        if (e_ != CUBLAS_STATUS_SUCCESS)                                                                               \
            cuda_ops_die(__FILE__, __LINE__, #call, cublasGetStatusString(e_));                                        \
    } while (0)
/* after every kernel launch: a bad configuration fails here, not later */
#define CU_LAUNCHED() CU_CHECK(cudaGetLastError())
#define CU_REQUIRE(cond, msg)                                                                                          \
    do {                                                                                                               \
        if (!(cond))                                                                                                   \
            cuda_ops_die(__FILE__, __LINE__, #cond, msg);                                                              \
    } while (0)

/* the backend's state (cuda_mem.cu) */
extern cudaStream_t cuda_stream;
extern cublasHandle_t cuda_blas;
/* 1 when the matrix math runs in bf16 (cuda_ops_set_bf16) */
extern int cuda_bf16;
/* 1 while the ops write parameter gradients rather than add to them
 * (op_table_t.grad_write); cuda_gw_beta() is their products' beta */
extern int cuda_grad_write_on;
static inline float cuda_gw_beta(void) { return cuda_grad_write_on ? 0.0f : 1.0f; }
void cuda_grad_write(int on);
/* cuda_attention.cu: op_attn_t.write where the kernels add: dq, dk, dv zeroed */
void cuda_attn_zero_grads(float *dq, float *dk, float *dv, const op_attn_t *a);

/* device buffers the ops reuse: grown, never shrunk, freed by
 * cuda_ops_shutdown; growing synchronizes (cudaMalloc). One slot per user
 * whose buffer may be live while another's is taken: the ops' (conv's
 * im2col columns, the flash attention's staging, the dense attention's
 * scores), the two bf16 operand copies of a product (which may read the
 * ops' slot; the dense attention's queries and keys), the cache attention's
 * packed queries (which call the attention that uses the ops' slot), and
 * a third operand (the dense attention's bf16 values, a convolution's bf16
 * output), and gn_conv2d_fwd's own (its statistics when the caller keeps
 * none; the normalized input where it runs as separate ops) */
enum {
    CUDA_SCRATCH_OPS,
    CUDA_SCRATCH_GEMM_A,
    CUDA_SCRATCH_GEMM_B,
    CUDA_SCRATCH_KV,
    CUDA_SCRATCH_C,
    CUDA_SCRATCH_NORM,
    CUDA_SCRATCH_SLOTS
};
void *cuda_scratch_slot(int slot, size_t bytes);
float *cuda_scratch(size_t floats); /* the ops' slot */
/* a device double for reductions that come back to the host */
double *cuda_scratch_double(void);

/* row-major C[m,n] = alpha·op(A)·op(B) + beta·C, with op given per operand
 * as 't' (transposed) or 'n', and leading dimensions as row-major strides;
 * turned into cuBLAS's column-major call (cuda_linear.cu) */
void cuda_gemm_rm(char ta, char tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                  float beta, float *c, int ldc);

/* cuda_flash.cu: the bf16 tensor-core attention, for head dims up to 128
 * that round up to 48, 64, 80 or 128; cuda_flash_takes: whether it runs a
 * (bf16 mode and such a head dim) */
int cuda_flash_takes(const op_attn_t *a);
void cuda_flash_fwd(float *out, float *lse, const float *q, const float *k, const float *v, const op_attn_t *a);
void cuda_flash_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                    const float *q, const float *k, const float *v, const op_attn_t *a);

/* cuda_linear.cu: rows × cols of x (row stride ld) rounded into a packed
 * bf16 copy in scratch slot `slot` (an __nv_bfloat16 array) */
void *cuda_to_bf16(int slot, const float *x, int rows, int cols, int ld);
/* whether products round their operands into bf16 copies (bf16 mode, not
 * BAGEL_GEMM=fast16bf); then cuda_gemm16_rm is cuda_gemm_rm on operands
 * already in bf16 (__nv_bfloat16 arrays), fp32 accumulation and output */
int cuda_gemm16_on(void);
void cuda_gemm16_rm(char ta, char tb, int m, int n, int k, float alpha, const void *a16, int lda, const void *b16,
                    int ldb, float beta, float *c, int ldc);

/* cuda_dense.cu: attention with no mask through cuBLAS (see there): q, out
 * [nq, nh, d] with row strides ldq, ldo; k, v [nk, nkv, d] with row stride
 * ldkv; lse [nq, nh] or NULL. cuda_dense_enabled: 0 when the environment
 * says BAGEL_ATTN_DENSE=0 (the fused kernels then run, for comparison). */
int cuda_dense_enabled(void);
void cuda_dense_attention(float *out, int ldo, float *lse, const float *q, int ldq, const float *k, const float *v,
                          int ldkv, int nq, int nk, int nh, int nkv, int d, float scale);

/* cuda_rows.cu: the first index of each row's largest value */
void cuda_argmax_rows(int32_t *out, const float *x, int n, int c);
/* cuda_linear.cu: bf16 copies of held weights (op_table_t.hold_weights),
 * made at their first product and kept until the hold ends */
void cuda_hold_weights(const float *w, size_t n);
/* cuda_linear.cu: one bf16 mirror of a tracked block (op_table_t.
 * track_weights): the copy of [w, w + n) when the block holds it, else NULL;
 * cuda_optim.cu's AdamW writes it */
void cuda_track_weights(const float *w, size_t n);
void *cuda_tracked_bf16(const float *w, size_t n);

/* cuda_kvattn.cu: inference attention against a cache */
void cuda_attention_kv(float *out, const float *q, const float *kc, const float *vc, const op_kv_attn_t *a);

/* cuda_conv.cu: releases the cuDNN handle and descriptors (cuda_ops_shutdown) */
void cuda_conv_shutdown(void);
/* cuda_linear.cu: the cuBLASLt handle, plans and workspace */
void cuda_linear_shutdown(void);

/* cuda_mem.cu */
void *cuda_alloc(size_t bytes);
void cuda_free(void *p);
void cuda_zero(void *p, size_t bytes);
void cuda_upload(void *dst, const void *host_src, size_t bytes);
void cuda_download(void *host_dst, const void *src, size_t bytes);
void cuda_sync(void);

/* cuda_linear.cu */
void cuda_linear_fwd(float *out, const float *in, const float *w, const float *b, int n, int in_dim, int out_dim);
void cuda_linear_bwd(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int n,
                     int in_dim, int out_dim);
void cuda_linear_bwd_set(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int n,
                         int in_dim, int out_dim);
void cuda_linear3_fwd(const op_lin_t *l, const float *in, int n, int in_dim);
void cuda_linear3_bwd(float *din, const op_lin_t *l, const float *in, int n, int in_dim, int set);
/* dst[j] += Σ_r src[r·c + j], r < n */
void cuda_colsum_add(float *dst, const float *src, int n, int c);
/* column sums in two deterministic stages (cuda_norm.cu): dw[j] += Σ_r
 * dout·(in − mean)·rstd when dw and in are given (mean NULL: 0), db[j] +=
 * Σ_r dout */
void cuda_col_reduce(float *dw, float *db, const float *dout, const float *in, const float *mean, const float *rstd,
                     int n, int c);

/* cuda_norm.cu */
void cuda_rmsnorm_fwd(float *out, float *rstd, const float *in, const float *w, int n, int c, float eps);
void cuda_rmsnorm_bwd(float *din, float *dw, const float *dout, const float *in, const float *w, const float *rstd,
                      int n, int c);
void cuda_rmsnorm_bwd_set(float *din, float *dw, const float *dout, const float *in, const float *w,
                          const float *rstd, int n, int c);
void cuda_layernorm_fwd(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b, int n,
                        int c, float eps);
void cuda_layernorm_bwd(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                        const float *mean, const float *rstd, int n, int c);
void cuda_groupnorm_fwd(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b, int n,
                        int c, int hw, int groups, float eps);
/* GroupNorm's mean and rstd [n, groups] alone (device buffers, not NULL) */
void cuda_gn_stats(float *mean, float *rstd, const float *in, int n, int c, int hw, int groups, float eps);
void cuda_groupnorm_bwd(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                        const float *mean, const float *rstd, int n, int c, int hw, int groups);

/* cuda_rope.cu */
void cuda_rope_fwd(float *x, const int32_t *pos, int n, int h, int d, float theta);
void cuda_rope_bwd(float *dx, const int32_t *pos, int n, int h, int d, float theta);

/* cuda_act.cu */
void cuda_swiglu_fwd(float *out, const float *gate, const float *up, size_t m);
void cuda_mlp_fwd(float *out, float *gate, float *up, float *mm, const float *in, const float *gate_w,
                  const float *up_w, const float *down_w, int n, int h, int i);
void cuda_mlp_bwd(float *din, float *dgate_w, float *dup_w, float *ddown_w, const float *dout, const float *in,
                  const float *gate_w, const float *up_w, const float *down_w, const float *gate, const float *up,
                  const float *mm, float *dgate, float *dup, float *dmm, int n, int h, int i);
void cuda_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t m);
void cuda_swiglu_bwd_set(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t m);
void cuda_gelu_fwd(float *out, const float *in, size_t m);
void cuda_gelu_bwd(float *din, const float *dout, const float *in, size_t m);
void cuda_gelu_bwd_set(float *din, const float *dout, const float *in, size_t m);
void cuda_silu_fwd(float *out, const float *in, size_t m);
void cuda_silu_bwd(float *din, const float *dout, const float *in, size_t m);

/* cuda_attention.cu */
void cuda_attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v, const op_attn_t *a);
void cuda_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                        const float *q, const float *k, const float *v, const op_attn_t *a);

/* cuda_rows.cu */
void cuda_rows_copy(float *out, const int32_t *oi, const float *in, const int32_t *ii, int n, int c);
void cuda_rows_add(float *out, const int32_t *oi, const float *in, const int32_t *ii, int n, int c);

/* cuda_classifier.cu */
void cuda_classifier_ce(float *loss, float *dh, float *dw, const float *h, const float *w, const int32_t *label,
                        const float *dloss, int n, int c, int V, float *scratch, int chunk);

/* cuda_loss.cu */
void cuda_mse(float *loss, float *dpred, const float *pred, const float *target, const float *dloss, int n, int d);
void cuda_flow_noise(float *xt, float *target, const float *x0, const float *eps, const float *t, int n, int d);
void cuda_timestep_freq(float *out, const float *t, int n, int half);
void cuda_cfg_euler(float *x, float *v, const float *v_c, const float *v_t, const float *v_i, int n, int dim,
                    float s_txt, float s_img, int renorm, float renorm_min, float dt);

/* cuda_patch.cu */
void cuda_patchify_u8(float *out, const uint8_t *img, int H, int W, int C, int p);
void cuda_patchify_chw(float *out, const float *z, int C, int H, int W, int p);
void cuda_unpatchify_chw(float *z, const float *tokens, int C, int H, int W, int p);

/* cuda_conv.cu */
void cuda_conv2d_fwd(float *out, const float *in, const float *w, const float *b, int n, int ci, int h, int wd, int co,
                     int kh, int kw, int stride, int pad_t, int pad_l, int pad_b, int pad_r);
void cuda_gn_conv2d_fwd(float *out, float *mean, float *rstd, const float *in, const float *gw, const float *gb,
                        int groups, float eps, int act, const float *w, const float *b, const float *res, int n, int ci,
                        int h, int wd, int co, int k);
void cuda_conv2d_bwd(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int n,
                     int ci, int h, int wd, int co, int kh, int kw, int stride, int pad_t, int pad_l, int pad_b,
                     int pad_r);

/* cuda_optim.cu */
void cuda_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2, float eps,
                float wd, int step, float gscale, float *e, float e_decay);
void cuda_ema(float *e, const float *p, size_t n, float decay);
double cuda_sumsq(const float *g, size_t n);
void cuda_scale(float *x, float s, size_t n);
void cuda_axpy(float *y, float a, const float *x, size_t m);

/* cuda_layout.cu */
void cuda_upsample2x(float *out, const float *in, int np, int h, int w);
void cuda_affine(float *out, const float *in, float a, float b, size_t m);
void cuda_gauss_sample(float *z, const float *mean, const float *logvar, const float *eps, size_t m);
void cuda_unpatchify_u8(uint8_t *img, const float *tokens, int H, int W, int C, int p);
}

/* grid for a grid-stride loop over m elements with 256 threads a block */
#define CU_THREADS 256
static inline unsigned cuda_blocks(size_t m)
{
    size_t b = (m + CU_THREADS - 1) / CU_THREADS;
    if (b < 1)
        b = 1;
    return b > 65536 ? 65536u : (unsigned)b;
}
#define CU_FOR(i, m) for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (m); i += (size_t)gridDim.x * blockDim.x)

/* the sum over a warp's 32 lanes, in every lane */
__device__ inline float cuda_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ inline float cuda_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* block-wide sum of one value per thread (blockDim.x a multiple of 32, at
 * most 1024); every thread gets the result. Uses 33 slots of shared memory. */
template <typename T> __device__ inline T cuda_block_sum(T v, T *sh)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads(); /* sh may still be read from a previous call */
    if (lane == 0)
        sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        T x = lane < nw ? sh[lane] : (T)0;
        for (int o = 16; o > 0; o >>= 1)
            x += __shfl_xor_sync(0xffffffffu, x, o);
        if (lane == 0)
            sh[32] = x;
    }
    __syncthreads();
    return sh[32];
}

#endif
