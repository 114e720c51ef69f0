/* cuda_norm.cu — RMSNorm and LayerNorm over the last dimension of [n, c],
 * and GroupNorm over NCHW, the same formulas as kernels/cpu/cpu_norm.c and
 * cpu_conv.c. One block per row (per sample-group for the GroupNorm
 * backward) with block reductions; weight and bias gradients by column
 * blocks that walk every row, so nothing is written by two blocks. GroupNorm
 * sums in double, as the CPU does; its forward spreads each group over many
 * blocks (k_gn_partial). */
#include "cuda_internal.h"

#define NORM_THREADS 256

__global__ void k_rmsnorm_fwd(float *out, float *rstd, const float *in, const float *w, int c, float eps)
{
    __shared__ float sh[33];
    const float *x = in + (size_t)blockIdx.x * c;
    float *y = out + (size_t)blockIdx.x * c;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < c; i += blockDim.x)
        ss += x[i] * x[i];
    ss = cuda_block_sum(ss, sh);
    float rs = 1.0f / sqrtf(ss / (float)c + eps);
    for (int i = threadIdx.x; i < c; i += blockDim.x)
        y[i] = w[i] * (x[i] * rs);
    if (rstd && threadIdx.x == 0)
        rstd[blockIdx.x] = rs;
}

/* set: din written (rmsnorm_bwd_set), else added to */
__global__ void k_rmsnorm_bwd_din(float *din, const float *dout, const float *in, const float *w, const float *rstd,
                                  int c, int set)
{
    __shared__ float sh[33];
    const float *x = in + (size_t)blockIdx.x * c, *g = dout + (size_t)blockIdx.x * c;
    float *dx = din + (size_t)blockIdx.x * c;
    float rs = rstd[blockIdx.x], dot = 0.0f;
    for (int i = threadIdx.x; i < c; i += blockDim.x)
        dot += g[i] * w[i] * x[i] * rs;
    dot = cuda_block_sum(dot, sh) / (float)c;
    for (int i = threadIdx.x; i < c; i += blockDim.x)
        dx[i] = (set ? 0.0f : dx[i]) + rs * (g[i] * w[i] - x[i] * rs * dot);
}

/* Column sums over rows, in two deterministic stages so that every
 * multiprocessor works (one block per 32 columns walking all rows left a
 * 896-wide norm's weight gradient to 28 blocks: 0.57 ms a call): blocks of
 * 32 columns × a run of rows write partial sums, then a block per 32 columns
 * adds them (the same order every call).
 *   dw[j] += Σ_r dout[r,j]·(in[r,j] − mean[r])·rstd[r]   (in given; mean NULL: 0)
 *   db[j] += Σ_r dout[r,j]
 * (= rather than += while grad_write is on) */
#define COL_ROWS 128    /* rows a partial sum, at least */
#define COL_BLOCKS 1024 /* blocks the partial sums take, about, where rows allow */

__global__ void k_col_partial(float *pw, float *pb, const float *dout, const float *in, const float *mean,
                              const float *rstd, int n, int c, int rows)
{
    __shared__ float sw[8][33], sb[8][33];
    int j = blockIdx.x * 32 + threadIdx.x, r0 = blockIdx.y * rows, r1 = min(n, r0 + rows);
    float aw = 0.0f, ab = 0.0f;
    if (j < c)
        for (int r = r0 + threadIdx.y; r < r1; r += 8) {
            float g = dout[(size_t)r * c + j];
            if (in)
                aw += g * (in[(size_t)r * c + j] - (mean ? mean[r] : 0.0f)) * rstd[r];
            ab += g;
        }
    sw[threadIdx.y][threadIdx.x] = aw;
    sb[threadIdx.y][threadIdx.x] = ab;
    __syncthreads();
    if (threadIdx.y == 0 && j < c) {
        float s = 0.0f, t = 0.0f;
        for (int y = 0; y < 8; y++)
            s += sw[y][threadIdx.x], t += sb[y][threadIdx.x];
        pw[(size_t)blockIdx.y * c + j] = s;
        pb[(size_t)blockIdx.y * c + j] = t;
    }
}

