/* test_optim.c — the training-step math of models/optim.h against PyTorch:
 * learning-rate schedules (LambdaLR with transformers' lambdas), AdamW with
 * and without weight decay and clipping, clip_grad_norm_ (norm above and
 * below the limit, zero, NaN, infinity), the EMA against its closed form, and
 * the optimizer state file (bit-identical round trip, a resumed run equal to
 * an uninterrupted one, files that do not fit refused).
 *
 * Golden values: the JSON files in tests/unit/data/optim/, written by
 * tests/unit/data/optim/make_optim_golden.py with torch 1.13 (the header of
 * that script says how). Run from the repository root (tests/run.sh does). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <math.h>

#include "../support/tmpdir.h"
#include "../../kernels/ops.h"
#include "../../models/optim.h"
#include "../../models/safetensors.h"

#define DATA "tests/unit/data/optim"

static char tmpdir[256];

static int setup_tmp(void **state)
{
    (void)state;
    return test_tmpdir_make(tmpdir, sizeof tmpdir, "optim");
}

static int teardown_tmp(void **state)
{
    (void)state;
    return test_tmpdir_remove(tmpdir);
}

/* ---- golden file helpers */

static json_t *load(const char *name)
{
    char path[256];
    json_error_t je;
    snprintf(path, sizeof path, DATA "/%s", name);
    json_t *j = json_load_file(path, 0, &je);
    if (!j)
        fail_msg("%s:%d: %s", path, je.line, je.text);
    return j;
}

/* a number, or "nan" / "inf" / "-inf" */
static double num(const json_t *j)
{
    if (json_is_string(j)) {
        const char *s = json_string_value(j);
        if (!strcmp(s, "nan"))
            return NAN;
        if (!strcmp(s, "inf"))
            return INFINITY;
        if (!strcmp(s, "-inf"))
            return -INFINITY;
        fail_msg("bad number string \"%s\"", s);
    }
    assert_true(json_is_number(j));
    return json_number_value(j);
}

static double get(const json_t *o, const char *key)
{
    json_t *j = json_object_get(o, key);
    if (!j)
        fail_msg("golden: no key \"%s\"", key);
    return num(j);
}

/* n floats of a JSON array into dst (golden f32 values read back exactly) */
static void floats(float *dst, const json_t *arr, size_t n)
{
    assert_true(json_is_array(arr));
    assert_int_equal(json_array_size(arr), n);
    for (size_t i = 0; i < n; i++)
        dst[i] = (float)num(json_array_get(arr, i));
}

/* max over i of |a − b| / |b| (b = 0 needs a = 0) */
static double max_rel(const float *a, const float *b, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        double r = b[i] != 0 ? d / fabs((double)b[i]) : (d == 0 ? 0 : INFINITY);
        if (!(r <= worst))
            worst = r;
    }
    return worst;
}

/* max |a − b| / max |b|: the normalized error, for the AdamW moments. An
 * element much smaller than the rest of its tensor comes from cancellation
 * (an exp_avg of 0.0039 as 0.9·m + 0.1·g of terms near 0.21), and the op
 * table takes β as a float: 1 − β1 = 1 − 0.9f = 0.100000024 where torch
 * rounds Python's 1 − 0.9 to 0.1f, a 2.4e-7 relative difference on every g
 * term that cancellation turns into up to 1e-5 of such an element. */
static double max_norm_err(const float *a, const float *b, size_t n)
{
    double worst = 0, big = 0;
    for (size_t i = 0; i < n; i++) {
        big = fmax(big, fabs((double)b[i]));
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= worst))
            worst = d;
    }
    return big > 0 ? worst / big : (worst == 0 ? 0 : INFINITY);
}

/* ---- (1) schedules */

