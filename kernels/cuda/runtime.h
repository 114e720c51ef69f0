/* runtime.h — what CUDA stack a GPU executable runs on, checked at start-up
 * (architecture.md §9).
 *
 * The executables are built on a machine with one set of headers (CUDA 13,
 * cuDNN 9.19, NCCL 2.28.9) and run on a GPU machine that brings its own
 * shared libraries (cuDNN 9.14, NCCL 2.28, its own driver). Every GPU main
 * calls cuda_env_probe() once, logs cuda_env_format()'s line, and stops with
 * the probe's message when it fails.
 *
 * Versions are integers as their libraries spell them:
 *   driver, runtime   1000*major + 10*minor          (13000 = 13.0)
 *   cublas            10000*major + 100*minor + patch (130100 = 13.1.0)
 *   cudnn_*           10000*major + 100*minor + patch (91900 = 9.19.0)
 *   nccl_*            NCCL_VERSION_CODE: 10000*major + 100*minor + patch
 *                     from 2.9 on (22809 = 2.28.9), 1000*major + 100*minor
 *                     + patch before
 * *_compiled are the headers' versions, *_runtime the loaded libraries'.
 *
 * cuda_env_probe() fails (-1, one line in err) on, and only on:
 *   - no CUDA device, or `device` out of range: err starts "no CUDA device: "
 *     or "bad device: "; e->device_count is then what was found (0 when
 *     cudaGetDeviceCount itself failed, as it does without a driver);
 *   - a driver older than the CUDA runtime (driver < runtime);
 *   - a device this build has no kernel image for (built for sm_90a, run on a
 *     card of another compute capability): every kernel launch would fail;
 *   - a cuDNN runtime of another major version than the headers;
 *   - an NCCL runtime of another major version than the headers;
 *   - any CUDA, cuBLAS, cuDNN or NCCL call failing (err names file:line).
 * Older-but-same-major libraries (cuDNN 9.14 under 9.19 headers, NCCL 2.28.x
 * under 2.28.9) are recorded, not refused: e->warn says so, and callers log
 * it. Fields are filled as far as the probe got, so a failed probe can still
 * be formatted. The probe makes `device` current (cudaSetDevice) and so
 * creates its primary context: mem_free is read from it.
 *
 * Never prints, never exits. err is a caller's buffer of 256 bytes. */
#ifndef BAGEL_CUDA_RUNTIME_H
#define BAGEL_CUDA_RUNTIME_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CUDA_ENV_ERR_LEN 256

typedef struct {
    int driver, runtime;               // CUDA versions, 1000*major + 10*minor
    int cublas;                        // runtime cuBLAS, 10000*major + 100*minor + patch
    int cudnn_runtime, cudnn_compiled; // 10000*major + 100*minor + patch
    int nccl_runtime, nccl_compiled;   // NCCL_VERSION_CODE spelling
    int device_count;
    int device;                 // the probed device
    char name[256];             // e.g. "NVIDIA H100 80GB HBM3"
    int cc_major, cc_minor;     // compute capability
    size_t mem_total, mem_free; // bytes, from cudaMemGetInfo
    int sm_count;               // streaming multiprocessors
    char warn[256];             // recorded, not fatal mismatches; "" when none
} cuda_env_t;

/* Fill *e for `device` and refuse a mismatch that matters (list above).
 * 0 on success, -1 with err filled. */
int cuda_env_probe(cuda_env_t *e, int device, char *err);

/* One key=value line, no newline:
 *   device=0 name="NVIDIA H100 80GB HBM3" cc=9.0 sms=132 mem=79.1GiB
 *   free=78.6GiB driver=13.0 runtime=13.0 cublas=13.1.0 cudnn=9.14.0(built
 *   9.19.0) nccl=2.28.3(built 2.28.9)
 * with " warn=\"...\"" appended when e->warn is set, and device=none when
 * no device was found. 0 on success, -1 when buf (n bytes) was too small:
 * the line is then cut short, still terminated. */
int cuda_env_format(const cuda_env_t *e, char *buf, size_t n);

#ifdef __cplusplus
}
#endif

#endif
