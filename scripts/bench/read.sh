#!/usr/bin/env bash
# read.sh — make bench-read: bagel-read's lines/s beside jq's over the same
# generated JSONL file on the same machine, one core each (both are single
# threaded). jq -c . parses and prints every line; bagel-read parses,
# validates, normalizes and writes records to /dev/null.
# Usage: read.sh [LINES] (default 200000); BUILD picks the build directory.
set -euo pipefail

BUILD="${BUILD:-build}"
LINES="${1:-200000}"
bin="$BUILD/bin/bagel-read"
[[ -x "$bin" ]] || { echo "read.sh: $bin: not built; run make BUILD=$BUILD" >&2; exit 1; }
command -v jq >/dev/null || { echo "read.sh: jq is not installed (apt-get install jq)" >&2; exit 1; }

dir="$(mktemp -d /tmp/bagel-bench-read-XXXXXX)"
trap 'rm -rf "$dir"' EXIT
f="$dir/mix.jsonl"
# the seven formats in turn, with some variety in the text
awk -v n="$LINES" 'BEGIN {
  for (i = 0; i < n; i++) {
    k = i % 7; w = "shape " i " of a small red circle on a blue background, seen from above";
    if (k == 0) printf "{\"conversations\":[{\"role\":\"user\",\"type\":\"text\",\"content\":\"Draw a %s\"},{\"role\":\"assistant\",\"type\":\"image\",\"image_path\":\"img/%d.png\"}]}\n", w, i;
    else if (k == 1) printf "{\"sequence\":[{\"type\":\"text\",\"content\":\"%s\",\"loss\":false},{\"type\":\"image\",\"image_path\":\"img/%d.png\",\"loss\":true,\"gen\":true,\"und\":false}]}\n", w, i;
    else if (k == 2) printf "{\"prompt\":\"%s\",\"image_path\":\"img/%d.png\"}\n", w, i;
    else if (k == 3) printf "{\"image_path\":\"img/%d.png\",\"caption\":\"%s\",\"prompt\":\"Describe the image.\"}\n", i, w;
    else if (k == 4) printf "{\"input_image\":\"img/%d.png\",\"editing_steps\":[{\"instruction\":\"Make it green\",\"result_image\":\"img/%d_a.png\"},{\"instruction\":\"Move it left\",\"result_image\":\"img/%d_b.png\"}]}\n", i, i, i;
    else if (k == 5) printf "{\"interleaved\":[{\"type\":\"text\",\"content\":\"Step 1: %s\"},{\"type\":\"image\",\"image_path\":\"img/%d_1.png\"},{\"type\":\"text\",\"content\":\"Step 2: fill it\"},{\"type\":\"image\",\"image_path\":\"img/%d_2.png\"}]}\n", w, i, i;
    else printf "{\"image\":\"img/%d.png\",\"conversations\":[{\"from\":\"human\",\"value\":\"<image>\\nWhat is in the picture?\"},{\"from\":\"gpt\",\"value\":\"A %s.\"}]}\n", i, w;
  } }' >"$f"
bytes=$(stat -c %s "$f")

# best of 3 wall-clock seconds
best() {
    local b=0
    for _ in 1 2 3; do
        local t0 t1
        t0=$(date +%s%N)
        "$@"
        t1=$(date +%s%N)
        if ((b == 0 || t1 - t0 < b)); then b=$((t1 - t0)); fi
    done
    awk -v ns="$b" 'BEGIN { printf "%.4f", ns / 1e9 }'
}
t_read=$(best "$bin" -q "$f" --out /dev/null)
t_jq=$(best sh -c "jq -c . '$f' >/dev/null")
n=$("$BUILD/bin/bagel-cat" --count <("$bin" -q "$f") | sed -n 's/.*"sample":\([0-9]*\).*/\1/p')
[[ "$n" == "$LINES" ]] || { echo "read.sh: expected $LINES samples, got $n" >&2; exit 1; }

cpu="$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -n 1 || true)"
echo "# bench-read on $(hostname 2>/dev/null || echo '?'): $(nproc) CPUs, ${cpu:-unknown CPU}, $(uname -sr)"
echo "# $(date -u '+%Y-%m-%d %H:%M:%S UTC'); $LINES lines, $((bytes / 1000000)) MB, the 7 formats in turn; best of 3"
awk -v n="$LINES" -v b="$bytes" -v tr="$t_read" -v tj="$t_jq" 'BEGIN {
  printf "bagel-read  %10.0f lines/s  %7.1f MB/s  %.3f s\n", n / tr, b / tr / 1e6, tr;
  printf "jq -c .     %10.0f lines/s  %7.1f MB/s  %.3f s\n", n / tj, b / tj / 1e6, tj;
  printf "ratio       %10.2fx jq (goal: >= 1)\n", tj / tr }'
