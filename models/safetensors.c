/* safetensors.c — the safetensors reader (validating, mmap), the sharded
 * checkpoint reader and the writer. The format and the rules are in
 * safetensors.h and docs/checkpoints.md. The header is parsed with jansson,
 * which also rejects invalid UTF-8 and (with JSON_REJECT_DUPLICATES) repeated
 * names; everything else is checked here before any tensor is handed out. */
#include "safetensors.h"

#include "../ipc/half.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_INDEX ((size_t)64 << 20) /* bytes of model.safetensors.index.json */

static const struct {
    const char *name;
    size_t size;
} dtypes[ST_NDTYPES] = {
    [ST_BOOL] = {"BOOL", 1},       [ST_U8] = {"U8", 1},           [ST_I8] = {"I8", 1},   [ST_F8_E5M2] = {"F8_E5M2", 1},
    [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E8M0] = {"F8_E8M0", 1}, [ST_I16] = {"I16", 2}, [ST_U16] = {"U16", 2},
    [ST_F16] = {"F16", 2},         [ST_BF16] = {"BF16", 2},       [ST_I32] = {"I32", 4}, [ST_U32] = {"U32", 4},
    [ST_F32] = {"F32", 4},         [ST_C64] = {"C64", 8},         [ST_F64] = {"F64", 8}, [ST_I64] = {"I64", 8},
    [ST_U64] = {"U64", 8},
};

const char *st_dtype_name(int dtype) { return dtype >= 0 && dtype < ST_NDTYPES ? dtypes[dtype].name : NULL; }

size_t st_dtype_size(int dtype) { return dtype >= 0 && dtype < ST_NDTYPES ? dtypes[dtype].size : 0; }

int st_dtype_from_name(const char *name)
{
    for (int i = 0; i < ST_NDTYPES; i++)
        if (strcmp(dtypes[i].name, name) == 0)
            return i;
    return -1;
}

/* ---- error helpers */

static void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* A name from a file, printable on one line: control bytes and quotes
 * escaped, cut at 120 bytes. */
static const char *show_q(const char *s, char *buf, size_t cap, int quotes)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && o + 8 < cap; p++) {
        if (o >= 120) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (*p < 0x20 || *p == 0x7f || (quotes && (*p == '"' || *p == '\\')))
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", *p);
        else
            buf[o++] = (char)*p;
    }
    buf[o] = 0;
    return buf;
}

static void fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

static const char *show(const char *s, char *buf, size_t cap) { return show_q(s, buf, cap, 1); }

/* ---- name lookup: open addressing over tensor pointers */

typedef struct {
    const st_tensor_t **slot;
    size_t mask;
} st_hash_t;

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int hash_init(st_hash_t *h, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap <<= 1;
    h->slot = calloc(cap, sizeof *h->slot);
    h->mask = cap - 1;
    return h->slot ? 0 : -1;
}

/* Inserts t; returns the tensor already there under that name, or NULL. */
static const st_tensor_t *hash_put(st_hash_t *h, const st_tensor_t *t)
{
    for (size_t i = fnv1a(t->name) & h->mask;; i = (i + 1) & h->mask) {
        if (!h->slot[i]) {
            h->slot[i] = t;
            return NULL;
        }
        if (strcmp(h->slot[i]->name, t->name) == 0)
            return h->slot[i];
    }
}

static const st_tensor_t *hash_get(const st_hash_t *h, const char *name)
{
    if (!h->slot || !name)
        return NULL;
    for (size_t i = fnv1a(name) & h->mask; h->slot[i]; i = (i + 1) & h->mask)
        if (strcmp(h->slot[i]->name, name) == 0)
            return h->slot[i];
    return NULL;
}

/* ---- the reader */

struct st_file {
    char *path;
    void *map; /* the mmap, or NULL for st_open_mem */
    size_t maplen;
    int n;
    st_tensor_t *t;
    int nmeta;
    char **meta; /* key, value, key, value ... */
    char *names; /* all tensor names, NUL-separated */
    st_hash_t hash;
};

