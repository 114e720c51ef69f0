#!/usr/bin/env bash
# tests/gpu/run.sh — the `make test-gpu` runner.
#
# Runs every $BUILD/tests/gpu/test_* (TAP on stdout), counts "ok" lines as
# passed, "not ok" as failed and "# SKIP" (a skipped test, or a whole binary's
# "1..0 # SKIP") as skipped, shows the failures, and ends with
# "N passed, N failed, N skipped". A binary that exits non-zero, or prints
# fewer results than its plan, counts one more failure.
#
# Without a GPU (nvidia-smi -L lists none) or with a build made with CUDA=0
# (CUDA_ON, from the Makefile, is not 1), nothing runs: it says so, counts
# every test source as skipped, and exits 0.
#
# Environment: BUILD (default build), CUDA_ON, TEST_TIMEOUT (seconds per
# binary, default 300). Exit: 0 when nothing failed, 1 otherwise.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=${BUILD:-build}
timeout_s=${TEST_TIMEOUT:-300}

shopt -s nullglob
sources=("$here"/test_*.c)

gpus=0
if command -v nvidia-smi >/dev/null 2>&1; then
    gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
fi
if [[ "${CUDA_ON:-0}" != 1 || "$gpus" -eq 0 ]]; then
    echo "test-gpu: skipped: no GPU on this machine (or built with CUDA=0)"
    echo "0 passed, 0 failed, ${#sources[@]} skipped"
    exit 0
fi

bins=()
for f in "$build"/tests/gpu/test_*; do
    [[ -f "$f" && -x "$f" ]] && bins+=("$f")
done
if [[ ${#bins[@]} -eq 0 ]]; then
    echo "test-gpu: no test binaries in $build/tests/gpu: build them first (make CUDA=1 BUILD=$build)" >&2
    echo "0 passed, 1 failed, 0 skipped"
    exit 1
fi

log=$(mktemp -d "${TMPDIR:-/tmp}/bagel-test-gpu.XXXXXX")
trap 'rm -rf "$log"' EXIT

passed=0 failed=0 skipped=0
for bin in "${bins[@]}"; do
    name=$(basename "$bin")
    out="$log/$name.out"
    rc=0
    timeout "$timeout_s" "$bin" >"$out" 2>"$log/$name.err" || rc=$?

    p=0 f=0 s=0 planned=-1
    while IFS= read -r line; do
        case "$line" in
        "not ok"*) f=$((f + 1)) ;;
        "ok"*"# SKIP"* | "ok"*"# skip"*) s=$((s + 1)) ;;
        "ok"*) p=$((p + 1)) ;;
        1..0*"# SKIP"* | 1..0*"# skip"*) s=$((s + 1)); planned=0 ;;
        1..*) planned=${line#1..}; planned=${planned%% *} ;;
        esac
    done <"$out"

    problem=""
    if [[ $rc -eq 124 ]]; then
        problem="timed out after ${timeout_s}s"
    elif [[ $rc -ne 0 && $f -eq 0 ]]; then
        problem="exited with status $rc"
    elif [[ ! "$planned" =~ ^[0-9]+$ || $planned -lt 0 ]]; then
        problem="printed no TAP plan"
    elif [[ $planned -gt 0 && $((p + f + s)) -ne $planned ]]; then
        problem="planned $planned tests, reported $((p + f + s))"
    fi
    if [[ -n "$problem" ]]; then
        f=$((f + 1))
    fi

    echo "$name: $p passed, $f failed, $s skipped"
    # diagnostics before the first result (the environment line, a skip's reason)
    awk '/^(not )?ok/ { exit } /^#/ { print "  " $0 }' "$out"
    if [[ $f -gt 0 ]]; then
        [[ -n "$problem" ]] && echo "  $name: $problem"
        # each failure with the diagnostic lines that follow it
        awk '/^not ok/ { show = 1; print "  " $0; next }
             /^#/ && show { print "  " $0; next }
             { show = 0 }' "$out"
        if [[ -s "$log/$name.err" ]]; then
            echo "  --- $name stderr (last 20 lines)"
            tail -n 20 "$log/$name.err" | sed 's/^/  /'
        fi
    fi
    passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
done

echo "$passed passed, $failed failed, $skipped skipped"
[[ $failed -eq 0 ]]
