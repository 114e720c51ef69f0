#!/usr/bin/env bats
# train.bats — bagel-train end to end on a small model (tests/stage/data/
# train-mini.json) and the synthetic dataset tokenized with the tiny test
# tokenizer: exact resume, a kill -9 during a run, rejects, validation and
# early stopping, non-finite steps, a corrupt checkpoint, the memory refusal,
# and the TensorBoard files read back by an independent reader.

setup_file() {
    BIN=${BAGEL_BIN:-$PWD/build/bin}
    D=$(mktemp -d /tmp/bagel-train-data-XXXXXX)
    "$BIN/bagel-synth" -q --out "$D/shapes" --seed 3 --count 24
    "$BIN/bagel-read" -q --root "$D/shapes" "$D"/shapes/*.jsonl \
      | "$BIN/bagel-tokenize" -q --tokenizer tests/fuzz/tiny-tokenizer.json \
      | "$BIN/bagel-image" -q --root "$D/shapes" --vae-max 32 --vae-min 16 --vit-max 56 --vit-min 28 \
      | "$BIN/bagel-cat" --raw -q --out "$D/data.msgpack"
    export BAGEL_TRAIN_DATA="$D"
}

teardown_file() {
    rm -rf "$BAGEL_TRAIN_DATA"
}

setup() {
    BIN=${BAGEL_BIN:-$PWD/build/bin}
    TRAIN="$BIN/bagel-train"
    CFG="$PWD/tests/stage/data/train-mini.json"
    DATA="$BAGEL_TRAIN_DATA/data.msgpack"
    T=$(mktemp -d /tmp/bagel-bats-XXXXXX)
    # small budgets: a few samples per micro-batch
    ARGS=(--config "$CFG" -q --tokens 96 --max-tokens 160 --max-sample-tokens 160 --warmup 2 --lr 1e-3
          --buffer 4 --seed 7)
}

teardown() {
    rm -rf "$T"
}

losses() { # step and loss of each metrics line, in order
    grep '"step"' "$1/metrics.jsonl" | sed -E 's/.*"step": ?([0-9]+).*"loss": ?([-0-9.e+]+).*/\1 \2/' | sort -n
}

@test "a run writes checkpoints, metrics, config, TensorBoard files; the loss falls" {
    run "$TRAIN" "${ARGS[@]}" --out "$T/run" --steps 12 --save-every 6 --tokenizer tests/fuzz/tiny-tokenizer.json "$DATA"
    [ "$status" -eq 0 ]
    cmp tests/fuzz/tiny-tokenizer.json "$T/run/checkpoints/step-12/tokenizer.json"
    [ -f "$T/run/checkpoints/step-6/model.safetensors" ]
    [ -f "$T/run/checkpoints/step-12/ema.safetensors" ]
    [ -f "$T/run/checkpoints/step-12/optimizer.safetensors" ]
    [ -f "$T/run/checkpoints/step-12/llm_config.json" ]
    [ -f "$T/run/checkpoints/step-12/vit_config.json" ]
    [ -f "$T/run/config.json" ]
    [ "$(grep -c '"step"' "$T/run/metrics.jsonl")" -eq 12 ]
    first=$(losses "$T/run" | head -3 | awk '{s += $2} END {print s / 3}')
    last=$(losses "$T/run" | tail -3 | awk '{s += $2} END {print s / 3}')
    awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }'
}

@test "TensorBoard: an independent reader finds every step's scalars, CRCs valid" {
    "$TRAIN" "${ARGS[@]}" --out "$T/run" --steps 4 "$DATA"
    python3 tests/unit/data/tb/read_events.py "$T"/run/tb/events.out.tfevents.* >"$T/events.jsonl"
    [ "$(grep -c '"train/loss"' "$T/events.jsonl")" -eq 4 ]
    [ "$(grep -c '"train/lr"' "$T/events.jsonl")" -eq 4 ]
}

