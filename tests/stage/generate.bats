#!/usr/bin/env bats
# generate.bats — bagel-generate end to end on a small model (tests/stage/data/
# train-mini.json, deterministic test weights, or a checkpoint bagel-train
# wrote) with the tiny test tokenizer: prompts on the command line (images,
# edits, captions, text), sample records in and out with bagel-eval rows,
# reproducibility by seed and independence of the batch, the trainer's
# sample generations in report.html, and each kind of bad input.

setup_file() {
    BIN=${BAGEL_BIN:-$PWD/build/bin}
    D=$(mktemp -d /tmp/bagel-generate-data-XXXXXX)
    "$BIN/bagel-synth" -q --out "$D/shapes" --seed 5 --count 8
    for f in t2i i2t edit vqa; do head -2 "$D/shapes/$f.jsonl"; done >"$D/shapes/mix.jsonl"
    "$BIN/bagel-read" -q --root "$D/shapes" "$D/shapes/mix.jsonl" \
      | "$BIN/bagel-tokenize" -q --tokenizer tests/fuzz/tiny-tokenizer.json \
      | "$BIN/bagel-image" -q --root "$D/shapes" --vae-max 32 --vae-min 16 --vit-max 56 --vit-min 28 \
      | "$BIN/bagel-cat" --raw -q --out "$D/mix.msgpack"
    export BAGEL_GEN_DATA="$D"
}

teardown_file() {
    rm -rf "$BAGEL_GEN_DATA"
}

setup() {
    BIN=${BAGEL_BIN:-$PWD/build/bin}
    GEN=("$BIN/bagel-generate" --config "$PWD/tests/stage/data/train-mini.json" --init 3
         --tokenizer tests/fuzz/tiny-tokenizer.json)
    D=$BAGEL_GEN_DATA
    T=$(mktemp -d /tmp/bagel-bats-XXXXXX)
}

teardown() {
    rm -rf "$T"
}

png_size() { # WxH of a PNG from its header
    python3 - "$1" <<'EOF'
import struct, sys
b = open(sys.argv[1], "rb").read(24)
assert b[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
print("%dx%d" % struct.unpack(">II", b[16:24]))
EOF
}

@test "text-to-image: one PNG a prompt at --size, one JSON line each; a seed gives the same bytes" {
    run "${GEN[@]}" --prompt "a red circle" --prompt "a blue square" --size 32x16 --steps 4 --out-dir "$T/a"
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -ge 2 ]
    [[ "$output" == *'"prompt":"a red circle","file":"'"$T/a/image_000.png"'"'* ]]
    [ "$(png_size "$T/a/image_000.png")" = "32x16" ]
    [ "$(png_size "$T/a/image_001.png")" = "32x16" ]
    # the same seed: the same bytes; another seed: other pixels
    "${GEN[@]}" -q --prompt "a red circle" --prompt "a blue square" --size 32x16 --steps 4 --out-dir "$T/b" >/dev/null
    cmp "$T/a/image_000.png" "$T/b/image_000.png"
    cmp "$T/a/image_001.png" "$T/b/image_001.png"
    "${GEN[@]}" -q --prompt "a red circle" --size 32x16 --steps 4 --seed 9 --out-dir "$T/c" >/dev/null
    ! cmp -s "$T/a/image_000.png" "$T/c/image_000.png"
}

@test "an image does not depend on the batch it was drawn in" {
    "${GEN[@]}" -q --prompt "one" --prompt "two" --prompt "three" --size 16x16 --steps 4 --batch 3 \
      --out-dir "$T/b3" >/dev/null
    "${GEN[@]}" -q --prompt "one" --prompt "two" --prompt "three" --size 16x16 --steps 4 --batch 1 \
      --out-dir "$T/b1" >/dev/null
    for i in 000 001 002; do
        python3 - "$T/b1/image_$i.png" "$T/b3/image_$i.png" <<'EOF'
import sys, zlib
def pixels(p):
    b = open(p, "rb").read(); i = 8; data = b""
    while i < len(b):
        n = int.from_bytes(b[i:i + 4], "big"); t = b[i + 4:i + 8]
        if t == b"IDAT": data += b[i + 8:i + 8 + n]
        i += 12 + n
    return zlib.decompress(data)
a, c = pixels(sys.argv[1]), pixels(sys.argv[2])
diff = max(abs(x - y) for x, y in zip(a, c))
assert len(a) == len(c) and diff <= 1, "batched and alone differ by %d levels" % diff
EOF
    done
}

