/* test_config.c — model configs: the shipped configs load and check, a
 * checkpoint directory written and read back, the JSON rendering read back,
 * defaults (a released checkpoint without bagelpipe.json), and every class of
 * bad config as a one-line error naming the file and the key. Run from the
 * repository root (tests/run.sh does). */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../support/tmpdir.h"
#include "../../models/config.h"

static char tmpdir[256];

static int setup_tmp(void **state)
{
    (void)state;
    return test_tmpdir_make(tmpdir, sizeof tmpdir, "config");
}

static int teardown_tmp(void **state)
{
    (void)state;
    return test_tmpdir_remove(tmpdir);
}

static const char *tmp_path(const char *name)
{
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", tmpdir, name);
    return p[k];
}

static void spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* the tiny config, one line, for edits */
static const char tiny[] =
    "{\"name\": \"tiny\", \"llm\": {\"hidden_size\": 256, \"num_hidden_layers\": 4, \"num_attention_heads\": 4, "
    "\"num_key_value_heads\": 2, \"intermediate_size\": 768, \"vocab_size\": 151936, \"rope_theta\": 1000000.0, "
    "\"rms_norm_eps\": 1e-06}, \"vit\": {\"hidden_size\": 192, \"intermediate_size\": 768, \"num_hidden_layers\": 4, "
    "\"num_attention_heads\": 4, \"patch_size\": 14, \"image_size\": 112, \"layer_norm_eps\": 1e-06, "
    "\"num_channels\": 3}, \"bagel\": {\"visual_und\": true, \"visual_gen\": true, \"vit_select_layer\": -2, "
    "\"vit_max_num_patch_per_side\": 8, \"latent_patch_size\": 8, \"max_latent_size\": 16, \"timestep_shift\": 1.0, "
    "\"qk_norm\": true, \"tie_word_embeddings\": false, \"autoencoder\": {\"type\": \"identity\"}, "
    "\"vae_transform\": [128, 64], \"vit_transform\": [112, 56], \"tokens\": {\"bos\": 151644, \"eos\": 151645, "
    "\"start_of_image\": 151652, \"end_of_image\": 151653}}}";

/* tiny with `from` replaced by `to` (from must occur) */
static char *edit(const char *from, const char *to)
{
    const char *p = strstr(tiny, from);
    if (!p)
        fail_msg("edit: \"%s\" not in the tiny config", from);
    size_t a = (size_t)(p - tiny), n = strlen(tiny) - strlen(from) + strlen(to) + 1;
    char *s = malloc(n);
    snprintf(s, n, "%.*s%s%s", (int)a, tiny, to, p + strlen(from));
    return s;
}

static void expect_err(const char *from, const char *to, const char *want)
{
    char *s = edit(from, to), err[512] = "";
    model_config_t c;
    int rc = model_config_parse(&c, s, NULL, err, sizeof err);
    if (rc == 0 || !strstr(err, want) || strchr(err, '\n'))
        fail_msg("edit %s -> %s\n  want: %s\n  got: %s", from, to, want, rc == 0 ? "(accepted)" : err);
    free(s);
}

