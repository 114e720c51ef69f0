/* test_ae.c — the FLUX autoencoder (models/ae.c) on the CPU backend against
 * the PyTorch reference (tests/reference/ae_ref.py, FORMAT.md
 * "Autoencoder"): for every golden file tests/reference/golden/ae-*.safetensors
 * the encoder's moments, the sampled and scaled latent and the decoder's
 * pixels within relative error, and its u8 image exactly away from rounding
 * boundaries. Also: FLUX's parameter count and names, loading BFL-named files
 * (F32 and BF16), and the one-line errors for missing or mis-shaped tensors
 * and images beyond the reserved size. */
#include <glob.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../support/tmpdir.h"
#include "../../kernels/ops.h"
#include "../../models/ae.h"
#include "../../models/safetensors.h"

#define GOLDEN_GLOB "tests/reference/golden/ae-*.safetensors"
#define REL_TOL     1e-4 /* moments and pixels, ‖Δ‖/‖ref‖ */
#define Z_TOL       1e-5 /* the latent: one elementwise step from given moments */
#define U8_MARGIN   1e-3 /* u8 compared where v·255 is this far from an integer */

static char dir[64];

static const st_tensor_t *gold(const st_file_t *f, const char *name, int64_t numel)
{
    const st_tensor_t *t = st_find(f, name);
    if (!t)
        fail_msg("%s: no tensor %s", st_path(f), name);
    if (numel >= 0 && t->numel != numel)
        fail_msg("%s: %s has %lld values, expected %lld", st_path(f), name, (long long)t->numel, (long long)numel);
    return t;
}

static int64_t gi(const st_tensor_t *t, int64_t i)
{
    int64_t v;
    memcpy(&v, (const char *)t->data + 8 * i, 8);
    return v;
}

