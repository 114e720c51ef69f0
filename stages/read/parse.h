/* parse.h — one JSONL line of training data -> one sample record, or the
 * one-line reason it cannot be one (docs/formats.md).
 *
 * Seven input formats, detected per line or forced: conversations, sequence,
 * t2i, i2t, edit, interleaved, llava. Every format ends as the same segment
 * list (architecture.md §3) with the flags of BAGEL's official layouts
 * (bagel-reference.md §3.4, §3.10):
 *
 *   text   {"kind":"text","role","text","loss","cfg"}
 *   image  {"kind":"image","role","path","und","gen","loss","cond","cfg"}
 *
 *   loss  text: next-token CE; image: a noisy VAE target with MSE (needs gen)
 *   und   the image also enters the ViT (a vit_image item, clean)
 *   cond  the image also enters the VAE clean, t=0 (a clean vae_image item)
 *   gen   the image goes through the VAE at all: always loss || cond
 *   cfg   the packer may drop it for classifier-free guidance (enable_cfg);
 *         for an image it concerns the clean copies only
 *
 * The packer lays an image out as _add_image does: noisy VAE (loss), clean
 * VAE (cond), ViT (und), in that order.
 *
 * This file knows nothing of files, epochs or shuffling (main.c, lines.c);
 * it never prints and never exits. */
#ifndef BAGEL_READ_PARSE_H
#define BAGEL_READ_PARSE_H

#include "../../ipc/rec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    READ_AUTO,
    READ_CONVERSATIONS,
    READ_SEQUENCE,
    READ_T2I,
    READ_I2T,
    READ_EDIT,
    READ_INTERLEAVED,
    READ_LLAVA,
    READ_FORMAT_COUNT
} read_format_t;

/* Why a line became a reject; main.c counts them per reason. */
typedef enum {
    READ_OK,
    READ_BAD_JSON,   // not JSON, or not one object
    READ_BAD_UTF8,   // bytes that are not UTF-8
    READ_BAD_FORMAT, // no format's keys, or several formats' keys
    READ_BAD_FIELD,  // a field missing, of the wrong type, or a value out of its set
    READ_EMPTY,      // empty conversations, sequence, interleaved or editing steps
    READ_MARKERS,    // LLaVA: <image> markers and images differ in number
    READ_NO_LOSS,    // no segment has a loss: nothing to train on
    READ_BAD_PATH,   // an image path that is empty, absolute under --root, or escapes --root
    READ_NO_IMAGE,   // --check-images: not a readable regular file
    READ_TOO_LONG,   // a line over --max-line-bytes (main.c finds these)
    READ_REASON_COUNT
} read_reason_t;

#define READ_MAX_SEGMENTS 10000
#define READ_MAX_PATH     4096

typedef struct {
    read_format_t format;  // READ_AUTO: detect per line
    const char *root;      // image paths resolve under it; NULL: as given, relative to the working directory
    const char *real_root; // realpath(root), for --check-images under --root
    bool check_images;     // each image a readable regular file (under real_root when set)
} read_ctx_t;

/* Where a line comes from: the sample's id is "<file>#<line>", its source
 * names the stream its end record closes (the file, or file[I/N] for a shard). */
typedef struct {
    const char *file;
    const char *source;
    int64_t line; // 1-based
    int64_t epoch;
} read_where_t;

/* Parse len bytes (no newline; need not be NUL-terminated). Returns READ_OK
 * with *out a new sample record, or a reason with *out NULL and err
 * (REC_ERR_LEN bytes) one printable line "file:line: what". Returns -1 with
 * err when out of memory. */
int read_parse_line(const char *line, size_t len, const read_ctx_t *ctx, const read_where_t *w, rec_t **out, char *err);

/* The reject record for a line: a minimal sample (id, source, seq, epoch,
 * no segments) wrapped by rec_new_reject, stage "bagel-read". NULL when out
 * of memory. */
rec_t *read_make_reject(const read_where_t *w, const char *err);

/* An empty sample for w with the id "<file>#<line>" (rec_new_sample names it
 * after the source). NULL when out of memory. */
rec_t *read_new_sample(const read_where_t *w, const char *task);

const char *read_format_name(read_format_t f);
/* Accepts the names above and the aliases text-to-image, image-to-text,
 * editing, auto. -1 when unknown. */
int read_format_parse(const char *s, read_format_t *out);
const char *read_reason_name(read_reason_t r);


/* Resolve an image path under ctx->root (lexically: "." and empty parts
 * dropped, ".." pops a part and may not pop above the root). Writes the
 * path to put in the record (relative to the root, or as given without a
 * root) to out, and the path to open to full. Returns 0, or a reason with
 * err (no file:line prefix). */
int read_resolve_path(const read_ctx_t *ctx, const char *path, size_t len, char *out, size_t outsize, char *full,
                      size_t fullsize, char *err, size_t errsize);

#endif
