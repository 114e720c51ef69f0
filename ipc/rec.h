/* rec.h — records and tensors of the bagelpipe stream (architecture.md §3).
 *
 * A record is one msgpack map. In memory it is a msgpack_object tree whose
 * nodes live in the record's zone; strings and byte arrays may point into the
 * message buffer it was decoded from, which the record keeps alive. Keys a
 * stage does not know are part of the tree and so travel on untouched.
 *
 * Every record carries "v":1 and "type" (sample, reject or end). A map with a
 * "dtype" key anywhere in a record is a tensor: {"dtype","shape","data"}, and
 * its data length must equal dtype size × product(shape).
 *
 * Library rule: functions return a status and fill the caller's err buffer
 * (REC_ERR_LEN bytes); they never print and never exit. */
#ifndef BAGEL_REC_H
#define BAGEL_REC_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REC_ERR_LEN  256
#define REC_VERSION  1
#define REC_MAX_DIMS 8

typedef enum { REC_U8, REC_I32, REC_F16, REC_BF16, REC_F32, REC_DTYPE_COUNT } rec_dtype_t;

typedef enum { REC_SAMPLE, REC_REJECT, REC_END, REC_TYPE_COUNT } rec_type_t;

typedef struct {
    rec_dtype_t dtype;
    int ndim;
    int64_t shape[REC_MAX_DIMS];
    const void *data; // nbytes bytes, little-endian elements
    size_t nbytes;
} rec_tensor_t;

/* Limits applied to everything decoded from outside. */
typedef struct {
    size_t max_message; // bytes of one encoded record (default 256 MiB)
    int max_depth;      // nesting of maps and arrays (default 24)
    uint32_t max_items; // values in one record, all levels (default 4M)
} rec_limits_t;

extern const rec_limits_t rec_default_limits;

typedef struct rec {
    msgpack_object root; // always a map
    msgpack_zone *zone;  // owns every node; finalizers release borrowed buffers
    rec_type_t type;
    size_t wire_size; // encoded size when decoded from a stream, else 0
} rec_t;

/* dtypes */
const char *rec_dtype_name(rec_dtype_t dt);
size_t rec_dtype_size(rec_dtype_t dt);
int rec_dtype_parse(const char *s, size_t n, rec_dtype_t *out); // 0 or -1
const char *rec_type_name(rec_type_t t);

/* Lifetime. rec_new makes an empty record of the given type with "v" and
 * "type" set. rec_destroy frees the record and nulls the caller's pointer. */
rec_t *rec_new(rec_type_t type);
void rec_destroy(rec_t **r);

/* Keep `data` alive for the record's lifetime; release(data) runs at destroy.
 * Takes ownership of data; returns -1 (and releases it) when out of memory. */
int rec_adopt(rec_t *r, void (*release)(void *), void *data);

/* Read access to maps. Keys are compared as bytes. rec_map_getw is the same
 * lookup for changing the value in place. */
const msgpack_object *rec_map_get(const msgpack_object *map, const char *key);
msgpack_object *rec_map_getw(msgpack_object *map, const char *key);
const msgpack_object *rec_get(const rec_t *r, const char *key);
bool rec_obj_is_str(const msgpack_object *o, const char *s);
/* A string field as a NUL-terminated copy in buf (truncated to bufsize-1);
 * returns false when missing or not a string. */
bool rec_get_str(const msgpack_object *map, const char *key, char *buf, size_t bufsize);
bool rec_get_int(const msgpack_object *map, const char *key, int64_t *out);
bool rec_get_bool(const msgpack_object *map, const char *key, bool *out);

/* Common fields (empty string / -1 when absent). */
const char *rec_id(const rec_t *r, char *buf, size_t bufsize);
const char *rec_source(const rec_t *r, char *buf, size_t bufsize);
int64_t rec_epoch(const rec_t *r);
int64_t rec_seq(const rec_t *r);

