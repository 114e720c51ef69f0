/* gen.c — see gen.h. */
#include "gen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../models/rng.h"
#include "../../models/pack.h"
#include "../common/utf8.h"
#include "../tokenize/tok.h"

void gen_job_clear(gen_job_t *j)
{
    free(j->ids);
    free(j->lat);
    j->ids = NULL, j->lat = NULL;
    j->n_ids = j->stopped = j->failed = 0;
    j->err[0] = 0;
}

static void job_fail(gen_job_t *j, const char *why)
{
    j->failed = 1;
    snprintf(j->err, sizeof j->err, "%s", why);
}

/* tokens a chunk takes in a context */
static long chunk_tokens(const model_config_t *cfg, const infer_chunk_t *c)
{
    switch (c->kind) {
    case INFER_TEXT: return (long)c->n_ids + 2;
    case INFER_TOKENS: return c->n_ids;
    case INFER_VIT: return (long)(c->img_h / cfg->vit_patch) * (c->img_w / cfg->vit_patch) + 2;
    default: return (long)c->gh * c->gw + 2;
    }
}

long gen_context_tokens(const model_config_t *cfg, const gen_job_t *j)
{
    long n = 0;
    for (int c = 0; c < j->n_chunks; c++)
        n += chunk_tokens(cfg, &j->chunks[c]);
    return n;
}

/* job g fails unless its context and `more` positions fit a context of
 * slot_rows; what says what the `more` are. Returns the job's chunk count. */
static int check_room(const model_config_t *cfg, gen_job_t *g, long more, const char *what, int slot_rows)
{
    long need = gen_context_tokens(cfg, g) + more;
    if (need > slot_rows) {
        char why[200];
        snprintf(why, sizeof why, "the prompt and %s take %ld positions, more than the %d of the context (--max-context)",
                 what, need, slot_rows);
        job_fail(g, why);
    }
    return g->n_chunks;
}

/* appends: sample s is chunk c[s] to slots[s], for the jobs who[s]; a batch
 * that fails is retried one by one so that only the failing jobs fail */
static void append_all(infer_t *e, gen_job_t *jobs, const int *who, const int *slots, const infer_chunk_t *c, int n)
{
    char err[300];
    if (n == 0 || !infer_append(e, slots, c, n, err, sizeof err))
        return;
    for (int s = 0; s < n; s++)
        if (!jobs[who[s]].failed && infer_append(e, &slots[s], &c[s], 1, err, sizeof err))
            job_fail(&jobs[who[s]], err);
}

static int run_text(infer_t *e, const model_config_t *cfg, gen_job_t *jobs, const int *idx, int k,
                    const gen_opts_t *o, int slot_rows, char *err, size_t errlen)
{
    int maxc = 0;
    char what[64];
    snprintf(what, sizeof what, "up to %d new tokens", o->text.max_tokens);
    for (int j = 0; j < k; j++) {
        infer_reset(e, j);
        int nc = check_room(cfg, &jobs[idx[j]], o->text.max_tokens + 1, what, slot_rows);
        maxc = nc > maxc ? nc : maxc;
    }
    int *slots = malloc((size_t)k * sizeof(int)), *who = malloc((size_t)k * sizeof(int));
    infer_chunk_t *ch = malloc((size_t)k * sizeof *ch);
    int32_t **ids = calloc((size_t)k, sizeof *ids);
    int *nid = calloc((size_t)k, sizeof(int)), *stop = calloc((size_t)k, sizeof(int));
    uint64_t *seeds = malloc((size_t)k * sizeof(uint64_t));
    int rc = -1;
    if (!slots || !who || !ch || !ids || !nid || !stop || !seeds) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    for (int r = 0; r < maxc; r++) {
        int n = 0;
        for (int j = 0; j < k; j++) {
            gen_job_t *g = &jobs[idx[j]];
            if (g->failed || r >= g->n_chunks)
                continue;
            slots[n] = j, who[n] = idx[j], ch[n] = g->chunks[r];
            n++;
        }
        append_all(e, jobs, who, slots, ch, n);
    }
    int n = 0;
    for (int j = 0; j < k; j++)
        if (!jobs[idx[j]].failed)
            slots[n] = j, who[n] = idx[j], seeds[n] = jobs[idx[j]].seed, n++;
    if (n) {
        infer_text_opts_t to = o->text;
        to.seeds = seeds;
        if (infer_text(e, slots, n, &to, ids, nid, stop, NULL, 0, err, errlen))
            goto done;
        for (int s = 0; s < n; s++) {
            gen_job_t *g = &jobs[who[s]];
            g->ids = ids[s], g->n_ids = nid[s], g->stopped = stop[s];
            ids[s] = NULL;
        }
    }
    rc = 0;
done:
    if (ids)
        for (int j = 0; j < k; j++)
            free(ids[j]);
    free(slots), free(who), free(ch), free(ids), free(nid), free(stop), free(seeds);
    return rc;
}

