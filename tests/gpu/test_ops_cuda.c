/* test_ops_cuda.c — every op of op_cuda against op_cpu, its reference (TAP).
 *
 * Each test draws fresh random inputs on the host, runs op_cpu on host
 * copies and op_cuda on device copies, and compares every output by
 * normalized error ||gpu − cpu|| / ||cpu|| (a NaN anywhere fails): 1e-5 for
 * elementwise ops, 1e-4 for reductions, products and attention (fp32 sums
 * in another order). Outputs a forward overwrites start as NaN on the device
 * (an element never written shows); gradients start at random values (a
 * backward must add, not overwrite); NULL gradients are passed where the op
 * allows them. Sizes are odd on purpose; attention covers causal, full and
 * noise splits, several samples, GQA and a permutation of the storage rows.
 *
 * Without a CUDA device it prints "1..0 # SKIP no GPU: ..." and exits 0;
 * a cuda_ops_init that fails on a present device is a failed test. Exit 1
 * when any test fails. */
#include "../../kernels/cpu/cpu.h"
#include "../../kernels/cuda/ops_cuda.h"
#include "../support/gradwrite.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL_EW  1e-5
#define TOL_RED 1e-4
/* bf16 operands (8 significant bits) with fp32 accumulation: products land
 * near 4e-3 of the fp32 result; a wrong element or index lands far above */
#define TOL_BF16 2e-2
#define MSG_LEN 512

static const op_table_t *C = &op_cpu, *G = &op_cuda;
static char msg[MSG_LEN];
static int n_fail_checks;
/* the tolerance of products and attention: TOL_RED, or TOL_BF16 in the bf16 passes */
static double tol_red = TOL_RED;

/* ---- tracked buffers, released after each test */
#define MAX_TRACK 512
static void *host_bufs[MAX_TRACK], *dev_bufs[MAX_TRACK];
static int n_host, n_dev;

static void *host_alloc(size_t bytes)
{
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p || n_host == MAX_TRACK) {
        fprintf(stderr, "test_ops_cuda: out of host memory or tracking slots\n");
        exit(1);
    }
    return host_bufs[n_host++] = p;
}

static void *dev_alloc(size_t bytes)
{
    void *p = G->alloc(bytes);
    if (!p || n_dev == MAX_TRACK) {
        fprintf(stderr, "test_ops_cuda: out of device memory or tracking slots\n");
        exit(1);
    }
    return dev_bufs[n_dev++] = p;
}

static void release(void)
{
    for (int i = 0; i < n_host; i++)
        free(host_bufs[i]);
    for (int i = 0; i < n_dev; i++)
        G->free(dev_bufs[i]);
    n_host = n_dev = 0;
}

static unsigned long long rng = 42;
static float uniform(void) /* [-1, 1) */
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(rng >> 40) / (double)(1ULL << 24) * 2.0 - 1.0);
}

/* host floats uniform in [lo, hi) */
static float *hrand(size_t n, float lo, float hi)
{
    float *p = host_alloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = lo + (hi - lo) * 0.5f * (uniform() + 1.0f);
    return p;
}

static float *hcopy(const float *src, size_t n)
{
    float *p = host_alloc(n * sizeof(float));
    memcpy(p, src, n * sizeof(float));
    return p;
}

/* a device copy of host data of any type */
static void *dcopy(const void *src, size_t bytes)
{
    void *p = dev_alloc(bytes);
    G->upload(p, src, bytes);
    return p;
}

#define DF(h, n) ((float *)dcopy((h), (size_t)(n) * sizeof(float)))

/* a device buffer of n NaNs: forward outputs, to catch unwritten elements */
static float *dnan(size_t n)
{
    float *h = host_alloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        h[i] = NAN;
    return DF(h, n);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    if (n_fail_checks++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
    }
}

/* compare device floats with the CPU's by normalized error */
static void check(const char *what, const float *dev, const float *ref, size_t n, double tol)
{
    float *got = host_alloc(n * sizeof(float));
    G->download(got, dev, n * sizeof(float));
    double d2 = 0.0, r2 = 0.0;
    size_t worst = 0;
    double wd = -1.0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(got[i]) != isnan(ref[i])) {
            fail("%s: element %zu is %g, cpu %g", what, i, got[i], ref[i]);
            return;
        }
        if (isnan(ref[i]))
            continue;
        double e = (double)got[i] - ref[i];
        d2 += e * e, r2 += (double)ref[i] * ref[i];
        if (fabs(e) > wd)
            wd = fabs(e), worst = i;
    }
    double rel = sqrt(d2) / (r2 > 0.0 ? sqrt(r2) : 1.0);
    if (!(rel <= tol))
        fail("%s: normalized error %.3g > %.1g (worst element %zu: %g, cpu %g)", what, rel, tol, worst, got[worst],
             ref[worst]);
}

static void check_bytes(const char *what, const uint8_t *dev, const uint8_t *ref, size_t n)
{
    uint8_t *got = host_alloc(n);
    G->download(got, dev, n);
    for (size_t i = 0; i < n; i++)
        if (got[i] != ref[i]) {
            fail("%s: byte %zu is %u, cpu %u", what, i, got[i], ref[i]);
            return;
        }
}

/* ---- tests: each runs the op on both backends and checks */

static void t_linear(void)
{
    int n = 37, i = 45, o = 29;
    float *x = hrand((size_t)n * i, -1, 1), *w = hrand((size_t)o * i, -1, 1), *b = hrand(o, -1, 1);
    float *dx = DF(x, n * i), *dw_ = DF(w, o * i), *db_ = DF(b, o);
    for (int bias = 0; bias < 2; bias++) {
        float *out = hrand((size_t)n * o, -1, 1), *dout = dnan((size_t)n * o);
        C->linear_fwd(out, x, w, bias ? b : NULL, n, i, o);
        G->linear_fwd(dout, dx, dw_, bias ? db_ : NULL, n, i, o);
        check(bias ? "linear_fwd" : "linear_fwd without bias", dout, out, (size_t)n * o, tol_red);
    }
    float *g = hrand((size_t)n * o, -1, 1), *dg = DF(g, n * o);
    float *gin = hrand((size_t)n * i, -1, 1), *gw = hrand((size_t)o * i, -1, 1), *gb = hrand(o, -1, 1);
    float *dgin = DF(gin, n * i), *dgw = DF(gw, o * i), *dgb = DF(gb, o);
    C->linear_bwd(gin, gw, gb, g, x, w, n, i, o);
    G->linear_bwd(dgin, dgw, dgb, dg, dx, dw_, n, i, o);
    check("linear_bwd din", dgin, gin, (size_t)n * i, tol_red);
    check("linear_bwd dw", dgw, gw, (size_t)o * i, tol_red);
    check("linear_bwd db", dgb, gb, o, tol_red);
    /* NULL gradients skipped: dw alone */
    C->linear_bwd(NULL, gw, NULL, g, x, w, n, i, o);
    G->linear_bwd(NULL, dgw, NULL, dg, dx, dw_, n, i, o);
    check("linear_bwd dw alone", dgw, gw, (size_t)o * i, tol_red);
    /* din written, not added: on the GPU into NaN, which a read would keep */
    float *dgin_set = dnan((size_t)n * i);
    C->linear_bwd_set(gin, gw, gb, g, x, w, n, i, o);
    G->linear_bwd_set(dgin_set, dgw, dgb, dg, dx, dw_, n, i, o);
    check("linear_bwd_set din", dgin_set, gin, (size_t)n * i, tol_red);
    check("linear_bwd_set dw", dgw, gw, (size_t)o * i, tol_red);
    check("linear_bwd_set db", dgb, gb, o, tol_red);
}

/* rmsnorm at widths of both paths (a warp a row up to 4096 columns, a block
 * a row above), the weight gradient's column sums in parts of 128 rows
 * (2000 × 64) and of longer runs where the parts would pass about a
 * thousand blocks (93001 × 64 as the per-head q norms of the recipe, 20011 ×
 * 1152), and each gradient alone */
static void rmsnorm_case(int n, int c, int want_din, int want_dw)
{
    char what[96];
    float *x = hrand((size_t)n * c, -2, 2), *w = hrand(c, 0.5f, 1.5f);
    float *out = hrand((size_t)n * c, 0, 1), *rs = hrand(n, 0, 1);
    float *dx = DF(x, (size_t)n * c), *dw_ = DF(w, c), *dout = dnan((size_t)n * c), *drs = dnan(n);
    C->rmsnorm_fwd(out, rs, x, w, n, c, 1e-6f);
    G->rmsnorm_fwd(dout, drs, dx, dw_, n, c, 1e-6f);
    snprintf(what, sizeof what, "rmsnorm_fwd out %dx%d", n, c);
    check(what, dout, out, (size_t)n * c, tol_red);
    snprintf(what, sizeof what, "rmsnorm_fwd rstd %dx%d", n, c);
    check(what, drs, rs, n, tol_red);
    float *g = hrand((size_t)n * c, -1, 1), *gin = hrand((size_t)n * c, -1, 1), *gw = hrand(c, -1, 1);
    float *dg = DF(g, (size_t)n * c), *dgin = DF(gin, (size_t)n * c), *dgw = DF(gw, c);
    C->rmsnorm_bwd(want_din ? gin : NULL, want_dw ? gw : NULL, g, x, w, rs, n, c);
    G->rmsnorm_bwd(want_din ? dgin : NULL, want_dw ? dgw : NULL, dg, dx, dw_, DF(rs, n), n, c);
    snprintf(what, sizeof what, "rmsnorm_bwd din %dx%d%s", n, c, want_din ? "" : " (not wanted: unchanged)");
    check(what, dgin, gin, (size_t)n * c, tol_red);
    snprintf(what, sizeof what, "rmsnorm_bwd dw %dx%d%s", n, c, want_dw ? "" : " (not wanted: unchanged)");
    check(what, dgw, gw, c, tol_red);
    if (!want_din)
        return;
    /* rmsnorm_bwd_set: din written over NaN */
    float *sin_ = host_alloc((size_t)n * c * sizeof(float)), *dsin = dnan((size_t)n * c);
    C->rmsnorm_bwd_set(sin_, want_dw ? gw : NULL, g, x, w, rs, n, c);
    G->rmsnorm_bwd_set(dsin, want_dw ? dgw : NULL, dg, dx, dw_, DF(rs, n), n, c);
    snprintf(what, sizeof what, "rmsnorm_bwd_set din %dx%d", n, c);
    check(what, dsin, sin_, (size_t)n * c, tol_red);
    snprintf(what, sizeof what, "rmsnorm_bwd_set dw %dx%d (added to)", n, c);
    check(what, dgw, gw, c, tol_red);
}

