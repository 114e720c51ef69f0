/* config.c — the model configuration: bagelpipe config files, checkpoint
 * directories (llm_config.json, vit_config.json, bagelpipe.json), shipped
 * configs by name; the consistency check; writing a checkpoint's config
 * files; a JSON and a one-line rendering. The format, every key and its
 * default are in docs/checkpoints.md. Config files come from outside: every
 * value is type-checked and bounded, and an error names the file and the key. */
#include "config.h"

#include "../ipc/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CFG_MAX_FILE ((long long)4 << 20) /* bytes of one config file */

/* released BAGEL-7B-MoT values for everything the "bagel" section may omit */
#define DEF_SELECT       (-2)
#define DEF_MAX_SIDE     70
#define DEF_LATENT_PATCH 2
#define DEF_MAX_LATENT   64
#define DEF_BOS          151644
#define DEF_EOS          151645
#define DEF_SOI          151652
#define DEF_EOI          151653

static void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    /* one line, whatever the input held: jansson quotes the text near a
     * syntax error, control characters included */
    for (char *p = err; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
}

static int check(const model_config_t *c, const char *L, char *err, size_t errlen);

/* where values come from: a file (or label) and the key prefix in it */
typedef struct {
    const char *file;
    const char *prefix; /* "llm." for an inline section, "" for llm_config.json */
    char *err;
    size_t errlen;
} ctx_t;

/* A JSON value shown in an error: compact, cut at 60 bytes, one line. */
static const char *show(const json_t *v, char *buf, size_t cap)
{
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    snprintf(buf, cap, "%.60s%s", s ? s : "?", s && strlen(s) > 60 ? "..." : "");
    free(s);
    return buf;
}

static int bad(ctx_t *c, const char *key, const json_t *v, const char *expected)
{
    char vb[80];
    seterr(c->err, c->errlen, "%s: %s%s: %s, expected %s", c->file, c->prefix, key,
           v ? show(v, vb, sizeof vb) : "missing", expected);
    return -1;
}

/* An int: absent -> def (or an error when required). */
static int get_int(ctx_t *c, const json_t *o, const char *key, int required, int def, int *out)
{
    const json_t *v = json_object_get(o, key);
    if (!v) {
        if (required)
            return bad(c, key, NULL, "an integer");
        *out = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < INT_MIN || json_integer_value(v) > INT_MAX)
        return bad(c, key, v, "an integer");
    *out = (int)json_integer_value(v);
    return 0;
}

static int get_float(ctx_t *c, const json_t *o, const char *key, float def, float *out)
{
    const json_t *v = json_object_get(o, key);
    if (!v) {
        *out = def;
        return 0;
    }
    double d = json_number_value(v);
    if (!json_is_number(v) || !isfinite(d) || fabs(d) > 3e38)
        return bad(c, key, v, "a number");
    *out = (float)d;
    return 0;
}

static int get_bool(ctx_t *c, const json_t *o, const char *key, int def, int *out)
{
    const json_t *v = json_object_get(o, key);
    if (!v)
        *out = def;
    else if (json_is_boolean(v))
        *out = json_is_true(v);
    else if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1))
        *out = (int)json_integer_value(v);
    else
        return bad(c, key, v, "true or false");
    return 0;
}

/* [max, min] of an image transform */
static int get_pair(ctx_t *c, const json_t *o, const char *key, int dmax, int dmin, int *max, int *min)
{
    const json_t *v = json_object_get(o, key);
    if (!v) {
        *max = dmax, *min = dmin;
        return 0;
    }
    const json_t *a = json_array_get(v, 0), *b = json_array_get(v, 1);
    if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_integer(a) || !json_is_integer(b) ||
        json_integer_value(a) < 0 || json_integer_value(a) > INT_MAX || json_integer_value(b) < 0 ||
        json_integer_value(b) > INT_MAX)
        return bad(c, key, v, "[max, min], two non-negative integers");
    *max = (int)json_integer_value(a), *min = (int)json_integer_value(b);
    return 0;
}

/* Refuses keys outside `known` (NULL-terminated); "comment" and keys that
 * start with "_" are always allowed. */
static int only_keys(ctx_t *c, const json_t *o, const char *const *known)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        int ok = k[0] == '_' || strcmp(k, "comment") == 0;
        for (int i = 0; !ok && known[i]; i++)
            ok = strcmp(k, known[i]) == 0;
        if (!ok) {
            char kb[80];
            json_t *ks = json_string(k);
            seterr(c->err, c->errlen, "%s: %s%s: unknown key (a typo?)", c->file, c->prefix,
                   ks ? show(ks, kb, sizeof kb) : "?");
            json_decref(ks);
            return -1;
        }
    }
    return 0;
}

