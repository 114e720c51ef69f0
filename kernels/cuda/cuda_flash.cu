/* cuda_flash.cu — packed attention (op_attn_t) on the tensor cores: bf16
 * operands, fp32 accumulation, the softmax in fp32, for --precision bf16.
 *
 * The same function as cuda_attention.cu (which stays the fp32 path and the
 * fallback for head dims this file has no instance for) and the same
 * outputs: out and the gradients fp32 by storage row, lse (natural log) by
 * storage row and head.
 *
 * Staging: q, k and v are gathered into sequence order and rounded to bf16,
 * head-major ([head][S][DP]) so that a tile of rows is one contiguous run,
 * and the head dim padded with zeros to DP, a multiple of 16 (the ViT's 72
 * runs as 80): zeros add nothing to a product. The split of every position
 * goes into a table, and the noise keys into a bitmap.
 *
 * The mask (kernels/attn_span.h): a query sees the keys of one span of its
 * sample less the noise keys, and one span of its own split; a key is seen
 * by one span of queries. So a row's visibility over a tile of 64 positions
 * is a 64-bit mask made from two ranges and the tile's noise bits (forward,
 * dQ) or from one range (dK/dV). A warp whose rows see none of a tile skips
 * it; one whose rows see all of it skips the mask.
 *
 * Forward (FA2 order): a block owns 16·NW queries of one head (NW warps of
 * 16 rows, 4 or 8), Q's fragments in registers, the last query tiles first;
 * it walks key tiles of 64 from the start of its first query's sample to the
 * last key its last query sees, so tiles of other samples and past the
 * causal front are never touched. Per tile: S = Q·Kᵀ (mma.sync m16n8k16),
 * the mask, the online softmax in the log2 domain, P rounded to bf16 and
 * reused from the accumulator registers as the A operand of O += P·V (V's
 * fragments through ldmatrix.trans).
 *
 * Backward, deterministic (every gradient row has one owner, no atomics):
 * dQ in one kernel that mirrors the forward (P recomputed from lse, dP =
 * dO·Vᵀ, dS = P ⊙ (dP − D), dQ += dS·K); dK and dV in another, a block per
 * 16·NW keys and query head, walking the query tiles that can see them:
 * Sᵀ = K·Qᵀ, Pᵀ, dV += Pᵀ·dO, dPᵀ = V·dOᵀ, dK += dSᵀ·Q; with grouped-query
 * attention each query head writes its own partial rows and k_fa_sum_group
 * adds the group's in head order. D = rowsum(dO ⊙ O) comes from a staging
 * kernel.
 *
 * On a Hopper GPU, padded head dims 64, 80 and 128 (the LLMs' and the
 * ViT's 72) take the wgmma kernels further down instead (k_fa_fwd_wg, k_fa_bwd_dq_wg,
 * k_fa_bwd_dkv_wg): the same functions and outputs, 1.2-2x the speed of
 * these on an H200; BAGEL_FA_FWD=sync and BAGEL_FA_BWD=sync keep these.
 * They read the sequence in positions of their own in which every sample
 * starts at a multiple of 128, so that no tile holds two samples' rows
 * (k_fa_layout_splits).
 *
 * Fragment layouts (PTX ISA, mma.m16n8k16 with .bf16): lane = 4·g + t; A
 * (16×16, row-major) a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..),
 * a3 = (g+8, 2t+8..); B (16×8, "col") b0 = (k 2t..2t+1, n g), b1 = (k 2t+8..,
 * n g); C (16×8) c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..). So a C tile pair
 * of 16×8 accumulators over keys 16j.. is the A fragment over those keys. */
#include "cuda_internal.h"
#include "../attn_span.h"

#include <cub/block/block_scan.cuh>
#include <cuda_bf16.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FA_BK 64 /* keys (queries, for dK/dV) a streamed tile */
/* A block has NW warps (4 or 8) of 16 rows each: 16·NW queries (forward,
 * dQ) or keys (dK/dV) of one head, 32·NW threads. */
#define FA_LOG2E 1.4426950408889634f

typedef __nv_bfloat16 bf16;

struct fa_meta {
    int S, nh, nkv, d, n_splits;
    float scale;
    const int32_t *ss, *sf, *sp; /* split_start, split_first, split of each position */
    const uint8_t *sm;           /* split_mode */
    const uint32_t *nb;          /* noise bits: bit p % 32 of word p / 32 for a key of a noise split;
                                    two zero words past the end */
    const int32_t *len;          /* the wgmma kernels' sample-aligned positions (fa_wg_layout): the
                                    used length, on the device; blocks past it return. NULL: S */
    int write;                   /* the wgmma backward: dq, dk, dv stored, not added to
                                    (op_attn_t.write); the other kernels add onto zeros */
};

/* ---- small device helpers */

__device__ static inline uint32_t pack_bf16(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

__device__ static inline void mma16816(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                       uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* four 8×8 bf16 matrices, transposed: lane l gives the row address of matrix
 * l / 8, row l % 8 */
__device__ static inline void ldsm_x4_t(uint32_t r[4], const bf16 *p)
{
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

__device__ static inline uint32_t lds32(const bf16 *p) { return *reinterpret_cast<const uint32_t *>(p); }

__device__ static inline int fa_split_of(const int32_t *ss, int n_splits, int pos)
{
    int lo = 0, hi = n_splits - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (ss[mid] <= pos)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* ex2.approx: one MUFU instruction; 2^-inf = +0 */
__device__ static inline float fa_exp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

/* The visibility of a row's 64-position tile as bits (kernels/attn_span.h).
 * A query row: keys [a, b) but noise, and [b, c); rows past S see nothing. */
struct fa_qspan {
    int a, b, c;
};

__device__ static inline fa_qspan fa_qspan_of(const fa_meta &m, int p)
{
    fa_qspan r = {0, 0, 0};
    if (p < m.S)
        attn_span_query(m.ss, m.sf, m.sm, m.sp[p], p, &r.a, &r.b, &r.c);
    return r;
}

__device__ static inline uint64_t fa_qbits(const fa_qspan &q, int k0, uint64_t noise)
{
    return (attn_bits64(q.a, q.b, k0) & ~noise) | attn_bits64(q.b, q.c, k0);
}

/* A key row: the queries [lo, hi) see it */
__device__ static inline void fa_kspan_of(const fa_meta &m, int p, int *lo, int *hi)
{
    *lo = *hi = 0;
    if (p < m.S)
        attn_span_key(m.ss, m.sf, m.n_splits, m.sm, m.sp[p], p, lo, hi);
}

/* the keys the queries [q0, q1) can see lie in [lo, hi) */
__device__ static inline void fa_key_range(const fa_meta &m, int q0, int q1, int *lo, int *hi)
{
    int s0 = m.sp[q0], s1 = m.sp[q1 - 1];
    *lo = m.ss[m.sf[s0]];
    *hi = m.sm[s1] == OP_SPLIT_CAUSAL ? q1 : m.ss[s1 + 1];
}

/* the queries that can see keys [k0, k1) lie in [lo, hi): from the start of
 * the first key's split to the end of the last key's sample */
__device__ static inline void fa_query_range(const fa_meta &m, int k0, int k1, int *lo, int *hi)
{
    int s0 = m.sp[k0], s1 = m.sp[k1 - 1];
    *lo = m.ss[s0];
    int e = s1;
    while (e + 1 < m.n_splits && m.sf[e + 1] == m.sf[s1])
        e++;
    *hi = m.ss[e + 1];
}

/* ---- staging */

__global__ void k_fa_pos_split(int32_t *sp, const int32_t *ss, int n_splits, int S)
{
    CU_FOR(p, (size_t)S) sp[p] = fa_split_of(ss, n_splits, (int)p);
}

/* the noise bits of fa_meta, nw words, from sp (k_fa_pos_split first) */
__global__ void k_fa_noise_bits(uint32_t *nb, const int32_t *sp, const uint8_t *sm, int S, int nw)
{
    CU_FOR(w, (size_t)nw)
    {
        uint32_t b = 0;
        for (int i = 0; i < 32; i++) {
            int p = (int)w * 32 + i;
            if (p < S && sm[sp[p]] == OP_SPLIT_NOISE)
                b |= 1u << i;
        }
        nb[w] = b;
    }
}

/* The noise bits of keys [k0, k0 + 64) come from three words, loaded one
 * tile ahead (fa_noise_load) so that their latency hides behind a tile's
 * products, and joined when the tile is used (fa_noise_bits). */
__device__ static inline void fa_noise_load(uint32_t w[3], const uint32_t *nb, int k0)
{
    const uint32_t *p = nb + (k0 >> 5);
    w[0] = __ldg(p), w[1] = __ldg(p + 1), w[2] = __ldg(p + 2);
}

__device__ static inline uint64_t fa_noise_bits(const uint32_t w[3], int k0)
{
    int sh = k0 & 31;
    uint64_t v = ((uint64_t)w[1] << 32 | w[0]) >> sh;
    return sh ? v | (uint64_t)w[2] << (64 - sh) : v;
}

/* x [rows, nh, d] fp32 by storage row → dst [nh][S][DP] bf16 by position,
 * zero padded; a warp a (head, position) row, so that the index arithmetic
 * is done once a row and both sides are read and written whole */
__global__ void k_fa_stage(bf16 *dst, const float *x, const int32_t *rop, int S, int nh, int d, int DP)
{
    int w = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    if (w >= S * nh)
        return;
    int h = w / S, p = w - h * S;
    const float *src = x + ((size_t)(rop ? rop[p] : p) * nh + h) * d;
    bf16 *out = dst + (size_t)w * DP;
    for (int j = 2 * lane; j < DP; j += 64) {
        float a = j < d ? src[j] : 0.0f, b = j + 1 < d ? src[j + 1] : 0.0f;
        *reinterpret_cast<__nv_bfloat162 *>(out + j) = __floats2bfloat162_rn(a, b);
    }
}

static void fa_stage_rows(bf16 *dst, const float *x, const int32_t *rop, int S, int nh, int d, int dp)
{
    size_t rows = (size_t)S * nh;
    k_fa_stage<<<(unsigned)((rows * 32 + 255) / 256), 256, 0, cuda_stream>>>(dst, x, rop, S, nh, d, dp);
    CU_LAUNCHED();
}

/* D = rowsum(dO ⊙ O) and lse in the log2 domain, [nh][Sp] (Sp ≥ S: zeros
 * past S and where rop is negative), one warp a row */
__global__ void k_fa_stage_rows(float *D, float *lse2, const float *dout, const float *out, const float *lse,
                                const int32_t *rop, int S, int Sp, int nh, int d)
{
    int w = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    if (w >= Sp * nh)
        return;
    int h = w / Sp, p = w % Sp;
    const int row = p < S ? (rop ? rop[p] : p) : -1;
    if (row < 0) {
        if (lane == 0)
            D[w] = lse2[w] = 0.0f;
        return;
    }
    size_t r = (size_t)row * nh + h;
    float acc = 0.0f;
    for (int j = lane; j < d; j += 32)
        acc += dout[r * d + j] * out[r * d + j];
    for (int o = 16; o > 0; o >>= 1)
        acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) {
        D[w] = acc;
        lse2[w] = lse[r] * FA_LOG2E;
    }
}

/* ---- pipelining: 16-byte asynchronous copies into shared memory */

__device__ static inline void cp_async16(void *smem, const void *g, bool valid)
{
    uint32_t a = (uint32_t)__cvta_generic_to_shared(smem);
    int n = valid ? 16 : 0; /* 0 source bytes: the 16 shared bytes are zeroed */
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(a), "l"(g), "r"(n));
}
__device__ static inline void cp_async4(void *smem, const void *g, bool valid)
{
    uint32_t a = (uint32_t)__cvta_generic_to_shared(smem);
    int n = valid ? 4 : 0;
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(a), "l"(g), "r"(n));
}
__device__ static inline void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ static inline void cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

/* rows [p0, p0 + ROWS) of a staged [S][DP] head into dst (row stride
 * DP + 8), asynchronously, by all of the block's threads; zeros past S */
template <int DP, int ROWS = FA_BK>
__device__ static inline void fa_tile_async(bf16 *dst, const bf16 *src, int p0, int S)
{
    constexpr int LD = DP + 8, CH = DP / 8;
    for (int c = threadIdx.x; c < ROWS * CH; c += blockDim.x) {
        int r = c / CH, j = (c % CH) * 8;
        bool ok = p0 + r < S;
        cp_async16(dst + r * LD + j, src + (size_t)(ok ? p0 + r : 0) * DP + j, ok);
    }
}

/* four 8×8 bf16 matrices, not transposed */
__device__ static inline void ldsm_x4(uint32_t r[4], const bf16 *p)
{
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

/* The A fragment (16 rows from row0, dims kk·16..) of a tile in shared
 * memory: lane l addresses row row0 + l % 8 + 8·((l / 8) % 2), dims + 8·(l / 16) */
template <int LD> __device__ static inline void frag_a(uint32_t a[4], const bf16 *tile, int row0, int kk, int lane)
{
    ldsm_x4(a, tile + (row0 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + kk * 16 + (lane >> 4) * 8);
}

/* acc[j] += A·Bᵀ over all dims, where B's rows are the 64 rows of tile (keys
 * for S = Q·Kᵀ): for each n-tile j of 8 rows, B fragments of two k-steps at
 * once through ldmatrix (matrix m: rows j·8.., dims kk·16 + 8m), the odd last
 * k-step by 32-bit loads. af(kk, a) gives the A fragment of k-step kk. */
template <int DP, typename AF>
__device__ static inline void mma_abt(float acc[8][4], const bf16 *tile, int lane, AF af)
{
    constexpr int LD = DP + 8, KS = DP / 16;
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int kk = 0; kk + 1 < KS; kk += 2) {
        uint32_t a0[4], a1[4];
        af(kk, a0);
        af(kk + 1, a1);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            uint32_t b[4];
            ldsm_x4(b, tile + (j * 8 + (lane & 7)) * LD + kk * 16 + (lane >> 3) * 8);
            mma16816(acc[j], a0[0], a0[1], a0[2], a0[3], b[0], b[1]);
            mma16816(acc[j], a1[0], a1[1], a1[2], a1[3], b[2], b[3]);
        }
    }
    if (KS & 1) {
        uint32_t a0[4];
        af(KS - 1, a0);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const bf16 *kr = tile + (j * 8 + g) * LD + (KS - 1) * 16 + 2 * t;
            mma16816(acc[j], a0[0], a0[1], a0[2], a0[3], lds32(kr), lds32(kr + 8));
        }
    }
}

