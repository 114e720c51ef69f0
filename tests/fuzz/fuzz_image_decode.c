/* fuzz_image_decode — libFuzzer target for bagel-image's decode path: any
 * bytes through img_decode with the stage's loader options (sequential
 * access, fail on truncation, shrink-on-load) and both outputs. Either both
 * outputs come back with the sizes the rule gives for some input, or an error
 * that is one bounded printable line; nothing leaks (LeakSanitizer). The
 * input's length picks AVX-512, AVX2 or portable resampling (SSE2 or
 * portable PNG unfiltering) and whether plain PNGs take the libdeflate path,
 * so every variant meets the same bytes. Small rules and a small pixel limit
 * keep each run fast. */
#include "../../stages/image/img.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    if (VIPS_INIT((*argv)[0]))
        abort();
    vips_concurrency_set(1);
    vips_cache_set_max(0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    img_opts_t o;
    img_opts_default(&o);
    o.vit = (img_rule_t){.max_edge = 70, .min_edge = 28, .stride = 14, .max_pixels = 70 * 70};
    o.vae = (img_rule_t){.max_edge = 64, .min_edge = 32, .stride = 16, .max_pixels = 64 * 64};
    o.max_input_pixels = 1 << 20;
    o.timeout_ms = 2000;
    o.simd = size & 2; // every resampler and unfilter, and the PNG fast path and libvips' PNG loader
    o.png_fast_path = size & 4;
    o.avx512 = size & 8;
    img_out_t vit, vae;
    char err[IMG_ERR_LEN];
    img_want_t want = {.vit_num = 1 + (size & 1), .vae_num = 1};
    if (img_decode(data, size, &o, want, &vit, &vae, err) == 0) {
        if (!vit.data || !vae.data || vit.w % 14 || vit.h % 14 || vae.w % 16 || vae.h % 16 || vit.w > 70 ||
            vit.h > 70 || vae.w > 64 || vae.h > 64)
            abort();
        img_out_free(&vit);
        img_out_free(&vae);
        return 0;
    }
    size_t n = strnlen(err, IMG_ERR_LEN);
    if (n == 0 || n == IMG_ERR_LEN || vit.data || vae.data)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)err[i] < 0x20 || (unsigned char)err[i] >= 0x7f)
            abort(); // one printable line
    return 0;
}