static void t_rmsnorm(void)
{
    rmsnorm_case(7, 333, 1, 1);
    rmsnorm_case(2000, 64, 1, 1);
    rmsnorm_case(93001, 64, 1, 1);
    rmsnorm_case(20011, 1152, 0, 1);
    rmsnorm_case(301, 896, 1, 1);
    rmsnorm_case(45, 1024, 1, 1);
    rmsnorm_case(13, 1500, 1, 1);
    rmsnorm_case(301, 896, 1, 0);
    rmsnorm_case(301, 896, 0, 1);
}

static void t_layernorm(void)
{
    int n = 9, c = 257;
    float *x = hrand((size_t)n * c, -1, 3), *w = hrand(c, 0.5f, 1.5f), *b = hrand(c, -1, 1);
    float *out = hrand((size_t)n * c, 0, 1), *mu = hrand(n, 0, 1), *rs = hrand(n, 0, 1);
    float *dx = DF(x, n * c), *dout = dnan((size_t)n * c), *dmu = dnan(n), *drs = dnan(n);
    float *dw_ = DF(w, c), *db_ = DF(b, c);
    C->layernorm_fwd(out, mu, rs, x, w, b, n, c, 1e-5f);
    G->layernorm_fwd(dout, dmu, drs, dx, dw_, db_, n, c, 1e-5f);
    check("layernorm_fwd out", dout, out, (size_t)n * c, tol_red);
    check("layernorm_fwd mean", dmu, mu, n, tol_red);
    check("layernorm_fwd rstd", drs, rs, n, tol_red);
    float *g = hrand((size_t)n * c, -1, 1), *gin = hrand((size_t)n * c, -1, 1);
    float *gw = hrand(c, -1, 1), *gb = hrand(c, -1, 1);
    float *dg = DF(g, n * c), *dgin = DF(gin, n * c), *dgw = DF(gw, c), *dgb = DF(gb, c);
    C->layernorm_bwd(gin, gw, gb, g, x, w, mu, rs, n, c);
    G->layernorm_bwd(dgin, dgw, dgb, dg, dx, dw_, DF(mu, n), DF(rs, n), n, c);
    check("layernorm_bwd din", dgin, gin, (size_t)n * c, tol_red);
    check("layernorm_bwd dw", dgw, gw, c, tol_red);
    check("layernorm_bwd db", dgb, gb, c, tol_red);
}

static void t_rope(void)
{
    int n = 11, h = 3, d = 38;
    size_t m = (size_t)n * h * d;
    int32_t pos[11];
    for (int r = 0; r < n; r++)
        pos[r] = r * 37 % 300;
    int32_t *dpos = dcopy(pos, sizeof pos);
    float *x = hrand(m, -1, 1), *dx = DF(x, m);
    C->rope_fwd(x, pos, n, h, d, 10000.0f);
    G->rope_fwd(dx, dpos, n, h, d, 10000.0f);
    check("rope_fwd", dx, x, m, TOL_EW);
    C->rope_bwd(x, pos, n, h, d, 1000000.0f);
    G->rope_bwd(dx, dpos, n, h, d, 1000000.0f);
    check("rope_bwd (in place)", dx, x, m, TOL_EW);
    /* an odd head_dim leaves its last element alone */
    float *y = hrand((size_t)n * 5, -1, 1), *dy = DF(y, n * 5);
    C->rope_fwd(y, pos, n, 1, 5, 10000.0f);
    G->rope_fwd(dy, dpos, n, 1, 5, 10000.0f);
    check("rope_fwd odd d", dy, y, (size_t)n * 5, TOL_EW);
}

static void t_act(void)
{
    size_t m = 1001;
    float *a = hrand(m, -6, 6), *b = hrand(m, -3, 3), *g = hrand(m, -1, 1);
    float *da = DF(a, m), *db = DF(b, m), *dg = DF(g, m);
    float *out = hrand(m, 0, 1), *dout = dnan(m);
    C->swiglu_fwd(out, a, b, m);
    G->swiglu_fwd(dout, da, db, m);
    check("swiglu_fwd", dout, out, m, TOL_EW);
    float *g1 = hrand(m, -1, 1), *g2 = hrand(m, -1, 1), *dg1 = DF(g1, m), *dg2 = DF(g2, m);
    C->swiglu_bwd(g1, g2, g, a, b, m);
    G->swiglu_bwd(dg1, dg2, dg, da, db, m);
    check("swiglu_bwd dgate", dg1, g1, m, TOL_EW);
    check("swiglu_bwd dup", dg2, g2, m, TOL_EW);
    C->swiglu_bwd(NULL, g2, g, a, b, m);
    G->swiglu_bwd(NULL, dg2, dg, da, db, m);
    check("swiglu_bwd dup alone", dg2, g2, m, TOL_EW);
    /* written, not added: on the GPU into NaN, which a read would keep */
    float *s1 = hrand(m, -1, 1), *s2 = hrand(m, -1, 1), *ds1 = dnan(m), *ds2 = dnan(m);
    C->swiglu_bwd_set(s1, s2, g, a, b, m);
    G->swiglu_bwd_set(ds1, ds2, dg, da, db, m);
    check("swiglu_bwd_set dgate", ds1, s1, m, TOL_EW);
    check("swiglu_bwd_set dup", ds2, s2, m, TOL_EW);

    out = hrand(m, 0, 1), dout = dnan(m);
    C->gelu_fwd(out, a, m);
    G->gelu_fwd(dout, da, m);
    check("gelu_fwd", dout, out, m, TOL_EW);
    C->gelu_bwd(g1, g, a, m);
    G->gelu_bwd(dg1, dg, da, m);
    check("gelu_bwd", dg1, g1, m, TOL_EW);
    float *gs = host_alloc(m * sizeof(float)), *dgs = dnan(m);
    C->gelu_bwd_set(gs, g, a, m);
    G->gelu_bwd_set(dgs, dg, da, m);
    check("gelu_bwd_set", dgs, gs, m, TOL_EW);

    out = hrand(m, 0, 1), dout = dnan(m);
    C->silu_fwd(out, a, m);
    G->silu_fwd(dout, da, m);
    check("silu_fwd", dout, out, m, TOL_EW);
    C->silu_bwd(g1, g, a, m);
    G->silu_bwd(dg1, dg, da, m);
    check("silu_bwd", dg1, g1, m, TOL_EW);
}

/* ---- attention over a packing: splits given as (length, mode, new sample) */
typedef struct {
    int len, mode, new_sample;
} split_spec_t;

static void attn_case(const char *name, const split_spec_t *sp, int ns, int nh, int nkv, int d, int permute)
{
    int S = 0;
    for (int i = 0; i < ns; i++)
        S += sp[i].len;
    int32_t *start = host_alloc(sizeof(int32_t) * (ns + 1)), *first = host_alloc(sizeof(int32_t) * ns);
    uint8_t *mode = host_alloc(ns);
    int32_t *rop = host_alloc(sizeof(int32_t) * S);
    for (int i = 0, p = 0; i < ns; i++) {
        start[i] = p;
        mode[i] = (uint8_t)sp[i].mode;
        first[i] = i == 0 || sp[i].new_sample ? i : first[i - 1];
        p += sp[i].len;
    }
    start[ns] = S;
    /* storage order: a fixed shuffle of the positions */
    for (int p = 0; p < S; p++)
        rop[p] = p;
    if (permute)
        for (int p = S - 1; p > 0; p--) {
            int j = (int)((uniform() + 1.0f) * 0.5f * (p + 1)) % (p + 1);
            int t = rop[p];
            rop[p] = rop[j], rop[j] = t;
        }
    op_attn_t ha = {S, nh, nkv, d, 1.0f / sqrtf((float)d), ns, start, mode, first, permute ? rop : NULL};
    op_attn_t da = ha;
    da.split_start = dcopy(start, sizeof(int32_t) * (ns + 1));
    da.split_mode = dcopy(mode, ns);
    da.split_first = dcopy(first, sizeof(int32_t) * ns);
    da.row_of_pos = permute ? dcopy(rop, sizeof(int32_t) * S) : NULL;

    size_t nq = (size_t)S * nh * d, nk = (size_t)S * nkv * d;
    float *q = hrand(nq, -2, 2), *k = hrand(nk, -2, 2), *v = hrand(nk, -1, 1);
    float *dq_ = DF(q, nq), *dk_ = DF(k, nk), *dv_ = DF(v, nk);
    float *out = hrand(nq, 0, 1), *lse = hrand((size_t)S * nh, 0, 1);
    float *dout = dnan(nq), *dlse = dnan((size_t)S * nh);
    char what[160];
    C->attention_fwd(out, lse, q, k, v, &ha);
    G->attention_fwd(dout, dlse, dq_, dk_, dv_, &da);
    snprintf(what, sizeof what, "%s: attention_fwd out", name);
    check(what, dout, out, nq, tol_red);
    snprintf(what, sizeof what, "%s: attention_fwd lse", name);
    check(what, dlse, lse, (size_t)S * nh, tol_red);

    /* the backward from the CPU's own forward, so both see one out and lse */
    float *g = hrand(nq, -1, 1), *gq = hrand(nq, -1, 1), *gk = hrand(nk, -1, 1), *gv = hrand(nk, -1, 1);
    float *dg = DF(g, nq), *dgq = DF(gq, nq), *dgk = DF(gk, nk), *dgv = DF(gv, nk);
    float *dout_c = DF(out, nq), *dlse_c = DF(lse, (size_t)S * nh);
    C->attention_bwd(gq, gk, gv, g, out, lse, q, k, v, &ha);
    G->attention_bwd(dgq, dgk, dgv, dg, dout_c, dlse_c, dq_, dk_, dv_, &da);
    snprintf(what, sizeof what, "%s: attention_bwd dq", name);
    check(what, dgq, gq, nq, tol_red);
    snprintf(what, sizeof what, "%s: attention_bwd dk", name);
    check(what, dgk, gk, nk, tol_red);
    snprintf(what, sizeof what, "%s: attention_bwd dv", name);
    check(what, dgv, gv, nk, tol_red);
    /* NULL gradients: dv alone */
    C->attention_bwd(NULL, NULL, gv, g, out, lse, q, k, v, &ha);
    G->attention_bwd(NULL, NULL, dgv, dg, dout_c, dlse_c, dq_, dk_, dv_, &da);
    snprintf(what, sizeof what, "%s: attention_bwd dv alone", name);
    check(what, dgv, gv, nk, tol_red);
}

static void t_attention_causal(void)
{
    split_spec_t sp[] = {{77, OP_SPLIT_CAUSAL, 1}};
    attn_case("one causal split", sp, 1, 4, 4, 40, 0);
}

static void t_attention_packed(void)
{
    /* two samples: text, clean image (full), noised image, text; then text,
     * noised image, text; GQA 6:2 and permuted rows */
    split_spec_t sp[] = {{10, OP_SPLIT_CAUSAL, 1}, {17, OP_SPLIT_FULL, 0},   {13, OP_SPLIT_NOISE, 0},
                         {5, OP_SPLIT_CAUSAL, 0},  {20, OP_SPLIT_CAUSAL, 1}, {40, OP_SPLIT_NOISE, 0},
                         {3, OP_SPLIT_CAUSAL, 0}};
    attn_case("packed, GQA 6:2, permuted, d=64", sp, 7, 6, 2, 64, 1);
}

