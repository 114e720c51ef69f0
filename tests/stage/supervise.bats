#!/usr/bin/env bats
# supervise.bats — scripts/bagel-supervise and the pipeline files: the
# process graph of every file in pipelines/, each kind of error in a file,
# every pipeline run small, workers killed with kill -9 during a run of 20k
# samples (each arrives exactly once), a graceful stop that loses nothing,
# and two "hosts" (network namespaces joined by veth) talking over tcp with
# CURVE, where a client with the wrong key injects nothing.

setup() {
    BIN=${BAGEL_BIN:-$PWD/build/bin}
    export BAGEL_BIN=$BIN
    SUP="/usr/bin/python3 $PWD/scripts/bagel-supervise"
    [ -x /usr/bin/python3 ] || SUP="python3 $PWD/scripts/bagel-supervise"
    T=$(mktemp -d /tmp/bagel-sup-XXXXXX)
}

teardown() {
    jobs -p | xargs -r kill -9 2>/dev/null || true
    rm -rf "$T"
}

tokenizer() {
    TOKF=$(scripts/fetch-tokenizer.sh 2>"$T/fetch.err") || skip "no tokenizer: $(cat "$T/fetch.err")"
}

shapes() { # shapes COUNT: the synthetic dataset, COUNT lines a format
    "$BIN/bagel-synth" -q --out "$T/shapes" --seed 5 --count "$1" --size 32
}

# the (id, epoch) of every sample and reject in a record file, one a line
ids() {
    "$BIN/bagel-cat" "$1" | grep -v '"type":"end"' | sed -E 's/^.*"id":"([^"]*)".*"epoch":([0-9]+).*$/\1 \2/'
}

