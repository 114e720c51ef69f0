/* fuzz_eval — libFuzzer target for bagel-eval's metrics and its row parser:
 * the first byte picks the BLEU tokenizer, lowercase, ROUGE stemming and the
 * METEOR tokens; the rest, split at 0x1E bytes, is the prediction and one to
 * four references (any bytes, invalid UTF-8 included). Every score must be a
 * number in its range (BLEU 0-100, ROUGE and METEOR 0-1), a tokenization one
 * line of single-spaced tokens, and the same bytes as a JSON line either a
 * row or a one-line error. METEOR runs when WordNet is installed. */
#define _GNU_SOURCE // memmem
#include "../../stages/eval/metrics.h"
#include "../../stages/eval/rows.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static wordnet_t *wn;
static bool wn_tried;

static void in_range(double x, double hi)
{
    if (!(x >= 0 && x <= hi))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char err[EV_ERR_LEN];
    if (!wn_tried) {
        wn_tried = true;
        wn = wordnet_open(NULL, err);
    }
    unsigned flags = data[0];
    const char *s = (const char *)data + 1, *parts[5];
    size_t n = size - 1, lens[5];
    int np = 0;
    for (size_t i = 0, start = 0; i <= n && np < 5; i++)
        if (i == n || s[i] == 0x1E)
            parts[np] = s + start, lens[np++] = i - start, start = i + 1;
    if (np < 2)
        parts[1] = "", lens[1] = 0, np = 2;
    bleu_opts_t bo;
    bleu_opts_default(&bo);
    bo.tok = (bleu_tok_t)(flags % 5);
    bo.lowercase = flags & 0x08;
    bleu_t *b = bleu_new(&bo);
    bleu_stats_t st;
    bleu_score_t sc;
    if (!b || bleu_segment(b, parts[0], lens[0], parts + 1, lens + 1, np - 1, &st, err))
        abort();
    bleu_compute(&bo, &st, &sc);
    in_range(sc.score, 100.0 + 1e-9);
    bo.effective_order = true;
    bleu_compute(&bo, &st, &sc);
    in_range(sc.score, 100.0 + 1e-9);
    ev_buf_t tok = {0};
    if (bleu_tokenize(b, parts[0], lens[0], &tok) || memchr(tok.p, '\n', tok.n))
        abort();
    if (tok.n && (tok.p[0] == ' ' || tok.p[tok.n - 1] == ' ' || memmem(tok.p, tok.n, "  ", 2)))
        abort();
    ev_buf_free(&tok);
    bleu_destroy(&b);
    rouge_t *r = rouge_new(flags & 0x10);
    rouge_scores_t rs;
    if (!r || rouge_score_multi(r, parts + 1, lens + 1, np - 1, parts[0], lens[0], &rs, err))
        abort();
    for (int k = 0; k < ROUGE_TYPES; k++)
        in_range(rs.s[k].p, 1), in_range(rs.s[k].r, 1), in_range(rs.s[k].f, 1);
    rouge_destroy(&r);
    if (wn) {
        meteor_opts_t mo;
        meteor_opts_default(&mo);
        mo.tok = flags & 0x20 ? METEOR_TOK_13A : METEOR_TOK_WS;
        meteor_t *m = meteor_new(&mo, wn);
        double ms;
        if (!m || meteor_score(m, parts[0], lens[0], parts + 1, lens + 1, np - 1, &ms, err))
            abort();
        in_range(ms, 1);
        meteor_destroy(&m);
    }
    ev_row_t row;
    if (ev_row_from_json(s, n, 1 << 20, true, true, &row, err) == 0) {
        if (!row.id || !row.pred || row.nrefs < 1)
            abort();
        ev_row_free(&row);
    } else {
        size_t k = strnlen(err, EV_ERR_LEN);
        if (k == 0 || k == EV_ERR_LEN || memchr(err, '\n', k))
            abort(); // one bounded line
    }
    return 0;
}
