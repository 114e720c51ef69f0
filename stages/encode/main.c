/* bagel-encode — the autoencoder's latents for every generation image, once,
 * so that bagel-train reads them instead of encoding at every epoch.
 *
 *   bagel-encode --config NAME|PATH [--vae ae.safetensors] [options] [--in EP] [--out EP]
 *       samples -> samples: each image segment with a "vae" tensor and gen,
 *       loss or cond set gains "latent", the posterior moments [2z, H/8, W/8]
 *       (mean, then log-variance; the trainer samples afresh at each use).
 *       A generation image without "vae" passes when it has a latent already
 *       and is otherwise a reject naming the segment; rejects and ends pass
 *       untouched; one record out for each record in, in input order.
 *       Images of one size are encoded together, up to --batch per
 *       autoencoder call, each with the latent it gets alone. Exit codes:
 *       0 done, 1 --strict found a bad record, 2 usage, 3 fatal (the
 *       autoencoder's file, the device, the output).
 *
 * Batching: a record's images join the current batch as it is read; the
 * record waits in a queue until all of its images are encoded, and records
 * leave the queue in input order (records without images wait behind those
 * with). The batch is encoded when it is full, when an image of another
 * size comes, when the queue holds QUEUE_MAX records, at end of input, and
 * when the input would block (the reader's idle hook: on ZeroMQ as soon as
 * nothing is queued; on stdin when no byte comes within IDLE_WAIT_MS; never
 * on files, which do not block). The --sample draws are taken when a record
 * is written, so they come in input order from the one generator, as with
 * no batching. */
#include "../../ipc/endpoint.h"
#include "../../ipc/half.h"
#include "../../models/checkpoint.h"
#include "../../models/pack.h"
#include "../../models/rng.h"
#include "../common/compute_env.h"
#include "../common/latent.h"
#include "../common/log.h"
#include "../common/progress.h"
#include "../common/stage.h"
#include "../common/transform.h" /* stage_counts_t */

#include <poll.h>
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
    "      --batch N           images of one size encoded together, up to N a call (default 8 on cuda,\n"
    "                          1 on cpu); the latents are the same\n"
    "      --dtype bf16|f32    the latent's dtype (default bf16)\n"
    "      --sample            store one drawn sample as the mean with log-variance -30 (a point: the\n"
    "                          trainer's draw then adds ~3e-7), instead of the distribution\n"
    "      --seed N            the draws of --sample (default 0)\n"
    "      --drop-pixels       remove \"vae\" once encoded (a smaller cache)\n"
    "      --vit WEIGHTS       also run the model's ViT (from a checkpoint directory or .safetensors of this\n"
    "                          config) on every understanding image and add \"vit_features\" [patches, vit hidden]\n"
    "                          (--dtype): a trainer with a frozen ViT (--freeze vit) uses them instead of\n"
    "                          running it\n";

enum { OPT_CONFIG = 1, OPT_VAE, OPT_DEVICE, OPT_PRECISION, OPT_BATCH, OPT_DTYPE, OPT_SAMPLE, OPT_SEED, OPT_DROP, OPT_VIT };

#define QUEUE_MAX    1024 /* records waiting behind a partial batch */
#define IDLE_WAIT_MS 20   /* stdin: how long the idle hook waits for more input before encoding */

/* one image of a queued record */
typedef struct {
    msgpack_object *seg; /* the segment, in the record's zone */
    uint32_t i;          /* its index */
    const uint8_t *px;   /* u8 [H, W, 3], the record's memory */
    int H, W;
    float *mo; /* [2z, H/d, W/d] once encoded */
    char *why; /* the autoencoder's error, when it failed */
} img_t;

/* a record on its way out */
typedef struct {
    rec_t *r;
    img_t *img;
    int nimg, pending; /* images; of them, not encoded yet */
    char *why;         /* refused before encoding (a bad segment) */
    size_t skip;       /* --sample: the draws the images before the bad segment take */
} slot_t;

typedef enum { IDLE_NEVER, IDLE_POLL_STDIN, IDLE_ALWAYS } idle_mode_t;

