/* cuda_conv.cu — 2-D convolution NCHW for the autoencoder, as im2col +
 * sgemm (the CPU's algorithm, kernels/cpu/cpu_conv.c).
 *
 * Why not cuDNN: FLUX's Downsample pads right and bottom only, which cuDNN's
 * symmetric padding cannot express without an extra padded copy, and its
 * fp32 algorithms may pick TF32 tensor cores unless every descriptor is
 * pinned; im2col keeps one code path for every padding and plain fp32 math,
 * at the cost of the column buffer. That buffer is the backend's reusable
 * scratch (cuda_scratch), bounded to COL_FLOATS by chunking output pixels.
 *
 * col[kk][pp] = in[c][iy][ix] for kk = (c·kh + ky)·kw + kx; the backward's
 * col2im adds dcol back with atomicAdd (taps of a stride-1 conv overlap). */
#include "cuda_internal.h"

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

void cuda_conv2d_fwd(float *out, const float *in, const float *w, const float *b, int n, int ci, int h, int wd, int co,
                     int kh, int kw, int stride, int pad_t, int pad_l, int pad_b, int pad_r)
{
    conv_geom g = conv_geom_of(ci, h, wd, kh, kw, stride, pad_t, pad_l, pad_b, pad_r);
    int K = ci * kh * kw, hwo = g.ho * g.wo;
    if (n <= 0 || co <= 0 || hwo <= 0)
        return;
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
