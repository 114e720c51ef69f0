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
import json
import os
import sys

from nltk.stem.porter import PorterStemmer
from nltk.translate.meteor_score import meteor_score

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eval_wordnet import WORDNET_DIR, wordnet  # noqa: E402

DIR = sys.argv[1]
stemmer = PorterStemmer()
from eval_rouge_ref import rouge, rouge_multi, rouge_tokens  # noqa: E402


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
