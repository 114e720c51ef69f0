/* tok.c — encode and decode: added tokens first, then NFC, the Qwen2 split
 * and byte-pair merging of each piece (the order HF's Tokenizer::encode
 * follows); decode maps ids back to bytes. */
#include "tok_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

int tok_ids_push(tok_ids_t *v, int32_t id)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 256;
        int32_t *p = realloc(v->ids, cap * sizeof *p);
        if (!p)
            return -1;
        v->ids = p, v->cap = cap;
    }
    v->ids[v->n++] = id;
    return 0;
}

int tok_buf_put(tok_buf_t *b, const void *p, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *q = realloc(b->p, cap);
        if (!q)
            return -1;
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

void tok_ids_free(tok_ids_t *v)
{
    free(v->ids);
    *v = (tok_ids_t){0};
}

void tok_buf_free(tok_buf_t *b)
{
    free(b->p);
    *b = (tok_buf_t){0};
}

void tok_destroy(tok_t **tp)
{
    tok_t *t = *tp;
    if (!t)
        return;
    free(t->dec_off);
    free(t->dec_end);
    free(t->dec_has);
    free(t->dec_bytes);
    free(t->merges);
    free(t->vocab);
    for (int i = 0; i < t->n_added; i++)
        free(t->added[i].content);
    free(t->added);
    tok_cache_free(t);
    tok_buf_free(&t->norm);
    free(t->sym_id);
    free(t->sym_next);
    free(t->sym_prev);
    free(t->sym_rank);
    free(t->heap);
    free(t);
    *tp = NULL;
}

int32_t tok_n_ids(const tok_t *t) { return t->n_ids; }

int32_t tok_token_id(const tok_t *t, const char *content)
{
    size_t n = strlen(content);
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && memcmp(t->added[i].content, content, n) == 0)
            return t->added[i].id;
    // a vocabulary string: through the ByteLevel map
    char *b = malloc(n + 1);
    if (!b)
        return -1;
    size_t k = 0, i = 0;
    int32_t id = -1;
    while (i < n) {
        utf8proc_int32_t c;
        utf8proc_ssize_t len = utf8proc_iterate((const utf8proc_uint8_t *)content + i, (utf8proc_ssize_t)(n - i), &c);
        int by = len > 0 ? tok_char_byte((uint32_t)c) : -1;
        if (by < 0)
            goto done;
        b[k++] = (char)by;
        i += (size_t)len;
    }
    id = tok_vocab_find(t, b, k);
done:
    free(b);
    return id;
}

