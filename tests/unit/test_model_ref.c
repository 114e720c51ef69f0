/* test_model_ref.c — the C model against the PyTorch reference
 * (tests/reference/FORMAT.md): for every case under tests/reference/cases,
 * pack the samples, run forward and backward on the CPU backend and compare
 * the packed batch, the masks, the losses, the final hidden states and every
 * parameter's gradient with the golden file PyTorch wrote.
 *
 * BAGEL_REF_CASES=a,b limits the cases (the big 0.5B case takes seconds and
 * about 4 GB). */
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>

#include "../../kernels/ops.h"
#include "../../models/model.h"
#include "../../models/pack.h"
#include "../../models/safetensors.h"

#define REF_DIR "tests/reference"

typedef struct owned {
    void **p;
    int n, cap;
} owned_t;

static void *keep(owned_t *o, void *p)
{
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 64;
        o->p = realloc(o->p, (size_t)o->cap * sizeof(void *));
    }
    o->p[o->n++] = p;
    return p;
}

static void release(owned_t *o)
{
    for (int i = 0; i < o->n; i++) free(o->p[i]);
    free(o->p);
}

static int jbool(json_t *o, const char *k) { return json_is_true(json_object_get(o, k)); }

/* a {"shape":[...],"data":[...]} image or latent */
static void *jtensor(owned_t *own, json_t *t, int is_float, int *d0, int *d1, int *d2)
{
    json_t *shape = json_object_get(t, "shape"), *data = json_object_get(t, "data");
    assert_non_null(shape);
    assert_non_null(data);
    *d0 = (int)json_integer_value(json_array_get(shape, 0));
    *d1 = (int)json_integer_value(json_array_get(shape, 1));
    *d2 = (int)json_integer_value(json_array_get(shape, 2));
    size_t n = json_array_size(data);
    assert_int_equal(n, (size_t)*d0 * *d1 * *d2);
    if (is_float) {
        float *f = keep(own, malloc(n * sizeof(float)));
        for (size_t i = 0; i < n; i++) f[i] = (float)json_number_value(json_array_get(data, i));
        return f;
    }
    uint8_t *u = keep(own, malloc(n));
    for (size_t i = 0; i < n; i++) u[i] = (uint8_t)json_integer_value(json_array_get(data, i));
    return u;
}

static int force(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return v ? json_is_true(v) : PACK_DRAW;
}

static const st_tensor_t *gold(const st_file_t *f, const char *name)
{
    const st_tensor_t *t = st_find(f, name);
    if (!t) fail_msg("golden has no tensor %s", name);
    return t;
}

static int64_t gi(const st_tensor_t *t, int64_t i)
{
    int64_t v;
    memcpy(&v, (const char *)t->data + 8 * i, 8);
    return v;
}

static float gf(const st_tensor_t *t, int64_t i)
{
    float v;
    memcpy(&v, (const char *)t->data + 4 * i, 4);
    return v;
}

static void expect_ints(const st_file_t *f, const char *name, const int32_t *got, int n)
{
    const st_tensor_t *t = gold(f, name);
    if (t->numel != n) fail_msg("%s: %d values, the reference has %lld", name, n, (long long)t->numel);
    for (int i = 0; i < n; i++)
        if (got[i] != gi(t, i)) fail_msg("%s[%d] = %d, the reference has %lld", name, i, got[i], (long long)gi(t, i));
}

static double rel_err(const float *a, const float *ref, size_t n)
{
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
        r += (double)ref[i] * ref[i];
    }
    return r > 0 ? sqrt(d / r) : sqrt(d);
}