/* acc[n] += P·B where P is the 16×64 C-layout tile p (rows of the warp,
 * columns the 64 rows of tile) and B = tile [64][dims]: P's accumulators
 * are its A fragments, B's through transposed ldmatrix */
template <int DP>
__device__ static inline void mma_pb(float acc[DP / 8][4], const float p[8][4], const bf16 *tile, int lane)
{
    constexpr int LD = DP + 8, NT = DP / 8;
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
        uint32_t a0 = pack_bf16(p[2 * kk][0], p[2 * kk][1]), a1 = pack_bf16(p[2 * kk][2], p[2 * kk][3]);
        uint32_t a2 = pack_bf16(p[2 * kk + 1][0], p[2 * kk + 1][1]);
        uint32_t a3 = pack_bf16(p[2 * kk + 1][2], p[2 * kk + 1][3]);
        const int mat = lane >> 3, rr = lane & 7;
#pragma unroll
        for (int n = 0; n + 1 < NT; n += 2) {
            uint32_t b[4];
            ldsm_x4_t(b, tile + (kk * 16 + (mat & 1) * 8 + rr) * LD + (n + (mat >> 1)) * 8);
            mma16816(acc[n], a0, a1, a2, a3, b[0], b[1]);
            mma16816(acc[n + 1], a0, a1, a2, a3, b[2], b[3]);
        }
        if (NT & 1) { /* the last 8 dims: matrices 2 and 3 repeat 0 and 1 */
            uint32_t b[4];
            ldsm_x4_t(b, tile + (kk * 16 + (mat & 1) * 8 + rr) * LD + (NT - 1) * 8);
            mma16816(acc[NT - 1], a0, a1, a2, a3, b[0], b[1]);
        }
    }
}

/* One key tile of the forward and dQ loops, from the block's side: the next
 * tile (K and V) starts streaming into the other stage; when this returns (a
 * barrier) this tile has landed. */
template <int DP>
__device__ static inline void fa_key_tile(bf16 *kb, bf16 *vb, const bf16 *Kh, const bf16 *Vh, int it, int ntiles,
                                          int k0, int S)
{
    constexpr int TILE = 64 * (DP + 8);
    const int nxt = (it & 1) ^ 1;
    if (it + 1 < ntiles) { /* the next tile streams in while this one is used */
        fa_tile_async<DP>(kb + nxt * TILE, Kh, k0 + FA_BK, S);
        fa_tile_async<DP>(vb + nxt * TILE, Vh, k0 + FA_BK, S);
    }
    cp_commit();
    cp_wait<1>();
    __syncthreads();
}

/* Sets the warp's 16×64 score tile s (C layout) to off outside the row bits
 * vis[r] (rows g and g + 8 of the warp): the lane's columns are
 * 8j + 2t + (e & 1) */
__device__ static inline void fa_mask_tile(float (*s)[4], const uint64_t vis[2], int t, float off)
{
#pragma unroll
    for (int r = 0; r < 2; r++) {
        uint64_t v = vis[r] >> (2 * t);
        uint32_t lo = (uint32_t)v, hi = (uint32_t)(v >> 32);
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int u = 0; u < 2; u++) {
                uint32_t w = j < 4 ? lo : hi;
                if (!((w >> ((j & 3) * 8 + u)) & 1))
                    s[j][2 * r + u] = off;
            }
    }
}

/* The backward's two score-shaped products of a tile, from scratch: s = A·Bᵀ
 * and dp = C·Dᵀ, with the warp's 16 rows of A and C (rows warp·16..) and
 * the 64 rows of B and D, all tiles in shared memory. dQ: (Q, K, dO, V);
 * dK/dV: (K, Q, V, dO), giving Sᵀ and dPᵀ. */
template <int DP>
__device__ static inline void fa_two_products(float s[8][4], float dp[8][4], const bf16 *a, const bf16 *b,
                                              const bf16 *c, const bf16 *d, int warp, int lane)
{
    constexpr int LD = DP + 8;
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            s[j][e] = dp[j][e] = 0.0f;
    mma_abt<DP>(s, b, lane, [&](int kk, uint32_t f[4]) { frag_a<LD>(f, a, warp * 16, kk, lane); });
    mma_abt<DP>(dp, d, lane, [&](int kk, uint32_t f[4]) { frag_a<LD>(f, c, warp * 16, kk, lane); });
}

/* ---- the kernels' stores (mma.sync and wgmma alike: a warp's 16 rows, the
 * lane's rows g and g + 8, accumulators in the mma C layout) */

/* the forward's out = O / l and lse by storage row, after the row sums are
 * gathered across the quad (every query sees itself, so l > 0) */
template <int NT>
__device__ static inline void fa_store_out(float *out, float *lse, const float (&o)[NT][4], float l[2],
                                           const float mx[2], const int qp[2], int h, const int32_t *rop,
                                           const fa_meta &m, int t)
{
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = qp[r] < m.S ? (rop ? rop[qp[r]] : qp[r]) : -1;
        if (row < 0)
            continue;
        size_t ri = (size_t)row * m.nh + h;
        float inv = 1.0f / l[r];
#pragma unroll
        for (int n = 0; n < NT; n++) {
            int c = n * 8 + 2 * t;
            if (c + 1 < m.d && !(m.d & 1)) {
                *reinterpret_cast<float2 *>(out + ri * m.d + c) = make_float2(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
            } else {
                if (c < m.d)
                    out[ri * m.d + c] = o[n][2 * r] * inv;
                if (c + 1 < m.d)
                    out[ri * m.d + c + 1] = o[n][2 * r + 1] * inv;
            }
        }
        if (t == 0)
            lse[ri] = (mx[r] + log2f(l[r])) / FA_LOG2E;
    }
}

/* p[c] += f·(row r of a warp's accumulator tile, column c) for c < d: every
 * old value loaded before any is written back (the compiler, unsure that the
 * stores do not alias the later loads, had left each load right before its
 * add, and the dQ kernel's warps waited on them one at a time: a fifth of
 * its stall samples), as float2 where d is even and p 8-byte aligned. For
 * the wgmma kernels (fa_store_dq's and fa_store_dkv's BATCH); the mma.sync
 * ones, short of registers, add one element at a time. */
template <int NT>
__device__ static inline void fa_add_row(float *p, const float (&acc)[NT][4], int r, float f, int d, int t, int set)
{
    if ((d & 1) == 0 && ((uintptr_t)p & 7) == 0) {
        float2 v[NT];
#pragma unroll
        for (int n = 0; n < NT; n++)
            if (n * 8 + 2 * t < d)
                v[n] = set ? make_float2(0.0f, 0.0f) : *reinterpret_cast<const float2 *>(p + n * 8 + 2 * t);
#pragma unroll
        for (int n = 0; n < NT; n++)
            if (n * 8 + 2 * t < d) {
                v[n].x += f * acc[n][2 * r];
                v[n].y += f * acc[n][2 * r + 1];
                *reinterpret_cast<float2 *>(p + n * 8 + 2 * t) = v[n];
            }
        return;
    }
    float v[NT][2];
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int u = 0; u < 2; u++)
            if (n * 8 + 2 * t + u < d)
                v[n][u] = set ? 0.0f : p[n * 8 + 2 * t + u];
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int u = 0; u < 2; u++)
            if (n * 8 + 2 * t + u < d)
                p[n * 8 + 2 * t + u] = v[n][u] + f * acc[n][2 * r + u];
}

/* dq += scale · acc by storage row; BATCH: through fa_add_row */
template <int NT, int BATCH = 0>
__device__ static inline void fa_store_dq(float *dq, const float (&acc)[NT][4], const int qp[2], int h,
                                          const int32_t *rop, const fa_meta &m, int t)
{
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = qp[r] < m.S ? (rop ? rop[qp[r]] : qp[r]) : -1;
        if (row < 0)
            continue;
        size_t ri = ((size_t)row * m.nh + h) * m.d;
        if constexpr (BATCH) {
            fa_add_row<NT>(dq + ri, acc, r, m.scale, m.d, t, m.write);
        } else {
#pragma unroll
            for (int n = 0; n < NT; n++) {
                int c = n * 8 + 2 * t;
                if (c < m.d)
                    dq[ri + c] = (m.write ? 0.0f : dq[ri + c]) + m.scale * acc[n][2 * r];
                if (c + 1 < m.d)
                    dq[ri + c + 1] = (m.write ? 0.0f : dq[ri + c + 1]) + m.scale * acc[n][2 * r + 1];
            }
        }
    }
}

/* one query head's dK (times scale) and dV: straight into dk/dv when it is
 * the only head of its group, else into its own partial rows [hq][S][d]
 * that k_fa_sum_group adds up in a fixed order */
template <int NT, int BATCH = 0>
__device__ static inline void fa_store_dkv(float *dk, float *dv, const float (&ak)[NT][4], const float (&av)[NT][4],
                                           const int kp[2], int hq, int kvh, const int32_t *rop, const fa_meta &m,
                                           int partial, int t)
{
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = kp[r] < m.S ? (rop ? rop[kp[r]] : kp[r]) : -1;
        if (row < 0)
            continue;
        size_t ri = partial ? ((size_t)hq * m.S + kp[r]) * m.d : ((size_t)row * m.nkv + kvh) * m.d;
        if (BATCH && !partial) {
            if (dk)
                fa_add_row<NT>(dk + ri, ak, r, m.scale, m.d, t, m.write);
            if (dv)
                fa_add_row<NT>(dv + ri, av, r, 1.0f, m.d, t, m.write);
            continue;
        }
#pragma unroll
        for (int n = 0; n < NT; n++) {
            int c = n * 8 + 2 * t;
#pragma unroll
            for (int u = 0; u < 2; u++) {
                if (c + u >= m.d)
                    continue;
                if (partial) {
                    dk[ri + c + u] = m.scale * ak[n][2 * r + u];
                    dv[ri + c + u] = av[n][2 * r + u];
                } else {
                    if (dk)
                        dk[ri + c + u] = (m.write ? 0.0f : dk[ri + c + u]) + m.scale * ak[n][2 * r + u];
                    if (dv)
                        dv[ri + c + u] = (m.write ? 0.0f : dv[ri + c + u]) + av[n][2 * r + u];
                }
            }
        }
    }
}

/* The A fragment (mma.m16n8k16 layout) over columns 16kk.. of a warp's
 * 16-row tile s in the C layout, rounded to bf16 */
