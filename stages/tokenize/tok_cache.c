/* tok_cache.c — a tokenizer's spec (tok_impl.h) as bytes, and back.
 *
 * Parsing Qwen2's 11 MB tokenizer.json with jansson and looking up each
 * merge's three tokens takes about 0.6 s, and every tokenize replica of a
 * pipeline pays it at start. The spec in this form loads in a few
 * milliseconds (docs/tokenizer.md, Loading). Layout, native byte order
 * (the order mark refuses another):
 *
 *    0  "BAGELTOK"        8 bytes
 *    8  version           u32 (1)
 *   12  order mark        u32 0x01020304
 *   16  source size       u64  the tokenizer.json's bytes
 *   24  source hash       u64  tok_hash of them
 *   32  n_ids             i32
 *   36  flags             u32  bit 0 NFC, bit 1 ignore_merges
 *   40  nv, nm, na        u64 each
 *   64  strings length    u64
 *   72  vocab             nv x {u32 offset, u32 length, i32 id}
 *       merges            nm x {i32 left, i32 right, i32 merged}
 *       added             na x {u32 offset, u32 length, i32 id, u32 normalized}
 *       strings           the token strings, back to back
 *       checksum          u64  tok_hash of everything before it
 *
 * The file is outside data (a cache directory anyone may have written):
 * tok_cache_decode checks the sizes against the length before reading,
 * every string's span, the flags and the checksum; tok_build checks every
 * id. tests/fuzz/fuzz_tok_cache.c feeds it arbitrary bytes. */
#include "tok_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC      "BAGELTOK"
#define VERSION    1u
#define ORDER      0x01020304u
#define HEADER     72
#define VOCAB_REC  12
#define MERGE_REC  12
#define ADDED_REC  16
#define FLAG_NFC   1u
#define FLAG_IGNORE 2u

static void put32(char **p, uint32_t v) { memcpy(*p, &v, 4), *p += 4; }
static void put64(char **p, uint64_t v) { memcpy(*p, &v, 8), *p += 8; }

