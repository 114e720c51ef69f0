/* prof.c — the timing op table of prof.h. Generated shape: one forwarding
 * function per op of kernels/ops.h (alloc, free, sync and grad_write pass
 * through untimed; upload and download are timed, so the host-device copies of a
 * step show). */
#define _POSIX_C_SOURCE 200809L
#include "prof.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    P_upload,
    P_download,
    P_zero,
    P_linear_fwd,
    P_linear_bwd,
    P_linear_bwd_set,
    P_linear3_fwd,
    P_linear3_bwd,
    P_rmsnorm_fwd,
    P_rmsnorm_bwd,
    P_rmsnorm_bwd_set,
    P_layernorm_fwd,
    P_layernorm_bwd,
    P_rope_fwd,
    P_rope_bwd,
    P_swiglu_fwd,
    P_mlp_fwd,
    P_mlp_bwd,
    P_swiglu_bwd,
    P_swiglu_bwd_set,
    P_gelu_fwd,
    P_gelu_bwd,
    P_gelu_bwd_set,
    P_silu_fwd,
    P_silu_bwd,
    P_attention_fwd,
    P_attention_kv,
    P_attention_bwd,
    P_rows_copy,
    P_rows_add,
    P_axpy,
    P_classifier_ce,
    P_mse,
    P_flow_noise,
    P_cfg_euler,
    P_timestep_freq,
    P_patchify_u8,
    P_patchify_chw,
    P_unpatchify_chw,
    P_conv2d_fwd,
    P_conv2d_bwd,
    P_groupnorm_fwd,
    P_groupnorm_bwd,
    P_gn_conv2d_fwd,
    P_adamw,
    P_ema,
    P_sumsq,
    P_scale,
    P_upsample2x,
    P_affine,
    P_gauss_sample,
    P_unpatchify_u8,
    P_argmax_rows,
    P_hold_weights,
    P_track_weights,
    P_N
};
static const char *const op_names[P_N] = {
    "upload",
    "download",
    "zero",
    "linear_fwd",
    "linear_bwd",
    "linear_bwd_set",
    "linear3_fwd",
    "linear3_bwd",
    "rmsnorm_fwd",
    "rmsnorm_bwd",
    "rmsnorm_bwd_set",
    "layernorm_fwd",
    "layernorm_bwd",
    "rope_fwd",
    "rope_bwd",
    "swiglu_fwd",
    "mlp_fwd",
    "mlp_bwd",
    "swiglu_bwd",
    "swiglu_bwd_set",
    "gelu_fwd",
    "gelu_bwd",
    "gelu_bwd_set",
    "silu_fwd",
    "silu_bwd",
    "attention_fwd",
    "attention_kv",
    "attention_bwd",
    "rows_copy",
    "rows_add",
    "axpy",
    "classifier_ce",
    "mse",
    "flow_noise",
    "cfg_euler",
    "timestep_freq",
    "patchify_u8",
    "patchify_chw",
    "unpatchify_chw",
    "conv2d_fwd",
    "conv2d_bwd",
    "groupnorm_fwd",
    "groupnorm_bwd",
    "gn_conv2d_fwd",
    "adamw",
    "ema",
    "sumsq",
    "scale",
    "upsample2x",
    "affine",
    "gauss_sample",
    "unpatchify_u8",
    "argmax_rows",
    "hold_weights",
    "track_weights",
};

static const op_table_t *prof_inner;
static op_table_t wrapped;
static double total_ms[P_N];
static long calls[P_N];

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static double begin(void)
{
    prof_inner->sync();
    return now_ms();
}

static void end(int op, double t0)
{
    prof_inner->sync();
    total_ms[op] += now_ms() - t0;
    calls[op]++;
}

/* the costliest ops by shape as well: conv2d_fwd, gn_conv2d_fwd, linear_fwd, attention_fwd */
#define N_SHAPES 96
static struct {
    char key[72];
    long calls;
    double ms;
} shapes[N_SHAPES];
static int n_shapes;

static void shape_add(const char *key, double ms)
{
    int i = 0;
    while (i < n_shapes && strcmp(shapes[i].key, key))
        i++;
    if (i == n_shapes) {
        if (n_shapes == N_SHAPES)
            return;
        snprintf(shapes[n_shapes++].key, sizeof shapes[0].key, "%s", key);
    }
    shapes[i].calls++;
    shapes[i].ms += ms;
}