/* Reads a JSON object from a file of bounded size. */
static json_t *load_json_file(const char *path, char *err, size_t errlen)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (!S_ISREG(sb.st_mode) || sb.st_size > CFG_MAX_FILE) {
        seterr(err, errlen, "%s: %s", path,
               S_ISREG(sb.st_mode) ? "over the 4 MiB limit for a config file" : "not a regular file");
        return NULL;
    }
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        seterr(err, errlen, "%s:%d: invalid JSON: %s", path, je.line, je.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        seterr(err, errlen, "%s: expected a JSON object", path);
        json_decref(j);
        return NULL;
    }
    return j;
}

/* A section given inline ("llm": {...}) or as a file ("llm_config": "x.json").
 * Sets *sec (a new reference, or NULL when absent and optional) and the
 * context its errors are reported in. */
static int section(ctx_t *c, const json_t *root, const char *name, const char *base_dir, json_t **sec, ctx_t *sc,
                   char *pathbuf, size_t pathcap, char *prefix, size_t prefixcap)
{
    char fkey[32];
    snprintf(fkey, sizeof fkey, "%s_config", name);
    const json_t *in = json_object_get(root, name), *fn = json_object_get(root, fkey);
    *sc = *c;
    *sec = NULL;
    if (in && fn) {
        seterr(c->err, c->errlen, "%s: both %s and %s are given, expected one", c->file, name, fkey);
        return -1;
    }
    if (in) {
        if (!json_is_object(in))
            return bad(c, name, in, "an object");
        snprintf(prefix, prefixcap, "%s.", name);
        sc->prefix = prefix;
        *sec = json_incref((json_t *)in);
        return 0;
    }
    if (fn) {
        const char *f = json_string_value(fn);
        if (!f || !*f)
            return bad(c, fkey, fn, "a file name");
        if (f[0] == '/')
            snprintf(pathbuf, pathcap, "%s", f);
        else
            snprintf(pathbuf, pathcap, "%s/%s", base_dir ? base_dir : ".", f);
        if (!(*sec = load_json_file(pathbuf, c->err, c->errlen)))
            return -1;
        sc->file = pathbuf;
        sc->prefix = "";
    }
    return 0;
}