__device__ static inline void fa_pack_a(uint32_t a[4], const float (*s)[4], int kk)
{
    a[0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
    a[1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
    a[2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
    a[3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
}

/* One tile of the online softmax on a warp's 16 rows (masked scores
 * -inf), in the log2 domain: s (NJ column groups of 8 in the C layout)
 * becomes P, unnormalized, on the new base mx; l is rescaled and summed;
 * corr is what O must be scaled by (fa_rescale) before P·V is added. */
template <int NJ>
__device__ static inline void fa_online_softmax(float (*s)[4], float mx[2], float l[2], float corr[2], float sc)
{
    float tmax[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < NJ; j++) {
        tmax[0] = fmaxf(tmax[0], fmaxf(s[j][0], s[j][1]));
        tmax[1] = fmaxf(tmax[1], fmaxf(s[j][2], s[j][3]));
    }
    float base[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        tmax[r] = fmaxf(tmax[r], __shfl_xor_sync(0xffffffffu, tmax[r], 1));
        tmax[r] = fmaxf(tmax[r], __shfl_xor_sync(0xffffffffu, tmax[r], 2));
        float mn = fmaxf(mx[r], tmax[r] * sc);
        /* a row with nothing visible yet keeps a finite base, so that
         * masked scores give 2^-inf = 0, never NaN */
        base[r] = mn == -INFINITY ? 0.0f : mn;
        corr[r] = fa_exp2(mx[r] - base[r]);
        mx[r] = mn;
    }
    float ls[2] = {0.0f, 0.0f};
#pragma unroll
    for (int j = 0; j < NJ; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            float p = fa_exp2(fmaf(s[j][e], sc, -base[e >> 1]));
            s[j][e] = p;
            ls[e >> 1] += p;
        }
#pragma unroll
    for (int r = 0; r < 2; r++)
        l[r] = l[r] * corr[r] + ls[r];
}

/* o (the warp's rows g and g + 8 in the C layout) *= corr, per row */
template <int NT> __device__ static inline void fa_rescale(float (&o)[NT][4], const float corr[2])
{
#pragma unroll
    for (int n = 0; n < NT; n++) {
        o[n][0] *= corr[0], o[n][1] *= corr[0];
        o[n][2] *= corr[1], o[n][3] *= corr[1];
    }
}

/* ---- forward */

template <int DP, int MB, int NW>
__global__ void __launch_bounds__(32 * NW, MB) k_fa_fwd(float *out, float *lse, const bf16 *Q, const bf16 *K,
                                                       const bf16 *V, const int32_t *rop, fa_meta m)
{
    constexpr int LD = DP + 8, KS = DP / 16, NT = DP / 8, TILE = 64 * LD, BQ = 16 * NW;
    extern __shared__ __align__(16) unsigned char fa_smem[];
    bf16 *qs = reinterpret_cast<bf16 *>(fa_smem), *kb = qs + BQ * LD, *vb = kb + 2 * TILE; /* K, V: two stages */
    const int h = blockIdx.y, kvh = h / (m.nh / m.nkv), S = m.S;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    /* the last query tiles first: under a causal mask they have the most keys */
    const int q0 = (gridDim.x - 1 - blockIdx.x) * BQ, q1 = min(q0 + BQ, S);
    const bf16 *Qh = Q + (size_t)h * S * DP, *Kh = K + (size_t)kvh * S * DP, *Vh = V + (size_t)kvh * S * DP;
    int lo, hi;
    fa_key_range(m, q0, q1, &lo, &hi);
    const int ntiles = (hi - lo + FA_BK - 1) / FA_BK;

    fa_tile_async<DP, BQ>(qs, Qh, q0, S);
    fa_tile_async<DP>(kb, Kh, lo, S);
    fa_tile_async<DP>(vb, Vh, lo, S);
    cp_commit();
    cp_wait<0>();
    __syncthreads();
    uint32_t qa[KS][4];
#pragma unroll
    for (int kk = 0; kk < KS; kk++)
        frag_a<LD>(qa[kk], qs, warp * 16, kk, lane);
    const int r0 = warp * 16 + g;
    const int qp[2] = {q0 + r0, q0 + r0 + 8};
    const fa_qspan qsp[2] = {fa_qspan_of(m, qp[0]), fa_qspan_of(m, qp[1])};
    const float sc = m.scale * FA_LOG2E;

    float o[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++)
        o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float mx[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}; /* mx: scaled, log2 domain */

    uint32_t nwd[3];
    fa_noise_load(nwd, m.nb, lo);
    for (int it = 0; it < ntiles; it++) {
        const int k0 = lo + it * FA_BK, cur = it & 1;
        fa_key_tile<DP>(kb, vb, Kh, Vh, it, ntiles, k0, S);
        const uint64_t nz = fa_noise_bits(nwd, k0);
        if (it + 1 < ntiles)
            fa_noise_load(nwd, m.nb, k0 + FA_BK);
        const uint64_t vis[2] = {fa_qbits(qsp[0], k0, nz), fa_qbits(qsp[1], k0, nz)};
        const bool any = __any_sync(0xffffffffu, (vis[0] | vis[1]) != 0);
        const bool full = __all_sync(0xffffffffu, (vis[0] & vis[1]) == ~0ull);
        if (any) {
            const bf16 *ks = kb + cur * TILE, *vs = vb + cur * TILE;
            float s[8][4];
#pragma unroll
            for (int j = 0; j < 8; j++)
                s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
            mma_abt<DP>(s, ks, lane, [&](int kk, uint32_t a[4]) {
                a[0] = qa[kk][0], a[1] = qa[kk][1], a[2] = qa[kk][2], a[3] = qa[kk][3];
            });
            if (!full)
                fa_mask_tile(s, vis, t, -INFINITY);
            float corr[2];
            fa_online_softmax<8>(s, mx, l, corr, sc);
            fa_rescale(o, corr);
            mma_pb<DP>(o, s, vs, lane);
        }
        __syncthreads(); /* this stage is refilled next iteration but one */
    }
    fa_store_out<NT>(out, lse, o, l, mx, qp, h, rop, m, t);
}

/* ---- forward on Hopper's warpgroup products (wgmma, sm_90a)
 *
 * The same function as k_fa_fwd, for padded head dims 64, 80 and 128, built the
 * way FlashAttention-3 builds it, so that the tensor cores are kept busy
 * while the softmax runs:
 * - a block of 384 threads owns 128 queries of one head: a producer
 *   warpgroup (0; one of its threads issues every copy, its registers cut
 *   by setmaxnreg) and two consumer warpgroups (1, 2) of 64 query rows each;
 * - the producer copies the block's Q once, then each key tile's K and V
 *   (BN keys) into a ring of NS stages by bulk asynchronous copies
 *   (cp.async.bulk, one instruction a tile) that complete on the stage's
 *   "full" barrier; consumers free a stage by arriving on its "empty"
 *   barrier. Neither side waits on a block-wide barrier, so the two
 *   warpgroups drift apart and one's softmax runs beside the other's
 *   products;
 * - within a warpgroup, S = Q·Kᵀ of tile j is issued together with
 *   O += P·V of tile j − 1, and the softmax of tile j runs while the latter
 *   is still in the tensor cores (O is rescaled once it has landed).
 * Both products read their B operand from shared memory, S's A (Q) too; P
 * is the A of O += P·V from registers (the accumulator layout of S is the
 * mma.m16n8k16 A layout per warp, as in k_fa_fwd). The mask and the
 * online softmax are k_fa_fwd's, per warp of 16 rows.
 *
 * Operands are staged in global memory already in the layout the tensor
 * cores read (so a tile is one contiguous copy): the canonical K-major
 * layout without swizzle, core matrices of 8 rows × 16 bytes (128
 * contiguous bytes); a tile of R rows by C reduction columns puts element
 * (r, c) at ((c/8)·(R/8) + r/8)·64 + (r%8)·8 + c%8. A k-step of 16 columns
 * is then one descriptor: leading byte offset (R/8)·128 (the next 8
 * columns), stride byte offset 128 (the next 8 rows). Q is in tiles of 64
 * rows (a warpgroup's) by DP, K in tiles of BN keys by DP, and V transposed
 * (rows the DP dims, columns BN keys) so that both products' B operands are
 * K-major. Positions are padded with zeros to a multiple of 128. (Layouts
 * checked on single products by scripts/probe/wgmma_probe.cu.) */
#include "wgmma.h"

#define FA_WG_THREADS 384 /* a producer warpgroup and two consumer ones */
#define FA_WG_BQ 128      /* queries a block */

/* shared-memory barriers with transaction counts (mbarrier) */
__device__ static inline uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ static inline void mb_init(uint64_t *b, int count)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(b)), "r"(count) : "memory");
}
__device__ static inline void mb_init_fence()
{
#ifdef FA_WG_ARCH
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}
__device__ static inline void mb_arrive(uint64_t *b)
{
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_u32(b)) : "memory");
}
__device__ static inline void mb_expect_tx(uint64_t *b, uint32_t bytes)
{
#ifdef FA_WG_ARCH
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(b)), "r"(bytes)
                 : "memory");
#endif
}
/* until the phase of the given parity has completed */
__device__ static inline void mb_wait(uint64_t *b, int parity)
{
#ifdef FA_WG_ARCH
    uint32_t done;
    do {
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     "selp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(smem_u32(b)), "r"(parity)
                     : "memory");
    } while (!done);
#endif
}
/* bytes (a multiple of 16) from global src to shared dst, counted on b */
__device__ static inline void bulk_copy(void *dst, const void *src, uint32_t bytes, uint64_t *b)
{
#ifdef FA_WG_ARCH
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
                     smem_u32(dst)),
                 "l"(src), "r"(bytes), "r"(smem_u32(b))
                 : "memory");
#endif
}
/* a wgmma kernel's barriers, by one thread, before a block barrier: bar[0]
 * (the resident rows' copy: one arrival and its bytes), then full[ns] (the
 * producer's arrival and the tile's bytes) and empty[ns] (the eight
 * consumer warps) */
__device__ static inline void fa_wg_bars(uint64_t *bar, int ns)
{
    if (threadIdx.x == 0) {
        mb_init(bar, 1);
        for (int s = 0; s < ns; s++) {
            mb_init(bar + 1 + s, 1);
            mb_init(bar + 1 + ns + s, 8);
        }
        mb_init_fence();
    }
    __syncthreads();
}

/* The producer's loop, one thread: tile it goes into stage it % ns once
 * the consumers have freed it (its "empty" phase of the use before), with
 * bytes announced on its "full" barrier, by copy(it, stage) */
template <typename F>
__device__ static inline void fa_wg_produce(uint64_t *full, uint64_t *empty, int ns, int ntiles, uint32_t bytes,
                                            F copy)
{
    for (int it = 0; it < ntiles; it++) {
        const int s = it % ns, use = it / ns;
        if (use > 0)
            mb_wait(empty + s, (use - 1) & 1);
        mb_expect_tx(full + s, bytes);
        copy(it, s);
    }
}

/* x [rows, nh, d] fp32 by storage row → dst [nh][Sp/R tiles][canonical
 * R × DP] bf16 by position, zeros past d and S and where rop is negative
 * (fa_wg_layout's padding); a thread a 16-byte chunk (8 dims of a row) */
__global__ void k_fa_stage_tiles(bf16 *dst, const float *x, const int32_t *rop, int S, int Sp, int nh, int d, int DP,
                                 int R)
{
    const int CG = DP / 8;
    CU_FOR(i, (size_t)nh * Sp * CG)
    {
        int cg = (int)(i % CG), p = (int)(i / CG % Sp), h = (int)(i / CG / Sp);
        float v[8];
        const int row = p < S ? (rop ? rop[p] : p) : -1;
        const float *src = row >= 0 ? x + ((size_t)row * nh + h) * d : NULL;
#pragma unroll
        for (int u = 0; u < 8; u++)
            v[u] = src && cg * 8 + u < d ? src[cg * 8 + u] : 0.0f;
        uint4 w = {pack_bf16(v[0], v[1]), pack_bf16(v[2], v[3]), pack_bf16(v[4], v[5]), pack_bf16(v[6], v[7])};
        int r = p % R;
        size_t o = ((size_t)h * Sp + (size_t)(p - r)) * DP + ((cg * (R / 8) + r / 8) * 64 + (r % 8) * 8);
        *reinterpret_cast<uint4 *>(dst + o) = w;
    }
}

/* v [rows, nh, d] fp32 → dst [nh][Sp/BN tiles][canonical DP × BN] bf16: the
 * tile transposed, rows the dims and columns the keys (zeros as
 * k_fa_stage_tiles'); a thread 8 keys of one dim */
__global__ void k_fa_stage_tiles_t(bf16 *dst, const float *x, const int32_t *rop, int S, int Sp, int nh, int d, int DP,
                                   int BN)
{
    CU_FOR(i, (size_t)nh * (Sp / 8) * DP)
    {
        int j = (int)(i % DP), pg = (int)(i / DP % (Sp / 8)), h = (int)(i / DP / (Sp / 8));
        float v[8];
#pragma unroll
        for (int u = 0; u < 8; u++) {
            const int p = pg * 8 + u, row = p < S && j < d ? (rop ? rop[p] : p) : -1;
            v[u] = row >= 0 ? x[((size_t)row * nh + h) * d + j] : 0.0f;
        }
        uint4 w = {pack_bf16(v[0], v[1]), pack_bf16(v[2], v[3]), pack_bf16(v[4], v[5]), pack_bf16(v[6], v[7])};
        int p0 = pg * 8, r = p0 % BN;
        size_t o = ((size_t)h * Sp + (size_t)(p0 - r)) * DP + ((r / 8) * (DP / 8) + j / 8) * 64 + (j % 8) * 8;
        *reinterpret_cast<uint4 *>(dst + o) = w;
    }
}

/* ---- sample-aligned positions for the wgmma kernels
 *
 * Those kernels take 128 queries a block (128 keys for dK/dV). Where a
 * sample ends inside such a tile, the tile's rows belong to two samples and
 * its block walks the key tiles of both: the ViT's images of 729, 729 and
 * 1,369 patches made 227 query-key tile pairs a head where each image alone
 * needs 193, and one block 18 tiles where the longest image needs 11. So
 * these kernels read the sequence in positions of their own, in which every
 * sample starts at a multiple of 128 (FA_WG_ALIGN):
 * - split i is split 2i there, and split 2i + 1 follows it: when i ends its
 *   sample, the positions up to the next multiple of 128, a sample of their
 *   own (a full split: its rows see only each other; zeros are staged for
 *   them and nothing is stored); else an empty split of i's sample;
 * - a last split 2n, also a sample of its own, runs from the used length to
 *   the bound the host sizes buffers and grids by (S rounded up, plus 128 a
 *   split). The used length is known on the device only (fa_meta.len);
 *   blocks past it return at once.
 * rop maps these positions to storage rows, -1 for the padding.
 * BAGEL_FA_ALIGN=1 rounds samples to 1 instead, which gives the sequence's
 * own positions (tiles that straddle samples), for measurement. */
#define FA_WG_ALIGN 128

/* the bound on the aligned length: every sample adds less than FA_WG_ALIGN */
static int fa_wg_bound(int S, int n_splits)
{
    return (S + FA_WG_ALIGN - 1) / FA_WG_ALIGN * FA_WG_ALIGN + FA_WG_ALIGN * n_splits;
}

