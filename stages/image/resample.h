/* resample.h — Pillow's BICUBIC resize (ImagingResample, Pillow 9.4), byte
 * for byte, for packed 8-bit RGB, as torchvision's F.resize uses it on PIL
 * images: a separable convolution with the a = -0.5 cubic, support stretched
 * by the scale when shrinking (antialias), weights normalized over the taps
 * inside the image and rounded to 22-bit fixed point, the horizontal pass
 * first into 8 bits, then the vertical one.
 *
 * Two implementations of the same integer arithmetic: portable C, and AVX2
 * (chosen at run time where the CPU has it) which gives the same bytes. Not
 * here: other filters, other pixel layouts. */
#ifndef BAGEL_IMG_RESAMPLE_H
#define BAGEL_IMG_RESAMPLE_H

#include <stdbool.h>
#include <stdint.h>

/* in (ih, iw, 3) u8, rows packed -> out (oh, ow, 3) u8, rows packed. simd:
 * false forces the portable code (tests compare both with Pillow). 0, or -1
 * when out of memory or a size is not positive. */
int img_resample(const uint8_t *in, int iw, int ih, uint8_t *out, int ow, int oh, bool simd);

/* Whether img_resample(simd = true) uses AVX2 on this CPU. */
bool img_resample_has_simd(void);

#endif
