/* png.c — a fast path for the plainest PNGs (png.h).
 *
 * Why: on a PNG the decode is nearly all of the stage's time, and nearly all
 * of the decode is zlib's inflate (libvips 8.14 in Debian reads PNG through
 * libpng and zlib, as Pillow does, so neither can be faster than the other
 * there). libdeflate inflates the same streams about twice as fast; it needs
 * the whole stream at once, which the stage has (the file is read into
 * memory). Only files whose meaning is unambiguous take this path: anything
 * else — another bit depth or colour type, interlacing, a transparency,
 * colour profile or EXIF chunk, an unknown critical chunk, a bad CRC, a
 * stream of the wrong length — goes to libvips, which decides and words the
 * error. So the fast path never rejects a file; it only declines. */
#include "png.h"

#include <glib.h>

#include <libdeflate.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline int paeth(int a, int b, int c)
{
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/* Undo one row's filter in place: cur (n bytes), prev the row above
 * unfiltered (NULL for the first row), bpp bytes per pixel. */
static int unfilter(int type, uint8_t *cur, const uint8_t *prev, size_t n, int bpp)
{
    switch (type) {
    case 0: break;
    case 1:
        for (size_t i = bpp; i < n; i++)
            cur[i] = (uint8_t)(cur[i] + cur[i - bpp]);
        break;
    case 2:
        if (prev)
            for (size_t i = 0; i < n; i++)
                cur[i] = (uint8_t)(cur[i] + prev[i]);
        break;
    case 3:
        for (size_t i = 0; i < n; i++) {
            int left = i >= (size_t)bpp ? cur[i - bpp] : 0, up = prev ? prev[i] : 0;
            cur[i] = (uint8_t)(cur[i] + ((left + up) >> 1));
        }
        break;
    case 4:
        for (size_t i = 0; i < n; i++) {
            int left = i >= (size_t)bpp ? cur[i - bpp] : 0, up = prev ? prev[i] : 0;
            int ul = prev && i >= (size_t)bpp ? prev[i - bpp] : 0;
            cur[i] = (uint8_t)(cur[i] + paeth(left, up, ul));
        }
        break;
    default: return -1;
    }
    return 0;
}

/* Pillow's DIV255 (ImagingPaste's blend): (v + 128 + ((v + 128) >> 8)) >> 8. */
static inline uint8_t div255(unsigned v)
{
    v += 128;
    return (uint8_t)((v + (v >> 8)) >> 8);
}

int img_png_decode(const uint8_t *buf, size_t len, int64_t max_pixels, img_png_t *out)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    *out = (img_png_t){0};
    if (len < 33 || memcmp(buf, sig, 8) || be32(buf + 8) != 13 || memcmp(buf + 12, "IHDR", 4))
        return 1;
    uint32_t w = be32(buf + 16), h = be32(buf + 20);
    int depth = buf[24], ctype = buf[25];
    if (w == 0 || h == 0 || w > 1u << 24 || h > 1u << 24 || (int64_t)w * h > max_pixels ||
        (int64_t)w * h > IMG_PNG_MAX_PIXELS || depth != 8 || (ctype != 2 && ctype != 6) || buf[26] || buf[27] ||
        buf[28])
        return 1;
    int bpp = ctype == 2 ? 3 : 4;
    // the chunks: CRCs checked (as libpng does), IDATs counted, anything that
    // changes the decoded pixels sends the file to libvips
    size_t pos = 8, zlen = 0;
    int n_idat_runs = 0;
    bool in_idat = false, end = false;
    while (!end) {
        if (len - pos < 12)
            return 1;
        uint32_t n = be32(buf + pos);
        const uint8_t *type = buf + pos + 4;
        if (n > len - pos - 12)
            return 1;
        if (libdeflate_crc32(0, type, (size_t)n + 4) != be32(buf + pos + 8 + n))
            return 1;
        bool idat = !memcmp(type, "IDAT", 4);
        if (idat) {
            n_idat_runs += !in_idat;
            zlen += n;
        } else if (!memcmp(type, "IEND", 4)) {
            end = true;
        } else if (pos == 8) {
            // IHDR, checked above
        } else if (!memcmp(type, "tRNS", 4) || !memcmp(type, "iCCP", 4) || !memcmp(type, "eXIf", 4) ||
                   !(type[0] & 0x20)) {
            return 1; // transparency, a profile, an orientation, or another critical chunk (PLTE, a second IHDR)
        }
        in_idat = idat;
        pos += 12 + (size_t)n;
    }
    if (n_idat_runs != 1 || zlen == 0)
        return 1; // IDATs must be consecutive
    // one contiguous zlib stream: the IDAT payloads without their headers
    uint8_t *z = malloc(zlen);
    size_t rowlen = (size_t)w * bpp, rawlen = (size_t)h * (rowlen + 1);
    uint8_t *raw = malloc(rawlen), *px = g_try_malloc((size_t)w * h * 3);
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    int rc = 1;
    if (!z || !raw || !px || !d)
        goto done;
    size_t zp = 0;
    for (pos = 8; memcmp(buf + pos + 4, "IEND", 4); pos += 12 + (size_t)be32(buf + pos))
        if (!memcmp(buf + pos + 4, "IDAT", 4))
            memcpy(z + zp, buf + pos + 8, be32(buf + pos)), zp += be32(buf + pos);
    size_t got = 0;
    if (libdeflate_zlib_decompress(d, z, zlen, raw, rawlen, &got) != LIBDEFLATE_SUCCESS || got != rawlen)
        goto done;
    uint8_t *prev = NULL;
    for (uint32_t y = 0; y < h; y++) {
        uint8_t *row = raw + (size_t)y * (rowlen + 1);
        if (unfilter(row[0], row + 1, prev, rowlen, bpp))
            goto done;
        prev = row + 1;
        uint8_t *o = px + (size_t)y * w * 3;
        if (bpp == 3) {
            memcpy(o, row + 1, rowlen);
            continue;
        }
        // over white, as pil_img2rgb's paste with the alpha as mask rounds
        for (uint32_t x = 0; x < w; x++) {
            const uint8_t *p = row + 1 + 4 * (size_t)x;
            unsigned a = p[3];
            for (int c = 0; c < 3; c++)
                o[3 * x + c] = div255(255u * (255u - a) + p[c] * a);
        }
    }
    *out = (img_png_t){.data = px, .w = (int)w, .h = (int)h};
    px = NULL;
    rc = 0;
done:
    if (d)
        libdeflate_free_decompressor(d);
    free(z), free(raw), g_free(px);
    return rc;
}