@test "exact resume: 4 steps, stop, 4 more == 8 steps at once (losses and weights bit-identical)" {
    "$TRAIN" "${ARGS[@]}" --out "$T/a" --steps 8 --save-every 4 "$DATA"
    "$TRAIN" "${ARGS[@]}" --out "$T/b" --steps 4 "$DATA"
    "$TRAIN" "${ARGS[@]}" --out "$T/b" --steps 8 --resume auto "$DATA"
    diff <(losses "$T/a") <(losses "$T/b")
    cmp "$T/a/checkpoints/step-8/model.safetensors" "$T/b/checkpoints/step-8/model.safetensors"
    cmp "$T/a/checkpoints/step-8/ema.safetensors" "$T/b/checkpoints/step-8/ema.safetensors"
    cmp "$T/a/checkpoints/step-8/optimizer.safetensors" "$T/b/checkpoints/step-8/optimizer.safetensors"
}

@test "exact resume with the input restarted at the saved position (bagel-read --skip)" {
    D="$BAGEL_TRAIN_DATA"
    "$TRAIN" "${ARGS[@]}" --out "$T/a" --steps 6 --save-every 3 "$DATA"
    "$TRAIN" "${ARGS[@]}" --out "$T/b" --steps 3 "$DATA"
    st="$T/b/checkpoints/step-3/trainer_state.json"
    next=$(tr -d ' \n' <"$st" | sed -E 's/.*"next":([0-9]+).*/\1/')
    first_out=$(tr -d ' \n' <"$st" | sed -E 's/.*"outstanding":\[([0-9]*).*/\1/')
    pos=${first_out:-$next}
    [ "$pos" -le "$next" ]
    "$BIN/bagel-read" -q --root "$D/shapes" --skip "$pos" "$D"/shapes/*.jsonl \
      | "$BIN/bagel-tokenize" -q --tokenizer tests/fuzz/tiny-tokenizer.json \
      | "$BIN/bagel-image" -q --root "$D/shapes" --vae-max 32 --vae-min 16 --vit-max 56 --vit-min 28 \
      | "$TRAIN" "${ARGS[@]}" --out "$T/b" --steps 6 --resume auto --input-offset "$pos"
    diff <(losses "$T/a") <(losses "$T/b")
    cmp "$T/a/checkpoints/step-6/model.safetensors" "$T/b/checkpoints/step-6/model.safetensors"
    # an input that starts after the saved position cannot resume exactly
    run "$TRAIN" "${ARGS[@]}" --out "$T/b" --steps 9 --resume "$T/b/checkpoints/step-3" --input-offset 1000000 "$DATA"
    [ "$status" -eq 3 ]
    [[ "$output" == *"after the saved position"* ]]
}

@test "kill -9 during a run: the last complete checkpoint resumes, half-written ones are ignored" {
    # a checkpoint every step, so the kill most likely lands in one
    "$TRAIN" "${ARGS[@]}" --out "$T/run" --steps 100000 --save-every 1 --keep-last 2 \
        "$DATA" "$DATA" "$DATA" "$DATA" "$DATA" "$DATA" "$DATA" "$DATA" &
    pid=$!
    for i in $(seq 1 300); do
        [ "$(grep -c '"step"' "$T/run/metrics.jsonl" 2>/dev/null)" -ge 3 ] && break
        sleep 0.1
    done
    sleep 0.$((RANDOM % 5))
    kill -9 $pid
    wait $pid || true
    last=$(ls "$T/run/checkpoints" | sed -n 's/^step-\([0-9]*\)$/\1/p' | sort -n | tail -1)
    [ -f "$T/run/checkpoints/step-$last/trainer_state.json" ]
    mkdir -p "$T/run/checkpoints/step-9999.tmp" "$T/run/checkpoints/step-9998"
    run "$TRAIN" "${ARGS[@]}" --out "$T/run" --steps $((last + 3)) --resume auto --save-every 0 \
        "$DATA" "$DATA" "$DATA" "$DATA" "$DATA" "$DATA" "$DATA" "$DATA"
    [ "$status" -eq 0 ]
    [[ "$output" != *"step-9999"* ]]
    [[ "$output" != *"step-9998"* ]]
    [ -f "$T/run/checkpoints/step-$((last + 3))/trainer_state.json" ]
    [ "$(grep '"step"' "$T/run/metrics.jsonl" | tail -1 | sed -E 's/.*"step": ?([0-9]+).*/\1/')" -eq $((last + 3)) ]
}

