/* gencheck.c — one generation case (tests/reference/FORMAT.md, "Generation")
 * checked on a backend against what the PyTorch inference model wrote: the
 * three contexts (lengths, positions, the full one's hidden states), greedy
 * text (ids, stop, logits), every Euler step of an image (t, dt, which
 * guidance ran, v_c, v_t, v_i, the combined v, x) and the cache's own
 * consistency case. Used by tests/unit/test_infer_ref.c (CPU) and
 * tests/gpu/test_model_cuda.c. */
#include "gencheck.h"

#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "casecheck.h"
#include "golden.h"
#include "../../models/infer.h"
#include "../../models/safetensors.h"

#define REF_DIR "tests/reference"
#define MAX_INPUTS 8

static float *gfloats(const st_file_t *f, const char *name, size_t want)
{
    const st_tensor_t *t = gold(f, name);
    if (want && (size_t)t->numel != want)
        fail_msg("%s: the reference has %lld values, expected %zu", name, (long long)t->numel, want);
    float *x = malloc((size_t)t->numel * sizeof(float) + 4);
    char err[256];
    if (!x || st_read_f32(t, x, (size_t)t->numel, err, sizeof err))
        fail_msg("%s: %s", name, x ? err : "out of memory");
    return x;
}

typedef struct worst {
    double err;
    char what[96];
} worst_t;

static void compare(worst_t *w, const char *what, const float *got, const float *ref, size_t n, double tol)
{
    double e = golden_rel_err(got, ref, n);
    if (!(e <= tol))
        fail_msg("%s: relative error %.3g > %.3g", what, e, tol);
    if (e > w->err) {
        w->err = e;
        snprintf(w->what, sizeof w->what, "%s", what);
    }
}

/* ---- the case's inputs ---- */

typedef struct gcase {
    json_t *js;
    model_config_t cfg;
    infer_chunk_t in[MAX_INPUTS];
    int n_in;
    void *owned[3 * MAX_INPUTS];
    int n_owned;
} gcase_t;

static void *keep(gcase_t *c, void *p)
{
    if (!p)
        fail_msg("out of memory");
    c->owned[c->n_owned++] = p;
    return p;
}

static float *json_floats(gcase_t *c, json_t *t, size_t want)
{
    json_t *data = json_object_get(t, "data");
    size_t n = json_array_size(data);
    if (want && n != want)
        fail_msg("case: %zu floats where %zu were expected", n, want);
    float *x = keep(c, malloc(n * sizeof(float) + 4));
    for (size_t i = 0; i < n; i++)
        x[i] = (float)json_number_value(json_array_get(data, i));
    return x;
}

static void load_case(gcase_t *c, const char *path)
{
    json_error_t je;
    c->js = json_load_file(path, 0, &je);
    if (!c->js)
        fail_msg("%s:%d: %s", path, je.line, je.text);
    char err[300];
    char *cfg_text = json_dumps(json_object_get(c->js, "config"), 0);
    if (!cfg_text || model_config_parse(&c->cfg, cfg_text, ".", err, sizeof err)) {
        free(cfg_text);
        fail_msg("%s: config: %s", path, err);
    }
    free(cfg_text);
    json_t *ins = json_object_get(c->js, "inputs");
    if (json_array_size(ins) > MAX_INPUTS)
        fail_msg("%s: more than %d inputs", path, MAX_INPUTS);
    int D = model_latent_dim(&c->cfg);
    for (size_t i = 0; i < json_array_size(ins); i++) {
        json_t *x = json_array_get(ins, i);
        const char *kind = json_string_value(json_object_get(x, "kind"));
        infer_chunk_t *ch = &c->in[c->n_in++];
        if (kind && !strcmp(kind, "text")) {
            json_t *tk = json_object_get(x, "tokens");
            int n = (int)json_array_size(tk);
            int32_t *ids = keep(c, malloc((size_t)n * 4 + 4));
            for (int k = 0; k < n; k++)
                ids[k] = (int32_t)json_integer_value(json_array_get(tk, (size_t)k));
            *ch = (infer_chunk_t){.kind = INFER_TEXT, .ids = ids, .n_ids = n};
        } else if (kind && !strcmp(kind, "vit")) {
            json_t *im = json_object_get(x, "image"), *sh = json_object_get(im, "shape");
            int H = (int)json_integer_value(json_array_get(sh, 0)), W = (int)json_integer_value(json_array_get(sh, 1));
            json_t *data = json_object_get(im, "data");
            if (json_array_size(data) != (size_t)H * W * 3)
                fail_msg("%s: input %zu: image data does not match its shape", path, i);
            uint8_t *px = keep(c, malloc((size_t)H * W * 3));
            for (size_t k = 0; k < (size_t)H * W * 3; k++)
                px[k] = (uint8_t)json_integer_value(json_array_get(data, k));
            *ch = (infer_chunk_t){.kind = INFER_VIT, .img = px, .img_h = H, .img_w = W};
        } else if (kind && !strcmp(kind, "vae")) {
            json_t *g = json_object_get(x, "grid");
            int gh = (int)json_integer_value(json_array_get(g, 0)), gw = (int)json_integer_value(json_array_get(g, 1));
            const float *t = json_floats(c, json_object_get(x, "tokens"), (size_t)gh * gw * D);
            *ch = (infer_chunk_t){.kind = INFER_VAE, .lat = t, .gh = gh, .gw = gw};
        } else {
            fail_msg("%s: input %zu: unknown kind", path, i);
        }
    }
}

