/* wgmma_rate.cu — the rate of a Hopper GPU's wgmma products by operand
 * layout in shared memory: K-major without swizzle (core matrices of 8 rows
 * x 16 bytes, what kernels/cuda/cuda_flash.cu stages) against K-major with
 * the 128-byte swizzle (rows of 128 bytes, 8-row atoms of 1 KB, 16-byte
 * chunk c of row r at chunk c ^ (r % 8)). First one product per layout on
 * small integers (exact in bf16) against the CPU, then each product shape
 * in a loop: a block a multiprocessor, two warpgroups, each issuing eight
 * k-steps (K = 128) into its accumulator, then waiting, R times; TFLOP/s.
 * The products are kernels/cuda/wgmma.h's.
 *   nvcc -O2 -std=c++17 -gencode arch=compute_90a,code=sm_90a wgmma_rate.cu -o wgmma_rate */
#include "../../kernels/cuda/wgmma.h"
#include <stdio.h>
#include <stdlib.h>
typedef __nv_bfloat16 bf16;

/* element (r, k) of an R-row K-major tile of K columns, and the descriptor
 * of k-step kk (16 columns), per layout: 0 no swizzle (k-groups of 8 outer,
 * row groups inner; leading byte offset R/8·128, stride 128), 1 the 128-byte
 * swizzle (K in blocks of 64 columns, R rows of 128 bytes each; stride 1 KB;
 * the tile 1 KB aligned) */
template <int R> __device__ static inline int elem(int sw, int r, int k)
{
    if (!sw)
        return ((k / 8) * (R / 8) + r / 8) * 64 + (r % 8) * 8 + k % 8;
    return (k / 64) * R * 64 + r * 64 + (((k % 64) / 8) ^ (r % 8)) * 8 + k % 8;
}
template <int R> __device__ static inline uint64_t desc(int sw, const bf16 *p, int kk)
{
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    if (!sw) {
        a += kk * 2 * (R / 8) * 128;
        return (uint64_t)((a & 0x3FFFF) >> 4) | (uint64_t)(((R / 8) * 128) >> 4) << 16 | (uint64_t)(128 >> 4) << 32;
    }
    a += (kk / 4) * R * 128 + (kk % 4) * 32;
    return (uint64_t)((a & 0x3FFFF) >> 4) | (uint64_t)1 << 16 | (uint64_t)(1024 >> 4) << 32 | (uint64_t)1 << 62;
}

/* one product D (64×N) = A (64×K) · Bᵀ (B: N×K), K = 128 in eight k-steps */
template <int N>
__global__ void check(const float *A, const float *B, float *D, int sw, int ss)
{
    __shared__ __align__(1024) bf16 as[64 * 128];
    __shared__ __align__(1024) bf16 bs[N * 128];
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    for (int i = tid; i < 64 * 128; i += 128)
        as[elem<64>(sw, i / 128, i % 128)] = __float2bfloat16(A[i]);
    for (int i = tid; i < N * 128; i += 128)
        bs[elem<N>(sw, i / 128, i % 128)] = __float2bfloat16(B[i]);
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    float d[N / 8][4] = {};
    int r0 = warp * 16 + g;
    wg_hold(d);
    wg_fence();
    for (int kk = 0; kk < 8; kk++) {
        if (ss) {
            wg_ss<N>(d, desc<64>(sw, as, kk), desc<N>(sw, bs, kk), kk > 0);
        } else {
            auto pk = [&](int r, int c) {
                __nv_bfloat162 v = __floats2bfloat162_rn(A[r * 128 + c], A[r * 128 + c + 1]);
                return *reinterpret_cast<uint32_t *>(&v);
            };
            int c = kk * 16 + 2 * t;
            uint32_t a[4] = {pk(r0, c), pk(r0 + 8, c), pk(r0, c + 8), pk(r0 + 8, c + 8)};
            wg_rs<N>(d, a, desc<N>(sw, bs, kk)); /* adds to d, zero at first */
        }
    }
    wg_commit();
    wg_wait<0>();
    wg_hold(d);
    for (int j = 0; j < N / 8; j++)
        for (int e = 0; e < 4; e++)
            D[(r0 + 8 * (e / 2)) * N + 8 * j + 2 * t + (e % 2)] = d[j][e];
}

