/* ops.h — the compute op table: every op the models use, each with its
 * backward, behind one table of function pointers per backend (the CPU
 * backend in kernels/cpu/, the CUDA backend in kernels/cuda/).
 *
 * Conventions (llm.c style):
 * - Arguments are outputs, then inputs, then sizes.
 * - Backward functions ACCUMULATE (+=) into every gradient they write; a
 *   NULL gradient pointer means "not needed" and is skipped (frozen weights,
 *   inputs that are data). The _set variants (linear_bwd_set,
 *   swiglu_bwd_set) write their input gradients instead, for a fresh buffer
 *   that would otherwise be zeroed first.
 * - Matrices are row-major. A linear layer's weight is [out, in] as PyTorch
 *   stores it: out = in · Wᵀ + b.
 * - Pointers are backend memory (host memory for the CPU backend, device
 *   memory for CUDA). Index arrays are int32 in backend memory.
 * - Letters: n rows (tokens), c channels, h heads, d head_dim, V vocab.
 *
 * Ops never allocate in their hot path except the classifier's chunk scratch,
 * which the caller provides (op_ce_scratch_floats).
 */
#ifndef BAGEL_OPS_H
#define BAGEL_OPS_H

#include <stddef.h>
#include <stdint.h>

/* BAGEL's attention split modes (bagel-reference.md §3.5) */
enum { OP_SPLIT_CAUSAL = 0, OP_SPLIT_FULL = 1, OP_SPLIT_NOISE = 2 };

/* Attention over one packed sequence without a dense mask. The sequence is a
 * run of samples; each sample a run of splits; split i covers sequence
 * positions [split_start[i], split_start[i+1]). A key k is visible to a query
 * q iff (same sample) and (k <= q, or both in the same split whose mode is
 * full or noise) and not (k's split is a noise split other than q's).
 *
 * q, k and v rows may be stored in any order (the MoT layers keep
 * understanding rows first, generation rows after): row_of_pos maps a sequence
 * position to its storage row; NULL means row = position. */
typedef struct op_attn {
    int n_tok;                  /* S: sequence positions = rows */
    int n_heads;                /* query heads */
    int n_kv_heads;             /* key/value heads; query head j uses kv head j / (n_heads / n_kv_heads) */
    int head_dim;
    float scale;                /* usually 1/sqrt(head_dim) */
    int n_splits;
    const int32_t *split_start; /* (n_splits + 1) int32, split_start[n_splits] = n_tok */
    const uint8_t *split_mode;  /* (n_splits) OP_SPLIT_* */
    const int32_t *split_first; /* (n_splits) index of the first split of the same sample */
    const int32_t *row_of_pos;  /* (n_tok) or NULL */
    int dense;                  /* a host hint: 1 when every query sees every key (one full split,
                                   row_of_pos NULL), so a backend may skip the mask; 0 says nothing */
    int write;                  /* attention_bwd: 1 writes dq, dk and dv (their old contents never
                                   read); 0 adds to them */
} op_attn_t;

/* The visibility rule itself, on host metadata: for tests, references and the
 * span iteration of the kernels. qs is the query's split. */
static inline int op_attn_visible(const op_attn_t *a, int qs, int q, int k)
{
    int ks = qs;
    while (ks > 0 && k < a->split_start[ks]) ks--;
    while (ks + 1 < a->n_splits && k >= a->split_start[ks + 1]) ks++;
    if (a->split_first[ks] != a->split_first[qs]) return 0;
    if (ks != qs && a->split_mode[ks] == OP_SPLIT_NOISE) return 0;
    if (k <= q) return 1;
    return ks == qs && a->split_mode[qs] != OP_SPLIT_CAUSAL;
}

/* Attention of new rows against a key/value cache, for inference: query i
 * sees cache rows [k_first[i], k_first[i] + k_count[i]) of kc and vc
 * ([rows, nkv, d]). Causal text and full image chunks, one context or many,
 * are all this: a causal query counts its own key and those before it, a
 * full one the whole chunk. q and out rows are q_row[i] ([*, nh, d]). The
 * index arrays are backend memory; h_* are host copies of the same arrays,
 * from which a backend may choose its kernel. */
typedef struct op_kv_attn {
    int n_q; /* query rows */
    int n_heads, n_kv_heads, head_dim;
    float scale;
    const int32_t *q_row, *k_first, *k_count;       /* (n_q) backend memory */
    const int32_t *h_q_row, *h_k_first, *h_k_count; /* (n_q) host memory */
} op_kv_attn_t;

