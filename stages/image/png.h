/* png.h — decode the plainest PNGs without libvips: 8-bit RGB or RGBA, not
 * interlaced, no transparency, colour profile or EXIF chunk, every CRC right,
 * the zlib stream exactly the image's length. RGBA is composited over white
 * with Pillow's rounding (pil_img2rgb's paste). Every other file is declined,
 * not rejected: the caller decodes it with libvips. */
#ifndef BAGEL_IMG_PNG_H
#define BAGEL_IMG_PNG_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest image the fast path takes: it holds the whole inflated stream and
 * the output at once, where libvips streams. */
#define IMG_PNG_MAX_PIXELS (64ll << 20)

typedef struct {
    uint8_t *data; // (h, w, 3) u8, rows packed; release with g_free
    int w, h;
} img_png_t;

/* 0: out holds the image; 1: declined (not such a PNG, over max_pixels or
 * IMG_PNG_MAX_PIXELS, anything unusual, out of memory), out empty. simd:
 * SSE2 unfiltering on x86-64 (the same bytes as without; false forces the
 * portable code, which the tests also run). */
int img_png_decode(const uint8_t *buf, size_t len, int64_t max_pixels, bool simd, img_png_t *out);

#endif
