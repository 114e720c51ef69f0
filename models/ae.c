/* ae.c — the FLUX autoencoder on the op table (ae.h): parameter layout with
 * BFL names, loading, test weights, the activation plan, encoder, latent
 * sample and decoder.
 *
 * The forward passes are written once and run in two modes: planning (no op
 * is called; every tensor's size is recorded) and running. ae_reserve plans
 * the largest image, so the buffers always fit what the same code asks for.
 *
 * Buffers: three of the largest [C, h, w] tensor — x (the current
 * activation), t and h (scratch). A res block needs all three: x is its
 * residual while t holds the normalized input and h the convolution; the
 * result lands in h and the roles of x and h swap. The mid-block attention
 * works on tokens [S, C] (S = h·w positions): q, k, v and the attention
 * output have their own small buffers; patchify_chw / unpatchify_chw with
 * p = 1 are the NCHW <-> tokens transposes, and the 1×1 convolutions q, k, v
 * and proj_out are linear layers on tokens (a [C, C, 1, 1] weight is the
 * [out, in] matrix). */
#include "ae.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "safetensors.h"

const ae_config_t ae_flux_config = {
    .in_channels = 3,
    .out_channels = 3,
    .ch = 128,
    .n_levels = 4,
    .ch_mult = {1, 2, 4, 4},
    .num_res_blocks = 2,
    .z_channels = 16,
    .scale = 0.3611f,
    .shift = 0.1159f,
};

#define AE_MAX_SIDE 16384 /* pixels; keeps every size inside the ops' int arguments */

struct ae_acts {
    float *x, *t, *h;         /* (big) */
    float *q, *k, *v, *o;     /* (S, C) mid-block tokens */
    float *lse;               /* (S) */
    float *gn_mean, *gn_rstd; /* (AE_GROUPS) */
    int32_t *split_start;     /* (2) */
    int32_t *split_first;     /* (1) */
    uint8_t *split_mode;      /* (1) */
    uint8_t *img;             /* (img) u8 pixels */
    int split_S;              /* the S the split tables hold (0: none yet) */
};

int ae_config_check(const ae_config_t *c, char *err, size_t errlen)
{
    if (c->in_channels < 1 || c->in_channels > 16 || c->out_channels < 1 || c->out_channels > 16) {
        snprintf(err, errlen, "ae config: in_channels %d, out_channels %d, expected 1..16", c->in_channels,
                 c->out_channels);
        return -1;
    }
    if (c->n_levels < 1 || c->n_levels > AE_MAX_LEVELS) {
        snprintf(err, errlen, "ae config: %d levels (ch_mult entries), expected 1..%d", c->n_levels, AE_MAX_LEVELS);
        return -1;
    }
    for (int i = 0; i < c->n_levels; i++) {
        long long chans = (long long)c->ch * c->ch_mult[i];
        if (c->ch < 1 || c->ch_mult[i] < 1 || chans > 8192 || chans % AE_GROUPS) {
            snprintf(err, errlen,
                     "ae config: level %d has ch %d × ch_mult %d channels, expected a multiple of %d (GroupNorm "
                     "groups) up to 8192",
                     i, c->ch, c->ch_mult[i], AE_GROUPS);
            return -1;
        }
    }
    if (c->num_res_blocks < 1 || c->num_res_blocks + 1 > AE_MAX_BLOCKS) {
        snprintf(err, errlen, "ae config: num_res_blocks %d, expected 1..%d", c->num_res_blocks, AE_MAX_BLOCKS - 1);
        return -1;
    }
    if (c->z_channels < 1 || c->z_channels > 1024) {
        snprintf(err, errlen, "ae config: z_channels %d, expected 1..1024", c->z_channels);
        return -1;
    }
    if (!(c->scale > 0.0f) || !isfinite(c->scale) || !isfinite(c->shift)) {
        snprintf(err, errlen, "ae config: scale %g, shift %g, expected a finite scale > 0 and a finite shift",
                 (double)c->scale, (double)c->shift);
        return -1;
    }
    return 0;
}

/* ---- parameters ------------------------------------------------------ */

typedef struct planner {
    ae_t *ae;
    int pass; /* 0 count, 1 fill */
    size_t off;
    int n;
} planner_t;

static void P(planner_t *p, float **w, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));

