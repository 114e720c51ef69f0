/* formats.h — the seven JSONL formats of bagel-read (issue 3), one line at a
 * time: each line is made from its own scenes, with its own images, from a
 * generator seeded by (seed, format, line number) alone. So a line does not
 * depend on --count, --formats or the other lines; --size changes only the
 * pixels, --jpeg-fraction only which images are JPEG. */
#ifndef BAGEL_SYNTH_FORMATS_H
#define BAGEL_SYNTH_FORMATS_H

#include "out.h"

#include <jansson.h>
#include <stdint.h>

typedef struct {
    synth_out_t *out;
    uint64_t seed;
    int px;            // image side in pixels
    int jpeg_permille; // share of images saved as JPEG
    uint8_t *rgb;      // (px, px, 3) u8 scratch, one per thread
} synth_ctx_t;

typedef int (*synth_make_fn)(synth_ctx_t *c, int id, uint64_t index, json_t **line, char *err);

typedef struct {
    const char *name; // as in --formats
    const char *file; // the JSONL file in the output directory
    synth_make_fn make;
} synth_format_t;

extern const synth_format_t synth_formats[];
extern const int synth_nformats;

/* The format's index by name, -1 if unknown. */
int synth_format_find(const char *name, int len);

#endif
