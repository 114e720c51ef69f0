/* cuda_conv.cu — 2-D convolution NCHW for the autoencoder.
 *
 * Forward with symmetric padding (every 3×3 and 1×1 convolution of FLUX's
 * autoencoder): cuDNN, its algorithm picked once per shape by its own
 * heuristics, the math pinned to CUDNN_FMA_MATH in both precisions: no
 * TF32, so the fp32 tests hold to 1e-4 of the CPU, and the latents do not
 * depend on how many images share a batch. With tensor-core math in bf16
 * mode the encoder ran 1.1-1.4x faster on an H200, but cuDNN picked other
 * algorithms for 1 and 8 images and the latents of one image changed with
 * its batch (docs/encode.md); bagel-encode's batches depend on arrival
 * times, so that would make a latent cache irreproducible.
 *
 * Everything else, im2col + a product (the CPU's algorithm,
 * kernels/cpu/cpu_conv.c): FLUX's Downsample pads right and bottom only,
 * which cuDNN's symmetric padding cannot express without a padded copy, and
 * the backward (the autoencoder is frozen; the backward exists for the op
 * table's contract and its tests). The column buffer is the backend's
 * reusable scratch (cuda_scratch), bounded to COL_FLOATS by chunking output
 * pixels.
 *
 * col[kk][pp] = in[c][iy][ix] for kk = (c·kh + ky)·kw + kx; the backward's
 * col2im adds dcol back with atomicAdd (taps of a stride-1 conv overlap). */
#include "cuda_internal.h"

/* the legacy convolution API: deprecated in cuDNN 9 for the graph API, and
 * still the shortest way to one convolution */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#include <cudnn.h>

#include <stdio.h>
#include <string.h>

#define COL_FLOATS ((size_t)1 << 25) /* 128 MiB */

struct conv_geom {
    int ci, h, wd, kh, kw, stride, pad_t, pad_l, ho, wo;
};

static conv_geom conv_geom_of(int ci, int h, int wd, int kh, int kw, int stride, int pad_t, int pad_l, int pad_b,
                              int pad_r)
{
    conv_geom g = {ci, h, wd, kh, kw, stride, pad_t, pad_l, 0, 0};
    g.ho = (h + pad_t + pad_b - kh) / stride + 1;
    g.wo = (wd + pad_l + pad_r - kw) / stride + 1;
    return g;
}

/* col [K, np] for output pixels [p0, p0 + np); ADJOINT: din += dcol */
template <bool ADJOINT> __global__ void k_im2col(float *col, float *img, conv_geom g, int p0, int np, size_t total)
{
    CU_FOR(t, total)
    {
        int kk = (int)(t / np), pp = (int)(t % np);
        int c = kk / (g.kh * g.kw), ky = kk / g.kw % g.kh, kx = kk % g.kw;
        int p = p0 + pp, oy = p / g.wo, ox = p % g.wo;
        int iy = oy * g.stride - g.pad_t + ky, ix = ox * g.stride - g.pad_l + kx;
        bool in = iy >= 0 && iy < g.h && ix >= 0 && ix < g.wd;
        size_t src = ((size_t)c * g.h + (in ? iy : 0)) * g.wd + (in ? ix : 0);
        if (ADJOINT) {
            if (in)
                atomicAdd(img + src, col[t]);
        } else {
            col[t] = in ? img[src] : 0.0f;
        }
    }
}

__global__ void k_conv_bias(float *out, const float *b, int co, int hwo, size_t total)
{
    CU_FOR(t, total) out[t] = b[t / hwo % co];
}

/* one block per output channel: db[o] += Σ over samples and pixels */
__global__ void k_conv_db(float *db, const float *dout, int n, int co, int hwo)
{
    __shared__ float sh[33];
    int o = blockIdx.x;
    float acc = 0.0f;
    for (int i = 0; i < n; i++) {
        const float *src = dout + ((size_t)i * co + o) * hwo;
        for (int p = threadIdx.x; p < hwo; p += blockDim.x)
            acc += src[p];
    }
    acc = cuda_block_sum(acc, sh);
    if (threadIdx.x == 0)
        db[o] += acc;
}