@test "a sample longer than the budget is a reject in rejects.jsonl, the run goes on" {
    run "$TRAIN" "${ARGS[@]}" --out "$T/run" --steps 3 --max-sample-tokens 70 "$DATA"
    [ "$status" -eq 0 ]
    grep -q 'exceed the per-sample budget of 70' "$T/run/rejects.jsonl"
    [ "$(grep -c '"step"' "$T/run/metrics.jsonl")" -eq 3 ]
}

@test "validation: val lines in metrics, the best checkpoint kept, early stop with patience" {
    run "$TRAIN" "${ARGS[@]}" --out "$T/run" --steps 40 --save-every 0 --val "$DATA" --val-every 2 --patience 1 \
        --lr 0.05 --warmup 0 "$DATA"
    [ "$status" -eq 0 ]
    grep -q '"val_loss"' "$T/run/metrics.jsonl"
    [ -L "$T/run/checkpoints/best" ]
    [ -f "$T/run/checkpoints/best/model.safetensors" ]
}

@test "non-finite steps are skipped with a warning, and K in a row stop the run" {
    BAGEL_TEST_NAN_STEPS=2 run "$TRAIN" "${ARGS[@]}" --out "$T/a" --steps 4 "$DATA"
    [ "$status" -eq 0 ]
    [[ "$output" == *"not finite, the step is skipped"* ]]
    BAGEL_TEST_NAN_STEPS=1,2,3 run "$TRAIN" "${ARGS[@]}" --out "$T/b" --steps 6 --max-bad-steps 3 "$DATA"
    [ "$status" -eq 3 ]
    [[ "$output" == *"3 non-finite steps in a row"* ]]
}

@test "a corrupt checkpoint is a clear error naming the file" {
    "$TRAIN" "${ARGS[@]}" --out "$T/run" --steps 2 "$DATA"
    f="$T/run/checkpoints/step-2/model.safetensors"
    head -c 1000 "$f" >"$f.cut" && mv "$f.cut" "$f"
    run "$TRAIN" "${ARGS[@]}" --out "$T/run" --steps 4 --resume auto "$DATA"
    [ "$status" -eq 3 ]
    [[ "$output" == *"step-2/model.safetensors"* ]]
    [ "$(echo "$output" | grep -c 'bagel-train: ')" -ge 1 ]
}

@test "a plan beyond --max-memory is refused before step 0" {
    run "$TRAIN" "${ARGS[@]}" --out "$T/run" --steps 2 --max-memory 1M "$DATA"
    [ "$status" -eq 3 ]
    [[ "$output" == *"the plan needs"* ]]
    [ ! -e "$T/run/metrics.jsonl" ]
}

@test "SIGTERM: the step finishes, a checkpoint is saved, exit 0" {
    "$TRAIN" "${ARGS[@]}" --out "$T/run" --steps 100000 --save-every 0 "$DATA" "$DATA" "$DATA" 2>"$T/err" &
    pid=$!
    for i in $(seq 1 300); do
        grep -q '"step"' "$T/run/metrics.jsonl" 2>/dev/null && break
        sleep 0.1
    done
    kill -TERM $pid
    wait $pid
    ls "$T/run/checkpoints" | grep -q '^step-[0-9]*$'
}

@test "--init loads weights only; --freeze keeps a branch's weights fixed" {
    "$TRAIN" "${ARGS[@]}" --out "$T/a" --steps 2 "$DATA"
    run "$TRAIN" "${ARGS[@]}" --out "$T/b" --steps 2 --init "$T/a/checkpoints/step-2" --freeze vit,connector "$DATA"
    [ "$status" -eq 0 ]
    # the frozen tensors are byte-identical to the initial ones, the others moved
    python3 - "$T/a/checkpoints/step-2/model.safetensors" "$T/b/checkpoints/step-2/model.safetensors" <<'PY'
import json, struct, sys
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return {k: b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in h.items() if k != "__metadata__"}
a, b = load(sys.argv[1]), load(sys.argv[2])
frozen = [k for k in a if k.startswith(("vit_model.", "connector."))]
assert frozen and all(a[k] == b[k] for k in frozen), "a frozen tensor changed"
moved = [k for k in a if k.startswith("language_model.") and a[k] != b[k]]
assert moved, "nothing trained"
PY
}