static void end_shape(int op, double t0, const char *key)
{
    end(op, t0);
    shape_add(key, now_ms() - t0);
}

static void w_upload(void *dst, const void *host_src, size_t bytes)
{
    double t0_ = begin();
    prof_inner->upload(dst, host_src, bytes);
    end(P_upload, t0_);
}

static void w_download(void *host_dst, const void *src, size_t bytes)
{
    double t0_ = begin();
    prof_inner->download(host_dst, src, bytes);
    end(P_download, t0_);
}

static void w_zero(void *p, size_t bytes)
{
    double t0_ = begin();
    prof_inner->zero(p, bytes);
    end(P_zero, t0_);
}

static void w_linear_fwd(float *out, const float *in, const float *w, const float *b, int n, int in_dim, int out_dim)
{
    double t0_ = begin();
    prof_inner->linear_fwd(out, in, w, b, n, in_dim, out_dim);
    char key[72];
    snprintf(key, sizeof key, "linear_fwd %dx%d->%d", n, in_dim, out_dim);
    end_shape(P_linear_fwd, t0_, key);
}

static void w_linear_bwd(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int n, int in_dim, int out_dim)
{
    double t0_ = begin();
    prof_inner->linear_bwd(din, dw, db, dout, in, w, n, in_dim, out_dim);
    end(P_linear_bwd, t0_);
}

static void w_linear_bwd_set(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int n, int in_dim, int out_dim)
{
    double t0_ = begin();
    prof_inner->linear_bwd_set(din, dw, db, dout, in, w, n, in_dim, out_dim);
    end(P_linear_bwd_set, t0_);
}

static void w_rmsnorm_fwd(float *out, float *rstd, const float *in, const float *w, int n, int c, float eps)
{
    double t0_ = begin();
    prof_inner->rmsnorm_fwd(out, rstd, in, w, n, c, eps);
    end(P_rmsnorm_fwd, t0_);
}

static void w_rmsnorm_bwd(float *din, float *dw, const float *dout, const float *in, const float *w, const float *rstd, int n, int c)
{
    double t0_ = begin();
    prof_inner->rmsnorm_bwd(din, dw, dout, in, w, rstd, n, c);
    end(P_rmsnorm_bwd, t0_);
}

static void w_rmsnorm_bwd_set(float *din, float *dw, const float *dout, const float *in, const float *w,
                              const float *rstd, int n, int c)
{
    double t0_ = begin();
    prof_inner->rmsnorm_bwd_set(din, dw, dout, in, w, rstd, n, c);
    end(P_rmsnorm_bwd_set, t0_);
}

static void w_layernorm_fwd(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b, int n, int c, float eps)
{
    double t0_ = begin();
    prof_inner->layernorm_fwd(out, mean, rstd, in, w, b, n, c, eps);
    end(P_layernorm_fwd, t0_);
}

static void w_layernorm_bwd(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, const float *mean, const float *rstd, int n, int c)
{
    double t0_ = begin();
    prof_inner->layernorm_bwd(din, dw, db, dout, in, w, mean, rstd, n, c);
    end(P_layernorm_bwd, t0_);
}

static void w_rope_fwd(float *x, const int32_t *pos, int n, int h, int d, float theta)
{
    double t0_ = begin();
    prof_inner->rope_fwd(x, pos, n, h, d, theta);
    end(P_rope_fwd, t0_);
}

static void w_rope_bwd(float *dx, const int32_t *pos, int n, int h, int d, float theta)
{
    double t0_ = begin();
    prof_inner->rope_bwd(dx, pos, n, h, d, theta);
    end(P_rope_bwd, t0_);
}

static void w_linear3_fwd(const op_lin_t *l, const float *in, int n, int in_dim)
{
    double t0_ = begin();
    prof_inner->linear3_fwd(l, in, n, in_dim);
    char key[72];
    snprintf(key, sizeof key, "linear3_fwd %dx%d->%d+%d+%d", n, in_dim, l[0].dim, l[1].dim, l[2].dim);
    end_shape(P_linear3_fwd, t0_, key);
}

