/* test_ops.c — the CPU backend of the op table (kernels/ops.h) against
 * independent double-precision references written here as plain loops.
 *
 * Every op with a backward goes through one harness (check_grad_case): on
 * fresh random inputs it checks
 *   (a) the float forward against the double reference (normalized error
 *       ‖a − b‖/‖b‖, about 1e-5),
 *   (b) the float backward against central differences of the double
 *       reference on L = Σ dout ⊙ f(x) with a random dout (about 1e-4),
 *   (c) accumulation: gradients start from random values and come back as
 *       those values plus the gradient; two calls from zero give twice it,
 *   (d) NULL gradients are skipped: each gradient alone equals the full run.
 * Sizes include degenerate and odd ones (n = 1, c = 7, d = 6) and sizes past
 * the ops' internal tiles and thread thresholds.
 *
 * Seeds: each case draws its own seed from a base seed taken from the clock,
 * or from TEST_OPS_SEED to replay a failure; failures print both.
 * TEST_OPS_FILTER runs only the tests whose names match its pattern. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>

#include <cmocka.h>

#include "../../kernels/ops.h"
#include "../../kernels/attn_span.h"

static const op_table_t *T = &op_cpu;

/* ---- random numbers and seeds ---- */

static uint64_t base_seed, case_counter, case_seed, rng_state;

static uint64_t rng_next(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_uniform(double lo, double hi) { return lo + (hi - lo) * (double)(rng_next() >> 11) * 0x1p-53; }

/* an int in [lo, hi] */
static int rng_int(int lo, int hi) { return lo + (int)(rng_next() % (uint64_t)(hi - lo + 1)); }

static void new_case(void)
{
    case_seed = base_seed + 1000003u * ++case_counter;
    rng_state = case_seed;
}

/* ---- per-test allocations, freed at the start and end of every test (a
 * failing assertion jumps out of the test, skipping its own frees) ---- */

static void *arena[4096];
static int n_arena;

static void *talloc(size_t bytes)
{
    assert_true(n_arena < (int)(sizeof arena / sizeof arena[0]));
    void *p = calloc(1, bytes ? bytes : 1);
    assert_non_null(p);
    arena[n_arena++] = p;
    return p;
}

static void arena_reset(void)
{
    while (n_arena > 0)
        free(arena[--n_arena]);
}

static int setup(void **state)
{
    (void)state;
    arena_reset();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    arena_reset();
    return 0;
}

static float *fvec(size_t n) { return talloc(n * sizeof(float)); }
static double *dvec(size_t n) { return talloc(n * sizeof(double)); }

static float *frand(size_t n, double lo, double hi)
{
    float *x = fvec(n);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_uniform(lo, hi);
    return x;
}

static double *to_double(const float *x, size_t n)
{
    double *y = dvec(n);
    for (size_t i = 0; i < n; i++)
        y[i] = x[i];
    return y;
}

/* ‖a − b‖ / ‖b‖ (‖a‖ where b is all zero) */
static double nerr(const float *a, const double *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)a[i] - b[i];
        num += e * e;
        den += b[i] * b[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

/* nerr with the denominator floored at floor_rms per element: a gradient that
 * is near zero by cancellation (gelu' at its minimum, a one-channel bias sum)
 * is compared on the scale of the output gradient that produced it rather than
 * on its own tiny norm, where float rounding of O(1) terms would dominate.
 * A wrong gradient errs on the scale of dout itself, far above the floor. */
static double nerr_floor(const float *a, const double *b, size_t n, double floor_rms)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)a[i] - b[i];
        num += e * e;
        den += b[i] * b[i];
    }
    den = fmax(den, (double)n * floor_rms * floor_rms);
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

