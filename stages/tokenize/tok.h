/* tok.h — Qwen2 byte-level BPE from a HuggingFace tokenizer.json, encoding
 * exactly as HuggingFace tokenizers does (issue 4), and decoding.
 *
 * What a tokenizer.json may hold (anything else is an error naming it):
 *   model          BPE: vocab, merges ("a b" strings or [a, b] pairs), no
 *                  dropout, no unk token, no subword prefix/suffix, no byte
 *                  fallback; ignore_merges either way
 *   added_tokens   matched before pre-tokenization, leftmost-longest, as HF
 *                  does by default: normalized=false ones in the raw text,
 *                  normalized=true ones in each normalized remainder;
 *                  lstrip, rstrip and single_word must be false
 *   normalizer     NFC, or none
 *   pre_tokenizer  Sequence[Split(the Qwen2 pattern, Isolated), ByteLevel
 *                  (no prefix space, no regex)]; the pattern is scanned by
 *                  hand (pretok.c), so any other pattern is refused
 *   decoder        ByteLevel; post_processor ByteLevel or none (it changes no
 *                  ids: encode adds no begin/end tokens)
 *
 * A tok_t keeps a per-word cache, so one tok_t serves one thread. Library
 * rule: functions return a status and fill err (TOK_ERR_LEN bytes). */
#ifndef BAGEL_TOK_H
#define BAGEL_TOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TOK_ERR_LEN 256

typedef struct tok tok_t;

/* A growable array of ids and a growable byte buffer; zero-initialize, reuse,
 * free with tok_ids_free / tok_buf_free. */
typedef struct {
    int32_t *ids;
    size_t n, cap;
} tok_ids_t;

typedef struct {
    char *p;
    size_t n, cap;
} tok_buf_t;

/* Load from a file, or from JSON bytes in memory. NULL and err on failure:
 * missing or unreadable file, bad JSON, an unsupported component. */
tok_t *tok_load(const char *path, char *err);
tok_t *tok_load_json(const char *json, size_t len, char *err);

/* tok_load keeps what it built from a tokenizer.json in a cache file named
 * by the JSON's size and hash, tok-<hash>-<size>.bin, and builds from that
 * file when it is there: a few milliseconds instead of about 0.6 s for
 * Qwen2's. The directory: cache_dir when given ("off": no cache), else
 * $BAGEL_CACHE_DIR ("off" or empty: no cache), $XDG_CACHE_HOME/bagelpipe,
 * ~/.cache/bagelpipe. A cache file that is damaged, or cannot be read or
 * written, costs only the time: the JSON is read and the file made again,
 * and info->cache_note says what happened. info may be NULL. */
typedef struct {
    bool from_cache;              // built from the cache file
    char cache[4096];             // the cache file ("" without a cache)
    char cache_note[1024];        // why the cache was not used or not written ("" when all went well)
    double ms;                    // the whole load
} tok_load_info_t;
tok_t *tok_load_cached(const char *path, const char *cache_dir, tok_load_info_t *info, char *err);
void tok_destroy(tok_t **t);

/* Append the ids of text[0,n) (UTF-8) to out; no begin/end tokens. 0, or -1
 * with err (text that is not UTF-8, out of memory). */
int tok_encode(tok_t *t, const char *text, size_t n, tok_ids_t *out, char *err);

/* Append the bytes of ids to out: vocabulary tokens through the reverse
 * ByteLevel map, added tokens as their content. The bytes are what HF's
 * decode(skip_special_tokens=False) shows, before its lossy UTF-8 step (a
 * prefix of a generation may end inside a character). 0, or -1 with err for
 * an id out of range. */
int tok_decode(const tok_t *t, const int32_t *ids, size_t n, tok_buf_t *out, char *err);

/* One more than the largest id; every id encode gives is below it. */
int32_t tok_n_ids(const tok_t *t);
/* The id of a token given as its content ("<|im_start|>") or as a
 * vocabulary string; -1 when there is none. */
int32_t tok_token_id(const tok_t *t, const char *content);

/* NFC of text[0,n) into out (replacing its contents); -1 when not UTF-8. */
int tok_nfc(const char *text, size_t n, tok_buf_t *out, char *err);

/* Append one id / n bytes (kept NUL-terminated); -1 when out of memory. */
int tok_ids_push(tok_ids_t *v, int32_t id);
int tok_buf_put(tok_buf_t *b, const void *p, size_t n);
void tok_ids_free(tok_ids_t *v);
void tok_buf_free(tok_buf_t *b);

#endif
