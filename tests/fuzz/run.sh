#!/usr/bin/env bash
# Build and run the libFuzzer harnesses of the pure-C units (src/gso.c, src/netlink.c, ...).
#
#   bash tests/fuzz/run.sh [SECONDS] [HARNESS ...]
#
# SECONDS per harness (default 60; .ci/run uses 60, tools/fuzz.sh a longer budget).
# Each harness is tests/fuzz/fuzz_<unit>.c, linked with src/<unit>.c, built with clang
# -fsanitize=fuzzer,address,undefined (every UBSan finding is fatal), and run on a copy
# of its committed seed corpus tests/fuzz/corpus/<unit>/ so the repository stays small.
# Any crash, leak, sanitizer report or failed invariant makes this script fail; the
# reproducer is kept in $TUNTAP_FUZZ_OUT (default build/fuzz/) as crash-* / leak-*.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-60}
shift || true
out=${TUNTAP_FUZZ_OUT:-$root/build/fuzz}
cc=${CLANG:-clang}
command -v "$cc" >/dev/null || { echo "fuzz: $cc not found (apt-get install clang libclang-rt-dev)"; exit 2; }
mkdir -p "$out"

harnesses=("$@")
if [ ${#harnesses[@]} -eq 0 ]; then
    for f in "$here"/fuzz_*.c; do
        b=$(basename "$f" .c)
        harnesses+=("${b#fuzz_}")
    done
fi

status=0
for unit in "${harnesses[@]}"; do
    bin="$out/fuzz_$unit"
    # A harness may need more units: a " * fuzz-link: gso ..." line in its comment.
    extra=()
    for u in $(sed -n 's/^ \* fuzz-link: //p' "$here/fuzz_$unit.c"); do
        extra+=("$root/src/$u.c")
    done
    "$cc" -g -O1 -std=c11 -Wall -Wextra -Werror \
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
        -I"$root/src" "$here/fuzz_$unit.c" "$root/src/$unit.c" ${extra[@]+"${extra[@]}"} -o "$bin"
    work="$out/corpus-$unit"
    rm -rf "$work"
    mkdir -p "$work"
    if [ -d "$here/corpus/$unit" ]; then
        cp "$here/corpus/$unit"/* "$work"/ 2>/dev/null || true
    fi
    echo "fuzz: $unit for ${secs}s ($(ls "$work" | wc -l) seeds)"
    if ! (cd "$out" && UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
            ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
            "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 \
            -print_final_stats=1 "$work" 2>"$out/fuzz_$unit.log"); then
        echo "fuzz: $unit FAILED; tail of $out/fuzz_$unit.log:"
        tail -40 "$out/fuzz_$unit.log"
        status=1
    else
        grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "$out/fuzz_$unit.log" \
            | sed "s/^/fuzz: $unit: /"
        echo "fuzz: $unit clean; corpus grew to $(ls "$work" | wc -l) inputs"
    fi
done
exit $status