static void P(planner_t *p, float **w, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3, const char *fmt, ...)
{
    size_t numel = ndim == 4 ? (size_t)(d0 * d1 * d2 * d3) : (size_t)d0;
    if (p->pass == 1) {
        ae_param_t *q = &p->ae->params[p->n];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(q->name, sizeof q->name, fmt, ap);
        va_end(ap);
        q->ndim = ndim;
        q->shape[0] = d0;
        q->shape[1] = ndim == 4 ? d1 : 0;
        q->shape[2] = ndim == 4 ? d2 : 0;
        q->shape[3] = ndim == 4 ? d3 : 0;
        q->offset = p->off;
        q->numel = numel;
        q->w = w;
    }
    p->off += (numel + 15) & ~(size_t)15; /* 64-byte aligned tensors */
    p->n++;
}

/* a GroupNorm's weight and bias: (c) each */
static void plan_norm(planner_t *p, float **w, float **b, int c, const char *name)
{
    P(p, w, 1, c, 0, 0, 0, "%s.weight", name);
    P(p, b, 1, c, 0, 0, 0, "%s.bias", name);
}

/* a convolution's weight (co, ci, k, k) and bias (co) */
static void plan_conv(planner_t *p, float **w, float **b, int co, int ci, int k, const char *name)
{
    P(p, w, 4, co, ci, k, k, "%s.weight", name);
    P(p, b, 1, co, 0, 0, 0, "%s.bias", name);
}

