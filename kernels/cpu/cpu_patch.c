/* cpu_patch.c — images and latents to patch tokens and back. Token
 * i·(W/p) + j is the patch at grid row i, column j; its feature
 * (py·p + px)·C + c is channel c of pixel (p·i + py, p·j + px): channel
 * fastest, as BAGEL's einsum chpwq→hwpqc (bagel-reference.md §1.8). */
#include "cpu.h"

/* u8 [H, W, C] -> (x/255 − 0.5)/0.5, in fp32 the way ToTensor and Normalize
 * compute it */
void cpu_patchify_u8(float *out, const uint8_t *img, int H, int W, int C, int p)
{
    int gh = H / p, gw = W / p;
    size_t feat = (size_t)p * p * C;
#pragma omp parallel for if ((size_t)H * W * C > CPU_OMP_MIN)
    for (int i = 0; i < gh; i++)
        for (int j = 0; j < gw; j++) {
            float *tok = out + ((size_t)i * gw + j) * feat;
            for (int py = 0; py < p; py++)
                for (int px = 0; px < p; px++) {
                    const uint8_t *pix = img + ((size_t)(i * p + py) * W + (j * p + px)) * C;
                    for (int c = 0; c < C; c++)
                        tok[(py * p + px) * C + c] = ((float)pix[c] / 255.0f - 0.5f) / 0.5f;
                }
        }
}

void cpu_patchify_chw(float *out, const float *z, int C, int H, int W, int p)
{
    int gh = H / p, gw = W / p;
    size_t feat = (size_t)p * p * C;
#pragma omp parallel for if ((size_t)H * W * C > CPU_OMP_MIN)
    for (int i = 0; i < gh; i++)
        for (int j = 0; j < gw; j++) {
            float *tok = out + ((size_t)i * gw + j) * feat;
            for (int py = 0; py < p; py++)
                for (int px = 0; px < p; px++)
                    for (int c = 0; c < C; c++)
                        tok[(py * p + px) * C + c] = z[((size_t)c * H + i * p + py) * W + j * p + px];
        }
}

void cpu_unpatchify_chw(float *z, const float *tokens, int C, int H, int W, int p)
{
    int gh = H / p, gw = W / p;
    size_t feat = (size_t)p * p * C;
#pragma omp parallel for if ((size_t)H * W * C > CPU_OMP_MIN)
    for (int i = 0; i < gh; i++)
        for (int j = 0; j < gw; j++) {
            const float *tok = tokens + ((size_t)i * gw + j) * feat;
            for (int py = 0; py < p; py++)
                for (int px = 0; px < p; px++)
                    for (int c = 0; c < C; c++)
                        z[((size_t)c * H + i * p + py) * W + j * p + px] = tok[(py * p + px) * C + c];
        }
}
