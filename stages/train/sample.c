/* sample.c — see sample.h. */
#include "sample.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <vips/vips.h>

#include "../../ipc/stream.h"
#include "../common/log.h"
#include "../common/pngfile.h"
#include "../generate/gen.h"
#include "../tokenize/tok.h"

#define MAX_PROMPTS 64

typedef struct prompt {
    rec_t *r;
    gen_rec_t g;
    int edit;              /* an image target with an image in its context */
    char *text, *ref_text; /* what the prompt says; the target's text */
    int has_ref_image;
} prompt_t;

struct sampler {
    sampler_opts_t o;
    model_config_t cfg;
    const op_table_t *ops;
    model_t *m;
    infer_t *e;
    lat_t lat;
    int lat_open;
    tok_t *tok;
    prompt_t p[MAX_PROMPTS];
    int n;
};

/* the texts of a record's segments before the target, images as [image] */
static char *prompt_text(const rec_t *r, int target)
{
    const msgpack_object *segs = rec_get(r, "segments");
    size_t cap = 256, n = 0;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    s[0] = 0;
    for (int i = 0; i < target; i++) {
        const msgpack_object *m = &segs->via.array.ptr[i];
        char buf[2048];
        const char *piece = "[image]";
        if (rec_get_str(m, "text", buf, sizeof buf))
            piece = buf;
        size_t k = strlen(piece);
        if (n + k + 2 > cap) {
            char *g = realloc(s, cap = 2 * (n + k + 2));
            if (!g) {
                free(s);
                return NULL;
            }
            s = g;
        }
        if (n)
            s[n++] = ' ';
        memcpy(s + n, piece, k + 1);
        n += k;
    }
    return s;
}

static void prompt_free(prompt_t *p)
{
    gen_rec_free(&p->g);
    rec_destroy(&p->r);
    free(p->text);
    free(p->ref_text);
}

/* the target's picture, and the first image of the context, as PNG files */
static void write_refs(sampler_t *s, int k)
{
    prompt_t *p = &s->p[k];
    char path[4200], err[600];
    const pack_segment_t *t = &p->g.ds.seg[p->g.target];
    if (t->kind == PACK_IMAGE && t->vae) {
        snprintf(path, sizeof path, "%s/samples/ref-%d.png", s->o.run_dir, k);
        if (png_write_rgb(path, t->vae, t->vae_h, t->vae_w, err, sizeof err))
            log_error("samples: %s", err);
        else
            p->has_ref_image = 1;
    }
    for (int i = 0; i < p->g.target; i++) {
        const pack_segment_t *g = &p->g.ds.seg[i];
        if (g->kind != PACK_IMAGE || !(g->vae || g->vit))
            continue;
        snprintf(path, sizeof path, "%s/samples/in-%d.png", s->o.run_dir, k);
        if (png_write_rgb(path, g->vae ? g->vae : g->vit, g->vae ? g->vae_h : g->vit_h, g->vae ? g->vae_w : g->vit_w, err,
                      sizeof err))
            log_error("samples: %s", err);
        break;
    }
}

