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

/* Bytes allocated past the inflated image: the SSE2 unfilter reads a 3-byte
 * pixel as 4 bytes, one past the last row. */
#define PNG_SLACK 16

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
 * unfiltered (NULL for the first row), bpp bytes per pixel. The reference
 * code: every filter type, any bpp. */
static int unfilter_c(int type, uint8_t *cur, const uint8_t *prev, size_t n, int bpp)
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

#if defined(__x86_64__) && defined(__SSE2__)
#include <emmintrin.h>
#define PNG_SSE2 1

/* The same results as unfilter_c for 3- and 4-byte pixels, with SSE2 (part
 * of x86-64, so no run-time check). Sub, Average and Paeth depend on the
 * pixel to the left, so they go one pixel at a time, each channel in a
 * 16-bit lane; Up has no such chain and goes 16 bytes at a time. A pixel is
 * loaded as 4 bytes whatever bpp is (one move; the caller leaves slack after
 * the image for the last pixel's extra byte), and the fourth lane of a 3-byte
 * pixel is never stored. */
static inline __attribute__((always_inline)) __m128i px_load(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return _mm_unpacklo_epi8(_mm_cvtsi32_si128((int)v), _mm_setzero_si128());
}

static inline __attribute__((always_inline)) void px_store(uint8_t *p, __m128i v, const int bpp)
{
    uint32_t u = (uint32_t)_mm_cvtsi128_si32(_mm_packus_epi16(v, v));
    if (bpp == 4) {
        memcpy(p, &u, 4);
    } else {
        uint16_t lo = (uint16_t)u;
        memcpy(p, &lo, 2);
        p[2] = (uint8_t)(u >> 16);
    }
}

static inline __m128i abs16(__m128i v) { return _mm_max_epi16(v, _mm_sub_epi16(_mm_setzero_si128(), v)); }

/* Sub, Average or Paeth (type 1, 3, 4) of a row that has one above; type and
 * bpp are constants where inlined, so each pair gets its own loop. */
static inline __attribute__((always_inline)) void unfilter_px_sse2(uint8_t *cur, const uint8_t *prev, size_t n,
                                                                   const int type, const int bpp)
{
    // a: the pixel to the left (unfiltered), b: above, c: above-left; 16-bit
    // lanes, so the sums below neither wrap nor saturate before the final
    // mod 256 (ff keeps the low byte)
    const __m128i ff = _mm_set1_epi16(0xff);
    __m128i a = _mm_setzero_si128(), c = _mm_setzero_si128();
    for (size_t i = 0; i < n; i += (size_t)bpp) {
        __m128i x = px_load(cur + i), b = px_load(prev + i), pred;
        if (type == 1) {
            pred = a;
        } else if (type == 3) {
            pred = _mm_srli_epi16(_mm_add_epi16(a, b), 1);
        } else {
            // Paeth: pa = |b - c|, pb = |a - c|, pc = |a + b - 2c|; a if
            // pa <= pb and pa <= pc, else b if pb <= pc, else c
            __m128i pa = abs16(_mm_sub_epi16(b, c)), pb = abs16(_mm_sub_epi16(a, c)),
                    pc = abs16(_mm_sub_epi16(_mm_add_epi16(a, b), _mm_add_epi16(c, c)));
            __m128i not_a = _mm_or_si128(_mm_cmpgt_epi16(pa, pb), _mm_cmpgt_epi16(pa, pc));
            __m128i not_b = _mm_cmpgt_epi16(pb, pc);
            __m128i bc = _mm_or_si128(_mm_and_si128(not_b, c), _mm_andnot_si128(not_b, b));
            pred = _mm_or_si128(_mm_and_si128(not_a, bc), _mm_andnot_si128(not_a, a));
        }
        a = _mm_and_si128(_mm_add_epi16(x, pred), ff);
        c = b;
        px_store(cur + i, a, bpp);
    }
}

/* unfilter_c's contract, bpp 3 or 4, and 4 readable bytes from the row's last
 * pixel on. The first row (nothing above) is rare and left to unfilter_c. */