static int parse_root(model_config_t *cfg, const json_t *root, const char *label, const char *base_dir,
                      const char *def_name, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    ctx_t c = {label, "", err, errlen};
    static const char *const top_keys[] = {"name", "llm", "llm_config", "vit", "vit_config", "bagel", NULL};
    if (!json_is_object(root)) {
        seterr(err, errlen, "%s: expected a JSON object", label);
        return -1;
    }
    if (only_keys(&c, root, top_keys))
        return -1;
    const json_t *jn = json_object_get(root, "name");
    if (jn && (!json_is_string(jn) || json_string_length(jn) == 0 || json_string_length(jn) >= sizeof cfg->name ||
               strpbrk(json_string_value(jn), "\n\r\t \"\\/")))
        return bad(&c, "name", jn, "a short name (1-63 bytes, no spaces, quotes or slashes)");
    snprintf(cfg->name, sizeof cfg->name, "%s", jn ? json_string_value(jn) : def_name ? def_name : "model");

    int rc = -1;
    json_t *llm = NULL, *vit = NULL;
    ctx_t lc, vc;
    char lpath[PATH_MAX], vpath[PATH_MAX], lpre[8], vpre[8];
    if (section(&c, root, "llm", base_dir, &llm, &lc, lpath, sizeof lpath, lpre, sizeof lpre) ||
        section(&c, root, "vit", base_dir, &vit, &vc, vpath, sizeof vpath, vpre, sizeof vpre))
        goto out;

    /* ---- bagel: BAGEL's own settings */
    const json_t *bg = json_object_get(root, "bagel");
    json_t *empty = json_object();
    ctx_t bc = c;
    bc.prefix = "bagel.";
    if (bg && !json_is_object(bg)) {
        bad(&c, "bagel", bg, "an object");
        json_decref(empty);
        goto out;
    }
    if (!bg)
        bg = empty;
    static const char *const bagel_keys[] = {"visual_und",
                                             "visual_gen",
                                             "vit_select_layer",
                                             "vit_max_num_patch_per_side",
                                             "latent_patch_size",
                                             "max_latent_size",
                                             "timestep_shift",
                                             "qk_norm",
                                             "tie_word_embeddings",
                                             "autoencoder",
                                             "vae_transform",
                                             "vit_transform",
                                             "tokens",
                                             NULL};
    int ok = !only_keys(&bc, bg, bagel_keys) && !get_bool(&bc, bg, "visual_und", 1, &cfg->visual_und) &&
             !get_bool(&bc, bg, "visual_gen", 1, &cfg->visual_gen) &&
             !get_int(&bc, bg, "vit_select_layer", 0, DEF_SELECT, &cfg->vit_select_layer) &&
             !get_int(&bc, bg, "vit_max_num_patch_per_side", 0, DEF_MAX_SIDE, &cfg->vit_max_side) &&
             !get_int(&bc, bg, "latent_patch_size", 0, DEF_LATENT_PATCH, &cfg->latent_patch) &&
             !get_int(&bc, bg, "max_latent_size", 0, DEF_MAX_LATENT, &cfg->max_latent_size) &&
             !get_float(&bc, bg, "timestep_shift", 1.0f, &cfg->timestep_shift) &&
             !get_bool(&bc, bg, "qk_norm", 1, &cfg->qk_norm) &&
             !get_bool(&bc, bg, "tie_word_embeddings", 0, &cfg->tie_embeddings) &&
             !get_pair(&bc, bg, "vae_transform", 1024, 512, &cfg->vae_max, &cfg->vae_min) &&
             !get_pair(&bc, bg, "vit_transform", 980, 378, &cfg->vit_max, &cfg->vit_min);
    if (ok) {
        const json_t *ae = json_object_get(bg, "autoencoder");
        ctx_t ac = c;
        ac.prefix = "bagel.autoencoder.";
        static const char *const ae_keys[] = {"type",         "z_channels", "downsample",     "scale_factor",
                                              "shift_factor", "ch",         "num_res_blocks", NULL};
        if (ae && !json_is_object(ae)) {
            ok = !bad(&bc, "autoencoder", ae, "an object");
        } else {
            if (!ae)
                ae = empty;
            const json_t *ty = json_object_get(ae, "type");
            const char *t = ty ? json_string_value(ty) : "flux";
            if (!t || (strcmp(t, "flux") && strcmp(t, "identity")))
                ok = !bad(&ac, "type", ty, "\"flux\" or \"identity\"");
            else {
                int id = strcmp(t, "identity") == 0;
                cfg->ae = id ? MODEL_AE_IDENTITY : MODEL_AE_FLUX;
                ok = !only_keys(&ac, ae, ae_keys) &&
                     !get_int(&ac, ae, "z_channels", 0, id ? 3 : 16, &cfg->z_channels) &&
                     !get_int(&ac, ae, "downsample", 0, id ? 1 : 8, &cfg->vae_downsample) &&
                     !get_float(&ac, ae, "scale_factor", id ? 1.0f : 0.3611f, &cfg->ae_scale) &&
                     !get_float(&ac, ae, "shift_factor", id ? 0.0f : 0.1159f, &cfg->ae_shift) &&
                     !get_int(&ac, ae, "ch", 0, 128, &cfg->ae_ch) &&
                     !get_int(&ac, ae, "num_res_blocks", 0, 2, &cfg->ae_res_blocks);
            }
        }
    }
    if (ok) {
        const json_t *tk = json_object_get(bg, "tokens");
        ctx_t tc = c;
        tc.prefix = "bagel.tokens.";
        static const char *const tok_keys[] = {"bos", "eos", "start_of_image", "end_of_image", NULL};
        if (tk && !json_is_object(tk))
            ok = !bad(&bc, "tokens", tk, "an object");
        else {
            if (!tk)
                tk = empty;
            ok = !only_keys(&tc, tk, tok_keys) && !get_int(&tc, tk, "bos", 0, DEF_BOS, &cfg->bos_id) &&
                 !get_int(&tc, tk, "eos", 0, DEF_EOS, &cfg->eos_id) &&
                 !get_int(&tc, tk, "start_of_image", 0, DEF_SOI, &cfg->soi_id) &&
                 !get_int(&tc, tk, "end_of_image", 0, DEF_EOI, &cfg->eoi_id);
        }
    }
    json_decref(empty);
    if (!ok)
        goto out;

    /* ---- llm: Qwen2Config keys */
    if (!llm) {
        seterr(err, errlen, "%s: llm: missing; give \"llm\": {...} or \"llm_config\": \"file.json\"", label);
        goto out;
    }
    const json_t *act = json_object_get(llm, "hidden_act");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu") != 0)) {
        bad(&lc, "hidden_act", act, "\"silu\"");
        goto out;
    }
    if (get_int(&lc, llm, "hidden_size", 1, 0, &cfg->hidden) ||
        get_int(&lc, llm, "num_hidden_layers", 1, 0, &cfg->layers) ||
        get_int(&lc, llm, "num_attention_heads", 1, 0, &cfg->heads) ||
        get_int(&lc, llm, "num_key_value_heads", 0, cfg->heads, &cfg->kv_heads) ||
        get_int(&lc, llm, "intermediate_size", 1, 0, &cfg->inter) ||
        get_int(&lc, llm, "vocab_size", 1, 0, &cfg->vocab) ||
        get_float(&lc, llm, "rope_theta", 1e6f, &cfg->rope_theta) ||
        get_float(&lc, llm, "rms_norm_eps", 1e-6f, &cfg->rms_eps))
        goto out;
    // llm.tie_word_embeddings and llm.qk_norm are read by nobody: as in the
    // official code, the bagel section (or its defaults) decides
    cfg->head_dim = cfg->heads > 0 ? cfg->hidden / cfg->heads : 0;

    /* ---- vit: SigLIP config keys */
    if (cfg->visual_und) {
        if (!vit) {
            seterr(err, errlen,
                   "%s: vit: missing; give \"vit\": {...} or \"vit_config\": \"file.json\" (or bagel.visual_und false)",
                   label);
            goto out;
        }
        act = json_object_get(vit, "hidden_act");
        if (act && (!json_is_string(act) || strcmp(json_string_value(act), "gelu_pytorch_tanh") != 0)) {
            bad(&vc, "hidden_act", act, "\"gelu_pytorch_tanh\"");
            goto out;
        }
        int cfg_layers = 0, channels = 3;
        if (get_int(&vc, vit, "hidden_size", 1, 0, &cfg->vit_hidden) ||
            get_int(&vc, vit, "intermediate_size", 1, 0, &cfg->vit_inter) ||
            get_int(&vc, vit, "num_hidden_layers", 1, 0, &cfg_layers) ||
            get_int(&vc, vit, "num_attention_heads", 1, 0, &cfg->vit_heads) ||
            get_int(&vc, vit, "patch_size", 1, 0, &cfg->vit_patch) ||
            get_int(&vc, vit, "image_size", 1, 0, &cfg->vit_image_size) ||
            get_float(&vc, vit, "layer_norm_eps", 1e-6f, &cfg->vit_eps) ||
            get_int(&vc, vit, "num_channels", 0, 3, &channels))
            goto out;
        if (channels != 3) {
            bad(&vc, "num_channels", json_object_get(vit, "num_channels"), "3");
            goto out;
        }
        if (cfg_layers < 1 || cfg_layers > 1024) {
            bad(&vc, "num_hidden_layers", json_object_get(vit, "num_hidden_layers"), "1 .. 1024");
            goto out;
        }
        if (cfg->vit_select_layer < -cfg_layers || cfg->vit_select_layer > -1) {
            char exp[96];
            snprintf(exp, sizeof exp, "-1 .. -%d (the vit has %d layers)", cfg_layers, cfg_layers);
            bad(&bc, "vit_select_layer", json_object_get(bg, "vit_select_layer"), exp);
            goto out;
        }
        // BAGEL builds num_hidden_layers + 1 + vit_select_layer layers (27 -> 26)
        cfg->vit_layers = cfg_layers + 1 + cfg->vit_select_layer;
        if (cfg->vit_patch > 0 && cfg->vit_image_size > 0 && cfg->vit_image_size % cfg->vit_patch == 0) {
            long long side = cfg->vit_image_size / cfg->vit_patch;
            cfg->vit_positions = side * side > INT_MAX ? INT_MAX : (int)(side * side);
        }
    }
    rc = check(cfg, label, err, errlen);
