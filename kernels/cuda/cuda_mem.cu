/* cuda_mem.cu — the backend's state and memory ops: cuda_ops_init/shutdown
 * (device, stream, cuBLAS handle, scratch), the fatal-error path, alloc
 * (cudaMalloc, zeroed), free, zero, upload, download and sync.
 *
 * Every op is queued on cuda_stream; upload and download wait for it, so a
 * host buffer may be reused as soon as they return. */
#include "cuda_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

cudaStream_t cuda_stream;
cublasHandle_t cuda_blas;
int cuda_bf16;

/* bf16 products need cuBLAS's default math mode (pedantic mode keeps every
 * product in the precision of its operands) */
void cuda_ops_set_bf16(int on)
{
    cuda_bf16 = on != 0;
    if (cuda_blas)
        CUBLAS_CHECK(cublasSetMathMode(cuda_blas, cuda_bf16 ? CUBLAS_DEFAULT_MATH : CUBLAS_PEDANTIC_MATH));
}

int cuda_ops_bf16(void) { return cuda_bf16; }

/* grow-only scratch buffers, one per user that may hold one while another
 * is in use (CUDA_SCRATCH_* in cuda_internal.h) */
static void *slots[CUDA_SCRATCH_SLOTS];
static size_t slot_bytes[CUDA_SCRATCH_SLOTS];
static double *scratch_dbl;

void cuda_ops_die(const char *file, int line, const char *what, const char *msg)
{
    fprintf(stderr, "cuda_ops: %s:%d: %s: %s\n", file, line, what, msg);
    fflush(stderr);
    abort();
}

static int init_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int init_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    (void)cudaGetLastError();
    cuda_ops_shutdown();
    return -1;
}

#define INIT_TRY(call)                                                                                                 \
    do {                                                                                                               \
        cudaError_t e_ = (call);                                                                                       \
        if (e_ != cudaSuccess)                                                                                         \
            return init_fail(err, errlen, "%s:%d: %s: %s", __FILE__, __LINE__, #call, cudaGetErrorString(e_));         \
    } while (0)
#define INIT_TRY_BLAS(call)                                                                                            \
    do {                                                                                                               \
        cublasStatus_t e_ = (call);                                                                                    \
        if (e_ != CUBLAS_STATUS_SUCCESS)                                                                               \
            return init_fail(err, errlen, "%s:%d: %s: %s", __FILE__, __LINE__, #call, cublasGetStatusString(e_));      \
    } while (0)

int cuda_ops_init(int device, char *err, size_t errlen)
{
    cuda_ops_shutdown(); /* a second init starts over instead of leaking */
    int count = 0;
    cudaError_t rc = cudaGetDeviceCount(&count);
    if (rc != cudaSuccess || count == 0)
        return init_fail(err, errlen, "no CUDA device: %s", rc != cudaSuccess ? cudaGetErrorString(rc) : "none found");
    if (device < 0 || device >= count)
        return init_fail(err, errlen, "bad device: %d, expected 0..%d", device, count - 1);
    INIT_TRY(cudaSetDevice(device));
    INIT_TRY(cudaStreamCreate(&cuda_stream));
    INIT_TRY_BLAS(cublasCreate(&cuda_blas));
    INIT_TRY_BLAS(cublasSetStream(cuda_blas, cuda_stream));
    /* plain fp32 products: TF32 tensor cores would round the inputs to 10
     * mantissa bits and miss the CPU backend by ~1e-3 */
    INIT_TRY_BLAS(cublasSetMathMode(cuda_blas, cuda_bf16 ? CUBLAS_DEFAULT_MATH : CUBLAS_PEDANTIC_MATH));
    INIT_TRY(cudaMalloc((void **)&scratch_dbl, sizeof(double)));
    (void)cudaGetLastError(); /* start the ops' launch checks clean */
    return 0;
}

void cuda_ops_shutdown(void)
{
    if (cuda_stream)
        (void)cudaStreamSynchronize(cuda_stream);
    cuda_conv_shutdown();
    cuda_linear_shutdown();
    cuda_hold_weights(NULL, 0);
    if (cuda_blas)
        cublasDestroy(cuda_blas);
    cuda_blas = NULL;
    /* guarded: a runtime call before init would make device 0 current */
    for (int i = 0; i < CUDA_SCRATCH_SLOTS; i++) {
        if (slots[i])
            cudaFree(slots[i]);
        slots[i] = NULL;
        slot_bytes[i] = 0;
    }
    if (scratch_dbl)
        cudaFree(scratch_dbl);
    scratch_dbl = NULL;
    if (cuda_stream)
        cudaStreamDestroy(cuda_stream);
    cuda_stream = NULL;
}

void *cuda_scratch_slot(int slot, size_t bytes)
{
    if (bytes > slot_bytes[slot]) {
        CU_CHECK(cudaStreamSynchronize(cuda_stream));
        CU_CHECK(cudaFree(slots[slot]));
        slots[slot] = NULL;
        slot_bytes[slot] = 0;
        CU_CHECK(cudaMalloc(&slots[slot], bytes));
        slot_bytes[slot] = bytes;
    }
    return slots[slot];
}

float *cuda_scratch(size_t floats) { return (float *)cuda_scratch_slot(CUDA_SCRATCH_OPS, floats * sizeof(float)); }

double *cuda_scratch_double(void) { return scratch_dbl; }

/* 256-byte granules; a zero-byte request still gets a distinct pointer so
 * that NULL always means failure, as op_cpu */
void *cuda_alloc(size_t bytes)
{
    size_t size = (bytes + 255) & ~(size_t)255;
    if (size < bytes)
        return NULL;
    if (size == 0)
        size = 256;
    void *p = NULL;
    if (cudaMalloc(&p, size) != cudaSuccess) {
        (void)cudaGetLastError(); /* out of memory is the caller's to report */
        return NULL;
    }
    CU_CHECK(cudaMemsetAsync(p, 0, size, cuda_stream));
    CU_CHECK(cudaStreamSynchronize(cuda_stream));
    return p;
}

/* cudaFree waits for the device, so no queued op still uses p */
void cuda_free(void *p)
{
    if (p)
        CU_CHECK(cudaFree(p));
}

void cuda_zero(void *p, size_t bytes)
{
    if (bytes)
        CU_CHECK(cudaMemsetAsync(p, 0, bytes, cuda_stream));
}

void cuda_upload(void *dst, const void *host_src, size_t bytes)
{
    if (!bytes)
        return;
    CU_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, cuda_stream));
    CU_CHECK(cudaStreamSynchronize(cuda_stream));
}

void cuda_download(void *host_dst, const void *src, size_t bytes)
{
    if (!bytes)
        return;
    CU_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, cuda_stream));
    CU_CHECK(cudaStreamSynchronize(cuda_stream));
}

void cuda_sync(void) { CU_CHECK(cudaStreamSynchronize(cuda_stream)); }
