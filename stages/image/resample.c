/* resample.c — Pillow's BICUBIC resample of packed RGB, exactly (resample.h).
 *
 * Why our own: libvips' reduce differs from Pillow by a rounding step (60 dB)
 * and enlarges through an interpolator with other edge rules (29-34 dB), and
 * its 8.14 reduce runs at about Pillow's speed. Pillow's algorithm in int32
 * arithmetic vectorizes well: the vertical pass is a weighted sum of whole
 * rows, the horizontal one gathers each output's window. Both passes keep
 * Pillow's exact integers (22-bit weights, int32 sums that wrap as Pillow's
 * do, round by the 1 << 21 bias, clip to 0..255), so the bytes are Pillow's.
 *
 * Invariant of the tap tables: every output's window has the same length k
 * (the longest window of that axis) and lies inside the input; weights past an
 * output's own taps are 0, which leaves the sums unchanged. */
#include "resample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define RS_X86 1
#endif

#define RS_PREC 22

/* One axis: out outputs, each a window of k inputs from start[o]. */
typedef struct {
    int out, k;
    int *start;  // (out) first input of each window
    int32_t *w;  // (out, k) weights, 22-bit fixed point
    int32_t *wt; // (k, out) the same, transposed for the gathering pass
    // (ceil(k / 2), out) the same in pairs of taps (2j, 2j + 1; a missing
    // last one 0) split as w = hi * 2^15 + lo, lo in [0, 2^15): two int16
    // lanes each, for the AVX-512 kernel's 16-bit multiply-adds
    uint32_t *wlo, *whi;
} rs_axis_t;

static double rs_cubic(double x)
{
    const double a = -0.5;
    x = fabs(x);
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0)
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

static void rs_axis_free(rs_axis_t *a)
{
    free(a->start), free(a->w), free(a->wt), free(a->wlo), free(a->whi);
    *a = (rs_axis_t){0};
}

/* Pillow's precompute_coeffs and normalize_coeffs_8bpc for in -> out, then
 * every window widened to the longest and shifted inside the input. */
static int rs_axis_new(rs_axis_t *a, int in, int out)
{
    double scale = (double)in / out, fs = scale < 1.0 ? 1.0 : scale, support = 2.0 * fs;
    int ksize = (int)ceil(support) * 2 + 1;
    *a = (rs_axis_t){.out = out};
    double *kk = malloc(sizeof(double) * (size_t)out * (size_t)ksize);
    int *lo = malloc(sizeof(int) * (size_t)out), *n = malloc(sizeof(int) * (size_t)out);
    a->start = malloc(sizeof(int) * (size_t)out);
    if (!kk || !lo || !n || !a->start)
        goto fail;
    int k = 1;
    for (int o = 0; o < out; o++) {
        double center = (o + 0.5) * scale, ww = 0.0, *p = kk + (size_t)o * ksize;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        xmin = xmin < 0 ? 0 : xmin, xmax = xmax > in ? in : xmax;
        n[o] = xmax - xmin > 0 ? xmax - xmin : 0, lo[o] = xmin;
        for (int x = 0; x < n[o]; x++)
            ww += p[x] = rs_cubic((x + xmin - center + 0.5) / fs);
        for (int x = 0; x < n[o]; x++)
            p[x] = ww != 0.0 ? p[x] / ww : p[x];
        k = n[o] > k ? n[o] : k;
    }
    k = k > in ? in : k;
    a->k = k;
    a->w = calloc((size_t)out * k, sizeof(int32_t));
    a->wt = calloc((size_t)out * k, sizeof(int32_t));
    if (!a->w || !a->wt)
        goto fail;
    for (int o = 0; o < out; o++) {
        int s = lo[o] < in - k ? lo[o] : in - k;
        a->start[o] = s;
        for (int x = 0; x < n[o]; x++) {
            double v = kk[(size_t)o * ksize + x];
            int32_t q = (int32_t)(v < 0 ? -0.5 + v * (1 << RS_PREC) : 0.5 + v * (1 << RS_PREC));
            a->w[(size_t)o * k + (lo[o] - s) + x] = q;
            a->wt[(size_t)((lo[o] - s) + x) * out + o] = q;
        }
    }
    int k2 = (k + 1) / 2;
    a->wlo = malloc(sizeof(uint32_t) * (size_t)out * k2);
    a->whi = malloc(sizeof(uint32_t) * (size_t)out * k2);
    if (!a->wlo || !a->whi)
        goto fail;
    for (int j = 0; j < k2; j++)
        for (int o = 0; o < out; o++) {
            int32_t w0 = a->w[(size_t)o * k + 2 * j], w1 = 2 * j + 1 < k ? a->w[(size_t)o * k + 2 * j + 1] : 0;
            a->wlo[(size_t)j * out + o] = (uint32_t)(w0 & 0x7fff) | (uint32_t)(w1 & 0x7fff) << 16;
            a->whi[(size_t)j * out + o] = (uint32_t)(uint16_t)(w0 >> 15) | (uint32_t)(uint16_t)(w1 >> 15) << 16;
        }
    free(kk), free(lo), free(n);
    return 0;
fail:
    free(kk), free(lo), free(n);
    rs_axis_free(a);
    return -1;
}

