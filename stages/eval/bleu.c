/* bleu.c — BLEU as sacrebleu 2.x computes it (metrics-reference.md §1): its
 * tokenizers (13a, zh, intl, char, none), the segment statistics with
 * reference counts clipped at their maximum over references and the closest
 * reference length (the shorter on a tie), and compute_bleu's smoothing,
 * effective order and brevity penalty in the same order of double
 * operations, so scores equal sacrebleu's to the last bit.
 *
 * The 13a passes work on bytes: every pattern is two ASCII characters or a
 * non-digit, and no byte of a multi-byte UTF-8 sequence is ASCII, so a byte
 * scan matches exactly where Python's re scans code points. */
#define _GNU_SOURCE // memmem
#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

void bleu_opts_default(bleu_opts_t *o)
{
    *o = (bleu_opts_t){.tok = BLEU_TOK_13A, .smooth = BLEU_SMOOTH_EXP, .smooth_value = -1, .effective_order = false};
}

static const char *const tok_names[] = {"13a", "zh", "intl", "char", "none"};
static const char *const smooth_names[] = {"exp", "floor", "add-k", "none"};

int bleu_tok_parse(const char *s, bleu_tok_t *out)
{
    for (int i = 0; i < 5; i++)
        if (strcmp(s, tok_names[i]) == 0) {
            *out = (bleu_tok_t)i;
            return 0;
        }
    return -1;
}

int bleu_smooth_parse(const char *s, bleu_smooth_t *out)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, smooth_names[i]) == 0) {
            *out = (bleu_smooth_t)i;
            return 0;
        }
    return -1;
}

const char *bleu_tok_name(bleu_tok_t t) { return tok_names[t]; }

/* ---- n-gram table: (order, token ids) -> counts, cleared per segment */

typedef struct {
    uint32_t id[BLEU_ORDER];
    uint32_t n;
    uint32_t stamp;   // which reference counted into cur (1-based); 0: none yet
    uint32_t slot;    // where it sits in the hash slots
    int64_t cur, ref; // count in the current reference, maximum over references
    int64_t hyp;
} gram_t;

struct bleu {
    bleu_opts_t o;
    ev_intern_t *words;
    ev_buf_t a, b, low; // scratch for the tokenizer passes
    ev_spans_t spans;
    uint32_t *ids, *hids; // word ids of the segment being counted, of the hypothesis
    size_t ids_cap, hids_cap;
    gram_t *grams;
    uint32_t *slots; // gram index + 1
    size_t nslots, ngrams, grams_cap;
};

bleu_t *bleu_new(const bleu_opts_t *o)
{
    bleu_t *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->o = *o;
    b->words = ev_intern_new();
    b->nslots = 1024;
    b->slots = calloc(b->nslots, sizeof *b->slots);
    if (!b->words || !b->slots) {
        bleu_destroy(&b);
        return NULL;
    }
    return b;
}

void bleu_destroy(bleu_t **bp)
{
    bleu_t *b = *bp;
    if (!b)
        return;
    ev_intern_destroy(&b->words);
    ev_buf_free(&b->a);
    ev_buf_free(&b->b);
    ev_buf_free(&b->low);
    ev_spans_free(&b->spans);
    free(b->ids);
    free(b->hids);
    free(b->grams);
    free(b->slots);
    free(b);
    *bp = NULL;
}

/* ---- tokenizers */

/* Python str.replace(pat, rep) over in, into out. */
static int replace_all(const char *s, size_t n, const char *pat, const char *rep, ev_buf_t *out)
{
    size_t pl = strlen(pat), rl = strlen(rep), i = 0;
    out->n = 0;
    if (ev_buf_reserve(out, n))
        return -1;
    while (i < n) {
        const char *hit = pl <= n - i ? memmem(s + i, n - i, pat, pl) : NULL;
        size_t upto = hit ? (size_t)(hit - s) : n;
        if (ev_buf_put(out, s + i, upto - i))
            return -1;
        if (!hit)
            break;
        if (ev_buf_put(out, rep, rl))
            return -1;
        i = upto + pl;
    }
    if (!out->p && ev_buf_put(out, "", 0))
        return -1;
    return 0;
}

