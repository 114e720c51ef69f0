#!/usr/bin/env bats
# pipeline.bats — stages together: synthetic data read, tokenized by two
# replicas behind ZeroMQ, collected by a sink that knows when it has all.

setup() {
    BIN=${BAGEL_BIN:-$PWD/build/bin}
    T=$(mktemp -d /tmp/bagel-pipe-XXXXXX)
}

teardown() {
    jobs -p | xargs -r kill -9 2>/dev/null || true
    rm -rf "$T"
}

@test "bagel-read -> 2 x bagel-tokenize over ZeroMQ -> sink: every sample once, every stream complete" {
    TOKF=$(scripts/fetch-tokenizer.sh 2>"$T/fetch.err") || skip "no tokenizer: $(cat "$T/fetch.err")"
    "$BIN/bagel-synth" -q --out "$T/shapes" --seed 3 --count 40
    "$BIN/bagel-cat" --raw -q --in "@ipc://$T/sink" --expect-ends 7 --out "$T/all.msgpack" &
    local sink=$!
    local workers=()
    for i in 1 2; do
        "$BIN/bagel-tokenize" -q --tokenizer "$TOKF" --in "@ipc://$T/tok$i" --out ">ipc://$T/sink" &
        workers+=($!)
    done
    timeout 60 "$BIN/bagel-read" -q --root "$T/shapes" "$T"/shapes/*.jsonl --out ">ipc://$T/tok1,>ipc://$T/tok2"
    timeout 60 tail --pid="$sink" -f /dev/null
    kill -TERM "${workers[@]}"
    for w in "${workers[@]}"; do wait "$w" || [ $? -eq 143 ]; done
    run "$BIN/bagel-cat" --check "$T/all.msgpack"
    [ "$status" -eq 0 ]
    [[ "$output" == *'"types":{"sample":280,"reject":0,"end":7}'* ]]
    # every text segment has its tokens, every id is there once
    [ "$("$BIN/bagel-cat" "$T/all.msgpack" | grep -o '"id":"[^"]*"' | sort | uniq -d | wc -l)" -eq 0 ]
    [ "$("$BIN/bagel-cat" "$T/all.msgpack" | grep -c '"kind":"text","role":"[a-z]*","text":"[^"]*","loss":[a-z]*,"cfg":[a-z]*}')" -eq 0 ]
}
