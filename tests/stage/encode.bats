#!/usr/bin/env bats
# encode.bats — bagel-encode and bagel-decode: the identity autoencoder's
# latents decode to the vae pixels exactly; a FLUX-shaped autoencoder's
# moments have the shape and dtype the trainer reads, and training on them
# matches training with the trainer encoding the same pixels itself; a
# missing tensor, a sample without pixels, --drop-pixels; --vit features
# that a trainer with a frozen ViT uses in place of running it; the op
# profile that BAGEL_PROFILE=1 prints.

setup_file() {
    BIN=${BAGEL_BIN:-$PWD/build/bin}
    D=$(mktemp -d /tmp/bagel-encode-data-XXXXXX)
    "$BIN/bagel-synth" -q --out "$D/shapes" --seed 3 --count 12
    "$BIN/bagel-read" -q --root "$D/shapes" "$D"/shapes/*.jsonl \
      | "$BIN/bagel-tokenize" -q --tokenizer tests/fuzz/tiny-tokenizer.json \
      | "$BIN/bagel-image" -q --root "$D/shapes" --vae-max 32 --vae-min 16 --vit-max 56 --vit-min 28 \
      | "$BIN/bagel-cat" --raw -q --out "$D/pix.msgpack"
    "$BIN/bagel-read" -q --root "$D/shapes" "$D/shapes/t2i.jsonl" "$D/shapes/edit.jsonl" \
      | "$BIN/bagel-tokenize" -q --tokenizer tests/fuzz/tiny-tokenizer.json \
      | "$BIN/bagel-image" -q --root "$D/shapes" --vae-max 64 --vae-min 32 --vit-max 56 --vit-min 28 \
      | "$BIN/bagel-cat" --raw -q --out "$D/pix64.msgpack"
    export BAGEL_ENCODE_DATA="$D"
}

teardown_file() {
    rm -rf "$BAGEL_ENCODE_DATA"
}

setup() {
    BIN=${BAGEL_BIN:-$PWD/build/bin}
    D="$BAGEL_ENCODE_DATA"
    CFG="$PWD/tests/stage/data/train-mini.json"
    FCFG="$PWD/tests/stage/data/train-flux-mini.json"
    T=$(mktemp -d /tmp/bagel-bats-XXXXXX)
}

teardown() {
    rm -rf "$T"
}

# every gen image's vae pixels against DIR/<id>-<segment>.png, byte for byte
same_pixels() { # records.jsonl dir
    python3 - "$1" "$2" <<'PY'
import json, re, subprocess, sys
recs, d = sys.argv[1], sys.argv[2]
n = 0
for line in open(recs):
    r = json.loads(line)
    if r["type"] != "sample":
        continue
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", r["id"])
    for i, s in enumerate(r["segments"]):
        if "vae" not in s:
            continue
        png = "%s/%s-%d.png" % (d, safe, i)
        subprocess.run(["vips", "rawsave", png, png + ".raw"], check=True)
        got = open(png + ".raw", "rb").read()
        want = bytes(s["vae"]["data"])
        if got != want:
            sys.exit("%s: differs from the vae pixels" % png)
        n += 1
if n == 0:
    sys.exit("no images compared")
print(n, "images equal")
PY
}

@test "identity: encode then decode gives the vae pixels exactly (bf16 and f32)" {
    command -v python3 >/dev/null || skip "python3 is not installed"
    command -v vips >/dev/null || skip "the vips command is not installed"
    "$BIN/bagel-cat" --full -q "$D/pix.msgpack" >"$T/pix.jsonl"
    for dt in bf16 f32; do
        "$BIN/bagel-encode" -q --config "$CFG" --dtype $dt "$D/pix.msgpack" --out "$T/enc-$dt.msgpack"
        "$BIN/bagel-cat" "$T/enc-$dt.msgpack" | grep -q "\"latent\":{\"dtype\":\"$dt\",\"shape\":\[6,"
        "$BIN/bagel-decode" -q --config "$CFG" --out-dir "$T/png-$dt" "$T/enc-$dt.msgpack"
        run same_pixels "$T/pix.jsonl" "$T/png-$dt"
        echo "$output"
        [ "$status" -eq 0 ]
    done
}

@test "identity: bagel-train trains on the latents" {
    "$BIN/bagel-encode" -q --config "$CFG" --drop-pixels "$D/pix.msgpack" --out "$T/enc.msgpack"
    args=(-q --config "$CFG" --steps 3 --tokens 256 --max-tokens 400 --max-sample-tokens 400 --warmup 0 --seed 7)
    run "$BIN/bagel-train" "${args[@]}" --out "$T/lat" "$T/enc.msgpack"
    [ "$status" -eq 0 ]
    grep -q '"mse_tokens": *[1-9]' "$T/lat/metrics.jsonl"
    # no loss comparison: drawing the latents takes numbers from the packer's
    # generator (which the pixels' path does not), so the two runs' dropout and
    # noise differ; the FLUX test below compares like with like
    [ "$(grep -c '"step"' "$T/lat/metrics.jsonl")" -eq 3 ]
}

@test "FLUX-shaped: moments [2z, H/8, W/8]; training on them equals the trainer encoding the pixels" {
    "$BIN/../tests/tools/make-ae" "$FCFG" 5 "$T/ae.safetensors"
    "$BIN/bagel-encode" -q --config "$FCFG" --vae "$T/ae.safetensors" --dtype f32 "$D/pix64.msgpack" \
        --out "$T/enc.msgpack"
    "$BIN/bagel-cat" "$T/enc.msgpack" | grep -q '"latent":{"dtype":"f32","shape":\[8,[0-9]*,[0-9]*\]'
    # every latent is an eighth of its image along each side
    "$BIN/bagel-cat" "$T/enc.msgpack" | grep -o '"vae":{"dtype":"u8","shape":\[[0-9]*,[0-9]*,3\][^}]*},"latent":{"dtype":"f32","shape":\[[0-9]*,[0-9]*,[0-9]*\]' \
        | sed -E 's/.*\[([0-9]+),([0-9]+),3\].*\[([0-9]+),([0-9]+),([0-9]+)\]/\1 \2 \4 \5/' >"$T/shapes"
    [ -s "$T/shapes" ]
    awk '{ if ($1 != 8 * $3 || $2 != 8 * $4) exit 1 }' "$T/shapes"
    args=(-q --config "$FCFG" --steps 2 --tokens 64 --max-tokens 96 --max-sample-tokens 96 --warmup 0 --seed 7)
    run "$BIN/bagel-train" "${args[@]}" --out "$T/cached" "$T/enc.msgpack"
    [ "$status" -eq 0 ]
    grep -q '"mse_tokens": *[1-9]' "$T/cached/metrics.jsonl"
    run "$BIN/bagel-train" "${args[@]}" --vae "$T/ae.safetensors" --out "$T/live" "$D/pix64.msgpack"
    [ "$status" -eq 0 ]
    a=$(grep '"step"' "$T/cached/metrics.jsonl" | sed -E 's/.*"loss": ?([-0-9.e+]+).*/\1/')
    b=$(grep '"step"' "$T/live/metrics.jsonl" | sed -E 's/.*"loss": ?([-0-9.e+]+).*/\1/')
    echo "cached: $a live: $b"
    paste <(echo "$a") <(echo "$b") | awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > 1e-4) exit 1 } END { exit NR != 2 }'
}