static void swap(ev_buf_t *x, ev_buf_t *y)
{
    ev_buf_t t = *x;
    *x = *y, *y = t;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* pass A's set: [{-~[-` -&(-+:-@/] */
static bool sep_a(unsigned char c)
{
    return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') || (c >= '(' && c <= '+') ||
           (c >= ':' && c <= '@') || c == '/';
}

static bool is_pc(char c) { return c == '.' || c == ','; }

/* The language-dependent passes of sacrebleu's TokenizerRegexp over b->a
 * (result in b->a). Each pass scans left to right for non-overlapping
 * two-character matches as re.sub does; text between the places a match can
 * start is copied in runs. */
static int regexp_passes(bleu_t *b)
{
    ev_buf_t *in = &b->a, *out = &b->b;
    out->n = 0;
    if (ev_buf_reserve(out, in->n * 3))
        return -1;
    // A: every character of the set -> " c "
    for (size_t i = 0, n = in->n; i < n;) {
        size_t j = i;
        while (j < n && !sep_a((unsigned char)in->p[j]))
            j++;
        memcpy(out->p + out->n, in->p + i, j - i), out->n += j - i;
        if (j < n) {
            out->p[out->n++] = ' ';
            out->p[out->n++] = in->p[j];
            out->p[out->n++] = ' ';
            j++;
        }
        i = j;
    }
    swap(in, out);
    // B: ([^0-9])([.,]) -> "\1 \2 "; C: ([.,])([^0-9]) -> " \1 \2"; D: ([0-9])(-) -> "\1 \2 "
    // (a pass whose characters do not occur changes nothing and is skipped)
    bool punct = memchr(in->p, '.', in->n) || memchr(in->p, ',', in->n), dash = memchr(in->p, '-', in->n);
    for (int pass = 0; pass < 3; pass++) {
        if (pass < 2 ? !punct : !dash)
            continue;
        out->n = 0;
        if (ev_buf_reserve(out, in->n * 2 + 1))
            return -1;
        const char *t = in->p;
        size_t n = in->n, i = 0;
        while (i < n) {
            // q: where the next match can be (its first character)
            size_t q;
            if (pass == 1) {
                q = i;
                while (q + 1 < n && !is_pc(t[q]))
                    q++;
                if (q + 1 >= n)
                    q = n;
            } else {
                size_t k = i + 1;
                while (k < n && !(pass == 0 ? is_pc(t[k]) : t[k] == '-'))
                    k++;
                q = k < n ? k - 1 : n;
            }
            memcpy(out->p + out->n, t + i, q - i), out->n += q - i;
            if (q >= n)
                break;
            char x = t[q], y = t[q + 1];
            bool hit = pass == 0 ? !is_digit(x) : pass == 1 ? !is_digit(y) : is_digit(x);
            if (!hit) {
                out->p[out->n++] = x;
                i = q + 1;
                continue;
            }
            if (pass == 1)
                out->p[out->n++] = ' ';
            out->p[out->n++] = x;
            out->p[out->n++] = ' ';
            out->p[out->n++] = y;
            if (pass != 1)
                out->p[out->n++] = ' ';
            i = q + 2;
        }
        out->p[out->n] = 0;
        swap(in, out);
    }
    in->p[in->n] = 0;
    return 0;
}

/* Join the whitespace-separated runs of b->a with single spaces onto out. */
static int join_words(bleu_t *b, ev_buf_t *out)
{
    b->spans.n = 0;
    if (ev_split(b->a.p, b->a.n, &b->spans))
        return -1;
    for (size_t i = 0; i < b->spans.n; i++)
        if ((i && ev_buf_putc(out, ' ')) || ev_buf_put(out, b->a.p + b->spans.v[i].off, b->spans.v[i].len))
            return -1;
    return ev_buf_put(out, "", 0); // terminated even when nothing was added
}

static int tok_13a(bleu_t *b, const char *s, size_t n)
{
    // the replacements, each only where its text occurs (most segments have none)
    b->a.n = 0;
    if (ev_buf_put(&b->a, s, n))
        return -1;
    if (memmem(b->a.p, b->a.n, "<skipped>", 9) &&
        (replace_all(b->a.p, b->a.n, "<skipped>", "", &b->b) || (swap(&b->a, &b->b), 0)))
        return -1;
    if (memchr(b->a.p, '\n', b->a.n) &&
        (replace_all(b->a.p, b->a.n, "-\n", "", &b->b) || replace_all(b->b.p, b->b.n, "\n", " ", &b->a)))
        return -1;
    if (memchr(b->a.p, '&', b->a.n)) {
        // sequential passes: "&amp;lt;" becomes "<" (QUIRK kept)
        if (replace_all(b->a.p, b->a.n, "&quot;", "\"", &b->b) || replace_all(b->b.p, b->b.n, "&amp;", "&", &b->a) ||
            replace_all(b->a.p, b->a.n, "&lt;", "<", &b->b) || replace_all(b->b.p, b->b.n, "&gt;", ">", &b->a))
            return -1;
    }
    b->b.n = 0;
    if (ev_buf_putc(&b->b, ' ') || ev_buf_put(&b->b, b->a.p, b->a.n) || ev_buf_putc(&b->b, ' '))
        return -1;
    swap(&b->a, &b->b);
    return regexp_passes(b);
}

/* sacrebleu's _UCODE_RANGES, compared as Python compares a one-character
 * string with the range ends: the two ends written "\u20000" and "\u2f800"
 * are two characters each ("\u2000" "0"), so those ranges are really
 * U+2001-U+2A6D and U+2F81-U+2FA1 (QUIRK kept: general punctuation, arrows,
 * math symbols count as Chinese; CJK Extension B does not). */
static bool zh_char(uint32_t c)
{
    static const uint32_t r[][2] = {
        {0x3400, 0x4DB5}, {0x4E00, 0x9FA5}, {0x9FA6, 0x9FBB}, {0xF900, 0xFA2D}, {0xFA30, 0xFA6A}, {0xFA70, 0xFAD9},
        {0x2001, 0x2A6D}, {0x2F81, 0x2FA1}, {0xFF00, 0xFFEF}, {0x2E80, 0x2EFF}, {0x3000, 0x303F}, {0x31C0, 0x31EF},
        {0x2F00, 0x2FDF}, {0x2FF0, 0x2FFF}, {0x3100, 0x312F}, {0x31A0, 0x31BF}, {0xFE10, 0xFE1F}, {0xFE30, 0xFE4F},
        {0x2600, 0x26FF}, {0x2700, 0x27BF}, {0x3200, 0x32FF}, {0x3300, 0x33FF},
    };
    if (c < 0x2001)
        return false;
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        if (c >= r[i][0] && c <= r[i][1])
            return true;
    return false;
}

static int tok_zh(bleu_t *b, const char *s, size_t n)
{
    size_t i = ev_lstrip(s, n);
    n = ev_rstrip(s, n);
    b->a.n = 0;
    if (ev_buf_reserve(&b->a, n + 1))
        return -1;
    while (i < n) {
        uint32_t cp;
        size_t k = ev_utf8_next(s, n, i, &cp);
        bool z = zh_char(cp);
        if ((z && ev_buf_putc(&b->a, ' ')) || ev_buf_put(&b->a, s + i, k) || (z && ev_buf_putc(&b->a, ' ')))
            return -1;
        i += k;
    }
    if (!b->a.p && ev_buf_put(&b->a, "", 0))
        return -1;
    return regexp_passes(b);
}

static bool cat_in(uint32_t c, char major)
{
    if (c >= 0xDC80 && c <= 0xDCFF)
        return false;
    const char *name = utf8proc_category_string((utf8proc_int32_t)c);
    return name[0] == major;
}

static int tok_intl(bleu_t *b, const char *s, size_t n)
{
    // 1: (\P{N})(\p{P}) -> "\1 \2 "; 2: (\p{P})(\P{N}) -> " \1 \2"; 3: (\p{S}) -> " \1 "
    ev_buf_t *in = &b->a, *out = &b->b;
    in->n = 0;
    if (ev_buf_put(in, s, n))
        return -1;
    for (int pass = 0; pass < 3; pass++) {
        out->n = 0;
        if (ev_buf_reserve(out, in->n * 3 + 1))
            return -1;
        size_t i = 0, m = in->n;
        const char *t = in->p;
        while (i < m) {
            uint32_t x, y = 0;
            size_t kx = ev_utf8_next(t, m, i, &x), ky = 0;
            if (pass == 2) {
                bool sym = cat_in(x, 'S');
                if (sym)
                    out->p[out->n++] = ' ';
                memcpy(out->p + out->n, t + i, kx), out->n += kx;
                if (sym)
                    out->p[out->n++] = ' ';
                i += kx;
                continue;
            }
            if (i + kx < m) {
                ky = ev_utf8_next(t, m, i + kx, &y);
                bool hit = pass == 0 ? !cat_in(x, 'N') && cat_in(y, 'P') : cat_in(x, 'P') && !cat_in(y, 'N');
                if (hit) {
                    if (pass == 1)
                        out->p[out->n++] = ' ';
                    memcpy(out->p + out->n, t + i, kx), out->n += kx;
                    out->p[out->n++] = ' ';
                    memcpy(out->p + out->n, t + i + kx, ky), out->n += ky;
                    if (pass == 0)
                        out->p[out->n++] = ' ';
                    i += kx + ky;
                    continue;
                }
            }
            memcpy(out->p + out->n, t + i, kx), out->n += kx;
            i += kx;
        }
        out->p[out->n] = 0;
        swap(in, out);
    }
    return 0;
}

static int tok_char(bleu_t *b, const char *s, size_t n)
{
    b->a.n = 0;
    if (ev_buf_reserve(&b->a, 2 * n + 1))
        return -1;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = ev_utf8_next(s, n, i, &cp);
        if (i)
            b->a.p[b->a.n++] = ' ';
        memcpy(b->a.p + b->a.n, s + i, k), b->a.n += k;
        i += k;
    }
    b->a.p[b->a.n] = 0;
    return 0;
}

/* The tokenizer's output, not yet split and joined, into b->a. */
static int tokenize_raw(bleu_t *b, const char *s, size_t n)
{
    if (b->o.lowercase) {
        b->low.n = 0;
        if (ev_lower(s, n, &b->low))
            return -1;
        s = b->low.p, n = b->low.n;
    }
    n = ev_rstrip(s, n);
    switch (b->o.tok) {
    case BLEU_TOK_13A: return tok_13a(b, s, n);
    case BLEU_TOK_ZH: return tok_zh(b, s, n);
    case BLEU_TOK_INTL: return tok_intl(b, s, n);
    case BLEU_TOK_CHAR: return tok_char(b, s, n);
    default: b->a.n = 0; return ev_buf_put(&b->a, s, n);
    }
}

int bleu_tokenize(bleu_t *b, const char *s, size_t n, ev_buf_t *out)
{
    return tokenize_raw(b, s, n) ? -1 : join_words(b, out);
}

/* ---- statistics */

static uint64_t gram_hash(const uint32_t *id, uint32_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ull * (n + 1);
    for (uint32_t i = 0; i < n; i++) {
        h ^= id[i] + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
        h *= 0xff51afd7ed558ccdull;
    }
    return h ^ (h >> 31);
}

static void clear_grams(bleu_t *b)
{
    for (size_t g = 0; g < b->ngrams; g++)
        b->slots[b->grams[g].slot] = 0;
    b->ngrams = 0;
}

static gram_t *find_gram(bleu_t *b, const uint32_t *id, uint32_t n)
{
    if ((b->ngrams + 1) * 2 > b->nslots) {
        size_t ns = b->nslots * 2;
        uint32_t *slots = calloc(ns, sizeof *slots);
        if (!slots)
            return NULL;
        for (size_t g = 0; g < b->ngrams; g++) {
            size_t i = (size_t)gram_hash(b->grams[g].id, b->grams[g].n) & (ns - 1);
            while (slots[i])
                i = (i + 1) & (ns - 1);
            slots[i] = (uint32_t)g + 1;
            b->grams[g].slot = (uint32_t)i;
        }
        free(b->slots);
        b->slots = slots, b->nslots = ns;
    }
    size_t mask = b->nslots - 1, i = (size_t)gram_hash(id, n) & mask;
    for (;;) {
        uint32_t v = b->slots[i];
        if (!v)
            break;
        gram_t *g = &b->grams[v - 1];
        if (g->n == n && memcmp(g->id, id, n * sizeof *id) == 0)
            return g;
        i = (i + 1) & mask;
    }
    if (b->ngrams == b->grams_cap) {
        size_t cap = b->grams_cap ? b->grams_cap * 2 : 256;
        gram_t *g = realloc(b->grams, cap * sizeof *g);
        if (!g)
            return NULL;
        b->grams = g, b->grams_cap = cap;
    }
    gram_t *g = &b->grams[b->ngrams];
    memset(g, 0, sizeof *g);
    memcpy(g->id, id, n * sizeof *id);
    g->n = n;
    g->slot = (uint32_t)i;
    b->slots[i] = (uint32_t)++b->ngrams;
    return g;
}

/* Tokenize a segment and intern its words into b->ids (the words are the
 * whitespace-separated runs of the tokenizer's output, as sacrebleu splits
 * its joined string); returns the count or -1. */
static long long segment_ids(bleu_t *b, const char *s, size_t n)
{
    if (tokenize_raw(b, s, n))
        return -1;
    b->spans.n = 0;
    if (ev_split(b->a.p, b->a.n, &b->spans))
        return -1;
    if (b->spans.n > b->ids_cap) {
        uint32_t *ids = realloc(b->ids, b->spans.n * sizeof *ids);
        if (!ids)
            return -1;
        b->ids = ids, b->ids_cap = b->spans.n;
    }
    for (size_t i = 0; i < b->spans.n; i++) {
        b->ids[i] = ev_intern(b->words, b->a.p + b->spans.v[i].off, b->spans.v[i].len);
        if (b->ids[i] == UINT32_MAX)
            return -1;
    }
    return (long long)b->spans.n;
}

int bleu_segment(bleu_t *b, const char *hyp, size_t hn, const char *const *refs, const size_t *rn, int nrefs,
                 bleu_stats_t *st, char *err)
{
    memset(st, 0, sizeof *st);
    clear_grams(b);
    int64_t closest_diff = -1, closest_len = -1;
    // the hypothesis first: the closest reference length needs its length
    long long h = segment_ids(b, hyp, hn);
    if (h < 0)
        goto oom;
    size_t hyp_len = (size_t)h;
    if (hyp_len > b->hids_cap) {
        uint32_t *p = realloc(b->hids, hyp_len * sizeof *p);
        if (!p)
            goto oom;
        b->hids = p, b->hids_cap = hyp_len;
    }
    if (hyp_len)
        memcpy(b->hids, b->ids, hyp_len * sizeof *b->ids);
    for (int j = 0; j < nrefs; j++) {
        long long l = segment_ids(b, refs[j], rn[j]);
        if (l < 0)
            goto oom;
        size_t len = (size_t)l;
        int64_t diff = len > hyp_len ? (int64_t)(len - hyp_len) : (int64_t)(hyp_len - len);
        if (closest_diff == -1 || diff < closest_diff)
            closest_diff = diff, closest_len = (int64_t)len;
        else if (diff == closest_diff && (int64_t)len < closest_len)
            closest_len = (int64_t)len;
        for (uint32_t n = 1; n <= BLEU_ORDER; n++)
            for (size_t i = 0; i + n <= len; i++) {
                gram_t *g = find_gram(b, b->ids + i, n);
                if (!g)
                    goto oom;
                if (g->stamp != (uint32_t)j + 1)
                    g->stamp = (uint32_t)j + 1, g->cur = 0;
                if (++g->cur > g->ref)
                    g->ref = g->cur;
            }
    }
    for (uint32_t n = 1; n <= BLEU_ORDER; n++) {
        for (size_t i = 0; i + n <= hyp_len; i++) {
            gram_t *g = find_gram(b, b->hids + i, n);
            if (!g)
                goto oom;
            g->hyp++;
        }
        st->total[n - 1] = hyp_len >= n ? (int64_t)(hyp_len - n + 1) : 0;
    }
    for (size_t g = 0; g < b->ngrams; g++) {
        const gram_t *x = &b->grams[g];
        if (x->hyp)
            st->correct[x->n - 1] += x->hyp < x->ref ? x->hyp : x->ref;
    }
    st->sys_len = (int64_t)hyp_len;
    st->ref_len = closest_len;
    return 0;
oom:
    snprintf(err, EV_ERR_LEN, "BLEU: out of memory");
    return -1;
}

void bleu_stats_add(bleu_stats_t *sum, const bleu_stats_t *st)
{
    sum->sys_len += st->sys_len;
    sum->ref_len += st->ref_len;
    for (int i = 0; i < BLEU_ORDER; i++)
        sum->correct[i] += st->correct[i], sum->total[i] += st->total[i];
}

/* sacrebleu's my_log */
static double my_log(double x) { return x == 0.0 ? -9999999999.0 : log(x); }

void bleu_compute(const bleu_opts_t *o, const bleu_stats_t *st, bleu_score_t *out)
{
    memset(out, 0, sizeof *out);
    double sv = o->smooth_value >= 0 ? o->smooth_value : o->smooth == BLEU_SMOOTH_FLOOR ? 0.1 : 1.0;
    out->sys_len = st->sys_len, out->ref_len = st->ref_len;
    if (st->sys_len < st->ref_len)
        out->bp = st->sys_len > 0 ? exp(1.0 - (double)st->ref_len / (double)st->sys_len) : 0.0;
    else
        out->bp = 1.0;
    out->ratio = st->ref_len ? (double)st->sys_len / (double)st->ref_len : 0.0;
    bool any = false;
    for (int i = 0; i < BLEU_ORDER; i++) {
        out->counts[i] = (double)st->correct[i], out->totals[i] = (double)st->total[i];
        any |= st->correct[i] != 0;
    }
    if (!any) // early stop (sacrebleu #141): score 0, precisions 0
        return;
    double smooth = 1.0;
    int eff = BLEU_ORDER;
    for (int n = 1; n <= BLEU_ORDER; n++) {
        if (o->smooth == BLEU_SMOOTH_ADD_K && n > 1)
            out->counts[n - 1] += sv, out->totals[n - 1] += sv;
        if (out->totals[n - 1] == 0)
            break;
        if (o->effective_order)
            eff = n;
        if (out->counts[n - 1] == 0) {
            if (o->smooth == BLEU_SMOOTH_EXP) {
                smooth *= 2;
                out->precisions[n - 1] = 100. / (smooth * out->totals[n - 1]);
            } else if (o->smooth == BLEU_SMOOTH_FLOOR)
                out->precisions[n - 1] = 100. * sv / out->totals[n - 1];
        } else
            out->precisions[n - 1] = 100. * out->counts[n - 1] / out->totals[n - 1];
    }
    // Python's sum(): 0 + the first term, then Neumaier's compensated sum of
    // the rest (Python >= 3.12, which made the golden scores; 3.11 added
    // plainly, which differs in the last bits only)
    double sum = my_log(out->precisions[0]), c = 0.0;
    for (int n = 1; n < eff; n++) {
        double x = my_log(out->precisions[n]), t = sum + x;
        if (fabs(sum) >= fabs(x))
            c += (sum - t) + x;
        else
            c += (x - t) + sum;
        sum = t;
    }
    if (c != 0.0 && isfinite(c))
        sum += c;
    out->score = out->bp * exp(sum / eff);
}

void bleu_signature(const bleu_opts_t *o, int nrefs, char *buf, size_t size)
{
    char nr[16], sm[32];
    if (nrefs < 0)
        snprintf(nr, sizeof nr, "var");
    else
        snprintf(nr, sizeof nr, "%d", nrefs);
    if (o->smooth == BLEU_SMOOTH_FLOOR || o->smooth == BLEU_SMOOTH_ADD_K)
        snprintf(sm, sizeof sm, "%s[%.2f]", smooth_names[o->smooth],
                 o->smooth_value >= 0 ? o->smooth_value : o->smooth == BLEU_SMOOTH_FLOOR ? 0.1 : 1.0);
    else
        snprintf(sm, sizeof sm, "%s", smooth_names[o->smooth]);
    snprintf(buf, size, "nrefs:%s|case:%s|eff:%s|tok:%s|smooth:%s|version:%s", nr, o->lowercase ? "lc" : "mixed",
             o->effective_order ? "yes" : "no", tok_names[o->tok], sm, BLEU_SACREBLEU_VERSION);
}

void bleu_format(const bleu_score_t *s, const char *sig, char *buf, size_t size)
{
    snprintf(buf, size, "BLEU%s%s = %.2f %.1f/%.1f/%.1f/%.1f (BP = %.3f ratio = %.3f hyp_len = %lld ref_len = %lld)",
             sig && *sig ? "|" : "", sig ? sig : "", s->score, s->precisions[0], s->precisions[1], s->precisions[2],
             s->precisions[3], s->bp, s->ratio, (long long)s->sys_len, (long long)s->ref_len);
}