out:
    json_decref(llm);
    json_decref(vit);
    return rc;
}

int model_config_parse(model_config_t *cfg, const char *json_text, const char *base_dir, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_loads(json_text, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        seterr(err, errlen, "config:%d: invalid JSON: %s", je.line, je.text);
        return -1;
    }
    int rc = parse_root(cfg, root, "config", base_dir, NULL, err, errlen);
    json_decref(root);
    return rc;
}

/* ---- the check */

#define CHECK_RANGE(v, key, lo, hi)                                                                                    \
    do {                                                                                                               \
        if ((v) < (lo) || (v) > (hi)) {                                                                                \
            if ((lo) == 1 && (v) < 1)                                                                                  \
                seterr(err, errlen, "%s: %s: %lld, expected a positive integer", L, key, (long long)(v));              \
            else                                                                                                       \
                seterr(err, errlen, "%s: %s: %lld, expected %lld .. %lld", L, key, (long long)(v), (long long)(lo),    \
                       (long long)(hi));                                                                               \
            return -1;                                                                                                 \
        }                                                                                                              \
    } while (0)

#define CHECK_REAL(v, key, lo, hi)                                                                                     \
    do {                                                                                                               \
        if (!isfinite(v) || !((v) > (lo)) || (v) > (hi)) {                                                             \
            seterr(err, errlen, "%s: %s: %g, expected a number in (%g, %g]", L, key, (double)(v), (double)(lo),        \
                   (double)(hi));                                                                                      \
            return -1;                                                                                                 \
        }                                                                                                              \
    } while (0)

#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            char m_[300];                                                                                              \
            snprintf(m_, sizeof m_, __VA_ARGS__);                                                                      \
            seterr(err, errlen, "%s: %s", L, m_);                                                                      \
            return -1;                                                                                                 \
        }                                                                                                              \
    } while (0)