static void check_case(const char *path)
{
    owned_t own = {0};
    json_error_t je;
    json_t *cs = json_load_file(path, 0, &je);
    if (!cs) fail_msg("%s:%d: %s", path, je.line, je.text);
    const char *name = json_string_value(json_object_get(cs, "name"));
    char err[512];
    char *cfg_text = json_dumps(json_object_get(cs, "config"), 0);
    model_config_t cfg;
    if (model_config_parse(&cfg, cfg_text, ".", err, sizeof err)) fail_msg("%s: config: %s", path, err);
    free(cfg_text);

    char gpath[512];
    snprintf(gpath, sizeof gpath, REF_DIR "/golden/%s.safetensors", name);
    st_file_t *g = st_open(gpath, err, sizeof err);
    if (!g) fail_msg("%s", err);

    /* samples -> pack */
    pack_opts_t po = {0};
    pack_t pk;
    pack_init(&pk, &cfg, &po, 1);
    json_t *samples = json_object_get(cs, "samples");
    for (size_t si = 0; si < json_array_size(samples); si++) {
        json_t *segs = json_object_get(json_array_get(samples, si), "segments");
        int ns = (int)json_array_size(segs);
        pack_segment_t *seg = keep(&own, calloc((size_t)ns, sizeof *seg));
        for (int k = 0; k < ns; k++) {
            json_t *s = json_array_get(segs, (size_t)k);
            pack_segment_t *p = &seg[k];
            int d0, d1, d2;
            p->loss = jbool(s, "loss");
            p->cfg = jbool(s, "cfg");
            if (!strcmp(json_string_value(json_object_get(s, "kind")), "text")) {
                p->kind = PACK_TEXT;
                p->drop = force(s, "drop");
                json_t *tk = json_object_get(s, "tokens");
                p->n_tokens = (int)json_array_size(tk);
                int32_t *ids = keep(&own, malloc((size_t)(p->n_tokens + 1) * 4));
                for (int i = 0; i < p->n_tokens; i++) ids[i] = (int32_t)json_integer_value(json_array_get(tk, (size_t)i));
                p->tokens = ids;
                continue;
            }
            p->kind = PACK_IMAGE;
            p->und = jbool(s, "und");
            p->cond = jbool(s, "cond");
            p->drop_vae = force(s, "drop_vae");
            p->drop_vit = force(s, "drop_vit");
            json_t *t;
            if ((t = json_object_get(s, "vit"))) {
                p->vit = jtensor(&own, t, 0, &d0, &d1, &d2);
                p->vit_h = d0;
                p->vit_w = d1;
            }
            if ((t = json_object_get(s, "vae"))) {
                p->vae = jtensor(&own, t, 0, &d0, &d1, &d2);
                p->vae_h = d0;
                p->vae_w = d1;
            }
            if ((t = json_object_get(s, "latent"))) {
                p->latent = jtensor(&own, t, 1, &d0, &d1, &d2);
                p->lat_c = d0;
                p->lat_h = d1;
                p->lat_w = d2;
            }
        }
        pack_sample_t smp = {.n_segments = ns, .seg = seg};
        if (pack_add(&pk, &smp, err, sizeof err)) fail_msg("%s: sample %zu: %s", path, si, err);
    }
    model_batch_t *b = &pk.b;

    /* the forced draws: tau per noisy image, eps for every latent token */
    json_t *tau = json_object_get(cs, "tau"), *eps = json_object_get(cs, "eps");
    size_t ti = 0;
    for (int i = 0, li = 0; i < b->n_vae_images; i++) {
        int n = b->vae_hw[2 * i] * b->vae_hw[2 * i + 1];
        if (!isinf(b->tau[li])) {
            assert_true(ti < json_array_size(tau));
            float v = (float)json_number_value(json_array_get(tau, ti++));
            for (int k = 0; k < n; k++) b->tau[li + k] = v;
        }
        li += n;
    }
    assert_int_equal(ti, json_array_size(tau));
    assert_int_equal(json_array_size(eps), (size_t)b->n_lat * b->lat_dim);
    for (size_t i = 0; i < json_array_size(eps); i++) b->eps[i] = (float)json_number_value(json_array_get(eps, i));
    pack_update_t(b, cfg.timestep_shift);

    /* the packed batch, exactly */
    int32_t seqlen = b->S;
    expect_ints(g, "sequence_length", &seqlen, 1);
    expect_ints(g, "sample_lens", b->sample_lens, b->n_samples);
    int32_t *tmp = keep(&own, malloc((size_t)(b->S + b->n_splits + 1) * 4));
    for (int i = 0; i < b->n_splits; i++) tmp[i] = b->split_start[i + 1] - b->split_start[i];
    expect_ints(g, "split_lens", tmp, b->n_splits);
    for (int i = 0; i < b->n_splits; i++) tmp[i] = b->split_mode[i];
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
        float r = gf(t, i);
        if (!(r == b->tau[i] || (isinf(r) && isinf(b->tau[i]))))
            fail_msg("packed_timesteps[%d] = %g, the reference has %g", i, b->tau[i], r);
    }
    t = gold(g, "ce_loss_weights");
    for (int i = 0; i < b->n_ce; i++)
        if (fabsf(gf(t, i) - b->ce_weight[i]) > 1e-6f * gf(t, i))
            fail_msg("ce_loss_weights[%d] = %g, the reference has %g", i, b->ce_weight[i], gf(t, i));

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
                while (b->split_start[sp + 1] <= start + q) sp++;
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
    model_t *m = model_new(&cfg, &op_cpu, err, sizeof err);
    if (!m) fail_msg("%s", err);
    model_init_test(m, (uint64_t)json_integer_value(json_object_get(cs, "weights_seed")));
    model_caps_t caps = {.S = b->S, .n_vit = b->n_vit, .n_lat = b->n_lat, .n_ce = b->n_ce, .n_splits = b->n_splits,
                         .n_vit_images = b->n_vit_images, .ce_chunk = 7};
    if (model_reserve(m, &caps, err, sizeof err)) fail_msg("%s", err);
    json_t *lj = json_object_get(cs, "loss");
    model_loss_opts_t lo = model_default_loss;
    lo.ce_weight = (float)json_number_value(json_object_get(lj, "ce_weight"));
    lo.mse_weight = (float)json_number_value(json_object_get(lj, "mse_weight"));
    lo.ce_reweight = jbool(lj, "ce_reweight");
    model_losses_t L;
    model_zero_grad(m);
    if (model_forward(m, b, &lo, 1, &L, err, sizeof err)) fail_msg("%s", err);
    if (model_backward(m, err, sizeof err)) fail_msg("%s", err);

    double ref_ce = gf(gold(g, "loss.ce"), 0), ref_mse = gf(gold(g, "loss.mse"), 0);
    double ref_total = gf(gold(g, "loss.total"), 0);
    printf("# %s: tokens %d, loss ce %.7f (ref %.7f) mse %.7f (ref %.7f) total %.7f (ref %.7f)\n", name, b->S, L.ce,
           ref_ce, L.mse, ref_mse, L.total, ref_total);
    if (fabs(L.ce - ref_ce) > 1e-4 * fabs(ref_ce)) fail_msg("%s: CE %.8g vs reference %.8g", name, L.ce, ref_ce);
    if (fabs(L.mse - ref_mse) > 1e-4 * fabs(ref_mse)) fail_msg("%s: MSE %.8g vs reference %.8g", name, L.mse, ref_mse);
    if (fabs(L.total - ref_total) > 1e-4 * fabs(ref_total))
        fail_msg("%s: total %.8g vs reference %.8g", name, L.total, ref_total);

    float *hid = keep(&own, malloc((size_t)b->S * cfg.hidden * 4));
    model_hidden(m, b, hid);
    t = gold(g, "hidden");
    float *rh = keep(&own, malloc(t->nbytes));
    memcpy(rh, t->data, t->nbytes);
    double e = rel_err(hid, rh, (size_t)b->S * cfg.hidden);
    if (e > 1e-4) fail_msg("%s: hidden states differ by %.3g relative", name, e);

    /* gradients: every trainable parameter has a golden, full or projected */
    int n_full = 0, n_proj = 0;
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < m->n_params; i++) {
        const model_param_t *p = &m->params[i];
        if (!p->trainable) continue;
        float *gc = malloc(p->numel * 4);
        m->ops->download(gc, *p->g, p->numel * 4);
        char gn[160];
        snprintf(gn, sizeof gn, "grad.%s", p->name);
        const st_tensor_t *gt = st_find(g, gn);
        double err_rel;
        if (gt) {
            assert_int_equal(gt->numel, (int64_t)p->numel);
            float *gr = malloc(gt->nbytes);
            memcpy(gr, gt->data, gt->nbytes);
            err_rel = rel_err(gc, gr, p->numel);
            double rn = 0;
            for (size_t k = 0; k < p->numel; k++) rn += (double)gr[k] * gr[k];
            if (rn == 0) err_rel = sqrt(err_rel * err_rel) > 1e-12 ? 1 : 0; /* a zero reference: ours must be ~0 */
            free(gr);
            n_full++;
        } else {
            snprintf(gn, sizeof gn, "gradproj.%s", p->name);
            gt = st_find(g, gn);
            if (!gt) fail_msg("%s: golden has no gradient for %s", name, p->name);
            double pr[9];
            memcpy(pr, gt->data, sizeof pr);
            double nrm = 0, pc[8] = {0};
            for (size_t k = 0; k < p->numel; k++) nrm += (double)gc[k] * gc[k];
            nrm = sqrt(nrm);
            for (int q = 0; q < 8; q++) {
                char key[200];
                snprintf(key, sizeof key, "proj:%s:%d", p->name, q);
                uint64_t h = model_fnv1a64(key);
                double s = 0;
                for (size_t k = 0; k < p->numel; k++) s += (model_splitmix64(h + k) >> 63) ? gc[k] : -gc[k];
                pc[q] = s;
            }
            err_rel = fabs(nrm - pr[0]) / (pr[0] > 0 ? pr[0] : 1);
            for (int q = 0; q < 8; q++) {
                double d = fabs(pc[q] - pr[q + 1]) / (pr[0] > 0 ? pr[0] : 1);
                if (d > err_rel) err_rel = d;
            }
            n_proj++;
        }
        if (err_rel > worst) {
            worst = err_rel;
            worst_name = p->name;
        }
        if (err_rel > 1e-4) fail_msg("%s: gradient of %s differs by %.3g relative", name, p->name, err_rel);
        free(gc);
    }
    printf("# %s: %d full and %d projected gradients within 1e-4, worst %.2g (%s)\n", name, n_full, n_proj, worst,
           worst_name);
    model_destroy(&m);
    pack_free(&pk);
    st_close(&g);
    json_decref(cs);
    release(&own);
}

