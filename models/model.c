/* model.c — parameter layout, activation plan, forward and backward of the
 * BAGEL network (model.h). The forward saves what the backward needs; the
 * backward calls the ops' backward functions in exactly the reverse order.
 *
 * Rows: every [S, ·] activation of the language model is in expert order
 * (understanding rows [0, n_und), generation rows [n_und, S)), so that each
 * expert's projections are one matrix product over a contiguous block; only
 * attention needs sequence order, and it reads it through row_of_pos. */
#include "model.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const model_loss_opts_t model_default_loss = {.ce_weight = 1.0f, .mse_weight = 1.0f, .grad_scale = 1.0f};

/* ---- activations ---------------------------------------------------- */

typedef struct llm_layer_acts {
    float *rstd1;          /* (S) */
    float *a;              /* (S, H) input norm */
    float *qraw, *q;       /* (S, Q) before QK-norm; after QK-norm and RoPE */
    float *kraw, *k, *v;   /* (S, K) */
    float *rstdq, *rstdk;  /* (S·nh), (S·nkv) */
    float *o;              /* (S, Q) attention output */
    float *lse;            /* (S, nh) */
    float *xmid;           /* (S, H) after the attention residual */
    float *rstd2;          /* (S) */
    float *bn;             /* (S, H) post-attention norm */
    float *gate, *up, *mm; /* (S, I) */
} llm_layer_acts_t;

typedef struct vit_layer_acts {
    float *mean1, *rstd1, *a; /* (Nv), (Nv), (Nv, Dv) */
    float *q, *k, *v, *o;     /* (Nv, Dv) */
    float *lse;               /* (Nv, heads) */
    float *xmid;              /* (Nv, Dv) */
    float *mean2, *rstd2, *bn;
    float *f1, *g; /* (Nv, Iv) */
} vit_layer_acts_t;

struct model_acts {
    /* host staging of the step (planned with the activations, so that the
     * step allocates nothing): storage rows (S), the ViT images' split
     * starts and firsts (2·(images + 1)) and modes (images + 1), per-token
     * loss scales and losses (max(Nc, Nl) each) */
    void *host;
    int32_t *h_rows, *h_vit;
    uint8_t *h_mode;
    float *h_f1, *h_f2;

    /* batch, uploaded */
    int32_t *pos_row;               /* (S) RoPE position per storage row */
    int32_t *row_of_pos;            /* (S) */
    int32_t *split_start;           /* (splits + 1) */
    uint8_t *split_mode;            /* (splits) */
    int32_t *split_first;           /* (splits) */
    int32_t *text_ids, *text_row;   /* (S) */
    int32_t *ce_row, *ce_label;     /* (Nc) */
    float *ce_dloss, *ce_loss;      /* (Nc) */
    float *vit_tokens;              /* (Nv, 3p²) */
    int32_t *vit_posid, *vit_row;   /* (Nv) */
    int32_t *vit_start, *vit_first; /* (vit images + 1) */
    uint8_t *vit_mode;
    float *x0, *eps, *t;         /* (Nl, D), (Nl, D), (Nl) */
    int32_t *lat_posid;          /* (Nl) */
    int32_t *mse_row, *mse_lat;  /* (Nl) */
    float *mse_dloss, *mse_loss; /* (Nl) */

    /* language model */
    float **resid;        /* (L + 1) × (S, H): layer inputs, then the last output */
    llm_layer_acts_t *ll; /* (L) */
    float *rstdf, *hf;    /* (S), (S, H) final norms */
    /* heads */
    float *hc, *dhc;                      /* (Nc, H) */
    float *ce_scratch;                    /* (chunk, V) */
    float *hm, *pred, *tgt, *dpred, *dhm; /* (Nl, H), (Nl, D) ... */
    /* latent embedding */
    float *xt, *target;      /* (Nl, D) */
    float *tf;               /* (Nl, 256) */
    float *te1, *te1s, *te2; /* (Nl, H) */
    /* ViT */
    float **vres;                /* (Lv + 1) × (Nv, Dv) */
    vit_layer_acts_t *vl;        /* (Lv) */
    float *pmean, *prstd, *vout; /* (Nv), (Nv), (Nv, Dv) */
    float *c1, *c1g, *c2;        /* (Nv, H) */

    /* backward scratch */
    float *dres, *dhf, *da, *dbn;                      /* (S, H) */
    float *dq, *dqraw, *do_;                           /* (S, Q) */
    float *dk, *dkraw, *dv;                            /* (S, K) */
    float *dgate, *dup, *dmm;                          /* (S, I) */
    float *dvres, *dva, *dvq, *dvk, *dvv, *dvo, *dvbn; /* (Nv, Dv) */
    float *dvf1, *dvg;                                 /* (Nv, Iv) */
    float *dc1, *dc1g, *dc2;                           /* (Nv, H) */
    float *dte1, *dte1s;                               /* (Nl, H) */

    /* inference (model_infer_forward): the cache the layers' attention
     * reads and writes instead of the packed attention, and latents that
     * come in as x_t itself rather than as x0 and noise */
    const model_kv_t *kv;
    int lat_direct;
    int vit_feat; /* this batch's ViT output came with it (b->vit_feat): the ViT does not run */

    /* the batch as last run */
    int S, n_und, n_text, n_vit, n_vit_images, n_lat, n_ce, n_mse, n_splits;
    model_loss_opts_t lo;
    int train;
};

/* ---- parameters ------------------------------------------------------ */

typedef struct planner {
    model_t *m;
    int pass; /* 0 count, 1 fill */
    size_t off;
    int n;
} planner_t;

static void P(planner_t *p, float **w, float **g, int group, int trainable, int ndim, int64_t d0, int64_t d1,
              const char *fmt, ...) __attribute__((format(printf, 9, 10)));

static void P(planner_t *p, float **w, float **g, int group, int trainable, int ndim, int64_t d0, int64_t d1,
              const char *fmt, ...)
{
    size_t numel = (size_t)d0 * (size_t)(ndim == 2 ? d1 : 1);
    if (p->pass == 1) {
        model_param_t *q = &p->m->params[p->n];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(q->name, sizeof q->name, fmt, ap);
        va_end(ap);
        q->ndim = ndim;
        q->shape[0] = d0;
        q->shape[1] = ndim == 2 ? d1 : 0;
        q->offset = p->off;
        q->numel = numel;
        q->trainable = trainable;
        q->group = group;
        q->w = w;
        q->g = g;
    }
    p->off += (numel + 15) & ~(size_t)15; /* 64-byte aligned tensors */
    p->n++;
}

