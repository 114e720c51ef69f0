#!/usr/bin/env bash
# gpu-run.sh — the one command to run on the GPU machine, from the root of the
# repository's copy there, with the bundle from scripts/gpu-bundle.sh carried:
#
#   scripts/gpu-run.sh [--unit] [-- CMD [ARGS...] [-- CMD [ARGS...]]...]
#
# Sources gpu-bundle/env.sh (the carried libraries into LD_LIBRARY_PATH),
# prints the GPUs (nvidia-smi -L), the bundle's MANIFEST head and any library a
# bundled executable cannot resolve, runs the probe (tests/gpu/test_runtime:
# driver, runtime, cuBLAS, cuDNN, NCCL versions against our headers), then
# `make test-gpu`'s runner on the bundle (BUILD=gpu-bundle/build
# tests/gpu/run.sh), with --unit the CPU unit test binaries too, then each
# command given after a `--` (benchmarks), in order. A failing step does not
# stop the later ones.
#
# Everything goes to stdout and to $OUT/gpu-run.log (OUT defaults to ./gpu-out);
# the last line is the summary: "gpu-run: probe ok, test-gpu ..., exit N".
# Exit 0 only when every step passed.
#
# Commands run with the bundle's LD_LIBRARY_PATH. The machine's own python3
# (PyTorch) should not load our Debian 12 libraries: run it through
# gpu-bundle/host-env, e.g. -- gpu-bundle/host-env python3 tests/reference/...
#
# Environment: OUT, GPU_BUNDLE (default gpu-bundle), TEST_TIMEOUT (seconds per
# GPU test binary, passed to tests/gpu/run.sh), CMD_TIMEOUT (seconds per
# command after --, default none).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-./gpu-out}
BUNDLE=${GPU_BUNDLE:-gpu-bundle}
unit=0
cmds=()   # the commands, each as its words joined by \x1f
while [[ $# -gt 0 ]]; do
    case "$1" in
        --unit) unit=1; shift ;;
        --)
            shift
            words=()
            while [[ $# -gt 0 && "$1" != -- ]]; do words+=("$1"); shift; done
            if [[ ${#words[@]} -gt 0 ]]; then
                joined=$(printf '%s\x1f' "${words[@]}")
                cmds+=("$joined")
            fi
            ;;
        -h | --help) sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu-run: unknown argument '$1' (commands go after --)" >&2; exit 2 ;;
    esac
done

mkdir -p "$OUT" 2>/dev/null || { OUT=./gpu-out; mkdir -p "$OUT"; }
LOG=$OUT/gpu-run.log

main() {
    local summary=() failed=0 rc

    echo "gpu-run: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), in $PWD, log $LOG"
    if [[ -f "$BUNDLE/build.tar.xz" && ! -d "$BUNDLE/build" ]]; then
        tar -xJf "$BUNDLE/build.tar.xz" -C "$BUNDLE" || echo "gpu-run: $BUNDLE/build.tar.xz: unpacking failed"
    fi
    if [[ ! -f "$BUNDLE/env.sh" || ! -d "$BUNDLE/build" ]]; then
        echo "gpu-run: no bundle at $BUNDLE: run scripts/gpu-bundle.sh on the development machine and carry [\"$BUNDLE\"]"
        echo "gpu-run: SUMMARY: no bundle, exit 1"
        return 1
    fi
    # shellcheck source=/dev/null
    source "$BUNDLE/env.sh" || {
        echo "gpu-run: SUMMARY: $BUNDLE/env.sh failed, exit 1"
        return 1
    }
    # a copy may lose the executable bits; put them back where it can
    find "$BUNDLE/build" -type f ! -perm -u+x -exec chmod u+x {} + 2>/dev/null || true

    echo "gpu-run: bundle:"
    sed -n '1,6p' "$BUNDLE/MANIFEST" 2>/dev/null | sed 's/^/  /' || true
    if git rev-parse HEAD >/dev/null 2>&1; then
        echo "  this tree: $(git rev-parse HEAD)"
    fi

    echo "gpu-run: nvidia-smi -L"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi -L 2>&1 | sed 's/^/  /' || true
        nvidia-smi --query-gpu=driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/  driver, memory: /' || true
    else
        echo "  nvidia-smi is not installed"
    fi

    echo "gpu-run: libraries the bundled executables cannot resolve here:"
    local missing
    missing=$(find "$BUNDLE/build" -type f -perm -u+x -exec ldd {} \; 2>/dev/null | grep 'not found' | sort | uniq -c || true)
    if [[ -n "$missing" ]]; then
        printf '%s\n' "$missing" | sed 's/^/  /'
        summary+=("libraries MISSING")
        failed=1
    else
        echo "  none"
    fi

    echo "gpu-run: probe: $BUNDLE/build/tests/gpu/test_runtime"
    local probe
    rc=0
    probe=$("$BUNDLE/build/tests/gpu/test_runtime" 2>&1) || rc=$?
    printf '%s\n' "$probe" | sed 's/^/  /'
    if [[ $rc -ne 0 ]]; then
        summary+=("probe FAILED ($rc)")
        failed=1
    elif grep -q '^1\.\.0 # SKIP' <<<"$probe"; then
        # this script is for the GPU machine: no device there is a failure
        summary+=("probe SKIPPED: no CUDA device")
        failed=1
    else
        summary+=("probe ok")
    fi

    echo "gpu-run: BUILD=$BUNDLE/build CUDA_ON=1 tests/gpu/run.sh"
    local tg
    rc=0
    tg=$(BUILD=$BUNDLE/build CUDA_ON=1 tests/gpu/run.sh 2>&1) || rc=$?
    printf '%s\n' "$tg"
    summary+=("test-gpu $(tail -n 1 <<<"$tg")")
    [[ $rc -eq 0 ]] || failed=1

    if [[ $unit -eq 1 ]]; then
        echo "gpu-run: unit tests ($BUNDLE/build/tests/test_*)"
        local t p f np=0 nf=0 out
        out=$(mktemp)
        for t in "$BUNDLE"/build/tests/test_*; do
            [[ -f "$t" && -x "$t" ]] || continue
            rc=0
            CMOCKA_MESSAGE_OUTPUT=TAP "$t" >"$out" 2>&1 || rc=$?
            p=$(grep -c '^ok' "$out" || true)
            f=$(grep -c '^not ok' "$out" || true)
            if [[ $rc -ne 0 && $f -eq 0 ]]; then f=1; fi
            printf '  %-28s %4d passed %3d failed\n' "$(basename "$t")" "$p" "$f"
            if [[ $f -gt 0 ]]; then
                grep -A5 '^not ok' "$out" | sed 's/^/    /' || tail -n 20 "$out" | sed 's/^/    /'
            fi
            np=$((np + p)) nf=$((nf + f))
        done
        rm -f "$out"
        summary+=("unit $np passed, $nf failed")
        [[ $nf -eq 0 ]] || failed=1
    fi

    local i=0 c words ok=0
    for c in "${cmds[@]}"; do
        i=$((i + 1))
        IFS=$'\x1f' read -r -a words <<<"${c%$'\x1f'}"
        echo "gpu-run: command $i: ${words[*]}"
        rc=0
        local t0=$SECONDS
        if [[ -n "${CMD_TIMEOUT:-}" ]]; then
            timeout "$CMD_TIMEOUT" "${words[@]}" 2>&1 || rc=$?
        else
            "${words[@]}" 2>&1 || rc=$?
        fi
        echo "gpu-run: command $i: exit $rc after $((SECONDS - t0))s"
        if [[ $rc -eq 0 ]]; then ok=$((ok + 1)); else failed=1; fi
    done
    [[ $i -eq 0 ]] || summary+=("commands $ok/$i ok")

    local joined
    joined=$(printf '%s; ' "${summary[@]}")
    echo "gpu-run: SUMMARY: ${joined}exit $failed"
    return "$failed"
}

rc=0
main 2>&1 | tee "$LOG" || rc=$?
exit "$rc"
