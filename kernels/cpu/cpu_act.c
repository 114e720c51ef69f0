/* cpu_act.c — elementwise activations: SwiGLU's silu(gate) ⊙ up, GELU with
 * the tanh approximation (gelu_pytorch_tanh), and SiLU. */
#include <math.h>

#include "cpu.h"

void cpu_swiglu_fwd(float *out, const float *gate, const float *up, size_t m)
{
#pragma omp parallel for if (m > CPU_OMP_MIN)
    for (size_t i = 0; i < m; i++)
        out[i] = gate[i] * cpu_sigmoid(gate[i]) * up[i];
}

/* silu'(g) = s·(1 + g·(1 − s)) with s = sigmoid(g); set 0 adds to dgate
 * and dup (swiglu_bwd), 1 writes them (swiglu_bwd_set) */
static void swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t m,
                       int set)
{
#pragma omp parallel for if (m > CPU_OMP_MIN)
    for (size_t i = 0; i < m; i++) {
        float g = gate[i], s = cpu_sigmoid(g);
        if (dgate)
            dgate[i] = (set ? 0.0f : dgate[i]) + dout[i] * up[i] * s * (1.0f + g * (1.0f - s));
        if (dup)
            dup[i] = (set ? 0.0f : dup[i]) + dout[i] * g * s;
    }
}

void cpu_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t m)
{
    swiglu_bwd(dgate, dup, dout, gate, up, m, 0);
}

void cpu_swiglu_bwd_set(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t m)
{
    swiglu_bwd(dgate, dup, dout, gate, up, m, 1);
}

#define GELU_K 0.7978845608028654f /* sqrt(2/π) */
#define GELU_C 0.044715f

/* gelu_tanh(x) = 0.5x(1 + tanh(u)), u = k(x + c·x³), computed as
 * x·sigmoid(2u), the same function (1 + tanh(u) = 2·sigmoid(2u)): for
 * negative x, 1 + tanh(u) cancels to a few correct bits in float while the
 * sigmoid keeps full relative precision. */
void cpu_gelu_fwd(float *out, const float *in, size_t m)
{
#pragma omp parallel for if (m > CPU_OMP_MIN)
    for (size_t i = 0; i < m; i++) {
        float x = in[i];
        out[i] = x * cpu_sigmoid(2.0f * GELU_K * (x + GELU_C * x * x * x));
    }
}

/* d/dx x·s(2u) = s + x·s(1 − s)·2k(1 + 3c·x²); set: din written (gelu_bwd_set) */
static void gelu_bwd(float *din, const float *dout, const float *in, size_t m, int set)
{
    if (!din)
        return;
#pragma omp parallel for if (m > CPU_OMP_MIN)
    for (size_t i = 0; i < m; i++) {
        float x = in[i];
        float s = cpu_sigmoid(2.0f * GELU_K * (x + GELU_C * x * x * x));
        float du = 2.0f * GELU_K * (1.0f + 3.0f * GELU_C * x * x);
        din[i] = (set ? 0.0f : din[i]) + dout[i] * (s + x * s * (1.0f - s) * du);
    }
}

void cpu_gelu_bwd(float *din, const float *dout, const float *in, size_t m) { gelu_bwd(din, dout, in, m, 0); }
void cpu_gelu_bwd_set(float *din, const float *dout, const float *in, size_t m) { gelu_bwd(din, dout, in, m, 1); }

void cpu_silu_fwd(float *out, const float *in, size_t m)
{
#pragma omp parallel for if (m > CPU_OMP_MIN)
    for (size_t i = 0; i < m; i++)
        out[i] = in[i] * cpu_sigmoid(in[i]);
}

void cpu_silu_bwd(float *din, const float *dout, const float *in, size_t m)
{
    if (!din)
        return;
#pragma omp parallel for if (m > CPU_OMP_MIN)
    for (size_t i = 0; i < m; i++) {
        float x = in[i], s = cpu_sigmoid(x);
        din[i] += dout[i] * s * (1.0f + x * (1.0f - s));
    }
}
