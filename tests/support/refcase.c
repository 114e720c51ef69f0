/* refcase.c — see refcase.h. */
#include "refcase.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *keep(refcase_t *rc, void *p)
{
    if (!p)
        return NULL;
    if (rc->n_owned == rc->cap_owned) {
        rc->cap_owned = rc->cap_owned ? rc->cap_owned * 2 : 64;
        void **n = realloc(rc->owned, (size_t)rc->cap_owned * sizeof(void *));
        if (!n) {
            free(p);
            return NULL;
        }
        rc->owned = n;
    }
    rc->owned[rc->n_owned++] = p;
    return p;
}

void refcase_free(refcase_t *rc)
{
    for (int i = 0; i < rc->n_owned; i++)
        free(rc->owned[i]);
    free(rc->owned);
    pack_free(&rc->pack);
    memset(rc, 0, sizeof *rc);
}

static int jbool(json_t *o, const char *k) { return json_is_true(json_object_get(o, k)); }

static int force(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return v ? json_is_true(v) : PACK_DRAW;
}

/* a {"shape":[d0,d1,d2],"data":[...]} image (u8) or latent (f32) */
static void *jtensor(refcase_t *rc, json_t *t, int is_float, int d[3], char *err, size_t errlen)
{
    json_t *shape = json_object_get(t, "shape"), *data = json_object_get(t, "data");
    if (json_array_size(shape) != 3 || !json_is_array(data)) {
        snprintf(err, errlen, "tensor without a 3-d shape and data");
        return NULL;
    }
    for (int i = 0; i < 3; i++)
        d[i] = (int)json_integer_value(json_array_get(shape, (size_t)i));
    size_t n = json_array_size(data);
    if (n != (size_t)d[0] * d[1] * d[2]) {
        snprintf(err, errlen, "tensor data holds %zu values, shape says %d", n, d[0] * d[1] * d[2]);
        return NULL;
    }
    if (is_float) {
        float *f = keep(rc, malloc(n * sizeof(float) + 1));
        for (size_t i = 0; f && i < n; i++)
            f[i] = (float)json_number_value(json_array_get(data, i));
        return f;
    }
    uint8_t *u = keep(rc, malloc(n + 1));
    for (size_t i = 0; u && i < n; i++)
        u[i] = (uint8_t)json_integer_value(json_array_get(data, i));
    return u;
}

