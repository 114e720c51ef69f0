#!/usr/bin/env python3
"""tokenize_golden.py — golden ids and peer timings from HuggingFace tokenizers
(issue 4). Run on the GPU machine, which has the Python package:

    python3 tests/reference/tokenize_golden.py TOKENIZER_JSON STRINGS_JSONL OUT_DIR [CORPUS_JSONL]

Writes OUT_DIR/ids.txt: a header line starting with "#" that names the
tokenizers version and the inputs' sha256, then for each string of
STRINGS_JSONL (one JSON string a line) its ids, space-separated, as
Tokenizer.encode(s, add_special_tokens=False) gives them (the same format
`bagel-tokenize --text --json` prints). With CORPUS_JSONL (one document a
line, scripts/bench/tokenize-corpus.sh) it also writes OUT_DIR/corpus.json:
the sha256 of the corpus's ids in that text format, the token count, and the
tokens/s of encode in a loop (one core) and of encode_batch (all cores).
"""
import hashlib
import json
import os
import sys
import time

import tokenizers
from tokenizers import Tokenizer


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def ids_line(ids):
    return " ".join(map(str, ids)) + "\n"


def main():
    tok_path, strings_path, out = sys.argv[1:4]
    corpus_path = sys.argv[4] if len(sys.argv) > 4 else None
    tok = Tokenizer.from_file(tok_path)
    strings = [json.loads(line) for line in open(strings_path, encoding="utf-8")]
    os.makedirs(out, exist_ok=True)
    bad_roundtrip = 0
    import unicodedata
    with open(os.path.join(out, "ids.txt"), "w") as f:
        f.write(f"# HuggingFace tokenizers {tokenizers.__version__}: Tokenizer.from_file(tokenizer.json sha256 "
                f"{sha256(tok_path)}).encode(s, add_special_tokens=False).ids for each line of strings.jsonl "
                f"(sha256 {sha256(strings_path)}); made by tests/reference/tokenize_golden.py\n")
        for s in strings:
            ids = tok.encode(s, add_special_tokens=False).ids
            f.write(ids_line(ids))
            if tok.decode(ids, skip_special_tokens=False) != unicodedata.normalize("NFC", s):
                bad_roundtrip += 1
    print(f"tokenizers {tokenizers.__version__}: {len(strings)} strings; "
          f"decode(encode(s)) != NFC(s) for {bad_roundtrip} (python unicodedata {unicodedata.unidata_version})")
    if not corpus_path:
        return
    docs = [json.loads(line) for line in open(corpus_path, encoding="utf-8")]
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    t0 = time.perf_counter()
    enc = [tok.encode(d, add_special_tokens=False).ids for d in docs]
    t1 = time.perf_counter()
    ntok = sum(len(e) for e in enc)
    h = hashlib.sha256()
    for e in enc:
        h.update(ids_line(e).encode())
    t2 = time.perf_counter()
    batch = tok.encode_batch(docs, add_special_tokens=False)
    t3 = time.perf_counter()
    assert [b.ids for b in batch] == enc
    res = {"tokenizers": tokenizers.__version__, "corpus_sha256": sha256(corpus_path), "documents": len(docs),
           "bytes": nbytes, "tokens": ntok, "ids_sha256": h.hexdigest(), "cpus": os.cpu_count(),
           "encode_loop_s": t1 - t0, "encode_loop_tok_s": ntok / (t1 - t0),
           "encode_batch_s": t3 - t2, "encode_batch_tok_s": ntok / (t3 - t2)}
    json.dump(res, open(os.path.join(out, "corpus.json"), "w"), indent=1)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
