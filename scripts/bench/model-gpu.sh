#!/usr/bin/env bash
# model-gpu.sh — issue 8's benchmark on the GPU machine: one training step on
# the recipe batch (one packed sequence of ~10.8k tokens: 2 text-to-image,
# 2 VLM, 1 edit, 1 long text sample; tests/reference/bench_ref.py recipe),
# bagelpipe (bench-model --train, bf16 and fp32) beside the PyTorch peer
# (tests/reference/bench_torch_gpu.py, eager and torch.compile) on the same
# GPU in the same run, and one table: step ms, tokens/s, peak memory, model
# TFLOP/s, MFU over the bf16 matmul rate PyTorch measures here, the loss of
# the first step (both sides start from FORMAT.md's weights, so it agrees to
# bf16 rounding). docs/model.md, "Benchmark: the recipe batch".
#
# Usage (repository root of the copy on the GPU machine, gpu-bundle carried):
#   scripts/bench/model-gpu.sh [CONFIG[:LAYERS] ...]
#   scripts/gpu-run.sh -- scripts/bench/model-gpu.sh [CONFIG[:LAYERS] ...]
# Default configs: bagel-0.5b-mot (full) and bagel-7b-mot:4 (4 LLM layers).
#
# Environment:
#   OUT           results and logs (default ./gpu-out): $OUT/model-gpu/
#                 {logs/*.log, table.tsv, table.txt}
#   CASES         where the cases go (default ${TMPDIR:-/tmp}/bagel-model-gpu:
#                 13 MB each, made again in seconds, not worth carrying back)
#   SIDES         which runs, in this order (default "bf16 eager compile fp32")
#   ITERS         timed steps per run (default 5); WARMUP steps before them
#                 (default 2; the compiled peer takes at least 3)
#   BUDGET        seconds for the whole script (default 540): a run that
#                 would start with less than 30 s left is skipped, and each
#                 run's timeout is cut to what is left, so the table is always
#                 printed inside a 10-minute device command
#   SIDE_TIMEOUT  seconds per run (default 300)
#   GPU_BUNDLE    the bundle (default gpu-bundle)
#   BENCH         bench-model (default $GPU_BUNDLE/build/tools/bench-model,
#                 else build/tools/bench-model)
#   PYTHON        the Python with PyTorch (default: gpu-bundle/host-env python3
#                 when the bundle is there, else python3)
#   DEVICE        cuda (default); cpu with SCALE > 1 for a dry run elsewhere
#   SCALE         shrinks the recipe's lengths and image sides (default 1)
# A failing run (out of memory, time-out, compile error) is a row saying so;
# the other runs go on. Exit 0 when every run that was not skipped succeeded.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
T_START=$SECONDS
OUT=${OUT:-./gpu-out}
SIDES=${SIDES:-bf16 eager compile fp32}
ITERS=${ITERS:-5}
WARMUP=${WARMUP:-2}
BUDGET=${BUDGET:-540}
SIDE_TIMEOUT=${SIDE_TIMEOUT:-300}
DEVICE=${DEVICE:-cuda}
SCALE=${SCALE:-1}
configs=("$@")
[[ ${#configs[@]} -gt 0 ]] || configs=(bagel-0.5b-mot bagel-7b-mot:4)

DIR=$OUT/model-gpu
CASES=${CASES:-${TMPDIR:-/tmp}/bagel-model-gpu}
mkdir -p "$CASES" "$DIR/logs" || { echo "model-gpu: cannot write $DIR or $CASES" >&2; exit 1; }

# the bundle (scripts/gpu-bundle.sh): executables unpacked, libraries sourced
# shellcheck source=scripts/bench/bundle-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/bundle-env.sh"
bundle_env model-gpu "$DIR/logs"
if [[ -z "${BENCH:-}" ]]; then
    BENCH=$BUNDLE/build/tools/bench-model
    [[ -x "$BENCH" ]] || BENCH=build/tools/bench-model
fi
if [[ -n "${PYTHON:-}" ]]; then
    read -r -a PY <<<"$PYTHON"
elif [[ -x "$BUNDLE/host-env" ]]; then
    PY=("$BUNDLE/host-env" python3)
else
    PY=(python3)
fi

echo "model-gpu: $(date -u +%Y-%m-%dT%H:%M:%SZ) configs=${configs[*]} sides=\"$SIDES\" iters=$ITERS warmup=$WARMUP device=$DEVICE scale=$SCALE budget=${BUDGET}s"
echo "model-gpu: bench-model $BENCH; python ${PY[*]}; logs in $DIR/logs"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/model-gpu: gpu: /'
fi
[[ -x "$BENCH" ]] || echo "model-gpu: $BENCH is missing: the bagelpipe runs will fail (bundle with scripts/gpu-bundle.sh)"

left() { echo $((BUDGET - (SECONDS - T_START))); }
kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2" | tail -n 1; }

# run NAME LOG CMD...: the command under the remaining budget, its output in LOG
run() {
    local name=$1 log=$2 t
    shift 2
    t=$(left)
    ((t > SIDE_TIMEOUT)) && t=$SIDE_TIMEOUT
    if ((t < 30)); then
        echo "model-gpu: $name: skipped, $(left) s of the budget left" | tee "$log"
        return 200
    fi
    echo "model-gpu: $name: $* (timeout ${t}s)"
    local t0=$SECONDS rc=0
    timeout -k 10 "$t" "$@" >"$log" 2>&1 || rc=$?
    echo "model-gpu: $name: exit $rc after $((SECONDS - t0)) s"
    [[ $rc -eq 124 || $rc -eq 137 ]] && echo "model-gpu: $name: timed out after ${t}s" >>"$log"
    return $rc
}

TSV=$DIR/table.tsv
printf 'config\tside\tstep_ms\ttokens_per_s\tmem_gib\ttflops\tmfu\tfirst_loss\tstatus\n' >"$TSV"
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$TSV"; }
failed=0

# the bf16 matmul rate, once, for bagelpipe's MFU (each PyTorch run prints its own too)
rc=0
run "matmul rate" "$DIR/logs/rate.log" "${PY[@]}" tests/reference/bench_torch_gpu.py --rate --device "$DEVICE" || rc=$?
PEAK=$(sed -n 's/.*: \([0-9.e+-]*\) TFLOP\/s (median of 10).*/\1/p' "$DIR/logs/rate.log" | tail -n 1)
if [[ -z "$PEAK" ]]; then
    echo "model-gpu: no matmul rate (exit $rc; $DIR/logs/rate.log): bagelpipe's MFU will read 0"
    tail -n 5 "$DIR/logs/rate.log" | sed 's/^/  /'
    PEAK=0
    failed=1
else
    echo "model-gpu: matmul rate $PEAK TFLOP/s (bf16 on the GPU; MFU is over it)"
fi

for spec in "${configs[@]}"; do
    cfg=${spec%%:*}
    layers=0
    [[ "$spec" == *:* ]] && layers=${spec#*:}
    tag=$(basename "$cfg" .json)$([[ $layers -gt 0 ]] && echo "-${layers}l")$([[ $SCALE -gt 1 ]] && echo "-s$SCALE")
    case_file=$CASES/recipe-$tag.json
    echo "model-gpu: ---- $tag"
    rc=0
    run "$tag case" "$DIR/logs/$tag-case.log" "${PY[@]}" tests/reference/bench_ref.py recipe "$cfg" "$layers" "$case_file" "$SCALE" || rc=$?
    sed 's/^/  /' "$DIR/logs/$tag-case.log"
    if [[ $rc -ne 0 || ! -s "$case_file" ]]; then
        row "$tag" all - - - - - - "case failed (exit $rc)"
        failed=1
        continue
    fi
    # the FLOPs count, once in Python and once in C, on the same case
    pyf=$("${PY[@]}" tests/reference/bench_ref.py flops "$case_file" 2>&1 | grep '^flops ' || true)
    cf=$("$BENCH" "$case_file" --count 2>&1 | grep '^flops ' || true)
    echo "  python: $pyf"
    echo "  c:      $cf"
    if [[ -n "$pyf" && "$pyf" == "$cf" ]]; then
        echo "  the two FLOPs counts agree"
    else
        echo "  the FLOPs counts DIFFER (or one is missing)"
        failed=1
    fi

    for side in $SIDES; do
        log=$DIR/logs/$tag-$side.log
        rc=0
        case $side in
            bf16 | fp32)
                run "$tag bagelpipe-$side" "$log" "$BENCH" "$case_file" "$ITERS" "$DEVICE" "$side" --train \
                    --warmup "$WARMUP" --peak "$PEAK" || rc=$?
                line=$(grep '^bench-model mode=train' "$log" | tail -n 1)
                name=bagelpipe-$side
                ;;
            eager | compile)
                w=$WARMUP
                [[ $side == compile && $w -lt 3 ]] && w=3
                extra=()
                [[ $side == compile ]] && extra=(--compile)
                run "$tag torch-$side" "$log" "${PY[@]}" tests/reference/bench_torch_gpu.py "$case_file" "$ITERS" \
                    "${extra[@]}" --warmup "$w" --device "$DEVICE" || rc=$?
                line=$(grep '^bench-torch ' "$log" | tail -n 1)
                name=torch-$side
                if [[ $side == compile && -n "$line" && "$(kv mode "$line")" != compile ]]; then
                    name="torch-compile($(kv mode "$line"))"
                fi
                ;;
            *)
                echo "model-gpu: unknown side '$side' (bf16 fp32 eager compile)"
                failed=1
                continue
                ;;
        esac
        if [[ $rc -eq 0 && -n "$line" ]]; then
            # MFU over the one rate measured above for every side (the peer
            # measures its own as well; its mfu field is over that one)
            mfu=$(awk -v t="$(kv tflops "$line")" -v p="$PEAK" -v own="$(kv mfu "$line")" \
                'BEGIN { if (p + 0 > 0) printf "%.2f", 100 * t / p; else print own }')
            row "$tag" "$name" "$(kv step_ms "$line")" "$(kv tokens_per_s "$line")" "$(kv mem_gib "$line")" \
                "$(kv tflops "$line")" "$mfu" "$(kv first_loss "$line")" ok
        else
            if [[ $rc -eq 200 ]]; then
                why="skipped (budget)"
            elif [[ $rc -eq 124 || $rc -eq 137 ]]; then
                why="timed out"
                failed=1
            else
                why="failed (exit $rc): $(grep -iE 'error|out of memory|failed|bench-model:' "$log" | tail -n 1 | cut -c1-100)"
                failed=1
            fi
            row "$tag" "$name" - - - - - - "$why"
            echo "  last lines of $log:"
            tail -n 6 "$log" | sed 's/^/    /'
        fi
    done
done

TXT=$DIR/table.txt
{
    echo "model-gpu: the recipe batch, one training step (forward, backward, clip, AdamW, EMA; fp32 master weights)"
    echo "model-gpu: MFU = model FLOPs / step time / the bf16 matmul rate measured here ($PEAK TFLOP/s)"
    column -t -s $'\t' "$TSV" 2>/dev/null || cat "$TSV"
} >"$TXT"
cat "$TXT"
echo "model-gpu: done in $((SECONDS - T_START)) s, exit $failed; table in $TSV"
exit $failed
