#!/usr/bin/env bats
# read.bats — bagel-read: golden segments for every format and every bad-input
# class (tests/data/read, hand-written), the options, and the determinism of
# sharding and shuffling.

setup() {
    BIN=${BAGEL_BIN:-$PWD/build/bin}
    READ="$BIN/bagel-read"
    CAT="$BIN/bagel-cat"
    DATA="$BATS_TEST_DIRNAME/../data/read"
    T=$(mktemp -d /tmp/bagel-bats-read-XXXXXX)
    # 1000 numbered t2i lines with a blank line and a bad line among them
    for i in $(seq 1 1000); do
        if [ "$i" -eq 500 ]; then echo ""; elif [ "$i" -eq 700 ]; then echo '{"bad'; else
            echo "{\"prompt\":\"p$i\",\"image_path\":\"i$i.png\"}"; fi
    done >"$T/many.jsonl"
}

teardown() { rm -rf "$T"; }

# ids of the samples and rejects in a record stream, one a line
ids() { "$CAT" | jq -r 'select(.type != "end") | .id'; }

golden() {
    cd "$DATA"
    run "$READ" -q "$1.jsonl"
    [ "$status" -eq 0 ]
    "$READ" -q "$1.jsonl" | "$CAT" >"$T/out.jsonl"
    diff "$T/out.jsonl" "$1.expected.jsonl"
}

@test "golden: conversations" { golden conversations; }
@test "golden: sequence" { golden sequence; }
@test "golden: text-to-image" { golden t2i; }
@test "golden: image-to-text" { golden i2t; }
@test "golden: editing, one and two steps" { golden edit; }
@test "golden: interleaved" { golden interleaved; }
@test "golden: LLaVA conversations, images at the <image> markers" { golden llava; }

@test "golden: every bad-input class is a reject naming file:line; the run goes on; counts on stderr" {
    cd "$DATA"
    "$READ" --root . --max-line-bytes 200 bad.jsonl 2>"$T/err" | "$CAT" >"$T/out.jsonl"
    diff "$T/out.jsonl" bad.expected.jsonl
    grep -q 'rejects reason=json count=3' "$T/err"
    grep -q 'rejects reason=utf8 count=1' "$T/err"
    grep -q 'rejects reason=format count=2' "$T/err"
    grep -q 'rejects reason=field count=6' "$T/err"
    grep -q 'rejects reason=empty count=1' "$T/err"
    grep -q 'rejects reason=markers count=2' "$T/err"
    grep -q 'rejects reason=no-loss count=1' "$T/err"
    grep -q 'rejects reason=path count=3' "$T/err"
    grep -q 'rejects reason=too-long count=1' "$T/err"
    grep -q 'lines=21 samples=1 rejects=20' "$T/err"
    # the same records, shuffled
    "$READ" -q --shuffle --seed 3 --root . --max-line-bytes 200 bad.jsonl | "$CAT" | sort >"$T/shuf.jsonl"
    diff "$T/shuf.jsonl" <(sort bad.expected.jsonl)
}

@test "--strict: the first reject is fatal, exit 1, naming file:line" {
    cd "$DATA"
    run "$READ" -q --strict --root . bad.jsonl --out "$T/o.msgpack"
    [ "$status" -eq 1 ]
    [[ "$output" == *"bad.jsonl:1: invalid JSON at column 34"*"--strict"* ]]
    run "$READ" -q --strict t2i.jsonl --out /dev/null
    [ "$status" -eq 0 ]
}

@test "--format forces a format; auto-detection reads caption + image as image-to-text" {
    echo '{"caption":"a red circle","image":"c.png"}' >"$T/c.jsonl"
    [ "$("$READ" -q "$T/c.jsonl" | "$CAT" | jq -r 'select(.type=="sample") | .task')" = i2t ]
    "$READ" -q --format text-to-image "$T/c.jsonl" | "$CAT" | jq -c 'select(.type=="sample") | .segments' >"$T/seg"
    [ "$(cat "$T/seg")" = '[{"kind":"text","role":"user","text":"a red circle","loss":false,"cfg":true},{"kind":"image","role":"assistant","path":"c.png","und":false,"gen":true,"loss":true,"cond":false,"cfg":false}]' ]
    run sh -c "'$READ' -q --format edit '$T/c.jsonl' | '$CAT' | jq -r '.error // empty'"
    [[ "$output" == *'c.jsonl:1: "input_image": missing, expected a string' ]]
    run "$READ" --format nope "$T/c.jsonl"
    [ "$status" -eq 2 ]
}

@test "--root and --check-images: missing file, directory, symlink out of the root" {
    mkdir -p "$T/root/img" "$T/outside"
    : >"$T/root/img/a.png"
    : >"$T/outside/secret.png"
    ln -s "$T/outside/secret.png" "$T/root/img/link.png"
    for p in img/a.png img/missing.png img img/link.png sub/../img/a.png; do
        echo "{\"prompt\":\"x\",\"image_path\":\"$p\"}"
    done >"$T/r.jsonl"
    "$READ" -q --root "$T/root" --check-images "$T/r.jsonl" | "$CAT" | jq -r '.error // .segments[1].path // empty' \
        | sed "s|$T/||" >"$T/got"
    cat >"$T/want" <<'TXT'
img/a.png
r.jsonl:2: image "img/missing.png": No such file or directory
r.jsonl:3: image "img": not a regular file
r.jsonl:4: image "img/link.png": escapes --root through a symbolic link
img/a.png
TXT
    diff "$T/got" "$T/want"
    # without --check-images nothing is opened: only lexical checks
    [ "$("$READ" -q --root "$T/root" "$T/r.jsonl" | "$CAT" | jq -r 'select(.type=="reject")' | wc -l)" -eq 0 ]
    run "$READ" --root "$T/nope" "$T/r.jsonl"
    [ "$status" -eq 2 ]
}

