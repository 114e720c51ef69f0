#!/usr/bin/env python3
"""eval_golden_bleu_rouge.py — golden BLEU (sacrebleu) and ROUGE (Google's
rouge-score) for bagel-eval's tests (issue 11). Run where the two packages are
installed (the GPU machine's Python; neither is a Debian package):

    python3 tests/reference/eval_golden_bleu_rouge.py tests/data/eval/cases.jsonl OUT_DIR

Writes, for the cases of eval_golden_cases.py:

  OUT_DIR/golden_bleu.jsonl   a line per case: "id"; "sent": sacrebleu.sentence_bleu
                              score per variant (13a, zh, intl, char, none, 13a-lc,
                              13a-floor, 13a-add-k, 13a-none); "tok": the hypothesis
                              and references as the 13a, zh and intl tokenizers give them
  OUT_DIR/corpus_bleu.json    BLEU().corpus_score over all cases (reference streams
                              padded with None: nrefs var) per variant, and over the
                              zh cases with tokenize=zh, and over the en cases (one
                              reference): score, counts, totals, precisions, bp,
                              sys_len, ref_len, format() with the signature
  OUT_DIR/golden_rouge.jsonl  a line per case: "id" and, for first (score against
                              references[0]) and multi (score_multi), each without and
                              with use_stemmer, [precision, recall, fmeasure] of
                              rouge1, rouge2, rougeL, rougeLsum
  OUT_DIR/versions.txt        the packages' versions

Floats are written with Python's repr (they read back exactly). A package that
is missing is named in versions.txt and its files are not written.
"""
import json
import os
import sys

cases_path, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
cases = [json.loads(l) for l in open(cases_path, encoding="utf-8")]
versions = ["python " + sys.version.split()[0]]

try:
    import sacrebleu
    from sacrebleu.metrics import BLEU
    versions.append("sacrebleu " + sacrebleu.__version__)
except ImportError as e:
    sacrebleu = None
    versions.append("sacrebleu missing: %s" % e)
try:
    import regex  # the intl tokenizer's
    versions.append("regex " + regex.__version__)
    HAVE_INTL = True
except ImportError:
    HAVE_INTL = False
    versions.append("regex missing: no intl")
try:
    import rouge_score
    from rouge_score import rouge_scorer
    try:
        from importlib.metadata import version
        versions.append("rouge-score " + version("rouge-score"))
    except Exception:
        versions.append("rouge-score (version unknown)")
except ImportError as e:
    rouge_scorer = None
    versions.append("rouge-score missing: %s" % e)
try:
    import nltk
    versions.append("nltk " + nltk.__version__)
except ImportError:
    versions.append("nltk missing")

VARIANTS = [  # name, BLEU() keyword arguments
    ("13a", {}),
    ("zh", {"tokenize": "zh"}),
    ("intl", {"tokenize": "intl"}),
    ("char", {"tokenize": "char"}),
    ("none", {"tokenize": "none"}),
    ("13a-lc", {"lowercase": True}),
    ("13a-floor", {"smooth_method": "floor"}),
    ("13a-add-k", {"smooth_method": "add-k"}),
    ("13a-none", {"smooth_method": "none"}),
]
if not HAVE_INTL:
    VARIANTS = [v for v in VARIANTS if v[0] != "intl"]


def score_dict(s, metric):
    return {"score": s.score, "counts": list(s.counts), "totals": list(s.totals),
            "precisions": list(s.precisions), "bp": s.bp, "sys_len": s.sys_len,
            "ref_len": s.ref_len, "format": s.format(signature=str(metric.get_signature())),
            "signature": str(metric.get_signature())}


if sacrebleu:
    sent_metrics = {name: BLEU(effective_order=True, **kw) for name, kw in VARIANTS}
    toks = {name: BLEU(tokenize=name).tokenizer for name in ["13a", "zh"] + (["intl"] if HAVE_INTL else [])}
    with open(os.path.join(out, "golden_bleu.jsonl"), "w", encoding="utf-8") as f:
        for c in cases:
            hyp, refs = c["prediction"], c["references"]
            row = {"id": c["id"], "sent": {}, "tok": {}}
            for name, kw in VARIANTS:
                # sentence_bleu() is BLEU(effective_order=True).sentence_score
                row["sent"][name] = sacrebleu.sentence_bleu(hyp, refs, **kw).score
                assert row["sent"][name] == sent_metrics[name].sentence_score(hyp, refs).score
            for name, tk in toks.items():
                row["tok"][name] = [tk(hyp.rstrip()), [tk(r.rstrip()) for r in refs]]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    def streams(sub):
        k = max(len(c["references"]) for c in sub)
        return [c["prediction"] for c in sub], [[c["references"][j] if j < len(c["references"]) else None for c in sub] for j in range(k)]

    corpus = {}
    hyps, refs = streams(cases)
    for name, kw in VARIANTS:
        m = BLEU(**kw)
        corpus["all/" + name] = score_dict(m.corpus_score(hyps, refs), m)
    zh = [c for c in cases if c["kind"] == "zh"]
    hyps, refs = streams(zh)
    m = BLEU(tokenize="zh")
    corpus["zh/zh"] = score_dict(m.corpus_score(hyps, refs), m)
    en = [c for c in cases if c["kind"] == "en"]
    hyps, refs = streams(en)
    m = BLEU()
    corpus["en/13a"] = score_dict(m.corpus_score(hyps, refs), m)
    with open(os.path.join(out, "corpus_bleu.json"), "w", encoding="utf-8") as f:
        json.dump(corpus, f, ensure_ascii=False, indent=1)
        f.write("\n")

if rouge_scorer:
    TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorers = {stem: rouge_scorer.RougeScorer(TYPES, use_stemmer=stem) for stem in (False, True)}

    def multi(sc, targets, pred):
        if hasattr(sc, "score_multi"):
            return sc.score_multi(targets, pred)
        dicts = [sc.score(t, pred) for t in targets]  # score_multi as rouge-score 0.1.2 has it
        best = {}
        for k in TYPES:
            i = max(range(len(dicts)), key=lambda j: (dicts[j][k].fmeasure, -j))
            best[k] = dicts[i][k]
        return best

    with open(os.path.join(out, "golden_rouge.jsonl"), "w", encoding="utf-8") as f:
        for c in cases:
            row = {"id": c["id"]}
            for stem in (False, True):
                sc = scorers[stem]
                first = sc.score(c["references"][0], c["prediction"])
                best = multi(sc, c["references"], c["prediction"])
                suffix = "-stem" if stem else ""
                row["first" + suffix] = {k: list(first[k]) for k in TYPES}
                row["multi" + suffix] = {k: list(best[k]) for k in TYPES}
            f.write(json.dumps(row) + "\n")

with open(os.path.join(out, "versions.txt"), "w") as f:
    f.write("\n".join(versions) + "\n")
print("\n".join(versions))
