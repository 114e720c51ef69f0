/* bpe.c — byte-pair merging of one pre-tokenized piece, with a cache.
 *
 * A piece starts as one symbol per byte; the adjacent pair of lowest merge
 * rank is merged, the leftmost one among equals, until no pair has a rank.
 * HF's BPE does the same with a priority queue ordered by (rank, position).
 * Short pieces use a scan over ranks kept per symbol (fast for the words of
 * text); long ones a binary heap of (rank, position), so a run of 100k
 * letters costs n log n, not n^2. Both are checked against each other by the
 * fuzz target and against HF by the golden test. */
#include "tok_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCAN_MAX 128 // pieces up to this many bytes use the scan
#define NO_RANK  UINT32_MAX

static inline uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

uint64_t tok_hash(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = mix(h ^ w) * 0x9e3779b97f4a7c15ULL;
        s += 8, n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    return mix(h ^ w ^ 0x5bd1e995);
}

/* The merge of (a, b): its rank (NO_RANK when none) and merged id. */
static inline uint32_t merge_find(const tok_t *t, int32_t a, int32_t b, int32_t *id)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (uint64_t i = mix(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        const tok_merge_t *m = &t->merges[i];
        if (m->rank == NO_RANK)
            return NO_RANK;
        if (m->key == key) {
            *id = m->id;
            return m->rank;
        }
    }
}

static int grow(tok_t *t, size_t n, char *err)
{
    if (n <= t->sym_cap)
        return 0;
    size_t cap = n < 256 ? 256 : n;
    int32_t *a = realloc(t->sym_id, cap * sizeof *a), *b = a ? realloc(t->sym_next, cap * sizeof *b) : NULL;
    if (a)
        t->sym_id = a;
    if (b)
        t->sym_next = b;
    int32_t *c = b ? realloc(t->sym_prev, cap * sizeof *c) : NULL;
    if (c)
        t->sym_prev = c;
    uint32_t *d = c ? realloc(t->sym_rank, cap * sizeof *d) : NULL;
    if (!d) {
        snprintf(err, TOK_ERR_LEN, "out of memory for a %zu-byte piece", n);
        return -1;
    }
    t->sym_rank = d;
    t->sym_cap = cap;
    return 0;
}

/* The scan: sym_rank[i] is the rank of the pair (i, next(i)). */
static void merge_scan(tok_t *t, size_t n)
{
    int32_t *id = t->sym_id, *next = t->sym_next;
    uint32_t *rank = t->sym_rank;
    int32_t nid = -1;
    for (size_t i = 0; i < n; i++)
        rank[i] = i + 1 < n ? merge_find(t, id[i], id[i + 1], &nid) : NO_RANK;
    for (;;) {
        uint32_t best = NO_RANK;
        int32_t at = -1, prev = -1, best_prev = -1;
        for (int32_t i = 0; i >= 0; prev = i, i = next[i])
            if (rank[i] < best)
                best = rank[i], at = i, best_prev = prev;
        if (at < 0)
            return;
        int32_t r = next[at];
        merge_find(t, id[at], id[r], &nid);
        id[at] = nid;
        next[at] = next[r];
        rank[at] = next[at] >= 0 ? merge_find(t, id[at], id[next[at]], &nid) : NO_RANK;
        if (best_prev >= 0)
            rank[best_prev] = merge_find(t, id[best_prev], id[at], &nid);
    }
}

typedef struct {
    uint32_t rank;
    int32_t pos;
    int32_t left, right; // the ids the pair had when pushed
} hent_t;

