#!/usr/bin/env python3
"""eval_golden_rouge_meteor.py — golden METEOR (NLTK), Porter stems (NLTK) and
ROUGE (a reading of Google's rouge-score, see below) for bagel-eval's tests
(issue 11). Run with Debian's Python, python3-nltk and wordnet-base:

    /usr/bin/python3 tests/reference/eval_golden_rouge_meteor.py tests/data/eval

Reads DIR/cases.jsonl (eval_golden_cases.py) and DIR/golden_bleu.jsonl (for
the 13a tokens of every case, from sacrebleu); writes

  DIR/golden_meteor.jsonl  a line per case: "id", "ws": nltk meteor_score over
                           the whitespace tokens (str.split) of the prediction
                           and of every reference (max over references), "13a":
                           the same over sacrebleu's 13a tokens, "first": ws
                           against references[0] only
  DIR/golden_porter.txt    "word stem" lines: NLTK's PorterStemmer() (mode
                           NLTK_EXTENSIONS) over every word of the cases, every
                           one-word lemma of WordNet's index files and a list of
                           irregular and edge forms
  DIR/golden_rouge.jsonl   as eval_golden_bleu_rouge.py writes it (first/multi,
                           with and without stemming, [P, R, F] of rouge1,
                           rouge2, rougeL, rougeLsum)

ROUGE: the rouge-score package is not installed on any machine this project
reaches (not a Debian package; the GPU machine's Python lacks it), so ROUGE
comes from the functions below, written from rouge-score's rouge_scorer.py,
tokenize.py and scoring.py (v0.1.2) as a second implementation independent of
the C code, with NLTK's own PorterStemmer for use_stemmer. The test vectors of
metrics-reference.md §2.7 (printed by the real package during the design) are
checked here before anything is written, and again by the C unit tests.
"""
import collections
import json
import os
import re
import sys

from nltk.stem.porter import PorterStemmer
from nltk.translate.meteor_score import meteor_score

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eval_wordnet import WORDNET_DIR, wordnet  # noqa: E402

DIR = sys.argv[1]
stemmer = PorterStemmer()

# ---- ROUGE, read from rouge-score 0.1.2


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


def check_reference_vectors():
    """metrics-reference.md §2.7: values printed by rouge-score itself."""
    def same(a, b):
        return all(abs(x - y) <= 1e-12 for x, y in zip(a, b))
    r1 = rouge("The quick brown fox jumps over the lazy dog", "The quick brown dog jumps on the log.", False)
    assert same(r1["rouge1"], [0.75, 0.66666666666666663, 0.70588235294117652])
    assert same(r1["rouge2"], [0.2857142857142857, 0.25, 0.26666666666666666])
    assert same(r1["rougeL"], [0.625, 0.55555555555555558, 0.58823529411764708]) and r1["rougeL"] == r1["rougeLsum"]
    r2 = rouge("the cats are running", "a cat ran", True)
    assert same(r2["rouge1"], [0.33333333333333331, 0.25, 0.28571428571428575]) and r2["rouge2"] == [0, 0, 0]
    assert rouge("the cats are running", "a cat ran", False)["rouge1"] == [0, 0, 0]
    assert rouge("the cat", "", False)["rougeLsum"] == [0, 0, 0] and rouge("the cat", "!!! ...", False)["rouge1"] == [0, 0, 0]
    r5 = rouge("the cat sat on the mat\nthe dog barked loudly", "the dog barked\nthe cat sat on a mat", False)
    assert same(r5["rouge1"], [0.88888888888888884, 0.80000000000000004, 0.8421052631578948])
    assert same(r5["rouge2"], [0.625, 0.55555555555555558, 0.58823529411764708])
    assert same(r5["rougeL"], [0.55555555555555558, 0.5, 0.52631578947368418])
    assert same(r5["rougeLsum"], [0.88888888888888884, 0.80000000000000004, 0.8421052631578948])
    r6 = rouge("a b c\na b", "a b\nc a b", False)
    assert r6["rouge1"] == [1, 1, 1] and same(r6["rougeLsum"], [0.8, 0.8, 0.80000000000000016])
    r7 = rouge("the the the cat", "the the cat cat", False)
    assert same(r7["rouge2"], [0.66666666666666663] * 3) and same(r7["rougeLsum"], [0.75] * 3)
    r8 = rouge_multi(["completely different words", "the cat sat", "the cat sat on the mat"], "the cat sat", False)
    assert r8["rouge1"] == [1.0, 1.0, 1.0] and r8["rougeL"] == [1.0, 1.0, 1.0]
    assert " ".join(rouge_tokens("Hello, World! It's 3.14-ish; naïve CAFÉ x_y", False)) == "hello world it s 3 14 ish na ve caf x y"
    assert " ".join(rouge_tokens("The runners were running quickly to the cats' houses", True)) == "the runner were run quickli to the cat hous"


