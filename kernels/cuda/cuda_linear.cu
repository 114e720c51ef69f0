/* cuda_linear.cu — the linear layer on cuBLAS (fp32 without TF32, or bf16
 * tensor-core math with fp32 accumulation: cuda_ops_set_bf16), the
 * row-major-to-column-major gemm wrapper every product here goes through,
 * and the column-sum kernel for bias gradients. */
#include "cuda_internal.h"

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <stdlib.h>
#include <string.h>

/* rows × cols of x (row stride ld) into a packed bf16 copy, 4 a thread */
__global__ void k_to_bf16(__nv_bfloat16 *dst, const float *x, int rows, int cols, int ld)
{
    size_t n4 = ((size_t)rows * cols + 3) / 4;
    CU_FOR(i4, n4)
    {
        for (int u = 0; u < 4; u++) {
            size_t i = i4 * 4 + u;
            if (i >= (size_t)rows * cols)
                break;
            size_t r = i / cols, c = i % cols;
            dst[i] = __float2bfloat16_rn(x[r * ld + c]);
        }
    }
}

/* the packed case: 16-byte loads, 8-byte stores (n a multiple of 4, both
 * pointers aligned) */
__global__ void k_to_bf16_packed(__nv_bfloat16 *dst, const float4 *x, size_t n4)
{
    CU_FOR(i, n4)
    {
        float4 v = x[i];
        __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
        uint2 w = make_uint2(*reinterpret_cast<uint32_t *>(&lo), *reinterpret_cast<uint32_t *>(&hi));
        reinterpret_cast<uint2 *>(dst)[i] = w;
    }
}

/* rows × cols of x (row stride ld) rounded into dst, packed: 16-byte loads
 * where x is packed and aligned for them */
static void to_bf16_into(__nv_bfloat16 *dst, const float *x, int rows, int cols, int ld)
{
    size_t n = (size_t)rows * cols;
    if (!n)
        return;
    if ((ld == cols || rows == 1) && n % 4 == 0 && ((uintptr_t)x & 15) == 0 && ((uintptr_t)dst & 7) == 0)
        k_to_bf16_packed<<<cuda_blocks(n / 4), CU_THREADS, 0, cuda_stream>>>(dst, (const float4 *)x, n / 4);
    else
        k_to_bf16<<<cuda_blocks((n + 3) / 4), CU_THREADS, 0, cuda_stream>>>(dst, x, rows, cols, ld);
    CU_LAUNCHED();
}

static __nv_bfloat16 *to_bf16(int slot, const float *x, int rows, int cols, int ld)
{
    size_t n = (size_t)rows * cols;
    __nv_bfloat16 *d = (__nv_bfloat16 *)cuda_scratch_slot(slot, n * sizeof(__nv_bfloat16) + 16);
    to_bf16_into(d, x, rows, cols, ld);
    return d;
}

void *cuda_to_bf16(int slot, const float *x, int rows, int cols, int ld) { return to_bf16(slot, x, rows, cols, ld); }

/* A row-major X[r, c] with stride ld is the column-major Xᵀ with the same
 * ld, so C = op(A)·op(B) in row-major is Cᵀ = op(B)ᵀ·op(A)ᵀ in column-major:
 * swap the operands and keep each one's transpose flag. */
/* How bf16 products take their fp32 operands: 0 (the default) rounds each
 * operand into a packed bf16 copy first and multiplies bf16 by bf16; 1
 * (BAGEL_GEMM=fast16bf, for measurement) hands cuBLAS the fp32 operands
 * with CUBLAS_COMPUTE_32F_FAST_16BF and lets it round them. */
static int gemm_mode = -1;

static int gemm_fast16bf(void)
{
    if (gemm_mode < 0) {
        const char *e = getenv("BAGEL_GEMM");
        gemm_mode = e && !strcmp(e, "fast16bf");
    }
    return gemm_mode;
}

/* ---- cuBLASLt: the product with the bias added in its epilogue ----
 *
 * A linear layer's bias used to be written into the output first, for the
 * product to add onto (β = 1): a pass writing the output and the product
 * reading it back, n·out floats each way, and a launch. cuBLASLt's BIAS
 * epilogue adds it as the product stores its result. A plan (descriptors
 * and the heuristic's algorithm) is kept per shape and alignment. */

static int lt_mode = -1; /* 1 on; 0 off (BAGEL_GEMM_LT=0, cuda_gemm_lt_set, for measurement and tests) */
static cublasLtHandle_t lt;
static void *lt_ws;
static size_t lt_ws_bytes;
#define LT_WS_BYTES ((size_t)32 << 20)

typedef struct {
    int m, n, k, lda, ldb, ldc, align;
    char ta, tb;
    bool ok; /* the heuristic found an algorithm */
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
} lt_plan_t;

#define LT_PLANS 128
static lt_plan_t lt_plans[LT_PLANS];
static int n_lt_plans;

