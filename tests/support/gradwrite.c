/* gradwrite.c — see gradwrite.h */
#include "gradwrite.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../models/model.h"
#include "../../models/pack.h"

/* ---- one run of an op case: its device buffers and what it produced ---- */

#define RUN_BUFS 32

typedef struct run {
    const op_table_t *t;
    int on;         /* grad_write on, gradients filled with NaN first */
    uint64_t s;     /* the inputs' random state: the same in both runs */
    void *buf[RUN_BUFS];
    int n_buf;
    float *out;     /* every output, downloaded in order */
    size_t n_out, cap;
} run_t;

static float uni(uint64_t *s)
{
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return (float)((*s >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void *dalloc(run_t *r, size_t bytes)
{
    void *p = r->t->alloc(bytes ? bytes : 4);
    if (!p || r->n_buf == RUN_BUFS) {
        fprintf(stderr, "gradwrite: out of device memory or buffers\n");
        exit(1);
    }
    return r->buf[r->n_buf++] = p;
}

/* n random floats in (-1, 1) on the device */
static float *rnd(run_t *r, size_t n)
{
    float *h = malloc(n * sizeof(float) + 4), *d = dalloc(r, n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        h[i] = uni(&r->s);
    r->t->upload(d, h, n * sizeof(float));
    free(h);
    return d;
}

/* a gradient buffer: zero with the writing off, NaN with it on */
static float *gbuf(run_t *r, size_t n)
{
    float *d = dalloc(r, n * sizeof(float));
    if (r->on) {
        float *h = malloc(n * sizeof(float) + 4);
        for (size_t i = 0; i < n; i++)
            h[i] = NAN;
        r->t->upload(d, h, n * sizeof(float));
        free(h);
    }
    return d;
}

static void keep(run_t *r, const float *d, size_t n)
{
    if (r->n_out + n > r->cap) {
        r->cap = 2 * (r->n_out + n);
        r->out = realloc(r->out, r->cap * sizeof(float));
    }
    r->t->download(r->out + r->n_out, d, n * sizeof(float));
    r->n_out += n;
}

static void run_end(run_t *r)
{
    for (int i = 0; i < r->n_buf; i++)
        r->t->free(r->buf[i]);
    r->n_buf = 0;
}

/* the op with the writing on (when r->on) */
#define ON(r) (r)->t->grad_write((r)->on)
#define OFF(r) (r)->t->grad_write(0)

/* ---- the cases ---- */

static void c_linear(run_t *r, int set)
{
    const op_table_t *t = r->t;
    int n = 37, I = 24, O = 40;
    float *dout = rnd(r, (size_t)n * O), *in = rnd(r, (size_t)n * I), *w = rnd(r, (size_t)O * I);
    float *din = rnd(r, (size_t)n * I), *dw = gbuf(r, (size_t)O * I), *db = gbuf(r, O);
    ON(r);
    (set ? t->linear_bwd_set : t->linear_bwd)(din, dw, db, dout, in, w, n, I, O);
    OFF(r);
    keep(r, din, (size_t)n * I), keep(r, dw, (size_t)O * I), keep(r, db, O);
}
static void c_linear_add(run_t *r) { c_linear(r, 0); }
static void c_linear_set(run_t *r) { c_linear(r, 1); }

static void c_linear3(run_t *r, int set)
{
    const op_table_t *t = r->t;
    int n = 29, I = 16, dims[3] = {20, 8, 8};
    float *in = rnd(r, (size_t)n * I), *din = rnd(r, (size_t)n * I);
    op_lin_t l[3];
    for (int j = 0; j < 3; j++)
        l[j] = (op_lin_t){.w = rnd(r, (size_t)dims[j] * I),
                          .dim = dims[j],
                          .dout = rnd(r, (size_t)n * dims[j]),
                          .dw = gbuf(r, (size_t)dims[j] * I),
                          .db = j == 1 ? NULL : gbuf(r, dims[j])};
    ON(r);
    t->linear3_bwd(din, l, in, n, I, set);
    OFF(r);
    keep(r, din, (size_t)n * I);
    for (int j = 0; j < 3; j++) {
        keep(r, l[j].dw, (size_t)dims[j] * I);
        if (l[j].db)
            keep(r, l[j].db, dims[j]);
    }
}
static void c_linear3_set(run_t *r) { c_linear3(r, 1); }
static void c_linear3_add(run_t *r) { c_linear3(r, 0); }

static void c_mlp(run_t *r)
{
    const op_table_t *t = r->t;
    int n = 19, h = 16, i = 24;
    size_t ni = (size_t)n * i, nh = (size_t)n * h, hi = (size_t)h * i;
    float *in = rnd(r, nh), *gw = rnd(r, hi), *uw = rnd(r, hi), *dw_ = rnd(r, hi), *dout = rnd(r, nh);
    float *out = dalloc(r, nh * 4), *gate = dalloc(r, ni * 4), *up = dalloc(r, ni * 4), *mm = dalloc(r, ni * 4);
    float *dg = dalloc(r, ni * 4), *du = dalloc(r, ni * 4), *dm = dalloc(r, ni * 4), *din = dalloc(r, nh * 4);
    float *ggw = gbuf(r, hi), *guw = gbuf(r, hi), *gdw = gbuf(r, hi);
    t->mlp_fwd(out, gate, up, mm, in, gw, uw, dw_, n, h, i);
    ON(r);
    t->mlp_bwd(din, ggw, guw, gdw, dout, in, gw, uw, dw_, gate, up, mm, dg, du, dm, n, h, i);
    OFF(r);
    keep(r, din, nh), keep(r, ggw, hi), keep(r, guw, hi), keep(r, gdw, hi);
}

static void c_rmsnorm(run_t *r)
{
    const op_table_t *t = r->t;
    int n = 13, c = 24;
    size_t nc = (size_t)n * c;
    float *in = rnd(r, nc), *w = rnd(r, c), *dout = rnd(r, nc), *din = rnd(r, nc);
    float *out = dalloc(r, nc * 4), *rstd = dalloc(r, (size_t)n * 4), *dw = gbuf(r, c);
    t->rmsnorm_fwd(out, rstd, in, w, n, c, 1e-6f);
    ON(r);
    t->rmsnorm_bwd(din, dw, dout, in, w, rstd, n, c);
    OFF(r);
    keep(r, din, nc), keep(r, dw, c);
}

static void c_layernorm(run_t *r)
{
    const op_table_t *t = r->t;
    int n = 11, c = 40;
    size_t nc = (size_t)n * c;
    float *in = rnd(r, nc), *w = rnd(r, c), *b = rnd(r, c), *dout = rnd(r, nc), *din = rnd(r, nc);
    float *out = dalloc(r, nc * 4), *mean = dalloc(r, (size_t)n * 4), *rstd = dalloc(r, (size_t)n * 4);
    float *dw = gbuf(r, c), *db = gbuf(r, c);
    t->layernorm_fwd(out, mean, rstd, in, w, b, n, c, 1e-6f);
    ON(r);
    t->layernorm_bwd(din, dw, db, dout, in, w, mean, rstd, n, c);
    OFF(r);
    keep(r, din, nc), keep(r, dw, c), keep(r, db, c);
}

static void c_conv(run_t *r, int k)
{
    const op_table_t *t = r->t;
    int n = 2, ci = 3, h = 6, wd = 5, co = 4, p = k / 2;
    size_t nin = (size_t)n * ci * h * wd, nout = (size_t)n * co * h * wd, nw = (size_t)co * ci * k * k;
    float *in = rnd(r, nin), *w = rnd(r, nw), *dout = rnd(r, nout), *din = rnd(r, nin);
    float *dw = gbuf(r, nw), *db = gbuf(r, co);
    ON(r);
    t->conv2d_bwd(din, dw, db, dout, in, w, n, ci, h, wd, co, k, k, 1, p, p, p, p);
    OFF(r);
    keep(r, din, nin), keep(r, dw, nw), keep(r, db, co);
}
static void c_conv3(run_t *r) { c_conv(r, 3); }
static void c_conv1(run_t *r) { c_conv(r, 1); }

static void c_groupnorm(run_t *r)
{
    const op_table_t *t = r->t;
    int n = 2, c = 4, hw = 9, groups = 2;
    size_t m = (size_t)n * c * hw;
    float *in = rnd(r, m), *w = rnd(r, c), *b = rnd(r, c), *dout = rnd(r, m), *din = rnd(r, m);
    float *out = dalloc(r, m * 4), *mean = dalloc(r, (size_t)n * groups * 4), *rstd = dalloc(r, (size_t)n * groups * 4);
    float *dw = gbuf(r, c), *db = gbuf(r, c);
    t->groupnorm_fwd(out, mean, rstd, in, w, b, n, c, hw, groups, 1e-6f);
    ON(r);
    t->groupnorm_bwd(din, dw, db, dout, in, w, mean, rstd, n, c, hw, groups);
    OFF(r);
    keep(r, din, m), keep(r, dw, c), keep(r, db, c);
}

/* three chunks, the first row without a target */
static void c_classifier(run_t *r)
{
    const op_table_t *t = r->t;
    int n = 10, c = 16, V = 50, chunk = 4;
    int32_t lab[10];
    for (int i = 0; i < n; i++)
        lab[i] = i == 0 ? -1 : (i * 7) % V;
    float *h = rnd(r, (size_t)n * c), *w = rnd(r, (size_t)V * c), *dloss = rnd(r, n), *dh = rnd(r, (size_t)n * c);
    int32_t *label = dalloc(r, sizeof lab);
    t->upload(label, lab, sizeof lab);
    float *loss = dalloc(r, (size_t)n * 4), *scratch = dalloc(r, op_ce_scratch_floats(chunk, V) * 4);
    float *dw = gbuf(r, (size_t)V * c);
    ON(r);
    t->classifier_ce(loss, dh, dw, h, w, label, dloss, n, c, V, scratch, chunk);
    OFF(r);
    keep(r, loss, n), keep(r, dh, (size_t)n * c), keep(r, dw, (size_t)V * c);
}

/* attention_bwd with op_attn_t.write (into NaN) against adding onto zeros:
 * two samples, causal, full and noise splits, 300 positions; the head dims
 * and groups take each of the CUDA backward's stores (dQ's batched and
 * plain adds, dK/dV's partial rows and one share) */
static void c_attn(run_t *r, int nh, int nkv, int d)
{
    const op_table_t *t = r->t;
    int S = 300;
    int32_t start[5] = {0, 100, 160, 200, 300}, first[4] = {0, 0, 0, 3};
    uint8_t mode[4] = {OP_SPLIT_CAUSAL, OP_SPLIT_FULL, OP_SPLIT_NOISE, OP_SPLIT_CAUSAL};
    int32_t *ds = dalloc(r, sizeof start), *df = dalloc(r, sizeof first);
    uint8_t *dm = dalloc(r, sizeof mode);
    t->upload(ds, start, sizeof start), t->upload(df, first, sizeof first), t->upload(dm, mode, sizeof mode);
    op_attn_t a = {.n_tok = S,
                   .n_heads = nh,
                   .n_kv_heads = nkv,
                   .head_dim = d,
                   .scale = 1.0f / sqrtf((float)d),
                   .n_splits = 4,
                   .split_start = ds,
                   .split_mode = dm,
                   .split_first = df};
    size_t nq = (size_t)S * nh * d, nk = (size_t)S * nkv * d;
    float *q = rnd(r, nq), *k = rnd(r, nk), *v = rnd(r, nk), *dout = rnd(r, nq);
    float *out = dalloc(r, nq * 4), *lse = dalloc(r, (size_t)S * nh * 4);
    t->attention_fwd(out, lse, q, k, v, &a);
    float *dq = gbuf(r, nq), *dk = gbuf(r, nk), *dv = gbuf(r, nk);
    a.write = r->on;
    t->attention_bwd(dq, dk, dv, dout, out, lse, q, k, v, &a);
    keep(r, dq, nq), keep(r, dk, nk), keep(r, dv, nk);
}
static void c_attn64(run_t *r) { c_attn(r, 4, 2, 64); }
static void c_attn72(run_t *r) { c_attn(r, 3, 3, 72); }
static void c_attn128(run_t *r) { c_attn(r, 4, 2, 128); }

/* the two runs' outputs agree within tol of the largest, no NaN */
static int same(const char *what, const float *a, const float *b, size_t n, double tol, char *msg, size_t len)
{
    double mx = 0;
    for (size_t i = 0; i < n; i++)
        mx = fabs(a[i]) > mx ? fabs(a[i]) : mx;
    for (size_t i = 0; i < n; i++) {
        if (isnan(b[i]) || isnan(a[i]) || fabs((double)a[i] - b[i]) > tol * mx) {
            snprintf(msg, len, "%s: output %zu of %zu: %.9g zeroed and added, %.9g written", what, i, n, a[i], b[i]);
            return -1;
        }
    }
    return 0;
}

int gradwrite_ops(const op_table_t *t, double tol, char *msg, size_t msglen)
{
    static const struct {
        const char *name;
        void (*fn)(run_t *);
    } cases[] = {{"linear_bwd", c_linear_add},
                 {"linear_bwd_set", c_linear_set},
                 {"linear3_bwd (din written)", c_linear3_set},
                 {"linear3_bwd (din added)", c_linear3_add},
                 {"mlp_bwd", c_mlp},
                 {"rmsnorm_bwd", c_rmsnorm},
                 {"layernorm_bwd", c_layernorm},
                 {"conv2d_bwd 3x3", c_conv3},
                 {"conv2d_bwd 1x1", c_conv1},
                 {"groupnorm_bwd", c_groupnorm},
                 {"classifier_ce (3 chunks)", c_classifier},
                 {"attention_bwd written, d 64, 4:2 heads", c_attn64},
                 {"attention_bwd written, d 72, 3:3 heads", c_attn72},
                 {"attention_bwd written, d 128, 4:2 heads", c_attn128}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        run_t a = {.t = t, .on = 0, .s = 0x9e3779b97f4a7c15ull + k}, b = {.t = t, .on = 1, .s = a.s};
        cases[k].fn(&a);
        run_end(&a);
        cases[k].fn(&b);
        run_end(&b);
        int bad = a.n_out != b.n_out || same(cases[k].name, a.out, b.out, a.n_out, tol, msg, msglen);
        if (a.n_out != b.n_out)
            snprintf(msg, msglen, "%s: %zu and %zu outputs", cases[k].name, a.n_out, b.n_out);
        free(a.out);
        free(b.out);
        if (bad)
            return -1;
    }
    return 0;
}

/* ---- the model ---- */

void test_sample_make(test_sample_t *s, int k)
{
    for (int i = 0; i < 6; i++)
        s->tok[i] = (int32_t)((k * 37 + i * 11) % 500);
    for (size_t i = 0; i < sizeof s->vae; i++)
        s->vae[i] = (uint8_t)((i * 7 + k * 91) & 255);
    for (size_t i = 0; i < sizeof s->vit; i++)
        s->vit[i] = (uint8_t)((i * 13 + k * 5) & 255);
    memset(s->seg, 0, sizeof s->seg);
    s->seg[0] = (pack_segment_t){.kind = PACK_TEXT, .loss = 1, .tokens = s->tok, .n_tokens = 6};
    s->seg[1] = (pack_segment_t){.kind = PACK_IMAGE,
                                 .loss = 1,
                                 .und = 1,
                                 .vae = s->vae,
                                 .vae_h = 16,
                                 .vae_w = 16,
                                 .vit = s->vit,
                                 .vit_h = 28,
                                 .vit_w = 28};
}

/* sample k alone in a pack, with its image or (image 0) its caption only */
static int make_pack(pack_t *p, const model_config_t *cfg, int k, int image, char *err, size_t len)
{
    test_sample_t s;
    test_sample_make(&s, k);
    pack_opts_t po = {0};
    pack_init(p, cfg, &po, 7 + k);
    pack_sample_t ps = {.n_segments = image ? 2 : 1, .seg = s.seg};
    if (pack_add(p, &ps, err, len))
        return -1;
    pack_update_t(&p->b, cfg->timestep_shift);
    return 0;
}

/* the gradients after the micro-batches b[0..n), starting from zeroed
 * gradients (write 0) or from NaN and model_grad_clear (write 1) */
static float *model_grads(model_t *m, pack_t *const *b, int n, int write, char *err, size_t len)
{
    const op_table_t *t = m->ops;
    if (write) {
        float *h = malloc(m->n_floats * sizeof(float));
        for (size_t i = 0; i < m->n_floats; i++)
            h[i] = NAN;
        t->upload(m->grad_mem, h, m->n_floats * sizeof(float));
        free(h);
        model_grad_clear(m);
    } else {
        model_zero_grad(m);
    }
    model_loss_opts_t lo = model_default_loss;
    lo.grad_scale = 1.0f / (float)n;
    for (int i = 0; i < n; i++) {
        model_losses_t L;
        if (model_forward(m, &b[i]->b, &lo, 1, &L, err, len) || model_backward(m, err, len))
            return NULL;
    }
    float *g = malloc(m->n_floats * sizeof(float));
    t->download(g, m->grad_mem, m->n_floats * sizeof(float));
    /* the gradient block's floats of untrained parameters are never
     * written or read: compare the trained ones */
    for (int i = 0; i < m->n_params; i++)
        if (!m->params[i].trainable)
            memset(g + m->params[i].offset, 0, m->params[i].numel * sizeof(float));
    return g;
}

int gradwrite_model(const op_table_t *t, double tol, char *msg, size_t msglen)
{
    char err[300];
    model_config_t cfg;
    if (model_config_load(&cfg, "tests/stage/data/train-mini.json", NULL, err, sizeof err)) {
        snprintf(msg, msglen, "%s", err);
        return -1;
    }
    int rc = 0;
    for (int tied = 0; tied < 2 && !rc; tied++) {
        cfg.tie_embeddings = tied;
        pack_t full, text, full2;
        if (make_pack(&full, &cfg, 0, 1, err, sizeof err) || make_pack(&text, &cfg, 1, 0, err, sizeof err) ||
            make_pack(&full2, &cfg, 2, 1, err, sizeof err)) {
            snprintf(msg, msglen, "packing: %s", err);
            return -1;
        }
        model_t *m = model_new(&cfg, t, err, sizeof err);
        if (!m) {
            snprintf(msg, msglen, "%s", err);
            return -1;
        }
        model_init_test(m, 3);
        model_caps_t caps = model_caps_of(&full.b);
        if (model_reserve(m, &caps, err, sizeof err)) {
            snprintf(msg, msglen, "%s", err);
            return -1;
        }
        struct {
            const char *name;
            pack_t *b[2];
            int n;
        } runs[] = {{"every part", {&full}, 1}, {"text only", {&text}, 1}, {"text, then every part", {&text, &full2}, 2}};
        for (size_t k = 0; k < sizeof runs / sizeof runs[0] && !rc; k++) {
            float *a = model_grads(m, runs[k].b, runs[k].n, 0, err, sizeof err);
            float *b = a ? model_grads(m, runs[k].b, runs[k].n, 1, err, sizeof err) : NULL;
            char what[160];
            snprintf(what, sizeof what, "model%s, %s", tied ? " (tied embeddings)" : "", runs[k].name);
            if (!a || !b) {
                snprintf(msg, msglen, "%s: %s", what, err);
                rc = -1;
            } else {
                rc = same(what, a, b, m->n_floats, tol, msg, msglen);
            }
            free(a);
            free(b);
        }
        model_destroy(&m);
        pack_free(&full);
        pack_free(&text);
        pack_free(&full2);
    }
    return rc;
}
