/* cuda_kvattn.cu — inference attention against a key/value cache
 * (op_kv_attn_t in kernels/ops.h).
 *
 * Three routes, chosen per run of queries that share a key range:
 * - a long run of queries that all see the same keys (an image chunk after
 *   its context) has no mask: where the flash kernel does not take the head
 *   dim (or in fp32 mode), cuda_dense.cu's products through cuBLAS;
 * - another long run (a long prompt, causal; an image chunk at the flash
 *   kernel's head dims) becomes one packed sequence
 *   for the training attention (cuda_attention_fwd: the bf16 flash kernel,
 *   or the fp32 kernel): its cache rows are the keys in place, the queries
 *   are gathered to the tail positions, and the split table says what the
 *   run sees (a full chunk after a causal context, or one causal split). The
 *   context's own rows get queries too, zero ones whose outputs are dropped:
 *   a cost of the context's length squared over two, small beside the chunk.
 * - short runs (decoding, a token a context) go to a kernel with one block a
 *   (query, head): every thread scores keys of its own, the block takes the
 *   softmax in shared memory, then sums the values with threads over the
 *   head's dimensions, coalesced. fp32 throughout. */
#include "cuda_internal.h"

#include <vector>

#define KV_THREADS 128
#define KV_RUN_MIN 32 /* queries from which a run takes the packed route */

__device__ static float kv_block_reduce(float v, float *red, int is_max)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    for (int o = 16; o > 0; o >>= 1) {
        float u = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, u) : v + u;
    }
    __syncthreads(); /* red may still be read from the previous reduction */
    if (lane == 0)
        red[w] = v;
    __syncthreads();
    v = red[0];
    for (int i = 1; i < KV_THREADS / 32; i++)
        v = is_max ? fmaxf(v, red[i]) : v + red[i];
    return v;
}

/* grid (queries of [i0, i0 + gridDim.x), heads); dynamic shared memory:
 * kmax scores, d query floats, partial sums */
__global__ static void k_kv_decode(float *out, const float *q, const float *kc, const float *vc, const int32_t *q_row,
                                   const int32_t *k_first, const int32_t *k_count, int i0, int nh, int nkv, int d,
                                   int kmax, float scale)
{
    extern __shared__ float sm[];
    float *s = sm, *qs = sm + kmax, *part = qs + d;
    __shared__ float red[KV_THREADS / 32];
    int i = i0 + blockIdx.x, h = blockIdx.y, kvh = h / (nh / nkv), t = threadIdx.x;
    int n = k_count[i];
    size_t ld = (size_t)nkv * d;
    const float *k0 = kc + (size_t)k_first[i] * ld + (size_t)kvh * d;
    const float *v0 = vc + (size_t)k_first[i] * ld + (size_t)kvh * d;
    float *o = out + ((size_t)q_row[i] * nh + h) * d;
    const float *qi = q + ((size_t)q_row[i] * nh + h) * d;
    for (int j = t; j < d; j += KV_THREADS)
        qs[j] = qi[j];
    __syncthreads();
    float mx = -INFINITY;
    for (int j = t; j < n; j += KV_THREADS) {
        const float4 *kr = reinterpret_cast<const float4 *>(k0 + (size_t)j * ld);
        float acc = 0.0f;
        for (int c = 0; c < d / 4; c++) {
            float4 kv = kr[c];
            acc += kv.x * qs[4 * c] + kv.y * qs[4 * c + 1] + kv.z * qs[4 * c + 2] + kv.w * qs[4 * c + 3];
        }
        acc *= scale;
        s[j] = acc;
        mx = fmaxf(mx, acc);
    }
    mx = kv_block_reduce(mx, red, 1);
    float sum = 0.0f;
    for (int j = t; j < n; j += KV_THREADS) {
        float e = __expf(s[j] - mx);
        s[j] = e;
        sum += e;
    }
    sum = kv_block_reduce(sum, red, 0); /* its barriers also publish s */
    float inv = n > 0 ? 1.0f / sum : 0.0f;
    /* threads over (partition, dim): P partitions of the keys when d is small */
    int P = d <= KV_THREADS ? KV_THREADS / d : 1;
    if (d <= KV_THREADS) {
        int p = t / d, c = t % d;
        if (p < P) {
            float acc = 0.0f;
            for (int j = p; j < n; j += P)
                acc += s[j] * v0[(size_t)j * ld + c];
            part[p * d + c] = acc;
        }
    } else {
        for (int c = t; c < d; c += KV_THREADS) {
            float acc = 0.0f;
            for (int j = 0; j < n; j++)
                acc += s[j] * v0[(size_t)j * ld + c];
            part[c] = acc;
        }
    }
    __syncthreads();
    for (int c = t; c < d; c += KV_THREADS) {
        float acc = 0.0f;
        for (int p = 0; p < P; p++)
            acc += part[p * d + c];
        o[c] = acc * inv;
    }
}

