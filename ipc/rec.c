/* rec.c — the in-memory record: a msgpack_object tree in a zone, with field
 * access, builders and the schema check. Encoding and decoding live in
 * rec_codec.c. */
#include "rec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const rec_limits_t rec_default_limits = {
    .max_message = (size_t)256 << 20,
    .max_depth = 24,
    .max_items = 1u << 22,
};

static const struct {
    const char *name;
    size_t size;
} dtypes[REC_DTYPE_COUNT] = {
    [REC_U8] = {"u8", 1},     [REC_I32] = {"i32", 4}, [REC_F16] = {"f16", 2},
    [REC_BF16] = {"bf16", 2}, [REC_F32] = {"f32", 4},
};

static const char *type_names[REC_TYPE_COUNT] = {[REC_SAMPLE] = "sample", [REC_REJECT] = "reject", [REC_END] = "end"};

const char *rec_dtype_name(rec_dtype_t dt) { return dt < REC_DTYPE_COUNT ? dtypes[dt].name : "?"; }
size_t rec_dtype_size(rec_dtype_t dt) { return dt < REC_DTYPE_COUNT ? dtypes[dt].size : 0; }
const char *rec_type_name(rec_type_t t) { return t < REC_TYPE_COUNT ? type_names[t] : "?"; }

int rec_dtype_parse(const char *s, size_t n, rec_dtype_t *out)
{
    for (int i = 0; i < REC_DTYPE_COUNT; i++)
        if (strlen(dtypes[i].name) == n && memcmp(dtypes[i].name, s, n) == 0) {
            *out = (rec_dtype_t)i;
            return 0;
        }
    return -1;
}

const char *rec_printable(char *dst, size_t dstsize, const char *s, size_t n, size_t max)
{
    size_t o = 0;
    for (size_t i = 0; i < n && i < max && o + 8 < dstsize; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
            dst[o++] = (char)c;
        else
            o += (size_t)snprintf(dst + o, dstsize - o, "\\x%02x", c);
    }
    if (n > max && o + 4 < dstsize)
        memcpy(dst + o, "...", 3), o += 3;
    if (dstsize)
        dst[o < dstsize ? o : dstsize - 1] = 0;
    return dst;
}

uint64_t rec_fnv1a(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* ---- lifetime ---- */

rec_t *rec_new(rec_type_t type)
{
    rec_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->zone = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE);
    if (!r->zone) {
        free(r);
        return NULL;
    }
    r->type = type;
    r->root = rec_map();
    if (rec_set(r, &r->root, "v", rec_int(REC_VERSION)) ||
        rec_set(r, &r->root, "type", rec_str(r, rec_type_name(type)))) {
        rec_destroy(&r);
        return NULL;
    }
    return r;
}

void rec_destroy(rec_t **r)
{
    if (!r || !*r)
        return;
    if ((*r)->zone)
        msgpack_zone_free((*r)->zone);
    free(*r);
    *r = NULL;
}

int rec_adopt(rec_t *r, void (*release)(void *), void *data)
{
    if (!msgpack_zone_push_finalizer(r->zone, release, data)) {
        release(data);
        return -1;
    }
    return 0;
}

/* ---- reading ---- */

static bool key_is(const msgpack_object *k, const char *key, size_t n)
{
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n && memcmp(k->via.str.ptr, key, n) == 0;
}

msgpack_object *rec_map_getw(msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t n = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (key_is(&map->via.map.ptr[i].key, key, n))
            return &map->via.map.ptr[i].val;
    return NULL;
}

const msgpack_object *rec_map_get(const msgpack_object *map, const char *key)
{
    return rec_map_getw((msgpack_object *)map, key);
}

const msgpack_object *rec_get(const rec_t *r, const char *key) { return rec_map_get(&r->root, key); }

bool rec_obj_is_str(const msgpack_object *o, const char *s) { return o && key_is(o, s, strlen(s)); }

bool rec_get_str(const msgpack_object *map, const char *key, char *buf, size_t bufsize)
{
    const msgpack_object *o = rec_map_get(map, key);
    if (!o || o->type != MSGPACK_OBJECT_STR || bufsize == 0)
        return false;
    size_t n = o->via.str.size < bufsize - 1 ? o->via.str.size : bufsize - 1;
    memcpy(buf, o->via.str.ptr, n);
    buf[n] = 0;
    return true;
}

