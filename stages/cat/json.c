/* json.c — see json.h. */
#include "json.h"

#include "../../ipc/half.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- record to JSON ---- */

static json_t *hex_of(const void *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    char *s = malloc(2 * n + 1);
    if (!s)
        return NULL;
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        s[2 * i] = digits[b[i] >> 4];
        s[2 * i + 1] = digits[b[i] & 15];
    }
    json_t *j = json_stringn_nocheck(s, 2 * n);
    free(s);
    return j;
}

static json_t *number(double v)
{
    if (isnan(v))
        return json_string("nan");
    if (isinf(v))
        return json_string(v > 0 ? "inf" : "-inf");
    return json_real(v);
}

static json_t *tensor_data(const rec_tensor_t *t)
{
    json_t *a = json_array();
    uint64_t n = rec_tensor_numel(t);
    const unsigned char *p = t->data;
    for (uint64_t i = 0; a && i < n; i++) {
        json_t *v = NULL;
        switch (t->dtype) {
        case REC_U8: v = json_integer(p[i]); break;
        case REC_I32: {
            int32_t x;
            memcpy(&x, p + 4 * i, 4);
            v = json_integer(x);
            break;
        }
        case REC_F32: {
            float x;
            memcpy(&x, p + 4 * i, 4);
            v = number(x);
            break;
        }
        case REC_F16:
        case REC_BF16: {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            v = number(t->dtype == REC_F16 ? half_f16_to_f32(h) : half_bf16_to_f32(h));
            break;
        }
        default: break;
        }
        if (!v || json_array_append_new(a, v)) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *obj_to_json(const msgpack_object *o, bool full)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: return json_null();
    case MSGPACK_OBJECT_BOOLEAN: return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return o->via.u64 <= INT64_MAX ? json_integer((json_int_t)o->via.u64) : json_real((double)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer(o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return isfinite(o->via.f64) ? json_real(o->via.f64) : json_null();
    case MSGPACK_OBJECT_STR: return json_stringn(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN: return json_pack("{s:o*}", "$bin", hex_of(o->via.bin.ptr, o->via.bin.size));
    case MSGPACK_OBJECT_EXT:
        return json_pack("{s:i,s:o*}", "$ext", (int)o->via.ext.type, "$bin", hex_of(o->via.ext.ptr, o->via.ext.size));
    case MSGPACK_OBJECT_ARRAY: {
        json_t *a = json_array();
        for (uint32_t i = 0; a && i < o->via.array.size; i++)
            if (json_array_append_new(a, obj_to_json(&o->via.array.ptr[i], full))) {
                json_decref(a);
                return NULL;
            }
        return a;
    }
    case MSGPACK_OBJECT_MAP: {
        json_t *m = json_object();
        rec_tensor_t t;
        char err[REC_ERR_LEN];
        bool tensor = rec_map_get(o, "dtype") && rec_tensor_get(o, &t, err) == 0;
        for (uint32_t i = 0; m && i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR)
                continue; // decoded records have string keys only
            char *key = strndup(kv->key.via.str.ptr, kv->key.via.str.size);
            json_t *v;
            if (tensor && strcmp(key, "data") == 0) {
                if (full) {
                    v = tensor_data(&t);
                } else {
                    char h[17];
                    snprintf(h, sizeof h, "%016llx", (unsigned long long)rec_fnv1a(t.data, t.nbytes));
                    json_object_set_new(m, "bytes", json_integer((json_int_t)t.nbytes));
                    v = json_string(h);
                    free(key);
                    key = strdup("fnv1a");
                }
            } else {
                v = obj_to_json(&kv->val, full);
            }
            if (!key || !v || json_object_set_new(m, key, v)) {
                free(key);
                json_decref(m);
                return NULL;
            }
            free(key);
        }
        return m;
    }
    }
    return NULL;
}

json_t *rec_to_json(const rec_t *r, bool full) { return obj_to_json(&r->root, full); }

/* ---- JSON to record ---- */

static int unhex(rec_t *r, const char *s, size_t n, msgpack_object *o, char *err)
{
    if (n % 2) {
        snprintf(err, REC_ERR_LEN, "$bin: odd number of hex digits");
        return -1;
    }
    unsigned char *p = n ? msgpack_zone_malloc_no_align(r->zone, n / 2) : NULL;
    if (n && !p) {
        snprintf(err, REC_ERR_LEN, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = s[2 * i + (size_t)k];
            int d = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
            if (d < 0) {
                snprintf(err, REC_ERR_LEN, "$bin: '%c' is not a hex digit", c);
                return -1;
            }
            v = v << 4 | (unsigned)d;
        }
        p[i] = (unsigned char)v;
    }
    o->via.bin.ptr = (const char *)p;
    o->via.bin.size = (uint32_t)(n / 2);
    return 0;
}

static int num_of(const json_t *v, double *out)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return 0;
    }
    const char *s = json_string_value(v);
    if (s && strcmp(s, "nan") == 0)
        *out = NAN;
    else if (s && strcmp(s, "inf") == 0)
        *out = INFINITY;
    else if (s && strcmp(s, "-inf") == 0)
        *out = -INFINITY;
    else
        return -1;
    return 0;
}

