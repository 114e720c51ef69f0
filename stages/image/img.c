/* img.c — decode once, orient, convert to 8-bit sRGB, resize twice (img.h).
 *
 * Colour rules, matching BAGEL's loader where it is defined (pil_img2rgb,
 * bagel-reference.md §3.9) and the rules where it is not:
 *   - an image with an alpha channel is composited over white, as pil_img2rgb
 *     does for RGBA and for palette/grey images with transparency; a PNG of
 *     colour type 4 (grey + alpha) is not "RGBA" to Pillow and its alpha is
 *     dropped by convert("RGB"), so it is dropped here too;
 *   - an embedded ICC profile is applied (to sRGB); without one, CMYK, grey and
 *     16-bit images go to sRGB through vips_colourspace (Pillow has no colour
 *     management, so these differ from Pillow: docs/image.md);
 *   - EXIF orientation is applied (vips_autorot);
 *   - multi-page files give their first page (libvips' default page=0, n=1).
 * The decode runs once (sequential access) into a buffer of ours; plain PNGs
 * skip libvips (png.h). Each output is then Pillow's BICUBIC resample of that
 * buffer, byte for byte (resample.h), or the buffer itself when the sizes
 * agree. */
#include "img.h"
#include "png.h"
#include "resample.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <vips/vips.h>

void img_opts_default(img_opts_t *o)
{
    *o = (img_opts_t){
        .vit = {.max_edge = 980, .min_edge = 378, .stride = 14, .max_pixels = 2007040},
        .vae = {.max_edge = 1024, .min_edge = 512, .stride = 16, .max_pixels = 1806336},
        // Pillow's DecompressionBombError threshold (2 × MAX_IMAGE_PIXELS)
        .max_input_pixels = 178956970,
        .timeout_ms = 0,
        .shrink_on_load = true,
        .shrink_margin = 1.0,
        .simd = true,
        .avx512 = true,
        .png_fast_path = true,
        .inline_eval = true,
    };
}

/* max(stride, round(v / stride) * stride), Python's round: half to even. */
static double make_divisible(double v, int stride)
{
    double d = nearbyint(v / stride) * stride;
    return d > stride ? d : stride;
}

static void apply_scale(double w, double h, double scale, int stride, double *ow, double *oh)
{
    *ow = make_divisible(nearbyint(w * scale), stride);
    *oh = make_divisible(nearbyint(h * scale), stride);
}