bool rec_get_int(const msgpack_object *map, const char *key, int64_t *out)
{
    const msgpack_object *o = rec_map_get(map, key);
    if (!o)
        return false;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
        *out = (int64_t)o->via.u64;
        return true;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = o->via.i64;
        return true;
    }
    return false;
}

bool rec_get_bool(const msgpack_object *map, const char *key, bool *out)
{
    const msgpack_object *o = rec_map_get(map, key);
    if (!o || o->type != MSGPACK_OBJECT_BOOLEAN)
        return false;
    *out = o->via.boolean;
    return true;
}

const char *rec_id(const rec_t *r, char *buf, size_t bufsize)
{
    if (!rec_get_str(&r->root, "id", buf, bufsize) && bufsize)
        buf[0] = 0;
    return buf;
}

const char *rec_source(const rec_t *r, char *buf, size_t bufsize)
{
    if (!rec_get_str(&r->root, "source", buf, bufsize) && bufsize)
        buf[0] = 0;
    return buf;
}

int64_t rec_epoch(const rec_t *r)
{
    int64_t v;
    return rec_get_int(&r->root, "epoch", &v) ? v : -1;
}

int64_t rec_seq(const rec_t *r)
{
    int64_t v;
    return rec_get_int(&r->root, "seq", &v) ? v : -1;
}

/* ---- making values ---- */

msgpack_object rec_strn(rec_t *r, const char *s, size_t n)
{
    msgpack_object o = {.type = MSGPACK_OBJECT_STR};
    char *p = n ? msgpack_zone_malloc_no_align(r->zone, n) : NULL;
    if (n && !p)
        return rec_nil(); // out of memory: callers see a nil where a string was asked
    if (n)
        memcpy(p, s, n);
    o.via.str.ptr = p;
    o.via.str.size = (uint32_t)n;
    return o;
}

msgpack_object rec_str(rec_t *r, const char *s) { return rec_strn(r, s, strlen(s)); }

msgpack_object rec_int(int64_t v)
{
    msgpack_object o;
    if (v >= 0) {
        o.type = MSGPACK_OBJECT_POSITIVE_INTEGER;
        o.via.u64 = (uint64_t)v;
    } else {
        o.type = MSGPACK_OBJECT_NEGATIVE_INTEGER;
        o.via.i64 = v;
    }
    return o;
}

msgpack_object rec_bool(bool v) { return (msgpack_object){.type = MSGPACK_OBJECT_BOOLEAN, .via.boolean = v}; }
msgpack_object rec_float(double v) { return (msgpack_object){.type = MSGPACK_OBJECT_FLOAT64, .via.f64 = v}; }
msgpack_object rec_nil(void) { return (msgpack_object){.type = MSGPACK_OBJECT_NIL}; }
msgpack_object rec_map(void) { return (msgpack_object){.type = MSGPACK_OBJECT_MAP}; }
msgpack_object rec_array(void) { return (msgpack_object){.type = MSGPACK_OBJECT_ARRAY}; }

/* Containers grow by copying into a larger zone block; records have few keys,
 * and the zone frees everything at once. */
int rec_set(rec_t *r, msgpack_object *map, const char *key, msgpack_object val)
{
    msgpack_object *old = rec_map_getw(map, key);
    if (old) {
        *old = val;
        return 0;
    }
    uint32_t n = map->via.map.size;
    msgpack_object_kv *kv = msgpack_zone_malloc(r->zone, (n + 1) * sizeof *kv);
    if (!kv)
        return -1;
    if (n)
        memcpy(kv, map->via.map.ptr, n * sizeof *kv);
    kv[n].key = rec_str(r, key);
    if (kv[n].key.type != MSGPACK_OBJECT_STR)
        return -1;
    kv[n].val = val;
    map->via.map.ptr = kv;
    map->via.map.size = n + 1;
    return 0;
}

int rec_push(rec_t *r, msgpack_object *array, msgpack_object val)
{
    uint32_t n = array->via.array.size;
    msgpack_object *a = msgpack_zone_malloc(r->zone, (n + 1) * sizeof *a);
    if (!a)
        return -1;
    if (n)
        memcpy(a, array->via.array.ptr, n * sizeof *a);
    a[n] = val;
    array->via.array.ptr = a;
    array->via.array.size = n + 1;
    return 0;
}

