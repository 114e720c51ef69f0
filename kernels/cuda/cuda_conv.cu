/* cuda_conv.cu — 2-D convolution NCHW for the autoencoder.
 *
 * Forward: cuDNN, its algorithm picked once per shape by its own heuristics.
 * - fp32 mode: NCHW fp32 tensors with CUDNN_FMA_MATH (no TF32, so the fp32
 *   tests hold to 1e-4 of the CPU), the whole batch a call.
 * - bf16 mode: each image is transposed into a bf16 NHWC copy (padding
 *   written into the copy), the weights into bf16 KRSC, cuDNN convolves on
 *   the tensor cores (fp32 accumulation, bf16 output) and the output comes
 *   back to fp32 NCHW with the bias added; the layout is what the
 *   tensor-core kernels read, so cuDNN transposes nothing itself.
 *   BAGEL_CONV=tf32 instead hands cuDNN the fp32 NCHW tensors with
 *   CUDNN_TENSOR_OP_MATH, BAGEL_CONV=fma keeps the fp32 mode's path: both for
 *   comparison (docs/encode.md).
 * A 1×1 convolution without stride or padding is a matrix product
 * (cuda_gemm_rm), an image a call, in both modes; one with few taps
 * (ci·kh·kw <= 32, stride 1: FLUX's first) runs on a direct fp32 kernel of
 * ours, k_conv_small.
 * One image a call on the tensor cores: an image's latents must not depend
 * on how many images share its batch (bagel-encode's batches depend on
 * arrival times, and a latent cache must be reproducible), and cuDNN picks
 * other tensor-core algorithms for other batch sizes; with one image a call
 * the shape, so the algorithm, is fixed.
 *
 * gn_conv2d_fwd (GroupNorm, swish, the convolution, a residual) in bf16
 * mode normalizes each image straight into that bf16 NHWC copy and adds
 * the residual on the way back: the autoencoder's elementwise passes over
 * fp32 tensors were a third of its time (docs/encode.md).
 *
 * FLUX's Downsample pads right and bottom only, which cuDNN's symmetric
 * padding cannot express: each image goes into a zero-padded copy (the bf16
 * copy itself in bf16 mode), then to cuDNN without padding.
 *
 * The backward, and everything where cuDNN does not start: im2col + a
 * product (the CPU's algorithm, kernels/cpu/cpu_conv.c; the autoencoder is
 * frozen, the backward exists for the op table's contract and its tests). The column buffer is the backend's
 * reusable scratch (cuda_scratch), bounded to COL_FLOATS by chunking output
 * pixels.
 *
 * col[kk][pp] = in[c][iy][ix] for kk = (c·kh + ky)·kw + kx; the backward's
 * col2im adds dcol back with atomicAdd (taps of a stride-1 conv overlap). */
#include "cuda_internal.h"

#include <cuda_bf16.h>

/* the legacy convolution API: deprecated in cuDNN 9 for the graph API, and
 * still the shortest way to one convolution */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#include <cudnn.h>

#include <stdio.h>
#include <stdlib.h>
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

/* out [c, hp, wp] = in [c, h, w] placed at (pad_t, pad_l), zeros around */
__global__ void k_pad2d(float *out, const float *in, int c, int h, int w, int pad_t, int pad_l, int hp, int wp,
                        size_t total)
{
    CU_FOR(t, total)
    {
        int x = (int)(t % wp) - pad_l, y = (int)(t / wp % hp) - pad_t;
        size_t ch = t / ((size_t)wp * hp);
        out[t] = y >= 0 && y < h && x >= 0 && x < w ? in[(ch * h + y) * w + x] : 0.0f;
    }
}

/* out[row, p] = b[row % co] over rows n·co of hwo pixels: grid (x over the
 * pixels, y the rows), no division per element (a 64-bit one per element
 * made the bias of a 1×1 convolution cost more than its product) */
__global__ void k_conv_bias(float *out, const float *b, int co, int hwo)
{
    float v = b[blockIdx.y % co];
    float *o = out + (size_t)blockIdx.y * hwo;
    for (int p = blockIdx.x * blockDim.x + threadIdx.x; p < hwo; p += gridDim.x * blockDim.x)
        o[p] = v;
}

