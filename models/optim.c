/* optim.c — learning-rate schedules, gradient clipping, AdamW, EMA and the
 * optimizer state file (optim.h says what each does and why). */
#include "optim.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "optim.c copies F32 and I64 tensors as raw little-endian bytes"
#endif

#define OPTIM_FORMAT  "bagelpipe-optim"
#define OPTIM_VERSION "1"

const optim_hparams_t optim_bagel_hparams = {
    .beta1 = 0.9f,
    .beta2 = 0.95f,
    .eps = 1e-15f,
    .weight_decay = 0.0f,
    .ema_decay = 0.9999f,
    .max_grad_norm = 1.0,
};

/* ---- schedules */

static const struct {
    const char *name;
    int kind;
} sched_names[] = {
    {"fixed", OPTIM_SCHED_FIXED},   {"constant", OPTIM_SCHED_CONSTANT}, {"constant_with_warmup", OPTIM_SCHED_CONSTANT},
    {"linear", OPTIM_SCHED_LINEAR}, {"cosine", OPTIM_SCHED_COSINE},     {"cosine_with_min_lr", OPTIM_SCHED_COSINE},
};

const char *optim_sched_name(int kind)
{
    for (size_t i = 0; i < sizeof sched_names / sizeof *sched_names; i++)
        if (sched_names[i].kind == kind)
            return sched_names[i].name;
    return NULL;
}

int optim_sched_parse(optim_sched_t *s, const char *name, double lr, double min_lr, long warmup, long total, char *err,
                      size_t errlen)
{
    int kind = -1;
    for (size_t i = 0; name && i < sizeof sched_names / sizeof *sched_names; i++)
        if (strcmp(name, sched_names[i].name) == 0)
            kind = sched_names[i].kind;
    if (kind < 0) {
        snprintf(err, errlen,
                 "lr schedule \"%.40s\": unknown, expected fixed, constant, constant_with_warmup, linear, cosine or "
                 "cosine_with_min_lr",
                 name ? name : "(null)");
        return -1;
    }
    if (!(lr > 0 && isfinite(lr))) {
        snprintf(err, errlen, "lr %g: expected a finite number > 0", lr);
        return -1;
    }
    if (!(min_lr >= 0 && isfinite(min_lr))) {
        snprintf(err, errlen, "min_lr %g: expected a finite number >= 0", min_lr);
        return -1;
    }
    if (warmup < 0 || total < 0) {
        snprintf(err, errlen, "warmup %ld, total %ld: expected both >= 0", warmup, total);
        return -1;
    }
    *s = (optim_sched_t){.kind = kind, .lr = lr, .min_lr = min_lr, .warmup = warmup, .total = total};
    return 0;
}

static long max1(long x) { return x > 1 ? x : 1; }

/* The lambdas of transformers 4.49 optimization.py, operation for operation
 * in double (Python floats), so that lr·λ(k) equals LambdaLR's value. */
static double sched_lambda(const optim_sched_t *s, long k)
{
    if (s->kind == OPTIM_SCHED_FIXED)
        return 1.0;
    if (k < s->warmup)
        return (double)k / (double)max1(s->warmup);
    switch (s->kind) {
    case OPTIM_SCHED_CONSTANT: return 1.0;
    case OPTIM_SCHED_LINEAR: {
        double f = (double)(s->total - k) / (double)max1(s->total - s->warmup);
        return f > 0.0 ? f : 0.0;
    }
    case OPTIM_SCHED_COSINE: {
        double rate = s->min_lr / s->lr;
        double progress = (double)(k - s->warmup) / (double)max1(s->total - s->warmup);
        /* math.pi * num_cycles(0.5) * 2.0 * progress: the first two products
         * are exact, so this is M_PI * progress */
        double factor = 0.5 * (1.0 + cos(M_PI * progress));
        factor = factor * (1.0 - rate) + rate;
        return factor > 0.0 ? factor : 0.0;
    }
    default: return 1.0;
    }
}

double optim_lr(const optim_sched_t *s, long k) { return s->lr * sched_lambda(s, k); }

/* ---- optimizer */