@test "a tensor missing from ae.safetensors is a one-line fatal error naming it" {
    command -v python3 >/dev/null || skip "python3 is not installed"
    "$BIN/../tests/tools/make-ae" "$FCFG" 5 "$T/ae.safetensors"
    python3 - "$T/ae.safetensors" "$T/bad.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
h["encoder.conv_in.renamed"] = h.pop("encoder.conv_in.weight")
hb = json.dumps(h).encode()
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hb)) + hb + b[8 + n:])
PY
    run "$BIN/bagel-encode" -q --config "$FCFG" --vae "$T/bad.safetensors" "$D/pix64.msgpack" --out "$T/o.msgpack"
    [ "$status" -eq 3 ]
    [[ "$output" == *encoder.conv_in.weight* ]]
    # FLUX without --vae is refused too
    run "$BIN/bagel-encode" -q --config "$FCFG" "$D/pix64.msgpack" --out "$T/o.msgpack"
    [ "$status" -eq 3 ]
    [[ "$output" == *--vae* ]]
}

@test "a generation image without vae pixels is a reject naming the segment; one with a latent passes" {
    "$BIN/bagel-read" -q --root "$D/shapes" "$D/shapes/t2i.jsonl" \
      | "$BIN/bagel-tokenize" -q --tokenizer tests/fuzz/tiny-tokenizer.json >"$T/nopix.msgpack"
    run "$BIN/bagel-encode" -q --config "$CFG" "$T/nopix.msgpack" --out "$T/o.msgpack"
    [ "$status" -eq 0 ]
    "$BIN/bagel-cat" "$T/o.msgpack" | grep '"type":"reject"' | grep -q 'segments\[[0-9]*\]: a generation image without'
    [ "$("$BIN/bagel-cat" "$T/o.msgpack" | grep -c '^{"v":1,"type":"sample"')" -eq 0 ]
    # already encoded, pixels dropped: passes unchanged
    "$BIN/bagel-encode" -q --config "$CFG" --drop-pixels "$D/pix.msgpack" --out "$T/enc.msgpack"
    "$BIN/bagel-encode" -q --config "$CFG" "$T/enc.msgpack" --out "$T/again.msgpack"
    cmp <("$BIN/bagel-cat" "$T/enc.msgpack") <("$BIN/bagel-cat" "$T/again.msgpack")
}

