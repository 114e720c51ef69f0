#!/usr/bin/env bash
# encode-gpu.sh — issue 9's benchmark on the GPU machine: images/s that
# bagel-encode turns into posterior moments (the encoder only) with the real
# FLUX autoencoder's shapes (models/configs/bagel-0.5b-mot.json: ch 128,
# ch_mult 1 2 4 4, 2 res blocks, z 16; make-ae's random weights), at 512x512
# and 1024x1024, --batch 1 and 8, --precision bf16 and fp32, beside the
# PyTorch peer of the same network (tests/reference/ae_bench_gpu.py: bf16,
# channels-last, cuDNN with cudnn.benchmark, CUDA events, median) on the same
# GPU in the same run. One table: size, side, batch, images/s, ratio to the
# peer at the same size and batch. docs/encode.md, "Benchmark".
#
# bagel-encode is timed by the wall clock over a stream of N records and one
# of 2N records of the same size; images/s = N / (t(2N) - t(N)), so start-up
# (CUDA, cuBLAS, loading ae.safetensors, the first allocation) cancels. The
# records are synthetic (random pixels: the encoder's cost does not depend on
# them), written by the peer's "records" mode in plain Python.
#
# Usage (repository root of the copy on the GPU machine, gpu-bundle carried):
#   scripts/bench/encode-gpu.sh
#   scripts/gpu-run.sh -- scripts/bench/encode-gpu.sh
#
# Environment:
#   OUT           results and logs (default ./gpu-out): $OUT/encode-gpu/
#                 {logs/*.log, table.tsv, table.txt}
#   CASES         ae.safetensors, the record files and the latents (default
#                 ${TMPDIR:-/tmp}/bagel-encode-gpu; ~0.5 GB, made again in seconds)
#   SIZES         image sides (default "512 1024")
#   BATCHES       --batch values (default "1 8")
#   SIDES         which runs, in this order (default "torch bf16 fp32"); also
#                 bf16-fma (BAGEL_CONV=fma: FMA-math convolutions in bf16 mode),
#                 bf16-tf32 (BAGEL_CONV=tf32: fp32 NCHW tensors to cuDNN's
#                 tensor cores) and bf16-fused (BAGEL_ATTN_DENSE=0: the fused
#                 attention kernel for the mid-block), to measure what each
#                 choice gives
#   PROFILE       1 (default on cuda): after the table, one bf16 run a size at
#                 batch 1 with BAGEL_PROFILE=1, its per-op times in
#                 $OUT/encode-gpu/profile-<size>.txt
#   N_512, N_1024 N per size (defaults 576 and 144, so that t(2N) - t(N) is
#                 a few seconds, well above the start-up's jitter: with 192,
#                 one run read 280 images/s where the stage's own clock said
#                 145; other sizes: N_<side>, else 16)
#   ITERS, WARMUP the peer's timed and untimed forwards per case (default 10, 3)
#   BUDGET        seconds for the whole script (default 280): a run that would
#                 start with less than 20 s left is skipped, each run's timeout
#                 is cut to what is left, and the table is always printed
#   SIDE_TIMEOUT  seconds per run (default 120)
#   CONFIG        the model config (default models/configs/bagel-0.5b-mot.json)
#   GPU_BUNDLE    the bundle (default gpu-bundle)
#   BIN           where bagel-encode is (default $GPU_BUNDLE/build/bin, else build/bin)
#   MAKE_AE       make-ae (default $GPU_BUNDLE/build/tests/tools/make-ae, else build/...)
#   PYTHON        the Python with PyTorch (default: gpu-bundle/host-env python3
#                 when the bundle is there, else python3)
#   DEVICE        cuda (default); cpu with small SIZES for a dry run elsewhere
# A failing run (out of memory, time-out) is a row saying so; the other runs
# go on. Exit 0 when every run that was not skipped succeeded.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
T_START=$SECONDS
OUT=${OUT:-./gpu-out}
SIZES=${SIZES:-512 1024}
BATCHES=${BATCHES:-1 8}
SIDES=${SIDES:-torch bf16 fp32}
N_512=${N_512:-576}
N_1024=${N_1024:-144}
ITERS=${ITERS:-10}
WARMUP=${WARMUP:-3}
BUDGET=${BUDGET:-280}
SIDE_TIMEOUT=${SIDE_TIMEOUT:-120}
CONFIG=${CONFIG:-models/configs/bagel-0.5b-mot.json}
DEVICE=${DEVICE:-cuda}

