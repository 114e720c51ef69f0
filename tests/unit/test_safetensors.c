/* test_safetensors.c — the safetensors reader and writer: golden files written
 * by HuggingFace safetensors 0.8.0 and torch 2.11 (tests/unit/data/
 * make_safetensors.py says how), byte-identical rewrites, round trips, the
 * sharded reader, and every class of lying or truncated header as a one-line
 * error naming the file and the tensor.
 *
 * Bad files are built here by hand (a header string and raw bytes), not with
 * the writer under test. Run from the repository root (tests/run.sh does). */
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
#include "../../models/safetensors.h"

#define DATA "tests/unit/data/safetensors"

static char tmpdir[256];

static int setup_tmp(void **state)
{
    (void)state;
    return test_tmpdir_make(tmpdir, sizeof tmpdir, "safetensors");
}

static int teardown_tmp(void **state)
{
    (void)state;
    return test_tmpdir_remove(tmpdir);
}

static char *tmp_path(const char *name)
{
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", tmpdir, name);
    return p[k];
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void spit(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

/* A file image: length prefix, the header as given (unpadded), ndata bytes
 * of data (0, 1, 2 ...). */
static unsigned char *build(const char *header, size_t ndata, size_t *len)
{
    size_t hn = strlen(header);
    *len = 8 + hn + ndata;
    unsigned char *b = malloc(*len + 1);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)hn >> (8 * i));
    memcpy(b + 8, header, hn);
    for (size_t i = 0; i < ndata; i++)
        b[8 + hn + i] = (unsigned char)i;
    return b;
}

/* Opening header+data must fail with an error containing `want`. */
static void expect_bad(const char *header, size_t ndata, const char *want)
{
    size_t len;
    unsigned char *b = build(header, ndata, &len);
    char err[512] = "";
    st_file_t *f = st_open_mem(b, len, "ckpt/model.safetensors", err, sizeof err);
    if (f || !strstr(err, want) || strchr(err, '\n') || strncmp(err, "ckpt/model.safetensors: ", 24) != 0)
        fail_msg("header %s\n  want error containing: %s\n  got: %s", header, want, f ? "(opened)" : err);
    st_close(&f);
    free(b);
}

/* ---- golden files from the reference implementation */

