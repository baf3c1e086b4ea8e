"""``supsup-store info FILE``: describe a mask bank or a reservoir file.

A thin forwarder to :func:`hopfield_masks.backends.describe_file`: prints a
summary and a per-task table with rich, or the description as JSON
(``--json``) for scripts.  Missing, truncated or non-HDF5 files end with a
one-line error naming the path and exit code 2 (through :func:`guarded`).

Everything that comes from the file (names, attributes, metadata) or from the
command line (the path) is printed through :func:`~supsup_store_cli._untrusted.plain`,
never interpreted as Rich markup: ``[bold]`` or ``[/]`` in a task name or
attribute -- valid input to ``write_task`` -- is shown as written, and control
characters as escapes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from hopfield_masks.budget import format_bytes
from hopfield_masks.errors import InvalidArgumentError

from ._app import JSON_ERROR_HELP, command, console, guarded
from ._untrusted import plain

__all__ = ["info", "render"]


def _density(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _short(value: Any, width: int = 60) -> str:
    """Compact JSON, cut to ``width`` characters for table cells."""
    text = json.dumps(value, separators=(", ", ": "))
    return text if len(text) <= width else text[: width - 1] + "…"


def _layers(layers: list[dict[str, Any]]) -> str:
    return ", ".join(f"{layer['name']} {'×'.join(map(str, layer['shape'])) or 'scalar'}" for layer in layers)


def _render_bank(desc: dict[str, Any], limit: int) -> None:
    console.print(plain("backend: ") + plain(desc["backend"], "bold") + plain(f"   tasks: {desc['n_tasks']}"))
    console.print(plain(f"metadata: {_short(desc['metadata'], 200)}"))
    if desc["tasks"]:
        table = Table(title="Tasks")
        for header, justify in [("task", "left"), ("layers", "left"), ("entries", "right"),
                                ("density", "right"), ("bytes", "right"), ("attrs", "left")]:
            table.add_column(header, justify=justify)
        for task in desc["tasks"][:limit]:
            table.add_row(plain(task["name"]), plain(_layers(task["layers"])), f"{task['entries']:,}",
                          _density(task["density"]), f"{task['bytes']:,}", plain(_short(task["attrs"])))
        console.print(table)
        if len(desc["tasks"]) > limit:
            console.print(f"… {len(desc['tasks']) - limit} more tasks (use --limit or --json)", highlight=False)
    if desc["attachments"]:
        table = Table(title="Attachments")
        for header in ("name", "attrs", "datasets", "bytes"):
            table.add_column(header)
        for att in desc["attachments"]:
            table.add_row(plain(att["name"]), plain(_short(att["attrs"])), str(len(att["datasets"])),
                          f"{sum(d['bytes'] for d in att['datasets']):,}")
        console.print(table)


def _render_other(desc: dict[str, Any]) -> None:
    table = Table(title="Attributes")
    table.add_column("name")
    table.add_column("value")
    for key, value in desc["attrs"].items():
        table.add_row(plain(key), plain(_short(value, 100)))
    console.print(table)
    table = Table(title="Datasets")
    for header, justify in [("name", "left"), ("shape", "left"), ("dtype", "left"), ("bytes", "right")]:
        table.add_column(header, justify=justify)
    for ds in desc["datasets"]:
        table.add_row(plain(ds["name"]), "×".join(map(str, ds["shape"])) or "scalar", plain(ds["dtype"]),
                      f"{ds['bytes']:,}")
    console.print(table)


def render(desc: dict[str, Any], *, limit: int = 50) -> None:
    """Print a :func:`~hopfield_masks.backends.describe_file` dict for humans."""
    console.print(plain(desc["path"], "bold") + plain(
        f": {desc['kind']} (format version {desc['format_version']}), {format_bytes(desc['file_bytes'])}"))
    if desc["kind"] == "mask-bank":
        _render_bank(desc, limit)
    else:
        _render_other(desc)


@command("info")
@guarded
def info(
    file: Annotated[Path, typer.Argument(help="A mask bank or reservoir file (HDF5).", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help=f"Print the description as JSON ({JSON_ERROR_HELP})")] = False,
    limit: Annotated[int, typer.Option("--limit", help="Most tasks listed in the table")] = 50,
) -> None:
    """Describe a mask bank (backend, metadata, tasks, sizes) or a reservoir file."""
    from hopfield_masks.backends import describe_file

    if limit < 0:
        raise InvalidArgumentError("--limit", "a non-negative number of tasks", limit)
    desc = describe_file(file)
    if as_json:
        typer.echo(json.dumps(desc, indent=2))
    else:
        render(desc, limit=limit)