static int cmp_offset(const void *a, const void *b)
{
    const st_tensor_t *x = *(const st_tensor_t *const *)a, *y = *(const st_tensor_t *const *)b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

/* A non-negative JSON integer; -1 when v is not one. */
static int64_t json_nonneg(const json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) >= 0 ? json_integer_value(v) : -1;
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* Parses and checks one tensor entry into t. */
static int parse_entry(st_file_t *f, const char *name, json_t *v, st_tensor_t *t, size_t datalen, char *err,
                       size_t errlen)
{
    char nb[160];
    const char *P = f->path;
#define FAIL(...)                                                                                                      \
    do {                                                                                                               \
        char msg_[256];                                                                                                \
        snprintf(msg_, sizeof msg_, __VA_ARGS__);                                                                      \
        seterr(err, errlen, "%s: tensor \"%s\": %s", P, show(name, nb, sizeof nb), msg_);                              \
        return -1;                                                                                                     \
    } while (0)
    if (!json_is_object(v))
        FAIL("entry is %s, expected an object with dtype, shape, data_offsets", json_kind(v));
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd))
        FAIL("dtype is %s, expected a string such as \"F32\"", jd ? json_kind(jd) : "missing");
    const char *ds = json_string_value(jd);
    t->dtype = st_dtype_from_name(ds);
    if (t->dtype < 0) {
        char db[64];
        if (!strcmp(ds, "F4") || !strcmp(ds, "F6_E2M3") || !strcmp(ds, "F6_E3M2"))
            FAIL("dtype %s (sub-byte) is not supported", ds);
        FAIL("unknown dtype \"%s\"", show(ds, db, sizeof db));
    }
    size_t esize = dtypes[t->dtype].size;
    if (!json_is_array(js))
        FAIL("shape is %s, expected an array of non-negative integers", js ? json_kind(js) : "missing");
    size_t nd = json_array_size(js);
    if (nd > ST_MAX_DIMS)
        FAIL("shape has %zu dimensions, at most %d are supported", nd, ST_MAX_DIMS);
    t->ndim = (int)nd;
    uint64_t numel = 1;
    int overflow = 0;
    for (size_t i = 0; i < nd; i++) {
        int64_t d = json_nonneg(json_array_get(js, i));
        if (d < 0)
            FAIL("shape[%zu] is %s, expected a non-negative integer", i,
                 json_is_integer(json_array_get(js, i)) ? "negative" : json_kind(json_array_get(js, i)));
        t->shape[i] = d;
        if (__builtin_mul_overflow(numel, (uint64_t)d, &numel))
            overflow = 1;
    }
    char sb[200];
    fmt_shape(sb, sizeof sb, t->ndim, t->shape);
    uint64_t need;
    // a zero dimension makes the product 0 whatever overflowed before it
    for (size_t i = 0; i < nd; i++)
        if (t->shape[i] == 0)
            overflow = 0, numel = 0;
    if (overflow || __builtin_mul_overflow(numel, (uint64_t)esize, &need) || need > (uint64_t)INT64_MAX)
        FAIL("shape %s %s overflows 64 bits", sb, ds);
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        FAIL("data_offsets is %s, expected [begin, end]", !jo                 ? "missing"
                                                          : json_is_array(jo) ? "an array of another length"
                                                                              : json_kind(jo));
    int64_t b = json_nonneg(json_array_get(jo, 0)), e = json_nonneg(json_array_get(jo, 1));
    if (b < 0 || e < 0)
        FAIL("data_offsets are not two non-negative integers");
    if (b > e)
        FAIL("data_offsets [%lld, %lld] end before they begin", (long long)b, (long long)e);
    if ((uint64_t)e > datalen)
        FAIL("data_offsets [%lld, %lld] run past the end of the data region (%zu bytes)", (long long)b, (long long)e,
             datalen);
    if ((uint64_t)(e - b) != need)
        FAIL("data_offsets [%lld, %lld] hold %lld bytes, shape %s %s needs %llu", (long long)b, (long long)e,
             (long long)(e - b), sb, ds, (unsigned long long)need);
    t->numel = (int64_t)numel;
    t->nbytes = (size_t)need;
    t->offset = (size_t)b;
#undef FAIL
    return 0;
}

