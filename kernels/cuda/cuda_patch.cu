/* cuda_patch.cu — images and latents to patch tokens and back, one thread
 * per token element (layout in kernels/cpu/cpu_patch.c): token
 * i·(W/p) + j, feature (py·p + px)·C + c is channel c of pixel
 * (p·i + py, p·j + px). */
#include "cuda_internal.h"

/* token element t -> its pixel: grid cell (i, j), offset (py, px), channel */
struct patch_ix {
    int i, j, py, px, c;
};

__device__ static inline patch_ix patch_of(size_t t, int gw, int p, int C)
{
    size_t feat = (size_t)p * p * C, tok = t / feat;
    int f = (int)(t % feat);
    patch_ix x;
    x.i = (int)(tok / gw), x.j = (int)(tok % gw);
    x.c = f % C, x.px = f / C % p, x.py = f / C / p;
    return x;
}

__global__ void k_patchify_u8(float *out, const uint8_t *img, int W, int C, int p, int gw, size_t total)
{
    CU_FOR(t, total)
    {
        patch_ix x = patch_of(t, gw, p, C);
        uint8_t v = img[((size_t)(x.i * p + x.py) * W + (x.j * p + x.px)) * C + x.c];
        out[t] = ((float)v / 255.0f - 0.5f) / 0.5f;
    }
}

template <bool TO_TOKENS>
__global__ void k_patch_chw(float *tok, float *z, int H, int W, int C, int p, int gw, size_t total)
{
    CU_FOR(t, total)
    {
        patch_ix x = patch_of(t, gw, p, C);
        size_t zi = ((size_t)x.c * H + x.i * p + x.py) * W + x.j * p + x.px;
        if (TO_TOKENS)
            tok[t] = z[zi];
        else
            z[zi] = tok[t];
    }
}

static size_t patch_total(int H, int W, int C, int p) { return (size_t)(H / p) * (W / p) * p * p * C; }

void cuda_patchify_u8(float *out, const uint8_t *img, int H, int W, int C, int p)
{
    if (p <= 0 || C <= 0 || H / p <= 0 || W / p <= 0)
        return;
    size_t total = patch_total(H, W, C, p);
    k_patchify_u8<<<cuda_blocks(total), CU_THREADS, 0, cuda_stream>>>(out, img, W, C, p, W / p, total);
    CU_LAUNCHED();
}

void cuda_patchify_chw(float *out, const float *z, int C, int H, int W, int p)
{
    if (p <= 0 || C <= 0 || H / p <= 0 || W / p <= 0)
        return;
    size_t total = patch_total(H, W, C, p);
    k_patch_chw<true><<<cuda_blocks(total), CU_THREADS, 0, cuda_stream>>>(out, (float *)z, H, W, C, p, W / p, total);
    CU_LAUNCHED();
}

void cuda_unpatchify_chw(float *z, const float *tokens, int C, int H, int W, int p)
{
    if (p <= 0 || C <= 0 || H / p <= 0 || W / p <= 0)
        return;
    size_t total = patch_total(H, W, C, p);
    k_patch_chw<false><<<cuda_blocks(total), CU_THREADS, 0, cuda_stream>>>((float *)tokens, z, H, W, C, p, W / p,
                                                                           total);
    CU_LAUNCHED();
}