static int check(const model_config_t *c, const char *L, char *err, size_t errlen)
{
    CHECK_RANGE(c->hidden, "llm.hidden_size", 1, 65536);
    CHECK_RANGE(c->layers, "llm.num_hidden_layers", 1, 1024);
    CHECK_RANGE(c->heads, "llm.num_attention_heads", 1, 1024);
    CHECK_RANGE(c->kv_heads, "llm.num_key_value_heads", 1, 1024);
    CHECK_RANGE(c->inter, "llm.intermediate_size", 1, 1 << 20);
    CHECK_RANGE(c->vocab, "llm.vocab_size", 1, 1 << 22);
    CHECK_REAL(c->rope_theta, "llm.rope_theta", 0.0, 1e12);
    CHECK_REAL(c->rms_eps, "llm.rms_norm_eps", 0.0, 0.1);
    CHECK(c->hidden % c->heads == 0, "llm.hidden_size %d is not a multiple of llm.num_attention_heads %d", c->hidden,
          c->heads);
    CHECK(c->head_dim == c->hidden / c->heads, "head_dim %d, expected llm.hidden_size / llm.num_attention_heads = %d",
          c->head_dim, c->hidden / c->heads);
    CHECK(c->head_dim % 2 == 0, "head_dim %d (llm.hidden_size / llm.num_attention_heads) is odd; RoPE needs it even",
          c->head_dim);
    CHECK(c->hidden % 4 == 0, "llm.hidden_size %d is not a multiple of 4 (the 2-D sin-cos position embeddings)",
          c->hidden);
    CHECK(c->heads % c->kv_heads == 0, "llm.num_attention_heads %d is not a multiple of llm.num_key_value_heads %d",
          c->heads, c->kv_heads);
    CHECK_RANGE(c->qk_norm, "bagel.qk_norm", 0, 1);
    CHECK_RANGE(c->tie_embeddings, "bagel.tie_word_embeddings", 0, 1);
    CHECK_RANGE(c->visual_und, "bagel.visual_und", 0, 1);
    CHECK_RANGE(c->visual_gen, "bagel.visual_gen", 0, 1);
    const struct {
        int id;
        const char *key;
    } tok[4] = {{c->bos_id, "bos"}, {c->eos_id, "eos"}, {c->soi_id, "start_of_image"}, {c->eoi_id, "end_of_image"}};
    for (int i = 0; i < 4; i++) {
        CHECK(tok[i].id >= 0 && tok[i].id < c->vocab, "bagel.tokens.%s: %d, expected 0 .. %d (below llm.vocab_size)",
              tok[i].key, tok[i].id, c->vocab - 1);
        for (int j = 0; j < i; j++)
            CHECK(tok[i].id != tok[j].id, "bagel.tokens.%s and bagel.tokens.%s are both %d", tok[j].key, tok[i].key,
                  tok[i].id);
    }
    if (c->visual_und) {
        CHECK_RANGE(c->vit_hidden, "vit.hidden_size", 1, 65536);
        CHECK_RANGE(c->vit_layers, "vit layers used (vit.num_hidden_layers + 1 + bagel.vit_select_layer)", 1, 1024);
        CHECK_RANGE(c->vit_heads, "vit.num_attention_heads", 1, 1024);
        CHECK_RANGE(c->vit_inter, "vit.intermediate_size", 1, 1 << 20);
        CHECK_RANGE(c->vit_patch, "vit.patch_size", 1, 1024);
        CHECK_RANGE(c->vit_image_size, "vit.image_size", 1, 65536);
        CHECK_REAL(c->vit_eps, "vit.layer_norm_eps", 0.0, 0.1);
        CHECK(c->vit_hidden % c->vit_heads == 0, "vit.hidden_size %d is not a multiple of vit.num_attention_heads %d",
              c->vit_hidden, c->vit_heads);
        CHECK(c->vit_image_size % c->vit_patch == 0, "vit.image_size %d is not a multiple of vit.patch_size %d",
              c->vit_image_size, c->vit_patch);
        int side = c->vit_image_size / c->vit_patch;
        CHECK(c->vit_positions == side * side, "vit positions %d, expected (vit.image_size / vit.patch_size)^2 = %d",
              c->vit_positions, side * side);
        CHECK_RANGE(c->vit_max_side, "bagel.vit_max_num_patch_per_side", 1, 1024);
        CHECK(c->vit_max_side <= side,
              "bagel.vit_max_num_patch_per_side %d is over vit.image_size / vit.patch_size = %d: the position table "
              "has %d rows, not %d",
              c->vit_max_side, side, c->vit_positions, c->vit_max_side * c->vit_max_side);
        CHECK_RANGE(c->vit_max, "bagel.vit_transform max", 1, 65536);
        CHECK(c->vit_min >= c->vit_patch && c->vit_min <= c->vit_max,
              "bagel.vit_transform [%d, %d]: expected vit.patch_size (%d) <= min <= max", c->vit_max, c->vit_min,
              c->vit_patch);
    }
    if (c->visual_gen) {
        CHECK_RANGE(c->ae, "bagel.autoencoder.type", MODEL_AE_FLUX, MODEL_AE_IDENTITY);
        CHECK_RANGE(c->z_channels, "bagel.autoencoder.z_channels", 1, 1024);
        CHECK_RANGE(c->vae_downsample, "bagel.autoencoder.downsample", 1, 64);
        CHECK(isfinite(c->ae_scale) && c->ae_scale > 0 && c->ae_scale < 1e6f,
              "bagel.autoencoder.scale_factor: %g, expected a positive number", (double)c->ae_scale);
        CHECK(isfinite(c->ae_shift) && fabsf(c->ae_shift) < 1e6f,
              "bagel.autoencoder.shift_factor: %g, expected a "
              "finite number",
              (double)c->ae_shift);
        if (c->ae == MODEL_AE_IDENTITY)
            CHECK(c->z_channels == 3 && c->vae_downsample == 1 && c->ae_scale == 1.0f && c->ae_shift == 0.0f,
                  "bagel.autoencoder: the identity autoencoder has z_channels 3, downsample 1, scale_factor 1, "
                  "shift_factor 0 (got %d, %d, %g, %g)",
                  c->z_channels, c->vae_downsample, (double)c->ae_scale, (double)c->ae_shift);
        if (c->ae == MODEL_AE_FLUX) {
            CHECK(c->ae_ch >= 32 && c->ae_ch <= 1024 && c->ae_ch % 32 == 0,
                  "bagel.autoencoder.ch: %d, expected a multiple of 32 (its group norms) from 32 to 1024", c->ae_ch);
            CHECK_RANGE(c->ae_res_blocks, "bagel.autoencoder.num_res_blocks", 1, 6);
        }
        CHECK_RANGE(c->latent_patch, "bagel.latent_patch_size", 1, 64);
        CHECK_RANGE(c->max_latent_size, "bagel.max_latent_size", 1, 1024);
        CHECK_REAL(c->timestep_shift, "bagel.timestep_shift", 0.0, 1000.0);
        CHECK_RANGE(c->vae_max, "bagel.vae_transform max", 1, 65536);
        int stride = c->vae_downsample * c->latent_patch;
        CHECK(c->vae_min >= stride && c->vae_min <= c->vae_max,
              "bagel.vae_transform [%d, %d]: expected downsample x latent_patch_size (%d) <= min <= max", c->vae_max,
              c->vae_min, stride);
    }
    return 0;
}

