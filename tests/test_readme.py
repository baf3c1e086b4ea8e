"""The README's Python blocks marked ``<!-- tested -->`` run as written (in a scratch folder, one namespace)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"<!-- tested -->\s*\n```python\n(.*?)```", re.S)


def readme_blocks() -> list[str]:
    return _BLOCK.findall(README.read_text(encoding="utf-8"))


def test_the_readme_has_a_tested_quick_start():
    blocks = readme_blocks()
    assert blocks and "wrap(" in blocks[0] and "predict(" in blocks[0] and "load_masks_into(" in blocks[0]


@pytest.mark.parametrize("index", range(len(readme_blocks())))
def test_readme_block_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(readme_blocks()[index], f"README.md block {index}", "exec"), {"__name__": "__readme__"})
    assert out.getvalue().strip(), "the block prints what shows it worked"