/* a block 32 columns, its 32 warps' lanes striding over the partial sums:
 * with one thread a column the per-head norms' 64 columns summed 730
 * partials each, one after the other: 8.7 of the 13.7 ms the column sums
 * took in a 0.5B step under Nsight Compute */
__global__ void k_col_finish(float *dw, float *db, const float *pw, const float *pb, int parts, int c, int set)
{
    __shared__ float sw[32][33], sb[32][33];
    int j = blockIdx.x * 32 + threadIdx.x;
    float s = 0.0f, t = 0.0f;
    if (j < c)
        for (int p = threadIdx.y; p < parts; p += 32)
            s += pw[(size_t)p * c + j], t += pb[(size_t)p * c + j];
    sw[threadIdx.y][threadIdx.x] = s;
    sb[threadIdx.y][threadIdx.x] = t;
    __syncthreads();
    if (threadIdx.y == 0 && j < c) {
        s = 0.0f, t = 0.0f;
        for (int y = 0; y < 32; y++)
            s += sw[y][threadIdx.x], t += sb[y][threadIdx.x];
        if (dw)
            dw[j] = (set ? 0.0f : dw[j]) + s;
        if (db)
            db[j] = (set ? 0.0f : db[j]) + t;
    }
}

void cuda_col_reduce(float *dw, float *db, const float *dout, const float *in, const float *mean, const float *rstd,
                     int n, int c)
{
    if (n <= 0 || c <= 0 || (!dw && !db))
        return;
    /* rows a part: COL_ROWS, or more where the columns' blocks times the
     * parts would pass COL_BLOCKS (fewer partials to add, in longer runs) */
    int cb = (c + 31) / 32, want = COL_BLOCKS / cb > 1 ? COL_BLOCKS / cb : 1;
    int rows = (int)(((long)n + want - 1) / want);
    rows = rows < COL_ROWS ? COL_ROWS : (rows + 7) / 8 * 8;
    int parts = (n + rows - 1) / rows;
    float *pw = cuda_scratch((size_t)2 * parts * c), *pb = pw + (size_t)parts * c;
    k_col_partial<<<dim3(cb, parts), dim3(32, 8), 0, cuda_stream>>>(pw, pb, dout, dw ? in : NULL, mean, rstd, n, c,
                                                                    rows);
    CU_LAUNCHED();
    k_col_finish<<<cb, dim3(32, 32), 0, cuda_stream>>>(dw, db, pw, pb, parts, c, cuda_grad_write_on);
    CU_LAUNCHED();
}

/* A warp a row, for rows up to WARP_ROW_MAX wide (every RMSNorm of the
 * models: 64 to 3584): the block-a-row kernels above left most of their 256
 * threads idle on the per-head q/k norms (64 wide, 151k rows a call) */
#define WARP_ROW_MAX 4096
#define WARP_ROWS 8 /* rows (warps) a block */

__global__ void k_rmsnorm_fwd_warp(float *out, float *rstd, const float *in, const float *w, int n, int c, float eps)
{
    int r = blockIdx.x * WARP_ROWS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= n)
        return;
    const float *x = in + (size_t)r * c;
    float *y = out + (size_t)r * c;
    float ss = 0.0f;
    for (int i = lane; i < c; i += 32)
        ss += x[i] * x[i];
    ss = cuda_warp_sum(ss);
    float rs = 1.0f / sqrtf(ss / (float)c + eps);
    for (int i = lane; i < c; i += 32)
        y[i] = w[i] * (x[i] * rs);
    if (rstd && lane == 0)
        rstd[r] = rs;
}