static void test_schedules(void **state)
{
    (void)state;
    json_t *g = load("schedules.json");
    json_t *cases = json_object_get(g, "cases"), *c;
    size_t ci;
    char err[300];
    int n_checked = 0, n_exact = 0;
    json_array_foreach(cases, ci, c)
    {
        optim_sched_t s;
        const char *kind = json_string_value(json_object_get(c, "kind"));
        if (optim_sched_parse(&s, kind, get(c, "lr"), get(c, "min_lr"), (long)get(c, "warmup"), (long)get(c, "total"),
                              err, sizeof err))
            fail_msg("%s", err);
        json_t *vals = json_object_get(c, "lr_k");
        for (size_t k = 0; k < json_array_size(vals); k++) {
            double want = num(json_array_get(vals, k)), got = optim_lr(&s, (long)k);
            if (!(fabs(got - want) <= 1e-12 * fabs(want)))
                fail_msg("%s lr %g min %g warmup %ld total %ld: k=%zu lr %.17g, torch %.17g", kind, s.lr, s.min_lr,
                         s.warmup, s.total, k, got, want);
            n_checked++;
            n_exact += got == want;
        }
    }
    json_t *far = json_object_get(g, "bagel_cosine_far");
    optim_sched_t s;
    assert_int_equal(optim_sched_parse(&s, "cosine", 1e-4, 1e-7, 2000, 500000, err, sizeof err), 0);
    json_array_foreach(far, ci, c)
    {
        long k = (long)get(c, "k");
        double want = get(c, "lr"), got = optim_lr(&s, k);
        if (!(fabs(got - want) <= 1e-12 * fabs(want)))
            fail_msg("BAGEL cosine k=%ld: lr %.17g, expected %.17g", k, got, want);
        n_checked++;
        n_exact += got == want;
    }
    assert_true(n_checked > 150);
    print_message("schedules: %d values, %d bit-identical to LambdaLR\n", n_checked, n_exact);
    json_decref(g);
}

static void test_sched_parse(void **state)
{
    (void)state;
    optim_sched_t s;
    char err[300];
    const char *names[] = {"fixed", "constant", "constant_with_warmup", "linear", "cosine", "cosine_with_min_lr"};
    const int kinds[] = {OPTIM_SCHED_FIXED,  OPTIM_SCHED_CONSTANT, OPTIM_SCHED_CONSTANT,
                         OPTIM_SCHED_LINEAR, OPTIM_SCHED_COSINE,   OPTIM_SCHED_COSINE};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(optim_sched_parse(&s, names[i], 1e-4, 0, 10, 100, err, sizeof err), 0);
        assert_int_equal(s.kind, kinds[i]);
    }
    assert_string_equal(optim_sched_name(OPTIM_SCHED_COSINE), "cosine");
    assert_string_equal(optim_sched_name(OPTIM_SCHED_CONSTANT), "constant");
    assert_null(optim_sched_name(OPTIM_SCHED_COUNT));
    assert_int_equal(optim_sched_parse(&s, "cosine_restarts", 1e-4, 0, 0, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "cosine_restarts"));
    assert_int_equal(optim_sched_parse(&s, NULL, 1e-4, 0, 0, 0, err, sizeof err), -1);
    assert_int_equal(optim_sched_parse(&s, "constant", 0, 0, 0, 0, err, sizeof err), -1);
    assert_int_equal(optim_sched_parse(&s, "constant", NAN, 0, 0, 0, err, sizeof err), -1);
    assert_int_equal(optim_sched_parse(&s, "cosine", 1e-4, -1e-7, 0, 0, err, sizeof err), -1);
    assert_int_equal(optim_sched_parse(&s, "linear", 1e-4, 0, -1, 10, err, sizeof err), -1);
    assert_non_null(strstr(err, "warmup -1"));
    /* BAGEL's default: the first update has lr 0 */
    assert_int_equal(optim_sched_parse(&s, "constant", 1e-4, 0, 2000, 0, err, sizeof err), 0);
    assert_true(optim_lr(&s, 0) == 0.0);
    assert_true(optim_lr(&s, 2000) == 1e-4);
}

/* ---- (2) AdamW against torch.optim.AdamW, with the schedule and clipping */