static double nerr_ff(const float *a, const float *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)a[i] - b[i];
        num += e * e;
        den += (double)b[i] * b[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

#define check_err(what, err, tol)                                                                                      \
    do {                                                                                                               \
        double e_ = (err);                                                                                             \
        if (!(e_ <= (tol)))                                                                                            \
            fail_msg("%s: normalized error %.3g > %.3g (case seed %llu; replay all with TEST_OPS_SEED=%llu)", (what),  \
                     e_, (double)(tol), (unsigned long long)case_seed, (unsigned long long)base_seed);                 \
    } while (0)

/* ---- the gradient harness ---- */

#define MAX_IN 4

typedef struct grad_case grad_case_t;
struct grad_case {
    char name[96];
    int nin; /* differentiable inputs */
    const char *in_name[MAX_IN];
    float *xf[MAX_IN];  /* the float inputs the op sees */
    double *xd[MAX_IN]; /* the same values in double, perturbed by the finite differences */
    size_t xn[MAX_IN];
    size_t yn; /* outputs compared */
    float *yf;
    float *dout; /* random output gradient */
    double *doutd;
    void (*fwd_f)(grad_case_t *c);            /* op forward into yf (saves what bwd needs in ctx) */
    void (*fwd_d)(grad_case_t *c, double *y); /* double reference from xd */
    void (*bwd_f)(grad_case_t *c, float **g); /* op backward, accumulating into g[j]; NULL skips */
    void *ctx;
    double fwd_tol, bwd_tol;
    double fwd_floor; /* forward error measured on at least this output RMS (0: the output's own) */
    size_t fd_max; /* finite differences on at most this many coordinates of each input (0: all) */
};

static void gc_init(grad_case_t *c, const char *name, size_t yn)
{
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->yn = yn;
    c->yf = fvec(yn);
    c->dout = frand(yn, -1.0, 1.0);
    c->doutd = to_double(c->dout, yn);
    c->fwd_tol = 1e-5;
    c->bwd_tol = 1e-4;
}

static float *gc_input(grad_case_t *c, const char *name, size_t n, double lo, double hi)
{
    int j = c->nin++;
    assert_true(j < MAX_IN);
    c->in_name[j] = name;
    c->xf[j] = frand(n, lo, hi);
    c->xd[j] = to_double(c->xf[j], n);
    c->xn[j] = n;
    return c->xf[j];
}

static double gc_loss(grad_case_t *c, double *y)
{
    c->fwd_d(c, y);
    double L = 0.0;
    for (size_t i = 0; i < c->yn; i++)
        L += c->doutd[i] * y[i];
    return L;
}

static void check_grad_case(grad_case_t *c)
{
    char what[160];

    /* (a) forward */
    c->fwd_f(c);
    double *yd = dvec(c->yn);
    c->fwd_d(c, yd);
    snprintf(what, sizeof what, "%s forward", c->name);
    check_err(what, nerr_floor(c->yf, yd, c->yn, c->fwd_floor), c->fwd_tol);

    /* (b) backward against central differences of the double reference */
    float *g1[MAX_IN];
    double dout_rms = 0.0;
    for (size_t i = 0; i < c->yn; i++)
        dout_rms += c->doutd[i] * c->doutd[i];
    dout_rms = sqrt(dout_rms / (double)c->yn);
    for (int j = 0; j < c->nin; j++)
        g1[j] = fvec(c->xn[j]);
    c->bwd_f(c, g1);
    for (int j = 0; j < c->nin; j++) {
        size_t n = c->xn[j], m = c->fd_max && c->fd_max < n ? c->fd_max : n;
        float *an = fvec(m);
        double *fd = dvec(m);
        for (size_t s = 0; s < m; s++) {
            size_t i = m == n ? s : (size_t)(rng_next() % n);
            double x0 = c->xd[j][i], h = 1e-5 * (1.0 + fabs(x0));
            c->xd[j][i] = x0 + h;
            double lp = gc_loss(c, yd);
            c->xd[j][i] = x0 - h;
            double lm = gc_loss(c, yd);
            c->xd[j][i] = x0;
            fd[s] = (lp - lm) / (2.0 * h);
            an[s] = g1[j][i];
        }
        snprintf(what, sizeof what, "%s d%s vs finite differences", c->name, c->in_name[j]);
        check_err(what, nerr_floor(an, fd, m, 1e-2 * dout_rms), c->bwd_tol);
    }

    /* (c) accumulation: from random values, and twice from zero */
    for (int j = 0; j < c->nin; j++) {
        float *g0 = frand(c->xn[j], -1.0, 1.0), *g[MAX_IN] = {0};
        double *want = dvec(c->xn[j]);
        for (int t = 0; t < c->nin; t++)
            g[t] = fvec(c->xn[t]);
        memcpy(g[j], g0, c->xn[j] * sizeof(float));
        c->bwd_f(c, g);
        for (size_t i = 0; i < c->xn[j]; i++)
            want[i] = (double)g0[i] + g1[j][i];
        snprintf(what, sizeof what, "%s d%s accumulates onto existing values", c->name, c->in_name[j]);
        check_err(what, nerr(g[j], want, c->xn[j]), 1e-6);
    }
    {
        float *g[MAX_IN];
        for (int j = 0; j < c->nin; j++)
            g[j] = fvec(c->xn[j]);
        c->bwd_f(c, g);
        c->bwd_f(c, g);
        for (int j = 0; j < c->nin; j++) {
            double *want = dvec(c->xn[j]);
            for (size_t i = 0; i < c->xn[j]; i++)
                want[i] = 2.0 * g1[j][i];
            snprintf(what, sizeof what, "%s d%s doubles over two calls", c->name, c->in_name[j]);
            check_err(what, nerr(g[j], want, c->xn[j]), 1e-6);
        }
    }

    /* (d) each gradient alone (the others NULL) */
    if (c->nin > 1)
        for (int j = 0; j < c->nin; j++) {
            float *g[MAX_IN] = {0};
            g[j] = fvec(c->xn[j]);
            c->bwd_f(c, g);
            snprintf(what, sizeof what, "%s d%s alone, the others NULL", c->name, c->in_name[j]);
            check_err(what, nerr_ff(g[j], g1[j], c->xn[j]), 1e-6);
        }
}

/* ================================================================ linear */

typedef struct {
    int n, i, o;
} lin_ctx_t;

static void lin_fwd_f(grad_case_t *c)
{
    lin_ctx_t *x = c->ctx;
    T->linear_fwd(c->yf, c->xf[0], c->xf[1], c->xf[2], x->n, x->i, x->o);
}

static void lin_fwd_d(grad_case_t *c, double *y)
{
    lin_ctx_t *x = c->ctx;
    const double *in = c->xd[0], *w = c->xd[1], *b = c->xd[2];
    for (int r = 0; r < x->n; r++)
        for (int o = 0; o < x->o; o++) {
            double s = b[o];
            for (int i = 0; i < x->i; i++)
                s += in[(size_t)r * x->i + i] * w[(size_t)o * x->i + i];
            y[(size_t)r * x->o + o] = s;
        }
}

static void lin_bwd_f(grad_case_t *c, float **g)
{
    lin_ctx_t *x = c->ctx;
    T->linear_bwd(g[0], g[1], g[2], c->dout, c->xf[0], c->xf[1], x->n, x->i, x->o);
}

static void test_linear(void **state)
{
    (void)state;
    const int sizes[][3] = {{1, 7, 3}, {5, 6, 9}, {1, 1, 1}, {33, 17, 70}, {130, 40, 300}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        new_case();
        lin_ctx_t x = {sizes[s][0], sizes[s][1], sizes[s][2]};
        grad_case_t c;
        char name[64];
        snprintf(name, sizeof name, "linear n=%d in=%d out=%d", x.n, x.i, x.o);
        gc_init(&c, name, (size_t)x.n * x.o);
        gc_input(&c, "in", (size_t)x.n * x.i, -1, 1);
        gc_input(&c, "w", (size_t)x.o * x.i, -1, 1);
        gc_input(&c, "b", (size_t)x.o, -1, 1);
        c.ctx = &x, c.fwd_f = lin_fwd_f, c.fwd_d = lin_fwd_d, c.bwd_f = lin_bwd_f;
        c.fd_max = (size_t)x.n * x.i * x.o > 100000 ? 40 : 300;
        check_grad_case(&c);

        /* without a bias the output is the product alone */
        float *y = frand(c.yn, -5, 5);
        T->linear_fwd(y, c.xf[0], c.xf[1], NULL, x.n, x.i, x.o);
        double *yd = dvec(c.yn);
        memset(c.xd[2], 0, (size_t)x.o * sizeof(double));
        lin_fwd_d(&c, yd);
        check_err("linear without bias", nerr(y, yd, c.yn), 1e-5);
    }
}

/* ================================================================ norms */

typedef struct {
    int n, c;
    float eps;
    float *mean, *rstd;
} norm_ctx_t;

static void rms_fwd_f(grad_case_t *c)
{
    norm_ctx_t *x = c->ctx;
    T->rmsnorm_fwd(c->yf, x->rstd, c->xf[0], c->xf[1], x->n, x->c, x->eps);
}

static void rms_fwd_d(grad_case_t *c, double *y)
{
    norm_ctx_t *x = c->ctx;
    for (int r = 0; r < x->n; r++) {
        const double *in = c->xd[0] + (size_t)r * x->c;
        double ss = 0.0;
        for (int i = 0; i < x->c; i++)
            ss += in[i] * in[i];
        double rs = 1.0 / sqrt(ss / x->c + x->eps);
        for (int i = 0; i < x->c; i++)
            y[(size_t)r * x->c + i] = c->xd[1][i] * in[i] * rs;
    }
}

static void rms_bwd_f(grad_case_t *c, float **g)
{
    norm_ctx_t *x = c->ctx;
    T->rmsnorm_bwd(g[0], g[1], c->dout, c->xf[0], c->xf[1], x->rstd, x->n, x->c);
}

static void ln_fwd_f(grad_case_t *c)
{
    norm_ctx_t *x = c->ctx;
    T->layernorm_fwd(c->yf, x->mean, x->rstd, c->xf[0], c->xf[1], c->xf[2], x->n, x->c, x->eps);
}

static void ln_fwd_d(grad_case_t *c, double *y)
{
    norm_ctx_t *x = c->ctx;
    for (int r = 0; r < x->n; r++) {
        const double *in = c->xd[0] + (size_t)r * x->c;
        double mu = 0.0, var = 0.0;
        for (int i = 0; i < x->c; i++)
            mu += in[i];
        mu /= x->c;
        for (int i = 0; i < x->c; i++)
            var += (in[i] - mu) * (in[i] - mu);
        var /= x->c;
        double rs = 1.0 / sqrt(var + x->eps);
        for (int i = 0; i < x->c; i++)
            y[(size_t)r * x->c + i] = (in[i] - mu) * rs * c->xd[1][i] + c->xd[2][i];
    }
}

static void ln_bwd_f(grad_case_t *c, float **g)
{
    norm_ctx_t *x = c->ctx;
    T->layernorm_bwd(g[0], g[1], g[2], c->dout, c->xf[0], c->xf[1], x->mean, x->rstd, x->n, x->c);
}

static void test_norms(void **state)
{
    (void)state;
    /* not c = 1 or 2: there the output barely depends on x (x̂ = ±1) and the
     * tiny true gradient is below float resolution */
    const int sizes[][2] = {{1, 7}, {4, 6}, {1, 3}, {9, 64}, {3, 200}, {300, 130}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (int kind = 0; kind < 2; kind++) {
            new_case();
            norm_ctx_t x = {sizes[s][0], sizes[s][1], kind ? 1e-5f : 1e-6f, NULL, NULL};
            x.mean = fvec((size_t)x.n);
            x.rstd = fvec((size_t)x.n);
            grad_case_t c;
            char name[64];
            snprintf(name, sizeof name, "%s n=%d c=%d", kind ? "layernorm" : "rmsnorm", x.n, x.c);
            gc_init(&c, name, (size_t)x.n * x.c);
            /* an offset mean checks that LayerNorm does not cancel */
            float *in = gc_input(&c, "in", (size_t)x.n * x.c, kind ? 2.0 : -2, 4);
            /* but a row of a few values that happen to lie close together
             * (c = 3: one seed in some hundreds) has a spread so small
             * against its mean that float rounding of x - mean alone exceeds
             * the tolerance: such rows are drawn again, until their standard
             * deviation is at least 0.25 */
            for (int r = 0; kind && r < x.n; r++)
                for (;;) {
                    double mu = 0, var = 0;
                    for (int k = 0; k < x.c; k++)
                        mu += in[(size_t)r * x.c + k];
                    mu /= x.c;
                    for (int k = 0; k < x.c; k++)
                        var += (in[(size_t)r * x.c + k] - mu) * (in[(size_t)r * x.c + k] - mu);
                    if (sqrt(var / x.c) >= 0.25)
                        break;
                    for (int k = 0; k < x.c; k++) {
                        size_t e = (size_t)r * x.c + k;
                        in[e] = (float)rng_uniform(2.0, 4.0);
                        c.xd[c.nin - 1][e] = in[e];
                    }
                }
            gc_input(&c, "w", (size_t)x.c, 0.5, 1.5);
            if (kind)
                gc_input(&c, "b", (size_t)x.c, -1, 1);
            c.ctx = &x, c.fd_max = 300;
            c.fwd_f = kind ? ln_fwd_f : rms_fwd_f;
            c.fwd_d = kind ? ln_fwd_d : rms_fwd_d;
            c.bwd_f = kind ? ln_bwd_f : rms_bwd_f;
            check_grad_case(&c);
        }
    }
}

/* ================================================================ rope */

typedef struct {
    int n, h, d;
    float theta;
    int32_t *pos;
} rope_ctx_t;

static void rope_fwd_f(grad_case_t *c)
{
    rope_ctx_t *x = c->ctx;
    memcpy(c->yf, c->xf[0], c->yn * sizeof(float));
    T->rope_fwd(c->yf, x->pos, x->n, x->h, x->d, x->theta);
}

/* The angle is part of the definition: PyTorch forms it in fp32 (inv_freq
 * = 1/theta^(2i/d) in float, pos·inv_freq in float), so the reference does
 * too; the rotation itself is in double. */
static void rope_fwd_d(grad_case_t *c, double *y)
{
    rope_ctx_t *x = c->ctx;
    int half = x->d / 2;
    memcpy(y, c->xd[0], c->yn * sizeof(double));
    for (int r = 0; r < x->n; r++)
        for (int i = 0; i < half; i++) {
            float inv = 1.0f / powf(x->theta, (float)(2 * i) / (float)x->d);
            double ang = (double)((float)x->pos[r] * inv);
            double cs = cos(ang), sn = sin(ang);
            for (int j = 0; j < x->h; j++) {
                size_t o = ((size_t)r * x->h + j) * x->d;
                double a = c->xd[0][o + i], b = c->xd[0][o + i + half];
                y[o + i] = a * cs - b * sn;
                y[o + i + half] = b * cs + a * sn;
            }
        }
}

/* rope_bwd rotates the gradient in place; the harness wants an
 * accumulating backward, so rotate a copy of dout and add it */
static void rope_bwd_f(grad_case_t *c, float **g)
{
    rope_ctx_t *x = c->ctx;
    if (!g[0])
        return;
    float *t = fvec(c->yn);
    memcpy(t, c->dout, c->yn * sizeof(float));
    T->rope_bwd(t, x->pos, x->n, x->h, x->d, x->theta);
    for (size_t i = 0; i < c->yn; i++)
        g[0][i] += t[i];
}

static void test_rope(void **state)
{
    (void)state;
    const int sizes[][4] = {{1, 1, 6, 50}, {5, 3, 8, 50}, {4, 2, 2, 50}, {3, 2, 7, 50}, {40, 4, 64, 4000}};
    const float thetas[] = {10000.0f, 1e6f, 10000.0f, 10000.0f, 1e6f};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        new_case();
        rope_ctx_t x = {sizes[s][0], sizes[s][1], sizes[s][2], thetas[s], NULL};
        x.pos = talloc((size_t)x.n * sizeof(int32_t));
        for (int r = 0; r < x.n; r++)
            x.pos[r] = rng_int(0, sizes[s][3]);
        grad_case_t c;
        char name[64];
        snprintf(name, sizeof name, "rope n=%d h=%d d=%d", x.n, x.h, x.d);
        gc_init(&c, name, (size_t)x.n * x.h * x.d);
        gc_input(&c, "x", c.yn, -1, 1);
        c.ctx = &x, c.fwd_f = rope_fwd_f, c.fwd_d = rope_fwd_d, c.bwd_f = rope_bwd_f, c.fd_max = 300;
        check_grad_case(&c);
    }
}

/* ================================================================ activations */