static void t_attention_wide(void)
{
    /* head_dim 128 as the model; a sample that opens with a full split, and
     * one-position splits */
    split_spec_t sp[] = {{1, OP_SPLIT_CAUSAL, 1}, {33, OP_SPLIT_FULL, 0}, {1, OP_SPLIT_CAUSAL, 0},
                         {50, OP_SPLIT_FULL, 1},  {1, OP_SPLIT_NOISE, 0}, {31, OP_SPLIT_CAUSAL, 0}};
    attn_case("d=128, GQA 4:1, permuted", sp, 6, 4, 1, 128, 1);
}

static void t_rows(void)
{
    int n = 23, c = 300, rows_in = 17, rows_out = 9;
    int32_t oi[23], ii[23];
    for (int r = 0; r < n; r++)
        oi[r] = (r * 7) % rows_out, ii[r] = (r * 5 + 3) % rows_in; /* oi repeats */
    int32_t *doi = dcopy(oi, sizeof oi), *dii = dcopy(ii, sizeof ii);
    float *in = hrand((size_t)rows_in * c, -1, 1), *din = DF(in, rows_in * c);
    float *out = hrand((size_t)rows_out * c, -1, 1), *dout = DF(out, rows_out * c);
    C->rows_add(out, oi, in, ii, n, c);
    G->rows_add(dout, doi, din, dii, n, c);
    check("rows_add with repeated destinations", dout, out, (size_t)rows_out * c, TOL_EW);
    /* copy: the gather (oi NULL) */
    float *g = hrand((size_t)n * c, 0, 1), *dg = dnan((size_t)n * c);
    C->rows_copy(g, NULL, in, ii, n, c);
    G->rows_copy(dg, NULL, din, dii, n, c);
    check("rows_copy gather", dg, g, (size_t)n * c, 0.0);
    /* copy: a scatter to distinct rows, identity source */
    int32_t perm[9];
    for (int r = 0; r < 9; r++)
        perm[r] = (r * 4) % 9;
    float *s = hrand((size_t)9 * c, -1, 1), *ds = DF(s, 9 * c);
    C->rows_copy(s, perm, in, NULL, 9, c);
    G->rows_copy(ds, dcopy(perm, sizeof perm), din, NULL, 9, c);
    check("rows_copy scatter", ds, s, (size_t)9 * c, 0.0);
}

/* V 301: the row kernel a float at a time; 304: four at a time */
static void classifier_case(int V)
{
    int n = 37, c = 24, chunk = 8;
    float *h = hrand((size_t)n * c, -1, 1), *w = hrand((size_t)V * c, -1, 1), *dl = hrand(n, 0, 1);
    int32_t lab[37];
    for (int r = 0; r < n; r++)
        lab[r] = r % 9 == 4 ? -100 : r % 11 == 6 ? V : (r * 53) % V; /* some outside [0, V) */
    float *dh_ = DF(h, n * c), *dw_ = DF(w, V * c), *ddl = DF(dl, n);
    int32_t *dlab = dcopy(lab, sizeof lab);
    float *scr = host_alloc(op_ce_scratch_floats(chunk, V) * sizeof(float));
    float *dscr = dev_alloc(op_ce_scratch_floats(chunk, V) * sizeof(float));
    float *loss = hrand(n, 0, 1), *dloss = dnan(n);
    float *gh = hrand((size_t)n * c, -1, 1), *gw = hrand((size_t)V * c, -1, 1);
    float *dgh = DF(gh, n * c), *dgw = DF(gw, V * c);
    C->classifier_ce(loss, gh, gw, h, w, lab, dl, n, c, V, scr, chunk);
    G->classifier_ce(dloss, dgh, dgw, dh_, dw_, dlab, ddl, n, c, V, dscr, chunk);
    check("classifier_ce loss", dloss, loss, n, tol_red);
    check("classifier_ce dh", dgh, gh, (size_t)n * c, tol_red);
    check("classifier_ce dw", dgw, gw, (size_t)V * c, tol_red);
    /* dloss NULL: the loss only, gradients untouched */
    loss = hrand(n, 0, 1), dloss = dnan(n);
    C->classifier_ce(loss, gh, gw, h, w, lab, NULL, n, c, V, scr, 5);
    G->classifier_ce(dloss, dgh, dgw, dh_, dw_, dlab, NULL, n, c, V, dscr, 5);
    check("classifier_ce loss only", dloss, loss, n, tol_red);
    check("classifier_ce dh untouched", dgh, gh, (size_t)n * c, tol_red);
    /* one chunk for all rows (chunk 0), dh alone */
    C->classifier_ce(NULL, gh, NULL, h, w, lab, dl, n, c, V, host_alloc((size_t)n * V * 4), 0);
    G->classifier_ce(NULL, dgh, NULL, dh_, dw_, dlab, ddl, n, c, V, dev_alloc((size_t)n * V * 4), 0);
    check("classifier_ce dh alone, one chunk", dgh, gh, (size_t)n * c, tol_red);
}

static void t_classifier(void)
{
    classifier_case(301);
    classifier_case(304);
}

static void t_loss(void)
{
    int n = 13, d = 67;
    size_t m = (size_t)n * d;
    float *p = hrand(m, -1, 1), *t = hrand(m, -1, 1), *dl = hrand(n, 0, 2);
    float *loss = hrand(n, 0, 1), *g = hrand(m, -1, 1);
    float *dloss = dnan(n), *dg = DF(g, m);
    C->mse(loss, g, p, t, dl, n, d);
    G->mse(dloss, dg, DF(p, m), DF(t, m), DF(dl, n), n, d);
    check("mse loss", dloss, loss, n, tol_red);
    check("mse dpred", dg, g, m, TOL_EW);

    float *x0 = hrand(m, -1, 1), *eps = hrand(m, -1, 1), *tt = hrand(n, 0, 1);
    float *xt = hrand(m, 0, 1), *tg = hrand(m, 0, 1), *dxt = dnan(m), *dtg = dnan(m);
    C->flow_noise(xt, tg, x0, eps, tt, n, d);
    G->flow_noise(dxt, dtg, DF(x0, m), DF(eps, m), DF(tt, n), n, d);
    check("flow_noise xt", dxt, xt, m, TOL_EW);
    check("flow_noise target", dtg, tg, m, TOL_EW);

    int half = 128;
    float *ts = hrand(n, 0, 1), *f = hrand((size_t)n * 2 * half, 0, 1), *df = dnan((size_t)n * 2 * half);
    ts[0] = 0.0f, ts[1] = 1.0f;
    C->timestep_freq(f, ts, n, half);
    G->timestep_freq(df, DF(ts, n), n, half);
    check("timestep_freq", df, f, (size_t)n * 2 * half, TOL_EW);
}

/* cfg_euler in every renorm mode, with and without image guidance and
 * with text guidance off, rows of 64 (a generated latent) and 40; clamping
 * at renorm_min both engaged (0.9) and not (0) */
static void t_cfg_euler(void)
{
    static const int dims[2] = {64, 40};
    static const float mins[2] = {0.0f, 0.9f};
    for (int di = 0; di < 2; di++)
        for (int mode = 0; mode < 3; mode++)
            for (int img = 0; img < 2; img++)
                for (int mi = 0; mi < 2; mi++)
                    for (int txt = 0; txt < 2; txt++) {
                        int n = 300, d = dims[di];
                        size_t m = (size_t)n * d;
                        float s_txt = txt ? 4.0f : 1.0f, s_img = 2.0f, dt = 0.037f;
                        float *vc = hrand(m, -1, 1), *vt = hrand(m, -1, 1), *vi = hrand(m, -1, 1);
                        float *x = hrand(m, -1, 1), *v = hrand(m, 0, 1);
                        float *dx = DF(x, m), *dv = dnan(m), *dv2 = dnan(m);
                        const float *dvc = DF(vc, m), *dvt = DF(vt, m), *dvi = img ? DF(vi, m) : NULL;
                        C->cfg_euler(x, v, vc, vt, img ? vi : NULL, n, d, s_txt, s_img, mode, mins[mi], dt);
                        G->cfg_euler(dx, dv, dvc, dvt, dvi, n, d, s_txt, s_img, mode, mins[mi], dt);
                        G->cfg_euler(NULL, dv2, dvc, dvt, dvi, n, d, s_txt, s_img, mode, mins[mi], dt);
                        char what[128];
                        snprintf(what, sizeof what, "cfg_euler dim %d renorm %d image %d min %.1f text %d: ", d, mode,
                                 img, mins[mi], txt);
                        size_t k = strlen(what);
                        snprintf(what + k, sizeof what - k, "v");
                        check(what, dv, v, m, TOL_EW);
                        snprintf(what + k, sizeof what - k, "x");
                        check(what, dx, x, m, TOL_EW);
                        snprintf(what + k, sizeof what - k, "v without x");
                        check(what, dv2, v, m, TOL_EW);
                        release();
                    }
}

static void t_patch(void)
{
    int H = 12, W = 18, Cc = 3, p = 3;
    size_t npx = (size_t)H * W * Cc, ntok = (size_t)(H / p) * (W / p) * p * p * Cc;
    uint8_t *img = host_alloc(npx);
    for (size_t i = 0; i < npx; i++)
        img[i] = (uint8_t)(i * 37 + 11);
    float *tok = hrand(ntok, 0, 1), *dtok = dnan(ntok);
    C->patchify_u8(tok, img, H, W, Cc, p);
    G->patchify_u8(dtok, dcopy(img, npx), H, W, Cc, p);
    check("patchify_u8", dtok, tok, ntok, 0.0);

    int Cz = 5, Hz = 8, Wz = 6, pz = 2;
    size_t nz = (size_t)Cz * Hz * Wz;
    float *z = hrand(nz, -1, 1), *t2 = hrand(nz, 0, 1), *dt2 = dnan(nz);
    C->patchify_chw(t2, z, Cz, Hz, Wz, pz);
    G->patchify_chw(dt2, DF(z, nz), Cz, Hz, Wz, pz);
    check("patchify_chw", dt2, t2, nz, 0.0);
    float *z2 = hrand(nz, 0, 1), *dz2 = dnan(nz);
    C->unpatchify_chw(z2, t2, Cz, Hz, Wz, pz);
    G->unpatchify_chw(dz2, DF(t2, nz), Cz, Hz, Wz, pz);
    check("unpatchify_chw", dz2, z2, nz, 0.0);

    /* tokens to bytes, with values past the clamp and a NaN */
    float *tk = hrand(ntok, -1.3f, 1.3f);
    tk[5] = NAN;
    uint8_t *out = host_alloc(npx), *dout = dcopy(out, npx);
    C->unpatchify_u8(out, tk, H, W, Cc, p);
    G->unpatchify_u8(dout, DF(tk, ntok), H, W, Cc, p);
    check_bytes("unpatchify_u8", dout, out, npx);
}