void cuda_gemm_lt_set(int on) { lt_mode = on != 0; }

static bool lt_on(void)
{
    if (lt_mode < 0) {
        const char *e = getenv("BAGEL_GEMM_LT");
        lt_mode = !(e && !strcmp(e, "0"));
    }
    return lt_mode;
}

void cuda_linear_shutdown(void)
{
    for (int i = 0; i < n_lt_plans; i++) {
        cublasLtMatrixLayoutDestroy(lt_plans[i].la);
        cublasLtMatrixLayoutDestroy(lt_plans[i].lb);
        cublasLtMatrixLayoutDestroy(lt_plans[i].lc);
        cublasLtMatmulDescDestroy(lt_plans[i].op);
    }
    n_lt_plans = 0;
    if (lt_ws)
        cudaFree(lt_ws);
    lt_ws = NULL, lt_ws_bytes = 0;
    if (lt)
        cublasLtDestroy(lt);
    lt = NULL;
}

/* the largest power of two up to 256 that divides p */
static int align_of(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    int al = 1;
    while (al < 256 && !(a & (uintptr_t)al))
        al <<= 1;
    return al;
}

#define LT_TRY(call)                                                                                                   \
    do {                                                                                                               \
        if ((call) != CUBLAS_STATUS_SUCCESS)                                                                           \
            return pl;                                                                                                 \
    } while (0)

/* The plan for this shape, made on first use; pl->ok false when cuBLASLt
 * has no algorithm for it (the caller takes the other path). */
static lt_plan_t *lt_plan(char ta, char tb, int m, int n, int k, int lda, int ldb, int ldc, int align)
{
    for (int i = 0; i < n_lt_plans; i++) {
        lt_plan_t *p = &lt_plans[i];
        if (p->m == m && p->n == n && p->k == k && p->lda == lda && p->ldb == ldb && p->ldc == ldc &&
            p->align == align && p->ta == ta && p->tb == tb)
            return p;
    }
    if (n_lt_plans == LT_PLANS)
        return NULL;
    lt_plan_t *pl = &lt_plans[n_lt_plans++];
    memset(pl, 0, sizeof *pl);
    pl->m = m, pl->n = n, pl->k = k, pl->lda = lda, pl->ldb = ldb, pl->ldc = ldc, pl->align = align;
    pl->ta = ta, pl->tb = tb;
    /* column-major, as gemm16 calls cuBLAS: D[n, m] = op(b)·op(a) */
    cublasOperation_t opb = tb == 't' ? CUBLAS_OP_T : CUBLAS_OP_N, opa = ta == 't' ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    cudaDataType_t f32 = CUDA_R_32F;
    LT_TRY(cublasLtMatmulDescCreate(&pl->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT_TRY(cublasLtMatmulDescSetAttribute(pl->op, CUBLASLT_MATMUL_DESC_TRANSA, &opb, sizeof opb));
    LT_TRY(cublasLtMatmulDescSetAttribute(pl->op, CUBLASLT_MATMUL_DESC_TRANSB, &opa, sizeof opa));
    LT_TRY(cublasLtMatmulDescSetAttribute(pl->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    LT_TRY(cublasLtMatmulDescSetAttribute(pl->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &f32, sizeof f32));
    LT_TRY(cublasLtMatrixLayoutCreate(&pl->la, CUDA_R_16BF, opb == CUBLAS_OP_N ? n : k, opb == CUBLAS_OP_N ? k : n,
                                      ldb));
    LT_TRY(cublasLtMatrixLayoutCreate(&pl->lb, CUDA_R_16BF, opa == CUBLAS_OP_N ? k : m, opa == CUBLAS_OP_N ? m : k,
                                      lda));
    LT_TRY(cublasLtMatrixLayoutCreate(&pl->lc, CUDA_R_32F, n, m, ldc));
    cublasLtMatmulPreference_t pref;
    LT_TRY(cublasLtMatmulPreferenceCreate(&pref));
    uint32_t al = (uint32_t)align;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &lt_ws_bytes,
                                         sizeof lt_ws_bytes);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al, sizeof al);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al, sizeof al);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al, sizeof al);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al, sizeof al);
    cublasLtMatmulHeuristicResult_t h;
    int got = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt, pl->op, pl->la, pl->lb, pl->lc, pl->lc, pref, 1, &h, &got);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st == CUBLAS_STATUS_SUCCESS && got > 0 && h.workspaceSize <= lt_ws_bytes) {
        pl->algo = h.algo;
        pl->ok = true;
    }
    return pl;
}

/* c [m, n] (row-major, ldc) = a·b + bias (bias [n], added to every row),
 * packed bf16 operands as gemm16 takes them, through cuBLASLt. false when
 * it cannot (off, a bias not 16-byte aligned, no algorithm): nothing was
 * queued, and the caller adds the bias its own way. */
