/* pngfile.h — RGB images into PNG files (libvips) and file names made from
 * sample ids, for the stages that write pictures (bagel-decode,
 * bagel-generate, the trainer's samples). The caller has started libvips. */
#ifndef BAGEL_PNGFILE_H
#define BAGEL_PNGFILE_H

#include <stddef.h>
#include <stdint.h>

/* rgb u8 [H, W, 3] to path. 0, or -1 with err naming the path. */
int png_write_rgb(const char *path, const uint8_t *rgb, int H, int W, char *err, size_t errlen);

/* id with every byte outside [A-Za-z0-9._-] turned into '_' (at most
 * cap - 1 bytes); "sample" for an empty id */
void png_safe_name(char *out, size_t cap, const char *id);

#endif