optim_t *optim_new(const op_table_t *ops, const optim_hparams_t *hp, size_t n_floats, const optim_span_t *spans,
                   int n_spans, char *err, size_t errlen)
{
    if (n_spans < 0 || (n_spans > 0 && !spans)) {
        snprintf(err, errlen, "optimizer: %d spans, expected >= 0 with an array", n_spans);
        return NULL;
    }
    optim_t *o = calloc(1, sizeof *o);
    if (!o || !(o->spans = malloc(((size_t)n_spans + 1) * sizeof *o->spans))) {
        free(o);
        snprintf(err, errlen, "optimizer: out of memory");
        return NULL;
    }
    o->ops = ops;
    o->hp = *hp;
    o->n_floats = n_floats;
    size_t end = 0; /* end of the previous non-empty span */
    for (int i = 0; i < n_spans; i++) {
        const optim_span_t *sp = &spans[i];
        if (sp->count == 0)
            continue;
        if (sp->offset > n_floats || sp->count > n_floats - sp->offset) {
            snprintf(err, errlen, "optimizer: span %d (offset %zu, count %zu) ends past the block of %zu floats", i,
                     sp->offset, sp->count, n_floats);
            goto fail;
        }
        if (o->n_spans > 0 && sp->offset < end) {
            snprintf(err, errlen,
                     "optimizer: span %d (offset %zu) overlaps or precedes the previous one (ending at %zu), "
                     "expected ascending disjoint spans",
                     i, sp->offset, end);
            goto fail;
        }
        if (o->n_spans > 0 && sp->offset == end)
            o->spans[o->n_spans - 1].count += sp->count;
        else
            o->spans[o->n_spans++] = *sp;
        end = sp->offset + sp->count;
        o->n_trainable += sp->count;
    }
    if (o->n_trainable) {
        o->m = ops->alloc(o->n_trainable * sizeof(float));
        o->v = ops->alloc(o->n_trainable * sizeof(float));
        if (!o->m || !o->v) {
            snprintf(err, errlen, "optimizer: cannot allocate %.1f MiB of AdamW state on %s",
                     2.0 * o->n_trainable * 4 / 1048576.0, ops->name);
            goto fail;
        }
    }
    return o;
fail:
    optim_destroy(&o);
    return NULL;
}

void optim_destroy(optim_t **o)
{
    if (!o || !*o)
        return;
    optim_t *x = *o;
    if (x->m)
        x->ops->free(x->m);
    if (x->v)
        x->ops->free(x->v);
    free(x->spans);
    free(x);
    *o = NULL;
}

void optim_zero(const optim_t *o, float *grads)
{
    for (int i = 0; i < o->n_spans; i++)
        o->ops->zero(grads + o->spans[i].offset, o->spans[i].count * sizeof(float));
}

double optim_grad_norm(const optim_t *o, const float *grads)
{
    double ss = 0.0;
    for (int i = 0; i < o->n_spans; i++)
        ss += o->ops->sumsq(grads + o->spans[i].offset, o->spans[i].count);
    return sqrt(ss);
}

/* clip_grad_norm_'s coefficient for a finite norm: 1 when nothing is to
 * be scaled (torch multiplies by 1.0 then, which changes nothing) */
static float clip_coef(double norm, double max_norm)
{
    if (!(max_norm > 0))
        return 1.0f;
    double coef = max_norm / (norm + 1e-6);
    return coef < 1.0 ? (float)coef : 1.0f;
}

double optim_clip(const optim_t *o, float *grads, double max_norm)
{
    double norm = optim_grad_norm(o, grads);
    if (!isfinite(norm))
        return norm;
    float coef = clip_coef(norm, max_norm);
    if (coef != 1.0f)
        for (int i = 0; i < o->n_spans; i++)
            o->ops->scale(grads + o->spans[i].offset, coef, o->spans[i].count);
    return norm;
}

/* AdamW over the spans on the gradients times gscale, with the EMA in the
 * same pass when ema is not NULL */
