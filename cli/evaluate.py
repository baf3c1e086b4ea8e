"""``supsup-store evaluate``: rebuild a model from a mask bank and measure GG and inferred-task accuracy.

A thin forwarder: :func:`supsup_core.persistence.load_model` rebuilds the base
network from the bank's metadata (refusing a fingerprint mismatch),
:func:`~supsup_core.persistence.stream_from_metadata` rebuilds the benchmark,
:func:`~supsup_core.training.evaluate_gg` and
:func:`~supsup_core.training.evaluate_inferred` measure, and the result is
printed as a table (or JSON with ``--json``), next to the accuracies stored at
training time.

Task inference defaults to the library's :data:`supsup_core.inference.DEFAULT_METHOD`
(``rerank``, the best measured on LeNet 300-100; on FC 1024-1024 over full MNIST the paper's one-shot
decides more batches right, docs/tutorials/task-inference.md); ``one-shot`` and ``binary`` are one
``--method`` away.  Binary search is slow (``ceil(log2 k)`` gradient passes for every
decision, and with ``--task-inference`` one decision per test image): before it starts,
the command prints what it will cost, and every method runs under a progress bar with an ETA.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ._app import (COMPUTE_PANEL, DATA_PANEL, INFERENCE_PANEL, JSON_ERROR_HELP, OUTPUT_PANEL, command, console,
                   err_console, guarded)
from ._untrusted import plain
from .train import _choice, _data_spec, resolve_device

__all__ = ["evaluate", "METHOD_NAMES", "library_method", "binary_cost"]

#: ``--method`` as typed -> the library's name (``oneshot`` is accepted as typed before 0.2 too).
METHOD_NAMES = {"rerank": "rerank", "one-shot": "oneshot", "binary": "binary", "oneshot": "oneshot"}


def library_method(method: str | None) -> str:
    """The library's name of ``--method`` (None: the library's default, :data:`supsup_core.inference.DEFAULT_METHOD`)."""
    from supsup_core.inference import DEFAULT_METHOD

    if method is None:
        return DEFAULT_METHOD
    if method not in METHOD_NAMES:
        _choice("--method", method, ("rerank", "one-shot", "binary"))  # the names --help shows
    return METHOD_NAMES[method]


def _shown(method: str) -> str:
    """A library method name as ``--method`` spells it."""
    return "one-shot" if method == "oneshot" else method


def _clean(value: Any) -> Any:
    """NaN -> None, recursively (strict JSON)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _decisions(n_images: int, protocol: str, batch_size: int) -> int:
    """Decisions the protocol makes about ``n_images`` test images: one per image (per-image) or per batch."""
    return n_images if protocol == "per-image" else -(-n_images // batch_size)


def decisions_right(inferred: Any, batch_size: int) -> tuple[float | None, int]:
    """The fraction of all the protocol's decisions (test batches, or images for per-image) that picked the right
    task, over every task with a right answer, and how many decisions that is."""
    right = total = 0.0
    for t, fraction in inferred.decision_accuracy.items():
        if fraction == fraction:  # NaN: a GNs task without a mask of its own
            n = _decisions(inferred.n_images.get(t, 0), inferred.protocol, batch_size)
            right, total = right + fraction * n, total + n
    return (right / total if total else None), int(total)


def binary_cost(net: Any, stream: Any, n_eval: int, *, protocol: str, per_image: bool, batch_size: int,
                objective: str) -> dict[str, Any]:
    """What ``--method binary`` will cost: decisions, gradient passes and seconds (a few decisions are timed now).

    A decision is one binary search: ``ceil(log2 k)`` forward/backward passes over the ``k`` masks.  With
    ``per_image`` (``--task-inference``, or ``--protocol per-image``) every test image is decided alone; the
    batch protocol also decides each whole batch, and first-image decides each batch's first image unless the
    single-image decisions already hold it.  The first task's test set stands for every task's.
    """
    from supsup_core.inference import binary_search

    images = stream.test_size(0) * n_eval
    batches = -(-stream.test_size(0) // batch_size) * n_eval
    singles = images if per_image else 0  # every image decides alone (its own binary search)
    # whole-batch decisions, or first-image ones when no single-image decisions are made to take them from
    groups = batches if protocol == "batch" or (protocol == "first-image" and not per_image) else 0
    rounds = max(1, math.ceil(math.log2(max(net.num_tasks, 1))))
    x = next(iter(stream.test_batches(0, batch_size, device=net.device)))[0]
    real = stream.output_classes
    seconds = 0.0
    was_training = net.training
    net.eval()
    try:
        for kind, count in (("single", singles), ("group", groups)):
            if count:
                samples = [x[i : i + 1] for i in range(min(6, x.shape[0]))] if kind == "single" or \
                    protocol == "first-image" else [x]
                binary_search(net, samples[0], objective, real_classes=real)  # warm-up: caches, compiled kernels
                times = []
                for sample in samples[-5:]:
                    start = time.perf_counter()
                    binary_search(net, sample, objective, real_classes=real)
                    times.append(time.perf_counter() - start)
                seconds += count * statistics.median(times)
    finally:
        net.set_alphas(None)
        net.train(was_training)
    decisions = singles + groups
    return {"decisions": decisions, "rounds": rounds, "passes": decisions * rounds, "seconds": seconds,
            "per_image": singles, "per_batch": groups, "batches": batches}


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _warn_binary(cost: dict[str, Any], device: str, task_inference: bool) -> None:
    """The cost of binary search, on stderr, before it starts (and what makes fewer decisions)."""
    if cost["per_image"]:
        what = "every test image alone" + (" and every batch" if cost["per_batch"] else "")
    else:
        what = "one per test batch"
    cheaper = f" (--no-task-inference: {cost['batches']:,})" if task_inference and cost["per_image"] else ""
    err_console.print(
        f"[yellow]Warning:[/] --method binary makes {cost['decisions']:,} decisions{cheaper}, {what}, of "
        f"{cost['rounds']} gradient passes each: {cost['passes']:,} passes, about {_duration(cost['seconds'])} on "
        f"{device}. The default, rerank, makes one pass and a few forwards per decision.", highlight=False)


def _evaluate_inferred(net: Any, stream: Any, tasks: list[int], advance: Any, **options: Any) -> Any:
    """``evaluate_inferred`` over ``tasks``; binary search one task at a time so the bar moves (and has an ETA) after
    each task, the others in one call (their decisions are batched across tasks)."""
    from supsup_core.training import evaluate_inferred
    from supsup_core.training.evaluation import InferredResult

    if options["method"] != "binary":
        return evaluate_inferred(net, stream, tasks, progress=advance, **options)
    parts = [evaluate_inferred(net, stream, [t], progress=advance, **options) for t in tasks]
    merged = {name: {t: v for p in parts for t, v in getattr(p, name).items()}
              for name in ("accuracy", "decision_accuracy", "task_inference_accuracy", "n_images")}
    first = parts[0]
    return InferredResult(first.scenario, first.method, first.objective, first.protocol, **merged)


@command("evaluate")
@guarded
def evaluate(
    bank: Annotated[Path, typer.Argument(help="Mask bank written by `supsup-store train`.", show_default=False)],
    method: Annotated[str | None, typer.Option(
        "--method", metavar="NAME", rich_help_panel=INFERENCE_PANEL,
        help="rerank (best on LeNet), or the paper's one-shot (best on FC) or binary (slow) [default: rerank]")] = None,
    objective: Annotated[str, typer.Option(
        "--objective", metavar="H|G", rich_help_panel=INFERENCE_PANEL,
        help="Entropy H, or G (superfluous neurons)")] = "H",
    protocol: Annotated[str, typer.Option(
        "--protocol", metavar="NAME", rich_help_panel=INFERENCE_PANEL,
        help="first-image, per-image, batch or auto (batch for bnnet)")] = "auto",
    scenario: Annotated[str, typer.Option(
        "--scenario", metavar="NAME", rich_help_panel=INFERENCE_PANEL,
        help="gnu, gns or auto (gns for NNs banks)")] = "auto",
    task_inference: Annotated[bool, typer.Option(
        "--task-inference/--no-task-inference", rich_help_panel=INFERENCE_PANEL,
        help="Also infer the task of every test image alone")] = True,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", min=1, rich_help_panel=INFERENCE_PANEL, help="Test batch size (the paper's: 128)")] = 128,
    data: Annotated[str | None, typer.Option(
        "--data", metavar="SPEC", rich_help_panel=DATA_PANEL,
        help="The bank's data where it is here [default: as recorded]")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", hidden=True, help="MNIST IDX folder (the same as --data idx:PATH).")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", metavar="MODULE:FACTORY", rich_help_panel=DATA_PANEL,
        help="Your model's factory, for a bank of your model")] = None,
    device: Annotated[str, typer.Option(
        "--device", metavar="NAME", rich_help_panel=COMPUTE_PANEL, help="auto, cpu or cuda")] = "auto",
    plot: Annotated[Path | None, typer.Option(
        "--plot", metavar="FILE", rich_help_panel=OUTPUT_PANEL,
        help="Save accuracy per task as a PNG (extra supsup-store[plot])")] = None,
    as_json: Annotated[bool, typer.Option("--json", rich_help_panel=OUTPUT_PANEL,
                                          help=f"Print the results as JSON ({JSON_ERROR_HELP})")] = False,
) -> None:
    """Evaluate a bank's masks: GG accuracy, and accuracy and decisions when the task is inferred."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from supsup_core.errors import ConfigError
    from supsup_core.inference.objectives import check_objective
    from supsup_core.persistence import (check_model_fits, load_model, nns_task_to_mask, read_bank_metadata,
                                         stored_accuracies, stream_from_metadata)
    from supsup_core.training import evaluate_gg

    from ._plots import check_plot, plot_evaluation
    from ._render import evaluation_table

    method = library_method(method)
    _choice("--objective", objective, ("H", "G"))
    _choice("--protocol", protocol, ("auto", "first-image", "per-image", "batch"))
    _choice("--scenario", scenario, ("auto", "gnu", "gns"))
    check_plot(plot)  # before any work
    dev = resolve_device(device)
    metadata = read_bank_metadata(bank)
    spec = None if data is None and data_dir is None else _data_spec(data, data_dir)
    stream = stream_from_metadata(metadata, spec)  # first: the data's parsing temporaries are gone before the masks load
    net, metadata = load_model(bank, device=dev, factory=model)
    check_model_fits(net, stream, bank)  # before any evaluation
    check_objective(objective, stream.output_classes, net.output_size)
    task_to_mask = nns_task_to_mask(metadata, net.num_tasks, bank)
    if task_to_mask and max(task_to_mask) >= stream.n_tasks:
        raise ConfigError(str(bank), f"a 'training.nns.task_to_mask' of the stream's tasks 0..{stream.n_tasks - 1}",
                          f"task {max(task_to_mask)}")
    if scenario == "auto":
        scenario = "gns" if task_to_mask is not None else "gnu"
    if protocol == "auto":
        protocol = "batch" if net.has_batch_statistics else "first-image"
    measure = task_inference and not net.has_batch_statistics

    tasks = sorted(task_to_mask) if task_to_mask is not None else list(range(min(net.num_tasks, stream.n_tasks)))
    if method == "binary":
        cost = binary_cost(net, stream, len(tasks), protocol=protocol, per_image=measure or protocol == "per-image",
                           batch_size=batch_size, objective=objective)
        _warn_binary(cost, dev, task_inference=measure and protocol != "per-image")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("tasks"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        bar = progress.add_task("GG (task given)", total=len(tasks))
        gg = evaluate_gg(net, stream, task_to_mask=task_to_mask, batch_size=batch_size,
                         progress=lambda n: progress.advance(bar, n))
        progress.reset(bar, total=len(tasks), description=f"{scenario.upper()} ({_shown(method)})")
        inferred = _evaluate_inferred(
            net, stream, tasks, lambda n: progress.advance(bar, n), method=method, objective=objective,
            protocol=protocol, scenario=scenario, task_to_mask=task_to_mask, batch_size=batch_size,
            measure_task_inference=measure,
        )
    stored = {t: acc["gg"] for t, acc in stored_accuracies(bank).items() if "gg" in acc}
    reproduced = all(gg.accuracy.get(t) == a for t, a in stored.items()) if stored else None
    right, n_decisions = decisions_right(inferred, batch_size)
    scenario_name = {"gnu": "GNu", "gns": "GNs"}[scenario]

    if plot is not None:
        curves = {"GG (task given)": gg.accuracy, f"{scenario_name} (task inferred, {_shown(method)})": inferred.accuracy,
                  "right task (decisions)": inferred.decision_accuracy}
        if inferred.task_inference_accuracy:
            curves["right task (single images)"] = inferred.task_inference_accuracy
        bench = metadata.get("benchmark", {})
        written = plot_evaluation(plot, curves, title=f"{bank.name}: {bench.get('stream')} × {stream.n_tasks}")
        err_console.print(plain(f"wrote {written}"))
    if as_json:
        payload = {
            "path": str(bank),
            "device": dev,
            "n_masks": net.num_tasks,
            "benchmark": metadata.get("benchmark"),
            "gg": gg.to_dict(),
            "inferred": inferred.to_dict(),
            "decisions": {"right": right, "count": n_decisions,
                          "per": "image" if inferred.protocol == "per-image" else "batch"},
            "stored_gg": {str(t): a for t, a in stored.items()},
            "stored_reproduced": reproduced,
        }
        typer.echo(json.dumps(_clean(payload), indent=2))
        return
    bench = metadata.get("benchmark", {})
    name = net.config.arch if net.config is not None else (model or "model")
    console.print(evaluation_table(
        gg.accuracy, inferred, stored, scenario=scenario_name, method=_shown(method),
        title=f"{bank.name}: {bench.get('stream')} × {stream.n_tasks}, {name}"))
    per = "test images" if inferred.protocol == "per-image" else "test batches"
    line = f"GG {100 * gg.mean_accuracy:.2f}%, {scenario_name} {100 * inferred.mean_accuracy:.2f}%"
    if right is not None:
        line += f"; right task for {100 * right:.2f}% of {n_decisions:,} {per}"
    if inferred.task_inference_accuracy:
        line += f" and {100 * inferred.mean_task_inference_accuracy:.2f}% of single images"
    line += f" ({_shown(method)}, {objective}, {protocol})"
    if reproduced is not None:
        line += "; stored accuracies reproduced" if reproduced else "; stored accuracies NOT reproduced"
    console.print(line + ".", highlight=False)