DIR=$OUT/encode-gpu
CASES=${CASES:-${TMPDIR:-/tmp}/bagel-encode-gpu}
mkdir -p "$CASES" "$DIR/logs" || { echo "encode-gpu: cannot write $DIR or $CASES" >&2; exit 1; }

# the bundle (scripts/gpu-bundle.sh): executables unpacked, libraries sourced
# shellcheck source=scripts/bench/bundle-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/bundle-env.sh"
bundle_env encode-gpu "$DIR/logs"
if [[ -z "${BIN:-}" ]]; then
    BIN=$BUNDLE/build/bin
    [[ -x "$BIN/bagel-encode" ]] || BIN=build/bin
fi
if [[ -z "${MAKE_AE:-}" ]]; then
    MAKE_AE=$BUNDLE/build/tests/tools/make-ae
    [[ -x "$MAKE_AE" ]] || MAKE_AE=build/tests/tools/make-ae
fi
if [[ -n "${PYTHON:-}" ]]; then
    read -r -a PY <<<"$PYTHON"
elif [[ -x "$BUNDLE/host-env" ]]; then
    PY=("$BUNDLE/host-env" python3)
else
    PY=(python3)
fi
PEER=tests/reference/ae_bench_gpu.py

echo "encode-gpu: $(date -u +%Y-%m-%dT%H:%M:%SZ) sizes=\"$SIZES\" batches=\"$BATCHES\" sides=\"$SIDES\" device=$DEVICE budget=${BUDGET}s"
echo "encode-gpu: bagel-encode $BIN/bagel-encode; make-ae $MAKE_AE; python ${PY[*]}; logs in $DIR/logs"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/encode-gpu: gpu: /'
fi

left() { echo $((BUDGET - (SECONDS - T_START))); }
kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2" | tail -n 1; }
count_of() { local v="N_$1"; echo "${!v:-16}"; }
calc() { awk "BEGIN { printf \"%.${2:-6}f\", ($1) }"; } # calc EXPR [DECIMALS]; no bc on every machine

# run NAME LOG CMD...: the command under the remaining budget, its output in LOG
run() {
    local name=$1 log=$2 t
    shift 2
    t=$(left)
    ((t > SIDE_TIMEOUT)) && t=$SIDE_TIMEOUT
    if ((t < 20)); then
        echo "encode-gpu: $name: skipped, $(left) s of the budget left" | tee "$log"
        return 200
    fi
    local rc=0
    timeout -k 5 "$t" "$@" >"$log" 2>&1 || rc=$?
    [[ $rc -eq 124 || $rc -eq 137 ]] && echo "encode-gpu: $name: timed out after ${t}s" >>"$log"
    return $rc
}

TSV=$DIR/table.tsv
printf 'size\tside\tbatch\timages_per_s\tratio\tstage_images_per_s\tstage_steady\tsteady_ratio\tstatus\n' >"$TSV"
failed=0
declare -A RATE PEER_RATE STAGE_RATE STEADY RAN
NOTES=()

# ---- the inputs: weights and records
AE=$CASES/ae.safetensors
if [[ ! -s "$AE" ]]; then
    run "make-ae" "$DIR/logs/make-ae.log" "$MAKE_AE" "$CONFIG" 1 "$AE" || { echo "encode-gpu: make-ae failed:"; tail -n 3 "$DIR/logs/make-ae.log"; }
fi
[[ -s "$AE" ]] || { echo "encode-gpu: no $AE: nothing can run"; failed=1; }
for s in $SIZES; do
    n=$(count_of "$s")
    for k in $n $((2 * n)); do
        f=$CASES/rec-$s-$k.msgpack
        [[ -s "$f" ]] && continue
        # plain Python suffices here: the bundle's host Python first, the system's if that fails
        run "records $s x$k" "$DIR/logs/records-$s-$k.log" "${PY[@]}" "$PEER" records "$s" "$k" "$f" ||
            run "records $s x$k" "$DIR/logs/records-$s-$k.log" python3 "$PEER" records "$s" "$k" "$f" ||
            echo "encode-gpu: records $s x$k failed (see $DIR/logs/records-$s-$k.log)"
    done