static void test_adamw(void **state)
{
    (void)state;
    json_t *g = load("adamw.json");
    json_t *sizes = json_object_get(g, "sizes");
    size_t sz[3], nt = 0, nfrozen = (size_t)get(g, "frozen");
    for (int i = 0; i < 3; i++)
        nt += sz[i] = (size_t)num(json_array_get(sizes, (size_t)i));
    /* block: [t0 | frozen | t1 | t2]; spans t0 and t1+t2 (adjacent, merged) */
    size_t n = nt + nfrozen, off[3] = {0, sz[0] + nfrozen, sz[0] + nfrozen + sz[1]};
    optim_span_t spans[3] = {{off[0], sz[0]}, {off[1], sz[1]}, {off[2], sz[2]}};
    float *init = malloc(nt * 4), *frozen = malloc(nfrozen * 4), *gsrc = malloc(nt * 4), *want = malloc(nt * 4);
    float *p = malloc(n * 4), *gr = malloc(n * 4), *got = malloc(nt * 4);
    floats(init, json_object_get(g, "init"), nt);
    floats(frozen, json_object_get(g, "frozen_init"), nfrozen);
    json_t *cases = json_object_get(g, "cases"), *c;
    size_t ci;
    double worst[3] = {0};
    json_array_foreach(cases, ci, c)
    {
        optim_hparams_t hp = optim_bagel_hparams;
        hp.weight_decay = (float)get(c, "weight_decay");
        hp.max_grad_norm = get(c, "max_grad_norm");
        char err[300];
        optim_t *o = optim_new(&op_cpu, &hp, n, spans, 3, err, sizeof err);
        if (!o)
            fail_msg("%s", err);
        assert_int_equal(o->n_spans, 2);
        assert_int_equal(o->n_trainable, nt);
        optim_sched_t s;
        assert_int_equal(optim_sched_parse(&s, "constant", get(c, "lr"), 0, (long)get(c, "warmup"), 0, err, sizeof err),
                         0);
        for (int t = 0; t < 3; t++)
            memcpy(p + off[t], init + (off[t] - (t ? nfrozen : 0)), sz[t] * 4);
        memcpy(p + sz[0], frozen, nfrozen * 4);
        json_t *steps = json_object_get(c, "steps");
        for (size_t k = 0; k < json_array_size(steps); k++) {
            json_t *st = json_array_get(steps, k);
            floats(gsrc, json_array_get(json_object_get(g, "grads"), k), nt);
            for (size_t i = 0; i < nfrozen; i++)
                gr[sz[0] + i] = NAN; /* a frozen gradient is never read */
            for (int t = 0; t < 3; t++)
                memcpy(gr + off[t], gsrc + (off[t] - (t ? nfrozen : 0)), sz[t] * 4);
            optim_report_t r;
            assert_int_equal(optim_update(o, &s, p, gr, NULL, &r), 0);
            assert_int_equal(r.skipped, 0);
            assert_int_equal(o->step, (long)k + 1);
            if (!(fabs(r.lr - get(st, "lr")) <= 1e-12 * get(st, "lr")))
                fail_msg("step %zu: lr %.17g, torch %.17g", k, r.lr, get(st, "lr"));
            json_t *jn = json_object_get(st, "norm");
            if (!json_is_null(jn) && !(fabs(r.norm - num(jn)) <= 1e-6 * num(jn)))
                fail_msg("step %zu: norm %.9g, torch %.9g", k, r.norm, num(jn));
            for (int t = 0; t < 3; t++)
                memcpy(got + (off[t] - (t ? nfrozen : 0)), p + off[t], sz[t] * 4);
            /* params element by element; exp_avg and exp_avg_sq by the
             * normalized error of each tensor */
            const char *what[3] = {"params", "exp_avg", "exp_avg_sq"};
            float *state_blocks[3] = {got, o->m, o->v};
            for (int w = 0; w < 3; w++) {
                floats(want, json_object_get(st, what[w]), nt);
                for (size_t t = 0, at = 0; t < 3; at += sz[t++]) {
                    double e = w == 0 ? max_rel(state_blocks[w] + at, want + at, sz[t])
                                      : max_norm_err(state_blocks[w] + at, want + at, sz[t]);
                    if (!(e <= 1e-6))
                        fail_msg("weight_decay %g, step %zu: %s of tensor %zu off by %.3g relative", hp.weight_decay, k,
                                 what[w], t, e);
                    if (e > worst[w])
                        worst[w] = e;
                }
            }
            assert_memory_equal(p + sz[0], frozen, nfrozen * 4);
        }
        optim_destroy(&o);
        assert_null(o);
    }
    print_message("adamw vs torch: params %.2g relative, exp_avg %.2g and exp_avg_sq %.2g normalized\n", worst[0],
                  worst[1], worst[2]);
    free(init), free(frozen), free(gsrc), free(want), free(p), free(gr), free(got);
    json_decref(g);
}

