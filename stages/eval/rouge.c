/* rouge.c — ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum as Google's rouge-score
 * computes them (metrics-reference.md §2): its tokenizer (lowercase, every
 * run of characters outside [a-z0-9] a separator, optional Porter stemming of
 * tokens longer than 3), n-gram overlap, LCS, and the summary-level union LCS
 * with its backtrack tie-break and count clipping.
 *
 * The tokenizer works on bytes after an ASCII lowercase: Python's lower() maps
 * only two non-ASCII code points into [a-z0-9] (U+0130 to "i" + U+0307,
 * U+212A KELVIN SIGN to "k"); they are mapped here, every other non-ASCII
 * byte is a separator as its character is in Python.
 *
 * ROUGE-Lsum keeps one bit per cell of each sentence pair's LCS table (does
 * the backtrack step left?), so a pair of long lines costs n·m/8 bytes; over
 * 2^30 cells it is refused with a message rather than allocated. */
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LSUM_MAX_CELLS (1ull << 30)

typedef struct {
    uint32_t *v;
    size_t n, cap;
} ids_t;

typedef struct {
    ids_t ids;   // token ids of the whole text
    ids_t sent;  // start index of each sentence (a line with tokens) in ids, then ids.n
} toks_t;

struct rouge {
    bool stem;
    ev_intern_t *words;
    ev_buf_t tok, stem_buf;
    toks_t t, p;
    // counts by word id, reset through the touched lists
    int64_t *cnt_a, *cnt_b;
    size_t cnt_cap;
    ids_t touched;
    // bigram counts: open addressing, key (a+1)<<32 | b
    struct big {
        uint64_t key;
        int64_t a, b;
        size_t slot;
    } *big;
    size_t nbig, big_cap;
    uint32_t *big_slots;
    size_t big_nslots;
    // ROUGE-L rows and the Lsum backtrack bits
    uint32_t *row0, *row1;
    size_t row_cap;
    uint8_t *bits;
    size_t bits_cap;
    uint8_t *mark;
    size_t mark_cap;
};

static int ids_push(ids_t *a, uint32_t v)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        uint32_t *p = realloc(a->v, cap * sizeof *p);
        if (!p)
            return -1;
        a->v = p, a->cap = cap;
    }
    a->v[a->n++] = v;
    return 0;
}

rouge_t *rouge_new(bool stem)
{
    rouge_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->stem = stem;
    r->words = ev_intern_new();
    r->big_nslots = 256;
    r->big_slots = calloc(r->big_nslots, sizeof *r->big_slots);
    if (!r->words || !r->big_slots)
        rouge_destroy(&r);
    return r;
}

void rouge_destroy(rouge_t **rp)
{
    rouge_t *r = *rp;
    if (!r)
        return;
    ev_intern_destroy(&r->words);
    ev_buf_free(&r->tok);
    ev_buf_free(&r->stem_buf);
    free(r->t.ids.v), free(r->t.sent.v), free(r->p.ids.v), free(r->p.sent.v);
    free(r->cnt_a), free(r->cnt_b), free(r->touched.v);
    free(r->big), free(r->big_slots);
    free(r->row0), free(r->row1), free(r->bits), free(r->mark);
    free(r);
    *rp = NULL;
}

const char *rouge_type_name(int type)
{
    static const char *const names[] = {"rouge1", "rouge2", "rougeL", "rougeLsum"};
    return names[type];
}

/* Add the token in r->tok (a run of [a-z0-9]) to out. */
static int add_token(rouge_t *r, toks_t *out, bool *line_has)
{
    const char *s = r->tok.p;
    size_t n = r->tok.n;
    if (r->stem && n > 3) {
        r->stem_buf.n = 0;
        if (porter_stem(s, n, &r->stem_buf))
            return -1;
        s = r->stem_buf.p, n = r->stem_buf.n;
    }
    uint32_t id = ev_intern(r->words, s, n);
    if (id == UINT32_MAX)
        return -1;
    if (!*line_has) {
        if (ids_push(&out->sent, (uint32_t)out->ids.n))
            return -1;
        *line_has = true;
    }
    return ids_push(&out->ids, id);
}

