#!/usr/bin/env bats
# eval.bats — bagel-eval end to end: per-sample rows and corpus scores equal
# to the golden ones of sacrebleu, rouge-score (read) and NLTK
# (tests/data/eval/README.md) for the default options and for --bleu-tokenize
# zh, --rouge-stem --rouge-multi, --meteor-tokenize 13a; records as input; bad
# rows refused one line each and counted; --references joined by id with the
# ids that have no prediction named; a missing WordNet; usage errors.

setup() {
    BIN=${BAGEL_BIN:-$PWD/build/bin}
    EVAL="$BIN/bagel-eval"
    CAT="$BIN/bagel-cat"
    DATA="$PWD/tests/data/eval"
    T=$(mktemp -d /tmp/bagel-bats-XXXXXX)
}

teardown() {
    rm -rf "$T"
}

# compare KEY of --per-sample rows with golden FILE's PATH (a Python
# expression on the golden row g), to 4 decimals
compare() {
    command -v python3 >/dev/null || skip "python3 is not installed"
    python3 - "$T/rows.jsonl" "$DATA/$1" "$2" "$3" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
gold = [json.loads(l) for l in open(sys.argv[2])]
key, expr = sys.argv[3], sys.argv[4]
assert len(rows) == len(gold) >= 1000, (len(rows), len(gold))
bad = 0
for r, g in zip(rows, gold):
    assert r["id"] == g["id"]
    want = eval(expr)
    if abs(r[key] - want) >= 5e-5:
        bad += 1
        print("%s %s: %r, reference %r" % (g["id"], key, r[key], want))
sys.exit(1 if bad else 0)
PY
}

@test "default metrics: every row and the corpus equal sacrebleu, rouge-score and NLTK" {
    "$EVAL" -q "$DATA/cases.jsonl" --per-sample "$T/rows.jsonl" --report "$T/report.json" >"$T/table"
    compare golden_bleu.jsonl bleu 'g["sent"]["13a"]'
    compare golden_rouge.jsonl rouge1 'g["first"]["rouge1"][2]'
    compare golden_rouge.jsonl rouge2 'g["first"]["rouge2"][2]'
    compare golden_rouge.jsonl rougeL 'g["first"]["rougeL"][2]'
    compare golden_rouge.jsonl rougeLsum 'g["first"]["rougeLsum"][2]'
    compare golden_meteor.jsonl meteor 'g["ws"]'
    want=$(python3 -c 'import json; print(json.load(open("'"$DATA"'/corpus_bleu.json"))["all/13a"]["format"])')
    grep -qxF "$want" "$T/table"
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); g=json.load(open(sys.argv[2]))["all/13a"]
assert r["bleu"]["score"] == g["score"] and r["bleu"]["signature"] == g["signature"] and r["rows"] == 1500' \
        "$T/report.json" "$DATA/corpus_bleu.json"
    grep -q "rows 1500 scored, 0 refused" "$T/table"
}

@test "--bleu-tokenize zh, --rouge-stem --rouge-multi, --meteor-tokenize 13a" {
    "$EVAL" -q --bleu-tokenize zh --rouge-stem --rouge-multi --meteor-tokenize 13a "$DATA/cases.jsonl" \
        --per-sample "$T/rows.jsonl" >"$T/table"
    compare golden_bleu.jsonl bleu 'g["sent"]["zh"]'
    compare golden_rouge.jsonl rougeL 'g["multi-stem"]["rougeL"][2]'
    compare golden_rouge.jsonl rougeLsum 'g["multi-stem"]["rougeLsum"][2]'
    compare golden_meteor.jsonl meteor 'g["13a"]'
    want=$(python3 -c 'import json; print(json.load(open("'"$DATA"'/corpus_bleu.json"))["all/zh"]["format"])')
    grep -qxF "$want" "$T/table"
}

@test "records: the target segment's generated text against its text or the references array" {
    cat >"$T/in.jsonl" <<'J'
{"v":1,"type":"sample","id":"a#1","source":"a","seq":1,"epoch":0,"task":"i2t","segments":[{"kind":"text","role":"assistant","text":"the cat sat on the mat","loss":true,"generated":"the cat sat on the mat"}]}
{"v":1,"type":"sample","id":"a#2","source":"a","seq":2,"epoch":0,"task":"i2t","references":["a b c d"],"segments":[{"kind":"text","text":"unused","generated":"a b c d"}]}
{"v":1,"type":"sample","id":"a#3","source":"a","seq":3,"epoch":0,"task":"i2t","segments":[{"kind":"text","text":"no generation here"}]}
{"v":1,"type":"reject","id":"a#4","source":"a","seq":4,"epoch":0,"stage":"bagel-generate","error":"too long","sample":{}}
{"v":1,"type":"end","source":"a","epoch":0,"count":4}
J
    "$CAT" --encode -q "$T/in.jsonl" >"$T/in.msgpack"
    run "$EVAL" -q --metrics bleu,rouge --in "$T/in.msgpack" --per-sample "$T/rows.jsonl"
    [ "$status" -eq 0 ]
    [[ "$output" == *"rows 2 scored, 2 refused"* ]]
    [[ "$output" == *'record 3: id a#3: segments: no text segment with "generated" text'* ]]
    [[ "$output" == *"record 4: id a#4: a reject: too long"* ]]
    grep -Eq '"id":"a#2","bleu":100(\.0+4)?,"rouge1":1.0,' "$T/rows.jsonl"
}

