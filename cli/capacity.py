"""``supsup-store capacity``: measure how many random patterns a Hopfield network keeps, over a range of loads.

A thin forwarder to :func:`hopfield_masks.capacity.capacity_sweep`: parses the
options, shows a progress bar over the loads (on stderr, so ``--json`` output
stays clean), prints a table or JSON, and optionally saves the curve as a PNG.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hopfield_masks.capacity import (
    CapacityRow, capacity_sweep, check_sweep_size, default_loads, plot_capacity, require_plotting, rule_capacity,
    sweep_rule,
)
from hopfield_masks.errors import InvalidArgumentError

from ._app import JSON_ERROR_HELP, command, console, err_console, guarded
from ._untrusted import plain

__all__ = ["capacity", "parse_loads"]


def parse_loads(text: str) -> list[float]:
    """Parse ``"0.05,0.1,0.2"`` into floats; an empty item or a non-number raises InvalidArgumentError."""
    try:
        return [float(item) for item in text.split(",")]
    except ValueError:
        raise InvalidArgumentError("--loads", "comma-separated numbers such as 0.05,0.1,0.2", repr(text)) from None


def _table(rows: list[CapacityRow], title: str) -> Table:
    table = Table(title=title)
    for header in ("load", "patterns", "fixed points", "recovered", "mean overlap", "converged"):
        table.add_column(header, justify="right")
    for r in rows:
        table.add_row(
            f"{r.load:.4g}", str(r.n_patterns), f"{r.fixed_point_fraction:.1%}", f"{r.recovered_fraction:.1%}",
            f"{r.mean_overlap:+.3f}", f"{r.converged_fraction:.1%}",
        )
    return table


@command("capacity")
@guarded
def capacity(
    size: Annotated[int, typer.Option("--size", help="Units N of the network")] = 256,
    rule: Annotated[str, typer.Option(
        "--rule", metavar="NAME", help="hebbian, storkey, storkey-reference, pseudo-inverse, or perceptron (learned ±1 "
        "couplings; --size a multiple of 64)")] = "storkey",
    dtype: Annotated[str, typer.Option("--dtype", metavar="NAME", help="float32, float16 or int8")] = "float32",
    loads: Annotated[str | None, typer.Option(
        "--loads", metavar="X,X", help="Patterns per unit, e.g. 0.05,0.1 [default: up to 2 × the rule's capacity]")
    ] = None,
    noise: Annotated[float, typer.Option("--noise", help="Fraction of spins flipped in each cue")] = 0.1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of patterns, cues and sweep orders")] = 0,
    mode: Annotated[str, typer.Option("--mode", metavar="NAME", help="Recall dynamics: async or sync")] = "async",
    max_steps: Annotated[int, typer.Option(
        "--max-steps", help="Sweeps (async) or updates (sync) per recall")] = 50,
    plot: Annotated[Path | None, typer.Option(
        "--plot", metavar="FILE", help="Save the curve as a PNG (extra supsup-store[plot])")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=f"Print the rows as JSON ({JSON_ERROR_HELP})")] = False,
) -> None:
    """Measure the fraction of stored random patterns that are fixed points and are recovered from noisy cues."""
    from hopfield_masks.rules import available_rules

    choices = sorted([*available_rules(), "perceptron"])
    if rule not in choices:  # the registry's refusal would not list perceptron, which sweeps too
        raise InvalidArgumentError("--rule", f"one of {', '.join(choices)}", repr(rule))
    rule_obj = sweep_rule(rule)
    values = parse_loads(loads) if loads is not None else default_loads(size, rule_obj)
    check_sweep_size(size, dtype, max(values))  # a size this process cannot hold is refused before any work (--size)
    theoretical = rule_capacity(rule_obj, size)
    if plot is not None and not plot.expanduser().parent.is_dir():  # checked now, not after the sweep
        raise InvalidArgumentError("--plot", "a file in an existing folder", f"{plot} (folder {plot.parent} does not exist)")
    if plot is not None:
        require_plotting("--plot")  # a missing [plot] extra fails now, not after the sweep

    with Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True,
    ) as progress:
        task = progress.add_task(f"{rule} N={size}", total=len(values))
        rows = capacity_sweep(
            size, rule_obj, values, noise=noise, seed=seed, dtype=dtype, mode=mode, max_steps=max_steps,
            callback=lambda _row: progress.advance(task),
        )

    if rule == "perceptron":  # learned 1-bit couplings, a margin of sqrt(N)/2, asynchronous recall
        dtype, mode = "1-bit learned", "async"
    title = f"{rule}, N={size}, {dtype}, {mode}, noise {noise:g}: theory {theoretical:.1f} patterns"
    if as_json:
        payload = {
            "size": size, "rule": rule_obj.to_dict(), "dtype": dtype, "mode": mode, "noise": noise, "seed": seed,
            "theoretical_capacity": theoretical, "rows": [r.to_dict() for r in rows],
        }
        typer.echo(json.dumps(payload, indent=2))
    else:
        console.print(_table(rows, title))
    if plot is not None:
        written = plot_capacity(rows, plot, title=f"{rule}, N={size} ({dtype})")
        err_console.print(plain(f"wrote {written}"))  # the user's path, not markup
