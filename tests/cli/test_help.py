"""``--help`` of every command (cli/_help.py) and ``--version``: one screen at 80 columns, panels, flags shown as
flags, every default stated, help texts shown as written."""

from __future__ import annotations

import re
from importlib.metadata import version

import pytest
import typer
from rich.markup import escape
from rich.text import Text
from typer.testing import CliRunner

from supsup_store_cli._help import default_text, option_label
from supsup_store_cli.app import app

runner = CliRunner()
COMMANDS = ("info", "verify", "capacity", "train", "evaluate", "encode", "recall", "demo")

#: Options whose unset value means "not asked for" (no plot, no cluster, no factory): no default to state.
NOTHING_BY_DEFAULT = {"plot", "ray_address", "data_dir", "model", "recipe"}


@pytest.fixture(autouse=True)
def width_80(monkeypatch):
    """Help rendered for an 80-column terminal."""
    monkeypatch.setenv("COLUMNS", "80")


def _help(*args: str) -> str:
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    return result.stdout


def _commands() -> dict:
    return typer.main.get_command(app).commands


class TestHelp:
    def test_train_help_fits_one_screen(self):
        """train --help, its 30 options in panels, is at most 50 lines of at most 80 columns."""
        lines = _help("train").splitlines()
        assert len(lines) <= 50, len(lines)
        assert max(len(line) for line in lines) <= 80
        for panel in ("Options", "Data", "Model", "Training", "Compute"):
            assert f"╭─ {panel} ─" in "\n".join(lines), panel

    @pytest.mark.parametrize("command", [None, *COMMANDS])
    def test_every_help_reads_at_80_columns(self, command):
        """Every --help exits 0 within 80 columns, never shows <bool> or a stray ' .', and names no emoji."""
        text = _help(*([] if command is None else [command]))
        assert max(len(line) for line in text.splitlines()) <= 80
        assert "<bool>" not in text and not re.search(r" \.(?!\.)", text)  # " ..." is an ellipsis, " ." a stray stop
        assert not re.search(r"[\U0001F300-\U0001FAFF]", text)

    @pytest.mark.parametrize("command", COMMANDS)
    def test_flags_show_as_flags_and_values_as_placeholders(self, command):
        """A flag shows as --flag or --flag/--no-flag; an option that takes a value shows its placeholder."""
        text = _help(command)
        for param in _commands()[command].params:
            if getattr(param, "hidden", False) or not param.opts[0].startswith("--"):
                continue
            label = option_label(param)
            if param.is_flag:
                assert label == "/".join([param.opts[0], *param.secondary_opts[:1]])
            else:
                assert label.startswith(param.opts[0] + " ") and label.split(" ", 1)[1].isupper() or "|" in label
            assert label in text, label

    @pytest.mark.parametrize("command", COMMANDS)
    def test_every_default_is_stated(self, command):
        """Each option states its default: shown from the value, or written in its help when the value is None."""
        text = " ".join(_help(command).replace("│", " ").split())
        for param in _commands()[command].params:
            if getattr(param, "hidden", False) or param.required or param.name in NOTHING_BY_DEFAULT:
                continue
            if param.default is None and not getattr(param, "is_flag", False):
                assert "[default:" in (param.help or ""), param.name
            elif default_text(param) is not None:
                assert f"[default: {default_text(param)}]" in text, param.name

    @pytest.mark.parametrize("command", COMMANDS)
    def test_help_texts_are_clean_and_shown_as_written(self, command):
        """No double spaces or ' .' in any help text, and nothing a Rich renderer would read as an emoji code
        (``MODULE:FACTORY:`` once showed as a factory emoji) or, in a command's description, as markup."""
        cmd = _commands()[command]
        assert Text.from_markup(cmd.help).plain == cmd.help
        for text in [cmd.help, *(p.help for p in cmd.params)]:
            if text:
                assert "  " not in text and not re.search(r" \.(?!\.)", text), text
                assert Text.from_markup(escape(text)).plain == text, text

    def test_method_help_names_the_default_and_the_papers(self):
        """evaluate --help says the default method is the library's (rerank) and which methods are the paper's."""
        from supsup_core.inference import DEFAULT_METHOD

        text = " ".join(_help("evaluate").replace("│", " ").split())
        assert f"--method NAME rerank (best on LeNet), or the paper's one-shot (best on FC) or binary (slow) [default: " \
               f"{DEFAULT_METHOD}]" in text

    def test_version(self):
        """--version prints the installed distribution's version and exits 0."""
        result = runner.invoke(app, ["--version"])
        assert result.exit_code == 0 and result.stdout.strip() == f"supsup-store {version('supsup-store')}"