static void conv_case(const char *name, int n, int ci, int h, int wd, int co, int kh, int kw, int stride, int pt,
                      int pl, int pb, int pr, int bias)
{
    int ho = (h + pt + pb - kh) / stride + 1, wo = (wd + pl + pr - kw) / stride + 1;
    size_t nin = (size_t)n * ci * h * wd, nw = (size_t)co * ci * kh * kw, nout = (size_t)n * co * ho * wo;
    float *x = hrand(nin, -1, 1), *w = hrand(nw, -1, 1), *b = hrand(co, -1, 1);
    float *dx = DF(x, nin), *dw_ = DF(w, nw), *db_ = DF(b, co);
    float *out = hrand(nout, 0, 1), *dout = dnan(nout);
    char what[160];
    C->conv2d_fwd(out, x, w, bias ? b : NULL, n, ci, h, wd, co, kh, kw, stride, pt, pl, pb, pr);
    G->conv2d_fwd(dout, dx, dw_, bias ? db_ : NULL, n, ci, h, wd, co, kh, kw, stride, pt, pl, pb, pr);
    snprintf(what, sizeof what, "%s: conv2d_fwd", name);
    check(what, dout, out, nout, tol_red);
    float *g = hrand(nout, -1, 1), *gx = hrand(nin, -1, 1), *gw = hrand(nw, -1, 1), *gb = hrand(co, -1, 1);
    float *dg = DF(g, nout), *dgx = DF(gx, nin), *dgw = DF(gw, nw), *dgb = DF(gb, co);
    C->conv2d_bwd(gx, gw, gb, g, x, w, n, ci, h, wd, co, kh, kw, stride, pt, pl, pb, pr);
    G->conv2d_bwd(dgx, dgw, dgb, dg, dx, dw_, n, ci, h, wd, co, kh, kw, stride, pt, pl, pb, pr);
    snprintf(what, sizeof what, "%s: conv2d_bwd din", name);
    check(what, dgx, gx, nin, tol_red);
    snprintf(what, sizeof what, "%s: conv2d_bwd dw", name);
    check(what, dgw, gw, nw, tol_red);
    snprintf(what, sizeof what, "%s: conv2d_bwd db", name);
    check(what, dgb, gb, co, tol_red);
}

static void t_conv(void)
{
    conv_case("3x3 pad 1", 2, 3, 9, 11, 5, 3, 3, 1, 1, 1, 1, 1, 1);
    conv_case("3x3 stride 2, pad right/bottom (Downsample)", 2, 4, 10, 7, 6, 3, 3, 2, 0, 0, 1, 1, 1);
    conv_case("1x1 without bias", 3, 7, 5, 6, 4, 1, 1, 1, 0, 0, 0, 0, 0);
    /* pixels a multiple of 4: bf16 mode's tiled conversions and padding ring */
    conv_case("3x3 pad 1 at 16x12", 2, 8, 16, 12, 6, 3, 3, 1, 1, 1, 1, 1, 1);
    conv_case("3x3 stride 2, pad right/bottom at 16x12", 2, 8, 16, 12, 6, 3, 3, 2, 0, 0, 1, 1, 1);
}

/* the fused GroupNorm + swish + convolution + residual against the CPU's
 * (itself the bits of the ops in turn, tests/unit/test_ops): padded input
 * channels (12 -> 16), 3 output channels, no statistics kept, no bias */
static void gn_conv_case(int n, int ci, int groups, int h, int wd, int co, int k, int act, int bias, int res, int stats)
{
    size_t hw = (size_t)h * wd, nin = (size_t)n * ci * hw, nout = (size_t)n * co * hw, ng = (size_t)n * groups;
    float *x = hrand(nin, -1, 3), *gw = hrand(ci, 0.5f, 1.5f), *gb = hrand(ci, -1, 1);
    float *w = hrand((size_t)co * ci * k * k, -0.2f, 0.2f), *b = hrand(co, -1, 1), *r = hrand(nout, -2, 2);
    float *out = hrand(nout, 0, 1), *mu = hrand(ng, 0, 1), *rs = hrand(ng, 0, 1);
    float *dout = dnan(nout), *dmu = dnan(ng), *drs = dnan(ng);
    C->gn_conv2d_fwd(out, mu, rs, x, gw, gb, groups, 1e-6f, act, w, bias ? b : NULL, res ? r : NULL, n, ci, h, wd, co,
                     k);
    G->gn_conv2d_fwd(dout, stats ? dmu : NULL, stats ? drs : NULL, DF(x, nin), DF(gw, ci), DF(gb, ci), groups, 1e-6f,
                     act, DF(w, (size_t)co * ci * k * k), bias ? DF(b, co) : NULL, res ? DF(r, nout) : NULL, n, ci, h,
                     wd, co, k);
    char what[160];
    snprintf(what, sizeof what, "gn_conv2d_fwd n=%d ci=%d groups=%d %dx%d co=%d k=%d act=%d bias=%d res=%d", n, ci,
             groups, h, wd, co, k, act, bias, res);
    check(what, dout, out, nout, tol_red);
    if (stats) {
        check("gn_conv2d_fwd mean", dmu, mu, ng, TOL_RED);
        check("gn_conv2d_fwd rstd", drs, rs, ng, TOL_RED);
    }
}

static void t_gn_conv(void)
{
    gn_conv_case(2, 64, 32, 13, 17, 48, 3, 1, 1, 1, 1);
    gn_conv_case(3, 12, 4, 9, 10, 3, 3, 1, 0, 0, 0);
    gn_conv_case(1, 128, 32, 40, 24, 128, 3, 0, 1, 1, 1);
    gn_conv_case(2, 16, 4, 6, 5, 8, 1, 1, 1, 1, 1);
    /* pixels a multiple of 4 (the tiled conversions), an odd output width */
    gn_conv_case(2, 32, 8, 16, 12, 6, 3, 1, 1, 1, 1);
    gn_conv_case(1, 96, 32, 8, 8, 3, 3, 1, 1, 0, 1);
}

/* groups of 140 values, of 16,384 (many partial-sum blocks a group) and of
 * 2,046 over an odd hw (the scalar path), values off zero */
static void gn_case(int n, int c, int hw, int groups)
{
    size_t m = (size_t)n * c * hw;
    float *x = hrand(m, -1, 3), *w = hrand(c, 0.5f, 1.5f), *b = hrand(c, -1, 1);
    float *out = hrand(m, 0, 1), *mu = hrand((size_t)n * groups, 0, 1), *rs = hrand((size_t)n * groups, 0, 1);
    float *dx = DF(x, m), *dw_ = DF(w, c), *db_ = DF(b, c);
    float *dout = dnan(m), *dmu = dnan((size_t)n * groups), *drs = dnan((size_t)n * groups);
    C->groupnorm_fwd(out, mu, rs, x, w, b, n, c, hw, groups, 1e-6f);
    G->groupnorm_fwd(dout, dmu, drs, dx, dw_, db_, n, c, hw, groups, 1e-6f);
    check("groupnorm_fwd out", dout, out, m, tol_red);
    check("groupnorm_fwd mean", dmu, mu, (size_t)n * groups, tol_red);
    check("groupnorm_fwd rstd", drs, rs, (size_t)n * groups, tol_red);
    float *g = hrand(m, -1, 1), *gx = hrand(m, -1, 1), *gw = hrand(c, -1, 1), *gb = hrand(c, -1, 1);
    float *dgx = DF(gx, m), *dgw = DF(gw, c), *dgb = DF(gb, c);
    C->groupnorm_bwd(gx, gw, gb, g, x, w, mu, rs, n, c, hw, groups);
    G->groupnorm_bwd(dgx, dgw, dgb, DF(g, m), dx, dw_, DF(mu, (size_t)n * groups), DF(rs, (size_t)n * groups), n, c, hw,
                     groups);
    check("groupnorm_bwd din", dgx, gx, m, tol_red);
    check("groupnorm_bwd dw", dgw, gw, c, tol_red);
    check("groupnorm_bwd db", dgb, gb, c, tol_red);
}

static void t_groupnorm(void)
{
    gn_case(2, 12, 35, 4);
    gn_case(2, 128, 4096, 32);
    gn_case(1, 64, 1023, 32);
}

static void t_optim(void)
{
    size_t n = 5003;
    float *p = hrand(n, -1, 1), *g = hrand(n, -1, 1), *m = hrand(n, -0.1f, 0.1f), *v = hrand(n, 0, 0.01f);
    float *dp = DF(p, n), *dg = DF(g, n), *dm = DF(m, n), *dv = DF(v, n);
    for (int step = 1; step <= 3; step++) {
        C->adamw(p, g, m, v, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step, 1.0f, NULL, 0.0f);
        G->adamw(dp, dg, dm, dv, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step, 1.0f, NULL, 0.0f);
    }
    check("adamw p", dp, p, n, TOL_EW);
    check("adamw m", dm, m, n, TOL_EW);
    check("adamw v", dv, v, n, TOL_EW);
    /* the clip's coefficient and the EMA in the same pass */
    {
        float *e0 = hrand(n, -1, 1), *de0 = DF(e0, n);
        for (int step = 4; step <= 5; step++) {
            C->adamw(p, g, m, v, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step, 0.43f, e0, 0.99f);
            G->adamw(dp, dg, dm, dv, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step, 0.43f, de0, 0.99f);
        }
        check("adamw scaled p", dp, p, n, TOL_EW);
        check("adamw scaled m", dm, m, n, TOL_EW);
        check("adamw scaled v", dv, v, n, TOL_EW);
        check("adamw fused ema", de0, e0, n, TOL_EW);
        check("adamw leaves g", dg, g, n, 0.0);
    }
    /* four at a time where every array is 16-byte aligned (above: n = 5003,
     * 1250 fours and a tail of 3); one at a time where they are not aligned
     * alike, as a span at an odd offset can be */
    for (int k = 1; k <= 2; k++) {
        size_t o1 = (size_t)k, o2 = (size_t)(4 * k - 1), cnt = 1001;
        C->adamw(p + o1, g + o1, m + o2, v + o2, cnt, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 6, 0.7f, NULL, 0.0f);
        G->adamw(dp + o1, dg + o1, dm + o2, dv + o2, cnt, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 6, 0.7f, NULL, 0.0f);
    }
    check("adamw unaligned p", dp, p, n, TOL_EW);
    check("adamw unaligned m", dm, m, n, TOL_EW);
    check("adamw unaligned v", dv, v, n, TOL_EW);

    float *e = hrand(n, -1, 1), *de = DF(e, n);
    C->ema(e, p, n, 0.999f);
    G->ema(de, dp, n, 0.999f);
    check("ema", de, e, n, TOL_EW);

    double sc = C->sumsq(g, n), sg = G->sumsq(dg, n);
    if (!(fabs(sg - sc) <= 1e-9 * sc))
        fail("sumsq: %.17g, cpu %.17g", sg, sc);
    sc = C->sumsq(g + 1, n - 1), sg = G->sumsq(dg + 1, n - 1); /* not 16-byte aligned: one at a time */
    if (!(fabs(sg - sc) <= 1e-9 * sc))
        fail("sumsq unaligned: %.17g, cpu %.17g", sg, sc);
    if (G->sumsq(dg, 0) != 0.0)
        fail("sumsq of nothing is not 0");

    C->scale(p, 0.37f, n);
    G->scale(dp, 0.37f, n);
    check("scale", dp, p, n, TOL_EW);
    C->axpy(p, -1.7f, g, n);
    G->axpy(dp, -1.7f, dg, n);
    check("axpy", dp, p, n, TOL_EW);
}

