/* wgmma_probe.cu — checks, on a Hopper GPU, the layouts a wgmma attention
 * kernel relies on: A from registers in the mma.m16n8k16 A layout per warp,
 * the accumulators in the mma C layout per warp, and shared-memory operands
 * in the canonical K-major layout without swizzle (core matrices of 8 rows x
 * 16 bytes) with the leading byte offset read either way. One product
 * D(64xN) = A(64x16)·B(16xN) on small integers (exact in bf16), each
 * variant's largest error against the CPU.
 *   nvcc -O2 -std=c++17 -gencode arch=compute_90a,code=sm_90a wgmma_probe.cu -o wgmma_probe */
#include "../../kernels/cuda/wgmma.h"
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
typedef __nv_bfloat16 bf16;
/* scale-d is a predicate: false, so d = A·B */
#define WG_P0 "{\n.reg .pred p;\nsetp.ne.b32 p, 0, 0;\n"

/* d (64×N fp32, each warp's 16 rows in the mma C layout) = A·B: A 64×16
 * bf16 from registers (each warp its 16 rows in the mma.m16n8k16 A layout)
 * or by descriptor, B 16×N by descriptor */
__device__ static inline void wg_m64n64k16(float (&d)[8][4], const uint32_t a[4], uint64_t db)
{
    asm volatile(WG_P0 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " WG_R32
                       ", {%32, %33, %34, %35}, %36, p, 1, 1, 0;\n}\n"
                 : WG_D64
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
}
__device__ static inline void wg_m64n128k16(float (&d)[16][4], const uint32_t a[4], uint64_t db)
{
    asm volatile(WG_P0 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " WG_R64
                       ", {%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"
                 : WG_D128
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
}
__device__ static inline void wg_ss_m64n64k16(float (&d)[8][4], uint64_t da, uint64_t db)
{
    asm volatile(WG_P0 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " WG_R32
                       ", %32, %33, p, 1, 1, 0, 0;\n}\n"
                 : WG_D64
                 : "l"(da), "l"(db));
}
__device__ static inline void wg_ss_m64n128k16(float (&d)[16][4], uint64_t da, uint64_t db)
{
    asm volatile(WG_P0 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " WG_R64
                       ", %64, %65, p, 1, 1, 0, 0;\n}\n"
                 : WG_D128
                 : "l"(da), "l"(db));
}

__device__ static inline uint64_t desc(const bf16 *p, uint32_t lbo, uint32_t sbo)
{
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    return (uint64_t)((a & 0x3FFFF) >> 4) | (uint64_t)((lbo >> 4) & 0x3FFF) << 16 | (uint64_t)((sbo >> 4) & 0x3FFF) << 32;
}

/* element (r, c) of an R x 16 K-major tile (c the reduction index) */
template <int R> __device__ static inline int canon(int r, int c) { return ((c / 8) * (R / 8) + r / 8) * 64 + (r % 8) * 8 + c % 8; }

/* ss: 0 A from registers, B stored by ordinary stores; 1 A from shared
 * memory too; 2 and 3 as 0 but B copied in by cp.async from Bt (N x 16
 * bf16, a row per column of B), with (2) and without (3) the proxy fence.
 * lbo/sbo: B's descriptor offsets; alo/aso: A's */
template <int N>
__global__ void probe(const float *A, const float *B, const bf16 *Bt, float *D, int ss, uint32_t lbo, uint32_t sbo,
                      uint32_t alo, uint32_t aso)
{
    __shared__ __align__(128) bf16 bs[N * 16];
    __shared__ __align__(128) bf16 as[64 * 16];
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    if (ss >= 2) {
        for (int c = tid; c < N * 2; c += 128) { /* 16-byte chunk c: column n of B, k 8·cg.. */
            int n = c / 2, cg = c % 2;
            uint32_t a = (uint32_t)__cvta_generic_to_shared(bs + canon<N>(n, cg * 8));
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(a), "l"(Bt + n * 16 + cg * 8));
        }
        asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;\n" ::: "memory");
    } else
        for (int i = tid; i < N * 16; i += 128) {
            int n = i / 16, k = i % 16; /* B[k][n] */
            bs[canon<N>(n, k)] = __float2bfloat16(B[k * N + n]);
        }
    for (int i = tid; i < 64 * 16; i += 128) {
        int m = i / 16, k = i % 16;
        as[canon<64>(m, k)] = __float2bfloat16(A[m * 16 + k]);
    }
    if (ss != 3)
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    auto pk = [](float lo, float hi) {
        __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&v);
    };
    int r0 = warp * 16 + g;
    uint32_t a[4] = {pk(A[r0 * 16 + 2 * t], A[r0 * 16 + 2 * t + 1]), pk(A[(r0 + 8) * 16 + 2 * t], A[(r0 + 8) * 16 + 2 * t + 1]),
                     pk(A[r0 * 16 + 2 * t + 8], A[r0 * 16 + 2 * t + 9]),
                     pk(A[(r0 + 8) * 16 + 2 * t + 8], A[(r0 + 8) * 16 + 2 * t + 9])};
    float d[N / 8][4];
    for (int j = 0; j < N / 8; j++)
        d[j][0] = d[j][1] = d[j][2] = d[j][3] = 0.0f;
    wg_hold(d);
    wg_fence();
    if (ss == 1) {
        if constexpr (N == 64)
            wg_ss_m64n64k16(d, desc(as, alo, aso), desc(bs, lbo, sbo));
        else
            wg_ss_m64n128k16(d, desc(as, alo, aso), desc(bs, lbo, sbo));
    } else {
        if constexpr (N == 64)
            wg_m64n64k16(d, a, desc(bs, lbo, sbo));
        else
            wg_m64n128k16(d, a, desc(bs, lbo, sbo));
    }
    wg_commit();
    wg_wait<0>();
    wg_hold(d);
    for (int j = 0; j < N / 8; j++)
        for (int e = 0; e < 4; e++) {
            int r = r0 + 8 * (e / 2), c = 8 * j + 2 * t + (e % 2);
            D[r * N + c] = d[j][e];
        }
}

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e_)); exit(2); } } while (0)

