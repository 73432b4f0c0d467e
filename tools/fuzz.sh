#!/usr/bin/env bash
# Nightly-style fuzzing with long budgets (CI runs the short ones):
#   1. the libFuzzer harnesses of the pure-C units (tests/fuzz/run.sh), SECONDS each
#      (default 1800; CI: 60), under ASan+UBSan, the grown corpus kept in build/fuzz/;
#   2. the hypothesis properties of tests/test_fuzz.py with 10,000 examples each (CI:
#      150), the worker processes running the ASan+UBSan build of the extension
#      (tools/test_sanitized.sh), so a memory error in the C core is a failing example.
#
#   bash tools/fuzz.sh [SECONDS]
# Any crash, sanitizer report or failed property fails the run; libFuzzer reproducers
# stay in build/fuzz/ (crash-*, leak-*), hypothesis prints the falsifying call.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-1800}
figures=${TUNTAP_FIGURES:-$PWD/build/fuzz-figures.jsonl}
mkdir -p "$(dirname "$figures")"
: >"$figures"
start=$(date +%s)
status=0
bash tests/fuzz/run.sh "$secs" || status=1
TUNTAP_SOAK=1 TUNTAP_FIGURES="$figures" bash tools/test_sanitized.sh tests/test_fuzz.py \
    || status=1
"${PYTHON:-python}" tools/figures.py "$figures" || true
echo "fuzz: $(( $(date +%s) - start )) s, exit $status"
exit $status
