/* test_runtime.c — the CUDA stack works end to end on device 0 (TAP).
 *
 * Probes the environment (kernels/cuda/runtime.h) and prints its line, then
 * runs one real operation per library: a cuBLAS SGEMM against a CPU loop, a
 * cuDNN handle, a single-rank NCCL all-reduce. Without a device it prints
 * "1..0 # SKIP no CUDA device" and exits 0; exit 1 when any test fails. */
#include "../../kernels/cuda/runtime.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <nccl.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERR_LEN 256

static void set_err(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(char *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, ERR_LEN, fmt, ap);
    va_end(ap);
}

/* Each check leaves "file:line: call: message" in err and jumps to the
 * function's `out:` label, where whatever was made is released. */
#define CUDA_CHECK(call)                                                                                               \
    do {                                                                                                               \
        cudaError_t rc_ = (call);                                                                                      \
        if (rc_ != cudaSuccess) {                                                                                      \
            set_err(err, "%s:%d: %s: %s", __FILE__, __LINE__, #call, cudaGetErrorString(rc_));                         \
            goto out;                                                                                                  \
        }                                                                                                              \
    } while (0)
#define CUBLAS_CHECK(call)                                                                                             \
    do {                                                                                                               \
        cublasStatus_t rc_ = (call);                                                                                   \
        if (rc_ != CUBLAS_STATUS_SUCCESS) {                                                                            \
            set_err(err, "%s:%d: %s: %s", __FILE__, __LINE__, #call, cublasGetStatusString(rc_));                      \
            goto out;                                                                                                  \
        }                                                                                                              \
    } while (0)
#define CUDNN_CHECK(call)                                                                                              \
    do {                                                                                                               \
        cudnnStatus_t rc_ = (call);                                                                                    \
        if (rc_ != CUDNN_STATUS_SUCCESS) {                                                                             \
            set_err(err, "%s:%d: %s: %s", __FILE__, __LINE__, #call, cudnnGetErrorString(rc_));                        \
            goto out;                                                                                                  \
        }                                                                                                              \
    } while (0)
#define NCCL_CHECK(call)                                                                                               \
    do {                                                                                                               \
        ncclResult_t rc_ = (call);                                                                                     \
        if (rc_ != ncclSuccess) {                                                                                      \
            set_err(err, "%s:%d: %s: %s", __FILE__, __LINE__, #call, ncclGetErrorString(rc_));                         \
            goto out;                                                                                                  \
        }                                                                                                              \
    } while (0)
#define FAIL(...)                                                                                                      \
    do {                                                                                                               \
        set_err(err, __VA_ARGS__);                                                                                     \
        goto out;                                                                                                      \
    } while (0)

/* Deterministic values in [-1, 1). */
static float next_uniform(unsigned long long *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(*s >> 40) / (double)(1ULL << 24) * 2.0 - 1.0);
}

/* C = A B for column-major (M, K) A and (K, N) B, as cuBLAS sees them;
 * compared with a double-precision CPU loop by relative Frobenius error. */
static int test_sgemm(char *desc, char *err)
{
    enum { M = 256, N = 256, K = 256 };
    const double tol = 1e-4;
    int ret = -1;
    float *a = malloc(sizeof(float) * M * K); // (M, K) f32, column-major
    float *b = malloc(sizeof(float) * K * N); // (K, N) f32, column-major
    float *c = malloc(sizeof(float) * M * N); // (M, N) f32, column-major
    float *da = NULL, *db = NULL, *dc = NULL;
    cublasHandle_t h = NULL;
    snprintf(desc, ERR_LEN, "cuBLAS SGEMM %dx%dx%d matches a CPU loop", M, N, K);
    if (!a || !b || !c)
        FAIL("out of memory");

    unsigned long long seed = 1234;
    for (int i = 0; i < M * K; i++)
        a[i] = next_uniform(&seed);
    for (int i = 0; i < K * N; i++)
        b[i] = next_uniform(&seed);

    CUDA_CHECK(cudaMalloc((void **)&da, sizeof(float) * M * K));
    CUDA_CHECK(cudaMalloc((void **)&db, sizeof(float) * K * N));
    CUDA_CHECK(cudaMalloc((void **)&dc, sizeof(float) * M * N));
    CUDA_CHECK(cudaMemcpy(da, a, sizeof(float) * M * K, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(db, b, sizeof(float) * K * N, cudaMemcpyHostToDevice));
    CUBLAS_CHECK(cublasCreate(&h));
    /* Plain fp32: TF32 tensor cores would miss the tolerance by design. */
    CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_PEDANTIC_MATH));
    const float alpha = 1.0f, beta = 0.0f;
    CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, M, N, K, &alpha, da, M, db, K, &beta, dc, M));
    CUDA_CHECK(cudaMemcpy(c, dc, sizeof(float) * M * N, cudaMemcpyDeviceToHost));

    double diff2 = 0, ref2 = 0;
    for (int j = 0; j < N; j++)
        for (int i = 0; i < M; i++) {
            double ref = 0;
            for (int k = 0; k < K; k++)
                ref += (double)a[i + k * M] * (double)b[k + j * K];
            double d = (double)c[i + j * M] - ref;
            diff2 += d * d;
            ref2 += ref * ref;
        }
    double rel = sqrt(diff2 / ref2);
    snprintf(desc, ERR_LEN, "cuBLAS SGEMM %dx%dx%d matches a CPU loop (rel err %.2e < %.0e)", M, N, K, rel, tol);
    if (!(rel < tol))
        FAIL("relative error %.3e, expected below %.0e", rel, tol);
    ret = 0;
out:
    if (h)
        cublasDestroy(h);
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
    free(a);
    free(b);
    free(c);
    return ret;
}