static void plan_params(planner_t *p)
{
    model_t *m = p->m;
    const model_config_t *c = &m->cfg;
    model_weights_t *w = &m->w, *g = &m->g;
    int H = c->hidden, Q = c->heads * c->head_dim, K = c->kv_heads * c->head_dim, I = c->inter;
    const char *lm = "language_model.model";
    P(p, &w->embed, &g->embed, MODEL_GROUP_LLM, 1, 2, c->vocab, H, "%s.embed_tokens.weight", lm);
    for (int l = 0; l < c->layers; l++) {
        for (int e = 0; e < 2; e++) {
            model_expert_t *we = &w->layers[2 * l + e], *ge = &g->layers[2 * l + e];
            const char *x = e ? "_moe_gen" : "";
            int G = MODEL_GROUP_LLM;
            P(p, &we->in_norm, &ge->in_norm, G, 1, 1, H, 0, "%s.layers.%d.input_layernorm%s.weight", lm, l, x);
            P(p, &we->q_w, &ge->q_w, G, 1, 2, Q, H, "%s.layers.%d.self_attn.q_proj%s.weight", lm, l, x);
            P(p, &we->q_b, &ge->q_b, G, 1, 1, Q, 0, "%s.layers.%d.self_attn.q_proj%s.bias", lm, l, x);
            P(p, &we->k_w, &ge->k_w, G, 1, 2, K, H, "%s.layers.%d.self_attn.k_proj%s.weight", lm, l, x);
            P(p, &we->k_b, &ge->k_b, G, 1, 1, K, 0, "%s.layers.%d.self_attn.k_proj%s.bias", lm, l, x);
            P(p, &we->v_w, &ge->v_w, G, 1, 2, K, H, "%s.layers.%d.self_attn.v_proj%s.weight", lm, l, x);
            P(p, &we->v_b, &ge->v_b, G, 1, 1, K, 0, "%s.layers.%d.self_attn.v_proj%s.bias", lm, l, x);
            P(p, &we->o_w, &ge->o_w, G, 1, 2, H, Q, "%s.layers.%d.self_attn.o_proj%s.weight", lm, l, x);
            if (c->qk_norm) {
                P(p, &we->q_norm, &ge->q_norm, G, 1, 1, c->head_dim, 0, "%s.layers.%d.self_attn.q_norm%s.weight", lm, l,
                  x);
                P(p, &we->k_norm, &ge->k_norm, G, 1, 1, c->head_dim, 0, "%s.layers.%d.self_attn.k_norm%s.weight", lm, l,
                  x);
            }
            P(p, &we->post_norm, &ge->post_norm, G, 1, 1, H, 0, "%s.layers.%d.post_attention_layernorm%s.weight", lm, l,
              x);
            const char *mlp = e ? "mlp_moe_gen" : "mlp";
            P(p, &we->gate_w, &ge->gate_w, G, 1, 2, I, H, "%s.layers.%d.%s.gate_proj.weight", lm, l, mlp);
            P(p, &we->up_w, &ge->up_w, G, 1, 2, I, H, "%s.layers.%d.%s.up_proj.weight", lm, l, mlp);
            P(p, &we->down_w, &ge->down_w, G, 1, 2, H, I, "%s.layers.%d.%s.down_proj.weight", lm, l, mlp);
        }
    }
    P(p, &w->norm[0], &g->norm[0], MODEL_GROUP_LLM, 1, 1, H, 0, "%s.norm.weight", lm);
    P(p, &w->norm[1], &g->norm[1], MODEL_GROUP_LLM, 1, 1, H, 0, "%s.norm_moe_gen.weight", lm);
    if (!c->tie_embeddings)
        P(p, &w->lm_head, &g->lm_head, MODEL_GROUP_LLM, 1, 2, c->vocab, H, "language_model.lm_head.weight");
    if (c->visual_gen) {
        int D = model_latent_dim(c), G = MODEL_GROUP_GEN_HEADS, L = c->max_latent_size;
        P(p, &w->te1_w, &g->te1_w, G, 1, 2, H, MODEL_TIME_FREQ, "time_embedder.mlp.0.weight");
        P(p, &w->te1_b, &g->te1_b, G, 1, 1, H, 0, "time_embedder.mlp.0.bias");
        P(p, &w->te2_w, &g->te2_w, G, 1, 2, H, H, "time_embedder.mlp.2.weight");
        P(p, &w->te2_b, &g->te2_b, G, 1, 1, H, 0, "time_embedder.mlp.2.bias");
        P(p, &w->vae2llm_w, &g->vae2llm_w, G, 1, 2, H, D, "vae2llm.weight");
        P(p, &w->vae2llm_b, &g->vae2llm_b, G, 1, 1, H, 0, "vae2llm.bias");
        P(p, &w->llm2vae_w, &g->llm2vae_w, G, 1, 2, D, H, "llm2vae.weight");
        P(p, &w->llm2vae_b, &g->llm2vae_b, G, 1, 1, D, 0, "llm2vae.bias");
        P(p, &w->latent_pos, &g->latent_pos, MODEL_GROUP_FIXED, 0, 2, (int64_t)L * L, H, "latent_pos_embed.pos_embed");
    }
    if (c->visual_und) {
        int Dv = c->vit_hidden, Iv = c->vit_inter, G = MODEL_GROUP_VIT;
        const char *vm = "vit_model.vision_model";
        P(p, &w->patch_w, &g->patch_w, G, 1, 2, Dv, model_vit_dim(c), "%s.embeddings.patch_embedding.weight", vm);
        P(p, &w->patch_b, &g->patch_b, G, 1, 1, Dv, 0, "%s.embeddings.patch_embedding.bias", vm);
        P(p, &w->vit_posemb, &g->vit_posemb, G, 1, 2, c->vit_positions, Dv, "%s.embeddings.position_embedding.weight",
          vm);
        for (int j = 0; j < c->vit_layers; j++) {
            model_vit_layer_t *wv = &w->vit[j], *gv = &g->vit[j];
            const char *e = "encoder.layers";
            P(p, &wv->ln1_w, &gv->ln1_w, G, 1, 1, Dv, 0, "%s.%s.%d.layer_norm1.weight", vm, e, j);
            P(p, &wv->ln1_b, &gv->ln1_b, G, 1, 1, Dv, 0, "%s.%s.%d.layer_norm1.bias", vm, e, j);
            P(p, &wv->q_w, &gv->q_w, G, 1, 2, Dv, Dv, "%s.%s.%d.self_attn.q_proj.weight", vm, e, j);
            P(p, &wv->q_b, &gv->q_b, G, 1, 1, Dv, 0, "%s.%s.%d.self_attn.q_proj.bias", vm, e, j);
            P(p, &wv->k_w, &gv->k_w, G, 1, 2, Dv, Dv, "%s.%s.%d.self_attn.k_proj.weight", vm, e, j);
            P(p, &wv->k_b, &gv->k_b, G, 1, 1, Dv, 0, "%s.%s.%d.self_attn.k_proj.bias", vm, e, j);
            P(p, &wv->v_w, &gv->v_w, G, 1, 2, Dv, Dv, "%s.%s.%d.self_attn.v_proj.weight", vm, e, j);
            P(p, &wv->v_b, &gv->v_b, G, 1, 1, Dv, 0, "%s.%s.%d.self_attn.v_proj.bias", vm, e, j);
            P(p, &wv->o_w, &gv->o_w, G, 1, 2, Dv, Dv, "%s.%s.%d.self_attn.out_proj.weight", vm, e, j);
            P(p, &wv->o_b, &gv->o_b, G, 1, 1, Dv, 0, "%s.%s.%d.self_attn.out_proj.bias", vm, e, j);
            P(p, &wv->ln2_w, &gv->ln2_w, G, 1, 1, Dv, 0, "%s.%s.%d.layer_norm2.weight", vm, e, j);
            P(p, &wv->ln2_b, &gv->ln2_b, G, 1, 1, Dv, 0, "%s.%s.%d.layer_norm2.bias", vm, e, j);
            P(p, &wv->fc1_w, &gv->fc1_w, G, 1, 2, Iv, Dv, "%s.%s.%d.mlp.fc1.weight", vm, e, j);
            P(p, &wv->fc1_b, &gv->fc1_b, G, 1, 1, Iv, 0, "%s.%s.%d.mlp.fc1.bias", vm, e, j);
            P(p, &wv->fc2_w, &gv->fc2_w, G, 1, 2, Dv, Iv, "%s.%s.%d.mlp.fc2.weight", vm, e, j);
            P(p, &wv->fc2_b, &gv->fc2_b, G, 1, 1, Dv, 0, "%s.%s.%d.mlp.fc2.bias", vm, e, j);
        }
        P(p, &w->post_w, &g->post_w, G, 1, 1, Dv, 0, "%s.post_layernorm.weight", vm);
        P(p, &w->post_b, &g->post_b, G, 1, 1, Dv, 0, "%s.post_layernorm.bias", vm);
        P(p, &w->conn1_w, &g->conn1_w, G, 1, 2, H, Dv, "connector.fc1.weight");
        P(p, &w->conn1_b, &g->conn1_b, G, 1, 1, H, 0, "connector.fc1.bias");
        P(p, &w->conn2_w, &g->conn2_w, G, 1, 2, H, H, "connector.fc2.weight");
        P(p, &w->conn2_b, &g->conn2_b, G, 1, 1, H, 0, "connector.fc2.bias");
        P(p, &w->vit_pos, &g->vit_pos, MODEL_GROUP_FIXED, 0, 2, (int64_t)c->vit_max_side * c->vit_max_side, H,
          "vit_pos_embed.pos_embed");
    }
}

/* BAGEL's fixed 2-D sin-cos table (bagel-reference.md §1.5), computed in
 * double, stored as float */
static void sincos_2d(float *out, int G, int H)
{
    int Q = H / 4;
    for (int r = 0; r < G; r++)
        for (int c = 0; c < G; c++) {
            float *row = out + ((size_t)r * G + c) * H;
            for (int k = 0; k < Q; k++) {
                double om = pow(10000.0, -(double)k / Q);
                row[k] = (float)sin(c * om);
                row[Q + k] = (float)cos(c * om);
                row[2 * Q + k] = (float)sin(r * om);
                row[3 * Q + k] = (float)cos(r * om);
            }
        }
}

static void bind_slots(model_t *m)
{
    for (int i = 0; i < m->n_params; i++) {
        model_param_t *p = &m->params[i];
        *p->w = m->param_mem + p->offset;
        *p->g = p->trainable ? m->grad_mem + p->offset : NULL;
    }
    if (m->cfg.tie_embeddings) {
        m->w.lm_head = m->w.embed;
        m->g.lm_head = m->g.embed;
    }
}

static void fill_fixed(model_t *m)
{
    const model_config_t *c = &m->cfg;
    float *tmp;
    if (c->visual_gen) {
        size_t n = (size_t)c->max_latent_size * c->max_latent_size * c->hidden;
        tmp = malloc(n * 4);
        if (tmp) {
            sincos_2d(tmp, c->max_latent_size, c->hidden);
            m->ops->upload(m->w.latent_pos, tmp, n * 4);
            free(tmp);
        }
    }
    if (c->visual_und) {
        size_t n = (size_t)c->vit_max_side * c->vit_max_side * c->hidden;
        tmp = malloc(n * 4);
        if (tmp) {
            sincos_2d(tmp, c->vit_max_side, c->hidden);
            m->ops->upload(m->w.vit_pos, tmp, n * 4);
            free(tmp);
        }
    }
}