static int parse(st_file_t *f, const unsigned char *buf, size_t len, char *err, size_t errlen)
{
    const char *P = f->path;
    if (len < 8) {
        seterr(err, errlen, "%s: file is %zu bytes, too short for the 8-byte header length (not a safetensors file?)",
               P, len);
        return -1;
    }
    uint64_t hn = 0;
    for (int i = 7; i >= 0; i--)
        hn = hn << 8 | buf[i];
    if (hn > ST_MAX_HEADER) {
        seterr(err, errlen, "%s: header length %llu is over the %llu-byte limit (not a safetensors file?)", P,
               (unsigned long long)hn, (unsigned long long)ST_MAX_HEADER);
        return -1;
    }
    if (hn > len - 8) {
        seterr(err, errlen, "%s: header length %llu runs past the end of the file (%zu bytes): truncated?", P,
               (unsigned long long)hn, len);
        return -1;
    }
    if (hn == 0 || buf[8] != '{') {
        seterr(err, errlen, "%s: header does not start with '{' (not a safetensors file?)", P);
        return -1;
    }
    const unsigned char *data = buf + 8 + hn;
    size_t datalen = len - 8 - (size_t)hn;
    json_error_t je;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hn, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        char tb[200];
        seterr(err, errlen, "%s: header: invalid JSON at byte %d: %s", P, je.position,
               show_q(je.text, tb, sizeof tb, 0));
        return -1;
    }
    int rc = -1;
    if (!json_is_object(root)) {
        seterr(err, errlen, "%s: header is %s, expected a JSON object", P, json_kind(root));
        goto out;
    }
    json_t *meta = json_object_get(root, "__metadata__");
    size_t n = json_object_size(root) - (meta ? 1 : 0), namebytes = 0;
    if (meta) {
        if (!json_is_object(meta)) {
            seterr(err, errlen, "%s: __metadata__ is %s, expected an object of strings", P, json_kind(meta));
            goto out;
        }
        f->meta = calloc(2 * json_object_size(meta) + 1, sizeof *f->meta);
        if (!f->meta)
            goto oom;
        const char *k;
        json_t *v;
        json_object_foreach(meta, k, v)
        {
            char kb[160];
            if (!json_is_string(v)) {
                seterr(err, errlen, "%s: __metadata__ \"%s\" is %s, expected a string", P, show(k, kb, sizeof kb),
                       json_kind(v));
                goto out;
            }
            f->meta[2 * f->nmeta] = strdup(k);
            f->meta[2 * f->nmeta + 1] = strdup(json_string_value(v));
            f->nmeta++;
            if (!f->meta[2 * f->nmeta - 2] || !f->meta[2 * f->nmeta - 1])
                goto oom;
        }
    }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) namebytes += strlen(k) + 1;
    f->t = calloc(n ? n : 1, sizeof *f->t);
    f->names = malloc(namebytes ? namebytes : 1);
    if (!f->t || !f->names || hash_init(&f->hash, n) != 0)
        goto oom;
    char *np = f->names;
    json_object_foreach(root, k, v)
    {
        if (v == meta)
            continue;
        st_tensor_t *t = &f->t[f->n];
        size_t kl = strlen(k) + 1;
        memcpy(np, k, kl);
        t->name = np;
        np += kl;
        t->file = f->path;
        if (parse_entry(f, t->name, v, t, datalen, err, errlen) != 0)
            goto out;
        t->data = data + t->offset;
        f->n++;
        if (hash_put(&f->hash, t)) { // jansson refuses duplicates; kept as a guard
            char nb[160];
            seterr(err, errlen, "%s: tensor \"%s\" appears twice", P, show(t->name, nb, sizeof nb));
            goto out;
        }
    }
    // the data region must be exactly the tensors, back to back (as HF's reader
    // requires): no overlap, no gap, nothing after the last one
    {
        const st_tensor_t **ord = malloc((f->n ? (size_t)f->n : 1) * sizeof *ord);
        if (!ord)
            goto oom;
        for (int i = 0; i < f->n; i++)
            ord[i] = &f->t[i];
        qsort(ord, (size_t)f->n, sizeof *ord, cmp_offset);
        size_t at = 0;
        const st_tensor_t *prev = NULL;
        for (int i = 0; i < f->n; i++) {
            const st_tensor_t *t = ord[i];
            char nb[160], pb[160];
            if (t->offset < at) {
                seterr(err, errlen, "%s: tensor \"%s\": data_offsets [%zu, %zu] overlap tensor \"%s\" [%zu, %zu]", P,
                       show(t->name, nb, sizeof nb), t->offset, t->offset + t->nbytes, show(prev->name, pb, sizeof pb),
                       prev->offset, prev->offset + prev->nbytes);
                free(ord);
                goto out;
            }
            if (t->offset > at) {
                seterr(err, errlen,
                       "%s: tensor \"%s\": data_offsets [%zu, %zu] leave a gap: bytes [%zu, %zu) of the data region "
                       "belong to no tensor",
                       P, show(t->name, nb, sizeof nb), t->offset, t->offset + t->nbytes, at, t->offset);
                free(ord);
                goto out;
            }
            at = t->offset + t->nbytes;
            if (t->nbytes)
                prev = t;
        }
        free(ord);
        if (at != datalen) {
            seterr(err, errlen,
                   "%s: data region is %zu bytes but the tensors end at %zu (%zu bytes belong to no tensor)", P,
                   datalen, at, datalen - at);
            goto out;
        }
    }
    rc = 0;
    goto out;