template <int N, int sw, int ss>
__global__ void __launch_bounds__(256, 1) rate(float *sink, int reps)
{
    extern __shared__ __align__(1024) unsigned char smem[];
    bf16 *as = reinterpret_cast<bf16 *>(smem), *bs = as + 2 * 64 * 128;
    const int wg = threadIdx.x / 128;
    for (int i = threadIdx.x; i < (2 * 64 + N) * 128; i += 256)
        as[i] = __float2bfloat16((float)((i * 7) % 5 - 2));
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    const bf16 *aw = as + wg * 64 * 128;
    float d[N / 8][4];
    for (int j = 0; j < N / 8; j++)
        d[j][0] = d[j][1] = d[j][2] = d[j][3] = 0.0f;
    uint32_t a[4] = {0x3f803f80u, 0x3f803f80u, 0x3f803f80u, 0x3f803f80u};
    for (int r = 0; r < reps; r++) {
        wg_hold(d);
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < 8; kk++) {
            if constexpr (ss != 0)
                wg_ss<N>(d, desc<64>(sw, aw, kk), desc<N>(sw, bs, kk), 1);
            else
                wg_rs<N>(d, a, desc<N>(sw, bs, kk));
        }
        wg_commit();
        wg_wait<0>();
        wg_hold(d);
    }
    float s = 0;
    for (int j = 0; j < N / 8; j++)
        s += d[j][0] + d[j][1] + d[j][2] + d[j][3];
    if (s == 12345.0f)
        sink[0] = s;
}

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e_)); exit(2); } } while (0)

template <int N> static int run_check(int sw, int ss)
{
    float *hA = (float *)malloc(64 * 128 * 4), *hB = (float *)malloc(N * 128 * 4), *hD = (float *)malloc(64 * N * 4);
    srand(N + 2 * sw + ss);
    for (int i = 0; i < 64 * 128; i++) hA[i] = (float)(rand() % 5 - 2);
    for (int i = 0; i < N * 128; i++) hB[i] = (float)(rand() % 5 - 2);
    float *A, *B, *D;
    CK(cudaMalloc(&A, 64 * 128 * 4)); CK(cudaMalloc(&B, N * 128 * 4)); CK(cudaMalloc(&D, 64 * N * 4));
    CK(cudaMemcpy(A, hA, 64 * 128 * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(B, hB, N * 128 * 4, cudaMemcpyHostToDevice));
    CK(cudaMemset(D, 0xff, 64 * N * 4));
    check<N><<<1, 128>>>(A, B, D, sw, ss);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(hD, D, 64 * N * 4, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int m = 0; m < 64; m++)
        for (int n = 0; n < N; n++) {
            float s = 0;
            for (int k = 0; k < 128; k++) s += hA[m * 128 + k] * hB[n * 128 + k];
            bad += !(hD[m * N + n] == s);
        }
    printf("check %s m64n%dk16 %-10s wrong %d of %d\n", ss ? "SS" : "RS", N, sw ? "swizzle128" : "none", bad, 64 * N);
    return bad != 0;
}

template <int N, int sw, int ss> static void run_rate(int sms)
{
    const int reps = 4000;
    size_t smem = (size_t)(2 * 64 + N) * 128 * 2;
    CK(cudaFuncSetAttribute(rate<N, sw, ss>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    float *sink;
    CK(cudaMalloc(&sink, 4));
    rate<N, sw, ss><<<sms, 256, smem>>>(sink, 10);
    CK(cudaDeviceSynchronize());
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    cudaEventRecord(e0);
    rate<N, sw, ss><<<sms, 256, smem>>>(sink, reps);
    cudaEventRecord(e1);
    CK(cudaEventSynchronize(e1));
    float ms;
    cudaEventElapsedTime(&ms, e0, e1);
    double flop = (double)sms * 2 * reps * 8 * 64 * N * 16 * 2;
    printf("rate  %s m64n%dk16 %-10s %7.1f TFLOP/s\n", ss ? "SS" : "RS", N, sw ? "swizzle128" : "none",
           flop / (ms * 1e-3) / 1e12);
    CK(cudaFree(sink));
}

int main(void)
{
    int sms, bad = 0;
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    for (int sw = 0; sw < 2; sw++)
        for (int ss = 0; ss < 2; ss++) {
            bad |= run_check<64>(sw, ss);
            bad |= run_check<128>(sw, ss);
        }
    run_rate<64, 0, 1>(sms), run_rate<64, 1, 1>(sms), run_rate<128, 0, 1>(sms), run_rate<128, 1, 1>(sms);
    run_rate<64, 0, 0>(sms), run_rate<64, 1, 0>(sms), run_rate<128, 0, 0>(sms), run_rate<128, 1, 0>(sms);
    return bad;
}