__global__ void k_rmsnorm_bwd_din_warp(float *din, const float *dout, const float *in, const float *w,
                                       const float *rstd, int n, int c, int set)
{
    int r = blockIdx.x * WARP_ROWS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= n)
        return;
    const float *x = in + (size_t)r * c, *g = dout + (size_t)r * c;
    float *dx = din + (size_t)r * c;
    float rs = rstd[r], dot = 0.0f;
    for (int i = lane; i < c; i += 32)
        dot += g[i] * w[i] * x[i] * rs;
    dot = cuda_warp_sum(dot) / (float)c;
    for (int i = lane; i < c; i += 32)
        dx[i] = (set ? 0.0f : dx[i]) + rs * (g[i] * w[i] - x[i] * rs * dot);
}

void cuda_rmsnorm_fwd(float *out, float *rstd, const float *in, const float *w, int n, int c, float eps)
{
    if (n <= 0 || c <= 0)
        return;
    if (c <= WARP_ROW_MAX)
        k_rmsnorm_fwd_warp<<<(n + WARP_ROWS - 1) / WARP_ROWS, 32 * WARP_ROWS, 0, cuda_stream>>>(out, rstd, in, w, n, c,
                                                                                                 eps);
    else
        k_rmsnorm_fwd<<<n, NORM_THREADS, 0, cuda_stream>>>(out, rstd, in, w, c, eps);
    CU_LAUNCHED();
}

static void rmsnorm_bwd(float *din, float *dw, const float *dout, const float *in, const float *w, const float *rstd,
                        int n, int c, int set)
{
    if (n <= 0 || c <= 0)
        return;
    if (din) {
        if (c <= WARP_ROW_MAX)
            k_rmsnorm_bwd_din_warp<<<(n + WARP_ROWS - 1) / WARP_ROWS, 32 * WARP_ROWS, 0, cuda_stream>>>(din, dout, in, w,
                                                                                                        rstd, n, c, set);
        else
            k_rmsnorm_bwd_din<<<n, NORM_THREADS, 0, cuda_stream>>>(din, dout, in, w, rstd, c, set);
        CU_LAUNCHED();
    }
    if (dw) {
        cuda_col_reduce(dw, NULL, dout, in, NULL, rstd, n, c);
    }
}

void cuda_rmsnorm_bwd(float *din, float *dw, const float *dout, const float *in, const float *w, const float *rstd,
                      int n, int c)
{
    rmsnorm_bwd(din, dw, dout, in, w, rstd, n, c, 0);
}

void cuda_rmsnorm_bwd_set(float *din, float *dw, const float *dout, const float *in, const float *w,
                          const float *rstd, int n, int c)
{
    rmsnorm_bwd(din, dw, dout, in, w, rstd, n, c, 1);
}

/* two passes, mean then squared deviations, biased variance (as the CPU) */
__global__ void k_layernorm_fwd(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b,
                                int c, float eps)
{
    __shared__ float sh[33];
    const float *x = in + (size_t)blockIdx.x * c;
    float *y = out + (size_t)blockIdx.x * c;
    float s = 0.0f;
    for (int i = threadIdx.x; i < c; i += blockDim.x)
        s += x[i];
    float mu = cuda_block_sum(s, sh) / (float)c;
    float v = 0.0f;
    for (int i = threadIdx.x; i < c; i += blockDim.x)
        v += (x[i] - mu) * (x[i] - mu);
    float var = cuda_block_sum(v, sh) / (float)c;
    float rs = 1.0f / sqrtf(var + eps);
    for (int i = threadIdx.x; i < c; i += blockDim.x)
        y[i] = (x[i] - mu) * rs * w[i] + (b ? b[i] : 0.0f);
    if (threadIdx.x == 0) {
        if (mean)
            mean[blockIdx.x] = mu;
        if (rstd)
            rstd[blockIdx.x] = rs;
    }
}

