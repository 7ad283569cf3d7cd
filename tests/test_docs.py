"""Every ```python block in README.md and docs/*.md runs as written.

The blocks of one file run in order in one namespace (a guide builds up step by step), in a
temporary working directory. Blocks fenced as ```text, ```sh etc. are not run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(path: Path) -> list[str]:
    return PYTHON_BLOCK.findall(path.read_text())


@pytest.mark.parametrize(
    "doc", [p for p in DOC_FILES if python_blocks(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_code_blocks_run(doc: Path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__doc_example__"}
    for i, block in enumerate(python_blocks(doc)):
        try:
            exec(compile(block, f"{doc.name}[block {i}]", "exec"), namespace)
        except Exception as exc:  # name the block that failed
            raise AssertionError(f"{doc.name}, python block {i} failed: {exc!r}\n{block}") from exc