int img_target_size(const img_rule_t *r, int w, int h, int img_num, int *out_w, int *out_h)
{
    if (w <= 0 || h <= 0 || img_num <= 0 || r->stride <= 0 || r->max_edge <= 0)
        return -1;
    double W = w, H = h, nw, nh;
    double scale = fmin(r->max_edge / fmax(W, H), 1.0);
    scale = fmax(scale, r->min_edge / fmin(W, H));
    apply_scale(W, H, scale, r->stride, &nw, &nh);
    double limit = (double)r->max_pixels / img_num;
    if (nw * nh > limit) {
        scale = limit / (nw * nh); // an area ratio used as a linear factor, as the reference does
        apply_scale(nw, nh, scale, r->stride, &nw, &nh);
    }
    if (fmax(nw, nh) > r->max_edge) {
        scale = r->max_edge / fmax(nw, nh);
        apply_scale(nw, nh, scale, r->stride, &nw, &nh);
    }
    if (nw > INT32_MAX || nh > INT32_MAX)
        return -1;
    *out_w = (int)nw, *out_h = (int)nh;
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

typedef struct {
    double deadline_ms; // 0: none
    bool expired;
} watch_t;

static void on_eval(VipsImage *image, VipsProgress *progress, void *arg)
{
    (void)progress;
    watch_t *wt = arg;
    if (wt->deadline_ms > 0 && now_ms() > wt->deadline_ms) {
        wt->expired = true;
        vips_image_set_kill(image, TRUE);
    }
}

static void watch(VipsImage *im, watch_t *wt)
{
    if (wt->deadline_ms <= 0)
        return;
    vips_image_set_progress(im, TRUE);
    g_signal_connect(im, "eval", G_CALLBACK(on_eval), wt);
}

/* im's pixels into a new g_malloc'd buffer of *n bytes; NULL on error (the
 * error in libvips' buffer, or wt->expired).
 *
 * vips_image_write_to_memory runs the pipeline on libvips' thread pool: with
 * one thread (the stage's default) its worker computes while this thread
 * waits, and every image costs several cross-core handoffs. On the
 * benchmark's small images those made an unloaded process spend 60% more CPU
 * an image than one pinned to a core (docs/image.md, Speed). So with
 * inline_eval the pipeline is evaluated here, a strip of rows at a time, top
 * to bottom as a sequential decode wants, with the deadline checked between
 * strips in place of the pool's progress signal. */
static uint8_t *to_memory(VipsImage *im, bool inline_eval, watch_t *wt, size_t *n)
{
    if (!inline_eval) {
        watch(im, wt);
        return vips_image_write_to_memory(im, n);
    }
    size_t line = VIPS_IMAGE_SIZEOF_LINE(im);
    uint8_t *px = g_try_malloc(line * (size_t)im->Ysize);
    if (!px) {
        vips_error("bagel-image", "out of memory for %zu bytes", line * (size_t)im->Ysize);
        return NULL;
    }
    VipsRegion *reg = vips_region_new(im);
    // strips of about 1 MiB: the whole of a small image, bounded memory for a large one
    int rows = line ? (int)((1u << 20) / line) : 1;
    rows = rows < 16 ? 16 : rows;
    for (int y = 0; y < im->Ysize; y += rows) {
        VipsRect r = {0, y, im->Xsize, im->Ysize - y < rows ? im->Ysize - y : rows};
        if (wt->deadline_ms > 0 && now_ms() > wt->deadline_ms) {
            wt->expired = true;
            vips_error("bagel-image", "timeout");
        }
        if (wt->expired || vips_region_prepare(reg, &r)) {
            g_object_unref(reg);
            g_free(px);
            return NULL;
        }
        for (int i = 0; i < r.height; i++)
            memcpy(px + (size_t)(y + i) * line, VIPS_REGION_ADDR(reg, 0, y + i), line);
    }
    g_object_unref(reg);
    *n = line * (size_t)im->Ysize;
    return px;
}

/* libvips' error buffer as one line in err, then cleared. */
static int vips_fail(char *err, const char *what)
{
    char line[IMG_ERR_LEN];
    snprintf(line, sizeof line, "%s", vips_error_buffer());
    vips_error_clear();
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == ' '))
        line[--n] = 0;
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = ' '; // one printable line: loader messages may quote file bytes
    snprintf(err, IMG_ERR_LEN, "%s%s%s", what, *line ? ": " : "", line);
    return -1;
}

/* Replace *im by next (taking ownership of next); unref the old one. */
static void step(VipsImage **im, VipsImage *next)
{
    g_object_unref(*im);
    *im = next;
}

/* PNG colour type 4: grey + alpha, whose alpha Pillow's convert("RGB") drops. */
static bool png_grey_alpha(const uint8_t *b, size_t len)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    return len > 25 && memcmp(b, sig, 8) == 0 && memcmp(b + 12, "IHDR", 4) == 0 && b[25] == 4;
}

