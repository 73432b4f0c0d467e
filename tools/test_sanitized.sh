#!/usr/bin/env bash
# The whole test suite against an AddressSanitizer + UBSan build of the extension
# (TUNTAP_SANITIZE=1), run under `python -X dev` with CPython's debug hooks on a malloc
# heap (PYTHONMALLOC=malloc_debug: ASan sees every allocation, the hooks catch API
# misuse such as PyMem calls without the GIL). Any sanitizer report, in the pytest
# process or any child it starts, fails the run.
#
#   bash tools/test_sanitized.sh [pytest args...]
#
# The sanitized build goes to a temporary directory put first on PYTHONPATH: the
# venv's own install is left alone. Needs gcc's libasan/libubsan (gcc's runtime, as the
# extension is built with the system compiler). .ci/run runs this once per CI run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
out=$(mktemp -d /tmp/tuntap-sanitized.XXXXXX)
trap 'rm -rf "$out"' EXIT

echo "sanitized: building with TUNTAP_SANITIZE=1 into $out/site"
# From a copy without build/: setuptools would reuse the object files of an earlier
# (uninstrumented) build there, as .ci/run's -Werror build leaves them.
mkdir "$out/src"
tar --exclude=./build --exclude=./.ci-venv --exclude=./.venv --exclude=./.git -cf - . \
    | tar -xf - -C "$out/src"
if ! (cd "$out/src" && TUNTAP_SANITIZE=1 TUNTAP_WERROR=1 "$PY" -m pip install -q \
        --no-build-isolation --no-deps --no-cache-dir --target "$out/site" .) \
        >"$out/build.log" 2>&1; then
    tail -40 "$out/build.log"
    echo "sanitized: the build failed"
    exit 1
fi
asan=$(gcc -print-file-name=libasan.so)
ubsan=$(gcc -print-file-name=libubsan.so)
for lib in "$asan" "$ubsan"; do
    [ -e "$lib" ] || { echo "sanitized: $lib missing (apt-get install gcc)"; exit 2; }
done

# The sanitizer runtime belongs in Python processes only (the pytest process and the
# interpreters tests start): system tools (ip, tc, ping, cc, ...) run without it, or
# their own bugs would be reported (iproute2's ip has a strncpy overlap ASan aborts on).
# Every command name on PATH except python* is shadowed by a link to a shim that drops
# LD_PRELOAD and runs the real one.
mkdir -p "$out/bin"
cat >"$out/bin/.shim" <<'SHIM'
#!/bin/sh
unset LD_PRELOAD
PATH=$TUNTAP_REAL_PATH
exec "${0##*/}" "$@"
SHIM
chmod +x "$out/bin/.shim"
export TUNTAP_REAL_PATH=$PATH
IFS=: read -r -a dirs <<<"$PATH"
for d in "${dirs[@]}"; do
    [ -d "$d" ] || continue
    for f in "$d"/*; do
        n=${f##*/}
        case "$n" in python*|*[!A-Za-z0-9._+-]*) continue ;; esac
        [ -x "$f" ] && [ ! -e "$out/bin/$n" ] && ln -s .shim "$out/bin/$n"
    done
done
export PATH="$out/bin:$PATH"

export PYTHONPATH="$out/site${PYTHONPATH:+:$PYTHONPATH}"
export LD_PRELOAD="$asan $ubsan"
# Reports go to files (log_path.<pid>), so one in a child process is not lost in its
# captured stderr. Leak checking is off: CPython does not free everything at exit
# (tests/test_leaks.py measures leaks instead). allocator_may_return_null: the tests
# of huge PacketBatch allocations expect MemoryError, not an ASan abort.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:allocator_may_return_null=1:log_path=$out/report-asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$out/report-ubsan"
export PYTHONMALLOC=malloc_debug
export TUNTAP_SANITIZED=1   # tests/soakutil.py: RSS is no leak measure under ASan

so=$("$PY" -c "import tuntap._tuntap as m; print(m.__file__)")
case "$so" in
    "$out"/site/*) echo "sanitized: testing $so" ;;
    *) echo "sanitized: imported $so, not the sanitized build"; exit 1 ;;
esac
nm -D "$so" | grep __asan_report >/dev/null || { echo "sanitized: $so is not instrumented"; exit 1; }

status=0
"$PY" -X dev -m pytest -q -p no:cacheprovider "$@" || status=$?
# A report is an ERROR/runtime error/SUMMARY; "failed to allocate" warnings are the
# expected MemoryError of the huge-allocation tests.
reports=0
for f in "$out"/report-*; do
    [ -e "$f" ] || continue
    if grep -qE 'ERROR: |runtime error:|SUMMARY: ' "$f"; then
        echo "=== sanitizer report $f"
        head -80 "$f"
        reports=$((reports + 1))
    else
        sed "s/^/sanitized: note: /" "$f"
    fi
done
if [ $reports -gt 0 ]; then
    echo "sanitized: $reports sanitizer report(s) above"
    exit 1
fi
[ $status -eq 0 ] || { echo "sanitized: pytest failed ($status)"; exit $status; }
echo "sanitized: no sanitizer report"
