/* pack.c — BAGEL's per-item packing rules (bagel-reference.md §3.3) into a
 * model_batch_t. The arrays grow by doubling: the packer runs on the data
 * thread, ahead of the step, so reuse of capacity between batches is what
 * matters, not the first growth. */
#include "pack.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/ops.h"

const pack_opts_t pack_default_opts = {.text_drop = 0.1f, .vae_drop = 0.3f, .vit_drop = 0.3f};

void model_batch_free(model_batch_t *b)
{
    free(b->sample_lens);
    free(b->split_start);
    free(b->split_mode);
    free(b->split_first);
    free(b->pos);
    free(b->row_of_pos);
    free(b->pos_of_row);
    free(b->text_ids);
    free(b->text_pos);
    free(b->vit_tokens);
    free(b->vit_feat);
    free(b->vit_posid);
    free(b->vit_pos);
    free(b->vit_lens);
    free(b->x0);
    free(b->eps);
    free(b->tau);
    free(b->t);
    free(b->lat_posid);
    free(b->lat_pos);
    free(b->vae_hw);
    free(b->mse_pos);
    free(b->mse_lat);
    free(b->ce_pos);
    free(b->ce_label);
    free(b->ce_weight);
    memset(b, 0, sizeof *b);
}

void model_batch_clear(model_batch_t *b)
{
    b->S = b->n_samples = b->n_splits = b->n_und = b->n_gen = 0;
    b->n_text = b->n_vit = b->n_vit_images = b->n_lat = b->n_vae_images = 0;
    b->n_vit_feat_images = 0;
    b->n_mse = b->n_ce = 0;
}

void pack_init(pack_t *p, const model_config_t *cfg, const pack_opts_t *opts, uint64_t seed)
{
    memset(p, 0, sizeof *p);
    p->cfg = cfg;
    p->opts = opts ? *opts : pack_default_opts;
    rng_seed(&p->rng, seed);
    p->b.vit_dim = model_vit_dim(cfg);
    p->b.vit_feat_dim = cfg->vit_hidden;
    p->b.lat_dim = model_latent_dim(cfg);
}

void pack_free(pack_t *p) { model_batch_free(&p->b); }

void pack_reset(pack_t *p) { model_batch_clear(&p->b); }

/* grows *arr (elements of size es) to hold need elements; cap in elements */
static int grow(void **arr, int *cap, long need, size_t es)
{
    if (need <= *cap)
        return 0;
    long c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    if (c > (long)1 << 30)
        return -1;
    void *n = realloc(*arr, (size_t)c * es);
    if (!n)
        return -1;
    *arr = n;
    *cap = (int)c;
    return 0;
}

