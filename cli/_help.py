"""``--help`` of every command, readable in one screen at 80 columns (presentation only).

Typer's Rich help gives each option five columns (long name, short name, negative name, negative
short name, type) before its help: at 80 columns the help text is left about 40 characters and
wraps onto several lines, a default takes a line of its own, and flags read ``<bool>``.  Commands
registered with :func:`supsup_store_cli._app.command` use :class:`HelpCommand` instead, which
prints the same usage line, description and panels (``rich_help_panel=`` on an option names its
panel) with two columns: the option as one types it (``--tasks INT``, ``--augment/--no-augment``,
a flag alone) and its help, ending with ``[default: ...]`` (or ``[required]``).  Help texts are
shown as written -- never read as Rich markup, so ``supsup-store[plot]`` and ``MODULE:FACTORY``
stay as they are.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import PurePath
from typing import Any

from rich.console import Console, Group
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from typer import rich_utils
from typer.core import TyperArgument, TyperCommand, TyperOption

__all__ = ["HelpCommand", "render_help", "help_panels", "usage_line", "option_label", "help_text", "default_text",
           "ARGUMENTS", "OPTIONS"]

#: Panels every command has: its arguments, then the options given no ``rich_help_panel``.
ARGUMENTS, OPTIONS = "Arguments", "Options"

#: The value placeholder of an option of each type (a flag shows none); ``metavar=`` overrides it.
_METAVARS = {int: "INT", float: "NUM", str: "TEXT"}


def _metavar(param: Any) -> str:
    if param.metavar is not None:
        return param.metavar
    annotation = param.type_descriptor.annotation
    if isinstance(annotation, type) and issubclass(annotation, PurePath):
        return "PATH"
    return _METAVARS.get(annotation, "TEXT")


def option_label(param: Any) -> str:
    """The option as one types it: ``--tasks INT``, ``--augment/--no-augment``, ``--overwrite``, or ``BANK``."""
    if isinstance(param, TyperArgument):
        return param.metavar or param.name.upper()
    names = "/".join([*param.opts[:1], *param.secondary_opts[:1]])
    return names if param.is_flag else f"{names} {_metavar(param)}"


def default_text(param: Any) -> str | None:
    """What ``[default: ...]`` says for ``param``: None when it shows none (no default, a flag that is off, or a
    help text that states its default itself)."""
    default = param.default
    if "[default:" in (param.help or "") or param.show_default is False or default is None or callable(default):
        return None
    if isinstance(param, TyperOption) and param.is_flag:
        if not param.secondary_opts:
            return None if default is False else "on"
        return (param.opts if default else param.secondary_opts)[0].removeprefix("--")
    return str(default)


def help_text(param: Any) -> str:
    """``param``'s help as one line of plain text, ending with ``[default: ...]`` or ``[required]``."""
    return _help_cell(param).plain


def _help_cell(param: Any) -> Text:
    text = Text(" ".join((param.help or "").split()), style=rich_utils.STYLE_OPTION_HELP)
    default = default_text(param)
    if default is not None:
        text.append(" " if text else "").append(f"[default: {default}]", style=rich_utils.STYLE_OPTION_DEFAULT)
    if param.required:
        text.append(" " if text else "").append("[required]", style=rich_utils.STYLE_REQUIRED_LONG)
    return text


#: Labels longer than this (``--task-inference/--no-task-inference``) take a line of their own, their help under
#: the others': one long label would otherwise narrow the help column of its whole panel.
_LONG_LABEL = 24


def _grid(width: int) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(width=width, no_wrap=True)
    table.add_column(ratio=1)
    return table


def _panel(title: str, params: list[Any]) -> Panel:
    labels = [Text(option_label(param), style=rich_utils.STYLE_OPTION) for param in params]
    width = max([len(label) for label in labels if len(label) <= _LONG_LABEL], default=0)
    parts: list[Any] = [_grid(width)]
    for label, param in zip(labels, params):
        if len(label) > width:  # the label alone, then its help in the help column
            parts += [label, _grid(width)]
            parts[-1].add_row("", _help_cell(param))
            parts.append(_grid(width))
        else:
            parts[-1].add_row(label, _help_cell(param))
    return Panel(Group(*(p for p in parts if not isinstance(p, Table) or p.row_count)), title=title,
                 title_align="left", border_style=rich_utils.STYLE_OPTIONS_PANEL_BORDER)


