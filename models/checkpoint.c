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

/* appends ", text" (or "text" first) to buf while it has room; counts always */
static void note(char *buf, size_t cap, int *n, const char *text)
{
    size_t k = strlen(buf);
    if (k + strlen(text) + 16 < cap)
        snprintf(buf + k, cap - k, "%s%s", *n ? ", " : "", text);
    else if (k + 6 < cap && !strstr(buf, "..."))
        snprintf(buf + k, cap - k, ", ...");
    (*n)++;
}

static int is_patch_conv(const model_t *m, const model_param_t *p, const st_tensor_t *t)
{
    int cp = m->cfg.vit_patch;
    return strstr(p->name, "patch_embedding.weight") && t->ndim == 4 && t->shape[0] == p->shape[0] &&
           t->shape[1] == 3 && t->shape[2] == cp && t->shape[3] == cp;
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
    float *host = NULL, *conv = NULL;
    /* strict: every parameter present with its shape; all problems named at once */
    char missing[600] = "", shaped[900] = "";
    int n_missing = 0, n_shaped = 0;
    size_t maxn = 0;
    for (int i = 0; i < m->n_params; i++) {
        const model_param_t *p = &m->params[i];
        if (p->numel > maxn)
            maxn = p->numel;
        const st_tensor_t *t = st_set_find(s, p->name);
        if (t)
            used++;
        if (p->group == MODEL_GROUP_FIXED)
            continue; /* recomputed, as the official resume does */
        if (!t) {
            note(missing, sizeof missing, &n_missing, p->name);
        } else if (!is_patch_conv(m, p, t) && st_expect(t, -1, p->ndim, p->shape, e2, sizeof e2)) {
            const char *q = strstr(e2, "tensor \"");
            note(shaped, sizeof shaped, &n_shaped, q ? q + 7 : e2);
        }
    }
    if (n_missing || n_shaped) {
        snprintf(err, errlen, "%s: not a checkpoint of the %s model: %d missing tensor%s%s%s%s; %d mis-shaped%s%s",
                 path, m->cfg.name, n_missing, n_missing == 1 ? "" : "s", n_missing ? " (" : "", missing,
                 n_missing ? ")" : "", n_shaped, n_shaped ? ": " : "", shaped);
        goto out;
    }
    host = malloc(maxn * sizeof(float));
    if (!host) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    for (int i = 0; i < m->n_params; i++) {
        const model_param_t *p = &m->params[i];
        if (p->group == MODEL_GROUP_FIXED) {
            if (dst) {
                m->ops->download(host, *p->w, p->numel * 4);
                m->ops->upload(base + p->offset, host, p->numel * 4);
            }
            continue;
        }
        const st_tensor_t *t = st_set_find(s, p->name);
        if (is_patch_conv(m, p, t)) {
            conv = conv ? conv : malloc(p->numel * sizeof(float));
            if (!conv || st_read_f32(t, conv, p->numel, e2, sizeof e2)) {
                snprintf(err, errlen, "%s", conv ? e2 : "out of memory");
                goto out;
            }
            conv_to_linear(host, conv, (int)p->shape[0], m->cfg.vit_patch);
        } else if (st_read_f32(t, host, p->numel, e2, sizeof e2)) {
            snprintf(err, errlen, "%s", e2);
            goto out;
        }
        m->ops->upload(base + p->offset, host, p->numel * sizeof(float));
    }
    /* tensors the model does not have: counted, and named in err as a note */
    int extra = st_set_count(s) - used;
    if (n_extra)
        *n_extra = extra;
    err[0] = 0;
    if (extra > 0) {
        char names[600] = "";
        int k = 0;
        for (int i = 0; i < st_set_count(s); i++) {
            const st_tensor_t *t = st_set_get(s, i);
            if (!model_find(m, t->name))
                note(names, sizeof names, &k, t->name);
        }
        snprintf(err, errlen, "%s: %d tensor%s not in the %s model: %s", path, extra, extra == 1 ? "" : "s",
                 m->cfg.name, names);
    }
    rc = 0;
out:
    free(host);
    free(conv);
    st_set_close(&s);
    return rc;
}
