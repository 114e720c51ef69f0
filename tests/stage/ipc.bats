#!/usr/bin/env bats
# ipc.bats — the record stream between processes: pipes, files, ZeroMQ ipc
# and tcp, fan-out and fan-in, back-pressure, stopping, bad input; through
# bagel-cat, the smallest stage.

setup() {
    BIN=${BAGEL_BIN:-$PWD/build/bin}
    GEN=${BAGEL_TESTS:-$PWD/build/tests}/tools/gen-records
    CAT="$BIN/bagel-cat"
    T=$(mktemp -d /tmp/bagel-bats-XXXXXX)
    # one JSON line of each record type, with every dtype and unknown keys
    cat >"$T/in.jsonl" <<'EOF'
{"v":1,"type":"sample","id":"a.jsonl#0","source":"a.jsonl","seq":0,"epoch":0,"task":"t2i","x-new":{"nested":[1,"two",null,true]},"segments":[{"kind":"text","role":"user","text":"Draw a cat","loss":false,"tokens":{"dtype":"i32","shape":[3],"data":[8000,-264,8251]}},{"kind":"image","role":"assistant","path":"cat.jpg","und":false,"gen":true,"loss":true,"vae":{"dtype":"u8","shape":[1,2,3],"data":[0,1,2,253,254,255]},"latent":{"dtype":"bf16","shape":[2,1,1],"data":[0.5,-2.5]},"h":{"dtype":"f16","shape":[2],"data":[0.25,"inf"]},"f":{"dtype":"f32","shape":[0],"data":[]}}]}
{"v":1,"type":"reject","id":"a.jsonl#1","source":"a.jsonl","seq":1,"epoch":0,"stage":"bagel-image","error":"b.jpg: not a known image format","sample":{"v":1,"type":"sample","id":"a.jsonl#1","source":"a.jsonl","seq":1,"epoch":0,"segments":[]}}
{"v":1,"type":"end","source":"a.jsonl","epoch":0,"count":2}
EOF
    "$CAT" --encode -q "$T/in.jsonl" >"$T/in.msgpack"
}

teardown() {
    # stop anything a failed test left behind
    jobs -p | xargs -r kill -9 2>/dev/null || true
    rm -rf "$T"
}

port() { echo $((20000 + RANDOM % 30000)); }

@test "JSON -> records -> JSON is the identity for every record type and dtype" {
    run "$CAT" --full "$T/in.msgpack"
    [ "$status" -eq 0 ]
    diff <(echo "$output") "$T/in.jsonl"
}

@test "round trip through pipes between processes" {
    "$CAT" --raw -q <"$T/in.msgpack" | "$CAT" --raw -q | "$CAT" --full >"$T/out.jsonl"
    diff "$T/out.jsonl" "$T/in.jsonl"
}

@test "round trip through a file, written whole or not at all" {
    "$CAT" --raw -q "$T/in.msgpack" --out "$T/cache.msgpack"
    [ -f "$T/cache.msgpack" ]
    ! ls "$T"/cache.msgpack.tmp.* 2>/dev/null
    "$CAT" --full "$T/cache.msgpack" >"$T/out.jsonl"
    diff "$T/out.jsonl" "$T/in.jsonl"
    # several inputs and globs, in order
    cp "$T/in.msgpack" "$T/part-1.msgpack"
    cp "$T/in.msgpack" "$T/part-2.msgpack"
    run "$CAT" --count "$T/part-*.msgpack" --in "$T/in.msgpack"
    [ "$status" -eq 0 ]
    [[ "$output" == *'"types":{"sample":3,"reject":3,"end":3}'* ]]
}

@test "round trip through ZeroMQ ipc" {
    "$CAT" --raw -q --in "@ipc://$T/s" --expect-ends 1 --out "$T/got.msgpack" &
    local sink=$!
    "$CAT" --raw -q "$T/in.msgpack" --out ">ipc://$T/s"
    wait "$sink"
    "$CAT" --full "$T/got.msgpack" >"$T/out.jsonl"
    diff "$T/out.jsonl" "$T/in.jsonl"
}