/* ---- (3) clipping against clip_grad_norm_ */

static void test_clip(void **state)
{
    (void)state;
    json_t *g = load("clip.json");
    json_t *cases = json_object_get(g, "cases"), *c;
    size_t ci;
    json_array_foreach(cases, ci, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));
        json_t *sizes = json_object_get(c, "sizes");
        size_t nsp = json_array_size(sizes), total = 0;
        /* each tensor preceded by a 3-float gap of NaN that must not count */
        optim_span_t sp[8];
        size_t at = 0;
        for (size_t i = 0; i < nsp; i++) {
            size_t k = (size_t)num(json_array_get(sizes, i));
            sp[i] = (optim_span_t){at + 3, k};
            at += 3 + k;
            total += k;
        }
        float *src = malloc(total * 4), *after = malloc(total * 4), *gr = malloc(at * 4), *got = malloc(total * 4);
        floats(src, json_object_get(c, "grads"), total);
        floats(after, json_object_get(c, "after"), total);
        for (size_t i = 0; i < at; i++)
            gr[i] = NAN;
        for (size_t i = 0, o = 0; i < nsp; i++, o += sp[i - 1].count)
            memcpy(gr + sp[i].offset, src + o, sp[i].count * 4);
        char err[300];
        optim_t *o = optim_new(&op_cpu, &optim_bagel_hparams, at, sp, (int)nsp, err, sizeof err);
        if (!o)
            fail_msg("%s", err);
        double want = get(c, "norm");
        double norm = optim_clip(o, gr, get(c, "max_norm"));
        for (size_t i = 0, q = 0; i < nsp; i++, q += sp[i - 1].count)
            memcpy(got + q, gr + sp[i].offset, sp[i].count * 4);
        if (isfinite(want)) {
            if (!(fabs(norm - want) <= 1e-6 * want + (want == 0 ? 0 : 0)))
                fail_msg("%s: norm %.9g, torch %.9g", name, norm, want);
            double e = max_rel(got, after, total);
            if (!(e <= 1e-6))
                fail_msg("%s: clipped gradients off by %.3g relative", name, e);
        } else {
            /* reported as torch reports it; the gradients are left alone
             * (torch multiplies them into NaN), the trainer skips the step */
            assert_int_equal(!!isnan(norm), !!isnan(want));
            assert_int_equal(!!isinf(norm), !!isinf(want));
            assert_memory_equal(got, src, total * 4);
        }
        for (size_t i = 0; i < nsp; i++)
            for (int k = 1; k <= 3; k++)
                assert_true(isnan(gr[sp[i].offset - (size_t)k]));
        if (!strcmp(name, "below") || !strcmp(name, "zero"))
            assert_memory_equal(got, src, total * 4); /* multiplied by 1: unchanged */
        optim_destroy(&o);
        free(src), free(after), free(gr), free(got);
    }
    json_decref(g);
}