static int run_images(infer_t *e, const model_config_t *cfg, gen_job_t *jobs, const int *idx, int k,
                      const gen_opts_t *o, int slot_rows, char *err, size_t errlen)
{
    int D = model_latent_dim(cfg), gh = jobs[idx[0]].gh, gw = jobs[idx[0]].gw, N = gh * gw, maxc = 0;
    char what[64];
    snprintf(what, sizeof what, "the image's %d tokens", N + 2);
    for (int j = 0; j < k; j++) {
        for (int s = 0; s < 3; s++)
            infer_reset(e, 3 * j + s);
        int nc = check_room(cfg, &jobs[idx[j]], (long)N + 2, what, slot_rows);
        maxc = nc > maxc ? nc : maxc;
    }
    int *slots = calloc((size_t)2 * k, sizeof(int)), *who = calloc((size_t)2 * k, sizeof(int));
    int *full = malloc((size_t)k * sizeof(int)), *tu = malloc((size_t)k * sizeof(int));
    int *iu = malloc((size_t)k * sizeof(int)), *map = malloc((size_t)k * sizeof(int));
    infer_chunk_t *ch = malloc((size_t)2 * k * sizeof *ch);
    float *x = malloc((size_t)k * N * D * sizeof(float));
    int rc = -1;
    if (!slots || !who || !full || !tu || !iu || !map || !ch || !x) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    /* the contexts, input by input as interleave_inference builds them: the
     * full context takes everything, the image-unconditioned one only text,
     * and the text-unconditioned one is the full one as it stood before the
     * last text (copied before each text, and after each image) */
    for (int r = 0; r < maxc; r++) {
        int n = 0;
        for (int j = 0; j < k; j++) {
            gen_job_t *g = &jobs[idx[j]];
            if (g->failed || r >= g->n_chunks)
                continue;
            const infer_chunk_t *c = &g->chunks[r];
            int text = c->kind == INFER_TEXT || c->kind == INFER_TOKENS;
            if (text)
                infer_copy(e, 3 * j + 1, 3 * j);
            slots[n] = 3 * j, who[n] = idx[j], ch[n] = *c, n++;
            if (text)
                slots[n] = 3 * j + 2, who[n] = idx[j], ch[n] = *c, n++;
        }
        append_all(e, jobs, who, slots, ch, n);
        for (int j = 0; j < k; j++) {
            gen_job_t *g = &jobs[idx[j]];
            if (!g->failed && r < g->n_chunks && g->chunks[r].kind != INFER_TEXT && g->chunks[r].kind != INFER_TOKENS)
                infer_copy(e, 3 * j + 1, 3 * j);
        }
    }
    int n = 0;
    for (int j = 0; j < k; j++) {
        gen_job_t *g = &jobs[idx[j]];
        if (g->failed)
            continue;
        full[n] = 3 * j, tu[n] = 3 * j + 1, iu[n] = 3 * j + 2, map[n] = idx[j];
        rng_t rg;
        rng_seed(&rg, g->seed);
        float *xi = x + (size_t)n * N * D;
        for (size_t i = 0; i < (size_t)N * D; i++)
            xi[i] = (float)rng_normal(&rg);
        n++;
    }
    if (n) {
        if (infer_image(e, full, tu, iu, n, gh, gw, &o->image, x, NULL, NULL, err, errlen))
            goto done;
        for (int s = 0; s < n; s++) {
            gen_job_t *g = &jobs[map[s]];
            g->lat = malloc((size_t)N * D * sizeof(float));
            if (!g->lat) {
                snprintf(err, errlen, "out of memory");
                goto done;
            }
            memcpy(g->lat, x + (size_t)s * N * D, (size_t)N * D * sizeof(float));
        }
    }
    rc = 0;
done:
    free(slots), free(who), free(full), free(tu), free(iu), free(map), free(ch), free(x);
    return rc;
}

int gen_run(infer_t *e, const model_config_t *cfg, gen_job_t *jobs, int n, const gen_opts_t *o, char *err,
            size_t errlen)
{
    int batch = o->batch > 0 ? o->batch : 1, slot_rows = infer_slot_rows(e);
    if (gen_slots(batch) > infer_slots(e)) {
        snprintf(err, errlen, "batches of %d need %d contexts; the engine has %d", batch, gen_slots(batch),
                 infer_slots(e));
        return -1;
    }
    int *idx = malloc((size_t)(n > 0 ? n : 1) * sizeof(int));
    char *done = calloc((size_t)(n > 0 ? n : 1), 1);
    if (!idx || !done) {
        free(idx), free(done);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (done[i])
            continue;
        /* a batch: this job and the next ones of its kind (and grid) */
        int k = 0;
        for (int j = i; j < n && k < batch; j++) {
            if (done[j] || jobs[j].want_image != jobs[i].want_image ||
                (jobs[i].want_image && (jobs[j].gh != jobs[i].gh || jobs[j].gw != jobs[i].gw)))
                continue;
            idx[k++] = j;
            done[j] = 1;
        }
        rc = jobs[i].want_image ? run_images(e, cfg, jobs, idx, k, o, slot_rows, err, errlen)
                                : run_text(e, cfg, jobs, idx, k, o, slot_rows, err, errlen);
    }
    free(idx), free(done);
    return rc;
}

