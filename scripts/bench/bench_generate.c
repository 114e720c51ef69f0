/* bench_generate.c — generation speed of the inference engine
 * (models/infer.h), measured as tests/reference/gen_bench_gpu.py measures
 * its PyTorch peer, one JSON line per measurement:
 *
 *  - text_decode: B prompts of 32 tokens, then 128 new tokens each decoded
 *    greedily together (no stop at <|im_end|>); the prompt's prefill timed
 *    apart; tokens/s = B·128 / seconds; B = 1 and 16;
 *  - image: a 1024x1024 image (the config's latent grid for it) from a
 *    32-token prompt, 50 timesteps shifted by 3.0, cfg_interval [0.4, 1],
 *    renorm global, in two variants: t2i-text-cfg (text scale 3.0, image
 *    1.0) and t2i-defaults (3.0 and 1.5: on a text prompt the
 *    image-unconditioned context holds the prompt as the full one does; the
 *    official inferencer evaluates it anyway, the engine once for both
 *    branches: "evaluations" counts the former, "evaluated" the latter). The
 *    guidance branches of a step run as one batch here.
 *
 *   bench-generate [--device cuda|cpu] [--precision bf16|fp32] [--smoke]
 *                  [--iters N] [--profile] [CONFIG[:LAYERS] ...]
 *
 * --profile: every op timed between two syncs (kernels/prof.h), the table of
 * each measurement's timed runs printed to stderr (the times themselves then
 * include the syncs).
 *
 * Weights: the deterministic test weights (tests/reference/FORMAT.md), as
 * the peer's. Timing: ops->sync, then a host clock; the median of --iters
 * (default 3) for text and of 2 runs for images, after a warm-up of each. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../kernels/prof.h"
#include "../../models/infer.h"
#include "../../models/rng.h"
#include "../../stages/common/compute_env.h"
#include "bench_util.h"

#ifdef BAGEL_CUDA
#include <cuda_runtime_api.h>
#endif




static int profile;

static void prof_begin(void)
{
    if (profile)
        op_prof_reset();
}

static void prof_end(const char *what, int runs)
{
    if (!profile)
        return;
    fprintf(stderr, "# profile: %s, per run\n", what);
    op_prof_print(stderr, runs);
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "bench-generate: %s: %s\n", what, err);
    exit(1);
}

static double peak_gib(const op_table_t *ops)
{
#ifdef BAGEL_CUDA
    size_t fr, tot;
    if (!strcmp(ops->name, "cuda") && cudaMemGetInfo(&fr, &tot) == cudaSuccess)
        return (double)(tot - fr) / (1 << 30);
#else
    (void)ops;
#endif
    return 0.0;
}

/* deterministic ordinary tokens */
static void prompt(int32_t *ids, int n, int V, uint64_t salt)
{
    rng_t r;
    rng_seed(&r, 1000 + salt);
    int top = V < 151643 ? V : 151643;
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)(rng_next(&r) % (uint64_t)top);
}

