/* cpu_conv.c — the VAE's convolution and GroupNorm, NCHW.
 *
 * conv2d is im2col + sgemm: for a run of output pixels the input patches
 * become a matrix col [ci·kh·kw, P], and out[co, P] = W[co, ci·kh·kw] · col.
 * P is bounded so col stays under COL_FLOATS (the whole image at once would
 * be ci·9·H·W floats, hundreds of MB at the VAE's sizes); that buffer is
 * malloc'd once per call, and if it cannot be, the outputs are filled with
 * NaN (the op has no error return). 1×1 convolutions without stride or
 * padding skip im2col: their col is the input itself.
 *
 * Padding is per side (pad_t, pad_l, pad_b, pad_r) because FLUX's Downsample
 * pads right and bottom by one only, then runs a stride-2 3×3 conv. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"

#define COL_FLOATS (1 << 22)

typedef struct {
    int ci, h, wd, kh, kw, stride, pad_t, pad_l, ho, wo;
} conv_geom_t;

static conv_geom_t conv_geom(int ci, int h, int wd, int kh, int kw, int stride, int pad_t, int pad_l, int pad_b,
                             int pad_r)
{
    conv_geom_t g = {ci, h, wd, kh, kw, stride, pad_t, pad_l, 0, 0};
    g.ho = (h + pad_t + pad_b - kh) / stride + 1;
    g.wo = (wd + pad_l + pad_r - kw) / stride + 1;
    return g;
}

/* GroupNorm applied on the way into the columns (gn_conv2d_fwd): one
 * image's statistics per group, the affine per channel, swish when act */
typedef struct {
    const float *mean, *rstd, *w, *b; /* mean, rstd [groups] of this image */
    int cpg, act;
} conv_norm_t;

/* col[kk][pp] = in[c][iy][ix] for output pixels [p0, p0+np), zero where the
 * tap falls in the padding; kk = (c·kh + ky)·kw + kx. With nm, each tap is
 * the normalized value, by the expressions of cpu_groupnorm_fwd and
 * cpu_silu_fwd (the padding stays zero: it pads the normalized input). */
static void conv_im2col_norm(float *col, const float *in, const conv_geom_t *g, int p0, int np, const conv_norm_t *nm)
{
    int K = g->ci * g->kh * g->kw;
#pragma omp parallel for if ((size_t)K * np > CPU_OMP_MIN)
    for (int kk = 0; kk < K; kk++) {
        int c = kk / (g->kh * g->kw), ky = kk / g->kw % g->kh, kx = kk % g->kw;
        const float *src = in + (size_t)c * g->h * g->wd;
        float *dst = col + (size_t)kk * np;
        float mu = 0.0f, rs = 1.0f, wc = 1.0f, bc = 0.0f;
        if (nm) {
            mu = nm->mean[c / nm->cpg], rs = nm->rstd[c / nm->cpg];
            wc = nm->w ? nm->w[c] : 1.0f, bc = nm->b ? nm->b[c] : 0.0f;
        }
        for (int pp = 0; pp < np; pp++) {
            int p = p0 + pp, oy = p / g->wo, ox = p % g->wo;
            int iy = oy * g->stride - g->pad_t + ky, ix = ox * g->stride - g->pad_l + kx;
            float v = 0.0f;
            if (iy >= 0 && iy < g->h && ix >= 0 && ix < g->wd) {
                v = src[(size_t)iy * g->wd + ix];
                if (nm) {
                    v = (v - mu) * rs * wc + bc;
                    if (nm->act)
                        v = v * cpu_sigmoid(v);
                }
            }
            dst[pp] = v;
        }
    }
}

static void conv_im2col(float *col, const float *in, const conv_geom_t *g, int p0, int np)
{
    conv_im2col_norm(col, in, g, p0, np, NULL);
}

/* the adjoint of im2col: din[c][iy][ix] += dcol[kk][pp]; threads own input
 * channels, so no two write one pixel */
static void conv_col2im(float *din, const float *dcol, const conv_geom_t *g, int p0, int np)
{
    int taps = g->kh * g->kw;
#pragma omp parallel for if ((size_t)g->ci * taps * np > CPU_OMP_MIN)
    for (int c = 0; c < g->ci; c++) {
        float *dst = din + (size_t)c * g->h * g->wd;
        for (int t = 0; t < taps; t++) {
            int ky = t / g->kw, kx = t % g->kw;
            const float *src = dcol + ((size_t)c * taps + t) * np;
            for (int pp = 0; pp < np; pp++) {
                int p = p0 + pp, oy = p / g->wo, ox = p % g->wo;
                int iy = oy * g->stride - g->pad_t + ky, ix = ox * g->stride - g->pad_l + kx;
                if (iy >= 0 && iy < g->h && ix >= 0 && ix < g->wd)
                    dst[(size_t)iy * g->wd + ix] += src[pp];
            }
        }
    }
}