static void free_case(gcase_t *c)
{
    for (int i = 0; i < c->n_owned; i++)
        free(c->owned[i]);
    json_decref(c->js);
}

/* ---- contexts ---- */

enum { FULL = 0, TEXT_UNC = 1, IMG_UNC = 2 };

static void append(infer_t *e, int slot, const infer_chunk_t *ch, float *hidden, int *at, int H)
{
    char err[300];
    if (infer_append(e, &slot, ch, 1, err, sizeof err))
        fail_msg("append to context %d: %s", slot, err);
    if (hidden)
        *at += infer_hidden(e, hidden + (size_t)*at * H);
}

/* the three contexts of §6.3 from the inputs; the full one's hidden states */
static void build_contexts(infer_t *e, const gcase_t *c, float *hidden, int *n_hidden)
{
    int H = c->cfg.hidden;
    *n_hidden = 0;
    for (int i = 0; i < c->n_in; i++) {
        const infer_chunk_t *ch = &c->in[i];
        if (ch->kind == INFER_TEXT) {
            infer_copy(e, TEXT_UNC, FULL);
            append(e, FULL, ch, hidden, n_hidden, H);
            append(e, IMG_UNC, ch, NULL, NULL, H);
        } else {
            append(e, FULL, ch, hidden, n_hidden, H);
            infer_copy(e, TEXT_UNC, FULL);
        }
    }
}

/* ---- tasks ---- */

typedef struct steps {
    const st_file_t *g;
    int D, N, S;
    double tol;
    worst_t *w;
    int seen;
    const char *name;
    jmp_buf *jb;
} steps_t;

static void on_step(void *u, int image, int step, float t, float dt, const float *v_c, const float *v_t,
                    const float *v_i, const float *v, const float *x, int n, int dim)
{
    steps_t *s = u;
    (void)image;
    char nm[96], what[160];
    size_t m = (size_t)n * dim;
    const st_tensor_t *tt = gold(s->g, "img.t"), *td = gold(s->g, "img.dt"), *on = gold(s->g, "img.cfg_on");
    float rt, rd;
    memcpy(&rt, (const char *)tt->data + 4 * step, 4);
    memcpy(&rd, (const char *)td->data + 4 * step, 4);
    if (fabsf(rt - t) > 1e-6f || fabsf(rd - dt) > 1e-6f)
        fail_msg("step %d: t %.9g dt %.9g, the reference has %.9g %.9g", step, t, dt, rt, rd);
    int want_t = st_find(s->g, (snprintf(nm, sizeof nm, "step.%d.v_t", step), nm)) != NULL;
    if (want_t != (v_t != NULL))
        fail_msg("step %d: text guidance %s, the reference %s (cfg_on %lld)", step, v_t ? "ran" : "did not run",
                 want_t ? "ran" : "did not", (long long)golden_i64(on, step));
    const float *mine[5] = {v_c, v_t, v_i, v, x};
    const char *key[5] = {"v_c", "v_t", "v_i", "v", "x"};
    for (int k = 0; k < 5; k++) {
        snprintf(nm, sizeof nm, "step.%d.%s", step, key[k]);
        const st_tensor_t *gt = st_find(s->g, nm);
        if (!mine[k] || !gt)
            continue; /* v_i: the reference evaluates it even where it goes unused */
        float *ref = gfloats(s->g, nm, m);
        snprintf(what, sizeof what, "%s %s", s->name, nm);
        compare(s->w, what, mine[k], ref, m, s->tol);
        free(ref);
    }
    s->seen++;
}

