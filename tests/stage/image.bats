#!/usr/bin/env bats
# image.bats — bagel-image: sizes and pixels against Pillow's references
# (tests/data/image/README.md), the size rule at boundary sizes, one record
# out per record in, and every class of bad input becoming a reject.

setup() {
    BIN=${BAGEL_BIN:-$PWD/build/bin}
    READ="$BIN/bagel-read"
    IMG="$BIN/bagel-image"
    CAT="$BIN/bagel-cat"
    DATA="$BATS_TEST_DIRNAME/../data/image"
    CHECK="$BATS_TEST_DIRNAME/image_check.py"
    T=$(mktemp -d /tmp/bagel-bats-image-XXXXXX)
}

teardown() { rm -rf "$T"; }

# holds FILTER FILE: FILTER gives at least one value over FILE's records,
# and each is true (jq -e alone judges only the last record)
holds() { jq -n -e "[inputs | $1] | length > 0 and all" "$2"; }

# seq_line PATH FLAGS: a sequence-format line with one image and a loss text
seq_line() {
    printf '{"sequence":[{"type":"image","image_path":"%s",%s},{"type":"text","content":"x","loss":true}]}\n' "$1" "$2"
}

# pipe ROOT JSONL OUT [bagel-image options]: read | image into the record file OUT
pipe() {
    local root=$1 jsonl=$2 out=$3
    shift 3
    "$READ" -q --root "$root" "$jsonl" | "$IMG" -q --root "$root" "$@" -o "$out"
}

# solid_png LIST: for each line "FILE W H" of LIST, a one-colour RGB PNG
# (Python's standard library only)
solid_png() {
    python3 - "$1" <<'PY'
import struct, sys, zlib
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
for line in open(sys.argv[1]):
    path, w, h = line.split()
    w, h = int(w), int(h)
    row = b"\0" + bytes((200, 100, 50)) * w
    raw = zlib.compress(row * h, 1)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                          + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
PY
}

@test "golden: sizes equal Pillow's always, PSNR >= 35 dB per image (both outputs)" {
    command -v python3 >/dev/null || skip "python3 is not installed"
    for f in $(ls "$DATA/inputs"); do seq_line "$f" '"und":true,"gen":true,"cond":true'; done >"$T/all.jsonl"
    pipe "$DATA/inputs" "$T/all.jsonl" "$T/out.rec"
    run python3 "$CHECK" "$T/out.rec" "$DATA" --min-psnr 35
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"failures=0"* ]]
}

@test "resample: AVX-512, AVX2 and portable code and the PNG fast path all give Pillow's bytes (PSNR >= 35 dB, sizes equal)" {
    command -v python3 >/dev/null || skip "python3 is not installed"
    for f in $(ls "$DATA/inputs"); do seq_line "$f" '"und":true,"gen":true,"cond":true'; done >"$T/all.jsonl"
    for opts in "" --no-simd --no-avx512 --no-png-fast-path "--no-simd --no-shrink-on-load" "--no-avx512 --no-shrink-on-load"; do
        # shellcheck disable=SC2086
        pipe "$DATA/inputs" "$T/all.jsonl" "$T/out.rec" $opts
        run python3 "$CHECK" "$T/out.rec" "$DATA" --min-psnr 35 --report
        echo "$opts: $output"
        [ "$status" -eq 0 ]
        # every output decoded at full size is Pillow's, byte for byte: all 50
        # without shrink-on-load, all but the 2048x1536 JPEG's 2 with it; and
        # without the PNG fast path libvips flattens the RGBA PNG with its own
        # rounding (51 dB)
        want=48
        [[ "$opts" == *--no-shrink-on-load* ]] && want=50
        [[ "$opts" == *--no-png-fast-path* ]] && want=46
        [ "$(grep -c 'psnr=99.00' <<<"$output")" -eq "$want" ]
    done
}

@test "threads: libvips' pool (--threads 2, 4) gives the bytes of the default's evaluation on the calling thread" {
    for f in $(ls "$DATA/inputs"); do seq_line "$f" '"und":true,"gen":true,"cond":true'; done >"$T/all.jsonl"
    # without the PNG fast path every input goes through libvips
    pipe "$DATA/inputs" "$T/all.jsonl" "$T/one.rec" --no-png-fast-path
    [ "$("$CAT" --count "$T/one.rec" | jq .types.sample)" -ge 20 ]
    for n in 2 4; do
        pipe "$DATA/inputs" "$T/all.jsonl" "$T/pool.rec" --no-png-fast-path --threads "$n"
        cmp "$T/one.rec" "$T/pool.rec"
    done
}