static int tensor_from_json(rec_t *r, const json_t *j, const char *path, msgpack_object *out, char *err)
{
    rec_tensor_t t = {0};
    const json_t *dt = json_object_get(j, "dtype"), *shape = json_object_get(j, "shape"),
                 *data = json_object_get(j, "data");
    const char *dts = json_string_value(dt);
    if (!dts || rec_dtype_parse(dts, strlen(dts), &t.dtype)) {
        snprintf(err, REC_ERR_LEN, "%s.dtype: expected u8, i32, f16, bf16 or f32", path);
        return -1;
    }
    if (!json_is_array(shape) || json_array_size(shape) > REC_MAX_DIMS) {
        snprintf(err, REC_ERR_LEN, "%s.shape: expected an array of at most %d integers", path, REC_MAX_DIMS);
        return -1;
    }
    t.ndim = (int)json_array_size(shape);
    uint64_t numel = 1;
    for (int i = 0; i < t.ndim; i++) {
        const json_t *d = json_array_get(shape, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0 || json_integer_value(d) > UINT32_MAX) {
            snprintf(err, REC_ERR_LEN, "%s.shape[%d]: expected an integer >= 0", path, i);
            return -1;
        }
        t.shape[i] = json_integer_value(d);
        numel *= (uint64_t)t.shape[i];
        if (numel > UINT32_MAX) {
            snprintf(err, REC_ERR_LEN, "%s.shape: too many elements", path);
            return -1;
        }
    }
    if (!json_is_array(data)) {
        snprintf(err, REC_ERR_LEN, "%s.data: expected an array of numbers (bagel-cat --full shows tensors so)", path);
        return -1;
    }
    if (json_array_size(data) != numel) {
        snprintf(err, REC_ERR_LEN, "%s.data: %zu numbers for shape of %llu elements", path, json_array_size(data),
                 (unsigned long long)numel);
        return -1;
    }
    size_t es = rec_dtype_size(t.dtype);
    unsigned char *p = numel ? msgpack_zone_malloc_no_align(r->zone, numel * es) : NULL;
    if (numel && !p) {
        snprintf(err, REC_ERR_LEN, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < numel; i++) {
        const json_t *v = json_array_get(data, i);
        double x;
        if (num_of(v, &x)) {
            snprintf(err, REC_ERR_LEN, "%s.data[%zu]: expected a number", path, i);
            return -1;
        }
        if (t.dtype == REC_U8 || t.dtype == REC_I32) {
            double lo = t.dtype == REC_U8 ? 0 : INT32_MIN, hi = t.dtype == REC_U8 ? 255 : INT32_MAX;
            if (!json_is_integer(v) || x < lo || x > hi) {
                snprintf(err, REC_ERR_LEN, "%s.data[%zu]: expected an integer in [%.0f, %.0f]", path, i, lo, hi);
                return -1;
            }
            if (t.dtype == REC_U8)
                p[i] = (unsigned char)x;
            else {
                int32_t y = (int32_t)json_integer_value(v);
                memcpy(p + 4 * i, &y, 4);
            }
        } else if (t.dtype == REC_F32) {
            float y = (float)x;
            memcpy(p + 4 * i, &y, 4);
        } else {
            uint16_t h = t.dtype == REC_F16 ? half_f32_to_f16((float)x) : half_f32_to_bf16((float)x);
            memcpy(p + 2 * i, &h, 2);
        }
    }
    t.data = p;
    t.nbytes = numel * es;
    if (rec_tensor_obj(r, &t, false, out, err))
        return -1;
    // carry any other keys of the tensor map
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)j, key, v)
    {
        (void)v;
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data")) {
            snprintf(err, REC_ERR_LEN, "%s.%s: a tensor holds only dtype, shape and data", path, key);
            return -1;
        }
    }
    return 0;
}