static void t_layout(void)
{
    int np = 5, h = 7, w = 9;
    size_t nin = (size_t)np * h * w;
    float *in = hrand(nin, -1, 1), *out = hrand(nin * 4, 0, 1), *dout = dnan(nin * 4), *din = DF(in, nin);
    C->upsample2x(out, in, np, h, w);
    G->upsample2x(dout, din, np, h, w);
    check("upsample2x", dout, out, nin * 4, 0.0);

    float *a = hcopy(in, nin), *da = DF(in, nin);
    C->affine(a, a, 1.7f, -0.3f, nin); /* in place */
    G->affine(da, da, 1.7f, -0.3f, nin);
    check("affine in place", da, a, nin, TOL_EW);

    float *mu = hrand(nin, -1, 1), *lv = hrand(nin, -4, 2), *eps = hrand(nin, -2, 2);
    float *z = hrand(nin, 0, 1), *dz = dnan(nin);
    C->gauss_sample(z, mu, lv, eps, nin);
    G->gauss_sample(dz, DF(mu, nin), DF(lv, nin), DF(eps, nin), nin);
    check("gauss_sample", dz, z, nin, TOL_EW);
}

/* attention with no mask (op_attn_t.dense): the autoencoder's mid-block (one
 * head of 512 dims) and GQA heads, forward only, in both precisions, by the
 * fused kernels (dense 0: the fp32 kernel at 512 dims) and by the dense
 * route through cuBLAS (dense 1), whose query chunks a small
 * BAGEL_ATTN_DENSE_MIB makes many */
static void dense_case(int S, int nh, int nkv, int d, const char *mib)
{
    int32_t start[2] = {0, S}, first[1] = {0};
    uint8_t mode[1] = {OP_SPLIT_FULL};
    op_attn_t ha = {S, nh, nkv, d, 1.0f / sqrtf((float)d), 1, start, mode, first, NULL, 0};
    op_attn_t da = ha;
    da.split_start = dcopy(start, sizeof start);
    da.split_mode = dcopy(mode, sizeof mode);
    da.split_first = dcopy(first, sizeof first);
    size_t nq = (size_t)S * nh * d, nk = (size_t)S * nkv * d;
    float *q = hrand(nq, -2, 2), *k = hrand(nk, -2, 2), *v = hrand(nk, -1, 1);
    float *out = hrand(nq, 0, 1), *lse = hrand((size_t)S * nh, 0, 1);
    C->attention_fwd(out, lse, q, k, v, &ha);
    if (mib)
        setenv("BAGEL_ATTN_DENSE_MIB", mib, 1);
    for (int dense = d > 256 ? 0 : 1; dense < 2; dense++)
        for (int bf = 0; bf < 2; bf++) {
            cuda_ops_set_bf16(bf);
            da.dense = dense;
            float *dout = dnan(nq), *dlse = dnan((size_t)S * nh);
            G->attention_fwd(dout, dlse, DF(q, nq), DF(k, nk), DF(v, nk), &da);
            /* the fp32 kernel runs the 512-dim head in bf16 mode too */
            float tol = bf && (dense || d <= 128) ? TOL_BF16 : TOL_RED;
            char what[128];
            snprintf(what, sizeof what, "S=%d d=%d %d:%d heads%s%s out", S, d, nh, nkv, dense ? " dense" : "",
                     bf ? " bf16" : "");
            check(what, dout, out, nq, tol);
            snprintf(what, sizeof what, "S=%d d=%d %d:%d heads%s%s lse", S, d, nh, nkv, dense ? " dense" : "",
                     bf ? " bf16" : "");
            check(what, dlse, lse, (size_t)S * nh, tol);
        }
    unsetenv("BAGEL_ATTN_DENSE_MIB");
    cuda_ops_set_bf16(0);
}

static void t_attention_wide_head(void)
{
    dense_case(70, 1, 1, 512, NULL);
    dense_case(1100, 1, 1, 512, "1"); /* 1 MiB: query chunks of 158 rows (bf16), 238 (fp32) */
    dense_case(333, 14, 2, 64, "1");    /* 74 rows (bf16) */
    dense_case(257, 8, 8, 128, NULL);
}

/* ---- bf16 math: the products and attention on the tensor cores */

static void with_bf16(void (*fn)(void))
{
    cuda_ops_set_bf16(1);
    tol_red = TOL_BF16;
    fn();
    G->sync();
    cuda_ops_set_bf16(0);
    tol_red = TOL_RED;
}

static void t_bf16_linear(void) { with_bf16(t_linear); }

/* ---- parameter gradients written, not added (op_table_t.grad_write,
 * model_grad_clear): every op that produces them and the model's backward,
 * into NaN-filled gradients against zeroed ones (tests/support/gradwrite.c),
 * fp32 and bf16. Other product kernels may serve beta 0 than beta 1, and
 * the attention backward adds with atomics: within 1e-5 (ops) and 1e-4
 * (model) of the largest gradient, not bit for bit. */
static void t_grad_write(void)
{
    char m2[MSG_LEN];
    for (int bf = 0; bf < 2; bf++) {
        cuda_ops_set_bf16(bf);
        if (gradwrite_ops(G, 1e-5, m2, sizeof m2))
            fail("%s%s", bf ? "bf16: " : "", m2);
        if (gradwrite_model(G, 1e-4, m2, sizeof m2))
            fail("%s%s", bf ? "bf16: " : "", m2);
    }
    cuda_ops_set_bf16(0);
}

/* linear3_fwd and linear3_bwd (q, k and v of one input): in bf16 against
 * CUDA's own linear_fwd, linear_bwd_set and linear_bwd in turn, bit for bit
 * (the same products of the same bf16 operands, the input rounded once
 * instead of at each); against the CPU's within bf16's tolerance; in fp32
 * (the ops in turn) against the CPU within fp32's. The ViT's widths and the
 * LLM's q/k/v at 0.5B, one bias NULL. */
static void t_linear3(void)
{
    static const int shapes[][4] = {{300, 1152, 1152, 1152}, {129, 896, 896, 128}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int n = shapes[s][0], in = shapes[s][1], d[3] = {shapes[s][2], shapes[s][3], shapes[s][3]};
        float *x = hrand((size_t)n * in, -1, 1), *dx = DF(x, (size_t)n * in);
        op_lin_t hl[3], gl[3], gr[3];
        float *hdin = hrand((size_t)n * in, -1, 1), *gw0[3], *gb0[3]; /* the gradients' starting values */
        for (int j = 0; j < 3; j++) {
            size_t nw = (size_t)d[j] * in, no = (size_t)n * d[j];
            float *w = hrand(nw, -0.5, 0.5), *b = j == 1 ? NULL : hrand(d[j], -1, 1), *dout = hrand(no, -1, 1);
            float *gw = gw0[j] = hrand(nw, -1, 1), *gb = gb0[j] = hrand(d[j], -1, 1);
            hl[j] = (op_lin_t){.w = w, .b = b, .dim = d[j], .out = host_alloc(no * 4), .dout = dout,
                               .dw = host_alloc(nw * 4), .db = host_alloc((size_t)d[j] * 4)};
            memcpy(hl[j].dw, gw, nw * 4), memcpy(hl[j].db, gb, (size_t)d[j] * 4);
            gl[j] = (op_lin_t){.w = DF(w, nw), .b = b ? DF(b, d[j]) : NULL, .dim = d[j], .out = dnan(no),
                               .dout = DF(dout, no), .dw = DF(gw, nw), .db = DF(gb, d[j])};
            gr[j] = gl[j];
            gr[j].out = dnan(no), gr[j].dw = DF(gw, nw), gr[j].db = DF(gb, d[j]);
        }
        C->linear3_fwd(hl, x, n, in);
        C->linear3_bwd(hdin, hl, x, n, in, 1);
        for (int bf = 1; bf >= 0; bf--) {
            float *din = dnan((size_t)n * in), *dref = dnan((size_t)n * in);
            for (int j = 0; j < 3; j++) { /* each pass adds to the same starting gradients */
                size_t nw = (size_t)d[j] * in;
                G->upload(gl[j].dw, gw0[j], nw * 4), G->upload(gr[j].dw, gw0[j], nw * 4);
                G->upload(gl[j].db, gb0[j], (size_t)d[j] * 4), G->upload(gr[j].db, gb0[j], (size_t)d[j] * 4);
            }
            cuda_ops_set_bf16(bf);
            G->linear3_fwd(gl, dx, n, in);
            G->linear3_bwd(din, gl, dx, n, in, 1);
            for (int j = 0; j < 3; j++)
                G->linear_fwd(gr[j].out, dx, gr[j].w, gr[j].b, n, in, d[j]);
            G->linear_bwd_set(dref, gr[0].dw, gr[0].db, gr[0].dout, dx, gr[0].w, n, in, d[0]);
            G->linear_bwd(dref, gr[1].dw, gr[1].db, gr[1].dout, dx, gr[1].w, n, in, d[1]);
            G->linear_bwd(dref, gr[2].dw, gr[2].db, gr[2].dout, dx, gr[2].w, n, in, d[2]);
            cuda_ops_set_bf16(0);
            double tol = bf ? TOL_BF16 : TOL_RED;
            char what[96];
            for (int j = 0; j < 3; j++) {
                size_t no = (size_t)n * d[j], nw = (size_t)d[j] * in;
                float *h = host_alloc(no * 4);
                if (bf) { /* the ops in turn on CUDA: the same bits */
                    G->download(h, gr[j].out, no * 4);
                    snprintf(what, sizeof what, "%dx%d linear3_fwd[%d] against linear_fwd", n, in, j);
                    check(what, gl[j].out, h, no, 0.0);
                    float *hw = host_alloc(nw * 4);
                    G->download(hw, gr[j].dw, nw * 4);
                    snprintf(what, sizeof what, "%dx%d linear3_bwd dw[%d] against linear_bwd", n, in, j);
                    check(what, gl[j].dw, hw, nw, 0.0);
                }
                snprintf(what, sizeof what, "%dx%d %s linear3_fwd[%d] against the cpu", n, in, bf ? "bf16" : "fp32", j);
                check(what, gl[j].out, hl[j].out, no, tol);
                snprintf(what, sizeof what, "%dx%d %s linear3_bwd dw[%d] against the cpu", n, in, bf ? "bf16" : "fp32",
                         j);
                check(what, gl[j].dw, hl[j].dw, nw, tol);
                snprintf(what, sizeof what, "%dx%d %s linear3_bwd db[%d] against the cpu", n, in, bf ? "bf16" : "fp32",
                         j);
                check(what, gl[j].db, hl[j].db, (size_t)d[j], TOL_RED);
            }
            if (bf) {
                float *h = host_alloc((size_t)n * in * 4);
                G->download(h, dref, (size_t)n * in * 4);
                snprintf(what, sizeof what, "%dx%d linear3_bwd din against the ops in turn", n, in);
                check(what, din, h, (size_t)n * in, 0.0);
            }
            snprintf(what, sizeof what, "%dx%d %s linear3_bwd din against the cpu", n, in, bf ? "bf16" : "fp32");
            check(what, din, hdin, (size_t)n * in, tol);
        }
    }
}

