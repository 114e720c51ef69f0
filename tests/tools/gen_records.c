/* gen-records — writes synthetic sample records and their end record, for
 * the stage tests and benchmarks that need many or large records fast.
 *
 *   gen-records [-n COUNT] [-b PIXEL_BYTES] [-s SOURCE] [-f FIRST_SEQ] [-E] [-o EP]
 *
 * Each sample has a text segment and an image segment whose "vae" is a u8
 * tensor of PIXEL_BYTES (rounded down to a multiple of 3; 0: no tensor).
 * -E leaves out the end record. */
#include "../../ipc/stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long long n = 10, first = 0;
    size_t bytes = 0;
    const char *source = "gen", *out = "-";
    int c, end = 1;
    while ((c = getopt(argc, argv, "n:b:s:f:Eo:")) != -1) {
        switch (c) {
        case 'n': n = atoll(optarg); break;
        case 'b': bytes = (size_t)atoll(optarg) / 3 * 3; break;
        case 's': source = optarg; break;
        case 'f': first = atoll(optarg); break;
        case 'E': end = 0; break;
        case 'o': out = optarg; break;
        default:
            fprintf(stderr, "usage: gen-records [-n N] [-b BYTES] [-s SOURCE] [-f FIRST] [-E] [-o EP]\n");
            return 2;
        }
    }
    char err[REC_ERR_LEN];
    wr_t *w = wr_open(out, NULL, err);
    if (!w) {
        fprintf(stderr, "gen-records: %s\n", err);
        return 3;
    }
    unsigned char *px = malloc(bytes ? bytes : 1);
    for (size_t i = 0; i < bytes; i++)
        px[i] = (unsigned char)(i * 131);
    for (long long i = first; i < first + n; i++) {
        rec_t *r = rec_new_sample(source, i, 0, "t2i");
        msgpack_object *segs = rec_map_getw(&r->root, "segments");
        msgpack_object text = rec_map(), img = rec_map();
        char caption[64];
        snprintf(caption, sizeof caption, "picture number %lld", i);
        rec_set(r, &text, "kind", rec_str(r, "text"));
        rec_set(r, &text, "text", rec_str(r, caption));
        rec_set(r, &text, "loss", rec_bool(false));
        rec_set(r, &img, "kind", rec_str(r, "image"));
        rec_set(r, &img, "path", rec_str(r, "p.png"));
        rec_set(r, &img, "gen", rec_bool(true));
        if (bytes) {
            px[0] = (unsigned char)i;
            rec_tensor_t t = {
                .dtype = REC_U8, .ndim = 3, .shape = {1, (int64_t)bytes / 3, 3}, .data = px, .nbytes = bytes};
            msgpack_object to;
            if (rec_tensor_obj(r, &t, false, &to, err) == 0)
                rec_set(r, &img, "vae", to);
        }
        rec_push(r, segs, text);
        rec_push(r, segs, img);
        if (wr_put(w, r, err)) {
            fprintf(stderr, "gen-records: %s\n", err);
            return 3;
        }
        rec_destroy(&r);
    }
    if (end) {
        rec_t *e = rec_new_end(source, 0, n);
        wr_put(w, e, err);
        rec_destroy(&e);
    }
    if (wr_close(&w, err)) {
        fprintf(stderr, "gen-records: %s\n", err);
        return 3;
    }
    free(px);
    return 0;
}
