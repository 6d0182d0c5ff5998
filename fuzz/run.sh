#!/usr/bin/env bash
# Builds the fuzz targets and runs each for FUZZ_SECONDS (default 60) on its corpus; exits
# non-zero if any target crashes, fails an assertion, times out or runs out of memory.
#
#   fuzz/run.sh                     every target, 60 s each
#   FUZZ_SECONDS=600 fuzz/run.sh frame message
#
# Environment: FUZZ_SECONDS, FUZZ_TOOLCHAIN (default nightly), FUZZ_SANITIZER (address, or none
# for more executions per second), FUZZ_ARGS (more libFuzzer flags, e.g. "-jobs=2 -workers=2"),
# CARGO_TARGET_DIR (default fuzz/target). New inputs found go to
# $CARGO_TARGET_DIR/corpus/<target> (not committed), seeds stay in fuzz/corpus/<target>, a
# failing input lands in fuzz/artifacts/<target>/ and each run's log in
# $CARGO_TARGET_DIR/fuzz-logs/<target>.log.
set -euo pipefail

cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_TOOLCHAIN=${FUZZ_TOOLCHAIN:-nightly}
FUZZ_SANITIZER=${FUZZ_SANITIZER:-address}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/fuzz/target}

# The longest input each target tries: a few real frames, headers, bodies or route answers.
declare -A MAX_LEN=(
    [frame]=4096
    [header_json]=2048
    [header_binary]=1024
    [message]=4096
    [route]=4096
    [properties]=1024
    [relay]=2048
)
ALL=(frame header_json header_binary message route properties relay)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${ALL[@]}"); fi
for t in "${targets[@]}"; do
    if [ -z "${MAX_LEN[$t]:-}" ]; then
        echo "fuzz/run.sh: unknown target '$t' (expected one of: ${ALL[*]})" >&2
        exit 2
    fi
done

cargo "+$FUZZ_TOOLCHAIN" fuzz build --sanitizer "$FUZZ_SANITIZER" || {
    echo "fuzz/run.sh: build failed" >&2
    exit 1
}

logs="$CARGO_TARGET_DIR/fuzz-logs"
mkdir -p "$logs"
failed=()
printf '%-14s %10s %8s %7s %7s  %s\n' target execs exec/s cov ft result
for t in "${targets[@]}"; do
    work="$CARGO_TARGET_DIR/corpus/$t"
    mkdir -p "$work" "fuzz/corpus/$t"
    log="$logs/$t.log"
    status=0
    cargo "+$FUZZ_TOOLCHAIN" fuzz run --sanitizer "$FUZZ_SANITIZER" \
        "$t" "$work" "fuzz/corpus/$t" -- \
        -max_total_time="$FUZZ_SECONDS" -max_len="${MAX_LEN[$t]}" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 ${FUZZ_ARGS:-} >"$log" 2>&1 \
        || status=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{s += $2} END {print s + 0}')
    speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | awk '{s += $2} END {print s + 0}')
    last=$(grep -E '^#[0-9]+' "$log" | grep -o 'cov: [0-9]* ft: [0-9]*' | tail -1)
    cov=$(echo "$last" | awk '{print $2}')
    ft=$(echo "$last" | awk '{print $4}')
    if [ "$status" -eq 0 ]; then
        result=ok
    else
        result="FAILED (exit $status; log $log)"
        failed+=("$t")
    fi
    printf '%-14s %10s %8s %7s %7s  %s\n' "$t" "$execs" "$speed" "${cov:-?}" "${ft:-?}" "$result"
    if [ "$status" -ne 0 ]; then
        grep -E 'panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|SUMMARY|Test unit written' "$log" \
            | head -8 | sed 's/^/    /'
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz/run.sh: failing targets: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