static void test_golden_reads(void **state)
{
    (void)state;
    char err[512];
    st_file_t *f = st_open(DATA "/golden.safetensors", err, sizeof err);
    if (!f)
        fail_msg("%s", err);
    assert_int_equal(st_count(f), 13);
    assert_int_equal(st_metadata_count(f), 2);
    assert_string_equal(st_metadata_get(f, "format"), "pt");
    assert_string_equal(st_metadata_get(f, "note"), "golden");
    assert_null(st_metadata_get(f, "absent"));
    assert_null(st_find(f, "absent"));
    assert_null(st_find(f, "__metadata__"));
    assert_null(st_get(f, 13));
    assert_null(st_get(f, -1));
    // header order is the writer's: I64 first, U8 last
    assert_string_equal(st_get(f, 0)->name, "i64");
    assert_string_equal(st_get(f, 12)->name, "u8");

    const st_tensor_t *src = st_find(f, "src");
    assert_non_null(src);
    assert_int_equal(src->dtype, ST_F32);
    assert_int_equal(src->ndim, 1);
    size_t n = (size_t)src->numel;
    float *a = malloc(n * 4), *b = malloc(n * 4);
    const char *pairs[][2] = {{"bf16", "bf16_f32"}, {"f16", "f16_f32"}};
    for (int p = 0; p < 2; p++) {
        const st_tensor_t *h = st_find(f, pairs[p][0]), *w = st_find(f, pairs[p][1]);
        assert_non_null(h);
        assert_non_null(w);
        assert_int_equal(h->dtype, p == 0 ? ST_BF16 : ST_F16);
        assert_int_equal(h->nbytes, n * 2);
        assert_int_equal(st_read_f32(h, a, n, err, sizeof err), 0);
        assert_int_equal(st_read_f32(w, b, n, err, sizeof err), 0);
        for (size_t i = 0; i < n; i++)
            if (memcmp(&a[i], &b[i], 4) != 0)
                fail_msg("%s[%zu]: %a, torch widened to %a", pairs[p][0], i, a[i], b[i]);
    }
    const st_tensor_t *f64 = st_find(f, "f64"), *f64w = st_find(f, "f64_f32");
    assert_int_equal(f64->dtype, ST_F64);
    assert_int_equal(st_read_f32(f64, a, 6, err, sizeof err), 0);
    assert_int_equal(st_read_f32(f64w, b, 6, err, sizeof err), 0);
    assert_memory_equal(a, b, 24);

    const st_tensor_t *i64 = st_find(f, "i64");
    assert_int_equal(i64->ndim, 2);
    assert_int_equal(i64->shape[0], 2);
    assert_int_equal(i64->shape[1], 3);
    int64_t iv[6];
    memcpy(iv, i64->data, 48);
    assert_int_equal(iv[3], (int64_t)1 << 40);
    assert_int_equal(iv[4], -((int64_t)1 << 40));
    const st_tensor_t *u8 = st_find(f, "u8");
    assert_int_equal(u8->numel, 5);
    assert_memory_equal(u8->data, "\x00\x01\xfe\xff\x80", 5);
    const st_tensor_t *i32 = st_find(f, "i32");
    int32_t i3[4];
    memcpy(i3, i32->data, 16);
    assert_int_equal(i3[3], 2147483647);
    assert_int_equal(i3[0], -5);

    const st_tensor_t *sc = st_find(f, "scalar"), *em = st_find(f, "empty");
    assert_int_equal(sc->ndim, 0);
    assert_int_equal(sc->numel, 1);
    assert_int_equal(st_read_f32(sc, a, 1, err, sizeof err), 0);
    assert_true(a[0] == 2.5f);
    assert_int_equal(em->ndim, 2);
    assert_int_equal(em->numel, 0);
    assert_int_equal(em->nbytes, 0);
    assert_int_equal(st_read_f32(em, a, 0, err, sizeof err), 0);

    // wrong sizes and dtypes are errors, not conversions
    assert_int_equal(st_read_f32(src, a, n - 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "tensor \"src\": has 135 elements, the destination holds 134"));
    assert_int_equal(st_read_f32(i64, a, 6, err, sizeof err), -1);
    assert_non_null(strstr(err, "dtype I64, expected F32, BF16, F16 or F64"));
    int64_t want[3] = {2, 3, 4};
    const st_tensor_t *w3 = st_find(f, "w.weight");
    assert_int_equal(st_expect(w3, ST_F32, 3, want, err, sizeof err), 0);
    assert_int_equal(st_expect(w3, -1, 3, want, err, sizeof err), 0);
    int64_t other[2] = {3, 8};
    assert_int_equal(st_expect(w3, ST_BF16, 2, other, err, sizeof err), -1);
    assert_string_equal(err, DATA "/golden.safetensors: tensor \"w.weight\": shape [2,3,4] F32, expected [3,8] BF16");
    free(a);
    free(b);
    st_close(&f);
    assert_null(f);
    st_close(&f); // twice is fine
}

