/* ops.c — ops defined as other ops in turn (kernels/ops.h): the CPU's
 * version of them, and a backend's fallback where its own does not apply. */
#include "ops.h"

void op_mlp_fwd_by_ops(const op_table_t *t, float *out, float *gate, float *up, float *mm, const float *in,
                       const float *gate_w, const float *up_w, const float *down_w, int n, int h, int i)
{
    t->linear_fwd(gate, in, gate_w, NULL, n, h, i);
    t->linear_fwd(up, in, up_w, NULL, n, h, i);
    t->swiglu_fwd(mm, gate, up, (size_t)n * i);
    t->linear_fwd(out, mm, down_w, NULL, n, i, h);
}

void op_linear3_fwd_by_ops(const op_table_t *t, const op_lin_t *l, const float *in, int n, int in_dim)
{
    for (int j = 0; j < 3; j++)
        t->linear_fwd(l[j].out, in, l[j].w, l[j].b, n, in_dim, l[j].dim);
}

void op_linear3_bwd_by_ops(const op_table_t *t, float *din, const op_lin_t *l, const float *in, int n, int in_dim,
                           int set)
{
    for (int j = 0; j < 3; j++)
        (j == 0 && set ? t->linear_bwd_set : t->linear_bwd)(din, l[j].dw, l[j].db, l[j].dout, in, l[j].w, n, in_dim,
                                                            l[j].dim);
}

void op_mlp_bwd_by_ops(const op_table_t *t, float *din, float *dgate_w, float *dup_w, float *ddown_w, const float *dout,
                       const float *in, const float *gate_w, const float *up_w, const float *down_w, const float *gate,
                       const float *up, const float *mm, float *dgate, float *dup, float *dmm, int n, int h, int i)
{
    t->linear_bwd_set(dmm, ddown_w, NULL, dout, mm, down_w, n, i, h);
    t->swiglu_bwd_set(dgate, dup, dmm, gate, up, (size_t)n * i);
    t->linear_bwd_set(din, dgate_w, NULL, dgate, in, gate_w, n, h, i);
    t->linear_bwd(din, dup_w, NULL, dup, in, up_w, n, h, i);
}