/* a non-finite norm skips the whole update: no step, no EMA, no count */
static void test_update_skips_nonfinite(void **state)
{
    (void)state;
    float p[6] = {1, 2, 3, 4, 5, 6}, gr[6] = {0.1f, 0.2f, INFINITY, 0.4f, 0.5f, 0.6f}, e[6] = {1, 2, 3, 4, 5, 6};
    float p0[6], e0[6], g0[6];
    memcpy(p0, p, sizeof p), memcpy(e0, e, sizeof e), memcpy(g0, gr, sizeof gr);
    optim_span_t sp[1] = {{0, 6}};
    char err[300];
    optim_t *o = optim_new(&op_cpu, &optim_bagel_hparams, 6, sp, 1, err, sizeof err);
    optim_sched_t s;
    assert_int_equal(optim_sched_parse(&s, "fixed", 1e-3, 0, 0, 0, err, sizeof err), 0);
    optim_report_t r;
    assert_int_equal(optim_update(o, &s, p, gr, e, &r), -1);
    assert_int_equal(r.skipped, 1);
    assert_true(isinf(r.norm));
    assert_int_equal(o->step, 0);
    assert_memory_equal(p, p0, sizeof p);
    assert_memory_equal(e, e0, sizeof e);
    assert_memory_equal(gr, g0, sizeof gr);
    float zero[6] = {0};
    assert_memory_equal(o->m, zero, sizeof zero);
    assert_memory_equal(o->v, zero, sizeof zero);
    /* zero_grad, and the next step goes through as the first */
    optim_zero(o, gr);
    assert_memory_equal(gr, zero, sizeof zero);
    gr[0] = 1;
    assert_int_equal(optim_update(o, &s, p, gr, e, &r), 0);
    assert_int_equal(o->step, 1);
    assert_true(r.lr == 1e-3);
    /* the first Adam step moves a weight by lr·sign(g) (m̂/sqrt(v̂) = ±1) */
    assert_float_equal(p[0], 1 - 1e-3f, 1e-7);
    optim_destroy(&o);
}

/* ---- (4) EMA against its closed form */

static void test_ema(void **state)
{
    (void)state;
    enum { N = 40 };
    float e[N], p[3][N], e0[N];
    for (int i = 0; i < N; i++) {
        e[i] = e0[i] = (float)sin(i * 0.7) * 2;
        for (int k = 0; k < 3; k++)
            p[k][i] = (float)cos(i * 0.3 + k) + 0.01f * k;
    }
    optim_span_t sp[2] = {{3, 10}, {20, 17}}; /* gaps 0..2, 13..19, 37..39 are frozen */
    char err[300];
    optim_t *o = optim_new(&op_cpu, &optim_bagel_hparams, N, sp, 2, err, sizeof err);
    const float decays[2] = {0.9999f, 0.9f};
    for (int di = 0; di < 2; di++) {
        float d = decays[di];
        memcpy(e, e0, sizeof e);
        for (int k = 0; k < 3; k++)
            optim_ema(o, e, p[k], d);
        double dd = d, w = 1.0 - dd;
        for (int i = 0; i < N; i++) {
            int in = (i >= 3 && i < 13) || (i >= 20 && i < 37);
            if (!in) {
                assert_true(e[i] == e0[i]);
                continue;
            }
            /* e3 = d³·e0 + (1 − d)(d²·p1 + d·p2 + p3) */
            double want = dd * dd * dd * e0[i] + w * (dd * dd * p[0][i] + dd * p[1][i] + p[2][i]);
            if (!(fabs(e[i] - want) <= 1e-6 * fabs(want)))
                fail_msg("decay %g, i=%d: ema %.9g, closed form %.9g", d, i, e[i], want);
        }
    }
    optim_destroy(&o);
}

/* ---- spans */