static int test_cudnn(char *desc, char *err)
{
    int ret = -1;
    cudnnHandle_t h = NULL;
    cudaStream_t s = NULL, got = NULL;
    snprintf(desc, ERR_LEN, "cuDNN handle create, set stream, destroy");
    CUDA_CHECK(cudaStreamCreate(&s));
    CUDNN_CHECK(cudnnCreate(&h));
    CUDNN_CHECK(cudnnSetStream(h, s));
    CUDNN_CHECK(cudnnGetStream(h, &got));
    if (got != s)
        FAIL("cudnnGetStream gave another stream than was set");
    CUDNN_CHECK(cudnnDestroy(h));
    h = NULL;
    ret = 0;
out:
    if (h)
        cudnnDestroy(h);
    if (s)
        cudaStreamDestroy(s);
    return ret;
}

/* One rank's all-reduce sum is its own input: proves NCCL's kernels run. */
static int test_nccl(char *desc, char *err)
{
    enum { COUNT = 4096 };
    int ret = -1, dev = 0, ranks = 0;
    ncclComm_t comm = NULL;
    cudaStream_t s = NULL;
    float *host = malloc(sizeof(float) * COUNT), *back = malloc(sizeof(float) * COUNT);
    float *send = NULL, *recv = NULL; // (COUNT) f32
    snprintf(desc, ERR_LEN, "NCCL single-rank init and all-reduce of %d floats", COUNT);
    if (!host || !back)
        FAIL("out of memory");
    for (int i = 0; i < COUNT; i++)
        host[i] = (float)i * 0.5f;

    CUDA_CHECK(cudaSetDevice(dev));
    CUDA_CHECK(cudaStreamCreate(&s));
    CUDA_CHECK(cudaMalloc((void **)&send, sizeof(float) * COUNT));
    CUDA_CHECK(cudaMalloc((void **)&recv, sizeof(float) * COUNT));
    CUDA_CHECK(cudaMemcpy(send, host, sizeof(float) * COUNT, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemset(recv, 0, sizeof(float) * COUNT));
    NCCL_CHECK(ncclCommInitAll(&comm, 1, &dev));
    NCCL_CHECK(ncclCommCount(comm, &ranks));
    if (ranks != 1)
        FAIL("ncclCommCount gave %d ranks, expected 1", ranks);
    NCCL_CHECK(ncclAllReduce(send, recv, COUNT, ncclFloat, ncclSum, comm, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
    CUDA_CHECK(cudaMemcpy(back, recv, sizeof(float) * COUNT, cudaMemcpyDeviceToHost));
    for (int i = 0; i < COUNT; i++)
        if (back[i] != host[i])
            FAIL("element %d is %g after the all-reduce, expected %g", i, back[i], host[i]);
    ret = 0;
out:
    if (comm)
        ncclCommDestroy(comm);
    cudaFree(send);
    cudaFree(recv);
    if (s)
        cudaStreamDestroy(s);
    free(host);
    free(back);
    return ret;
}

static int failed;

static void report(int n, int rc, const char *desc, const char *err)
{
    printf("%s %d - %s\n", rc == 0 ? "ok" : "not ok", n, desc);
    if (rc != 0) {
        printf("#   %s\n", err);
        failed++;
    }
}

int main(void)
{
    char err[ERR_LEN] = "", line[1024];
    cuda_env_t env;

    /* No driver, or a driver that sees no device: nothing here can run. A
     * driver that is too old is not a skip: the probe fails on it below. */
    int driver = 0, count = 0;
    cudaError_t crc = cudaDriverGetVersion(&driver);
    cudaError_t nrc = cudaGetDeviceCount(&count);
    if (crc != cudaSuccess || driver == 0 || nrc == cudaErrorNoDevice || (nrc == cudaSuccess && count == 0)) {
        (void)cudaGetLastError();
        printf("1..0 # SKIP no CUDA device\n");
        cuda_env_probe(&env, 0, err);
        cuda_env_format(&env, line, sizeof line);
        printf("# %s\n# %s\n", line, err);
        return fflush(stdout) == 0 ? 0 : 1;
    }

    enum { TESTS = 4 };
    printf("1..%d\n", TESTS);
    int rc = cuda_env_probe(&env, 0, err);
    cuda_env_format(&env, line, sizeof line);
    printf("# %s\n", line);
    report(1, rc, "cuda_env_probe accepts device 0", err);
    if (rc != 0) {
        for (int n = 2; n <= TESTS; n++)
            printf("ok %d - # SKIP the environment probe failed\n", n);
    } else {
        char desc[ERR_LEN];
        err[0] = '\0';
        rc = test_sgemm(desc, err);
        report(2, rc, desc, err);
        err[0] = '\0';
        rc = test_cudnn(desc, err);
        report(3, rc, desc, err);
        err[0] = '\0';
        rc = test_nccl(desc, err);
        report(4, rc, desc, err);
    }
    if (fflush(stdout) != 0)
        return 1;
    return failed ? 1 : 0;
}