/* every per-token array shares cap_S, and so on per group */
static int reserve(model_batch_t *b, long S, long splits, long samples, long vit, long lat, long vit_img, long vae_img)
{
    if (S > b->cap_S) {
        int c = b->cap_S;
        int c2 = c;
        if (grow((void **)&b->pos, &c2, S, 4))
            return -1;
        c2 = c;
        if (grow((void **)&b->row_of_pos, &c2, S, 4))
            return -1;
        c2 = c;
        if (grow((void **)&b->pos_of_row, &c2, S, 4))
            return -1;
        c2 = c;
        if (grow((void **)&b->text_ids, &c2, S, 4))
            return -1;
        c2 = c;
        if (grow((void **)&b->text_pos, &c2, S, 4))
            return -1;
        c2 = c;
        if (grow((void **)&b->ce_pos, &c2, S, 4))
            return -1;
        c2 = c;
        if (grow((void **)&b->ce_label, &c2, S, 4))
            return -1;
        c2 = c;
        if (grow((void **)&b->ce_weight, &c2, S, 4))
            return -1;
        b->cap_S = c2;
    }
    if (splits + 1 > b->cap_splits) {
        int c = b->cap_splits, c2 = c;
        if (grow((void **)&b->split_start, &c2, splits + 1, 4))
            return -1;
        c2 = c;
        if (grow((void **)&b->split_mode, &c2, splits + 1, 1))
            return -1;
        c2 = c;
        if (grow((void **)&b->split_first, &c2, splits + 1, 4))
            return -1;
        b->cap_splits = c2;
    }
    if (samples > b->cap_samples && grow((void **)&b->sample_lens, &b->cap_samples, samples, 4))
        return -1;
    if (vit > b->cap_vit) {
        int c = b->cap_vit, c2 = c;
        if (grow((void **)&b->vit_tokens, &c2, vit, (size_t)b->vit_dim * 4))
            return -1;
        c2 = c;
        if (grow((void **)&b->vit_posid, &c2, vit, 4))
            return -1;
        c2 = c;
        if (grow((void **)&b->vit_pos, &c2, vit, 4))
            return -1;
        c2 = c;
        if (b->vit_feat_dim > 0 && grow((void **)&b->vit_feat, &c2, vit, (size_t)b->vit_feat_dim * 4))
            return -1;
        b->cap_vit = c2;
    }
    if (lat > b->cap_lat) {
        int c = b->cap_lat, c2 = c;
        if (grow((void **)&b->x0, &c2, lat, (size_t)b->lat_dim * 4))
            return -1;
        c2 = c;
        if (grow((void **)&b->eps, &c2, lat, (size_t)b->lat_dim * 4))
            return -1;
        c2 = c;
        if (grow((void **)&b->tau, &c2, lat, 4))
            return -1;
        c2 = c;
        if (grow((void **)&b->t, &c2, lat, 4))
            return -1;
        c2 = c;
        if (grow((void **)&b->lat_posid, &c2, lat, 4))
            return -1;
        c2 = c;
        if (grow((void **)&b->lat_pos, &c2, lat, 4))
            return -1;
        c2 = c;
        if (grow((void **)&b->mse_pos, &c2, lat, 4))
            return -1;
        c2 = c;
        if (grow((void **)&b->mse_lat, &c2, lat, 4))
            return -1;
        b->cap_lat = c2;
    }
    if (vit_img > b->cap_vit_images && grow((void **)&b->vit_lens, &b->cap_vit_images, vit_img, 4))
        return -1;
    if (vae_img > b->cap_vae_images && grow((void **)&b->vae_hw, &b->cap_vae_images, vae_img, 8))
        return -1;
    return 0;
}

long pack_sample_tokens(const model_config_t *cfg, const pack_sample_t *s)
{
    long n = 0;
    int ls = model_latent_stride(cfg), vp = cfg->vit_patch;
    for (int i = 0; i < s->n_segments; i++) {
        const pack_segment_t *g = &s->seg[i];
        if (g->kind == PACK_TEXT) {
            n += g->n_tokens + 2;
            continue;
        }
        long lat = 0;
        /* lat_c is set before the latent is drawn: moments read from the
         * record, or pixels the trainer's autoencoder will encode */
        if (g->latent || g->lat_c)
            lat = (long)(g->lat_h / cfg->latent_patch) * (g->lat_w / cfg->latent_patch);
        else if (g->vae)
            lat = (long)(g->vae_h / ls) * (g->vae_w / ls);
        if (g->loss)
            n += lat + 2;
        if (g->cond)
            n += lat + 2;
        if (g->und && g->vit)
            n += (long)(g->vit_h / vp) * (g->vit_w / vp) + 2;
    }
    return n;
}

void pack_update_t(model_batch_t *b, float shift)
{
    for (int i = 0; i < b->n_lat; i++) {
        float tau = b->tau[i];
        if (isinf(tau) && tau < 0) {
            b->t[i] = 0.0f;
            continue;
        }
        float t = 1.0f / (1.0f + expf(-tau));
        b->t[i] = shift * t / (1.0f + (shift - 1.0f) * t);
    }
}