static int conv_is_pointwise(const conv_geom_t *g, int pad_b, int pad_r)
{
    return g->kh == 1 && g->kw == 1 && g->stride == 1 && g->pad_t == 0 && g->pad_l == 0 && pad_b == 0 && pad_r == 0;
}

static int conv_chunk(int K, int hwo)
{
    int P = COL_FLOATS / (K > 0 ? K : 1);
    return P < 1 ? 1 : P > hwo ? hwo : P;
}

static void conv_fill_nan(float *x, size_t n)
{
    if (!x)
        return;
    for (size_t i = 0; i < n; i++)
        x[i] = NAN;
}

/* out[i, o, :] = b[o], the products then add to it (nothing when b is NULL) */
static void conv_bias_fill(float *out, const float *b, int n, int co, int hwo)
{
    if (!b)
        return;
#pragma omp parallel for collapse(2) if ((size_t)n * co * hwo > CPU_OMP_MIN)
    for (int i = 0; i < n; i++)
        for (int o = 0; o < co; o++) {
            float *dst = out + ((size_t)i * co + o) * hwo;
            for (int p = 0; p < hwo; p++)
                dst[p] = b[o];
        }
}

void cpu_conv2d_fwd(float *out, const float *in, const float *w, const float *b, int n, int ci, int h, int wd, int co,
                    int kh, int kw, int stride, int pad_t, int pad_l, int pad_b, int pad_r)
{
    conv_geom_t g = conv_geom(ci, h, wd, kh, kw, stride, pad_t, pad_l, pad_b, pad_r);
    int K = ci * kh * kw, hwo = g.ho * g.wo;
    if (n <= 0 || co <= 0 || hwo <= 0)
        return;
    float beta = b ? 1.0f : 0.0f;
    conv_bias_fill(out, b, n, co, hwo);
    if (conv_is_pointwise(&g, pad_b, pad_r)) {
        for (int i = 0; i < n; i++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, co, hwo, ci, 1.0f, w, ci, in + (size_t)i * ci * hwo,
                        hwo, beta, out + (size_t)i * co * hwo, hwo);
        return;
    }
    int P = conv_chunk(K, hwo);
    float *col = malloc((size_t)K * P * sizeof(float));
    if (!col) {
        conv_fill_nan(out, (size_t)n * co * hwo);
        return;
    }
    for (int i = 0; i < n; i++) {
        const float *x = in + (size_t)i * ci * h * wd;
        float *y = out + (size_t)i * co * hwo;
        for (int p0 = 0; p0 < hwo; p0 += P) {
            int np = hwo - p0 < P ? hwo - p0 : P;
            conv_im2col(col, x, &g, p0, np);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, co, np, K, 1.0f, w, K, col, np, beta, y + p0, hwo);
        }
    }
    free(col);
}

