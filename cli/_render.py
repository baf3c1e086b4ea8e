"""Rich tables shared by the ``encode``, ``recall`` and ``demo`` commands (presentation only)."""

from __future__ import annotations

from rich.table import Table

from hopfield_masks.budget import format_bytes

from ._untrusted import plain

__all__ = ["encode_table", "recall_table", "pct"]


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


def recall_table(rows, *, title: str, layers: list[str]) -> Table:
    """One row per task: bits wrong per layer, exact or not, steps, and accuracies when measured."""
    table = Table(title=title)
    table.add_column("task", justify="right")
    for layer in layers:
        table.add_column(f"bits wrong {layer}", justify="right")
    table.add_column("exact", justify="center")
    table.add_column("steps to final", justify="right")
    measured = any(r.true_accuracy is not None for r in rows)
    if measured:
        table.add_column("acc true mask %", justify="right")
        table.add_column("acc recalled %", justify="right")
    for r in rows:
        cells = [plain(r.task), *(f"{r.bits_wrong[name]:,}" for name in layers), "yes" if r.exact else "[red]no[/]",
                 str(r.steps_to_final)]
        if measured:
            cells += [pct(r.true_accuracy), pct(r.recalled_accuracy)]
        table.add_row(*cells)
    return table