/* One of three linear layers that share their input (linear3_fwd,
 * linear3_bwd): its weight [dim, in_dim] and bias [dim] (or NULL); the
 * forward's output [n, dim]; the backward's output gradient [n, dim] and the
 * gradients it adds to (db may be NULL). */
typedef struct op_lin {
    const float *w, *b;
    int dim;
    float *out;
    const float *dout;
    float *dw, *db;
} op_lin_t;

typedef struct op_table {
    const char *name; /* "cpu", "cuda" */

    /* memory */
    void *(*alloc)(size_t bytes); /* zeroed; NULL on failure */
    void (*free)(void *p);
    void (*zero)(void *p, size_t bytes);
    void (*upload)(void *dst, const void *host_src, size_t bytes);
    void (*download)(void *host_dst, const void *src, size_t bytes);
    void (*sync)(void);

    /* out[n,o] = in[n,i] · w[o,i]ᵀ + b[o]   (b may be NULL) */
    void (*linear_fwd)(float *out, const float *in, const float *w, const float *b, int n, int in_dim,
                       int out_dim);
    /* din[n,i] += dout·w;  dw[o,i] += doutᵀ·in;  db[o] += Σ_n dout */
    void (*linear_bwd)(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                       int n, int in_dim, int out_dim);
    /* as linear_bwd, but din = dout·w is written, not added: its old
     * contents are never read (a fresh buffer needs no zeroing first);
     * dw and db still accumulate */
    void (*linear_bwd_set)(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                           int n, int in_dim, int out_dim);
    /* three linear layers of one input (attention's q, k and v): l[j].out =
     * in·l[j].wᵀ + l[j].b for j < 3; the same values as linear_fwd on each
     * in turn (the same bits on the CPU; CUDA rounds `in` to bf16 once for
     * the three instead of at each product) */
    void (*linear3_fwd)(const op_lin_t *l, const float *in, int n, int in_dim);
    /* their backward: din = Σ_j l[j].dout·l[j].w, written when set (its old
     * contents never read) or added to; l[j].dw += l[j].doutᵀ·in; l[j].db +=
     * Σ_n l[j].dout. The same values as linear_bwd_set (set) or linear_bwd
     * for l[0], then linear_bwd for l[1] and l[2] */
    void (*linear3_bwd)(float *din, const op_lin_t *l, const float *in, int n, int in_dim, int set);

    /* RMSNorm over c: out = w ⊙ x / sqrt(mean(x²) + eps); rstd[n] saved */
    void (*rmsnorm_fwd)(float *out, float *rstd, const float *in, const float *w, int n, int c, float eps);
    void (*rmsnorm_bwd)(float *din, float *dw, const float *dout, const float *in, const float *w,
                        const float *rstd, int n, int c);
    /* as rmsnorm_bwd, but din is written, not added: its old contents are
     * never read (dw still accumulates) */
    void (*rmsnorm_bwd_set)(float *din, float *dw, const float *dout, const float *in, const float *w,
                            const float *rstd, int n, int c);

    /* LayerNorm over c with affine w, b; mean[n], rstd[n] saved */
    void (*layernorm_fwd)(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b,
                          int n, int c, float eps);
    void (*layernorm_bwd)(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                          const float *mean, const float *rstd, int n, int c);

    /* RoPE, half-split (NeoX) style, in place on x[n, h, d] at pos[n];
     * inv_freq[i] = theta^(-2i/d). The backward rotates dx by -angle. */
    void (*rope_fwd)(float *x, const int32_t *pos, int n, int h, int d, float theta);
    void (*rope_bwd)(float *dx, const int32_t *pos, int n, int h, int d, float theta);

    /* out = silu(gate) ⊙ up, all [m] */
    void (*swiglu_fwd)(float *out, const float *gate, const float *up, size_t m);
    void (*swiglu_bwd)(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t m);
    /* as swiglu_bwd, but dgate and dup are written, not added */
    void (*swiglu_bwd_set)(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                           size_t m);
    /* gelu with the tanh approximation (gelu_pytorch_tanh) */
    /* the MLP: out [n, h] = swiglu(in·gate_wᵀ, in·up_wᵀ)·down_wᵀ, gate_w and
     * up_w [i, h], down_w [h, i], no biases; the same values as linear_fwd,
     * linear_fwd, swiglu_fwd and linear_fwd in turn (the same bits on the
     * CPU). gate, up and mm ([n, i] floats each) receive what mlp_bwd reads,
     * in the backend's own layout: the CPU's fp32 gate, up and SwiGLU
     * output; with bf16 products CUDA keeps bf16 intermediates there
     * (rounded where the next product would round them anyway, and the
     * layer input's bf16 copy), which saves a memory pass over each. */
    void (*mlp_fwd)(float *out, float *gate, float *up, float *mm, const float *in, const float *gate_w,
                    const float *up_w, const float *down_w, int n, int h, int i);
    /* its backward, after mlp_fwd with the same in, weights, gate, up and
     * mm: din [n, h] written (not added to), the weights' gradients added to
     * (NULL: not wanted), from dout [n, h]; dgate, dup and dmm ([n, i]
     * floats each) are workspace, their contents afterwards unspecified. The
     * same values as linear_bwd_set, swiglu_bwd_set, linear_bwd_set and
     * linear_bwd in turn (the same bits on the CPU). */
    void (*mlp_bwd)(float *din, float *dgate_w, float *dup_w, float *ddown_w, const float *dout, const float *in,
                    const float *gate_w, const float *up_w, const float *down_w, const float *gate, const float *up,
                    const float *mm, float *dgate, float *dup, float *dmm, int n, int h, int i);
    void (*gelu_fwd)(float *out, const float *in, size_t m);
    void (*gelu_bwd)(float *din, const float *dout, const float *in, size_t m);
    /* as gelu_bwd, but din is written, not added */
    void (*gelu_bwd_set)(float *din, const float *dout, const float *in, size_t m);
    /* silu(x) = x·sigmoid(x) */
    void (*silu_fwd)(float *out, const float *in, size_t m);
    void (*silu_bwd)(float *din, const float *dout, const float *in, size_t m);

    /* packed attention (see op_attn_t): q, out [S, nh, d], k, v [S, nkv, d],
     * lse [S, nh] saved for the backward (log-sum-exp of the scaled scores) */
    void (*attention_fwd)(float *out, float *lse, const float *q, const float *k, const float *v,
                          const op_attn_t *a);
    void (*attention_bwd)(float *dq, float *dk, float *dv, const float *dout, const float *out,
                          const float *lse, const float *q, const float *k, const float *v, const op_attn_t *a);
    /* inference attention against a cache (see op_kv_attn_t); forward only */
    void (*attention_kv)(float *out, const float *q, const float *kc, const float *vc, const op_kv_attn_t *a);

    /* rows: out[oi[r]] = in[ii[r]] (copy) or += (add), r < n, rows of c
     * floats; oi or ii NULL means identity. Gather, scatter, embedding
     * lookup and its backward are all this. */
    void (*rows_copy)(float *out, const int32_t *oi, const float *in, const int32_t *ii, int n, int c);
    void (*rows_add)(float *out, const int32_t *oi, const float *in, const int32_t *ii, int n, int c);

    /* y += a·x */
    void (*axpy)(float *y, float a, const float *x, size_t m);

    /* fused classifier + cross-entropy, chunked over tokens so that at most
     * chunk rows of logits exist: logits = h[n,c] · w[V,c]ᵀ; loss[r] =
     * logsumexp(logits[r]) - logits[r][label[r]]. When dh or dw is given,
     * accumulates the gradient of Σ_r dloss[r]·loss[r]. scratch holds
     * op_ce_scratch_floats(chunk, V) floats. */
    void (*classifier_ce)(float *loss, float *dh, float *dw, const float *h, const float *w,
                          const int32_t *label, const float *dloss, int n, int c, int V, float *scratch,
                          int chunk);

    /* loss[r] = mean_d (pred[r] - target[r])²; dpred += dloss[r]·∂loss[r] */
    void (*mse)(float *loss, float *dpred, const float *pred, const float *target, const float *dloss, int n,
                int d);

    /* flow matching: xt = (1 - t[r])·x0 + t[r]·eps; target = eps - x0 */
    void (*flow_noise)(float *xt, float *target, const float *x0, const float *eps, const float *t, int n, int d);
    /* one Euler step of generation under classifier-free guidance
     * (bagel-reference.md §6.3) for one image of n latent tokens [n, dim]:
     * v = v_t + s_txt·(v_c − v_t); with OP_RENORM_TEXT_CHANNEL each row
     * scaled by clamp(|v_c row| / (|v row| + 1e-8), renorm_min, 1); then,
     * where s_img > 1 and v_i is given, v = v_i + s_img·(v − v_i); then
     * with OP_RENORM_GLOBAL v scaled by clamp(|v_c| / (|v| + 1e-8), ...)
     * over the whole image, with OP_RENORM_CHANNEL row by row as above.
     * Where s_txt ≤ 1 or v_t is NULL, v = v_c. v (out) gets the combined
     * velocity; then x −= dt·v unless x is NULL. v aliases none of the
     * inputs. Norms in double on the CPU. */
    void (*cfg_euler)(float *x, float *v, const float *v_c, const float *v_t, const float *v_i, int n, int dim,
                      float s_txt, float s_img, int renorm, float renorm_min, float dt);
    /* sinusoidal timestep features, BAGEL's TimestepEmbedder: out[r] =
     * [cos(t·f_k), sin(t·f_k)], f_k = exp(-ln(10000)·k/half), out [n, 2·half] */
    void (*timestep_freq)(float *out, const float *t, int n, int half);

    /* images u8 [H, W, C] -> normalized (x/255 - 0.5)/0.5 tokens [(H/p)·(W/p), p·p·C],
     * feature (py·p + px)·C + c, tokens row-major (bagel-reference.md §1.8) */
    void (*patchify_u8)(float *out, const uint8_t *img, int H, int W, int C, int p);
    /* latents f32 [C, H, W] -> tokens [(H/p)·(W/p), p·p·C], same order */
    void (*patchify_chw)(float *out, const float *z, int C, int H, int W, int p);
    void (*unpatchify_chw)(float *z, const float *tokens, int C, int H, int W, int p);

    /* 2-D convolution NCHW, weight [co, ci, kh, kw], bias [co] (NULL ok),
     * stride and zero padding (pad_t/l/b/r) */
    void (*conv2d_fwd)(float *out, const float *in, const float *w, const float *b, int n, int ci, int h,
                       int wd, int co, int kh, int kw, int stride, int pad_t, int pad_l, int pad_b, int pad_r);
    void (*conv2d_bwd)(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                       int n, int ci, int h, int wd, int co, int kh, int kw, int stride, int pad_t, int pad_l,
                       int pad_b, int pad_r);
    /* GroupNorm NCHW over (c/groups)·h·w per group, affine per channel;
     * mean, rstd [n, groups] saved */
    void (*groupnorm_fwd)(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b,
                          int n, int c, int hw, int groups, float eps);
    void (*groupnorm_bwd)(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                          const float *mean, const float *rstd, int n, int c, int hw, int groups);

    /* optimizer: AdamW with bias correction (step counts from 1), decoupled
     * weight decay p -= lr·wd·p, on the gradients times gscale (the clip's
     * coefficient; 1 for none; g itself is left as it is); then, when e is
     * not NULL, the EMA of the new p in the same pass: e = e_decay·e +
     * (1 - e_decay)·p. The same bits as scale(g), adamw, ema one after the
     * other. EMA alone: e = decay·e + (1 - decay)·p */
    void (*adamw)(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2,
                  float eps, float wd, int step, float gscale, float *e, float e_decay);
    void (*ema)(float *e, const float *p, size_t n, float decay);
    /* Σ g², accumulated in double */
    double (*sumsq)(const float *g, size_t n);
    void (*scale)(float *x, float s, size_t n);

    /* forward only, for the frozen autoencoder (models/ae.c) */
    /* the autoencoder's normalized convolution: out = conv(act(GroupNorm(in)))
     * + b, plus res when not NULL. GroupNorm as groupnorm_fwd (groups, eps,
     * affine gw, gb; mean, rstd [n, groups] written when not NULL), act 1 =
     * swish, the convolution k×k, stride 1, zero padding k/2 of the
     * normalized input, as conv2d_fwd; res [n, co, h, w]. out aliases
     * neither in nor res. The same values as groupnorm_fwd, silu_fwd,
     * conv2d_fwd and axpy in turn (the same bits on the CPU), without the
     * normalized tensor in memory: CUDA normalizes on the way into the
     * tensor cores' layout and adds res on the way out. */
    void (*gn_conv2d_fwd)(float *out, float *mean, float *rstd, const float *in, const float *gw, const float *gb,
                          int groups, float eps, int act, const float *w, const float *b, const float *res, int n,
                          int ci, int h, int wd, int co, int k);
    /* nearest-neighbour ×2: out[p, 2y + dy, 2x + dx] = in[p, y, x] for planes
     * p < np, in [np, h, w], out [np, 2h, 2w] */
    void (*upsample2x)(float *out, const float *in, int np, int h, int w);
    /* out = a·in + b elementwise; out may be in */
    void (*affine)(float *out, const float *in, float a, float b, size_t m);
    /* diagonal Gaussian sample: z = mean + exp(0.5·logvar)·eps */
    void (*gauss_sample)(float *z, const float *mean, const float *logvar, const float *eps, size_t m);
    /* the inverse of patchify_u8 to bytes, BAGEL's decode (bagel-reference.md
     * §6.4): tokens -> u8 [H, W, C], ((x·0.5 + 0.5) clamped to [0, 1])·255
     * truncated, in fp32 (NaN -> 0) */
    void (*unpatchify_u8)(uint8_t *img, const float *tokens, int H, int W, int C, int p);

    /* inference */
    /* out[r] = the first index of the largest of x[r, 0..c) (NaN never
     * counts as larger), r < n; out is backend memory */
    void (*argmax_rows)(int32_t *out, const float *x, int n, int c);
    /* The floats [w, w + n) stay unchanged until the next call (n = 0: no
     * such promise any more): a backend may keep converted copies of the
     * weights in it (CUDA's bf16 products then skip rounding them at each
     * call). Changing them meanwhile is an error the backend cannot see. */
    void (*hold_weights)(const float *w, size_t n);
    /* Training's promise: the floats [w, w + n) change only through adamw
     * on them until the next call (n = 0 with the same w: no such promise
     * any more; with another w: nothing changes). A backend may keep
     * converted copies that adamw keeps current in the same pass (CUDA's
     * bf16 products then skip rounding the weights at each call; the values
     * are the same). Independent of hold_weights. */
    void (*track_weights)(const float *w, size_t n);
    /* Parameter gradients written, not added: while on (the default is
     * off), the weight and bias gradients of linear_bwd, linear_bwd_set,
     * linear3_bwd (each l[j].dw, l[j].db), mlp_bwd (dgate_w, dup_w,
     * ddown_w), rmsnorm_bwd, layernorm_bwd, conv2d_bwd, groupnorm_bwd and
     * classifier_ce (dw, over all its chunks) are set to the op's
     * contribution; their old contents are never read (NaN there does not
     * matter). The same values as zeroing them first, without the pass over
     * them: a step's first backward writes every gradient this way
     * (models/model.c, model_grad_clear). No other op and no other output
     * changes. */
    void (*grad_write)(int on);
} op_table_t;