static bool gemm16_bias(char ta, char tb, int m, int n, int k, const __nv_bfloat16 *a, int lda,
                        const __nv_bfloat16 *b, int ldb, const float *bias, float *c, int ldc)
{
    if (!lt_on() || ((uintptr_t)bias & 15))
        return false;
    if (!lt) {
        if (cublasLtCreate(&lt) != CUBLAS_STATUS_SUCCESS) {
            lt = NULL, lt_mode = 0;
            return false;
        }
        if (cudaMalloc(&lt_ws, LT_WS_BYTES) == cudaSuccess)
            lt_ws_bytes = LT_WS_BYTES;
        else
            (void)cudaGetLastError(), lt_ws = NULL; /* algorithms without a workspace only */
    }
    int al = align_of(a), x = align_of(b);
    al = x < al ? x : al;
    x = align_of(c);
    al = x < al ? x : al;
    lt_plan_t *pl = lt_plan(ta, tb, m, n, k, lda, ldb, ldc, al);
    if (!pl || !pl->ok ||
        cublasLtMatmulDescSetAttribute(pl->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias) !=
            CUBLAS_STATUS_SUCCESS)
        return false;
    const float one = 1.0f, zero = 0.0f;
    if (cublasLtMatmul(lt, pl->op, &one, b, pl->la, a, pl->lb, &zero, c, pl->lc, c, pl->lc, &pl->algo, lt_ws,
                       lt_ws_bytes, cuda_stream) != CUBLAS_STATUS_SUCCESS) {
        pl->ok = false; /* refused before launching: not again for this shape */
        return false;
    }
    return true;
}

/* the product of packed bf16 operands (row-major, a [ra, ca], b [rb, cb] as
 * cuda_gemm_rm describes them) into fp32 c */
static void gemm16(char ta, char tb, int m, int n, int k, float alpha, const __nv_bfloat16 *a, int lda,
                   const __nv_bfloat16 *b, int ldb, float beta, float *c, int ldc)
{
    cublasOperation_t opb = tb == 't' ? CUBLAS_OP_T : CUBLAS_OP_N, opa = ta == 't' ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_CHECK(cublasGemmEx(cuda_blas, opb, opa, n, m, k, &alpha, b, CUDA_R_16BF, ldb, a, CUDA_R_16BF, lda, &beta, c,
                              CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void cuda_gemm_rm(char ta, char tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                  float beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0)
        return;
    cublasOperation_t opb = tb == 't' ? CUBLAS_OP_T : CUBLAS_OP_N, opa = ta == 't' ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (!cuda_bf16) {
        CUBLAS_CHECK(cublasSgemm(cuda_blas, opb, opa, n, m, k, &alpha, b, ldb, a, lda, &beta, c, ldc));
        return;
    }
    if (gemm_fast16bf()) {
        CUBLAS_CHECK(cublasGemmEx(cuda_blas, opb, opa, n, m, k, &alpha, b, CUDA_R_32F, ldb, a, CUDA_R_32F, lda, &beta,
                                  c, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT));
        return;
    }
    /* bf16 copies of both operands (a memory pass over each), fp32
     * accumulation and output */
    int ra = ta == 't' ? k : m, ca = ta == 't' ? m : k, rb = tb == 't' ? n : k, cb = tb == 't' ? k : n;
    __nv_bfloat16 *a16 = to_bf16(CUDA_SCRATCH_GEMM_A, a, ra, ca, lda);
    __nv_bfloat16 *b16 = to_bf16(CUDA_SCRATCH_GEMM_B, b, rb, cb, ldb);
    gemm16(ta, tb, m, n, k, alpha, a16, ca, b16, cb, beta, c, ldc);
}

int cuda_gemm16_on(void) { return cuda_bf16 && !gemm_fast16bf(); }

void cuda_gemm16_rm(char ta, char tb, int m, int n, int k, float alpha, const void *a16, int lda, const void *b16,
                    int ldb, float beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0)
        return;
    gemm16(ta, tb, m, n, k, alpha, (const __nv_bfloat16 *)a16, lda, (const __nv_bfloat16 *)b16, ldb, beta, c, ldc);
}

__global__ void k_bias_rows(float *out, const float *b, size_t total, int c)
{
    /* 32-bit index arithmetic where it fits: a 64-bit modulo per element
     * cost more than the store */
    if (total <= 0x7fffffffu) { /* and i + stride cannot wrap */
        for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < (unsigned)total; i += gridDim.x * blockDim.x)
            out[i] = b ? b[i % (unsigned)c] : 0.0f;
        return;
    }
    CU_FOR(i, total) out[i] = b ? b[i % c] : 0.0f;
}

void cuda_colsum_add(float *dst, const float *src, int n, int c) { cuda_col_reduce(NULL, dst, src, NULL, NULL, NULL, n, c); }

/* ---- held weights: bf16 copies made once (op_table_t.hold_weights) ---- */

