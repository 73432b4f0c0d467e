#!/usr/bin/env bash
# The reliability tests with their long budgets (TUNTAP_SOAK=1); tests/README.md quotes
# the figures of the last run. Needs what the suite needs (root, /dev/net/tun, ip, tc).
#
#   bash tools/soak.sh [pytest args...]        # ~5 minutes on 2 cores
#   TUNTAP_SOAK_SANITIZED=1 bash tools/soak.sh # the same against the ASan+UBSan build
#
# Budgets (default suite in brackets): leak loops 100,000 calls per entry point [2,000]
# and 2,000 device create/close cycles [100]; loss accounting 1,000,000 packets each way
# [20,000]; detach_queue under traffic 10,000 cycles [300]; races 20,000 randomized
# iterations [1,000]; hypothesis 10,000 examples per property [150].
# Every measurement is one JSON line in $TUNTAP_FIGURES (default build/soak-figures.jsonl),
# printed as a table at the end (tools/figures.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
figures=${TUNTAP_FIGURES:-$PWD/build/soak-figures.jsonl}
mkdir -p "$(dirname "$figures")"
: >"$figures"
export TUNTAP_SOAK=1 TUNTAP_FIGURES="$figures"
tests=(tests/test_leaks.py tests/test_races.py tests/test_loss.py tests/test_fuzz.py)
start=$(date +%s)
status=0
if [ "${TUNTAP_SOAK_SANITIZED:-}" = 1 ]; then
    bash tools/test_sanitized.sh "${tests[@]}" "$@" || status=$?
else
    "$PY" -m pytest -q -p no:cacheprovider "${tests[@]}" "$@" || status=$?
fi
"$PY" tools/figures.py "$figures" || true
echo "soak: $(( $(date +%s) - start )) s, exit $status (figures: $figures)"
exit $status