@test "bad options are usage errors" {
    run "$TRAIN" --out "$T/r" --schedule sideways
    [ "$status" -eq 2 ]
    run "$TRAIN" --steps 3
    [ "$status" -eq 2 ]
    run "$TRAIN" --out "$T/r" --freeze wings --config "$CFG" --steps 1 "$DATA"
    [ "$status" -eq 3 ]
    [[ "$output" == *"--freeze: 'wings'"* ]]
}

@test "latents from upstream (posterior mean and log-variance) are sampled and trained on; a wrong shape is a reject" {
    # 12 text-to-image samples whose images come as FLUX-style moments [2·4, 4, 4]
    awk 'BEGIN { srand(11)
        for (i = 1; i <= 13; i++) {
            c = (i == 1) ? 6 : 8; n = c * 16
            printf "{\"v\":1,\"type\":\"sample\",\"id\":\"lat#%d\",\"source\":\"lat\",\"seq\":%d,\"epoch\":0,\"task\":\"t2i\",\"segments\":[", i, i
            printf "{\"kind\":\"text\",\"role\":\"user\",\"text\":\"x\",\"loss\":false,\"cfg\":true,\"tokens\":{\"dtype\":\"i32\",\"shape\":[4],\"data\":[%d,%d,%d,%d]}},", i, i + 1, i + 2, i + 3
            printf "{\"kind\":\"image\",\"role\":\"assistant\",\"path\":\"p.png\",\"und\":false,\"gen\":true,\"loss\":true,\"latent\":{\"dtype\":\"f32\",\"shape\":[%d,4,4],\"data\":[", c
            for (k = 0; k < n; k++) printf "%s%.4f", (k ? "," : ""), (k < n / 2 ? rand() * 2 - 1 : -2 - rand())
            printf "]}}]}\n"
        } }' >"$T/lat.jsonl"
    "$BIN/bagel-cat" --encode -q --out "$T/lat.msgpack" "$T/lat.jsonl"
    run "$TRAIN" -q --config "$PWD/tests/stage/data/train-flux-mini.json" --out "$T/run" --steps 3 --tokens 40 \
        --max-tokens 64 --max-sample-tokens 64 --warmup 0 "$T/lat.msgpack"
    [ "$status" -eq 0 ]
    [ "$(grep -c '"step"' "$T/run/metrics.jsonl")" -eq 3 ]
    grep -q '"mse_tokens": *[1-9]' "$T/run/metrics.jsonl"
    grep -q 'lat#1".*latent must be f32 or bf16 \[8, h, w\]' "$T/run/rejects.jsonl"
}

@test "--vae: images that arrive without latents are encoded by the frozen autoencoder" {
    D="$BAGEL_TRAIN_DATA"
    FCFG="$PWD/tests/stage/data/train-flux-mini.json"
    "$BIN/../tests/tools/make-ae" "$FCFG" 5 "$T/ae.safetensors"
    "$BIN/bagel-read" -q --root "$D/shapes" "$D/shapes/t2i.jsonl" "$D/shapes/edit.jsonl" \
      | "$BIN/bagel-tokenize" -q --tokenizer tests/fuzz/tiny-tokenizer.json \
      | "$BIN/bagel-image" -q --root "$D/shapes" --vae-max 64 --vae-min 32 --vit-max 56 --vit-min 28 \
      >"$T/pix.msgpack"
    # without an autoencoder such samples are rejects that say what to do
    run "$TRAIN" -q --config "$FCFG" --out "$T/no" --steps 2 --tokens 64 --max-tokens 96 --max-sample-tokens 96 \
        "$T/pix.msgpack"
    grep -q 'run bagel-encode upstream' "$T/no/rejects.jsonl"
    run "$TRAIN" -q --config "$FCFG" --vae "$T/ae.safetensors" --out "$T/run" --steps 3 --tokens 64 \
        --max-tokens 96 --max-sample-tokens 96 --warmup 0 "$T/pix.msgpack"
    [ "$status" -eq 0 ]
    [ "$(grep -c '"step"' "$T/run/metrics.jsonl")" -eq 3 ]
    grep -q '"mse_tokens": *[1-9]' "$T/run/metrics.jsonl"
    # a wrong file is one clear error naming the tensor
    run "$TRAIN" -q --config "$FCFG" --vae "$CFG" --out "$T/bad" --steps 1 "$T/pix.msgpack"
    [ "$status" -eq 3 ]
}
