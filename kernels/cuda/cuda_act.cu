/* cuda_act.cu — elementwise activations: SwiGLU, GELU (tanh form computed
 * as x·sigmoid(2u), exactly as kernels/cpu/cpu_act.c explains) and SiLU.
 * Backwards accumulate and skip NULL gradients. */
#include "cuda_internal.h"

#define GELU_K 0.7978845608028654f /* sqrt(2/π) */
#define GELU_C 0.044715f

__global__ void k_swiglu_fwd(float *out, const float *gate, const float *up, size_t m)
{
    CU_FOR(i, m) out[i] = gate[i] * cuda_sigmoid(gate[i]) * up[i];
}

/* SET: dgate and dup written (swiglu_bwd_set), else added to */
template <bool SET>
__global__ void k_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t m)
{
    CU_FOR(i, m)
    {
        float g = gate[i], s = cuda_sigmoid(g);
        if (dgate)
            dgate[i] = (SET ? 0.0f : dgate[i]) + dout[i] * up[i] * s * (1.0f + g * (1.0f - s));
        if (dup)
            dup[i] = (SET ? 0.0f : dup[i]) + dout[i] * g * s;
    }
}

__global__ void k_gelu_fwd(float *out, const float *in, size_t m)
{
    CU_FOR(i, m)
    {
        float x = in[i];
        out[i] = x * cuda_sigmoid(2.0f * GELU_K * (x + GELU_C * x * x * x));
    }
}

/* SET: din written (gelu_bwd_set), else added to */
template <bool SET> __global__ void k_gelu_bwd(float *din, const float *dout, const float *in, size_t m)
{
    CU_FOR(i, m)
    {
        float x = in[i];
        float s = cuda_sigmoid(2.0f * GELU_K * (x + GELU_C * x * x * x));
        float du = 2.0f * GELU_K * (1.0f + 3.0f * GELU_C * x * x);
        din[i] = (SET ? 0.0f : din[i]) + dout[i] * (s + x * s * (1.0f - s) * du);
    }
}

__global__ void k_silu_fwd(float *out, const float *in, size_t m) { CU_FOR(i, m) out[i] = in[i] * cuda_sigmoid(in[i]); }

__global__ void k_silu_bwd(float *din, const float *dout, const float *in, size_t m)
{
    CU_FOR(i, m)
    {
        float x = in[i], s = cuda_sigmoid(x);
        din[i] += dout[i] * s * (1.0f + x * (1.0f - s));
    }
}

#define LAUNCH(kern, m, ...)                                                                                           \
    do {                                                                                                               \
        if ((m) == 0)                                                                                                  \
            return;                                                                                                    \
        kern<<<cuda_blocks(m), CU_THREADS, 0, cuda_stream>>>(__VA_ARGS__);                                             \
        CU_LAUNCHED();                                                                                                 \
    } while (0)

void cuda_swiglu_fwd(float *out, const float *gate, const float *up, size_t m)
{
    LAUNCH(k_swiglu_fwd, m, out, gate, up, m);
}

void cuda_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t m)
{
    if (!dgate && !dup)
        return;
    LAUNCH(k_swiglu_bwd<false>, m, dgate, dup, dout, gate, up, m);
}

void cuda_swiglu_bwd_set(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t m)
{
    if (!dgate && !dup)
        return;
    LAUNCH(k_swiglu_bwd<true>, m, dgate, dup, dout, gate, up, m);
}

void cuda_gelu_fwd(float *out, const float *in, size_t m) { LAUNCH(k_gelu_fwd, m, out, in, m); }

void cuda_gelu_bwd(float *din, const float *dout, const float *in, size_t m)
{
    if (!din)
        return;
    LAUNCH(k_gelu_bwd<false>, m, din, dout, in, m);
}

void cuda_gelu_bwd_set(float *din, const float *dout, const float *in, size_t m)
{
    if (!din)
        return;
    LAUNCH(k_gelu_bwd<true>, m, din, dout, in, m);
}

void cuda_silu_fwd(float *out, const float *in, size_t m) { LAUNCH(k_silu_fwd, m, out, in, m); }

void cuda_silu_bwd(float *din, const float *dout, const float *in, size_t m)
{
    if (!din)
        return;
    LAUNCH(k_silu_bwd, m, din, dout, in, m);
}
