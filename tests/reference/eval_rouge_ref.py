"""eval_rouge_ref.py — ROUGE-1/2/L/Lsum as Google's rouge-score 0.1.2 computes
them (rouge_scorer.py, tokenize.py, scoring.py), in Python, written as a
second implementation independent of bagel-eval's C code: rouge-score itself is
installed on no machine this project reaches. NLTK's own PorterStemmer does
use_stemmer. Used by eval_golden_rouge_meteor.py (golden data, checked against
the values rouge-score printed for metrics-reference.md §2.7) and by
scripts/bench/eval_ref.py (the Python peer of the benchmark).

    rouge(target, prediction, stem) -> {"rouge1": [P, R, F], ..., "rougeLsum": [...]}
    rouge_multi(targets, prediction, stem)   score_multi: best F per type
"""
import collections
import re

from nltk.stem.porter import PorterStemmer

stemmer = PorterStemmer()

def rouge_tokens(text, stem):
    text = re.sub(r"[^a-z0-9]+", " ", text.lower())
    toks = re.split(r"\s+", text)
    if stem:
        toks = [stemmer.stem(t) if len(t) > 3 else t for t in toks]
    return [t for t in toks if re.match(r"^[a-z0-9]+$", t)]


def fmeasure(p, r):
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def ngram_counts(toks, n):
    return collections.Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))


def rouge_n(t, p, n):
    tc, pc = ngram_counts(t, n), ngram_counts(p, n)
    hit = sum(min(c, pc[g]) for g, c in tc.items())
    prec = hit / max(sum(pc.values()), 1)
    rec = hit / max(sum(tc.values()), 1)
    return [prec, rec, fmeasure(prec, rec)]


def lcs_table(a, b):
    t = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            t[i][j] = t[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(t[i - 1][j], t[i][j - 1])
    return t


def rouge_l(t, p):
    if not t or not p:
        return [0, 0, 0]
    lcs = lcs_table(t, p)[-1][-1]
    prec, rec = lcs / len(p), lcs / len(t)
    return [prec, rec, fmeasure(prec, rec)]


def lcs_indices(r, c):
    t = lcs_table(r, c)
    i, j, out = len(r), len(c), []
    while i > 0 and j > 0:
        if r[i - 1] == c[j - 1]:
            out.append(i - 1)
            i, j = i - 1, j - 1
        elif t[i][j - 1] > t[i - 1][j]:
            j -= 1
        else:
            i -= 1
    return out


def rouge_lsum(target, pred, stem):
    rs = [rouge_tokens(s, stem) for s in target.split("\n") if s]
    cs = [rouge_tokens(s, stem) for s in pred.split("\n") if s]
    if not rs or not cs:
        return [0, 0, 0]
    m, n = sum(map(len, rs)), sum(map(len, cs))
    if not m or not n:
        return [0, 0, 0]
    cr = collections.Counter(x for s in rs for x in s)
    cc = collections.Counter(x for s in cs for x in s)
    hits = 0
    for r in rs:
        union = sorted(set().union(*[lcs_indices(r, c) for c in cs]))
        for k in union:
            tok = r[k]
            if cc[tok] > 0 and cr[tok] > 0:
                hits += 1
                cc[tok] -= 1
                cr[tok] -= 1
    rec, prec = hits / m, hits / n
    return [prec, rec, fmeasure(prec, rec)]


def rouge(target, pred, stem):
    t, p = rouge_tokens(target, stem), rouge_tokens(pred, stem)
    return {"rouge1": rouge_n(t, p, 1), "rouge2": rouge_n(t, p, 2), "rougeL": rouge_l(t, p),
            "rougeLsum": rouge_lsum(target, pred, stem)}


def rouge_multi(targets, pred, stem):
    scores = [rouge(t, pred, stem) for t in targets]
    best = {}
    for k in scores[0]:
        i = max(range(len(scores)), key=lambda j: (scores[j][k][2], -j))  # numpy argmax: first maximum
        best[k] = scores[i][k]
    return best