static int tokenize(rouge_t *r, const char *s, size_t n, toks_t *out)
{
    out->ids.n = out->sent.n = 0;
    r->tok.n = 0;
    bool line_has = false;
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = i < n ? (unsigned char)s[i] : '\n';
        char keep = 0;
        bool sep_after = false;
        if (c >= 'A' && c <= 'Z')
            keep = (char)(c + 32);
        else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
            keep = (char)c;
        else if (c == 0xC4 && i + 1 < n && (unsigned char)s[i + 1] == 0xB0)
            keep = 'i', sep_after = true, i += 1; // İ -> "i" U+0307
        else if (c == 0xE2 && i + 2 < n && (unsigned char)s[i + 1] == 0x84 && (unsigned char)s[i + 2] == 0xAA)
            keep = 'k', i += 2; // KELVIN SIGN -> "k"
        if (keep && ev_buf_putc(&r->tok, keep))
            return -1;
        if ((!keep || sep_after) && r->tok.n) {
            if (add_token(r, out, &line_has))
                return -1;
            r->tok.n = 0;
        }
        if (c == '\n')
            line_has = false;
    }
    return ids_push(&out->sent, (uint32_t)out->ids.n);
}

int rouge_tokenize(rouge_t *r, const char *s, size_t n, ev_buf_t *out)
{
    if (tokenize(r, s, n, &r->t))
        return -1;
    for (size_t i = 0; i < r->t.ids.n; i++) {
        size_t len;
        const char *w = ev_intern_str(r->words, r->t.ids.v[i], &len);
        if ((i && ev_buf_putc(out, ' ')) || ev_buf_put(out, w, len))
            return -1;
    }
    return ev_buf_put(out, "", 0); // terminated even when nothing was added
}

static rouge_prf_t prf(double p, double r)
{
    // scoring.fmeasure: 2 * precision * recall / (precision + recall)
    return (rouge_prf_t){p, r, p + r > 0 ? 2 * p * r / (p + r) : 0.0};
}

static int grow_counts(rouge_t *r)
{
    size_t need = ev_intern_count(r->words);
    if (need <= r->cnt_cap)
        return 0;
    size_t cap = r->cnt_cap ? r->cnt_cap : 1024;
    while (cap < need)
        cap *= 2;
    int64_t *a = realloc(r->cnt_a, cap * sizeof *a);
    if (!a)
        return -1;
    r->cnt_a = a;
    int64_t *b = realloc(r->cnt_b, cap * sizeof *b);
    if (!b)
        return -1;
    r->cnt_b = b;
    memset(a + r->cnt_cap, 0, (cap - r->cnt_cap) * sizeof *a);
    memset(b + r->cnt_cap, 0, (cap - r->cnt_cap) * sizeof *b);
    r->cnt_cap = cap;
    return 0;
}

static void reset_counts(rouge_t *r)
{
    for (size_t i = 0; i < r->touched.n; i++)
        r->cnt_a[r->touched.v[i]] = r->cnt_b[r->touched.v[i]] = 0;
    r->touched.n = 0;
}

/* Count words of a (target) and b (prediction); cnt_a/cnt_b hold them. */
static int count_words(rouge_t *r, const ids_t *a, const ids_t *b)
{
    if (grow_counts(r))
        return -1;
    for (size_t i = 0; i < a->n; i++) {
        if (!r->cnt_a[a->v[i]] && !r->cnt_b[a->v[i]] && ids_push(&r->touched, a->v[i]))
            return -1;
        r->cnt_a[a->v[i]]++;
    }
    for (size_t i = 0; i < b->n; i++) {
        if (!r->cnt_a[b->v[i]] && !r->cnt_b[b->v[i]] && ids_push(&r->touched, b->v[i]))
            return -1;
        r->cnt_b[b->v[i]]++;
    }
    return 0;
}

static rouge_prf_t rouge_1(rouge_t *r, const ids_t *t, const ids_t *p, int *rc)
{
    if (count_words(r, t, p)) {
        *rc = -1;
        return (rouge_prf_t){0};
    }
    int64_t hit = 0;
    for (size_t i = 0; i < r->touched.n; i++) {
        uint32_t w = r->touched.v[i];
        hit += r->cnt_a[w] < r->cnt_b[w] ? r->cnt_a[w] : r->cnt_b[w];
    }
    reset_counts(r);
    double np = (double)(p->n > 0 ? p->n : 1), nt = (double)(t->n > 0 ? t->n : 1);
    return prf((double)hit / np, (double)hit / nt);
}