int model_config_check(const model_config_t *c, char *err, size_t errlen)
{
    return check(c, c->name[0] ? c->name : "config", err, errlen);
}

/* ---- rendering */

typedef struct {
    char *buf;
    size_t cap, n;
} out_t;

static void put(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(out_t *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(o->n < o->cap ? o->buf + o->n : NULL, o->n < o->cap ? o->cap - o->n : 0, fmt, ap);
    va_end(ap);
    if (k > 0)
        o->n += (size_t)k;
}

/* the shortest decimal that reads back as the same float */
static const char *fmtf(float v, char *b, size_t cap)
{
    for (int p = 1; p <= 9; p++) {
        snprintf(b, cap, "%.*g", p, (double)v);
        if (strtof(b, NULL) == v)
            break;
    }
    if (!strpbrk(b, ".eEn")) // keep it a JSON real: 1 -> 1.0
        snprintf(b + strlen(b), cap - strlen(b), ".0");
    return b;
}

static void emit_llm(out_t *o, const model_config_t *c, const char *ind, int file)
{
    char f1[32], f2[32];
    if (file)
        put(o, "%s\"model_type\": \"qwen2\",\n%s\"hidden_act\": \"silu\",\n", ind, ind);
    put(o,
        "%s\"hidden_size\": %d,\n%s\"num_hidden_layers\": %d,\n%s\"num_attention_heads\": %d,\n"
        "%s\"num_key_value_heads\": %d,\n%s\"intermediate_size\": %d,\n%s\"vocab_size\": %d,\n"
        "%s\"rope_theta\": %s,\n%s\"rms_norm_eps\": %s",
        ind, c->hidden, ind, c->layers, ind, c->heads, ind, c->kv_heads, ind, c->inter, ind, c->vocab, ind,
        fmtf(c->rope_theta, f1, sizeof f1), ind, fmtf(c->rms_eps, f2, sizeof f2));
    if (file)
        put(o, ",\n%s\"tie_word_embeddings\": %s", ind, c->tie_embeddings ? "true" : "false");
}

static void emit_vit(out_t *o, const model_config_t *c, const char *ind, int file)
{
    char f1[32];
    if (file)
        put(o, "%s\"model_type\": \"siglip_vision_model\",\n%s\"hidden_act\": \"gelu_pytorch_tanh\",\n", ind, ind);
    put(o,
        "%s\"hidden_size\": %d,\n%s\"intermediate_size\": %d,\n%s\"num_hidden_layers\": %d,\n"
        "%s\"num_attention_heads\": %d,\n%s\"patch_size\": %d,\n%s\"image_size\": %d,\n%s\"layer_norm_eps\": %s,\n"
        "%s\"num_channels\": 3",
        ind, c->vit_hidden, ind, c->vit_inter, ind, c->vit_layers - 1 - c->vit_select_layer, ind, c->vit_heads, ind,
        c->vit_patch, ind, c->vit_image_size, ind, fmtf(c->vit_eps, f1, sizeof f1), ind);
}

static void emit_bagel(out_t *o, const model_config_t *c, const char *ind)
{
    char f1[32], f2[32], f3[32];
    put(o,
        "%s\"visual_und\": %s,\n%s\"visual_gen\": %s,\n%s\"vit_select_layer\": %d,\n"
        "%s\"vit_max_num_patch_per_side\": %d,\n%s\"latent_patch_size\": %d,\n%s\"max_latent_size\": %d,\n"
        "%s\"timestep_shift\": %s,\n%s\"qk_norm\": %s,\n%s\"tie_word_embeddings\": %s,\n",
        ind, c->visual_und ? "true" : "false", ind, c->visual_gen ? "true" : "false", ind, c->vit_select_layer, ind,
        c->vit_max_side, ind, c->latent_patch, ind, c->max_latent_size, ind, fmtf(c->timestep_shift, f1, sizeof f1),
        ind, c->qk_norm ? "true" : "false", ind, c->tie_embeddings ? "true" : "false");
    if (c->ae == MODEL_AE_IDENTITY)
        put(o, "%s\"autoencoder\": {\"type\": \"identity\"},\n", ind);
    else
        put(o,
            "%s\"autoencoder\": {\"type\": \"flux\", \"z_channels\": %d, \"downsample\": %d, \"scale_factor\": %s, "
            "\"shift_factor\": %s, \"ch\": %d, \"num_res_blocks\": %d},\n",
            ind, c->z_channels, c->vae_downsample, fmtf(c->ae_scale, f2, sizeof f2), fmtf(c->ae_shift, f3, sizeof f3),
            c->ae_ch, c->ae_res_blocks);
    put(o,
        "%s\"vae_transform\": [%d, %d],\n%s\"vit_transform\": [%d, %d],\n"
        "%s\"tokens\": {\"bos\": %d, \"eos\": %d, \"start_of_image\": %d, \"end_of_image\": %d}",
        ind, c->vae_max, c->vae_min, ind, c->vit_max, c->vit_min, ind, c->bos_id, c->eos_id, c->soi_id, c->eoi_id);
}

size_t model_config_json(const model_config_t *c, char *buf, size_t cap)
{
    out_t o = {buf, cap, 0};
    if (cap)
        buf[0] = 0;
    put(&o, "{\n  \"name\": \"%s\",\n  \"llm\": {\n", c->name);
    emit_llm(&o, c, "    ", 0);
    if (c->visual_und) {
        put(&o, "\n  },\n  \"vit\": {\n");
        emit_vit(&o, c, "    ", 0);
    }
    put(&o, "\n  },\n  \"bagel\": {\n");
    emit_bagel(&o, c, "    ");
    put(&o, "\n  }\n}\n");
    return o.n;
}

size_t model_config_summary(const model_config_t *c, char *buf, size_t cap)
{
    out_t o = {buf, cap, 0};
    if (cap)
        buf[0] = 0;
    put(&o, "model=%s H=%d L=%d nh=%d nkv=%d hd=%d I=%d V=%d", c->name, c->hidden, c->layers, c->heads, c->kv_heads,
        c->head_dim, c->inter, c->vocab);
    if (c->visual_und)
        put(&o, " vit=%dx%d vit_heads=%d vit_patch=%d vit_side=%d", c->vit_hidden, c->vit_layers, c->vit_heads,
            c->vit_patch, c->vit_max_side);
    if (c->visual_gen)
        put(&o, " ae=%s z=%d down=%d latent_patch=%d latent_side=%d", c->ae == MODEL_AE_IDENTITY ? "identity" : "flux",
            c->z_channels, c->vae_downsample, c->latent_patch, c->max_latent_size);
    put(&o, " qk_norm=%d tie=%d", c->qk_norm, c->tie_embeddings);
    return o.n;
}

/* ---- files */

int model_config_save_dir(const model_config_t *c, const char *dir, char *err, size_t errlen)
{
    if (model_config_check(c, err, errlen))
        return -1;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        seterr(err, errlen, "%s: cannot create: %s", dir, strerror(errno));
        return -1;
    }
    char text[4096], path[PATH_MAX];
    out_t o = {text, sizeof text, 0};
    put(&o, "{\n");
    emit_llm(&o, c, "  ", 1);
    put(&o, "\n}\n");
    snprintf(path, sizeof path, "%s/llm_config.json", dir);
    // durable: each file and its name in dir are on disk before the next, as the checkpoint's weights are
    if (fs_write_whole(path, text, strlen(text), 0644, true)) {
        seterr(err, errlen, "%s: cannot write: %s", path, strerror(errno));
        return -1;
    }
    if (c->visual_und) {
        o.n = 0;
        put(&o, "{\n");
        emit_vit(&o, c, "  ", 1);
        put(&o, "\n}\n");
        snprintf(path, sizeof path, "%s/vit_config.json", dir);
        if (fs_write_whole(path, text, strlen(text), 0644, true)) {
            seterr(err, errlen, "%s: cannot write: %s", path, strerror(errno));
            return -1;
        }
    }
    o.n = 0;
    put(&o, "{\n  \"name\": \"%s\",\n  \"bagel\": {\n", c->name);
    emit_bagel(&o, c, "    ");
    put(&o, "\n  }\n}\n");
    snprintf(path, sizeof path, "%s/bagelpipe.json", dir);
    if (fs_write_whole(path, text, strlen(text), 0644, true)) {
        seterr(err, errlen, "%s: cannot write: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* A checkpoint directory: llm_config.json, vit_config.json (unless
 * visual_und is off), bagelpipe.json (optional: the "bagel" section and the
 * name; absent, the released model's settings). */
static int load_dir(model_config_t *cfg, const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX], label[PATH_MAX];
    struct stat sb;
    json_t *root = NULL, *bp = NULL;
    snprintf(path, sizeof path, "%s/llm_config.json", dir);
    if (stat(path, &sb) != 0) {
        seterr(err, errlen, "%s: no llm_config.json: not a checkpoint directory", dir);
        return -1;
    }
    snprintf(label, sizeof label, "%s/bagelpipe.json", dir);
    int rc = -1;
    root = json_object();
    if (stat(label, &sb) == 0) {
        if (!(bp = load_json_file(label, err, errlen)))
            goto out;
        const char *k;
        json_t *v;
        json_object_foreach(bp, k, v)
        {
            if (strcmp(k, "llm") == 0 || strcmp(k, "vit") == 0 || strcmp(k, "llm_config") == 0 ||
                strcmp(k, "vit_config") == 0) {
                seterr(err, errlen, "%s: %s: not allowed here (llm_config.json and vit_config.json hold it)", label, k);
                goto out;
            }
            json_object_set(root, k, v);
        }
    } else {
        snprintf(label, sizeof label, "%s", dir);
    }
    json_object_set_new(root, "llm_config", json_string("llm_config.json"));
    snprintf(path, sizeof path, "%s/vit_config.json", dir);
    if (stat(path, &sb) == 0)
        json_object_set_new(root, "vit_config", json_string("vit_config.json"));
    char dcopy[PATH_MAX];
    snprintf(dcopy, sizeof dcopy, "%s", dir);
    size_t l = strlen(dcopy);
    while (l > 1 && dcopy[l - 1] == '/')
        dcopy[--l] = 0;
    rc = parse_root(cfg, root, label, dir, basename(dcopy), err, errlen);
out:
    json_decref(bp);
    json_decref(root);
    return rc;
}

static int load_file(model_config_t *cfg, const char *path, char *err, size_t errlen)
{
    json_t *root = load_json_file(path, err, errlen);
    if (!root)
        return -1;
    char dcopy[PATH_MAX], bcopy[PATH_MAX];
    snprintf(dcopy, sizeof dcopy, "%s", path);
    snprintf(bcopy, sizeof bcopy, "%s", path);
    char *base = basename(bcopy), *dot = strrchr(base, '.');
    if (dot && strcmp(dot, ".json") == 0)
        *dot = 0;
    int rc = parse_root(cfg, root, path, dirname(dcopy), base, err, errlen);
    json_decref(root);
    return rc;
}

int model_config_load(model_config_t *cfg, const char *path, const char *configs_dir, char *err, size_t errlen)
{
    struct stat sb;
    if (!path || !*path) {
        seterr(err, errlen, "model config: empty path");
        return -1;
    }
    if (stat(path, &sb) == 0)
        return S_ISDIR(sb.st_mode) ? load_dir(cfg, path, err, errlen) : load_file(cfg, path, err, errlen);
    if (!strchr(path, '/') && strlen(path) < 128) {
        const char *d = configs_dir ? configs_dir : "models/configs";
        char full[PATH_MAX];
        snprintf(full, sizeof full, "%s/%s.json", d, path);
        if (stat(full, &sb) == 0)
            return load_file(cfg, full, err, errlen);
        seterr(err, errlen, "%s: no such config file, checkpoint directory, or shipped config (%s)", path, full);
        return -1;
    }
    seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return -1;
}