static int renorm_of(const char *s)
{
    if (s && !strcmp(s, "channel"))
        return INFER_RENORM_CHANNEL;
    if (s && !strcmp(s, "text_channel"))
        return INFER_RENORM_TEXT_CHANNEL;
    return INFER_RENORM_GLOBAL;
}

static void check_text(infer_t *e, const gcase_t *c, const st_file_t *g, int max_tokens, int steps_wanted,
                       const char *ids_key, const char *logits_key, double tol, worst_t *w, const char *name)
{
    char err[300], what[160];
    int V = c->cfg.vocab;
    const st_tensor_t *gid = gold(g, ids_key);
    int n_ref = (int)gid->numel, ls = steps_wanted < n_ref ? steps_wanted : n_ref;
    float *lg = malloc((size_t)(ls > 0 ? ls : 1) * V * sizeof(float));
    int32_t *ids = NULL;
    int nid = 0, stop = 0, slot = 0;
    infer_text_opts_t o = infer_text_defaults;
    o.max_tokens = max_tokens;
    if (!lg || infer_text(e, &slot, 1, &o, &ids, &nid, &stop, lg, ls, err, sizeof err))
        fail_msg("%s: %s", name, lg ? err : "out of memory");
    /* the reference lists every step's argmax, the stop token included.
     * At a tolerance too loose to decide an argmax (bf16), ids may part
     * from the reference's; the logits are compared while the inputs that
     * produced them agree */
    int n = nid + stop, exact = tol < 1e-3, agree = 0;
    for (int i = 0; i < n && i < n_ref; i++) {
        int got = i < nid ? ids[i] : c->cfg.eos_id;
        if (got != golden_i64(gid, i)) {
            if (exact)
                fail_msg("%s: token %d is %d, the reference has %lld", name, i, got, (long long)golden_i64(gid, i));
            break;
        }
        agree = i + 1;
    }
    if (exact && n != n_ref)
        fail_msg("%s: %d tokens, the reference has %d", name, n, n_ref);
    const st_tensor_t *gs = st_find(g, "text.stop");
    if (exact && gs && !strcmp(ids_key, "text.ids") && golden_i64(gs, 0) != stop)
        fail_msg("%s: stopped %d, the reference %lld", name, stop, (long long)golden_i64(gs, 0));
    const st_tensor_t *gl = gold(g, logits_key);
    int rows = (int)(gl->numel / V);
    float *ref = gfloats(g, logits_key, 0);
    for (int s = 0; s < rows && s < ls && s <= agree; s++) {
        snprintf(what, sizeof what, "%s %s[%d]", name, logits_key, s);
        compare(w, what, lg + (size_t)s * V, ref + (size_t)s * V, (size_t)V, tol);
    }
    free(ref), free(lg), free(ids);
}

