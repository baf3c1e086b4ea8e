"""Per-task mask training on top of the model-agnostic trainer, and a whole-stream loop with its accuracy matrix.

Model task ``i`` is trained on stream task ``i``: :func:`train_stream` starts at
``model.num_tasks``, so a model that already holds ``k`` masks resumes with
stream task ``k`` and the correspondence holds by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from ..errors import ConfigError
from ..validate import is_int
from .callbacks import ProgressCallback, attach_callbacks
from .config import TrainConfig, steps_per_epoch
from .evaluation import evaluate_gg
from .metrics import AccuracyMatrix
from .trainer import Trainer

__all__ = ["train_task", "train_stream"]


def train_task(
    model: Any,
    stream: Any,
    task: int,
    config: TrainConfig,
    callbacks: Iterable[Any] = (),
    progress: Callable[[int], Any] | None = None,
    *,
    device: str | torch.device | None = None,
    drop_last: bool = False,
) -> int:
    """Learn one new supermask of ``model`` on stream task ``task``.

    Steps: ``model.add_task()`` (fresh scores become the current task), a
    :class:`~supsup_core.training.trainer.Trainer` over ``model.score_parameters()``
    for ``config.batches_per_task`` batches of ``stream.train_batches(task, ...)``
    shuffled with ``config.seed``, then ``model.finish_task()`` (scores -> packed mask).

    Parameters
    ----------
    model : SupSupNet
        The model; gains one finished task.
    stream : TaskStream
        Where the batches come from.
    task : int
        Stream task index.
    config : TrainConfig
        Optimiser and batch settings.
    callbacks : iterable
        ``(event, fn)`` pairs or objects with ``attach(trainer)`` (see :mod:`.callbacks`).
    progress : callable, optional
        Called with ``1`` after every batch (e.g. to advance a progress bar).
    device : str or torch.device, optional
        Where batches go; default the model's device.
    drop_last : bool
        Skip partial batches (use with batch-statistics BN, where a 1-sample batch has no variance).

    Returns
    -------
    int
        The model's index of the new task.
    """
    if not isinstance(config, TrainConfig):
        raise ConfigError("config", "a TrainConfig", type(config).__name__)
    index = model.add_task()
    epoch_steps = (steps_per_epoch(stream.train_size(task), config.batch_size, drop_last)
                   if config.schedule != "constant" or config.epochs is not None else None)
    trainer = Trainer(model, model.score_parameters(), config, device, epoch_steps=epoch_steps)
    attach_callbacks(trainer, callbacks)
    if progress is not None:
        ProgressCallback(progress).attach(trainer)
    batches = stream.train_batches(
        task, batch_size=config.batch_size, seed=config.seed,
        n_batches=config.batches_per_task if epoch_steps is None else config.task_steps(epoch_steps), drop_last=drop_last
    )
    trainer.run(batches)
    model.finish_task()
    return index


def train_stream(
    model: Any,
    stream: Any,
    config: TrainConfig,
    n_tasks: int | None = None,
    *,
    evaluate: bool = True,
    eval_at: Iterable[int] | None = None,
    full_matrix: bool = False,
    callbacks: Iterable[Any] = (),
    progress: Callable[[int], Any] | None = None,
    on_task_done: Callable[[int, Mapping[int, float]], Any] | None = None,
    device: str | torch.device | None = None,
    drop_last: bool = False,
    eval_batch_size: int = 128,
) -> AccuracyMatrix:
    """Train stream tasks ``model.num_tasks .. n_tasks-1`` in order; linear-time evaluation by default.

    Parameters
    ----------
    model, stream, config, callbacks, progress, device, drop_last
        As :func:`train_task`.
    n_tasks : int, optional
        Train up to this many tasks in total (default ``stream.n_tasks``).
    evaluate : bool
        Measure GG accuracy: each task's own right after training it (``R[i, i]``), and every
        learned task at the checkpoints (whole rows).  SupSup masks never change, so the
        whole matrix is a check, not a need.
    eval_at : iterable of int, optional
        Task counts after which a whole row is measured (the paper's ``eval_ckpts``);
        default: after the last task only.
    full_matrix : bool
        A whole row after every task (O(T^2) evaluations).
    on_task_done : callable, optional
        ``on_task_done(task, row)`` after each task (``row`` = ``{task: accuracy}`` measured then,
        empty if not evaluating).
    eval_batch_size : int
        Test batch size of the evaluations.

    Returns
    -------
    AccuracyMatrix
        ``R[i, j]`` where measured (NaN elsewhere).
    """
    total = stream.n_tasks if n_tasks is None else n_tasks
    if isinstance(total, bool) or not isinstance(total, int) or not 1 <= total <= stream.n_tasks:
        raise ConfigError("n_tasks", f"an integer in 1..{stream.n_tasks} (the stream's tasks)", total)
    start = model.num_tasks
    if start >= total:
        raise ConfigError("n_tasks", f"more than the {start} tasks the model already holds", total)
    checkpoints = {total} if eval_at is None else set(eval_at)
    if any(not is_int(c) or not 1 <= c <= total for c in checkpoints):
        raise ConfigError("eval_at", f"task counts in 1..{total}", sorted(checkpoints, key=str))
    callbacks = list(callbacks)
    matrix = AccuracyMatrix(total)
    for task in range(start, total):
        index = train_task(
            model, stream, task, config, callbacks, progress, device=device, drop_last=drop_last
        )
        if index != task:  # the model changed under us (another caller added tasks)
            raise ConfigError("model", f"task index {task} for stream task {task}", index)
        row: dict[int, float] = {}
        if evaluate:
            whole = full_matrix or task + 1 in checkpoints
            measured = range(task + 1) if whole else [task]
            row = dict(evaluate_gg(model, stream, measured, batch_size=eval_batch_size).accuracy)
            matrix.record_row(task, row)
        if on_task_done is not None:
            on_task_done(task, row)
    return matrix
