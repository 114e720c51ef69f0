/* cpu_linear.c — the linear layer, out = in · Wᵀ + b with W [out, in] as
 * PyTorch stores it; every product is one cblas_sgemm (OpenBLAS threads it). */
#include <cblas.h>

#include "cpu.h"

void cpu_linear_fwd(float *out, const float *in, const float *w, const float *b, int n, int in_dim, int out_dim)
{
    if (n <= 0 || out_dim <= 0)
        return;
    /* the bias is written first so the product can accumulate onto it */
    float beta = 0.0f;
    if (b) {
#pragma omp parallel for if ((size_t)n * out_dim > CPU_OMP_MIN)
        for (int r = 0; r < n; r++)
            for (int o = 0; o < out_dim; o++)
                out[(size_t)r * out_dim + o] = b[o];
        beta = 1.0f;
    }
    if (in_dim <= 0) {
        if (!b)
            for (size_t i = 0; i < (size_t)n * out_dim; i++)
                out[i] = 0.0f;
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out_dim, in_dim, 1.0f, in, in_dim, w, in_dim, beta, out,
                out_dim);
}

/* beta_in 1: din += dout·w (linear_bwd); 0: din = dout·w (linear_bwd_set) */
static void linear_bwd(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int n,
                       int in_dim, int out_dim, float beta_in)
{
    if (n <= 0 || out_dim <= 0)
        return;
    if (din && in_dim > 0) /* din[n,i] (+)= dout[n,o] · w[o,i] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in_dim, out_dim, 1.0f, dout, out_dim, w, in_dim,
                    beta_in, din, in_dim);
    if (dw && in_dim > 0) /* dw[o,i] += dout[n,o]ᵀ · in[n,i] (= when grad_write) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out_dim, in_dim, n, 1.0f, dout, out_dim, in, in_dim,
                    cpu_gw_beta(), dw, in_dim);
    if (db) {
        /* column sums: threads own blocks of columns, so no two write one db[o] */
        int nblk = (out_dim + 63) / 64;
#pragma omp parallel for if ((size_t)n * out_dim > CPU_OMP_MIN)
        for (int blk = 0; blk < nblk; blk++) {
            int o0 = blk * 64, o1 = o0 + 64 < out_dim ? o0 + 64 : out_dim;
            float acc[64] = {0};
            for (int r = 0; r < n; r++) {
                const float *g = dout + (size_t)r * out_dim;
                for (int o = o0; o < o1; o++)
                    acc[o - o0] += g[o];
            }
            for (int o = o0; o < o1; o++)
                cpu_gw_add(&db[o], acc[o - o0]);
        }
    }
}

void cpu_linear_bwd(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int n,
                    int in_dim, int out_dim)
{
    linear_bwd(din, dw, db, dout, in, w, n, in_dim, out_dim, 1.0f);
}

void cpu_linear_bwd_set(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int n,
                        int in_dim, int out_dim)
{
    linear_bwd(din, dw, db, dout, in, w, n, in_dim, out_dim, 0.0f);
}

/* q, k and v as linear layers in turn (ops.h) */
void cpu_linear3_fwd(const op_lin_t *l, const float *in, int n, int in_dim)
{
    op_linear3_fwd_by_ops(&op_cpu, l, in, n, in_dim);
}

void cpu_linear3_bwd(float *din, const op_lin_t *l, const float *in, int n, int in_dim, int set)
{
    op_linear3_bwd_by_ops(&op_cpu, din, l, in, n, in_dim, set);
}

/* the MLP as its ops in turn (ops.h) */
void cpu_mlp_fwd(float *out, float *gate, float *up, float *mm, const float *in, const float *gate_w, const float *up_w,
                 const float *down_w, int n, int h, int i)
{
    op_mlp_fwd_by_ops(&op_cpu, out, gate, up, mm, in, gate_w, up_w, down_w, n, h, i);
}

void cpu_mlp_bwd(float *din, float *dgate_w, float *dup_w, float *ddown_w, const float *dout, const float *in,
                 const float *gate_w, const float *up_w, const float *down_w, const float *gate, const float *up,
                 const float *mm, float *dgate, float *dup, float *dmm, int n, int h, int i)
{
    op_mlp_bwd_by_ops(&op_cpu, din, dgate_w, dup_w, ddown_w, dout, in, gate_w, up_w, down_w, gate, up, mm, dgate, dup,
                      dmm, n, h, i);
}