typedef struct held {
    const float *w;
    size_t n;
    __nv_bfloat16 *w16;
} held_t;

static const float *hold_lo, *hold_hi;
static held_t *held;
static int n_held, cap_held;

void cuda_hold_weights(const float *w, size_t n)
{
    if (n_held) {
        CU_CHECK(cudaStreamSynchronize(cuda_stream)); /* products may still read them */
        for (int i = 0; i < n_held; i++)
            CU_CHECK(cudaFree(held[i].w16));
    }
    n_held = 0;
    hold_lo = n ? w : NULL;
    hold_hi = n ? w + n : NULL;
    if (!n) {
        free(held);
        held = NULL;
        cap_held = 0;
    }
}

/* the bf16 copy of a held weight [rows, cols] (packed), or NULL when w is
 * not held or no copy can be made */
static const __nv_bfloat16 *held_bf16(const float *w, int rows, int cols)
{
    size_t n = (size_t)rows * cols;
    if (!hold_lo || w < hold_lo || w + n > hold_hi)
        return NULL;
    for (int i = 0; i < n_held; i++)
        if (held[i].w == w && held[i].n == n)
            return held[i].w16;
    if (n_held == cap_held) {
        int c = cap_held ? 2 * cap_held : 256;
        held_t *g = (held_t *)realloc(held, (size_t)c * sizeof *held);
        if (!g)
            return NULL;
        held = g, cap_held = c;
    }
    __nv_bfloat16 *d;
    if (cudaMalloc(&d, n * sizeof(__nv_bfloat16)) != cudaSuccess) {
        (void)cudaGetLastError();
        return NULL; /* no room for a copy: the product rounds as usual */
    }
    const __nv_bfloat16 *tmp = to_bf16(CUDA_SCRATCH_GEMM_B, w, rows, cols, cols);
    CU_CHECK(cudaMemcpyAsync(d, tmp, n * sizeof(__nv_bfloat16), cudaMemcpyDeviceToDevice, cuda_stream));
    held[n_held++] = (held_t){w, n, d};
    return d;
}

/* ---- the tracked block: one bf16 mirror that AdamW keeps current
 * (op_table_t.track_weights; cuda_optim.cu writes it) ---- */

static __nv_bfloat16 *mirror;
static size_t mirror_cap;
static const float *track_lo, *track_hi;

__global__ void k_round_block(__nv_bfloat16 *dst, const float *x, size_t n)
{
    CU_FOR(i, n) dst[i] = __float2bfloat16_rn(x[i]);
}

void cuda_track_weights(const float *w, size_t n)
{
    if (!n) {
        if (w != track_lo)
            return; /* another block's end: this one stays */
        CU_CHECK(cudaStreamSynchronize(cuda_stream)); /* products may still read it */
        CU_CHECK(cudaFree(mirror));
        mirror = NULL, mirror_cap = 0, track_lo = track_hi = NULL;
        return;
    }
    CU_CHECK(cudaStreamSynchronize(cuda_stream));
    track_lo = track_hi = NULL;
    if (n > mirror_cap) {
        CU_CHECK(cudaFree(mirror));
        mirror = NULL, mirror_cap = 0;
        if (cudaMalloc(&mirror, n * sizeof(__nv_bfloat16)) != cudaSuccess) {
            (void)cudaGetLastError();
            return; /* no room: every product rounds its weight as before */
        }
        mirror_cap = n;
    }
    k_round_block<<<cuda_blocks(n), CU_THREADS, 0, cuda_stream>>>(mirror, w, n);
    CU_LAUNCHED();
    track_lo = w, track_hi = w + n;
}

void *cuda_tracked_bf16(const float *w, size_t n)
{
    if (!track_lo || w < track_lo || w + n > track_hi)
        return NULL;
    return mirror + (w - track_lo);
}

/* a weight [rows, cols]'s bf16 copy: held (inference) or tracked (training);
 * NULL when it has none */
static const __nv_bfloat16 *weight_copy(const float *w, int rows, int cols)
{
    const __nv_bfloat16 *h = held_bf16(w, rows, cols);
    return h ? h : (const __nv_bfloat16 *)cuda_tracked_bf16(w, (size_t)rows * cols);
}

/* a weight [rows, cols] in bf16: its held copy, else rounded into slot B
 * (reused in stream order: each copy is taken just before its product) */
static const __nv_bfloat16 *weight16(const __nv_bfloat16 *held, const float *w, int rows, int cols)
{
    return held ? held : to_bf16(CUDA_SCRATCH_GEMM_B, w, rows, cols, cols);
}

static void bias_rows(float *out, const float *b, int n, int out_dim)
{
    size_t total = (size_t)n * out_dim;
    k_bias_rows<<<cuda_blocks(total), CU_THREADS, 0, cuda_stream>>>(out, b, total, out_dim);
    CU_LAUNCHED();
}

