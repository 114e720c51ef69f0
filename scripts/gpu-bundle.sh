#!/usr/bin/env bash
# gpu-bundle.sh — build here and gather what the GPU machine needs to run it.
#
# Usage: scripts/gpu-bundle.sh [BUILD] [OUT_DIR]   (defaults: build gpu-bundle)
#
# Builds with `make BUILD=$BUILD CUDA=1 all tests-build` (the executables and the
# unit test binaries), then writes OUT_DIR (git-ignored):
#
#   OUT_DIR/build.tar.xz  the executables, laid out as under $BUILD: bin/*,
#                       tools/*, tests/test_* (unit tests), tests/gpu/test_*
#                       (tests whose source is gone are left out, saying so),
#                       tests/tools/*; gpu-run.sh unpacks it into OUT_DIR/build,
#                       so `BUILD=OUT_DIR/build tests/gpu/run.sh` works
#   OUT_DIR/lib.tar.xz  every shared library they load (per ldd) but those the
#                       GPU machine has and must use its own of (see EXCLUDED
#                       below), stripped, xz-compressed
#   OUT_DIR/env.sh      sourced there: unpacks lib.tar.xz into /tmp/bagel-lib
#                       (once per bundle) and puts it first in LD_LIBRARY_PATH
#   OUT_DIR/host-env    runs a command with the LD_LIBRARY_PATH from before
#                       env.sh (for the machine's own python3 and tools)
#   OUT_DIR/MANIFEST    commit, build, carried and left-out libraries
#
# The GPU machine reaches no package registry and a run may carry 64 MiB of
# ignored paths: the script fails, saying so, when OUT_DIR is larger. The
# tracked files (models/configs, tests/reference golden files, scripts) travel
# with the working tree anyway.
#
# Checked here before it finishes: lib.tar.xz unpacked into a temporary
# directory resolves every bundled executable's libraries but the CUDA ones
# left out, and a few bundled executables run with only that directory and the
# system's libraries.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD=${1:-build}
OUT=${2:-gpu-bundle}
LIMIT=$((64 * 1024 * 1024))

die() { echo "gpu-bundle: $*" >&2; exit 1; }
for tool in ldd strip tar xz sha256sum make; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
case "$OUT" in
    "" | / | . | .. | "$BUILD") die "refusing OUT_DIR '$OUT'" ;;
esac

echo "gpu-bundle: make BUILD=$BUILD CUDA=1 all tests-build"
make -j"$(nproc)" BUILD="$BUILD" CUDA=1 all tests-build >"${TMPDIR:-/tmp}/gpu-bundle-make.$$.log" 2>&1 || {
    tail -n 30 "${TMPDIR:-/tmp}/gpu-bundle-make.$$.log" >&2
    rm -f "${TMPDIR:-/tmp}/gpu-bundle-make.$$.log"
    die "make failed (last lines above)"
}
rm -f "${TMPDIR:-/tmp}/gpu-bundle-make.$$.log"