typedef struct {
    stage_t *st;
    lat_t lat;
    rec_dtype_t dtype;
    bool sample, drop;
    rng_t rng;
    int batch;               /* the most images a call */
    idle_mode_t idle;
    rd_t *rd;
    wr_t *w;
    progress_t *prog;
    int status; /* EXIT_OK until a fatal or --strict stop */
    stage_counts_t n;
    slot_t *q; /* the queue: [head, len) waiting */
    int head, len, cap;
    int bslot[AE_MAX_BATCH], bimg[AE_MAX_BATCH]; /* the batch: queue slot and image of each */
    int nb, bH, bW;
    float *mo; /* the batch's moments [nb, 2z, h, w] */
    size_t mo_cap;
    model_t *vm; /* --vit: the model whose ViT runs (one decoder layer kept), or NULL */
    model_config_t vcfg; /* its config (the packer keeps a pointer to it) */
    pack_t vpk;
    unsigned long long vit_images;
    unsigned long long images, passed, calls;
    double encode_s;
    double first_s;                 /* the first call's seconds and images: start-up, */
    unsigned long long first_images; /* left out of steady_images_per_s */
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

static size_t half_moments(const job_t *j, int H, int W)
{
    return (size_t)j->lat.z * (H / j->lat.down) * (W / j->lat.down);
}

static void slot_free(slot_t *s)
{
    for (int k = 0; k < s->nimg; k++) {
        free(s->img[k].mo);
        free(s->img[k].why);
    }
    free(s->img);
    free(s->why);
    rec_destroy(&s->r);
    *s = (slot_t){0};
}

/* ---- the autoencoder calls ------------------------------------------ */

/* Encodes the batch; on failure of a batch of several, each image alone.
 * 0, or -1 out of memory. */
static int run_batch(job_t *j)
{
    int n = j->nb, H = j->bH, W = j->bW;
    if (!n)
        return 0;
    size_t step = 2 * half_moments(j, H, W);
    if ((size_t)n * step > j->mo_cap) {
        float *p = realloc(j->mo, (size_t)n * step * sizeof(float));
        if (!p)
            return -1;
        j->mo = p, j->mo_cap = (size_t)n * step;
    }
    const uint8_t *px[AE_MAX_BATCH];
    for (int k = 0; k < n; k++)
        px[k] = j->q[j->bslot[k]].img[j->bimg[k]].px;
    char err[REC_ERR_LEN];
    double t0 = now();
    int rc = lat_encode_batch(&j->lat, n, px, H, W, j->mo, err, sizeof err);
    j->calls++;
    if (rc && n > 1) { /* most likely memory: these one at a time, and smaller batches from now on */
        j->batch = n / 2;
        log_error("a batch of %d %dx%d images: %s; encoding them one at a time, and at most %d a call from now on", n,
                  W, H, err, j->batch);
    }
    for (int k = 0; k < n; k++) {
        slot_t *s = &j->q[j->bslot[k]];
        img_t *im = &s->img[j->bimg[k]];
        int rk = rc;
        if (rc && n > 1) {
            rk = lat_encode_batch(&j->lat, 1, &px[k], H, W, j->mo + k * step, err, sizeof err);
            j->calls++;
        }
        if (rk) {
            if (!(im->why = strdup(err)))
                return -1;
        } else {
            if (!(im->mo = malloc(step * sizeof(float))))
                return -1;
            memcpy(im->mo, j->mo + k * step, step * sizeof(float));
            j->images++;
        }
        s->pending--;
    }
    double dt = now() - t0;
    j->encode_s += dt;
    if (j->first_s == 0.0) /* the first call also picks algorithms and allocates */
        j->first_s = dt, j->first_images = j->images;
    j->nb = 0;
    return 0;
}

/* ---- writing records in order --------------------------------------- */

/* Adds image im's latent to the record (the --sample draw first), as
 * today's one-image path did. 0, or -1 out of memory. */
static int attach(job_t *j, rec_t *r, img_t *im)
{
    int d = j->lat.down, z = j->lat.z, h = im->H / d, w = im->W / d;
    size_t n = (size_t)z * h * w;
    float *mo = im->mo;
    if (j->sample)
        for (size_t k = 0; k < n; k++) {
            mo[k] += expf(0.5f * mo[n + k]) * (float)rng_normal(&j->rng);
            mo[n + k] = LAT_LOGVAR_EXACT;
        }
    size_t es = rec_dtype_size(j->dtype);
    uint8_t *out = malloc(2 * n * es);
    if (!out || rec_adopt(r, free, out))
        return -1;
    for (size_t k = 0; k < 2 * n; k++) {
        if (j->dtype == REC_F32) {
            memcpy(out + 4 * k, &mo[k], 4);
        } else {
            uint16_t b = half_f32_to_bf16(mo[k]);
            memcpy(out + 2 * k, &b, 2);
        }
    }
    rec_tensor_t t = {.dtype = j->dtype, .ndim = 3, .shape = {2 * z, h, w}, .data = out, .nbytes = 2 * n * es};
    msgpack_object obj;
    char what[REC_ERR_LEN];
    if (rec_tensor_obj(r, &t, false, &obj, what) || rec_set(r, im->seg, "latent", obj))
        return -1;
    if (j->drop)
        map_del(im->seg, "vae");
    return 0;
}

/* --vit: the ViT's output for every understanding image of sample r, added
 * as "vit_features". 0; 1 with why (the sample is refused); -1 out of
 * memory. */
static int vit_attach(job_t *j, rec_t *r, char *why)
{
    msgpack_object *segs = rec_map_getw(&r->root, "segments");
    if (!segs || segs->type != MSGPACK_OBJECT_ARRAY)
        return 0;
    const model_config_t *c = &j->vm->cfg;
    pack_reset(&j->vpk);
    pack_segment_t g[64];
    uint32_t at[64];
    int n = 0;
    for (uint32_t i = 0; i < segs->via.array.size; i++) {
        msgpack_object *seg = &segs->via.array.ptr[i];
        if (seg->type != MSGPACK_OBJECT_MAP || !flag(seg, "und") || !rec_map_get(seg, "vit"))
            continue;
        rec_tensor_t t;
        char e2[REC_ERR_LEN];
        if (rec_tensor_get(rec_map_get(seg, "vit"), &t, e2) || t.dtype != REC_U8 || t.ndim != 3 || t.shape[2] != 3) {
            snprintf(why, REC_ERR_LEN, "segments[%u]: vit must be u8 [H, W, 3]", i);
            return 1;
        }
        if (n == 64) {
            snprintf(why, REC_ERR_LEN, "more than 64 understanding images in one sample");
            return 1;
        }
        g[n] = (pack_segment_t){.kind = PACK_IMAGE, .und = 1, .vit = t.data, .vit_h = (int)t.shape[0],
                                .vit_w = (int)t.shape[1]};
        at[n++] = i;
    }
    if (!n)
        return 0;
    pack_sample_t ps = {.n_segments = n, .seg = g};
    char e2[512];
    if (pack_add(&j->vpk, &ps, e2, sizeof e2)) {
        snprintf(why, REC_ERR_LEN, "vit: %s", e2);
        return 1;
    }
    model_batch_t *b = &j->vpk.b;
    model_caps_t caps = model_caps_of(b);
    caps.recompute = 1;
    int Dv = c->vit_hidden;
    float *f = malloc((size_t)b->n_vit * Dv * sizeof(float));
    if (!f)
        return -1;
    if (model_reserve(j->vm, &caps, e2, sizeof e2) || model_vit_features(j->vm, b, f, e2, sizeof e2)) {
        snprintf(why, REC_ERR_LEN, "vit: %s", e2);
        free(f);
        return 1;
    }
    size_t es = rec_dtype_size(j->dtype), off = 0;
    for (int k = 0; k < n; k++) {
        int P = b->vit_lens[k];
        uint8_t *out = malloc((size_t)P * Dv * es);
        if (!out || rec_adopt(r, free, out)) {
            free(f);
            return -1;
        }
        for (size_t e = 0; e < (size_t)P * Dv; e++) {
            float v = f[(off + 0) * Dv + e];
            if (j->dtype == REC_F32) {
                memcpy(out + 4 * e, &v, 4);
            } else {
                uint16_t h = half_f32_to_bf16(v);
                memcpy(out + 2 * e, &h, 2);
            }
        }
        off += (size_t)P;
        rec_tensor_t t = {.dtype = j->dtype, .ndim = 2, .shape = {P, Dv}, .data = out, .nbytes = (size_t)P * Dv * es};
        msgpack_object obj;
        if (rec_tensor_obj(r, &t, false, &obj, e2) || rec_set(r, &segs->via.array.ptr[at[k]], "vit_features", obj)) {
            free(f);
            return -1;
        }
        j->vit_images++;
    }
    free(f);
    return 0;
}

/* Writes slot s (its latents added, or as a reject) and frees it. Sets
 * j->status on a fatal error or a --strict stop. */
static void write_slot(job_t *j, slot_t *s)
{
    char err[REC_ERR_LEN];
    const char *why = s->why;
    if (s->r->type == REC_SAMPLE) {
        if (why && j->sample)
            for (size_t k = 0; k < s->skip; k++)
                (void)rng_normal(&j->rng);
        char vwhy[REC_ERR_LEN];
        int vr = !why && j->vm ? vit_attach(j, s->r, vwhy) : 0;
        if (vr < 0) {
            log_error("out of memory");
            j->status = EXIT_FATAL;
            return;
        }
        if (vr > 0) {
            snprintf(err, sizeof err, "%s", vwhy);
            why = err;
        }
        for (int k = 0; !why && k < s->nimg; k++) {
            if (s->img[k].why) {
                snprintf(err, sizeof err, "segments[%u]: autoencoder: %s", s->img[k].i, s->img[k].why);
                why = err;
            } else if (attach(j, s->r, &s->img[k])) {
                log_error("out of memory");
                j->status = EXIT_FATAL;
                return;
            }
        }
        if (why) {
            char id[128];
            log_error("%s: %s", rec_id(s->r, id, sizeof id), why);
            rec_t *rj = rec_new_reject(s->r, j->st->name, why);
            if (!rj) {
                log_error("out of memory");
                j->status = EXIT_FATAL;
                return;
            }
            rec_destroy(&s->r);
            s->r = rj;
            j->n.rejects++;
            if (j->st->strict) {
                j->status = EXIT_CHECK;
                return;
            }
        }
    } else if (s->r->type == REC_REJECT) {
        j->n.rejects++;
    }
    if (wr_put(j->w, s->r, err)) {
        log_error("%s", err);
        j->status = EXIT_FATAL;
        return;
    }
    slot_free(s);
    rd_stats_t st = rd_stats(j->rd);
    progress_update(j->prog, st.records, st.bytes, j->n.rejects);
}

/* Writes the records at the head of the queue whose images are all encoded. */
static void emit(job_t *j)
{
    while (!j->status && j->head < j->len && j->q[j->head].pending == 0) {
        write_slot(j, &j->q[j->head]);
        if (!j->status)
            j->head++;
    }
    if (j->head == j->len)
        j->head = j->len = 0;
}

/* Encodes the batch and writes what is ready. */
static void flush(job_t *j)
{
    if (j->status)
        return;
    if (run_batch(j)) {
        log_error("out of memory");
        j->status = EXIT_FATAL;
        return;
    }
    emit(j);
}

/* Queues record r (the queue owns it from here). Its index, or -1 out of
 * memory. */
static int enqueue(job_t *j, rec_t *r)
{
    if (j->len == j->cap) {
        int cap = j->cap ? 2 * j->cap : 64;
        slot_t *p = realloc(j->q, (size_t)cap * sizeof *p);
        if (!p) {
            rec_destroy(&r);
            return -1;
        }
        j->q = p, j->cap = cap;
    }
    j->q[j->len] = (slot_t){.r = r};
    return j->len++;
}

/* The images of sample r to encode, in segment order, into *out (NULL when
 * none). 0; 1 with why, *skip the draws of the images before the bad
 * segment; -1 out of memory. */
static int scan_sample(job_t *j, rec_t *r, img_t **out, int *nout, size_t *skip, char *why)
{
    *out = NULL, *nout = 0, *skip = 0;
    msgpack_object *segs = rec_map_getw(&r->root, "segments");
    if (!segs || segs->type != MSGPACK_OBJECT_ARRAY) {
        snprintf(why, REC_ERR_LEN, "segments: missing (an array of segments expected)");
        return 1;
    }
    img_t *v = NULL;
    int n = 0;
    for (uint32_t i = 0; i < segs->via.array.size; i++) {
        msgpack_object *seg = &segs->via.array.ptr[i];
        if (seg->type != MSGPACK_OBJECT_MAP || !rec_obj_is_str(rec_map_get(seg, "kind"), "image"))
            continue;
        if (!(flag(seg, "gen") || flag(seg, "loss") || flag(seg, "cond")))
            continue;
        const msgpack_object *vo = rec_map_get(seg, "vae");
        int bad = 0;
        rec_tensor_t px;
        char what[REC_ERR_LEN];
        if (!vo) {
            if (rec_map_get(seg, "latent")) {
                j->passed++;
                continue;
            }
            snprintf(why, REC_ERR_LEN,
                     "segments[%u]: a generation image without \"vae\" pixels (run bagel-image upstream)", i);
            bad = 1;
        } else if (rec_tensor_get(vo, &px, what) || px.dtype != REC_U8 || px.ndim != 3 || px.shape[2] != 3 ||
                   px.shape[0] < 1 || px.shape[1] < 1) {
            snprintf(why, REC_ERR_LEN, "segments[%u].vae: expected a u8 [H, W, 3] tensor", i);
            bad = 1;
        } else if (px.shape[0] % j->lat.down || px.shape[1] % j->lat.down) {
            snprintf(why, REC_ERR_LEN, "segments[%u].vae: %dx%d is not a multiple of the autoencoder's %d", i,
                     (int)px.shape[1], (int)px.shape[0], j->lat.down);
            bad = 1;
        }
        if (bad) {
            for (int k = 0; k < n; k++)
                *skip += half_moments(j, v[k].H, v[k].W);
            free(v);
            return 1;
        }
        img_t *p = realloc(v, (size_t)(n + 1) * sizeof *v);
        if (!p) {
            free(v);
            return -1;
        }
        v = p;
        v[n++] = (img_t){.seg = seg, .i = i, .px = px.data, .H = (int)px.shape[0], .W = (int)px.shape[1]};
    }
    *out = v, *nout = n;
    return 0;
}

/* One record from the reader: queued, its images added to the batch. */
static void take(job_t *j, rec_t *r)
{
    img_t *img = NULL;
    int nimg = 0;
    size_t skip = 0;
    char why[REC_ERR_LEN];
    int rc = 0;
    if (r->type == REC_SAMPLE) {
        j->n.samples++;
        rc = scan_sample(j, r, &img, &nimg, &skip, why);
        if (rc < 0) {
            rec_destroy(&r);
            log_error("out of memory");
            j->status = EXIT_FATAL;
            return;
        }
    }
    int si = enqueue(j, r);
    if (si < 0 || (rc > 0 && !(j->q[si].why = strdup(why)))) {
        free(img);
        log_error("out of memory");
        j->status = EXIT_FATAL;
        return;
    }
    slot_t *s = &j->q[si];
    s->img = img, s->nimg = s->pending = nimg, s->skip = skip;
    for (int k = 0; k < nimg && !j->status; k++) {
        img_t *im = &j->q[si].img[k];
        if (j->nb && (im->H != j->bH || im->W != j->bW))
            flush(j);
        if (!j->nb)
            j->bH = im->H, j->bW = im->W;
        j->bslot[j->nb] = si, j->bimg[j->nb] = k;
        if (++j->nb >= j->batch) /* full: encode now, so --batch 1 holds nothing back */
            flush(j);
    }
    if (!j->nb || j->len - j->head >= QUEUE_MAX)
        flush(j);
}

/* The reader is about to wait for input: encode what is batched unless more
 * input is on its way (see the top of the file). */
static void on_idle(void *arg)
{
    job_t *j = arg;
    if (j->nb && j->idle != IDLE_NEVER) {
        struct pollfd p = {.fd = 0, .events = POLLIN};
        if (j->idle == IDLE_ALWAYS || poll(&p, 1, IDLE_WAIT_MS) <= 0)
            flush(j);
    }
    char err[REC_ERR_LEN];
    (void)wr_flush(j->w, err); /* a failed output is reported by the next wr_put */
}

/* The main loop, as stage_transform's (transform.c) with the queue between
 * reading and writing. */
static int run(stage_t *st, job_t *j)
{
    char err[REC_ERR_LEN];
    static const char *const dash[] = {"-"};
    const char *const *in = st->ninputs ? st->inputs : dash;
    int nin = st->ninputs ? st->ninputs : 1;
    j->idle = IDLE_NEVER;
    for (int i = 0; i < nin; i++)
        if (ep_is_zmq(in[i]))
            j->idle = IDLE_ALWAYS;
        else if (!strcmp(in[i], "-") && j->idle == IDLE_NEVER)
            j->idle = IDLE_POLL_STDIN;
    j->rd = rd_open(in, nin, &st->so, err);
    j->w = j->rd ? wr_open(st->output, &st->so, err) : NULL;
    j->prog = progress_new(st->progress);
    if (!j->rd || !j->w) {
        log_error("%s", err);
        j->status = EXIT_FATAL;
        goto done;
    }
    rd_set_idle(j->rd, on_idle, j);
    rec_t *r;
    int rc;
    while (!j->status && (rc = rd_next(j->rd, &r, err)) != 0) {
        if (rc == -2) {
            log_error("%s", err);
            j->status = EXIT_FATAL;
            break;
        }
        if (rc == -1 || rc == 2) {
            log_error("%s", err);
            if (st->strict) {
                rec_destroy(&r);
                j->status = EXIT_CHECK;
                break;
            }
            if (rc == -1)
                continue;
        }
        take(j, r);
    }
    flush(j);
done:
    for (int i = j->head; i < j->len; i++) /* what a stop left queued */
        slot_free(&j->q[i]);
    j->head = j->len = 0;
    /* a failed run leaves no partial output file behind */
    if (j->status == EXIT_FATAL)
        wr_abort(&j->w);
    else if (j->w && wr_close(&j->w, err)) {
        log_error("%s", err);
        j->status = EXIT_FATAL;
    }
    progress_done(&j->prog);
    rd_close(&j->rd);
    return j->status;
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
        {"batch", required_argument, 0, OPT_BATCH},
        {"dtype", required_argument, 0, OPT_DTYPE},
        {"sample", no_argument, 0, OPT_SAMPLE},
        {"seed", required_argument, 0, OPT_SEED},
        {"drop-pixels", no_argument, 0, OPT_DROP},
        {"vit", required_argument, 0, OPT_VIT},
        {0, 0, 0, 0},
    };
    job_t job = {.dtype = REC_BF16};
    const char *config = NULL, *vae = NULL, *device = "cpu", *precision = NULL, *vit = NULL;
    unsigned long long seed = 0, batch = 0;
    int c;
    while ((c = getopt_long(argc, argv, STAGE_SHORTOPTS, longopts, NULL)) != -1) {
        if (stage_option(&st, c, optarg, help))
            continue;
        switch (c) {
        case OPT_CONFIG: config = optarg; break;
        case OPT_VAE: vae = optarg; break;
        case OPT_DEVICE: device = optarg; break;
        case OPT_PRECISION: precision = optarg; break;
        case OPT_BATCH:
            if (stage_parse_range("batch", optarg, 1, AE_MAX_BATCH, &batch))
                return EXIT_USAGE;
            break;
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
        case OPT_VIT: vit = optarg; break;
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
    int rc_start = lat_start(&job.lat, &ops, device, precision, config, vae);
    if (rc_start)
        return rc_start;
    if (vit) { /* the ViT of the weights, in a model of one decoder layer */
        char err[1024];
        job.vcfg = job.lat.cfg;
        model_config_t *vc = &job.vcfg;
        if (!vc->visual_und) {
            log_error("--vit: the config %s has no ViT", vc->name);
            lat_close(&job.lat);
            compute_ops_done(ops);
            return EXIT_USAGE;
        }
        vc->layers = 1;
        job.vm = model_new(vc, ops, err, sizeof err);
        int extra = 0;
        if (!job.vm || (model_freeze(job.vm, ""), model_load(job.vm, NULL, vit, &extra, err, sizeof err))) {
            log_error("--vit %s: %s", vit, err);
            model_destroy(&job.vm);
            lat_close(&job.lat);
            compute_ops_done(ops);
            return EXIT_FATAL;
        }
        pack_init(&job.vpk, vc, &pack_default_opts, 1);
        log_info("vit=%s (%d layers, hidden %d)", vit, vc->vit_layers, vc->vit_hidden);
    }
    rng_seed(&job.rng, seed);
    /* the CPU's ops work image by image inside a batch, so batching gains
     * nothing there but memory: one image a call unless asked */
    job.batch = batch ? (int)batch : strcmp(ops->name, "cpu") ? 8 : 1;
    job.st = &st;
    int status = run(&st, &job);
    stage_counts_t n = job.n;
    double steady_s = job.encode_s - job.first_s;
    unsigned long long steady_n = job.images > job.first_images ? job.images - job.first_images : 0;
    log_info("samples=%llu rejects=%llu images=%llu passed=%llu batch=%d calls=%llu encode_s=%.3f images_per_s=%.1f "
             "steady_images_per_s=%.1f",
             (unsigned long long)n.samples, (unsigned long long)n.rejects, job.images, job.passed, job.batch, job.calls,
             job.encode_s, job.encode_s > 0 ? (double)job.images / job.encode_s : 0.0,
             steady_s > 0 && steady_n ? (double)steady_n / steady_s : 0.0);
    if (job.vm)
        log_info("vit_images=%llu", job.vit_images);
    model_destroy(&job.vm);
    pack_free(&job.vpk);
    lat_close(&job.lat);
    free(job.mo);
    free(job.q);
    compute_ops_done(ops);
    return stage_exit(status);
}
