/* img.h — BAGEL's image transforms with libvips: one decode of an encoded
 * image (any format libvips reads) into the ViT and VAE inputs, u8 (H, W, 3)
 * sRGB, sized by MaxLongEdgeMinShortEdgeResize (bagel-reference.md §3.9) and
 * resampled with the cubic (a = -0.5) antialiasing filter Pillow's BICUBIC
 * uses. Not here: reading files, records, normalization to floats (the
 * trainer does that on its device).
 *
 * The caller initializes libvips once (VIPS_INIT) and should turn its
 * operation cache off (vips_cache_set_max(0)): every image is seen once.
 *
 * Library rule: functions return a status and fill err (IMG_ERR_LEN); they
 * never print and never exit. */
#ifndef BAGEL_IMG_H
#define BAGEL_IMG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMG_ERR_LEN 256

/* One MaxLongEdgeMinShortEdgeResize. */
typedef struct {
    int max_edge;       // longest output edge (1024 VAE, 980 ViT)
    int min_edge;       // shortest edge an image is scaled up to (512 VAE, 378 ViT)
    int stride;         // both output edges are multiples of it (16 VAE, 14 ViT)
    int64_t max_pixels; // output area limit, before the img_num division
} img_rule_t;

typedef struct {
    img_rule_t vit, vae;
    int64_t max_input_pixels; // header width × height above this: refused before decoding
    int timeout_ms;           // per image, 0: none
    bool shrink_on_load;      // JPEG DCT-scaled decode (by 2, 4 or 8) where the margin allows
    double shrink_margin;     // shrunk decode >= margin × every output, per axis (default 1)
    bool simd;                // AVX2 resampling, SSE2 PNG unfiltering where the CPU has them (same bytes as without)
    bool avx512;              // with simd: AVX-512 resampling where the CPU has it (same bytes as AVX2)
    bool png_fast_path;       // plain 8-bit RGB/RGBA PNGs inflated by libdeflate, not libvips (png.h)
    bool inline_eval;         // run libvips' pipelines on the calling thread, not its thread pool (one thread)
} img_opts_t;

void img_opts_default(img_opts_t *o);

/* Output size of a w×h image under rule r, with img_num images sharing its
 * max_pixels (1: the default). Exactly the reference's float arithmetic and
 * Python's round-half-to-even. 0, or -1 when w or h is not positive. */
int img_target_size(const img_rule_t *r, int w, int h, int img_num, int *out_w, int *out_h);

/* One resized image: (h, w, 3) u8, rows packed; release with img_out_free. */
typedef struct {
    uint8_t *data; // (h, w, 3) u8
    int w, h;
    int shrunk; // the decode's shrink-on-load factor (1: decoded at full size)
} img_out_t;

/* What to make from one decode: vit_num / vae_num is the img_num of that
 * output (0: do not make it). */
typedef struct {
    int vit_num, vae_num;
} img_want_t;

/* Decode buf[0, len) and make the wanted outputs. 0; -1 with err saying
 * what is wrong with the image (one line, no path). On error no output is
 * allocated; on success the caller releases each made output with
 * img_out_free. */
int img_decode(const void *buf, size_t len, const img_opts_t *o, img_want_t want, img_out_t *vit, img_out_t *vae,
               char *err);

void img_out_free(img_out_t *o);

#endif