/* the latent grid of an image segment, and a check that it is usable */
static int latent_grid(const model_config_t *cfg, const pack_segment_t *g, int *h, int *w, char *err, size_t errlen)
{
    int p = cfg->latent_patch;
    if (g->latent) {
        if (g->lat_c != cfg->z_channels || g->lat_h % p || g->lat_w % p || g->lat_h <= 0 || g->lat_w <= 0) {
            snprintf(err, errlen, "latent [%d,%d,%d] does not fit %d channels in %dx%d patches", g->lat_c, g->lat_h,
                     g->lat_w, cfg->z_channels, p, p);
            return -1;
        }
        *h = g->lat_h / p;
        *w = g->lat_w / p;
    } else if (g->vae && cfg->ae == MODEL_AE_IDENTITY) {
        int s = model_latent_stride(cfg);
        if (g->vae_h % s || g->vae_w % s || g->vae_h <= 0 || g->vae_w <= 0) {
            snprintf(err, errlen, "vae image %dx%d is not a multiple of the latent stride %d", g->vae_w, g->vae_h, s);
            return -1;
        }
        *h = g->vae_h / s;
        *w = g->vae_w / s;
    } else {
        snprintf(err, errlen, "image needs %s", cfg->ae == MODEL_AE_IDENTITY ? "vae pixels" : "a latent");
        return -1;
    }
    if (*h > cfg->max_latent_size || *w > cfg->max_latent_size) {
        snprintf(err, errlen, "latent grid %dx%d exceeds max_latent_size %d", *w, *h, cfg->max_latent_size);
        return -1;
    }
    return 0;
}

typedef struct cursor {
    int curr, rope;
    int sample_first_split;
} cursor_t;

static void split_open(model_batch_t *b, cursor_t *c, int mode)
{
    b->split_start[b->n_splits] = c->curr;
    b->split_mode[b->n_splits] = (uint8_t)mode;
    b->split_first[b->n_splits] = c->sample_first_split;
    b->n_splits++;
}

static void text_token(model_batch_t *b, cursor_t *c, int id, int pos)
{
    b->text_ids[b->n_text] = id;
    b->text_pos[b->n_text] = c->curr;
    b->n_text++;
    b->pos[c->curr] = pos;
    c->curr++;
}

static int drawn(pack_t *p, int forced, int cfg, float prob)
{
    if (!cfg)
        return 0;
    if (forced != PACK_DRAW)
        return forced;
    return rng_uniform(&p->rng) < prob;
}

static void add_vae(pack_t *p, cursor_t *c, const pack_segment_t *g, int h, int w, int noisy)
{
    model_batch_t *b = &p->b;
    const model_config_t *cfg = p->cfg;
    int n = h * w, D = b->lat_dim;
    split_open(b, c, noisy ? OP_SPLIT_NOISE : OP_SPLIT_FULL);
    text_token(b, c, cfg->soi_id, c->rope);
    float *x0 = b->x0 + (size_t)b->n_lat * D;
    if (g->latent)
        op_cpu.patchify_chw(x0, g->latent, g->lat_c, g->lat_h, g->lat_w, cfg->latent_patch);
    else
        op_cpu.patchify_u8(x0, g->vae, g->vae_h, g->vae_w, 3, cfg->latent_patch);
    float tau = noisy ? (float)rng_normal(&p->rng) : -INFINITY;
    for (int i = 0; i < n; i++) {
        int li = b->n_lat + i;
        b->tau[li] = tau;
        b->lat_posid[li] = (i / w) * cfg->max_latent_size + (i % w);
        b->lat_pos[li] = c->curr;
        if (noisy) {
            b->mse_pos[b->n_mse] = c->curr;
            b->mse_lat[b->n_mse] = li;
            b->n_mse++;
        }
        b->pos[c->curr++] = c->rope;
    }
    for (size_t i = 0; i < (size_t)n * D; i++)
        b->eps[(size_t)b->n_lat * D + i] = (float)rng_normal(&p->rng);
    b->n_lat += n;
    b->vae_hw[2 * b->n_vae_images] = h;
    b->vae_hw[2 * b->n_vae_images + 1] = w;
    b->n_vae_images++;
    text_token(b, c, cfg->eoi_id, c->rope);
    if (!noisy)
        c->rope++;
}