typedef struct {
    int kind; /* 0 swiglu, 1 gelu, 2 silu */
} act_ctx_t;

static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }

static void act_fwd_f(grad_case_t *c)
{
    act_ctx_t *x = c->ctx;
    if (x->kind == 0)
        T->swiglu_fwd(c->yf, c->xf[0], c->xf[1], c->yn);
    else if (x->kind == 1)
        T->gelu_fwd(c->yf, c->xf[0], c->yn);
    else
        T->silu_fwd(c->yf, c->xf[0], c->yn);
}

static void act_fwd_d(grad_case_t *c, double *y)
{
    act_ctx_t *x = c->ctx;
    for (size_t i = 0; i < c->yn; i++) {
        double v = c->xd[0][i];
        if (x->kind == 0)
            y[i] = v * sigmoid_d(v) * c->xd[1][i];
        else if (x->kind == 1)
            y[i] = 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
        else
            y[i] = v * sigmoid_d(v);
    }
}

static void act_bwd_f(grad_case_t *c, float **g)
{
    act_ctx_t *x = c->ctx;
    if (x->kind == 0)
        T->swiglu_bwd(g[0], g[1], c->dout, c->xf[0], c->xf[1], c->yn);
    else if (x->kind == 1)
        T->gelu_bwd(g[0], c->dout, c->xf[0], c->yn);
    else
        T->silu_bwd(g[0], c->dout, c->xf[0], c->yn);
}

static void test_activations(void **state)
{
    (void)state;
    const size_t sizes[] = {1, 7, 1000, 70001};
    const char *names[] = {"swiglu", "gelu_tanh", "silu"};
    for (int kind = 0; kind < 3; kind++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            new_case();
            act_ctx_t x = {kind};
            grad_case_t c;
            char name[64];
            snprintf(name, sizeof name, "%s m=%zu", names[kind], sizes[s]);
            gc_init(&c, name, sizes[s]);
            gc_input(&c, kind == 0 ? "gate" : "in", sizes[s], -6, 6);
            if (kind == 0)
                gc_input(&c, "up", sizes[s], -2, 2);
            c.ctx = &x, c.fwd_f = act_fwd_f, c.fwd_d = act_fwd_d, c.bwd_f = act_bwd_f;
            c.fd_max = sizes[s] > 10000 ? 40 : 400;
            check_grad_case(&c);
        }
}

/* ================================================================ attention */

typedef struct {
    op_attn_t a;
    uint8_t *mask; /* (S, S) from op_attn_visible: query position × key position */
    float *lse;    /* (S, nh) from the float forward */
    double *lsed;  /* (S, nh) from the last double forward */
} attn_ctx_t;

static int ref_row(const op_attn_t *a, int p) { return a->row_of_pos ? a->row_of_pos[p] : p; }

static void attn_fwd_f(grad_case_t *c)
{
    attn_ctx_t *x = c->ctx;
    T->attention_fwd(c->yf, x->lse, c->xf[0], c->xf[1], c->xf[2], &x->a);
}

/* dense: every (query, key) pair through the mask */
static void attn_fwd_d(grad_case_t *c, double *y)
{
    attn_ctx_t *x = c->ctx;
    const op_attn_t *a = &x->a;
    int S = a->n_tok, nh = a->n_heads, nkv = a->n_kv_heads, d = a->head_dim;
    double *sc = dvec((size_t)S);
    for (int qp = 0; qp < S; qp++) {
        int qr = ref_row(a, qp);
        for (int h = 0; h < nh; h++) {
            int kvh = h / (nh / nkv);
            const double *qv = c->xd[0] + ((size_t)qr * nh + h) * d;
            double mx = -INFINITY;
            for (int kp = 0; kp < S; kp++) {
                if (!x->mask[(size_t)qp * S + kp])
                    continue;
                const double *kv = c->xd[1] + ((size_t)ref_row(a, kp) * nkv + kvh) * d;
                double s = 0.0;
                for (int j = 0; j < d; j++)
                    s += qv[j] * kv[j];
                sc[kp] = s * a->scale;
                mx = sc[kp] > mx ? sc[kp] : mx;
            }
            double sum = 0.0, *o = y + ((size_t)qr * nh + h) * d;
            for (int j = 0; j < d; j++)
                o[j] = 0.0;
            for (int kp = 0; kp < S; kp++) {
                if (!x->mask[(size_t)qp * S + kp])
                    continue;
                double p = exp(sc[kp] - mx);
                sum += p;
                const double *vv = c->xd[2] + ((size_t)ref_row(a, kp) * nkv + kvh) * d;
                for (int j = 0; j < d; j++)
                    o[j] += p * vv[j];
            }
            for (int j = 0; j < d; j++)
                o[j] /= sum;
            x->lsed[(size_t)qr * nh + h] = mx + log(sum);
        }
    }
    /* the scratch row came from the arena; release it at once, FD calls this
     * thousands of times */
    assert_ptr_equal(arena[n_arena - 1], sc);
    free(arena[--n_arena]);
}

static void attn_bwd_f(grad_case_t *c, float **g)
{
    attn_ctx_t *x = c->ctx;
    T->attention_bwd(g[0], g[1], g[2], c->dout, c->yf, x->lse, c->xf[0], c->xf[1], c->xf[2], &x->a);
}

/* A random pack: samples of random splits (causal, full, noise), optionally
 * one long split to cross the kernel's key tiles, and optionally rows stored
 * in a random permutation of positions. */
