/* porter.c — NLTK's PorterStemmer in its default mode (NLTK_EXTENSIONS), the
 * stemmer of METEOR's second stage and of rouge-score's use_stemmer
 * (metrics-reference.md §3.4).
 *
 * Python runs it on code points: lengths, the consonant/vowel pattern and the
 * "last two equal" test count characters, so the word is decoded first (a
 * non-ASCII character is a consonant, as any letter outside a-e-i-o-u-y).
 * Rule lists are first-suffix-wins: the first rule whose suffix ends the word
 * decides, applied or not. Quirks kept: the irregular-form table is looked up
 * with the word as given (not lowercased), and step 1b's "*d" rule also fires
 * on a stem that literally ends in "*d". */
#include "metrics.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    uint32_t *c;
    size_t n;
} word_t;

static bool ends(const word_t *w, const char *suf)
{
    size_t k = strlen(suf);
    if (k > w->n)
        return false;
    for (size_t i = 0; i < k; i++)
        if (w->c[w->n - k + i] != (unsigned char)suf[i])
            return false;
    return true;
}

static bool vowel(uint32_t c) { return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u'; }

/* _is_consonant(word, i): y is a consonant at the start or after a vowel,
 * a vowel after a consonant. NLTK recurses through a run of y; a run of y
 * alternates, so the parity of the run decides (no recursion, no stack). */
static bool cons(const uint32_t *c, size_t i)
{
    if (c[i] != 'y')
        return !vowel(c[i]);
    size_t k = 0; // y's before i in the run
    while (k < i && c[i - k - 1] == 'y')
        k++;
    bool first = i - k == 0 ? true : vowel(c[i - k - 1]); // the run's first y
    return (k % 2 == 0) ? first : !first;
}

/* The consonant flags of the prefix of length n, left to right, in one pass. */
#define FOR_CV(c, n, body)                                                                                             \
    do {                                                                                                               \
        bool prev_c_ = false;                                                                                          \
        for (size_t i_ = 0; i_ < (n); i_++) {                                                                          \
            bool is_c_ = (c)[i_] == 'y' ? (i_ == 0 ? true : !prev_c_) : !vowel((c)[i_]);                              \
            body;                                                                                                      \
            prev_c_ = is_c_;                                                                                           \
        }                                                                                                              \
    } while (0)

/* m of the prefix of length n: the number of "vc" in the pattern */
static int measure(const uint32_t *c, size_t n)
{
    int m = 0;
    bool prev_v = false;
    FOR_CV(c, n, {
        if (prev_v && is_c_)
            m++;
        prev_v = !is_c_;
    });
    return m;
}

static bool has_vowel(const uint32_t *c, size_t n)
{
    bool v = false;
    FOR_CV(c, n, v |= !is_c_);
    return v;
}

static bool ends_double(const uint32_t *c, size_t n) { return n >= 2 && c[n - 1] == c[n - 2] && cons(c, n - 1); }

static bool ends_cvc(const uint32_t *c, size_t n)
{
    if (n >= 3 && cons(c, n - 3) && !cons(c, n - 2) && cons(c, n - 1) && c[n - 1] != 'w' && c[n - 1] != 'x' &&
        c[n - 1] != 'y')
        return true;
    return n == 2 && !cons(c, 0) && cons(c, 1);
}

static void set_suffix(word_t *w, size_t keep, const char *rep)
{
    w->n = keep;
    for (; *rep; rep++)
        w->c[w->n++] = (unsigned char)*rep;
}

enum { C_NONE, C_M0, C_M1, C_ION, C_LOGI, C_LL };

typedef struct {
    const char *suf, *rep;
    int cond;
} rule_t;

static bool cond_ok(const word_t *w, size_t stem_n, int cond)
{
    switch (cond) {
    case C_M0: return measure(w->c, stem_n) > 0;
    case C_M1: return measure(w->c, stem_n) > 1;
    case C_ION: return measure(w->c, stem_n) > 1 && stem_n > 0 && (w->c[stem_n - 1] == 's' || w->c[stem_n - 1] == 't');
    case C_LOGI: return measure(w->c, w->n - 3) > 0;  // word[:-3]: the stem with its "l"
    case C_LL: return measure(w->c, w->n - 1) > 1;    // word[:-1]
    default: return true;
    }
}

/* _apply_rule_list: the first rule whose suffix ends the word decides. */
static void apply_rules(word_t *w, const rule_t *r, size_t nr)
{
    for (size_t i = 0; i < nr; i++) {
        if (!ends(w, r[i].suf))
            continue;
        size_t stem_n = w->n - strlen(r[i].suf);
        if (cond_ok(w, stem_n, r[i].cond))
            set_suffix(w, stem_n, r[i].rep);
        return;
    }
}

static void step1a(word_t *w)
{
    if (ends(w, "ies") && w->n == 4) {
        set_suffix(w, 1, "ie");
        return;
    }
    static const rule_t r[] = {{"sses", "ss", C_NONE}, {"ies", "i", C_NONE}, {"ss", "ss", C_NONE}, {"s", "", C_NONE}};
    apply_rules(w, r, 4);
}

static void step1b(word_t *w)
{
    if (ends(w, "ied")) {
        set_suffix(w, w->n - 3, w->n == 4 ? "ie" : "i");
        return;
    }
    if (ends(w, "eed")) {
        if (measure(w->c, w->n - 3) > 0)
            set_suffix(w, w->n - 3, "ee");
        return;
    }
    size_t t;
    if (ends(w, "ed") && has_vowel(w->c, w->n - 2))
        t = w->n - 2;
    else if (ends(w, "ing") && has_vowel(w->c, w->n - 3))
        t = w->n - 3;
    else
        return;
    w->n = t; // continue on the intermediate stem
    if (ends(w, "at")) {
        set_suffix(w, w->n - 2, "ate");
        return;
    }
    if (ends(w, "bl")) {
        set_suffix(w, w->n - 2, "ble");
        return;
    }
    if (ends(w, "iz")) {
        set_suffix(w, w->n - 2, "ize");
        return;
    }
    // "*d": a double consonant (or, QUIRK, the literal "*d") loses one letter
    // unless it is l, s or z; either way the rule decides
    if (ends_double(w->c, w->n) || ends(w, "*d")) {
        uint32_t last = w->c[w->n - 1];
        if (last != 'l' && last != 's' && last != 'z')
            w->n -= 1, w->c[w->n - 1] = last;
        return;
    }
    if (measure(w->c, w->n) == 1 && ends_cvc(w->c, w->n))
        w->c[w->n++] = 'e';
}

static void step1c(word_t *w)
{
    if (ends(w, "y") && w->n - 1 > 1 && cons(w->c, w->n - 2))
        w->c[w->n - 1] = 'i';
}

static void step2(word_t *w)
{
    if (ends(w, "alli") && measure(w->c, w->n - 4) > 0) {
        set_suffix(w, w->n - 4, "al");
        step2(w);
        return;
    }
    static const rule_t r[] = {
        {"ational", "ate", C_M0}, {"tional", "tion", C_M0}, {"enci", "ence", C_M0},   {"anci", "ance", C_M0},
        {"izer", "ize", C_M0},    {"bli", "ble", C_M0},     {"alli", "al", C_M0},     {"entli", "ent", C_M0},
        {"eli", "e", C_M0},       {"ousli", "ous", C_M0},   {"ization", "ize", C_M0}, {"ation", "ate", C_M0},
        {"ator", "ate", C_M0},    {"alism", "al", C_M0},    {"iveness", "ive", C_M0}, {"fulness", "ful", C_M0},
        {"ousness", "ous", C_M0}, {"aliti", "al", C_M0},    {"iviti", "ive", C_M0},   {"biliti", "ble", C_M0},
        {"fulli", "ful", C_M0},   {"logi", "log", C_LOGI},
    };
    apply_rules(w, r, sizeof r / sizeof r[0]);
}

static void step3(word_t *w)
{
    static const rule_t r[] = {{"icate", "ic", C_M0}, {"ative", "", C_M0}, {"alize", "al", C_M0}, {"iciti", "ic", C_M0},
                               {"ical", "ic", C_M0},  {"ful", "", C_M0},   {"ness", "", C_M0}};
    apply_rules(w, r, sizeof r / sizeof r[0]);
}

static void step4(word_t *w)
{
    static const rule_t r[] = {
        {"al", "", C_M1},  {"ance", "", C_M1}, {"ence", "", C_M1}, {"er", "", C_M1},    {"ic", "", C_M1},
        {"able", "", C_M1}, {"ible", "", C_M1}, {"ant", "", C_M1},  {"ement", "", C_M1}, {"ment", "", C_M1},
        {"ent", "", C_M1}, {"ion", "", C_ION}, {"ou", "", C_M1},   {"ism", "", C_M1},   {"ate", "", C_M1},
        {"iti", "", C_M1}, {"ous", "", C_M1},  {"ive", "", C_M1},  {"ize", "", C_M1},
    };
    apply_rules(w, r, sizeof r / sizeof r[0]);
}

static void step5a(word_t *w)
{
    if (!ends(w, "e"))
        return;
    int m = measure(w->c, w->n - 1);
    if (m > 1 || (m == 1 && !ends_cvc(w->c, w->n - 1)))
        w->n--;
}

static void step5b(word_t *w)
{
    static const rule_t r[] = {{"ll", "l", C_LL}};
    apply_rules(w, r, 1);
}

static const char *irregular(const char *s, size_t n)
{
    static const char *const pool[][2] = {
        {"sky", "sky"},         {"skies", "sky"},     {"dying", "die"},       {"lying", "lie"},
        {"tying", "tie"},       {"news", "news"},     {"innings", "inning"},  {"inning", "inning"},
        {"outings", "outing"},  {"outing", "outing"}, {"cannings", "canning"}, {"canning", "canning"},
        {"howe", "howe"},       {"proceed", "proceed"}, {"exceed", "exceed"}, {"succeed", "succeed"},
    };
    for (size_t i = 0; i < sizeof pool / sizeof pool[0]; i++)
        if (strlen(pool[i][0]) == n && memcmp(pool[i][0], s, n) == 0)
            return pool[i][1];
    return NULL;
}

int porter_stem(const char *word, size_t n, ev_buf_t *out)
{
    const char *irr = irregular(word, n);
    if (irr)
        return ev_buf_put(out, irr, strlen(irr));
    ev_buf_t low = {0};
    if (ev_lower(word, n, &low))
        return -1;
    size_t chars = 0; // len(word): the word as given
    for (size_t i = 0; i < n; chars++) {
        uint32_t cp;
        i += ev_utf8_next(word, n, i, &cp);
    }
    if (chars <= 2) {
        int rc = ev_buf_put(out, low.p ? low.p : "", low.n);
        ev_buf_free(&low);
        return rc;
    }
    uint32_t stack[64], *c = low.n + 8 <= 64 ? stack : malloc((low.n + 8) * sizeof *c);
    if (!c) {
        ev_buf_free(&low);
        return -1;
    }
    word_t w = {c, 0};
    for (size_t i = 0; i < low.n;)
        i += ev_utf8_next(low.p, low.n, i, &c[w.n++]);
    step1a(&w);
    step1b(&w);
    step1c(&w);
    step2(&w);
    step3(&w);
    step4(&w);
    step5a(&w);
    step5b(&w);
    int rc = ev_buf_reserve(out, 4 * w.n);
    for (size_t i = 0; !rc && i < w.n; i++)
        rc = ev_buf_put_cp(out, w.c[i]);
    if (!rc && !out->p)
        rc = ev_buf_put(out, "", 0);
    if (c != stack)
        free(c);
    ev_buf_free(&low);
    return rc;
}