static void conv_bias(float *out, const float *b, int n, int co, int hwo)
{
    unsigned gx = (unsigned)((hwo + CU_THREADS - 1) / CU_THREADS);
    dim3 grid(gx > 64 ? 64 : gx, (unsigned)(n * co));
    k_conv_bias<<<grid, CU_THREADS, 0, cuda_stream>>>(out, b, co, hwo);
    CU_LAUNCHED();
}

/* a convolution with few taps (ci·kh·kw <= SMALL_K: FLUX's first, 3 channels
 * by 3×3), stride 1, in fp32 on the plain cores: a thread an output pixel
 * holds its K input taps in registers and writes every output channel,
 * coalesced along the row; the weights in shared memory. A product with a
 * reduction of 27 leaves the tensor cores idle, and cuDNN took 3.3 ms for it
 * at 1024² in bf16, 6x one of the 128-channel convolutions after it. */
#define SMALL_K 32
__global__ void k_conv_small(float *out, const float *in, const float *w, const float *b, int ci, int h, int wd,
                             int co, int kh, int kw, int pad_t, int pad_l, int ho, int wo)
{
    extern __shared__ float ws[]; /* [co][K] */
    int K = ci * kh * kw;
    for (int i = threadIdx.x; i < co * K; i += blockDim.x)
        ws[i] = w[i];
    __syncthreads();
    int n = blockIdx.y, hwo = ho * wo;
    const float *x = in + (size_t)n * ci * h * wd;
    float *y = out + (size_t)n * co * hwo;
    for (int p = blockIdx.x * blockDim.x + threadIdx.x; p < hwo; p += gridDim.x * blockDim.x) {
        int oy = p / wo, ox = p % wo;
        float tap[SMALL_K];
#pragma unroll
        for (int k = 0; k < SMALL_K; k++) {
            float v = 0.0f;
            if (k < K) {
                int c = k / (kh * kw), ky = k / kw % kh, kx = k % kw;
                int iy = oy - pad_t + ky, ix = ox - pad_l + kx;
                if (iy >= 0 && iy < h && ix >= 0 && ix < wd)
                    v = x[((size_t)c * h + iy) * wd + ix];
            }
            tap[k] = v;
        }
        for (int o = 0; o < co; o++) {
            const float *wo_ = ws + o * K;
            float acc = b ? b[o] : 0.0f;
#pragma unroll
            for (int k = 0; k < SMALL_K; k++)
                if (k < K)
                    acc += wo_[k] * tap[k];
            y[(size_t)o * hwo + p] = acc;
        }
    }
}

/* one block per output channel: db[o] += Σ over samples and pixels (= when set) */
__global__ void k_conv_db(float *db, const float *dout, int n, int co, int hwo, int set)
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
        db[o] = (set ? 0.0f : db[o]) + acc;
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
    int key[11];
    cudnnConvolutionFwdAlgo_t algo;
    cudnnMathType_t math;
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

enum { CONV_FMA, CONV_TF32, CONV_BF16 };

/* the path of this precision: CONV_FMA in fp32 mode; in bf16 mode CONV_BF16
 * unless BAGEL_CONV says tf32 or fma */
static int conv_mode(void)
{
    static int bf16_mode = -1;
    if (bf16_mode < 0) {
        const char *e = getenv("BAGEL_CONV");
        bf16_mode = e && !strcmp(e, "fma") ? CONV_FMA : e && !strcmp(e, "tf32") ? CONV_TF32 : CONV_BF16;
    }
    return cuda_bf16 ? bf16_mode : CONV_FMA;
}

/* the algorithm for the descriptors as set now (key: the shape, layout and
 * math asked for): the heuristics' first with that math, else their first
 * that runs at all, and the math type set to the one it takes */