/* out = x16·wᵀ + b with bf16 products, the input already rounded (x16):
 * the weight's bf16 copy (held, tracked) or rounded now into slot B, as
 * cuda_gemm_rm would; the bias in cuBLASLt's epilogue, else written first
 * for the product to add onto */
static void fwd16(float *out, const __nv_bfloat16 *x16, const float *w, const float *b, int n, int in_dim,
                  int out_dim)
{
    const __nv_bfloat16 *w16 = weight16(weight_copy(w, out_dim, in_dim), w, out_dim, in_dim);
    if (b && gemm16_bias('n', 't', n, out_dim, in_dim, x16, in_dim, w16, in_dim, b, out, out_dim))
        return;
    if (b)
        bias_rows(out, b, n, out_dim);
    gemm16('n', 't', n, out_dim, in_dim, 1.0f, x16, in_dim, w16, in_dim, b ? 1.0f : 0.0f, out, out_dim);
}

void cuda_linear_fwd(float *out, const float *in, const float *w, const float *b, int n, int in_dim, int out_dim)
{
    if (n <= 0 || out_dim <= 0)
        return;
    if (in_dim <= 0) {
        bias_rows(out, b, n, out_dim);
        return;
    }
    if (cuda_bf16 && !gemm_fast16bf()) {
        fwd16(out, to_bf16(CUDA_SCRATCH_GEMM_A, in, n, in_dim, in_dim), w, b, n, in_dim, out_dim);
        return;
    }
    if (b)
        bias_rows(out, b, n, out_dim);
    cuda_gemm_rm('n', 't', n, out_dim, in_dim, 1.0f, in, in_dim, w, in_dim, b ? 1.0f : 0.0f, out, out_dim);
}

/* One layer's backward with bf16 products: din = dout·w + beta_in·din;
 * dw += doutᵀ·in; db += Σ_n dout. dout is rounded once for both products
 * (slot A); the input at the first weight gradient that needs it, into slot
 * C, and kept in *x16 for the next layers of the same input (linear3_bwd). */
static void bwd16(float *din, float beta_in, float *dw, float *db, const float *dout, const float *in, const float *w,
                  int n, int in_dim, int out_dim, const __nv_bfloat16 **x16)
{
    if (din || dw) {
        __nv_bfloat16 *d16 = to_bf16(CUDA_SCRATCH_GEMM_A, dout, n, out_dim, out_dim);
        if (din) {
            const __nv_bfloat16 *w16 = weight16(weight_copy(w, out_dim, in_dim), w, out_dim, in_dim);
            gemm16('n', 'n', n, in_dim, out_dim, 1.0f, d16, out_dim, w16, in_dim, beta_in, din, in_dim);
        }
        if (dw) {
            if (!*x16)
                *x16 = to_bf16(CUDA_SCRATCH_C, in, n, in_dim, in_dim);
            gemm16('t', 'n', out_dim, in_dim, n, 1.0f, d16, out_dim, *x16, in_dim, cuda_gw_beta(), dw, in_dim);
        }
    }
    if (db)
        cuda_colsum_add(db, dout, n, out_dim);
}

/* beta_in 1: din += dout·w (linear_bwd); 0: din = dout·w, its old contents
 * never read (linear_bwd_set) */
static void linear_bwd(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int n,
                       int in_dim, int out_dim, float beta_in)
{
    if (n <= 0 || out_dim <= 0)
        return;
    if (cuda_bf16 && !gemm_fast16bf() && in_dim > 0 && (din || dw)) {
        const __nv_bfloat16 *x16 = NULL;
        bwd16(din, beta_in, dw, db, dout, in, w, n, in_dim, out_dim, &x16);
        return;
    }
    if (din && in_dim > 0) /* din[n,i] (+)= dout[n,o] · w[o,i] */
        cuda_gemm_rm('n', 'n', n, in_dim, out_dim, 1.0f, dout, out_dim, w, in_dim, beta_in, din, in_dim);
    if (dw && in_dim > 0) /* dw[o,i] += dout[n,o]ᵀ · in[n,i] (= when grad_write) */
        cuda_gemm_rm('t', 'n', out_dim, in_dim, n, 1.0f, dout, out_dim, in, in_dim, cuda_gw_beta(), dw, in_dim);
    if (db)
        cuda_colsum_add(db, dout, n, out_dim);
}

void cuda_linear_bwd(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int n,
                     int in_dim, int out_dim)
{
    linear_bwd(din, dw, db, dout, in, w, n, in_dim, out_dim, 1.0f);
}

void cuda_linear_bwd_set(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int n,
                         int in_dim, int out_dim)
{
    linear_bwd(din, dw, db, dout, in, w, n, in_dim, out_dim, 0.0f);
}

/* ---- q, k and v: three products of one input (op_table_t.linear3_fwd,
 * linear3_bwd). The input is rounded to bf16 once for the three, forward
 * and backward, instead of at each product; every product is the one
 * linear_fwd or linear_bwd would queue, so the values are theirs, bit for
 * bit. ---- */