static int conv_chunk(int K, int hwo)
{
    size_t P = COL_FLOATS / (size_t)(K > 0 ? K : 1);
    return P < 1 ? 1 : P > (size_t)hwo ? hwo : (int)P;
}

/* ---- cuDNN */

#define CUDNN_CHECK(call)                                                                                              \
    do {                                                                                                               \
        cudnnStatus_t e_ = (call);                                                                                     \
        if (e_ != CUDNN_STATUS_SUCCESS)                                                                                \
            cuda_ops_die(__FILE__, __LINE__, #call, cudnnGetErrorString(e_));                                          \
    } while (0)

static cudnnHandle_t dnn;
static int dnn_state; /* 0 not tried, 1 ready, -1 unavailable (im2col everywhere) */
static cudnnTensorDescriptor_t xd, yd, bd;
static cudnnFilterDescriptor_t fd;
static cudnnConvolutionDescriptor_t cd;

/* the algorithm per shape and precision, found once */
struct conv_algo {
    int key[10];
    cudnnConvolutionFwdAlgo_t algo;
    size_t ws;
};
#define N_ALGOS 64
static conv_algo algos[N_ALGOS];
static int n_algos;

static int dnn_ready(void)
{
    if (dnn_state)
        return dnn_state > 0;
    dnn_state = -1;
    if (cudnnCreate(&dnn) != CUDNN_STATUS_SUCCESS) {
        fprintf(stderr, "cuda_ops: cuDNN does not start here; convolutions run as im2col products\n");
        return 0;
    }
    CUDNN_CHECK(cudnnSetStream(dnn, cuda_stream));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&xd));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&yd));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&bd));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&fd));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&cd));
    dnn_state = 1;
    return 1;
}

void cuda_conv_shutdown(void)
{
    if (dnn_state > 0) {
        cudnnDestroyTensorDescriptor(xd);
        cudnnDestroyTensorDescriptor(yd);
        cudnnDestroyTensorDescriptor(bd);
        cudnnDestroyFilterDescriptor(fd);
        cudnnDestroyConvolutionDescriptor(cd);
        cudnnDestroy(dnn);
    }
    dnn_state = 0;
    n_algos = 0;
}

static void conv_cudnn(float *out, const float *in, const float *w, const float *b, int n, const conv_geom &g,
                       int co, int pad_h, int pad_w)
{
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, g.ci, g.h, g.wd));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(fd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, co, g.ci, g.kh, g.kw));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(cd, pad_h, pad_w, g.stride, g.stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                                CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionMathType(cd, CUDNN_FMA_MATH));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, co, g.ho, g.wo));
    int key[10] = {n, g.ci, g.h, g.wd, co, g.kh, g.kw, g.stride, pad_h * 65536 + pad_w, 0};
    conv_algo *A = NULL;
    for (int i = 0; i < n_algos && !A; i++)
        if (!memcmp(algos[i].key, key, sizeof key))
            A = &algos[i];
    if (!A) {
        cudnnConvolutionFwdAlgoPerf_t perf[8];
        int got = 0;
        CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(dnn, xd, fd, cd, yd, 8, &got, perf));
        int pick = -1;
        for (int i = 0; i < got && pick < 0; i++) /* ranked by the heuristics; the math type must be ours */
            if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= ((size_t)1 << 30) &&
                perf[i].mathType == CUDNN_FMA_MATH)
                pick = i;
        CU_REQUIRE(pick >= 0, "cuDNN offers no convolution algorithm for this shape");
        conv_algo fresh;
        memcpy(fresh.key, key, sizeof key);
        fresh.algo = perf[pick].algo;
        fresh.ws = perf[pick].memory;
        A = &algos[n_algos < N_ALGOS ? n_algos++ : N_ALGOS - 1];
        *A = fresh;
    }
    void *ws = A->ws ? cuda_scratch((A->ws + 3) / 4) : NULL;
    const float one = 1.0f, zero = 0.0f;
    CUDNN_CHECK(cudnnConvolutionForward(dnn, &one, xd, in, fd, w, cd, A->algo, ws, A->ws, &zero, yd, out));
    if (b) {
        CUDNN_CHECK(cudnnSetTensor4dDescriptor(bd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, co, 1, 1));
        CUDNN_CHECK(cudnnAddTensor(dnn, &one, bd, b, &one, yd, out));
    }
}

