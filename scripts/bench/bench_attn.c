/* bench_attn.c — the attention kernels and the linear layer of the CUDA
 * backend in TFLOP/s, on the GPU (scripts/bench/attn-gpu.sh runs PyTorch's
 * cuDNN attention and bf16 matmul beside it in the same run).
 *
 *   bench-attn [ITERS] [bf16|linear]  (bf16: the tensor-core attention alone,
 *                                  BAGEL_FA_MB picks its variants, cuda_flash.cu;
 *                                  linear: the bf16 linears alone, BAGEL_GEMM
 *                                  picks how they round, cuda_linear.cu)
 *
 * Attention, forward and forward + backward, at the two model shapes of the
 * benchmark (bagel-0.5b-mot: 14 query heads, 2 kv heads, head dim 64;
 * bagel-7b-mot: 28, 4, 128), on two packings of about 10.7k positions:
 *  - "recipe": the splits of issue 8's batch (two text-to-image samples, two
 *    VLM samples, an edit sample, a long text), BAGEL's masks;
 *  - "causal": one causal sequence of the same length, the peer's case.
 * FLOPs count only visible query-key pairs: 4·pairs·d per head forward, 2.5
 * times that backward (five products to the forward's two). Each row gives
 * fp32 (the CUDA fp32 kernel) and bf16 (the tensor-core kernel).
 *
 * Linear: out[n, o] = in[n, i]·wᵀ at the MoT's shapes, forward, fp32 and bf16
 * (cuBLAS with bf16 operands), as the trainer calls it.
 *
 * Timing: CUDA events around ITERS launches after two warm-up calls; the
 * median of 5 such batches. Inputs are random (never zeros). */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernels/cuda/ops_cuda.h"

#define CHECK(x)                                                                                                       \
    do {                                                                                                               \
        cudaError_t e_ = (x);                                                                                          \
        if (e_ != cudaSuccess) {                                                                                       \
            fprintf(stderr, "bench-attn: %s: %s\n", #x, cudaGetErrorString(e_));                                      \
            exit(1);                                                                                                   \
        }                                                                                                              \
    } while (0)

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static float *drand(size_t n, float amp)
{
    float *h = malloc(n * sizeof(float)), *d = NULL;
    for (size_t i = 0; i < n; i++)
        h[i] = amp * frand();
    CHECK(cudaMalloc((void **)&d, n * sizeof(float)));
    CHECK(cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice));
    free(h);
    return d;
}

static void *dcopy(const void *h, size_t bytes)
{
    void *d = NULL;
    CHECK(cudaMalloc(&d, bytes));
    CHECK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
    return d;
}

typedef struct {
    int len, mode, new_sample;
} spl_t;

static int bf16_only; /* argv[2] "bf16" or "linear": the bf16 attention or the bf16 linears alone */

/* the recipe batch's splits (positions include the image markers) */
static const spl_t recipe[] = {
    {62, OP_SPLIT_CAUSAL, 1},  {1026, OP_SPLIT_NOISE, 0}, /* t2i, 60-token caption */
    {102, OP_SPLIT_CAUSAL, 1}, {1026, OP_SPLIT_NOISE, 0}, /* t2i, 100-token caption */
    {731, OP_SPLIT_FULL, 1},   {272, OP_SPLIT_CAUSAL, 0}, /* VLM, 250-token answer */
    {731, OP_SPLIT_FULL, 1},   {422, OP_SPLIT_CAUSAL, 0}, /* VLM, 400-token answer */
    {1026, OP_SPLIT_FULL, 1},  {1371, OP_SPLIT_FULL, 0},  {32, OP_SPLIT_CAUSAL, 0}, {1026, OP_SPLIT_NOISE, 0}, /* edit */
    {2900, OP_SPLIT_CAUSAL, 1},                                                                                /* text */
};

static double median(double *x, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && x[j] < x[j - 1]; j--) {
            double t = x[j];
            x[j] = x[j - 1], x[j - 1] = t;
        }
    return x[n / 2];
}

typedef void (*bench_fn)(void *);