/* The writer's f32 -> BF16/F16 rounding gives torch's bytes. */
static void test_golden_conversion(void **state)
{
    (void)state;
    char err[512];
    st_file_t *f = st_open(DATA "/golden.safetensors", err, sizeof err);
    assert_non_null(f);
    const st_tensor_t *src = st_find(f, "src");
    float *x = malloc(src->nbytes);
    memcpy(x, src->data, src->nbytes);
    st_writer_t *w = st_writer_new();
    assert_int_equal(st_writer_add_f32(w, "bf16", ST_BF16, src->ndim, src->shape, x, err, sizeof err), 0);
    assert_int_equal(st_writer_add_f32(w, "f16", ST_F16, src->ndim, src->shape, x, err, sizeof err), 0);
    assert_int_equal(st_writer_add_f32(w, "f32", ST_F32, src->ndim, src->shape, x, err, sizeof err), 0);
    assert_int_equal(st_writer_write(w, tmp_path("conv.safetensors"), err, sizeof err), 0);
    st_file_t *g = st_open(tmp_path("conv.safetensors"), err, sizeof err);
    if (!g)
        fail_msg("%s", err);
    const char *names[] = {"bf16", "f16"};
    for (int k = 0; k < 2; k++) {
        const st_tensor_t *mine = st_find(g, names[k]), *torch = st_find(f, names[k]);
        assert_int_equal(mine->nbytes, torch->nbytes);
        const uint16_t *m = mine->data, *t = torch->data;
        for (int64_t i = 0; i < src->numel; i++) {
            // NaN: torch's vectorized path writes 0xffff, its scalar one 0x7fc0;
            // we keep the sign and quiet it (ipc/half.h). Any NaN is right.
            int exp = k == 0 ? 0x7f80 : 0x7c00;
            if (x[i] != x[i] && (m[i] & exp) == exp && (m[i] & ~(exp | 0x8000)) && (t[i] & exp) == exp)
                continue;
            if (m[i] != t[i])
                fail_msg("%s[%lld] of %a: 0x%04x, torch 0x%04x", names[k], (long long)i, x[i], m[i], t[i]);
        }
    }
    assert_memory_equal(st_find(g, "f32")->data, src->data, src->nbytes);
    st_close(&g);
    st_writer_destroy(&w);
    assert_null(w);
    free(x);
    st_close(&f);
}

/* Every tensor of `in` into a new writer, metadata in the file's order. */
static st_writer_t *copy_of(const st_file_t *in)
{
    char err[512];
    st_writer_t *w = st_writer_new();
    for (int i = 0; i < st_metadata_count(in); i++)
        assert_int_equal(st_writer_set_metadata(w, st_metadata_key(in, i), st_metadata_value(in, i), err, sizeof err),
                         0);
    for (int i = 0; i < st_count(in); i++) {
        const st_tensor_t *t = st_get(in, i);
        if (st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, err, sizeof err) != 0)
            fail_msg("%s", err);
    }
    return w;
}

/* Files written by the reference implementation, read and written again,
 * come out byte for byte the same; and again from our own output. */
static void test_rewrite_identical(void **state)
{
    (void)state;
    const char *files[] = {DATA "/golden.safetensors", DATA "/model_bf16.safetensors",
                           DATA "/sharded/model-00001-of-00002.safetensors",
                           DATA "/sharded/model-00002-of-00002.safetensors"};
    for (size_t k = 0; k < sizeof files / sizeof *files; k++) {
        char err[512];
        st_file_t *f = st_open(files[k], err, sizeof err);
        if (!f)
            fail_msg("%s", err);
        const char *out = tmp_path("rewrite.safetensors"), *out2 = tmp_path("rewrite2.safetensors");
        st_writer_t *w = copy_of(f);
        assert_int_equal(st_writer_write(w, out, err, sizeof err), 0);
        size_t la, lb;
        unsigned char *a = slurp(files[k], &la), *b = slurp(out, &lb);
        if (la != lb || memcmp(a, b, la) != 0)
            fail_msg("%s: rewritten file differs (%zu vs %zu bytes)", files[k], la, lb);
        // again, from the copy
        st_file_t *g = st_open(out, err, sizeof err);
        assert_non_null(g);
        st_writer_t *w2 = copy_of(g);
        assert_int_equal(st_writer_write(w2, out2, err, sizeof err), 0);
        free(b);
        b = slurp(out2, &lb);
        assert_int_equal(la, lb);
        assert_memory_equal(a, b, la);
        assert_int_equal(access(tmp_path("rewrite.safetensors.tmp"), F_OK), -1); // no temp file left
        free(a);
        free(b);
        st_writer_destroy(&w);
        st_writer_destroy(&w2);
        st_close(&g);
        st_close(&f);
    }
}

