/* bagel-decode — the images that records' latents stand for, as PNG files:
 * to look at what bagel-encode cached, and to check it.
 *
 *   bagel-decode --config NAME|PATH [--vae ae.safetensors] --out-dir DIR [--in EP]
 *       samples -> files: every image segment's "latent" (moments [2z, h, w],
 *       f32 or bf16) is decoded from its mean (FLUX: ae_decode of
 *       scale·(mean − shift); identity: the inverse normalization, rounded)
 *       and written as DIR/<id>-<segment>.png, the id's characters other than
 *       [A-Za-z0-9._-] replaced by '_'. Writes no records. Exit codes: 0 done,
 *       2 usage, 3 fatal (the autoencoder's file, a latent that cannot be
 *       decoded, a file that cannot be written). */
#include "../../ipc/half.h"
#include "../common/compute_env.h"
#include "../common/latent.h"
#include "../common/log.h"
#include "../common/pngfile.h"
#include "../common/stage.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <vips/vips.h>

static const char help[] =
    "usage: bagel-decode --config NAME|PATH [--vae ae.safetensors] --out-dir DIR [options]\n"
    "Decode every image latent of the input records to DIR/<id>-<segment>.png (docs/encode.md).\n"
    "      --config NAME|PATH  the model config (its autoencoder: FLUX's or the identity)\n"
    "      --vae FILE          the FLUX autoencoder's ae.safetensors (required for FLUX)\n"
    "      --device cpu|cuda   where the autoencoder runs (default cpu)\n"
    "      --precision fp32|bf16  matrix math on cuda (default bf16: tensor cores, fp32 accumulation)\n"
    "      --out-dir DIR       where the PNG files go (made if missing)\n";

enum { OPT_CONFIG = 1, OPT_VAE, OPT_DEVICE, OPT_PRECISION, OPT_OUT_DIR };

/* The latent of one segment to DIR/<id>-<i>.png. 0, or -1 with err. */
static int decode_segment(lat_t *l, const char *dir, const char *id, uint32_t i, const msgpack_object *lo, char *err,
                          size_t errlen)
{
    rec_tensor_t t;
    char e2[REC_ERR_LEN];
    if (rec_tensor_get(lo, &t, e2) || (t.dtype != REC_F32 && t.dtype != REC_BF16) || t.ndim != 3 ||
        t.shape[0] != 2 * l->z || t.shape[1] < 1 || t.shape[2] < 1 || t.shape[1] > 65536 / l->down ||
        t.shape[2] > 65536 / l->down) {
        snprintf(err, errlen, "%s: segments[%u].latent: expected f32 or bf16 [%d, h, w]", id, i, 2 * l->z);
        return -1;
    }
    int h = (int)t.shape[1], w = (int)t.shape[2], H = h * l->down, W = w * l->down;
    size_t n = (size_t)rec_tensor_numel(&t);
    float *mo = malloc(n * sizeof(float));
    uint8_t *img = malloc((size_t)H * W * 3);
    int rc = -1;
    if (!mo || !img) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    for (size_t k = 0; k < n; k++) {
        if (t.dtype == REC_F32) {
            memcpy(&mo[k], (const char *)t.data + 4 * k, 4);
        } else {
            uint16_t b;
            memcpy(&b, (const char *)t.data + 2 * k, 2);
            mo[k] = half_bf16_to_f32(b);
        }
    }
    if (lat_decode(l, mo, h, w, img, e2, sizeof e2)) {
        snprintf(err, errlen, "%s: segments[%u]: %s", id, i, e2);
        goto done;
    }
    char path[4096], safe[200];
    png_safe_name(safe, sizeof safe, id);
    snprintf(path, sizeof path, "%s/%s-%u.png", dir, safe, i);
    if (png_write_rgb(path, img, H, W, err, errlen))
        goto done;
    rc = 0;
done:
    free(mo);
    free(img);
    return rc;
}

