"""The installed package is complete: stubs and py.typed shipped, the stub matches the C
module, text signatures present, one version everywhere, the right extension binary.

These run wherever the suite runs, so tools/test_wheels.sh checks every built wheel (each
interpreter, each compiler's kernel headers) and .ci/run checks `pip install .`.
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.metadata
import inspect
import os
import sys
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
STUB_ONLY_MEMBERS = {"__iter__", "__buffer__", "__new__", "__len__", "__getitem__"}


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


@pytest.mark.parametrize("cls_name", ["Device", "PacketBatch"])
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
    assert {"test", "bench", "scapy"} <= extras


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
