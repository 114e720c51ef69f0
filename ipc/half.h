/* half.h — f16 and bf16 to and from f32, rounding to nearest even.
 * f16 uses the compiler's _Float16 (IEEE binary16); bf16 is the top half of
 * an f32, rounded here. NaN stays NaN (quiet). */
#ifndef BAGEL_HALF_H
#define BAGEL_HALF_H

#include <stdint.h>
#include <string.h>

static inline float half_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t half_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) // NaN: keep it quiet, keep the sign
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float half_f16_to_f32(uint16_t h)
{
    _Float16 x;
    memcpy(&x, &h, 2);
    return (float)x;
}

static inline uint16_t half_f32_to_f16(float f)
{
    _Float16 x = (_Float16)f;
    uint16_t h;
    memcpy(&h, &x, 2);
    return h;
}

#endif
