"""Build the C API examples for the tests: the C-only demo (examples/capi/) with the system
C and C++ compilers, and the Cython example (examples/cython/) with pip, against the
tuntap that is imported (the source tree or an installed wheel)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

import tuntap

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEMO_C = EXAMPLES / "capi" / "tuntap_capi_demo.c"
CYTHON_DIR = EXAMPLES / "cython"
STRICT = ["-Wall", "-Wextra", "-Werror"]
STD = {"c": ["-std=c99"], "c++": ["-std=c++17", "-x", "c++"]}
COMPILER = {"c": "cc", "c++": "c++"}


def include_flags() -> list[str]:
    return ["-I" + sysconfig.get_paths()["include"], "-I" + tuntap.get_include()]


def compile_demo(outdir: Path, lang: str) -> Path:
    """Compile examples/capi/tuntap_capi_demo.c into a loadable extension module."""
    cc = shutil.which(COMPILER[lang])
    if cc is None:
        raise FileNotFoundError(f"no {COMPILER[lang]} on PATH")
    out = outdir / ("tuntap_capi_demo" + sysconfig.get_config_var("EXT_SUFFIX"))
    cmd = [cc, *STD[lang], *STRICT, "-O2", "-fPIC", "-shared", *include_flags(),
           str(DEMO_C), "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")
    return out


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build_cython_example(workdir: Path) -> Path:
    """pip-install examples/cython (a copy, so the source tree stays clean) into
    workdir/site, built without isolation against the tuntap of this interpreter.
    Returns the directory holding the built ttl_forward module."""
    src = workdir / "src"
    shutil.copytree(CYTHON_DIR, src, ignore=shutil.ignore_patterns("build", "*.so", "*.c",
                                                                     "*.egg-info"))
    site = workdir / "site"
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps",
           "--disable-pip-version-check", "--no-cache-dir", "--target", str(site), str(src)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")
    return site


def missing_build_tools() -> str | None:
    """Why the Cython example cannot be built here, or None."""
    for mod in ("Cython", "setuptools", "pip"):
        # PathFinder, not importlib.util.find_spec: setuptools' distutils hook on
        # sys.meta_path warns (an error under the suite's filterwarnings) when asked.
        if importlib.machinery.PathFinder.find_spec(mod) is None:
            return f"{mod} is not installed (pip install -r tools/requirements-test.txt)"
    if shutil.which("cc") is None:
        return "no C compiler (cc) on PATH"
    return None