@test "text answers: greedy by default, the same with --batch 1 and 4; sampling is reproducible" {
    run "${GEN[@]}" --text --prompt "what is it" --prompt "hello" --prompt "a cat" --max-tokens 6 --batch 4
    [ "$status" -eq 0 ]
    echo "$output" | grep '"text":' >"$T/b4"
    [ "$(wc -l <"$T/b4")" -eq 3 ]
    "${GEN[@]}" -q --text --prompt "what is it" --prompt "hello" --prompt "a cat" --max-tokens 6 --batch 1 \
      | grep '"text":' >"$T/b1"
    cmp "$T/b1" "$T/b4"
    "${GEN[@]}" -q --text --prompt "hello" --max-tokens 6 --temperature 1.5 --top-k 40 --top-p 0.9 --seed 4 >"$T/s1"
    "${GEN[@]}" -q --text --prompt "hello" --max-tokens 6 --temperature 1.5 --top-k 40 --top-p 0.9 --seed 4 >"$T/s2"
    cmp "$T/s1" "$T/s2"
}

@test "an edit of --image and a caption of --caption" {
    img=$(ls "$D"/shapes/images/*.png | head -1)
    run "${GEN[@]}" --image "$img" --prompt "make it blue" --steps 4 --out-dir "$T/e"
    [ "$status" -eq 0 ]
    [ -s "$T/e/image_000.png" ]
    # the edit keeps the input's size after the VAE rule (32 max, 16 min, stride 4)
    size=$(png_size "$T/e/image_000.png")
    [[ "$size" =~ ^(32|16|20|24|28)x(32|16|20|24|28)$ ]]
    run "${GEN[@]}" --caption "$img" --max-tokens 5
    [ "$status" -eq 0 ]
    [[ "$output" == *'"prompt":"","image":"'"$img"'","text":'* ]]
}

@test "records: every sample's target generated into the record, bagel-eval rows for text targets" {
    run "${GEN[@]}" -i "$D/mix.msgpack" -o "$T/out.msgpack" --rows "$T/rows.jsonl" --max-tokens 5 --steps 3 \
      --out-dir "$T/png" --batch 3
    [ "$status" -eq 0 ]
    [[ "$output" == *"texts=4 images=4 rejects=0"* ]]
    "$BIN/bagel-cat" <"$T/out.msgpack" >"$T/out.jsonl"
    python3 - "$T/out.jsonl" "$T/rows.jsonl" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
samples = [r for r in recs if r["type"] == "sample"]
assert len(samples) == 8 and recs[-1]["type"] == "end", [r["type"] for r in recs]
for r in samples:
    segs = r["segments"]
    done = [s for s in segs if "generated" in s or "generated_image" in s]
    assert len(done) == 1, (r["id"], segs)
    s = done[0]
    # the target is the last segment with a loss
    assert s is [x for x in segs if x.get("loss")][-1]
    if "generated_image" in s:
        assert s["generated_image"]["shape"] == s["vae"]["shape"], (s["generated_image"]["shape"], s["vae"]["shape"])
        assert s["generated_path"].endswith(".png")
    else:
        assert isinstance(s["generated"], str) and s["generated_tokens"]["dtype"] == "i32"
rows = [json.loads(l) for l in open(sys.argv[2])]
assert len(rows) == 4
for row in rows:
    assert set(row) == {"id", "prediction", "references"} and len(row["references"]) == 1
EOF
    [ "$(ls "$T/png" | wc -l)" -eq 4 ]
    # bagel-eval reads the rows
    if [ -x "$BIN/bagel-eval" ]; then
        run "$BIN/bagel-eval" --metrics bleu,rouge "$T/rows.jsonl"
        [ "$status" -eq 0 ]
    fi
}

@test "records: a sample that cannot be generated is a reject naming why; the others go on" {
    # the first sample loses its loss flags: nothing to generate
    "$BIN/bagel-cat" --full <"$D/mix.msgpack" | python3 -c '
import json, sys
first = True
for l in sys.stdin:
    r = json.loads(l)
    if first and r["type"] == "sample":
        for s in r["segments"]:
            s["loss"] = False
        first = False
    print(json.dumps(r))' | "$BIN/bagel-cat" --encode -q -o "$T/in.msgpack"
    run "${GEN[@]}" -i "$T/in.msgpack" -o "$T/out.msgpack" --max-tokens 3 --steps 3
    [ "$status" -eq 0 ]
    [[ "$output" == *"nothing to generate: no segment is marked"* ]]
    [[ "$output" == *"texts=4 images=3 rejects=1"* ]]
    [ "$("$BIN/bagel-cat" <"$T/out.msgpack" | grep -c '^{"v":1,"type":"sample"')" -eq 7 ]
    [ "$("$BIN/bagel-cat" <"$T/out.msgpack" | grep -c '^{"v":1,"type":"reject"')" -eq 1 ]
}

@test "bad input: no model, a bad size, a prompt longer than the context, a missing checkpoint" {
    run "$BIN/bagel-generate" --prompt "x"
    [ "$status" -eq 2 ]
    [[ "$output" == *"--model or --config: missing"* ]]
    run "${GEN[@]}" --prompt "x" --size 30x30
    [ "$status" -eq 2 ]
    [[ "$output" == *"--size 30x30: must be multiples of 4 up to 32"* ]]
    long=$(printf 'word %.0s' $(seq 1 200))
    run "${GEN[@]}" --text --prompt "$long" --max-context 64 --max-tokens 8
    [ "$status" -eq 1 ]
    [[ "$output" == *"prompt 0: the prompt and up to 8 new tokens take"*"more than the 64 of the context"* ]]
    run "$BIN/bagel-generate" --model "$T/nothing" --prompt "x"
    [ "$status" -eq 2 ]
    [[ "$output" == *"$T/nothing"* ]]
    mkdir -p "$T/ck"
    run "$BIN/bagel-generate" --model "$T/ck" --config "$PWD/tests/stage/data/train-mini.json" --prompt "x" \
      --tokenizer tests/fuzz/tiny-tokenizer.json
    [ "$status" -eq 3 ]
    [[ "$output" == *"$T/ck"* ]]
    run "${GEN[@]}" --image /nonexistent.png --prompt "x"
    [ "$status" -eq 2 ]
    [[ "$output" == *"/nonexistent.png: No such file"* ]]
}

@test "the trainer's samples: every --sample-every steps with the EMA weights, shown in report.html" {
    "$BIN/bagel-train" --config "$PWD/tests/stage/data/train-mini.json" -q --out "$T/run" --steps 4 \
      --tokens 96 --max-tokens 160 --max-sample-tokens 160 --warmup 1 --lr 1e-3 --save-every 0 \
      --tokenizer tests/fuzz/tiny-tokenizer.json --sample-every 2 --sample-prompts "$D/mix.msgpack" \
      --sample-count 4 --sample-steps 3 "$D/mix.msgpack" 2>"$T/train.log" || { cat "$T/train.log"; false; }
    [ -d "$T/run/samples/step-2" ] && [ -d "$T/run/samples/step-4" ]
    [ "$(grep -c '"step":2,' "$T/run/samples/index.jsonl")" -eq 4 ]
    [ "$(grep -c '"step":4,' "$T/run/samples/index.jsonl")" -eq 4 ]
    grep -q '"kind":"image"' "$T/run/samples/index.jsonl"
    grep -q '"kind":"text"' "$T/run/samples/index.jsonl"
    grep -q '<h2>Samples</h2>' "$T/run/report.html"
    grep -q 'samples/step-4/0.png' "$T/run/report.html"
    grep -q 'Learning rate' "$T/run/report.html"
    # without prompts --sample-every is a usage error
    run "$BIN/bagel-train" --config "$PWD/tests/stage/data/train-mini.json" --out "$T/run2" --sample-every 2
    [ "$status" -eq 2 ]
    [[ "$output" == *"--sample-every: needs --sample-prompts"* ]]
}