static void test_roundtrip(void **state)
{
    (void)state;
    char err[512];
    float f32[6] = {1.5f, -2.25f, 0.0f, 1e-30f, 3e38f, -0.0f};
    double f64[3] = {1.0 / 3, -1e300, 2.5};
    int64_t i64[2] = {INT64_MIN, INT64_MAX};
    int32_t i32[3] = {-1, 0, INT32_MAX};
    uint8_t u8[4] = {0, 7, 200, 255};
    float scalar = 42.0f;
    int64_t s23[2] = {2, 3}, s3[1] = {3}, s2[1] = {2}, s4[1] = {4}, s0[3] = {4, 0, 5};
    st_writer_t *w = st_writer_new();
    assert_int_equal(st_writer_add(w, "a.f32", ST_F32, 2, s23, f32, err, sizeof err), 0);
    assert_int_equal(st_writer_add_f32(w, "a.bf16", ST_BF16, 2, s23, f32, err, sizeof err), 0);
    assert_int_equal(st_writer_add(w, "z.f64", ST_F64, 1, s3, f64, err, sizeof err), 0);
    assert_int_equal(st_writer_add(w, "i64", ST_I64, 1, s2, i64, err, sizeof err), 0);
    assert_int_equal(st_writer_add(w, "i32", ST_I32, 1, s3, i32, err, sizeof err), 0);
    assert_int_equal(st_writer_add(w, "u8", ST_U8, 1, s4, u8, err, sizeof err), 0);
    assert_int_equal(st_writer_add(w, "scalar", ST_F32, 0, NULL, &scalar, err, sizeof err), 0);
    assert_int_equal(st_writer_add(w, "empty", ST_BF16, 3, s0, NULL, err, sizeof err), 0);
    assert_int_equal(st_writer_add(w, "odd \"name\"\n\x01 \xc3\xa9\xe2\x82\xac/x", ST_U8, 1, s2, u8, err, sizeof err),
                     0);
    assert_int_equal(st_writer_set_metadata(w, "format", "pt", err, sizeof err), 0);
    assert_int_equal(st_writer_set_metadata(w, "step", "1", err, sizeof err), 0);
    assert_int_equal(st_writer_set_metadata(w, "format", "bagelpipe \"1\"\t\xc3\xa9", err, sizeof err), 0);
    const char *path = tmp_path("rt.safetensors");
    assert_int_equal(st_writer_write(w, path, err, sizeof err), 0);

    size_t len;
    unsigned char *raw = slurp(path, &len);
    uint64_t hn = 0;
    for (int i = 7; i >= 0; i--)
        hn = hn << 8 | raw[i];
    assert_int_equal(hn % 8, 0);
    assert_int_equal(raw[8 + hn - 1] == ' ' || raw[8 + hn - 1] == '}', 1);
    assert_memory_equal(raw + 8, "{\"__metadata__\":{\"format\":\"bagelpipe \\\"1\\\"\\t\xc3\xa9\",\"step\":\"1\"},",
                        50);
    free(raw);

    st_file_t *f = st_open(path, err, sizeof err);
    if (!f)
        fail_msg("%s", err);
    assert_int_equal(st_count(f), 9);
    assert_string_equal(st_metadata_get(f, "format"), "bagelpipe \"1\"\t\xc3\xa9");
    assert_string_equal(st_metadata_key(f, 1), "step");
    // dtype order, descending, then names: F64 I64 first, U8 last
    assert_string_equal(st_get(f, 0)->name, "i64");
    assert_string_equal(st_get(f, 1)->name, "z.f64");
    for (int i = 0; i < st_count(f); i++)
        assert_int_equal((uintptr_t)st_get(f, i)->data % st_dtype_size(st_get(f, i)->dtype), 0);
    assert_memory_equal(st_find(f, "a.f32")->data, f32, sizeof f32);
    assert_memory_equal(st_find(f, "z.f64")->data, f64, sizeof f64);
    assert_memory_equal(st_find(f, "i64")->data, i64, sizeof i64);
    assert_memory_equal(st_find(f, "i32")->data, i32, sizeof i32);
    assert_memory_equal(st_find(f, "u8")->data, u8, sizeof u8);
    assert_memory_equal(st_find(f, "odd \"name\"\n\x01 \xc3\xa9\xe2\x82\xac/x")->data, u8, 2);
    float back[6];
    assert_int_equal(st_read_f32(st_find(f, "a.bf16"), back, 6, err, sizeof err), 0);
    assert_true(back[0] == 1.5f && back[1] == -2.25f && back[2] == 0.0f);
    assert_true(back[3] > 0.99e-30f && back[3] < 1.01e-30f);
    const st_tensor_t *e = st_find(f, "empty");
    assert_int_equal(e->ndim, 3);
    assert_int_equal(e->shape[2], 5);
    assert_int_equal(e->nbytes, 0);
    assert_int_equal(st_find(f, "scalar")->ndim, 0);
    st_close(&f);
    st_writer_destroy(&w);

    // an empty writer writes a valid, empty file
    w = st_writer_new();
    assert_int_equal(st_writer_write(w, path, err, sizeof err), 0);
    raw = slurp(path, &len);
    assert_int_equal(len, 16);
    assert_memory_equal(raw, "\x08\0\0\0\0\0\0\0{}      ", 16);
    free(raw);
    f = st_open(path, err, sizeof err);
    assert_non_null(f);
    assert_int_equal(st_count(f), 0);
    st_close(&f);
    st_writer_destroy(&w);
}