@test "--drop-pixels removes vae and keeps vit; --sample stores a point" {
    "$BIN/bagel-encode" -q --config "$CFG" --drop-pixels "$D/pix.msgpack" --out "$T/enc.msgpack"
    "$BIN/bagel-cat" "$T/enc.msgpack" >"$T/enc.jsonl"
    ! grep -q '"vae":' "$T/enc.jsonl"
    grep -q '"latent":' "$T/enc.jsonl"
    grep -q '"vit":' "$T/enc.jsonl"
    [ "$(stat -c %s "$T/enc.msgpack")" -lt "$(stat -c %s "$D/pix.msgpack")" ] || true
    "$BIN/../tests/tools/make-ae" "$FCFG" 5 "$T/ae.safetensors"
    "$BIN/bagel-encode" -q --config "$FCFG" --vae "$T/ae.safetensors" --sample --dtype f32 "$D/pix64.msgpack" \
        --out "$T/s.msgpack"
    "$BIN/bagel-cat" --full "$T/s.msgpack" | grep -q '"latent":{"dtype":"f32","shape":\[8,'
    "$BIN/bagel-cat" --full "$T/s.msgpack" | grep -Eq -- '-30(\.0)?(,|\])'
}

# a stream of 32x32 and 48x48 images in runs of every length (one run longer
# than a batch), records with images of both sizes, a reject in the middle
# and the end records: OUT.msgpack from DIR's shapes
mixed_stream() { # dir out
    local d=$1 out=$2 s
    for s in 32 48; do
        "$BIN/bagel-read" -q --root "$d/shapes" "$d/shapes/t2i.jsonl" "$d/shapes/edit.jsonl" \
          | "$BIN/bagel-tokenize" -q --tokenizer tests/fuzz/tiny-tokenizer.json \
          | "$BIN/bagel-image" -q --root "$d/shapes" --vae-max $s --vae-min $s --vit-max 56 --vit-min 28 \
          | "$BIN/bagel-cat" --full -q >"$T/pix$s.jsonl"
    done
    python3 - "$T/pix32.jsonl" "$T/pix48.jsonl" >"$T/mixed.jsonl" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
samples = [i for i, r in enumerate(a) if r["type"] == "sample"]
pattern = "BBBBBBBBBBA" "BAABBBABAAAB" "ABABABABABAB"
out = []
for k, i in enumerate(samples):
    r = (b if pattern[k % len(pattern)] == "B" else a)[i]
    gens = [j for j, s in enumerate(r["segments"]) if s.get("kind") == "image" and "vae" in s]
    if k % 5 == 2 and len(gens) > 1:  # two sizes in one record
        other = (a if r is b[i] else b)[i]
        r["segments"][gens[0]]["vae"] = other["segments"][gens[0]]["vae"]
    if k == 14:  # a generation image without pixels: a reject between batched images
        del r["segments"][gens[-1]]["vae"]
    out.append(r)
out += [r for r in a if r["type"] != "sample"]
sizes = {tuple(s["vae"]["shape"]) for r in out if r["type"] == "sample" for s in r["segments"] if "vae" in s}
assert len(sizes) == 2, sizes
for r in out:
    print(json.dumps(r))
PY
    "$BIN/bagel-cat" --encode -q "$T/mixed.jsonl" >"$out"
}

