/* refcheck.c — one reference case (tests/reference/FORMAT.md) checked on a
 * backend: the packed batch and the masks exactly, then the losses, the final
 * hidden states and every parameter's gradient against the golden file. Used
 * by tests/unit/test_model_ref.c (CPU) and tests/gpu/test_model_cuda.c. */
#include "refcheck.h"

#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "casecheck.h"
#include "golden.h"
#include "../../models/rng.h"
#include "../../models/safetensors.h"
#include "refcase.h"

#define REF_DIR "tests/reference"

/* a failed check ends the case: the message goes to the caller */
#define assert_int_equal(a, b)                                                                                         \
    do {                                                                                                               \
        if ((long long)(a) != (long long)(b))                                                                          \
            fail_msg("%s:%d: %lld != %lld", __FILE__, __LINE__, (long long)(a), (long long)(b));                       \
    } while (0)

static void expect_ints(const st_file_t *f, const char *name, const int32_t *got, int n)
{
    const st_tensor_t *t = gold(f, name);
    if (t->numel != n)
        fail_msg("%s: %d values, the reference has %lld", name, n, (long long)t->numel);
    for (int i = 0; i < n; i++)
        if (got[i] != golden_i64(t, i))
            fail_msg("%s[%d] = %d, the reference has %lld", name, i, got[i], (long long)golden_i64(t, i));
}