model_t *model_new(const model_config_t *cfg, const op_table_t *ops, char *err, size_t errlen)
{
    if (model_config_check(cfg, err, errlen))
        return NULL;
    model_t *m = calloc(1, sizeof *m);
    if (!m)
        goto oom;
    m->cfg = *cfg;
    m->ops = ops;
    m->w.layers = calloc((size_t)cfg->layers * 2, sizeof(model_expert_t));
    m->g.layers = calloc((size_t)cfg->layers * 2, sizeof(model_expert_t));
    m->w.vit = calloc((size_t)(cfg->vit_layers > 0 ? cfg->vit_layers : 1), sizeof(model_vit_layer_t));
    m->g.vit = calloc((size_t)(cfg->vit_layers > 0 ? cfg->vit_layers : 1), sizeof(model_vit_layer_t));
    if (!m->w.layers || !m->g.layers || !m->w.vit || !m->g.vit)
        goto oom;
    planner_t pl = {.m = m, .pass = 0};
    plan_params(&pl);
    m->params = calloc((size_t)pl.n, sizeof *m->params);
    if (!m->params)
        goto oom;
    m->n_params = pl.n;
    pl = (planner_t){.m = m, .pass = 1};
    plan_params(&pl);
    m->n_floats = pl.off;
    /* one block each; the gradient block mirrors the parameter block so that
     * offsets are shared (the fixed tables' slots stay unused) */
    m->param_mem = ops->alloc(m->n_floats * sizeof(float));
    m->grad_mem = ops->alloc(m->n_floats * sizeof(float));
    if (!m->param_mem || !m->grad_mem) {
        snprintf(err, errlen, "cannot allocate %.1f MiB of parameters and gradients on %s",
                 2.0 * m->n_floats * 4 / 1048576.0, ops->name);
        model_destroy(&m);
        return NULL;
    }
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].trainable)
            m->n_trainable += m->params[i].numel;
    bind_slots(m);
    fill_fixed(m);
    return m;
oom:
    snprintf(err, errlen, "out of memory building the model");
    model_destroy(&m);
    return NULL;
}

void model_destroy(model_t **pm)
{
    model_t *m = *pm;
    if (!m)
        return;
    if (m->param_mem) {
        m->ops->track_weights(m->param_mem, 0); /* when training tracked them */
        m->ops->free(m->param_mem);
    }
    if (m->grad_mem)
        m->ops->free(m->grad_mem);
    if (m->act_mem)
        m->ops->free(m->act_mem);
    if (m->a) {
        free(m->a->host);
        free(m->a->resid);
        free(m->a->ll);
        free(m->a->vres);
        free(m->a->vl);
        free(m->a);
    }
    free(m->params);
    free(m->grad_done);
    free(m->grad_order);
    free(m->w.layers);
    free(m->g.layers);
    free(m->w.vit);
    free(m->g.vit);
    free(m);
    *pm = NULL;
}

const model_param_t *model_find(const model_t *m, const char *name)
{
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].name, name))
            return &m->params[i];
    return NULL;
}

void model_freeze(model_t *m, const char *prefix)
{
    size_t n = strlen(prefix);
    for (int i = 0; i < m->n_params; i++) {
        model_param_t *p = &m->params[i];
        if (p->trainable && !strncmp(p->name, prefix, n)) {
            p->trainable = 0;
            m->n_trainable -= p->numel;
            *p->g = NULL;
        }
    }
    if (m->cfg.tie_embeddings)
        m->g.lm_head = m->g.embed;
}

void model_zero_grad(model_t *m)
{
    m->ops->zero(m->grad_mem, m->n_floats * sizeof(float));
    m->grad_fresh = 0;
}

/* ---- gradients written in place of a zeroing pass (model_grad_clear) ----
 * Every op that produces parameter gradients is preceded by grads_begin
 * with the gradients it produces: in a fresh pass the backend writes them
 * (op_table_t.grad_write) when none of them has been written yet; where
 * some have (a parameter used twice, as a tied embedding), the rest are
 * zeroed and all added to. grads_end turns the writing off again, and
 * grads_finish zeroes the parameters the batch gave nothing (an expert
 * without tokens, a ViT without images). Each op's `rows > 0` is the
 * caller's: an op over no rows writes nothing. */

void model_grad_clear(model_t *m)
{
    if (!m->grad_done) {
        m->grad_done = calloc((size_t)m->n_params + 1, 1);
        m->grad_order = malloc(((size_t)m->n_params + 1) * sizeof(int));
        if (!m->grad_done || !m->grad_order) { /* no room for the bookkeeping: zero as before */
            free(m->grad_done), free(m->grad_order);
            m->grad_done = NULL, m->grad_order = NULL;
            model_zero_grad(m);
            return;
        }
        /* by offset: the layout is in order already, so an insertion sort */
        for (int i = 0; i < m->n_params; i++) {
            int j = i;
            while (j > 0 && m->params[m->grad_order[j - 1]].offset > m->params[i].offset) {
                m->grad_order[j] = m->grad_order[j - 1];
                j--;
            }
            m->grad_order[j] = i;
        }
    }
    memset(m->grad_done, 0, (size_t)m->n_params);
    m->grad_fresh = 1;
}

/* the trainable parameter whose gradient starts at g, or -1 */
static int grad_param(const model_t *m, const float *g)
{
    if (!g || g < m->grad_mem || g >= m->grad_mem + m->n_floats)
        return -1;
    size_t off = (size_t)(g - m->grad_mem);
    int lo = 0, hi = m->n_params; /* the first index at or past off */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (m->params[m->grad_order[mid]].offset < off)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < m->n_params && m->params[m->grad_order[lo]].offset == off; lo++) {
        const model_param_t *p = &m->params[m->grad_order[lo]];
        if (p->trainable && p->numel > 0 && *p->g == g)
            return m->grad_order[lo];
    }
    return -1;
}

static void grads_zero(model_t *m, float *g);

#define GRADS_MAX 8 /* gradients one op produces, at most (linear3_bwd: 6) */

static void grads_begin(model_t *m, float *const *g, int n)
{
    if (!m->grad_fresh)
        return;
    int idx[GRADS_MAX], fresh = 0, old = 0;
    if (n > GRADS_MAX) { /* not reached: every call lists 6 or fewer */
        for (int j = 0; j < n; j++)
            grads_zero(m, g[j]);
        return;
    }
    for (int j = 0; j < n; j++) {
        idx[j] = grad_param(m, g[j]);
        if (idx[j] >= 0 && !m->grad_done[idx[j]])
            fresh++;
        else if (g[j])
            old++; /* written before, or not a parameter's: added to */
    }
    for (int j = 0; j < n; j++) {
        if (idx[j] < 0 || m->grad_done[idx[j]])
            continue;
        if (old)
            m->ops->zero(g[j], m->params[idx[j]].numel * sizeof(float));
        m->grad_done[idx[j]] = 1;
    }
    m->ops->grad_write(fresh && !old);
}

static void grads_end(model_t *m)
{
    if (m->grad_fresh)
        m->ops->grad_write(0);
}

/* a gradient that an op adds rows into (rows_add): zeroed first in a fresh
 * pass, unless written already */
static void grads_zero(model_t *m, float *g)
{
    int i = m->grad_fresh ? grad_param(m, g) : -1;
    if (i < 0 || m->grad_done[i])
        return;
    m->ops->zero(g, m->params[i].numel * sizeof(float));
    m->grad_done[i] = 1;
}

#define GRADS(...) (float *[]){__VA_ARGS__}, (int)(sizeof((float *[]){__VA_ARGS__}) / sizeof(float *))
/* an op producing the listed gradients: GRAD_OP(GRADS(G->w, G->b), o->linear_bwd(...)) */
#define GRAD_OP(list, call)                                                                                            \
    do {                                                                                                               \
        grads_begin(m, list);                                                                                          \
        call;                                                                                                          \
        grads_end(m);                                                                                                  \
    } while (0)

/* the end of a fresh pass: the parameters nothing wrote are zeroed, in runs
 * of neighbours */
static void grads_finish(model_t *m)
{
    if (!m->grad_fresh)
        return;
    size_t run0 = 0, run1 = 0; /* [run0, run1) floats to zero */
    for (int k = 0; k <= m->n_params; k++) {
        const model_param_t *p = k < m->n_params ? &m->params[m->grad_order[k]] : NULL;
        int want = p && p->trainable && p->numel > 0 && !m->grad_done[m->grad_order[k]];
        if (want && p->offset == run1 && run1 > run0) {
            run1 += p->numel;
            continue;
        }
        if (run1 > run0)
            m->ops->zero(m->grad_mem + run0, (run1 - run0) * sizeof(float));
        run0 = run1 = 0;
        if (want)
            run0 = p->offset, run1 = p->offset + p->numel;
    }
    m->grad_fresh = 0;
}

/* ---- activation plan ------------------------------------------------- */

typedef struct aplan {
    char *base; /* NULL while counting */
    size_t off;
} aplan_t;

static void *take(aplan_t *p, size_t bytes)
{
    void *r = p->base ? p->base + p->off : NULL;
    p->off += (bytes + 63) & ~(size_t)63;
    return r;
}

#define TF(p, n) ((float *)take(p, (size_t)(n) * sizeof(float)))
#define TI(p, n) ((int32_t *)take(p, (size_t)(n) * sizeof(int32_t)))
#define TU(p, n) ((uint8_t *)take(p, (size_t)(n)))