static const conv_algo *conv_pick(const int key[11], cudnnMathType_t math)
{
    conv_algo *A = NULL;
    for (int i = 0; i < n_algos && !A; i++)
        if (!memcmp(algos[i].key, key, sizeof algos[i].key))
            A = &algos[i];
    if (!A) {
        cudnnConvolutionFwdAlgoPerf_t perf[8];
        int got = 0;
        CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(dnn, xd, fd, cd, yd, 8, &got, perf));
        int pick = -1;
        for (int pass = 0; pass < 2 && pick < 0; pass++)
            for (int i = 0; i < got && pick < 0; i++)
                if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= ((size_t)1 << 30) &&
                    (pass || perf[i].mathType == math))
                    pick = i;
        CU_REQUIRE(pick >= 0, "cuDNN offers no convolution algorithm for this shape");
        conv_algo fresh;
        memcpy(fresh.key, key, sizeof fresh.key);
        fresh.algo = perf[pick].algo;
        fresh.math = perf[pick].mathType;
        fresh.ws = perf[pick].memory;
        A = &algos[n_algos < N_ALGOS ? n_algos++ : N_ALGOS - 1];
        *A = fresh;
    }
    CUDNN_CHECK(cudnnSetConvolutionMathType(cd, A->math));
    return A;
}

/* fp32 NCHW tensors to cuDNN: the whole batch a call with FMA math, one
 * image a call with tensor-op math (CONV_TF32) */
static void conv_cudnn(float *out, const float *in, const float *w, const float *b, int n, const conv_geom &g,
                       int co, int pad_h, int pad_w)
{
    cudnnMathType_t math = conv_mode() == CONV_TF32 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
    int nb = math == CUDNN_FMA_MATH ? n : 1;
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, nb, g.ci, g.h, g.wd));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(fd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, co, g.ci, g.kh, g.kw));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(cd, pad_h, pad_w, g.stride, g.stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                                CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionMathType(cd, math));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, nb, co, g.ho, g.wo));
    int key[11] = {nb, g.ci, g.h, g.wd, co, g.kh, g.kw, g.stride, pad_h * 65536 + pad_w, (int)math, 0};
    const conv_algo *A = conv_pick(key, math);
    void *ws = A->ws ? cuda_scratch((A->ws + 3) / 4) : NULL;
    const float one = 1.0f, zero = 0.0f;
    size_t xs = (size_t)g.ci * g.h * g.wd, ys = (size_t)co * g.ho * g.wo;
    for (int i = 0; i < n; i += nb)
        CUDNN_CHECK(cudnnConvolutionForward(dnn, &one, xd, in + i * xs, fd, w, cd, A->algo, ws, A->ws, &zero, yd,
                                            out + i * ys));
    if (b) {
        CUDNN_CHECK(cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, co, g.ho, g.wo));
        CUDNN_CHECK(cudnnSetTensor4dDescriptor(bd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, co, 1, 1));
        CUDNN_CHECK(cudnnAddTensor(dnn, &one, bd, b, &one, yd, out));
    }
}

/* GroupNorm applied on the way into the tensor cores' layout
 * (gn_conv2d_fwd): statistics [n, groups], the affine per channel, swish
 * when act */
struct conv_norm {
    const float *mean, *rstd, *w, *b;
    int groups, cpg, act;
};

/* src [C, H, W] fp32 (image img of the batch) into dst [Hp, Wp, Cp] bf16,
 * the image at (pt, pl), zeros around it and in channels [C, Cp), so the
 * copy needs no clearing first; with NORM each value normalized first, by
 * the expressions of groupnorm_fwd and silu_fwd. Tiles of 32 padded pixels ×
 * 32 channels through shared memory, both sides coalesced; block (32, 8) */
