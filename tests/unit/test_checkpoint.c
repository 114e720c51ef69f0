/* test_checkpoint.c — model weights through safetensors: written and read
 * back bit-identical, written twice byte-identical, BF16 rounding as the
 * format's readers expect, and a file that lies (missing tensor, wrong shape,
 * truncated) is one clear error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../support/tmpdir.h"
#include "../../ipc/half.h"
#include "../../kernels/ops.h"
#include "../../models/checkpoint.h"
#include "../../models/model.h"
#include "../../models/safetensors.h"

static const char *MINI = "{\"name\":\"mini\",\"llm\":{\"hidden_size\":32,\"num_hidden_layers\":2,"
                          "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"intermediate_size\":48,"
                          "\"vocab_size\":64,\"rope_theta\":10000.0,\"rms_norm_eps\":1e-06},"
                          "\"vit\":{\"hidden_size\":16,\"intermediate_size\":24,\"num_hidden_layers\":3,"
                          "\"num_attention_heads\":2,\"patch_size\":14,\"image_size\":56},"
                          "\"bagel\":{\"visual_und\":true,\"visual_gen\":true,\"vit_max_num_patch_per_side\":4,"
                          "\"latent_patch_size\":4,\"max_latent_size\":8,\"autoencoder\":{\"type\":\"identity\"},"
                          "\"tokens\":{\"bos\":60,\"eos\":61,\"start_of_image\":62,\"end_of_image\":63}}}";

static char dir[256];

static model_t *mini(void)
{
    model_config_t cfg;
    char err[300];
    if (model_config_parse(&cfg, MINI, ".", err, sizeof err))
        fail_msg("%s", err);
    model_t *m = model_new(&cfg, &op_cpu, err, sizeof err);
    if (!m)
        fail_msg("%s", err);
    return m;
}

static size_t file_bytes(const char *p, char **out)
{
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *out = malloc((size_t)n + 1);
    assert_int_equal(fread(*out, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return (size_t)n;
}

static void test_round_trip(void **state)
{
    (void)state;
    char err[300], p1[300], p2[300];
    snprintf(p1, sizeof p1, "%s/a.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/b.safetensors", dir);
    model_t *a = mini(), *b = mini();
    model_init_test(a, 42);
    if (model_save(a, NULL, p1, ST_F32, err, sizeof err))
        fail_msg("%s", err);
    int extra = -1;
    if (model_load(b, NULL, p1, &extra, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(extra, 0);
    assert_memory_equal(a->param_mem, b->param_mem, a->n_floats * sizeof(float));
    if (model_save(b, NULL, p2, ST_F32, err, sizeof err))
        fail_msg("%s", err);
    char *x, *y;
    size_t nx = file_bytes(p1, &x), ny = file_bytes(p2, &y);
    assert_int_equal(nx, ny);
    assert_memory_equal(x, y, nx);
    free(x);
    free(y);
    /* every parameter is in the file under its name */
    st_file_t *f = st_open(p1, err, sizeof err);
    assert_non_null(f);
    assert_int_equal(st_count(f), a->n_params);
    assert_non_null(st_find(f, "language_model.model.layers.1.self_attn.k_norm_moe_gen.weight"));
    assert_non_null(st_find(f, "vit_model.vision_model.encoder.layers.1.mlp.fc2.bias"));
    assert_null(st_find(f, "vit_model.vision_model.encoder.layers.2.mlp.fc2.bias")); /* 3 - 1 layers used */
    st_close(&f);
    model_destroy(&a);
    model_destroy(&b);
}

