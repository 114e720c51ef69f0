/* wgmma.h — Hopper's warpgroup matrix products (wgmma, sm_90a) as the
 * attention kernels (cuda_flash.cu) and the probes (scripts/probe/) use
 * them: products with the accumulators in registers and the operands by
 * shared-memory descriptor (or A from registers), their fences, commits and
 * waits, and the descriptor of a tile in the canonical K-major layout
 * without swizzle. Built for another architecture, the products compile to
 * nothing (FA_WG_ARCH unset); their callers never run there. */
#ifndef BAGEL_WGMMA_H
#define BAGEL_WGMMA_H

#include <cuda_bf16.h>
#include <stdint.h>

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FA_WG_ARCH 1
#endif

/* operand lists of the accumulators: 8 columns (4 registers) at a time */
#define WG_D8(j) "+f"(d[j][0]), "+f"(d[j][1]), "+f"(d[j][2]), "+f"(d[j][3])
#define WG_D64 WG_D8(0), WG_D8(1), WG_D8(2), WG_D8(3), WG_D8(4), WG_D8(5), WG_D8(6), WG_D8(7)
#define WG_D128 WG_D64, WG_D8(8), WG_D8(9), WG_D8(10), WG_D8(11), WG_D8(12), WG_D8(13), WG_D8(14), WG_D8(15)
#define WG_D80 WG_D64, WG_D8(8), WG_D8(9)
#define WG_R40                                                                                                         \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, "  \
    "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39}"
#define WG_R32                                                                                                         \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, "  \
    "%24, %25, %26, %27, %28, %29, %30, %31}"
#define WG_R64                                                                                                         \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, "  \
    "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, "    \
    "%46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"

/* d (64×N fp32; each warp's 16 rows in the mma C layout) (+)= A·B, A 64×16
 * and B 16×N bf16 by descriptor; acc 0 sets d = A·B */
template <int N> __device__ static inline void wg_ss(float (&d)[N / 8][4], uint64_t da, uint64_t db, int acc)
{
#ifdef FA_WG_ARCH
    if constexpr (N == 64)
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " WG_R32 ", %32, %33, p, 1, 1, 0, 0;\n}\n"
                     : WG_D64
                     : "l"(da), "l"(db), "r"(acc));
    else
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " WG_R64 ", %64, %65, p, 1, 1, 0, 0;\n}\n"
                     : WG_D128
                     : "l"(da), "l"(db), "r"(acc));
#endif
}

/* d (64×N fp32) += A·B, A 64×16 bf16 from registers (each warp its 16 rows
 * in the mma.m16n8k16 A layout), B 16×N by descriptor; N 64, 80 (the ViT's
 * head dim 72, padded) or 128 */
template <int N> __device__ static inline void wg_rs(float (&d)[N / 8][4], const uint32_t a[4], uint64_t db)
{
#ifdef FA_WG_ARCH
    if constexpr (N == 80)
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n80k16.f32.bf16.bf16 " WG_R40
                     ", {%40, %41, %42, %43}, %44, p, 1, 1, 0;\n}\n"
                     : WG_D80
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
    else if constexpr (N == 64)
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " WG_R32
                     ", {%32, %33, %34, %35}, %36, p, 1, 1, 0;\n}\n"
                     : WG_D64
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
    else
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " WG_R64
                     ", {%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"
                     : WG_D128
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
#endif
}

__device__ static inline void wg_fence()
{
#ifdef FA_WG_ARCH
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ static inline void wg_commit()
{
#ifdef FA_WG_ARCH
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
/* until at most N of the warpgroup's committed groups are pending */
template <int N> __device__ static inline void wg_wait()
{
#ifdef FA_WG_ARCH
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
/* ties registers the tensor cores write asynchronously to this point, so
 * that the compiler moves no use of them across it */
template <int N> __device__ static inline void wg_hold(float (&d)[N][4])
{
#pragma unroll
    for (int j = 0; j < N; j++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            asm volatile("" : "+f"(d[j][e])::"memory");
}

/* the descriptor of a canonical tile at p: leading byte offset lbo */
__device__ static inline uint64_t wg_desc(const __nv_bfloat16 *p, uint32_t lbo)
{
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    return (uint64_t)((a & 0x3FFFF) >> 4) | (uint64_t)((lbo >> 4) & 0x3FFF) << 16 | (uint64_t)(128 >> 4) << 32;
}

/* The descriptor of k-step kk (16 columns) of a canonical tile of R rows
 * that starts e elements (a multiple of 8) past the buffer whose descriptor
 * is b (wg_desc, with leading byte offset (R/8)·128): the address field is
 * in 16-byte units, so offsets add to it. The kernels take each buffer's
 * descriptor once; computed from the pointer at every product, the
 * descriptors had taken a third of the dK/dV kernel's instructions, in the
 * uniform datapath. */
template <int R> __device__ static inline uint64_t wg_step(uint64_t b, int e, int kk)
{
    return b + ((e + kk * 2 * (R / 8) * 64) >> 3);
}

#endif
