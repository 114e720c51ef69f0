/* bagel-encode — the autoencoder's latents for every generation image, once,
 * so that bagel-train reads them instead of encoding at every epoch.
 *
 *   bagel-encode --config NAME|PATH [--vae ae.safetensors] [options] [--in EP] [--out EP]
 *       samples -> samples: each image segment with a "vae" tensor and gen,
 *       loss or cond set gains "latent", the posterior moments [2z, H/8, W/8]
 *       (mean, then log-variance; the trainer samples afresh at each use).
 *       A generation image without "vae" passes when it has a latent already
 *       and is otherwise a reject naming the segment; rejects and ends pass
 *       untouched; one record out for each record in. Exit codes: 0 done,
 *       1 --strict found a bad record, 2 usage, 3 fatal (the autoencoder's
 *       file, the device, the output). */
#include "../../ipc/half.h"
#include "../../models/rng.h"
#include "../common/compute_env.h"
#include "../common/latent.h"
#include "../common/log.h"
#include "../common/stage.h"
#include "../common/transform.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char help[] =
    "usage: bagel-encode --config NAME|PATH [--vae ae.safetensors] [options]\n"
    "Add \"latent\" to every generation image: the autoencoder's posterior moments [2z, h, w], mean then\n"
    "log-variance (docs/encode.md).\n"
    "      --config NAME|PATH  the model config (its autoencoder: FLUX's or the identity)\n"
    "      --vae FILE          the FLUX autoencoder's ae.safetensors (required for FLUX, refused for identity)\n"
    "      --device cpu|cuda   where the autoencoder runs (default cpu)\n"
    "      --precision fp32|bf16  matrix math on cuda (default bf16: tensor cores, fp32 accumulation)\n"
    "      --dtype bf16|f32    the latent's dtype (default bf16)\n"
    "      --sample            store one drawn sample as the mean with log-variance -30 (a point: the\n"
    "                          trainer's draw then adds ~3e-7), instead of the distribution\n"
    "      --seed N            the draws of --sample (default 0)\n"
    "      --drop-pixels       remove \"vae\" once encoded (a smaller cache)\n";

enum { OPT_CONFIG = 1, OPT_VAE, OPT_DEVICE, OPT_PRECISION, OPT_DTYPE, OPT_SAMPLE, OPT_SEED, OPT_DROP };

typedef struct {
    lat_t lat;
    rec_dtype_t dtype;
    bool sample, drop;
    rng_t rng;
    float *mo; /* [2z, h, w] of the current image */
    size_t cap;
    unsigned long long images, passed;
    double encode_s;
} job_t;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool flag(const msgpack_object *seg, const char *key)
{
    bool b = false;
    return rec_get_bool(seg, key, &b) && b;
}

/* Removes key from map in place (the pairs belong to the record's zone). */
static void map_del(msgpack_object *map, const char *key)
{
    msgpack_object_map *m = &map->via.map;
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && rec_obj_is_str(k, key)) {
            memmove(&m->ptr[i], &m->ptr[i + 1], (m->size - i - 1) * sizeof m->ptr[0]);
            m->size--;
            return;
        }
    }
}

/* Encodes one segment's pixels into a latent tensor the record owns. 0; 1
 * with why; -1 out of memory. */
static int encode_segment(job_t *j, rec_t *r, msgpack_object *seg, const rec_tensor_t *px, uint32_t i, char *why)
{
    int H = (int)px->shape[0], W = (int)px->shape[1], d = j->lat.down, z = j->lat.z;
    char what[REC_ERR_LEN];
    if (H % d || W % d) {
        snprintf(why, REC_ERR_LEN, "segments[%u].vae: %dx%d is not a multiple of the autoencoder's %d", i, W, H, d);
        return 1;
    }
    int h = H / d, w = W / d;
    size_t n = (size_t)z * h * w; /* one half of the moments */
    if (2 * n > j->cap) {
        float *p = realloc(j->mo, 2 * n * sizeof(float));
        if (!p)
            return -1;
        j->mo = p, j->cap = 2 * n;
    }
    double t0 = now();
    if (lat_encode(&j->lat, px->data, H, W, j->mo, what, sizeof what)) {
        snprintf(why, REC_ERR_LEN, "segments[%u]: autoencoder: %s", i, what);
        return 1;
    }
    j->encode_s += now() - t0;
    j->images++;
    if (j->sample)
        for (size_t k = 0; k < n; k++) {
            j->mo[k] += expf(0.5f * j->mo[n + k]) * (float)rng_normal(&j->rng);
            j->mo[n + k] = LAT_LOGVAR_EXACT;
        }
    size_t es = rec_dtype_size(j->dtype);
    uint8_t *out = malloc(2 * n * es);
    if (!out || rec_adopt(r, free, out))
        return -1;
    for (size_t k = 0; k < 2 * n; k++) {
        if (j->dtype == REC_F32) {
            memcpy(out + 4 * k, &j->mo[k], 4);
        } else {
            uint16_t b = half_f32_to_bf16(j->mo[k]);
            memcpy(out + 2 * k, &b, 2);
        }
    }
    rec_tensor_t t = {.dtype = j->dtype, .ndim = 3, .shape = {2 * z, h, w}, .data = out, .nbytes = 2 * n * es};
    msgpack_object obj;
    if (rec_tensor_obj(r, &t, false, &obj, what) || rec_set(r, seg, "latent", obj))
        return -1;
    if (j->drop)
        map_del(seg, "vae");
    return 0;
}