oom:
    seterr(err, errlen, "%s: out of memory reading the header", P);
out:
    json_decref(root);
    return rc;
}

static st_file_t *file_new(const char *path)
{
    st_file_t *f = calloc(1, sizeof *f);
    if (f && !(f->path = strdup(path ? path : "(buffer)"))) {
        free(f);
        return NULL;
    }
    return f;
}

st_file_t *st_open_mem(const void *buf, size_t len, const char *label, char *err, size_t errlen)
{
    st_file_t *f = file_new(label);
    if (!f) {
        seterr(err, errlen, "%s: out of memory", label ? label : "(buffer)");
        return NULL;
    }
    if (parse(f, buf, len, err, errlen) != 0)
        st_close(&f);
    return f;
}

st_file_t *st_open(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        seterr(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(sb.st_mode)) {
        seterr(err, errlen, "%s: %s", path,
               S_ISDIR(sb.st_mode) ? "is a directory, expected a .safetensors file" : "not a regular file");
        close(fd);
        return NULL;
    }
    size_t len = (size_t)sb.st_size;
    void *map = NULL;
    if (len > 0) {
        map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            seterr(err, errlen, "%s: cannot map %zu bytes: %s", path, len, strerror(errno));
            close(fd);
            return NULL;
        }
    }
    close(fd);
    st_file_t *f = file_new(path);
    if (!f) {
        seterr(err, errlen, "%s: out of memory", path);
        if (map)
            munmap(map, len);
        return NULL;
    }
    f->map = map;
    f->maplen = len;
    if (parse(f, map ? map : (const void *)"", len, err, errlen) != 0)
        st_close(&f);
    return f;
}

void st_close(st_file_t **fp)
{
    if (!fp || !*fp)
        return;
    st_file_t *f = *fp;
    if (f->map)
        munmap(f->map, f->maplen);
    for (int i = 0; f->meta && f->meta[i]; i++)
        free(f->meta[i]);
    free(f->meta);
    free(f->t);
    free(f->names);
    free(f->hash.slot);
    free(f->path);
    free(f);
    *fp = NULL;
}

const char *st_path(const st_file_t *f) { return f->path; }
int st_count(const st_file_t *f) { return f ? f->n : 0; }
const st_tensor_t *st_get(const st_file_t *f, int i) { return f && i >= 0 && i < f->n ? &f->t[i] : NULL; }
const st_tensor_t *st_find(const st_file_t *f, const char *name) { return f ? hash_get(&f->hash, name) : NULL; }
int st_metadata_count(const st_file_t *f) { return f ? f->nmeta : 0; }
const char *st_metadata_key(const st_file_t *f, int i) { return f && i >= 0 && i < f->nmeta ? f->meta[2 * i] : NULL; }

const char *st_metadata_value(const st_file_t *f, int i)
{
    return f && i >= 0 && i < f->nmeta ? f->meta[2 * i + 1] : NULL;
}

const char *st_metadata_get(const st_file_t *f, const char *key)
{
    for (int i = 0; f && key && i < f->nmeta; i++)
        if (strcmp(f->meta[2 * i], key) == 0)
            return f->meta[2 * i + 1];
    return NULL;
}

/* ---- tensors */

int st_read_f32(const st_tensor_t *t, float *dst, size_t n, char *err, size_t errlen)
{
    char nb[160];
    if ((uint64_t)t->numel != n) {
        seterr(err, errlen, "%s: tensor \"%s\": has %lld elements, the destination holds %zu", t->file,
               show(t->name, nb, sizeof nb), (long long)t->numel, n);
        return -1;
    }
    const unsigned char *p = t->data;
    switch (t->dtype) {
    case ST_F32:
        if (n)
            memcpy(dst, p, n * 4);
        return 0;
    case ST_BF16:
    case ST_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
            dst[i] = t->dtype == ST_BF16 ? half_bf16_to_f32(h) : half_f16_to_f32(h);
        }
        return 0;
    case ST_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
        }
        return 0;
    default:
        seterr(err, errlen, "%s: tensor \"%s\": dtype %s, expected F32, BF16, F16 or F64", t->file,
               show(t->name, nb, sizeof nb), st_dtype_name(t->dtype));
        return -1;
    }
}

