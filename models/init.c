/* init.c — parameter initializations: the deterministic test weights shared
 * with the PyTorch reference (tests/reference/FORMAT.md), and a fresh
 * BAGEL-style start for training from nothing. The fixed sin-cos tables are
 * filled by model_new and never touched here. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "rng.h"

uint64_t model_fnv1a64(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t model_splitmix64(uint64_t x) { return rng_splitmix64(&x); }

static int is_fixed(const model_param_t *p) { return p->group == MODEL_GROUP_FIXED; }

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

void model_init_test(model_t *m, uint64_t seed)
{
    for (int i = 0; i < m->n_params; i++) {
        const model_param_t *p = &m->params[i];
        if (is_fixed(p))
            continue;
        float *buf = malloc(p->numel * sizeof(float));
        if (!buf)
            continue;
        uint64_t key = model_fnv1a64(p->name) ^ seed;
        int bias = ends_with(p->name, ".bias");
        float inv = p->ndim == 2 ? 1.0f / sqrtf((float)p->shape[1]) : 0.0f;
#pragma omp parallel for schedule(static)
        for (size_t k = 0; k < p->numel; k++) {
            uint64_t x = key + k;
            double u = (double)(rng_splitmix64(&x) >> 40) * 0x1.0p-24;
            float v = (float)(2.0 * u - 1.0);
            if (p->ndim == 2)
                buf[k] = v * inv;
            else if (bias)
                buf[k] = 0.1f * v;
            else
                buf[k] = 1.0f + 0.1f * v;
        }
        m->ops->upload(*p->w, buf, p->numel * sizeof(float));
        free(buf);
    }
}

void model_init_fresh(model_t *m, uint64_t seed)
{
    rng_t r;
    rng_seed(&r, seed);
    for (int i = 0; i < m->n_params; i++) {
        const model_param_t *p = &m->params[i];
        if (is_fixed(p) || strstr(p->name, "_moe_gen"))
            continue;
        float *buf = malloc(p->numel * sizeof(float));
        if (!buf)
            continue;
        int bias = ends_with(p->name, ".bias");
        if (strstr(p->name, "llm2vae")) {
            /* zero, so that generation starts from predicting nothing */
            memset(buf, 0, p->numel * sizeof(float));
        } else if (p->ndim == 2 && (!strncmp(p->name, "language_model.", 15) || strstr(p->name, "vit_model."))) {
            /* the language model and the ViT as HuggingFace initializes them:
             * normal(0, 0.02) */
            for (size_t k = 0; k < p->numel; k++)
                buf[k] = (float)(0.02 * rng_normal(&r));
        } else if (p->ndim == 1 && !bias) {
            for (size_t k = 0; k < p->numel; k++)
                buf[k] = 1.0f;
        } else if (bias && !strstr(p->name, "vit_model") && !strstr(p->name, "connector") &&
                   !strstr(p->name, "time_embedder") && !strstr(p->name, "vae2llm")) {
            memset(buf, 0, p->numel * sizeof(float));
        } else {
            /* PyTorch's Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for
             * weight and bias, as Bagel.__init__ leaves them */
            const model_param_t *wp = p;
            if (bias) {
                char wname[sizeof p->name];
                snprintf(wname, sizeof wname, "%.*s.weight", (int)(strlen(p->name) - 5), p->name);
                wp = model_find(m, wname);
            }
            double fan_in = wp && wp->ndim == 2 ? (double)wp->shape[1] : (double)p->numel;
            double b = 1.0 / sqrt(fan_in);
            for (size_t k = 0; k < p->numel; k++)
                buf[k] = (float)(b * (2.0 * rng_uniform(&r) - 1.0));
        }
        m->ops->upload(*p->w, buf, p->numel * sizeof(float));
        free(buf);
    }
    /* the generation expert starts as a copy of the understanding one */
    for (int i = 0; i < m->n_params; i++) {
        const model_param_t *p = &m->params[i];
        const char *at = strstr(p->name, "_moe_gen");
        if (!at)
            continue;
        char und[sizeof p->name];
        snprintf(und, sizeof und, "%.*s%s", (int)(at - p->name), p->name, at + 8);
        const model_param_t *q = model_find(m, und);
        if (!q || q->numel != p->numel)
            continue;
        float *buf = malloc(p->numel * sizeof(float));
        if (!buf)
            continue;
        m->ops->download(buf, *q->w, p->numel * sizeof(float));
        m->ops->upload(*p->w, buf, p->numel * sizeof(float));
        free(buf);
    }
}
