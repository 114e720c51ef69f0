#!/usr/bin/env python3
"""eval_ref.py — the Python peers of bench-eval (scripts/bench/eval.sh), on the
same JSON lines and the same passes: sacrebleu.sentence_bleu (13a) per pair
and BLEU().corpus_score; ROUGE-1/2/L/Lsum against the first reference with
rouge-score's RougeScorer when it is installed, else with the Python reading
of it in tests/reference/eval_rouge_ref.py; NLTK's meteor_score over
whitespace tokens, WordNet loaded before timing. A peer that cannot be
imported prints a "skipped" line.

    python3 scripts/bench/eval_ref.py FILE [REPEAT]
"""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "reference"))

path, repeat = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1
pairs = []
for line in open(path, encoding="utf-8"):
    o = json.loads(line)
    pairs.append((o["prediction"], o["references"]))
total = len(pairs) * repeat

try:
    import sacrebleu
    from sacrebleu.metrics import BLEU
    t0 = time.perf_counter()
    for _ in range(repeat):
        for hyp, refs in pairs:
            sacrebleu.sentence_bleu(hyp, refs)
    tb = time.perf_counter() - t0
    k = max(len(r) for _, r in pairs)
    streams = [[r[j] if j < len(r) else None for _, r in pairs] for j in range(k)]
    corpus = BLEU().corpus_score([h for h, _ in pairs], streams).score
    print("bleu %d %.3f %.0f corpus=%.6f sacrebleu-%s" % (total, tb, total / tb, corpus, sacrebleu.__version__))
except ImportError as e:
    print("bleu skipped: %s" % e)

try:
    try:
        from rouge_score import rouge_scorer
        sc = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"])
        score, who = (lambda t, p: {k: list(v) for k, v in sc.score(t, p).items()}), "rouge-score"
    except ImportError:
        from eval_rouge_ref import rouge
        score, who = (lambda t, p: rouge(t, p, False)), "python-reading"
    t0 = time.perf_counter()
    lsum = 0.0
    for r in range(repeat):
        for hyp, refs in pairs:
            s = score(refs[0], hyp)
            if r == 0:
                lsum += s["rougeLsum"][2]
    tr = time.perf_counter() - t0
    print("rouge %d %.3f %.0f mean_rougeLsum=%.6f %s" % (total, tr, total / tr, lsum / len(pairs), who))
except ImportError as e:
    print("rouge skipped: %s" % e)

try:
    import nltk
    from nltk.translate.meteor_score import meteor_score
    from eval_wordnet import wordnet
    wordnet.synsets("dog")  # load before timing, as bench-eval loads its WordNet
    t0 = time.perf_counter()
    msum = 0.0
    for r in range(repeat):
        for hyp, refs in pairs:
            s = meteor_score([x.split() for x in refs], hyp.split(), wordnet=wordnet)
            if r == 0:
                msum += s
    tm = time.perf_counter() - t0
    print("meteor %d %.3f %.0f mean=%.6f nltk-%s" % (total, tm, total / tm, msum / len(pairs), nltk.__version__))
except Exception as e:  # no nltk, or no WordNet files
    print("meteor skipped: %s" % e)