static float *gf(const st_tensor_t *t)
{
    char err[256];
    float *x = malloc((size_t)t->numel * sizeof(float));
    assert_non_null(x);
    if (st_read_f32(t, x, (size_t)t->numel, err, sizeof err))
        fail_msg("%s", err);
    return x;
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

/* the config a golden file was made with */
static ae_config_t golden_config(const st_file_t *f, uint64_t *seed)
{
    ae_config_t c = {0};
    const st_tensor_t *ints = gold(f, "cfg.ints", 5), *mult = gold(f, "cfg.ch_mult", -1);
    c.in_channels = (int)gi(ints, 0);
    c.out_channels = (int)gi(ints, 1);
    c.ch = (int)gi(ints, 2);
    c.num_res_blocks = (int)gi(ints, 3);
    c.z_channels = (int)gi(ints, 4);
    if (mult->numel > AE_MAX_LEVELS)
        fail_msg("%s: %lld levels", st_path(f), (long long)mult->numel);
    c.n_levels = (int)mult->numel;
    for (int i = 0; i < c.n_levels; i++)
        c.ch_mult[i] = (int)gi(mult, i);
    float *ss = gf(gold(f, "cfg.scale_shift", 2));
    c.scale = ss[0];
    c.shift = ss[1];
    free(ss);
    *seed = (uint64_t)gi(gold(f, "cfg.seed", 1), 0);
    return c;
}

static void check_golden(const char *path)
{
    char err[512];
    st_file_t *f = st_open(path, err, sizeof err);
    if (!f)
        fail_msg("%s", err);
    uint64_t seed;
    ae_config_t cfg = golden_config(f, &seed);
    const st_tensor_t *im = gold(f, "image", -1);
    if (im->ndim != 3 || im->dtype != ST_U8 || im->shape[2] != cfg.in_channels)
        fail_msg("%s: image is not u8 [H, W, %d]", path, cfg.in_channels);
    int H = (int)im->shape[0], W = (int)im->shape[1], fct = ae_downsample(&cfg);
    int h = H / fct, w = W / fct, zc = cfg.z_channels, co = cfg.out_channels;
    size_t nz = (size_t)zc * h * w, npx = (size_t)co * H * W;

    ae_t *ae = ae_new(&cfg, &op_cpu, err, sizeof err);
    if (!ae)
        fail_msg("%s", err);
    ae_init_test(ae, seed);
    if (ae_reserve(ae, H, W, err, sizeof err))
        fail_msg("%s", err);

    /* encoder */
    float *ref_m = gf(gold(f, "moments", 2 * (int64_t)nz)), *m = malloc(2 * nz * sizeof(float));
    assert_non_null(m);
    if (ae_encode(ae, im->data, H, W, m, err, sizeof err))
        fail_msg("%s", err);
    double em = rel_err(m, ref_m, 2 * nz);

    /* latent sample from the golden moments */
    float *eps = gf(gold(f, "eps", (int64_t)nz)), *ref_z = gf(gold(f, "z", (int64_t)nz));
    float *z = malloc(nz * sizeof(float));
    assert_non_null(z);
    if (ae_sample_scaled(ae, ref_m, eps, h, w, z, err, sizeof err))
        fail_msg("%s", err);
    double ez = rel_err(z, ref_z, nz);

    /* decoder from the golden latent */
    float *ref_x = gf(gold(f, "decoded", (int64_t)npx)), *x = malloc(npx * sizeof(float));
    const st_tensor_t *ref_u8 = gold(f, "decoded_u8", (int64_t)npx);
    uint8_t *u8 = malloc(npx);
    assert_non_null(x);
    assert_non_null(u8);
    if (ae_decode(ae, ref_z, h, w, u8, x, err, sizeof err))
        fail_msg("%s", err);
    double ex = rel_err(x, ref_x, npx);
    /* u8 [H, W, co] against the reference's, where the reference float is
     * clear of a truncation boundary */
    int compared = 0, differ = 0;
    for (int c = 0; c < co; c++)
        for (size_t p = 0; p < (size_t)H * W; p++) {
            double v = ref_x[(size_t)c * H * W + p] * 0.5 + 0.5;
            v = (v < 0 ? 0 : v > 1 ? 1 : v) * 255.0;
            if (fabs(v - floor(v + 0.5)) < U8_MARGIN && v > U8_MARGIN && v < 255 - U8_MARGIN)
                continue;
            compared++;
            uint8_t want = ((const uint8_t *)ref_u8->data)[p * co + c];
            if (u8[p * co + c] != want && differ++ < 5)
                print_error("%s: u8 pixel %zu channel %d = %d, the reference has %d\n", path, p, c, u8[p * co + c],
                            want);
        }
    print_message("%s: moments %.2e, z %.2e, pixels %.2e relative; u8 %d of %zu compared, %d differ\n", path, em, ez,
                  ex, compared, npx, differ);
    if (em > REL_TOL || ez > Z_TOL || ex > REL_TOL || differ || compared < (int)(npx * 9 / 10))
        fail_msg("%s: moments %.3e (tol %.0e), z %.3e (tol %.0e), pixels %.3e (tol %.0e), %d u8 differ of %d", path, em,
                 REL_TOL, ez, Z_TOL, ex, REL_TOL, differ, compared);

    free(m);
    free(ref_m);
    free(eps);
    free(ref_z);
    free(z);
    free(ref_x);
    free(x);
    free(u8);
    ae_destroy(&ae);
    st_close(&f);
}

static void test_golden(void **state)
{
    (void)state;
    glob_t g;
    if (glob(GOLDEN_GLOB, 0, NULL, &g) || g.gl_pathc == 0)
        fail_msg("no golden files %s (run from the repository root)", GOLDEN_GLOB);
    for (size_t i = 0; i < g.gl_pathc; i++)
        check_golden(g.gl_pathv[i]);
    globfree(&g);
}

/* FLUX.1's ae.safetensors: 244 tensors, 83,819,683 parameters */
static void test_flux_layout(void **state)
{
    (void)state;
    char err[256];
    ae_t *ae = ae_new(&ae_flux_config, &op_cpu, err, sizeof err);
    if (!ae)
        fail_msg("%s", err);
    assert_int_equal(ae->n_params, 244);
    size_t total = 0;
    for (int i = 0; i < ae->n_params; i++)
        total += ae->params[i].numel;
    assert_int_equal(total, 83819683);
    const ae_param_t *p = ae_find(ae, "encoder.conv_out.weight");
    assert_non_null(p);
    assert_int_equal(p->shape[0], 32);
    assert_int_equal(p->shape[1], 512);
    assert_non_null(ae_find(ae, "encoder.down.2.block.0.nin_shortcut.weight"));
    assert_null(ae_find(ae, "encoder.down.3.downsample.conv.weight"));
    assert_non_null(ae_find(ae, "decoder.up.1.upsample.conv.bias"));
    assert_null(ae_find(ae, "decoder.up.0.upsample.conv.bias"));
    p = ae_find(ae, "decoder.mid.attn_1.proj_out.weight");
    assert_non_null(p);
    assert_int_equal(p->ndim, 4);
    assert_int_equal(p->shape[3], 1);
    p = ae_find(ae, "decoder.conv_in.weight");
    assert_int_equal(p->shape[0], 512);
    assert_int_equal(p->shape[1], 16);
    ae_destroy(&ae);
    assert_null(ae);
}

static const ae_config_t small = {
    .in_channels = 3,
    .out_channels = 3,
    .ch = 32,
    .n_levels = 2,
    .ch_mult = {1, 2},
    .num_res_blocks = 1,
    .z_channels = 4,
    .scale = 0.3611f,
    .shift = 0.1159f,
};

/* writes ae's parameters (host copies) to path, leaving out `skip` and
 * giving `reshape` a wrong shape */
static void write_ae(const ae_t *ae, const char *path, int dtype, const char *skip, const char *reshape)
{
    char err[256];
    st_writer_t *w = st_writer_new();
    float *host = malloc(ae->n_floats * sizeof(float));
    assert_non_null(host);
    ae->ops->download(host, ae->param_mem, ae->n_floats * sizeof(float));
    for (int i = 0; i < ae->n_params; i++) {
        const ae_param_t *p = &ae->params[i];
        if (skip && !strcmp(p->name, skip))
            continue;
        int64_t shape[4] = {p->shape[0], p->shape[1], p->shape[2], p->shape[3]};
        int ndim = p->ndim;
        if (reshape && !strcmp(p->name, reshape)) { /* [o, i, k, k] stored as [o, i·k·k] */
            shape[1] *= shape[2] * shape[3];
            ndim = 2;
        }
        if (st_writer_add_f32(w, p->name, dtype, ndim, shape, host + p->offset, err, sizeof err))
            fail_msg("%s", err);
    }
    static const float extra[2] = {1, 2};
    int64_t two = 2;
    if (st_writer_add_f32(w, "model_ema.unused", ST_F32, 1, &two, extra, err, sizeof err) ||
        st_writer_write(w, path, err, sizeof err))
        fail_msg("%s", err);
    st_writer_destroy(&w);
    free(host);
}

static void expect_load_error(const char *path, const char *want1, const char *want2)
{
    char err[512] = "";
    ae_t *b = ae_new(&small, &op_cpu, err, sizeof err);
    assert_non_null(b);
    if (!ae_load(b, path, NULL, err, sizeof err))
        fail_msg("%s: loaded, expected an error naming %s", path, want1);
    print_message("error: %s\n", err);
    if (!strstr(err, want1) || (want2 && !strstr(err, want2)) || strchr(err, '\n'))
        fail_msg("error \"%s\" should be one line naming \"%s\"%s%s", err, want1, want2 ? " and " : "",
                 want2 ? want2 : "");
    ae_destroy(&b);
}

static void test_load(void **state)
{
    (void)state;
    char err[512], path[128];
    ae_t *a = ae_new(&small, &op_cpu, err, sizeof err);
    assert_non_null(a);
    ae_init_test(a, 7);
    float *wa = malloc(a->n_floats * sizeof(float)), *wb = malloc(a->n_floats * sizeof(float));
    assert_non_null(wa);
    assert_non_null(wb);
    memcpy(wa, a->param_mem, a->n_floats * sizeof(float));

    /* F32: identical; one extra tensor counted */
    snprintf(path, sizeof path, "%s/ae.safetensors", dir);
    write_ae(a, path, ST_F32, NULL, NULL);
    ae_t *b = ae_new(&small, &op_cpu, err, sizeof err);
    assert_non_null(b);
    int extra = -1;
    if (ae_load(b, path, &extra, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(extra, 1);
    memcpy(wb, b->param_mem, b->n_floats * sizeof(float));
    assert_memory_equal(wa, wb, a->n_floats * sizeof(float));

    /* BF16: within BF16's rounding */
    snprintf(path, sizeof path, "%s/ae-bf16.safetensors", dir);
    write_ae(a, path, ST_BF16, NULL, NULL);
    if (ae_load(b, path, NULL, err, sizeof err))
        fail_msg("%s", err);
    for (int i = 0; i < a->n_params; i++) {
        const ae_param_t *p = &a->params[i];
        for (size_t k = 0; k < p->numel; k++) {
            float x = wa[p->offset + k], y = b->param_mem[p->offset + k];
            if (fabsf(x - y) > fabsf(x) * 0x1.0p-8f)
                fail_msg("%s[%zu]: %g loaded as BF16 %g", p->name, k, (double)x, (double)y);
        }
    }

    /* a missing tensor, a mis-shaped one, no file */
    snprintf(path, sizeof path, "%s/missing.safetensors", dir);
    write_ae(a, path, ST_F32, "decoder.mid.attn_1.k.bias", NULL);
    expect_load_error(path, "no tensor \"decoder.mid.attn_1.k.bias\"", "expected [64]");
    snprintf(path, sizeof path, "%s/shape.safetensors", dir);
    write_ae(a, path, ST_F32, NULL, "encoder.mid.attn_1.q.weight");
    expect_load_error(path, "\"encoder.mid.attn_1.q.weight\"", "expected [64,64,1,1]");
    snprintf(path, sizeof path, "%s/none.safetensors", dir);
    expect_load_error(path, "none.safetensors", NULL);

    free(wa);
    free(wb);
    ae_destroy(&a);
    ae_destroy(&b);
}

static void expect_error(int rc, const char *err, const char *want)
{
    if (!rc)
        fail_msg("succeeded, expected an error with \"%s\"", want);
    if (!strstr(err, want) || strchr(err, '\n'))
        fail_msg("error \"%s\" should be one line with \"%s\"", err, want);
}

static void test_sizes(void **state)
{
    (void)state;
    char err[512];
    ae_t *a = ae_new(&small, &op_cpu, err, sizeof err);
    assert_non_null(a);
    ae_init_test(a, 3);
    uint8_t img[32 * 16 * 3] = {0};
    float m[2 * 4 * 16 * 8];
    /* before ae_reserve */
    expect_error(ae_encode(a, img, 16, 8, m, err, sizeof err), err, "ae_reserve");
    expect_error(ae_reserve(a, 15, 16, err, sizeof err), err, "multiples of 2");
    if (ae_reserve(a, 16, 16, err, sizeof err))
        fail_msg("%s", err);
    size_t bytes = a->act_bytes;
    /* smaller images and any aspect ratio within both sides fit */
    if (ae_encode(a, img, 16, 8, m, err, sizeof err) || ae_encode(a, img, 8, 16, m, err, sizeof err))
        fail_msg("%s", err);
    expect_error(ae_encode(a, img, 32, 16, m, err, sizeof err), err, "larger than the reserved 16x16");
    expect_error(ae_encode(a, img, 16, 7, m, err, sizeof err), err, "image 7x16");
    expect_error(ae_decode(a, m, 0, 4, NULL, NULL, err, sizeof err), err, "latent 4x0");
    /* reserving a smaller size keeps the buffers; a larger one grows them */
    if (ae_reserve(a, 8, 8, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(a->act_bytes, bytes);
    if (ae_reserve(a, 32, 16, err, sizeof err) || ae_encode(a, img, 32, 16, m, err, sizeof err))
        fail_msg("%s", err);
    assert_true(a->act_bytes > bytes);
    ae_destroy(&a);

    ae_config_t bad = small;
    bad.ch = 48;
    assert_null(ae_new(&bad, &op_cpu, err, sizeof err));
    expect_error(1, err, "multiple of 32");
}

/* the op table's forward-only autoencoder ops (kernels/cpu/cpu_layout.c) */
static void test_layout_ops(void **state)
{
    (void)state;
    const op_table_t *o = &op_cpu;
    /* upsample2x: 2 planes of 2×3 */
    float in[12], up[48];
    for (int i = 0; i < 12; i++)
        in[i] = (float)i;
    o->upsample2x(up, in, 2, 2, 3);
    for (int p = 0; p < 2; p++)
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 6; x++)
                assert_true(up[(p * 4 + y) * 6 + x] == in[(p * 2 + y / 2) * 3 + x / 2]);
    /* affine, in place */
    float a[3] = {1, -2, 0.5f};
    o->affine(a, a, 2.0f, 0.25f, 3);
    assert_true(a[0] == 2.25f && a[1] == -3.75f && a[2] == 1.25f);
    /* gauss_sample */
    float mean[2] = {0.5f, -1}, logvar[2] = {0, -2}, eps[2] = {1, 2}, z[2];
    o->gauss_sample(z, mean, logvar, eps, 2);
    assert_true(fabs(z[0] - 1.5) < 1e-6 && fabs(z[1] - (-1 + exp(-1.0) * 2)) < 1e-6);
    /* unpatchify_u8, p = 2: tokens [1, 2·2·2] -> u8 [2, 2, 2]; clamps,
     * truncation, NaN to 0 */
    float tok[8] = {-1.5f, 1.5f, -1, 1, 0, NAN, 0.9921875f, -0.9960938f};
    uint8_t img[8];
    o->unpatchify_u8(img, tok, 2, 2, 2, 2);
    static const uint8_t want[8] = {0, 255, 0, 255, 127, 0, 254, 0};
    for (int i = 0; i < 8; i++)
        if (img[i] != want[i])
            fail_msg("unpatchify_u8: byte %d = %d, expected %d", i, img[i], want[i]);
}

static int setup(void **state)
{
    (void)state;
    return test_tmpdir_make(dir, sizeof dir, "ae");
}

static int teardown(void **state)
{
    (void)state;
    return test_tmpdir_remove(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_golden), cmocka_unit_test(test_flux_layout),
                                       cmocka_unit_test(test_load), cmocka_unit_test(test_sizes),
                                       cmocka_unit_test(test_layout_ops)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
