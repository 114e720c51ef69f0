/* safetensors.h — the HuggingFace safetensors format: a validating reader
 * (mmap, zero copy), a reader for sharded checkpoints
 * (model.safetensors.index.json), and a writer that produces the bytes the
 * reference implementation writes.
 *
 * File layout: 8 bytes little-endian header length N; N bytes of JSON
 *   {"__metadata__": {"k": "v", ...},
 *    "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
 * then the data region; offsets are relative to its start.
 *
 * Files are untrusted: st_open checks everything before anything is used
 * (see docs/checkpoints.md for the list and the error messages), so a tensor
 * returned by st_get/st_find always has nbytes == numel * dtype size bytes of
 * data inside the file. Not defended against: the file being truncated by
 * another process while it is mapped (SIGBUS).
 *
 * Errors are one line naming the file and, where there is one, the tensor:
 *   ckpt/model.safetensors: tensor "x.weight": data_offsets [0, 12] hold 12
 *   bytes, shape [2,3] F32 needs 24 */
#ifndef BAGEL_SAFETENSORS_H
#define BAGEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS   8
#define ST_MAX_HEADER ((uint64_t)100 << 20) /* bytes of JSON header, as HF's reader */

/* In the order of the reference implementation's Dtype enum: the writer
 * stores tensors by this order, descending, then by name. */
typedef enum {
    ST_BOOL,
    ST_U8,
    ST_I8,
    ST_F8_E5M2,
    ST_F8_E4M3,
    ST_F8_E8M0,
    ST_I16,
    ST_U16,
    ST_F16,
    ST_BF16,
    ST_I32,
    ST_U32,
    ST_F32,
    ST_C64,
    ST_F64,
    ST_I64,
    ST_U64,
    ST_NDTYPES
} st_dtype_t;

typedef struct st_tensor {
    const char *name;           /* valid UTF-8, NUL-terminated */
    const char *file;           /* the path (or label) of the file holding it */
    int dtype;                  /* st_dtype_t */
    int ndim;                   /* 0 (a scalar) .. ST_MAX_DIMS */
    int64_t shape[ST_MAX_DIMS]; /* each >= 0 */
    int64_t numel;              /* product of shape (1 for a scalar) */
    size_t nbytes;              /* numel * st_dtype_size(dtype) */
    size_t offset;              /* begin, in the data region */
    const void *data;           /* nbytes bytes, little-endian; may be unaligned */
} st_tensor_t;

typedef struct st_file st_file_t;
typedef struct st_set st_set_t;
typedef struct st_writer st_writer_t;

/* "F32" for ST_F32 ...; NULL for an unknown value. */
const char *st_dtype_name(int dtype);
/* ST_* for "F32" ...; -1 for an unknown name. */
int st_dtype_from_name(const char *name);
/* bytes per element; 0 for an unknown dtype */
size_t st_dtype_size(int dtype);

/* ---- reading one file */

/* Maps `path` read-only and validates it. NULL with a one-line err. */
st_file_t *st_open(const char *path, char *err, size_t errlen);
/* The same on a buffer the caller keeps alive and unchanged until st_close;
 * `label` names it in errors and in st_tensor_t.file (copied). */
st_file_t *st_open_mem(const void *buf, size_t len, const char *label, char *err, size_t errlen);
/* Unmaps, frees and sets *f to NULL; NULL or *f == NULL is fine. */
void st_close(st_file_t **f);

const char *st_path(const st_file_t *f);
/* tensors, in the order of the header */
int st_count(const st_file_t *f);
/* the i-th tensor, 0 <= i < st_count; NULL outside */
const st_tensor_t *st_get(const st_file_t *f, int i);
/* by name (hashed); NULL when absent */
const st_tensor_t *st_find(const st_file_t *f, const char *name);
/* __metadata__ entries, in the order of the header */
int st_metadata_count(const st_file_t *f);
const char *st_metadata_key(const st_file_t *f, int i);
const char *st_metadata_value(const st_file_t *f, int i);
/* the value for key; NULL when absent */
const char *st_metadata_get(const st_file_t *f, const char *key);

/* ---- reading tensors */

/* Converts a tensor of F32, BF16, F16 or F64 into dst, which holds n floats;
 * n must be the tensor's numel. 0, or -1 with err (wrong n, other dtype). */
int st_read_f32(const st_tensor_t *t, float *dst, size_t n, char *err, size_t errlen);

/* Checks a tensor against an expected dtype (-1: any) and shape: 0, or -1
 * with err like `f: tensor "x": shape [2,3] F32, expected [3,2] BF16`. */
int st_expect(const st_tensor_t *t, int dtype, int ndim, const int64_t *shape, char *err, size_t errlen);

/* ---- reading a checkpoint that may be sharded */

/* Opens `path`: one .safetensors file; a model.safetensors.index.json (its
 * "weight_map" maps each tensor to a file beside it; each file is opened
 * once); or a directory holding model.safetensors.index.json or else
 * model.safetensors. Every tensor of every shard must be listed in the
 * weight_map under that shard, and every entry must exist. NULL with err. */
st_set_t *st_set_open(const char *path, char *err, size_t errlen);
void st_set_close(st_set_t **s);
/* tensors of all files, file by file in the header's order */
int st_set_count(const st_set_t *s);
const st_tensor_t *st_set_get(const st_set_t *s, int i);
const st_tensor_t *st_set_find(const st_set_t *s, const char *name);
int st_set_nfiles(const st_set_t *s);
const st_file_t *st_set_file(const st_set_t *s, int i);

/* ---- writing */

/* The header is written as the reference implementation writes it: compact
 * JSON, __metadata__ first (entries in the order they were set), tensors
 * ordered by dtype (st_dtype_t, descending: 8-byte types first, so every
 * tensor stays aligned) then by name, the data in that same order, the header
 * padded with spaces to a multiple of 8 bytes. */
st_writer_t *st_writer_new(void);
void st_writer_destroy(st_writer_t **w);
/* Adds a tensor whose data is already in `dtype`'s little-endian layout.
 * Not copied: data must stay alive until st_writer_write. The name is
 * copied; it must be valid UTF-8, non-empty, and new. 0 or -1 with err. */
int st_writer_add(st_writer_t *w, const char *name, int dtype, int ndim, const int64_t *shape, const void *data,
                  char *err, size_t errlen);
/* Adds f32 data to be stored as dtype ST_F32, ST_BF16 or ST_F16 (converted
 * while writing, rounding to nearest even). Not copied either. */
int st_writer_add_f32(st_writer_t *w, const char *name, int dtype, int ndim, const int64_t *shape, const float *data,
                      char *err, size_t errlen);
/* Sets a __metadata__ entry (copied; a key set twice keeps its place and
 * takes the new value). 0 or -1 with err (invalid UTF-8). */
int st_writer_set_metadata(st_writer_t *w, const char *key, const char *value, char *err, size_t errlen);
/* Writes path.tmp, fsyncs it, renames it to path and fsyncs the directory.
 * 0, or -1 with err (path.tmp removed). The writer can be written again. */
int st_writer_write(st_writer_t *w, const char *path, char *err, size_t errlen);

#endif