static struct big *find_big(rouge_t *r, uint64_t key)
{
    if ((r->nbig + 1) * 2 > r->big_nslots) {
        size_t ns = r->big_nslots * 2;
        uint32_t *slots = calloc(ns, sizeof *slots);
        if (!slots)
            return NULL;
        for (size_t g = 0; g < r->nbig; g++) {
            size_t i = (size_t)ev_hash(&r->big[g].key, 8) & (ns - 1);
            while (slots[i])
                i = (i + 1) & (ns - 1);
            slots[i] = (uint32_t)g + 1;
            r->big[g].slot = i;
        }
        free(r->big_slots);
        r->big_slots = slots, r->big_nslots = ns;
    }
    size_t mask = r->big_nslots - 1, i = (size_t)ev_hash(&key, 8) & mask;
    while (r->big_slots[i]) {
        struct big *g = &r->big[r->big_slots[i] - 1];
        if (g->key == key)
            return g;
        i = (i + 1) & mask;
    }
    if (r->nbig == r->big_cap) {
        size_t cap = r->big_cap ? r->big_cap * 2 : 256;
        struct big *g = realloc(r->big, cap * sizeof *g);
        if (!g)
            return NULL;
        r->big = g, r->big_cap = cap;
    }
    r->big[r->nbig] = (struct big){key, 0, 0, i};
    r->big_slots[i] = (uint32_t)++r->nbig;
    return &r->big[r->nbig - 1];
}

static rouge_prf_t rouge_2(rouge_t *r, const ids_t *t, const ids_t *p, int *rc)
{
    for (int side = 0; side < 2; side++) {
        const ids_t *x = side ? p : t;
        for (size_t i = 0; i + 1 < x->n; i++) {
            struct big *g = find_big(r, ((uint64_t)x->v[i] + 1) << 32 | x->v[i + 1]);
            if (!g) {
                *rc = -1;
                return (rouge_prf_t){0};
            }
            if (side)
                g->b++;
            else
                g->a++;
        }
    }
    int64_t hit = 0;
    for (size_t g = 0; g < r->nbig; g++)
        hit += r->big[g].a < r->big[g].b ? r->big[g].a : r->big[g].b;
    for (size_t g = 0; g < r->nbig; g++)
        r->big_slots[r->big[g].slot] = 0;
    r->nbig = 0;
    size_t nt = t->n > 1 ? t->n - 1 : 0, np = p->n > 1 ? p->n - 1 : 0;
    return prf((double)hit / (double)(np > 0 ? np : 1), (double)hit / (double)(nt > 0 ? nt : 1));
}

static int rows(rouge_t *r, size_t n)
{
    if (n + 1 <= r->row_cap)
        return 0;
    uint32_t *a = realloc(r->row0, (n + 1) * sizeof *a);
    if (!a)
        return -1;
    r->row0 = a;
    uint32_t *b = realloc(r->row1, (n + 1) * sizeof *b);
    if (!b)
        return -1;
    r->row1 = b;
    r->row_cap = n + 1;
    return 0;
}

/* LCS length of a (rows) and b (columns). With bits, also record for each
 * cell whether T[i][j-1] > T[i-1][j] (the backtrack's "left" step). */
static uint32_t lcs(rouge_t *r, const uint32_t *a, size_t na, const uint32_t *b, size_t nb, uint8_t *bits)
{
    uint32_t *prev = r->row0, *cur = r->row1;
    memset(prev, 0, (nb + 1) * sizeof *prev);
    cur[0] = 0;
    for (size_t i = 1; i <= na; i++) {
        for (size_t j = 1; j <= nb; j++) {
            if (a[i - 1] == b[j - 1])
                cur[j] = prev[j - 1] + 1;
            else {
                bool left = cur[j - 1] > prev[j];
                cur[j] = left ? cur[j - 1] : prev[j];
                if (bits && left) {
                    size_t k = (i - 1) * nb + (j - 1);
                    bits[k >> 3] |= (uint8_t)(1u << (k & 7));
                }
            }
        }
        uint32_t *t = prev;
        prev = cur, cur = t;
    }
    return prev[nb];
}

static rouge_prf_t rouge_l(rouge_t *r, const ids_t *t, const ids_t *p, int *rc)
{
    if (!t->n || !p->n)
        return (rouge_prf_t){0};
    if (rows(r, p->n)) {
        *rc = -1;
        return (rouge_prf_t){0};
    }
    double l = lcs(r, t->v, t->n, p->v, p->n, NULL);
    return prf(l / (double)p->n, l / (double)t->n);
}