/* Pillow's clip8 of a sum that carries the 1 << 21 rounding bias. */
static inline uint8_t rs_clip8(uint32_t ss)
{
    int32_t v = (int32_t)ss >> RS_PREC;
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* Unsigned sums: the wrap-around of Pillow's int sums without C's undefined
 * signed overflow. */
static void rs_horiz_row_c(const uint8_t *row, uint8_t *dst, const rs_axis_t *a, int x0)
{
    for (int x = x0; x < a->out; x++) {
        const uint8_t *p = row + (size_t)a->start[x] * 3;
        const int32_t *w = a->w + (size_t)x * a->k;
        uint32_t r = 1u << (RS_PREC - 1), g = r, b = r;
        for (int t = 0; t < a->k; t++) {
            r += (uint32_t)p[3 * t] * (uint32_t)w[t];
            g += (uint32_t)p[3 * t + 1] * (uint32_t)w[t];
            b += (uint32_t)p[3 * t + 2] * (uint32_t)w[t];
        }
        dst[3 * x] = rs_clip8(r), dst[3 * x + 1] = rs_clip8(g), dst[3 * x + 2] = rs_clip8(b);
    }
}

static void rs_vert_row_c(const uint8_t *src, size_t stride, uint8_t *dst, const rs_axis_t *a, int y, size_t x0)
{
    const uint8_t *p = src + (size_t)a->start[y] * stride;
    const int32_t *w = a->w + (size_t)y * a->k;
    for (size_t x = x0; x < stride; x++) {
        uint32_t ss = 1u << (RS_PREC - 1);
        for (int t = 0; t < a->k; t++)
            ss += (uint32_t)p[(size_t)t * stride + x] * (uint32_t)w[t];
        dst[x] = rs_clip8(ss);
    }
}

#ifdef RS_X86
/* Eight outputs at a time: each tap gathers the eight windows' pixels as
 * dwords (R, G, B and one byte of the next pixel), so a row's last pixel may
 * read one byte past the row: the caller keeps the image's last row for the
 * portable code. */
__attribute__((target("avx2"))) static void rs_horiz_row_avx2(const uint8_t *row, uint8_t *dst, const rs_axis_t *a,
                                                              int x0)
{
    const __m256i bias = _mm256_set1_epi32(1 << (RS_PREC - 1)), ff = _mm256_set1_epi32(0xff),
                  three = _mm256_set1_epi32(3), zero = _mm256_setzero_si256(), top = _mm256_set1_epi32(255);
    const __m256i pick = _mm256_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1, 0, 1, 2, 4, 5, 6, 8,
                                          9, 10, 12, 13, 14, -1, -1, -1, -1);
    int x = x0;
    for (; x + 8 <= a->out; x += 8) {
        __m256i idx = _mm256_mullo_epi32(_mm256_loadu_si256((const __m256i *)(a->start + x)), three);
        __m256i r = bias, g = bias, b = bias;
        for (int t = 0; t < a->k; t++) {
            __m256i v = _mm256_i32gather_epi32((const int *)row, idx, 1);
            __m256i w = _mm256_loadu_si256((const __m256i *)(a->wt + (size_t)t * a->out + x));
            r = _mm256_add_epi32(r, _mm256_mullo_epi32(_mm256_and_si256(v, ff), w));
            g = _mm256_add_epi32(g, _mm256_mullo_epi32(_mm256_and_si256(_mm256_srli_epi32(v, 8), ff), w));
            b = _mm256_add_epi32(b, _mm256_mullo_epi32(_mm256_and_si256(_mm256_srli_epi32(v, 16), ff), w));
            idx = _mm256_add_epi32(idx, three);
        }
        r = _mm256_min_epi32(_mm256_max_epi32(_mm256_srai_epi32(r, RS_PREC), zero), top);
        g = _mm256_min_epi32(_mm256_max_epi32(_mm256_srai_epi32(g, RS_PREC), zero), top);
        b = _mm256_min_epi32(_mm256_max_epi32(_mm256_srai_epi32(b, RS_PREC), zero), top);
        __m256i px = _mm256_or_si256(r, _mm256_or_si256(_mm256_slli_epi32(g, 8), _mm256_slli_epi32(b, 16)));
        px = _mm256_shuffle_epi8(px, pick); // each lane: 4 pixels in its low 12 bytes
        __m128i lo = _mm256_castsi256_si128(px), hi = _mm256_extracti128_si256(px, 1);
        _mm_storeu_si128((__m128i *)(dst + 3 * x), _mm_or_si128(lo, _mm_slli_si128(hi, 12)));
        _mm_storel_epi64((__m128i *)(dst + 3 * x + 16), _mm_srli_si128(hi, 4));
    }
    rs_horiz_row_c(row, dst, a, x);
}

