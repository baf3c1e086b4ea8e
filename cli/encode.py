"""``supsup-store encode``: store every mask of a bank as attractors of a Hopfield reservoir sized by a byte budget."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._app import JSON_ERROR_HELP, command, console, err_console, guarded
from ._render import encode_table

__all__ = ["encode"]


@command("encode")
@guarded
def encode(
    bank: Annotated[Path, typer.Argument(help="Mask bank (HDF5) written by train, demo or the library.",
                                         show_default=False)],
    *,
    budget: Annotated[str, typer.Option(
        "--budget", metavar="SIZE", help="Reservoir byte budget: 1MB, 512KiB, 2e6 ...")] = "1MB",
    rule: Annotated[str, typer.Option(
        "--rule", metavar="NAME", help="perceptron (learned ±1 couplings, keyed), pseudo-inverse, storkey, hebbian, "
        "storkey-reference or auto (perceptron if it fits)")] = "auto",
    dtype: Annotated[str, typer.Option(
        "--dtype", metavar="NAME", help="Couplings: float32, float16, int8, sign (1 bit) or auto")] = "auto",
    key_units: Annotated[str, typer.Option(
        "--key-units", metavar="N", help="Key units per network: auto, or 0 (no keys) to 1048576")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help=f"Print the report as JSON ({JSON_ERROR_HELP})")] = False,
) -> None:
    """Encode every mask in BANK into a reservoir stored inside the bank (attachment 'reservoir-<bytes>')."""
    from rich.progress import Progress

    from hopfield_masks.encoding import EncodeSettings, encode_bank

    from ._parsing import parse_key_units

    keys = parse_key_units(key_units)
    with Progress(console=err_console, transient=True, disable=as_json) as progress:
        bar = progress.add_task("encoding", total=None)
        _, report = encode_bank(bank, budget, EncodeSettings(rule=rule, dtype=dtype, key_units=keys),
                                progress=lambda done, total: progress.update(bar, completed=done, total=total))
    if as_json:
        console.print_json(json.dumps(report.to_dict()))
        return
    # the path is the user's text, not markup (a '[' in a file name would otherwise restyle or break the title)
    console.print(encode_table(report))
    if report.over_capacity:
        err_console.print("[yellow]Warning:[/] the reservoir holds more tasks than its rule's capacity; "
                          "unguided recall is not expected to be exact.", highlight=False)
