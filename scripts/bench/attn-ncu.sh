#!/usr/bin/env bash
# attn-ncu.sh — on the GPU machine: where the wgmma attention kernels' warps
# stall. For each kernel (default: the forward, dQ and dK/dV), Nsight Compute
# profiles its first launch in bench-attn (the recipe packing at head dim
# 64) twice: the stall reasons per issued instruction
# ($OUT/ncu/KERNEL-stalls.txt), and the source page, every SASS instruction
# with its stall samples and executed count ($OUT/ncu/KERNEL.csv), which
# scripts/bench/ncu_sass.py then summarizes (docs/results/attention-notes.md,
# version 13, reads them).
# Usage: attn-ncu.sh [KERNEL ...]; BUILD (default gpu-bundle/build) names the
# executables, NCU the profiler (default: ncu on PATH, else
# /usr/local/cuda/bin/ncu), OUT where the files go (default .), PY a python3.
# The BAGEL_FA_* variables of cuda_flash.cu pass through to the kernels.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
BUILD=${BUILD:-gpu-bundle/build}
OUT=${OUT:-.}
PY=${PY:-python3}
NCU=${NCU:-$(command -v ncu || echo /usr/local/cuda/bin/ncu)}
if [[ ! -x "$NCU" ]]; then
    echo "attn-ncu: no Nsight Compute (ncu) on this machine: set NCU" >&2
    exit 1
fi
kernels=("$@")
[[ ${#kernels[@]} -gt 0 ]] || kernels=(k_fa_fwd_wg k_fa_bwd_dq_wg k_fa_bwd_dkv_wg)
mkdir -p "$OUT/ncu"
stalls='regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,smsp__issue_active.avg.pct_of_peak_sustained_active'
rc=0
for k in "${kernels[@]}"; do
    echo "== $k"
    "$NCU" --kernel-name "regex:$k" --launch-count 1 --metrics "$stalls" "$BUILD/tools/bench-attn" 1 bf16 \
        >"$OUT/ncu/$k-stalls.txt" 2>&1 || rc=1
    grep -E 'stalled|issue_active' "$OUT/ncu/$k-stalls.txt" | awk '$NF + 0 >= 0.1' |
        sed 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//'
    "$NCU" --kernel-name "regex:$k" --launch-count 1 --section SourceCounters --page source --print-source sass \
        --csv "$BUILD/tools/bench-attn" 1 bf16 >"$OUT/ncu/$k.csv" 2>"$OUT/ncu/$k.err" || rc=1
    $PY scripts/bench/ncu_sass.py "$OUT/ncu/$k.csv" 15 || rc=1
done
exit $rc