/* the aligned splits (2n + 1, starts 2n + 2) and the used length, one block:
 * a sample's aligned start is the sum of the earlier samples' rounded-up
 * lengths, a scan over the splits with each sample's length at its last */
__global__ void __launch_bounds__(1024) k_fa_layout_splits(int32_t *ss2, int32_t *sf2, uint8_t *sm2, int32_t *len,
                                                           const int32_t *ss, const int32_t *sf, const uint8_t *sm,
                                                           int n, int bound, int al)
{
    typedef cub::BlockScan<int, 1024> scan_t;
    __shared__ typename scan_t::TempStorage tmp;
    __shared__ int carry;
    if (threadIdx.x == 0)
        carry = 0;
    __syncthreads();
    for (int base = 0; base < n; base += 1024) {
        const int i = base + (int)threadIdx.x;
        int end = 0, v = 0;
        if (i < n) {
            end = i + 1 == n || sf[i + 1] != sf[i];
            if (end)
                v = (ss[i + 1] - ss[sf[i]] + al - 1) / al * al;
        }
        int e, total;
        scan_t(tmp).ExclusiveSum(v, e, total);
        if (i < n) {
            const int st = carry + e + ss[i] - ss[sf[i]];
            ss2[2 * i] = st, sf2[2 * i] = 2 * sf[i], sm2[2 * i] = sm[i];
            ss2[2 * i + 1] = st + ss[i + 1] - ss[i], sf2[2 * i + 1] = end ? 2 * i + 1 : 2 * sf[i];
            sm2[2 * i + 1] = OP_SPLIT_FULL;
        }
        __syncthreads(); /* every thread has read carry, and tmp is free again */
        if (threadIdx.x == 0)
            carry += total;
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        ss2[2 * n] = carry, sf2[2 * n] = 2 * n, sm2[2 * n] = OP_SPLIT_FULL;
        ss2[2 * n + 1] = bound;
        *len = carry;
    }
}

/* the split of each aligned position and its storage row (-1: padding) */
__global__ void k_fa_layout_pos(int32_t *sp2, int32_t *rop2, const int32_t *ss2, int n2, const int32_t *ss,
                                const int32_t *rop, int bound)
{
    CU_FOR(P, (size_t)bound)
    {
        const int s2 = fa_split_of(ss2, n2, (int)P);
        int row = -1;
        if (!(s2 & 1) && s2 < n2 - 1) {
            const int p = ss[s2 / 2] + (int)P - ss2[s2];
            row = rop ? rop[p] : p;
        }
        sp2[P] = s2, rop2[P] = row;
    }
}

/* the warpgroup's share of the register file: the producer needs few */
template <int N> __device__ static inline void wg_regs_dec()
{
#ifdef FA_WG_ARCH
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}
template <int N> __device__ static inline void wg_regs_inc()
{
#ifdef FA_WG_ARCH
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}

/* The noise bits of the n·64 keys from k0 (a multiple of 64), loaded
 * before the products whose tile they mask are waited for, so that the
 * load's latency passes while the tensor cores work (it measured the same
 * as loading them in the softmax: the dQ kernel's long-scoreboard stalls
 * were its epilogue's, fa_add_row) */
template <int N> struct fa_noise {
    uint64_t w[N];
    __device__ void load(const uint32_t *nb, int k0)
    {
#pragma unroll
        for (int i = 0; i < N; i++) {
            const int kb = (k0 >> 5) + 2 * i;
            w[i] = (uint64_t)__ldg(nb + kb + 1) << 32 | __ldg(nb + kb);
        }
    }
};

/* One tile's mask and online softmax on the warp's 16 rows (k_fa_fwd's):
 * s becomes P (unnormalized, base mx), l is rescaled and summed, and corr
 * is what O must be scaled by before P·V is added to it. */
template <int BN>
__device__ static inline void fa_wg_softmax(float (&s)[BN / 8][4], float mx[2], float l[2], float corr[2],
                                            const fa_qspan qsp[2], const fa_noise<BN / 64> &nz, int k0, int t,
                                            float sc)
{
    bool all = true;
    uint64_t vis[BN / 64][2];
#pragma unroll
    for (int hb = 0; hb < BN / 64; hb++) {
        const int kb = k0 + 64 * hb;
        vis[hb][0] = fa_qbits(qsp[0], kb, nz.w[hb]);
        vis[hb][1] = fa_qbits(qsp[1], kb, nz.w[hb]);
        all &= (vis[hb][0] & vis[hb][1]) == ~0ull;
    }
    if (!all) {
#pragma unroll
        for (int hb = 0; hb < BN / 64; hb++)
            fa_mask_tile(s + 8 * hb, vis[hb], t, -INFINITY);
    }
    fa_online_softmax<BN / 8>(s, mx, l, corr, sc);
}

template <int DP, int BN, int NS>
__global__ void __launch_bounds__(FA_WG_THREADS, 1)
    k_fa_fwd_wg(float *out, float *lse, const bf16 *Qt, const bf16 *Kt, const bf16 *Vt, int Sp, const int32_t *rop,
                fa_meta m)
{
    constexpr int NT = DP / 8, KT = BN * DP; /* elements of a K or V tile */
#ifndef FA_WG_ARCH
    __trap(); /* built without sm_90a: the host side never launches this then */
#else
    extern __shared__ __align__(16) unsigned char fa_smem[];
    bf16 *qs = reinterpret_cast<bf16 *>(fa_smem), *ks = qs + FA_WG_BQ * DP, *vs = ks + NS * KT;
    uint64_t *bar = reinterpret_cast<uint64_t *>(vs + NS * KT); /* Q full, then full[NS], empty[NS] */
    uint64_t *qfull = bar, *full = bar + 1, *empty = bar + 1 + NS;
    const int h = blockIdx.x, kvh = h / (m.nh / m.nkv), S = m.S;
    /* the warpgroup, through a shuffle so that the compiler knows it is the
     * same in every lane (a wgmma in a branch it thinks divergent is
     * serialized) */
    const int wgi = __shfl_sync(0xffffffffu, (int)threadIdx.x / 128, 0);
    const int lane = threadIdx.x & 31;
    const int q0 = (gridDim.y - 1 - blockIdx.y) * FA_WG_BQ, q1 = min(q0 + FA_WG_BQ, S);
    if (m.len && q0 >= __ldg(m.len))
        return; /* past the used length (fa_wg_layout) */
    int lo, hi;
    fa_key_range(m, q0, q1, &lo, &hi);
    const int t0 = lo / BN, ntiles = (hi + BN - 1) / BN - t0;
    fa_wg_bars(bar, NS);

    if (wgi == 0) { /* the producer: one thread issues every copy */
        wg_regs_dec<40>();
        if (threadIdx.x == 0) {
            mb_expect_tx(qfull, FA_WG_BQ * DP * 2);
            bulk_copy(qs, Qt + ((size_t)h * Sp + q0) * DP, FA_WG_BQ * DP * 2, qfull);
            const bf16 *Kh = Kt + (size_t)kvh * Sp * DP, *Vh = Vt + (size_t)kvh * Sp * DP;
            fa_wg_produce(full, empty, NS, ntiles, 2 * KT * 2, [&](int it, int s) {
                bulk_copy(ks + s * KT, Kh + (size_t)(t0 + it) * KT, KT * 2, full + s);
                bulk_copy(vs + s * KT, Vh + (size_t)(t0 + it) * KT, KT * 2, full + s);
            });
        }
        return;
    }
    wg_regs_inc<232>();

    /* a consumer warpgroup (wg 0 or 1) of 64 rows; a warp's rows g and g + 8
     * of its 16 */
    const int wg = wgi - 1, warp = (threadIdx.x >> 5) & 3, g = lane >> 2, t = lane & 3;
    const int r0 = wg * 64 + warp * 16 + g;
    const int qp[2] = {q0 + r0, q0 + r0 + 8};
    const fa_qspan qsp[2] = {fa_qspan_of(m, qp[0]), fa_qspan_of(m, qp[1])};
    const float sc = m.scale * FA_LOG2E;
    const bf16 *qa = qs + wg * 64 * DP;
    const uint64_t kd = wg_desc(ks, (BN / 8) * 128), vd = wg_desc(vs, (DP / 8) * 128), qd = wg_desc(qa, 8 * 128);
    auto s_desc = [&](int st, int kk) { return wg_step<BN>(kd, st * KT, kk); };
    auto v_desc = [&](int st, int kk) { return wg_step<DP>(vd, st * KT, kk); };
    auto q_desc = [&](int kk) { return wg_step<64>(qd, 0, kk); };

    float o[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++)
        o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float mx[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}, corr[2]; /* mx: scaled, log2 domain */
    float s[BN / 8][4];
    uint32_t pa[BN / 16][4]; /* P of the previous tile, bf16, as A fragments */
    auto pack_p = [&]() {
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++)
            fa_pack_a(pa[kk], s, kk);
    };

    /* the first tile alone: S, its softmax, P */
    mb_wait(qfull, 0);
    mb_wait(full, 0);
    wg_hold(s);
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < DP / 16; kk++)
        wg_ss<BN>(s, q_desc(kk), s_desc(0, kk), kk > 0);
    wg_commit();
    fa_noise<BN / 64> nz;
    nz.load(m.nb, t0 * BN);
    wg_wait<0>();
    wg_hold(s);
    fa_wg_softmax<BN>(s, mx, l, corr, qsp, nz, t0 * BN, t, sc);
    pack_p();
    /* then S of tile it beside O += P·V of tile it − 1 */
    for (int it = 1; it < ntiles; it++) {
        const int st = it % NS, pv = (it - 1) % NS;
        mb_wait(full + st, (it / NS) & 1);
        wg_hold(s);
        wg_hold(o);
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < DP / 16; kk++)
            wg_ss<BN>(s, q_desc(kk), s_desc(st, kk), kk > 0);
        wg_commit();
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++)
            wg_rs<DP>(o, pa[kk], v_desc(pv, kk));
        wg_commit();
        nz.load(m.nb, (t0 + it) * BN);
        wg_wait<1>();
        wg_hold(s);
        fa_wg_softmax<BN>(s, mx, l, corr, qsp, nz, (t0 + it) * BN, t, sc);
        wg_wait<0>();
        wg_hold(o);
        __syncwarp();
        if (lane == 0)
            mb_arrive(empty + pv); /* tile it − 1's stage is free */
        fa_rescale(o, corr);
        pack_p();
    }
    wg_hold(o);
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < BN / 16; kk++)
        wg_rs<DP>(o, pa[kk], v_desc((ntiles - 1) % NS, kk));
    wg_commit();
    wg_wait<0>();
    wg_hold(o);

    fa_store_out<NT>(out, lse, o, l, mx, qp, h, rop, m, t);
#endif
}

/* ---- backward: dQ */

template <int DP, int MB, int NW>
__global__ void __launch_bounds__(32 * NW, MB) k_fa_bwd_dq(float *dq, const bf16 *Q, const bf16 *K, const bf16 *V,
                                                          const bf16 *dO, const float *D, const float *lse2,
                                                          const int32_t *rop, fa_meta m)
{
    constexpr int LD = DP + 8, NT = DP / 8, TILE = 64 * LD, BQ = 16 * NW;
    extern __shared__ __align__(16) unsigned char fa_smem[];
    bf16 *qs = reinterpret_cast<bf16 *>(fa_smem), *os = qs + BQ * LD, *kb = os + BQ * LD, *vb = kb + 2 * TILE;
    const int h = blockIdx.y, kvh = h / (m.nh / m.nkv), S = m.S;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * BQ, q1 = min(q0 + BQ, S); /* heaviest first */
    const bf16 *Qh = Q + (size_t)h * S * DP, *Kh = K + (size_t)kvh * S * DP, *Vh = V + (size_t)kvh * S * DP;
    int lo, hi;
    fa_key_range(m, q0, q1, &lo, &hi);
    const int ntiles = (hi - lo + FA_BK - 1) / FA_BK;

    fa_tile_async<DP, BQ>(qs, Qh, q0, S);
    fa_tile_async<DP, BQ>(os, dO + (size_t)h * S * DP, q0, S);
    fa_tile_async<DP>(kb, Kh, lo, S);
    fa_tile_async<DP>(vb, Vh, lo, S);
    cp_commit();
    const int r0 = warp * 16 + g;
    const int qp[2] = {q0 + r0, q0 + r0 + 8};
    const fa_qspan qsp[2] = {fa_qspan_of(m, qp[0]), fa_qspan_of(m, qp[1])};
    float lq[2], Dq[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        lq[r] = qp[r] < S ? lse2[(size_t)h * S + qp[r]] : 0.0f;
        Dq[r] = qp[r] < S ? D[(size_t)h * S + qp[r]] : 0.0f;
    }
    const float sc = m.scale * FA_LOG2E;
    float acc[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++)
        acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;

    uint32_t nwd[3];
    fa_noise_load(nwd, m.nb, lo);
    for (int it = 0; it < ntiles; it++) {
        const int k0 = lo + it * FA_BK, cur = it & 1;
        fa_key_tile<DP>(kb, vb, Kh, Vh, it, ntiles, k0, S);
        const uint64_t nz = fa_noise_bits(nwd, k0);
        if (it + 1 < ntiles)
            fa_noise_load(nwd, m.nb, k0 + FA_BK);
        const uint64_t vis[2] = {fa_qbits(qsp[0], k0, nz), fa_qbits(qsp[1], k0, nz)};
        if (__any_sync(0xffffffffu, (vis[0] | vis[1]) != 0)) {
            const bf16 *ks = kb + cur * TILE, *vs = vb + cur * TILE;
            /* S = Q·Kᵀ and dP = dO·Vᵀ */
            float s[8][4], dp[8][4];
            fa_two_products<DP>(s, dp, qs, ks, os, vs, warp, lane);
            if (!__all_sync(0xffffffffu, (vis[0] & vis[1]) == ~0ull))
                fa_mask_tile(s, vis, t, -INFINITY);
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    float p = fa_exp2(fmaf(s[j][e], sc, -lq[e >> 1]));
                    s[j][e] = p * (dp[j][e] - Dq[e >> 1]); /* dS */
                }
            mma_pb<DP>(acc, s, ks, lane); /* dQ += dS·K */
        }
        __syncthreads();
    }
    fa_store_dq<NT>(dq, acc, qp, h, rop, m, t);
}

