#!/usr/bin/env bash
# attn-gpu.sh — on the GPU machine: bagelpipe's attention (BAGEL's masks on
# the recipe packing, and plain causal) and linear layers (build/tools/
# bench-attn) beside PyTorch's cuDNN and flash attention on the same causal
# size and its bf16 matmuls (scripts/bench/attn_torch.py), in one run.
# Usage: attn-gpu.sh [ITERS]; FWD_SWEEP (default "sync bn64") also times the
# other kernels (the mma.sync ones, the wgmma forward with 64-key tiles); FA_SWEEP="NW/MB ..." also times those variants
# of the mma.sync kernels (cuda_flash.cu): NW and MB each "F,Q,KV" (forward,
# dQ, dK/dV), as BAGEL_FA_NW (warps a block) and BAGEL_FA_MB (blocks a
# multiprocessor, the register cap); NS_SWEEP="F,Q,KV ..." times the wgmma
# kernels with those ring depths (BAGEL_FA_NS, 2 to 4 stages; as many as fit
# in shared memory); BUILD (default gpu-bundle/build) names the
# executables, PY the PyTorch python (default: gpu-bundle/host-env python3).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BUILD=${BUILD:-gpu-bundle/build}
ITERS=${1:-10}
if [[ -z "${PY:-}" ]]; then
    if [[ -x gpu-bundle/host-env ]]; then PY="gpu-bundle/host-env python3"; else PY=python3; fi
fi
ours=$("$BUILD/tools/bench-attn" "$ITERS" 2>&1)
echo "$ours"
# the block-shape variants of the mma.sync kernels
for v in ${FA_SWEEP:-}; do
    nw=${v%%/*} mb=${v#*/}
    echo "attn-gpu: BAGEL_FA_NW=$nw BAGEL_FA_MB=$mb (mma.sync)"
    BAGEL_FA_FWD=sync BAGEL_FA_BWD=sync BAGEL_FA_NW=$nw BAGEL_FA_MB=$mb "$BUILD/tools/bench-attn" "$ITERS" bf16 2>&1 |
        grep '^attn recipe'
done
# the wgmma kernels' ring depths
for v in ${NS_SWEEP:-}; do
    echo "attn-gpu: BAGEL_FA_NS=$v (stages of the forward's, dQ's and dK/dV's rings)"
    BAGEL_FA_NS=$v "$BUILD/tools/bench-attn" "$ITERS" bf16 2>&1 | grep '^attn'
done
# the other kernels, for comparison: the mma.sync ones (BAGEL_FA_FWD=sync,
# BAGEL_FA_BWD=sync) and the wgmma forward with 64-key tiles
for v in ${FWD_SWEEP-sync bn64}; do
    case $v in
    sync) echo "attn-gpu: BAGEL_FA_FWD=sync BAGEL_FA_BWD=sync (the mma.sync kernels)"
        BAGEL_FA_FWD=sync BAGEL_FA_BWD=sync "$BUILD/tools/bench-attn" "$ITERS" bf16 2>&1 | grep '^attn' ;;
    bn64) echo "attn-gpu: BAGEL_FA_WG_BN=64 (the wgmma forward, 64-key tiles)"
        BAGEL_FA_WG_BN=64 "$BUILD/tools/bench-attn" "$ITERS" bf16 2>&1 | grep '^attn' ;;
    esac
done
S=$(sed -n 's/^attn causal S=\([0-9]*\).*/\1/p' <<<"$ours" | head -n1)
peer=$($PY scripts/bench/attn_torch.py "${S:-10727}" "$ITERS" 2>&1)
echo "$peer"
echo "attn-gpu: the linears with BAGEL_GEMM=fast16bf (cuBLAS rounds the fp32 operands itself)"
BAGEL_GEMM=fast16bf "$BUILD/tools/bench-attn" "$ITERS" linear 2>&1 | grep '^linear'
# ratios: our bf16 fwd+bwd on BAGEL's masks and on causal over cuDNN causal
for d in 64 128; do
    cud=$(sed -n "s/^torch attn causal .* d=$d cudnn .*fwd+bwd [0-9.]* ms \([0-9.]*\) TFLOP.*/\1/p" <<<"$peer")
    for pk in recipe causal; do
        o=$(sed -n "s/^attn $pk *S=.* d=$d bf16 .*fwd+bwd [0-9.]* ms \([0-9.]*\) TFLOP.*/\1/p" <<<"$ours")
        [[ -n "$cud" && -n "$o" ]] && awk -v o="$o" -v c="$cud" -v pk="$pk" -v d="$d" \
            'BEGIN { printf "attn-gpu: d=%s %s bf16 fwd+bwd %.1f TFLOP/s = %.2f of cuDNN causal (%.1f)\n", d, pk, o, o / c, c }'
    done
done
# the ViT's images: ours against cuDNN's and flash's per-image calls
for be in cudnn flash; do
    p=$(sed -n "s/^torch attn vit .* $be .*fwd+bwd [0-9.]* ms \([0-9.]*\) TFLOP.*/\1/p" <<<"$peer")
    o=$(sed -n "s/^attn vit *S=.* bf16 .*fwd+bwd [0-9.]* ms \([0-9.]*\) TFLOP.*/\1/p" <<<"$ours")
    [[ -n "$p" && -n "$o" ]] && awk -v o="$o" -v p="$p" -v be="$be" \
        'BEGIN { printf "attn-gpu: vit images bf16 fwd+bwd %.1f TFLOP/s = %.2f of %s per image (%.1f)\n", o, o / p, be, p }'
done