int rec_copy_obj(rec_t *r, const msgpack_object *src, msgpack_object *out)
{
    *out = *src;
    switch (src->type) {
    case MSGPACK_OBJECT_STR:
    case MSGPACK_OBJECT_BIN: {
        uint32_t n = src->via.str.size;
        if (!n)
            return 0;
        char *p = msgpack_zone_malloc_no_align(r->zone, n);
        if (!p)
            return -1;
        memcpy(p, src->via.str.ptr, n);
        out->via.str.ptr = p;
        return 0;
    }
    case MSGPACK_OBJECT_EXT: {
        uint32_t n = src->via.ext.size;
        if (!n)
            return 0;
        char *p = msgpack_zone_malloc_no_align(r->zone, n);
        if (!p)
            return -1;
        memcpy(p, src->via.ext.ptr, n);
        out->via.ext.ptr = p;
        return 0;
    }
    case MSGPACK_OBJECT_ARRAY: {
        uint32_t n = src->via.array.size;
        if (!n)
            return 0;
        msgpack_object *a = msgpack_zone_malloc(r->zone, n * sizeof *a);
        if (!a)
            return -1;
        for (uint32_t i = 0; i < n; i++)
            if (rec_copy_obj(r, &src->via.array.ptr[i], &a[i]))
                return -1;
        out->via.array.ptr = a;
        return 0;
    }
    case MSGPACK_OBJECT_MAP: {
        uint32_t n = src->via.map.size;
        if (!n)
            return 0;
        msgpack_object_kv *kv = msgpack_zone_malloc(r->zone, n * sizeof *kv);
        if (!kv)
            return -1;
        for (uint32_t i = 0; i < n; i++)
            if (rec_copy_obj(r, &src->via.map.ptr[i].key, &kv[i].key) ||
                rec_copy_obj(r, &src->via.map.ptr[i].val, &kv[i].val))
                return -1;
        out->via.map.ptr = kv;
        return 0;
    }
    default: return 0;
    }
}

/* ---- tensors ---- */

uint64_t rec_tensor_numel(const rec_tensor_t *t)
{
    uint64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= (uint64_t)t->shape[i];
    return n;
}

int rec_tensor_obj(rec_t *r, const rec_tensor_t *t, bool copy, msgpack_object *out, char *err)
{
    if (t->dtype >= REC_DTYPE_COUNT || t->ndim < 0 || t->ndim > REC_MAX_DIMS) {
        snprintf(err, REC_ERR_LEN, "tensor: bad dtype or rank");
        return -1;
    }
    uint64_t numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0 || (t->shape[i] && numel > UINT32_MAX / (uint64_t)t->shape[i])) {
            snprintf(err, REC_ERR_LEN, "tensor: dimension %d is %lld", i, (long long)t->shape[i]);
            return -1;
        }
        numel *= (uint64_t)t->shape[i];
    }
    if (numel * rec_dtype_size(t->dtype) != t->nbytes || t->nbytes > UINT32_MAX) {
        snprintf(err, REC_ERR_LEN, "tensor: %zu data bytes for %s of %llu elements", t->nbytes,
                 rec_dtype_name(t->dtype), (unsigned long long)numel);
        return -1;
    }
    msgpack_object m = rec_map(), shape = rec_array();
    for (int i = 0; i < t->ndim; i++)
        if (rec_push(r, &shape, rec_int(t->shape[i])))
            goto oom;
    msgpack_object data = {.type = MSGPACK_OBJECT_BIN};
    data.via.bin.size = (uint32_t)t->nbytes;
    data.via.bin.ptr = t->data;
    if (copy && t->nbytes) {
        char *p = msgpack_zone_malloc_no_align(r->zone, t->nbytes);
        if (!p)
            goto oom;
        memcpy(p, t->data, t->nbytes);
        data.via.bin.ptr = p;
    }
    if (rec_set(r, &m, "dtype", rec_str(r, rec_dtype_name(t->dtype))) || rec_set(r, &m, "shape", shape) ||
        rec_set(r, &m, "data", data))
        goto oom;
    *out = m;
    return 0;
oom:
    snprintf(err, REC_ERR_LEN, "tensor: out of memory");
    return -1;
}

