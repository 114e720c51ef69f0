/* test_eval.c — bagel-eval's metric library (stages/eval/) on the test
 * vectors of shared/design/metrics-reference.md (§1.3, §1.7: sacrebleu 2.6.0;
 * §2.2, §2.7: rouge-score; §3.5, §3.6: NLTK 3.8 with WordNet 3.0, values the
 * reference implementations printed), on sacrebleu's zh range quirk, on
 * Python's lower() and whitespace, and on bad input: rows that break a rule
 * (each message names the field), a missing WordNet folder.
 * The bulk comparison with the references is test_eval_golden.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../stages/eval/metrics.h"
#include "../../stages/eval/rows.h"

static void close_to(double got, double want, double tol)
{
    if (!(fabs(got - want) <= tol))
        fail_msg("%.17g, expected %.17g", got, want);
}

static const char *tok13a(bleu_t *b, const char *s)
{
    static ev_buf_t out;
    out.n = 0;
    assert_int_equal(bleu_tokenize(b, s, strlen(s), &out), 0);
    return out.p;
}

static void test_13a_vectors(void **state)
{
    (void)state;
    static const char *const v[][2] = {
        {"Hello, world!", "Hello , world !"},
        {"It costs $3.50, ok?", "It costs $ 3.50 , ok ?"},
        {"The U.S.A. is big.", "The U . S . A . is big ."},
        {"e-mail 2-3 pages", "e-mail 2 - 3 pages"},
        {"&quot;Hi&quot; &amp; <b>bold</b>", "\" Hi \" & < b > bold < / b >"},
        {"&amp;lt;", "<"},
        {"1,000.5 people.", "1,000.5 people ."},
        {"a.b,c", "a . b , c"},
        {"a.,b", "a . , b"},
        {"1.a", "1 . a"},
        {"a.1", "a . 1"},
        {"1,2,3", "1,2,3"},
        {"5-", "5 -"},
        {"-5", "-5"},
        {"A-1", "A-1"},
        {"x--y", "x--y"},
        {"don't stop", "don't stop"},
        {"x-\ny", "xy"},
        {"tab\there  two   spaces", "tab here two spaces"},
        {"(a) [b] {c} ~d `e` 'f' \"g\"", "( a ) [ b ] { c } ~ d ` e ` 'f' \" g \""},
        {"50%/60% #1 @home ^_^ |pipe| \\back", "50 % / 60 % # 1 @ home ^ _ ^ | pipe | \\ back"},
        {"3.", "3 ."},
        {".5", ". 5"},
        {"end...", "end . . ."},
        {"He said: \"No!\"", "He said : \" No ! \""},
        {"<skipped> word", "word"},
        {"a\xC2\xA0" "b", "a b"},
        {"end.\xE3\x80\x80x", "end . x"},
        {"Mr. Smith\xE2\x80\x99s", "Mr . Smith\xE2\x80\x99s"},
        {"caf\xC3\xA9 na\xC3\xAFve \xE2\x80\x93 em\xE2\x80\x94" "dash", "caf\xC3\xA9 na\xC3\xAFve \xE2\x80\x93 em\xE2\x80\x94" "dash"},
        {"", ""},
    };
    bleu_opts_t o;
    bleu_opts_default(&o);
    bleu_t *b = bleu_new(&o);
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        assert_string_equal(tok13a(b, v[i][0]), v[i][1]);
    bleu_destroy(&b);
}

static void test_zh_quirk(void **state)
{
    (void)state;
    bleu_opts_t o;
    bleu_opts_default(&o);
    o.tok = BLEU_TOK_ZH;
    bleu_t *b = bleu_new(&o);
    // Chinese characters apart; U+2019 and U+20AC fall in sacrebleu's range
    // "\u20000".."\u2a6d6" (really U+2001-U+2A6D); U+20001 (Extension B) does not
    assert_string_equal(tok13a(b, "\xE4\xBD\xA0\xE5\xA5\xBD,world"), "\xE4\xBD\xA0 \xE5\xA5\xBD , world");
    assert_string_equal(tok13a(b, "it\xE2\x80\x99s \xE2\x82\xAC" "5"), "it \xE2\x80\x99 s \xE2\x82\xAC 5");
    assert_string_equal(tok13a(b, "a\xF0\xA0\x80\x81" "b"), "a\xF0\xA0\x80\x81" "b");
    assert_string_equal(tok13a(b, ".5 x"), ".5 x"); // no surrounding spaces: pass B has nothing before "."
    bleu_destroy(&b);
}

static double corpus(const bleu_opts_t *o, const char *const *hyps, int n, const char *const *refs, int nrefs,
                     bleu_score_t *s)
{
    bleu_t *b = bleu_new(o);
    bleu_stats_t sum = {0}, st;
    char err[EV_ERR_LEN];
    for (int i = 0; i < n; i++) {
        const char *r[8];
        size_t rn[8];
        for (int k = 0; k < nrefs; k++)
            r[k] = refs[k * n + i], rn[k] = strlen(r[k]);
        assert_int_equal(bleu_segment(b, hyps[i], strlen(hyps[i]), r, rn, nrefs, &st, err), 0);
        bleu_stats_add(&sum, &st);
    }
    bleu_compute(o, &sum, s);
    bleu_destroy(&b);
    return s->score;
}

static void test_bleu_vectors(void **state)
{
    (void)state;
    bleu_opts_t o, so;
    bleu_opts_default(&o);
    so = o;
    so.effective_order = true;
    bleu_score_t s;
    char sig[256], line[512];
    const char *h1[] = {"The cat sat on the mat.", "A quick brown fox jumps over the lazy dog"};
    const char *r1[] = {"The cat is sitting on the mat.", "The quick brown fox jumped over the lazy dog."};
    close_to(corpus(&o, h1, 2, r1, 1, &s), 40.30902923191309, 1e-9 * 40.3); // B1
    assert_int_equal(s.sys_len, 16);
    assert_int_equal(s.ref_len, 18);
    close_to(s.bp, 0.8824969025845955, 1e-15);
    bleu_signature(&o, 1, sig, sizeof sig);
    assert_string_equal(sig, "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0");
    bleu_format(&s, NULL, line, sizeof line);
    assert_string_equal(line, "BLEU = 40.31 81.2/64.3/41.7/20.0 (BP = 0.882 ratio = 0.889 hyp_len = 16 ref_len = 18)");
    const char *h2[] = {"the cat"}, *r2[] = {"the cat sat on the mat"};
    assert_true(corpus(&o, h2, 1, r2, 1, &s) == 0.0); // B2: total[3], total[4] are 0
    bleu_format(&s, NULL, line, sizeof line);
    assert_string_equal(line, "BLEU = 0.00 100.0/100.0/0.0/0.0 (BP = 0.135 ratio = 0.333 hyp_len = 2 ref_len = 6)");
    close_to(corpus(&so, h2, 1, r2, 1, &s), 13.533528323661276, 1e-12); // B3
    const char *h4[] = {"The cat sat on the mat."}, *r4[] = {"The cat is sitting on the mat."};
    close_to(corpus(&so, h4, 1, r4, 1, &s), 42.38365628278778, 1e-12); // B4
    const char *h5[] = {"a b c d"}, *r5[] = {"a b x c d"};
    close_to(corpus(&o, h5, 1, r5, 1, &s), 35.1862973998119, 1e-12); // B5: exp smoothing
    close_to(s.precisions[2], 25, 1e-12);
    close_to(s.precisions[3], 25, 1e-12);
    const char *h6[] = {"xyz qqq"}, *r6[] = {"the cat sat on the mat"};
    assert_true(corpus(&o, h6, 1, r6, 1, &s) == 0.0 && s.precisions[0] == 0.0); // B6
    const char *h7[] = {""};
    assert_true(corpus(&o, h7, 1, r6, 1, &s) == 0.0 && s.bp == 0.0 && s.sys_len == 0); // B7
    const char *r8[] = {"the cat"};
    assert_true(corpus(&so, h7, 1, r8, 1, &s) == 0.0); // B8
    const char *h9[] = {"a b c d e f"}, *r9[] = {"a b c d e", "a b c d e f g", "a b c x y z w q"};
    close_to(corpus(&o, h9, 1, r9, 3, &s), 100.00000000000004, 1e-12); // B9
    assert_int_equal(s.ref_len, 5);
    const char *h10[] = {"the the the the the the the"}, *r10[] = {"the cat is on the mat", "there is a cat on the mat"};
    close_to(corpus(&o, h10, 1, r10, 2, &s), 7.809849842300637, 1e-12); // B10
    assert_true(s.counts[0] == 2 && s.totals[0] == 7);
    bleu_opts_t lc = o;
    lc.lowercase = true;
    const char *h11[] = {"THE Cat"}, *r11[] = {"the cat"};
    assert_true(corpus(&lc, h11, 1, r11, 1, &s) == 0.0); // B11
    assert_true(s.counts[0] == 2);
    const char *h12[] = {"Hello, world!"};
    close_to(corpus(&o, h12, 1, h12, 1, &s), 100.00000000000004, 0); // B12
    lc.smooth = BLEU_SMOOTH_FLOOR;
    bleu_signature(&lc, -1, sig, sizeof sig);
    assert_string_equal(sig, "nrefs:var|case:lc|eff:no|tok:13a|smooth:floor[0.10]|version:2.6.0");
}

static void rouge_eq(const rouge_prf_t *s, double p, double r, double f)
{
    close_to(s->p, p, 1e-12);
    close_to(s->r, r, 1e-12);
    close_to(s->f, f, 1e-12);
}

static void test_rouge_vectors(void **state)
{
    (void)state;
    rouge_t *plain = rouge_new(false), *stem = rouge_new(true);
    rouge_scores_t s;
    char err[EV_ERR_LEN];
#define SCORE(r, t, p) assert_int_equal(rouge_score(r, t, strlen(t), p, strlen(p), &s, err), 0)
    SCORE(plain, "The quick brown fox jumps over the lazy dog", "The quick brown dog jumps on the log."); // R1
    rouge_eq(&s.s[ROUGE_1], 0.75, 0.66666666666666663, 0.70588235294117652);
    rouge_eq(&s.s[ROUGE_2], 0.2857142857142857, 0.25, 0.26666666666666666);
    rouge_eq(&s.s[ROUGE_L], 0.625, 0.55555555555555558, 0.58823529411764708);
    rouge_eq(&s.s[ROUGE_LSUM], 0.625, 0.55555555555555558, 0.58823529411764708);
    SCORE(stem, "the cats are running", "a cat ran"); // R2
    rouge_eq(&s.s[ROUGE_1], 0.33333333333333331, 0.25, 0.28571428571428575);
    rouge_eq(&s.s[ROUGE_2], 0, 0, 0);
    SCORE(plain, "the cats are running", "a cat ran"); // R2n
    rouge_eq(&s.s[ROUGE_1], 0, 0, 0);
    SCORE(plain, "the cat", ""); // R3
    rouge_eq(&s.s[ROUGE_LSUM], 0, 0, 0);
    SCORE(plain, "the cat", "!!! ..."); // R4
    rouge_eq(&s.s[ROUGE_1], 0, 0, 0);
    SCORE(plain, "the cat sat on the mat\nthe dog barked loudly", "the dog barked\nthe cat sat on a mat"); // R5
    rouge_eq(&s.s[ROUGE_1], 0.88888888888888884, 0.80000000000000004, 0.8421052631578948);
    rouge_eq(&s.s[ROUGE_2], 0.625, 0.55555555555555558, 0.58823529411764708);
    rouge_eq(&s.s[ROUGE_L], 0.55555555555555558, 0.5, 0.52631578947368418);
    rouge_eq(&s.s[ROUGE_LSUM], 0.88888888888888884, 0.80000000000000004, 0.8421052631578948);
    SCORE(plain, "a b c\na b", "a b\nc a b"); // R6: the backtrack's tie-break
    rouge_eq(&s.s[ROUGE_1], 1, 1, 1);
    rouge_eq(&s.s[ROUGE_LSUM], 0.80000000000000004, 0.80000000000000004, 0.80000000000000016);
    SCORE(plain, "the the the cat", "the the cat cat"); // R7
    rouge_eq(&s.s[ROUGE_2], 0.66666666666666663, 0.66666666666666663, 0.66666666666666663);
    rouge_eq(&s.s[ROUGE_LSUM], 0.75, 0.75, 0.75);
    const char *t8[] = {"completely different words", "the cat sat", "the cat sat on the mat"};
    size_t n8[] = {strlen(t8[0]), strlen(t8[1]), strlen(t8[2])};
    assert_int_equal(rouge_score_multi(plain, t8, n8, 3, "the cat sat", 11, &s, err), 0); // R8
    rouge_eq(&s.s[ROUGE_1], 1, 1, 1);
    rouge_eq(&s.s[ROUGE_L], 1, 1, 1);
    ev_buf_t out = {0};
    const char *t = "Hello, World! It's 3.14-ish; na\xC3\xAFve CAF\xC3\x89 x_y";
    assert_int_equal(rouge_tokenize(plain, t, strlen(t), &out), 0);
    assert_string_equal(out.p, "hello world it s 3 14 ish na ve caf x y");
    out.n = 0;
    t = "The runners were running quickly to the cats' houses";
    assert_int_equal(rouge_tokenize(stem, t, strlen(t), &out), 0);
    assert_string_equal(out.p, "the runner were run quickli to the cat hous");
    out.n = 0;
    t = "\xC4\xB0stanbul \xE2\x84\xAA" "elvin"; // lower() maps these two into ASCII
    assert_int_equal(rouge_tokenize(plain, t, strlen(t), &out), 0);
    assert_string_equal(out.p, "i stanbul kelvin");
    ev_buf_free(&out);
    rouge_destroy(&plain);
    rouge_destroy(&stem);
}

static void test_meteor_vectors(void **state)
{
    (void)state;
    char err[EV_ERR_LEN];
    wordnet_t *wn = wordnet_open(NULL, err);
    if (!wn)
        fail_msg("%s", err);
    meteor_opts_t o;
    meteor_opts_default(&o);
    meteor_t *m = meteor_new(&o, wn);
    static const char r1[] = "It is a guide to action that ensures that the military will forever heed Party commands",
                      r2[] = "It is the guiding principle which guarantees the military forces always being under the "
                             "command of the Party",
                      r3[] = "It is the practical guide for the army always to heed the directions of the party",
                      h1[] = "It is a guide to action which ensures that the military always obeys the commands of the "
                             "party";
    static const struct {
        const char *refs[3], *hyp;
        double want;
    } v[] = {
        {{r1}, h1, 0.69444444444444453},
        {{r1, r2, r3}, h1, 0.69444444444444453},
        {{r1, r2, r3}, "It is to insure the troops forever hearing the activity guidebook that party direct",
         0.30353913717385689},
        {{"the cat sat on the mat"}, "the cat sat on the mat", 0.99768518518518523},
        {{"the cat sat on the mat"}, "on the mat the cat sat", 0.71064814814814814},
        {{"the cats were running"}, "the cat was run", 0.63888888888888884},
        {{"the dog is large"}, "the dog is big", 0.73611111111111116},
        {{"he ran rapidly"}, "he ran quickly", 0.625},
        {{"the cat"}, "", 0.0},
        {{"this is a cat"}, "non matching hypothesis", 0.0},
        {{"The Cat"}, "the cat", 0.9375},
        {{"he bought a car"}, "he purchased an automobile", 0.125},
        {{"the the cat"}, "the cat the", 0.5},
        {{"the hound barked"}, "the dog barked", 0.98148148148148151},
        {{"a fast auto"}, "a fast car", 0.98148148148148151},
        {{"a b c d", "the cat sat"}, "the cat sat down", 0.94982078853046592},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t rn[3];
        int nr = 0;
        while (nr < 3 && v[i].refs[nr])
            rn[nr] = strlen(v[i].refs[nr]), nr++;
        double s;
        assert_int_equal(meteor_score(m, v[i].hyp, strlen(v[i].hyp), v[i].refs, rn, nr, &s, err), 0);
        close_to(s, v[i].want, 1e-12);
    }
    // morphy and the synonym sets of §3.5
    ev_buf_t out = {0};
    size_t n;
    assert_int_equal(wordnet_morphy(wn, "aardwolves", 10, 'n', &out, &n), 0);
    assert_true(n == 1 && strcmp(out.p, "aardwolf") == 0);
    assert_int_equal(wordnet_morphy(wn, "abaci", 5, 'n', &out, &n), 0);
    assert_true(n == 1 && strcmp(out.p, "abacus") == 0);
    assert_int_equal(wordnet_morphy(wn, "leaves", 6, 'n', &out, &n), 0);
    assert_true(n == 2 && strcmp(out.p, "leaf") == 0 && strcmp(out.p + 5, "leave") == 0);
    assert_int_equal(wordnet_morphy(wn, "better", 6, 'a', &out, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(wordnet_morphy(wn, "was", 3, 'v', &out, &n), 0);
    assert_true(n == 1 && strcmp(out.p, "be") == 0);
    assert_int_equal(wordnet_morphy(wn, "quickli", 7, 'r', &out, &n), 0);
    assert_int_equal(n, 0);
    char longword[4001]; // "cat" and 3997 s: NLTK's rules take one "s" a round
    memset(longword, 's', sizeof longword - 1);
    memcpy(longword, "cat", 3);
    longword[4000] = 0;
    assert_int_equal(wordnet_morphy(wn, longword, 4000, 'n', &out, &n), 0);
    assert_true(n == 1 && strcmp(out.p, "cat") == 0);
    out.n = 0;
    assert_int_equal(wordnet_lemma_names(wn, "car", 3, &out, &n), 0);
    const char *car[] = {"auto", "automobile", "car", "gondola", "machine", "motorcar", "railcar", "cable_car",
                         "elevator_car", "railway_car", "railroad_car"};
    for (size_t i = 0; i < sizeof car / sizeof car[0]; i++) {
        bool found = false;
        for (size_t a = 0; a < out.n; a += strlen(out.p + a) + 1)
            found |= strcmp(out.p + a, car[i]) == 0;
        if (!found)
            fail_msg("car: %s missing", car[i]);
    }
    assert_int_equal(n, sizeof car / sizeof car[0]);
    ev_buf_free(&out);
    meteor_destroy(&m);
    wordnet_close(&wn);
}

static void test_wordnet_missing(void **state)
{
    (void)state;
    char err[EV_ERR_LEN];
    assert_null(wordnet_open("/nonexistent/wordnet", err));
    assert_non_null(strstr(err, "/nonexistent/wordnet/data.noun"));
    assert_non_null(strstr(err, "wordnet-base"));
}

static void test_python_text(void **state)
{
    (void)state;
    ev_buf_t out = {0};
    const char *s = "\xCE\xA3\xCE\x91\xCE\xA3 \xCE\xA3"; // ΣΑΣ Σ -> σας σ
    assert_int_equal(ev_lower(s, strlen(s), &out), 0);
    assert_string_equal(out.p, "\xCF\x83\xCE\xB1\xCF\x82 \xCF\x83");
    out.n = 0;
    assert_int_equal(ev_lower("\xC4\xB0X", 3, &out), 0); // İ -> i + U+0307
    assert_string_equal(out.p, "i\xCC\x87x");
    ev_buf_free(&out);
    ev_spans_t sp = {0};
    s = " a\xC2\x85" "b\xE2\x80\x8B" "c\x1c" "d\xE3\x80\x80";
    assert_int_equal(ev_split(s, strlen(s), &sp), 0);
    assert_int_equal(sp.n, 3); // U+0085, U+001C, U+3000 split; U+200B does not
    assert_int_equal(ev_rstrip(s, strlen(s)), strlen(s) - 3);
    ev_spans_free(&sp);
    // invalid UTF-8 decodes byte by byte, without reading past the end
    uint32_t cp;
    assert_int_equal(ev_utf8_next("\xE4\xBD", 2, 0, &cp), 1);
    assert_int_equal(cp, 0xDCE4);
}

static void test_bad_rows(void **state)
{
    (void)state;
    static const struct {
        const char *line, *words;
    } v[] = {
        {"{\"id\": 1, \"references\": [\"a\"]}", "id 1: prediction: missing"},
        {"{\"id\": \"x\", \"prediction\": \"a\", \"references\": []}", "id x: references: empty"},
        {"{\"id\": \"x\", \"prediction\": \"a\"}", "references: missing"},
        {"{\"id\": \"x\", \"prediction\": 3, \"references\": [\"a\"]}", "prediction: not a string"},
        {"{\"id\": \"x\", \"prediction\": \"a\", \"references\": [\"a\", 4]}", "references[1]: not a string"},
        {"{\"id\": \"x\", \"prediction\": \"a\", \"reference\": \"a\", \"references\": [\"a\"]}", "both given"},
        {"{\"prediction\": \"a\", \"references\": [\"a\"]}", "id: missing"},
        {"[1, 2]", "a JSON object expected"},
        {"{\"id\": \"x\", \"prediction\": \"a\\u0000b\", \"references\": [\"a\"]}", "NUL"},
        {"not json", "not JSON"},
        {"{\"id\": \"x\", \"prediction\": \"\xC3\x28\", \"references\": [\"a\"]}", "not JSON"}, // jansson refuses it
        {"{\"id\": \"x\", \"prediction\": \"aaaaaaaaaaa\", \"references\": [\"a\"]}", "over the limit"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        ev_row_t row;
        char err[EV_ERR_LEN];
        assert_int_equal(ev_row_from_json(v[i].line, strlen(v[i].line), 10, true, true, &row, err), -1);
        if (!strstr(err, v[i].words))
            fail_msg("%s: \"%s\" lacks \"%s\"", v[i].line, err, v[i].words);
    }
    ev_row_t row;
    char err[EV_ERR_LEN];
    const char *ok = "{\"id\": 7, \"prediction\": \"\", \"reference\": \"\"}"; // empty texts are defined
    assert_int_equal(ev_row_from_json(ok, strlen(ok), 10, true, true, &row, err), 0);
    assert_true(strcmp(row.id, "7") == 0 && row.pn == 0 && row.nrefs == 1 && row.rn[0] == 0);
    ev_row_free(&row);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_13a_vectors),    cmocka_unit_test(test_zh_quirk),
        cmocka_unit_test(test_bleu_vectors),   cmocka_unit_test(test_rouge_vectors),
        cmocka_unit_test(test_meteor_vectors), cmocka_unit_test(test_wordnet_missing),
        cmocka_unit_test(test_python_text),    cmocka_unit_test(test_bad_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
