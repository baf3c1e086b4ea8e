"""A model-agnostic training loop with named callbacks (in the mould of minGPT's ``Trainer``).

The trainer knows optimisers, batches and events; it knows nothing about
masks, tasks or storage.  Whoever builds it decides what it trains by passing
``params`` (for SupSup: the current task's scores, see
:func:`supsup_core.training.tasks.train_task`).  Everything else -- progress
bars, loss logging, stopping early -- hangs off three events:

``on_task_start``
    once, before the first batch of :meth:`Trainer.run`;
``on_batch_end``
    after every optimiser step (``trainer.iter_num``, ``trainer.loss`` are set);
``on_task_end``
    once, after the last batch (also when a callback stopped the run early).

A callback is any ``fn(trainer) -> None``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .config import TrainConfig
from .optimizers import ScoreOptimizer

__all__ = ["Trainer", "RunSummary", "EVENTS", "make_optimizer"]

#: The events a callback can be attached to, in the order they fire.
EVENTS = ("on_task_start", "on_batch_end", "on_task_end")

Callback = Callable[["Trainer"], None]


def make_optimizer(params: Sequence[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimiser ``config`` names, over ``params`` (PyTorch defaults for unlisted settings).

    For code that needs a ``torch.optim.Optimizer`` (the Avalanche strategy); :class:`Trainer`
    uses :class:`~supsup_core.training.optimizers.ScoreOptimizer`, the same updates bit for bit.

    Examples
    --------
    >>> p = nn.Parameter(torch.zeros(3))
    >>> type(make_optimizer([p], TrainConfig.for_scenario("hopsupsup"))).__name__
    'SGD'
    """
    if config.schedule != "constant":  # torch.optim has no such rate of its own: the caller's scheduler sets it
        raise ConfigError("schedule", "constant for a torch.optim optimiser (attach an LR scheduler instead)",
                          config.schedule)
    params = list(params)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


@dataclass(frozen=True)
class RunSummary:
    """What one :meth:`Trainer.run` did: optimiser steps taken, mean and last training loss (NaN if no step)."""

    n_batches: int
    mean_loss: float
    final_loss: float


