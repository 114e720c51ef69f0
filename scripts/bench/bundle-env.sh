# bundle-env.sh — sourced by the GPU benchmarks that run alone on the GPU
# machine (model-gpu.sh, encode-gpu.sh): bundle_env NAME LOGDIR unpacks the
# bundle's executables (gpu-bundle/build.tar.xz, scripts/gpu-bundle.sh) as
# scripts/gpu-run.sh does, and sources its env.sh (the carried libraries into
# LD_LIBRARY_PATH) unless gpu-run.sh did already; NAME prefixes its lines,
# env.sh's output goes to LOGDIR/env.log. Sets BUNDLE (GPU_BUNDLE or
# gpu-bundle).
bundle_env() {
    local name=$1 logdir=$2
    BUNDLE=${GPU_BUNDLE:-gpu-bundle}
    if [[ -f "$BUNDLE/build.tar.xz" && ! -d "$BUNDLE/build" ]]; then
        echo "$name: unpacking $BUNDLE/build.tar.xz"
        if command -v xz >/dev/null; then
            tar -xJf "$BUNDLE/build.tar.xz" -C "$BUNDLE"
        else
            python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$BUNDLE/build.tar.xz" "$BUNDLE"
        fi || echo "$name: $BUNDLE/build.tar.xz: unpacking failed"
        find "$BUNDLE/build" -type f ! -perm -u+x -exec chmod u+x {} + 2>/dev/null || true
    fi
    if [[ -z "${BAGEL_LIB_DIR:-}" && -f "$BUNDLE/env.sh" ]]; then
        # shellcheck source=/dev/null
        source "$BUNDLE/env.sh" >"$logdir/env.log" 2>&1 || echo "$name: $BUNDLE/env.sh failed (see $logdir/env.log)"
    fi
}