static void w_linear3_bwd(float *din, const op_lin_t *l, const float *in, int n, int in_dim, int set)
{
    double t0_ = begin();
    prof_inner->linear3_bwd(din, l, in, n, in_dim, set);
    end(P_linear3_bwd, t0_);
}

static void w_mlp_fwd(float *out, float *gate, float *up, float *mm, const float *in, const float *gate_w,
                      const float *up_w, const float *down_w, int n, int h, int i)
{
    double t0_ = begin();
    prof_inner->mlp_fwd(out, gate, up, mm, in, gate_w, up_w, down_w, n, h, i);
    end(P_mlp_fwd, t0_);
}

static void w_mlp_bwd(float *din, float *dgate_w, float *dup_w, float *ddown_w, const float *dout, const float *in,
                      const float *gate_w, const float *up_w, const float *down_w, const float *gate, const float *up,
                      const float *mm, float *dgate, float *dup, float *dmm, int n, int h, int i)
{
    double t0_ = begin();
    prof_inner->mlp_bwd(din, dgate_w, dup_w, ddown_w, dout, in, gate_w, up_w, down_w, gate, up, mm, dgate, dup, dmm, n,
                        h, i);
    end(P_mlp_bwd, t0_);
}

static void w_swiglu_fwd(float *out, const float *gate, const float *up, size_t m)
{
    double t0_ = begin();
    prof_inner->swiglu_fwd(out, gate, up, m);
    end(P_swiglu_fwd, t0_);
}

static void w_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t m)
{
    double t0_ = begin();
    prof_inner->swiglu_bwd(dgate, dup, dout, gate, up, m);
    end(P_swiglu_bwd, t0_);
}

static void w_swiglu_bwd_set(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t m)
{
    double t0_ = begin();
    prof_inner->swiglu_bwd_set(dgate, dup, dout, gate, up, m);
    end(P_swiglu_bwd_set, t0_);
}

static void w_gelu_fwd(float *out, const float *in, size_t m)
{
    double t0_ = begin();
    prof_inner->gelu_fwd(out, in, m);
    end(P_gelu_fwd, t0_);
}

static void w_gelu_bwd(float *din, const float *dout, const float *in, size_t m)
{
    double t0_ = begin();
    prof_inner->gelu_bwd(din, dout, in, m);
    end(P_gelu_bwd, t0_);
}

static void w_gelu_bwd_set(float *din, const float *dout, const float *in, size_t m)
{
    double t0_ = begin();
    prof_inner->gelu_bwd_set(din, dout, in, m);
    end(P_gelu_bwd_set, t0_);
}

static void w_silu_fwd(float *out, const float *in, size_t m)
{
    double t0_ = begin();
    prof_inner->silu_fwd(out, in, m);
    end(P_silu_fwd, t0_);
}

static void w_silu_bwd(float *din, const float *dout, const float *in, size_t m)
{
    double t0_ = begin();
    prof_inner->silu_bwd(din, dout, in, m);
    end(P_silu_bwd, t0_);
}

static void w_attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v, const op_attn_t *a)
{
    double t0_ = begin();
    prof_inner->attention_fwd(out, lse, q, k, v, a);
    char key[72];
    snprintf(key, sizeof key, "attention_fwd %d rows %d:%d heads d=%d%s", a->n_tok, a->n_heads, a->n_kv_heads,
             a->head_dim, a->dense ? " dense" : "");
    end_shape(P_attention_fwd, t0_, key);
}

static void w_attention_kv(float *out, const float *q, const float *kc, const float *vc, const op_kv_attn_t *a)
{
    double t0_ = begin();
    prof_inner->attention_kv(out, q, kc, vc, a);
    end(P_attention_kv, t0_);
}

static void w_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse, const float *q, const float *k, const float *v, const op_attn_t *a)
{
    double t0_ = begin();
    prof_inner->attention_bwd(dq, dk, dv, dout, out, lse, q, k, v, a);
    end(P_attention_bwd, t0_);
}

static void w_rows_copy(float *out, const int32_t *oi, const float *in, const int32_t *ii, int n, int c)
{
    double t0_ = begin();
    prof_inner->rows_copy(out, oi, in, ii, n, c);
    end(P_rows_copy, t0_);
}