/* The decoded, oriented, 8-bit sRGB image in memory. */
static int decode_rgb(const void *buf, size_t len, const img_opts_t *o, img_want_t want, watch_t *wt, img_out_t *out,
                      int *shrunk, char *err)
{
    img_png_t png;
    if (o->png_fast_path && !img_png_decode(buf, len, o->max_input_pixels, o->simd, &png)) {
        *out = (img_out_t){.data = png.data, .w = png.w, .h = png.h};
        return 0;
    }
    const char *loader = vips_foreign_find_load_buffer(buf, len);
    if (!loader) {
        vips_error_clear();
        // an ISO-BMFF "ftyp" box: HEIF/AVIF, which needs libvips' libheif module
        bool heif = len >= 12 && memcmp((const uint8_t *)buf + 4, "ftyp", 4) == 0;
        snprintf(err, IMG_ERR_LEN, "%s",
                 !len   ? "empty file"
                 : heif ? "a HEIF/AVIF file, and this libvips has no HEIF loader (libheif module)"
                        : "not a known image format");
        return -1;
    }
    VipsImage *im = vips_image_new_from_buffer(buf, len, "", "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                                               VIPS_FAIL_ON_TRUNCATED, NULL);
    if (!im)
        return vips_fail(err, "cannot read the header");
    int w = im->Xsize, h = vips_image_get_page_height(im);
    if (w <= 0 || h <= 0) {
        g_object_unref(im);
        snprintf(err, IMG_ERR_LEN, "%dx%d: an empty image", w, h);
        return -1;
    }
    if ((int64_t)w * h > o->max_input_pixels) {
        g_object_unref(im);
        snprintf(err, IMG_ERR_LEN, "%dx%d: %lld pixels, over the limit of %lld (--max-pixels)", w, h, (long long)w * h,
                 (long long)o->max_input_pixels);
        return -1;
    }
    // Shrink-on-load by 2, 4 or 8 — libjpeg's DCT scaling, libwebp's scaled
    // decode — only while the shrunk decode stays shrink_margin times larger
    // than every output. At the default 1 a 2048x1536 JPEG decodes at
    // 1024x768, about twice as fast, at 44-51 dB against Pillow's full decode
    // (docs/image.md); 2 keeps the cubic resample in charge of all filtering.
    bool jpeg = strcmp(loader, "VipsForeignLoadJpegBuffer") == 0,
         webp = strcmp(loader, "VipsForeignLoadWebpBuffer") == 0;
    if (o->shrink_on_load && (jpeg || webp)) {
        int need_w = 0, need_h = 0, tw, th;
        if (want.vit_num && !img_target_size(&o->vit, w, h, want.vit_num, &tw, &th))
            need_w = tw > need_w ? tw : need_w, need_h = th > need_h ? th : need_h;
        if (want.vae_num && !img_target_size(&o->vae, w, h, want.vae_num, &tw, &th))
            need_w = tw > need_w ? tw : need_w, need_h = th > need_h ? th : need_h;
        // libwebp scales by averaging, not by dropping DCT frequencies: by 4 a
        // pixel-art WebP fell to 31 dB, so WebP keeps a margin of at least 2
        // (43 dB or more on GNOME's 4096x4096 backgrounds, docs/image.md)
        double margin = webp && o->shrink_margin < 2.0 ? 2.0 : o->shrink_margin;
        int s = 8;
        while (s > 1 && (w / s < margin * need_w || h / s < margin * need_h))
            s /= 2;
        if (s > 1) {
            VipsImage *sh = jpeg ? vips_image_new_from_buffer(buf, len, "", "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                                                              VIPS_FAIL_ON_TRUNCATED, "shrink", s, NULL)
                                 : vips_image_new_from_buffer(buf, len, "", "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                                                              VIPS_FAIL_ON_TRUNCATED, "scale", 1.0 / s, NULL);
            if (!sh) {
                g_object_unref(im);
                return vips_fail(err, "cannot read the header");
            }
            step(&im, sh);
            *shrunk = s;
        }
    }
    VipsImage *t = NULL;
    bool drop_alpha = png_grey_alpha(buf, len);
    if (vips_image_get_typeof(im, VIPS_META_ICC_NAME) &&
        vips_icc_transform(im, &t, "srgb", "embedded", TRUE, "depth", 8, NULL)) {
        vips_error_clear(); // an unusable profile: ignore it, as Pillow always does
        t = NULL;
    }
    if (t)
        step(&im, t);
    if (im->Type != VIPS_INTERPRETATION_sRGB || im->BandFmt != VIPS_FORMAT_UCHAR) {
        if (vips_colourspace(im, &t, VIPS_INTERPRETATION_sRGB, NULL)) {
            g_object_unref(im);
            return vips_fail(err, "cannot convert to sRGB");
        }
        step(&im, t);
    }
    if (im->Bands == 4 || im->Bands == 2) {
        VipsArrayDouble *white = vips_array_double_newv(1, 255.0);
        int r = drop_alpha ? vips_extract_band(im, &t, 0, "n", im->Bands - 1, NULL)
                           : vips_flatten(im, &t, "background", white, NULL);
        vips_area_unref(VIPS_AREA(white));
        if (r) {
            g_object_unref(im);
            return vips_fail(err, "cannot remove the alpha channel");
        }
        step(&im, t);
    }
    if (im->Bands == 1) {
        VipsImage *three[3] = {im, im, im};
        if (vips_bandjoin(three, &t, 3, NULL)) {
            g_object_unref(im);
            return vips_fail(err, "cannot make RGB");
        }
        step(&im, t);
    }
    if (im->Bands > 3) {
        if (vips_extract_band(im, &t, 0, "n", 3, NULL)) {
            g_object_unref(im);
            return vips_fail(err, "cannot make RGB");
        }
        step(&im, t);
    }
    if (im->Bands != 3) {
        snprintf(err, IMG_ERR_LEN, "%d bands: cannot make RGB", im->Bands);
        g_object_unref(im);
        return -1;
    }
    if (im->BandFmt != VIPS_FORMAT_UCHAR) {
        if (vips_cast_uchar(im, &t, NULL)) {
            g_object_unref(im);
            return vips_fail(err, "cannot make 8-bit");
        }
        step(&im, t);
    }
    // Straight into a buffer we own: an output the size of the decode (a
    // 1024x768 image's VAE input) is that buffer, handed over uncopied.
    int orient = 1;
    if (vips_image_get_typeof(im, VIPS_META_ORIENTATION) && vips_image_get_int(im, VIPS_META_ORIENTATION, &orient))
        orient = 1;
    size_t n = 0;
    uint8_t *px = to_memory(im, o->inline_eval, wt, &n);
    w = im->Xsize, h = im->Ysize;
    g_object_unref(im);
    if (!px) {
        if (wt->expired) {
            vips_error_clear();
            snprintf(err, IMG_ERR_LEN, "decoding took over %d ms (--timeout-ms)", o->timeout_ms);
            return -1;
        }
        return vips_fail(err, "cannot decode");
    }
    if (orient >= 2 && orient <= 8) {
        // rotate in memory: a sequential decode cannot be read out of order
        VipsImage *mem = vips_image_new_from_memory(px, n, w, h, 3, VIPS_FORMAT_UCHAR);
        if (mem) {
            vips_image_set_int(mem, VIPS_META_ORIENTATION, orient);
            mem->Type = VIPS_INTERPRETATION_sRGB;
        }
        uint8_t *rot = NULL;
        if (mem && !vips_autorot(mem, &t, NULL)) {
            rot = to_memory(t, o->inline_eval, wt, &n);
            w = t->Xsize, h = t->Ysize;
            g_object_unref(t);
        }
        if (mem)
            g_object_unref(mem);
        g_free(px);
        if (!rot)
            return vips_fail(err, "cannot apply the EXIF orientation");
        px = rot;
    }
    *out = (img_out_t){.data = px, .w = w, .h = h};
    return 0;
}

/* One output of rule r from the decoded image. When take is set and the
 * output is the decode's size, the decode's buffer becomes the output. */
static int resize_to(img_out_t *in, bool take, const img_rule_t *r, int img_num, const img_opts_t *o, watch_t *wt,
                     img_out_t *out, char *err)
{
    int tw, th;
    if (wt->deadline_ms > 0 && now_ms() > wt->deadline_ms) {
        snprintf(err, IMG_ERR_LEN, "decoding took over %d ms (--timeout-ms)", o->timeout_ms);
        return -1;
    }
    if (img_target_size(r, in->w, in->h, img_num, &tw, &th)) {
        snprintf(err, IMG_ERR_LEN, "%dx%d: no output size", in->w, in->h);
        return -1;
    }
    if (take && tw == in->w && th == in->h) {
        *out = *in;
        in->data = NULL;
        return 0;
    }
    uint8_t *dst = g_try_malloc((size_t)tw * th * 3);
    img_simd_t level = !o->simd ? IMG_SIMD_NONE : o->avx512 ? IMG_SIMD_AVX512 : IMG_SIMD_AVX2;
    if (!dst || img_resample(in->data, in->w, in->h, dst, tw, th, level)) {
        g_free(dst);
        snprintf(err, IMG_ERR_LEN, "out of memory resizing to %dx%d", tw, th);
        return -1;
    }
    *out = (img_out_t){.data = dst, .w = tw, .h = th};
    return 0;
}

void img_out_free(img_out_t *o)
{
    g_free(o->data);
    o->data = NULL;
}

int img_decode(const void *buf, size_t len, const img_opts_t *o, img_want_t want, img_out_t *vit, img_out_t *vae,
               char *err)
{
    watch_t wt = {.deadline_ms = o->timeout_ms > 0 ? now_ms() + o->timeout_ms : 0};
    img_out_t rgb = {0};
    int shrunk = 1;
    *vit = (img_out_t){0}, *vae = (img_out_t){0};
    if (decode_rgb(buf, len, o, want, &wt, &rgb, &shrunk, err))
        return -1;
    // the ViT first: the VAE output is more often the decode's own size
    // (1024x768 images, 2048x1536 JPEGs shrunk on load) and takes its buffer
    int rc = 0;
    if (want.vit_num)
        rc = resize_to(&rgb, !want.vae_num, &o->vit, want.vit_num, o, &wt, vit, err);
    if (!rc && want.vae_num)
        rc = resize_to(&rgb, true, &o->vae, want.vae_num, o, &wt, vae, err);
    img_out_free(&rgb);
    vit->shrunk = vae->shrunk = shrunk;
    if (rc) {
        img_out_free(vit);
        img_out_free(vae);
    }
    return rc;
}
