#!/usr/bin/env bash
# tokenize.sh — bagel-tokenize's encode speed on the issue-4 corpus
# (scripts/bench/tokenize-corpus.sh): tokens/s on one core (the time inside
# tok_encode, as the HF peer times encode in a loop), then P processes each
# encoding the whole corpus at once (scaling by processes, as the pipeline
# scales), P = 1, 2, 4, ... up to the cores. The HuggingFace peer runs on the
# GPU machine (tests/reference/tokenize_golden.py); its numbers from the last
# run are in tests/data/tokenize/corpus.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
TOK="$BUILD/bin/bagel-tokenize"
tok=$(scripts/fetch-tokenizer.sh)
corpus=build/bench/tokenize-corpus.jsonl
[ -s "$corpus" ] || scripts/bench/tokenize-corpus.sh "$corpus" >/dev/null
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')"
"$TOK" --tokenizer "$tok" --text --json "$corpus" 2>&1 >/dev/null | grep tokens_per_s | sed 's/^/one core: /'
tokens=$("$TOK" -q --tokenizer "$tok" --text --json "$corpus" | wc -w)
p=1
while [ "$p" -le "$(nproc)" ]; do
    start=$(date +%s.%N)
    for _ in $(seq "$p"); do "$TOK" -q --tokenizer "$tok" --text --json "$corpus" >/dev/null & done
    wait
    end=$(date +%s.%N)
    awk -v p="$p" -v t="$tokens" -v s="$start" -v e="$end" \
        'BEGIN { printf "processes=%d wall_s=%.2f tokens_per_s=%.0f (load, JSON parsing and output included)\n", p, e - s, p * t / (e - s) }'
    p=$((p * 2))
done
