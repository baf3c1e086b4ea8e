"""Rich tables of the commands' results (presentation only), each readable at 80 columns.

Headers are short enough never to be cut (a narrow column wraps its header over lines
rather than ending it with '…'); what a column means beyond its header is said in the
line the command prints under the table.
"""

from __future__ import annotations

from rich.table import Table

from hopfield_masks.budget import format_bytes

from ._untrusted import plain

__all__ = ["encode_table", "recall_table", "evaluation_table", "demo_table", "fits", "pct"]


def pct(value: float | None) -> str:
    """A fraction as a percentage with two decimals, or a dash."""
    return "–" if value is None else f"{100 * value:.2f}"


def encode_table(report) -> Table:
    """The reservoir an ``EncodeReport`` describes, next to exact bit-packed storage in the same budget."""
    table = Table(title=plain(f"Reservoir '{report.attachment}' in {report.path}"), show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("budget", f"{format_bytes(report.budget_bytes)} ({report.budget_bytes:,} B)")
    table.add_row("reservoir bytes", f"{report.reservoir_bytes:,} B")
    learned = report.rule == "perceptron"
    if report.write_accumulator_bytes and learned:
        table.add_row("while encoding", f"{report.write_accumulator_bytes:,} B of int16 hidden states and visiting "
                                        "orders, not kept (growth starts again from the couplings' signs)")
    elif report.write_accumulator_bytes:
        table.add_row("while encoding", f"{report.write_accumulator_bytes:,} B of float32 accumulators, not kept "
                                        "(1-bit couplings cannot be updated in place: the reservoir is read-only)")
    keys = f", {report.key_units} of them task-key units" if report.key_units else ""
    if learned:
        block = report.network_size - report.key_units
        table.add_row("blocks", f"{report.n_networks} × {block} mask units, each unit's row {report.key_units:,} key "
                                f"+ {block} mask couplings of 1 bit")
        if report.rows_unconverged:
            table.add_row("rows short of every constraint", f"{report.rows_unconverged:,} of "
                                                            f"{report.n_networks * block:,}")
    else:
        table.add_row("networks", f"{report.n_networks} × {report.network_size} units{keys} ({report.dtype} couplings)")
    table.add_row("rule", report.rule)
    table.add_row("pattern length", f"{report.pattern_length:,} bits per task")
    table.add_row("tasks stored", str(report.n_tasks))
    load = f"{report.n_tasks} / {report.capacity_tasks:.1f} tasks = {report.load:.3f}"
    table.add_row("load vs capacity", f"[red]{load} (over capacity)[/]" if report.over_capacity else load)
    table.add_row(
        "exact alternative",
        f"hdf5-packed bank file: {report.exact_file_bytes_per_task:,} B per mask on disk "
        f"({report.exact_bytes_per_task:,} B of bits) + {report.exact_file_header_bytes:,} B header → "
        f"{report.exact_tasks_in_budget:,} masks in the same budget",
    )
    return table


def fits(table: Table, width: int) -> bool:
    """True when ``table`` shows at ``width`` columns without cutting a word (Rich would end it with '…')."""
    from rich.console import Console
    from rich.measure import Measurement

    probe = Console(width=10_000)  # Rich clamps a measurement to the width it is given: measure unclamped
    return Measurement.get(probe, probe.options, table).minimum <= width


def recall_table(rows, *, title: str, layers: list[str], width: int = 80) -> Table:
    """One row per task: bits wrong (per layer when the columns fit in ``width``, else in all), exact or not, steps,
    and accuracies when measured."""
    table = _recall_table(rows, title, layers)
    return table if len(layers) == 1 or fits(table, width) else _recall_table(rows, title, [])


def _recall_table(rows, title: str, layers: list[str]) -> Table:
    table = Table(title=title)
    table.add_column("task", justify="right")
    for layer in layers:
        table.add_column(f"bits wrong {layer}", justify="right")
    if not layers:
        table.add_column("bits wrong", justify="right")
    table.add_column("exact", justify="center")
    table.add_column("steps to final", justify="right")
    measured = any(r.true_accuracy is not None for r in rows)
    if measured:
        table.add_column("acc true mask %", justify="right")
        table.add_column("acc recalled %", justify="right")
    for r in rows:
        wrong = [f"{r.bits_wrong[name]:,}" for name in layers] if layers else [f"{r.total_bits_wrong:,}"]
        cells = [plain(r.task), *wrong, "yes" if r.exact else "[red]no[/]", str(r.steps_to_final)]
        if measured:
            cells += [pct(r.true_accuracy), pct(r.recalled_accuracy)]
        table.add_row(*cells)
    return table


def demo_table(result, width: int = 80) -> Table:
    """The demo's tasks: accuracy with the true, the guided-recalled and the unguided-recalled mask, bits wrong, exact,
    steps; at a narrow ``width`` without the steps column (the summary line gives the most steps)."""
    table = _demo_table(result, narrow=False)
    return table if fits(table, width) else _demo_table(result, narrow=True)


def _demo_table(result, narrow: bool) -> Table:
    columns = [("task", "right"), ("digits", "center"), ("acc true %", "right"), ("acc guided %", "right"),
               ("acc unguided %", "right"), ("bits wrong guided", "right"), ("bits wrong unguided", "right"),
               ("guided exact", "center"), ("steps to final", "right")]
    keep = [name != "steps to final" or not narrow for name, _ in columns]
    table = Table(title="HopSupSup on SplitMNIST: masks recalled from the reservoir, no task identity given")
    for (name, justify), shown in zip(columns, keep):
        if shown:
            table.add_column(name, justify=justify)
    for g, u in zip(result.guided, result.unguided):
        t = int(g.task)
        cells = [plain(g.task), f"{2 * t},{2 * t + 1}", pct(g.true_accuracy), pct(g.recalled_accuracy),
                 pct(u.recalled_accuracy), f"{g.total_bits_wrong:,}", f"{u.total_bits_wrong:,}",
                 "yes" if g.exact else "[red]no[/]", str(g.steps_to_final)]
        table.add_row(*(cell for cell, shown in zip(cells, keep) if shown))
    return table


def evaluation_table(gg: dict[int, float], inferred, stored: dict[int, float], *, scenario: str, method: str,
                     title: str) -> Table:
    """One row per task: GG, the scenario's accuracy, the fraction of decisions (test batches, or images) that found
    the right task, single-image task inference when measured, and GG at training when stored; a mean row."""
    columns: dict[str, dict[int, float]] = {"GG": gg, scenario: inferred.accuracy}
    per = "image" if inferred.protocol == "per-image" else "batch"
    columns[f"task ({per})"] = inferred.decision_accuracy
    if inferred.task_inference_accuracy and per == "batch":
        columns["task (image)"] = inferred.task_inference_accuracy
    if stored:
        columns["GG stored"] = stored
    table = Table(title=f"{title}: accuracy (%), task by {method}")
    table.add_column("task", justify="right")
    for name in columns:
        table.add_column(name, justify="right")
    tasks = sorted({t for column in columns.values() for t in column})
    for t in tasks:
        table.add_row(str(t), *(pct(_number(column.get(t))) for column in columns.values()))
    means = [_mean(column) for column in columns.values()]
    table.add_row("mean", *(pct(m) for m in means), style="bold")
    return table


def _number(value: float | None) -> float | None:
    return None if value is None or value != value else value  # NaN: no right answer (a GNs task without a mask)


def _mean(column: dict[int, float]) -> float | None:
    values = [v for v in column.values() if v == v]
    return sum(values) / len(values) if values else None
