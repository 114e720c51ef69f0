#!/usr/bin/env bash
# ipc.sh — make bench-ipc: the record-stream benchmark (bench-ipc) with a
# header naming the machine and the date, since its numbers only mean
# something next to them. Arguments go to bench-ipc (--quick, --repeat K,
# --json FILE); BUILD picks the build directory (default build).
set -euo pipefail

BUILD="${BUILD:-build}"
bin="$BUILD/tools/bench-ipc"
if [[ ! -x "$bin" ]]; then
    echo "ipc.sh: $bin: not built; run make BUILD=$BUILD $bin" >&2
    exit 1
fi

cpu="$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -n 1 || true)"
echo "# bench-ipc on $(hostname 2>/dev/null || echo '?'): $(nproc) CPUs, ${cpu:-unknown CPU}, $(uname -sr)"
echo "# $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
exec "$bin" "$@"