static uint32_t get32(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t get64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

int tok_cache_encode(const tok_spec_t *s, uint64_t src_size, uint64_t src_hash, char **out, size_t *len)
{
    uint64_t strings = 0;
    for (size_t i = 0; i < s->nv; i++)
        strings += s->vocab[i].n;
    for (size_t i = 0; i < s->na; i++)
        strings += s->added[i].n;
    if (strings > UINT32_MAX)
        return -1;
    size_t n = HEADER + s->nv * VOCAB_REC + s->nm * MERGE_REC + s->na * ADDED_REC + strings + 8;
    char *buf = malloc(n), *p = buf;
    if (!buf)
        return -1;
    memcpy(p, MAGIC, 8), p += 8;
    put32(&p, VERSION), put32(&p, ORDER), put64(&p, src_size), put64(&p, src_hash);
    put32(&p, (uint32_t)s->n_ids), put32(&p, (s->nfc ? FLAG_NFC : 0) | (s->ignore_merges ? FLAG_IGNORE : 0));
    put64(&p, s->nv), put64(&p, s->nm), put64(&p, s->na), put64(&p, strings);
    uint32_t off = 0;
    for (size_t i = 0; i < s->nv; i++) {
        put32(&p, off), put32(&p, s->vocab[i].n), put32(&p, (uint32_t)s->vocab[i].id);
        off += s->vocab[i].n;
    }
    for (size_t i = 0; i < s->nm; i++)
        put32(&p, (uint32_t)s->merges[i].a), put32(&p, (uint32_t)s->merges[i].b), put32(&p, (uint32_t)s->merges[i].m);
    for (size_t i = 0; i < s->na; i++) {
        put32(&p, off), put32(&p, s->added[i].n), put32(&p, (uint32_t)s->added[i].id);
        put32(&p, s->added[i].normalized);
        off += s->added[i].n;
    }
    for (size_t i = 0; i < s->nv; i++)
        memcpy(p, s->vocab[i].s, s->vocab[i].n), p += s->vocab[i].n;
    for (size_t i = 0; i < s->na; i++)
        memcpy(p, s->added[i].s, s->added[i].n), p += s->added[i].n;
    put64(&p, tok_hash(buf, (size_t)(p - buf)));
    *out = buf, *len = n;
    return 0;
}

#define FAIL(...)                                                                                                      \
    do {                                                                                                               \
        snprintf(err, TOK_ERR_LEN, __VA_ARGS__);                                                                       \
        goto fail;                                                                                                     \
    } while (0)

int tok_cache_decode(const void *data, size_t len, uint64_t src_size, uint64_t src_hash, bool any_source,
                     tok_spec_t *s, char *err)
{
    const char *buf = data;
    *s = (tok_spec_t){0};
    if (len < HEADER + 8 || memcmp(buf, MAGIC, 8) != 0)
        FAIL("not a tokenizer cache file");
    if (get32(buf + 8) != VERSION || get32(buf + 12) != ORDER)
        FAIL("version %u or byte order 0x%08x: version %u, 0x%08x expected", get32(buf + 8), get32(buf + 12),
             VERSION, ORDER);
    if (!any_source && (get64(buf + 16) != src_size || get64(buf + 24) != src_hash))
        FAIL("made from another tokenizer.json");
    uint32_t flags = get32(buf + 36);
    if (flags & ~(FLAG_NFC | FLAG_IGNORE))
        FAIL("unknown flags 0x%x", flags);
    uint64_t nv = get64(buf + 40), nm = get64(buf + 48), na = get64(buf + 56), strings = get64(buf + 64);
    // each bound first, so that the sum below cannot wrap
    uint64_t room = len - HEADER - 8;
    if (nv > room / VOCAB_REC || nm > room / MERGE_REC || na > room / ADDED_REC || strings > room ||
        nv * VOCAB_REC + nm * MERGE_REC + na * ADDED_REC + strings != room)
        FAIL("%zu bytes: the counts (%llu, %llu, %llu, %llu) do not add up to the size", len, (unsigned long long)nv,
             (unsigned long long)nm, (unsigned long long)na, (unsigned long long)strings);
    if (get64(buf + len - 8) != tok_hash(buf, len - 8))
        FAIL("checksum mismatch (a truncated or damaged file)");
    const char *v = buf + HEADER, *m = v + nv * VOCAB_REC, *a = m + nm * MERGE_REC, *str = a + na * ADDED_REC;
    s->n_ids = (int32_t)get32(buf + 32);
    s->nfc = flags & FLAG_NFC, s->ignore_merges = flags & FLAG_IGNORE;
    s->vocab = malloc((nv ? nv : 1) * sizeof *s->vocab);
    s->merges = malloc((nm ? nm : 1) * sizeof *s->merges);
    s->added = malloc((na ? na : 1) * sizeof *s->added);
    if (!s->vocab || !s->merges || !s->added)
        FAIL("out of memory");
    for (uint64_t i = 0; i < nv; i++, v += VOCAB_REC) {
        uint64_t off = get32(v), n = get32(v + 4);
        if (off + n > strings)
            FAIL("vocab[%llu]: string out of bounds", (unsigned long long)i);
        s->vocab[i] = (tok_str_t){str + off, (uint32_t)n, (int32_t)get32(v + 8), false};
    }
    for (uint64_t i = 0; i < nm; i++, m += MERGE_REC)
        s->merges[i] = (tok_pair_t){(int32_t)get32(m), (int32_t)get32(m + 4), (int32_t)get32(m + 8)};
    for (uint64_t i = 0; i < na; i++, a += ADDED_REC) {
        uint64_t off = get32(a), n = get32(a + 4);
        uint32_t norm = get32(a + 12);
        if (off + n > strings || norm > 1)
            FAIL("added[%llu]: string out of bounds or a flag not 0 or 1", (unsigned long long)i);
        s->added[i] = (tok_str_t){str + off, (uint32_t)n, (int32_t)get32(a + 8), norm == 1};
    }
    s->nv = nv, s->nm = nm, s->na = na;
    return 0;
fail:
    tok_spec_free(s);
    return -1;
}
