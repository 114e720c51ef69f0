/* tok_impl.h — the inside of a tok_t, shared by tok_load.c (building it),
 * pretok.c (normalizing and splitting text), bpe.c (merging a piece) and
 * tok.c (encode and decode). Not part of the library's interface. */
#ifndef BAGEL_TOK_IMPL_H
#define BAGEL_TOK_IMPL_H

#include "../common/utf8.h"
#include "tok.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Pair (left id, right id) -> (rank, merged id): open addressing, keys
 * ((uint64_t)left << 32 | right), an empty slot has rank UINT32_MAX. */
typedef struct {
    uint64_t key;
    uint32_t rank;
    int32_t id;
} tok_merge_t;

/* Bytes -> id for the vocabulary (ignore_merges and tok_token_id). */
typedef struct {
    uint64_t hash;
    uint32_t off, len; // into tok->dec_bytes
    int32_t id;        // -1: empty slot
} tok_vslot_t;

typedef struct {
    char *content; // bytes of the token's content (NUL-terminated copy)
    size_t len;
    int32_t id;
    bool normalized; // matched after normalization (else in the raw text)
} tok_added_t;

/* Direct-mapped cache of pieces already merged: the key bytes, then the ids. */
typedef struct {
    uint64_t hash;
    uint32_t klen, nids;
    char *data; // klen bytes, then nids int32 ids
    size_t cap;
} tok_cslot_t;

#define TOK_CACHE_SLOTS     (1u << 16)
#define TOK_CACHE_MAX_PIECE 64

struct tok {
    int32_t n_ids;     // one more than the largest id
    uint32_t *dec_off; // (n_ids) id's bytes are dec_bytes[dec_off[id], dec_end[id])
    uint32_t *dec_end; // (n_ids)
    uint8_t *dec_has;  // (n_ids) 1 where the id has a token
    char *dec_bytes;   // every token's decoded bytes
    size_t dec_len;
    int32_t byte_id[256]; // the vocabulary id of each single byte
    tok_merge_t *merges;
    uint64_t merge_mask;
    tok_vslot_t *vocab;
    uint64_t vocab_mask;
    tok_added_t *added;
    int n_added;
    bool first_raw[256], first_norm[256]; // first bytes of added tokens, by kind
    bool nfc;
    bool ignore_merges;
    tok_cslot_t *cache; // TOK_CACHE_SLOTS
    // scratch reused across calls
    tok_buf_t norm;
    int32_t *sym_id, *sym_next, *sym_prev;
    uint32_t *sym_rank;
    size_t sym_cap;
    void *heap;
    size_t heap_cap;
};

/* What a tok_t is built from, as tokenizer.json gives it (tok_load.c) or a
 * cache file holds it (tok_cache.c): strings point into the JSON tree or the
 * cache's bytes. tok_build checks every id against n_ids. */
typedef struct {
    const char *s; // a vocabulary token string (ByteLevel characters) or an added token's content
    uint32_t n;
    int32_t id;
    bool normalized; // added tokens only
} tok_str_t;

typedef struct {
    int32_t a, b, m; // left, right, merged id; the rank is the index
} tok_pair_t;

typedef struct {
    int32_t n_ids;
    bool nfc, ignore_merges;
    size_t nv, nm, na;
    tok_str_t *vocab; // nv
    tok_pair_t *merges; // nm
    tok_str_t *added; // na
} tok_spec_t;

tok_t *tok_build(const tok_spec_t *s, char *err);
void tok_spec_free(tok_spec_t *s); // the arrays, not the strings

/* tok_cache.c: a spec as bytes, for a tokenizer.json of src_size bytes
 * hashing to src_hash (tok_hash), and back. tok_cache_decode checks every
 * size, offset and id and a checksum; the strings of *s point into buf.
 * any_source: accept whatever source the file names (fuzzing). */
int tok_cache_encode(const tok_spec_t *s, uint64_t src_size, uint64_t src_hash, char **out, size_t *len);
int tok_cache_decode(const void *buf, size_t len, uint64_t src_size, uint64_t src_hash, bool any_source,
                     tok_spec_t *s, char *err);

uint64_t tok_hash(const void *p, size_t n);
int32_t tok_vocab_find(const tok_t *t, const char *p, size_t n);

/* ByteLevel: the character each byte becomes, and back (-1: not a mapped
 * character). */
uint32_t tok_byte_char(uint8_t b);
int tok_char_byte(uint32_t cp);

/* pretok.c. The class table must be built (tok_classes_init) before
 * tok_pretok_next runs. tok_pretok_next returns the end of the piece that
 * starts at i in the NFC text s[0,n) (valid UTF-8, i < n). */
void tok_classes_init(void);
size_t tok_pretok_next(const uint8_t *s, size_t n, size_t i);
/* The first character at or after i of valid UTF-8 s[0,n) that Unicode 9.0
 * had not assigned (n when none), its length in *len. */
size_t tok_next_after_u9(const uint8_t *s, size_t n, size_t i, size_t *len);

/* bpe.c: append the ids of one piece (raw bytes, n >= 1). */
int tok_bpe(tok_t *t, const uint8_t *p, size_t n, tok_ids_t *out, char *err);
/* The same without the cache and with the heap merge loop forced, for tests
 * that compare the two loops. */
int tok_bpe_heap(tok_t *t, const uint8_t *p, size_t n, tok_ids_t *out, char *err);
void tok_cache_free(tok_t *t);

#endif
