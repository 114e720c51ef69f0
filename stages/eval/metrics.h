/* metrics.h — the text metrics of bagel-eval, callable from C: BLEU as
 * sacrebleu 2.x computes it, ROUGE-1/2/L/Lsum as Google's rouge-score, METEOR
 * as NLTK's meteor_score over WordNet 3.0, and NLTK's Porter stemmer
 * (shared/design/metrics-reference.md §1-3; docs/eval.md).
 *
 * Text is UTF-8 (a pointer and a length; no NUL needed). Scores are IEEE
 * doubles computed in the references' order of operations, so most equal the
 * reference to the last bit. Library rule: functions return a status and
 * fill err (EV_ERR_LEN bytes); they never print and never exit. Each object
 * (bleu_t, rouge_t, meteor_t) keeps scratch space: one thread at a time. */
#ifndef BAGEL_EVAL_METRICS_H
#define BAGEL_EVAL_METRICS_H

#include "text.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EV_ERR_LEN 256

/* ---- BLEU (sacrebleu) */

typedef enum { BLEU_TOK_13A, BLEU_TOK_ZH, BLEU_TOK_INTL, BLEU_TOK_CHAR, BLEU_TOK_NONE } bleu_tok_t;
typedef enum { BLEU_SMOOTH_EXP, BLEU_SMOOTH_FLOOR, BLEU_SMOOTH_ADD_K, BLEU_SMOOTH_NONE } bleu_smooth_t;

#define BLEU_ORDER 4

typedef struct {
    bleu_tok_t tok;        // default 13a
    bool lowercase;        // default off
    bleu_smooth_t smooth;  // default exp
    double smooth_value;   // floor's and add-k's value; < 0: the method's default (0.1, 1)
    bool effective_order;  // corpus BLEU: off; sentence BLEU (sacrebleu.sentence_bleu): on
} bleu_opts_t;

/* Sufficient statistics of one segment, or of a corpus (their sum). */
typedef struct {
    int64_t sys_len, ref_len;
    int64_t correct[BLEU_ORDER], total[BLEU_ORDER];
} bleu_stats_t;

typedef struct {
    double score; // 0-100
    double precisions[BLEU_ORDER];
    double counts[BLEU_ORDER], totals[BLEU_ORDER]; // as reported (add-k adds its value)
    double bp, ratio;
    int64_t sys_len, ref_len;
} bleu_score_t;

typedef struct bleu bleu_t;

/* Corpus defaults (effective order off). */
void bleu_opts_default(bleu_opts_t *o);
/* Parse a tokenizer / smoothing name ("13a", "zh", "intl", "char", "none";
 * "exp", "floor", "add-k", "none"). 0 or -1. */
int bleu_tok_parse(const char *s, bleu_tok_t *out);
int bleu_smooth_parse(const char *s, bleu_smooth_t *out);
const char *bleu_tok_name(bleu_tok_t t);

bleu_t *bleu_new(const bleu_opts_t *o);
void bleu_destroy(bleu_t **b);
/* The segment as sacrebleu's _preprocess_segment leaves it (lowercase when
 * asked, rstrip, the tokenizer), appended to out. 0 or -1 (out of memory). */
int bleu_tokenize(bleu_t *b, const char *s, size_t n, ev_buf_t *out);
/* Statistics of one hypothesis against nrefs >= 1 references. 0 or -1 (out
 * of memory, err). */
int bleu_segment(bleu_t *b, const char *hyp, size_t hn, const char *const *refs, const size_t *rn, int nrefs,
                 bleu_stats_t *st, char *err);
/* The score of statistics (sacrebleu's compute_bleu). */
void bleu_compute(const bleu_opts_t *o, const bleu_stats_t *st, bleu_score_t *out);
void bleu_stats_add(bleu_stats_t *sum, const bleu_stats_t *st);
/* sacrebleu's signature, nrefs < 0 meaning a varying number:
 * "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0". */
