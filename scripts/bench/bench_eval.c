/* bench_eval.c — bagel-eval's metrics in sentence pairs per second
 * (scripts/bench/eval.sh): reads JSON lines {"prediction", "references"},
 * and times over REPEAT passes, each metric alone on one core: sentence BLEU
 * (13a; the statistics also summed into corpus BLEU), ROUGE-1/2/L/Lsum against
 * the first reference, METEOR over WordNet (loading excluded, as the peer's).
 *
 *   bench-eval FILE [REPEAT] [WORDNET_DIR]
 *
 * Prints "metric pairs seconds pairs_per_s" lines and the corpus scores, so
 * the peer's results can be checked to be the same. */
#include "../../stages/eval/metrics.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const char *hyp, *refs[16];
    size_t hn, rn[16];
    int nrefs;
} pair_t;

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench-eval FILE [REPEAT] [WORDNET_DIR]\n");
        return 2;
    }
    int repeat = argc > 2 ? atoi(argv[2]) : 10;
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        perror(argv[1]);
        return 3;
    }
    pair_t *p = NULL;
    size_t n = 0, cap = 0, lcap = 0;
    char *line = NULL;
    json_t *keep = json_array();
    while (getline(&line, &lcap, f) > 0) {
        json_t *o = json_loads(line, 0, NULL), *refs = json_object_get(o, "references");
        if (!o || !json_is_string(json_object_get(o, "prediction")) || !json_is_array(refs))
            continue;
        json_array_append_new(keep, o);
        if (n == cap)
            p = realloc(p, (cap = cap ? cap * 2 : 1024) * sizeof *p);
        pair_t *q = &p[n++];
        q->hyp = json_string_value(json_object_get(o, "prediction"));
        q->hn = json_string_length(json_object_get(o, "prediction"));
        q->nrefs = 0;
        for (size_t i = 0; i < json_array_size(refs) && i < 16; i++, q->nrefs++) {
            q->refs[i] = json_string_value(json_array_get(refs, i));
            q->rn[i] = json_string_length(json_array_get(refs, i));
        }
    }
    free(line);
    fclose(f);
    char err[EV_ERR_LEN];
    double t0, sink = 0;
    size_t total = n * (size_t)repeat;

    bleu_opts_t bo, so;
    bleu_opts_default(&bo);
    so = bo;
    so.effective_order = true;
    bleu_t *b = bleu_new(&bo);
    bleu_stats_t sum = {0};
    t0 = now();
    for (int r = 0; r < repeat; r++)
        for (size_t i = 0; i < n; i++) {
            bleu_stats_t st;
            bleu_score_t s;
            if (bleu_segment(b, p[i].hyp, p[i].hn, p[i].refs, p[i].rn, p[i].nrefs, &st, err))
                return 3;
            bleu_compute(&so, &st, &s);
            sink += s.score;
            if (r == 0)
                bleu_stats_add(&sum, &st);
        }
    double tb = now() - t0;
    bleu_score_t cs;
    bleu_compute(&bo, &sum, &cs);
    printf("bleu %zu %.3f %.0f corpus=%.6f\n", total, tb, (double)total / tb, cs.score);
    bleu_destroy(&b);

    rouge_t *rg = rouge_new(false);
    double rsum = 0;
    t0 = now();
    for (int r = 0; r < repeat; r++)
        for (size_t i = 0; i < n; i++) {
            rouge_scores_t s;
            if (rouge_score(rg, p[i].refs[0], p[i].rn[0], p[i].hyp, p[i].hn, &s, err))
                return 3;
            if (r == 0)
                rsum += s.s[ROUGE_LSUM].f;
        }
    double tr = now() - t0;
    printf("rouge %zu %.3f %.0f mean_rougeLsum=%.6f\n", total, tr, (double)total / tr, rsum / (double)n);
    rouge_destroy(&rg);

    wordnet_t *wn = wordnet_open(argc > 3 ? argv[3] : NULL, err);
    if (!wn)
        printf("meteor skipped: %s\n", err);
    else {
        meteor_opts_t mo;
        meteor_opts_default(&mo);
        meteor_t *m = meteor_new(&mo, wn);
        double msum = 0;
        t0 = now();
        for (int r = 0; r < repeat; r++)
            for (size_t i = 0; i < n; i++) {
                double s;
                if (meteor_score(m, p[i].hyp, p[i].hn, p[i].refs, p[i].rn, p[i].nrefs, &s, err))
                    return 3;
                if (r == 0)
                    msum += s;
            }
        double tm = now() - t0;
        printf("meteor %zu %.3f %.0f mean=%.6f\n", total, tm, (double)total / tm, msum / (double)n);
        meteor_destroy(&m);
        wordnet_close(&wn);
    }
    json_decref(keep);
    free(p);
    return sink < 0 ? 1 : 0;
}