static void plan_resblock(planner_t *p, ae_resblock_t *b, int cin, int cout, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void plan_resblock(planner_t *p, ae_resblock_t *b, int cin, int cout, const char *fmt, ...)
{
    char base[48], name[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(base, sizeof base, fmt, ap);
    va_end(ap);
    b->cin = cin;
    b->cout = cout;
    snprintf(name, sizeof name, "%s.norm1", base);
    plan_norm(p, &b->norm1_w, &b->norm1_b, cin, name);
    snprintf(name, sizeof name, "%s.conv1", base);
    plan_conv(p, &b->conv1_w, &b->conv1_b, cout, cin, 3, name);
    snprintf(name, sizeof name, "%s.norm2", base);
    plan_norm(p, &b->norm2_w, &b->norm2_b, cout, name);
    snprintf(name, sizeof name, "%s.conv2", base);
    plan_conv(p, &b->conv2_w, &b->conv2_b, cout, cout, 3, name);
    if (cin != cout) {
        snprintf(name, sizeof name, "%s.nin_shortcut", base);
        plan_conv(p, &b->nin_w, &b->nin_b, cout, cin, 1, name);
    }
}

static void plan_mid(planner_t *p, ae_coder_t *cd, int c, const char *coder)
{
    char name[64];
    plan_resblock(p, &cd->mid1, c, c, "%s.mid.block_1", coder);
    ae_attn_t *a = &cd->attn;
    a->c = c;
    snprintf(name, sizeof name, "%s.mid.attn_1.norm", coder);
    plan_norm(p, &a->norm_w, &a->norm_b, c, name);
    snprintf(name, sizeof name, "%s.mid.attn_1.q", coder);
    plan_conv(p, &a->q_w, &a->q_b, c, c, 1, name);
    snprintf(name, sizeof name, "%s.mid.attn_1.k", coder);
    plan_conv(p, &a->k_w, &a->k_b, c, c, 1, name);
    snprintf(name, sizeof name, "%s.mid.attn_1.v", coder);
    plan_conv(p, &a->v_w, &a->v_b, c, c, 1, name);
    snprintf(name, sizeof name, "%s.mid.attn_1.proj_out", coder);
    plan_conv(p, &a->proj_w, &a->proj_b, c, c, 1, name);
    plan_resblock(p, &cd->mid2, c, c, "%s.mid.block_2", coder);
}

/* bagel-reference.md §1.9 and §5.3, in the order of the module tree */
static void plan_params(planner_t *p)
{
    const ae_config_t *c = &p->ae->cfg;
    ae_coder_t *e = &p->ae->enc, *d = &p->ae->dec;
    int n = c->n_levels, nrb = c->num_res_blocks;
    char name[64];

    plan_conv(p, &e->conv_in_w, &e->conv_in_b, c->ch, c->in_channels, 3, "encoder.conv_in");
    int cin = c->ch;
    for (int i = 0; i < n; i++) {
        int cout = c->ch * c->ch_mult[i];
        for (int j = 0; j < nrb; j++) {
            plan_resblock(p, &e->level[i].block[j], cin, cout, "encoder.down.%d.block.%d", i, j);
            cin = cout;
        }
        if (i != n - 1) {
            snprintf(name, sizeof name, "encoder.down.%d.downsample.conv", i);
            plan_conv(p, &e->level[i].resample_w, &e->level[i].resample_b, cin, cin, 3, name);
        }
    }
    plan_mid(p, e, cin, "encoder");
    plan_norm(p, &e->norm_out_w, &e->norm_out_b, cin, "encoder.norm_out");
    plan_conv(p, &e->conv_out_w, &e->conv_out_b, 2 * c->z_channels, cin, 3, "encoder.conv_out");

    cin = c->ch * c->ch_mult[n - 1];
    plan_conv(p, &d->conv_in_w, &d->conv_in_b, cin, c->z_channels, 3, "decoder.conv_in");
    plan_mid(p, d, cin, "decoder");
    for (int i = n - 1; i >= 0; i--) {
        int cout = c->ch * c->ch_mult[i];
        for (int j = 0; j < nrb + 1; j++) {
            plan_resblock(p, &d->level[i].block[j], cin, cout, "decoder.up.%d.block.%d", i, j);
            cin = cout;
        }
        if (i != 0) {
            snprintf(name, sizeof name, "decoder.up.%d.upsample.conv", i);
            plan_conv(p, &d->level[i].resample_w, &d->level[i].resample_b, cin, cin, 3, name);
        }
    }
    plan_norm(p, &d->norm_out_w, &d->norm_out_b, cin, "decoder.norm_out");
    plan_conv(p, &d->conv_out_w, &d->conv_out_b, c->out_channels, cin, 3, "decoder.conv_out");
}

ae_t *ae_new(const ae_config_t *cfg, const op_table_t *ops, char *err, size_t errlen)
{
    if (ae_config_check(cfg, err, errlen))
        return NULL;
    ae_t *ae = calloc(1, sizeof *ae);
    if (!ae) {
        snprintf(err, errlen, "ae: out of memory");
        return NULL;
    }
    ae->cfg = *cfg;
    ae->ops = ops;
    planner_t p = {.ae = ae, .pass = 0};
    plan_params(&p);
    ae->n_params = p.n;
    ae->params = calloc((size_t)p.n, sizeof *ae->params);
    if (!ae->params) {
        snprintf(err, errlen, "ae: out of memory");
        ae_destroy(&ae);
        return NULL;
    }
    p = (planner_t){.ae = ae, .pass = 1};
    plan_params(&p);
    ae->n_floats = p.off;
    ae->param_mem = ops->alloc(ae->n_floats * sizeof(float));
    if (!ae->param_mem) {
        snprintf(err, errlen, "ae: cannot allocate %zu MB of parameters on %s", ae->n_floats * 4 >> 20, ops->name);
        ae_destroy(&ae);
        return NULL;
    }
    for (int i = 0; i < ae->n_params; i++)
        *ae->params[i].w = ae->param_mem + ae->params[i].offset;
    return ae;
}

void ae_destroy(ae_t **aep)
{
    if (!aep || !*aep)
        return;
    ae_t *ae = *aep;
    if (ae->param_mem)
        ae->ops->free(ae->param_mem);
    if (ae->act_mem)
        ae->ops->free(ae->act_mem);
    free(ae->a);
    free(ae->params);
    free(ae);
    *aep = NULL;
}

const ae_param_t *ae_find(const ae_t *ae, const char *name)
{
    for (int i = 0; i < ae->n_params; i++)
        if (!strcmp(ae->params[i].name, name))
            return &ae->params[i];
    return NULL;
}

static void fmt_shape(char *buf, size_t len, const ae_param_t *p)
{
    if (p->ndim == 4)
        snprintf(buf, len, "[%lld,%lld,%lld,%lld]", (long long)p->shape[0], (long long)p->shape[1],
                 (long long)p->shape[2], (long long)p->shape[3]);
    else
        snprintf(buf, len, "[%lld]", (long long)p->shape[0]);
}

int ae_save(const ae_t *ae, const char *path, char *err, size_t errlen)
{
    st_writer_t *w = st_writer_new();
    float *host = malloc(ae->n_floats * sizeof(float));
    int rc = -1;
    if (!w || !host) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    ae->ops->download(host, ae->param_mem, ae->n_floats * sizeof(float));
    for (int i = 0; i < ae->n_params; i++) {
        const ae_param_t *p = &ae->params[i];
        if (st_writer_add_f32(w, p->name, ST_F32, p->ndim, p->shape, host + p->offset, err, errlen))
            goto out;
    }
    rc = st_writer_write(w, path, err, errlen);
out:
    st_writer_destroy(&w);
    free(host);
    return rc;
}

int ae_load(ae_t *ae, const char *path, int *n_extra, char *err, size_t errlen)
{
    char e2[400];
    st_set_t *s = st_set_open(path, e2, sizeof e2);
    if (!s) {
        snprintf(err, errlen, "%s", e2);
        return -1;
    }
    int rc = -1, used = 0;
    size_t maxn = 0;
    for (int i = 0; i < ae->n_params; i++)
        if (ae->params[i].numel > maxn)
            maxn = ae->params[i].numel;
    float *host = malloc(maxn * sizeof(float));
    if (!host) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    for (int i = 0; i < ae->n_params; i++) {
        const ae_param_t *p = &ae->params[i];
        const st_tensor_t *t = st_set_find(s, p->name);
        if (!t) {
            char shp[96];
            fmt_shape(shp, sizeof shp, p);
            snprintf(err, errlen, "%s: no tensor \"%s\", expected %s for the autoencoder (ch %d, %d levels, z %d)",
                     path, p->name, shp, ae->cfg.ch, ae->cfg.n_levels, ae->cfg.z_channels);
            goto out;
        }
        used++;
        if (st_expect(t, -1, p->ndim, p->shape, e2, sizeof e2) || st_read_f32(t, host, p->numel, e2, sizeof e2)) {
            snprintf(err, errlen, "%s", e2);
            goto out;
        }
        ae->ops->upload(*p->w, host, p->numel * sizeof(float));
    }
    if (n_extra)
        *n_extra = st_set_count(s) - used;
    rc = 0;
out:
    free(host);
    st_set_close(&s);
    return rc;
}

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

void ae_init_test(ae_t *ae, uint64_t seed)
{
    for (int i = 0; i < ae->n_params; i++) {
        const ae_param_t *p = &ae->params[i];
        float *buf = malloc(p->numel * sizeof(float));
        if (!buf)
            continue;
        uint64_t key = model_fnv1a64(p->name) ^ seed;
        int bias = ends_with(p->name, ".bias");
        float inv = p->ndim == 4 ? 1.0f / sqrtf((float)(p->shape[1] * p->shape[2] * p->shape[3])) : 0.0f;
#pragma omp parallel for schedule(static)
        for (size_t k = 0; k < p->numel; k++) {
            double u = (double)(model_splitmix64(key + k) >> 40) * 0x1.0p-24;
            float v = (float)(2.0 * u - 1.0);
            if (p->ndim == 4)
                buf[k] = v * inv;
            else if (bias)
                buf[k] = 0.1f * v;
            else
                buf[k] = 1.0f + 0.1f * v;
        }
        ae->ops->upload(*p->w, buf, p->numel * sizeof(float));
        free(buf);
    }
}

/* ---- the forward passes, planned or run ------------------------------ */

typedef struct ae_run {
    ae_t *ae;
    const op_table_t *o;
    int plan;         /* 1: call no op, only record sizes in need */
    int n;            /* images in the batch dimension (the decoder: 1) */
    ae_plan_t need;   /* the largest of each buffer so far */
    float *x, *t, *h; /* current activation and scratch; swapped as we go */
} ae_run_t;

/* n floats per image, r->n images */
static void need_big(ae_run_t *r, size_t n)
{
    n *= (size_t)r->n;
    if (n > r->need.big)
        r->need.big = n;
}

static void swap_xh(ae_run_t *r)
{
    float *s = r->x;
    r->x = r->h;
    r->h = s;
}

/* out = conv k×k (stride 1, padding k/2) of in [n, ci, h, w] */
static void conv(ae_run_t *r, float *out, const float *in, const float *w, const float *b, int ci, int h, int wd,
                 int co, int k)
{
    need_big(r, (size_t)co * h * wd);
    if (!r->plan)
        r->o->conv2d_fwd(out, in, w, b, r->n, ci, h, wd, co, k, k, 1, k / 2, k / 2, k / 2, k / 2);
}

/* out = GroupNorm(in) [n, c, hw] */
static void norm(ae_run_t *r, float *out, const float *in, const float *w, const float *b, int c, size_t hw)
{
    need_big(r, (size_t)c * hw);
    if (!r->plan)
        r->o->groupnorm_fwd(out, r->ae->a->gn_mean, r->ae->a->gn_rstd, in, w, b, r->n, c, (int)hw, AE_GROUPS,
                            AE_NORM_EPS);
}

/* out = conv k×k (stride 1, padding k/2) of swish(GroupNorm(in)) [n, ci, h,
 * w], plus res when not NULL: one op (gn_conv2d_fwd), so a backend need not
 * keep the normalized tensor */
static void norm_conv(ae_run_t *r, float *out, const float *in, const float *nw, const float *nb, int ci,
                      const float *w, const float *b, int co, int h, int wd, int k, const float *res)
{
    need_big(r, (size_t)ci * h * wd);
    need_big(r, (size_t)co * h * wd);
    if (!r->plan)
        r->o->gn_conv2d_fwd(out, r->ae->a->gn_mean, r->ae->a->gn_rstd, in, nw, nb, AE_GROUPS, AE_NORM_EPS, 1, w, b,
                            res, r->n, ci, h, wd, co, k);
}

/* x [cin, h, w] -> x [cout, h, w]:
 * x + conv2(swish(norm2(conv1(swish(norm1(x)))))), x through nin_shortcut
 * when cin != cout */
static void resblock(ae_run_t *r, const ae_resblock_t *b, int h, int w)
{
    norm_conv(r, r->h, r->x, b->norm1_w, b->norm1_b, b->cin, b->conv1_w, b->conv1_b, b->cout, h, w, 3, NULL);
    if (b->nin_w) { /* t = nin(x); x is free for the sum */
        conv(r, r->t, r->x, b->nin_w, b->nin_b, b->cin, h, w, b->cout, 1);
        norm_conv(r, r->x, r->h, b->norm2_w, b->norm2_b, b->cout, b->conv2_w, b->conv2_b, b->cout, h, w, 3, r->t);
    } else { /* the sum into t, which becomes x */
        norm_conv(r, r->t, r->h, b->norm2_w, b->norm2_b, b->cout, b->conv2_w, b->conv2_b, b->cout, h, w, 3, r->x);
        float *s = r->x;
        r->x = r->t;
        r->t = s;
    }
}

/* x [C, h, w] += proj_out(attention(q, k, v)) over the S = h·w positions,
 * one head of dim C, every position seeing every other: one full split.
 * GroupNorm runs on the whole batch; the tokens, one image at a time (the
 * token buffers hold one image, and each image's rows go through the same
 * calls as when it is alone). */
static void attnblock(ae_run_t *r, const ae_attn_t *a, int h, int w)
{
    int C = a->c, S = h * w;
    size_t n = (size_t)S * C;
    if (n > r->need.tok)
        r->need.tok = n;
    if (S > r->need.S)
        r->need.S = S;
    norm(r, r->t, r->x, a->norm_w, a->norm_b, C, (size_t)S);
    need_big(r, n);
    if (r->plan)
        return;
    const op_table_t *o = r->o;
    ae_acts_t *ac = r->ae->a;
    int32_t start[2] = {0, S}, first = 0;
    uint8_t mode = OP_SPLIT_FULL;
    if (ac->split_S != S) { /* three small synchronous copies: once per size, not per call */
        o->upload(ac->split_start, start, sizeof start);
        o->upload(ac->split_first, &first, sizeof first);
        o->upload(ac->split_mode, &mode, sizeof mode);
        ac->split_S = S;
    }
    op_attn_t at = {
        .n_tok = S,
        .n_heads = 1,
        .n_kv_heads = 1,
        .head_dim = C,
        .scale = (float)(1.0 / sqrt((double)C)),
        .n_splits = 1,
        .split_start = ac->split_start,
        .split_mode = ac->split_mode,
        .split_first = ac->split_first,
        .row_of_pos = NULL,
        .dense = 1,
    };
    for (int i = 0; i < r->n; i++) {
        float *tk = r->h + (size_t)i * n, *ti = r->t + (size_t)i * n;
        o->patchify_chw(tk, ti, C, h, w, 1); /* [C, S] -> tokens [S, C] */
        o->linear_fwd(ac->q, tk, a->q_w, a->q_b, S, C, C);
        o->linear_fwd(ac->k, tk, a->k_w, a->k_b, S, C, C);
        o->linear_fwd(ac->v, tk, a->v_w, a->v_b, S, C, C);
        o->attention_fwd(ac->o, ac->lse, ac->q, ac->k, ac->v, &at);
        o->linear_fwd(tk, ac->o, a->proj_w, a->proj_b, S, C, C);
        o->unpatchify_chw(ti, tk, C, h, w, 1); /* tokens -> [C, S] */
    }
    o->axpy(r->x, 1.0f, r->t, n * (size_t)r->n);
}

static void mid(ae_run_t *r, const ae_coder_t *cd, int h, int w)
{
    resblock(r, &cd->mid1, h, w);
    attnblock(r, &cd->attn, h, w);
    resblock(r, &cd->mid2, h, w);
}

/* x [C, h, w] -> [C, h/2, w/2]: zero pad right and bottom by one, then 3×3
 * stride 2 without padding */
static void downsample(ae_run_t *r, const ae_level_t *l, int c, int h, int w)
{
    need_big(r, (size_t)c * (h / 2) * (w / 2));
    if (!r->plan)
        r->o->conv2d_fwd(r->h, r->x, l->resample_w, l->resample_b, r->n, c, h, w, c, 3, 3, 2, 0, 0, 1, 1);
    swap_xh(r);
}

/* x [C, h, w] -> [C, 2h, 2w]: nearest ×2, then 3×3 */
static void upsample(ae_run_t *r, const ae_level_t *l, int c, int h, int w)
{
    need_big(r, (size_t)c * 4 * h * w);
    if (!r->plan)
        r->o->upsample2x(r->t, r->x, r->n * c, h, w); /* the planes of every image */
    conv(r, r->h, r->t, l->resample_w, l->resample_b, c, 2 * h, 2 * w, c, 3);
    swap_xh(r);
}

/* r->n images u8 [H, W, cin] (host) -> moments [n, 2z, H/f, W/f] in r->x */
static void encoder(ae_run_t *r, const uint8_t *const *img, int H, int W)
{
    const ae_config_t *c = &r->ae->cfg;
    const ae_coder_t *e = &r->ae->enc;
    size_t px = (size_t)H * W * c->in_channels;
    if (px * (size_t)r->n > r->need.img)
        r->need.img = px * (size_t)r->n;
    need_big(r, px);
    if (!r->plan) {
        ae_acts_t *ac = r->ae->a;
        for (int i = 0; i < r->n; i++) {
            uint8_t *u = ac->img + (size_t)i * px;
            float *t = r->t + (size_t)i * px, *x = r->x + (size_t)i * px;
            r->o->upload(u, img[i], px);
            r->o->patchify_u8(t, u, H, W, c->in_channels, 1);    /* normalized [H·W, cin] */
            r->o->unpatchify_chw(x, t, c->in_channels, H, W, 1); /* -> [cin, H, W] */
        }
    }
    conv(r, r->h, r->x, e->conv_in_w, e->conv_in_b, c->in_channels, H, W, c->ch, 3);
    swap_xh(r);
    int h = H, w = W, C = c->ch;
    for (int i = 0; i < c->n_levels; i++) {
        for (int j = 0; j < c->num_res_blocks; j++)
            resblock(r, &e->level[i].block[j], h, w);
        C = c->ch * c->ch_mult[i];
        if (i != c->n_levels - 1) {
            downsample(r, &e->level[i], C, h, w);
            h /= 2;
            w /= 2;
        }
    }
    mid(r, e, h, w);
    norm_conv(r, r->h, r->x, e->norm_out_w, e->norm_out_b, C, e->conv_out_w, e->conv_out_b, 2 * c->z_channels, h, w, 3,
              NULL);
    swap_xh(r);
}

/* z_scaled [z, h, w] (host) -> pixels [cout, h·f, w·f] in r->x */
static void decoder(ae_run_t *r, const float *z, int h, int w)
{
    const ae_config_t *c = &r->ae->cfg;
    const ae_coder_t *d = &r->ae->dec;
    size_t nz = (size_t)c->z_channels * h * w;
    need_big(r, nz);
    if (!r->plan) {
        r->o->upload(r->x, z, nz * sizeof(float));
        r->o->affine(r->x, r->x, 1.0f / c->scale, c->shift, nz); /* z/scale + shift */
    }
    int C = c->ch * c->ch_mult[c->n_levels - 1];
    conv(r, r->h, r->x, d->conv_in_w, d->conv_in_b, c->z_channels, h, w, C, 3);
    swap_xh(r);
    mid(r, d, h, w);
    for (int i = c->n_levels - 1; i >= 0; i--) {
        for (int j = 0; j < c->num_res_blocks + 1; j++)
            resblock(r, &d->level[i].block[j], h, w);
        C = c->ch * c->ch_mult[i];
        if (i != 0) {
            upsample(r, &d->level[i], C, h, w);
            h *= 2;
            w *= 2;
        }
    }
    norm_conv(r, r->h, r->x, d->norm_out_w, d->norm_out_b, C, d->conv_out_w, d->conv_out_b, c->out_channels, h, w, 3,
              NULL);
    swap_xh(r);
    size_t px = (size_t)h * w * c->out_channels;
    if (px > r->need.img)
        r->need.img = px;
}

/* ---- activations ----------------------------------------------------- */

static int check_size(const ae_t *ae, int H, int W, char *err, size_t errlen)
{
    int f = ae_downsample(&ae->cfg);
    if (H < f || W < f || H > AE_MAX_SIDE || W > AE_MAX_SIDE || H % f || W % f) {
        snprintf(err, errlen, "ae: image %dx%d, expected sides that are multiples of %d from %d to %d", W, H, f, f,
                 AE_MAX_SIDE);
        return -1;
    }
    return 0;
}

/* the buffers of n images encoded at once and of one decoded */
static ae_plan_t plan_size(ae_t *ae, int n, int H, int W)
{
    int f = ae_downsample(&ae->cfg);
    ae_run_t r = {.ae = ae, .o = ae->ops, .plan = 1, .n = n};
    encoder(&r, NULL, H, W);
    r.n = 1;
    decoder(&r, NULL, H / f, W / f);
    r.need.n = n;
    return r.need;
}

static int plan_fits(const ae_plan_t *p, const ae_plan_t *cap)
{
    return p->big <= cap->big && p->tok <= cap->tok && p->S <= cap->S && p->img <= cap->img && p->n <= cap->n;
}

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

int ae_reserve(ae_t *ae, int max_h, int max_w, char *err, size_t errlen)
{
    return ae_reserve_batch(ae, 1, max_h, max_w, err, errlen);
}

int ae_reserve_batch(ae_t *ae, int n, int max_h, int max_w, char *err, size_t errlen)
{
    if (n < 1 || n > AE_MAX_BATCH) {
        snprintf(err, errlen, "ae: a batch of %d images, expected 1 to %d", n, AE_MAX_BATCH);
        return -1;
    }
    if (check_size(ae, max_h, max_w, err, errlen))
        return -1;
    ae_plan_t p = plan_size(ae, n, max_h, max_w);
    if (ae->act_mem && plan_fits(&p, &ae->cap))
        return 0;
    if (ae->act_mem) { /* grow: whatever fitted before still fits */
        const ae_plan_t *c = &ae->cap;
        p.big = p.big > c->big ? p.big : c->big;
        p.tok = p.tok > c->tok ? p.tok : c->tok;
        p.S = p.S > c->S ? p.S : c->S;
        p.img = p.img > c->img ? p.img : c->img;
        p.n = p.n > c->n ? p.n : c->n;
        max_h = max_h > ae->max_h ? max_h : ae->max_h;
        max_w = max_w > ae->max_w ? max_w : ae->max_w;
        ae->ops->free(ae->act_mem);
        ae->act_mem = NULL;
    }
    if (!ae->a && !(ae->a = calloc(1, sizeof *ae->a))) {
        snprintf(err, errlen, "ae: out of memory");
        return -1;
    }
    /* one block: byte offsets of every buffer, each 64-byte aligned */
    size_t off[12], bytes = 0, gn = (size_t)p.n * AE_GROUPS * 4;
    size_t sizes[12] = {p.big * 4, p.big * 4,       p.big * 4, p.tok * 4, p.tok * 4, p.tok * 4,
                        p.tok * 4, (size_t)p.S * 4, gn,        gn,        3 * 4,     1 + p.img};
    for (int i = 0; i < 12; i++) {
        off[i] = bytes;
        bytes += align64(sizes[i]);
    }
    char *mem = ae->ops->alloc(bytes);
    if (!mem) {
        char nb[24] = "";
        if (p.n > 1)
            snprintf(nb, sizeof nb, "batches of %d ", p.n);
        snprintf(err, errlen, "ae: cannot allocate %zu MB of activations for %s%dx%d images on %s", bytes >> 20, nb,
                 max_w, max_h, ae->ops->name);
        return -1;
    }
    ae_acts_t *a = ae->a;
    a->x = (float *)(mem + off[0]);
    a->t = (float *)(mem + off[1]);
    a->h = (float *)(mem + off[2]);
    a->q = (float *)(mem + off[3]);
    a->k = (float *)(mem + off[4]);
    a->v = (float *)(mem + off[5]);
    a->o = (float *)(mem + off[6]);
    a->lse = (float *)(mem + off[7]);
    a->gn_mean = (float *)(mem + off[8]);
    a->gn_rstd = (float *)(mem + off[9]);
    a->split_start = (int32_t *)(mem + off[10]);
    a->split_first = a->split_start + 2;
    a->split_mode = (uint8_t *)(mem + off[11]);
    a->img = a->split_mode + 1;
    a->split_S = 0;
    ae->act_mem = mem;
    ae->act_bytes = bytes;
    ae->cap = p;
    ae->max_h = max_h;
    ae->max_w = max_w;
    ae->max_n = p.n;
    return 0;
}

/* n images of H × W fit the reserved buffers */
static int check_fits(ae_t *ae, int n, int H, int W, char *err, size_t errlen)
{
    if (check_size(ae, H, W, err, errlen))
        return -1;
    if (!ae->act_mem) {
        snprintf(err, errlen, "ae: no activations: call ae_reserve first");
        return -1;
    }
    if (n < 1 || n > AE_MAX_BATCH) {
        snprintf(err, errlen, "ae: a batch of %d images, expected 1 to %d", n, AE_MAX_BATCH);
        return -1;
    }
    ae_plan_t p = plan_size(ae, n, H, W);
    if (!plan_fits(&p, &ae->cap)) {
        if (n == 1)
            snprintf(err, errlen, "ae: image %dx%d is larger than the reserved %dx%d (ae_reserve)", W, H, ae->max_w,
                     ae->max_h);
        else
            snprintf(err, errlen, "ae: %d images of %dx%d are more than the reserved %d of %dx%d (ae_reserve_batch)", n,
                     W, H, ae->max_n, ae->max_w, ae->max_h);
        return -1;
    }
    return 0;
}

static ae_run_t run_start(ae_t *ae)
{
    return (ae_run_t){.ae = ae, .o = ae->ops, .plan = 0, .n = 1, .x = ae->a->x, .t = ae->a->t, .h = ae->a->h};
}

int ae_encode(ae_t *ae, const uint8_t *img, int H, int W, float *mean_logvar, char *err, size_t errlen)
{
    return ae_encode_batch(ae, 1, &img, H, W, mean_logvar, err, errlen);
}

int ae_encode_batch(ae_t *ae, int n, const uint8_t *const *img, int H, int W, float *mean_logvar, char *err,
                    size_t errlen)
{
    if (check_fits(ae, n, H, W, err, errlen))
        return -1;
    int f = ae_downsample(&ae->cfg);
    ae_run_t r = run_start(ae);
    r.n = n;
    encoder(&r, img, H, W);
    ae->ops->download(mean_logvar, r.x, (size_t)n * 2 * ae->cfg.z_channels * (H / f) * (W / f) * sizeof(float));
    return 0;
}

/* a latent of h × w positions: its image fits the reserved buffers */
static int check_latent(ae_t *ae, int h, int w, char *err, size_t errlen)
{
    int f = ae_downsample(&ae->cfg);
    if (h < 1 || w < 1 || h > AE_MAX_SIDE / f || w > AE_MAX_SIDE / f) {
        snprintf(err, errlen, "ae: latent %dx%d, expected sides from 1 to %d", w, h, AE_MAX_SIDE / f);
        return -1;
    }
    return check_fits(ae, 1, h * f, w * f, err, errlen);
}

int ae_sample_scaled(ae_t *ae, const float *mean_logvar, const float *eps, int h, int w, float *z, char *err,
                     size_t errlen)
{
    if (check_latent(ae, h, w, err, errlen))
        return -1;
    const op_table_t *o = ae->ops;
    const ae_config_t *c = &ae->cfg;
    size_t nz = (size_t)c->z_channels * h * w;
    ae_acts_t *a = ae->a;
    /* the moments fit x (the encoder's output), eps and z fit t and h */
    o->upload(a->x, mean_logvar, 2 * nz * sizeof(float));
    o->upload(a->t, eps, nz * sizeof(float));
    o->gauss_sample(a->h, a->x, a->x + nz, a->t, nz);
    o->affine(a->h, a->h, c->scale, -c->scale * c->shift, nz);
    o->download(z, a->h, nz * sizeof(float));
    return 0;
}

int ae_decode(ae_t *ae, const float *z_scaled, int h, int w, uint8_t *img, float *pixels, char *err, size_t errlen)
{
    if (check_latent(ae, h, w, err, errlen))
        return -1;
    int f = ae_downsample(&ae->cfg), H = h * f, W = w * f;
    const op_table_t *o = ae->ops;
    int co = ae->cfg.out_channels;
    ae_run_t r = run_start(ae);
    decoder(&r, z_scaled, h, w);
    if (pixels)
        o->download(pixels, r.x, (size_t)co * H * W * sizeof(float));
    if (img) {
        o->patchify_chw(r.t, r.x, co, H, W, 1); /* [co, H, W] -> [H·W, co] */
        o->unpatchify_u8(ae->a->img, r.t, H, W, co, 1);
        o->download(img, ae->a->img, (size_t)H * W * co);
    }
    return 0;
}