done
echo "encode-gpu: inputs ready after $((SECONDS - T_START)) s"

# ---- the runs
for side in $SIDES; do
    case $side in
        torch)
            log=$DIR/logs/torch.log
            rc=0
            sizes_csv=$(tr ' ' ',' <<<"$SIZES")
            batches_csv=$(tr ' ' ',' <<<"$BATCHES")
            echo "encode-gpu: torch bf16 (sizes $sizes_csv, batches $batches_csv)"
            run "torch" "$log" "${PY[@]}" "$PEER" bench "$AE" "$CONFIG" --sizes "$sizes_csv" --batches "$batches_csv" \
                --iters "$ITERS" --warmup "$WARMUP" --dtype bf16 --device "$DEVICE" || rc=$?
            grep '^ae-bench torch' "$log" | sed 's/^/  /'
            for s in $SIZES; do
                for b in $BATCHES; do
                    line=$(grep "^ae-bench size=$s batch=$b " "$log" | tail -n 1)
                    r=$(kv images_per_s "$line")
                    if [[ -n "$r" ]]; then
                        PEER_RATE[$s,$b]=$r
                        RATE[$s,torch-bf16,$b]=$r
                    else
                        why="failed (exit $rc): $(kv error "$line")"
                        [[ $rc -eq 200 ]] && why="skipped (budget)"
                        [[ $rc -eq 124 || $rc -eq 137 ]] && why="timed out"
                        [[ $rc -ne 200 ]] && failed=1
                        RATE[$s,torch-bf16,$b]="- $why"
                    fi
                done
            done
            [[ $rc -ne 0 && $rc -ne 200 ]] && { echo "  last lines of $log:"; tail -n 4 "$log" | sed 's/^/    /'; }
            ;;
        bf16 | fp32 | bf16-fma | bf16-tf32 | bf16-fused)
            envs=()
            [[ $side == *-fma ]] && envs=(BAGEL_CONV=fma)
            [[ $side == *-tf32 ]] && envs=(BAGEL_CONV=tf32)
            [[ $side == *-fused ]] && envs=(BAGEL_ATTN_DENSE=0)
            for s in $SIZES; do
                n=$(count_of "$s")
                for b in $BATCHES; do
                    name=bagel-$side
                    ok=1
                    declare -A T=()
                    prec=(--precision "${side%%-*}")
                    [[ $DEVICE == cpu ]] && prec=() # a dry run: the CPU computes in fp32 only
                    for k in $n $((2 * n)); do
                        log=$DIR/logs/$name-$s-b$b-x$k.log
                        rc=0
                        t0=$(date +%s.%N)
                        # the latents to a file (compared across batch sizes below)
                        run "$name $s b$b x$k" "$log" env "${envs[@]}" "$BIN/bagel-encode" --config "$CONFIG" --vae "$AE" \
                            --device "$DEVICE" "${prec[@]}" --batch "$b" --drop-pixels \
                            --in "$CASES/rec-$s-$k.msgpack" --out "$CASES/out-$side-$s-b$b-x$k.msgpack" || rc=$?
                        t1=$(date +%s.%N)
                        if [[ $rc -ne 0 ]] || ! grep -aq "images=$k " "$log"; then
                            why="failed (exit $rc): $(grep -aiE 'error|out of memory|cannot|bagel-encode: ' "$log" | grep -av 'images=' | tail -n 1 | cut -c1-100)"
                            [[ $rc -eq 200 ]] && why="skipped (budget)"
                            [[ $rc -eq 124 || $rc -eq 137 ]] && why="timed out"
                            [[ $rc -ne 200 ]] && failed=1
                            RATE[$s,$name,$b]="- $why"
                            ok=0
                            break
                        fi
                        T[$k]=$(calc "$t1 - $t0")
                        # the stage's own count: images over the seconds inside its encode calls
                        STAGE_RATE[$s,$name,$b]=$(sed -n 's/.* images_per_s=\([0-9.]*\).*/\1/p' "$log" | tail -n 1)
                        STEADY[$s,$name,$b]=$(sed -n 's/.* steady_images_per_s=\([0-9.]*\).*/\1/p' "$log" | tail -n 1)
                    done
                    if ((ok)); then
                        RAN[$s,$name,$b]=1
                        d=$(calc "${T[$((2 * n))]} - ${T[$n]}")
                        if [[ $(calc "$d > 0" 0) == 1 ]]; then
                            RATE[$s,$name,$b]=$(calc "$n / $d" 2)
                        else
                            RATE[$s,$name,$b]="- no difference (t($((2 * n)))=${T[$((2 * n))]}, t($n)=${T[$n]})"
                        fi
                    fi
                    echo "encode-gpu: $name ${s}x$s batch $b: ${RATE[$s,$name,$b]} images/s ($(left) s left)"
                done
                # the same latents whatever the batch? (the CPU's are, byte for byte: tests/stage/encode.bats)
                first=
                for b in $BATCHES; do
                    f=$CASES/out-$side-$s-b$b-x$n.msgpack
                    [[ -s "$f" && -n "${RAN[$s,$name,$b]:-}" ]] || continue
                    if [[ -z "$first" ]]; then
                        first=$b
                    elif cmp -s "$CASES/out-$side-$s-b$first-x$n.msgpack" "$f"; then
                        NOTES+=("bagel-$side ${s}x$s: the latents of --batch $b equal those of --batch $first byte for byte")
                    else
                        NOTES+=("bagel-$side ${s}x$s: the latents of --batch $b DIFFER from those of --batch $first")
                    fi
                done
            done
            ;;
        *)
            echo "encode-gpu: unknown side '$side' (torch bf16 fp32 bf16-fma bf16-tf32 bf16-fused)"
            failed=1
            ;;
    esac