__global__ void k_layernorm_bwd_din(float *din, const float *dout, const float *in, const float *w, const float *mean,
                                    const float *rstd, int c)
{
    __shared__ float sh[33];
    const float *x = in + (size_t)blockIdx.x * c, *g = dout + (size_t)blockIdx.x * c;
    float *dx = din + (size_t)blockIdx.x * c;
    float mu = mean[blockIdx.x], rs = rstd[blockIdx.x], gm = 0.0f, gx = 0.0f;
    for (int i = threadIdx.x; i < c; i += blockDim.x) {
        float gi = g[i] * w[i];
        gm += gi;
        gx += gi * (x[i] - mu) * rs;
    }
    gm = cuda_block_sum(gm, sh) / (float)c;
    gx = cuda_block_sum(gx, sh) / (float)c;
    for (int i = threadIdx.x; i < c; i += blockDim.x)
        dx[i] += rs * (g[i] * w[i] - gm - (x[i] - mu) * rs * gx);
}

void cuda_layernorm_fwd(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b, int n,
                        int c, float eps)
{
    if (n <= 0 || c <= 0)
        return;
    k_layernorm_fwd<<<n, NORM_THREADS, 0, cuda_stream>>>(out, mean, rstd, in, w, b, c, eps);
    CU_LAUNCHED();
}

void cuda_layernorm_bwd(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                        const float *mean, const float *rstd, int n, int c)
{
    if (n <= 0 || c <= 0)
        return;
    if (din) {
        k_layernorm_bwd_din<<<n, NORM_THREADS, 0, cuda_stream>>>(din, dout, in, w, mean, rstd, c);
        CU_LAUNCHED();
    }
    if (dw || db) {
        cuda_col_reduce(dw, db, dout, in, mean, rstd, n, c);
    }
}

/* GroupNorm forward in three steps, so that a group of a million values
 * (FLUX's first level: 4 channels of 512² a group, 32 groups an image) is
 * spread over the whole GPU rather than one block: partial sums of x and x²
 * in double by blocks of GN_CHUNK values, the group's mean and rstd from
 * them (var = E[x²] − mean², in double), then the normalization over every
 * element, four a thread. */
#define GN_CHUNK 8192

/* grid (n·groups, parts): part[g·parts + p] = (Σx, Σx²) over chunk p of
 * group g; 16-byte loads when cnt and chunk are multiples of 4 and in is
 * aligned (vec), so that more bytes are in flight a thread */
__global__ void k_gn_partial(double2 *part, const float *in, size_t cnt, size_t chunk, int vec)
{
    __shared__ double sh[33];
    const float *x = in + (size_t)blockIdx.x * cnt;
    size_t lo = (size_t)blockIdx.y * chunk, hi = lo + chunk < cnt ? lo + chunk : cnt;
    double s = 0.0, s2 = 0.0;
    if (vec) {
        const float4 *x4 = reinterpret_cast<const float4 *>(x);
        for (size_t j = lo / 4 + threadIdx.x; j < hi / 4; j += blockDim.x) {
            float4 v = x4[j];
            double a = v.x, b = v.y, c = v.z, d = v.w;
            s += (a + b) + (c + d), s2 += (a * a + b * b) + (c * c + d * d);
        }
    } else {
        for (size_t j = lo + threadIdx.x; j < hi; j += blockDim.x) {
            double v = x[j];
            s += v, s2 += v * v;
        }
    }
    s = cuda_block_sum(s, sh);
    s2 = cuda_block_sum(s2, sh);
    if (threadIdx.x == 0)
        part[(size_t)blockIdx.x * gridDim.y + blockIdx.y] = make_double2(s, s2);
}

