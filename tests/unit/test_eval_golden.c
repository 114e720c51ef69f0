/* test_eval_golden.c — bagel-eval's metrics (stages/eval/) against the golden
 * scores of the reference implementations over the 1,500 pairs of
 * tests/data/eval/ (README.md there says how each file was made):
 *   - sacrebleu 2.6.0: the 13a, zh and intl tokenizations; sentence_bleu for
 *     every tokenizer, lowercase and smoothing method; corpus BLEU with its
 *     signature and format() line for each, on all cases, the zh cases and
 *     the en cases;
 *   - ROUGE-1/2/L/Lsum (P, R, F), first reference and best of all, with and
 *     without stemming;
 *   - NLTK 3.8 METEOR (whitespace tokens, 13a tokens, first reference) over
 *     Debian's WordNet 3.0, and NLTK's Porter stemmer over 87,447 words.
 * Every score must equal the golden one to 4 decimal places (the bar);
 * the test also counts how many are equal to the last bit and requires that
 * of BLEU and ROUGE (pure double arithmetic in the same order).
 * Run from the repository root (tests/run.sh does). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "../../stages/eval/metrics.h"

#define DIR "tests/data/eval/"

typedef struct {
    json_t *cases, *bleu, *rouge, *meteor; // arrays of rows, same order
} golden_t;

static golden_t g;

static json_t *load_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("%s: missing", path);
    json_t *arr = json_array();
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        json_error_t e;
        json_t *row = json_loadb(line, (size_t)n, 0, &e);
        if (!row)
            fail_msg("%s: %s", path, e.text);
        json_array_append_new(arr, row);
    }
    free(line);
    fclose(f);
    return arr;
}

static int setup(void **state)
{
    (void)state;
    g.cases = load_lines(DIR "cases.jsonl");
    g.bleu = load_lines(DIR "golden_bleu.jsonl");
    g.rouge = load_lines(DIR "golden_rouge.jsonl");
    g.meteor = load_lines(DIR "golden_meteor.jsonl");
    size_t n = json_array_size(g.cases);
    if (n < 1000 || json_array_size(g.bleu) != n || json_array_size(g.rouge) != n || json_array_size(g.meteor) != n)
        fail_msg("golden files: %zu cases, %zu/%zu/%zu golden rows", n, json_array_size(g.bleu),
                 json_array_size(g.rouge), json_array_size(g.meteor));
    for (size_t i = 0; i < n; i++) {
        const char *id = json_string_value(json_object_get(json_array_get(g.cases, i), "id"));
        assert_string_equal(id, json_string_value(json_object_get(json_array_get(g.bleu, i), "id")));
        assert_string_equal(id, json_string_value(json_object_get(json_array_get(g.rouge, i), "id")));
        assert_string_equal(id, json_string_value(json_object_get(json_array_get(g.meteor, i), "id")));
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    json_decref(g.cases), json_decref(g.bleu), json_decref(g.rouge), json_decref(g.meteor);
    return 0;
}

/* A case's prediction and references as pointer/length arrays. */
typedef struct {
    const char *id, *hyp;
    size_t hn;
    const char *refs[8];
    size_t rn[8];
    int nrefs;
} pair_t;

static pair_t pair_of(size_t i)
{
    json_t *c = json_array_get(g.cases, i), *refs = json_object_get(c, "references");
    pair_t p = {.id = json_string_value(json_object_get(c, "id"))};
    p.hyp = json_string_value(json_object_get(c, "prediction"));
    p.hn = json_string_length(json_object_get(c, "prediction"));
    p.nrefs = (int)json_array_size(refs);
    assert_true(p.nrefs >= 1 && p.nrefs <= 8);
    for (int j = 0; j < p.nrefs; j++) {
        p.refs[j] = json_string_value(json_array_get(refs, (size_t)j));
        p.rn[j] = json_string_length(json_array_get(refs, (size_t)j));
    }
    return p;
}

/* equal to 4 decimals (|a - b| < 5e-5), counting exact equality */
static void check(const char *what, const char *id, double got, double want, size_t *exact)
{
    if (!(fabs(got - want) < 5e-5))
        fail_msg("%s %s: %.17g, reference %.17g", what, id, got, want);
    if (got == want)
        (*exact)++;
    else if (getenv("EVAL_SHOW_INEXACT"))
        print_message("inexact %s %s: %.17g, reference %.17g\n", what, id, got, want);
}

static const struct {
    const char *name;
    bleu_tok_t tok;
    bool lc;
    bleu_smooth_t smooth;
} variants[] = {
    {"13a", BLEU_TOK_13A, false, BLEU_SMOOTH_EXP},      {"zh", BLEU_TOK_ZH, false, BLEU_SMOOTH_EXP},
    {"intl", BLEU_TOK_INTL, false, BLEU_SMOOTH_EXP},    {"char", BLEU_TOK_CHAR, false, BLEU_SMOOTH_EXP},
    {"none", BLEU_TOK_NONE, false, BLEU_SMOOTH_EXP},    {"13a-lc", BLEU_TOK_13A, true, BLEU_SMOOTH_EXP},
    {"13a-floor", BLEU_TOK_13A, false, BLEU_SMOOTH_FLOOR}, {"13a-add-k", BLEU_TOK_13A, false, BLEU_SMOOTH_ADD_K},
    {"13a-none", BLEU_TOK_13A, false, BLEU_SMOOTH_NONE},
};
#define NVAR (sizeof variants / sizeof variants[0])