int refcase_load(refcase_t *rc, const char *path, char *err, size_t errlen)
{
    memset(rc, 0, sizeof *rc);
    json_error_t je;
    json_t *cs = json_load_file(path, 0, &je);
    if (!cs) {
        snprintf(err, errlen, "%s:%d: %s", path, je.line, je.text);
        return -1;
    }
    int ret = -1;
    char e2[300];
    snprintf(rc->name, sizeof rc->name, "%s", json_string_value(json_object_get(cs, "name")) ?: "case");
    char *cfg_text = json_dumps(json_object_get(cs, "config"), 0);
    if (!cfg_text || model_config_parse(&rc->cfg, cfg_text, ".", e2, sizeof e2)) {
        snprintf(err, errlen, "%s: config: %s", path, cfg_text ? e2 : "missing");
        free(cfg_text);
        goto out;
    }
    free(cfg_text);
    rc->weights_seed = (uint64_t)json_integer_value(json_object_get(cs, "weights_seed"));
    json_t *lj = json_object_get(cs, "loss");
    rc->loss = model_default_loss;
    if (lj) {
        rc->loss.ce_weight = (float)json_number_value(json_object_get(lj, "ce_weight"));
        rc->loss.mse_weight = (float)json_number_value(json_object_get(lj, "mse_weight"));
        rc->loss.ce_reweight = jbool(lj, "ce_reweight");
    }

    pack_opts_t po = {0}; /* every draw is forced by the case */
    pack_init(&rc->pack, &rc->cfg, &po, 1);
    json_t *samples = json_object_get(cs, "samples");
    for (size_t si = 0; si < json_array_size(samples); si++) {
        json_t *segs = json_object_get(json_array_get(samples, si), "segments");
        int ns = (int)json_array_size(segs);
        pack_segment_t *seg = keep(rc, calloc((size_t)ns + 1, sizeof *seg));
        if (!seg)
            goto oom;
        for (int k = 0; k < ns; k++) {
            json_t *s = json_array_get(segs, (size_t)k), *t;
            pack_segment_t *p = &seg[k];
            int d[3];
            p->loss = jbool(s, "loss");
            p->cfg = jbool(s, "cfg");
            if (!strcmp(json_string_value(json_object_get(s, "kind")) ?: "", "text")) {
                p->kind = PACK_TEXT;
                p->drop = force(s, "drop");
                json_t *tk = json_object_get(s, "tokens");
                p->n_tokens = (int)json_array_size(tk);
                int32_t *ids = keep(rc, malloc((size_t)(p->n_tokens + 1) * 4));
                if (!ids)
                    goto oom;
                for (int i = 0; i < p->n_tokens; i++)
                    ids[i] = (int32_t)json_integer_value(json_array_get(tk, (size_t)i));
                p->tokens = ids;
                continue;
            }
            p->kind = PACK_IMAGE;
            p->und = jbool(s, "und");
            p->cond = jbool(s, "cond");
            p->drop_vae = force(s, "drop_vae");
            p->drop_vit = force(s, "drop_vit");
            if ((t = json_object_get(s, "vit"))) {
                if (!(p->vit = jtensor(rc, t, 0, d, e2, sizeof e2)))
                    goto bad;
                p->vit_h = d[0];
                p->vit_w = d[1];
            }
            if ((t = json_object_get(s, "vae"))) {
                if (!(p->vae = jtensor(rc, t, 0, d, e2, sizeof e2)))
                    goto bad;
                p->vae_h = d[0];
                p->vae_w = d[1];
            }
            if ((t = json_object_get(s, "latent"))) {
                if (!(p->latent = jtensor(rc, t, 1, d, e2, sizeof e2)))
                    goto bad;
                p->lat_c = d[0];
                p->lat_h = d[1];
                p->lat_w = d[2];
            }
            continue;
        bad:
            snprintf(err, errlen, "%s: sample %zu segment %d: %s", path, si, k, e2);
            goto out;
        }
        pack_sample_t smp = {.n_segments = ns, .seg = seg};
        if (pack_add(&rc->pack, &smp, e2, sizeof e2)) {
            snprintf(err, errlen, "%s: sample %zu: %s", path, si, e2);
            goto out;
        }
    }

    /* the forced draws: tau per noisy image, eps for every latent token */
    model_batch_t *b = &rc->pack.b;
    json_t *tau = json_object_get(cs, "tau"), *eps = json_object_get(cs, "eps");
    size_t ti = 0;
    for (int i = 0, li = 0; i < b->n_vae_images; i++) {
        int n = b->vae_hw[2 * i] * b->vae_hw[2 * i + 1];
        if (!isinf(b->tau[li])) {
            if (ti >= json_array_size(tau)) {
                snprintf(err, errlen, "%s: fewer tau values than noisy images", path);
                goto out;
            }
            float v = (float)json_number_value(json_array_get(tau, ti++));
            for (int k = 0; k < n; k++)
                b->tau[li + k] = v;
        }
        li += n;
    }
    if (ti != json_array_size(tau) || json_array_size(eps) != (size_t)b->n_lat * b->lat_dim) {
        snprintf(err, errlen, "%s: %zu tau and %zu eps values for %zu noisy images and %d latent values", path,
                 json_array_size(tau), json_array_size(eps), ti, b->n_lat * b->lat_dim);
        goto out;
    }
    for (size_t i = 0; i < json_array_size(eps); i++)
        b->eps[i] = (float)json_number_value(json_array_get(eps, i));
    pack_update_t(b, rc->cfg.timestep_shift);
    ret = 0;
    goto out;
oom:
    snprintf(err, errlen, "%s: out of memory", path);
out:
    json_decref(cs);
    return ret;
}

float *refcase_step(const refcase_t *rc, model_t *m, const model_batch_t *b, const model_caps_t *caps,
                    model_losses_t *L, size_t *n, char *err, size_t errlen)
{
    if (model_reserve(m, caps, err, errlen))
        return NULL;
    model_zero_grad(m);
    if (model_forward(m, b, &rc->loss, 1, L, err, errlen) || model_backward(m, err, errlen))
        return NULL;
    *n = m->n_floats;
    float *g = malloc(*n * sizeof *g);
    if (!g) {
        snprintf(err, errlen, "refcase_step: out of memory for %zu gradients", *n);
        return NULL;
    }
    m->ops->download(g, m->grad_mem, *n * sizeof *g);
    return g;
}
