/* cpu_rope.c — rotary position embedding, half-split (NeoX / Qwen2) style, in
 * place on x[n, h, d]: for i < d/2 with angle = pos·inv_freq[i],
 *   x'[i] = x[i]·cos − x[i+d/2]·sin,  x'[i+d/2] = x[i+d/2]·cos + x[i]·sin.
 *
 * The angle is formed as PyTorch's Qwen2RotaryEmbedding forms it, in fp32:
 * inv_freq = 1 / theta^(2i/d) in float, then float(pos) · inv_freq in float,
 * then cos/sin of that float. Computing the angle in double would differ by
 * up to pos·2⁻²⁴ radians from the reference at large positions.
 *
 * The backward of a rotation is the rotation by −angle; it is applied in
 * place to the gradient (the gradient of a rotated buffer is that same buffer,
 * so there is nothing to accumulate into). An odd d leaves the last element
 * as it is. */
#include <math.h>

#include "cpu.h"

static float rope_inv_freq(int i, int d, float theta) { return 1.0f / powf(theta, (float)(2 * i) / (float)d); }

static void rope_apply(float *x, const int32_t *pos, int n, int h, int d, float theta, float sign)
{
    int half = d / 2;
#pragma omp parallel for if ((size_t)n * h * d > CPU_OMP_MIN)
    for (int r = 0; r < n; r++) {
        float *row = x + (size_t)r * h * d;
        float p = (float)pos[r];
        for (int i = 0; i < half; i++) {
            float ang = p * rope_inv_freq(i, d, theta);
            float c = cosf(ang), s = sign * sinf(ang);
            for (int j = 0; j < h; j++) {
                float *xh = row + (size_t)j * d;
                float a = xh[i], b = xh[i + half];
                xh[i] = a * c - b * s;
                xh[i + half] = b * c + a * s;
            }
        }
    }
}

void cpu_rope_fwd(float *x, const int32_t *pos, int n, int h, int d, float theta)
{
    rope_apply(x, pos, n, h, d, theta, 1.0f);
}

void cpu_rope_bwd(float *dx, const int32_t *pos, int n, int h, int d, float theta)
{
    rope_apply(dx, pos, n, h, d, theta, -1.0f);
}
