#!/usr/bin/env bash
# Test matrix for the release artifacts in dist/ (made by tools/build_wheels.sh).
#
# For each CPython 3.9-3.13: a fresh venv, install THAT interpreter's wheel from dist/ (never
# the source tree), install the pinned test dependencies, and run the full test suite from a
# temporary copy of tests/ so `import tuntap` can only find the installed wheel; a pytest
# plugin (tools/pytest_installed_check.py) asserts that during the run. Then the same with
# the sdist installed by plain `pip install` (build isolation, the host's C compiler), as a
# user without a wheel would. TUNTAP_REQUIRE_TUN=1, and any skipped test fails the matrix.
# Each wheel must contain the C API header and .pxd (tuntap/capi.h, tuntap/capi.pxd);
# tests/test_capi.py then builds examples/capi and examples/cython against the install.
#
# Environment:
#   TUNTAP_PYTHONS      interpreters (default: pyenv's newest 3.9, 3.10, 3.11, 3.12, 3.13)
#   TUNTAP_SDIST_PYTHON interpreter for the sdist run (default: the 3.12 one; "none" skips it)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dist="$root/dist"
reqs="$root/tools/requirements-test.txt"
log() { printf '[test_wheels] %s\n' "$*" >&2; }

if [ -n "${TUNTAP_PYTHONS:-}" ]; then
    read -r -a pythons <<<"$TUNTAP_PYTHONS"
else
    pythons=()
    for v in 3.9 3.10 3.11 3.12 3.13; do
        py=$(ls -d "$HOME"/.pyenv/versions/"$v".*/bin/python 2>/dev/null | sort -V | tail -1 || true)
        [ -n "$py" ] || { log "no CPython $v under ~/.pyenv/versions"; exit 1; }
        pythons+=("$py")
    done
fi
sdist_py=${TUNTAP_SDIST_PYTHON:-}
if [ -z "$sdist_py" ]; then
    for py in "${pythons[@]}"; do
        "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' && sdist_py=$py
    done
    sdist_py=${sdist_py:-${pythons[0]}}
fi

work=$(mktemp -d /tmp/tuntap-matrix.XXXXXX)
trap 'rm -rf "$work"' EXIT
export TUNTAP_REQUIRE_TUN=1
export TUNTAP_HYPOTHESIS_PROFILE=ci
export PIP_DISABLE_PIP_VERSION_CHECK=1

# run_suite LABEL PYTHON INSTALL-ARG: venv, install, copy the tests, run them, check junit.
run_suite() {
    local label=$1 py=$2 what=$3
    local venv="$work/venv-$label" tdir="$work/tests-$label" t0
    t0=$(date +%s)
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q -r "$reqs" 2>&1 | grep -v '^WARNING: Location' >&2 || true
    "$venv/bin/python" -m pip install -q "$what" >"$work/install-$label.log" 2>&1 \
        || { cat "$work/install-$label.log"; log "$label: install of $what failed"; return 1; }
    # The suite's pytest settings live in pyproject.toml; take that file, tests/, docs/
    # (test_docs.py checks docs/kernel.md against the tests), the README and the examples
    # (test_readme.py and test_examples.py run them as a user would) and the benchmark
    # sources some tests compare with, never src/.
    mkdir -p "$tdir"
    cp -r "$root/tests" "$tdir/tests"
    cp -r "$root/docs" "$tdir/docs"
    cp "$root/pyproject.toml" "$tdir/"
    cp "$root/README.md" "$tdir/"
    # examples/ too: tests run the example programs (e.g. async_ping_responder.py) and
    # tests/test_capi.py builds the C API examples against the installed package.
    cp -r "$root/examples" "$tdir/examples"
    if [ -d "$root/benchmarks" ]; then
        mkdir -p "$tdir/benchmarks"
        find "$root/benchmarks" -maxdepth 1 -type f -exec cp {} "$tdir/benchmarks/" \;
    fi
    local site
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')
    local rc=0
    (cd "$tdir" && TUNTAP_EXPECT_PREFIX="$site" PYTHONPATH="$root/tools" \
        "$venv/bin/python" -m pytest -q -p no:cacheprovider -p pytest_installed_check \
        --junitxml="$work/junit-$label.xml" tests) || rc=$?
    if [ $rc -ne 0 ]; then log "$label: pytest exited $rc"; return 1; fi
    "$venv/bin/python" "$root/tools/check_junit.py" "$work/junit-$label.xml" "$label" || return 1
    log "$label: ok in $(( $(date +%s) - t0 ))s"
    rm -rf "$venv" "$tdir"
}

failed=()
for py in "${pythons[@]}"; do
    tag=$("$py" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
    whls=("$dist"/tuntap-*-"$tag"-"$tag"-*manylinux*.whl)
    if [ ! -f "${whls[0]}" ] || [ ${#whls[@]} -ne 1 ]; then
        log "$tag: expected exactly one wheel in $dist, found: ${whls[*]}"
        failed+=("$tag")
        continue
    fi
    log "$tag: $(basename "${whls[0]}")"
    # The C API ships in the wheel: the header and the Cython declarations.
    if ! "$py" - "${whls[0]}" <<'EOF'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
missing = {"tuntap/capi.h", "tuntap/capi.pxd"} - names
sys.exit(f"wheel lacks {sorted(missing)}" if missing else 0)
EOF
    then
        log "$tag: the wheel lacks the C API files"
        failed+=("$tag")
        continue
    fi
    run_suite "$tag" "$py" "${whls[0]}" || failed+=("$tag")
done

if [ "$sdist_py" != none ]; then
    sdists=("$dist"/tuntap-*.tar.gz)
    if [ -f "${sdists[0]}" ] && [ ${#sdists[@]} -eq 1 ]; then
        log "sdist: $(basename "${sdists[0]}") with $("$sdist_py" -c 'import sys; print(sys.version.split()[0])')"
        run_suite sdist "$sdist_py" "${sdists[0]}" || failed+=(sdist)
    else
        log "sdist: expected exactly one in $dist"
        failed+=(sdist)
    fi
fi

if [ ${#failed[@]} -gt 0 ]; then
    log "FAILED: ${failed[*]}"
    exit 1
fi
log "all passed: ${#pythons[@]} wheels$([ "$sdist_py" != none ] && echo " + sdist")"