void bleu_signature(const bleu_opts_t *o, int nrefs, char *buf, size_t size);
/* BLEUScore.format(signature=sig): "BLEU|sig = 40.31 81.2/64.3/41.7/20.0 (BP = ...)". */
void bleu_format(const bleu_score_t *s, const char *sig, char *buf, size_t size);

#define BLEU_SACREBLEU_VERSION "2.6.0" // the release whose numbers these are

/* ---- NLTK's Porter stemmer (mode NLTK_EXTENSIONS) */

/* The stem of word[0,n) appended to out. 0 or -1 (out of memory). */
int porter_stem(const char *word, size_t n, ev_buf_t *out);

/* ---- ROUGE (rouge-score) */

enum { ROUGE_1, ROUGE_2, ROUGE_L, ROUGE_LSUM, ROUGE_TYPES };

typedef struct {
    double p, r, f;
} rouge_prf_t;

typedef struct {
    rouge_prf_t s[ROUGE_TYPES];
} rouge_scores_t;

typedef struct rouge rouge_t;

/* stem: rouge-score's use_stemmer (Porter on tokens longer than 3). */
rouge_t *rouge_new(bool stem);
void rouge_destroy(rouge_t **r);
/* RougeScorer.score(target, prediction). 0, or -1 with err (out of memory; a
 * ROUGE-Lsum table over the limit of 2^31 cells). */
int rouge_score(rouge_t *r, const char *target, size_t tn, const char *pred, size_t pn, rouge_scores_t *out, char *err);
/* RougeScorer.score_multi: per type, the triple of the target with the best F
 * (the first on ties). */
int rouge_score_multi(rouge_t *r, const char *const *targets, const size_t *tn, int nt, const char *pred, size_t pn,
                      rouge_scores_t *out, char *err);
/* rouge-score's tokenizer: the tokens joined by spaces, appended to out. */
int rouge_tokenize(rouge_t *r, const char *s, size_t n, ev_buf_t *out);
const char *rouge_type_name(int type);

/* ---- METEOR (NLTK meteor_score over WordNet 3.0) */

typedef enum { METEOR_TOK_WS, METEOR_TOK_13A } meteor_tok_t;

typedef struct {
    meteor_tok_t tok; // whitespace tokens (str.split), or sacrebleu's 13a tokens
    double alpha, beta, gamma; // 0.9, 3.0, 0.5
} meteor_opts_t;

typedef struct meteor meteor_t;
typedef struct wordnet wordnet_t;

void meteor_opts_default(meteor_opts_t *o);
/* Load WordNet's index, exception and data files from dir (NULL: $BAGEL_WORDNET
 * or /usr/share/wordnet). NULL with err naming the file when one is missing
 * or unreadable. */
wordnet_t *wordnet_open(const char *dir, char *err);
void wordnet_close(wordnet_t **w);
/* NLTK's wordnet.synsets(word): the lemma names of all its synsets (all parts
 * of speech, forms from NLTK's morphy), each once, appended NUL-separated to
 * out; *count gets their number. 0 or -1 (out of memory). */
int wordnet_lemma_names(wordnet_t *w, const char *word, size_t n, ev_buf_t *out, size_t *count);
/* NLTK's _morphy(form, pos) for pos n, v, a, r: the base forms, NUL-separated. */
int wordnet_morphy(wordnet_t *w, const char *form, size_t n, char pos, ev_buf_t *out, size_t *count);

/* The scorer borrows wn (which must outlive it). */
meteor_t *meteor_new(const meteor_opts_t *o, wordnet_t *wn);
void meteor_destroy(meteor_t **m);
/* meteor_score(references, hypothesis): the best over nrefs >= 1
 * references, in [0, 1). 0 or -1 (out of memory, err). */
int meteor_score(meteor_t *m, const char *hyp, size_t hn, const char *const *refs, const size_t *rn, int nrefs,
                 double *out, char *err);

#endif
