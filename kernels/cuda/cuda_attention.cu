/* cuda_attention.cu — packed attention over samples and splits (op_attn_t in
 * kernels/ops.h), flash-attention style in fp32: no S×S matrix, no mask in
 * memory. With bf16 math (cuda_ops_set_bf16) the entry points hand over to
 * the tensor-core kernels of cuda_flash.cu for the head dims it has. The visible keys of a query are walked as spans exactly as
 * kernels/cpu/cpu_attention.c walks them (attn_key_span below is its
 * device twin), reading the split metadata from device memory.
 *
 * Forward: one block per (block of AT_BQ query positions, head). A block is
 * cut into segments that lie in one split (one pass per split it touches);
 * each segment's queries share their key spans. Keys and values come in
 * tiles of AT_BK rows into shared memory; each warp owns AT_QPW queries and
 * keeps their output rows in registers (lanes over head dims, at most
 * AT_DPL·32 = 256 dims; the forward also AT_DPL_WIDE·32 = 512, for the
 * autoencoder's one-head mid-block attention, which has no backward). Per
 * tile and query, lane j scores key j, the warp reduces max and sum once (online softmax), and o += Σ_j p_j·v_j with p_j
 * broadcast by shuffle. lse = m + log l is saved by storage row.
 *
 * Backward recomputes P = exp(S − lse), with D = rowsum(dO ⊙ O), dS =
 * P ⊙ (dO·Vᵀ − D), in two kernels so that every gradient row has one owner
 * and no atomics are needed: the dQ kernel mirrors the forward (dQ +=
 * scale·dS·K); the dK/dV kernel owns AT_BK keys of one kv head, one split at
 * a time, and walks every query that sees them (its own split from the
 * block on when causal, whole otherwise, then the rest of the sample unless
 * the split is a noise split) over every query head of the GQA group, with
 * lanes over queries for the scores and over dims for the products.
 *
 * Rows are gathered through row_of_pos when the tiles are loaded. The
 * shared K/V tiles used by lane-per-key reads have a stride of d + 1 so
 * that the 32 lanes hit 32 banks. */
#include "cuda_internal.h"

#include <math.h>

#define AT_BQ 32    /* query positions a block */
#define AT_BK 32    /* keys a tile; a lane per key */
#define AT_WARPS 8  /* warps a block */
#define AT_QPW 4    /* AT_BQ / AT_WARPS: queries (or keys, backward) a warp */
#define AT_DPL 8    /* head dims a lane for head_dim <= 256 (the models' attention) */
#define AT_DPL_WIDE 16 /* for head_dim <= 512, forward only (the autoencoder's one-head mid-block) */
#define AT_MAX_D (32 * AT_DPL)
#define AT_MAX_D_FWD (32 * AT_DPL_WIDE)
#define FULL_MASK 0xffffffffu

struct attn_dev {
    int S, nh, nkv, d, n_splits;
    float scale;
    const int32_t *ss; /* split_start (n_splits + 1) */
    const uint8_t *sm; /* split_mode */
    const int32_t *sf; /* split_first */
    const int32_t *rop; /* row_of_pos or NULL */
};

__device__ static inline int at_row(const attn_dev &a, int pos) { return a.rop ? a.rop[pos] : pos; }