int rec_tensor_get(const msgpack_object *o, rec_tensor_t *t, char *err)
{
    if (!o || o->type != MSGPACK_OBJECT_MAP) {
        snprintf(err, REC_ERR_LEN, "tensor: not a map");
        return -1;
    }
    const msgpack_object *dt = rec_map_get(o, "dtype"), *shape = rec_map_get(o, "shape"),
                         *data = rec_map_get(o, "data");
    if (!dt || dt->type != MSGPACK_OBJECT_STR) {
        snprintf(err, REC_ERR_LEN, "tensor: \"dtype\" must be a string");
        return -1;
    }
    if (rec_dtype_parse(dt->via.str.ptr, dt->via.str.size, &t->dtype)) {
        char shown[160];
        snprintf(err, REC_ERR_LEN, "tensor: unknown dtype \"%s\", expected u8, i32, f16, bf16 or f32",
                 rec_printable(shown, sizeof shown, dt->via.str.ptr, dt->via.str.size, 32));
        return -1;
    }
    if (!shape || shape->type != MSGPACK_OBJECT_ARRAY || shape->via.array.size > REC_MAX_DIMS) {
        snprintf(err, REC_ERR_LEN, "tensor: \"shape\" must be an array of at most %d integers", REC_MAX_DIMS);
        return -1;
    }
    if (!data || data->type != MSGPACK_OBJECT_BIN) {
        snprintf(err, REC_ERR_LEN, "tensor: \"data\" must be bytes (msgpack bin)");
        return -1;
    }
    t->ndim = (int)shape->via.array.size;
    uint64_t numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        const msgpack_object *d = &shape->via.array.ptr[i];
        if (d->type != MSGPACK_OBJECT_POSITIVE_INTEGER || d->via.u64 > UINT32_MAX) {
            snprintf(err, REC_ERR_LEN, "tensor: shape[%d] must be an integer in [0, 2^32)", i);
            return -1;
        }
        t->shape[i] = (int64_t)d->via.u64;
        // data is at most 4 GiB (a msgpack bin), so any product past that is a mismatch
        if (numel <= UINT32_MAX)
            numel *= d->via.u64;
    }
    size_t es = rec_dtype_size(t->dtype);
    if (numel > UINT32_MAX || numel * es != data->via.bin.size) {
        snprintf(err, REC_ERR_LEN, "tensor: data is %u bytes, %s shape needs %llu", data->via.bin.size,
                 rec_dtype_name(t->dtype),
                 numel > UINT32_MAX ? (unsigned long long)numel : (unsigned long long)(numel * es));
        return -1;
    }
    t->data = data->via.bin.ptr;
    t->nbytes = data->via.bin.size;
    return 0;
}

/* ---- builders ---- */

rec_t *rec_new_sample(const char *source, int64_t seq, int64_t epoch, const char *task)
{
    rec_t *r = rec_new(REC_SAMPLE);
    if (!r)
        return NULL;
    char id[1024];
    snprintf(id, sizeof id, "%s#%lld", source, (long long)seq);
    if (rec_set(r, &r->root, "id", rec_str(r, id)) || rec_set(r, &r->root, "source", rec_str(r, source)) ||
        rec_set(r, &r->root, "seq", rec_int(seq)) || rec_set(r, &r->root, "epoch", rec_int(epoch)) ||
        (task && rec_set(r, &r->root, "task", rec_str(r, task))) || rec_set(r, &r->root, "segments", rec_array()))
        rec_destroy(&r);
    return r;
}

rec_t *rec_new_end(const char *source, int64_t epoch, int64_t count)
{
    rec_t *r = rec_new(REC_END);
    if (!r)
        return NULL;
    if (rec_set(r, &r->root, "source", rec_str(r, source)) || rec_set(r, &r->root, "epoch", rec_int(epoch)) ||
        rec_set(r, &r->root, "count", rec_int(count)))
        rec_destroy(&r);
    return r;
}