# ---- the executables, by path relative to $BUILD
shopt -s nullglob
exes=()
for f in "$BUILD"/bin/* "$BUILD"/tools/* "$BUILD"/tests/test_* "$BUILD"/tests/gpu/test_* "$BUILD"/tests/tools/*; do
    [[ -f "$f" && -x "$f" ]] || continue
    rel=${f#"$BUILD"/}
    # a test binary whose source is gone (a removed test, left in the build
    # directory) would run there as if it were one of ours
    src=
    case $rel in
        tests/gpu/test_*) src=tests/gpu/${rel##*/}.c ;;
        tests/test_*) src=tests/unit/${rel##*/}.c ;;
    esac
    if [[ -n "$src" && ! -f "$src" ]]; then
        echo "gpu-bundle: left out $rel: no $src (a removed test's binary)"
        continue
    fi
    exes+=("$rel")
done
shopt -u nullglob
[[ ${#exes[@]} -gt 0 ]] || die "no executables under $BUILD"
[[ -x "$BUILD/tests/gpu/test_runtime" ]] || die "$BUILD/tests/gpu/test_runtime is missing: was CUDA on?"

# ---- which libraries stay behind
# The C runtime the GPU machine must use its own of (Ubuntu 24.04's glibc 2.39,
# libstdc++ and libgcc_s are newer than Debian 12's and backward compatible; a
# second glibc cannot be loaded beside the system's loader anyway).
SYSTEM_RE='^(linux-vdso|linux-gate|ld-linux[^/]*|libc|libm|libmvec|libpthread|libdl|librt|libresolv|libutil|libanl|libnsl|libBrokenLocale|libstdc\+\+|libgcc_s)\.so'
# The NVIDIA stack: the driver (libcuda) must match the kernel module there, and
# the machine's CUDA 13 runtime, cuBLAS, cuDNN and NCCL are in its library path.
# tests/gpu/test_runtime prints their versions against our headers.
CUDA_RE='^lib(cuda|cudart|cublas|cublasLt|cudnn[A-Za-z0-9_]*|nccl|nvrtc[A-Za-z0-9_-]*|nvJitLink|nvidia-[A-Za-z0-9_-]*|cufft|curand|cusparse|cusolver|cupti|nvToolsExt)\.so'

declare -A lib_path=()   # soname -> resolved file
declare -A left_out=()   # soname -> why
for e in "${exes[@]}"; do
    while IFS= read -r line; do
        # "\tlibfoo.so.1 => /path/libfoo.so.1 (0x...)", "\tlibfoo.so.1 => not found",
        # "\t/lib64/ld-linux-x86-64.so.2 (0x...)", "\tlinux-vdso.so.1 (0x...)"
        read -r name arrow path _ <<<"$line" || true
        [[ -n "$name" ]] || continue
        base=${name##*/}
        if [[ "$base" =~ $SYSTEM_RE ]]; then
            left_out[$base]="system C runtime"
            continue
        fi
        if [[ "$base" =~ $CUDA_RE || "$path" == */cuda* ]]; then
            left_out[$base]="CUDA/NVIDIA: the machine's own"
            continue
        fi
        [[ "$arrow" == "=>" ]] || continue
        [[ "$path" != not ]] || die "$BUILD/$e: $base is not found here"
        lib_path[$base]=$path
    done < <(ldd "$BUILD/$e")
done

# ---- write OUT_DIR afresh
stage=$(mktemp -d "${TMPDIR:-/tmp}/gpu-bundle.XXXXXX")
trap 'rm -rf "$stage"' EXIT
rm -rf "$OUT"
mkdir -p "$OUT/build" "$stage/lib"

for e in "${exes[@]}"; do
    mkdir -p "$OUT/build/$(dirname "$e")"
    cp -p "$BUILD/$e" "$OUT/build/$e"
done

mapfile -t sonames < <(printf '%s\n' "${!lib_path[@]}" | LC_ALL=C sort)
mapfile -t out_names < <(printf '%s\n' "${!left_out[@]}" | LC_ALL=C sort)
for so in "${sonames[@]}"; do
    cp -L "${lib_path[$so]}" "$stage/lib/$so"
    chmod u+w "$stage/lib/$so"
    strip --strip-unneeded "$stage/lib/$so" 2>/dev/null || true
done
lib_bytes=$(du -sb "$stage/lib" | cut -f1)
echo "gpu-bundle: packing ${#sonames[@]} libraries ($((lib_bytes / 1048576)) MiB unpacked) into $OUT/lib.tar.xz"
(cd "$stage/lib" && tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='@0' -cf - "${sonames[@]}") \
    | xz -T0 -9 >"$OUT/lib.tar.xz"
lib_sha=$(sha256sum "$OUT/lib.tar.xz" | cut -d' ' -f1)

# the size a run may carry: strip the executables (their debug information)
# only when the whole would not fit otherwise
total=$(du -sb "$OUT" | cut -f1)
stripped=no
if ((total > LIMIT - 1048576)); then
    echo "gpu-bundle: $((total / 1048576)) MiB: stripping the executables' debug information"
    for e in "${exes[@]}"; do strip --strip-unneeded "$OUT/build/$e"; done
    stripped=yes
fi

# ---- env.sh, host-env, MANIFEST
cat >"$OUT/env.sh" <<EOF
# env.sh — source on the GPU machine from the repository root:
#   source gpu-bundle/env.sh
# Unpacks lib.tar.xz into \${BAGEL_LIB_DIR:-/tmp/bagel-lib} (again only when the
# bundle changed), puts it first in LD_LIBRARY_PATH, keeps the previous value in
# BAGEL_HOST_LD_LIBRARY_PATH (host-env runs a command with it: the machine's
# own python3 should not load our Debian 12 libraries), and prints the CUDA
# libraries the machine has. Sourced, so it leaves the shell's options alone
# and returns non-zero on failure.
# Written by scripts/gpu-bundle.sh.
bagel_lib_sha=$lib_sha
bagel_bundle=\$(cd "\$(dirname "\${BASH_SOURCE[0]}")" && pwd) || return 1
BAGEL_LIB_DIR=\${BAGEL_LIB_DIR:-/tmp/bagel-lib}
if [[ "\$(cat "\$BAGEL_LIB_DIR/.bundle-sha256" 2>/dev/null)" != "\$bagel_lib_sha" ]]; then
    echo "env.sh: unpacking \$bagel_bundle/lib.tar.xz into \$BAGEL_LIB_DIR"
    rm -rf "\$BAGEL_LIB_DIR.tmp.\$\$" && mkdir -p "\$BAGEL_LIB_DIR.tmp.\$\$" &&
        if command -v xz >/dev/null; then
            tar -xJf "\$bagel_bundle/lib.tar.xz" -C "\$BAGEL_LIB_DIR.tmp.\$\$"
        else # no xz(1) there: Python's tarfile reads xz
            python3 -c 'import sys, tarfile; kw = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}; tarfile.open(sys.argv[1]).extractall(sys.argv[2], **kw)' \\
                "\$bagel_bundle/lib.tar.xz" "\$BAGEL_LIB_DIR.tmp.\$\$"
        fi &&
        echo "\$bagel_lib_sha" >"\$BAGEL_LIB_DIR.tmp.\$\$/.bundle-sha256" &&
        rm -rf "\$BAGEL_LIB_DIR" && mv "\$BAGEL_LIB_DIR.tmp.\$\$" "\$BAGEL_LIB_DIR" || {
        echo "env.sh: could not unpack \$bagel_bundle/lib.tar.xz into \$BAGEL_LIB_DIR" >&2
        rm -rf "\$BAGEL_LIB_DIR.tmp.\$\$"
        return 1
    }
fi
if [[ -z "\${BAGEL_HOST_LD_LIBRARY_PATH+set}" ]]; then
    export BAGEL_HOST_LD_LIBRARY_PATH=\${LD_LIBRARY_PATH:-}
fi
export BAGEL_LIB_DIR
export LD_LIBRARY_PATH=\$BAGEL_LIB_DIR\${BAGEL_HOST_LD_LIBRARY_PATH:+:\$BAGEL_HOST_LD_LIBRARY_PATH}
echo "env.sh: LD_LIBRARY_PATH=\$LD_LIBRARY_PATH"
echo "env.sh: the machine's CUDA libraries (LD_LIBRARY_PATH, then ldconfig -p; -> the file loaded):"
bagel_seen=" "
while IFS= read -r bagel_p; do
    bagel_real=\$(readlink -f "\$bagel_p" 2>/dev/null) || continue
    case "\$bagel_seen" in *" \$bagel_real "*) continue ;; esac
    bagel_seen="\$bagel_seen\$bagel_real "
    echo "  \$bagel_p -> \${bagel_real##*/}"
done < <(
    bagel_ifs=\$IFS; IFS=:
    for bagel_d in \$BAGEL_HOST_LD_LIBRARY_PATH; do
        [[ -d "\$bagel_d" ]] && find "\$bagel_d" -maxdepth 1 -regextype egrep -regex '.*/lib(cudart|cublas|cublasLt|cudnn|nccl)\\.so\\.[0-9]+' 2>/dev/null | sort || true
    done
    IFS=\$bagel_ifs
    { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | sed -n 's/^[[:space:]]*lib\\(cudart\\|cublas\\|cublasLt\\|cudnn\\|nccl\\)\\.so\\.[0-9]* .*=> //p'
    true
)
[[ "\$bagel_seen" != " " ]] || echo "  (none found: tests/gpu/test_runtime will say what fails to load)"
unset bagel_lib_sha bagel_bundle bagel_seen bagel_p bagel_real
true
EOF

cat >"$OUT/host-env" <<'EOF'
#!/usr/bin/env bash
# host-env CMD [ARGS...] — run CMD with the LD_LIBRARY_PATH from before
# env.sh was sourced (the machine's own python3, PyTorch, tools).
# Written by scripts/gpu-bundle.sh.
set -euo pipefail
[[ $# -gt 0 ]] || { echo "usage: host-env CMD [ARGS...]" >&2; exit 2; }
if [[ -n "${BAGEL_HOST_LD_LIBRARY_PATH+set}" ]]; then
    if [[ -n "$BAGEL_HOST_LD_LIBRARY_PATH" ]]; then
        export LD_LIBRARY_PATH=$BAGEL_HOST_LD_LIBRARY_PATH
    else
        unset LD_LIBRARY_PATH
    fi
fi
exec "$@"
EOF
chmod +x "$OUT/host-env"

{
    echo "bagelpipe GPU bundle (scripts/gpu-bundle.sh)"
    echo "version: $(cat VERSION)"
    if git rev-parse --git-dir >/dev/null 2>&1; then
        echo "commit: $(git rev-parse HEAD)$(git diff --quiet HEAD -- || echo ' (with uncommitted changes)')"
    else
        echo "commit: unknown (not a git checkout)"
    fi
    echo "made: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release), $(gcc --version | head -n1), nvcc $("$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p' || true)"
    echo "build: make BUILD=$BUILD CUDA=1 all tests-build; executables stripped: $stripped"
    echo "lib.tar.xz sha256: $lib_sha"
    echo
    echo "executables (under build/):"
    printf '  %s\n' "${exes[@]}"
    echo
    echo "carried libraries (lib.tar.xz):"
    for so in "${sonames[@]}"; do echo "  $so <- ${lib_path[$so]}"; done
    echo
    echo "left out (the GPU machine's own):"
    for so in "${out_names[@]}"; do echo "  $so: ${left_out[$so]}"; done
} >"$OUT/MANIFEST"

# ---- check: every bundled executable resolves with only the unpacked
# libraries and the system's (the CUDA ones resolve here from the toolkit)
check=$stage/unpacked
mkdir -p "$check"
tar -xJf "$OUT/lib.tar.xz" -C "$check"
bad=0
for e in "${exes[@]}"; do
    while IFS= read -r line; do
        read -r name arrow path _ <<<"$line" || true
        [[ "$arrow" == "=>" ]] || continue
        base=${name##*/}
        if [[ "$path" == not ]]; then
            if [[ ! "$base" =~ $CUDA_RE ]]; then
                echo "gpu-bundle: build/$e: $base not found with the bundle" >&2
                bad=1
            fi
        elif [[ ! "$base" =~ $SYSTEM_RE && ! "$base" =~ $CUDA_RE && "$path" != "$check/"* ]]; then
            echo "gpu-bundle: build/$e: $base resolves outside the bundle ($path)" >&2
            bad=1
        fi
    done < <(env -i PATH="$PATH" LD_LIBRARY_PATH="$check" ldd "$OUT/build/$e")
done
[[ $bad -eq 0 ]] || die "the bundle does not resolve its libraries (above)"

# run a few from the bundle in a scrubbed environment (only PATH and the
# unpacked libraries; the check above showed each carried library resolves
# from there, not from this machine's /usr/lib)
run_scrubbed() { env -i PATH=/usr/bin:/bin HOME=/nonexistent LD_LIBRARY_PATH="$check" "$@"; }
ver=$(run_scrubbed "$OUT/build/bin/bagel-cat" --version 2>&1) || die "bagel-cat --version failed: $ver"
echo "gpu-bundle: $OUT/build/bin/bagel-cat --version: $ver"
for t in test_config test_safetensors; do
    if [[ -x "$OUT/build/tests/$t" ]]; then
        out=$(run_scrubbed CMOCKA_MESSAGE_OUTPUT=TAP "$OUT/build/tests/$t" 2>&1) || {
            printf '%s\n' "$out" | tail -n 20 >&2
            die "$OUT/build/tests/$t failed from the bundle"
        }
        echo "gpu-bundle: $OUT/build/tests/$t: $(grep -c '^ok' <<<"$out") ok, $(grep -c '^not ok' <<<"$out" || true) not ok"
    fi
done

# ---- the executables travel compressed too (the sm_90a kernels make each
# CUDA executable megabytes that xz shrinks about tenfold); gpu-run.sh
# unpacks build.tar.xz into OUT_DIR/build before anything runs
tar -cf - -C "$OUT" build | xz -T0 -6 >"$OUT/build.tar.xz"
rm -rf "$OUT/build"

# ---- the size a run may carry
total=$(du -sb "$OUT" | cut -f1)
if ((total > LIMIT)); then
    die "$OUT is $((total / 1048576)) MiB ($total bytes), over the 64 MiB a run may carry"
fi
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
echo "gpu-bundle: $OUT: ${#exes[@]} executables, ${#sonames[@]} libraries, $(mib "$total") MiB in all" \
    "(lib.tar.xz $(mib "$(stat -c %s "$OUT/lib.tar.xz")") MiB, build.tar.xz $(mib "$(stat -c %s "$OUT/build.tar.xz")") MiB; a run may carry 64 MiB with the tree)"
echo "gpu-bundle: left out (the GPU machine's own): ${out_names[*]}"
echo "gpu-bundle: carry [\"$OUT\"] and run: scripts/gpu-run.sh"
