/* cpu_layout.c — the forward-only ops of the frozen autoencoder
 * (models/ae.c): nearest-neighbour upsampling, an elementwise affine map,
 * the diagonal Gaussian sample of the latent, and float tokens back to u8
 * pixels. No backward: nothing upstream of the autoencoder trains. */
#include <math.h>

#include "cpu.h"

void cpu_upsample2x(float *out, const float *in, int np, int h, int w)
{
    int w2 = 2 * w;
#pragma omp parallel for collapse(2) if ((size_t)np * h * w > CPU_OMP_MIN)
    for (int p = 0; p < np; p++)
        for (int y = 0; y < h; y++) {
            const float *src = in + ((size_t)p * h + y) * w;
            float *dst = out + ((size_t)p * 2 * h + 2 * y) * w2;
            for (int x = 0; x < w; x++)
                dst[2 * x] = dst[2 * x + 1] = src[x];
            for (int x = 0; x < w2; x++)
                dst[w2 + x] = dst[x];
        }
}

void cpu_affine(float *out, const float *in, float a, float b, size_t m)
{
#pragma omp parallel for if (m > CPU_OMP_MIN)
    for (size_t i = 0; i < m; i++)
        out[i] = a * in[i] + b;
}

void cpu_gauss_sample(float *z, const float *mean, const float *logvar, const float *eps, size_t m)
{
#pragma omp parallel for if (m > CPU_OMP_MIN)
    for (size_t i = 0; i < m; i++)
        z[i] = mean[i] + expf(0.5f * logvar[i]) * eps[i];
}

void cpu_unpatchify_u8(uint8_t *img, const float *tokens, int H, int W, int C, int p)
{
    int gh = H / p, gw = W / p;
    size_t feat = (size_t)p * p * C;
#pragma omp parallel for if ((size_t)H * W * C > CPU_OMP_MIN)
    for (int i = 0; i < gh; i++)
        for (int j = 0; j < gw; j++) {
            const float *tok = tokens + ((size_t)i * gw + j) * feat;
            for (int py = 0; py < p; py++)
                for (int px = 0; px < p; px++) {
                    uint8_t *pix = img + ((size_t)(i * p + py) * W + (j * p + px)) * C;
                    for (int c = 0; c < C; c++) {
                        float v = tok[(py * p + px) * C + c] * 0.5f + 0.5f;
                        v = v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f; /* NaN -> 0 */
                        pix[c] = (uint8_t)(v * 255.0f);
                    }
                }
        }
}