/* Sixteen outputs at a time with AVX-512 (F, BW, VBMI). Where the sixteen
 * windows lie within 128 bytes of the row (downscales up to about 2x at the
 * default sizes), two taps at a time: one two-register byte permute per
 * channel puts each output's two pixels in the int16 halves of its dword, and
 * 16-bit multiply-adds with the split weights (rs_axis_t.wlo, whi) give
 * sum(p w) = 2^15 sum(p hi) + sum(p lo) exactly, mod 2^32 as the int32 sums
 * of the other kernels; the permute replaces a gather, the multiply-adds
 * half the 32-bit multiplies. Other blocks run the AVX2 kernel's arithmetic
 * on sixteen outputs. Loads are masked at the image's end (end). */
__attribute__((target("avx2,avx512f,avx512bw,avx512vbmi"))) static void
rs_horiz_row_avx512(const uint8_t *row, uint8_t *dst, const rs_axis_t *a, const uint8_t *end)
{
    const __m512i bias = _mm512_set1_epi32(1 << (RS_PREC - 1)), ff = _mm512_set1_epi32(0xff),
                  three = _mm512_set1_epi32(3), zero = _mm512_setzero_si512(), top = _mm512_set1_epi32(255),
                  halves = _mm512_set1_epi32(0x00010001), next = _mm512_set1_epi32(0x00030000),
                  pair = _mm512_set1_epi32(0x00060006);
    const __mmask64 even = 0x5555555555555555ull; // bytes 0 and 2 of each dword; 1 and 3 zero
    // per 128-bit lane: its 4 pixels' R, G, B into the low 12 bytes; then
    // the lanes' 12-byte groups side by side (dwords 0-2, 4-6, 8-10, 12-14)
    const __m512i pick = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1));
    const __m512i pack = _mm512_setr_epi32(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 0, 0, 0, 0);
    int x = 0, k2 = (a->k + 1) / 2;
    for (; x + 16 <= a->out; x += 16) {
        __m512i start = _mm512_loadu_si512(a->start + x);
        __m512i r, g, b;
        int s0 = a->start[x];
        if (3 * (a->start[x + 15] - s0 + 2 * k2) <= 128) {
            const uint8_t *p = row + 3 * (size_t)s0;
            size_t left = (size_t)(end - p);
            __m512i lo = _mm512_maskz_loadu_epi8(left >= 64 ? ~0ull : (1ull << left) - 1, p);
            __m512i hi = _mm512_maskz_loadu_epi8(left >= 128 ? ~0ull : left <= 64 ? 0 : (1ull << (left - 64)) - 1,
                                                 p + 64);
            // dword i: byte 0 the red of pixel start_i + 2j, byte 2 that of
            // the next pixel (offsets from p); + 1, + 2 for green and blue
            __m512i rel = _mm512_mullo_epi32(_mm512_sub_epi32(start, _mm512_set1_epi32(s0)), three);
            __m512i idx = _mm512_add_epi32(_mm512_mullo_epi32(rel, halves), next);
            __m512i rl = zero, gl = zero, bl = zero, rh = zero, gh = zero, bh = zero;
            for (int j = 0; j < k2; j++) {
                __m512i wl = _mm512_loadu_si512(a->wlo + (size_t)j * a->out + x);
                __m512i wh = _mm512_loadu_si512(a->whi + (size_t)j * a->out + x);
                __m512i vr = _mm512_maskz_permutex2var_epi8(even, lo, idx, hi);
                __m512i vg = _mm512_maskz_permutex2var_epi8(even, lo, _mm512_add_epi32(idx, halves), hi);
                __m512i vb = _mm512_maskz_permutex2var_epi8(even, lo, _mm512_add_epi32(idx, _mm512_add_epi32(halves, halves)), hi);
                rl = _mm512_add_epi32(rl, _mm512_madd_epi16(vr, wl));
                rh = _mm512_add_epi32(rh, _mm512_madd_epi16(vr, wh));
                gl = _mm512_add_epi32(gl, _mm512_madd_epi16(vg, wl));
                gh = _mm512_add_epi32(gh, _mm512_madd_epi16(vg, wh));
                bl = _mm512_add_epi32(bl, _mm512_madd_epi16(vb, wl));
                bh = _mm512_add_epi32(bh, _mm512_madd_epi16(vb, wh));
                idx = _mm512_add_epi32(idx, pair);
            }
            r = _mm512_add_epi32(_mm512_add_epi32(bias, rl), _mm512_slli_epi32(rh, 15));
            g = _mm512_add_epi32(_mm512_add_epi32(bias, gl), _mm512_slli_epi32(gh, 15));
            b = _mm512_add_epi32(_mm512_add_epi32(bias, bl), _mm512_slli_epi32(bh, 15));
        } else {
            __m512i idx = _mm512_mullo_epi32(start, three);
            r = g = b = bias;
            for (int t = 0; t < a->k; t++) {
                __m512i v = _mm512_i32gather_epi32(idx, row, 1);
                __m512i w = _mm512_loadu_si512(a->wt + (size_t)t * a->out + x);
                r = _mm512_add_epi32(r, _mm512_mullo_epi32(_mm512_and_si512(v, ff), w));
                g = _mm512_add_epi32(g, _mm512_mullo_epi32(_mm512_and_si512(_mm512_srli_epi32(v, 8), ff), w));
                b = _mm512_add_epi32(b, _mm512_mullo_epi32(_mm512_and_si512(_mm512_srli_epi32(v, 16), ff), w));
                idx = _mm512_add_epi32(idx, three);
            }
        }
        r = _mm512_min_epi32(_mm512_max_epi32(_mm512_srai_epi32(r, RS_PREC), zero), top);
        g = _mm512_min_epi32(_mm512_max_epi32(_mm512_srai_epi32(g, RS_PREC), zero), top);
        b = _mm512_min_epi32(_mm512_max_epi32(_mm512_srai_epi32(b, RS_PREC), zero), top);
        __m512i px = _mm512_or_si512(r, _mm512_or_si512(_mm512_slli_epi32(g, 8), _mm512_slli_epi32(b, 16)));
        px = _mm512_permutexvar_epi32(pack, _mm512_shuffle_epi8(px, pick));
        _mm512_mask_storeu_epi32(dst + 3 * x, 0x0fff, px);
    }
    rs_horiz_row_avx2(row, dst, a, x);
}