static void check_case(const char *path, const op_table_t *ops, double tol, char *note, size_t notelen)
{
    gcase_t c = {0};
    load_case(&c, path);
    const char *name = json_string_value(json_object_get(c.js, "name"));
    const char *task = json_string_value(json_object_get(c.js, "task"));
    char gpath[512], err[512], what[160];
    snprintf(gpath, sizeof gpath, REF_DIR "/golden/gen-%s.safetensors", name);
    st_file_t *g = st_open(gpath, err, sizeof err);
    if (!g)
        fail_msg("%s", err);
    model_t *m = model_new(&c.cfg, ops, err, sizeof err);
    if (!m)
        fail_msg("%s", err);
    model_freeze(m, "");
    model_init_test(m, (uint64_t)json_integer_value(json_object_get(c.js, "weights_seed")));
    int H = c.cfg.hidden, D = model_latent_dim(&c.cfg);
    infer_t *e = infer_new(m, 3, 512, err, sizeof err);
    if (!e)
        fail_msg("%s", err);
    worst_t w = {0};

    float *hid = malloc((size_t)512 * H * sizeof(float));
    int nh;
    build_contexts(e, &c, hid, &nh);
    const st_tensor_t *kl = gold(g, "ctx.kv_len"), *kr = gold(g, "ctx.rope");
    for (int s = 0; s < 3; s++)
        if (infer_len(e, s) != golden_i64(kl, s) || infer_rope(e, s) != golden_i64(kr, s))
            fail_msg("%s: context %d holds %d tokens at rope %d, the reference %lld at %lld", name, s, infer_len(e, s),
                     infer_rope(e, s), (long long)golden_i64(kl, s), (long long)golden_i64(kr, s));
    float *ref = gfloats(g, "ctx.hidden", (size_t)nh * H);
    snprintf(what, sizeof what, "%s ctx.hidden", name);
    compare(&w, what, hid, ref, (size_t)nh * H, tol);
    free(ref);
    free(hid);

    if (!strcmp(task, "text")) {
        json_t *t = json_object_get(c.js, "text");
        check_text(e, &c, g, (int)json_integer_value(json_object_get(t, "max_tokens")),
                   (int)json_integer_value(json_object_get(t, "logit_steps")), "text.ids", "text.logits", tol, &w,
                   name);
    } else if (!strcmp(task, "kv")) {
        json_t *k = json_object_get(c.js, "kv");
        int ts = (int)json_integer_value(json_object_get(k, "text_steps"));
        check_text(e, &c, g, ts, ts, "kv.text.ids", "kv.inc.logits", tol, &w, name);
        /* the reference's own two paths agree, and ours with them */
        float *a = gfloats(g, "kv.inc.hidden", 0), *b = gfloats(g, "kv.full.hidden", 0);
        snprintf(what, sizeof what, "%s kv.inc against kv.full (reference)", name);
        compare(&w, what, a, b, (size_t)gold(g, "kv.full.hidden")->numel, 1e-5);
        free(a), free(b);
    } else {
        json_t *im = json_object_get(c.js, "image"), *gr = json_object_get(im, "grid");
        json_t *iv = json_object_get(im, "cfg_interval");
        int gh = (int)json_integer_value(json_array_get(gr, 0)), gw = (int)json_integer_value(json_array_get(gr, 1));
        int N = gh * gw;
        infer_image_opts_t o = {
            .num_timesteps = (int)json_integer_value(json_object_get(im, "num_timesteps")),
            .timestep_shift = (float)json_number_value(json_object_get(im, "timestep_shift")),
            .cfg_text_scale = (float)json_number_value(json_object_get(im, "cfg_text_scale")),
            .cfg_img_scale = (float)json_number_value(json_object_get(im, "cfg_img_scale")),
            .cfg_lo = (float)json_number_value(json_array_get(iv, 0)),
            .cfg_hi = (float)json_number_value(json_array_get(iv, 1)),
            .renorm = renorm_of(json_string_value(json_object_get(im, "cfg_renorm_type"))),
            .renorm_min = (float)json_number_value(json_object_get(im, "cfg_renorm_min")),
        };
        float *x = json_floats(&c, json_object_get(im, "noise"), (size_t)N * D);
        int full = FULL, tu = TEXT_UNC, iu = IMG_UNC;
        steps_t st = {.g = g, .D = D, .N = N, .tol = tol, .w = &w, .name = name};
        if (infer_image(e, &full, &tu, &iu, 1, gh, gw, &o, x, on_step, &st, err, sizeof err))
            fail_msg("%s: %s", name, err);
        if (st.seen != o.num_timesteps - 1)
            fail_msg("%s: %d steps, expected %d", name, st.seen, o.num_timesteps - 1);
        ref = gfloats(g, "img.x", (size_t)N * D);
        snprintf(what, sizeof what, "%s img.x", name);
        compare(&w, what, x, ref, (size_t)N * D, tol);
        free(ref);
        for (int s = 0; s < 3; s++)
            if (infer_len(e, s) != golden_i64(kl, s))
                fail_msg("%s: generating changed context %d", name, s);
    }
    snprintf(note, notelen, "%s: worst relative error %.3g (%s)", name, w.err, w.what);
    infer_destroy(&e);
    model_destroy(&m);
    st_close(&g);
    free_case(&c);
}

int gencheck_case(const char *path, const op_table_t *ops, double tol, char *msg, size_t msglen)
{
    CASECHECK_RUN(msg, msglen, check_case(path, ops, tol, msg, msglen));
}
