#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs the unit, integration and fuzz-replay
# tests through CTest, then the same under ASan+UBSan, then each libFuzzer target for a bounded
# time. Ends with one line: "N passed, N failed".
#   FUZZ_SECONDS=30   seconds per fuzz target (0 skips the fuzzing run)
#   TEST_FILTER=re    only CTest tests matching the regular expression
set -uo pipefail
cd "$(dirname "$0")/.."
fuzz_seconds=${FUZZ_SECONDS:-30}
filter=${TEST_FILTER:-}
passed=0 failed=0 skipped=0

scripts/setup.sh || { echo "test: set-up failed"; echo "0 passed, 1 failed"; exit 1; }

# run_ctest DIR NAME: runs CTest in DIR and adds its counts to the totals.
run_ctest() {
    local dir=$1 name=$2 log total nfail nskip
    log=$(mktemp)
    echo "== $name tests ($dir)"
    ctest --test-dir "$dir" --output-on-failure -j "$(nproc)" ${filter:+-R "$filter"} 2>&1 | tee "$log"
    total=$(sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' "$log" | tail -n 1)
    nfail=$(sed -n 's/.* \([0-9]*\) tests\{0,1\} failed out of.*/\1/p' "$log" | tail -n 1)
    nskip=$(grep -c '(Skipped)' "$log" || true)
    if [ -z "$total" ]; then
        echo "test: $name: CTest did not finish"
        failed=$((failed + 1))
    else
        passed=$((passed + total - nfail - nskip))
        failed=$((failed + nfail))
        skipped=$((skipped + nskip))
    fi
    rm -f "$log"
}

build() {
    echo "== build $1"
    if ! scripts/build.sh "$1"; then
        echo "test: the $1 build failed"
        failed=$((failed + 1))
        return 1
    fi
}

echo "== source checks"
if scripts/checksrc.sh; then passed=$((passed + 1)); else failed=$((failed + 1)); fi

build release && run_ctest build release

# The option tables of docs/ are written from the built programs' --help (scripts/docs.py).
echo "== docs check"
if python3 scripts/docs.py --check --bin-dir build/bin; then passed=$((passed + 1)); else failed=$((failed + 1)); fi

build asan && run_ctest build-asan "ASan+UBSan"

if [ "$fuzz_seconds" -gt 0 ] && build fuzz; then
    for f in build-fuzz/fuzz/fuzz_*; do
        [ -x "$f" ] || continue
        name=$(basename "$f")
        corpus=tests/fuzz/corpus/${name#fuzz_}
        work=$(mktemp -d)
        cp -r "$corpus"/. "$work"/ 2>/dev/null || true
        echo "== fuzz $name for ${fuzz_seconds}s"
        if "$f" -max_total_time="$fuzz_seconds" -max_len=65536 -rss_limit_mb=2048 \
            -print_final_stats=1 "$work" >"$work.log" 2>&1; then
            echo "   $(grep -E 'stat::number_of_executed_units' "$work.log" | awk '{print $2}') executions, no crash"
            passed=$((passed + 1))
        else
            tail -n 40 "$work.log"
            echo "   FAILED: crash input kept in $work"
            failed=$((failed + 1))
        fi
    done
fi

echo
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
