/* ops_cuda.h — the CUDA backend of the op table (kernels/ops.h): op_cuda,
 * fp32 storage and fp32 math, the same semantics as op_cpu (kernels/cpu/),
 * which is its reference and its test oracle (tests/gpu/test_ops_cuda.c).
 *
 * Pointers given to op_cuda are device memory from op_cuda.alloc; index
 * arrays (int32) and split modes (uint8) too. The op_attn_t struct itself is
 * host memory, its arrays are device memory. Every op is queued on one
 * stream that cuda_ops_init creates; upload, download and sumsq wait for it.
 *
 * Errors: the ops have no error return and a failed launch or library call
 * mid-step leaves the device buffers in an unknown state, so a failure prints
 * one line "cuda_ops: file:line: call: message" to stderr and aborts. The
 * training process is restarted from its last checkpoint by its supervisor;
 * going on with corrupt gradients would be worse. */
#ifndef BAGEL_OPS_CUDA_H
#define BAGEL_OPS_CUDA_H

#include <stddef.h>

#include "../ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Make `device` current, create the stream, the cuBLAS handle (fp32 math,
 * no TF32) and the scratch the ops keep. 0 on success, -1 with one line in
 * err (errlen bytes) when there is no such device or a call fails; it never
 * aborts. Must succeed before any op_cuda entry is used. */
int cuda_ops_init(int device, char *err, size_t errlen);

/* The precision of the matrix math, for ops queued from now on: 0 (the
 * default) fp32 products without TF32, the oracle-exact mode the fp32 tests
 * use; 1 bf16 operands on the tensor cores with fp32 accumulation, for the
 * linear layers, every other product (convolutions, the classifier) and
 * attention (kernels/cuda/cuda_flash.cu). Storage, reductions, the losses
 * and the optimizer stay fp32 either way. */
void cuda_ops_set_bf16(int on);
int cuda_ops_bf16(void);

/* bf16 linear layers add their bias in cuBLASLt's epilogue (1, the default;
 * BAGEL_GEMM_LT=0 starts with 0) or write it first for the product to add
 * onto (0): the same values but for the order of the sums, for tests and
 * measurement. */
void cuda_gemm_lt_set(int on);

/* Release what cuda_ops_init made; safe to call twice or without init. */
void cuda_ops_shutdown(void);

extern const op_table_t op_cuda;

#ifdef __cplusplus
}
#endif

#endif
