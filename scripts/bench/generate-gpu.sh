#!/usr/bin/env bash
# generate-gpu.sh — issue 12's benchmark on the GPU machine: text decoding
# (batch 1 and 16) and 1024x1024 text-to-image at 50 timesteps with guidance,
# for bagel-0.5b-mot and bagel-7b-mot with 4 layers, bagelpipe's inference
# engine (build/tools/bench-generate, bf16) beside the PyTorch peer
# (tests/reference/gen_bench_gpu.py: the official inferencer's path in bf16)
# in the same run on the same GPU. Prints both JSON streams, then one table
# with the ratios (bagelpipe / PyTorch: tokens/s, and s/image inverted).
# docs/generate.md, "Benchmark".
#
# Usage (repository root of the copy on the GPU machine, gpu-bundle carried):
#   scripts/bench/generate-gpu.sh
# Environment: OUT (default ./gpu-out; results in $OUT/generate-gpu/),
#   CONFIGS (default "bagel-0.5b-mot bagel-7b-mot:4"), PYTHON (default: gpu-bundle/host-env python3
#   where the bundle has it, else python3),
#   ITERS (3), SIDE_TIMEOUT (seconds per side and config, default 240),
#   DEVICE (cuda; "cpu" with CONFIGS=tiny runs a smoke test anywhere).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
OUT=${OUT:-./gpu-out}
CONFIGS=${CONFIGS:-bagel-0.5b-mot bagel-7b-mot:4}
ITERS=${ITERS:-3}
SIDE_TIMEOUT=${SIDE_TIMEOUT:-240}
DEVICE=${DEVICE:-cuda}
D="$OUT/generate-gpu"
mkdir -p "$D/logs"
# shellcheck source=bundle-env.sh
source scripts/bench/bundle-env.sh
bundle_env generate-gpu "$D/logs"
BIN=${BIN:-$BUNDLE/build/tools}
[[ -x "$BIN/bench-generate" ]] || BIN=build/tools
# the machine's own python3 (PyTorch) must not load the bundle's libraries
PY=(${PYTHON:-python3})
[[ -z "${PYTHON:-}" && -x "$BUNDLE/host-env" ]] && PY=("$BUNDLE/host-env" python3)
SMOKE=()
[[ $DEVICE == cpu ]] && SMOKE=(--smoke)
: >"$D/results.jsonl"
status=0
for spec in $CONFIGS; do
    echo "generate-gpu: $spec: bagelpipe"
    timeout "$SIDE_TIMEOUT" "$BIN/bench-generate" --device "$DEVICE" --iters "$ITERS" "${SMOKE[@]}" "$spec" \
        2>"$D/logs/bagelpipe-${spec/:/-}.log" | tee -a "$D/results.jsonl" || { echo "generate-gpu: $spec: bagelpipe failed (see logs)"; status=1; }
    echo "generate-gpu: $spec: pytorch"
    timeout "$SIDE_TIMEOUT" "${PY[@]}" tests/reference/gen_bench_gpu.py --device "$DEVICE" --iters "$ITERS" "${SMOKE[@]}" \
        --config "$spec" 2>"$D/logs/pytorch-${spec/:/-}.log" | tee -a "$D/results.jsonl" || { echo "generate-gpu: $spec: pytorch failed (see logs)"; status=1; }
done
"${PY[@]}" - "$D/results.jsonl" <<'PYEOF' | tee "$D/table.txt"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def key(r):
    if r["measure"] == "text_decode":
        return (r["config"].split(":")[0], r["layers"], "text batch %d" % r["batch"])
    if r["measure"] == "image":
        return (r["config"].split(":")[0], r["layers"], "image %s" % r["variant"])
    return None
by = {}
for r in rows:
    k = key(r)
    if k:
        by.setdefault(k, {})[r["peer"]] = r
print("%-16s %6s %-26s %14s %14s %8s" % ("config", "layers", "measure", "bagelpipe", "pytorch", "ratio"))
for k, v in by.items():
    b, p = v.get("bagelpipe"), v.get("pytorch")
    if k[2].startswith("text"):
        f = lambda r: r["tokens_per_s"]
        unit = "tok/s"
        ratio = (f(b) / f(p)) if b and p else float("nan")
    else:
        f = lambda r: r["s_per_image"]
        unit = "s/image"
        ratio = (f(p) / f(b)) if b and p else float("nan")
    fmt = lambda r: ("%.2f %s" % (f(r), unit)) if r else "-"
    print("%-16s %6s %-26s %14s %14s %7.2fx" % (k[0], k[1], k[2], fmt(b), fmt(p), ratio))
PYEOF
exit $status
