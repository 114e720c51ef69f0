#!/usr/bin/env bash
# tokenize-corpus.sh — build the tokenizer benchmark corpus (issue 4): the
# CPython standard library's .py files and the roff text of Debian's manpages,
# manpages-dev and manpages-zh (English, Chinese, code), one JSON string per
# document (a JSONL file), in sorted order, until about 20 MB of text.
#
#   scripts/bench/tokenize-corpus.sh [DEST]   (default build/bench/tokenize-corpus.jsonl)
#
# Anyone with the same Debian release and packages rebuilds the same bytes;
# the sha256 printed names the corpus in results. Bytes that are not UTF-8
# (a few old man pages) are decoded as Latin-1 so every document is text.
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=${1:-build/bench/tokenize-corpus.jsonl}
for p in manpages manpages-dev manpages-zh; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        { echo "tokenize-corpus: package $p is missing (apt-get install $p)" >&2; exit 1; }
done
mkdir -p "$(dirname "$dest")"
/usr/bin/python3 - "$dest" <<'PY'
import glob, gzip, json, os, subprocess, sys, sysconfig
dest = sys.argv[1]
limit = 20_000_000
stdlib = sysconfig.get_paths()["stdlib"]
py = sorted(p for p in glob.glob(stdlib + "/**/*.py", recursive=True)
            if "-packages" not in p and os.path.isfile(p))
man = []
for pkg in ("manpages", "manpages-dev", "manpages-zh"):
    files = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True, check=True).stdout.split()
    man += sorted(f for f in files if f.endswith(".gz") and os.path.isfile(f) and not os.path.islink(f))
def text(b):
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("latin-1")
# interleave code and man pages so any prefix is mixed
docs, total, i = [], 0, 0
srcs = [(p, False) for p in py], [(m, True) for m in man]
while total < limit and (i < len(srcs[0]) or i < len(srcs[1])):
    for s in srcs:
        if i < len(s) and total < limit:
            path, gz = s[i]
            b = gzip.open(path).read() if gz else open(path, "rb").read()
            t = text(b)
            if t:
                docs.append(t)
                total += len(b)
    i += 1
with open(dest + ".tmp", "w", encoding="utf-8") as f:
    for d in docs:
        f.write(json.dumps(d, ensure_ascii=False) + "\n")
os.replace(dest + ".tmp", dest)
print(f"tokenize-corpus: {dest}: {len(docs)} documents, {total} bytes", file=sys.stderr)
PY
sha256sum "$dest"