static int from_json(rec_t *r, const json_t *j, char *path, size_t plen, int depth, const rec_limits_t *lim,
                     msgpack_object *out, char *err)
{
    if (depth > lim->max_depth) {
        snprintf(err, REC_ERR_LEN, "%s: nested deeper than %d", path, lim->max_depth);
        return -1;
    }
    size_t at = strlen(path);
    switch (json_typeof(j)) {
    case JSON_NULL: *out = rec_nil(); return 0;
    case JSON_TRUE: *out = rec_bool(true); return 0;
    case JSON_FALSE: *out = rec_bool(false); return 0;
    case JSON_INTEGER: *out = rec_int(json_integer_value(j)); return 0;
    case JSON_REAL: *out = rec_float(json_real_value(j)); return 0;
    case JSON_STRING:
        *out = rec_strn(r, json_string_value(j), json_string_length(j));
        if (out->type != MSGPACK_OBJECT_STR && json_string_length(j)) {
            snprintf(err, REC_ERR_LEN, "out of memory");
            return -1;
        }
        return 0;
    case JSON_ARRAY: {
        *out = rec_array();
        for (size_t i = 0; i < json_array_size(j); i++) {
            msgpack_object v;
            snprintf(path + at, plen - at, "[%zu]", i);
            if (from_json(r, json_array_get(j, i), path, plen, depth + 1, lim, &v, err))
                return -1;
            if (rec_push(r, out, v)) {
                snprintf(err, REC_ERR_LEN, "out of memory");
                return -1;
            }
        }
        path[at] = 0;
        return 0;
    }
    case JSON_OBJECT: {
        if (json_object_get(j, "dtype"))
            return tensor_from_json(r, j, path, out, err);
        const json_t *bin = json_object_get(j, "$bin");
        if (bin) {
            const json_t *ext = json_object_get(j, "$ext");
            size_t keys = json_object_size(j);
            if (!json_is_string(bin) || keys != (ext ? 2u : 1u) || (ext && !json_is_integer(ext))) {
                snprintf(err, REC_ERR_LEN, "%s: expected {\"$bin\": HEX} or {\"$ext\": TYPE, \"$bin\": HEX}", path);
                return -1;
            }
            out->type = ext ? MSGPACK_OBJECT_EXT : MSGPACK_OBJECT_BIN;
            if (unhex(r, json_string_value(bin), json_string_length(bin), out, err))
                return -1;
            if (ext) {
                const char *p = out->via.bin.ptr;
                uint32_t n = out->via.bin.size;
                out->via.ext.type = (int8_t)json_integer_value(ext);
                out->via.ext.ptr = p;
                out->via.ext.size = n;
            }
            return 0;
        }
        *out = rec_map();
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)j, key, v)
        {
            msgpack_object mv;
            snprintf(path + at, plen - at, ".%.40s", key);
            if (from_json(r, v, path, plen, depth + 1, lim, &mv, err))
                return -1;
            if (rec_set(r, out, key, mv)) {
                snprintf(err, REC_ERR_LEN, "out of memory");
                return -1;
            }
        }
        path[at] = 0;
        return 0;
    }
    }
    snprintf(err, REC_ERR_LEN, "%s: unknown JSON value", path);
    return -1;
}

int json_to_rec(const json_t *j, const rec_limits_t *lim, rec_t **out, char *err)
{
    *out = NULL;
    if (!json_is_object(j)) {
        snprintf(err, REC_ERR_LEN, "record: expected a JSON object");
        return -1;
    }
    const char *type = json_string_value(json_object_get(j, "type"));
    rec_type_t t = REC_SAMPLE;
    bool known = false;
    for (int i = 0; type && i < REC_TYPE_COUNT; i++)
        if (strcmp(type, rec_type_name((rec_type_t)i)) == 0)
            t = (rec_type_t)i, known = true;
    if (!known) {
        snprintf(err, REC_ERR_LEN, "\"type\": expected \"sample\", \"reject\" or \"end\"");
        return -1;
    }
    rec_t *r = rec_new(t);
    if (!r) {
        snprintf(err, REC_ERR_LEN, "out of memory");
        return -1;
    }
    char path[256] = "record";
    msgpack_object root;
    if (from_json(r, j, path, sizeof path, 0, lim, &root, err)) {
        rec_destroy(&r);
        return -1;
    }
    r->root = root;
    if (rec_validate(r, lim, err)) {
        rec_destroy(&r);
        return -1;
    }
    *out = r;
    return 0;
}