/* bf16 linear layers add their bias in cuBLASLt's epilogue: against the
 * bias written first for the product to add onto (cuda_gemm_lt_set(0)),
 * the same bf16 operands and fp32 sums in another order, so within fp32's
 * rounding; and against the CPU within bf16's. A bias that is not 16-byte
 * aligned (one float in) takes the second way; the ViT's, the LLM's k/v and
 * an odd shape. */
static void t_bf16_linear_bias_epilogue(void)
{
    static const int shapes[][3] = {{300, 1152, 1152}, {129, 896, 128}, {37, 45, 29}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int n = shapes[s][0], i = shapes[s][1], o = shapes[s][2];
        float *x = hrand((size_t)n * i, -1, 1), *w = hrand((size_t)o * i, -1, 1), *b = hrand((size_t)o + 1, -1, 1);
        float *dx = DF(x, (size_t)n * i), *dw_ = DF(w, (size_t)o * i), *db_ = DF(b, o + 1);
        for (int off = 0; off < 2; off++) {
            float *cpu = host_alloc((size_t)n * o * sizeof(float)), *ref = host_alloc((size_t)n * o * sizeof(float));
            float *dref = dnan((size_t)n * o), *dgot = dnan((size_t)n * o);
            C->linear_fwd(cpu, x, w, b + off, n, i, o);
            cuda_ops_set_bf16(1);
            cuda_gemm_lt_set(0);
            G->linear_fwd(dref, dx, dw_, db_ + off, n, i, o);
            cuda_gemm_lt_set(1);
            G->linear_fwd(dgot, dx, dw_, db_ + off, n, i, o);
            cuda_ops_set_bf16(0);
            G->download(ref, dref, (size_t)n * o * sizeof(float));
            char what[96];
            snprintf(what, sizeof what, "%dx%d->%d, bias %s: epilogue against bias first", n, i, o,
                     off ? "4-byte aligned" : "aligned");
            check(what, dgot, ref, (size_t)n * o, 1e-6);
            snprintf(what, sizeof what, "%dx%d->%d, bias %s: epilogue against the cpu", n, i, o,
                     off ? "4-byte aligned" : "aligned");
            check(what, dgot, cpu, (size_t)n * o, TOL_BF16);
        }
    }
}
static void t_bf16_classifier(void) { with_bf16(t_classifier); }
/* an image's convolution does not depend on its batch: 3 images at once
 * equal each image alone, byte for byte (the tensor-core math of bf16 mode
 * runs one image a call for this), at the autoencoder's widths */
static void conv_batch_invariant(void)
{
    int n = 3, ci = 128, h = 24, w = 20, co = 128;
    size_t xs = (size_t)ci * h * w, ys = (size_t)co * h * w;
    float *x = hrand(n * xs, -1, 1), *wt = hrand((size_t)co * ci * 9, -0.1f, 0.1f), *b = hrand(co, -1, 1);
    float *dx = DF(x, n * xs), *dw_ = DF(wt, (size_t)co * ci * 9), *db_ = DF(b, co);
    float *all = dnan(n * ys), *one = dnan(n * ys);
    G->conv2d_fwd(all, dx, dw_, db_, n, ci, h, w, co, 3, 3, 1, 1, 1, 1, 1);
    for (int i = 0; i < n; i++)
        G->conv2d_fwd(one + i * ys, dx + i * xs, dw_, db_, 1, ci, h, w, co, 3, 3, 1, 1, 1, 1, 1);
    float *ha = host_alloc(n * ys * 4), *ho = host_alloc(n * ys * 4);
    G->download(ha, all, n * ys * 4);
    G->download(ho, one, n * ys * 4);
    size_t diff = 0;
    for (size_t i = 0; i < n * ys; i++)
        diff += memcmp(&ha[i], &ho[i], 4) != 0;
    if (diff)
        fail("conv2d_fwd: %zu of %zu outputs of a batch of 3 differ from those of each image alone", diff, n * ys);
}

static void t_bf16_conv(void)
{
    with_bf16(t_conv);
    with_bf16(t_gn_conv);
    with_bf16(conv_batch_invariant);
}
static void t_bf16_attention_fixed(void)
{
    with_bf16(t_attention_packed);
    with_bf16(t_attention_wide);
}

/* random packings: 1 to 5 samples of 1 to 4 splits, lengths from 1 to 300
 * (ragged tiles everywhere, whole tiles inside long splits), every mode, GQA
 * or not, permuted rows or not, at each head dim the kernels have (72 runs
 * padded to 80, 40 and 48 to 48) */
static void attn_random(void)
{
    static const int dims[] = {64, 128, 72, 48, 40, 63, 125}; /* odd ones: rows not 8-byte aligned */
    for (int c = 0; c < 10; c++) {
        split_spec_t sp[20];
        int ns = 0, n_samples = 1 + (int)((uniform() + 1.0f) * 2.5f) % 5;
        for (int smp = 0; smp < n_samples; smp++) {
            int nsp = 1 + (int)((uniform() + 1.0f) * 2.0f) % 4;
            for (int j = 0; j < nsp && ns < 20; j++) {
                int len = 1 + (int)((uniform() + 1.0f) * 150.0f) % 300;
                int mode = (int)((uniform() + 1.0f) * 1.5f) % 3;
                sp[ns++] = (split_spec_t){len, mode, j == 0};
            }
        }
        int d = dims[c % 7], nkv = 1 + c % 2, nh = nkv * (1 + c % 3);
        char name[96];
        snprintf(name, sizeof name, "random packing %d (%d splits, d=%d, %d:%d heads)", c, ns, d, nh, nkv);
        attn_case(name, sp, ns, nh, nkv, d, c % 3 != 0);
    }
}

static void t_bf16_attention_random(void) { with_bf16(attn_random); }

/* one long packing as the recipe's: 2100 positions in three samples, so that
 * the unmasked-tile path and causal fronts far from the diagonal run */
static void attn_long(void)
{
    split_spec_t sp[] = {{60, OP_SPLIT_CAUSAL, 1}, {1026, OP_SPLIT_NOISE, 0}, {731, OP_SPLIT_FULL, 1},
                         {40, OP_SPLIT_CAUSAL, 0}, {250, OP_SPLIT_CAUSAL, 0}};
    attn_case("long packing, d=64, GQA 14:2", sp, 5, 14, 2, 64, 1);
}

static void t_bf16_attention_long(void) { with_bf16(attn_long); }

/* sequences shorter than one block and around the tile sizes (64 and 128
 * positions), where most of a tile is padding: one causal split, one full
 * or noise split, and two samples, at the head dims of the wgmma kernels
 * (72 runs padded to 80) */
static void attn_tiny(void)
{
    static const int lens[] = {1, 3, 63, 64, 65, 127, 128, 129, 200}, dims[] = {64, 72, 128};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
        for (int di = 0; di < 3; di++) {
            int S = lens[i], h = S / 2, d = dims[di];
            char name[96];
            split_spec_t one[] = {{S, (int)(i % 3), 1}};
            snprintf(name, sizeof name, "tiny S=%d, one split of mode %d, d=%d", S, (int)(i % 3), d);
            attn_case(name, one, 1, 4, 2, d, i % 2);
            if (h > 0) {
                split_spec_t two[] = {{h, OP_SPLIT_FULL, 1}, {S - h, OP_SPLIT_CAUSAL, 1}};
                snprintf(name, sizeof name, "tiny S=%d, two samples, d=%d", S, d);
                attn_case(name, two, 2, 2, 2, d, 1);
            }
            G->sync();
            release(); /* 54 cases: more buffers than the tracker holds at once */
        }
}

static void t_bf16_attention_tiny(void) { with_bf16(attn_tiny); }

/* Many short samples. The wgmma kernels start every sample at a multiple
 * of 128 positions of their own (cuda_flash.cu, k_fa_layout_splits): here
 * more splits than that scan's block of 1024 takes at once, a sample of
 * exactly 128 positions (nothing padded after it) and one of 256, and
 * samples of one to eight positions, most of a tile padding */
static void attn_many(void)
{
    enum { NS = 1300 };
    split_spec_t *sp = host_alloc(sizeof(split_spec_t) * NS);
    int ns = 0;
    sp[ns++] = (split_spec_t){128, OP_SPLIT_FULL, 1};
    sp[ns++] = (split_spec_t){256, OP_SPLIT_CAUSAL, 1};
    while (ns < NS) {
        int len = 1 + (int)((uniform() + 1.0f) * 4.0f) % 8;
        int mode = (int)((uniform() + 1.0f) * 1.5f) % 3;
        sp[ns] = (split_spec_t){len, mode, uniform() > 0.0f};
        ns++;
    }
    attn_case("1300 short splits, d=64, GQA 4:2, permuted", sp, ns, 4, 2, 64, 1);
    attn_case("1300 short splits, d=72 (80), 3:3", sp, ns, 3, 3, 72, 0);
}

static void t_bf16_attention_many(void) { with_bf16(attn_many); }

/* On a Hopper GPU attention at head dims 64 and 128 runs on the wgmma
 * kernels; the cases above again with the mma.sync ones, which the other
 * head dims (and other GPUs) use */
static void t_bf16_attention_sync(void)
{
    setenv("BAGEL_FA_FWD", "sync", 1);
    setenv("BAGEL_FA_BWD", "sync", 1);
    with_bf16(t_attention_packed);
    with_bf16(t_attention_wide);
    with_bf16(attn_random);
    with_bf16(attn_long);
    with_bf16(attn_tiny);
    with_bf16(attn_many);
    unsetenv("BAGEL_FA_FWD");
    unsetenv("BAGEL_FA_BWD");
}

/* The wgmma kernels with rings of 2, 3 and 4 stages (the defaults are 4, 4
 * and 2, as many as fit; the cases above run those): the producer's reuse
 * of a stage and the parity of its barriers differ with the depth */
