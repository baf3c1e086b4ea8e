"""SupSup as an Avalanche strategy, end to end: SplitMNIST from the embedded data, one supermask per experience.

Needs the avalanche extra (README, "Use it from Avalanche")::

    python examples/avalanche_splitmnist.py --out avalanche_masks.h5

The settings default to those of ``supsup-store train --benchmark split-mnist`` (LeNet 300-100,
10 outputs, the GNu preset: RMSprop lr 1e-4, 1000 batches of 128 per experience, seed 0), so
the two runs can be compared; ``--benchmark permuted-mnist`` uses that command's PermutedMNIST
defaults (10 experiences, 100 outputs).  Accuracy and forgetting come from Avalanche's evaluation
plugins, next to the bank's bytes on disk (``MaskBankBytes``); the task-free stream has no task
labels, so the model infers each image's task one-shot.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from avalanche.core import SupervisedPlugin
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from supsup_core.config import ModelConfig
from supsup_core.data import make_stream
from supsup_core.errors import SupSupError
from supsup_core.interop import avalanche as sa  # imports Avalanche (quietly)
from supsup_core.models import build_model
from supsup_core.persistence import benchmark_metadata
from supsup_core.training import TrainConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("avalanche_masks.h5"), help="mask bank to write (replaced)")
    parser.add_argument("--benchmark", choices=("split-mnist", "permuted-mnist"), default="split-mnist")
    parser.add_argument("--tasks", type=int, default=None, help="experiences (default 5 / 10)")
    parser.add_argument("--batches-per-task", type=int, default=1000, help="optimiser steps per experience")
    parser.add_argument("--seed", type=int, default=0, help="seed of the base network, the scores and the data order")
    return parser.parse_args(argv)


def _mean(values) -> float:
    values = list(values)
    return 100 * sum(values) / len(values)


def results_table(rows: dict[int, dict[int, float]], free: dict[int, float], title: str) -> Table:
    """One row per experience: accuracy right after its training, after the last one, and task-free."""
    last = rows[max(rows)]
    table = Table(title=title)
    for name in ("experience", "after its training %", "after the last %", "task-free %"):
        table.add_column(name, justify="right")
    for j in sorted(last):
        table.add_row(str(j), f"{100 * rows[j][j]:.2f}", f"{100 * last[j]:.2f}", f"{100 * free[j]:.2f}")
    means = (_mean([rows[j][j] for j in last]), _mean(last.values()), _mean(free.values()))
    table.add_row("mean", *(f"{m:.2f}" for m in means), style="bold")
    return table


class RichProgress(SupervisedPlugin):
    """A rich progress bar over every training step of every experience."""

    def __init__(self, progress: Progress, total: int):
        super().__init__()
        self.progress, self.bar = progress, progress.add_task("experience 0", total=total)

    def before_training_exp(self, strategy, *args, **kwargs):
        self.progress.update(self.bar, description=f"experience {strategy.experience.current_experience}")

    def after_training_iteration(self, strategy, *args, **kwargs):
        self.progress.advance(self.bar)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console, err = Console(), Console(stderr=True)
    torch.set_num_threads(1)  # a LeNet on a shared CPU: one thread is faster than two fighting
    from avalanche.evaluation.metrics import accuracy_metrics, forgetting_metrics
    from avalanche.logging import TextLogger
    from avalanche.training.plugins import EvaluationPlugin

    started = time.perf_counter()
    split = args.benchmark == "split-mnist"
    n_tasks = args.tasks if args.tasks is not None else (5 if split else 10)
    stream = make_stream(args.benchmark, n_tasks)
    benchmark = sa.avalanche_benchmark(stream)
    model = sa.SupSupModel(build_model(ModelConfig(arch="lenet", output_size=10 if split else 100, seed=args.seed)))
    train = TrainConfig.for_scenario("gnu", seed=args.seed, batches_per_task=args.batches_per_task)
    options = sa.AvalancheOptions(train, bank=args.out, overwrite=True, benchmark=benchmark_metadata(stream, args.seed))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    rows: dict[int, dict[int, float]] = {}
    log_path = args.out.with_suffix(".log")
    with open(log_path, "w", encoding="utf-8") as log, Progress(*columns, console=err) as progress:
        evaluator = EvaluationPlugin(
            accuracy_metrics(experience=True, stream=True),
            forgetting_metrics(experience=True, stream=True),
            sa.MaskBankBytes(args.out),
            loggers=[TextLogger(log)],  # Avalanche's own text log of every metric, next to the bank
        )
        strategy = sa.SupSupStrategy(
            model=model, options=options, evaluator=evaluator,
            plugins=[RichProgress(progress, n_tasks * args.batches_per_task)],
        )
        for experience in benchmark.train_stream:
            i = experience.current_experience
            strategy.train(experience)
            metrics = strategy.eval(benchmark.test_stream[: i + 1])
            rows[i] = sa.experience_metric(metrics, "Top1_Acc_Exp")
        progress.update(progress.task_ids[0], description="task-free eval")
        free = sa.experience_metric(strategy.eval(benchmark.test_task_free_stream), "Top1_Acc_Exp", sa.TASK_FREE_STREAM)

    title = f"Avalanche SupSupStrategy on {args.benchmark} (Avalanche's accuracy metrics)"
    console.print(results_table(rows, free, title))
    console.print(
        f"Stream forgetting {100 * metrics['StreamForgetting/eval_phase/test_stream']:.2f} points. Task-free: no task "
        "labels, each image's task inferred one-shot. Mask bank "
        f"{args.out}: {metrics['MaskBank_Bytes/eval_phase/test_stream']:,} bytes for {model.net.num_tasks} masks "
        f"({options.backend}); Avalanche's log: {log_path}. Time: {time.perf_counter() - started:.0f} s.",
        highlight=False,
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SupSupError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(2)
