/* checkpoint.c — model_save / model_load (checkpoint.h). Parameters live in
 * backend memory, so both go through one host buffer per tensor. */
#include "checkpoint.h"

#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int model_save(const model_t *m, const float *src, const char *path, int dtype, char *err, size_t errlen)
{
    const float *base = src ? src : m->param_mem;
    st_writer_t *w = st_writer_new();
    float *host = malloc(m->n_floats * sizeof(float));
    int rc = -1;
    if (!w || !host) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    m->ops->download(host, base, m->n_floats * sizeof(float));
    for (int i = 0; i < m->n_params; i++) {
        const model_param_t *p = &m->params[i];
        if (st_writer_add_f32(w, p->name, dtype, p->ndim, p->shape, host + p->offset, err, errlen))
            goto out;
    }
    rc = st_writer_write(w, path, err, errlen);
out:
    st_writer_destroy(&w);
    free(host);
    return rc;
}

/* [Dv, 3, p, p] convolution -> [Dv, p·p·3] with feature (ky·p + kx)·3 + c */
static void conv_to_linear(float *dst, const float *conv, int Dv, int p)
{
    for (int o = 0; o < Dv; o++)
        for (int c = 0; c < 3; c++)
            for (int ky = 0; ky < p; ky++)
                for (int kx = 0; kx < p; kx++)
                    dst[(size_t)o * p * p * 3 + (size_t)(ky * p + kx) * 3 + c] =
                        conv[(((size_t)o * 3 + c) * p + ky) * p + kx];
}

int model_load(model_t *m, float *dst, const char *path, int *n_extra, char *err, size_t errlen)
{
    float *base = dst ? dst : m->param_mem;
    char e2[400];
    st_set_t *s = st_set_open(path, e2, sizeof e2);
    if (!s) {
        snprintf(err, errlen, "%s", e2);
        return -1;
    }
    int rc = -1, used = 0;
    size_t maxn = 0;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].numel > maxn)
            maxn = m->params[i].numel;
    float *host = malloc(maxn * sizeof(float)), *conv = NULL;
    if (!host) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    for (int i = 0; i < m->n_params; i++) {
        const model_param_t *p = &m->params[i];
        if (p->group == MODEL_GROUP_FIXED) {
            /* recomputed by model_new; keep them whatever the file holds */
            if (st_set_find(s, p->name))
                used++;
            if (dst) {
                m->ops->download(host, *p->w, p->numel * 4);
                m->ops->upload(base + p->offset, host, p->numel * 4);
            }
            continue;
        }
        const st_tensor_t *t = st_set_find(s, p->name);
        if (!t) {
            char shp[48];
            if (p->ndim == 2)
                snprintf(shp, sizeof shp, "[%lld,%lld]", (long long)p->shape[0], (long long)p->shape[1]);
            else
                snprintf(shp, sizeof shp, "[%lld]", (long long)p->shape[0]);
            snprintf(err, errlen, "%s: no tensor \"%s\", expected %s for the %s model", path, p->name, shp,
                     m->cfg.name);
            goto out;
        }
        used++;
        int cfg_p = m->cfg.vit_patch;
        if (strstr(p->name, "patch_embedding.weight") && t->ndim == 4 && t->shape[0] == p->shape[0] &&
            t->shape[1] == 3 && t->shape[2] == cfg_p && t->shape[3] == cfg_p) {
            conv = malloc(p->numel * sizeof(float));
            if (!conv || st_read_f32(t, conv, p->numel, e2, sizeof e2)) {
                snprintf(err, errlen, "%s", conv ? e2 : "out of memory");
                goto out;
            }
            conv_to_linear(host, conv, (int)p->shape[0], cfg_p);
        } else {
            if (st_expect(t, -1, p->ndim, p->shape, e2, sizeof e2) || st_read_f32(t, host, p->numel, e2, sizeof e2)) {
                snprintf(err, errlen, "%s", e2);
                goto out;
            }
        }
        m->ops->upload(base + p->offset, host, p->numel * sizeof(float));
    }
    if (n_extra)
        *n_extra = st_set_count(s) - used;
    rc = 0;
out:
    free(host);
    free(conv);
    st_set_close(&s);
    return rc;
}