static void t_bf16_attention_stages(void)
{
    static const char *depths[] = {"2,2,2", "3,3,3", "4,4,4"};
    for (int i = 0; i < 3; i++) {
        setenv("BAGEL_FA_NS", depths[i], 1);
        with_bf16(t_attention_packed);
        with_bf16(attn_random);
        with_bf16(attn_long);
        with_bf16(attn_many);
        release(); /* each depth's buffers (the tracking slots) */
    }
    unsetenv("BAGEL_FA_NS");
}

/* ---- TAP */

typedef struct {
    const char *name;
    void (*fn)(void);
} test_t;

/* attention against a cache: contexts of random lengths in one cache, each
 * with a chunk of new queries (decoding steps of one token, causal prompts,
 * full image chunks of 32 and more, which take the packed route), head dims
 * 64 and 128 with GQA; fp32, then bf16 */
static void kv_case(int d, int nh, int nkv, int bf)
{
    enum { NCTX = 6 };
    int nq_of[NCTX] = {1, 1, 7, 40, 130, 3}, ctx_of[NCTX], causal_of[NCTX] = {1, 1, 1, 0, 0, 1};
    int rows_per = 512, nq = 0;
    for (int c = 0; c < NCTX; c++) {
        ctx_of[c] = (int)((uniform() + 1.0f) * 150.0f) + (c == 4 ? 0 : 1);
        nq += nq_of[c];
    }
    ctx_of[4] = 0; /* a chunk on an empty context */
    size_t krow = (size_t)nkv * d, qrow = (size_t)nh * d, nrows = (size_t)NCTX * rows_per;
    float *kc = hrand(nrows * krow, -1, 1), *vc = hrand(nrows * krow, -1, 1);
    /* queries stored in a permuted order, as the model's expert order does */
    float *q = hrand((size_t)nq * qrow, -1, 1);
    int32_t *qr = host_alloc((size_t)nq * 4), *kf = host_alloc((size_t)nq * 4), *kn = host_alloc((size_t)nq * 4);
    int i = 0;
    for (int c = 0; c < NCTX; c++)
        for (int j = 0; j < nq_of[c]; j++, i++) {
            qr[i] = (i * 7) % nq; /* 7 and nq are coprime when nq % 7 != 0 */
            kf[i] = c * rows_per;
            kn[i] = ctx_of[c] + (causal_of[c] ? j + 1 : nq_of[c]);
        }
    if (nq % 7 == 0)
        for (int j = 0; j < nq; j++)
            qr[j] = j;
    float *out = hrand((size_t)nq * qrow, -1, 1);
    op_kv_attn_t ha = {.n_q = nq, .n_heads = nh, .n_kv_heads = nkv, .head_dim = d, .scale = 1.0f / sqrtf((float)d),
                       .q_row = qr, .k_first = kf, .k_count = kn, .h_q_row = qr, .h_k_first = kf, .h_k_count = kn};
    op_kv_attn_t da = ha;
    da.q_row = dcopy(qr, (size_t)nq * 4), da.k_first = dcopy(kf, (size_t)nq * 4), da.k_count = dcopy(kn, (size_t)nq * 4);
    float *dout = dnan((size_t)nq * qrow);
    C->attention_kv(out, q, kc, vc, &ha);
    cuda_ops_set_bf16(bf);
    G->attention_kv(dout, DF(q, (size_t)nq * qrow), DF(kc, nrows * krow), DF(vc, nrows * krow), &da);
    cuda_ops_set_bf16(0);
    char what[96];
    snprintf(what, sizeof what, "attention_kv d=%d nh=%d nkv=%d%s", d, nh, nkv, bf ? " bf16" : "");
    check(what, dout, out, (size_t)nq * qrow, bf ? TOL_BF16 : TOL_RED);
}

static void t_attention_kv(void)
{
    for (int bf = 0; bf < 2; bf++) {
        kv_case(64, 14, 2, bf);
        kv_case(128, 8, 8, bf);
        kv_case(72, 16, 16, bf);
    }
}

/* argmax_rows: random rows, rows with ties (the first index wins), a row
 * with NaNs, a one-column row; and held weights: bf16 products from the kept
 * copies equal the products that round the weights each call */
static void t_argmax_hold(void)
{
    int n = 9, c = 151937;
    float *x = hrand((size_t)n * c, -3, 3);
    x[(size_t)1 * c + 7] = 9.0f, x[(size_t)1 * c + 100] = 9.0f; /* a tie */
    x[(size_t)2 * c + 0] = NAN, x[(size_t)2 * c + 5] = 8.0f;     /* NaN first */
    x[(size_t)3 * c + c - 1] = 12.0f;                            /* at the end */
    int32_t *want = host_alloc((size_t)n * 4), *got = host_alloc((size_t)n * 4);
    C->argmax_rows(want, x, n, c);
    int32_t *dgot = dev_alloc((size_t)n * 4);
    G->argmax_rows(dgot, DF(x, (size_t)n * c), n, c);
    G->download(got, dgot, (size_t)n * 4);
    if (want[1] != 7 || want[2] != 5 || want[3] != c - 1)
        fail("cpu argmax_rows: %d %d %d, expected 7 5 %d", want[1], want[2], want[3], c - 1);
    for (int r = 0; r < n; r++)
        if (got[r] != want[r])
            fail("argmax_rows row %d: %d, cpu %d", r, got[r], want[r]);
    float one[3] = {0.5f, -1.0f, 2.0f};
    G->argmax_rows(dgot, DF(one, 3), 3, 1);
    G->download(got, dgot, 12);
    if (got[0] || got[1] || got[2])
        fail("argmax_rows of one column: %d %d %d", got[0], got[1], got[2]);

    int rows = 33, in = 64, out = 48;
    float *w = hrand((size_t)out * in, -1, 1), *a = hrand((size_t)rows * in, -1, 1), *b = hrand(out, -1, 1);
    float *dw_ = DF(w, (size_t)out * in), *da = DF(a, (size_t)rows * in), *db_ = DF(b, out);
    float *plain = dnan((size_t)rows * out), *kept = dnan((size_t)rows * out), *again = dnan((size_t)rows * out);
    cuda_ops_set_bf16(1);
    G->linear_fwd(plain, da, dw_, db_, rows, in, out);
    G->hold_weights(dw_, (size_t)out * in);
    G->linear_fwd(kept, da, dw_, db_, rows, in, out);
    G->linear_fwd(again, da, dw_, db_, rows, in, out);
    G->hold_weights(NULL, 0);
    cuda_ops_set_bf16(0);
    float *hp = host_alloc((size_t)rows * out * 4);
    G->download(hp, plain, (size_t)rows * out * 4);
    check("linear_fwd with held weights", kept, hp, (size_t)rows * out, 0.0);
    check("linear_fwd with held weights, the kept copy", again, hp, (size_t)rows * out, 0.0);
}

/* ---- the tracked block (op_table_t.track_weights) ---- */

enum { TR_N = 37, TR_I = 48, TR_O = 40, TR_H = 64, TR_M = 96, TR_C = 32, TR_V = 301 };

/* Every bf16 product that takes a weight of the block [blk, blk + nblk):
 * linear forward and backward, the MLP both ways, the classifier; the
 * outputs and gradients, back to back, into host memory. */
static float *tr_run(const float *blk, size_t *len)
{
    size_t n_lin = (size_t)TR_N * TR_O + (size_t)TR_N * TR_I + (size_t)TR_O * TR_I;
    size_t n_mlp = 2 * (size_t)TR_N * TR_H + 3 * (size_t)TR_M * TR_H;
    size_t n_cls = TR_N + (size_t)TR_N * TR_C + (size_t)TR_V * TR_C;
    *len = n_lin + n_mlp + n_cls;
    float *res = host_alloc(*len * sizeof(float)), *at = res;
    rng = 7; /* the same inputs for every call */
    const float *w1 = blk, *w2 = blk + 1024 + (size_t)TR_O * TR_I, *w3 = w2 + 3 * (size_t)TR_M * TR_H + 64;
    /* linear */
    float *x = DF(hrand((size_t)TR_N * TR_I, -1, 1), TR_N * TR_I), *dy = DF(hrand((size_t)TR_N * TR_O, -1, 1), TR_N * TR_O);
    float *y = dnan((size_t)TR_N * TR_O), *dx = dnan((size_t)TR_N * TR_I), *dw = dev_alloc((size_t)TR_O * TR_I * 4);
    G->zero(dw, (size_t)TR_O * TR_I * 4);
    G->linear_fwd(y, x, w1, NULL, TR_N, TR_I, TR_O);
    G->linear_bwd_set(dx, dw, NULL, dy, x, w1, TR_N, TR_I, TR_O);
    G->download(at, y, (size_t)TR_N * TR_O * 4), at += (size_t)TR_N * TR_O;
    G->download(at, dx, (size_t)TR_N * TR_I * 4), at += (size_t)TR_N * TR_I;
    G->download(at, dw, (size_t)TR_O * TR_I * 4), at += (size_t)TR_O * TR_I;
    /* the MLP */
    size_t nh = (size_t)TR_N * TR_H, ni = (size_t)TR_N * TR_M, nw = (size_t)TR_M * TR_H;
    float *mx = DF(hrand(nh, -1, 1), nh), *mdy = DF(hrand(nh, -1, 1), nh), *mo = dnan(nh), *mdx = dnan(nh);
    float *g = dnan(ni), *u = dnan(ni), *mm = dnan(ni), *gw = dev_alloc(3 * nw * 4);
    G->zero(gw, 3 * nw * 4);
    G->mlp_fwd(mo, g, u, mm, mx, w2, w2 + nw, w2 + 2 * nw, TR_N, TR_H, TR_M);
    G->mlp_bwd(mdx, gw, gw + nw, gw + 2 * nw, mdy, mx, w2, w2 + nw, w2 + 2 * nw, g, u, mm, dnan(ni), dnan(ni), dnan(ni),
               TR_N, TR_H, TR_M);
    G->download(at, mo, nh * 4), at += nh;
    G->download(at, mdx, nh * 4), at += nh;
    G->download(at, gw, 3 * nw * 4), at += 3 * nw;
    /* the classifier */
    int32_t lab[TR_N];
    for (int r = 0; r < TR_N; r++)
        lab[r] = (r * 53) % TR_V;
    float *h = DF(hrand((size_t)TR_N * TR_C, -1, 1), TR_N * TR_C), *dl = DF(hrand(TR_N, 0, 1), TR_N);
    float *loss = dnan(TR_N), *dh = dev_alloc((size_t)TR_N * TR_C * 4), *dwc = dev_alloc((size_t)TR_V * TR_C * 4);
    G->zero(dh, (size_t)TR_N * TR_C * 4), G->zero(dwc, (size_t)TR_V * TR_C * 4);
    G->classifier_ce(loss, dh, dwc, h, w3, dcopy(lab, sizeof lab), dl, TR_N, TR_C, TR_V,
                     dev_alloc(op_ce_scratch_floats(8, TR_V) * 4), 8);
    G->download(at, loss, TR_N * 4), at += TR_N;
    G->download(at, dh, (size_t)TR_N * TR_C * 4), at += (size_t)TR_N * TR_C;
    G->download(at, dwc, (size_t)TR_V * TR_C * 4), at += (size_t)TR_V * TR_C;
    return res;
}

