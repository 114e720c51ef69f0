/* cuda_mem.cu — the backend's state and memory ops: cuda_ops_init/shutdown
 * (device, stream, cuBLAS handle, scratch), the fatal-error path, alloc
 * (cudaMalloc, zeroed), free, zero, upload, download and sync.
 *
 * Every op is queued on cuda_stream; a host buffer may be reused as soon as
 * upload or download returns. Download waits for the stream. Upload copies
 * the bytes into a pinned staging ring and queues the copy from there, so
 * it does not wait: a step's uploads (tokens, positions, masks, pixels,
 * latents, loss weights: 23 of them, 1.7 ms a step when each waited) queue
 * behind each other and the ops. */
#include "cuda_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cudaStream_t cuda_stream;
cublasHandle_t cuda_blas;
int cuda_bf16;
int cuda_grad_write_on;
void cuda_grad_write(int on) { cuda_grad_write_on = on != 0; }

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

/* the upload ring: pinned host memory, filled in order; `ring_done` marks
 * the last copy queued from it, which the ring waits for before it starts
 * over at the front (every earlier copy then has finished too) */
#define RING_MIN (8u << 20)
#define RING_MAX (256u << 20) /* larger uploads (weights) go straight, waiting */
static char *ring;
static size_t ring_cap, ring_at;
static cudaEvent_t ring_done;

static void ring_free(void)
{
    if (ring_done)
        (void)cudaEventDestroy(ring_done);
    if (ring)
        (void)cudaFreeHost(ring);
    ring = NULL, ring_done = NULL, ring_cap = ring_at = 0;
}

void cuda_ops_shutdown(void)
{
    if (cuda_stream)
        (void)cudaStreamSynchronize(cuda_stream);
    ring_free();
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
    size_t need = (bytes + 255) & ~(size_t)255;
    if (need > RING_MAX) {
        CU_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, cuda_stream));
        CU_CHECK(cudaStreamSynchronize(cuda_stream));
        return;
    }
    if (ring_at + need > ring_cap) {
        if (ring_done) /* every copy from the ring has landed: start at its front */
            CU_CHECK(cudaEventSynchronize(ring_done));
        ring_at = 0;
        if (need > ring_cap) {
            size_t cap = ring_cap ? 2 * ring_cap : RING_MIN;
            while (cap < need)
                cap *= 2;
            ring_free();
            if (cudaHostAlloc((void **)&ring, cap, cudaHostAllocDefault) != cudaSuccess ||
                cudaEventCreateWithFlags(&ring_done, cudaEventDisableTiming) != cudaSuccess) {
                (void)cudaGetLastError(); /* no pinned memory: copy and wait, as before */
                ring_free();
                CU_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, cuda_stream));
                CU_CHECK(cudaStreamSynchronize(cuda_stream));
                return;
            }
            ring_cap = cap;
        }
    }
    memcpy(ring + ring_at, host_src, bytes);
    CU_CHECK(cudaMemcpyAsync(dst, ring + ring_at, bytes, cudaMemcpyHostToDevice, cuda_stream));
    CU_CHECK(cudaEventRecord(ring_done, cuda_stream));
    ring_at += need;
}

void cuda_download(void *host_dst, const void *src, size_t bytes)
{
    if (!bytes)
        return;
    CU_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, cuda_stream));
    CU_CHECK(cudaStreamSynchronize(cuda_stream));
}

void cuda_sync(void) { CU_CHECK(cudaStreamSynchronize(cuda_stream)); }