static void w_rows_add(float *out, const int32_t *oi, const float *in, const int32_t *ii, int n, int c)
{
    double t0_ = begin();
    prof_inner->rows_add(out, oi, in, ii, n, c);
    end(P_rows_add, t0_);
}

static void w_axpy(float *y, float a, const float *x, size_t m)
{
    double t0_ = begin();
    prof_inner->axpy(y, a, x, m);
    end(P_axpy, t0_);
}

static void w_classifier_ce(float *loss, float *dh, float *dw, const float *h, const float *w, const int32_t *label, const float *dloss, int n, int c, int V, float *scratch, int chunk)
{
    double t0_ = begin();
    prof_inner->classifier_ce(loss, dh, dw, h, w, label, dloss, n, c, V, scratch, chunk);
    end(P_classifier_ce, t0_);
}

static void w_mse(float *loss, float *dpred, const float *pred, const float *target, const float *dloss, int n, int d)
{
    double t0_ = begin();
    prof_inner->mse(loss, dpred, pred, target, dloss, n, d);
    end(P_mse, t0_);
}

static void w_flow_noise(float *xt, float *target, const float *x0, const float *eps, const float *t, int n, int d)
{
    double t0_ = begin();
    prof_inner->flow_noise(xt, target, x0, eps, t, n, d);
    end(P_flow_noise, t0_);
}

static void w_cfg_euler(float *x, float *v, const float *v_c, const float *v_t, const float *v_i, int n, int dim,
                        float s_txt, float s_img, int renorm, float renorm_min, float dt)
{
    double t0_ = begin();
    prof_inner->cfg_euler(x, v, v_c, v_t, v_i, n, dim, s_txt, s_img, renorm, renorm_min, dt);
    end(P_cfg_euler, t0_);
}

static void w_timestep_freq(float *out, const float *t, int n, int half)
{
    double t0_ = begin();
    prof_inner->timestep_freq(out, t, n, half);
    end(P_timestep_freq, t0_);
}

static void w_patchify_u8(float *out, const uint8_t *img, int H, int W, int C, int p)
{
    double t0_ = begin();
    prof_inner->patchify_u8(out, img, H, W, C, p);
    end(P_patchify_u8, t0_);
}

static void w_patchify_chw(float *out, const float *z, int C, int H, int W, int p)
{
    double t0_ = begin();
    prof_inner->patchify_chw(out, z, C, H, W, p);
    end(P_patchify_chw, t0_);
}

static void w_unpatchify_chw(float *z, const float *tokens, int C, int H, int W, int p)
{
    double t0_ = begin();
    prof_inner->unpatchify_chw(z, tokens, C, H, W, p);
    end(P_unpatchify_chw, t0_);
}

static void w_conv2d_fwd(float *out, const float *in, const float *w, const float *b, int n, int ci, int h, int wd, int co, int kh, int kw, int stride, int pad_t, int pad_l, int pad_b, int pad_r)
{
    double t0_ = begin();
    prof_inner->conv2d_fwd(out, in, w, b, n, ci, h, wd, co, kh, kw, stride, pad_t, pad_l, pad_b, pad_r);
    char key[72];
    snprintf(key, sizeof key, "conv2d_fwd n%d %d->%d %dx%d/%d at %dx%d", n, ci, co, kh, kw, stride, h, wd);
    end_shape(P_conv2d_fwd, t0_, key);
}

static void w_conv2d_bwd(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int n, int ci, int h, int wd, int co, int kh, int kw, int stride, int pad_t, int pad_l, int pad_b, int pad_r)
{
    double t0_ = begin();
    prof_inner->conv2d_bwd(din, dw, db, dout, in, w, n, ci, h, wd, co, kh, kw, stride, pad_t, pad_l, pad_b, pad_r);
    end(P_conv2d_bwd, t0_);
}

static void w_groupnorm_fwd(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b, int n, int c, int hw, int groups, float eps)
{
    double t0_ = begin();
    prof_inner->groupnorm_fwd(out, mean, rstd, in, w, b, n, c, hw, groups, eps);
    end(P_groupnorm_fwd, t0_);
}

