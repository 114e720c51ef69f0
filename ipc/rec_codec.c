/* rec_codec.c — records to and from msgpack bytes.
 *
 * Decoding is two steps: rec_scan walks the message's structure with every
 * size bounded (it allocates nothing), then msgpack-c builds the object tree.
 * msgpack-c sizes a container's node array from the count in its header, so
 * without the scan a five-byte "array of 4 billion" header would ask for
 * ~100 GB. After the scan each node msgpack-c allocates stands for at least
 * one byte that is really in the message. */
#include "rec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

/* ---- the bounded scan ---- */

static uint64_t be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

long long rec_scan(const void *buf, size_t len, const rec_limits_t *lim, size_t *need, char *err)
{
    const unsigned char *p = buf;
    if (!lim)
        lim = &rec_default_limits;
    uint64_t stack[64]; // values still to read in each open container
    int depth_cap = lim->max_depth < 64 ? lim->max_depth : 64;
    int top = 0;
    uint64_t items = 0;
    size_t pos = 0;
    *need = 0;
    if (len && !((p[0] & 0xf0) == 0x80 || p[0] == 0xde || p[0] == 0xdf)) {
        snprintf(err, REC_ERR_LEN, "not a record: first byte 0x%02x is not a msgpack map", p[0]);
        return -1;
    }
    for (;;) {
        if (pos >= len) {
            *need = pos + 1;
            return 0;
        }
        unsigned b = p[pos];
        size_t hdr = 1;     // type byte plus length field
        uint64_t body = 0;  // bytes after the header
        uint64_t count = 0; // values inside, for containers
        int lenbytes = 0;   // size of a length field to read
        int container = 0;
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
            // fixint, nil, bool
        } else if (b <= 0x8f) {
            count = 2 * (uint64_t)(b & 0x0f), container = 1;
        } else if (b <= 0x9f) {
            count = b & 0x0f, container = 1;
        } else if (b <= 0xbf) {
            body = b & 0x1f;
        } else if (b == 0xc1) {
            snprintf(err, REC_ERR_LEN, "byte %zu: 0xc1 is never used in msgpack", pos);
            return -1;
        } else {
            switch (b) {
            case 0xc4:
            case 0xd9: lenbytes = 1; break; // bin8, str8
            case 0xc5:
            case 0xda: lenbytes = 2; break; // bin16, str16
            case 0xc6:
            case 0xdb: lenbytes = 4; break;           // bin32, str32
            case 0xc7: lenbytes = 1, hdr += 1; break; // ext8 (+ type)
            case 0xc8: lenbytes = 2, hdr += 1; break; // ext16
            case 0xc9: lenbytes = 4, hdr += 1; break; // ext32
            case 0xca: body = 4; break;               // float32
            case 0xcb: body = 8; break;               // float64
            case 0xcc:
            case 0xd0: body = 1; break; // (u)int8
            case 0xcd:
            case 0xd1: body = 2; break; // (u)int16
            case 0xce:
            case 0xd2: body = 4; break; // (u)int32
            case 0xcf:
            case 0xd3: body = 8; break; // (u)int64
            case 0xd4: body = 2; break; // fixext1 (type + 1)
            case 0xd5: body = 3; break;
            case 0xd6: body = 5; break;
            case 0xd7: body = 9; break;
            case 0xd8: body = 17; break;
            case 0xdc: lenbytes = 2, container = 1; break; // array16
            case 0xdd: lenbytes = 4, container = 1; break; // array32
            case 0xde: lenbytes = 2, container = 2; break; // map16
            case 0xdf: lenbytes = 4, container = 2; break; // map32
            }
            if (pos + 1 + (size_t)lenbytes > len) {
                *need = pos + 1 + lenbytes;
                return 0;
            }
            if (lenbytes) {
                uint64_t n = be(p + pos + 1, lenbytes);
                if (container)
                    count = n * (uint64_t)container;
                else
                    body = n;
                hdr += lenbytes;
            }
        }
        if (container && count > lim->max_items) {
            snprintf(err, REC_ERR_LEN, "byte %zu: container of %llu values, limit %u", pos, (unsigned long long)count,
                     lim->max_items);
            return -1;
        }
        if (++items > lim->max_items) {
            snprintf(err, REC_ERR_LEN, "byte %zu: more than %u values in one record", pos, lim->max_items);
            return -1;
        }
        uint64_t end = (uint64_t)pos + hdr + body;
        if (end > lim->max_message) {
            snprintf(err, REC_ERR_LEN, "byte %zu: record larger than the %zu-byte limit", pos, lim->max_message);
            return -1;
        }
        if (end > len) {
            *need = (size_t)end;
            return 0;
        }
        pos = (size_t)end;
        if (container && count) {
            if (top >= depth_cap) {
                snprintf(err, REC_ERR_LEN, "byte %zu: nested deeper than %d", pos - hdr, depth_cap);
                return -1;
            }
            stack[top++] = count;
            continue;
        }
        // one value done: close every container it completes
        while (top > 0 && --stack[top - 1] == 0)
            top--;
        if (top == 0)
            return (long long)pos;
    }
}

