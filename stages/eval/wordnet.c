/* wordnet.c — the part of NLTK's WordNet reader that METEOR uses
 * (metrics-reference.md §3.3, §3.5): synsets(word) through NLTK's own
 * morphy, over the plain WordNet 3.0 files of Debian's wordnet-base
 * (index.POS, POS.exc, data.POS in /usr/share/wordnet).
 *
 * The index files are read whole into a table lemma -> synset offsets per
 * part of speech; the data files are mapped and a synset's line is parsed
 * when first asked for. Not libwordnet's morphstr: its morphology differs from
 * NLTK's _morphy.
 *
 * Morphy's rule rounds are exact but kept small: a form is the word's first k
 * bytes plus a short tail (every rule removes a suffix and appends at most
 * three letters), forms repeated within a round are kept once (the result is
 * used as a set), and a form longer than the longest lemma is never looked
 * up, so a long token costs linear time where NLTK's lists grow. */
#include "metrics.h"

#include "../../ipc/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum { P_NOUN, P_VERB, P_ADJ, P_ADV, NPOS };
static const char pos_chars[NPOS] = {'n', 'v', 'a', 'r'};
static const char *const pos_files[NPOS] = {"noun", "verb", "adj", "adv"};

typedef struct {
    uint32_t start, count; // into offsets
} span_t;

struct wordnet {
    ev_intern_t *lemmas;  // index lemmas
    span_t *idx[NPOS];    // by lemma id; count 0: not in this part of speech
    size_t idx_cap;
    uint32_t *offsets;
    size_t noffsets, offsets_cap;
    size_t max_lemma;     // longest lemma, bytes
    ev_intern_t *exc;     // "p:form" -> id
    span_t *exc_bases;    // by exc id, into exc_pool (NUL-separated bases)
    size_t exc_cap;
    ev_buf_t exc_pool;
    uint32_t *exc_off;    // offset of each base string in exc_pool
    size_t nexc_off, exc_off_cap;
    const char *data[NPOS];
    size_t data_n[NPOS];
};

static void set_err(char *err, const char *dir, const char *file, const char *what)
{
    snprintf(err, EV_ERR_LEN, "%s/%s: %s (WordNet 3.0: apt-get install wordnet-base, or --wordnet DIR)", dir, file,
             what);
}

static int grow_idx(wordnet_t *w, uint32_t id)
{
    if (id < w->idx_cap)
        return 0;
    size_t cap = w->idx_cap ? w->idx_cap * 2 : 65536;
    while (cap <= id)
        cap *= 2;
    for (int p = 0; p < NPOS; p++) {
        span_t *s = realloc(w->idx[p], cap * sizeof *s);
        if (!s)
            return -1;
        memset(s + w->idx_cap, 0, (cap - w->idx_cap) * sizeof *s);
        w->idx[p] = s;
    }
    w->idx_cap = cap;
    return 0;
}