/* rows of c floats: dst[r] = src[idx[r]] (gather) or dst[idx[r]] = src[r] */
__global__ static void k_kv_rows(float *dst, const float *src, const int32_t *idx, int n, int c, int gather)
{
    size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= (size_t)n * c)
        return;
    int r = (int)(e / c), j = (int)(e % c);
    if (gather)
        dst[e] = src[(size_t)idx[r] * c + j];
    else
        dst[(size_t)idx[r] * c + j] = src[e];
}

static void kv_rows(float *dst, const float *src, const int32_t *idx, int n, int c, int gather)
{
    size_t m = (size_t)n * c;
    k_kv_rows<<<(unsigned)((m + 255) / 256), 256, 0, cuda_stream>>>(dst, src, idx, n, c, gather);
    CU_LAUNCHED();
}

static void kv_decode(float *out, const float *q, const float *kc, const float *vc, const op_kv_attn_t *a, int i0,
                      int n)
{
    int kmax = 1, d = a->head_dim;
    for (int i = i0; i < i0 + n; i++)
        kmax = a->h_k_count[i] > kmax ? a->h_k_count[i] : kmax;
    int P = d <= KV_THREADS ? KV_THREADS / d : 1;
    size_t smem = sizeof(float) * ((size_t)kmax + d + (size_t)P * d);
    CU_REQUIRE(smem <= 227 * 1024, "attention_kv: key range too long for the decoding kernel");
    CU_CHECK(cudaFuncSetAttribute(k_kv_decode, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid((unsigned)n, (unsigned)a->n_heads);
    k_kv_decode<<<grid, KV_THREADS, smem, cuda_stream>>>(out, q, kc, vc, a->q_row, a->k_first, a->k_count, i0,
                                                         a->n_heads, a->n_kv_heads, d, kmax, a->scale);
    CU_LAUNCHED();
}

/* whether the packed route would run the bf16 flash kernel (which, at the
 * head dims it takes, beat the dense route on image chunks: docs/generate.md) */
static int kv_flash_takes(const op_kv_attn_t *a)
{
    op_attn_t at = {};
    at.n_heads = a->n_heads, at.n_kv_heads = a->n_kv_heads, at.head_dim = a->head_dim, at.n_splits = 1;
    return cuda_flash_takes(&at);
}

/* queries [i0, i0 + n) share k_first and all see the same c0 keys (an image
 * chunk after its context): no mask, so the dense route; q and out rows are
 * used in place when they are consecutive, else gathered and scattered */
static void kv_dense(float *out, const float *q, const float *kc, const float *vc, const op_kv_attn_t *a, int i0,
                     int n)
{
    int nh = a->n_heads, d = a->head_dim, row = nh * d, ldkv = a->n_kv_heads * d;
    int consecutive = 1;
    for (int i = 1; i < n && consecutive; i++)
        consecutive = a->h_q_row[i0 + i] == a->h_q_row[i0] + i;
    size_t kf = (size_t)a->h_k_first[i0] * ldkv;
    if (consecutive) {
        size_t r = (size_t)a->h_q_row[i0] * row;
        cuda_dense_attention(out + r, row, NULL, q + r, row, kc + kf, vc + kf, ldkv, n, a->h_k_count[i0], nh,
                             a->n_kv_heads, d, a->scale);
        return;
    }
    size_t qf = (size_t)n * row;
    float *qp = (float *)cuda_scratch_slot(CUDA_SCRATCH_KV, 2 * qf * 4 + 256), *op = qp + qf;
    kv_rows(qp, q, a->q_row + i0, n, row, 1);
    cuda_dense_attention(op, row, NULL, qp, row, kc + kf, vc + kf, ldkv, n, a->h_k_count[i0], nh, a->n_kv_heads, d,
                         a->scale);
    kv_rows(out, op, a->q_row + i0, n, row, 0);
}

/* queries [i0, i0 + n) share k_first and see either the same count (full) or
 * one more key each (causal): one packed sequence for cuda_attention_fwd */
static void kv_packed(float *out, const float *q, const float *kc, const float *vc, const op_kv_attn_t *a, int i0,
                      int n, int causal)
{
    int nh = a->n_heads, d = a->head_dim, c0 = a->h_k_count[i0];
    int S = causal ? c0 + n - 1 : c0, first_q = causal ? c0 - 1 : c0 - n;
    size_t row = (size_t)nh * d;
    size_t qf = (size_t)S * row, lf = (size_t)S * nh;
    unsigned char *p = (unsigned char *)cuda_scratch_slot(CUDA_SCRATCH_KV, (2 * qf + lf) * 4 + 1024);
    float *qp = (float *)p, *op = qp + qf, *lse = op + qf;
    int32_t *meta = (int32_t *)(lse + lf);
    CU_CHECK(cudaMemsetAsync(qp, 0, (size_t)first_q * row * 4, cuda_stream));
    kv_rows(qp + (size_t)first_q * row, q, a->q_row + i0, n, (int)row, 1);
    /* split table: [0, first_q) causal context, then the chunk (full), or
     * one causal split */
    int32_t h_meta[8];
    int ns = 0;
    if (causal || first_q == 0) {
        ns = 1;
        h_meta[0] = 0, h_meta[1] = S, h_meta[2] = 0;
    } else {
        ns = 2;
        h_meta[0] = 0, h_meta[1] = first_q, h_meta[2] = S, h_meta[3] = 0, h_meta[4] = 0;
    }
    uint8_t modes[2] = {OP_SPLIT_CAUSAL, causal ? (uint8_t)OP_SPLIT_CAUSAL : (uint8_t)OP_SPLIT_FULL};
    if (ns == 1)
        modes[0] = causal ? OP_SPLIT_CAUSAL : OP_SPLIT_FULL;
    int32_t *d_start = meta, *d_first = meta + ns + 1;
    uint8_t *d_mode = (uint8_t *)(d_first + ns);
    CU_CHECK(cudaMemcpyAsync(d_start, h_meta, (size_t)(2 * ns + 1) * 4, cudaMemcpyHostToDevice, cuda_stream));
    CU_CHECK(cudaMemcpyAsync(d_mode, modes, (size_t)ns, cudaMemcpyHostToDevice, cuda_stream));
    op_attn_t at = {};
    at.n_tok = S, at.n_heads = nh, at.n_kv_heads = a->n_kv_heads, at.head_dim = d, at.scale = a->scale;
    at.n_splits = ns, at.split_start = d_start, at.split_mode = d_mode, at.split_first = d_first;
    size_t ld = (size_t)a->n_kv_heads * d, kf = (size_t)a->h_k_first[i0] * ld;
    cuda_attention_fwd(op, lse, qp, kc + kf, vc + kf, &at);
    kv_rows(out, op + (size_t)first_q * row, a->q_row + i0, n, (int)row, 0);
}

extern "C" void cuda_attention_kv(float *out, const float *q, const float *kc, const float *vc, const op_kv_attn_t *a)
{
    int nq = a->n_q;
    if (nq <= 0 || a->n_heads <= 0 || a->head_dim <= 0)
        return;
    CU_REQUIRE(a->head_dim % 4 == 0, "attention_kv: head_dim not a multiple of 4");
    CU_REQUIRE(a->n_kv_heads > 0 && a->n_heads % a->n_kv_heads == 0,
               "attention_kv: n_heads not a multiple of n_kv_heads");
    /* runs of queries with one key start, full or causal; short runs are
     * gathered into ranges for the decoding kernel */
    int dec0 = -1;
    for (int i = 0; i < nq;) {
        int f = a->h_k_first[i], c = a->h_k_count[i], j = i + 1, causal = 0;
        if (j < nq && a->h_k_first[j] == f)
            causal = a->h_k_count[j] == c + 1;
        while (j < nq && a->h_k_first[j] == f && a->h_k_count[j] == c + (causal ? j - i : 0))
            j++;
        int n = j - i;
        if (n >= KV_RUN_MIN && (causal || c >= n)) {
            if (dec0 >= 0)
                kv_decode(out, q, kc, vc, a, dec0, i - dec0), dec0 = -1;
            if (!causal && cuda_dense_enabled() && !kv_flash_takes(a))
                kv_dense(out, q, kc, vc, a, i, n);
            else
                kv_packed(out, q, kc, vc, a, i, n, causal);
        } else if (dec0 < 0) {
            dec0 = i;
        }
        i = j;
    }
    if (dec0 >= 0)
        kv_decode(out, q, kc, vc, a, dec0, nq - dec0);
}
