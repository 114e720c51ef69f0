/* pngfile.c — see pngfile.h. */
#include "pngfile.h"

#include <stdio.h>
#include <vips/vips.h>

int png_write_rgb(const char *path, const uint8_t *rgb, int H, int W, char *err, size_t errlen)
{
    VipsImage *im = vips_image_new_from_memory(rgb, (size_t)H * W * 3, W, H, 3, VIPS_FORMAT_UCHAR);
    if (!im || vips_pngsave(im, path, NULL)) {
        snprintf(err, errlen, "%s: %s", path, vips_error_buffer());
        vips_error_clear();
        if (im)
            g_object_unref(im);
        return -1;
    }
    g_object_unref(im);
    return 0;
}

void png_safe_name(char *out, size_t cap, const char *id)
{
    size_t m = 0;
    if (!cap)
        return;
    for (const char *p = id; *p && m + 1 < cap; p++, m++) {
        char ch = *p;
        out[m] = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
                         ch == '-' || ch == '_'
                     ? ch
                     : '_';
    }
    out[m] = 0;
    if (!m)
        snprintf(out, cap, "sample");
}