/* a warp a group: its parts summed by the lanes, then across them */
__global__ void k_gn_stats(float *mean, float *rstd, const double2 *part, int ng, int parts, size_t cnt, float eps)
{
    int g = (int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32), lane = threadIdx.x & 31;
    if (g >= ng)
        return; /* the whole warp */
    double s = 0.0, s2 = 0.0;
    for (int p = lane; p < parts; p += 32)
        s += part[(size_t)g * parts + p].x, s2 += part[(size_t)g * parts + p].y;
    for (int o = 16; o > 0; o >>= 1) {
        s += __shfl_down_sync(0xffffffffu, s, o);
        s2 += __shfl_down_sync(0xffffffffu, s2, o);
    }
    if (lane == 0) {
        double mu = s / (double)cnt, var = s2 / (double)cnt - mu * mu;
        mean[g] = (float)mu;
        rstd[g] = (float)(1.0 / sqrt((var > 0.0 ? var : 0.0) + eps));
    }
}

/* out = (x − mean)·rstd·w + b, four elements a thread (hw a multiple of 4) */
__global__ void k_gn_apply4(float4 *out, const float4 *in, const float *mean, const float *rstd, const float *w,
                            const float *b, int c, int hw4, int cpg, size_t total4)
{
    CU_FOR(t, total4)
    {
        size_t row = t / hw4; /* sample·c + channel */
        int ch = (int)(row % c);
        size_t g = row / cpg;
        float mu = mean[g], rs = rstd[g], wc = w ? w[ch] : 1.0f, bc = b ? b[ch] : 0.0f;
        float4 v = in[t];
        v.x = (v.x - mu) * rs * wc + bc, v.y = (v.y - mu) * rs * wc + bc;
        v.z = (v.z - mu) * rs * wc + bc, v.w = (v.w - mu) * rs * wc + bc;
        out[t] = v;
    }
}

__global__ void k_gn_apply(float *out, const float *in, const float *mean, const float *rstd, const float *w,
                           const float *b, int c, int hw, int cpg, size_t total)
{
    CU_FOR(t, total)
    {
        size_t row = t / hw;
        int ch = (int)(row % c);
        size_t g = row / cpg;
        out[t] = (in[t] - mean[g]) * rstd[g] * (w ? w[ch] : 1.0f) + (b ? b[ch] : 0.0f);
    }
}

__global__ void k_groupnorm_bwd_din(float *din, const float *dout, const float *in, const float *w, const float *mean,
                                    const float *rstd, int c, int hw, int groups)
{
    __shared__ double sh[33];
    int i = blockIdx.x / groups, gi = blockIdx.x % groups, cpg = c / groups;
    size_t cnt = (size_t)cpg * hw, base = ((size_t)i * c + (size_t)gi * cpg) * hw;
    const float *x = in + base, *gy = dout + base;
    float mu = mean[blockIdx.x], rs = rstd[blockIdx.x];
    double gm = 0.0, gx = 0.0;
    for (size_t j = threadIdx.x; j < cnt; j += blockDim.x) {
        float wc = w ? w[gi * cpg + (int)(j / hw)] : 1.0f;
        double gj = (double)gy[j] * wc;
        gm += gj;
        gx += gj * (x[j] - mu) * rs;
    }
    gm = cuda_block_sum(gm, sh);
    gx = cuda_block_sum(gx, sh);
    float gmf = (float)(gm / (double)cnt), gxf = (float)(gx / (double)cnt);
    for (size_t j = threadIdx.x; j < cnt; j += blockDim.x) {
        float wc = w ? w[gi * cpg + (int)(j / hw)] : 1.0f;
        din[base + j] += rs * (gy[j] * wc - gmf - (x[j] - mu) * rs * gxf);
    }
}