static void attn_layout(attn_ctx_t *x, int max_samples, int max_splits, int max_len, int long_len, int permute)
{
    int32_t *start = talloc(256 * sizeof(int32_t)), *first = talloc(256 * sizeof(int32_t));
    uint8_t *mode = talloc(256);
    int ns = 0, S = 0, nsamp = rng_int(1, max_samples), long_at = long_len ? rng_int(0, nsamp - 1) : -1;
    for (int smp = 0; smp < nsamp; smp++) {
        int f = ns, nspl = rng_int(1, max_splits);
        for (int k = 0; k < nspl; k++) {
            start[ns] = S;
            first[ns] = f;
            mode[ns] = (uint8_t)rng_int(0, 2);
            S += smp == long_at && k == nspl / 2 ? long_len : rng_int(1, max_len);
            ns++;
        }
    }
    start[ns] = S;
    x->a.n_tok = S;
    x->a.n_splits = ns;
    x->a.split_start = start;
    x->a.split_mode = mode;
    x->a.split_first = first;
    x->a.row_of_pos = NULL;
    if (permute) {
        int32_t *perm = talloc((size_t)S * sizeof(int32_t));
        for (int i = 0; i < S; i++)
            perm[i] = i;
        for (int i = S - 1; i > 0; i--) {
            int j = rng_int(0, i), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        x->a.row_of_pos = perm;
    }
    x->mask = talloc((size_t)S * S);
    for (int qs = 0; qs < ns; qs++)
        for (int qp = start[qs]; qp < start[qs + 1]; qp++)
            for (int kp = 0; kp < S; kp++)
                x->mask[(size_t)qp * S + kp] = (uint8_t)op_attn_visible(&x->a, qs, qp, kp);
}

static void run_attention_case(int nh, int nkv, int d, int max_samples, int max_splits, int max_len, int long_len,
                               int permute, size_t fd_max)
{
    new_case();
    attn_ctx_t x;
    memset(&x, 0, sizeof x);
    attn_layout(&x, max_samples, max_splits, max_len, long_len, permute);
    x.a.n_heads = nh;
    x.a.n_kv_heads = nkv;
    x.a.head_dim = d;
    x.a.scale = 1.0f / sqrtf((float)d);
    int S = x.a.n_tok;
    x.lse = fvec((size_t)S * nh);
    x.lsed = dvec((size_t)S * nh);
    grad_case_t c;
    char name[96];
    snprintf(name, sizeof name, "attention S=%d splits=%d nh=%d nkv=%d d=%d%s", S, x.a.n_splits, nh, nkv, d,
             permute ? " permuted" : "");
    gc_init(&c, name, (size_t)S * nh * d);
    gc_input(&c, "q", (size_t)S * nh * d, -2, 2);
    gc_input(&c, "k", (size_t)S * nkv * d, -2, 2);
    gc_input(&c, "v", (size_t)S * nkv * d, -1, 1);
    c.ctx = &x, c.fwd_f = attn_fwd_f, c.fwd_d = attn_fwd_d, c.bwd_f = attn_bwd_f, c.fd_max = fd_max;
    check_grad_case(&c);

    /* the saved log-sum-exp, against the unperturbed reference */
    double *yd = dvec(c.yn);
    attn_fwd_d(&c, yd);
    char what[128];
    snprintf(what, sizeof what, "%s lse", name);
    check_err(what, nerr(x.lse, x.lsed, (size_t)S * nh), 1e-5);
}

static void test_attention_small(void **state)
{
    (void)state;
    for (int rep = 0; rep < 6; rep++) {
        run_attention_case(4, 2, 6, 3, 4, 6, 0, rep % 2, 150);
        run_attention_case(2, 2, 8, 2, 3, 7, 0, rep % 2 == 0, 150);
        run_attention_case(4, 1, 7, 3, 3, 5, 0, 1, 150);
        run_attention_case(1, 1, 1, 2, 4, 4, 0, 0, 0);
    }
}

/* sizes that cross the query blocks (32) and key tiles (16..128 by d) */
static void test_attention_tiles(void **state)
{
    (void)state;
    run_attention_case(4, 2, 8, 2, 4, 25, 150, 1, 50);
    run_attention_case(2, 2, 16, 2, 3, 30, 140, 0, 50);
    run_attention_case(4, 4, 6, 1, 5, 50, 0, 1, 50);
    /* single-head wide attention as in the VAE's mid block: tiles of 16 keys */
    run_attention_case(1, 1, 300, 1, 1, 1, 70, 1, 50);
    run_attention_case(2, 1, 512, 2, 2, 20, 40, 0, 50);
}

/* bagel-reference.md §3.5's example, splits [3 causal, 3 noise, 2 full] */
static void test_attention_visibility_rule(void **state)
{
    (void)state;
    const int32_t start[] = {0, 3, 6, 8};
    const uint8_t mode[] = {OP_SPLIT_CAUSAL, OP_SPLIT_NOISE, OP_SPLIT_FULL};
    const int32_t first[] = {0, 0, 0};
    const char *want[] = {"x.......", "xx......", "xxx.....", "xxxxxx..",
                          "xxxxxx..", "xxxxxx..", "xxx...xx", "xxx...xx"};
    op_attn_t a = {.n_tok = 8,
                   .n_heads = 1,
                   .n_kv_heads = 1,
                   .head_dim = 1,
                   .scale = 1.0f,
                   .n_splits = 3,
                   .split_start = start,
                   .split_mode = mode,
                   .split_first = first,
                   .row_of_pos = NULL};
    for (int q = 0; q < 8; q++) {
        int qs = q < 3 ? 0 : q < 6 ? 1 : 2;
        for (int k = 0; k < 8; k++)
            if (op_attn_visible(&a, qs, q, k) != (want[q][k] == 'x'))
                fail_msg("op_attn_visible(q=%d, k=%d) disagrees with the reference mask", q, k);
    }
}

/* attn_span.h's two readings of the rule, and its tile bits, against
 * op_attn_visible over random packs of every split mode */
static void test_attention_spans(void **state)
{
    (void)state;
    for (int trial = 0; trial < 200; trial++) {
        new_case();
        attn_ctx_t x;
        memset(&x, 0, sizeof x);
        attn_layout(&x, 5, 4, trial < 100 ? 9 : 90, 0, 0);
        const op_attn_t *a = &x.a;
        int S = a->n_tok;
        for (int sp = 0; sp < a->n_splits; sp++)
            for (int p = a->split_start[sp]; p < a->split_start[sp + 1]; p++) {
                int qa, qb, qc, lo, hi;
                attn_span_query(a->split_start, a->split_first, a->split_mode, sp, p, &qa, &qb, &qc);
                attn_span_key(a->split_start, a->split_first, a->n_splits, a->split_mode, sp, p, &lo, &hi);
                for (int o = 0; o < S; o++) {
                    /* o as a key of query p, and as a query of key p */
                    int os = 0;
                    while (os + 1 < a->n_splits && o >= a->split_start[os + 1])
                        os++;
                    int noise = a->split_mode[os] == OP_SPLIT_NOISE;
                    int as_key = (o >= qa && o < qb && !noise) || (o >= qb && o < qc);
                    if (as_key != x.mask[(size_t)p * S + o])
                        fail_msg("query span: q=%d k=%d gives %d, op_attn_visible %d", p, o, as_key,
                                 x.mask[(size_t)p * S + o]);
                    int as_query = o >= lo && o < hi;
                    if (as_query != x.mask[(size_t)o * S + p])
                        fail_msg("key span: q=%d k=%d gives %d, op_attn_visible %d", o, p, as_query,
                                 x.mask[(size_t)o * S + p]);
                }
                /* the bits of the key span over tiles at every offset */
                for (int p0 = -70; p0 < S + 70; p0 += 1 + trial % 13) {
                    uint64_t bits = attn_bits64(lo, hi, p0);
                    for (int i = 0; i < 64; i++)
                        if ((int)((bits >> i) & 1) != (p0 + i >= lo && p0 + i < hi))
                            fail_msg("attn_bits64(%d, %d, %d) bit %d wrong", lo, hi, p0, i);
                }
            }
    }
}

/* ================================================================ rows */

typedef struct {
    int n, c;
    int32_t *oi, *ii;
    int scatter; /* 0: out[r] = in[ii[r]] (gather, embedding); 1: out[oi[r]] = in[r] (scatter) */
} rows_ctx_t;

static void rows_fwd_f(grad_case_t *c)
{
    rows_ctx_t *x = c->ctx;
    T->rows_copy(c->yf, x->scatter ? x->oi : NULL, c->xf[0], x->scatter ? NULL : x->ii, x->n, x->c);
}

static void rows_fwd_d(grad_case_t *c, double *y)
{
    rows_ctx_t *x = c->ctx;
    for (int r = 0; r < x->n; r++) {
        int o = x->scatter ? x->oi[r] : r, i = x->scatter ? r : x->ii[r];
        for (int j = 0; j < x->c; j++)
            y[(size_t)o * x->c + j] = c->xd[0][(size_t)i * x->c + j];
    }
}

/* the backward of a gather is a scatter-add and vice versa */
static void rows_bwd_f(grad_case_t *c, float **g)
{
    rows_ctx_t *x = c->ctx;
    if (!g[0])
        return;
    if (x->scatter)
        T->rows_add(g[0], NULL, c->dout, x->oi, x->n, x->c);
    else
        T->rows_add(g[0], x->ii, c->dout, NULL, x->n, x->c);
}

static void test_rows(void **state)
{
    (void)state;
    const int sizes[][3] = {{1, 1, 1}, {9, 7, 4}, {50, 300, 11}, {400, 130, 30}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int scatter = 0; scatter < 2; scatter++) {
            new_case();
            int n = sizes[s][0], cc = sizes[s][1], vocab = sizes[s][2];
            rows_ctx_t x = {n, cc, NULL, NULL, scatter};
            x.ii = talloc((size_t)n * sizeof(int32_t));
            x.oi = talloc((size_t)n * sizeof(int32_t));
            for (int r = 0; r < n; r++) {
                x.ii[r] = rng_int(0, vocab - 1); /* repeats: the embedding backward must sum them */
                x.oi[r] = r;
            }
            for (int r = n - 1; r > 0; r--) { /* scatter targets: a permutation */
                int j = rng_int(0, r), t = x.oi[r];
                x.oi[r] = x.oi[j];
                x.oi[j] = t;
            }
            grad_case_t c;
            char name[64];
            snprintf(name, sizeof name, "rows %s n=%d c=%d", scatter ? "scatter" : "gather", n, cc);
            gc_init(&c, name, (size_t)n * cc);
            gc_input(&c, "in", (size_t)(scatter ? n : vocab) * cc, -1, 1);
            c.ctx = &x, c.fwd_f = rows_fwd_f, c.fwd_d = rows_fwd_d, c.bwd_f = rows_bwd_f, c.fd_max = 200;
            c.fwd_tol = 0.0;
            check_grad_case(&c);
        }

    /* both index arrays, and rows_add's sum over repeated destinations */
    new_case();
    int n = 37, cc = 300, rows = 5;
    float *in = frand((size_t)n * cc, -1, 1), *out = frand((size_t)rows * cc, -1, 1);
    int32_t *oi = talloc((size_t)n * sizeof(int32_t)), *ii = talloc((size_t)n * sizeof(int32_t));
    for (int r = 0; r < n; r++)
        oi[r] = rng_int(0, rows - 1), ii[r] = rng_int(0, n - 1);
    double *want = to_double(out, (size_t)rows * cc);
    for (int r = 0; r < n; r++)
        for (int j = 0; j < cc; j++)
            want[(size_t)oi[r] * cc + j] += in[(size_t)ii[r] * cc + j];
    T->rows_add(out, oi, in, ii, n, cc);
    check_err("rows_add with repeated destinations", nerr(out, want, (size_t)rows * cc), 1e-6);
}

/* ================================================================ classifier */

typedef struct {
    int n, c, V, chunk;
    int32_t *label;
    float *scratch;
} ce_ctx_t;

static void ce_fwd_f(grad_case_t *c)
{
    ce_ctx_t *x = c->ctx;
    T->classifier_ce(c->yf, NULL, NULL, c->xf[0], c->xf[1], x->label, NULL, x->n, x->c, x->V, x->scratch, x->chunk);
}

static void ce_fwd_d(grad_case_t *c, double *y)
{
    ce_ctx_t *x = c->ctx;
    double *z = dvec((size_t)x->V);
    for (int r = 0; r < x->n; r++) {
        double mx = -INFINITY;
        for (int v = 0; v < x->V; v++) {
            double s = 0.0;
            for (int j = 0; j < x->c; j++)
                s += c->xd[0][(size_t)r * x->c + j] * c->xd[1][(size_t)v * x->c + j];
            z[v] = s;
            mx = s > mx ? s : mx;
        }
        double sum = 0.0;
        for (int v = 0; v < x->V; v++)
            sum += exp(z[v] - mx);
        int yl = x->label[r];
        y[r] = yl < 0 || yl >= x->V ? 0.0 : mx + log(sum) - z[yl];
    }
    free(arena[--n_arena]);
}

static void ce_bwd_f(grad_case_t *c, float **g)
{
    ce_ctx_t *x = c->ctx;
    float *loss = fvec((size_t)x->n);
    T->classifier_ce(loss, g[0], g[1], c->xf[0], c->xf[1], x->label, c->dout, x->n, x->c, x->V, x->scratch, x->chunk);
    /* the loss computed alongside the gradient is the same loss */
    check_err("classifier_ce loss with gradients", nerr_ff(loss, c->yf, (size_t)x->n), 1e-6);
}

static void test_classifier_ce(void **state)
{
    (void)state;
    /* n, c, V, chunk: V never a multiple of the chunk, chunks smaller than n,
     * one chunk larger than n, one row per chunk */
    const int sizes[][4] = {{5, 7, 13, 2},   {1, 3, 1, 1}, {17, 16, 50, 4},
                            {6, 9, 31, 100}, {9, 5, 7, 1}, {70, 40, 1001, 16}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        new_case();
        ce_ctx_t x = {sizes[s][0], sizes[s][1], sizes[s][2], sizes[s][3], NULL, NULL};
        x.label = talloc((size_t)x.n * sizeof(int32_t));
        for (int r = 0; r < x.n; r++)
            x.label[r] = rng_int(0, x.V - 1);
        if (x.n > 3)
            x.label[1] = -100; /* ignored row */
        int chunk = x.chunk < x.n ? x.chunk : x.n;
        x.scratch = fvec(op_ce_scratch_floats(chunk, x.V));
        grad_case_t c;
        char name[64];
        snprintf(name, sizeof name, "classifier_ce n=%d c=%d V=%d chunk=%d", x.n, x.c, x.V, x.chunk);
        gc_init(&c, name, (size_t)x.n);
        gc_input(&c, "h", (size_t)x.n * x.c, -1, 1);
        gc_input(&c, "w", (size_t)x.V * x.c, -1, 1);
        c.ctx = &x, c.fwd_f = ce_fwd_f, c.fwd_d = ce_fwd_d, c.bwd_f = ce_bwd_f;
        c.fd_max = (size_t)x.n * x.c * x.V > 100000 ? 40 : 200;
        check_grad_case(&c);
    }
}

/* ================================================================ mse */

typedef struct {
    int n, d;
    float *target;
} mse_ctx_t;

static void mse_fwd_f(grad_case_t *c)
{
    mse_ctx_t *x = c->ctx;
    T->mse(c->yf, NULL, c->xf[0], x->target, NULL, x->n, x->d);
}

static void mse_fwd_d(grad_case_t *c, double *y)
{
    mse_ctx_t *x = c->ctx;
    for (int r = 0; r < x->n; r++) {
        double s = 0.0;
        for (int j = 0; j < x->d; j++) {
            double e = c->xd[0][(size_t)r * x->d + j] - x->target[(size_t)r * x->d + j];
            s += e * e;
        }
        y[r] = s / x->d;
    }
}

static void mse_bwd_f(grad_case_t *c, float **g)
{
    mse_ctx_t *x = c->ctx;
    T->mse(NULL, g[0], c->xf[0], x->target, c->dout, x->n, x->d);
}

static void test_mse(void **state)
{
    (void)state;
    const int sizes[][2] = {{1, 1}, {3, 7}, {40, 64}, {600, 64}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        new_case();
        mse_ctx_t x = {sizes[s][0], sizes[s][1], NULL};
        x.target = frand((size_t)x.n * x.d, -1, 1);
        grad_case_t c;
        char name[64];
        snprintf(name, sizeof name, "mse n=%d d=%d", x.n, x.d);
        gc_init(&c, name, (size_t)x.n);
        gc_input(&c, "pred", (size_t)x.n * x.d, -2, 2);
        c.ctx = &x, c.fwd_f = mse_fwd_f, c.fwd_d = mse_fwd_d, c.bwd_f = mse_bwd_f, c.fd_max = 300;
        check_grad_case(&c);
    }
}

/* ================================================================ conv2d */

typedef struct {
    int n, ci, h, w, co, kh, kw, stride, pt, pl, pb, pr, ho, wo;
} conv_ctx_t;

static void conv_fwd_f(grad_case_t *c)
{
    conv_ctx_t *x = c->ctx;
    T->conv2d_fwd(c->yf, c->xf[0], c->xf[1], c->xf[2], x->n, x->ci, x->h, x->w, x->co, x->kh, x->kw, x->stride, x->pt,
                  x->pl, x->pb, x->pr);
}

static void conv_fwd_d(grad_case_t *c, double *y)
{
    conv_ctx_t *x = c->ctx;
    for (int i = 0; i < x->n; i++)
        for (int o = 0; o < x->co; o++)
            for (int oy = 0; oy < x->ho; oy++)
                for (int ox = 0; ox < x->wo; ox++) {
                    double s = c->xd[2][o];
                    for (int ch = 0; ch < x->ci; ch++)
                        for (int ky = 0; ky < x->kh; ky++)
                            for (int kx = 0; kx < x->kw; kx++) {
                                int iy = oy * x->stride - x->pt + ky, ix = ox * x->stride - x->pl + kx;
                                if (iy < 0 || iy >= x->h || ix < 0 || ix >= x->w)
                                    continue;
                                s += c->xd[0][(((size_t)i * x->ci + ch) * x->h + iy) * x->w + ix] *
                                     c->xd[1][(((size_t)o * x->ci + ch) * x->kh + ky) * x->kw + kx];
                            }
                    y[(((size_t)i * x->co + o) * x->ho + oy) * x->wo + ox] = s;
                }
}

static void conv_bwd_f(grad_case_t *c, float **g)
{
    conv_ctx_t *x = c->ctx;
    T->conv2d_bwd(g[0], g[1], g[2], c->dout, c->xf[0], c->xf[1], x->n, x->ci, x->h, x->w, x->co, x->kh, x->kw,
                  x->stride, x->pt, x->pl, x->pb, x->pr);
}

static void run_conv_case(conv_ctx_t x, size_t fd_max)
{
    new_case();
    x.ho = (x.h + x.pt + x.pb - x.kh) / x.stride + 1;
    x.wo = (x.w + x.pl + x.pr - x.kw) / x.stride + 1;
    grad_case_t c;
    char name[96];
    snprintf(name, sizeof name, "conv2d n=%d ci=%d %dx%d co=%d k=%dx%d s=%d pad=%d,%d,%d,%d", x.n, x.ci, x.h, x.w, x.co,
             x.kh, x.kw, x.stride, x.pt, x.pl, x.pb, x.pr);
    gc_init(&c, name, (size_t)x.n * x.co * x.ho * x.wo);
    gc_input(&c, "in", (size_t)x.n * x.ci * x.h * x.w, -1, 1);
    gc_input(&c, "w", (size_t)x.co * x.ci * x.kh * x.kw, -1, 1);
    gc_input(&c, "b", (size_t)x.co, -1, 1);
    c.ctx = &x, c.fwd_f = conv_fwd_f, c.fwd_d = conv_fwd_d, c.bwd_f = conv_bwd_f, c.fd_max = fd_max;
    /* an output is a sum of products of values in [-1, 1] and may cancel to
     * near zero (the 1×1×1 case is x·w + b alone): measure the forward error
     * on the scale of one such product, not on the sum's own size */
    c.fwd_floor = 0.3;
    check_grad_case(&c);
}

static void test_conv2d(void **state)
{
    (void)state;
    /* n ci h w co kh kw stride pad t l b r */
    run_conv_case((conv_ctx_t){2, 3, 7, 6, 5, 3, 3, 1, 1, 1, 1, 1}, 0);
    run_conv_case((conv_ctx_t){1, 4, 8, 7, 3, 3, 3, 2, 0, 0, 1, 1}, 0); /* FLUX Downsample */
    run_conv_case((conv_ctx_t){2, 5, 4, 3, 6, 1, 1, 1, 0, 0, 0, 0}, 0); /* 1×1, no im2col */
    run_conv_case((conv_ctx_t){1, 2, 9, 5, 3, 2, 3, 2, 1, 0, 0, 2}, 0); /* kh ≠ kw, uneven pads */
    run_conv_case((conv_ctx_t){1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0}, 0);
    run_conv_case((conv_ctx_t){3, 1, 5, 5, 1, 3, 3, 1, 1, 1, 1, 1}, 0);
    /* im2col larger than the kernel's column buffer: several pixel chunks */
    run_conv_case((conv_ctx_t){1, 32, 123, 122, 1, 3, 3, 1, 1, 1, 1, 1}, 12);
}

/* ================================================================ groupnorm */

typedef struct {
    int n, c, hw, groups;
    float eps;
    float *mean, *rstd;
} gn_ctx_t;

static void gn_fwd_f(grad_case_t *c)
{
    gn_ctx_t *x = c->ctx;
    T->groupnorm_fwd(c->yf, x->mean, x->rstd, c->xf[0], c->xf[1], c->xf[2], x->n, x->c, x->hw, x->groups, x->eps);
}

static void gn_fwd_d(grad_case_t *c, double *y)
{
    gn_ctx_t *x = c->ctx;
    int cpg = x->c / x->groups;
    size_t cnt = (size_t)cpg * x->hw;
    for (int i = 0; i < x->n; i++)
        for (int g = 0; g < x->groups; g++) {
            size_t base = ((size_t)i * x->c + (size_t)g * cpg) * x->hw;
            double mu = 0.0, var = 0.0;
            for (size_t j = 0; j < cnt; j++)
                mu += c->xd[0][base + j];
            mu /= (double)cnt;
            for (size_t j = 0; j < cnt; j++)
                var += (c->xd[0][base + j] - mu) * (c->xd[0][base + j] - mu);
            double rs = 1.0 / sqrt(var / (double)cnt + x->eps);
            for (size_t j = 0; j < cnt; j++) {
                int ch = g * cpg + (int)(j / (size_t)x->hw);
                y[base + j] = (c->xd[0][base + j] - mu) * rs * c->xd[1][ch] + c->xd[2][ch];
            }
        }
}

static void gn_bwd_f(grad_case_t *c, float **g)
{
    gn_ctx_t *x = c->ctx;
    T->groupnorm_bwd(g[0], g[1], g[2], c->dout, c->xf[0], c->xf[1], x->mean, x->rstd, x->n, x->c, x->hw, x->groups);
}

static void test_groupnorm(void **state)
{
    (void)state;
    /* groups of at least 3 values: with 2, x̂ = ±1 and the tiny true gradient
     * is below float resolution */
    const int sizes[][4] = {{1, 6, 1, 2}, {2, 6, 5, 3}, {3, 8, 7, 1}, {2, 7, 3, 7}, {2, 64, 300, 32}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        new_case();
        gn_ctx_t x = {sizes[s][0], sizes[s][1], sizes[s][2], sizes[s][3], 1e-6f, NULL, NULL};
        x.mean = fvec((size_t)x.n * x.groups);
        x.rstd = fvec((size_t)x.n * x.groups);
        grad_case_t c;
        char name[64];
        snprintf(name, sizeof name, "groupnorm n=%d c=%d hw=%d groups=%d", x.n, x.c, x.hw, x.groups);
        gc_init(&c, name, (size_t)x.n * x.c * x.hw);
        gc_input(&c, "in", c.yn, -1, 3);
        gc_input(&c, "w", (size_t)x.c, 0.5, 1.5);
        gc_input(&c, "b", (size_t)x.c, -1, 1);
        c.ctx = &x, c.fwd_f = gn_fwd_f, c.fwd_d = gn_fwd_d, c.bwd_f = gn_bwd_f, c.fd_max = 200;
        check_grad_case(&c);
    }
}

/* ================================================================ gn_conv2d_fwd */

/* the fused normalized convolution: (a) the bits of groupnorm_fwd, silu_fwd,
 * conv2d_fwd and axpy in turn, statistics included; (b) a double reference
 * written here (GroupNorm, swish, a direct convolution, the residual) */
static void test_gn_conv2d(void **state)
{
    (void)state;
    /* n, ci, groups, h, w, co, k, act, bias, res */
    const int cases[][10] = {
        {1, 4, 2, 5, 7, 3, 3, 1, 1, 0},  {2, 6, 3, 6, 4, 5, 3, 1, 1, 1},   {3, 8, 8, 4, 9, 2, 3, 0, 0, 1},
        {2, 12, 4, 7, 7, 8, 5, 1, 0, 1}, {1, 64, 32, 9, 11, 16, 3, 1, 1, 1},
    };
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        new_case();
        const int *c = cases[s];
        int n = c[0], ci = c[1], groups = c[2], h = c[3], w = c[4], co = c[5], k = c[6], act = c[7];
        size_t hw = (size_t)h * w, nin = (size_t)n * ci * hw, nout = (size_t)n * co * hw, ng = (size_t)n * groups;
        float eps = 1e-6f;
        float *x = frand(nin, -1, 3), *gw = frand(ci, 0.5, 1.5), *gb = frand(ci, -1, 1);
        float *wt = frand((size_t)co * ci * k * k, -0.3, 0.3), *b = c[8] ? frand(co, -1, 1) : NULL;
        float *res = c[9] ? frand(nout, -2, 2) : NULL;
        /* (a) the composition */
        float *t = fvec(nin), *want = fvec(nout), *mu1 = fvec(ng), *rs1 = fvec(ng);
        T->groupnorm_fwd(t, mu1, rs1, x, gw, gb, n, ci, (int)hw, groups, eps);
        if (act)
            T->silu_fwd(t, t, nin);
        T->conv2d_fwd(want, t, wt, b, n, ci, h, w, co, k, k, 1, k / 2, k / 2, k / 2, k / 2);
        if (res)
            T->axpy(want, 1.0f, res, nout);
        float *got = frand(nout, 5, 6), *mu2 = frand(ng, 5, 6), *rs2 = frand(ng, 5, 6);
        T->gn_conv2d_fwd(got, mu2, rs2, x, gw, gb, groups, eps, act, wt, b, res, n, ci, h, w, co, k);
        if (memcmp(got, want, nout * sizeof(float)) || memcmp(mu1, mu2, ng * sizeof(float)) ||
            memcmp(rs1, rs2, ng * sizeof(float)))
            fail_msg("gn_conv2d_fwd case %zu: not the bits of groupnorm, silu, conv2d, axpy in turn "
                     "(TEST_OPS_SEED=%llu)",
                     s, (unsigned long long)base_seed);
        /* (b) the double reference */
        double *y = dvec(nout), *xn = dvec(nin);
        int cpg = ci / groups;
        for (int i = 0; i < n; i++)
            for (int g = 0; g < groups; g++) {
                size_t base = ((size_t)i * ci + (size_t)g * cpg) * hw, cnt = (size_t)cpg * hw;
                double m = 0.0, v = 0.0;
                for (size_t j = 0; j < cnt; j++)
                    m += x[base + j];
                m /= (double)cnt;
                for (size_t j = 0; j < cnt; j++)
                    v += (x[base + j] - m) * (x[base + j] - m);
                double r = 1.0 / sqrt(v / (double)cnt + eps);
                for (size_t j = 0; j < cnt; j++) {
                    int ch = g * cpg + (int)(j / hw);
                    double z = (x[base + j] - m) * r * gw[ch] + gb[ch];
                    xn[base + j] = act ? z / (1.0 + exp(-z)) : z;
                }
            }
        for (int i = 0; i < n; i++)
            for (int o = 0; o < co; o++)
                for (int oy = 0; oy < h; oy++)
                    for (int ox = 0; ox < w; ox++) {
                        double acc = b ? b[o] : 0.0;
                        for (int q = 0; q < ci; q++)
                            for (int ky = 0; ky < k; ky++)
                                for (int kx = 0; kx < k; kx++) {
                                    int iy = oy + ky - k / 2, ix = ox + kx - k / 2;
                                    if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                                        acc += wt[(((size_t)o * ci + q) * k + ky) * k + kx] *
                                               xn[((size_t)i * ci + q) * hw + (size_t)iy * w + ix];
                                }
                        size_t at = ((size_t)i * co + o) * hw + (size_t)oy * w + ox;
                        y[at] = acc + (res ? res[at] : 0.0);
                    }
        double e = nerr(got, y, nout);
        if (!(e < 1e-5))
            fail_msg("gn_conv2d_fwd case %zu: error %.3g against the double reference (TEST_OPS_SEED=%llu)", s, e,
                     (unsigned long long)base_seed);
    }
}