static int run(stage_t *st, lat_t *l, const char *dir, unsigned long long *images)
{
    char err[REC_ERR_LEN + 256];
    static const char *const dash[] = {"-"};
    rd_t *rd = rd_open(st->ninputs ? st->inputs : dash, st->ninputs ? st->ninputs : 1, &st->so, err);
    if (!rd) {
        log_error("%s", err);
        return EXIT_FATAL;
    }
    int status = EXIT_OK, rc;
    rec_t *r;
    while ((rc = rd_next(rd, &r, err)) != 0) {
        if (rc < 0 || rc == 2) {
            log_error("%s", err);
            if (rc == -2 || st->strict) {
                rec_destroy(&r);
                status = rc == -2 ? EXIT_FATAL : EXIT_CHECK;
                break;
            }
            if (rc == -1)
                continue;
        }
        const msgpack_object *segs = rec_get(r, "segments");
        char id[160];
        rec_id(r, id, sizeof id);
        for (uint32_t i = 0; r->type == REC_SAMPLE && segs && segs->type == MSGPACK_OBJECT_ARRAY &&
                             i < segs->via.array.size && status == EXIT_OK;
             i++) {
            const msgpack_object *seg = &segs->via.array.ptr[i];
            const msgpack_object *lo = seg->type == MSGPACK_OBJECT_MAP ? rec_map_get(seg, "latent") : NULL;
            if (!lo)
                continue;
            if (decode_segment(l, dir, id, i, lo, err, sizeof err)) {
                log_error("%s", err);
                status = EXIT_FATAL;
            } else {
                (*images)++;
            }
        }
        rec_destroy(&r);
        if (status != EXIT_OK)
            break;
    }
    rd_close(&rd);
    return status;
}

int main(int argc, char **argv)
{
    stage_t st;
    stage_init(&st, "bagel-decode");
    static const struct option longopts[] = {
        STAGE_LONGOPTS,
        {"config", required_argument, 0, OPT_CONFIG},
        {"vae", required_argument, 0, OPT_VAE},
        {"device", required_argument, 0, OPT_DEVICE},
        {"precision", required_argument, 0, OPT_PRECISION},
        {"out-dir", required_argument, 0, OPT_OUT_DIR},
        {0, 0, 0, 0},
    };
    const char *config = NULL, *vae = NULL, *device = "cpu", *precision = NULL, *dir = NULL;
    int c;
    while ((c = getopt_long(argc, argv, STAGE_SHORTOPTS, longopts, NULL)) != -1) {
        if (stage_option(&st, c, optarg, help))
            continue;
        switch (c) {
        case OPT_CONFIG: config = optarg; break;
        case OPT_VAE: vae = optarg; break;
        case OPT_DEVICE: device = optarg; break;
        case OPT_PRECISION: precision = optarg; break;
        case OPT_OUT_DIR: dir = optarg; break;
        default: return EXIT_USAGE;
        }
    }
    for (int i = optind; i < argc; i++)
        stage_option(&st, OPT_IN, argv[i], help);
    if (!config || !dir) {
        log_error("%s: missing: name the model config and the directory for the PNG files",
                  !config ? "--config" : "--out-dir");
        return EXIT_USAGE;
    }
    const op_table_t *ops;
    lat_t l;
    int rc_start = lat_start(&l, &ops, device, precision, config, vae);
    if (rc_start)
        return rc_start;
    if (mkdir(dir, 0777) && errno != EEXIST) {
        log_error("--out-dir: %s: %s", dir, strerror(errno));
        lat_close(&l);
        compute_ops_done(ops);
        return EXIT_FATAL;
    }
    if (VIPS_INIT(argv[0])) {
        log_error("libvips: cannot start: %s", vips_error_buffer());
        lat_close(&l);
        compute_ops_done(ops);
        return EXIT_FATAL;
    }
    unsigned long long images = 0;
    int status = run(&st, &l, dir, &images);
    log_info("images=%llu out_dir=%s", images, dir);
    lat_close(&l);
    vips_shutdown();
    compute_ops_done(ops);
    return stage_exit(status);
}