@test "batching: mixed sizes give the same records, byte for byte, with --batch 1, 3 and 8 (file and pipe; --sample too)" {
    command -v python3 >/dev/null || skip "python3 is not installed"
    "$BIN/../tests/tools/make-ae" "$FCFG" 5 "$T/ae.safetensors"
    mixed_stream "$D" "$T/mixed.msgpack"
    # one thread: the images are tiny, and threads on a busy machine only contend
    enc=(env OMP_NUM_THREADS=1 "$BIN/bagel-encode" --config "$FCFG" --vae "$T/ae.safetensors")
    for mode in "--dtype f32" "--sample --seed 9"; do
        # shellcheck disable=SC2086
        "${enc[@]}" -q $mode --batch 1 "$T/mixed.msgpack" --out "$T/b1.msgpack"
        # shellcheck disable=SC2086
        "${enc[@]}" $mode --batch 8 "$T/mixed.msgpack" --out "$T/b8.msgpack" 2>"$T/b8.log"
        # shellcheck disable=SC2086
        "${enc[@]}" -q $mode --batch 3 "$T/mixed.msgpack" --out "$T/b3.msgpack"
        # shellcheck disable=SC2086
        cat "$T/mixed.msgpack" | "${enc[@]}" -q $mode --batch 8 >"$T/pipe.msgpack"
        cat "$T/b8.log"
        # batches did form: fewer calls than images
        calls=$(sed -n 's/.* images=\([0-9]*\) .* calls=\([0-9]*\) .*/\2/p' "$T/b8.log")
        images=$(sed -n 's/.* images=\([0-9]*\) .* calls=\([0-9]*\) .*/\1/p' "$T/b8.log")
        [ -n "$calls" ] && [ "$images" -gt 20 ] && [ "$calls" -lt $((images / 2)) ]
        cmp "$T/b1.msgpack" "$T/b8.msgpack"
        cmp "$T/b1.msgpack" "$T/b3.msgpack"
        cmp "$T/b1.msgpack" "$T/pipe.msgpack"
        # in input order, the reject in its place, every other sample with latents
        "$BIN/bagel-cat" "$T/b1.msgpack" >"$T/b1.jsonl"
        [ "$(sed -n 15p "$T/b1.jsonl" | grep -c '"type":"reject"')" -eq 1 ]
        [ "$(grep -c '"type":"reject"' "$T/b1.jsonl")" -eq 1 ]
        first_id='s/^\{"v":1,"type":"[a-z]*",("id":"[^"]*")?.*/\1/'
        cmp <(sed -E "$first_id" "$T/b1.jsonl") <("$BIN/bagel-cat" "$T/mixed.msgpack" | sed -E "$first_id")
        [ "$(grep -c '"latent":{"dtype":"[a-z0-9]*","shape":\[8,6,6\]' "$T/b1.jsonl")" -gt 0 ]
        [ "$(grep -c '"latent":{"dtype":"[a-z0-9]*","shape":\[8,4,4\]' "$T/b1.jsonl")" -gt 0 ]
    done
}