void cpu_conv2d_bwd(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int n, int ci,
                    int h, int wd, int co, int kh, int kw, int stride, int pad_t, int pad_l, int pad_b, int pad_r)
{
    conv_geom_t g = conv_geom(ci, h, wd, kh, kw, stride, pad_t, pad_l, pad_b, pad_r);
    int K = ci * kh * kw, hwo = g.ho * g.wo;
    if (n <= 0 || co <= 0 || hwo <= 0)
        return;
    if (cpu_grad_write_on && dw) /* grad_write: the products below add onto zeros */
        memset(dw, 0, (size_t)co * K * sizeof(float));
    if (db) {
#pragma omp parallel for if ((size_t)n * co * hwo > CPU_OMP_MIN)
        for (int o = 0; o < co; o++) { /* in double: n·ho·wo reaches 10⁵ at the VAE's sizes */
            double acc = 0.0;
            for (int i = 0; i < n; i++) {
                const float *src = dout + ((size_t)i * co + o) * hwo;
                for (int p = 0; p < hwo; p++)
                    acc += src[p];
            }
            cpu_gw_add(&db[o], (float)acc);
        }
    }
    if (!din && !dw)
        return;
    if (conv_is_pointwise(&g, pad_b, pad_r)) {
        for (int i = 0; i < n; i++) {
            const float *gy = dout + (size_t)i * co * hwo;
            if (din)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ci, hwo, co, 1.0f, w, ci, gy, hwo, 1.0f,
                            din + (size_t)i * ci * hwo, hwo);
            if (dw)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, co, ci, hwo, 1.0f, gy, hwo,
                            in + (size_t)i * ci * hwo, hwo, 1.0f, dw, ci);
        }
        return;
    }
    int P = conv_chunk(K, hwo);
    float *col = malloc((size_t)K * P * sizeof(float));
    if (!col) {
        conv_fill_nan(din, (size_t)n * ci * h * wd);
        conv_fill_nan(dw, (size_t)co * K);
        return;
    }
    for (int i = 0; i < n; i++) {
        const float *x = in + (size_t)i * ci * h * wd, *gy = dout + (size_t)i * co * hwo;
        for (int p0 = 0; p0 < hwo; p0 += P) {
            int np = hwo - p0 < P ? hwo - p0 : P;
            if (dw) { /* dw[co, K] += dout[co, np] · colᵀ */
                conv_im2col(col, x, &g, p0, np);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, co, K, np, 1.0f, gy + p0, hwo, col, np, 1.0f, dw,
                            K);
            }
            if (din) { /* dcol[K, np] = Wᵀ · dout, reusing col, then scattered back */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, np, co, 1.0f, w, K, gy + p0, hwo, 0.0f, col,
                            np);
                conv_col2im(din + (size_t)i * ci * h * wd, col, &g, p0, np);
            }
        }
    }
    free(col);
}

/* GroupNorm: statistics per (sample, group) over (c/groups)·hw values, summed
 * in double because a group holds up to ~10⁶ values at the VAE's sizes.
 * Affine per channel. */
/* the statistics of each (sample, group): mean and 1/sqrt(var + eps), two
 * passes in double */
static void gn_stats(float *mean, float *rstd, const float *in, int n, int c, int hw, int groups, float eps)
{
    int cpg = c / groups;
    size_t cnt = (size_t)cpg * hw;
#pragma omp parallel for collapse(2) if ((size_t)n * c * hw > CPU_OMP_MIN)
    for (int i = 0; i < n; i++)
        for (int gi = 0; gi < groups; gi++) {
            const float *x = in + ((size_t)i * c + (size_t)gi * cpg) * hw;
            double s = 0.0, v = 0.0;
            for (size_t j = 0; j < cnt; j++)
                s += x[j];
            double mu = s / (double)cnt;
            for (size_t j = 0; j < cnt; j++)
                v += (x[j] - mu) * (x[j] - mu);
            mean[(size_t)i * groups + gi] = (float)mu;
            rstd[(size_t)i * groups + gi] = (float)(1.0 / sqrt(v / (double)cnt + eps));
        }
}

void cpu_groupnorm_fwd(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b, int n,
                       int c, int hw, int groups, float eps)
{
    size_t ng = (size_t)n * groups;
    float *st = malloc(2 * ng * sizeof(float));
    if (!st) {
        conv_fill_nan(out, (size_t)n * c * hw);
        return;
    }
    gn_stats(st, st + ng, in, n, c, hw, groups, eps);
    int cpg = c / groups;
#pragma omp parallel for collapse(2) if ((size_t)n * c * hw > CPU_OMP_MIN)
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++) {
            size_t gi = (size_t)i * groups + ch / cpg, base = ((size_t)i * c + ch) * hw;
            float muf = st[gi], rs = st[ng + gi], wc = w ? w[ch] : 1.0f, bc = b ? b[ch] : 0.0f;
            for (int p = 0; p < hw; p++)
                out[base + p] = (in[base + p] - muf) * rs * wc + bc;
        }
    if (mean)
        memcpy(mean, st, ng * sizeof(float));
    if (rstd)
        memcpy(rstd, st + ng, ng * sizeof(float));
    free(st);
}

/* GroupNorm (+ swish) on the way into the columns, the product, then res:
 * the bits of groupnorm_fwd, silu_fwd, conv2d_fwd and axpy in turn for
 * k > 1 (a 1×1 convolution alone skips the columns, so its products may
 * round otherwise) */