/* cfg_euler's renorm types (the inferencer's cfg_renorm_type) */
enum { OP_RENORM_GLOBAL = 0, OP_RENORM_CHANNEL = 1, OP_RENORM_TEXT_CHANNEL = 2 };

/* floats of scratch classifier_ce needs for `chunk` rows of a V-wide vocabulary */
static inline size_t op_ce_scratch_floats(int chunk, int V) { return (size_t)chunk * (size_t)V; }

extern const op_table_t op_cpu;

/* mlp_fwd and mlp_bwd (and linear3_fwd, linear3_bwd) as the ops of table t
 * in turn (kernels/ops.c): the CPU's, and CUDA's where its bf16 path does
 * not apply */
#ifdef __cplusplus
extern "C" {
#endif
void op_mlp_fwd_by_ops(const op_table_t *t, float *out, float *gate, float *up, float *mm, const float *in,
                       const float *gate_w, const float *up_w, const float *down_w, int n, int h, int i);
void op_mlp_bwd_by_ops(const op_table_t *t, float *din, float *dgate_w, float *dup_w, float *ddown_w, const float *dout,
                       const float *in, const float *gate_w, const float *up_w, const float *down_w, const float *gate,
                       const float *up, const float *mm, float *dgate, float *dup, float *dmm, int n, int h, int i);
/* linear3_fwd and linear3_bwd as linear_fwd, linear_bwd_set and linear_bwd
 * of table t in turn */
void op_linear3_fwd_by_ops(const op_table_t *t, const op_lin_t *l, const float *in, int n, int in_dim);
void op_linear3_bwd_by_ops(const op_table_t *t, float *din, const op_lin_t *l, const float *in, int n, int in_dim,
                           int set);
#ifdef __cplusplus
}
#endif

#endif