int tok_nfc(const char *text, size_t n, tok_buf_t *out, char *err)
{
    out->n = 0;
    size_t bad = utf8_valid_prefix((const uint8_t *)text, n);
    if (bad < n) {
        snprintf(err, TOK_ERR_LEN, "not UTF-8 at byte %zu", bad);
        return -1;
    }
    // below U+0300 (lead bytes under 0xcc) every character is NFC already
    // and none combines with another
    size_t i = 0;
    while (i < n && (uint8_t)text[i] < 0xcc)
        i++;
    if (i == n) {
        if (tok_buf_put(out, text, n))
            goto oom;
        return 0;
    }
    // HF normalizes with Unicode 9.0 tables (unicode-normalization-alignments
    // 0.1.12): a character assigned later is to it a starter that neither
    // decomposes nor composes, so nothing reorders or composes across it.
    // NFC(a x b) is then NFC(a) x NFC(b): utf8proc (a later Unicode, whose
    // data for 9.0's characters is the same) normalizes the stretches
    // between such characters, which are copied as they are.
    tok_classes_init();
    const uint8_t *s = (const uint8_t *)text;
    size_t start = 0, len = 0;
    for (;;) {
        size_t x = tok_next_after_u9(s, n, start, &len);
        if (x > start) {
            utf8proc_uint8_t *dst = NULL;
            utf8proc_ssize_t m =
                utf8proc_map(s + start, (utf8proc_ssize_t)(x - start), &dst, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            if (m < 0) {
                snprintf(err, TOK_ERR_LEN, "NFC: %s", utf8proc_errmsg(m));
                return -1;
            }
            int rc = tok_buf_put(out, dst, (size_t)m);
            free(dst);
            if (rc)
                goto oom;
        }
        if (x == n)
            return 0;
        if (tok_buf_put(out, s + x, len))
            goto oom;
        start = x + len;
    }
oom:
    snprintf(err, TOK_ERR_LEN, "out of memory");
    return -1;
}

/* The leftmost-longest added token of the given kind in s[0,n) at or after
 * *at: its index, with *at moved to its start; -1 when none. */
static int find_added(const tok_t *t, const uint8_t *s, size_t n, size_t *at, bool normalized)
{
    const bool *first = normalized ? t->first_norm : t->first_raw;
    for (size_t i = *at; i < n; i++) {
        if (!first[s[i]])
            continue;
        int best = -1;
        for (int k = 0; k < t->n_added; k++) {
            const tok_added_t *a = &t->added[k];
            if (a->normalized == normalized && a->len <= n - i && (best < 0 || a->len > t->added[best].len) &&
                memcmp(a->content, s + i, a->len) == 0)
                best = k;
        }
        if (best >= 0) {
            *at = i;
            return best;
        }
    }
    return -1;
}

/* Split and merge normalized text that holds no added token. */
static int encode_pieces(tok_t *t, const uint8_t *s, size_t n, tok_ids_t *out, char *err)
{
    for (size_t i = 0; i < n;) {
        size_t j = tok_pretok_next(s, n, i);
        if (tok_bpe(t, s + i, j - i, out, err))
            return -1;
        i = j;
    }
    return 0;
}

/* Normalize a stretch of raw text between added tokens, then split it at
 * the normalized added tokens. */
static int encode_stretch(tok_t *t, const char *text, size_t n, tok_ids_t *out, char *err)
{
    if (n == 0)
        return 0;
    const uint8_t *s = (const uint8_t *)text;
    if (t->nfc) {
        if (tok_nfc(text, n, &t->norm, err))
            return -1;
        s = (const uint8_t *)t->norm.p, n = t->norm.n;
    }
    size_t i = 0;
    for (;;) {
        size_t at = i;
        int k = t->n_added ? find_added(t, s, n, &at, true) : -1;
        if (encode_pieces(t, s + i, (k < 0 ? n : at) - i, out, err))
            return -1;
        if (k < 0)
            return 0;
        if (tok_ids_push(out, t->added[k].id)) {
            snprintf(err, TOK_ERR_LEN, "out of memory");
            return -1;
        }
        i = at + t->added[k].len;
    }
}

int tok_encode(tok_t *t, const char *text, size_t n, tok_ids_t *out, char *err)
{
    size_t bad = utf8_valid_prefix((const uint8_t *)text, n);
    if (bad < n) {
        snprintf(err, TOK_ERR_LEN, "not UTF-8 at byte %zu", bad);
        return -1;
    }
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0;
    for (;;) {
        size_t at = i;
        int k = t->n_added ? find_added(t, s, n, &at, false) : -1;
        if (encode_stretch(t, text + i, (k < 0 ? n : at) - i, out, err))
            return -1;
        if (k < 0)
            return 0;
        if (tok_ids_push(out, t->added[k].id)) {
            snprintf(err, TOK_ERR_LEN, "out of memory");
            return -1;
        }
        i = at + t->added[k].len;
    }
}

int tok_decode(const tok_t *t, const int32_t *ids, size_t n, tok_buf_t *out, char *err)
{
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        // ids without a token are skipped, as HF's decode does
        if (id < 0 || id >= t->n_ids || !t->dec_has[id])
            continue;
        if (tok_buf_put(out, t->dec_bytes + t->dec_off[id], t->dec_end[id] - t->dec_off[id])) {
            snprintf(err, TOK_ERR_LEN, "out of memory");
            return -1;
        }
    }
    return 0;
}