/* ---- backward: dK and dV, a block per 16·NW keys and query head */

template <int DP, int MB, int NW>
__global__ void __launch_bounds__(32 * NW, MB) k_fa_bwd_dkv(float *dk, float *dv, const bf16 *Q, const bf16 *K,
                                                              const bf16 *V, const bf16 *dO, const float *D,
                                                              const float *lse2, const int32_t *rop, fa_meta m,
                                                              int partial)
{
    constexpr int LD = DP + 8, NT = DP / 8, TILE = 64 * LD, BK = 16 * NW;
    extern __shared__ __align__(16) unsigned char fa_smem[];
    bf16 *ks = reinterpret_cast<bf16 *>(fa_smem), *vs = ks + BK * LD, *qb = vs + BK * LD, *ob = qb + 2 * TILE;
    __shared__ float lqs[2][FA_BK], Dqs[2][FA_BK]; /* lse (log2) and D of the query tile, two stages */
    const int hq = blockIdx.y, kvh = hq / (m.nh / m.nkv), S = m.S;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int k0 = blockIdx.x * BK, k1 = min(k0 + BK, S);
    const bf16 *Qh = Q + (size_t)hq * S * DP, *Oh = dO + (size_t)hq * S * DP;
    int lo, hi;
    fa_query_range(m, k0, k1, &lo, &hi);
    const int ntiles = (hi - lo + FA_BK - 1) / FA_BK;

    fa_tile_async<DP, BK>(ks, K + (size_t)kvh * S * DP, k0, S);
    fa_tile_async<DP, BK>(vs, V + (size_t)kvh * S * DP, k0, S);
    /* the query tile at p0 (Q, dO, lse, D) into stage st, asynchronously */
    auto load_queries = [&](int st, int p0) {
        fa_tile_async<DP>(qb + st * TILE, Qh, p0, S);
        fa_tile_async<DP>(ob + st * TILE, Oh, p0, S);
        if (threadIdx.x < FA_BK) {
            int p = p0 + threadIdx.x;
            bool in = p < hi;
            size_t r = (size_t)hq * S + (in ? p : 0);
            cp_async4(&lqs[st][threadIdx.x], lse2 + r, in);
            cp_async4(&Dqs[st][threadIdx.x], D + r, in);
        }
    };
    load_queries(0, lo);
    cp_commit();
    const int r0 = warp * 16 + g;
    const int kp[2] = {k0 + r0, k0 + r0 + 8};
    int qlo[2], qhi[2]; /* the queries that see each of the lane's two keys */
    fa_kspan_of(m, kp[0], &qlo[0], &qhi[0]);
    fa_kspan_of(m, kp[1], &qlo[1], &qhi[1]);
    const float sc = m.scale * FA_LOG2E;
    float ak[NT][4], av[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            ak[n][e] = av[n][e] = 0.0f;

    for (int it = 0; it < ntiles; it++) {
        const int p0 = lo + it * FA_BK, cur = it & 1;
        if (it + 1 < ntiles)
            load_queries(cur ^ 1, p0 + FA_BK);
        cp_commit();
        cp_wait<1>();
        __syncthreads();
        const uint64_t vis[2] = {attn_bits64(qlo[0], qhi[0], p0), attn_bits64(qlo[1], qhi[1], p0)};
        if (__any_sync(0xffffffffu, (vis[0] | vis[1]) != 0)) {
            const bf16 *qs = qb + cur * TILE, *os = ob + cur * TILE;
            /* Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ over the warp's 16 keys */
            float s[8][4], dp[8][4];
            fa_two_products<DP>(s, dp, ks, qs, vs, os, warp, lane);
            if (!__all_sync(0xffffffffu, (vis[0] & vis[1]) == ~0ull))
                fa_mask_tile(s, vis, t, -INFINITY);
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int c = j * 8 + 2 * t + (e & 1);
                    float p = fa_exp2(fmaf(s[j][e], sc, -lqs[cur][c]));
                    s[j][e] = p;                             /* Pᵀ */
                    dp[j][e] = p * (dp[j][e] - Dqs[cur][c]); /* dSᵀ */
                }
            mma_pb<DP>(av, s, os, lane);  /* dV += Pᵀ·dO */
            mma_pb<DP>(ak, dp, qs, lane); /* dK += dSᵀ·Q */
        }
        __syncthreads();
    }
    fa_store_dkv<NT>(dk, dv, ak, av, kp, hq, kvh, rop, m, partial, t);
}

/* dk/dv [row][kvh][d] += Σ over the group's query heads of the partials
 * (= when write), in head order; a warp a (position, kv head) row; none
 * where rop is negative (fa_wg_layout's padding) */
__global__ void k_fa_sum_group(float *dk, float *dv, const float *pk, const float *pv, const int32_t *rop, int S,
                               int nh, int nkv, int d, int write)
{
    int w = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    if (w >= S * nkv)
        return;
    int p = w / nkv, kvh = w - p * nkv, group = nh / nkv;
    const int row = rop ? rop[p] : p;
    if (row < 0)
        return;
    size_t dst = ((size_t)row * nkv + kvh) * d;
    for (int j = lane; j < d; j += 32) {
        float sk = 0.0f, sv = 0.0f;
        for (int u = 0; u < group; u++) {
            size_t src = ((size_t)(kvh * group + u) * S + p) * d + j;
            sk += pk[src];
            sv += pv[src];
        }
        if (dk)
            dk[dst + j] = (write ? 0.0f : dk[dst + j]) + sk;
        if (dv)
            dv[dst + j] = (write ? 0.0f : dv[dst + j]) + sv;
    }
}

/* ---- backward on Hopper's warpgroup products (sm_90a)
 *
 * The same two kernels as k_fa_bwd_dq and k_fa_bwd_dkv (deterministic:
 * every gradient row has one owner), on k_fa_fwd_wg's skeleton: 384
 * threads, a producer warpgroup that bulk-copies tiles into a ring of NS
 * stages (FA_WG_STAGES), two consumer warpgroups of 64 rows each. Operands
 * are staged in the canonical layout, each in the orientation its product
 * reads it as B: Q, dO, K and V in tiles of 64 positions (also the A
 * operands of the resident rows), and Kᵀ, Qᵀ, dOᵀ (dims by 64 positions)
 * for the products that reduce over positions. lse (log2) and D are staged
 * per head with rows padded to Sp, zeros past S.
 *
 * dQ: a block owns 128 queries; per key tile of 64, S = Q·Kᵀ and dP = dO·Vᵀ
 * (both A from shared memory), dS = P ⊙ (dP − D) in registers, then
 * dQ += dS·K (dS from registers) is issued beside the next tile's S and dP.
 * dK/dV: a block owns 128 keys and a share of their kv head's query heads
 * (fa_dkv_shares); per query tile of 64 of each of those heads in turn,
 * Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ, Pᵀ and dSᵀ in registers, dV += Pᵀ·dO and
 * dK += dSᵀ·Q, one after the other. (Issuing a tile's Sᵀ and dPᵀ beside
 * the previous tile's dV and dK, as dQ does, measured slower on an H200:
 * 0.68 against 0.56 ms at head dim 64 on the recipe packing; at 128 the
 * registers spill. Issuing each product as soon as its operands were there,
 * with P computed while dPᵀ ran and dV issued before dS was computed,
 * measured 0.66 against 0.60 ms. Nsight Compute puts this kernel's warps
 * mostly in fixed-latency and warpgroup-barrier stalls, rarely waiting on
 * the tensor cores.) */
#define FA_WB 64 /* positions a streamed tile of the backward */

template <int DP, int NS>
__global__ void __launch_bounds__(FA_WG_THREADS, 1)
    k_fa_bwd_dq_wg(float *dq, const bf16 *Qt, const bf16 *Ot, const bf16 *Kt, const bf16 *Vt, const bf16 *KTt,
                   const float *D, const float *lse2, int Sp, const int32_t *rop, fa_meta m)
{
    constexpr int NT = DP / 8, KT = FA_WB * DP;
#ifndef FA_WG_ARCH
    __trap();
#else
    extern __shared__ __align__(16) unsigned char fa_smem[];
    bf16 *qs = reinterpret_cast<bf16 *>(fa_smem), *os = qs + FA_WG_BQ * DP, *ks = os + FA_WG_BQ * DP,
         *vs = ks + NS * KT, *kts = vs + NS * KT;
    uint64_t *bar = reinterpret_cast<uint64_t *>(kts + NS * KT);
    uint64_t *qfull = bar, *full = bar + 1, *empty = bar + 1 + NS;
    const int h = blockIdx.x, kvh = h / (m.nh / m.nkv), S = m.S;
    const int wgi = __shfl_sync(0xffffffffu, (int)threadIdx.x / 128, 0);
    const int lane = threadIdx.x & 31;
    const int q0 = (gridDim.y - 1 - blockIdx.y) * FA_WG_BQ, q1 = min(q0 + FA_WG_BQ, S);
    if (m.len && q0 >= __ldg(m.len))
        return;
    int lo, hi;
    fa_key_range(m, q0, q1, &lo, &hi);
    const int t0 = lo / FA_WB, ntiles = (hi + FA_WB - 1) / FA_WB - t0;
    fa_wg_bars(bar, NS);

    if (wgi == 0) {
        wg_regs_dec<40>();
        if (threadIdx.x == 0) {
            mb_expect_tx(qfull, 2 * FA_WG_BQ * DP * 2);
            bulk_copy(qs, Qt + ((size_t)h * Sp + q0) * DP, FA_WG_BQ * DP * 2, qfull);
            bulk_copy(os, Ot + ((size_t)h * Sp + q0) * DP, FA_WG_BQ * DP * 2, qfull);
            const size_t kb = (size_t)kvh * Sp * DP;
            fa_wg_produce(full, empty, NS, ntiles, 3 * KT * 2, [&](int it, int s) {
                const size_t off = kb + (size_t)(t0 + it) * KT;
                bulk_copy(ks + s * KT, Kt + off, KT * 2, full + s);
                bulk_copy(vs + s * KT, Vt + off, KT * 2, full + s);
                bulk_copy(kts + s * KT, KTt + off, KT * 2, full + s);
            });
        }
        return;
    }
    wg_regs_inc<232>();

    const int wg = wgi - 1, warp = (threadIdx.x >> 5) & 3, g = lane >> 2, t = lane & 3;
    const int r0 = wg * 64 + warp * 16 + g;
    const int qp[2] = {q0 + r0, q0 + r0 + 8};
    const fa_qspan qsp[2] = {fa_qspan_of(m, qp[0]), fa_qspan_of(m, qp[1])};
    const float lq[2] = {lse2[(size_t)h * Sp + qp[0]], lse2[(size_t)h * Sp + qp[1]]};
    const float Dq[2] = {D[(size_t)h * Sp + qp[0]], D[(size_t)h * Sp + qp[1]]};
    const float sc = m.scale * FA_LOG2E;
    const bf16 *qa = qs + wg * 64 * DP, *oa = os + wg * 64 * DP;
    /* descriptors (wg_step): A of 64 rows and B of 64 positions, tiles of
     * 64; Kᵀ, DP rows */
    const uint64_t qd = wg_desc(qa, 8 * 128), od = wg_desc(oa, 8 * 128), kd = wg_desc(ks, 8 * 128),
                   vd = wg_desc(vs, 8 * 128), ktd = wg_desc(kts, (DP / 8) * 128);

    float acc[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++)
        acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    float s[8][4], dp[8][4];
    uint32_t da[4][4]; /* dS of the previous tile, bf16, as A fragments */
    auto issue_s_dp = [&](int st) {
#pragma unroll
        for (int kk = 0; kk < DP / 16; kk++)
            wg_ss<FA_WB>(s, wg_step<64>(qd, 0, kk), wg_step<64>(kd, st * KT, kk), kk > 0);
#pragma unroll
        for (int kk = 0; kk < DP / 16; kk++)
            wg_ss<FA_WB>(dp, wg_step<64>(od, 0, kk), wg_step<64>(vd, st * KT, kk), kk > 0);
        wg_commit();
    };
    /* dS = P ⊙ (dP − D) into dp, P recomputed from lse; nz: the tile's
     * noise bits, loaded while its products ran */
    fa_noise<1> nz = {};
    auto grad_s = [&](int k0) {
        const uint64_t vis[2] = {fa_qbits(qsp[0], k0, nz.w[0]), fa_qbits(qsp[1], k0, nz.w[0])};
        if ((vis[0] & vis[1]) != ~0ull)
            fa_mask_tile(s, vis, t, -INFINITY);
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float p = fa_exp2(fmaf(s[j][e], sc, -lq[e >> 1]));
                dp[j][e] = p * (dp[j][e] - Dq[e >> 1]);
            }
    };
    auto pack_ds = [&]() {
#pragma unroll
        for (int kk = 0; kk < 4; kk++)
            fa_pack_a(da[kk], dp, kk);
    };

    mb_wait(qfull, 0);
    mb_wait(full, 0);
    wg_hold(s);
    wg_hold(dp);
    wg_fence();
    issue_s_dp(0);
    nz.load(m.nb, t0 * FA_WB);
    wg_wait<0>();
    wg_hold(s);
    wg_hold(dp);
    grad_s(t0 * FA_WB);
    pack_ds();
    for (int it = 1; it < ntiles; it++) {
        const int st = it % NS, pv = (it - 1) % NS;
        mb_wait(full + st, (it / NS) & 1);
        wg_hold(s);
        wg_hold(dp);
        wg_hold(acc);
        wg_fence();
        issue_s_dp(st);
#pragma unroll
        for (int kk = 0; kk < 4; kk++)
            wg_rs<DP>(acc, da[kk], wg_step<DP>(ktd, pv * KT, kk));
        wg_commit();
        nz.load(m.nb, (t0 + it) * FA_WB);
        wg_wait<1>();
        wg_hold(s);
        wg_hold(dp);
        grad_s((t0 + it) * FA_WB);
        wg_wait<0>();
        wg_hold(acc);
        __syncwarp();
        if (lane == 0)
            mb_arrive(empty + pv);
        pack_ds();
    }
    wg_hold(acc);
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < 4; kk++)
        wg_rs<DP>(acc, da[kk], wg_step<DP>(ktd, ((ntiles - 1) % NS) * KT, kk));
    wg_commit();
    wg_wait<0>();
    wg_hold(acc);
    fa_store_dq<NT, (DP <= 80)>(dq, acc, qp, h, rop, m, t); /* at 128: 1.35 against 1.12 ms on the recipe */