int gen_pixels(lat_t *l, const model_config_t *cfg, const float *lat, int gh, int gw, uint8_t *img, char *err,
               size_t errlen)
{
    int p = cfg->latent_patch, z = cfg->z_channels;
    if (cfg->ae == MODEL_AE_IDENTITY) {
        op_cpu.unpatchify_u8(img, lat, gh * p, gw * p, 3, p);
        return 0;
    }
    size_t n = (size_t)z * gh * p * gw * p;
    float *mo = calloc(2 * n, sizeof(float));
    if (!mo) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    op_cpu.unpatchify_chw(mo, lat, z, gh * p, gw * p, p);
    for (size_t i = 0; i < n; i++)
        mo[i] = mo[i] / cfg->ae_scale + cfg->ae_shift;
    int rc = lat_decode(l, mo, gh * p, gw * p, img, err, errlen);
    free(mo);
    return rc;
}

int gen_latent_of(lat_t *l, const model_config_t *cfg, const uint8_t *img, int H, int W, uint64_t seed, float *tokens,
                  char *err, size_t errlen)
{
    int down = l->down, z = cfg->z_channels, h = H / down, w = W / down;
    size_t n = (size_t)z * h * w;
    float *mo = malloc(2 * n * sizeof(float));
    if (!mo) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (lat_encode(l, img, H, W, mo, err, errlen)) {
        free(mo);
        return -1;
    }
    rng_t rg;
    rng_seed(&rg, seed);
    for (size_t i = 0; i < n; i++) {
        float v = mo[i] + expf(0.5f * mo[n + i]) * (float)rng_normal(&rg);
        mo[i] = cfg->ae_scale * (v - cfg->ae_shift);
    }
    op_cpu.patchify_chw(tokens, mo, z, h, w, cfg->latent_patch);
    free(mo);
    return 0;
}

/* ---- sample records ---------------------------------------------------- */

void gen_rec_free(gen_rec_t *g)
{
    if (g->have_ds) {
        g->ds.rec = NULL; /* the record is the caller's */
        data_sample_free(&g->ds);
    }
    for (int i = 0; i < g->n_ch; i++)
        free(g->lat ? g->lat[i] : NULL);
    free(g->lat);
    free(g->ch);
    gen_job_clear(&g->job);
    memset(g, 0, sizeof *g);
}

/* latent tokens of an image segment's clean VAE copy: from its moments,
 * drawn, or from its pixels through the autoencoder */
static float *segment_latent(lat_t *l, const model_config_t *c, data_sample_t *s, int i, uint64_t seed, int *gh,
                             int *gw, char *why)
{
    pack_segment_t *g = &s->seg[i];
    int p = c->latent_patch, D = model_latent_dim(c);
    char err[512];
    if (s->moments[i]) {
        int h = g->lat_h, w = g->lat_w;
        if (h % p || w % p) {
            snprintf(why, REC_ERR_LEN, "segment %d: latent %dx%d is not a multiple of the patch %d", i, w, h, p);
            return NULL;
        }
        size_t n = (size_t)c->z_channels * h * w;
        float *z = malloc(n * sizeof(float)), *tok = malloc(n * sizeof(float));
        if (!z || !tok) {
            free(z), free(tok);
            snprintf(why, REC_ERR_LEN, "out of memory");
            return NULL;
        }
        rng_t rg;
        rng_seed(&rg, seed);
        const float *mo = s->moments[i];
        for (size_t j = 0; j < n; j++)
            z[j] = c->ae_scale * (mo[j] + expf(0.5f * mo[n + j]) * (float)rng_normal(&rg) - c->ae_shift);
        op_cpu.patchify_chw(tok, z, c->z_channels, h, w, p);
        free(z);
        *gh = h / p, *gw = w / p;
        return tok;
    }
    if (!g->vae) {
        snprintf(why, REC_ERR_LEN, "segment %d: no vae image or latent", i);
        return NULL;
    }
    if (!l) {
        snprintf(why, REC_ERR_LEN, "segment %d: a pixel image but no autoencoder (--vae)", i);
        return NULL;
    }
    int st = model_latent_stride(c);
    if (g->vae_h % st || g->vae_w % st) {
        snprintf(why, REC_ERR_LEN, "segment %d: vae image %dx%d is not a multiple of %d", i, g->vae_w, g->vae_h, st);
        return NULL;
    }
    *gh = g->vae_h / st, *gw = g->vae_w / st;
    float *tok = malloc((size_t)*gh * *gw * D * sizeof(float));
    if (!tok || gen_latent_of(l, c, g->vae, g->vae_h, g->vae_w, seed, tok, err, sizeof err)) {
        snprintf(why, REC_ERR_LEN, "segment %d: %s", i, tok ? err : "out of memory");
        free(tok);
        return NULL;
    }
    return tok;
}

