/* bagel-generate — text and images from a trained model (docs/generate.md).
 *
 *   bagel-generate --model DIR [options] --prompt "a red circle"
 *   bagel-generate --model DIR --image in.png --prompt "make it blue"
 *   bagel-generate --model DIR --caption img.png [--prompt QUESTION]
 *   bagel-generate --model DIR [options] < records > records
 *
 * Command line: each --prompt is one job; it draws an image (an edit of
 * --image when given), or answers in text with --text or --caption. Output:
 * one JSON line per job on stdout, PNG files in --out-dir.
 *
 * Records: each sample generates its target, the segment marked
 * "generate": true, else its last segment with a loss; the segments before
 * it are the context (texts; images as their clean VAE copy when cond, their
 * ViT copy when und). The target gains "generated" (text) or
 * "generated_image" (u8 [H, W, 3]) and the record goes on; --rows writes
 * {"id", "prediction", "references"} lines for bagel-eval; a sample that
 * cannot be generated is a reject naming why. Records leave in input order;
 * samples are generated --batch at a time (sooner when the input pauses). */
#define _GNU_SOURCE
#include "../../ipc/endpoint.h"
#include "../../models/checkpoint.h"
#include "../../models/infer.h"
#include "../../models/rng.h"
#include "../common/compute_env.h"
#include "../common/latent.h"
#include "../common/log.h"
#include "../common/pngfile.h"
#include "../common/stage.h"
#include "../image/img.h"
#include "../image/resample.h"
#include "../tokenize/tok.h"
#include "../train/data.h"
#include "gen.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>

static const char help[] =
    "usage: bagel-generate --model DIR | --config NAME --init SEED [options] [PROMPTS]\n"
    "Text and images from a model: from prompts on the command line, or from sample records\n"
    "(docs/generate.md).\n"
    "Model:\n"
    "      --model DIR|FILE    a released BAGEL directory, a training checkpoint or a .safetensors file;\n"
    "                          its EMA weights (ema.safetensors) when it has them\n"
    "      --weights ema|model which file of a checkpoint directory (default ema, else model)\n"
    "      --config NAME|PATH  the model config (default: the --model directory's)\n"
    "      --init SEED         deterministic test weights instead of a checkpoint (tests, benchmarks)\n"
    "      --layers N          keep the first N decoder layers (benchmarks of one layer's shape)\n"
    "      --vae FILE          the FLUX autoencoder's ae.safetensors (default: DIR/ae.safetensors)\n"
    "      --tokenizer FILE    tokenizer.json (default: DIR/tokenizer.json)\n"
    "      --device cpu|cuda   (default cpu)     --precision fp32|bf16 (cuda default bf16)\n"
    "Prompts (each --prompt is one job; without any, records are read):\n"
    "      --prompt TEXT       draw an image of TEXT (repeatable)\n"
    "      --image FILE        edit this image by each prompt instead\n"
    "      --caption FILE      answer in text about this image (repeatable; its question is the\n"
    "                          --prompt of the same position, default \"Describe this image.\")\n"
    "      --text              answer the prompts in text instead of drawing\n"
    "      --out-dir DIR       write the images as PNG files here (default .)\n"
    "Records:\n"
    "      --rows FILE         JSON lines {\"id\",\"prediction\",\"references\"} for bagel-eval (text targets)\n"
    "Generation:\n"
    "      --max-tokens N      text: at most N new tokens (256)\n"
    "      --temperature T     text: 0 greedy (default), else sampled   --top-k K (0: all)  --top-p P (1)\n"
    "      --steps N           image: timesteps, N-1 model evaluations (50)\n"
    "      --shift S           image: timestep shift (3.0)\n"
    "      --cfg-text S        text CFG scale (4.0; 1 turns CFG off)\n"
    "      --cfg-img S         image CFG scale (2.0 for edits; 1 off)\n"
    "      --cfg-interval LO,HI  CFG where LO < t <= HI (0.4,1.0; edits 0.0,1.0)\n"
    "      --renorm global|channel|text_channel  CFG renormalization (global; edits text_channel)\n"
    "      --renorm-min X      (0.0)\n"
    "      --size WxH          text-to-image size in pixels (the largest square the model draws, up to 1024)\n"
    "      --seed N            job i uses seed N+i (noise, sampling, the conditioning image's draw) (1)\n"
    "      --batch N           jobs generated together (4)\n"
    "      --max-context N     tokens a context holds, prompt and generation together (4096)\n";