@test "every pipeline file: --dry-run prints its process graph" {
    for f in pipelines/*.toml; do
        run $SUP "$f" --dry-run
        [ "$status" -eq 0 ] || { echo "$f: $output"; false; }
        [[ "$output" == *"pipeline "* ]]
        [[ "$output" == *"delivery: "* ]]
        [[ "$output" == *"--acks-out"* ]]
    done
    run $SUP pipelines/preprocess-to-cache.toml --dry-run
    [[ "$output" == *"tokenize     x2   worker  read -> image"* ]]
    [ "$(grep -c 'bagel-tokenize' <<<"$output")" -eq 2 ]
    # split across machines: the trainer's side binds tcp with its keys
    run $SUP pipelines/remote-worker.toml --dry-run --only train
    [[ "$output" == *"--in '@tcp://*:5558' --acks-out '@tcp://*:5555' --curve-server-key keys/server.key --curve-client-keys keys/clients.pub"* ]]
    [[ "$output" == *"(on another machine)"* ]]
    run $SUP pipelines/remote-worker.toml --dry-run --only read,tokenize,image --connect trainer
    [[ "$output" == *"--acks-in '>tcp://trainer:5555'"* ]]
    [[ "$output" == *"--out '>tcp://trainer:5558' --curve-server-key keys/server.pub --curve-client-keys keys/client.key"* ]]
}

# bad FILE-BODY EXPECTED [ARGS...]: exit 2, one line, naming what is wrong
bad() {
    printf '%s\n' "$1" >"$T/bad.toml"
    run $SUP "$T/bad.toml" --dry-run "${@:3}"
    echo "$output"
    [ "$status" -eq 2 ]
    [ "${#lines[@]}" -eq 1 ]
    [[ "$output" == "bagel-supervise: $T/bad.toml: "*"$2"* ]]
}

@test "a pipeline file with each kind of error: one line naming the key and what was expected" {
    ok='[[stage]]
name = "a"
command = "bagel-cat --raw"'
    bad '[[stage]
name = "a"' 'TOML syntax:'
    bad "$ok
replicaz = 2" 'stage[0] (a).replicaz: unknown key (expected one of: name, command, replicas'
    bad '[[stage]]
name = "two\nlines"
command = "x"' 'stage[0].name: expected letters, digits, - and _, starting with a letter, got "two\nlines"'
    bad '[[stage]]
name = "a\n"
command = "x"' 'stage[0].name: expected letters, digits, - and _, starting with a letter, got "a\n"'
    bad "$ok
replicas = \"two\"" 'stage[0] (a).replicas: expected a positive integer, got "two"'
    bad "$ok
replicas = 0" 'stage[0] (a).replicas: expected a positive integer up to 256, got 0'
    bad "$ok
restart = \"sometimes\"" 'stage[0] (a).restart: expected always, on-failure or never, got "sometimes"'
    bad "$ok
backoff = true" 'stage[0] (a).backoff: expected seconds before the first restart, got true'
    bad "$ok
env = { A = [1] }" 'stage[0] (a).env.A: expected a string or a number, got [1]'
    bad '[[stage]]
name = "a"' 'stage[0] (a).command: expected a command line: a string or an array of strings'
    bad '[[stage]]
command = "x"' 'stage[0].name: expected a stage name (every stage has one)'
    bad "$ok
[[stage]]
name = \"a\"
command = \"x\"" 'stage[1].name: expected a name no other stage has, got "a"'
    bad "$ok
[[stage]]
name = \"b\"
command = \"x\"
input = \"tokenzie\"" 'stage[1] (b).input: "tokenzie": expected a stage name (a, b) or an endpoint'
    bad '[[stage]]
name = "a"
command = "bagel-cat ${nope}"' 'stage[0] (a).command: ${nope}: no such variable (define it in [vars] or with --set nope=...)'
    bad "$ok
[[stage]]
name = \"b\"
command = \"x\"
input = []" 'stage[1] (b): expected one sink, but a and b feed no stage'
    bad "$ok
input = \"b\"
[[stage]]
name = \"b\"
command = \"x\"" 'expected no cycle'
    bad '[pipeline]
name = "x"' 'stage: expected one or more [[stage]] tables'
    bad "[pipeline]
port = 80
$ok" 'pipeline.port: expected the first tcp port for links between machines (1024 to 65000), got 80'
    bad "[pipelines]
$ok" 'file.pipelines: unknown key (expected one of: pipeline, vars, security, stage)'
    bad "$ok
[[stage]]
name = \"b\"
command = \"x\"" 'security.server_key: expected a key file, since a link crosses machines' --only b
    bad "$ok
[[stage]]
name = \"b\"
command = \"x\"" '--only: c: no such stage (expected some of: a, b)' --only c
}

@test "preprocess-to-cache, then train-from-cache" {
    tokenizer
    shapes 8
    run $SUP pipelines/preprocess-to-cache.toml --dir "$T/run1" --set data="$T/shapes" --set cache="$T/cache.msgpack" \
        --set tokenizer="$TOKF" -q
    echo "$output"
    [ "$status" -eq 0 ]
    run "$BIN/bagel-cat" --check "$T/cache.msgpack"
    [ "$status" -eq 0 ]
    [[ "$output" == *'"types":{"sample":56,"reject":0,"end":7}'* ]]
    # every record carried its delivery tag to the sink, which took it off
    ! "$BIN/bagel-cat" "$T/cache.msgpack" | grep -q '"dlv"'
    [ -f "$T/run1/logs/tokenize.log" ]
    grep -q '^\[tokenize.1\] bagel-supervise: started pid' "$T/run1/logs/tokenize.log"
    [ -z "${BAGEL_SANITIZED:-}" ] || skip "training under the sanitizers: too slow; the plain run covers it"
    run $SUP pipelines/train-from-cache.toml --dir "$T/run2" --set cache="$T/cache.msgpack" --set tokenizer="$TOKF" \
        --set steps=1 --set out="$T/train" -q
    echo "$output"
    [ "$status" -eq 0 ]
    [ -d "$T/train/checkpoints/step-1" ]
}

# train PIPELINE: run it for one step on the small dataset
train() {
    run $SUP "pipelines/$1.toml" --dir "$T/run-$1" --set data="$T/shapes" --set tokenizer="$TOKF" --set steps=1 \
        --set out="$T/train-$1" --set files="$T/shapes/t2i.jsonl" --set files2="$T/shapes/i2t.jsonl" -q
    echo "$output"
    [ "$status" -eq 0 ]
    [ -d "$T/train-$1/checkpoints/step-1" ]
    [[ "${lines[-1]}" == "bagel-supervise: "*" train 0/1 "* ]]
}

@test "demo, t2i-finetune, vlm-finetune and unified pipelines train a step" {
    [ -z "${BAGEL_SANITIZED:-}" ] || skip "training under the sanitizers: too slow; the plain run covers it"
    tokenizer
    shapes 8
    train demo
    train t2i-finetune
    train vlm-finetune
    train unified
    # both sources of the unified pipeline fed the trainer
    grep -q 'lines=' "$T/run-unified/logs/generation.log"
    grep -q 'lines=' "$T/run-unified/logs/understanding.log"
}

@test "kill -9 a random worker every 2 s during 20k samples: each arrives exactly once, the run completes" {
    tokenizer
    shapes 300 # 7 formats x 300 lines x 10 epochs = 21000 samples
    cat >"$T/kill.toml" <<EOF
[pipeline]
name = "kill"
[[stage]]
name = "read"
command = "bagel-read --root $T/shapes --epochs 10 $T/shapes/*.jsonl"
[[stage]]
name = "tokenize"
command = "bagel-tokenize --tokenizer $TOKF"
replicas = 2
backoff = 0.1
backoff_max = 1
restart_limit = 100
[[stage]]
name = "image"
command = "bagel-image --root $T/shapes --vae-max 32 --vae-min 16 --vit-max 28 --vit-min 14"
replicas = 2
backoff = 0.1
backoff_max = 1
restart_limit = 100
[[stage]]
name = "sink"
command = "bagel-cat --raw --progress off"
output = "$T/all.msgpack"
EOF
    $SUP "$T/kill.toml" --dir "$T/run" -q --status-every 5 2>"$T/sup.err" &
    local sup=$! kills=0 pid
    sleep 1
    # while the source still reads, kill a random tokenize or image replica
    while kill -0 "$sup" 2>/dev/null; do
        pid=$(/usr/bin/python3 - "$T/run/status.json" <<'EOF' 2>/dev/null
import json, random, sys
s = json.load(open(sys.argv[1]))["stages"]
up = [r["pid"] for n in ("tokenize", "image") for r in s[n]["replicas"] if r["up"]]
print("stop" if not s["read"]["up"] else random.choice(up) if up else "")
EOF
        ) || true
        [ "$pid" = stop ] && break
        [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null && kills=$((kills + 1))
        sleep 2
    done
    local rc=0
    wait "$sup" || rc=$?
    cat "$T/sup.err"
    echo "kills=$kills" >&3
    [ "$rc" -eq 0 ]
    [ "$kills" -ge 1 ]
    grep -q "ended by signal 9; restarting" "$T/sup.err"
    run "$BIN/bagel-cat" --check "$T/all.msgpack"
    [ "$status" -eq 0 ]
    [[ "$output" == *'"types":{"sample":21000,"reject":0,"end":70}'* ]]
    ids "$T/all.msgpack" | sort >"$T/ids"
    [ "$(wc -l <"$T/ids")" -eq 21000 ]
    [ "$(uniq -d "$T/ids" | wc -l)" -eq 0 ]
}

@test "SIGTERM to the supervisor mid-run: it stops from the sources down and loses nothing" {
    tokenizer
    shapes 40
    cat >"$T/stop.toml" <<EOF
[pipeline]
name = "stop"
[[stage]]
name = "read"
command = "bagel-read --root $T/shapes --epochs 1000 $T/shapes/*.jsonl"
[[stage]]
name = "tokenize"
command = "bagel-tokenize --tokenizer $TOKF"
replicas = 2
[[stage]]
name = "image"
command = "bagel-image --root $T/shapes --vae-max 32 --vae-min 16 --vit-max 28 --vit-min 14"
replicas = 2
[[stage]]
name = "sink"
command = "bagel-cat --raw --progress off"
output = "$T/all.msgpack"
EOF
    $SUP "$T/stop.toml" --dir "$T/run" -q 2>"$T/sup.err" &
    local sup=$!
    sleep 3
    kill -TERM "$sup"
    local rc=0
    wait "$sup" || rc=$?
    cat "$T/sup.err"
    [ "$rc" -eq 143 ]
    grep -q "stopping from the sources down" "$T/sup.err"
    # what bagel-read emitted is what the sink wrote, each once
    local line emitted
    line=$(grep -o 'lines=[0-9]* samples=[0-9]* rejects=[0-9]*' "$T/run/logs/read.log" | tail -1)
    emitted=$(($(sed -E 's/.*samples=([0-9]+) rejects=([0-9]+)/\1 + \2/' <<<"$line")))
    [ "$emitted" -gt 0 ]
    ids "$T/all.msgpack" | sort >"$T/ids"
    echo "emitted=$emitted written=$(wc -l <"$T/ids")" >&3
    [ "$(wc -l <"$T/ids")" -eq "$emitted" ]
    [ "$(uniq -d "$T/ids" | wc -l)" -eq 0 ]
}

@test "two hosts over tcp with CURVE (network namespaces): every sample once; a wrong key injects nothing" {
    command -v unshare >/dev/null && command -v nsenter >/dev/null && command -v ip >/dev/null ||
        skip "unshare, nsenter or ip is missing"
    unshare -rn true 2>/dev/null || skip "no user and network namespaces here (unshare -rn failed)"
    tokenizer
    shapes 20
    (cd "$T" && $SUP keygen keys >/dev/null && "$BIN/bagel-cat" --curve-keygen keys/stranger)
    cp pipelines/remote-worker.toml "$T/remote.toml"
    printf '{"v":1,"type":"sample","id":"stranger#0","source":"stranger","seq":0,"epoch":0,"segments":[]}\n' |
        "$BIN/bagel-cat" --encode -q >"$T/stranger.msgpack"
    cat >"$T/hosts.sh" <<EOF
set -e
cd "$T"
# host A (this namespace) 10.77.0.1, host B (a child namespace) 10.77.0.2
ip link set lo up
ip link add name va type veth peer name vb
ip addr add 10.77.0.1/24 dev va
ip link set va up
unshare -n sleep 120 &
hostb=\$!
sleep 0.2
ip link set vb netns \$hostb
onb() { nsenter -t \$hostb -n --preserve-credentials "\$@"; }
onb ip link set lo up
onb ip addr add 10.77.0.2/24 dev vb
onb ip link set vb up
common="--set data=$T/shapes --set tokenizer=$TOKF --set keys=$T/keys --set epochs=1"
# the trainer's host: a sink that ends when the 7 streams are complete
$SUP remote.toml --only train --dir run-a -q \$common \
    --set sink="bagel-cat --raw --expect-ends 7 --out $T/got.msgpack" 2>a.err &
a=\$!
sleep 0.5
# a client with a key that is not listed: refused at the handshake
onb timeout -k 1 3 "$BIN/bagel-cat" --raw -q stranger.msgpack --out tcp://10.77.0.1:5558 \
    --curve-server-key keys/server.pub --curve-client-keys keys/stranger.key 2>stranger.err || true
# and one with no CURVE at all
onb timeout -k 1 3 "$BIN/bagel-cat" --raw -q stranger.msgpack --out tcp://10.77.0.1:5558 2>plain.err || true
# the worker host: read, tokenize, image, connecting to host A
onb $SUP remote.toml --only read,tokenize,image --connect 10.77.0.1 --dir run-b -q \$common 2>b.err
wait \$a
kill \$hostb
EOF
    run timeout 120 unshare -rn bash "$T/hosts.sh"
    echo "$output"
    cat "$T/a.err" "$T/b.err"
    [ "$status" -eq 0 ]
    run "$BIN/bagel-cat" --check "$T/got.msgpack"
    [ "$status" -eq 0 ]
    [[ "$output" == *'"types":{"sample":140,"reject":0,"end":7}'* ]]
    ! "$BIN/bagel-cat" "$T/got.msgpack" | grep -q stranger
    [ "$(ids "$T/got.msgpack" | sort | uniq -d | wc -l)" -eq 0 ]
    # the records crossed on the veth, encrypted: tcp with CURVE in the commands
    grep -q -- "--out '>tcp://10.77.0.1:5558' --curve-server-key $T/keys/server.pub" "$T/run-b/logs/image.log" ||
        grep -q "tcp://10.77.0.1:5558 --curve-server-key $T/keys/server.pub" "$T/run-b/logs/image.log"
}

@test "a tcp bind beyond loopback needs CURVE keys or --insecure" {
    run "$BIN/bagel-cat" --raw -q --in "@tcp://*:*" --expect-ends 1
    [ "$status" -eq 3 ]
    [[ "$output" == *"bind tcp://*:*: listening beyond loopback without CURVE keys: give --curve-server-key"* ]]
    run timeout 1 "$BIN/bagel-cat" --raw -q --in "@tcp://*:*" --expect-ends 1 --insecure
    [ "$status" -eq 124 ]
}
