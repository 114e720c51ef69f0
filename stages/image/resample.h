/* resample.h — Pillow's BICUBIC resize (ImagingResample, Pillow 9.4), byte
 * for byte, for packed 8-bit RGB, as torchvision's F.resize uses it on PIL
 * images: a separable convolution with the a = -0.5 cubic, support stretched
 * by the scale when shrinking (antialias), weights normalized over the taps
 * inside the image and rounded to 22-bit fixed point, the horizontal pass
 * first into 8 bits, then the vertical one.
 *
 * Three implementations of the same integer arithmetic, which give the same
 * bytes: portable C, AVX2 and AVX-512 (F, BW, VBMI), the vector ones chosen
 * at run time where the CPU has them. Not here: other filters, other pixel
 * layouts. */
#ifndef BAGEL_IMG_RESAMPLE_H
#define BAGEL_IMG_RESAMPLE_H

#include <stdbool.h>
#include <stdint.h>

/* The widest vector code img_resample may use (where the CPU has it); the
 * tests run every level and compare each with Pillow. */
typedef enum { IMG_SIMD_NONE, IMG_SIMD_AVX2, IMG_SIMD_AVX512 } img_simd_t;

/* in (ih, iw, 3) u8, rows packed -> out (oh, ow, 3) u8, rows packed. 0, or
 * -1 when out of memory or a size is not positive. */
int img_resample(const uint8_t *in, int iw, int ih, uint8_t *out, int ow, int oh, img_simd_t simd);

/* Whether img_resample(IMG_SIMD_AVX2 or above) uses AVX2 on this CPU. */
bool img_resample_has_simd(void);

#endif