__device__ static int at_split_of(const attn_dev &a, int pos)
{
    int lo = 0, hi = a.n_splits - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (a.ss[mid] <= pos)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

__device__ static int at_sample_end(const attn_dev &a, int s)
{
    int e = s;
    while (e + 1 < a.n_splits && a.sf[e + 1] == a.sf[s])
        e++;
    return a.ss[e + 1];
}

/* the next run [*lo, *hi) of keys visible to queries of split qs (see
 * attn_key_span in cpu_attention.c); 0 when there are no more */
__device__ static int at_key_span(const attn_dev &a, int qs, int qend, int *ks, int *lo, int *hi)
{
    int s = *ks;
    while (s < qs && a.sm[s] == OP_SPLIT_NOISE)
        s++;
    if (s > qs)
        return 0;
    *lo = a.ss[s];
    for (;;) {
        *hi = s == qs ? qend : a.ss[s + 1];
        s++;
        if (s > qs || (s < qs && a.sm[s] == OP_SPLIT_NOISE))
            break;
    }
    *ks = s;
    return 1;
}

__device__ static inline float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

/* rows [p0, p0 + np) of head hd of x [S, nh_x, d] into dst with row stride ld */
__device__ static void at_load(float *dst, int ld, const float *x, const attn_dev &a, int p0, int np, int nh_x, int hd)
{
    int d = a.d;
    for (int t = threadIdx.x; t < np * d; t += blockDim.x) {
        int i = t / d, j = t % d;
        dst[i * ld + j] = x[((size_t)at_row(a, p0 + i) * nh_x + hd) * d + j];
    }
}

template <int DPL>
__global__ void __launch_bounds__(AT_WARPS * 32) k_attn_fwd(float *out, float *lse, const float *q, const float *k,
                                                            const float *v, attn_dev a)
{
    extern __shared__ float smem[];
    const int d = a.d, h = blockIdx.y, kvh = h / (a.nh / a.nkv);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float *qs_ = smem;                    /* [AT_BQ][d] */
    float *ks_ = qs_ + AT_BQ * d;         /* [AT_BK][d + 1] */
    float *vs_ = ks_ + AT_BK * (d + 1);   /* [AT_BK][d] */
    int p = blockIdx.x * AT_BQ, end = min(p + AT_BQ, a.S);
    while (p < end) {
        int qs = at_split_of(a, p), q1 = min(a.ss[qs + 1], end), nq = q1 - p;
        int causal = a.sm[qs] == OP_SPLIT_CAUSAL, qend = causal ? q1 : a.ss[qs + 1];
        __syncthreads();
        at_load(qs_, d, q, a, p, nq, a.nh, h);
        float m[AT_QPW], l[AT_QPW], o[AT_QPW][DPL];
#pragma unroll
        for (int qq = 0; qq < AT_QPW; qq++) {
            m[qq] = -INFINITY, l[qq] = 0.0f;
#pragma unroll
            for (int u = 0; u < DPL; u++)
                o[qq][u] = 0.0f;
        }
        int ks = a.sf[qs], lo, hi;
        while (at_key_span(a, qs, qend, &ks, &lo, &hi)) {
            for (int k0 = lo; k0 < hi; k0 += AT_BK) {
                int nk = min(AT_BK, hi - k0);
                __syncthreads();
                at_load(ks_, d + 1, k, a, k0, nk, a.nkv, kvh);
                at_load(vs_, d, v, a, k0, nk, a.nkv, kvh);
                __syncthreads();
#pragma unroll
                for (int qq = 0; qq < AT_QPW; qq++) {
                    int i = warp * AT_QPW + qq, qpos = p + i;
                    if (i >= nq)
                        continue;
                    float s = -INFINITY;
                    if (lane < nk && !(causal && k0 + lane > qpos)) {
                        const float *qr = qs_ + i * d, *kr = ks_ + lane * (d + 1);
                        float acc = 0.0f;
                        for (int t = 0; t < d; t++)
                            acc += qr[t] * kr[t];
                        s = a.scale * acc;
                    }
                    float mx = warp_max(s);
                    if (mx == -INFINITY)
                        continue;
                    float mnew = fmaxf(mx, m[qq]);
                    float pj = s == -INFINITY ? 0.0f : expf(s - mnew);
                    float sum = cuda_warp_sum(pj), corr = expf(m[qq] - mnew);
#pragma unroll
                    for (int u = 0; u < DPL; u++)
                        o[qq][u] *= corr;
                    for (int jj = 0; jj < nk; jj++) {
                        float pjj = __shfl_sync(FULL_MASK, pj, jj);
                        const float *vr = vs_ + jj * d;
#pragma unroll
                        for (int u = 0; u < DPL; u++)
                            if (lane + 32 * u < d)
                                o[qq][u] += pjj * vr[lane + 32 * u];
                    }
                    l[qq] = l[qq] * corr + sum;
                    m[qq] = mnew;
                }
            }
        }
        /* every query sees at least itself, so l > 0 */
#pragma unroll
        for (int qq = 0; qq < AT_QPW; qq++) {
            int i = warp * AT_QPW + qq;
            if (i >= nq)
                continue;
            size_t ri = (size_t)at_row(a, p + i) * a.nh + h;
            float inv = 1.0f / l[qq];
#pragma unroll
            for (int u = 0; u < DPL; u++)
                if (lane + 32 * u < d)
                    out[ri * d + lane + 32 * u] = o[qq][u] * inv;
            if (lane == 0)
                lse[ri] = m[qq] + logf(l[qq]);
        }
        p = q1;
    }
}

/* dQ: the forward's walk, with P from lse and dS = P ⊙ (dO·vᵀ − D) */
template <int DPL>
__global__ void __launch_bounds__(AT_WARPS * 32) k_attn_bwd_dq(float *dq, const float *dout, const float *out,
                                                               const float *lse, const float *q, const float *k,
                                                               const float *v, attn_dev a)
{
    extern __shared__ float smem[];
    const int d = a.d, h = blockIdx.y, kvh = h / (a.nh / a.nkv);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float *qs_ = smem;                    /* [AT_BQ][d] */
    float *gs_ = qs_ + AT_BQ * d;         /* [AT_BQ][d] dO */
    float *ks_ = gs_ + AT_BQ * d;         /* [AT_BK][d + 1] */
    float *vs_ = ks_ + AT_BK * (d + 1);   /* [AT_BK][d + 1] */
    int p = blockIdx.x * AT_BQ, end = min(p + AT_BQ, a.S);
    while (p < end) {
        int qs = at_split_of(a, p), q1 = min(a.ss[qs + 1], end), nq = q1 - p;
        int causal = a.sm[qs] == OP_SPLIT_CAUSAL, qend = causal ? q1 : a.ss[qs + 1];
        __syncthreads();
        at_load(qs_, d, q, a, p, nq, a.nh, h);
        at_load(gs_, d, dout, a, p, nq, a.nh, h);
        __syncthreads();
        float L[AT_QPW], D[AT_QPW], acc[AT_QPW][DPL];
#pragma unroll
        for (int qq = 0; qq < AT_QPW; qq++) {
            int i = warp * AT_QPW + qq;
            float dd = 0.0f;
            L[qq] = 0.0f;
            if (i < nq) {
                size_t ri = (size_t)at_row(a, p + i) * a.nh + h;
                for (int t = lane; t < d; t += 32)
                    dd += gs_[i * d + t] * out[ri * d + t];
                L[qq] = lse[ri];
            }
            D[qq] = cuda_warp_sum(dd);
#pragma unroll
            for (int u = 0; u < DPL; u++)
                acc[qq][u] = 0.0f;
        }
        int ks = a.sf[qs], lo, hi;
        while (at_key_span(a, qs, qend, &ks, &lo, &hi)) {
            for (int k0 = lo; k0 < hi; k0 += AT_BK) {
                int nk = min(AT_BK, hi - k0);
                __syncthreads();
                at_load(ks_, d + 1, k, a, k0, nk, a.nkv, kvh);
                at_load(vs_, d + 1, v, a, k0, nk, a.nkv, kvh);
                __syncthreads();
#pragma unroll
                for (int qq = 0; qq < AT_QPW; qq++) {
                    int i = warp * AT_QPW + qq, qpos = p + i;
                    if (i >= nq)
                        continue;
                    float ds = 0.0f;
                    if (lane < nk && !(causal && k0 + lane > qpos)) {
                        const float *qr = qs_ + i * d, *gr = gs_ + i * d;
                        const float *kr = ks_ + lane * (d + 1), *vr = vs_ + lane * (d + 1);
                        float s = 0.0f, dp = 0.0f;
                        for (int t = 0; t < d; t++) {
                            s += qr[t] * kr[t];
                            dp += gr[t] * vr[t];
                        }
                        float pr = expf(a.scale * s - L[qq]);
                        ds = pr * (dp - D[qq]);
                    }
                    for (int jj = 0; jj < nk; jj++) {
                        float dsj = __shfl_sync(FULL_MASK, ds, jj);
                        const float *kr = ks_ + jj * (d + 1);
#pragma unroll
                        for (int u = 0; u < DPL; u++)
                            if (lane + 32 * u < d)
                                acc[qq][u] += dsj * kr[lane + 32 * u];
                    }
                }
            }
        }
#pragma unroll
        for (int qq = 0; qq < AT_QPW; qq++) {
            int i = warp * AT_QPW + qq;
            if (i >= nq)
                continue;
            float *dst = dq + ((size_t)at_row(a, p + i) * a.nh + h) * d;
#pragma unroll
            for (int u = 0; u < DPL; u++)
                if (lane + 32 * u < d)
                    dst[lane + 32 * u] += a.scale * acc[qq][u];
        }
        p = q1;
    }
}

/* dK, dV for a block of AT_BK key positions of kv head blockIdx.y */
template <int DPL>
__global__ void __launch_bounds__(AT_WARPS * 32) k_attn_bwd_dkv(float *dk, float *dv, const float *dout,
                                                                const float *out, const float *lse, const float *q,
                                                                const float *k, const float *v, attn_dev a)
{
    extern __shared__ float smem[];
    const int d = a.d, kvh = blockIdx.y, group = a.nh / a.nkv;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float *ks_ = smem;                   /* [AT_BK][d] */
    float *vs_ = ks_ + AT_BK * d;        /* [AT_BK][d] */
    float *qs_ = vs_ + AT_BK * d;        /* [AT_BQ][d + 1] */
    float *gs_ = qs_ + AT_BQ * (d + 1);  /* [AT_BQ][d + 1] dO */
    float *ls_ = gs_ + AT_BQ * (d + 1);  /* [AT_BQ] lse */
    float *ds_ = ls_ + AT_BQ;            /* [AT_BQ] D */
    int p = blockIdx.x * AT_BK, end = min(p + AT_BK, a.S);
    while (p < end) {
        int ksp = at_split_of(a, p), k1 = min(a.ss[ksp + 1], end), nk = k1 - p;
        int mode = a.sm[ksp], causal = mode == OP_SPLIT_CAUSAL;
        int qlo = causal ? p : a.ss[ksp];
        int qhi = mode == OP_SPLIT_NOISE ? a.ss[ksp + 1] : at_sample_end(a, ksp);
        __syncthreads();
        at_load(ks_, d, k, a, p, nk, a.nkv, kvh);
        at_load(vs_, d, v, a, p, nk, a.nkv, kvh);
        float gk[AT_QPW][DPL], gv[AT_QPW][DPL];
#pragma unroll
        for (int kk = 0; kk < AT_QPW; kk++)
#pragma unroll
            for (int u = 0; u < DPL; u++)
                gk[kk][u] = gv[kk][u] = 0.0f;
        for (int h = kvh * group; h < (kvh + 1) * group; h++) {
            for (int q0 = qlo; q0 < qhi; q0 += AT_BQ) {
                int nq = min(AT_BQ, qhi - q0);
                __syncthreads();
                at_load(qs_, d + 1, q, a, q0, nq, a.nh, h);
                at_load(gs_, d + 1, dout, a, q0, nq, a.nh, h);
                __syncthreads();
                /* D and lse of the tile's queries: a warp per query */
                for (int i = warp; i < nq; i += AT_WARPS) {
                    size_t ri = (size_t)at_row(a, q0 + i) * a.nh + h;
                    float dd = 0.0f;
                    for (int t = lane; t < d; t += 32)
                        dd += gs_[i * (d + 1) + t] * out[ri * d + t];
                    dd = cuda_warp_sum(dd);
                    if (lane == 0)
                        ds_[i] = dd, ls_[i] = lse[ri];
                }
                __syncthreads();
#pragma unroll
                for (int kk = 0; kk < AT_QPW; kk++) {
                    int j = warp * AT_QPW + kk, kpos = p + j;
                    if (j >= nk)
                        continue;
                    float pr = 0.0f, dsv = 0.0f;
                    if (lane < nq && !(causal && kpos > q0 + lane)) {
                        const float *qr = qs_ + lane * (d + 1), *gr = gs_ + lane * (d + 1);
                        const float *kr = ks_ + j * d, *vr = vs_ + j * d;
                        float s = 0.0f, dp = 0.0f;
                        for (int t = 0; t < d; t++) {
                            s += qr[t] * kr[t];
                            dp += gr[t] * vr[t];
                        }
                        pr = expf(a.scale * s - ls_[lane]);
                        dsv = pr * (dp - ds_[lane]);
                    }
                    for (int ii = 0; ii < nq; ii++) {
                        float pi = __shfl_sync(FULL_MASK, pr, ii), di = __shfl_sync(FULL_MASK, dsv, ii);
                        const float *qr = qs_ + ii * (d + 1), *gr = gs_ + ii * (d + 1);
#pragma unroll
                        for (int u = 0; u < DPL; u++)
                            if (lane + 32 * u < d) {
                                gv[kk][u] += pi * gr[lane + 32 * u];
                                gk[kk][u] += di * qr[lane + 32 * u];
                            }
                    }
                }
            }
        }
#pragma unroll
        for (int kk = 0; kk < AT_QPW; kk++) {
            int j = warp * AT_QPW + kk;
            if (j >= nk)
                continue;
            size_t ri = ((size_t)at_row(a, p + j) * a.nkv + kvh) * d;
#pragma unroll
            for (int u = 0; u < DPL; u++)
                if (lane + 32 * u < d) {
                    if (dk)
                        dk[ri + lane + 32 * u] += a.scale * gk[kk][u];
                    if (dv)
                        dv[ri + lane + 32 * u] += gv[kk][u];
                }
        }
        p = k1;
    }
}

static attn_dev attn_dev_of(const op_attn_t *a)
{
    attn_dev x;
    x.S = a->n_tok, x.nh = a->n_heads, x.nkv = a->n_kv_heads, x.d = a->head_dim, x.n_splits = a->n_splits;
    x.scale = a->scale;
    x.ss = a->split_start, x.sm = a->split_mode, x.sf = a->split_first, x.rop = a->row_of_pos;
    return x;
}

static void attn_check(const op_attn_t *a, int max_d)
{
    CU_REQUIRE(a->head_dim <= max_d, max_d == AT_MAX_D ? "attention backward: head_dim over 256"
                                                       : "attention: head_dim over 512");
    CU_REQUIRE(a->n_kv_heads > 0 && a->n_heads % a->n_kv_heads == 0, "attention: n_heads not a multiple of n_kv_heads");
    CU_REQUIRE(a->n_splits > 0, "attention: no splits");
}

/* dynamic shared memory past 48 KiB must be allowed per kernel */
template <typename K> static void attn_launch_smem(K kern, size_t bytes)
{
    CU_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

void cuda_attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v, const op_attn_t *a)
{
    int S = a->n_tok, nh = a->n_heads, d = a->head_dim;
    if (S <= 0 || nh <= 0 || d <= 0)
        return;
    /* no mask: cuBLAS's products where no tensor-core kernel of ours takes
     * the head dim (the autoencoder's 512) or in fp32 mode; the flash
     * kernel otherwise, which at head dims 64 and 128 beat the dense route
     * (image generation at 1024², 4096 queries a chunk: 4.8 s an image
     * dense against 3.1 s flash, H200) */
    if (a->dense && cuda_dense_enabled() && !cuda_flash_takes(a)) {
        CU_REQUIRE(a->n_kv_heads > 0 && nh % a->n_kv_heads == 0, "attention: n_heads not a multiple of n_kv_heads");
        int ld = nh * d, ldkv = a->n_kv_heads * d;
        cuda_dense_attention(out, ld, lse, q, ld, k, v, ldkv, S, S, nh, a->n_kv_heads, d, a->scale);
        return;
    }
    attn_check(a, AT_MAX_D_FWD);
    if (cuda_flash_takes(a)) {
        cuda_flash_fwd(out, lse, q, k, v, a);
        return;
    }
    /* 197 KB of shared memory at 512 dims: one block a multiprocessor */
    size_t smem = sizeof(float) * ((size_t)AT_BQ * d + (size_t)AT_BK * (d + 1) + (size_t)AT_BK * d);
    dim3 grid((S + AT_BQ - 1) / AT_BQ, nh);
    if (d <= AT_MAX_D) {
        attn_launch_smem(k_attn_fwd<AT_DPL>, smem);
        k_attn_fwd<AT_DPL><<<grid, AT_WARPS * 32, smem, cuda_stream>>>(out, lse, q, k, v, attn_dev_of(a));
    } else {
        attn_launch_smem(k_attn_fwd<AT_DPL_WIDE>, smem);
        k_attn_fwd<AT_DPL_WIDE><<<grid, AT_WARPS * 32, smem, cuda_stream>>>(out, lse, q, k, v, attn_dev_of(a));
    }
    CU_LAUNCHED();
}

/* op_attn_t.write for the kernels that add: dq, dk, dv zeroed first */
void cuda_attn_zero_grads(float *dq, float *dk, float *dv, const op_attn_t *a)
{
    if (!a->write)
        return;
    size_t nq = (size_t)a->n_tok * a->n_heads * a->head_dim, nk = (size_t)a->n_tok * a->n_kv_heads * a->head_dim;
    if (dq)
        CU_CHECK(cudaMemsetAsync(dq, 0, nq * sizeof(float), cuda_stream));
    if (dk)
        CU_CHECK(cudaMemsetAsync(dk, 0, nk * sizeof(float), cuda_stream));
    if (dv)
        CU_CHECK(cudaMemsetAsync(dv, 0, nk * sizeof(float), cuda_stream));
}

void cuda_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                        const float *q, const float *k, const float *v, const op_attn_t *a)
{
    int S = a->n_tok, nh = a->n_heads, d = a->head_dim;
    if (S <= 0 || nh <= 0 || d <= 0 || (!dq && !dk && !dv))
        return;
    attn_check(a, AT_MAX_D);
    if (cuda_flash_takes(a)) {
        cuda_flash_bwd(dq, dk, dv, dout, out, lse, q, k, v, a);
        return;
    }
    cuda_attn_zero_grads(dq, dk, dv, a); /* these kernels add */
    attn_dev x = attn_dev_of(a);
    if (dq) {
        size_t smem = sizeof(float) * (2 * (size_t)AT_BQ * d + 2 * (size_t)AT_BK * (d + 1));
        attn_launch_smem(k_attn_bwd_dq<AT_DPL>, smem);
        dim3 grid((S + AT_BQ - 1) / AT_BQ, nh);
        k_attn_bwd_dq<AT_DPL><<<grid, AT_WARPS * 32, smem, cuda_stream>>>(dq, dout, out, lse, q, k, v, x);
        CU_LAUNCHED();
    }
    if (dk || dv) {
        size_t smem = sizeof(float) * (2 * (size_t)AT_BK * d + 2 * (size_t)AT_BQ * (d + 1) + 2 * AT_BQ);
        attn_launch_smem(k_attn_bwd_dkv<AT_DPL>, smem);
        dim3 grid((S + AT_BK - 1) / AT_BK, a->n_kv_heads);
        k_attn_bwd_dkv<AT_DPL><<<grid, AT_WARPS * 32, smem, cuda_stream>>>(dk, dv, dout, out, lse, q, k, v, x);
        CU_LAUNCHED();
    }
}