void cpu_gn_conv2d_fwd(float *out, float *mean, float *rstd, const float *in, const float *gw, const float *gb, int groups,
                       float eps, int act, const float *w, const float *b, const float *res, int n, int ci, int h,
                       int wd, int co, int k)
{
    int pad = k / 2;
    conv_geom_t g = conv_geom(ci, h, wd, k, k, 1, pad, pad, pad, pad);
    int K = ci * k * k, hwo = g.ho * g.wo;
    if (n <= 0 || co <= 0 || hwo <= 0)
        return;
    size_t ng = (size_t)n * groups;
    int P = conv_chunk(K, hwo);
    float *st = malloc(2 * ng * sizeof(float)), *col = malloc((size_t)K * P * sizeof(float));
    if (!st || !col) {
        free(st);
        free(col);
        conv_fill_nan(out, (size_t)n * co * hwo);
        return;
    }
    gn_stats(st, st + ng, in, n, ci, h * wd, groups, eps);
    conv_bias_fill(out, b, n, co, hwo);
    for (int i = 0; i < n; i++) {
        conv_norm_t nm = {st + (size_t)i * groups, st + ng + (size_t)i * groups, gw, gb, ci / groups, act};
        const float *x = in + (size_t)i * ci * h * wd;
        float *y = out + (size_t)i * co * hwo;
        for (int p0 = 0; p0 < hwo; p0 += P) {
            int np = hwo - p0 < P ? hwo - p0 : P;
            conv_im2col_norm(col, x, &g, p0, np, &nm);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, co, np, K, 1.0f, w, K, col, np, b ? 1.0f : 0.0f,
                        y + p0, hwo);
        }
    }
    if (res)
        cpu_axpy(out, 1.0f, res, (size_t)n * co * hwo);
    if (mean)
        memcpy(mean, st, ng * sizeof(float));
    if (rstd)
        memcpy(rstd, st + ng, ng * sizeof(float));
    free(st);
    free(col);
}

/* gy = dout ⊙ w[ch]:  din = rstd·(gy − mean(gy) − x̂·mean(gy ⊙ x̂)) over the
 * group; dw[ch] += Σ dout ⊙ x̂, db[ch] += Σ dout over samples and pixels
 * (threads own channels). */
void cpu_groupnorm_bwd(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                       const float *mean, const float *rstd, int n, int c, int hw, int groups)
{
    int cpg = c / groups;
    size_t cnt = (size_t)cpg * hw;
    if (din) {
#pragma omp parallel for collapse(2) if ((size_t)n * c * hw > CPU_OMP_MIN)
        for (int i = 0; i < n; i++)
            for (int gi = 0; gi < groups; gi++) {
                size_t base = ((size_t)i * c + (size_t)gi * cpg) * hw;
                const float *x = in + base, *gy = dout + base;
                float mu = mean[(size_t)i * groups + gi], rs = rstd[(size_t)i * groups + gi];
                double gm = 0.0, gx = 0.0;
                for (int cc = 0; cc < cpg; cc++) {
                    float wc = w ? w[gi * cpg + cc] : 1.0f;
                    for (int p = 0; p < hw; p++) {
                        size_t j = (size_t)cc * hw + p;
                        double gj = (double)gy[j] * wc;
                        gm += gj;
                        gx += gj * (x[j] - mu) * rs;
                    }
                }
                float gmf = (float)(gm / (double)cnt), gxf = (float)(gx / (double)cnt);
                for (int cc = 0; cc < cpg; cc++) {
                    float wc = w ? w[gi * cpg + cc] : 1.0f;
                    for (int p = 0; p < hw; p++) {
                        size_t j = (size_t)cc * hw + p;
                        din[base + j] += rs * (gy[j] * wc - gmf - (x[j] - mu) * rs * gxf);
                    }
                }
            }
    }
    if (dw || db) {
#pragma omp parallel for if ((size_t)n * c * hw > CPU_OMP_MIN)
        for (int ch = 0; ch < c; ch++) {
            int gi = ch / cpg;
            double aw = 0.0, ab = 0.0;
            for (int i = 0; i < n; i++) {
                const float *x = in + ((size_t)i * c + ch) * hw, *gy = dout + ((size_t)i * c + ch) * hw;
                float mu = mean[(size_t)i * groups + gi], rs = rstd[(size_t)i * groups + gi];
                for (int p = 0; p < hw; p++) {
                    aw += (double)gy[p] * (x[p] - mu) * rs;
                    ab += gy[p];
                }
            }
            if (dw)
                cpu_gw_add(&dw[ch], (float)aw);
            if (db)
                cpu_gw_add(&db[ch], (float)ab);
        }
    }
}
