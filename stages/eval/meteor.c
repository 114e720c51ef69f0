/* meteor.c — METEOR as NLTK's meteor_score computes it (metrics-reference.md
 * §3.2): lowercased tokens, three greedy alignment stages (exact, Porter
 * stem, WordNet synonym) each scanning the hypothesis and then the reference
 * from the last word down and consuming what it matches, chunks counted over
 * the matches in hypothesis order, and the score
 * (1 - gamma·(chunks/m)^beta) · P·R / (alpha·P + (1-alpha)·R), 0 on any
 * division by zero; the best over references.
 *
 * Quirks kept: the words left after the stem stage stay stems, so the synonym
 * stage looks up the hypothesis stem and compares reference stems with lemma
 * names; the greedy alignment does not minimise chunks.
 *
 * Words, their stems and their synonym sets are interned and cached for the
 * scorer's life, so each distinct word is stemmed and looked up once. */
#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void meteor_opts_default(meteor_opts_t *o) { *o = (meteor_opts_t){.tok = METEOR_TOK_WS, .alpha = 0.9, .beta = 3.0, .gamma = 0.5}; }

typedef struct {
    uint32_t *v;
    size_t n, cap;
} u32s_t;

static int push(u32s_t *a, uint32_t v)
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

struct meteor {
    meteor_opts_t o;
    wordnet_t *wn;
    bleu_t *tok13a;
    ev_intern_t *words;
    // by word id: its stem's id, its synonym set in syn_pool (start, count)
    uint32_t *stem, *syn_start, *syn_count;
    uint32_t *stamp; // synonym-set membership marks
    uint32_t mark;
    size_t cap;
    u32s_t syn_pool;
    ev_buf_t buf, low, scratch;
    ev_spans_t spans;
    u32s_t hyp, ref;
    // alignment scratch
    int32_t *h_match; // by hypothesis index: reference index or -1
    uint32_t *hw, *rw; // current words (ids) of the hypothesis and reference
    uint8_t *h_alive, *r_alive;
    size_t scratch_h, scratch_r;
};

meteor_t *meteor_new(const meteor_opts_t *o, wordnet_t *wn)
{
    meteor_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->o = *o;
    m->wn = wn;
    m->words = ev_intern_new();
    bleu_opts_t bo;
    bleu_opts_default(&bo);
    m->tok13a = bleu_new(&bo);
    if (!m->words || !m->tok13a)
        meteor_destroy(&m);
    return m;
}

void meteor_destroy(meteor_t **mp)
{
    meteor_t *m = *mp;
    if (!m)
        return;
    ev_intern_destroy(&m->words);
    bleu_destroy(&m->tok13a);
    free(m->stem), free(m->syn_start), free(m->syn_count), free(m->stamp);
    free(m->syn_pool.v);
    ev_buf_free(&m->buf), ev_buf_free(&m->low), ev_buf_free(&m->scratch);
    ev_spans_free(&m->spans);
    free(m->hyp.v), free(m->ref.v);
    free(m->h_match), free(m->hw), free(m->rw), free(m->h_alive), free(m->r_alive);
    free(m);
    *mp = NULL;
}

static int grow(meteor_t *m)
{
    size_t need = ev_intern_count(m->words);
    if (need <= m->cap)
        return 0;
    size_t cap = m->cap ? m->cap : 4096;
    while (cap < need)
        cap *= 2;
    uint32_t **arrs[] = {&m->stem, &m->syn_start, &m->syn_count, &m->stamp};
    for (size_t i = 0; i < 4; i++) {
        uint32_t *p = realloc(*arrs[i], cap * sizeof *p);
        if (!p)
            return -1;
        memset(p + m->cap, i < 2 ? 0xFF : 0, (cap - m->cap) * sizeof *p); // stem, syn_start: unknown
        *arrs[i] = p;
    }
    m->cap = cap;
    return 0;
}

static uint32_t intern(meteor_t *m, const char *s, size_t n)
{
    uint32_t id = ev_intern(m->words, s, n);
    if (id == UINT32_MAX || grow(m))
        return UINT32_MAX;
    return id;
}

/* The lowercased tokens of a text, as word ids. */
static int words_of(meteor_t *m, const char *s, size_t n, u32s_t *out)
{
    out->n = 0;
    if (m->o.tok == METEOR_TOK_13A) {
        m->scratch.n = 0;
        if (bleu_tokenize(m->tok13a, s, n, &m->scratch))
            return -1;
        s = m->scratch.p, n = m->scratch.n;
    }
    m->spans.n = 0;
    if (ev_split(s, n, &m->spans))
        return -1;
    for (size_t i = 0; i < m->spans.n; i++) {
        m->low.n = 0;
        if (ev_lower(s + m->spans.v[i].off, m->spans.v[i].len, &m->low))
            return -1;
        uint32_t id = intern(m, m->low.p, m->low.n);
        if (id == UINT32_MAX || push(out, id))
            return -1;
    }
    return 0;
}

static uint32_t stem_of(meteor_t *m, uint32_t w)
{
    if (m->stem[w] != UINT32_MAX)
        return m->stem[w];
    size_t n;
    const char *s = ev_intern_str(m->words, w, &n);
    m->buf.n = 0;
    if (porter_stem(s, n, &m->buf))
        return UINT32_MAX;
    uint32_t id = intern(m, m->buf.p, m->buf.n);
    if (id != UINT32_MAX)
        m->stem[w] = id;
    return id;
}

/* Mark the synonym set of stem s (lemma names without "_", and s itself)
 * with a fresh stamp. */
