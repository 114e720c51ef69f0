/* cuda_rows.cu — row gather/scatter, out[oi[r]] = (or +=) in[ii[r]] for rows
 * of c floats, one thread per element. A destination row may repeat in
 * rows_add (embedding backward), so the add is an atomicAdd: the sum is the
 * CPU's up to the order of the additions. */
#include "cuda_internal.h"

template <bool ADD>
__global__ void k_rows(float *out, const int32_t *oi, const float *in, const int32_t *ii, int n, int c)
{
    size_t total = (size_t)n * c;
    CU_FOR(t, total)
    {
        int r = (int)(t / c), j = (int)(t % c);
        size_t o = (size_t)(oi ? oi[r] : r) * c + j, i = (size_t)(ii ? ii[r] : r) * c + j;
        if (ADD)
            atomicAdd(out + o, in[i]);
        else
            out[o] = in[i];
    }
}

void cuda_rows_copy(float *out, const int32_t *oi, const float *in, const int32_t *ii, int n, int c)
{
    if (n <= 0 || c <= 0)
        return;
    k_rows<false><<<cuda_blocks((size_t)n * c), CU_THREADS, 0, cuda_stream>>>(out, oi, in, ii, n, c);
    CU_LAUNCHED();
}

void cuda_rows_add(float *out, const int32_t *oi, const float *in, const int32_t *ii, int n, int c)
{
    if (n <= 0 || c <= 0)
        return;
    k_rows<true><<<cuda_blocks((size_t)n * c), CU_THREADS, 0, cuda_stream>>>(out, oi, in, ii, n, c);
    CU_LAUNCHED();
}