/* index.POS: "lemma pos synset_cnt p_cnt [ptr]... sense_cnt tagsense_cnt offset..." */
static int load_index(wordnet_t *w, const char *dir, int p, char *err)
{
    char name[32];
    snprintf(name, sizeof name, "index.%s", pos_files[p]);
    char path[4096], *buf;
    size_t n;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (fs_read_whole(path, &buf, &n, NULL)) {
        set_err(err, dir, name, errno == ENOMEM ? "out of memory" : strerror(errno));
        return -1;
    }
    size_t lineno = 0;
    for (char *line = buf, *next; line < buf + n; line = next) {
        char *nl = memchr(line, '\n', (size_t)(buf + n - line));
        next = nl ? nl + 1 : buf + n;
        lineno++;
        if (nl)
            *nl = 0;
        if (line[0] == ' ' || line[0] == 0)
            continue; // the licence header
        char *save, *f[4];
        f[0] = strtok_r(line, " ", &save);
        for (int i = 1; i < 4; i++)
            f[i] = f[i - 1] ? strtok_r(NULL, " ", &save) : NULL;
        if (!f[3])
            goto bad;
        long nsyn = strtol(f[2], NULL, 10), nptr = strtol(f[3], NULL, 10);
        if (nsyn <= 0 || nsyn > 10000 || nptr < 0 || nptr > 10000)
            goto bad;
        for (long i = 0; i < nptr + 2; i++)
            if (!strtok_r(NULL, " ", &save))
                goto bad;
        uint32_t id = ev_intern(w->lemmas, f[0], strlen(f[0]));
        if (id == UINT32_MAX || grow_idx(w, id))
            goto oom;
        if (w->noffsets + (size_t)nsyn > w->offsets_cap) {
            size_t cap = w->offsets_cap ? w->offsets_cap * 2 : 1 << 18;
            while (cap < w->noffsets + (size_t)nsyn)
                cap *= 2;
            uint32_t *o = realloc(w->offsets, cap * sizeof *o);
            if (!o)
                goto oom;
            w->offsets = o, w->offsets_cap = cap;
        }
        w->idx[p][id] = (span_t){(uint32_t)w->noffsets, (uint32_t)nsyn};
        for (long i = 0; i < nsyn; i++) {
            char *o = strtok_r(NULL, " ", &save), *end;
            unsigned long v = o ? strtoul(o, &end, 10) : 0;
            if (!o || *end || v > UINT32_MAX)
                goto bad;
            w->offsets[w->noffsets++] = (uint32_t)v;
        }
        if (strlen(f[0]) > w->max_lemma)
            w->max_lemma = strlen(f[0]);
    }
    free(buf);
    return 0;
bad:
    free(buf);
    snprintf(err, EV_ERR_LEN, "%s/%s:%zu: not a WordNet index line", dir, name, lineno);
    return -1;
oom:
    free(buf);
    set_err(err, dir, name, "out of memory");
    return -1;
}

/* POS.exc: "inflected base [base...]" */
static int load_exc(wordnet_t *w, const char *dir, int p, char *err)
{
    char name[32];
    snprintf(name, sizeof name, "%s.exc", pos_files[p]);
    char path[4096], *buf;
    size_t n;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (fs_read_whole(path, &buf, &n, NULL)) {
        set_err(err, dir, name, errno == ENOMEM ? "out of memory" : strerror(errno));
        return -1;
    }
    char key[512];
    for (char *line = buf, *next; line < buf + n; line = next) {
        char *nl = memchr(line, '\n', (size_t)(buf + n - line));
        next = nl ? nl + 1 : buf + n;
        if (nl)
            *nl = 0;
        char *save, *form = strtok_r(line, " ", &save);
        if (!form || strlen(form) + 3 > sizeof key)
            continue;
        snprintf(key, sizeof key, "%c:%s", pos_chars[p], form);
        uint32_t id = ev_intern(w->exc, key, strlen(key));
        if (id == UINT32_MAX)
            goto oom;
        if (id >= w->exc_cap) {
            size_t cap = w->exc_cap ? w->exc_cap * 2 : 8192;
            span_t *s = realloc(w->exc_bases, cap * sizeof *s);
            if (!s)
                goto oom;
            memset(s + w->exc_cap, 0, (cap - w->exc_cap) * sizeof *s);
            w->exc_bases = s, w->exc_cap = cap;
        }
        if (w->exc_bases[id].count) // a repeated form: NLTK keeps the last line
            w->exc_bases[id].count = 0;
        w->exc_bases[id].start = (uint32_t)w->nexc_off;
        for (char *b; (b = strtok_r(NULL, " ", &save));) {
            if (w->nexc_off == w->exc_off_cap) {
                size_t cap = w->exc_off_cap ? w->exc_off_cap * 2 : 8192;
                uint32_t *o = realloc(w->exc_off, cap * sizeof *o);
                if (!o)
                    goto oom;
                w->exc_off = o, w->exc_off_cap = cap;
            }
            w->exc_off[w->nexc_off++] = (uint32_t)w->exc_pool.n;
            if (ev_buf_put(&w->exc_pool, b, strlen(b) + 1))
                goto oom;
            w->exc_bases[id].count++;
        }
    }
    free(buf);
    return 0;
oom:
    free(buf);
    set_err(err, dir, name, "out of memory");
    return -1;
}

