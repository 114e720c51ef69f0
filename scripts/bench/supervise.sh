#!/usr/bin/env bash
# supervise.sh — what the supervisor and the ZeroMQ transport cost: the
# end-to-end samples/s of read | tokenize | image (the synthetic dataset,
# a sink counting into /dev/null) run by scripts/bagel-supervise with 1, 2
# and all cores' worth of tokenize and image replicas, beside the limit the
# stages' own work sets: each stage alone (file in, /dev/null out, one
# process) gives its seconds per sample; with R replicas on C cores the
# pipeline can go no faster than bagel-read alone, R times the slowest
# replicated stage alone, nor C cores divided by the three stages' summed
# cost. The ratio pipeline/limit is what is left after supervision and
# transport (goal: over 0.90). Best of REPEAT runs (default 3).
# Usage: supervise.sh [LINES_PER_FORMAT] (default 400, x7 formats x EPOCHS 4).
set -euo pipefail
BUILD="${BUILD:-build}"
N="${1:-400}"
EPOCHS="${EPOCHS:-4}"
REPEAT="${REPEAT:-3}"
BIN="$PWD/$BUILD/bin"
CORES=$(nproc)
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
for b in read tokenize image cat synth; do
    [ -x "$BIN/bagel-$b" ] || { echo "supervise.sh: $BIN/bagel-$b: not built; run make BUILD=$BUILD" >&2; exit 1; }
done
TOKF=$(scripts/fetch-tokenizer.sh)
dir=$(mktemp -d /tmp/bagel-bench-sup-XXXXXX)
trap 'rm -rf "$dir"' EXIT
"$BIN/bagel-synth" -q --out "$dir/shapes" --seed 7 --count "$N"
IMGOPT="--vae-max 128 --vae-min 64 --vit-max 112 --vit-min 56"
now() { date +%s.%N; }
best() { # best CMD...: the shortest wall time of REPEAT runs, seconds
    local b="" t0 t1 t
    for _ in $(seq "$REPEAT"); do
        t0=$(now)
        "$@" >/dev/null 2>&1
        t1=$(now)
        t=$(echo "$t1 - $t0" | bc -l)
        if [ -z "$b" ] || [ "$(echo "$t < $b" | bc -l)" = 1 ]; then b=$t; fi
    done
    echo "$b"
}
# the stages' inputs as files, so that each runs alone
"$BIN/bagel-read" -q --root "$dir/shapes" --epochs "$EPOCHS" "$dir"/shapes/*.jsonl --out "$dir/read.rec"
"$BIN/bagel-tokenize" -q --tokenizer "$TOKF" --in "$dir/read.rec" --out "$dir/tok.rec"
S=$("$BIN/bagel-cat" --count "$dir/read.rec" | sed -E 's/.*"sample":([0-9]+).*/\1/')
t_read=$(best "$BIN/bagel-read" -q --root "$dir/shapes" --epochs "$EPOCHS" "$dir"/shapes/*.jsonl --out /dev/null)
t_tok=$(best "$BIN/bagel-tokenize" -q --tokenizer "$TOKF" --in "$dir/read.rec" --out /dev/null)
# shellcheck disable=SC2086
t_img=$(best "$BIN/bagel-image" -q --root "$dir/shapes" $IMGOPT --in "$dir/tok.rec" --out /dev/null)
cat >"$dir/p.toml" <<EOT
[pipeline]
name = "bench"
delivery = true
[[stage]]
name = "read"
command = "bagel-read -q --root $dir/shapes --epochs $EPOCHS $dir/shapes/*.jsonl"
[[stage]]
name = "tokenize"
command = "bagel-tokenize --progress off --tokenizer $TOKF"
replicas = \${r}
[[stage]]
name = "image"
command = "bagel-image --progress off --root $dir/shapes $IMGOPT"
replicas = \${r}
[[stage]]
name = "sink"
command = "bagel-cat --raw --progress off --expect-ends $((7 * EPOCHS))"
output = "/dev/null"
EOT
echo "bench-supervise: $S samples (synthetic shapes, $N lines x 7 formats x $EPOCHS epochs), $CORES cores, best of $REPEAT"
printf 'alone, one process: read %.0f/s, tokenize %.0f/s, image %.0f/s\n' \
    "$(echo "$S / $t_read" | bc -l)" "$(echo "$S / $t_tok" | bc -l)" "$(echo "$S / $t_img" | bc -l)"
printf '%-9s %14s %14s %7s\n' replicas "pipeline/s" "limit/s" ratio
for r in 1 2 "$CORES"; do
    [ "$r" = 2 ] && [ "$CORES" = 2 ] && [ -n "${done2:-}" ] && continue
    [ "$r" = 2 ] && done2=1
    sed "s/\${r}/$r/" "$dir/p.toml" >"$dir/p$r.toml"
    t=$(best env BAGEL_BIN="$BIN" "$PY" scripts/bagel-supervise "$dir/p$r.toml" --dir "$dir/run$r" -q --status-every 0)
    lim=$(echo "x = $S / $t_read; y = $r * $S / ($t_tok + 0); if (y < x) x = y; y = $r * $S / $t_img; if (y < x) x = y;
                y = $CORES * $S / ($t_read + $t_tok + $t_img); if (y < x) x = y; x" | bc -l)
    rate=$(echo "$S / $t" | bc -l)
    printf '%-9s %14.0f %14.0f %7.2f\n' "$r" "$rate" "$lim" "$(echo "$rate / $lim" | bc -l)"
done
