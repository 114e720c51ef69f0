#!/usr/bin/env bash
# model.sh — forward + backward of the model on the CPU backend in tokens/s,
# beside the PyTorch reference (tests/reference/bagel_ref.py, float32) on the
# same packed batch with the same number of threads, in the same run. The
# batch mixes text-to-image, VLM and editing samples of the shipped config.
# Usage: model.sh [CONFIG] [TOKENS] [ITERS]  (default tiny 1024 3); BUILD
# picks the build directory. The PyTorch peer needs /usr/bin/python3 with
# Debian's python3-torch; without it only our figure is printed.
set -euo pipefail

BUILD="${BUILD:-build}"
CONFIG="${1:-tiny}"
TOKENS="${2:-1024}"
ITERS="${3:-3}"
BENCH="$BUILD/tools/bench-model"
[[ -x "$BENCH" ]] || { echo "model.sh: $BENCH: not built; run make BUILD=$BUILD" >&2; exit 1; }
THREADS="${THREADS:-$(nproc)}"
export OMP_NUM_THREADS="$THREADS"
# OpenBLAS falls back to its oldest x86-64 kernels on CPUs it cannot name
# (some VMs report a generic "Intel Xeon Processor"); both peers use the same
# OpenBLAS, so the same override applies to both and is printed.
if [[ -z "${OPENBLAS_CORETYPE:-}" ]] && grep -q avx512f /proc/cpuinfo && grep -q "model name.*Xeon(R) Processor$" /proc/cpuinfo; then
    export OPENBLAS_CORETYPE=SkylakeX
fi
echo "model.sh: config=$CONFIG tokens~$TOKENS iters=$ITERS threads=$THREADS cpu=\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')\" OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-auto}"

PY=/usr/bin/python3
case="$BUILD/bench/model-$CONFIG-$TOKENS.json"
mkdir -p "$BUILD/bench"
if ! "$PY" -c 'import torch' 2>/dev/null; then
    echo "model.sh: no PyTorch at $PY (apt-get install python3-torch): the peer is skipped"
    [[ -f "$case" ]] || { echo "model.sh: and no cached case $case to run alone" >&2; exit 0; }
    "$BENCH" "$case" "$ITERS" 2>/dev/null
    exit 0
fi
[[ -f "$case" ]] || "$PY" tests/reference/bench_ref.py case "$CONFIG" "$TOKENS" "$case"
ours=$("$BENCH" "$case" "$ITERS" 2>/dev/null)
peer=$("$PY" tests/reference/bench_ref.py time "$case" "$ITERS" "$THREADS")
echo "$ours"
echo "$peer"
a=$(sed -n 's/.*tokens_per_s=\([0-9]*\).*/\1/p' <<<"$ours")
b=$(sed -n 's/.*tokens_per_s=\([0-9]*\).*/\1/p' <<<"$peer")
la=$(sed -n 's/.*loss=\([0-9.]*\).*/\1/p' <<<"$ours")
lb=$(sed -n 's/.*loss=\([0-9.]*\).*/\1/p' <<<"$peer")
awk -v a="$a" -v b="$b" -v la="$la" -v lb="$lb" 'BEGIN { printf "model.sh: bagelpipe %s tokens/s, PyTorch %s tokens/s, ratio %.2fx (losses %s and %s)\n", a, b, a / b, la, lb }'