int gen_rec_job(gen_rec_t *gr, rec_t *r, const model_config_t *c, lat_t *l, uint64_t seed, char *why)
{
    char err[512];
    memset(gr, 0, sizeof *gr);
    if (data_sample_from_rec(&gr->ds, r, c, l != NULL, err, sizeof err)) {
        gr->ds.rec = NULL;
        data_sample_free(&gr->ds);
        snprintf(why, REC_ERR_LEN, "%s", err);
        return -1;
    }
    gr->have_ds = 1;
    const msgpack_object *segs = rec_get(r, "segments");
    int n = gr->ds.n_seg, target = -1;
    for (int i = 0; i < n; i++) {
        bool flag = false;
        if (rec_get_bool(&segs->via.array.ptr[i], "generate", &flag) && flag) {
            target = i;
            break;
        }
        if (gr->ds.seg[i].loss)
            target = i;
    }
    if (target < 0) {
        snprintf(why, REC_ERR_LEN, "nothing to generate: no segment is marked \"generate\" or has a loss");
        return -1;
    }
    pack_segment_t *tg = &gr->ds.seg[target];
    gr->target = target;
    gr->ch = calloc((size_t)2 * (target + 1), sizeof *gr->ch);
    gr->lat = calloc((size_t)2 * (target + 1), sizeof *gr->lat);
    if (!gr->ch || !gr->lat) {
        snprintf(why, REC_ERR_LEN, "out of memory");
        return -1;
    }
    for (int i = 0; i < target; i++) {
        pack_segment_t *g = &gr->ds.seg[i];
        if (g->kind == PACK_TEXT) {
            gr->ch[gr->n_ch++] = (infer_chunk_t){.kind = INFER_TEXT, .ids = g->tokens, .n_ids = g->n_tokens};
            continue;
        }
        if (g->cond) {
            int gh, gw;
            float *t = segment_latent(l, c, &gr->ds, i, seed + 1000003u * (uint64_t)(i + 1), &gh, &gw, why);
            if (!t)
                return -1;
            gr->lat[gr->n_ch] = t;
            gr->ch[gr->n_ch++] = (infer_chunk_t){.kind = INFER_VAE, .lat = t, .gh = gh, .gw = gw};
        }
        if (g->und)
            gr->ch[gr->n_ch++] =
                (infer_chunk_t){.kind = INFER_VIT, .img = g->vit, .img_h = g->vit_h, .img_w = g->vit_w};
    }
    gr->job = (gen_job_t){.n_chunks = gr->n_ch, .chunks = gr->ch, .seed = seed};
    if (tg->kind == PACK_TEXT)
        return 0;
    if (!c->visual_gen || !l) {
        snprintf(why, REC_ERR_LEN, "an image target but %s",
                 !c->visual_gen ? "the model has no generation branch" : "no autoencoder (--vae)");
        return -1;
    }
    int st = model_latent_stride(c), p2 = c->latent_patch;
    gr->job.want_image = 1;
    if (gr->ds.moments[target])
        gr->job.gh = tg->lat_h / p2, gr->job.gw = tg->lat_w / p2;
    else if (tg->vae)
        gr->job.gh = tg->vae_h / st, gr->job.gw = tg->vae_w / st;
    else {
        snprintf(why, REC_ERR_LEN, "segment %d: the target image has no size (no vae or latent)", target);
        return -1;
    }
    if (gr->job.gh > c->max_latent_size || gr->job.gw > c->max_latent_size || gr->job.gh <= 0 || gr->job.gw <= 0) {
        snprintf(why, REC_ERR_LEN, "segment %d: a %dx%d latent grid is beyond the model's %d", target, gr->job.gw,
                 gr->job.gh, c->max_latent_size);
        return -1;
    }
    return 0;
}

char *gen_text(const tok_t *t, const int32_t *ids, int n)
{
    char err[TOK_ERR_LEN];
    tok_buf_t b = {0};
    if (tok_decode(t, ids, (size_t)n, &b, err)) {
        tok_buf_free(&b);
        return NULL;
    }
    char *s = utf8_lossy(b.p ? b.p : "", b.n);
    tok_buf_free(&b);
    return s;
}