/* ================================================================ forward-only ops */

static void test_flow_noise(void **state)
{
    (void)state;
    new_case();
    int n = 9, d = 13;
    float *x0 = frand((size_t)n * d, -2, 2), *eps = frand((size_t)n * d, -2, 2), *t = frand((size_t)n, 0, 1);
    t[0] = 0.0f, t[1] = 1.0f;
    float *xt = fvec((size_t)n * d), *tg = fvec((size_t)n * d);
    T->flow_noise(xt, tg, x0, eps, t, n, d);
    double *wx = dvec((size_t)n * d), *wt = dvec((size_t)n * d);
    for (int r = 0; r < n; r++)
        for (int j = 0; j < d; j++) {
            size_t i = (size_t)r * d + j;
            wx[i] = (1.0 - t[r]) * x0[i] + (double)t[r] * eps[i];
            wt[i] = (double)eps[i] - x0[i];
        }
    check_err("flow_noise xt", nerr(xt, wx, (size_t)n * d), 1e-6);
    check_err("flow_noise target", nerr(tg, wt, (size_t)n * d), 1e-6);
    for (int j = 0; j < d; j++) /* the ends of the path are exact */
        assert_true(xt[j] == x0[j] && xt[d + j] == eps[d + j]);
}

static void test_timestep_freq(void **state)
{
    (void)state;
    new_case();
    const int halves[] = {128, 1, 3};
    for (size_t s = 0; s < sizeof halves / sizeof halves[0]; s++) {
        int n = 7, half = halves[s];
        float *t = frand((size_t)n, 0, 1), *out = fvec((size_t)n * 2 * half);
        t[0] = 0.0f, t[1] = 1.0f;
        T->timestep_freq(out, t, n, half);
        /* the argument is formed in fp32 as the PyTorch code forms it; cos
         * and sin of it in double */
        double *want = dvec((size_t)n * 2 * half), *exact = dvec((size_t)n * 2 * half);
        for (int r = 0; r < n; r++)
            for (int k = 0; k < half; k++) {
                float f = expf(-(float)log(10000.0) * (float)k / (float)half);
                double arg = (double)(t[r] * f), xarg = t[r] * exp(-log(10000.0) * k / half);
                want[(size_t)r * 2 * half + k] = cos(arg);
                want[(size_t)r * 2 * half + half + k] = sin(arg);
                exact[(size_t)r * 2 * half + k] = cos(xarg);
                exact[(size_t)r * 2 * half + half + k] = sin(xarg);
            }
        check_err("timestep_freq", nerr(out, want, (size_t)n * 2 * half), 1e-6);
        check_err("timestep_freq vs exact frequencies", nerr(out, exact, (size_t)n * 2 * half), 1e-5);
        assert_true(out[0] == 1.0f && out[half] == 0.0f); /* t = 0: cos 1, sin 0 */
    }
}