/* ---- decode ---- */

static rec_type_t type_of(const msgpack_object *root, bool *known)
{
    const msgpack_object *t = rec_map_get(root, "type");
    *known = true;
    for (int i = 0; i < REC_TYPE_COUNT; i++)
        if (rec_obj_is_str(t, rec_type_name((rec_type_t)i)))
            return (rec_type_t)i;
    *known = false;
    return REC_SAMPLE;
}

int rec_decode(const void *buf, size_t len, const rec_limits_t *lim, rec_t **out, char *err)
{
    *out = NULL;
    size_t need;
    long long n = rec_scan(buf, len, lim, &need, err);
    if (n < 0)
        return -1;
    if (n == 0) {
        snprintf(err, REC_ERR_LEN, "truncated record: %zu bytes, at least %zu needed", len, need);
        return -1;
    }
    if ((size_t)n != len) {
        snprintf(err, REC_ERR_LEN, "%zu bytes after the end of the record", len - (size_t)n);
        return -1;
    }
    return rec_decode_scanned(buf, len, lim, out, err);
}

int rec_decode_scanned(const void *buf, size_t len, const rec_limits_t *lim, rec_t **out, char *err)
{
    *out = NULL;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    msgpack_unpack_return ret = msgpack_unpack_next(&up, buf, len, &off);
    if (ret != MSGPACK_UNPACK_SUCCESS || off != len || up.data.type != MSGPACK_OBJECT_MAP) {
        snprintf(err, REC_ERR_LEN, "msgpack could not decode the record (code %d)", (int)ret);
        msgpack_unpacked_destroy(&up);
        return -1;
    }
    rec_t *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, REC_ERR_LEN, "out of memory");
        msgpack_unpacked_destroy(&up);
        return -1;
    }
    r->root = up.data;
    r->zone = msgpack_unpacked_release_zone(&up);
    msgpack_unpacked_destroy(&up);
    if (!r->zone) // an empty map allocates nothing; later edits need a zone
        r->zone = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE);
    if (!r->zone) {
        free(r);
        snprintf(err, REC_ERR_LEN, "out of memory");
        return -1;
    }
    r->wire_size = len;
    *out = r;
    bool known;
    r->type = type_of(&r->root, &known);
    if (!known) {
        const msgpack_object *t = rec_get(r, "type");
        if (t && t->type == MSGPACK_OBJECT_STR) {
            char shown[160];
            snprintf(err, REC_ERR_LEN, "\"type\": \"%s\", expected sample, reject or end",
                     rec_printable(shown, sizeof shown, t->via.str.ptr, t->via.str.size, 32));
        } else
            snprintf(err, REC_ERR_LEN, "\"type\": %s, expected sample, reject or end", t ? "not a string" : "missing");
        return -2;
    }
    return rec_validate(r, lim, err) ? -2 : 0;
}

/* ---- encode ---- */

struct rec_enc {
    msgpack_vrefbuffer vbuf;
    msgpack_packer pk;
};

/* Byte arrays at least this long are referenced in the iovec, not copied. */
#define ENC_REF_SIZE   4096
#define ENC_CHUNK_SIZE 65536

rec_enc_t *rec_enc_new(void)
{
    rec_enc_t *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    if (!msgpack_vrefbuffer_init(&e->vbuf, ENC_REF_SIZE, ENC_CHUNK_SIZE)) {
        free(e);
        return NULL;
    }
    msgpack_packer_init(&e->pk, &e->vbuf, msgpack_vrefbuffer_write);
    return e;
}

void rec_enc_destroy(rec_enc_t **e)
{
    if (!e || !*e)
        return;
    msgpack_vrefbuffer_destroy(&(*e)->vbuf);
    free(*e);
    *e = NULL;
}

int rec_encode(rec_enc_t *e, const rec_t *r, char *err)
{
    msgpack_vrefbuffer_clear(&e->vbuf);
    if (msgpack_pack_object(&e->pk, r->root) != 0) {
        snprintf(err, REC_ERR_LEN, "encode: out of memory");
        return -1;
    }
    return 0;
}

const struct iovec *rec_enc_iov(const rec_enc_t *e, int *n)
{
    *n = (int)msgpack_vrefbuffer_veclen(&e->vbuf);
    return (const struct iovec *)msgpack_vrefbuffer_vec(&e->vbuf);
}

size_t rec_enc_size(const rec_enc_t *e)
{
    int n;
    const struct iovec *v = rec_enc_iov(e, &n);
    size_t s = 0;
    for (int i = 0; i < n; i++)
        s += v[i].iov_len;
    return s;
}

void rec_enc_gather(const rec_enc_t *e, void *dst)
{
    int n;
    const struct iovec *v = rec_enc_iov(e, &n);
    char *d = dst;
    for (int i = 0; i < n; i++) {
        memcpy(d, v[i].iov_base, v[i].iov_len);
        d += v[i].iov_len;
    }
}
