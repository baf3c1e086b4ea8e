"""MkDocs hook: pages generated when the site is built (nothing is written into ``docs/``).

- ``reference/cli.md``: the command-line reference, read from the Typer app itself
  (``typer.main.get_command`` on :data:`supsup_store_cli.app.app`), so it always shows the
  options, defaults and help texts of the installed ``supsup-store``;
- ``changelog.md``: the repository's ``CHANGELOG.md``.

``python docs/hooks.py`` prints the CLI reference, for a look without building the site.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

CLI_PAGE = "reference/cli.md"
CHANGELOG_PAGE = "changelog.md"

_DEFAULT_PANEL = "Options"


_STYLE_TAG = re.compile(r"\[/?(?:bold|dim|italic|underline|reverse|red|green|yellow|blue|cyan|magenta|white|b|i|u)"
                        r"(?: (?:bold|dim|italic|red|green|yellow|blue|cyan|magenta|white))*\]|\[/\]")


def _strip_markup(text: str) -> str:
    """``text`` without Rich style tags (``[bold]``, ``[/]``) and their escapes (``\\[`` is a bracket).

    Click's own annotations (``[default: 1MB]``, ``[x>=1]``, ``[required]``) are kept: only style tags go.
    """
    return _STYLE_TAG.sub("", text).replace("\\[", "[")


def _plain(text: str | None) -> str:
    """A help text as one line of plain words."""
    return " ".join(_strip_markup(text or "").split())


def _cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell (HTML escaped; no pipes, emphasis or reference links)."""
    return _escape(text).replace("|", "\\|")


def _escape(text: str) -> str:
    """HTML escaped, and the Markdown that help texts would trigger escaped: ``*`` (emphasis) and brackets
    (``[default: 1] [x>=0]`` reads as a reference link)."""
    escaped = html.escape(text, quote=False)
    for char in "*[]":
        escaped = escaped.replace(char, "\\" + char)
    return escaped


def _prose(text: str) -> str:
    """A command's help as Markdown paragraphs (HTML escaped; blank lines kept)."""
    paragraphs = re.split(r"\n\s*\n", _strip_markup(text or ""))
    return "\n\n".join(_escape(" ".join(p.split())) for p in paragraphs if p.strip())


def _command_section(name: str, command: Any, parent_ctx: Any) -> list[str]:
    ctx = command.make_context(name, [], parent=parent_ctx, resilient_parsing=True)
    usage = command.get_usage(ctx).strip()
    lines = [f"## `{name}`", "", _prose(command.help or command.short_help or ""), "", "```text", usage, "```", ""]
    panels: dict[str, list[tuple[str, str]]] = {}
    arguments: list[tuple[str, str]] = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None or getattr(param, "hidden", False) or param.name == "help":
            continue
        names, help_text = record
        if getattr(param, "param_type_name", "") == "argument":
            arguments.append((names, help_text))
        else:
            panels.setdefault(getattr(param, "rich_help_panel", None) or _DEFAULT_PANEL, []).append((names, help_text))
    groups = ([("Arguments", arguments)] if arguments else []) + list(panels.items())
    for title, rows in groups:
        kind = "argument" if title == "Arguments" and rows is arguments else "option"
        lines += [f"**{_cell(title)}**", "", f"| {kind} | what it does |", "|---|---|"]
        lines += [f"| `{names}` | {_cell(_plain(help_text))} |" for names, help_text in rows]
        lines.append("")
    return lines


def cli_markdown() -> str:
    """The CLI reference page, generated from the Typer app."""
    from typer.main import get_command

    from supsup_store_cli.app import app

    root = get_command(app)
    ctx = root.make_context("supsup-store", [], resilient_parsing=True)
    lines = [
        "# Command-line reference",
        "",
        "Generated from the `supsup-store` command itself when this site was built; "
        "`supsup-store COMMAND --help` prints the same in a terminal.",
        "",
        _prose(root.help or ""),
        "",
        "```text",
        root.get_usage(ctx).strip(),
        "```",
        "",
    ]
    top = [p.get_help_record(ctx) for p in root.get_params(ctx) if p.name != "help"]
    lines += ["| option | what it does |", "|---|---|"]
    lines += [f"| `{r[0]}` | {_cell(_plain(r[1]))} |" for r in top if r is not None]
    lines.append("")
    for name in root.list_commands(ctx):
        command = root.get_command(ctx, name)
        if command is None or getattr(command, "hidden", False):
            continue
        lines += _command_section(name, command, ctx)
    return "\n".join(lines).rstrip() + "\n"


def changelog_markdown() -> str:
    """The repository's CHANGELOG.md."""
    return (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")


_SPHINX_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|exc|obj|const):<code>(~?)([^<]*)</code>")


def _role(match: re.Match) -> str:
    """``:func:`~a.b.name``` as ``name`` in code (the tilde shows the last part only), else the name as written."""
    name = match.group(2)
    return f"<code>{name.rsplit('.', 1)[-1] if match.group(1) else name}</code>"


def on_page_content(html_text: str, **_: Any) -> str:
    """Docstrings cite objects with Sphinx roles (``:func:`~pkg.name```): show them as code, without the role."""
    return _SPHINX_ROLE.sub(_role, html_text)


def on_files(files: Any, config: Any) -> Any:
    """Add the generated pages to the site (MkDocs >= 1.6: ``File.generated``)."""
    from mkdocs.structure.files import File

    for uri, make in ((CLI_PAGE, cli_markdown), (CHANGELOG_PAGE, changelog_markdown)):
        if files.get_file_from_path(uri) is None:
            files.append(File.generated(config, uri, content=make()))
    return files


if __name__ == "__main__":
    print(cli_markdown())