static void test_patchify(void **state)
{
    (void)state;
    new_case();
    const int shapes[][4] = {{28, 42, 3, 14}, {4, 6, 16, 2}, {1, 1, 1, 1}, {6, 4, 2, 2}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int H = shapes[s][0], W = shapes[s][1], C = shapes[s][2], p = shapes[s][3];
        size_t n = (size_t)H * W * C, feat = (size_t)p * p * C, ntok = (size_t)(H / p) * (W / p);

        uint8_t *img = talloc(n);
        for (size_t i = 0; i < n; i++)
            img[i] = (uint8_t)rng_int(0, 255);
        img[n - 1] = 255, img[0] = 0;
        float *tok = fvec(ntok * feat);
        T->patchify_u8(tok, img, H, W, C, p);
        double *want = dvec(ntok * feat);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < C; c++) {
                    int i = y / p, j = x / p, py = y % p, px = x % p;
                    want[((size_t)i * (W / p) + j) * feat + (size_t)(py * p + px) * C + c] =
                        (img[((size_t)y * W + x) * C + c] / 255.0 - 0.5) / 0.5;
                }
        check_err("patchify_u8", nerr(tok, want, ntok * feat), 1e-6);
        assert_true(tok[0] == -1.0f && (n == 1 || tok[ntok * feat - 1] == 1.0f));

        float *z = frand(n, -3, 3), *tz = fvec(ntok * feat), *back = frand(n, 5, 6);
        T->patchify_chw(tz, z, C, H, W, p);
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    int i = y / p, j = x / p, py = y % p, px = x % p;
                    float got = tz[((size_t)i * (W / p) + j) * feat + (size_t)(py * p + px) * C + c];
                    if (got != z[((size_t)c * H + y) * W + x])
                        fail_msg("patchify_chw: c=%d y=%d x=%d misplaced", c, y, x);
                }
        T->unpatchify_chw(back, tz, C, H, W, p);
        assert_memory_equal(back, z, n * sizeof(float));
    }
}