/* ~1,500 tensors, as in a 7B checkpoint: every one found by name. */
static void test_many_tensors(void **state)
{
    (void)state;
    char err[512];
    enum { N = 2000 };
    static float vals[N];
    char name[64];
    st_writer_t *w = st_writer_new();
    for (int i = 0; i < N; i++) {
        vals[i] = (float)i;
        int64_t s[1] = {1};
        snprintf(name, sizeof name, "language_model.model.layers.%d.mlp.up_proj.weight", i);
        assert_int_equal(st_writer_add(w, name, ST_F32, 1, s, &vals[i], err, sizeof err), 0);
    }
    assert_int_equal(st_writer_write(w, tmp_path("many.safetensors"), err, sizeof err), 0);
    st_writer_destroy(&w);
    st_file_t *f = st_open(tmp_path("many.safetensors"), err, sizeof err);
    assert_non_null(f);
    assert_int_equal(st_count(f), N);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "language_model.model.layers.%d.mlp.up_proj.weight", i);
        const st_tensor_t *t = st_find(f, name);
        assert_non_null(t);
        float v;
        memcpy(&v, t->data, 4);
        assert_true(v == (float)i);
    }
    assert_null(st_find(f, "language_model.model.layers.2000.mlp.up_proj.weight"));
    st_close(&f);
}

static void test_sharded(void **state)
{
    (void)state;
    char err[512];
    st_file_t *one = st_open(DATA "/model_bf16.safetensors", err, sizeof err);
    assert_non_null(one);
    const char *paths[] = {DATA "/sharded", DATA "/sharded/model.safetensors.index.json"};
    for (int k = 0; k < 2; k++) {
        st_set_t *s = st_set_open(paths[k], err, sizeof err);
        if (!s)
            fail_msg("%s", err);
        assert_int_equal(st_set_nfiles(s), 2);
        assert_int_equal(st_set_count(s), st_count(one));
        for (int i = 0; i < st_count(one); i++) {
            const st_tensor_t *a = st_get(one, i), *b = st_set_find(s, a->name);
            assert_non_null(b);
            assert_int_equal(a->nbytes, b->nbytes);
            assert_memory_equal(a->data, b->data, a->nbytes);
        }
        assert_non_null(strstr(st_set_find(s, "latent_pos_embed.pos_embed")->file, "model-00002-of-00002"));
        assert_null(st_set_find(s, "nope"));
        assert_non_null(st_set_get(s, 0));
        assert_null(st_set_get(s, st_set_count(s)));
        assert_string_equal(st_metadata_get(st_set_file(s, 0), "format"), "pt");
        st_set_close(&s);
        assert_null(s);
    }
    // a single file, and a directory holding model.safetensors
    st_set_t *s = st_set_open(DATA "/model_bf16.safetensors", err, sizeof err);
    assert_non_null(s);
    assert_int_equal(st_set_count(s), 14);
    st_set_close(&s);
    mkdir(tmp_path("ckpt"), 0755);
    st_writer_t *w = copy_of(one);
    assert_int_equal(st_writer_write(w, tmp_path("ckpt/model.safetensors"), err, sizeof err), 0);
    st_writer_destroy(&w);
    s = st_set_open(tmp_path("ckpt"), err, sizeof err);
    assert_non_null(s);
    assert_int_equal(st_set_count(s), 14);
    st_set_close(&s);
    assert_null(st_set_open(tmp_path("nothing-here"), err, sizeof err));
    assert_non_null(strstr(err, "cannot open"));
    mkdir(tmp_path("emptydir"), 0755);
    assert_null(st_set_open(tmp_path("emptydir"), err, sizeof err));
    assert_non_null(strstr(err, "holds neither model.safetensors.index.json nor model.safetensors"));
    st_close(&one);
}