# filtered_png DIR: RGB and RGBA PNGs, 1x1 to 203x11, whose rows use every
# filter type (None, Sub, Up, Average, Paeth; the first rows each in turn,
# the rest at random), with noisy content and alphas 0, 255 and between
# (Python's standard library only)
filtered_png() {
    python3 - "$1" <<'PY'
import random, struct, sys, zlib
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c
def filtered(t, row, prev, bpp):
    out = bytearray(len(row))
    for i, x in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = prev[i] if prev else 0
        c = prev[i - bpp] if prev and i >= bpp else 0
        out[i] = (x - (0, a, b, (a + b) >> 1, paeth(a, b, c))[t]) & 255
    return bytes(out)
rnd = random.Random(7)
for ctype, bpp in ((2, 3), (6, 4)):
    for w, h in ((1, 1), (2, 3), (5, 7), (37, 29), (64, 20), (203, 11)):
        prev, raw = None, b""
        for y in range(h):
            row = bytes((x * 7 + y * 3 + c * 50 + rnd.randrange(40)) & 255 if c < 3 else
                        rnd.choice((0, 255, rnd.randrange(256))) for x in range(w) for c in range(bpp))
            t = (y + w) % 5 if y < 5 else rnd.randrange(5)
            raw += bytes((t,)) + filtered(t, row, prev, bpp)
            prev = row
        name = "%s/%s-%dx%d.png" % (sys.argv[1], "rgb" if bpp == 3 else "rgba", w, h)
        open(name, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0))
                               + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
PY
}