int st_expect(const st_tensor_t *t, int dtype, int ndim, const int64_t *shape, char *err, size_t errlen)
{
    int ok = (dtype < 0 || t->dtype == dtype) && t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == shape[i];
    if (ok)
        return 0;
    char nb[160], have[200], want[200];
    fmt_shape(have, sizeof have, t->ndim, t->shape);
    fmt_shape(want, sizeof want, ndim, shape);
    seterr(err, errlen, "%s: tensor \"%s\": shape %s %s, expected %s %s", t->file, show(t->name, nb, sizeof nb), have,
           st_dtype_name(t->dtype), want, dtype < 0 ? "(any dtype)" : st_dtype_name(dtype));
    return -1;
}

/* ---- sharded checkpoints */

struct st_set {
    int nfiles;
    st_file_t **files;
    int n;
    const st_tensor_t **t;
    st_hash_t hash;
};

void st_set_close(st_set_t **sp)
{
    if (!sp || !*sp)
        return;
    st_set_t *s = *sp;
    for (int i = 0; i < s->nfiles; i++)
        st_close(&s->files[i]);
    free(s->files);
    free(s->t);
    free(s->hash.slot);
    free(s);
    *sp = NULL;
}

int st_set_count(const st_set_t *s) { return s ? s->n : 0; }
const st_tensor_t *st_set_get(const st_set_t *s, int i) { return s && i >= 0 && i < s->n ? s->t[i] : NULL; }
const st_tensor_t *st_set_find(const st_set_t *s, const char *name) { return s ? hash_get(&s->hash, name) : NULL; }
int st_set_nfiles(const st_set_t *s) { return s ? s->nfiles : 0; }
const st_file_t *st_set_file(const st_set_t *s, int i) { return s && i >= 0 && i < s->nfiles ? s->files[i] : NULL; }

/* Indexes every tensor of the set's files. */
static int set_index(st_set_t *s, char *err, size_t errlen)
{
    size_t n = 0;
    for (int i = 0; i < s->nfiles; i++)
        n += (size_t)st_count(s->files[i]);
    s->t = malloc((n ? n : 1) * sizeof *s->t);
    if (!s->t || hash_init(&s->hash, n) != 0) {
        seterr(err, errlen, "out of memory indexing %zu tensors", n);
        return -1;
    }
    for (int i = 0; i < s->nfiles; i++)
        for (int j = 0; j < st_count(s->files[i]); j++) {
            const st_tensor_t *t = st_get(s->files[i], j), *dup = hash_put(&s->hash, t);
            if (dup) {
                char nb[160];
                seterr(err, errlen, "%s: tensor \"%s\" is also in %s", t->file, show(t->name, nb, sizeof nb),
                       dup->file);
                return -1;
            }
            s->t[s->n++] = t;
        }
    return 0;
}

/* A shard's name from an index: relative, no "..", no empty component. */
static int shard_name_ok(const char *s)
{
    if (!*s || *s == '/' || strlen(s) > 255)
        return 0;
    for (const char *c = s; *c;) {
        const char *e = strchr(c, '/');
        size_t l = e ? (size_t)(e - c) : strlen(c);
        if (l == 0 || (l == 2 && c[0] == '.' && c[1] == '.'))
            return 0;
        c += l + (e ? 1 : 0);
    }
    return 1;
}

