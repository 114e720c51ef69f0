/* draw.h — render a scene into an RGB pixel buffer: the background, then the
 * shape with 4x4 supersampled anti-aliasing. Integer arithmetic throughout,
 * so the pixels are the same on every platform and compiler. */
#ifndef BAGEL_SYNTH_DRAW_H
#define BAGEL_SYNTH_DRAW_H

#include "scene.h"

#include <stdint.h>

/* rgb: (px, px, 3) u8, row-major; px >= 1. */
void synth_draw(const synth_scene_t *s, int px, uint8_t *rgb);

#endif