/* Values made in the record's zone; strings and blobs are copied. */
msgpack_object rec_str(rec_t *r, const char *s);
msgpack_object rec_strn(rec_t *r, const char *s, size_t n);
msgpack_object rec_int(int64_t v);
msgpack_object rec_bool(bool v);
msgpack_object rec_float(double v);
msgpack_object rec_nil(void);
/* An empty map or array; rec_set and rec_push grow them in the zone. */
msgpack_object rec_map(void);
msgpack_object rec_array(void);
/* A tensor map. copy=true copies t->data into the zone; copy=false borrows it
 * (the caller keeps it alive, or hands it over with rec_adopt). */
int rec_tensor_obj(rec_t *r, const rec_tensor_t *t, bool copy, msgpack_object *out, char *err);

/* Set key in map (replacing an existing entry, else appending; the map grows
 * in the zone as needed). Returns 0, or -1 when out of memory. */
int rec_set(rec_t *r, msgpack_object *map, const char *key, msgpack_object val);
int rec_push(rec_t *r, msgpack_object *array, msgpack_object val);
/* Deep copy of a value from another record into r's zone. */
int rec_copy_obj(rec_t *r, const msgpack_object *src, msgpack_object *out);

/* Tensor view of a map ({"dtype","shape","data"}); validates sizes. */
int rec_tensor_get(const msgpack_object *o, rec_tensor_t *t, char *err);
uint64_t rec_tensor_numel(const rec_tensor_t *t);

/* Builders for the three record types. */
rec_t *rec_new_sample(const char *source, int64_t seq, int64_t epoch, const char *task);
rec_t *rec_new_end(const char *source, int64_t epoch, int64_t count);
/* A reject for `sample`: id, source, seq and epoch are taken from it and its
 * whole map is deep-copied under "sample". */
rec_t *rec_new_reject(const rec_t *sample, const char *stage, const char *error);

/* Schema check of a whole record: "v", "type", the fields of its type, string
 * keys everywhere, every tensor consistent. 0 or -1 with err naming the
 * field. */
int rec_validate(const rec_t *r, const rec_limits_t *lim, char *err);

/* Decode one message of exactly len bytes. The record references buf (no
 * copy): the caller keeps buf alive as long as the record (rec_adopt does
 * that). Returns 0; -1 with *out NULL when the bytes are not a record; -2
 * when they are a map that breaks the schema: *out then holds it as decoded,
 * so the caller can name it and turn it into a reject. */
int rec_decode(const void *buf, size_t len, const rec_limits_t *lim, rec_t **out, char *err);
/* rec_decode for bytes that are exactly one message rec_scan accepted with
 * the same limits (a stream reader has just scanned them). */
int rec_decode_scanned(const void *buf, size_t len, const rec_limits_t *lim, rec_t **out, char *err);

/* Bounded structural scan of a msgpack stream prefix: returns the length of the
 * first complete message, 0 when more bytes are needed (*need then gives a
 * lower bound of the total), or -1 with err when the bytes can never be a
 * valid message (bad type byte, too deep, too many items, too large). This
 * runs before msgpack-c allocates anything, so no header can make it allocate
 * more than the message could hold. */
long long rec_scan(const void *buf, size_t len, const rec_limits_t *lim, size_t *need, char *err);

/* Encoding. An encoder reuses its buffers across records; large byte arrays
 * (tensor data) are referenced, not copied, until the next encode. */
typedef struct rec_enc rec_enc_t;
rec_enc_t *rec_enc_new(void);
void rec_enc_destroy(rec_enc_t **e);
int rec_encode(rec_enc_t *e, const rec_t *r, char *err);
const struct iovec *rec_enc_iov(const rec_enc_t *e, int *n);
size_t rec_enc_size(const rec_enc_t *e);
/* Copy the encoding into one contiguous buffer of rec_enc_size() bytes. */
void rec_enc_gather(const rec_enc_t *e, void *dst);

/* Up to max bytes of s[0,n) as text fit for a one-line message: bytes
 * outside printable ASCII become \xHH, and "..." marks a cut. Returns dst. */
const char *rec_printable(char *dst, size_t dstsize, const char *s, size_t n, size_t max);

/* FNV-1a 64 of a byte range: the tensor checksum bagel-cat shows. */
uint64_t rec_fnv1a(const void *p, size_t n);

#endif