static int encode_sample(void *arg, rec_t *r, char *why)
{
    job_t *j = arg;
    msgpack_object *segs = rec_map_getw(&r->root, "segments");
    if (!segs || segs->type != MSGPACK_OBJECT_ARRAY) {
        snprintf(why, REC_ERR_LEN, "segments: missing (an array of segments expected)");
        return 1;
    }
    for (uint32_t i = 0; i < segs->via.array.size; i++) {
        msgpack_object *seg = &segs->via.array.ptr[i];
        if (seg->type != MSGPACK_OBJECT_MAP || !rec_obj_is_str(rec_map_get(seg, "kind"), "image"))
            continue;
        if (!(flag(seg, "gen") || flag(seg, "loss") || flag(seg, "cond")))
            continue;
        const msgpack_object *vo = rec_map_get(seg, "vae");
        if (!vo) {
            if (rec_map_get(seg, "latent")) {
                j->passed++;
                continue;
            }
            snprintf(why, REC_ERR_LEN,
                     "segments[%u]: a generation image without \"vae\" pixels (run bagel-image upstream)", i);
            return 1;
        }
        rec_tensor_t px;
        char what[REC_ERR_LEN];
        if (rec_tensor_get(vo, &px, what) || px.dtype != REC_U8 || px.ndim != 3 || px.shape[2] != 3 ||
            px.shape[0] < 1 || px.shape[1] < 1) {
            snprintf(why, REC_ERR_LEN, "segments[%u].vae: expected a u8 [H, W, 3] tensor", i);
            return 1;
        }
        int rc = encode_segment(j, r, seg, &px, i, why);
        if (rc)
            return rc;
    }
    return 0;
}

int main(int argc, char **argv)
{
    stage_t st;
    stage_init(&st, "bagel-encode");
    static const struct option longopts[] = {
        STAGE_LONGOPTS,
        {"config", required_argument, 0, OPT_CONFIG},
        {"vae", required_argument, 0, OPT_VAE},
        {"device", required_argument, 0, OPT_DEVICE},
        {"precision", required_argument, 0, OPT_PRECISION},
        {"dtype", required_argument, 0, OPT_DTYPE},
        {"sample", no_argument, 0, OPT_SAMPLE},
        {"seed", required_argument, 0, OPT_SEED},
        {"drop-pixels", no_argument, 0, OPT_DROP},
        {0, 0, 0, 0},
    };
    job_t job = {.dtype = REC_BF16};
    const char *config = NULL, *vae = NULL, *device = "cpu", *precision = NULL;
    unsigned long long seed = 0;
    int c;
    while ((c = getopt_long(argc, argv, STAGE_SHORTOPTS, longopts, NULL)) != -1) {
        if (stage_option(&st, c, optarg, help))
            continue;
        switch (c) {
        case OPT_CONFIG: config = optarg; break;
        case OPT_VAE: vae = optarg; break;
        case OPT_DEVICE: device = optarg; break;
        case OPT_PRECISION: precision = optarg; break;
        case OPT_DTYPE:
            if (strcmp(optarg, "bf16") && strcmp(optarg, "f32")) {
                log_error("--dtype: %s: expected bf16 or f32", optarg);
                return EXIT_USAGE;
            }
            job.dtype = strcmp(optarg, "f32") ? REC_BF16 : REC_F32;
            break;
        case OPT_SAMPLE: job.sample = true; break;
        case OPT_SEED:
            if (stage_parse_range("seed", optarg, 0, UINT64_MAX, &seed))
                return EXIT_USAGE;
            break;
        case OPT_DROP: job.drop = true; break;
        default: return EXIT_USAGE;
        }
    }
    for (int i = optind; i < argc; i++)
        stage_option(&st, OPT_IN, argv[i], help);
    if (!config) {
        log_error("--config: missing: name the model config (tiny, bagel-0.5b-mot or a file)");
        return EXIT_USAGE;
    }
    const op_table_t *ops;
    char err[512];
    int rc_ops = compute_ops(device, precision, &ops, NULL, err, sizeof err);
    if (rc_ops) {
        log_error("%s", err);
        return rc_ops;
    }
    model_config_t cfg;
    if (model_config_load(&cfg, config, NULL, err, sizeof err)) {
        log_error("--config: %s", err);
        return EXIT_USAGE;
    }
    if (lat_open(&job.lat, &cfg, vae, ops, err, sizeof err)) {
        log_error("%s", err);
        return EXIT_FATAL;
    }
    rng_seed(&job.rng, seed);
    stage_counts_t n;
    int status = stage_transform(&st, encode_sample, &job, &n);
    log_info("samples=%llu rejects=%llu images=%llu passed=%llu encode_s=%.3f images_per_s=%.1f",
             (unsigned long long)n.samples, (unsigned long long)n.rejects, job.images, job.passed, job.encode_s,
             job.encode_s > 0 ? (double)job.images / job.encode_s : 0.0);
    lat_close(&job.lat);
    free(job.mo);
    compute_ops_done(ops);
    return stage_exit(status);
}