template <bool NORM>
__global__ void k_nchw_to_nhwc16(__nv_bfloat16 *dst, const float *src, int C, int Cp, int H, int W, int pt, int pl,
                                 int Hp, int Wp, conv_norm nm, int img)
{
    __shared__ float tile[32][33];
    int p0 = blockIdx.x * 32, c0 = blockIdx.y * 32, HWp = Hp * Wp;
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        int c = c0 + k, p = p0 + threadIdx.x, y = p / Wp - pt, x = p % Wp - pl;
        float v = 0.0f;
        if (c < C && p < HWp && y >= 0 && y < H && x >= 0 && x < W) {
            v = src[((size_t)c * H + y) * W + x];
            if (NORM) {
                int g = img * nm.groups + c / nm.cpg;
                v = (v - nm.mean[g]) * nm.rstd[g] * (nm.w ? nm.w[c] : 1.0f) + (nm.b ? nm.b[c] : 0.0f);
                if (nm.act)
                    v = v * (1.0f / (1.0f + expf(-v)));
            }
        }
        tile[k][threadIdx.x] = v;
    }
    __syncthreads();
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        int p = p0 + k, c = c0 + threadIdx.x;
        if (p < HWp && c < Cp)
            dst[(size_t)p * Cp + c] = __float2bfloat16_rn(tile[threadIdx.x][k]);
    }
}

/* src [HW, C] bf16 into dst [C, HW] fp32, plus bias[c] (may be NULL), then
 * plus res [C, HW] (may be NULL) */
__global__ void k_nhwc16_to_nchw(float *dst, const __nv_bfloat16 *src, const float *bias, const float *res, int C,
                                 int HW)
{
    __shared__ float tile[32][33];
    int p0 = blockIdx.x * 32, c0 = blockIdx.y * 32;
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        int p = p0 + k, c = c0 + threadIdx.x;
        tile[k][threadIdx.x] = p < HW && c < C ? __bfloat162float(src[(size_t)p * C + c]) : 0.0f;
    }
    __syncthreads();
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        int c = c0 + k, p = p0 + threadIdx.x;
        if (c < C && p < HW) {
            float v = tile[threadIdx.x][k] + (bias ? bias[c] : 0.0f);
            if (res)
                v += res[(size_t)c * HW + p];
            dst[(size_t)c * HW + p] = v;
        }
    }
}

/* The same two conversions in tiles of 32 pixels × 64 channels (256
 * threads) with 16-byte accesses on the fp32 side and 4-byte (two
 * channels) on the bf16 side, for HW a multiple of 4 and aligned tensors:
 * the scalar kernels above moved 1-2 TB/s, under half of what the memory
 * gives, and were three times the convolution itself at 512² (Nsight
 * Compute, H200). The padding ring is written by k_nhwc16_border. */
#define VT_P 32
#define VT_C 64

__device__ static inline float conv_norm_one(const conv_norm &nm, float v, float mu, float rs, float wc, float bc)
{
    v = (v - mu) * rs * wc + bc;
    return nm.act ? v * (1.0f / (1.0f + __expf(-v))) : v;
}

template <bool NORM>
__global__ void k_nchw_to_nhwc16_v(__nv_bfloat16 *dst, const float *src, int C, int Cp, int H, int W, int pt, int pl,
                                   int Wp, conv_norm nm, int img)
{
    __shared__ float tile[VT_C][VT_P + 1];
    int HW = H * W, p0 = blockIdx.x * VT_P, c0 = blockIdx.y * VT_C, t = threadIdx.x;
    int r = t >> 3, q = (t & 7) * 4;
    for (int half = 0; half < 2; half++) {
        int cl = r + 32 * half, c = c0 + cl;
        float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (c < C && p0 + q < HW) {
            v = *reinterpret_cast<const float4 *>(src + (size_t)c * HW + p0 + q);
            if (NORM) {
                int g = img * nm.groups + c / nm.cpg;
                float mu = nm.mean[g], rs = nm.rstd[g], wc = nm.w ? nm.w[c] : 1.0f, bc = nm.b ? nm.b[c] : 0.0f;
                v.x = conv_norm_one(nm, v.x, mu, rs, wc, bc), v.y = conv_norm_one(nm, v.y, mu, rs, wc, bc);
                v.z = conv_norm_one(nm, v.z, mu, rs, wc, bc), v.w = conv_norm_one(nm, v.w, mu, rs, wc, bc);
            }
        }
        tile[cl][q] = v.x, tile[cl][q + 1] = v.y, tile[cl][q + 2] = v.z, tile[cl][q + 3] = v.w;
    }
    __syncthreads();
    int lane = t & 31, c = c0 + 2 * lane; /* Cp is even: c < Cp means c + 1 < Cp */
    if (c >= Cp)
        return;
    for (int k = t >> 5; k < VT_P; k += 8) {
        int p = p0 + k;
        if (p >= HW)
            break;
        int y = p / W, x = p - y * W;
        *reinterpret_cast<__nv_bfloat162 *>(dst + ((size_t)(y + pt) * Wp + x + pl) * Cp + c) =
            __floats2bfloat162_rn(tile[2 * lane][k], tile[2 * lane + 1][k]);
    }
}