rec_t *rec_new_reject(const rec_t *sample, const char *stage, const char *error)
{
    rec_t *r = rec_new(REC_REJECT);
    if (!r)
        return NULL;
    static const char *carried[] = {"id", "source", "seq", "epoch", "dlv"}; // dlv: deliver.h
    for (size_t i = 0; i < sizeof carried / sizeof *carried; i++) {
        const msgpack_object *o = rec_get(sample, carried[i]);
        msgpack_object c;
        if (o && (rec_copy_obj(r, o, &c) || rec_set(r, &r->root, carried[i], c)))
            goto oom;
    }
    msgpack_object copy;
    if (rec_set(r, &r->root, "stage", rec_str(r, stage)) || rec_set(r, &r->root, "error", rec_str(r, error)) ||
        rec_copy_obj(r, &sample->root, &copy) || rec_set(r, &r->root, "sample", copy))
        goto oom;
    return r;
oom:
    rec_destroy(&r);
    return NULL;
}

/* ---- schema ---- */

/* Prepend text to the NUL-terminated path (bounded by plen). */
static void path_prepend(char *path, size_t plen, const char *text, size_t n)
{
    size_t have = strlen(path);
    if (n >= plen)
        n = plen - 1;
    if (have + n >= plen)
        have = plen - 1 - n;
    memmove(path + n, path, have);
    memcpy(path, text, n);
    path[n + have] = 0;
}

/* Walks the tree: string keys everywhere, every map with "dtype" a valid
 * tensor, depth bounded. A valid record formats nothing: on an error, the
 * failing node writes its message into err and its place into path, and each
 * level prepends its own key or index on the way back up. */
static int check_tree(const msgpack_object *o, int depth, const rec_limits_t *lim, char *path, size_t plen, char *err)
{
    char step[256];
    if (depth > lim->max_depth) {
        snprintf(err, REC_ERR_LEN, "nested deeper than %d", lim->max_depth);
        return -1;
    }
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < o->via.array.size; i++)
            if (check_tree(&o->via.array.ptr[i], depth + 1, lim, path, plen, err)) {
                int n = snprintf(step, sizeof step, "[%u]", i);
                path_prepend(path, plen, step, (size_t)n);
                return -1;
            }
    } else if (o->type == MSGPACK_OBJECT_MAP) {
        if (rec_map_get(o, "dtype")) {
            rec_tensor_t t;
            return rec_tensor_get(o, &t, err) ? -1 : 0;
        }
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR) {
                snprintf(err, REC_ERR_LEN, "map key #%u is not a string", i);
                return -1;
            }
            if (check_tree(&kv->val, depth + 1, lim, path, plen, err)) {
                char shown[200];
                int n = snprintf(step, sizeof step, ".%s",
                                 rec_printable(shown, sizeof shown, kv->key.via.str.ptr, kv->key.via.str.size, 40));
                path_prepend(path, plen, step, (size_t)n);
                return -1;
            }
        }
    }
    return 0;
}

static int need(const msgpack_object *map, const char *key, msgpack_object_type type, const char *what,
                const char *where, char *err)
{
    const msgpack_object *o = rec_map_get(map, key);
    if (!o || o->type != type) {
        snprintf(err, REC_ERR_LEN, "%s\"%s\": %s, expected %s", where, key, o ? "wrong type" : "missing", what);
        return -1;
    }
    return 0;
}

static int maybe(const msgpack_object *map, const char *key, msgpack_object_type type, const char *what,
                 const char *where, char *err)
{
    return rec_map_get(map, key) ? need(map, key, type, what, where, err) : 0;
}