#endif
}

template <int DP, int NS>
__global__ void __launch_bounds__(FA_WG_THREADS, 1)
    k_fa_bwd_dkv_wg(float *dk, float *dv, const bf16 *Kt, const bf16 *Vt, const bf16 *Qt, const bf16 *Ot,
                    const bf16 *QTt, const bf16 *OTt, const float *D, const float *lse2, int Sp, const int32_t *rop,
                    fa_meta m, int nc)
{
    constexpr int NT = DP / 8, KT = FA_WB * DP;
#ifndef FA_WG_ARCH
    __trap();
#else
    extern __shared__ __align__(16) unsigned char fa_smem[];
    bf16 *ksm = reinterpret_cast<bf16 *>(fa_smem), *vsm = ksm + FA_WG_BQ * DP, *qs = vsm + FA_WG_BQ * DP,
         *os = qs + NS * KT, *qts = os + NS * KT, *ots = qts + NS * KT;
    float *lqs = reinterpret_cast<float *>(ots + NS * KT), *dqs = lqs + NS * FA_WB; /* [NS][64] each */
    uint64_t *bar = reinterpret_cast<uint64_t *>(dqs + NS * FA_WB);
    uint64_t *kfull = bar, *full = bar + 1, *empty = bar + 1 + NS;
    /* the block's kv head and its share c of the group's query heads,
     * [h0, h0 + nhq) (one of nc): every query tile of the first, then of
     * the next */
    const int kvh = blockIdx.y / nc, share = blockIdx.y % nc, G = m.nh / m.nkv, S = m.S;
    const int h0 = kvh * G + share * G / nc, nhq = kvh * G + (share + 1) * G / nc - h0;
    const int wgi = __shfl_sync(0xffffffffu, (int)threadIdx.x / 128, 0);
    const int lane = threadIdx.x & 31;
    const int k0 = blockIdx.x * FA_WG_BQ, k1 = min(k0 + FA_WG_BQ, S);
    if (m.len && k0 >= __ldg(m.len))
        return;
    int lo, hi;
    fa_query_range(m, k0, k1, &lo, &hi);
    const int t0 = lo / FA_WB, nt = (hi + FA_WB - 1) / FA_WB - t0, ntiles = nhq * nt;
    fa_wg_bars(bar, NS);

    if (wgi == 0) {
        wg_regs_dec<40>();
        if (threadIdx.x == 0) {
            mb_expect_tx(kfull, 2 * FA_WG_BQ * DP * 2);
            bulk_copy(ksm, Kt + ((size_t)kvh * Sp + k0) * DP, FA_WG_BQ * DP * 2, kfull);
            bulk_copy(vsm, Vt + ((size_t)kvh * Sp + k0) * DP, FA_WG_BQ * DP * 2, kfull);
            fa_wg_produce(full, empty, NS, ntiles, 4 * KT * 2 + 2 * FA_WB * 4, [&](int it, int s) {
                const int hq = h0 + it / nt, p0 = (t0 + it % nt) * FA_WB;
                const size_t off = ((size_t)hq * Sp + p0) * DP;
                bulk_copy(qs + s * KT, Qt + off, KT * 2, full + s);
                bulk_copy(os + s * KT, Ot + off, KT * 2, full + s);
                bulk_copy(qts + s * KT, QTt + off, KT * 2, full + s);
                bulk_copy(ots + s * KT, OTt + off, KT * 2, full + s);
                bulk_copy(lqs + s * FA_WB, lse2 + (size_t)hq * Sp + p0, FA_WB * 4, full + s);
                bulk_copy(dqs + s * FA_WB, D + (size_t)hq * Sp + p0, FA_WB * 4, full + s);
            });
        }
        return;
    }
    wg_regs_inc<232>();

    const int wg = wgi - 1, warp = (threadIdx.x >> 5) & 3, g = lane >> 2, t = lane & 3;
    const int r0 = wg * 64 + warp * 16 + g;
    const int kp[2] = {k0 + r0, k0 + r0 + 8};
    int qlo[2], qhi[2]; /* the queries that see each of the lane's two keys */
    fa_kspan_of(m, kp[0], &qlo[0], &qhi[0]);
    fa_kspan_of(m, kp[1], &qlo[1], &qhi[1]);
    const float sc = m.scale * FA_LOG2E;
    const bf16 *ka = ksm + wg * 64 * DP, *va = vsm + wg * 64 * DP;
    /* descriptors (wg_step): K, V, Q and dO, 64 rows; Qᵀ and dOᵀ, DP rows */
    const uint64_t kd = wg_desc(ka, 8 * 128), vd = wg_desc(va, 8 * 128), qd = wg_desc(qs, 8 * 128),
                   od = wg_desc(os, 8 * 128), otd = wg_desc(ots, (DP / 8) * 128), qtd = wg_desc(qts, (DP / 8) * 128);

    float ak[NT][4], av[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            ak[n][e] = av[n][e] = 0.0f;
    float s[8][4], dp[8][4];
    uint32_t pa[4][4], da[4][4];

    /* Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ over the warpgroup's 64 keys, issued */
    auto issue_s_dp = [&](int st) {
#pragma unroll
        for (int kk = 0; kk < DP / 16; kk++)
            wg_ss<FA_WB>(s, wg_step<64>(kd, 0, kk), wg_step<64>(qd, st * KT, kk), kk > 0);
#pragma unroll
        for (int kk = 0; kk < DP / 16; kk++)
            wg_ss<FA_WB>(dp, wg_step<64>(vd, 0, kk), wg_step<64>(od, st * KT, kk), kk > 0);
        wg_commit();
    };
    /* Pᵀ into s and dSᵀ into dp, fp32 */
    auto grad_s = [&](int st, int p0) {
        const uint64_t vis[2] = {attn_bits64(qlo[0], qhi[0], p0), attn_bits64(qlo[1], qhi[1], p0)};
        if ((vis[0] & vis[1]) != ~0ull)
            fa_mask_tile(s, vis, t, -INFINITY);
        const float *lt = lqs + st * FA_WB, *dt_ = dqs + st * FA_WB;
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int c = j * 8 + 2 * t + (e & 1);
                float p = fa_exp2(fmaf(s[j][e], sc, -lt[c]));
                s[j][e] = p;
                dp[j][e] = p * (dp[j][e] - dt_[c]);
            }
    };
    auto pack = [&]() {
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            fa_pack_a(pa[kk], s, kk);
            fa_pack_a(da[kk], dp, kk);
        }
    };
    /* dV += Pᵀ·dO and dK += dSᵀ·Q of the tile in stage st, issued */
    auto issue_dkv = [&](int st) {
#pragma unroll
        for (int kk = 0; kk < 4; kk++)
            wg_rs<DP>(av, pa[kk], wg_step<DP>(otd, st * KT, kk));
#pragma unroll
        for (int kk = 0; kk < 4; kk++)
            wg_rs<DP>(ak, da[kk], wg_step<DP>(qtd, st * KT, kk));
        wg_commit();
    };
    auto release = [&](int st) {
        __syncwarp();
        if (lane == 0)
            mb_arrive(empty + st);
    };

    mb_wait(kfull, 0);
    for (int it = 0; it < ntiles; it++) {
        const int st = it % NS;
        mb_wait(full + st, (it / NS) & 1);
        wg_hold(s);
        wg_hold(dp);
        wg_fence();
        issue_s_dp(st);
        wg_wait<0>();
        wg_hold(s);
        wg_hold(dp);
        grad_s(st, (t0 + it % nt) * FA_WB);
        pack();
        wg_hold(av);
        wg_hold(ak);
        wg_fence();
        issue_dkv(st);
        wg_wait<0>();
        wg_hold(av);
        wg_hold(ak);
        release(st);
    }
    /* with several shares, the share's partial rows (k_fa_sum_group adds them) */
    fa_store_dkv<NT, 1>(dk, dv, ak, av, kp, blockIdx.y, kvh, rop, m, nc > 1, t);
#endif
}

/* ---- host side */

/* the padded head dim this file has an instance for, 0 when none */
static int fa_dp(int d)
{
    static const int dps[] = {48, 64, 80, 128};
    for (int dp : dps)
        if (d <= dp && d > dp - 16)
            return dp;
    return 0;
}

int cuda_flash_takes(const op_attn_t *a) { return cuda_bf16 && fa_dp(a->head_dim) != 0; }

/* staging buffers carved from the backend's scratch */
struct fa_stage {
    bf16 *q, *k, *v, *o;
    float *D, *lse2;
    float *pk, *pv; /* per-query-head dK, dV when heads share kv heads */
    int32_t *sp;
    uint32_t *nb; /* noise bits, fa_meta */
    int nwords;
};

/* consecutive pieces of the backend's scratch, each 256-byte aligned;
 * bytes covers them all with the alignment */
struct fa_pieces {
    unsigned char *p;
    explicit fa_pieces(size_t bytes) : p(reinterpret_cast<unsigned char *>(cuda_scratch((bytes + 3) / 4))) {}
    template <typename T> T *take(size_t n)
    {
        T *r = reinterpret_cast<T *>(p);
        p += (n * sizeof(T) + 255) / 256 * 256;
        return r;
    }
};

static fa_stage fa_carve(const op_attn_t *a, int dp, int bwd)
{
    size_t S = (size_t)a->n_tok, nq = S * a->n_heads * dp, nk = S * a->n_kv_heads * dp;
    int part = bwd && a->n_heads != a->n_kv_heads;
    size_t np = S * a->n_heads * a->head_dim;
    int nwords = (int)((S + 31) / 32) + 2;
    size_t bytes = (nq + 2 * nk + (bwd ? nq : 0)) * sizeof(bf16) + 256 * 10 + S * 4 + (size_t)nwords * 4 +
                   (bwd ? 2 * S * a->n_heads * sizeof(float) : 0) + (part ? 2 * np * sizeof(float) : 0);
    fa_pieces pc(bytes);
    fa_stage st;
    st.q = pc.take<bf16>(nq);
    st.k = pc.take<bf16>(nk);
    st.v = pc.take<bf16>(nk);
    st.o = bwd ? pc.take<bf16>(nq) : NULL;
    st.sp = pc.take<int32_t>(S);
    st.nb = pc.take<uint32_t>(nwords);
    st.nwords = nwords;
    st.D = bwd ? pc.take<float>(S * a->n_heads) : NULL;
    st.lse2 = bwd ? pc.take<float>(S * a->n_heads) : NULL;
    st.pk = part ? pc.take<float>(np) : NULL;
    st.pv = part ? pc.take<float>(np) : NULL;
    return st;
}

static fa_meta fa_meta_of(const op_attn_t *a, const fa_stage &st)
{
    fa_meta m;
    m.S = a->n_tok, m.nh = a->n_heads, m.nkv = a->n_kv_heads, m.d = a->head_dim, m.n_splits = a->n_splits;
    m.scale = a->scale;
    m.ss = a->split_start, m.sf = a->split_first, m.sm = a->split_mode, m.sp = st.sp;
    m.nb = st.nb;
    m.len = NULL;
    m.write = 0;
    return m;
}

/* st.sp (the split of every position) and st.nb (the noise bitmap, st.nwords
 * words) for fa_meta */