static void adamw_spans(optim_t *o, float *params, const float *grads, double lr, float gscale, float *ema,
                        float decay)
{
    long t = o->step + 1;
    int step = t > INT_MAX ? INT_MAX : (int)t; /* b^step is 0 long before */
    size_t at = 0;
    for (int i = 0; i < o->n_spans; i++) {
        const optim_span_t *sp = &o->spans[i];
        o->ops->adamw(params + sp->offset, grads + sp->offset, o->m + at, o->v + at, sp->count, (float)lr, o->hp.beta1,
                      o->hp.beta2, o->hp.eps, o->hp.weight_decay, step, gscale, ema ? ema + sp->offset : NULL, decay);
        at += sp->count;
    }
    o->step++;
}

void optim_adamw(optim_t *o, float *params, const float *grads, double lr)
{
    adamw_spans(o, params, grads, lr, 1.0f, NULL, 0.0f);
}

void optim_ema(const optim_t *o, float *ema, const float *params, float decay)
{
    for (int i = 0; i < o->n_spans; i++)
        o->ops->ema(ema + o->spans[i].offset, params + o->spans[i].offset, o->spans[i].count, decay);
}

int optim_update(optim_t *o, const optim_sched_t *s, float *params, const float *grads, float *ema, optim_report_t *r)
{
    optim_report_t rep = {0};
    /* the clip's coefficient and the EMA ride in AdamW's one pass over the
     * state (the same bits as optim_clip, optim_adamw, optim_ema in turn;
     * the gradients are left unscaled) */
    rep.norm = optim_grad_norm(o, grads);
    if (!isfinite(rep.norm)) {
        rep.skipped = 1;
    } else {
        rep.lr = optim_lr(s, o->step);
        adamw_spans(o, params, grads, rep.lr, clip_coef(rep.norm, o->hp.max_grad_norm), ema, o->hp.ema_decay);
    }
    if (r)
        *r = rep;
    return rep.skipped ? -1 : 0;
}

/* ---- state file */

int optim_save(const optim_t *o, const char *path, char *err, size_t errlen)
{
    int rc = -1;
    char e[400];
    size_t n = o->n_trainable;
    float *m = malloc((n ? n : 1) * sizeof(float)), *v = malloc((n ? n : 1) * sizeof(float));
    int64_t *sp = malloc(((size_t)o->n_spans * 2 + 1) * sizeof(int64_t));
    st_writer_t *w = st_writer_new();
    if (!m || !v || !sp || !w) {
        snprintf(err, errlen, "%s: out of memory saving the optimizer state", path);
        goto out;
    }
    if (n) {
        o->ops->download(m, o->m, n * sizeof(float));
        o->ops->download(v, o->v, n * sizeof(float));
    }
    for (int i = 0; i < o->n_spans; i++) {
        sp[2 * i] = (int64_t)o->spans[i].offset;
        sp[2 * i + 1] = (int64_t)o->spans[i].count;
    }
    int64_t step = o->step, nf = (int64_t)o->n_floats;
    int64_t sh_n[1] = {(int64_t)n}, sh_sp[2] = {o->n_spans, 2};
    char b1[32], b2[32], eps[32], wd[32];
    snprintf(b1, sizeof b1, "%.9g", o->hp.beta1);
    snprintf(b2, sizeof b2, "%.9g", o->hp.beta2);
    snprintf(eps, sizeof eps, "%.9g", o->hp.eps);
    snprintf(wd, sizeof wd, "%.9g", o->hp.weight_decay);
    if (st_writer_set_metadata(w, "format", OPTIM_FORMAT, e, sizeof e) ||
        st_writer_set_metadata(w, "version", OPTIM_VERSION, e, sizeof e) ||
        st_writer_set_metadata(w, "beta1", b1, e, sizeof e) || st_writer_set_metadata(w, "beta2", b2, e, sizeof e) ||
        st_writer_set_metadata(w, "eps", eps, e, sizeof e) ||
        st_writer_set_metadata(w, "weight_decay", wd, e, sizeof e) ||
        st_writer_add_f32(w, "exp_avg", ST_F32, 1, sh_n, m, e, sizeof e) ||
        st_writer_add_f32(w, "exp_avg_sq", ST_F32, 1, sh_n, v, e, sizeof e) ||
        st_writer_add(w, "spans", ST_I64, 2, sh_sp, sp, e, sizeof e) ||
        st_writer_add(w, "n_floats", ST_I64, 0, NULL, &nf, e, sizeof e) ||
        st_writer_add(w, "step", ST_I64, 0, NULL, &step, e, sizeof e)) {
        snprintf(err, errlen, "%s: %s", path, e);
        goto out;
    }
    if (st_writer_write(w, path, err, errlen))
        goto out;
    rc = 0;
out:
    st_writer_destroy(&w);
    free(m);
    free(v);
    free(sp);
    return rc;
}

