"""The documentation's Python blocks run as written, and the site's generated pages can be made.

Every ```` ```python ```` block of a page under ``docs/`` runs, in order, in one namespace per page, in a
scratch folder, and the page must print something.  A block that cannot run here (it needs files that
are not shipped, a GPU, or another environment) is preceded by ``<!-- not-run: why -->``; the reason is
required.  Reference pages whose Python blocks are signature listings are listed in
:data:`NOT_EXECUTED_PAGES` with the reason.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: Pages whose ``python`` blocks are not programs, and why.
NOT_EXECUTED_PAGES = {
    "ARCHITECTURE.md": "its python blocks list signatures, not code to run",
    "FORMAT.md": "its one recipe runs in tests/hopfield_masks/test_golden.py against the golden banks",
}

_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
_NOT_RUN = re.compile(r"<!--\s*not-run\s*:?(.*?)-->\s*$", re.S)


def doc_pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if p.name not in NOT_EXECUTED_PAGES)


def python_blocks(text: str) -> list[tuple[str, str | None]]:
    """``(code, reason)`` for every python block of ``text``; ``reason`` is set for blocks marked not to run."""
    blocks = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip().splitlines()
        marker = _NOT_RUN.search(before[-1]) if before else None
        blocks.append((match.group(1), marker.group(1).strip() if marker else None))
    return blocks


def _name(page: Path) -> str:
    return page.relative_to(DOCS).as_posix()


RUNNABLE = [p for p in doc_pages() if any(reason is None for _, reason in python_blocks(p.read_text(encoding="utf-8")))]


def test_the_tutorials_have_code_that_runs():
    names = {_name(p) for p in RUNNABLE}
    for page in ("tutorials/own-model.md", "tutorials/own-data.md", "tutorials/task-inference.md",
                 "tutorials/reservoir.md", "tutorials/storage.md"):
        assert page in names, f"{page} has no python block that runs"


@pytest.mark.parametrize("page", RUNNABLE, ids=_name)
def test_page_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for index, (code, reason) in enumerate(python_blocks(page.read_text(encoding="utf-8"))):
            if reason is None:
                exec(compile(code, f"{_name(page)} python block {index}", "exec"), namespace)  # noqa: S102 - our docs
    assert out.getvalue().strip(), f"{_name(page)} prints what shows its code worked"


def test_blocks_marked_not_to_run_say_why():
    for page in doc_pages():
        for _, reason in python_blocks(page.read_text(encoding="utf-8")):
            assert reason is None or len(reason) > 10, f"{_name(page)}: a not-run marker without its reason"


def test_every_page_is_in_the_navigation():
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in sorted(DOCS.rglob("*.md")):
        assert f": {_name(page)}" in config, f"{_name(page)} is not in mkdocs.yml's nav"


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_is_generated_from_the_app():
    """Every command and every option of ``supsup-store`` appears in the generated reference page."""
    from typer.main import get_command

    from supsup_store_cli.app import app

    text = _hooks().cli_markdown()
    root = get_command(app)
    ctx = root.make_context("supsup-store", [], resilient_parsing=True)
    for name in root.list_commands(ctx):
        assert f"## `{name}`" in text
        command = root.get_command(ctx, name)
        for param in command.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and opt != "--help" and not getattr(param, "hidden", False):
                    assert f"`{opt}" in text, f"{name} {opt} missing from the CLI reference"


def test_the_changelog_page_is_the_changelog():
    assert _hooks().changelog_markdown() == (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")


def test_the_site_builds_in_strict_mode(tmp_path):
    """``mkdocs build --strict`` (a few seconds; needs the ``docs`` extra, skipped without it: CI builds the site in
    its own environment)."""
    if any(importlib.util.find_spec(name) is None for name in ("mkdocs", "material", "mkdocstrings")):
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-4000:]


def _command_lines() -> list[tuple[str, list[str]]]:
    """``(where, argv)`` of every ``supsup-store`` command line in the README's and the pages' code blocks."""
    import shlex

    found = []
    for path in [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]:
        for block in re.findall(r"^```(?:bash|text)\n(.*?)^```", path.read_text(encoding="utf-8"), re.S | re.M):
            for line in block.splitlines():
                line = line.strip().removeprefix("$ ")
                for part in re.split(r"&&|;", line):
                    part = part.strip().removeprefix("cd demo_out").strip()
                    if part.startswith("supsup-store "):
                        found.append((path.name, shlex.split(part, comments=True)))
    return found


def test_every_documented_option_exists():
    """Each ``--option`` a documented ``supsup-store COMMAND`` line uses is an option of that command today."""
    from typer.main import get_command

    from supsup_store_cli.app import app

    root = get_command(app)
    ctx = root.make_context("supsup-store", [], resilient_parsing=True)
    lines = _command_lines()
    assert len(lines) > 20
    for where, argv in lines:
        command = root.get_command(ctx, argv[1])
        assert command is not None, f"{where}: no command {argv[1]!r} ({' '.join(argv)})"
        known = {opt for param in command.params for opt in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]}
        for token in argv[2:]:
            if token.startswith("--"):
                assert token.split("=")[0] in known, f"{where}: {argv[1]} has no option {token} ({' '.join(argv)})"
