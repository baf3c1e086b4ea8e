"""Each task's data for recall: the unlabeled adaptation batches and the held-out evaluation images."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError


@dataclass(frozen=True)
class TaskData:
    """One task's test images split for recall: ``adapt`` guides (labels unused), ``evaluate`` scores."""

    adapt: list[torch.Tensor]
    eval_x: torch.Tensor
    eval_y: torch.Tensor
    transductive: bool


def chunks(n: int, size: int) -> list[slice]:
    """Slices of ``range(n)`` of ``size`` items; a trailing single item joins the chunk before it.

    A batch-statistics model (BNNet's unit masks) cannot run on one image, so
    no chunk may hold exactly one item unless ``n == 1``.
    """
    starts = list(range(0, n, size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return [slice(a, b) for a, b in zip(starts, [*starts[1:], n])]


def task_data(stream, task: int, *, batch_size: int = 64, transductive: bool = False, seed: int = 0) -> TaskData:
    """Split task ``task``'s test set into adaptation batches and an evaluation set (see the module docstring).

    Adaptation batches hold ``batch_size`` images; a trailing single image joins the batch before it.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError("batch_size", "a positive integer", repr(batch_size))
    xs, ys = [], []
    for x, y, _ in stream.test_batches(task, batch_size=512):
        xs.append(x)
        ys.append(y)
    x_all, y_all = torch.cat(xs), torch.cat(ys)  # (n, 1, 28, 28), (n,)
    if transductive:
        adapt_x, eval_x, eval_y = x_all, x_all, y_all
    else:
        # a seeded shuffle first: test sets are stored digit by digit, and each half needs every digit
        order = torch.randperm(len(y_all), generator=torch.Generator().manual_seed(seed * 1_000 + task))
        half = len(order) // 2
        adapt_x = x_all[order[:half]]
        eval_x, eval_y = x_all[order[half:]], y_all[order[half:]]
    adapt = [adapt_x[part] for part in chunks(len(adapt_x), batch_size)]
    return TaskData(adapt=adapt, eval_x=eval_x, eval_y=eval_y, transductive=transductive)