static void bench_text(infer_t *e, model_t *m, const char *base, int B, int n_prompt, int n_new, int iters)
{
    char err[512];
    const op_table_t *ops = m->ops;
    int32_t *ids = malloc((size_t)B * n_prompt * sizeof(int32_t));
    int *slots = malloc((size_t)B * sizeof(int)), *nid = malloc((size_t)B * sizeof(int));
    int *stop = malloc((size_t)B * sizeof(int));
    int32_t **out = calloc((size_t)B, sizeof *out);
    infer_chunk_t *ch = malloc((size_t)B * sizeof *ch);
    for (int b = 0; b < B; b++) {
        prompt(ids + (size_t)b * n_prompt, n_prompt, m->cfg.vocab, (uint64_t)(B * 100 + b));
        slots[b] = b;
        ch[b] = (infer_chunk_t){.kind = INFER_TEXT, .ids = ids + (size_t)b * n_prompt, .n_ids = n_prompt};
    }
    infer_text_opts_t o = infer_text_defaults;
    o.no_stop = 1;
    double *pre = malloc((size_t)(iters + 1) * sizeof(double)), *dec = malloc((size_t)(iters + 1) * sizeof(double));
    for (int it = -1; it < iters; it++) {
        if (it == 0)
            prof_begin();
        for (int b = 0; b < B; b++)
            infer_reset(e, b);
        ops->sync();
        double t0 = bench_now();
        if (infer_append(e, slots, ch, B, err, sizeof err))
            die("prompt", err);
        ops->sync();
        double t1 = bench_now();
        o.max_tokens = it < 0 ? 4 : n_new;
        if (infer_text(e, slots, B, &o, out, nid, stop, NULL, 0, err, sizeof err))
            die("decode", err);
        ops->sync();
        double t2 = bench_now();
        for (int b = 0; b < B; b++) {
            if (nid[b] != o.max_tokens)
                die("decode", "a sequence stopped early");
            free(out[b]);
            out[b] = NULL;
        }
        if (it >= 0)
            pre[it] = t1 - t0, dec[it] = t2 - t1;
    }
    char what[64];
    snprintf(what, sizeof what, "text batch %d (prompt and decoding)", B);
    prof_end(what, iters);
    double s = bench_median(dec, iters), p = bench_median(pre, iters);
    printf("{%s,\"measure\":\"text_decode\",\"batch\":%d,\"prompt_tokens\":%d,\"new_tokens\":%d,\"seconds\":%.5f,"
           "\"tokens_per_s\":%.2f,\"ms_per_step\":%.4f,\"prefill_ms\":%.3f,\"runs\":%d}\n",
           base, B, n_prompt, n_new, s, B * n_new / s, 1000 * s / n_new, 1000 * p, iters);
    fflush(stdout);
    free(ids), free(slots), free(nid), free(stop), free(out), free(ch), free(pre), free(dec);
}

static void bench_image(infer_t *e, model_t *m, const char *base, int side, int n_prompt, int steps, float s_img,
                        const char *label, int iters)
{
    char err[512];
    const model_config_t *c = &m->cfg;
    const op_table_t *ops = m->ops;
    int st = model_latent_stride(c), gh = side / st, gw = side / st, N = gh * gw, D = model_latent_dim(c);
    int32_t *ids = malloc((size_t)n_prompt * sizeof(int32_t));
    prompt(ids, n_prompt, c->vocab, 99);
    float *x0 = malloc((size_t)N * D * sizeof(float)), *x = malloc((size_t)N * D * sizeof(float));
    rng_t r;
    rng_seed(&r, 7);
    for (int i = 0; i < N * D; i++)
        x0[i] = (float)rng_normal(&r);
    infer_image_opts_t o = infer_image_defaults;
    o.cfg_text_scale = 3.0f, o.cfg_img_scale = s_img;
    /* interleave_inference on [prompt]: full = the prompt, text-unconditioned
     * the empty context, image-unconditioned the prompt */
    infer_chunk_t ch[2] = {{.kind = INFER_TEXT, .ids = ids, .n_ids = n_prompt},
                           {.kind = INFER_TEXT, .ids = ids, .n_ids = n_prompt}};
    int two[2] = {0, 2}, full = 0, tu = 1, iu = 2;
    double *t = malloc((size_t)(iters + 1) * sizeof(double));
    int evals = 0;
    for (int it = -1; it < iters; it++) {
        if (it == 0)
            prof_begin();
        for (int s = 0; s < 3; s++)
            infer_reset(e, s);
        o.num_timesteps = it < 0 ? 3 : steps;
        memcpy(x, x0, (size_t)N * D * sizeof(float));
        ops->sync();
        double t0 = bench_now();
        if (infer_append(e, two, ch, 2, err, sizeof err) ||
            infer_image(e, &full, &tu, &iu, 1, gh, gw, &o, x, NULL, NULL, err, sizeof err))
            die("image", err);
        ops->sync();
        if (it >= 0)
            t[it] = bench_now() - t0;
        for (int i = 0; i < N * D; i++)
            if (!isfinite(x[i]))
                die("image", "a latent is not finite");
    }
    prof_end(label, iters);
    /* evaluations: one a step, plus the branches where guidance is on, as the
     * official inferencer runs them; evaluated: those the engine ran (an
     * image-unconditioned context that holds the prompt, as the full one
     * does, is evaluated once for both: infer_set_dedup) */
    long evaluated = infer_evaluated(e);
    float *ts = malloc((size_t)steps * sizeof(float));
    infer_schedule(ts, steps, o.timestep_shift);
    for (int i = 0; i + 1 < steps; i++) {
        int on = ts[i] > o.cfg_lo && ts[i] <= o.cfg_hi;
        evals += 1 + (on ? 1 + (s_img > 1.0f) : 0);
    }
    double s = bench_median(t, iters);
    printf("{%s,\"measure\":\"image\",\"variant\":\"%s\",\"height\":%d,\"width\":%d,\"latent_tokens\":%d,"
           "\"num_timesteps\":%d,\"evaluations\":%d,\"evaluated\":%ld,\"cfg_text_scale\":3.0,"
           "\"cfg_img_scale\":%.1f,\"prompt_tokens\":%d,\"s_per_image\":%.4f,\"ms_per_evaluation\":%.3f,"
           "\"runs\":%d}\n",
           base, label, side, side, N, steps, evals, evaluated, s_img, n_prompt, s,
           1000 * s / (evaluated > 0 ? evaluated : evals), iters);
    fflush(stdout);
    free(ids), free(x0), free(x), free(t), free(ts);
}