@test "PNG fast path: every filter type, RGB and RGBA: SSE2 and portable unfiltering give the same bytes, Pillow's" {
    command -v python3 >/dev/null || skip "python3 is not installed"
    filtered_png "$T"
    for f in $(cd "$T" && ls ./*.png); do seq_line "${f#./}" '"und":true,"gen":true,"cond":true'; done >"$T/f.jsonl"
    # the VAE rule widened until the VAE output is the decode itself, unresized
    exact="--vae-max 65535 --vae-min 1 --vae-stride 1"
    # shellcheck disable=SC2086
    pipe "$T" "$T/f.jsonl" "$T/simd.rec" $exact
    # shellcheck disable=SC2086
    pipe "$T" "$T/f.jsonl" "$T/c.rec" $exact --no-simd
    "$CAT" "$T/simd.rec" >"$T/simd.txt"
    "$CAT" "$T/c.rec" >"$T/c.txt"
    [ "$(grep -c '"type":"sample"' "$T/simd.txt")" -eq 12 ]
    cmp "$T/simd.txt" "$T/c.txt"
    # RGB: the same bytes as libvips' own PNG loader (its RGBA flatten rounds
    # otherwise; Pillow is the reference for RGBA, below)
    # shellcheck disable=SC2086
    pipe "$T" <(grep '"rgb-' "$T/f.jsonl") "$T/v.rec" $exact --no-png-fast-path
    # shellcheck disable=SC2086
    pipe "$T" <(grep '"rgb-' "$T/f.jsonl") "$T/s.rec" $exact
    [ "$("$CAT" "$T/v.rec" | grep -c '"type":"sample"')" -eq 6 ]
    cmp <("$CAT" "$T/v.rec") <("$CAT" "$T/s.rec")
    # both outputs at the default rules, byte for byte Pillow's
    PY=""
    for p in /usr/bin/python3 python3; do
        if command -v "$p" >/dev/null && "$p" -c 'import PIL' 2>/dev/null; then PY=$p; break; fi
    done
    [ -n "$PY" ] || skip "Pillow is not installed (python3-pil)"
    for opts in "" --no-simd; do
        # shellcheck disable=SC2086
        pipe "$T" "$T/f.jsonl" "$T/d.rec" $opts
        run "$PY" "$CHECK" "$T/d.rec" --pillow "$T" --min-psnr 99 --report
        echo "$opts: $output"
        [ "$status" -eq 0 ]
        [[ "$output" == *"outputs=24 failures=0"* ]]
    done
}

@test "WebP: shrink-on-load (by 2 on a 4096x3072 WebP) stays within 35 dB of Pillow's result on the source" {
    command -v python3 >/dev/null || skip "python3 is not installed"
    command -v vips >/dev/null || skip "the vips command is not installed"
    # pixels doubled, so that the WebP shrunk by 2 is the 2048x1536 JPEG again, near enough
    vips zoom "$DATA/inputs/photo-2048x1536.jpg" "$T/z.v" 2 2
    vips copy "$T/z.v" "$T/big.webp[Q=95]"
    seq_line big.webp '"und":true,"gen":true,"cond":true' >"$T/w.jsonl"
    run bash -c "'$READ' -q --root '$T' '$T/w.jsonl' | '$IMG' --root '$T' -o '$T/w.rec' 2>&1"
    echo "$output"
    [[ "$output" == *"shrunk_on_load=1"* ]]
    run python3 "$CHECK" "$T/w.rec" "$DATA" --alias big.webp=photo-2048x1536.jpg --min-psnr 35 --report
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"psnr_checked=2 failures=0"* ]]
    run bash -c "'$READ' -q --root '$T' '$T/w.jsonl' | '$IMG' --root '$T' --no-shrink-on-load -o /dev/null 2>&1"
    [[ "$output" == *"shrunk_on_load=0"* ]]
}

@test "HEIF/AVIF: decoded where libvips has heifload (vs Pillow on the source), else a one-line reject" {
    command -v python3 >/dev/null || skip "python3 is not installed"
    command -v vips >/dev/null || skip "the vips command is not installed"
    if vips -l 2>/dev/null | grep -q heifload; then
        vips copy "$DATA/inputs/photo-1200x900.png" "$T/p.avif[Q=90,compression=av1]" ||
            skip "this libheif has no AV1 encoder to make the test file"
        vips copy "$DATA/inputs/photo-1200x900.png" "$T/p.heic[Q=90]" || rm -f "$T/p.heic"
        for f in "$T"/p.*; do seq_line "$(basename "$f")" '"und":true,"gen":true,"cond":true'; done >"$T/h.jsonl"
        pipe "$T" "$T/h.jsonl" "$T/h.rec"
        run python3 "$CHECK" "$T/h.rec" "$DATA" --alias p.avif=photo-1200x900.png --alias p.heic=photo-1200x900.png \
            --min-psnr 35 --report
        echo "$output"
        [ "$status" -eq 0 ]
        [[ "$output" == *"failures=0"* ]]
    else
        # an ftyp box with the avif brand and nothing a loader could use
        printf '\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf' >"$T/p.avif"
        seq_line p.avif '"und":true' >"$T/h.jsonl"
        "$READ" -q --root "$T" "$T/h.jsonl" | "$IMG" -q --root "$T" | "$CAT" >"$T/out.jsonl"
        holds 'select(.type=="reject") | .error | test("^p.avif: a HEIF/AVIF file, and this libvips has no HEIF loader")' "$T/out.jsonl"
    fi
}

@test "flags: und gives vit only, gen/cond gives vae only; text-only samples pass through" {
    cp "$DATA/inputs/small-200x120.png" "$T/a.png"
    {
        seq_line a.png '"und":true'
        printf '{"prompt":"p","image_path":"a.png"}\n' >"$T/t2i.jsonl"
    } >"$T/und.jsonl"
    printf '{"conversations":[{"from":"human","value":"hi"},{"from":"gpt","value":"ho"}]}\n' >"$T/text.jsonl"
    "$READ" -q --root "$T" "$T/und.jsonl" "$T/t2i.jsonl" "$T/text.jsonl" | "$IMG" -q --root "$T" | "$CAT" >"$T/out.jsonl"
    holds 'select(.type=="sample" and .task=="sequence") | .segments[0] | (.vit.shape == [378,630,3]) and (.vae == null)' "$T/out.jsonl"
    holds 'select(.type=="sample" and .task=="t2i") | .segments[1] | (.vae.shape == [512,848,3]) and (.vit == null)' "$T/out.jsonl"
    holds 'select(.type=="sample" and .task=="chat") | .segments | length == 2' "$T/out.jsonl"
    [ "$(jq -c 'select(.type=="end")' "$T/out.jsonl" | wc -l)" -eq 3 ]
}

@test "size rule: boundary sizes (round-half-to-even cases) match the reference formula, img_num 1 and 3" {
    command -v python3 >/dev/null || skip "python3 is not installed"
    : >"$T/one.jsonl"
    : >"$T/three.jsonl"
    grep -v '^#' "$DATA/sizes.tsv" | cut -f1,2 | sort -u | while read -r w h; do echo "$T/s-${w}x$h.png $w $h"; done >"$T/list"
    solid_png "$T/list"
    grep -v '^#' "$DATA/sizes.tsv" | while read -r w h n vw vh aw ah; do
        if [ "$n" -eq 1 ]; then
            seq_line "s-${w}x$h.png" '"und":true,"gen":true,"cond":true' >>"$T/one.jsonl"
            echo "s-${w}x$h.png vit $vw $vh" >>"$T/want"
            echo "s-${w}x$h.png vae $aw $ah" >>"$T/want"
        else
            p="s-${w}x$h.png"
            printf '{"sequence":[{"type":"image","image_path":"%s","und":true},{"type":"image","image_path":"%s","und":true},{"type":"image","image_path":"%s","und":true},{"type":"text","content":"x","loss":true}]}\n' "$p" "$p" "$p" >>"$T/three.jsonl"
            echo "$p vit3 $vw $vh" >>"$T/want"
        fi
    done
    "$READ" -q --root "$T" "$T/one.jsonl" | "$IMG" -q --root "$T" | "$CAT" |
        jq -r 'select(.type=="sample") | .segments[0] | "\(.path) vit \(.vit.shape[1]) \(.vit.shape[0])\n\(.path) vae \(.vae.shape[1]) \(.vae.shape[0])"' >"$T/got"
    "$READ" -q --root "$T" "$T/three.jsonl" | "$IMG" -q --root "$T" | "$CAT" |
        jq -r 'select(.type=="sample") | .segments[0] | "\(.path) vit3 \(.vit.shape[1]) \(.vit.shape[0])"' >>"$T/got"
    sort "$T/want" >"$T/w"
    sort "$T/got" >"$T/g"
    diff "$T/g" "$T/w"
    [ "$(wc -l <"$T/g")" -gt 150 ]
}

@test "options: --vae-max/min/stride/max-pixels and --vit-* change the rule" {
    cp "$DATA/inputs/photo-1200x900.png" "$T/p.png"
    seq_line p.png '"und":true,"gen":true,"cond":true' >"$T/p.jsonl"
    "$READ" -q --root "$T" "$T/p.jsonl" |
        "$IMG" -q --root "$T" --vae-max 512 --vae-min 256 --vae-stride 32 --vit-max 518 --vit-min 224 --vit-stride 14 |
        "$CAT" >"$T/out.jsonl"
    holds 'select(.type=="sample") | .segments[0] | (.vae.shape == [384,512,3]) and (.vit.shape == [392,518,3])' "$T/out.jsonl"
    "$READ" -q --root "$T" "$T/p.jsonl" | "$IMG" -q --root "$T" --vae-max-pixels 100000 | "$CAT" >"$T/out2.jsonl"
    # 1024x768 > 100000 px: scale 100000/786432 applied linearly -> 128x96, under min no more
    holds 'select(.type=="sample") | .segments[0].vae.shape == [96,128,3]' "$T/out2.jsonl"
}

@test "bad input: each a one-line reject naming the file, and the stage goes on" {
    command -v python3 >/dev/null || skip "python3 is not installed"
    cp "$DATA/inputs/photo-2048x1536.jpg" "$T/good.jpg"
    head -c 20000 "$T/good.jpg" >"$T/truncated.jpg"
    head -c 30000 "$DATA/inputs/photo-1200x900.png" >"$T/truncated.png"
    : >"$T/empty.png"
    echo "just some text, not an image" >"$T/text.jpg"
    cp "$DATA/inputs/small-200x120.png" "$T/png-named.jpg"
    python3 - "$T" <<'PY'
import struct, sys, zlib
d = sys.argv[1]
def chunk(t, b): return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b))
sig = b"\x89PNG\r\n\x1a\n"
# a bomb: 100000 x 100000 RGB claimed by a 60-byte file
open(d + "/bomb.png", "wb").write(sig + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
                                  + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
# a corrupt header: bit depth 7, colour type 9
open(d + "/corrupt.png", "wb").write(sig + chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 7, 9, 0, 0, 0))
                                     + chunk(b"IEND", b""))
good = open(d + "/good.jpg", "rb").read()
open(d + "/corrupt.jpg", "wb").write(good[:2] + b"\xff\xc0\x00\x05garbage" + good[200:])
PY
    mkdir "$T/root" "$T/outside"
    cp "$DATA/inputs/small-200x120.png" "$T/outside/secret.png"
    mv "$T"/*.jpg "$T"/*.png "$T/root/"
    ln -s ../outside/secret.png "$T/root/link.png"
    # links that stay inside the root are followed, an absolute target too
    # (openat2 beneath the root refuses that one; the realpath check decides)
    ln -s good.jpg "$T/root/inlink.jpg"
    ln -s "$T/root/good.jpg" "$T/root/abslink.jpg"
    for f in good.jpg missing.png truncated.jpg truncated.png empty.png text.jpg png-named.jpg bomb.png \
        corrupt.png corrupt.jpg link.png good.jpg inlink.jpg abslink.jpg; do
        seq_line "$f" '"und":true,"gen":true,"cond":true'
    done >"$T/bad.jsonl"
    run bash -c "'$READ' -q --root '$T/root' '$T/bad.jsonl' | '$IMG' -q --root '$T/root' --max-pixels 50000000 -o '$T/out.rec'"
    echo "$output"
    [ "$status" -eq 0 ]
    "$CAT" "$T/out.rec" >"$T/out.jsonl"
    # one record out per record in: 14 samples/rejects and the end
    [ "$(wc -l <"$T/out.jsonl")" -eq 15 ]
    "$CAT" --check "$T/out.rec"
    [ "$(jq -r 'select(.type=="sample") | .segments[0].path' "$T/out.jsonl" | sort | tr '\n' ' ')" = "abslink.jpg good.jpg good.jpg inlink.jpg png-named.jpg " ]
    jq -r 'select(.type=="reject") | "\(.stage)|\(.error)"' "$T/out.jsonl" >"$T/errors"
    cat "$T/errors"
    [ "$(wc -l <"$T/errors")" -eq 9 ]
    ! grep -v '^bagel-image|' "$T/errors"
    grep -q '^bagel-image|missing.png: No such file or directory$' "$T/errors"
    grep -q '^bagel-image|truncated.jpg: ' "$T/errors"
    grep -q '^bagel-image|truncated.png: ' "$T/errors"
    grep -q '^bagel-image|empty.png: empty file$' "$T/errors"
    grep -q '^bagel-image|text.jpg: not a known image format$' "$T/errors"
    grep -q '^bagel-image|bomb.png: 100000x100000: 10000000000 pixels, over the limit of 50000000 (--max-pixels)$' "$T/errors"
    grep -q '^bagel-image|corrupt.png: ' "$T/errors"
    grep -q '^bagel-image|corrupt.jpg: ' "$T/errors"
    grep -q '^bagel-image|link.png: escapes --root through a symbolic link$' "$T/errors"
    # a PNG named .jpg is decoded by its content, as Pillow does
    holds 'select(.type=="sample" and .segments[0].path=="png-named.jpg") | .segments[0].vae.shape == [512,848,3]' "$T/out.jsonl"
}

@test "bad input: an unreadable file (skipped as root: permissions do not bite)" {
    [ "$(id -u)" -ne 0 ] || skip "running as root"
    cp "$DATA/inputs/small-200x120.png" "$T/locked.png"
    chmod 000 "$T/locked.png"
    seq_line locked.png '"und":true' >"$T/l.jsonl"
    "$READ" -q --root "$T" "$T/l.jsonl" | "$IMG" -q --root "$T" | "$CAT" >"$T/out.jsonl"
    holds 'select(.type=="reject") | .error == "locked.png: Permission denied"' "$T/out.jsonl"
}

@test "--timeout-ms: an image over the deadline becomes a reject; rejects and ends pass untouched" {
    cp "$DATA/inputs/photo-2048x1536.jpg" "$T/big.jpg"
    cp "$DATA/inputs/small-200x120.png" "$T/small.png"
    seq_line big.jpg '"und":true,"gen":true,"cond":true' >"$T/t.jsonl"
    echo '{"bad' >>"$T/t.jsonl"
    printf '{"conversations":[{"from":"human","value":"hi"},{"from":"gpt","value":"ho"}]}\n' >>"$T/t.jsonl"
    "$READ" -q --root "$T" "$T/t.jsonl" | "$IMG" -q --root "$T" --timeout-ms 1 --no-shrink-on-load | "$CAT" >"$T/out.jsonl"
    holds 'select(.type=="reject" and .stage=="bagel-image") | .error | test("^big.jpg: .*took over 1 ms \\(--timeout-ms\\)$")' "$T/out.jsonl"
    holds 'select(.type=="reject" and .stage=="bagel-read") | .seq == 2' "$T/out.jsonl"
    holds 'select(.type=="sample") | .seq == 3' "$T/out.jsonl"
    holds 'select(.type=="end") | .count == 3' "$T/out.jsonl"
}

@test "usage: --root is required and must be a directory" {
    run "$IMG" -q
    [ "$status" -eq 2 ]
    [[ "$output" == *"--root: missing"* ]]
    run "$IMG" -q --root /nonexistent
    [ "$status" -eq 2 ]
    run "$IMG" -q --root /tmp --vit-img-num 2
    [ "$status" -eq 2 ]
}
