#!/usr/bin/env bash
# image-fidelity.sh — bagel-image against Pillow (BAGEL's transforms) on real
# photographs: Debian's gnome-backgrounds (4096x4096 WebPs) and
# mate-backgrounds (JPEG photographs up to 5640x3172, RGB, RGBA, grey+alpha
# and ICC-tagged PNGs). Every image's ViT and VAE outputs must have Pillow's
# size and reach --min-psnr (35 dB) against Pillow's; prints one line per
# image and the minimum per output. Needs the network once (apt-get download,
# no install) and python3-pil; numpy makes it faster.
# Usage: image-fidelity.sh [DIR] [bagel-image options]
#   DIR: use the images under DIR instead of downloading (default: download
#   into $CACHE, /tmp/bagel-image-photos). BUILD picks the build directory.
set -euo pipefail

BUILD="${BUILD:-build}"
IMG="$BUILD/bin/bagel-image"
READ="$BUILD/bin/bagel-read"
CHECK="$(dirname "$0")/../../tests/stage/image_check.py"
[[ -x "$IMG" && -x "$READ" ]] || { echo "image-fidelity.sh: $IMG: not built; run make BUILD=$BUILD" >&2; exit 1; }
/usr/bin/python3 -c 'import PIL' 2>/dev/null || { echo "image-fidelity.sh: needs Pillow: apt-get install python3-pil" >&2; exit 1; }

if [[ $# -gt 0 && -d "$1" ]]; then
    root="$1"
    shift
else
    root="${CACHE:-/tmp/bagel-image-photos}"
    if [[ ! -d "$root/usr/share/backgrounds" ]]; then
        mkdir -p "$root/deb"
        (cd "$root/deb" && apt-get download gnome-backgrounds mate-backgrounds)
        for d in "$root"/deb/*.deb; do dpkg -x "$d" "$root"; done
        echo "# $(cd "$root/deb" && ls ./*.deb | sed 's#^\./##' | tr '\n' ' ')"
    fi
    root="$root/usr/share/backgrounds"
fi
tmp="$(mktemp -d /tmp/bagel-image-fidelity-XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
(cd "$root" && find . -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' -o -iname '*.webp' -o -iname '*.gif' \
    -o -iname '*.tif' -o -iname '*.tiff' \) | sed 's#^\./##' | LC_ALL=C sort) | while read -r f; do
    printf '{"sequence":[{"type":"image","image_path":"%s","und":true,"gen":true,"cond":true},{"type":"text","content":"x","loss":true}]}\n' "$f"
done >"$tmp/all.jsonl"
echo "# $(wc -l <"$tmp/all.jsonl") images under $root; bagel-image $*; Pillow $(/usr/bin/python3 -c 'import PIL; print(PIL.__version__)'), libvips $(vips --version 2>/dev/null | sed 's/vips-//')"
"$READ" -q --root "$root" "$tmp/all.jsonl" | "$IMG" -q --root "$root" "$@" -o "$tmp/out.rec"
/usr/bin/python3 "$CHECK" "$tmp/out.rec" --pillow "$root" --min-psnr "${MIN_PSNR:-35}" --report