static int map_data(wordnet_t *w, const char *dir, int p, char *err)
{
    char name[32], path[4096];
    snprintf(name, sizeof name, "data.%s", pos_files[p]);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        set_err(err, dir, name, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (st.st_size == 0) {
        close(fd);
        set_err(err, dir, name, "empty");
        return -1;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        set_err(err, dir, name, strerror(errno));
        return -1;
    }
    w->data[p] = m, w->data_n[p] = (size_t)st.st_size;
    return 0;
}

wordnet_t *wordnet_open(const char *dir, char *err)
{
    if (!dir || !*dir)
        dir = getenv("BAGEL_WORDNET");
    if (!dir || !*dir)
        dir = "/usr/share/wordnet";
    wordnet_t *w = calloc(1, sizeof *w);
    if (!w || !(w->lemmas = ev_intern_new()) || !(w->exc = ev_intern_new())) {
        snprintf(err, EV_ERR_LEN, "WordNet: out of memory");
        wordnet_close(&w);
        return NULL;
    }
    for (int p = 0; p < NPOS; p++)
        if (map_data(w, dir, p, err) || load_index(w, dir, p, err) || load_exc(w, dir, p, err)) {
            wordnet_close(&w);
            return NULL;
        }
    return w;
}

void wordnet_close(wordnet_t **wp)
{
    wordnet_t *w = *wp;
    if (!w)
        return;
    ev_intern_destroy(&w->lemmas);
    ev_intern_destroy(&w->exc);
    for (int p = 0; p < NPOS; p++) {
        free(w->idx[p]);
        if (w->data[p])
            munmap((void *)w->data[p], w->data_n[p]);
    }
    free(w->offsets);
    free(w->exc_bases);
    free(w->exc_off);
    ev_buf_free(&w->exc_pool);
    free(w);
    *wp = NULL;
}

/* The index entry of s[0,n) for part of speech p, or NULL. */
static const span_t *index_get(const wordnet_t *w, const char *s, size_t n, int p)
{
    if (n > w->max_lemma)
        return NULL;
    uint32_t id = ev_intern_find(w->lemmas, s, n);
    if (id == UINT32_MAX || !w->idx[p][id].count)
        return NULL;
    return &w->idx[p][id];
}

/* ---- morphy */

typedef struct {
    uint32_t k;   // the word's first k bytes
    uint8_t tn;   // then tail[0,tn)
    char tail[11];
} form_t;

typedef struct {
    const char *old, *new;
} subst_t;

static const subst_t noun_rules[] = {{"s", ""},    {"ses", "s"},   {"ves", "f"},   {"xes", "x"},  {"zes", "z"},
                                     {"ches", "ch"}, {"shes", "sh"}, {"men", "man"}, {"ies", "y"}};
static const subst_t verb_rules[] = {{"s", ""},  {"ies", "y"}, {"es", "e"},  {"es", ""},
                                     {"ed", "e"}, {"ed", ""},   {"ing", "e"}, {"ing", ""}};
static const subst_t adj_rules[] = {{"er", ""}, {"est", ""}, {"er", "e"}, {"est", "e"}};

/* The last up to 4 bytes of a form into end (right-aligned count returned). */
static size_t form_end(const char *word, const form_t *f, char end[4])
{
    size_t have = 0;
    for (int i = f->tn - 1; i >= 0 && have < 4; i--)
        end[3 - have++] = f->tail[i];
    for (uint32_t i = f->k; i > 0 && have < 4; i--)
        end[3 - have++] = word[i - 1];
    return have;
}

static bool form_ends(const char *word, const form_t *f, const char *suf)
{
    char end[4];
    size_t have = form_end(word, f, end), k = strlen(suf);
    return k <= have && memcmp(end + 4 - k, suf, k) == 0;
}

static form_t form_apply(const form_t *f, const subst_t *r)
{
    form_t g = *f;
    size_t k = strlen(r->old);
    if (k <= g.tn)
        g.tn = (uint8_t)(g.tn - k);
    else
        g.k -= (uint32_t)(k - g.tn), g.tn = 0;
    size_t m = strlen(r->new);
    if (g.tn + m > sizeof g.tail) // cannot happen with these rules: tails stay at 3 bytes
        m = sizeof g.tail - g.tn;
    memcpy(g.tail + g.tn, r->new, m);
    g.tn = (uint8_t)(g.tn + m);
    return g;
}

static bool form_same(const form_t *a, const form_t *b)
{
    return a->k == b->k && a->tn == b->tn && memcmp(a->tail, b->tail, a->tn) == 0;
}

typedef struct {
    form_t *v;
    size_t n, cap;
} forms_t;

static int forms_add(forms_t *fs, const form_t *f)
{
    for (size_t i = 0; i < fs->n; i++)
        if (form_same(&fs->v[i], f))
            return 0;
    if (fs->n == fs->cap) {
        size_t cap = fs->cap ? fs->cap * 2 : 16;
        form_t *v = realloc(fs->v, cap * sizeof *v);
        if (!v)
            return -1;
        fs->v = v, fs->cap = cap;
    }
    fs->v[fs->n++] = *f;
    return 0;
}

/* Append the forms of fs found in the index for p (each once) to out. */
static int filter(const wordnet_t *w, const char *word, const forms_t *fs, int p, ev_buf_t *out, size_t *count)
{
    char s[256];
    for (size_t i = 0; i < fs->n; i++) {
        const form_t *f = &fs->v[i];
        size_t n = f->k + f->tn;
        if (n > w->max_lemma || n > sizeof s)
            continue;
        memcpy(s, word, f->k);
        memcpy(s + f->k, f->tail, f->tn);
        if (!index_get(w, s, n, p))
            continue;
        bool seen = false; // dedupe against what this call appended
        for (size_t q = out->n - (out->n ? 0 : 0), a = 0; !seen && a < q;) {
            size_t l = strlen(out->p + a);
            seen = l == n && memcmp(out->p + a, s, n) == 0;
            a += l + 1;
        }
        if (seen)
            continue;
        if (ev_buf_put(out, s, n) || ev_buf_putc(out, 0))
            return -1;
        (*count)++;
    }
    return 0;
}

static int morphy(wordnet_t *w, const char *word, size_t n, int p, ev_buf_t *out, size_t *count)
{
    out->n = 0;
    *count = 0;
    if (n > UINT32_MAX - 16)
        return 0;
    // 0: the exception list, and no rules
    char key[512];
    if (n + 3 <= sizeof key) {
        key[0] = pos_chars[p], key[1] = ':';
        memcpy(key + 2, word, n);
        uint32_t id = ev_intern_find(w->exc, key, n + 2);
        if (id != UINT32_MAX && id < w->exc_cap) {
            forms_t fs = {0};
            form_t f = {.k = (uint32_t)n};
            int rc = forms_add(&fs, &f);
            ev_buf_t tmp = {0};
            for (uint32_t b = 0; !rc && b < w->exc_bases[id].count; b++) {
                // a base is its own "word": filter it directly
                const char *base = w->exc_pool.p + w->exc_off[w->exc_bases[id].start + b];
                forms_t one = {0};
                form_t g = {.k = (uint32_t)strlen(base)};
                rc = forms_add(&one, &g) || filter(w, base, &one, p, &tmp, count);
                free(one.v);
            }
            // the form itself first, then the bases, as NLTK's list
            size_t c0 = 0;
            ev_buf_t res = {0};
            if (!rc)
                rc = filter(w, word, &fs, p, &res, &c0);
            for (size_t a = 0; !rc && a < tmp.n;) {
                size_t l = strlen(tmp.p + a);
                bool seen = false;
                for (size_t q = 0; !seen && q < res.n;) {
                    size_t m = strlen(res.p + q);
                    seen = m == l && memcmp(res.p + q, tmp.p + a, l) == 0;
                    q += m + 1;
                }
                if (!seen)
                    rc = ev_buf_put(&res, tmp.p + a, l + 1), c0++;
                a += l + 1;
            }
            if (!rc) {
                rc = res.n ? ev_buf_put(out, res.p, res.n) : 0;
                *count = c0;
            }
            free(fs.v);
            ev_buf_free(&tmp);
            ev_buf_free(&res);
            return rc;
        }
    }
    const subst_t *rules = p == P_NOUN ? noun_rules : p == P_VERB ? verb_rules : p == P_ADJ ? adj_rules : NULL;
    size_t nrules = p == P_NOUN ? 9 : p == P_VERB ? 8 : p == P_ADJ ? 4 : 0;
    forms_t cur = {0}, next = {0};
    form_t f0 = {.k = (uint32_t)n};
    int rc = 0;
    // 1-2: rules once; the word and those forms in the index
    for (size_t r = 0; !rc && r < nrules; r++)
        if (form_ends(word, &f0, rules[r].old)) {
            form_t g = form_apply(&f0, &rules[r]);
            rc = forms_add(&cur, &g);
        }
    if (!rc) {
        forms_t first = {0};
        rc = forms_add(&first, &f0);
        for (size_t i = 0; !rc && i < cur.n; i++)
            rc = forms_add(&first, &cur.v[i]);
        if (!rc)
            rc = filter(w, word, &first, p, out, count);
        free(first.v);
    }
    // 3: more rounds until something is found or no rule applies
    while (!rc && !*count && cur.n) {
        next.n = 0;
        for (size_t i = 0; !rc && i < cur.n; i++)
            for (size_t r = 0; !rc && r < nrules; r++)
                if (form_ends(word, &cur.v[i], rules[r].old)) {
                    form_t g = form_apply(&cur.v[i], &rules[r]);
                    rc = forms_add(&next, &g);
                }
        forms_t t = cur;
        cur = next, next = t;
        if (!rc)
            rc = filter(w, word, &cur, p, out, count);
    }
    free(cur.v);
    free(next.v);
    return rc;
}

int wordnet_morphy(wordnet_t *w, const char *form, size_t n, char pos, ev_buf_t *out, size_t *count)
{
    for (int p = 0; p < NPOS; p++)
        if (pos_chars[p] == pos)
            return morphy(w, form, n, p, out, count);
    *count = 0;
    return 0;
}

/* The lemma names of the synset at offset in data.POS, appended. */
static int synset_names(const wordnet_t *w, int p, uint32_t off, ev_buf_t *out, size_t *count)
{
    const char *d = w->data[p];
    size_t n = w->data_n[p];
    if (off >= n)
        return 0;
    const char *s = d + off, *end = memchr(s, '\n', n - off);
    if (!end)
        end = d + n;
    // offset lex_filenum ss_type w_cnt(hex) [word lex_id]...
    const char *q = s;
    for (int f = 0; f < 3; f++) {
        q = memchr(q, ' ', (size_t)(end - q));
        if (!q)
            return 0;
        q++;
    }
    char *hexend;
    char cnt[8] = {0};
    memcpy(cnt, q, end - q < 7 ? (size_t)(end - q) : 7);
    unsigned long wcnt = strtoul(cnt, &hexend, 16);
    q += hexend - cnt;
    for (unsigned long i = 0; i < wcnt && q < end; i++) {
        while (q < end && *q == ' ')
            q++;
        const char *a = q;
        while (q < end && *q != ' ')
            q++;
        size_t len = (size_t)(q - a);
        // NLTK strips a trailing "(...)" marker: (a), (p), (ip)
        if (len && a[len - 1] == ')') {
            const char *open = memchr(a, '(', len);
            if (open)
                len = (size_t)(open - a);
        }
        if (ev_buf_put(out, a, len) || ev_buf_putc(out, 0))
            return -1;
        (*count)++;
        while (q < end && *q == ' ') // the lex_id
            q++;
        while (q < end && *q != ' ')
            q++;
    }
    return 0;
}

int wordnet_lemma_names(wordnet_t *w, const char *word, size_t n, ev_buf_t *out, size_t *count)
{
    ev_buf_t low = {0}, forms = {0}, names = {0};
    *count = 0;
    int rc = ev_lower(word, n, &low);
    for (int p = 0; !rc && p < NPOS; p++) {
        size_t nf;
        rc = morphy(w, low.p ? low.p : "", low.n, p, &forms, &nf);
        for (size_t a = 0, i = 0; !rc && i < nf; i++) {
            size_t l = strlen(forms.p + a);
            const span_t *sp = index_get(w, forms.p + a, l, p);
            for (uint32_t k = 0; !rc && sp && k < sp->count; k++) {
                size_t c = 0;
                rc = synset_names(w, p, w->offsets[sp->start + k], &names, &c);
            }
            a += l + 1;
        }
    }
    // each name once
    for (size_t a = 0; !rc && a < names.n;) {
        size_t l = strlen(names.p + a);
        bool seen = false;
        for (size_t q = 0; !seen && out->p && q < out->n;) {
            size_t m = strlen(out->p + q);
            seen = m == l && memcmp(out->p + q, names.p + a, l) == 0;
            q += m + 1;
        }
        if (!seen) {
            rc = ev_buf_put(out, names.p + a, l + 1);
            (*count)++;
        }
        a += l + 1;
    }
    ev_buf_free(&low);
    ev_buf_free(&forms);
    ev_buf_free(&names);
    return rc;
}