@test "shards: the union is the whole set, each line once, with or without shuffle; ends add up" {
    for mode in "" "--shuffle --seed 7"; do
        for i in 0 1 2; do
            # shellcheck disable=SC2086
            "$READ" -q $mode --shard $i/3 "$T/many.jsonl" --out "$T/s$i.msgpack"
            "$CAT" --check "$T/s$i.msgpack" >/dev/null
        done
        "$CAT" "$T"/s0.msgpack "$T"/s1.msgpack "$T"/s2.msgpack | jq -r 'select(.type!="end") | .id' | sort >"$T/union"
        "$READ" -q "$T/many.jsonl" | ids | sort >"$T/all"
        [ "$(wc -l <"$T/all")" -eq 999 ]
        diff "$T/union" "$T/all"
        [ "$(sort "$T/union" | uniq -d | wc -l)" -eq 0 ]
        sum=$("$CAT" "$T"/s?.msgpack | jq -s '[.[] | select(.type=="end") | .count] | add')
        [ "$sum" -eq 999 ]
        [ "$("$CAT" "$T/s1.msgpack" | jq -r 'select(.type=="end") | .source')" = "$T/many.jsonl[1/3]" ]
    done
    run "$READ" --shard 3/3 "$T/many.jsonl"
    [ "$status" -eq 2 ]
}

@test "shuffle: same seed same order, another seed another order, a new order each epoch" {
    "$READ" -q --shuffle --seed 1 "$T/many.jsonl" | ids >"$T/a"
    "$READ" -q --shuffle --seed 1 "$T/many.jsonl" | ids >"$T/b"
    "$READ" -q --shuffle --seed 2 "$T/many.jsonl" | ids >"$T/c"
    "$READ" -q "$T/many.jsonl" | ids >"$T/plain"
    diff "$T/a" "$T/b"
    ! diff -q "$T/a" "$T/c"
    ! diff -q "$T/a" "$T/plain"
    diff <(sort "$T/a") <(sort "$T/plain")
    # ids are <file>#<line> whatever the order: line 700 is the bad one
    "$READ" -q --shuffle --seed 1 "$T/many.jsonl" | "$CAT" | jq -r 'select(.type=="reject") | .id' >"$T/rej"
    [ "$(cat "$T/rej")" = "$T/many.jsonl#700" ]
    "$READ" -q --shuffle --seed 1 --epochs 2 "$T/many.jsonl" --out "$T/e.msgpack"
    "$CAT" --check "$T/e.msgpack" >/dev/null
    "$CAT" "$T/e.msgpack" | jq -r 'select(.type!="end" and .epoch==0) | .id' >"$T/e0"
    "$CAT" "$T/e.msgpack" | jq -r 'select(.type!="end" and .epoch==1) | .id' >"$T/e1"
    diff "$T/e0" "$T/a"
    ! diff -q "$T/e0" "$T/e1"
    diff <(sort "$T/e0") <(sort "$T/e1")
}

@test "--skip and --limit: a resumed run continues exactly; ends count what was emitted" {
    for mode in "" "--shuffle --seed 5"; do
        # shellcheck disable=SC2086
        "$READ" -q $mode --epochs 2 "$T/many.jsonl" | ids >"$T/full"
        # shellcheck disable=SC2086
        "$READ" -q $mode --epochs 2 --limit 1200 "$T/many.jsonl" | ids >"$T/first"
        # shellcheck disable=SC2086
        "$READ" -q $mode --epochs 2 --skip 1200 "$T/many.jsonl" | ids >"$T/rest"
        [ "$(wc -l <"$T/first")" -eq 1200 ]
        diff <(cat "$T/first" "$T/rest") "$T/full"
    done
    "$READ" -q --skip 10 --limit 5 "$T/many.jsonl" | "$CAT" >"$T/o"
    [ "$(jq -r 'select(.type=="sample") | .seq' "$T/o" | tr '\n' ' ')" = "11 12 13 14 15 " ]
    [ "$(jq -c 'select(.type=="end") | [.epoch, .count]' "$T/o")" = "[0,5]" ]
}

@test "several files and globs: ids per file, one end per file and epoch; no match is a usage error" {
    cd "$DATA"
    "$READ" -q --epochs 2 't2i.json*' edit.jsonl --out "$T/o.msgpack"
    "$CAT" --check "$T/o.msgpack" >/dev/null
    "$CAT" "$T/o.msgpack" | jq -c 'select(.type=="end") | [.source, .epoch, .count]' >"$T/ends"
    printf '%s\n' '["t2i.jsonl",0,2]' '["edit.jsonl",0,2]' '["t2i.jsonl",1,2]' '["edit.jsonl",1,2]' | diff "$T/ends" -
    run "$READ" -q 'nothing-*.jsonl'
    [ "$status" -eq 2 ]
    run "$READ" -q missing.jsonl
    [ "$status" -eq 3 ]
}

@test "stdin, CRLF line ends, a last line without newline" {
    printf '{"prompt":"a","image_path":"a.png"}\r\n{"prompt":"b","image_path":"b.png"}' >"$T/crlf.jsonl"
    "$READ" -q <"$T/crlf.jsonl" | "$CAT" >"$T/o"
    [ "$(jq -r 'select(.type=="sample") | .id + " " + .segments[0].text' "$T/o" | tr '\n' ' ')" = "stdin#1 a stdin#2 b " ]
    [ "$(jq -c 'select(.type=="end") | [.source, .count]' "$T/o")" = '["stdin",2]' ]
    run "$READ" -q --shuffle <"$T/crlf.jsonl"
    [ "$status" -eq 2 ]
}
