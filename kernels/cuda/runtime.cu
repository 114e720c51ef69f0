/* runtime.cu — the CUDA environment probe (see runtime.h for the rules).
 *
 * Not a device manager: it reads versions and properties and makes the probed
 * device current, nothing more. */
#include "runtime.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <nccl.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void set_err(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(char *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, CUDA_ENV_ERR_LEN, fmt, ap);
    va_end(ap);
}

/* Each check returns -1 from the calling function with "file:line: call:
 * message" in err, prefixed by `pre` (a string literal, "" for none). A
 * failed runtime call also clears the runtime's last-error state, so one
 * refused probe does not poison the caller's next call. */
#define CUDA_TRY_AS(pre, call)                                                                                         \
    do {                                                                                                               \
        cudaError_t rc_ = (call);                                                                                      \
        if (rc_ != cudaSuccess) {                                                                                      \
            (void)cudaGetLastError();                                                                                  \
            set_err(err, pre "%s:%d: %s: %s", __FILE__, __LINE__, #call, cudaGetErrorString(rc_));                     \
            return -1;                                                                                                 \
        }                                                                                                              \
    } while (0)
#define CUDA_TRY(call) CUDA_TRY_AS("", call)

#define CUBLAS_TRY(call)                                                                                               \
    do {                                                                                                               \
        cublasStatus_t rc_ = (call);                                                                                   \
        if (rc_ != CUBLAS_STATUS_SUCCESS) {                                                                            \
            set_err(err, "%s:%d: %s: %s", __FILE__, __LINE__, #call, cublasGetStatusString(rc_));                      \
            return -1;                                                                                                 \
        }                                                                                                              \
    } while (0)

#define NCCL_TRY(call)                                                                                                 \
    do {                                                                                                               \
        ncclResult_t rc_ = (call);                                                                                     \
        if (rc_ != ncclSuccess) {                                                                                      \
            set_err(err, "%s:%d: %s: %s", __FILE__, __LINE__, #call, ncclGetErrorString(rc_));                         \
            return -1;                                                                                                 \
        }                                                                                                              \
    } while (0)

/* Split a 10000*major + 100*minor + patch version (cuBLAS, cuDNN 9, NCCL
 * from 2.9), or the older 1000*major + 100*minor + patch (cuDNN 8, NCCL up to
 * 2.8), which stays below 10000. */
static void ver3(int v, int *major, int *minor, int *patch)
{
    if (v >= 10000) {
        *major = v / 10000;
        *minor = v / 100 % 100;
    } else {
        *major = v / 1000;
        *minor = v / 100 % 10;
    }
    *patch = v % 100;
}

/* Append "; "-separated notes to e->warn, keeping it terminated. */
static void add_warn(cuda_env_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_warn(cuda_env_t *e, const char *fmt, ...)
{
    size_t used = strlen(e->warn);
    if (used + 3 >= sizeof e->warn)
        return;
    if (used) {
        memcpy(e->warn + used, "; ", 3);
        used += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->warn + used, sizeof e->warn - used, fmt, ap);
    va_end(ap);
}

/* Asked for its attributes to learn whether this build holds a kernel image
 * the device can run; never launched. */
__global__ void cuda_env_image_probe(void) {}

extern "C" int cuda_env_probe(cuda_env_t *e, int device, char *err)
{
    memset(e, 0, sizeof *e);
    e->device = device;
    e->cudnn_compiled = CUDNN_VERSION;
    e->nccl_compiled = NCCL_VERSION_CODE;

    /* Library versions first: they need no device, so a refused probe still
     * reports them. */
    CUDA_TRY(cudaRuntimeGetVersion(&e->runtime));
    CUDA_TRY(cudaDriverGetVersion(&e->driver));
    int bl_major = 0, bl_minor = 0, bl_patch = 0;
    CUBLAS_TRY(cublasGetProperty(MAJOR_VERSION, &bl_major));
    CUBLAS_TRY(cublasGetProperty(MINOR_VERSION, &bl_minor));
    CUBLAS_TRY(cublasGetProperty(PATCH_LEVEL, &bl_patch));
    e->cublas = bl_major * 10000 + bl_minor * 100 + bl_patch;
    e->cudnn_runtime = (int)cudnnGetVersion();
    NCCL_TRY(ncclGetVersion(&e->nccl_runtime));

    if (e->driver == 0) {
        set_err(err, "no CUDA device: no NVIDIA driver is loaded (cudaDriverGetVersion gives 0)");
        return -1;
    }
    if (e->driver < e->runtime) {
        set_err(err,
                "CUDA driver %d.%d is older than the CUDA runtime %d.%d: update the driver, or run "
                "with a libcudart of at most %d.%d in LD_LIBRARY_PATH",
                e->driver / 1000, e->driver % 1000 / 10, e->runtime / 1000, e->runtime % 1000 / 10, e->driver / 1000,
                e->driver % 1000 / 10);
        return -1;
    }

    CUDA_TRY_AS("no CUDA device: ", cudaGetDeviceCount(&e->device_count));
    if (e->device_count <= 0) {
        e->device_count = 0;
        set_err(err, "no CUDA device: cudaGetDeviceCount found none");
        return -1;
    }
    if (device < 0 || device >= e->device_count) {
        set_err(err, "bad device: %d, expected 0 to %d", device, e->device_count - 1);
        return -1;
    }

    cudaDeviceProp p;
    CUDA_TRY(cudaGetDeviceProperties(&p, device));
    snprintf(e->name, sizeof e->name, "%s", p.name);
    e->cc_major = p.major;
    e->cc_minor = p.minor;
    e->sm_count = p.multiProcessorCount;
    CUDA_TRY(cudaSetDevice(device));
    CUDA_TRY(cudaMemGetInfo(&e->mem_free, &e->mem_total));

    cudaFuncAttributes fa;
    cudaError_t rc = cudaFuncGetAttributes(&fa, cuda_env_image_probe);
    if (rc == cudaErrorNoKernelImageForDevice || rc == cudaErrorInvalidDeviceFunction) {
        (void)cudaGetLastError();
        set_err(err,
                "no kernel image for %s (compute capability %d.%d): rebuild with CUDA_ARCH for "
                "sm_%d%d (%s)",
                e->name, e->cc_major, e->cc_minor, e->cc_major, e->cc_minor, cudaGetErrorString(rc));
        return -1;
    }
    CUDA_TRY(rc);

    int rt[3], bt[3];
    ver3(e->cudnn_runtime, &rt[0], &rt[1], &rt[2]);
    ver3(e->cudnn_compiled, &bt[0], &bt[1], &bt[2]);
    if (rt[0] != bt[0]) {
        set_err(err,
                "cuDNN %d.%d.%d loaded, built against %d.%d.%d: the major versions must match; put a "
                "libcudnn.so.%d first in LD_LIBRARY_PATH",
                rt[0], rt[1], rt[2], bt[0], bt[1], bt[2], bt[0]);
        return -1;
    }
    if (e->cudnn_runtime < e->cudnn_compiled)
        add_warn(e, "cuDNN %d.%d.%d is older than the %d.%d.%d headers", rt[0], rt[1], rt[2], bt[0], bt[1], bt[2]);

    ver3(e->nccl_runtime, &rt[0], &rt[1], &rt[2]);
    ver3(e->nccl_compiled, &bt[0], &bt[1], &bt[2]);
    if (rt[0] != bt[0]) {
        set_err(err,
                "NCCL %d.%d.%d loaded, built against %d.%d.%d: the major versions must match; put a "
                "libnccl.so.%d first in LD_LIBRARY_PATH",
                rt[0], rt[1], rt[2], bt[0], bt[1], bt[2], bt[0]);
        return -1;
    }
    if (e->nccl_runtime < e->nccl_compiled)
        add_warn(e, "NCCL %d.%d.%d is older than the %d.%d.%d headers", rt[0], rt[1], rt[2], bt[0], bt[1], bt[2]);

    if (e->runtime < CUDART_VERSION)
        add_warn(e, "CUDA runtime %d.%d is older than the %d.%d headers", e->runtime / 1000, e->runtime % 1000 / 10,
                 CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
    return 0;
}

extern "C" int cuda_env_format(const cuda_env_t *e, char *buf, size_t n)
{
    if (!buf || n == 0)
        return -1;
    const double gib = 1024.0 * 1024.0 * 1024.0;
    int dn[3], dc[3], nr[3], nc[3], bl[3];
    ver3(e->cudnn_runtime, &dn[0], &dn[1], &dn[2]);
    ver3(e->cudnn_compiled, &dc[0], &dc[1], &dc[2]);
    ver3(e->nccl_runtime, &nr[0], &nr[1], &nr[2]);
    ver3(e->nccl_compiled, &nc[0], &nc[1], &nc[2]);
    ver3(e->cublas, &bl[0], &bl[1], &bl[2]);

    size_t used = 0;
    int w;
    if (e->device_count > 0 && e->name[0])
        w = snprintf(buf, n, "device=%d name=\"%s\" cc=%d.%d sms=%d mem=%.1fGiB free=%.1fGiB ", e->device, e->name,
                     e->cc_major, e->cc_minor, e->sm_count, (double)e->mem_total / gib, (double)e->mem_free / gib);
    else
        w = snprintf(buf, n, "device=none ");
    if (w < 0)
        return -1;
    used = (size_t)w;
    if (used >= n)
        return -1;

    w = snprintf(buf + used, n - used,
                 "driver=%d.%d runtime=%d.%d cublas=%d.%d.%d cudnn=%d.%d.%d(built %d.%d.%d) "
                 "nccl=%d.%d.%d(built %d.%d.%d)",
                 e->driver / 1000, e->driver % 1000 / 10, e->runtime / 1000, e->runtime % 1000 / 10, bl[0], bl[1],
                 bl[2], dn[0], dn[1], dn[2], dc[0], dc[1], dc[2], nr[0], nr[1], nr[2], nc[0], nc[1], nc[2]);
    if (w < 0)
        return -1;
    used += (size_t)w;
    if (used >= n)
        return -1;

    if (e->warn[0]) {
        w = snprintf(buf + used, n - used, " warn=\"%s\"", e->warn);
        if (w < 0)
            return -1;
        used += (size_t)w;
        if (used >= n)
            return -1;
    }
    return 0;
}