@test "batching: a partial batch is encoded when a pipe pauses, not held until more input" {
    command -v python3 >/dev/null || skip "python3 is not installed"
    "$BIN/../tests/tools/make-ae" "$FCFG" 5 "$T/ae.safetensors"
    mixed_stream "$D" "$T/mixed.msgpack"
    head -n 5 "$T/mixed.jsonl" | "$BIN/bagel-cat" --encode -q >"$T/h1.msgpack"
    tail -n +6 "$T/mixed.jsonl" | "$BIN/bagel-cat" --encode -q >"$T/h2.msgpack"
    enc=(env OMP_NUM_THREADS=1 "$BIN/bagel-encode" -q --config "$FCFG" --vae "$T/ae.safetensors" --batch 8)
    # the producer sends 5 records, then waits for the flag the test sets once
    # their latents came out
    { cat "$T/h1.msgpack"; while [ ! -e "$T/flag" ]; do sleep 0.1; done; cat "$T/h2.msgpack"; } \
        | "${enc[@]}" >"$T/live.msgpack" &
    pid=$!
    n=0
    for _ in $(seq 300); do
        n=$("$BIN/bagel-cat" -q "$T/live.msgpack" 2>/dev/null | grep -c '"latent":' || true)
        [ "$n" -ge 5 ] && break
        sleep 0.1
    done
    touch "$T/flag"
    wait "$pid"
    echo "records out before the pause ended: $n"
    [ "$n" -eq 5 ]
    "${enc[@]}" "$T/mixed.msgpack" --out "$T/file.msgpack"
    cmp "$T/live.msgpack" "$T/file.msgpack"
}