static st_set_t *set_open_index(const char *path, char *err, size_t errlen)
{
    st_set_t *s = calloc(1, sizeof *s);
    json_t *root = NULL;
    if (!s) {
        seterr(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    FILE *fp = fopen(path, "rb");
    struct stat sb;
    if (!fp || fstat(fileno(fp), &sb) != 0) {
        seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    if ((size_t)sb.st_size > ST_MAX_INDEX) {
        seterr(err, errlen, "%s: %lld bytes, over the %zu-byte limit for an index", path, (long long)sb.st_size,
               ST_MAX_INDEX);
        goto fail;
    }
    json_error_t je;
    root = json_loadf(fp, JSON_REJECT_DUPLICATES, &je);
    fclose(fp);
    fp = NULL;
    if (!root) {
        char tb[200];
        seterr(err, errlen, "%s:%d: invalid JSON: %s", path, je.line, show_q(je.text, tb, sizeof tb, 0));
        goto fail;
    }
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm)) {
        seterr(err, errlen, "%s: weight_map is %s, expected an object mapping tensor names to files", path,
               wm ? json_kind(wm) : "missing");
        goto fail;
    }
    // open each distinct file once, in the order of first mention
    char *pcopy = strdup(path);
    if (!pcopy) {
        seterr(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    const char *dir = dirname(pcopy);
    s->files = calloc(json_object_size(wm) + 1, sizeof *s->files);
    const char **fnames = calloc(json_object_size(wm) + 1, sizeof *fnames);
    int ok = s->files && fnames;
    if (!ok)
        seterr(err, errlen, "%s: out of memory", path);
    const char *k;
    json_t *v;
    json_object_foreach(wm, k, v)
    {
        if (!ok)
            break;
        char nb[160], fb[300];
        if (!json_is_string(v) || !shard_name_ok(json_string_value(v))) {
            seterr(err, errlen, "%s: weight_map \"%s\": %s, expected a file name beside the index", path,
                   show(k, nb, sizeof nb),
                   json_is_string(v) ? show(json_string_value(v), fb, sizeof fb) : json_kind(v));
            ok = 0;
            break;
        }
        int fi = 0;
        while (fi < s->nfiles && strcmp(fnames[fi], json_string_value(v)) != 0)
            fi++;
        if (fi == s->nfiles) {
            char full[PATH_MAX];
            snprintf(full, sizeof full, "%s/%s", dir, json_string_value(v));
            fnames[fi] = json_string_value(v);
            if (!(s->files[fi] = st_open(full, err, errlen))) {
                ok = 0;
                break;
            }
            s->nfiles++;
        }
        const st_tensor_t *t = st_find(s->files[fi], k);
        if (!t) {
            seterr(err, errlen, "%s: weight_map lists tensor \"%s\" in %s, which does not hold it", path,
                   show(k, nb, sizeof nb), st_path(s->files[fi]));
            ok = 0;
        }
    }
    // every tensor of every shard listed, under that shard
    for (int fi = 0; ok && fi < s->nfiles; fi++)
        for (int j = 0; ok && j < st_count(s->files[fi]); j++) {
            const st_tensor_t *t = st_get(s->files[fi], j);
            json_t *e = json_object_get(wm, t->name);
            if (!e || strcmp(json_string_value(e), fnames[fi]) != 0) {
                char nb[160];
                seterr(err, errlen, "%s: tensor \"%s\" is not listed under this file in %s", t->file,
                       show(t->name, nb, sizeof nb), path);
                ok = 0;
            }
        }
    free(fnames);
    free(pcopy);
    if (!ok || set_index(s, err, errlen) != 0)
        goto fail;
    json_decref(root);
    return s;
fail:
    if (fp)
        fclose(fp);
    json_decref(root);
    st_set_close(&s);
    return NULL;
}

st_set_t *st_set_open(const char *path, char *err, size_t errlen)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char full[PATH_MAX];
    if (S_ISDIR(sb.st_mode)) {
        snprintf(full, sizeof full, "%s/model.safetensors.index.json", path);
        if (stat(full, &sb) == 0)
            return set_open_index(full, err, errlen);
        snprintf(full, sizeof full, "%s/model.safetensors", path);
        if (stat(full, &sb) != 0) {
            seterr(err, errlen, "%s: holds neither model.safetensors.index.json nor model.safetensors", path);
            return NULL;
        }
        path = full;
    } else {
        size_t l = strlen(path);
        if (l >= 5 && strcmp(path + l - 5, ".json") == 0)
            return set_open_index(path, err, errlen);
    }
    st_set_t *s = calloc(1, sizeof *s);
    if (!s || !(s->files = calloc(1, sizeof *s->files))) {
        free(s);
        seterr(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    if (!(s->files[0] = st_open(path, err, errlen))) {
        st_set_close(&s);
        return NULL;
    }
    s->nfiles = 1;
    if (set_index(s, err, errlen) != 0)
        st_set_close(&s);
    return s;
}

/* ---- the writer */

typedef struct {
    char *name;
    int dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t nbytes;
    const void *data;
    int from_f32; /* data is f32, converted to dtype while writing */
} wentry_t;

struct st_writer {
    wentry_t *e;
    int n, cap;
    char **meta; /* key, value pairs */
    int nmeta;
};

st_writer_t *st_writer_new(void) { return calloc(1, sizeof(st_writer_t)); }

void st_writer_destroy(st_writer_t **wp)
{
    if (!wp || !*wp)
        return;
    st_writer_t *w = *wp;
    for (int i = 0; i < w->n; i++)
        free(w->e[i].name);
    for (int i = 0; i < 2 * w->nmeta; i++)
        free(w->meta[i]);
    free(w->meta);
    free(w->e);
    free(w);
    *wp = NULL;
}

static int utf8_ok(const char *s)
{
    json_t *j = json_string(s); // jansson validates UTF-8
    json_decref(j);
    return j != NULL;
}

static int writer_add(st_writer_t *w, const char *name, int dtype, int ndim, const int64_t *shape, const void *data,
                      int from_f32, char *err, size_t errlen)
{
    char nb[160];
    if (!name || !*name || !utf8_ok(name) || strcmp(name, "__metadata__") == 0) {
        seterr(err, errlen, "tensor \"%s\": a name must be non-empty valid UTF-8 and not __metadata__",
               name ? show(name, nb, sizeof nb) : "(null)");
        return -1;
    }
    if (!st_dtype_name(dtype) || ndim < 0 || ndim > ST_MAX_DIMS) {
        seterr(err, errlen, "tensor \"%s\": bad dtype %d or ndim %d", show(name, nb, sizeof nb), dtype, ndim);
        return -1;
    }
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->e[i].name, name) == 0) {
            seterr(err, errlen, "tensor \"%s\" added twice", show(name, nb, sizeof nb));
            return -1;
        }
    uint64_t numel = 1, nbytes;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || __builtin_mul_overflow(numel, (uint64_t)shape[i], &numel)) {
            seterr(err, errlen, "tensor \"%s\": bad shape", show(name, nb, sizeof nb));
            return -1;
        }
    if (__builtin_mul_overflow(numel, (uint64_t)dtypes[dtype].size, &nbytes) || nbytes > (uint64_t)INT64_MAX ||
        (nbytes && !data)) {
        seterr(err, errlen, "tensor \"%s\": shape overflows or no data", show(name, nb, sizeof nb));
        return -1;
    }
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        wentry_t *e = realloc(w->e, (size_t)cap * sizeof *e);
        if (!e) {
            seterr(err, errlen, "out of memory");
            return -1;
        }
        w->e = e;
        w->cap = cap;
    }
    wentry_t *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    if (!(e->name = strdup(name))) {
        seterr(err, errlen, "out of memory");
        return -1;
    }
    e->dtype = dtype;
    e->ndim = ndim;
    if (ndim)
        memcpy(e->shape, shape, (size_t)ndim * sizeof *shape);
    e->nbytes = (size_t)nbytes;
    e->data = data;
    e->from_f32 = from_f32;
    w->n++;
    return 0;
}