static int check_segment(const msgpack_object *seg, uint32_t i, char *err)
{
    char where[48];
    snprintf(where, sizeof where, "segments[%u].", i);
    if (seg->type != MSGPACK_OBJECT_MAP) {
        snprintf(err, REC_ERR_LEN, "segments[%u]: expected a map", i);
        return -1;
    }
    const msgpack_object *kind = rec_map_get(seg, "kind");
    bool text = rec_obj_is_str(kind, "text"), image = rec_obj_is_str(kind, "image");
    if (!text && !image) {
        snprintf(err, REC_ERR_LEN, "%s\"kind\": expected \"text\" or \"image\"", where);
        return -1;
    }
    if (maybe(seg, "role", MSGPACK_OBJECT_STR, "a string", where, err) ||
        maybe(seg, "loss", MSGPACK_OBJECT_BOOLEAN, "true or false", where, err))
        return -1;
    if (text) {
        if (need(seg, "text", MSGPACK_OBJECT_STR, "a string", where, err))
            return -1;
        const msgpack_object *tok = rec_map_get(seg, "tokens");
        rec_tensor_t t;
        if (tok && (rec_tensor_get(tok, &t, err) || t.dtype != REC_I32 || t.ndim != 1)) {
            snprintf(err, REC_ERR_LEN, "%s\"tokens\": expected a 1-D i32 tensor", where);
            return -1;
        }
        return 0;
    }
    if (maybe(seg, "und", MSGPACK_OBJECT_BOOLEAN, "true or false", where, err) ||
        maybe(seg, "gen", MSGPACK_OBJECT_BOOLEAN, "true or false", where, err) ||
        maybe(seg, "path", MSGPACK_OBJECT_STR, "a string", where, err))
        return -1;
    static const char *pixels[] = {"vit", "vae"};
    for (int k = 0; k < 2; k++) {
        const msgpack_object *px = rec_map_get(seg, pixels[k]);
        rec_tensor_t t;
        if (px && (rec_tensor_get(px, &t, err) || t.dtype != REC_U8 || t.ndim != 3 || t.shape[2] != 3)) {
            snprintf(err, REC_ERR_LEN, "%s\"%s\": expected a u8 tensor of shape [H,W,3]", where, pixels[k]);
            return -1;
        }
    }
    if (!rec_map_get(seg, "path") && !rec_map_get(seg, "vae") && !rec_map_get(seg, "vit") &&
        !rec_map_get(seg, "latent")) {
        snprintf(err, REC_ERR_LEN, "%s\"path\": missing, expected a path or pixels", where);
        return -1;
    }
    return 0;
}

static int nonneg(const msgpack_object *map, const char *key, char *err)
{
    return need(map, key, MSGPACK_OBJECT_POSITIVE_INTEGER, "an integer >= 0", "", err);
}

int rec_validate(const rec_t *r, const rec_limits_t *lim, char *err)
{
    const msgpack_object *root = &r->root;
    if (root->type != MSGPACK_OBJECT_MAP) {
        snprintf(err, REC_ERR_LEN, "record: expected a map");
        return -1;
    }
    char path[256] = "", what[REC_ERR_LEN];
    if (check_tree(root, 0, lim ? lim : &rec_default_limits, path, sizeof path, what)) {
        snprintf(err, REC_ERR_LEN, "record%s: %s", path, what);
        return -1;
    }
    int64_t v;
    if (!rec_get_int(root, "v", &v)) {
        snprintf(err, REC_ERR_LEN, "\"v\": %s, expected 1", rec_get(r, "v") ? "wrong type" : "missing");
        return -1;
    }
    if (v != REC_VERSION) {
        snprintf(err, REC_ERR_LEN, "\"v\": record version %lld, this build reads version %d", (long long)v,
                 REC_VERSION);
        return -1;
    }
    switch (r->type) {
    case REC_SAMPLE: {
        if (need(root, "id", MSGPACK_OBJECT_STR, "a string", "", err) ||
            need(root, "source", MSGPACK_OBJECT_STR, "a string", "", err) || nonneg(root, "seq", err) ||
            nonneg(root, "epoch", err) || maybe(root, "task", MSGPACK_OBJECT_STR, "a string", "", err) ||
            need(root, "segments", MSGPACK_OBJECT_ARRAY, "an array of segments", "", err))
            return -1;
        const msgpack_object *segs = rec_get(r, "segments");
        for (uint32_t i = 0; i < segs->via.array.size; i++)
            if (check_segment(&segs->via.array.ptr[i], i, err))
                return -1;
        return 0;
    }
    case REC_REJECT:
        if (need(root, "id", MSGPACK_OBJECT_STR, "a string", "", err) ||
            need(root, "source", MSGPACK_OBJECT_STR, "a string", "", err) ||
            need(root, "stage", MSGPACK_OBJECT_STR, "a string", "", err) ||
            need(root, "error", MSGPACK_OBJECT_STR, "a string", "", err) ||
            maybe(root, "sample", MSGPACK_OBJECT_MAP, "a map", "", err) || nonneg(root, "epoch", err))
            return -1;
        return 0;
    case REC_END:
        if (need(root, "source", MSGPACK_OBJECT_STR, "a string", "", err) || nonneg(root, "epoch", err) ||
            nonneg(root, "count", err))
            return -1;
        return 0;
    default: snprintf(err, REC_ERR_LEN, "record: unknown type"); return -1;
    }
}