static void test_bleu_tokenizers(void **state)
{
    (void)state;
    const char *names[] = {"13a", "zh", "intl"};
    size_t n = json_array_size(g.cases), bad = 0;
    for (int t = 0; t < 3; t++) {
        bleu_opts_t o;
        bleu_opts_default(&o);
        assert_int_equal(bleu_tok_parse(names[t], &o.tok), 0);
        bleu_t *b = bleu_new(&o);
        for (size_t i = 0; i < n; i++) {
            pair_t p = pair_of(i);
            json_t *tok = json_object_get(json_object_get(json_array_get(g.bleu, i), "tok"), names[t]);
            ev_buf_t out = {0};
            assert_int_equal(bleu_tokenize(b, p.hyp, p.hn, &out), 0);
            const char *want = json_string_value(json_array_get(tok, 0));
            if (strcmp(out.p, want) != 0 && bad++ < 5)
                print_message("tok %s %s: \"%s\", sacrebleu \"%s\"\n", names[t], p.id, out.p, want);
            for (int j = 0; j < p.nrefs; j++) {
                out.n = 0;
                assert_int_equal(bleu_tokenize(b, p.refs[j], p.rn[j], &out), 0);
                want = json_string_value(json_array_get(json_array_get(tok, 1), (size_t)j));
                if (strcmp(out.p, want) != 0 && bad++ < 5)
                    print_message("tok %s %s ref %d: \"%s\", sacrebleu \"%s\"\n", names[t], p.id, j, out.p, want);
            }
            ev_buf_free(&out);
        }
        bleu_destroy(&b);
    }
    assert_int_equal(bad, 0);
}

static void test_bleu_sentence_and_corpus(void **state)
{
    (void)state;
    FILE *f = fopen(DIR "corpus_bleu.json", "r");
    assert_non_null(f);
    json_error_t e;
    json_t *corpus = json_loadf(f, 0, &e);
    fclose(f);
    assert_non_null(corpus);
    size_t n = json_array_size(g.cases), exact = 0, total = 0;
    for (size_t v = 0; v < NVAR; v++) {
        bleu_opts_t o;
        bleu_opts_default(&o);
        o.tok = variants[v].tok, o.lowercase = variants[v].lc, o.smooth = variants[v].smooth;
        bleu_opts_t so = o;
        so.effective_order = true;
        bleu_t *b = bleu_new(&o);
        bleu_stats_t all = {0}, zh = {0}, en = {0};
        int all_refs = -2, zh_refs = -2, en_refs = -2;
        for (size_t i = 0; i < n; i++) {
            pair_t p = pair_of(i);
            bleu_stats_t st;
            char err[EV_ERR_LEN];
            assert_int_equal(bleu_segment(b, p.hyp, p.hn, p.refs, p.rn, p.nrefs, &st, err), 0);
            bleu_score_t s;
            bleu_compute(&so, &st, &s);
            json_t *sent = json_object_get(json_array_get(g.bleu, i), "sent");
            check(variants[v].name, p.id, s.score, json_real_value(json_object_get(sent, variants[v].name)), &exact);
            total++;
            bleu_stats_add(&all, &st);
            all_refs = all_refs == -2 || all_refs == p.nrefs ? p.nrefs : -1;
            const char *kind = json_string_value(json_object_get(json_array_get(g.cases, i), "kind"));
            if (strcmp(kind, "zh") == 0)
                bleu_stats_add(&zh, &st), zh_refs = zh_refs == -2 || zh_refs == p.nrefs ? p.nrefs : -1;
            if (strcmp(kind, "en") == 0)
                bleu_stats_add(&en, &st), en_refs = en_refs == -2 || en_refs == p.nrefs ? p.nrefs : -1;
        }
        struct {
            const char *key;
            bleu_stats_t *st;
            int nrefs;
        } sets[] = {{"all/", &all, all_refs}, {"zh/", &zh, zh_refs}, {"en/", &en, en_refs}};
        for (int k = 0; k < 3; k++) {
            char key[64];
            snprintf(key, sizeof key, "%s%s", sets[k].key, variants[v].name);
            json_t *want = json_object_get(corpus, key);
            if (!want)
                continue; // zh/ only with zh, en/ only with 13a
            bleu_score_t s;
            bleu_compute(&o, sets[k].st, &s);
            check(key, "corpus", s.score, json_real_value(json_object_get(want, "score")), &exact);
            total++;
            assert_int_equal(s.sys_len, json_integer_value(json_object_get(want, "sys_len")));
            assert_int_equal(s.ref_len, json_integer_value(json_object_get(want, "ref_len")));
            for (int q = 0; q < BLEU_ORDER; q++) {
                check(key, "precision", s.precisions[q],
                      json_number_value(json_array_get(json_object_get(want, "precisions"), (size_t)q)), &exact);
                check(key, "count", s.counts[q],
                      json_number_value(json_array_get(json_object_get(want, "counts"), (size_t)q)), &exact);
                total += 2;
            }
            char sig[256], line[512];
            bleu_signature(&o, sets[k].nrefs, sig, sizeof sig);
            assert_string_equal(sig, json_string_value(json_object_get(want, "signature")));
            bleu_format(&s, sig, line, sizeof line);
            assert_string_equal(line, json_string_value(json_object_get(want, "format")));
        }
        bleu_destroy(&b);
    }
    json_decref(corpus);
    print_message("BLEU: %zu scores, %zu equal to the last bit\n", total, exact);
    assert_int_equal(exact, total);
}