enum {
    O_MODEL = 1,
    O_WEIGHTS,
    O_CONFIG,
    O_INIT,
    O_LAYERS,
    O_VAE,
    O_TOKENIZER,
    O_DEVICE,
    O_PRECISION,
    O_PROMPT,
    O_IMAGE,
    O_CAPTION,
    O_TEXT,
    O_OUT_DIR,
    O_ROWS,
    O_MAX_TOKENS,
    O_TEMP,
    O_TOPK,
    O_TOPP,
    O_STEPS,
    O_SHIFT,
    O_CFG_TEXT,
    O_CFG_IMG,
    O_CFG_INT,
    O_RENORM,
    O_RENORM_MIN,
    O_SIZE,
    O_SEED,
    O_BATCH,
    O_MAX_CTX,
};

#define MAX_PROMPTS 1024

typedef struct app {
    stage_t st;
    const char *model, *weights, *config, *vae, *tokenizer, *device, *precision, *image, *out_dir, *rows_path;
    int init_seed_set, layers, text, batch, max_ctx, size_w, size_h;
    uint64_t init_seed, seed;
    const char *prompts[MAX_PROMPTS], *captions[MAX_PROMPTS];
    int n_prompts, n_captions;
    gen_opts_t go;
    int cfg_text_set, cfg_img_set, cfg_int_set, renorm_set;

    const op_table_t *ops;
    model_config_t cfg;
    model_t *m;
    lat_t lat;
    int lat_open;
    tok_t *tok;
    infer_t *e;
    FILE *rows;
    unsigned long long n_text, n_images, n_rejects;
} app_t;

/* ---- start-up ----------------------------------------------------------- */

static int file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

static int is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int load_model(app_t *a)
{
    char err[1024], path[4096];
    const char *cfg_src = a->config ? a->config : a->model;
    if (!cfg_src) {
        log_error("--model or --config: missing: name the model");
        return EXIT_USAGE;
    }
    if (a->model && !a->config && !is_dir(a->model)) {
        log_error("--config: missing: %s is a file; name its config", a->model);
        return EXIT_USAGE;
    }
    if (model_config_load(&a->cfg, cfg_src, NULL, err, sizeof err)) {
        log_error("%s", err);
        return EXIT_USAGE;
    }
    if (a->layers > 0) {
        if (a->layers > a->cfg.layers) {
            log_error("--layers %d: the model has %d", a->layers, a->cfg.layers);
            return EXIT_USAGE;
        }
        a->cfg.layers = a->layers;
    }
    a->m = model_new(&a->cfg, a->ops, err, sizeof err);
    if (!a->m) {
        log_error("%s", err);
        return EXIT_FATAL;
    }
    model_freeze(a->m, ""); /* no gradients: inference only */
    if (a->init_seed_set) {
        model_init_test(a->m, a->init_seed);
        log_info("weights: deterministic test weights, seed %llu", (unsigned long long)a->init_seed);
        return 0;
    }
    if (!a->model) {
        log_error("--model or --init: missing: the weights");
        return EXIT_USAGE;
    }
    snprintf(path, sizeof path, "%s", a->model);
    if (is_dir(a->model)) {
        const char *w = a->weights ? a->weights : "ema";
        if (strcmp(w, "ema") && strcmp(w, "model")) {
            log_error("--weights %s: expected ema or model", w);
            return EXIT_USAGE;
        }
        snprintf(path, sizeof path, "%s/%s.safetensors", a->model, w);
        if (!a->weights && !file_exists(path))
            snprintf(path, sizeof path, "%s", a->model); /* its model.safetensors or index */
    }
    int extra = 0;
    if (model_load(a->m, NULL, path, &extra, err, sizeof err)) {
        log_error("%s: %s", path, err);
        return EXIT_FATAL;
    }
    log_info("weights: %s%s%s", path, extra ? "; " : "", extra ? err : "");
    return 0;
}

static int open_aux(app_t *a)
{
    char err[1024], path[4096];
    /* the autoencoder: FLUX's needs its file, the identity none */
    const char *vae = a->vae;
    if (!vae && a->cfg.ae != MODEL_AE_IDENTITY && a->model && is_dir(a->model)) {
        snprintf(path, sizeof path, "%s/ae.safetensors", a->model);
        if (file_exists(path))
            vae = path;
    }
    if (a->cfg.visual_gen || a->cfg.visual_und) {
        if (a->cfg.ae != MODEL_AE_IDENTITY && !vae) {
            log_info("no --vae: images can be neither encoded nor decoded; text only");
        } else {
            if (lat_open(&a->lat, &a->cfg, a->cfg.ae == MODEL_AE_IDENTITY ? NULL : vae, a->ops, err, sizeof err)) {
                log_error("%s", err);
                return EXIT_FATAL;
            }
            a->lat_open = 1;
        }
    }
    const char *tk = a->tokenizer;
    if (!tk && a->model && is_dir(a->model)) {
        snprintf(path, sizeof path, "%s/tokenizer.json", a->model);
        if (file_exists(path))
            tk = path;
    }
    if (tk) {
        char e2[TOK_ERR_LEN];
        a->tok = tok_load(tk, e2);
        if (!a->tok) {
            log_error("--tokenizer %s: %s", tk, e2);
            return EXIT_FATAL;
        }
    }
    a->e = infer_new(a->m, gen_slots(a->batch), a->max_ctx, err, sizeof err);
    if (!a->e) {
        log_error("%s", err);
        return EXIT_FATAL;
    }
    return 0;
}

