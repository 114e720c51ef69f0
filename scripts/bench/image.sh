#!/usr/bin/env bash
# image.sh — bagel-image's images/s per core for the whole stage (read the
# file, decode, orient, convert, both resizes, write the records) on 1024x768
# and 2048x1536 JPEGs and PNGs, beside Pillow doing the same work on the same
# files (BAGEL's transforms: exif_transpose, pil_img2rgb, ViT 980/378/14 and VAE
# 1024/512/16 bicubic resizes from one decode), one process and all cores,
# with the peak memory (max RSS) of one process. Every figure is the best of
# REPEAT runs (default 3), bagel-image's and Pillow's alike, the runs of the
# two interleaved, so that other load on the machine hurts neither side more.
# Start-up is left out on both sides, as a stage that runs for hours pays it
# once: Pillow's clock starts after the interpreter has imported PIL, and
# bagel-image's time has that of the same processes on an empty input (process
# start, libvips loading its modules: ~50 ms) taken off; the last column gives
# the ratio with it counted in.
# Usage: image.sh [IMAGES_PER_KIND] (default 24); BUILD picks the build directory.
set -euo pipefail

BUILD="${BUILD:-build}"
N="${1:-24}"
REPEAT="${REPEAT:-3}"
IMG="$BUILD/bin/bagel-image"
READ="$BUILD/bin/bagel-read"
[[ -x "$IMG" && -x "$READ" ]] || { echo "image.sh: $IMG: not built; run make BUILD=$BUILD" >&2; exit 1; }
command -v vips >/dev/null || { echo "image.sh: the vips command is not installed (apt-get install libvips-tools)" >&2; exit 1; }
PY=""
for p in /usr/bin/python3 python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import PIL' 2>/dev/null; then PY=$p; break; fi
done
CORES=$(nproc)

dir="$(mktemp -d /tmp/bagel-bench-image-XXXXXX)"
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/img"
# photo-like content: three Perlin-noise bands, different per image
for size in 1024x768 2048x1536; do
    w=${size%x*} h=${size#*x}
    for i in $(seq 1 "$N"); do
        for b in 0 1 2; do vips perlin "$dir/b$b.v" "$w" "$h" --cell-size $((32 << (i % 3))) --uchar --seed $((i * 3 + b)); done
        vips bandjoin "$dir/b0.v $dir/b1.v $dir/b2.v" "$dir/rgb.v"
        vips copy "$dir/rgb.v" "$dir/img/$size-$i.jpg[Q=90]" --interpretation srgb
        vips copy "$dir/rgb.v" "$dir/img/$size-$i.png" --interpretation srgb
    done
done
ls "$dir/img" | while read -r f; do
    printf '{"sequence":[{"type":"image","image_path":"%s","und":true,"gen":true,"cond":true},{"type":"text","content":"x","loss":true}]}\n' "$f"
done >"$dir/all.jsonl"
for kind in jpg png; do
    grep "\.$kind\"" "$dir/all.jsonl" >"$dir/$kind.jsonl"
    "$READ" -q --root "$dir/img" "$dir/$kind.jsonl" --out "$dir/$kind.rec"
done
count=$((2 * N))

cat >"$dir/pil.py" <<'PY'
import sys, time, os
from multiprocessing import Pool
from PIL import Image, ImageOps

def target(rule, w, h):
    mx, mn, s, maxpix = rule
    md = lambda v: max(s, int(round(v / s) * s))
    sc = lambda w, h, k: (md(round(w * k)), md(round(h * k)))
    k = max(min(mx / max(w, h), 1.0), mn / min(w, h))
    nw, nh = sc(w, h, k)
    if nw * nh > maxpix:
        nw, nh = sc(nw, nh, maxpix / (nw * nh))
    if max(nw, nh) > mx:
        nw, nh = sc(nw, nh, mx / max(nw, nh))
    return nw, nh

def work(path):
    im = ImageOps.exif_transpose(Image.open(path))
    if im.mode == "RGBA" or im.info.get("transparency") is not None:
        im = im.convert("RGBA")
        white = Image.new("RGB", im.size, (255, 255, 255))
        white.paste(im, mask=im.split()[3])
        im = white
    else:
        im = im.convert("RGB")
    for rule in ((980, 378, 14, 2007040), (1024, 512, 16, 1806336)):
        im.resize(target(rule, *im.size), Image.BICUBIC).tobytes()

if __name__ == "__main__":
    procs, files = int(sys.argv[1]), sys.argv[2:]
    t0 = time.time()
    if procs == 1:
        for f in files: work(f)
    else:
        with Pool(procs) as p: p.map(work, files * procs, chunksize=1)
    print("%.4f" % (time.time() - t0))
PY

# seconds of wall time for P copies of bagel-image over one record file
# (the empty one, "$dir/empty.rec": their start-up alone)
: >"$dir/empty.rec"
run_img() {
    local p=$1 rec=$2 t0 t1
    t0=$(date +%s%N)
    for _ in $(seq 1 "$p"); do "$IMG" -q --root "$dir/img" -i "$rec" -o /dev/null & done
    wait
    t1=$(date +%s%N)
    awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.4f", ns / 1e9 }'
}
peak_kb() { # max RSS in kB of one bagel-image over a record file
    if [[ -x /usr/bin/time ]]; then
        /usr/bin/time -v "$IMG" -q --root "$dir/img" -i "$1" -o /dev/null 2>&1 >/dev/null | sed -n 's/.*Maximum resident set size (kbytes): //p'
    else
        "$IMG" -q --root "$dir/img" -i "$1" -o /dev/null & local pid=$! hwm=0
        while kill -0 $pid 2>/dev/null; do
            v=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\).*/\1/p' /proc/$pid/status 2>/dev/null || true)
            [[ -n "$v" ]] && hwm=$v
            sleep 0.05
        done
        echo "$hwm"
    fi
}

