"""``supsup-store verify FILE``: check every checksum and structure of a mask bank and report what is damaged.

A thin forwarder to :func:`hopfield_masks.backends.verify_file`: one row per
object (root attributes, each task, each attachment) with ``ok``, ``no
checksum`` (a format-1 bank: its structure is checked and its masks decoded,
but bit rot cannot be seen) or ``damaged`` and why.  Exit code 0 when nothing is
damaged, 2 otherwise (and for a file that is not a mask bank at all).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ._app import JSON_ERROR_HELP, command, console, fail, guarded
from ._untrusted import plain, printable

__all__ = ["verify"]


@command("verify")
@guarded
def verify(
    file: Annotated[Path, typer.Argument(help="A mask bank file (HDF5).", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help=f"Print the report as JSON ({JSON_ERROR_HELP})")] = False,
) -> None:
    """Verify a mask bank: CRC-32 of every task and attachment array, links, storage and declared sizes."""
    from hopfield_masks.backends import verify_file

    report = verify_file(file)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        # names and details come from the file: plain text, never read as Rich markup
        table = Table(title=plain(f"{report.path} (format version {report.format_version})"))
        for header in ("object", "status", "detail"):
            table.add_column(header)
        colour = {"ok": "green", "no checksum": "yellow", "damaged": "red"}
        for obj, status, detail in report.items:
            table.add_row(plain(obj), plain(status, colour[status]), plain(detail))
        console.print(table)
        unchecked = sum(1 for _, status, _ in report.items if status == "no checksum")
        console.print(
            f"{len(report.items)} objects, {report.bytes_checked:,} B of data checked"
            + (f"; {unchecked} without checksums (format version 1: bit rot cannot be detected)" if unchecked else ""),
            highlight=False,
        )
    if not report.ok:
        first = report.damaged[0]
        raise fail(printable(f"{report.path}: {len(report.damaged)} of {len(report.items)} objects damaged "
                             f"(first: {first[0]}: {first[2]})"))