int st_writer_add(st_writer_t *w, const char *name, int dtype, int ndim, const int64_t *shape, const void *data,
                  char *err, size_t errlen)
{
    return writer_add(w, name, dtype, ndim, shape, data, 0, err, errlen);
}

int st_writer_add_f32(st_writer_t *w, const char *name, int dtype, int ndim, const int64_t *shape, const float *data,
                      char *err, size_t errlen)
{
    if (dtype != ST_F32 && dtype != ST_BF16 && dtype != ST_F16) {
        char nb[160];
        seterr(err, errlen, "tensor \"%s\": f32 data is stored as F32, BF16 or F16, not %s",
               show(name ? name : "(null)", nb, sizeof nb), st_dtype_name(dtype) ? st_dtype_name(dtype) : "?");
        return -1;
    }
    return writer_add(w, name, dtype, ndim, shape, data, dtype != ST_F32, err, errlen);
}

int st_writer_set_metadata(st_writer_t *w, const char *key, const char *value, char *err, size_t errlen)
{
    if (!key || !value || !utf8_ok(key) || !utf8_ok(value)) {
        seterr(err, errlen, "__metadata__: keys and values must be valid UTF-8");
        return -1;
    }
    char *v = strdup(value);
    if (!v) {
        seterr(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < w->nmeta; i++)
        if (strcmp(w->meta[2 * i], key) == 0) {
            free(w->meta[2 * i + 1]);
            w->meta[2 * i + 1] = v;
            return 0;
        }
    char **m = realloc(w->meta, (size_t)(2 * w->nmeta + 2) * sizeof *m);
    char *k = strdup(key);
    if (!m || !k) {
        free(v);
        free(k);
        if (m)
            w->meta = m;
        seterr(err, errlen, "out of memory");
        return -1;
    }
    w->meta = m;
    m[2 * w->nmeta] = k;
    m[2 * w->nmeta + 1] = v;
    w->nmeta++;
    return 0;
}

/* a growing byte buffer for the header */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf_t;

static void sb_put(sbuf_t *b, const char *s, size_t l)
{
    if (b->oom)
        return;
    if (b->n + l + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + l + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, l);
    b->n += l;
}

static void sb_str(sbuf_t *b, const char *s) { sb_put(b, s, strlen(s)); }

/* A JSON string as serde_json writes it: quote, backslash and control bytes
 * escaped, everything else (UTF-8 included) as is. */
static void sb_json_str(sbuf_t *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c;
            sb_put(b, esc, 2);
        } else if (c < 0x20) {
            const char *short_ = c == '\b'   ? "\\b"
                                 : c == '\t' ? "\\t"
                                 : c == '\n' ? "\\n"
                                 : c == '\f' ? "\\f"
                                 : c == '\r' ? "\\r"
                                             : NULL;
            if (short_)
                sb_str(b, short_);
            else {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                sb_str(b, esc);
            }
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static int cmp_wentry(const void *a, const void *b)
{
    const wentry_t *x = *(const wentry_t *const *)a, *y = *(const wentry_t *const *)b;
    if (x->dtype != y->dtype)
        return x->dtype > y->dtype ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t k = write(fd, c, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

static int write_entry(int fd, const wentry_t *e)
{
    if (!e->from_f32)
        return write_all(fd, e->data, e->nbytes);
    uint16_t buf[8192];
    const float *src = e->data;
    size_t n = e->nbytes / 2;
    for (size_t i = 0; i < n;) {
        size_t k = n - i < 8192 ? n - i : 8192;
        for (size_t j = 0; j < k; j++) {
            uint16_t h = e->dtype == ST_BF16 ? half_f32_to_bf16(src[i + j]) : half_f32_to_f16(src[i + j]);
            unsigned char *o = (unsigned char *)&buf[j]; // little-endian on every host
            o[0] = (unsigned char)(h & 0xff);
            o[1] = (unsigned char)(h >> 8);
        }
        if (write_all(fd, buf, k * 2) != 0)
            return -1;
        i += k;
    }
    return 0;
}

int st_writer_write(st_writer_t *w, const char *path, char *err, size_t errlen)
{
    const wentry_t **ord = malloc((w->n ? (size_t)w->n : 1) * sizeof *ord);
    sbuf_t b = {0};
    char tmp[PATH_MAX];
    int fd = -1, rc = -1, created = 0;
    if (!ord) {
        seterr(err, errlen, "%s: out of memory", path);
        return -1;
    }
    for (int i = 0; i < w->n; i++)
        ord[i] = &w->e[i];
    qsort(ord, (size_t)w->n, sizeof *ord, cmp_wentry);
    sb_str(&b, "{");
    if (w->nmeta) {
        sb_str(&b, "\"__metadata__\":{");
        for (int i = 0; i < w->nmeta; i++) {
            if (i)
                sb_str(&b, ",");
            sb_json_str(&b, w->meta[2 * i]);
            sb_str(&b, ":");
            sb_json_str(&b, w->meta[2 * i + 1]);
        }
        sb_str(&b, "}");
    }
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const wentry_t *e = ord[i];
        char num[64];
        if (i || w->nmeta)
            sb_str(&b, ",");
        sb_json_str(&b, e->name);
        sb_str(&b, ":{\"dtype\":\"");
        sb_str(&b, dtypes[e->dtype].name);
        sb_str(&b, "\",\"shape\":[");
        for (int d = 0; d < e->ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)e->shape[d]);
            sb_str(&b, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", off, off + e->nbytes);
        sb_str(&b, num);
        off += e->nbytes;
    }
    sb_str(&b, "}");
    while (b.n % 8)
        sb_str(&b, " ");
    if (b.oom) {
        seterr(err, errlen, "%s: out of memory building the header", path);
        goto out;
    }
    if ((uint64_t)b.n > ST_MAX_HEADER) {
        seterr(err, errlen, "%s: header of %zu bytes is over the %llu-byte limit readers accept", path, b.n,
               (unsigned long long)ST_MAX_HEADER);
        goto out;
    }
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
        seterr(err, errlen, "%s: path too long", path);
        goto out;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        seterr(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        goto out;
    }
    created = 1;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)b.n >> (8 * i));
    int ok = write_all(fd, len8, 8) == 0 && write_all(fd, b.p, b.n) == 0;
    for (int i = 0; ok && i < w->n; i++)
        ok = write_entry(fd, ord[i]) == 0;
    if (!ok || fsync(fd) != 0) {
        seterr(err, errlen, "%s: write failed: %s", tmp, strerror(errno));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        seterr(err, errlen, "%s: close failed: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        seterr(err, errlen, "%s: cannot rename %s to it: %s", path, tmp, strerror(errno));
        goto out;
    }
    // make the rename itself durable
    char dcopy[PATH_MAX];
    snprintf(dcopy, sizeof dcopy, "%s", path);
    int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (rc != 0 && created)
        unlink(tmp);
    free(b.p);
    free(ord);
    return rc;
}