/* ---- inputs -------------------------------------------------------------- */

/* An image file: resized by the VAE rule, then that by the ViT rule, as the
 * inferencer prepares an input image (§6.1). */
static int read_image(app_t *a, const char *path, img_out_t *vae, img_out_t *vit, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 20, n = 0;
    unsigned char *buf = malloc(cap);
    for (size_t r; buf && (r = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += r;
        if (n == cap) {
            unsigned char *g = realloc(buf, cap *= 2);
            if (!g)
                free(buf);
            buf = g;
        }
    }
    fclose(f);
    if (!buf) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    img_opts_t o;
    img_opts_default(&o);
    const model_config_t *c = &a->cfg;
    o.vae.max_edge = c->vae_max, o.vae.min_edge = c->vae_min, o.vae.stride = model_latent_stride(c);
    o.vit.max_edge = c->vit_max, o.vit.min_edge = c->vit_min, o.vit.stride = c->vit_patch;
    char e2[IMG_ERR_LEN];
    img_want_t want = {.vit_num = 0, .vae_num = 1};
    img_out_t none;
    int rc = img_decode(buf, n, &o, want, &none, vae, e2);
    free(buf);
    if (rc) {
        snprintf(err, errlen, "%s: %s", path, e2);
        return -1;
    }
    int w, h;
    img_target_size(&o.vit, vae->w, vae->h, 1, &w, &h);
    vit->data = malloc((size_t)w * h * 3);
    vit->w = w, vit->h = h, vit->shrunk = 1;
    if (!vit->data || img_resample(vae->data, vae->w, vae->h, vit->data, w, h, IMG_SIMD_AVX512)) {
        img_out_free(vae);
        free(vit->data);
        snprintf(err, errlen, "%s: cannot resize to %dx%d for the ViT", path, w, h);
        return -1;
    }
    return 0;
}

static char *detok(app_t *a, const int32_t *ids, int n) { return gen_text(a->tok, ids, n); }

/* ---- the command line's jobs -------------------------------------------- */

typedef struct cli_job {
    tok_ids_t ids;
    img_out_t vae, vit;
    float *lat; /* the VAE condition's tokens */
    infer_chunk_t ch[3];
} cli_job_t;

static int run_cli(app_t *a)
{
    char err[1024];
    const model_config_t *c = &a->cfg;
    int edit = a->image != NULL, caption = a->n_captions > 0;
    int want_image = !a->text && !caption;
    int n = caption ? a->n_captions : a->n_prompts;
    if (!a->tok) {
        log_error("--tokenizer: missing: prompts need the tokenizer (or a --model directory with tokenizer.json)");
        return EXIT_USAGE;
    }
    if (want_image && (!c->visual_gen || !a->lat_open)) {
        log_error("%s", !c->visual_gen ? "the model has no generation branch: use --text"
                                       : "--vae: missing: drawing needs the autoencoder");
        return EXIT_USAGE;
    }
    if ((edit || caption) && !c->visual_und && !(edit && c->visual_gen)) {
        log_error("the model has no ViT for input images");
        return EXIT_USAGE;
    }
    int stride = model_latent_stride(c);
    int W = a->size_w, H = a->size_h;
    if (W <= 0) {
        int side = c->max_latent_size * stride;
        W = H = side < 1024 ? side : 1024;
    }
    if (want_image && !edit && (W % stride || H % stride || W / stride > c->max_latent_size ||
                                H / stride > c->max_latent_size)) {
        log_error("--size %dx%d: must be multiples of %d up to %d pixels a side", W, H, stride,
                  c->max_latent_size * stride);
        return EXIT_USAGE;
    }
    cli_job_t *cj = calloc((size_t)n, sizeof *cj);
    gen_job_t *jobs = calloc((size_t)n, sizeof *jobs);
    int status = EXIT_OK;
    if (!cj || !jobs) {
        log_error("out of memory");
        free(cj), free(jobs);
        return EXIT_FATAL;
    }
    img_out_t ev = {0}, et = {0};
    float *elat = NULL;
    for (int i = 0; i < n && status == EXIT_OK; i++) {
        const char *prompt = caption ? (i < a->n_prompts ? a->prompts[i] : "Describe this image.") : a->prompts[i];
        char e2[TOK_ERR_LEN];
        if (tok_encode(a->tok, prompt, strlen(prompt), &cj[i].ids, e2)) {
            log_error("prompt %d: %s", i, e2);
            status = EXIT_USAGE;
            break;
        }
        int k = 0;
        const char *img_path = caption ? a->captions[i] : a->image;
        if (img_path) {
            img_out_t *vae = &cj[i].vae, *vit = &cj[i].vit;
            if (edit && !caption && ev.data) { /* one input image for every prompt */
                *vae = ev, *vit = et;
            } else if (read_image(a, img_path, vae, vit, err, sizeof err)) {
                log_error("%s", err);
                status = EXIT_USAGE;
                break;
            }
            if (edit && !caption && !ev.data)
                ev = *vae, et = *vit;
            if (!caption) { /* an edit sees the image through the VAE, then the ViT */
                int gh = vae->h / stride, gw = vae->w / stride;
                if (!elat) {
                    elat = malloc((size_t)gh * gw * model_latent_dim(c) * sizeof(float));
                    if (!elat || gen_latent_of(&a->lat, c, vae->data, vae->h, vae->w, a->seed, elat, err, sizeof err)) {
                        log_error("%s: %s", img_path, elat ? err : "out of memory");
                        status = EXIT_FATAL;
                        break;
                    }
                }
                cj[i].ch[k++] = (infer_chunk_t){.kind = INFER_VAE, .lat = elat, .gh = gh, .gw = gw};
                W = vae->w, H = vae->h;
            }
            if (c->visual_und)
                cj[i].ch[k++] = (infer_chunk_t){.kind = INFER_VIT, .img = vit->data, .img_h = vit->h, .img_w = vit->w};
        }
        cj[i].ch[k++] = (infer_chunk_t){.kind = INFER_TEXT, .ids = cj[i].ids.ids, .n_ids = (int)cj[i].ids.n};
        jobs[i] = (gen_job_t){.want_image = want_image, .n_chunks = k, .chunks = cj[i].ch, .gh = H / stride,
                              .gw = W / stride, .seed = a->seed + (uint64_t)i};
    }
    if (status == EXIT_OK && gen_run(a->e, c, jobs, n, &a->go, err, sizeof err)) {
        log_error("%s", err);
        status = EXIT_FATAL;
    }
    for (int i = 0; i < n && status == EXIT_OK; i++) {
        gen_job_t *g = &jobs[i];
        json_t *row = json_object();
        json_object_set_new(row, "prompt", json_string(caption ? (i < a->n_prompts ? a->prompts[i] : "")
                                                               : a->prompts[i]));
        if (caption)
            json_object_set_new(row, "image", json_string(a->captions[i]));
        if (g->failed) {
            log_error("prompt %d: %s", i, g->err);
            json_object_set_new(row, "error", json_string(g->err));
            a->n_rejects++;
        } else if (g->want_image) {
            char path[4096];
            snprintf(path, sizeof path, "%s/image_%03d.png", a->out_dir, i);
            uint8_t *px = malloc((size_t)H * W * 3);
            if (!px || gen_pixels(&a->lat, c, g->lat, g->gh, g->gw, px, err, sizeof err) ||
                png_write_rgb(path, px, g->gh * stride, g->gw * stride, err, sizeof err)) {
                log_error("prompt %d: %s", i, px ? err : "out of memory");
                status = EXIT_FATAL;
            }
            free(px);
            json_object_set_new(row, "file", json_string(path));
            a->n_images++;
        } else {
            char *t = detok(a, g->ids, g->n_ids);
            json_object_set_new(row, "text", json_string(t ? t : ""));
            json_object_set_new(row, "stopped", json_boolean(g->stopped));
            free(t);
            a->n_text++;
        }
        char *line = json_dumps(row, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (line)
            printf("%s\n", line);
        free(line);
        json_decref(row);
    }
    fflush(stdout);
    for (int i = 0; i < n; i++) {
        gen_job_clear(&jobs[i]);
        tok_ids_free(&cj[i].ids);
        if (cj[i].vae.data != ev.data)
            img_out_free(&cj[i].vae);
        if (cj[i].vit.data != et.data)
            free(cj[i].vit.data);
    }
    img_out_free(&ev);
    free(et.data);
    free(elat);
    free(cj), free(jobs);
    return status == EXIT_OK && a->n_rejects ? EXIT_CHECK : status;
}

/* ---- records ------------------------------------------------------------- */

typedef struct pend {
    rec_t *r;
    int sample, bad;
    char why[REC_ERR_LEN];
    gen_rec_t g;
} pend_t;

#define QMAX 256

typedef struct rq {
    app_t *a;
    rd_t *rd;
    wr_t *w;
    pend_t q[QMAX];
    int n, n_samples;
    int status;
    uint64_t ordinal;
} rq_t;

static void pend_free(pend_t *p)
{
    rec_destroy(&p->r);
    gen_rec_free(&p->g);
    memset(p, 0, sizeof *p);
}

/* a sample record to a job; 0, or -1 with p->why (the sample is rejected) */
static int make_job(app_t *a, pend_t *p, uint64_t seed)
{
    if (gen_rec_job(&p->g, p->r, &a->cfg, a->lat_open ? &a->lat : NULL, seed, p->why))
        return -1;
    if (!p->g.job.want_image && !a->tok) {
        snprintf(p->why, sizeof p->why, "a text target but no tokenizer (--tokenizer)");
        return -1;
    }
    return 0;
}

/* the generated output into the record, and the eval row */
static int finish(rq_t *q, pend_t *p)
{
    app_t *a = q->a;
    const model_config_t *c = &a->cfg;
    char err[1024], id[160];
    rec_id(p->r, id, sizeof id);
    msgpack_object *segs = rec_map_getw(&p->r->root, "segments");
    msgpack_object *tg = &segs->via.array.ptr[p->g.target];
    gen_job_t *g = &p->g.job;
    if (!g->want_image) {
        char *t = detok(a, g->ids, g->n_ids);
        if (!t)
            return -1;
        rec_tensor_t tt = {.dtype = REC_I32, .ndim = 1, .shape = {g->n_ids}, .data = g->ids,
                           .nbytes = (size_t)g->n_ids * 4};
        msgpack_object to;
        char e2[REC_ERR_LEN];
        if (rec_set(p->r, tg, "generated", rec_str(p->r, t)) || rec_tensor_obj(p->r, &tt, true, &to, e2) ||
            rec_set(p->r, tg, "generated_tokens", to)) {
            free(t);
            return -1;
        }
        if (q->a->rows) {
            json_t *row = json_object(), *refs = json_array();
            char ref[65536];
            if (rec_get_str(tg, "text", ref, sizeof ref))
                json_array_append_new(refs, json_string(ref));
            json_object_set_new(row, "id", json_string(id));
            json_object_set_new(row, "prediction", json_string(t));
            json_object_set_new(row, "references", refs);
            char *line = json_dumps(row, JSON_COMPACT);
            if (line)
                fprintf(a->rows, "%s\n", line);
            free(line);
            json_decref(row);
        }
        free(t);
        a->n_text++;
        return 0;
    }
    int st = model_latent_stride(c), H = g->gh * st, W = g->gw * st;
    uint8_t *px = malloc((size_t)H * W * 3);
    if (!px || gen_pixels(&a->lat, c, g->lat, g->gh, g->gw, px, err, sizeof err)) {
        log_error("%s: %s", id, px ? err : "out of memory");
        free(px);
        return -1;
    }
    rec_tensor_t ti = {.dtype = REC_U8, .ndim = 3, .shape = {H, W, 3}, .data = px, .nbytes = (size_t)H * W * 3};
    msgpack_object io;
    char e2[REC_ERR_LEN];
    int rc = rec_tensor_obj(p->r, &ti, true, &io, e2) || rec_set(p->r, tg, "generated_image", io);
    if (!rc && a->out_dir) {
        char path[4096], safe[160];
        png_safe_name(safe, sizeof safe, id);
        snprintf(path, sizeof path, "%s/%s.png", a->out_dir, safe);
        if (png_write_rgb(path, px, H, W, err, sizeof err))
            log_error("%s", err);
        else
            rc = rec_set(p->r, tg, "generated_path", rec_str(p->r, path));
    }
    free(px);
    a->n_images++;
    return rc ? -1 : 0;
}

static void flush(rq_t *q)
{
    app_t *a = q->a;
    char err[1024];
    if (q->n == 0)
        return;
    gen_job_t *jobs = calloc((size_t)q->n, sizeof *jobs);
    int *map = calloc((size_t)q->n, sizeof(int)), nj = 0;
    if (!jobs || !map) {
        log_error("out of memory");
        q->status = EXIT_FATAL;
        free(jobs), free(map);
        return;
    }
    for (int i = 0; i < q->n; i++)
        if (q->q[i].sample && !q->q[i].bad)
            jobs[nj] = q->q[i].g.job, map[nj++] = i;
    if (nj && gen_run(a->e, &a->cfg, jobs, nj, &a->go, err, sizeof err)) {
        log_error("%s", err);
        q->status = EXIT_FATAL;
    }
    for (int j = 0; j < nj; j++)
        q->q[map[j]].g.job = jobs[j];
    free(jobs), free(map);
    for (int i = 0; i < q->n && q->status != EXIT_FATAL; i++) {
        pend_t *p = &q->q[i];
        if (p->sample && !p->bad && p->g.job.failed)
            p->bad = 1, snprintf(p->why, sizeof p->why, "%s", p->g.job.err);
        if (p->sample && !p->bad && finish(q, p))
            p->bad = 1, snprintf(p->why, sizeof p->why, "cannot add the generation to the record");
        if (p->bad) {
            char id[160];
            log_error("%s: %s", rec_id(p->r, id, sizeof id), p->why);
            rec_t *rj = rec_new_reject(p->r, a->st.name, p->why);
            if (!rj) {
                q->status = EXIT_FATAL;
                break;
            }
            rec_destroy(&p->r);
            p->r = rj;
            a->n_rejects++;
        }
        if (wr_put(q->w, p->r, err)) {
            log_error("%s", err);
            q->status = EXIT_FATAL;
        }
    }
    for (int i = 0; i < q->n; i++)
        pend_free(&q->q[i]);
    q->n = q->n_samples = 0;
    if (q->status != EXIT_FATAL && wr_flush(q->w, err)) {
        log_error("%s", err);
        q->status = EXIT_FATAL;
    }
    if (a->rows)
        fflush(a->rows);
}

static void on_idle(void *arg)
{
    rq_t *q = arg;
    if (q->n_samples)
        flush(q);
}

static int run_records(app_t *a)
{
    char err[REC_ERR_LEN + 256];
    static const char *const dash[] = {"-"};
    stage_t *st = &a->st;
    rq_t *q = calloc(1, sizeof *q);
    if (!q) {
        log_error("out of memory");
        return EXIT_FATAL;
    }
    q->a = a;
    q->rd = rd_open(st->ninputs ? st->inputs : dash, st->ninputs ? st->ninputs : 1, &st->so, err);
    q->w = q->rd ? wr_open(st->output, &st->so, err) : NULL;
    if (!q->rd || !q->w) {
        log_error("%s", err);
        rd_close(&q->rd);
        free(q);
        return EXIT_FATAL;
    }
    rd_set_idle(q->rd, on_idle, q);
    rec_t *r;
    int rc;
    while (q->status != EXIT_FATAL && (rc = rd_next(q->rd, &r, err)) != 0) {
        if (rc == -2) {
            log_error("%s", err);
            q->status = EXIT_FATAL;
            break;
        }
        if (rc == -1 || rc == 2) {
            log_error("%s", err);
            if (st->strict) {
                rec_destroy(&r);
                q->status = EXIT_CHECK;
                break;
            }
            if (rc == -1)
                continue;
        }
        pend_t *p = &q->q[q->n++];
        memset(p, 0, sizeof *p);
        p->r = r;
        if (r->type == REC_SAMPLE) {
            p->sample = 1;
            q->n_samples++;
            if (make_job(a, p, a->seed + q->ordinal))
                p->bad = 1;
            q->ordinal++;
        } else if (r->type == REC_REJECT) {
            a->n_rejects++;
        }
        if (q->n_samples >= a->batch || q->n == QMAX || r->type == REC_END)
            flush(q);
    }
    flush(q);
    if (q->status == EXIT_FATAL)
        wr_abort(&q->w);
    else if (wr_close(&q->w, err)) {
        log_error("%s", err);
        q->status = EXIT_FATAL;
    }
    rd_close(&q->rd);
    int status = q->status;
    free(q);
    return status;
}

/* ---- main ---------------------------------------------------------------- */

static int parse_float(const char *opt, const char *s, float lo, float hi, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        log_error("%s %s: expected a number in [%g, %g]", opt, s, lo, hi);
        return -1;
    }
    *out = (float)v;
    return 0;
}

static int parse_int(const char *opt, const char *s, long lo, long hi, long *out)
{
    unsigned long long v;
    if (stage_parse_range(opt, s, (unsigned long long)lo, (unsigned long long)hi, &v))
        return -1;
    *out = (long)v;
    return 0;
}

int main(int argc, char **argv)
{
    app_t *a = calloc(1, sizeof *a);
    if (!a)
        return EXIT_FATAL;
    stage_init(&a->st, "bagel-generate");
    static const struct option longopts[] = {
        STAGE_LONGOPTS,
        {"model", required_argument, 0, O_MODEL},
        {"weights", required_argument, 0, O_WEIGHTS},
        {"config", required_argument, 0, O_CONFIG},
        {"init", required_argument, 0, O_INIT},
        {"layers", required_argument, 0, O_LAYERS},
        {"vae", required_argument, 0, O_VAE},
        {"tokenizer", required_argument, 0, O_TOKENIZER},
        {"device", required_argument, 0, O_DEVICE},
        {"precision", required_argument, 0, O_PRECISION},
        {"prompt", required_argument, 0, O_PROMPT},
        {"image", required_argument, 0, O_IMAGE},
        {"caption", required_argument, 0, O_CAPTION},
        {"text", no_argument, 0, O_TEXT},
        {"out-dir", required_argument, 0, O_OUT_DIR},
        {"rows", required_argument, 0, O_ROWS},
        {"max-tokens", required_argument, 0, O_MAX_TOKENS},
        {"temperature", required_argument, 0, O_TEMP},
        {"top-k", required_argument, 0, O_TOPK},
        {"top-p", required_argument, 0, O_TOPP},
        {"steps", required_argument, 0, O_STEPS},
        {"shift", required_argument, 0, O_SHIFT},
        {"cfg-text", required_argument, 0, O_CFG_TEXT},
        {"cfg-img", required_argument, 0, O_CFG_IMG},
        {"cfg-interval", required_argument, 0, O_CFG_INT},
        {"renorm", required_argument, 0, O_RENORM},
        {"renorm-min", required_argument, 0, O_RENORM_MIN},
        {"size", required_argument, 0, O_SIZE},
        {"seed", required_argument, 0, O_SEED},
        {"batch", required_argument, 0, O_BATCH},
        {"max-context", required_argument, 0, O_MAX_CTX},
        {0, 0, 0, 0},
    };
    a->device = "cpu";
    a->batch = 4;
    a->max_ctx = 4096;
    a->seed = 1;
    a->go.text = infer_text_defaults;
    a->go.image = infer_image_defaults;
    a->go.image.cfg_text_scale = 4.0f;
    int c, bad = 0;
    long v;
    while (!bad && (c = getopt_long(argc, argv, STAGE_SHORTOPTS, longopts, NULL)) != -1) {
        if (stage_option(&a->st, c, optarg, help))
            continue;
        switch (c) {
        case O_MODEL: a->model = optarg; break;
        case O_WEIGHTS: a->weights = optarg; break;
        case O_CONFIG: a->config = optarg; break;
        case O_INIT: {
            unsigned long long s;
            bad = stage_parse_size("--init", optarg, &s);
            a->init_seed = s, a->init_seed_set = 1;
            break;
        }
        case O_LAYERS: bad = parse_int("--layers", optarg, 1, 1024, &v), a->layers = (int)v; break;
        case O_VAE: a->vae = optarg; break;
        case O_TOKENIZER: a->tokenizer = optarg; break;
        case O_DEVICE: a->device = optarg; break;
        case O_PRECISION: a->precision = optarg; break;
        case O_PROMPT:
            if (a->n_prompts == MAX_PROMPTS) {
                log_error("--prompt: at most %d", MAX_PROMPTS);
                bad = 1;
            } else {
                a->prompts[a->n_prompts++] = optarg;
            }
            break;
        case O_IMAGE: a->image = optarg; break;
        case O_CAPTION:
            if (a->n_captions == MAX_PROMPTS) {
                log_error("--caption: at most %d", MAX_PROMPTS);
                bad = 1;
            } else {
                a->captions[a->n_captions++] = optarg;
            }
            break;
        case O_TEXT: a->text = 1; break;
        case O_OUT_DIR: a->out_dir = optarg; break;
        case O_ROWS: a->rows_path = optarg; break;
        case O_MAX_TOKENS: bad = parse_int("--max-tokens", optarg, 1, 1 << 20, &v), a->go.text.max_tokens = (int)v; break;
        case O_TEMP: bad = parse_float("--temperature", optarg, 0, 100, &a->go.text.temperature); break;
        case O_TOPK: bad = parse_int("--top-k", optarg, 0, 1 << 24, &v), a->go.text.top_k = (int)v; break;
        case O_TOPP: bad = parse_float("--top-p", optarg, 1e-6f, 1, &a->go.text.top_p); break;
        case O_STEPS: bad = parse_int("--steps", optarg, 2, 10000, &v), a->go.image.num_timesteps = (int)v; break;
        case O_SHIFT: bad = parse_float("--shift", optarg, 1e-3f, 1e3f, &a->go.image.timestep_shift); break;
        case O_CFG_TEXT:
            bad = parse_float("--cfg-text", optarg, 0, 100, &a->go.image.cfg_text_scale), a->cfg_text_set = 1;
            break;
        case O_CFG_IMG:
            bad = parse_float("--cfg-img", optarg, 0, 100, &a->go.image.cfg_img_scale), a->cfg_img_set = 1;
            break;
        case O_CFG_INT: {
            float lo = 0.0f, hi = 1.0f;
            char *comma = strchr(optarg, ',');
            if (!comma) {
                log_error("--cfg-interval %s: expected LO,HI", optarg);
                bad = 1;
                break;
            }
            *comma = 0;
            bad = parse_float("--cfg-interval", optarg, -1, 2, &lo) || parse_float("--cfg-interval", comma + 1, -1, 2, &hi);
            a->go.image.cfg_lo = lo, a->go.image.cfg_hi = hi, a->cfg_int_set = 1;
            break;
        }
        case O_RENORM:
            if (!strcmp(optarg, "global"))
                a->go.image.renorm = INFER_RENORM_GLOBAL;
            else if (!strcmp(optarg, "channel"))
                a->go.image.renorm = INFER_RENORM_CHANNEL;
            else if (!strcmp(optarg, "text_channel"))
                a->go.image.renorm = INFER_RENORM_TEXT_CHANNEL;
            else {
                log_error("--renorm %s: expected global, channel or text_channel", optarg);
                bad = 1;
            }
            a->renorm_set = 1;
            break;
        case O_RENORM_MIN: bad = parse_float("--renorm-min", optarg, 0, 1, &a->go.image.renorm_min); break;
        case O_SIZE:
            if (sscanf(optarg, "%dx%d", &a->size_w, &a->size_h) != 2 || a->size_w <= 0 || a->size_h <= 0) {
                log_error("--size %s: expected WxH", optarg);
                bad = 1;
            }
            break;
        case O_SEED: {
            unsigned long long s;
            bad = stage_parse_size("--seed", optarg, &s);
            a->seed = s;
            break;
        }
        case O_BATCH: bad = parse_int("--batch", optarg, 1, 64, &v), a->batch = (int)v; break;
        case O_MAX_CTX: bad = parse_int("--max-context", optarg, 16, 1 << 22, &v), a->max_ctx = (int)v; break;
        default: bad = 1;
        }
    }
    for (int i = optind; i < argc && !bad; i++)
        stage_option(&a->st, OPT_IN, argv[i], help);
    if (bad) {
        free(a);
        return EXIT_USAGE;
    }
    /* an edit's defaults are the app's: text 4, image 2, interval [0, 1], text_channel */
    if (a->image) {
        if (!a->cfg_img_set)
            a->go.image.cfg_img_scale = 2.0f;
        if (!a->cfg_int_set)
            a->go.image.cfg_lo = 0.0f;
        if (!a->renorm_set)
            a->go.image.renorm = INFER_RENORM_TEXT_CHANNEL;
    }
    a->go.batch = a->batch;
    int cli = a->n_prompts > 0 || a->n_captions > 0;
    if (!cli && a->image) {
        log_error("--image: needs --prompt (the edit instruction)");
        free(a);
        return EXIT_USAGE;
    }
    if (!a->out_dir && cli)
        a->out_dir = ".";
    char err[512];
    double peak;
    if (compute_ops(a->device, a->precision, &a->ops, &peak, err, sizeof err)) {
        log_error("%s", err);
        free(a);
        return EXIT_USAGE;
    }
    int status = load_model(a);
    if (!status)
        status = open_aux(a);
    if (!status && a->out_dir && mkdir(a->out_dir, 0777) && errno != EEXIST) {
        log_error("--out-dir %s: %s", a->out_dir, strerror(errno));
        status = EXIT_FATAL;
    }
    if (!status && a->rows_path && !(a->rows = fopen(a->rows_path, "w"))) {
        log_error("--rows %s: %s", a->rows_path, strerror(errno));
        status = EXIT_FATAL;
    }
    if (!status && VIPS_INIT(argv[0])) {
        log_error("libvips: cannot start: %s", vips_error_buffer());
        status = EXIT_FATAL;
    }
    if (!status) {
        vips_cache_set_max(0);
        status = cli ? run_cli(a) : run_records(a);
        log_info("texts=%llu images=%llu rejects=%llu", a->n_text, a->n_images, a->n_rejects);
        vips_shutdown();
    }
    if (a->rows && fclose(a->rows)) {
        log_error("--rows %s: %s", a->rows_path, strerror(errno));
        status = EXIT_FATAL;
    }
    infer_destroy(&a->e);
    if (a->lat_open)
        lat_close(&a->lat);
    tok_destroy(&a->tok);
    model_destroy(&a->m);
    compute_ops_done(a->ops);
    free(a);
    return stage_exit(status);
}
