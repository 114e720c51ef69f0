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

/* one block a row: each thread's best (value, first index), then a
 * reduction that keeps the larger value and, on a tie, the smaller index */
__global__ static void k_argmax_rows(int32_t *out, const float *x, int c)
{
    __shared__ float sv[32];
    __shared__ int si[32];
    const float *v = x + (size_t)blockIdx.x * c;
    float best = -INFINITY;
    int bi = -1;
    for (int j = threadIdx.x; j < c; j += blockDim.x) {
        float y = v[j];
        if (bi < 0 ? y == y : y > best)
            best = y, bi = j;
    }
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, best, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (oi >= 0 && (bi < 0 || ov > best || (ov == best && oi < bi)))
            best = ov, bi = oi;
    }
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0)
        sv[w] = best, si[w] = bi;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int k = 1; k < (int)(blockDim.x >> 5); k++)
            if (si[k] >= 0 && (bi < 0 || sv[k] > best || (sv[k] == best && si[k] < bi)))
                best = sv[k], bi = si[k];
        out[blockIdx.x] = bi < 0 ? 0 : bi;
    }
}

void cuda_argmax_rows(int32_t *out, const float *x, int n, int c)
{
    if (n <= 0 || c <= 0)
        return;
    k_argmax_rows<<<(unsigned)n, 1024, 0, cuda_stream>>>(out, x, c);
    CU_LAUNCHED();
}