cpu="$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -n 1 || true)"
echo "# bench-image on $(hostname 2>/dev/null || echo '?'): $CORES CPUs, ${cpu:-unknown CPU}, $(uname -sr)"
echo "# $count files per kind (half 1024x768, half 2048x1536); both outputs (ViT 980/378/14, VAE 1024/512/16) from one decode; best of $REPEAT"
echo "# libvips $(vips --version 2>/dev/null | sed 's/vips-//'), Pillow $("${PY:-false}" -c 'import PIL; print(PIL.__version__)' 2>/dev/null || echo none), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %-12s %10s %10s %12s %12s %10s %10s %12s\n' kind who procs images/s per_core vs_pillow peak_MB start_s with_start
for kind in jpg png; do
    files=$(ls "$dir"/img/*."$kind" | tr '\n' ' ')
    for p in 1 "$CORES"; do
        t="" tp="" t0=""
        for _ in $(seq 1 "$REPEAT"); do
            x=$(run_img "$p" "$dir/$kind.rec")
            t=$(awk -v a="$x" -v b="${t:-1e9}" 'BEGIN { print (a < b ? a : b) }')
            x=$(run_img "$p" "$dir/empty.rec")
            t0=$(awk -v a="$x" -v b="${t0:-1e9}" 'BEGIN { print (a < b ? a : b) }')
            if [[ -n "$PY" ]]; then
                # shellcheck disable=SC2086
                x=$("$PY" "$dir/pil.py" "$p" $files)
                tp=$(awk -v a="$x" -v b="${tp:-1e9}" 'BEGIN { print (a < b ? a : b) }')
            fi
        done
        ips=$(awk -v n=$((count * p)) -v t="$t" -v t0="$t0" 'BEGIN { printf "%.1f", n / (t - t0) }')
        pc=$(awk -v x="$ips" -v p="$p" 'BEGIN { printf "%.1f", x / p }')
        if [[ -n "$PY" ]]; then
            pips=$(awk -v n=$((count * p)) -v t="$tp" 'BEGIN { printf "%.1f", n / t }')
            ppc=$(awk -v x="$pips" -v p="$p" 'BEGIN { printf "%.1f", x / p }')
            ratio=$(awk -v a="$pc" -v b="$ppc" 'BEGIN { printf "%.2fx", a / b }')
            # the same ratio with bagel-image's start-up counted in
            ratio0=$(awk -v n=$((count * p)) -v t="$t" -v b="$pips" 'BEGIN { printf "%.2fx", n / t / b }')
        fi
        mb=""
        [[ "$p" == 1 ]] && mb=$(awk -v k="$(peak_kb "$dir/$kind.rec")" 'BEGIN { printf "%.0f", k / 1024 }')
        printf '%-6s %-12s %10d %10s %12s %12s %10s %10s %12s\n' "$kind" bagel-image "$p" "$ips" "$pc" "${ratio:-}" "$mb" "$t0" \
            "${ratio0:-}"
        if [[ -n "$PY" ]]; then
            printf '%-6s %-12s %10d %10s %12s %12s %10s\n' "$kind" pillow "$p" "$pips" "$ppc" "" ""
        fi
    done
done
[[ -n "$PY" ]] || echo "Pillow not installed"
