/* out.h — the dataset directory: images saved with libvips, JSONL files.
 *
 * Every file is written to a temporary name and renamed into place, so a
 * stopped run never leaves a truncated file under a final name. A JSONL file
 * is synced and renamed only after its images are on disk (syncfs), so a
 * JSONL file in the directory never names an image that is missing. */
#ifndef BAGEL_SYNTH_OUT_H
#define BAGEL_SYNTH_OUT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SYNTH_ERR_LEN  512
#define SYNTH_PATH_LEN 4096

typedef struct {
    char dir[SYNTH_PATH_LEN];
    uint64_t images; // atomic: images are saved from several threads
    uint64_t bytes;
} synth_out_t;

/* Create dir and dir/images (with parents) and check that they are writable. */
int synth_out_open(synth_out_t *o, const char *dir, char *err);
/* Thread-safe. Encode rgb ((px, px, 3) u8) as PNG, or JPEG when jpeg is set, to dir/rel;
 * metadata stripped, so the bytes depend on the pixels alone. */
int synth_out_image(synth_out_t *o, const char *rel, const uint8_t *rgb, int px, int jpeg, char *err);

typedef struct {
    FILE *f;
    char tmp[SYNTH_PATH_LEN];
    char path[SYNTH_PATH_LEN];
    uint64_t lines;
} synth_jsonl_t;

/* Start dir/name (written as a temporary file until synth_jsonl_close). */
int synth_jsonl_open(synth_jsonl_t *j, const synth_out_t *o, const char *name, char *err);
/* Append one line (JSON text without its newline). */
int synth_jsonl_put(synth_jsonl_t *j, const char *line, char *err);
/* Sync the file system (the images too), then rename the file into place. */
int synth_jsonl_close(synth_jsonl_t *j, char *err);
/* Remove the temporary file; safe on a closed or never-opened file. */
void synth_jsonl_abort(synth_jsonl_t *j);

#endif