static int mark_synonyms(meteor_t *m, uint32_t s)
{
    if (m->syn_start[s] == UINT32_MAX) {
        size_t n, count;
        const char *str = ev_intern_str(m->words, s, &n);
        m->buf.n = 0;
        if (wordnet_lemma_names(m->wn, str, n, &m->buf, &count))
            return -1;
        uint32_t start = (uint32_t)m->syn_pool.n, k = 0;
        ev_buf_t names = m->buf; // intern may not touch m->buf: copy out first
        char *copy = names.n ? malloc(names.n) : NULL;
        if (names.n && !copy)
            return -1;
        if (copy)
            memcpy(copy, names.p, names.n);
        for (size_t a = 0, i = 0; i < count; i++) {
            size_t l = strlen(copy + a);
            if (!memchr(copy + a, '_', l)) {
                uint32_t id = intern(m, copy + a, l);
                if (id == UINT32_MAX || push(&m->syn_pool, id)) {
                    free(copy);
                    return -1;
                }
                k++;
            }
            a += l + 1;
        }
        free(copy);
        m->syn_start[s] = start, m->syn_count[s] = k;
    }
    if (++m->mark == 0) { // wrapped: clear the marks
        memset(m->stamp, 0, m->cap * sizeof *m->stamp);
        m->mark = 1;
    }
    for (uint32_t i = 0; i < m->syn_count[s]; i++)
        m->stamp[m->syn_pool.v[m->syn_start[s] + i]] = m->mark;
    m->stamp[s] = m->mark;
    return 0;
}

static int scratch(meteor_t *m, size_t h, size_t r)
{
    if (h > m->scratch_h) {
        int32_t *a = realloc(m->h_match, h * sizeof *a);
        uint32_t *b = a ? realloc(m->hw, h * sizeof *b) : NULL;
        uint8_t *c = b ? realloc(m->h_alive, h) : NULL;
        if (a)
            m->h_match = a;
        if (b)
            m->hw = b;
        if (c)
            m->h_alive = c;
        if (!c)
            return -1;
        m->scratch_h = h;
    }
    if (r > m->scratch_r) {
        uint32_t *b = realloc(m->rw, r * sizeof *b);
        uint8_t *c = b ? realloc(m->r_alive, r) : NULL;
        if (b)
            m->rw = b;
        if (c)
            m->r_alive = c;
        if (!c)
            return -1;
        m->scratch_r = r;
    }
    return 0;
}

/* One stage of NLTK's _match_enums: hypothesis words from the last down, each
 * against the remaining reference words from the last down; syn: the
 * synonym stage's membership test instead of equality. */
static int stage(meteor_t *m, size_t H, size_t R, bool syn)
{
    for (size_t i = H; i-- > 0;) {
        if (!m->h_alive[i])
            continue;
        if (syn && mark_synonyms(m, m->hw[i]))
            return -1;
        for (size_t j = R; j-- > 0;) {
            if (!m->r_alive[j])
                continue;
            bool hit = syn ? m->stamp[m->rw[j]] == m->mark : m->rw[j] == m->hw[i];
            if (hit) {
                m->h_match[i] = (int32_t)j;
                m->h_alive[i] = m->r_alive[j] = 0;
                break;
            }
        }
    }
    return 0;
}

static int single(meteor_t *m, const u32s_t *hyp, const u32s_t *ref, double *out)
{
    size_t H = hyp->n, R = ref->n;
    *out = 0.0;
    if (scratch(m, H ? H : 1, R ? R : 1))
        return -1;
    for (size_t i = 0; i < H; i++)
        m->hw[i] = hyp->v[i], m->h_alive[i] = 1, m->h_match[i] = -1;
    for (size_t j = 0; j < R; j++)
        m->rw[j] = ref->v[j], m->r_alive[j] = 1;
    if (stage(m, H, R, false))
        return -1;
    // the stem stage replaces every remaining word by its stem, for good
    for (size_t i = 0; i < H; i++)
        if (m->h_alive[i] && (m->hw[i] = stem_of(m, m->hw[i])) == UINT32_MAX)
            return -1;
    for (size_t j = 0; j < R; j++)
        if (m->r_alive[j] && (m->rw[j] = stem_of(m, m->rw[j])) == UINT32_MAX)
            return -1;
    if (stage(m, H, R, false) || stage(m, H, R, true))
        return -1;
    size_t matches = 0, chunks = 1;
    int32_t prev_h = -2, prev_r = -2;
    for (size_t i = 0; i < H; i++) {
        if (m->h_match[i] < 0)
            continue;
        if (matches && !((int32_t)i == prev_h + 1 && m->h_match[i] == prev_r + 1))
            chunks++;
        prev_h = (int32_t)i, prev_r = m->h_match[i];
        matches++;
    }
    if (!H || !R || !matches)
        return 0; // NLTK's ZeroDivisionError -> 0.0
    double precision = (double)matches / (double)H, recall = (double)matches / (double)R;
    double fmean = (precision * recall) / (m->o.alpha * precision + (1 - m->o.alpha) * recall);
    double frag = (double)chunks / (double)matches;
    double penalty = m->o.gamma * pow(frag, m->o.beta);
    *out = (1 - penalty) * fmean;
    return 0;
}

int meteor_score(meteor_t *m, const char *hyp, size_t hn, const char *const *refs, const size_t *rn, int nrefs,
                 double *out, char *err)
{
    *out = 0;
    if (words_of(m, hyp, hn, &m->hyp))
        goto oom;
    for (int k = 0; k < nrefs; k++) {
        double s;
        if (words_of(m, refs[k], rn[k], &m->ref) || single(m, &m->hyp, &m->ref, &s))
            goto oom;
        if (k == 0 || s > *out)
            *out = s;
    }
    return 0;
oom:
    snprintf(err, EV_ERR_LEN, "METEOR: out of memory");
    return -1;
}