static inline bool hless(const hent_t *a, const hent_t *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static int hpush(tok_t *t, size_t *hn, hent_t e, char *err)
{
    if (*hn == t->heap_cap) {
        size_t cap = t->heap_cap ? 2 * t->heap_cap : 1024;
        void *p = realloc(t->heap, cap * sizeof(hent_t));
        if (!p) {
            snprintf(err, TOK_ERR_LEN, "out of memory in BPE");
            return -1;
        }
        t->heap = p, t->heap_cap = cap;
    }
    hent_t *h = t->heap;
    size_t i = (*hn)++;
    while (i > 0 && hless(&e, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = e;
    return 0;
}

static hent_t hpop(tok_t *t, size_t *hn)
{
    hent_t *h = t->heap, top = h[0], last = h[--*hn];
    size_t i = 0, n = *hn;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && hless(&h[c + 1], &h[c]))
            c++;
        if (!hless(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (n)
        h[i] = last;
    return top;
}

static int push_pair(tok_t *t, size_t *hn, int32_t i, char *err)
{
    int32_t j = t->sym_next[i], nid = -1;
    if (j < 0)
        return 0;
    uint32_t r = merge_find(t, t->sym_id[i], t->sym_id[j], &nid);
    if (r == NO_RANK)
        return 0;
    return hpush(t, hn, (hent_t){r, i, t->sym_id[i], t->sym_id[j]}, err);
}

/* The heap: entries go stale when a neighbour merges; a popped entry is used
 * only when its symbol is alive and the pair still holds the ids it had. */
static int merge_heap(tok_t *t, size_t n, char *err)
{
    int32_t *id = t->sym_id, *next = t->sym_next, *prev = t->sym_prev;
    size_t hn = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (push_pair(t, &hn, (int32_t)i, err))
            return -1;
    while (hn) {
        hent_t e = hpop(t, &hn);
        int32_t i = e.pos, j = next[i], nid = -1;
        if (id[i] != e.left || j < 0 || id[j] != e.right)
            continue;
        merge_find(t, id[i], id[j], &nid);
        id[i] = nid;
        id[j] = -1; // dead
        next[i] = next[j];
        if (next[i] >= 0)
            prev[next[i]] = i;
        if (push_pair(t, &hn, i, err) || (prev[i] >= 0 && push_pair(t, &hn, prev[i], err)))
            return -1;
    }
    return 0;
}

static int bpe_run(tok_t *t, const uint8_t *p, size_t n, bool heap, tok_ids_t *out, char *err)
{
    if (grow(t, n, err))
        return -1;
    for (size_t i = 0; i < n; i++) {
        t->sym_id[i] = t->byte_id[p[i]];
        t->sym_next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
        t->sym_prev[i] = (int32_t)i - 1;
    }
    if (!heap)
        merge_scan(t, n);
    else if (merge_heap(t, n, err))
        return -1;
    for (int32_t i = 0; i >= 0; i = t->sym_next[i])
        if (tok_ids_push(out, t->sym_id[i])) {
            snprintf(err, TOK_ERR_LEN, "out of memory for ids");
            return -1;
        }
    return 0;
}

int tok_bpe_heap(tok_t *t, const uint8_t *p, size_t n, tok_ids_t *out, char *err)
{
    return bpe_run(t, p, n, true, out, err);
}

int tok_bpe(tok_t *t, const uint8_t *p, size_t n, tok_ids_t *out, char *err)
{
    if (n == 1) // every byte is a token
        return tok_ids_push(out, t->byte_id[p[0]]) ? (snprintf(err, TOK_ERR_LEN, "out of memory"), -1) : 0;
    if (t->ignore_merges) {
        int32_t id = tok_vocab_find(t, (const char *)p, n);
        if (id >= 0)
            return tok_ids_push(out, id) ? (snprintf(err, TOK_ERR_LEN, "out of memory"), -1) : 0;
    }
    tok_cslot_t *slot = NULL;
    uint64_t h = 0;
    if (n <= TOK_CACHE_MAX_PIECE) {
        h = tok_hash(p, n);
        slot = &t->cache[h & (TOK_CACHE_SLOTS - 1)];
        if (slot->data && slot->hash == h && slot->klen == n && memcmp(slot->data, p, n) == 0) {
            const char *ids = slot->data + n;
            for (uint32_t k = 0; k < slot->nids; k++) {
                int32_t id;
                memcpy(&id, ids + 4 * k, 4);
                if (tok_ids_push(out, id)) {
                    snprintf(err, TOK_ERR_LEN, "out of memory");
                    return -1;
                }
            }
            return 0;
        }
    }
    size_t before = out->n;
    if (bpe_run(t, p, n, n > SCAN_MAX, out, err))
        return -1;
    if (slot) {
        size_t nids = out->n - before, need = n + 4 * nids;
        if (need > slot->cap) {
            char *d = realloc(slot->data, need);
            if (!d)
                return 0; // the cache is an optimization
            slot->data = d, slot->cap = need;
        }
        memcpy(slot->data, p, n);
        memcpy(slot->data + n, out->ids + before, 4 * nids);
        slot->hash = h, slot->klen = (uint32_t)n, slot->nids = (uint32_t)nids;
    }
    return 0;
}

void tok_cache_free(tok_t *t)
{
    if (!t->cache)
        return;
    for (size_t i = 0; i < TOK_CACHE_SLOTS; i++)
        free(t->cache[i].data);
    free(t->cache);
    t->cache = NULL;
}