/* zeros in the ring of dst [Hp, Wp, Cp] bf16 around the image [H, W] at
 * (pt, pl): the rows above and below, then the columns left and right */
__global__ void k_nhwc16_border(__nv_bfloat16 *dst, int Cp, int H, int W, int pt, int pl, int Hp, int Wp)
{
    int rows = (Hp - H) * Wp, side = Wp - W, cp2 = Cp / 2;
    size_t total = ((size_t)rows + (size_t)H * side) * cp2;
    CU_FOR(i, total)
    {
        int b = (int)(i / cp2), c2 = (int)(i % cp2), y, x;
        if (b < rows) {
            int rr = b / Wp;
            x = b % Wp;
            y = rr < pt ? rr : rr + H;
        } else {
            int s = b - rows, cc = s % side;
            y = pt + s / side;
            x = cc < pl ? cc : cc + W;
        }
        reinterpret_cast<uint32_t *>(dst)[((size_t)y * Wp + x) * cp2 + c2] = 0u;
    }
}

/* C even as well */
__global__ void k_nhwc16_to_nchw_v(float *dst, const __nv_bfloat16 *src, const float *bias, const float *res, int C,
                                   int HW)
{
    __shared__ float tile[VT_C][VT_P + 1];
    int p0 = blockIdx.x * VT_P, c0 = blockIdx.y * VT_C, t = threadIdx.x, lane = t & 31;
    for (int k = t >> 5; k < VT_P; k += 8) {
        int p = p0 + k, c = c0 + 2 * lane;
        float2 v = make_float2(0.0f, 0.0f);
        if (p < HW && c < C)
            v = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(src + (size_t)p * C + c));
        tile[2 * lane][k] = v.x, tile[2 * lane + 1][k] = v.y;
    }
    __syncthreads();
    int r = t >> 3, q = (t & 7) * 4;
    for (int half = 0; half < 2; half++) {
        int cl = r + 32 * half, c = c0 + cl, p = p0 + q;
        if (c >= C || p >= HW)
            continue;
        float bb = bias ? bias[c] : 0.0f;
        float4 o = make_float4(tile[cl][q] + bb, tile[cl][q + 1] + bb, tile[cl][q + 2] + bb, tile[cl][q + 3] + bb);
        size_t at = (size_t)c * HW + p;
        if (res) {
            float4 rv = *reinterpret_cast<const float4 *>(res + at);
            o.x += rv.x, o.y += rv.y, o.z += rv.z, o.w += rv.w;
        }
        *reinterpret_cast<float4 *>(dst + at) = o;
    }
}

static bool al16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* w [co, ci, kh, kw] fp32 into [co, kh, kw, cip] bf16, zero for c >= ci */
__global__ void k_w_to_krsc16(__nv_bfloat16 *dst, const float *w, int ci, int cip, int kh, int kw, size_t total)
{
    CU_FOR(t, total)
    {
        int c = (int)(t % cip);
        size_t r = t / cip;
        int x = (int)(r % kw), y = (int)(r / kw % kh);
        size_t o = r / kw / kh;
        dst[t] = c < ci ? __float2bfloat16_rn(w[((o * ci + c) * kh + y) * kw + x]) : __float2bfloat16_rn(0.0f);
    }
}