done

# ---- where the time goes: per-op totals of one profiled run a size
if [[ ${PROFILE:-$([[ $DEVICE == cuda ]] && echo 1 || echo 0)} == 1 ]]; then
    for s in $SIZES; do
        n=$(count_of "$s")
        prof=$DIR/profile-$s.txt
        prec=(--precision bf16)
        [[ $DEVICE == cpu ]] && prec=()
        run "profile $s" "$DIR/logs/profile-$s.log" env BAGEL_PROFILE=1 "$BIN/bagel-encode" --config "$CONFIG" \
            --vae "$AE" --device "$DEVICE" "${prec[@]}" --batch 1 --drop-pixels --in "$CASES/rec-$s-$n.msgpack" \
            --out /dev/null || true
        grep -a 'profile:' "$DIR/logs/profile-$s.log" | sed "s/^/${s}x$s bf16 batch 1, $n images: /" >"$prof"
        cat "$prof"
    done
fi

# ---- the table
for s in $SIZES; do
    for side in $SIDES; do
        name=bagel-$side
        [[ $side == torch ]] && name=torch-bf16
        for b in $BATCHES; do
            v=${RATE[$s,$name,$b]:-"- not run"}
            if [[ $v == -* ]]; then
                printf '%s\t%s\t%s\t-\t-\t-\t-\t-\t%s\n' "${s}x$s" "$name" "$b" "${v#- }" >>"$TSV"
            else
                p=${PEER_RATE[$s,$b]:-}
                ratio=-
                [[ -n "$p" ]] && ratio=$(calc "$v / $p" 3)
                st=${STEADY[$s,$name,$b]:--}
                sratio=-
                [[ -n "$p" && "$st" != - ]] && sratio=$(calc "$st / $p" 3)
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\tok\n' "${s}x$s" "$name" "$b" "$v" "$ratio" \
                    "${STAGE_RATE[$s,$name,$b]:--}" "$st" "$sratio" >>"$TSV"
            fi
        done
    done
done
TXT=$DIR/table.txt
{
    echo "encode-gpu: FLUX autoencoder's encoder (posterior moments), images/s; ratio = images/s over torch-bf16's at the same size and batch"
    echo "encode-gpu: bagel-encode by wall clock, N over t(2N) - t(N); torch by CUDA events, median of $ITERS forwards"
    echo "encode-gpu: stage_images_per_s: bagel-encode's own log over the 2N run (time inside its encode calls, first call included)"
    echo "encode-gpu: stage_steady: the same without the first call (which also picks cuDNN's algorithms and allocates); steady_ratio: that over torch-bf16's"
    column -t -s $'\t' "$TSV" 2>/dev/null || cat "$TSV"
    for note in "${NOTES[@]}"; do
        echo "encode-gpu: $note"
    done
} >"$TXT"
cat "$TXT"
echo "encode-gpu: done in $((SECONDS - T_START)) s, exit $failed; table in $TSV"
exit $failed