static void w_gn_conv2d_fwd(float *out, float *mean, float *rstd, const float *in, const float *gw, const float *gb, int groups, float eps, int act, const float *w, const float *b, const float *res, int n, int ci, int h, int wd, int co, int k)
{
    double t0_ = begin();
    prof_inner->gn_conv2d_fwd(out, mean, rstd, in, gw, gb, groups, eps, act, w, b, res, n, ci, h, wd, co, k);
    char key[72];
    snprintf(key, sizeof key, "gn_conv2d_fwd n%d %d->%d %dx%d at %dx%d%s", n, ci, co, k, k, h, wd, res ? " +res" : "");
    end_shape(P_gn_conv2d_fwd, t0_, key);
}

static void w_groupnorm_bwd(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, const float *mean, const float *rstd, int n, int c, int hw, int groups)
{
    double t0_ = begin();
    prof_inner->groupnorm_bwd(din, dw, db, dout, in, w, mean, rstd, n, c, hw, groups);
    end(P_groupnorm_bwd, t0_);
}

static void w_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2, float eps, float wd, int step, float gscale, float *e, float e_decay)
{
    double t0_ = begin();
    prof_inner->adamw(p, g, m, v, n, lr, b1, b2, eps, wd, step, gscale, e, e_decay);
    end(P_adamw, t0_);
}

static void w_ema(float *e, const float *p, size_t n, float decay)
{
    double t0_ = begin();
    prof_inner->ema(e, p, n, decay);
    end(P_ema, t0_);
}

static double w_sumsq(const float *g, size_t n)
{
    double t0_ = begin(), r = prof_inner->sumsq(g, n);
    end(P_sumsq, t0_);
    return r;
}

static void w_scale(float *x, float s, size_t n)
{
    double t0_ = begin();
    prof_inner->scale(x, s, n);
    end(P_scale, t0_);
}

static void w_upsample2x(float *out, const float *in, int np, int h, int w)
{
    double t0_ = begin();
    prof_inner->upsample2x(out, in, np, h, w);
    end(P_upsample2x, t0_);
}

static void w_affine(float *out, const float *in, float a, float b, size_t m)
{
    double t0_ = begin();
    prof_inner->affine(out, in, a, b, m);
    end(P_affine, t0_);
}

static void w_gauss_sample(float *z, const float *mean, const float *logvar, const float *eps, size_t m)
{
    double t0_ = begin();
    prof_inner->gauss_sample(z, mean, logvar, eps, m);
    end(P_gauss_sample, t0_);
}

static void w_argmax_rows(int32_t *out, const float *x, int n, int c)
{
    double t0_ = begin();
    prof_inner->argmax_rows(out, x, n, c);
    end(P_argmax_rows, t0_);
}

static void w_hold_weights(const float *w, size_t n)
{
    double t0_ = begin();
    prof_inner->hold_weights(w, n);
    end(P_hold_weights, t0_);
}

static void w_track_weights(const float *w, size_t n)
{
    double t0_ = begin();
    prof_inner->track_weights(w, n);
    end(P_track_weights, t0_);
}

static void w_unpatchify_u8(uint8_t *img, const float *tokens, int H, int W, int C, int p)
{
    double t0_ = begin();
    prof_inner->unpatchify_u8(img, tokens, H, W, C, p);
    end(P_unpatchify_u8, t0_);
}

