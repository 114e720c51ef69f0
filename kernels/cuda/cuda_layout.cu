/* cuda_layout.cu — the forward-only ops of the frozen autoencoder
 * (kernels/cpu/cpu_layout.c): nearest-neighbour ×2 upsampling, an
 * elementwise affine map (in place allowed), the diagonal Gaussian sample,
 * and float tokens back to u8 pixels. */
#include "cuda_internal.h"

/* one thread per output element */
__global__ void k_upsample2x(float *out, const float *in, int h, int w, size_t total)
{
    CU_FOR(t, total)
    {
        int w2 = 2 * w, h2 = 2 * h;
        int x = (int)(t % w2), y = (int)(t / w2 % h2);
        size_t p = t / ((size_t)w2 * h2);
        out[t] = in[(p * h + y / 2) * w + x / 2];
    }
}

void cuda_upsample2x(float *out, const float *in, int np, int h, int w)
{
    size_t total = (size_t)(np > 0 ? np : 0) * (h > 0 ? h : 0) * (w > 0 ? w : 0) * 4;
    if (!total)
        return;
    k_upsample2x<<<cuda_blocks(total), CU_THREADS, 0, cuda_stream>>>(out, in, h, w, total);
    CU_LAUNCHED();
}

__global__ void k_affine(float *out, const float *in, float a, float b, size_t m) { CU_FOR(i, m) out[i] = a * in[i] + b; }

void cuda_affine(float *out, const float *in, float a, float b, size_t m)
{
    if (!m)
        return;
    k_affine<<<cuda_blocks(m), CU_THREADS, 0, cuda_stream>>>(out, in, a, b, m);
    CU_LAUNCHED();
}

__global__ void k_gauss_sample(float *z, const float *mean, const float *logvar, const float *eps, size_t m)
{
    CU_FOR(i, m) z[i] = mean[i] + expf(0.5f * logvar[i]) * eps[i];
}

void cuda_gauss_sample(float *z, const float *mean, const float *logvar, const float *eps, size_t m)
{
    if (!m)
        return;
    k_gauss_sample<<<cuda_blocks(m), CU_THREADS, 0, cuda_stream>>>(z, mean, logvar, eps, m);
    CU_LAUNCHED();
}

/* one thread per pixel byte of the whole patches (a ragged edge of an image
 * that is not a multiple of p is left as it is, as the CPU leaves it); the
 * clamp is written so that NaN goes to 0 */
__global__ void k_unpatchify_u8(uint8_t *img, const float *tokens, int W, int C, int p, int gw, size_t total)
{
    CU_FOR(t, total)
    {
        int c = (int)(t % C), wr = gw * p;
        size_t pix = t / C;
        int x = (int)(pix % wr), y = (int)(pix / wr);
        int i = y / p, py = y % p, j = x / p, px = x % p;
        size_t feat = (size_t)p * p * C;
        float v = tokens[((size_t)i * gw + j) * feat + (py * p + px) * C + c] * 0.5f + 0.5f;
        v = v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f;
        img[((size_t)y * W + x) * C + c] = (uint8_t)(v * 255.0f);
    }
}

void cuda_unpatchify_u8(uint8_t *img, const float *tokens, int H, int W, int C, int p)
{
    if (p <= 0 || C <= 0 || H / p <= 0 || W / p <= 0)
        return;
    int gh = H / p, gw = W / p;
    size_t total = (size_t)gh * p * gw * p * C;
    k_unpatchify_u8<<<cuda_blocks(total), CU_THREADS, 0, cuda_stream>>>(img, tokens, W, C, p, gw, total);
    CU_LAUNCHED();
}