/* Whether linear3 runs its own bf16 path: bf16 products, rows and an input,
 * and not BAGEL_LINEAR3=ops (the ops in turn, for measurement). */
static bool linear3_own(int n, int in_dim)
{
    static int ops = -1;
    if (ops < 0) {
        const char *e = getenv("BAGEL_LINEAR3");
        ops = e && !strcmp(e, "ops");
    }
    return cuda_bf16 && !gemm_fast16bf() && !ops && n > 0 && in_dim > 0;
}

void cuda_linear3_fwd(const op_lin_t *l, const float *in, int n, int in_dim)
{
    if (!linear3_own(n, in_dim)) {
        op_linear3_fwd_by_ops(&op_cuda, l, in, n, in_dim);
        return;
    }
    /* slot A holds the input for the three products: only slot B (weights
     * without a copy) is written in between */
    __nv_bfloat16 *x16 = to_bf16(CUDA_SCRATCH_GEMM_A, in, n, in_dim, in_dim);
    for (int j = 0; j < 3; j++)
        if (l[j].dim > 0)
            fwd16(l[j].out, x16, l[j].w, l[j].b, n, in_dim, l[j].dim);
}

void cuda_linear3_bwd(float *din, const op_lin_t *l, const float *in, int n, int in_dim, int set)
{
    if (!linear3_own(n, in_dim)) {
        op_linear3_bwd_by_ops(&op_cuda, din, l, in, n, in_dim, set);
        return;
    }
    /* each layer as linear_bwd would run it, the input rounded once (slot C)
     * for the three weight gradients; din written by the first product into
     * it when set */
    const __nv_bfloat16 *x16 = NULL;
    bool written = !set;
    for (int j = 0; j < 3; j++) {
        if (l[j].dim <= 0)
            continue;
        bwd16(din, written ? 1.0f : 0.0f, l[j].dw, l[j].db, l[j].dout, in, l[j].w, n, in_dim, l[j].dim, &x16);
        written |= din != NULL;
    }
}

/* ---- the MLP forward (op_table_t.mlp_fwd) ------------------------------ */

/* the product of packed bf16 operands into bf16 c (beta 0): the MLP's
 * intermediates, which the next product would round to bf16 anyway */