const op_table_t *op_prof_wrap(const op_table_t *inner)
{
    prof_inner = inner;
    wrapped = *inner;
    wrapped.name = inner->name;
    wrapped.upload = w_upload;
    wrapped.download = w_download;
    wrapped.zero = w_zero;
    wrapped.linear_fwd = w_linear_fwd;
    wrapped.linear_bwd = w_linear_bwd;
    wrapped.linear_bwd_set = w_linear_bwd_set;
    wrapped.rmsnorm_fwd = w_rmsnorm_fwd;
    wrapped.rmsnorm_bwd = w_rmsnorm_bwd;
    wrapped.rmsnorm_bwd_set = w_rmsnorm_bwd_set;
    wrapped.layernorm_fwd = w_layernorm_fwd;
    wrapped.layernorm_bwd = w_layernorm_bwd;
    wrapped.rope_fwd = w_rope_fwd;
    wrapped.rope_bwd = w_rope_bwd;
    wrapped.swiglu_fwd = w_swiglu_fwd;
    wrapped.mlp_fwd = w_mlp_fwd;
    wrapped.mlp_bwd = w_mlp_bwd;
    wrapped.linear3_fwd = w_linear3_fwd;
    wrapped.linear3_bwd = w_linear3_bwd;
    wrapped.swiglu_bwd = w_swiglu_bwd;
    wrapped.swiglu_bwd_set = w_swiglu_bwd_set;
    wrapped.gelu_fwd = w_gelu_fwd;
    wrapped.gelu_bwd = w_gelu_bwd;
    wrapped.gelu_bwd_set = w_gelu_bwd_set;
    wrapped.silu_fwd = w_silu_fwd;
    wrapped.silu_bwd = w_silu_bwd;
    wrapped.attention_fwd = w_attention_fwd;
    wrapped.attention_bwd = w_attention_bwd;
    wrapped.attention_kv = w_attention_kv;
    wrapped.rows_copy = w_rows_copy;
    wrapped.rows_add = w_rows_add;
    wrapped.axpy = w_axpy;
    wrapped.classifier_ce = w_classifier_ce;
    wrapped.mse = w_mse;
    wrapped.flow_noise = w_flow_noise;
    wrapped.cfg_euler = w_cfg_euler;
    wrapped.timestep_freq = w_timestep_freq;
    wrapped.patchify_u8 = w_patchify_u8;
    wrapped.patchify_chw = w_patchify_chw;
    wrapped.unpatchify_chw = w_unpatchify_chw;
    wrapped.conv2d_fwd = w_conv2d_fwd;
    wrapped.conv2d_bwd = w_conv2d_bwd;
    wrapped.groupnorm_fwd = w_groupnorm_fwd;
    wrapped.gn_conv2d_fwd = w_gn_conv2d_fwd;
    wrapped.groupnorm_bwd = w_groupnorm_bwd;
    wrapped.adamw = w_adamw;
    wrapped.ema = w_ema;
    wrapped.sumsq = w_sumsq;
    wrapped.scale = w_scale;
    wrapped.upsample2x = w_upsample2x;
    wrapped.affine = w_affine;
    wrapped.gauss_sample = w_gauss_sample;
    wrapped.unpatchify_u8 = w_unpatchify_u8;
    wrapped.argmax_rows = w_argmax_rows;
    wrapped.hold_weights = w_hold_weights;
    wrapped.track_weights = w_track_weights;
    op_prof_reset();
    return &wrapped;
}

void op_prof_reset(void)
{
    memset(total_ms, 0, sizeof total_ms);
    memset(calls, 0, sizeof calls);
    memset(shapes, 0, sizeof shapes);
    n_shapes = 0;
}

static int by_total(const void *a, const void *b)
{
    double x = total_ms[*(const int *)a], y = total_ms[*(const int *)b];
    return (x < y) - (x > y);
}

static int by_shape_ms(const void *a, const void *b)
{
    double x = shapes[*(const int *)a].ms, y = shapes[*(const int *)b].ms;
    return x < y ? 1 : x > y ? -1 : 0;
}

void op_prof_print(FILE *f, int steps)
{
    int order[P_N];
    double sum = 0;
    for (int i = 0; i < P_N; i++)
        order[i] = i, sum += total_ms[i];
    qsort(order, P_N, sizeof order[0], by_total);
    if (steps < 1)
        steps = 1;
    fprintf(f, "profile: %.1f ms a step in ops (each op between syncs)\n", sum / steps);
    for (int k = 0; k < P_N; k++) {
        int i = order[k];
        if (!calls[i])
            continue;
        fprintf(f, "profile: %-16s %6ld calls %9.2f ms a step %8.3f ms a call %5.1f%%\n", op_names[i],
                calls[i] / steps, total_ms[i] / steps, total_ms[i] / calls[i], 100.0 * total_ms[i] / (sum > 0 ? sum : 1));
    }
    int so[N_SHAPES];
    for (int i = 0; i < n_shapes; i++)
        so[i] = i;
    qsort(so, (size_t)n_shapes, sizeof so[0], by_shape_ms);
    for (int k = 0; k < n_shapes; k++) {
        int i = so[k];
        fprintf(f, "profile:   %-44s %6ld calls %9.2f ms a step %8.3f ms a call\n", shapes[i].key,
                shapes[i].calls / steps, shapes[i].ms / steps, shapes[i].ms / shapes[i].calls);
    }
}