sampler_t *sampler_open(const sampler_opts_t *o, const model_config_t *cfg, const op_table_t *ops, char *err,
                        size_t errlen)
{
    static int vips_started;
    if (!vips_started) {
        if (VIPS_INIT("bagel-train")) {
            snprintf(err, errlen, "libvips: cannot start: %s", vips_error_buffer());
            return NULL;
        }
        vips_cache_set_max(0);
        vips_started = 1;
    }
    sampler_t *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->o = *o;
    s->cfg = *cfg;
    s->ops = ops;
    if (s->o.count <= 0 || s->o.count > MAX_PROMPTS)
        s->o.count = s->o.count <= 0 ? 6 : MAX_PROMPTS;
    char e2[600], path[4200];
    if (cfg->visual_gen && (cfg->ae == MODEL_AE_IDENTITY || o->vae)) {
        if (lat_open(&s->lat, cfg, cfg->ae == MODEL_AE_IDENTITY ? NULL : o->vae, ops, e2, sizeof e2)) {
            snprintf(err, errlen, "%s", e2);
            goto fail;
        }
        s->lat_open = 1;
    }
    if (o->tokenizer) {
        char te[TOK_ERR_LEN];
        s->tok = tok_load(o->tokenizer, te);
        if (!s->tok) {
            snprintf(err, errlen, "%s: %s", o->tokenizer, te);
            goto fail;
        }
    }
    /* the prompts: the file's first sample records */
    stream_opts_t so;
    stream_opts_default(&so);
    const char *spec[1] = {o->prompts};
    rd_t *rd = rd_open(spec, 1, &so, e2);
    if (!rd) {
        snprintf(err, errlen, "%s", e2);
        goto fail;
    }
    rec_t *r;
    int rc, seen = 0;
    long rows = 16;
    while (s->n < s->o.count && (rc = rd_next(rd, &r, e2)) != 0) {
        if (rc < 0 || !r || r->type != REC_SAMPLE) {
            rec_destroy(&r);
            continue;
        }
        prompt_t *p = &s->p[s->n];
        char why[REC_ERR_LEN], id[160];
        seen++;
        if (gen_rec_job(&p->g, r, cfg, s->lat_open ? &s->lat : NULL, (uint64_t)(s->n + 1), why) ||
            (!p->g.job.want_image && !s->tok && snprintf(why, sizeof why, "a text target but no --tokenizer"))) {
            log_error("samples: %s: %s: not used", rec_id(r, id, sizeof id), why);
            gen_rec_free(&p->g);
            rec_destroy(&r);
            continue;
        }
        p->r = r;
        p->text = prompt_text(r, p->g.target);
        char buf[4096];
        const msgpack_object *segs = rec_get(r, "segments");
        if (rec_get_str(&segs->via.array.ptr[p->g.target], "text", buf, sizeof buf))
            p->ref_text = strdup(buf);
        for (int c = 0; c < p->g.n_ch; c++)
            p->edit |= p->g.job.want_image && p->g.ch[c].kind != INFER_TEXT;
        long need = 16 + gen_context_tokens(cfg, &p->g.job) +
                    (p->g.job.want_image ? (long)p->g.job.gh * p->g.job.gw + 2 : o->max_tokens + 1);
        rows = need > rows ? need : rows;
        s->n++;
    }
    rd_close(&rd);
    if (!s->n) {
        snprintf(err, errlen, "%s: no usable sample among the %d read", o->prompts, seen);
        goto fail;
    }
    s->m = model_new(cfg, ops, e2, sizeof e2);
    if (!s->m) {
        snprintf(err, errlen, "%s", e2);
        goto fail;
    }
    model_freeze(s->m, "");
    s->e = infer_new(s->m, gen_slots(s->n), (int)rows, e2, sizeof e2);
    if (!s->e) {
        snprintf(err, errlen, "%s", e2);
        goto fail;
    }
    snprintf(path, sizeof path, "%s/samples", o->run_dir);
    if (mkdir(path, 0777) && errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    for (int k = 0; k < s->n; k++)
        write_refs(s, k);
    log_info("samples: %d prompts from %s", s->n, o->prompts);
    return s;
fail:
    sampler_close(&s);
    return NULL;
}

void sampler_close(sampler_t **ps)
{
    sampler_t *s = *ps;
    if (!s)
        return;
    for (int k = 0; k < s->n; k++)
        prompt_free(&s->p[k]);
    infer_destroy(&s->e);
    model_destroy(&s->m);
    if (s->lat_open)
        lat_close(&s->lat);
    tok_destroy(&s->tok);
    free(s);
    *ps = NULL;
}

/* one kind of job at a time: their guidance settings differ */
static int run_kind(sampler_t *s, gen_job_t *jobs, int kind, char *err, size_t errlen)
{
    gen_job_t sel[MAX_PROMPTS];
    int map[MAX_PROMPTS], n = 0;
    for (int k = 0; k < s->n; k++) {
        const prompt_t *p = &s->p[k];
        int kk = !p->g.job.want_image ? 0 : p->edit ? 2 : 1;
        if (kk == kind)
            sel[n] = jobs[k], map[n++] = k;
    }
    if (!n)
        return 0;
    gen_opts_t o = {.text = infer_text_defaults, .image = infer_image_defaults, .batch = n};
    o.text.max_tokens = s->o.max_tokens;
    o.image.num_timesteps = s->o.steps;
    o.image.cfg_text_scale = 4.0f;
    if (kind == 1) { /* text-to-image: text guidance alone */
        o.image.cfg_img_scale = 1.0f;
    } else if (kind == 2) { /* edits: the app's settings */
        o.image.cfg_img_scale = 2.0f, o.image.cfg_lo = 0.0f, o.image.renorm = INFER_RENORM_TEXT_CHANNEL;
    }
    if (gen_run(s->e, &s->cfg, sel, n, &o, err, errlen))
        return -1;
    for (int i = 0; i < n; i++)
        jobs[map[i]] = sel[i];
    return 0;
}

int sampler_run(sampler_t *s, const model_t *trained, const float *weights, long step, char *err, size_t errlen)
{
    (void)trained;
    const op_table_t *o = s->ops;
    o->zero(s->m->param_mem, s->m->n_floats * sizeof(float));
    o->axpy(s->m->param_mem, 1.0f, weights, s->m->n_floats);
    infer_weights_changed(s->e);
    gen_job_t jobs[MAX_PROMPTS];
    for (int k = 0; k < s->n; k++) {
        jobs[k] = s->p[k].g.job;
        jobs[k].ids = NULL, jobs[k].lat = NULL, jobs[k].failed = 0, jobs[k].err[0] = 0;
    }
    int rc = 0;
    for (int kind = 0; kind < 3 && !rc; kind++)
        rc = run_kind(s, jobs, kind, err, errlen);
    char dir[4200], path[4400], e2[600];
    snprintf(dir, sizeof dir, "%s/samples/step-%ld", s->o.run_dir, step);
    if (!rc && mkdir(dir, 0777) && errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        rc = -1;
    }
    snprintf(path, sizeof path, "%s/samples/index.jsonl", s->o.run_dir);
    FILE *idx = rc ? NULL : fopen(path, "a");
    if (!rc && !idx) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        rc = -1;
    }
    int st = model_latent_stride(&s->cfg);
    for (int k = 0; k < s->n && !rc; k++) {
        prompt_t *p = &s->p[k];
        gen_job_t *g = &jobs[k];
        json_t *row = json_pack("{s:I,s:i,s:s,s:s}", "step", (json_int_t)step, "k", k, "kind",
                                !g->want_image ? "text" : p->edit ? "edit" : "image", "prompt", p->text ? p->text : "");
        if (p->ref_text)
            json_object_set_new(row, "reference", json_string(p->ref_text));
        if (p->has_ref_image) {
            char rel[64];
            snprintf(rel, sizeof rel, "samples/ref-%d.png", k);
            json_object_set_new(row, "ref_image", json_string(rel));
        }
        if (g->failed) {
            json_object_set_new(row, "error", json_string(g->err));
        } else if (!g->want_image) {
            char *t = gen_text(s->tok, g->ids, g->n_ids);
            json_object_set_new(row, "text", json_string(t ? t : ""));
            free(t);
        } else {
            int H = g->gh * st, W = g->gw * st;
            uint8_t *px = malloc((size_t)H * W * 3);
            char rel[128];
            snprintf(rel, sizeof rel, "samples/step-%ld/%d.png", step, k);
            snprintf(path, sizeof path, "%s/%s", s->o.run_dir, rel);
            if (!px || gen_pixels(&s->lat, &s->cfg, g->lat, g->gh, g->gw, px, e2, sizeof e2) ||
                png_write_rgb(path, px, H, W, e2, sizeof e2))
                json_object_set_new(row, "error", json_string(px ? e2 : "out of memory"));
            else
                json_object_set_new(row, "image", json_string(rel));
            free(px);
        }
        char *line = json_dumps(row, JSON_COMPACT);
        if (line)
            fprintf(idx, "%s\n", line);
        free(line);
        json_decref(row);
    }
    for (int k = 0; k < s->n; k++)
        gen_job_clear(&jobs[k]);
    if (idx && fclose(idx) && !rc) {
        snprintf(err, errlen, "samples/index.jsonl: %s", strerror(errno));
        rc = -1;
    }
    return rc;
}