static void gemm16_to16(char ta, char tb, int m, int n, int k, const __nv_bfloat16 *a, int lda,
                        const __nv_bfloat16 *b, int ldb, __nv_bfloat16 *c, int ldc)
{
    cublasOperation_t opb = tb == 't' ? CUBLAS_OP_T : CUBLAS_OP_N, opa = ta == 't' ? CUBLAS_OP_T : CUBLAS_OP_N;
    const float one = 1.0f, zero = 0.0f;
    CUBLAS_CHECK(cublasGemmEx(cuda_blas, opb, opa, n, m, k, &one, b, CUDA_R_16BF, ldb, a, CUDA_R_16BF, lda, &zero, c,
                              CUDA_R_16BF, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

__device__ static inline float ld_f(float x) { return x; }
__device__ static inline float ld_f(__nv_bfloat16 x) { return __bfloat162float(x); }

__device__ static inline float2 ld2_f(const float *p, size_t i) { return reinterpret_cast<const float2 *>(p)[i]; }
__device__ static inline float2 ld2_f(const __nv_bfloat16 *p, size_t i)
{
    return __bfloat1622float2(reinterpret_cast<const __nv_bfloat162 *>(p)[i]);
}

/* mm = silu(gate)·up into bf16, the fp32 op's expression (cuda_act.cu) on
 * fp32 or bf16 gate and up; two elements a thread where vec (m even, the
 * pointers aligned for it: swiglu_vec) */
template <typename T> __global__ void k_swiglu_to16(__nv_bfloat16 *mm, const T *gate, const T *up, size_t m, int vec)
{
    if (vec) {
        __nv_bfloat162 *o2 = reinterpret_cast<__nv_bfloat162 *>(mm);
        CU_FOR(i, m / 2)
        {
            float2 g = ld2_f(gate, i), u = ld2_f(up, i);
            o2[i] = __floats2bfloat162_rn(g.x * cuda_sigmoid(g.x) * u.x, g.y * cuda_sigmoid(g.y) * u.y);
        }
        return;
    }
    CU_FOR(i, m)
    {
        float g = ld_f(gate[i]);
        mm[i] = __float2bfloat16_rn(g * cuda_sigmoid(g) * ld_f(up[i]));
    }
}

template <typename T> static void swiglu_to16(__nv_bfloat16 *mm, const T *gate, const T *up, size_t m)
{
    size_t a = 2 * sizeof(T);
    int vec = m % 2 == 0 && (uintptr_t)gate % a == 0 && (uintptr_t)up % a == 0 && (uintptr_t)mm % 4 == 0;
    k_swiglu_to16<<<cuda_blocks(vec ? m / 2 : m), CU_THREADS, 0, cuda_stream>>>(mm, gate, up, m, vec);
    CU_LAUNCHED();
}

/* its backward into bf16 dgate and dup from fp32 dmm, again the fp32 op's
 * expressions: dgate = dmm·up·s·(1 + g·(1 − s)), dup = dmm·g·s; two
 * elements a thread where vec (as k_swiglu_to16: a pass at 0.65 of the
 * memory's rate one at a time) */
__device__ static inline float swiglu_dgate(float d, float g, float u)
{
    float s = cuda_sigmoid(g);
    return d * u * s * (1.0f + g * (1.0f - s));
}
__device__ static inline float swiglu_dup(float d, float g) { return d * g * cuda_sigmoid(g); }

template <typename T>
__global__ void k_swiglu_bwd_to16(__nv_bfloat16 *dgate, __nv_bfloat16 *dup, const float *dmm, const T *gate, const T *up,
                                  size_t m, int vec)
{
    if (vec) {
        __nv_bfloat162 *dg2 = reinterpret_cast<__nv_bfloat162 *>(dgate), *du2 = reinterpret_cast<__nv_bfloat162 *>(dup);
        CU_FOR(i, m / 2)
        {
            float2 g = ld2_f(gate, i), u = ld2_f(up, i), d = ld2_f(dmm, i);
            dg2[i] = __floats2bfloat162_rn(swiglu_dgate(d.x, g.x, u.x), swiglu_dgate(d.y, g.y, u.y));
            du2[i] = __floats2bfloat162_rn(swiglu_dup(d.x, g.x), swiglu_dup(d.y, g.y));
        }
        return;
    }
    CU_FOR(i, m)
    {
        float g = ld_f(gate[i]), d = dmm[i];
        dgate[i] = __float2bfloat16_rn(swiglu_dgate(d, g, ld_f(up[i])));
        dup[i] = __float2bfloat16_rn(swiglu_dup(d, g));
    }
}

template <typename T>
static void swiglu_bwd_to16(__nv_bfloat16 *dgate, __nv_bfloat16 *dup, const float *dmm, const T *gate, const T *up,
                            size_t m)
{
    size_t a = 2 * sizeof(T);
    int vec = m % 2 == 0 && (uintptr_t)gate % a == 0 && (uintptr_t)up % a == 0 && (uintptr_t)dmm % 8 == 0 &&
              (uintptr_t)dgate % 4 == 0 && (uintptr_t)dup % 4 == 0;
    k_swiglu_bwd_to16<<<cuda_blocks(vec ? m / 2 : m), CU_THREADS, 0, cuda_stream>>>(dgate, dup, dmm, gate, up, m, vec);
    CU_LAUNCHED();
}

/* How the MLP runs with bf16 products (not fast16bf mode, nor BAGEL_MLP=ops,
 * for measurement; else the ops in turn), per call's n rows, in bf16
 * elements where not said:
 *   MLP_TRAIN: gate and up in fp32 as the products give them, mm: mm16
 *     [n, i] then in16 [n, h] (the input as the products saw it). The same
 *     values as the ops in turn, without the passes that rounded mm, the
 *     input, dgate and dup for the next products.
 *   MLP_LEAN, the three weights held (inference: no backward changes them):
 *     gate: gate16 then up16 [n, i], up: in16, mm: mm16; gate and up are
 *     rounded to bf16 as they leave their products.
 * The backward: dmm in fp32, dgate: dgate16 then dup16. */
enum { MLP_OPS, MLP_TRAIN, MLP_LEAN };

/* the mode, and the three weights' copies (held[0..2]: gate, up, down):
 * for MLP_LEAN the held ones, for MLP_TRAIN the tracked ones where the
 * block is tracked (NULL otherwise) */
static int mlp_mode(const float *gate_w, const float *up_w, const float *down_w, int h, int i,
                    const __nv_bfloat16 *held[3])
{
    static int ops = -1;
    if (ops < 0) {
        const char *e = getenv("BAGEL_MLP");
        ops = e && !strcmp(e, "ops");
    }
    held[0] = held[1] = held[2] = NULL;
    if (!cuda_bf16 || gemm_fast16bf() || ops || i <= 0 || h > i)
        return MLP_OPS;
    const __nv_bfloat16 *g = held_bf16(gate_w, i, h), *u = g ? held_bf16(up_w, i, h) : NULL;
    const __nv_bfloat16 *d = u ? held_bf16(down_w, h, i) : NULL;
    if (!d) { /* training: the tracked copies where there are (weight16 rounds the others) */
        held[0] = (const __nv_bfloat16 *)cuda_tracked_bf16(gate_w, (size_t)i * h);
        held[1] = (const __nv_bfloat16 *)cuda_tracked_bf16(up_w, (size_t)i * h);
        held[2] = (const __nv_bfloat16 *)cuda_tracked_bf16(down_w, (size_t)h * i);
        return MLP_TRAIN;
    }
    held[0] = g, held[1] = u, held[2] = d;
    return MLP_LEAN;
}

void cuda_mlp_fwd(float *out, float *gate, float *up, float *mm, const float *in, const float *gate_w,
                  const float *up_w, const float *down_w, int n, int h, int i)
{
    if (n <= 0 || h <= 0)
        return;
    const __nv_bfloat16 *held[3];
    int mode = mlp_mode(gate_w, up_w, down_w, h, i, held);
    if (mode == MLP_OPS) {
        op_mlp_fwd_by_ops(&op_cuda, out, gate, up, mm, in, gate_w, up_w, down_w, n, h, i);
        return;
    }
    size_t ni = (size_t)n * i;
    __nv_bfloat16 *m16 = (__nv_bfloat16 *)mm;
    __nv_bfloat16 *x16 = mode == MLP_LEAN ? (__nv_bfloat16 *)up : m16 + ni;
    to_bf16_into(x16, in, n, h, h);
    if (mode == MLP_LEAN) {
        __nv_bfloat16 *g16 = (__nv_bfloat16 *)gate, *u16 = g16 + ni;
        gemm16_to16('n', 't', n, i, h, x16, h, weight16(held[0], gate_w, i, h), h, g16, i);
        gemm16_to16('n', 't', n, i, h, x16, h, weight16(held[1], up_w, i, h), h, u16, i);
        swiglu_to16(m16, (const __nv_bfloat16 *)g16, (const __nv_bfloat16 *)u16, ni);
    } else {
        gemm16('n', 't', n, i, h, 1.0f, x16, h, weight16(held[0], gate_w, i, h), h, 0.0f, gate, i);
        gemm16('n', 't', n, i, h, 1.0f, x16, h, weight16(held[1], up_w, i, h), h, 0.0f, up, i);
        swiglu_to16(m16, (const float *)gate, (const float *)up, ni);
    }
    gemm16('n', 't', n, h, i, 1.0f, m16, i, weight16(held[2], down_w, h, i), i, 0.0f, out, h);
}

void cuda_mlp_bwd(float *din, float *dgate_w, float *dup_w, float *ddown_w, const float *dout, const float *in,
                  const float *gate_w, const float *up_w, const float *down_w, const float *gate, const float *up,
                  const float *mm, float *dgate, float *dup, float *dmm, int n, int h, int i)
{
    if (n <= 0 || h <= 0)
        return;
    const __nv_bfloat16 *held[3];
    int mode = mlp_mode(gate_w, up_w, down_w, h, i, held);
    if (mode == MLP_OPS) {
        op_mlp_bwd_by_ops(&op_cuda, din, dgate_w, dup_w, ddown_w, dout, in, gate_w, up_w, down_w, gate, up, mm, dgate,
                          dup, dmm, n, h, i);
        return;
    }
    size_t ni = (size_t)n * i;
    const __nv_bfloat16 *m16 = (const __nv_bfloat16 *)mm;
    const __nv_bfloat16 *x16 = mode == MLP_LEAN ? (const __nv_bfloat16 *)up : m16 + ni;
    __nv_bfloat16 *dg16 = (__nv_bfloat16 *)dgate, *du16 = dg16 + ni;
    __nv_bfloat16 *d16 = to_bf16(CUDA_SCRATCH_GEMM_A, dout, n, h, h);
    /* dmm = dout·down_w, d(down_w) += doutᵀ·mm */
    gemm16('n', 'n', n, i, h, 1.0f, d16, h, weight16(held[2], down_w, h, i), i, 0.0f, dmm, i);
    if (ddown_w)
        gemm16('t', 'n', h, i, n, 1.0f, d16, h, m16, i, cuda_gw_beta(), ddown_w, i);
    if (mode == MLP_LEAN) {
        const __nv_bfloat16 *g16 = (const __nv_bfloat16 *)gate;
        swiglu_bwd_to16(dg16, du16, dmm, g16, g16 + ni, ni);
    } else {
        swiglu_bwd_to16(dg16, du16, dmm, gate, up, ni);
    }
    /* din = dgate·gate_w + dup·up_w; the weights' gradients from the input
     * the forward kept */
    gemm16('n', 'n', n, h, i, 1.0f, dg16, i, weight16(held[0], gate_w, i, h), h, 0.0f, din, h);
    gemm16('n', 'n', n, h, i, 1.0f, du16, i, weight16(held[1], up_w, i, h), h, 1.0f, din, h);
    if (dgate_w)
        gemm16('t', 'n', i, h, n, 1.0f, dg16, i, x16, h, cuda_gw_beta(), dgate_w, h);
    if (dup_w)
        gemm16('t', 'n', i, h, n, 1.0f, du16, i, x16, h, cuda_gw_beta(), dup_w, h);
    (void)in;
}