static int unfilter_sse2(int type, uint8_t *cur, const uint8_t *prev, size_t n, int bpp)
{
    if (type == 0)
        return 0;
    if (!prev)
        return unfilter_c(type, cur, prev, n, bpp);
    switch (type * 8 + bpp) {
    case 2 * 8 + 3:
    case 2 * 8 + 4: {
        size_t i = 0;
        for (; i + 16 <= n; i += 16) {
            __m128i x = _mm_loadu_si128((const __m128i *)(cur + i)), b = _mm_loadu_si128((const __m128i *)(prev + i));
            _mm_storeu_si128((__m128i *)(cur + i), _mm_add_epi8(x, b));
        }
        for (; i < n; i++)
            cur[i] = (uint8_t)(cur[i] + prev[i]);
        return 0;
    }
    case 1 * 8 + 3: unfilter_px_sse2(cur, prev, n, 1, 3); return 0;
    case 1 * 8 + 4: unfilter_px_sse2(cur, prev, n, 1, 4); return 0;
    case 3 * 8 + 3: unfilter_px_sse2(cur, prev, n, 3, 3); return 0;
    case 3 * 8 + 4: unfilter_px_sse2(cur, prev, n, 3, 4); return 0;
    case 4 * 8 + 3: unfilter_px_sse2(cur, prev, n, 4, 3); return 0;
    case 4 * 8 + 4: unfilter_px_sse2(cur, prev, n, 4, 4); return 0;
    default: return -1;
    }
}
#endif

/* Pillow's DIV255 (ImagingPaste's blend): (v + 128 + ((v + 128) >> 8)) >> 8. */
static inline uint8_t div255(unsigned v)
{
    v += 128;
    return (uint8_t)((v + (v >> 8)) >> 8);
}

int img_png_decode(const uint8_t *buf, size_t len, int64_t max_pixels, bool simd, img_png_t *out)
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
    size_t rowlen = (size_t)w * bpp, rawlen = (size_t)h * (rowlen + 1), outlen = (size_t)w * h * 3;
    // The stream inflates straight into the output buffer; each row is then
    // unfiltered in place and moved down to its packed RGB place. Row y's
    // packed place ends at 3w(y + 1), below where the filtered row y + 1
    // starts, (y + 1)(rowlen + 1): so moving row y waits until row y + 1,
    // which reads it as "above", is unfiltered, and then clobbers nothing
    // still needed. One buffer, one pass over memory, no copy of the image.
    uint8_t *px = g_try_malloc(rawlen + PNG_SLACK);
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    int rc = 1;
    if (!z || !px || !d)
        goto done;
    size_t zp = 0;
    for (pos = 8; memcmp(buf + pos + 4, "IEND", 4); pos += 12 + (size_t)be32(buf + pos))
        if (!memcmp(buf + pos + 4, "IDAT", 4))
            memcpy(z + zp, buf + pos + 8, be32(buf + pos)), zp += be32(buf + pos);
    size_t got = 0;
    if (libdeflate_zlib_decompress(d, z, zlen, px, rawlen, &got) != LIBDEFLATE_SUCCESS || got != rawlen)
        goto done;
    for (uint32_t y = 0; y <= h; y++) {
        if (y < h) {
            uint8_t *row = px + (size_t)y * (rowlen + 1);
            const uint8_t *prev = y ? row - rowlen : NULL;
#ifdef PNG_SSE2
            if (simd ? unfilter_sse2(row[0], row + 1, prev, rowlen, bpp) : unfilter_c(row[0], row + 1, prev, rowlen, bpp))
                goto done;
#else
            (void)simd;
            if (unfilter_c(row[0], row + 1, prev, rowlen, bpp))
                goto done;
#endif
        }
        if (y == 0)
            continue;
        // row y - 1 to its packed place
        const uint8_t *src = px + (size_t)(y - 1) * (rowlen + 1) + 1;
        uint8_t *o = px + (size_t)(y - 1) * w * 3;
        if (bpp == 3) {
            memmove(o, src, rowlen);
            continue;
        }
        // over white, as pil_img2rgb's paste with the alpha as mask rounds;
        // o <= src and each pixel is read before its 3 bytes are written
        for (uint32_t x = 0; x < w; x++) {
            const uint8_t *p = src + 4 * (size_t)x;
            unsigned a = p[3], r = p[0], g = p[1], b = p[2];
            o[3 * x] = div255(255u * (255u - a) + r * a);
            o[3 * x + 1] = div255(255u * (255u - a) + g * a);
            o[3 * x + 2] = div255(255u * (255u - a) + b * a);
        }
    }
    // give back the filter bytes (and RGBA's fourth channel): a shrink in
    // place, no copy
    uint8_t *fit = g_try_realloc(px, outlen);
    *out = (img_png_t){.data = fit ? fit : px, .w = (int)w, .h = (int)h};
    px = NULL;
    rc = 0;
done:
    if (d)
        libdeflate_free_decompressor(d);
    free(z), g_free(px);
    return rc;
}