static void test_spans(void **state)
{
    (void)state;
    char err[300];
    optim_span_t ok[5] = {{0, 4}, {4, 0}, {4, 2}, {10, 3}, {13, 1}};
    optim_t *o = optim_new(&op_cpu, &optim_bagel_hparams, 20, ok, 5, err, sizeof err);
    if (!o)
        fail_msg("%s", err);
    assert_int_equal(o->n_spans, 2);
    assert_int_equal(o->spans[0].offset, 0);
    assert_int_equal(o->spans[0].count, 6);
    assert_int_equal(o->spans[1].offset, 10);
    assert_int_equal(o->spans[1].count, 4);
    assert_int_equal(o->n_trainable, 10);
    float gr[20];
    for (int i = 0; i < 20; i++)
        gr[i] = 1;
    optim_zero(o, gr);
    for (int i = 0; i < 20; i++)
        assert_true(gr[i] == ((i < 6 || (i >= 10 && i < 14)) ? 0.0f : 1.0f));
    assert_true(optim_grad_norm(o, gr) == 0.0);
    optim_destroy(&o);

    optim_span_t overlap[2] = {{0, 5}, {4, 2}};
    assert_null(optim_new(&op_cpu, &optim_bagel_hparams, 20, overlap, 2, err, sizeof err));
    assert_non_null(strstr(err, "overlaps"));
    optim_span_t desc[2] = {{10, 2}, {0, 2}};
    assert_null(optim_new(&op_cpu, &optim_bagel_hparams, 20, desc, 2, err, sizeof err));
    optim_span_t past[1] = {{15, 6}};
    assert_null(optim_new(&op_cpu, &optim_bagel_hparams, 20, past, 1, err, sizeof err));
    assert_non_null(strstr(err, "ends past"));
    optim_span_t wrap[1] = {{5, SIZE_MAX}};
    assert_null(optim_new(&op_cpu, &optim_bagel_hparams, 20, wrap, 1, err, sizeof err));
    /* nothing trained: valid, every operation a no-op */
    o = optim_new(&op_cpu, &optim_bagel_hparams, 20, NULL, 0, err, sizeof err);
    assert_non_null(o);
    assert_null(o->m);
    optim_adamw(o, gr, gr, 1e-3);
    assert_int_equal(o->step, 1);
    optim_destroy(&o);
}

/* ---- (5) state file */

enum { SN = 50 };
static const optim_span_t SSPANS[3] = {{2, 11}, {20, 8}, {31, 15}};

static void fill_grads(float *g, int step)
{
    for (int i = 0; i < SN; i++)
        g[i] = (float)sin(i * 1.3 + step * 0.77) * (1 + step);
}

static void run_steps(optim_t *o, const optim_sched_t *s, float *p, float *e, int from, int to)
{
    float g[SN];
    for (int k = from; k < to; k++) {
        fill_grads(g, k);
        optim_report_t r;
        assert_int_equal(optim_update(o, s, p, g, e, &r), 0);
    }
}