/* 32 bytes of a row at a time, every tap a whole input row. */
__attribute__((target("avx2"))) static void rs_vert_row_avx2(const uint8_t *src, size_t stride, uint8_t *dst,
                                                             const rs_axis_t *a, int y, size_t x0)
{
    const uint8_t *p = src + (size_t)a->start[y] * stride;
    const int32_t *wy = a->w + (size_t)y * a->k;
    const __m256i bias = _mm256_set1_epi32(1 << (RS_PREC - 1)), order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    size_t x = x0;
    for (; x + 32 <= stride; x += 32) {
        __m256i s0 = bias, s1 = bias, s2 = bias, s3 = bias;
        for (int t = 0; t < a->k; t++) {
            const uint8_t *q = p + (size_t)t * stride + x;
            __m256i w = _mm256_set1_epi32(wy[t]);
            s0 = _mm256_add_epi32(s0, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)q)), w));
            s1 = _mm256_add_epi32(
                s1, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(q + 8))), w));
            s2 = _mm256_add_epi32(
                s2, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(q + 16))), w));
            s3 = _mm256_add_epi32(
                s3, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(q + 24))), w));
        }
        // >> 22 then the saturating packs are Pillow's clip8
        __m256i p01 = _mm256_packs_epi32(_mm256_srai_epi32(s0, RS_PREC), _mm256_srai_epi32(s1, RS_PREC));
        __m256i p23 = _mm256_packs_epi32(_mm256_srai_epi32(s2, RS_PREC), _mm256_srai_epi32(s3, RS_PREC));
        __m256i u = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(p01, p23), order);
        _mm256_storeu_si256((__m256i *)(dst + x), u);
    }
    rs_vert_row_c(src, stride, dst, a, y, x);
}