class Trainer:
    """Train ``params`` of ``model`` with cross-entropy over all of the model's outputs.

    Parameters
    ----------
    model : torch.nn.Module
        Maps a batch ``x`` to logits ``(B, C)``. Labels must lie in ``0..C-1``; the
        outputs that never receive a label (SupSup's superfluous neurons) are pushed
        down by the same loss, as in the paper.
    params : sequence of torch.nn.Parameter
        What the optimiser updates (non-empty, all requiring grad).
    config : TrainConfig
        Optimiser settings (``batch_size`` and ``batches_per_task`` are for whoever
        builds the batches).
    device : str or torch.device, optional
        Where batches are moved; default: the device of the first parameter.
    epoch_steps : int, optional
        Batches in one epoch of the task's data: needed by a non-constant ``config.schedule``
        (the rate of each step comes from :meth:`TrainConfig.learning_rate`).

    Examples
    --------
    >>> torch.manual_seed(0) and None
    >>> net = nn.Linear(4, 3)
    >>> trainer = Trainer(net, net.parameters(), TrainConfig(optimizer="sgd", lr=0.1))
    >>> seen = []
    >>> trainer.add_callback("on_batch_end", lambda tr: seen.append(tr.iter_num))
    >>> batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,)), torch.zeros(8, dtype=torch.long))] * 3
    >>> trainer.run(batches).n_batches, seen
    (3, [1, 2, 3])
    """

    def __init__(
        self,
        model: nn.Module,
        params: Iterable[nn.Parameter],
        config: TrainConfig,
        device: str | torch.device | None = None,
        epoch_steps: int | None = None,
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise ConfigError("config", "a TrainConfig", type(config).__name__)
        if config.schedule != "constant" and (isinstance(epoch_steps, bool) or not isinstance(epoch_steps, int)
                                              or epoch_steps < 1):
            raise ConfigError("epoch_steps", f"batches per epoch (an integer >= 1) for the {config.schedule} schedule",
                              epoch_steps)
        self.epoch_steps = epoch_steps
        self.params = list(params)
        if not self.params:
            raise ConfigError("params", "at least one parameter to train", "an empty sequence")
        frozen = [i for i, p in enumerate(self.params) if not p.requires_grad]
        if frozen:
            raise ConfigError("params", "parameters with requires_grad=True", f"frozen parameters at {frozen}")
        self.model = model
        self.config = config
        self.device = torch.device(device) if device is not None else self.params[0].device
        self.optimizer = ScoreOptimizer(self.params, config)  # torch.optim's arithmetic, without its import
        self.callbacks: dict[str, list[Callback]] = defaultdict(list)
        self.iter_num = 0
        self.loss: torch.Tensor | None = None
        self.batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._stop = False

    # -- callbacks ---------------------------------------------------------------------------
    def add_callback(self, event: str, fn: Callback) -> None:
        """Call ``fn(trainer)`` on ``event`` (after the callbacks already attached to it)."""
        if event not in EVENTS:
            raise ConfigError("event", f"one of {list(EVENTS)}", repr(event))
        if not callable(fn):
            raise ConfigError("fn", "a callable taking the trainer", type(fn).__name__)
        self.callbacks[event].append(fn)

    def set_callback(self, event: str, fn: Callback) -> None:
        """Make ``fn`` the only callback of ``event``."""
        self.callbacks.pop(event, None)
        self.add_callback(event, fn)

    def trigger_callbacks(self, event: str) -> None:
        """Run the callbacks of ``event`` in the order they were added."""
        for fn in self.callbacks.get(event, []):
            fn(self)

    def stop(self) -> None:
        """Ask :meth:`run` to end after the current batch (callable from a callback)."""
        self._stop = True

    # -- the loop ----------------------------------------------------------------------------
    def _check_labels(self, y: torch.Tensor, n_outputs: int) -> None:
        # Checked on the incoming (usually CPU) labels: an out-of-range label would
        # otherwise surface as an opaque device-side assert on CUDA.
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_outputs):
            raise ConfigError("labels", f"class indices in 0..{n_outputs - 1}", f"range {int(y.min())}..{int(y.max())}")

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimiser step on ``(x, y)``; returns the (detached) loss."""
        labels = y
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        logits = self.model(x)  # (B, C)
        if labels.device.type == "cpu":  # checking labels already on an accelerator would cost a sync
            self._check_labels(labels, logits.shape[1])
        loss = F.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.schedule != "constant":
            cfg = self.config
            self.optimizer.lr = cfg.learning_rate(self.iter_num, self.epoch_steps, cfg.task_steps(self.epoch_steps))
        self.optimizer.step()
        return loss.detach()

    def train_batch(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """One step on ``batch = (x, y, t)`` with the bookkeeping of :meth:`run` and ``on_batch_end``.

        For loops that drive the trainer themselves (e.g. NNs, where the trained mask changes mid-stream).
        """
        self.batch = batch
        self.loss = self.step(batch[0], batch[1])
        self.iter_num += 1
        self.trigger_callbacks("on_batch_end")
        return self.loss

    def run(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> RunSummary:
        """Train on every ``(x, y, t)`` of ``batches`` (``t`` is ignored), firing the events.

        Returns
        -------
        RunSummary
            Steps taken in this call and the mean / last loss.
        """
        self.model.train()
        self._stop = False
        self.trigger_callbacks("on_task_start")
        # The running sum stays on the device: no host sync per step.
        total = torch.zeros((), device=self.device)
        n = 0
        for batch in batches:
            total += self.train_batch(batch)
            n += 1
            if self._stop:
                break
        self.trigger_callbacks("on_task_end")
        if n == 0:
            return RunSummary(0, float("nan"), float("nan"))
        return RunSummary(n, float(total) / n, float(self.loss))