static void test_adamw_ema(void **state)
{
    (void)state;
    new_case();
    size_t n = 40001;
    const float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, decay = 0.99f;
    float *p = frand(n, -1, 1), *m = fvec(n), *v = fvec(n), *e = fvec(n);
    memcpy(e, p, n * sizeof(float));
    /* the same state stepped by the fused call: AdamW on the scaled
     * gradients with the EMA in its pass */
    float *pf = fvec(n), *mf = fvec(n), *vf = fvec(n), *ef = fvec(n);
    memcpy(pf, p, n * sizeof(float));
    memcpy(ef, e, n * sizeof(float));
    double *pd = to_double(p, n), *md = dvec(n), *vd = dvec(n), *ed = to_double(e, n);
    for (int step = 1; step <= 3; step++) {
        float *g = frand(n, -1, 1), *gs = fvec(n);
        g[0] = 0.0f; /* a zero gradient only decays */
        const float gscale = step == 2 ? 1.0f : 0.37f + 0.1f * step; /* the clip's coefficient, or none */
        for (size_t i = 0; i < n; i++)
            gs[i] = g[i] * gscale;
        T->adamw(p, gs, m, v, n, lr, b1, b2, eps, wd, step, 1.0f, NULL, 0.0f);
        T->ema(e, p, n, decay);
        T->adamw(pf, g, mf, vf, n, lr, b1, b2, eps, wd, step, gscale, ef, decay);
        assert_memory_equal(pf, p, n * sizeof(float));
        assert_memory_equal(mf, m, n * sizeof(float));
        assert_memory_equal(vf, v, n * sizeof(float));
        assert_memory_equal(ef, e, n * sizeof(float));
        assert_true(g[1] * gscale == gs[1]); /* g itself is not scaled */
        for (size_t i = 0; i < n; i++) {
            /* PyTorch's AdamW: decoupled decay first, then the Adam step */
            pd[i] *= 1.0 - (double)lr * wd;
            md[i] = b1 * md[i] + (1.0 - b1) * gs[i];
            vd[i] = b2 * vd[i] + (1.0 - b2) * (double)gs[i] * gs[i];
            double mhat = md[i] / (1.0 - pow(b1, step)), vhat = vd[i] / (1.0 - pow(b2, step));
            pd[i] -= lr * mhat / (sqrt(vhat) + eps);
            ed[i] = decay * ed[i] + (1.0 - decay) * pd[i];
        }
        check_err("adamw p", nerr(p, pd, n), 1e-6);
        check_err("adamw m", nerr(m, md, n), 1e-6);
        check_err("adamw v", nerr(v, vd, n), 1e-6);
        check_err("ema", nerr(e, ed, n), 1e-6);
    }
}

static void test_vector_ops(void **state)
{
    (void)state;
    new_case();
    const size_t sizes[] = {0, 1, 7, 100003};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        float *x = frand(n, -2, 2), *y = frand(n, -2, 2);
        double *want = dvec(n + 1), ss = 0.0, terms = 0.0;
        for (size_t i = 0; i < n; i++) {
            want[i] = y[i] + (double)0.37f * x[i];
            ss += (double)x[i] * x[i];
            double t = fabs((double)y[i]) + fabs((double)0.37f * x[i]);
            terms += t * t;
        }
        T->axpy(y, 0.37f, x, n);
        /* float's error is relative to the terms, not to a sum that cancels
         * (one element, y ≈ -0.37·x: 3.7e-6 of the result in one seed) */
        check_err("axpy", nerr_floor(y, want, n, n ? sqrt(terms / (double)n) : 0.0), 1e-6);
        double got = T->sumsq(x, n);
        check_err("sumsq", fabs(got - ss) / (ss > 0 ? ss : 1), 1e-12);
        for (size_t i = 0; i < n; i++)
            want[i] = -1.5 * x[i];
        T->scale(x, -1.5f, n);
        check_err("scale", nerr(x, want, n), 1e-7);
    }
}

static void test_memory(void **state)
{
    (void)state;
    const size_t sizes[] = {0, 1, 3, 4096, 1000003};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        unsigned char *p = T->alloc(n);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 64, 0);
        for (size_t i = 0; i < n; i++)
            if (p[i])
                fail_msg("alloc(%zu): byte %zu not zero", n, i);
        unsigned char *h = talloc(n), *back = talloc(n);
        for (size_t i = 0; i < n; i++)
            h[i] = (unsigned char)(i * 31 + 7);
        T->upload(p, h, n);
        T->sync();
        T->download(back, p, n);
        assert_memory_equal(back, h, n);
        T->zero(p, n);
        for (size_t i = 0; i < n; i++)
            if (p[i])
                fail_msg("zero(%zu): byte %zu not zero", n, i);
        T->free(p);
    }
    T->free(NULL);
}

/* attention against a cache: queries with random key ranges in a cache of
 * several contexts (permuted query rows, GQA), against a double softmax;
 * argmax_rows with a tie and a NaN */
static void test_attention_kv(void **state)
{
    (void)state;
    new_case();
    int nh = 6, nkv = 2, d = 24, rows = 300, nq = 37;
    size_t ld = (size_t)nkv * d;
    float *kc = frand((size_t)rows * ld, -1, 1), *vc = frand((size_t)rows * ld, -1, 1);
    float *q = frand((size_t)nq * nh * d, -1, 1), *out = fvec((size_t)nq * nh * d);
    int32_t qr[37], kf[37], kn[37];
    for (int i = 0; i < nq; i++) {
        qr[i] = (i * 5) % nq;
        kf[i] = (int32_t)(rng_next() % 100);
        kn[i] = 1 + (int32_t)(rng_next() % 200);
    }
    op_kv_attn_t a = {.n_q = nq, .n_heads = nh, .n_kv_heads = nkv, .head_dim = d, .scale = 0.3f,
                      .q_row = qr, .k_first = kf, .k_count = kn, .h_q_row = qr, .h_k_first = kf, .h_k_count = kn};
    T->attention_kv(out, q, kc, vc, &a);
    double *want = dvec((size_t)nq * nh * d);
    for (int i = 0; i < nq; i++)
        for (int h = 0; h < nh; h++) {
            const float *qi = q + ((size_t)qr[i] * nh + h) * d;
            int kvh = h / (nh / nkv);
            double mx = -1e300, sum = 0.0, *o = want + ((size_t)qr[i] * nh + h) * d;
            double *s = dvec((size_t)kn[i]);
            for (int j = 0; j < kn[i]; j++) {
                const float *k = kc + (size_t)(kf[i] + j) * ld + (size_t)kvh * d;
                double dot = 0.0;
                for (int c = 0; c < d; c++)
                    dot += (double)qi[c] * k[c];
                s[j] = 0.3 * dot;
                mx = s[j] > mx ? s[j] : mx;
            }
            for (int j = 0; j < kn[i]; j++)
                sum += s[j] = exp(s[j] - mx);
            for (int j = 0; j < kn[i]; j++) {
                const float *v = vc + (size_t)(kf[i] + j) * ld + (size_t)kvh * d;
                for (int c = 0; c < d; c++)
                    o[c] += s[j] / sum * v[c];
            }
        }
    check_err("attention_kv", nerr(out, want, (size_t)nq * nh * d), 1e-5);

    float x[3 * 5] = {1, 3, 3, 2, 0, NAN, -1, 4, NAN, 2, -5, -5, -5, -5, -5};
    int32_t am[3];
    T->argmax_rows(am, x, 3, 5);
    assert_int_equal(am[0], 1); /* the first of a tie */
    assert_int_equal(am[1], 2); /* NaN never larger */
    assert_int_equal(am[2], 0);
}

/* linear_bwd_set and swiglu_bwd_set write what linear_bwd and swiglu_bwd
 * add (those checked against finite differences above): into buffers of
 * NaN, which an op that read them would carry through, against the adding
 * op into zeros; dw and db still accumulate */
static void test_bwd_set(void **state)
{
    (void)state;
    new_case();
    const int n = 37, in = 23, out = 41;
    float *dout = frand((size_t)n * out, -1, 1), *x = frand((size_t)n * in, -1, 1), *w = frand((size_t)out * in, -1, 1);
    float *din_set = fvec((size_t)n * in), *din_add = fvec((size_t)n * in);
    float *dw_set = frand((size_t)out * in, -1, 1), *db_set = frand(out, -1, 1);
    float *dw_add = fvec((size_t)out * in), *db_add = fvec(out);
    memcpy(dw_add, dw_set, sizeof(float) * out * in);
    memcpy(db_add, db_set, sizeof(float) * out);
    for (int i = 0; i < n * in; i++)
        din_set[i] = NAN;
    T->linear_bwd_set(din_set, dw_set, db_set, dout, x, w, n, in, out);
    T->linear_bwd(din_add, dw_add, db_add, dout, x, w, n, in, out);
    for (int i = 0; i < n * in; i++)
        assert_float_equal(din_set[i], din_add[i], 1e-6 * (1 + fabsf(din_add[i])));
    for (int i = 0; i < out * in; i++)
        assert_float_equal(dw_set[i], dw_add[i], 1e-6 * (1 + fabsf(dw_add[i])));
    for (int i = 0; i < out; i++)
        assert_float_equal(db_set[i], db_add[i], 1e-6 * (1 + fabsf(db_add[i])));

    const size_t m = 1001;
    float *g = frand(m, -3, 3), *u = frand(m, -2, 2), *dy = frand(m, -1, 1);
    float *dg_set = fvec(m), *du_set = fvec(m), *dg_add = fvec(m), *du_add = fvec(m);
    for (size_t i = 0; i < m; i++)
        dg_set[i] = du_set[i] = NAN;
    T->swiglu_bwd_set(dg_set, du_set, dy, g, u, m);
    T->swiglu_bwd(dg_add, du_add, dy, g, u, m);
    for (size_t i = 0; i < m; i++) {
        assert_float_equal(dg_set[i], dg_add[i], 1e-6 * (1 + fabsf(dg_add[i])));
        assert_float_equal(du_set[i], du_add[i], 1e-6 * (1 + fabsf(du_add[i])));
    }

    /* gelu_bwd_set, rmsnorm_bwd_set: din into NaN against adding onto zeros;
     * rmsnorm's dw accumulates in both */
    float *dx_set = fvec(m), *dx_add = fvec(m);
    for (size_t i = 0; i < m; i++)
        dx_set[i] = NAN;
    T->gelu_bwd_set(dx_set, dy, g, m);
    T->gelu_bwd(dx_add, dy, g, m);
    for (size_t i = 0; i < m; i++)
        assert_float_equal(dx_set[i], dx_add[i], 1e-6 * (1 + fabsf(dx_add[i])));
    const int rn = 29, rc = 33;
    float *rx = frand((size_t)rn * rc, -2, 2), *rw = frand(rc, -1, 1), *rdy = frand((size_t)rn * rc, -1, 1);
    float *ry = fvec((size_t)rn * rc), *rstd = fvec(rn);
    T->rmsnorm_fwd(ry, rstd, rx, rw, rn, rc, 1e-6f);
    float *rd_set = fvec((size_t)rn * rc), *rd_add = fvec((size_t)rn * rc);
    float *rdw_set = frand(rc, -1, 1), *rdw_add = fvec(rc);
    memcpy(rdw_add, rdw_set, sizeof(float) * rc);
    for (int i = 0; i < rn * rc; i++)
        rd_set[i] = NAN;
    T->rmsnorm_bwd_set(rd_set, rdw_set, rdy, rx, rw, rstd, rn, rc);
    T->rmsnorm_bwd(rd_add, rdw_add, rdy, rx, rw, rstd, rn, rc);
    for (int i = 0; i < rn * rc; i++)
        assert_float_equal(rd_set[i], rd_add[i], 1e-6 * (1 + fabsf(rd_add[i])));
    for (int i = 0; i < rc; i++)
        assert_float_equal(rdw_set[i], rdw_add[i], 1e-6 * (1 + fabsf(rdw_add[i])));
}