int main(int argc, char **argv)
{
    const char *device = "cuda", *precision = NULL;
    int smoke = 0, iters = 3, nspec = 0;
    const char *specs[16];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc)
            device = argv[++i];
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc)
            precision = argv[++i];
        else if (!strcmp(argv[i], "--smoke"))
            smoke = 1;
        else if (!strcmp(argv[i], "--profile"))
            profile = 1;
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc)
            iters = atoi(argv[++i]);
        else if (argv[i][0] != '-' && nspec < 16)
            specs[nspec++] = argv[i];
        else {
            fprintf(stderr, "usage: bench-generate [--device cuda|cpu] [--precision bf16|fp32] [--smoke] "
                            "[--iters N] [CONFIG[:LAYERS] ...]\n");
            return 2;
        }
    }
    if (!nspec)
        specs[nspec++] = "bagel-0.5b-mot", specs[nspec++] = "bagel-7b-mot:4";
    if (iters < 1)
        iters = 1;
    char err[512];
    const op_table_t *ops;
    double peak;
    if (compute_ops(device, precision, &ops, &peak, err, sizeof err))
        die("device", err);
    const op_table_t *base_ops = ops;
    if (profile)
        ops = op_prof_wrap(ops);
    for (int k = 0; k < nspec; k++) {
        char name[128];
        snprintf(name, sizeof name, "%s", specs[k]);
        char *colon = strchr(name, ':');
        int layers = 0;
        if (colon)
            *colon = 0, layers = atoi(colon + 1);
        model_config_t cfg;
        if (model_config_load(&cfg, name, NULL, err, sizeof err))
            die(name, err);
        if (layers > 0 && layers < cfg.layers)
            cfg.layers = layers;
        model_t *m = model_new(&cfg, ops, err, sizeof err);
        if (!m)
            die(name, err);
        model_freeze(m, "");
        model_init_test(m, 1);
        int side = smoke ? 4 * model_latent_stride(&cfg) : 1024, n_prompt = smoke ? 8 : 32;
        int n_new = smoke ? 6 : 128, steps = smoke ? 5 : 50;
        int N = (side / model_latent_stride(&cfg)) * (side / model_latent_stride(&cfg));
        int rows = N + 2 * n_prompt + 16 > n_prompt + n_new + 8 ? N + 2 * n_prompt + 16 : n_prompt + n_new + 8;
        infer_t *e = infer_new(m, 16, rows, err, sizeof err);
        if (!e)
            die(name, err);
        char base[512];
        snprintf(base, sizeof base,
                 "\"peer\":\"bagelpipe\",\"config\":\"%s\",\"layers\":%d,\"device\":\"%s\",\"precision\":\"%s\"", name,
                 cfg.layers, ops->name, precision ? precision : (strcmp(ops->name, "cpu") ? "bf16" : "fp32"));
        bench_text(e, m, base, 1, n_prompt, n_new, smoke ? 1 : iters);
        bench_text(e, m, base, smoke ? 3 : 16, n_prompt, n_new, smoke ? 1 : iters);
        bench_image(e, m, base, side, n_prompt, steps, 1.0f, "t2i-text-cfg", smoke ? 1 : 2);
        bench_image(e, m, base, side, n_prompt, steps, 1.5f, "t2i-defaults", smoke ? 1 : 2);
        printf("{%s,\"measure\":\"memory\",\"device_gib_in_use\":%.2f}\n", base, peak_gib(ops));
        fflush(stdout);
        infer_destroy(&e);
        model_destroy(&m);
    }
    compute_ops_done(base_ops);
    return 0;
}
