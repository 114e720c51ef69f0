/* cpu.h — the CPU backend's functions, one group per file of kernels/cpu/,
 * gathered into the op table by cpu_table.c. Internal to the backend: models
 * call these through op_cpu (kernels/ops.h), never by name.
 *
 * Everything is fp32 on host memory. Matrix products go to OpenBLAS
 * (cblas_sgemm); loops over rows or elements use OpenMP, with an `if` clause
 * so that small calls do not pay for waking the thread team. */
#ifndef BAGEL_CPU_H
#define BAGEL_CPU_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "../ops.h"

/* below this many floats of work an OpenMP loop runs on one thread */
#define CPU_OMP_MIN 32768

/* the logistic function of silu and SwiGLU, one expression for every op
 * that applies it (a fused op must give the bits of the ops it fuses) */
static inline float cpu_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* cpu_mem.c */
void *cpu_alloc(size_t bytes);
void cpu_free(void *p);
void cpu_zero(void *p, size_t bytes);
void cpu_upload(void *dst, const void *host_src, size_t bytes);
void cpu_download(void *host_dst, const void *src, size_t bytes);
void cpu_sync(void);

/* cpu_linear.c */
void cpu_linear_fwd(float *out, const float *in, const float *w, const float *b, int n, int in_dim, int out_dim);
void cpu_linear_bwd(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int n,
                    int in_dim, int out_dim);
void cpu_linear_bwd_set(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int n,
                        int in_dim, int out_dim);
void cpu_linear3_fwd(const op_lin_t *l, const float *in, int n, int in_dim);
void cpu_linear3_bwd(float *din, const op_lin_t *l, const float *in, int n, int in_dim, int set);

/* cpu_norm.c */
void cpu_rmsnorm_fwd(float *out, float *rstd, const float *in, const float *w, int n, int c, float eps);
void cpu_rmsnorm_bwd(float *din, float *dw, const float *dout, const float *in, const float *w, const float *rstd,
                     int n, int c);
void cpu_rmsnorm_bwd_set(float *din, float *dw, const float *dout, const float *in, const float *w,
                         const float *rstd, int n, int c);
void cpu_layernorm_fwd(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b, int n,
                       int c, float eps);
void cpu_layernorm_bwd(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                       const float *mean, const float *rstd, int n, int c);

/* cpu_rope.c */
void cpu_rope_fwd(float *x, const int32_t *pos, int n, int h, int d, float theta);
void cpu_rope_bwd(float *dx, const int32_t *pos, int n, int h, int d, float theta);

/* cpu_act.c */
void cpu_swiglu_fwd(float *out, const float *gate, const float *up, size_t m);
void cpu_mlp_fwd(float *out, float *gate, float *up, float *mm, const float *in, const float *gate_w, const float *up_w,
                 const float *down_w, int n, int h, int i);
void cpu_mlp_bwd(float *din, float *dgate_w, float *dup_w, float *ddown_w, const float *dout, const float *in,
                 const float *gate_w, const float *up_w, const float *down_w, const float *gate, const float *up,
                 const float *mm, float *dgate, float *dup, float *dmm, int n, int h, int i);
void cpu_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t m);
void cpu_swiglu_bwd_set(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t m);
void cpu_gelu_fwd(float *out, const float *in, size_t m);
void cpu_gelu_bwd(float *din, const float *dout, const float *in, size_t m);
void cpu_gelu_bwd_set(float *din, const float *dout, const float *in, size_t m);
void cpu_silu_fwd(float *out, const float *in, size_t m);
void cpu_silu_bwd(float *din, const float *dout, const float *in, size_t m);

/* cpu_attention.c */
void cpu_attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v, const op_attn_t *a);
void cpu_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                       const float *q, const float *k, const float *v, const op_attn_t *a);
void cpu_attention_kv(float *out, const float *q, const float *kc, const float *vc, const op_kv_attn_t *a);

/* cpu_rows.c */
void cpu_rows_copy(float *out, const int32_t *oi, const float *in, const int32_t *ii, int n, int c);
void cpu_rows_add(float *out, const int32_t *oi, const float *in, const int32_t *ii, int n, int c);

/* cpu_classifier.c */
void cpu_classifier_ce(float *loss, float *dh, float *dw, const float *h, const float *w, const int32_t *label,
                       const float *dloss, int n, int c, int V, float *scratch, int chunk);

/* cpu_loss.c */
void cpu_mse(float *loss, float *dpred, const float *pred, const float *target, const float *dloss, int n, int d);
void cpu_flow_noise(float *xt, float *target, const float *x0, const float *eps, const float *t, int n, int d);
void cpu_timestep_freq(float *out, const float *t, int n, int half);
void cpu_cfg_euler(float *x, float *v, const float *v_c, const float *v_t, const float *v_i, int n, int dim,
                   float s_txt, float s_img, int renorm, float renorm_min, float dt);

/* cpu_patch.c */
void cpu_patchify_u8(float *out, const uint8_t *img, int H, int W, int C, int p);
void cpu_patchify_chw(float *out, const float *z, int C, int H, int W, int p);
void cpu_unpatchify_chw(float *z, const float *tokens, int C, int H, int W, int p);

/* cpu_conv.c */
void cpu_conv2d_fwd(float *out, const float *in, const float *w, const float *b, int n, int ci, int h, int wd, int co,
                    int kh, int kw, int stride, int pad_t, int pad_l, int pad_b, int pad_r);
void cpu_conv2d_bwd(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int n, int ci,
                    int h, int wd, int co, int kh, int kw, int stride, int pad_t, int pad_l, int pad_b, int pad_r);
void cpu_groupnorm_fwd(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b, int n,
                       int c, int hw, int groups, float eps);
void cpu_gn_conv2d_fwd(float *out, float *mean, float *rstd, const float *in, const float *gw, const float *gb, int groups,
                       float eps, int act, const float *w, const float *b, const float *res, int n, int ci, int h,
                       int wd, int co, int k);
void cpu_groupnorm_bwd(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                       const float *mean, const float *rstd, int n, int c, int hw, int groups);

/* cpu_optim.c */
void cpu_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2, float eps,
               float wd, int step, float gscale, float *e, float e_decay);
void cpu_ema(float *e, const float *p, size_t n, float decay);
double cpu_sumsq(const float *g, size_t n);
void cpu_scale(float *x, float s, size_t n);
void cpu_axpy(float *y, float a, const float *x, size_t m);

/* cpu_layout.c */
void cpu_upsample2x(float *out, const float *in, int np, int h, int w);
void cpu_affine(float *out, const float *in, float a, float b, size_t m);
void cpu_gauss_sample(float *z, const float *mean, const float *logvar, const float *eps, size_t m);
void cpu_unpatchify_u8(uint8_t *img, const float *tokens, int H, int W, int C, int p);

/* cpu_rows.c */
void cpu_argmax_rows(int32_t *out, const float *x, int n, int c);
void cpu_hold_weights(const float *w, size_t n);
void cpu_track_weights(const float *w, size_t n);
/* op_table_t.grad_write: while on, the ops' parameter gradients are written
 * (cpu_gw_beta() is the beta of their products, cpu_gw_add() adds a column
 * sum onto its gradient) */
void cpu_grad_write(int on);
extern int cpu_grad_write_on;
static inline float cpu_gw_beta(void) { return cpu_grad_write_on ? 0.0f : 1.0f; }
static inline void cpu_gw_add(float *dst, float v) { *dst = (cpu_grad_write_on ? 0.0f : *dst) + v; }

#endif