@test "round trip through ZeroMQ tcp on loopback, producer binding" {
    local p
    p=$(port)
    "$CAT" --raw -q "$T/in.msgpack" --out "@tcp://127.0.0.1:$p" &
    local src=$!
    "$CAT" --full --in "tcp://127.0.0.1:$p" --expect-ends 1 >"$T/out.jsonl"
    wait "$src"
    diff "$T/out.jsonl" "$T/in.jsonl"
}

@test "3 producers, 2 consumers, 100k records: each arrives once and the end accounting completes" {
    "$GEN" -n 33334 -s p1 -o "$T/p1.msgpack"
    "$GEN" -n 33333 -s p2 -o "$T/p2.msgpack"
    "$GEN" -n 33333 -s p3 -o "$T/p3.msgpack"
    # the sink sees everything; it knows it is done when 3 streams are complete
    "$CAT" --raw -q --in "@ipc://$T/sink" --expect-ends 3 --out "$T/all.msgpack" &
    local sink=$!
    "$CAT" --raw -q --in "@ipc://$T/c1" --out ">ipc://$T/sink" &
    local c1=$!
    "$CAT" --raw -q --in "@ipc://$T/c2" --out ">ipc://$T/sink" &
    local c2=$!
    for p in p1 p2 p3; do
        "$CAT" --raw -q "$T/$p.msgpack" --out ">ipc://$T/c1,>ipc://$T/c2" &
    done
    wait "$sink"
    # the consumers share the work: both took records
    kill -TERM "$c1" "$c2"
    wait "$c1" || [ $? -eq 143 ]
    wait "$c2" || [ $? -eq 143 ]
    run "$CAT" --check "$T/all.msgpack"
    [ "$status" -eq 0 ]
    [[ "$output" == *'"types":{"sample":100000,"reject":0,"end":3}'* ]]
    # exactly once, by id
    [ "$("$CAT" "$T/all.msgpack" | grep -o '"id":"[^"]*"' | sort | uniq -d | wc -l)" -eq 0 ]
    [ "$("$CAT" "$T/all.msgpack" | grep -o '"id":"[^"]*"' | sort -u | wc -l)" -eq 100000 ]
}

@test "a slow consumer does not make the producer's memory grow" {
    [ -z "${BAGEL_SANITIZED:-}" ] || skip "resident memory means nothing under the sanitizers"
    # 400 records of 1 MiB behind a consumer that stalls for 3 s: the
    # producer may hold about hwm records, not the 400 MB it is sent
    "$GEN" -n 400 -b 1048576 | "$CAT" --raw -q --hwm 8 --out ">ipc://$T/slow" &
    local prod=$!
    ("$CAT" --raw -q --hwm 8 --in "@ipc://$T/slow" --expect-ends 1 | (sleep 3; "$CAT" --count >"$T/count.json")) &
    local cons=$!
    local peak=0 kb
    while kill -0 "$prod" 2>/dev/null; do
        kb=$(awk '/VmHWM/{print $2}' "/proc/$prod/status" 2>/dev/null || echo 0)
        [ -n "$kb" ] && [ "$kb" -gt "$peak" ] && peak=$kb
        sleep 0.1
    done
    wait "$cons"
    grep -q '"sample":400' "$T/count.json"
    echo "producer peak RSS ${peak} kB" >&3
    [ "$peak" -gt 0 ]
    [ "$peak" -lt 65536 ]
}

@test "the send window's 64 MiB cap: 1 MiB records behind a stalled consumer, default window" {
    [ -z "${BAGEL_SANITIZED:-}" ] || skip "resident memory means nothing under the sanitizers"
    # the default window is 256 messages; 1 MiB records would be 256 MiB in
    # flight without the cap, and the consumer's queue holds what is in flight
    mkfifo "$T/stall"
    (sleep 3; "$CAT" --count <"$T/stall" >"$T/count.json") &
    local drain=$!
    "$CAT" --raw -q --in "@ipc://$T/cap" --expect-ends 1 >"$T/stall" &
    local cons=$!
    "$GEN" -n 400 -b 1048576 | "$CAT" --raw -q --out ">ipc://$T/cap" &
    local prod=$!
    local pc=0 pp=0 kb
    while kill -0 "$cons" 2>/dev/null; do
        kb=$(awk '/VmHWM/{print $2}' "/proc/$cons/status" 2>/dev/null || echo 0)
        [ -n "$kb" ] && [ "$kb" -gt "$pc" ] && pc=$kb
        kb=$(awk '/VmHWM/{print $2}' "/proc/$prod/status" 2>/dev/null || echo 0)
        [ -n "$kb" ] && [ "$kb" -gt "$pp" ] && pp=$kb
        sleep 0.1
    done
    wait "$prod"
    wait "$drain"
    grep -q '"sample":400' "$T/count.json"
    echo "peak RSS: producer ${pp} kB, consumer ${pc} kB" >&3
    [ "$pc" -gt 0 ] && [ "$pp" -gt 0 ]
    # 64 MiB in flight and each side's own, well under the 256 MiB uncapped
    [ $((pc + pp)) -lt 163840 ]
}

@test "the send window counts messages: a reader that stalls does not hold the other's share" {
    # A takes one record, then blocks writing it (nobody reads its output);
    # B is free. With --hwm 8 the writer may have 8 messages unacknowledged:
    # as a span from the oldest (A's first) B would get 4 before the writer
    # stopped; counted, B's are acknowledged as they go and it gets about 8
    mkfifo "$T/stuck"
    sleep 30 <"$T/stuck" 3>&- &
    local hold=$!
    "$CAT" --raw -q --in "@ipc://$T/a" >"$T/stuck" 3>&- &
    "$CAT" --raw -q --in "@ipc://$T/b" >"$T/b.raw" 3>&- &
    sleep 0.5
    "$GEN" -n 48 -b 262144 3>&- | "$CAT" --raw -q --hwm 8 --out ">ipc://$T/a,>ipc://$T/b" 3>&- &
    sleep 3
    local got=$(($(stat -c %s "$T/b.raw") / 262144))
    echo "B took $got records while A stalled" >&3
    pkill -KILL -f -- "ipc://$T/" || true
    kill "$hold" 2>/dev/null || true
    wait 2>/dev/null || true
    [ "$got" -ge 6 ]
}

@test "SIGTERM mid-stream: the stage drains its pipe, flushes, and nothing is lost" {
    "$GEN" -n 300000 -s big | "$CAT" --raw -q --progress off | "$CAT" --raw -q >"$T/fifo.msgpack" &
    local last=$!
    # the middle stage is the one stopped
    sleep 0.3
    pkill -TERM -f -- "--raw -q --progress off" || true
    wait "$last"
    run "$CAT" --check "$T/fifo.msgpack"
    [ "$status" -eq 0 ]
    [[ "$output" == *'"sample":300000'* ]]
}

@test "--head, --count per source, and --check failing on a missing record" {
    run "$CAT" --head 1 "$T/in.msgpack"
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 1 ]
    "$GEN" -n 5 -s only4 -E -o "$T/g.msgpack"
    printf '{"v":1,"type":"end","source":"only4","epoch":0,"count":6}\n' | "$CAT" --encode -q >"$T/e.msgpack"
    run "$CAT" --check "$T/g.msgpack" "$T/e.msgpack"
    [ "$status" -eq 1 ]
    [[ "$output" == *"source only4 epoch 0: 5 samples + 0 rejects, end count 6"* ]]
    run "$CAT" --count "$T/g.msgpack" "$T/e.msgpack"
    [ "$status" -eq 0 ]
    [[ "$output" == *'{"source":"only4","epoch":0,"samples":5,"rejects":0,"complete":false,"end_count":6}'* ]]
}

# raw bytes of a sample whose vae tensor has 2 bytes for shape [1,1,3]
bad_tensor_sample() {
    printf '\x87\xa1v\x01\xa4type\xa6sample\xa2id\xa3x#0\xa6source\xa1x\xa3seq\x00\xa5epoch\x00'
    printf '\xa8segments\x91\x83\xa4kind\xa5image\xa4path\xa1a\xa3vae'
    printf '\x83\xa5dtype\xa2u8\xa5shape\x93\x01\x01\x03\xa4data\xc4\x02\x01\x02'
}

@test "bad input: a sample that breaks the schema becomes a reject, the stream goes on" {
    { bad_tensor_sample; cat "$T/in.msgpack"; } >"$T/mixed.msgpack"
    run "$CAT" "$T/mixed.msgpack"
    [ "$status" -eq 0 ]
    # one error line naming file, record, byte, id and what was wrong
    [[ "${lines[0]}" == *"mixed.msgpack: record 1 at byte 0: id x#0: record.segments[0].vae: tensor: data is 2 bytes, u8 shape needs 3"* ]]
    [[ "${lines[1]}" == *'"type":"reject","id":"x#0"'* ]]
    [ "$(grep -c '^{"v":1,"type":"sample"' <<<"$output")" -eq 1 ]
}

@test "bad input: truncated, oversize, too deep, unknown dtype, wrong key type, bad version" {
    printf '\x82\xa1v\x01\xa4ty' >"$T/trunc.msgpack"
    run "$CAT" "$T/trunc.msgpack"
    [[ "$output" == *"trunc.msgpack: record 1 at byte 0: truncated, 7 bytes of at least"* ]]
    [ "${#lines[@]}" -eq 1 ]

    printf '\x81\xa1x\xc6\x7f\xff\xff\xff' | { run "$CAT" --max-record-size 1M; echo "$output" >"$T/o"; }
    grep -q "stdin: record 1 at byte 0: byte 3: record larger than the 1048576-byte limit" "$T/o"

    { printf '\x81\xa1x'; for i in $(seq 100); do printf '\x91'; done; printf '\xc0'; } >"$T/deep.msgpack"
    run "$CAT" "$T/deep.msgpack"
    [[ "$output" == *"nested deeper than 24"* ]]

    bad_tensor_sample | sed 's/u8/q4/' >"$T/dtype.msgpack"
    run "$CAT" "$T/dtype.msgpack"
    [[ "${lines[0]}" == *'unknown dtype "q4"'* ]]

    printf '\x83\xa1v\x01\xa4type\xa3end\x07\x08' >"$T/key.msgpack"
    run "$CAT" "$T/key.msgpack"
    [[ "$output" == *"record 1 at byte 0: record: map key #2 is not a string"* ]]

    printf '\x85\xa1v\x09\xa4type\xa3end\xa6source\xa1s\xa5epoch\x00\xa5count\x00' >"$T/ver.msgpack"
    run "$CAT" --check "$T/ver.msgpack"
    [ "$status" -eq 1 ]
    [[ "$output" == *'"v": record version 9, this build reads version 1'* ]]
}

@test "CURVE: listed clients get through, others do not" {
    cd "$T"
    "$CAT" --curve-keygen server
    "$CAT" --curve-keygen client
    "$CAT" --curve-keygen stranger
    [ "$(stat -c %a server.key)" = 600 ]
    local p
    p=$(port)
    "$CAT" --raw -q --in "@tcp://127.0.0.1:$p" --curve-server-key server.key --curve-client-keys client.pub \
        --expect-ends 1 --out got.msgpack &
    local sink=$!
    # a stranger's records are refused at the handshake
    timeout -k 1 2 "$CAT" --raw -q in.msgpack --out "tcp://127.0.0.1:$p" --curve-server-key server.pub \
        --curve-client-keys stranger.key || true
    "$CAT" --raw -q in.msgpack --out "tcp://127.0.0.1:$p" --curve-server-key server.pub --curve-client-keys client.key
    wait "$sink"
    "$CAT" --full got.msgpack >out.jsonl
    diff out.jsonl in.jsonl
}

@test "usage errors exit 2 with one line; --help fits a screen; --version" {
    run "$CAT" --hwm 0
    [ "$status" -eq 2 ]
    run "$CAT" --out x.msgpack "$T/in.msgpack"
    [ "$status" -eq 2 ]
    [[ "$output" == *"use --raw"* ]]
    run "$CAT" --in "@udp://x:1"
    [ "$status" -eq 3 ]
    [[ "$output" == *'expected tcp://, ipc:// or inproc://'* ]]
    run "$CAT" --help
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -le 30 ]
    run "$CAT" --version
    [[ "$output" == "bagel-cat "* ]]
}

@test "a closed output pipe is an error, not a silent truncation" {
    run bash -c "'$GEN' -n 100000 | '$CAT' --raw -q | head -c 100 >/dev/null; echo \${PIPESTATUS[1]}"
    [ "${lines[-1]}" = 3 ]
    [ "${#lines[@]}" -eq 2 ]
    [[ "${lines[0]}" == "bagel-cat: stdout: write: the reading side closed (broken pipe)" ]]
}
