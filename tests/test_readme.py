"""Every code block of README.md runs as written, so the README cannot rot.

The convention (also stated in README.md, "Running the tests"):

* Every fenced ```` ```python ```` block is a complete program. It is written to a file
  and run with this interpreter, as root, inside the test session's private network
  namespace, from an empty directory, and must exit 0 within 60 s. It makes the traffic
  it waits for and bounds every wait.
* A block may start with marker comments: ``# readme: needs ping iperf3`` (system tools
  it runs: the test skips with the reason when one is missing; ``.ci/run`` installs them)
  and ``# readme: timeout 120`` (seconds, when 60 is not enough).
* A fenced ```` ```sh ```` block whose first line is ``# readme: run`` is run with
  ``bash -euo pipefail`` the same way, with this interpreter's ``bin/`` (``tuntap``)
  first on PATH. Other ``sh`` blocks (installation, set-up) are shown, not run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
DEFAULT_TIMEOUT = 60


class Block(NamedTuple):
    line: int
    heading: str
    lang: str
    code: str

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")[:40]
        return f"L{self.line}-{slug or 'top'}"

    def markers(self, key: str) -> list[str]:
        """The words after ``# readme: KEY`` on the block's leading comment lines."""
        words: list[str] = []
        for line in self.code.splitlines():
            if not line.startswith("#"):
                break
            m = re.match(r"#\s*readme:\s*(\w+)\s*(.*)", line)
            if m and m.group(1) == key:
                words += m.group(2).split()
        return words


def readme_blocks(text: str) -> list[Block]:
    """Every fenced code block, with its line number and the heading above it."""
    blocks: list[Block] = []
    heading = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#") and not line.startswith("#!"):
            heading = line.lstrip("#").strip()
        m = re.match(r"^```(\S*)\s*$", line)
        if m:
            start = i + 1
            j = start
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            if j == len(lines):
                raise AssertionError(f"README.md:{i + 1}: code block never closed")
            blocks.append(Block(i + 1, heading, m.group(1), "\n".join(lines[start:j]) + "\n"))
            i = j
        i += 1
    return blocks


def _runnable() -> list[Block]:
    if not README.exists():
        return []
    return [b for b in readme_blocks(README.read_text())
            if b.lang == "python" or (b.lang == "sh" and b.code.startswith("# readme: run"))]


def test_readme_is_next_to_the_tests() -> None:
    # The runner below finds nothing to run without it: fail, do not pass quietly.
    assert README.exists(), f"{README} is missing (tools/test_wheels.sh copies it)"
    assert len([b for b in _runnable() if b.lang == "python"]) >= 4


def test_block_extraction_knows_headings_markers_and_languages() -> None:
    text = ("# Title\n\n## Quick\n\n```python\n# readme: needs ping iperf3\n"
            "# readme: timeout 90\nprint(1)\n```\n\n```sh\npip install .\n```\n")
    blocks = readme_blocks(text)
    assert [(b.line, b.heading, b.lang) for b in blocks] == [(5, "Quick", "python"),
                                                           (11, "Quick", "sh")]
    assert blocks[0].markers("needs") == ["ping", "iperf3"]
    assert blocks[0].markers("timeout") == ["90"]
    assert blocks[0].id == "L5-quick"
    with pytest.raises(AssertionError, match="README.md:1: code block never closed"):
        readme_blocks("```python\nprint(1)\n")


@pytest.mark.needs_tun
@pytest.mark.parametrize("block", _runnable(), ids=lambda b: b.id)
def test_readme_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    for tool in block.markers("needs"):
        if shutil.which(tool) is None:
            pytest.skip(f"README.md:{block.line} needs `{tool}`, which is not installed")
    timeout = float((block.markers("timeout") or [DEFAULT_TIMEOUT])[0])
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.pop("PYTHONPATH", None)
    if block.lang == "python":
        script = tmp_path / f"readme_{block.line}.py"
        script.write_text(block.code)
        argv = [sys.executable, str(script)]
    else:
        argv = ["bash", "-euo", "pipefail", "-c", block.code]
    try:
        r = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"README.md:{block.line} ({block.heading}) did not end within "
                    f"{timeout:.0f} s; output so far:\n{exc.stdout!r}\n{exc.stderr!r}")
    assert r.returncode == 0, (f"README.md:{block.line} ({block.heading}) exited "
                               f"{r.returncode}:\n{r.stdout}\n{r.stderr}")
    assert "Traceback" not in r.stderr