static void bad_index(const char *json, const char *want)
{
    char err[512];
    mkdir(tmp_path("idx"), 0755);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cp " DATA "/sharded/*.safetensors '%s'", tmp_path("idx"));
    assert_int_equal(system(cmd), 0);
    spit(tmp_path("idx/model.safetensors.index.json"), json, strlen(json));
    st_set_t *s = st_set_open(tmp_path("idx"), err, sizeof err);
    if (s || !strstr(err, want) || strchr(err, '\n'))
        fail_msg("index %s\n  want: %s\n  got: %s", json, want, s ? "(opened)" : err);
}

static void test_sharded_bad(void **state)
{
    (void)state;
    size_t n;
    unsigned char *good = slurp(DATA "/sharded/model.safetensors.index.json", &n);
    good[n] = 0;
    bad_index("[]", "weight_map is missing");
    bad_index("{\"weight_map\": 3}", "weight_map is an integer");
    bad_index("{\"weight_map\": {", "invalid JSON");
    bad_index("{\"weight_map\": {\"language_model.lm_head.weight\": \"../model-00001-of-00002.safetensors\"}}",
              "expected a file name beside the index");
    bad_index("{\"weight_map\": {\"language_model.lm_head.weight\": \"/etc/passwd\"}}",
              "expected a file name beside the index");
    bad_index("{\"weight_map\": {\"language_model.lm_head.weight\": \"absent.safetensors\"}}",
              "absent.safetensors: cannot open");
    bad_index("{\"weight_map\": {\"x\": \"model-00001-of-00002.safetensors\"}}", "weight_map lists tensor \"x\" in");
    // a shard's tensors not all listed
    bad_index("{\"weight_map\": {\"language_model.lm_head.weight\": \"model-00001-of-00002.safetensors\"}}",
              "is not listed under this file in");
    // listed under the other shard
    char *moved = strdup((char *)good);
    char *p = strstr(moved, "\"latent_pos_embed.pos_embed\": \"model-00002");
    assert_non_null(p);
    p[strlen("\"latent_pos_embed.pos_embed\": \"model-0000")] = '1';
    bad_index(moved, "weight_map lists tensor \"latent_pos_embed.pos_embed\" in");
    free(moved);
    free(good);
}

/* ---- lying and truncated headers */

#define T(name, dtype, shape, b, e)                                                                                    \
    "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

static void test_bad_headers(void **state)
{
    (void)state;
    // the example of the error format
    expect_bad(
        "{" T("x.weight", "F32", "[2,3]", 0, 12) "}", 12,
        "ckpt/model.safetensors: tensor \"x.weight\": data_offsets [0, 12] hold 12 bytes, shape [2,3] F32 needs 24");
    expect_bad("{" T("x", "F32", "[2]", 0, 8) "}", 4,
               "tensor \"x\": data_offsets [0, 8] run past the end of the data "
               "region (4 bytes)");
    expect_bad("{" T("x", "F32", "[2]", 8, 0) "}", 8, "end before they begin");
    expect_bad("{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[2]", 4, 12) "}", 12,
               "tensor \"b\": data_offsets [4, 12] overlap tensor \"a\" [0, 8]");
    expect_bad("{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[2]", 0, 8) "}", 8, "overlap tensor");
    expect_bad("{" T("a", "F32", "[1]", 0, 4) "," T("b", "F32", "[1]", 8, 12) "}", 12,
               "tensor \"b\": data_offsets [8, 12] leave a gap: bytes [4, 8) of the data region belong to no tensor");
    expect_bad("{" T("a", "F32", "[1]", 0, 4) "}", 6,
               "data region is 6 bytes but the tensors end at 4 (2 bytes belong "
               "to no tensor)");
    expect_bad("{" T("a", "F17", "[1]", 0, 4) "}", 4, "tensor \"a\": unknown dtype \"F17\"");
    expect_bad("{" T("a", "F4", "[2]", 0, 1) "}", 1, "dtype F4 (sub-byte) is not supported");
    expect_bad("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype is missing");
    expect_bad("{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype is an integer");
    expect_bad("{" T("a", "F32", "[1]", 0, 4) "," T("a", "F32", "[1]", 4, 8) "}", 8, "duplicate object key");
    expect_bad("{" T("a", "F32", "[4294967296,4294967296,16]", 0, 4) "}", 4,
               "shape [4294967296,4294967296,16] F32 "
               "overflows 64 bits");
    expect_bad("{" T("a", "I64", "[2305843009213693952]", 0, 4) "}", 4, "overflows 64 bits");
    expect_bad("{" T("a", "F32", "[-1]", 0, 4) "}", 4, "shape[0] is negative, expected a non-negative integer");
    expect_bad("{" T("a", "F32", "[2.0]", 0, 8) "}", 8, "shape[0] is a real number");
    expect_bad("{" T("a", "F32", "[1,1,1,1,1,1,1,1,1]", 0, 4) "}", 4, "shape has 9 dimensions, at most 8");
    expect_bad("{" T("a", "F32", "3", 0, 4) "}", 4, "shape is an integer");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
               "data_offsets is an array of another length");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]}}", 4,
               "data_offsets are not two non-negative integers");
    expect_bad("{\"a\":[1,2]}", 0, "tensor \"a\": entry is an array");
    expect_bad("{\"__metadata__\":{\"k\":1}}", 0, "__metadata__ \"k\" is an integer, expected a string");
    expect_bad("{\"__metadata__\":[]}", 0, "__metadata__ is an array");
    expect_bad("{\"a\xff\":{}}", 0, "invalid JSON");
    expect_bad("{\"a\\u0000b\":{}}", 0, "invalid JSON");
    expect_bad("[1,2]", 0, "header does not start with '{'");
    expect_bad("{", 0, "invalid JSON");
    expect_bad("{}x", 0, "invalid JSON");
    expect_bad("", 0, "header does not start with '{'");
    // names with control bytes print on one line
    expect_bad("{\"a\\nb\\\"c\":{\"dtype\":\"F99\",\"shape\":[],\"data_offsets\":[0,4]}}", 4,
               "tensor \"a\\x0ab\\x22c\": unknown dtype");
}