@test "bad rows: one line each naming file:line and the field, counted, the rest scored; --strict stops" {
    printf '%s\n' '{"id":"ok1","prediction":"the cat","references":["the cat"]}' \
        'not json' \
        '{"id":"p","references":["x"]}' \
        '{"id":"e","prediction":"x","references":[]}' \
        '{"id":"u","prediction":"x","reference":7}' \
        '' \
        '{"id":"ok2","prediction":"","references":[""]}' >"$T/in.jsonl"
    printf '{"id":"utf","prediction":"\xc3\x28","references":["a"]}\n' >>"$T/in.jsonl"
    run "$EVAL" -q --metrics bleu,rouge,meteor "$T/in.jsonl" --per-sample "$T/rows.jsonl"
    [ "$status" -eq 0 ]
    [[ "$output" == *"in.jsonl:2: not JSON"* ]]
    [[ "$output" == *"in.jsonl:3: id p: prediction: missing"* ]]
    [[ "$output" == *"in.jsonl:4: id e: references: empty"* ]]
    [[ "$output" == *"in.jsonl:5: id u: reference: not a string"* ]]
    [[ "$output" == *"in.jsonl:8: not JSON"* ]]
    [[ "$output" == *"rows 2 scored, 5 refused"* ]]
    [ "$(wc -l <"$T/rows.jsonl")" -eq 2 ]
    grep -q '"id":"ok2","bleu":0.0,"rouge1":0.0,"rouge2":0.0,"rougeL":0.0,"rougeLsum":0.0,"meteor":0.0' "$T/rows.jsonl"
    run "$EVAL" -q --strict "$T/in.jsonl" --per-sample "$T/strict.jsonl"
    [ "$status" -eq 1 ]
    [ ! -e "$T/strict.jsonl" ] # no partial file
}

@test "--references: joined by id; ids without a prediction named and counted" {
    printf '%s\n' '{"id":1,"references":["a b c"]}' '{"id":2,"references":["d e f"]}' '{"id":3,"references":["g"]}' >"$T/refs.jsonl"
    printf '%s\n' '{"id":1,"prediction":"a b c"}' '{"id":9,"prediction":"x"}' '{"id":2,"prediction":"d e"}' >"$T/pred.jsonl"
    run "$EVAL" -q --metrics rouge --references "$T/refs.jsonl" "$T/pred.jsonl" --report "$T/r.json"
    [ "$status" -eq 0 ]
    [[ "$output" == *"pred.jsonl:2: id 9: no references"* ]]
    [[ "$output" == *"refs.jsonl: id 3: no prediction"* ]]
    [[ "$output" == *"rows 2 scored, 1 refused, 1 without a prediction"* ]]
    grep -q '"missing": 1' "$T/r.json"
    run "$EVAL" -q --strict --metrics rouge --references "$T/refs.jsonl" "$T/pred.jsonl"
    [ "$status" -eq 1 ]
}

@test "a missing WordNet is one clear line and exit 3; BLEU and ROUGE do not need it" {
    echo '{"id":"a","prediction":"x","references":["x"]}' >"$T/in.jsonl"
    run "$EVAL" -q --wordnet "$T/none" "$T/in.jsonl"
    [ "$status" -eq 3 ]
    [[ "$output" == *"$T/none/data.noun: No such file or directory (WordNet 3.0: apt-get install wordnet-base"* ]]
    [ "$(echo "$output" | wc -l)" -eq 1 ]
    run "$EVAL" -q --wordnet "$T/none" --metrics bleu,rouge "$T/in.jsonl"
    [ "$status" -eq 0 ]
}

@test "usage: --help, bad values exit 2" {
    run "$EVAL" --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"--metrics LIST"* ]]
    run "$EVAL" --metrics bleu,cider x.jsonl
    [ "$status" -eq 2 ]
    [[ "$output" == *'--metrics: "cider": expected bleu, rouge or meteor'* ]]
    run "$EVAL" --bleu-tokenize ja x.jsonl
    [ "$status" -eq 2 ]
    run "$EVAL" -q "$T/absent.jsonl"
    [ "$status" -eq 3 ]
    [[ "$output" == *"absent.jsonl: No such file or directory"* ]]
}
