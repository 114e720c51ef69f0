/* draw.c — see draw.h.
 *
 * Coordinates are in eighths of a pixel: pixel x covers [8x, 8x+8), and its
 * 4x4 samples sit at 8x+1, 8x+3, 8x+5, 8x+7. A shape is given by its centre
 * and its half extent h (its bounding box is 2h on the longer side). */
#include "draw.h"

#include <stdint.h>

/* A regular five-pointed star (inner radius 1/phi^2 of the outer), outer
 * points up, scaled so its bounding box is [-10000, 10000] wide and centred
 * vertically (its height is 0.951 of its width). Computed once with
 * x = r cos(a) / cos(18 deg), y = (r sin(a) + (1 - cos 36 deg) / 2) / cos(18 deg),
 * a = -90 + 36k degrees, r = 1 for even k and 0.381966 for odd k. */
static const int star_unit[10][2] = {
    {0, -9511}, {2361, -2245}, {10000, -2245}, {3820, 2245},    {6180, 9511},
    {0, 5020},  {-6180, 9511}, {-3820, 2245},  {-10000, -2245}, {-2361, -2245},
};

static int64_t iabs(int64_t v) { return v < 0 ? -v : v; }

/* Crossing-number test against a polygon of n vertices, exact in integers. */
static int in_polygon(const int64_t (*v)[2], int n, int64_t x, int64_t y)
{
    int in = 0;
    for (int i = 0, j = n - 1; i < n; j = i++) {
        int64_t xi = v[i][0], yi = v[i][1], xj = v[j][0], yj = v[j][1];
        if ((yi > y) == (yj > y))
            continue;
        // x < xi + (xj - xi)(y - yi)/(yj - yi), without the division
        int64_t lhs = (x - xi) * (yj - yi), rhs = (xj - xi) * (y - yi);
        if (yj > yi ? lhs < rhs : lhs > rhs)
            in = !in;
    }
    return in;
}

static int inside(int shape, int64_t dx, int64_t dy, int64_t h, const int64_t (*star)[2])
{
    switch (shape) {
    case SYNTH_CIRCLE: return dx * dx + dy * dy <= h * h;
    case SYNTH_SQUARE: return iabs(dx) <= h && iabs(dy) <= h;
    // apex at (0, -h), base from (-h, h) to (h, h)
    case SYNTH_TRIANGLE: return dy <= h && 2 * iabs(dx) <= dy + h;
    // two bars a third of the extent thick
    case SYNTH_CROSS: return (3 * iabs(dx) <= h && iabs(dy) <= h) || (3 * iabs(dy) <= h && iabs(dx) <= h);
    case SYNTH_STAR: return in_polygon(star, 10, dx, dy);
    default: return 0;
    }
}

void synth_draw(const synth_scene_t *s, int px, uint8_t *rgb)
{
    const uint8_t *bg = synth_colours[s->bg].rgb;
    for (int64_t i = 0; i < (int64_t)px * px; i++)
        rgb[3 * i] = bg[0], rgb[3 * i + 1] = bg[1], rgb[3 * i + 2] = bg[2];
    if (s->shape < 0 || s->shape >= SYNTH_NSHAPES)
        return;
    const uint8_t *fg = synth_colours[s->colour].rgb;
    int cx, cy, h;
    synth_scene_geometry(s, px, &cx, &cy, &h);
    int64_t star[10][2];
    for (int k = 0; k < 10; k++)
        star[k][0] = (int64_t)star_unit[k][0] * h / 10000, star[k][1] = (int64_t)star_unit[k][1] * h / 10000;
    int x0 = (cx - h) / 8 - 1, x1 = (cx + h) / 8 + 1, y0 = (cy - h) / 8 - 1, y1 = (cy + h) / 8 + 1;
    x0 = x0 < 0 ? 0 : x0, y0 = y0 < 0 ? 0 : y0;
    x1 = x1 >= px ? px - 1 : x1, y1 = y1 >= px ? px - 1 : y1;
    for (int y = y0; y <= y1; y++) {
        for (int x = x0; x <= x1; x++) {
            int cover = 0;
            for (int sy = 0; sy < 4; sy++)
                for (int sx = 0; sx < 4; sx++)
                    cover += inside(s->shape, 8 * x + 2 * sx + 1 - cx, 8 * y + 2 * sy + 1 - cy, h,
                                    (const int64_t(*)[2])star);
            if (!cover)
                continue;
            uint8_t *p = rgb + 3 * ((int64_t)y * px + x);
            for (int c = 0; c < 3; c++)
                p[c] = (uint8_t)((bg[c] * (16 - cover) + fg[c] * cover + 8) / 16);
        }
    }
}