/* The AVX2 vertical kernel 64 bytes at a time (AVX-512F/BW), the rest of the
 * row to it. */
__attribute__((target("avx2,avx512f,avx512bw"))) static void rs_vert_row_avx512(const uint8_t *src, size_t stride,
                                                                                uint8_t *dst, const rs_axis_t *a,
                                                                                int y)
{
    const uint8_t *p = src + (size_t)a->start[y] * stride;
    const int32_t *wy = a->w + (size_t)y * a->k;
    const __m512i bias = _mm512_set1_epi32(1 << (RS_PREC - 1)),
                  order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    size_t x = 0;
    for (; x + 64 <= stride; x += 64) {
        __m512i s0 = bias, s1 = bias, s2 = bias, s3 = bias;
        for (int t = 0; t < a->k; t++) {
            const uint8_t *q = p + (size_t)t * stride + x;
            __m512i w = _mm512_set1_epi32(wy[t]);
            s0 = _mm512_add_epi32(s0, _mm512_mullo_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)q)), w));
            s1 = _mm512_add_epi32(
                s1, _mm512_mullo_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(q + 16))), w));
            s2 = _mm512_add_epi32(
                s2, _mm512_mullo_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(q + 32))), w));
            s3 = _mm512_add_epi32(
                s3, _mm512_mullo_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(q + 48))), w));
        }
        // >> 22 then the saturating packs are Pillow's clip8; the packs work
        // per 128-bit lane, order puts the 16-byte groups back in sequence
        __m512i p01 = _mm512_packs_epi32(_mm512_srai_epi32(s0, RS_PREC), _mm512_srai_epi32(s1, RS_PREC));
        __m512i p23 = _mm512_packs_epi32(_mm512_srai_epi32(s2, RS_PREC), _mm512_srai_epi32(s3, RS_PREC));
        __m512i u = _mm512_permutexvar_epi32(order, _mm512_packus_epi16(p01, p23));
        _mm512_storeu_si512(dst + x, u);
    }
    rs_vert_row_avx2(src, stride, dst, a, y, x);
}
#endif

bool img_resample_has_simd(void)
{
#ifdef RS_X86
    return __builtin_cpu_supports("avx2");
#else
    return false;
#endif
}

int img_resample(const uint8_t *in, int iw, int ih, uint8_t *out, int ow, int oh, img_simd_t level)
{
    if (iw <= 0 || ih <= 0 || ow <= 0 || oh <= 0)
        return -1;
    bool simd = level >= IMG_SIMD_AVX2 && img_resample_has_simd();
#ifdef RS_X86
    bool avx512 = simd && level >= IMG_SIMD_AVX512 && __builtin_cpu_supports("avx512f") &&
                  __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vbmi");
#endif
    bool need_h = ow != iw, need_v = oh != ih;
    if (!need_h && !need_v) {
        memcpy(out, in, (size_t)iw * ih * 3);
        return 0;
    }
    rs_axis_t ax = {0}, ay = {0};
    uint8_t *mid = NULL;
    int rc = -1;
    if ((need_h && rs_axis_new(&ax, iw, ow)) || (need_v && rs_axis_new(&ay, ih, oh)))
        goto done;
    const uint8_t *src = in;
    if (need_h) {
        mid = need_v ? malloc((size_t)ow * ih * 3) : out;
        if (!mid)
            goto done;
        for (int y = 0; y < ih; y++) {
            const uint8_t *row = in + (size_t)y * iw * 3;
            uint8_t *dst = mid + (size_t)y * ow * 3;
#ifdef RS_X86
            if (simd && y < ih - 1) {
                if (avx512)
                    rs_horiz_row_avx512(row, dst, &ax, in + (size_t)iw * ih * 3);
                else
                    rs_horiz_row_avx2(row, dst, &ax, 0);
                continue;
            }
#endif
            rs_horiz_row_c(row, dst, &ax, 0);
        }
        src = mid;
    }
    if (need_v) {
        size_t stride = (size_t)ow * 3;
        for (int y = 0; y < oh; y++) {
#ifdef RS_X86
            if (simd) {
                if (avx512)
                    rs_vert_row_avx512(src, stride, out + (size_t)y * stride, &ay, y);
                else
                    rs_vert_row_avx2(src, stride, out + (size_t)y * stride, &ay, y, 0);
                continue;
            }
#endif
            rs_vert_row_c(src, stride, out + (size_t)y * stride, &ay, y, 0);
        }
    }
    rc = 0;
done:
    if (mid != out)
        free(mid);
    rs_axis_free(&ax), rs_axis_free(&ay);
    return rc;
}