static void test_shipped(void **state)
{
    (void)state;
    char err[512];
    model_config_t c;
    const char *names[] = {"tiny", "bagel-0.5b-mot", "bagel-7b-mot"};
    for (int i = 0; i < 3; i++) {
        if (model_config_load(&c, names[i], "models/configs", err, sizeof err))
            fail_msg("%s", err);
        assert_string_equal(c.name, names[i]);
        assert_int_equal(model_config_check(&c, err, sizeof err), 0);
    }
    assert_int_equal(model_config_load(&c, "bagel-7b-mot", NULL, err, sizeof err), 0); // default configs_dir
    assert_int_equal(c.hidden, 3584);
    assert_int_equal(c.layers, 28);
    assert_int_equal(c.heads, 28);
    assert_int_equal(c.kv_heads, 4);
    assert_int_equal(c.head_dim, 128);
    assert_int_equal(c.inter, 18944);
    assert_int_equal(c.vocab, 152064);
    assert_true(c.rope_theta == 1e6f && c.rms_eps == 1e-6f);
    assert_int_equal(c.qk_norm, 1);
    assert_int_equal(c.tie_embeddings, 0);
    assert_int_equal(c.vit_hidden, 1152);
    assert_int_equal(c.vit_layers, 26);
    assert_int_equal(c.vit_heads, 16);
    assert_int_equal(c.vit_inter, 4304);
    assert_int_equal(c.vit_patch, 14);
    assert_int_equal(c.vit_positions, 4900);
    assert_int_equal(c.vit_max_side, 70);
    assert_int_equal(c.ae, MODEL_AE_FLUX);
    assert_int_equal(c.z_channels, 16);
    assert_int_equal(c.vae_downsample, 8);
    assert_int_equal(c.latent_patch, 2);
    assert_int_equal(c.max_latent_size, 64);
    assert_true(c.ae_scale == 0.3611f && c.ae_shift == 0.1159f);
    assert_int_equal(model_latent_dim(&c), 64);
    assert_int_equal(model_vit_dim(&c), 588);
    assert_int_equal(model_latent_stride(&c), 16);
    assert_int_equal(c.vae_max, 1024);
    assert_int_equal(c.vit_min, 378);
    assert_int_equal(c.bos_id, 151644);
    assert_int_equal(c.eoi_id, 151653);

    assert_int_equal(model_config_load(&c, "models/configs/tiny.json", NULL, err, sizeof err), 0);
    assert_int_equal(c.ae, MODEL_AE_IDENTITY);
    assert_int_equal(c.z_channels, 3);
    assert_int_equal(c.vae_downsample, 1);
    assert_true(c.ae_scale == 1.0f && c.ae_shift == 0.0f);
    assert_int_equal(c.vit_layers, 3);
    assert_int_equal(c.vit_positions, 64);
    assert_int_equal(model_latent_dim(&c), 192);

    char line[512];
    size_t n = model_config_summary(&c, line, sizeof line);
    assert_int_equal(n, strlen(line));
    assert_non_null(strstr(line, "model=tiny H=256 L=4 nh=4 nkv=2 hd=64 I=768 V=151936 vit=192x3"));
    assert_non_null(strstr(line, "ae=identity z=3"));
    assert_null(strchr(line, '\n'));

    assert_int_equal(model_config_load(&c, "no-such-config", "models/configs", err, sizeof err), -1);
    assert_string_equal(err, "no-such-config: no such config file, checkpoint directory, or shipped config "
                             "(models/configs/no-such-config.json)");
    assert_int_equal(model_config_load(&c, "a/b/none.json", NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "a/b/none.json: cannot open"));
}

/* the JSON rendering reads back to the same struct */
static void test_json_roundtrip(void **state)
{
    (void)state;
    const char *names[] = {"tiny", "bagel-0.5b-mot", "bagel-7b-mot"};
    for (int i = 0; i < 3; i++) {
        char err[512];
        model_config_t a, b;
        assert_int_equal(model_config_load(&a, names[i], "models/configs", err, sizeof err), 0);
        size_t need = model_config_json(&a, NULL, 0);
        char *text = malloc(need + 1);
        assert_int_equal(model_config_json(&a, text, need + 1), need);
        if (model_config_parse(&b, text, NULL, err, sizeof err))
            fail_msg("%s\n%s", err, text);
        assert_memory_equal(&a, &b, sizeof a);
        char small[16];
        assert_int_equal(model_config_json(&a, small, sizeof small), need); // truncated, still terminated
        assert_int_equal(strlen(small), sizeof small - 1);
        free(text);
    }
}