static void test_bad_lengths(void **state)
{
    (void)state;
    char err[512];
    st_file_t *f = st_open_mem("\x02\0\0\0", 4, "short.safetensors", err, sizeof err);
    assert_null(f);
    assert_string_equal(
        err, "short.safetensors: file is 4 bytes, too short for the 8-byte header length (not a safetensors file?)");
    unsigned char b[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    assert_null(st_open_mem(b, 10, "x", err, sizeof err));
    assert_non_null(strstr(err, "x: header length 18446744073709551615 is over the 104857600-byte limit"));
    b[0] = 200, memset(b + 1, 0, 7);
    assert_null(st_open_mem(b, 16, "x", err, sizeof err));
    assert_string_equal(err, "x: header length 200 runs past the end of the file (16 bytes): truncated?");

    // a real file cut short: inside the data region, then inside the header
    size_t len;
    unsigned char *g = slurp(DATA "/model_bf16.safetensors", &len);
    spit(tmp_path("cut.safetensors"), g, len - 100);
    assert_null(st_open(tmp_path("cut.safetensors"), err, sizeof err));
    assert_non_null(strstr(err, "cut.safetensors: tensor \"latent_pos_embed.pos_embed\": data_offsets [1744, 2000] run "
                                "past the end of the data region (1900 bytes)"));
    spit(tmp_path("cut.safetensors"), g, 500);
    assert_null(st_open(tmp_path("cut.safetensors"), err, sizeof err));
    assert_non_null(strstr(err, "header length 1472 runs past the end of the file (500 bytes)"));
    spit(tmp_path("cut.safetensors"), g, 0);
    assert_null(st_open(tmp_path("cut.safetensors"), err, sizeof err));
    assert_non_null(strstr(err, "file is 0 bytes"));
    free(g);
    assert_null(st_open(tmp_path("absent.safetensors"), err, sizeof err));
    assert_non_null(strstr(err, "absent.safetensors: cannot open: No such file or directory"));
    assert_null(st_open(tmpdir, err, sizeof err));
    assert_non_null(strstr(err, "is a directory"));
    // a tiny err buffer is filled, not overrun
    char small[8];
    assert_null(st_open_mem("", 0, "a-long-label", small, sizeof small));
    assert_string_equal(small, "a-long-");
}

static void test_writer_errors(void **state)
{
    (void)state;
    char err[512];
    float x[2] = {1, 2};
    int64_t s[1] = {2}, neg[1] = {-2};
    st_writer_t *w = st_writer_new();
    assert_int_equal(st_writer_add(w, "a", ST_F32, 1, s, x, err, sizeof err), 0);
    assert_int_equal(st_writer_add(w, "a", ST_F32, 1, s, x, err, sizeof err), -1);
    assert_string_equal(err, "tensor \"a\" added twice");
    assert_int_equal(st_writer_add(w, "b\xff", ST_F32, 1, s, x, err, sizeof err), -1);
    assert_non_null(strstr(err, "valid UTF-8"));
    assert_int_equal(st_writer_add(w, "", ST_F32, 1, s, x, err, sizeof err), -1);
    assert_int_equal(st_writer_add(w, "__metadata__", ST_F32, 1, s, x, err, sizeof err), -1);
    assert_int_equal(st_writer_add(w, "c", 99, 1, s, x, err, sizeof err), -1);
    assert_int_equal(st_writer_add(w, "c", ST_F32, 9, s, x, err, sizeof err), -1);
    assert_int_equal(st_writer_add(w, "c", ST_F32, 1, neg, x, err, sizeof err), -1);
    assert_int_equal(st_writer_add(w, "c", ST_F32, 1, s, NULL, err, sizeof err), -1);
    assert_int_equal(st_writer_add_f32(w, "c", ST_I64, 1, s, x, err, sizeof err), -1);
    assert_non_null(strstr(err, "f32 data is stored as F32, BF16 or F16, not I64"));
    assert_int_equal(st_writer_set_metadata(w, "k\xc3", "v", err, sizeof err), -1);
    assert_int_equal(st_writer_write(w, "/nonexistent-dir/x.safetensors", err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent-dir/x.safetensors.tmp: cannot create"));
    st_writer_destroy(&w);
    st_writer_destroy(&w);
}

static void test_dtypes(void **state)
{
    (void)state;
    for (int d = 0; d < ST_NDTYPES; d++) {
        assert_non_null(st_dtype_name(d));
        assert_int_equal(st_dtype_from_name(st_dtype_name(d)), d);
        assert_true(st_dtype_size(d) >= 1 && st_dtype_size(d) <= 8);
    }
    assert_null(st_dtype_name(ST_NDTYPES));
    assert_null(st_dtype_name(-1));
    assert_int_equal(st_dtype_from_name("f32"), -1);
    assert_int_equal(st_dtype_size(ST_BF16), 2);
    assert_int_equal(st_dtype_size(ST_F64), 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtypes),
        cmocka_unit_test(test_golden_reads),
        cmocka_unit_test(test_golden_conversion),
        cmocka_unit_test(test_rewrite_identical),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_many_tensors),
        cmocka_unit_test(test_sharded),
        cmocka_unit_test(test_sharded_bad),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_bad_lengths),
        cmocka_unit_test(test_writer_errors),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