static void plan_acts(model_t *m, model_acts_t *a, aplan_t *p)
{
    const model_config_t *c = &m->cfg;
    const model_caps_t *k = &m->caps;
    size_t S = (size_t)k->S, H = (size_t)c->hidden, Q = (size_t)c->heads * c->head_dim;
    size_t K = (size_t)c->kv_heads * c->head_dim, I = (size_t)c->inter;
    size_t Nc = (size_t)k->n_ce, Nl = (size_t)k->n_lat, Nv = (size_t)k->n_vit;
    size_t D = (size_t)model_latent_dim(c), Dv = (size_t)c->vit_hidden, Iv = (size_t)c->vit_inter;
    size_t ns = (size_t)k->n_splits, nvi = (size_t)k->n_vit_images;

    a->pos_row = TI(p, S);
    a->row_of_pos = TI(p, S);
    a->split_start = TI(p, ns + 1);
    a->split_mode = TU(p, ns);
    a->split_first = TI(p, ns);
    a->text_ids = TI(p, S);
    a->text_row = TI(p, S);
    a->ce_row = TI(p, Nc);
    a->ce_label = TI(p, Nc);
    a->ce_dloss = TF(p, Nc);
    a->ce_loss = TF(p, Nc);
    for (int l = 0; l <= c->layers; l++)
        a->resid[l] = TF(p, S * H);
    for (int l = 0; l < c->layers; l++) {
        llm_layer_acts_t *L = &a->ll[l];
        if (k->recompute && l > 0) { /* every layer in layer 0's buffers */
            *L = a->ll[0];
            continue;
        }
        L->rstd1 = TF(p, S);
        L->a = TF(p, S * H);
        L->qraw = TF(p, S * Q);
        L->q = TF(p, S * Q);
        L->kraw = TF(p, S * K);
        L->k = TF(p, S * K);
        L->v = TF(p, S * K);
        L->rstdq = TF(p, S * c->heads);
        L->rstdk = TF(p, S * c->kv_heads);
        L->o = TF(p, S * Q);
        L->lse = TF(p, S * c->heads);
        L->xmid = TF(p, S * H);
        L->rstd2 = TF(p, S);
        L->bn = TF(p, S * H);
        L->gate = TF(p, S * I);
        L->up = TF(p, S * I);
        L->mm = TF(p, S * I);
    }
    a->rstdf = TF(p, S);
    a->hf = TF(p, S * H);
    a->hc = TF(p, Nc * H);
    a->dhc = TF(p, Nc * H);
    a->ce_scratch = TF(p, op_ce_scratch_floats(k->ce_chunk, c->vocab));
    a->dres = TF(p, S * H);
    a->dhf = TF(p, S * H);
    a->da = TF(p, S * H);
    a->dbn = TF(p, S * H);
    a->dq = TF(p, S * Q);
    a->dqraw = TF(p, S * Q);
    a->do_ = TF(p, S * Q);
    a->dk = TF(p, S * K);
    a->dkraw = TF(p, S * K);
    a->dv = TF(p, S * K);
    a->dgate = TF(p, S * I);
    a->dup = TF(p, S * I);
    a->dmm = TF(p, S * I);
    if (c->visual_gen) {
        a->x0 = TF(p, Nl * D);
        a->eps = TF(p, Nl * D);
        a->t = TF(p, Nl);
        a->lat_posid = TI(p, Nl);
        a->mse_row = TI(p, Nl);
        a->mse_lat = TI(p, Nl);
        a->mse_dloss = TF(p, Nl);
        a->mse_loss = TF(p, Nl);
        a->hm = TF(p, Nl * H);
        a->dhm = TF(p, Nl * H);
        a->pred = TF(p, Nl * D);
        a->tgt = TF(p, Nl * D);
        a->dpred = TF(p, Nl * D);
        a->xt = TF(p, Nl * D);
        a->target = TF(p, Nl * D);
        a->tf = TF(p, Nl * MODEL_TIME_FREQ);
        a->te1 = TF(p, Nl * H);
        a->te1s = TF(p, Nl * H);
        a->te2 = TF(p, Nl * H);
        a->dte1 = TF(p, Nl * H);
        a->dte1s = TF(p, Nl * H);
    }
    if (c->visual_und) {
        a->vit_tokens = TF(p, Nv * model_vit_dim(c));
        a->vit_posid = TI(p, Nv);
        a->vit_row = TI(p, Nv);
        a->vit_start = TI(p, nvi + 1);
        a->vit_first = TI(p, nvi);
        a->vit_mode = TU(p, nvi);
        for (int l = 0; l <= c->vit_layers; l++)
            a->vres[l] = TF(p, Nv * Dv);
        for (int l = 0; l < c->vit_layers; l++) {
            vit_layer_acts_t *V = &a->vl[l];
            if (k->recompute && l > 0) {
                *V = a->vl[0];
                continue;
            }
            V->mean1 = TF(p, Nv);
            V->rstd1 = TF(p, Nv);
            V->a = TF(p, Nv * Dv);
            V->q = TF(p, Nv * Dv);
            V->k = TF(p, Nv * Dv);
            V->v = TF(p, Nv * Dv);
            V->o = TF(p, Nv * Dv);
            V->lse = TF(p, Nv * c->vit_heads);
            V->xmid = TF(p, Nv * Dv);
            V->mean2 = TF(p, Nv);
            V->rstd2 = TF(p, Nv);
            V->bn = TF(p, Nv * Dv);
            V->f1 = TF(p, Nv * Iv);
            V->g = TF(p, Nv * Iv);
        }
        a->pmean = TF(p, Nv);
        a->prstd = TF(p, Nv);
        a->vout = TF(p, Nv * Dv);
        a->c1 = TF(p, Nv * H);
        a->c1g = TF(p, Nv * H);
        a->c2 = TF(p, Nv * H);
        a->dvres = TF(p, Nv * Dv);
        a->dva = TF(p, Nv * Dv);
        a->dvq = TF(p, Nv * Dv);
        a->dvk = TF(p, Nv * Dv);
        a->dvv = TF(p, Nv * Dv);
        a->dvo = TF(p, Nv * Dv);
        a->dvbn = TF(p, Nv * Dv);
        a->dvf1 = TF(p, Nv * Iv);
        a->dvg = TF(p, Nv * Iv);
        a->dc1 = TF(p, Nv * H);
        a->dc1g = TF(p, Nv * H);
        a->dc2 = TF(p, Nv * H);
    }
}

model_caps_t model_caps_of(const model_batch_t *b)
{
    return (model_caps_t){.S = b->S,
                          .n_vit = b->n_vit,
                          .n_lat = b->n_lat,
                          .n_ce = b->n_ce,
                          .n_splits = b->n_splits,
                          .n_vit_images = b->n_vit_images};
}