static void tr_same(const char *what, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof a[i]) != 0) {
            fail("%s: element %zu is %.9g, %.9g without the tracked copy", what, i, a[i], b[i]);
            return;
        }
}

/* bf16 products that take the tracked block's copy give the bits of
 * rounding each weight at the call, before AdamW and after two steps of it
 * (one over the aligned block: four at a time; one from an odd offset: one
 * at a time), which must have kept the copy current */
static void t_track(void)
{
    size_t nblk = 1024 + (size_t)TR_O * TR_I + 3 * (size_t)TR_M * TR_H + 64 + (size_t)TR_V * TR_C + 16;
    float *blk = DF(hrand(nblk, -0.3f, 0.3f), nblk);
    float *g = DF(hrand(nblk, -1, 1), nblk), *m = DF(hrand(nblk, -0.1f, 0.1f), nblk), *v = DF(hrand(nblk, 0, 0.01f), nblk);
    cuda_ops_set_bf16(1);
    size_t n;
    float *plain = tr_run(blk, &n);
    G->track_weights(blk, nblk);
    float *tracked = tr_run(blk, &n);
    tr_same("tracked, before AdamW", tracked, plain, n);
    G->adamw(blk, g, m, v, nblk, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 1, 1.0f, NULL, 0.0f);
    G->adamw(blk + 1, g + 1, m + 1, v + 1, nblk - 2, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 2, 1.0f, NULL, 0.0f);
    tracked = tr_run(blk, &n);
    G->track_weights(g, 0); /* another block's end: the tracking stays */
    float *still = tr_run(blk, &n);
    G->track_weights(blk, 0);
    float *after = tr_run(blk, &n);
    cuda_ops_set_bf16(0);
    tr_same("tracked, after two AdamW steps", tracked, after, n);
    tr_same("tracked, after another block's end", still, after, n);
    double moved = 0;
    for (size_t i = 0; i < n; i++)
        moved += fabs((double)after[i] - plain[i]);
    if (!(moved > 0))
        fail("AdamW changed no product's result");
}

/* mlp_fwd and mlp_bwd against the CPU's: fp32, bf16 products, and bf16
 * with held weights; odd and even widths; outputs and workspace poisoned,
 * din written (NaN before), the weights' gradients added to (random
 * before) or not wanted */
static void t_mlp(void)
{
    static const int shapes[3][3] = {{37, 64, 96}, {130, 96, 250}, {8, 32, 33}};
    for (int k = 0; k < 3; k++)
        for (int mode = 0; mode < 3; mode++) {
            int n = shapes[k][0], h = shapes[k][1], i = shapes[k][2], nograd = k == 2;
            size_t nw = (size_t)i * h, ni = (size_t)n * i, nh = (size_t)n * h;
            float *x = hrand(nh, -1, 1), *dy = hrand(nh, -1, 1), *out = hrand(nh, 0, 1), *din = hrand(nh, 0, 1);
            float *w = hrand(3 * nw, -0.3f, 0.3f), *gw = hrand(3 * nw, -1, 1), *g0 = hcopy(gw, 3 * nw);
            float *g = hrand(ni, 0, 1), *u = hrand(ni, 0, 1), *mm = hrand(ni, 0, 1);
            float *wg = hrand(ni, 0, 1), *wu = hrand(ni, 0, 1), *wm = hrand(ni, 0, 1);
            C->mlp_fwd(out, g, u, mm, x, w, w + nw, w + 2 * nw, n, h, i);
            C->mlp_bwd(din, nograd ? NULL : gw, nograd ? NULL : gw + nw, nograd ? NULL : gw + 2 * nw, dy, x, w, w + nw,
                       w + 2 * nw, g, u, mm, wg, wu, wm, n, h, i);
            float *dw = DF(w, 3 * nw), *dgw = DF(g0, 3 * nw), *dx = DF(x, nh), *dout = dnan(nh), *ddin = dnan(nh);
            float *dg = dnan(ni), *du = dnan(ni), *dm = dnan(ni);
            if (mode)
                cuda_ops_set_bf16(1);
            if (mode == 2)
                G->hold_weights(dw, 3 * nw);
            G->mlp_fwd(dout, dg, du, dm, dx, dw, dw + nw, dw + 2 * nw, n, h, i);
            G->mlp_bwd(ddin, nograd ? NULL : dgw, nograd ? NULL : dgw + nw, nograd ? NULL : dgw + 2 * nw, DF(dy, nh), dx,
                       dw, dw + nw, dw + 2 * nw, dg, du, dm, dnan(ni), dnan(ni), dnan(ni), n, h, i);
            if (mode == 2)
                G->hold_weights(NULL, 0);
            cuda_ops_set_bf16(0);
            char what[96];
            const char *mn = mode == 0 ? "fp32" : mode == 1 ? "bf16" : "bf16, held weights";
            double tol = mode ? TOL_BF16 : TOL_RED;
            snprintf(what, sizeof what, "mlp_fwd %dx%d->%d %s", n, h, i, mn);
            check(what, dout, out, nh, tol);
            snprintf(what, sizeof what, "mlp_bwd %dx%d->%d %s: din", n, h, i, mn);
            check(what, ddin, din, nh, tol);
            static const char *wn[3] = {"gate_w", "up_w", "down_w"};
            for (int j = 0; j < 3; j++) {
                snprintf(what, sizeof what, "mlp_bwd %dx%d->%d %s: d%s", n, h, i, mn, wn[j]);
                /* the gradient part alone, so that the random start does not hide it */
                float *got = host_alloc(nw * 4);
                G->download(got, dgw + j * nw, nw * 4);
                for (size_t e = 0; e < nw; e++)
                    got[e] -= g0[j * nw + e], gw[j * nw + e] -= g0[j * nw + e];
                double d2 = 0, r2 = 0;
                for (size_t e = 0; e < nw; e++)
                    d2 += (double)(got[e] - gw[j * nw + e]) * (got[e] - gw[j * nw + e]),
                        r2 += (double)gw[j * nw + e] * gw[j * nw + e];
                if (nograd ? d2 != 0.0 : !(sqrt(d2) <= tol * sqrt(r2)))
                    fail("%s: normalized error %.3g > %.1g", what, nograd ? d2 : sqrt(d2 / r2), tol);
            }
            release();
        }
}

static const test_t tests[] = {
    {"linear forward and backward (adding and writing din)", t_linear},
    {"rmsnorm forward and backward", t_rmsnorm},
    {"layernorm forward and backward", t_layernorm},
    {"rope forward and backward", t_rope},
    {"swiglu, gelu, silu forward and backward (swiglu's adding and writing)", t_act},
    {"mlp_fwd and mlp_bwd: fp32, bf16, bf16 with held weights", t_mlp},
    {"track_weights: bf16 products from the copy AdamW keeps, bit for bit", t_track},
    {"attention: one causal split", t_attention_causal},
    {"attention: packed samples, causal/full/noise, GQA, permuted rows", t_attention_packed},
    {"attention: head_dim 128, sample opening with a full split", t_attention_wide},
    {"attention: no mask (dense), head_dim 512 (the autoencoder's mid-block) and GQA, forward", t_attention_wide_head},
    {"rows_copy and rows_add", t_rows},
    {"classifier_ce with ignored labels, chunks, loss only", t_classifier},
    {"mse, flow_noise, timestep_freq", t_loss},
    {"cfg_euler: every renorm mode, image guidance on and off, clamped and not", t_cfg_euler},
    {"patchify and unpatchify", t_patch},
    {"conv2d forward and backward", t_conv},
    {"groupnorm forward and backward", t_groupnorm},
    {"gn_conv2d_fwd: GroupNorm, swish, convolution, residual in one", t_gn_conv},
    {"adamw, ema, sumsq, scale, axpy", t_optim},
    {"upsample2x, affine, gauss_sample", t_layout},
    {"bf16: linear forward and backward", t_bf16_linear},
    {"bf16: linear forward with the bias in cuBLASLt's epilogue", t_bf16_linear_bias_epilogue},
    {"linear3 (q, k, v of one input) against the ops in turn and the cpu, bf16 and fp32", t_linear3},
    {"grad_write: parameter gradients written into NaN, as zeroed and added; ops and model, fp32 and bf16",
     t_grad_write},
    {"bf16: classifier_ce", t_bf16_classifier},
    {"bf16: conv2d forward and backward, gn_conv2d_fwd", t_bf16_conv},
    {"bf16: attention, the fixed packings", t_bf16_attention_fixed},
    {"bf16: attention, 10 random packings, head dims 40-128", t_bf16_attention_random},
    {"bf16: attention, a 2100-position packing", t_bf16_attention_long},
    {"bf16: attention, sequences of 1 to 200 positions (tiles mostly padding)", t_bf16_attention_tiny},
    {"bf16: attention, 1300 short splits (sample-aligned tiles, the layout scan's carry)", t_bf16_attention_many},
    {"bf16: attention, fixed, random and long packings with the mma.sync forward", t_bf16_attention_sync},
    {"bf16: attention, fixed, random and long packings with rings of 2, 3 and 4 stages", t_bf16_attention_stages},
    {"attention against a cache (decoding, prompts, image chunks), fp32 and bf16", t_attention_kv},
    {"argmax_rows; bf16 products from held weights", t_argmax_hold},
};

int main(void)
{
    char err[256] = "";
    if (cuda_ops_init(0, err, sizeof err) != 0) {
        /* no device is a skip; a device the backend cannot start on is a failure */
        if (strncmp(err, "no CUDA device", 14) == 0) {
            printf("1..0 # SKIP no GPU: %s\n", err);
            return fflush(stdout) == 0 ? 0 : 1;
        }
        printf("1..1\nnot ok 1 - cuda_ops_init on device 0\n#   %s\n", err);
        fflush(stdout);
        return 1;
    }
    int n = (int)(sizeof tests / sizeof tests[0]), failed = 0;
    printf("1..%d\n", n);
    for (int i = 0; i < n; i++) {
        n_fail_checks = 0;
        msg[0] = '\0';
        tests[i].fn();
        G->sync();
        release();
        printf("%s %d - %s\n", n_fail_checks ? "not ok" : "ok", i + 1, tests[i].name);
        if (n_fail_checks) {
            printf("#   %s%s\n", msg, n_fail_checks > 1 ? " (and more)" : "");
            failed++;
        }
    }
    cuda_ops_shutdown();
    if (fflush(stdout) != 0)
        return 1;
    return failed ? 1 : 0;
}
