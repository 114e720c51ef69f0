#!/usr/bin/env bash
# supervise.sh — what the supervisor and the ZeroMQ transport cost: the
# end-to-end samples/s of read | tokenize | image (the synthetic dataset,
# into a sink that takes, de-duplicates and counts the records, bagel-cat
# --count, as a trainer takes them; a relay writing them out again, bagel-cat
# --raw, would add a stage's work of its own: 20% more CPU in the sink) run
# by scripts/bagel-supervise with 1, 2
# and all cores' worth of tokenize and image replicas, beside the limit the
# stages' own work sets at that width: each stage alone (file in, /dev/null
# out), R copies of each replicated stage at once for width R, gives its
# seconds per sample; with R replicas on C cores the pipeline can go no
# faster than bagel-read alone, R copies of the slowest replicated stage,
# nor C cores divided by the three stages' summed cost. The ratio
# pipeline/limit is what is left after supervision and transport (goal:
# over 0.90). The "ideal" columns scale one copy alone instead, as if a
# loaded machine ran each core as fast as an idle one. Best of REPEAT runs
# (default 3); at each width the stages alone and the pipeline take turns,
# so that a drift in the machine's speed reaches both.
# Each stage alone reads EPOCHS passes over the data; the pipeline with R
# replicas reads R times as many, so that every run lasts about as long and
# start-up and shutdown weigh alike (a run of a few seconds measures mostly
# those: the first version of this script, at 11,200 samples for every
# width, read 0.19 at 16 replicas on 16 cores).
# Usage: supervise.sh [LINES_PER_FORMAT] (default 400, x7 formats x EPOCHS,
# default 16).
# Knobs: REPLICAS (the widths, default "1 2 <cores>"), TOK_REPLICAS (the
# tokenize replicas when fewer than the width: tokenize runs some twenty
# times faster than image, so a pipeline sized by cost gives nearly every
# core to image; the limit then counts that many tokenize copies), WINDOW
# (the pipeline's ack_window, default the supervisor's), STAGE_ARGS (more
# options for every pipeline stage, e.g. "--hwm 256"), SNAPSHOT=DIR (SNAPSHOT_AT seconds,
# default 8, into each pipeline run, every thread's CPU share by `ps` and
# `top` into DIR/ps-rR.txt and DIR/top-rR.txt: which process is the ceiling),
# SHM (the pipeline's BAGEL_IPC_SHM settings, each run beside the same limit:
# default "on"; "on off" measures what shared memory between the processes
# gives, docs/ipc.md).
set -euo pipefail
BUILD="${BUILD:-build}"
N="${1:-400}"
EPOCHS="${EPOCHS:-32}"
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
calc() { awk "BEGIN { printf \"%.6f\", ($1) }"; } # calc EXPR; no bc on every machine
once() { # once CMD...: the wall time of one run, seconds
    local t0 t1
    t0=$(now)
    "$@" >/dev/null 2>&1
    t1=$(now)
    calc "$t1 - $t0"
}
minf() { # minf A B: the smaller, or B when A is empty
    if [ -z "$1" ] || [ "$(calc "$2 < $1")" = 1.000000 ]; then echo "$2"; else echo "$1"; fi
}
best() { # best CMD...: the shortest wall time of REPEAT runs, seconds
    local b=""
    for _ in $(seq "$REPEAT"); do b=$(minf "$b" "$(once "$@")"); done
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
${WINDOW:+ack_window = $WINDOW}
[[stage]]
name = "read"
command = "bagel-read -q --root $dir/shapes --epochs \${e} $dir/shapes/*.jsonl ${STAGE_ARGS:-}"
[[stage]]
name = "tokenize"
command = "bagel-tokenize --progress off --tokenizer $TOKF ${STAGE_ARGS:-}"
replicas = \${rt}
[[stage]]
name = "image"
command = "bagel-image --progress off --root $dir/shapes $IMGOPT ${STAGE_ARGS:-}"
replicas = \${r}
[[stage]]
name = "sink"
command = "bagel-cat --count --progress off --expect-ends \${ends} ${STAGE_ARGS:-}"
EOT
echo "bench-supervise: $S samples alone (synthetic shapes, $N lines x 7 formats x $EPOCHS epochs), R times as many with R replicas, $CORES cores, best of $REPEAT"
printf 'alone, one process: read %.0f/s, tokenize %.0f/s, image %.0f/s\n' \
    "$(calc "$S / $t_read")" "$(calc "$S / $t_tok")" "$(calc "$S / $t_img")"
printf '%-9s %-4s %14s %14s %7s %14s %7s\n' replicas shm "pipeline/s" "limit/s" ratio "ideal/s" ratio
limit() { # limit T_TOK T_IMG: bagel-read alone, rt copies of tokenize and r of image, or the cores
    awk -v S="$S" -v r="$r" -v rt="$rt" -v c="$CORES" -v a="$t_read" -v b="$1" -v i="$2" 'BEGIN {
        x = S / a; y = rt * S / b; if (y < x) x = y; y = r * S / i; if (y < x) x = y
        y = c * S / (a + b + i); if (y < x) x = y; printf "%.6f", x }'
}
copies() { # copies R CMD...: R copies of CMD at once, waited for
    local n=$1
    shift
    for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 & done
    wait
}
snap() { # snap R: one snapshot of every thread, SNAPSHOT_AT seconds from now
    sleep "${SNAPSHOT_AT:-8}"
    ps -eLo pid,tid,pcpu,time,psr,comm,args --sort=-pcpu 2>&1 | cut -c1-160 >"$SNAPSHOT/ps-r$1.txt" || true
    top -b -H -n 2 -d 2 -w 250 >"$SNAPSHOT/top-r$1.txt" 2>&1 || true
}
for r in ${REPLICAS:-1 2 $CORES}; do
    [ "$r" = 2 ] && [ "$CORES" = 2 ] && [ -n "${done2:-}" ] && continue
    [ "$r" = 2 ] && done2=1
    # r times the epochs with r replicas: every run lasts about as long, so
    # that starting and stopping weigh the same at every width
    e=$((EPOCHS * r))
    rt=$r
    [ -n "${TOK_REPLICAS:-}" ] && [ "$TOK_REPLICAS" -lt "$r" ] && rt=$TOK_REPLICAS
    sed "s/\${rt}/$rt/; s/\${r}/$r/; s/\${e}/$e/; s/\${ends}/$((7 * e))/" "$dir/p.toml" >"$dir/p$r.toml"
    # the stages alone at this width (rt copies of tokenize and r of image
    # at once, each over the whole file: a loaded machine runs each core
    # slower than an idle one: turbo, shared caches and memory) and the
    # pipeline, one after the other, REPEAT times, the best of each: this
    # host's speed drifts by a tenth and more over minutes, and all the
    # stage runs first and all the pipeline runs after would see different
    # machines
    tt="" ti=""
    declare -A tp=()
    for i in $(seq "$REPEAT"); do
        t=$(once copies "$rt" "$BIN/bagel-tokenize" -q --tokenizer "$TOKF" --in "$dir/read.rec" --out /dev/null)
        tt=$(minf "$tt" "$t")
        t=$(once copies "$r" "$BIN/bagel-image" -q --root "$dir/shapes" $IMGOPT --in "$dir/tok.rec" --out /dev/null)
        ti=$(minf "$ti" "$t")
        for shm in ${SHM:-on}; do
            snapper=""
            if [ -n "${SNAPSHOT:-}" ] && [ "$i" = 1 ]; then
                mkdir -p "$SNAPSHOT"
                snap "$r-$shm" &
                snapper=$!
            fi
            t=$(once env BAGEL_BIN="$BIN" BAGEL_IPC_SHM="$shm" "$PY" scripts/bagel-supervise "$dir/p$r.toml" --dir "$dir/run$r" -q --status-every 0)
            [ -n "$snapper" ] && wait "$snapper"
            tp[$shm]=$(minf "${tp[$shm]:-}" "$t")
        done
    done
    lim=$(limit "$tt" "$ti")
    ideal=$(limit "$t_tok" "$t_img")
    for shm in ${SHM:-on}; do
        rate=$(calc "$S * $r / ${tp[$shm]}")
        printf '%-9s %-4s %14.0f %14.0f %7.2f %14.0f %7.2f\n' "$r" "$shm" "$rate" "$lim" "$(calc "$rate / $lim")" "$ideal" \
            "$(calc "$rate / $ideal")"
    done
    unset tp
    [ "$r" = 1 ] || printf '%-9s alone, at once: %s copies of tokenize %.0f/s, %s of image %.0f/s in all\n' "" \
        "$rt" "$(calc "$rt * $S / $tt")" "$r" "$(calc "$r * $S / $ti")"
done