static void test_bf16(void **state)
{
    (void)state;
    char err[300], p[300];
    snprintf(p, sizeof p, "%s/bf16.safetensors", dir);
    model_t *a = mini(), *b = mini();
    model_init_test(a, 3);
    if (model_save(a, NULL, p, ST_BF16, err, sizeof err))
        fail_msg("%s", err);
    if (model_load(b, NULL, p, NULL, err, sizeof err))
        fail_msg("%s", err);
    /* each value is the bf16 rounding (to nearest even) of the original;
     * the fixed sin-cos tables are recomputed on load, in full precision */
    for (int k = 0; k < a->n_params; k++) {
        const model_param_t *p = &a->params[k];
        for (size_t i = p->offset; i < p->offset + p->numel; i++) {
            float want =
                p->group == MODEL_GROUP_FIXED ? a->param_mem[i] : half_bf16_to_f32(half_f32_to_bf16(a->param_mem[i]));
            if (memcmp(&want, &b->param_mem[i], 4))
                fail_msg("%s: %g read back as %g", p->name, want, b->param_mem[i]);
        }
    }
    model_destroy(&a);
    model_destroy(&b);
}

static void expect_load_error(const char *path, const char *needle)
{
    char err[400];
    model_t *b = mini();
    int rc = model_load(b, NULL, path, NULL, err, sizeof err);
    assert_int_equal(rc, -1);
    if (!strstr(err, needle))
        fail_msg("error \"%s\" does not say \"%s\"", err, needle);
    assert_null(strchr(err, '\n'));
    model_destroy(&b);
}

static void test_lies(void **state)
{
    (void)state;
    char err[300], p[300], q[300];
    model_t *a = mini();
    model_init_test(a, 5);
    /* a file without one tensor */
    snprintf(p, sizeof p, "%s/missing.safetensors", dir);
    st_writer_t *w = st_writer_new();
    for (int i = 0; i < a->n_params; i++) {
        const model_param_t *t = &a->params[i];
        if (!strcmp(t->name, "llm2vae.bias") || !strcmp(t->name, "connector.fc2.bias"))
            continue;
        assert_int_equal(st_writer_add_f32(w, t->name, ST_F32, t->ndim, t->shape, *t->w, err, sizeof err), 0);
    }
    assert_int_equal(st_writer_write(w, p, err, sizeof err), 0);
    st_writer_destroy(&w);
    expect_load_error(p, "2 missing tensors (llm2vae.bias, connector.fc2.bias)");
    /* a tensor of the wrong shape */
    snprintf(p, sizeof p, "%s/shape.safetensors", dir);
    w = st_writer_new();
    for (int i = 0; i < a->n_params; i++) {
        const model_param_t *t = &a->params[i];
        int64_t shp[2] = {t->shape[0], t->shape[1]};
        if (!strcmp(t->name, "connector.fc1.weight")) {
            shp[0] = t->shape[1];
            shp[1] = t->shape[0];
        }
        assert_int_equal(st_writer_add_f32(w, t->name, ST_F32, t->ndim, shp, *t->w, err, sizeof err), 0);
    }
    assert_int_equal(st_writer_write(w, p, err, sizeof err), 0);
    st_writer_destroy(&w);
    expect_load_error(p, "connector.fc1.weight");
    /* truncated: a good file cut short */
    snprintf(p, sizeof p, "%s/good.safetensors", dir);
    snprintf(q, sizeof q, "%s/cut.safetensors", dir);
    assert_int_equal(model_save(a, NULL, p, ST_F32, err, sizeof err), 0);
    char *x;
    size_t n = file_bytes(p, &x);
    FILE *f = fopen(q, "wb");
    fwrite(x, 1, n - 100, f);
    fclose(f);
    free(x);
    expect_load_error(q, "cut.safetensors");
    /* not there */
    snprintf(q, sizeof q, "%s/none.safetensors", dir);
    expect_load_error(q, "none.safetensors");
    model_destroy(&a);
}

static int setup(void **state)
{
    (void)state;
    return test_tmpdir_make(dir, sizeof dir, "ckpt");
}

static int teardown(void **state)
{
    (void)state;
    return test_tmpdir_remove(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_round_trip), cmocka_unit_test(test_bf16),
                                       cmocka_unit_test(test_lies)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