int model_reserve(model_t *m, const model_caps_t *caps, char *err, size_t errlen)
{
    model_caps_t k = *caps;
    /* the classifier's rows of logits at a time: 64 on the CPU (they stay in
     * cache); on a GPU enough rows that each of the three products is large
     * (with 64 the products were small and re-read the whole lm_head weight
     * per chunk: 69 ms a step where 7 would do), up to BAGEL_CE_MIB (default
     * 1024) MiB of logits, in chunks of equal size (no short last chunk
     * whose products are small; one, two or three chunks measured the same
     * at the 7B shape on an H200, so the smaller scratch is kept) */
    if (k.ce_chunk <= 0) {
        k.ce_chunk = 64;
        if (strcmp(m->ops->name, "cpu") && m->cfg.vocab > 0) {
            const char *ev = getenv("BAGEL_CE_MIB");
            size_t mib = ev && atol(ev) > 0 ? (size_t)atol(ev) : 1024;
            size_t rows = (mib << 20) / ((size_t)m->cfg.vocab * sizeof(float));
            size_t want = k.n_ce > 0 ? (size_t)k.n_ce : 1;
            if (rows < 1)
                rows = 1;
            size_t chunks = (want + rows - 1) / rows;
            k.ce_chunk = (int)((want + chunks - 1) / chunks);
            if (k.ce_chunk < 64)
                k.ce_chunk = 64;
        }
    }
    if (k.n_splits <= 0)
        k.n_splits = k.S;
    if (k.n_vit_images <= 0)
        k.n_vit_images = k.n_vit > 0 ? k.n_vit : 1;
    if (m->act_mem && k.S <= m->caps.S && k.n_vit <= m->caps.n_vit && k.n_lat <= m->caps.n_lat &&
        k.n_ce <= m->caps.n_ce && k.n_splits <= m->caps.n_splits && k.n_vit_images <= m->caps.n_vit_images &&
        k.recompute == m->caps.recompute)
        return 0;
    if (m->act_mem)
        m->ops->free(m->act_mem);
    m->act_mem = NULL;
    m->infer_loaded = 0;
    if (!m->a) {
        m->a = calloc(1, sizeof *m->a);
        if (!m->a)
            goto oom;
        m->a->resid = calloc((size_t)m->cfg.layers + 1, sizeof(float *));
        m->a->ll = calloc((size_t)m->cfg.layers + 1, sizeof(llm_layer_acts_t));
        m->a->vres = calloc((size_t)m->cfg.vit_layers + 1, sizeof(float *));
        m->a->vl = calloc((size_t)m->cfg.vit_layers + 1, sizeof(vit_layer_acts_t));
        if (!m->a->resid || !m->a->ll || !m->a->vres || !m->a->vl)
            goto oom;
    }
    m->caps = k;
    aplan_t p = {0};
    plan_acts(m, m->a, &p);
    m->act_bytes = p.off;
    m->act_mem = m->ops->alloc(p.off);
    if (!m->act_mem) {
        snprintf(err, errlen, "cannot allocate %.1f MiB of activations on %s for %d tokens", p.off / 1048576.0,
                 m->ops->name, k.S);
        return -1;
    }
    p = (aplan_t){.base = m->act_mem};
    plan_acts(m, m->a, &p);
    {
        model_acts_t *a = m->a;
        size_t nvi = (size_t)k.n_vit_images + 1, nf = (size_t)(k.n_ce > k.n_lat ? k.n_ce : k.n_lat) + 1;
        size_t rows = ((size_t)k.S + 1) * 4, vit = 2 * nvi * 4, mode = (nvi + 3) & ~(size_t)3;
        free(a->host);
        a->host = malloc(rows + vit + mode + 2 * nf * 4);
        if (!a->host)
            goto oom;
        char *h = a->host;
        a->h_rows = (int32_t *)h;
        a->h_vit = (int32_t *)(h + rows);
        a->h_mode = (uint8_t *)(h + rows + vit);
        a->h_f1 = (float *)(h + rows + vit + mode);
        a->h_f2 = a->h_f1 + nf;
    }
    m->loaded_batch = 0;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

void model_plan_print(const model_t *m, FILE *out)
{
    static const char *names[] = {"llm", "gen-heads", "vit", "fixed"};
    size_t per[MODEL_GROUP_COUNT] = {0}, tr[MODEL_GROUP_COUNT] = {0};
    for (int i = 0; i < m->n_params; i++) {
        per[m->params[i].group] += m->params[i].numel;
        if (m->params[i].trainable)
            tr[m->params[i].group] += m->params[i].numel;
    }
    for (int g = 0; g < MODEL_GROUP_COUNT; g++)
        if (per[g])
            fprintf(out, "plan group=%s params=%zu param_bytes=%zu grad_bytes=%zu\n", names[g], per[g], per[g] * 4,
                    tr[g] * 4);
    fprintf(out, "plan params=%zu trainable=%zu param_block=%zu grad_block=%zu act_block=%zu tokens=%d\n", m->n_floats,
            m->n_trainable, m->n_floats * 4, m->n_floats * 4, m->act_bytes, m->caps.S);
}

/* ---- forward --------------------------------------------------------- */

/* the batch's index arrays and inputs, into backend memory, translated to
 * storage rows */
static int upload_batch(model_t *m, const model_batch_t *b, char *err, size_t errlen)
{
    m->infer_loaded = 0;
    model_acts_t *a = m->a;
    const op_table_t *o = m->ops;
    const model_caps_t *k = &m->caps;
    if (b->S > k->S || b->n_vit > k->n_vit || b->n_lat > k->n_lat || b->n_ce > k->n_ce || b->n_splits > k->n_splits ||
        b->n_vit_images > k->n_vit_images) {
        snprintf(err, errlen,
                 "batch (tokens %d, vit %d, latents %d, ce %d, splits %d) exceeds the reserved capacity (%d, %d, "
                 "%d, %d, %d)",
                 b->S, b->n_vit, b->n_lat, b->n_ce, b->n_splits, k->S, k->n_vit, k->n_lat, k->n_ce, k->n_splits);
        return -1;
    }
    if ((b->n_vit && !m->cfg.visual_und) || (b->n_lat && !m->cfg.visual_gen)) {
        snprintf(err, errlen, "batch has %s tokens but the model has no %s branch", b->n_vit ? "ViT" : "latent",
                 b->n_vit ? "understanding" : "generation");
        return -1;
    }
    int32_t *tmp = a->h_rows;
    for (int r = 0; r < b->S; r++)
        tmp[r] = b->pos[b->pos_of_row[r]];
    o->upload(a->pos_row, tmp, (size_t)b->S * 4);
    o->upload(a->row_of_pos, b->row_of_pos, (size_t)b->S * 4);
    o->upload(a->split_start, b->split_start, (size_t)(b->n_splits + 1) * 4);
    o->upload(a->split_mode, b->split_mode, (size_t)b->n_splits);
    o->upload(a->split_first, b->split_first, (size_t)b->n_splits * 4);
    o->upload(a->text_ids, b->text_ids, (size_t)b->n_text * 4);
    for (int i = 0; i < b->n_text; i++)
        tmp[i] = b->row_of_pos[b->text_pos[i]];
    o->upload(a->text_row, tmp, (size_t)b->n_text * 4);
    for (int i = 0; i < b->n_ce; i++)
        tmp[i] = b->row_of_pos[b->ce_pos[i]];
    o->upload(a->ce_row, tmp, (size_t)b->n_ce * 4);
    o->upload(a->ce_label, b->ce_label, (size_t)b->n_ce * 4);
    if (m->cfg.visual_gen && b->n_lat) {
        int D = model_latent_dim(&m->cfg);
        o->upload(a->x0, b->x0, (size_t)b->n_lat * D * 4);
        o->upload(a->eps, b->eps, (size_t)b->n_lat * D * 4);
        o->upload(a->t, b->t, (size_t)b->n_lat * 4);
        o->upload(a->lat_posid, b->lat_posid, (size_t)b->n_lat * 4);
        for (int i = 0; i < b->n_mse; i++)
            tmp[i] = b->row_of_pos[b->mse_pos[i]];
        o->upload(a->mse_row, tmp, (size_t)b->n_mse * 4);
        o->upload(a->mse_lat, b->mse_lat, (size_t)b->n_mse * 4);
    }
    /* the frozen ViT's output, when the batch brings it for every image */
    a->vit_feat = m->cfg.visual_und && b->n_vit && b->vit_feat && b->n_vit_feat_images == b->n_vit_images &&
                  b->vit_feat_dim == m->cfg.vit_hidden && !model_vit_trains(m);
    if (a->vit_feat)
        o->upload(a->vout, b->vit_feat, (size_t)b->n_vit * b->vit_feat_dim * 4);
    if (m->cfg.visual_und && b->n_vit) {
        o->upload(a->vit_tokens, b->vit_tokens, (size_t)b->n_vit * b->vit_dim * 4);
        o->upload(a->vit_posid, b->vit_posid, (size_t)b->n_vit * 4);
        for (int i = 0; i < b->n_vit; i++)
            tmp[i] = b->row_of_pos[b->vit_pos[i]];
        o->upload(a->vit_row, tmp, (size_t)b->n_vit * 4);
        /* each ViT image is its own sample of one full split */
        int32_t *st = a->h_vit;
        uint8_t *md = a->h_mode;
        int32_t *fi = st + b->n_vit_images + 1;
        st[0] = 0;
        for (int i = 0; i < b->n_vit_images; i++) {
            st[i + 1] = st[i] + b->vit_lens[i];
            fi[i] = i;
            md[i] = OP_SPLIT_FULL;
        }
        o->upload(a->vit_start, st, (size_t)(b->n_vit_images + 1) * 4);
        o->upload(a->vit_first, fi, (size_t)b->n_vit_images * 4);
        o->upload(a->vit_mode, md, (size_t)b->n_vit_images);
    }
    a->S = b->S;
    a->n_und = b->n_und;
    a->n_text = b->n_text;
    a->n_vit = b->n_vit;
    a->n_vit_images = b->n_vit_images;
    a->n_lat = b->n_lat;
    a->n_ce = b->n_ce;
    a->n_mse = b->n_mse;
    a->n_splits = b->n_splits;
    return 0;
}

static op_attn_t llm_attn(const model_t *m)
{
    const model_config_t *c = &m->cfg;
    return (op_attn_t){.n_tok = m->a->S,
                       .n_heads = c->heads,
                       .n_kv_heads = c->kv_heads,
                       .head_dim = c->head_dim,
                       .scale = 1.0f / sqrtf((float)c->head_dim),
                       .n_splits = m->a->n_splits,
                       .split_start = m->a->split_start,
                       .split_mode = m->a->split_mode,
                       .split_first = m->a->split_first,
                       .row_of_pos = m->a->row_of_pos};
}

static op_attn_t vit_attn(const model_t *m)
{
    const model_config_t *c = &m->cfg;
    int hd = c->vit_hidden / c->vit_heads;
    return (op_attn_t){.n_tok = m->a->n_vit,
                       .n_heads = c->vit_heads,
                       .n_kv_heads = c->vit_heads,
                       .head_dim = hd,
                       .scale = 1.0f / sqrtf((float)hd),
                       .n_splits = m->a->n_vit_images,
                       .split_start = m->a->vit_start,
                       .split_mode = m->a->vit_mode,
                       .split_first = m->a->vit_first,
                       .row_of_pos = NULL};
}

/* rows [r0, r0 + n) of expert e */
typedef struct span {
    int r0, n;
} span_t;

/* one ViT layer: vres[l] -> vres[l + 1], its activations in vl[l] */
static void vit_layer_forward(model_t *m, int l, const op_attn_t *at)
{
    const op_table_t *o = m->ops;
    const model_config_t *c = &m->cfg;
    model_acts_t *a = m->a;
    int Nv = a->n_vit, Dv = c->vit_hidden, Iv = c->vit_inter;
    vit_layer_acts_t *V = &a->vl[l];
    const model_vit_layer_t *L = &m->w.vit[l];
    float *x = a->vres[l], *y = a->vres[l + 1];
    o->layernorm_fwd(V->a, V->mean1, V->rstd1, x, L->ln1_w, L->ln1_b, Nv, Dv, c->vit_eps);
    const op_lin_t qkv[3] = {{.w = L->q_w, .b = L->q_b, .dim = Dv, .out = V->q},
                             {.w = L->k_w, .b = L->k_b, .dim = Dv, .out = V->k},
                             {.w = L->v_w, .b = L->v_b, .dim = Dv, .out = V->v}};
    o->linear3_fwd(qkv, V->a, Nv, Dv);
    o->attention_fwd(V->o, V->lse, V->q, V->k, V->v, at);
    o->linear_fwd(V->xmid, V->o, L->o_w, L->o_b, Nv, Dv, Dv);
    o->axpy(V->xmid, 1.0f, x, (size_t)Nv * Dv);
    o->layernorm_fwd(V->bn, V->mean2, V->rstd2, V->xmid, L->ln2_w, L->ln2_b, Nv, Dv, c->vit_eps);
    o->linear_fwd(V->f1, V->bn, L->fc1_w, L->fc1_b, Nv, Dv, Iv);
    o->gelu_fwd(V->g, V->f1, (size_t)Nv * Iv);
    o->linear_fwd(y, V->g, L->fc2_w, L->fc2_b, Nv, Iv, Dv);
    o->axpy(y, 1.0f, V->xmid, (size_t)Nv * Dv);
}

static void vit_forward(model_t *m)
{
    const op_table_t *o = m->ops;
    const model_config_t *c = &m->cfg;
    model_acts_t *a = m->a;
    const model_weights_t *w = &m->w;
    int Nv = a->n_vit, Dv = c->vit_hidden, H = c->hidden;
    if (!a->vit_feat) { /* else vout came with the batch */
        op_attn_t at = vit_attn(m);
        o->linear_fwd(a->vres[0], a->vit_tokens, w->patch_w, w->patch_b, Nv, model_vit_dim(c), Dv);
        o->rows_add(a->vres[0], NULL, w->vit_posemb, a->vit_posid, Nv, Dv);
        for (int l = 0; l < c->vit_layers; l++)
            vit_layer_forward(m, l, &at);
        o->layernorm_fwd(a->vout, a->pmean, a->prstd, a->vres[c->vit_layers], w->post_w, w->post_b, Nv, Dv,
                         c->vit_eps);
    }
    o->linear_fwd(a->c1, a->vout, w->conn1_w, w->conn1_b, Nv, Dv, H);
    o->gelu_fwd(a->c1g, a->c1, (size_t)Nv * H);
    o->linear_fwd(a->c2, a->c1g, w->conn2_w, w->conn2_b, Nv, H, H);
    o->rows_add(a->c2, NULL, w->vit_pos, a->vit_posid, Nv, H);
    o->rows_copy(a->resid[0], a->vit_row, a->c2, NULL, Nv, H);
}

static void latent_forward(model_t *m)
{
    const op_table_t *o = m->ops;
    const model_config_t *c = &m->cfg;
    model_acts_t *a = m->a;
    const model_weights_t *w = &m->w;
    int Nl = a->n_lat, H = c->hidden, D = model_latent_dim(c);
    float *emb = a->resid[0] + (size_t)a->n_und * H; /* generation rows are the latents, in order */
    if (a->lat_direct)
        o->rows_copy(a->xt, NULL, a->x0, NULL, Nl, D);
    else
        o->flow_noise(a->xt, a->target, a->x0, a->eps, a->t, Nl, D);
    o->linear_fwd(emb, a->xt, w->vae2llm_w, w->vae2llm_b, Nl, D, H);
    o->timestep_freq(a->tf, a->t, Nl, MODEL_TIME_FREQ / 2);
    o->linear_fwd(a->te1, a->tf, w->te1_w, w->te1_b, Nl, MODEL_TIME_FREQ, H);
    o->silu_fwd(a->te1s, a->te1, (size_t)Nl * H);
    o->linear_fwd(a->te2, a->te1s, w->te2_w, w->te2_b, Nl, H, H);
    o->axpy(emb, 1.0f, a->te2, (size_t)Nl * H);
    o->rows_add(emb, NULL, w->latent_pos, a->lat_posid, Nl, H);
}

static void llm_layer_forward(model_t *m, int l)
{
    const op_table_t *o = m->ops;
    const model_config_t *c = &m->cfg;
    model_acts_t *a = m->a;
    llm_layer_acts_t *L = &a->ll[l];
    int H = c->hidden, Q = c->heads * c->head_dim, K = c->kv_heads * c->head_dim, I = c->inter;
    int hd = c->head_dim;
    float *x = a->resid[l], *y = a->resid[l + 1];
    span_t sp[2] = {{0, a->n_und}, {a->n_und, a->S - a->n_und}};
    for (int e = 0; e < 2; e++) {
        const model_expert_t *E = &m->w.layers[2 * l + e];
        int r = sp[e].r0, n = sp[e].n;
        if (!n)
            continue;
        o->rmsnorm_fwd(L->a + (size_t)r * H, L->rstd1 + r, x + (size_t)r * H, E->in_norm, n, H, c->rms_eps);
        const op_lin_t qkv[3] = {{.w = E->q_w, .b = E->q_b, .dim = Q, .out = L->qraw + (size_t)r * Q},
                                 {.w = E->k_w, .b = E->k_b, .dim = K, .out = L->kraw + (size_t)r * K},
                                 {.w = E->v_w, .b = E->v_b, .dim = K, .out = L->v + (size_t)r * K}};
        o->linear3_fwd(qkv, L->a + (size_t)r * H, n, H);
        if (c->qk_norm) {
            o->rmsnorm_fwd(L->q + (size_t)r * Q, L->rstdq + (size_t)r * c->heads, L->qraw + (size_t)r * Q, E->q_norm,
                           n * c->heads, hd, c->rms_eps);
            o->rmsnorm_fwd(L->k + (size_t)r * K, L->rstdk + (size_t)r * c->kv_heads, L->kraw + (size_t)r * K, E->k_norm,
                           n * c->kv_heads, hd, c->rms_eps);
        } else {
            o->rows_copy(L->q + (size_t)r * Q, NULL, L->qraw + (size_t)r * Q, NULL, n, Q);
            o->rows_copy(L->k + (size_t)r * K, NULL, L->kraw + (size_t)r * K, NULL, n, K);
        }
    }
    o->rope_fwd(L->q, a->pos_row, a->S, c->heads, hd, c->rope_theta);
    o->rope_fwd(L->k, a->pos_row, a->S, c->kv_heads, hd, c->rope_theta);
    if (a->kv) {
        /* every row's key and value into the cache, then attention against it */
        const model_kv_t *kv = a->kv;
        o->rows_copy(kv->k[l], kv->store_row, L->k, NULL, a->S, K);
        o->rows_copy(kv->v[l], kv->store_row, L->v, NULL, a->S, K);
        o->attention_kv(L->o, L->q, kv->k[l], kv->v[l], kv->attn);
    } else {
        op_attn_t at = llm_attn(m);
        o->attention_fwd(L->o, L->lse, L->q, L->k, L->v, &at);
    }
    for (int e = 0; e < 2; e++) {
        const model_expert_t *E = &m->w.layers[2 * l + e];
        int r = sp[e].r0, n = sp[e].n;
        if (!n)
            continue;
        size_t rh = (size_t)r * H, ri = (size_t)r * I;
        o->linear_fwd(L->xmid + rh, L->o + (size_t)r * Q, E->o_w, NULL, n, Q, H);
        o->axpy(L->xmid + rh, 1.0f, x + rh, (size_t)n * H);
        o->rmsnorm_fwd(L->bn + rh, L->rstd2 + r, L->xmid + rh, E->post_norm, n, H, c->rms_eps);
        o->mlp_fwd(y + rh, L->gate + ri, L->up + ri, L->mm + ri, L->bn + rh, E->gate_w, E->up_w, E->down_w, n, H, I);
        o->axpy(y + rh, 1.0f, L->xmid + rh, (size_t)n * H);
    }
}

/* embeddings into the residual stream (expert order), the layers, the final
 * norms into a->hf */
static void trunk_forward(model_t *m)
{
    const op_table_t *o = m->ops;
    const model_config_t *c = &m->cfg;
    model_acts_t *a = m->a;
    const model_weights_t *w = &m->w;
    int H = c->hidden, S = a->S;
    o->rows_copy(a->resid[0], a->text_row, w->embed, a->text_ids, a->n_text, H);
    if (a->n_vit)
        vit_forward(m);
    if (a->n_lat)
        latent_forward(m);

    for (int l = 0; l < c->layers; l++)
        llm_layer_forward(m, l);

    int nu = a->n_und, ng = S - nu;
    float *xl = a->resid[c->layers];
    if (nu)
        o->rmsnorm_fwd(a->hf, a->rstdf, xl, w->norm[0], nu, H, c->rms_eps);
    if (ng)
        o->rmsnorm_fwd(a->hf + (size_t)nu * H, a->rstdf + nu, xl + (size_t)nu * H, w->norm[1], ng, H, c->rms_eps);
}

int model_vit_features(model_t *m, const model_batch_t *b, float *out, char *err, size_t errlen)
{
    if (!m->cfg.visual_und) {
        snprintf(err, errlen, "the model has no ViT");
        return -1;
    }
    if (!m->act_mem) {
        snprintf(err, errlen, "model_vit_features before model_reserve");
        return -1;
    }
    if (upload_batch(m, b, err, errlen))
        return -1;
    m->a->vit_feat = 0; /* computed here, not taken */
    if (b->n_vit)
        vit_forward(m);
    m->ops->download(out, m->a->vout, (size_t)b->n_vit * m->cfg.vit_hidden * sizeof(float));
    m->loaded_batch = 0;
    return 0;
}

int model_infer_load(model_t *m, const model_batch_t *b, char *err, size_t errlen)
{
    m->infer_loaded = 0;
    if (!m->act_mem) {
        snprintf(err, errlen, "model_infer_load before model_reserve");
        return -1;
    }
    if (upload_batch(m, b, err, errlen))
        return -1;
    m->loaded_batch = 0;
    m->infer_loaded = 1;
    return 0;
}

void model_infer_latents(model_t *m, float **xt, float **t)
{
    *xt = m->infer_loaded ? m->a->x0 : NULL;
    *t = m->infer_loaded ? m->a->t : NULL;
}

const float *model_infer_run(model_t *m, const model_kv_t *kv, char *err, size_t errlen)
{
    if (!m->infer_loaded) {
        snprintf(err, errlen, "model_infer_run with no batch loaded (model_infer_load)");
        return NULL;
    }
    m->a->kv = kv;
    m->a->lat_direct = 1;
    m->a->train = 0;
    trunk_forward(m);
    m->a->kv = NULL;
    return m->a->hf;
}

const float *model_infer_forward(model_t *m, const model_batch_t *b, const model_kv_t *kv, char *err, size_t errlen)
{
    if (model_infer_load(m, b, err, errlen))
        return NULL;
    return model_infer_run(m, kv, err, errlen);
}

int model_forward(model_t *m, const model_batch_t *b, const model_loss_opts_t *lo, int train, model_losses_t *out,
                  char *err, size_t errlen)
{
    if (!m->act_mem) {
        snprintf(err, errlen, "model_forward before model_reserve");
        return -1;
    }
    if (upload_batch(m, b, err, errlen))
        return -1;
    const op_table_t *o = m->ops;
    const model_config_t *c = &m->cfg;
    model_acts_t *a = m->a;
    const model_weights_t *w = &m->w;
    int H = c->hidden, D = model_latent_dim(c);
    a->lo = lo ? *lo : model_default_loss;
    a->train = train;
    a->kv = NULL;
    a->lat_direct = 0;
    trunk_forward(m);

    /* losses, normalized as bagel-reference.md §4.3; the per-token gradient
     * scales are known now, so the fused classifier also produces its
     * gradient here when training */
    model_losses_t L = {.n_ce = b->n_ce, .n_mse = b->n_mse};
    const model_loss_opts_t *lp = &a->lo;
    if (b->n_ce) {
        double wsum = 0;
        for (int i = 0; i < b->n_ce; i++)
            wsum += lp->ce_reweight ? b->ce_weight[i] : 1.0;
        double den = lp->ce_norm > 0 ? lp->ce_norm : wsum;
        float *dl = a->h_f1, *ls = a->h_f2;
        for (int i = 0; i < b->n_ce; i++)
            dl[i] = (float)((lp->ce_reweight ? b->ce_weight[i] : 1.0) / den * lp->ce_weight * lp->grad_scale);
        o->upload(a->ce_dloss, dl, (size_t)b->n_ce * 4);
        o->rows_copy(a->hc, NULL, a->hf, a->ce_row, b->n_ce, H);
        if (train)
            o->zero(a->dhc, (size_t)b->n_ce * H * 4);
        float *dlm = train ? m->g.lm_head : NULL;
        GRAD_OP(GRADS(dlm), o->classifier_ce(a->ce_loss, train ? a->dhc : NULL, dlm, a->hc, w->lm_head, a->ce_label,
                                             a->ce_dloss, b->n_ce, H, c->vocab, a->ce_scratch, m->caps.ce_chunk));
        o->download(ls, a->ce_loss, (size_t)b->n_ce * 4);
        for (int i = 0; i < b->n_ce; i++)
            L.ce_sum += (lp->ce_reweight ? b->ce_weight[i] : 1.0) * ls[i];
        L.ce = L.ce_sum / den;
    }
    if (b->n_mse) {
        double den = lp->mse_norm > 0 ? lp->mse_norm : b->n_mse;
        float *buf = a->h_f1;
        for (int i = 0; i < b->n_mse; i++)
            buf[i] = (float)(lp->mse_weight / den * lp->grad_scale);
        o->upload(a->mse_dloss, buf, (size_t)b->n_mse * 4);
        o->rows_copy(a->hm, NULL, a->hf, a->mse_row, b->n_mse, H);
        o->linear_fwd(a->pred, a->hm, w->llm2vae_w, w->llm2vae_b, b->n_mse, H, D);
        o->rows_copy(a->tgt, NULL, a->target, a->mse_lat, b->n_mse, D);
        if (train)
            o->zero(a->dpred, (size_t)b->n_mse * D * 4);
        o->mse(a->mse_loss, train ? a->dpred : NULL, a->pred, a->tgt, a->mse_dloss, b->n_mse, D);
        o->download(buf, a->mse_loss, (size_t)b->n_mse * 4);
        for (int i = 0; i < b->n_mse; i++)
            L.mse_sum += buf[i];
        L.mse = L.mse_sum / den;
    }
    L.total = lp->ce_weight * L.ce + lp->mse_weight * L.mse;
    if (out)
        *out = L;
    m->loaded_batch = 1;
    return 0;
}

void model_token_losses(const model_t *m, const float **ce, const float **mse)
{
    /* model_forward leaves the CE losses in h_f2 and the MSE losses in h_f1 */
    *ce = m->a->h_f2;
    *mse = m->a->h_f1;
}

void model_hidden(const model_t *m, const model_batch_t *b, float *out)
{
    int H = m->cfg.hidden;
    float *tmp = malloc((size_t)b->S * H * sizeof(float));
    if (!tmp)
        return;
    m->ops->download(tmp, m->a->hf, (size_t)b->S * H * sizeof(float));
    for (int p = 0; p < b->S; p++)
        memcpy(out + (size_t)p * H, tmp + (size_t)b->row_of_pos[p] * H, (size_t)H * 4);
    free(tmp);
}

/* ---- backward -------------------------------------------------------- */

static void llm_layer_backward(model_t *m, int l)
{
    const op_table_t *o = m->ops;
    const model_config_t *c = &m->cfg;
    model_acts_t *a = m->a;
    llm_layer_acts_t *L = &a->ll[l];
    int S = a->S, H = c->hidden, Q = c->heads * c->head_dim, K = c->kv_heads * c->head_dim, I = c->inter;
    int hd = c->head_dim;
    float *x = a->resid[l];
    span_t sp[2] = {{0, a->n_und}, {a->n_und, S - a->n_und}};

    /* dres holds d(layer output); it becomes d(xmid), then d(layer input).
     * The experts' row spans cover every row once, so the first product or
     * op into each activation gradient writes it (the _set ops) rather than
     * adding to a zeroed buffer: the MLP's three [S, inter] gradients alone
     * are most of a layer's backward bytes. The MLP is one op each way
     * (mlp_fwd, mlp_bwd): a backend keeps its intermediates as it likes */
    for (int e = 0; e < 2; e++) {
        const model_expert_t *E = &m->w.layers[2 * l + e];
        model_expert_t *G = &m->g.layers[2 * l + e];
        int r = sp[e].r0, n = sp[e].n;
        if (!n)
            continue;
        size_t rh = (size_t)r * H, ri = (size_t)r * I;
        GRAD_OP(GRADS(G->gate_w, G->up_w, G->down_w),
                o->mlp_bwd(a->dbn + rh, G->gate_w, G->up_w, G->down_w, a->dres + rh, L->bn + rh, E->gate_w, E->up_w,
                           E->down_w, L->gate + ri, L->up + ri, L->mm + ri, a->dgate + ri, a->dup + ri, a->dmm + ri, n,
                           H, I));
        GRAD_OP(GRADS(G->post_norm),
                o->rmsnorm_bwd(a->dres + rh, G->post_norm, a->dbn + rh, L->xmid + rh, E->post_norm, L->rstd2 + r, n, H));
        GRAD_OP(GRADS(G->o_w), o->linear_bwd_set(a->do_ + (size_t)r * Q, G->o_w, NULL, a->dres + rh,
                                                 L->o + (size_t)r * Q, E->o_w, n, Q, H));
    }
    op_attn_t at = llm_attn(m);
    at.write = 1; /* dq, dk, dv written: no zeroing first */
    o->attention_bwd(a->dq, a->dk, a->dv, a->do_, L->o, L->lse, L->q, L->k, L->v, &at);
    o->rope_bwd(a->dq, a->pos_row, S, c->heads, hd, c->rope_theta);
    o->rope_bwd(a->dk, a->pos_row, S, c->kv_heads, hd, c->rope_theta);
    float *dqr = a->dq, *dkr = a->dk;
    if (c->qk_norm) { /* written by the experts' norms below, row span by row span */
        dqr = a->dqraw;
        dkr = a->dkraw;
    }
    for (int e = 0; e < 2; e++) {
        const model_expert_t *E = &m->w.layers[2 * l + e];
        model_expert_t *G = &m->g.layers[2 * l + e];
        int r = sp[e].r0, n = sp[e].n;
        if (!n)
            continue;
        size_t rh = (size_t)r * H, rq = (size_t)r * Q, rk = (size_t)r * K;
        if (c->qk_norm) {
            GRAD_OP(GRADS(G->q_norm), o->rmsnorm_bwd_set(dqr + rq, G->q_norm, a->dq + rq, L->qraw + rq, E->q_norm,
                                                         L->rstdq + (size_t)r * c->heads, n * c->heads, hd));
            GRAD_OP(GRADS(G->k_norm), o->rmsnorm_bwd_set(dkr + rk, G->k_norm, a->dk + rk, L->kraw + rk, E->k_norm,
                                                         L->rstdk + (size_t)r * c->kv_heads, n * c->kv_heads, hd));
        }
        const op_lin_t qkv[3] = {{.w = E->q_w, .dim = Q, .dout = dqr + rq, .dw = G->q_w, .db = G->q_b},
                                 {.w = E->k_w, .dim = K, .dout = dkr + rk, .dw = G->k_w, .db = G->k_b},
                                 {.w = E->v_w, .dim = K, .dout = a->dv + rk, .dw = G->v_w, .db = G->v_b}};
        GRAD_OP(GRADS(G->q_w, G->q_b, G->k_w, G->k_b, G->v_w, G->v_b), o->linear3_bwd(a->da + rh, qkv, L->a + rh, n, H, 1));
        GRAD_OP(GRADS(G->in_norm),
                o->rmsnorm_bwd(a->dres + rh, G->in_norm, a->da + rh, x + rh, E->in_norm, L->rstd1 + r, n, H));
    }
}

int model_vit_trains(const model_t *m)
{
    for (int i = 0; i < m->n_params; i++)
        if (!strncmp(m->params[i].name, "vit_model.", 10) && *m->params[i].g)
            return 1;
    return 0;
}

static void vit_backward(model_t *m)
{
    const op_table_t *o = m->ops;
    const model_config_t *c = &m->cfg;
    model_acts_t *a = m->a;
    const model_weights_t *w = &m->w;
    model_weights_t *g = &m->g;
    int Nv = a->n_vit, Dv = c->vit_hidden, Iv = c->vit_inter, H = c->hidden;
    op_attn_t at = vit_attn(m), atw = at;
    atw.write = 1; /* the backward writes dq, dk, dv: no zeroing first */
    o->rows_copy(a->dc2, NULL, a->dres, a->vit_row, Nv, H);
    GRAD_OP(GRADS(g->conn2_w, g->conn2_b),
            o->linear_bwd_set(a->dc1g, g->conn2_w, g->conn2_b, a->dc2, a->c1g, w->conn2_w, Nv, H, H));
    o->gelu_bwd_set(a->dc1, a->dc1g, a->c1, (size_t)Nv * H);
    if (!model_vit_trains(m)) { /* a frozen ViT: nothing below the connector needs a gradient */
        GRAD_OP(GRADS(g->conn1_w, g->conn1_b),
                o->linear_bwd(NULL, g->conn1_w, g->conn1_b, a->dc1, a->vout, w->conn1_w, Nv, Dv, H));
        return;
    }
    GRAD_OP(GRADS(g->conn1_w, g->conn1_b), /* d(vout) written */
            o->linear_bwd_set(a->dva, g->conn1_w, g->conn1_b, a->dc1, a->vout, w->conn1_w, Nv, Dv, H));
    o->zero(a->dvres, (size_t)Nv * Dv * 4);
    GRAD_OP(GRADS(g->post_w, g->post_b), o->layernorm_bwd(a->dvres, g->post_w, g->post_b, a->dva, a->vres[c->vit_layers],
                                                          w->post_w, a->pmean, a->prstd, Nv, Dv));
    for (int l = c->vit_layers - 1; l >= 0; l--) {
        /* with recomputation the shared buffers hold the last layer's
         * activations: every other layer runs its forward again first */
        if (m->caps.recompute && l < c->vit_layers - 1)
            vit_layer_forward(m, l, &at);
        vit_layer_acts_t *V = &a->vl[l];
        const model_vit_layer_t *L = &w->vit[l];
        model_vit_layer_t *G = &g->vit[l];
        /* dvres = d(layer output) -> d(xmid) -> d(layer input) */
        /* the first product into each activation gradient writes it */
        GRAD_OP(GRADS(G->fc2_w, G->fc2_b),
                o->linear_bwd_set(a->dvg, G->fc2_w, G->fc2_b, a->dvres, V->g, L->fc2_w, Nv, Iv, Dv));
        o->gelu_bwd_set(a->dvf1, a->dvg, V->f1, (size_t)Nv * Iv);
        GRAD_OP(GRADS(G->fc1_w, G->fc1_b),
                o->linear_bwd_set(a->dvbn, G->fc1_w, G->fc1_b, a->dvf1, V->bn, L->fc1_w, Nv, Dv, Iv));
        GRAD_OP(GRADS(G->ln2_w, G->ln2_b), o->layernorm_bwd(a->dvres, G->ln2_w, G->ln2_b, a->dvbn, V->xmid, L->ln2_w,
                                                            V->mean2, V->rstd2, Nv, Dv));
        GRAD_OP(GRADS(G->o_w, G->o_b), o->linear_bwd_set(a->dvo, G->o_w, G->o_b, a->dvres, V->o, L->o_w, Nv, Dv, Dv));
        o->attention_bwd(a->dvq, a->dvk, a->dvv, a->dvo, V->o, V->lse, V->q, V->k, V->v, &atw);
        const op_lin_t qkv[3] = {{.w = L->q_w, .dim = Dv, .dout = a->dvq, .dw = G->q_w, .db = G->q_b},
                                 {.w = L->k_w, .dim = Dv, .dout = a->dvk, .dw = G->k_w, .db = G->k_b},
                                 {.w = L->v_w, .dim = Dv, .dout = a->dvv, .dw = G->v_w, .db = G->v_b}};
        GRAD_OP(GRADS(G->q_w, G->q_b, G->k_w, G->k_b, G->v_w, G->v_b), o->linear3_bwd(a->dva, qkv, V->a, Nv, Dv, 1));
        GRAD_OP(GRADS(G->ln1_w, G->ln1_b), o->layernorm_bwd(a->dvres, G->ln1_w, G->ln1_b, a->dva, a->vres[l], L->ln1_w,
                                                            V->mean1, V->rstd1, Nv, Dv));
    }
    GRAD_OP(GRADS(g->patch_w, g->patch_b), o->linear_bwd(NULL, g->patch_w, g->patch_b, a->dvres, a->vit_tokens,
                                                         w->patch_w, Nv, model_vit_dim(c), Dv));
    if (g->vit_posemb) {
        grads_zero(m, g->vit_posemb);
        o->rows_add(g->vit_posemb, a->vit_posid, a->dvres, NULL, Nv, Dv);
    }
}

static void latent_backward(model_t *m)
{
    const op_table_t *o = m->ops;
    const model_config_t *c = &m->cfg;
    model_acts_t *a = m->a;
    const model_weights_t *w = &m->w;
    model_weights_t *g = &m->g;
    int Nl = a->n_lat, H = c->hidden, D = model_latent_dim(c);
    float *demb = a->dres + (size_t)a->n_und * H;
    GRAD_OP(GRADS(g->vae2llm_w, g->vae2llm_b),
            o->linear_bwd(NULL, g->vae2llm_w, g->vae2llm_b, demb, a->xt, w->vae2llm_w, Nl, D, H));
    o->zero(a->dte1, (size_t)Nl * H * 4);
    GRAD_OP(GRADS(g->te2_w, g->te2_b), o->linear_bwd_set(a->dte1s, g->te2_w, g->te2_b, demb, a->te1s, w->te2_w, Nl, H, H));
    o->silu_bwd(a->dte1, a->dte1s, a->te1, (size_t)Nl * H);
    GRAD_OP(GRADS(g->te1_w, g->te1_b),
            o->linear_bwd(NULL, g->te1_w, g->te1_b, a->dte1, a->tf, w->te1_w, Nl, MODEL_TIME_FREQ, H));
}

int model_backward(model_t *m, char *err, size_t errlen)
{
    model_acts_t *a = m->a;
    if (!m->loaded_batch || !a->train) {
        snprintf(err, errlen, "model_backward needs a training forward first");
        return -1;
    }
    const op_table_t *o = m->ops;
    const model_config_t *c = &m->cfg;
    const model_weights_t *w = &m->w;
    model_weights_t *g = &m->g;
    int S = a->S, H = c->hidden, D = model_latent_dim(c);

    /* heads: the classifier's gradient came with the forward */
    o->zero(a->dhf, (size_t)S * H * 4);
    if (a->n_ce)
        o->rows_add(a->dhf, a->ce_row, a->dhc, NULL, a->n_ce, H);
    if (a->n_mse) {
        GRAD_OP(GRADS(g->llm2vae_w, g->llm2vae_b),
                o->linear_bwd_set(a->dhm, g->llm2vae_w, g->llm2vae_b, a->dpred, a->hm, w->llm2vae_w, a->n_mse, H, D));
        o->rows_add(a->dhf, a->mse_row, a->dhm, NULL, a->n_mse, H);
    }
    int nu = a->n_und, ng = S - nu;
    float *xl = a->resid[c->layers];
    /* dres written by the two experts' final norms, which cover every row */
    if (nu)
        GRAD_OP(GRADS(g->norm[0]), o->rmsnorm_bwd_set(a->dres, g->norm[0], a->dhf, xl, w->norm[0], a->rstdf, nu, H));
    if (ng)
        GRAD_OP(GRADS(g->norm[1]), o->rmsnorm_bwd_set(a->dres + (size_t)nu * H, g->norm[1], a->dhf + (size_t)nu * H,
                                                      xl + (size_t)nu * H, w->norm[1], a->rstdf + nu, ng, H));

    for (int l = c->layers - 1; l >= 0; l--) {
        if (m->caps.recompute && l < c->layers - 1) /* see vit_backward */
            llm_layer_forward(m, l);
        llm_layer_backward(m, l);
    }

    /* dres = d(embeddings) */
    if (g->embed) {
        grads_zero(m, g->embed);
        o->rows_add(g->embed, a->text_ids, a->dres, a->text_row, a->n_text, H);
    }
    if (a->n_vit)
        vit_backward(m);
    if (a->n_lat)
        latent_backward(m);
    grads_finish(m);
    m->loaded_batch = 0;
    return 0;
}