void cuda_conv2d_fwd(float *out, const float *in, const float *w, const float *b, int n, int ci, int h, int wd, int co,
                     int kh, int kw, int stride, int pad_t, int pad_l, int pad_b, int pad_r)
{
    conv_geom g = conv_geom_of(ci, h, wd, kh, kw, stride, pad_t, pad_l, pad_b, pad_r);
    int K = ci * kh * kw, hwo = g.ho * g.wo;
    if (n <= 0 || co <= 0 || hwo <= 0)
        return;
    if (pad_t == pad_b && pad_l == pad_r && dnn_ready()) {
        conv_cudnn(out, in, w, b, n, g, co, pad_t, pad_l);
        return;
    }
    if (b) {
        size_t total = (size_t)n * co * hwo;
        k_conv_bias<<<cuda_blocks(total), CU_THREADS, 0, cuda_stream>>>(out, b, co, hwo, total);
        CU_LAUNCHED();
    }
    int P = conv_chunk(K, hwo);
    float *col = cuda_scratch((size_t)K * P);
    for (int i = 0; i < n; i++) {
        const float *x = in + (size_t)i * ci * h * wd;
        float *y = out + (size_t)i * co * hwo;
        for (int p0 = 0; p0 < hwo; p0 += P) {
            int np = hwo - p0 < P ? hwo - p0 : P;
            size_t total = (size_t)K * np;
            k_im2col<false><<<cuda_blocks(total), CU_THREADS, 0, cuda_stream>>>(col, (float *)x, g, p0, np, total);
            CU_LAUNCHED();
            /* out[co, np] (row stride hwo) = W[co, K] · col[K, np] */
            cuda_gemm_rm('n', 'n', co, np, K, 1.0f, w, K, col, np, b ? 1.0f : 0.0f, y + p0, hwo);
        }
    }
}

void cuda_conv2d_bwd(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int n,
                     int ci, int h, int wd, int co, int kh, int kw, int stride, int pad_t, int pad_l, int pad_b,
                     int pad_r)
{
    conv_geom g = conv_geom_of(ci, h, wd, kh, kw, stride, pad_t, pad_l, pad_b, pad_r);
    int K = ci * kh * kw, hwo = g.ho * g.wo;
    if (n <= 0 || co <= 0 || hwo <= 0)
        return;
    if (db) {
        k_conv_db<<<co, 256, 0, cuda_stream>>>(db, dout, n, co, hwo);
        CU_LAUNCHED();
    }
    if (!din && !dw)
        return;
    int P = conv_chunk(K, hwo);
    float *col = cuda_scratch((size_t)K * P);
    for (int i = 0; i < n; i++) {
        const float *x = in + (size_t)i * ci * h * wd, *gy = dout + (size_t)i * co * hwo;
        for (int p0 = 0; p0 < hwo; p0 += P) {
            int np = hwo - p0 < P ? hwo - p0 : P;
            size_t total = (size_t)K * np;
            if (dw) { /* dw[co, K] += dout[co, np] · colᵀ */
                k_im2col<false><<<cuda_blocks(total), CU_THREADS, 0, cuda_stream>>>(col, (float *)x, g, p0, np, total);
                CU_LAUNCHED();
                cuda_gemm_rm('n', 't', co, K, np, 1.0f, gy + p0, hwo, col, np, 1.0f, dw, K);
            }
            if (din) { /* dcol[K, np] = Wᵀ · dout, then scattered back */
                cuda_gemm_rm('t', 'n', K, np, co, 1.0f, w, K, gy + p0, hwo, 0.0f, col, np);
                k_im2col<true><<<cuda_blocks(total), CU_THREADS, 0, cuda_stream>>>(
                    col, din + (size_t)i * ci * h * wd, g, p0, np, total);
                CU_LAUNCHED();
            }
        }
    }
}

#pragma GCC diagnostic pop
