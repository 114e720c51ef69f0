/* acct.c — per (source, epoch) counts in an open-addressing table. */
#include "acct.h"

#include <stdlib.h>
#include <string.h>

struct acct {
    acct_entry_t *entries; // in arrival order
    int n, cap;
    int *slots; // index+1 into entries, 0 empty; size nslots (power of two)
    int nslots;
    int complete; // entries currently complete
};

acct_t *acct_new(void) { return calloc(1, sizeof(acct_t)); }

void acct_destroy(acct_t **a)
{
    if (!a || !*a)
        return;
    for (int i = 0; i < (*a)->n; i++)
        free((*a)->entries[i].source);
    free((*a)->entries);
    free((*a)->slots);
    free(*a);
    *a = NULL;
}

static uint64_t key_hash(const char *s, size_t n, int64_t epoch)
{
    return rec_fnv1a(s, n) ^ ((uint64_t)epoch * 0x9e3779b97f4a7c15ull);
}

static int rehash(acct_t *a, int nslots)
{
    int *s = calloc((size_t)nslots, sizeof *s);
    if (!s)
        return -1;
    for (int i = 0; i < a->n; i++) {
        acct_entry_t *e = &a->entries[i];
        uint64_t h = key_hash(e->source, strlen(e->source), e->epoch);
        int j = (int)(h & (uint64_t)(nslots - 1));
        while (s[j])
            j = (j + 1) & (nslots - 1);
        s[j] = i + 1;
    }
    free(a->slots);
    a->slots = s;
    a->nslots = nslots;
    return 0;
}

static acct_entry_t *find(acct_t *a, const char *src, size_t n, int64_t epoch)
{
    if (a->nslots == 0 && rehash(a, 64))
        return NULL;
    uint64_t h = key_hash(src, n, epoch);
    int j = (int)(h & (uint64_t)(a->nslots - 1));
    while (a->slots[j]) {
        acct_entry_t *e = &a->entries[a->slots[j] - 1];
        if (e->epoch == epoch && strlen(e->source) == n && memcmp(e->source, src, n) == 0)
            return e;
        j = (j + 1) & (a->nslots - 1);
    }
    if (a->n == a->cap) {
        int cap = a->cap ? 2 * a->cap : 16;
        acct_entry_t *ne = realloc(a->entries, (size_t)cap * sizeof *ne);
        if (!ne)
            return NULL;
        a->entries = ne;
        a->cap = cap;
    }
    acct_entry_t *e = &a->entries[a->n];
    memset(e, 0, sizeof *e);
    e->source = malloc(n + 1);
    if (!e->source)
        return NULL;
    memcpy(e->source, src, n);
    e->source[n] = 0;
    e->epoch = epoch;
    e->end_count = -1;
    a->slots[j] = ++a->n;
    if (2 * a->n > a->nslots && rehash(a, 2 * a->nslots))
        return NULL;
    return find(a, src, n, epoch);
}

bool acct_entry_complete(const acct_entry_t *e)
{
    return e->ends == 1 && e->end_count >= 0 && e->samples + e->rejects == (uint64_t)e->end_count;
}

bool acct_entry_broken(const acct_entry_t *e)
{
    return e->ends > 1 || (e->end_count >= 0 && e->samples + e->rejects > (uint64_t)e->end_count);
}

int acct_add(acct_t *a, const rec_t *r)
{
    const msgpack_object *src = rec_get(r, "source");
    if (!src || src->type != MSGPACK_OBJECT_STR)
        return 0;
    int64_t epoch = rec_epoch(r);
    acct_entry_t *e = find(a, src->via.str.ptr, src->via.str.size, epoch);
    if (!e)
        return -1;
    bool was = acct_entry_complete(e);
    switch (r->type) {
    case REC_SAMPLE: e->samples++; break;
    case REC_REJECT: e->rejects++; break;
    case REC_END: {
        int64_t c;
        e->ends++;
        e->end_count = rec_get_int(&r->root, "count", &c) ? c : 0;
        break;
    }
    default: break;
    }
    a->complete += (int)acct_entry_complete(e) - (int)was;
    return 0;
}

int acct_count(const acct_t *a) { return a->n; }
const acct_entry_t *acct_entry(const acct_t *a, int i) { return i >= 0 && i < a->n ? &a->entries[i] : NULL; }

bool acct_complete(const acct_t *a, int expect_ends) { return a->complete == a->n && a->n >= expect_ends; }