static void check_case(const char *path, const op_table_t *ops, double tol)
{
    char err[512];
    refcase_t rc;
    if (refcase_load(&rc, path, err, sizeof err))
        fail_msg("%s", err);
    const char *name = rc.name;
    model_config_t cfg = rc.cfg;
    model_batch_t *b = &rc.pack.b;
    char gpath[512];
    snprintf(gpath, sizeof gpath, REF_DIR "/golden/%s.safetensors", name);
    st_file_t *g = st_open(gpath, err, sizeof err);
    if (!g)
        fail_msg("%s", err);

    /* the packed batch, exactly */
    int32_t seqlen = b->S;
    expect_ints(g, "sequence_length", &seqlen, 1);
    expect_ints(g, "sample_lens", b->sample_lens, b->n_samples);
    int32_t *tmp = malloc((size_t)(b->S + b->n_splits + 1) * 4);
    for (int i = 0; i < b->n_splits; i++)
        tmp[i] = b->split_start[i + 1] - b->split_start[i];
    expect_ints(g, "split_lens", tmp, b->n_splits);
    for (int i = 0; i < b->n_splits; i++)
        tmp[i] = b->split_mode[i];
    expect_ints(g, "attn_modes", tmp, b->n_splits);
    expect_ints(g, "packed_text_ids", b->text_ids, b->n_text);
    expect_ints(g, "packed_text_indexes", b->text_pos, b->n_text);
    expect_ints(g, "packed_position_ids", b->pos, b->S);
    expect_ints(g, "packed_vit_token_indexes", b->vit_pos, b->n_vit);
    expect_ints(g, "packed_vit_position_ids", b->vit_posid, b->n_vit);
    expect_ints(g, "vit_token_seqlens", b->vit_lens, b->n_vit_images);
    expect_ints(g, "packed_vae_token_indexes", b->lat_pos, b->n_lat);
    expect_ints(g, "packed_latent_position_ids", b->lat_posid, b->n_lat);
    expect_ints(g, "mse_loss_indexes", b->mse_pos, b->n_mse);
    expect_ints(g, "ce_loss_indexes", b->ce_pos, b->n_ce);
    expect_ints(g, "packed_label_ids", b->ce_label, b->n_ce);
    const st_tensor_t *t = gold(g, "packed_timesteps");
    for (int i = 0; i < b->n_lat; i++) {
        float r = golden_f32(t, i);
        if (!(r == b->tau[i] || (isinf(r) && isinf(b->tau[i]))))
            fail_msg("packed_timesteps[%d] = %g, the reference has %g", i, b->tau[i], r);
    }
    t = gold(g, "ce_loss_weights");
    for (int i = 0; i < b->n_ce; i++)
        if (fabsf(golden_f32(t, i) - b->ce_weight[i]) > 1e-6f * golden_f32(t, i))
            fail_msg("ce_loss_weights[%d] = %g, the reference has %g", i, b->ce_weight[i], golden_f32(t, i));

    /* masks: the kernels' visibility rule against the reference's dense masks */
    {
        op_attn_t a = {.n_tok = b->S,
                       .n_splits = b->n_splits,
                       .split_start = b->split_start,
                       .split_mode = b->split_mode,
                       .split_first = b->split_first};
        int start = 0, sp = 0;
        for (int s = 0; s < b->n_samples; s++) {
            char mn[32];
            snprintf(mn, sizeof mn, "mask.%d", s);
            const st_tensor_t *mk = gold(g, mn);
            int len = b->sample_lens[s];
            assert_int_equal(mk->numel, (int64_t)len * len);
            const uint8_t *md = mk->data;
            for (int q = 0; q < len; q++) {
                while (b->split_start[sp + 1] <= start + q)
                    sp++;
                for (int k = 0; k < len; k++) {
                    int v = op_attn_visible(&a, sp, start + q, start + k);
                    if (v != md[q * len + k])
                        fail_msg("%s: sample %d: query %d key %d visible=%d, the reference says %d", name, s, q, k, v,
                                 md[q * len + k]);
                }
            }
            start += len;
        }
    }

    /* forward and backward */
    model_t *m = model_new(&cfg, ops, err, sizeof err);
    if (!m)
        fail_msg("%s", err);
    model_init_test(m, rc.weights_seed);
    model_caps_t caps = model_caps_of(b);
    caps.ce_chunk = 7;
    if (model_reserve(m, &caps, err, sizeof err))
        fail_msg("%s", err);
    model_loss_opts_t lo = rc.loss;
    model_losses_t L;
    model_zero_grad(m);
    if (model_forward(m, b, &lo, 1, &L, err, sizeof err))
        fail_msg("%s", err);
    if (model_backward(m, err, sizeof err))
        fail_msg("%s", err);

    double ref_ce = golden_f32(gold(g, "loss.ce"), 0), ref_mse = golden_f32(gold(g, "loss.mse"), 0);
    double ref_total = golden_f32(gold(g, "loss.total"), 0);
    printf("# %s: tokens %d, loss ce %.7f (ref %.7f) mse %.7f (ref %.7f) total %.7f (ref %.7f)\n", name, b->S, L.ce,
           ref_ce, L.mse, ref_mse, L.total, ref_total);
    if (fabs(L.ce - ref_ce) > tol * fabs(ref_ce))
        fail_msg("%s: CE %.8g vs reference %.8g", name, L.ce, ref_ce);
    if (fabs(L.mse - ref_mse) > tol * fabs(ref_mse))
        fail_msg("%s: MSE %.8g vs reference %.8g", name, L.mse, ref_mse);
    if (fabs(L.total - ref_total) > tol * fabs(ref_total))
        fail_msg("%s: total %.8g vs reference %.8g", name, L.total, ref_total);

    free(tmp);
    float *hid = malloc((size_t)b->S * cfg.hidden * 4);
    model_hidden(m, b, hid);
    t = gold(g, "hidden");
    float *rh = malloc(t->nbytes);
    memcpy(rh, t->data, t->nbytes);
    double e = golden_rel_err(hid, rh, (size_t)b->S * cfg.hidden);
    free(hid);
    free(rh);
    if (e > tol)
        fail_msg("%s: hidden states differ by %.3g relative", name, e);

    /* gradients: every trainable parameter has a golden, full or projected;
     * the error is relative to the parameter's own gradient norm */
    int n_full = 0, n_proj = 0;
    double worst = 0, gtotal = 0;
    const char *worst_name = "";
    double *dn = calloc((size_t)m->n_params, sizeof(double)), *rn = calloc((size_t)m->n_params, sizeof(double));
    for (int i = 0; i < m->n_params; i++) {
        const model_param_t *p = &m->params[i];
        if (!p->trainable)
            continue;
        float *gc = malloc(p->numel * 4);
        m->ops->download(gc, *p->g, p->numel * 4);
        char gn[160];
        snprintf(gn, sizeof gn, "grad.%s", p->name);
        const st_tensor_t *gt = st_find(g, gn);
        if (gt) {
            assert_int_equal(gt->numel, (int64_t)p->numel);
            float *gr = malloc(gt->nbytes);
            memcpy(gr, gt->data, gt->nbytes);
            for (size_t k = 0; k < p->numel; k++) {
                dn[i] += ((double)gc[k] - gr[k]) * ((double)gc[k] - gr[k]);
                rn[i] += (double)gr[k] * gr[k];
            }
            dn[i] = sqrt(dn[i]);
            rn[i] = sqrt(rn[i]);
            free(gr);
            n_full++;
        } else {
            snprintf(gn, sizeof gn, "gradproj.%s", p->name);
            gt = st_find(g, gn);
            if (!gt)
                fail_msg("%s: golden has no gradient for %s", name, p->name);
            double pr[9];
            memcpy(pr, gt->data, sizeof pr);
            double nrm = 0;
            for (size_t k = 0; k < p->numel; k++)
                nrm += (double)gc[k] * gc[k];
            dn[i] = fabs(sqrt(nrm) - pr[0]);
            char key[200];
            snprintf(key, sizeof key, "proj:%s", p->name);
            uint64_t h = model_fnv1a64(key);
            double sum[8] = {0};
#pragma omp parallel
            {
                double loc[8] = {0};
#pragma omp for schedule(static)
                for (size_t k = 0; k < p->numel; k++) {
                    uint64_t x = h + k, z = rng_splitmix64(&x);
                    double v = gc[k];
                    for (int q = 0; q < 8; q++)
                        loc[q] += (z >> (63 - q)) & 1 ? v : -v;
                }
#pragma omp critical
                for (int q = 0; q < 8; q++)
                    sum[q] += loc[q];
            }
            for (int q = 0; q < 8; q++)
                if (fabs(sum[q] - pr[q + 1]) > dn[i])
                    dn[i] = fabs(sum[q] - pr[q + 1]);
            rn[i] = pr[0];
            n_proj++;
        }
        gtotal += rn[i] * rn[i];
        free(gc);
    }
    gtotal = sqrt(gtotal);
    int n_zero = 0;
    for (int i = 0; i < m->n_params; i++) {
        const model_param_t *p = &m->params[i];
        if (!p->trainable)
            continue;
        double e;
        if (rn[i] < 1e-8 * gtotal) {
            /* zero in exact arithmetic (the ViT's key biases: softmax ignores
             * a per-query constant): ours must be rounding noise too */
            e = dn[i] / (1e-1 * gtotal) * (1e-4 / tol);
            n_zero++;
        } else {
            e = dn[i] / rn[i];
        }
        if (e > worst) {
            worst = e;
            worst_name = p->name;
        }
        if (e > tol)
            fail_msg("%s: gradient of %s differs by %.3g relative (norm of the difference %.3g, of the reference %.3g)",
                     name, p->name, e, dn[i], rn[i]);
    }
    free(dn);
    free(rn);
    printf("# %s: %d full and %d projected gradients within %g (%d zero in exact arithmetic), worst %.2g (%s)\n", name,
           n_full, n_proj, tol, n_zero, worst, worst_name);
    model_destroy(&m);
    st_close(&g);
    refcase_free(&rc);
}

int refcheck_case(const char *path, const op_table_t *ops, double tol, char *msg, size_t msglen)
{
    CASECHECK_RUN(msg, msglen, check_case(path, ops, tol));
}
