#!/usr/bin/env bash
# tests/run.sh — the one test runner behind `make test`.
#
# Runs every C unit test binary ($BUILD/tests/test_*, cmocka, TAP output) and
# every stage test file (tests/stage/*.bats, bats --tap), shows each failure
# with its diagnostics, and ends with the line "N passed, N failed, N skipped".
# Exit status 0 only when nothing failed.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD
export BAGEL_BIN="$PWD/$BUILD/bin" BAGEL_TESTS="$PWD/$BUILD/tests"
passed=0 failed=0 skipped=0
log=$(mktemp)
# the tokenizer's cache files (tok.h) go to a directory of the run's own,
# not the user's ~/.cache; the first load of each tokenizer makes its file
# and every later one builds from it, so both paths run
cache_dir=$(mktemp -d /tmp/bagel-test-cache-XXXXXX)
export BAGEL_CACHE_DIR="${BAGEL_CACHE_DIR:-$cache_dir}"
trap 'rm -f "$log"; rm -rf "$cache_dir"' EXIT

# tally FILE NAME: count TAP lines of one run; show failures
tally() {
    local out=$1 name=$2 rc=$3 p f s
    p=$(grep -cE '^ok [0-9]+' "$out" | tr -d ' ')
    s=$(grep -cE '^ok [0-9]+.*# (SKIP|skip)' "$out" | tr -d ' ')
    f=$(grep -cE '^not ok [0-9]+' "$out" | tr -d ' ')
    p=$((p - s))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        # a crash or an error outside any test case
        f=1
        echo "FAIL $name: exited with status $rc outside a test case"
        tail -n 20 "$out" | sed 's/^/    /'
    fi
    if [ "$f" -gt 0 ]; then
        # cmocka prints a failure's message before its "not ok" line and the
        # location after: show both
        awk '/^not ok /{show=1; print "FAIL " $0; printf "%s", pre; pre=""; next}
             /^(ok |1\.\.)/{show=0; pre=""; next}
             show{print "    " $0; next}
             {pre = pre "    " $0 "\n"}' "$out"
    fi
    passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
    printf '%-40s %4d passed %3d failed %3d skipped\n' "$name" "$p" "$f" "$s"
}

for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    CMOCKA_MESSAGE_OUTPUT=TAP "$t" >"$log" 2>&1
    tally "$log" "unit/$(basename "$t")" $?
done

if command -v bats >/dev/null; then
    for b in tests/stage/*.bats; do
        [ -f "$b" ] || continue
        bats --tap "$b" >"$log" 2>&1
        tally "$log" "stage/$(basename "$b")" $?
    done
else
    echo "FAIL stage tests: bats is not installed (apt-get install bats, or scripts/install-deps.sh)"
    failed=$((failed + 1))
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