check_reference_vectors()

cases = [json.loads(l) for l in open(os.path.join(DIR, "cases.jsonl"), encoding="utf-8")]
bleu = {}
for l in open(os.path.join(DIR, "golden_bleu.jsonl"), encoding="utf-8"):
    row = json.loads(l)
    bleu[row["id"]] = row["tok"]["13a"]

with open(os.path.join(DIR, "golden_rouge.jsonl"), "w") as f:
    for c in cases:
        row = {"id": c["id"]}
        for stem in (False, True):
            sfx = "-stem" if stem else ""
            row["first" + sfx] = rouge(c["references"][0], c["prediction"], stem)
            row["multi" + sfx] = rouge_multi(c["references"], c["prediction"], stem)
        f.write(json.dumps(row) + "\n")

with open(os.path.join(DIR, "golden_meteor.jsonl"), "w") as f:
    for c in cases:
        hyp, refs = c["prediction"], c["references"]
        h13, r13 = bleu[c["id"]]
        row = {"id": c["id"],
               "ws": meteor_score([r.split() for r in refs], hyp.split(), wordnet=wordnet),
               "13a": meteor_score([r.split() for r in r13], h13.split(), wordnet=wordnet),
               "first": meteor_score([refs[0].split()], hyp.split(), wordnet=wordnet)}
        f.write(json.dumps(row) + "\n")

words = set()
for c in cases:
    for s in [c["prediction"]] + c["references"]:
        words.update(w.lower() for w in s.split())
        words.update(rouge_tokens(s, False))
for name in ("index.noun", "index.verb", "index.adj", "index.adv"):
    for line in open(os.path.join(WORDNET_DIR, name), encoding="ascii"):
        if not line.startswith(" ") and "_" not in line.split()[0]:
            words.add(line.split()[0])  # multi-word lemmas add nothing new
words.update("""sky skies Skies dying lying tying news innings inning outings outing cannings canning
howe proceed exceed succeed caresses ponies ties dies flies agreed feed plastered bled motoring
sing conflated troubled sized hopping tanned falling hissing fizzed failing filing happy enjoy spy
relational conditional rational valenci hesitanci digitizer conformabli radicalli differentli vileli
analogousli vietnamization predication operator feudalism decisiveness hopefulness callousness
formaliti sensitiviti sensibiliti triplicate formative formalize electriciti electrical hopeful
goodness revival allowance inference airliner gyroscopic adjustable defensible irritant replacement
adjustment dependent adoption homologou communism activate angulariti homologous effective bowdlerize
probate rate cease controll roll generously spied died cried geology theology archaeology hopefulli
a is as us running runs ran quickly cats houses were was party commands military obeys guidance
ensures traditional analysis yearly flying ies ied eed ing ed y yy by sly ivy aiing oed oing
3d 2nd 1990s a1b2 abcabc bbbbb eeeeeing sssss""".split())
words = sorted(w for w in words if w and "\n" not in w and " " not in w)
with open(os.path.join(DIR, "golden_porter.txt"), "w", encoding="utf-8") as f:
    for w in words:
        f.write("%s %s\n" % (w, stemmer.stem(w)))
print("cases %d, porter words %d" % (len(cases), len(words)))
