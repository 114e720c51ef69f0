#!/usr/bin/env bash
# eval.sh — bagel-eval's metrics beside their Python references, same pairs,
# same run, one core each (make bench-eval): sentence pairs/s of sentence BLEU
# (sacrebleu), ROUGE-1/2/L/Lsum (rouge-score, or the Python reading of it in
# tests/reference/eval_rouge_ref.py where rouge-score is not installed) and
# METEOR (NLTK over Debian's WordNet), and the ratio. The pairs are the 1,500
# golden cases (tests/data/eval/cases.jsonl); C runs them C_REPEAT times (20),
# Python PY_REPEAT times (1). A peer that is not installed is skipped, saying
# so. PYTHON picks the interpreter (default /usr/bin/python3, where Debian's
# python3-nltk is). Also prints the corpus scores of both sides.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
CASES=${CASES:-tests/data/eval/cases.jsonl}
C_REPEAT=${C_REPEAT:-20}
PY_REPEAT=${PY_REPEAT:-1}
BENCH=${BENCH_EVAL:-$BUILD/tools/bench-eval}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "bench-eval: $(wc -l <"$CASES") pairs of $CASES; $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
taskset -c 0 "$BENCH" "$CASES" "$C_REPEAT" >"$out/c" 2>&1 || "$BENCH" "$CASES" "$C_REPEAT" >"$out/c"
taskset -c 0 "$PYTHON" scripts/bench/eval_ref.py "$CASES" "$PY_REPEAT" >"$out/py" 2>/dev/null ||
    "$PYTHON" scripts/bench/eval_ref.py "$CASES" "$PY_REPEAT" >"$out/py" 2>/dev/null || true
printf '%-8s %14s %18s %8s  %s\n' metric "C pairs/s" "Python pairs/s" ratio "check (C | Python)"
for m in bleu rouge meteor; do
    c=$(awk -v m=$m '$1 == m && $2 != "skipped:" {print $4}' "$out/c")
    cx=$(awk -v m=$m '$1 == m && $2 != "skipped:" {print $5}' "$out/c")
    p=$(awk -v m=$m '$1 == m && $2 != "skipped:" {print $4}' "$out/py")
    px=$(awk -v m=$m '$1 == m && $2 != "skipped:" {print $5, $6}' "$out/py")
    if [ -z "$p" ]; then
        printf '%-8s %14s %18s %8s  %s\n' "$m" "${c:-?}" "skipped" "-" "$(grep "^$m skipped" "$out/py" | cut -c1-60)"
    else
        printf '%-8s %14s %18s %7.1fx  %s | %s\n' "$m" "$c" "$p" "$(awk -v c="$c" -v p="$p" 'BEGIN {print c / p}')" "$cx" "$px"
    fi
done