static void add_vit(pack_t *p, cursor_t *c, const pack_segment_t *g)
{
    model_batch_t *b = &p->b;
    const model_config_t *cfg = p->cfg;
    int ps = cfg->vit_patch, h = g->vit_h / ps, w = g->vit_w / ps, n = h * w;
    split_open(b, c, OP_SPLIT_FULL);
    text_token(b, c, cfg->soi_id, c->rope);
    op_cpu.patchify_u8(b->vit_tokens + (size_t)b->n_vit * b->vit_dim, g->vit, g->vit_h, g->vit_w, 3, ps);
    if (g->vit_feat) {
        memcpy(b->vit_feat + (size_t)b->n_vit * b->vit_feat_dim, g->vit_feat, (size_t)n * b->vit_feat_dim * 4);
        b->n_vit_feat_images++;
    }
    for (int i = 0; i < n; i++) {
        b->vit_posid[b->n_vit + i] = (i / w) * cfg->vit_max_side + (i % w);
        b->vit_pos[b->n_vit + i] = c->curr;
        b->pos[c->curr++] = c->rope;
    }
    b->n_vit += n;
    b->vit_lens[b->n_vit_images++] = n;
    text_token(b, c, cfg->eoi_id, c->rope);
    c->rope++;
}

/* the expert-order maps, rebuilt over the whole batch after each sample */
static void route(model_batch_t *b)
{
    /* a position is generation iff it is a latent token; lat_pos ascends */
    int nu = 0, ng = 0, li = 0;
    int n_gen = b->n_lat;
    for (int p = 0; p < b->S; p++) {
        int r;
        if (li < b->n_lat && b->lat_pos[li] == p) {
            r = (b->S - n_gen) + ng++;
            li++;
        } else {
            r = nu++;
        }
        b->row_of_pos[p] = r;
        b->pos_of_row[r] = p;
    }
    b->n_und = nu;
    b->n_gen = ng;
}