template <int N> static int run(int which)
{
    float *hA = (float *)malloc(64 * 16 * 4), *hB = (float *)malloc(16 * N * 4), *hD = (float *)malloc(64 * N * 4),
          *ref = (float *)malloc(64 * N * 4);
    srand(N);
    for (int i = 0; i < 64 * 16; i++) hA[i] = (float)(rand() % 5 - 2);
    for (int i = 0; i < 16 * N; i++) hB[i] = (float)(rand() % 5 - 2);
    for (int m = 0; m < 64; m++)
        for (int n = 0; n < N; n++) {
            float s = 0;
            for (int k = 0; k < 16; k++) s += hA[m * 16 + k] * hB[k * N + n];
            ref[m * N + n] = s;
        }
    bf16 *hBt = (bf16 *)malloc(N * 16 * 2), *Bt;
    for (int n = 0; n < N; n++)
        for (int k = 0; k < 16; k++)
            hBt[n * 16 + k] = __float2bfloat16(hB[k * N + n]);
    CK(cudaMalloc(&Bt, N * 16 * 2));
    CK(cudaMemcpy(Bt, hBt, N * 16 * 2, cudaMemcpyHostToDevice));
    float *A, *B, *D;
    CK(cudaMalloc(&A, 64 * 16 * 4)); CK(cudaMalloc(&B, 16 * N * 4)); CK(cudaMalloc(&D, 64 * N * 4));
    CK(cudaMemcpy(A, hA, 64 * 16 * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(B, hB, 16 * N * 4, cudaMemcpyHostToDevice));
    uint32_t big_b = (N / 8) * 128, big_a = (64 / 8) * 128;
    struct { const char *name; int ss; uint32_t lbo, sbo, alo, aso; } v[] = {
        {"RS  B: lbo=next k group, sbo=next row group", 0, big_b, 128, 0, 0},
        {"RS  B: lbo=next row group, sbo=next k group", 0, 128, big_b, 0, 0},
        {"SS  both: lbo=next k group, sbo=next row group", 1, big_b, 128, big_a, 128},
        {"SS  both: lbo=next row group, sbo=next k group", 1, 128, big_b, 128, big_a},
        {"RS  B by cp.async, proxy fence", 2, big_b, 128, 0, 0},
        {"RS  B by cp.async, no proxy fence", 3, big_b, 128, 0, 0},
    };
    auto &x = v[which];
    printf("N=%3d %-48s ", N, x.name);
    fflush(stdout);
    CK(cudaMemset(D, 0xff, 64 * N * 4));
    probe<N><<<1, 128>>>(A, B, Bt, D, x.ss, x.lbo, x.sbo, x.alo, x.aso);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(hD, D, 64 * N * 4, cudaMemcpyDeviceToHost));
    int bad = 0, first = -1;
    for (int i = 0; i < 64 * N; i++)
        if (!(hD[i] == ref[i]) && bad++ == 0)
            first = i;
    printf("wrong %5d of %5d", bad, 64 * N);
    if (first >= 0)
        printf("  first (%d,%d): %g want %g", first / N, first % N, hD[first], ref[first]);
    printf("\n");
    return bad != 0;
}

/* wgmma_probe: every variant, each in a process of its own (a wrong
 * descriptor can fault, and a fault ends the process's CUDA context);
 * wgmma_probe V N: variant V (0-5) at N (64 or 128) */
int main(int argc, char **argv)
{
    if (argc == 3) {
        int v = atoi(argv[1]), n = atoi(argv[2]);
        return n == 128 ? run<128>(v) : run<64>(v);
    }
    int bad = 0;
    for (int n = 64; n <= 128; n *= 2)
        for (int v = 0; v < 6; v++) {
            char cmd[4200];
            snprintf(cmd, sizeof cmd, "'%s' %d %d", argv[0], v, n);
            fflush(stdout);
            bad |= system(cmd) != 0;
        }
    return bad;
}
