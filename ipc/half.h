/* half.h — f16 (IEEE binary16) and bf16 to and from f32, rounding to nearest
 * even. Written out rather than with _Float16, which not every compiler we
 * build with has on x86 (clang 14, the fuzzers' compiler, has not). NaN stays
 * NaN (quiet). Link with -lm (nearbyintf). */
#ifndef BAGEL_HALF_H
#define BAGEL_HALF_H

#include <math.h>
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
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, u;
    if (exp == 0) { // zero or subnormal: mant * 2^-24, exact in f32
        float f = (float)mant * 0x1p-24f;
        memcpy(&u, &f, 4);
        u |= sign;
    } else if (exp == 31) { // inf or NaN
        u = sign | 0x7f800000u | (mant << 13);
    } else {
        u = sign | ((exp + 112u) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t half_f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    u &= 0x7fffffffu;
    if (u >= 0x7f800000u) // inf stays inf, NaN becomes a quiet NaN
        return sign | (u > 0x7f800000u ? 0x7e00u : 0x7c00u);
    if (u >= 0x477ff000u) // from 65520 (halfway past 65504) up: rounds to inf
        return sign | 0x7c00u;
    if (u >= 0x38800000u) { // normal: drop 13 mantissa bits, nearest even
        u += 0x0fffu + ((u >> 13) & 1u);
        return sign | (uint16_t)((u >> 13) - (112u << 10));
    }
    // subnormal or zero: |f| * 2^24 < 2^10 is exact; round it to an integer,
    // nearest even (0x400, the smallest normal, is its own right encoding)
    float a;
    memcpy(&a, &u, 4);
    return sign | (uint16_t)nearbyintf(a * 0x1p24f);
}

#endif