int pack_add(pack_t *p, const pack_sample_t *s, char *err, size_t errlen)
{
    model_batch_t *b = &p->b;
    const model_config_t *cfg = p->cfg;
    model_batch_t saved = *b;
    rng_t saved_rng = p->rng;
    int vp = cfg->vit_patch;

    /* check every segment and size the arrays before touching the batch */
    long tokens = 0, splits = 0, vit = 0, lat = 0, vit_img = 0, vae_img = 0;
    for (int i = 0; i < s->n_segments; i++) {
        const pack_segment_t *g = &s->seg[i];
        if (g->kind == PACK_TEXT) {
            for (int k = 0; k < g->n_tokens; k++)
                if (g->tokens[k] < 0 || g->tokens[k] >= cfg->vocab) {
                    snprintf(err, errlen, "segment %d: token %d is outside the vocabulary of %d", i, g->tokens[k],
                             cfg->vocab);
                    return -1;
                }
            tokens += g->n_tokens + 2;
            splits++;
            continue;
        }
        if (g->kind != PACK_IMAGE) {
            snprintf(err, errlen, "segment %d: unknown kind %d", i, g->kind);
            return -1;
        }
        if (!g->loss && !g->cond && !g->und) {
            snprintf(err, errlen, "segment %d: image with neither loss, cond nor und", i);
            return -1;
        }
        if (g->loss || g->cond) {
            int h, w;
            char e2[200];
            if (!cfg->visual_gen) {
                snprintf(err, errlen, "segment %d: a generation image but the model has no generation branch", i);
                return -1;
            }
            if (latent_grid(cfg, g, &h, &w, e2, sizeof e2)) {
                snprintf(err, errlen, "segment %d: %s", i, e2);
                return -1;
            }
            int copies = !!g->loss + !!g->cond;
            tokens += (long)copies * (h * w + 2);
            lat += (long)copies * h * w;
            splits += copies;
            vae_img += copies;
        }
        if (g->und) {
            if (!cfg->visual_und) {
                snprintf(err, errlen, "segment %d: an understanding image but the model has no ViT", i);
                return -1;
            }
            if (!g->vit || g->vit_h <= 0 || g->vit_w <= 0 || g->vit_h % vp || g->vit_w % vp) {
                snprintf(err, errlen, "segment %d: vit image %dx%d is missing or not a multiple of %d", i, g->vit_w,
                         g->vit_h, vp);
                return -1;
            }
            if (g->vit_h / vp > cfg->vit_max_side || g->vit_w / vp > cfg->vit_max_side) {
                snprintf(err, errlen, "segment %d: vit image %dx%d exceeds %d patches per side", i, g->vit_w, g->vit_h,
                         cfg->vit_max_side);
                return -1;
            }
            long n = (long)(g->vit_h / vp) * (g->vit_w / vp);
            tokens += n + 2;
            vit += n;
            splits++;
            vit_img++;
        }
    }
    if (tokens == 0) {
        snprintf(err, errlen, "sample has no segments");
        return -1;
    }
    if (reserve(b, b->S + tokens, b->n_splits + splits, b->n_samples + 1, b->n_vit + vit, b->n_lat + lat,
                b->n_vit_images + vit_img, b->n_vae_images + vae_img)) {
        snprintf(err, errlen, "out of memory packing %ld tokens", b->S + tokens);
        return -1;
    }
    saved = *b; /* pointers after growth, counts before */

    cursor_t c = {.curr = b->S, .rope = p->rope0, .sample_first_split = b->n_splits};
    for (int i = 0; i < s->n_segments; i++) {
        const pack_segment_t *g = &s->seg[i];
        if (g->kind == PACK_TEXT) {
            if (drawn(p, g->drop, g->cfg, p->opts.text_drop))
                continue; /* rope not advanced */
            int n = g->n_tokens;
            split_open(b, &c, OP_SPLIT_CAUSAL);
            int first = c.curr;
            text_token(b, &c, cfg->bos_id, c.rope);
            for (int k = 0; k < n; k++)
                text_token(b, &c, g->tokens[k], c.rope + 1 + k);
            if (g->loss) {
                float wgt = (float)(1.0 / sqrt((double)(n + 1))); /* in double, as BAGEL */
                for (int k = 0; k <= n; k++) {
                    b->ce_pos[b->n_ce] = first + k;
                    b->ce_label[b->n_ce] = k < n ? g->tokens[k] : cfg->eos_id;
                    b->ce_weight[b->n_ce] = wgt;
                    b->n_ce++;
                }
            }
            text_token(b, &c, cfg->eos_id, c.rope + n + 1);
            c.rope += n + 2;
            continue;
        }
        int h = 0, w = 0;
        if (g->loss || g->cond)
            latent_grid(cfg, g, &h, &w, err, errlen);
        if (g->loss)
            add_vae(p, &c, g, h, w, 1);
        if (g->cond) {
            if (drawn(p, g->drop_vae, g->cfg, p->opts.vae_drop))
                c.rope++;
            else
                add_vae(p, &c, g, h, w, 0);
        }
        if (g->und) {
            if (drawn(p, g->drop_vit, g->cfg, p->opts.vit_drop))
                c.rope++;
            else
                add_vit(p, &c, g);
        }
    }
    if (c.curr == b->S) {
        /* everything dropped: BAGEL's estimate would still count it; keep the
         * batch as it was */
        *b = saved;
        p->rng = saved_rng;
        snprintf(err, errlen, "every segment of the sample was dropped");
        return -1;
    }
    b->sample_lens[b->n_samples++] = c.curr - b->S;
    b->S = c.curr;
    b->split_start[b->n_splits] = b->S;
    route(b);
    pack_update_t(b, cfg->timestep_shift);
    return 0;
}

int pack_add_tokens(pack_t *p, const int32_t *ids, int n, char *err, size_t errlen)
{
    model_batch_t *b = &p->b;
    if (n <= 0) {
        snprintf(err, errlen, "no tokens to add");
        return -1;
    }
    for (int k = 0; k < n; k++)
        if (ids[k] < 0 || ids[k] >= p->cfg->vocab) {
            snprintf(err, errlen, "token %d is outside the vocabulary of %d", ids[k], p->cfg->vocab);
            return -1;
        }
    if (reserve(b, b->S + n, b->n_splits + 1, b->n_samples + 1, b->n_vit, b->n_lat, b->n_vit_images,
                b->n_vae_images)) {
        snprintf(err, errlen, "out of memory packing %d tokens", b->S + n);
        return -1;
    }
    cursor_t c = {.curr = b->S, .rope = p->rope0, .sample_first_split = b->n_splits};
    split_open(b, &c, OP_SPLIT_CAUSAL);
    for (int k = 0; k < n; k++)
        text_token(b, &c, ids[k], c.rope + k);
    b->sample_lens[b->n_samples++] = n;
    b->S = c.curr;
    b->split_start[b->n_splits] = b->S;
    route(b);
    return 0;
}