static int64_t read_i64(const st_tensor_t *t, size_t i)
{
    int64_t x;
    memcpy(&x, (const char *)t->data + i * sizeof x, sizeof x);
    return x;
}

int optim_load(optim_t *o, const char *path, char *err, size_t errlen)
{
    st_file_t *f = st_open(path, err, errlen);
    if (!f)
        return -1;
    int rc = -1;
    const char *fmt = st_metadata_get(f, "format"), *ver = st_metadata_get(f, "version");
    if (!fmt || strcmp(fmt, OPTIM_FORMAT) != 0 || !ver || strcmp(ver, OPTIM_VERSION) != 0) {
        snprintf(err, errlen, "%s: __metadata__ format \"%.40s\" version \"%.20s\", expected \"%s\" \"%s\"", path,
                 fmt ? fmt : "(none)", ver ? ver : "(none)", OPTIM_FORMAT, OPTIM_VERSION);
        goto out;
    }
    static const char *names[] = {"exp_avg", "exp_avg_sq", "spans", "n_floats", "step"};
    const st_tensor_t *t[5];
    int64_t sh_n[1] = {(int64_t)o->n_trainable}, sh_sp[2] = {o->n_spans, 2};
    const int dtypes[5] = {ST_F32, ST_F32, ST_I64, ST_I64, ST_I64};
    const int ndims[5] = {1, 1, 2, 0, 0};
    const int64_t *shapes[5] = {sh_n, sh_n, sh_sp, NULL, NULL};
    for (int i = 0; i < 5; i++) {
        if (!(t[i] = st_find(f, names[i]))) {
            snprintf(err, errlen, "%s: tensor \"%s\" is missing, expected an optimizer state file", path, names[i]);
            goto out;
        }
    }
    /* the layout first, so that a changed set of trained parameters is named
     * as such rather than as a shape mismatch */
    for (int i = 2; i < 5; i++)
        if (st_expect(t[i], dtypes[i], ndims[i], shapes[i], err, errlen) && i != 2)
            goto out;
    int64_t nf = read_i64(t[3], 0), step = read_i64(t[4], 0);
    int same = nf == (int64_t)o->n_floats && t[2]->ndim == 2 && t[2]->dtype == ST_I64 && t[2]->shape[0] == o->n_spans &&
               t[2]->shape[1] == 2;
    for (int i = 0; same && i < o->n_spans; i++)
        same = read_i64(t[2], 2 * (size_t)i) == (int64_t)o->spans[i].offset &&
               read_i64(t[2], 2 * (size_t)i + 1) == (int64_t)o->spans[i].count;
    if (!same) {
        snprintf(err, errlen,
                 "%s: saved for other trained parameters (%lld-float block, %lld spans), expected %zu floats in %d "
                 "spans as this model trains them; resume with the same frozen parts or start the optimizer afresh",
                 path, (long long)nf, t[2]->ndim == 2 ? (long long)t[2]->shape[0] : -1LL, o->n_floats, o->n_spans);
        goto out;
    }
    if (step < 0 || step > (int64_t)LONG_MAX / 2) {
        snprintf(err, errlen, "%s: step %lld, expected 0 .. %ld", path, (long long)step, LONG_MAX / 2);
        goto out;
    }
    for (int i = 0; i < 2; i++)
        if (st_expect(t[i], dtypes[i], ndims[i], shapes[i], err, errlen))
            goto out;
    /* checked F32 of n_trainable elements: the bytes are the floats */
    if (o->n_trainable) {
        o->ops->upload(o->m, t[0]->data, t[0]->nbytes);
        o->ops->upload(o->v, t[1]->data, t[1]->nbytes);
    }
    o->step = (long)step;
    rc = 0;
out:
    st_close(&f);
    return rc;
}