/* every entry filled: a NULL here would crash a model at its first step */
/* the MLP ops are the ops in turn, bit for bit; mlp_bwd writes din (NaN
 * before) and adds to the weights' gradients */
static void test_mlp(void **state)
{
    (void)state;
    int n = 7, h = 12, i = 20;
    size_t nh = (size_t)n * h, ni = (size_t)n * i, nw = (size_t)i * h;
    float *x = frand(nh, -1, 1), *w = frand(3 * nw, -0.5, 0.5), *dy = frand(nh, -1, 1);
    float *g = fvec(ni), *u = fvec(ni), *mm = fvec(ni), *out = fvec(nh);
    float *g2 = fvec(ni), *u2 = fvec(ni), *mm2 = fvec(ni), *out2 = fvec(nh);
    op_cpu.mlp_fwd(out, g, u, mm, x, w, w + nw, w + 2 * nw, n, h, i);
    op_cpu.linear_fwd(g2, x, w, NULL, n, h, i);
    op_cpu.linear_fwd(u2, x, w + nw, NULL, n, h, i);
    op_cpu.swiglu_fwd(mm2, g2, u2, ni);
    op_cpu.linear_fwd(out2, mm2, w + 2 * nw, NULL, n, i, h);
    assert_memory_equal(out, out2, nh * 4);
    assert_memory_equal(mm, mm2, ni * 4);

    float *gw = frand(3 * nw, -1, 1), *gw2 = fvec(3 * nw), *din = fvec(nh), *din2 = fvec(nh);
    memcpy(gw2, gw, 3 * nw * 4);
    float *dg = fvec(ni), *du = fvec(ni), *dm = fvec(ni);
    for (size_t e = 0; e < nh; e++)
        din[e] = NAN;
    op_cpu.mlp_bwd(din, gw, gw + nw, gw + 2 * nw, dy, x, w, w + nw, w + 2 * nw, g, u, mm, dg, du, dm, n, h, i);
    /* the adding ops into zeros: the values the writing ones must give */
    float *dm2 = fvec(ni), *dg2 = fvec(ni), *du2 = fvec(ni);
    memset(dm2, 0, ni * 4), memset(dg2, 0, ni * 4), memset(du2, 0, ni * 4), memset(din2, 0, nh * 4);
    op_cpu.linear_bwd(dm2, gw2 + 2 * nw, NULL, dy, mm2, w + 2 * nw, n, i, h);
    op_cpu.swiglu_bwd(dg2, du2, dm2, g2, u2, ni);
    op_cpu.linear_bwd(din2, gw2, NULL, dg2, x, w, n, h, i);
    op_cpu.linear_bwd(din2, gw2 + nw, NULL, du2, x, w + nw, n, h, i);
    assert_memory_equal(din, din2, nh * 4);
    assert_memory_equal(gw, gw2, 3 * nw * 4);
}

/* linear3_fwd and linear3_bwd are linear_fwd, linear_bwd_set and
 * linear_bwd in turn, bit for bit: q, k and v of different widths, biases
 * or none; the backward writing din (NaN before) or adding to it, dw and db
 * adding (one db NULL) */
static void test_linear3(void **state)
{
    (void)state;
    new_case();
    const int n = 19, in = 24, d[3] = {24, 8, 8};
    float *x = frand((size_t)n * in, -1, 1);
    op_lin_t l[3], l2[3];
    for (int j = 0; j < 3; j++) {
        size_t nw = (size_t)d[j] * in, no = (size_t)n * d[j];
        float *w = frand(nw, -0.5, 0.5), *b = j == 1 ? NULL : frand(d[j], -1, 1);
        float *dw = frand(nw, -1, 1), *db = j == 2 ? NULL : frand(d[j], -1, 1);
        float *dw2 = fvec(nw), *db2 = db ? fvec(d[j]) : NULL;
        memcpy(dw2, dw, nw * 4);
        if (db)
            memcpy(db2, db, (size_t)d[j] * 4);
        l[j] = (op_lin_t){.w = w, .b = b, .dim = d[j], .out = fvec(no), .dout = frand(no, -1, 1), .dw = dw, .db = db};
        l2[j] = l[j];
        l2[j].out = fvec(no), l2[j].dw = dw2, l2[j].db = db2;
    }
    op_cpu.linear3_fwd(l, x, n, in);
    for (int j = 0; j < 3; j++) {
        op_cpu.linear_fwd(l2[j].out, x, l2[j].w, l2[j].b, n, in, d[j]);
        assert_memory_equal(l[j].out, l2[j].out, (size_t)n * d[j] * 4);
    }
    for (int set = 1; set >= 0; set--) {
        float *din = frand((size_t)n * in, -1, 1), *din2 = fvec((size_t)n * in);
        memcpy(din2, din, (size_t)n * in * 4);
        if (set)
            for (int e = 0; e < n * in; e++)
                din[e] = NAN;
        op_cpu.linear3_bwd(din, l, x, n, in, set);
        (set ? op_cpu.linear_bwd_set : op_cpu.linear_bwd)(din2, l2[0].dw, l2[0].db, l2[0].dout, x, l2[0].w, n, in, d[0]);
        op_cpu.linear_bwd(din2, l2[1].dw, l2[1].db, l2[1].dout, x, l2[1].w, n, in, d[1]);
        op_cpu.linear_bwd(din2, l2[2].dw, l2[2].db, l2[2].dout, x, l2[2].w, n, in, d[2]);
        assert_memory_equal(din, din2, (size_t)n * in * 4);
        for (int j = 0; j < 3; j++) {
            assert_memory_equal(l[j].dw, l2[j].dw, (size_t)d[j] * in * 4);
            if (l[j].db)
                assert_memory_equal(l[j].db, l2[j].db, (size_t)d[j] * 4);
        }
    }
}

static void test_table_complete(void **state)
{
    (void)state;
    assert_string_equal(op_cpu.name, "cpu");
    const void *ptrs[] = {
        (const void *)op_cpu.alloc,         (const void *)op_cpu.free,
        (const void *)op_cpu.zero,          (const void *)op_cpu.upload,
        (const void *)op_cpu.download,      (const void *)op_cpu.sync,
        (const void *)op_cpu.linear_fwd,    (const void *)op_cpu.linear_bwd,
        (const void *)op_cpu.linear_bwd_set, (const void *)op_cpu.swiglu_bwd_set,
        (const void *)op_cpu.rmsnorm_fwd,   (const void *)op_cpu.rmsnorm_bwd,
        (const void *)op_cpu.layernorm_fwd, (const void *)op_cpu.layernorm_bwd,
        (const void *)op_cpu.rope_fwd,      (const void *)op_cpu.rope_bwd,
        (const void *)op_cpu.swiglu_fwd,    (const void *)op_cpu.swiglu_bwd,
        (const void *)op_cpu.gelu_fwd,      (const void *)op_cpu.gelu_bwd,
        (const void *)op_cpu.silu_fwd,      (const void *)op_cpu.silu_bwd,
        (const void *)op_cpu.attention_fwd, (const void *)op_cpu.attention_bwd,
        (const void *)op_cpu.rows_copy,     (const void *)op_cpu.rows_add,
        (const void *)op_cpu.axpy,          (const void *)op_cpu.classifier_ce,
        (const void *)op_cpu.mse,           (const void *)op_cpu.flow_noise,
        (const void *)op_cpu.cfg_euler,     (const void *)op_cpu.mlp_fwd,
        (const void *)op_cpu.mlp_bwd,
        (const void *)op_cpu.linear3_fwd,   (const void *)op_cpu.linear3_bwd,
        (const void *)op_cpu.timestep_freq, (const void *)op_cpu.patchify_u8,
        (const void *)op_cpu.patchify_chw,  (const void *)op_cpu.unpatchify_chw,
        (const void *)op_cpu.conv2d_fwd,    (const void *)op_cpu.conv2d_bwd,
        (const void *)op_cpu.groupnorm_fwd, (const void *)op_cpu.groupnorm_bwd,
        (const void *)op_cpu.gn_conv2d_fwd,
        (const void *)op_cpu.adamw,         (const void *)op_cpu.ema,
        (const void *)op_cpu.sumsq,         (const void *)op_cpu.scale,
        (const void *)op_cpu.upsample2x,    (const void *)op_cpu.affine,
        (const void *)op_cpu.gauss_sample,  (const void *)op_cpu.unpatchify_u8,
        (const void *)op_cpu.attention_kv,  (const void *)op_cpu.argmax_rows,
        (const void *)op_cpu.hold_weights,  (const void *)op_cpu.track_weights,
        (const void *)op_cpu.grad_write,   (const void *)op_cpu.rmsnorm_bwd_set,
        (const void *)op_cpu.gelu_bwd_set,
    };
    /* the list above names every function pointer of op_table_t */
    assert_int_equal(sizeof ptrs / sizeof ptrs[0], (sizeof(op_table_t) - sizeof(const char *)) / sizeof(void *));
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++)
        if (!ptrs[i])
            fail_msg("op_cpu entry %zu is NULL", i);
}

int main(void)
{
    const char *env = getenv("TEST_OPS_SEED");
    base_seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
    printf("# test_ops: TEST_OPS_SEED=%llu\n", (unsigned long long)base_seed);
    if (getenv("TEST_OPS_FILTER")) /* e.g. TEST_OPS_FILTER='test_attention*' */
        cmocka_set_test_filter(getenv("TEST_OPS_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bwd_set, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_complete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mlp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_linear3, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attention_kv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_linear, setup, teardown),
        cmocka_unit_test_setup_teardown(test_norms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_activations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attention_visibility_rule, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attention_spans, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attention_small, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attention_tiles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_classifier_ce, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conv2d, setup, teardown),
        cmocka_unit_test_setup_teardown(test_groupnorm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gn_conv2d, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flow_noise, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timestep_freq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_patchify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adamw_ema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vector_ops, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