@test "--vit: the frozen ViT's output added to every understanding image; training from it matches running the ViT" {
    TR=(-q --config "$CFG" --tokens 96 --max-tokens 160 --max-sample-tokens 160 --warmup 1 --lr 1e-3 --seed 7)
    # weights to take the ViT from: one step of training
    "$BIN/bagel-train" "${TR[@]}" --out "$T/w" --steps 1 --save-every 1 "$D/pix.msgpack"
    W="$T/w/checkpoints/step-1/model.safetensors"
    [ -s "$W" ]
    run "$BIN/bagel-encode" --config "$CFG" --vit "$W" --dtype f32 -i "$D/pix.msgpack" -o "$T/feat.msgpack"
    [ "$status" -eq 0 ]
    [[ "$output" == *"vit_images="* ]]
    "$BIN/bagel-cat" <"$T/feat.msgpack" >"$T/feat.jsonl"
    python3 - "$T/feat.jsonl" <<'PY'
import json, sys
n = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    for s in r.get("segments", []):
        if s.get("kind") == "image" and s.get("und"):
            f, v = s["vit_features"], s["vit"]["shape"]
            assert f["dtype"] == "f32" and f["shape"] == [(v[0] // 14) * (v[1] // 14), 32], (f["shape"], v)
            n += 1
        else:
            assert "vit_features" not in s
assert n > 0
PY
    # the same training, from the features and from the images, ViT frozen
    "$BIN/bagel-train" "${TR[@]}" --init "$W" --freeze vit --out "$T/a" --steps 3 --save-every 0 "$D/pix.msgpack"
    # from the features with the ViT's patch embedding poisoned (NaN): it must not run
    python3 - "$W" "$T/poison.safetensors" <<'PY'
import json, struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
t = h["vit_model.vision_model.embeddings.patch_embedding.weight"]
assert t["dtype"] == "F32"
s, e = t["data_offsets"]
b[8 + n + s:8 + n + e] = struct.pack("<f", float("nan")) * ((e - s) // 4)
open(sys.argv[2], "wb").write(b)
PY
    "$BIN/bagel-train" "${TR[@]}" --init "$T/poison.safetensors" --freeze vit --out "$T/b" --steps 3 --save-every 0 \
      "$T/feat.msgpack"
    # (the ViT ran over other batches of rows there, so float sums may round
    # differently in the last bits: 1e-6)
    python3 - "$T/a/metrics.jsonl" "$T/b/metrics.jsonl" <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(p) if '"step"' in l] for p in sys.argv[1:3])
assert len(a) == len(b) == 3
for x, y in zip(a, b):
    assert abs(x["loss"] - y["loss"]) <= 1e-6 * abs(x["loss"]), (x["loss"], y["loss"])
PY
    # a features tensor of the wrong shape is a reject naming it
    "$BIN/bagel-cat" --full <"$T/feat.msgpack" | python3 -c '
import json, sys
done = False
for l in sys.stdin:
    r = json.loads(l)
    for s in r.get("segments", []):
        if not done and "vit_features" in s:
            s["vit_features"]["shape"][1] = 31
            s["vit_features"]["data"] = s["vit_features"]["data"][: s["vit_features"]["shape"][0] * 31]
            done = True
    print(json.dumps(r))' | "$BIN/bagel-cat" --encode -q -o "$T/bad.msgpack"
    "$BIN/bagel-train" "${TR[@]}" --init "$W" --freeze vit --out "$T/c" --steps 1 --save-every 0 "$T/bad.msgpack"
    grep -q 'vit_features must be f32 or bf16' "$T/c/rejects.jsonl"
    # a config without a ViT
    run "$BIN/bagel-encode" --config tiny --vit "$W" -i "$D/pix.msgpack" -o "$T/x.msgpack"
    [ "$status" -ne 0 ]
}

@test "BAGEL_PROFILE=1: every op's time and the convolutions' by shape on stderr; the records the same" {
    "$BIN/../tests/tools/make-ae" "$FCFG" 5 "$T/ae.safetensors"
    "$BIN/bagel-encode" -q --config "$FCFG" --vae "$T/ae.safetensors" "$D/pix64.msgpack" --out "$T/plain.msgpack"
    BAGEL_PROFILE=1 "$BIN/bagel-encode" -q --config "$FCFG" --vae "$T/ae.safetensors" "$D/pix64.msgpack" \
        --out "$T/prof.msgpack" 2>"$T/err"
    cat "$T/err"
    cmp "$T/plain.msgpack" "$T/prof.msgpack"
    grep -qE '^profile: [0-9.]+ ms a step in ops' "$T/err"
    grep -qE '^profile: conv2d_fwd +[1-9][0-9]* calls' "$T/err"
    grep -qE '^profile: groupnorm_fwd +[1-9][0-9]* calls' "$T/err"
    # by shape: the first convolution (3 channels in) and the mid-block's attention, marked dense
    grep -qE '^profile: +conv2d_fwd n[0-9]+ 3->[0-9]+ 3x3/1 at [0-9]+x[0-9]+ +[1-9][0-9]* calls' "$T/err"
    grep -qE '^profile: +attention_fwd [0-9]+ rows 1:1 heads d=[0-9]+ dense' "$T/err"
    # without the variable: no profile
    "$BIN/bagel-encode" -q --config "$FCFG" --vae "$T/ae.safetensors" "$D/pix64.msgpack" --out /dev/null 2>"$T/err2"
    ! grep -q '^profile:' "$T/err2"
}