static void test_checkpoint_dir(void **state)
{
    (void)state;
    char err[512];
    model_config_t a, b;
    const char *names[] = {"tiny", "bagel-7b-mot"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(model_config_load(&a, names[i], "models/configs", err, sizeof err), 0);
        const char *dir = tmp_path(names[i]);
        if (model_config_save_dir(&a, dir, err, sizeof err))
            fail_msg("%s", err);
        // nothing left under a temporary name (name.tmp.PID)
        DIR *d = opendir(dir);
        assert_non_null(d);
        for (struct dirent *e; (e = readdir(d)) != NULL;)
            if (strstr(e->d_name, ".tmp"))
                fail_msg("%s/%s: a temporary file left behind", dir, e->d_name);
        closedir(d);
        if (model_config_load(&b, dir, NULL, err, sizeof err))
            fail_msg("%s", err);
        assert_memory_equal(&a, &b, sizeof a);
    }
    // a released checkpoint: no bagelpipe.json; llm_config's tie is overruled
    const char *rel = tmp_path("BAGEL-7B-MoT");
    mkdir(rel, 0755);
    char p[600];
    snprintf(p, sizeof p, "%s/llm_config.json", rel);
    spit(p, "{\"architectures\": [\"Qwen2ForCausalLM\"], \"hidden_act\": \"silu\", \"hidden_size\": 3584, "
            "\"intermediate_size\": 18944, \"max_position_embeddings\": 32768, \"model_type\": \"qwen2\", "
            "\"num_attention_heads\": 28, \"num_hidden_layers\": 28, \"num_key_value_heads\": 4, "
            "\"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0, \"tie_word_embeddings\": true, "
            "\"torch_dtype\": \"bfloat16\", \"use_sliding_window\": false, \"vocab_size\": 152064}");
    snprintf(p, sizeof p, "%s/vit_config.json", rel);
    spit(p, "{\"hidden_size\": 1152, \"image_size\": 980, \"intermediate_size\": 4304, \"model_type\": "
            "\"siglip_vision_model\", \"num_attention_heads\": 16, \"num_hidden_layers\": 27, \"patch_size\": 14, "
            "\"hidden_act\": \"gelu_pytorch_tanh\", \"layer_norm_eps\": 1e-06, \"num_channels\": 3}");
    snprintf(p, sizeof p, "%s/", rel);
    if (model_config_load(&b, p, NULL, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(model_config_load(&a, "bagel-7b-mot", "models/configs", err, sizeof err), 0);
    assert_string_equal(b.name, "BAGEL-7B-MoT");
    snprintf(b.name, sizeof b.name, "bagel-7b-mot");
    assert_memory_equal(&a, &b, sizeof a);

    // a bagelpipe.json with a bad key names that file
    snprintf(p, sizeof p, "%s/bagelpipe.json", rel);
    spit(p, "{\"bagel\": {\"max_latent_size\": 0}}");
    assert_int_equal(model_config_load(&b, rel, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "BAGEL-7B-MoT/bagelpipe.json: bagel.max_latent_size: 0, expected a positive integer"));
    spit(p, "{\"llm\": {}}");
    assert_int_equal(model_config_load(&b, rel, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "bagelpipe.json: llm: not allowed here"));
    unlink(p);
    // a bad llm_config.json names that file
    snprintf(p, sizeof p, "%s/llm_config.json", rel);
    spit(p, "{\"hidden_size\": \"big\"}");
    assert_int_equal(model_config_load(&b, rel, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "BAGEL-7B-MoT/llm_config.json: hidden_size: \"big\", expected an integer"));
    spit(p, "{\"hidden_size\": ");
    assert_int_equal(model_config_load(&b, rel, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "BAGEL-7B-MoT/llm_config.json:1: invalid JSON"));
    unlink(p);
    assert_int_equal(model_config_load(&b, rel, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "no llm_config.json: not a checkpoint directory"));
}

/* "llm_config" / "vit_config" name files beside the config */
static void test_section_files(void **state)
{
    (void)state;
    char err[512], p[600];
    model_config_t a, b;
    snprintf(p, sizeof p, "%s/llm.json", tmpdir);
    spit(p, "{\"hidden_size\": 256, \"num_hidden_layers\": 4, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
            "\"intermediate_size\": 768, \"vocab_size\": 151936}");
    snprintf(p, sizeof p, "%s/vit.json", tmpdir);
    spit(p, "{\"hidden_size\": 192, \"intermediate_size\": 768, \"num_hidden_layers\": 4, \"num_attention_heads\": 4, "
            "\"patch_size\": 14, \"image_size\": 112}");
    char *s = edit("\"llm\": {\"hidden_size\": 256, \"num_hidden_layers\": 4, \"num_attention_heads\": 4, "
                   "\"num_key_value_heads\": 2, \"intermediate_size\": 768, \"vocab_size\": 151936, \"rope_theta\": "
                   "1000000.0, \"rms_norm_eps\": 1e-06}",
                   "\"llm_config\": \"llm.json\"");
    char *t = strstr(s, "\"vit\": {");
    char *e = strchr(t, '}');
    char *s2 = malloc(strlen(s) + 64);
    snprintf(s2, strlen(s) + 64, "%.*s\"vit_config\": \"vit.json\"%s", (int)(t - s), s, e + 1);
    if (model_config_parse(&b, s2, tmpdir, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(model_config_parse(&a, tiny, NULL, err, sizeof err), 0);
    assert_memory_equal(&a, &b, sizeof a); // rope_theta and eps take the defaults
    // as a file: relative to its directory
    snprintf(p, sizeof p, "%s/cfg.json", tmpdir);
    spit(p, s2);
    assert_int_equal(model_config_load(&b, p, NULL, err, sizeof err), 0);
    assert_string_equal(b.name, "tiny");
    assert_int_equal(model_config_parse(&b, s2, "/nonexistent", err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/llm.json: cannot open"));
    free(s);
    free(s2);
    expect_err("\"vit\": {", "\"vit_config\": \"x.json\", \"vit\": {", "both vit and vit_config are given");
    expect_err("\"vit\": {", "\"vit_config\": 3, \"_x\": {", "vit_config: 3, expected a file name");
}

static void test_defaults(void **state)
{
    (void)state;
    char err[512];
    model_config_t c;
    const char *min = "{\"llm\": {\"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
                      "\"intermediate_size\": 96, \"vocab_size\": 152000}, \"vit\": {\"hidden_size\": 32, "
                      "\"intermediate_size\": 48, \"num_hidden_layers\": 27, \"num_attention_heads\": 2, "
                      "\"patch_size\": 14, \"image_size\": 980}}";
    if (model_config_parse(&c, min, NULL, err, sizeof err))
        fail_msg("%s", err);
    assert_string_equal(c.name, "model");
    assert_int_equal(c.kv_heads, 4); // = num_attention_heads, as Qwen2Config
    assert_true(c.rope_theta == 1e6f && c.rms_eps == 1e-6f && c.vit_eps == 1e-6f);
    assert_int_equal(c.vit_layers, 26);
    assert_int_equal(c.vit_select_layer, -2);
    assert_int_equal(c.vit_max_side, 70);
    assert_int_equal(c.visual_und, 1);
    assert_int_equal(c.visual_gen, 1);
    assert_int_equal(c.qk_norm, 1);
    assert_int_equal(c.tie_embeddings, 0);
    assert_int_equal(c.ae, MODEL_AE_FLUX);
    assert_int_equal(c.z_channels, 16);
    assert_int_equal(c.vae_downsample, 8);
    assert_int_equal(c.latent_patch, 2);
    assert_int_equal(c.max_latent_size, 64);
    assert_true(c.timestep_shift == 1.0f);
    assert_int_equal(c.vae_max, 1024);
    assert_int_equal(c.vae_min, 512);
    assert_int_equal(c.vit_max, 980);
    assert_int_equal(c.vit_min, 378);
    assert_int_equal(c.soi_id, 151652);
    // understanding off: no vit needed
    const char *llm_only = "{\"name\": \"lm\", \"llm\": {\"hidden_size\": 64, \"num_hidden_layers\": 2, "
                           "\"num_attention_heads\": 4, \"intermediate_size\": 96, \"vocab_size\": 152000}, "
                           "\"bagel\": {\"visual_und\": false, \"visual_gen\": false}}";
    if (model_config_parse(&c, llm_only, NULL, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(c.vit_layers, 0);
    char *js = malloc(model_config_json(&c, NULL, 0) + 1);
    model_config_json(&c, js, model_config_json(&c, NULL, 0) + 1);
    assert_null(strstr(js, "\"vit\""));
    model_config_t d;
    assert_int_equal(model_config_parse(&d, js, NULL, err, sizeof err), 0);
    assert_memory_equal(&c, &d, sizeof c);
    free(js);
    assert_int_equal(model_config_save_dir(&c, tmp_path("lm"), err, sizeof err), 0);
    assert_int_equal(model_config_load(&d, tmp_path("lm"), NULL, err, sizeof err), 0);
    assert_memory_equal(&c, &d, sizeof c);
}

static void test_errors(void **state)
{
    (void)state;
    // sizes and divisibility
    expect_err("\"num_attention_heads\": 4, \"num_key", "\"num_attention_heads\": 0, \"num_key",
               "config: llm.num_attention_heads: 0, expected a positive integer");
    expect_err("\"hidden_size\": 256", "\"hidden_size\": 250",
               "llm.hidden_size 250 is not a multiple of "
               "llm.num_attention_heads 4");
    expect_err("\"hidden_size\": 256", "\"hidden_size\": 12",
               "head_dim 3 (llm.hidden_size / llm.num_attention_heads) "
               "is odd");
    expect_err("\"hidden_size\": 256, \"num_hidden_layers\": 4, \"num_attention_heads\": 4",
               "\"hidden_size\": 6, \"num_hidden_layers\": 4, \"num_attention_heads\": 3",
               "llm.hidden_size 6 is not a multiple of 4 (the 2-D sin-cos");
    expect_err("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3",
               "llm.num_attention_heads 4 is not a multiple of llm.num_key_value_heads 3");
    expect_err("\"vocab_size\": 151936", "\"vocab_size\": 1000000000",
               "llm.vocab_size: 1000000000, expected 1 .. "
               "4194304");
    expect_err("\"vocab_size\": 151936", "\"vocab_size\": 99999999999",
               "llm.vocab_size: 99999999999, expected an "
               "integer");
    expect_err("\"vocab_size\": 151936", "\"vocab_size\": 1000", "bagel.tokens.bos: 151644, expected 0 .. 999");
    expect_err("\"num_hidden_layers\": 4, \"num_attention_heads\": 4, \"num_key",
               "\"num_hidden_layers\": 4.5, \"num_attention_heads\": 4, \"num_key",
               "llm.num_hidden_layers: 4.5, expected an integer");
    expect_err("\"intermediate_size\": 768, \"vocab", "\"vocab", "llm.intermediate_size: missing, expected an integer");
    expect_err("\"rope_theta\": 1000000.0", "\"rope_theta\": -1",
               "llm.rope_theta: -1, expected a number in (0, 1e+12]");
    expect_err("\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": \"x\"", "llm.rms_norm_eps: \"x\", expected a number");
    expect_err("\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": 1e-06, \"hidden_act\": \"gelu\"",
               "llm.hidden_act: \"gelu\", expected \"silu\"");
    // vit
    expect_err("\"hidden_size\": 192", "\"hidden_size\": 190",
               "vit.hidden_size 190 is not a multiple of "
               "vit.num_attention_heads 4");
    expect_err("\"image_size\": 112", "\"image_size\": 100",
               "vit.image_size 100 is not a multiple of vit.patch_size 14");
    expect_err("\"vit_max_num_patch_per_side\": 8", "\"vit_max_num_patch_per_side\": 9",
               "bagel.vit_max_num_patch_per_side 9 is over vit.image_size / vit.patch_size = 8");
    expect_err("\"vit_select_layer\": -2", "\"vit_select_layer\": -5", "bagel.vit_select_layer: -5, expected -1 .. -4");
    expect_err("\"vit_select_layer\": -2", "\"vit_select_layer\": 1", "bagel.vit_select_layer: 1, expected -1 .. -4");
    expect_err("\"num_channels\": 3", "\"num_channels\": 4", "vit.num_channels: 4, expected 3");
    expect_err("\"vit_transform\": [112, 56]", "\"vit_transform\": [112, 7]",
               "bagel.vit_transform [112, 7]: expected vit.patch_size (14) <= min <= max");
    expect_err("\"vit_transform\": [112, 56]", "\"vit_transform\": [112]",
               "bagel.vit_transform: [112], expected [max, "
               "min]");
    // bagel
    expect_err("\"type\": \"identity\"", "\"type\": \"sdxl\"",
               "bagel.autoencoder.type: \"sdxl\", expected \"flux\" or \"identity\"");
    expect_err("\"type\": \"identity\"", "\"type\": \"identity\", \"z_channels\": 16",
               "the identity autoencoder has z_channels 3");
    expect_err("\"type\": \"identity\"", "\"type\": \"flux\", \"z_chanels\": 16",
               "bagel.autoencoder.\"z_chanels\": unknown key");
    expect_err("\"timestep_shift\": 1.0", "\"timestep_shft\": 1.0", "bagel.\"timestep_shft\": unknown key (a typo?)");
    expect_err("\"qk_norm\": true", "\"qk_norm\": 2", "bagel.qk_norm: 2, expected true or false");
    expect_err("\"max_latent_size\": 16", "\"max_latent_size\": 100000",
               "bagel.max_latent_size: 100000, expected 1 .. "
               "1024");
    expect_err("\"vae_transform\": [128, 64]", "\"vae_transform\": [128, 4]",
               "bagel.vae_transform [128, 4]: expected downsample x latent_patch_size (8) <= min <= max");
    expect_err("\"end_of_image\": 151653", "\"end_of_image\": 151652",
               "bagel.tokens.start_of_image and bagel.tokens.end_of_image are both 151652");
    expect_err("\"end_of_image\": 151653", "\"end_of_image\": -1", "bagel.tokens.end_of_image: -1, expected 0 ..");
    expect_err("\"bagel\": {", "\"bagel\": 1, \"_x\": {", "config: bagel: 1, expected an object");
    expect_err("\"tokens\": {\"bos\"", "\"tokens\": [1], \"_t\": {\"bos\"", "bagel.tokens: [1], expected an object");
    // the whole
    expect_err("\"name\": \"tiny\"", "\"name\": \"tiny\", \"lm\": {}", "config: \"lm\": unknown key");
    expect_err("\"name\": \"tiny\"", "\"name\": \"a b\"", "name: \"a b\", expected a short name");
    expect_err("\"name\": \"tiny\"", "\"name\": \"tiny\", \"name\": \"x\"", "invalid JSON: duplicate object key");
    expect_err("\"llm\": {", "\"llx\": {", "\"llx\": unknown key");
    expect_err("\"vit\": {", "\"bagel2\": 0, \"_vit\": {", "\"bagel2\": unknown key");
    expect_err("\"vit\": {", "\"_vit\": {", "vit: missing; give \"vit\": {...} or \"vit_config\"");

    char err[512];
    model_config_t c;
    assert_int_equal(model_config_parse(&c, "{", NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "config:1: invalid JSON"));
    assert_int_equal(model_config_parse(&c, "[1]", NULL, err, sizeof err), -1);
    assert_string_equal(err, "config: expected a JSON object");
    assert_int_equal(model_config_parse(&c, "{\"bagel\": {}}", NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "llm: missing"));
    memset(&c, 0, sizeof c);
    assert_int_equal(model_config_check(&c, err, sizeof err), -1);
    assert_string_equal(err, "config: llm.hidden_size: 0, expected a positive integer");
    // a bad file names the file
    spit(tmp_path("bad.json"), tiny);
    char *s = edit("\"num_attention_heads\": 4, \"num_key", "\"num_attention_heads\": 0, \"num_key");
    spit(tmp_path("bad.json"), s);
    free(s);
    assert_int_equal(model_config_load(&c, tmp_path("bad.json"), NULL, err, sizeof err), -1);
    char want[600];
    snprintf(want, sizeof want, "%s: llm.num_attention_heads: 0, expected a positive integer", tmp_path("bad.json"));
    assert_string_equal(err, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped),        cmocka_unit_test(test_json_roundtrip),
        cmocka_unit_test(test_checkpoint_dir), cmocka_unit_test(test_section_files),
        cmocka_unit_test(test_defaults),       cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