/* one block per channel, over samples and pixels, in double */
/* set: dw, db written (grad_write), else added to */
__global__ void k_groupnorm_bwd_dwdb(float *dw, float *db, const float *dout, const float *in, const float *mean,
                                     const float *rstd, int n, int c, int hw, int groups, int set)
{
    __shared__ double sh[33];
    int ch = blockIdx.x, gi = ch / (c / groups);
    double aw = 0.0, ab = 0.0;
    for (int i = 0; i < n; i++) {
        const float *x = in + ((size_t)i * c + ch) * hw, *gy = dout + ((size_t)i * c + ch) * hw;
        float mu = mean[(size_t)i * groups + gi], rs = rstd[(size_t)i * groups + gi];
        for (int p = threadIdx.x; p < hw; p += blockDim.x) {
            aw += (double)gy[p] * (x[p] - mu) * rs;
            ab += gy[p];
        }
    }
    aw = cuda_block_sum(aw, sh);
    ab = cuda_block_sum(ab, sh);
    if (threadIdx.x == 0) {
        if (dw)
            dw[ch] = (set ? 0.0f : dw[ch]) + (float)aw;
        if (db)
            db[ch] = (set ? 0.0f : db[ch]) + (float)ab;
    }
}

void cuda_gn_stats(float *mean, float *rstd, const float *in, int n, int c, int hw, int groups, float eps)
{
    int ng = n * groups, cpg = c / groups;
    size_t cnt = (size_t)cpg * hw, parts = (cnt + GN_CHUNK - 1) / GN_CHUNK;
    if (parts > 1024)
        parts = 1024;
    size_t chunk = ((cnt + parts - 1) / parts + 3) / 4 * 4; /* whole float4s */
    parts = (cnt + chunk - 1) / chunk;
    int vec = cnt % 4 == 0 && ((uintptr_t)in & 15) == 0;
    double2 *part = (double2 *)cuda_scratch((size_t)ng * parts * 4);
    k_gn_partial<<<dim3((unsigned)ng, (unsigned)parts), NORM_THREADS, 0, cuda_stream>>>(part, in, cnt, chunk, vec);
    CU_LAUNCHED();
    k_gn_stats<<<(ng + 3) / 4, 128, 0, cuda_stream>>>(mean, rstd, part, ng, (int)parts, cnt, eps);
    CU_LAUNCHED();
}

void cuda_groupnorm_fwd(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b, int n,
                        int c, int hw, int groups, float eps)
{
    if (n <= 0 || c <= 0 || groups <= 0 || hw <= 0)
        return;
    int ng = n * groups, cpg = c / groups;
    float *mu = mean, *rs = rstd;
    if (!mu || !rs) { /* the statistics are wanted only here */
        float *st = (float *)cuda_scratch_slot(CUDA_SCRATCH_NORM, (size_t)ng * 2 * sizeof(float));
        mu = mu ? mu : st;
        rs = rs ? rs : st + ng;
    }
    cuda_gn_stats(mu, rs, in, n, c, hw, groups, eps);
    size_t total = (size_t)n * c * hw;
    if (hw % 4 == 0 && ((uintptr_t)in & 15) == 0 && ((uintptr_t)out & 15) == 0) {
        k_gn_apply4<<<cuda_blocks(total / 4), CU_THREADS, 0, cuda_stream>>>(
            (float4 *)out, (const float4 *)in, mu, rs, w, b, c, hw / 4, cpg, total / 4);
    } else {
        k_gn_apply<<<cuda_blocks(total), CU_THREADS, 0, cuda_stream>>>(out, in, mu, rs, w, b, c, hw, cpg, total);
    }
    CU_LAUNCHED();
}

void cuda_groupnorm_bwd(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                        const float *mean, const float *rstd, int n, int c, int hw, int groups)
{
    if (n <= 0 || c <= 0 || groups <= 0 || hw <= 0)
        return;
    if (din) {
        k_groupnorm_bwd_din<<<n * groups, NORM_THREADS, 0, cuda_stream>>>(din, dout, in, w, mean, rstd, c, hw, groups);
        CU_LAUNCHED();
    }
    if (dw || db) {
        k_groupnorm_bwd_dwdb<<<c, NORM_THREADS, 0, cuda_stream>>>(dw, db, dout, in, mean, rstd, n, c, hw, groups,
                                                                  cuda_grad_write_on);
        CU_LAUNCHED();
    }
}