/* CONV_BF16: one image a call, bf16 NHWC on the tensor cores. Input
 * channels are padded with zeros to a multiple of 8 (the tensor-core
 * kernels' alignment: FLUX's first convolution has 3; unpadded, cuDNN fell
 * back to a kernel 6x slower than the 128-channel ones at 1024²). With nm
 * the input is normalized into the copy; res is added to the output. */
static void conv_nhwc16(float *out, const float *in, const float *w, const float *b, int n, int co, int ci, int h,
                        int wd, int kh, int kw, int stride, int pad_t, int pad_l, int pad_b, int pad_r,
                        const conv_norm *nm, const float *res)
{
    int hp = h + pad_t + pad_b, wp = wd + pad_l + pad_r, cip = (ci + 7) / 8 * 8;
    conv_geom g = conv_geom_of(cip, hp, wp, kh, kw, stride, 0, 0, 0, 0);
    size_t xs = (size_t)cip * hp * wp, ys = (size_t)co * g.ho * g.wo, wn = (size_t)co * cip * kh * kw;
    __nv_bfloat16 *x16 = (__nv_bfloat16 *)cuda_scratch_slot(CUDA_SCRATCH_GEMM_A, xs * 2 + 16);
    __nv_bfloat16 *w16 = (__nv_bfloat16 *)cuda_scratch_slot(CUDA_SCRATCH_GEMM_B, wn * 2 + 16);
    __nv_bfloat16 *y16 = (__nv_bfloat16 *)cuda_scratch_slot(CUDA_SCRATCH_C, ys * 2 + 16);
    k_w_to_krsc16<<<cuda_blocks(wn), CU_THREADS, 0, cuda_stream>>>(w16, w, ci, cip, kh, kw, wn);
    CU_LAUNCHED();
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NHWC, CUDNN_DATA_BFLOAT16, 1, cip, hp, wp));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(fd, CUDNN_DATA_BFLOAT16, CUDNN_TENSOR_NHWC, co, cip, kh, kw));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(cd, 0, 0, stride, stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                                CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionMathType(cd, CUDNN_TENSOR_OP_MATH));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NHWC, CUDNN_DATA_BFLOAT16, 1, co, g.ho, g.wo));
    int key[11] = {1, cip, hp, wp, co, kh, kw, stride, 0, (int)CUDNN_TENSOR_OP_MATH, 1};
    const conv_algo *A = conv_pick(key, CUDNN_TENSOR_OP_MATH);
    void *ws = A->ws ? cuda_scratch((A->ws + 3) / 4) : NULL;
    const float one = 1.0f, zero = 0.0f;
    conv_norm plain = {};
    dim3 blk(32, 8);
    int hwo = g.ho * g.wo;
    dim3 gin((unsigned)((hp * wp + 31) / 32), (unsigned)((cip + 31) / 32));
    dim3 gout((unsigned)((hwo + 31) / 32), (unsigned)((co + 31) / 32));
    /* the tiled kernels where every image's planes start 16-byte aligned */
    bool vin = (size_t)h * wd % 4 == 0 && al16(in), vout = hwo % 4 == 0 && co % 2 == 0 && al16(out) && (!res || al16(res));
    dim3 vgin((unsigned)((h * wd + VT_P - 1) / VT_P), (unsigned)((cip + VT_C - 1) / VT_C));
    dim3 vgout((unsigned)((hwo + VT_P - 1) / VT_P), (unsigned)((co + VT_C - 1) / VT_C));
    size_t ring = ((size_t)(hp - h) * wp + (size_t)h * (wp - wd)) * (cip / 2);
    for (int i = 0; i < n; i++) {
        const float *xi = in + (size_t)i * ci * h * wd;
        if (vin) {
            if (ring) {
                k_nhwc16_border<<<cuda_blocks(ring), CU_THREADS, 0, cuda_stream>>>(x16, cip, h, wd, pad_t, pad_l, hp,
                                                                                    wp);
                CU_LAUNCHED();
            }
            if (nm)
                k_nchw_to_nhwc16_v<true><<<vgin, 256, 0, cuda_stream>>>(x16, xi, ci, cip, h, wd, pad_t, pad_l, wp, *nm,
                                                                        i);
            else
                k_nchw_to_nhwc16_v<false><<<vgin, 256, 0, cuda_stream>>>(x16, xi, ci, cip, h, wd, pad_t, pad_l, wp,
                                                                         plain, i);
        } else if (nm) {
            k_nchw_to_nhwc16<true><<<gin, blk, 0, cuda_stream>>>(x16, xi, ci, cip, h, wd, pad_t, pad_l, hp, wp, *nm, i);
        } else {
            k_nchw_to_nhwc16<false><<<gin, blk, 0, cuda_stream>>>(x16, xi, ci, cip, h, wd, pad_t, pad_l, hp, wp, plain,
                                                                  i);
        }
        CU_LAUNCHED();
        CUDNN_CHECK(cudnnConvolutionForward(dnn, &one, xd, x16, fd, w16, cd, A->algo, ws, A->ws, &zero, yd, y16));
        const float *ri = res ? res + (size_t)i * ys : NULL;
        if (vout)
            k_nhwc16_to_nchw_v<<<vgout, 256, 0, cuda_stream>>>(out + (size_t)i * ys, y16, b, ri, co, hwo);
        else
            k_nhwc16_to_nchw<<<gout, blk, 0, cuda_stream>>>(out + (size_t)i * ys, y16, b, ri, co, hwo);
        CU_LAUNCHED();
    }
}

