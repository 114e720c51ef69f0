/* test_rec.c — records: round trips, unknown keys, and every class of bad
 * input the decoder must refuse with a one-line error.
 *
 * Messages are made here with msgpack-c's packer directly, not with the code
 * under test, so a bug in rec_encode cannot hide one in rec_decode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../ipc/half.h"
#include "../../ipc/rec.h"

/* ---- a tiny msgpack writer on msgpack-c ---- */

typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} mp_t;

static void mp_init(mp_t *m)
{
    msgpack_sbuffer_init(&m->sb);
    msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

static void mp_str(mp_t *m, const char *s) { msgpack_pack_str_with_body(&m->pk, s, strlen(s)); }

static void mp_kv_str(mp_t *m, const char *k, const char *v)
{
    mp_str(m, k);
    mp_str(m, v);
}

static void mp_kv_int(mp_t *m, const char *k, int64_t v)
{
    mp_str(m, k);
    msgpack_pack_int64(&m->pk, v);
}

/* A tensor map, written field by field. */
static void mp_tensor(mp_t *m, const char *dtype, const uint32_t *shape, int nd, const void *data, size_t n)
{
    msgpack_pack_map(&m->pk, 3);
    mp_kv_str(m, "dtype", dtype);
    mp_str(m, "shape");
    msgpack_pack_array(&m->pk, (size_t)nd);
    for (int i = 0; i < nd; i++)
        msgpack_pack_uint32(&m->pk, shape[i]);
    mp_str(m, "data");
    msgpack_pack_bin_with_body(&m->pk, data, n);
}

/* A valid sample; `extra` adds an unknown top-level key with nested content,
 * `tensor_bytes` is the byte length of the "vae" data actually written for a
 * [2,2,3] u8 shape (12 is right). */
static void mp_sample(mp_t *m, bool extra, size_t tensor_bytes, const char *dtype)
{
    msgpack_pack_map(&m->pk, extra ? 8 : 7);
    mp_kv_int(m, "v", 1);
    mp_kv_str(m, "type", "sample");
    mp_kv_str(m, "id", "train.jsonl#17");
    mp_kv_str(m, "source", "train.jsonl");
    mp_kv_int(m, "seq", 17);
    mp_kv_int(m, "epoch", 0);
    mp_str(m, "segments");
    msgpack_pack_array(&m->pk, 2);
    msgpack_pack_map(&m->pk, 4);
    mp_kv_str(m, "kind", "text");
    mp_kv_str(m, "text", "Draw a cat");
    mp_str(m, "loss");
    msgpack_pack_false(&m->pk);
    mp_str(m, "tokens");
    int32_t tok[3] = {8000, 264, 8251};
    uint32_t ts[1] = {3};
    mp_tensor(m, "i32", ts, 1, tok, sizeof tok);
    msgpack_pack_map(&m->pk, 4);
    mp_kv_str(m, "kind", "image");
    mp_kv_str(m, "path", "cat.jpg");
    mp_str(m, "gen");
    msgpack_pack_true(&m->pk);
    mp_str(m, "vae");
    unsigned char px[64];
    for (int i = 0; i < 64; i++)
        px[i] = (unsigned char)(i * 7);
    uint32_t shape[3] = {2, 2, 3};
    mp_tensor(m, dtype, shape, 3, px, tensor_bytes);
    if (extra) {
        mp_str(m, "x-future");
        msgpack_pack_map(&m->pk, 2);
        mp_kv_str(m, "note", "kept");
        mp_str(m, "list");
        msgpack_pack_array(&m->pk, 3);
        msgpack_pack_double(&m->pk, 0.25);
        msgpack_pack_nil(&m->pk);
        msgpack_pack_ext_with_body(&m->pk, "ab", 2, 5);
    }
}

static void encode_to(const rec_t *r, msgpack_sbuffer *out)
{
    char err[REC_ERR_LEN];
    rec_enc_t *e = rec_enc_new();
    assert_non_null(e);
    assert_int_equal(rec_encode(e, r, err), 0);
    size_t n = rec_enc_size(e);
    msgpack_sbuffer_init(out);
    char *buf = malloc(n);
    rec_enc_gather(e, buf);
    msgpack_sbuffer_write(out, buf, n);
    free(buf);
    rec_enc_destroy(&e);
    assert_null(e);
}

/* decode `m`, expect status `want`; return the error text */
static int decode(const mp_t *m, rec_t **r, char *err) { return rec_decode(m->sb.data, m->sb.size, NULL, r, err); }

/* ---- round trips ---- */

static void test_unknown_keys_carried_bytewise(void **state)
{
    (void)state;
    mp_t m;
    mp_init(&m);
    mp_sample(&m, true, 12, "u8");
    rec_t *r;
    char err[REC_ERR_LEN];
    assert_int_equal(decode(&m, &r, err), 0);
    assert_int_equal(r->type, REC_SAMPLE);
    msgpack_sbuffer again;
    encode_to(r, &again);
    assert_int_equal(again.size, m.sb.size);
    assert_memory_equal(again.data, m.sb.data, m.sb.size);
    const msgpack_object *x = rec_get(r, "x-future");
    assert_non_null(x);
    assert_int_equal(x->type, MSGPACK_OBJECT_MAP);
    msgpack_sbuffer_destroy(&again);
    msgpack_sbuffer_destroy(&m.sb);
    rec_destroy(&r);
    assert_null(r);
}

static void test_fields_and_tensors(void **state)
{
    (void)state;
    mp_t m;
    mp_init(&m);
    mp_sample(&m, false, 12, "u8");
    rec_t *r;
    char err[REC_ERR_LEN], buf[64];
    assert_int_equal(decode(&m, &r, err), 0);
    assert_string_equal(rec_id(r, buf, sizeof buf), "train.jsonl#17");
    assert_string_equal(rec_source(r, buf, sizeof buf), "train.jsonl");
    assert_int_equal(rec_seq(r), 17);
    assert_int_equal(rec_epoch(r), 0);
    const msgpack_object *segs = rec_get(r, "segments");
    rec_tensor_t t;
    assert_int_equal(rec_tensor_get(rec_map_get(&segs->via.array.ptr[0], "tokens"), &t, err), 0);
    assert_int_equal(t.dtype, REC_I32);
    assert_int_equal(t.ndim, 1);
    int32_t tok[3];
    memcpy(tok, t.data, 12);
    assert_int_equal(tok[2], 8251);
    assert_int_equal(rec_tensor_get(rec_map_get(&segs->via.array.ptr[1], "vae"), &t, err), 0);
    assert_int_equal(rec_tensor_numel(&t), 12);
    assert_int_equal(((const unsigned char *)t.data)[5], 35);
    // the data is not copied: it points into the message
    assert_true((const char *)t.data > m.sb.data && (const char *)t.data < m.sb.data + m.sb.size);
    rec_destroy(&r);
    msgpack_sbuffer_destroy(&m.sb);
}

/* Every record type, every dtype, built with the library, through the codec. */
static void test_roundtrip_all_types(void **state)
{
    (void)state;
    char err[REC_ERR_LEN];
    rec_t *s = rec_new_sample("a.jsonl", 3, 1, "edit");
    assert_non_null(s);
    msgpack_object *segs = rec_map_getw(&s->root, "segments");
    for (int dt = 0; dt < REC_DTYPE_COUNT; dt++) {
        unsigned char data[4 * 6];
        for (size_t i = 0; i < sizeof data; i++)
            data[i] = (unsigned char)(i + 1);
        rec_tensor_t t = {.dtype = (rec_dtype_t)dt, .ndim = 2, .shape = {2, 3}, .data = data};
        t.nbytes = 6 * rec_dtype_size(t.dtype);
        msgpack_object seg = rec_map(), to;
        assert_int_equal(rec_tensor_obj(s, &t, true, &to, err), 0);
        assert_int_equal(rec_set(s, &seg, "kind", rec_str(s, "image")), 0);
        assert_int_equal(rec_set(s, &seg, "latent", to), 0);
        assert_int_equal(rec_push(s, segs, seg), 0);
    }
    assert_int_equal(rec_validate(s, NULL, err), 0);
    rec_t *rj = rec_new_reject(s, "bagel-image", "cat.jpg: not a known image format");
    rec_t *end = rec_new_end("a.jsonl", 1, 2);
    rec_t *all[3] = {s, rj, end};
    for (int i = 0; i < 3; i++) {
        assert_non_null(all[i]);
        assert_int_equal(rec_validate(all[i], NULL, err), 0);
        msgpack_sbuffer b;
        encode_to(all[i], &b);
        rec_t *d;
        assert_int_equal(rec_decode(b.data, b.size, NULL, &d, err), 0);
        assert_int_equal(d->type, all[i]->type);
        msgpack_sbuffer b2;
        encode_to(d, &b2);
        assert_int_equal(b2.size, b.size);
        assert_memory_equal(b2.data, b.data, b.size);
        assert_true(msgpack_object_equal(d->root, all[i]->root));
        msgpack_sbuffer_destroy(&b);
        msgpack_sbuffer_destroy(&b2);
        rec_destroy(&d);
    }
    const msgpack_object *sample = rec_get(rj, "sample");
    assert_true(msgpack_object_equal(*sample, s->root));
    char buf[64];
    assert_string_equal(rec_id(rj, buf, sizeof buf), "a.jsonl#3");
    for (int i = 0; i < 3; i++)
        rec_destroy(&all[i]);
}

static void test_set_replaces_and_appends(void **state)
{
    (void)state;
    rec_t *r = rec_new_end("s", 0, 5);
    assert_int_equal(rec_set(r, &r->root, "count", rec_int(7)), 0);
    int64_t c;
    assert_true(rec_get_int(&r->root, "count", &c));
    assert_int_equal(c, 7);
    uint32_t n = r->root.via.map.size;
    assert_int_equal(rec_set(r, &r->root, "note", rec_str(r, "hi")), 0);
    assert_int_equal(r->root.via.map.size, n + 1);
    rec_destroy(&r);
}

/* ---- bad input: each class gives -1/-2 and a message naming what ---- */

static void expect_bad(const void *buf, size_t len, const rec_limits_t *lim, int want, const char *needle)
{
    rec_t *r = NULL;
    char err[REC_ERR_LEN] = "";
    int rc = rec_decode(buf, len, lim, &r, err);
    if (rc != want || !strstr(err, needle))
        fail_msg("rc %d (want %d), error \"%s\" (want \"%s\")", rc, want, err, needle);
    assert_null(strchr(err, '\n'));
    if (want == -1)
        assert_null(r);
    rec_destroy(&r);
}

static void test_truncated_every_prefix(void **state)
{
    (void)state;
    mp_t m;
    mp_init(&m);
    mp_sample(&m, true, 12, "u8");
    for (size_t n = 1; n < m.sb.size; n++) {
        // a copy of exactly n bytes, so reading past them is caught by ASan
        char *p = malloc(n);
        memcpy(p, m.sb.data, n);
        expect_bad(p, n, NULL, -1, "truncated");
        free(p);
    }
    msgpack_sbuffer_destroy(&m.sb);
}

static void test_trailing_bytes(void **state)
{
    (void)state;
    mp_t m;
    mp_init(&m);
    mp_sample(&m, false, 12, "u8");
    msgpack_pack_nil(&m.pk);
    expect_bad(m.sb.data, m.sb.size, NULL, -1, "after the end");
    msgpack_sbuffer_destroy(&m.sb);
}

static void test_oversize_lengths(void **state)
{
    (void)state;
    // {"data": bin32 of 0xffffffff bytes} in a 12-byte message
    const unsigned char bin[] = {0x81, 0xa4, 'd', 'a', 't', 'a', 0xc6, 0xff, 0xff, 0xff, 0xff, 0};
    expect_bad(bin, sizeof bin, NULL, -1, "limit");
    // an array32 claiming 4 billion values: refused before any allocation
    const unsigned char arr[] = {0x81, 0xa1, 'a', 0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0};
    expect_bad(arr, sizeof arr, NULL, -1, "4294967295 values");
    // a map32 of 2^31 entries
    const unsigned char map[] = {0xdf, 0x80, 0x00, 0x00, 0x00};
    expect_bad(map, sizeof map, NULL, -1, "values");
    // a record over a configured limit
    rec_limits_t lim = rec_default_limits;
    lim.max_message = 64;
    mp_t m;
    mp_init(&m);
    mp_sample(&m, true, 12, "u8");
    expect_bad(m.sb.data, m.sb.size, &lim, -1, "64-byte limit");
    msgpack_sbuffer_destroy(&m.sb);
}

static void test_deep_nesting(void **state)
{
    (void)state;
    unsigned char buf[256];
    size_t n = 0;
    buf[n++] = 0x81;
    buf[n++] = 0xa1;
    buf[n++] = 'x';
    for (int i = 0; i < 200; i++)
        buf[n++] = 0x91; // [ [ [ ...
    buf[n++] = 0xc0;
    expect_bad(buf, n, NULL, -1, "nested deeper");
}

static void test_never_used_byte(void **state)
{
    (void)state;
    const unsigned char b[] = {0x81, 0xa1, 'x', 0xc1};
    expect_bad(b, sizeof b, NULL, -1, "0xc1");
    const unsigned char notmap[] = {0x92, 0x01, 0x02};
    expect_bad(notmap, sizeof notmap, NULL, -1, "not a msgpack map");
}

static void test_tensor_length_mismatch(void **state)
{
    (void)state;
    mp_t m;
    mp_init(&m);
    mp_sample(&m, false, 11, "u8");
    expect_bad(m.sb.data, m.sb.size, NULL, -2, "data is 11 bytes, u8 shape needs 12");
    msgpack_sbuffer_destroy(&m.sb);
    mp_init(&m);
    mp_sample(&m, false, 12, "f32"); // 12 bytes for 12 f32 values
    expect_bad(m.sb.data, m.sb.size, NULL, -2, "f32 shape needs 48");
    msgpack_sbuffer_destroy(&m.sb);
}

static void test_unknown_dtype(void **state)
{
    (void)state;
    mp_t m;
    mp_init(&m);
    mp_sample(&m, false, 12, "q4");
    expect_bad(m.sb.data, m.sb.size, NULL, -2, "unknown dtype \"q4\"");
    msgpack_sbuffer_destroy(&m.sb);
}

static void test_wrong_key_types(void **state)
{
    (void)state;
    mp_t m;
    // an integer map key
    mp_init(&m);
    msgpack_pack_map(&m.pk, 3);
    mp_kv_int(&m, "v", 1);
    mp_kv_str(&m, "type", "end");
    msgpack_pack_int(&m.pk, 7);
    msgpack_pack_int(&m.pk, 8);
    expect_bad(m.sb.data, m.sb.size, NULL, -2, "not a string");
    msgpack_sbuffer_destroy(&m.sb);
    // "id" that is a number
    mp_init(&m);
    msgpack_pack_map(&m.pk, 7);
    mp_kv_int(&m, "v", 1);
    mp_kv_str(&m, "type", "sample");
    mp_kv_int(&m, "id", 5);
    mp_kv_str(&m, "source", "s");
    mp_kv_int(&m, "seq", 0);
    mp_kv_int(&m, "epoch", 0);
    mp_str(&m, "segments");
    msgpack_pack_array(&m.pk, 0);
    expect_bad(m.sb.data, m.sb.size, NULL, -2, "\"id\": wrong type, expected a string");
    msgpack_sbuffer_destroy(&m.sb);
    // a negative count in an end record
    mp_init(&m);
    msgpack_pack_map(&m.pk, 5);
    mp_kv_int(&m, "v", 1);
    mp_kv_str(&m, "type", "end");
    mp_kv_str(&m, "source", "s");
    mp_kv_int(&m, "epoch", 0);
    mp_kv_int(&m, "count", -3);
    expect_bad(m.sb.data, m.sb.size, NULL, -2, "\"count\": wrong type, expected an integer >= 0");
    msgpack_sbuffer_destroy(&m.sb);
    // an unknown record type and a future version
    mp_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mp_kv_int(&m, "v", 1);
    mp_kv_str(&m, "type", "banana");
    expect_bad(m.sb.data, m.sb.size, NULL, -2, "\"banana\", expected sample, reject or end");
    msgpack_sbuffer_destroy(&m.sb);
    mp_init(&m);
    msgpack_pack_map(&m.pk, 5);
    mp_kv_int(&m, "v", 2);
    mp_kv_str(&m, "type", "end");
    mp_kv_str(&m, "source", "s");
    mp_kv_int(&m, "epoch", 0);
    mp_kv_int(&m, "count", 0);
    expect_bad(m.sb.data, m.sb.size, NULL, -2, "record version 2");
    msgpack_sbuffer_destroy(&m.sb);
}

static void test_negative_shape(void **state)
{
    (void)state;
    mp_t m;
    mp_init(&m);
    msgpack_pack_map(&m.pk, 6);
    mp_kv_int(&m, "v", 1);
    mp_kv_str(&m, "type", "end");
    mp_kv_str(&m, "source", "s");
    mp_kv_int(&m, "epoch", 0);
    mp_kv_int(&m, "count", 0);
    mp_str(&m, "t");
    msgpack_pack_map(&m.pk, 3);
    mp_kv_str(&m, "dtype", "u8");
    mp_str(&m, "shape");
    msgpack_pack_array(&m.pk, 1);
    msgpack_pack_int(&m.pk, -4);
    mp_str(&m, "data");
    msgpack_pack_bin_with_body(&m.pk, "", 0);
    expect_bad(m.sb.data, m.sb.size, NULL, -2, "shape[0] must be an integer");
    msgpack_sbuffer_destroy(&m.sb);
}

/* ---- the streaming scan ---- */

static void test_scan_stream(void **state)
{
    (void)state;
    mp_t m;
    mp_init(&m);
    mp_sample(&m, true, 12, "u8");
    size_t one = m.sb.size;
    mp_sample(&m, false, 12, "u8");
    char err[REC_ERR_LEN];
    size_t need;
    assert_int_equal(rec_scan(m.sb.data, m.sb.size, NULL, &need, err), (long long)one);
    assert_int_equal(rec_scan(m.sb.data + one, m.sb.size - one, NULL, &need, err), (long long)(m.sb.size - one));
    // partial: 0 and a lower bound of what is needed
    assert_int_equal(rec_scan(m.sb.data, 40, NULL, &need, err), 0);
    assert_true(need > 40 && need <= one);
    msgpack_sbuffer_destroy(&m.sb);
    // a big bin header says how much is needed at once
    unsigned char big[] = {0x81, 0xa1, 'x', 0xc6, 0x00, 0x10, 0x00, 0x00};
    assert_int_equal(rec_scan(big, sizeof big, NULL, &need, err), 0);
    assert_int_equal(need, sizeof big + 0x100000);
}

static void test_half_conversions(void **state)
{
    (void)state;
    // bf16: round to nearest even on the dropped 16 bits
    assert_int_equal(half_f32_to_bf16(1.0f), 0x3f80);
    uint32_t u = 0x3f808000; // exactly halfway, even below: stays
    float f;
    memcpy(&f, &u, 4);
    assert_int_equal(half_f32_to_bf16(f), 0x3f80);
    u = 0x3f818000; // halfway, odd below: rounds up
    memcpy(&f, &u, 4);
    assert_int_equal(half_f32_to_bf16(f), 0x3f82);
    assert_true(half_bf16_to_f32(half_f32_to_bf16(__builtin_nanf(""))) !=
                half_bf16_to_f32(half_f32_to_bf16(__builtin_nanf(""))));
    // f16: 65504 is the largest finite, 2^-24 the smallest subnormal
    assert_int_equal(half_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(half_f32_to_f16(5.9604645e-8f), 0x0001);
    assert_true(half_f16_to_f32(0x3555) > 0.3332f && half_f16_to_f32(0x3555) < 0.3334f);
}

/* The f16 conversions against the compiler's _Float16 (gcc's, IEEE binary16
 * with correct rounding): every f16 value both ways, and f32 values around
 * every rounding boundary. */
static void test_f16_against_compiler(void **state)
{
    (void)state;
#if defined(__FLT16_MAX__)
    for (uint32_t h = 0; h < 0x10000; h++) {
        _Float16 x;
        uint16_t h16 = (uint16_t)h;
        memcpy(&x, &h16, 2);
        float want = (float)x, got = half_f16_to_f32(h16);
        if (want != want) {
            assert_true(got != got);
            continue;
        }
        assert_memory_equal(&got, &want, 4);
        assert_int_equal(half_f32_to_f16(got), h16);
    }
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 2000000; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        uint32_t u = (uint32_t)s;
        if (i & 1) // near the f16 range, where the rounding cases are
            u = (u & 0x80000000u) | (0x33000000u + (u & 0x0fffffffu) % 0x14800000u);
        float f;
        memcpy(&f, &u, 4);
        if (f != f)
            continue;
        _Float16 x = (_Float16)f;
        uint16_t want;
        memcpy(&want, &x, 2);
        if (half_f32_to_f16(f) != want)
            fail_msg("f32 0x%08x: got f16 0x%04x, want 0x%04x", u, half_f32_to_f16(f), want);
    }
#else
    skip();
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unknown_keys_carried_bytewise),
        cmocka_unit_test(test_fields_and_tensors),
        cmocka_unit_test(test_roundtrip_all_types),
        cmocka_unit_test(test_set_replaces_and_appends),
        cmocka_unit_test(test_truncated_every_prefix),
        cmocka_unit_test(test_trailing_bytes),
        cmocka_unit_test(test_oversize_lengths),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_never_used_byte),
        cmocka_unit_test(test_tensor_length_mismatch),
        cmocka_unit_test(test_unknown_dtype),
        cmocka_unit_test(test_wrong_key_types),
        cmocka_unit_test(test_negative_shape),
        cmocka_unit_test(test_scan_stream),
        cmocka_unit_test(test_half_conversions),
        cmocka_unit_test(test_f16_against_compiler),
    };
    return cmocka_run_group_tests_name("rec", tests, NULL, NULL);
}
