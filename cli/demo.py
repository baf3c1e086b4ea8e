"""``supsup-store demo``: the whole HopSupSup pipeline on the embedded MNIST subset, in one command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._app import JSON_ERROR_HELP, command, console, err_console, guarded
from ._parsing import MAX_BATCHES_PER_TASK
from ._render import demo_table, encode_table, pct

__all__ = ["demo"]


@command("demo")
@guarded
def demo(
    *,
    out: Annotated[Path, typer.Option("--out", help="Folder for masks.h5 (the bank and its reservoir)")] = Path("demo_out"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing <out>/masks.h5.")] = False,
    budget: Annotated[str, typer.Option("--budget", metavar="SIZE", help="Reservoir byte budget")] = "1MB",
    batches_per_task: Annotated[int | None, typer.Option(
        "--batches-per-task", min=1, max=MAX_BATCHES_PER_TASK, help="Batches of 128 per task [default: 50]")] = None,
    method: Annotated[str, typer.Option(
        "--method", metavar="NAME", help="Guided recall: keyed, dynamics or score-descent")] = "keyed",
    transductive: Annotated[bool, typer.Option(
        "--transductive", help="Guide and score on the same images (the reference's)")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of base network, training and recall")] = 0,
    device: Annotated[str, typer.Option("--device", metavar="NAME", help="auto, cpu or cuda")] = "auto",
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="MNIST IDX folder [default: the embedded subset]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=f"Print the results as JSON ({JSON_ERROR_HELP})")] = False,
) -> None:
    """Train BNNet unit masks on 5 SplitMNIST tasks, save them, encode them under the budget, recall them with and without entropy guidance."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hopfield_masks.safety.files import check_output_file
    from hopfield_masks.budget import parse_budget
    from supsup_core.demo import DEMO_BATCHES_PER_TASK, run_demo
    from supsup_core.errors import ConfigError
    from supsup_core.recall import summarise
    from supsup_core.recall import RecallConfig

    from .train import resolve_device

    budget_bytes = parse_budget(budget, name="--budget")  # parsed once; the library gets the number
    check_output_file(out / "masks.h5", overwrite=overwrite, argument="--out", folder_may_be_created=True)
    # checked here, not after minutes of training
    recall = RecallConfig(method=method, guided=True, transductive=transductive, seed=seed)
    if batches_per_task is not None and batches_per_task < 1:
        raise ConfigError("--batches-per-task", "a positive number of batches", batches_per_task)
    dev = resolve_device(device)
    columns = (TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, disable=as_json) as progress:
        bars: dict[str, int] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in bars:
                bars[stage] = progress.add_task(stage, total=total)
            progress.update(bars[stage], completed=done, total=total)

        batches = DEMO_BATCHES_PER_TASK if batches_per_task is None else batches_per_task
        result = run_demo(out, budget=budget_bytes, batches_per_task=batches, seed=seed, device=dev, recall=recall,
                          data_dir=data_dir, progress=report)
    if as_json:
        console.print_json(json.dumps(result.to_dict()))
        return
    console.print(encode_table(result.encode))
    console.print(demo_table(result, width=console.width))
    g, u = summarise(result.guided), summarise(result.unguided)
    scored = ("the same test images that guided recall (transductive)" if transductive else
              "held-out test images: half of each task's test set guides recall without labels, the other half scores")
    console.print(
        f"Guided recall ({method}): exact for {g['exact']} of {g['tasks']} masks, largest accuracy drop "
        f"{pct(g['max_accuracy_drop'])} points, at most {g['max_steps_to_final']} steps to the final mask.\n"
        f"Unguided recall: exact for {u['exact']} of {u['tasks']} masks, largest accuracy drop {pct(u['max_accuracy_drop'])} points.\n"
        f"Reservoir {result.encode.reservoir_bytes:,} B for {result.encode.n_tasks} masks; the same masks stored exactly take "
        f"{result.encode.exact_file_header_bytes + result.encode.n_tasks * result.encode.exact_file_bytes_per_task:,} B "
        f"in an hdf5-packed file (a {result.encode.budget_bytes:,} B budget "
        f"holds {result.encode.exact_tasks_in_budget:,} exact masks).\n"
        f"Accuracies are scored on {scored}. Bank: {result.bank_path}. Device: {result.device}. "
        f"Time: {sum(result.timings.values()):.0f} s.",
        highlight=False,
    )
