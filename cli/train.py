"""``supsup-store train``: learn one supermask per task of an MNIST benchmark and save them to a mask bank.

A thin forwarder: it resolves the options into a stream
(:func:`supsup_core.data.make_stream`), a model (:func:`supsup_core.models.build_model`)
and a :class:`~supsup_core.training.TrainConfig` preset, runs
:func:`~supsup_core.training.train_stream` (or :func:`~supsup_core.training.train_nns`
for ``--scenario nns``) under a progress bar on stderr, saves with
:func:`supsup_core.persistence.save_masks` and prints the accuracy table.
torch and supsup_core are imported inside the command so ``supsup-store --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ._app import app, console, err_console, guarded

__all__ = ["train", "resolve_device", "default_output_size", "BENCHMARKS", "MODELS", "TRAIN_SCENARIOS"]

BENCHMARKS = ("permuted-mnist", "rotated-mnist", "split-mnist")
MODELS = ("lenet", "fc1024", "bnnet")
TRAIN_SCENARIOS = ("auto", "gg", "gnu", "gns", "nns", "hopsupsup")
_TABLE_LIMIT = 20  # tasks up to which the whole accuracy matrix is printed
_MATRIX_LIMIT = 32  # larger accuracy matrices are summarised in the bank metadata (HDF5 attributes stay small)


def _choice(option: str, value: str, allowed: tuple[str, ...]) -> str:
    from supsup_core.errors import ConfigError

    if value not in allowed:
        raise ConfigError(option, f"one of {', '.join(allowed)}", repr(value))
    return value


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    from supsup_core.errors import ConfigError

    _choice("--device", device, ("auto", "cpu", "cuda"))
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device", "cpu or auto (no CUDA device is available)", "'cuda'")
    return device


def default_output_size(benchmark: str, model: str) -> int:
    """Outputs ``s``: 10 for split-mnist and BNNet (unshared 10-way labels), else 100 (superfluous neurons, §3.3)."""
    return 10 if benchmark == "split-mnist" or model == "bnnet" else 100


def _parse_hidden(text: str | None) -> tuple[int, ...] | None:
    from supsup_core.errors import ConfigError

    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError("--hidden", "comma-separated widths such as 300,100", repr(text)) from None


@app.command("train")
@guarded
def train(
    out: Annotated[Path, typer.Option("--out", help="Mask bank file to write (HDF5).")],
    benchmark: Annotated[str, typer.Option("--benchmark", help="permuted-mnist, rotated-mnist or split-mnist.")] = (
        "permuted-mnist"
    ),
    model: Annotated[str, typer.Option("--model", help="lenet, fc1024 or bnnet.")] = "lenet",
    tasks: Annotated[int | None, typer.Option("--tasks", min=1, help="Number of tasks (default 10; 5 for split-mnist).")] = None,
    scenario: Annotated[
        str, typer.Option("--scenario", help="auto, gg, gnu, gns, nns or hopsupsup (auto: hopsupsup for bnnet, else gnu).")
    ] = "auto",
    batches_per_task: Annotated[
        int | None, typer.Option("--batches-per-task", min=0, help="Optimiser steps per task (default: the scenario's; 0 = one epoch).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the base network, the scores and the data order.")] = 0,
    stream_seed: Annotated[int, typer.Option("--stream-seed", help="Permutation seed (task i uses i + seed).")] = 1,
    output_size: Annotated[
        int | None, typer.Option("--output-size", help="Outputs s (default 100; 10 for split-mnist and bnnet).")
    ] = None,
    hidden: Annotated[str | None, typer.Option("--hidden", help="Hidden widths, e.g. 300,100 (default: the model's).")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Learning rate (default: the scenario's).")] = None,
    decision_every: Annotated[int, typer.Option("--decision-every", min=1, help="NNs: batches between decisions.")] = 100,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Folder of MNIST IDX files (default: the embedded 5k subset).")
    ] = None,
    backend: Annotated[str, typer.Option("--backend", help="Mask bank backend: hdf5-packed or hdf5-sparse.")] = "hdf5-packed",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out file.")] = False,
) -> None:
    """Train one supermask per task and save them, with the benchmark's description, to a mask bank."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from supsup_core.config import ModelConfig
    from supsup_core.data import load_mnist, make_stream
    from supsup_core.errors import ConfigError
    from supsup_core.models import build_model
    from supsup_core.persistence import benchmark_metadata, save_masks
    from supsup_core.training import TrainConfig, accuracy_table, evaluate_inferred, results_table, train_nns, train_stream
    from supsup_core.training.nns import nns_batches

    _choice("--benchmark", benchmark, BENCHMARKS)
    _choice("--model", model, MODELS)
    _choice("--scenario", scenario, TRAIN_SCENARIOS)
    _choice("--backend", backend, ("hdf5-packed", "hdf5-sparse"))
    if out.exists() and not overwrite:
        raise ConfigError("--out", "a new file (or pass --overwrite)", f"existing file {out}")
    if not out.expanduser().parent.is_dir():  # checked now, not after all the training
        raise ConfigError("--out", "a file in an existing folder", f"{out} (folder {out.parent} does not exist)")
    dev = resolve_device(device)
    if scenario == "auto":
        scenario = "hopsupsup" if model == "bnnet" else "gnu"
    n_tasks = tasks if tasks is not None else (5 if benchmark == "split-mnist" else 10)
    overrides: dict[str, Any] = {"seed": seed}
    if batches_per_task is not None:
        overrides["batches_per_task"] = None if batches_per_task == 0 else batches_per_task
    if lr is not None:
        overrides["lr"] = lr
    config = TrainConfig.for_scenario(scenario, **overrides)
    stream = make_stream(benchmark, n_tasks, load_mnist(data_dir), seed=stream_seed)
    size = output_size if output_size is not None else default_output_size(benchmark, model)
    net = build_model(ModelConfig(arch=model, output_size=size, seed=seed, hidden=_parse_hidden(hidden))).to(dev)
    drop_last = net.has_batch_statistics  # a 1-image batch has no batch statistics
    per_task = config.batches_per_task or -(-stream.train_size(0) // config.batch_size)

    err_console.print(
        f"Training {n_tasks} × {per_task} batches: {model} (s = {size}) on {benchmark}, scenario {scenario}, "
        f"{config.optimizer} lr {config.lr:g}, device {dev}",
        highlight=False,
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    training: dict[str, Any] = {"scenario": scenario, "config": config.to_dict(), "device": dev}
    with Progress(*columns, console=err_console, transient=False) as progress:
        bar = progress.add_task("task 0", total=n_tasks * per_task)

        def advance(n: int) -> None:
            progress.advance(bar, n)

        if scenario == "nns":
            result = train_nns(
                net, nns_batches(stream, range(n_tasks), config), config, decision_every=decision_every, progress=advance
            )
            progress.update(bar, description="evaluating")
            inferred = evaluate_inferred(
                net, stream, scenario="gns", task_to_mask=result.task_to_mask(), measure_task_inference=False,
                protocol="batch" if net.has_batch_statistics else "first-image",
            )
            accuracies = None  # bank tasks are masks, not stream tasks: per-stream-task numbers go to metadata
            nns_log = result.to_dict()
            training["nns"] = {k: nns_log[k] for k in ("n_masks", "n_trained_batches", "task_to_mask")}
            training["nns"]["decision_every"] = decision_every
            training["nns"]["gns_accuracy"] = {str(t): a for t, a in inferred.accuracy.items()}
            table = results_table({f"GNs (one-shot, {inferred.protocol})": inferred.accuracy},
                                  title="NNs accuracy (%) per task")
        else:
            matrix = train_stream(
                net, stream, config, n_tasks, progress=advance, drop_last=drop_last,
                on_task_done=lambda t, row: progress.update(bar, description=f"task {t + 1}"),
            )
            accuracies = {t: {"gg": a} for t, a in matrix.final_accuracies().items()}
            summary = matrix.to_dict()
            if n_tasks > _MATRIX_LIMIT:
                summary.pop("matrix")
            training["accuracy_matrix"] = summary
            if n_tasks <= _TABLE_LIMIT:
                table = accuracy_table(matrix)
            else:  # a wide matrix is unreadable: show the final row, the summaries go in the caption
                table = results_table({"GG": matrix.final_accuracies()}, title="GG accuracy (%) after the last task")
                table.caption = (
                    f"forgetting {100 * matrix.forgetting():.2f} pts, backward transfer "
                    f"{100 * matrix.backward_transfer():.2f} pts"
                )
    benchmark_info = benchmark_metadata(stream, seed)
    save_masks(net, out, backend=backend, benchmark=benchmark_info, accuracies=accuracies, overwrite=overwrite,
               training=training)
    console.print(table)
    console.print(f"Saved {net.num_tasks} masks to {out} ({backend}).", highlight=False)