def usage_line(command: Any, ctx: Any) -> str:
    """``Usage: supsup-store recall [OPTIONS] [BANK]``: arguments in capitals, optional ones in brackets."""
    pieces = [command.options_metavar or ""]
    for param in command.get_params(ctx):
        if isinstance(param, TyperArgument):
            name = param.metavar or param.name.upper()
            pieces.append(name if param.required else f"[{name}]")
    if hasattr(command, "list_commands"):
        pieces.append("COMMAND [ARGS]...")
    return f"Usage: {ctx.command_path} " + " ".join(p for p in pieces if p)


def help_panels(command: Any, ctx: Any) -> dict[str, list[Any]]:
    """``command``'s shown parameters by panel, in the order ``--help`` shows them: "Arguments", "Options", then
    each ``rich_help_panel`` in the order of its first option (``--help`` joins the last when it would be alone).
    With :func:`option_label`, :func:`help_text` and :func:`usage_line`, what a generated reference needs to say
    exactly what ``--help`` says."""
    panels: dict[str, list[Any]] = defaultdict(list)
    panels[ARGUMENTS], panels[OPTIONS] = [], []  # these two first
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        default = ARGUMENTS if isinstance(param, TyperArgument) else OPTIONS
        panels[getattr(param, "rich_help_panel", None) or default].append(param)
    named = [title for title in panels if title not in (ARGUMENTS, OPTIONS)]
    if named and [p.name for p in panels[OPTIONS]] == ["help"]:  # --help alone: into the last panel
        panels[named[-1]] += panels.pop(OPTIONS)
    return {title: params for title, params in panels.items() if params}


def render_help(command: Any, ctx: Any, formatter: Any) -> None:
    """Write ``command``'s help (module docstring) to Click's ``formatter``: usage, description, one panel per
    ``rich_help_panel`` and, for a group, its commands."""
    console = Console(width=rich_utils.MAX_WIDTH, color_system=rich_utils.COLOR_SYSTEM,
                      force_terminal=rich_utils.FORCE_TERMINAL, highlight=False)
    parts: list[Any] = [Padding(Text(usage_line(command, ctx), style=rich_utils.STYLE_USAGE_COMMAND), (1, 1, 0, 1))]
    if command.help:
        first, *rest = command.help.split("\n\n")
        description = Text(" ".join(first.split()))
        for paragraph in rest:
            description.append("\n\n").append(" ".join(paragraph.split()), style=rich_utils.STYLE_HELPTEXT)
        parts.append(Padding(description, (1, 1, 0, 1)))
    parts.append(Text(""))
    parts += [_panel(title, params) for title, params in help_panels(command, ctx).items()]
    if hasattr(command, "list_commands"):
        parts.append(_commands_panel(command, ctx))
    with console.capture() as captured:  # through Click's formatter: ctx.get_help() returns it, as Click's does
        console.print(Group(*parts))
    formatter.write(captured.get())


def _commands_panel(group: Any, ctx: Any) -> Panel:
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True)
    table.add_column(ratio=1)
    for name in group.list_commands(ctx):
        sub = group.get_command(ctx, name)
        if sub is not None and not sub.hidden:
            first = (sub.short_help or sub.help or "").split("\n\n")[0]
            table.add_row(Text(name, style=rich_utils.STYLE_COMMANDS_TABLE_FIRST_COLUMN), Text(" ".join(first.split())))
    return Panel(table, title="Commands", title_align="left", border_style=rich_utils.STYLE_COMMANDS_PANEL_BORDER)


class HelpCommand(TyperCommand):
    """A Typer command whose ``--help`` fits one screen at 80 columns (module docstring)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        render_help(self, ctx, formatter)