static void fa_stage_meta(const fa_stage &st, const op_attn_t *a)
{
    int S = a->n_tok;
    k_fa_pos_split<<<cuda_blocks((size_t)S), CU_THREADS, 0, cuda_stream>>>(st.sp, a->split_start, a->n_splits, S);
    CU_LAUNCHED();
    k_fa_noise_bits<<<cuda_blocks((size_t)st.nwords), CU_THREADS, 0, cuda_stream>>>(st.nb, st.sp, a->split_mode, S,
                                                                                   st.nwords);
    CU_LAUNCHED();
}

static void fa_stage_qkv(const fa_stage &st, const float *q, const float *k, const float *v, const op_attn_t *a,
                         int dp)
{
    int S = a->n_tok;
    fa_stage_meta(st, a);
    fa_stage_rows(st.q, q, a->row_of_pos, S, a->n_heads, a->head_dim, dp);
    fa_stage_rows(st.k, k, a->row_of_pos, S, a->n_kv_heads, a->head_dim, dp);
    fa_stage_rows(st.v, v, a->row_of_pos, S, a->n_kv_heads, a->head_dim, dp);
}

/* the dynamic shared memory a block needs, and all of the unified L1 as
 * shared memory: left to the driver, it held two blocks a multiprocessor
 * where four fit (Nsight Compute, "Block Limit Shared Mem") */
template <typename K> static void fa_smem(K kern, size_t bytes)
{
    CU_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    CU_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributePreferredSharedMemoryCarveout, 100));
}

/* Each kernel's shape: warps a block (NW, 4 or 8) and blocks a
 * multiprocessor should hold at once (MB, the register cap the compiler
 * gets, __launch_bounds__' second argument), per kernel: forward, dQ, dK/dV.
 * The head dims of the models (64, 128) have several instances so that
 * BAGEL_FA_NW="F,Q,KV" (4 or 8) and BAGEL_FA_MB="F,Q,KV" (1 to 4 with four
 * warps, 1 or 2 with eight) can pick among them for measurement
 * (scripts/bench/attn-gpu.sh); the defaults are the best of that sweep on an
 * H200 at the recipe packing (docs/results/attention-notes.md). fa_cfg[0][0]
 * is -1 until the variables have been read. */
static int fa_cfg[2][3] = {{-1, 0, 0}, {0, 0, 0}}; /* [0] NW, [1] MB; 0: the default */

static void fa_cfg_read(void)
{
    if (fa_cfg[0][0] >= 0)
        return;
    const char *names[2] = {"BAGEL_FA_NW", "BAGEL_FA_MB"};
    for (int w = 0; w < 2; w++) {
        int v[3] = {0, 0, 0};
        const char *e = getenv(names[w]);
        if (e)
            sscanf(e, "%d,%d,%d", &v[0], &v[1], &v[2]);
        for (int i = 0; i < 3; i++)
            fa_cfg[w][i] = w == 0 ? (v[i] == 4 || v[i] == 8 ? v[i] : 0) : (v[i] >= 1 && v[i] <= 4 ? v[i] : 0);
    }
}

/* the variant of kernel i (0 forward, 1 dQ, 2 dK/dV) at padded head dim DP,
 * as 10·NW + MB */
static int fa_variant(int i, int DP)
{
    static const int nw_small[3] = {8, 8, 8}, mb_small[3] = {2, 2, 1};
    static const int nw_large[3] = {4, 4, 8}, mb_large[3] = {2, 2, 1};
    fa_cfg_read();
    if (DP != 64 && DP != 128)
        return 42;
    int nw = fa_cfg[0][i] ? fa_cfg[0][i] : DP <= 64 ? nw_small[i] : nw_large[i];
    int mb = fa_cfg[1][i] ? fa_cfg[1][i] : DP <= 64 ? mb_small[i] : mb_large[i];
    if (nw == 8 && mb > 2)
        mb = 2;
    return 10 * nw + mb;
}

#define FA_VARIANT_SWITCH(v, DP, LAUNCH)                                                                               \
    do {                                                                                                               \
        if constexpr (DP == 64 || DP == 128) {                                                                         \
            switch (v) {                                                                                               \
            case 41: LAUNCH(DP, 1, 4); break;                                                                          \
            case 43: LAUNCH(DP, 3, 4); break;                                                                          \
            case 44: LAUNCH(DP, 4, 4); break;                                                                          \
            case 81: LAUNCH(DP, 1, 8); break;                                                                          \
            case 82: LAUNCH(DP, 2, 8); break;                                                                          \
            default: LAUNCH(DP, 2, 4); break;                                                                          \
            }                                                                                                          \
        } else {                                                                                                       \
            LAUNCH(DP, 2, 4);                                                                                          \
        }                                                                                                              \
    } while (0)

template <int DP> static void fa_fwd(float *out, float *lse, const fa_stage &st, const op_attn_t *a)
{
#define L_FWD(DD_, MM_, NW_)                                                                                           \
    do {                                                                                                               \
        size_t smem = (16 * NW_ + 4 * 64) * (DD_ + 8) * sizeof(bf16); /* Q, two stages of K and V */                   \
        dim3 grid((a->n_tok + 16 * NW_ - 1) / (16 * NW_), a->n_heads);                                                 \
        fa_smem(k_fa_fwd<DD_, MM_, NW_>, smem);                                                                        \
        k_fa_fwd<DD_, MM_, NW_><<<grid, 32 * NW_, smem, cuda_stream>>>(out, lse, st.q, st.k, st.v, a->row_of_pos,      \
                                                                      fa_meta_of(a, st));                              \
    } while (0)
    FA_VARIANT_SWITCH(fa_variant(0, DP), DP, L_FWD);
#undef L_FWD
    CU_LAUNCHED();
}

template <int DP>
static void fa_bwd(float *dq, float *dk, float *dv, const fa_stage &st, const op_attn_t *a)
{
    fa_meta m = fa_meta_of(a, st);
    /* shared memory: two resident tiles of the block's rows, two stages of
     * two streamed tiles */
    if (dq) {
#define L_DQ(DD_, MM_, NW_)                                                                                            \
    do {                                                                                                               \
        size_t smem = (2 * 16 * NW_ + 4 * 64) * (DD_ + 8) * sizeof(bf16);                                             \
        dim3 grid((a->n_tok + 16 * NW_ - 1) / (16 * NW_), a->n_heads);                                                 \
        fa_smem(k_fa_bwd_dq<DD_, MM_, NW_>, smem);                                                                     \
        k_fa_bwd_dq<DD_, MM_, NW_><<<grid, 32 * NW_, smem, cuda_stream>>>(dq, st.q, st.k, st.v, st.o, st.D, st.lse2,   \
                                                                         a->row_of_pos, m);                            \
    } while (0)
        FA_VARIANT_SWITCH(fa_variant(1, DP), DP, L_DQ);
#undef L_DQ
        CU_LAUNCHED();
    }
    if (dk || dv) {
        int part = st.pk != NULL;
        float *ok = part ? st.pk : dk, *ov = part ? st.pv : dv;
#define L_DKV(DD_, MM_, NW_)                                                                                           \
    do {                                                                                                               \
        size_t smem = (2 * 16 * NW_ + 4 * 64) * (DD_ + 8) * sizeof(bf16);                                             \
        dim3 grid((a->n_tok + 16 * NW_ - 1) / (16 * NW_), a->n_heads);                                                 \
        fa_smem(k_fa_bwd_dkv<DD_, MM_, NW_>, smem);                                                                    \
        k_fa_bwd_dkv<DD_, MM_, NW_><<<grid, 32 * NW_, smem, cuda_stream>>>(ok, ov, st.q, st.k, st.v, st.o, st.D,       \
                                                                          st.lse2, a->row_of_pos, m, part);            \
    } while (0)
        FA_VARIANT_SWITCH(fa_variant(2, DP), DP, L_DKV);
#undef L_DKV
        CU_LAUNCHED();
        if (part) {
            size_t rows = (size_t)a->n_tok * a->n_kv_heads;
            k_fa_sum_group<<<(unsigned)((rows * 32 + 255) / 256), 256, 0, cuda_stream>>>(
                dk, dv, st.pk, st.pv, a->row_of_pos, a->n_tok, a->n_heads, a->n_kv_heads, a->head_dim, 0);
            CU_LAUNCHED();
        }
    }
}

/* The wgmma kernels' positions (k_fa_layout_splits, above): their fa_meta,
 * the storage row of each position (-1: padding) and the bound Sp, a
 * multiple of 128 that sizes the staged operands and the grids. */
struct fa_wg_pos {
    fa_meta m;
    const int32_t *rop;
    int Sp;
};

/* the scratch fa_wg_layout takes, with the pieces' alignment */
static size_t fa_wg_layout_bytes(const op_attn_t *a)
{
    const size_t n2 = 2 * (size_t)a->n_splits + 1, bound = (size_t)fa_wg_bound(a->n_tok, a->n_splits);
    return (2 * n2 + 2) * 4 + n2 + 4 + 2 * bound * 4 + (bound / 32 + 2) * 4 + 256 * 7;
}

static fa_wg_pos fa_wg_layout(const op_attn_t *a, fa_pieces &pc)
{
    const int n = a->n_splits, n2 = 2 * n + 1, bound = fa_wg_bound(a->n_tok, n), nwords = bound / 32 + 2;
    int32_t *ss2 = pc.take<int32_t>((size_t)n2 + 1), *sf2 = pc.take<int32_t>((size_t)n2), *len = pc.take<int32_t>(1);
    uint8_t *sm2 = pc.take<uint8_t>((size_t)n2);
    int32_t *sp2 = pc.take<int32_t>((size_t)bound), *rop2 = pc.take<int32_t>((size_t)bound);
    uint32_t *nb = pc.take<uint32_t>((size_t)nwords);
    const char *e = getenv("BAGEL_FA_ALIGN");
    k_fa_layout_splits<<<1, 1024, 0, cuda_stream>>>(ss2, sf2, sm2, len, a->split_start, a->split_first,
                                                     a->split_mode, n, bound, e && atoi(e) == 1 ? 1 : FA_WG_ALIGN);
    CU_LAUNCHED();
    k_fa_layout_pos<<<cuda_blocks((size_t)bound), CU_THREADS, 0, cuda_stream>>>(sp2, rop2, ss2, n2, a->split_start,
                                                                               a->row_of_pos, bound);
    CU_LAUNCHED();
    k_fa_noise_bits<<<cuda_blocks((size_t)nwords), CU_THREADS, 0, cuda_stream>>>(nb, sp2, sm2, bound, nwords);
    CU_LAUNCHED();
    fa_wg_pos r;
    r.m.S = bound, r.m.nh = a->n_heads, r.m.nkv = a->n_kv_heads, r.m.d = a->head_dim, r.m.n_splits = n2;
    r.m.scale = a->scale;
    r.m.ss = ss2, r.m.sf = sf2, r.m.sm = sm2, r.m.sp = sp2, r.m.nb = nb, r.m.len = len;
    r.m.write = 0;
    r.rop = rop2, r.Sp = bound;
    return r;
}

/* the GPU's compute capability (major) and multiprocessors, read once */
struct fa_dev {
    int major, sms;
};
static const fa_dev &fa_device(void)
{
    static fa_dev d = {-1, 0};
    if (d.major < 0) {
        int dev = 0;
        CU_CHECK(cudaGetDevice(&dev));
        CU_CHECK(cudaDeviceGetAttribute(&d.sms, cudaDevAttrMultiProcessorCount, dev));
        CU_CHECK(cudaDeviceGetAttribute(&d.major, cudaDevAttrComputeCapabilityMajor, dev));
    }
    return d;
}

/* The key tile of k_fa_fwd_wg for this padded head dim, 0 where the forward
 * runs on k_fa_fwd instead: k_fa_fwd_wg takes padded head dims 64, 80 and
 * 128 on a Hopper GPU, unless BAGEL_FA_FWD=sync (the mma.sync kernel, kept
 * for the other head dims (48), and for comparison). BAGEL_FA_WG_BN=64 takes key tiles
 * of 64 instead of 128. The environment is read at every call (the tests
 * run both kernels). */
static int fa_wg_bn(int dp)
{
    const char *e = getenv("BAGEL_FA_FWD"), *b = getenv("BAGEL_FA_WG_BN");
    if (fa_device().major != 9 || (e && !strcmp(e, "sync")) || (dp != 64 && dp != 80 && dp != 128))
        return 0;
    return b && atoi(b) == 64 ? 64 : 128;
}

/* The stages of the forward's, dQ's and dK/dV's rings. Two had left the
 * forward and dQ waiting for their tiles: four took the forward from 1.92 to
 * 1.48 ms and dQ from 3.24 to 2.45 ms on the causal packing at head dim 128
 * on an H200 (0.28 to 0.26 and 0.48 to 0.41 ms on the recipe at 64); dK/dV
 * measured the same with 2, 3 or 4 (docs/results/attention-notes.md) */
#define FA_WG_STAGES 4, 4, 2

/* The stages of a wgmma kernel's ring of streamed tiles (kernel i: 0
 * forward, 1 dQ, 2 dK/dV) whose block needs fixed + NS·per bytes of shared
 * memory: FA_WG_STAGES, or BAGEL_FA_NS="F,Q,KV" (2 to 4, read at every
 * call), as many of those as fit */
static int fa_wg_ns(int i, size_t fixed, size_t per)
{
    static const int def[3] = {FA_WG_STAGES};
    int v[3] = {0, 0, 0};
    const char *e = getenv("BAGEL_FA_NS");
    if (e)
        sscanf(e, "%d,%d,%d", &v[0], &v[1], &v[2]);
    int ns = v[i] >= 2 && v[i] <= 4 ? v[i] : def[i];
    while (ns > 2 && fixed + ns * per > 227 * 1024)
        ns--;
    return ns;
}

