/* cuda_table.cu — the CUDA backend's op table: every entry of op_table_t
 * (kernels/ops.h), each implemented in one file of kernels/cuda/. */
#include "cuda_internal.h"

static op_table_t cuda_table(void)
{
    op_table_t t = {};
    t.name = "cuda";
    t.alloc = cuda_alloc;
    t.free = cuda_free;
    t.zero = cuda_zero;
    t.upload = cuda_upload;
    t.download = cuda_download;
    t.sync = cuda_sync;
    t.linear_fwd = cuda_linear_fwd;
    t.linear_bwd = cuda_linear_bwd;
    t.linear_bwd_set = cuda_linear_bwd_set;
    t.rmsnorm_fwd = cuda_rmsnorm_fwd;
    t.rmsnorm_bwd = cuda_rmsnorm_bwd;
    t.rmsnorm_bwd_set = cuda_rmsnorm_bwd_set;
    t.layernorm_fwd = cuda_layernorm_fwd;
    t.layernorm_bwd = cuda_layernorm_bwd;
    t.rope_fwd = cuda_rope_fwd;
    t.rope_bwd = cuda_rope_bwd;
    t.swiglu_fwd = cuda_swiglu_fwd;
    t.mlp_fwd = cuda_mlp_fwd;
    t.mlp_bwd = cuda_mlp_bwd;
    t.linear3_fwd = cuda_linear3_fwd;
    t.linear3_bwd = cuda_linear3_bwd;
    t.swiglu_bwd = cuda_swiglu_bwd;
    t.swiglu_bwd_set = cuda_swiglu_bwd_set;
    t.gelu_fwd = cuda_gelu_fwd;
    t.gelu_bwd = cuda_gelu_bwd;
    t.gelu_bwd_set = cuda_gelu_bwd_set;
    t.silu_fwd = cuda_silu_fwd;
    t.silu_bwd = cuda_silu_bwd;
    t.attention_fwd = cuda_attention_fwd;
    t.attention_bwd = cuda_attention_bwd;
    t.attention_kv = cuda_attention_kv;
    t.rows_copy = cuda_rows_copy;
    t.rows_add = cuda_rows_add;
    t.axpy = cuda_axpy;
    t.classifier_ce = cuda_classifier_ce;
    t.mse = cuda_mse;
    t.flow_noise = cuda_flow_noise;
    t.cfg_euler = cuda_cfg_euler;
    t.timestep_freq = cuda_timestep_freq;
    t.patchify_u8 = cuda_patchify_u8;
    t.patchify_chw = cuda_patchify_chw;
    t.unpatchify_chw = cuda_unpatchify_chw;
    t.conv2d_fwd = cuda_conv2d_fwd;
    t.conv2d_bwd = cuda_conv2d_bwd;
    t.groupnorm_fwd = cuda_groupnorm_fwd;
    t.gn_conv2d_fwd = cuda_gn_conv2d_fwd;
    t.groupnorm_bwd = cuda_groupnorm_bwd;
    t.adamw = cuda_adamw;
    t.ema = cuda_ema;
    t.sumsq = cuda_sumsq;
    t.scale = cuda_scale;
    t.upsample2x = cuda_upsample2x;
    t.affine = cuda_affine;
    t.gauss_sample = cuda_gauss_sample;
    t.unpatchify_u8 = cuda_unpatchify_u8;
    t.argmax_rows = cuda_argmax_rows;
    t.hold_weights = cuda_hold_weights;
    t.grad_write = cuda_grad_write;
    t.track_weights = cuda_track_weights;
    return t;
}

/* filled before main by static initialisation (C++ has no designated
 * initialisers for every field in C++17) */
extern "C" const op_table_t op_cuda = cuda_table();