static void test_rouge(void **state)
{
    (void)state;
    size_t n = json_array_size(g.cases), exact = 0, total = 0;
    for (int stem = 0; stem < 2; stem++) {
        rouge_t *r = rouge_new(stem);
        assert_non_null(r);
        for (size_t i = 0; i < n; i++) {
            pair_t p = pair_of(i);
            json_t *row = json_array_get(g.rouge, i);
            rouge_scores_t first, multi;
            char err[EV_ERR_LEN];
            assert_int_equal(rouge_score(r, p.refs[0], p.rn[0], p.hyp, p.hn, &first, err), 0);
            assert_int_equal(rouge_score_multi(r, p.refs, p.rn, p.nrefs, p.hyp, p.hn, &multi, err), 0);
            for (int k = 0; k < ROUGE_TYPES; k++) {
                json_t *wf = json_object_get(json_object_get(row, stem ? "first-stem" : "first"), rouge_type_name(k));
                json_t *wm = json_object_get(json_object_get(row, stem ? "multi-stem" : "multi"), rouge_type_name(k));
                const double *gf = &first.s[k].p, *gm = &multi.s[k].p;
                for (int q = 0; q < 3; q++) {
                    char what[64];
                    snprintf(what, sizeof what, "%s%s[%d]", rouge_type_name(k), stem ? "/stem" : "", q);
                    check(what, p.id, gf[q], json_number_value(json_array_get(wf, (size_t)q)), &exact);
                    check(what, p.id, gm[q], json_number_value(json_array_get(wm, (size_t)q)), &exact);
                    total += 2;
                }
            }
        }
        rouge_destroy(&r);
    }
    print_message("ROUGE: %zu values, %zu equal to the last bit\n", total, exact);
    assert_int_equal(exact, total);
}

static void test_meteor(void **state)
{
    (void)state;
    char err[EV_ERR_LEN];
    wordnet_t *wn = wordnet_open(NULL, err);
    if (!wn)
        fail_msg("%s", err);
    size_t n = json_array_size(g.cases), exact = 0, total = 0;
    for (int t = 0; t < 2; t++) {
        meteor_opts_t o;
        meteor_opts_default(&o);
        o.tok = t ? METEOR_TOK_13A : METEOR_TOK_WS;
        meteor_t *m = meteor_new(&o, wn);
        assert_non_null(m);
        for (size_t i = 0; i < n; i++) {
            pair_t p = pair_of(i);
            json_t *row = json_array_get(g.meteor, i);
            double s;
            assert_int_equal(meteor_score(m, p.hyp, p.hn, p.refs, p.rn, p.nrefs, &s, err), 0);
            check(t ? "meteor/13a" : "meteor", p.id, s, json_real_value(json_object_get(row, t ? "13a" : "ws")),
                  &exact);
            total++;
            if (!t) {
                assert_int_equal(meteor_score(m, p.hyp, p.hn, p.refs, p.rn, 1, &s, err), 0);
                check("meteor/first", p.id, s, json_real_value(json_object_get(row, "first")), &exact);
                total++;
            }
        }
        meteor_destroy(&m);
    }
    wordnet_close(&wn);
    print_message("METEOR: %zu scores, %zu equal to the last bit\n", total, exact);
}

static void test_porter(void **state)
{
    (void)state;
    FILE *f = fopen(DIR "golden_porter.txt", "r");
    assert_non_null(f);
    char line[1024];
    size_t n = 0, bad = 0;
    ev_buf_t out = {0};
    while (fgets(line, sizeof line, f)) {
        char *sp = strchr(line, ' ');
        assert_non_null(sp);
        *sp = 0;
        char *want = sp + 1;
        want[strcspn(want, "\n")] = 0;
        out.n = 0;
        assert_int_equal(porter_stem(line, strlen(line), &out), 0);
        if (strcmp(out.p, want) != 0 && bad++ < 10)
            print_message("stem(%s) = %s, NLTK %s\n", line, out.p, want);
        n++;
    }
    fclose(f);
    ev_buf_free(&out);
    assert_true(n > 80000);
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bleu_tokenizers), cmocka_unit_test(test_bleu_sentence_and_corpus),
        cmocka_unit_test(test_rouge),           cmocka_unit_test(test_meteor),
        cmocka_unit_test(test_porter),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
