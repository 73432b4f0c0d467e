"""docs/kernel.md names, for each kernel behaviour the library relies on, the test that
shows it (``tests/FILE::TEST``): every one of them must exist, so the document cannot
drift from the suite."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNEL_MD = ROOT / "docs" / "kernel.md"
CITED = re.compile(r"tests/(test_\w+\.py)::(test_\w+)")


def _cited() -> set[tuple[str, str]]:
    return set(CITED.findall(KERNEL_MD.read_text(encoding="utf-8")))


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)
            and node.name.startswith("test_")}


def test_kernel_md_names_a_test_for_its_behaviours() -> None:
    cited = _cited()
    assert len(cited) >= 80, len(cited)
    assert len({file for file, _ in cited}) >= 10


def test_every_test_named_in_kernel_md_exists() -> None:
    missing = []
    defined: dict[str, set[str]] = {}
    for file, name in sorted(_cited()):
        path = ROOT / "tests" / file
        if file not in defined:
            defined[file] = _test_functions(path) if path.is_file() else set()
        if name not in defined[file]:
            missing.append(f"tests/{file}::{name}")
    assert not missing, f"docs/kernel.md names tests that do not exist: {missing}"


def test_the_docs_refer_to_nothing_outside_the_repository() -> None:
    for doc in sorted((ROOT / "docs").glob("*.md")):
        text = doc.read_text(encoding="utf-8")
        assert not re.search(r"\.\./|/work/|\b(KERNEL|API|STYLE)\.md\b", text), doc.name
