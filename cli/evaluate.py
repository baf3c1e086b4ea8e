"""``supsup-store evaluate``: rebuild a model from a mask bank and measure GG and inferred-task accuracy.

A thin forwarder: :func:`supsup_core.persistence.load_model` rebuilds the base
network from the bank's metadata (refusing a fingerprint mismatch),
:func:`~supsup_core.persistence.stream_from_metadata` rebuilds the benchmark,
:func:`~supsup_core.training.evaluate_gg` and
:func:`~supsup_core.training.evaluate_inferred` measure, and the result is
printed as a table (or JSON with ``--json``), next to the accuracies stored at
training time.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from ._app import JSON_ERROR_HELP, app, console, err_console, guarded
from .train import _choice, _data_spec, resolve_device

__all__ = ["evaluate"]


def _clean(value: Any) -> Any:
    """NaN -> None, recursively (strict JSON)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


@app.command("evaluate")
@guarded
def evaluate(
    path: Annotated[Path, typer.Argument(help="Mask bank written by `supsup-store train`.")],
    method: Annotated[
        str, typer.Option("--method", help="Task inference: oneshot, binary or rerank (one-shot, then its best candidates by their own entropy).")
    ] = "oneshot",
    objective: Annotated[str, typer.Option("--objective", help="H (entropy) or G (superfluous neurons).")] = "H",
    protocol: Annotated[
        str,
        typer.Option("--protocol", help="auto, first-image, per-image or batch (auto: batch for bnnet, else first-image)."),
    ] = "auto",
    scenario: Annotated[str, typer.Option("--scenario", help="auto, gnu or gns (auto: gns for NNs banks, else gnu).")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Test batch size (the paper: 128).")] = 128,
    task_inference: Annotated[
        bool, typer.Option("--task-inference/--no-task-inference", help="Measure single-image task inference per image.")
    ] = True,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    data: Annotated[str | None, typer.Option("--data", help="The bank's data from where it is here, as a data spec "
                                             "(default: the source recorded in the bank).")] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="MNIST IDX folder (the same as --data idx:PATH).")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="MODULE:FACTORY that built the bank's model, for banks of "
                                              "a model of yours (a bank never makes supsup-store import code).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON. " + JSON_ERROR_HELP)] = False,
) -> None:
    """Evaluate the masks of a bank: GG accuracy, inferred-task accuracy and task-inference accuracy per task."""
    from supsup_core.errors import ConfigError
    from supsup_core.inference.objectives import check_objective
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from supsup_core.persistence import (check_model_fits, load_model, nns_task_to_mask, read_bank_metadata,
                                         stored_accuracies, stream_from_metadata)
    from supsup_core.training import evaluate_gg, evaluate_inferred, results_table

    _choice("--method", method, ("oneshot", "binary", "rerank"))
    _choice("--objective", objective, ("H", "G"))
    _choice("--protocol", protocol, ("auto", "first-image", "per-image", "batch"))
    _choice("--scenario", scenario, ("auto", "gnu", "gns"))
    dev = resolve_device(device)
    metadata = read_bank_metadata(path)
    spec = None if data is None and data_dir is None else _data_spec(data, data_dir)
    stream = stream_from_metadata(metadata, spec)  # first: the data's parsing temporaries are gone before the masks load
    net, metadata = load_model(path, device=dev, factory=model)
    check_model_fits(net, stream, path)  # before any evaluation
    check_objective(objective, stream.output_classes, net.output_size)
    task_to_mask = nns_task_to_mask(metadata, net.num_tasks, path)
    if task_to_mask and max(task_to_mask) >= stream.n_tasks:
        raise ConfigError(str(path), f"a 'training.nns.task_to_mask' of the stream's tasks 0..{stream.n_tasks - 1}",
                          f"task {max(task_to_mask)}")
    if scenario == "auto":
        scenario = "gns" if task_to_mask is not None else "gnu"
    if protocol == "auto":
        protocol = "batch" if net.has_batch_statistics else "first-image"
    measure = task_inference and not net.has_batch_statistics

    n_eval = len(task_to_mask) if task_to_mask is not None else min(net.num_tasks, stream.n_tasks)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("tasks"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        bar = progress.add_task("GG (task given)", total=n_eval)
        gg = evaluate_gg(net, stream, task_to_mask=task_to_mask, batch_size=batch_size,
                         progress=lambda n: progress.advance(bar, n))
        progress.reset(bar, total=n_eval, description=f"{scenario.upper()} ({method}, {protocol})")
        inferred = evaluate_inferred(
            net, stream, method=method, objective=objective, protocol=protocol, scenario=scenario,
            task_to_mask=task_to_mask, batch_size=batch_size, measure_task_inference=measure,
            progress=lambda n: progress.advance(bar, n),
        )
    stored = {t: acc["gg"] for t, acc in stored_accuracies(path).items() if "gg" in acc}
    reproduced = all(gg.accuracy.get(t) == a for t, a in stored.items()) if stored else None

    if as_json:
        payload = {
            "path": str(path),
            "device": dev,
            "n_masks": net.num_tasks,
            "benchmark": metadata.get("benchmark"),
            "gg": gg.to_dict(),
            "inferred": inferred.to_dict(),
            "stored_gg": {str(t): a for t, a in stored.items()},
            "stored_reproduced": reproduced,
        }
        typer.echo(json.dumps(_clean(payload), indent=2))
        return
    label = f"{scenario.upper()} ({method}, {objective}, {protocol})"
    columns: dict[str, dict[int, float]] = {"GG": gg.accuracy, label: inferred.accuracy}
    if inferred.task_inference_accuracy:
        columns["task inferred (1 image)"] = inferred.task_inference_accuracy
    if stored:
        columns["GG at training"] = stored
    bench = metadata.get("benchmark", {})
    name = net.config.arch if net.config is not None else (model or "model")
    console.print(results_table(columns, title=f"{path.name}: {bench.get('stream')} × {stream.n_tasks}, {name}"))
    line = f"GG {100 * gg.mean_accuracy:.2f}%  {label} {100 * inferred.mean_accuracy:.2f}%"
    if inferred.task_inference_accuracy:
        line += f"  single-image task inference {100 * inferred.mean_task_inference_accuracy:.2f}%"
    if reproduced is not None:
        line += "  (stored accuracies reproduced)" if reproduced else "  (stored accuracies NOT reproduced)"
    console.print(line, highlight=False)
