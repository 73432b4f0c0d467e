"""The installed package is complete: stubs and py.typed shipped, the stub matches the C
module, text signatures present, one version everywhere, the right extension binary, the
bench package with its C floor and the `tuntap` console script; in a source tree, the sdist
and a wheel built from it carry them too.

These run wherever the suite runs, so tools/test_wheels.sh checks every built wheel (each
interpreter, each compiler's kernel headers) and .ci/run checks `pip install .`.
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.metadata
import inspect
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

import tuntap
from tuntap import _tuntap

PKG_DIR = Path(tuntap.__file__).parent
STUB = PKG_DIR / "_tuntap.pyi"

# Names the C module defines only when the kernel headers at build time do (see
# tools/stubtest-allowlist.txt): the stub may list them although the runtime lacks them.
OPTIONAL = {"IFF_NAPI", "IFF_NAPI_FRAGS", "IFF_NO_CARRIER"}
# Declared in the stub for type checkers only (no Python-level attribute at runtime on
# some versions): iteration via sq_item, __buffer__ before 3.12.
STUB_ONLY_MEMBERS = {"__iter__", "__buffer__", "__new__", "__len__", "__getitem__", "__init__",
                     "__await__", "__next__"}


def _stub_tree() -> ast.Module:
    return ast.parse(STUB.read_text(encoding="utf-8"), filename=str(STUB))


def _stub_toplevel(tree: ast.Module) -> dict[str, ast.stmt]:
    names: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names[node.name] = node
    return names


def _stub_members(cls: ast.ClassDef) -> set[str]:
    return {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}


def _runtime_public(cls: type) -> set[str]:
    return {n for n in vars(cls) if not n.startswith("__")}


def test_typing_files_are_installed_next_to_the_package() -> None:
    assert (PKG_DIR / "py.typed").is_file()
    assert STUB.is_file()
    assert STUB.stat().st_size > 1000


def test_stub_lists_every_module_level_name_of_the_c_module() -> None:
    stub = set(_stub_toplevel(_stub_tree()))
    runtime = {n for n in vars(_tuntap) if not n.startswith("__")}
    assert runtime - stub == set(), "in the C module but missing from _tuntap.pyi"
    typing_only = {"_NetNs", "_Path", "_Buffer", "_UringStats", "_UringProbe"}
    assert stub - runtime - OPTIONAL - typing_only == set(), (
        "in _tuntap.pyi but not in the C module"
    )


@pytest.mark.parametrize("cls_name", ["Device", "PacketBatch", "_AsyncCore", "_AioCall"])
def test_stub_lists_every_member_of_the_c_types(cls_name: str) -> None:
    node = _stub_toplevel(_stub_tree())[cls_name]
    assert isinstance(node, ast.ClassDef)
    stub = _stub_members(node)
    runtime = _runtime_public(getattr(_tuntap, cls_name))
    assert runtime - stub == set(), f"{cls_name}: in C but missing from the stub"
    assert stub - runtime - STUB_ONLY_MEMBERS == set(), f"{cls_name}: in the stub, not in C"


def _callables() -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = [("features", _tuntap.features)]
    for cls in (_tuntap.Device, _tuntap.PacketBatch):
        for name, attr in vars(cls).items():
            if not name.startswith("__") and callable(attr):
                out.append((f"{cls.__name__}.{name}", getattr(cls, name)))
    return out


@pytest.mark.parametrize(("name", "func"), _callables(), ids=[n for n, _ in _callables()])
def test_every_c_function_has_a_text_signature(name: str, func: object) -> None:
    # PyDoc_STRVAR("name($self, ...)\n--\n\n..."): what help(), inspect and stubtest read.
    assert getattr(func, "__text_signature__", None), f"{name} has no text signature"
    inspect.signature(func)  # type: ignore[arg-type]


def test_c_types_have_parsable_constructor_signatures() -> None:
    if sys.version_info < (3, 10):
        # CPython 3.9's PyType_FromSpec drops the "Name(...)\n--\n\n" signature from a
        # heap type's doc, so inspect cannot see it there (bpo-41073, fixed in 3.10).
        assert _tuntap.Device.__text_signature__ is None
        assert _tuntap.Device.__doc__.startswith("A TUN/TAP device")
        return
    dev = inspect.signature(_tuntap.Device)
    assert list(dev.parameters) == ["name", "flags", "blocking", "netns", "path", "io"]
    assert dev.parameters["io"].kind is inspect.Parameter.KEYWORD_ONLY
    assert dev.parameters["io"].default == "auto"
    assert dev.parameters["blocking"].kind is inspect.Parameter.KEYWORD_ONLY
    assert dev.parameters["flags"].default == _tuntap.IFF_TUN | _tuntap.IFF_NO_PI
    batch = inspect.signature(_tuntap.PacketBatch)
    assert list(batch.parameters) == ["capacity", "slot_size", "headroom"]
    assert batch.parameters["capacity"].default == 64


def test_version_is_the_one_in_the_metadata() -> None:
    from tuntap._version import __version__

    assert tuntap.__version__ == __version__
    try:
        dist = importlib.metadata.version("tuntap")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("tuntap is not installed (running from a source tree)")
    assert dist == __version__


def test_metadata_declares_this_python_and_linux() -> None:
    try:
        meta = importlib.metadata.metadata("tuntap")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("tuntap is not installed (running from a source tree)")
    classifiers = meta.get_all("Classifier") or []
    assert "Operating System :: POSIX :: Linux" in classifiers
    assert "Typing :: Typed" in classifiers
    here = "Programming Language :: Python :: {}.{}".format(*sys.version_info[:2])
    assert here in classifiers
    assert meta["Requires-Python"] == ">=3.9"
    extras = set(meta.get_all("Provides-Extra") or [])
    assert {"test", "bench", "scapy", "vpn"} <= extras


def test_extension_is_built_for_this_interpreter() -> None:
    path = _tuntap.__file__
    assert path is not None and os.path.dirname(path) == str(PKG_DIR)
    assert path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    assert f"cpython-{sys.version_info[0]}{sys.version_info[1]}" in os.path.basename(path)


def test_flag_enums_cover_the_compiled_constants() -> None:
    for const in (n for n in vars(_tuntap) if n.startswith("IFF_")):
        assert getattr(tuntap.Flags, const[4:]) == getattr(_tuntap, const)
    for const in (n for n in vars(_tuntap) if n.startswith("TUN_F_")):
        assert getattr(tuntap.Offload, const[6:]) == getattr(_tuntap, const)


# --------------------------------------------------------------------------- the commands
CLI_MODULES = {"__init__", "capture", "common", "devices", "netinfo", "pcap", "replay"}


def test_the_command_implementations_are_installed() -> None:
    assert {p.stem for p in (PKG_DIR / "_cli").glob("*.py")} == CLI_MODULES


# --------------------------------------------------------------------------- tuntap bench
BENCH_MODULES = {"__init__", "cfloor", "cli", "env", "methods", "packets", "report", "runner"}


def test_bench_package_and_its_c_floor_are_installed() -> None:
    # `python -m tuntap bench` compiles cfloor.c at run time: it must be package data.
    bench = PKG_DIR / "_bench"
    assert {p.stem for p in bench.glob("*.py")} == BENCH_MODULES
    cfloor = bench / "cfloor.c"
    assert cfloor.is_file()
    assert "int cfloor_run(int fd" in cfloor.read_text(encoding="utf-8")
    from tuntap._bench import cfloor as cfloor_mod

    assert cfloor_mod.source() == cfloor.read_text(encoding="utf-8")


def _console_scripts() -> dict[str, str]:
    if sys.version_info >= (3, 10):
        group = importlib.metadata.entry_points(group="console_scripts")
    else:  # 3.9: a dict of groups
        group = importlib.metadata.entry_points().get("console_scripts", [])
    return {ep.name: ep.value for ep in group}


def test_console_script_is_declared_and_prints_the_version() -> None:
    try:
        importlib.metadata.version("tuntap")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("tuntap is not installed (running from a source tree)")
    assert _console_scripts().get("tuntap") == "tuntap.__main__:main"
    script = Path(sysconfig.get_path("scripts")) / "tuntap"
    assert script.is_file(), f"no console script at {script}"
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                          timeout=60, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"tuntap {tuntap.__version__}\n"


ROOT = Path(__file__).resolve().parents[1]
_JUNK = shutil.ignore_patterns(".git", ".venv", ".ci-venv", "build", "dist", "wheelhouse",
                               "*.egg-info", "__pycache__", "*.so", "_build", ".*_cache")

# Only where the source tree is (not in tools/test_wheels.sh, which runs a copy of tests/
# against an installed wheel: there test_bench_package_and_its_c_floor_are_installed
# checks the wheel itself, and tools/build_wheels.sh checks the sdist's file list).
if (ROOT / "src" / "tuntap" / "_bench").is_dir() and (ROOT / "MANIFEST.in").is_file():

    def test_sdist_and_the_wheel_built_from_it_carry_the_bench_package(
        tmp_path: Path,
    ) -> None:
        pytest.importorskip("setuptools")
        tree = tmp_path / "tree"
        shutil.copytree(ROOT, tree, ignore=_JUNK)
        out = tmp_path / "out"
        out.mkdir()
        build = ("import sys\nfrom setuptools import build_meta as b\n"
                 "print(getattr(b, sys.argv[1])(sys.argv[2]))\n")

        def pep517(hook: str, where: Path) -> Path:
            proc = subprocess.run([sys.executable, "-c", build, hook, str(out)], cwd=where,
                                  capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            return out / proc.stdout.splitlines()[-1]

        sdist = pep517("build_sdist", tree)
        with tarfile.open(sdist) as tar:
            top = sdist.name[: -len(".tar.gz")]
            names = {n[len(top) + 1:] for n in tar.getnames()}
            if hasattr(tarfile, "data_filter"):  # 3.12+ and the 3.9-3.11 security releases
                tar.extractall(tmp_path, filter="data")
            else:
                tar.extractall(tmp_path)
        pkg = tree / "src" / "tuntap"
        wanted = {str(p.relative_to(tree)) for p in pkg.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".so"}
        assert "src/tuntap/_bench/cfloor.c" in wanted
        assert wanted - names == set(), "in src/tuntap/ but not in the sdist (MANIFEST.in)"

        # As tools/build_wheels.sh does: the wheel is built from the unpacked sdist.
        wheel = pep517("build_wheel", tmp_path / top)
        with zipfile.ZipFile(wheel) as whl:
            files = set(whl.namelist())
            entry_points = next(n for n in files if n.endswith(".dist-info/entry_points.txt"))
            scripts = whl.read(entry_points).decode()
        expected = {f"tuntap/_bench/{m}.py" for m in BENCH_MODULES} | {"tuntap/_bench/cfloor.c"}
        assert expected - files == set(), "missing from the wheel"
        assert "[console_scripts]\ntuntap = tuntap.__main__:main" in scripts