/* launches kernel K<..., NS> for ns in 2..4 */
#define FA_NS_SWITCH(ns, LAUNCH)                                                                                       \
    do {                                                                                                               \
        switch (ns) {                                                                                                  \
        case 3: LAUNCH(3); break;                                                                                      \
        case 4: LAUNCH(4); break;                                                                                      \
        default: LAUNCH(2); break;                                                                                     \
        }                                                                                                              \
    } while (0)

template <int DP, int BN> static void fa_fwd_wg(float *out, float *lse, const float *q, const float *k, const float *v,
                                                const op_attn_t *a)
{
    const int Sp = fa_wg_bound(a->n_tok, a->n_splits), nh = a->n_heads, nkv = a->n_kv_heads;
    size_t nq = (size_t)nh * Sp * DP, nk = (size_t)nkv * Sp * DP;
    fa_pieces pc((nq + 2 * nk) * sizeof(bf16) + 256 * 3 + fa_wg_layout_bytes(a));
    bf16 *qt = pc.take<bf16>(nq), *kt = pc.take<bf16>(nk), *vt = pc.take<bf16>(nk);
    const fa_wg_pos L = fa_wg_layout(a, pc);
    const int32_t *rop = L.rop;
    k_fa_stage_tiles<<<cuda_blocks(nq / 8), CU_THREADS, 0, cuda_stream>>>(qt, q, rop, Sp, Sp, nh, a->head_dim, DP, 64);
    CU_LAUNCHED();
    k_fa_stage_tiles<<<cuda_blocks(nk / 8), CU_THREADS, 0, cuda_stream>>>(kt, k, rop, Sp, Sp, nkv, a->head_dim, DP, BN);
    CU_LAUNCHED();
    k_fa_stage_tiles_t<<<cuda_blocks(nk / 8), CU_THREADS, 0, cuda_stream>>>(vt, v, rop, Sp, Sp, nkv, a->head_dim, DP,
                                                                          BN);
    CU_LAUNCHED();
    const size_t fixed = (size_t)FA_WG_BQ * DP * 2 + 8, per = (size_t)2 * BN * DP * 2 + 16;
    const int ns = fa_wg_ns(0, fixed, per);
    const size_t smem = fixed + ns * per;
    /* the heads of one query tile side by side, the last tiles first (the
     * blocks start in this order): 205-212 against 195 TFLOP/s forward on
     * the recipe at head dim 64 on an H200, against the tiles of one head
     * side by side */
    dim3 grid((unsigned)nh, (unsigned)(Sp / FA_WG_BQ));
#define L_FWD(NS_)                                                                                                     \
    fa_smem(k_fa_fwd_wg<DP, BN, NS_>, smem);                                                                           \
    k_fa_fwd_wg<DP, BN, NS_><<<grid, FA_WG_THREADS, smem, cuda_stream>>>(out, lse, qt, kt, vt, Sp, rop, L.m)
    FA_NS_SWITCH(ns, L_FWD);
#undef L_FWD
    CU_LAUNCHED();
}

void cuda_flash_fwd(float *out, float *lse, const float *q, const float *k, const float *v, const op_attn_t *a)
{
    int dp = fa_dp(a->head_dim);
    CU_REQUIRE(dp, "flash attention: no instance for this head dim");
    switch (fa_wg_bn(dp) * 1000 + dp) {
    case 64064: fa_fwd_wg<64, 64>(out, lse, q, k, v, a); return;
    case 128064: fa_fwd_wg<64, 128>(out, lse, q, k, v, a); return;
    case 64080: fa_fwd_wg<80, 64>(out, lse, q, k, v, a); return;
    case 128080: fa_fwd_wg<80, 128>(out, lse, q, k, v, a); return;
    case 64128: fa_fwd_wg<128, 64>(out, lse, q, k, v, a); return;
    case 128128: fa_fwd_wg<128, 128>(out, lse, q, k, v, a); return;
    default: break;
    }
    fa_stage st = fa_carve(a, dp, 0);
    fa_stage_qkv(st, q, k, v, a, dp);
    switch (dp) {
    case 48: fa_fwd<48>(out, lse, st, a); break;
    case 64: fa_fwd<64>(out, lse, st, a); break;
    case 80: fa_fwd<80>(out, lse, st, a); break;
    default: fa_fwd<128>(out, lse, st, a); break;
    }
}

/* Whether the backward runs on k_fa_bwd_dq_wg and k_fa_bwd_dkv_wg: as the
 * forward (fa_wg_bn), with BAGEL_FA_BWD=sync for the mma.sync kernels. */
static int fa_wg_bwd(int dp)
{
    const char *e = getenv("BAGEL_FA_BWD");
    return !(e && !strcmp(e, "sync")) && fa_wg_bn(dp) != 0;
}

/* How many blocks share a kv head's group of query heads in
 * k_fa_bwd_dkv_wg, for Sp positions: one block walks all of the group's
 * heads, so the resident keys are loaded once and no partial rows are
 * written and added, unless that leaves fewer than about four blocks a
 * multiprocessor; then the group is split in as many shares as that takes,
 * each writing partial rows. BAGEL_FA_DKV_NC picks the number (1 to the
 * group size) for measurement. */
static int fa_dkv_shares(const op_attn_t *a, int Sp)
{
    const int sms = fa_device().sms, G = a->n_heads / a->n_kv_heads, blocks = Sp / FA_WG_BQ * a->n_kv_heads;
    const char *e = getenv("BAGEL_FA_DKV_NC");
    int nc = e ? atoi(e) : (4 * sms + blocks - 1) / blocks;
    return nc < 1 ? 1 : nc > G ? G : nc;
}

template <int DP>
static void fa_bwd_wg(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                      const float *q, const float *k, const float *v, const op_attn_t *a)
{
    const int Sp = fa_wg_bound(a->n_tok, a->n_splits), nh = a->n_heads, nkv = a->n_kv_heads;
    const int nc = dk || dv ? fa_dkv_shares(a, Sp) : 1, part = nc > 1, d = a->head_dim;
    size_t nq = (size_t)nh * Sp * DP, nk = (size_t)nkv * Sp * DP, np = (size_t)Sp * nkv * nc * d;
    size_t bytes = (4 * nq + 3 * nk) * sizeof(bf16) + 2 * (size_t)nh * Sp * 4 + (part ? 2 * np * 4 : 0) + 256 * 11 +
                   fa_wg_layout_bytes(a);
    fa_pieces pc(bytes);
    bf16 *qt = pc.take<bf16>(nq), *ot = pc.take<bf16>(nq), *qtt = pc.take<bf16>(nq), *ott = pc.take<bf16>(nq);
    bf16 *kt = pc.take<bf16>(nk), *vt = pc.take<bf16>(nk), *ktt = pc.take<bf16>(nk);
    float *D = pc.take<float>((size_t)nh * Sp), *lse2 = pc.take<float>((size_t)nh * Sp);
    float *pk = part ? pc.take<float>(np) : NULL, *pv = part ? pc.take<float>(np) : NULL;
    const fa_wg_pos L = fa_wg_layout(a, pc);
    const int32_t *rop = L.rop;
    k_fa_stage_tiles<<<cuda_blocks(nq / 8), CU_THREADS, 0, cuda_stream>>>(qt, q, rop, Sp, Sp, nh, d, DP, FA_WB);
    k_fa_stage_tiles<<<cuda_blocks(nq / 8), CU_THREADS, 0, cuda_stream>>>(ot, dout, rop, Sp, Sp, nh, d, DP, FA_WB);
    if (dk || dv) { /* what only dK/dV's products read */
        k_fa_stage_tiles_t<<<cuda_blocks(nq / 8), CU_THREADS, 0, cuda_stream>>>(qtt, q, rop, Sp, Sp, nh, d, DP, FA_WB);
        k_fa_stage_tiles_t<<<cuda_blocks(nq / 8), CU_THREADS, 0, cuda_stream>>>(ott, dout, rop, Sp, Sp, nh, d, DP,
                                                                              FA_WB);
    }
    k_fa_stage_tiles<<<cuda_blocks(nk / 8), CU_THREADS, 0, cuda_stream>>>(kt, k, rop, Sp, Sp, nkv, d, DP, FA_WB);
    k_fa_stage_tiles<<<cuda_blocks(nk / 8), CU_THREADS, 0, cuda_stream>>>(vt, v, rop, Sp, Sp, nkv, d, DP, FA_WB);
    if (dq) /* what only dQ's product reads */
        k_fa_stage_tiles_t<<<cuda_blocks(nk / 8), CU_THREADS, 0, cuda_stream>>>(ktt, k, rop, Sp, Sp, nkv, d, DP, FA_WB);
    CU_LAUNCHED();
    size_t rows = (size_t)Sp * nh;
    k_fa_stage_rows<<<(unsigned)((rows * 32 + 255) / 256), 256, 0, cuda_stream>>>(D, lse2, dout, out, lse, rop, Sp,
                                                                                  Sp, nh, d);
    CU_LAUNCHED();
    fa_meta m = L.m;
    m.write = a->write; /* every row of dq, dk, dv is stored once (padding rows none) */
    if (dq) {
        dim3 grid((unsigned)nh, (unsigned)(Sp / FA_WG_BQ)); /* as the forward's */
        const size_t fixed = (size_t)2 * FA_WG_BQ * DP * 2 + 8, per = (size_t)3 * FA_WB * DP * 2 + 16;
        const int ns = fa_wg_ns(1, fixed, per);
        const size_t smem = fixed + ns * per;
#define L_DQ(NS_)                                                                                                      \
    fa_smem(k_fa_bwd_dq_wg<DP, NS_>, smem);                                                                            \
    k_fa_bwd_dq_wg<DP, NS_><<<grid, FA_WG_THREADS, smem, cuda_stream>>>(dq, qt, ot, kt, vt, ktt, D, lse2, Sp, rop, m)
        FA_NS_SWITCH(ns, L_DQ);
#undef L_DQ
        CU_LAUNCHED();
    }
    if (dk || dv) {
        const size_t fixed = (size_t)2 * FA_WG_BQ * DP * 2 + 8,
                     per = (size_t)4 * FA_WB * DP * 2 + 2 * FA_WB * 4 + 16;
        const int ns = fa_wg_ns(2, fixed, per);
        const size_t smem = fixed + ns * per;
        /* the key tiles of one head side by side: they stream the same
         * query tiles, which L2 then holds. With the heads of one key tile
         * side by side (14 heads' query tiles streamed at once) a variant
         * of this kernel took 2.13 against 1.80 ms on the causal packing at
         * head dim 64 on an H200 */
        dim3 gkv((unsigned)(Sp / FA_WG_BQ), (unsigned)(nkv * nc));
#define L_DKV(NS_)                                                                                                     \
    fa_smem(k_fa_bwd_dkv_wg<DP, NS_>, smem);                                                                           \
    k_fa_bwd_dkv_wg<DP, NS_><<<gkv, FA_WG_THREADS, smem, cuda_stream>>>(part ? pk : dk, part ? pv : dv, kt, vt, qt, ot, \
                                                                        qtt, ott, D, lse2, Sp, rop, m, nc)
        FA_NS_SWITCH(ns, L_DKV);
#undef L_DKV
        CU_LAUNCHED();
        if (part) { /* the shares' partial rows, added in share order */
            size_t r = (size_t)Sp * nkv;
            k_fa_sum_group<<<(unsigned)((r * 32 + 255) / 256), 256, 0, cuda_stream>>>(dk, dv, pk, pv, rop, Sp,
                                                                                      nkv * nc, nkv, d, m.write);
            CU_LAUNCHED();
        }
    }
}

void cuda_flash_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                    const float *q, const float *k, const float *v, const op_attn_t *a)
{
    int dp = fa_dp(a->head_dim), S = a->n_tok, nh = a->n_heads;
    CU_REQUIRE(dp, "flash attention: no instance for this head dim");
    if (fa_wg_bwd(dp)) {
        if (dp == 64)
            fa_bwd_wg<64>(dq, dk, dv, dout, out, lse, q, k, v, a);
        else if (dp == 80)
            fa_bwd_wg<80>(dq, dk, dv, dout, out, lse, q, k, v, a);
        else
            fa_bwd_wg<128>(dq, dk, dv, dout, out, lse, q, k, v, a);
        return;
    }
    cuda_attn_zero_grads(dq, dk, dv, a); /* the mma.sync kernels add */
    fa_stage st = fa_carve(a, dp, 1);
    fa_stage_qkv(st, q, k, v, a, dp);
    fa_stage_rows(st.o, dout, a->row_of_pos, S, nh, a->head_dim, dp);
    size_t rows = (size_t)S * nh;
    k_fa_stage_rows<<<(unsigned)((rows * 32 + 255) / 256), 256, 0, cuda_stream>>>(st.D, st.lse2, dout, out, lse,
                                                                                  a->row_of_pos, S, S, nh, a->head_dim);
    CU_LAUNCHED();
    switch (dp) {
    case 48: fa_bwd<48>(dq, dk, dv, st, a); break;
    case 64: fa_bwd<64>(dq, dk, dv, st, a); break;
    case 80: fa_bwd<80>(dq, dk, dv, st, a); break;
    default: fa_bwd<128>(dq, dk, dv, st, a); break;
    }
}