void cuda_conv2d_fwd(float *out, const float *in, const float *w, const float *b, int n, int ci, int h, int wd, int co,
                     int kh, int kw, int stride, int pad_t, int pad_l, int pad_b, int pad_r)
{
    conv_geom g = conv_geom_of(ci, h, wd, kh, kw, stride, pad_t, pad_l, pad_b, pad_r);
    int K = ci * kh * kw, hwo = g.ho * g.wo;
    if (n <= 0 || co <= 0 || hwo <= 0)
        return;
    if (kh == 1 && kw == 1 && stride == 1 && !pad_t && !pad_l && !pad_b && !pad_r) {
        /* a 1×1 convolution is a product: out[co, hw] = W[co, ci] · in[ci, hw],
         * an image a call (cuDNN's 1×1 choices ran at a tenth of this in bf16) */
        if (b)
            conv_bias(out, b, n, co, hwo);
        for (int i = 0; i < n; i++)
            cuda_gemm_rm('n', 'n', co, hwo, ci, 1.0f, w, ci, in + (size_t)i * ci * hwo, hwo, b ? 1.0f : 0.0f,
                         out + (size_t)i * co * hwo, hwo);
        return;
    }
    int pads_ok = pad_t >= 0 && pad_l >= 0 && pad_b >= 0 && pad_r >= 0;
    if (K <= SMALL_K && stride == 1 && pads_ok && (size_t)co * K * sizeof(float) <= 48 * 1024) {
        unsigned gx = (unsigned)((hwo + CU_THREADS - 1) / CU_THREADS);
        dim3 grid(gx > 1024 ? 1024 : gx, (unsigned)n);
        k_conv_small<<<grid, CU_THREADS, (size_t)co * K * sizeof(float), cuda_stream>>>(
            out, in, w, b, ci, h, wd, co, kh, kw, pad_t, pad_l, g.ho, g.wo);
        CU_LAUNCHED();
        return;
    }
    if (pads_ok && conv_mode() == CONV_BF16 && dnn_ready()) {
        conv_nhwc16(out, in, w, b, n, co, ci, h, wd, kh, kw, stride, pad_t, pad_l, pad_b, pad_r, NULL, NULL);
        return;
    }
    if (pad_t == pad_b && pad_l == pad_r && dnn_ready()) {
        conv_cudnn(out, in, w, b, n, g, co, pad_t, pad_l);
        return;
    }
    if (pads_ok && dnn_ready()) {
        /* one-sided padding (Downsample): each image into a zero-padded copy,
         * then cuDNN without padding */
        int hp = h + pad_t + pad_b, wp = wd + pad_l + pad_r;
        size_t np_ = (size_t)ci * hp * wp;
        float *pad = (float *)cuda_scratch_slot(CUDA_SCRATCH_GEMM_A, np_ * sizeof(float));
        conv_geom gp = conv_geom_of(ci, hp, wp, kh, kw, stride, 0, 0, 0, 0);
        for (int i = 0; i < n; i++) {
            k_pad2d<<<cuda_blocks(np_), CU_THREADS, 0, cuda_stream>>>(pad, in + (size_t)i * ci * h * wd, ci, h, wd,
                                                                       pad_t, pad_l, hp, wp, np_);
            CU_LAUNCHED();
            conv_cudnn(out + (size_t)i * co * hwo, pad, w, b, 1, gp, co, 0, 0);
        }
        return;
    }
    if (b)
        conv_bias(out, b, n, co, hwo);
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

/* GroupNorm, swish, the convolution and the residual in one pass over the
 * input and one over the output, in bf16 mode: the statistics, then each
 * image normalized straight into the bf16 NHWC copy cuDNN reads and the
 * residual added on the way back to fp32 NCHW. That drops the normalized
 * fp32 tensor (written, read by silu, written, read by the copy) and the
 * separate residual pass. Elsewhere (fp32 mode, few taps, no cuDNN) the ops
 * in turn, the normalized input in a scratch slot. */
void cuda_gn_conv2d_fwd(float *out, float *mean, float *rstd, const float *in, const float *gw, const float *gb,
                        int groups, float eps, int act, const float *w, const float *b, const float *res, int n, int ci,
                        int h, int wd, int co, int k)
{
    if (n <= 0 || ci <= 0 || co <= 0 || h <= 0 || wd <= 0 || groups <= 0)
        return;
    int pad = k / 2;
    size_t hw = (size_t)h * wd, ng = (size_t)n * groups, m = (size_t)n * ci * hw;
    bool fused = k > 1 && ci * k * k > SMALL_K && conv_mode() == CONV_BF16 && dnn_ready();
    /* the slot holds the normalized input where the ops run in turn, then
     * the statistics when the caller keeps none (after the input: the
     * normalization must not write over what it reads) */
    size_t tn = fused ? 0 : m;
    float *t = (float *)cuda_scratch_slot(CUDA_SCRATCH_NORM, (tn + 2 * ng) * sizeof(float));
    float *mu = mean ? mean : t + tn, *rs = rstd ? rstd : t + tn + ng;
    if (fused) {
        cuda_gn_stats(mu, rs, in, n, ci, (int)hw, groups, eps);
        conv_norm nm = {mu, rs, gw, gb, groups, ci / groups, act};
        conv_nhwc16(out, in, w, b, n, co, ci, h, wd, k, k, 1, pad, pad, pad, pad, &nm, res);
        return;
    }
    cuda_groupnorm_fwd(t, mu, rs, in, gw, gb, n, ci, (int)hw, groups, eps);
    if (act)
        cuda_silu_fwd(t, t, m);
    cuda_conv2d_fwd(out, t, w, b, n, ci, h, wd, co, k, k, 1, pad, pad, pad, pad);
    if (res)
        cuda_axpy(out, 1.0f, res, (size_t)n * co * hw);
}

void cuda_conv2d_bwd(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int n,
                     int ci, int h, int wd, int co, int kh, int kw, int stride, int pad_t, int pad_l, int pad_b,
                     int pad_r)
{
    conv_geom g = conv_geom_of(ci, h, wd, kh, kw, stride, pad_t, pad_l, pad_b, pad_r);
    int K = ci * kh * kw, hwo = g.ho * g.wo;
    if (n <= 0 || co <= 0 || hwo <= 0)
        return;
    if (cuda_grad_write_on && dw) /* grad_write: the products below add onto zeros, as the CPU's */
        CU_CHECK(cudaMemsetAsync(dw, 0, (size_t)co * K * sizeof(float), cuda_stream));
    if (db) {
        k_conv_db<<<co, 256, 0, cuda_stream>>>(db, dout, n, co, hwo, cuda_grad_write_on);
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