static void test_save_load(void **state)
{
    (void)state;
    char err[400], path[300], path2[300];
    optim_hparams_t hp = optim_bagel_hparams;
    hp.weight_decay = 0.05f;
    hp.ema_decay = 0.9f;
    optim_sched_t s;
    assert_int_equal(optim_sched_parse(&s, "cosine", 1e-2, 1e-4, 2, 8, err, sizeof err), 0);
    float p[SN], e[SN];
    for (int i = 0; i < SN; i++)
        p[i] = e[i] = (float)cos(i * 0.41);

    /* the uninterrupted run: 6 updates */
    float pa[SN], ea[SN];
    memcpy(pa, p, sizeof p), memcpy(ea, e, sizeof e);
    optim_t *a = optim_new(&op_cpu, &hp, SN, SSPANS, 3, err, sizeof err);
    run_steps(a, &s, pa, ea, 0, 6);

    /* 2 updates, save, load into a fresh optimizer, 4 more */
    float pb[SN], eb[SN];
    memcpy(pb, p, sizeof p), memcpy(eb, e, sizeof e);
    optim_t *b = optim_new(&op_cpu, &hp, SN, SSPANS, 3, err, sizeof err);
    run_steps(b, &s, pb, eb, 0, 2);
    snprintf(path, sizeof path, "%s/optim.safetensors", tmpdir);
    snprintf(path2, sizeof path2, "%s/optim2.safetensors", tmpdir);
    if (optim_save(b, path, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(optim_save(b, path2, err, sizeof err), 0);
    optim_t *c = optim_new(&op_cpu, &hp, SN, SSPANS, 3, err, sizeof err);
    if (optim_load(c, path, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(c->step, 2);
    assert_memory_equal(c->m, b->m, b->n_trainable * 4);
    assert_memory_equal(c->v, b->v, b->n_trainable * 4);
    optim_destroy(&b);
    run_steps(c, &s, pb, eb, 2, 6);
    assert_int_equal(c->step, 6);
    assert_memory_equal(pb, pa, sizeof pa);
    assert_memory_equal(eb, ea, sizeof ea);
    assert_memory_equal(c->m, a->m, a->n_trainable * 4);
    assert_memory_equal(c->v, a->v, a->n_trainable * 4);

    /* written twice: the same bytes */
    FILE *f1 = fopen(path, "rb"), *f2 = fopen(path2, "rb");
    static char b1[1 << 16], b2[1 << 16];
    size_t n1 = fread(b1, 1, sizeof b1, f1), n2 = fread(b2, 1, sizeof b2, f2);
    fclose(f1), fclose(f2);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);

    /* the file as other tools see it */
    st_file_t *sf = st_open(path, err, sizeof err);
    assert_non_null(sf);
    assert_string_equal(st_metadata_get(sf, "format"), "bagelpipe-optim");
    const st_tensor_t *t = st_find(sf, "exp_avg");
    assert_non_null(t);
    assert_int_equal(t->dtype, ST_F32);
    assert_int_equal(t->numel, 34);
    st_close(&sf);

    /* a different set of trained parameters is refused, and c is unchanged */
    optim_span_t other[2] = {{2, 11}, {20, 8}};
    optim_t *d = optim_new(&op_cpu, &hp, SN, other, 2, err, sizeof err);
    assert_int_equal(optim_load(d, path, err, sizeof err), -1);
    assert_non_null(strstr(err, "other trained parameters"));
    assert_int_equal(d->step, 0);
    optim_destroy(&d);
    d = optim_new(&op_cpu, &hp, SN + 1, SSPANS, 3, err, sizeof err);
    assert_int_equal(optim_load(d, path, err, sizeof err), -1);
    assert_non_null(strstr(err, "other trained parameters"));
    optim_destroy(&d);

    /* not an optimizer file; BF16 moments; a missing tensor */
    int64_t sh[1] = {34}, shs[2] = {3, 2}, spv[6] = {2, 11, 20, 8, 31, 15}, nf = SN, step = 2;
    float zeros[34] = {0};
    const char *variants[3] = {"noformat", "bf16", "nostep"};
    for (int vi = 0; vi < 3; vi++) {
        st_writer_t *w = st_writer_new();
        if (vi != 0) {
            assert_int_equal(st_writer_set_metadata(w, "format", "bagelpipe-optim", err, sizeof err), 0);
            assert_int_equal(st_writer_set_metadata(w, "version", "1", err, sizeof err), 0);
        }
        assert_int_equal(st_writer_add_f32(w, "exp_avg", vi == 1 ? ST_BF16 : ST_F32, 1, sh, zeros, err, sizeof err), 0);
        assert_int_equal(st_writer_add_f32(w, "exp_avg_sq", ST_F32, 1, sh, zeros, err, sizeof err), 0);
        assert_int_equal(st_writer_add(w, "spans", ST_I64, 2, shs, spv, err, sizeof err), 0);
        assert_int_equal(st_writer_add(w, "n_floats", ST_I64, 0, NULL, &nf, err, sizeof err), 0);
        if (vi != 2)
            assert_int_equal(st_writer_add(w, "step", ST_I64, 0, NULL, &step, err, sizeof err), 0);
        char bad[300];
        snprintf(bad, sizeof bad, "%s/%s.safetensors", tmpdir, variants[vi]);
        assert_int_equal(st_writer_write(w, bad, err, sizeof err), 0);
        st_writer_destroy(&w);
        float m0[34];
        memcpy(m0, c->m, sizeof m0);
        assert_int_equal(optim_load(c, bad, err, sizeof err), -1);
        print_message("%s: %s\n", variants[vi], err);
        assert_int_equal(c->step, 6);
        assert_memory_equal(c->m, m0, sizeof m0);
        const char *expect[3] = {"format", "BF16", "\"step\" is missing"};
        assert_non_null(strstr(err, expect[vi]));
    }
    snprintf(path2, sizeof path2, "%s/absent.safetensors", tmpdir);
    assert_int_equal(optim_load(c, path2, err, sizeof err), -1);
    optim_destroy(&a);
    optim_destroy(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_sched_parse),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_clip),
        cmocka_unit_test(test_update_skips_nonfinite),
        cmocka_unit_test(test_ema),
        cmocka_unit_test(test_spans),
        cmocka_unit_test(test_save_load),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