static rouge_prf_t rouge_lsum(rouge_t *r, const toks_t *t, const toks_t *p, int *rc, char *err)
{
    size_t m = t->ids.n, n = p->ids.n;
    if (!m || !n)
        return (rouge_prf_t){0};
    if (count_words(r, &t->ids, &p->ids))
        goto oom;
    if (m > r->mark_cap) {
        uint8_t *k = realloc(r->mark, m);
        if (!k)
            goto oom;
        r->mark = k, r->mark_cap = m;
    }
    int64_t hits = 0;
    size_t nts = t->sent.n - 1, nps = p->sent.n - 1;
    for (size_t a = 0; a < nts; a++) {
        const uint32_t *rs = t->ids.v + t->sent.v[a];
        size_t rn = t->sent.v[a + 1] - t->sent.v[a];
        memset(r->mark, 0, rn);
        for (size_t b = 0; b < nps; b++) {
            const uint32_t *cs = p->ids.v + p->sent.v[b];
            size_t cn = p->sent.v[b + 1] - p->sent.v[b];
            if ((unsigned long long)rn * cn > LSUM_MAX_CELLS) {
                snprintf(err, EV_ERR_LEN, "rougeLsum: a sentence pair of %zu x %zu tokens, over the limit of 2^30", rn,
                         cn);
                reset_counts(r);
                *rc = -1;
                return (rouge_prf_t){0};
            }
            size_t nbytes = (rn * cn + 7) / 8;
            if (nbytes > r->bits_cap) {
                uint8_t *bits = realloc(r->bits, nbytes);
                if (!bits)
                    goto oom;
                r->bits = bits, r->bits_cap = nbytes;
            }
            memset(r->bits, 0, nbytes);
            if (rows(r, cn))
                goto oom;
            lcs(r, rs, rn, cs, cn, r->bits);
            // backtrack: diagonal on equal tokens, else left when strictly better, else up
            size_t i = rn, j = cn;
            while (i > 0 && j > 0) {
                if (rs[i - 1] == cs[j - 1]) {
                    r->mark[i - 1] = 1;
                    i--, j--;
                } else {
                    size_t k = (i - 1) * cn + (j - 1);
                    if (r->bits[k >> 3] >> (k & 7) & 1)
                        j--;
                    else
                        i--;
                }
            }
        }
        for (size_t k = 0; k < rn; k++) {
            uint32_t w = rs[k];
            if (r->mark[k] && r->cnt_b[w] > 0 && r->cnt_a[w] > 0) {
                hits++;
                r->cnt_b[w]--;
                r->cnt_a[w]--;
            }
        }
    }
    reset_counts(r);
    return prf((double)hits / (double)n, (double)hits / (double)m);
oom:
    reset_counts(r);
    snprintf(err, EV_ERR_LEN, "ROUGE: out of memory");
    *rc = -1;
    return (rouge_prf_t){0};
}

int rouge_score(rouge_t *r, const char *target, size_t tn, const char *pred, size_t pn, rouge_scores_t *out, char *err)
{
    memset(out, 0, sizeof *out);
    if (tokenize(r, target, tn, &r->t) || tokenize(r, pred, pn, &r->p)) {
        snprintf(err, EV_ERR_LEN, "ROUGE: out of memory");
        return -1;
    }
    int rc = 0;
    out->s[ROUGE_1] = rouge_1(r, &r->t.ids, &r->p.ids, &rc);
    if (!rc)
        out->s[ROUGE_2] = rouge_2(r, &r->t.ids, &r->p.ids, &rc);
    if (!rc)
        out->s[ROUGE_L] = rouge_l(r, &r->t.ids, &r->p.ids, &rc);
    if (rc) {
        snprintf(err, EV_ERR_LEN, "ROUGE: out of memory");
        return -1;
    }
    out->s[ROUGE_LSUM] = rouge_lsum(r, &r->t, &r->p, &rc, err);
    return rc;
}

int rouge_score_multi(rouge_t *r, const char *const *targets, const size_t *tn, int nt, const char *pred, size_t pn,
                      rouge_scores_t *out, char *err)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < nt; i++) {
        rouge_scores_t s;
        if (rouge_score(r, targets[i], tn[i], pred, pn, &s, err))
            return -1;
        for (int k = 0; k < ROUGE_TYPES; k++)
            if (i == 0 || s.s[k].f > out->s[k].f) // numpy argmax: the first maximum
                out->s[k] = s.s[k];
    }
    return 0;
}