static int wanted(const char *name)
{
    const char *only = getenv("BAGEL_REF_CASES");
    if (!only || !*only) return 1;
    size_t n = strlen(name);
    for (const char *p = only; *p;) {
        const char *c = strchr(p, ',');
        size_t k = c ? (size_t)(c - p) : strlen(p);
        if (k == n && !strncmp(p, name, n)) return 1;
        p += k + (c ? 1 : 0);
    }
    return 0;
}

static void test_cases(void **state)
{
    (void)state;
    DIR *d = opendir(REF_DIR "/cases");
    assert_non_null(d);
    struct dirent *e;
    char names[64][128];
    int n = 0;
    while ((e = readdir(d)) && n < 64) {
        size_t l = strlen(e->d_name);
        if (l > 5 && !strcmp(e->d_name + l - 5, ".json")) snprintf(names[n++], 128, "%.*s", (int)(l - 5), e->d_name);
    }
    closedir(d);
    assert_true(n > 0);
    qsort(names, (size_t)n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    for (int i = 0; i < n; i++) {
        if (!wanted(names[i])) {
            printf("# %s: skipped (BAGEL_REF_CASES)\n", names[i]);
            continue;
        }
        char path[300];
        snprintf(path, sizeof path, REF_DIR "/cases/%s.json", names[i]);
        check_case(path);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_cases)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