/* median ms of one call */
static double time_ms(bench_fn fn, void *arg, int iters)
{
    cudaEvent_t a, b;
    CHECK(cudaEventCreate(&a));
    CHECK(cudaEventCreate(&b));
    fn(arg);
    fn(arg);
    op_cuda.sync();
    double t[5];
    for (int r = 0; r < 5; r++) {
        op_cuda.sync();
        CHECK(cudaEventRecord(a, 0));
        for (int i = 0; i < iters; i++)
            fn(arg);
        op_cuda.sync();
        CHECK(cudaEventRecord(b, 0));
        CHECK(cudaEventSynchronize(b));
        float ms;
        CHECK(cudaEventElapsedTime(&ms, a, b));
        t[r] = ms / iters;
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return median(t, 5);
}

typedef struct {
    op_attn_t a;
    float *q, *k, *v, *o, *lse, *dout, *dq, *dk, *dv;
} attn_arg;

static void run_fwd(void *p)
{
    attn_arg *x = p;
    op_cuda.attention_fwd(x->o, x->lse, x->q, x->k, x->v, &x->a);
}

static void run_fwd_bwd(void *p)
{
    attn_arg *x = p;
    op_cuda.attention_fwd(x->o, x->lse, x->q, x->k, x->v, &x->a);
    op_cuda.attention_bwd(x->dq, x->dk, x->dv, x->dout, x->o, x->lse, x->q, x->k, x->v, &x->a);
}

/* the backward's two halves alone (its staging included in each) */
static void run_bwd_dq(void *p)
{
    attn_arg *x = p;
    op_cuda.attention_bwd(x->dq, NULL, NULL, x->dout, x->o, x->lse, x->q, x->k, x->v, &x->a);
}

static void run_bwd_dkv(void *p)
{
    attn_arg *x = p;
    op_cuda.attention_bwd(NULL, x->dk, x->dv, x->dout, x->o, x->lse, x->q, x->k, x->v, &x->a);
}

static void attn_bench(const char *name, const spl_t *sp, int ns, int nh, int nkv, int d, int iters)
{
    int S = 0;
    for (int i = 0; i < ns; i++)
        S += sp[i].len;
    int32_t *start = malloc(sizeof(int32_t) * (ns + 1)), *first = malloc(sizeof(int32_t) * ns);
    uint8_t *mode = malloc(ns);
    for (int i = 0, p = 0; i < ns; i++) {
        start[i] = p;
        mode[i] = (uint8_t)sp[i].mode;
        first[i] = i == 0 || sp[i].new_sample ? i : first[i - 1];
        p += sp[i].len;
    }
    start[ns] = S;
    op_attn_t h = {S, nh, nkv, d, 1.0f / sqrtf((float)d), ns, start, mode, first, NULL};
    /* visible pairs, counted on the host by the rule itself, per split */
    double pairs = 0;
    for (int s = 0; s < ns; s++)
        for (int q = start[s]; q < start[s + 1]; q++)
            for (int t = first[s]; t <= s && t < ns; t++) {
                if (t < s && mode[t] == OP_SPLIT_NOISE)
                    continue;
                if (t < s)
                    pairs += start[t + 1] - start[t];
                else
                    pairs += mode[s] == OP_SPLIT_CAUSAL ? q - start[s] + 1 : start[s + 1] - start[s];
            }
    attn_arg x;
    x.a = h;
    x.a.split_start = dcopy(start, sizeof(int32_t) * (ns + 1));
    x.a.split_mode = dcopy(mode, ns);
    x.a.split_first = dcopy(first, sizeof(int32_t) * ns);
    size_t nq = (size_t)S * nh * d, nk = (size_t)S * nkv * d;
    x.q = drand(nq, 2), x.k = drand(nk, 2), x.v = drand(nk, 1), x.dout = drand(nq, 1);
    x.o = drand(nq, 1), x.lse = drand((size_t)S * nh, 1), x.dq = drand(nq, 1), x.dk = drand(nk, 1),
    x.dv = drand(nk, 1);
    double ff = 4.0 * pairs * d * nh;
    for (int bf = bf16_only; bf < 2; bf++) {
        cuda_ops_set_bf16(bf);
        int it = bf ? iters : (iters + 9) / 10;
        double tf = time_ms(run_fwd, &x, it), tfb = time_ms(run_fwd_bwd, &x, it);
        printf("attn %-6s S=%d heads=%d/%d d=%d %-4s pairs=%.4g  fwd %.3f ms %.1f TFLOP/s  fwd+bwd %.3f ms %.1f "
               "TFLOP/s\n",
               name, S, nh, nkv, d, bf ? "bf16" : "fp32", pairs, tf, ff / tf * 1e-9, tfb, 3.5 * ff / tfb * 1e-9);
        if (bf) { /* which half of the backward takes the time */
            double tq = time_ms(run_bwd_dq, &x, it), tk = time_ms(run_bwd_dkv, &x, it);
            printf("attn %-6s S=%d d=%d bf16 backward alone: dQ %.3f ms, dK/dV %.3f ms\n", name, S, d, tq, tk);
        }
        fflush(stdout);
    }
    cuda_ops_set_bf16(0);
    void *bufs[] = {x.q, x.k, x.v, x.o, x.lse, x.dout, x.dq, x.dk, x.dv, (void *)x.a.split_start,
                    (void *)x.a.split_mode, (void *)x.a.split_first};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        cudaFree(bufs[i]);
    free(start), free(first), free(mode);
}

typedef struct {
    float *in, *w, *out, *din, *dw, *b, *db;
    int n, i, o;
} lin_arg;

static void run_lin(void *p)
{
    lin_arg *x = p;
    op_cuda.linear_fwd(x->out, x->in, x->w, x->b, x->n, x->i, x->o);
}

static void run_lin_bwd(void *p)
{
    lin_arg *x = p;
    op_cuda.linear_bwd(x->din, x->dw, x->db, x->out, x->in, x->w, x->n, x->i, x->o);
}

/* forward and backward (din, dw and, with a bias, db), as the trainer calls them */
static void lin_bench(int n, int in, int out, int bias, int iters)
{
    lin_arg x = {drand((size_t)n * in, 1),  drand((size_t)out * in, 0.05f), drand((size_t)n * out, 1),
                 drand((size_t)n * in, 1),  drand((size_t)out * in, 1),     bias ? drand(out, 1) : NULL,
                 bias ? drand(out, 1) : NULL, n, in, out};
    const char *gm = getenv("BAGEL_GEMM");
    for (int bf = bf16_only; bf < 2; bf++) {
        cuda_ops_set_bf16(bf);
        double t = time_ms(run_lin, &x, bf ? iters : (iters + 4) / 5);
        double tb = time_ms(run_lin_bwd, &x, bf ? iters : (iters + 4) / 5);
        printf("linear n=%d in=%d out=%d%s %-4s%s fwd %.3f ms %.1f TFLOP/s  bwd %.3f ms %.1f TFLOP/s\n", n, in, out,
               bias ? " bias" : "", bf ? "bf16" : "fp32", bf && gm ? " BAGEL_GEMM=fast16bf" : "", t,
               2.0 * n * in * out / t * 1e-9, tb, 4.0 * n * in * out / tb * 1e-9);
        fflush(stdout);
    }
    cuda_ops_set_bf16(0);
    void *bufs[] = {x.in, x.w, x.out, x.din, x.dw, x.b, x.db};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        cudaFree(bufs[i]);
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 10;
    bf16_only = argc > 2 && (!strcmp(argv[2], "bf16") || !strcmp(argv[2], "linear"));
    int linear_only = argc > 2 && !strcmp(argv[2], "linear");
    char err[256];
    if (cuda_ops_init(0, err, sizeof err)) {
        printf("bench-attn: skipped: %s\n", err);
        return 0;
    }
    int nr = (int)(sizeof recipe / sizeof recipe[0]), S = 0;
    for (int i = 0; i < nr; i++)
        S += recipe[i].len;
    spl_t causal[] = {{S, OP_SPLIT_CAUSAL, 1}};
    /* the recipe's ViT images (SigLIP: 16 heads of 72, no mask within an image) */
    spl_t vit[] = {{729, OP_SPLIT_FULL, 1}, {729, OP_SPLIT_FULL, 1}, {1369, OP_SPLIT_FULL, 1}};
    if (!linear_only) {
        attn_bench("recipe", recipe, nr, 14, 2, 64, iters);
        attn_bench("causal", causal, 1, 14, 2, 64, iters);
        attn_bench("recipe", recipe, nr, 28, 4, 128, iters);
        attn_bench("causal", causal, 1, 28, 4, 128, iters);
        attn_bench("vit", vit, 3, 16, 16, 72, iters);
        if (bf16_only) {
            cuda_ops_shutdown();
            return 0;
        }
    }
    lin_bench(S, 896, 4864, 0, iters);
    lin_bench(S, 4864, 896, 0, iters);
    lin_bench(S, 896, 1152, 1, iters);
    lin_bench(S, 3584, 18944, 0, iters);
    lin_bench(S, 3584, 4608, 1, iters);
    cuda_ops_shutdown();
    return 0;
}
